/* Read handlers: one pack, its versions, a version with its verify report, the exact
 * manifest bytes, jobs and the change feed. Reads run outside any explicit transaction, so
 * each statement reads its own consistent WAL snapshot. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"
#include "uc_hash.h"

#define VERSION_COLUMNS                                                                      \
	"v.id, v.version, v.manifest_digest, v.status, v.status_reason, v.model_name, v.family," \
	" v.total_bytes, v.parameters, v.bits_per_weight, v.tensor_count, v.verified_at,"      \
	" v.yanked_at, v.yank_reason, v.created_at"
#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 500

static json_t *text_or_null(sqlite3_stmt *stmt, int col)
{
	const unsigned char *text = sqlite3_column_text(stmt, col);
	return text ? json_string((const char *)text) : json_null();
}

static json_t *int_or_null(sqlite3_stmt *stmt, int col)
{
	if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
		return json_null();
	return json_integer(sqlite3_column_int64(stmt, col));
}

/* Builds a version summary from VERSION_COLUMNS starting at column `c`. */
static json_t *version_summary(sqlite3_stmt *stmt, int c, const char *slug)
{
	char url[256];
	const char *version = (const char *)sqlite3_column_text(stmt, c + 1);

	snprintf(url, sizeof url, "/api/packs/%s/versions/%s", slug, version);
	json_t *v = json_object();
	json_object_set_new(v, "version", json_string(version));
	json_object_set_new(v, "url", json_string(url));
	json_object_set_new(v, "manifest_digest", text_or_null(stmt, c + 2));
	json_object_set_new(v, "status", text_or_null(stmt, c + 3));
	json_object_set_new(v, "status_reason", text_or_null(stmt, c + 4));
	json_object_set_new(v, "model_name", text_or_null(stmt, c + 5));
	json_object_set_new(v, "family", text_or_null(stmt, c + 6));
	json_object_set_new(v, "total_bytes", int_or_null(stmt, c + 7));
	json_object_set_new(v, "parameters", int_or_null(stmt, c + 8));
	json_object_set_new(v, "bits_per_weight", sqlite3_column_type(stmt, c + 9) == SQLITE_NULL
			    ? json_null() : json_real(sqlite3_column_double(stmt, c + 9)));
	json_object_set_new(v, "tensor_count", int_or_null(stmt, c + 10));
	json_object_set_new(v, "verified_at", int_or_null(stmt, c + 11));
	json_object_set_new(v, "yanked", json_boolean(sqlite3_column_type(stmt, c + 12) != SQLITE_NULL));
	json_object_set_new(v, "yank_reason", text_or_null(stmt, c + 13));
	json_object_set_new(v, "created_at", int_or_null(stmt, c + 14));
	return v;
}

/* Returns the evaluations of a version as an array of their records plus id (new). */
static json_t *evaluations_of(sqlite3 *db, int64_t version_id)
{
	json_t *list = json_array();
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT id, record, created_at FROM evaluations WHERE version_id = ? ORDER BY id");
	if (!stmt)
		return list;
	sqlite3_bind_int64(stmt, 1, version_id);
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(stmt, 1);
		json_t *record = json_loads(text, 0, NULL);
		if (!record)
			continue;
		json_object_set_new(record, "id", json_integer(sqlite3_column_int64(stmt, 0)));
		json_object_set_new(record, "submitted_at", json_integer(sqlite3_column_int64(stmt, 2)));
		json_array_append_new(list, record);
	}
	sqlite3_finalize(stmt);
	return list;
}

/* Download links: the manifest and every shard blob with its size. */
static json_t *downloads_of(sqlite3 *db, int64_t version_id, const char *version_url)
{
	char url[320];
	json_t *shards = json_array();
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT b.digest, b.size FROM version_blobs vb JOIN blobs b ON b.digest = vb.digest"
		" WHERE vb.version_id = ? ORDER BY b.digest");
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, version_id);
		while (sqlite3_step(stmt) == SQLITE_ROW) {
			const char *digest = (const char *)sqlite3_column_text(stmt, 0);
			snprintf(url, sizeof url, "/api/blobs/sha256/%s", digest);
			json_array_append_new(shards, json_pack("{s:s, s:I, s:s}", "digest", digest, "size",
								(json_int_t)sqlite3_column_int64(stmt, 1),
								"url", url));
		}
		sqlite3_finalize(stmt);
	}
	snprintf(url, sizeof url, "%s/manifest", version_url);
	return json_pack("{s:s, s:o}", "manifest", url, "shards", shards);
}

