#include "config.h"

#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cache.h"
#include "db.h"
#include "log.h"
#include "mirror.h"
#include "routes.h"
#include "server.h"
#include "static.h"

static _Atomic uint64_t next_request_id = 1;
static _Atomic int64_t requests_in_flight;

static int64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int reg_name_valid(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 64)
		return 0;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return 0;
	for (size_t i = 1; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return strstr(name, "..") == NULL;
}

const char *reg_header(reg_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *reg_query(reg_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

/* Preformatted 500 body sent when a response cannot be built (out of memory, or a
 * jansson error), so that every request still gets a response. */
static const char fallback_problem[] =
	"{\"type\":\"urn:uc-registry:problem:internal_error\",\"title\":\"Internal server error\","
	"\"status\":500,\"detail\":\"the server could not build its response; see the server"
	" log for the X-Request-Id of this response\",\"code\":\"internal_error\"}";

static struct MHD_Response *fallback_response(void)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(
		sizeof fallback_problem - 1, (void *)fallback_problem, MHD_RESPMEM_PERSISTENT);
	if (response)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
					"application/problem+json");
	return response;
}

/* Returns the length of the valid UTF-8 sequence at `s`, or 0 when s[0] starts none. */
static size_t utf8_sequence_length(const unsigned char *s)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char low = 0x80, high = 0xBF; /* allowed range of the second byte */

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			low = 0xA0; /* overlong */
		else if (c == 0xED)
			high = 0x9F; /* UTF-16 surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			low = 0x90; /* overlong */
		else if (c == 0xF4)
			high = 0x8F; /* above U+10FFFF */
	} else {
		return 0;
	}
	if (s[1] < low || s[1] > high)
		return 0;
	for (size_t i = 2; i < len; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	}
	return len;
}

/* Copies `in` to `out` as valid UTF-8: each byte that starts no valid sequence becomes
 * the text \xNN, and the copy is cut on a character boundary when `out` is full. */
static void utf8_copy(char *out, size_t out_size, const char *in)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t used = 0;

	while (*s) {
		size_t len = utf8_sequence_length(s);
		if (len == 0) {
			if (used + 4 >= out_size)
				break;
			snprintf(out + used, out_size - used, "\\x%02X", (unsigned)*s);
			used += 4;
			s++;
			continue;
		}
		if (used + len >= out_size)
			break;
		memcpy(out + used, s, len);
		used += len;
		s += len;
	}
	out[used] = '\0';
}

enum MHD_Result reg_respond(reg_request *req, unsigned status, struct MHD_Response *response)
{
	char serial[24], id[24];

	if (!response) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "could not build a %u response; sending a 500",
			status);
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		response = fallback_response();
		if (!response) {
			/* Marking the request as responded stops MHD from calling its handler
			 * again, and MHD_NO closes the connection. */
			req->status = status;
			req->responded = 1;
			return MHD_NO;
		}
	}
	snprintf(serial, sizeof serial, "%" PRIu64, reg_db_serial());
	snprintf(id, sizeof id, "%" PRIu64, req->id);
	MHD_add_response_header(response, "X-Registry-Serial", serial);
	MHD_add_response_header(response, "X-Request-Id", id);
	/* The website loads scripts, styles, images and API data from this origin only. */
	MHD_add_response_header(response, "Content-Security-Policy",
				"default-src 'self'; object-src 'none'; base-uri 'none';"
				" frame-ancestors 'none'; form-action 'self'");
	req->status = status;
	req->responded = 1;
	enum MHD_Result result = MHD_queue_response(req->conn, status, response);
	MHD_destroy_response(response);
	if (result != MHD_YES) {
		/* Many callers ignore this result, so on_request closes the connection
		 * instead of waiting for a response that will never be sent. */
		REG_LOG(REG_LOG_ERROR, "req", req->id, "libmicrohttpd did not queue the %u"
			" response; closing the connection", status);
		req->queue_failed = 1;
	}
	return result;
}

enum MHD_Result reg_respond_bytes(reg_request *req, unsigned status, const char *content_type,
				  const void *data, size_t len)
{
	struct MHD_Response *response =
		MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
	if (response && content_type)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return reg_respond(req, status, response);
}

