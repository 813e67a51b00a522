-- oodwatch store, version 3: the reviewer's desk.
-- A bundle's review state lives on its row: a claim or a resolution inserts the row again with a
-- higher `revision`, and ReplacingMergeTree keeps the newest (the sort key, bundle_id, never
-- changes). Every action is also appended to `reviews`, the audit log, which is never updated.

ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS tenant LowCardinality(String) DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS group_key String DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS claimed_by String DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS label LowCardinality(String) DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS resolved_by String DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS resolved_at DateTime64(9) DEFAULT 0;
ALTER TABLE evidence_bundles ADD INDEX IF NOT EXISTS idx_group group_key TYPE bloom_filter GRANULARITY 4;

CREATE TABLE IF NOT EXISTS reviews
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
ENGINE = MergeTree
ORDER BY (bundle_id, at);

CREATE TABLE IF NOT EXISTS drill_runs
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
ENGINE = ReplacingMergeTree(stored_at)
ORDER BY (run_id, case_id);

CREATE TABLE IF NOT EXISTS tool_registry
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
ENGINE = ReplacingMergeTree(last_seen)
ORDER BY (service, server, tool);
