/* The RWKV v5 forward pass against rwkv.cpp's expected logits and the reference
 * byte-level perplexity. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "testutil.h"

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

/* Feeds `"in` from a zeroed state and compares the 256 logits with rwkv.cpp's. */
static void check_expected_logits(const char *model_file, const char *logits_file)
{
	uc_error err;
	eval_model *model = load_model(model_file);
	eval_state *state = NULL;
	ck_assert_int_eq(eval_state_new(model, 0, &state, &err), UC_OK);
	const float *logits = NULL;
	const uint32_t input[] = {0x22, 0x69, 0x6e};
	for (size_t i = 0; i < 3; i++)
		logits = eval_state_step(state, input[i]);

	size_t len = 0;
	uint8_t *expected = tu_read_file(tu_data_path(logits_file), &len);
	ck_assert_uint_eq(len, 256 * sizeof(float));
	double worst = 0.0;
	for (size_t i = 0; i < 256; i++) {
		float value;
		memcpy(&value, expected + 4 * i, sizeof value);
		double diff = fabs((double)value - (double)logits[i]);
		if (diff > worst)
			worst = diff;
	}
	ck_assert_msg(worst <= 1e-4, "%s: max abs logit difference %g", model_file, worst);
	free(expected);
	eval_state_free(state);
	eval_model_free(model);
}

START_TEST(rwkv5_2_expected_logits)
{
	check_expected_logits("tiny-rwkv-5v2-730K.safetensors", "expected-logits-5v2-730K.bin");
}
END_TEST

START_TEST(rwkv5_1_expected_logits)
{
	check_expected_logits("tiny-rwkv-5v1-730K.safetensors", "expected-logits-5v1-730K.bin");
}
END_TEST

START_TEST(rwkvcpp_files_expected_logits)
{
	check_expected_logits("tiny-rwkv-5v2-730K-FP32.bin", "expected-logits-5v2-730K.bin");
	check_expected_logits("tiny-rwkv-5v1-730K-FP32.bin", "expected-logits-5v1-730K.bin");
}
END_TEST

START_TEST(rwkv_versions_detected)
{
	eval_model *v2 = load_model("tiny-rwkv-5v2-730K.safetensors");
	eval_model *v1 = load_model("tiny-rwkv-5v1-730K.safetensors");
	ck_assert_int_eq(eval_model_arch(v2), EVAL_ARCH_RWKV5_2);
	ck_assert_int_eq(eval_model_arch(v1), EVAL_ARCH_RWKV5_1);
	ck_assert_uint_eq(eval_model_vocab_size(v2), 256);
	ck_assert_uint_eq(eval_model_max_seq_len(v2), 0);
	ck_assert_str_eq(eval_arch_comparator(EVAL_ARCH_RWKV5_1), "architecture-compatible");
	eval_model_free(v2);
	eval_model_free(v1);
}
END_TEST

START_TEST(rwkv5_2_reference_perplexity)
{
	uc_error err;
	eval_model *model = load_model("tiny-rwkv-5v2-730K.safetensors");
	eval_corpus *corpus = NULL;
	eval_token_set set;
	eval_score score;
	eval_options options = {.threads = 2};
	ck_assert_int_eq(eval_corpus_load(tu_data_path("tinystories_sample.txt"), &corpus, &err),
			 UC_OK);
	ck_assert_int_eq(eval_token_set_encode(corpus, NULL, &set, &err), UC_OK);
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_OK);
	ck_assert_uint_eq(score.scored, 3712);
	double ppl = eval_score_ppl(&score);
	ck_assert_msg(fabs(ppl / 6.5884 - 1.0) < 1e-3, "PPL %.6f, expected 6.5884", ppl);
	double mean_nll = score.nll_sum / (double)score.scored;
	ck_assert_msg(fabs(mean_nll / 1.885316 - 1.0) < 1e-3, "mean NLL %.6f", mean_nll);
	eval_token_set_free(&set);
	eval_corpus_free(corpus);
	eval_model_free(model);
}
END_TEST

START_TEST(rwkv_state_reset_repeats)
{
	uc_error err;
	eval_model *model = load_model("tiny-rwkv-5v1-730K.safetensors");
	eval_state *state = NULL;
	float first[256];
	ck_assert_int_eq(eval_state_new(model, 0, &state, &err), UC_OK);
	eval_state_step(state, 'a');
	memcpy(first, eval_state_step(state, 'b'), sizeof first);
	eval_state_reset(state);
	eval_state_step(state, 'a');
	const float *again = eval_state_step(state, 'b');
	ck_assert_mem_eq(first, again, sizeof first);
	eval_state_free(state);
	eval_model_free(model);
}
END_TEST

START_TEST(rwkv_misshapen_tensor_named)
{
	uc_error err;
	uc_source *source = NULL;
	eval_weights *weights = NULL, *copy = NULL;
	eval_model *model = NULL;
	ck_assert_int_eq(uc_source_open(tu_data_path("tiny-rwkv-5v1-730K.safetensors"), &source,
					&err), UC_OK);
	ck_assert_int_eq(eval_weights_from_source(source, &weights, &err), UC_OK);
	uc_source_close(source);

	/* Copy every tensor, giving blocks.3.ffn.value.weight a transposed shape. */
	ck_assert_int_eq(eval_weights_new(&copy, &err), UC_OK);
	for (size_t i = 0; i < eval_weights_count(weights); i++) {
		const eval_tensor *tensor = eval_weights_at(weights, i);
		uint64_t shape[UC_MAX_DIMS];
		memcpy(shape, tensor->shape, sizeof shape);
		if (strcmp(tensor->name, "blocks.3.ffn.value.weight") == 0) {
			shape[0] = tensor->shape[1];
			shape[1] = tensor->shape[0];
		}
		eval_tensor *added;
		ck_assert_int_eq(eval_weights_add(copy, tensor->name, tensor->ndim, shape, &added, &err),
				 UC_OK);
		memcpy(added->data, tensor->data, tensor->n_elements * sizeof(float));
	}
	eval_weights_free(weights);
	ck_assert_int_eq(eval_model_new(copy, &model, &err), UC_ERR_FORMAT);
	ck_assert_msg(strstr(err.message, "blocks.3.ffn.value.weight has shape [256, 64], expected "
				       "[64, 256]") != NULL, "%s", err.message);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("eval_rwkv");
	TCase *tc = tcase_create("rwkv");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, rwkv5_2_expected_logits);
	tcase_add_test(tc, rwkv5_1_expected_logits);
	tcase_add_test(tc, rwkvcpp_files_expected_logits);
	tcase_add_test(tc, rwkv_versions_detected);
	tcase_add_test(tc, rwkv5_2_reference_perplexity);
	tcase_add_test(tc, rwkv_state_reset_repeats);
	tcase_add_test(tc, rwkv_misshapen_tensor_named);
	suite_add_tcase(suite, tc);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
