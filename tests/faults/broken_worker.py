"""A real worker process whose tier 1 is broken on purpose (the fault tier's stand-in for a corrupt
model or a poison event): `python -m tests.faults.broken_worker poison|everything`, settings from
the environment as the supervisor passes them."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from detectors.base import MatrixDetector
from pipeline.app import build_screener
from pipeline.settings import Settings


class Broken(MatrixDetector):
    name, version = "broken", "1"
    categories, thresholds = ("injection",), (0.5,)

    def __init__(self, everything: bool) -> None:
        self.everything = everything

    def score_matrix(self, events: Any) -> np.ndarray:
        if self.everything:
            raise RuntimeError("model file corrupt")
        if any(m.content.startswith("POISON") for e in events for m in e.input_messages):
            raise ValueError("this event breaks the model")
        return np.full((len(events), 1), 0.1)


def main() -> None:
    import faust

    from pipeline.agents.screen import Screener
    from pipeline.app import create_app

    mode = sys.argv[1]
    settings = Settings()
    real = build_screener(settings)
    screener = Screener([Broken(mode == "everything")], real.policy)
    app = create_app(settings, screener=screener)
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
