"""E2E tier: the whole embedded stack (tansu, store process, Faust worker, receiver) on free
ports in a temporary data dir, once per module."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.cli.client import TriageClient
from pipeline.settings import Settings
from pipeline.stack.supervisor import Stack
from tests.helpers import MODEL_DIR, test_settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (MODEL_DIR / "tier1.onnx").exists():
        pytest.fail(f"no models in {MODEL_DIR}: run `make setup` first")
    running = Stack(test_settings(tmp_path_factory.mktemp("stack")), workers=1)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def settings(stack: Stack) -> Settings:
    return stack.settings


@pytest.fixture(scope="module")
def client(settings: Settings) -> Iterator[TriageClient]:
    api = TriageClient.from_settings(settings)
    yield api
    api.close()


def wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = read()
    while not done(value):
        assert time.monotonic() < deadline, f"timed out; last value {value}"
        time.sleep(0.3)
        value = read()
    return value
