/* Signed catalog snapshots: the canonical bytes that are signed and the checks a follower
 * runs before trusting one. Depends only on OpenSSL and jansson, so `uc mirror` links it
 * as well as ucregd.
 *
 * GET /api/snapshot returns {"signed": {...}, "signature": "<base64>", "algorithm":
 * "ed25519"}. The signature is Ed25519 over the canonical text of "signed": jansson's
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII serialization (keys sorted, no
 * whitespace, ASCII only), which reg_snapshot_canonical produces. */
#ifndef REG_SNAPSHOT_VERIFY_H
#define REG_SNAPSHOT_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#define REG_SNAPSHOT_SIGNATURE_BYTES 64
#define REG_SNAPSHOT_MAX_BYTES ((size_t)256 << 20)

/* A checked snapshot. `versions` is borrowed from `root`; free both with
 * reg_snapshot_clear. Every entry of `versions` is an object with the string members slug,
 * version, manifest_sha256 and status and the boolean yanked. The values themselves are
 * not validated here, because callers check names and digests with their own validators. */
typedef struct {
	int64_t serial;
	int64_t generated_at;
	int64_t expires_at;
	json_t *versions;
	json_t *root;
} reg_snapshot;

void reg_snapshot_clear(reg_snapshot *snapshot);

/* Returns the canonical text of `signed_part` (free with free), or NULL when out of memory. */
char *reg_snapshot_canonical(const json_t *signed_part);

/* Reads an Ed25519 public key in PEM. Returns the key (EVP_PKEY_free) or NULL with
 * `error` set to a message naming the file. */
EVP_PKEY *reg_snapshot_read_public_key(const char *path, char *error, size_t error_size);

/* Parses the body of GET /api/snapshot and checks, in this order: the JSON shape, the
 * Ed25519 signature over the canonical bytes under `key`, expires_at > `now`, and
 * serial >= `min_serial`. Returns 0 with `out` filled, or -1 with `error` set to a
 * message that names the failed check and the values involved. */
int reg_snapshot_check(EVP_PKEY *key, const char *body, size_t len, int64_t now,
		       int64_t min_serial, reg_snapshot *out, char *error, size_t error_size);

#endif
