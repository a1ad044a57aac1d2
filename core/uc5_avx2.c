/* AVX2 + FMA + F16C reconstruction kernel. Compiled with -mavx2 -mf16c -mfma and run only
 * when the dispatcher has found all three on the CPU and YMM state saved by the OS. Results
 * equal the scalar reference byte for byte. Each weight is one fused multiply-subtract
 * dl * q - ml, which rounds once like the reference's multiply and subtract because
 * dl * q is exact in binary32 (dl = d * sc has at most 17 significant bits and q 5).
 * bf16 comes from a float rounding that equals the reference's integer round-to-nearest-
 * even (round_bf16), and f16 from vcvtps2ph with round-to-nearest-even.
 *
 * A block's 5-bit values are unpacked to one 16-bit word per weight in a prepared_block
 * buffer. Read as fp16, a word q is the subnormal q * 2^-24, so vcvtph2ps turns 8 of them
 * into exact floats in one instruction. dl carries the factor 2^24 back: scaling by a power
 * of two is exact, so (q * 2^-24) * (dl * 2^24) is exactly q * dl. */
#include "internal.h"

#include <immintrin.h>

#include "codec_internal.h"

#define UC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Largest window, in bytes of blocks, whose kernel call prefetches the next window. A
 * 64 KiB bf16 reconstruction window has 22.5 KiB of blocks; 128 KiB stays well inside the
 * L2 caches of current x86 cores (256 KiB and up). */
#define UC5_FETCH_AHEAD_MAX_BYTES ((size_t)128 << 10)

/* Computes dl[j] = f16(d) * 2^24 * sc[j] and ml[j] = f16(dmin) * m[j] for the 8 sub-blocks:
 * ml and dl / 2^24 are the same binary32 products as ucp_uc5_block_factors. vcvtph2ps
 * converts every finite fp16, subnormals included, exactly.
 * NOTE: that vcvtph2ps ignores MXCSR.DAZ, which a caller may have set, was checked on AMD
 * Zen 3 only. The reference computes no binary32 subnormal, so DAZ cannot change it. */
UC_ALWAYS_INLINE void block_factors(const uint8_t *block, float dl[UC5_SUBBLOCKS],
				    float ml[UC5_SUBBLOCKS])
{
	/* The 12 scale bytes hold eight 6-bit sub-scales and eight 6-bit sub-mins. Bytes 0-3
	 * carry sc[0..3] in bits 0-5, bytes 4-7 carry m[0..3], bytes 8-11 carry the low four
	 * bits of sc[4..7] and m[4..7], and bits 6-7 of bytes 0-7 carry their high two bits. */
	const uint8_t *scales = block + UC5_OFFSET_SCALES;
	uint32_t low = ucp_load_le32(scales), mid = ucp_load_le32(scales + 4);
	uint32_t high = ucp_load_le32(scales + 8);
	uint64_t sc = (low & 0x3F3F3F3Fu) |
		      (uint64_t)((high & 0x0F0F0F0Fu) | ((low >> 2) & 0x30303030u)) << 32;
	uint64_t m = (mid & 0x3F3F3F3Fu) |
		     (uint64_t)(((high >> 4) & 0x0F0F0F0Fu) | ((mid >> 2) & 0x30303030u)) << 32;

	__m128 d_dmin = _mm_cvtph_ps(_mm_cvtsi32_si128((int)ucp_load_le32(block + UC5_OFFSET_D)));
	__m256 d = _mm256_mul_ps(_mm256_broadcastss_ps(d_dmin), _mm256_set1_ps(0x1p24f));
	__m256 dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(d_dmin));
	__m256 sc_f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)sc)));
	__m256 m_f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)m)));
	_mm256_storeu_ps(dl, _mm256_mul_ps(d, sc_f));
	_mm256_storeu_ps(ml, _mm256_mul_ps(dmin, m_f));
}

/* Returns the fifth bit of q for sub-block `bit` (0..7): 16 in each byte whose bit `bit` is
 * set in `qh`, else 0. The 16-bit shift moves bit `bit` of every byte to bit 4 of the same
 * byte. Bits that cross into a neighbouring byte land outside bit 4 and are masked off. */
