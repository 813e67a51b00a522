"""Performance SLOs: request timings from spans, GenAI metrics, per-minute states, burn-rate alerts."""
