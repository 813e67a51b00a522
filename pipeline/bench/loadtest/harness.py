"""`oodwatch bench --stage pipeline`: a validated load harness and the throughput budget.

1. Drain rates on one broker, like for like: N real LLMEvent records are written to a fresh
   topic *before* the processor starts; the rate is N over the time from its first output to
   its N-th. Processors: a raw aiokafka consume->produce loop, a bare Faust agent, and the
   pipeline's worker (tier 1 + routing), with 1 and 2 worker processes.
2. The harness's own ceiling: open-loop load against a no-op OTLP sink at twice the highest
   offered rate. A pipeline figure counts only where the harness kept its schedule there.
3. Open-loop load through the OTLP receiver of the embedded stack at rising offered rates;
   latency per hop from the store's server-side timestamps, beside the client-observed latency.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.bench.loadtest.openloop import GenResult, Payloads, Profile, burst, constant, run_open_loop
from pipeline.cli.client import TriageClient
from pipeline.settings import Settings, Topics
from pipeline.stack.supervisor import Stack, child_env, http_ok
from pipeline.stack.topics import ensure_topics

Progress = Callable[[str], None]
DRAIN_TIMEOUT_S = 180.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Events per envelope in the drains' envelope fills: what normalize writes per partition under load
#: (a full micro-batch of requests spread over the partitions).
DRAIN_ENVELOPE_EVENTS = 100


def _events(n: int) -> list[Any]:
    """N distinct LLMEvents (real mapped demo events, fresh ids)."""
    from pipeline.bench.stages import _events as mapped

    base = mapped(512)
    return [base[i % len(base)].model_copy(update={"event_id": uuid.uuid4().hex}) for i in range(n)]


def _records(events: list[Any], per_record: int) -> list[tuple[bytes, list[tuple[str, bytes]] | None]]:
    """One record per event (the previous release's format, and Faust's naive use), or envelopes
    of `per_record` events (what the pipeline writes)."""
    from schemas.envelope import EnvelopeCodec, envelope_headers
    from schemas.events import LLMEvent

    if per_record == 1:
        return [(e.model_dump_json().encode(), None) for e in events]
    codec = EnvelopeCodec(LLMEvent)
    chunks = [events[i : i + per_record] for i in range(0, len(events), per_record)]
    return [(codec.encode(chunk), envelope_headers(len(chunk))) for chunk in chunks]


async def _fill(bootstrap: str, topic: str, records: list[tuple[bytes, list[tuple[str, bytes]] | None]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20,
                                max_request_size=16 << 20)  # fmt: skip
    await producer.start()
    try:
        futures = [await producer.send(topic, key=uuid.uuid4().bytes, value=v, headers=h) for v, h in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def _count(bootstrap: str, topic: str, n: int, timeout_s: float) -> tuple[int, float]:
    """(events seen, seconds from the first to the n-th), reading the topic from the start. An
    envelope counts the events its header says it carries."""
    from aiokafka import AIOKafkaConsumer

    from schemas.envelope import events_in

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest", fetch_max_wait_ms=100,
        max_partition_fetch_bytes=16 << 20,
    )  # fmt: skip
    await consumer.start()
    seen, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < n and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200, max_records=5000)
            got = sum(events_in(r.headers) for records in polled.values() for r in records)
            if got:
                first = first or time.monotonic()
                seen += got
                last = time.monotonic()
    finally:
        await consumer.stop()
    return seen, last - first


def drain(settings: Settings, name: str, command: list[str], env: dict[str, str], source: str, sink: str,
          events: list[Any], workers: int = 1, per_record: int = 1) -> dict[str, Any]:  # fmt: skip
    """Fill `source` (one record per event, or envelopes), start `workers` copies of `command`,
    time the events coming out on `sink`."""
    ensure_topics(settings.model_copy(update={"topics": _topics(source, sink)}))
    asyncio.run(_fill(settings.bootstrap, source, _records(events, per_record)))
    logs = Path(tempfile.mkdtemp(prefix=f"oodwatch-drain-{name}-"))
    log_files = [open(logs / f"{i}.log", "wb") for i in range(workers)]  # noqa: SIM115 - closed below
    processes = [subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT) for f in log_files]
    try:
        seen, window = asyncio.run(_count(settings.bootstrap, sink, len(events), DRAIN_TIMEOUT_S))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for f in log_files:
            f.close()
    eps = seen / window if window > 0 and seen >= len(events) else 0.0
    return {"processor": name, "workers": workers, "events": len(events), "events_per_record": per_record,
            "seen": seen, "eps": round(eps, 1), "complete": seen >= len(events)}  # fmt: skip


def _topics(source: str, sink: str) -> Topics:
    """A Topics whose `all()` names the drain's two topics (for ensure_topics)."""
    return Topics(otlp_spans=source, otlp_logs=source, llm_events=source, screenings=sink, escalations=sink,
                  evidence=sink, dead_letters=sink, judge_requests=sink, tool_sightings=sink,
                  tool_registry=sink)  # fmt: skip


