/* Perplexity of a pack's reconstruction: packs written here with uc_pack_write from the
 * real models, scored against their sources. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "testutil.h"
#include "uc_pack.h"

static char *scratch;

static void make_scratch(void)
{
	scratch = tu_make_temp_dir();
}

static void remove_scratch(void)
{
	tu_remove_tree(scratch);
	free(scratch);
}

/* Writes a bf16 pack of a data file into the scratch directory and returns its path, in a
 * static buffer. */
static const char *write_pack(const char *file, const char *family)
{
	static char path[512];
	uc_error err;
	uc_source *source = NULL;
	uc_pack_options options;
	snprintf(path, sizeof path, "%s/%s.pack", scratch, file);
	ck_assert_msg(uc_source_open(tu_data_path(file), &source, &err) == UC_OK, "%s", err.message);
	uc_pack_options_init(&options);
	options.family = family;
	options.dtype = UC_DTYPE_BF16;
	ck_assert_msg(uc_pack_write(source, path, &options, &err) == UC_OK, "%s", err.message);
	uc_source_close(source);
	return path;
}

static eval_model *load_model(const char *file)
{
	uc_error err;
	uc_source *source = NULL;
	eval_weights *weights = NULL;
	eval_model *model = NULL;
	ck_assert_msg(uc_source_open(tu_data_path(file), &source, &err) == UC_OK, "%s", err.message);
	ck_assert_msg(eval_weights_from_source(source, &weights, &err) == UC_OK, "%s", err.message);
	uc_source_close(source);
	ck_assert_msg(eval_model_new(weights, &model, &err) == UC_OK, "%s", err.message);
	return model;
}

START_TEST(pack_weights_close_to_source)
{
	uc_error err;
	const char *pack = write_pack("stories260K.safetensors", "dense");
	eval_model *model = load_model("stories260K.safetensors");
	eval_weights *packed = NULL;
	eval_pack_info info;
	ck_assert_msg(eval_weights_from_pack(pack, eval_model_weights(model), &packed, &info, &err) ==
		      UC_OK, "%s", err.message);
	ck_assert_int_eq(info.dtype, UC_DTYPE_BF16);

	const eval_weights *source = eval_model_weights(model);
	ck_assert_uint_eq(eval_weights_count(packed), eval_weights_count(source));
	const eval_tensor *a = eval_weights_find(source, "layers.2.feed_forward.w2.weight");
	const eval_tensor *b = eval_weights_find(packed, "layers.2.feed_forward.w2.weight");
	ck_assert_ptr_nonnull(b);
	double signal = 0.0, noise = 0.0;
	for (uint64_t i = 0; i < a->n_elements; i++) {
		signal += (double)a->data[i] * a->data[i];
		noise += ((double)a->data[i] - b->data[i]) * ((double)a->data[i] - b->data[i]);
	}
	ck_assert_msg(noise > 0.0, "a 5-bit pack reproduced the weights exactly");
	ck_assert_msg(10.0 * log10(signal / noise) > 20.0, "SQNR %.2f dB",
		      10.0 * log10(signal / noise));
	ck_assert_str_eq(eval_weights_config(packed), eval_weights_config(source));
	eval_weights_free(packed);
	eval_model_free(model);
}
END_TEST

START_TEST(pack_of_other_model_rejected)
{
	uc_error err;
	const char *pack = write_pack("tiny-rwkv-5v1-730K.safetensors", "recurrent");
	eval_model *model = load_model("stories260K.safetensors");
	eval_weights *packed = (eval_weights *)&err;
	eval_pack_info info;
	ck_assert_int_eq(eval_weights_from_pack(pack, eval_model_weights(model), &packed, &info, &err),
			 UC_ERR_STRUCTURE);
	ck_assert_ptr_null(packed);
	ck_assert_ptr_nonnull(strstr(err.message, pack));
	ck_assert_ptr_nonnull(strstr(err.message, "is the pack made from this source?"));
	eval_model_free(model);
}
END_TEST

/* Runs `uc eval --json` with stdout sent to a file and returns the parsed record. */
static json_t *run_json(char **argv, int argc)
{
	char path[512];
	snprintf(path, sizeof path, "%s/stdout.json", scratch);
	fflush(stdout);
	int saved = dup(1);
	ck_assert_ptr_nonnull(freopen(path, "w", stdout));
	int code = uc_cmd_eval(argc, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	ck_assert_int_eq(code, 0);
	json_error_t error;
	json_t *root = json_load_file(path, 0, &error);
	ck_assert_msg(root != NULL, "%s", error.text);
	return root;
}

START_TEST(command_measures_pack_ratio)
{
	char source[512], corpus[512], tokenizer[512], pack[512];
	snprintf(pack, sizeof pack, "%s", write_pack("stories260K.safetensors", "dense"));
	snprintf(source, sizeof source, "%s", tu_data_path("stories260K.safetensors"));
	snprintf(corpus, sizeof corpus, "%s", tu_data_path("tinystories_sample.txt"));
	snprintf(tokenizer, sizeof tokenizer, "%s", tu_data_path("tok512.bin"));
	char *argv[] = {"eval", "--source", source, "--pack", pack, "--corpus", corpus,
			"--tokenizer", tokenizer, "--json", "--threads", "2", NULL};
	json_t *root = run_json(argv, 12);

	double baseline = json_real_value(json_object_get(root, "baseline"));
	double compressed = json_real_value(json_object_get(root, "compressed"));
	double ratio = json_real_value(json_object_get(root, "ratio"));
	ck_assert_msg(fabs(baseline / 3.548 - 1.0) < 1e-3, "baseline %.6f", baseline);
	ck_assert_msg(compressed > baseline * 0.99 && compressed < baseline * 1.10,
		      "compressed %.6f, baseline %.6f", compressed, baseline);
	ck_assert_double_eq_tol(ratio, compressed / baseline, 1e-9);
	json_t *pack_value = json_object_get(root, "pack");
	ck_assert_str_eq(json_string_value(json_object_get(pack_value, "dtype")), "bf16");
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(pack_value, "manifest_sha256"))),
			  64);
	json_decref(root);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("eval_pack");
	TCase *tc = tcase_create("pack");
	tcase_set_timeout(tc, 300);
	tcase_add_checked_fixture(tc, make_scratch, remove_scratch);
	tcase_add_test(tc, pack_weights_close_to_source);
	tcase_add_test(tc, pack_of_other_model_rejected);
	tcase_add_test(tc, command_measures_pack_ratio);
	suite_add_tcase(suite, tc);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
