/* One chunk of pack writing: read the source weights as float32, reject non-finite ones,
 * encode (uc5 or raw), write the bytes at their planned place in the shard, reconstruct
 * them and measure the error against the source. */
#include "pack_internal.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

int ucp_encode_buffers_init(ucp_encode_buffers *buffers)
{
	buffers->source = ucp_malloc(UCP_PACK_CHUNK_WEIGHTS * sizeof(float));
	buffers->encoded = ucp_malloc(uc5_encoded_size(UCP_PACK_CHUNK_WEIGHTS));
	buffers->decoded = ucp_malloc(UCP_PACK_CHUNK_WEIGHTS * sizeof(float));
	if (!buffers->source || !buffers->encoded || !buffers->decoded) {
		ucp_encode_buffers_free(buffers);
		return -1;
	}
	return 0;
}

void ucp_encode_buffers_free(ucp_encode_buffers *buffers)
{
	ucp_free(buffers->source);
	ucp_free(buffers->encoded);
	ucp_free(buffers->decoded);
	*buffers = (ucp_encode_buffers){0};
}

static float element_to_f32(const uint8_t *data, uint64_t index, uc_dtype dtype)
{
	switch (dtype) {
	case UC_DTYPE_F16:
		return uc_f16_to_f32(ucp_load_le16(data + 2 * index));
	case UC_DTYPE_BF16:
		return uc_bf16_to_f32(ucp_load_le16(data + 2 * index));
	case UC_DTYPE_F32:
		break;
	}
	uint32_t bits = ucp_load_le32(data + 4 * index);
	float value;
	memcpy(&value, &bits, sizeof value);
	return value;
}

static uc_status check_finite(const uc_manifest_tensor *tensor, const ucp_chunk *chunk,
			      const float *source, uc_error *err)
{
	for (uint64_t i = 0; i < chunk->count; i++) {
		if (!isfinite(source[i]))
			return ucp_fail(err, UC_ERR_NONFINITE,
					"tensor %s: weight %llu is %s; packs hold finite weights only, so fix or drop it in the source",
					tensor->name, (unsigned long long)(chunk->first + i),
					isnan(source[i]) ? "NaN" : "infinite");
	}
	return UC_OK;
}

static uc_status write_at(int fd, const uint8_t *data, size_t len, uint64_t offset,
			  const uc_manifest_tensor *tensor, uc_error *err)
{
	while (len > 0) {
		ssize_t written = pwrite(fd, data, len, (off_t)offset);
		if (written < 0 && errno == EINTR)
			continue;
		if (written <= 0)
			return ucp_fail(err, UC_ERR_IO, "cannot write tensor %s to its shard at offset %llu: %s",
					tensor->name, (unsigned long long)offset,
					written < 0 ? strerror(errno) : "nothing written");
		data += written;
		len -= (size_t)written;
		offset += (uint64_t)written;
	}
	return UC_OK;
}

/* Encodes the chunk and leaves its reconstruction in buffers->decoded. */
static uc_status encode_and_store(const ucp_encode_pass *pass, const uc_manifest_tensor *tensor,
				  const ucp_chunk *chunk, ucp_encode_buffers *buffers, uc_error *err)
{
	int fd = pass->shard_fds[tensor->shard];
	size_t element = ucp_dtype_bytes(tensor->dtype);

	if (tensor->encoding == UC_ENCODING_RAW) {
		uc_convert_from_f32(buffers->source, chunk->count, tensor->dtype, buffers->decoded);
		return write_at(fd, buffers->decoded, chunk->count * element,
				tensor->offset + chunk->first * element, tensor, err);
	}

	uc_status rc = uc5_encode(buffers->source, chunk->count, buffers->encoded, tensor->name, err);
	if (rc != UC_OK)
		return rc;
	uint64_t block_offset = chunk->first / UC5_BLOCK_WEIGHTS * UC5_BLOCK_BYTES;
	rc = write_at(fd, buffers->encoded, uc5_encoded_size(chunk->count), tensor->offset + block_offset,
		      tensor, err);
	if (rc != UC_OK)
		return rc;

	/* Decoding the chunk alone is exact because every super-block decodes on its own. */
	rc = uc5_decode(buffers->encoded, chunk->count, 0, chunk->count, tensor->dtype, buffers->decoded, err);
	if (rc != UC_OK)
		ucp_error_prefix(err, "tensor %s", tensor->name);
	return rc;
}

/* Adds the chunk's error against the source to its result. A reconstructed value that is
 * not finite (a weight beyond the target dtype's range) fails the pack. */
static uc_status measure(const uc_manifest_tensor *tensor, const ucp_chunk *chunk,
			 const ucp_encode_buffers *buffers, ucp_chunk_result *result, uc_error *err)
{
	double signal = 0, noise = 0, max_error = 0;
	for (uint64_t i = 0; i < chunk->count; i++) {
		double x = buffers->source[i];
		double y = element_to_f32(buffers->decoded, i, tensor->dtype);
		if (!isfinite(y))
			return ucp_fail(err, UC_ERR_RANGE,
					"tensor %s: weight %llu (%g) does not fit the target dtype %s; choose f32 or a wider dtype",
					tensor->name, (unsigned long long)(chunk->first + i), x,
					ucp_dtype_text(tensor->dtype));
		double diff = fabs(x - y);
		signal += x * x;
		noise += diff * diff;
		if (diff > max_error)
			max_error = diff;
	}
	result->signal = signal;
	result->noise = noise;
	result->max_error = max_error;
	return UC_OK;
}

static void record_failure(ucp_encode_pass *pass, size_t index)
{
	size_t seen = __atomic_load_n(&pass->first_failure, __ATOMIC_RELAXED);
	while (index < seen &&
	       !__atomic_compare_exchange_n(&pass->first_failure, &seen, index, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED)) {
	}
}

void ucp_encode_chunk(void *ctx, size_t index, unsigned worker)
{
	ucp_encode_pass *pass = ctx;
	const ucp_chunk *chunk = &pass->chunks[index];
	const uc_manifest_tensor *tensor = &pass->manifest->tensors[chunk->tensor];
	ucp_chunk_result *result = &pass->results[index];
	ucp_encode_buffers *buffers = &pass->buffers[worker];

	/* Chunks are handed out in increasing order, so every chunk before a failed one still
	 * runs and the failure reported is always the first in manifest order. */
	if (index > __atomic_load_n(&pass->first_failure, __ATOMIC_RELAXED))
		return;
	if (tensor->encoding == UC_ENCODING_UC5 &&
	    __atomic_load_n(&pass->range_fallback[chunk->tensor], __ATOMIC_RELAXED))
		return;

	uc_tensor_to_f32(pass->views[chunk->tensor], chunk->first, chunk->count, buffers->source);
	uc_status rc = check_finite(tensor, chunk, buffers->source, &result->err);
	if (rc == UC_OK)
		rc = encode_and_store(pass, tensor, chunk, buffers, &result->err);
	if (rc == UC_ERR_RANGE && tensor->encoding == UC_ENCODING_UC5) {
		/* The writer stores this tensor raw and runs the pass again. */
		__atomic_store_n(&pass->range_fallback[chunk->tensor], 1, __ATOMIC_RELAXED);
		return;
	}
	if (rc == UC_OK)
		rc = measure(tensor, chunk, buffers, result, &result->err);

	result->status = rc;
	if (rc != UC_OK)
		record_failure(pass, index);
	ucp_progress_add(pass->progress, chunk->count);
}
