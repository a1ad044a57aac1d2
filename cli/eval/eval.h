/* The perplexity harness behind `uc eval`: float32 weights, the Llama and RWKV v5 forward
 * passes, the llama2.c BPE tokenizer, corpus splitting, the scoring protocol and the
 * evaluation record. docs/eval.md describes the protocol and the record.
 *
 * Every fallible function returns a uc_status and fills `err` (may be NULL) with a message
 * that names the bad file, tensor or value. Nothing here prints or exits except
 * uc_cmd_eval. */
#ifndef UC_EVAL_H
#define UC_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "uc_error.h"
#include "uc_hash.h"
#include "uc_source.h"

#define EVAL_HARNESS "uc-eval 0.1.0"
#define EVAL_BOS_TOKEN 1u

/* ---- Weights: named float32 tensors (weights.c, weights_source.c, weights_pack.c) ---- */

typedef struct {
	char *name;
	uint32_t ndim;
	uint64_t shape[UC_MAX_DIMS];
	uint64_t n_elements;
	float *data;
} eval_tensor;

/* A set of tensors owned by the set, plus an optional model configuration (JSON text). */
typedef struct eval_weights eval_weights;

/* Creates an empty set. The caller frees it with eval_weights_free. */
uc_status eval_weights_new(eval_weights **out, uc_error *err);
void eval_weights_free(eval_weights *weights);

/* Adds a tensor with uninitialised data and returns it through *out for the caller to
 * fill (borrowed, valid until the next eval_weights_add). A duplicate name is
 * UC_ERR_INVALID. */
uc_status eval_weights_add(eval_weights *weights, const char *name, uint32_t ndim,
			   const uint64_t *shape, eval_tensor **out, uc_error *err);

/* Returns the tensor with this exact name, or NULL. Borrowed. */
const eval_tensor *eval_weights_find(const eval_weights *weights, const char *name);
size_t eval_weights_count(const eval_weights *weights);
const eval_tensor *eval_weights_at(const eval_weights *weights, size_t index);

/* Stores a copy of `json` as the model configuration. */
uc_status eval_weights_set_config(eval_weights *weights, const char *json, uc_error *err);
/* Returns the configuration JSON, or NULL when none was set. Borrowed. */
const char *eval_weights_config(const eval_weights *weights);

/* Converts every tensor of `src` to float32 and copies its "config" metadata. */
uc_status eval_weights_from_source(const uc_source *src, eval_weights **out, uc_error *err);

/* What a pack's reconstruction was loaded from. */
typedef struct {
	uint8_t manifest_sha256[UC_SHA256_BYTES];
	uc_dtype dtype; /* target dtype of the reconstruction */
} eval_pack_info;

/* Opens the pack at `pack_dir`, rebuilds every tensor and converts it to float32. The
 * pack must contain exactly the tensors of `reference` (the source weights) with the same
 * shapes. A pack of another model is UC_ERR_STRUCTURE naming the first tensor that
 * differs. The configuration is copied from `reference`. */
uc_status eval_weights_from_pack(const char *pack_dir, const eval_weights *reference,
				 eval_weights **out, eval_pack_info *info, uc_error *err);

/* ---- Models (model.c dispatches to llama.c and rwkv.c) ---- */

typedef enum {
	EVAL_ARCH_LLAMA = 0,
	EVAL_ARCH_RWKV5_1 = 1,
	EVAL_ARCH_RWKV5_2 = 2,
} eval_arch;

/* Returns "llama", "rwkv-5.1" or "rwkv-5.2". */
const char *eval_arch_name(eval_arch arch);
/* Returns the registry comparator: "canonical-transformer" or "architecture-compatible". */
const char *eval_arch_comparator(eval_arch arch);

typedef struct eval_model eval_model;

/* Detects the architecture from the tensor names (`tok_embeddings.weight` for Llama,
 * `emb.weight` and `blocks.0.att.*` for RWKV), reads the configuration and checks every
 * tensor's shape. Takes ownership of `weights`, also on failure. The caller frees the
 * model with eval_model_free. */
uc_status eval_model_new(eval_weights *weights, eval_model **out, uc_error *err);
void eval_model_free(eval_model *model);
eval_arch eval_model_arch(const eval_model *model);
uint32_t eval_model_vocab_size(const eval_model *model);
/* Returns the weights the model was built from. Borrowed. */
const eval_weights *eval_model_weights(const eval_model *model);
/* Returns the maximum context length the model was trained for, or 0 for a recurrent model,
 * which has no such limit. */
