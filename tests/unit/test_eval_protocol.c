/* The scoring protocol: window plans, the sums over runs, option checks, the evaluation
 * record and the command line of `uc eval`. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval.h"
#include "model.h"
#include "testutil.h"

static size_t scored_predictions(const eval_window *windows, size_t count)
{
	size_t total = 0;
	for (size_t i = 0; i < count; i++)
		total += windows[i].end - windows[i].score_from;
	return total;
}

/* Checks that every prediction 0 .. tokens - 2 is scored exactly once, that runs fit the
 * window and that each scored prediction lies inside its run. */
static void assert_plan_covers(size_t tokens, uint32_t window, uint32_t stride)
{
	eval_window windows[64];
	size_t count = eval_plan_windows(tokens, window, stride, windows, 64);
	ck_assert_uint_le(count, 64);
	unsigned char seen[256] = {0};
	for (size_t i = 0; i < count; i++) {
		ck_assert_uint_le(windows[i].start, windows[i].score_from);
		ck_assert_uint_lt(windows[i].score_from, windows[i].end);
		ck_assert_uint_le(windows[i].end - windows[i].start, window);
		for (size_t pos = windows[i].score_from; pos < windows[i].end; pos++)
			seen[pos]++;
	}
	for (size_t pos = 0; pos + 1 < tokens; pos++)
		ck_assert_msg(seen[pos] == 1, "%zu tokens, window %u, stride %u: prediction %zu "
			      "scored %u times", tokens, window, stride, pos, seen[pos]);
	ck_assert_uint_eq(seen[tokens - 1], 0);
}

START_TEST(windows_without_overlap)
{
	eval_window windows[8];
	size_t count = eval_plan_windows(9, 4, 4, windows, 8);
	ck_assert_uint_eq(count, 2);
	ck_assert_uint_eq(scored_predictions(windows, count), 8);
	ck_assert_uint_eq(windows[0].start, 0);
	ck_assert_uint_eq(windows[0].end, 4);
	ck_assert_uint_eq(windows[1].start, 4);
	ck_assert_uint_eq(windows[1].score_from, 4);
	ck_assert_uint_eq(windows[1].end, 8);
}
END_TEST

START_TEST(windows_with_overlap)
{
	eval_window windows[8];
	size_t count = eval_plan_windows(9, 4, 2, windows, 8);
	ck_assert_uint_eq(count, 3);
	ck_assert_uint_eq(scored_predictions(windows, count), 8);
	ck_assert_uint_eq(windows[1].start, 2);
	ck_assert_uint_eq(windows[1].score_from, 4);
	ck_assert_uint_eq(windows[1].end, 6);
}
END_TEST

START_TEST(windows_cover_every_prediction)
{
	for (size_t tokens = 2; tokens < 40; tokens++)
		for (uint32_t window = 2; window < 9; window++)
			for (uint32_t stride = 1; stride <= window; stride++)
				assert_plan_covers(tokens, window, stride);
}
END_TEST

START_TEST(windows_short_documents)
{
	eval_window windows[4];
	ck_assert_uint_eq(eval_plan_windows(0, 4, 4, windows, 4), 0);
	ck_assert_uint_eq(eval_plan_windows(1, 0, 0, windows, 4), 0);
	ck_assert_uint_eq(eval_plan_windows(2, 0, 0, windows, 4), 1);
	ck_assert_uint_eq(windows[0].end, 1);
	ck_assert_uint_eq(eval_plan_windows(600, 0, 0, windows, 4), 1);
	ck_assert_uint_eq(scored_predictions(windows, 1), 599);
	ck_assert_uint_eq(eval_plan_windows(3, 16, 8, windows, 4), 1);
	ck_assert_uint_eq(scored_predictions(windows, 1), 2);
}
END_TEST

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

/* One document of `count` byte tokens taken from a fixed text. */
static void make_document(eval_token_set *set, size_t count)
{
	static const char text[] = "Once upon a time there was a small robot who liked to count "
				   "stars, and every night it counted one more than before.";
	set->count = 1;
	set->tokens = calloc(1, sizeof *set->tokens);
	set->lengths = calloc(1, sizeof *set->lengths);
	set->tokens[0] = calloc(count, sizeof(uint32_t));
	set->lengths[0] = count;
	for (size_t i = 0; i < count; i++)
		set->tokens[0][i] = (unsigned char)text[i % (sizeof text - 1)];
}

