/* HTTP client of `uc push` and `uc pull`: libcurl requests against a registry's REST API,
 * with the bearer token, a transfer rate limit and a progress bar. Nothing here prints the
 * token, and redirects are never followed, so the token goes only to the registry URL. */
#ifndef UC_CLI_NET_H
#define UC_CLI_NET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "cli.h"

/* Characters of registry slugs and versions. Only these go into request paths unescaped;
 * the registry checks the remaining rules. */
#define NET_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"

/* One request's outcome. `status` is 0 when no HTTP response arrived; then `error` contains
 * libcurl's message. `body` (owned, NUL-terminated) is the response body of requests
 * that keep it; free with net_response_clear. */
typedef struct {
	long status;
	char error[256];
	char *body;
	size_t body_len;
	char content_type[128];
	char content_range[128];
} net_response;

void net_response_clear(net_response *response);

typedef struct net_client net_client;

/* Creates a client for the registry at `base_url` (http:// or https://, a trailing '/' is
 * dropped). `token` may be NULL for anonymous requests; it is copied. `verb` names the
 * command in messages and is borrowed. Returns NULL after printing why. */
net_client *net_client_new(const char *verb, const char *base_url, const char *token);
void net_client_free(net_client *client);

/* Caps the transfer rate in bytes per second (0 for no cap) of later requests. */
void net_client_set_rate_limit(net_client *client, uint64_t bytes_per_second);

/* Shows transfer progress of later requests on `bar` (borrowed, NULL for none): `base`
 * bytes are already done of `total` in all. */
void net_client_set_progress(net_client *client, cli_progress *bar, uint64_t base, uint64_t total);

/* The registry URL without a trailing '/', borrowed. */
const char *net_client_base_url(const net_client *client);

/* Sends METHOD base_url+path with an optional in-memory body (`content_type` may be NULL)
 * and keeps the response body in `out`. Returns 0 when a response arrived, whatever its
 * status, or -1 with out->error set. */
int net_request(net_client *client, const char *method, const char *path, const void *body,
		size_t body_len, const char *content_type, net_response *out);

/* Sends METHOD base_url+path with `length` bytes of `file` from `offset` as the body;
 * `header` is one extra request header line or NULL. Returns as net_request. */
int net_send_file(net_client *client, const char *method, const char *path, FILE *file,
		  uint64_t offset, uint64_t length, const char *header, net_response *out);

/* GETs base_url+path into `file`. With `offset` > 0 it requests the bytes from `offset`
 * with Range; a 206 response is appended at `offset`, a 200 response rewrites the file from
 * byte 0. At most `limit` bytes are accepted in all: a longer body aborts the transfer.
 * A problem+json error body is kept in out->body. *written is the number of bytes written
 * to the file in this call. Returns as net_request. */
int net_download(net_client *client, const char *path, FILE *file, uint64_t offset,
		 uint64_t limit, uint64_t *written, net_response *out);

/* Prints "uc VERB: WHAT failed: DETAIL (HTTP STATUS)" using the problem+json detail of
 * the response when there is one, or the transport error when no response arrived. */
void net_report_failure(const char *verb, const char *what, const net_response *response);

/* Parses the response body as a JSON object. Returns a new reference (json_decref), or
 * NULL when the body is not a JSON object. */
json_t *net_response_json(const net_response *response);

#endif
