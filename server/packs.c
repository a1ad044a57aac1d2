/* Publishing: PUT a version's manifest, yank a version, attach an evaluation. Every write
 * is one BEGIN IMMEDIATE transaction; the manifest is parsed and hashed before it opens. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blobs.h"
#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"
#include "uc_pack.h"
#include "workers.h"

int reg_check_names(reg_request *req, int has_version)
{
	const char *slug = req->segments[2];
	if (!reg_name_valid(slug)) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_slug", "Invalid pack slug",
				    "'%.80s%s' is not a valid slug; use 1 to 64 characters from a-z, 0-9,"
				    " '.', '_' and '-', starting with a letter or digit, without '..'",
				    slug, strlen(slug) > 80 ? "..." : "");
		return -1;
	}
	if (has_version && !reg_name_valid(req->segments[4])) {
		const char *version = req->segments[4];
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_version", "Invalid version",
				    "'%.80s%s' is not a valid version; use 1 to 64 characters from a-z,"
				    " 0-9, '.', '_' and '-', starting with a letter or digit, without '..'",
				    version, strlen(version) > 80 ? "..." : "");
		return -1;
	}
	return 0;
}

enum MHD_Result reg_respond_catalog_error(reg_request *req)
{
	return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "catalog_error",
				   "Catalog error", "the catalog could not be read or written; see the"
				   " server log for request %" PRIu64, req->id);
}

/* Pack row as seen inside the write transaction. */
struct pack_row {
	int64_t id;      /* -1 when the pack does not exist */
	int64_t owner;
};

static int load_pack(sqlite3 *db, const char *slug, struct pack_row *pack)
{
	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT id, owner_token_id FROM packs WHERE slug = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	pack->id = -1;
	if (rc == SQLITE_ROW) {
		pack->id = sqlite3_column_int64(stmt, 0);
		pack->owner = sqlite3_column_int64(stmt, 1);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* Looks up an existing version. Returns 1 with its id and digest, 0 when absent, -1. */
static int load_version(sqlite3 *db, int64_t pack_id, const char *version, int64_t *id,
			char digest[UC_SHA256_HEX_CHARS + 1])
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT id, manifest_digest FROM versions WHERE pack_id = ? AND version = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, pack_id);
	sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	int found = rc == SQLITE_ROW;
	if (found) {
		*id = sqlite3_column_int64(stmt, 0);
		snprintf(digest, UC_SHA256_HEX_CHARS + 1, "%s", (const char *)sqlite3_column_text(stmt, 1));
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

static int64_t latest_job(sqlite3 *db, int64_t version_id)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT id FROM jobs WHERE version_id = ? ORDER BY id DESC LIMIT 1");
	int64_t id = -1;
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, version_id);
	if (sqlite3_step(stmt) == SQLITE_ROW)
		id = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return id;
}

/* Collects the shards of `manifest` that have no blob row into a JSON array (new). */
static json_t *missing_blobs(sqlite3 *db, const uc_manifest *manifest)
{
	json_t *missing = json_array();
	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT 1 FROM blobs WHERE digest = ?");
	if (!missing || !stmt) {
		sqlite3_finalize(stmt);
		json_decref(missing);
		return NULL;
	}
	for (size_t i = 0; i < uc_manifest_shard_count(manifest); i++) {
		const uc_manifest_shard *shard = uc_manifest_shard_at(manifest, i);
		char hex[UC_SHA256_HEX_CHARS + 1];
		uc_sha256_to_hex(shard->sha256, hex);
		sqlite3_reset(stmt);
		sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(stmt) != SQLITE_ROW)
			json_array_append_new(missing, json_string(hex));
	}
	sqlite3_finalize(stmt);
	return missing;
}

/* Everything the version row stores about a manifest, computed before the transaction. */
struct manifest_facts {
	char digest[UC_SHA256_HEX_CHARS + 1];
	const uc_manifest *manifest; /* NULL when the structure check failed */
	const char *failure;         /* the reason when it failed */
	uint64_t total_bytes;
};

