/* Manifest parsing: JSON bytes from anyone to a validated uc_manifest. Every field is
 * type-checked and range-checked here; an error names the field by its JSON path. */
#include "pack_internal.h"

#include <math.h>
#include <string.h>

#include <jansson.h>

/* Parsing state: the error record and the JSON path of the object being read. */
typedef struct {
	uc_error *err;
	char path[96];
} parser;

static const char *json_kind(const json_t *value)
{
	switch (json_typeof(value)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "an unknown value";
}

static uc_status type_error(parser *p, const char *key, const char *expected, const json_t *value)
{
	return ucp_fail(p->err, UC_ERR_FORMAT, "manifest field %s%s%s must be %s, found %s", p->path,
			*p->path ? "." : "", key, expected, value ? json_kind(value) : "nothing (missing)");
}

/* Rejects keys that format version 1 does not define, so a typo cannot pass unnoticed. */
static uc_status check_keys(parser *p, const json_t *object, const char *const *allowed)
{
	const char *key;
	json_t *value;
	json_object_foreach((json_t *)object, key, value) {
		int known = 0;
		for (const char *const *a = allowed; *a && !known; a++)
			known = strcmp(*a, key) == 0;
		if (!known)
			return ucp_fail(p->err, UC_ERR_FORMAT,
					"manifest %s%shas unknown field \"%s\"; format version 1 does not define it",
					p->path, *p->path ? " " : "", key);
	}
	return UC_OK;
}

static uc_status get_object(parser *p, const json_t *parent, const char *key, json_t **out)
{
	json_t *value = json_object_get(parent, key);
	if (!json_is_object(value))
		return type_error(p, key, "an object", value);
	*out = value;
	return UC_OK;
}

static uc_status get_array(parser *p, const json_t *parent, const char *key, json_t **out)
{
	json_t *value = json_object_get(parent, key);
	if (!json_is_array(value))
		return type_error(p, key, "an array", value);
	*out = value;
	return UC_OK;
}

static uc_status get_u64(parser *p, const json_t *parent, const char *key, uint64_t *out)
{
	json_t *value = json_object_get(parent, key);
	if (!json_is_integer(value) || json_integer_value(value) < 0)
		return type_error(p, key, "a non-negative integer", value);
	*out = (uint64_t)json_integer_value(value);
	return UC_OK;
}

/* A real that may be null (stored as NAN) when `nullable`. Integers are accepted too. */
static uc_status get_real(parser *p, const json_t *parent, const char *key, int nullable, double *out)
{
	json_t *value = json_object_get(parent, key);
	if (nullable && json_is_null(value)) {
		*out = NAN;
		return UC_OK;
	}
	if (!json_is_number(value))
		return type_error(p, key, nullable ? "a number or null" : "a number", value);
	*out = json_number_value(value);
	return UC_OK;
}

/* Borrows a string field that passes ucp_text_check. */
static uc_status get_string(parser *p, const json_t *parent, const char *key, size_t max_bytes,
			    int multiline, const char **out)
{
	json_t *value = json_object_get(parent, key);
	if (!json_is_string(value))
		return type_error(p, key, "a string", value);

	char why[128];
	const char *text = json_string_value(value);
	if (ucp_text_check(text, json_string_length(value), max_bytes, multiline, why, sizeof why) != 0)
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest field %s%s%s %s", p->path,
				*p->path ? "." : "", key, why);
	*out = text;
	return UC_OK;
}

static uc_status get_text(parser *p, const json_t *parent, const char *key, size_t max_bytes,
			  const char **out)
{
	return get_string(p, parent, key, max_bytes, 0, out);
}

/* Copies a string field, or stores NULL when the field is null and `nullable`. */
static uc_status copy_text(parser *p, const json_t *parent, const char *key, size_t max_bytes,
			   int nullable, char **out)
{
	if (nullable && json_is_null(json_object_get(parent, key))) {
		*out = NULL;
		return UC_OK;
	}

	/* The model config is a JSON document of its own and may span lines. */
	const char *text;
	int multiline = strcmp(key, "config") == 0;
	uc_status rc = get_string(p, parent, key, max_bytes, multiline, &text);
	if (rc != UC_OK)
		return rc;
	*out = ucp_strdup(text);
	if (!*out)
		return ucp_fail(p->err, UC_ERR_NOMEM, "out of memory copying manifest field %s", key);
	return UC_OK;
}