UC_ALWAYS_INLINE __m256i fifth_bits(__m256i qh, int bit)
{
	__m256i moved = qh;
	if (bit < 4)
		moved = _mm256_slli_epi16(qh, 4 - bit);
	else if (bit > 4)
		moved = _mm256_srli_epi16(qh, bit - 4);
	return _mm256_and_si256(moved, _mm256_set1_epi8(16));
}

/* Reconstructs 8 weights from the 8 quantised words at `q` with one rounding. `dl` carries
 * the factor 2^24 (see the file comment for why this equals the reference). */
UC_ALWAYS_INLINE __m256 dequant8(const uint16_t *q, __m256 dl, __m256 ml)
{
	__m256 value = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)q));
	return _mm256_fmsub_ps(value, dl, ml);
}

/* Rounds 8 floats to bf16 precision by Veltkamp's splitting with C = 2^16 + 1, leaving the
 * bf16 in the high half of each lane and zeros in the low half. An exhaustive comparison
 * over every normal binary32 below 2^100 in magnitude found it equal to the reference's
 * integer rounding (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000, and it keeps +0 and -0.
 * Reconstructed weights are zero or between 2^-24 and 2^28 in magnitude, because d * sc * q
 * and dmin * m are multiples of 2^-24 below 2^27, so none is subnormal and t never
 * overflows. */
UC_ALWAYS_INLINE __m256 round_bf16(__m256 value)
{
	__m256 t = _mm256_mul_ps(value, _mm256_set1_ps(65537.0f));
	/* Materialise t, so that no compiler setting contracts value * C - value into one FMA,
	 * which would break the splitting. */
	__asm__("" : "+x"(t));
	return _mm256_sub_ps(t, _mm256_sub_ps(t, value));
}

/* Writes the 32 weights of one sub-block, whose quantised words are at `q`, as `dtype`.
 * `q` contains 8-weight groups in the order prepare_block stores them. For f32 and f16
 * that is weights 0-7, 16-23, 8-15, 24-31. For bf16 it is the even-indexed weights of 0-15,
 * of 16-31, then the odd-indexed ones, so that one shift and one OR interleave two rounded
 * vectors into 16 consecutive bf16 values. */
UC_ALWAYS_INLINE void emit_subblock(const uint16_t *q, float dl_scalar, float ml_scalar,
				    uc_dtype dtype, uint8_t *out)
{
	__m256 dl = _mm256_set1_ps(dl_scalar);
	__m256 ml = _mm256_set1_ps(ml_scalar);

	if (dtype == UC_DTYPE_BF16) {
#pragma GCC unroll 2
		for (int half = 0; half < 2; half++) {
			__m256i even = _mm256_castps_si256(round_bf16(dequant8(q + 8 * half, dl, ml)));
			__m256i odd = _mm256_castps_si256(round_bf16(dequant8(q + 16 + 8 * half, dl, ml)));
			__m256i packed = _mm256_or_si256(_mm256_srli_epi32(even, 16), odd);
			_mm256_storeu_si256((__m256i *)out + half, packed);
		}
		return;
	}
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		static const int group_offset[4] = { 0, 16, 8, 24 };  /* words of weights 8i..8i+7 */
		__m256 w = dequant8(q + group_offset[i], dl, ml);
		if (dtype == UC_DTYPE_F32)
			_mm256_storeu_ps((float *)out + 8 * i, w);
		else
			_mm_storeu_si128((__m128i *)out + i, _mm256_cvtps_ph(w, _MM_FROUND_TO_NEAREST_INT));
	}
}

/* One block's decoding inputs: its 256 quantised values, one 16-bit word each, and its
 * factors. */
typedef struct {
	_Alignas(32) uint16_t q[UC5_SUBBLOCKS][UC5_SUBBLOCK_WEIGHTS];
	_Alignas(32) float dl[UC5_SUBBLOCKS];
	_Alignas(32) float ml[UC5_SUBBLOCKS];
} prepared_block;

