-- The id an evaluation has on the upstream registry, set only on a mirror
-- (ucregd --mirror-of). The follower skips a record whose upstream id it already stored,
-- so syncing a version again never duplicates its evaluations.
ALTER TABLE evaluations ADD COLUMN upstream_id INTEGER;
CREATE UNIQUE INDEX evaluations_by_upstream_id ON evaluations (version_id, upstream_id)
	WHERE upstream_id IS NOT NULL;
