/* Local verification of a mirrored version with uc_verify_manifest over the blob store,
 * the function the verify workers run. */
#ifndef REG_MIRROR_VERIFY_H
#define REG_MIRROR_VERIFY_H

#include <stddef.h>

#include "uc_pack.h"

/* One version to verify. The caller owns `manifest`; `report_json` (uc_free) is set when
 * the verification ran. */
typedef struct {
	const char *manifest;   /* in, borrowed */
	size_t manifest_len;    /* in */
	uc_status status;       /* out: UC_OK when the verification ran */
	uc_verdict verdict;     /* out, when status is UC_OK */
	char *report_json;      /* out */
	double seconds;         /* out */
	char error[512];        /* out: why it could not run */
} reg_mirror_verify_job;

/* Verifies one job on the calling thread (single-threaded). */
void reg_mirror_verify_one(reg_mirror_verify_job *job);

#endif
