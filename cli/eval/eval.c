/* The scoring protocol: which predictions are scored, in which runs, and how the negative
 * log-likelihoods add up to a perplexity independent of the thread count. */
#include "config.h"

#include "eval.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

size_t eval_plan_windows(size_t count, uint32_t window, uint32_t stride, eval_window *out,
			 size_t capacity)
{
	if (count < 2)
		return 0;
	size_t last = count - 1; /* predictions exist at positions 0 .. count - 2 */
	if (window == 0) {
		if (capacity > 0)
			out[0] = (eval_window){.start = 0, .score_from = 0, .end = last};
		return 1;
	}

	size_t runs = 0, scored_until = 0;
	for (size_t start = 0;; start += stride) {
		size_t end = last - start > window ? start + window : last;
		if (end > scored_until) {
			if (runs < capacity)
				out[runs] = (eval_window){
					.start = start,
					.score_from = start > scored_until ? start : scored_until,
					.end = end,
				};
			runs++;
			scored_until = end;
		}
		if (end == last)
			break;
	}
	return runs;
}

void eval_token_set_free(eval_token_set *set)
{
	if (!set)
		return;
	if (set->tokens)
		for (size_t i = 0; i < set->count; i++)
			free(set->tokens[i]);
	free(set->tokens);
	free(set->lengths);
	memset(set, 0, sizeof *set);
}

uc_status eval_token_set_encode(const eval_corpus *corpus, const eval_tokenizer *tokenizer,
				eval_token_set *out, uc_error *err)
{
	memset(out, 0, sizeof *out);
	uc_status rc = UC_OK;
	out->tokens = calloc(corpus->count ? corpus->count : 1, sizeof *out->tokens);
	out->lengths = calloc(corpus->count ? corpus->count : 1, sizeof *out->lengths);
	if (!out->tokens || !out->lengths) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu documents", corpus->count);
		goto out;
	}
	out->count = corpus->count;
	for (size_t d = 0; d < corpus->count && rc == UC_OK; d++) {
		const eval_document *doc = &corpus->documents[d];
		if (tokenizer)
			rc = eval_tokenizer_encode(tokenizer, doc->text, doc->len, 1, &out->tokens[d],
						   &out->lengths[d], err);
		else
			rc = eval_bytes_encode(doc->text, doc->len, &out->tokens[d], &out->lengths[d],
					       err);
	}

out:
	if (rc != UC_OK)
		eval_token_set_free(out);
	return rc;
}

double eval_score_ppl(const eval_score *score)
{
	if (score->scored == 0)
		return NAN;
	return exp(score->nll_sum / (double)score->scored);
}

/* One run of the plan, and its result. */
typedef struct {
	const uint32_t *tokens;
	eval_window window;
	double nll_sum;
} score_item;

typedef struct {
	const eval_model *model;
	score_item *items;
	size_t *order; /* item indexes, longest run first, so the last runs to finish are short */
	size_t count;
	size_t longest_run; /* predictions scored by the longest run */
	unsigned threads_per_run;
	atomic_size_t next;
} score_job;

typedef struct {
	score_job *job;
	double *nll; /* one value per scored prediction of the current run */
	uc_error err;
	uc_status status;
} score_worker;

static uc_status run_item(score_worker *worker, score_item *item)
{
	const eval_window *window = &item->window;
	uc_status rc = eval_model_score_run(worker->job->model, item->tokens + window->start,
					    window->end - window->start,
					    window->score_from - window->start,
					    worker->job->threads_per_run, worker->nll, &worker->err);
	if (rc != UC_OK)
		return rc;
	double nll = 0.0;
	for (size_t i = 0; i < window->end - window->score_from; i++)
		nll += worker->nll[i];
	item->nll_sum = nll;
	return UC_OK;
}

static void *score_thread(void *arg)
{
	score_worker *worker = arg;
	score_job *job = worker->job;
	while (worker->status == UC_OK) {
		size_t next = atomic_fetch_add(&job->next, 1);
		if (next >= job->count)
			break;
		worker->status = run_item(worker, &job->items[job->order[next]]);
	}
	return NULL;
}

