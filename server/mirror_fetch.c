/* libcurl transfers of the follower. File downloads run on one multi handle over a fixed
 * pool of easy handles, so connections are reused between files (keep-alive) and at most
 * `parallel` run at once. Bytes are written with pwrite at their offset; nothing here
 * hashes or renames, which the caller does once a file is complete. */
#include "config.h"

#include "mirror_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"
#include "uc_hash.h"

#define FETCH_URL_MAX 8192
#define CONNECT_TIMEOUT_SECONDS 30L
#define STALL_SECONDS 60L

/* One easy handle of the pool and the item it is running. */
struct slot {
	CURL *easy;
	reg_fetch_item *item;
	int fd;
	uint64_t offset;   /* where the body's first byte goes */
	uint64_t written;
	long status;       /* 0 until the first body byte */
	uc_sha256 *hash;   /* over bytes 0 .. offset + written */
	char range[64];
	char error[CURL_ERROR_SIZE];
	struct curl_slist *headers;
};

struct reg_fetch {
	char base_url[FETCH_URL_MAX / 2];
	unsigned parallel;
	atomic_int *stop;
	CURL *easy;   /* in-memory GETs */
	CURLM *multi;
	struct slot *slots;
};

static int on_progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return atomic_load((atomic_int *)data) != 0; /* nonzero aborts the transfer */
}

static void set_common(reg_fetch *fetch, CURL *easy, const char *path, char *error)
{
	char url[FETCH_URL_MAX];

	curl_easy_reset(easy);
	snprintf(url, sizeof url, "%s%s", fetch->base_url, path);
	curl_easy_setopt(easy, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_SECONDS);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, STALL_SECONDS);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "ucregd-mirror/" PACKAGE_VERSION);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(easy, CURLOPT_XFERINFODATA, fetch->stop);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	error[0] = '\0';
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
}

reg_fetch *reg_fetch_new(const char *base_url, unsigned parallel, atomic_int *stop)
{
	reg_fetch *fetch = calloc(1, sizeof *fetch);
	if (!fetch)
		return NULL;
	snprintf(fetch->base_url, sizeof fetch->base_url, "%s", base_url);
	size_t n = strlen(fetch->base_url);
	if (n > 0 && fetch->base_url[n - 1] == '/')
		fetch->base_url[n - 1] = '\0';
	fetch->parallel = parallel ? parallel : 1;
	fetch->stop = stop;
	fetch->easy = curl_easy_init();
	fetch->multi = curl_multi_init();
	fetch->slots = calloc(fetch->parallel, sizeof *fetch->slots);
	if (!fetch->easy || !fetch->multi || !fetch->slots)
		goto fail;
	for (unsigned i = 0; i < fetch->parallel; i++) {
		fetch->slots[i].fd = -1;
		if (!(fetch->slots[i].easy = curl_easy_init()))
			goto fail;
	}
	curl_multi_setopt(fetch->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)fetch->parallel);
	return fetch;
fail:
	REG_ERROR("cannot set up libcurl for the upstream %s", base_url);
	reg_fetch_free(fetch);
	return NULL;
}

void reg_fetch_free(reg_fetch *fetch)
{
	if (!fetch)
		return;
	for (unsigned i = 0; fetch->slots && i < fetch->parallel; i++)
		curl_easy_cleanup(fetch->slots[i].easy);
	free(fetch->slots);
	curl_multi_cleanup(fetch->multi);
	curl_easy_cleanup(fetch->easy);
	free(fetch);
}

/* In-memory body of reg_fetch_get. */
struct buffer {
	char *data;
	size_t len;
	size_t limit;
	int too_long;
};