static uc_status get_digest(parser *p, const json_t *parent, const char *key,
			    uint8_t digest[UC_SHA256_BYTES])
{
	const char *hex;
	uc_status rc = get_text(p, parent, key, UC_SHA256_HEX_CHARS, &hex);
	if (rc != UC_OK)
		return rc;
	if (uc_sha256_from_hex(hex, digest) != 0)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest field %s.%s must be 64 lower-case hex digits, found \"%s\"", p->path,
				key, hex);
	return UC_OK;
}

static uc_status parse_header(parser *p, const json_t *root)
{
	static const char *const keys[] = {"codec", "created_by", "format", "format_version", "model",
					   "shards", "tensors", "totals", NULL};
	uc_status rc = check_keys(p, root, keys);
	if (rc != UC_OK)
		return rc;

	const char *format;
	rc = get_text(p, root, "format", UCP_TEXT_FIELD_MAX_BYTES, &format);
	if (rc != UC_OK)
		return rc;
	if (strcmp(format, UCP_FORMAT_NAME) != 0)
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest format \"%s\" is not supported; expected \"%s\"", format,
				UCP_FORMAT_NAME);

	uint64_t version;
	rc = get_u64(p, root, "format_version", &version);
	if (rc != UC_OK)
		return rc;
	if (version != UC_PACK_FORMAT_VERSION)
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest format_version %llu is not supported; this libuc reads version %d",
				(unsigned long long)version, UC_PACK_FORMAT_VERSION);
	return UC_OK;
}

static uc_status parse_codec(parser *p, const json_t *root)
{
	static const char *const keys[] = {"id", "version", NULL};
	json_t *codec = NULL;
	uc_status rc = get_object(p, root, "codec", &codec);
	if (rc != UC_OK)
		return rc;

	snprintf(p->path, sizeof p->path, "codec");
	rc = check_keys(p, codec, keys);
	if (rc != UC_OK)
		return rc;

	const char *id;
	uint64_t version;
	rc = get_text(p, codec, "id", UCP_TEXT_FIELD_MAX_BYTES, &id);
	if (rc == UC_OK)
		rc = get_u64(p, codec, "version", &version);
	if (rc != UC_OK)
		return rc;
	if (strcmp(id, UC_CODEC_ID) != 0)
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest codec.id \"%s\" is not supported; this libuc decodes \"%s\"", id,
				UC_CODEC_ID);
	if (version != UC_CODEC_VERSION)
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest codec.version %llu of \"%s\" is not supported; this libuc decodes version %d",
				(unsigned long long)version, id, UC_CODEC_VERSION);
	return UC_OK;
}

static uc_status parse_model(parser *p, const json_t *root, uc_manifest *m)
{
	static const char *const keys[] = {"config", "family", "license", "name", "parameters",
					   "source_model", NULL};
	json_t *model = NULL;
	uc_status rc = get_object(p, root, "model", &model);
	if (rc != UC_OK)
		return rc;

	snprintf(p->path, sizeof p->path, "model");
	rc = check_keys(p, model, keys);
	if (rc == UC_OK)
		rc = copy_text(p, model, "name", UCP_TEXT_FIELD_MAX_BYTES, 0, &m->name);
	if (rc == UC_OK)
		rc = copy_text(p, model, "family", UCP_TEXT_FIELD_MAX_BYTES, 0, &m->family);
	if (rc == UC_OK)
		rc = copy_text(p, model, "source_model", UCP_TEXT_FIELD_MAX_BYTES, 1, &m->source_model);
	if (rc == UC_OK)
		rc = copy_text(p, model, "license", UCP_TEXT_FIELD_MAX_BYTES, 1, &m->license);
	if (rc == UC_OK)
		rc = copy_text(p, model, "config", UCP_CONFIG_MAX_BYTES, 1, &m->config);
	if (rc != UC_OK)
		return rc;

	if (!uc_family_valid(m->family))
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest model.family \"%s\" is not one of dense, moe, ssm, recurrent, hybrid, vit, other",
				m->family);

	uint64_t parameters;
	rc = get_u64(p, model, "parameters", &parameters);
	if (rc != UC_OK)
		return rc;
	if (parameters != m->parameters)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest model.parameters is %llu but totals.parameters is %llu",
				(unsigned long long)parameters, (unsigned long long)m->parameters);
	return UC_OK;
}

