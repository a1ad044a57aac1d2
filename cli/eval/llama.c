/* The Llama forward pass of llama2.c. It uses RMSNorm (eps 1e-5), rotary position
 * embeddings on the pairs (2i, 2i + 1) of each head with theta 10000, grouped-query
 * attention with a KV cache, and a SwiGLU feed-forward network. The classifier may share
 * the token embedding. Tensor names and shapes are Meta's (`layers.N.attention.wq.weight`). */
#include "config.h"

#include "llama.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define LLAMA_ROPE_THETA 10000.0f
/* Upper bound of every integer in the configuration (heads, sequence length), which keeps
 * each size factor within 32 bits. NOTE: the RoPE tables cover the whole configured
 * context, so a model configured for more than 2^20 positions is rejected. */
#define LLAMA_MAX_CONFIG_VALUE (1u << 20)

/* Reads a positive integer field of the configuration. An absent field takes `fallback`,
 * unless that is 0, which makes the field required. */
static uc_status config_uint(json_t *config, const char *key, uint32_t fallback, uint32_t *out,
			     uc_error *err)
{
	json_t *value = json_object_get(config, key);
	if (!value) {
		if (fallback == 0)
			return eval_fail(err, UC_ERR_FORMAT, "model configuration: field \"%s\" is missing",
					key);
		*out = fallback;
		return UC_OK;
	}
	if (!json_is_integer(value) || json_integer_value(value) <= 0 ||
	    json_integer_value(value) > (json_int_t)LLAMA_MAX_CONFIG_VALUE)
		return eval_fail(err, UC_ERR_FORMAT,
				"model configuration: field \"%s\" must be an integer in 1..%u",
				key, LLAMA_MAX_CONFIG_VALUE);
	*out = (uint32_t)json_integer_value(value);
	return UC_OK;
}

/* Checks that an optional configuration field, when present, equals the tensor shapes' value. */
static uc_status config_agrees(json_t *config, const char *key, uint32_t actual, uc_error *err)
{
	json_t *value = json_object_get(config, key);
	if (!value)
		return UC_OK;
	if (!json_is_integer(value))
		return eval_fail(err, UC_ERR_FORMAT, "model configuration: field \"%s\" is not an integer",
				key);
	json_int_t stated = json_integer_value(value);
	if (stated < 0 && strcmp(key, "vocab_size") == 0)
		stated = -stated; /* llama2.c marks a separate classifier with a negative vocab_size */
	if (stated != (json_int_t)actual)
		return eval_fail(err, UC_ERR_FORMAT,
				"model configuration: \"%s\" is %lld but the tensors give %u", key,
				(long long)stated, actual);
	return UC_OK;
}

static uc_status read_config(eval_llama *llama, const eval_weights *weights, uc_error *err)
{
	const char *text = eval_weights_config(weights);
	if (!text)
		return eval_fail(err, UC_ERR_FORMAT,
				"the checkpoint has no model configuration (\"config\" metadata), "
				"so the number of attention heads is unknown");
	json_error_t json_err;
	json_t *config = json_loads(text, 0, &json_err);
	if (!config || !json_is_object(config)) {
		json_decref(config);
		return eval_fail(err, UC_ERR_FORMAT, "model configuration is not a JSON object: %s",
				json_err.text);
	}

	/* Safetensors conversions name the context length max_seq_len, llama2.c headers seq_len. */
	const char *seq_key = json_object_get(config, "max_seq_len") ? "max_seq_len" : "seq_len";
	uc_status rc = config_uint(config, "n_heads", 0, &llama->n_heads, err);
	if (rc == UC_OK)
		rc = config_uint(config, "n_kv_heads", llama->n_heads, &llama->n_kv_heads, err);
	if (rc == UC_OK)
		rc = config_uint(config, seq_key, 0, &llama->max_seq_len, err);
	if (rc == UC_OK)
		rc = config_agrees(config, "dim", llama->dim, err);
	if (rc == UC_OK)
		rc = config_agrees(config, "vocab_size", llama->vocab_size, err);
	if (rc == UC_OK)
		rc = config_agrees(config, "n_layers", llama->n_layers, err);
	json_decref(config);
	return rc;
}

