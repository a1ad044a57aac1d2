#include "config.h"

#include "uploads.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "blobs.h"
#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"

#define UPLOAD_ID_BYTES 16
#define UPLOAD_ID_CHARS (2 * UPLOAD_ID_BYTES)

/* An open chunk. Its body goes into a temporary file of its own, so a chunk that loses a race
 * or is cut off never touches the upload file. Only an accepted chunk is copied there. */
struct chunk {
	int fd;
	char path[REG_PATH_MAX];
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

/* Inserts the row of a new upload unless the token already has --max-open-uploads open.
 * The count and the insert share one write transaction, so parallel requests cannot pass the
 * limit. Returns 0, 1 when the limit was reached, or -1 on a catalog error. */
static int insert_upload_row(const char *id, int64_t token_id)
{
	sqlite3 *db = reg_db_thread();
	int64_t now = reg_now();
	int rc = -1;

	if (!db || reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT count(*) FROM uploads WHERE token_id = ?");
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, token_id);
		if (sqlite3_step(stmt) == SQLITE_ROW)
			rc = sqlite3_column_int64(stmt, 0) >= reg_state.settings.max_open_uploads;
		sqlite3_finalize(stmt);
	}
	stmt = rc == 0 ? reg_db_prepare(db, "INSERT INTO uploads (id, token_id, received, created_at,"
					   " updated_at) VALUES (?, ?, 0, ?, ?)") : NULL;
	if (stmt) {
		sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, token_id);
		sqlite3_bind_int64(stmt, 3, now);
		sqlite3_bind_int64(stmt, 4, now);
		if (sqlite3_step(stmt) != SQLITE_DONE)
			rc = -1;
		sqlite3_finalize(stmt);
	} else if (rc == 0) {
		rc = -1;
	}
	if (rc != 0 || reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		return rc == 0 ? -1 : rc;
	}
	return 0;
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

	int rc = insert_upload_row(id, req->token_id);
	if (rc != 0)
		unlink(path);
	if (rc > 0) {
		REG_LOG(REG_LOG_WARN, "req", req->id, "token %" PRId64 " has %u open uploads;"
			" rejected another", req->token_id, reg_state.settings.max_open_uploads);
		return reg_respond_problem(req, MHD_HTTP_TOO_MANY_REQUESTS, "too_many_uploads",
					   "Too many open uploads", "this token already has %u open"
					   " uploads, the limit (--max-open-uploads); finish one, or wait"
					   " until unused ones expire after %u seconds",
					   reg_state.settings.max_open_uploads,
					   reg_state.settings.upload_expiry);
	}
	if (rc < 0)
		return reg_respond_catalog_error(req);
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
		ssize_t n = write(c->fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot write %s for upload %s: %s",
				c->path, req->segments[2], strerror(errno));
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
	close(c->fd);
	unlink(c->path);
	free(c);
	req->sink.state = NULL;
}

/* Opens the upload file of `id` and takes its exclusive lock. Every write to an upload file,
 * the move out of DATA/uploads at finish and the removal of an expired upload happen under
 * this lock, and each re-reads the catalog row after taking it. Returns the descriptor;
 * -1 with errno ENOENT when the file is gone because the upload was finished or removed. */
static int lock_upload_file(const char *id)
{
	char path[REG_PATH_MAX];
	upload_path(id, path, sizeof path);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
	}
	return fd;
}

/* Reads the received count of upload `id`. Returns 1 and the count, 0 when no row exists
 * (the upload was finished or removed) or -1 on a catalog error. */
static int read_received(const char *id, uint64_t *received)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, "SELECT received FROM uploads WHERE id = ?")
				: NULL;
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW)
		*received = (uint64_t)sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : -1;
}

static enum MHD_Result respond_upload_gone(reg_request *req, const char *id)
{
	return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "upload_not_found", "Upload not found",
				   "upload %s was finished or removed while this request ran; start"
				   " a new one with POST /api/uploads", id);
}

