#include "config.h"

#include "cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "uc_hash.h"

#define BUCKET_COUNT 4096 /* a power of two, at least REG_CACHE_MAX_ENTRIES */
#define ETAG_DIGEST_BYTES 16
#define ETAG_CHARS (2 * ETAG_DIGEST_BYTES + 2) /* hex digits in double quotes */

/* GET routes whose bodies depend on the catalog only: nothing from the clock, the
 * settings or the daemon's counters. A route added here must keep to that. */
static const char *const cached_patterns[] = {
	"/api/packs",
	"/api/packs/{}",
	"/api/packs/{}/versions",
	"/api/packs/{}/versions/{}",
	"/api/stats",
	"/api/changes",
};

/* One stored body. The table holds one reference and each response sending the body holds
 * another; the last release frees it. Fields other than `refs` and the list links never
 * change after the entry is built. */
typedef struct entry {
	char *key;
	size_t key_len;
	uint64_t hash;
	char *body;
	size_t body_len;
	const char *content_type;
	char etag[ETAG_CHARS + 1];
	atomic_uint refs;
	struct entry *bucket_next;
	struct entry *newer; /* LRU list, most recently used first */
	struct entry *older;
} entry;

/* The table and the LRU list, guarded by `lock`. */
static struct {
	pthread_mutex_t lock;
	uint64_t generation; /* generation of every stored entry */
	entry *buckets[BUCKET_COUNT];
	entry *newest;
	entry *oldest;
	size_t entries;
	size_t bytes;
} cache = { .lock = PTHREAD_MUTEX_INITIALIZER };

static atomic_uint_fast64_t hits;
static atomic_uint_fast64_t misses;

int reg_cache_applies(const reg_request *req)
{
	if (!req->route || strcmp(req->route->method, "GET") != 0)
		return 0;
	for (size_t i = 0; i < sizeof cached_patterns / sizeof cached_patterns[0]; i++) {
		if (strcmp(req->route->pattern, cached_patterns[i]) == 0)
			return 1;
	}
	return 0;
}

/* FNV-1a, 64 bits. */
static uint64_t hash_key(const char *key, size_t len)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static size_t entry_cost(const entry *e)
{
	return sizeof *e + e->key_len + 1 + e->body_len;
}

static void entry_free(entry *e)
{
	free(e->key);
	free(e->body);
	free(e);
}

static void entry_release(entry *e)
{
	if (atomic_fetch_sub(&e->refs, 1) == 1)
		entry_free(e);
}

/* MHD's free callback of a response built on an entry's body. */
static void release_response_body(void *cls)
{
	entry_release(cls);
}

/* Builds an entry that takes `body` and copies `key`; frees `body` and returns NULL when
 * out of memory. */
static entry *entry_new(const char *key, char *body, size_t len, const char *content_type)
{
	uint8_t digest[UC_SHA256_BYTES];
	char hex[UC_SHA256_HEX_CHARS + 1];
	entry *e = calloc(1, sizeof *e);

	if (!e || !(e->key = strdup(key))) {
		free(e);
		free(body);
		return NULL;
	}
	e->key_len = strlen(key);
	e->hash = hash_key(key, e->key_len);
	e->body = body;
	e->body_len = len;
	e->content_type = content_type;
	atomic_init(&e->refs, 1);

	uc_sha256_buffer(body, len, digest);
	uc_sha256_to_hex(digest, hex);
	e->etag[0] = '"';
	memcpy(e->etag + 1, hex, 2 * ETAG_DIGEST_BYTES);
	e->etag[ETAG_CHARS - 1] = '"';
	e->etag[ETAG_CHARS] = '\0';
	return e;
}

/* The list and table helpers below run with cache.lock held. */

static void lru_unlink(entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		cache.newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		cache.oldest = e->newer;
	e->newer = e->older = NULL;
}

static void lru_push_newest(entry *e)
{
	e->older = cache.newest;
	e->newer = NULL;
	if (cache.newest)
		cache.newest->newer = e;
	else
		cache.oldest = e;
	cache.newest = e;
}

/* Removes `e` from the table and the list and drops the table's reference. */
static void table_remove(entry *e)
{
	entry **p = &cache.buckets[e->hash & (BUCKET_COUNT - 1)];
	while (*p != e)
		p = &(*p)->bucket_next;
	*p = e->bucket_next;
	lru_unlink(e);
	cache.entries--;
	cache.bytes -= entry_cost(e);
	entry_release(e);
}

static entry *table_find(const char *key, size_t len, uint64_t hash)
{
	for (entry *e = cache.buckets[hash & (BUCKET_COUNT - 1)]; e; e = e->bucket_next) {
		if (e->hash == hash && e->key_len == len && memcmp(e->key, key, len) == 0)
			return e;
	}
	return NULL;
}

/* Drops every entry when `generation` is newer than theirs, and adopts it. */
static void table_advance(uint64_t generation)
{
	if (generation <= cache.generation)
		return;
	while (cache.oldest)
		table_remove(cache.oldest);
	cache.generation = generation;
}

