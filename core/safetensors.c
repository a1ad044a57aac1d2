/* safetensors header parser for untrusted bytes.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (an object whose
 * keys are tensor names plus an optional "__metadata__"), then the data region. Every
 * entry is {"dtype", "shape", "data_offsets": [begin, end]} with offsets relative to the
 * data region. The tensors must cover the data region exactly, with no gap or overlap. */
#include "source_internal.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* Longest prefix of a tensor name quoted in a message. */
#define ST_NAME_MAX_SHOWN 200

/* The dtypes we read; any other safetensors dtype (I8, F64, F8_E4M3, ...) is unsupported. */
static const struct {
	const char *name;
	uc_dtype dtype;
} st_dtypes[] = {
	{ "F32", UC_DTYPE_F32 },
	{ "F16", UC_DTYPE_F16 },
	{ "BF16", UC_DTYPE_BF16 },
};

const char *ucp_st_dtype_name(uc_dtype dtype)
{
	switch (dtype) {
	case UC_DTYPE_F32:
		return "F32";
	case UC_DTYPE_F16:
		return "F16";
	case UC_DTYPE_BF16:
		return "BF16";
	}
	return "?";
}

size_t ucp_dtype_size(uc_dtype dtype)
{
	switch (dtype) {
	case UC_DTYPE_F32:
		return 4;
	case UC_DTYPE_F16:
	case UC_DTYPE_BF16:
		return 2;
	}
	return 0;
}

void ucp_parsed_file_free(ucp_parsed_file *parsed)
{
	if (!parsed)
		return;
	for (size_t i = 0; i < parsed->tensor_count; i++)
		ucp_free(parsed->tensors[i].name);
	for (size_t i = 0; i < parsed->metadata_count; i++) {
		ucp_free(parsed->metadata[i].key);
		ucp_free(parsed->metadata[i].value);
	}
	ucp_free(parsed->tensors);
	ucp_free(parsed->metadata);
	ucp_free(parsed);
}

/* Checks the length prefix against the file; allocates nothing. */
static uc_status check_header_length(uint64_t file_size, uint64_t header_len, uc_error *err)
{
	if (file_size < 8)
		return ucp_fail(err, UC_ERR_FORMAT,
				"file is %llu bytes, shorter than the 8-byte safetensors length prefix",
				(unsigned long long)file_size);
	if (header_len > UCP_ST_MAX_HEADER_BYTES)
		return ucp_fail(err, UC_ERR_FORMAT,
				"header length %llu exceeds the limit of %u bytes; the file is corrupt "
				"or not safetensors",
				(unsigned long long)header_len, UCP_ST_MAX_HEADER_BYTES);
	if (header_len > file_size - 8)
		return ucp_fail(err, UC_ERR_FORMAT,
				"header length %llu exceeds the %llu bytes after the length prefix; "
				"the file is truncated or not safetensors",
				(unsigned long long)header_len, (unsigned long long)(file_size - 8));
	if (header_len < 2)
		return ucp_fail(err, UC_ERR_FORMAT,
				"header length %llu is too short for a JSON object",
				(unsigned long long)header_len);
	return UC_OK;
}

int ucp_st_looks_like(const uint8_t *file, uint64_t file_size)
{
	if (file_size < 10)
		return 0;
	uint64_t header_len = ucp_load_le64(file);
	if (header_len < 2 || header_len > UCP_ST_MAX_HEADER_BYTES || header_len > file_size - 8)
		return 0;
	return file[8] == '{';
}

const char *ucp_json_error_hint(const char *jansson_text)
{
	if (strstr(jansson_text, "\\u0000") || strstr(jansson_text, "NUL byte"))
		return " (a key or string contains the escape \\u0000, a NUL character, which is "
		       "not allowed)";
	if (strstr(jansson_text, "duplicate"))
		return " (each name may appear only once)";
	if (strstr(jansson_text, "too big"))
		return " (integers above 2^63 - 1 cannot be valid shapes or offsets)";
	if (strstr(jansson_text, "UTF-8") || strstr(jansson_text, "decode byte"))
		return " (the text must be valid UTF-8)";
	return "";
}

