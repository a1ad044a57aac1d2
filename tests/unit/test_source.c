/* uc_source_open: kind detection, sharded checkpoints through their index, and errors for
 * files in no supported format. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture_table.h"
#include "source_internal.h"
#include "testutil.h"
#include "uc.h"

static uc_status open_fixture(const char *path, uc_error *err)
{
	uc_source *src = NULL;
	uc_status rc = uc_source_open(path, &src, err);
	if (rc == UC_OK)
		ck_assert_ptr_nonnull(src);
	else
		ck_assert_ptr_null(src);
	uc_source_close(src);
	return rc;
}

START_TEST(index_fixtures_match_expected)
{
	size_t checked = ft_run_directory("index", "/model.safetensors.index.json", open_fixture);
	ck_assert_uint_ge(checked, 18);
}
END_TEST

START_TEST(index_fixture_order_and_metadata)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_fixture_path("index/ok_two_shards/"
							"model.safetensors.index.json"),
					&src, &err),
			 UC_OK);
	ck_assert_int_eq(uc_source_get_kind(src), UC_SOURCE_SAFETENSORS_INDEX);
	ck_assert_uint_eq(uc_source_tensor_count(src), 3);
	ck_assert_str_eq(uc_source_tensor(src, 0)->name, "x");
	ck_assert_str_eq(uc_source_tensor(src, 1)->name, "y");
	ck_assert_str_eq(uc_source_tensor(src, 2)->name, "z");
	float value;
	uc_tensor_to_f32(uc_source_find(src, "z"), 0, 1, &value);
	ck_assert_float_eq(value, 1.0f);
	uc_source_close(src);
}
END_TEST

/* Writes stories260K as three shards and an index into `dir`: shard k contains the tensors
 * whose position modulo 3 is k, so every shard has tensors from the whole model. */
static void write_sharded_stories(const uc_source *stories, const char *dir)
{
	size_t count = uc_source_tensor_count(stories);
	uc_tensor_view *views = calloc(count, sizeof *views);
	char path[4096];
	FILE *index;
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	index = fopen(path, "w");
	ck_assert_ptr_nonnull(index);
	fputs("{\"metadata\": {\"total_size\": 1040128}, \"weight_map\": {", index);

	for (int shard = 0; shard < 3; shard++) {
		size_t n = 0;
		for (size_t i = (size_t)shard; i < count; i += 3)
			views[n++] = *uc_source_tensor(stories, i);
		snprintf(path, sizeof path, "%s/model-%05d-of-00003.safetensors", dir, shard + 1);

		uc_st_writer *writer;
		uc_error err;
		const char *metadata = shard == 0 ? "{\"format\": \"pt\", \"shard\": \"first\"}" : NULL;
		ck_assert_int_eq(uc_st_writer_open(path, views, n, metadata, &writer, &err), UC_OK);
		for (size_t i = 0; i < n; i++) {
			ck_assert_int_eq(uc_st_writer_write(writer, views[i].data, views[i].nbytes, &err),
					 UC_OK);
			fprintf(index, "%s\"%s\": \"model-%05d-of-00003.safetensors\"",
				shard == 0 && i == 0 ? "" : ", ", views[i].name, shard + 1);
		}
		ck_assert_int_eq(uc_st_writer_commit(writer, &err), UC_OK);
	}
	fputs("}}\n", index);
	ck_assert_int_eq(fclose(index), 0);
	free(views);
}

START_TEST(sharded_stories_matches_original)
{
	uc_source *stories, *sharded;
	uc_error err;
	ck_assert_int_eq(uc_source_open(tu_data_path("stories260K.safetensors"), &stories, &err),
			 UC_OK);
	char *dir = tu_make_temp_dir();
	write_sharded_stories(stories, dir);

	char path[4096];
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	ck_assert_msg(uc_source_open(path, &sharded, &err) == UC_OK, "%s", err.message);
	ck_assert_int_eq(uc_source_get_kind(sharded), UC_SOURCE_SAFETENSORS_INDEX);
	ck_assert_uint_eq(uc_source_tensor_count(sharded), uc_source_tensor_count(stories));

	for (size_t i = 0; i < uc_source_tensor_count(stories); i++) {
		const uc_tensor_view *a = uc_source_tensor(stories, i);
		const uc_tensor_view *b = uc_source_find(sharded, a->name);
		ck_assert_msg(b != NULL, "%s missing from the sharded checkpoint", a->name);
		ck_assert_mem_eq(a->shape, b->shape, sizeof a->shape);
		ck_assert_uint_eq(a->nbytes, b->nbytes);
		ck_assert_mem_eq(a->data, b->data, a->nbytes);
	}
	/* Files in the order the index names them, file order within each. */
	ck_assert_str_eq(uc_source_tensor(sharded, 0)->name, uc_source_tensor(stories, 0)->name);
	ck_assert_str_eq(uc_source_tensor(sharded, 1)->name, uc_source_tensor(stories, 3)->name);
	ck_assert_str_eq(uc_source_metadata(sharded, "shard"), "first");

	uc_source_close(sharded);
	uc_source_close(stories);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(index_open_survives_allocation_failures)
{
	const char *fixture = tu_fixture_path("index/ok_two_shards/model.safetensors.index.json");
	char path[4096];
	snprintf(path, sizeof path, "%s", fixture);
	uc_status rc = UC_ERR_NOMEM;
	for (long n = 0; rc == UC_ERR_NOMEM; n++) {
		uc_source *src = NULL;
		uc_error err;
		uc_test_fail_allocations_after(n);
		rc = uc_source_open(path, &src, &err);
		uc_test_fail_allocations_after(-1);
		ck_assert_msg(rc == UC_OK || rc == UC_ERR_NOMEM, "allocation %ld: %s", n, err.message);
		uc_source_close(src);
	}
	ck_assert_int_eq(rc, UC_OK);
}
END_TEST

START_TEST(unknown_format_lists_tried)
{
	char *dir = tu_make_temp_dir();
	char path[4096];
	snprintf(path, sizeof path, "%s/notes.txt", dir);
	const char text[] = "these are not the weights you are looking for";
	tu_write_file(path, text, sizeof text - 1);

	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open(path, &src, &err), UC_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "notes.txt: not a checkpoint in any supported "
						  "format (tried a safetensors index, safetensors, "
						  "rwkv.cpp and a llama2.c legacy checkpoint)"));
	ck_assert_ptr_nonnull(strstr(err.message, "as safetensors, header length"));
	ck_assert_ptr_nonnull(strstr(err.message, "; as llama2.c, llama2.c "));

	tu_write_file(path, "", 0);
	ck_assert_int_eq(uc_source_open(path, &src, &err), UC_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "not a checkpoint in any supported format"));
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