uint32_t eval_model_max_seq_len(const eval_model *model);

/* Per-sequence state: the KV cache of a Llama model or the recurrent state of RWKV. One
 * state belongs to one thread at a time, but several states may share one model. The KV
 * cache holds `positions` tokens: 0 or a value above the model's maximum sequence length
 * means that maximum. A recurrent state has no such limit and ignores `positions`. */
typedef struct eval_state eval_state;
uc_status eval_state_new(const eval_model *model, uint32_t positions, eval_state **out,
			 uc_error *err);
void eval_state_free(eval_state *state);
/* Returns the state to the start of a sequence (empty KV cache, zeroed recurrent state). */
void eval_state_reset(eval_state *state);
/* Feeds one token at the next position and returns the logits for the token after it:
 * vocab_size floats, borrowed until the next call. The caller guarantees token <
 * vocab_size and, for a Llama state, fewer tokens since the last reset than the state's
 * `positions`. */
const float *eval_state_step(eval_state *state, uint32_t token);

/* Scores one run from a fresh state: feeds tokens[0 .. count) and stores in
 * nll[i - score_from] the negative log-likelihood of tokens[i + 1] at each position i in
 * [score_from, count), so tokens[count] must exist. A Llama model splits the positions
 * among `threads` threads (0 means 1). Each position's arithmetic is that of
 * eval_state_step, so the values do not depend on `threads`. RWKV uses one thread. The
 * caller guarantees token ids below the vocabulary size, count > score_from, and for a
 * Llama model count <= the maximum sequence length. */
uc_status eval_model_score_run(const eval_model *model, const uint32_t *tokens, size_t count,
			       size_t score_from, unsigned threads, double *nll, uc_error *err);

/* ---- Tokenizer (tokenizer.c) ---- */

/* A llama2.c tokenizer file: int32 max_token_length, then per token a float32 merge score,
 * an int32 length and the bytes, up to the end of the file. */
typedef struct eval_tokenizer eval_tokenizer;

uc_status eval_tokenizer_load(const char *path, eval_tokenizer **out, uc_error *err);
/* Parses tokenizer bytes. `name` is used in error messages. */
uc_status eval_tokenizer_parse(const uint8_t *data, size_t len, const char *name,
			       eval_tokenizer **out, uc_error *err);
void eval_tokenizer_free(eval_tokenizer *tokenizer);
uint32_t eval_tokenizer_vocab_size(const eval_tokenizer *tokenizer);
/* Returns the merge score of token `id` (0 for an id outside the vocabulary). */
float eval_tokenizer_score(const eval_tokenizer *tokenizer, uint32_t id);
/* Returns the bytes of token `id` and stores their count in *len. Borrowed. */
const char *eval_tokenizer_piece(const eval_tokenizer *tokenizer, uint32_t id, size_t *len);

/* Encodes `text` as llama2.c does: BOS (when `bos`), the token of " " as a dummy prefix
 * when the text is not empty, one token per UTF-8 character or per byte (id = byte + 3)
 * when the character is not in the vocabulary, then merges of adjacent pairs, each time the
 * pair whose concatenation has the highest score (the first such pair on ties). The caller
 * frees *tokens with free(). */
uc_status eval_tokenizer_encode(const eval_tokenizer *tokenizer, const char *text, size_t len,
				int bos, uint32_t **tokens, size_t *count, uc_error *err);

/* Byte-level encoding: one token per byte, no BOS. The caller frees *tokens with free(). */
uc_status eval_bytes_encode(const char *text, size_t len, uint32_t **tokens, size_t *count,
			    uc_error *err);

/* ---- Corpus (corpus.c) ---- */

/* Reads a whole file into a new buffer, which the caller frees with free(). `what` names
 * the file's role in error messages ("corpus", "tokenizer"). */
uc_status eval_read_file(const char *path, const char *what, char **out, size_t *len,
			 uc_error *err);

typedef struct {
	const char *text; /* points into the corpus buffer, not NUL-terminated */
	size_t len;
} eval_document;

typedef struct {
	char *data;               /* the whole file */
	size_t len;
	uint8_t sha256[UC_SHA256_BYTES];
	eval_document *documents;
	size_t count;
} eval_corpus;

/* Splits `data` on "<|endoftext|>", strips ASCII white space from both ends of each piece
 * and drops empty pieces. Takes ownership of `data` (allocated with malloc), also on
 * failure. The caller frees the corpus with eval_corpus_free. */
