"""SLOs: the versioned file, the per-objective counts the rollup keeps, and multi-window,
multi-burn-rate alerting (the SRE workbook's pairs: page on 14.4x over 1 h and 5 m, ticket on
6x over 6 h and 30 m; both windows of a pair must burn, so a short spike or a long-gone
incident does not alert).

A latency objective "p95 TTFT <= 800 ms" is a ratio like an error rate: an event is bad when its
TTFT is over 800 ms, and 5% of events may be bad (the error budget). Burn rate = bad share in a
window / budget; burning at 1 spends exactly the budget over the SLO window.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.perf import Objective, Selector, Slo, SloFile

#: The perf_regression drill's own objective: evaluated per drill case, never sent anywhere.
DRILL_SERVICE = "oodwatch-drill-perf"
DRILL_SLO = Slo(
    name="drill/perf_regression",
    selector=Selector(service=DRILL_SERVICE),
    window="28d",
    objectives=[Objective(metric="e2e", percentile=95, threshold_ms=1500)],
    drill=True,
)


@dataclass(frozen=True)
class BurnPair:
    severity: str
    long_s: int
    short_s: int
    factor: float


#: SRE workbook, "Alerting on SLOs", table 5-8 (2% of a 30-day budget in 1 h; 5% in 6 h).
BURN_PAIRS = (BurnPair("page", 3600, 300, 14.4), BurnPair("ticket", 21600, 1800, 6.0))
WINDOWS_S = sorted({w for p in BURN_PAIRS for w in (p.long_s, p.short_s)})


@dataclass(frozen=True)
class ObjectiveRef:
    key: str
    slo: Slo
    objective: Objective


def load_slo_file(path: Path | None) -> SloFile:
    """The operator's SLO file (none: no live SLOs), plus the drill's objective."""
    if path is None:
        slo_file = SloFile(version="none")
    else:
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read the SLO file {path}: {exc}") from exc
        slo_file = SloFile.model_validate(raw or {})
    if any(s.name == DRILL_SLO.name for s in slo_file.slos):
        raise ValueError(f"the SLO name {DRILL_SLO.name!r} is reserved for the perf_regression drill")
    return slo_file.model_copy(update={"slos": [*slo_file.slos, DRILL_SLO]})


def objectives(slo_file: SloFile) -> list[ObjectiveRef]:
    return [ObjectiveRef(s.objective_key(i), s, o) for s in slo_file.slos for i, o in enumerate(s.objectives)]


def fingerprint(slo_file: SloFile) -> str:
    return hashlib.blake2b(slo_file.model_dump_json().encode(), digest_size=6).hexdigest()


def rollup_expressions(slo_file: SloFile) -> tuple[str, str, dict[str, Any]]:
    """SQL for the `slo_valid` and `slo_bad` maps of one minute of perf_requests: per objective,
    the events it counts and those that broke it. Every value is a bound parameter."""
    valid: list[str] = []
    bad: list[str] = []
    params: dict[str, Any] = {}
    for n, ref in enumerate(objectives(slo_file)):
        clauses = ["drill_id != ''" if ref.slo.drill else "drill_id = ''"]
        for name in ("tenant", "service", "provider", "model", "side"):
            value = getattr(ref.slo.selector, name)
            if value is not None:
                clauses.append(f"{name} = {{s{n}_{name}:String}}")
                params[f"s{n}_{name}"] = value
        selected = " AND ".join(clauses)
        objective = ref.objective
        params[f"k{n}"] = ref.key
        if objective.metric == "error_rate":
            counted, broken = selected, f"{selected} AND error"
        else:
            column = f"{objective.metric}_ms"
            counted = f"{selected} AND NOT isNaN({column})"
            broken = f"{counted} AND {column} > {{t{n}:Float64}}"
            params[f"t{n}"] = objective.threshold_ms
        valid += [f"{{k{n}:String}}", f"countIf({counted})"]
        bad += [f"{{k{n}:String}}", f"countIf({broken})"]
    if not valid:
        empty = "CAST(map(), 'Map(String, UInt64)')"
        return empty, empty, params
    return (
        f"mapFilter((k, v) -> v > 0, CAST(map({', '.join(valid)}), 'Map(String, UInt64)'))",
        f"mapFilter((k, v) -> v > 0, CAST(map({', '.join(bad)}), 'Map(String, UInt64)'))",
        params,
    )


@dataclass
class Burn:
    """One objective in one group (a drill case, or live traffic) at one moment."""

    key: str
    slo: str
    objective: str
    drill_id: str
    budget: float
    #: window seconds -> (events counted, bad events)
    windows: dict[int, tuple[int, int]]
    budget_valid: int = 0
    budget_bad: int = 0
    firing: list[str] = field(default_factory=list)

    def rate(self, window_s: int) -> float:
        valid, bad = self.windows.get(window_s, (0, 0))
        return (bad / valid) / self.budget if valid else 0.0

    @property
    def budget_left(self) -> float:
        """Share of the error budget left over the SLO window (1: untouched; below 0: overspent)."""
        if not self.budget_valid:
            return 1.0
        return 1.0 - (self.budget_bad / self.budget_valid) / self.budget

    def as_dict(self) -> dict[str, Any]:
        return {
            "objective_key": self.key,
            "slo": self.slo,
            "objective": self.objective,
            "drill_id": self.drill_id,
            "budget": self.budget,
            "budget_left": round(self.budget_left, 4),
            "events": self.budget_valid,
            "bad_events": self.budget_bad,
            "burn": {f"{w // 60}m": round(self.rate(w), 3) for w in WINDOWS_S},
            "firing": list(self.firing),
        }


def evaluate(refs: list[ObjectiveRef], window_counts: dict[str, dict[int, tuple[dict[str, int], dict[str, int]]]],
             budget_counts: dict[str, tuple[dict[str, int], dict[str, int]]]) -> list[Burn]:  # fmt: skip
    """`window_counts`: drill id -> window seconds -> (valid map, bad map), from the minute tier;
    `budget_counts`: drill id -> (valid map, bad map) over each SLO's window. Live objectives are
    read in the live group only, the drill's in every drill case's group."""
    burns: list[Burn] = []
    for ref in refs:
        groups = [g for g in window_counts if (g != "") == ref.slo.drill] if ref.slo.drill else [""]
        for group in groups:
            windows = {
                w: (int(valid.get(ref.key, 0)), int(bad.get(ref.key, 0)))
                for w, (valid, bad) in window_counts.get(group, {}).items()
            }
            valid_all, bad_all = budget_counts.get(group, ({}, {}))
            burn = Burn(
                key=ref.key, slo=ref.slo.name, objective=ref.objective.label, drill_id=group,
                budget=ref.objective.budget, windows=windows, budget_valid=int(valid_all.get(ref.key, 0)),
                budget_bad=int(bad_all.get(ref.key, 0)),
            )  # fmt: skip
            burn.firing = [p.severity for p in BURN_PAIRS if firing(burn, p)]
            burns.append(burn)
    return burns


def firing(burn: Burn, pair: BurnPair) -> bool:
    return burn.rate(pair.long_s) >= pair.factor and burn.rate(pair.short_s) >= pair.factor


@dataclass
class _Episode:
    firing: bool = False
    cleared_at: float = float("-inf")


class AlertLatch:
    """One alert per firing episode of (objective, group, severity): raised when the pair starts
    burning, not again while it keeps burning, and again only after it has been quiet for
    `rearm_s` (so a pair flapping at its threshold does not page every evaluation)."""

    def __init__(self, rearm_s: float = 600.0) -> None:
        self.rearm_s = rearm_s
        self._episodes: dict[tuple[str, str, str], _Episode] = {}

    def step(self, burns: list[Burn], now: float) -> list[tuple[Burn, str]]:
        raised: list[tuple[Burn, str]] = []
        for burn in burns:
            for pair in BURN_PAIRS:
                episode = self._episodes.setdefault((burn.key, burn.drill_id, pair.severity), _Episode())
                if pair.severity in burn.firing:
                    if not episode.firing and now - episode.cleared_at >= self.rearm_s:
                        raised.append((burn, pair.severity))
                    episode.firing = True
                elif episode.firing:
                    episode.firing = False
                    episode.cleared_at = now
        return raised
