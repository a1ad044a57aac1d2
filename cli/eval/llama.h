/* Private to the Llama forward pass: the model's layout, shared by the loader (llama.c)
 * and the forward passes (llama_forward.c). */
#ifndef UC_EVAL_LLAMA_H
#define UC_EVAL_LLAMA_H

#include "model.h"

#define LLAMA_NORM_EPS 1e-5f

typedef struct {
	const float *attention_norm, *wq, *wk, *wv, *wo;
	const float *ffn_norm, *w1, *w2, *w3;
} llama_layer;

struct eval_llama {
	uint32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_size, kv_dim;
	uint32_t vocab_size, max_seq_len;
	const float *embedding, *final_norm, *classifier;
	llama_layer *layers;
	float *rope_cos, *rope_sin; /* [max_seq_len][head_size / 2] */
};

#endif
