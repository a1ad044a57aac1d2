/* Checks of a signed snapshot: shape, Ed25519 signature, expiry and serial order. */
#include "config.h"

#include "snapshot_verify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

void reg_snapshot_clear(reg_snapshot *snapshot)
{
	json_decref(snapshot->root);
	memset(snapshot, 0, sizeof *snapshot);
}

char *reg_snapshot_canonical(const json_t *signed_part)
{
	return json_dumps(signed_part, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

EVP_PKEY *reg_snapshot_read_public_key(const char *path, char *error, size_t error_size)
{
	FILE *file = fopen(path, "r");
	if (!file) {
		snprintf(error, error_size, "cannot open the upstream key %s; copy it from the"
			 " upstream's GET /api/keys", path);
		return NULL;
	}
	EVP_PKEY *key = PEM_read_PUBKEY(file, NULL, NULL, NULL);
	fclose(file);
	if (!key || EVP_PKEY_id(key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(key);
		snprintf(error, error_size, "%s is not an Ed25519 public key in PEM; copy it from"
			 " the upstream's GET /api/keys", path);
		return NULL;
	}
	return key;
}

/* Decodes the base64 signature, which must encode exactly 64 bytes. */
static int decode_signature(const char *text, unsigned char out[REG_SNAPSHOT_SIGNATURE_BYTES])
{
	unsigned char decoded[REG_SNAPSHOT_SIGNATURE_BYTES + 3];

	/* 64 bytes encode to 88 characters ending in "==". */
	if (strlen(text) != 88 || strcmp(text + 86, "==") != 0)
		return -1;
	if (EVP_DecodeBlock(decoded, (const unsigned char *)text, 88) != 66)
		return -1;
	memcpy(out, decoded, REG_SNAPSHOT_SIGNATURE_BYTES);
	return 0;
}

static int signature_valid(EVP_PKEY *key, const json_t *signed_part, const char *signature_b64)
{
	unsigned char signature[REG_SNAPSHOT_SIGNATURE_BYTES];
	if (decode_signature(signature_b64, signature) != 0)
		return 0;
	char *canonical = reg_snapshot_canonical(signed_part);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int valid = 0;
	if (canonical && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1)
		valid = EVP_DigestVerify(ctx, signature, sizeof signature,
					 (const unsigned char *)canonical, strlen(canonical)) == 1;
	EVP_MD_CTX_free(ctx);
	free(canonical);
	return valid;
}

/* Checks that every entry of `versions` has the members and types the follower reads. */
static int versions_shaped(const json_t *versions, char *error, size_t error_size)
{
	static const char *const strings[] = { "slug", "version", "manifest_sha256", "status" };
	size_t index;
	json_t *entry;

	json_array_foreach(versions, index, entry) {
		for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
			if (!json_is_string(json_object_get(entry, strings[i]))) {
				snprintf(error, error_size, "snapshot entry %zu has no string '%s'", index,
					 strings[i]);
				return -1;
			}
		}
		if (!json_is_boolean(json_object_get(entry, "yanked"))) {
			snprintf(error, error_size, "snapshot entry %zu has no boolean 'yanked'", index);
			return -1;
		}
	}
	return 0;
}

int reg_snapshot_check(EVP_PKEY *key, const char *body, size_t len, int64_t now,
		       int64_t min_serial, reg_snapshot *out, char *error, size_t error_size)
{
	json_error_t json_error;
	memset(out, 0, sizeof *out);

	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &json_error);
	json_t *signed_part = json_object_get(root, "signed");
	json_t *signature = json_object_get(root, "signature");
	if (!json_is_object(signed_part)) {
		snprintf(error, error_size, "snapshot is not a JSON object with a 'signed' object: %s",
			 root ? "member missing" : json_error.text);
		goto fail;
	}
	if (!json_is_string(signature)) {
		snprintf(error, error_size, "snapshot is unsigned: it has no 'signature' string");
		goto fail;
	}
	if (!signature_valid(key, signed_part, json_string_value(signature))) {
		snprintf(error, error_size, "snapshot signature is invalid under the upstream key;"
			 " check that --upstream-key is the upstream's current GET /api/keys");
		goto fail;
	}

	json_t *serial = json_object_get(signed_part, "serial");
	json_t *generated = json_object_get(signed_part, "generated_at");
	json_t *expires = json_object_get(signed_part, "expires_at");
	json_t *versions = json_object_get(signed_part, "versions");
	if (!json_is_integer(serial) || !json_is_integer(generated) || !json_is_integer(expires) ||
	    !json_is_array(versions) || json_integer_value(serial) < 0) {
		snprintf(error, error_size, "signed snapshot lacks an integer serial, generated_at or"
			 " expires_at, or a versions array");
		goto fail;
	}
	if (versions_shaped(versions, error, error_size) != 0)
		goto fail;
	out->serial = json_integer_value(serial);
	out->generated_at = json_integer_value(generated);
	out->expires_at = json_integer_value(expires);
	if (out->expires_at <= now) {
		snprintf(error, error_size, "snapshot %" PRId64 " expired at %" PRId64 " (now %" PRId64
			 "); the upstream must sign a fresh one", out->serial, out->expires_at, now);
		goto fail;
	}
	if (out->serial < min_serial) {
		snprintf(error, error_size, "snapshot serial %" PRId64 " is older than the last"
			 " accepted serial %" PRId64 "; a stale or replayed snapshot", out->serial,
			 min_serial);
		goto fail;
	}
	out->versions = versions;
	out->root = root;
	return 0;
fail:
	json_decref(root);
	memset(out, 0, sizeof *out);
	return -1;
}
