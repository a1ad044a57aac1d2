/* Pack writing and reading against the real stories260K checkpoint and small synthetic
 * safetensors files: layout, determinism across thread counts, shard splitting, encoding
 * choice and fallbacks, failures that leave nothing behind, and chunked reconstruction. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "testutil.h"
#include "uc.h"

static char *scratch;

static void scratch_setup(void)
{
	scratch = tu_make_temp_dir();
}

static void scratch_teardown(void)
{
	tu_remove_tree(scratch);
	free(scratch);
}

static const char *scratch_path(const char *name)
{
	static char path[4][512];
	static int next;
	char *slot = path[next++ % 4];
	snprintf(slot, sizeof path[0], "%s/%s", scratch, name);
	return slot;
}

static uc_source *open_stories(void)
{
	uc_source *src = NULL;
	uc_error err;
	ck_assert_msg(uc_source_open(tu_data_path("stories260K.safetensors"), &src, &err) == UC_OK, "%s",
		      err.message);
	return src;
}

static uc_pack_options dense_options(unsigned threads)
{
	uc_pack_options options;
	uc_pack_options_init(&options);
	options.family = "dense";
	options.source_model = "stories260K.safetensors";
	options.license = "MIT";
	options.threads = threads;
	return options;
}

static void write_pack(const uc_source *src, const char *dir, const uc_pack_options *options)
{
	uc_error err;
	uc_status status = uc_pack_write(src, dir, options, &err);
	ck_assert_msg(status == UC_OK, "uc_pack_write %s: %s (%s)", dir, uc_status_name(status), err.message);
}

static uc_manifest *read_manifest(const char *dir, char **json_out, size_t *len_out)
{
	char path[600];
	size_t len;
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	char *json = (char *)tu_read_file(path, &len);
	uc_manifest *m = NULL;
	uc_error err;
	ck_assert_msg(uc_manifest_parse(json, len, &m, &err) == UC_OK, "%s: %s", path, err.message);
	if (json_out) {
		*json_out = json;
		*len_out = len;
	} else {
		free(json);
	}
	return m;
}

static void assert_verifies(const char *dir, unsigned threads)
{
	uc_verify_options options;
	uc_verify_options_init(&options);
	options.threads = threads;
	uc_report *report = NULL;
	uc_error err;
	ck_assert_msg(uc_verify_pack(dir, &options, &report, &err) == UC_OK, "%s", err.message);
	char *text = uc_report_to_text(report);
	ck_assert_msg(uc_report_verdict(report) == UC_VERDICT_OK, "%s", text);
	uc_free(text);
	uc_report_free(report);
}

/* Writes a safetensors file of float32 tensors. */
static void write_f32_safetensors(const char *path, const uc_tensor_view *views, size_t count)
{
	uc_st_writer *writer = NULL;
	uc_error err;
	ck_assert_msg(uc_st_writer_open(path, views, count, NULL, &writer, &err) == UC_OK, "%s", err.message);
	for (size_t i = 0; i < count; i++)
		ck_assert_int_eq(uc_st_writer_write(writer, views[i].data, views[i].nbytes, &err), UC_OK);
	ck_assert_msg(uc_st_writer_commit(writer, &err) == UC_OK, "%s", err.message);
}

static uc_tensor_view f32_view(const char *name, const float *data, uint32_t ndim, uint64_t d0, uint64_t d1)
{
	uc_tensor_view view = {.name = name, .dtype = UC_DTYPE_F32, .ndim = ndim, .data = (const uint8_t *)data};
	view.shape[0] = d0;
	view.shape[1] = d1;
	view.n_elements = 1;
	if (ndim >= 1)
		view.n_elements *= d0;
	if (ndim == 2)
		view.n_elements *= d1;
	view.nbytes = view.n_elements * 4;
	return view;
}

