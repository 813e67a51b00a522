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
    """Checks the partitions the worker owns on `topics` (the agents' sources) every call."""

    def __init__(self, bootstrap: str, group_id: str, topics: Iterable[str], stall_after_s: float) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = frozenset(topics)
        self.tracker = StallTracker(stall_after_s)
        self._clients: tuple[Any, Any] | None = None

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
            log.error(
                "worker stalled: no offset committed for %.0f s while records wait (%s); exiting with %d so it "
                "restarts from its committed offsets",
                self.tracker.stall_after_s, detail, STALL_EXIT_CODE,
            )  # fmt: skip
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(STALL_EXIT_CODE)

    async def _offsets(self, owned: list[Any]) -> tuple[dict[Any, int], dict[Any, int | None]]:
        """Log end offsets (a consumer in no group) and the group's committed offsets (an admin
        client: a group member of its own would make the group rebalance)."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        if self._clients is None:
            ends_client = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await ends_client.start()
            await admin.start()
            self._clients = (ends_client, admin)
        ends_client, admin = self._clients
        ends = await ends_client.end_offsets(owned)
        found = await admin.list_consumer_group_offsets(self.group_id, partitions=owned)
        committed = {tp: (meta.offset if meta.offset >= 0 else None) for tp, meta in found.items()}
        return ends, committed
