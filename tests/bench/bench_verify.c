/* Benchmark of pack verification: the reconstruction stage on one thread beside OpenSSL's
 * SHA-256 (EVP) over the same number of bytes in the same run, full verification on one
 * thread, and two threads beside one. The pack (16 Gaussian 2048x2048 tensors, bf16
 * target, 67M parameters) is generated once and kept under /tmp. One-thread figures are
 * thread CPU time, which other load on a shared machine disturbs less than wall time;
 * thread comparisons are wall time. Prints best-of-3 figures and ratios and fails only
 * when the pack cannot be made or does not verify. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "pack_internal.h"

#define TENSORS 16
#define SIDE 2048
#define RUNS 3
#define PACK_ROOT "/tmp/uc-bench-verify"
#define PACK_DIR PACK_ROOT "/pack-v1"
#define SOURCE_FILE PACK_ROOT "/source.safetensors"

static void die(const char *what, const uc_error *err)
{
	fprintf(stderr, "bench_verify: %s: %s\n", what, err ? err->message : "failed");
	exit(EXIT_FAILURE);
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
		x[i] = (float)(0.02 * sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
	}
}

static void write_source(void)
{
	static char names[TENSORS][32];
	uc_tensor_view views[TENSORS];
	for (int t = 0; t < TENSORS; t++) {
		snprintf(names[t], sizeof names[t], "layers.%d.weight", t);
		views[t] = (uc_tensor_view){.name = names[t], .dtype = UC_DTYPE_F32, .ndim = 2,
					    .shape = {SIDE, SIDE}, .n_elements = (uint64_t)SIDE * SIDE,
					    .nbytes = (uint64_t)SIDE * SIDE * 4};
	}

	uc_st_writer *writer = NULL;
	uc_error err;
	if (uc_st_writer_open(SOURCE_FILE, views, TENSORS, NULL, &writer, &err) != UC_OK)
		die("cannot create the source checkpoint", &err);
	float *values = malloc((size_t)SIDE * SIDE * sizeof *values);
	if (!values)
		die("out of memory for the source tensors", NULL);
	for (int t = 0; t < TENSORS; t++) {
		gaussian_fill(values, (size_t)SIDE * SIDE, 1000 + (uint64_t)t);
		if (uc_st_writer_write(writer, values, (size_t)SIDE * SIDE * sizeof *values, &err) != UC_OK)
			die("cannot write the source checkpoint", &err);
	}
	free(values);
	if (uc_st_writer_commit(writer, &err) != UC_OK)
		die("cannot publish the source checkpoint", &err);
}

/* Makes the pack unless a previous run left one that parses. */
static void ensure_pack(void)
{
	char *json = NULL;
	size_t len = 0;
	uc_manifest *manifest = NULL;
	uc_error err;
	if (ucp_read_file(PACK_DIR "/" UCP_MANIFEST_FILE, UCP_MANIFEST_MAX_BYTES, &json, &len, &err) == UC_OK &&
	    uc_manifest_parse(json, len, &manifest, &err) == UC_OK && uc_manifest_tensor_count(manifest) == TENSORS) {
		uc_manifest_free(manifest);
		ucp_free(json);
		return;
	}
	uc_manifest_free(manifest);
	ucp_free(json);

	printf("generating %s (once; later runs reuse it)\n", PACK_DIR);
	mkdir(PACK_ROOT, 0755);
	double started = ucp_now_seconds();
	write_source();

	uc_source *src = NULL;
	if (uc_source_open(SOURCE_FILE, &src, &err) != UC_OK)
		die("cannot open the source checkpoint", &err);
	uc_pack_options options;
	uc_pack_options_init(&options);
	options.family = "other";
	options.name = "gaussian-16x2048x2048";
	if (uc_pack_write(src, PACK_DIR, &options, &err) != UC_OK)
		die("cannot write the pack", &err);
	uc_source_close(src);
	unlink(SOURCE_FILE);
	printf("generated in %.1f s\n", ucp_now_seconds() - started);
}

/* Verifies the pack and returns the report; exits when the verdict is not OK. */
static uc_report *verify(unsigned threads, double *seconds)
{
	uc_verify_options options;
	uc_verify_options_init(&options);
	options.threads = threads;
	uc_report *report = NULL;
	uc_error err;
	double started = ucp_now_seconds();
	if (uc_verify_pack(PACK_DIR, &options, &report, &err) != UC_OK)
		die("verification could not run", &err);
	*seconds = ucp_now_seconds() - started;
	if (uc_report_verdict(report) != UC_VERDICT_OK) {
		char *text = uc_report_to_text(report);
		fprintf(stderr, "bench_verify: the pack does not verify:\n%s", text ? text : "");
		exit(EXIT_FAILURE);
	}
	return report;
}

/* Returns this thread's CPU time, which a busy shared machine disturbs less than wall time. */
static double thread_cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* SHA-256 of `total` bytes in 64 KiB updates, one digest per tensor, as verification
 * hashes reconstructed tensors. Returns thread CPU seconds. */
static double time_sha256(uint64_t total, uint64_t per_tensor)
{
	static uint8_t buffer[UC_RECONSTRUCT_CHUNK_BYTES];
	uint64_t state = 7;
	for (size_t i = 0; i < sizeof buffer; i++)
		buffer[i] = (uint8_t)next_random(&state);

	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len;
	double started = thread_cpu_seconds();
	for (uint64_t done = 0; done < total; done += per_tensor) {
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		for (uint64_t fed = 0; fed < per_tensor; fed += sizeof buffer)
			EVP_DigestUpdate(md, buffer, sizeof buffer);
		EVP_DigestFinal_ex(md, digest, &digest_len);
	}
	double seconds = thread_cpu_seconds() - started;
	EVP_MD_CTX_free(md);
	return seconds;
}

