/* HTTP front end over libmicrohttpd: routing, request bodies, authentication and the
 * response helpers every handler uses. MHD's PostProcessor is never used: request bodies
 * are raw bytes (blobs) or JSON, read by our own code. */
#ifndef REG_HTTP_H
#define REG_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#define REG_MAX_SEGMENTS 8
#define REG_JSON_BODY_LIMIT ((size_t)16 << 20) /* manifests and evaluation records */

typedef struct reg_request reg_request;

/* Body sink of a streaming route (blob and chunk uploads), owned by the route's code. It is
 * opened on the first call and fed each piece before the route's handler runs. `abort`
 * runs when the request ends without the handler, because the client left or an error. */
typedef struct {
	void *state;
	int (*write)(reg_request *req, const char *data, size_t len); /* 0, or -1 with a problem set */
	void (*abort)(reg_request *req);
} reg_sink;

typedef enum {
	REG_AUTH_NONE = 0,
	REG_AUTH_PUSH, /* any valid token */
	REG_AUTH_ADMIN,
} reg_auth;

typedef enum {
	REG_BODY_NONE = 0, /* a body is read and discarded */
	REG_BODY_JSON,     /* buffered in memory up to REG_JSON_BODY_LIMIT */
	REG_BODY_STREAM,   /* handed to the sink opened by `open_sink` */
} reg_body;

/* A handler queues exactly one response through reg_respond* and returns its result. */
typedef enum MHD_Result (*reg_handler)(reg_request *req);

typedef struct {
	const char *method;  /* GET also serves HEAD */
	const char *pattern; /* "/api/packs/{}/versions/{}": {} matches one segment */
	reg_auth auth;
	reg_body body;
	/* Streaming routes: set up req->sink, or queue an error response and return -1. */
	int (*open_sink)(reg_request *req);
	reg_handler handle;
} reg_route;

struct reg_request {
	uint64_t id;
	struct MHD_Connection *conn;
	const char *method;
	char *raw_uri;  /* as sent, before percent-decoding */
	char *segments[REG_MAX_SEGMENTS]; /* decoded path segments */
	size_t n_segments;
	const reg_route *route;
	int64_t started_ns;

	/* Authenticated token, when the route requires one. */
	int64_t token_id;
	int token_admin;

	uint64_t content_length; /* UINT64_MAX when the client sent none */
	uint64_t body_received;
	char *body; /* JSON bodies, NUL-terminated */
	size_t body_len;

	char multipart_boundary[72]; /* non-empty for a multipart body, which is rejected and never parsed */

	reg_sink sink;
	int cache_fill;            /* store the 200 body in the response cache (cache.c) */
	uint64_t cache_generation; /* catalog generation read before the handler ran */
	int responded;        /* a response was queued */
	int failed;           /* a response was queued before the body ended */
	int body_over_limit;  /* a JSON body grew past REG_JSON_BODY_LIMIT; 413 after the body */
	int queue_failed;     /* MHD_queue_response failed, so the connection must be closed */
	unsigned status;
};

/* Starts the daemon on the configured address. Returns NULL after logging. */
struct MHD_Daemon *reg_http_start(void);

/* Stops accepting, waits up to `grace_seconds` for open requests, then stops the daemon. */
void reg_http_stop(struct MHD_Daemon *daemon, unsigned grace_seconds);

/* Response helpers. Each adds X-Registry-Serial and X-Request-Id, queues the response and
 * records the status. `headers` is NULL or a NULL-terminated list of name, value pairs. */
enum MHD_Result reg_respond(reg_request *req, unsigned status, struct MHD_Response *response);
/* Takes `body` and decrefs it. A NULL body, such as a failed json_pack, sends the
 * preformatted 500 problem instead. */
enum MHD_Result reg_respond_json(reg_request *req, unsigned status, json_t *body);
enum MHD_Result reg_respond_bytes(reg_request *req, unsigned status, const char *content_type,
				  const void *data, size_t len);

/* Queues an application/problem+json response: `code` is the stable machine-readable
 * name, `title` its fixed human summary, `detail` names the bad value and what to do. */
enum MHD_Result reg_respond_problem(reg_request *req, unsigned status, const char *code,
				    const char *title, const char *detail_fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Builds the response of reg_respond_problem without queueing it, for a caller that adds
 * headers and then passes it to reg_respond. Returns NULL when out of memory; reg_respond
 * then sends a 500. The caller owns the response until it passes it on. */
struct MHD_Response *reg_problem_response(reg_request *req, unsigned status, const char *code,
					  const char *title, const char *detail_fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Returns a request header (borrowed until the request ends) or NULL. */
const char *reg_header(reg_request *req, const char *name);
/* Returns a decoded query argument (borrowed) or NULL. */
const char *reg_query(reg_request *req, const char *name);

/* Returns 1 when `name` is a valid slug or version: [a-z0-9][a-z0-9._-]{0,63}, no "..". */
int reg_name_valid(const char *name);

#endif
