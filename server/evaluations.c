/* Evaluations attached to a version (the record format of `uc eval`) and yanks. Only the
 * pack's owner or an admin token may write either. */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blobs.h"
#include "db.h"
#include "evaluations.h"
#include "log.h"
#include "packs.h"

#define RATIO_TOLERANCE 1e-6
#define YANK_REASON_MAX 500 /* characters */
#define UTF8_CHAR_BYTES_MAX 4

/* The version a write targets, with its pack owner, read inside the write transaction. */
struct target {
	int64_t version_id;
	int64_t owner;
	char digest[UC_SHA256_HEX_CHARS + 1];
	int yanked;
	/* The stored reason when already yanked. */
	char yank_reason[YANK_REASON_MAX * UTF8_CHAR_BYTES_MAX + 1];
};

/* Loads the target and checks ownership. Queues 404 or 403 and returns -1 on failure;
 * the caller rolls back. */
static int load_target(reg_request *req, sqlite3 *db, struct target *t)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT v.id, p.owner_token_id, v.manifest_digest, v.yanked_at IS NOT NULL, v.yank_reason"
		" FROM versions v"
		" JOIN packs p ON p.id = v.pack_id WHERE p.slug = ? AND v.version = ?");
	if (!stmt) {
		reg_respond_catalog_error(req);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, req->segments[2], -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, req->segments[4], -1, SQLITE_STATIC);
	int found = sqlite3_step(stmt) == SQLITE_ROW;
	if (found) {
		t->version_id = sqlite3_column_int64(stmt, 0);
		t->owner = sqlite3_column_int64(stmt, 1);
		snprintf(t->digest, sizeof t->digest, "%s", sqlite3_column_text(stmt, 2));
		t->yanked = sqlite3_column_int(stmt, 3);
		const unsigned char *stored = sqlite3_column_text(stmt, 4);
		snprintf(t->yank_reason, sizeof t->yank_reason, "%s", stored ? (const char *)stored : "");
	}
	sqlite3_finalize(stmt);
	if (!found) {
		reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "version_not_found", "Version not found",
				    "no version '%s' of pack '%s'", req->segments[4], req->segments[2]);
		return -1;
	}
	if (t->owner != req->token_id && !req->token_admin) {
		reg_respond_problem(req, MHD_HTTP_FORBIDDEN, "not_owner", "Not the pack owner",
				    "pack '%s' belongs to another token; use its owner's token or an"
				    " admin token", req->segments[2]);
		return -1;
	}
	return 0;
}

static json_t *parse_body(reg_request *req)
{
	json_error_t err;
	json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, &err) : NULL;
	if (!body || !json_is_object(body)) {
		json_decref(body);
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "body_not_json", "Body is not a JSON object",
				    "the request body must be a JSON object%s%s", body ? "" : ": ",
				    body ? "" : (req->body ? err.text : "an empty body was sent"));
		return NULL;
	}
	return body;
}

static int bad_field(char *message, size_t message_size, const char *field, const char *expected)
{
	snprintf(message, message_size, "field '%s' is missing or invalid: expected %s", field,
		 expected);
	return -1;
}

static int positive_number(json_t *value, double *out)
{
	if (!json_is_number(value))
		return 0;
	*out = json_number_value(value);
	return isfinite(*out) && *out > 0;
}

