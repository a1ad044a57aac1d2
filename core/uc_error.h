/* Status codes and the error record every libuc function fills on failure. */
#ifndef UC_ERROR_H
#define UC_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UC_API __attribute__((visibility("default")))

/* Result of every fallible libuc call. UC_OK is 0; every other value is a failure. */
typedef enum {
	UC_OK = 0,
	UC_ERR_NOMEM,       /* an allocation failed */
	UC_ERR_IO,          /* the operating system refused a read, write, open or rename */
	UC_ERR_FORMAT,      /* input bytes are malformed (header, JSON, lengths, offsets) */
	UC_ERR_UNSUPPORTED, /* well-formed but unknown: format version, codec id, dtype */
	UC_ERR_INVALID,     /* a caller-supplied argument or option is invalid */
	UC_ERR_NONFINITE,   /* a source weight is NaN or infinite */
	UC_ERR_RANGE,       /* a value is outside what the format can represent */
	UC_ERR_STRUCTURE,   /* a pack's manifest and shards do not fit together */
	UC_ERR_INTEGRITY,   /* a shard's SHA-256 differs from the manifest */
	UC_ERR_MISMATCH,    /* a reconstructed tensor's SHA-256 differs from the manifest */
	UC_ERR_ISA,         /* a requested instruction set is unknown or unavailable */
} uc_status;

/* Failure detail. `message` names the bad value (tensor, offset, field, file) and is
 * always NUL-terminated; it is empty when status is UC_OK. */
typedef struct {
	uc_status status;
	char message[512];
} uc_error;

/* Returns the stable lower-case name of a status ("ok", "nomem", "format", ...). */
UC_API const char *uc_status_name(uc_status status);

/* Resets an error record to UC_OK with an empty message. `err` may be NULL. */
UC_API void uc_error_clear(uc_error *err);

/* Allocation hook for fault-injection tests: after `n` more successful allocations
 * through libuc (jansson's included), every allocation fails until the hook is reset
 * with a negative `n`. Not thread-safe; tests call it from one thread. */
UC_API void uc_test_fail_allocations_after(long n);

#ifdef __cplusplus
}
#endif

#endif
