#include "config.h"

#include "blobs.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "server.h"

#define IMMUTABLE_CACHE "public, max-age=31536000, immutable"

/* Written bytes that the writer lets pile up before it asks the kernel to start writing
 * them to disk. Without the request, Linux starts write-back only when dirty pages pass
 * vm.dirty_background_ratio (10% of memory by default), so the final fsync of a large
 * upload would wait for gigabytes that the disk could have taken while the body arrived. */
#define WRITEBACK_BYTES ((uint64_t)8 << 20)

struct reg_blob_writer {
	int fd;
	char path[REG_PATH_MAX];
	uc_sha256 *hash;
	uint64_t size;
	uint64_t writeback_from; /* first byte not yet handed to write-back */
	uint64_t request_id;
};

int reg_digest_valid(const char *hex)
{
	if (strlen(hex) != UC_SHA256_HEX_CHARS)
		return 0;
	for (const char *p = hex; *p; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	}
	return 1;
}

reg_blob_writer *reg_blob_writer_new(uint64_t request_id)
{
	reg_blob_writer *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	w->request_id = request_id;
	snprintf(w->path, sizeof w->path, "%s/blob-%" PRIu64 "-XXXXXX", reg_state.tmp_dir, request_id);
	w->fd = mkostemp(w->path, O_CLOEXEC);
	w->hash = uc_sha256_new();
	if (w->fd < 0 || !w->hash) {
		REG_LOG(REG_LOG_ERROR, "req", request_id, "cannot create temporary file %s: %s", w->path,
			strerror(errno));
		if (w->fd >= 0) {
			close(w->fd);
			unlink(w->path);
		}
		uc_sha256_free(w->hash);
		free(w);
		return NULL;
	}
	return w;
}

/* Starts write-back of the bytes written since the last call, once there are
 * WRITEBACK_BYTES of them. It does not wait for the disk. */
static void start_writeback(reg_blob_writer *w)
{
	if (w->size - w->writeback_from < WRITEBACK_BYTES)
		return;
	/* Only a hint: fsync in reg_blob_install reports any write error. */
	if (sync_file_range(w->fd, (off_t)w->writeback_from, (off_t)(w->size - w->writeback_from),
			    SYNC_FILE_RANGE_WRITE) != 0)
		REG_LOG(REG_LOG_DEBUG, "req", w->request_id, "sync_file_range on %s failed: %s",
			w->path, strerror(errno));
	w->writeback_from = w->size;
}

int reg_blob_writer_write(reg_blob_writer *w, const void *data, size_t len)
{
	const char *p = data;
	size_t left = len;

	while (left) {
		ssize_t n = write(w->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			REG_LOG(REG_LOG_ERROR, "req", w->request_id, "cannot write %s: %s", w->path,
				strerror(errno));
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	uc_sha256_update(w->hash, data, len);
	w->size += len;
	start_writeback(w);
	return 0;
}

uint64_t reg_blob_writer_size(const reg_blob_writer *w)
{
	return w->size;
}

void reg_blob_writer_discard(reg_blob_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	unlink(w->path);
	uc_sha256_free(w->hash);
	free(w);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

static int insert_blob_row(const char *hex, uint64_t size, int64_t token_id)
{
	sqlite3 *db = reg_db_thread();
	if (!db || reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT OR IGNORE INTO blobs (digest, size, created_at, uploaded_by) VALUES (?, ?, ?, ?)");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 2, (sqlite3_int64)size);
		sqlite3_bind_int64(stmt, 3, reg_now());
		if (token_id >= 0)
			sqlite3_bind_int64(stmt, 4, token_id);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE) {
		REG_ERROR("cannot insert blob %s: %s", hex, sqlite3_errmsg(db));
		reg_db_rollback(db);
		return -1;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
}

int reg_blob_install(const char *path, int fd, const char *hex, uint64_t size, int64_t token_id,
		     uint64_t request_id)
{
	char final_path[REG_PATH_MAX];

	/* fsync happens with no catalog transaction open. */
	if (fsync(fd) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", request_id, "fsync %s failed: %s", path, strerror(errno));
		return -1;
	}
	/* Stored blobs are read-only, so write permission is removed before the blob is
	 * visible. */
	struct stat st;
	if (fstat(fd, &st) != 0 || fchmod(fd, st.st_mode & ~(mode_t)0222) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", request_id, "cannot make %s read-only: %s", path,
			strerror(errno));
		return -1;
	}
	snprintf(final_path, sizeof final_path, "%s/%s", reg_state.blob_dir, hex);
	if (rename(path, final_path) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", request_id, "cannot rename %s to %s: %s", path, final_path,
			strerror(errno));
		return -1;
	}
	if (fsync_dir(reg_state.blob_dir) != 0) {
		REG_LOG(REG_LOG_ERROR, "req", request_id, "fsync of %s failed: %s", reg_state.blob_dir,
			strerror(errno));
		return 1;
	}
	return insert_blob_row(hex, size, token_id) == 0 ? 0 : 1;
}

reg_commit_result reg_blob_writer_commit(reg_blob_writer *w, const char *expected_hex,
					 int64_t token_id, char actual_hex[UC_SHA256_HEX_CHARS + 1])
{
	uint8_t digest[UC_SHA256_BYTES];
	reg_commit_result result = REG_COMMIT_IO;

	uc_sha256_final(w->hash, digest);
	uc_sha256_to_hex(digest, actual_hex);
	if (strcmp(actual_hex, expected_hex) != 0) {
		result = REG_COMMIT_MISMATCH;
	} else {
		int rc = reg_blob_install(w->path, w->fd, actual_hex, w->size, token_id, w->request_id);
		if (rc >= 0)
			w->path[0] = '\0'; /* renamed away */
		if (rc == 0)
			result = REG_COMMIT_OK;
	}
	if (w->path[0])
		unlink(w->path);
	close(w->fd);
	uc_sha256_free(w->hash);
	free(w);
	return result;
}

int reg_blob_lookup(const char *hex, uint64_t *size)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, "SELECT size FROM blobs WHERE digest = ?") : NULL;
	if (!stmt)
		return -1;
	sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
	int rc = sqlite3_step(stmt);
	int found = rc == SQLITE_ROW;
	if (found)
		*size = (uint64_t)sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

/* The blob routes' digest segment: /api/blobs/sha256/{hex}. */
static const char *route_digest(reg_request *req)
{
	return req->segments[3];
}

static enum MHD_Result respond_invalid_digest(reg_request *req)
{
	return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_digest", "Invalid digest",
				   "'%.100s' is not a SHA-256 digest; expected 64 lower-case hex digits",
				   route_digest(req));
}