uc_status eval_corpus_split(char *data, size_t len, eval_corpus **out, uc_error *err);
/* Reads, hashes and splits a corpus file. */
uc_status eval_corpus_load(const char *path, eval_corpus **out, uc_error *err);
void eval_corpus_free(eval_corpus *corpus);

/* ---- Scoring protocol (eval.c) ---- */

/* One forward run over a piece of a document: positions [start, end) are fed, and the
 * predictions made at positions [score_from, end) are scored. The prediction at position
 * i is of token i + 1, so end is at most the token count minus one. */
typedef struct {
	size_t start;
	size_t score_from;
	size_t end;
} eval_window;

/* Plans the runs for a document of `count` tokens. With window == 0 there is one run over
 * the whole document (the caller truncates it first). Otherwise runs of at most `window`
 * positions start every `stride` positions (0 < stride <= window) and each prediction is
 * scored once, in the first run that contains its position. Stores up to `capacity` runs
 * in `out` and returns how many the plan has. */
size_t eval_plan_windows(size_t count, uint32_t window, uint32_t stride, eval_window *out,
			 size_t capacity);

typedef struct {
	uint32_t window;  /* 0: whole documents, truncated to the model's max sequence length */
	uint32_t stride;  /* with window > 0: positions between window starts */
	unsigned threads; /* worker threads; 0 means the number of online CPUs */
} eval_options;

/* Tokenised documents, owned by the set. */
typedef struct {
	uint32_t **tokens;
	size_t *lengths;
	size_t count;
} eval_token_set;

/* Encodes every document of `corpus` with `tokenizer`, or byte-level when it is NULL. */
uc_status eval_token_set_encode(const eval_corpus *corpus, const eval_tokenizer *tokenizer,
				eval_token_set *out, uc_error *err);
void eval_token_set_free(eval_token_set *set);

typedef struct {
	double nll_sum;       /* natural log, summed over scored predictions */
	uint64_t scored;      /* predictions scored */
	uint64_t fed;         /* tokens run through the model (more than scored with overlap) */
	uint64_t documents;
	double seconds;       /* wall-clock time of the forward passes */
} eval_score;

#define EVAL_MAX_THREADS 256

/* Returns the worker count for `requested` threads: the number of online CPUs for 0, and
 * at most EVAL_MAX_THREADS. */
unsigned eval_choose_threads(unsigned requested);

/* Returns exp(nll_sum / scored), or NAN when nothing was scored. */
double eval_score_ppl(const eval_score *score);

/* Runs the protocol over `set`: a fresh state for each document or window, every scored
 * prediction's negative log-likelihood summed in document and position order, so the
 * result does not depend on the thread count. Without windows a document longer than the
 * model's maximum sequence length is truncated to it. Token ids at or above the model's
 * vocabulary size, and a set with no prediction to score, are UC_ERR_INVALID. */
uc_status eval_score_tokens(const eval_model *model, const eval_token_set *set,
			    const eval_options *options, eval_score *out, uc_error *err);

/* ---- The evaluation record (record.c) ---- */

typedef struct {
	const char *name;      /* file name as given (the record keeps its base name) */
	uint8_t sha256[UC_SHA256_BYTES];
} eval_file_id;

/* Everything `uc eval` reports. Strings are borrowed. */
typedef struct {
	eval_arch arch;
	eval_file_id source;
	int has_pack;
	eval_file_id pack_manifest; /* the pack directory, and the SHA-256 of its manifest.json */
	const char *pack_dtype;     /* the dtype the pack reconstructs to */
	eval_file_id corpus;
	int has_tokenizer;          /* 0: byte-level */
	eval_file_id tokenizer;
	uint32_t seq_len;           /* maximum positions per run; 0 means whole documents */
	uint32_t window, stride;    /* window 0: no sliding windows */
	eval_score baseline;
	eval_score compressed;      /* meaningful when has_pack */
	unsigned threads;
	int64_t measured_at;        /* seconds since the Unix epoch, UTC */
} eval_record;

/* Returns the record as the JSON document that docs/eval.md specifies (new string, free
 * with free()), or NULL when out of memory. */
char *eval_record_to_json(const eval_record *record);
/* Returns the record as readable lines (new string, free with free()), or NULL when out
 * of memory. */
char *eval_record_to_text(const eval_record *record);

/* ---- Command (eval_cmd.c) ---- */

/* `uc eval`: argv[0] is "eval". Returns the process exit code. */
int uc_cmd_eval(int argc, char **argv);

#endif
