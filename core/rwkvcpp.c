/* rwkv.cpp model files.
 *
 * Layout, all integers little-endian int32: the magic 0x67676d66 ("ggmf"), the format
 * version (100 or 101), n_vocab, n_embed, n_layer and the file's data type. Then tensors
 * until the end of the file, each: n_dims, name length, data type, n_dims dimensions in
 * ggml order (fastest-varying first, the reverse of PyTorch), the name bytes, and the
 * elements. Data types follow rwkv.cpp's numbering: 0 FP32, 1 FP16, 2 Q4_0, 3 Q4_1,
 * 4 Q4_1_O, 5 Q4_2, 6 Q4_3, 7 Q5_0, 8 Q5_1, 9 Q8_0; only FP32 and FP16 are read. */
#include "source_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#define RWKV_MAGIC 0x67676d66u
#define RWKV_HEADER_BYTES 24
#define RWKV_TENSOR_HEADER_BYTES 12
/* ggml tensors have at most four dimensions. */
#define RWKV_MAX_DIMS 4
/* Maximum tensor name length accepted, far above the names rwkv.cpp writes (such as
 * "blocks.11.att.time_mix_k"). */
#define RWKV_MAX_NAME 1024

static const char *const rwkv_type_names[] = {
	"FP32", "FP16", "Q4_0", "Q4_1", "Q4_1_O", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0",
};

int ucp_rwkvcpp_looks_like(const uint8_t *file, uint64_t file_size)
{
	return file_size >= 4 && ucp_load_le32(file) == RWKV_MAGIC;
}

/* Maps an rwkv.cpp data type to ours, or fails naming it. */
static uc_status read_type(int32_t type, const char *context, uc_dtype *out, uc_error *err)
{
	if (type == 0 || type == 1) {
		*out = type == 0 ? UC_DTYPE_F32 : UC_DTYPE_F16;
		return UC_OK;
	}
	size_t known = sizeof rwkv_type_names / sizeof rwkv_type_names[0];
	if (type > 1 && (size_t)type < known)
		return ucp_fail(err, UC_ERR_UNSUPPORTED,
				"%s: data type %d (%s) is not supported; only FP32 (0) and FP16 (1) "
				"data can be read, so convert the model to FP32 or FP16 first",
				context, (int)type, rwkv_type_names[type]);
	return ucp_fail(err, UC_ERR_FORMAT, "%s: data type %d is not an rwkv.cpp data type", context,
			(int)type);
}

typedef struct {
	int32_t version, n_vocab, n_embed, n_layer, data_type;
} rwkv_header;

static uc_status read_header(const uint8_t *file, uint64_t file_size, rwkv_header *h,
			     uc_error *err)
{
	if (file_size < RWKV_HEADER_BYTES)
		return ucp_fail(err, UC_ERR_FORMAT,
				"file is %llu bytes, shorter than the 24-byte rwkv.cpp header",
				(unsigned long long)file_size);
	if (ucp_load_le32(file) != RWKV_MAGIC)
		return ucp_fail(err, UC_ERR_FORMAT, "rwkv.cpp magic 0x%08x is not 0x67676d66 (\"ggmf\")",
				(unsigned)ucp_load_le32(file));
	h->version = (int32_t)ucp_load_le32(file + 4);
	h->n_vocab = (int32_t)ucp_load_le32(file + 8);
	h->n_embed = (int32_t)ucp_load_le32(file + 12);
	h->n_layer = (int32_t)ucp_load_le32(file + 16);
	h->data_type = (int32_t)ucp_load_le32(file + 20);

	if (h->version != 100 && h->version != 101)
		return ucp_fail(err, UC_ERR_UNSUPPORTED,
				"rwkv.cpp format version %d is not supported; versions 100 and 101 are",
				(int)h->version);
	if (h->n_vocab <= 0 || h->n_embed <= 0 || h->n_layer <= 0)
		return ucp_fail(err, UC_ERR_FORMAT,
				"rwkv.cpp header: n_vocab %d, n_embed %d and n_layer %d must all be "
				"positive",
				(int)h->n_vocab, (int)h->n_embed, (int)h->n_layer);
	uc_dtype unused;
	return read_type(h->data_type, "rwkv.cpp header", &unused, err);
}

/* Appends an empty entry to parsed->tensors, growing the array; *capacity tracks it. */
static ucp_tensor_entry *append_entry(ucp_parsed_file *parsed, size_t *capacity)
{
	if (parsed->tensor_count == *capacity) {
		size_t grown = *capacity ? 2 * *capacity : 64;
		ucp_tensor_entry *tensors = ucp_realloc(parsed->tensors, grown * sizeof *tensors);
		if (!tensors)
			return NULL;
		parsed->tensors = tensors;
		*capacity = grown;
	}
	ucp_tensor_entry *entry = &parsed->tensors[parsed->tensor_count];
	memset(entry, 0, sizeof *entry);
	return entry;
}

/* Reads the tensor record at *offset into `entry` (name excluded) and returns where its
 * name starts through `name_at`. Advances *offset past the data. */
