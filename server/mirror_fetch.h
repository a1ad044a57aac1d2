/* HTTP transfers of the mirror follower over libcurl: small in-memory GETs and parallel
 * file downloads with Range resume, all over kept-alive connections to one upstream. */
#ifndef REG_MIRROR_FETCH_H
#define REG_MIRROR_FETCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct reg_fetch reg_fetch;

/* Creates a client for `base_url` (copied, trailing '/' dropped) that runs up to
 * `parallel` file transfers at once. Transfers abort soon after *stop becomes nonzero
 * (`stop` is borrowed). Returns NULL after logging. Free with reg_fetch_free. */
reg_fetch *reg_fetch_new(const char *base_url, unsigned parallel, atomic_int *stop);
void reg_fetch_free(reg_fetch *fetch);

/* GETs base_url+path into a new NUL-terminated buffer (*body, free with free) of at most
 * `limit` bytes. Returns the HTTP status, or -1 with `error` set when no response came or
 * the body was longer than `limit`. *body is set only for status 200. */
long reg_fetch_get(reg_fetch *fetch, const char *path, size_t limit, char **body, size_t *len,
		   char *error, size_t error_size);

/* One file download: GET base_url+path into `file`, which must end up exactly `size`
 * bytes long. Bytes already in `file` are kept and the rest asked for with Range; a 200
 * response to that request rewrites the file from byte 0. The file is hashed while it is
 * written (kept bytes are read and hashed first), so the caller needs no second pass. */
typedef struct {
	const char *path;    /* borrowed */
	const char *file;    /* borrowed */
	uint64_t size;
	uint64_t resumed_from; /* out: bytes kept from an earlier attempt */
	int ok;              /* out: 1 when the file has `size` bytes */
	uint8_t sha256[32];  /* out: SHA-256 of the whole file, set when ok */
	int transient;       /* out: the failure may go away on retry (network, 5xx) */
	char error[256];     /* out: why it failed */
} reg_fetch_item;

/* Called on the calling thread as soon as item `index` has its outcome. */
typedef void (*reg_fetch_done_fn)(void *context, size_t index);

/* Runs every item, up to `parallel` at once. Each item's outcome is in its out fields,
 * and `done` (may be NULL) is called for each item when it ends. */
void reg_fetch_files(reg_fetch *fetch, reg_fetch_item *items, size_t count,
		     reg_fetch_done_fn done, void *context);

#endif
