/* Private pieces of the uc5 codec shared by the scalar reference, the SIMD kernels and the
 * dispatcher. Nothing here is exported (prefix ucp_). */
#ifndef UC_CODEC_INTERNAL_H
#define UC_CODEC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "uc_codec.h"

/* Byte offsets inside one 176-byte super-block. */
#define UC5_OFFSET_D 0
#define UC5_OFFSET_DMIN 2
#define UC5_OFFSET_SCALES 4
#define UC5_OFFSET_QH 16
#define UC5_OFFSET_QS 48
#define UC5_SUBBLOCKS 8
#define UC5_SUBBLOCK_WEIGHTS 32

/* A reconstruction kernel: decodes `nblocks` whole super-blocks into `out`, which holds
 * nblocks * 256 elements of `dtype`. The caller has checked that no block has an infinite
 * or NaN d or dmin. Every kernel writes the same bytes as ucp_uc5_decode_scalar. */
typedef void (*ucp_uc5_kernel)(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out);

void ucp_uc5_decode_scalar(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out);
#ifdef UC_HAVE_X86_KERNELS
void ucp_uc5_decode_avx2(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out);
void ucp_uc5_decode_avx512(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out);
#endif
#ifdef UC_HAVE_NEON_KERNELS
void ucp_uc5_decode_neon(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out);
#endif

/* Returns the kernel of the active path. Fails with UC_ERR_ISA when the UC_ISA environment
 * variable names an unknown or unavailable path and no path has been forced since. */
uc_status ucp_isa_active_kernel(ucp_uc5_kernel *kernel, uc_error *err);

/* Returns the kernel of one path, or NULL when it is not compiled in. The caller checks
 * uc_isa_available before running it. */
ucp_uc5_kernel ucp_isa_kernel(uc_isa isa);

/* Unpacks the 6-bit sub-scale and sub-min of sub-block j (0..7) from the 12 packed bytes. */
static inline void ucp_uc5_unpack_scale(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m)
{
	if (j < 4) {
		*sc = scales[j] & 63;
		*m = scales[j + 4] & 63;
	} else {
		*sc = (uint8_t)((scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4));
		*m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
	}
}

/* Computes the per-sub-block factors of one block exactly as the reference defines them:
 * dl[j] = f16(d) * sc[j] and ml[j] = f16(dmin) * m[j], in binary32. */
static inline void ucp_uc5_block_factors(const uint8_t *block, float dl[UC5_SUBBLOCKS],
					 float ml[UC5_SUBBLOCKS])
{
	float d = uc_f16_to_f32((uint16_t)(block[UC5_OFFSET_D] | (block[UC5_OFFSET_D + 1] << 8)));
	float dmin = uc_f16_to_f32((uint16_t)(block[UC5_OFFSET_DMIN] |
					      (block[UC5_OFFSET_DMIN + 1] << 8)));
	for (int j = 0; j < UC5_SUBBLOCKS; j++) {
		uint8_t sc, m;
		ucp_uc5_unpack_scale(block + UC5_OFFSET_SCALES, j, &sc, &m);
		dl[j] = d * (float)sc;
		ml[j] = dmin * (float)m;
	}
}

/* Returns 1 when an fp16 bit pattern is infinite or NaN (exponent bits all ones). */
static inline int ucp_f16_is_nonfinite(uint16_t bits)
{
	return (bits & 0x7C00) == 0x7C00;
}

#endif