/* Adds evaluations, downloads, job and the verify report to a version summary. */
static void add_version_detail(sqlite3 *db, json_t *v, int64_t version_id, int with_report)
{
	const char *url = json_string_value(json_object_get(v, "url"));
	json_object_set_new(v, "evaluations", evaluations_of(db, version_id));
	json_object_set_new(v, "downloads", downloads_of(db, version_id, url));

	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT j.id, j.state, (SELECT verify_report FROM versions WHERE id = ?)"
		" FROM jobs j WHERE j.version_id = ? ORDER BY j.id DESC LIMIT 1");
	json_t *verification = json_object();
	json_object_set(verification, "status", json_object_get(v, "status"));
	json_object_set(verification, "reason", json_object_get(v, "status_reason"));
	json_object_set_new(verification, "job", json_null());
	json_object_set_new(verification, "verdict", json_null());
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, version_id);
		sqlite3_bind_int64(stmt, 2, version_id);
		if (sqlite3_step(stmt) == SQLITE_ROW) {
			char job_url[64];
			snprintf(job_url, sizeof job_url, "/api/jobs/%lld", sqlite3_column_int64(stmt, 0));
			json_object_set_new(verification, "job", json_string(job_url));
			const char *report_text = (const char *)sqlite3_column_text(stmt, 2);
			json_t *report = report_text ? json_loads(report_text, 0, NULL) : NULL;
			if (report) {
				json_object_set(verification, "verdict", json_object_get(report, "verdict"));
				json_object_set(verification, "stages", json_object_get(report, "stages"));
				if (with_report)
					json_object_set(v, "verify_report", report);
			}
			json_decref(report);
		}
		sqlite3_finalize(stmt);
	}
	if (with_report && !json_object_get(v, "verify_report"))
		json_object_set_new(v, "verify_report", json_null());
	json_object_set_new(v, "verification", verification);
}

/* Loads the pack row: id, name, family, owner name, created. Queues 404 when absent. */
static int load_pack_json(reg_request *req, sqlite3 *db, int64_t *pack_id, json_t **out)
{
	const char *slug = req->segments[2];
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT p.id, p.name, p.family, t.name, p.created_at FROM packs p"
		" JOIN tokens t ON t.id = p.owner_token_id WHERE p.slug = ?");
	if (!stmt) {
		reg_respond_catalog_error(req);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "pack_not_found", "Pack not found",
				    "no pack '%s' in this registry; list packs with GET /api/packs", slug);
		return -1;
	}
	*pack_id = sqlite3_column_int64(stmt, 0);
	*out = json_pack("{s:s, s:o, s:o, s:o, s:I}", "slug", slug, "name", text_or_null(stmt, 1),
			 "family", text_or_null(stmt, 2), "owner", text_or_null(stmt, 3), "created_at",
			 (json_int_t)sqlite3_column_int64(stmt, 4));
	sqlite3_finalize(stmt);
	return 0;
}

enum MHD_Result reg_pack_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	int64_t pack_id;
	json_t *pack;

	if (reg_check_names(req, 0) != 0)
		return MHD_YES;
	if (!db)
		return reg_respond_catalog_error(req);
	if (load_pack_json(req, db, &pack_id, &pack) != 0)
		return MHD_YES;

	/* The latest version is the newest verified one that is not yanked. */
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT " VERSION_COLUMNS " FROM versions v WHERE v.pack_id = ? ORDER BY v.created_at DESC,"
		" v.id DESC");
	json_t *versions = json_array(), *latest = NULL;
	if (!stmt) {
		json_decref(pack);
		json_decref(versions);
		return reg_respond_catalog_error(req);
	}
	sqlite3_bind_int64(stmt, 1, pack_id);
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		json_t *v = version_summary(stmt, 0, req->segments[2]);
		int is_candidate = !latest && sqlite3_column_type(stmt, 12) == SQLITE_NULL &&
				   strcmp((const char *)sqlite3_column_text(stmt, 3), "verified") == 0;
		if (is_candidate) {
			latest = json_deep_copy(v);
			add_version_detail(db, latest, sqlite3_column_int64(stmt, 0), 0);
		}
		json_array_append_new(versions, v);
	}
	sqlite3_finalize(stmt);
	json_object_set_new(pack, "latest", latest ? latest : json_null());
	json_object_set_new(pack, "versions", versions);
	return reg_respond_json(req, MHD_HTTP_OK, pack);
}

