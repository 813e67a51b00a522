"""`POST /v1/guard` over HTTP (an in-process aiohttp server, scripted tier 1): 401 without a token,
403 for a role that may not check, 415/400/413/422 with the reason for bad input, and 200 with the
decision; attacker text is never echoed in an error. The outbox: bounded, counted, retried."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pipeline.guard.outbox import Outbox
from pipeline.guard.server import create_guard_app
from pipeline.guard.tier1 import Record
from pipeline.store.auth import Authenticator, Principal
from schemas.events import LLMEvent
from tests.unit.guard_helpers import build_guard

TOKENS = {
    "gateway-token-0123456789": Principal("gw", "guard"),
    "viewer-token-0123456789": Principal("vic", "viewer"),
    "admin-token-0123456789": Principal("root", "admin"),
}
GOOD = {"session_id": "s", "service": "docs-assistant", "messages": [{"role": "user", "content": "hi"}]}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client():
    guard, _ = build_guard()
    guard.start()
    app = create_guard_app(guard, Authenticator(dict(TOKENS)), max_request_bytes=4096)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client
    await guard.stop()


async def test_a_gateway_token_gets_the_decision(client) -> None:
    for token in ("gateway-token-0123456789", "admin-token-0123456789"):
        response = await client.post("/v1/guard", json=GOOD, headers=auth(token))
        assert response.status == 200, await response.text()
        body = await response.json()
        assert body["action"] == "allow" and body["tiers_run"] == ["tier1"] and body["budget_used_ms"] > 0


async def test_no_token_is_401_and_a_desk_role_is_403(client) -> None:
    for headers in ({}, auth("wrong-token-0123456789"), {"Authorization": "Basic abc"}):
        response = await client.post("/v1/guard", json=GOOD, headers=headers)
        assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    response = await client.post("/v1/guard", json=GOOD, headers=auth("viewer-token-0123456789"))
    assert response.status == 403 and "guard" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"{not json", "application/json", 400, "not JSON"),
        (b"[1, 2]", "application/json", 422, "must be a JSON object"),
        (json.dumps({**GOOD, "sesion_id": "typo"}).encode(), "application/json", 422, "sesion_id: Extra inputs"),
        (json.dumps({**GOOD, "kind": "weird"}).encode(), "application/json", 422, "kind:"),
        (json.dumps({**GOOD, "trace_id": "xyz"}).encode(), "application/json", 422, "trace_id:"),
        (json.dumps({**GOOD, "messages": [{"content": "no role"}]}).encode(), "application/json", 422, "role"),
        (json.dumps({**GOOD, "budget_ms": -1}).encode(), "application/json", 422, "budget_ms:"),
        (json.dumps({**GOOD, "tool_calls": [{"name": "x"}] * 129}).encode(), "application/json", 422, "tool_calls:"),
        (json.dumps({**GOOD, "pad": "x" * 5000}).encode(), "application/json", 413, "over 4096 bytes"),
        (json.dumps(GOOD).encode(), "text/plain", 415, "application/json"),
        (b"[" * 3000 + b"]" * 3000, "application/json", 413, "over"),
    ],
)
async def test_bad_input_is_refused_with_the_reason(
    client, body: bytes, content_type: str, status: int, reason: str
) -> None:
    response = await client.post(
        "/v1/guard", data=body, headers={**auth("gateway-token-0123456789"), "Content-Type": content_type}
    )
    text = await response.text()
    assert response.status == status, text
    assert reason in text


async def test_deep_json_within_the_size_limit_is_a_400_not_a_crash(client) -> None:
    body = b"[" * 2000 + b"]" * 2000
    response = await client.post(
        "/v1/guard", data=body, headers={**auth("gateway-token-0123456789"), "Content-Type": "application/json"}
    )
    assert response.status in (400, 422)


async def test_errors_never_echo_the_callers_text(client) -> None:
    secret = "SECRET-in-the-prompt-0xdeadbeef"
    body = {**GOOD, "messages": [{"role": "user", "content": secret, "extra": 1}], "budget_ms": secret}
    response = await client.post("/v1/guard", json=body, headers=auth("gateway-token-0123456789"))
    assert response.status == 422 and secret not in await response.text()


async def test_health_counts_the_answers(client) -> None:
    await client.post("/v1/guard", json=GOOD, headers=auth("gateway-token-0123456789"))
    health = await (await client.get("/healthz")).json()
    assert health["guard"]["answers"]["allow"] == 1 and health["guard"]["outbox"]["queued"] == 1


# -- the outbox ---------------------------------------------------------------------------


class FlakyProducer:
    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, bytes]] = []

    async def send(self, topic: str, value: bytes, *, key: bytes) -> Any:
        if self.down:
            raise ConnectionError("broker away")
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        self.sent.append((topic, key))
        return future


def _event(i: int) -> LLMEvent:
    return LLMEvent(event_id=f"e{i}", trace_id="t", span_id="s", session_id=f"s{i}")


async def test_the_outbox_holds_what_the_broker_does_not_take_and_counts_what_it_cannot_hold() -> None:
    def records(event: LLMEvent, screening: Any, now_ns: int) -> list[Record]:
        return [Record("screenings", event.session_id.encode(), b"{}")]

    outbox = Outbox(records, max_items=3, max_bytes=1 << 20)
    producer = FlakyProducer()
    task = asyncio.create_task(outbox.run(producer))
    accepted = [outbox.put((_event(i), None)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    await asyncio.sleep(0.3)
    assert outbox.counters.not_streamed == 2 and outbox.counters.send_failures >= 1 and len(outbox) == 3
    producer.down = False
    for _ in range(100):
        if not len(outbox):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [key for _, key in producer.sent] == [b"s0", b"s1", b"s2"]  # in order, none lost
    assert outbox.counters.streamed == 3 and outbox.held_bytes == 0


async def test_the_outbox_bounds_bytes_too_and_counts_what_is_left_at_stop() -> None:
    outbox = Outbox(lambda e, s, n: [], max_items=100, max_bytes=3000)
    assert outbox.put((_event(1), None)) and not outbox.put((_event(2), None))  # 2 KB each, estimated, then full
    assert outbox.counters.not_streamed == 1
    assert outbox.abandon() == 1 and outbox.counters.unsent_at_stop == 1
