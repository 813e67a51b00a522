-- A week tier under the day tier: a 30-day report merges about 11 states per series (days up to
-- the first week boundary, then weeks) instead of 31. Weeks are 7-day buckets from the epoch
-- (`intDiv(unix time, 604800)`), rolled from their days like days from hours.
CREATE TABLE IF NOT EXISTS perf_req_week AS perf_req_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, service, model, side, tenant, provider, drill_id)
TTL bucket + INTERVAL 800 DAY;

CREATE TABLE IF NOT EXISTS perf_hist_week AS perf_hist_minute
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYear(bucket)
ORDER BY (bucket, metric, service, model, side, tenant, provider, token_type, drill_id, bounds)
TTL bucket + INTERVAL 800 DAY;
