/* libcurl requests of uc push and uc pull. */
#include "config.h"

#include "net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

/* A response body kept in memory is an API document, never a blob. */
#define NET_MAX_KEPT_BODY ((size_t)16 << 20)

struct net_client {
	const char *verb;
	CURL *curl;
	char *base_url;
	char *auth_header; /* "Authorization: Bearer ..." or NULL */
	uint64_t rate_limit;
	cli_progress *bar;
	uint64_t progress_base;
	uint64_t progress_total;
};

/* State of one transfer, shared by the libcurl callbacks. */
struct transfer {
	net_client *client;
	net_response *response;
	int keep_body;         /* 1: body goes to response->body */
	size_t kept_capacity;
	FILE *out;             /* download target, or NULL */
	uint64_t out_offset;   /* where the next downloaded byte goes */
	uint64_t out_limit;
	uint64_t written;
	int out_started;       /* 1 once the status decided where the body goes */
	int out_failed;        /* 1 when the file write failed */
	int out_overflow;      /* 1 when the body went past out_limit */
	int out_bad_range;     /* 1 when a 206 response starts elsewhere than requested */
	FILE *in;              /* upload source, or NULL */
	uint64_t in_left;
};

void net_response_clear(net_response *response)
{
	free(response->body);
	memset(response, 0, sizeof *response);
}

static int curl_ready;

net_client *net_client_new(const char *verb, const char *base_url, const char *token)
{
	if (strncmp(base_url, "http://", 7) != 0 && strncmp(base_url, "https://", 8) != 0) {
		cli_error(verb, "invalid --registry '%s': expected an http:// or https:// URL", base_url);
		return NULL;
	}
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			cli_error(verb, "libcurl could not be initialised");
			return NULL;
		}
		curl_ready = 1;
	}

	net_client *client = calloc(1, sizeof *client);
	if (!client)
		goto nomem;
	client->verb = verb;
	client->curl = curl_easy_init();
	client->base_url = strdup(base_url);
	if (!client->curl || !client->base_url)
		goto nomem;
	size_t n = strlen(client->base_url);
	while (n > 0 && client->base_url[n - 1] == '/')
		client->base_url[--n] = '\0';
	if (token) {
		static const char prefix[] = "Authorization: Bearer ";
		size_t size = sizeof prefix + strlen(token);
		client->auth_header = malloc(size);
		if (!client->auth_header)
			goto nomem;
		snprintf(client->auth_header, size, "%s%s", prefix, token);
	}
	return client;

nomem:
	cli_error(verb, "out of memory creating the HTTP client");
	net_client_free(client);
	return NULL;
}

void net_client_free(net_client *client)
{
	if (!client)
		return;
	if (client->curl)
		curl_easy_cleanup(client->curl);
	free(client->base_url);
	if (client->auth_header) {
		/* The token should not linger in freed memory. */
		memset(client->auth_header, 0, strlen(client->auth_header));
		free(client->auth_header);
	}
	free(client);
}

void net_client_set_rate_limit(net_client *client, uint64_t bytes_per_second)
{
	client->rate_limit = bytes_per_second;
}

void net_client_set_progress(net_client *client, cli_progress *bar, uint64_t base, uint64_t total)
{
	client->bar = bar;
	client->progress_base = base;
	client->progress_total = total;
}

const char *net_client_base_url(const net_client *client)
{
	return client->base_url;
}

