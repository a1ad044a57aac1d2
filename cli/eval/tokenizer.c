/* The llama2.c byte-pair tokenizer (`tok512.bin` format) and byte-level encoding. */
#include "config.h"

#include "eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define TOKENIZER_MAX_VOCAB (1u << 20)
#define BYTE_FALLBACK_OFFSET 3u /* llama2.c maps byte b to token b + 3 (after <unk>, BOS, EOS) */

struct eval_tokenizer {
	uint32_t vocab_size;
	char **pieces;
	size_t *lengths;
	float *scores;
	struct sorted_piece *sorted; /* every piece in byte order, for binary search */
};

struct sorted_piece {
	const char *bytes;
	size_t len;
	uint32_t id;
};

static int compare_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
	int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
	if (c != 0)
		return c;
	return (a_len > b_len) - (a_len < b_len);
}

static int compare_pieces(const void *a, const void *b)
{
	const struct sorted_piece *x = a, *y = b;
	int c = compare_bytes(x->bytes, x->len, y->bytes, y->len);
	return c != 0 ? c : (x->id > y->id) - (x->id < y->id);
}

/* Returns the id of the token whose piece is exactly these bytes, or -1. When several
 * tokens share a piece, the lowest id wins. */
static long lookup(const eval_tokenizer *tokenizer, const char *bytes, size_t len)
{
	size_t low = 0, high = tokenizer->vocab_size;
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		const struct sorted_piece *piece = &tokenizer->sorted[mid];
		if (compare_bytes(piece->bytes, piece->len, bytes, len) < 0)
			low = mid + 1;
		else
			high = mid;
	}
	if (low < tokenizer->vocab_size) {
		const struct sorted_piece *piece = &tokenizer->sorted[low];
		if (compare_bytes(piece->bytes, piece->len, bytes, len) == 0)
			return (long)piece->id;
	}
	return -1;
}

/* Counts the tokens in the file and checks every record fits. */
static uc_status count_tokens(const uint8_t *data, size_t len, const char *name, uint32_t *count,
			      uc_error *err)
{
	if (len < 4)
		return eval_fail(err, UC_ERR_FORMAT, "%s: %zu bytes, too short for a llama2.c tokenizer",
				name, len);
	int32_t max_length = (int32_t)eval_load_le32(data);
	if (max_length <= 0)
		return eval_fail(err, UC_ERR_FORMAT, "%s: max_token_length %d must be positive", name,
				max_length);
	size_t offset = 4;
	uint32_t n = 0;
	while (offset < len) {
		if (len - offset < 8)
			return eval_fail(err, UC_ERR_FORMAT,
					"%s: token %u: record cut short at offset %zu", name, n, offset);
		uint32_t score_bits = eval_load_le32(data + offset);
		float score;
		memcpy(&score, &score_bits, sizeof score);
		if (!isfinite(score))
			return eval_fail(err, UC_ERR_FORMAT,
					 "%s: token %u: merge score at offset %zu is not a finite number",
					 name, n, offset);
		int32_t piece_len = (int32_t)eval_load_le32(data + offset + 4);
		if (piece_len <= 0 || piece_len > max_length || (size_t)piece_len > len - offset - 8)
			return eval_fail(err, UC_ERR_FORMAT,
					"%s: token %u: length %d at offset %zu is not in 1..%d or runs past "
					"the end of the file", name, n, piece_len, offset + 4, max_length);
		offset += 8 + (size_t)piece_len;
		if (++n > TOKENIZER_MAX_VOCAB)
			return eval_fail(err, UC_ERR_FORMAT, "%s: more than %u tokens", name,
					TOKENIZER_MAX_VOCAB);
	}
	if (n < BYTE_FALLBACK_OFFSET + 256)
		return eval_fail(err, UC_ERR_FORMAT,
				"%s: %u tokens; a llama2.c vocabulary has at least %u (special and byte "
				"tokens)", name, n, BYTE_FALLBACK_OFFSET + 256);
	*count = n;
	return UC_OK;
}