/* Returns a referenced current entry for `key`, or NULL. A caller whose generation is
 * older than the table's may take an entry: it was built after a newer read, so it shows
 * every write that the caller's read could. */
static entry *cache_lookup(const char *key, uint64_t generation)
{
	size_t len = strlen(key);
	uint64_t hash = hash_key(key, len);

	pthread_mutex_lock(&cache.lock);
	table_advance(generation);
	entry *e = table_find(key, len, hash);
	if (e) {
		lru_unlink(e);
		lru_push_newest(e);
		atomic_fetch_add(&e->refs, 1);
	}
	pthread_mutex_unlock(&cache.lock);
	return e;
}

/* Stores `e` built from catalog `generation`, replacing an entry of the same key and
 * evicting the least recently used ones to stay within the limits. An entry from an older
 * generation than the table's is not stored. */
static void cache_store(entry *e, uint64_t generation)
{
	size_t cost = entry_cost(e);

	if (e->body_len > REG_CACHE_MAX_ENTRY_BYTES || cost > REG_CACHE_MAX_BYTES)
		return;
	pthread_mutex_lock(&cache.lock);
	table_advance(generation);
	if (generation == cache.generation) {
		entry *old = table_find(e->key, e->key_len, e->hash);
		if (old)
			table_remove(old);
		while (cache.oldest && (cache.entries >= REG_CACHE_MAX_ENTRIES ||
					cache.bytes + cost > REG_CACHE_MAX_BYTES))
			table_remove(cache.oldest);
		entry **bucket = &cache.buckets[e->hash & (BUCKET_COUNT - 1)];
		e->bucket_next = *bucket;
		*bucket = e;
		lru_push_newest(e);
		cache.entries++;
		cache.bytes += cost;
		atomic_fetch_add(&e->refs, 1);
	}
	pthread_mutex_unlock(&cache.lock);
}

/* Weak comparison of RFC 9110, section 13.1.2: returns 1 when If-None-Match is "*" or
 * lists `etag` with or without the W/ prefix. A malformed list matches nothing. */
static int if_none_match_matches(const char *header, const char *etag)
{
	size_t etag_len = strlen(etag);
	const char *p = header;

	if (!header)
		return 0;
	for (;;) {
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			return 0;
		if (*p == '*')
			return 1;
		if (p[0] == 'W' && p[1] == '/')
			p += 2;
		if (*p != '"')
			return 0;
		const char *end = strchr(p + 1, '"');
		if (!end)
			return 0;
		size_t len = (size_t)(end - p) + 1;
		if (len == etag_len && memcmp(p, etag, len) == 0)
			return 1;
		p = end + 1;
	}
}

/* Queues the entry's body, or 304 when If-None-Match matches. Takes one reference. */
static enum MHD_Result respond_entry(reg_request *req, entry *e)
{
	struct MHD_Response *r;
	unsigned status;

	if (if_none_match_matches(reg_header(req, MHD_HTTP_HEADER_IF_NONE_MATCH), e->etag)) {
		status = MHD_HTTP_NOT_MODIFIED;
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (r)
			MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, e->etag);
		entry_release(e);
	} else {
		status = MHD_HTTP_OK;
		r = MHD_create_response_from_buffer_with_free_callback_cls(
			e->body_len, e->body, release_response_body, e);
		if (r) {
			MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, e->content_type);
			MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, e->etag);
		} else {
			entry_release(e);
		}
	}
	/* Clients may keep a copy but must revalidate it with If-None-Match before use. */
	if (r)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	return reg_respond(req, status, r);
}

int reg_cache_serve(reg_request *req, enum MHD_Result *result)
{
	req->cache_generation = reg_db_generation();
	if (strlen(req->raw_uri) <= REG_CACHE_MAX_KEY_BYTES) {
		entry *e = cache_lookup(req->raw_uri, req->cache_generation);
		if (e) {
			atomic_fetch_add(&hits, 1);
			*result = respond_entry(req, e);
			return 1;
		}
		req->cache_fill = 1;
	}
	atomic_fetch_add(&misses, 1);
	return 0;
}

enum MHD_Result reg_cache_respond(reg_request *req, char *body, size_t len,
				  const char *content_type)
{
	entry *e = entry_new(req->raw_uri, body, len, content_type);
	if (!e) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "out of memory caching a %zu-byte response", len);
		return MHD_NO;
	}
	if (req->cache_fill)
		cache_store(e, req->cache_generation);
	return respond_entry(req, e);
}

void reg_cache_get_stats(reg_cache_stats *out)
{
	pthread_mutex_lock(&cache.lock);
	out->entries = cache.entries;
	out->bytes = cache.bytes;
	pthread_mutex_unlock(&cache.lock);
	out->hits = atomic_load(&hits);
	out->misses = atomic_load(&misses);
}
