/* AVX-512 (F, BW, VL) + F16C reconstruction kernel, 16 weights per instruction. Compiled
 * with its own flags and run only when the dispatcher has found AVX-512 and AVX2 on the CPU
 * and ZMM state saved by the OS. Results equal the scalar reference byte for byte.
 *
 * NOTE: this kernel has been compiled but never executed, because no AVX-512 machine was
 * available. The unit test compares it with the scalar reference on CPUs that have it. */
#include "internal.h"

#include <immintrin.h>

#include "codec_internal.h"

#define UC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Reconstructs 16 weights from the 16 quantised bytes in `q16`. */
UC_ALWAYS_INLINE __m512 dequant16(__m128i q16, __m512 dl, __m512 ml)
{
	__m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q16));
	return _mm512_sub_ps(_mm512_mul_ps(q, dl), ml);
}

/* Rounds 16 floats to bf16 with (u + 0x7FFF + ((u >> 16) & 1)) >> 16 and narrows them. */
UC_ALWAYS_INLINE __m256i round_bf16(__m512 value)
{
	__m512i u = _mm512_castps_si512(value);
	__m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
	u = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
	return _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16));
}

UC_ALWAYS_INLINE void store16(__m512 w, uc_dtype dtype, uint8_t *out)
{
	if (dtype == UC_DTYPE_F32)
		_mm512_storeu_ps(out, w);
	else if (dtype == UC_DTYPE_F16)
		_mm256_storeu_si256((__m256i *)out, _mm512_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT));
	else
		_mm256_storeu_si256((__m256i *)out, round_bf16(w));
}

/* Writes the 32 weights of one sub-block, quantised values in `q`, as `dtype`. */
UC_ALWAYS_INLINE void emit_subblock(__m256i q, float dl_scalar, float ml_scalar, uc_dtype dtype,
				    uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	__m512 dl = _mm512_set1_ps(dl_scalar);
	__m512 ml = _mm512_set1_ps(ml_scalar);
	store16(dequant16(_mm256_castsi256_si128(q), dl, ml), dtype, out);
	store16(dequant16(_mm256_extracti128_si256(q, 1), dl, ml), dtype, out + 16 * element);
}

/* Returns 16 in each byte whose `bit` is set in `qh`, else 0: the fifth bit of q. */
UC_ALWAYS_INLINE __m256i fifth_bits(__m256i qh, int bit)
{
	__mmask32 set = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((char)(1 << bit)));
	return _mm256_maskz_mov_epi8(set, _mm256_set1_epi8(16));
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

void ucp_uc5_decode_avx512(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
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