static int insert_version(sqlite3 *db, reg_request *req, int64_t pack_id,
			  const struct manifest_facts *facts, int64_t *version_id)
{
	const uc_manifest *m = facts->manifest;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO versions (pack_id, version, manifest, manifest_digest, status, status_reason,"
		" model_name, family, total_bytes, parameters, bits_per_weight, tensor_count, created_at,"
		" created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, pack_id);
	sqlite3_bind_text(stmt, 2, req->segments[4], -1, SQLITE_STATIC);
	/* The body of a manifest that failed the structure check is not kept, because it can be
	 * up to the request limit for every new version name. The digest and the reason are. */
	if (m)
		sqlite3_bind_blob(stmt, 3, req->body, (int)req->body_len, SQLITE_STATIC);
	else
		sqlite3_bind_zeroblob(stmt, 3, 0);
	sqlite3_bind_text(stmt, 4, facts->digest, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 5, m ? "pending" : "failed", -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 6, facts->failure, -1, SQLITE_STATIC);
	if (m) {
		sqlite3_bind_text(stmt, 7, uc_manifest_model_field(m, "name"), -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 8, uc_manifest_model_field(m, "family"), -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 9, (sqlite3_int64)facts->total_bytes);
		sqlite3_bind_int64(stmt, 10, (sqlite3_int64)uc_manifest_parameters(m));
		sqlite3_bind_double(stmt, 11, uc_manifest_bits_per_weight(m));
		sqlite3_bind_int64(stmt, 12, (sqlite3_int64)uc_manifest_tensor_count(m));
	} else {
		sqlite3_bind_int64(stmt, 9, 0);
		sqlite3_bind_int64(stmt, 10, 0);
		sqlite3_bind_int64(stmt, 12, 0);
	}
	sqlite3_bind_int64(stmt, 13, reg_now());
	sqlite3_bind_int64(stmt, 14, req->token_id);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot insert version: %s", sqlite3_errmsg(db));
		return -1;
	}
	*version_id = sqlite3_last_insert_rowid(db);
	return 0;
}

int reg_version_link_blobs(sqlite3 *db, int64_t version_id, const uc_manifest *m)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT OR IGNORE INTO version_blobs (version_id, digest) VALUES (?, ?)");
	if (!stmt)
		return -1;
	int rc = SQLITE_DONE;
	for (size_t i = 0; i < uc_manifest_shard_count(m) && rc == SQLITE_DONE; i++) {
		char hex[UC_SHA256_HEX_CHARS + 1];
		uc_sha256_to_hex(uc_manifest_shard_at(m, i)->sha256, hex);
		sqlite3_reset(stmt);
		sqlite3_bind_int64(stmt, 1, version_id);
		sqlite3_bind_text(stmt, 2, hex, -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(stmt);
	}
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? 0 : -1;
}

static int64_t insert_job(sqlite3 *db, int64_t version_id)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO jobs (version_id, created_at, updated_at) VALUES (?, ?, ?)");
	if (!stmt)
		return -1;
	int64_t now = reg_now();
	sqlite3_bind_int64(stmt, 1, version_id);
	sqlite3_bind_int64(stmt, 2, now);
	sqlite3_bind_int64(stmt, 3, now);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? sqlite3_last_insert_rowid(db) : -1;
}

static int64_t insert_pack(sqlite3 *db, reg_request *req, const uc_manifest *m)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO packs (slug, name, family, owner_token_id, created_at) VALUES (?, ?, ?, ?, ?)");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, req->segments[2], -1, SQLITE_STATIC);
	if (m) {
		sqlite3_bind_text(stmt, 2, uc_manifest_model_field(m, "name"), -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, uc_manifest_model_field(m, "family"), -1, SQLITE_STATIC);
	}
	sqlite3_bind_int64(stmt, 4, req->token_id);
	sqlite3_bind_int64(stmt, 5, reg_now());
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? sqlite3_last_insert_rowid(db) : -1;
}

static enum MHD_Result respond_accepted(reg_request *req, unsigned status, int64_t job_id,
					const char *state, const char *digest)
{
	char version_url[256], job_url[64];
	snprintf(version_url, sizeof version_url, "/api/packs/%s/versions/%s", req->segments[2],
		 req->segments[4]);
	json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "slug", req->segments[2], "version",
				 req->segments[4], "status", state, "manifest_digest", digest);
	if (body) {
		json_object_set_new(body, "url", json_string(version_url));
		if (job_id > 0) {
			snprintf(job_url, sizeof job_url, "/api/jobs/%" PRId64, job_id);
			json_object_set_new(body, "job", json_string(job_url));
		} else {
			json_object_set_new(body, "job", json_null());
		}
	}
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct MHD_Response *r = text ? MHD_create_response_from_buffer(strlen(text), text,
									MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, job_id > 0 ? job_url : version_url);
	return reg_respond(req, status, r);
}

/* Queues the 409 naming every missing blob; takes `missing`. */
static enum MHD_Result respond_missing(reg_request *req, json_t *missing)
{
	char first[UC_SHA256_HEX_CHARS + 1];
	size_t count = json_array_size(missing);

	snprintf(first, sizeof first, "%s", json_string_value(json_array_get(missing, 0)));
	char *list = json_dumps(missing, JSON_COMPACT);
	json_decref(missing);
	enum MHD_Result result = reg_respond_problem(
		req, MHD_HTTP_CONFLICT, "blobs_missing", "Blobs missing",
		"%zu shard blob%s referenced by the manifest %s not uploaded: %.700s; upload them with"
		" PUT /api/blobs/sha256/{digest} first", count, count == 1 ? "" : "s",
		count == 1 ? "is" : "are", list ? list : first);
	free(list);
	return result;
}