static size_t on_memory_body(char *data, size_t size, size_t count, void *user)
{
	struct buffer *b = user;
	size_t n = size * count;
	if (n > b->limit - b->len) {
		b->too_long = 1;
		return 0;
	}
	char *grown = realloc(b->data, b->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + b->len, data, n);
	b->data = grown;
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

long reg_fetch_get(reg_fetch *fetch, const char *path, size_t limit, char **body, size_t *len,
		   char *error, size_t error_size)
{
	char curl_error[CURL_ERROR_SIZE];
	struct buffer b = { .limit = limit };
	long status = 0;

	*body = NULL;
	*len = 0;
	set_common(fetch, fetch->easy, path, curl_error);
	curl_easy_setopt(fetch->easy, CURLOPT_WRITEFUNCTION, on_memory_body);
	curl_easy_setopt(fetch->easy, CURLOPT_WRITEDATA, &b);
	CURLcode rc = curl_easy_perform(fetch->easy);
	if (rc != CURLE_OK) {
		if (b.too_long)
			snprintf(error, error_size, "GET %s: response longer than %zu bytes", path, limit);
		else
			snprintf(error, error_size, "GET %s%s failed: %s", fetch->base_url, path,
				 curl_error[0] ? curl_error : curl_easy_strerror(rc));
		free(b.data);
		return -1;
	}
	curl_easy_getinfo(fetch->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status == 200 && !b.data)
		b.data = calloc(1, 1);
	if (status != 200 || !b.data) {
		snprintf(error, error_size, "GET %s%s returned HTTP %ld", fetch->base_url, path, status);
		free(b.data);
		return status == 200 ? -1 : status;
	}
	*body = b.data;
	*len = b.len;
	return status;
}

static size_t on_file_body(char *data, size_t size, size_t count, void *user)
{
	struct slot *s = user;
	size_t n = size * count;
	reg_fetch_item *item = s->item;

	if (s->status == 0) {
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
		if (s->status == 200 && s->offset > 0) {
			/* The server ignored Range: its body starts at byte 0. */
			REG_INFO("upstream returned 200 to a Range request for %s; restarting from"
				 " byte 0", item->path);
			if (ftruncate(s->fd, 0) != 0)
				return 0;
			uc_sha256_free(s->hash);
			if (!(s->hash = uc_sha256_new()))
				return 0;
			s->offset = 0;
			item->resumed_from = 0;
		} else if (s->status != 200 && s->status != 206) {
			return 0; /* an error body is not written; the status is reported */
		}
	}
	if (n > item->size - s->offset - s->written) {
		snprintf(item->error, sizeof item->error, "GET %s sent more than the %" PRIu64
			 " bytes the manifest declares", item->path, item->size);
		return 0;
	}
	const char *p = data;
	size_t left = n;
	while (left > 0) {
		ssize_t w = pwrite(s->fd, p, left, (off_t)(s->offset + s->written));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			snprintf(item->error, sizeof item->error, "cannot write %s: %s", item->file,
				 strerror(errno));
			return 0;
		}
		p += w;
		left -= (size_t)w;
		s->written += (uint64_t)w;
	}
	uc_sha256_update(s->hash, data, n);
	return n;
}

/* Hashes the first `length` bytes of `fd` into `hash`. Returns 0 or -1. */
static int hash_prefix(int fd, uint64_t length, uc_sha256 *hash)
{
	static char buffer[1 << 16];
	uint64_t done = 0;

	while (done < length) {
		size_t want = length - done < sizeof buffer ? (size_t)(length - done) : sizeof buffer;
		ssize_t got = pread(fd, buffer, want, (off_t)done);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		uc_sha256_update(hash, buffer, (size_t)got);
		done += (uint64_t)got;
	}
	return 0;
}

/* Opens the item's file and starts its transfer on `s`. Returns 1 when a transfer was
 * started, 0 when the item finished without one (already complete, or failed). */
