/* Private helpers shared by libuc's sources. Nothing here is exported (prefix ucp_). */
#ifndef UC_INTERNAL_H
#define UC_INTERNAL_H

#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include "uc_error.h"

#define UCP_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))

/* Sets `err` (when not NULL) to `status` with a formatted message and returns `status`,
 * so a failing path reads `return ucp_fail(err, UC_ERR_FORMAT, "...", ...);`. */
uc_status ucp_fail(uc_error *err, uc_status status, const char *fmt, ...) UCP_PRINTF(3, 4);

/* Prefixes an already-set error message with `context: ` (for example the file name). */
void ucp_error_prefix(uc_error *err, const char *fmt, ...) UCP_PRINTF(2, 3);

/* Allocation wrappers with the fault-injection hook. ucp_malloc(0) returns a unique
 * pointer. ucp_mul_size reports overflow instead of wrapping. */
void *ucp_malloc(size_t size);
void *ucp_calloc(size_t count, size_t size);
void *ucp_realloc(void *ptr, size_t size);
void ucp_free(void *ptr);
char *ucp_strdup(const char *s);
int ucp_mul_size(size_t a, size_t b, size_t *out);   /* 0 on success, -1 on overflow */
int ucp_add_u64(uint64_t a, uint64_t b, uint64_t *out); /* 0 on success, -1 on overflow */

/* Little-endian loads and stores; every on-disk integer in our formats is little-endian. */
static inline uint16_t ucp_load_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ucp_load_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t ucp_load_le64(const uint8_t *p)
{
	return (uint64_t)ucp_load_le32(p) | ((uint64_t)ucp_load_le32(p + 4) << 32);
}
static inline void ucp_store_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void ucp_store_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void ucp_store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

#endif
