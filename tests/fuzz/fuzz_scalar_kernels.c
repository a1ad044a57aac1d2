/* Stand-ins for the SIMD decoding kernels in the pack fuzz targets, which are compiled in
 * one clang invocation and so cannot give the kernel files their -mavx2 and -mavx512
 * flags. They run the scalar reference, which defines the result of every path; the unit
 * tests compare the real kernels with it. */
#include "codec_internal.h"

void ucp_uc5_decode_avx2(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
{
	ucp_uc5_decode_scalar(blocks, nblocks, dtype, out);
}

void ucp_uc5_decode_avx512(const uint8_t *blocks, size_t nblocks, uc_dtype dtype, void *out)
{
	ucp_uc5_decode_scalar(blocks, nblocks, dtype, out);
}
