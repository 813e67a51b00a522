"""The inline check: tier 1 within the deployment's budget, tier 2 when the budget allows, the
profile's actions less what grants relax, the session's action from the stream, and the
event into the stream (without a second screening).

Tier 1 runs in one thread fed by a micro-batcher: checks that arrive together are scored as one
batch (the detectors are batch-first), and the event loop stays free to answer. A lone short
check is scored on the loop itself (the thread hop cost more than the scoring). Each check waits
at most its remaining budget; a check tier 1 has not answered by then is answered by the
deployment's failure mode (open: allow; closed: its closed action) and says so. The batch still
finishes, and what it screened still enters the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.guard.actions import ActionBook
from pipeline.guard.contract import USER_ATTRIBUTE, GuardAnswer, GuardRequest, SessionActionView
from pipeline.guard.decide import decide
from pipeline.guard.grants import GrantBook
from pipeline.guard.outbox import Outbox
from pipeline.guard.tier1 import Tier1
from pipeline.policy import DeploymentTier
from schemas.events import LLMEvent
from schemas.evidence import CategoryScore, Decision, Escalation, Screening, bundle_id_for
from schemas.guard import GuardAction, strictest

log = logging.getLogger(__name__)

TIER2_FIRST_ESTIMATE_MS = 40.0


class Overloaded(RuntimeError):
    pass


class Tier1Failed(RuntimeError):
    pass


class Sessions(MutableMapping[str, Any]):
    """The guard's session-risk table: the routing policy's accumulation for guarded sessions,
    bounded (least recently used dropped first)."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._rows: OrderedDict[str, Any] = OrderedDict()

    def __getitem__(self, key: str) -> Any:
        value = self._rows[key]
        self._rows.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._rows[key] = value
        self._rows.move_to_end(key)
        if len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        del self._rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class _Pending:
    event: LLMEvent
    future: asyncio.Future[Screening]


@dataclass
class BatcherCounters:
    batches: int = 0
    events: int = 0
    #: Checks answered by the failure mode because tier 1 had not answered within the budget.
    late: int = 0
    overloaded: int = 0
    failures: int = 0


#: A lone check of at most INLINE_MAX_CHARS is scored on the event loop while tier 1's moving
#: average on such checks stays under INLINE_MAX_MS (~0.2 ms here): handing it to the scoring
#: thread and back cost more than the scoring. Guard bench, three runs before and six after:
#: server p50 1.4-1.7 -> 1.0-1.3 ms; the proxy's added p50 (two checks) 4.2-6.3 -> 3.1-4.5 ms.
#: A slow tier 1 (the average over the bound) goes back to the thread, where the budget can
#: still answer for it.
INLINE_MAX_CHARS = 2048
INLINE_MAX_MS = 1.0


def _short(event: LLMEvent) -> bool:
    size = sum(len(m.content) for m in (*event.input_messages, *event.output_messages))
    size += sum(len(t.description) for t in event.tool_definitions)
    size += sum(len(c.arguments) + len(c.result or "") for c in event.tool_calls)
    return size <= INLINE_MAX_CHARS


def _timed(score: Callable[[list[LLMEvent]], np.ndarray], events: list[LLMEvent]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = score(events)
    return scores, (time.perf_counter() - started) * 1000


class Tier1Batcher:
    """Checks waiting for tier 1, scored in batches by one thread; routing (which reads and writes
    the session table) runs on the event loop."""

    def __init__(self, tier1: Tier1, outbox: Outbox, *, max_batch: int, max_pending: int, sessions: Sessions) -> None:
        self.tier1 = tier1
        self.outbox = outbox
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.sessions = sessions
        self.counters = BatcherCounters()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-tier1")
        self._task: asyncio.Task[None] | None = None
        #: Moving average of tier 1's time on a lone short check (ms); None until one is measured.
        self.lone_ms: float | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, event: LLMEvent) -> asyncio.Future[Screening]:
        if self._queue.qsize() >= self.max_pending:
            self.counters.overloaded += 1
            raise Overloaded(f"{self._queue.qsize()} checks wait for tier 1 (the limit)")
        future: asyncio.Future[Screening] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(event, future))
        return future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = [p.event for p in batch]
            self.counters.batches += 1
            self.counters.events += len(events)
            lone = len(events) == 1 and _short(events[0])
            try:
                if lone and self.lone_ms is not None and self.lone_ms < INLINE_MAX_MS:
                    scores, took_ms = _timed(self.tier1.score, events)  # on the loop: cheaper than the hop
                else:
                    scores, took_ms = await loop.run_in_executor(self._executor, _timed, self.tier1.score, events)
                if lone:
                    self.lone_ms = took_ms if self.lone_ms is None else 0.8 * self.lone_ms + 0.2 * took_ms
                screenings = self.tier1.route(events, scores, self.sessions)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.counters.failures += 1
                log.exception("guard: tier 1 failed on a batch of %d", len(events))
                for pending in batch:
                    self.outbox.put((pending.event, None))  # not screened: the stream screens it
                    if not pending.future.done():
                        pending.future.set_exception(Tier1Failed(f"{type(exc).__name__}: {exc}"))
                continue
            for pending, screening in zip(batch, screenings, strict=True):
                if pending.future.done():  # answered by the failure mode already: stream what was screened
                    self.counters.late += 1
                    self.outbox.put((pending.event, screening))
                else:
                    pending.future.set_result(screening)

    def snapshot(self) -> dict[str, Any]:
        return {"waiting": self._queue.qsize(), **vars(self.counters)}


