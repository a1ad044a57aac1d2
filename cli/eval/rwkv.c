/* The RWKV v5 forward pass (v5.1 and v5.2) as rwkv.cpp computes it, one token at a time.
 *
 * Tensor names and shapes are those of rwkv.cpp files in PyTorch order. `time_decay`
 * already contains exp(-exp(w)), and the bonus (`time_first` in v5.1, `time_faaaa` in v5.2)
 * is used as stored. v5.1 has one decay and one bonus per head, and v5.2 one per channel
 * plus an output gate (`att.gate.weight`, `att.time_mix_g`). */
#include "config.h"

#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Epsilon of every LayerNorm and of the per-head GroupNorm ln_x, in both versions. With
 * 64e-5 for ln_x, the v5.2 test model's logits differ from rwkv.cpp's expected values by
 * up to 1.1, and with 1e-5 they match to 6e-6. test_eval_rwkv checks both versions. */
#define RWKV_NORM_EPS 1e-5f

typedef struct {
	const float *ln1_weight, *ln1_bias, *ln2_weight, *ln2_bias;
	const float *att_mix_k, *att_mix_v, *att_mix_r, *att_mix_g;
	const float *decay, *bonus;
	const float *key, *value, *receptance, *gate, *output;
	const float *ln_x_weight, *ln_x_bias;
	const float *ffn_mix_k, *ffn_mix_r, *ffn_key, *ffn_value, *ffn_receptance;
} rwkv_layer;

struct eval_rwkv {
	uint32_t n_embed, n_layers, n_heads, head_size, ffn_dim, vocab_size;
	int v5_2;
	const float *embedding, *ln0_weight, *ln0_bias, *ln_out_weight, *ln_out_bias, *head;
	rwkv_layer *layers;
};

struct eval_rwkv_state {
	const eval_rwkv *rwkv;
	float *x, *xx, *xk, *xv, *xr, *xg, *r, *k, *v, *g, *wkv, *ffn_hidden, *logits;
	float *att_shift;  /* [n_layers][n_embed]: the previous token's ln1 output */
	float *ffn_shift;  /* [n_layers][n_embed]: the previous token's ln2 output */
	float *wkv_state;  /* [n_layers][n_heads][head_size][head_size], key index first */
};

static uc_status infer_sizes(eval_rwkv *rwkv, const eval_weights *weights, uc_error *err)
{
	const eval_tensor *embedding = eval_weights_find(weights, "emb.weight");
	if (!embedding || embedding->ndim != 2 || embedding->shape[0] == 0 ||
	    embedding->shape[1] == 0 || embedding->shape[0] > UINT32_MAX / 2 ||
	    embedding->shape[1] > 65536)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor emb.weight is missing or not a [vocab, n_embed] matrix");
	rwkv->vocab_size = (uint32_t)embedding->shape[0];
	rwkv->n_embed = (uint32_t)embedding->shape[1];

	while (rwkv->n_layers < 4096) {
		char name[64];
		snprintf(name, sizeof name, "blocks.%u.ln1.weight", rwkv->n_layers);
		if (!eval_weights_find(weights, name))
			break;
		rwkv->n_layers++;
	}
	if (rwkv->n_layers == 0)
		return eval_fail(err, UC_ERR_FORMAT, "tensor blocks.0.ln1.weight is missing");

	rwkv->v5_2 = eval_weights_find(weights, "blocks.0.att.gate.weight") != NULL;
	const eval_tensor *decay = eval_weights_find(weights, "blocks.0.att.time_decay");
	if (!decay || decay->ndim != 3 || decay->shape[0] == 0 ||
	    rwkv->n_embed % decay->shape[0] != 0)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor blocks.0.att.time_decay is missing or not [heads, size, 1] "
				"with heads dividing n_embed %u", rwkv->n_embed);
	rwkv->n_heads = (uint32_t)decay->shape[0];
	rwkv->head_size = rwkv->n_embed / rwkv->n_heads;

	const eval_tensor *ffn_key = eval_weights_find(weights, "blocks.0.ffn.key.weight");
	if (!ffn_key || ffn_key->ndim != 2 || ffn_key->shape[0] == 0 || ffn_key->shape[0] > 1u << 20)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor blocks.0.ffn.key.weight is missing or not a matrix");
	rwkv->ffn_dim = (uint32_t)ffn_key->shape[0];
	return UC_OK;
}

typedef struct {
	const char *suffix;
	uint32_t ndim;
	const uint64_t *dims;
	const float **slot;
} tensor_slot;