/* Deterministic pseudo-Gaussian values (sum of uniforms) from a fixed seed. */
static void fill_gaussian(float *out, size_t n, uint32_t seed)
{
	uint32_t state = seed;
	for (size_t i = 0; i < n; i++) {
		float sum = 0;
		for (int k = 0; k < 4; k++) {
			state = state * 1664525u + 1013904223u;
			sum += (float)(state >> 8) / 16777216.0f;
		}
		out[i] = (sum - 2.0f) * 0.05f;
	}
}

typedef struct {
	uc_sha256 *sha;
	uint8_t *copy;
	size_t copied;
	size_t capacity;
	size_t max_chunk;
	int calls;
} collector;

static uc_status collect(void *ctx, const void *data, size_t len, uc_error *err)
{
	(void)err;
	collector *c = ctx;
	uc_sha256_update(c->sha, data, len);
	if (c->copy && c->copied + len <= c->capacity)
		memcpy(c->copy + c->copied, data, len);
	c->copied += len;
	if (len > c->max_chunk)
		c->max_chunk = len;
	c->calls++;
	return UC_OK;
}

static int entries_in(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int count = 0;
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL)
		count += entry->d_name[0] != '.';
	closedir(d);
	return count;
}

START_TEST(stories_manifest_layout)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(2);
	const char *dir = scratch_path("stories");
	write_pack(src, dir, &options);

	uc_manifest *m = read_manifest(dir, NULL, NULL);
	ck_assert_uint_eq(uc_manifest_tensor_count(m), uc_source_tensor_count(src));
	ck_assert_uint_eq(uc_manifest_shard_count(m), 1);
	ck_assert_str_eq(uc_manifest_model_field(m, "name"), "stories");
	ck_assert_str_eq(uc_manifest_model_field(m, "family"), "dense");
	ck_assert_str_eq(uc_manifest_model_field(m, "license"), "MIT");
	ck_assert_str_eq(uc_manifest_model_field(m, "created_by"), "uc 0.1.0");
	ck_assert_ptr_nonnull(strstr(uc_manifest_model_field(m, "config"), "\"hidden_dim\": 172"));

	uint64_t parameters = 0;
	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		const uc_tensor_view *view = uc_source_tensor(src, i);
		ck_assert_str_eq(t->name, view->name);
		ck_assert_int_eq(t->encoding, view->ndim == 2 ? UC_ENCODING_UC5 : UC_ENCODING_RAW);
		ck_assert_int_eq(t->dtype, UC_DTYPE_BF16);
		ck_assert_uint_eq(t->offset % 64, 0);
		ck_assert_msg(t->sqnr_db > (t->encoding == UC_ENCODING_UC5 ? 20.0 : 40.0), "%s: %g dB",
			      t->name, t->sqnr_db);
		parameters += t->n_elements;
	}
	ck_assert_uint_eq(uc_manifest_parameters(m), parameters);

	double bpw = (double)uc_manifest_shard_bytes(m) * 8.0 / (double)parameters;
	ck_assert_double_eq_tol(uc_manifest_bits_per_weight(m), bpw, 1e-4);
	ck_assert(uc_manifest_bits_per_weight(m) > 5.5);
	ck_assert(uc_manifest_sqnr_db(m) > 20.0);

	/* The shard is named by its digest. */
	const uc_manifest_shard *shard = uc_manifest_shard_at(m, 0);
	char path[700];
	uint8_t digest[32];
	uint64_t size;
	uc_error err;
	snprintf(path, sizeof path, "%s/%s", dir, shard->file);
	ck_assert_int_eq(uc_sha256_file(path, digest, &size, &err), UC_OK);
	ck_assert_mem_eq(digest, shard->sha256, 32);
	ck_assert_uint_eq(size, shard->size);
	ck_assert_int_eq(entries_in(dir), 2);

	assert_verifies(dir, 2);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

