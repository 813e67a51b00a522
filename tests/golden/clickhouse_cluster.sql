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
ENGINE = Distributed(oodwatch, currentDatabase(), reviews_local, cityHash64(bundle_id));

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
ENGINE = Distributed(oodwatch, currentDatabase(), drill_runs_local, cityHash64(run_id));

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
ENGINE = Distributed(oodwatch, currentDatabase(), tool_registry_local, cityHash64(service));

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS score Float32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS score Float32 DEFAULT 0;

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS events UInt32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS events UInt32 DEFAULT 0;

ALTER TABLE drill_runs_local ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS screened UInt32 DEFAULT 0;

ALTER TABLE drill_runs ON CLUSTER oodwatch ADD COLUMN IF NOT EXISTS screened UInt32 DEFAULT 0;
