/* One round of the mirror follower (see mirror.h), run by its thread. */
#ifndef REG_MIRROR_ROUND_H
#define REG_MIRROR_ROUND_H

#include <stdint.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "mirror_fetch.h"
#include "server.h"

/* What a round needs; owned by the follower thread. */
typedef struct {
	sqlite3 *db;
	reg_fetch *fetch;
	EVP_PKEY *key;           /* the upstream's public key */
	int64_t owner_token;     /* owner of mirrored packs */
	int full_round;          /* 1: reconcile every version, then cleared */
	char partial_dir[REG_DIR_MAX]; /* DATA/mirror-partial: downloads in progress */
} reg_mirror_context;

/* Runs one round. Failures are logged and recorded in mirror_failures; the accepted
 * serial advances only when nothing failed for a reason that a retry could fix. */
void reg_mirror_run_round(reg_mirror_context *ctx);

#endif
