/* The safetensors parser on malformed and valid files, and the safetensors writer. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture_table.h"
#include "source_internal.h"
#include "testutil.h"
#include "uc.h"

static uc_status parse_fixture(const char *path, uc_error *err)
{
	size_t len;
	uint8_t *bytes = tu_read_file(path, &len);
	ucp_parsed_file *parsed = NULL;
	uc_status rc = ucp_st_parse(bytes, len, &parsed, err);
	if (rc == UC_OK)
		ck_assert_ptr_nonnull(parsed);
	else
		ck_assert_ptr_null(parsed);
	ucp_parsed_file_free(parsed);
	free(bytes);
	return rc;
}

START_TEST(fixtures_match_expected)
{
	size_t checked = ft_run_directory("safetensors", ".safetensors", parse_fixture);
	ck_assert_uint_ge(checked, 40);
}
END_TEST

START_TEST(huge_length_allocates_nothing)
{
	uint8_t file[10] = { 0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}' };
	ucp_parsed_file *parsed = NULL;
	uc_error err;
	uc_test_fail_allocations_after(0);
	uc_status rc = ucp_st_parse(file, sizeof file, &parsed, &err);
	uc_test_fail_allocations_after(-1);
	ck_assert_int_eq(rc, UC_ERR_FORMAT);
	ck_assert_ptr_null(parsed);
	ck_assert_ptr_nonnull(strstr(err.message, "18446744073709551611"));
}
END_TEST

START_TEST(parse_survives_allocation_failures)
{
	size_t len;
	uint8_t *bytes = tu_read_file(tu_data_path("stories260K.safetensors"), &len);
	uc_status rc = UC_ERR_NOMEM;
	long n;
	for (n = 0; rc == UC_ERR_NOMEM; n++) {
		ucp_parsed_file *parsed = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		rc = ucp_st_parse(bytes, len, &parsed, &err);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(rc == UC_OK || rc == UC_ERR_NOMEM, "allocation %ld: %s", n, err.message);
		ucp_parsed_file_free(parsed);
	}
	ck_assert_int_eq(rc, UC_OK);
	ck_assert_int_gt(n, 48);
	free(bytes);
}
END_TEST

START_TEST(real_file_tensors_and_metadata)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &src, &err), UC_OK);
	ck_assert_int_eq(uc_source_get_kind(src), UC_SOURCE_SAFETENSORS);
	ck_assert_uint_eq(uc_source_tensor_count(src), 47);

	const uc_tensor_view *first = uc_source_tensor(src, 0);
	ck_assert_str_eq(first->name, "tok_embeddings.weight");
	ck_assert_uint_eq(first->ndim, 2);
	ck_assert_uint_eq(first->shape[0], 512);
	ck_assert_uint_eq(first->shape[1], 64);
	ck_assert_uint_eq(first->nbytes, 512 * 64 * 4);

	const uc_tensor_view *wk = uc_source_find(src, "layers.4.attention.wk.weight");
	ck_assert_ptr_nonnull(wk);
	ck_assert_uint_eq(wk->shape[0], 32);
	ck_assert_ptr_null(uc_source_find(src, "layers.5.attention.wk.weight"));
	ck_assert_ptr_null(uc_source_tensor(src, 47));

	/* Tensors come in ascending offset order. */
	for (size_t i = 1; i < uc_source_tensor_count(src); i++)
		ck_assert_ptr_eq(uc_source_tensor(src, i)->data,
				 uc_source_tensor(src, i - 1)->data + uc_source_tensor(src, i - 1)->nbytes);

	ck_assert_str_eq(uc_source_metadata(src, "source"), "stories260K.bin");
	ck_assert_ptr_nonnull(strstr(uc_source_metadata(src, "config"), "\"dim\": 64"));
	ck_assert_ptr_null(uc_source_metadata(src, "missing"));
	uc_source_close(src);
}
END_TEST

START_TEST(to_f32_converts_exactly)
{
	const uint8_t f16[] = { 0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0xff, 0x03,
				0xff, 0x7b, 0x00, 0x7c, 0x00, 0x80 };
	const float f16_values[] = { 1.0f, -2.0f, 0x1p-24f, 0x3ffp-24f, 65504.0f, __builtin_inff(),
				     -0.0f };
	const uint8_t bf16[] = { 0x80, 0x3f, 0x49, 0x40, 0x80, 0xff, 0x01, 0x00 };
	const float bf16_values[] = { 1.0f, 3.140625f, -__builtin_inff(), 0x1p-133f };
	const uint8_t f32[] = { 0x00, 0x00, 0x80, 0x3f, 0xdb, 0x0f, 0x49, 0x40 };
	float out[7];

	uc_tensor_view view = { .name = "t", .dtype = UC_DTYPE_F16, .data = f16 };
	uc_tensor_to_f32(&view, 0, 7, out);
	for (int i = 0; i < 7; i++)
		ck_assert_mem_eq(&out[i], &f16_values[i], sizeof(float));

	view.dtype = UC_DTYPE_BF16;
	view.data = bf16;
	uc_tensor_to_f32(&view, 1, 3, out);
	for (int i = 0; i < 3; i++)
		ck_assert_mem_eq(&out[i], &bf16_values[i + 1], sizeof(float));

	view.dtype = UC_DTYPE_F32;
	view.data = f32;
	uc_tensor_to_f32(&view, 0, 2, out);
	ck_assert_float_eq(out[0], 1.0f);
	ck_assert_float_eq(out[1], 3.14159274f);
}
END_TEST

