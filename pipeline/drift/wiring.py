"""The drift tracker in the store process: built from settings, fed by the sink, run beside it.

`ObservedStore` is the interim hook: a Store whose `insert_screenings` also hands the newly
stored screenings to the tracker. Once the sink calls `tracker.observe(fresh)` itself after
each stored batch (issue 15's sink), the store process opens a plain Store again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.drift.store import DriftStore
from pipeline.drift.tracker import DriftTracker, Embedder
from pipeline.policy import RoutingPolicy
from pipeline.settings import Settings
from pipeline.store.clickhouse import Store, connect
from schemas.evidence import Screening

log = logging.getLogger(__name__)


class ObservedStore(Store):
    tracker: DriftTracker | None = None

    @classmethod
    def open_observed(cls, dsn: str) -> ObservedStore:
        store = cls(connect(dsn))
        store.migrate()
        return store

    def insert_screenings(self, screenings: Sequence[Screening], stored_ns: int) -> int:
        fresh = self._unseen("screenings", "event_id", {s.event_id: s for s in screenings})
        stored = super().insert_screenings(fresh, stored_ns)
        if self.tracker is not None and fresh:
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
