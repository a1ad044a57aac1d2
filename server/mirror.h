/* Follower mode (ucregd --mirror-of URL): a thread that replicates an upstream registry.
 * Each round it fetches the signed snapshot, checks it, reads the change feed since the
 * last accepted serial, downloads what is missing, re-verifies every version with
 * uc_verify_manifest and only then publishes it in the local catalog. */
#ifndef REG_MIRROR_H
#define REG_MIRROR_H

#include "http.h"

#define REG_MIRROR_DEFAULT_INTERVAL 60
#define REG_MIRROR_TRANSFERS 4

/* Loads the upstream key and starts the follower thread. Returns 0, or -1 after logging. */
int reg_mirror_start(void);

/* Stops the follower: running transfers are aborted and the thread joined. Partial
 * downloads stay in DATA/mirror-partial for the next start to resume. */
void reg_mirror_stop(void);

/* GET /api/mirror/status. */
enum MHD_Result reg_mirror_status_get(reg_request *req);

/* Queues the 405 a mirror sends for every write, naming the upstream. */
enum MHD_Result reg_mirror_refuse_write(reg_request *req);

#endif
