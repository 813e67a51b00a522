"""Kafka client security from settings, in the shape each client library takes.

Every Kafka client oodwatch opens (the receiver's producer, the Faust workers, the sink's
consumer, the topic admin, the lag reader) takes its security from here, so SASL/SCRAM and TLS
are set once and reach all of them. Secrets stay in SecretStr or mounted files until a client
is built, and never appear in a repr or log line of ours.
"""

from __future__ import annotations

import ssl
from typing import Any

from pipeline.settings import Settings


class KafkaSecurityError(ValueError):
    """The settings ask for a protocol that lacks what it needs (one line that says what)."""


def uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying client context (CA bundle, or the system's), with the client certificate for
    mutual TLS when one is configured; None for plaintext protocols."""
    if not uses_tls(settings):
        return None
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if settings.kafka_ssl_certfile:
        if not settings.kafka_ssl_keyfile:
            raise KafkaSecurityError("OODWATCH_KAFKA_SSL_CERTFILE needs OODWATCH_KAFKA_SSL_KEYFILE (the client key)")
        context.load_cert_chain(str(settings.kafka_ssl_certfile), str(settings.kafka_ssl_keyfile))
    return context


def _sasl(settings: Settings) -> tuple[str, str]:
    username, password = settings.kafka_sasl_username, settings.kafka_sasl_secret()
    if not username or not password:
        raise KafkaSecurityError(
            f"{settings.kafka_security_protocol} needs OODWATCH_KAFKA_SASL_USERNAME and "
            "OODWATCH_KAFKA_SASL_PASSWORD (or _PASSWORD_FILE)"
        )
    return username, password


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer / AIOKafkaConsumer."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if uses_sasl(settings):
        username, password = _sasl(settings)
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=username, sasl_plain_password=password
        )
    return options


def kafka_python_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaAdminClient and KafkaConsumer (same names)."""
    return aiokafka_options(settings)


def faust_credentials(settings: Settings) -> Any:
    """`broker_credentials` for the Faust app: SASL (over TLS for SASL_SSL) or TLS alone; None
    for plaintext."""
    import faust

    context = ssl_context(settings)
    if uses_sasl(settings):
        username, password = _sasl(settings)
        return faust.SASLCredentials(
            username=username, password=password, ssl_context=context, mechanism=settings.kafka_sasl_mechanism
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None
