/* Verify workers. Each thread claims the oldest queued job in a short write transaction,
 * verifies outside any transaction with the same libuc function as `uc verify`, then
 * records the verdict, the report and a change event in a second transaction. */
#include "config.h"

#include "workers.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"
#include "uc_pack.h"

/* A running job whose lease ran out is taken again. Verification of the largest packs is
 * expected well within this. NOTE: the lease is not renewed while a job runs. */
#define LEASE_SECONDS (6 * 3600)
#define IDLE_POLL_SECONDS 2

static pthread_t *threads;
static unsigned thread_count;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int stopping;
static unsigned long wake_generation;

/* A claimed job with what the worker needs, read in the claim transaction. */
struct job {
	int64_t id;
	int64_t version_id;
	int attempts;
	char *manifest;
	size_t manifest_len;
	char slug[80];
	char version[80];
};

static void job_clear(struct job *job)
{
	free(job->manifest);
	memset(job, 0, sizeof *job);
}

static int read_job_details(sqlite3 *db, struct job *job)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT v.manifest, p.slug, v.version FROM versions v JOIN packs p ON p.id = v.pack_id"
		" WHERE v.id = ?");
	if (!stmt)
		return -1;
	sqlite3_bind_int64(stmt, 1, job->version_id);
	int rc = -1;
	if (sqlite3_step(stmt) == SQLITE_ROW) {
		job->manifest_len = (size_t)sqlite3_column_bytes(stmt, 0);
		job->manifest = malloc(job->manifest_len + 1);
		if (job->manifest) {
			memcpy(job->manifest, sqlite3_column_blob(stmt, 0), job->manifest_len);
			job->manifest[job->manifest_len] = '\0';
			snprintf(job->slug, sizeof job->slug, "%s", sqlite3_column_text(stmt, 1));
			snprintf(job->version, sizeof job->version, "%s", sqlite3_column_text(stmt, 2));
			rc = 0;
		}
	}
	sqlite3_finalize(stmt);
	return rc;
}

/* Takes the oldest queued job (or one whose lease expired). Returns 1 with `job` filled,
 * 0 when there is none, -1 on a catalog error. */
static int claim_job(sqlite3 *db, struct job *job)
{
	int64_t now = reg_now();
	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT id, version_id, attempts FROM jobs WHERE state = 'queued'"
		" OR (state = 'running' AND lease_until < ?) ORDER BY id LIMIT 1");
	if (!stmt)
		goto fail;
	sqlite3_bind_int64(stmt, 1, now);
	int rc = sqlite3_step(stmt);
	if (rc == SQLITE_ROW) {
		job->id = sqlite3_column_int64(stmt, 0);
		job->version_id = sqlite3_column_int64(stmt, 1);
		job->attempts = sqlite3_column_int(stmt, 2) + 1;
	}
	sqlite3_finalize(stmt);
	if (rc == SQLITE_DONE) {
		reg_db_rollback(db);
		return 0;
	}
	if (rc != SQLITE_ROW)
		goto fail;

	stmt = reg_db_prepare(db, "UPDATE jobs SET state = 'running', attempts = ?, lease_until = ?,"
				  " updated_at = ? WHERE id = ?");
	if (!stmt)
		goto fail;
	sqlite3_bind_int(stmt, 1, job->attempts);
	sqlite3_bind_int64(stmt, 2, now + LEASE_SECONDS);
	sqlite3_bind_int64(stmt, 3, now);
	sqlite3_bind_int64(stmt, 4, job->id);
	rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE || read_job_details(db, job) != 0)
		goto fail;
	if (reg_db_commit(db) != SQLITE_OK) {
		job_clear(job);
		return -1;
	}
	return 1;
fail:
	job_clear(job);
	reg_db_rollback(db);
	return -1;
}

/* Outcome of one verification run, stored by finish_job. */
struct outcome {
	const char *job_state;     /* done, failed or queued (retry) */
	const char *version_status; /* verified, failed, or NULL to leave pending */
	char reason[600];
	char *report_json;         /* libuc string or NULL */
	double seconds;
};

