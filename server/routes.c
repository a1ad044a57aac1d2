#include "config.h"

#include "routes.h"

#include "blobs.h"
#include "mirror.h"
#include "packs.h"
#include "snapshot.h"
#include "uploads.h"

/* {} matches one path segment; handlers read their parameters from req->segments. */
const reg_route reg_routes[] = {
	{ "GET", "/healthz", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_health_get },
	{ "GET", "/metrics", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_metrics_get },
	{ "GET", "/api/blobs/sha256/{}", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_blob_get },
	{ "PUT", "/api/blobs/sha256/{}", REG_AUTH_PUSH, REG_BODY_STREAM, reg_blob_open_sink,
	  reg_blob_put },
	{ "POST", "/api/uploads", REG_AUTH_PUSH, REG_BODY_NONE, NULL, reg_upload_create },
	{ "GET", "/api/uploads/{}", REG_AUTH_PUSH, REG_BODY_NONE, NULL, reg_upload_get },
	{ "PATCH", "/api/uploads/{}", REG_AUTH_PUSH, REG_BODY_STREAM, reg_upload_open_chunk,
	  reg_upload_chunk },
	{ "PUT", "/api/uploads/{}", REG_AUTH_PUSH, REG_BODY_NONE, NULL, reg_upload_finish },
	{ "GET", "/api/packs", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_packs_list },
	{ "GET", "/api/packs/{}", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_pack_get },
	{ "GET", "/api/packs/{}/versions", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_versions_list },
	{ "GET", "/api/packs/{}/versions/{}", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_version_get },
	{ "PUT", "/api/packs/{}/versions/{}", REG_AUTH_PUSH, REG_BODY_JSON, NULL, reg_version_put },
	{ "DELETE", "/api/packs/{}/versions/{}", REG_AUTH_ADMIN, REG_BODY_NONE, NULL,
	  reg_version_delete },
	{ "GET", "/api/packs/{}/versions/{}/manifest", REG_AUTH_NONE, REG_BODY_NONE, NULL,
	  reg_manifest_get },
	{ "POST", "/api/packs/{}/versions/{}/evaluations", REG_AUTH_PUSH, REG_BODY_JSON, NULL,
	  reg_evaluation_post },
	{ "POST", "/api/packs/{}/versions/{}/yank", REG_AUTH_PUSH, REG_BODY_JSON, NULL,
	  reg_version_yank },
	{ "GET", "/api/stats", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_stats_get },
	{ "GET", "/api/jobs/{}", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_job_get },
	{ "GET", "/api/changes", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_changes_get },
	{ "GET", "/api/snapshot", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_snapshot_get },
	{ "GET", "/api/keys", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_keys_get },
	{ "GET", "/api/mirror/status", REG_AUTH_NONE, REG_BODY_NONE, NULL, reg_mirror_status_get },
};
const size_t reg_route_count = sizeof reg_routes / sizeof reg_routes[0];
