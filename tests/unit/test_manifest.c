/* Manifest parsing, validation and canonical serialisation. Malformed inputs are fixture
 * files under tests/fixtures/manifest/, each with an .expected sibling holding the status
 * name and a substring of the error message. */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"
#include "uc.h"

static uc_manifest *parse_fixture(const char *name, uc_error *err, uc_status *status)
{
	char relative[256];
	size_t len;
	snprintf(relative, sizeof relative, "manifest/%s", name);
	char *json = (char *)tu_read_file(tu_fixture_path(relative), &len);
	uc_manifest *manifest = NULL;
	*status = uc_manifest_parse(json, len, &manifest, err);
	free(json);
	return manifest;
}

START_TEST(valid_fields_read)
{
	uc_error err;
	uc_status status;
	uc_manifest *m = parse_fixture("valid.json", &err, &status);
	ck_assert_msg(status == UC_OK, "%s", err.message);

	ck_assert_uint_eq(uc_manifest_shard_count(m), 2);
	ck_assert_uint_eq(uc_manifest_tensor_count(m), 4);
	ck_assert_uint_eq(uc_manifest_parameters(m), 32848);
	ck_assert_uint_eq(uc_manifest_tensor_bytes(m), 22690);
	ck_assert_uint_eq(uc_manifest_shard_bytes(m), 22724);
	ck_assert_double_eq_tol(uc_manifest_bits_per_weight(m), 5.53434, 1e-9);
	ck_assert_double_eq_tol(uc_manifest_sqnr_db(m), 28.7467, 1e-9);
	ck_assert_str_eq(uc_manifest_model_field(m, "name"), "fixture-model");
	ck_assert_str_eq(uc_manifest_model_field(m, "family"), "dense");
	ck_assert_str_eq(uc_manifest_model_field(m, "license"), "MIT");
	ck_assert_str_eq(uc_manifest_model_field(m, "config"), "{\"dim\":64}");
	ck_assert_str_eq(uc_manifest_model_field(m, "created_by"), "uc 0.1.0");
	ck_assert_ptr_null(uc_manifest_model_field(m, "no_such_field"));

	const uc_manifest_shard *shard = uc_manifest_shard_at(m, 1);
	ck_assert_str_eq(shard->file, "96af8b4933b944bc61107844c9cd0e6986f4add076f2db54982e868cf0630c96");
	ck_assert_uint_eq(shard->size, 68);
	ck_assert_ptr_null(uc_manifest_shard_at(m, 2));

	const uc_manifest_tensor *t = uc_manifest_tensor_at(m, 0);
	ck_assert_str_eq(t->name, "tok_embeddings.weight");
	ck_assert_uint_eq(t->ndim, 2);
	ck_assert_uint_eq(t->shape[0], 512);
	ck_assert_uint_eq(t->shape[1], 64);
	ck_assert_uint_eq(t->n_elements, 32768);
	ck_assert_int_eq(t->dtype, UC_DTYPE_BF16);
	ck_assert_int_eq(t->encoding, UC_ENCODING_UC5);
	ck_assert_uint_eq(t->length, 22528);
	ck_assert_double_eq_tol(t->sqnr_db, 28.7441, 1e-9);

	const uc_manifest_tensor *scalar = uc_manifest_tensor_at(m, 3);
	ck_assert_uint_eq(scalar->ndim, 0);
	ck_assert_uint_eq(scalar->n_elements, 1);
	ck_assert(isnan(scalar->sqnr_db));
	ck_assert_int_eq(uc_manifest_find_tensor(m, "scale"), 3);
	ck_assert_int_eq(uc_manifest_find_tensor(m, "missing"), -1);
	uc_manifest_free(m);
}
END_TEST

START_TEST(canonical_bytes_round_trip)
{
	size_t len, out_len = 0;
	uc_error err;
	uc_manifest *m = NULL;
	char *json = (char *)tu_read_file(tu_fixture_path("manifest/valid.json"), &len);
	ck_assert_int_eq(uc_manifest_parse(json, len, &m, &err), UC_OK);

	char *canonical = uc_manifest_to_json(m, &out_len);
	ck_assert_ptr_nonnull(canonical);
	ck_assert_uint_eq(out_len, len);
	ck_assert_str_eq(canonical, json);
	ck_assert_int_eq(canonical[out_len - 1], '\n');
	uc_free(canonical);
	uc_manifest_free(m);
	free(json);
}
END_TEST

