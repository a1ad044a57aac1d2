/* Source checkpoints: safetensors files, sharded safetensors checkpoints (through their
 * model.safetensors.index.json), llama2.c checkpoints and rwkv.cpp model files, read
 * through one interface.
 * Also the safetensors writer used by `uc unpack`. */
#ifndef UC_SOURCE_H
#define UC_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "uc_codec.h"
#include "uc_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_MAX_DIMS 8

/* One tensor of a source. `data` and `name` are borrowed from the source and live until
 * uc_source_close. Elements are little-endian `dtype`. */
typedef struct {
	const char *name;
	uc_dtype dtype;
	uint32_t ndim;
	uint64_t shape[UC_MAX_DIMS];
	uint64_t n_elements;  /* product of shape; 1 for ndim == 0 */
	const uint8_t *data;
	uint64_t nbytes;      /* n_elements * uc_dtype_size(dtype) */
} uc_tensor_view;

typedef enum {
	UC_SOURCE_SAFETENSORS = 0,
	UC_SOURCE_SAFETENSORS_INDEX = 1,
	UC_SOURCE_LLAMA2C = 2,
	UC_SOURCE_RWKVCPP = 3,
} uc_source_kind;

typedef struct uc_source uc_source;

/* Opens a checkpoint read-only (memory-mapped). The kind is detected from the content,
 * in this order: a file whose length prefix fits and whose header starts with '{' is
 * safetensors, a file whose first non-space byte is '{' is a JSON index with
 * "weight_map", a file that starts with the magic "ggmf" is rwkv.cpp, and any other file
 * is read as a legacy llama2.c checkpoint. Every header field is validated before use; the message names
 * the file and the bad value. On success the caller owns *out and frees it with
 * uc_source_close. */
UC_API uc_status uc_source_open(const char *path, uc_source **out, uc_error *err);
UC_API void uc_source_close(uc_source *src);
UC_API uc_source_kind uc_source_get_kind(const uc_source *src);

/* Tensors in a stable order: file order (ascending data offset) within a file, files in
 * the order the index first names them. */
UC_API size_t uc_source_tensor_count(const uc_source *src);
UC_API const uc_tensor_view *uc_source_tensor(const uc_source *src, size_t index);
/* Returns the tensor with this exact name, or NULL. */
UC_API const uc_tensor_view *uc_source_find(const uc_source *src, const char *name);
/* Returns a string value of the safetensors "__metadata__" object (of the first file
 * for a sharded checkpoint), or NULL. A llama2.c or rwkv.cpp source reports "config" as
 * JSON built from its header. Borrowed. */
UC_API const char *uc_source_metadata(const uc_source *src, const char *key);

/* Converts elements [first, first + count) of a tensor to float32 (exact for every dtype). */
UC_API void uc_tensor_to_f32(const uc_tensor_view *tensor, uint64_t first, uint64_t count,
			     float *out);

/* Streaming safetensors writer. The header is written from `tensors` (name, dtype, shape;
 * data ignored) in the given order with contiguous offsets; the caller then writes each
 * tensor's bytes in that order. The file appears at `path` only after
 * uc_st_writer_commit (temporary file, fsync, rename). `metadata` is NULL or a JSON
 * object of string values stored as "__metadata__". */
typedef struct uc_st_writer uc_st_writer;
UC_API uc_status uc_st_writer_open(const char *path, const uc_tensor_view *tensors, size_t count,
				   const char *metadata, uc_st_writer **out, uc_error *err);
UC_API uc_status uc_st_writer_write(uc_st_writer *writer, const void *data, size_t len,
				    uc_error *err);
/* Checks that exactly the declared bytes were written, then publishes the file. Frees the
 * writer whatever the result; on failure no file is left at `path`. */
UC_API uc_status uc_st_writer_commit(uc_st_writer *writer, uc_error *err);
/* Discards the temporary file and frees the writer. NULL is allowed. */
UC_API void uc_st_writer_abort(uc_st_writer *writer);

#ifdef __cplusplus
}
#endif

#endif
