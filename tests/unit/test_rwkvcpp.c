/* The rwkv.cpp reader, against both tiny RWKV models and malformed files. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_table.h"
#include "source_internal.h"
#include "testutil.h"
#include "uc.h"

static uc_status open_fixture(const char *path, uc_error *err)
{
	uc_source *src = NULL;
	uc_status rc = uc_source_open(path, &src, err);
	if (rc == UC_OK)
		ck_assert_int_eq(uc_source_get_kind(src), UC_SOURCE_RWKVCPP);
	else
		ck_assert_ptr_null(src);
	uc_source_close(src);
	return rc;
}

START_TEST(fixtures_match_expected)
{
	size_t checked = ft_run_directory("rwkvcpp", ".bin", open_fixture);
	ck_assert_uint_ge(checked, 20);
}
END_TEST

/* Checks that every tensor of the rwkv.cpp file equals, in name, PyTorch-order shape and
 * bytes, the tensor of the safetensors conversion, and that both have the same number of tensors. */
static void check_model_pair(const char *bin_name, const char *st_name, size_t expected_count)
{
	uc_source *bin, *st;
	uc_error err;
	ck_assert_msg(uc_source_open(tu_data_path(bin_name), &bin, &err) == UC_OK, "%s", err.message);
	ck_assert_int_eq(uc_source_open(tu_data_path(st_name), &st, &err), UC_OK);
	ck_assert_int_eq(uc_source_get_kind(bin), UC_SOURCE_RWKVCPP);
	ck_assert_uint_eq(uc_source_tensor_count(bin), expected_count);
	ck_assert_uint_eq(uc_source_tensor_count(st), expected_count);

	for (size_t i = 0; i < expected_count; i++) {
		const uc_tensor_view *a = uc_source_tensor(bin, i);
		const uc_tensor_view *b = uc_source_find(st, a->name);
		ck_assert_msg(b != NULL, "%s is not in %s", a->name, st_name);
		ck_assert_int_eq(a->dtype, b->dtype);
		ck_assert_uint_eq(a->ndim, b->ndim);
		ck_assert_mem_eq(a->shape, b->shape, sizeof a->shape);
		ck_assert_uint_eq(a->nbytes, b->nbytes);
		ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "%s differs", a->name);
	}
	ck_assert_str_eq(uc_source_metadata(bin, "config"), uc_source_metadata(st, "config"));
	uc_source_close(st);
	uc_source_close(bin);
}

START_TEST(rwkv_5v2_matches_safetensors)
{
	check_model_pair("tiny-rwkv-5v2-730K-FP32.bin", "tiny-rwkv-5v2-730K.safetensors", 270);
}
END_TEST

START_TEST(rwkv_5v1_matches_safetensors)
{
	check_model_pair("tiny-rwkv-5v1-730K-FP32.bin", "tiny-rwkv-5v1-730K.safetensors", 246);
}
END_TEST

START_TEST(shapes_in_pytorch_order)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("tiny-rwkv-5v2-730K-FP32.bin"), &src, &err),
			 UC_OK);
	const uc_tensor_view *emb = uc_source_tensor(src, 0);
	ck_assert_str_eq(emb->name, "emb.weight");
	ck_assert_uint_eq(emb->shape[0], 256);   /* ggml lists it as [64, 256] */
	ck_assert_uint_eq(emb->shape[1], 64);
	const uc_tensor_view *decay = uc_source_find(src, "blocks.0.att.time_decay");
	ck_assert_uint_eq(decay->ndim, 3);
	ck_assert_uint_eq(decay->shape[0], 8);
	ck_assert_uint_eq(decay->shape[1], 8);
	ck_assert_uint_eq(decay->shape[2], 1);
	uc_source_close(src);
}
END_TEST

START_TEST(fp16_fixture_reads)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_fixture_path("rwkvcpp/ok_fp16.bin"), &src, &err), UC_OK);
	const uc_tensor_view *emb = uc_source_find(src, "emb.weight");
	ck_assert_int_eq(emb->dtype, UC_DTYPE_F16);
	ck_assert_uint_eq(emb->nbytes, 16);
	ck_assert_int_eq(uc_source_find(src, "ln_out.weight")->dtype, UC_DTYPE_F32);
	ck_assert_str_eq(uc_source_metadata(src, "config"),
			 "{\"magic\": \"0x67676d66\", \"version\": 101, \"n_vocab\": 4, "
			 "\"n_embed\": 2, \"n_layer\": 1, \"data_type\": 1}");
	uc_source_close(src);
}
END_TEST

START_TEST(parse_survives_allocation_failures)
{
	size_t len;
	uint8_t *bytes = tu_read_file(tu_data_path("tiny-rwkv-5v1-730K-FP32.bin"), &len);
	uc_status rc = UC_ERR_NOMEM;
	long n;
	for (n = 0; rc == UC_ERR_NOMEM; n++) {
		ucp_parsed_file *parsed = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		rc = ucp_rwkvcpp_parse(bytes, len, &parsed, &err);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(rc == UC_OK || rc == UC_ERR_NOMEM, "allocation %ld: %s", n, err.message);
		ucp_parsed_file_free(parsed);
	}
	ck_assert_int_eq(rc, UC_OK);
	ck_assert_int_gt(n, 246);
	free(bytes);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("rwkvcpp");
	TCase *tc = tcase_create("rwkvcpp");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fixtures_match_expected);
	tcase_add_test(tc, rwkv_5v2_matches_safetensors);
	tcase_add_test(tc, rwkv_5v1_matches_safetensors);
	tcase_add_test(tc, shapes_in_pytorch_order);
	tcase_add_test(tc, fp16_fixture_reads);
	tcase_add_test(tc, parse_survives_allocation_failures);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
