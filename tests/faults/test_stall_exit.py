"""A worker whose group join never completes exits with STALL_EXIT_CODE so it can be restarted
(noida can leave a restarted worker in such a join; here a listener that accepts connections and
never answers plays that broker)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

from pipeline.agents.watchdog import STALL_EXIT_CODE
from pipeline.stack.supervisor import child_env
from tests.helpers import REPO, test_settings


def test_a_worker_that_never_joins_its_group_exits_to_be_restarted(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(silent.accept()[0]) for _ in range(10_000)], daemon=True).start()
    settings = test_settings(tmp_path, kafka_bootstrap=f"127.0.0.1:{silent.getsockname()[1]}",
                             worker_stall_timeout_s=5.0)  # fmt: skip
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], cwd=REPO,
                                  env=child_env(settings), stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            code = worker.wait(timeout=90)
        finally:
            if worker.poll() is None:
                worker.kill()
            silent.close()
    assert code == STALL_EXIT_CODE, log_path.read_text()[-2000:]
    assert "its consumer group has not assigned it partitions" in log_path.read_text()