def baselines(settings: Settings, n: int, progress: Progress) -> dict[str, Any]:
    """Raw aiokafka and bare Faust pass-throughs (one record per event: the engine's naive use),
    a Faust pass-through of the same envelopes the pipeline reads, and the pipeline's tier 1 with
    1 and 2 worker processes."""
    events = _events(n)
    env = child_env(settings)
    run = uuid.uuid4().hex[:6]
    python = sys.executable
    results: dict[str, Any] = {}
    for kind, per_record in (("kafka", 1), ("faust", 1), ("faust_envelopes", DRAIN_ENVELOPE_EVENTS)):
        progress(f"drain: {kind} pass-through, {n} events")
        source, sink = f"bench-{kind}-in-{run}", f"bench-{kind}-out-{run}"
        command = [python, "-m", "pipeline.bench.loadtest.passthrough", kind.split("_")[0], source, sink]
        results[kind] = drain(settings, kind, command, env, source, sink, events, per_record=per_record)
    for workers in (1, 2):
        progress(f"drain: pipeline tier 1 with {workers} worker process(es), {n} events")
        prefix = f"bench-{workers}w-{run}"
        topic_env = {f"OODWATCH_TOPIC_{k.upper()}": f"{prefix}-{v}" for k, v in Topics().model_dump().items()}
        # Tier 1 alone (normalize + screen): the escalation path scales in processes of its own.
        # No /metrics server: the stack's own workers hold those ports while the drains run.
        worker_env = {**env, **topic_env, "OODWATCH_APP_ID": prefix, "OODWATCH_WORKER_AGENTS": "normalize,screen",
                      "OODWATCH_WORKER_METRICS_PORT": "0"}  # fmt: skip
        source, sink = topic_env["OODWATCH_TOPIC_LLM_EVENTS"], topic_env["OODWATCH_TOPIC_SCREENINGS"]
        topics = Topics(**{k: f"{prefix}-{v}" for k, v in Topics().model_dump().items()})
        ensure_topics(settings.model_copy(update={"topics": topics}))
        command = [python, "-m", "pipeline.cli", "worker"]
        results[f"pipeline_{workers}w"] = drain(
            settings, "pipeline", command, worker_env, source, sink, events, workers, DRAIN_ENVELOPE_EVENTS
        )
    return results


