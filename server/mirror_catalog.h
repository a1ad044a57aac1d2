/* Local catalog writes of the mirror follower: publishing a verified version, yanks,
 * deletions, the follower state row and the failure log. Each write is one BEGIN
 * IMMEDIATE transaction that also appends the local change event, so a mirror's own change
 * feed can be followed in turn. */
#ifndef REG_MIRROR_CATALOG_H
#define REG_MIRROR_CATALOG_H

#include <stdint.h>

#include <sqlite3.h>

#include "uc_hash.h"
#include "uc_pack.h"

/* Follower state, the row of mirror_state. */
typedef struct {
	int64_t accepted_serial;
	int64_t accepted_generated_at; /* 0 before the first accepted snapshot */
	int64_t upstream_serial;
	int64_t last_sync_at;
	int64_t last_attempt_at;
	int full_sync_done;
} reg_mirror_state;

/* Creates the state row for `upstream`, or resets it when it named another upstream, and
 * finds or creates the revoked token that owns mirrored packs. Returns 0 or -1 (logged). */
int reg_mirror_catalog_init(sqlite3 *db, const char *upstream, int64_t *owner_token);

int reg_mirror_state_load(sqlite3 *db, reg_mirror_state *state);
int reg_mirror_state_save(sqlite3 *db, const reg_mirror_state *state);

/* Appends to mirror_failures. `slug` and `version` may be NULL. Logs at warning level. */
void reg_mirror_record_failure(sqlite3 *db, const char *kind, const char *slug,
			       const char *version, const char *message);

/* A local version. */
typedef struct {
	int64_t id;
	char digest[UC_SHA256_HEX_CHARS + 1];
	int yanked;
} reg_local_version;

/* Returns 1 with `out` filled when slug@version exists locally, 0 when not, -1 on error. */
int reg_mirror_find_version(sqlite3 *db, const char *slug, const char *version,
			    reg_local_version *out);

/* The facts of a verified version to publish. */
typedef struct {
	const char *slug;
	const char *version;
	const char *manifest;  /* exact bytes fetched from upstream */
	size_t manifest_len;
	const char *digest;    /* hex SHA-256 of `manifest` */
	const uc_manifest *parsed;
	const char *report_json;
	double verify_seconds;
	const char *yank_reason; /* NULL when not yanked upstream */
	int64_t owner_token;
} reg_mirror_version;

/* Inserts the pack when new, the version as verified with its report, its blob links, a
 * finished job row for the local verification (the version API shows the report through
 * it) and the publish, verify (and yank) events. Returns 0 or -1 (logged). */
int reg_mirror_publish(sqlite3 *db, const reg_mirror_version *v);

int reg_mirror_yank(sqlite3 *db, const char *slug, const char *version, const char *reason);

/* Deletes a version as DELETE /api/packs/{slug}/versions/{version} does; blobs stay. */
int reg_mirror_delete(sqlite3 *db, const char *slug, const char *version);

#endif
