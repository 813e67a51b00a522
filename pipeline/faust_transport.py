"""The Faust Kafka transport with four corrections.

1. **A bounded long-poll.** Faust hard-codes `fetch_max_wait_ms=1500`. A broker that does not
   answer a multi-partition fetch as soon as data arrives (tansu, measured: ~720-1470 ms per
   delivery at 1500 ms, ~23 ms at 100 ms) then adds that wait to every hop. A real Kafka
   answers early, so a low bound costs only a few more idle fetches.

2. **No commit past records that were never delivered.** Faust's drain loop takes any jump in
   a partition's offsets for a gap left by compaction or transaction markers and counts the
   missing offsets as acknowledged, so the next commit passes them. Around a rebalance a jump
   has another cause: records fetched before the group's generation changed are dropped by
   Faust's `getmany`, while the fetch position has already moved past them. Seen in the
   scale-out fault test (tests/faults/test_scale_out.py): offsets 29-37 of a partition were
   never delivered, the gap was "acknowledged", offset 39 was committed, and the 25 events in
   those records were lost. oodwatch's topics are neither compacted nor transactional, so here
   a jump always means undelivered records: the partition is rewound to the first missing
   offset and the rest of the stale batch for it is skipped (delivery stays at-least-once; a
   replay is absorbed downstream by stable ids). With `exactly_once` (transactions) Faust's own
   gap handling is kept, since markers do leave gaps there. Faust's read offset is the last
   offset read, except after a seek, where it holds the offset sought (the next to read), so a
   single record missing right after a seek was no jump: the scale-out test then left a
   partition's offsets uncommitted for good behind that never-acked record (correction 3). Here
   the read offset is always the last one read.

3. **No commit past an unacked record at the head.** Faust allows one missing offset at the
   head of the acked ones (`min(acked) - committed > 1`), but its committed offset is the next
   one to read, so the record there, never acked, was committed past (issue 13).

4. **Generations that only grow.** Faust tells records fetched for an earlier assignment by the
   group's generation id. A broker that forgets its groups across a restart (noida: the rejoined
   group is generation 1 again) reuses a generation Faust has seen, so records fetched before
   the restart were delivered after the seek back to the committed offsets (issue 13). Each
   assignment here gets a generation above the last one.

Also: a Monitor whose per-record hooks do nothing (nobody reads Faust's own statistics here).
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP, ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka

#: Rewinds to the same offset before its records are taken to be gone (deleted by retention).
MAX_REWINDS = 3


class QuietMonitor(Monitor):  # type: ignore[misc]
    """Faust's Monitor keeps per-message, per-event and per-send statistics nobody here reads
    (oodwatch counts what it needs per batch): its per-record hooks do nothing."""

    def on_message_in(self, *args: Any, **kwargs: Any) -> None: ...

    def on_stream_event_in(self, *args: Any, **kwargs: Any) -> None: ...

    def on_stream_event_out(self, *args: Any, **kwargs: Any) -> None: ...

    def on_message_out(self, *args: Any, **kwargs: Any) -> None: ...

    def on_table_get(self, *args: Any, **kwargs: Any) -> None: ...

    def on_table_set(self, *args: Any, **kwargs: Any) -> None: ...

    def on_send_initiated(self, *args: Any, **kwargs: Any) -> None: ...

    def on_send_completed(self, *args: Any, **kwargs: Any) -> None: ...


class MonotonicGenerations(faust_aiokafka.ConsumerRebalanceListener):  # type: ignore[misc]
    """The broker's generation, or one more than the last this worker saw if that is higher."""

    last_generation = 0

    async def on_partitions_assigned(self, assigned: Any) -> None:
        thread = self._thread
        generation = max(thread._ensure_consumer()._coordinator.generation, self.last_generation + 1)
        self.last_generation = generation
        thread.app.consumer_generation_id = generation
        await thread.on_partitions_assigned(ensure_TPset(assigned), generation)


