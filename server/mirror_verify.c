/* Local verification for the mirror follower. The pipeline threads of a round run it, one
 * version per thread, and the follower publishes the results from its own thread. */
#include "config.h"

#include "mirror_verify.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "server.h"

void reg_mirror_verify_one(reg_mirror_verify_job *job)
{
	uc_verify_options options;
	uc_report *report = NULL;
	uc_error err;
	struct timespec start, end;

	uc_verify_options_init(&options);
	options.threads = 1;
	clock_gettime(CLOCK_MONOTONIC, &start);
	job->status = uc_verify_manifest(job->manifest, job->manifest_len, reg_state.blob_dir,
					 &options, &report, &err);
	clock_gettime(CLOCK_MONOTONIC, &end);
	job->seconds = (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9;
	atomic_fetch_add(&reg_state.verify_runs, 1);
	atomic_fetch_add(&reg_state.verify_microseconds, (uint64_t)(job->seconds * 1e6));
	if (job->status != UC_OK) {
		snprintf(job->error, sizeof job->error, "%s", err.message);
		return;
	}
	job->verdict = uc_report_verdict(report);
	job->report_json = uc_report_to_json(report);
	uc_report_free(report);
}