START_TEST(same_bytes_any_threads)
{
	uc_source *src = open_stories();
	char *reference = NULL;
	size_t reference_len = 0;
	for (unsigned threads = 1; threads <= 3; threads++) {
		char name[32];
		snprintf(name, sizeof name, "threads-%u", threads);
		const char *dir = scratch_path(name);
		uc_pack_options options = dense_options(threads);
		options.name = "stories260K";
		write_pack(src, dir, &options);

		char *json;
		size_t len;
		uc_manifest_free(read_manifest(dir, &json, &len));
		if (!reference) {
			reference = json;
			reference_len = len;
			continue;
		}
		ck_assert_uint_eq(len, reference_len);
		ck_assert_msg(memcmp(json, reference, len) == 0, "manifest with %u threads differs", threads);
		free(json);
	}
	free(reference);
	uc_source_close(src);
}
END_TEST

START_TEST(two_runs_identical)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(2);
	options.name = "stories260K";
	write_pack(src, scratch_path("first"), &options);
	write_pack(src, scratch_path("second"), &options);

	char *a, *b;
	size_t a_len, b_len;
	uc_manifest *m = read_manifest(scratch_path("first"), &a, &a_len);
	uc_manifest_free(read_manifest(scratch_path("second"), &b, &b_len));
	ck_assert_uint_eq(a_len, b_len);
	ck_assert_mem_eq(a, b, a_len);

	/* Same manifest means same shard names; check the shard bytes themselves too. */
	char path_a[700], path_b[700];
	const char *file = uc_manifest_shard_at(m, 0)->file;
	snprintf(path_a, sizeof path_a, "%s/%s", scratch_path("first"), file);
	snprintf(path_b, sizeof path_b, "%s/%s", scratch_path("second"), file);
	size_t len_a, len_b;
	uint8_t *bytes_a = tu_read_file(path_a, &len_a);
	uint8_t *bytes_b = tu_read_file(path_b, &len_b);
	ck_assert_uint_eq(len_a, len_b);
	ck_assert_mem_eq(bytes_a, bytes_b, len_a);

	free(bytes_a);
	free(bytes_b);
	free(a);
	free(b);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* With a 16 KiB limit the 22 KiB embedding gets a shard of its own and the other tensors
 * are packed into shards that never pass the limit. */
START_TEST(shard_limit_splits)
{
	const uint64_t limit = 16 << 10;
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(2);
	options.shard_size_limit = limit;
	const char *dir = scratch_path("split");
	write_pack(src, dir, &options);

	uc_manifest *m = read_manifest(dir, NULL, NULL);
	size_t shards = uc_manifest_shard_count(m);
	ck_assert_uint_gt(shards, 5);
	ck_assert_int_eq(entries_in(dir), (int)shards + 1);

	const uc_manifest_tensor *embedding = uc_manifest_tensor_at(m, 0);
	ck_assert_uint_gt(embedding->length, limit);
	ck_assert_uint_eq(embedding->shard, 0);
	ck_assert_uint_eq(uc_manifest_shard_at(m, 0)->size, embedding->length);

	uint32_t previous_shard = 0;
	for (size_t i = 1; i < uc_manifest_tensor_count(m); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		ck_assert_uint_ge(t->shard, previous_shard);
		ck_assert_uint_le(t->offset + t->length, limit);
		previous_shard = t->shard;
	}
	for (size_t s = 1; s < shards; s++)
		ck_assert_uint_le(uc_manifest_shard_at(m, s)->size, limit);

	/* The same tensors with the default limit reconstruct to the same digests. */
	uc_pack_options one_shard = dense_options(2);
	write_pack(src, scratch_path("whole"), &one_shard);
	uc_manifest *whole = read_manifest(scratch_path("whole"), NULL, NULL);
	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++)
		ck_assert_mem_eq(uc_manifest_tensor_at(m, i)->sha256, uc_manifest_tensor_at(whole, i)->sha256, 32);

	assert_verifies(dir, 3);
	uc_manifest_free(whole);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* Two tensors with the same bytes, each larger than the shard limit, give two identical
 * shards, which share one file named by their common digest. */
