-- oodwatch store, version 7: the guard (issue 19).
-- Relaxation grants and session actions are append-only: a grant row is written once, and a
-- revocation is a row of its own (`action = 'revoke'`); an action is issued once and lifted by a
-- row of its own. Nothing is updated or deleted, so both tables are their own audit logs.
-- Decisions a grant changed carry its id on the screening and the bundle.

CREATE TABLE IF NOT EXISTS guard_grants
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
ENGINE = MergeTree
ORDER BY (grant_id, at);

CREATE TABLE IF NOT EXISTS session_actions
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
ENGINE = ReplacingMergeTree(stored_at)
ORDER BY (session_id, record_id);

ALTER TABLE screenings ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';
ALTER TABLE evidence_bundles ADD COLUMN IF NOT EXISTS grant_id String DEFAULT '';
