"""Version drift in the store process: every stored screening updates its model version's
profile; a new version is compared with the one it replaced as its traffic grows.

A version is the first sighting of a (service, answering model, deployment label) key within a
namespace (live traffic, or one drill case, so drills never mix with live versions). Its
predecessor is the version of the same service with the most traffic in the window when it
appeared. Comparisons happen at fixed event counts of the new version (`min_samples`, then
x`look_growth`), each at its share of the alpha, so the chance of ever flagging an unchanged
version stays at `alpha` however long it is watched.

`observe` is the hook the sink calls for each stored batch of screenings (cheap: counts and
histograms under a lock); `step` does the slow work in a thread: embedding sampled outputs at
a bounded rate (MiniLM, loaded once), the comparisons, and writing profiles per hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from detectors.output_profile import refusals
from pipeline.drift.compare import CompareConfig, Comparison, compare
from pipeline.drift.profile import Judge, VersionProfile, plain_judge
from pipeline.drift.stats import look_sizes
from pipeline.drift.store import DriftStore, Sample
from pipeline.policy import RoutingPolicy
from pipeline.settings import DriftSettings
from schemas.evidence import EvidenceBundle, Screening, version_label

log = logging.getLogger(__name__)

HOUR_S = 3600
QUEUE_MAX = 5000
EMBED_BATCH = 32
#: A drill's versions leave memory this long after their last event (their rows stay).
DRILL_IDLE_S = 3600


class Embedder(Protocol):
    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def version_id_for(namespace: str, service: str, model: str, deployment: str) -> str:
    return hashlib.blake2b(f"{namespace}\x1f{service}\x1f{model}\x1f{deployment}".encode(), digest_size=8).hexdigest()


def policy_judge(policy: RoutingPolicy) -> Judge:
    """Flagged and uncertain exactly as the routing policy decides them per category."""

    def judge(category: str, score: float, threshold: float) -> tuple[bool, bool]:
        rule = policy.rule(category)
        cut = threshold if rule.threshold == "model" else float(rule.threshold)
        return score >= cut, cut * (1.0 - rule.uncertain_band) <= score < cut

    return judge


@dataclass
class _Pending:
    version_id: str
    ordinal: int
    event_id: str
    text: str
    slot: int
    sampled_ns: int


@dataclass
class _Look:
    version_id: str
    look: int
    events: int
    new: VersionProfile
    old: VersionProfile
    baseline_id: str
    due_ns: int


@dataclass
class VersionState:
    version_id: str
    namespace: str
    service: str
    model: str
    deployment: str
    provider: str
    first_seen_ns: int
    last_seen_ns: int
    baseline_id: str = ""
    #: The model name the app asked for (an alias whose snapshots are versions of one another).
    request_model: str = ""
    events: int = 0
    #: "first" (no predecessor), "watching", "drifted", "settled" (every look passed).
    status: str = "first"
    looks: int = 0
    next_look: int = 0
    detected_at_events: int = 0
    detected_ns: int = 0
    moved: list[str] = field(default_factory=list)
    hours: dict[int, VersionProfile] = field(default_factory=dict)
    dirty: dict[int, VersionProfile] = field(default_factory=dict)
    #: Reservoir of embedded outputs (Algorithm R over sampled outputs), by slot.
    reservoir: dict[int, Sample] = field(default_factory=dict)
    sampled: int = 0
    queued: deque[int] = field(default_factory=deque)
    changed: bool = True

    @property
    def label(self) -> str:
        return version_label(self.service, self.model, self.deployment)

    def window(self, since_hour: int) -> VersionProfile:
        return VersionProfile.total(p for hour, p in self.hours.items() if hour >= since_hour)

    def row(self, sizes: Sequence[int], now_ns: int) -> dict[str, Any]:
        return {
            "version_id": self.version_id, "namespace": self.namespace, "service": self.service, "model": self.model,
            "request_model": self.request_model,
            "deployment": self.deployment, "label": self.label, "provider": self.provider,
            "baseline_id": self.baseline_id, "first_seen": self.first_seen_ns, "last_seen": self.last_seen_ns,
            "events": self.events, "status": self.status, "looks": self.looks,
            "looks_due": sum(1 for n in sizes if n <= self.events) if self.baseline_id else 0,
            "detected_at_events": self.detected_at_events, "detected_at": self.detected_ns, "moved": self.moved,
            "updated_at": now_ns,
        }  # fmt: skip


@dataclass
class DriftCounters:
    screenings: int = 0
    unversioned: int = 0
    versions: int = 0
    comparisons: int = 0
    drifted: int = 0
    alerts: int = 0
    embedded: int = 0
    samples_dropped: int = 0
    embedder_missing: bool = False


class DriftTracker:
    def __init__(
        self, settings: DriftSettings, *, store: DriftStore | None = None, judge: Judge = plain_judge,
        embedder: Callable[[], Embedder | None] | None = None, on_alert: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], int] = time.time_ns, seed: int = 0,
    ) -> None:  # fmt: skip
        """`embedder` makes the embedder on first use (in the worker thread, never on the event
        loop); None or a factory returning None: no embedding drift."""
        self.settings = settings
        self.store = store
        self.judge = judge
        self.on_alert = on_alert
        self.clock = clock
        self.config = CompareConfig(
            alpha=settings.alpha, min_rate_diff=settings.min_rate_diff, min_ks_distance=settings.min_ks_distance,
            min_embeddings=settings.min_embeddings, permutations=settings.permutations,
            safety=frozenset(settings.safety_category_names),
        )  # fmt: skip
        self.sizes = look_sizes(settings.min_samples, settings.look_growth, settings.max_samples)
        self.requests = settings.request_category_names
        self.versions: dict[str, VersionState] = {}
        self.counters = DriftCounters()
        self._make_embedder = embedder
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._looks: list[_Look] = []
        self._rng = random.Random(seed)
        self._seed = seed
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._flushed_at = time.monotonic()

    @classmethod
    def from_settings(
        cls, settings: DriftSettings, store: DriftStore | None, *, policy: RoutingPolicy,
        embedder: Callable[[], Embedder | None] | None = None, on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> DriftTracker:  # fmt: skip
        return cls(settings, store=store, judge=policy_judge(policy), embedder=embedder, on_alert=on_alert)

    def load(self) -> None:
        """After a restart: live versions seen within the window, with their hourly profiles and
        reservoirs, so comparisons go on where they stopped (drill versions are not reloaded)."""
        if self.store is None:
            return
        now_ns = self.clock()
        since = self._since_hour(now_ns)
        rows = [r for r in self.store.versions(namespace="") if int(r["last_seen_ns"]) >= since * 1_000_000_000]
        hourly = self.store.hourly_profiles([r["version_id"] for r in rows], since_hour=since)
        with self._lock:
            for r in rows:
                state = VersionState(
                    r["version_id"], "", r["service"], r["model"], r["deployment"], r["provider"],
                    int(r["first_seen_ns"]), int(r["last_seen_ns"]), baseline_id=r["baseline_id"],
                    request_model=r["request_model"],
                    events=int(r["events"]), status=r["status"], looks=int(r["looks"]),
                    detected_at_events=int(r["detected_at_events"]), detected_ns=int(r["detected_ns"]),
                    moved=list(r["moved"]), changed=False,
                )  # fmt: skip
                state.next_look = sum(1 for n in self.sizes if n <= state.events)
                state.hours = {hour: p for (vid, hour), p in hourly.items() if vid == state.version_id}
                samples = self.store.samples(state.version_id, limit=self.settings.reservoir)
                state.reservoir = dict(enumerate(samples))
                state.sampled = len(samples)
                self.versions[state.version_id] = state
        if rows:
            log.info("drift: %d live model versions reloaded", len(rows))

    # -- the sink's hook ------------------------------------------------------------

    def observe(self, screenings: Sequence[Screening]) -> None:
        """Every newly stored screening, once (the sink calls it after a batch is stored)."""
        if not screenings:
            return
        now_ns = self.clock()
        with self._lock:
            for s in screenings:
                if not (s.response_model or s.model):
                    self.counters.unversioned += 1  # agent and tool spans: no model answered
                    continue
                if s.refused is None and s.output_sample:  # a screen stage that samples text but not refusals
                    s = s.model_copy(update={"refused": refusals([s.output_sample])[0]})
                self._observe(s, now_ns)
            self.counters.screenings += len(screenings)

    def observe_bundles(self, bundles: Iterable[EvidenceBundle]) -> None:
        """Tier-2 flags per version, from newly stored bundles."""
        with self._lock:
            for bundle in bundles:
                flagged = {
                    score.category
                    for result in bundle.tier2
                    for score in result.scores
                    if score.score >= score.threshold and "/" not in score.category
                }
                if not bundle.screenings or not bundle.tier2:
                    continue  # tier 2 did not look (over budget, or no model): nothing to count
                s = bundle.screenings[0]
                state = self.versions.get(self._key(s))
                if state is None:
                    continue
                hour = self._hour(s.received_ns or bundle.created_ns)
                for profiles in (state.hours, state.dirty):
                    profiles.setdefault(hour, VersionProfile()).observe_tier2(flagged)

    # -- the slow part --------------------------------------------------------------

    def step(self) -> None:
        """Embed what the rate allows, run the comparisons that are due, flush what is dirty."""
        self._embed_some()
        self._compare_due()
        if time.monotonic() - self._flushed_at >= self.settings.flush_interval_s:
            self.flush()

    async def run(self, interval_s: float = 0.25) -> None:
        while True:
            try:
                await asyncio.to_thread(self.step)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("drift step failed; retrying")
            await asyncio.sleep(interval_s)

    def flush(self) -> None:
        """Profile deltas per version and hour, and changed registry rows, into the store."""
        now_ns = self.clock()
        with self._lock:
            deltas = [(v.version_id, hour, p) for v in self.versions.values() for hour, p in v.dirty.items()]
            rows = [v.row(self.sizes, now_ns) for v in self.versions.values() if v.changed]
            for v in self.versions.values():
                v.dirty, v.changed = {}, False
            self._evict(now_ns)
        self._flushed_at = time.monotonic()
        if self.store is not None:
            self.store.save_profiles(deltas, now_ns)
            self.store.save_versions(rows)

    # -- internals ------------------------------------------------------------------

    @staticmethod
    def _key(s: Screening) -> str:
        return version_id_for(s.drill_id or "", s.service, s.response_model or s.model or "", s.deployment)

    @staticmethod
    def _hour(ns: int) -> int:
        return int(ns // 1_000_000_000 // HOUR_S * HOUR_S)

    def _since_hour(self, now_ns: int) -> int:
        return self._hour(now_ns) - (self.settings.window_hours - 1) * HOUR_S

    def _observe(self, s: Screening, now_ns: int) -> None:
        key = self._key(s)
        at_ns = s.received_ns or now_ns
        state = self.versions.get(key)
        if state is None:
            state = self._register(key, s, at_ns, now_ns)
        state.events += 1
        state.last_seen_ns = max(state.last_seen_ns, at_ns)
        hour = self._hour(at_ns)
        for profiles in (state.hours, state.dirty):
            profiles.setdefault(hour, VersionProfile()).observe(s, self.judge, self.requests)
        if s.output_sample:
            self._sample(state, s)
        if (
            state.status == "watching"
            and state.next_look < len(self.sizes)
            and state.events >= self.sizes[state.next_look]
        ):
            self._schedule_look(state, now_ns)
        state.changed = True

    def _register(self, key: str, s: Screening, at_ns: int, now_ns: int) -> VersionState:
        """Its predecessor: among the service's versions established when it appeared (at least
        half of `min_samples` events in the window), the one the app requested under the same
        model name, else the busiest. None established (a stream's start, several models at once):
        it is a first version, compared with nothing."""
        model = s.response_model or s.model or ""
        namespace = s.drill_id or ""
        state = VersionState(key, namespace, s.service, model, s.deployment, s.provider or "", at_ns, at_ns)
        state.request_model = s.model or ""
        since = self._since_hour(now_ns)
        established = self.settings.min_samples // 2
        peers = [
            (v.request_model == state.request_model, v.window(since).events, -v.first_seen_ns, v.version_id)
            for v in self.versions.values()
            if v.namespace == namespace and v.service == s.service
        ]
        peers = [p for p in peers if p[1] >= established]
        if peers:
            state.baseline_id = max(peers)[3]
            state.status = "watching"
        self.versions[key] = state
        self.counters.versions += 1
        log.info("new model version %s (baseline %s)", state.label, state.baseline_id or "none")
        return state

    def _sample(self, state: VersionState, s: Screening) -> None:
        """Algorithm R over the version's sampled outputs: only those that enter the reservoir
        are embedded."""
        state.sampled += 1
        capacity = self.settings.reservoir
        slot = state.sampled - 1 if state.sampled <= capacity else self._rng.randrange(state.sampled)
        if slot >= capacity:
            return
        if len(self._queue) >= QUEUE_MAX or self._make_embedder is None or self.counters.embedder_missing:
            self.counters.samples_dropped += 1
            return
        self._queue.append(_Pending(state.version_id, state.events, s.event_id, s.output_sample or "", slot,
                                    s.screened_ns or s.received_ns))  # fmt: skip
        state.queued.append(state.events)

    def _schedule_look(self, state: VersionState, now_ns: int) -> None:
        baseline = self.versions.get(state.baseline_id)
        if baseline is None:
            return
        since = self._since_hour(now_ns)
        old = baseline.window(since)
        if old.events < self.settings.min_samples:
            return  # the predecessor has too little traffic in the window: try again on later events
        look = state.next_look
        while look + 1 < len(self.sizes) and self.sizes[look + 1] <= state.events:
            look += 1  # a batch crossed several look sizes: one look, at the largest one's alpha
        state.next_look = look + 1
        wait_ns = int(self.settings.look_wait_s * 1e9)
        self._looks.append(
            _Look(
                state.version_id,
                look + 1,
                state.events,
                state.window(since),
                old,
                baseline.version_id,
                now_ns + wait_ns,
            )
        )

    def _embed_some(self) -> None:
        now = time.monotonic()
        rate = self.settings.embed_rate_per_s
        self._tokens = min(rate * 2, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        with self._lock:
            take = min(len(self._queue), int(self._tokens), EMBED_BATCH * 4)
            batch = [self._queue.popleft() for _ in range(take)]
        if not batch:
            return
        self._tokens -= len(batch)
        embedder = self._get_embedder()
        vectors = embedder.embed([p.text for p in batch]) if embedder is not None else None
        samples: list[Sample] = []
        with self._lock:
            for i, pending in enumerate(batch):
                state = self.versions.get(pending.version_id)
                if state is None:
                    continue
                if state.queued and state.queued[0] == pending.ordinal:
                    state.queued.popleft()
                else:
                    with contextlib.suppress(ValueError):
                        state.queued.remove(pending.ordinal)
                if vectors is None:
                    continue
                sample = Sample(state.version_id, pending.event_id, pending.ordinal, pending.text,
                                np.asarray(vectors[i], dtype=np.float32), pending.sampled_ns)  # fmt: skip
                state.reservoir[pending.slot] = sample
                hour = self._hour(pending.sampled_ns)
                for profiles in (state.hours, state.dirty):
                    profiles.setdefault(hour, VersionProfile()).observe_embedding(sample.vector)
                samples.append(sample)
            self.counters.embedded += len(samples)
        if samples and self.store is not None:
            self.store.save_samples(samples)

    def _get_embedder(self) -> Embedder | None:
        if self._embedder is None and self._make_embedder is not None and not self.counters.embedder_missing:
            try:
                self._embedder = self._make_embedder()
            except Exception as exc:
                log.warning("no output embeddings for drift (%s): comparisons skip the MMD test", exc)
            if self._embedder is None:
                self.counters.embedder_missing = True
                with self._lock:
                    self._queue.clear()
                    for state in self.versions.values():
                        state.queued.clear()
        return self._embedder

    def _compare_due(self) -> None:
        now_ns = self.clock()
        with self._lock:
            ready = [look for look in self._looks if self._ready(look, now_ns)]
            self._looks = [look for look in self._looks if look not in ready]
            work = []
            for look in ready:
                state, baseline = self.versions.get(look.version_id), self.versions.get(look.baseline_id)
                if state is None or baseline is None:
                    continue
                new = sorted((s for s in state.reservoir.values() if s.ordinal <= look.events), key=lambda s: s.ordinal)
                old = sorted(baseline.reservoir.values(), key=lambda s: s.ordinal)
                work.append((look, state, baseline, new, old))
        for look, state, baseline, new, old in work:
            self._run_look(look, state, baseline, new, old)

    def _ready(self, look: _Look, now_ns: int) -> bool:
        state = self.versions.get(look.version_id)
        waiting = state is not None and bool(state.queued) and state.queued[0] <= look.events
        return not waiting or now_ns >= look.due_ns

    def _run_look(
        self, look: _Look, state: VersionState, baseline: VersionState, new: list[Sample], old: list[Sample]
    ) -> None:
        seed = self._seed ^ int(state.version_id[:8], 16) ^ look.look
        result = compare(
            look.new, look.old, look=look.look, config=self.config, seed=seed,
            new_embeddings=np.vstack([s.vector for s in new]) if new else None,
            old_embeddings=np.vstack([s.vector for s in old]) if old else None,
        )  # fmt: skip
        now_ns = self.clock()
        rises = result.safety_rises(self.config.safety)
        alert = bool(rises) and not state.namespace
        with self._lock:
            state.looks += 1
            state.changed = True
            self.counters.comparisons += 1
            if result.drifted and state.status != "drifted":
                state.status, state.detected_at_events, state.detected_ns = "drifted", look.events, now_ns
                state.moved = [t.name for t in result.moved]
                self.counters.drifted += 1
            elif state.status == "watching" and state.next_look >= len(self.sizes):
                state.status = "settled"
        summary = {
            **result.as_dict(),
            "version": state.label,
            "baseline": baseline.label,
            "exemplars_new": [_exemplar(new[i]) for i in result.new_exemplars],
            "exemplars_old": [_exemplar(old[i]) for i in result.old_exemplars],
        }
        if self.store is not None:
            self.store.save_comparison({
                "comparison_id": f"{state.version_id}:{look.look}", "version_id": state.version_id,
                "baseline_id": baseline.version_id, "namespace": state.namespace, "look": look.look,
                "events_new": result.events_new, "events_old": result.events_old, "alpha": result.alpha,
                "drifted": result.drifted, "moved": [t.name for t in result.moved], "safety_alert": alert,
                "result": json.dumps(summary, default=_plain), "compared_at": now_ns,
            })  # fmt: skip
        if result.drifted:
            log.warning(
                "model version %s drifted from %s after %d events: %s",
                state.label, baseline.label, look.events, ", ".join(t.name for t in result.moved),
            )  # fmt: skip
        if alert and self.on_alert is not None:
            self.counters.alerts += 1
            self.on_alert(drift_alert(state, baseline, result, rises))

    def _evict(self, now_ns: int) -> None:
        """Drill versions idle for an hour, live versions idle for twice the window, and hours
        older than the window leave memory (their rows stay in the store)."""
        since = self._since_hour(now_ns)
        live_idle_ns = 2 * self.settings.window_hours * HOUR_S * 1_000_000_000
        pending = {look.version_id for look in self._looks} | {look.baseline_id for look in self._looks}
        for key, state in list(self.versions.items()):
            idle_ns = now_ns - state.last_seen_ns
            limit = DRILL_IDLE_S * 1_000_000_000 if state.namespace else live_idle_ns
            if idle_ns > limit and key not in pending and not state.dirty:
                del self.versions[key]
                continue
            for hour in [h for h in state.hours if h < since]:
                del state.hours[hour]


def _exemplar(sample: Sample) -> dict[str, Any]:
    return {"event_id": sample.event_id, "text": sample.text[:400], "ordinal": sample.ordinal}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def drift_alert(state: VersionState, baseline: VersionState, result: Comparison, rises: list[Any]) -> dict[str, Any]:
    """Pipeline-made fields only (names, numbers): no output text goes to a webhook."""
    return {
        "type": "oodwatch.drift",
        "version_id": state.version_id,
        "service": state.service,
        "version": state.label,
        "baseline": baseline.label,
        "events": result.events_new,
        "moved": [
            {
                "test": t.name,
                "new_rate": round(t.new.get("rate", 0.0), 4),
                "old_rate": round(t.old.get("rate", 0.0), 4),
                "difference": round(t.effect, 4),
                "interval": [round(t.low, 4), round(t.high, 4)],
                "q": t.q,
            }
            for t in rises
        ],
    }