int reg_upload_open_chunk(reg_request *req)
{
	uint64_t received, start, end;
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

	struct chunk *c = calloc(1, sizeof *c);
	if (c) {
		snprintf(c->path, sizeof c->path, "%s/chunk-%" PRIu64 "-XXXXXX", reg_state.tmp_dir,
			 req->id);
		c->fd = mkostemp(c->path, O_CLOEXEC);
	}
	if (!c || c->fd < 0) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot create a chunk file for upload %s: %s",
			req->segments[2], c ? strerror(errno) : "out of memory");
		free(c);
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
				    "Storage error", "the chunk cannot be stored; see the server log");
		return -1;
	}
	c->start = start;
	c->length = length;
	req->sink.state = c;
	req->sink.write = chunk_write;
	req->sink.abort = chunk_abort;
	return 0;
}

/* Copies the chunk file to `upload_fd` at the chunk's start and fsyncs it. Returns 0, or -1
 * after logging. */
static int copy_chunk(reg_request *req, const struct chunk *c, int upload_fd)
{
	char buf[1 << 16];
	uint64_t done = 0;

	errno = 0;
	if (ftruncate(upload_fd, (off_t)c->start) != 0)
		goto fail;
	while (done < c->length) {
		ssize_t n = pread(c->fd, buf, sizeof buf, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		for (ssize_t put = 0; put < n;) {
			ssize_t m = pwrite(upload_fd, buf + put, (size_t)(n - put),
					   (off_t)(c->start + done + (uint64_t)put));
			if (m < 0 && errno == EINTR)
				continue;
			if (m <= 0)
				goto fail;
			put += m;
		}
		done += (uint64_t)n;
	}
	/* The data must be on disk before the catalog counts it. */
	if (fsync(upload_fd) != 0)
		goto fail;
	return 0;
fail:
	REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot append %s to upload %s: %s", c->path,
		req->segments[2], errno ? strerror(errno) : "chunk file shorter than its body");
	return -1;
}

static int store_received(const char *id, uint64_t start, uint64_t received)
{
	sqlite3 *db = reg_db_thread();
	int rc = SQLITE_ERROR;
	if (!db || reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"UPDATE uploads SET received = ?, updated_at = ? WHERE id = ? AND received = ?");
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, (sqlite3_int64)received);
		sqlite3_bind_int64(stmt, 2, reg_now());
		sqlite3_bind_text(stmt, 3, id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, (sqlite3_int64)start);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		return -1;
	}
	return 0;
}

enum MHD_Result reg_upload_chunk(reg_request *req)
{
	struct chunk *c = req->sink.state;
	const char *id = req->segments[2];
	uint64_t start = c->start, written = c->written, length = c->length;
	uint64_t received;
	enum MHD_Result result;

	if (written != length) {
		chunk_abort(req);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_content_range",
					   "Invalid Content-Range", "the body has %" PRIu64 " bytes but"
					   " Content-Range announced %" PRIu64, written, length);
	}

	/* The offset was checked when the headers arrived, but another chunk or a finish may
	 * have run while this body was read, so it is checked again under the lock. */
	int fd = lock_upload_file(id);
	if (fd < 0) {
		int gone = errno == ENOENT;
		if (!gone)
			REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot lock upload %s: %s", id,
				strerror(errno));
		chunk_abort(req);
		return gone ? respond_upload_gone(req, id) : reg_respond_problem(req,
			MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error", "Storage error",
			"upload %s cannot be written; see the server log", id);
	}
	int found = read_received(id, &received);
	if (found < 0) {
		result = reg_respond_catalog_error(req);
	} else if (found == 0) {
		result = respond_upload_gone(req, id);
	} else if (received != start) {
		result = reg_respond_problem(req, MHD_HTTP_CONFLICT, "upload_offset_mismatch",
					     "Chunk out of order", "upload %s moved on while this chunk"
					     " was sent; ask GET /api/uploads/%s for the offset", id, id);
	} else if (copy_chunk(req, c, fd) != 0) {
		result = reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					     "Storage error", "the chunk could not be stored; resend it");
	} else if (store_received(id, start, start + length) != 0) {
		result = reg_respond_catalog_error(req);
	} else {
		result = respond_upload(req, MHD_HTTP_ACCEPTED, id, start + length);
	}
	close(fd); /* releases the lock */
	chunk_abort(req);
	return result;
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

