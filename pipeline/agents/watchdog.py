"""A worker that has stopped consuming exits, so it restarts from its committed offsets.

Faust can stay wedged after its broker comes back: the group rejoins, partitions are assigned
and sought to their committed offsets, and then nothing more is fetched while the worker looks
healthy (faust-streaming issue #523, open; reproduced here by restarting the embedded broker
under load, docs/reliability.md). Offsets are committed only for what was processed, so the
cure is a restart. The watchdog reads the group's committed offsets and the log end offsets
from the broker with a client of its own (the worker's may be the wedged part): a partition
this worker owns that has records past its committed offset, and whose committed offset has
not moved for `stall_after_s`, makes the worker log why and exit with STALL_EXIT_CODE, which
the embedded supervisor, systemd (`Restart=on-failure`) and Kubernetes restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("oodwatch.watchdog")

#: EX_TEMPFAIL: try again. The supervisor restarts a worker that exits with it.
STALL_EXIT_CODE = 75
CHECK_TIMEOUT_S = 5.0


@dataclass
class StallTracker:
    """Per partition: the committed offset last seen and since when it has not moved."""

    stall_after_s: float
    _since: dict[Any, tuple[int, float]] = field(default_factory=dict)

    def observe(self, now_s: float, committed: Mapping[Any, int | None], ends: Mapping[Any, int]) -> list[Any]:
        """The partitions stalled as of `now_s`: behind their log end, committed offset unmoved
        for `stall_after_s`. A partition caught up, moving, or no longer owned starts afresh."""
        stalled = []
        for tp, end in ends.items():
            offset = committed.get(tp) or 0
            if offset >= end:
                self._since.pop(tp, None)
                continue
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                self._since[tp] = (offset, now_s)
            elif now_s - seen[1] >= self.stall_after_s:
                stalled.append(tp)
        for tp in set(self._since) - set(ends):
            del self._since[tp]
        return stalled

    def reset(self) -> None:
        """The broker could not be asked: time without it is not the worker's stall."""
        self._since.clear()


class StallWatchdog:
    """Checks the partitions the worker owns on `topics` (the agents' sources) every call, and
    that the worker's group join completes: noida can leave a restarted worker waiting in a join
    that never ends, which owns nothing and so never looks behind."""

    def __init__(
        self, bootstrap: str, group_id: str, topics: Iterable[str], stall_after_s: float,
        options: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """`options`: the Kafka clients' security settings (pipeline.kafka_security)."""
        self.options = options or {}
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = frozenset(topics)
        self.tracker = StallTracker(stall_after_s)
        self._client: Any = None
        #: Since when the worker has been waiting for its group to assign partitions (None: joined).
        self.joining_since: float | None = None

    def rebalancing(self, now_s: float) -> None:
        self.joining_since = now_s

    def joined(self) -> None:
        self.joining_since = None

    def guard_joins(self, interval_s: float = 5.0) -> threading.Thread:
        """Faust starts timers only once its tables are recovered, that is after the first
        assignment: a join that never ends is watched from a thread of its own."""

        def guard() -> None:
            while True:
                time.sleep(interval_s)
                self.check_join(time.monotonic())

        thread = threading.Thread(target=guard, name="join-guard", daemon=True)
        thread.start()
        return thread

    def check_join(self, now_s: float) -> None:
        """Exit if the join has lasted `stall_after_s`; time the broker refuses connections does
        not count."""
        since = self.joining_since
        if since is None:
            return
        if not self._broker_accepts():
            self.joining_since = now_s
        elif now_s - since >= self.tracker.stall_after_s:
            self._exit(f"its consumer group has not assigned it partitions for {now_s - since:.0f} s")

    def _broker_accepts(self) -> bool:
        for address in self.bootstrap.split(","):
            host, _, port = address.strip().rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=2.0):
                    return True
            except (OSError, ValueError):
                continue
        return False

    async def check(self, assigned: Iterable[Any], now_s: float) -> None:
        from aiokafka import TopicPartition

        owned = [TopicPartition(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics]
        if not owned:
            return
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                ends, committed = await self._offsets(owned)
        except Exception as exc:  # the broker is away: that is not a stall of this worker
            log.debug("stall check skipped: %s", exc)
            self.tracker.reset()
            return
        stalled = self.tracker.observe(now_s, committed, ends)
        if stalled:
            detail = ", ".join(f"{tp.topic}[{tp.partition}] at {committed.get(tp)} of {ends[tp]}" for tp in stalled)
            self._exit(f"no offset committed for {self.tracker.stall_after_s:.0f} s while records wait ({detail})")

    def _exit(self, why: str) -> None:
        log.error("worker stalled: %s; exiting with %d so it restarts from its committed offsets", why, STALL_EXIT_CODE)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(STALL_EXIT_CODE)

    async def _offsets(self, owned: list[Any]) -> tuple[dict[Any, int], dict[Any, int | None]]:
        """Log end offsets and the group's committed offsets, from a consumer of its own that names
        the group but subscribes to nothing, so it never joins it (a member would make the group
        rebalance); OffsetFetch through it works on every broker here, the admin API not on tansu."""
        from aiokafka import AIOKafkaConsumer

        if self._client is None:
            client = AIOKafkaConsumer(
                **self.options, bootstrap_servers=self.bootstrap, group_id=self.group_id, enable_auto_commit=False
            )
            await client.start()
            self._client = client
        ends = await self._client.end_offsets(owned)
        committed = {tp: await self._client.committed(tp) for tp in owned}
        return ends, committed
