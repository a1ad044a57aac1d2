/* Legacy llama2.c checkpoints (the format of llama2.c's run.c).
 *
 * Layout: seven little-endian int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size, seq_len), then float32 arrays in this order: token embedding [vocab, dim];
 * for all layers the attention RMS norms [dim], wq [dim, dim], wk and wv
 * [n_kv_heads * head_size, dim], wo [dim, dim], the FFN RMS norms [dim], w1 [hidden, dim],
 * w2 [dim, hidden], w3 [hidden, dim]; the final norm [dim]; two RoPE tables of
 * seq_len * head_size / 2 floats each; and, only when vocab_size is negative, a separate
 * classifier [vocab, dim]. Each array holds all layers back to back. */
#include "source_internal.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#define LLAMA2C_HEADER_BYTES 28
/* export.py of llama2.c writes this uint32 first in its versioned formats. */
#define LLAMA2C_VERSIONED_MAGIC 0x616b3432u

typedef struct {
	int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
	uint64_t vocab;        /* |vocab_size| */
	uint64_t head_size;
	uint64_t kv_dim;       /* n_kv_heads * head_size */
	int shared_classifier;
} llama2c_config;

/* One per-layer array of the file: its name pattern and its [rows, cols] per layer. */
typedef struct {
	const char *suffix;    /* the name after "layers.N." */
	uint64_t rows, cols;   /* cols == 0 for a vector */
} layer_array;

int ucp_llama2c_is_versioned(const uint8_t *file, uint64_t file_size)
{
	return file_size >= 4 && ucp_load_le32(file) == LLAMA2C_VERSIONED_MAGIC;
}

static uc_status fail_header(uc_error *err, const char *field, int32_t value, const char *rule)
{
	return ucp_fail(err, UC_ERR_FORMAT, "llama2.c header: %s is %d; %s", field, (int)value, rule);
}

static uc_status read_config(const uint8_t *file, uint64_t file_size, llama2c_config *cfg,
			     uc_error *err)
{
	if (file_size < LLAMA2C_HEADER_BYTES)
		return ucp_fail(err, UC_ERR_FORMAT,
				"file is %llu bytes, shorter than the 28-byte llama2.c header",
				(unsigned long long)file_size);
	int32_t *fields[] = { &cfg->dim, &cfg->hidden_dim, &cfg->n_layers, &cfg->n_heads,
			      &cfg->n_kv_heads, &cfg->vocab_size, &cfg->seq_len };
	for (int i = 0; i < 7; i++)
		*fields[i] = (int32_t)ucp_load_le32(file + 4 * i);

	const char *names[] = { "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads" };
	for (int i = 0; i < 5; i++)
		if (*fields[i] <= 0)
			return fail_header(err, names[i], *fields[i], "it must be positive");
	if (cfg->seq_len <= 0)
		return fail_header(err, "seq_len", cfg->seq_len, "it must be positive");
	if (cfg->vocab_size == 0 || cfg->vocab_size == INT32_MIN)
		return fail_header(err, "vocab_size", cfg->vocab_size,
				   "it must be non-zero (negative when a separate classifier follows)");
	if (cfg->dim % cfg->n_heads != 0)
		return ucp_fail(err, UC_ERR_FORMAT,
				"llama2.c header: dim %d is not divisible by n_heads %d",
				(int)cfg->dim, (int)cfg->n_heads);
	if (cfg->n_heads % cfg->n_kv_heads != 0)
		return ucp_fail(err, UC_ERR_FORMAT,
				"llama2.c header: n_heads %d is not divisible by n_kv_heads %d",
				(int)cfg->n_heads, (int)cfg->n_kv_heads);

	cfg->head_size = (uint64_t)(cfg->dim / cfg->n_heads);
	/* RoPE rotates pairs of components, so the tables need an even head size. */
	if (cfg->head_size % 2 != 0)
		return ucp_fail(err, UC_ERR_FORMAT,
				"llama2.c header: head size %llu (dim / n_heads) is odd; RoPE needs "
				"an even head size",
				(unsigned long long)cfg->head_size);
	cfg->kv_dim = (uint64_t)cfg->n_kv_heads * cfg->head_size;
	cfg->shared_classifier = cfg->vocab_size > 0;
	cfg->vocab = cfg->vocab_size > 0 ? (uint64_t)cfg->vocab_size : (uint64_t)-(int64_t)cfg->vocab_size;
	return UC_OK;
}

