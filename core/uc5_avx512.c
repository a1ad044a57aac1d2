/* AVX-512 (F, BW, VL) + FMA + F16C reconstruction kernel, 16 weights per instruction.
 * Compiled with its own flags and run only when the dispatcher has found AVX-512, AVX2,
 * FMA and F16C on the CPU and ZMM state saved by the OS. Results equal the scalar
 * reference byte for byte: one fused multiply-subtract per weight rounds like the
 * reference's multiply and subtract because dl * q is exact in binary32 (see uc5_avx2.c).
 *
 * NOTE: this kernel has been compiled but never executed, because no AVX-512 machine was
 * available. The unit test compares it with the scalar reference on CPUs that have it. */
#include "internal.h"

#include <immintrin.h>

#include "codec_internal.h"

#define UC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Largest window, in bytes of blocks, whose kernel call prefetches the next window (the
 * reason is at the same constant in uc5_avx2.c). */
#define UC5_FETCH_AHEAD_MAX_BYTES ((size_t)128 << 10)

/* Reconstructs 16 weights from the 16 quantised bytes in `q16`. */
UC_ALWAYS_INLINE __m512 dequant16(__m128i q16, __m512 dl, __m512 ml)
{
	__m512 q = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q16));
	return _mm512_fmsub_ps(q, dl, ml);
}

/* Rounds 16 floats to bf16 and narrows them, by the Veltkamp splitting of uc5_avx2.c, which
 * equals the reference's integer rounding (u + 0x7FFF + ((u >> 16) & 1)) >> 16 for every
 * reconstructed weight. */
UC_ALWAYS_INLINE __m256i round_bf16(__m512 value)
{
	__m512 t = _mm512_mul_ps(value, _mm512_set1_ps(65537.0f));
	__asm__("" : "+v"(t));  /* materialise t, so that value * C - value is never fused */
	__m512 rounded = _mm512_sub_ps(t, _mm512_sub_ps(t, value));
	return _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(rounded), 16));
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

/* Computes dl[j] = f16(d) * sc[j] and ml[j] = f16(dmin) * m[j] for the 8 sub-blocks, the
 * same binary32 products as ucp_uc5_block_factors (the layout of the 12 scale bytes is
 * described there and in uc5_avx2.c). vcvtph2ps converts every finite fp16 exactly. */
UC_ALWAYS_INLINE void block_factors(const uint8_t *block, float dl[UC5_SUBBLOCKS],
				    float ml[UC5_SUBBLOCKS])
{
	const uint8_t *scales = block + UC5_OFFSET_SCALES;
	uint32_t low = ucp_load_le32(scales), mid = ucp_load_le32(scales + 4);
	uint32_t high = ucp_load_le32(scales + 8);
	uint64_t sc = (low & 0x3F3F3F3Fu) |
		      (uint64_t)((high & 0x0F0F0F0Fu) | ((low >> 2) & 0x30303030u)) << 32;
	uint64_t m = (mid & 0x3F3F3F3Fu) |
		     (uint64_t)(((high >> 4) & 0x0F0F0F0Fu) | ((mid >> 2) & 0x30303030u)) << 32;

	__m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128((int)ucp_load_le32(block + UC5_OFFSET_D)));
	__m256 d = _mm256_broadcastss_ps(d_dmin);
	__m256 dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin));
	__m256 sc_f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
	__m256 m_f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m)));
	_mm256_storeu_ps(dl, _mm256_mul_ps(d, sc_f));
	_mm256_storeu_ps(ml, _mm256_mul_ps(dmin, m_f));
}

UC_ALWAYS_INLINE void decode_blocks(const uint8_t *blocks, size_t nblocks, uc_dtype dtype,
				    uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	const __m256i nibble = _mm256_set1_epi8(15);

	size_t window_bytes = nblocks * UC5_BLOCK_BYTES;
	int fetch_ahead = window_bytes <= UC5_FETCH_AHEAD_MAX_BYTES;

	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		/* Fetch a small window's successor into L2, for the scale check that uc5_decode
		 * runs before it (see uc5_avx2.c). A prefetch never faults. */
		if (fetch_ahead) {
			const char *ahead = (const char *)block + window_bytes;
			_mm_prefetch(ahead, _MM_HINT_T1);
			_mm_prefetch(ahead + 64, _MM_HINT_T1);
			_mm_prefetch(ahead + 128, _MM_HINT_T1);
		}
		float dl[UC5_SUBBLOCKS], ml[UC5_SUBBLOCKS];
		block_factors(block, dl, ml);

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
