/* Dtype names and the scalar float conversions that define rounding for every path. */
#include "internal.h"

#include <string.h>

#include "uc_codec.h"

static const char *const dtype_names[] = {
	[UC_DTYPE_F32] = "f32",
	[UC_DTYPE_F16] = "f16",
	[UC_DTYPE_BF16] = "bf16",
};

const char *uc_dtype_name(uc_dtype dtype)
{
	if ((unsigned)dtype >= sizeof dtype_names / sizeof dtype_names[0])
		return NULL;
	return dtype_names[dtype];
}

int uc_dtype_parse(const char *name, uc_dtype *out)
{
	if (!name)
		return -1;
	for (unsigned i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++) {
		if (strcmp(name, dtype_names[i]) == 0) {
			*out = (uc_dtype)i;
			return 0;
		}
	}
	return -1;
}

size_t uc_dtype_size(uc_dtype dtype)
{
	return dtype == UC_DTYPE_F32 ? 4 : 2;
}

static uint32_t float_bits(float value)
{
	uint32_t bits;
	memcpy(&bits, &value, sizeof bits);
	return bits;
}

static float bits_float(uint32_t bits)
{
	float value;
	memcpy(&value, &bits, sizeof value);
	return value;
}

uint16_t uc_f32_to_bf16(float value)
{
	uint32_t u = float_bits(value);
	if ((u & 0x7FFFFFFFu) > 0x7F800000u)
		return (uint16_t)((u >> 16) | 0x0040);  /* set the quiet bit, keep the sign and high payload */
	return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1)) >> 16);
}

float uc_bf16_to_f32(uint16_t bits)
{
	uint32_t u = (uint32_t)bits << 16;
	if ((u & 0x7FFFFFFFu) > 0x7F800000u)
		u |= 0x00400000u;
	return bits_float(u);
}

/* Rounds a magnitude below the smallest normal fp16 (2^-14) to a subnormal fp16, to nearest
 * with ties to even. The result may carry into 0x0400, the smallest normal, as it should. */
static uint16_t f16_subnormal(uint32_t magnitude)
{
	if (magnitude <= 0x33000000u)  /* at most 2^-25, half the smallest subnormal: ties to 0 */
		return 0;
	uint32_t exponent = magnitude >> 23;
	uint32_t mantissa = (magnitude & 0x007FFFFFu) | 0x00800000u;
	uint32_t shift = 126 - exponent;  /* 14..24 here */
	uint32_t result = mantissa >> shift;
	uint32_t rest = mantissa & ((1u << shift) - 1);
	uint32_t half = 1u << (shift - 1);
	if (rest > half || (rest == half && (result & 1)))
		result++;
	return (uint16_t)result;
}

uint16_t uc_f32_to_f16(float value)
{
	uint32_t u = float_bits(value);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t magnitude = u & 0x7FFFFFFFu;

	if (magnitude > 0x7F800000u)
		return (uint16_t)(sign | 0x7E00 | ((magnitude >> 13) & 0x03FF));
	if (magnitude >= 0x477FF000u)  /* 65520 and above round to infinity */
		return (uint16_t)(sign | 0x7C00);
	if (magnitude < 0x38800000u)
		return (uint16_t)(sign | f16_subnormal(magnitude));

	/* Rebias the exponent from 127 to 15, then round the 13 dropped mantissa bits. */
	uint32_t rebiased = magnitude - 0x38000000u;
	rebiased += 0x0FFFu + ((rebiased >> 13) & 1);
	return (uint16_t)(sign | (rebiased >> 13));
}

float uc_f16_to_f32(uint16_t bits)
{
	uint32_t sign = (uint32_t)(bits & 0x8000) << 16;
	uint32_t exponent = (bits >> 10) & 0x1F;
	uint32_t mantissa = bits & 0x03FF;

	if (exponent == 0) {
		float magnitude = (float)mantissa * 0x1p-24f;  /* exact: at most 10 significant bits */
		return bits_float(float_bits(magnitude) | sign);
	}
	if (exponent == 31) {
		uint32_t quiet = mantissa ? 0x00400000u : 0;
		return bits_float(sign | 0x7F800000u | (mantissa << 13) | quiet);
	}
	return bits_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void uc_convert_from_f32(const float *src, size_t count, uc_dtype dtype, void *out)
{
	if (dtype == UC_DTYPE_F32) {
		memcpy(out, src, count * sizeof *src);
		return;
	}

	uint8_t *bytes = out;
	for (size_t i = 0; i < count; i++) {
		uint16_t bits = dtype == UC_DTYPE_BF16 ? uc_f32_to_bf16(src[i]) : uc_f32_to_f16(src[i]);
		ucp_store_le16(bytes + 2 * i, bits);
	}
}
