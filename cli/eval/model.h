/* Private interface between the model dispatcher (model.c) and the two forward passes
 * (llama.c, rwkv.c). The weight set outlives every model built on it. */
#ifndef UC_EVAL_MODEL_H
#define UC_EVAL_MODEL_H

#include "eval.h"

/* Shared kernels (kernels.c). */
/* out[i] = sum_j w[i * cols + j] * x[j] for i < rows, in float32 and a fixed summation order. */
void eval_matvec(float *out, const float *w, const float *x, uint32_t rows, uint32_t cols);
void eval_rmsnorm(float *out, const float *x, const float *weight, uint32_t n, float eps);
void eval_layernorm(float *out, const float *x, const float *weight, const float *bias,
		    uint32_t n, float eps);
/* Returns -log softmax(logits)[target], computed in double. */
double eval_negative_log_likelihood(const float *logits, uint32_t vocab, uint32_t target);

/* Returns the tensor `name` of `weights` as a float pointer after checking that its shape
 * is exactly `ndim` dimensions `dims`. Missing or misshapen tensors are UC_ERR_FORMAT
 * naming the tensor, the expected and the actual shape. */
uc_status eval_require_tensor(const eval_weights *weights, const char *name, uint32_t ndim,
			      const uint64_t *dims, const float **out, uc_error *err);

typedef struct eval_llama eval_llama;
typedef struct eval_llama_state eval_llama_state;
uc_status eval_llama_new(const eval_weights *weights, eval_llama **out, uc_error *err);
void eval_llama_free(eval_llama *llama);
uint32_t eval_llama_vocab_size(const eval_llama *llama);
uint32_t eval_llama_max_seq_len(const eval_llama *llama);
/* `positions` is the KV cache length, 1 .. eval_llama_max_seq_len. */
uc_status eval_llama_state_new(const eval_llama *llama, uint32_t positions,
			       eval_llama_state **out, uc_error *err);
void eval_llama_state_free(eval_llama_state *state);
void eval_llama_state_reset(eval_llama_state *state);
const float *eval_llama_step(eval_llama_state *state, uint32_t token);
/* Scores one run from an empty cache: see eval_model_score_run. The caller guarantees
 * 0 < count <= the maximum sequence length and score_from < count. */
uc_status eval_llama_score_run(const eval_llama *llama, const uint32_t *tokens, uint32_t count,
			       uint32_t score_from, unsigned threads, double *nll, uc_error *err);

typedef struct eval_rwkv eval_rwkv;
typedef struct eval_rwkv_state eval_rwkv_state;
uc_status eval_rwkv_new(const eval_weights *weights, eval_rwkv **out, uc_error *err);
void eval_rwkv_free(eval_rwkv *rwkv);
uint32_t eval_rwkv_vocab_size(const eval_rwkv *rwkv);
/* Returns 1 for v5.2 (output gate, per-channel decay and bonus), 0 for v5.1. */
int eval_rwkv_is_v5_2(const eval_rwkv *rwkv);
uc_status eval_rwkv_state_new(const eval_rwkv *rwkv, eval_rwkv_state **out, uc_error *err);
void eval_rwkv_state_free(eval_rwkv_state *state);
void eval_rwkv_state_reset(eval_rwkv_state *state);
const float *eval_rwkv_step(eval_rwkv_state *state, uint32_t token);

#endif