static uc_status resolve_slots(const eval_weights *weights, uint32_t layer, const tensor_slot *table,
			       size_t count, uc_error *err)
{
	for (size_t i = 0; i < count; i++) {
		char name[128];
		snprintf(name, sizeof name, "blocks.%u.%s", layer, table[i].suffix);
		uc_status rc = eval_require_tensor(weights, name, table[i].ndim, table[i].dims,
						   table[i].slot, err);
		if (rc != UC_OK)
			return rc;
	}
	return UC_OK;
}

static uc_status resolve_layer(eval_rwkv *rwkv, const eval_weights *weights, uint32_t l,
			       uc_error *err)
{
	rwkv_layer *layer = &rwkv->layers[l];
	const uint64_t vector[] = {rwkv->n_embed};
	const uint64_t square[] = {rwkv->n_embed, rwkv->n_embed};
	const uint64_t up[] = {rwkv->ffn_dim, rwkv->n_embed};
	const uint64_t down[] = {rwkv->n_embed, rwkv->ffn_dim};
	const uint64_t per_channel[] = {rwkv->n_heads, rwkv->head_size, 1};
	const uint64_t per_head[] = {rwkv->n_heads, 1, 1};
	const tensor_slot common[] = {
		{"ln1.weight", 1, vector, &layer->ln1_weight},
		{"ln1.bias", 1, vector, &layer->ln1_bias},
		{"ln2.weight", 1, vector, &layer->ln2_weight},
		{"ln2.bias", 1, vector, &layer->ln2_bias},
		{"att.time_mix_k", 1, vector, &layer->att_mix_k},
		{"att.time_mix_v", 1, vector, &layer->att_mix_v},
		{"att.time_mix_r", 1, vector, &layer->att_mix_r},
		{"att.key.weight", 2, square, &layer->key},
		{"att.value.weight", 2, square, &layer->value},
		{"att.receptance.weight", 2, square, &layer->receptance},
		{"att.output.weight", 2, square, &layer->output},
		{"att.ln_x.weight", 1, vector, &layer->ln_x_weight},
		{"att.ln_x.bias", 1, vector, &layer->ln_x_bias},
		{"ffn.time_mix_k", 1, vector, &layer->ffn_mix_k},
		{"ffn.time_mix_r", 1, vector, &layer->ffn_mix_r},
		{"ffn.key.weight", 2, up, &layer->ffn_key},
		{"ffn.value.weight", 2, down, &layer->ffn_value},
		{"ffn.receptance.weight", 2, square, &layer->ffn_receptance},
	};
	const tensor_slot v5_2[] = {
		{"att.time_mix_g", 1, vector, &layer->att_mix_g},
		{"att.gate.weight", 2, square, &layer->gate},
		{"att.time_decay", 3, per_channel, &layer->decay},
		{"att.time_faaaa", 3, per_channel, &layer->bonus},
	};
	const tensor_slot v5_1[] = {
		{"att.time_decay", 3, per_head, &layer->decay},
		{"att.time_first", 3, per_head, &layer->bonus},
	};

	uc_status rc = resolve_slots(weights, l, common, sizeof common / sizeof common[0], err);
	if (rc == UC_OK && rwkv->v5_2)
		rc = resolve_slots(weights, l, v5_2, sizeof v5_2 / sizeof v5_2[0], err);
	else if (rc == UC_OK)
		rc = resolve_slots(weights, l, v5_1, sizeof v5_1 / sizeof v5_1[0], err);
	return rc;
}

static uc_status resolve_outer(eval_rwkv *rwkv, const eval_weights *weights, uc_error *err)
{
	const uint64_t vector[] = {rwkv->n_embed};
	const uint64_t head[] = {rwkv->vocab_size, rwkv->n_embed};
	rwkv->embedding = eval_weights_find(weights, "emb.weight")->data;
	uc_status rc = eval_require_tensor(weights, "blocks.0.ln0.weight", 1, vector,
					   &rwkv->ln0_weight, err);
	if (rc == UC_OK)
		rc = eval_require_tensor(weights, "blocks.0.ln0.bias", 1, vector, &rwkv->ln0_bias, err);
	if (rc == UC_OK)
		rc = eval_require_tensor(weights, "ln_out.weight", 1, vector, &rwkv->ln_out_weight, err);
	if (rc == UC_OK)
		rc = eval_require_tensor(weights, "ln_out.bias", 1, vector, &rwkv->ln_out_bias, err);
	if (rc == UC_OK)
		rc = eval_require_tensor(weights, "head.weight", 2, head, &rwkv->head, err);
	return rc;
}

