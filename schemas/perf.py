"""Performance records: one request's timings (from a span), one histogram delta (from an OTLP
metric point), and the SLO file. Pure data; no I/O.

Timings are milliseconds. A value a source did not record is NaN (never 0: a 0 ms TTFT would be
a real, and wrong, figure in a percentile).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAN = math.nan
Side = Literal["client", "server"]
#: The timings a latency objective may name, and the columns that hold them.
LatencyMetric = Literal["e2e", "ttft", "tpot", "ntpot", "queue"]
LATENCY_METRICS: tuple[str, ...] = ("e2e", "ttft", "tpot", "ntpot", "queue")


def request_id_for(trace_id: str, span_id: str) -> str:
    """Stable per span, so a replayed span is the same request row."""
    return hashlib.blake2b(f"{trace_id}:{span_id}".encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class RequestTiming:
    """One LLM request as one side saw it. `parent_span_id` and `attempt_span_ids` let the store
    pair a server span with its client span (same trace, server's parent is the client span or
    one of its HTTP attempts)."""

    request_id: str
    trace_id: str
    span_id: str
    parent_span_id: str
    tenant: str
    service: str
    provider: str
    model: str
    operation: str
    side: str
    source: str
    start_ns: int
    e2e_ms: float
    ttft_ms: float = NAN
    tpot_ms: float = NAN
    ntpot_ms: float = NAN
    tokens_per_s: float = NAN
    queue_ms: float = NAN
    prefill_ms: float = NAN
    decode_ms: float = NAN
    input_tokens: int = -1
    output_tokens: int = -1
    streaming: bool = False
    error: bool = False
    error_type: str = ""
    finish_reason: str = ""
    retries: int = 0
    drill_id: str = ""
    attempt_span_ids: list[str] = field(default_factory=list)

    def derive(self) -> RequestTiming:
        """TPOT = (e2e - TTFT) / (output tokens - 1); NTPOT = e2e / output tokens; tokens/s over e2e."""
        out = self.output_tokens
        if out > 1 and not math.isnan(self.ttft_ms) and math.isnan(self.tpot_ms):
            self.tpot_ms = max(0.0, self.e2e_ms - self.ttft_ms) / (out - 1)
        if out > 0:
            self.ntpot_ms = self.e2e_ms / out
            if self.e2e_ms > 0:
                self.tokens_per_s = out / (self.e2e_ms / 1000.0)
        return self


@dataclass(slots=True)
class HistogramDelta:
    """The observations of one metric series between `start_ns` and `time_ns` (a delta, whatever
    temporality the sender used), in milliseconds for durations and tokens for token counts."""

    series_id: str
    metric: str
    side: str
    tenant: str
    service: str
    provider: str
    model: str
    operation: str
    token_type: str
    start_ns: int
    time_ns: int
    count: int
    sum: float
    bounds: list[float]
    counts: list[int]
    min: float = NAN
    max: float = NAN
    drill_id: str = ""


# -- SLO file ---------------------------------------------------------------------------------

_WINDOW = re.compile(r"^(\d+)\s*([mhd])$")
_WINDOW_S = {"m": 60, "h": 3600, "d": 86400}


def parse_window_s(text: str | int) -> int:
    """`28d`, `6h`, `30m` (or seconds) -> seconds."""
    if isinstance(text, int):
        return text
    match = _WINDOW.match(text.strip())
    if not match:
        raise ValueError(f"not a window: {text!r} (try 28d, 6h, 30m)")
    return int(match.group(1)) * _WINDOW_S[match.group(2)]


class Selector(BaseModel):
    """Which requests an SLO covers: every given field must match; `side` defaults to the client,
    the side users feel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str | None = None
    service: str | None = None
    provider: str | None = None
    model: str | None = None
    side: Side = "client"


class Objective(BaseModel):
    """`metric: ttft, percentile: 95, threshold_ms: 800` (at most 5% of requests over 800 ms) or
    `metric: error_rate, max: 0.01`. Both become a share of bad events and an error budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: Literal["e2e", "ttft", "tpot", "ntpot", "queue", "error_rate"]
    percentile: Annotated[float, Field(gt=0, lt=100)] | None = None
    threshold_ms: Annotated[float, Field(gt=0)] | None = None
    max: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Objective:
        if self.metric == "error_rate":
            if self.max is None or self.percentile is not None or self.threshold_ms is not None:
                raise ValueError("an error_rate objective takes `max` (a share, e.g. 0.01) and nothing else")
        elif self.percentile is None or self.threshold_ms is None or self.max is not None:
            raise ValueError(f"a {self.metric} objective takes `percentile` and `threshold_ms`")
        return self

    @property
    def budget(self) -> float:
        """The share of events allowed to be bad."""
        if self.metric == "error_rate":
            assert self.max is not None
            return self.max
        assert self.percentile is not None
        return 1.0 - self.percentile / 100.0

    @property
    def label(self) -> str:
        if self.metric == "error_rate":
            return f"error rate <= {self.max:g}"
        return f"p{self.percentile:g} {self.metric} <= {self.threshold_ms:g} ms"


class Slo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=120, pattern=r"^[\w.\-/ ]+$")]
    selector: Selector = Field(default_factory=Selector)
    window: str = "28d"
    objectives: Annotated[list[Objective], Field(min_length=1)]
    #: Drill SLOs are evaluated per drill case and never page anyone.
    drill: bool = False

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        parse_window_s(value)
        return value

    @property
    def window_s(self) -> int:
        return parse_window_s(self.window)

    def objective_key(self, index: int) -> str:
        return f"{self.name}#{index}"


class SloFile(BaseModel):
    """The versioned SLO file (`OODWATCH_SLO_FILE`); the version is in every alert it raises."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    slos: list[Slo] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> SloFile:
        names = [s.name for s in self.slos]
        if len(names) != len(set(names)):
            raise ValueError("SLO names must be unique")
        return self
