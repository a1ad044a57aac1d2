#include "config.h"

#include "routes.h"

#include "blobs.h"

const reg_route reg_routes[] = {
	{ "GET", "/healthz", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_health_get },
	{ "GET", "/metrics", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_metrics_get },
	{ "GET", "/api/blobs/sha256/{}", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_blob_get },
	{ "PUT", "/api/blobs/sha256/{}", REG_AUTH_PUSH, REG_BODY_STREAM, reg_blob_open_sink,
	  reg_blob_put },
};
const size_t reg_route_count = sizeof reg_routes / sizeof reg_routes[0];
