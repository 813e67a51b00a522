"""The store process (sink, perf consumer, API) and the receiver as real processes, on the
module's tansu broker, as `oodwatch up` runs them (no Faust workers: the perf path does not
need them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.stack.supervisor import wait_tcp
from tests.helpers import REPO


def env_of(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "OODWATCH_DATA_DIR": str(settings.data_dir),
        "OODWATCH_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "OODWATCH_API_PORT": str(settings.api_port),
        "OODWATCH_RECEIVER_PORT": str(settings.receiver_port),
        "OODWATCH_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "OODWATCH_PERF_EVAL_INTERVAL_S": "2",
        "OODWATCH_PERF_ROLL_INTERVAL_S": "0.5",
        "OODWATCH_KAFKA_IDEMPOTENT_PRODUCER": "false",  # tansu refuses idempotent producers
    }


@pytest.fixture
def processes(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """The real store process (sink + perf consumer + API) and the real receiver, as `oodwatch up` runs them."""
    started = []
    for command in ("store", "receiver"):
        log = open(tmp_path / f"{command}.log", "wb")  # noqa: SIM115 - closed below
        started.append((subprocess.Popen([sys.executable, "-m", "pipeline.cli", command], cwd=REPO,
                                         env=env_of(settings), stdout=log, stderr=subprocess.STDOUT), log))  # fmt: skip
    try:
        assert wait_tcp("127.0.0.1", settings.api_port, 60.0), (tmp_path / "store.log").read_text()[-3000:]
        assert wait_tcp("127.0.0.1", settings.receiver_port, 60.0), (tmp_path / "receiver.log").read_text()[-3000:]
        yield settings
    finally:
        for process, log in started:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:  # as the supervisor does after its grace period
                process.kill()
                process.wait(timeout=10)
            log.close()
