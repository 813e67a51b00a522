"""A Faust Kafka transport with a bounded consumer long-poll and generations that only grow.

Faust hard-codes `fetch_max_wait_ms=1500`. A broker that does not answer a multi-partition
fetch as soon as data arrives (tansu, measured: ~720-1470 ms per delivery at 1500 ms, ~23 ms
at 100 ms) then adds that wait to every hop. A real Kafka answers early, so a low bound
costs only a few more idle fetches.

Faust tells records fetched for an earlier assignment from current ones by the group's
generation id. A broker that forgets its groups across a restart (noida: the rejoined group is
generation 1 again) reuses a generation Faust has seen, so records fetched before the restart
are still delivered after the seek back to the committed offsets; the read offset they leave
behind then drops the re-fetched records below it, and those are never processed (issue 13;
docs/reliability.md). Each assignment here gets a generation above the last one.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.sensors.monitor import Monitor
from faust.transport.consumer import ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


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


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by aiokafka when the consumer starts
            return consumer

    class BoundedConsumer(faust_aiokafka.Consumer):
        RebalanceListener = MonotonicGenerations

        def _new_offset(self, tp: Any) -> int | None:
            """Faust allows one missing offset at the head of the acked ones (`min(acked) -
            committed > 1`), but its committed offset is the next one to read: the record there,
            unacked (a delivery lost in a rebalance), would be committed past. Commit nothing
            until it is acked; the stall watchdog restarts a worker that never acks it."""
            acked = self._acked[tp]
            committed = self._committed_offset[tp]
            if acked and committed is not None and min(acked) > committed:
                return None
            return super()._new_offset(tp)  # type: ignore[no-any-return]

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            """Faust reads a jump in offsets as compaction and acks the offsets skipped. The topics
            agents read are never compacted: a jump is a fetch that raced a rebalance, and acking
            it would commit records no agent saw. Left unacked, the commit stops before them and
            the stall watchdog restarts the worker from there."""
            log.warning(
                "offsets %d..%d of %s[%d] were skipped by the fetcher: not committing past them",
                offset_from, offset_to - 1, tp.topic, tp.partition,
            )  # fmt: skip

        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = BoundedConsumer

    return Transport


class App(faust.App):
    """faust.App with the bounded-fetch transport."""

    #: The worker's stall watchdog (pipeline.agents.watchdog), when create_app made one.
    stall_watchdog: Any = None

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_type = transport_class(fetch_max_wait_ms)
        kwargs.setdefault("Monitor", QuietMonitor)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_type(self.conf.broker_consumer, self)
