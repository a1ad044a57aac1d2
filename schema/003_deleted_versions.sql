-- Version names deleted by an admin. A deleted name is never published again, because its
-- manifest URL was served with immutable caching and caches may still hold the old bytes.
-- Keyed by slug, not pack id, because the URL contains the slug.
CREATE TABLE deleted_versions (
	slug TEXT NOT NULL,
	version TEXT NOT NULL,
	manifest_digest TEXT NOT NULL,
	deleted_at INTEGER NOT NULL,
	deleted_by INTEGER REFERENCES tokens (id),
	PRIMARY KEY (slug, version)
);
