/* The download, install and verify pipeline of a follower round. */
#ifndef REG_MIRROR_PIPELINE_H
#define REG_MIRROR_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "mirror_fetch.h"
#include "mirror_verify.h"
#include "uc_pack.h"

/* One version to bring in. The caller owns the inputs and frees job.report_json (uc_free). */
typedef struct {
	const char *manifest;       /* in: exact bytes, checked against the signed snapshot */
	size_t manifest_len;        /* in */
	const uc_manifest *parsed;  /* in: shard file names already checked to be digests */
	int verified;               /* out: 1 when `job` contains a verification result */
	reg_mirror_verify_job job;  /* out */
	const char *failure_kind;   /* out: "transfer" or "version" when a shard failed */
	int transient;              /* out: a retry might fix the failure */
	char reason[512];           /* out: why, when failure_kind is set */
} reg_pipeline_version;

/* Downloads every shard the versions lack (files in `partial_dir`), installs each in the
 * blob store as soon as its SHA-256 matches, and verifies each version as soon as all its
 * shards are installed. Installing and verifying run on one thread per online CPU while
 * the follower thread keeps downloading. Nothing here writes the follower's catalog
 * connection, so the caller records failures and publishes afterwards. */
void reg_mirror_pipeline_run(reg_fetch *fetch, const char *partial_dir, int64_t owner_token,
			     reg_pipeline_version *versions, size_t count);

#endif
