/* Pipeline of a follower round. The follower thread runs the transfers. Each finished
 * shard becomes an install task, and each version whose shards are all installed becomes a
 * verify task. The pipeline threads take both kinds from one queue. Each task is queued
 * once, so the queue never contains more than shards + versions entries. */
#include "config.h"

#include "mirror_pipeline.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blobs.h"
#include "log.h"
#include "server.h"

#define MAX_THREADS 16

/* A shard to download, shared by every version that references it. */
struct download {
	char hex[UC_SHA256_HEX_CHARS + 1];
	char path[96];
	char file[REG_PATH_MAX];
};

struct pipeline {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	size_t *queue;        /* task ids: below n_downloads, install that download; else verify */
	size_t head, tail;
	size_t outstanding;   /* queued or running tasks */
	int closed;           /* the follower queues no more install tasks */

	reg_pipeline_version *versions;
	size_t count;
	size_t *pending;      /* per version: distinct downloads not yet installed */
	struct download *downloads;
	reg_fetch_item *items;
	size_t n_downloads;
	int64_t owner_token;
	uint64_t installed_bytes;
};

static int uses_download(const reg_pipeline_version *v, const char *hex)
{
	for (size_t s = 0; s < uc_manifest_shard_count(v->parsed); s++) {
		if (strcmp(uc_manifest_shard_at(v->parsed, s)->file, hex) == 0)
			return 1;
	}
	return 0;
}

/* Queues a task; the caller holds the lock. */
static void push_task(struct pipeline *p, size_t task)
{
	p->queue[p->tail++] = task;
	p->outstanding++;
	pthread_cond_broadcast(&p->changed);
}

/* Marks every version that needs download `k` as failed; the caller holds the lock. */
static void fail_users(struct pipeline *p, size_t k, const char *kind, int transient,
		       const char *reason)
{
	for (size_t i = 0; i < p->count; i++) {
		reg_pipeline_version *v = &p->versions[i];
		if (v->failure_kind || !uses_download(v, p->downloads[k].hex))
			continue;
		v->failure_kind = kind;
		v->transient = transient;
		snprintf(v->reason, sizeof v->reason, "%s", reason);
	}
}

/* Installs download `k` (not under the lock: fsync and rename take time). */
static void install(struct pipeline *p, size_t k)
{
	struct download *d = &p->downloads[k];
	reg_fetch_item *item = &p->items[k];
	char actual[UC_SHA256_HEX_CHARS + 1], reason[512];
	const char *kind = NULL;
	int transient = 0;

	if (item->resumed_from > 0)
		REG_INFO("mirror: resumed shard %s from byte %" PRIu64, d->hex, item->resumed_from);
	if (!item->ok) {
		kind = "transfer";
		transient = item->transient;
		snprintf(reason, sizeof reason, "%s", item->error);
	} else {
		uc_sha256_to_hex(item->sha256, actual);
		if (strcmp(actual, d->hex) != 0) {
			kind = "version";
			snprintf(reason, sizeof reason, "shard %s from upstream hashes to %s; rejected",
				 d->hex, actual);
			unlink(d->file); /* the next attempt starts from byte 0 */
		} else {
			int fd = open(d->file, O_RDONLY | O_CLOEXEC);
			int rc = fd >= 0 ? reg_blob_install(d->file, fd, d->hex, item->size, p->owner_token,
							    0) : -1;
			if (fd >= 0)
				close(fd);
			if (rc < 0) {
				kind = "transfer";
				transient = 1;
				snprintf(reason, sizeof reason, "cannot install shard %s in the blob store",
					 d->hex);
			}
		}
	}

	pthread_mutex_lock(&p->lock);
	if (kind) {
		fail_users(p, k, kind, transient, reason);
	} else {
		p->installed_bytes += item->size;
		for (size_t i = 0; i < p->count; i++) {
			reg_pipeline_version *v = &p->versions[i];
			if (!v->failure_kind && uses_download(v, d->hex) && --p->pending[i] == 0)
				push_task(p, p->n_downloads + i);
		}
	}
	pthread_mutex_unlock(&p->lock);
}

static void run_task(struct pipeline *p, size_t task)
{
	if (task < p->n_downloads) {
		install(p, task);
		return;
	}
	reg_pipeline_version *v = &p->versions[task - p->n_downloads];
	v->job.manifest = v->manifest;
	v->job.manifest_len = v->manifest_len;
	reg_mirror_verify_one(&v->job);
	v->verified = 1;
}

