-- oodwatch store, version 6: version drift (issue 18).
-- A version is a (service, answering model, deployment label) key seen first at some moment,
-- within a namespace ('' for live traffic, the drill id for a drill's versions). Its profile is
-- stored per hour as rows of counts that add up (one row per flush), so any window is a sum.

CREATE TABLE IF NOT EXISTS drift_versions
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
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY version_id
TTL toDateTime(last_seen) + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_profiles
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
ENGINE = MergeTree
ORDER BY (version_id, hour)
TTL hour + INTERVAL 180 DAY;

CREATE TABLE IF NOT EXISTS drift_score_bins
(
    version_id      String,
    hour            DateTime,
    category        LowCardinality(String),
    bins            Array(UInt64)
)
ENGINE = MergeTree
ORDER BY (version_id, category, hour)
TTL hour + INTERVAL 180 DAY;

-- Sampled outputs with their tier-2 embeddings: the reservoir a version is compared on, and
-- the exemplars a report shows. Output text: kept 30 days.
CREATE TABLE IF NOT EXISTS drift_samples
(
    version_id      String,
    event_id        String,
    ordinal         UInt64,
    text            String,
    embedding       Array(Float32),
    sampled_at      DateTime64(9)
)
ENGINE = ReplacingMergeTree(sampled_at)
ORDER BY (version_id, event_id)
TTL toDateTime(sampled_at) + INTERVAL 30 DAY;

CREATE TABLE IF NOT EXISTS drift_comparisons
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
ENGINE = ReplacingMergeTree(compared_at)
ORDER BY (version_id, look)
TTL toDateTime(compared_at) + INTERVAL 180 DAY;

ALTER TABLE screenings ADD COLUMN IF NOT EXISTS version String DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS version String DEFAULT '';