static size_t keep_body(struct transfer *t, const char *data, size_t len)
{
	net_response *r = t->response;
	if (r->body_len + len > NET_MAX_KEPT_BODY)
		return 0;
	if (r->body_len + len + 1 > t->kept_capacity) {
		size_t capacity = t->kept_capacity ? t->kept_capacity : 4096;
		while (capacity < r->body_len + len + 1)
			capacity *= 2;
		char *grown = realloc(r->body, capacity);
		if (!grown)
			return 0;
		r->body = grown;
		t->kept_capacity = capacity;
	}
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

/* Returns 1 when a Content-Range value "bytes FIRST-LAST/SIZE" starts at `offset`. */
static int range_starts_at(const char *value, uint64_t offset)
{
	unsigned long long first;
	int used = 0;
	if (sscanf(value, "bytes %llu-%n", &first, &used) != 1 || used == 0)
		return 0;
	return first == offset;
}

/* Decides from the status where a download's body goes: 206 continues at the offset, 200
 * starts the file again, anything else is an error document kept in memory. */
static int start_download_body(struct transfer *t)
{
	long status = 0;
	curl_easy_getinfo(t->client->curl, CURLINFO_RESPONSE_CODE, &status);
	t->out_started = 1;
	if (status == 200) {
		t->out_offset = 0;
	} else if (status != 206) {
		t->keep_body = 1;
		return 0;
	} else if (!range_starts_at(t->response->content_range, t->out_offset)) {
		t->out_bad_range = 1;
		return -1;
	}
	if (fseeko(t->out, (off_t)t->out_offset, SEEK_SET) != 0 ||
	    (status == 200 && ftruncate(fileno(t->out), 0) != 0)) {
		t->out_failed = 1;
		return -1;
	}
	return 0;
}

static size_t on_body(char *data, size_t size, size_t count, void *ctx)
{
	struct transfer *t = ctx;
	size_t len = size * count;

	if (t->out && !t->out_started && start_download_body(t) != 0)
		return 0;
	if (t->keep_body || !t->out)
		return keep_body(t, data, len);
	if (t->out_offset + t->written + len > t->out_limit) {
		t->out_overflow = 1;
		return 0;
	}
	if (fwrite(data, 1, len, t->out) != len) {
		t->out_failed = 1;
		return 0;
	}
	t->written += len;
	return len;
}

static size_t on_header(char *line, size_t size, size_t count, void *ctx)
{
	struct transfer *t = ctx;
	size_t len = size * count;
	struct { const char *name; char *dest; size_t dest_size; } wanted[] = {
		{ "Content-Type:", t->response->content_type, sizeof t->response->content_type },
		{ "Content-Range:", t->response->content_range, sizeof t->response->content_range },
	};

	for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
		size_t name_len = strlen(wanted[i].name);
		if (len <= name_len || strncasecmp(line, wanted[i].name, name_len) != 0)
			continue;
		const char *value = line + name_len;
		size_t value_len = len - name_len;
		while (value_len && (*value == ' ' || *value == '\t')) {
			value++;
			value_len--;
		}
		while (value_len && (value[value_len - 1] == '\r' || value[value_len - 1] == '\n'))
			value_len--;
		if (value_len >= wanted[i].dest_size)
			value_len = wanted[i].dest_size - 1;
		memcpy(wanted[i].dest, value, value_len);
		wanted[i].dest[value_len] = '\0';
	}
	return len;
}

static size_t on_read(char *buffer, size_t size, size_t count, void *ctx)
{
	struct transfer *t = ctx;
	size_t want = size * count;
	if (want > t->in_left)
		want = (size_t)t->in_left;
	if (want == 0)
		return 0;
	size_t got = fread(buffer, 1, want, t->in);
	if (got == 0)
		return CURL_READFUNC_ABORT; /* the file became shorter after it was opened */
	t->in_left -= got;
	return got;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)ultotal;
	struct transfer *t = ctx;
	net_client *c = t->client;
	if (c->bar)
		cli_progress_update(c->bar, c->progress_base + (uint64_t)dlnow + (uint64_t)ulnow,
				    c->progress_total);
	return 0;
}

/* Sets the options every request shares. */
static void setup_common(net_client *c, struct transfer *t, const char *method, const char *path,
			 char *url, size_t url_size)
{
	CURL *curl = c->curl;
	curl_easy_reset(curl);
	snprintf(url, url_size, "%s%s", c->base_url, path);
	curl_easy_setopt(curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 30L);
	/* A transfer slower than 1 byte/s for 120 s is treated as dead. */
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 120L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "uc/" UC_VERSION_STRING);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, t->response->error);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, t);
	if (c->bar) {
		curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
		curl_easy_setopt(curl, CURLOPT_XFERINFODATA, t);
		curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
	}
	if (c->rate_limit) {
		curl_easy_setopt(curl, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)c->rate_limit);
		curl_easy_setopt(curl, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)c->rate_limit);
	}
	if (strcmp(method, "GET") == 0)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	else if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
	else
		curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
}

/* Runs the prepared request with `headers` (taken and freed). */
static int perform(net_client *c, struct transfer *t, struct curl_slist *headers, int header_failed)
{
	net_response *r = t->response;
	if (c->auth_header && !header_failed) {
		struct curl_slist *more = curl_slist_append(headers, c->auth_header);
		header_failed = more == NULL;
		headers = more ? more : headers;
	}
	if (header_failed) {
		curl_slist_free_all(headers);
		snprintf(r->error, sizeof r->error, "out of memory building the request headers");
		return -1;
	}
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
	CURLcode code = curl_easy_perform(c->curl);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(headers);
	if (code != CURLE_OK) {
		/* A server may send an error document before the request body is complete and then
		 * close the connection. That document explains more than the transport error. */
		if (r->status >= 400 && r->body_len > 0)
			return 0;
		if (!r->error[0])
			snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(code));
		r->status = 0;
		return -1;
	}
	return 0;
}

