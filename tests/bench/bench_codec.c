/* Benchmarks of the uc5 codec: reconstruction speed per instruction-set path beside memcpy
 * of the same output bytes, and codec quality (SQNR) on the real models and a Gaussian
 * tensor beside a plain Q5_0 baseline and ggml's Q5_K figures. Never fails on timing. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uc.h"

#define DECODE_WEIGHTS (64u << 20)  /* 64M weights per reconstruction run */
#define DECODE_RUNS 3               /* best of this many runs is reported */
#define GAUSSIAN_SIDE 4096

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Returns this thread's CPU time, which a busy shared machine disturbs less than wall time. */
static double thread_cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *checked_malloc(size_t size)
{
	void *p = malloc(size);
	if (!p) {
		fprintf(stderr, "bench_codec: out of memory allocating %zu bytes\n", size);
		exit(EXIT_FAILURE);
	}
	return p;
}

/* splitmix64 and Box-Muller: a seeded standard normal sample. */
static uint64_t next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void gaussian_fill(float *x, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		double u1 = ((double)(next_random(&seed) >> 11) + 1.0) * 0x1p-53;
		double u2 = (double)(next_random(&seed) >> 11) * 0x1p-53;
		x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
	}
}

/* ---- reconstruction speed ---- */

static double best_memcpy_seconds(void *dst, const void *src, size_t bytes)
{
	double best = INFINITY;
	for (int run = 0; run < DECODE_RUNS; run++) {
		double start = now_seconds();
		memcpy(dst, src, bytes);
		double elapsed = now_seconds() - start;
		best = elapsed < best ? elapsed : best;
	}
	return best;
}

static double best_decode_seconds(const uint8_t *blocks, uint64_t n, uc_dtype dtype, void *out)
{
	double best = INFINITY;
	uc_error err;
	for (int run = 0; run < DECODE_RUNS; run++) {
		double start = now_seconds();
		if (uc5_decode(blocks, n, 0, n, dtype, out, &err) != UC_OK) {
			fprintf(stderr, "bench_codec: decode failed: %s\n", err.message);
			exit(EXIT_FAILURE);
		}
		double elapsed = now_seconds() - start;
		best = elapsed < best ? elapsed : best;
	}
	return best;
}

static void bench_reconstruction(void)
{
	/* Blocks of one encoded 1M-weight Gaussian tensor, repeated to 64M weights. */
	const uint64_t n = DECODE_WEIGHTS, sample = 1u << 20;
	uint64_t sample_bytes = uc5_encoded_size(sample);
	float *x = checked_malloc(sample * sizeof *x);
	uint8_t *blocks = checked_malloc(uc5_encoded_size(n));
	uc_error err;
	gaussian_fill(x, sample, 1);
	if (uc5_encode(x, sample, blocks, "gaussian", &err) != UC_OK) {
		fprintf(stderr, "bench_codec: encode failed: %s\n", err.message);
		exit(EXIT_FAILURE);
	}
	for (uint64_t copy = 1; copy < n / sample; copy++)
		memcpy(blocks + copy * sample_bytes, blocks, sample_bytes);
	free(x);

	size_t max_bytes = (size_t)n * 4;
	uint8_t *out = checked_malloc(max_bytes), *src = checked_malloc(max_bytes);
	memset(out, 1, max_bytes);
	memset(src, 2, max_bytes);

	printf("Reconstruction, one thread, %" PRIu64 "M weights, best of %d runs\n", n >> 20, DECODE_RUNS);
	printf("%-8s %-5s %10s %10s %12s %8s %10s\n", "path", "dtype", "Mweights/s", "GB/s", "memcpy GB/s",
	       "ratio", "SHA-256 GB/s");
	static const uc_dtype dtypes[] = { UC_DTYPE_BF16, UC_DTYPE_F32, UC_DTYPE_F16 };
	for (int isa = 0; isa < UC_ISA_COUNT; isa++) {
		if (uc_isa_force((uc_isa)isa, &err) != UC_OK) {
			printf("%-8s not available on this CPU or build\n", uc_isa_name((uc_isa)isa));
			continue;
		}
		for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
			size_t bytes = (size_t)n * uc_dtype_size(dtypes[t]);
			double decode = best_decode_seconds(blocks, n, dtypes[t], out);
			double copy = best_memcpy_seconds(out, src, bytes);
			double start = now_seconds();
			uint8_t digest[UC_SHA256_BYTES];
			uc_sha256_buffer(out, bytes, digest);
			double hash = now_seconds() - start;
			printf("%-8s %-5s %10.0f %10.2f %12.2f %8.2f %10.2f\n", uc_isa_name((uc_isa)isa),
			       uc_dtype_name(dtypes[t]), (double)n / decode / 1e6, (double)bytes / decode / 1e9,
			       (double)bytes / copy / 1e9, copy / decode, (double)bytes / hash / 1e9);
		}
	}
	printf("ratio = decode speed / memcpy speed of the same output bytes\n\n");
	free(out);
	free(src);
	free(blocks);
}

