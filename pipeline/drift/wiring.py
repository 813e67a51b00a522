"""The drift tracker in the store process: built from settings, fed by the sink, run beside it.

`ObservedStore` is the hook: a Store whose `insert_screenings` also hands the newly seen
screenings to the tracker (after redaction, since the sink redacts before it stores).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.drift.store import DriftStore
from pipeline.drift.tracker import DriftTracker, Embedder
from pipeline.policy import RoutingPolicy
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store
from schemas.evidence import Screening

log = logging.getLogger(__name__)


class ObservedStore(Store):
    """A Store whose `insert_screenings` also hands each newly seen screening to the tracker.
    Screenings are written without a look-up (a replay folds in the table), so replays are told
    apart here, by a bounded set of recent event ids: a replay after a crash is of recent ones."""

    tracker: DriftTracker | None = None
    RECENT_IDS = 200_000

    def insert_screenings(self, screenings: Sequence[Screening], stored_ns: int) -> int:
        stored = super().insert_screenings(screenings, stored_ns)
        if self.tracker is not None:
            recent: OrderedDict[str, None] = self.__dict__.setdefault("_recent", OrderedDict())
            fresh = [s for s in screenings if s.event_id not in recent]
            for s in fresh:
                recent[s.event_id] = None
            while len(recent) > self.RECENT_IDS:
                recent.popitem(last=False)
            if fresh:
                self.tracker.observe(fresh)
        return stored


def embedder_factory(settings: Settings) -> Callable[[], Embedder | None]:
    def make() -> Embedder | None:
        from detectors.embedding import EMBEDDER_FILE, MiniLMEmbedder

        if not (settings.models_path / EMBEDDER_FILE).exists():
            log.warning("tier-2 embedder not in %s: drift compares versions without output embeddings",
                        settings.models_path)  # fmt: skip
            return None
        return MiniLMEmbedder(settings.models_path, threads=1)

    return make


def build_tracker(
    settings: Settings, store: Store, on_alert: Callable[[dict[str, Any]], None] | None = None
) -> DriftTracker | None:
    if not settings.drift.enabled:
        return None
    policy = RoutingPolicy.load(settings.policy_file)

    def alert(body: dict[str, Any]) -> None:
        if on_alert is not None:
            on_alert({**body, "url": f"{settings.api_url}/ui/drift?version={body['version_id']}"})

    tracker = DriftTracker.from_settings(
        settings.drift, DriftStore(store), policy=policy, embedder=embedder_factory(settings), on_alert=alert
    )
    tracker.load()
    return tracker