static void layer_arrays(const llama2c_config *cfg, layer_array arrays[9])
{
	uint64_t dim = (uint64_t)cfg->dim, hidden = (uint64_t)cfg->hidden_dim;
	const layer_array table[9] = {
		{ "attention_norm.weight", dim, 0 },
		{ "attention.wq.weight", dim, dim },
		{ "attention.wk.weight", cfg->kv_dim, dim },
		{ "attention.wv.weight", cfg->kv_dim, dim },
		{ "attention.wo.weight", dim, dim },
		{ "ffn_norm.weight", dim, 0 },
		{ "feed_forward.w1.weight", hidden, dim },
		{ "feed_forward.w2.weight", dim, hidden },
		{ "feed_forward.w3.weight", hidden, dim },
	};
	memcpy(arrays, table, sizeof table);
}

static uint64_t array_elements(const layer_array *a)
{
	return a->cols ? a->rows * a->cols : a->rows;
}

/* Computes the exact file size the header implies. Every factor is below 2^31, so each
 * product of two fits; sums and the products with n_layers are checked. */
static uc_status expected_size(const llama2c_config *cfg, uint64_t *out, uc_error *err)
{
	layer_array arrays[9];
	layer_arrays(cfg, arrays);
	uint64_t dim = (uint64_t)cfg->dim;
	uint64_t floats = cfg->vocab * dim;   /* token embedding */
	int overflow = 0;
	for (int i = 0; i < 9; i++) {
		uint64_t all_layers;
		overflow |= __builtin_mul_overflow(array_elements(&arrays[i]), (uint64_t)cfg->n_layers,
						   &all_layers);
		overflow |= __builtin_add_overflow(floats, all_layers, &floats);
	}
	uint64_t rope = (uint64_t)cfg->seq_len * cfg->head_size;   /* both tables */
	overflow |= __builtin_add_overflow(floats, dim + rope, &floats);
	if (!cfg->shared_classifier)
		overflow |= __builtin_add_overflow(floats, cfg->vocab * dim, &floats);
	overflow |= __builtin_mul_overflow(floats, (uint64_t)4, &floats);
	overflow |= __builtin_add_overflow(floats, (uint64_t)LLAMA2C_HEADER_BYTES, &floats);
	if (overflow)
		return ucp_fail(err, UC_ERR_FORMAT,
				"llama2.c header: the tensor sizes implied by the header overflow 64 bits");
	*out = floats;
	return UC_OK;
}

static uc_status add_tensor(ucp_parsed_file *parsed, const char *name, uint64_t rows,
			    uint64_t cols, uint64_t *offset, uc_error *err)
{
	ucp_tensor_entry *t = &parsed->tensors[parsed->tensor_count];
	t->name = ucp_strdup(name);
	if (!t->name)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory for tensor names");
	t->dtype = UC_DTYPE_F32;
	t->ndim = cols ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->n_elements = cols ? rows * cols : rows;
	t->nbytes = t->n_elements * 4;
	t->offset = *offset;
	*offset += t->nbytes;
	parsed->tensor_count++;
	return UC_OK;
}

/* Names every tensor at its offset, skipping the two RoPE tables: they are computed from
 * seq_len and head_size, not trained, and the safetensors conversion drops them too. */
