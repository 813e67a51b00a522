from pathlib import Path

import pytest

from pipeline.stack import broker
from pipeline.stack.broker import LaunchError, broker_command


def test_tansu_command_listens_and_advertises_loopback(tmp_path):
    command = broker_command("tansu", "127.0.0.1", 19999, tmp_path)
    assert command.argv[command.argv.index("--listener-url") + 1] == "tcp://127.0.0.1:19999"
    assert command.argv[command.argv.index("--advertised-listener-url") + 1] == "tcp://127.0.0.1:19999"
    assert Path(command.argv[0]).name == "tansu"


def test_noida_command_runs_the_binary_not_the_wrapper(tmp_path):
    command = broker_command("noida", "127.0.0.1", 19998, tmp_path)
    assert Path(command.argv[0]).parent.name == "noida_db"  # the packaged binary itself
    assert (tmp_path / "noida").is_dir()


def test_unknown_broker_kind_names_the_setting_and_the_choices(tmp_path):
    with pytest.raises(LaunchError, match=r"OODWATCH_EMBEDDED_BROKER.*noida.*tansu"):
        broker_command("redpanda", "127.0.0.1", 1, tmp_path)


def test_missing_tansu_binary_says_to_run_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(broker.resources, "files", lambda package: tmp_path)
    with pytest.raises(LaunchError, match="make setup"):
        broker_command("tansu", "127.0.0.1", 1, tmp_path)