static uc_status parse_totals(parser *p, const json_t *root, uc_manifest *m)
{
	static const char *const keys[] = {"bits_per_weight", "parameters", "shard_bytes", "sqnr_db",
					   "tensor_bytes", NULL};
	json_t *totals = NULL;
	uc_status rc = get_object(p, root, "totals", &totals);
	if (rc != UC_OK)
		return rc;

	snprintf(p->path, sizeof p->path, "totals");
	rc = check_keys(p, totals, keys);
	if (rc == UC_OK)
		rc = get_u64(p, totals, "parameters", &m->parameters);
	if (rc == UC_OK)
		rc = get_u64(p, totals, "tensor_bytes", &m->tensor_bytes);
	if (rc == UC_OK)
		rc = get_u64(p, totals, "shard_bytes", &m->shard_bytes);
	if (rc == UC_OK)
		rc = get_real(p, totals, "bits_per_weight", 0, &m->bits_per_weight);
	if (rc == UC_OK)
		rc = get_real(p, totals, "sqnr_db", 1, &m->sqnr_db);
	return rc;
}

static uc_status parse_shard(parser *p, const json_t *entry, uc_manifest_shard *shard,
			     ucp_shard_file_name file)
{
	static const char *const keys[] = {"file", "sha256", "size", NULL};
	if (!json_is_object(entry))
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s must be an object, found %s", p->path,
				json_kind(entry));

	const char *name;
	uc_status rc = check_keys(p, entry, keys);
	if (rc == UC_OK)
		rc = get_digest(p, entry, "sha256", shard->sha256);
	if (rc == UC_OK)
		rc = get_u64(p, entry, "size", &shard->size);
	if (rc == UC_OK)
		rc = get_text(p, entry, "file", UCP_TEXT_FIELD_MAX_BYTES, &name);
	if (rc != UC_OK)
		return rc;

	/* The name must be the digest itself: no directories, no "..", nothing to traverse. */
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_to_hex(shard->sha256, hex);
	if (strcmp(name, hex) != 0)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest %s.file \"%s\" must equal its sha256 \"%s\"", p->path, name, hex);
	memcpy(file, hex, sizeof hex);
	return UC_OK;
}

static uc_status parse_shape(parser *p, const json_t *entry, uc_manifest_tensor *t)
{
	json_t *shape = NULL;
	uc_status rc = get_array(p, entry, "shape", &shape);
	if (rc != UC_OK)
		return rc;

	size_t ndim = json_array_size(shape);
	if (ndim > UC_MAX_DIMS)
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s.shape has %zu dimensions; at most %d are allowed",
				p->path, ndim, UC_MAX_DIMS);

	t->ndim = (uint32_t)ndim;
	t->n_elements = 1;
	for (size_t d = 0; d < ndim; d++) {
		json_t *dim = json_array_get(shape, d);
		if (!json_is_integer(dim) || json_integer_value(dim) < 0)
			return ucp_fail(p->err, UC_ERR_FORMAT,
					"manifest %s.shape[%zu] must be a non-negative integer, found %s", p->path,
					d, json_kind(dim));
		t->shape[d] = (uint64_t)json_integer_value(dim);
		if (__builtin_mul_overflow(t->n_elements, t->shape[d], &t->n_elements))
			return ucp_fail(p->err, UC_ERR_FORMAT,
					"manifest %s.shape: the product of the dimensions overflows 64 bits", p->path);
	}
	return UC_OK;
}