static void blob_sink_abort(reg_request *req)
{
	reg_blob_writer_discard(req->sink.state);
	req->sink.state = NULL;
}

static int blob_sink_write(reg_request *req, const char *data, size_t len)
{
	reg_blob_writer *w = req->sink.state;
	if (reg_blob_writer_size(w) + len > reg_state.settings.max_blob_size) {
		REG_LOG(REG_LOG_WARN, "req", req->id, "blob body exceeds --max-blob-size %" PRIu64
			"; closing the connection", reg_state.settings.max_blob_size);
		return -1;
	}
	return reg_blob_writer_write(w, data, len);
}

int reg_blob_open_sink(reg_request *req)
{
	const char *hex = route_digest(req);
	uint64_t size;

	if (!reg_digest_valid(hex)) {
		respond_invalid_digest(req);
		return -1;
	}
	if (req->content_length != UINT64_MAX && req->content_length > reg_state.settings.max_blob_size) {
		reg_respond_problem(req, MHD_HTTP_CONTENT_TOO_LARGE, "blob_too_large", "Blob too large",
				    "the blob of %" PRIu64 " bytes exceeds this registry's limit of %" PRIu64
				    " bytes (--max-blob-size)", req->content_length,
				    reg_state.settings.max_blob_size);
		return -1;
	}
	int found = reg_blob_lookup(hex, &size);
	if (found == 1) {
		/* Already stored: respond before the body is sent, so the client can stop. */
		reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:s, s:I, s:b}", "digest", hex, "size",
							   (json_int_t)size, "created", 0));
		return -1;
	}
	reg_blob_writer *w = found == 0 ? reg_blob_writer_new(req->id) : NULL;
	if (!w) {
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error", "Storage error",
				    "the blob store could not accept the upload; see the server log");
		return -1;
	}
	req->sink.state = w;
	req->sink.write = blob_sink_write;
	req->sink.abort = blob_sink_abort;
	return 0;
}

enum MHD_Result reg_blob_put(reg_request *req)
{
	const char *hex = route_digest(req);
	reg_blob_writer *w = req->sink.state;
	char actual[UC_SHA256_HEX_CHARS + 1];
	char location[128];

	req->sink.state = NULL;
	req->sink.abort = NULL;
	uint64_t size = reg_blob_writer_size(w);
	switch (reg_blob_writer_commit(w, hex, req->token_id, actual)) {
	case REG_COMMIT_MISMATCH:
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "digest_mismatch", "Digest mismatch",
					   "the %" PRIu64 " bytes received hash to sha256:%s, not to"
					   " sha256:%s named in the URL; nothing was stored",
					   size, actual, hex);
	case REG_COMMIT_IO:
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "blob sha256:%s could not be stored; see the"
					   " server log", hex);
	case REG_COMMIT_OK:
		break;
	}
	REG_LOG(REG_LOG_INFO, "req", req->id, "stored blob %s (%" PRIu64 " bytes) for token %" PRId64,
		hex, size, req->token_id);
	snprintf(location, sizeof location, "/api/blobs/sha256/%s", hex);
	json_t *body = json_pack("{s:s, s:I, s:b}", "digest", hex, "size", (json_int_t)size,
				 "created", 1);
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	struct MHD_Response *response = text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
			: NULL;
	if (response) {
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
		MHD_add_response_header(response, MHD_HTTP_HEADER_LOCATION, location);
	} else {
		free(text);
	}
	return reg_respond(req, MHD_HTTP_CREATED, response);
}

