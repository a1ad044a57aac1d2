-- Follower state of a mirror (ucregd --mirror-of). Written only by the follower thread.

-- One row (id = 1). Serials are the upstream's change serials; times are Unix seconds.
CREATE TABLE mirror_state (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	upstream TEXT NOT NULL,
	accepted_serial INTEGER NOT NULL DEFAULT 0,   -- serial of the newest snapshot applied
	accepted_generated_at INTEGER,                -- generated_at of that snapshot
	upstream_serial INTEGER NOT NULL DEFAULT 0,   -- newest serial the upstream reported
	last_sync_at INTEGER,                         -- end of the last sync that applied a snapshot
	last_attempt_at INTEGER,
	full_sync_done INTEGER NOT NULL DEFAULT 0
);

-- Rejected snapshots, refused versions and failed transfers, newest last.
-- kind: snapshot, version, path, transfer.
CREATE TABLE mirror_failures (
	id INTEGER PRIMARY KEY,
	kind TEXT NOT NULL,
	slug TEXT,
	version TEXT,
	message TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
