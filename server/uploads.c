#include "config.h"

#include "uploads.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "blobs.h"
#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"

#define UPLOAD_ID_BYTES 16
#define UPLOAD_ID_CHARS (2 * UPLOAD_ID_BYTES)

/* An open chunk: the file, where the chunk starts and how much of it was written. */
struct chunk {
	int fd;
	uint64_t start;
	uint64_t length;  /* declared by Content-Range */
	uint64_t written;
};

static int upload_id_valid(const char *id)
{
	if (strlen(id) != UPLOAD_ID_CHARS)
		return 0;
	for (const char *p = id; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	}
	return 1;
}

static void upload_path(const char *id, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", reg_state.upload_dir, id);
}

/* Loads the upload named by the route. Uploads of other tokens are reported as not found,
 * unless the token is an admin. Returns 0 with the received count, or -1 after queueing. */
static int load_upload(reg_request *req, uint64_t *received)
{
	const char *id = req->segments[2];
	if (!upload_id_valid(id)) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_upload_id", "Invalid upload id",
				    "'%.80s' is not an upload id; POST /api/uploads returns one", id);
		return -1;
	}
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db,
		"SELECT received, token_id FROM uploads WHERE id = ?") : NULL;
	if (!stmt) {
		reg_respond_catalog_error(req);
		return -1;
	}
	sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
	int found = sqlite3_step(stmt) == SQLITE_ROW &&
		    (req->token_admin || sqlite3_column_int64(stmt, 1) == req->token_id);
	if (found)
		*received = (uint64_t)sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (!found) {
		reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "upload_not_found", "Upload not found",
				    "no upload %s for this token; start one with POST /api/uploads", id);
		return -1;
	}
	return 0;
}

static enum MHD_Result respond_upload(reg_request *req, unsigned status, const char *id,
				      uint64_t received)
{
	char url[64], range[48];
	snprintf(url, sizeof url, "/api/uploads/%s", id);
	json_t *body = json_pack("{s:s, s:s, s:I}", "id", id, "url", url, "received",
				 (json_int_t)received);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct MHD_Response *r = text ? MHD_create_response_from_buffer(strlen(text), text,
									MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, url);
	/* Range shows a resuming client which bytes are already stored. */
	if (received) {
		snprintf(range, sizeof range, "bytes=0-%" PRIu64, received - 1);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RANGE, range);
	}
	return reg_respond(req, status, r);
}

enum MHD_Result reg_upload_create(reg_request *req)
{
	uint8_t random[UPLOAD_ID_BYTES];
	char id[UPLOAD_ID_CHARS + 1], path[REG_PATH_MAX];

	if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random)
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "no random bytes for an upload id");
	for (size_t i = 0; i < sizeof random; i++)
		snprintf(id + 2 * i, 3, "%02x", random[i]);
	upload_path(id, path, sizeof path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd < 0) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot create %s: %s", path, strerror(errno));
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "the upload could not be created; see the"
					   " server log");
	}
	close(fd);

	sqlite3 *db = reg_db_thread();
	int64_t now = reg_now();
	sqlite3_stmt *stmt = NULL;
	int rc = SQLITE_ERROR;
	if (db && reg_db_begin_write(db) == SQLITE_OK) {
		stmt = reg_db_prepare(db, "INSERT INTO uploads (id, token_id, received, created_at,"
					  " updated_at) VALUES (?, ?, 0, ?, ?)");
		if (stmt) {
			sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 2, req->token_id);
			sqlite3_bind_int64(stmt, 3, now);
			sqlite3_bind_int64(stmt, 4, now);
			rc = sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
			reg_db_rollback(db);
			rc = SQLITE_ERROR;
		}
	}
	if (rc != SQLITE_DONE) {
		unlink(path);
		return reg_respond_catalog_error(req);
	}
	REG_LOG(REG_LOG_INFO, "req", req->id, "upload %s started for token %" PRId64, id, req->token_id);
	return respond_upload(req, MHD_HTTP_CREATED, id, 0);
}

