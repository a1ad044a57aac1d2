-- Catalog of the registry daemon. Times are Unix seconds (UTC). Digests are 64 lower-case
-- hex digits of SHA-256. Applied once, in one transaction, by ucregd at start.

-- Bearer tokens. Only the SHA-256 of the secret is stored.
CREATE TABLE tokens (
	id INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	scope TEXT NOT NULL CHECK (scope IN ('push', 'admin')),
	secret_sha256 BLOB NOT NULL UNIQUE CHECK (length(secret_sha256) = 32),
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
);

-- Content-addressed blobs; the bytes live in DATA/blobs/sha256/<digest>.
CREATE TABLE blobs (
	digest TEXT PRIMARY KEY CHECK (length(digest) = 64),
	size INTEGER NOT NULL CHECK (size >= 0),
	created_at INTEGER NOT NULL,
	uploaded_by INTEGER REFERENCES tokens (id)
);

CREATE TABLE packs (
	id INTEGER PRIMARY KEY,
	slug TEXT NOT NULL UNIQUE,
	name TEXT,
	family TEXT,
	owner_token_id INTEGER NOT NULL REFERENCES tokens (id),
	created_at INTEGER NOT NULL
);

-- One published manifest. status: pending until its verify job ends, then verified or
-- failed (status_reason gives the reason). A yanked version stays readable but is no longer the
-- latest and is left out of statistics.
CREATE TABLE versions (
	id INTEGER PRIMARY KEY,
	pack_id INTEGER NOT NULL REFERENCES packs (id),
	version TEXT NOT NULL,
	manifest BLOB NOT NULL,
	manifest_digest TEXT NOT NULL CHECK (length(manifest_digest) = 64),
	status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified', 'failed')),
	status_reason TEXT,
	model_name TEXT,
	family TEXT,
	total_bytes INTEGER NOT NULL DEFAULT 0,
	parameters INTEGER NOT NULL DEFAULT 0,
	bits_per_weight REAL,
	tensor_count INTEGER NOT NULL DEFAULT 0,
	verify_report TEXT,
	verified_at INTEGER,
	yanked_at INTEGER,
	yank_reason TEXT,
	created_at INTEGER NOT NULL,
	created_by INTEGER REFERENCES tokens (id),
	UNIQUE (pack_id, version)
);

-- Shards each version references, so a blob in use can be found.
CREATE TABLE version_blobs (
	version_id INTEGER NOT NULL REFERENCES versions (id),
	digest TEXT NOT NULL REFERENCES blobs (digest),
	PRIMARY KEY (version_id, digest)
);

-- Quality measurements in the record format of `uc eval`. protocol_key is the canonical
-- JSON of the protocol object, so rows under the same protocol compare equal.
CREATE TABLE evaluations (
	id INTEGER PRIMARY KEY,
	version_id INTEGER NOT NULL REFERENCES versions (id),
	metric TEXT NOT NULL,
	comparator TEXT NOT NULL,
	protocol_key TEXT NOT NULL,
	baseline REAL NOT NULL,
	compressed REAL NOT NULL,
	ratio REAL NOT NULL,
	record TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	created_by INTEGER REFERENCES tokens (id)
);
CREATE INDEX evaluations_by_version ON evaluations (version_id);
CREATE INDEX evaluations_by_comparator ON evaluations (comparator, protocol_key);

-- Durable verify queue. A worker takes a queued job by setting state = 'running' and a
-- lease; jobs still running when the daemon starts are queued again.
CREATE TABLE jobs (
	id INTEGER PRIMARY KEY,
	version_id INTEGER NOT NULL REFERENCES versions (id),
	state TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
	attempts INTEGER NOT NULL DEFAULT 0,
	lease_until INTEGER,
	last_error TEXT,
	verify_seconds REAL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_by_state ON jobs (state, id);

-- Change feed for mirrors. kind: publish, verify, evaluation, yank, delete.
CREATE TABLE events (
	serial INTEGER PRIMARY KEY AUTOINCREMENT,
	kind TEXT NOT NULL,
	slug TEXT NOT NULL,
	version TEXT,
	detail TEXT,
	created_at INTEGER NOT NULL
);

-- Resumable uploads in progress; the bytes live in DATA/uploads/<id>.
CREATE TABLE uploads (
	id TEXT PRIMARY KEY,
	token_id INTEGER NOT NULL REFERENCES tokens (id),
	received INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