static uc_status fail_json(uc_error *err, const json_error_t *jerr)
{
	return ucp_fail(err, UC_ERR_FORMAT, "header is not valid JSON at line %d, column %d: %s%s",
			jerr->line, jerr->column, jerr->text, ucp_json_error_hint(jerr->text));
}

/* Reads a JSON integer that must be non-negative; returns 0 on success. */
static int read_u64(const json_t *value, uint64_t *out)
{
	if (!json_is_integer(value) || json_integer_value(value) < 0)
		return -1;
	*out = (uint64_t)json_integer_value(value);
	return 0;
}

static uc_status parse_dtype(const char *name, const json_t *value, uc_dtype *out, uc_error *err)
{
	if (!json_is_string(value))
		return ucp_fail(err, UC_ERR_FORMAT, "tensor \"%.*s\": \"dtype\" is not a string",
				ST_NAME_MAX_SHOWN, name);
	const char *text = json_string_value(value);
	for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
		if (strcmp(st_dtypes[i].name, text) == 0) {
			*out = st_dtypes[i].dtype;
			return UC_OK;
		}
	}
	return ucp_fail(err, UC_ERR_UNSUPPORTED,
			"tensor \"%.*s\": dtype \"%.40s\" is not supported; supported dtypes are "
			"F32, F16 and BF16",
			ST_NAME_MAX_SHOWN, name, text);
}

static uc_status parse_shape(const char *name, const json_t *value, ucp_tensor_entry *entry,
			     uc_error *err)
{
	if (!json_is_array(value))
		return ucp_fail(err, UC_ERR_FORMAT, "tensor \"%.*s\": \"shape\" is not an array",
				ST_NAME_MAX_SHOWN, name);
	size_t ndim = json_array_size(value);
	if (ndim > UC_MAX_DIMS)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": shape has %zu dimensions, more than the maximum of %d",
				ST_NAME_MAX_SHOWN, name, ndim, UC_MAX_DIMS);

	uint64_t elements = 1;
	for (size_t i = 0; i < ndim; i++) {
		uint64_t dim;
		if (read_u64(json_array_get(value, i), &dim) != 0)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor \"%.*s\": shape[%zu] is not a non-negative integer",
					ST_NAME_MAX_SHOWN, name, i);
		if (__builtin_mul_overflow(elements, dim, &elements))
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor \"%.*s\": the element count of the shape overflows 64 bits",
					ST_NAME_MAX_SHOWN, name);
		entry->shape[i] = dim;
	}

	uint64_t nbytes;
	if (__builtin_mul_overflow(elements, (uint64_t)ucp_dtype_size(entry->dtype), &nbytes))
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": the byte size of %llu elements overflows 64 bits",
				ST_NAME_MAX_SHOWN, name, (unsigned long long)elements);
	entry->ndim = (uint32_t)ndim;
	entry->n_elements = elements;
	entry->nbytes = nbytes;
	return UC_OK;
}

/* Reads data_offsets and checks them against the entry's size and the data region. The
 * entry's offset is left relative to the data region. */
