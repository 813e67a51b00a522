"""Open-loop load from several processes: each sends on its own schedule (Poisson or constant
arrivals at its share of the offered rate) and never waits for a reply before the next send,
so a slow server shows up as latency, not as a quietly lower rate.

Bodies are OTLP ExportTraceServiceRequests cut from the demo's traffic; every send gets fresh
trace ids (a byte replacement in the serialised template), so no two sends share an event id.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.bench.loadtest.histogram import Histogram

Profile = Callable[[float], float]  # seconds since start -> offered events/s (all processes)


def constant(rate: float) -> Profile:
    return lambda _: rate


def step(start: float, factor: float, step_s: float) -> Profile:
    return lambda t: start * factor ** int(t // step_s)


def burst(base: float, peak: float, period_s: float, burst_s: float) -> Profile:
    return lambda t: peak if (t % period_s) < burst_s else base


@dataclass
class Payloads:
    """Serialised requests of `events_per_request` LLM events each, and their trace ids."""

    bodies: list[bytes]
    trace_ids: list[list[bytes]]
    #: LLM events in each body (what the pipeline will screen from it).
    events: list[int]

    @property
    def events_per_request(self) -> float:
        return sum(self.events) / len(self.events)

    @classmethod
    def build(cls, events_per_request: int = 10, templates: int = 16, seed: int = 5) -> Payloads:
        from pipeline.synth.emit import sessions_to_request
        from pipeline.synth.traffic import TrafficGenerator

        generator = TrafficGenerator(seed=seed)
        bodies, ids, counts = [], [], []
        for _ in range(templates):
            sessions, events = [], 0
            for session in generator.sessions(10_000):
                sessions.append(session)
                events += session.llm_spans()
                if events >= events_per_request:
                    break
            request = sessions_to_request(sessions)
            traces = {span.trace_id for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans}
            bodies.append(request.SerializeToString())
            ids.append(sorted(traces))
            counts.append(events)
        return cls(bodies, ids, counts)

    def fresh(self, rng: random.Random) -> tuple[bytes, int]:
        """A body with new trace ids, and its LLM event count."""
        k = rng.randrange(len(self.bodies))
        body = self.bodies[k]
        for old in self.trace_ids[k]:
            body = body.replace(old, rng.randbytes(16))
        return body, self.events[k]


@dataclass
class GenResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    #: Sends that left more than 10 ms after their scheduled time: the harness falling behind.
    late: int = 0
    events: int = 0
    latency: Histogram = field(default_factory=Histogram)


class _Sender:
    """One way to deliver a body: POST to an OTLP/HTTP endpoint, or produce to a Kafka topic
    (`kafka://host:port/topic`, the Collector's path). `send` returns True when accepted."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._session: Any = None
        self._producer: Any = None
        self._topic = ""

    async def __aenter__(self) -> _Sender:
        if self.target.startswith("kafka://"):
            from aiokafka import AIOKafkaProducer

            bootstrap, _, self._topic = self.target.removeprefix("kafka://").partition("/")
            self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, max_request_size=16 << 20)
            await self._producer.start()
        else:
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512), timeout=aiohttp.ClientTimeout(total=30)
            )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._producer is not None:
            await self._producer.stop()
        if self._session is not None:
            await self._session.close()

    async def send(self, body: bytes, key: bytes) -> bool:
        if self._producer is not None:
            future = await self._producer.send(self._topic, key=key, value=body)
            await future
            return True
        async with self._session.post(
            self.target, data=body, headers={"Content-Type": "application/x-protobuf"}
        ) as response:
            await response.read()
            return bool(response.status == 200)


async def _run(
    target: str, payloads: Payloads, profile: Profile, share: float, duration_s: float, poisson: bool, seed: int,
    start_at: float,
) -> GenResult:  # fmt: skip
    rng = random.Random(seed)
    result = GenResult()
    pending: set[asyncio.Task[None]] = set()

    async def send(sender: _Sender, body: bytes, events: int, scheduled: float) -> None:
        try:
            if await sender.send(body, rng.randbytes(16)):
                result.ok += 1
                result.events += events
            else:
                result.errors += 1
        except TimeoutError:
            result.timeouts += 1
        except Exception:  # connection refused, broker errors: counted, the schedule goes on
            result.errors += 1
        result.latency.add((time.monotonic() - scheduled) * 1000)

    async with _Sender(target) as sender:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        begin = time.monotonic()
        next_at = begin
        while next_at - begin < duration_s:
            now = time.monotonic()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            behind = (time.monotonic() - next_at) * 1000
            result.late += behind > 10
            body, events = payloads.fresh(rng)
            task = asyncio.create_task(send(sender, body, events, next_at))
            pending.add(task)
            task.add_done_callback(pending.discard)
            result.sent += 1
            rate = max(1e-3, profile(next_at - begin) * share / payloads.events_per_request)  # requests/s
            next_at += rng.expovariate(rate) if poisson else 1.0 / rate
        if pending:
            await asyncio.wait(pending, timeout=30)
    return result


def _process(queue: Any, url: str, payloads: Payloads, profile: Profile, share: float, duration_s: float,
             poisson: bool, seed: int, start_at: float) -> None:  # fmt: skip
    queue.put(asyncio.run(_run(url, payloads, profile, share, duration_s, poisson, seed, start_at)))


def run_open_loop(
    url: str, payloads: Payloads, profile: Profile, *, duration_s: float, processes: int = 2, poisson: bool = True,
) -> GenResult:  # fmt: skip
    """`processes` generators, each with 1/processes of the offered rate, started together."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start_at = time.time() + 0.5
    workers = [
        context.Process(
            target=_process,
            # Fresh seeds every run: a repeated seed repeats trace ids, and the store would rightly
            # drop the repeats as replays.
            args=(queue, url, payloads, profile, 1.0 / processes, duration_s, poisson, uuid.uuid4().int, start_at),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=duration_s + 120) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
    total = GenResult()
    for r in results:
        total.sent += r.sent
        total.ok += r.ok
        total.errors += r.errors
        total.timeouts += r.timeouts
        total.late += r.late
        total.events += r.events
        total.latency.merge(r.latency)
    return total