/* A small manifest with indentation and unsorted keys; one raw bf16 tensor of 2 bytes in a
 * shard of `shard_size` bytes. */
static char *indented_manifest(unsigned shard_size)
{
	static const char format[] =
		"{\n  \"totals\": {\"sqnr_db\": null, \"bits_per_weight\": %u, \"parameters\": 1,"
		" \"tensor_bytes\": 2, \"shard_bytes\": %u},\n"
		"  \"format\": \"uc-pack\", \"format_version\": 1, \"created_by\": \"uc 0.1.0\",\n"
		"  \"codec\": {\"version\": 1, \"id\": \"uc5\"},\n"
		"  \"model\": {\"name\": \"m\", \"family\": \"other\", \"parameters\": 1,"
		" \"source_model\": null, \"license\": null, \"config\": null},\n"
		"  \"shards\": [{\"size\": %u, \"sha256\": "
		"\"0000000000000000000000000000000000000000000000000000000000000001\", \"file\": "
		"\"0000000000000000000000000000000000000000000000000000000000000001\"}],\n"
		"  \"tensors\": [{\"name\": \"x\", \"shape\": [1], \"dtype\": \"bf16\", \"encoding\": \"raw\","
		" \"shard\": 0, \"offset\": 0, \"length\": 2, \"sqnr_db\": null, \"max_abs_error\": 0,"
		" \"sha256\": \"0000000000000000000000000000000000000000000000000000000000000002\"}]\n}\n";
	static char text[2048];
	snprintf(text, sizeof text, format, shard_size * 8, shard_size, shard_size);
	return text;
}

START_TEST(short_shard_rejected)
{
	uc_error err;
	uc_manifest *m = NULL;
	const char *json = indented_manifest(1);
	ck_assert_int_eq(uc_manifest_parse(json, strlen(json), &m, &err), UC_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "tensors[0] \"x\": span 0+2 ends past the end of shard 0 (1 bytes)"));
	ck_assert_ptr_null(m);
}
END_TEST

/* Valid but not canonical input parses; serialising it gives the canonical bytes. */
START_TEST(non_canonical_input_accepted)
{
	uc_error err;
	uc_manifest *m = NULL;
	const char *json = indented_manifest(2);
	ck_assert_msg(uc_manifest_parse(json, strlen(json), &m, &err) == UC_OK, "%s", err.message);

	char *canonical = uc_manifest_to_json(m, NULL);
	ck_assert_ptr_nonnull(canonical);
	ck_assert_ptr_nonnull(strstr(canonical, "{\"codec\":{\"id\":\"uc5\",\"version\":1},"));
	ck_assert_ptr_nonnull(strstr(canonical, "\"bits_per_weight\":16.0,"));
	ck_assert_ptr_nonnull(strstr(canonical, "\"max_abs_error\":0.0,"));
	ck_assert_ptr_nonnull(strstr(canonical, "\"license\":null"));
	ck_assert_ptr_null(strstr(canonical, ": "));
	ck_assert_ptr_null(strstr(canonical, ", "));
	uc_free(canonical);
	uc_manifest_free(m);
}
END_TEST

static void read_expected(const char *json_name, char *status, size_t status_size, char *message,
			  size_t message_size)
{
	char relative[256];
	size_t len;
	snprintf(relative, sizeof relative, "manifest/%.*s.expected", (int)(strlen(json_name) - 5),
		 json_name);
	char *text = (char *)tu_read_file(tu_fixture_path(relative), &len);
	char *newline = strchr(text, '\n');
	ck_assert_msg(newline != NULL, "%s: first line must be a status name", relative);
	*newline = '\0';
	snprintf(status, status_size, "%s", text);

	char *second = newline + 1;
	char *end = strchr(second, '\n');
	if (end)
		*end = '\0';
	snprintf(message, message_size, "%s", second);
	free(text);
}