START_TEST(identical_shards_share_file)
{
	static float matrix[32 * 32];
	fill_gaussian(matrix, 1024, 9);
	uc_tensor_view views[] = {f32_view("first", matrix, 2, 32, 32), f32_view("second", matrix, 2, 32, 32)};
	write_f32_safetensors(scratch_path("twins.safetensors"), views, 2);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("twins.safetensors"), &src, &err), UC_OK);
	uc_pack_options options = dense_options(2);
	options.shard_size_limit = 256;
	write_pack(src, scratch_path("out"), &options);

	uc_manifest *m = read_manifest(scratch_path("out"), NULL, NULL);
	ck_assert_uint_eq(uc_manifest_shard_count(m), 2);
	ck_assert_str_eq(uc_manifest_shard_at(m, 0)->file, uc_manifest_shard_at(m, 1)->file);
	ck_assert_uint_eq(uc_manifest_tensor_at(m, 1)->shard, 1);
	ck_assert_int_eq(entries_in(scratch_path("out")), 2);
	assert_verifies(scratch_path("out"), 2);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* A published pack is readable by all, like the safetensors files uc unpack writes, even
 * though mkdtemp creates its temporary directory 0700. */
START_TEST(pack_directory_readable_by_all)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(1);
	const char *dir = scratch_path("readable");
	write_pack(src, dir, &options);

	struct stat st;
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0755);
	uc_source_close(src);
}
END_TEST

START_TEST(existing_output_rejected)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(1);
	const char *dir = scratch_path("exists");
	ck_assert_int_eq(mkdir(dir, 0755), 0);

	uc_error err;
	ck_assert_int_eq(uc_pack_write(src, dir, &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, dir));
	ck_assert_ptr_nonnull(strstr(err.message, "already exists"));
	ck_assert_int_eq(entries_in(dir), 0);
	ck_assert_int_eq(entries_in(scratch), 1);
	uc_source_close(src);
}
END_TEST

START_TEST(invalid_options_rejected)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(1);
	uc_error err;

	options.family = "cnn";
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"cnn\""));

	options.family = NULL;
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);

	options = dense_options(1);
	options.name = "bad\nname";
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "model name contains control character 0x0a"));

	options = dense_options(1);
	options.license = "MIT\xff";
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "license is not valid UTF-8 at byte 3"));

	options.license = "\xed\xa0\x80";  /* an encoded UTF-16 surrogate */
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "license is not valid UTF-8 at byte 0"));

	options.license = "Apache-2.0 \xc2\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	options.family = "cnn";  /* valid UTF-8 passes; the family check fails instead */
	ck_assert_int_eq(uc_pack_write(src, scratch_path("a"), &options, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "model family"));
	ck_assert_int_eq(entries_in(scratch), 0);
	uc_source_close(src);
}
END_TEST

/* A NaN fails the pack, naming the tensor and index, and leaves no directory behind. */
START_TEST(nonfinite_weight_rejected)
{
	static float bias[40];
	static float matrix[300 * 2];
	fill_gaussian(matrix, 600, 7);
	fill_gaussian(bias, 40, 8);
	bias[33] = NAN;
	matrix[517] = INFINITY;
	uc_tensor_view views[] = {f32_view("matrix", matrix, 2, 300, 2), f32_view("bias", bias, 1, 40, 0)};
	write_f32_safetensors(scratch_path("nan.safetensors"), views, 2);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("nan.safetensors"), &src, &err), UC_OK);
	uc_pack_options options = dense_options(2);
	ck_assert_int_eq(uc_pack_write(src, scratch_path("out"), &options, &err), UC_ERR_NONFINITE);
	ck_assert_msg(strstr(err.message, "tensor matrix: weight 517 is infinite") != NULL, "%s", err.message);

	uc_source_close(src);
	matrix[517] = 0;
	write_f32_safetensors(scratch_path("nan.safetensors"), views, 2);
	ck_assert_int_eq(uc_source_open(scratch_path("nan.safetensors"), &src, &err), UC_OK);
	ck_assert_int_eq(uc_pack_write(src, scratch_path("out"), &options, &err), UC_ERR_NONFINITE);
	ck_assert_msg(strstr(err.message, "tensor bias: weight 33 is NaN") != NULL, "%s", err.message);
	ck_assert_int_eq(entries_in(scratch), 1);
	uc_source_close(src);
}
END_TEST