/* Appends a header line, or sets *failed when out of memory. */
static struct curl_slist *add_header(struct curl_slist *list, const char *line, int *failed)
{
	struct curl_slist *more = curl_slist_append(list, line);
	if (!more)
		*failed = 1;
	return more ? more : list;
}

int net_request(net_client *c, const char *method, const char *path, const void *body,
		size_t body_len, const char *content_type, net_response *out)
{
	struct transfer t = { .client = c, .response = out, .keep_body = 1 };
	struct curl_slist *headers = NULL;
	char url[2048], line[160];
	int failed = 0;

	memset(out, 0, sizeof *out);
	setup_common(c, &t, method, path, url, sizeof url);
	if (body) {
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, (const char *)body);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	if (content_type) {
		snprintf(line, sizeof line, "Content-Type: %s", content_type);
		headers = add_header(headers, line, &failed);
	}
	/* No "Expect: 100-continue" round trip for small bodies. */
	headers = add_header(headers, "Expect:", &failed);
	return perform(c, &t, headers, failed);
}

int net_send_file(net_client *c, const char *method, const char *path, FILE *file,
		  uint64_t offset, uint64_t length, const char *header, net_response *out)
{
	struct transfer t = { .client = c, .response = out, .keep_body = 1, .in = file,
			      .in_left = length };
	struct curl_slist *headers = NULL;
	char url[2048];
	int failed = 0;

	memset(out, 0, sizeof *out);
	if (fseeko(file, (off_t)offset, SEEK_SET) != 0) {
		snprintf(out->error, sizeof out->error, "cannot seek to byte %" PRIu64 ": %s", offset,
			 strerror(errno));
		return -1;
	}
	setup_common(c, &t, method, path, url, sizeof url);
	curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, on_read);
	curl_easy_setopt(c->curl, CURLOPT_READDATA, &t);
	curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)length);
	headers = add_header(headers, "Content-Type: application/octet-stream", &failed);
	if (header)
		headers = add_header(headers, header, &failed);
	return perform(c, &t, headers, failed);
}

int net_download(net_client *c, const char *path, FILE *file, uint64_t offset, uint64_t limit,
		 uint64_t *written, net_response *out)
{
	struct transfer t = { .client = c, .response = out, .out = file, .out_offset = offset,
			      .out_limit = limit };
	struct curl_slist *headers = NULL;
	char url[2048], range[64];
	int failed = 0;

	memset(out, 0, sizeof *out);
	setup_common(c, &t, "GET", path, url, sizeof url);
	if (offset > 0) {
		snprintf(range, sizeof range, "Range: bytes=%" PRIu64 "-", offset);
		headers = add_header(headers, range, &failed);
	}
	int rc = perform(c, &t, headers, failed);
	if (fflush(file) != 0)
		t.out_failed = 1;
	*written = t.written;
	if (t.out_overflow || t.out_failed || t.out_bad_range) {
		if (t.out_bad_range)
			snprintf(out->error, sizeof out->error, "the registry responded to the request for"
				 " bytes from %" PRIu64 " with Content-Range '%s'", offset,
				 out->content_range);
		else if (t.out_overflow)
			snprintf(out->error, sizeof out->error,
				 "the registry sent more than the %" PRIu64 " bytes expected", limit);
		else
			snprintf(out->error, sizeof out->error, "cannot write the downloaded bytes: %s",
				 strerror(errno));
		out->status = 0;
		return -1;
	}
	return rc;
}

json_t *net_response_json(const net_response *response)
{
	if (!response->body)
		return NULL;
	json_t *root = json_loadb(response->body, response->body_len, 0, NULL);
	if (root && !json_is_object(root)) {
		json_decref(root);
		return NULL;
	}
	return root;
}

void net_report_failure(const char *verb, const char *what, const net_response *response)
{
	if (response->status == 0) {
		cli_error(verb, "%s failed: %s", what, response->error[0] ? response->error : "no response");
		return;
	}
	json_t *problem = net_response_json(response);
	const char *detail = problem ? json_string_value(json_object_get(problem, "detail")) : NULL;
	if (detail)
		cli_error(verb, "%s failed: %s (HTTP %ld)", what, detail, response->status);
	else
		cli_error(verb, "%s failed with HTTP status %ld", what, response->status);
	json_decref(problem);
}
