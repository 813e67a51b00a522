"""Foreground lifetime of the embedded stack: until Ctrl-C, SIGTERM, or a child dies."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType

from pipeline.stack.supervisor import Stack


class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGINT. A KeyboardInterrupt, so start-up's clean-up path handles it too."""


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """Install before the first child starts: a signal at any moment must still stop all of them.
    Only the first signal raises, so a second Ctrl-C cannot interrupt the stopping itself."""
    requested = False

    def _raise_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal requested
        if requested:
            print("oodwatch: already stopping", file=sys.stderr)
            return
        requested = True
        raise StopRequested()

    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until_stopped(stack: Stack) -> int:
    """0 on Ctrl-C/SIGTERM; 1 if a child exited on its own (its log tail is printed)."""
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
    except KeyboardInterrupt:
        print("\noodwatch: stopping", file=sys.stderr)
        return 0
