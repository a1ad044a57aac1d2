/* Local catalog writes of the mirror follower. */
#include "config.h"

#include "mirror_catalog.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "packs.h"

/* Runs one statement with text parameters ?1..?n (NULL binds NULL). Returns SQLITE_DONE,
 * SQLITE_ROW or the error. */
static int run(sqlite3 *db, const char *sql, int n, const char *const *params)
{
	sqlite3_stmt *stmt = reg_db_prepare(db, sql);
	if (!stmt)
		return SQLITE_ERROR;
	for (int i = 0; i < n; i++)
		sqlite3_bind_text(stmt, i + 1, params[i], -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	return rc;
}

static int find_owner(sqlite3 *db, const char *name, int64_t *owner)
{
	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT id FROM tokens WHERE name = ? ORDER BY id LIMIT 1");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*owner = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

int reg_mirror_catalog_init(sqlite3 *db, const char *upstream, int64_t *owner_token)
{
	char name[512];
	const char *params[] = { upstream };

	/* The owner token is revoked from the start: it only satisfies packs.owner_token_id. */
	snprintf(name, sizeof name, "mirror of %.480s", upstream);
	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	int found = find_owner(db, name, owner_token);
	if (found == 0) {
		sqlite3_stmt *stmt = reg_db_prepare(db,
			"INSERT INTO tokens (name, scope, secret_sha256, created_at, revoked_at)"
			" VALUES (?, 'push', randomblob(32), ?2, ?2)");
		if (stmt) {
			sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 2, reg_now());
			found = sqlite3_step(stmt) == SQLITE_DONE ? 1 : -1;
			*owner_token = sqlite3_last_insert_rowid(db);
			sqlite3_finalize(stmt);
		} else {
			found = -1;
		}
	}
	if (found < 0 ||
	    run(db, "INSERT OR IGNORE INTO mirror_state (id, upstream) VALUES (1, ?1)", 1, params) !=
		    SQLITE_DONE)
		goto fail;
	/* Serials of another upstream mean nothing here: start over with a full sync. */
	if (run(db, "UPDATE mirror_state SET upstream = ?1, accepted_serial = 0, upstream_serial = 0,"
		    " accepted_generated_at = NULL, full_sync_done = 0 WHERE upstream <> ?1", 1,
		    params) != SQLITE_DONE)
		goto fail;
	if (sqlite3_changes(db) > 0)
		REG_WARN("the mirror followed another upstream before; starting over with %s", upstream);
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
fail:
	REG_ERROR("cannot prepare the mirror state: %s", sqlite3_errmsg(db));
	reg_db_rollback(db);
	return -1;
}

int reg_mirror_state_load(sqlite3 *db, reg_mirror_state *state)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT accepted_serial, coalesce(accepted_generated_at, 0), upstream_serial,"
		" coalesce(last_sync_at, 0), coalesce(last_attempt_at, 0), full_sync_done"
		" FROM mirror_state WHERE id = 1");
	if (!stmt)
		return -1;
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		state->accepted_serial = sqlite3_column_int64(stmt, 0);
		state->accepted_generated_at = sqlite3_column_int64(stmt, 1);
		state->upstream_serial = sqlite3_column_int64(stmt, 2);
		state->last_sync_at = sqlite3_column_int64(stmt, 3);
		state->last_attempt_at = sqlite3_column_int64(stmt, 4);
		state->full_sync_done = sqlite3_column_int(stmt, 5);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW ? 0 : -1;
}

static void bind_or_null(sqlite3_stmt *stmt, int index, int64_t value)
{
	if (value)
		sqlite3_bind_int64(stmt, index, value);
	else
		sqlite3_bind_null(stmt, index);
}

int reg_mirror_state_save(sqlite3 *db, const reg_mirror_state *state)
{
	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"UPDATE mirror_state SET accepted_serial = ?, accepted_generated_at = ?,"
		" upstream_serial = ?, last_sync_at = ?, last_attempt_at = ?, full_sync_done = ?"
		" WHERE id = 1");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, state->accepted_serial);
		bind_or_null(stmt, 2, state->accepted_generated_at);
		sqlite3_bind_int64(stmt, 3, state->upstream_serial);
		bind_or_null(stmt, 4, state->last_sync_at);
		bind_or_null(stmt, 5, state->last_attempt_at);
		sqlite3_bind_int(stmt, 6, state->full_sync_done);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE) {
		reg_db_rollback(db);
		return -1;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
}

void reg_mirror_record_failure(sqlite3 *db, const char *kind, const char *slug,
			       const char *version, const char *message)
{
	REG_WARN("mirror %s failure%s%s%s%s: %s", kind, slug ? " for " : "", slug ? slug : "",
		 version ? "@" : "", version ? version : "", message);
	if (reg_db_begin_write(db) != SQLITE_OK)
		return;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO mirror_failures (kind, slug, version, message, created_at)"
		" VALUES (?, ?, ?, ?, ?)");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, slug, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, version, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, message, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 5, reg_now());
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK)
		reg_db_rollback(db);
}

int reg_mirror_find_version(sqlite3 *db, const char *slug, const char *version,
			    reg_local_version *out)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT v.id, v.manifest_digest, v.yanked_at IS NOT NULL FROM versions v"
		" JOIN packs p ON p.id = v.pack_id WHERE p.slug = ? AND v.version = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		out->id = sqlite3_column_int64(stmt, 0);
		snprintf(out->digest, sizeof out->digest, "%s", (const char *)sqlite3_column_text(stmt, 1));
		out->yanked = sqlite3_column_int(stmt, 2);
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

