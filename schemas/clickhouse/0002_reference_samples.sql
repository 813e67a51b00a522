-- oodwatch store, version 2: traffic that screened clean, sampled for tier 2's reference.
-- `oodwatch reference consolidate` reads it; rows expire after 30 days.

CREATE TABLE IF NOT EXISTS reference_samples
(
    event_id    String,
    service     LowCardinality(String),
    text        String,
    sampled_at  DateTime64(9),
    stored_at   DateTime64(9)
)
ENGINE = ReplacingMergeTree(stored_at)
ORDER BY event_id
TTL toDateTime(sampled_at) + INTERVAL 30 DAY;
