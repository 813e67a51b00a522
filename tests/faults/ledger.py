"""What a fault test counts: events in, screened, bundles, duplicates, lost; read from the store
after the stack is stopped (so the test process can open the embedded engine itself), and the
screenings topic, so replays the faults caused are visible beside the zero duplicates."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.client import TriageClient
from pipeline.settings import Settings
from pipeline.stack.supervisor import Stack
from pipeline.store.clickhouse import Store
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import Session, TrafficGenerator
from schemas.evidence import Screening
from tests.helpers import MODEL_DIR, REPO, test_settings
from tests.integration.kafka_io import consume_until, decoded

#: Where each fault test appends its row (emptied when a test session starts: the file holds
#: the latest run, which docs/reliability.md quotes).
LEDGER_FILE = Path(os.environ.get("OODWATCH_FAULT_LEDGER", REPO / ".oodwatch" / "fault-ledger.jsonl"))


def traffic(service: str, events: int, seed: int, attack_ratio: float = 0.2) -> list[Session]:
    sessions = list(TrafficGenerator(seed=seed, attack_ratio=attack_ratio).sessions(events))
    for session in sessions:
        session.service = service
    return sessions


def llm_events(sessions: list[Session]) -> int:
    return sum(s.llm_spans() for s in sessions)


@contextmanager
def running_stack(tmp_path: Path, workers: int = 1, **overrides: Any) -> Iterator[Stack]:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` first")
    stack = Stack(test_settings(tmp_path, **overrides), workers=workers)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


class Feeder:
    """Sends sessions through the real OTLP path on a thread, a batch every `every_s`, while a
    test injects faults on the main thread."""

    def __init__(
        self, settings: Settings, batches: list[list[Session]], every_s: float = 0.5, retry_for_s: float = 0.0
    ) -> None:
        self.emitter = SessionEmitter(settings.receiver_url, retry_for_s=retry_for_s)
        self.batches = batches
        self.every_s = every_s
        self.flushed: list[bool] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._thread.join(timeout=300)
        self.emitter.shutdown()

    def _run(self) -> None:
        for batch in self.batches:
            self.emitter.emit(batch)
            time.sleep(self.every_s)
        self.flushed.append(self.emitter.flush())


def wait_screened(client: TriageClient, settings: Settings, service: str, expected: int, timeout_s: float) -> int:
    """Distinct events of `service` screened so far, once all are or the time is up."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            seen = int(client.stats(service=service)["screenings"])
        except Exception:  # the store may be the thing that is down
            seen = -1
        if seen >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def topic_records(settings: Settings, service: str, expected: int) -> int:
    """Screenings of `service` on the topic, replays included."""
    topic = settings.topics.screenings

    def count(seen: dict[str, list[Any]]) -> int:
        return sum(1 for s in decoded(seen[topic], Screening) if s.service == service)

    seen = asyncio.run(consume_until(settings.bootstrap, [topic], lambda s: count(s) >= expected, timeout_s=10))
    return count(seen)


def events_kept_by_broker(settings: Settings, service: str, expected: int) -> int:
    """Distinct events of `service` in what the broker holds on the receiver's topic: the ones it
    kept of those it acknowledged. Read while the stack runs."""
    from schemas.otel_mapping import map_request, parse_trace_request

    def distinct(seen: dict[str, list[Any]]) -> set[str]:
        return {
            event.event_id
            for record in seen[settings.topics.otlp_spans]
            for event in map_request(parse_trace_request(record.value)).events
            if event.service == service
        }

    seen = asyncio.run(
        consume_until(settings.bootstrap, [settings.topics.otlp_spans], lambda s: len(distinct(s)) >= expected, 10)
    )
    return len(distinct(seen))


def ledger(settings: Settings, fault: str, service: str, sent: int, on_topic: int, **extra: Any) -> dict[str, Any]:
    """Counts from the stopped stack's store, appended to LEDGER_FILE."""
    store = Store.open(settings.store_dsn)
    try:
        params = {"service": service}
        screened = store.query(
            "SELECT count() AS rows, uniqExact(event_id) AS events FROM screenings FINAL "
            "WHERE service = {service:String}",
            params,
        )[0]
        bundles = store.query(
            "SELECT count() AS rows, uniqExact(bundle_id) AS bundles, uniqExact(session_id) AS sessions "
            "FROM evidence_bundles WHERE service = {service:String}",
            params,
        )[0]
    finally:
        store.close()
    row = {
        "fault": fault,
        "in": sent,
        "screened": int(screened["events"]),
        "bundles": int(bundles["bundles"]),
        "duplicates": int(screened["rows"]) - int(screened["events"]) + int(bundles["rows"]) - int(bundles["bundles"]),
        "lost": sent - int(screened["events"]),
        "replayed_on_topic": max(0, on_topic - int(screened["events"])),
        **extra,
    }
    return record(row)


def record(row: dict[str, Any]) -> dict[str, Any]:
    with LEDGER_FILE.open("a") as out:
        out.write(json.dumps(row) + "\n")
    return row