static enum MHD_Result respond_json_typed(reg_request *req, unsigned status, json_t *body,
					  const char *content_type)
{
	/* Callers pass json_pack results directly, and json_pack returns NULL for a string
	 * that is not UTF-8 or when out of memory. */
	if (!body) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "could not build the JSON body of a %u"
			" response", status);
		return reg_respond(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	}
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(body);
	if (!text) {
		REG_LOG(REG_LOG_ERROR, "req", req->id, "out of memory encoding a JSON response");
		return reg_respond(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	}
	size_t len = strlen(text);
	if (status == MHD_HTTP_OK && reg_cache_applies(req))
		return reg_cache_respond(req, text, len, content_type);
	struct MHD_Response *response =
		MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!response) {
		free(text);
		return reg_respond(req, status, NULL);
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	return reg_respond(req, status, response);
}

enum MHD_Result reg_respond_json(reg_request *req, unsigned status, json_t *body)
{
	return respond_json_typed(req, status, body, "application/json");
}

/* Builds an application/problem+json response, or returns NULL when out of memory. */
static struct MHD_Response *problem_response(reg_request *req, unsigned status, const char *code,
					     const char *title, const char *detail)
{
	char type[128];
	/* Four bytes of \xNN for each byte of the raw detail, so nothing is cut. */
	char valid_detail[4 * 1024 + 1];

	snprintf(type, sizeof type, "urn:uc-registry:problem:%s", code);
	/* jansson rejects invalid UTF-8, and a detail quotes client bytes (a path or method)
	 * that may be invalid or cut inside a character by a %.200s. */
	utf8_copy(valid_detail, sizeof valid_detail, detail);
	/* Client errors (4xx) are logged at debug level and server faults (5xx) as errors. */
	REG_LOG(status >= 500 ? REG_LOG_ERROR : REG_LOG_DEBUG, "req", req->id, "%u %s: %s", status,
		code, valid_detail);
	json_t *body = json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", title, "status",
				 (int)status, "detail", valid_detail, "code", code);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(body);
	if (!text)
		return NULL;
	struct MHD_Response *response =
		MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
	if (!response) {
		free(text);
		return NULL;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
	return response;
}

enum MHD_Result reg_respond_problem(reg_request *req, unsigned status, const char *code,
				    const char *title, const char *detail_fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, detail_fmt);
	vsnprintf(detail, sizeof detail, detail_fmt, ap);
	va_end(ap);
	return reg_respond(req, status, problem_response(req, status, code, title, detail));
}

struct MHD_Response *reg_problem_response(reg_request *req, unsigned status, const char *code,
					  const char *title, const char *detail_fmt, ...)
{
	char detail[1024];
	va_list ap;

	va_start(ap, detail_fmt);
	vsnprintf(detail, sizeof detail, detail_fmt, ap);
	va_end(ap);
	return problem_response(req, status, code, title, detail);
}

/* Decodes %XX escapes of one path segment in place. Returns -1 on a bad escape. */
static int percent_decode(char *s, size_t *len)
{
	size_t in = 0, out = 0, n = strlen(s);

	while (in < n) {
		if (s[in] == '%') {
			if (in + 2 >= n || !isxdigit((unsigned char)s[in + 1]) ||
			    !isxdigit((unsigned char)s[in + 2]))
				return -1;
			char hex[3] = { s[in + 1], s[in + 2], '\0' };
			s[out++] = (char)strtol(hex, NULL, 16);
			in += 3;
		} else {
			s[out++] = s[in++];
		}
	}
	s[out] = '\0';
	*len = out;
	return 0;
}