static uc_status fill_tokens(eval_tokenizer *tokenizer, const uint8_t *data, uc_error *err)
{
	size_t offset = 4;
	for (uint32_t id = 0; id < tokenizer->vocab_size; id++) {
		uint32_t bits = eval_load_le32(data + offset);
		size_t len = eval_load_le32(data + offset + 4);
		memcpy(&tokenizer->scores[id], &bits, sizeof bits);
		tokenizer->pieces[id] = malloc(len + 1);
		if (!tokenizer->pieces[id])
			return eval_fail(err, UC_ERR_NOMEM, "out of memory for token %u", id);
		memcpy(tokenizer->pieces[id], data + offset + 8, len);
		tokenizer->pieces[id][len] = '\0';
		tokenizer->lengths[id] = len;
		tokenizer->sorted[id].bytes = tokenizer->pieces[id];
		tokenizer->sorted[id].len = len;
		tokenizer->sorted[id].id = id;
		offset += 8 + len;
	}
	qsort(tokenizer->sorted, tokenizer->vocab_size, sizeof *tokenizer->sorted, compare_pieces);
	return UC_OK;
}

uc_status eval_tokenizer_parse(const uint8_t *data, size_t len, const char *name,
			       eval_tokenizer **out, uc_error *err)
{
	eval_tokenizer *tokenizer = NULL;
	uint32_t count = 0;
	uc_status rc = count_tokens(data, len, name, &count, err);
	if (rc != UC_OK)
		goto out;
	tokenizer = calloc(1, sizeof *tokenizer);
	if (tokenizer) {
		tokenizer->vocab_size = count;
		tokenizer->pieces = calloc(count, sizeof *tokenizer->pieces);
		tokenizer->lengths = calloc(count, sizeof *tokenizer->lengths);
		tokenizer->scores = calloc(count, sizeof *tokenizer->scores);
		tokenizer->sorted = calloc(count, sizeof *tokenizer->sorted);
	}
	if (!tokenizer || !tokenizer->pieces || !tokenizer->lengths || !tokenizer->scores ||
	    !tokenizer->sorted) {
		rc = eval_fail(err, UC_ERR_NOMEM, "%s: out of memory for %u tokens", name, count);
		goto out;
	}
	rc = fill_tokens(tokenizer, data, err);

out:
	if (rc != UC_OK) {
		eval_tokenizer_free(tokenizer);
		tokenizer = NULL;
	}
	*out = tokenizer;
	return rc;
}

uc_status eval_tokenizer_load(const char *path, eval_tokenizer **out, uc_error *err)
{
	*out = NULL;
	char *data;
	size_t len;
	uc_status rc = eval_read_file(path, "tokenizer", &data, &len, err);
	if (rc != UC_OK)
		return rc;
	rc = eval_tokenizer_parse((const uint8_t *)data, len, path, out, err);
	free(data);
	return rc;
}

void eval_tokenizer_free(eval_tokenizer *tokenizer)
{
	if (!tokenizer)
		return;
	if (tokenizer->pieces)
		for (uint32_t i = 0; i < tokenizer->vocab_size; i++)
			free(tokenizer->pieces[i]);
	free(tokenizer->pieces);
	free(tokenizer->lengths);
	free(tokenizer->scores);
	free(tokenizer->sorted);
	free(tokenizer);
}

uint32_t eval_tokenizer_vocab_size(const eval_tokenizer *tokenizer)
{
	return tokenizer->vocab_size;
}

float eval_tokenizer_score(const eval_tokenizer *tokenizer, uint32_t id)
{
	return id < tokenizer->vocab_size ? tokenizer->scores[id] : 0.0f;
}

const char *eval_tokenizer_piece(const eval_tokenizer *tokenizer, uint32_t id, size_t *len)
{
	if (id >= tokenizer->vocab_size) {
		*len = 0;
		return NULL;
	}
	*len = tokenizer->lengths[id];
	return tokenizer->pieces[id];
}

/* Returns the byte count of the UTF-8 character starting at text[0]: the lead byte plus
 * up to three continuation bytes (10xxxxxx), as llama2.c groups them. */
static size_t utf8_char_length(const char *text, size_t len)
{
	size_t n = 1;
	while (n < len && n < 4 && ((unsigned char)text[n] & 0xC0) == 0x80)
		n++;
	return n;
}