START_TEST(score_windows_count_every_token)
{
	uc_error err;
	eval_model *model = load_model("tiny-rwkv-5v1-730K.safetensors");
	eval_token_set set;
	make_document(&set, 9);
	eval_score whole, windows, overlapping;
	eval_options options = {.threads = 1};
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &whole, &err), UC_OK);
	options.window = 4;
	options.stride = 4;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &windows, &err), UC_OK);
	options.stride = 1;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &overlapping, &err), UC_OK);
	ck_assert_uint_eq(whole.scored, 8);
	ck_assert_uint_eq(windows.scored, 8);
	ck_assert_uint_eq(windows.fed, 8);
	ck_assert_uint_eq(overlapping.scored, 8);
	ck_assert_uint_gt(overlapping.fed, 8);
	ck_assert_msg(whole.nll_sum != windows.nll_sum, "windows lost no context");
	eval_token_set_free(&set);
	eval_model_free(model);
}
END_TEST

START_TEST(score_truncates_to_max_seq_len)
{
	uc_error err;
	eval_model *model = load_model("stories260K.safetensors");
	eval_token_set set;
	make_document(&set, 700);
	eval_score score;
	eval_options options = {.threads = 2};
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_OK);
	ck_assert_uint_eq(score.scored, 511);
	ck_assert_uint_eq(score.fed, 511);
	options.window = 256;
	options.stride = 128;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_OK);
	ck_assert_uint_eq(score.scored, 699);
	eval_token_set_free(&set);
	eval_model_free(model);
}
END_TEST

START_TEST(score_rejects_bad_options)
{
	uc_error err;
	eval_model *model = load_model("stories260K.safetensors");
	eval_token_set set;
	make_document(&set, 10);
	eval_score score;
	eval_options options = {.window = 1024, .stride = 512, .threads = 1};
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_ERR_INVALID);
	ck_assert_str_eq(err.message, "window 1024 is longer than the model's maximum sequence "
				      "length 512");
	options.window = 8;
	options.stride = 9;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_ERR_INVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "stride 9"));

	options = (eval_options){.threads = 1};
	set.lengths[0] = 1;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_ERR_INVALID);
	ck_assert_str_eq(err.message, "nothing to score: none of the 1 documents has 2 or more "
				      "tokens");
	set.lengths[0] = 10;

	set.tokens[0][3] = 600;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_ERR_INVALID);
	ck_assert_str_eq(err.message, "document 1, token 3: id 600 is outside the model's "
				      "vocabulary of 512");
	eval_token_set_free(&set);
	eval_model_free(model);
}
END_TEST

START_TEST(score_thread_count_invariant)
{
	uc_error err;
	eval_model *model = load_model("tiny-rwkv-5v2-730K.safetensors");
	eval_token_set set;
	make_document(&set, 300);
	eval_options options = {.window = 64, .stride = 32, .threads = 1};
	eval_score reference;
	ck_assert_int_eq(eval_score_tokens(model, &set, &options, &reference, &err), UC_OK);
	for (unsigned threads = 2; threads <= 4; threads++) {
		eval_score score;
		options.threads = threads;
		ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_OK);
		ck_assert_msg(score.nll_sum == reference.nll_sum, "%u threads: %.12f, 1 thread: %.12f",
			      threads, score.nll_sum, reference.nll_sum);
	}
	eval_token_set_free(&set);
	eval_model_free(model);
}
END_TEST

/* One Llama document, fewer runs than threads: the positions of the run are split among
 * the threads. The sum must equal the step-by-step one bit for bit. */
START_TEST(score_split_positions_match_steps)
{
	uc_error err;
	eval_model *model = load_model("stories260K.safetensors");
	eval_token_set set;
	make_document(&set, 300);

	eval_state *state = NULL;
	ck_assert_int_eq(eval_state_new(model, 0, &state, &err), UC_OK);
	double expected = 0.0;
	for (size_t pos = 0; pos + 1 < 300; pos++) {
		const float *logits = eval_state_step(state, set.tokens[0][pos]);
		expected += eval_negative_log_likelihood(logits, 512, set.tokens[0][pos + 1]);
	}
	eval_state_free(state);

	for (unsigned threads = 1; threads <= 3; threads++) {
		eval_score score;
		eval_options options = {.threads = threads};
		ck_assert_int_eq(eval_score_tokens(model, &set, &options, &score, &err), UC_OK);
		ck_assert_uint_eq(score.scored, 299);
		ck_assert_msg(score.nll_sum == expected, "%u threads: %.12f, steps: %.12f", threads,
			      score.nll_sum, expected);
	}
	eval_token_set_free(&set);
	eval_model_free(model);
}
END_TEST