/* Parses a single "bytes=" range against `size`. Returns 1 with [first, last] set, 0 when
 * the header should be ignored (absent, malformed or several ranges: the whole blob is
 * sent), or -1 when the range cannot be satisfied. */
static int parse_range(const char *header, uint64_t size, uint64_t *first, uint64_t *last)
{
	if (!header || strncmp(header, "bytes=", 6) != 0 || strchr(header, ','))
		return 0;
	const char *p = header + 6;
	char *end;

	if (*p == '-') {
		if (p[1] < '0' || p[1] > '9')
			return 0;
		errno = 0;
		uint64_t suffix = strtoull(p + 1, &end, 10);
		if (*end)
			return 0;
		if (errno == ERANGE)
			suffix = UINT64_MAX; /* a suffix longer than any blob means all of it */
		if (suffix == 0 || size == 0)
			return -1;
		*first = suffix >= size ? 0 : size - suffix;
		*last = size - 1;
		return 1;
	}
	if (*p < '0' || *p > '9')
		return 0;
	/* Positions beyond 2^64 - 1 saturate: a first position past the end cannot be
	 * satisfied (416), and a last position past the end is cut to the blob's end. */
	errno = 0;
	uint64_t a = strtoull(p, &end, 10);
	if (*end != '-')
		return 0;
	if (errno == ERANGE)
		a = UINT64_MAX;
	p = end + 1;
	uint64_t b = size ? size - 1 : 0;
	if (*p) {
		if (*p < '0' || *p > '9')
			return 0;
		errno = 0;
		b = strtoull(p, &end, 10);
		if (*end)
			return 0;
		if (errno == ERANGE)
			b = UINT64_MAX;
		if (b < a)
			return 0;
		if (b >= size)
			b = size - 1;
	}
	if (a >= size)
		return -1;
	*first = a;
	*last = b;
	return 1;
}

static int etag_matches(const char *header, const char *etag)
{
	if (!header)
		return 0;
	if (strcmp(header, "*") == 0)
		return 1;
	return strstr(header, etag) != NULL;
}

enum MHD_Result reg_blob_get(reg_request *req)
{
	const char *hex = route_digest(req);
	char etag[UC_SHA256_HEX_CHARS + 3], path[REG_PATH_MAX], header[96];
	uint64_t size, first = 0, last = 0;

	if (!reg_digest_valid(hex))
		return respond_invalid_digest(req);
	int found = reg_blob_lookup(hex, &size);
	if (found < 0)
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "catalog_error",
					   "Catalog error", "the catalog could not be read; see the server log");
	if (found == 0)
		return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "blob_not_found", "Blob not found",
					   "no blob sha256:%s in this registry", hex);

	snprintf(etag, sizeof etag, "\"%s\"", hex);
	if (etag_matches(reg_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH), etag)) {
		struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"",
									 MHD_RESPMEM_PERSISTENT);
		if (r) {
			MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
			MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, IMMUTABLE_CACHE);
		}
		return reg_respond(req, MHD_HTTP_NOT_MODIFIED, r);
	}

	snprintf(path, sizeof path, "%s/%s", reg_state.blob_dir, hex);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "blob %s is in the catalog but %s is %s", hex, path,
			fd < 0 ? strerror(errno) : "of the wrong size");
		if (fd >= 0)
			close(fd);
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "storage_error",
					   "Storage error", "blob sha256:%s cannot be read; see the server log",
					   hex);
	}

	/* If-Range with another validator means the client's copy changed: send it all. */
	const char *if_range = reg_header(req, MHD_HTTP_HEADER_IF_RANGE);
	int range = 0;
	if (!if_range || strcmp(if_range, etag) == 0)
		range = parse_range(reg_header(req, MHD_HTTP_HEADER_RANGE), size, &first, &last);
	if (range < 0) {
		close(fd);
		struct MHD_Response *r = reg_problem_response(
			req, MHD_HTTP_RANGE_NOT_SATISFIABLE, "range_not_satisfiable",
			"Range not satisfiable", "the range '%.100s' starts at or past the end of blob"
			" sha256:%s of %" PRIu64 " bytes; request a range below %" PRIu64,
			reg_header(req, MHD_HTTP_HEADER_RANGE), hex, size, size);
		snprintf(header, sizeof header, "bytes */%" PRIu64, size);
		if (r)
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, header);
		return reg_respond(req, MHD_HTTP_RANGE_NOT_SATISFIABLE, r);
	}
	if (range == 0) {
		first = 0;
		last = size ? size - 1 : 0;
	}
	uint64_t length = size ? last - first + 1 : 0;

	/* The 64-bit variant keeps offsets and lengths above 4 GiB exact; MHD takes the fd. */
	struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(length, fd, first);
	if (!r) {
		close(fd);
		return reg_respond(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, IMMUTABLE_CACHE);
	MHD_add_response_header(r, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
	if (range == 1) {
		snprintf(header, sizeof header, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, first, last, size);
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_RANGE, header);
	}
	atomic_fetch_add(&reg_state.bytes_sent, length);
	return reg_respond(req, range == 1 ? MHD_HTTP_PARTIAL_CONTENT : MHD_HTTP_OK, r);
}
