/* The Llama forward pass against stories260K: reference perplexity, greedy decoding, both
 * source formats, and rejected weight sets. */
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

static eval_score score_sample(const eval_model *model, unsigned threads)
{
	uc_error err;
	eval_tokenizer *tokenizer = NULL;
	eval_corpus *corpus = NULL;
	eval_token_set set;
	eval_score score;
	eval_options options = {.threads = threads};
	ck_assert_int_eq(eval_tokenizer_load(tu_data_path("tok512.bin"), &tokenizer, &err), UC_OK);
	ck_assert_int_eq(eval_corpus_load(tu_data_path("tinystories_sample.txt"), &corpus, &err),
			 UC_OK);
	ck_assert_int_eq(eval_token_set_encode(corpus, tokenizer, &set, &err), UC_OK);
	ck_assert_msg(eval_score_tokens(model, &set, &options, &score, &err) == UC_OK, "%s",
		      err.message);
	eval_token_set_free(&set);
	eval_corpus_free(corpus);
	eval_tokenizer_free(tokenizer);
	return score;
}

START_TEST(llama_config_from_safetensors)
{
	eval_model *model = load_model("stories260K.safetensors");
	ck_assert_int_eq(eval_model_arch(model), EVAL_ARCH_LLAMA);
	ck_assert_uint_eq(eval_model_vocab_size(model), 512);
	ck_assert_uint_eq(eval_model_max_seq_len(model), 512);
	ck_assert_str_eq(eval_arch_comparator(eval_model_arch(model)), "canonical-transformer");
	eval_model_free(model);
}
END_TEST

START_TEST(llama_reference_perplexity)
{
	eval_model *model = load_model("stories260K.safetensors");
	eval_score score = score_sample(model, 2);
	ck_assert_uint_eq(score.scored, 1804);
	ck_assert_uint_eq(score.documents, 5);
	double ppl = eval_score_ppl(&score);
	ck_assert_msg(fabs(ppl / 3.548 - 1.0) < 1e-3, "PPL %.6f, expected 3.548", ppl);
	double mean_nll = score.nll_sum / (double)score.scored;
	ck_assert_msg(fabs(mean_nll / 1.2664 - 1.0) < 1e-3, "mean NLL %.6f, expected 1.2664",
		      mean_nll);
	eval_model_free(model);
}
END_TEST

START_TEST(llama_greedy_decode)
{
	static const uint32_t expected[] = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298};
	uc_error err;
	eval_model *model = load_model("stories260K.safetensors");
	eval_state *state = NULL;
	ck_assert_int_eq(eval_state_new(model, 0, &state, &err), UC_OK);
	uint32_t token = EVAL_BOS_TOKEN;
	for (size_t step = 0; step < sizeof expected / sizeof expected[0]; step++) {
		const float *logits = eval_state_step(state, token);
		uint32_t best = 0;
		for (uint32_t i = 1; i < eval_model_vocab_size(model); i++)
			if (logits[i] > logits[best])
				best = i;
		ck_assert_msg(best == expected[step], "step %zu: token %u, expected %u", step, best,
			      expected[step]);
		token = best;
	}
	eval_state_free(state);
	eval_model_free(model);
}
END_TEST

START_TEST(llama2c_checkpoint_same_perplexity)
{
	eval_model *from_st = load_model("stories260K.safetensors");
	eval_model *from_bin = load_model("stories260K.bin");
	eval_score a = score_sample(from_st, 1);
	eval_score b = score_sample(from_bin, 1);
	ck_assert_uint_eq(a.scored, b.scored);
	ck_assert_msg(a.nll_sum == b.nll_sum, "NLL sums differ: %.9f and %.9f", a.nll_sum,
		      b.nll_sum);
	eval_model_free(from_st);
	eval_model_free(from_bin);
}
END_TEST

START_TEST(llama_thread_count_invariant)
{
	eval_model *model = load_model("stories260K.safetensors");
	eval_score one = score_sample(model, 1);
	eval_score two = score_sample(model, 2);
	eval_score three = score_sample(model, 3);
	ck_assert_msg(one.nll_sum == two.nll_sum, "1 and 2 threads differ");
	ck_assert_msg(one.nll_sum == three.nll_sum, "1 and 3 threads differ");
	eval_model_free(model);
}
END_TEST

/* Builds a tiny Llama weight set: dim 4, one layer, hidden size 6, vocabulary 260. */
static eval_weights *tiny_llama(const char *skip, const char *config)
{
	uc_error err;
	eval_weights *weights = NULL;
	ck_assert_int_eq(eval_weights_new(&weights, &err), UC_OK);
	const uint64_t embedding[] = {260, 4}, vector[] = {4}, square[] = {4, 4}, up[] = {6, 4},
		       down[] = {4, 6};
	struct {
		const char *name;
		uint32_t ndim;
		const uint64_t *shape;
	} table[] = {
		{"tok_embeddings.weight", 2, embedding},
		{"layers.0.attention_norm.weight", 1, vector},
		{"layers.0.attention.wq.weight", 2, square},
		{"layers.0.attention.wk.weight", 2, square},
		{"layers.0.attention.wv.weight", 2, square},
		{"layers.0.attention.wo.weight", 2, square},
		{"layers.0.ffn_norm.weight", 1, vector},
		{"layers.0.feed_forward.w1.weight", 2, up},
		{"layers.0.feed_forward.w2.weight", 2, down},
		{"layers.0.feed_forward.w3.weight", 2, up},
		{"norm.weight", 1, vector},
	};
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
		if (skip && strcmp(skip, table[i].name) == 0)
			continue;
		eval_tensor *tensor;
		ck_assert_int_eq(eval_weights_add(weights, table[i].name, table[i].ndim,
						  table[i].shape, &tensor, &err), UC_OK);
		for (uint64_t j = 0; j < tensor->n_elements; j++)
			tensor->data[j] = (float)((j * 7919) % 13) / 13.0f - 0.5f;
	}
	if (config)
		ck_assert_int_eq(eval_weights_set_config(weights, config, &err), UC_OK);
	return weights;
}