static uc_status check_heads(const eval_llama *llama, uc_error *err)
{
	if (llama->dim % llama->n_heads != 0 || (llama->dim / llama->n_heads) % 2 != 0)
		return eval_fail(err, UC_ERR_FORMAT,
				"model configuration: dim %u is not divisible into %u heads of even size",
				llama->dim, llama->n_heads);
	if (llama->n_kv_heads > llama->n_heads || llama->n_heads % llama->n_kv_heads != 0)
		return eval_fail(err, UC_ERR_FORMAT,
				"model configuration: n_heads %u is not a multiple of n_kv_heads %u",
				llama->n_heads, llama->n_kv_heads);
	return UC_OK;
}

static uc_status resolve_layer(eval_llama *llama, const eval_weights *weights, uint32_t l,
			       uc_error *err)
{
	const uint64_t vector[] = {llama->dim};
	const uint64_t square[] = {llama->dim, llama->dim};
	const uint64_t kv[] = {llama->kv_dim, llama->dim};
	const uint64_t up[] = {llama->hidden_dim, llama->dim};
	const uint64_t down[] = {llama->dim, llama->hidden_dim};
	const struct {
		const char *suffix;
		uint32_t ndim;
		const uint64_t *dims;
		const float **slot;
	} table[] = {
		{"attention_norm.weight", 1, vector, &llama->layers[l].attention_norm},
		{"attention.wq.weight", 2, square, &llama->layers[l].wq},
		{"attention.wk.weight", 2, kv, &llama->layers[l].wk},
		{"attention.wv.weight", 2, kv, &llama->layers[l].wv},
		{"attention.wo.weight", 2, square, &llama->layers[l].wo},
		{"ffn_norm.weight", 1, vector, &llama->layers[l].ffn_norm},
		{"feed_forward.w1.weight", 2, up, &llama->layers[l].w1},
		{"feed_forward.w2.weight", 2, down, &llama->layers[l].w2},
		{"feed_forward.w3.weight", 2, up, &llama->layers[l].w3},
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		char name[128];
		snprintf(name, sizeof name, "layers.%u.%s", l, table[i].suffix);
		uc_status rc = eval_require_tensor(weights, name, table[i].ndim, table[i].dims,
						   table[i].slot, err);
		if (rc != UC_OK)
			return rc;
	}
	return UC_OK;
}

/* Infers dim, vocabulary, layer count, hidden and KV sizes from the tensor shapes. */
static uc_status infer_sizes(eval_llama *llama, const eval_weights *weights, uc_error *err)
{
	const eval_tensor *embedding = eval_weights_find(weights, "tok_embeddings.weight");
	if (!embedding || embedding->ndim != 2 || embedding->shape[0] == 0 ||
	    embedding->shape[1] == 0 || embedding->shape[0] > UINT32_MAX / 2 ||
	    embedding->shape[1] > 65536)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor tok_embeddings.weight is missing or not a [vocab, dim] matrix");
	llama->vocab_size = (uint32_t)embedding->shape[0];
	llama->dim = (uint32_t)embedding->shape[1];

	while (llama->n_layers < 4096) {
		char name[64];
		snprintf(name, sizeof name, "layers.%u.attention_norm.weight", llama->n_layers);
		if (!eval_weights_find(weights, name))
			break;
		llama->n_layers++;
	}
	if (llama->n_layers == 0)
		return eval_fail(err, UC_ERR_FORMAT, "tensor layers.0.attention_norm.weight is missing");

	const eval_tensor *w1 = eval_weights_find(weights, "layers.0.feed_forward.w1.weight");
	const eval_tensor *wk = eval_weights_find(weights, "layers.0.attention.wk.weight");
	if (!w1 || w1->ndim != 2 || w1->shape[0] == 0 || w1->shape[0] > 1u << 20)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor layers.0.feed_forward.w1.weight is missing or not a matrix");
	if (!wk || wk->ndim != 2 || wk->shape[0] == 0 || wk->shape[0] > llama->dim)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor layers.0.attention.wk.weight is missing or not a [kv_dim, dim] matrix");
	llama->hidden_dim = (uint32_t)w1->shape[0];
	llama->kv_dim = (uint32_t)wk->shape[0];
	return UC_OK;
}