/* ---- quality ---- */

/* Squared signal and error sums, accumulated in double. */
typedef struct {
	double signal, noise;
} error_sums;

static void add_errors(error_sums *sums, const float *x, const float *y, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		double diff = (double)x[i] - y[i];
		sums->signal += (double)x[i] * x[i];
		sums->noise += diff * diff;
	}
}

static double sqnr_db(const error_sums *sums)
{
	return 10.0 * log10(sums->signal / sums->noise);
}

/* A plain Q5_0 round trip in the manner of ggml's reference quantiser: blocks of 32 with
 * one fp16 scale d = (the value of largest magnitude) / -16 and q = min(31, x / d + 16.5)
 * truncated, reconstructed as (q - 16) * d. A short final block uses only its own weights. */
static void q5_0_round_trip(const float *x, uint64_t n, float *y)
{
	for (uint64_t first = 0; first < n; first += 32) {
		uint64_t count = n - first < 32 ? n - first : 32;
		float extreme = 0.0f;
		for (uint64_t i = 0; i < count; i++)
			if (fabsf(x[first + i]) > fabsf(extreme))
				extreme = x[first + i];

		float d = extreme / -16.0f;
		float inverse = d != 0.0f ? 1.0f / d : 0.0f;
		float stored = uc_f16_to_f32(uc_f32_to_f16(d));
		for (uint64_t i = 0; i < count; i++) {
			int q = (int)(int8_t)(x[first + i] * inverse + 16.5f);
			q = q < 31 ? q : 31;
			y[first + i] = (float)(q - 16) * stored;
		}
	}
}

/* Totals of one model or tensor set. */
typedef struct {
	error_sums uc5, q5_0;
	uint64_t weights;
	double encode_seconds;
} quality_totals;

/* Encodes one tensor with uc5 and Q5_0 and adds its errors to `totals`. Prints the tensor's
 * SQNR line when `print` is set. */
static void measure_tensor(const char *name, const float *x, uint64_t n, quality_totals *totals,
			   int print)
{
	float *y = checked_malloc(n * sizeof *y);
	uint8_t *blocks = checked_malloc(uc5_encoded_size(n) + 1);
	uc_error err;

	double start = thread_cpu_seconds();
	if (uc5_encode(x, n, blocks, name, &err) != UC_OK) {
		fprintf(stderr, "bench_codec: %s\n", err.message);
		exit(EXIT_FAILURE);
	}
	totals->encode_seconds += thread_cpu_seconds() - start;
	totals->weights += n;
	if (uc5_decode(blocks, n, 0, n, UC_DTYPE_F32, y, &err) != UC_OK) {
		fprintf(stderr, "bench_codec: %s\n", err.message);
		exit(EXIT_FAILURE);
	}
	error_sums uc5 = { 0, 0 }, q5_0 = { 0, 0 };
	add_errors(&uc5, x, y, n);
	q5_0_round_trip(x, n, y);
	add_errors(&q5_0, x, y, n);

	totals->uc5.signal += uc5.signal;
	totals->uc5.noise += uc5.noise;
	totals->q5_0.signal += q5_0.signal;
	totals->q5_0.noise += q5_0.noise;
	if (print)
		printf("  %-40s %9" PRIu64 " %8.3f %8.3f\n", name, n, sqnr_db(&uc5), sqnr_db(&q5_0));
	free(y);
	free(blocks);
}

