/* The llama2.c tokenizer, byte-level encoding and the corpus split. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "testutil.h"

static eval_tokenizer *load_tok512(void)
{
	uc_error err;
	eval_tokenizer *tokenizer = NULL;
	ck_assert_msg(eval_tokenizer_load(tu_data_path("tok512.bin"), &tokenizer, &err) == UC_OK,
		      "%s", err.message);
	return tokenizer;
}

static void assert_piece(const eval_tokenizer *tokenizer, uint32_t id, const char *expected)
{
	size_t len = 0;
	const char *piece = eval_tokenizer_piece(tokenizer, id, &len);
	ck_assert_uint_eq(len, strlen(expected));
	ck_assert_mem_eq(piece, expected, len);
}

START_TEST(tok512_loads)
{
	eval_tokenizer *tokenizer = load_tok512();
	ck_assert_uint_eq(eval_tokenizer_vocab_size(tokenizer), 512);
	assert_piece(tokenizer, 1, "\n<s>\n");
	assert_piece(tokenizer, 403, " Once");
	size_t len = 7;
	ck_assert_ptr_null(eval_tokenizer_piece(tokenizer, 512, &len));
	ck_assert_uint_eq(len, 0);
	eval_tokenizer_free(tokenizer);
}
END_TEST

START_TEST(encode_round_trips_text)
{
	uc_error err;
	eval_tokenizer *tokenizer = load_tok512();
	const char *text = "Once upon a time, there was a little girl named Lily.";
	uint32_t *tokens = NULL;
	size_t count = 0;
	ck_assert_int_eq(eval_tokenizer_encode(tokenizer, text, strlen(text), 1, &tokens, &count,
					       &err), UC_OK);
	ck_assert_uint_ge(count, 3);
	ck_assert_uint_eq(tokens[0], EVAL_BOS_TOKEN);
	ck_assert_uint_eq(tokens[1], 403);

	char decoded[256] = "";
	size_t used = 0;
	for (size_t i = 1; i < count; i++) {
		size_t len;
		const char *piece = eval_tokenizer_piece(tokenizer, tokens[i], &len);
		ck_assert_uint_lt(used + len, sizeof decoded);
		memcpy(decoded + used, piece, len);
		used += len;
	}
	decoded[used] = '\0';
	ck_assert_str_eq(decoded, " Once upon a time, there was a little girl named Lily.");
	ck_assert_uint_lt(count, strlen(text) / 2);
	free(tokens);
	eval_tokenizer_free(tokenizer);
}
END_TEST

START_TEST(encode_byte_fallback)
{
	uc_error err;
	eval_tokenizer *tokenizer = load_tok512();
	uint32_t *tokens = NULL;
	size_t count = 0;
	const char *u_umlaut = "\xc3\xbc"; /* U+00FC, not in the 512-token vocabulary */
	ck_assert_int_eq(eval_tokenizer_encode(tokenizer, u_umlaut, 2, 0, &tokens, &count, &err),
			 UC_OK);
	ck_assert_uint_eq(count, 3);
	assert_piece(tokenizer, tokens[0], " ");
	ck_assert_uint_eq(tokens[1], 0xc3 + 3);
	ck_assert_uint_eq(tokens[2], 0xbc + 3);
	free(tokens);
	eval_tokenizer_free(tokenizer);
}
END_TEST

