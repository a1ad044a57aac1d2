/* libFuzzer target: manifest parsing and validation on arbitrary bytes. An accepted
 * manifest must serialise canonically, parse again, and serialise to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pack_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Checks the promises of a validated manifest that later code relies on. */
static void check_invariants(const uc_manifest *m)
{
	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		if (t->shard >= uc_manifest_shard_count(m))
			__builtin_trap();
		const uc_manifest_shard *shard = uc_manifest_shard_at(m, t->shard);
		if (t->offset > shard->size || t->length > shard->size - t->offset)
			__builtin_trap();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uc_manifest *m = NULL;
	uc_error err;
	if (uc_manifest_parse((const char *)data, size, &m, &err) != UC_OK) {
		/* A failure leaves *out NULL and sets a NUL-terminated message. */
		if (m != NULL || err.message[0] == '\0' || memchr(err.message, 0, sizeof err.message) == NULL)
			__builtin_trap();
		return 0;
	}
	check_invariants(m);

	size_t len = 0, again_len = 0;
	char *canonical = uc_manifest_to_json(m, &len);
	uc_manifest *reparsed = NULL;
	if (!canonical || uc_manifest_parse(canonical, len, &reparsed, &err) != UC_OK)
		__builtin_trap();
	char *again = uc_manifest_to_json(reparsed, &again_len);
	if (!again || again_len != len || memcmp(again, canonical, len) != 0)
		__builtin_trap();

	uc_free(again);
	uc_free(canonical);
	uc_manifest_free(reparsed);
	uc_manifest_free(m);
	return 0;
}