/* Test-local narrowing: bf16 by truncation, f16 by truncation for values in its normal
 * range (smaller magnitudes become zero). Only the bytes matter to the round trip. */
static uint16_t narrow_bf16(float value)
{
	uint32_t bits;
	memcpy(&bits, &value, sizeof bits);
	return (uint16_t)(bits >> 16);
}

static uint16_t narrow_f16(float value)
{
	uint32_t bits;
	memcpy(&bits, &value, sizeof bits);
	uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
	int exponent = (int)((bits >> 23) & 0xff) - 127 + 15;
	if (exponent <= 0)
		return sign;
	ck_assert_int_lt(exponent, 31);
	return (uint16_t)(sign | (exponent << 10) | ((bits >> 13) & 0x3ffu));
}

/* Builds the tensors to write: stories260K's, with every third one narrowed to bf16 and
 * every third after that to f16. Data buffers are new (free each .data). */
static uc_tensor_view *narrowed_tensors(const uc_source *src, size_t *count)
{
	*count = uc_source_tensor_count(src);
	uc_tensor_view *views = calloc(*count, sizeof *views);
	for (size_t i = 0; i < *count; i++) {
		const uc_tensor_view *t = uc_source_tensor(src, i);
		views[i] = *t;
		uint8_t *data = malloc(t->nbytes);
		float *values = malloc(t->n_elements * sizeof(float));
		uc_tensor_to_f32(t, 0, t->n_elements, values);
		views[i].dtype = i % 3 == 1 ? UC_DTYPE_BF16 : i % 3 == 2 ? UC_DTYPE_F16 : UC_DTYPE_F32;
		for (uint64_t k = 0; k < t->n_elements; k++) {
			if (views[i].dtype == UC_DTYPE_F32)
				memcpy(data + 4 * k, &values[k], 4);
			else
				ucp_store_le16(data + 2 * k, views[i].dtype == UC_DTYPE_BF16
								     ? narrow_bf16(values[k])
								     : narrow_f16(values[k]));
		}
		views[i].nbytes = t->n_elements * (views[i].dtype == UC_DTYPE_F32 ? 4 : 2);
		views[i].data = data;
		free(values);
	}
	return views;
}

START_TEST(writer_round_trip)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &src, &err), UC_OK);
	size_t count;
	uc_tensor_view *views = narrowed_tensors(src, &count);

	uc_st_writer *writer;
	ck_assert_int_eq(uc_st_writer_open(path, views, count, "{\"source\": \"test\"}", &writer, &err),
			 UC_OK);
	for (size_t i = 0; i < count; i++)
		ck_assert_int_eq(uc_st_writer_write(writer, views[i].data, views[i].nbytes, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_OK);

	uc_source *copy;
	ck_assert_msg(uc_source_open(path, &copy, &err) == UC_OK, "%s", err.message);
	ck_assert_uint_eq(uc_source_tensor_count(copy), count);
	ck_assert_str_eq(uc_source_metadata(copy, "source"), "test");
	for (size_t i = 0; i < count; i++) {
		const uc_tensor_view *t = uc_source_tensor(copy, i);
		ck_assert_str_eq(t->name, views[i].name);
		ck_assert_int_eq(t->dtype, views[i].dtype);
		ck_assert_uint_eq(t->ndim, views[i].ndim);
		ck_assert_mem_eq(t->shape, views[i].shape, sizeof t->shape);
		ck_assert_uint_eq(t->nbytes, views[i].nbytes);
		ck_assert_mem_eq(t->data, views[i].data, t->nbytes);
	}

	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0644);
	uc_source_close(copy);
	for (size_t i = 0; i < count; i++)
		free((void *)views[i].data);
	free(views);
	uc_source_close(src);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

static const uc_tensor_view two_tensors[] = {
	{ .name = "b", .dtype = UC_DTYPE_F32, .ndim = 1, .shape = { 3 } },
	{ .name = "a", .dtype = UC_DTYPE_BF16, .ndim = 2, .shape = { 1, 2 } },
};

START_TEST(writer_header_layout)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_st_writer *writer;
	uc_error err;
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, "{\"k\": \"v\"}", &writer, &err),
			 UC_OK);
	uint8_t data[16] = { 0 };
	ck_assert_int_eq(uc_st_writer_write(writer, data, 12, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_write(writer, data, 4, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_OK);

	size_t len;
	uint8_t *bytes = tu_read_file(path, &len);
	uint64_t header_len = ucp_load_le64(bytes);
	ck_assert_uint_eq((8 + header_len) % 8, 0);
	ck_assert_uint_eq(len, 8 + header_len + 16);
	const char *expected = "{\"__metadata__\":{\"k\":\"v\"},"
			       "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
			       "\"a\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[12,16]}}";
	ck_assert_mem_eq(bytes + 8, expected, strlen(expected));
	for (size_t i = strlen(expected); i < header_len; i++)
		ck_assert_int_eq(bytes[8 + i], ' ');
	free(bytes);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

/* Returns the number of entries in `dir` other than "." and "..". */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL)
		n += strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0;
	closedir(d);
	return n;
}

