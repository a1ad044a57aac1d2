/* The scalar reference decoder, which defines uc5 reconstruction for every path, and the
 * public uc5_decode, which validates a request and runs the active path's kernel. */
#include "internal.h"

#include <inttypes.h>
#include <string.h>

#include "codec_internal.h"

/* Returns the 5-bit value of weight i (0..255) of a block. */
static unsigned block_quant(const uint8_t *block, unsigned i)
{
	const uint8_t *qh = block + UC5_OFFSET_QH;
	const uint8_t *qs = block + UC5_OFFSET_QS;
	unsigned chunk = i / 64;
	unsigned l = i % 32;
	unsigned upper = (i / 32) & 1;  /* second sub-block of the chunk: high nibble */
	unsigned low = upper ? (unsigned)(qs[32 * chunk + l] >> 4) : (unsigned)(qs[32 * chunk + l] & 15);
	unsigned high = (qh[l] >> (2 * chunk + upper)) & 1;
	return low | (high << 4);
}

static void store_element(void *out, size_t index, uc_dtype dtype, float value)
{
	if (dtype == UC_DTYPE_F32) {
		memcpy((uint8_t *)out + 4 * index, &value, 4);
		return;
	}
	uint16_t bits = dtype == UC_DTYPE_BF16 ? uc_f32_to_bf16(value) : uc_f32_to_f16(value);
	memcpy((uint8_t *)out + 2 * index, &bits, 2);
}

void ucp_uc5_decode_scalar(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
{
	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		float dl[UC5_SUBBLOCKS], ml[UC5_SUBBLOCKS];
		ucp_uc5_block_factors(block, dl, ml);

		for (unsigned i = 0; i < UC5_BLOCK_WEIGHTS; i++) {
			unsigned j = i / UC5_SUBBLOCK_WEIGHTS;
			float w = dl[j] * (float)block_quant(block, i) - ml[j];
			store_element(out, b * UC5_BLOCK_WEIGHTS + i, dtype, w);
		}
	}
}

uint64_t uc5_encoded_size(uint64_t n_weights)
{
	return (n_weights / UC5_BLOCK_WEIGHTS + (n_weights % UC5_BLOCK_WEIGHTS != 0)) * UC5_BLOCK_BYTES;
}

static uc_status check_request(const uint8_t *blocks, uint64_t n_total, uint64_t first,
			       uint64_t count, uc_dtype dtype, const void *out, uc_error *err)
{
	if (!uc_dtype_name(dtype))
		return ucp_fail(err, UC_ERR_INVALID, "uc5 decode: invalid dtype %d", (int)dtype);
	if (first % UC5_BLOCK_WEIGHTS != 0)
		return ucp_fail(err, UC_ERR_INVALID,
				"uc5 decode: first weight %" PRIu64 " is not a multiple of %d",
				first, UC5_BLOCK_WEIGHTS);
	if (first > n_total || count > n_total - first)
		return ucp_fail(err, UC_ERR_INVALID,
				"uc5 decode: weights [%" PRIu64 ", +%" PRIu64 ") lie outside the tensor's %" PRIu64
				" weights", first, count, n_total);

	if (count > SIZE_MAX / uc_dtype_size(dtype))
		return ucp_fail(err, UC_ERR_INVALID,
				"uc5 decode: %" PRIu64 " weights do not fit in memory", count);
	if (count > 0 && (!blocks || !out))
		return ucp_fail(err, UC_ERR_INVALID, "uc5 decode: blocks and out must not be NULL");
	return UC_OK;
}

/* Rejects a block whose d or dmin is infinite or NaN; the encoder never writes one. */
static uc_status check_block_scales(const uint8_t *blocks, uint64_t first_block, uint64_t nblocks,
				    uc_error *err)
{
	for (uint64_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		uint16_t d = ucp_load_le16(block + UC5_OFFSET_D);
		uint16_t dmin = ucp_load_le16(block + UC5_OFFSET_DMIN);
		if (ucp_f16_is_nonfinite(d) || ucp_f16_is_nonfinite(dmin))
			return ucp_fail(err, UC_ERR_FORMAT,
					"uc5 block %" PRIu64 ": scale d=0x%04x or dmin=0x%04x is infinite or NaN;"
					" the data is corrupt, re-encode the tensor",
					first_block + b, d, dmin);
	}
	return UC_OK;
}

uc_status uc5_decode(const uint8_t *blocks, uint64_t n_total, uint64_t first, uint64_t count,
		     uc_dtype dtype, void *out, uc_error *err)
{
	uc_status rc = check_request(blocks, n_total, first, count, dtype, out, err);
	if (rc != UC_OK || count == 0)
		return rc;

	uint64_t first_block = first / UC5_BLOCK_WEIGHTS;
	uint64_t full_blocks = count / UC5_BLOCK_WEIGHTS;
	uint64_t rest = count % UC5_BLOCK_WEIGHTS;
	const uint8_t *start = blocks + first_block * UC5_BLOCK_BYTES;

	rc = check_block_scales(start, first_block, full_blocks + (rest != 0), err);
	if (rc != UC_OK)
		return rc;

	ucp_uc5_kernel kernel;
	rc = ucp_isa_active_kernel(&kernel, err);
	if (rc != UC_OK)
		return rc;

	size_t element = uc_dtype_size(dtype);
	if (full_blocks > 0)
		kernel(start, (size_t)full_blocks, dtype, out);

	if (rest != 0) {
		/* A window may end inside a block: decode that block whole, then copy its head. */
		_Alignas(64) uint8_t tail[UC5_BLOCK_WEIGHTS * 4];
		kernel(start + full_blocks * UC5_BLOCK_BYTES, 1, dtype, tail);
		memcpy((uint8_t *)out + full_blocks * UC5_BLOCK_WEIGHTS * element, tail, rest * element);
	}
	return UC_OK;
}
