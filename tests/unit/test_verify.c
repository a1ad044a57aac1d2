/* Verification and its report, on a real pack of stories260K and on malformed copies of it
 * described by tests/fixtures/packs/mutations.txt. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"
#include "testutil.h"
#include "uc.h"

/* One pack shared by every test of the process, written before the tests fork. */
static char *pack_root;
static char pack_dir[512];

static void pack_setup(void)
{
	uc_source *src = NULL;
	uc_error err;
	pack_root = tu_make_temp_dir();
	snprintf(pack_dir, sizeof pack_dir, "%s/stories", pack_root);
	ck_assert_msg(uc_source_open(tu_data_path("stories260K.safetensors"), &src, &err) == UC_OK, "%s",
		      err.message);

	uc_pack_options options;
	uc_pack_options_init(&options);
	options.family = "dense";
	ck_assert_msg(uc_pack_write(src, pack_dir, &options, &err) == UC_OK, "%s", err.message);
	uc_source_close(src);
}

static void pack_teardown(void)
{
	tu_remove_tree(pack_root);
	free(pack_root);
}

static uc_report *verify_dir(const char *dir, unsigned threads)
{
	uc_verify_options options;
	uc_verify_options_init(&options);
	options.threads = threads;
	uc_report *report = NULL;
	uc_error err;
	ck_assert_msg(uc_verify_pack(dir, &options, &report, &err) == UC_OK, "%s", err.message);
	ck_assert_ptr_nonnull(report);
	return report;
}

static json_t *report_json(const uc_report *report)
{
	char *text = uc_report_to_json(report);
	ck_assert_ptr_nonnull(text);
	json_error_t error;
	json_t *root = json_loads(text, 0, &error);
	ck_assert_msg(root != NULL, "report JSON does not parse: %s", error.text);
	uc_free(text);
	return root;
}

static const char *stage_status(json_t *root, size_t stage)
{
	return json_string_value(json_object_get(json_array_get(json_object_get(root, "stages"), stage), "status"));
}

static int ends_with(const char *text, const char *tail)
{
	size_t a = strlen(text), b = strlen(tail);
	return a >= b && strcmp(text + a - b, tail) == 0;
}

START_TEST(good_pack_verifies)
{
	uc_report *report = verify_dir(pack_dir, 2);
	ck_assert_int_eq(uc_report_verdict(report), UC_VERDICT_OK);
	ck_assert_uint_eq(uc_report_error_count(report), 0);

	char *text = uc_report_to_text(report);
	ck_assert_msg(ends_with(text, "\nSTRUCTURE OK\nRECONSTRUCTION OK\n"), "%s", text);
	ck_assert_ptr_nonnull(strstr(text, "stage integrity: ok"));
	uc_free(text);

	json_t *root = report_json(report);
	ck_assert_str_eq(json_string_value(json_object_get(root, "verdict")), "ok");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "verifier"), "name")), "libuc");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "verifier"), "version")), "0.1.0");
	ck_assert_str_eq(json_string_value(json_object_get(root, "isa")), uc_isa_name(uc_isa_active()));
	ck_assert_int_eq(json_integer_value(json_object_get(root, "threads")), 2);
	for (size_t s = 0; s < 3; s++)
		ck_assert_str_eq(stage_status(root, s), "ok");
	ck_assert_uint_eq(json_array_size(json_object_get(root, "errors")), 0);

	/* The manifest digest is that of the file's bytes. */
	char path[600], hex[65];
	uint8_t digest[32];
	snprintf(path, sizeof path, "%s/manifest.json", pack_dir);
	ck_assert_int_eq(uc_sha256_file(path, digest, NULL, NULL), UC_OK);
	uc_sha256_to_hex(digest, hex);
	ck_assert_str_eq(json_string_value(json_object_get(root, "manifest_sha256")), hex);

	json_t *tensors = json_object_get(root, "tensors");
	ck_assert_uint_eq(json_array_size(tensors), 47);
	uint64_t reconstructed = 0;
	for (size_t i = 0; i < json_array_size(tensors); i++) {
		json_t *t = json_array_get(tensors, i);
		ck_assert(json_is_true(json_object_get(t, "ok")));
		ck_assert(json_equal(json_object_get(t, "expected_sha256"), json_object_get(t, "actual_sha256")));
		ck_assert(json_is_real(json_object_get(t, "sqnr_db")));
	}
	uc_pack *pack = NULL;
	uc_error err;
	ck_assert_int_eq(uc_pack_open(pack_dir, &pack, &err), UC_OK);
	const uc_manifest *m = uc_pack_manifest(pack);
	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++)
		reconstructed += uc_manifest_tensor_at(m, i)->n_elements * 2;
	ck_assert_uint_eq(json_integer_value(json_object_get(root, "bytes_hashed")),
			  uc_manifest_shard_bytes(m) + reconstructed);

	uc_pack_close(pack);
	json_decref(root);
	uc_report_free(report);
}
END_TEST

