/* Loads a pack's reconstruction as float32 tensors, matched by name and shape against the
 * source weights it is compared with. */
#include "config.h"

#include "eval.h"

#include <string.h>

#include "util.h"
#include "uc_pack.h"

typedef struct {
	const char *name;
	uc_dtype dtype;
	float *out;
	uint64_t done;     /* elements converted so far */
	uint64_t expected; /* elements of the tensor */
} convert_context;

/* Converts one reconstructed chunk (whole little-endian elements) to float32. */
static uc_status convert_chunk(void *ctx, const void *data, size_t len, uc_error *err)
{
	convert_context *context = ctx;
	size_t size = uc_dtype_size(context->dtype);
	const uint8_t *bytes = data;
	if (len % size != 0 || len / size > context->expected - context->done)
		return eval_fail(err, UC_ERR_FORMAT,
				"tensor %s: reconstruction delivered %zu bytes at element %llu, which "
				"is not whole %s elements inside the tensor", context->name, len,
				(unsigned long long)context->done, uc_dtype_name(context->dtype));
	float *out = context->out + context->done;
	for (size_t i = 0; i < len / size; i++) {
		if (context->dtype == UC_DTYPE_F32) {
			uint32_t bits = eval_load_le32(bytes + 4 * i);
			memcpy(&out[i], &bits, sizeof bits);
		} else if (context->dtype == UC_DTYPE_BF16) {
			out[i] = uc_bf16_to_f32(eval_load_le16(bytes + 2 * i));
		} else {
			out[i] = uc_f16_to_f32(eval_load_le16(bytes + 2 * i));
		}
	}
	context->done += len / size;
	return UC_OK;
}

static int same_shape(const uc_manifest_tensor *packed, const eval_tensor *reference)
{
	if (packed->ndim != reference->ndim)
		return 0;
	for (uint32_t d = 0; d < packed->ndim; d++)
		if (packed->shape[d] != reference->shape[d])
			return 0;
	return 1;
}

static uc_status load_tensor(const uc_pack *pack, const eval_tensor *reference,
			     eval_weights *weights, uc_error *err)
{
	const uc_manifest *manifest = uc_pack_manifest(pack);
	long index = uc_manifest_find_tensor(manifest, reference->name);
	if (index < 0)
		return eval_fail(err, UC_ERR_STRUCTURE,
				"tensor %s of the source is missing from the pack; is the pack made "
				"from this source?", reference->name);
	const uc_manifest_tensor *packed = uc_manifest_tensor_at(manifest, (size_t)index);
	if (!same_shape(packed, reference))
		return eval_fail(err, UC_ERR_STRUCTURE,
				"tensor %s has another shape in the pack than in the source; is the "
				"pack made from this source?", reference->name);

	eval_tensor *tensor;
	uc_status rc = eval_weights_add(weights, reference->name, reference->ndim, reference->shape,
					&tensor, err);
	if (rc != UC_OK)
		return rc;
	convert_context context = {
		.name = reference->name,
		.dtype = packed->dtype,
		.out = tensor->data,
		.expected = tensor->n_elements,
	};
	rc = uc_pack_reconstruct(pack, (size_t)index, convert_chunk, &context, err);
	if (rc == UC_OK && context.done != context.expected)
		rc = eval_fail(err, UC_ERR_FORMAT,
			      "tensor %s: reconstruction delivered %llu of %llu elements",
			      reference->name, (unsigned long long)context.done,
			      (unsigned long long)context.expected);
	return rc;
}

uc_status eval_weights_from_pack(const char *pack_dir, const eval_weights *reference,
				 eval_weights **out, eval_pack_info *info, uc_error *err)
{
	uc_pack *pack = NULL;
	eval_weights *weights = NULL;
	uc_status rc = uc_pack_open(pack_dir, &pack, err);
	if (rc == UC_OK)
		rc = eval_weights_new(&weights, err);
	if (rc != UC_OK)
		goto out;

	const uc_manifest *manifest = uc_pack_manifest(pack);
	size_t count = eval_weights_count(reference);
	if (uc_manifest_tensor_count(manifest) != count) {
		rc = eval_fail(err, UC_ERR_STRUCTURE,
			      "the pack has %zu tensors and the source %zu; is the pack made from "
			      "this source?", uc_manifest_tensor_count(manifest), count);
		goto out;
	}
	for (size_t i = 0; i < count && rc == UC_OK; i++)
		rc = load_tensor(pack, eval_weights_at(reference, i), weights, err);
	if (rc == UC_OK && eval_weights_config(reference))
		rc = eval_weights_set_config(weights, eval_weights_config(reference), err);
	if (rc != UC_OK)
		goto out;

	uc_pack_manifest_sha256(pack, info->manifest_sha256);
	info->dtype = count ? uc_manifest_tensor_at(manifest, 0)->dtype : UC_DTYPE_F32;

out:
	uc_pack_close(pack);
	if (rc != UC_OK) {
		eval_error_prefix(err, "%s", pack_dir);
		eval_weights_free(weights);
		weights = NULL;
	}
	*out = weights;
	return rc;
}