def stack_cpu_s(stack: Stack) -> dict[str, float]:
    """User + system CPU seconds so far of each process of the stack, by name (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds: dict[str, float] = {}
    for child in stack.children:
        try:
            fields = Path(f"/proc/{child.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[child.name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (stat fields 14, 15)
    return seconds


def _noop_sink(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "pipeline.bench.loadtest.noop", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def harness_ceiling(payloads: Payloads, rate: float, duration_s: float, generators: int) -> dict[str, Any]:
    """Open-loop at `rate` against a sink that does nothing: did the harness keep its schedule?"""
    port = _free_port()
    sink = _noop_sink(port)
    try:
        deadline = time.monotonic() + 10
        while not http_ok(f"http://127.0.0.1:{port}/healthz") and time.monotonic() < deadline:
            time.sleep(0.05)
        # Constant arrivals: the question is whether the harness keeps a schedule, not how a
        # Poisson count happens to fall in a short run.
        result = run_open_loop(f"http://127.0.0.1:{port}/v1/traces", payloads, constant(rate),
                               duration_s=duration_s, processes=generators, poisson=False)  # fmt: skip
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    sustained = result.events / duration_s
    return {
        "offered_eps": rate,
        "sustained_eps": round(sustained, 1),
        "errors": result.errors + result.timeouts,
        "late_share": round(result.late / max(1, result.sent), 4),
        "send_latency": result.latency.summary(),
        "ok": sustained >= 0.97 * rate
        and result.errors + result.timeouts == 0
        and result.late / max(1, result.sent) < 0.01,
    }


def target_url(settings: Settings, target: str) -> str:
    """The OTLP receiver, or the otlp_spans topic directly (what a Collector's kafkaexporter does)."""
    if target == "kafka":
        return f"kafka://{settings.bootstrap}/{settings.topics.otlp_spans}"
    return f"{settings.receiver_url}/v1/traces"


def load_step(settings: Settings, client: TriageClient, payloads: Payloads, rate: float, duration_s: float,
              generators: int, progress: Progress, *, target: str = "receiver", profile: Profile | None = None,
              label: str = "constant", stack: Stack | None = None) -> dict[str, Any]:  # fmt: skip
    since = time.time_ns()
    cpu_before = stack_cpu_s(stack) if stack is not None else {}
    progress(f"open loop ({label}): {rate:.0f} events/s for {duration_s:.0f}s into the {target}")
    result: GenResult = run_open_loop(target_url(settings, target), payloads, profile or constant(rate),
                                      duration_s=duration_s, processes=generators)  # fmt: skip
    sent_events = result.events
    deadline = time.monotonic() + 60
    stats = client.stats(since)
    while stats["screenings"] < sent_events and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = client.stats(since)
    drained_in = time.monotonic() - (deadline - 60)
    cpu_after = stack_cpu_s(stack) if stack is not None else {}
    cpu_by_process = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 2) for name in cpu_after}
    cpu_s = sum(cpu_by_process.values()) if stack is not None else None
    return {
        "profile": label,
        "target": target,
        "offered_eps": rate,
        "sent_events": sent_events,
        "screened": stats["screenings"],
        "client_errors": result.errors + result.timeouts,
        "client_latency": result.latency.summary(),
        "e2e_ms": {"p50": stats["e2e_p50_ms"], "p95": stats["e2e_p95_ms"], "p99": stats["e2e_p99_ms"]},
        "hops_p50_p99_ms": stats["hops_p50_p99_ms"],
        "drain_after_s": round(drained_in, 1),
        # CPU of every stack process over the step (sending and draining), per million screened.
        "cpu_s_per_million_events": round(cpu_s / stats["screenings"] * 1e6, 1)
        if cpu_s is not None and stats["screenings"]
        else None,
        "cpu_s_by_process": cpu_by_process,
        # Sustained: everything sent was screened within 2 s of the end of sending.
        "sustained": stats["screenings"] >= sent_events and result.errors + result.timeouts == 0 and drained_in <= 2.0,
    }


