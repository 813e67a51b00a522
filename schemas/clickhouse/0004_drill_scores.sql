-- oodwatch store, version 4: each drill case's highest screening score (for AUROC by family),
-- and the events it produced and how many were screened.

ALTER TABLE drill_runs ADD COLUMN IF NOT EXISTS score Float32 DEFAULT 0;
ALTER TABLE drill_runs ADD COLUMN IF NOT EXISTS events UInt32 DEFAULT 0;
ALTER TABLE drill_runs ADD COLUMN IF NOT EXISTS screened UInt32 DEFAULT 0;