START_TEST(writer_missing_bytes_leave_no_file)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_st_writer *writer;
	uc_error err;
	uint8_t data[16] = { 0 };
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, NULL, &writer, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_write(writer, data, 12, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "received 12 of the 16"));
	ck_assert_ptr_nonnull(strstr(err.message, "tensor \"a\" is incomplete"));
	ck_assert_int_eq(count_entries(dir), 0);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(writer_abort_leaves_no_file)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_st_writer *writer;
	uc_error err;
	uint8_t data[16] = { 0 };
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, NULL, &writer, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_write(writer, data, 16, &err), UC_OK);
	uc_st_writer_abort(writer);
	uc_st_writer_abort(NULL);
	ck_assert_int_eq(count_entries(dir), 0);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(writer_rejects_extra_bytes)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_st_writer *writer;
	uc_error err;
	uint8_t data[17] = { 0 };
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, NULL, &writer, &err), UC_OK);
	ck_assert_int_eq(uc_st_writer_write(writer, data, 17, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "exceed the 16 data bytes"));
	ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_ERR_INVALID);
	ck_assert_int_eq(count_entries(dir), 0);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(writer_rejects_bad_arguments)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uc_st_writer *writer = NULL;
	uc_error err;
	const uc_tensor_view twice[] = { two_tensors[0], two_tensors[0] };
	ck_assert_int_eq(uc_st_writer_open(path, twice, 2, NULL, &writer, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"b\" is listed twice"));
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, "{\"n\": 1}", &writer, &err),
			 UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "values are all strings"));
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, "[", &writer, &err), UC_ERR_INVALID);
	uc_tensor_view invalid = two_tensors[0];
	const char *bad_names[] = { "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80" };
	for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
		invalid.name = bad_names[i];
		ck_assert_int_eq(uc_st_writer_open(path, &invalid, 1, NULL, &writer, &err),
				 UC_ERR_INVALID);
		ck_assert_ptr_nonnull(strstr(err.message, "is not valid UTF-8"));
	}
	invalid.name = "caf\xc3\xa9.\xf0\x9f\x98\x80";   /* valid two- and four-byte forms */
	ck_assert_int_eq(uc_st_writer_open(path, &invalid, 1, NULL, &writer, &err), UC_OK);
	uc_st_writer_abort(writer);
	writer = NULL;

	uc_tensor_view reserved = two_tensors[0];
	reserved.name = "__metadata__";
	ck_assert_int_eq(uc_st_writer_open(path, &reserved, 1, NULL, &writer, &err), UC_ERR_INVALID);
	ck_assert_ptr_null(writer);
	ck_assert_int_eq(count_entries(dir), 0);

	snprintf(path, sizeof path, "%s/missing/out.safetensors", dir);
	ck_assert_int_eq(uc_st_writer_open(path, two_tensors, 2, NULL, &writer, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "missing/out.safetensors"));
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(writer_survives_allocation_failures)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/out.safetensors", dir);
	uint8_t data[16] = { 0 };
	uc_status rc = UC_ERR_NOMEM;
	for (long n = 0; rc == UC_ERR_NOMEM; n++) {
		uc_st_writer *writer = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		rc = uc_st_writer_open(path, two_tensors, 2, "{\"k\": \"v\"}", &writer, &err);
		if (rc == UC_OK)
			rc = uc_st_writer_write(writer, data, 16, &err);
		if (rc == UC_OK)
			rc = uc_st_writer_commit(writer, &err);
		else
			uc_st_writer_abort(writer);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(rc == UC_OK || rc == UC_ERR_NOMEM, "allocation %ld: %s", n, err.message);
		if (rc == UC_ERR_NOMEM)
			ck_assert_int_eq(count_entries(dir), 0);
	}
	ck_assert_int_eq(count_entries(dir), 1);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("safetensors");
	TCase *tc = tcase_create("safetensors");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fixtures_match_expected);
	tcase_add_test(tc, huge_length_allocates_nothing);
	tcase_add_test(tc, parse_survives_allocation_failures);
	tcase_add_test(tc, real_file_tensors_and_metadata);
	tcase_add_test(tc, to_f32_converts_exactly);
	tcase_add_test(tc, writer_round_trip);
	tcase_add_test(tc, writer_header_layout);
	tcase_add_test(tc, writer_missing_bytes_leave_no_file);
	tcase_add_test(tc, writer_abort_leaves_no_file);
	tcase_add_test(tc, writer_rejects_extra_bytes);
	tcase_add_test(tc, writer_rejects_bad_arguments);
	tcase_add_test(tc, writer_survives_allocation_failures);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