/* A 2-D tensor too large for the fp16 block scales is stored raw; the rest stays uc5. */
START_TEST(range_fallback_to_raw)
{
	static float huge[64 * 8], normal[64 * 8];
	fill_gaussian(huge, 512, 1);
	fill_gaussian(normal, 512, 2);
	huge[100] = 1e30f;
	uc_tensor_view views[] = {f32_view("huge", huge, 2, 64, 8), f32_view("normal", normal, 2, 64, 8)};
	write_f32_safetensors(scratch_path("huge.safetensors"), views, 2);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("huge.safetensors"), &src, &err), UC_OK);
	uc_pack_options options = dense_options(2);
	options.dtype = UC_DTYPE_F32;
	write_pack(src, scratch_path("out"), &options);

	uc_manifest *m = read_manifest(scratch_path("out"), NULL, NULL);
	ck_assert_int_eq(uc_manifest_tensor_at(m, 0)->encoding, UC_ENCODING_RAW);
	ck_assert(isnan(uc_manifest_tensor_at(m, 0)->sqnr_db));
	ck_assert_double_eq(uc_manifest_tensor_at(m, 0)->max_abs_error, 0.0);
	ck_assert_int_eq(uc_manifest_tensor_at(m, 1)->encoding, UC_ENCODING_UC5);
	ck_assert_uint_eq(uc_manifest_tensor_at(m, 1)->offset, 64 * 8 * 4);
	assert_verifies(scratch_path("out"), 1);

	/* The raw tensor contains the source values, the outlier included. */
	uc_pack *pack = NULL;
	ck_assert_int_eq(uc_pack_open(scratch_path("out"), &pack, &err), UC_OK);
	collector c = {.sha = uc_sha256_new(), .copy = malloc(sizeof huge), .capacity = sizeof huge};
	ck_assert_int_eq(uc_pack_reconstruct(pack, 0, collect, &c, &err), UC_OK);
	ck_assert_uint_eq(c.copied, sizeof huge);
	ck_assert_mem_eq(c.copy, huge, sizeof huge);
	uc_sha256_free(c.sha);
	free(c.copy);
	uc_pack_close(pack);
	ck_assert_int_eq(entries_in(scratch), 2);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* A weight beyond the f16 range would reconstruct as infinity, so the pack fails. */
START_TEST(f16_overflow_rejected)
{
	static float norm[16];
	fill_gaussian(norm, 16, 3);
	norm[5] = 1e6f;
	uc_tensor_view views[] = {f32_view("norm", norm, 1, 16, 0)};
	write_f32_safetensors(scratch_path("big.safetensors"), views, 1);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("big.safetensors"), &src, &err), UC_OK);
	uc_pack_options options = dense_options(1);
	options.dtype = UC_DTYPE_F16;
	ck_assert_int_eq(uc_pack_write(src, scratch_path("out"), &options, &err), UC_ERR_RANGE);
	ck_assert_msg(strstr(err.message, "tensor norm: weight 5 (1e+06) does not fit the target dtype f16") != NULL,
		      "%s", err.message);
	ck_assert_int_eq(entries_in(scratch), 1);
	uc_source_close(src);
}
END_TEST

/* A tensor of several encoding chunks, with a partial final block, gives the same bytes for
 * 1 and 3 threads; 0-D and empty tensors are stored too. */
