import os
import signal
import socket
import subprocess
import sys

import pytest

from pipeline.stack.broker import LaunchError
from pipeline.stack.supervisor import Stack, child_env
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


def processes_mentioning(text):
    """PIDs whose command line or environment names `text` (each stack child gets the data dir)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline, open(f"/proc/{entry}/environ", "rb") as environ:
                    if text.encode() in cmdline.read() + environ.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_oodwatch_up_stops_everything_on_ctrl_c_or_sigterm(tmp_path, signum):
    settings = test_settings(tmp_path)
    env = {
        **child_env(settings),
        "OODWATCH_KAFKA_BOOTSTRAP": "",
        "OODWATCH_BROKER_PORT": str(settings.broker_port),
    }
    up = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "up"], env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in up.stderr:
        lines.append(line)
        if "Ctrl-C stops" in line:
            break
    assert up.poll() is None, "".join(lines)
    assert len(processes_mentioning(str(tmp_path))) == 5  # up itself, broker, store, worker, receiver
    up.send_signal(signum)
    assert up.wait(timeout=30) == 0
    up.stderr.close()
    assert processes_mentioning(str(tmp_path)) == []
    for port in (settings.broker_port, settings.api_port, settings.receiver_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
