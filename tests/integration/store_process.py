"""A real store process (sink + triage API) beside an embedded broker, started the way
`oodwatch up` starts them and stopped by PID: for tests that need the API and nothing else
(no models, no workers)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.settings import Settings
from pipeline.stack.broker import broker_command
from pipeline.stack.supervisor import child_env, http_ok, wait_tcp
from pipeline.stack.topics import ensure_topics
from pipeline.store.auth import api_token
from tests.helpers import test_settings


@contextmanager
def store_process(tmp_path: Path, **overrides: Any) -> Iterator[tuple[Settings, str]]:
    """(settings, admin token) while a broker and a store process run on free ports."""
    settings = test_settings(tmp_path, **overrides)
    token = api_token(settings, create=True)
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "ab") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=child_env(settings), start_new_session=True
            )
        processes.append(process)
        return process

    try:
        command = broker_command("tansu", settings.host, settings.broker_port, settings.data_dir)
        spawn("broker", command.argv)
        assert wait_tcp(settings.host, settings.broker_port, 20), "broker did not start"
        ensure_topics(settings)
        store = spawn("store", [sys.executable, "-m", "pipeline.cli", "store"])
        deadline = time.monotonic() + 60
        while not http_ok(f"{settings.api_url}/readyz"):
            assert store.poll() is None, (logs / "store.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "store not ready in 60 s"
            time.sleep(0.2)
        yield settings, token
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