START_TEST(multi_chunk_tensor_deterministic)
{
	enum { ROWS = 513, COLS = 301 };
	float *big = malloc(sizeof(float) * ROWS * COLS);
	static float scalar[1] = {0.5f};
	static float empty[1];
	fill_gaussian(big, (size_t)ROWS * COLS, 11);
	uc_tensor_view views[] = {f32_view("big", big, 2, ROWS, COLS), f32_view("scalar", scalar, 0, 0, 0),
				  f32_view("empty", empty, 2, 0, 4)};
	write_f32_safetensors(scratch_path("big.safetensors"), views, 3);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("big.safetensors"), &src, &err), UC_OK);
	uc_pack_options one = dense_options(1), three = dense_options(3);
	one.name = three.name = "big";
	write_pack(src, scratch_path("one"), &one);
	write_pack(src, scratch_path("three"), &three);

	char *a, *b;
	size_t a_len, b_len;
	uc_manifest *m = read_manifest(scratch_path("one"), &a, &a_len);
	uc_manifest_free(read_manifest(scratch_path("three"), &b, &b_len));
	ck_assert_uint_eq(a_len, b_len);
	ck_assert_mem_eq(a, b, a_len);

	const uc_manifest_tensor *t = uc_manifest_tensor_at(m, 0);
	ck_assert_uint_eq(t->length, uc5_encoded_size((uint64_t)ROWS * COLS));
	ck_assert_msg(t->sqnr_db > 25.0, "%g dB", t->sqnr_db);
	ck_assert_uint_eq(uc_manifest_tensor_at(m, 1)->ndim, 0);
	ck_assert_uint_eq(uc_manifest_tensor_at(m, 2)->length, 0);
	assert_verifies(scratch_path("three"), 2);

	free(a);
	free(b);
	free(big);
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* uc_pack_reconstruct hands every tensor over in chunks of at most 64 KiB, and the digest
 * of the chunks is the manifest's. An f32 raw tensor comes back as the source bytes. */
START_TEST(reconstruct_in_chunks)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(2);
	options.dtype = UC_DTYPE_F32;
	write_pack(src, scratch_path("f32"), &options);

	uc_pack *pack = NULL;
	uc_error err;
	ck_assert_msg(uc_pack_open(scratch_path("f32"), &pack, &err) == UC_OK, "%s", err.message);
	const uc_manifest *m = uc_pack_manifest(pack);

	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		const uc_tensor_view *view = uc_source_tensor(src, i);
		collector c = {.sha = uc_sha256_new(), .copy = malloc(view->nbytes), .capacity = view->nbytes};
		ck_assert_int_eq(uc_pack_reconstruct(pack, i, collect, &c, &err), UC_OK);

		uint8_t digest[32];
		uc_sha256_final(c.sha, digest);
		ck_assert_mem_eq(digest, t->sha256, 32);
		ck_assert_uint_eq(c.copied, t->n_elements * 4);
		ck_assert_uint_le(c.max_chunk, UC_RECONSTRUCT_CHUNK_BYTES);
		if (t->encoding == UC_ENCODING_RAW)
			ck_assert_mem_eq(c.copy, view->data, view->nbytes);
		uc_sha256_free(c.sha);
		free(c.copy);
	}

	ck_assert_int_eq(uc_pack_reconstruct(pack, 999, collect, NULL, &err), UC_ERR_INVALID);
	uc_pack_close(pack);
	uc_source_close(src);
}
END_TEST

