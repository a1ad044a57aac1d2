/* A fixed encoder input and the fingerprint of its encoding, shared by test_codec (x86-64)
 * and check_neon (AArch64 under qemu), so both prove the encoder writes the same bytes. */
#ifndef UC_CODEC_GOLDEN_H
#define UC_CODEC_GOLDEN_H

#include <stddef.h>
#include <stdint.h>

/* Weights of the input: 16 full super-blocks and a partial one. */
#define CODEC_GOLDEN_WEIGHTS (4096 + 77)

/* FNV-1a of the encoded bytes. It changes whenever the encoder's choices change, and then
 * must be updated here after checking that SQNR has not dropped. */
#define CODEC_GOLDEN_FINGERPRINT 0x0b80cbf455a03131ull

/* Fills the input with float arithmetic only (no libm), so every architecture builds the
 * same values. The cube gives the distribution heavy tails. */
static inline void codec_golden_fill(float *x, size_t n)
{
	uint64_t state = 31337;
	for (size_t i = 0; i < n; i++) {
		uint64_t z = (state += 0x9E3779B97F4A7C15ull);  /* splitmix64 */
		z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
		z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
		z ^= z >> 31;
		float u = (float)(int32_t)(uint32_t)(z >> 32) * 0x1p-31f;
		x[i] = u * u * u * 3.0f + u * 0.5f;
	}
}

/* Returns the 64-bit FNV-1a hash of `len` bytes. */
static inline uint64_t codec_golden_fingerprint(const uint8_t *bytes, size_t len)
{
	uint64_t hash = 0xCBF29CE484222325ull;
	for (size_t i = 0; i < len; i++) {
		hash ^= bytes[i];
		hash *= 0x100000001B3ull;
	}
	return hash;
}

#endif
