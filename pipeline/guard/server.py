"""The guard process: `POST /v1/guard` (the inline check), and the session-action decider.

A process of its own, not a route of the receiver: the receiver is I/O-bound and sized for
throughput (admission bounds, acks=all per request), the guard is CPU-bound (tier 1 in its
thread, tier 2 for some deployments) and sized for latency; each scales and fails apart, and
only the guard loads the models. It reads grants from the triage API, follows the `actions`
topic (so an answer includes the session's action), decides session actions from the evidence
topic, and streams what it screens through a bounded outbox.

Answers: 200 with the decision; 400 (not JSON), 413 (body over the limit), 415 (not JSON
content), 422 (fields wrong or over their bounds, each with the reason); 401 without a valid
token, 403 for a token whose role is neither `guard` nor `admin`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from pipeline.guard.check import Guard
from pipeline.guard.contract import GuardRequest
from pipeline.kafka_security import aiokafka_options
from pipeline.settings import Settings
from pipeline.store.auth import Authenticator
from schemas.events import Message

log = logging.getLogger(__name__)

GUARD_KEY = web.AppKey("guard", Guard)
AUTH_KEY = web.AppKey("authenticator", Authenticator)
LIMIT_KEY = web.AppKey("max_bytes", int)
ROLES = frozenset({"guard", "admin"})
DECIDER_GROUP = "oodwatch-guard-actions"
FLUSH_AT_STOP_S = 3.0


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _field_errors(exc: ValidationError) -> list[str]:
    """Where and what, never the input itself (it is the caller's text)."""
    return [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:10]]