/* Splits the raw path into decoded segments. On failure queues a 400 naming the segment. */
static int split_path(reg_request *req)
{
	char *path = strdup(req->raw_uri);
	if (!path)
		return -1;
	char *query = strchr(path, '?');
	if (query)
		*query = '\0';

	int rc = 0;
	char *p = path;
	if (*p != '/') {
		rc = -2;
		goto out;
	}
	while (*p == '/' && rc == 0) {
		char *start = ++p;
		while (*p && *p != '/')
			p++;
		size_t raw_len = (size_t)(p - start);
		if (raw_len == 0 && *p == '\0') {
			/* "/" is the site root; any other trailing slash is an empty segment. */
			if (req->n_segments > 0)
				rc = -2;
			break;
		}
		if (req->n_segments == REG_MAX_SEGMENTS) {
			rc = -2;
			break;
		}
		char *segment = strndup(start, raw_len);
		if (!segment) {
			rc = -1;
			break;
		}
		req->segments[req->n_segments++] = segment;
		size_t len;
		if (raw_len == 0 || percent_decode(segment, &len) != 0 || len != strlen(segment) ||
		    strchr(segment, '/') || strcmp(segment, ".") == 0 || strcmp(segment, "..") == 0)
			rc = -2;
	}
out:
	free(path);
	if (rc == -2) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_path", "Invalid request path",
				    "the path '%.200s' has an empty, '.', '..', encoded '/' or NUL segment, or more"
				    " than %d segments; send a plain path such as /api/packs/my-pack",
				    req->raw_uri, REG_MAX_SEGMENTS);
	}
	return rc;
}

static int pattern_matches(const reg_request *req, const char *pattern)
{
	size_t i = 0;
	const char *p = pattern;

	while (*p == '/') {
		p++;
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (i >= req->n_segments)
			return 0;
		if (!(len == 2 && p[0] == '{' && p[1] == '}') &&
		    (strlen(req->segments[i]) != len || strncmp(req->segments[i], p, len) != 0))
			return 0;
		i++;
		p += len;
	}
	return i == req->n_segments;
}

static const reg_route static_route = { "GET", "", REG_AUTH_NONE, REG_BODY_NONE, NULL,
					reg_static_get };

/* Finds the route; queues 404 or 405 (with Allow) when there is none. */
static const reg_route *find_route(reg_request *req)
{
	char allow[64] = "";
	const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;

	for (size_t i = 0; i < reg_route_count; i++) {
		const reg_route *route = &reg_routes[i];
		if (!pattern_matches(req, route->pattern))
			continue;
		if (strcmp(route->method, method) == 0)
			return route;
		size_t used = strlen(allow);
		snprintf(allow + used, sizeof allow - used, "%s%s%s", used ? ", " : "", route->method,
			 strcmp(route->method, "GET") == 0 ? ", HEAD" : "");
	}
	if (!allow[0] && reg_static_applies(req))
		return &static_route;
	if (allow[0]) {
		char detail[160];
		snprintf(detail, sizeof detail, "%s is not allowed on this path; allowed: %s", req->method,
			 allow);
		struct MHD_Response *response = problem_response(
			req, MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed", detail);
		if (response)
			MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, allow);
		reg_respond(req, MHD_HTTP_METHOD_NOT_ALLOWED, response);
	} else {
		reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "not_found", "Not found",
				    "no resource at '%.200s'; see docs/api.md for the paths", req->raw_uri);
	}
	return NULL;
}

/* RFC 2046 boundary: 1 to 70 characters from bchars, not ending in a space. */
static int boundary_valid(const char *b, size_t len)
{
	static const char extra[] = "'()+_,-./:=? ";

	if (len == 0 || len > 70 || b[len - 1] == ' ')
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      (c != '\0' && strchr(extra, c))))
			return 0;
	}
	return 1;
}

#define MULTIPART_PROBE_BYTES 65536

/* The API takes no multipart bodies: a malformed one gets 400 and a well-formed one 415.
 * A boundary is malformed when it is not RFC 2046 bchars or when no delimiter line in the
 * body matches it. The body check is needed because libmicrohttpd 0.9.75 cuts a header
 * value at a NUL byte, so a boundary "a<NUL>b" arrives as "a". */