static void *pipeline_main(void *arg)
{
	struct pipeline *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (p->head < p->tail) {
			size_t task = p->queue[p->head++];
			pthread_mutex_unlock(&p->lock);
			run_task(p, task);
			pthread_mutex_lock(&p->lock);
			p->outstanding--;
			pthread_cond_broadcast(&p->changed);
		} else if (p->closed && p->outstanding == 0) {
			break;
		} else {
			pthread_cond_wait(&p->changed, &p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Called by reg_fetch_files on the follower thread when download `index` ended. */
static void on_download_done(void *context, size_t index)
{
	struct pipeline *p = context;
	pthread_mutex_lock(&p->lock);
	push_task(p, index);
	pthread_mutex_unlock(&p->lock);
}

/* Lists the shards that are not in the blob store yet, once each, and counts per version
 * the distinct downloads it waits for. Returns 0 or -1 when out of memory. */
static int plan_downloads(struct pipeline *p, const char *partial_dir)
{
	size_t capacity = 0;
	for (size_t i = 0; i < p->count; i++)
		capacity += uc_manifest_shard_count(p->versions[i].parsed);
	p->downloads = calloc(capacity + 1, sizeof *p->downloads);
	p->items = calloc(capacity + 1, sizeof *p->items);
	p->pending = calloc(p->count + 1, sizeof *p->pending);
	p->queue = calloc(capacity + p->count + 1, sizeof *p->queue);
	if (!p->downloads || !p->items || !p->pending || !p->queue)
		return -1;

	for (size_t i = 0; i < p->count; i++) {
		const uc_manifest *m = p->versions[i].parsed;
		for (size_t s = 0; s < uc_manifest_shard_count(m); s++) {
			const uc_manifest_shard *shard = uc_manifest_shard_at(m, s);
			uint64_t have;
			size_t k = 0;
			while (k < p->n_downloads && strcmp(p->downloads[k].hex, shard->file) != 0)
				k++;
			if (k == p->n_downloads) {
				if (reg_blob_lookup(shard->file, &have) == 1)
					continue;
				struct download *d = &p->downloads[p->n_downloads++];
				snprintf(d->hex, sizeof d->hex, "%s", shard->file);
				snprintf(d->path, sizeof d->path, "/api/blobs/sha256/%s", d->hex);
				snprintf(d->file, sizeof d->file, "%s/%s.part", partial_dir, d->hex);
				p->items[k].path = d->path;
				p->items[k].file = d->file;
				p->items[k].size = shard->size;
			}
		}
	}
	for (size_t i = 0; i < p->count; i++) {
		for (size_t k = 0; k < p->n_downloads; k++)
			p->pending[i] += uses_download(&p->versions[i], p->downloads[k].hex);
	}
	return 0;
}

void reg_mirror_pipeline_run(reg_fetch *fetch, const char *partial_dir, int64_t owner_token,
			     reg_pipeline_version *versions, size_t count)
{
	struct pipeline p = { .versions = versions, .count = count, .owner_token = owner_token };
	pthread_t threads[MAX_THREADS];
	size_t started = 0;
	struct timespec start, end;

	if (count == 0)
		return;
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.changed, NULL);
	if (plan_downloads(&p, partial_dir) != 0) {
		for (size_t i = 0; i < count; i++) {
			versions[i].failure_kind = "transfer";
			versions[i].transient = 1;
			snprintf(versions[i].reason, sizeof versions[i].reason, "out of memory");
		}
		goto out;
	}
	for (size_t i = 0; i < count; i++) {
		if (p.pending[i] == 0)
			push_task(&p, p.n_downloads + i);
	}

	long online = sysconf(_SC_NPROCESSORS_ONLN);
	size_t thread_count = online > 0 ? (size_t)online : 1;
	if (thread_count > MAX_THREADS)
		thread_count = MAX_THREADS;
	while (started < thread_count && pthread_create(&threads[started], NULL, pipeline_main, &p) == 0)
		started++;

	clock_gettime(CLOCK_MONOTONIC, &start);
	reg_fetch_files(fetch, p.items, p.n_downloads, on_download_done, &p);
	pthread_mutex_lock(&p.lock);
	p.closed = 1;
	pthread_cond_broadcast(&p.changed);
	pthread_mutex_unlock(&p.lock);
	if (started == 0)
		pipeline_main(&p); /* no thread could start: do the work here */
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &end);
	REG_INFO("mirror: downloaded and installed %" PRIu64 " bytes in %zu shards for %zu"
		 " versions, verification included, in %.3f s on %zu threads", p.installed_bytes, p.n_downloads, count,
		 (double)(end.tv_sec - start.tv_sec) + (double)(end.tv_nsec - start.tv_nsec) / 1e9,
		 started);
out:
	free(p.queue);
	free(p.pending);
	free(p.items);
	free(p.downloads);
	pthread_cond_destroy(&p.changed);
	pthread_mutex_destroy(&p.lock);
}
