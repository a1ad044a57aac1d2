/* Streaming safetensors writer: header first, then the caller's tensor bytes in header
 * order, into a temporary file that is renamed over the target only when complete. */
#include "source_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

struct uc_st_writer {
	char *path;
	char *temp_path;
	int fd;
	int failed;           /* a write failed or overflowed; commit must not publish */
	uint64_t written;     /* data bytes received so far */
	uint64_t total;       /* data bytes the header declares */
	size_t count;
	char **names;         /* tensor names, for messages about incomplete data */
	uint64_t *ends;       /* end offset of each tensor in the data region */
};

static void writer_free(uc_st_writer *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	if (w->temp_path && w->temp_path[0])
		unlink(w->temp_path);
	for (size_t i = 0; w->names && i < w->count; i++)
		ucp_free(w->names[i]);
	ucp_free(w->names);
	ucp_free(w->ends);
	ucp_free(w->temp_path);
	ucp_free(w->path);
	ucp_free(w);
}

static uc_status write_all(uc_st_writer *w, const void *data, size_t len, uc_error *err)
{
	const uint8_t *p = data;
	while (len > 0) {
		ssize_t n = write(w->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			w->failed = 1;
			return ucp_fail(err, UC_ERR_IO, "%s: write failed: %s", w->temp_path,
					strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return UC_OK;
}

/* Parses the caller's metadata: a JSON object whose values are all strings. */
static uc_status parse_metadata(const char *metadata, json_t **out, uc_error *err)
{
	json_error_t jerr;
	json_t *object = json_loads(metadata, JSON_REJECT_DUPLICATES, &jerr);
	if (!object && ucp_json_out_of_memory(&jerr))
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory parsing the metadata");
	if (!object)
		return ucp_fail(err, UC_ERR_INVALID, "metadata is not valid JSON: %s", jerr.text);
	const char *key;
	json_t *value;
	int strings_only = json_is_object(object);
	json_object_foreach(object, key, value)
		strings_only &= json_is_string(value);
	if (!strings_only) {
		json_decref(object);
		return ucp_fail(err, UC_ERR_INVALID,
				"metadata must be a JSON object whose values are all strings");
	}
	*out = object;
	return UC_OK;
}

/* Returns 1 when `s` is valid UTF-8: no overlong forms, surrogates or code points above
 * U+10FFFF. Readers (ours included, through jansson) reject headers that are not. */
static int is_valid_utf8(const char *s)
{
	static const uint32_t min_code_point[] = { 0, 0x80, 0x800, 0x10000 };
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t extra;
		uint32_t code_point;
		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((*p & 0xe0) == 0xc0) {
			extra = 1;
			code_point = *p & 0x1fu;
		} else if ((*p & 0xf0) == 0xe0) {
			extra = 2;
			code_point = *p & 0x0fu;
		} else if ((*p & 0xf8) == 0xf0) {
			extra = 3;
			code_point = *p & 0x07u;
		} else {
			return 0;
		}
		/* A NUL terminator fails the continuation test, so this never reads past it. */
		for (size_t i = 1; i <= extra; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			code_point = (code_point << 6) | (p[i] & 0x3fu);
		}
		if (code_point < min_code_point[extra] || code_point > 0x10ffff ||
		    (code_point >= 0xd800 && code_point <= 0xdfff))
			return 0;
		p += extra + 1;
	}
	return 1;
}

/* Adds one tensor's header entry at data offset *offset and advances it. */
static uc_status add_entry(json_t *root, const uc_tensor_view *t, uint64_t *offset, uc_error *err)
{
	if (!t->name || !t->name[0] || strcmp(t->name, "__metadata__") == 0)
		return ucp_fail(err, UC_ERR_INVALID, "tensor name \"%s\" is not allowed",
				t->name ? t->name : "(null)");
	if (!is_valid_utf8(t->name))
		return ucp_fail(err, UC_ERR_INVALID, "tensor name \"%.200s\" is not valid UTF-8",
				t->name);
	if (json_object_get(root, t->name))
		return ucp_fail(err, UC_ERR_INVALID, "tensor \"%.200s\" is listed twice", t->name);
	if (ucp_dtype_size(t->dtype) == 0 || t->ndim > UC_MAX_DIMS)
		return ucp_fail(err, UC_ERR_INVALID, "tensor \"%.200s\": invalid dtype %d or rank %u",
				t->name, (int)t->dtype, (unsigned)t->ndim);

	json_t *shape = json_array();
	uint64_t bytes = ucp_dtype_size(t->dtype);
	int overflow = 0;
	for (uint32_t i = 0; i < t->ndim && shape; i++) {
		overflow |= __builtin_mul_overflow(bytes, t->shape[i], &bytes);
		overflow |= t->shape[i] > (uint64_t)INT64_MAX;
		if (json_array_append_new(shape, json_integer((json_int_t)t->shape[i])) != 0) {
			json_decref(shape);
			shape = NULL;
		}
	}
	uint64_t end;
	overflow |= __builtin_add_overflow(*offset, bytes, &end) || end > (uint64_t)INT64_MAX;
	if (overflow) {
		json_decref(shape);
		return ucp_fail(err, UC_ERR_INVALID, "tensor \"%.200s\": byte size overflows", t->name);
	}
	json_t *entry = json_pack("{s:s, s:o, s:[I, I]}", "dtype", ucp_st_dtype_name(t->dtype),
				  "shape", shape, "data_offsets", (json_int_t)*offset,
				  (json_int_t)end);
	if (!entry || json_object_set_new(root, t->name, entry) != 0)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
	*offset = end;
	return UC_OK;
}

/* Builds the header text padded with spaces so the data starts at an 8-byte boundary. */
static uc_status build_header(uc_st_writer *w, const uc_tensor_view *tensors, size_t count,
			      const char *metadata, char **text, size_t *len, uc_error *err)
{
	uc_status rc = UC_OK;
	json_t *root = json_object();
	if (!root)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
	if (metadata) {
		json_t *object = NULL;
		rc = parse_metadata(metadata, &object, err);
		if (rc == UC_OK && json_object_set_new(root, "__metadata__", object) != 0)
			rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
	}

	uint64_t offset = 0;
	for (size_t i = 0; i < count && rc == UC_OK; i++) {
		rc = add_entry(root, &tensors[i], &offset, err);
		if (rc == UC_OK) {
			w->names[i] = ucp_strdup(tensors[i].name);
			w->ends[i] = offset;
			if (!w->names[i])
				rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
		}
	}
	w->total = offset;

	char *json = rc == UC_OK ? json_dumps(root, JSON_COMPACT) : NULL;
	if (rc == UC_OK && !json)
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
	if (rc == UC_OK) {
		size_t used = strlen(json);
		size_t padded = (used + 8 + 7) / 8 * 8 - 8;
		*text = ucp_realloc(json, padded);
		if (!*text) {
			ucp_free(json);
			rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory building the header");
		} else {
			memset(*text + used, ' ', padded - used);
			*len = padded;
		}
	}
	json_decref(root);
	return rc;
}

static uc_status create_temp(uc_st_writer *w, uc_error *err)
{
	size_t len = strlen(w->path) + sizeof ".tmp-XXXXXX";
	w->temp_path = ucp_malloc(len);
	if (!w->temp_path)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory");
	memcpy(w->temp_path, w->path, strlen(w->path));
	memcpy(w->temp_path + strlen(w->path), ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");
	w->fd = mkostemp(w->temp_path, O_CLOEXEC);
	if (w->fd < 0) {
		int saved = errno;
		w->temp_path[0] = '\0';   /* nothing to unlink */
		return ucp_fail(err, UC_ERR_IO, "%s: cannot create a temporary file beside it: %s",
				w->path, strerror(saved));
	}
	return UC_OK;
}

uc_status uc_st_writer_open(const char *path, const uc_tensor_view *tensors, size_t count,
			    const char *metadata, uc_st_writer **out, uc_error *err)
{
	*out = NULL;
	if (*path == '\0')
		return ucp_fail(err, UC_ERR_INVALID,
				"output file path is empty; give the safetensors file to write");
	struct stat st;
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return ucp_fail(err, UC_ERR_INVALID,
				"output %s is a directory; give a file path such as %s/model.safetensors",
				path, path);
	char *header = NULL;
	size_t header_len = 0;
	uc_st_writer *w = ucp_calloc(1, sizeof *w);
	if (!w)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory");
	w->fd = -1;
	w->count = count;
	w->path = ucp_strdup(path);
	w->names = ucp_calloc(count, sizeof *w->names);
	w->ends = ucp_calloc(count, sizeof *w->ends);
	uc_status rc = UC_OK;
	if (!w->path || !w->names || !w->ends) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory");
		goto out;
	}

	rc = build_header(w, tensors, count, metadata, &header, &header_len, err);
	if (rc != UC_OK) {
		ucp_error_prefix(err, "%s", path);
		goto out;
	}
	rc = create_temp(w, err);
	if (rc != UC_OK)
		goto out;
	uint8_t prefix[8];
	ucp_store_le64(prefix, header_len);
	rc = write_all(w, prefix, sizeof prefix, err);
	if (rc == UC_OK)
		rc = write_all(w, header, header_len, err);

out:
	ucp_free(header);
	if (rc != UC_OK) {
		writer_free(w);
		return rc;
	}
	*out = w;
	return UC_OK;
}

uc_status uc_st_writer_write(uc_st_writer *writer, const void *data, size_t len, uc_error *err)
{
	if (writer->failed)
		return ucp_fail(err, UC_ERR_INVALID, "%s: an earlier write failed; abort the writer",
				writer->path);
	if (len > writer->total - writer->written) {
		writer->failed = 1;
		return ucp_fail(err, UC_ERR_INVALID,
				"%s: writing %zu bytes would exceed the %llu data bytes the header "
				"declares (%llu written so far)",
				writer->path, len, (unsigned long long)writer->total,
				(unsigned long long)writer->written);
	}
	uc_status rc = write_all(writer, data, len, err);
	if (rc == UC_OK)
		writer->written += len;
	return rc;
}

/* Names the first tensor whose bytes did not all arrive. */
static const char *first_incomplete(const uc_st_writer *w)
{
	for (size_t i = 0; i < w->count; i++)
		if (w->ends[i] > w->written)
			return w->names[i];
	return "(none)";
}

/* Opens the directory that contains `path`, so the rename can be made durable. */
static uc_status open_directory(const char *path, int *out, uc_error *err)
{
	char *copy = ucp_strdup(path);
	if (!copy)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory");
	*out = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int saved = errno;
	ucp_free(copy);
	if (*out < 0)
		return ucp_fail(err, UC_ERR_IO, "%s: cannot open its directory: %s", path,
				strerror(saved));
	return UC_OK;
}

uc_status uc_st_writer_commit(uc_st_writer *writer, uc_error *err)
{
	uc_status rc = UC_OK;
	if (writer->failed) {
		rc = ucp_fail(err, UC_ERR_INVALID, "%s: an earlier write failed; nothing was written",
			      writer->path);
		goto out;
	}
	if (writer->written != writer->total) {
		rc = ucp_fail(err, UC_ERR_INVALID,
			      "%s: received %llu of the %llu data bytes the header declares; tensor "
			      "\"%.200s\" is incomplete, so nothing was written",
			      writer->path, (unsigned long long)writer->written,
			      (unsigned long long)writer->total, first_incomplete(writer));
		goto out;
	}
	/* mkostemp creates the file 0600; a published checkpoint is readable by all. */
	if (fchmod(writer->fd, 0644) != 0 || fsync(writer->fd) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "%s: cannot sync: %s", writer->temp_path, strerror(errno));
		goto out;
	}
	int fd = writer->fd;
	writer->fd = -1;
	if (close(fd) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "%s: close failed: %s", writer->temp_path, strerror(errno));
		goto out;
	}
	int dir_fd = -1;
	rc = open_directory(writer->path, &dir_fd, err);
	if (rc != UC_OK)
		goto out;
	if (rename(writer->temp_path, writer->path) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "cannot rename %s to %s: %s", writer->temp_path,
			      writer->path, strerror(errno));
	} else {
		writer->temp_path[0] = '\0';   /* renamed: nothing left to unlink */
		if (fsync(dir_fd) != 0) {
			rc = ucp_fail(err, UC_ERR_IO, "%s: cannot sync its directory: %s",
				      writer->path, strerror(errno));
			unlink(writer->path);   /* keep the promise: no file after a failure */
		}
	}
	close(dir_fd);

out:
	writer_free(writer);
	return rc;
}

void uc_st_writer_abort(uc_st_writer *writer)
{
	writer_free(writer);
}