static int check_content_type(reg_request *req)
{
	const char *value = reg_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t len = value ? strlen(value) : 0;

	if (len < 10 || strncasecmp(value, "multipart/", 10) != 0)
		return 0;

	const char *b = NULL;
	for (size_t i = 0; i + 9 <= len; i++) {
		if (strncasecmp(value + i, "boundary=", 9) == 0) {
			b = value + i + 9;
			break;
		}
	}
	size_t b_len = b ? strcspn(b, ";") : 0;
	if (b && b_len >= 2 && b[0] == '"' && b[b_len - 1] == '"') {
		b++;
		b_len -= 2;
	}
	if (!b || !boundary_valid(b, b_len)) {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_multipart_boundary",
				    "Invalid multipart boundary",
				    "the Content-Type multipart boundary is missing, longer than 70"
				    " characters or contains a character outside RFC 2046 bchars");
		return -1;
	}
	memcpy(req->multipart_boundary, b, b_len);
	req->multipart_boundary[b_len] = '\0';
	return 0;
}

/* Responds to a multipart body once it was read: 400 when no line of the first bytes is a
 * delimiter for the boundary, else 415. */
static enum MHD_Result answer_multipart(reg_request *req)
{
	char delimiter[80];
	int n = snprintf(delimiter, sizeof delimiter, "--%s", req->multipart_boundary);
	size_t d_len = (size_t)n;
	int found = 0;

	for (size_t i = 0; req->body && i + d_len <= req->body_len && !found; i++) {
		if ((i == 0 || req->body[i - 1] == '\n') && memcmp(req->body + i, delimiter, d_len) == 0) {
			char next = i + d_len < req->body_len ? req->body[i + d_len] : '\0';
			found = next == '\r' || next == '\n' || next == '-' || next == ' ' || next == '\t';
		}
	}
	if (!found)
		return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_multipart_boundary",
					   "Invalid multipart boundary",
					   "no delimiter line in the body matches the boundary '%s' (a"
					   " boundary containing a NUL byte is cut at the NUL)",
					   req->multipart_boundary);
	return reg_respond_problem(req, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
				   "Unsupported media type",
				   "multipart bodies are not accepted; send the raw bytes or JSON as"
				   " documented in docs/api.md");
}

/* Keeps the first MULTIPART_PROBE_BYTES of a multipart body for answer_multipart. */
static int keep_probe(reg_request *req, const char *data, size_t len)
{
	size_t room = MULTIPART_PROBE_BYTES - req->body_len;
	if (len > room)
		len = room;
	if (len == 0)
		return 0;
	char *grown = realloc(req->body, req->body_len + len + 1);
	if (!grown)
		return -1;
	req->body = grown;
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	req->body[req->body_len] = '\0';
	return 0;
}

/* Queues 413 for a body of `size` bytes and closes the connection after it, so the
 * client stops sending. */
static enum MHD_Result respond_body_too_large(reg_request *req, uint64_t size)
{
	struct MHD_Response *response;

	if (req->route->body == REG_BODY_JSON)
		response = reg_problem_response(req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
						"Request body too large", "the body of %" PRIu64
						"%s bytes exceeds the %zu-byte limit for JSON bodies",
						size, req->body_over_limit ? " or more" : "",
						REG_JSON_BODY_LIMIT);
	else
		response = reg_problem_response(req, MHD_HTTP_CONTENT_TOO_LARGE, "body_too_large",
						"Request body too large", "Content-Length %" PRIu64
						" exceeds every body size this registry accepts", size);
	if (response)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	return reg_respond(req, MHD_HTTP_CONTENT_TOO_LARGE, response);
}

static int read_content_length(reg_request *req)
{
	const char *value = reg_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	req->content_length = UINT64_MAX;
	if (!value)
		return 0;
	char *end;
	errno = 0;
	unsigned long long n = strtoull(value, &end, 10);
	if (errno || *end || value[0] < '0' || value[0] > '9') {
		reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_content_length",
				    "Invalid Content-Length", "Content-Length '%.40s' is not a decimal"
				    " byte count", value);
		return -1;
	}
	/* 2^64 - 1 fits no route's limit, and it is also the "no Content-Length" value of
	 * req->content_length, so it is rejected here for every route. */
	if (n == UINT64_MAX || (req->route->body == REG_BODY_JSON && n > REG_JSON_BODY_LIMIT)) {
		respond_body_too_large(req, n);
		return -1;
	}
	req->content_length = n;
	return 0;
}

