/* The checks shared by the source-parser fuzz targets. Every tensor of an accepted file
 * must lie inside the input, which AddressSanitizer checks when its first and last
 * elements are read; a failure must leave the output NULL and set a NUL-terminated
 * message. */
#ifndef UC_FUZZ_SOURCE_PARSER_H
#define UC_FUZZ_SOURCE_PARSER_H

#include <stdint.h>
#include <string.h>

#include "source_internal.h"

typedef uc_status (*fuzz_parse_fn)(const uint8_t *file, uint64_t file_size,
				   ucp_parsed_file **out, uc_error *err);

static inline int fuzz_source_parser(fuzz_parse_fn parse, const uint8_t *data, size_t size)
{
	ucp_parsed_file *parsed = NULL;
	uc_error err;
	uc_error_clear(&err);
	if (parse(data, size, &parsed, &err) != UC_OK) {
		if (parsed != NULL || err.message[0] == '\0' ||
		    memchr(err.message, 0, sizeof err.message) == NULL)
			__builtin_trap();
		return 0;
	}

	for (size_t i = 0; i < parsed->tensor_count; i++) {
		const ucp_tensor_entry *t = &parsed->tensors[i];
		if (t->offset > size || t->nbytes > size - t->offset)
			__builtin_trap();
		uc_tensor_view view = { .name = t->name, .dtype = t->dtype, .ndim = t->ndim,
					.n_elements = t->n_elements, .data = data + t->offset,
					.nbytes = t->nbytes };
		float ends[2];
		if (t->n_elements > 0) {
			uc_tensor_to_f32(&view, 0, 1, &ends[0]);
			uc_tensor_to_f32(&view, t->n_elements - 1, 1, &ends[1]);
		}
	}
	ucp_parsed_file_free(parsed);
	return 0;
}

#endif