int reg_evaluation_check(json_t *record, char **protocol_key, char *message, size_t message_size)
{
	const char *metric = json_string_value(json_object_get(record, "metric"));
	const char *comparator = json_string_value(json_object_get(record, "comparator"));
	json_t *protocol = json_object_get(record, "protocol");
	double baseline, compressed, ratio;

	if (!metric || (strcmp(metric, "ppl") != 0 && strcmp(metric, "cls_cosine") != 0))
		return bad_field(message, message_size, "metric", "\"ppl\" or \"cls_cosine\"");
	if (!comparator || !reg_comparator_valid(comparator))
		return bad_field(message, message_size, "comparator", "canonical-transformer,"
				 " architecture-compatible or cls-cosine");
	if (!json_is_object(protocol))
		return bad_field(message, message_size, "protocol", "an object");
	const char *corpus = json_string_value(json_object_get(protocol, "corpus"));
	const char *corpus_sha = json_string_value(json_object_get(protocol, "corpus_sha256"));
	json_t *tokens = json_object_get(protocol, "tokens");
	if (!corpus || corpus[0] == '\0')
		return bad_field(message, message_size, "protocol.corpus", "the corpus name");
	if (!corpus_sha || !reg_digest_valid(corpus_sha))
		return bad_field(message, message_size, "protocol.corpus_sha256",
				 "64 lower-case hex digits");
	if (!json_is_integer(tokens) || json_integer_value(tokens) <= 0)
		return bad_field(message, message_size, "protocol.tokens", "a positive integer count");
	if (!json_is_string(json_object_get(protocol, "tokenizer")))
		return bad_field(message, message_size, "protocol.tokenizer", "the tokenizer name");
	json_t *seq_len = json_object_get(protocol, "seq_len");
	if (!(json_is_null(seq_len) || (json_is_integer(seq_len) && json_integer_value(seq_len) > 0)))
		return bad_field(message, message_size, "protocol.seq_len",
				 "a positive integer or null");
	if (!json_is_object(json_object_get(protocol, "windowing")))
		return bad_field(message, message_size, "protocol.windowing", "an object");
	if (!positive_number(json_object_get(record, "baseline"), &baseline))
		return bad_field(message, message_size, "baseline", "a positive finite number");
	if (!positive_number(json_object_get(record, "compressed"), &compressed))
		return bad_field(message, message_size, "compressed", "a positive finite number");
	if (!positive_number(json_object_get(record, "ratio"), &ratio))
		return bad_field(message, message_size, "ratio", "a positive finite number");
	/* With extreme inputs the quotient overflows to inf, and inf - ratio > tol * inf is
	 * false, so a non-finite quotient would pass the check below. */
	double quotient = compressed / baseline;
	if (!isfinite(quotient) || quotient <= 0) {
		snprintf(message, message_size, "compressed / baseline = %.9g / %.9g is not a finite"
			 " positive number; send the measured values", compressed, baseline);
		return -1;
	}
	if (fabs(ratio - quotient) > RATIO_TOLERANCE * quotient) {
		snprintf(message, message_size, "ratio %.9g differs from compressed / baseline ="
			 " %.9g / %.9g = %.9g", ratio, compressed, baseline, compressed / baseline);
		return -1;
	}
	if (!json_is_string(json_object_get(record, "harness")))
		return bad_field(message, message_size, "harness",
				 "the name and version of the measuring harness");

	/* Sorted keys make equal protocols compare equal as text. */
	*protocol_key = json_dumps(protocol, JSON_COMPACT | JSON_SORT_KEYS);
	return *protocol_key ? 0 : -2;
}

int reg_evaluation_pack_matches(json_t *record, const char *digest)
{
	const char *pack_digest = json_string_value(
		json_object_get(json_object_get(record, "pack"), "manifest_sha256"));
	return !pack_digest || strcmp(pack_digest, digest) == 0;
}

/* Runs reg_evaluation_check for a request; queues 400 when the record is invalid. */
static int validate_record(reg_request *req, json_t *record, char **protocol_key)
{
	char message[512];

	int rc = reg_evaluation_check(record, protocol_key, message, sizeof message);
	if (rc == -1)
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_evaluation",
				    "Invalid evaluation record", "%s", message);
	return rc == 0 ? 0 : -1;
}

