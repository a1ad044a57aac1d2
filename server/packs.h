/* Pack and version handlers of the REST API: publishing (packs.c) and reads (catalog.c). */
#ifndef REG_PACKS_H
#define REG_PACKS_H

#include "db.h"
#include "http.h"
#include "uc.h"

#define REG_JOB_MAX_ATTEMPTS 3
#define REG_JOB_MAX_ATTEMPTS_TEXT "3"

/* Writes. */
enum MHD_Result reg_version_put(reg_request *req);
enum MHD_Result reg_version_yank(reg_request *req);
enum MHD_Result reg_version_delete(reg_request *req); /* admin only */
enum MHD_Result reg_evaluation_post(reg_request *req);

/* Reads. */
enum MHD_Result reg_packs_list(reg_request *req);
enum MHD_Result reg_pack_get(reg_request *req);
enum MHD_Result reg_versions_list(reg_request *req);
enum MHD_Result reg_version_get(reg_request *req);
enum MHD_Result reg_manifest_get(reg_request *req);
enum MHD_Result reg_job_get(reg_request *req);
enum MHD_Result reg_changes_get(reg_request *req);
enum MHD_Result reg_stats_get(reg_request *req);

/* Validates the {slug} and {version} path segments (indexes 2 and 4) that the route has.
 * Queues a 400 naming the bad value and returns -1 when one is invalid. */
int reg_check_names(reg_request *req, int has_version);

/* Returns 1 when `name` is one of the comparators: canonical-transformer,
 * architecture-compatible, cls-cosine. */
int reg_comparator_valid(const char *name);

/* Records which shard blobs a version references (the version_blobs rows), inside the
 * caller's write transaction. Returns 0, or -1 on a catalog error. */
int reg_version_link_blobs(sqlite3 *db, int64_t version_id, const uc_manifest *manifest);

/* Queues the 500 response for a catalog failure already logged. */
enum MHD_Result reg_respond_catalog_error(reg_request *req);

#endif