static eval_record sample_record(void)
{
	eval_record record;
	memset(&record, 0, sizeof record);
	record.arch = EVAL_ARCH_LLAMA;
	record.source.name = "/data/stories260K.safetensors";
	record.corpus.name = "corpora/tinystories_sample.txt";
	record.has_tokenizer = 1;
	record.tokenizer.name = "tok512.bin";
	record.seq_len = 512;
	record.baseline = (eval_score){.nll_sum = 2.0 * 1804, .scored = 1804, .fed = 1804,
				       .documents = 5, .seconds = 0.5};
	record.threads = 2;
	record.measured_at = 1764806400; /* 2025-12-04T00:00:00Z */
	return record;
}

START_TEST(record_json_fields)
{
	eval_record record = sample_record();
	record.has_pack = 1;
	record.pack_manifest.name = "packs/stories260K/";
	record.pack_dtype = "bf16";
	record.compressed = record.baseline;
	record.compressed.nll_sum = 2.1 * 1804;
	char *text = eval_record_to_json(&record);
	ck_assert_ptr_nonnull(text);
	json_error_t error;
	json_t *root = json_loads(text, 0, &error);
	ck_assert_ptr_nonnull(root);
	ck_assert_str_eq(json_string_value(json_object_get(root, "metric")), "ppl");
	ck_assert_str_eq(json_string_value(json_object_get(root, "comparator")),
			 "canonical-transformer");
	ck_assert_str_eq(json_string_value(json_object_get(root, "harness")), "uc-eval 0.1.0");
	ck_assert_str_eq(json_string_value(json_object_get(root, "measured_at")),
			 "2025-12-04T00:00:00Z");
	json_t *protocol = json_object_get(root, "protocol");
	ck_assert_str_eq(json_string_value(json_object_get(protocol, "corpus")),
			 "tinystories_sample.txt");
	ck_assert_str_eq(json_string_value(json_object_get(protocol, "tokenizer")), "tok512.bin");
	ck_assert_int_eq(json_integer_value(json_object_get(protocol, "seq_len")), 512);
	ck_assert_int_eq(json_integer_value(json_object_get(protocol, "tokens")), 1804);
	ck_assert_int_eq(json_integer_value(json_object_get(protocol, "documents")), 5);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(protocol, "windowing"),
							   "mode")), "document");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(root, "pack"), "name")),
			 "stories260K");
	double baseline = json_real_value(json_object_get(root, "baseline"));
	double compressed = json_real_value(json_object_get(root, "compressed"));
	double ratio = json_real_value(json_object_get(root, "ratio"));
	ck_assert_double_eq_tol(baseline, exp(2.0), 1e-8);
	ck_assert_double_eq_tol(compressed, exp(2.1), 1e-8);
	ck_assert_double_eq_tol(ratio, exp(0.1), 1e-8);
	json_decref(root);
	free(text);
}
END_TEST

START_TEST(record_json_without_pack)
{
	eval_record record = sample_record();
	record.has_tokenizer = 0;
	record.seq_len = 0;
	record.window = 128;
	record.stride = 64;
	char *text = eval_record_to_json(&record);
	json_t *root = json_loads(text, 0, NULL);
	ck_assert_ptr_nonnull(root);
	ck_assert(json_is_null(json_object_get(root, "pack")));
	ck_assert(json_is_null(json_object_get(root, "compressed")));
	ck_assert(json_is_null(json_object_get(root, "ratio")));
	json_t *protocol = json_object_get(root, "protocol");
	ck_assert_str_eq(json_string_value(json_object_get(protocol, "tokenizer")), "byte-level");
	ck_assert(json_is_null(json_object_get(protocol, "tokenizer_sha256")));
	ck_assert(json_is_null(json_object_get(protocol, "seq_len")));
	json_t *windowing = json_object_get(protocol, "windowing");
	ck_assert_str_eq(json_string_value(json_object_get(windowing, "mode")), "sliding");
	ck_assert_int_eq(json_integer_value(json_object_get(windowing, "window")), 128);
	ck_assert_int_eq(json_integer_value(json_object_get(windowing, "stride")), 64);
	json_decref(root);
	free(text);
}
END_TEST

START_TEST(record_text_lines)
{
	eval_record record = sample_record();
	char *text = eval_record_to_text(&record);
	ck_assert_ptr_nonnull(text);
	ck_assert_ptr_nonnull(strstr(text, "baseline    PPL 7.3891 (mean NLL 2.000000 nats over 1804 "
					   "tokens), 3608 tokens/s on 2 threads\n"));
	ck_assert_ptr_nonnull(strstr(text, "whole documents, truncated to 512 tokens"));
	ck_assert_ptr_null(strstr(text, "ratio"));
	free(text);
}
END_TEST