static void print_totals(const char *label, const quality_totals *totals, double ggml_q5_0,
			 double ggml_q5_k)
{
	printf("%-30s %10" PRIu64 " %8.3f %8.3f %13.3f %13.3f %10.2f\n", label, totals->weights,
	       sqnr_db(&totals->uc5), sqnr_db(&totals->q5_0), ggml_q5_0, ggml_q5_k,
	       (double)totals->weights / totals->encode_seconds / 1e6);
}

/* Measures every 2-D tensor of one model. Returns 0, or -1 when the file cannot be opened. */
static int measure_model(const char *data_dir, const char *file, quality_totals *totals)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", data_dir, file);
	uc_source *src;
	uc_error err;
	if (uc_source_open(path, &src, &err) != UC_OK) {
		printf("%s: skipped (%s)\n", file, err.message);
		return -1;
	}

	printf("%s: per-tensor SQNR in dB\n  %-40s %9s %8s %8s\n", file, "tensor", "weights", "uc5", "Q5_0");
	for (size_t i = 0; i < uc_source_tensor_count(src); i++) {
		const uc_tensor_view *tensor = uc_source_tensor(src, i);
		if (tensor->ndim != 2)
			continue;
		float *x = checked_malloc(tensor->n_elements * sizeof *x + 1);
		uc_tensor_to_f32(tensor, 0, tensor->n_elements, x);
		measure_tensor(tensor->name, x, tensor->n_elements, totals, 1);
		free(x);
	}
	uc_source_close(src);
	return 0;
}

static void bench_quality(void)
{
	const char *data_dir = getenv("UC_DATA_DIR");
	if (!data_dir || !*data_dir)
		data_dir = "../shared/data";

	/* ggml v0.21.0's Q5_0 and Q5_K without an importance matrix, parameter-weighted SQNR in
	 * dB, measured with its own quantisers and decoders on the same tensors. */
	static const struct {
		const char *file;
		double q5_0, q5_k;
	} models[] = {
		{ "stories260K.safetensors", 27.318, 28.744 },
		{ "tiny-rwkv-5v2-730K.safetensors", 28.396, 29.721 },
		{ "tiny-rwkv-5v1-730K.safetensors", 28.499, 29.785 },
	};
	size_t count = sizeof models / sizeof models[0];
	quality_totals totals[4];
	int present[4] = { 0 };
	memset(totals, 0, sizeof totals);
	for (size_t m = 0; m < count; m++)
		present[m] = measure_model(data_dir, models[m].file, &totals[m]) == 0;

	uint64_t n = (uint64_t)GAUSSIAN_SIDE * GAUSSIAN_SIDE;
	float *x = checked_malloc(n * sizeof *x);
	gaussian_fill(x, n, 4096);
	measure_tensor("gaussian 4096x4096", x, n, &totals[count], 0);
	free(x);

	printf("\nParameter-weighted SQNR in dB over every 2-D tensor; encode speed on one thread in\n"
	       "millions of weights per second of CPU time\n");
	printf("%-30s %10s %8s %8s %13s %13s %10s\n", "tensors", "weights", "uc5", "Q5_0", "ggml Q5_0",
	       "ggml Q5_K", "enc Mw/s");
	for (size_t m = 0; m < count; m++)
		if (present[m])
			print_totals(models[m].file, &totals[m], models[m].q5_0, models[m].q5_k);
	print_totals("gaussian 4096x4096", &totals[count], 27.392, 28.845);
	printf("Q5_0 = this benchmark's own Q5_0 baseline; ggml columns are ggml v0.21.0 figures\n");
}

int main(void)
{
	bench_reconstruction();
	bench_quality();
	return EXIT_SUCCESS;
}