START_TEST(same_report_any_threads)
{
	json_t *reference = NULL;
	for (unsigned threads = 1; threads <= 3; threads++) {
		uc_report *report = verify_dir(pack_dir, threads);
		json_t *root = report_json(report);
		ck_assert_str_eq(json_string_value(json_object_get(root, "verdict")), "ok");
		json_t *tensors = json_incref(json_object_get(root, "tensors"));
		if (!reference)
			reference = json_incref(tensors);
		ck_assert_msg(json_equal(tensors, reference), "tensor results with %u threads differ", threads);
		json_decref(tensors);
		json_decref(root);
		uc_report_free(report);
	}
	json_decref(reference);
}
END_TEST

/* Copies the pack into a new scratch directory and returns its path (free()). */
static char *copy_pack(void)
{
	char *dir = tu_make_temp_dir();
	DIR *d = opendir(pack_dir);
	ck_assert_ptr_nonnull(d);
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL) {
		if (entry->d_name[0] == '.')
			continue;
		char from[1024], to[1024];
		size_t len;
		snprintf(from, sizeof from, "%s/%.200s", pack_dir, entry->d_name);
		snprintf(to, sizeof to, "%s/%.200s", dir, entry->d_name);
		uint8_t *bytes = tu_read_file(from, &len);
		tu_write_file(to, bytes, len);
		free(bytes);
	}
	closedir(d);
	return dir;
}

static json_t *load_manifest(const char *dir)
{
	char path[600];
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	json_error_t error;
	json_t *root = json_load_file(path, 0, &error);
	ck_assert_msg(root != NULL, "%s: %s", path, error.text);
	return root;
}

static void save_manifest(const char *dir, json_t *root)
{
	char path[600];
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	ck_assert_int_eq(json_dump_file(root, path, JSON_SORT_KEYS | JSON_COMPACT), 0);
}

static void shard_path(const char *dir, json_t *manifest, size_t shard, char *out, size_t size)
{
	json_t *entry = json_array_get(json_object_get(manifest, "shards"), shard);
	snprintf(out, size, "%s/%s", dir, json_string_value(json_object_get(entry, "file")));
}

/* Replaces the value at a '/'-separated path of object keys and array indices. */
static void set_path(json_t *root, const char *path, const char *value_json)
{
	json_error_t error;
	json_t *value = json_loads(value_json, JSON_DECODE_ANY, &error);
	ck_assert_msg(value != NULL, "mutation value %s: %s", value_json, error.text);

	char buf[256];
	snprintf(buf, sizeof buf, "%s", path);
	json_t *node = root;
	char *part = buf;
	for (;;) {
		char *slash = strchr(part, '/');
		if (slash)
			*slash = '\0';
		int last = slash == NULL;
		if (json_is_array(node)) {
			size_t index = strtoul(part, NULL, 10);
			if (last) {
				ck_assert_int_eq(json_array_set_new(node, index, value), 0);
				return;
			}
			node = json_array_get(node, index);
		} else {
			if (last) {
				ck_assert_int_eq(json_object_set_new(node, part, value), 0);
				return;
			}
			node = json_object_get(node, part);
		}
		ck_assert_msg(node != NULL, "mutation path %s not found", path);
		part = slash + 1;
	}
}