def chart(steps: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [s["offered_eps"] for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
        ax.plot(rates, [s["e2e_ms"][key] for s in steps], style, label=f"receipt -> stored {key}")
    ax.plot(rates, [s["client_latency"]["p99_ms"] for s in steps], "x--", label="client send p99")
    for s in steps:
        if not s["sustained"]:
            ax.axvspan(s["offered_eps"] * 0.97, s["offered_eps"] * 1.03, color="#f4cccc")
    ax.set_xlabel("offered events/s (shaded: not sustained)")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("latency percentiles vs offered load")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench_pipeline(
    settings: Settings, *, workers: int, rates: list[float], duration_s: float, generators: int, drain_records: int,
    png: Path | None, progress: Progress, target: str = "receiver", profiles: tuple[str, ...] = ("step", "burst"),
) -> dict[str, Any]:  # fmt: skip
    """`step`: one constant-rate step per offered rate, rising. `burst`: the lowest rate with
    periodic spikes to the highest (2 s in every 10), reported beside the steps."""
    payloads = Payloads.build()
    progress(f"harness ceiling: {2 * max(rates):.0f} events/s against a no-op sink")
    ceiling = harness_ceiling(payloads, 2 * max(rates), duration_s, generators)
    data = Path(tempfile.mkdtemp(prefix="oodwatch-bench-"))
    bench_settings = settings.model_copy(
        update={
            "data_dir": data, "model_dir": settings.models_path, "kafka_bootstrap": "", "clickhouse_dsn": "",
            "broker_port": _free_port(), "receiver_port": _free_port(), "api_port": _free_port(),
            "workers": workers, "reference_sample_rate": 0.0, "api_base_url": "", "receiver_base_url": "",
            "guard_enabled": False,  # not on the streaming path this bench measures
        }
    )  # fmt: skip
    stack = Stack(bench_settings, workers=workers, progress=progress)
    stack.start()
    try:
        drains = baselines(bench_settings, drain_records, progress)
        client = TriageClient.from_settings(bench_settings)
        steps = []
        if "step" in profiles or "constant" in profiles:
            steps = [load_step(bench_settings, client, payloads, rate, duration_s, generators, progress, target=target,
                               stack=stack) for rate in rates]  # fmt: skip
        bursts = []
        if "burst" in profiles:
            spikes = burst(min(rates), max(rates), period_s=10.0, burst_s=2.0)
            mean = min(rates) * 0.8 + max(rates) * 0.2
            bursts.append(load_step(bench_settings, client, payloads, mean, max(20.0, duration_s), generators, progress,
                                    target=target, profile=spikes, label="burst", stack=stack))  # fmt: skip
    finally:
        stack.stop()
    sustained = [s for s in steps if s["sustained"]]
    pipeline_eps = max((s["offered_eps"] for s in sustained), default=0.0)
    half = min(steps, key=lambda s: abs(s["offered_eps"] - pipeline_eps / 2)) if pipeline_eps else None
    top = next((s for s in sustained if s["offered_eps"] == pipeline_eps), None)
    at_1000 = next((s for s in steps if s["offered_eps"] == 1000), None)
    faust_eps, kafka_eps = drains["faust"]["eps"], drains["kafka"]["eps"]
    tier1_eps = drains[f"pipeline_{workers}w"]["eps"]
    result = {
        "stage": "pipeline",
        "workers": workers,
        "harness_ok": bool(ceiling["ok"]),
        "harness_ceiling": ceiling,
        "pipeline_eps": pipeline_eps if ceiling["ok"] else None,
        "pipeline_tier1_drain_eps": tier1_eps,
        "pipeline_tier1_drain_eps_by_workers": {1: drains["pipeline_1w"]["eps"], 2: drains["pipeline_2w"]["eps"]},
        "faust_passthrough_eps": faust_eps,
        "faust_envelope_passthrough_eps": drains["faust_envelopes"]["eps"],
        "kafka_passthrough_eps": kafka_eps,
        "ratio_vs_faust": round(tier1_eps / faust_eps, 3) if faust_eps else None,
        "ratio_vs_kafka": round(tier1_eps / kafka_eps, 3) if kafka_eps else None,
        "e2e_p50_ms": half["e2e_ms"]["p50"] if half else None,
        "e2e_p99_ms": half["e2e_ms"]["p99"] if half else None,
        "e2e_at_offered_eps": half["offered_eps"] if half else None,
        "e2e_p99_ms_at_1000": at_1000["e2e_ms"]["p99"] if at_1000 else None,
        "cpu_s_per_million_events": top["cpu_s_per_million_events"] if top else None,
        "steps": steps,
        "bursts": bursts,
        "target": target,
        "drains": drains,
        "duration_s": duration_s,
        "generators": generators,
    }
    if not ceiling["ok"]:
        result["note"] = "the harness was the limiter: it did not sustain twice the highest offered rate"
    if png is not None:
        result["chart"] = str(chart(steps, png))
    return result