/* Parses "bytes START-END/TOTAL" or "bytes START-END/\*". Returns 0, or -1. */
static int parse_content_range(const char *text, uint64_t *start, uint64_t *end)
{
	unsigned long long a, b;
	int used = 0;
	if (!text || sscanf(text, "bytes %llu-%llu/%n", &a, &b, &used) != 2 || used == 0 || b < a)
		return -1;
	const char *total = text + used;
	if (strcmp(total, "*") != 0) {
		char *stop;
		unsigned long long t = strtoull(total, &stop, 10);
		if (*stop != '\0' || total[0] < '0' || total[0] > '9' || t <= b)
			return -1;
	}
	*start = a;
	*end = b;
	return 0;
}

static int chunk_write(reg_request *req, const char *data, size_t len)
{
	struct chunk *c = req->sink.state;
	if (c->written + len > c->length) {
		REG_LOG(REG_LOG_WARN, "req", req->id, "chunk body longer than its Content-Range");
		return -1;
	}
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(c->fd, data + done, len - done, (off_t)(c->start + c->written + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot write upload %s: %s",
				req->segments[2], strerror(errno));
			return -1;
		}
		done += (size_t)n;
	}
	c->written += len;
	return 0;
}

static void chunk_abort(reg_request *req)
{
	struct chunk *c = req->sink.state;
	if (!c)
		return;
	/* Bytes past the stored count are cut off when the next chunk opens the file. */
	close(c->fd);
	free(c);
	req->sink.state = NULL;
}

int reg_upload_open_chunk(reg_request *req)
{
	uint64_t received, start, end;
	char path[REG_PATH_MAX];
	const char *range = reg_header(req, MHD_HTTP_HEADER_CONTENT_RANGE);

	if (load_upload(req, &received) != 0)
		return -1;
	if (parse_content_range(range, &start, &end) != 0) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_content_range",
				    "Invalid Content-Range", "Content-Range '%.80s' is missing or invalid;"
				    " send 'bytes START-END/*' for the chunk", range ? range : "");
		return -1;
	}
	uint64_t length = end - start + 1;
	if (start != received) {
		reg_respond_problem(req, MHD_HTTP_RANGE_NOT_SATISFIABLE, "upload_offset_mismatch",
				    "Chunk out of order", "the chunk starts at byte %" PRIu64 " but upload"
				    " %s has %" PRIu64 " bytes; send the chunk that starts at %" PRIu64,
				    start, req->segments[2], received, received);
		return -1;
	}
	if (req->content_length != UINT64_MAX && req->content_length != length) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_content_range",
				    "Invalid Content-Range", "Content-Range covers %" PRIu64 " bytes but"
				    " Content-Length is %" PRIu64, length, req->content_length);
		return -1;
	}
	if (end >= reg_state.settings.max_blob_size) {
		reg_respond_problem(req, MHD_HTTP_CONTENT_TOO_LARGE, "blob_too_large", "Blob too large",
				    "the upload would exceed this registry's limit of %" PRIu64 " bytes"
				    " (--max-blob-size)", reg_state.settings.max_blob_size);
		return -1;
	}

	upload_path(req->segments[2], path, sizeof path);
	struct chunk *c = calloc(1, sizeof *c);
	int fd = c ? open(path, O_WRONLY | O_CLOEXEC) : -1;
	if (fd < 0 || ftruncate(fd, (off_t)received) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot open upload file %s: %s", path,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		free(c);
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
				    "Storage error", "the upload file cannot be written; see the server log");
		return -1;
	}
	c->fd = fd;
	c->start = start;
	c->length = length;
	req->sink.state = c;
	req->sink.write = chunk_write;
	req->sink.abort = chunk_abort;
	return 0;
}

enum MHD_Result reg_upload_chunk(reg_request *req)
{
	struct chunk *c = req->sink.state;
	uint64_t start = c->start, written = c->written, length = c->length;
	uint64_t received = start + written;

