/* The Llama forward pass, one position at a time: the step-by-step state behind
 * eval_state_step, and whole runs scored on several threads with positions split among
 * them. Both compute every position with the same functions in the same order, so they
 * give the same bits. */
#include "config.h"

#include "llama.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Per-thread working vectors for one position. */
typedef struct {
	float *xb, *xb2, *hb, *hb2, *k, *v, *scores, *logits;
} llama_scratch;

/* Keys and values of every layer: [n_layers][n_kv_heads][positions][head_size], so each
 * head's keys are contiguous rows. */
typedef struct {
	float *key, *value;
	uint32_t positions;
} llama_cache;

struct eval_llama_state {
	const eval_llama *llama;
	uint32_t pos;
	float *x, *q;
	llama_scratch scratch;
	llama_cache cache;
};

static float *alloc_floats(size_t a, size_t b, int *failed)
{
	size_t n;
	if (eval_mul_size(a, b, &n) != 0 || eval_mul_size(n, sizeof(float), &n) != 0) {
		*failed = 1;
		return NULL;
	}
	float *p = calloc(1, n);
	if (!p)
		*failed = 1;
	return p;
}

static void scratch_free(llama_scratch *scratch)
{
	float *vectors[] = {scratch->xb, scratch->xb2, scratch->hb, scratch->hb2,
			    scratch->k, scratch->v, scratch->scores, scratch->logits};
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
		free(vectors[i]);
	memset(scratch, 0, sizeof *scratch);
}

/* Returns 0, or -1 when out of memory (with nothing left allocated). */
static int scratch_init(llama_scratch *scratch, const eval_llama *llama, uint32_t positions)
{
	int failed = 0;
	scratch->xb = alloc_floats(llama->dim, 1, &failed);
	scratch->xb2 = alloc_floats(llama->dim, 1, &failed);
	scratch->hb = alloc_floats(llama->hidden_dim, 1, &failed);
	scratch->hb2 = alloc_floats(llama->hidden_dim, 1, &failed);
	scratch->k = alloc_floats(llama->kv_dim, 1, &failed);
	scratch->v = alloc_floats(llama->kv_dim, 1, &failed);
	scratch->scores = alloc_floats(positions, 1, &failed);
	scratch->logits = alloc_floats(llama->vocab_size, 1, &failed);
	if (failed)
		scratch_free(scratch);
	return failed ? -1 : 0;
}

static void cache_free(llama_cache *cache)
{
	free(cache->key);
	free(cache->value);
	memset(cache, 0, sizeof *cache);
}

static int cache_init(llama_cache *cache, const eval_llama *llama, uint32_t positions)
{
	int failed = 0;
	size_t rows = (size_t)llama->n_layers * positions;
	cache->positions = positions;
	cache->key = alloc_floats(rows, llama->kv_dim, &failed);
	cache->value = alloc_floats(rows, llama->kv_dim, &failed);
	if (failed)
		cache_free(cache);
	return failed ? -1 : 0;
}

/* Returns the cache row of (layer, KV head, position). */
static size_t cache_row(const eval_llama *llama, const llama_cache *cache, uint32_t layer,
			uint32_t kv_head, uint32_t pos)
{
	size_t head_index = (size_t)layer * llama->n_kv_heads + kv_head;
	return (head_index * cache->positions + pos) * llama->head_size;
}

/* Rotates the pairs (2i, 2i + 1) of every head in `v` (n values) by the angles of `pos`. */
static void apply_rope(const eval_llama *llama, float *v, uint32_t n, uint32_t pos)
{
	uint32_t half = llama->head_size / 2;
	const float *cos_row = llama->rope_cos + (size_t)pos * half;
	const float *sin_row = llama->rope_sin + (size_t)pos * half;
	for (uint32_t i = 0; i < n; i += 2) {
		uint32_t pair = (i % llama->head_size) / 2;
		float a = v[i], b = v[i + 1];
		v[i] = a * cos_row[pair] - b * sin_row[pair];
		v[i + 1] = a * sin_row[pair] + b * cos_row[pair];
	}
}