/* Runs the write transaction of a PUT. Returns the response already queued. */
/* Looks up the tombstone of a deleted version. Returns 1 with the digest of the deleted
 * manifest, 0 when the name was never deleted, or -1 on a catalog error. */
static int load_deleted_version(sqlite3 *db, const char *slug, const char *version,
				char digest[UC_SHA256_HEX_CHARS + 1])
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT manifest_digest FROM deleted_versions WHERE slug = ? AND version = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, version, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		snprintf(digest, UC_SHA256_HEX_CHARS + 1, "%s",
			 (const char *)sqlite3_column_text(stmt, 0));
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

static enum MHD_Result publish(reg_request *req, sqlite3 *db, const struct manifest_facts *facts)
{
	const char *slug = req->segments[2], *version = req->segments[4];
	struct pack_row pack;
	char existing_digest[UC_SHA256_HEX_CHARS + 1];
	int64_t version_id = -1, job_id = -1;
	json_t *missing = NULL;

	if (reg_db_begin_write(db) != SQLITE_OK)
		return reg_respond_catalog_error(req);
	if (load_pack(db, slug, &pack) != 0)
		goto catalog_error;
	if (pack.id >= 0 && pack.owner != req->token_id && !req->token_admin) {
		reg_db_rollback(db);
		return reg_respond_problem(req, MHD_HTTP_FORBIDDEN, "not_owner", "Not the pack owner",
					   "pack '%s' belongs to another token; push it with its owner's"
					   " token or an admin token, or choose another slug", slug);
	}
	if (pack.id >= 0) {
		int found = load_version(db, pack.id, version, &version_id, existing_digest);
		if (found < 0)
			goto catalog_error;
		if (found) {
			int64_t job = latest_job(db, version_id);
			reg_db_rollback(db);
			if (strcmp(existing_digest, facts->digest) == 0)
				return respond_accepted(req, MHD_HTTP_OK, job, "unchanged", facts->digest);
			return reg_respond_problem(req, MHD_HTTP_CONFLICT, "version_exists",
						   "Version already exists",
						   "%s@%s was published with manifest sha256:%s; versions are"
						   " immutable, so publish the new manifest (sha256:%s) under a"
						   " new version", slug, version, existing_digest, facts->digest);
		}
	}
	int deleted = load_deleted_version(db, slug, version, existing_digest);
	if (deleted < 0)
		goto catalog_error;
	if (deleted) {
		reg_db_rollback(db);
		return reg_respond_problem(req, MHD_HTTP_CONFLICT, "version_deleted",
					   "Version was deleted", "%s@%s was deleted (its manifest was"
					   " sha256:%s) and its manifest URL may still be cached as"
					   " immutable, so the name cannot be used again; publish under"
					   " a new version", slug, version, existing_digest);
	}

	if (facts->manifest) {
		missing = missing_blobs(db, facts->manifest);
		if (!missing)
			goto catalog_error;
		if (json_array_size(missing) > 0) {
			reg_db_rollback(db);
			return respond_missing(req, missing);
		}
		json_decref(missing);
	}

	if (pack.id < 0 && (pack.id = insert_pack(db, req, facts->manifest)) < 0)
		goto catalog_error;
	if (insert_version(db, req, pack.id, facts, &version_id) != 0)
		goto catalog_error;
	if (facts->manifest) {
		if (reg_version_link_blobs(db, version_id, facts->manifest) != 0 ||
		    (job_id = insert_job(db, version_id)) < 0 ||
		    reg_db_append_event(db, "publish", slug, version, facts->digest) != SQLITE_OK)
			goto catalog_error;
	} else if (reg_db_append_event(db, "publish", slug, version, facts->digest) != SQLITE_OK ||
		   reg_db_append_event(db, "verify", slug, version, "failed") != SQLITE_OK) {
		goto catalog_error;
	}
	if (reg_db_commit(db) != SQLITE_OK)
		return reg_respond_catalog_error(req);

	if (!facts->manifest) {
		REG_LOG(REG_LOG_INFO, "req", req->id, "recorded %s@%s as failed: %s", slug, version,
			facts->failure);
		return reg_respond_problem(req, MHD_HTTP_UNPROCESSABLE_CONTENT, "manifest_invalid",
					   "Manifest failed the structure check",
					   "%s@%s is recorded as failed and will never be served as verified:"
					   " %s", slug, version, facts->failure);
	}
	REG_LOG(REG_LOG_INFO, "req", req->id, "published %s@%s (manifest %s), verify job %" PRId64,
		slug, version, facts->digest, job_id);
	reg_workers_notify();
	return respond_accepted(req, MHD_HTTP_ACCEPTED, job_id, "pending", facts->digest);

catalog_error:
	json_decref(missing);
	reg_db_rollback(db);
	return reg_respond_catalog_error(req);
}

