"""Foreground lifetime of the embedded stack: until Ctrl-C, SIGTERM, or a child dies."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from pipeline.stack.supervisor import Stack


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def wait_until_stopped(stack: Stack) -> int:
    """0 on Ctrl-C/SIGTERM; 1 if a child exited on its own (its log tail is printed)."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        while True:
            child = stack.failed()
            if child is not None:
                print(
                    f"oodwatch: {child.name} exited with status {child.process.returncode}; stopping the stack. "
                    f"Last lines of {child.log_path}:\n{child.tail()}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Stop):
        print("\noodwatch: stopping", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