/* Every .json fixture parses to the status and message its .expected file names. */
START_TEST(fixtures_match_expected)
{
	DIR *dir = opendir(tu_fixture_path("manifest"));
	ck_assert_ptr_nonnull(dir);

	int checked = 0;
	struct dirent *entry;
	while ((entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		if (len < 6 || strcmp(entry->d_name + len - 5, ".json") != 0)
			continue;

		char expected_status[32], expected_message[400];
		read_expected(entry->d_name, expected_status, sizeof expected_status, expected_message,
			      sizeof expected_message);

		uc_error err;
		uc_status status;
		uc_manifest *m = parse_fixture(entry->d_name, &err, &status);
		ck_assert_msg(strcmp(uc_status_name(status), expected_status) == 0,
			      "%s: status %s, expected %s (%s)", entry->d_name, uc_status_name(status),
			      expected_status, err.message);
		ck_assert_msg(strstr(err.message, expected_message) != NULL,
			      "%s: message \"%s\" lacks \"%s\"", entry->d_name, err.message, expected_message);
		ck_assert_msg((m != NULL) == (status == UC_OK), "%s: manifest pointer and status disagree",
			      entry->d_name);
		uc_manifest_free(m);
		checked++;
	}
	closedir(dir);
	ck_assert_int_ge(checked, 30);
}
END_TEST

START_TEST(oversized_input_rejected)
{
	uc_error err;
	uc_manifest *m = (uc_manifest *)1;
	size_t huge = (size_t)1 << 40;
	ck_assert_int_eq(uc_manifest_parse("{}", huge, &m, &err), UC_ERR_FORMAT);
	ck_assert_ptr_null(m);
	ck_assert_ptr_nonnull(strstr(err.message, "the limit is"));
}
END_TEST

START_TEST(family_names_checked)
{
	const char *valid[] = {"dense", "moe", "ssm", "recurrent", "hybrid", "vit", "other"};
	for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
		ck_assert_int_eq(uc_family_valid(valid[i]), 1);
	ck_assert_int_eq(uc_family_valid("Dense"), 0);
	ck_assert_int_eq(uc_family_valid(""), 0);
	ck_assert_int_eq(uc_family_valid(NULL), 0);
}
END_TEST

/* Failing each allocation in turn yields an error (never a crash or a leak), and parsing
 * succeeds once enough allocations are allowed. */
START_TEST(allocation_failures_reported)
{
	size_t len;
	char *json = (char *)tu_read_file(tu_fixture_path("manifest/valid.json"), &len);
	int succeeded = 0;
	for (long n = 0; n < 2000 && !succeeded; n++) {
		uc_error err;
		uc_manifest *m = NULL;
		uc_test_fail_allocations_after(n);
		uc_status status = uc_manifest_parse(json, len, &m, &err);
		uc_test_fail_allocations_after(-1);
		/* jansson 2.14 reports some failed allocations inside its lexer as syntax errors. */
		int jansson_lexer = status == UC_ERR_FORMAT && strstr(err.message, "not valid JSON");
		ck_assert_msg(status == UC_OK || status == UC_ERR_NOMEM || jansson_lexer,
			      "after %ld allocations: %s (%s)", n, uc_status_name(status), err.message);
		if (status == UC_OK) {
			char *text = NULL;
			for (long k = 0; k < 2000 && !text; k++) {
				uc_test_fail_allocations_after(k);
				text = uc_manifest_to_json(m, NULL);
				uc_test_fail_allocations_after(-1);
			}
			ck_assert_ptr_nonnull(text);
			uc_free(text);
			succeeded = 1;
		}
		uc_manifest_free(m);
	}
	ck_assert_int_eq(succeeded, 1);
	free(json);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("manifest");
	tcase_add_test(tc, valid_fields_read);
	tcase_add_test(tc, canonical_bytes_round_trip);
	tcase_add_test(tc, short_shard_rejected);
	tcase_add_test(tc, non_canonical_input_accepted);
	tcase_add_test(tc, fixtures_match_expected);
	tcase_add_test(tc, oversized_input_rejected);
	tcase_add_test(tc, family_names_checked);
	tcase_add_test(tc, allocation_failures_reported);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