static int64_t ensure_pack(sqlite3 *db, const reg_mirror_version *v)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO packs (slug, name, family, owner_token_id, created_at) VALUES (?, ?, ?, ?, ?)"
		" ON CONFLICT (slug) DO NOTHING");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, v->slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, uc_manifest_model_field(v->parsed, "name"), -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, uc_manifest_model_field(v->parsed, "family"), -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 4, v->owner_token);
	sqlite3_bind_int64(stmt, 5, reg_now());
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		return -1;
	stmt = reg_db_prepare(db, "SELECT id FROM packs WHERE slug = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, v->slug, -1, SQLITE_STATIC);
	int64_t id = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
	sqlite3_finalize(stmt);
	return id;
}

static int insert_version(sqlite3 *db, const reg_mirror_version *v, int64_t pack_id,
			  int64_t *version_id)
{
	const uc_manifest *m = v->parsed;
	uint64_t total = 0;
	for (size_t i = 0; i < uc_manifest_shard_count(m); i++)
		total += uc_manifest_shard_at(m, i)->size;

	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO versions (pack_id, version, manifest, manifest_digest, status, model_name,"
		" family, total_bytes, parameters, bits_per_weight, tensor_count, verify_report,"
		" verified_at, yanked_at, yank_reason, created_at, created_by)"
		" VALUES (?1, ?2, ?3, ?4, 'verified', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?12, ?15)");
	if (!stmt)
		return -1;
	int64_t now = reg_now();
	sqlite3_bind_int64(stmt, 1, pack_id);
	sqlite3_bind_text(stmt, 2, v->version, -1, SQLITE_STATIC);
	sqlite3_bind_blob(stmt, 3, v->manifest, (int)v->manifest_len, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, v->digest, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, uc_manifest_model_field(m, "name"), -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, uc_manifest_model_field(m, "family"), -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 7, (sqlite3_int64)total);
	sqlite3_bind_int64(stmt, 8, (sqlite3_int64)uc_manifest_parameters(m));
	sqlite3_bind_double(stmt, 9, uc_manifest_bits_per_weight(m));
	sqlite3_bind_int64(stmt, 10, (sqlite3_int64)uc_manifest_tensor_count(m));
	sqlite3_bind_text(stmt, 11, v->report_json, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 12, now);
	if (v->yank_reason) {
		sqlite3_bind_int64(stmt, 13, now);
		sqlite3_bind_text(stmt, 14, v->yank_reason, -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(stmt, 15, v->owner_token);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	*version_id = sqlite3_last_insert_rowid(db);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int insert_done_job(sqlite3 *db, int64_t version_id, double seconds)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO jobs (version_id, state, attempts, verify_seconds, created_at, updated_at)"
		" VALUES (?1, 'done', 1, ?2, ?3, ?3)");
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, version_id);
	sqlite3_bind_double(stmt, 2, seconds);
	sqlite3_bind_int64(stmt, 3, reg_now());
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

int reg_mirror_publish(sqlite3 *db, const reg_mirror_version *v)
{
	int64_t pack_id, version_id;

	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	if ((pack_id = ensure_pack(db, v)) < 0 || insert_version(db, v, pack_id, &version_id) != 0 ||
	    reg_version_link_blobs(db, version_id, v->parsed) != 0 ||
	    insert_done_job(db, version_id, v->verify_seconds) != 0 ||
	    reg_db_append_event(db, "publish", v->slug, v->version, v->digest) != SQLITE_OK ||
	    reg_db_append_event(db, "verify", v->slug, v->version, "verified") != SQLITE_OK ||
	    (v->yank_reason &&
	     reg_db_append_event(db, "yank", v->slug, v->version, v->yank_reason) != SQLITE_OK)) {
		REG_ERROR("cannot publish the mirrored %s@%s: %s", v->slug, v->version, sqlite3_errmsg(db));
		reg_db_rollback(db);
		return -1;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
}

int reg_mirror_yank(sqlite3 *db, const char *slug, const char *version, const char *reason)
{
	const char *params[] = { slug, version, reason };

	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	int rc = run(db, "UPDATE versions SET yanked_at = strftime('%s', 'now'), yank_reason = ?3"
		     " WHERE yanked_at IS NULL AND version = ?2 AND pack_id ="
		     " (SELECT id FROM packs WHERE slug = ?1)", 3, params);
	if (rc != SQLITE_DONE ||
	    (sqlite3_changes(db) > 0 &&
	     reg_db_append_event(db, "yank", slug, version, reason) != SQLITE_OK)) {
		REG_ERROR("cannot yank the mirrored %s@%s: %s", slug, version, sqlite3_errmsg(db));
		reg_db_rollback(db);
		return -1;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
}

int reg_mirror_delete(sqlite3 *db, const char *slug, const char *version)
{
	static const char *const statements[] = {
		"DELETE FROM evaluations WHERE version_id = ?1",
		"DELETE FROM version_blobs WHERE version_id = ?1",
		"DELETE FROM jobs WHERE version_id = ?1",
		"DELETE FROM versions WHERE id = ?1",
	};
	reg_local_version local;

	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	int found = reg_mirror_find_version(db, slug, version, &local);
	for (size_t i = 0; found == 1 && i < sizeof statements / sizeof statements[0]; i++) {
		sqlite3_stmt *stmt = reg_db_prepare(db, statements[i]);
		if (!stmt) {
			found = -1;
			break;
		}
		sqlite3_bind_int64(stmt, 1, local.id);
		if (sqlite3_step(stmt) != SQLITE_DONE)
			found = -1;
		sqlite3_finalize(stmt);
	}
	if (found < 0 ||
	    (found == 1 && reg_db_append_event(db, "delete", slug, version, local.digest) != SQLITE_OK)) {
		REG_ERROR("cannot delete the mirrored %s@%s: %s", slug, version, sqlite3_errmsg(db));
		reg_db_rollback(db);
		return -1;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
}
