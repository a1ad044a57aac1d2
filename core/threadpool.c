/* The parallel loop behind pack writing and verification: threads are started for one
 * run, take indices from a shared counter in increasing order, and are joined at the end.
 * Also the serialised progress counter and a monotonic clock. */
#include "pack_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

/* An upper bound on threads for one run, whatever the caller requests. */
#define UCP_MAX_THREADS 256

typedef struct {
	atomic_size_t next;
	size_t count;
	ucp_task_fn task;
	void *ctx;
} run_state;

typedef struct {
	run_state *run;
	unsigned worker;
} worker_arg;

static void drain(run_state *run, unsigned worker)
{
	for (;;) {
		size_t index = atomic_fetch_add(&run->next, 1);
		if (index >= run->count)
			return;
		run->task(run->ctx, index, worker);
	}
}

static void *worker_main(void *arg)
{
	worker_arg *w = arg;
	drain(w->run, w->worker);
	return NULL;
}

unsigned ucp_thread_count(unsigned requested, size_t items)
{
	size_t threads = requested;
	if (threads == 0) {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		threads = online > 0 ? (size_t)online : 1;
	}
	if (threads > UCP_MAX_THREADS)
		threads = UCP_MAX_THREADS;
	if (threads > items)
		threads = items;
	return threads ? (unsigned)threads : 1;
}

void ucp_parallel_run(size_t count, unsigned threads, ucp_task_fn task, void *ctx)
{
	run_state run = {.count = count, .task = task, .ctx = ctx};
	atomic_init(&run.next, 0);
	if (threads > UCP_MAX_THREADS)
		threads = UCP_MAX_THREADS;

	pthread_t ids[UCP_MAX_THREADS];
	worker_arg args[UCP_MAX_THREADS];
	unsigned started = 0;
	for (unsigned w = 1; w < threads; w++) {
		args[started] = (worker_arg){.run = &run, .worker = w};
		if (pthread_create(&ids[started], NULL, worker_main, &args[started]) != 0)
			break;
		started++;
	}

	/* The caller is worker 0. A thread that failed to start leaves its indices to the rest. */
	drain(&run, 0);
	for (unsigned i = 0; i < started; i++)
		pthread_join(ids[i], NULL);
}

int ucp_progress_init(ucp_progress *progress, uc_progress_fn fn, void *ctx, uint64_t total)
{
	*progress = (ucp_progress){.fn = fn, .ctx = ctx, .total = total};
	if (!fn)
		return 0;

	pthread_mutex_t *lock = ucp_malloc(sizeof *lock);
	if (!lock)
		return -1;
	pthread_mutex_init(lock, NULL);
	progress->lock = lock;
	return 0;
}

void ucp_progress_add(ucp_progress *progress, uint64_t units)
{
	if (!progress->fn)
		return;

	pthread_mutex_lock(progress->lock);
	progress->done += units;
	progress->fn(progress->ctx, progress->done, progress->total);
	pthread_mutex_unlock(progress->lock);
}

void ucp_progress_destroy(ucp_progress *progress)
{
	if (!progress->lock)
		return;
	pthread_mutex_destroy(progress->lock);
	ucp_free(progress->lock);
	progress->lock = NULL;
}

double ucp_now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