/* Counts of the headers that frame a request body. */
struct framing_headers {
	unsigned content_lengths;
	unsigned transfer_encodings;
	const char *other_coding; /* a Transfer-Encoding other than "chunked", or NULL */
};

static enum MHD_Result count_framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
					    const char *value)
{
	struct framing_headers *counts = cls;
	(void)kind;

	if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		counts->content_lengths++;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		counts->transfer_encodings++;
		if (!value || strcasecmp(value, "chunked") != 0)
			counts->other_coding = value ? value : "";
	}
	return MHD_YES;
}

/* Rejects a request whose body length is ambiguous: several Content-Length headers, or
 * Content-Length with Transfer-Encoding. A proxy in front may frame such a request
 * differently (request smuggling), so RFC 9112 section 6.3 requires a 400 and closing the
 * connection. reg_header returns only the first of repeated headers, so they are counted
 * here. A transfer coding other than chunked gets 501. Returns 0, or -1 after queueing the
 * response. */
static int check_framing(reg_request *req)
{
	struct framing_headers counts = { 0, 0, NULL };
	char detail[160];

	MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_framing_header, &counts);
	if (counts.other_coding) {
		/* libmicrohttpd 0.9.75 decodes only "chunked", and a request in another coding,
		 * such as "gzip, chunked", got no response. RFC 9112 section 6.1 allows 501. */
		struct MHD_Response *response = reg_problem_response(
			req, MHD_HTTP_NOT_IMPLEMENTED, "unsupported_transfer_encoding",
			"Unsupported transfer coding", "Transfer-Encoding '%.60s' is not supported;"
			" send the body with Content-Length or 'Transfer-Encoding: chunked'",
			counts.other_coding);
		if (response)
			MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
		reg_respond(req, MHD_HTTP_NOT_IMPLEMENTED, response);
		return -1;
	}
	if (counts.content_lengths > 1)
		snprintf(detail, sizeof detail, "the request has %u Content-Length headers; send"
			 " exactly one", counts.content_lengths);
	else if (counts.content_lengths == 1 && counts.transfer_encodings > 0)
		snprintf(detail, sizeof detail, "the request has both Content-Length and"
			 " Transfer-Encoding; send only one of them");
	else
		return 0;

	struct MHD_Response *response = problem_response(req, MHD_HTTP_BAD_REQUEST,
							 "ambiguous_body_length",
							 "Ambiguous body length", detail);
	if (response)
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	reg_respond(req, MHD_HTTP_BAD_REQUEST, response);
	return -1;
}

/* First call of a request: route, authenticate, open the body sink. */
static enum MHD_Result begin_request(reg_request *req)
{
	if (check_framing(req) != 0)
		return MHD_YES;
	int rc = split_path(req);
	if (rc == -1)
		return MHD_NO;
	if (rc != 0)
		return MHD_YES;
	if (check_content_type(req) != 0 || req->multipart_boundary[0])
		return MHD_YES;
	req->route = find_route(req);
	if (!req->route)
		return MHD_YES;
	if (reg_state.settings.mirror_of && strcmp(req->route->method, "GET") != 0) {
		reg_mirror_refuse_write(req);
		return MHD_YES;
	}
	if (read_content_length(req) != 0)
		return MHD_YES;
	if (req->route->auth != REG_AUTH_NONE && reg_auth_check(req, req->route->auth) != 0)
		return MHD_YES;
	if (req->route->body == REG_BODY_STREAM && req->route->open_sink(req) != 0)
		return MHD_YES;
	return MHD_YES;
}

/* Takes one piece of the body. Returns MHD_NO to close the connection. */
static enum MHD_Result take_body(reg_request *req, const char *data, size_t len)
{
	req->body_received += len;
	atomic_fetch_add(&reg_state.bytes_received, len);
	if (req->responded)
		return MHD_YES; /* an early response was queued, so the rest is discarded */
	if (req->multipart_boundary[0])
		return keep_probe(req, data, len) == 0 ? MHD_YES : MHD_NO;