class Tier2Inline:
    """Tier 2 (the escalation path's second look) for deployments whose budget has room for it.
    Its cost is learnt as it runs (a moving average), so a check does not start what it cannot
    finish in time."""

    def __init__(self, investigator: Any) -> None:
        self.investigator = investigator
        self.estimate_ms = TIER2_FIRST_ESTIMATE_MS
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-tier2")

    async def assess(self, escalation: Escalation, timeout_s: float) -> list[CategoryScore]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        results = await asyncio.wait_for(
            loop.run_in_executor(self._executor, self.investigator.assess, [escalation]), timeout_s
        )
        self.estimate_ms = 0.8 * self.estimate_ms + 0.2 * (time.perf_counter() - started) * 1000
        return [
            CategoryScore(category=f"tier2:{s.category}", score=s.score, threshold=s.threshold, detector=s.detector)
            for result in results
            for s in result.scores
        ]

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Guard:
    def __init__(
        self, tier1: Tier1, *, grants: GrantBook, actions: ActionBook, outbox: Outbox, tier2: Tier2Inline | None = None,
        max_batch: int = 32, max_pending: int = 1024, max_sessions: int = 100_000,
    ) -> None:  # fmt: skip
        self.tier1 = tier1
        self.policy = tier1.policy
        self.grants = grants
        self.actions = actions
        self.outbox = outbox
        self.tier2 = tier2
        self.batcher = Tier1Batcher(
            tier1, outbox, max_batch=max_batch, max_pending=max_pending, sessions=Sessions(max_sessions)
        )
        self.answers: dict[str, int] = {a.value: 0 for a in GuardAction}
        self.failures = 0

    def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        if self.tier2 is not None:
            self.tier2.stop()

    async def check(self, request: GuardRequest, started: float, received_ns: int) -> GuardAnswer:
        """`started`: time.perf_counter() when the request arrived; the budget counts from there."""
        event = request.to_event(received_ns)
        guard = self.policy.guard
        deployment_name, deployment = guard.deployment_for(event.service, event.tenant)
        profile_name, profile = guard.profile_for(event.tenant)
        budget_ms = min(deployment.budget_ms, request.budget_ms or deployment.budget_ms)
        deadline = started + budget_ms / 1000
        skipped: dict[str, str] = {}
        screening: Screening | None = None
        failure: str | None = None
        try:
            future = self.batcher.submit(event)
            screening = await asyncio.wait_for(future, max(0.0, deadline - time.perf_counter()))
        except Overloaded as exc:
            failure = f"guard overloaded: {exc}"
            self.outbox.put((event, None))  # never reached tier 1: the stream screens it
        except TimeoutError:
            failure = f"tier 1 did not finish within the {budget_ms:g} ms budget"
        except Tier1Failed as exc:
            failure = f"tier 1 failed: {exc}"
        now_ns = time.time_ns()
        session_action = self.actions.active(event.session_id, now_ns)
        if screening is None:
            return self._failed(event, deployment_name, deployment, profile_name, budget_ms, started, failure or "",
                                session_action)  # fmt: skip
        scores = list(screening.scores)
        tiers_run = ["tier1"]
        if screening.decision is not Decision.PASS:
            if "tier2" not in deployment.inline:
                skipped["tier2"] = "not inline for this deployment: it runs in the stream"
            elif self.tier2 is None:
                skipped["tier2"] = "not built (oodwatch models build)"
            else:
                left_ms = (deadline - time.perf_counter()) * 1000
                if left_ms < self.tier2.estimate_ms:
                    skipped["tier2"] = (
                        f"over budget: {left_ms:.1f} ms left, tier 2 takes ~{self.tier2.estimate_ms:.0f} ms"
                    )
                else:
                    try:
                        scores += await self.tier2.assess(Escalation(event=event, screening=screening), left_ms / 1000)
                        tiers_run.append("tier2")
                    except TimeoutError:
                        skipped["tier2"] = f"did not finish within the {budget_ms:g} ms budget"
                    except Exception as exc:
                        log.exception("guard: tier 2 failed")
                        skipped["tier2"] = f"failed: {type(exc).__name__}"
        user = event.attributes.get(USER_ATTRIBUTE, "")
        grants = self.grants.covering(event.tenant, event.service, user, now_ns)
        verdict = decide(self.policy, profile, scores, screening.decision, grants, self.grants)
        reasons = list(verdict.reasons)
        if session_action is not None:
            reasons.append(f"session under {session_action.action.value} until {session_action.expires_ns}: "
                           f"{session_action.reason}")  # fmt: skip
        action = strictest(verdict.action, session_action.action if session_action else None)
        if verdict.grant_id:
            screening = screening.model_copy(update={"grant_id": verdict.grant_id})
        streamed = self.outbox.put((event, screening))
        self.answers[action.value] += 1
        escalated = screening.decision is Decision.ESCALATE
        return GuardAnswer(
            action=action,
            reasons=reasons,
            categories=list(verdict.categories),
            scores={s.category: round(s.score, 4) for s in scores if "/" not in s.category},
            evidence_id=bundle_id_for(event.event_id) if escalated else event.event_id,
            event_id=event.event_id,
            session_id=event.session_id,
            session_action=_view(session_action),
            grant_id=verdict.grant_id,
            deployment=deployment_name,
            profile=profile_name,
            budget_ms=budget_ms,
            budget_used_ms=round((time.perf_counter() - started) * 1000, 3),
            tiers_run=tiers_run,
            tiers_skipped=skipped,
            streamed="queued" if streamed else "not_streamed",
        )

    def _failed(
        self, event: LLMEvent, deployment_name: str, deployment: DeploymentTier, profile_name: str, budget_ms: float,
        started: float, failure: str, session_action: Any,
    ) -> GuardAnswer:  # fmt: skip
        """The deployment's failure mode, said plainly. The event still enters the stream (the
        batcher streams what it screens late; what it never screened goes to `llm-events`)."""
        self.failures += 1
        mode = GuardAction.ALLOW if deployment.on_error == "open" else deployment.closed_action
        action = strictest(mode, session_action.action if session_action else None)
        self.answers[action.value] += 1
        reason = f"{failure}; failing {deployment.on_error} ({deployment_name}): {mode.value}"
        log.warning("guard answered by its failure mode", extra={"event_id": event.event_id, "reason": reason})
        skipped = {"tier1": failure}
        if "tier2" in deployment.inline:
            skipped["tier2"] = "tier 1 did not answer"
        return GuardAnswer(
            action=action,
            reasons=[reason],
            categories=[],
            scores={},
            evidence_id=event.event_id,
            event_id=event.event_id,
            session_id=event.session_id,
            session_action=_view(session_action),
            deployment=deployment_name,
            profile=profile_name,
            budget_ms=budget_ms,
            budget_used_ms=round((time.perf_counter() - started) * 1000, 3),
            tiers_run=[],
            tiers_skipped=skipped,
            failure=reason,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "answers": dict(self.answers),
            "answered_by_failure_mode": self.failures,
            "tier1": self.batcher.snapshot(),
            "tier2_estimate_ms": round(self.tier2.estimate_ms, 1) if self.tier2 else None,
            "outbox": self.outbox.snapshot(),
            "grants": self.grants.snapshot(),
            "actions": self.actions.snapshot(),
        }


def _view(action: Any) -> SessionActionView | None:
    if action is None:
        return None
    return SessionActionView(
        action=action.action, record_id=action.record_id, reason=action.reason, expires_ns=action.expires_ns,
        grant_id=action.grant_id,
    )  # fmt: skip