int reg_evaluation_insert(sqlite3 *db, const reg_evaluation_row *row, json_t *record,
			  const char *protocol_key, int64_t *id)
{
	char *text = json_dumps(record, JSON_COMPACT | JSON_SORT_KEYS);
	sqlite3_stmt *stmt = text ? reg_db_prepare(db,
		"INSERT INTO evaluations (version_id, metric, comparator, protocol_key, baseline,"
		" compressed, ratio, record, created_at, created_by, upstream_id)"
		" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
		: NULL;
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, row->version_id);
		sqlite3_bind_text(stmt, 2, json_string_value(json_object_get(record, "metric")), -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, json_string_value(json_object_get(record, "comparator")), -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(stmt, 4, protocol_key, -1, SQLITE_STATIC);
		sqlite3_bind_double(stmt, 5, json_number_value(json_object_get(record, "baseline")));
		sqlite3_bind_double(stmt, 6, json_number_value(json_object_get(record, "compressed")));
		sqlite3_bind_double(stmt, 7, json_number_value(json_object_get(record, "ratio")));
		sqlite3_bind_text(stmt, 8, text, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 9, row->created_at);
		sqlite3_bind_int64(stmt, 10, row->created_by);
		if (row->upstream_id > 0)
			sqlite3_bind_int64(stmt, 11, row->upstream_id);
		else
			sqlite3_bind_null(stmt, 11);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	free(text);
	if (rc != SQLITE_DONE)
		return -1;
	*id = sqlite3_last_insert_rowid(db);
	return 0;
}

enum MHD_Result reg_evaluation_post(reg_request *req)
{
	struct target t;
	char *protocol_key = NULL;
	int64_t id = -1;
	enum MHD_Result result = MHD_YES;

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	json_t *record = parse_body(req);
	if (!record)
		return MHD_YES;

	sqlite3 *db = reg_db_thread();
	if (!db || reg_db_begin_write(db) != SQLITE_OK) {
		result = reg_respond_catalog_error(req);
		goto out;
	}
	/* Ownership is checked before the record, so a token that may not write here gets
	 * 403 whatever it sent. */
	if (load_target(req, db, &t) != 0 || validate_record(req, record, &protocol_key) != 0) {
		reg_db_rollback(db);
		goto out;
	}
	if (!reg_evaluation_pack_matches(record, t.digest)) {
		const char *pack_digest = json_string_value(
			json_object_get(json_object_get(record, "pack"), "manifest_sha256"));
		reg_db_rollback(db);
		result = reg_respond_problem(req, MHD_HTTP_CONFLICT, "evaluation_pack_mismatch",
					     "Evaluation measured another pack",
					     "the record's pack.manifest_sha256 %s is not this version's"
					     " manifest sha256:%s", pack_digest, t.digest);
		goto out;
	}
	reg_evaluation_row row = {
		.version_id = t.version_id, .created_at = reg_now(), .created_by = req->token_id,
	};
	if (reg_evaluation_insert(db, &row, record, protocol_key, &id) != 0 ||
	    reg_db_append_event(db, "evaluation", req->segments[2], req->segments[4], NULL) != SQLITE_OK ||
	    reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		result = reg_respond_catalog_error(req);
		goto out;
	}
	REG_LOG(REG_LOG_INFO, "req", req->id, "evaluation %" PRId64 " added to %s@%s", id,
		req->segments[2], req->segments[4]);
	json_object_set_new(record, "id", json_integer(id));
	result = reg_respond_json(req, MHD_HTTP_CREATED, json_incref(record));
out:
	free(protocol_key);
	json_decref(record);
	return result;
}

/* Counts the characters of a UTF-8 string (jansson has validated it) by skipping
 * continuation bytes. */
static size_t utf8_char_count(const char *text)
{
	size_t count = 0;

	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if ((*p & 0xC0) != 0x80)
			count++;
	}
	return count;
}

enum MHD_Result reg_version_yank(reg_request *req)
{
	struct target t;

	if (reg_check_names(req, 1) != 0)
		return MHD_YES;
	json_t *body = parse_body(req);
	if (!body)
		return MHD_YES;
	const char *reason = json_string_value(json_object_get(body, "reason"));
	if (!reason || reason[0] == '\0' || utf8_char_count(reason) > YANK_REASON_MAX) {
		json_decref(body);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "yank_reason_missing",
					   "Yank reason missing", "send {\"reason\": \"...\"} with 1 to %d"
					   " characters saying why the version is withdrawn", YANK_REASON_MAX);
	}

	enum MHD_Result result;
	sqlite3 *db = reg_db_thread();
	if (!db || reg_db_begin_write(db) != SQLITE_OK) {
		json_decref(body);
		return reg_respond_catalog_error(req);
	}
	if (load_target(req, db, &t) != 0) {
		reg_db_rollback(db);
		json_decref(body);
		return MHD_YES;
	}
	if (!t.yanked) {
		sqlite3_stmt *stmt = reg_db_prepare(db,
			"UPDATE versions SET yanked_at = ?, yank_reason = ? WHERE id = ?");
		int rc = SQLITE_ERROR;
		if (stmt) {
			sqlite3_bind_int64(stmt, 1, reg_now());
			sqlite3_bind_text(stmt, 2, reason, -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 3, t.version_id);
			rc = sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		if (rc != SQLITE_DONE ||
		    reg_db_append_event(db, "yank", req->segments[2], req->segments[4], reason) != SQLITE_OK ||
		    reg_db_commit(db) != SQLITE_OK) {
			reg_db_rollback(db);
			json_decref(body);
			return reg_respond_catalog_error(req);
		}
		REG_LOG(REG_LOG_INFO, "req", req->id, "yanked %s@%s: %s", req->segments[2],
			req->segments[4], reason);
	} else {
		/* Yanking again changes nothing: the first reason stays. */
		reg_db_rollback(db);
		reason = t.yank_reason;
	}
	result = reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:s, s:s, s:b, s:s}", "slug",
		req->segments[2], "version", req->segments[4], "yanked", 1, "reason", reason));
	json_decref(body);
	return result;
}
