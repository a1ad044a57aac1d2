/* Evaluations on a mirror: copies the records upstream stores for a mirrored version.
 * They are measurements reported by upstream; the snapshot signature does not cover them. */
#ifndef REG_MIRROR_EVALUATIONS_H
#define REG_MIRROR_EVALUATIONS_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "mirror_fetch.h"

/* GETs upstream's /api/packs/{slug}/versions/{version} and inserts each evaluation that
 * passes reg_evaluation_check and is not stored yet under its upstream id, with one
 * local "evaluation" event each. Only a local verified version gets evaluations. An
 * invalid record is skipped and recorded in mirror_failures. Adds the number inserted
 * to `*added`. Returns 0, or -1 when a retry could fix the failure (recorded). */
int reg_mirror_sync_evaluations(sqlite3 *db, reg_fetch *fetch, const char *slug,
				const char *version, int64_t owner_token, size_t *added);

#endif