	switch (req->route->body) {
	case REG_BODY_NONE:
		return MHD_YES;
	case REG_BODY_JSON:
		/* A chunked body has no Content-Length to reject up front, and MHD 0.9.75
		 * queues no response while a body is read. So the rest of the body is read
		 * and dropped, up to the limit again, and 413 follows once it ended. */
		if (req->body_over_limit) {
			if (req->body_received > 2 * (uint64_t)REG_JSON_BODY_LIMIT) {
				REG_LOG(REG_LOG_WARN, "req", req->id, "JSON body over %zu bytes;"
					" closing", 2 * REG_JSON_BODY_LIMIT);
				return MHD_NO;
			}
			return MHD_YES;
		}
		if (req->body_len + len > REG_JSON_BODY_LIMIT) {
			req->body_over_limit = 1;
			free(req->body);
			req->body = NULL;
			req->body_len = 0;
			return MHD_YES;
		}
		char *grown = realloc(req->body, req->body_len + len + 1);
		if (!grown)
			return MHD_NO;
		req->body = grown;
		memcpy(req->body + req->body_len, data, len);
		req->body_len += len;
		req->body[req->body_len] = '\0';
		return MHD_YES;
	case REG_BODY_STREAM:
		if (req->sink.write(req, data, len) != 0) {
			/* Responses are queued only before or after the body, so the
			 * connection is closed without one. The sink logged why. */
			return MHD_NO;
		}
		return MHD_YES;
	}
	return MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	reg_request *req = *con_cls;
	(void)cls;
	(void)url;
	(void)version;

	if (!req)
		return MHD_NO;
	if (!req->method) {
		req->conn = conn;
		req->method = method;
		enum MHD_Result begun = begin_request(req);
		return req->queue_failed ? MHD_NO : begun;
	}
	if (req->queue_failed)
		return MHD_NO;
	if (*upload_data_size) {
		size_t len = *upload_data_size;
		*upload_data_size = 0;
		return take_body(req, upload_data, len);
	}
	if (req->responded)
		return MHD_YES;
	if (req->multipart_boundary[0])
		return answer_multipart(req);
	if (req->body_over_limit)
		return respond_body_too_large(req, req->body_received);
	enum MHD_Result cached;
	if (reg_cache_applies(req) && reg_cache_serve(req, &cached))
		return cached;
	if (!req->route) {
		/* begin_request stops without a route only after queueing a response. */
		REG_LOG(REG_LOG_ERROR, "req", req->id, "no route and no response for %.300s",
			req->raw_uri);
		return reg_respond(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	}
	enum MHD_Result result = req->route->handle(req);
	if (!req->responded) {
		/* MHD calls a handler again until it queues a response, so a handler that
		 * queued none would spin this thread. Send one 500 instead. */
		REG_LOG(REG_LOG_ERROR, "req", req->id, "handler of %s %.300s queued no response",
			req->method, req->raw_uri);
		return reg_respond(req, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL);
	}
	return result;
}

/* Allocates the request record with the raw URI, before MHD decodes it. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	(void)cls;
	(void)conn;
	reg_request *req = calloc(1, sizeof *req);
	if (!req)
		return NULL;
	req->raw_uri = strdup(uri);
	if (!req->raw_uri) {
		free(req);
		return NULL;
	}
	req->id = atomic_fetch_add(&next_request_id, 1);
	req->started_ns = monotonic_ns();
	req->token_id = -1;
	atomic_fetch_add(&requests_in_flight, 1);
	return req;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode code)
{
	reg_request *req = *con_cls;
	(void)cls;
	(void)conn;

	if (!req)
		return;
	if (req->sink.abort)
		req->sink.abort(req);

	double ms = (double)(monotonic_ns() - req->started_ns) / 1e6;
	if (code == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
		REG_LOG(REG_LOG_INFO, "req", req->id, "%s %.300s %u in=%" PRIu64 " %.1fms",
			req->method ? req->method : "-", req->raw_uri, req->status, req->body_received, ms);
	} else {
		REG_LOG(REG_LOG_WARN, "req", req->id,
			"%s %.300s ended early (MHD termination code %d) after %" PRIu64 " body bytes",
			req->method ? req->method : "-", req->raw_uri, (int)code, req->body_received);
	}
	unsigned class = req->status / 100;
	if (class < 6)
		atomic_fetch_add(&reg_state.requests_by_class[class], 1);

	for (size_t i = 0; i < req->n_segments; i++)
		free(req->segments[i]);
	free(req->raw_uri);
	free(req->body);
	free(req);
	*con_cls = NULL;
	atomic_fetch_sub(&requests_in_flight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char message[512];
	(void)cls;
	vsnprintf(message, sizeof message, fmt, ap);
	size_t len = strlen(message);
	while (len && (message[len - 1] == '\n' || message[len - 1] == '\r'))
		message[--len] = '\0';
	REG_WARN("libmicrohttpd: %s", message);
}

/* Resolves HOST:PORT or [HOST]:PORT. Returns 0, or -1 after logging. */
static int resolve_listen(const char *listen, struct sockaddr_storage *addr, socklen_t *addr_len)
{
	char host[256];
	const char *colon = strrchr(listen, ':');
	const char *port;
	size_t host_len;

	if (!colon)
		goto bad;
	port = colon + 1;
	host_len = (size_t)(colon - listen);
	if (listen[0] == '[') {
		if (host_len < 2 || listen[host_len - 1] != ']')
			goto bad;
		listen++;
		host_len -= 2;
	}
	if (host_len == 0 || host_len >= sizeof host || *port == '\0')
		goto bad;
	memcpy(host, listen, host_len);
	host[host_len] = '\0';

	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *found = NULL;
	int rc = getaddrinfo(host, port, &hints, &found);
	if (rc != 0) {
		REG_ERROR("cannot resolve listen address '%s': %s", listen, gai_strerror(rc));
		return -1;
	}
	memcpy(addr, found->ai_addr, found->ai_addrlen);
	*addr_len = found->ai_addrlen;
	freeaddrinfo(found);
	return 0;
bad:
	REG_ERROR("invalid listen address '%s'; expected HOST:PORT or [IPV6]:PORT", listen);
	return -1;
}

struct MHD_Daemon *reg_http_start(void)
{
	const reg_settings *s = &reg_state.settings;
	struct sockaddr_storage addr;
	socklen_t addr_len;

