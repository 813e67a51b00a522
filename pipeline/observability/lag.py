"""Consumer lag per group, topic and partition: the end offset minus the group's committed
offset, read from the brokers (what was committed, not what a consumer says it read), so a
stalled or dead worker's partitions show their lag growing. One reader per deployment is
enough (the store process runs it); readings go to `oodwatch_consumer_lag`."""

from __future__ import annotations

import logging
import threading
from typing import Any

from pipeline.observability.metrics import metrics
from pipeline.settings import Settings

log = logging.getLogger(__name__)


def lag_groups(settings: Settings) -> list[str]:
    """The groups to watch: the configured ones, else this app's workers and the sink."""
    from pipeline.store.sink import SINK_GROUP

    named = [g.strip() for g in settings.lag_consumer_groups.split(",") if g.strip()]
    return named or [settings.app_id, SINK_GROUP]


def read_lag(admin: Any, consumer: Any, groups: list[str]) -> dict[tuple[str, str, int], int]:
    """{(group, topic, partition): lag} for every partition a group has committed on."""
    lag: dict[tuple[str, str, int], int] = {}
    for group in groups:
        committed = {tp: meta.offset for tp, meta in _committed(admin, group).items()}
        committed = {tp: offset for tp, offset in committed.items() if offset is not None and offset >= 0}
        if not committed:
            continue
        ends = consumer.end_offsets(list(committed))
        for tp, offset in committed.items():
            lag[(group, tp.topic, tp.partition)] = max(0, int(ends.get(tp, offset)) - int(offset))
    return lag


def _committed(admin: Any, group: str) -> dict[Any, Any]:
    """kafka-python 3 names it list_group_offsets (by group); 2.x list_consumer_group_offsets."""
    if hasattr(admin, "list_group_offsets"):
        return dict(admin.list_group_offsets({group: None}).get(group, {}))
    return dict(admin.list_consumer_group_offsets(group))


class LagReader:
    """Reads lag every `interval_s` on a daemon thread and sets the gauges."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.groups = lag_groups(settings)
        self.last: dict[tuple[str, str, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer-lag", daemon=True)

    def start(self) -> LagReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _clients(self) -> tuple[Any, Any]:
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

        from pipeline.kafka_security import kafka_python_options

        options = {"bootstrap_servers": self.settings.bootstrap, "request_timeout_ms": 10_000,
                   **kafka_python_options(self.settings)}  # fmt: skip
        return KafkaAdminClient(client_id="oodwatch-lag", **options), KafkaConsumer(
            client_id="oodwatch-lag", enable_auto_commit=False, **options
        )

    def read_once(self, admin: Any, consumer: Any) -> dict[tuple[str, str, int], int]:
        gauge = metrics().consumer_lag
        lag = read_lag(admin, consumer, self.groups)
        for (group, topic, partition), value in lag.items():
            gauge.labels(group=group, topic=topic, partition=str(partition)).set(value)
        self.last = lag
        return lag

    def _run(self) -> None:
        admin = consumer = None
        while True:
            try:
                if admin is None:
                    admin, consumer = self._clients()
                self.read_once(admin, consumer)
                metrics().lag_reads.labels(outcome="ok").inc()
            except Exception as exc:  # the broker may be away; try again next interval
                metrics().lag_reads.labels(outcome="error").inc()
                log.warning("consumer lag not read: %s: %s", type(exc).__name__, exc)
                for client in (admin, consumer):
                    if client is not None:
                        try:
                            client.close()
                        except Exception:
                            log.debug("closing a lag client failed", exc_info=True)
                admin = consumer = None
            if self._stop.wait(self.settings.lag_interval_s):
                break
        for client in (admin, consumer):
            if client is not None:
                client.close()