static void truncate_shard(const char *dir, size_t shard, long size)
{
	char path[700];
	json_t *m = load_manifest(dir);
	shard_path(dir, m, shard, path, sizeof path);
	ck_assert_int_eq(truncate(path, size), 0);
	json_decref(m);
}

static void remove_shard(const char *dir, size_t shard)
{
	char path[700];
	json_t *m = load_manifest(dir);
	shard_path(dir, m, shard, path, sizeof path);
	ck_assert_int_eq(remove(path), 0);
	json_decref(m);
}

/* Changes bytes of the shard holding `tensor`: inverts one byte in the middle of its span,
 * or (block >= 0) sets that uc5 block's scale to +infinity. With `rename_shard` the shard
 * gets its new digest as name and in the manifest, so the integrity stage passes. */
static void patch_shard(const char *dir, size_t tensor, long block, int rename_shard)
{
	json_t *m = load_manifest(dir);
	json_t *t = json_array_get(json_object_get(m, "tensors"), tensor);
	size_t shard = (size_t)json_integer_value(json_object_get(t, "shard"));
	size_t offset = (size_t)json_integer_value(json_object_get(t, "offset"));
	size_t length = (size_t)json_integer_value(json_object_get(t, "length"));

	char path[700];
	size_t len;
	shard_path(dir, m, shard, path, sizeof path);
	uint8_t *bytes = tu_read_file(path, &len);
	if (block < 0) {
		bytes[offset + length / 2] ^= 0xff;
	} else {
		bytes[offset + (size_t)block * 176] = 0x00;
		bytes[offset + (size_t)block * 176 + 1] = 0x7c;
	}
	tu_write_file(path, bytes, len);

	if (rename_shard) {
		uint8_t digest[32];
		char hex[65], renamed[700], index[64];
		uc_sha256_buffer(bytes, len, digest);
		uc_sha256_to_hex(digest, hex);
		snprintf(renamed, sizeof renamed, "%s/%s", dir, hex);
		ck_assert_int_eq(rename(path, renamed), 0);

		char quoted[70];
		snprintf(quoted, sizeof quoted, "\"%s\"", hex);
		snprintf(index, sizeof index, "shards/%zu/file", shard);
		set_path(m, index, quoted);
		snprintf(index, sizeof index, "shards/%zu/sha256", shard);
		set_path(m, index, quoted);
		save_manifest(dir, m);
	}
	free(bytes);
	json_decref(m);
}

static void apply_mutation(const char *dir, const char *mutation, const char *target, const char *value)
{
	if (strcmp(mutation, "truncate-shard") == 0) {
		truncate_shard(dir, strtoul(target, NULL, 10), strtol(value, NULL, 10));
	} else if (strcmp(mutation, "remove-shard") == 0) {
		remove_shard(dir, strtoul(target, NULL, 10));
	} else if (strcmp(mutation, "flip-byte") == 0) {
		patch_shard(dir, strtoul(target, NULL, 10), -1, 0);
	} else if (strcmp(mutation, "inf-scale") == 0) {
		patch_shard(dir, strtoul(target, NULL, 10), strtol(value, NULL, 10), 1);
	} else if (strcmp(mutation, "set") == 0) {
		json_t *m = load_manifest(dir);
		set_path(m, target, value);
		save_manifest(dir, m);
		json_decref(m);
	} else if (strcmp(mutation, "remove-manifest") == 0) {
		char path[600];
		snprintf(path, sizeof path, "%s/manifest.json", dir);
		ck_assert_int_eq(remove(path), 0);
	} else {
		ck_abort_msg("unknown mutation %s", mutation);
	}
}

