"""Integration tier: a real tansu broker per module (it starts in milliseconds), chdb stores
in temporary directories, and the models built by `make setup`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.stack.broker import broker_command
from pipeline.stack.supervisor import wait_tcp
from pipeline.stack.topics import ensure_topics
from tests.helpers import MODEL_DIR, free_port, test_settings


@pytest.fixture(scope="session", autouse=True)
def models_built() -> None:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` (or `oodwatch models build`) first")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("broker")
    command = broker_command("tansu", "127.0.0.1", port, data)
    with open(data / "broker.log", "wb") as log:
        process = subprocess.Popen(command.argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_tcp("127.0.0.1", port, 10.0), "tansu did not start listening"
            yield f"127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def settings(broker: str, tmp_path: Path) -> Settings:
    result = test_settings(tmp_path, kafka_bootstrap=broker)
    ensure_topics(result)
    return result
