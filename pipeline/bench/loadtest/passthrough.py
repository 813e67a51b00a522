"""Baseline processors on the same broker: a raw aiokafka consume->produce loop and a bare Faust
agent, each forwarding every record (headers included) from one topic to another. Run as child processes:
`python -m pipeline.bench.loadtest.passthrough kafka|faust IN OUT`."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pipeline.settings import Settings


async def kafka_passthrough(bootstrap: str, source: str, sink: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=f"bench-kafka-{source}", auto_offset_reset="earliest",
        enable_auto_commit=True, fetch_max_wait_ms=100, max_poll_records=2000,
    )  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await consumer.start()
    await producer.start()
    try:
        while True:
            polled = await consumer.getmany(timeout_ms=200, max_records=2000)
            futures = [
                await producer.send(sink, key=record.key, value=record.value, headers=list(record.headers))
                for records in polled.values()
                for record in records
            ]
            if futures:
                await asyncio.gather(*futures)
    finally:
        await consumer.stop()
        await producer.stop()


def faust_passthrough(settings: Settings, source: str, sink: str) -> None:
    """The same App, transport and batching knobs as the pipeline, with a forwarding agent."""
    import faust

    from pipeline.faust_transport import App

    app = App(
        f"bench-faust-{source}", fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
        broker=f"kafka://{settings.bootstrap}", store="memory://", topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest", web_enabled=False, value_serializer="raw", key_serializer="raw",
        producer_linger=0.005,
    )  # fmt: skip
    inbound = app.topic(source, key_type=bytes, value_type=bytes)
    outbound = app.topic(sink, key_type=bytes, value_type=bytes)

    @app.agent(inbound)
    async def forward(stream: Any) -> None:
        async for batch in stream.take_events(settings.screen_batch_size, within=settings.screen_batch_window_s):
            for event in batch:
                await outbound.send(key=event.key, value=event.value, headers=list(event.message.headers or ()))

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def main() -> None:
    kind, source, sink = sys.argv[1:4]
    settings = Settings()
    if kind == "kafka":
        asyncio.run(kafka_passthrough(settings.bootstrap, source, sink))
    else:
        faust_passthrough(settings, source, sink)


if __name__ == "__main__":
    main()