static uc_status check_tokens(const eval_model *model, const eval_token_set *set, uc_error *err)
{
	uint32_t vocab = eval_model_vocab_size(model);
	for (size_t d = 0; d < set->count; d++)
		for (size_t i = 0; i < set->lengths[d]; i++)
			if (set->tokens[d][i] >= vocab)
				return eval_fail(err, UC_ERR_INVALID,
						"document %zu, token %zu: id %u is outside the model's "
						"vocabulary of %u", d + 1, i, set->tokens[d][i], vocab);
	return UC_OK;
}

static uc_status check_options(const eval_model *model, const eval_options *options,
			       uc_error *err)
{
	uint32_t max_seq = eval_model_max_seq_len(model);
	if (options->window == 0)
		return UC_OK;
	if (options->stride == 0 || options->stride > options->window)
		return eval_fail(err, UC_ERR_INVALID,
				"stride %u must be between 1 and the window %u, or a token would be "
				"skipped", options->stride, options->window);
	if (max_seq != 0 && options->window > max_seq)
		return eval_fail(err, UC_ERR_INVALID,
				"window %u is longer than the model's maximum sequence length %u",
				options->window, max_seq);
	return UC_OK;
}

/* Builds the list of runs: documents in order, each document's windows in order. */
static uc_status plan_items(const eval_model *model, const eval_token_set *set,
			    const eval_options *options, score_item **out, size_t *count,
			    uc_error *err)
{
	uint32_t max_seq = eval_model_max_seq_len(model);
	size_t total = 0;
	for (size_t d = 0; d < set->count; d++) {
		size_t len = set->lengths[d];
		if (options->window == 0 && max_seq != 0 && len > max_seq)
			len = max_seq;
		total += eval_plan_windows(len, options->window, options->stride, NULL, 0);
	}

	score_item *items = calloc(total ? total : 1, sizeof *items);
	eval_window *windows = NULL;
	if (!items)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu runs", total);
	size_t used = 0;
	for (size_t d = 0; d < set->count; d++) {
		size_t len = set->lengths[d];
		if (options->window == 0 && max_seq != 0 && len > max_seq)
			len = max_seq;
		size_t runs = eval_plan_windows(len, options->window, options->stride, NULL, 0);
		free(windows);
		windows = calloc(runs ? runs : 1, sizeof *windows);
		if (!windows) {
			free(items);
			return eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu windows", runs);
		}
		eval_plan_windows(len, options->window, options->stride, windows, runs);
		for (size_t r = 0; r < runs; r++) {
			items[used].tokens = set->tokens[d];
			items[used].window = windows[r];
			used++;
		}
	}
	free(windows);
	*out = items;
	*count = total;
	return UC_OK;
}

unsigned eval_choose_threads(unsigned requested)
{
	unsigned threads = requested;
	if (threads == 0) {
		long online = sysconf(_SC_NPROCESSORS_ONLN);
		threads = online > 0 ? (unsigned)online : 1;
	}
	return threads > EVAL_MAX_THREADS ? EVAL_MAX_THREADS : threads;
}

typedef struct {
	size_t fed;   /* positions the run feeds */
	size_t index; /* the run's place in the plan */
} run_length;