/* Runs uc_cmd_eval with stderr sent to a file, and returns the exit code and the message. */
static int run_command(char **argv, int argc, char *message, size_t size)
{
	char *dir = tu_make_temp_dir();
	char path[512];
	snprintf(path, sizeof path, "%s/stderr", dir);
	fflush(stderr);
	int saved = dup(2);
	FILE *capture = freopen(path, "w", stderr);
	ck_assert_ptr_nonnull(capture);
	int code = uc_cmd_eval(argc, argv);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	size_t len = 0;
	char *text = (char *)tu_read_file(path, &len);
	snprintf(message, size, "%.*s", (int)len, text);
	free(text);
	tu_remove_tree(dir);
	free(dir);
	return code;
}

START_TEST(command_usage_errors)
{
	char message[1024];
	char *missing_corpus[] = {"eval", "--source", "x.safetensors", NULL};
	ck_assert_int_eq(run_command(missing_corpus, 3, message, sizeof message), 2);
	ck_assert_str_eq(message, "uc eval: --corpus is required; see uc eval --help\n");

	char *bad_threads[] = {"eval", "--source", "a", "--corpus", "b", "--threads", "0x4", NULL};
	ck_assert_int_eq(run_command(bad_threads, 7, message, sizeof message), 2);
	ck_assert_str_eq(message, "uc eval: invalid --threads value \"0x4\": expected an integer "
				  "in 1..256\n");

	char *stride_alone[] = {"eval", "--source", "a", "--corpus", "b", "--stride", "4", NULL};
	ck_assert_int_eq(run_command(stride_alone, 7, message, sizeof message), 2);
	ck_assert_str_eq(message, "uc eval: --stride needs --window\n");

	char *unknown[] = {"eval", "--sauce", "a", NULL};
	ck_assert_int_eq(run_command(unknown, 3, message, sizeof message), 2);
	ck_assert_str_eq(message, "uc eval: unknown option --sauce; see uc eval --help\n");
}
END_TEST

START_TEST(command_input_errors_named)
{
	char message[1024];
	char source[512], corpus[512], tokenizer[512];
	snprintf(source, sizeof source, "%s", tu_data_path("stories260K.safetensors"));
	snprintf(corpus, sizeof corpus, "%s", tu_data_path("tinystories_sample.txt"));
	snprintf(tokenizer, sizeof tokenizer, "%s", tu_data_path("tok512.bin"));

	char *no_tokenizer[] = {"eval", "--source", source, "--corpus", corpus, NULL};
	ck_assert_int_eq(run_command(no_tokenizer, 5, message, sizeof message), 1);
	ck_assert_ptr_nonnull(strstr(message, "vocabulary has 512 tokens, so it is not byte-level"));

	char *missing_corpus[] = {"eval", "--source", source, "--corpus", "/nonexistent/c.txt",
				  "--tokenizer", tokenizer, NULL};
	ck_assert_int_eq(run_command(missing_corpus, 7, message, sizeof message), 1);
	ck_assert_ptr_nonnull(strstr(message, "/nonexistent/c.txt"));

	char *missing_source[] = {"eval", "--source", "/nonexistent/m.safetensors", "--corpus",
				  corpus, NULL};
	ck_assert_int_eq(run_command(missing_source, 5, message, sizeof message), 1);
	ck_assert_ptr_nonnull(strstr(message, "/nonexistent/m.safetensors"));

	char *missing_pack[] = {"eval", "--source", source, "--corpus", corpus, "--tokenizer",
				tokenizer, "--pack", "/nonexistent/pack", NULL};
	ck_assert_int_eq(run_command(missing_pack, 9, message, sizeof message), 1);
	ck_assert_ptr_nonnull(strstr(message, "/nonexistent/pack"));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("eval_protocol");
	TCase *windows = tcase_create("windows");
	tcase_set_timeout(windows, 300);
	tcase_add_test(windows, windows_without_overlap);
	tcase_add_test(windows, windows_with_overlap);
	tcase_add_test(windows, windows_cover_every_prediction);
	tcase_add_test(windows, windows_short_documents);
	suite_add_tcase(suite, windows);

	TCase *score = tcase_create("score");
	tcase_set_timeout(score, 300);
	tcase_add_test(score, score_windows_count_every_token);
	tcase_add_test(score, score_truncates_to_max_seq_len);
	tcase_add_test(score, score_rejects_bad_options);
	tcase_add_test(score, score_thread_count_invariant);
	tcase_add_test(score, score_split_positions_match_steps);
	suite_add_tcase(suite, score);

	TCase *record = tcase_create("record");
	tcase_set_timeout(record, 300);
	tcase_add_test(record, record_json_fields);
	tcase_add_test(record, record_json_without_pack);
	tcase_add_test(record, record_text_lines);
	tcase_add_test(record, command_usage_errors);
	tcase_add_test(record, command_input_errors_named);
	suite_add_tcase(suite, record);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