static int start_item(reg_fetch *fetch, struct slot *s, reg_fetch_item *item)
{
	struct stat st;

	item->ok = 0;
	item->transient = 0;
	item->error[0] = '\0';
	int fd = open(item->file, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(item->error, sizeof item->error, "cannot open %s: %s", item->file,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return 0;
	}
	uint64_t have = (uint64_t)st.st_size;
	if (have > item->size) {
		if (ftruncate(fd, 0) != 0) {
			snprintf(item->error, sizeof item->error, "cannot truncate %s", item->file);
			close(fd);
			return 0;
		}
		have = 0;
	}
	item->resumed_from = have;
	uc_sha256 *hash = uc_sha256_new();
	if (!hash || hash_prefix(fd, have, hash) != 0) {
		snprintf(item->error, sizeof item->error, "cannot read %s", item->file);
		uc_sha256_free(hash);
		close(fd);
		return 0;
	}
	if (have == item->size) {
		uc_sha256_final(hash, item->sha256);
		uc_sha256_free(hash);
		item->ok = 1;
		close(fd);
		return 0;
	}

	s->item = item;
	s->hash = hash;
	s->fd = fd;
	s->offset = have;
	s->written = 0;
	s->status = 0;
	set_common(fetch, s->easy, item->path, s->error);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_file_body);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	if (have > 0) {
		snprintf(s->range, sizeof s->range, "%" PRIu64 "-", have);
		curl_easy_setopt(s->easy, CURLOPT_RANGE, s->range);
	}
	curl_multi_add_handle(fetch->multi, s->easy);
	return 1;
}

static void finish_item(reg_fetch *fetch, struct slot *s, CURLcode result)
{
	reg_fetch_item *item = s->item;
	long status = s->status;

	if (status == 0)
		curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_multi_remove_handle(fetch->multi, s->easy);
	if (result == CURLE_OK && (status == 200 || status == 206) &&
	    s->offset + s->written == item->size) {
		uc_sha256_final(s->hash, item->sha256);
		item->ok = 1;
	} else if (item->error[0] == '\0') {
		if (result != CURLE_OK && status < 300)
			snprintf(item->error, sizeof item->error, "GET %.100s failed: %.130s", item->path,
				 s->error[0] ? s->error : curl_easy_strerror(result));
		else if (status >= 300)
			snprintf(item->error, sizeof item->error, "GET %s returned HTTP %ld", item->path,
				 status);
		else
			snprintf(item->error, sizeof item->error, "GET %s ended after %" PRIu64 " of %"
				 PRIu64 " bytes", item->path, s->offset + s->written, item->size);
		/* 416: the kept bytes do not fit the file upstream; start over next time. */
		if (status == 416 && ftruncate(s->fd, 0) != 0)
			REG_WARN("cannot truncate %s", item->file);
		item->transient = status == 0 || status >= 500 || status == 416 || status == 429 ||
			(status < 300 && result != CURLE_WRITE_ERROR);
	}
	uc_sha256_free(s->hash);
	s->hash = NULL;
	close(s->fd);
	s->fd = -1;
	s->item = NULL;
}

void reg_fetch_files(reg_fetch *fetch, reg_fetch_item *items, size_t count,
		     reg_fetch_done_fn done, void *context)
{
	size_t next = 0;
	unsigned running = 0;

	for (;;) {
		for (unsigned i = 0; i < fetch->parallel && next < count; i++) {
			if (fetch->slots[i].item)
				continue;
			while (next < count && !start_item(fetch, &fetch->slots[i], &items[next])) {
				if (done)
					done(context, next);
				next++;
			}
			if (next < count) {
				next++;
				running++;
			}
		}
		if (running == 0)
			break;
		int still = 0;
		curl_multi_perform(fetch->multi, &still);
		CURLMsg *msg;
		int queued;
		while ((msg = curl_multi_info_read(fetch->multi, &queued))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct slot *s = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			reg_fetch_item *item = s->item;
			finish_item(fetch, s, msg->data.result);
			running--;
			if (done)
				done(context, (size_t)(item - items));
		}
		if (running > 0 && still > 0)
			curl_multi_poll(fetch->multi, NULL, 0, 1000, NULL);
	}
}