def _last_read(sought: int | None) -> int | None:
    """The read offset after a seek to `sought`: the offset before it (-1 at the start)."""
    return None if sought is None or sought < 0 else sought - 1


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by aiokafka when the consumer starts
            return consumer

        async def _seek_wait(self, consumer: Any, partitions: Any) -> None:
            """Faust's, with the read offset the last one read (correction 2)."""
            for tp, offset in partitions.items():
                consumer.seek(tp, offset)
                self.consumer._read_offset[tp] = _last_read(offset)
            await asyncio.wait_for(
                asyncio.gather(*[consumer.position(tp) for tp in partitions]),
                timeout=self.app.conf.broker_request_timeout,
            )

    class BoundedConsumer(faust_aiokafka.Consumer):
        RebalanceListener = MonotonicGenerations

        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

        async def perform_seek(self) -> None:
            """Faust's, with the read offset the last one read (correction 2)."""
            committed = await self.seek_to_committed()
            self._read_offset.update({tp: _last_read(offset) for tp, offset in committed.items()})
            self._committed_offset.update(
                {ensure_TP(tp): offset or None for tp, offset in committed.items() if offset is not None}
            )

        async def seek(self, partition: Any, offset: int) -> None:
            """Faust's, with the read offset the last one read (correction 2)."""
            await self._seek(partition, offset)
            self._read_offset[ensure_TP(partition)] = _last_read(offset)

        def _new_offset(self, tp: Any) -> int | None:
            """Commit nothing past an unacked record at the head (correction 3); the stall
            watchdog restarts a worker that never acks it."""
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            if acked and committed is not None and min(acked) > committed:
                return None
            return super()._new_offset(tp)  # type: ignore[no-any-return]

        async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by the fault tests
            """Faust 0.15.3's drain loop, with one change: an offset jump rewinds the partition
            (see the module docstring) instead of being counted as acknowledged."""
            callback = self.callback
            getmany = self.getmany
            consumer_should_stop = self._stopped.is_set
            fetcher_should_stop = fetcher._stopped.is_set
            get_read_offset = self._read_offset.__getitem__
            set_read_offset = self._read_offset.__setitem__
            set_flag = self.diag.set_flag
            unset_flag = self.diag.unset_flag
            commit_every = self._commit_every
            acks_enabled_for = self.app.topics.acks_enabled_for
            yield_every = 100
            num_since_yield = 0
            rewinds: dict[Any, tuple[int, int]] = {}  # partition: (rewind target, times)
            try:
                while not (consumer_should_stop() or fetcher_should_stop()):
                    set_flag(CONSUMER_FETCHING)
                    ait = getmany(timeout=1.0)
                    await self.sleep(0)
                    rewound: set[Any] = set()  # partitions rewound in this batch: skip their rest
                    if not self.should_stop:
                        async for tp, message in ait:
                            num_since_yield += 1
                            if num_since_yield > yield_every:
                                await asyncio.sleep(0)
                                num_since_yield = 0
                            if tp in rewound:
                                continue
                            offset = message.offset
                            r_offset = get_read_offset(tp)  # the last offset read (or None: nothing to go by)
                            if r_offset is None or offset > r_offset:
                                if r_offset is not None and offset - r_offset > 1 and acks_enabled_for(message.topic):
                                    target = r_offset + 1
                                    before = rewinds.get(tp)
                                    tries = before[1] + 1 if before and before[0] == target else 1
                                    rewinds[tp] = (target, tries)
                                    if self.in_transaction or tries > MAX_REWINDS:
                                        # Markers, or the records are really gone (retention): Faust's way.
                                        await self._add_gap(tp, r_offset + 1, offset)
                                    else:
                                        self.log.warning(
                                            "offsets of %r jumped from %r to %r: rewinding to %r (records "
                                            "fetched before a rebalance were not delivered)",
                                            tp, r_offset, offset, r_offset + 1,
                                        )  # fmt: skip
                                        rewound.add(tp)
                                        await self.seek(tp, r_offset + 1)
                                        continue
                                if commit_every is not None and self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                                set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
            except self.consumer_stopped_errors:
                if self.transport.app.should_stop:
                    self.log.info("Broker stopped consumer, shutting down...")
                    return
                raise
            except asyncio.CancelledError:
                if self.transport.app.should_stop:
                    self.log.info("Consumer shutting down for user cancel.")
                    return
                raise
            except Exception as exc:
                self.log.exception("Drain messages raised: %r", exc)
                raise
            finally:
                unset_flag(CONSUMER_FETCHING)

    class Transport(faust_aiokafka.Transport):
        Consumer = BoundedConsumer

    return Transport


class App(faust.App):
    """faust.App with the corrected transport and the quiet Monitor."""

    #: The worker's stall watchdog (pipeline.agents.watchdog), when create_app made one.
    stall_watchdog: Any = None

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_type = transport_class(fetch_max_wait_ms)
        kwargs.setdefault("Monitor", QuietMonitor)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_type(self.conf.broker_consumer, self)
