/* Splits an evaluation corpus into documents on the "<|endoftext|>" separator. */
#include "config.h"

#include "eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define DOCUMENT_SEPARATOR "<|endoftext|>"

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Returns the offset of the next separator at or after `from`, or len when there is none. */
static size_t find_separator(const char *data, size_t len, size_t from)
{
	size_t sep_len = sizeof DOCUMENT_SEPARATOR - 1;
	for (size_t i = from; i + sep_len <= len; i++)
		if (data[i] == '<' && memcmp(data + i, DOCUMENT_SEPARATOR, sep_len) == 0)
			return i;
	return len;
}

static uc_status append_document(eval_corpus *corpus, size_t *capacity, const char *text,
				 size_t len, uc_error *err)
{
	while (len > 0 && is_space(text[0])) {
		text++;
		len--;
	}
	while (len > 0 && is_space(text[len - 1]))
		len--;
	if (len == 0)
		return UC_OK;

	if (corpus->count == *capacity) {
		size_t grown = *capacity ? 2 * *capacity : 16, bytes;
		if (eval_mul_size(grown, sizeof *corpus->documents, &bytes) != 0)
			return eval_fail(err, UC_ERR_NOMEM, "too many documents (%zu)", corpus->count);
		eval_document *documents = realloc(corpus->documents, bytes);
		if (!documents)
			return eval_fail(err, UC_ERR_NOMEM, "out of memory for %zu documents", grown);
		corpus->documents = documents;
		*capacity = grown;
	}
	corpus->documents[corpus->count].text = text;
	corpus->documents[corpus->count].len = len;
	corpus->count++;
	return UC_OK;
}

uc_status eval_corpus_split(char *data, size_t len, eval_corpus **out, uc_error *err)
{
	uc_status rc = UC_OK;
	eval_corpus *corpus = calloc(1, sizeof *corpus);
	if (!corpus) {
		free(data);
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory for the corpus");
		goto out;
	}
	corpus->data = data;
	corpus->len = len;
	uc_sha256_buffer(data, len, corpus->sha256);

	size_t capacity = 0, start = 0;
	while (rc == UC_OK && start <= len) {
		size_t end = find_separator(data, len, start);
		rc = append_document(corpus, &capacity, data + start, end - start, err);
		start = end + sizeof DOCUMENT_SEPARATOR - 1;
	}

out:
	if (rc != UC_OK) {
		eval_corpus_free(corpus);
		corpus = NULL;
	}
	*out = corpus;
	return rc;
}

uc_status eval_read_file(const char *path, const char *what, char **out, size_t *len,
			 uc_error *err)
{
	*out = NULL;
	*len = 0;
	FILE *file = fopen(path, "rb");
	if (!file)
		return eval_fail(err, UC_ERR_IO, "%s: cannot open the %s file", path, what);
	char *data = NULL;
	size_t used = 0, capacity = 0;
	uc_status rc = UC_OK;
	for (;;) {
		if (used == capacity) {
			capacity = capacity ? 2 * capacity : 65536;
			char *grown = realloc(data, capacity);
			if (!grown) {
				rc = eval_fail(err, UC_ERR_NOMEM, "%s: out of memory reading the %s file",
					      path, what);
				goto out;
			}
			data = grown;
		}
		size_t got = fread(data + used, 1, capacity - used, file);
		used += got;
		if (got == 0)
			break;
	}
	if (ferror(file))
		rc = eval_fail(err, UC_ERR_IO, "%s: reading the %s file failed", path, what);

out:
	fclose(file);
	if (rc != UC_OK) {
		free(data);
		return rc;
	}
	*out = data;
	*len = used;
	return UC_OK;
}

uc_status eval_corpus_load(const char *path, eval_corpus **out, uc_error *err)
{
	*out = NULL;
	char *data;
	size_t len;
	uc_status rc = eval_read_file(path, "corpus", &data, &len, err);
	if (rc != UC_OK)
		return rc;
	rc = eval_corpus_split(data, len, out, err);
	if (rc != UC_OK) {
		eval_error_prefix(err, "%s", path);
		return rc;
	}
	if ((*out)->count == 0) {
		eval_corpus_free(*out);
		*out = NULL;
		return eval_fail(err, UC_ERR_INVALID,
				"%s: no documents: the file is empty or holds only white space and "
				"<|endoftext|> separators", path);
	}
	return UC_OK;
}

void eval_corpus_free(eval_corpus *corpus)
{
	if (!corpus)
		return;
	free(corpus->data);
	free(corpus->documents);
	free(corpus);
}