uc_status eval_rwkv_new(const eval_weights *weights, eval_rwkv **out, uc_error *err)
{
	eval_rwkv *rwkv = calloc(1, sizeof *rwkv);
	uc_status rc = UC_OK;
	if (!rwkv) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for the model");
		goto out;
	}
	rc = infer_sizes(rwkv, weights, err);
	if (rc != UC_OK)
		goto out;
	rwkv->layers = calloc(rwkv->n_layers, sizeof *rwkv->layers);
	if (!rwkv->layers) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for %u layers", rwkv->n_layers);
		goto out;
	}
	for (uint32_t l = 0; l < rwkv->n_layers && rc == UC_OK; l++)
		rc = resolve_layer(rwkv, weights, l, err);
	if (rc == UC_OK)
		rc = resolve_outer(rwkv, weights, err);

out:
	if (rc != UC_OK) {
		eval_rwkv_free(rwkv);
		rwkv = NULL;
	}
	*out = rwkv;
	return rc;
}

void eval_rwkv_free(eval_rwkv *rwkv)
{
	if (!rwkv)
		return;
	free(rwkv->layers);
	free(rwkv);
}

uint32_t eval_rwkv_vocab_size(const eval_rwkv *rwkv)
{
	return rwkv->vocab_size;
}

int eval_rwkv_is_v5_2(const eval_rwkv *rwkv)
{
	return rwkv->v5_2;
}

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

uc_status eval_rwkv_state_new(const eval_rwkv *rwkv, eval_rwkv_state **out, uc_error *err)
{
	eval_rwkv_state *state = calloc(1, sizeof *state);
	if (!state) {
		*out = NULL;
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for a model state");
	}
	state->rwkv = rwkv;
	int failed = 0;
	uint32_t n = rwkv->n_embed;
	float **vectors[] = {&state->x, &state->xx, &state->xk, &state->xv, &state->xr, &state->xg,
			     &state->r, &state->k, &state->v, &state->g, &state->wkv};
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
		*vectors[i] = alloc_floats(n, 1, &failed);
	state->ffn_hidden = alloc_floats(rwkv->ffn_dim, 1, &failed);
	state->logits = alloc_floats(rwkv->vocab_size, 1, &failed);
	state->att_shift = alloc_floats(rwkv->n_layers, n, &failed);
	state->ffn_shift = alloc_floats(rwkv->n_layers, n, &failed);
	state->wkv_state = alloc_floats((size_t)rwkv->n_layers * n, rwkv->head_size, &failed);
	if (failed) {
		eval_rwkv_state_free(state);
		*out = NULL;
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for a recurrent state");
	}
	*out = state;
	return UC_OK;
}

void eval_rwkv_state_free(eval_rwkv_state *state)
{
	if (!state)
		return;
	float *vectors[] = {state->x, state->xx, state->xk, state->xv, state->xr, state->xg,
			    state->r, state->k, state->v, state->g, state->wkv, state->ffn_hidden,
			    state->logits, state->att_shift, state->ffn_shift, state->wkv_state};
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
		free(vectors[i]);
	free(state);
}

void eval_rwkv_state_reset(eval_rwkv_state *state)
{
	const eval_rwkv *rwkv = state->rwkv;
	size_t n = (size_t)rwkv->n_layers * rwkv->n_embed;
	memset(state->att_shift, 0, n * sizeof(float));
	memset(state->ffn_shift, 0, n * sizeof(float));
	memset(state->wkv_state, 0, n * rwkv->head_size * sizeof(float));
}

/* out = x * mix + previous * (1 - mix), channel by channel (token shift). */
static void token_shift(float *out, const float *x, const float *previous, const float *mix,
			uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		out[i] = x[i] * mix[i] + previous[i] * (1.0f - mix[i]);
}

/* The linear attention of every head for one token: reads r, k, v, updates the layer's
 * state and writes the head outputs to state->wkv. */
static void time_mix_heads(eval_rwkv_state *state, const rwkv_layer *layer, float *wkv_state)
{
	const eval_rwkv *rwkv = state->rwkv;
	uint32_t size = rwkv->head_size;
	for (uint32_t h = 0; h < rwkv->n_heads; h++) {
		const float *r = state->r + (size_t)h * size;
		const float *k = state->k + (size_t)h * size;
		const float *v = state->v + (size_t)h * size;
		float *out = state->wkv + (size_t)h * size;
		float *s = wkv_state + (size_t)h * size * size;
		memset(out, 0, size * sizeof(float));
		for (uint32_t i = 0; i < size; i++) {
			float decay = rwkv->v5_2 ? layer->decay[h * size + i] : layer->decay[h];
			float bonus = rwkv->v5_2 ? layer->bonus[h * size + i] : layer->bonus[h];
			float *s_row = s + (size_t)i * size;
			for (uint32_t j = 0; j < size; j++) {
				float a = k[i] * v[j];
				out[j] += r[i] * (bonus * a + s_row[j]);
				s_row[j] = s_row[j] * decay + a;
			}
		}
	}
}

