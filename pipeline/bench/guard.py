"""`oodwatch bench --stage guard`: open-loop load on `POST /v1/guard`, and the proxy's added latency.

1. The harness proves itself first: the same open-loop generator against a no-op guard (it reads
   the body and answers a fixed decision) at twice the offered rate. A guard figure counts only
   where the harness kept its schedule there (>= 97% of the rate, no errors, < 1% late sends).
2. A real guard process (the built models, a real broker for what it streams) on a deployment
   whose budget is tier 1 only; Poisson arrivals at the offered rate; latency per check as the
   client saw it (from its scheduled send time, so queueing counts) and as the guard measured it
   (`budget_used_ms`, from arrival to answer).
3. guard-proxy's added latency: the same chat request, one at a time, straight to a stub model
   and through the proxy (request and response checks included), interleaved; the difference of
   the medians.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.bench.loadtest.histogram import Histogram
from pipeline.settings import Settings

Progress = Callable[[str], None]
BENCH_SERVICE = "guard-bench"  # no deployment of its own: the default one, tier 1 only
TOKEN = "bench-guard-token-" + "0" * 16
PROXY_CALLS = 300
P99_BAR_MS, P50_BAR_MS, PROXY_BAR_MS = 15.0, 5.0, 5.0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bodies(n: int = 512) -> list[bytes]:
    """Guard checks cut from the demo's traffic (about one in ten an attack), one session each."""
    from pipeline.bench.stages import _events

    checks = []
    for event in _events(n):
        checks.append(json.dumps({
            "kind": "request", "session_id": f"bench-{uuid.uuid4().hex[:12]}", "service": BENCH_SERVICE,
            "tenant": BENCH_SERVICE, "system_instructions": event.system_instructions,
            "messages": [m.model_dump() for m in event.input_messages],
            "tools": [t.model_dump() for t in event.tool_definitions],
        }).encode())  # fmt: skip
    return checks


# -- the open-loop generator (its own process) ----------------------------------------------------


def _generate(queue: Any, url: str, checks: list[bytes], rate: float, duration_s: float, poisson: bool,
              start_at: float) -> None:  # fmt: skip
    queue.put(asyncio.run(_open_loop(url, checks, rate, duration_s, poisson, start_at)))


async def _open_loop(url: str, checks: list[bytes], rate: float, duration_s: float, poisson: bool,
                     start_at: float) -> dict[str, Any]:  # fmt: skip
    import aiohttp

    rng = random.Random(uuid.uuid4().int)
    client, server = Histogram(), Histogram()
    counts: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    pending: set[asyncio.Task[None]] = set()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def send(session: aiohttp.ClientSession, body: bytes, scheduled: float) -> None:
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                if response.status == 200:
                    answer = json.loads(payload)
                    counts["ok"] += 1
                    actions[answer.get("action", "?")] += 1
                    counts["failure_mode"] += bool(answer.get("failure"))
                    if "budget_used_ms" in answer:
                        server.add(float(answer["budget_used_ms"]))
                else:
                    counts["errors"] += 1
        except Exception:
            counts["errors"] += 1
        client.add((time.monotonic() - scheduled) * 1000)

    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        begin = time.monotonic()
        next_at = begin
        while next_at - begin < duration_s:
            now = time.monotonic()
            if next_at > now:
                await asyncio.sleep(next_at - now)
            counts["late"] += (time.monotonic() - next_at) * 1000 > 10
            task = asyncio.create_task(send(session, rng.choice(checks), next_at))
            pending.add(task)
            task.add_done_callback(pending.discard)
            counts["sent"] += 1
            next_at += rng.expovariate(rate) if poisson else 1.0 / rate
        if pending:
            await asyncio.wait(pending, timeout=30)
    return {"counts": dict(counts), "actions": dict(actions), "client": client, "server": server}