/* Unpacks the 5-bit values and computes the factors of one block. vpunpck{l,h}bw widen
 * within 128-bit lanes, which sets the group order described at emit_subblock; for bf16
 * the bytes are first sorted even-indexed weights first within each 16-weight half. */
UC_ALWAYS_INLINE void prepare_block(const uint8_t *block, uc_dtype dtype, prepared_block *prepared)
{
	const __m256i nibble = _mm256_set1_epi8(15);
	const __m256i even_odd = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
						  0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
	block_factors(block, prepared->dl, prepared->ml);

	__m256i qh = _mm256_loadu_si256((const __m256i *)(block + UC5_OFFSET_QH));
	if (dtype == UC_DTYPE_BF16)
		qh = _mm256_shuffle_epi8(qh, even_odd);
#pragma GCC unroll 4
	for (int c = 0; c < 4; c++) {
		__m256i qs = _mm256_loadu_si256((const __m256i *)(block + UC5_OFFSET_QS + 32 * c));
		if (dtype == UC_DTYPE_BF16)
			qs = _mm256_shuffle_epi8(qs, even_odd);
		__m256i low = _mm256_and_si256(qs, nibble);
		__m256i high = _mm256_and_si256(_mm256_srli_epi16(qs, 4), nibble);
		__m256i q0 = _mm256_or_si256(low, fifth_bits(qh, 2 * c));
		__m256i q1 = _mm256_or_si256(high, fifth_bits(qh, 2 * c + 1));
		__m256i zero = _mm256_setzero_si256();
		_mm256_store_si256((__m256i *)prepared->q[2 * c], _mm256_unpacklo_epi8(q0, zero));
		_mm256_store_si256((__m256i *)prepared->q[2 * c] + 1, _mm256_unpackhi_epi8(q0, zero));
		_mm256_store_si256((__m256i *)prepared->q[2 * c + 1], _mm256_unpacklo_epi8(q1, zero));
		_mm256_store_si256((__m256i *)prepared->q[2 * c + 1] + 1, _mm256_unpackhi_epi8(q1, zero));
	}
}

UC_ALWAYS_INLINE void decode_blocks(const uint8_t *blocks, size_t nblocks, uc_dtype dtype,
				    uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	prepared_block prepared[2];
	/* Reconstruction decodes a tensor window by window in order, and uc5_decode reads every
	 * block's scales before it runs this kernel, so a small window fetches the next
	 * window's blocks into L2 as it goes. Other callers pay at most one window of unused
	 * reads, and a prefetch never faults, even past the end of a mapping. A large window,
	 * such as a whole tensor, skips this: its next window would not stay in L2. */
	size_t window_bytes = nblocks * UC5_BLOCK_BYTES;
	int fetch_ahead = window_bytes <= UC5_FETCH_AHEAD_MAX_BYTES;
	if (nblocks > 0)
		prepare_block(blocks, dtype, &prepared[0]);

	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		if (fetch_ahead) {
			const char *ahead = (const char *)block + window_bytes;
			_mm_prefetch(ahead, _MM_HINT_T1);
			_mm_prefetch(ahead + 64, _MM_HINT_T1);
			_mm_prefetch(ahead + 128, _MM_HINT_T1);
		}

		/* Prepare the next block before decoding this one, so that the loads in
		 * emit_subblock read values stored an iteration earlier instead of waiting for
		 * store-to-load forwarding. */
		if (b + 1 < nblocks)
			prepare_block(block + UC5_BLOCK_BYTES, dtype, &prepared[(b + 1) & 1]);
		/* Keep those loads: the optimiser would otherwise replace them with register
		 * shuffles, which cost more. */
		__asm__("" : "+m"(prepared));

		const prepared_block *current = &prepared[b & 1];
		uint8_t *block_out = out + b * UC5_BLOCK_WEIGHTS * element;
#pragma GCC unroll 8
		for (int j = 0; j < UC5_SUBBLOCKS; j++)
			emit_subblock(current->q[j], current->dl[j], current->ml[j], dtype,
				      block_out + UC5_SUBBLOCK_WEIGHTS * j * element);
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