/* An index that names 100000 distinct files is read in linear time, so the first missing
 * shard is reported at once. SIGALRM fails the test if listing the files is quadratic. */
START_TEST(index_of_many_files_fails_fast)
{
	char *dir = tu_make_temp_dir();
	char path[600];
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	FILE *index = fopen(path, "w");
	ck_assert_ptr_nonnull(index);
	fputs("{\"weight_map\": {", index);
	for (int i = 0; i < 100000; i++)
		fprintf(index, "%s\"t%d\": \"f%d.safetensors\"", i ? ", " : "", i, i);
	fputs("}}\n", index);
	ck_assert_int_eq(fclose(index), 0);

	alarm(5);
	uc_source *src = NULL;
	uc_error err;
	ck_assert_int_eq(uc_source_open(path, &src, &err), UC_ERR_IO);
	alarm(0);
	ck_assert_ptr_nonnull(strstr(err.message, "f0.safetensors: cannot open"));
	ck_assert_ptr_null(src);
	tu_remove_tree(dir);
	free(dir);
}
END_TEST

START_TEST(missing_path_is_io_error)
{
	uc_source *src;
	uc_error err;
	ck_assert_int_eq(uc_source_open("/nonexistent/model.safetensors", &src, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/model.safetensors"));
	ck_assert_ptr_null(src);
	ck_assert_int_eq(uc_source_open(tu_fixture_path("index"), &src, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "not a regular file"));
}
END_TEST

START_TEST(detects_each_kind)
{
	const struct {
		const char *path;
		int in_data_dir;
		uc_source_kind kind;
	} cases[] = {
		{ "stories260K.safetensors", 1, UC_SOURCE_SAFETENSORS },
		{ "stories260K.bin", 1, UC_SOURCE_LLAMA2C },
		{ "tiny-rwkv-5v2-730K-FP32.bin", 1, UC_SOURCE_RWKVCPP },
		{ "index/ok_two_shards/model.safetensors.index.json", 0, UC_SOURCE_SAFETENSORS_INDEX },
		/* A 123-byte header makes the first byte '{', as in a JSON index. */
		{ "safetensors/ok_header_length_123.safetensors", 0, UC_SOURCE_SAFETENSORS },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const char *path = cases[i].in_data_dir ? tu_data_path(cases[i].path)
							: tu_fixture_path(cases[i].path);
		uc_source *src;
		uc_error err;
		ck_assert_msg(uc_source_open(path, &src, &err) == UC_OK, "%s", err.message);
		ck_assert_msg(uc_source_get_kind(src) == cases[i].kind, "%s: kind %d", cases[i].path,
			      (int)uc_source_get_kind(src));
		uc_source_close(src);
	}
}
END_TEST

START_TEST(malformed_safetensors_names_file)
{
	uc_source *src;
	uc_error err;
	const char *path = tu_fixture_path("safetensors/offsets_overlap.safetensors");
	ck_assert_int_eq(uc_source_open(path, &src, &err), UC_ERR_FORMAT);
	ck_assert_ptr_nonnull(strstr(err.message, "offsets_overlap.safetensors: tensor"));
	ck_assert_ptr_nonnull(strstr(err.message, "overlaps"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("source");
	TCase *tc = tcase_create("source");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, index_fixtures_match_expected);
	tcase_add_test(tc, index_fixture_order_and_metadata);
	tcase_add_test(tc, sharded_stories_matches_original);
	tcase_add_test(tc, index_open_survives_allocation_failures);
	tcase_add_test(tc, unknown_format_lists_tried);
	tcase_add_test(tc, index_of_many_files_fails_fast);
	tcase_add_test(tc, missing_path_is_io_error);
	tcase_add_test(tc, detects_each_kind);
	tcase_add_test(tc, malformed_safetensors_names_file);
	suite_add_tcase(s, tc);

	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