static uc_status parse_offsets(const char *name, const json_t *value, uint64_t data_size,
			       ucp_tensor_entry *entry, uc_error *err)
{
	uint64_t begin, end;
	if (!json_is_array(value) || json_array_size(value) != 2 ||
	    read_u64(json_array_get(value, 0), &begin) != 0 ||
	    read_u64(json_array_get(value, 1), &end) != 0)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": \"data_offsets\" is not two non-negative integers",
				ST_NAME_MAX_SHOWN, name);
	if (begin > end)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": data_offsets begin %llu is after end %llu",
				ST_NAME_MAX_SHOWN, name, (unsigned long long)begin,
				(unsigned long long)end);
	if (end > data_size)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": data_offsets end %llu is beyond the %llu-byte data "
				"region; the file is truncated or the header is corrupt",
				ST_NAME_MAX_SHOWN, name, (unsigned long long)end,
				(unsigned long long)data_size);
	if (end - begin != entry->nbytes)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": data_offsets [%llu, %llu] span %llu bytes but dtype %s "
				"and the shape need %llu",
				ST_NAME_MAX_SHOWN, name, (unsigned long long)begin,
				(unsigned long long)end, (unsigned long long)(end - begin),
				ucp_st_dtype_name(entry->dtype), (unsigned long long)entry->nbytes);
	entry->offset = begin;
	return UC_OK;
}

static uc_status parse_entry(const char *name, const json_t *value, uint64_t data_size,
			     ucp_tensor_entry *entry, uc_error *err)
{
	if (name[0] == '\0')
		return ucp_fail(err, UC_ERR_FORMAT, "a tensor has an empty name");
	if (!json_is_object(value))
		return ucp_fail(err, UC_ERR_FORMAT, "tensor \"%.*s\": entry is not a JSON object",
				ST_NAME_MAX_SHOWN, name);

	const json_t *dtype = json_object_get(value, "dtype");
	const json_t *shape = json_object_get(value, "shape");
	const json_t *offsets = json_object_get(value, "data_offsets");
	if (!dtype || !shape || !offsets || json_object_size(value) != 3)
		return ucp_fail(err, UC_ERR_FORMAT,
				"tensor \"%.*s\": entry must have exactly the keys \"dtype\", \"shape\" "
				"and \"data_offsets\"",
				ST_NAME_MAX_SHOWN, name);

	uc_status rc = parse_dtype(name, dtype, &entry->dtype, err);
	if (rc == UC_OK)
		rc = parse_shape(name, shape, entry, err);
	if (rc == UC_OK)
		rc = parse_offsets(name, offsets, data_size, entry, err);
	return rc;
}

static uc_status parse_metadata(const json_t *value, ucp_parsed_file *parsed, uc_error *err)
{
	if (!json_is_object(value))
		return ucp_fail(err, UC_ERR_FORMAT, "\"__metadata__\" is not a JSON object");

	size_t count = json_object_size(value);
	parsed->metadata = ucp_calloc(count, sizeof *parsed->metadata);
	if (!parsed->metadata)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory reading __metadata__");

	const char *key;
	json_t *item;
	json_object_foreach((json_t *)value, key, item) {
		if (!json_is_string(item))
			return ucp_fail(err, UC_ERR_FORMAT,
					"\"__metadata__\" value of \"%.*s\" is not a string",
					ST_NAME_MAX_SHOWN, key);
		ucp_metadata_entry *entry = &parsed->metadata[parsed->metadata_count];
		entry->key = ucp_strdup(key);
		entry->value = entry->key ? ucp_strdup(json_string_value(item)) : NULL;
		if (!entry->value) {
			ucp_free(entry->key);
			entry->key = NULL;
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory reading __metadata__");
		}
		parsed->metadata_count++;
	}
	return UC_OK;
}

