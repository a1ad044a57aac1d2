/* libFuzzer target: full verification of a pack made from the fuzzer's bytes.
 *
 * Input layout: a 2-byte little-endian manifest length M, a 2-byte little-endian length S
 * of shard 0, then M bytes of manifest, S bytes of shard 0, and whatever remains as shard 1
 * (no shard 1 when nothing remains). Lengths are clipped to what is there. Each shard is
 * written to a fresh directory under its own SHA-256, and the strings $SHARD0 and $SHARD1
 * in the manifest are replaced by those digests, so inputs can get past the structure
 * stage and reach shard hashing and reconstruction.
 * The target decodes on the scalar path (see fuzz_scalar_kernels.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pack_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_shard(const char *dir, const uint8_t *bytes, size_t len, char hex[65])
{
	uint8_t digest[32];
	char path[256];
	uc_sha256_buffer(bytes, len, digest);
	uc_sha256_to_hex(digest, hex);
	snprintf(path, sizeof path, "%s/%s", dir, hex);
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (len && fwrite(bytes, 1, len, f) != len)
		abort();
	fclose(f);
}

/* Returns the manifest with every $SHARDn replaced by the digest of shard n (malloc). */
static char *substitute(const uint8_t *manifest, size_t len, char digests[2][65], size_t *out_len)
{
	char *out = malloc(len / 7 * 64 + len + 1);
	size_t used = 0;
	for (size_t i = 0; i < len;) {
		if (len - i >= 7 && memcmp(manifest + i, "$SHARD", 6) == 0 &&
		    (manifest[i + 6] == '0' || manifest[i + 6] == '1')) {
			memcpy(out + used, digests[manifest[i + 6] - '0'], 64);
			used += 64;
			i += 7;
		} else {
			out[used++] = (char)manifest[i++];
		}
	}
	out[used] = '\0';
	*out_len = used;
	return out;
}

static void remove_dir(const char *dir, char digests[2][65])
{
	char path[256];
	for (int s = 0; s < 2; s++) {
		snprintf(path, sizeof path, "%s/%s", dir, digests[s]);
		unlink(path);
	}
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int initialised;
	if (!initialised) {
		uc_isa_force(UC_ISA_SCALAR, NULL);
		initialised = 1;
	}
	if (size < 4)
		return 0;

	size_t rest = size - 4;
	size_t manifest_len = (size_t)(data[0] | data[1] << 8);
	manifest_len = manifest_len < rest ? manifest_len : rest;
	rest -= manifest_len;
	size_t shard0_len = (size_t)(data[2] | data[3] << 8);
	shard0_len = shard0_len < rest ? shard0_len : rest;
	const uint8_t *manifest = data + 4;
	const uint8_t *shard0 = manifest + manifest_len;
	const uint8_t *shard1 = shard0 + shard0_len;
	size_t shard1_len = rest - shard0_len;

	char dir[] = "/tmp/fuzz-verify-XXXXXX";
	if (!mkdtemp(dir))
		abort();
	char digests[2][65] = {"", ""};
	write_shard(dir, shard0, shard0_len, digests[0]);
	if (shard1_len > 0)
		write_shard(dir, shard1, shard1_len, digests[1]);
	else
		memcpy(digests[1], digests[0], sizeof digests[0]);

	size_t json_len;
	char *json = substitute(manifest, manifest_len, digests, &json_len);
	uc_verify_options options;
	uc_verify_options_init(&options);
	options.threads = 1;
	uc_report *report = NULL;
	uc_error err;
	uc_status status = uc_verify_manifest(json, json_len, dir, &options, &report, &err);
	if (status != UC_OK)
		__builtin_trap();

	char *text = uc_report_to_text(report);
	char *report_json = uc_report_to_json(report);
	if (!text || !report_json)
		__builtin_trap();
	if ((uc_report_verdict(report) == UC_VERDICT_OK) != (uc_report_error_count(report) == 0))
		__builtin_trap();

	uc_free(text);
	uc_free(report_json);
	uc_report_free(report);
	free(json);
	remove_dir(dir, digests);
	return 0;
}
