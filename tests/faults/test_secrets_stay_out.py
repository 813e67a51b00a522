"""Secrets never reach logs or error pages. A stack runs with known secret values (the admin
token, the judge's API key, a Slack webhook URL); the judge endpoint fails, the Slack hook is
dead, clients send wrong tokens and bad requests. Then every log line and every error body is
searched for the secrets."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import httpx

from pipeline.cli.client import TriageClient
from pipeline.stack.supervisor import child_env
from pipeline.synth.emit import SessionEmitter
from pipeline.synth.traffic import TrafficGenerator
from tests.e2e.conftest import wait_for
from tests.faults.ledger import running_stack
from tests.helpers import free_port
from tests.integration.test_judge_server import FakeEndpoint

ADMIN_TOKEN = "adm1n-T0KEN-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
JUDGE_KEY = "sk-judge-SECRET-0123456789abcdefABCDEF"
SLACK_SECRET = "T000/B000/SLACKSECRETxyz987"
SECRETS = (ADMIN_TOKEN, JUDGE_KEY, SLACK_SECRET)


def test_known_secrets_appear_in_no_log_and_no_error_response(tmp_path):
    judge = FakeEndpoint(status=500)
    seen_keys: list[str] = []
    original = judge.handle

    async def handle(request):
        seen_keys.append(request.headers.get("Authorization", ""))
        return await original(request)

    judge.handle = handle  # type: ignore[method-assign]
    loop = asyncio.new_event_loop()
    _runner, url = loop.run_until_complete(judge.serve())
    threading.Thread(target=loop.run_forever, daemon=True).start()
    overrides = {
        "api_token": ADMIN_TOKEN, "judge_base_url": url, "judge_model": "m", "judge_api_key": JUDGE_KEY,
        "judge_breaker_failures": 2, "alert_min_severity": "medium",
        "alert_slack_webhook_url": f"http://127.0.0.1:{free_port()}/services/{SLACK_SECRET}",
    }  # fmt: skip
    bodies: list[str] = []
    with running_stack(tmp_path, **overrides) as stack:
        settings = stack.settings
        sessions = [s for s in TrafficGenerator(seed=5, attack_ratio=0.7).sessions(150) if s.attack][:10]
        emitter = SessionEmitter(settings.receiver_url)
        emitter.emit(sessions)
        assert emitter.flush()
        emitter.shutdown()
        client = TriageClient.from_settings(settings)
        wait_for(lambda: client.escalations(limit=100), lambda q: len(q) >= 3)
        client.close()
        api = settings.api_url
        for headers in ({}, {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]}, {"Authorization": ADMIN_TOKEN}):
            bodies.append(httpx.get(f"{api}/api/escalations", headers=headers).text)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        bodies.append(httpx.get(f"{api}/api/escalations/nope", headers=admin).text)
        bodies.append(httpx.get(f"{api}/api/escalations?limit=abc", headers=admin).text)
        bodies.append(httpx.post(f"{api}/api/escalations/nope/resolve", headers=admin, json={"label": "x"}).text)
        bodies.append(httpx.post(f"{api}/ui/login", data={"token": ADMIN_TOKEN + "x"}).text)
        bodies.append(httpx.post(f"{settings.receiver_url}/v1/traces", content=b"\x00garbage",
                                 headers={"Content-Type": "application/x-protobuf"}).text)  # fmt: skip
        wrong = {**child_env(settings), "OODWATCH_API_TOKEN": ADMIN_TOKEN[:-3]}
        cli = subprocess.run([sys.executable, "-m", "pipeline.cli", "queue", "list"], env=wrong,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        bodies.append(cli.stdout + cli.stderr)
        wait_for(lambda: seen_keys, lambda k: len(k) >= 2)  # the judge was called, and failed
    loop.call_soon_threadsafe(loop.stop)
    assert cli.returncode != 0 and all(key == f"Bearer {JUDGE_KEY}" for key in seen_keys)
    logs = {p.name: p.read_text(errors="replace") for p in (settings.data_dir / "logs").glob("*.log")}
    assert {"store.log", "worker-0.log", "receiver.log"} <= set(logs)
    assert "judge" in logs["worker-0.log"] and "alert to slack failed" in logs["store.log"]
    for secret in SECRETS:
        leaks = [name for name, text in logs.items() if secret in text]
        leaks += [f"response {i}" for i, body in enumerate(bodies) if secret in body]
        assert not leaks, f"secret {secret[:6]}… found in {leaks}"