/* Appends the initial tokens of `text` (characters or byte fallbacks) to `tokens`. */
static size_t split_characters(const eval_tokenizer *tokenizer, const char *text, size_t len,
			       uint32_t *tokens, size_t n)
{
	size_t offset = 0;
	while (offset < len) {
		size_t char_len = utf8_char_length(text + offset, len - offset);
		long id = lookup(tokenizer, text + offset, char_len);
		if (id >= 0) {
			tokens[n++] = (uint32_t)id;
		} else {
			for (size_t i = 0; i < char_len; i++)
				tokens[n++] = (unsigned char)text[offset + i] + BYTE_FALLBACK_OFFSET;
		}
		offset += char_len;
	}
	return n;
}

/* A possible merge of the adjacent tokens `left` and `right` into token `id`. The versions
 * tell whether either token changed after the candidate was made. */
typedef struct {
	float score;
	uint32_t id;
	size_t left, right;
	uint32_t left_version, right_version;
} merge_candidate;

/* The encoder's working sequence: a doubly linked list over the initial tokens, plus a
 * max-heap of candidate merges ordered by score, then by position (leftmost first). */
typedef struct {
	const eval_tokenizer *tokenizer;
	uint32_t *tokens;
	size_t *next, *prev; /* NO_TOKEN at the ends */
	uint32_t *version;   /* bumped when a token is replaced or removed */
	merge_candidate *heap;
	size_t heap_size;
	char *scratch;       /* room for two concatenated pieces */
} merge_sequence;

#define NO_TOKEN SIZE_MAX

static int ranks_before(const merge_candidate *a, const merge_candidate *b)
{
	if (a->score != b->score)
		return a->score > b->score;
	return a->left < b->left;
}

static void heap_push(merge_sequence *seq, merge_candidate candidate)
{
	size_t i = seq->heap_size++;
	while (i > 0 && ranks_before(&candidate, &seq->heap[(i - 1) / 2])) {
		seq->heap[i] = seq->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	seq->heap[i] = candidate;
}

static merge_candidate heap_pop(merge_sequence *seq)
{
	merge_candidate top = seq->heap[0];
	merge_candidate last = seq->heap[--seq->heap_size];
	size_t i = 0;
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= seq->heap_size)
			break;
		if (child + 1 < seq->heap_size && ranks_before(&seq->heap[child + 1], &seq->heap[child]))
			child++;
		if (!ranks_before(&seq->heap[child], &last))
			break;
		seq->heap[i] = seq->heap[child];
		i = child;
	}
	seq->heap[i] = last;
	return top;
}

/* Adds the merge of `left` and `right` as a candidate when their concatenation is a token. */
static void consider_pair(merge_sequence *seq, size_t left, size_t right)
{
	if (left == NO_TOKEN || right == NO_TOKEN)
		return;
	const eval_tokenizer *tokenizer = seq->tokenizer;
	uint32_t a = seq->tokens[left], b = seq->tokens[right];
	size_t a_len = tokenizer->lengths[a], b_len = tokenizer->lengths[b];
	memcpy(seq->scratch, tokenizer->pieces[a], a_len);
	memcpy(seq->scratch + a_len, tokenizer->pieces[b], b_len);
	long id = lookup(tokenizer, seq->scratch, a_len + b_len);
	if (id < 0)
		return;
	merge_candidate candidate = {
		.score = tokenizer->scores[id],
		.id = (uint32_t)id,
		.left = left,
		.right = right,
		.left_version = seq->version[left],
		.right_version = seq->version[right],
	};
	heap_push(seq, candidate);
}

/* Applies merges, best first, until no adjacent pair forms a token, and compacts the
 * result to the front of seq->tokens. Returns the new token count. The outcome equals
 * rescanning all pairs after every merge, as llama2.c does, in O(n log n). */