static int compare_offsets(const void *a, const void *b)
{
	const ucp_tensor_entry *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Checks, after sorting by offset, that the tensors tile [0, data_size) exactly. */
static uc_status check_coverage(const ucp_parsed_file *parsed, uint64_t data_size, uc_error *err)
{
	uint64_t position = 0;
	for (size_t i = 0; i < parsed->tensor_count; i++) {
		const ucp_tensor_entry *t = &parsed->tensors[i];
		if (t->offset < position)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor \"%.*s\" at data offset %llu overlaps \"%.*s\", which "
					"ends at %llu",
					ST_NAME_MAX_SHOWN, t->name, (unsigned long long)t->offset,
					ST_NAME_MAX_SHOWN, parsed->tensors[i - 1].name,
					(unsigned long long)position);
		if (t->offset > position)
			return ucp_fail(err, UC_ERR_FORMAT,
					"gap in the data region: bytes %llu to %llu belong to no tensor "
					"(the next tensor is \"%.*s\")",
					(unsigned long long)position, (unsigned long long)t->offset,
					ST_NAME_MAX_SHOWN, t->name);
		position = t->offset + t->nbytes;
	}
	if (position != data_size)
		return ucp_fail(err, UC_ERR_FORMAT,
				"data region is %llu bytes but the tensors cover only %llu; the bytes "
				"after offset %llu belong to no tensor",
				(unsigned long long)data_size, (unsigned long long)position,
				(unsigned long long)position);
	return UC_OK;
}

/* Validates the header object and fills `parsed`; offsets become file offsets. */
static uc_status parse_header_object(const json_t *root, uint64_t data_start, uint64_t data_size,
				     ucp_parsed_file *parsed, uc_error *err)
{
	size_t count = json_object_size(root);
	parsed->tensors = ucp_calloc(count, sizeof *parsed->tensors);
	if (!parsed->tensors)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory for %zu header entries", count);

	const char *key;
	json_t *value;
	json_object_foreach((json_t *)root, key, value) {
		uc_status rc;
		if (strcmp(key, "__metadata__") == 0) {
			rc = parse_metadata(value, parsed, err);
			if (rc != UC_OK)
				return rc;
			continue;
		}
		ucp_tensor_entry *entry = &parsed->tensors[parsed->tensor_count];
		rc = parse_entry(key, value, data_size, entry, err);
		if (rc != UC_OK)
			return rc;
		entry->name = ucp_strdup(key);
		if (!entry->name)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory for tensor names");
		parsed->tensor_count++;
	}

	qsort(parsed->tensors, parsed->tensor_count, sizeof *parsed->tensors, compare_offsets);
	uc_status rc = check_coverage(parsed, data_size, err);
	if (rc != UC_OK)
		return rc;
	for (size_t i = 0; i < parsed->tensor_count; i++)
		parsed->tensors[i].offset += data_start;
	return UC_OK;
}

/* Returns the header length without the trailing spaces the format allows as padding. */
static size_t trim_padding(const uint8_t *header, size_t len)
{
	while (len > 0 && header[len - 1] == ' ')
		len--;
	return len;
}

uc_status ucp_st_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
		       uc_error *err)
{
	*out = NULL;
	uint64_t header_len = file_size >= 8 ? ucp_load_le64(file) : 0;
	uc_status rc = check_header_length(file_size, header_len, err);
	if (rc != UC_OK)
		return rc;

	const uint8_t *header = file + 8;
	size_t json_len = trim_padding(header, (size_t)header_len);
	if (json_len == 0 || header[0] != '{' || header[json_len - 1] != '}')
		return ucp_fail(err, UC_ERR_FORMAT,
				"header is not a JSON object: it must start with '{' and end with '}' "
				"followed only by spaces");

	json_error_t jerr;
	json_t *root = json_loadb((const char *)header, json_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		if (ucp_json_out_of_memory(&jerr))
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory parsing the header");
		return fail_json(err, &jerr);
	}

	ucp_parsed_file *parsed = ucp_calloc(1, sizeof *parsed);
	if (!parsed) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory parsing the header");
		goto out;
	}
	if (!json_is_object(root)) {
		rc = ucp_fail(err, UC_ERR_FORMAT, "header is not a JSON object");
		goto out;
	}
	rc = parse_header_object(root, 8 + header_len, file_size - 8 - header_len, parsed, err);

out:
	json_decref(root);
	if (rc != UC_OK) {
		ucp_parsed_file_free(parsed);
		return rc;
	}
	*out = parsed;
	return UC_OK;
}
