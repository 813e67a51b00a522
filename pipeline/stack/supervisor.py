"""The embedded stack: broker, store, workers and receiver as child processes on 127.0.0.1.

Started in dependency order, each waited for until it is ready; stopped in reverse order
by PID (never by name). Every failure is one line that says what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from pipeline.agents.watchdog import STALL_EXIT_CODE
from pipeline.settings import Settings
from pipeline.stack import local_judge
from pipeline.stack.broker import LaunchError, broker_command
from pipeline.stack.topics import ensure_topics
from pipeline.store.auth import api_token

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
HEAL_INTERVAL_S = 0.5

Progress = Callable[[str], None]


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes] = field(repr=False)
    argv: list[str] = field(default_factory=list)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def child_env(settings: Settings) -> dict[str, str]:
    """Children get every setting explicitly (paths resolved, the embedded defaults filled in),
    so they agree with the supervisor whether the settings came from the environment or code."""
    env = dict(os.environ)
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in ("topics", "drift") or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Path):
            value = value.resolve()
        elif isinstance(value, bool):
            value = str(value).lower()
        env[f"OODWATCH_{name.upper()}"] = str(value)
    env.update(
        OODWATCH_KAFKA_BOOTSTRAP=settings.bootstrap,
        OODWATCH_CLICKHOUSE_DSN=settings.store_dsn,
        OODWATCH_MODEL_DIR=str(settings.models_path),
        PYTHONUNBUFFERED="1",
    )
    if settings.judge_key():
        env["OODWATCH_JUDGE_API_KEY"] = settings.judge_key()
    for name, topic in settings.topics.model_dump().items():
        env[f"OODWATCH_TOPIC_{name.upper()}"] = topic
    for name, value in settings.drift.model_dump().items():
        env[f"OODWATCH_DRIFT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def check_port_free(host: str, port: int, what: str, env_var: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Servers bind with SO_REUSEADDR, so only a live listener (not TIME_WAIT) blocks them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise LaunchError(
                    f"port {port} ({what}) on {host} is in use: stop what holds it or set {env_var} to a free port"
                ) from None
            raise


def wait_tcp(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Stack:
    def __init__(self, settings: Settings, *, workers: int | None = None, progress: Progress | None = None) -> None:
        self.settings = settings
        self.workers = workers or settings.workers
        self.progress = progress or (lambda _: None)
        self.children: list[Child] = []
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.run_dir = self.data_dir / "run"
        #: Workers restarted after their stall watchdog made them exit (STALL_EXIT_CODE).
        self.restarts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._killed: set[str] = set()
        self._healer: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._preflight()
        api_token(s, create=True)
        try:
            if s.embedded:
                command = broker_command(s.embedded_broker, s.host, s.broker_port, self.data_dir)
                self.progress(f"starting broker ({command.name}) on {s.bootstrap}")
                broker = self._spawn("broker", command.argv)
                self._wait(broker, lambda: wait_tcp(s.host, s.broker_port, 0.5), f"broker on port {s.broker_port}")
            self.progress("creating topics")
            ensure_topics(s)
            if s.uses_local_judge:
                self.progress(f"starting the local judge (SmolLM2, plumbing only) on port {s.local_judge_port}")
                judge = self._spawn("judge", local_judge.server_command(s))
                judge_url = f"http://{s.host}:{s.local_judge_port}/v1"
                self._wait(judge, lambda: http_ok(f"{judge_url}/models"), "local judge")
                try:
                    local_judge.probe(judge_url, judge.process.poll)
                except LaunchError as exc:
                    raise LaunchError(f"{exc} (its log: {judge.log_path})") from None
            self.progress("starting store (sink + triage API)")
            store = self._spawn("store", self._oodwatch("store"))
            self._wait(store, lambda: http_ok(f"{s.api_url}/readyz"), f"store on {s.api_url}")
            ready_files = []
            for index in range(self.workers):
                self.progress(f"starting worker {index + 1}/{self.workers}")
                ready_files.append(self._spawn_worker(index))
            self.progress("starting OTLP receiver")
            receiver = self._spawn("receiver", self._oodwatch("receiver"))
            self._wait(receiver, lambda: http_ok(f"{s.receiver_url}/healthz"), f"receiver on {s.receiver_url}")
            if s.guard_enabled:
                self.progress("starting the guard (inline checks, session actions)")
                guard = self._spawn("guard", self._oodwatch("guard"))
                self._wait(guard, lambda: http_ok(f"{s.guard_url}/readyz"), f"guard on {s.guard_url}")
            for index, ready in enumerate(ready_files):
                worker = self.child(f"worker-{index}")
                self._wait(worker, ready.exists, f"worker {index} joined its consumer group")
        except BaseException:
            self.stop()
            raise
        self.start_healing()

    def start_healing(self) -> None:
        self._stopping.clear()
        self._healer = threading.Thread(target=self._heal, name="stack-healer", daemon=True)
        self._healer.start()

    def _heal(self) -> None:
        """Restart a worker its stall watchdog stopped: it resumes from its committed offsets."""
        while not self._stopping.wait(HEAL_INTERVAL_S):
            with self._lock:
                stalled = [
                    c.name for c in self.children
                    if c.name.startswith("worker-") and c.name not in self._killed
                    and c.process.poll() == STALL_EXIT_CODE
                ]  # fmt: skip
                for name in stalled:
                    if self._stopping.is_set():
                        return
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    self.progress(f"{name} stalled (its watchdog stopped it): restarting it from committed offsets")
                    try:
                        self.restart(name)
                    except LaunchError as exc:
                        self.progress(f"could not restart {name}: {exc}")

    def worker_metrics_port(self, index: int) -> int:
        """Each worker `oodwatch up` starts serves /metrics on its own port (0: none)."""
        base = self.settings.worker_metrics_port
        return base + index if base else 0

    def _spawn_worker(self, index: int) -> Path:
        ready = self.run_dir / f"worker-{index}.ready"
        ready.unlink(missing_ok=True)
        port = str(self.worker_metrics_port(index))
        argv = self._oodwatch("worker", "--ready-file", str(ready), "--metrics-port", port)
        self._spawn(f"worker-{index}", argv)
        return ready

    def add_worker(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        """Start one more worker (scale out) and wait until it has joined its consumer group."""
        index = 1 + max((int(c.name.split("-")[1]) for c in self.children if c.name.startswith("worker-")), default=-1)
        ready = self._spawn_worker(index)
        name = f"worker-{index}"
        self._wait(self.child(name), ready.exists, f"{name} joined its consumer group", timeout_s)
        return name

    def stop(self) -> None:
        """Reverse order, by PID: SIGTERM, then SIGKILL after a grace period."""
        self._stopping.set()
        if self._healer is not None and self._healer is not threading.current_thread():
            self._healer.join()
            self._healer = None
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in reversed(self.children):
            remaining = max(0.1, deadline - time.monotonic())
            try:
                child.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.log_file.close()
        self.children.clear()

    def failed(self) -> Child | None:
        """The first child that has exited, if any (a running stack has none). A worker its stall
        watchdog stopped is being restarted, not failed."""
        with self._lock:
            return next(
                (c for c in self.children if c.process.poll() not in (None, STALL_EXIT_CODE)),
                None,
            )

    # -- helpers --------------------------------------------------------------------

    def _preflight(self) -> None:
        s = self.settings
        if s.embedded:
            check_port_free(s.host, s.broker_port, "embedded broker", "OODWATCH_BROKER_PORT")
        check_port_free(s.host, s.api_port, "triage API", "OODWATCH_API_PORT")
        check_port_free(s.host, s.receiver_port, "OTLP receiver", "OODWATCH_RECEIVER_PORT")
        if s.guard_enabled:
            check_port_free(s.host, s.guard_port, "guard", "OODWATCH_GUARD_PORT")
        for index in range(self.workers):
            if port := self.worker_metrics_port(index):
                check_port_free(s.host, port, f"worker {index} metrics", "OODWATCH_WORKER_METRICS_PORT")
        if s.uses_local_judge:
            check_port_free(s.host, s.local_judge_port, "local judge", "OODWATCH_LOCAL_JUDGE_PORT")
            local_judge.server_command(s)  # says what is missing before anything starts
        from detectors.tier1_classifier import MODEL_FILE

        if not (s.models_path / MODEL_FILE).exists():
            raise LaunchError(f"no models in {s.models_path}: run `oodwatch models build` (or `make setup`)")

    def _oodwatch(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli", *args]

    def _spawn(self, name: str, argv: list[str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=child_env(self.settings), start_new_session=True,
            )  # fmt: skip
        except OSError as exc:  # missing or not executable
            log_file.close()
            raise LaunchError(f"cannot start {name}: {exc.filename}: {exc.strerror}; run `make setup`") from exc
        child = Child(name, process, log_path, log_file, argv)
        self.children.append(child)
        return child

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one child by PID and reap it (fault drills: `kill -9` a worker, stop the store)."""
        with self._lock:
            self._killed.add(name)
            child = self.child(name)
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(sig)
            child.process.wait(timeout=STOP_GRACE_S)
            child.log_file.close()

    def restart(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> Child:
        """Start a killed child again with the same command, and wait until it is ready."""
        with self._lock:
            return self._restart(name, timeout_s)

    def _restart(self, name: str, timeout_s: float = READY_TIMEOUT_S) -> Child:
        old = self.child(name)
        if old.process.poll() is None:
            raise LaunchError(f"{name} is still running (pid {old.process.pid}): kill it first")
        self.children.remove(old)
        self._killed.discard(name)
        old.log_file.close()
        s = self.settings
        if name.startswith("worker-"):
            ready = self.run_dir / f"{name}.ready"
            ready.unlink(missing_ok=True)
            child = self._spawn(name, old.argv)
            self._wait(child, ready.exists, f"{name} joined its consumer group", timeout_s)
        else:
            checks: dict[str, Callable[[], bool]] = {
                "broker": lambda: wait_tcp(s.host, s.broker_port, 0.5),
                "store": lambda: http_ok(f"{s.api_url}/readyz"),
                "receiver": lambda: http_ok(f"{s.receiver_url}/healthz"),
                "guard": lambda: http_ok(f"{s.guard_url}/readyz"),
            }
            child = self._spawn(name, old.argv)
            self._wait(child, checks.get(name, lambda: True), f"{name} ready again", timeout_s)
        return child

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def _wait(self, child: Child, ready: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if child.process.poll() is not None:
                raise LaunchError(
                    f"{child.name} exited with status {child.process.returncode} before {what}; "
                    f"see {child.log_path}:\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise LaunchError(f"timed out after {timeout_s:.0f}s waiting for {what}; see {child.log_path}")
            time.sleep(0.1)