static int finish_job(sqlite3 *db, const struct job *job, const struct outcome *out)
{
	int64_t now = reg_now();
	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"UPDATE jobs SET state = ?, last_error = ?, verify_seconds = ?, lease_until = NULL,"
		" updated_at = ? WHERE id = ?");
	if (!stmt)
		goto fail;
	sqlite3_bind_text(stmt, 1, out->job_state, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, out->reason[0] ? out->reason : NULL, -1, SQLITE_STATIC);
	sqlite3_bind_double(stmt, 3, out->seconds);
	sqlite3_bind_int64(stmt, 4, now);
	sqlite3_bind_int64(stmt, 5, job->id);
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		goto fail;

	if (out->version_status) {
		stmt = reg_db_prepare(db, "UPDATE versions SET status = ?, status_reason = ?,"
					  " verify_report = ?, verified_at = ? WHERE id = ?");
		if (!stmt)
			goto fail;
		int verified = strcmp(out->version_status, "verified") == 0;
		sqlite3_bind_text(stmt, 1, out->version_status, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, verified ? NULL : out->reason, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 3, out->report_json, -1, SQLITE_STATIC);
		if (verified)
			sqlite3_bind_int64(stmt, 4, now);
		sqlite3_bind_int64(stmt, 5, job->version_id);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
		if (rc != SQLITE_DONE ||
		    reg_db_append_event(db, "verify", job->slug, job->version, out->version_status) != SQLITE_OK)
			goto fail;
	}
	return reg_db_commit(db) == SQLITE_OK ? 0 : -1;
fail:
	reg_db_rollback(db);
	return -1;
}

static double elapsed_seconds(const struct timespec *start)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* Summarises a failed report: its verdict and the first error message. */
static void failure_reason(const char *report_json, uc_verdict verdict, char *out, size_t size)
{
	json_t *report = report_json ? json_loads(report_json, 0, NULL) : NULL;
	json_t *first = report ? json_array_get(json_object_get(report, "errors"), 0) : NULL;
	const char *message = first ? json_string_value(json_object_get(first, "message")) : NULL;
	snprintf(out, size, "%s: %s", uc_verdict_name(verdict), message ? message : "see the report");
	json_decref(report);
}

static void run_job(sqlite3 *db, struct job *job)
{
	struct outcome out = { 0 };
	struct timespec start;
	uc_verify_options options;
	uc_report *report = NULL;
	uc_error err;

	REG_LOG(REG_LOG_INFO, "job", (uint64_t)job->id, "verifying %s@%s (attempt %d of %d)", job->slug,
		job->version, job->attempts, REG_JOB_MAX_ATTEMPTS);
	clock_gettime(CLOCK_MONOTONIC, &start);
	uc_verify_options_init(&options);
	options.threads = 1; /* parallelism comes from the worker pool */
	uc_status status = uc_verify_manifest(job->manifest, job->manifest_len, reg_state.blob_dir,
					      &options, &report, &err);
	out.seconds = elapsed_seconds(&start);
	atomic_fetch_add(&reg_state.verify_runs, 1);
	atomic_fetch_add(&reg_state.verify_microseconds, (uint64_t)(out.seconds * 1e6));

	if (status != UC_OK) {
		snprintf(out.reason, sizeof out.reason, "verification could not run: %s", err.message);
		int last = job->attempts >= REG_JOB_MAX_ATTEMPTS;
		out.job_state = last ? "failed" : "queued";
		out.version_status = last ? "failed" : NULL;
		REG_LOG(REG_LOG_ERROR, "job", (uint64_t)job->id, "%s%s", out.reason,
			last ? "; giving up" : "; will retry");
	} else {
		uc_verdict verdict = uc_report_verdict(report);
		out.report_json = uc_report_to_json(report);
		out.job_state = "done";
		if (verdict == UC_VERDICT_OK) {
			out.version_status = "verified";
		} else {
			out.version_status = "failed";
			failure_reason(out.report_json, verdict, out.reason, sizeof out.reason);
		}
		REG_LOG(REG_LOG_INFO, "job", (uint64_t)job->id, "%s@%s %s in %.3f s%s%s", job->slug,
			job->version, out.version_status, out.seconds, out.reason[0] ? ": " : "",
			out.reason);
	}
	if (finish_job(db, job, &out) != 0)
		REG_LOG(REG_LOG_ERROR, "job", (uint64_t)job->id,
			"cannot record the outcome; the job will be taken again when its lease expires");
	uc_free(out.report_json);
	uc_report_free(report);
}

