"""The guard on the desk (store process): grants and session actions over the triage API, and
the recorder that stores the `actions` topic and sends each new action to the webhooks.

Roles follow the desk's: viewers list grants and actions; reviewers lift an action; only admins
grant and revoke relaxations. Every change is appended to the store with who and why.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations as objects.

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from pipeline.guard.ledger import GuardLedger
from pipeline.kafka_security import aiokafka_options
from pipeline.settings import Settings
from pipeline.store.api import error_responses
from pipeline.store.desk import DeskError
from schemas.guard import ActionKind, GrantRequest, SessionAction

log = logging.getLogger(__name__)

RECORDER_GROUP = "oodwatch-actions-recorder"
PUBLISH_TIMEOUT_S = 10.0

#: Every status each operation answers besides its success (the API document lists them all).
LIST = error_responses(401, 403, 422)
GRANT = error_responses(400, 401, 403, 422)
REVOKE = error_responses(400, 401, 403, 404, 409, 422)
LIFT = error_responses(400, 401, 403, 404, 409, 422, 503)


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(min_length=4, max_length=2000)]


class Lift(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(min_length=4, max_length=2000)]


class ActionPublisher:
    """Lifts go to the `actions` topic before they are stored, so enforcement points hear them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def publish(self, action: SessionAction) -> None:
        from aiokafka import AIOKafkaProducer

        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **aiokafka_options(self.settings),
                    bootstrap_servers=self.settings.bootstrap, acks="all", request_timeout_ms=10_000,
                    enable_idempotence=self.settings.kafka_idempotent_producer,
                )  # fmt: skip
                await asyncio.wait_for(producer.start(), PUBLISH_TIMEOUT_S)
                self._producer = producer
        topic = self.settings.topics.actions
        await asyncio.wait_for(
            self._producer.send_and_wait(topic, action.model_dump_json().encode(), key=action.session_id.encode()),
            PUBLISH_TIMEOUT_S,
        )

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


class GuardDesk:
    def __init__(
        self, ledger: GuardLedger, settings: Settings, *,
        on_actions: Callable[[list[SessionAction]], None] | None = None, publisher: Any = None,
    ) -> None:  # fmt: skip
        self.ledger = ledger
        self.settings = settings
        self.on_actions = on_actions
        self.publisher = publisher or ActionPublisher(settings)
        self.recorded = 0

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except DeskError as exc:
            raise HTTPException(status_code=exc.status, detail=str(exc)) from None

    def router(self, viewer: Any, reviewer: Any, admin: Any) -> APIRouter:
        """`viewer`, `reviewer`, `admin`: the desk's dependency types for those roles."""
        router = APIRouter()
        ledger = self.ledger

        @router.get("/api/grants", responses=LIST)
        async def grants(
            _: viewer, active: bool = False, tenant: Annotated[str | None, Query(max_length=256)] = None,
            limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
        ) -> list[dict[str, Any]]:  # fmt: skip
            """Relaxation grants, newest first, each with its state (active, expired, revoked)."""
            result: list[dict[str, Any]] = await self._call(
                ledger.grants, active_only=active, tenant=tenant, limit=limit
            )
            return result

        @router.post("/api/grants", status_code=201, responses=GRANT)
        async def create_grant(who: admin, body: GrantRequest) -> dict[str, Any]:
            grant = await self._call(ledger.create_grant, body, who.name, who.role)
            log.info("relaxation grant", extra={"grant": grant.grant_id, "tenant": grant.tenant, "by": who.name})
            return {"grant": grant.model_dump(mode="json"), "state": "active"}

        @router.post("/api/grants/{grant_id}/revoke", responses=REVOKE)
        async def revoke_grant(who: admin, grant_id: str, body: Revocation) -> dict[str, Any]:
            grant = await self._call(ledger.revoke_grant, grant_id, who.name, who.role, body.reason)
            log.info("grant revoked", extra={"grant": grant_id, "by": who.name})
            return {"grant": grant.model_dump(mode="json"), "state": "revoked"}

        @router.get("/api/actions", responses=LIST)
        async def actions(
            _: viewer, active: bool = True, session_id: Annotated[str | None, Query(max_length=256)] = None,
            limit: Annotated[int, Query(ge=1, le=1000)] = 200,
        ) -> list[dict[str, Any]]:  # fmt: skip
            """Session actions, newest first: in force only (`active`), or all with their state."""
            result: list[dict[str, Any]] = await self._call(
                ledger.actions, active_only=active, session_id=session_id, limit=limit
            )
            return result

        @router.post("/api/actions/{record_id}/lift", responses=LIFT)
        async def lift(who: reviewer, record_id: str, body: Lift) -> dict[str, Any]:
            record = await self._call(ledger.lift_record, record_id, who.name, body.note)
            try:
                await self.publisher.publish(record)
            except Exception as exc:
                log.warning("lift of %s not published: %s", record_id, type(exc).__name__)
                raise HTTPException(
                    status_code=503, detail="the broker is unavailable: the action is not lifted; try again"
                ) from None
            await self._call(ledger.record_actions, [record])
            log.info("session action lifted", extra={"record": record_id, "by": who.name})
            return {"record_id": record_id, "state": "lifted", "lift": record.model_dump(mode="json")}

        return router

    async def run(self) -> None:
        """The recorder: the actions topic into the store (offsets committed after), and each new
        action issued to the webhooks. Reconnects when the broker goes."""
        from aiokafka import AIOKafkaConsumer

        delay = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                self.settings.topics.actions, **aiokafka_options(self.settings),
                bootstrap_servers=self.settings.bootstrap, group_id=RECORDER_GROUP,
                enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=6000,
                heartbeat_interval_ms=2000, fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            )  # fmt: skip
            try:
                await consumer.start()
                delay = 0.5
                while True:
                    polled = await consumer.getmany(timeout_ms=500, max_records=500)
                    batch: list[SessionAction] = []
                    for records in polled.values():
                        for record in records:
                            try:
                                batch.append(SessionAction.model_validate_json(record.value))
                            except ValueError:
                                log.warning("actions topic: not a SessionAction at offset %d; skipped", record.offset)
                    if not batch:
                        continue
                    fresh = await asyncio.to_thread(self.ledger.record_actions, batch, time.time_ns())
                    await consumer.commit()
                    self.recorded += len(fresh)
                    issued = [a for a in fresh if a.kind is ActionKind.ISSUE]
                    if issued and self.on_actions is not None:
                        self.on_actions(issued)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("action recorder: %s: %s; retrying in %.1f s", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            finally:
                await consumer.stop()

    async def close(self) -> None:
        await self.publisher.close()