static int compare_longer_first(const void *a, const void *b)
{
	const run_length *x = a, *y = b;
	if (x->fed != y->fed)
		return x->fed > y->fed ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

static uc_status order_longest_first(score_job *job, uc_error *err)
{
	size_t slots = job->count ? job->count : 1;
	run_length *lengths = calloc(slots, sizeof *lengths);
	job->order = calloc(slots, sizeof *job->order);
	if (!lengths || !job->order) {
		free(lengths);
		free(job->order);
		job->order = NULL;
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu runs", job->count);
	}
	for (size_t i = 0; i < job->count; i++) {
		lengths[i].fed = job->items[i].window.end - job->items[i].window.start;
		lengths[i].index = i;
	}
	qsort(lengths, job->count, sizeof *lengths, compare_longer_first);
	for (size_t i = 0; i < job->count; i++)
		job->order[i] = lengths[i].index;
	for (size_t i = 0; i < job->count; i++) {
		size_t scored = job->items[i].window.end - job->items[i].window.score_from;
		if (scored > job->longest_run)
			job->longest_run = scored;
	}
	free(lengths);
	return UC_OK;
}

/* NOTE: an RWKV run is sequential by nature, so an RWKV corpus with fewer runs (documents
 * or windows) than threads leaves threads idle. */
static unsigned choose_threads(unsigned requested, size_t items)
{
	unsigned threads = eval_choose_threads(requested);
	if (threads > items)
		threads = items ? (unsigned)items : 1;
	return threads;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs every item on `threads` threads. With fewer runs than threads, a Llama model
 * takes the runs one at a time and splits each run's positions among the threads. */
static uc_status run_items(score_job *job, unsigned threads, uc_error *err)
{
	unsigned workers_wanted = threads;
	job->threads_per_run = 1;
	if (job->count < threads && eval_model_arch(job->model) == EVAL_ARCH_LLAMA) {
		workers_wanted = 1;
		job->threads_per_run = threads;
	}

	score_worker workers[EVAL_MAX_THREADS];
	pthread_t ids[EVAL_MAX_THREADS];
	memset(workers, 0, sizeof workers);
	unsigned started = 0, allocated = 0;
	uc_status rc = UC_OK;
	for (; allocated < workers_wanted; allocated++) {
		workers[allocated].job = job;
		workers[allocated].nll = calloc(job->longest_run ? job->longest_run : 1, sizeof(double));
		if (!workers[allocated].nll) {
			rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu scores", job->longest_run);
			break;
		}
	}
	for (unsigned t = 1; t < workers_wanted && rc == UC_OK; t++) {
		if (pthread_create(&ids[t], NULL, score_thread, &workers[t]) != 0)
			break; /* the threads already started, and this one, share the work */
		started = t;
	}
	if (rc == UC_OK)
		score_thread(&workers[0]);
	for (unsigned t = 1; t <= started; t++)
		pthread_join(ids[t], NULL);

	for (unsigned t = 0; t < allocated; t++) {
		if (rc == UC_OK && workers[t].status != UC_OK) {
			rc = workers[t].status;
			if (err)
				*err = workers[t].err;
		}
		free(workers[t].nll);
	}
	return rc;
}

uc_status eval_score_tokens(const eval_model *model, const eval_token_set *set,
			    const eval_options *options, eval_score *out, uc_error *err)
{
	memset(out, 0, sizeof *out);
	score_item *items = NULL;
	size_t count = 0;
	uc_status rc = check_options(model, options, err);
	if (rc == UC_OK)
		rc = check_tokens(model, set, err);
	if (rc == UC_OK)
		rc = plan_items(model, set, options, &items, &count, err);
	if (rc == UC_OK && count == 0) {
		free(items);
		rc = eval_fail(err, UC_ERR_INVALID,
			       "nothing to score: none of the %zu documents has 2 or more tokens",
			       set->count);
	}
	if (rc != UC_OK)
		return rc;

	score_job job = {.model = model, .items = items, .count = count};
	atomic_init(&job.next, 0);
	rc = order_longest_first(&job, err);
	if (rc != UC_OK) {
		free(items);
		return rc;
	}
	double started = now_seconds();
	rc = run_items(&job, choose_threads(options->threads, count), err);
	out->seconds = now_seconds() - started;

	/* Summed in plan order, never in completion order, so every thread count agrees. */
	for (size_t i = 0; i < count && rc == UC_OK; i++) {
		out->nll_sum += items[i].nll_sum;
		out->scored += items[i].window.end - items[i].window.score_from;
		out->fed += items[i].window.end - items[i].window.start;
	}
	out->documents = set->count;
	free(job.order);
	free(items);
	return rc;
}