	if (resolve_listen(s->listen, &addr, &addr_len) != 0)
		return NULL;
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	if (addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;

	/* Event loop (epoll on Linux) in a pool of threads: a slow client costs a socket and
	 * its buffer, never a thread; see docs/operator.md. */
	struct MHD_Daemon *daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, NULL,
		MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)s->http_threads,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)s->connection_timeout,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned int)s->max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)s->per_ip_connections,
		/* Blob uploads arrive in pieces of about half this buffer: a 4 GiB upload took
		 * 1.6 times the CPU at 32 KiB. Small GETs favour a smaller buffer (cached GETs
		 * ran about 15% faster at 32 KiB, and callgrind puts most of their instructions
		 * in a memset inside libmicrohttpd 0.9.75), but the upload target decides. */
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024),
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_END);
	if (!daemon) {
		REG_ERROR("cannot listen on %s: %s (is the port in use?)", s->listen, strerror(errno));
		return NULL;
	}

	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	REG_INFO("listening on %s (port %u), %u HTTP threads", s->listen,
		 info ? (unsigned)info->port : 0U, s->http_threads);
	return daemon;
}

void reg_http_stop(struct MHD_Daemon *daemon, unsigned grace_seconds)
{
	/* Idle keep-alive connections do not delay the stop; requests in flight do. */
	MHD_quiesce_daemon(daemon);
	int64_t deadline = monotonic_ns() + (int64_t)grace_seconds * 1000000000;
	while (atomic_load(&requests_in_flight) > 0) {
		if (monotonic_ns() > deadline) {
			REG_WARN("stopping with %lld requests still in flight after %u s",
				 (long long)atomic_load(&requests_in_flight), grace_seconds);
			break;
		}
		usleep(20 * 1000);
	}
	MHD_stop_daemon(daemon);
}
