/* AArch64 Advanced SIMD (NEON) reconstruction kernel, 4 weights per instruction. Results
 * equal the scalar reference byte for byte. Each weight is one fused multiply-add
 * q * dl + (-ml), which rounds once like the reference's multiply and subtract because
 * dl * q is exact in binary32 (dl = d * sc has at most 17 significant bits and q 5).
 * bf16 comes from the float rounding described in uc5_avx2.c, f16 from fcvtn in the
 * default round-to-nearest-even mode of FPCR. */
#include "internal.h"

#include <arm_neon.h>

#include "codec_internal.h"

#define UC_ALWAYS_INLINE static inline __attribute__((always_inline))

/* Rounds 4 floats to bf16 by Veltkamp's splitting with C = 2^16 + 1, which equals the
 * reference's integer rounding for every reconstructed weight (see uc5_avx2.c). */
UC_ALWAYS_INLINE uint16x4_t round_bf16(float32x4_t value)
{
	float32x4_t t = vmulq_f32(value, vdupq_n_f32(65537.0f));
	__asm__("" : "+w"(t));  /* materialise t, so that value * C - value is never fused */
	float32x4_t rounded = vsubq_f32(t, vsubq_f32(t, value));
	return vshrn_n_u32(vreinterpretq_u32_f32(rounded), 16);
}

/* Reconstructs 4 weights from 4 quantised values and stores them as `dtype`. `neg_ml` is
 * -ml, so that one fused multiply-add computes q * dl - ml. */
UC_ALWAYS_INLINE void emit4(uint32x4_t q, float32x4_t dl, float32x4_t neg_ml, uc_dtype dtype,
			    uint8_t *out)
{
	float32x4_t w = vfmaq_f32(neg_ml, vcvtq_f32_u32(q), dl);
	if (dtype == UC_DTYPE_F32)
		vst1q_f32((float *)(void *)out, w);
	else if (dtype == UC_DTYPE_F16)
		vst1_u16((uint16_t *)(void *)out, vreinterpret_u16_f16(vcvt_f16_f32(w)));
	else
		vst1_u16((uint16_t *)(void *)out, round_bf16(w));
}

/* Reconstructs 16 weights from 16 quantised bytes. */
UC_ALWAYS_INLINE void emit16(uint8x16_t q, float32x4_t dl, float32x4_t neg_ml, uc_dtype dtype,
			     uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	uint16x8_t low = vmovl_u8(vget_low_u8(q));
	uint16x8_t high = vmovl_u8(vget_high_u8(q));
	emit4(vmovl_u16(vget_low_u16(low)), dl, neg_ml, dtype, out);
	emit4(vmovl_u16(vget_high_u16(low)), dl, neg_ml, dtype, out + 4 * element);
	emit4(vmovl_u16(vget_low_u16(high)), dl, neg_ml, dtype, out + 8 * element);
	emit4(vmovl_u16(vget_high_u16(high)), dl, neg_ml, dtype, out + 12 * element);
}

/* Returns 16 in each byte whose `bit` is set in `qh`, else 0: the fifth bit of q. */
UC_ALWAYS_INLINE uint8x16_t fifth_bits(uint8x16_t qh, int bit)
{
	uint8x16_t set = vtstq_u8(qh, vdupq_n_u8((uint8_t)(1 << bit)));
	return vandq_u8(set, vdupq_n_u8(16));
}

UC_ALWAYS_INLINE void decode_blocks(const uint8_t *blocks, size_t nblocks, uc_dtype dtype,
				    uint8_t *out)
{
	size_t element = dtype == UC_DTYPE_F32 ? 4 : 2;
	const uint8x16_t nibble = vdupq_n_u8(15);

	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		float dl[UC5_SUBBLOCKS], ml[UC5_SUBBLOCKS];
		ucp_uc5_block_factors(block, dl, ml);

		uint8x16_t qh[2] = { vld1q_u8(block + UC5_OFFSET_QH), vld1q_u8(block + UC5_OFFSET_QH + 16) };
		uint8_t *block_out = out + b * UC5_BLOCK_WEIGHTS * element;
		for (int c = 0; c < 4; c++) {
			float32x4_t dl0 = vdupq_n_f32(dl[2 * c]), neg_ml0 = vdupq_n_f32(-ml[2 * c]);
			float32x4_t dl1 = vdupq_n_f32(dl[2 * c + 1]), neg_ml1 = vdupq_n_f32(-ml[2 * c + 1]);
			for (int half = 0; half < 2; half++) {
				uint8x16_t qs = vld1q_u8(block + UC5_OFFSET_QS + 32 * c + 16 * half);
				uint8x16_t q0 = vorrq_u8(vandq_u8(qs, nibble), fifth_bits(qh[half], 2 * c));
				uint8x16_t q1 = vorrq_u8(vshrq_n_u8(qs, 4), fifth_bits(qh[half], 2 * c + 1));
				emit16(q0, dl0, neg_ml0, dtype, block_out + (64 * c + 16 * half) * element);
				emit16(q1, dl1, neg_ml1, dtype, block_out + (64 * c + 32 + 16 * half) * element);
			}
		}
	}
}

void ucp_uc5_decode_neon(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
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
