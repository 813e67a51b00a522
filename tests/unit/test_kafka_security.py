"""Kafka client security from settings: SASL/SCRAM and TLS reach every client (receiver, Faust
workers, sink, topic admin, lag reader), the password comes from the environment or a mounted
file, and no secret shows in a repr."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.kafka_security import KafkaSecurityError, aiokafka_options, faust_credentials, kafka_python_options
from pipeline.settings import Settings

PASSWORD = "scram-password-SECRET-42"


def certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def sasl_ssl(tmp_path: Path) -> Settings:
    ca, _ = certificate(tmp_path, "kafka-ca")
    client_cert, client_key = certificate(tmp_path, "oodwatch")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    return Settings(
        kafka_bootstrap="kafka:9093", kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="oodwatch", kafka_sasl_password_file=password_file, kafka_ssl_cafile=ca,
        kafka_ssl_certfile=client_cert, kafka_ssl_keyfile=client_key,
    )  # fmt: skip


def test_plaintext_is_the_default_and_adds_nothing():
    assert aiokafka_options(Settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(Settings()) is None


def test_sasl_scram_over_tls_with_the_password_from_a_mounted_file(sasl_ssl: Settings):
    options = aiokafka_options(sasl_ssl)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("oodwatch", PASSWORD)
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert kafka_python_options(sasl_ssl).keys() == options.keys()
    assert PASSWORD not in repr(sasl_ssl)


def test_faust_gets_sasl_credentials_with_the_tls_context(sasl_ssl: Settings):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    credentials = faust_credentials(sasl_ssl)
    assert PASSWORD not in repr(credentials)
    auth = credentials_to_aiokafka_auth(credentials)
    assert auth["security_protocol"] == "SASL_SSL" and auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_password"] == PASSWORD and isinstance(auth["ssl_context"], ssl.SSLContext)


def test_tls_alone_and_missing_credentials(tmp_path: Path):
    ca, _ = certificate(tmp_path, "ca")
    tls = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=ca)
    assert set(aiokafka_options(tls)) == {"security_protocol", "ssl_context"}
    assert type(faust_credentials(tls)).__name__ == "SSLCredentials"
    with pytest.raises(KafkaSecurityError, match="SASL_USERNAME"):
        aiokafka_options(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u"))
    with pytest.raises(KafkaSecurityError, match="KEYFILE"):
        aiokafka_options(Settings(kafka_security_protocol="SSL", kafka_ssl_certfile=ca))


class Refuse(Exception):
    pass


def capturing(seen: list[dict[str, Any]]) -> type:
    class Client:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.append(kwargs)
            raise Refuse

    return Client


async def test_every_kafka_client_gets_the_security_settings(sasl_ssl: Settings, monkeypatch, tmp_path: Path):
    import aiokafka
    import kafka
    import kafka.admin

    from pipeline.app import create_app
    from pipeline.ingest.receiver import serve_receiver
    from pipeline.observability.lag import LagReader
    from pipeline.stack.topics import ensure_topics
    from pipeline.store.sink import Sink
    from tests.helpers import FixedDetector

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", capturing(seen))
    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", capturing(seen))
    monkeypatch.setattr(kafka.admin, "KafkaAdminClient", capturing(seen))
    monkeypatch.setattr(kafka, "KafkaConsumer", capturing(seen))
    with pytest.raises(Refuse):
        await serve_receiver(sasl_ssl)
    with pytest.raises(Refuse):
        await Sink(sasl_ssl, store=None).run()  # type: ignore[arg-type]
    with pytest.raises(Refuse):
        ensure_topics(sasl_ssl, timeout_s=0)
    with pytest.raises(Refuse):
        LagReader(sasl_ssl)._clients()
    assert len(seen) == 4
    for kwargs in seen:
        assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_plain_password"] == PASSWORD
        assert isinstance(kwargs["ssl_context"], ssl.SSLContext)

    from pipeline.agents.screen import Screener
    from pipeline.policy import RoutingPolicy

    app = create_app(
        sasl_ssl.model_copy(update={"worker_agents": "normalize,screen"}),
        screener=Screener([FixedDetector(0.1)], RoutingPolicy.load(None)),
    )
    assert app.conf.broker_credentials.mechanism.value == "SCRAM-SHA-512"
    assert app.conf.broker_credentials.ssl_context is not None
