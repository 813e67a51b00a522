-- oodwatch store, version 5: performance SLOs (issue 17).
-- Raw rows are keyed by their own stable ids (a replay folds); aggregates are never incremented:
-- a minute's state is recomputed from the deduplicated raw rows of that minute and replaces the
-- previous one (ReplacingMergeTree on `version`), an hour's from its minutes, a day's from its
-- hours. So a replayed span or metric point can never be counted twice in a percentile.

-- One row per model request per side (client / server), from spans.
CREATE TABLE IF NOT EXISTS perf_requests
(
    request_id       String,
    trace_id         String,
    span_id          String,
    parent_span_id   String,
    attempt_span_ids Array(String),
    tenant           LowCardinality(String),
    service          LowCardinality(String),
    provider         LowCardinality(String),
    model            LowCardinality(String),
    operation        LowCardinality(String),
    side             LowCardinality(String),
    source           LowCardinality(String),
    drill_id         String,
    start_at         DateTime64(6, 'UTC'),
    e2e_ms           Float64,
    ttft_ms          Float64,
    tpot_ms          Float64,
    ntpot_ms         Float64,
    tokens_per_s     Float64,
    queue_ms         Float64,
    prefill_ms       Float64,
    decode_ms        Float64,
    input_tokens     Int64,
    output_tokens    Int64,
    streaming        Bool,
    error            Bool,
    error_type       LowCardinality(String),
    finish_reason    LowCardinality(String),
    retries          UInt16,
    stored_at        DateTime64(3, 'UTC'),
    INDEX idx_trace trace_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree(stored_at)
PARTITION BY toYYYYMMDD(start_at)
ORDER BY (toStartOfHour(start_at), service, model, side, request_id)
TTL toDateTime(start_at) + INTERVAL 35 DAY;

-- Per-minute / hour / day states per (tenant, service, provider, model, side, drill case).
-- slo_valid / slo_bad: per SLO objective, the events it counts and those that broke it.
CREATE TABLE IF NOT EXISTS perf_req_minute
(
    bucket        DateTime('UTC'),
    service       LowCardinality(String),
    model         LowCardinality(String),
    side          LowCardinality(String),
    tenant        LowCardinality(String),
    provider      LowCardinality(String),
    drill_id      String,
    version       UInt64,
    requests      UInt64,
    errors        UInt64,
    retries       UInt64,
    streamed      UInt64,
    output_tokens UInt64,
    e2e_sum       Float64,
    e2e           AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ttft          AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    tpot          AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    ntpot         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    queue         AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    tokens_per_s  AggregateFunction(quantilesTDigest(0.5, 0.95, 0.99), Float64),
    slo_valid     Map(String, UInt64),
    slo_bad       Map(String, UInt64)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_req_hour AS perf_req_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS perf_req_day AS perf_req_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 800 DAY;

-- Histogram deltas from OTLP metrics (gen_ai.client.operation.duration, ...), one per series
-- and export interval; a replayed point has the same (series_id, time_at) and folds.
CREATE TABLE IF NOT EXISTS perf_hist_points
(
    series_id   String,
    metric      LowCardinality(String),
    side        LowCardinality(String),
    tenant      LowCardinality(String),
    service     LowCardinality(String),
    provider    LowCardinality(String),
    model       LowCardinality(String),
    operation   LowCardinality(String),
    token_type  LowCardinality(String),
    drill_id    String,
    start_at    DateTime64(9, 'UTC'),
    time_at     DateTime64(9, 'UTC'),
    count       UInt64,
    sum         Float64,
    bounds      Array(Float64),
    counts      Array(UInt64),
    stored_at   DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(stored_at)
PARTITION BY toYYYYMMDD(time_at)
ORDER BY (toStartOfHour(time_at), metric, service, model, series_id, time_at)
TTL toDateTime(time_at) + INTERVAL 35 DAY;

-- Merged histograms per minute / hour / day; one row per bucket layout (bounds), since only
-- histograms with the same bounds can be added.
CREATE TABLE IF NOT EXISTS perf_hist_minute
(
    bucket      DateTime('UTC'),
    metric      LowCardinality(String),
    service     LowCardinality(String),
    model       LowCardinality(String),
    side        LowCardinality(String),
    tenant      LowCardinality(String),
    provider    LowCardinality(String),
    token_type  LowCardinality(String),
    drill_id    String,
    bounds      Array(Float64),
    version     UInt64,
    count       UInt64,
    sum         Float64,
    counts      Array(UInt64)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_hour AS perf_hist_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_day AS perf_hist_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 800 DAY;

-- The last point of each cumulative series, so deltas resume after a restart.
CREATE TABLE IF NOT EXISTS perf_metric_series
(
    series_id  String,
    start_ns   UInt64,
    time_ns    UInt64,
    count      UInt64,
    sum        Float64,
    bounds     Array(Float64),
    counts     Array(UInt64)
)
ENGINE = ReplacingMergeTree(time_ns)
ORDER BY series_id
TTL toDateTime(intDiv(time_ns, 1000000000)) + INTERVAL 35 DAY;

-- Burn-rate alerts as raised (append-only); drill alerts are kept here and never sent.
CREATE TABLE IF NOT EXISTS perf_alerts
(
    alert_id       String,
    slo            String,
    objective      String,
    objective_key  String,
    slo_version    String,
    drill_id       String,
    severity       LowCardinality(String),
    burn_long      Float64,
    burn_short     Float64,
    long_window_s  UInt32,
    short_window_s UInt32,
    budget_left    Float64,
    fired_at       DateTime64(3, 'UTC'),
    sent           Bool
)
ENGINE = ReplacingMergeTree(fired_at)
ORDER BY alert_id;