def open_loop(url: str, checks: list[bytes], rate: float, duration_s: float, *, poisson: bool) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_generate, args=(queue, url, checks, rate, duration_s, poisson, time.time() + 0.3))
    process.start()
    result: dict[str, Any] = queue.get(timeout=duration_s + 90)
    process.join(timeout=10)
    counts = result["counts"]
    sent = max(1, counts.get("sent", 0))
    return {
        "offered_per_s": rate,
        "sent": counts.get("sent", 0),
        "ok": counts.get("ok", 0),
        "errors": counts.get("errors", 0),
        "sustained_per_s": round(counts.get("ok", 0) / duration_s, 1),
        "late_share": round(counts.get("late", 0) / sent, 4),
        "answered_by_failure_mode": counts.get("failure_mode", 0),
        "actions": result["actions"],
        "client": result["client"].summary(),
        "server_budget_used": result["server"].summary(),
    }


# -- processes ------------------------------------------------------------------------------------


def _noop_guard(port: int) -> None:
    """A guard that does nothing: reads the check, answers a fixed decision (the harness's floor)."""
    from aiohttp import web

    answer = json.dumps({"action": "allow", "reasons": [], "budget_used_ms": 0.0}).encode()

    async def check(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application(client_max_size=4 << 20)
    app.router.add_post("/v1/guard", check)
    app.router.add_get("/readyz", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _stub_model(port: int) -> None:
    """An OpenAI-compatible model that answers at once (the proxy bench's upstream)."""
    from aiohttp import web

    reply = json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "It is sunny in Paris today."},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }).encode()  # fmt: skip

    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/readyz", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout_s: float = 90.0) -> None:
    from pipeline.stack.supervisor import http_ok

    deadline = time.monotonic() + timeout_s
    while not http_ok(url):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout_s:.0f} s")
        time.sleep(0.1)


def _python(*args: str) -> list[str]:
    return [sys.executable, "-c", f"from pipeline.bench.guard import {args[0]}; {args[0]}({args[1]})"]


