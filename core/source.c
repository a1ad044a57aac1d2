/* The uc_source object: maps checkpoint files, detects their kind, and presents the
 * tensors every reader found through one interface. */
#include "source_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct uc_source {
	uc_source_kind kind;
	ucp_mapping *files;
	size_t file_count;
	uc_tensor_view *tensors;
	size_t tensor_count;
	const uc_tensor_view **sorted; /* the tensors in name order, for uc_source_find */
	ucp_metadata_entry *metadata;
	size_t metadata_count;
};

/* Stands in for the mapping of an empty file, which mmap cannot map. */
static const uint8_t empty_file[1];

uc_status ucp_map_file(const char *path, ucp_mapping *out, uc_error *err)
{
	memset(out, 0, sizeof *out);
	/* O_NONBLOCK keeps open() from waiting for a writer when path is a FIFO, so the
	 * regular-file check below can reject it. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return ucp_fail(err, UC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));

	uc_status rc = UC_OK;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ucp_fail(err, UC_ERR_IO, "%s: not a regular file", path);
		goto out;
	}
	out->path = ucp_strdup(path);
	if (!out->path) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "%s: out of memory", path);
		goto out;
	}
	out->size = (uint64_t)st.st_size;
	if (st.st_size == 0) {
		out->data = empty_file;
		goto out;
	}
	/* NOTE: if another process truncates the file while it is mapped, reading the lost
	 * pages raises SIGBUS; a checkpoint must not change while a source has it open. */
	void *data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (data == MAP_FAILED) {
		rc = ucp_fail(err, UC_ERR_IO, "%s: cannot map %llu bytes: %s", path,
			      (unsigned long long)st.st_size, strerror(errno));
		goto out;
	}
	out->data = data;

out:
	close(fd);
	if (rc != UC_OK) {
		ucp_free(out->path);
		memset(out, 0, sizeof *out);
	}
	return rc;
}

void ucp_unmap_file(ucp_mapping *mapping)
{
	if (mapping->data && mapping->data != empty_file)
		munmap((void *)mapping->data, (size_t)mapping->size);
	ucp_free(mapping->path);
	memset(mapping, 0, sizeof *mapping);
}

uc_status ucp_source_add_file(uc_source *src, ucp_mapping *mapping, ucp_parsed_file *parsed,
			      uc_error *err)
{
	uc_status rc = UC_OK;
	ucp_mapping *files = ucp_realloc(src->files, (src->file_count + 1) * sizeof *files);
	if (!files) {
		ucp_unmap_file(mapping);
		ucp_parsed_file_free(parsed);
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory adding a file");
	}
	src->files = files;
	src->files[src->file_count++] = *mapping;
	const uint8_t *base = mapping->data;
	memset(mapping, 0, sizeof *mapping);

	size_t count = src->tensor_count + parsed->tensor_count;
	uc_tensor_view *tensors = ucp_realloc(src->tensors, (count ? count : 1) * sizeof *tensors);
	if (!tensors) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory for %zu tensors", count);
		goto out;
	}
	src->tensors = tensors;
	for (size_t i = 0; i < parsed->tensor_count; i++) {
		ucp_tensor_entry *entry = &parsed->tensors[i];
		uc_tensor_view *view = &src->tensors[src->tensor_count++];
		memset(view, 0, sizeof *view);
		view->name = entry->name;   /* the view takes the name; freed at close */
		entry->name = NULL;
		view->dtype = entry->dtype;
		view->ndim = entry->ndim;
		memcpy(view->shape, entry->shape, sizeof view->shape);
		view->n_elements = entry->n_elements;
		view->data = base + entry->offset;
		view->nbytes = entry->nbytes;
	}

	/* Only the first file's metadata is kept (the one a sharded checkpoint reports). */
	if (src->file_count == 1) {
		src->metadata = parsed->metadata;
		src->metadata_count = parsed->metadata_count;
		parsed->metadata = NULL;
		parsed->metadata_count = 0;
	}

