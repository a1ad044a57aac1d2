/* Parallel verification for the mirror follower. Versions are independent, so each thread
 * takes the next job and verifies it single-threaded. The follower publishes the results
 * afterwards from its own thread, because that thread owns its catalog connection. */
#include "config.h"

#include "mirror_verify.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "server.h"

#define MAX_VERIFY_THREADS 16

struct pool {
	reg_mirror_verify_job *jobs;
	size_t count;
	atomic_size_t next;
};

static void run_job(reg_mirror_verify_job *job)
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

static void *pool_main(void *arg)
{
	struct pool *pool = arg;
	size_t index;
	while ((index = atomic_fetch_add(&pool->next, 1)) < pool->count)
		run_job(&pool->jobs[index]);
	return NULL;
}

void reg_mirror_verify_all(reg_mirror_verify_job *jobs, size_t count)
{
	struct pool pool = { .jobs = jobs, .count = count };
	pthread_t threads[MAX_VERIFY_THREADS];
	long online = sysconf(_SC_NPROCESSORS_ONLN);
	size_t wanted = online > 0 ? (size_t)online : 1;
	size_t started = 0;

	atomic_init(&pool.next, 0);
	if (wanted > MAX_VERIFY_THREADS)
		wanted = MAX_VERIFY_THREADS;
	if (wanted > count)
		wanted = count;
	/* The calling thread is one of the verifiers; a thread that fails to start only
	 * means fewer of them. */
	while (started + 1 < wanted && pthread_create(&threads[started], NULL, pool_main, &pool) == 0)
		started++;
	pool_main(&pool);
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
}
