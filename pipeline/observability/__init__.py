"""Watching the watcher: oodwatch's own metrics (Prometheus and OTLP), health endpoints and the
export of its verdicts as OpenTelemetry log records."""
