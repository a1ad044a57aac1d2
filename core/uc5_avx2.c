/* AVX2 + F16C reconstruction kernel. Compiled with -mavx2 -mf16c and run only when the
 * dispatcher has found both on the CPU and YMM state saved by the OS. Results equal the
 * scalar reference byte for byte: separate multiply and subtract in binary32, bf16 by the
 * same integer rounding, f16 by vcvtps2ph with round-to-nearest-even. */
#include "internal.h"

#include <immintrin.h>

#include "codec_internal.h"

#define UC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Rounds 8 floats to bf16 with (u + 0x7FFF + ((u >> 16) & 1)) >> 16, leaving the result in
 * the low half of each 32-bit lane. */
UC_ALWAYS_INLINE __m256i round_bf16(__m256 value)
{
	__m256i u = _mm256_castps_si256(value);
	__m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
	u = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
	return _mm256_srli_epi32(u, 16);
}

/* Reconstructs 8 weights from 8 quantised bytes in the low half of `q8`. */
UC_ALWAYS_INLINE __m256 dequant8(__m128i q8, __m256 dl, __m256 ml)
{
	__m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q8));
	return _mm256_sub_ps(_mm256_mul_ps(q, dl), ml);
}

/* Writes the 32 weights of one sub-block, quantised values in `q`, as `dtype`. */
UC_ALWAYS_INLINE void emit_subblock(__m256i q, float dl_scalar, float ml_scalar, uc_dtype dtype,
				    uint8_t *out)
{
	__m256 dl = _mm256_set1_ps(dl_scalar);
	__m256 ml = _mm256_set1_ps(ml_scalar);
	__m128i low = _mm256_castsi256_si128(q);
	__m128i high = _mm256_extracti128_si256(q, 1);
	__m256 w0 = dequant8(low, dl, ml);
	__m256 w1 = dequant8(_mm_srli_si128(low, 8), dl, ml);
	__m256 w2 = dequant8(high, dl, ml);
	__m256 w3 = dequant8(_mm_srli_si128(high, 8), dl, ml);

	if (dtype == UC_DTYPE_F32) {
		_mm256_storeu_ps((float *)out, w0);
		_mm256_storeu_ps((float *)out + 8, w1);
		_mm256_storeu_ps((float *)out + 16, w2);
		_mm256_storeu_ps((float *)out + 24, w3);
	} else if (dtype == UC_DTYPE_F16) {
		_mm_storeu_si128((__m128i *)out, _mm256_cvtps_ph(w0, _MM_FROUND_TO_NEAREST_INT));
		_mm_storeu_si128((__m128i *)out + 1, _mm256_cvtps_ph(w1, _MM_FROUND_TO_NEAREST_INT));
		_mm_storeu_si128((__m128i *)out + 2, _mm256_cvtps_ph(w2, _MM_FROUND_TO_NEAREST_INT));
		_mm_storeu_si128((__m128i *)out + 3, _mm256_cvtps_ph(w3, _MM_FROUND_TO_NEAREST_INT));
	} else {
		/* packus works per 128-bit lane, so restore element order with a 64-bit permute. */
		__m256i p01 = _mm256_packus_epi32(round_bf16(w0), round_bf16(w1));
		__m256i p23 = _mm256_packus_epi32(round_bf16(w2), round_bf16(w3));
		_mm256_storeu_si256((__m256i *)out, _mm256_permute4x64_epi64(p01, 0xD8));
		_mm256_storeu_si256((__m256i *)out + 1, _mm256_permute4x64_epi64(p23, 0xD8));
	}
}

/* Returns 16 in each byte whose `bit` is set in `qh`, else 0: the fifth bit of q. */
UC_ALWAYS_INLINE __m256i fifth_bits(__m256i qh, int bit)
{
	__m256i mask = _mm256_set1_epi8((char)(1 << bit));
	__m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(qh, mask), mask);
	return _mm256_and_si256(set, _mm256_set1_epi8(16));
}

UC_ALWAYS_INLINE void decode_blocks(const uint8_t *blocks, size_t nblocks, uc_dtype dtype,
				    uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	const __m256i nibble = _mm256_set1_epi8(15);

	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		float dl[UC5_SUBBLOCKS], ml[UC5_SUBBLOCKS];
		ucp_uc5_block_factors(block, dl, ml);

		__m256i qh = _mm256_loadu_si256((const __m256i *)(block + UC5_OFFSET_QH));
		uint8_t *block_out = out + b * UC5_BLOCK_WEIGHTS * element;
		for (int c = 0; c < 4; c++) {
			__m256i qs = _mm256_loadu_si256((const __m256i *)(block + UC5_OFFSET_QS + 32 * c));
			__m256i q0 = _mm256_or_si256(_mm256_and_si256(qs, nibble), fifth_bits(qh, 2 * c));
			__m256i q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 4), nibble),
						     fifth_bits(qh, 2 * c + 1));
			emit_subblock(q0, dl[2 * c], ml[2 * c], dtype, block_out + 64 * c * element);
			emit_subblock(q1, dl[2 * c + 1], ml[2 * c + 1], dtype,
				      block_out + (64 * c + 32) * element);
		}
	}
}

void ucp_uc5_decode_avx2(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
{
	/* One specialised loop per dtype, so no branch sits inside the block loop. */
	switch (dtype) {
	case UC_DTYPE_F32:
		decode_blocks(blocks, nblocks, UC_DTYPE_F32, out);
		break;
	case UC_DTYPE_F16:
		decode_blocks(blocks, nblocks, UC_DTYPE_F16, out);
		break;
	case UC_DTYPE_BF16:
		decode_blocks(blocks, nblocks, UC_DTYPE_BF16, out);
		break;
	}
}