static uc_status parse_kind(parser *p, const json_t *entry, uc_manifest_tensor *t)
{
	const char *dtype, *encoding;
	uc_status rc = get_text(p, entry, "dtype", UCP_TEXT_FIELD_MAX_BYTES, &dtype);
	if (rc == UC_OK)
		rc = get_text(p, entry, "encoding", UCP_TEXT_FIELD_MAX_BYTES, &encoding);
	if (rc != UC_OK)
		return rc;

	if (strcmp(dtype, "bf16") == 0)
		t->dtype = UC_DTYPE_BF16;
	else if (strcmp(dtype, "f16") == 0)
		t->dtype = UC_DTYPE_F16;
	else if (strcmp(dtype, "f32") == 0)
		t->dtype = UC_DTYPE_F32;
	else
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest %s.dtype \"%s\" is not supported; expected bf16, f16 or f32", p->path, dtype);

	if (strcmp(encoding, "uc5") == 0)
		t->encoding = UC_ENCODING_UC5;
	else if (strcmp(encoding, "raw") == 0)
		t->encoding = UC_ENCODING_RAW;
	else
		return ucp_fail(p->err, UC_ERR_UNSUPPORTED,
				"manifest %s.encoding \"%s\" is not supported; expected uc5 or raw", p->path, encoding);
	return UC_OK;
}

static uc_status parse_placement(parser *p, const json_t *entry, uc_manifest_tensor *t)
{
	uint64_t shard, expected;
	uc_status rc = get_u64(p, entry, "shard", &shard);
	if (rc == UC_OK)
		rc = get_u64(p, entry, "offset", &t->offset);
	if (rc == UC_OK)
		rc = get_u64(p, entry, "length", &t->length);
	if (rc != UC_OK)
		return rc;

	if (shard > UINT32_MAX)
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s.shard %llu is out of range", p->path,
				(unsigned long long)shard);
	t->shard = (uint32_t)shard;

	if (t->offset % UCP_TENSOR_ALIGNMENT != 0)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest %s.offset %llu is not a multiple of %d", p->path,
				(unsigned long long)t->offset, UCP_TENSOR_ALIGNMENT);

	if (ucp_encoded_length(t->n_elements, t->dtype, t->encoding, &expected) != 0)
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s: byte length of %llu elements overflows",
				p->path, (unsigned long long)t->n_elements);
	if (t->length != expected)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest %s.length is %llu but %llu %s elements encoded as %s take %llu bytes",
				p->path, (unsigned long long)t->length, (unsigned long long)t->n_elements,
				ucp_dtype_text(t->dtype), ucp_encoding_text(t->encoding),
				(unsigned long long)expected);
	return UC_OK;
}

static uc_status parse_fidelity(parser *p, const json_t *entry, uc_manifest_tensor *t)
{
	uc_status rc = get_real(p, entry, "sqnr_db", 1, &t->sqnr_db);
	if (rc == UC_OK)
		rc = get_real(p, entry, "max_abs_error", 0, &t->max_abs_error);
	if (rc != UC_OK)
		return rc;
	if (t->max_abs_error < 0)
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s.max_abs_error %g is negative", p->path,
				t->max_abs_error);
	return UC_OK;
}

static uc_status parse_tensor(parser *p, const json_t *entry, uc_manifest_tensor *t)
{
	static const char *const keys[] = {"dtype", "encoding", "length", "max_abs_error", "name",
					   "offset", "sha256", "shape", "shard", "sqnr_db", NULL};
	if (!json_is_object(entry))
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest %s must be an object, found %s", p->path,
				json_kind(entry));

	const char *name;
	uc_status rc = get_text(p, entry, "name", UCP_TENSOR_NAME_MAX_BYTES, &name);
	if (rc != UC_OK)
		return rc;
	t->name = ucp_strdup(name);
	if (!t->name)
		return ucp_fail(p->err, UC_ERR_NOMEM, "out of memory copying tensor name \"%s\"", name);

	/* From here on, errors name the tensor as well as its index. */
	size_t used = strlen(p->path);
	snprintf(p->path + used, sizeof p->path - used, " (%.60s)", name);

	rc = check_keys(p, entry, keys);
	if (rc == UC_OK)
		rc = parse_shape(p, entry, t);
	if (rc == UC_OK)
		rc = parse_kind(p, entry, t);
	if (rc == UC_OK)
		rc = parse_placement(p, entry, t);
	if (rc == UC_OK)
		rc = get_digest(p, entry, "sha256", t->sha256);
	if (rc == UC_OK)
		rc = parse_fidelity(p, entry, t);
	return rc;
}

