/* Content-addressed blob store: DATA/blobs/sha256/<hex>. A blob becomes visible (file and
 * catalog row) only after its bytes were hashed, matched the digest in its URL, were
 * fsynced and renamed into place. */
#ifndef REG_BLOBS_H
#define REG_BLOBS_H

#include <stdint.h>

#include "http.h"
#include "uc_hash.h"

/* PUT /api/blobs/sha256/{hex}: streaming sink and handler. */
int reg_blob_open_sink(reg_request *req);
enum MHD_Result reg_blob_put(reg_request *req);

/* GET and HEAD /api/blobs/sha256/{hex}, with ETag, Range and immutable caching. */
enum MHD_Result reg_blob_get(reg_request *req);

/* Streaming writer into a temporary file in DATA/tmp that hashes while writing. */
typedef struct reg_blob_writer reg_blob_writer;

/* Creates the temporary file. Returns NULL after logging. The caller ends the writer with
 * reg_blob_writer_commit or reg_blob_writer_discard, which free it. */
reg_blob_writer *reg_blob_writer_new(uint64_t request_id);
int reg_blob_writer_write(reg_blob_writer *w, const void *data, size_t len);
uint64_t reg_blob_writer_size(const reg_blob_writer *w);

/* Result of reg_blob_writer_commit. */
typedef enum {
	REG_COMMIT_OK,
	REG_COMMIT_MISMATCH, /* the bytes hash to `actual_hex`, not the expected digest */
	REG_COMMIT_IO,       /* fsync, rename or the catalog failed (logged) */
} reg_commit_result;

/* Fsyncs, compares the digest with `expected_hex`, renames into the store and inserts the
 * catalog row. Frees the writer; on any failure the temporary file is removed. */
reg_commit_result reg_blob_writer_commit(reg_blob_writer *w, const char *expected_hex,
					 int64_t token_id, char actual_hex[UC_SHA256_HEX_CHARS + 1]);
void reg_blob_writer_discard(reg_blob_writer *w);

/* Moves the complete, digest-checked file at `path` (open as `fd`) into the store: fsync,
 * rename to DATA/blobs/sha256/<hex>, fsync the directory, insert the catalog row. Returns 0;
 * -1 when the file was not moved; 1 when it was moved but the catalog row failed. Logs
 * every failure. */
int reg_blob_install(const char *path, int fd, const char *hex, uint64_t size, int64_t token_id,
		     uint64_t request_id);

/* Returns 1 and the size when a blob row exists, 0 when not, -1 on a catalog error. */
int reg_blob_lookup(const char *hex, uint64_t *size);

/* Returns 1 when `hex` is exactly 64 lower-case hex digits. */
int reg_digest_valid(const char *hex);

#endif
