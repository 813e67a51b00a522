"""A Faust Kafka transport whose consumer long-poll is bounded by settings.

Faust hard-codes `fetch_max_wait_ms=1500`. A broker that does not answer a multi-partition
fetch as soon as data arrives (tansu, measured: ~720-1470 ms per delivery at 1500 ms, ~23 ms
at 100 ms) then adds that wait to every hop. A real Kafka answers early, so a low bound
costs only a few more idle fetches.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def transport_class(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_max_wait_ms  # read by aiokafka when the consumer starts
            return consumer

    class BoundedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        Consumer = BoundedConsumer

    return Transport


class App(faust.App):
    """faust.App with the bounded-fetch transport."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        self._transport_type = transport_class(fetch_max_wait_ms)
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return self._transport_type(self.conf.broker_consumer, self)