/* Takes upload `id` out of DATA/uploads under its lock. It cuts the file to the counted
 * bytes, renames it to `private_path` in DATA/tmp and deletes the catalog row. After that no
 * chunk can write to the file and no second finish can take it. Returns 1 and the byte
 * count, 0 when the upload is gone, or -1 after queueing an error response. */
static int take_upload(reg_request *req, const char *id, char *private_path, size_t size,
		       uint64_t *received)
{
	char path[REG_PATH_MAX];
	int fd = lock_upload_file(id);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot lock upload %s: %s", id, strerror(errno));
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
				    "Storage error", "upload %s cannot be read; see the server log", id);
		return -1;
	}
	int rc = read_received(id, received);
	if (rc < 0)
		reg_respond_catalog_error(req);
	if (rc <= 0)
		goto out;

	upload_path(id, path, sizeof path);
	snprintf(private_path, size, "%s/finish-%s", reg_state.tmp_dir, id);
	if (ftruncate(fd, (off_t)*received) != 0 || rename(path, private_path) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot move upload %s to %s: %s", path,
			private_path, strerror(errno));
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
				    "Storage error", "upload %s cannot be read; see the server log", id);
		rc = -1;
		goto out;
	}
	delete_upload(id);
out:
	close(fd); /* releases the lock */
	return rc;
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

	int taken = take_upload(req, id, path, sizeof path, &received);
	if (taken < 0)
		return MHD_YES;
	if (taken == 0)
		return respond_upload_gone(req, id);

	/* From here the file is private to this request, and the upload is over whatever the
	 * outcome, so every failure removes the file.
	 * NOTE: the whole file is hashed here, in the request thread, so finishing a large
	 * upload blocks one HTTP thread for the time it takes to read it. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || uc_sha256_file(path, digest, &size, &err) != UC_OK) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot read upload %s: %s", path,
			fd < 0 ? strerror(errno) : err.message);
		if (fd >= 0)
			close(fd);
		unlink(path);
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "upload %s cannot be read and was discarded;"
					   " see the server log", id);
	}
	uc_sha256_to_hex(digest, actual);
	if (strcmp(actual, expected) != 0) {
		close(fd);
		unlink(path);
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "digest_mismatch", "Digest mismatch",
					   "the %" PRIu64 " bytes of upload %s hash to sha256:%s, not"
					   " sha256:%s; the upload was discarded, so start again",
					   size, id, actual, expected);
	}
	int rc = reg_blob_install(path, fd, actual, size, req->token_id, req->id);
	close(fd);
	if (rc != 0) {
		if (rc < 0)
			unlink(path);
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "upload %s could not be stored; see the"
					   " server log", id);
	}
	REG_LOG(REG_LOG_INFO, "req", req->id, "upload %s stored as blob %s (%" PRIu64 " bytes)", id,
		actual, size);
	char location[128];
	snprintf(location, sizeof location, "/api/blobs/sha256/%s", actual);
	json_t *body = json_pack("{s:s, s:I, s:b, s:s}", "digest", actual, "size", (json_int_t)size,
				 "created", 1, "url", location);
	return reg_respond_json(req, MHD_HTTP_CREATED, body);
}

/* Removes upload `id` under its lock when its last chunk came before `cutoff`, so a chunk or
 * finish that waits for the lock finds no row. Returns 1 when it was removed. */
static int expire_upload(const char *id, int64_t cutoff)
{
	char path[REG_PATH_MAX];
	int fd = lock_upload_file(id);
	if (fd < 0 && errno != ENOENT) {
		REG_ERROR("cannot lock upload %s for expiry: %s", id, strerror(errno));
		return 0;
	}
	sqlite3 *db = reg_db_thread();
	int removed = 0;
	if (db && reg_db_begin_write(db) == SQLITE_OK) {
		sqlite3_stmt *stmt = reg_db_prepare(db,
			"DELETE FROM uploads WHERE id = ? AND updated_at < ?");
		int rc = SQLITE_ERROR;
		if (stmt) {
			sqlite3_bind_text(stmt, 1, id, -1, SQLITE_STATIC);
			sqlite3_bind_int64(stmt, 2, cutoff);
			rc = sqlite3_step(stmt);
			sqlite3_finalize(stmt);
		}
		removed = rc == SQLITE_DONE && sqlite3_changes(db) > 0;
		if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
			reg_db_rollback(db);
			removed = 0;
		}
	}
	if (removed && fd >= 0) {
		upload_path(id, path, sizeof path);
		unlink(path);
	}
	if (fd >= 0)
		close(fd); /* releases the lock */
	return removed;
}