/* Splits a table line into 7 trimmed fields separated by '|'. */
static int split_fields(char *line, char *fields[7])
{
	int n = 0;
	char *start = line;
	for (char *p = line;; p++) {
		if (*p != '|' && *p != '\0' && *p != '\n')
			continue;
		int end_of_line = *p != '|';
		*p = '\0';
		while (*start == ' ')
			start++;
		for (char *e = p - 1; e >= start && *e == ' '; e--)
			*e = '\0';
		if (n < 7)
			fields[n] = start;
		n++;
		start = p + 1;
		if (end_of_line)
			return n;
	}
}

static void check_failed_report(const char *name, const uc_report *report, const char *verdict,
				 const char *status, const char *message)
{
	json_t *root = report_json(report);
	const char *actual = json_string_value(json_object_get(root, "verdict"));
	char *text = uc_report_to_text(report);
	ck_assert_msg(strcmp(actual, verdict) == 0, "%s: verdict %s, expected %s\n%s", name, actual, verdict, text);

	int found = 0;
	json_t *errors = json_object_get(root, "errors");
	for (size_t i = 0; i < json_array_size(errors); i++) {
		json_t *e = json_array_get(errors, i);
		found |= strcmp(json_string_value(json_object_get(e, "status")), status) == 0 &&
			 strstr(json_string_value(json_object_get(e, "message")), message) != NULL;
	}
	ck_assert_msg(found, "%s: no %s error containing \"%s\"\n%s", name, status, message, text);

	/* A failed stage stops verification, and the report records which stages did not run. */
	size_t failed_stage = strcmp(verdict, "structure_failed") == 0 ? 0 : strcmp(verdict, "integrity_failed") == 0 ? 1 : 2;
	ck_assert_str_eq(stage_status(root, failed_stage), "failed");
	for (size_t s = failed_stage + 1; s < 3; s++)
		ck_assert_msg(strcmp(stage_status(root, s), "skipped") == 0, "%s: stage %zu ran", name, s);
	if (failed_stage < 2)
		ck_assert_uint_eq(json_array_size(json_object_get(root, "tensors")), 0);
	ck_assert_ptr_nonnull(strstr(text, failed_stage == 0 ? "STRUCTURE FAILED"
					   : failed_stage == 1 ? "INTEGRITY FAILED" : "RECONSTRUCTION FAILED"));
	ck_assert_ptr_null(strstr(text, "RECONSTRUCTION OK"));
	uc_free(text);
	json_decref(root);
}

START_TEST(mutations_fail_as_expected)
{
	FILE *table = fopen(tu_fixture_path("packs/mutations.txt"), "r");
	ck_assert_ptr_nonnull(table);
	char line[1024];
	int cases = 0;
	while (fgets(line, sizeof line, table)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		char *f[7];
		ck_assert_int_eq(split_fields(line, f), 7);

		char *dir = copy_pack();
		apply_mutation(dir, f[1], f[2], f[3]);
		for (unsigned threads = 1; threads <= 2; threads++) {
			uc_report *report = verify_dir(dir, threads);
			check_failed_report(f[0], report, f[4], f[5], f[6]);
			uc_report_free(report);
		}
		tu_remove_tree(dir);
		free(dir);
		cases++;
	}
	fclose(table);
	ck_assert_int_ge(cases, 16);
}
END_TEST