static size_t merge_all(merge_sequence *seq, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		seq->next[i] = i + 1 < n ? i + 1 : NO_TOKEN;
		seq->prev[i] = i > 0 ? i - 1 : NO_TOKEN;
		seq->version[i] = 0;
	}
	for (size_t i = 0; i + 1 < n; i++)
		consider_pair(seq, i, i + 1);

	while (seq->heap_size > 0) {
		merge_candidate best = heap_pop(seq);
		if (seq->version[best.left] != best.left_version ||
		    seq->version[best.right] != best.right_version || seq->next[best.left] != best.right)
			continue; /* stale: one of the tokens changed or was merged away */
		size_t left = best.left, right = best.right;
		seq->tokens[left] = best.id;
		seq->version[left]++;
		seq->version[right]++;
		seq->next[left] = seq->next[right];
		if (seq->next[right] != NO_TOKEN)
			seq->prev[seq->next[right]] = left;
		consider_pair(seq, seq->prev[left], left);
		consider_pair(seq, left, seq->next[left]);
	}

	size_t count = 0;
	for (size_t i = n ? 0 : NO_TOKEN; i != NO_TOKEN; i = seq->next[i])
		seq->tokens[count++] = seq->tokens[i];
	return count;
}

/* Merges tokens[0 .. n) in place and stores the new count in *merged. */
static uc_status merge_tokens(const eval_tokenizer *tokenizer, uint32_t *tokens, size_t n,
			      size_t *merged, uc_error *err)
{
	size_t max_piece = 0;
	for (uint32_t i = 0; i < tokenizer->vocab_size; i++)
		if (tokenizer->lengths[i] > max_piece)
			max_piece = tokenizer->lengths[i];

	merge_sequence seq = {.tokenizer = tokenizer, .tokens = tokens};
	size_t slots = n ? n : 1, heap_slots;
	if (eval_mul_size(slots, 3, &heap_slots) != 0)
		return eval_fail(err, UC_ERR_NOMEM, "%zu tokens are too many to merge", n);
	seq.next = calloc(slots, sizeof *seq.next);
	seq.prev = calloc(slots, sizeof *seq.prev);
	seq.version = calloc(slots, sizeof *seq.version);
	seq.heap = calloc(heap_slots, sizeof *seq.heap); /* n - 1 pairs, then 2 per merge */
	seq.scratch = malloc(2 * max_piece + 1);
	uc_status rc = UC_OK;
	if (!seq.next || !seq.prev || !seq.version || !seq.heap || !seq.scratch)
		rc = eval_fail(err, UC_ERR_NOMEM, "out of memory merging %zu tokens", n);
	else
		*merged = merge_all(&seq, n);
	free(seq.next);
	free(seq.prev);
	free(seq.version);
	free(seq.heap);
	free(seq.scratch);
	return rc;
}

uc_status eval_tokenizer_encode(const eval_tokenizer *tokenizer, const char *text, size_t len,
				int bos, uint32_t **tokens_out, size_t *count, uc_error *err)
{
	*tokens_out = NULL;
	*count = 0;
	size_t capacity;
	if (eval_mul_size(len + 3, sizeof(uint32_t), &capacity) != 0)
		return eval_fail(err, UC_ERR_NOMEM, "text of %zu bytes is too long to encode", len);
	uint32_t *tokens = malloc(capacity);
	if (!tokens)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory encoding %zu bytes", len);

	size_t n = 0;
	if (bos)
		tokens[n++] = EVAL_BOS_TOKEN;
	size_t first = n; /* BOS never merges */
	long space = lookup(tokenizer, " ", 1);
	if (len > 0 && space >= 0)
		tokens[n++] = (uint32_t)space;
	n = split_characters(tokenizer, text, len, tokens, n);

	size_t merged = 0;
	uc_status rc = merge_tokens(tokenizer, tokens + first, n - first, &merged, err);
	if (rc != UC_OK) {
		free(tokens);
		return rc;
	}
	*tokens_out = tokens;
	*count = first + merged;
	return UC_OK;
}

uc_status eval_bytes_encode(const char *text, size_t len, uint32_t **tokens_out, size_t *count,
			    uc_error *err)
{
	*tokens_out = NULL;
	*count = 0;
	size_t bytes;
	if (eval_mul_size(len ? len : 1, sizeof(uint32_t), &bytes) != 0)
		return eval_fail(err, UC_ERR_NOMEM, "text of %zu bytes is too long to encode", len);
	uint32_t *tokens = malloc(bytes);
	if (!tokens)
		return eval_fail(err, UC_ERR_NOMEM, "out of memory encoding %zu bytes", len);
	for (size_t i = 0; i < len; i++)
		tokens[i] = (unsigned char)text[i];
	*tokens_out = tokens;
	*count = len;
	return UC_OK;
}
