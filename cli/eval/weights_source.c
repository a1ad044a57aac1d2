/* Loads a source checkpoint (safetensors, sharded safetensors, llama2.c, rwkv.cpp) as
 * float32 tensors. */
#include "config.h"

#include "eval.h"

#include "util.h"

/* NOTE: every tensor is held as float32, so a run with --pack needs 8 bytes of memory per
 * parameter (source and pack): 56 GB for a model of 7 billion parameters. */
uc_status eval_weights_from_source(const uc_source *src, eval_weights **out, uc_error *err)
{
	eval_weights *weights = NULL;
	uc_status rc = eval_weights_new(&weights, err);
	if (rc != UC_OK)
		goto out;

	size_t count = uc_source_tensor_count(src);
	for (size_t i = 0; i < count; i++) {
		const uc_tensor_view *view = uc_source_tensor(src, i);
		eval_tensor *tensor;
		rc = eval_weights_add(weights, view->name, view->ndim, view->shape, &tensor, err);
		if (rc != UC_OK)
			goto out;
		uc_tensor_to_f32(view, 0, view->n_elements, tensor->data);
	}

	const char *config = uc_source_metadata(src, "config");
	if (config)
		rc = eval_weights_set_config(weights, config, err);

out:
	if (rc != UC_OK) {
		eval_weights_free(weights);
		weights = NULL;
	}
	*out = weights;
	return rc;
}
