/* A set of named float32 tensors that the forward passes read. */
#include "config.h"

#include "eval.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct eval_weights {
	eval_tensor *tensors;
	size_t count;
	size_t capacity;
	char *config;
};

uc_status eval_weights_new(eval_weights **out, uc_error *err)
{
	*out = calloc(1, sizeof **out);
	if (!*out)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for a weight set");
	return UC_OK;
}

void eval_weights_free(eval_weights *weights)
{
	if (!weights)
		return;
	for (size_t i = 0; i < weights->count; i++) {
		free(weights->tensors[i].name);
		free(weights->tensors[i].data);
	}
	free(weights->tensors);
	free(weights->config);
	free(weights);
}

static uc_status grow(eval_weights *weights, uc_error *err)
{
	if (weights->count < weights->capacity)
		return UC_OK;
	size_t capacity = weights->capacity ? 2 * weights->capacity : 64;
	size_t bytes;
	if (eval_mul_size(capacity, sizeof *weights->tensors, &bytes) != 0)
		return eval_fail(err, UC_ERR_NOMEM, "too many tensors (%zu)", weights->count);
	eval_tensor *tensors = realloc(weights->tensors, bytes);
	if (!tensors)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu tensors", capacity);
	weights->tensors = tensors;
	weights->capacity = capacity;
	return UC_OK;
}

uc_status eval_weights_add(eval_weights *weights, const char *name, uint32_t ndim,
			   const uint64_t *shape, eval_tensor **out, uc_error *err)
{
	*out = NULL;
	if (ndim > UC_MAX_DIMS)
		return eval_fail(err, UC_ERR_INVALID, "tensor %s: %u dimensions, at most %d allowed",
				name, ndim, UC_MAX_DIMS);
	if (eval_weights_find(weights, name))
		return eval_fail(err, UC_ERR_INVALID, "tensor %s: duplicate name", name);

	uint64_t n = 1;
	for (uint32_t d = 0; d < ndim; d++) {
		if (shape[d] != 0 && n > UINT64_MAX / shape[d])
			return eval_fail(err, UC_ERR_RANGE, "tensor %s: element count overflows", name);
		n *= shape[d];
	}
	size_t bytes;
	if (n > SIZE_MAX || eval_mul_size((size_t)n, sizeof(float), &bytes) != 0)
		return eval_fail(err, UC_ERR_RANGE, "tensor %s: %llu elements do not fit in memory",
				name, (unsigned long long)n);

	uc_status rc = grow(weights, err);
	if (rc != UC_OK)
		return rc;
	eval_tensor tensor = {0};
	tensor.name = strdup(name);
	tensor.data = malloc(bytes);
	if (!tensor.name || !tensor.data) {
		free(tensor.name);
		free(tensor.data);
		return eval_fail(err, UC_ERR_NOMEM, "tensor %s: out of memory for %llu floats", name,
				(unsigned long long)n);
	}
	tensor.ndim = ndim;
	for (uint32_t d = 0; d < ndim; d++)
		tensor.shape[d] = shape[d];
	tensor.n_elements = n;
	weights->tensors[weights->count] = tensor;
	*out = &weights->tensors[weights->count];
	weights->count++;
	return UC_OK;
}

const eval_tensor *eval_weights_find(const eval_weights *weights, const char *name)
{
	for (size_t i = 0; i < weights->count; i++)
		if (strcmp(weights->tensors[i].name, name) == 0)
			return &weights->tensors[i];
	return NULL;
}

size_t eval_weights_count(const eval_weights *weights)
{
	return weights->count;
}

const eval_tensor *eval_weights_at(const eval_weights *weights, size_t index)
{
	return index < weights->count ? &weights->tensors[index] : NULL;
}

uc_status eval_weights_set_config(eval_weights *weights, const char *json, uc_error *err)
{
	char *copy = strdup(json);
	if (!copy)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory for the model configuration");
	free(weights->config);
	weights->config = copy;
	return UC_OK;
}

const char *eval_weights_config(const eval_weights *weights)
{
	return weights->config;
}
