/* The uc5 5-bit codec, target dtypes, and the instruction-set dispatcher.
 *
 * uc5 stores a tensor as a flat row-major sequence of n weights cut into super-blocks
 * of 256 (the Q5_K layout of ggml, 176 bytes, 5.5 bits per weight). Reconstruction is
 * defined by the scalar reference in binary32 arithmetic without fused multiply-add,
 * rounded to the target dtype with integer round-to-nearest-even; every SIMD path
 * produces the same bytes. See docs/pack-format.md for the bit layout and the rule for
 * a final, partial super-block. */
#ifndef UC_CODEC_H
#define UC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "uc_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types: the dtype a tensor is reconstructed to, and the dtypes a source file may
 * hold. Values are stable; they appear in manifests by name only. */
typedef enum {
	UC_DTYPE_F32 = 0,
	UC_DTYPE_F16 = 1,
	UC_DTYPE_BF16 = 2,
} uc_dtype;

/* Returns "f32", "f16" or "bf16"; NULL for a value outside the enum. */
UC_API const char *uc_dtype_name(uc_dtype dtype);
/* Parses "f32", "f16" or "bf16" (exact, lower case). Returns 0, or -1 when unknown. */
UC_API int uc_dtype_parse(const char *name, uc_dtype *out);
/* Returns the size of one element in bytes (4, 2 or 2). */
UC_API size_t uc_dtype_size(uc_dtype dtype);

/* Scalar conversions that define rounding for every path: integer round-to-nearest-even,
 * subnormals kept, overflow to infinity. NaN inputs map to a quiet NaN of the same sign. */
UC_API uint16_t uc_f32_to_bf16(float value);
UC_API uint16_t uc_f32_to_f16(float value);
UC_API float uc_bf16_to_f32(uint16_t bits);
UC_API float uc_f16_to_f32(uint16_t bits);

/* Converts `count` float32 values to `dtype`, writing count * uc_dtype_size(dtype) bytes
 * of little-endian elements to `out`. This is the `raw` encoding. */
UC_API void uc_convert_from_f32(const float *src, size_t count, uc_dtype dtype, void *out);

/* Instruction-set paths for reconstruction. */
typedef enum {
	UC_ISA_SCALAR = 0,
	UC_ISA_AVX2 = 1,
	UC_ISA_AVX512 = 2,
	UC_ISA_NEON = 3,
	UC_ISA_COUNT
} uc_isa;

/* Returns "scalar", "avx2", "avx512" or "neon". */
UC_API const char *uc_isa_name(uc_isa isa);
/* Returns 1 when the path is compiled in and the CPU and OS support it, else 0. */
UC_API int uc_isa_available(uc_isa isa);
/* Chooses the path once per process: the UC_ISA environment variable when set (an unknown or
 * unavailable name is UC_ERR_ISA, never a silent fallback), else the best available path.
 * Later calls return the first call's result until uc_isa_force chooses a path, which
 * also clears a UC_ISA failure. Thread-safe. */
UC_API uc_status uc_isa_init(uc_error *err);
/* Returns the path in use; calls uc_isa_init first if needed and returns UC_ISA_SCALAR if
 * that failed. */
UC_API uc_isa uc_isa_active(void);
/* Switches the path for this process (tests and benchmarks). UC_ERR_ISA when unavailable. */
UC_API uc_status uc_isa_force(uc_isa isa, uc_error *err);

#define UC5_BLOCK_WEIGHTS 256
#define UC5_BLOCK_BYTES 176

/* Returns the encoded size in bytes of n weights: ceil(n / 256) * 176. */
UC_API uint64_t uc5_encoded_size(uint64_t n_weights);

/* Encodes `n` float32 weights into uc5 blocks. `out` must hold uc5_encoded_size(n) bytes.
 * The result depends only on the input values. A NaN or infinity is UC_ERR_NONFINITE
 * and a weight too large for the fp16 block scales is UC_ERR_RANGE; both messages name
 * `tensor_name` and the flat index. */
UC_API uc_status uc5_encode(const float *src, uint64_t n, uint8_t *out,
			    const char *tensor_name, uc_error *err);

/* Reconstructs weights [first, first + count) of a uc5 tensor of `n_total` weights into
 * `out` (count * uc_dtype_size(dtype) bytes) on the active path. `blocks` points at the
 * tensor's first block and holds uc5_encoded_size(n_total) bytes. `first` must be a
 * multiple of 256 and first + count <= n_total. A block whose fp16 scale or min-scale is
 * infinite or NaN is UC_ERR_FORMAT, naming the block index; the encoder never writes one. */
UC_API uc_status uc5_decode(const uint8_t *blocks, uint64_t n_total, uint64_t first,
			    uint64_t count, uc_dtype dtype, void *out, uc_error *err);

#ifdef __cplusplus
}
#endif

#endif