/* Layer normalisation of each head's outputs separately (GroupNorm with one group per head). */
static void group_norm(float *x, const rwkv_layer *layer, uint32_t n_heads, uint32_t size,
		       float eps)
{
	for (uint32_t h = 0; h < n_heads; h++) {
		size_t offset = (size_t)h * size;
		eval_layernorm(x + offset, x + offset, layer->ln_x_weight + offset,
			       layer->ln_x_bias + offset, size, eps);
	}
}

static void time_mix(eval_rwkv_state *state, const rwkv_layer *layer, uint32_t l)
{
	const eval_rwkv *rwkv = state->rwkv;
	uint32_t n = rwkv->n_embed;
	float *previous = state->att_shift + (size_t)l * n;

	eval_layernorm(state->xx, state->x, layer->ln1_weight, layer->ln1_bias, n, RWKV_NORM_EPS);
	token_shift(state->xk, state->xx, previous, layer->att_mix_k, n);
	token_shift(state->xv, state->xx, previous, layer->att_mix_v, n);
	token_shift(state->xr, state->xx, previous, layer->att_mix_r, n);
	if (rwkv->v5_2)
		token_shift(state->xg, state->xx, previous, layer->att_mix_g, n);
	memcpy(previous, state->xx, n * sizeof(float));

	eval_matvec(state->r, layer->receptance, state->xr, n, n);
	eval_matvec(state->k, layer->key, state->xk, n, n);
	eval_matvec(state->v, layer->value, state->xv, n, n);
	time_mix_heads(state, layer, state->wkv_state + (size_t)l * n * rwkv->head_size);
	group_norm(state->wkv, layer, rwkv->n_heads, rwkv->head_size, RWKV_NORM_EPS);

	if (rwkv->v5_2) {
		eval_matvec(state->g, layer->gate, state->xg, n, n);
		for (uint32_t i = 0; i < n; i++) {
			float gate = state->g[i] / (1.0f + expf(-state->g[i]));
			state->wkv[i] *= gate;
		}
	}
	eval_matvec(state->xx, layer->output, state->wkv, n, n);
	for (uint32_t i = 0; i < n; i++)
		state->x[i] += state->xx[i];
}

static void channel_mix(eval_rwkv_state *state, const rwkv_layer *layer, uint32_t l)
{
	const eval_rwkv *rwkv = state->rwkv;
	uint32_t n = rwkv->n_embed;
	float *previous = state->ffn_shift + (size_t)l * n;

	eval_layernorm(state->xx, state->x, layer->ln2_weight, layer->ln2_bias, n, RWKV_NORM_EPS);
	token_shift(state->xk, state->xx, previous, layer->ffn_mix_k, n);
	token_shift(state->xr, state->xx, previous, layer->ffn_mix_r, n);
	memcpy(previous, state->xx, n * sizeof(float));

	eval_matvec(state->r, layer->ffn_receptance, state->xr, n, n);
	eval_matvec(state->ffn_hidden, layer->ffn_key, state->xk, rwkv->ffn_dim, n);
	for (uint32_t i = 0; i < rwkv->ffn_dim; i++) {
		float relu = state->ffn_hidden[i] > 0.0f ? state->ffn_hidden[i] : 0.0f;
		state->ffn_hidden[i] = relu * relu;
	}
	eval_matvec(state->v, layer->ffn_value, state->ffn_hidden, n, rwkv->ffn_dim);
	for (uint32_t i = 0; i < n; i++)
		state->x[i] += state->v[i] / (1.0f + expf(-state->r[i]));
}

const float *eval_rwkv_step(eval_rwkv_state *state, uint32_t token)
{
	const eval_rwkv *rwkv = state->rwkv;
	uint32_t n = rwkv->n_embed;
	assert(token < rwkv->vocab_size);
	eval_layernorm(state->x, rwkv->embedding + (size_t)token * n, rwkv->ln0_weight,
		       rwkv->ln0_bias, n, RWKV_NORM_EPS);
	for (uint32_t l = 0; l < rwkv->n_layers; l++) {
		time_mix(state, &rwkv->layers[l], l);
		channel_mix(state, &rwkv->layers[l], l);
	}
	eval_layernorm(state->x, state->x, rwkv->ln_out_weight, rwkv->ln_out_bias, n, RWKV_NORM_EPS);
	eval_matvec(state->logits, rwkv->head, state->x, rwkv->vocab_size, n);
	return state->logits;
}
