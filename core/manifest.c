/* The in-memory manifest: allocation, accessors, and the cross-field rules that every
 * manifest must satisfy whether it was parsed or built by the writer. */
#include "pack_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uc_manifest *ucp_manifest_alloc(size_t n_shards, size_t n_tensors)
{
	uc_manifest *manifest = ucp_calloc(1, sizeof *manifest);
	if (!manifest)
		return NULL;

	manifest->sqnr_db = NAN;
	manifest->n_shards = n_shards;
	manifest->n_tensors = n_tensors;
	manifest->shards = ucp_calloc(n_shards, sizeof *manifest->shards);
	manifest->shard_files = ucp_calloc(n_shards, sizeof *manifest->shard_files);
	manifest->tensors = ucp_calloc(n_tensors, sizeof *manifest->tensors);
	if (!manifest->shards || !manifest->shard_files || !manifest->tensors) {
		uc_manifest_free(manifest);
		return NULL;
	}

	for (size_t i = 0; i < n_shards; i++)
		manifest->shards[i].file = manifest->shard_files[i];
	for (size_t i = 0; i < n_tensors; i++)
		manifest->tensors[i].sqnr_db = NAN;
	return manifest;
}

void uc_manifest_free(uc_manifest *manifest)
{
	if (!manifest)
		return;

	if (manifest->tensors) {
		for (size_t i = 0; i < manifest->n_tensors; i++)
			ucp_free((char *)manifest->tensors[i].name);
	}
	ucp_free(manifest->tensors);
	ucp_free(manifest->shards);
	ucp_free(manifest->shard_files);
	ucp_free(manifest->name);
	ucp_free(manifest->family);
	ucp_free(manifest->source_model);
	ucp_free(manifest->license);
	ucp_free(manifest->config);
	ucp_free(manifest->created_by);
	ucp_free(manifest);
}

size_t uc_manifest_shard_count(const uc_manifest *manifest)
{
	return manifest->n_shards;
}

const uc_manifest_shard *uc_manifest_shard_at(const uc_manifest *manifest, size_t index)
{
	return index < manifest->n_shards ? &manifest->shards[index] : NULL;
}

size_t uc_manifest_tensor_count(const uc_manifest *manifest)
{
	return manifest->n_tensors;
}

const uc_manifest_tensor *uc_manifest_tensor_at(const uc_manifest *manifest, size_t index)
{
	return index < manifest->n_tensors ? &manifest->tensors[index] : NULL;
}

const char *uc_manifest_model_field(const uc_manifest *manifest, const char *field)
{
	static const struct {
		const char *field;
		size_t offset;
	} fields[] = {
		{"name", offsetof(uc_manifest, name)},
		{"family", offsetof(uc_manifest, family)},
		{"source_model", offsetof(uc_manifest, source_model)},
		{"license", offsetof(uc_manifest, license)},
		{"config", offsetof(uc_manifest, config)},
		{"created_by", offsetof(uc_manifest, created_by)},
	};

	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		if (strcmp(fields[i].field, field) == 0)
			return *(char *const *)((const char *)manifest + fields[i].offset);
	}
	return NULL;
}

uint64_t uc_manifest_parameters(const uc_manifest *manifest)
{
	return manifest->parameters;
}

uint64_t uc_manifest_tensor_bytes(const uc_manifest *manifest)
{
	return manifest->tensor_bytes;
}

uint64_t uc_manifest_shard_bytes(const uc_manifest *manifest)
{
	return manifest->shard_bytes;
}

double uc_manifest_bits_per_weight(const uc_manifest *manifest)
{
	return manifest->bits_per_weight;
}

double uc_manifest_sqnr_db(const uc_manifest *manifest)
{
	return manifest->sqnr_db;
}

long uc_manifest_find_tensor(const uc_manifest *manifest, const char *name)
{
	for (size_t i = 0; i < manifest->n_tensors; i++) {
		if (strcmp(manifest->tensors[i].name, name) == 0)
			return (long)i;
	}
	return -1;
}

/* Returns the length of the UTF-8 sequence at text[0..len), or 0 when it is not a valid,
 * shortest-form encoding of a Unicode scalar value. */
