/* Small helpers shared by the harness's sources: error records, overflow checks and
 * little-endian loads. The harness uses only libuc's public API, so it keeps its own. */
#ifndef UC_EVAL_UTIL_H
#define UC_EVAL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "uc_error.h"

#define EVAL_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))

/* Sets `err` (when not NULL) to `status` with a formatted message and returns `status`. */
uc_status eval_fail(uc_error *err, uc_status status, const char *fmt, ...) EVAL_PRINTF(3, 4);

/* Prefixes the message already in `err` with "CONTEXT: ". */
void eval_error_prefix(uc_error *err, const char *fmt, ...) EVAL_PRINTF(2, 3);

/* Stores a * b in *out and returns 0, or returns -1 when the product overflows size_t. */
static inline int eval_mul_size(size_t a, size_t b, size_t *out)
{
	return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}

static inline uint16_t eval_load_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t eval_load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

#endif
