/* Canonical manifest serialisation: sorted keys, compact separators, reals at
 * UCP_REAL_DIGITS significant digits, one trailing newline. Identical content gives
 * identical bytes, so a pack's manifest SHA-256 is stable. */
#include "pack_internal.h"

#include <math.h>
#include <string.h>

#include <jansson.h>

/* Adds `value` under `key`; a NULL value (an allocation that failed) marks the build failed.
 * json_object_set_new takes the reference whatever happens. */
static void put(json_t *object, const char *key, json_t *value, int *failed)
{
	if (!value || json_object_set_new(object, key, value) != 0)
		*failed = 1;
}

static void append(json_t *array, json_t *value, int *failed)
{
	if (!value || json_array_append_new(array, value) != 0)
		*failed = 1;
}

static json_t *text_or_null(const char *text)
{
	return text ? json_string(text) : json_null();
}

/* Non-finite reals cannot be written in JSON; NAN means null by convention. */
static json_t *real_or_null(double value)
{
	return isfinite(value) ? json_real(value) : json_null();
}

static json_t *integer(uint64_t value)
{
	return json_integer((json_int_t)value);
}

static json_t *digest_text(const uint8_t digest[UC_SHA256_BYTES])
{
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_to_hex(digest, hex);
	return json_string(hex);
}

static json_t *shard_object(const uc_manifest_shard *shard, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "file", json_string(shard->file), failed);
	put(object, "sha256", digest_text(shard->sha256), failed);
	put(object, "size", integer(shard->size), failed);
	return object;
}

static json_t *tensor_object(const uc_manifest_tensor *t, int *failed)
{
	json_t *object = json_object();
	json_t *shape = json_array();
	if (!object || !shape) {
		json_decref(object);
		json_decref(shape);
		*failed = 1;
		return NULL;
	}

	for (uint32_t d = 0; d < t->ndim; d++)
		append(shape, integer(t->shape[d]), failed);
	put(object, "name", json_string(t->name), failed);
	put(object, "shape", shape, failed);
	put(object, "dtype", json_string(ucp_dtype_text(t->dtype)), failed);
	put(object, "encoding", json_string(ucp_encoding_text(t->encoding)), failed);
	put(object, "shard", integer(t->shard), failed);
	put(object, "offset", integer(t->offset), failed);
	put(object, "length", integer(t->length), failed);
	put(object, "sha256", digest_text(t->sha256), failed);
	put(object, "sqnr_db", real_or_null(t->sqnr_db), failed);
	put(object, "max_abs_error", json_real(t->max_abs_error), failed);
	return object;
}

static json_t *model_object(const uc_manifest *m, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "name", json_string(m->name), failed);
	put(object, "family", json_string(m->family), failed);
	put(object, "parameters", integer(m->parameters), failed);
	put(object, "source_model", text_or_null(m->source_model), failed);
	put(object, "license", text_or_null(m->license), failed);
	put(object, "config", text_or_null(m->config), failed);
	return object;
}

static json_t *totals_object(const uc_manifest *m, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "parameters", integer(m->parameters), failed);
	put(object, "tensor_bytes", integer(m->tensor_bytes), failed);
	put(object, "shard_bytes", integer(m->shard_bytes), failed);
	put(object, "bits_per_weight", json_real(m->bits_per_weight), failed);
	put(object, "sqnr_db", real_or_null(m->sqnr_db), failed);
	return object;
}

static json_t *codec_object(int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "id", json_string(UC_CODEC_ID), failed);
	put(object, "version", json_integer(UC_CODEC_VERSION), failed);
	return object;
}

static json_t *manifest_object(const uc_manifest *m, int *failed)
{
	json_t *root = json_object();
	json_t *shards = json_array();
	json_t *tensors = json_array();
	if (!root || !shards || !tensors) {
		json_decref(root);
		json_decref(shards);
		json_decref(tensors);
		*failed = 1;
		return NULL;
	}

	for (size_t i = 0; i < m->n_shards; i++)
		append(shards, shard_object(&m->shards[i], failed), failed);
	for (size_t i = 0; i < m->n_tensors; i++)
		append(tensors, tensor_object(&m->tensors[i], failed), failed);

	put(root, "format", json_string(UCP_FORMAT_NAME), failed);
	put(root, "format_version", json_integer(UC_PACK_FORMAT_VERSION), failed);
	put(root, "codec", codec_object(failed), failed);
	put(root, "model", model_object(m, failed), failed);
	put(root, "shards", shards, failed);
	put(root, "tensors", tensors, failed);
	put(root, "totals", totals_object(m, failed), failed);
	put(root, "created_by", json_string(m->created_by ? m->created_by : UCP_CREATED_BY), failed);
	return root;
}

char *uc_manifest_to_json(const uc_manifest *manifest, size_t *len)
{
	int failed = 0;
	json_t *root = manifest_object(manifest, &failed);
	char *text = NULL;
	char *result = NULL;

	if (!root || failed)
		goto out;

	size_t flags = JSON_SORT_KEYS | JSON_COMPACT | JSON_REAL_PRECISION(UCP_REAL_DIGITS);
	text = json_dumps(root, flags);
	if (!text)
		goto out;

	/* Copy into a libuc allocation with the trailing newline, so callers free with uc_free. */
	size_t used = strlen(text);
	result = ucp_malloc(used + 2);
	if (!result)
		goto out;
	memcpy(result, text, used);
	result[used] = '\n';
	result[used + 1] = '\0';
	if (len)
		*len = used + 1;

out:
	ucp_free(text);
	json_decref(root);
	return result;
}