static size_t utf8_sequence_length(const unsigned char *text, size_t len)
{
	unsigned char c = text[0];
	size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
	if (n == 0 || n > len)
		return 0;

	uint32_t code = n == 1 ? c : (uint32_t)(c & (0x7F >> n));
	for (size_t i = 1; i < n; i++) {
		if ((text[i] & 0xC0) != 0x80)
			return 0;
		code = code << 6 | (text[i] & 0x3F);
	}
	static const uint32_t min_code[5] = {0, 0, 0x80, 0x800, 0x10000};
	if (code < min_code[n] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
		return 0;
	return n;
}

int ucp_text_check(const char *text, size_t len, size_t max_bytes, int multiline, char *why,
		   size_t why_size)
{
	if (len == 0 || len > max_bytes) {
		snprintf(why, why_size, "must be 1 to %zu bytes long, found %zu", max_bytes, len);
		return -1;
	}
	for (size_t i = 0; i < len;) {
		size_t n = utf8_sequence_length((const unsigned char *)text + i, len - i);
		if (n == 0) {
			snprintf(why, why_size, "is not valid UTF-8 at byte %zu", i);
			return -1;
		}
		i += n;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		int allowed = (c >= 0x20 && c != 0x7F) ||
			      (multiline && (c == '\n' || c == '\r' || c == '\t'));
		if (!allowed) {
			snprintf(why, why_size, "contains control character 0x%02x at byte %zu", c, i);
			return -1;
		}
		/* The C1 controls U+0080..U+009F are encoded as C2 80..C2 9F in valid UTF-8.
		 * Terminals act on some of them, for example U+009B starts an escape sequence. */
		unsigned char next = i + 1 < len ? (unsigned char)text[i + 1] : 0;
		if (c == 0xC2 && next >= 0x80 && next <= 0x9F) {
			snprintf(why, why_size, "contains control character U+%04X at byte %zu", next, i);
			return -1;
		}
	}
	return 0;
}

int uc_family_valid(const char *family)
{
	static const char *const families[] = {"dense", "moe", "ssm", "recurrent", "hybrid", "vit", "other"};
	if (!family)
		return 0;
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
		if (strcmp(families[i], family) == 0)
			return 1;
	}
	return 0;
}

size_t ucp_dtype_bytes(uc_dtype dtype)
{
	return dtype == UC_DTYPE_F32 ? 4 : 2;
}

const char *ucp_dtype_text(uc_dtype dtype)
{
	switch (dtype) {
	case UC_DTYPE_F32:
		return "f32";
	case UC_DTYPE_F16:
		return "f16";
	case UC_DTYPE_BF16:
		return "bf16";
	}
	return "unknown";
}

const char *ucp_encoding_text(uc_encoding encoding)
{
	return encoding == UC_ENCODING_UC5 ? "uc5" : "raw";
}

int ucp_encoded_length(uint64_t n_elements, uc_dtype dtype, uc_encoding encoding, uint64_t *out)
{
	if (encoding == UC_ENCODING_UC5) {
		/* ceil(n / 256) * 176 cannot overflow because 176 < 256. */
		uint64_t blocks = n_elements / UC5_BLOCK_WEIGHTS + (n_elements % UC5_BLOCK_WEIGHTS != 0);
		*out = blocks * UC5_BLOCK_BYTES;
		return 0;
	}
	return __builtin_mul_overflow(n_elements, (uint64_t)ucp_dtype_bytes(dtype), out) ? -1 : 0;
}

/* qsort comparators over arrays of tensor pointers. */
static int compare_names(const void *a, const void *b)
{
	const uc_manifest_tensor *x = *(const uc_manifest_tensor *const *)a;
	const uc_manifest_tensor *y = *(const uc_manifest_tensor *const *)b;
	return strcmp(x->name, y->name);
}

static int compare_spans(const void *a, const void *b)
{
	const uc_manifest_tensor *x = *(const uc_manifest_tensor *const *)a;
	const uc_manifest_tensor *y = *(const uc_manifest_tensor *const *)b;
	if (x->shard != y->shard)
		return x->shard < y->shard ? -1 : 1;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return x < y ? -1 : x > y;
}

static uc_status check_names_unique(const uc_manifest_tensor **sorted, size_t count, uc_error *err)
{
	qsort(sorted, count, sizeof *sorted, compare_names);
	for (size_t i = 1; i < count; i++) {
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
			return ucp_fail(err, UC_ERR_FORMAT,
					"manifest tensors: duplicate tensor name \"%s\"; every tensor needs a unique name",
					sorted[i]->name);
	}
	return UC_OK;
}

