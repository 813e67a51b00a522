"""Create the pipeline's topics up front (Faust creates only its internal ones)."""

from __future__ import annotations

import contextlib
import time

from pipeline.settings import Settings


def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Waits for the broker up to timeout_s."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from pipeline.kafka_security import kafka_python_options

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.bootstrap, client_id="oodwatch-admin", request_timeout_ms=5000,
                **kafka_python_options(settings),
            )  # fmt: skip
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka broker at {settings.bootstrap} not reachable: {exc}") from exc
            time.sleep(0.2)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in settings.topics.all() if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # a concurrent creator won
                replicas = settings.topic_replication_factor
                admin.create_topics(
                    [
                        NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=replicas)
                        for name in missing
                    ]
                )
        return missing
    finally:
        admin.close()
