/* Error records, allocation fault injection and SHA-256 helpers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"
#include "uc.h"

START_TEST(status_names_stable)
{
	ck_assert_str_eq(uc_status_name(UC_OK), "ok");
	ck_assert_str_eq(uc_status_name(UC_ERR_FORMAT), "format");
	ck_assert_str_eq(uc_status_name(UC_ERR_MISMATCH), "mismatch");
	ck_assert_str_eq(uc_status_name((uc_status)999), "unknown");
}
END_TEST

START_TEST(fail_sets_message)
{
	uc_error err;
	uc_error_clear(&err);
	ck_assert_int_eq(ucp_fail(&err, UC_ERR_FORMAT, "tensor %s: bad offset %d", "w", 8), UC_ERR_FORMAT);
	ck_assert_int_eq(err.status, UC_ERR_FORMAT);
	ck_assert_str_eq(err.message, "tensor w: bad offset 8");
	ucp_error_prefix(&err, "%s", "model.safetensors");
	ck_assert_str_eq(err.message, "model.safetensors: tensor w: bad offset 8");
	ck_assert_int_eq(ucp_fail(NULL, UC_ERR_IO, "ignored"), UC_ERR_IO);
}
END_TEST

START_TEST(allocation_hook_fails_nth)
{
	uc_test_fail_allocations_after(2);
	void *a = ucp_malloc(8);
	void *b = ucp_malloc(8);
	void *c = ucp_malloc(8);
	uc_test_fail_allocations_after(-1);
	void *d = ucp_malloc(8);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_nonnull(b);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(d);
	ucp_free(a);
	ucp_free(b);
	ucp_free(d);
}
END_TEST

START_TEST(overflow_helpers)
{
	size_t s;
	uint64_t u;
	ck_assert_int_eq(ucp_mul_size(SIZE_MAX / 2, 3, &s), -1);
	ck_assert_int_eq(ucp_mul_size(6, 7, &s), 0);
	ck_assert_uint_eq(s, 42);
	ck_assert_int_eq(ucp_add_u64(UINT64_MAX, 1, &u), -1);
}
END_TEST

START_TEST(sha256_empty_and_hex)
{
	uint8_t digest[32], parsed[32];
	char hex[65];
	uc_sha256_buffer("", 0, digest);
	uc_sha256_to_hex(digest, hex);
	ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	ck_assert_int_eq(uc_sha256_from_hex(hex, parsed), 0);
	ck_assert_mem_eq(parsed, digest, 32);

	hex[0] = 'E';
	ck_assert_int_eq(uc_sha256_from_hex(hex, parsed), -1);
	ck_assert_int_eq(uc_sha256_from_hex("abc", parsed), -1);
}
END_TEST

START_TEST(sha256_file_matches_known)
{
	uint8_t digest[32];
	uint64_t size = 0;
	char hex[65];
	uc_error err;
	ck_assert_int_eq(uc_sha256_file(tu_data_path("tok512.bin"), digest, &size, &err), UC_OK);
	uc_sha256_to_hex(digest, hex);
	ck_assert_str_eq(hex, "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312");
	ck_assert_uint_eq(size, 6227);

	ck_assert_int_eq(uc_sha256_file("/nonexistent/x", digest, &size, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/x"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("base");
	TCase *tc = tcase_create("base");
	tcase_add_test(tc, status_names_stable);
	tcase_add_test(tc, fail_sets_message);
	tcase_add_test(tc, allocation_hook_fails_nth);
	tcase_add_test(tc, overflow_helpers);
	tcase_add_test(tc, sha256_empty_and_hex);
	tcase_add_test(tc, sha256_file_matches_known);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
