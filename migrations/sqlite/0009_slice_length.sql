-- The length of the time slices of a bounded job's run (query::slices), kept with each part's
-- checkpoint: it depends on the size of the table when the first run began, and a resumed run
-- must continue on the same grid. 0: one query over the whole window; NULL: a part written
-- before the length was kept (its run used the time-only rule).
ALTER TABLE parts ADD COLUMN resume_slice_ms BIGINT;