START_TEST(open_reports_missing_shard)
{
	uc_source *src = open_stories();
	uc_pack_options options = dense_options(1);
	const char *dir = scratch_path("pack");
	write_pack(src, dir, &options);

	uc_manifest *m = read_manifest(dir, NULL, NULL);
	char path[700];
	snprintf(path, sizeof path, "%s/%s", dir, uc_manifest_shard_at(m, 0)->file);
	ck_assert_int_eq(remove(path), 0);

	uc_pack *pack = (uc_pack *)1;
	uc_error err;
	ck_assert_int_eq(uc_pack_open(dir, &pack, &err), UC_ERR_STRUCTURE);
	ck_assert_ptr_null(pack);
	ck_assert_ptr_nonnull(strstr(err.message, uc_manifest_shard_at(m, 0)->file));
	ck_assert_ptr_nonnull(strstr(err.message, "is missing"));

	ck_assert_int_eq(uc_pack_open(scratch_path("nothing-here"), &pack, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "nothing-here/manifest.json"));
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

typedef struct {
	uint64_t last_done;
	uint64_t total;
	int calls;
	int decreasing;
} progress_log;

static void record_progress(void *ctx, uint64_t done, uint64_t total)
{
	progress_log *log = ctx;
	if (done < log->last_done)
		log->decreasing = 1;
	log->last_done = done;
	log->total = total;
	log->calls++;
}

START_TEST(progress_counts_weights)
{
	uc_source *src = open_stories();
	progress_log log = {0};
	uc_pack_options options = dense_options(2);
	options.progress = record_progress;
	options.progress_ctx = &log;
	write_pack(src, scratch_path("progress"), &options);

	uc_manifest *m = read_manifest(scratch_path("progress"), NULL, NULL);
	ck_assert_int_ge(log.calls, 47);
	ck_assert_int_eq(log.decreasing, 0);
	ck_assert_uint_eq(log.total, uc_manifest_parameters(m));
	ck_assert_uint_eq(log.last_done, uc_manifest_parameters(m));
	uc_manifest_free(m);
	uc_source_close(src);
}
END_TEST

/* Failing allocations one after another never crashes, leaks or leaves a directory. */
START_TEST(allocation_failures_clean_up)
{
	static float matrix[16 * 32], bias[16];
	fill_gaussian(matrix, 512, 5);
	fill_gaussian(bias, 16, 6);
	uc_tensor_view views[] = {f32_view("matrix", matrix, 2, 16, 32), f32_view("bias", bias, 1, 16, 0)};
	write_f32_safetensors(scratch_path("small.safetensors"), views, 2);

	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(scratch_path("small.safetensors"), &src, &err), UC_OK);
	uc_pack_options options = dense_options(2);
	int written = 0;
	for (long n = 0; n < 2000 && !written; n++) {
		uc_test_fail_allocations_after(n);
		uc_status status = uc_pack_write(src, scratch_path("oom"), &options, &err);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(status == UC_OK || status == UC_ERR_NOMEM, "after %ld allocations: %s (%s)", n,
			      uc_status_name(status), err.message);
		written = status == UC_OK;
		ck_assert_int_eq(entries_in(scratch), 1 + written);
	}
	ck_assert_int_eq(written, 1);
	assert_verifies(scratch_path("oom"), 1);
	uc_source_close(src);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pack");
	TCase *tc = tcase_create("pack");
	tcase_add_checked_fixture(tc, scratch_setup, scratch_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stories_manifest_layout);
	tcase_add_test(tc, same_bytes_any_threads);
	tcase_add_test(tc, two_runs_identical);
	tcase_add_test(tc, shard_limit_splits);
	tcase_add_test(tc, identical_shards_share_file);
	tcase_add_test(tc, pack_directory_readable_by_all);
	tcase_add_test(tc, existing_output_rejected);
	tcase_add_test(tc, invalid_options_rejected);
	tcase_add_test(tc, nonfinite_weight_rejected);
	tcase_add_test(tc, range_fallback_to_raw);
	tcase_add_test(tc, f16_overflow_rejected);
	tcase_add_test(tc, multi_chunk_tensor_deterministic);
	tcase_add_test(tc, reconstruct_in_chunks);
	tcase_add_test(tc, open_reports_missing_shard);
	tcase_add_test(tc, progress_counts_weights);
	tcase_add_test(tc, allocation_failures_clean_up);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