/* Every malformed manifest fixture is a structure failure with exactly one error. */
START_TEST(manifest_fixtures_fail_structure)
{
	DIR *dir = opendir(tu_fixture_path("manifest"));
	ck_assert_ptr_nonnull(dir);
	struct dirent *entry;
	int checked = 0;
	while ((entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		if (len < 6 || strcmp(entry->d_name + len - 5, ".json") != 0 || strcmp(entry->d_name, "valid.json") == 0)
			continue;
		char relative[300];
		snprintf(relative, sizeof relative, "manifest/%s", entry->d_name);
		size_t json_len;
		char *json = (char *)tu_read_file(tu_fixture_path(relative), &json_len);

		uc_report *report = NULL;
		uc_error err;
		ck_assert_int_eq(uc_verify_manifest(json, json_len, pack_dir, NULL, &report, &err), UC_OK);
		ck_assert_msg(uc_report_verdict(report) == UC_VERDICT_STRUCTURE_FAILED, "%s", entry->d_name);
		ck_assert_uint_eq(uc_report_error_count(report), 1);
		uc_report_free(report);
		free(json);
		checked++;
	}
	closedir(dir);
	ck_assert_int_ge(checked, 30);
}
END_TEST

/* Every missing and truncated shard is reported, not only the first. */
START_TEST(all_shard_failures_listed)
{
	char *dir = tu_make_temp_dir();
	char packed[600];
	uc_source *src = NULL;
	uc_error err;
	snprintf(packed, sizeof packed, "%s/split", dir);
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &src, &err), UC_OK);
	uc_pack_options options;
	uc_pack_options_init(&options);
	options.family = "dense";
	options.shard_size_limit = 32 << 10;
	ck_assert_int_eq(uc_pack_write(src, packed, &options, &err), UC_OK);
	uc_source_close(src);

	json_t *m = load_manifest(packed);
	ck_assert_uint_ge(json_array_size(json_object_get(m, "shards")), 3);
	char path[700];
	shard_path(packed, m, 0, path, sizeof path);
	ck_assert_int_eq(remove(path), 0);
	shard_path(packed, m, 2, path, sizeof path);
	ck_assert_int_eq(truncate(path, 10), 0);

	uc_report *report = verify_dir(packed, 2);
	ck_assert_int_eq(uc_report_verdict(report), UC_VERDICT_STRUCTURE_FAILED);
	ck_assert_uint_eq(uc_report_error_count(report), 2);
	char *text = uc_report_to_text(report);
	ck_assert_ptr_nonnull(strstr(text, "is missing from"));
	ck_assert_ptr_nonnull(strstr(text, "is 10 bytes but the manifest declares"));
	ck_assert_msg(ends_with(text, "STRUCTURE FAILED: 2 errors\nRECONSTRUCTION NOT RUN: structure failed\n"), "%s", text);

	uc_free(text);
	uc_report_free(report);
	json_decref(m);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

typedef struct {
	uint64_t done;
	uint64_t total;
	int backwards;
} progress_log;

static void record_progress(void *ctx, uint64_t done, uint64_t total)
{
	progress_log *log = ctx;
	log->backwards |= done < log->done;
	log->done = done;
	log->total = total;
}

START_TEST(progress_counts_bytes)
{
	progress_log log = {0};
	uc_verify_options options;
	uc_verify_options_init(&options);
	options.threads = 2;
	options.progress = record_progress;
	options.progress_ctx = &log;
	uc_report *report = NULL;
	uc_error err;
	ck_assert_int_eq(uc_verify_pack(pack_dir, &options, &report, &err), UC_OK);

	json_t *root = report_json(report);
	uint64_t hashed = (uint64_t)json_integer_value(json_object_get(root, "bytes_hashed"));
	ck_assert_uint_eq(log.done, hashed);
	ck_assert_uint_eq(log.total, hashed);
	ck_assert_int_eq(log.backwards, 0);
	json_decref(root);
	uc_report_free(report);
}
END_TEST