static uc_status read_tensor(const uint8_t *file, uint64_t file_size, uint64_t *offset,
			     ucp_tensor_entry *entry, uint64_t *name_at, uint32_t *name_len,
			     uc_error *err)
{
	uint64_t at = *offset;
	if (file_size - at < RWKV_TENSOR_HEADER_BYTES)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor record at offset %llu is truncated: %llu bytes remain, the "
				"record header needs 12",
				(unsigned long long)at, (unsigned long long)(file_size - at));
	int32_t n_dims = (int32_t)ucp_load_le32(file + at);
	int32_t length = (int32_t)ucp_load_le32(file + at + 4);
	int32_t type = (int32_t)ucp_load_le32(file + at + 8);
	at += RWKV_TENSOR_HEADER_BYTES;

	if (n_dims < 1 || n_dims > RWKV_MAX_DIMS)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor record at offset %llu: %d dimensions; rwkv.cpp tensors have 1 "
				"to 4",
				(unsigned long long)*offset, (int)n_dims);
	if (length < 1 || length > RWKV_MAX_NAME)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor record at offset %llu: name length %d is not between 1 and %d",
				(unsigned long long)*offset, (int)length, RWKV_MAX_NAME);
	if (file_size - at < 4 * (uint64_t)n_dims + (uint64_t)length)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor record at offset %llu is truncated before its name ends",
				(unsigned long long)*offset);

	/* ggml lists the fastest-varying dimension first; PyTorch lists it last. */
	uint64_t elements = 1;
	entry->ndim = (uint32_t)n_dims;
	for (int32_t i = 0; i < n_dims; i++) {
		int32_t dim = (int32_t)ucp_load_le32(file + at + 4 * (uint64_t)i);
		if (dim <= 0)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor record at offset %llu: dimension %d is %d, not positive",
					(unsigned long long)*offset, (int)i, (int)dim);
		entry->shape[n_dims - 1 - i] = (uint64_t)dim;
		if (__builtin_mul_overflow(elements, (uint64_t)dim, &elements))
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor record at offset %llu: the element count overflows 64 bits",
					(unsigned long long)*offset);
	}
	at += 4 * (uint64_t)n_dims;
	*name_at = at;
	*name_len = (uint32_t)length;
	at += (uint64_t)length;

	if (memchr(file + *name_at, 0, (size_t)length))
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor record at offset %llu: the name contains a NUL byte",
				(unsigned long long)*offset);
	char context[RWKV_MAX_NAME + 16];
	int written = snprintf(context, sizeof context, "tensor \"%.*s\"", (int)length,
			       (const char *)file + *name_at);
	assert(written > 0);
	assert((size_t)written < sizeof context);   /* because length <= RWKV_MAX_NAME */
	uc_status rc = read_type(type, context, &entry->dtype, err);
	if (rc != UC_OK)
		return rc;

	entry->n_elements = elements;
	if (__builtin_mul_overflow(elements, (uint64_t)ucp_dtype_size(entry->dtype), &entry->nbytes) ||
	    entry->nbytes > file_size - at)
		return ucp_fail(err, UC_ERR_FORMAT,
				"%s: %llu elements of %s need more than the %llu bytes left in the "
				"file; the file is truncated",
				context, (unsigned long long)elements, rwkv_type_names[type],
				(unsigned long long)(file_size - at));
	entry->offset = at;
	*offset = at + entry->nbytes;
	return UC_OK;
}

/* Stores the header as JSON under the metadata key "config", with the field names of
 * the safetensors conversion of these files. */
static uc_status add_config(const rwkv_header *h, ucp_parsed_file *parsed, uc_error *err)
{
	uc_status rc = UC_OK;
	char *text = NULL;
	json_t *config = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i}", "magic", "0x67676d66",
				   "version", (int)h->version, "n_vocab", (int)h->n_vocab,
				   "n_embed", (int)h->n_embed, "n_layer", (int)h->n_layer,
				   "data_type", (int)h->data_type);
	if (config)
		text = json_dumps(config, 0);
	parsed->metadata = ucp_calloc(1, sizeof *parsed->metadata);
	if (text && parsed->metadata)
		parsed->metadata[0].key = ucp_strdup("config");
	if (!text || !parsed->metadata || !parsed->metadata[0].key) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the rwkv.cpp config");
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

static uc_status read_tensors(const uint8_t *file, uint64_t file_size, ucp_parsed_file *parsed,
			      uc_error *err)
{
	size_t capacity = 0;
	uint64_t offset = RWKV_HEADER_BYTES;
	while (offset < file_size) {
		ucp_tensor_entry *entry = append_entry(parsed, &capacity);
		if (!entry)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory for rwkv.cpp tensors");
		uint64_t name_at;
		uint32_t name_len;
		uc_status rc = read_tensor(file, file_size, &offset, entry, &name_at, &name_len, err);
		if (rc != UC_OK)
			return rc;
		entry->name = ucp_malloc((size_t)name_len + 1);
		if (!entry->name)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory for tensor names");
		memcpy(entry->name, file + name_at, name_len);
		entry->name[name_len] = '\0';
		parsed->tensor_count++;
	}
	if (parsed->tensor_count == 0)
		return ucp_fail(err, UC_ERR_FORMAT, "rwkv.cpp file has a header but no tensors");
	return UC_OK;
}

uc_status ucp_rwkvcpp_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
			    uc_error *err)
{
	*out = NULL;
	rwkv_header header = { 0 };
	uc_status rc = read_header(file, file_size, &header, err);
	if (rc != UC_OK)
		return rc;

	ucp_parsed_file *parsed = ucp_calloc(1, sizeof *parsed);
	if (!parsed)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory for rwkv.cpp tensors");
	rc = read_tensors(file, file_size, parsed, err);
	if (rc == UC_OK)
		rc = add_config(&header, parsed, err);
	if (rc != UC_OK) {
		ucp_parsed_file_free(parsed);
		return rc;
	}
	*out = parsed;
	return UC_OK;
}
