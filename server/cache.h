/* Response cache for the read-only catalog documents (GET /api/packs, a pack, its
 * versions, a version, /api/stats, /api/changes). An entry is the exact body of a 200
 * response, keyed by the raw request path with its query, and stamped with the catalog
 * generation read before the handler ran (reg_db_generation). When the generation moves,
 * because a write committed, every entry is dropped at the next lookup or store, so a
 * cached body never outlives the catalog state it was built from.
 *
 * Every response of these routes carries a strong ETag (the first 128 bits of the body's
 * SHA-256, in hex) and `Cache-Control: no-cache`, and a matching If-None-Match gets 304.
 *
 * Memory: at most REG_CACHE_MAX_BYTES of bodies, keys and entry records, and at most
 * REG_CACHE_MAX_ENTRIES entries; the least recently used entry is evicted first. A body
 * larger than REG_CACHE_MAX_ENTRY_BYTES is sent with its ETag but not stored. An evicted
 * entry that a response is still sending stays allocated until that response is freed. */
#ifndef REG_CACHE_H
#define REG_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define REG_CACHE_MAX_BYTES ((size_t)16 << 20)
#define REG_CACHE_MAX_ENTRIES 4096
#define REG_CACHE_MAX_ENTRY_BYTES ((size_t)1 << 20)
#define REG_CACHE_MAX_KEY_BYTES 1024

/* Returns 1 when the request is a GET or HEAD of a route whose documents are cached. */
int reg_cache_applies(const reg_request *req);

/* Serves the request from a current entry, with 304 when If-None-Match matches: returns
 * 1 and stores MHD's result in `*result`. Otherwise reads the catalog generation into
 * the request, marks it so reg_cache_respond stores the body the handler builds, and
 * returns 0. */
int reg_cache_serve(reg_request *req, enum MHD_Result *result);

/* Queues a 200 response of `len` bytes of `body` with its ETag, or a 304 when
 * If-None-Match matches. Takes `body` and frees it with free() in every case. The body
 * is also stored when reg_cache_serve marked the request and the generation it read is
 * still current.
 * `content_type` must be a string literal. */
enum MHD_Result reg_cache_respond(reg_request *req, char *body, size_t len,
				  const char *content_type);

/* Counters for /metrics and the tests. */
typedef struct {
	uint64_t hits;
	uint64_t misses;
	uint64_t entries;
	uint64_t bytes;
} reg_cache_stats;

void reg_cache_get_stats(reg_cache_stats *out);

#endif
