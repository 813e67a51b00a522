CREATE TABLE IF NOT EXISTS schema_migrations_local ON CLUSTER oodwatch
(version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3))
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/schema_migrations_local', '{replica}') ORDER BY version;

CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER oodwatch
(
    version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = Distributed(oodwatch, currentDatabase(), schema_migrations_local, cityHash64(version));

CREATE TABLE IF NOT EXISTS screenings_local ON CLUSTER oodwatch
(
    event_id          String,
    session_id        String,
    trace_id          String,
    service           LowCardinality(String),
    model             LowCardinality(String),
    operation         LowCardinality(String),
    decision          LowCardinality(String),
    severity          LowCardinality(String),
    max_score         Float32,
    scores            Map(String, Float32),
    thresholds        Map(String, Float32),
    reasons           Array(String),
    policy_version    LowCardinality(String),
    detector_versions Map(String, String),
    drill_id          String,
    excerpt           String,
    received_at       DateTime64(9),
    normalized_at     DateTime64(9),
    screened_at       DateTime64(9),
    stored_at         DateTime64(9),
    INDEX idx_session session_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/screenings_local', '{replica}', stored_at)
ORDER BY event_id;

CREATE TABLE IF NOT EXISTS screenings ON CLUSTER oodwatch
(
    event_id          String,
    session_id        String,
    trace_id          String,
    service           LowCardinality(String),
    model             LowCardinality(String),
    operation         LowCardinality(String),
    decision          LowCardinality(String),
    severity          LowCardinality(String),
    max_score         Float32,
    scores            Map(String, Float32),
    thresholds        Map(String, Float32),
    reasons           Array(String),
    policy_version    LowCardinality(String),
    detector_versions Map(String, String),
    drill_id          String,
    excerpt           String,
    received_at       DateTime64(9),
    normalized_at     DateTime64(9),
    screened_at       DateTime64(9),
    stored_at         DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), screenings_local, cityHash64(event_id));

CREATE TABLE IF NOT EXISTS evidence_bundles_local ON CLUSTER oodwatch
(
    bundle_id       String,
    session_id      String,
    trace_id        String,
    service         LowCardinality(String),
    model           LowCardinality(String),
    severity        LowCardinality(String),
    severity_rank   UInt8,
    categories      Array(String),
    max_score       Float32,
    queue_state     LowCardinality(String),
    judge_status    LowCardinality(String),
    policy_version  LowCardinality(String),
    drill_id        String,
    bundle          String,
    created_at      DateTime64(9),
    stored_at       DateTime64(9),
    revision        UInt64,
    INDEX idx_session session_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/evidence_bundles_local', '{replica}', revision)
ORDER BY bundle_id;

CREATE TABLE IF NOT EXISTS evidence_bundles ON CLUSTER oodwatch
(
    bundle_id       String,
    session_id      String,
    trace_id        String,
    service         LowCardinality(String),
    model           LowCardinality(String),
    severity        LowCardinality(String),
    severity_rank   UInt8,
    categories      Array(String),
    max_score       Float32,
    queue_state     LowCardinality(String),
    judge_status    LowCardinality(String),
    policy_version  LowCardinality(String),
    drill_id        String,
    bundle          String,
    created_at      DateTime64(9),
    stored_at       DateTime64(9),
    revision        UInt64
)
ENGINE = Distributed(oodwatch, currentDatabase(), evidence_bundles_local, cityHash64(bundle_id));

CREATE TABLE IF NOT EXISTS dead_letters_local ON CLUSTER oodwatch
(
    dead_letter_id  String,
    stage           LowCardinality(String),
    reason          String,
    source_topic    LowCardinality(String),
    source_partition Int32,
    source_offset   Int64,
    payload_b64     String,
    payload_bytes   UInt64,
    failed_at       DateTime64(9),
    stored_at       DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/dead_letters_local', '{replica}', stored_at)
ORDER BY dead_letter_id;

CREATE TABLE IF NOT EXISTS dead_letters ON CLUSTER oodwatch
(
    dead_letter_id  String,
    stage           LowCardinality(String),
    reason          String,
    source_topic    LowCardinality(String),
    source_partition Int32,
    source_offset   Int64,
    payload_b64     String,
    payload_bytes   UInt64,
    failed_at       DateTime64(9),
    stored_at       DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), dead_letters_local, cityHash64(dead_letter_id));

CREATE TABLE IF NOT EXISTS reference_samples_local ON CLUSTER oodwatch
(
    event_id    String,
    service     LowCardinality(String),
    text        String,
    sampled_at  DateTime64(9),
    stored_at   DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/reference_samples_local', '{replica}', stored_at)
ORDER BY event_id
TTL toDateTime(sampled_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS reference_samples ON CLUSTER oodwatch
(
    event_id    String,
    service     LowCardinality(String),
    text        String,
    sampled_at  DateTime64(9),
    stored_at   DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), reference_samples_local, cityHash64(event_id));

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS group_key String DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS group_key String DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS claimed_by String DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS claimed_by String DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS label LowCardinality(String) DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS label LowCardinality(String) DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS resolved_by String DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS resolved_by String DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS resolved_at DateTime64(9) DEFAULT 0;

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS resolved_at DateTime64(9) DEFAULT 0;

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD INDEX IF NOT EXISTS idx_group group_key TYPE bloom_filter GRANULARITY 4;

CREATE TABLE IF NOT EXISTS reviews_local ON CLUSTER oodwatch
(
    review_id   String,
    bundle_id   String,
    group_key   String,
    actor       String,
    role        LowCardinality(String),
    action      LowCardinality(String),
    label       LowCardinality(String),
    note        String,
    at          DateTime64(9)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/reviews_local', '{replica}')
ORDER BY (bundle_id, at);

CREATE TABLE IF NOT EXISTS reviews ON CLUSTER oodwatch
(
    review_id   String,
    bundle_id   String,
    group_key   String,
    actor       String,
    role        LowCardinality(String),
    action      LowCardinality(String),
    label       LowCardinality(String),
    note        String,
    at          DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), reviews_local, cityHash64(bundle_id, at));

CREATE TABLE IF NOT EXISTS drill_runs_local ON CLUSTER oodwatch
(
    run_id          String,
    case_id         String,
    family          LowCardinality(String),
    generator       LowCardinality(String),
    seed            UInt64,
    control         Bool,
    flagged         Bool,
    expected_tier   LowCardinality(String),
    caught_tier     LowCardinality(String),
    evidence_complete Bool,
    detect_s        Float64,
    evidence_s      Float64,
    injected_at     DateTime64(9),
    stored_at       DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/drill_runs_local', '{replica}', stored_at)
ORDER BY (run_id, case_id);

CREATE TABLE IF NOT EXISTS drill_runs ON CLUSTER oodwatch
(
    run_id          String,
    case_id         String,
    family          LowCardinality(String),
    generator       LowCardinality(String),
    seed            UInt64,
    control         Bool,
    flagged         Bool,
    expected_tier   LowCardinality(String),
    caught_tier     LowCardinality(String),
    evidence_complete Bool,
    detect_s        Float64,
    evidence_s      Float64,
    injected_at     DateTime64(9),
    stored_at       DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drill_runs_local, cityHash64(run_id, case_id));

CREATE TABLE IF NOT EXISTS tool_registry_local ON CLUSTER oodwatch
(
    service           LowCardinality(String),
    server            String,
    tool              String,
    description_hash  String,
    description       String,
    input_schema      String,
    scope             LowCardinality(String),
    signer            String,
    pinned_hash       String,
    first_seen        DateTime64(9),
    last_seen         DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/tool_registry_local', '{replica}', last_seen)
ORDER BY (service, server, tool);

CREATE TABLE IF NOT EXISTS tool_registry ON CLUSTER oodwatch
(
    service           LowCardinality(String),
    server            String,
    tool              String,
    description_hash  String,
    description       String,
    input_schema      String,
    scope             LowCardinality(String),
    signer            String,
    pinned_hash       String,
    first_seen        DateTime64(9),
    last_seen         DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), tool_registry_local, cityHash64(service, server, tool));

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS score Float32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS score Float32 DEFAULT 0;

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS events UInt32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS events UInt32 DEFAULT 0;

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS screened UInt32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS screened UInt32 DEFAULT 0;

CREATE TABLE IF NOT EXISTS perf_requests_local ON CLUSTER oodwatch
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_requests_local', '{replica}', stored_at)
PARTITION BY toYYYYMMDD(start_at)
ORDER BY (toStartOfHour(start_at), service, model, side, request_id)
TTL toDateTime(start_at) + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_requests ON CLUSTER oodwatch
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
    stored_at        DateTime64(3, 'UTC')
)
ENGINE = Distributed(oodwatch, currentDatabase(), perf_requests_local, cityHash64(toStartOfHour(start_at), service, model, side, request_id));

CREATE TABLE IF NOT EXISTS perf_req_minute_local ON CLUSTER oodwatch
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_req_minute_local', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_req_minute ON CLUSTER oodwatch
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
ENGINE = Distributed(oodwatch, currentDatabase(), perf_req_minute_local, cityHash64(bucket, service, model, side, tenant, provider, drill_id));

CREATE TABLE IF NOT EXISTS perf_req_hour_local ON CLUSTER oodwatch AS perf_req_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_req_hour_local', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS perf_req_hour ON CLUSTER oodwatch AS perf_req_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_req_hour_local, cityHash64(bucket, service, model, side, tenant, provider, drill_id));

CREATE TABLE IF NOT EXISTS perf_req_day_local ON CLUSTER oodwatch AS perf_req_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_req_day_local', '{replica}', version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 800 DAY;

CREATE TABLE IF NOT EXISTS perf_req_day ON CLUSTER oodwatch AS perf_req_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_req_day_local, cityHash64(bucket, service, model, side, tenant, provider, drill_id));

CREATE TABLE IF NOT EXISTS perf_hist_points_local ON CLUSTER oodwatch
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_hist_points_local', '{replica}', stored_at)
PARTITION BY toYYYYMMDD(time_at)
ORDER BY (toStartOfHour(time_at), metric, service, model, series_id, time_at)
TTL toDateTime(time_at) + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_points ON CLUSTER oodwatch
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
ENGINE = Distributed(oodwatch, currentDatabase(), perf_hist_points_local, cityHash64(toStartOfHour(time_at), metric, service, model, series_id, time_at));

CREATE TABLE IF NOT EXISTS perf_hist_minute_local ON CLUSTER oodwatch
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_hist_minute_local', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_minute ON CLUSTER oodwatch
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
ENGINE = Distributed(oodwatch, currentDatabase(), perf_hist_minute_local, cityHash64(bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds));

CREATE TABLE IF NOT EXISTS perf_hist_hour_local ON CLUSTER oodwatch AS perf_hist_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_hist_hour_local', '{replica}', version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_hour ON CLUSTER oodwatch AS perf_hist_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_hist_hour_local, cityHash64(bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds));

CREATE TABLE IF NOT EXISTS perf_hist_day_local ON CLUSTER oodwatch AS perf_hist_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_hist_day_local', '{replica}', version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 800 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_day ON CLUSTER oodwatch AS perf_hist_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_hist_day_local, cityHash64(bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds));

CREATE TABLE IF NOT EXISTS perf_metric_series_local ON CLUSTER oodwatch
(
    series_id  String,
    start_ns   UInt64,
    time_ns    UInt64,
    count      UInt64,
    sum        Float64,
    bounds     Array(Float64),
    counts     Array(UInt64)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_metric_series_local', '{replica}', time_ns)
ORDER BY series_id
TTL toDateTime(intDiv(time_ns, 1000000000)) + INTERVAL 35 DAY;

CREATE TABLE IF NOT EXISTS perf_metric_series ON CLUSTER oodwatch
(
    series_id  String,
    start_ns   UInt64,
    time_ns    UInt64,
    count      UInt64,
    sum        Float64,
    bounds     Array(Float64),
    counts     Array(UInt64)
)
ENGINE = Distributed(oodwatch, currentDatabase(), perf_metric_series_local, cityHash64(series_id));

CREATE TABLE IF NOT EXISTS perf_alerts_local ON CLUSTER oodwatch
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
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_alerts_local', '{replica}', fired_at)
ORDER BY alert_id;

CREATE TABLE IF NOT EXISTS perf_alerts ON CLUSTER oodwatch
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
ENGINE = Distributed(oodwatch, currentDatabase(), perf_alerts_local, cityHash64(alert_id));

CREATE TABLE IF NOT EXISTS drift_versions_local ON CLUSTER oodwatch
(
    version_id      String,
    namespace       String,
    service         LowCardinality(String),
    model           String,
    request_model   String,
    deployment      String,
    label           String,
    provider        String,
    baseline_id     String,
    first_seen      DateTime64(9),
    last_seen       DateTime64(9),
    events          UInt64,
    status          LowCardinality(String),
    looks           UInt32,
    looks_due       UInt32,
    detected_at_events UInt64,
    detected_at     DateTime64(9),
    moved           Array(String),
    updated_at      DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/drift_versions_local', '{replica}', updated_at)
ORDER BY version_id
TTL toDateTime(last_seen) + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_versions ON CLUSTER oodwatch
(
    version_id      String,
    namespace       String,
    service         LowCardinality(String),
    model           String,
    request_model   String,
    deployment      String,
    label           String,
    provider        String,
    baseline_id     String,
    first_seen      DateTime64(9),
    last_seen       DateTime64(9),
    events          UInt64,
    status          LowCardinality(String),
    looks           UInt32,
    looks_due       UInt32,
    detected_at_events UInt64,
    detected_at     DateTime64(9),
    moved           Array(String),
    updated_at      DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drift_versions_local, cityHash64(version_id));

CREATE TABLE IF NOT EXISTS drift_profiles_local ON CLUSTER oodwatch
(
    version_id      String,
    hour            DateTime,
    events          UInt64,
    answers         UInt64,
    refused         UInt64,
    risky_answers   UInt64,
    risky_refused   UInt64,
    output_chars    UInt64,
    bundles         UInt64,
    flagged         Map(String, UInt64),
    uncertain       Map(String, UInt64),
    tier2           Map(String, UInt64),
    scopes          Map(String, UInt64),
    length_bins     Array(UInt64),
    embedding_sum   Array(Float64),
    embeddings      UInt64,
    flushed_at      DateTime64(9)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/drift_profiles_local', '{replica}')
ORDER BY (version_id, hour)
TTL hour + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_profiles ON CLUSTER oodwatch
(
    version_id      String,
    hour            DateTime,
    events          UInt64,
    answers         UInt64,
    refused         UInt64,
    risky_answers   UInt64,
    risky_refused   UInt64,
    output_chars    UInt64,
    bundles         UInt64,
    flagged         Map(String, UInt64),
    uncertain       Map(String, UInt64),
    tier2           Map(String, UInt64),
    scopes          Map(String, UInt64),
    length_bins     Array(UInt64),
    embedding_sum   Array(Float64),
    embeddings      UInt64,
    flushed_at      DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drift_profiles_local, cityHash64(version_id, hour));

CREATE TABLE IF NOT EXISTS drift_score_bins_local ON CLUSTER oodwatch
(
    version_id      String,
    hour            DateTime,
    category        LowCardinality(String),
    bins            Array(UInt64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/drift_score_bins_local', '{replica}')
ORDER BY (version_id, category, hour)
TTL hour + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_score_bins ON CLUSTER oodwatch
(
    version_id      String,
    hour            DateTime,
    category        LowCardinality(String),
    bins            Array(UInt64)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drift_score_bins_local, cityHash64(version_id, category, hour));

CREATE TABLE IF NOT EXISTS drift_samples_local ON CLUSTER oodwatch
(
    version_id      String,
    event_id        String,
    ordinal         UInt64,
    text            String,
    embedding       Array(Float32),
    sampled_at      DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/drift_samples_local', '{replica}', sampled_at)
ORDER BY (version_id, event_id)
TTL toDateTime(sampled_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS drift_samples ON CLUSTER oodwatch
(
    version_id      String,
    event_id        String,
    ordinal         UInt64,
    text            String,
    embedding       Array(Float32),
    sampled_at      DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drift_samples_local, cityHash64(version_id, event_id));

CREATE TABLE IF NOT EXISTS drift_comparisons_local ON CLUSTER oodwatch
(
    comparison_id   String,
    version_id      String,
    baseline_id     String,
    namespace       String,
    look            UInt32,
    events_new      UInt64,
    events_old      UInt64,
    alpha           Float64,
    drifted         Bool,
    moved           Array(String),
    safety_alert    Bool,
    result          String,
    compared_at     DateTime64(9)
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/drift_comparisons_local', '{replica}', compared_at)
ORDER BY (version_id, look)
TTL toDateTime(compared_at) + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_comparisons ON CLUSTER oodwatch
(
    comparison_id   String,
    version_id      String,
    baseline_id     String,
    namespace       String,
    look            UInt32,
    events_new      UInt64,
    events_old      UInt64,
    alpha           Float64,
    drifted         Bool,
    moved           Array(String),
    safety_alert    Bool,
    result          String,
    compared_at     DateTime64(9)
)
ENGINE = Distributed(oodwatch, currentDatabase(), drift_comparisons_local, cityHash64(version_id, look));

ALTER TABLE screenings_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS version String DEFAULT '';

ALTER TABLE screenings ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS version String DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS version String DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS version String DEFAULT '';

CREATE TABLE IF NOT EXISTS guard_grants_local ON CLUSTER oodwatch
(
    record_id   String,
    grant_id    String,
    action      LowCardinality(String),   -- grant | revoke
    tenant      String,
    categories  Array(String),
    services    Array(String),
    users       Array(String),
    reason      String,
    actor       String,
    role        LowCardinality(String),
    expires_at  DateTime64(9),
    at          DateTime64(9),
    grant       String                    -- the Grant record as JSON (for grant rows)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/guard_grants_local', '{replica}')
ORDER BY (grant_id, at);

CREATE TABLE IF NOT EXISTS guard_grants ON CLUSTER oodwatch
(
    record_id   String,
    grant_id    String,
    action      LowCardinality(String),   -- grant | revoke,
    tenant      String,
    categories  Array(String),
    services    Array(String),
    users       Array(String),
    reason      String,
    actor       String,
    role        LowCardinality(String),
    expires_at  DateTime64(9),
    at          DateTime64(9),
    grant       String                    -- the Grant record as JSON (for grant rows)
)
ENGINE = Distributed(oodwatch, currentDatabase(), guard_grants_local, cityHash64(grant_id, at));

CREATE TABLE IF NOT EXISTS session_actions_local ON CLUSTER oodwatch
(
    record_id   String,
    kind        LowCardinality(String),   -- issue | lift
    session_id  String,
    tenant      String,
    service     LowCardinality(String),
    action      LowCardinality(String),
    lifts       String,
    reason      String,
    bundle_id   String,
    categories  Array(String),
    grant_id    String,
    profile     LowCardinality(String),
    actor       String,
    issued_at   DateTime64(9),
    expires_at  DateTime64(9),
    stored_at   DateTime64(9),
    record      String                    -- the SessionAction as JSON
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/session_actions_local', '{replica}', stored_at)
ORDER BY (session_id, record_id);

CREATE TABLE IF NOT EXISTS session_actions ON CLUSTER oodwatch
(
    record_id   String,
    kind        LowCardinality(String),   -- issue | lift,
    session_id  String,
    tenant      String,
    service     LowCardinality(String),
    action      LowCardinality(String),
    lifts       String,
    reason      String,
    bundle_id   String,
    categories  Array(String),
    grant_id    String,
    profile     LowCardinality(String),
    actor       String,
    issued_at   DateTime64(9),
    expires_at  DateTime64(9),
    stored_at   DateTime64(9),
    record      String                    -- the SessionAction as JSON
)
ENGINE = Distributed(oodwatch, currentDatabase(), session_actions_local, cityHash64(session_id, record_id));

ALTER TABLE screenings_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';

ALTER TABLE screenings ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';

ALTER TABLE evidence_bundles_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';

ALTER TABLE evidence_bundles ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';

CREATE TABLE IF NOT EXISTS perf_req_week_local ON CLUSTER oodwatch AS perf_req_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_req_week_local', '{replica}', version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 800 DAY;

CREATE TABLE IF NOT EXISTS perf_req_week ON CLUSTER oodwatch AS perf_req_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_req_week_local, cityHash64(bucket, service, model, side, tenant, provider, drill_id));

CREATE TABLE IF NOT EXISTS perf_hist_week_local ON CLUSTER oodwatch AS perf_hist_minute_local
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/perf_hist_week_local', '{replica}', version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 800 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_week ON CLUSTER oodwatch AS perf_hist_minute
ENGINE = Distributed(oodwatch, currentDatabase(), perf_hist_week_local, cityHash64(bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds));
