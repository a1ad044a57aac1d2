/* The uc5 encoder: searches the scales and 5-bit values of each 256-weight super-block for
 * a low squared reconstruction error (a heuristic search, not a proven minimum).
 *
 * Per super-block the encoder
 *  1. fits each 32-weight sub-block with w ~ scale * q - offset (q in 0..31, offset >= 0)
 *     by least squares over many candidate grids;
 *  2. quantises the eight scales and offsets to 6-bit multiples sc*d and m*dmin of two fp16
 *     super-block factors, trying several d and dmin and both neighbouring 6-bit values,
 *     and requantising q for every try so that the actual error decides;
 *  3. refits d and dmin by least squares for the chosen sc, m and q and keeps the refit
 *     when it lowers the actual error.
 * Nothing depends on threads, global state or the position of the block in the tensor.
 *
 * Partial final block rule: when r = n mod 256 is not 0, the last super-block covers only
 * r weights. Scales and mins are fitted on those r weights only, positions r..255 get
 * q = 0, and sub-blocks that lie entirely at or past r get sc = m = 0. The decoder never
 * emits positions past r, so a tensor of n weights always takes ceil(n / 256) * 176 bytes
 * and an empty tensor takes none. */
#include "internal.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "codec_internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define QMAX 31          /* largest 5-bit value */
#define SCALE_MAX 63     /* largest 6-bit sub-scale or sub-min */
#define F16_MAX 65504.0f

/* A sub-block's weights and the state of its fit. */
typedef struct {
	const float *x;
	int n;            /* valid weights: 32, fewer in a partial final block, or 0 */
	float scale;      /* continuous fit: w ~ scale * q - offset */
	float offset;
	uint8_t sc, m;    /* chosen 6-bit factors */
} subblock;

/* Returns q in 0..31 nearest to (x + ml) / dl, given inv = 1 / dl. An infinite or NaN
 * quotient (dl of 0 or a subnormal) clamps instead of overflowing. The comparisons are
 * written so that they compile to max and min instructions. */
static inline int quantise_one(float x, float ml, float inv)
{
	float v = (x + ml) * inv;
	v = v > 0.0f ? v : 0.0f;  /* also maps NaN to 0 */
	v = v < (float)QMAX ? v : (float)QMAX;
	return (int)(v + 0.5f);
}

/* Returns the squared error of one weight quantised to q, reconstructed exactly as the
 * decoder does. */
static inline float weight_error(float x, int q, float dl, float ml)
{
	float diff = x - (dl * (float)q - ml);
	return diff * diff;
}

#ifdef __SSE2__
/* Quantises 8 weights like quantise_one and adds their errors to the eight partial sums
 * (lanes 0-3 in sum_low, 4-7 in sum_high). Every lane does the scalar code's operations
 * in the same order, so the results are identical to the portable loop. */
static inline void quantise8_sse2(const float *x, __m128 ml, __m128 inv, __m128 dl, uint8_t *q,
				  __m128 *sum_low, __m128 *sum_high)
{
	const __m128 zero = _mm_setzero_ps(), top = _mm_set1_ps((float)QMAX), half = _mm_set1_ps(0.5f);
	__m128 x0 = _mm_loadu_ps(x), x1 = _mm_loadu_ps(x + 4);
	__m128 v0 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_add_ps(x0, ml), inv), zero), top);
	__m128 v1 = _mm_min_ps(_mm_max_ps(_mm_mul_ps(_mm_add_ps(x1, ml), inv), zero), top);
	__m128i q0 = _mm_cvttps_epi32(_mm_add_ps(v0, half));
	__m128i q1 = _mm_cvttps_epi32(_mm_add_ps(v1, half));
	__m128 d0 = _mm_sub_ps(x0, _mm_sub_ps(_mm_mul_ps(dl, _mm_cvtepi32_ps(q0)), ml));
	__m128 d1 = _mm_sub_ps(x1, _mm_sub_ps(_mm_mul_ps(dl, _mm_cvtepi32_ps(q1)), ml));
	*sum_low = _mm_add_ps(*sum_low, _mm_mul_ps(d0, d0));
	*sum_high = _mm_add_ps(*sum_high, _mm_mul_ps(d1, d1));
	__m128i packed = _mm_packs_epi32(q0, q1);
	_mm_storel_epi64((__m128i *)(void *)q, _mm_packus_epi16(packed, packed));
}
#endif