START_TEST(encode_empty_is_bos_only)
{
	uc_error err;
	eval_tokenizer *tokenizer = load_tok512();
	uint32_t *tokens = NULL;
	size_t count = 9;
	ck_assert_int_eq(eval_tokenizer_encode(tokenizer, "", 0, 1, &tokens, &count, &err), UC_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_uint_eq(tokens[0], EVAL_BOS_TOKEN);
	free(tokens);
	eval_tokenizer_free(tokenizer);
}
END_TEST

/* Builds a llama2.c tokenizer: <unk>, BOS, EOS, 256 byte tokens, then `extra` pieces. */
static eval_tokenizer *build_tokenizer(const char *const *extra, const float *scores,
				       size_t count)
{
	uint8_t data[8192];
	size_t used = 0;
	int32_t max_length = 8;
	memcpy(data, &max_length, 4);
	used = 4;
	for (size_t id = 0; id < 259 + count; id++) {
		char piece[16];
		float score = 0.0f;
		if (id == 0)
			snprintf(piece, sizeof piece, "<unk>");
		else if (id == 1)
			snprintf(piece, sizeof piece, "<s>");
		else if (id == 2)
			snprintf(piece, sizeof piece, "</s>");
		else if (id < 259)
			snprintf(piece, sizeof piece, "<0x%02zX>", id - 3);
		else {
			snprintf(piece, sizeof piece, "%s", extra[id - 259]);
			score = scores[id - 259];
		}
		int32_t len = (int32_t)strlen(piece);
		ck_assert_uint_lt(used + 8 + (size_t)len, sizeof data);
		memcpy(data + used, &score, 4);
		memcpy(data + used + 4, &len, 4);
		memcpy(data + used + 8, piece, (size_t)len);
		used += 8 + (size_t)len;
	}
	uc_error err;
	eval_tokenizer *tokenizer = NULL;
	ck_assert_msg(eval_tokenizer_parse(data, used, "built", &tokenizer, &err) == UC_OK, "%s",
		      err.message);
	return tokenizer;
}

static void assert_encoding(const eval_tokenizer *tokenizer, const char *text,
			    const uint32_t *expected, size_t expected_count)
{
	uc_error err;
	uint32_t *tokens = NULL;
	size_t count = 0;
	ck_assert_int_eq(eval_tokenizer_encode(tokenizer, text, strlen(text), 0, &tokens, &count,
					       &err), UC_OK);
	ck_assert_uint_eq(count, expected_count);
	for (size_t i = 0; i < count; i++)
		ck_assert_msg(tokens[i] == expected[i], "token %zu is %u, expected %u", i, tokens[i],
			      expected[i]);
	free(tokens);
}

START_TEST(merge_highest_score_first)
{
	static const char *const pieces[] = {" ", "a", "b", "c", "ab", "bc"};
	static const float scores[] = {0, 0, 0, 0, 1.0f, 2.0f};
	eval_tokenizer *tokenizer = build_tokenizer(pieces, scores, 6);
	/* "bc" outscores "ab", so the text splits as " ", "a", "bc". */
	const uint32_t expected[] = {259, 260, 264};
	assert_encoding(tokenizer, "abc", expected, 3);
	eval_tokenizer_free(tokenizer);
}
END_TEST

START_TEST(merge_ties_take_first_pair)
{
	static const char *const pieces[] = {" ", "a", "b", "c", "ab", "bc"};
	static const float scores[] = {0, 0, 0, 0, 1.0f, 1.0f};
	eval_tokenizer *tokenizer = build_tokenizer(pieces, scores, 6);
	const uint32_t expected[] = {259, 263, 262};
	assert_encoding(tokenizer, "abc", expected, 3);
	eval_tokenizer_free(tokenizer);
}
END_TEST

/* Returns the id of the first token whose piece is these bytes, or -1 (a linear search). */
static long find_piece(const eval_tokenizer *tokenizer, const char *bytes, size_t len)
{
	for (uint32_t id = 0; id < eval_tokenizer_vocab_size(tokenizer); id++) {
		size_t piece_len;
		const char *piece = eval_tokenizer_piece(tokenizer, id, &piece_len);
		if (piece_len == len && memcmp(piece, bytes, len) == 0)
			return id;
	}
	return -1;
}

/* Encodes without BOS the way llama2.c does: after each merge, rescan every adjacent
 * pair for the highest-scoring merge. */
static size_t reference_encode(const eval_tokenizer *tokenizer, const char *text, size_t len,
			       uint32_t *tokens)
{
	size_t n = 0;
	if (len > 0)
		tokens[n++] = (uint32_t)find_piece(tokenizer, " ", 1);
	for (size_t i = 0; i < len;) {
		size_t char_len = 1;
		while (i + char_len < len && char_len < 4 &&
		       ((unsigned char)text[i + char_len] & 0xC0) == 0x80)
			char_len++;
		long id = find_piece(tokenizer, text + i, char_len);
		if (id >= 0)
			tokens[n++] = (uint32_t)id;
		else
			for (size_t b = 0; b < char_len; b++)
				tokens[n++] = (unsigned char)text[i + b] + 3;
		i += char_len;
	}

	for (;;) {
		long best_id = -1;
		size_t best_index = 0;
		for (size_t i = 0; i + 1 < n; i++) {
			size_t a_len, b_len;
			const char *a = eval_tokenizer_piece(tokenizer, tokens[i], &a_len);
			const char *b = eval_tokenizer_piece(tokenizer, tokens[i + 1], &b_len);
			char joined[128];
			ck_assert_uint_lt(a_len + b_len, sizeof joined);
			memcpy(joined, a, a_len);
			memcpy(joined + a_len, b, b_len);
			long id = find_piece(tokenizer, joined, a_len + b_len);
			if (id >= 0 && (best_id < 0 || eval_tokenizer_score(tokenizer, (uint32_t)id) >
							     eval_tokenizer_score(tokenizer, (uint32_t)best_id))) {
				best_id = id;
				best_index = i;
			}
		}
		if (best_id < 0)
			return n;
		tokens[best_index] = (uint32_t)best_id;
		memmove(tokens + best_index + 1, tokens + best_index + 2,
			(n - best_index - 2) * sizeof *tokens);
		n--;
	}
}

START_TEST(encode_matches_rescanning_reference)
{
	uc_error err;
	eval_tokenizer *tokenizer = load_tok512();
	size_t len = 0;
	char *text = (char *)tu_read_file(tu_data_path("tinystories_sample.txt"), &len);
	uint32_t *expected = calloc(len + 2, sizeof *expected);
	uint32_t state = 12345;
	for (int sample = 0; sample < 30; sample++) {
		/* Pieces of varying length and offset, including cuts inside UTF-8 characters. */
		state = state * 1103515245u + 12345u;
		size_t start = (state >> 8) % len;
		state = state * 1103515245u + 12345u;
		size_t piece_len = (state >> 8) % 160;
		if (piece_len > len - start)
			piece_len = len - start;

		size_t expected_count = reference_encode(tokenizer, text + start, piece_len, expected);
		uint32_t *tokens = NULL;
		size_t count = 0;
		ck_assert_int_eq(eval_tokenizer_encode(tokenizer, text + start, piece_len, 0, &tokens,
						       &count, &err), UC_OK);
		ck_assert_msg(count == expected_count, "bytes %zu+%zu: %zu tokens, expected %zu", start,
			      piece_len, count, expected_count);
		for (size_t i = 0; i < count; i++)
			ck_assert_msg(tokens[i] == expected[i], "bytes %zu+%zu: token %zu is %u, expected %u",
				      start, piece_len, i, tokens[i], expected[i]);
		free(tokens);
	}
	free(expected);
	free(text);
	eval_tokenizer_free(tokenizer);
}
END_TEST

START_TEST(malformed_tokenizers_rejected)
{
	static const char *const names[] = {
		"empty", "zero-max-length", "record-cut-short", "length-past-end",
		"negative-length", "longer-than-max", "too-few-tokens", "nan-score",
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char path[256];
		size_t len = 0, expected_len = 0;
		snprintf(path, sizeof path, "eval/tokenizer/%s.bin", names[i]);
		uint8_t *data = tu_read_file(tu_fixture_path(path), &len);
		snprintf(path, sizeof path, "eval/tokenizer/%s.expected", names[i]);
		char *expected = (char *)tu_read_file(tu_fixture_path(path), &expected_len);
		expected[expected_len] = '\0';
		char *message = strchr(expected, '\n');
		ck_assert_ptr_nonnull(message);
		*message++ = '\0';
		message[strcspn(message, "\n")] = '\0';

		uc_error err;
		eval_tokenizer *tokenizer = (eval_tokenizer *)&err;
		uc_status status = eval_tokenizer_parse(data, len, names[i], &tokenizer, &err);
		ck_assert_msg(status != UC_OK, "%s was accepted", names[i]);
		ck_assert_ptr_null(tokenizer);
		ck_assert_str_eq(uc_status_name(status), expected);
		ck_assert_str_eq(err.message, message);
		free(data);
		free(expected);
	}
}
END_TEST

START_TEST(tokenizer_missing_file_named)
{
	uc_error err;
	eval_tokenizer *tokenizer = NULL;
	ck_assert_int_eq(eval_tokenizer_load("/nonexistent/tok.bin", &tokenizer, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/tok.bin"));
}
END_TEST

START_TEST(bytes_encode_unsigned)
{
	uc_error err;
	uint32_t *tokens = NULL;
	size_t count = 0;
	ck_assert_int_eq(eval_bytes_encode("A\xff", 2, &tokens, &count, &err), UC_OK);
	ck_assert_uint_eq(count, 2);
	ck_assert_uint_eq(tokens[0], 'A');
	ck_assert_uint_eq(tokens[1], 255);
	free(tokens);
}
END_TEST

static eval_corpus *split(const char *text)
{
	uc_error err;
	eval_corpus *corpus = NULL;
	char *copy = strdup(text);
	ck_assert_int_eq(eval_corpus_split(copy, strlen(text), &corpus, &err), UC_OK);
	return corpus;
}

static void assert_document(const eval_corpus *corpus, size_t index, const char *expected)
{
	ck_assert_uint_lt(index, corpus->count);
	ck_assert_uint_eq(corpus->documents[index].len, strlen(expected));
	ck_assert_mem_eq(corpus->documents[index].text, expected, strlen(expected));
}

START_TEST(corpus_splits_on_separator)
{
	eval_corpus *corpus = split("first<|endoftext|>second");
	ck_assert_uint_eq(corpus->count, 2);
	assert_document(corpus, 0, "first");
	assert_document(corpus, 1, "second");
	eval_corpus_free(corpus);
}
END_TEST

START_TEST(corpus_strips_and_drops_empty)
{
	eval_corpus *corpus = split("  one\ttwo \n<|endoftext|>\n \r\n<|endoftext|><|endoftext|> three\n");
	ck_assert_uint_eq(corpus->count, 2);
	assert_document(corpus, 0, "one\ttwo");
	assert_document(corpus, 1, "three");
	eval_corpus_free(corpus);
}
END_TEST

START_TEST(corpus_without_separator)
{
	eval_corpus *corpus = split("just <|endoftext| one");
	ck_assert_uint_eq(corpus->count, 1);
	assert_document(corpus, 0, "just <|endoftext| one");
	eval_corpus_free(corpus);
}
END_TEST

START_TEST(corpus_sample_documents)
{
	uc_error err;
	eval_corpus *corpus = NULL;
	ck_assert_int_eq(eval_corpus_load(tu_data_path("tinystories_sample.txt"), &corpus, &err),
			 UC_OK);
	ck_assert_uint_eq(corpus->count, 5);
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_to_hex(corpus->sha256, hex);
	ck_assert_str_eq(hex, "f862d5c0f004d7c38ede6bb25d1c7a213dbd2064edd55c00504999d0d282d31b");
	ck_assert_mem_eq(corpus->documents[0].text, "Once upon a time", 16);

	eval_tokenizer *tokenizer = load_tok512();
	eval_token_set set;
	ck_assert_int_eq(eval_token_set_encode(corpus, tokenizer, &set, &err), UC_OK);
	size_t total = 0;
	for (size_t d = 0; d < set.count; d++) {
		ck_assert_uint_eq(set.tokens[d][0], EVAL_BOS_TOKEN);
		total += set.lengths[d];
	}
	ck_assert_uint_eq(total, 1804 + 5);
	eval_token_set_free(&set);

	ck_assert_int_eq(eval_token_set_encode(corpus, NULL, &set, &err), UC_OK);
	total = 0;
	for (size_t d = 0; d < set.count; d++)
		total += set.lengths[d];
	ck_assert_uint_eq(total, 3712 + 5);
	eval_token_set_free(&set);
	eval_tokenizer_free(tokenizer);
	eval_corpus_free(corpus);
}
END_TEST

START_TEST(corpus_without_documents_rejected)
{
	static const char *const names[] = {"empty", "separators-only"};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char relative[256], path[512];
		size_t expected_len = 0;
		snprintf(relative, sizeof relative, "eval/corpus/%s.txt", names[i]);
		snprintf(path, sizeof path, "%s", tu_fixture_path(relative));
		snprintf(relative, sizeof relative, "eval/corpus/%s.expected", names[i]);
		char *expected = (char *)tu_read_file(tu_fixture_path(relative), &expected_len);
		expected[expected_len] = '\0';
		char *message = strchr(expected, '\n');
		ck_assert_ptr_nonnull(message);
		*message++ = '\0';
		message[strcspn(message, "\n")] = '\0';

		uc_error err;
		eval_corpus *corpus = (eval_corpus *)&err;
		uc_status status = eval_corpus_load(path, &corpus, &err);
		ck_assert_ptr_null(corpus);
		ck_assert_str_eq(uc_status_name(status), expected);
		ck_assert_ptr_nonnull(strstr(err.message, path));
		ck_assert_ptr_nonnull(strstr(err.message, message));
		free(expected);
	}
}
END_TEST

START_TEST(corpus_missing_file_named)
{
	uc_error err;
	eval_corpus *corpus = NULL;
	ck_assert_int_eq(eval_corpus_load("/nonexistent/corpus.txt", &corpus, &err), UC_ERR_IO);
	ck_assert_ptr_nonnull(strstr(err.message, "/nonexistent/corpus.txt"));
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("eval_text");
	TCase *tokenizer = tcase_create("tokenizer");
	tcase_set_timeout(tokenizer, 300); /* the rescanning reference is slow under sanitizers */
	tcase_add_test(tokenizer, tok512_loads);
	tcase_add_test(tokenizer, encode_round_trips_text);
	tcase_add_test(tokenizer, encode_byte_fallback);
	tcase_add_test(tokenizer, encode_empty_is_bos_only);
	tcase_add_test(tokenizer, merge_highest_score_first);
	tcase_add_test(tokenizer, merge_ties_take_first_pair);
	tcase_add_test(tokenizer, encode_matches_rescanning_reference);
	tcase_add_test(tokenizer, malformed_tokenizers_rejected);
	tcase_add_test(tokenizer, tokenizer_missing_file_named);
	tcase_add_test(tokenizer, bytes_encode_unsigned);
	suite_add_tcase(suite, tokenizer);

	TCase *corpus = tcase_create("corpus");
	tcase_set_timeout(corpus, 300);
	tcase_add_test(corpus, corpus_splits_on_separator);
	tcase_add_test(corpus, corpus_strips_and_drops_empty);
	tcase_add_test(corpus, corpus_without_separator);
	tcase_add_test(corpus, corpus_sample_documents);
	tcase_add_test(corpus, corpus_without_documents_rejected);
	tcase_add_test(corpus, corpus_missing_file_named);
	suite_add_tcase(suite, corpus);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