out:
	ucp_parsed_file_free(parsed);
	return rc;
}

static int compare_names(const void *a, const void *b)
{
	const uc_tensor_view *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* Builds the name index and rejects a name that appears twice. */
static uc_status index_names(uc_source *src, uc_error *err)
{
	src->sorted = ucp_calloc(src->tensor_count, sizeof *src->sorted);
	if (!src->sorted)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory for the tensor name index");
	for (size_t i = 0; i < src->tensor_count; i++)
		src->sorted[i] = &src->tensors[i];
	qsort(src->sorted, src->tensor_count, sizeof *src->sorted, compare_names);

	for (size_t i = 1; i < src->tensor_count; i++) {
		const char *name = src->sorted[i]->name;
		if (strcmp(name, src->sorted[i - 1]->name) == 0)
			return ucp_fail(err, UC_ERR_FORMAT, "tensor \"%.200s\" appears twice", name);
	}
	return UC_OK;
}

/* Returns 1 when the first non-space byte is '{', as in a JSON index file. */
static int looks_like_json(const ucp_mapping *file)
{
	for (uint64_t i = 0; i < file->size; i++) {
		uint8_t c = file->data[i];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return c == '{';
	}
	return 0;
}

static uc_status open_single(uc_source *src, ucp_mapping *file,
			     uc_status (*parse)(const uint8_t *, uint64_t, ucp_parsed_file **,
						uc_error *),
			     uc_error *err)
{
	ucp_parsed_file *parsed = NULL;
	uc_status rc = parse(file->data, file->size, &parsed, err);
	if (rc != UC_OK) {
		ucp_unmap_file(file);
		return rc;
	}
	return ucp_source_add_file(src, file, parsed, err);
}

/* Detects the kind of a mapped file and reads it into `src`. Takes ownership of `file`. */
static uc_status open_detected(uc_source *src, ucp_mapping *file, uc_error *err)
{
	/* safetensors first: a header length of 123 starts the file with '{'. The reverse
	 * cannot happen, because eight bytes of JSON text read as a length exceed the limit. */
	if (ucp_st_looks_like(file->data, file->size)) {
		src->kind = UC_SOURCE_SAFETENSORS;
		return open_single(src, file, ucp_st_parse, err);
	}
	if (looks_like_json(file)) {
		src->kind = UC_SOURCE_SAFETENSORS_INDEX;
		uc_status rc = ucp_index_open(src, file, err);
		ucp_unmap_file(file);
		return rc;
	}
	if (ucp_rwkvcpp_looks_like(file->data, file->size)) {
		src->kind = UC_SOURCE_RWKVCPP;
		return open_single(src, file, ucp_rwkvcpp_parse, err);
	}

	/* No signature matched: keep the safetensors reason (the parser fails on the
	 * length prefix or the first header byte, before allocating), then try llama2.c. */
	uc_error st_err, l2c_err;
	ucp_parsed_file *unused = NULL;
	ucp_st_parse(file->data, file->size, &unused, &st_err);
	src->kind = UC_SOURCE_LLAMA2C;
	uc_status rc = open_single(src, file, ucp_llama2c_parse, &l2c_err);
	if (rc == UC_ERR_FORMAT)
		return ucp_fail(err, UC_ERR_FORMAT,
				"not a checkpoint in any supported format (tried a safetensors index, "
				"safetensors, rwkv.cpp and a llama2.c legacy checkpoint): as "
				"safetensors, %s; as llama2.c, %s",
				st_err.message, l2c_err.message);
	if (rc != UC_OK && err)
		*err = l2c_err;
	return rc;
}

uc_status uc_source_open(const char *path, uc_source **out, uc_error *err)
{
	*out = NULL;
	uc_source *src = ucp_calloc(1, sizeof *src);
	if (!src)
		return ucp_fail(err, UC_ERR_NOMEM, "%s: out of memory", path);

	ucp_mapping file;
	uc_status rc = ucp_map_file(path, &file, err);
	if (rc != UC_OK)
		goto out;
	rc = open_detected(src, &file, err);
	if (rc == UC_OK)
		rc = index_names(src, err);
	if (rc != UC_OK && src->kind != UC_SOURCE_SAFETENSORS_INDEX)
		ucp_error_prefix(err, "%s", path);

out:
	if (rc != UC_OK) {
		uc_source_close(src);
		return rc;
	}
	*out = src;
	return UC_OK;
}

void uc_source_close(uc_source *src)
{
	if (!src)
		return;
	for (size_t i = 0; i < src->tensor_count; i++)
		ucp_free((char *)src->tensors[i].name);
	for (size_t i = 0; i < src->metadata_count; i++) {
		ucp_free(src->metadata[i].key);
		ucp_free(src->metadata[i].value);
	}
	for (size_t i = 0; i < src->file_count; i++)
		ucp_unmap_file(&src->files[i]);
	ucp_free(src->tensors);
	ucp_free(src->sorted);
	ucp_free(src->metadata);
	ucp_free(src->files);
	ucp_free(src);
}

uc_source_kind uc_source_get_kind(const uc_source *src)
{
	return src->kind;
}

size_t uc_source_tensor_count(const uc_source *src)
{
	return src->tensor_count;
}

const uc_tensor_view *uc_source_tensor(const uc_source *src, size_t index)
{
	return index < src->tensor_count ? &src->tensors[index] : NULL;
}

const uc_tensor_view *uc_source_find(const uc_source *src, const char *name)
{
	size_t low = 0, high = src->tensor_count;
	while (low < high) {
		size_t mid = low + (high - low) / 2;
		const uc_tensor_view *t = src->sorted[mid];
		int order = strcmp(name, t->name);
		if (order == 0)
			return t;
		if (order < 0)
			high = mid;
		else
			low = mid + 1;
	}
	return NULL;
}

const char *uc_source_metadata(const uc_source *src, const char *key)
{
	for (size_t i = 0; i < src->metadata_count; i++)
		if (strcmp(src->metadata[i].key, key) == 0)
			return src->metadata[i].value;
	return NULL;
}

/* Widens an IEEE binary16 value exactly. */
static float f16_bits_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exponent = (h >> 10) & 0x1fu;
	uint32_t mantissa = h & 0x3ffu;
	uint32_t bits;

	if (exponent == 0x1f) {
		bits = sign | 0x7f800000u | (mantissa << 13);
	} else if (exponent != 0) {
		bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
	} else if (mantissa == 0) {
		bits = sign;
	} else {
		/* A subnormal binary16 is normal in binary32: shift the leading 1 out. */
		exponent = 113;
		while (!(mantissa & 0x400u)) {
			mantissa <<= 1;
			exponent--;
		}
		bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
	}
	float value;
	memcpy(&value, &bits, sizeof value);
	return value;
}

static float bf16_bits_to_f32(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float value;
	memcpy(&value, &bits, sizeof value);
	return value;
}

void uc_tensor_to_f32(const uc_tensor_view *tensor, uint64_t first, uint64_t count, float *out)
{
	const uint8_t *data = tensor->data + first * ucp_dtype_size(tensor->dtype);
	switch (tensor->dtype) {
	case UC_DTYPE_F32:
		/* The data may be unaligned, because safetensors headers have any length. */
		for (uint64_t i = 0; i < count; i++) {
			uint32_t bits = ucp_load_le32(data + 4 * i);
			memcpy(&out[i], &bits, sizeof bits);
		}
		break;
	case UC_DTYPE_F16:
		for (uint64_t i = 0; i < count; i++)
			out[i] = f16_bits_to_f32(ucp_load_le16(data + 2 * i));
		break;
	case UC_DTYPE_BF16:
		for (uint64_t i = 0; i < count; i++)
			out[i] = bf16_bits_to_f32(ucp_load_le16(data + 2 * i));
		break;
	}
}