	if (written != length) {
		chunk_abort(req);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_content_range",
					   "Invalid Content-Range", "the body has %" PRIu64 " bytes but"
					   " Content-Range announced %" PRIu64, written, length);
	}
	/* The data must be on disk before the catalog counts it. */
	int synced = fsync(c->fd) == 0;
	chunk_abort(req);
	if (!synced)
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "fsync of the upload failed; resend the chunk");

	sqlite3 *db = reg_db_thread();
	int rc = SQLITE_ERROR;
	if (db && reg_db_begin_write(db) == SQLITE_OK) {
		sqlite3_stmt *stmt = reg_db_prepare(db,
			"UPDATE uploads SET received = ?, updated_at = ? WHERE id = ? AND received = ?");
		if (stmt) {
			sqlite3_bind_int64(stmt, 1, (sqlite3_int64)received);
			sqlite3_bind_int64(stmt, 2, reg_now());
			sqlite3_bind_text(stmt, 3, req->segments[2], -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 4, (sqlite3_int64)start);
			rc = sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		int changed = sqlite3_changes(db);
		if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
			reg_db_rollback(db);
			rc = SQLITE_ERROR;
		} else if (changed == 0) {
			/* Another chunk for the same offset was stored first. */
			return reg_respond_problem(req, MHD_HTTP_CONFLICT, "upload_offset_mismatch",
						   "Chunk out of order", "upload %s moved on while this"
						   " chunk was sent; ask GET /api/uploads/%s for the offset",
						   req->segments[2], req->segments[2]);
		}
	}
	if (rc != SQLITE_DONE)
		return reg_respond_catalog_error(req);
	return respond_upload(req, MHD_HTTP_ACCEPTED, req->segments[2], received);
}

enum MHD_Result reg_upload_get(reg_request *req)
{
	uint64_t received;
	if (load_upload(req, &received) != 0)
		return MHD_YES;
	return respond_upload(req, MHD_HTTP_OK, req->segments[2], received);
}

static void delete_upload(const char *id)
{
	sqlite3 *db = reg_db_thread();
	if (db && reg_db_begin_write(db) == SQLITE_OK) {
		sqlite3_stmt *stmt = reg_db_prepare(db, "DELETE FROM uploads WHERE id = ?");
		if (stmt) {
			sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
			sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		if (reg_db_commit(db) != SQLITE_OK)
			reg_db_rollback(db);
	}
}

enum MHD_Result reg_upload_finish(reg_request *req)
{
	const char *id = req->segments[2];
	const char *digest_arg = reg_query(req, "digest");
	uint64_t received, size;
	uint8_t digest[UC_SHA256_BYTES];
	char path[REG_PATH_MAX], actual[UC_SHA256_HEX_CHARS + 1];
	uc_error err;

	if (load_upload(req, &received) != 0)
		return MHD_YES;
	if (!digest_arg || strncmp(digest_arg, "sha256:", 7) != 0 || !reg_digest_valid(digest_arg + 7))
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_digest", "Invalid digest",
					   "digest='%.100s' is invalid; send ?digest=sha256:HEX with 64"
					   " lower-case hex digits", digest_arg ? digest_arg : "");
	const char *expected = digest_arg + 7;

	/* Hash exactly the counted bytes, because anything past them is an unfinished chunk.
	 * NOTE: the whole file is hashed here, in the request thread, so finishing a large
	 * upload blocks one HTTP thread for the time it takes to read it. */
	upload_path(id, path, sizeof path);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)received) != 0 ||
	    uc_sha256_file(path, digest, &size, &err) != UC_OK) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot read upload %s: %s", path,
			fd < 0 ? strerror(errno) : err.message);
		if (fd >= 0)
			close(fd);
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "upload %s cannot be read; see the server log", id);
	}
	uc_sha256_to_hex(digest, actual);
	if (strcmp(actual, expected) != 0) {
		close(fd);
		unlink(path);
		delete_upload(id);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "digest_mismatch", "Digest mismatch",
					   "the %" PRIu64 " bytes of upload %s hash to sha256:%s, not"
					   " sha256:%s; the upload was discarded, so start again",
					   size, id, actual, expected);
	}
	int rc = reg_blob_install(path, fd, actual, size, req->token_id, req->id);
	close(fd);
	if (rc != 0) {
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "upload %s could not be stored; see the"
					   " server log", id);
	}
	delete_upload(id);
	REG_LOG(REG_LOG_INFO, "req", req->id, "upload %s stored as blob %s (%" PRIu64 " bytes)", id,
		actual, size);
	char location[128];
	snprintf(location, sizeof location, "/api/blobs/sha256/%s", actual);
	json_t *body = json_pack("{s:s, s:I, s:b, s:s}", "digest", actual, "size", (json_int_t)size,
				 "created", 1, "url", location);
	return reg_respond_json(req, MHD_HTTP_CREATED, body);
}
