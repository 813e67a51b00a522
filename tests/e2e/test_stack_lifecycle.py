import os
import socket

import pytest

from pipeline.stack.broker import LaunchError
from pipeline.stack.supervisor import Stack
from tests.helpers import test_settings


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("broker", ["tansu", "noida"])
def test_stop_terminates_every_child_it_started(tmp_path, broker):
    stack = Stack(test_settings(tmp_path, embedded_broker=broker), workers=1)
    stack.start()
    pids = [c.process.pid for c in stack.children]
    assert len(pids) == 4 and all(alive(p) for p in pids)  # broker, store, worker, receiver
    stack.stop()
    assert not any(alive(p) for p in pids)
    assert stack.children == []


def test_port_in_use_is_a_one_line_error_and_starts_nothing(tmp_path):
    settings = test_settings(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.api_port))
        holder.listen()
        stack = Stack(settings)
        with pytest.raises(LaunchError, match=f"port {settings.api_port} .*OODWATCH_API_PORT"):
            stack.start()
        assert stack.children == []


def test_missing_models_say_what_to_run(tmp_path):
    stack = Stack(test_settings(tmp_path, model_dir=tmp_path / "nothing-here"))
    with pytest.raises(LaunchError, match="oodwatch models build"):
        stack.start()