async def _sequential(urls: list[str], body: dict[str, Any], calls: int) -> dict[str, list[float]]:
    """One request at a time, alternating between the targets, so drift hits both alike."""
    import aiohttp

    timings: dict[str, list[float]] = {url: [] for url in urls}
    headers = {"Authorization": "Bearer sk-bench", "X-Oodwatch-Session": "bench-proxy"}
    async with aiohttp.ClientSession() as session:
        for i in range(calls + 20):
            for url in urls:
                started = time.perf_counter()
                async with session.post(url, json=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                if i >= 20:  # the first ones warm connections and caches
                    timings[url].append((time.perf_counter() - started) * 1000)
    return timings


def bench_guard(
    settings: Settings, *, rate: float = 200.0, duration_s: float = 20.0, progress: Progress
) -> dict[str, Any]:
    from pipeline.stack.broker import broker_command
    from pipeline.stack.supervisor import child_env, wait_tcp
    from pipeline.stack.topics import ensure_topics

    load_before = os.getloadavg()
    checks = bodies()
    children: list[subprocess.Popen[bytes]] = []
    data = Path(tempfile.mkdtemp(prefix="oodwatch-bench-guard-"))
    logs = [open(data / f"{name}.log", "wb") for name in ("noop", "broker", "guard", "model", "proxy")]  # noqa: SIM115
    try:
        port = _free_port()
        progress(f"harness check: open loop at {2 * rate:.0f} checks/s against a no-op guard")
        noop = subprocess.Popen(_python("_noop_guard", str(port)), stdout=logs[0], stderr=subprocess.STDOUT)
        children.append(noop)
        _wait_ready(f"http://127.0.0.1:{port}/readyz", noop, "the no-op guard")
        harness = open_loop(f"http://127.0.0.1:{port}/v1/guard", checks, 2 * rate, min(duration_s, 10.0), poisson=False)
        harness["ok"] = (
            harness["sustained_per_s"] >= 0.97 * 2 * rate and harness["errors"] == 0 and harness["late_share"] < 0.01
        )
        # A p99 bar of 15 ms means something only where the harness's own p99 (against a guard that
        # does nothing) is well under it.
        harness["latency_floor_p99_ms"] = harness["client"]["p99_ms"]
        harness["p99_bar_measurable"] = harness["client"]["p99_ms"] <= P99_BAR_MS / 3
        noop.terminate()

        bench = settings.model_copy(update={
            "data_dir": data, "model_dir": settings.models_path, "kafka_bootstrap": "", "broker_port": _free_port(),
            "guard_port": _free_port(), "guard_proxy_port": _free_port(), "api_port": _free_port(),
            "receiver_port": _free_port(), "api_token": SecretStr(TOKEN), "guard_token": SecretStr(TOKEN),
            "api_base_url": "", "guard_base_url": "",
            "kafka_idempotent_producer": False,  # the bench broker is tansu: it refuses idempotent producers
        })  # fmt: skip
        progress(f"starting a broker and the guard ({bench.guard_url})")
        command = broker_command(bench.embedded_broker, bench.host, bench.broker_port, data)
        children.append(subprocess.Popen(command.argv, stdout=logs[1], stderr=subprocess.STDOUT))
        if not wait_tcp(bench.host, bench.broker_port, 20):
            raise RuntimeError("the bench broker did not start")
        ensure_topics(bench)
        env = child_env(bench)
        guard = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "guard"], env=env, stdout=logs[2],
                                 stderr=subprocess.STDOUT)  # fmt: skip
        children.append(guard)
        _wait_ready(f"{bench.guard_url}/readyz", guard, "the guard")
        url = f"{bench.guard_url}/v1/guard"
        progress("warming up the guard (3 s, not counted)")
        open_loop(url, checks, rate, 3.0, poisson=True)
        progress(f"open loop: {rate:.0f} checks/s (Poisson) for {duration_s:.0f} s on /v1/guard")
        load = open_loop(url, checks, rate, duration_s, poisson=True)
        health = json.loads(_get(f"{bench.guard_url}/healthz"))["guard"]

        progress("guard-proxy's added latency: a stub model straight and through the proxy, one call at a time")
        model_port, proxy_port = _free_port(), _free_port()
        model = subprocess.Popen(_python("_stub_model", str(model_port)), stdout=logs[3], stderr=subprocess.STDOUT)
        children.append(model)
        _wait_ready(f"http://127.0.0.1:{model_port}/readyz", model, "the stub model")
        proxy = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "guard-proxy", "--upstream", f"http://127.0.0.1:{model_port}/v1",
             "--port", str(proxy_port), "--service", BENCH_SERVICE, "--no-otel"],
            env=env, stdout=logs[4], stderr=subprocess.STDOUT,
        )  # fmt: skip
        children.append(proxy)
        _wait_ready(f"http://127.0.0.1:{proxy_port}/healthz", proxy, "guard-proxy")
        direct = f"http://127.0.0.1:{model_port}/v1/chat/completions"
        proxied = f"http://127.0.0.1:{proxy_port}/v1/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "What's the weather in Paris today?"}]}
        timings = asyncio.run(_sequential([direct, proxied], body, PROXY_CALLS))
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        for log in logs:
            log.close()
    direct_p50, proxied_p50 = statistics.median(timings[direct]), statistics.median(timings[proxied])
    proxy_result: dict[str, Any] = {
        "calls": PROXY_CALLS, "direct_p50_ms": round(direct_p50, 3), "proxied_p50_ms": round(proxied_p50, 3),
        "added_p50_ms": round(proxied_p50 - direct_p50, 3),
        "note": "request and response checks both inline; one call at a time, alternating",
    }  # fmt: skip
    client = load["client"]
    usable = harness["ok"]
    return {
        "stage": "guard",
        "rate_per_s": rate,
        "duration_s": duration_s,
        "deployment": "default (tier 1 only)",
        "harness_ok": usable,
        "harness": harness,
        "p50_ms": client["p50_ms"] if usable else None,
        "p95_ms": client["p95_ms"] if usable else None,
        "p99_ms": client["p99_ms"] if usable else None,
        "server_budget_used_ms": load["server_budget_used"],
        "load": load,
        "guard": {"tier1": health["tier1"], "outbox": health["outbox"], "answers": health["answers"]},
        "proxy": proxy_result,
        "bars": {
            "p99_ms<=15": usable and client["p99_ms"] <= P99_BAR_MS,
            "p50_ms<=5": usable and client["p50_ms"] <= P50_BAR_MS,
            "proxy_added_p50_ms<=5": proxy_result["added_p50_ms"] <= PROXY_BAR_MS,
            "p99_measurable_here": harness["p99_bar_measurable"],
        },
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "logs": str(data),
    }


def _get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())