static uc_status build_rope_tables(eval_llama *llama, uc_error *err)
{
	uint32_t half = llama->head_size / 2;
	size_t count;
	if (eval_mul_size(llama->max_seq_len, half, &count) != 0 ||
	    eval_mul_size(count, sizeof(float), &count) != 0)
		return eval_fail(err, UC_ERR_RANGE, "RoPE table for %u positions is too large",
				llama->max_seq_len);
	llama->rope_cos = malloc(count);
	llama->rope_sin = malloc(count);
	if (!llama->rope_cos || !llama->rope_sin)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for the RoPE tables");
	for (uint32_t pos = 0; pos < llama->max_seq_len; pos++) {
		for (uint32_t i = 0; i < half; i++) {
			float freq = 1.0f / powf(LLAMA_ROPE_THETA, (float)(2 * i) / (float)llama->head_size);
			float angle = (float)pos * freq;
			llama->rope_cos[(size_t)pos * half + i] = cosf(angle);
			llama->rope_sin[(size_t)pos * half + i] = sinf(angle);
		}
	}
	return UC_OK;
}

uc_status eval_llama_new(const eval_weights *weights, eval_llama **out, uc_error *err)
{
	eval_llama *llama = calloc(1, sizeof *llama);
	uc_status rc = UC_OK;
	if (!llama) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for the model");
		goto out;
	}
	rc = infer_sizes(llama, weights, err);
	if (rc == UC_OK)
		rc = read_config(llama, weights, err);
	if (rc == UC_OK)
		rc = check_heads(llama, err);
	if (rc != UC_OK)
		goto out;
	llama->head_size = llama->dim / llama->n_heads;
	if (llama->kv_dim != llama->n_kv_heads * llama->head_size) {
		rc = eval_fail(err, UC_ERR_FORMAT,
			      "tensor layers.0.attention.wk.weight has %u rows, expected n_kv_heads %u "
			      "x head size %u", llama->kv_dim, llama->n_kv_heads, llama->head_size);
		goto out;
	}

	llama->layers = calloc(llama->n_layers, sizeof *llama->layers);
	if (!llama->layers) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for %u layers", llama->n_layers);
		goto out;
	}
	for (uint32_t l = 0; l < llama->n_layers && rc == UC_OK; l++)
		rc = resolve_layer(llama, weights, l, err);
	if (rc != UC_OK)
		goto out;

	const uint64_t embedding_dims[] = {llama->vocab_size, llama->dim};
	const uint64_t norm_dims[] = {llama->dim};
	llama->embedding = eval_weights_find(weights, "tok_embeddings.weight")->data;
	rc = eval_require_tensor(weights, "norm.weight", 1, norm_dims, &llama->final_norm, err);
	if (rc != UC_OK)
		goto out;
	if (eval_weights_find(weights, "output.weight"))
		rc = eval_require_tensor(weights, "output.weight", 2, embedding_dims,
					 &llama->classifier, err);
	else
		llama->classifier = llama->embedding; /* shared classifier */
	if (rc == UC_OK)
		rc = build_rope_tables(llama, err);

out:
	if (rc != UC_OK) {
		eval_llama_free(llama);
		llama = NULL;
	}
	*out = llama;
	return rc;
}

void eval_llama_free(eval_llama *llama)
{
	if (!llama)
		return;
	free(llama->layers);
	free(llama->rope_cos);
	free(llama->rope_sin);
	free(llama);
}

uint32_t eval_llama_vocab_size(const eval_llama *llama)
{
	return llama->vocab_size;
}

uint32_t eval_llama_max_seq_len(const eval_llama *llama)
{
	return llama->max_seq_len;
}
