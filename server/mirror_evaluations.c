/* Copies evaluations from upstream to a mirror. */
#include "config.h"

#include "mirror_evaluations.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "evaluations.h"
#include "log.h"
#include "mirror_catalog.h"
#include "uc_hash.h"

#define VERSION_DOCUMENT_LIMIT ((size_t)16 << 20)

/* The local verified version that evaluations attach to. */
struct local_target {
	int64_t version_id;
	char digest[UC_SHA256_HEX_CHARS + 1];
};

/* Returns 1 with `out` filled when slug@version is verified locally, 0 when not, -1 on
 * error. */
static int find_verified(sqlite3 *db, const char *slug, const char *version,
			 struct local_target *out)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT v.id, v.manifest_digest FROM versions v JOIN packs p ON p.id = v.pack_id"
		" WHERE p.slug = ? AND v.version = ? AND v.status = 'verified'");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		out->version_id = sqlite3_column_int64(stmt, 0);
		snprintf(out->digest, sizeof out->digest, "%s", (const char *)sqlite3_column_text(stmt, 1));
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Returns 1 when the version already has the evaluation with `upstream_id`, 0 when not,
 * -1 on error. */
static int stored(sqlite3 *db, int64_t version_id, int64_t upstream_id)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT 1 FROM evaluations WHERE version_id = ? AND upstream_id = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, version_id);
	sqlite3_bind_int64(stmt, 2, upstream_id);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

/* Inserts one checked record with its event in one transaction, unless it is stored
 * already. Returns 1 when inserted, 0 when already there, -1 on a catalog error. */
static int insert_once(sqlite3 *db, const char *slug, const char *version,
		       const reg_evaluation_row *row, json_t *record, const char *protocol_key)
{
	int64_t id;

	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	int found = stored(db, row->version_id, row->upstream_id);
	if (found != 0) {
		reg_db_rollback(db);
		return found < 0 ? -1 : 0;
	}
	if (reg_evaluation_insert(db, row, record, protocol_key, &id) != 0 ||
	    reg_db_append_event(db, "evaluation", slug, version, NULL) != SQLITE_OK ||
	    reg_db_commit(db) != SQLITE_OK) {
		REG_ERROR("cannot insert the mirrored evaluation %" PRId64 " of %s@%s: %s",
			  row->upstream_id, slug, version, sqlite3_errmsg(db));
		reg_db_rollback(db);
		return -1;
	}
	REG_INFO("mirror: evaluation %" PRId64 " (upstream id %" PRId64 ") added to %s@%s", id,
		 row->upstream_id, slug, version);
	return 1;
}

/* Checks one upstream record and inserts it. Returns 1 when inserted, 0 when already
 * there or invalid (recorded), -1 on a catalog error. */
static int copy_record(sqlite3 *db, const char *slug, const char *version,
		       const struct local_target *target, int64_t owner_token, json_t *upstream)
{
	char message[768], reason[512];
	char *protocol_key = NULL;
	int rc = 0;

	json_t *id = json_object_get(upstream, "id");
	json_t *submitted_at = json_object_get(upstream, "submitted_at");
	if (!json_is_integer(id) || json_integer_value(id) <= 0) {
		reg_mirror_record_failure(db, "evaluation", slug, version, "rejected an upstream"
					  " evaluation without a positive integer 'id'");
		return 0;
	}
	reg_evaluation_row row = {
		.version_id = target->version_id,
		.created_at = json_is_integer(submitted_at) && json_integer_value(submitted_at) > 0
			      ? json_integer_value(submitted_at) : reg_now(),
		.created_by = owner_token,
		.upstream_id = json_integer_value(id),
	};
	int known = stored(db, row.version_id, row.upstream_id);
	if (known != 0)
		return known < 0 ? -1 : 0;

	/* Upstream adds "id" and "submitted_at" when it serves a record, so both are removed
	 * to store the record as it was posted. */
	json_t *record = json_deep_copy(upstream);
	if (!record) {
		REG_ERROR("cannot copy the upstream evaluation %" PRId64 " of %s@%s: out of memory",
			  row.upstream_id, slug, version);
		return -1;
	}
	json_object_del(record, "id");
	json_object_del(record, "submitted_at");
	int checked = reg_evaluation_check(record, &protocol_key, reason, sizeof reason);
	if (checked == -1) {
		snprintf(message, sizeof message, "rejected the upstream evaluation %" PRId64 ": %s",
			 row.upstream_id, reason);
		reg_mirror_record_failure(db, "evaluation", slug, version, message);
	} else if (checked != 0) {
		REG_ERROR("cannot check the upstream evaluation %" PRId64 " of %s@%s: out of memory",
			  row.upstream_id, slug, version);
		rc = -1;
	} else if (!reg_evaluation_pack_matches(record, target->digest)) {
		snprintf(message, sizeof message, "rejected the upstream evaluation %" PRId64 ": its"
			 " pack.manifest_sha256 is not this version's manifest sha256:%s",
			 row.upstream_id, target->digest);
		reg_mirror_record_failure(db, "evaluation", slug, version, message);
	} else {
		rc = insert_once(db, slug, version, &row, record, protocol_key);
	}
	free(protocol_key);
	json_decref(record);
	return rc;
}

int reg_mirror_sync_evaluations(sqlite3 *db, reg_fetch *fetch, const char *slug,
				const char *version, int64_t owner_token, size_t *added)
{
	char path[256], error[1024];
	char *body = NULL;
	size_t len = 0;
	struct local_target target;
	int rc = 0;

	int found = find_verified(db, slug, version, &target);
	if (found <= 0)
		return found; /* not published here, or its local verification failed */
	snprintf(path, sizeof path, "/api/packs/%s/versions/%s", slug, version);
	long status = reg_fetch_get(fetch, path, VERSION_DOCUMENT_LIMIT, &body, &len, error,
				    sizeof error);
	if (status == 404)
		return 0; /* deleted upstream since the snapshot; the next round deletes it */
	if (status != 200) {
		reg_mirror_record_failure(db, "transfer", slug, version, error);
		return -1;
	}
	json_t *document = json_loadb(body, len, 0, NULL);
	free(body);
	json_t *evaluations = json_object_get(document, "evaluations");
	if (!json_is_array(evaluations)) {
		reg_mirror_record_failure(db, "evaluation", slug, version, "the upstream version"
					  " document is not a JSON object with an 'evaluations' array");
		json_decref(document);
		return 0;
	}
	size_t i;
	json_t *upstream;
	json_array_foreach(evaluations, i, upstream) {
		int copied = copy_record(db, slug, version, &target, owner_token, upstream);
		if (copied < 0) {
			rc = -1;
			break;
		}
		*added += (size_t)copied;
	}
	json_decref(document);
	return rc;
}