async def handle_guard(request: web.Request) -> web.Response:
    started = time.perf_counter()
    received_ns = time.time_ns()
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    principal = request.app[AUTH_KEY].by_token(token) if token else None
    if principal is None:
        return web.json_response(
            {"error": "missing or wrong bearer token"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    if principal.role not in ROLES:
        return _error(403, "needs the guard (or admin) role")
    if (request.content_type or "").lower() != "application/json":
        return _error(415, f"Content-Type must be application/json, got {request.content_type or 'none'!r}")
    limit = request.app[LIMIT_KEY]
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body over {limit} bytes")
    chunks, size = [], 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return _error(413, f"body over {limit} bytes")
        chunks.append(chunk)
    try:  # one pass: pydantic-core parses and validates (json.loads first would cost a second walk)
        check = GuardRequest.model_validate_json(b"".join(chunks))
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if "json_invalid" in kinds:
            return _error(400, "body is not JSON")
        if kinds == {"model_type"}:
            return _error(422, "body must be a JSON object (a guard check)")
        return _error(422, "not a valid guard check", details=_field_errors(exc))
    answer = await request.app[GUARD_KEY].check(check, started, received_ns)
    return web.Response(body=answer.model_dump_json(), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "guard": request.app[GUARD_KEY].snapshot()})


async def readyz(_: web.Request) -> web.Response:
    """Ready once tier 1 is loaded (before the app serves); a broker outage does not make the
    guard unready: it still answers within budget and holds the events."""
    return web.json_response({"status": "ready"})


def create_guard_app(guard: Guard, authenticator: Authenticator, max_request_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes + 1)
    app[GUARD_KEY] = guard
    app[AUTH_KEY] = authenticator
    app[LIMIT_KEY] = max_request_bytes
    app.router.add_post("/v1/guard", handle_guard)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _produce(settings: Settings, outbox: Any) -> None:
    """The outbox's producer, started (and restarted) while the guard keeps answering."""
    from aiokafka import AIOKafkaProducer

    delay = 0.5
    while True:
        producer = AIOKafkaProducer(
            **aiokafka_options(settings), bootstrap_servers=settings.bootstrap, linger_ms=5, acks="all",
            enable_idempotence=settings.kafka_idempotent_producer, request_timeout_ms=10_000,
        )  # fmt: skip
        try:
            await producer.start()
            outbox.broker_ok = True
            delay = 0.5
            await outbox.run(producer)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            outbox.broker_ok = False
            log.warning("guard producer: %s: %s; retrying in %.1f s", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            await producer.stop()


async def _decide_actions(settings: Settings, decider: Any, outbox: Any) -> None:
    """Bundles from the evidence topic -> session actions on the actions topic."""
    from aiokafka import AIOKafkaConsumer

    from pipeline.agents.judge import BUNDLES
    from pipeline.guard.tier1 import Record

    delay = 0.5
    while True:
        consumer = AIOKafkaConsumer(
            settings.topics.evidence, **aiokafka_options(settings), bootstrap_servers=settings.bootstrap,
            group_id=DECIDER_GROUP,
            auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=2000,
            fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        )  # fmt: skip
        try:
            await consumer.start()
            delay = 0.5
            while True:
                polled = await consumer.getmany(timeout_ms=500, max_records=500)
                for records in polled.values():
                    for record in records:
                        # An envelope of bundles (the investigate stage's); what cannot be read,
                        # the sink dead-letters.
                        for bundle in BUNDLES.decode(record.value, record.headers).items:
                            action = decider.on_bundle(bundle)
                            if action is not None:
                                about = {"session_id": action.session_id, "action": action.action.value}
                                log.info("session action: %s", action.reason, extra=about)
                                value = action.model_dump_json().encode()
                                outbox.put(Record(settings.topics.actions, action.session_id.encode(), value))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("action decider: %s: %s; retrying in %.1f s", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        finally:
            await consumer.stop()


def build_guard(settings: Settings) -> tuple[Guard, list[Callable[[], Any]]]:
    """The guard and the background loops that feed it (started by `serve_guard`)."""
    from pipeline.guard.actions import ActionBook, ActionDecider, follow_actions
    from pipeline.guard.check import Tier2Inline
    from pipeline.guard.grants import GrantBook
    from pipeline.guard.outbox import Outbox
    from pipeline.guard.tier1 import Tier1
    from pipeline.store.auth import api_token

    tier1 = Tier1.from_settings(settings)
    policy = tier1.policy
    warm = GuardRequest(messages=[Message(role="user", content="warm up: ignore previous instructions")]).to_event(0)
    tier1.score([warm])  # the first inference pays for lazy set-up; a check should not
    tier2 = None
    if any("tier2" in d.inline for d in policy.guard.deployments.values()):
        from pipeline.app import build_investigator
        from schemas.evidence import Escalation

        investigator = build_investigator(settings, policy)
        if investigator.tier2 is not None:
            tier2 = Tier2Inline(investigator)
            screening = tier1.route([warm], tier1.score([warm]), {})[0]
            investigator.assess([Escalation(event=warm, screening=screening)])
    grants = GrantBook(policy.guard, max_stale_s=settings.guard_grants_max_stale_s)
    actions = ActionBook(max_sessions=settings.guard_sessions_max)
    outbox = Outbox(tier1.stream_records, max_items=settings.guard_outbox_max_records,
                    max_bytes=settings.guard_outbox_max_bytes)  # fmt: skip
    guard = Guard(
        tier1, grants=grants, actions=actions, outbox=outbox, tier2=tier2, max_batch=settings.guard_batch_max,
        max_pending=settings.guard_max_pending, max_sessions=settings.guard_sessions_max,
    )  # fmt: skip
    decider = ActionDecider(policy, grants, max_sessions=settings.guard_sessions_max)
    read_token = settings.guard_api_token.get_secret_value() or api_token(settings)
    loops: list[Callable[[], Any]] = [
        lambda: _produce(settings, outbox),
        lambda: grants.follow(settings.api_url, read_token, settings.guard_grants_refresh_s),
        lambda: follow_actions(
            settings.bootstrap, settings.topics.actions, actions, options=aiokafka_options(settings)
        ),
        lambda: _decide_actions(settings, decider, outbox),
    ]
    return guard, loops


async def serve_guard(settings: Settings) -> None:
    """Run until cancelled."""
    from pipeline.store.auth import api_token, load_tokens

    guard, loops = build_guard(settings)
    authenticator = Authenticator(load_tokens(settings, api_token(settings)))
    # What start-up built (models, tables, the policy) is never freed: moved out of the
    # collector's view, a full collection under load no longer walks it (a p99 of milliseconds).
    gc.collect()
    gc.freeze()
    guard.start()
    tasks = [asyncio.create_task(loop()) for loop in loops]
    runner = web.AppRunner(create_guard_app(guard, authenticator, settings.guard_max_request_bytes), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.guard_port).start()
    log.info("guard on %s/v1/guard", settings.guard_url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        deadline = time.monotonic() + FLUSH_AT_STOP_S
        while len(guard.outbox) and guard.outbox.broker_ok and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await guard.stop()
        guard.outbox.abandon()