static uc_status add_tensors(const llama2c_config *cfg, ucp_parsed_file *parsed, uc_error *err)
{
	layer_array arrays[9];
	layer_arrays(cfg, arrays);
	uint64_t dim = (uint64_t)cfg->dim;
	uint64_t offset = LLAMA2C_HEADER_BYTES;
	char name[64];

	uc_status rc = add_tensor(parsed, "tok_embeddings.weight", cfg->vocab, dim, &offset, err);
	for (int i = 0; i < 9 && rc == UC_OK; i++) {
		/* The file holds this array for every layer before the next array begins. */
		for (int32_t layer = 0; layer < cfg->n_layers && rc == UC_OK; layer++) {
			snprintf(name, sizeof name, "layers.%u.%s", (unsigned)layer, arrays[i].suffix);
			rc = add_tensor(parsed, name, arrays[i].rows, arrays[i].cols, &offset, err);
		}
	}
	if (rc == UC_OK)
		rc = add_tensor(parsed, "norm.weight", dim, 0, &offset, err);
	offset += (uint64_t)cfg->seq_len * cfg->head_size * 4;
	if (rc == UC_OK && !cfg->shared_classifier)
		rc = add_tensor(parsed, "output.weight", cfg->vocab, dim, &offset, err);
	return rc;
}

/* Stores the header as JSON under the metadata key "config", with the field names of the
 * safetensors conversion. */
static uc_status add_config(const llama2c_config *cfg, ucp_parsed_file *parsed, uc_error *err)
{
	uc_status rc = UC_OK;
	char *text = NULL;
	json_t *config = json_pack("{s:i, s:i, s:i, s:i, s:i, s:I, s:i, s:b}",
				   "dim", (int)cfg->dim, "hidden_dim", (int)cfg->hidden_dim,
				   "n_layers", (int)cfg->n_layers, "n_heads", (int)cfg->n_heads,
				   "n_kv_heads", (int)cfg->n_kv_heads,
				   "vocab_size", (json_int_t)cfg->vocab, "max_seq_len", (int)cfg->seq_len,
				   "shared_classifier", cfg->shared_classifier);
	if (config)
		text = json_dumps(config, 0);
	parsed->metadata = ucp_calloc(1, sizeof *parsed->metadata);
	if (!text || !parsed->metadata) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the llama2.c config");
		goto out;
	}
	parsed->metadata[0].key = ucp_strdup("config");
	if (!parsed->metadata[0].key) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the llama2.c config");
		goto out;
	}
	parsed->metadata[0].value = text;   /* jansson allocates through ucp_malloc */
	text = NULL;
	parsed->metadata_count = 1;

out:
	ucp_free(text);
	json_decref(config);
	return rc;
}

uc_status ucp_llama2c_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
			    uc_error *err)
{
	*out = NULL;
	if (ucp_llama2c_is_versioned(file, file_size))
		return ucp_fail(err, UC_ERR_UNSUPPORTED,
				"llama2.c checkpoint in the versioned format (magic \"ak42\") is not "
				"supported; export it in the legacy format (llama2.c export.py "
				"--version 0)");

	llama2c_config cfg;
	uc_status rc = read_config(file, file_size, &cfg, err);
	if (rc != UC_OK)
		return rc;
	uint64_t size = 0;
	rc = expected_size(&cfg, &size, err);
	if (rc != UC_OK)
		return rc;
	if (size != file_size)
		return ucp_fail(err, UC_ERR_FORMAT,
				"llama2.c file is %llu bytes but its header (dim %d, hidden_dim %d, "
				"n_layers %d, vocab_size %d, seq_len %d, %s classifier) implies %llu; "
				"the file is truncated or the header is wrong",
				(unsigned long long)file_size, (int)cfg.dim, (int)cfg.hidden_dim,
				(int)cfg.n_layers, (int)cfg.vocab_size, (int)cfg.seq_len,
				cfg.shared_classifier ? "shared" : "separate", (unsigned long long)size);

	ucp_parsed_file *parsed = ucp_calloc(1, sizeof *parsed);
	size_t count = 2 + 9 * (size_t)cfg.n_layers + (cfg.shared_classifier ? 0 : 1);
	if (parsed)
		parsed->tensors = ucp_calloc(count, sizeof *parsed->tensors);
	if (!parsed || !parsed->tensors) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory for %zu llama2.c tensors", count);
		goto out;
	}
	rc = add_tensors(&cfg, parsed, err);
	if (rc == UC_OK)
		rc = add_config(&cfg, parsed, err);

out:
	if (rc != UC_OK) {
		ucp_parsed_file_free(parsed);
		return rc;
	}
	*out = parsed;
	return UC_OK;
}
