"""The stage loop's error policy in a real worker process on a real broker: one poison event in a
full batch is one dead letter and the rest are screened; a model that raises on every event stops
the worker (exit 70) with nothing committed, instead of dead-lettering all traffic."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.agents.stage import FATAL_EXIT_CODE
from pipeline.settings import Settings
from pipeline.stack.broker import broker_command
from pipeline.stack.supervisor import child_env, wait_tcp
from pipeline.stack.topics import ensure_topics
from schemas.dead_letter import DeadLetter
from schemas.envelope import EnvelopeCodec, envelope_headers
from schemas.events import LLMEvent, Message
from schemas.evidence import Screening
from tests.helpers import REPO, free_port, test_settings
from tests.integration.kafka_io import consume_until, decoded, produce


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    port = free_port()
    command = broker_command("tansu", "127.0.0.1", port, tmp_path)
    with open(tmp_path / "broker.log", "wb") as log:
        broker = subprocess.Popen(command.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_tcp("127.0.0.1", port, 10.0)
            result = test_settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{port}", worker_agents="screen",
                                   topic_partitions=1, worker_stall_timeout_s=0)  # fmt: skip
            ensure_topics(result)
            yield result
        finally:
            broker.terminate()
            broker.wait(timeout=10)


def events(n: int, poison_at: int | None = None) -> list[LLMEvent]:
    return [
        LLMEvent(
            event_id=f"ev-{i}", trace_id=f"t{i}", span_id=f"s{i}", session_id=f"sess-{i % 3}", operation="chat",
            input_messages=(Message(role="user", content="POISON" if i == poison_at else f"question {i}"),),
            received_ns=1, normalized_ns=2,
        )
        for i in range(n)
    ]  # fmt: skip


def start_worker(settings: Settings, mode: str, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.faults.broken_worker", mode], cwd=REPO, env=child_env(settings), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def send(settings: Settings, batch: list[LLMEvent]) -> None:
    value = EnvelopeCodec(LLMEvent).encode(batch)
    asyncio.run(produce(settings.bootstrap, settings.topics.llm_events, [value], headers=envelope_headers(len(batch))))


def test_one_poison_event_in_a_full_batch_is_one_dead_letter_and_the_rest_are_screened(settings, tmp_path):
    batch = events(40, poison_at=17)
    send(settings, batch)
    worker = start_worker(settings, "poison", tmp_path / "worker.log")
    topics = settings.topics
    try:
        seen = asyncio.run(consume_until(
            settings.bootstrap, [topics.screenings, topics.dead_letters],
            lambda s: len(decoded(s[topics.screenings], Screening)) >= 39 and len(s[topics.dead_letters]) >= 1,
            timeout_s=90,
        ))  # fmt: skip
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    screened = {s.event_id for s in decoded(seen[topics.screenings], Screening)}
    assert screened == {e.event_id for e in batch} - {"ev-17"}
    [letter] = decoded(seen[topics.dead_letters], DeadLetter)
    assert letter.stage == "screen" and "ValueError: this event breaks the model" in letter.reason
    assert letter.source_item == 17 and letter.source_topic == topics.llm_events


def test_a_model_that_raises_on_every_event_stops_the_worker_and_commits_nothing(settings, tmp_path):
    send(settings, events(40))
    log_path = tmp_path / "worker.log"
    worker = start_worker(settings, "everything", log_path)
    try:
        assert worker.wait(timeout=120) == FATAL_EXIT_CODE, log_path.read_text()[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
    assert "failing on all input, not on bad items" in log_path.read_text()
    topics = settings.topics
    seen = asyncio.run(consume_until(settings.bootstrap, [topics.screenings, topics.dead_letters],
                                     lambda s: False, timeout_s=3))  # fmt: skip
    assert seen[topics.screenings] == [] and seen[topics.dead_letters] == []

    async def committed() -> dict[object, int | None]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=settings.app_id)
        await consumer.start()
        try:
            return {p: await consumer.committed(TopicPartition(topics.llm_events, p)) for p in range(1)}
        finally:
            await consumer.stop()

    assert asyncio.run(committed()) == {0: None}  # a restarted worker reads the batch again