enum MHD_Result reg_version_put(reg_request *req)
{
	struct manifest_facts facts = { 0 };
	uc_manifest *manifest = NULL;
	uc_error err;
	uint8_t digest[UC_SHA256_BYTES];

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	if (!req->body || req->body_len == 0)
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "manifest_missing",
					   "Manifest missing", "the request body must be the manifest.json"
					   " of the pack, byte for byte");

	/* A body that is not JSON at all is a client mistake: nothing is recorded. */
	json_error_t json_err;
	json_t *probe = json_loadb(req->body, req->body_len, 0, &json_err);
	if (!probe || !json_is_object(probe)) {
		json_decref(probe);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "manifest_not_json",
					   "Manifest is not a JSON object",
					   "the body is not a JSON object (line %d, column %d: %s); send the"
					   " pack's manifest.json", json_err.line, json_err.column,
					   probe ? "not an object" : json_err.text);
	}
	json_decref(probe);

	uc_sha256_buffer(req->body, req->body_len, digest);
	uc_sha256_to_hex(digest, facts.digest);
	if (uc_manifest_parse(req->body, req->body_len, &manifest, &err) != UC_OK) {
		if (err.status == UC_ERR_NOMEM)
			return MHD_NO;
		facts.failure = err.message;
	} else {
		facts.manifest = manifest;
		for (size_t i = 0; i < uc_manifest_shard_count(manifest); i++)
			facts.total_bytes += uc_manifest_shard_at(manifest, i)->size;
	}

	sqlite3 *db = reg_db_thread();
	enum MHD_Result result = db ? publish(req, db, &facts) : reg_respond_catalog_error(req);
	uc_manifest_free(manifest);
	return result;
}

/* Records the tombstone that keeps the deleted version's name from being published again.
 * Returns 0, or -1 after logging. */
static int insert_deleted_version(sqlite3 *db, reg_request *req, const char *digest)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT OR REPLACE INTO deleted_versions (slug, version, manifest_digest, deleted_at,"
		" deleted_by) VALUES (?, ?, ?, ?, ?)");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_text(stmt, 1, req->segments[2], -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, req->segments[4], -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, digest, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, reg_now());
		sqlite3_bind_int64(stmt, 5, req->token_id);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot record deleted version %s@%s: %s",
			req->segments[2], req->segments[4], sqlite3_errmsg(db));
		return -1;
	}
	return 0;
}

enum MHD_Result reg_version_delete(reg_request *req)
{
	static const char *const statements[] = {
		"DELETE FROM evaluations WHERE version_id = ?1",
		"DELETE FROM version_blobs WHERE version_id = ?1",
		"DELETE FROM jobs WHERE version_id = ?1",
		"DELETE FROM versions WHERE id = ?1",
	};
	const char *slug = req->segments[2], *version = req->segments[4];
	struct pack_row pack;
	char digest[UC_SHA256_HEX_CHARS + 1];
	int64_t version_id;

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	sqlite3 *db = reg_db_thread();
	if (!db || reg_db_begin_write(db) != SQLITE_OK)
		return reg_respond_catalog_error(req);
	int found = load_pack(db, slug, &pack) == 0 && pack.id >= 0
		? load_version(db, pack.id, version, &version_id, digest) : 0;
	if (found <= 0) {
		reg_db_rollback(db);
		if (found < 0)
			return reg_respond_catalog_error(req);
		return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "version_not_found",
					   "Version not found", "no version '%s' of pack '%s'", version, slug);
	}
	for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
		sqlite3_stmt *stmt = reg_db_prepare(db, statements[i]);
		int rc = SQLITE_ERROR;
		if (stmt) {
			sqlite3_bind_int64(stmt, 1, version_id);
			rc = sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		if (rc != SQLITE_DONE) {
			REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot delete %s@%s: %s", slug, version,
				sqlite3_errmsg(db));
			reg_db_rollback(db);
			return reg_respond_catalog_error(req);
		}
	}
	if (insert_deleted_version(db, req, digest) != 0 ||
	    reg_db_append_event(db, "delete", slug, version, digest) != SQLITE_OK ||
	    reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		return reg_respond_catalog_error(req);
	}
	/* NOTE: shard blobs stay in the store, since other versions may share them. */
	REG_LOG(REG_LOG_INFO, "req", req->id, "deleted %s@%s (manifest %s) by admin token %" PRId64,
		slug, version, digest, req->token_id);
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:s, s:s, s:b}", "slug", slug,
							   "version", version, "deleted", 1));
}