/* Tensors of zero length occupy nothing and cannot overlap. */
static uc_status check_no_overlaps(const uc_manifest_tensor **sorted, size_t count, uc_error *err)
{
	qsort(sorted, count, sizeof *sorted, compare_spans);
	const uc_manifest_tensor *previous = NULL;
	for (size_t i = 0; i < count; i++) {
		const uc_manifest_tensor *t = sorted[i];
		if (t->length == 0)
			continue;
		if (previous && previous->shard == t->shard &&
		    t->offset < previous->offset + previous->length)
			return ucp_fail(err, UC_ERR_FORMAT,
					"manifest tensors: \"%s\" (shard %u, bytes %llu..%llu) overlaps \"%s\" (bytes %llu..%llu)",
					t->name, t->shard, (unsigned long long)t->offset,
					(unsigned long long)(t->offset + t->length), previous->name,
					(unsigned long long)previous->offset,
					(unsigned long long)(previous->offset + previous->length));
		previous = t;
	}
	return UC_OK;
}

static uc_status check_spans(const uc_manifest *manifest, uc_error *err)
{
	for (size_t i = 0; i < manifest->n_tensors; i++) {
		const uc_manifest_tensor *t = &manifest->tensors[i];
		if (t->shard >= manifest->n_shards)
			return ucp_fail(err, UC_ERR_FORMAT,
					"manifest tensors[%zu] \"%s\": shard %u does not exist (the manifest lists %zu shards)",
					i, t->name, t->shard, manifest->n_shards);

		uint64_t size = manifest->shards[t->shard].size;
		if (t->offset > size || t->length > size - t->offset)
			return ucp_fail(err, UC_ERR_FORMAT,
					"manifest tensors[%zu] \"%s\": span %llu+%llu ends past the end of shard %u (%llu bytes)",
					i, t->name, (unsigned long long)t->offset, (unsigned long long)t->length,
					t->shard, (unsigned long long)size);
	}
	return UC_OK;
}

static uc_status check_totals(const uc_manifest *manifest, uc_error *err)
{
	uint64_t parameters = 0, tensor_bytes = 0, shard_bytes = 0;
	for (size_t i = 0; i < manifest->n_tensors; i++) {
		if (ucp_add_u64(parameters, manifest->tensors[i].n_elements, &parameters) ||
		    ucp_add_u64(tensor_bytes, manifest->tensors[i].length, &tensor_bytes))
			return ucp_fail(err, UC_ERR_FORMAT, "manifest tensors: total size overflows 64 bits");
	}
	for (size_t i = 0; i < manifest->n_shards; i++) {
		if (ucp_add_u64(shard_bytes, manifest->shards[i].size, &shard_bytes))
			return ucp_fail(err, UC_ERR_FORMAT, "manifest shards: total size overflows 64 bits");
	}

	if (manifest->parameters != parameters)
		return ucp_fail(err, UC_ERR_FORMAT,
				"manifest totals.parameters is %llu but the tensors hold %llu weights",
				(unsigned long long)manifest->parameters, (unsigned long long)parameters);
	if (manifest->tensor_bytes != tensor_bytes)
		return ucp_fail(err, UC_ERR_FORMAT,
				"manifest totals.tensor_bytes is %llu but the tensor lengths add up to %llu",
				(unsigned long long)manifest->tensor_bytes, (unsigned long long)tensor_bytes);
	if (manifest->shard_bytes != shard_bytes)
		return ucp_fail(err, UC_ERR_FORMAT,
				"manifest totals.shard_bytes is %llu but the shard sizes add up to %llu",
				(unsigned long long)manifest->shard_bytes, (unsigned long long)shard_bytes);

	/* The stored value is rounded to UCP_REAL_DIGITS significant digits. */
	double expected = parameters ? (double)shard_bytes * 8.0 / (double)parameters : 0.0;
	if (fabs(manifest->bits_per_weight - expected) > 1e-5 * fmax(1.0, expected))
		return ucp_fail(err, UC_ERR_FORMAT,
				"manifest totals.bits_per_weight is %g but shard_bytes * 8 / parameters is %g",
				manifest->bits_per_weight, expected);
	return UC_OK;
}

uc_status ucp_manifest_check(const uc_manifest *manifest, uc_error *err)
{
	uc_status rc = check_spans(manifest, err);
	if (rc != UC_OK)
		return rc;

	rc = check_totals(manifest, err);
	if (rc != UC_OK)
		return rc;

	const uc_manifest_tensor **sorted = ucp_calloc(manifest->n_tensors, sizeof *sorted);
	if (!sorted)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory checking %zu manifest tensors",
				manifest->n_tensors);
	for (size_t i = 0; i < manifest->n_tensors; i++)
		sorted[i] = &manifest->tensors[i];

	rc = check_names_unique(sorted, manifest->n_tensors, err);
	if (rc == UC_OK)
		rc = check_no_overlaps(sorted, manifest->n_tensors, err);
	ucp_free(sorted);
	return rc;
}

void uc_free(void *ptr)
{
	ucp_free(ptr);
}