static void *worker_main(void *arg)
{
	(void)arg;
	sqlite3 *db = reg_db_thread();
	if (!db)
		return NULL;
	for (;;) {
		pthread_mutex_lock(&wake_lock);
		int stop = stopping;
		unsigned long seen = wake_generation;
		pthread_mutex_unlock(&wake_lock);
		if (stop)
			break;

		struct job job = { 0 };
		int claimed = claim_job(db, &job);
		if (claimed == 1) {
			run_job(db, &job);
			job_clear(&job);
			continue;
		}

		/* Nothing to do (or a catalog error): sleep until notified or the poll time. */
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += IDLE_POLL_SECONDS;
		pthread_mutex_lock(&wake_lock);
		while (!stopping && wake_generation == seen) {
			if (pthread_cond_timedwait(&wake, &wake_lock, &until) != 0)
				break;
		}
		pthread_mutex_unlock(&wake_lock);
	}
	return NULL;
}

/* Requeues jobs a previous process left running. A job that has used all its attempts
 * (its worker was interrupted each time) is failed together with its version. */
static int recover_jobs(sqlite3 *db)
{
	static const char *const statements[] = {
		"UPDATE versions SET status = 'failed', status_reason = 'verification was interrupted"
		" ' || (SELECT attempts FROM jobs j WHERE j.version_id = versions.id AND j.state ="
		" 'running') || ' times (daemon stopped or crashed)' WHERE id IN (SELECT version_id FROM"
		" jobs WHERE state = 'running' AND attempts >= " REG_JOB_MAX_ATTEMPTS_TEXT ")",
		"UPDATE jobs SET state = 'failed', last_error = 'interrupted ' || attempts || ' times',"
		" lease_until = NULL WHERE state = 'running' AND attempts >= " REG_JOB_MAX_ATTEMPTS_TEXT,
		"UPDATE jobs SET state = 'queued', lease_until = NULL WHERE state = 'running'",
	};
	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	int requeued = 0;
	for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
		char *message = NULL;
		if (sqlite3_exec(db, statements[i], NULL, NULL, &message) != SQLITE_OK) {
			REG_ERROR("cannot recover interrupted jobs: %s", message);
			sqlite3_free(message);
			reg_db_rollback(db);
			return -1;
		}
		requeued = sqlite3_changes(db);
	}
	if (reg_db_commit(db) != SQLITE_OK)
		return -1;
	if (requeued)
		REG_INFO("requeued %d verify jobs left running by the previous process", requeued);
	return 0;
}

int reg_workers_start(unsigned count)
{
	sqlite3 *db = reg_db_thread();
	if (!db || recover_jobs(db) != 0)
		return -1;
	if (count == 0) {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		count = online > 0 ? (unsigned)online : 1;
	}
	threads = calloc(count, sizeof *threads);
	if (!threads) {
		REG_ERROR("out of memory starting %u verify workers", count);
		return -1;
	}
	for (thread_count = 0; thread_count < count; thread_count++) {
		if (pthread_create(&threads[thread_count], NULL, worker_main, NULL) != 0) {
			REG_ERROR("cannot start verify worker %u", thread_count);
			reg_workers_stop();
			return -1;
		}
	}
	REG_INFO("started %u verify workers", count);
	return 0;
}

void reg_workers_notify(void)
{
	pthread_mutex_lock(&wake_lock);
	wake_generation++;
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&wake_lock);
}

void reg_workers_stop(void)
{
	pthread_mutex_lock(&wake_lock);
	stopping = 1;
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&wake_lock);
	for (unsigned i = 0; i < thread_count; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	threads = NULL;
	thread_count = 0;
}