/* Quantises n (at most 32) weights for the reconstruction dl * q - ml and returns the
 * squared error. Writes q when `q` is not NULL. Eight partial sums in a fixed order make
 * the SSE2 and portable loops give the same result. */
static float quantise_error(const float *x, int n, float dl, float ml, uint8_t *q)
{
	uint8_t scratch[UC5_SUBBLOCK_WEIGHTS];
	uint8_t *out = q ? q : scratch;
	float inv = dl > 0.0f ? 1.0f / dl : 0.0f;
	float partial[8] = { 0 };
	int i = 0;
#ifdef __SSE2__
	__m128 sum_low = _mm_setzero_ps(), sum_high = _mm_setzero_ps();
	__m128 ml4 = _mm_set1_ps(ml), inv4 = _mm_set1_ps(inv), dl4 = _mm_set1_ps(dl);
	for (; i + 8 <= n; i += 8)
		quantise8_sse2(x + i, ml4, inv4, dl4, out + i, &sum_low, &sum_high);
	_mm_storeu_ps(partial, sum_low);
	_mm_storeu_ps(partial + 4, sum_high);
#else
	for (; i + 8 <= n; i += 8) {
		for (int k = 0; k < 8; k++) {
			int qi = quantise_one(x[i + k], ml, inv);
			partial[k] += weight_error(x[i + k], qi, dl, ml);
			out[i + k] = (uint8_t)qi;
		}
	}
#endif
	for (; i < n; i++) {
		int qi = quantise_one(x[i], ml, inv);
		partial[0] += weight_error(x[i], qi, dl, ml);
		out[i] = (uint8_t)qi;
	}
	return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
	       ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

/* Least-squares fit of (scale, offset) for fixed q, with offset >= 0. Returns the squared
 * error of the continuous fit. */
static double refit_scale_offset(const float *x, int n, const uint8_t *q, float *scale,
				 float *offset)
{
	double sq = 0, sqq = 0, sx = 0, sqx = 0, sxx = 0;
	for (int i = 0; i < n; i++) {
		sq += q[i];
		sqq += (double)q[i] * q[i];
		sx += x[i];
		sqx += (double)q[i] * x[i];
		sxx += (double)x[i] * x[i];
	}

	double s = 0.0, mn = fmin(sx / n, 0.0);  /* all q = 0: only the offset is free */
	double det = n * sqq - sq * sq;
	if (det > 0.0) {
		s = (n * sqx - sq * sx) / det;
		mn = (sx - s * sq) / n;
		if (mn > 0.0) {  /* dmin * m is subtracted, so the additive term cannot be positive */
			mn = 0.0;
			s = sqx / sqq;
		}
	} else if (sqq > 0.0) {
		s = sqx / sqq;
		mn = 0.0;
	}
	if (s < 0.0)
		s = 0.0;

	*scale = (float)s;
	*offset = (float)-mn;
	return sxx - 2 * s * sqx - 2 * mn * sx + s * s * sqq + 2 * s * mn * sq + n * mn * mn;
}

/* Fits one sub-block: tries grids of several step sizes anchored at min(x, 0), refits each
 * by least squares, and refines the best once more on its own grid. */
static void fit_subblock(subblock *sb)
{
	sb->scale = 0.0f;
	sb->offset = 0.0f;
	if (sb->n == 0)
		return;

	float low = 0.0f, high = -FLT_MAX;
	for (int i = 0; i < sb->n; i++) {
		low = fminf(low, sb->x[i]);
		high = fmaxf(high, sb->x[i]);
	}
	if (!(high > low)) {  /* every weight equals low <= 0: exact with scale 0 */
		sb->offset = -low;
		return;
	}

	uint8_t q[UC5_SUBBLOCK_WEIGHTS];
	double best = DBL_MAX;
	float range = high - low;
	for (int k = 0; k <= 24; k++) {
		float steps = 28.0f + 0.25f * (float)k;  /* grid steps across [low, high] */
		float scale, offset;
		quantise_error(sb->x, sb->n, range / steps, -low, q);
		double error = refit_scale_offset(sb->x, sb->n, q, &scale, &offset);
		if (error < best) {
			best = error;
			sb->scale = scale;
			sb->offset = offset;
		}
	}

	float scale, offset;
	quantise_error(sb->x, sb->n, sb->scale, sb->offset, q);
	double error = refit_scale_offset(sb->x, sb->n, q, &scale, &offset);
	if (error < best) {
		sb->scale = scale;
		sb->offset = offset;
	}
}

/* Rounds a non-negative factor to fp16, at most 65504. */
static uint16_t factor_to_f16(float value)
{
	return uc_f32_to_f16(fminf(value, F16_MAX));
}

/* Chooses sc and m of one sub-block among the two 6-bit neighbours of scale / d and
 * offset / dmin, by actual error. Returns that error. */
static double choose_subblock_factors(subblock *sb, float d, float dmin, uint8_t *sc, uint8_t *m)
{
	*sc = 0;
	*m = 0;
	if (sb->n == 0)
		return 0.0;

	int sc_low = d > 0.0f ? (int)fminf(sb->scale / d, (float)SCALE_MAX) : 0;
	int m_low = dmin > 0.0f ? (int)fminf(sb->offset / dmin, (float)SCALE_MAX) : 0;
	int sc_high = d > 0.0f && sc_low < SCALE_MAX ? sc_low + 1 : sc_low;
	int m_high = dmin > 0.0f && m_low < SCALE_MAX ? m_low + 1 : m_low;

	double best = DBL_MAX;
	for (int s = sc_low; s <= sc_high; s++) {
		for (int mm = m_low; mm <= m_high; mm++) {
			double error = quantise_error(sb->x, sb->n, d * (float)s, dmin * (float)mm, NULL);
			if (error < best) {
				best = error;
				*sc = (uint8_t)s;
				*m = (uint8_t)mm;
			}
		}
	}
	return best;
}

/* Returns the total error of a super-block for the fp16 factors d and dmin, choosing every
 * sub-block's sc and m into `sc` and `m`. */
static double evaluate_factors(subblock sb[UC5_SUBBLOCKS], uint16_t d16, uint16_t dmin16,
			       uint8_t sc[UC5_SUBBLOCKS], uint8_t m[UC5_SUBBLOCKS])
{
	float d = uc_f16_to_f32(d16), dmin = uc_f16_to_f32(dmin16);
	double total = 0.0;
	for (int j = 0; j < UC5_SUBBLOCKS; j++)
		total += choose_subblock_factors(&sb[j], d, dmin, &sc[j], &m[j]);
	return total;
}

/* The chosen factors of a super-block and their error. */
typedef struct {
	uint16_t d16, dmin16;
	uint8_t sc[UC5_SUBBLOCKS], m[UC5_SUBBLOCKS];
	double error;
} block_factors;

static void try_factors(subblock sb[UC5_SUBBLOCKS], uint16_t d16, uint16_t dmin16,
			block_factors *best)
{
	block_factors candidate = { .d16 = d16, .dmin16 = dmin16 };
	candidate.error = evaluate_factors(sb, d16, dmin16, candidate.sc, candidate.m);
	if (candidate.error < best->error)
		*best = candidate;
}

/* Refits d and dmin by least squares for the chosen sc, m and requantised q:
 * w ~ d * (sc * q) - dmin * m over every valid weight. Returns 0 and the new fp16 factors,
 * or -1 when the system is singular. */
static int refit_super_factors(subblock sb[UC5_SUBBLOCKS], const block_factors *f,
			       uint16_t *d16, uint16_t *dmin16)
{
	float d = uc_f16_to_f32(f->d16), dmin = uc_f16_to_f32(f->dmin16);
	double saa = 0, sab = 0, sbb = 0, sax = 0, sbx = 0;
	uint8_t q[UC5_SUBBLOCK_WEIGHTS];
	for (int j = 0; j < UC5_SUBBLOCKS; j++) {
		if (sb[j].n == 0)
			continue;
		quantise_error(sb[j].x, sb[j].n, d * (float)f->sc[j], dmin * (float)f->m[j], q);
		for (int i = 0; i < sb[j].n; i++) {
			double a = (double)f->sc[j] * q[i], b = f->m[j];
			saa += a * a;
			sab += a * b;
			sbb += b * b;
			sax += a * sb[j].x[i];
			sbx += b * sb[j].x[i];
		}
	}

	/* Normal equations of min sum (x - d a + dmin b)^2. */
	double det = saa * sbb - sab * sab;
	if (!(det > 0.0))
		return -1;
	double new_d = (sax * sbb - sbx * sab) / det;
	double new_dmin = (sax * sab - sbx * saa) / det;
	*d16 = factor_to_f16((float)fmax(new_d, 0.0));
	*dmin16 = factor_to_f16((float)fmax(new_dmin, 0.0));
	return 0;
}

/* Chooses d, dmin, sc and m for a super-block whose sub-blocks are already fitted. */
static void choose_block_factors(subblock sb[UC5_SUBBLOCKS], block_factors *best)
{
	float max_scale = 0.0f, max_offset = 0.0f;
	for (int j = 0; j < UC5_SUBBLOCKS; j++) {
		max_scale = fmaxf(max_scale, sb[j].scale);
		max_offset = fmaxf(max_offset, sb[j].offset);
	}

	best->error = DBL_MAX;
	uint16_t dmin16 = factor_to_f16(max_offset / SCALE_MAX);
	static const float d_divisors[] = { 63.0f, 62.5f, 62.0f, 61.5f, 61.0f, 60.0f, 59.0f, 57.0f };
	uint16_t previous = 0xFFFF;
	for (size_t k = 0; k < sizeof d_divisors / sizeof d_divisors[0]; k++) {
		uint16_t d16 = factor_to_f16(max_scale / d_divisors[k]);
		if (d16 != previous)
			try_factors(sb, d16, dmin16, best);
		previous = d16;
	}

	static const float dmin_divisors[] = { 62.0f, 61.0f, 59.0f };
	uint16_t d16 = best->d16;
	for (size_t k = 0; k < sizeof dmin_divisors / sizeof dmin_divisors[0]; k++)
		try_factors(sb, d16, factor_to_f16(max_offset / dmin_divisors[k]), best);

	for (int round = 0; round < 2; round++) {
		uint16_t refit_d16, refit_dmin16;
		if (refit_super_factors(sb, best, &refit_d16, &refit_dmin16) != 0)
			break;
		if (refit_d16 == best->d16 && refit_dmin16 == best->dmin16)
			break;
		try_factors(sb, refit_d16, refit_dmin16, best);
	}
}

/* Writes the 12 packed scale bytes from eight 6-bit sc and m values. */
static void pack_scales(const uint8_t sc[UC5_SUBBLOCKS], const uint8_t m[UC5_SUBBLOCKS],
			uint8_t scales[12])
{
	for (int j = 0; j < 4; j++) {
		scales[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
		scales[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
		scales[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
	}
}

/* Writes q (256 values, 0..31) as the fifth bits qh and the nibbles qs. */
static void pack_quants(const uint8_t q[UC5_BLOCK_WEIGHTS], uint8_t *block)
{
	uint8_t *qh = block + UC5_OFFSET_QH;
	uint8_t *qs = block + UC5_OFFSET_QS;
	memset(qh, 0, 32);
	for (int c = 0; c < 4; c++) {
		for (int l = 0; l < 32; l++) {
			uint8_t first = q[64 * c + l], second = q[64 * c + 32 + l];
			qs[32 * c + l] = (uint8_t)((first & 15) | ((second & 15) << 4));
			qh[l] |= (uint8_t)(((first >> 4) << (2 * c)) | ((second >> 4) << (2 * c + 1)));
		}
	}
}

/* Encodes one super-block of n (1..256) weights. */
static void encode_block(const float *x, int n, uint8_t *block)
{
	subblock sb[UC5_SUBBLOCKS];
	for (int j = 0; j < UC5_SUBBLOCKS; j++) {
		int valid = n - j * UC5_SUBBLOCK_WEIGHTS;
		if (valid < 0)
			valid = 0;
		if (valid > UC5_SUBBLOCK_WEIGHTS)
			valid = UC5_SUBBLOCK_WEIGHTS;
		sb[j].x = x + j * UC5_SUBBLOCK_WEIGHTS;
		sb[j].n = valid;
		fit_subblock(&sb[j]);
	}

	block_factors f;
	choose_block_factors(sb, &f);

	uint8_t q[UC5_BLOCK_WEIGHTS] = { 0 };
	float d = uc_f16_to_f32(f.d16), dmin = uc_f16_to_f32(f.dmin16);
	for (int j = 0; j < UC5_SUBBLOCKS; j++)
		quantise_error(sb[j].x, sb[j].n, d * (float)f.sc[j], dmin * (float)f.m[j],
			       q + j * UC5_SUBBLOCK_WEIGHTS);

	ucp_store_le16(block + UC5_OFFSET_D, f.d16);
	ucp_store_le16(block + UC5_OFFSET_DMIN, f.dmin16);
	pack_scales(f.sc, f.m, block + UC5_OFFSET_SCALES);
	pack_quants(q, block);
}

/* Checks that a block's weights are finite and small enough for fp16 factors. The largest
 * representable span is 65504 * 63 * 31 (d * sc * q) and the largest offset 65504 * 63. */
static uc_status check_block_input(const float *x, int n, uint64_t base, const char *tensor_name,
				   uc_error *err)
{
	float low = 0.0f, high = 0.0f;
	int extreme = 0;
	for (int i = 0; i < n; i++) {
		if (!isfinite(x[i]))
			return ucp_fail(err, UC_ERR_NONFINITE,
					"tensor %s: weight %" PRIu64 " is %s; uc5 stores only finite"
					" weights, so fix the checkpoint or store this tensor raw",
					tensor_name, base + (uint64_t)i, isnan(x[i]) ? "NaN" : "infinite");
		if (fabsf(x[i]) > fabsf(x[extreme]))
			extreme = i;
		low = fminf(low, x[i]);
		high = fmaxf(high, x[i]);
	}

	double span = (double)high - (double)low;
	if (span / (QMAX * SCALE_MAX) > F16_MAX || -(double)low / SCALE_MAX > F16_MAX)
		return ucp_fail(err, UC_ERR_RANGE,
				"tensor %s: weight %" PRIu64 " (%g) is too large for uc5, whose fp16 block"
				" scales reach about %.3g; store this tensor raw",
				tensor_name, base + (uint64_t)extreme, (double)x[extreme],
				(double)F16_MAX * SCALE_MAX * QMAX);
	return UC_OK;
}

uc_status uc5_encode(const float *src, uint64_t n, uint8_t *out, const char *tensor_name,
		     uc_error *err)
{
	if (!tensor_name)
		tensor_name = "(unnamed)";
	if (n > 0 && (!src || !out))
		return ucp_fail(err, UC_ERR_INVALID, "tensor %s: uc5 encode needs source and output buffers",
				tensor_name);

	for (uint64_t first = 0; first < n; first += UC5_BLOCK_WEIGHTS) {
		uint64_t left = n - first;
		int count = left < UC5_BLOCK_WEIGHTS ? (int)left : UC5_BLOCK_WEIGHTS;
		uc_status rc = check_block_input(src + first, count, first, tensor_name, err);
		if (rc != UC_OK)
			return rc;
		encode_block(src + first, count, out + first / UC5_BLOCK_WEIGHTS * UC5_BLOCK_BYTES);
	}
	return UC_OK;
}