START_TEST(invalid_arguments_rejected)
{
	uc_report *report = NULL;
	uc_error err;
	ck_assert_int_eq(uc_verify_manifest(NULL, 0, pack_dir, NULL, &report, &err), UC_ERR_INVALID);
	ck_assert_int_eq(uc_verify_manifest("{}", 2, NULL, NULL, &report, &err), UC_ERR_INVALID);
	ck_assert_int_eq(uc_verify_pack(NULL, NULL, &report, &err), UC_ERR_INVALID);
	ck_assert_ptr_null(report);
}
END_TEST

/* Packs a small two-tensor checkpoint into `dir`/small and returns that path (free()). */
static char *write_small_pack(const char *dir)
{
	static float matrix[16 * 32], bias[16];
	for (size_t i = 0; i < 512; i++)
		matrix[i] = (float)((int)(i * 37 % 101) - 50) * 0.01f;
	for (size_t i = 0; i < 16; i++)
		bias[i] = (float)i * 0.125f;

	uc_tensor_view views[2] = {
		{.name = "matrix", .dtype = UC_DTYPE_F32, .ndim = 2, .shape = {16, 32}, .n_elements = 512,
		 .data = (const uint8_t *)matrix, .nbytes = sizeof matrix},
		{.name = "bias", .dtype = UC_DTYPE_F32, .ndim = 1, .shape = {16}, .n_elements = 16,
		 .data = (const uint8_t *)bias, .nbytes = sizeof bias},
	};
	char source[600];
	uc_st_writer *writer = NULL;
	uc_error err;
	snprintf(source, sizeof source, "%s/small.safetensors", dir);
	ck_assert_int_eq(uc_st_writer_open(source, views, 2, NULL, &writer, &err), UC_OK);
	for (size_t i = 0; i < 2; i++)
		ck_assert_int_eq(uc_st_writer_write(writer, views[i].data, views[i].nbytes, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_OK);

	uc_source *src = NULL;
	ck_assert_int_eq(uc_source_open(source, &src, &err), UC_OK);
	uc_pack_options options;
	uc_pack_options_init(&options);
	options.family = "other";
	size_t len = strlen(dir) + sizeof "/small";
	char *packed = malloc(len);
	snprintf(packed, len, "%s/small", dir);
	ck_assert_msg(uc_pack_write(src, packed, &options, &err) == UC_OK, "%s", err.message);
	uc_source_close(src);
	return packed;
}

/* Failing allocations one after another ends in UC_ERR_NOMEM or a full report, never a
 * crash or a leak. */
START_TEST(allocation_failures_reported)
{
	char *dir = tu_make_temp_dir();
	char *packed = write_small_pack(dir);
	int complete = 0;
	for (long n = 0; n < 3000 && !complete; n++) {
		uc_report *report = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		uc_status status = uc_verify_pack(packed, NULL, &report, &err);
		char *json = status == UC_OK ? uc_report_to_json(report) : NULL;
		char *text = status == UC_OK ? uc_report_to_text(report) : NULL;
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(status == UC_OK || status == UC_ERR_NOMEM, "after %ld allocations: %s (%s)", n,
			      uc_status_name(status), err.message);

		/* jansson 2.14 may report a failed allocation as a syntax error, which the report
		 * records as a structure failure. Only a full run counts as complete. */
		complete = status == UC_OK && uc_report_verdict(report) == UC_VERDICT_OK && json && text;
		uc_free(json);
		uc_free(text);
		uc_report_free(report);
	}
	ck_assert_int_eq(complete, 1);
	tu_remove_tree(dir);
	free(packed);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("verify");
	tcase_add_unchecked_fixture(tc, pack_setup, pack_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, good_pack_verifies);
	tcase_add_test(tc, same_report_any_threads);
	tcase_add_test(tc, mutations_fail_as_expected);
	tcase_add_test(tc, manifest_fixtures_fail_structure);
	tcase_add_test(tc, all_shard_failures_listed);
	tcase_add_test(tc, progress_counts_bytes);
	tcase_add_test(tc, invalid_arguments_rejected);
	tcase_add_test(tc, allocation_failures_reported);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
