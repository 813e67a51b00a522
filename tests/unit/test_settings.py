from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.app import create_app
from pipeline.settings import Settings


def test_env_vars_configure_and_settings_are_frozen(monkeypatch, tmp_path):
    monkeypatch.setenv("OODWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OODWATCH_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("OODWATCH_API_TOKEN", "s3cret")
    settings = Settings()
    assert settings.bootstrap == "kafka:9092" and not settings.embedded
    assert settings.store_dsn == f"chdb://{(tmp_path / 'store').resolve()}"
    assert "s3cret" not in repr(settings) and settings.api_token.get_secret_value() == "s3cret"
    with pytest.raises(ValidationError):
        settings.receiver_port = 1  # type: ignore[misc]


def test_defaults_use_the_embedded_broker_and_store(tmp_path):
    settings = Settings(data_dir=tmp_path, broker_port=19999)
    assert settings.embedded and settings.bootstrap == "127.0.0.1:19999"
    assert settings.models_path == (tmp_path / "models").resolve()
    assert Settings(data_dir=tmp_path, clickhouse_dsn="http://ch:8123").store_dsn == "http://ch:8123"


def test_app_factory_builds_an_app_per_call_without_a_broker(tmp_path):
    from pipeline.agents.investigate import Investigator
    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy

    screener = Screener([], RoutingPolicy.load())
    first = create_app(Settings(data_dir=Path(tmp_path)), screener=screener, investigator=Investigator(None))
    second = create_app(Settings(data_dir=Path(tmp_path)), screener=screener, investigator=Investigator(None))
    assert first is not second
    assert {a.name for a in first.agents.values()} >= {"normalize", "screen", "investigate"}


# Faust's consumer thread makes an event loop that is never run here; its __del__ complains.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_consumer_long_poll_bound_reaches_the_kafka_consumer(tmp_path):
    """Faust hard-codes a 1500 ms fetch wait; tansu then delays every hop by it."""
    from pipeline.agents.investigate import Investigator
    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy

    app = create_app(
        Settings(data_dir=tmp_path, consumer_fetch_max_wait_ms=77),
        screener=Screener([], RoutingPolicy.load()),
        investigator=Investigator(None),
    )
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await consumer.stop()
    assert consumer._fetch_max_wait_ms == 77
