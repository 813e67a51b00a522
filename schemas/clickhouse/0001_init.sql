-- oodwatch store, version 1. Every statement is idempotent.
-- Sort keys are derived from the record's own stable id, so a replayed record lands on the
-- same key and ReplacingMergeTree folds it; the sink also skips ids it has already stored.

CREATE TABLE IF NOT EXISTS screenings
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
ENGINE = ReplacingMergeTree(stored_at)
ORDER BY event_id;

CREATE TABLE IF NOT EXISTS evidence_bundles
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
ENGINE = ReplacingMergeTree(revision)
ORDER BY bundle_id;

CREATE TABLE IF NOT EXISTS dead_letters
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
ENGINE = ReplacingMergeTree(stored_at)
ORDER BY dead_letter_id;