static uc_status hash_chunk(void *ctx, const void *data, size_t len, uc_error *err)
{
	(void)err;
	EVP_DigestUpdate(ctx, data, len);
	return UC_OK;
}

/* The reconstruction stage's work on this thread: every tensor rebuilt in 64 KiB chunks
 * and hashed. Returns thread CPU seconds. */
static double time_reconstruction(const uc_pack *pack)
{
	const uc_manifest *manifest = uc_pack_manifest(pack);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len;
	uc_error err;
	double started = thread_cpu_seconds();
	for (size_t i = 0; i < uc_manifest_tensor_count(manifest); i++) {
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		if (uc_pack_reconstruct(pack, i, hash_chunk, md, &err) != UC_OK)
			die("reconstruction failed", &err);
		EVP_DigestFinal_ex(md, digest, &digest_len);
		if (memcmp(digest, uc_manifest_tensor_at(manifest, i)->sha256, UC_SHA256_BYTES) != 0)
			die("a reconstructed tensor does not match the manifest", NULL);
	}
	double seconds = thread_cpu_seconds() - started;
	EVP_MD_CTX_free(md);
	return seconds;
}

/* uc5 decoding alone into one 64 KiB buffer, chunk by chunk as reconstruction does it.
 * Returns thread CPU seconds. */
static double time_decode(const uc_pack *pack)
{
	static uint8_t out[UC_RECONSTRUCT_CHUNK_BYTES];
	const uc_manifest *manifest = uc_pack_manifest(pack);
	uc_error err;
	double started = thread_cpu_seconds();
	for (size_t i = 0; i < uc_manifest_tensor_count(manifest); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(manifest, i);
		const uint8_t *blocks = ucp_pack_span(pack, i);
		uint64_t chunk = sizeof out / 2;
		for (uint64_t first = 0; first < t->n_elements; first += chunk) {
			if (uc5_decode(blocks, t->n_elements, first, chunk, t->dtype, out, &err) != UC_OK)
				die("decoding failed", &err);
		}
	}
	return thread_cpu_seconds() - started;
}

int main(void)
{
	ensure_pack();
	uint64_t reconstructed_bytes = (uint64_t)TENSORS * SIDE * SIDE * 2;
	double best_recon = INFINITY, best_sha = INFINITY, best_full1 = INFINITY, best_full2 = INFINITY;
	double best_stage = INFINITY, best_decode = INFINITY;
	uint64_t hashed = 0;
	unsigned isa = 0;

	uc_pack *pack = NULL;
	uc_error err;
	if (uc_pack_open(PACK_DIR, &pack, &err) != UC_OK)
		die("cannot open the pack", &err);

	for (int run = 0; run < RUNS; run++) {
		best_recon = fmin(best_recon, time_reconstruction(pack));
		best_decode = fmin(best_decode, time_decode(pack));
		best_sha = fmin(best_sha, time_sha256(reconstructed_bytes, reconstructed_bytes / TENSORS));

		double seconds;
		uc_report *report = verify(1, &seconds);
		best_full1 = fmin(best_full1, seconds);
		best_stage = fmin(best_stage, report->stage_seconds[UCP_STAGE_RECONSTRUCTION]);
		hashed = report->bytes_hashed;
		isa = report->isa;
		uc_report_free(report);

		report = verify(2, &seconds);
		best_full2 = fmin(best_full2, seconds);
		uc_report_free(report);
	}
	uc_pack_close(pack);

	double gb = 1e-9, load[1] = {0};
	getloadavg(load, 1);
	printf("pack: %d tensors of %dx%d, %llu parameters, bf16 target, %s\n", TENSORS, SIDE, SIDE,
	       (unsigned long long)TENSORS * SIDE * SIDE, PACK_DIR);
	printf("isa %s, best of %d runs, load average %.1f on %ld CPUs\n", uc_isa_name((uc_isa)isa), RUNS,
	       load[0], sysconf(_SC_NPROCESSORS_ONLN));
	printf("reconstruction (decode + SHA-256), 1 thread: %.3f s CPU, %.2f GB/s of reconstructed bytes\n",
	       best_recon, (double)reconstructed_bytes * gb / best_recon);
	printf("OpenSSL SHA-256 (EVP) alone, same %llu bytes: %.3f s CPU, %.2f GB/s\n",
	       (unsigned long long)reconstructed_bytes, best_sha, (double)reconstructed_bytes * gb / best_sha);
	printf("uc5 decoding alone, 1 thread: %.3f s CPU, %.2f G weights/s\n", best_decode,
	       (double)TENSORS * SIDE * SIDE * gb / best_decode);
	printf("ratio reconstruction / SHA-256 throughput: %.3f (target >= 0.90)\n", best_sha / best_recon);
	printf("full verify, 1 thread: %.3f s wall (reconstruction stage %.3f s), %.2f GB/s of %llu bytes hashed\n",
	       best_full1, best_stage, (double)hashed * gb / best_full1, (unsigned long long)hashed);
	printf("full verify, 2 threads: %.3f s wall, speedup over 1 thread %.2fx\n", best_full2,
	       best_full1 / best_full2);
	return EXIT_SUCCESS;
}