static void softmax(float *x, uint32_t n)
{
	float max = x[0];
	for (uint32_t i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	float sum = 0.0f;
	for (uint32_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	for (uint32_t i = 0; i < n; i++)
		x[i] /= sum;
}

/* First half of layer `l` at position `pos`: computes the query `q` from `x` and stores
 * the position's keys and values in the cache. */
static void project_qkv(const eval_llama *llama, llama_cache *cache, llama_scratch *scratch,
			uint32_t l, const float *x, float *q, uint32_t pos)
{
	const llama_layer *layer = &llama->layers[l];
	eval_rmsnorm(scratch->xb, x, layer->attention_norm, llama->dim, LLAMA_NORM_EPS);
	eval_matvec(q, layer->wq, scratch->xb, llama->dim, llama->dim);
	eval_matvec(scratch->k, layer->wk, scratch->xb, llama->kv_dim, llama->dim);
	eval_matvec(scratch->v, layer->wv, scratch->xb, llama->kv_dim, llama->dim);
	apply_rope(llama, q, llama->dim, pos);
	apply_rope(llama, scratch->k, llama->kv_dim, pos);

	size_t bytes = llama->head_size * sizeof(float);
	for (uint32_t h = 0; h < llama->n_kv_heads; h++) {
		size_t row = cache_row(llama, cache, l, h, pos);
		memcpy(cache->key + row, scratch->k + (size_t)h * llama->head_size, bytes);
		memcpy(cache->value + row, scratch->v + (size_t)h * llama->head_size, bytes);
	}
}

/* Computes the multi-head attention of `q` over positions 0..pos of layer `l` into
 * scratch->xb. */
static void attend(const eval_llama *llama, const llama_cache *cache, llama_scratch *scratch,
		   uint32_t l, const float *q, uint32_t pos)
{
	uint32_t group = llama->n_heads / llama->n_kv_heads;
	uint32_t positions = pos + 1;
	float scale = 1.0f / sqrtf((float)llama->head_size);

	for (uint32_t h = 0; h < llama->n_heads; h++) {
		const float *head_q = q + (size_t)h * llama->head_size;
		size_t first_row = cache_row(llama, cache, l, h / group, 0);
		eval_matvec(scratch->scores, cache->key + first_row, head_q, positions,
			    llama->head_size);
		for (uint32_t t = 0; t < positions; t++)
			scratch->scores[t] *= scale;
		softmax(scratch->scores, positions);

		float *out = scratch->xb + (size_t)h * llama->head_size;
		memset(out, 0, llama->head_size * sizeof(float));
		for (uint32_t t = 0; t < positions; t++) {
			const float *v = cache->value + first_row + (size_t)t * llama->head_size;
			float weight = scratch->scores[t];
			for (uint32_t i = 0; i < llama->head_size; i++)
				out[i] += weight * v[i];
		}
	}
}

/* Second half of layer `l` at position `pos`: attention, output projection and the
 * feed-forward network, each added to `x`. */
static void mix_layer(const eval_llama *llama, const llama_cache *cache, llama_scratch *scratch,
		      uint32_t l, float *x, const float *q, uint32_t pos)
{
	const llama_layer *layer = &llama->layers[l];
	attend(llama, cache, scratch, l, q, pos);
	eval_matvec(scratch->xb2, layer->wo, scratch->xb, llama->dim, llama->dim);
	for (uint32_t i = 0; i < llama->dim; i++)
		x[i] += scratch->xb2[i];

	eval_rmsnorm(scratch->xb, x, layer->ffn_norm, llama->dim, LLAMA_NORM_EPS);
	eval_matvec(scratch->hb, layer->w1, scratch->xb, llama->hidden_dim, llama->dim);
	eval_matvec(scratch->hb2, layer->w3, scratch->xb, llama->hidden_dim, llama->dim);
	for (uint32_t i = 0; i < llama->hidden_dim; i++) {
		float gate = scratch->hb[i];
		scratch->hb[i] = gate / (1.0f + expf(-gate)) * scratch->hb2[i];
	}
	eval_matvec(scratch->xb, layer->w2, scratch->hb, llama->dim, llama->hidden_dim);
	for (uint32_t i = 0; i < llama->dim; i++)
		x[i] += scratch->xb[i];
}

/* Final norm and classifier: the logits for `x` in scratch->logits. */
static void classify(const eval_llama *llama, llama_scratch *scratch, const float *x)
{
	eval_rmsnorm(scratch->xb, x, llama->final_norm, llama->dim, LLAMA_NORM_EPS);
	eval_matvec(scratch->logits, llama->classifier, scratch->xb, llama->vocab_size, llama->dim);
}

uc_status eval_llama_state_new(const eval_llama *llama, uint32_t positions,
			       eval_llama_state **out, uc_error *err)
{
	assert(positions > 0);
	assert(positions <= llama->max_seq_len);
	eval_llama_state *state = calloc(1, sizeof *state);
	int failed = state == NULL;
	if (state) {
		state->llama = llama;
		state->x = alloc_floats(llama->dim, 1, &failed);
		state->q = alloc_floats(llama->dim, 1, &failed);
		failed |= scratch_init(&state->scratch, llama, positions) != 0;
		failed |= cache_init(&state->cache, llama, positions) != 0;
	}
	if (failed) {
		eval_llama_state_free(state);
		*out = NULL;
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for a KV cache of %u positions",
				 positions);
	}
	*out = state;
	return UC_OK;
}

void eval_llama_state_free(eval_llama_state *state)
{
	if (!state)
		return;
	free(state->x);
	free(state->q);
	scratch_free(&state->scratch);
	cache_free(&state->cache);
	free(state);
}

void eval_llama_state_reset(eval_llama_state *state)
{
	/* Cache rows at or after pos are written before they are read, so they need no clearing. */
	state->pos = 0;
}

const float *eval_llama_step(eval_llama_state *state, uint32_t token)
{
	const eval_llama *llama = state->llama;
	uint32_t pos = state->pos;
	assert(token < llama->vocab_size);
	assert(pos < state->cache.positions);
	memcpy(state->x, llama->embedding + (size_t)token * llama->dim, llama->dim * sizeof(float));
	for (uint32_t l = 0; l < llama->n_layers; l++) {
		project_qkv(llama, &state->cache, &state->scratch, l, state->x, state->q, pos);
		mix_layer(llama, &state->cache, &state->scratch, l, state->x, state->q, pos);
	}
	classify(llama, &state->scratch, state->x);
	state->pos++;
	return state->scratch.logits;
}

/* ---- Whole runs on several threads ---- */

typedef enum { PHASE_EMBED, PHASE_PROJECT, PHASE_MIX, PHASE_SCORE } batch_phase;

typedef struct {
	const eval_llama *llama;
	const uint32_t *tokens;
	uint32_t count;      /* positions fed */
	uint32_t score_from; /* first scored position */
	unsigned threads;
	llama_cache cache;
	float *x, *q;        /* [count][dim] each */
	double *nll;         /* [count - score_from] */
	batch_phase phase;
	uint32_t layer;
} llama_batch;

typedef struct {
	llama_batch *batch;
	unsigned index; /* handles positions index, index + threads, ... */
	llama_scratch scratch;
} batch_worker;

/* Runs the current phase for this worker's positions. */
static void *run_phase(void *arg)
{
	batch_worker *worker = arg;
	llama_batch *batch = worker->batch;
	const eval_llama *llama = batch->llama;
	for (uint32_t p = worker->index; p < batch->count; p += batch->threads) {
		float *x = batch->x + (size_t)p * llama->dim;
		float *q = batch->q + (size_t)p * llama->dim;
		switch (batch->phase) {
		case PHASE_EMBED:
			memcpy(x, llama->embedding + (size_t)batch->tokens[p] * llama->dim,
			       llama->dim * sizeof(float));
			break;
		case PHASE_PROJECT:
			project_qkv(llama, &batch->cache, &worker->scratch, batch->layer, x, q, p);
			break;
		case PHASE_MIX:
			mix_layer(llama, &batch->cache, &worker->scratch, batch->layer, x, q, p);
			break;
		case PHASE_SCORE:
			if (p < batch->score_from)
				break;
			classify(llama, &worker->scratch, x);
			batch->nll[p - batch->score_from] = eval_negative_log_likelihood(
				worker->scratch.logits, llama->vocab_size, batch->tokens[p + 1]);
			break;
		}
	}
	return NULL;
}

/* Runs one phase on every worker and waits for all of them. A worker whose thread cannot
 * be started runs on the calling thread, so the work is the same either way. */
static void run_all(batch_worker *workers, llama_batch *batch)
{
	pthread_t ids[EVAL_MAX_THREADS];
	int started[EVAL_MAX_THREADS] = {0};
	for (unsigned t = 1; t < batch->threads; t++)
		started[t] = pthread_create(&ids[t], NULL, run_phase, &workers[t]) == 0;
	run_phase(&workers[0]);
	for (unsigned t = 1; t < batch->threads; t++) {
		if (started[t])
			pthread_join(ids[t], NULL);
		else
			run_phase(&workers[t]);
	}
}

uc_status eval_llama_score_run(const eval_llama *llama, const uint32_t *tokens, uint32_t count,
			       uint32_t score_from, unsigned threads, double *nll, uc_error *err)
{
	assert(count > 0);
	assert(count <= llama->max_seq_len);
	assert(score_from < count);
	if (threads == 0 || threads > EVAL_MAX_THREADS)
		threads = threads ? EVAL_MAX_THREADS : 1;
	if (threads > count)
		threads = count;

	llama_batch batch = {.llama = llama, .tokens = tokens, .count = count,
			     .score_from = score_from, .threads = threads, .nll = nll};
	batch_worker workers[EVAL_MAX_THREADS];
	memset(workers, 0, threads * sizeof workers[0]);
	int failed = cache_init(&batch.cache, llama, count) != 0;
	batch.x = alloc_floats(count, llama->dim, &failed);
	batch.q = alloc_floats(count, llama->dim, &failed);
	for (unsigned t = 0; t < threads; t++) {
		workers[t].batch = &batch;
		workers[t].index = t;
		failed |= scratch_init(&workers[t].scratch, llama, count) != 0;
	}

	uc_status rc = UC_OK;
	if (failed) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for a run of %u positions", count);
	} else {
		batch.phase = PHASE_EMBED;
		run_all(workers, &batch);
		for (uint32_t l = 0; l < llama->n_layers; l++) {
			/* Attention at position p reads the keys of positions 0..p, which other
			 * workers write, so every projection finishes before any mixing. */
			batch.layer = l;
			batch.phase = PHASE_PROJECT;
			run_all(workers, &batch);
			batch.phase = PHASE_MIX;
			run_all(workers, &batch);
		}
		batch.phase = PHASE_SCORE;
		run_all(workers, &batch);
	}

	for (unsigned t = 0; t < threads; t++)
		scratch_free(&workers[t].scratch);
	cache_free(&batch.cache);
	free(batch.x);
	free(batch.q);
	return rc;
}