enum MHD_Result reg_versions_list(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	int64_t pack_id;
	json_t *pack;

	if (reg_check_names(req, 0) != 0)
		return MHD_YES;
	if (!db)
		return reg_respond_catalog_error(req);
	if (load_pack_json(req, db, &pack_id, &pack) != 0)
		return MHD_YES;
	json_decref(pack);
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT " VERSION_COLUMNS " FROM versions v WHERE v.pack_id = ? ORDER BY v.created_at DESC,"
		" v.id DESC");
	if (!stmt)
		return reg_respond_catalog_error(req);
	json_t *versions = json_array();
	sqlite3_bind_int64(stmt, 1, pack_id);
	while (sqlite3_step(stmt) == SQLITE_ROW)
		json_array_append_new(versions, version_summary(stmt, 0, req->segments[2]));
	sqlite3_finalize(stmt);
	return reg_respond_json(req, MHD_HTTP_OK,
				json_pack("{s:s, s:o}", "slug", req->segments[2], "versions", versions));
}

/* Finds a version by the route's slug and version. Returns its id, or -1 after queueing
 * the 404 or 500. When `stmt_out` is not NULL, the row (VERSION_COLUMNS) stays open. */
static int64_t find_version(reg_request *req, sqlite3 *db, sqlite3_stmt **stmt_out)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT " VERSION_COLUMNS " FROM versions v JOIN packs p ON p.id = v.pack_id"
		" WHERE p.slug = ? AND v.version = ?");
	if (!stmt) {
		reg_respond_catalog_error(req);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, req->segments[2], -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, req->segments[4], -1, SQLITE_STATIC);
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "version_not_found", "Version not found",
				    "no version '%s' of pack '%s'; list them with GET"
				    " /api/packs/%s/versions", req->segments[4], req->segments[2],
				    req->segments[2]);
		return -1;
	}
	int64_t id = sqlite3_column_int64(stmt, 0);
	if (stmt_out)
		*stmt_out = stmt;
	else
		sqlite3_finalize(stmt);
	return id;
}

enum MHD_Result reg_version_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt;

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	if (!db)
		return reg_respond_catalog_error(req);
	int64_t id = find_version(req, db, &stmt);
	if (id < 0)
		return MHD_YES;
	json_t *v = version_summary(stmt, 0, req->segments[2]);
	sqlite3_finalize(stmt);
	json_object_set_new(v, "slug", json_string(req->segments[2]));
	add_version_detail(db, v, id, 1);
	return reg_respond_json(req, MHD_HTTP_OK, v);
}