static uc_status parse_lists(parser *p, const json_t *root, uc_manifest **out)
{
	json_t *shards = NULL, *tensors = NULL;
	uc_status rc = get_array(p, root, "shards", &shards);
	if (rc == UC_OK)
		rc = get_array(p, root, "tensors", &tensors);
	if (rc != UC_OK)
		return rc;
	if (json_array_size(tensors) == 0 || json_array_size(shards) == 0)
		return ucp_fail(p->err, UC_ERR_FORMAT,
				"manifest has %zu shards and %zu tensors; a pack holds at least one of each",
				json_array_size(shards), json_array_size(tensors));

	uc_manifest *m = ucp_manifest_alloc(json_array_size(shards), json_array_size(tensors));
	if (!m)
		return ucp_fail(p->err, UC_ERR_NOMEM, "out of memory for a manifest of %zu tensors",
				json_array_size(tensors));
	*out = m;

	for (size_t i = 0; i < m->n_shards && rc == UC_OK; i++) {
		snprintf(p->path, sizeof p->path, "shards[%zu]", i);
		rc = parse_shard(p, json_array_get(shards, i), &m->shards[i], m->shard_files[i]);
	}
	for (size_t i = 0; i < m->n_tensors && rc == UC_OK; i++) {
		snprintf(p->path, sizeof p->path, "tensors[%zu]", i);
		rc = parse_tensor(p, json_array_get(tensors, i), &m->tensors[i]);
	}
	return rc;
}

static uc_status parse_root(parser *p, const json_t *root, uc_manifest **out)
{
	if (!json_is_object(root))
		return ucp_fail(p->err, UC_ERR_FORMAT, "manifest must be a JSON object, found %s",
				json_kind(root));

	uc_status rc = parse_header(p, root);
	if (rc == UC_OK)
		rc = parse_codec(p, root);
	if (rc != UC_OK)
		return rc;

	*p->path = '\0';
	rc = parse_lists(p, root, out);
	if (rc == UC_OK)
		rc = parse_totals(p, root, *out);
	if (rc == UC_OK)
		rc = parse_model(p, root, *out);
	if (rc != UC_OK)
		return rc;

	*p->path = '\0';
	rc = copy_text(p, root, "created_by", UCP_TEXT_FIELD_MAX_BYTES, 0, &(*out)->created_by);
	if (rc == UC_OK)
		rc = ucp_manifest_check(*out, p->err);
	return rc;
}

uc_status uc_manifest_parse(const char *json, size_t len, uc_manifest **out, uc_error *err)
{
	uc_status rc = UC_OK;
	uc_manifest *manifest = NULL;
	json_t *root = NULL;
	parser p = {.err = err, .path = ""};

	*out = NULL;
	uc_error_clear(err);
	if (len > UCP_MANIFEST_MAX_BYTES) {
		rc = ucp_fail(err, UC_ERR_FORMAT, "manifest is %zu bytes; the limit is %zu", len,
			      (size_t)UCP_MANIFEST_MAX_BYTES);
		goto out;
	}

	json_error_t json_err;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &json_err);
	/* jansson 2.14 leaves the error text empty when its lexer cannot allocate its buffer.
	 * NOTE: it reports some other failed allocations as syntax errors, so an out-of-memory
	 * parse can come back as UC_ERR_FORMAT. */
	if (!root && (json_error_code(&json_err) == json_error_out_of_memory || !*json_err.text)) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory parsing a manifest of %zu bytes", len);
		goto out;
	}
	if (!root) {
		rc = ucp_fail(err, UC_ERR_FORMAT, "manifest is not valid JSON: %s at line %d, column %d",
			      json_err.text, json_err.line, json_err.column);
		goto out;
	}

	rc = parse_root(&p, root, &manifest);

out:
	json_decref(root);
	if (rc != UC_OK) {
		uc_manifest_free(manifest);
		manifest = NULL;
	}
	*out = manifest;
	return rc;
}