int reg_uploads_expire(void)
{
	int64_t cutoff = reg_now() - (int64_t)reg_state.settings.upload_expiry;
	char (*ids)[UPLOAD_ID_CHARS + 1] = NULL;
	size_t count = 0, capacity = 0;
	int removed = 0;

	/* The ids are collected first, because expire_upload writes to the catalog. */
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, "SELECT id FROM uploads WHERE updated_at < ?")
				: NULL;
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, cutoff);
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(stmt, 0);
		if (!id || !upload_id_valid(id))
			continue;
		if (count == capacity) {
			size_t grown = capacity ? 2 * capacity : 64;
			void *bigger = realloc(ids, grown * sizeof *ids);
			if (!bigger)
				break;
			ids = bigger;
			capacity = grown;
		}
		memcpy(ids[count++], id, UPLOAD_ID_CHARS + 1);
	}
	sqlite3_finalize(stmt);

	for (size_t i = 0; i < count; i++)
		removed += expire_upload(ids[i], cutoff);
	free(ids);
	if (removed)
		REG_INFO("removed %d uploads that got no chunk for %u seconds", removed,
			 reg_state.settings.upload_expiry);
	return removed;
}

/* Returns 1 when a catalog row for upload `id` exists, 0 when not, -1 on a catalog error. */
static int upload_row_exists(const char *id)
{
	uint64_t received;
	return read_received(id, &received);
}

int reg_uploads_remove_orphans(void)
{
	DIR *dir = opendir(reg_state.upload_dir);
	if (!dir) {
		REG_ERROR("cannot read %s: %s", reg_state.upload_dir, strerror(errno));
		return -1;
	}
	struct dirent *entry;
	unsigned removed = 0;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.')
			continue;
		if (upload_id_valid(entry->d_name) && upload_row_exists(entry->d_name) != 0)
			continue;
		char path[REG_PATH_MAX + 256];
		snprintf(path, sizeof path, "%s/%s", reg_state.upload_dir, entry->d_name);
		if (unlink(path) == 0)
			removed++;
	}
	closedir(dir);
	if (removed)
		REG_INFO("removed %u files without an upload row from %s", removed,
			 reg_state.upload_dir);
	return 0;
}

static pthread_t sweeper;
static int sweeper_started;
static int sweeper_stopping;
static pthread_mutex_t sweeper_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sweeper_wake = PTHREAD_COND_INITIALIZER;

/* Runs an expiry pass every quarter of the expiry time, at least every second and at most
 * every ten minutes, so an upload is removed at most that long after it expired. */
static void *sweeper_main(void *arg)
{
	unsigned interval = reg_state.settings.upload_expiry / 4;
	(void)arg;

	if (interval == 0)
		interval = 1;
	if (interval > 600)
		interval = 600;
	pthread_mutex_lock(&sweeper_lock);
	while (!sweeper_stopping) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += interval;
		while (!sweeper_stopping &&
		       pthread_cond_timedwait(&sweeper_wake, &sweeper_lock, &until) == 0) {
		}
		if (sweeper_stopping)
			break;
		pthread_mutex_unlock(&sweeper_lock);
		reg_uploads_expire();
		pthread_mutex_lock(&sweeper_lock);
	}
	pthread_mutex_unlock(&sweeper_lock);
	return NULL;
}

int reg_uploads_start_sweeper(void)
{
	sweeper_stopping = 0;
	if (pthread_create(&sweeper, NULL, sweeper_main, NULL) != 0) {
		REG_ERROR("cannot start the upload expiry thread");
		return -1;
	}
	sweeper_started = 1;
	return 0;
}

void reg_uploads_stop_sweeper(void)
{
	if (!sweeper_started)
		return;
	pthread_mutex_lock(&sweeper_lock);
	sweeper_stopping = 1;
	pthread_cond_signal(&sweeper_wake);
	pthread_mutex_unlock(&sweeper_lock);
	pthread_join(sweeper, NULL);
	sweeper_started = 0;
}
