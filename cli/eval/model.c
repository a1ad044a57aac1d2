/* Chooses the forward pass for a weight set, and creates states and scores runs with it. */
#include "config.h"

#include "model.h"

#include <assert.h>
#include <stdlib.h>

#include "util.h"

struct eval_model {
	eval_arch arch;
	eval_weights *weights;
	eval_llama *llama;
	eval_rwkv *rwkv;
};

struct eval_state {
	const eval_model *model;
	eval_llama_state *llama;
	eval_rwkv_state *rwkv;
};

const char *eval_arch_name(eval_arch arch)
{
	switch (arch) {
	case EVAL_ARCH_LLAMA:
		return "llama";
	case EVAL_ARCH_RWKV5_1:
		return "rwkv-5.1";
	case EVAL_ARCH_RWKV5_2:
		return "rwkv-5.2";
	}
	return "unknown";
}

const char *eval_arch_comparator(eval_arch arch)
{
	return arch == EVAL_ARCH_LLAMA ? "canonical-transformer" : "architecture-compatible";
}

uc_status eval_model_new(eval_weights *weights, eval_model **out, uc_error *err)
{
	uc_status rc = UC_OK;
	eval_model *model = calloc(1, sizeof *model);
	if (!model) {
		eval_weights_free(weights);
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for the model");
		goto out;
	}
	model->weights = weights;

	if (eval_weights_find(weights, "tok_embeddings.weight")) {
		model->arch = EVAL_ARCH_LLAMA;
		rc = eval_llama_new(weights, &model->llama, err);
	} else if (eval_weights_find(weights, "emb.weight") &&
		   eval_weights_find(weights, "blocks.0.att.time_decay")) {
		rc = eval_rwkv_new(weights, &model->rwkv, err);
		if (rc == UC_OK)
			model->arch = eval_rwkv_is_v5_2(model->rwkv) ? EVAL_ARCH_RWKV5_2
								      : EVAL_ARCH_RWKV5_1;
	} else {
		rc = eval_fail(err, UC_ERR_UNSUPPORTED,
			      "unknown architecture: no tok_embeddings.weight (Llama) or emb.weight "
			      "with blocks.0.att.time_decay (RWKV v5); uc eval runs only these");
	}

out:
	if (rc != UC_OK) {
		eval_model_free(model);
		model = NULL;
	}
	*out = model;
	return rc;
}

void eval_model_free(eval_model *model)
{
	if (!model)
		return;
	eval_llama_free(model->llama);
	eval_rwkv_free(model->rwkv);
	eval_weights_free(model->weights);
	free(model);
}

eval_arch eval_model_arch(const eval_model *model)
{
	return model->arch;
}

uint32_t eval_model_vocab_size(const eval_model *model)
{
	return model->llama ? eval_llama_vocab_size(model->llama) : eval_rwkv_vocab_size(model->rwkv);
}

const eval_weights *eval_model_weights(const eval_model *model)
{
	return model->weights;
}

uint32_t eval_model_max_seq_len(const eval_model *model)
{
	return model->llama ? eval_llama_max_seq_len(model->llama) : 0;
}

uc_status eval_state_new(const eval_model *model, uint32_t positions, eval_state **out,
			 uc_error *err)
{
	eval_state *state = calloc(1, sizeof *state);
	uc_status rc = UC_OK;
	if (!state) {
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for a model state");
		goto out;
	}
	state->model = model;
	if (model->rwkv) {
		rc = eval_rwkv_state_new(model->rwkv, &state->rwkv, err);
		goto out;
	}

	uint32_t max_seq = eval_llama_max_seq_len(model->llama);
	if (positions == 0 || positions > max_seq)
		positions = max_seq;
	rc = eval_llama_state_new(model->llama, positions, &state->llama, err);

out:
	if (rc != UC_OK) {
		eval_state_free(state);
		state = NULL;
	}
	*out = state;
	return rc;
}

void eval_state_free(eval_state *state)
{
	if (!state)
		return;
	eval_llama_state_free(state->llama);
	eval_rwkv_state_free(state->rwkv);
	free(state);
}

void eval_state_reset(eval_state *state)
{
	if (state->llama)
		eval_llama_state_reset(state->llama);
	else
		eval_rwkv_state_reset(state->rwkv);
}

static uc_status score_rwkv_run(const eval_rwkv *rwkv, const uint32_t *tokens, size_t count,
				size_t score_from, double *nll, uc_error *err)
{
	eval_rwkv_state *state = NULL;
	uc_status rc = eval_rwkv_state_new(rwkv, &state, err);
	if (rc != UC_OK)
		return rc;
	uint32_t vocab = eval_rwkv_vocab_size(rwkv);
	for (size_t pos = 0; pos < count; pos++) {
		const float *logits = eval_rwkv_step(state, tokens[pos]);
		if (pos >= score_from)
			nll[pos - score_from] = eval_negative_log_likelihood(logits, vocab,
									     tokens[pos + 1]);
	}
	eval_rwkv_state_free(state);
	return UC_OK;
}

uc_status eval_model_score_run(const eval_model *model, const uint32_t *tokens, size_t count,
			       size_t score_from, unsigned threads, double *nll, uc_error *err)
{
	assert(score_from < count);
	if (model->rwkv)
		return score_rwkv_run(model->rwkv, tokens, count, score_from, nll, err);
	assert(count <= eval_llama_max_seq_len(model->llama));
	return eval_llama_score_run(model->llama, tokens, (uint32_t)count, (uint32_t)score_from,
				    threads, nll, err);
}

const float *eval_state_step(eval_state *state, uint32_t token)
{
	if (state->llama)
		return eval_llama_step(state->llama, token);
	return eval_rwkv_step(state->rwkv, token);
}
