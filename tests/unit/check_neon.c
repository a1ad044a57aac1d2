/* Self-check of the NEON path, built by scripts/test-neon for AArch64 and run under
 * qemu-aarch64 (the Check library is not available for the cross target). Compares the
 * NEON kernel with the scalar reference, the scalar fp16 rounding with the hardware's, and
 * the dispatcher's choices. Exits 1 when any check fails. */
#include "internal.h"

#include <arm_neon.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_golden.h"
#include "codec_internal.h"

#define MAX_BLOCKS 67

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "check_neon: FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fputc('\n', stderr);                              \
			failures++;                                       \
		}                                                         \
	} while (0)

static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void random_blocks(uint8_t *blocks, size_t nblocks, uint64_t seed)
{
	for (size_t i = 0; i < nblocks * UC5_BLOCK_BYTES; i++)
		blocks[i] = (uint8_t)next_random(&seed);
	for (size_t b = 0; b < nblocks; b++) {
		uint8_t *block = blocks + b * UC5_BLOCK_BYTES;
		if (ucp_f16_is_nonfinite(ucp_load_le16(block)))
			block[1] &= 0xBF;
		if (ucp_f16_is_nonfinite(ucp_load_le16(block + 2)))
			block[3] &= 0xBF;
	}
}

static void compare_with_scalar(const uint8_t *blocks, size_t nblocks, const char *label)
{
	static uint8_t expected[MAX_BLOCKS * UC5_BLOCK_WEIGHTS * 4], got[MAX_BLOCKS * UC5_BLOCK_WEIGHTS * 4];
	static const uc_dtype dtypes[] = { UC_DTYPE_F32, UC_DTYPE_F16, UC_DTYPE_BF16 };
	for (size_t t = 0; t < 3; t++) {
		size_t size = nblocks * UC5_BLOCK_WEIGHTS * uc_dtype_size(dtypes[t]);
		ucp_uc5_decode_scalar(blocks, nblocks, dtypes[t], expected);
		memset(got, 0xA5, sizeof got);
		ucp_uc5_decode_neon(blocks, nblocks, dtypes[t], got);
		for (size_t i = 0; i < size; i++) {
			if (got[i] != expected[i]) {
				CHECK(0, "%s, %zu blocks: neon %s differs at byte %zu (0x%02x, expected 0x%02x)", label,
				      nblocks, uc_dtype_name(dtypes[t]), i, got[i], expected[i]);
				break;
			}
		}
	}
}

static void check_kernel_random_bytes(void)
{
	static uint8_t blocks[MAX_BLOCKS * UC5_BLOCK_BYTES];
	for (size_t nblocks = 1; nblocks <= MAX_BLOCKS; nblocks++) {
		random_blocks(blocks, nblocks, 1000 + nblocks);
		compare_with_scalar(blocks, nblocks, "random bytes");
	}
}

static void check_kernel_extreme_scales(void)
{
	static const uint16_t headers[][2] = {
		{ 0x7BFF, 0x7BFF }, { 0x0001, 0x0001 }, { 0x0000, 0x0000 }, { 0x03FF, 0x8001 }, { 0xFBFF, 0x7BFF },
	};
	uint8_t blocks[5 * UC5_BLOCK_BYTES];
	for (size_t i = 0; i < 5; i++) {
		uint8_t *block = blocks + i * UC5_BLOCK_BYTES;
		memset(block, 0xFF, UC5_BLOCK_BYTES);
		ucp_store_le16(block, headers[i][0]);
		ucp_store_le16(block + 2, headers[i][1]);
	}
	compare_with_scalar(blocks, 5, "extreme scales");
}

static void check_kernel_encoded(void)
{
	enum { N = 40 * UC5_BLOCK_WEIGHTS };
	static float x[N];
	static uint8_t blocks[40 * UC5_BLOCK_BYTES];
	uint64_t state = 77;
	for (size_t i = 0; i < N; i++) {
		double u1 = ((double)(next_random(&state) >> 11) + 1.0) * 0x1p-53;
		double u2 = (double)(next_random(&state) >> 11) * 0x1p-53;
		x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2)) * (float)(1 + i / 256) * 0.01f;
	}
	uc_error err;
	CHECK(uc5_encode(x, N, blocks, "t", &err) == UC_OK, "encode failed: %s", err.message);
	compare_with_scalar(blocks, 40, "encoded Gaussian");
}

static uint32_t float_bits(float value)
{
	uint32_t bits;
	memcpy(&bits, &value, sizeof bits);
	return bits;
}

