"""Per-process set-up of self-observability, from settings: instruments on or off, and the OTLP
push when an endpoint is configured. Each process kind (receiver, worker, store) calls it once."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from pipeline.observability.metrics import configure, registry
from pipeline.observability.otlp_push import OtlpMetricsPusher
from pipeline.settings import Settings


@dataclass
class Observability:
    pusher: OtlpMetricsPusher | None = None

    def stop(self) -> None:
        if self.pusher is not None:
            self.pusher.stop()


def start_observability(settings: Settings, role: str) -> Observability:
    configure(settings.metrics_enabled)
    if not (settings.metrics_enabled and settings.otlp_metrics_endpoint):
        return Observability()
    resource = {
        "service.name": f"oodwatch-{role}",
        "service.namespace": "oodwatch",
        "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
    }
    pusher = OtlpMetricsPusher(registry(), settings.otlp_metrics_endpoint, settings.otlp_metrics_interval_s, resource)
    return Observability(pusher.start())
