/* The legacy llama2.c checkpoint reader, against stories260K and malformed headers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_table.h"
#include "source_internal.h"
#include "testutil.h"
#include "uc.h"

static uc_status parse_fixture(const char *path, uc_error *err)
{
	size_t len;
	uint8_t *bytes = tu_read_file(path, &len);
	ucp_parsed_file *parsed = NULL;
	uc_status rc = ucp_llama2c_parse(bytes, len, &parsed, err);
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
	size_t checked = ft_run_directory("llama2c", ".bin", parse_fixture);
	ck_assert_uint_ge(checked, 20);
}
END_TEST

START_TEST(stories_matches_safetensors)
{
	uc_source *bin, *st;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.bin"), &bin, &err), UC_OK);
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &st, &err), UC_OK);
	ck_assert_int_eq(uc_source_get_kind(bin), UC_SOURCE_LLAMA2C);
	ck_assert_uint_eq(uc_source_tensor_count(bin), uc_source_tensor_count(st));

	for (size_t i = 0; i < uc_source_tensor_count(bin); i++) {
		const uc_tensor_view *a = uc_source_tensor(bin, i);
		const uc_tensor_view *b = uc_source_find(st, a->name);
		ck_assert_msg(b != NULL, "%s is not in stories260K.safetensors", a->name);
		ck_assert_int_eq(a->dtype, UC_DTYPE_F32);
		ck_assert_uint_eq(a->ndim, b->ndim);
		ck_assert_mem_eq(a->shape, b->shape, sizeof a->shape);
		ck_assert_uint_eq(a->n_elements, b->n_elements);
		ck_assert_uint_eq(a->nbytes, b->nbytes);
		ck_assert_msg(memcmp(a->data, b->data, a->nbytes) == 0, "%s differs", a->name);
	}
	uc_source_close(st);
	uc_source_close(bin);
}
END_TEST

START_TEST(stories_shapes_and_names)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.bin"), &src, &err), UC_OK);
	const uc_tensor_view *wk = uc_source_find(src, "layers.2.attention.wk.weight");
	ck_assert_ptr_nonnull(wk);
	ck_assert_uint_eq(wk->shape[0], 32);   /* n_kv_heads 4 * head_size 8 */
	ck_assert_uint_eq(wk->shape[1], 64);
	const uc_tensor_view *w2 = uc_source_find(src, "layers.0.feed_forward.w2.weight");
	ck_assert_uint_eq(w2->shape[0], 64);
	ck_assert_uint_eq(w2->shape[1], 172);
	ck_assert_str_eq(uc_source_tensor(src, 0)->name, "tok_embeddings.weight");
	ck_assert_str_eq(uc_source_tensor(src, 46)->name, "norm.weight");

	/* The classifier is shared with the embedding, and the RoPE tables are computed, not
	 * trained, so neither is exposed. */
	ck_assert_ptr_null(uc_source_find(src, "output.weight"));
	ck_assert_ptr_null(uc_source_find(src, "freq_cis_real"));
	ck_assert_ptr_null(uc_source_find(src, "freq_cis_imag"));
	uc_source_close(src);
}
END_TEST

START_TEST(config_matches_safetensors)
{
	uc_source *bin, *st;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.bin"), &bin, &err), UC_OK);
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &st, &err), UC_OK);
	ck_assert_str_eq(uc_source_metadata(bin, "config"), uc_source_metadata(st, "config"));
	ck_assert_ptr_null(uc_source_metadata(bin, "source"));
	uc_source_close(st);
	uc_source_close(bin);
}
END_TEST

START_TEST(separate_classifier_exposed)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_fixture_path("llama2c/ok_separate_classifier.bin"), &src,
					&err),
			 UC_OK);
	const uc_tensor_view *output = uc_source_find(src, "output.weight");
	ck_assert_ptr_nonnull(output);
	ck_assert_uint_eq(output->shape[0], 16);
	ck_assert_uint_eq(output->shape[1], 8);
	ck_assert_ptr_eq(output, uc_source_tensor(src, uc_source_tensor_count(src) - 1));
	ck_assert_ptr_nonnull(strstr(uc_source_metadata(src, "config"),
				     "\"vocab_size\": 16, \"max_seq_len\": 4, "
				     "\"shared_classifier\": false"));
	uc_source_close(src);
}
END_TEST

START_TEST(versioned_format_unsupported)
{
	uc_source *src;
	uc_error err;
	const char *path = tu_fixture_path("llama2c/versioned_magic.bin");
	ck_assert_int_eq(uc_source_open(path, &src, &err), UC_ERR_UNSUPPORTED);
	ck_assert_ptr_nonnull(strstr(err.message, "versioned_magic.bin"));
	ck_assert_ptr_nonnull(strstr(err.message, "\"ak42\""));
}
END_TEST

START_TEST(parse_survives_allocation_failures)
{
	size_t len;
	uint8_t *bytes = tu_read_file(tu_data_path("stories260K.bin"), &len);
	uc_status rc = UC_ERR_NOMEM;
	long n;
	for (n = 0; rc == UC_ERR_NOMEM; n++) {
		ucp_parsed_file *parsed = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		rc = ucp_llama2c_parse(bytes, len, &parsed, &err);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(rc == UC_OK || rc == UC_ERR_NOMEM, "allocation %ld: %s", n, err.message);
		ucp_parsed_file_free(parsed);
	}
	ck_assert_int_eq(rc, UC_OK);
	ck_assert_int_gt(n, 47);
	free(bytes);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("llama2c");
	TCase *tc = tcase_create("llama2c");
	tcase_add_test(tc, fixtures_match_expected);
	tcase_add_test(tc, stories_matches_safetensors);
	tcase_add_test(tc, stories_shapes_and_names);
	tcase_add_test(tc, config_matches_safetensors);
	tcase_add_test(tc, separate_classifier_exposed);
	tcase_add_test(tc, versioned_format_unsupported);
	tcase_add_test(tc, parse_survives_allocation_failures);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
