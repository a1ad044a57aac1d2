/* Vector kernels shared by the forward passes, and the tensor lookup they start from. */
#include "config.h"

#include "model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "util.h"

/* Eight interleaved partial sums let the compiler use SIMD lanes without reordering a
 * reduction itself. The summation order is fixed, so results repeat exactly. */
#define MATVEC_LANES 8

/* On x86-64 the loader picks an AVX2 build when the CPU has it: the same eight lanes in one
 * register instead of two, the same operations in the same order (no FMA), so the same bits.
 * ThreadSanitizer builds go without, because the clone resolver then runs instrumented
 * before the sanitizer's runtime starts and crashes. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EVAL_THREAD_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define EVAL_THREAD_SANITIZER 1
#endif

#if defined(__x86_64__) && !defined(EVAL_THREAD_SANITIZER)
#define MATVEC_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MATVEC_CLONES
#endif

MATVEC_CLONES void eval_matvec(float *out, const float *w, const float *x, uint32_t rows, uint32_t cols)
{
	uint32_t body = cols - cols % MATVEC_LANES;
	for (uint32_t i = 0; i < rows; i++) {
		const float *row = w + (size_t)i * cols;
		float lanes[MATVEC_LANES] = {0};
		for (uint32_t j = 0; j < body; j += MATVEC_LANES)
			for (uint32_t k = 0; k < MATVEC_LANES; k++)
				lanes[k] += row[j + k] * x[j + k];
		float sum = 0.0f;
		for (uint32_t k = 0; k < MATVEC_LANES; k++)
			sum += lanes[k];
		for (uint32_t j = body; j < cols; j++)
			sum += row[j] * x[j];
		out[i] = sum;
	}
}

void eval_rmsnorm(float *out, const float *x, const float *weight, uint32_t n, float eps)
{
	float squares = 0.0f;
	for (uint32_t i = 0; i < n; i++)
		squares += x[i] * x[i];
	float scale = 1.0f / sqrtf(squares / (float)n + eps);
	for (uint32_t i = 0; i < n; i++)
		out[i] = weight[i] * (scale * x[i]);
}

void eval_layernorm(float *out, const float *x, const float *weight, const float *bias,
		    uint32_t n, float eps)
{
	float mean = 0.0f;
	for (uint32_t i = 0; i < n; i++)
		mean += x[i];
	mean /= (float)n;
	float variance = 0.0f;
	for (uint32_t i = 0; i < n; i++)
		variance += (x[i] - mean) * (x[i] - mean);
	variance /= (float)n;
	float scale = 1.0f / sqrtf(variance + eps);
	for (uint32_t i = 0; i < n; i++)
		out[i] = (x[i] - mean) * scale * weight[i] + bias[i];
}

double eval_negative_log_likelihood(const float *logits, uint32_t vocab, uint32_t target)
{
	float max = logits[0];
	for (uint32_t i = 1; i < vocab; i++)
		if (logits[i] > max)
			max = logits[i];
	double sum = 0.0;
	for (uint32_t i = 0; i < vocab; i++)
		sum += exp((double)logits[i] - (double)max);
	return log(sum) + (double)max - (double)logits[target];
}

static void format_shape(char *buf, size_t size, uint32_t ndim, const uint64_t *dims)
{
	size_t used = 0;
	buf[0] = '\0';
	used += (size_t)snprintf(buf, size, "[");
	for (uint32_t d = 0; d < ndim && used < size; d++)
		used += (size_t)snprintf(buf + used, size - used, "%s%" PRIu64, d ? ", " : "", dims[d]);
	if (used < size)
		snprintf(buf + used, size - used, "]");
}

uc_status eval_require_tensor(const eval_weights *weights, const char *name, uint32_t ndim,
			      const uint64_t *dims, const float **out, uc_error *err)
{
	*out = NULL;
	const eval_tensor *tensor = eval_weights_find(weights, name);
	if (!tensor)
		return eval_fail(err, UC_ERR_FORMAT, "tensor %s is missing", name);

	int same = tensor->ndim == ndim;
	for (uint32_t d = 0; same && d < ndim; d++)
		same = tensor->shape[d] == dims[d];
	if (!same) {
		char expected[128], actual[128];
		format_shape(expected, sizeof expected, ndim, dims);
		format_shape(actual, sizeof actual, tensor->ndim, tensor->shape);
		return eval_fail(err, UC_ERR_FORMAT, "tensor %s has shape %s, expected %s", name,
				actual, expected);
	}
	*out = tensor->data;
	return UC_OK;
}