/* Returns a bit pattern near an fp16 rounding boundary or special value, or an exact tie. */
static uint32_t edge_pattern(uint64_t *state)
{
	static const uint32_t bases[] = { 0x00000000, 0x33000000, 0x33800000, 0x38800000, 0x387FF000,
					  0x3F801000, 0x477FE000, 0x477FF000, 0x7F800000, 0x7FC00000 };
	uint32_t sign = (uint32_t)(next_random(state) & 1) << 31;
	if (next_random(state) & 1) {
		uint32_t base = bases[next_random(state) % (sizeof bases / sizeof bases[0])];
		uint32_t jitter = (uint32_t)(next_random(state) % 5) - 2;
		return (base + jitter) | sign;
	}

	/* An exact tie: the bits that fp16 drops are 100...0, for a subnormal or normal result. */
	uint32_t exponent = 102 + (uint32_t)(next_random(state) % 40);
	uint32_t dropped = exponent >= 113 ? 13 : 126 - exponent;
	uint32_t half = 1u << (dropped - 1);
	uint32_t mantissa = (uint32_t)next_random(state) & 0x007FFFFFu & ~((half << 1) - 1);
	return sign | (exponent << 23) | mantissa | (half & 0x007FFFFFu);
}

/* The scalar fp16 conversions must equal AArch64's fcvtn and fcvtl (default FPCR). */
static void check_f16_against_hardware(void)
{
	uint64_t state = 5;
	for (int i = 0; i < 2000000; i++) {
		uint32_t bits = (i & 3) == 0 ? edge_pattern(&state) : (uint32_t)next_random(&state);
		float value;
		memcpy(&value, &bits, sizeof value);
		uint16_t hardware = vget_lane_u16(vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(value))), 0);
		uint16_t scalar = uc_f32_to_f16(value);
		if (hardware != scalar) {
			CHECK(0, "f32 0x%08x: uc_f32_to_f16 gave 0x%04x, fcvtn 0x%04x", bits, scalar, hardware);
			return;
		}
	}
	for (uint32_t h = 0; h <= 0xFFFF; h++) {
		float16x4_t half = vreinterpret_f16_u16(vdup_n_u16((uint16_t)h));
		uint32_t hardware = float_bits(vgetq_lane_f32(vcvt_f32_f16(half), 0));
		uint32_t scalar = float_bits(uc_f16_to_f32((uint16_t)h));
		if (hardware != scalar) {
			CHECK(0, "f16 0x%04x: uc_f16_to_f32 gave 0x%08x, fcvtl 0x%08x", h, scalar, hardware);
			return;
		}
	}
}

/* The encoder runs its portable loop here and SSE2 on x86-64; both must write the bytes
 * whose fingerprint test_codec checks. */
static void check_encoder_fingerprint(void)
{
	static float x[CODEC_GOLDEN_WEIGHTS];
	static uint8_t blocks[(CODEC_GOLDEN_WEIGHTS + 255) / 256 * UC5_BLOCK_BYTES];
	uc_error err;
	codec_golden_fill(x, CODEC_GOLDEN_WEIGHTS);
	CHECK(uc5_encode(x, CODEC_GOLDEN_WEIGHTS, blocks, "golden", &err) == UC_OK, "encode failed: %s",
	      err.message);
	uint64_t fingerprint = codec_golden_fingerprint(blocks, sizeof blocks);
	CHECK(fingerprint == CODEC_GOLDEN_FINGERPRINT, "encoder fingerprint 0x%016llx, expected 0x%016llx",
	      (unsigned long long)fingerprint, (unsigned long long)CODEC_GOLDEN_FINGERPRINT);
}

static void check_dispatch(void)
{
	uc_error err;
	CHECK(uc_isa_available(UC_ISA_NEON), "neon is not available");
	CHECK(!uc_isa_available(UC_ISA_AVX2), "avx2 reported available on AArch64");
	CHECK(uc_isa_init(&err) == UC_OK, "uc_isa_init failed: %s", err.message);
	CHECK(uc_isa_active() == UC_ISA_NEON, "default path is %s", uc_isa_name(uc_isa_active()));
	CHECK(uc_isa_force(UC_ISA_AVX512, &err) == UC_ERR_ISA, "forcing avx512 succeeded");
	CHECK(strstr(err.message, "available: scalar, neon") != NULL, "message: %s", err.message);

	/* A window ending inside a block, through the public decoder on the NEON path. */
	static uint8_t blocks[5 * UC5_BLOCK_BYTES];
	static uint16_t expected[5 * UC5_BLOCK_WEIGHTS], got[5 * UC5_BLOCK_WEIGHTS];
	random_blocks(blocks, 5, 3);
	ucp_uc5_decode_scalar(blocks, 5, UC_DTYPE_BF16, expected);
	CHECK(uc_isa_force(UC_ISA_NEON, &err) == UC_OK, "forcing neon failed: %s", err.message);
	CHECK(uc5_decode(blocks, 5 * 256 - 9, 256, 3 * 256 + 101, UC_DTYPE_BF16, got, &err) == UC_OK,
	      "decode failed: %s", err.message);
	CHECK(memcmp(got, expected + 256, (3 * 256 + 101) * 2) == 0, "window differs from scalar");
}

int main(void)
{
	check_kernel_random_bytes();
	check_kernel_extreme_scales();
	check_kernel_encoded();
	check_f16_against_hardware();
	check_encoder_fingerprint();
	check_dispatch();
	if (failures) {
		fprintf(stderr, "check_neon: %d failures\n", failures);
		return 1;
	}
	printf("check_neon: NEON kernel, fp16 rounding and dispatch agree with the scalar reference\n");
	return 0;
}