START_TEST(llama_built_weights_run)
{
	uc_error err;
	eval_model *model = NULL;
	eval_state *state = NULL;
	ck_assert_int_eq(eval_model_new(tiny_llama(NULL, "{\"n_heads\": 2, \"seq_len\": 8}"), &model,
					&err), UC_OK);
	ck_assert_uint_eq(eval_model_max_seq_len(model), 8);
	ck_assert_int_eq(eval_state_new(model, 0, &state, &err), UC_OK);
	for (uint32_t pos = 0; pos < 8; pos++) {
		const float *logits = eval_state_step(state, pos);
		for (uint32_t i = 0; i < 260; i++)
			ck_assert_msg(isfinite(logits[i]), "position %u, logit %u", pos, i);
	}
	eval_state_free(state);
	eval_model_free(model);
}
END_TEST

static void expect_rejected(eval_weights *weights, uc_status status, const char *fragment)
{
	uc_error err;
	eval_model *model = (eval_model *)&err;
	ck_assert_int_eq(eval_model_new(weights, &model, &err), status);
	ck_assert_ptr_null(model);
	ck_assert_msg(strstr(err.message, fragment) != NULL, "message \"%s\" lacks \"%s\"",
		      err.message, fragment);
}

START_TEST(llama_missing_tensor_named)
{
	expect_rejected(tiny_llama("layers.0.attention.wv.weight", "{\"n_heads\": 2, \"seq_len\": 8}"),
			UC_ERR_FORMAT, "layers.0.attention.wv.weight is missing");
}
END_TEST

START_TEST(llama_missing_config_rejected)
{
	expect_rejected(tiny_llama(NULL, NULL), UC_ERR_FORMAT, "no model configuration");
	expect_rejected(tiny_llama(NULL, "{\"seq_len\": 8}"), UC_ERR_FORMAT, "\"n_heads\" is missing");
	expect_rejected(tiny_llama(NULL, "[1]"), UC_ERR_FORMAT, "not a JSON object");
}
END_TEST

START_TEST(llama_bad_heads_rejected)
{
	expect_rejected(tiny_llama(NULL, "{\"n_heads\": 3, \"seq_len\": 8}"), UC_ERR_FORMAT,
			"dim 4 is not divisible into 3 heads");
	expect_rejected(tiny_llama(NULL, "{\"n_heads\": 2, \"n_kv_heads\": 1, \"seq_len\": 8}"),
			UC_ERR_FORMAT, "attention.wk.weight has 4 rows");
	expect_rejected(tiny_llama(NULL, "{\"n_heads\": 2, \"seq_len\": 0}"), UC_ERR_FORMAT,
			"\"seq_len\" must be an integer");
	expect_rejected(tiny_llama(NULL, "{\"n_heads\": 2, \"seq_len\": 8, \"dim\": 6}"),
			UC_ERR_FORMAT, "\"dim\" is 6 but the tensors give 4");
}
END_TEST

START_TEST(unknown_architecture_rejected)
{
	uc_error err;
	eval_weights *weights = NULL;
	eval_tensor *tensor;
	const uint64_t shape[] = {2};
	ck_assert_int_eq(eval_weights_new(&weights, &err), UC_OK);
	ck_assert_int_eq(eval_weights_add(weights, "encoder.weight", 1, shape, &tensor, &err), UC_OK);
	ck_assert_int_eq(eval_weights_add(weights, "encoder.weight", 1, shape, &tensor, &err),
			 UC_ERR_INVALID);
	expect_rejected(weights, UC_ERR_UNSUPPORTED, "unknown architecture");
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("eval_llama");
	TCase *tc = tcase_create("llama");
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, llama_config_from_safetensors);
	tcase_add_test(tc, llama_reference_perplexity);
	tcase_add_test(tc, llama_greedy_decode);
	tcase_add_test(tc, llama2c_checkpoint_same_perplexity);
	tcase_add_test(tc, llama_thread_count_invariant);
	tcase_add_test(tc, llama_built_weights_run);
	tcase_add_test(tc, llama_missing_tensor_named);
	tcase_add_test(tc, llama_missing_config_rejected);
	tcase_add_test(tc, llama_bad_heads_rejected);
	tcase_add_test(tc, unknown_architecture_rejected);
	suite_add_tcase(suite, tc);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
