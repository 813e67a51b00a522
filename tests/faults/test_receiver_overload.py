"""The OTLP receiver under overload, against a real tansu broker and a real receiver process.

A flood past the receiver's bounds gets 429 (or 503) with Retry-After, never a silent drop:
every span acknowledged with a 2xx is in the topic, and a client that retries after Retry-After
gets all of its spans in. With the broker gone the receiver answers 503 quickly instead of
hanging, and a flood of large requests leaves its memory bounded. The observed numbers are
printed (`pytest -s`) for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from pipeline.settings import Settings, Topics
from pipeline.stack.broker import broker_command
from pipeline.stack.supervisor import child_env, http_ok, wait_tcp
from pipeline.stack.topics import ensure_topics
from tests.faults.ledger import record as ledger_record
from tests.helpers import free_port, request, span, test_settings
from tests.integration.kafka_io import consume_until

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@contextmanager
def running_broker(data: Path, port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """tansu on 127.0.0.1: (bootstrap, process), stopped by PID."""
    port = port or free_port()
    command = broker_command("tansu", "127.0.0.1", port, data)
    with open(data / f"broker-{port}.log", "ab") as log:
        process = subprocess.Popen(command.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_tcp("127.0.0.1", port, 10.0), "tansu did not start listening"
            yield f"127.0.0.1:{port}", process
        finally:
            process.terminate()
            process.wait(timeout=10)


@contextmanager
def running_receiver(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    """`oodwatch receiver` as a child process, stopped by PID."""
    log_path = settings.data_dir / "receiver.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "receiver"], env=child_env(settings), stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not http_ok(f"{settings.receiver_url}/healthz"):
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.05)
            yield process
        finally:
            process.terminate()
            process.wait(timeout=15)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def traced_request(n: int, spans_per_request: int, pad: int) -> tuple[bytes, set[bytes]]:
    """A request of distinct traces (one span each); the span ids identify what was sent."""
    spans = []
    for i in range(spans_per_request):
        span_id = (n * 1000 + i + 1).to_bytes(8, "big")
        spans.append(span({"gen_ai.operation.name": "chat", "input.value": "x" * pad}, trace_id=os.urandom(16),
                          span_id=span_id))  # fmt: skip
    return request(*spans).SerializeToString(), {s.span_id for s in spans}


def span_ids_in(records: list[Any]) -> Counter[bytes]:
    found: Counter[bytes] = Counter()
    for record in records:
        for resource in ExportTraceServiceRequest.FromString(record.value).resource_spans:
            for scope in resource.scope_spans:
                found.update(s.span_id for s in scope.spans)
    return found


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_broker(tmp_path_factory.mktemp("broker")) as (bootstrap, _):
        yield bootstrap


def receiver_settings(tmp_path: Path, bootstrap: str, topic: str, **overrides: Any) -> Settings:
    settings = test_settings(tmp_path, kafka_bootstrap=bootstrap, topics=Topics(otlp_spans=topic), **overrides)
    ensure_topics(settings)
    return settings


async def test_a_flood_gets_429_with_retry_after_and_no_acknowledged_span_is_lost(broker: str, tmp_path: Path) -> None:
    settings = receiver_settings(
        tmp_path, broker, "flood-spans", receiver_max_inflight_requests=4, receiver_max_inflight_bytes=256 * 1024
    )
    requests = [traced_request(n, spans_per_request=20, pad=2_000) for n in range(300)]  # ~40 KiB each
    sent_spans = sum(len(ids) for _, ids in requests)
    statuses: Counter[int] = Counter()
    acked: set[bytes] = set()
    retry_afters: set[str] = set()
    with running_receiver(settings) as receiver:
        rss_before = rss_kib(receiver.pid)
        url = f"{settings.receiver_url}/v1/traces"
        connector = aiohttp.TCPConnector(limit=300)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def post(body: bytes) -> tuple[int, str | None]:
                async with session.post(url, data=body, headers=PROTOBUF) as response:
                    await response.read()
                    return response.status, response.headers.get("Retry-After")

            started = time.monotonic()
            answers = await asyncio.gather(*(post(body) for body, _ in requests))
            flood_s = time.monotonic() - started
            rejected = []
            for (body, ids), (status, retry_after) in zip(requests, answers, strict=True):
                statuses[status] += 1
                if status == 200:
                    acked |= ids
                else:
                    assert status in (429, 503) and retry_after is not None, (status, retry_after)
                    retry_afters.add(retry_after)
                    rejected.append((body, ids, retry_after))
            first_round_acked = len(acked)
            # The flood's 2xx spans are all on the broker, before any retry.
            topic = settings.topics.otlp_spans
            seen = await consume_until(broker, [topic], lambda s: acked <= set(span_ids_in(s[topic])), timeout_s=30)
            in_topic = span_ids_in(seen[topic])
            assert acked <= set(in_topic), f"{len(acked - set(in_topic))} acknowledged spans missing"
            # A well-behaved client retries after Retry-After (with jitter): then every span gets in.
            rng = random.Random(7)
            retries = Counter[int]()

            async def retry(body: bytes, ids: set[bytes], retry_after: float) -> None:
                for _ in range(100):
                    await asyncio.sleep(retry_after * rng.uniform(0.2, 1.0))
                    retries[0] += 1
                    status, header = await post(body)
                    if status == 200:
                        acked.update(ids)
                        return
                    assert status in (429, 503) and header is not None
                    retry_after = float(header)
                raise AssertionError("never accepted")

            await asyncio.gather(*(retry(body, ids, float(header)) for body, ids, header in rejected))
        async with aiohttp.ClientSession() as session, session.get(f"{settings.receiver_url}/healthz") as response:
            health = await response.json()
        rss_after = rss_kib(receiver.pid)
        assert receiver.poll() is None
    seen = await consume_until(broker, [topic], lambda s: len(span_ids_in(s[topic])) >= sent_spans, timeout_s=30)
    in_topic = span_ids_in(seen[topic])
    print(
        f"\nflood: {len(requests)} requests of 20 spans ({sent_spans} spans) in {flood_s:.2f} s, cap 4 requests / "
        f"256 KiB in flight: {dict(statuses)}; Retry-After {sorted(retry_afters)}; spans acknowledged in the "
        f"first round {first_round_acked}, all found in the topic; after {retries[0]} retries {len(acked)} "
        f"acknowledged, {len(set(in_topic))} distinct in the topic ({sum(in_topic.values())} with duplicates); "
        f"receiver RSS {rss_before} -> {rss_after} KiB; /healthz {health['receiver']}"
    )
    ledger_record({"fault": "receiver flood: 300 concurrent requests, cap 4 in flight, clients retry",
            "in": sent_spans, "screened": None, "bundles": None, "acknowledged": len(acked),
            "duplicates": sum(in_topic.values()) - len(set(in_topic)), "lost": sent_spans - len(set(in_topic)),
            "first_round": dict(statuses), "retries": retries[0], "rss_kib": [rss_before, rss_after]})  # fmt: skip
    assert statuses[429] > 0, "the flood never hit the bound: make it bigger"
    assert statuses[200] > 0
    assert len(acked) == sent_spans and set(in_topic) == acked
    assert health["receiver"]["rejected"]["overloaded_429"] >= statuses[429]


async def test_with_the_broker_gone_the_receiver_answers_503_with_retry_after_quickly(tmp_path: Path) -> None:
    port = free_port()
    brokers = [running_broker(tmp_path, port)]
    bootstrap, broker_process = brokers[0].__enter__()
    body, _ = traced_request(1, spans_per_request=3, pad=10)
    try:
        settings = receiver_settings(
            tmp_path, bootstrap, "outage-spans", receiver_send_timeout_s=2.0, receiver_retry_after_s=1
        )
        url = f"{settings.receiver_url}/v1/traces"
        with running_receiver(settings) as receiver:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.post(url, data=body, headers=PROTOBUF) as response:
                    assert response.status == 200
                broker_process.kill()  # the broker goes away (a crash: a stopping tansu lingers 5 s)
                broker_process.wait(timeout=10)
                timings = []
                for _ in range(6):
                    started = time.monotonic()
                    async with session.post(url, data=body, headers=PROTOBUF) as response:
                        await response.read()
                        elapsed = time.monotonic() - started
                        timings.append((response.status, response.headers.get("Retry-After"), round(elapsed, 3)))
                async with session.get(f"{settings.receiver_url}/healthz") as response:
                    health = (await response.json())["receiver"]
                async with session.get(f"{settings.receiver_url}/readyz") as response:
                    ready_status = response.status
                # The broker comes back (empty: tansu keeps memory); after Retry-After a probe goes
                # through, and the receiver recovers.
                brokers.append(running_broker(tmp_path, port))
                brokers[-1].__enter__()
                ensure_topics(settings)
                recovery_started = time.monotonic()
                statuses: Counter[int] = Counter()
                while not statuses[200]:
                    assert time.monotonic() - recovery_started < 30, f"the receiver did not recover: {statuses}"
                    async with session.post(url, data=body, headers=PROTOBUF) as response:
                        statuses[response.status] += 1
                    await asyncio.sleep(0.2)
                recovery_s = time.monotonic() - recovery_started
            assert receiver.poll() is None
    finally:
        for broker in brokers:
            broker.__exit__(None, None, None)
    print(
        f"\nbroker down: (status, Retry-After, seconds) {timings}; /healthz {health}; /readyz {ready_status}; "
        f"broker back: answers {dict(statuses)}, first 200 after {recovery_s:.1f} s"
    )
    assert all(status == 503 and retry_after == "1" for status, retry_after, _ in timings), timings
    assert timings[0][2] < 2.0 + 2.0  # the first waits for the broker, at most the send timeout
    assert all(elapsed < 0.5 for _, _, elapsed in timings[1:])  # then fail fast while backing off
    assert health["broker"] == "unavailable" and health["rejected"]["unavailable_503"] == 6
    assert ready_status == 503
    assert set(statuses) <= {200, 503}


async def test_a_flood_of_large_requests_keeps_the_receiver_memory_bounded(broker: str, tmp_path: Path) -> None:
    """60 requests of 3 MiB at once (180 MiB), retried after Retry-After until all are in."""
    mib = 1024 * 1024
    settings = receiver_settings(
        tmp_path, broker, "big-spans", max_request_bytes=4 * mib, receiver_max_inflight_bytes=8 * mib
    )
    body, _ = traced_request(7, spans_per_request=3, pad=mib)  # three 1 MiB records
    statuses: Counter[int] = Counter()
    rng = random.Random(3)
    with running_receiver(settings) as receiver:
        rss_before = rss_kib(receiver.pid)
        url = f"{settings.receiver_url}/v1/traces"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def post_until_accepted() -> None:
                for _ in range(200):
                    async with session.post(url, data=body, headers=PROTOBUF) as response:
                        await response.read()
                        statuses[response.status] += 1
                        if response.status == 200:
                            return
                        assert response.status == 429
                        await asyncio.sleep(float(response.headers["Retry-After"]) * rng.uniform(0.1, 1.0))
                raise AssertionError("never accepted")

            started = time.monotonic()
            await asyncio.gather(*(post_until_accepted() for _ in range(60)))
            flood_s = time.monotonic() - started
            too_big = await post_oversized(session, url, 64 * mib)
        rss_after, rss_peak = rss_kib(receiver.pid), rss_kib(receiver.pid, "VmHWM")
        assert receiver.poll() is None
    print(
        f"\nlarge flood: 60 requests of {len(body) // 1024} KiB at once, retried until accepted, 8 MiB in flight "
        f"at most: {dict(statuses)} in {flood_s:.1f} s; receiver RSS {rss_before} -> {rss_after} KiB (peak "
        f"{rss_peak} KiB); a 64 MiB chunked body: {too_big}"
    )
    ledger_record({"fault": "receiver flood of 60 x 3 MiB requests, 8 MiB in flight", "in": 60, "screened": None,
            "bundles": None, "answers": dict(statuses), "rss_kib": [rss_before, rss_after, rss_peak],
            "oversized_64mib": too_big, "duplicates": None, "lost": 60 - statuses[200]})  # fmt: skip
    assert statuses[200] == 60 and statuses[429] > 0
    assert rss_peak - rss_before < 100 * 1024, "the receiver's memory grew past the bound"
    assert too_big == 413


async def post_oversized(session: aiohttp.ClientSession, url: str, size: int) -> int:
    """A chunked body (no Content-Length) far over the limit: refused once past it."""

    async def chunks() -> Any:
        block = b"\x00" * (1024 * 1024)
        for _ in range(size // len(block)):
            yield block

    try:
        async with session.post(url, data=chunks(), headers=PROTOBUF) as response:
            return response.status
    except aiohttp.ClientError:  # the receiver may close the connection while the client still writes
        return -1
