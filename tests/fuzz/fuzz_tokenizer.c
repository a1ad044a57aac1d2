/* libFuzzer target: the llama2.c tokenizer parser on arbitrary bytes, then the encoder on
 * the same bytes as text, so merges run over vocabularies no trainer would produce. */
/* The harness is not part of libuc, so its sources are compiled in here. */
#include "../../cli/eval/corpus.c"
#include "../../cli/eval/tokenizer.c"
#include "../../cli/eval/util.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	eval_tokenizer *tokenizer = NULL;
	uc_error err;
	uc_error_clear(&err);
	if (eval_tokenizer_parse(data, size, "fuzz", &tokenizer, &err) != UC_OK) {
		/* A failure must leave *out NULL and set a NUL-terminated message. */
		if (tokenizer != NULL || err.message[0] == '\0' ||
		    memchr(err.message, 0, sizeof err.message) == NULL)
			__builtin_trap();
		return 0;
	}

	uint32_t *tokens = NULL;
	size_t count = 0;
	size_t text_len = size < 4096 ? size : 4096;
	if (eval_tokenizer_encode(tokenizer, (const char *)data, text_len, 1, &tokens, &count,
				  &err) == UC_OK) {
		for (size_t i = 0; i < count; i++)
			if (tokens[i] >= eval_tokenizer_vocab_size(tokenizer))
				__builtin_trap();
		free(tokens);
	}
	eval_tokenizer_free(tokenizer);
	return 0;
}
