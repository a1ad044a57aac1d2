/* SHA-256 helpers over OpenSSL's EVP interface, and the hex form used in manifests. */
#ifndef UC_HASH_H
#define UC_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "uc_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_SHA256_BYTES 32
#define UC_SHA256_HEX_CHARS 64

/* Incremental SHA-256. uc_sha256_new returns NULL when out of memory; the caller frees
 * the context with uc_sha256_free. uc_sha256_final may be called once. */
typedef struct uc_sha256 uc_sha256;
UC_API uc_sha256 *uc_sha256_new(void);
UC_API void uc_sha256_update(uc_sha256 *ctx, const void *data, size_t len);
UC_API void uc_sha256_final(uc_sha256 *ctx, uint8_t digest[UC_SHA256_BYTES]);
UC_API void uc_sha256_free(uc_sha256 *ctx);

/* One-shot digest of a buffer. */
UC_API void uc_sha256_buffer(const void *data, size_t len, uint8_t digest[UC_SHA256_BYTES]);

/* Digest and size of a whole file, read in 1 MiB chunks. */
UC_API uc_status uc_sha256_file(const char *path, uint8_t digest[UC_SHA256_BYTES], uint64_t *size,
				uc_error *err);

/* Writes 64 lower-case hex digits and a NUL to `out`. */
UC_API void uc_sha256_to_hex(const uint8_t digest[UC_SHA256_BYTES], char out[UC_SHA256_HEX_CHARS + 1]);

/* Parses exactly 64 lower-case hex digits (no prefix, nothing after). Returns 0, or -1. */
UC_API int uc_sha256_from_hex(const char *hex, uint8_t digest[UC_SHA256_BYTES]);

#ifdef __cplusplus
}
#endif

#endif
