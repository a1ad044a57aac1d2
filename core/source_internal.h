/* Private interface between the source readers (safetensors, index, llama2.c, rwkv.cpp)
 * and the uc_source object that presents them. Nothing here is exported. */
#ifndef UC_SOURCE_INTERNAL_H
#define UC_SOURCE_INTERNAL_H

#include "internal.h"   /* first: it includes config.h, which sets the feature macros */

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "uc_source.h"

/* Largest safetensors header (and index file) we parse. Real headers are a few hundred
 * kilobytes even for models with thousands of tensors. */
#define UCP_ST_MAX_HEADER_BYTES (100u * 1000u * 1000u)

/* Returns 1 when a failed jansson load was most likely an allocation failure. jansson
 * 2.14 reports an allocation failure before lexing with no error text. It reports one
 * inside the string lexer as a syntax error, so a one-byte probe allocation that also
 * fails is taken to show that memory, not the input, is the problem. */
static inline int ucp_json_out_of_memory(const json_error_t *jerr)
{
	if (jerr->text[0] == '\0' || json_error_code(jerr) == json_error_out_of_memory)
		return 1;
	void *probe = ucp_malloc(1);
	ucp_free(probe);
	return probe == NULL;
}

/* Returns a parenthesised explanation, starting with a space, for the jansson errors
 * whose wording is terse (NUL escapes, duplicate keys, huge integers, invalid UTF-8),
 * or "" for the others. */
const char *ucp_json_error_hint(const char *jansson_text);

/* Returns the element size of a dtype in bytes, or 0 for a value outside the enum. */
size_t ucp_dtype_size(uc_dtype dtype);

/* Returns the safetensors spelling of a dtype ("F32", "F16", "BF16"). */
const char *ucp_st_dtype_name(uc_dtype dtype);

/* One tensor as a reader found it. The name is owned by the enclosing record, and
 * `offset` counts bytes from the start of the mapped file. */
typedef struct {
	char *name;
	uc_dtype dtype;
	uint32_t ndim;
	uint64_t shape[UC_MAX_DIMS];
	uint64_t n_elements;
	uint64_t offset;
	uint64_t nbytes;
} ucp_tensor_entry;

/* A string key and value of a header's metadata; both owned by the record. */
typedef struct {
	char *key;
	char *value;
} ucp_metadata_entry;

/* What a parser of one file returns: tensors in ascending offset order and metadata in
 * file order. Owned by the caller; free with ucp_parsed_file_free. */
typedef struct {
	ucp_tensor_entry *tensors;
	size_t tensor_count;
	ucp_metadata_entry *metadata;
	size_t metadata_count;
} ucp_parsed_file;

void ucp_parsed_file_free(ucp_parsed_file *parsed);

/* Parses and validates a whole safetensors file held in memory (`file`, `file_size` bytes):
 * header length, JSON, every entry, and that the tensors cover the data region exactly.
 * Nothing is allocated before the length prefix has been checked against the file size.
 * On success *out is new and owned by the caller; on failure it is NULL. */
uc_status ucp_st_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
		       uc_error *err);

/* Returns 1 when the bytes start like a safetensors file: a length prefix that fits the
 * file and a header that begins with '{'. Allocates nothing. */
int ucp_st_looks_like(const uint8_t *file, uint64_t file_size);

/* Parses and validates a legacy llama2.c checkpoint held in memory. Tensors get Meta-style
 * names, and the metadata entry "config" is JSON built from the header. On success *out
 * is new and owned by the caller. */
uc_status ucp_llama2c_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
			    uc_error *err);

/* Returns 1 when the bytes start with the magic of the newer llama2.c format ("ak42"). */
int ucp_llama2c_is_versioned(const uint8_t *file, uint64_t file_size);

/* Parses and validates an rwkv.cpp model file held in memory. Shapes are reported in
 * PyTorch order, and the metadata entry "config" is JSON built from the header. On
 * success *out is new and owned by the caller. */
uc_status ucp_rwkvcpp_parse(const uint8_t *file, uint64_t file_size, ucp_parsed_file **out,
			    uc_error *err);

/* Returns 1 when the bytes start with the rwkv.cpp magic ("ggmf"). */
int ucp_rwkvcpp_looks_like(const uint8_t *file, uint64_t file_size);

/* A read-only mapping of one whole file. */
typedef struct {
	char *path;
	const uint8_t *data;
	uint64_t size;
} ucp_mapping;

/* Maps `path` read-only. An empty file maps to a non-NULL pointer to no bytes. */
uc_status ucp_map_file(const char *path, ucp_mapping *out, uc_error *err);
void ucp_unmap_file(ucp_mapping *mapping);

/* Opens a sharded checkpoint from its index file (already mapped by the caller, who keeps
 * ownership of `index`) into `src`. */
uc_status ucp_index_open(uc_source *src, const ucp_mapping *index, uc_error *err);

/* Helpers the readers use to fill a uc_source. ucp_source_add_file takes ownership of
 * `mapping` and `parsed` whatever the result. */
uc_status ucp_source_add_file(uc_source *src, ucp_mapping *mapping, ucp_parsed_file *parsed,
			      uc_error *err);

#endif