enum MHD_Result reg_manifest_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	char etag[UC_SHA256_HEX_CHARS + 3];

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	if (!db)
		return reg_respond_catalog_error(req);
	int64_t id = find_version(req, db, NULL);
	if (id < 0)
		return MHD_YES;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT manifest, manifest_digest FROM versions WHERE id = ?");
	if (!stmt)
		return reg_respond_catalog_error(req);
	sqlite3_bind_int64(stmt, 1, id);
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return reg_respond_catalog_error(req);
	}
	if (sqlite3_column_bytes(stmt, 0) == 0) {
		sqlite3_finalize(stmt);
		return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "manifest_not_kept",
					   "Manifest not kept", "the manifest of %s@%s failed the structure"
					   " check and was not kept; GET /api/packs/%s/versions/%s shows its"
					   " digest and the reason", req->segments[2], req->segments[4],
					   req->segments[2], req->segments[4]);
	}
	snprintf(etag, sizeof etag, "\"%s\"", (const char *)sqlite3_column_text(stmt, 1));
	const char *inm = reg_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH);
	int not_modified = inm && strstr(inm, etag);
	struct MHD_Response *r = MHD_create_response_from_buffer(
		not_modified ? 0 : (size_t)sqlite3_column_bytes(stmt, 0),
		not_modified ? (void *)"" : (void *)sqlite3_column_blob(stmt, 0), MHD_RESPMEM_MUST_COPY);
	sqlite3_finalize(stmt);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
	/* A version's manifest never changes: versions are immutable. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "public, max-age=31536000, immutable");
	return reg_respond(req, not_modified ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r);
}

enum MHD_Result reg_job_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	char *end;
	const char *text = req->segments[2];
	errno = 0;
	long long id = strtoll(text, &end, 10);

	/* strtoll skips leading spaces and saturates on overflow; both are rejected. */
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno == ERANGE || id <= 0)
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_job_id", "Invalid job id",
					   "'%.40s' is not a job id; job ids are positive integers",
					   req->segments[2]);
	if (!db)
		return reg_respond_catalog_error(req);
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT j.state, j.attempts, j.last_error, j.verify_seconds, j.created_at, j.updated_at,"
		" p.slug, v.version, v.status FROM jobs j JOIN versions v ON v.id = j.version_id"
		" JOIN packs p ON p.id = v.pack_id WHERE j.id = ?");
	if (!stmt)
		return reg_respond_catalog_error(req);
	sqlite3_bind_int64(stmt, 1, id);
	if (sqlite3_step(stmt) != SQLITE_ROW) {
		sqlite3_finalize(stmt);
		return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "job_not_found", "Job not found",
					   "no job %lld in this registry", id);
	}
	char url[256];
	snprintf(url, sizeof url, "/api/packs/%s/versions/%s", sqlite3_column_text(stmt, 6),
		 sqlite3_column_text(stmt, 7));
	json_t *job = json_pack("{s:I, s:o, s:I, s:o, s:o, s:I, s:I, s:s, s:o}",
		"id", (json_int_t)id, "state", text_or_null(stmt, 0),
		"attempts", (json_int_t)sqlite3_column_int64(stmt, 1),
		"last_error", text_or_null(stmt, 2),
		"verify_seconds", sqlite3_column_type(stmt, 3) == SQLITE_NULL ? json_null()
			: json_real(sqlite3_column_double(stmt, 3)),
		"created_at", (json_int_t)sqlite3_column_int64(stmt, 4),
		"updated_at", (json_int_t)sqlite3_column_int64(stmt, 5),
		"version", url, "version_status", text_or_null(stmt, 8));
	sqlite3_finalize(stmt);
	return reg_respond_json(req, MHD_HTTP_OK, job);
}

/* Parses an optional integer query argument from `min` to `max`. Queues 400 and returns -1
 * when it is present but invalid. */
static int query_uint(reg_request *req, const char *name, long long min, long long max,
		      long long *value)
{
	const char *text = reg_query(req, name);
	if (!text)
		return 0;
	char *end;
	errno = 0;
	long long n = strtoll(text, &end, 10);
	/* strtoll saturates on overflow, so ERANGE marks a number above max. */
	if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno == ERANGE || n < min ||
	    n > max) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_query", "Invalid query argument",
				    "%s='%.40s' is not an integer from %lld to %lld", name, text, min,
				    max);
		return -1;
	}
	*value = n;
	return 0;
}

enum MHD_Result reg_changes_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	long long since = 0, limit = 100;

	if (query_uint(req, "since", 0, INT64_MAX, &since) != 0 ||
	    query_uint(req, "limit", 1, 1000, &limit) != 0)
		return MHD_YES;
	if (!db)
		return reg_respond_catalog_error(req);
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT serial, kind, slug, version, detail, created_at FROM events WHERE serial > ?"
		" ORDER BY serial LIMIT ?");
	if (!stmt)
		return reg_respond_catalog_error(req);
	sqlite3_bind_int64(stmt, 1, since);
	sqlite3_bind_int64(stmt, 2, limit);
	json_t *changes = json_array();
	long long last = since;
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		last = sqlite3_column_int64(stmt, 0);
		json_array_append_new(changes, json_pack("{s:I, s:o, s:o, s:o, s:o, s:I}",
			"serial", (json_int_t)last, "kind", text_or_null(stmt, 1),
			"slug", text_or_null(stmt, 2), "version", text_or_null(stmt, 3),
			"detail", text_or_null(stmt, 4),
			"created_at", (json_int_t)sqlite3_column_int64(stmt, 5)));
	}
	sqlite3_finalize(stmt);
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:o, s:I, s:I}", "changes", changes,
		"next_since", (json_int_t)last, "serial", (json_int_t)reg_db_serial()));
}
