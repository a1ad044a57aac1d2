/* uc inspect: show what a pack contains, from its manifest alone. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

static const char inspect_usage[] =
	"Usage: uc inspect PACK [--json]\n"
	"\n"
	"Shows a pack's model metadata, totals (parameters, bits per weight, weighted SQNR) and\n"
	"every tensor with its shape, encoding and measured fidelity. Reads only manifest.json;\n"
	"run 'uc verify' to check the shards.\n"
	"\n"
	"Options:\n"
	"      --json   print the manifest with its SHA-256 as JSON\n"
	"  -h, --help   show this help\n";

/* The largest manifest accepted: about 64 bytes per tensor times millions of tensors. */
#define MAX_MANIFEST_BYTES ((size_t)256 << 20)

int cli_read_manifest(const char *verb, const char *pack_dir, char **out, size_t *len)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof path, "%s/manifest.json", pack_dir) >= sizeof path) {
		cli_error(verb, "pack path too long: %s", pack_dir);
		return -1;
	}
	/* O_NONBLOCK keeps open() from waiting for a writer when the manifest is a FIFO. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		cli_error(verb, "cannot open %s: %s; is %s a pack directory?", path, strerror(errno), pack_dir);
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cli_error(verb, "%s is not a regular file; is %s a pack directory?", path, pack_dir);
		close(fd);
		return -1;
	}
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		cli_error(verb, "cannot read %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}

	size_t cap = 1 << 16, used = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + used, 1, cap - used, f);
		used += got;
		if (used < cap)
			break;
		if (cap >= MAX_MANIFEST_BYTES) {
			cli_error(verb, "%s is larger than %zu bytes; not a manifest", path, MAX_MANIFEST_BYTES);
			free(buf);
			fclose(f);
			return -1;
		}
		char *grown = realloc(buf, cap * 2);
		if (!grown) {
			free(buf);
			buf = NULL;
			break;
		}
		buf = grown;
		cap *= 2;
	}
	int failed = ferror(f);
	fclose(f);
	if (!buf || failed) {
		cli_error(verb, "cannot read %s", path);
		free(buf);
		return -1;
	}
	*out = buf;
	*len = used;
	return 0;
}

static void format_shape(const uc_manifest_tensor *t, char *out, size_t size)
{
	size_t used = (size_t)snprintf(out, size, "[");
	for (uint32_t d = 0; d < t->ndim && used < size; d++)
		used += (size_t)snprintf(out + used, size - used, "%s%" PRIu64, d ? "," : "", t->shape[d]);
	if (used < size)
		snprintf(out + used, size - used, "]");
}

static void print_text(const uc_manifest *m, const char *digest_hex)
{
	const char *fields[] = { "name", "family", "source_model", "license" };
	for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
		const char *value = uc_manifest_model_field(m, fields[i]);
		printf("%-16s %s\n", fields[i], value ? value : "-");
	}
	printf("%-16s %" PRIu64 "\n", "parameters", uc_manifest_parameters(m));
	printf("%-16s %.4f\n", "bits_per_weight", uc_manifest_bits_per_weight(m));
	printf("%-16s %.3f dB\n", "sqnr", uc_manifest_sqnr_db(m));
	printf("%-16s %zu\n", "shards", uc_manifest_shard_count(m));
	printf("%-16s %zu\n", "tensors", uc_manifest_tensor_count(m));
	printf("%-16s %s\n\n", "manifest_sha256", digest_hex);

	printf("%-44s %-14s %-5s %-4s %12s %10s %12s\n", "tensor", "shape", "enc", "type", "bytes", "sqnr_db",
	       "max_abs_err");
	for (size_t i = 0; i < uc_manifest_tensor_count(m); i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		char shape[64], sqnr[32];
		format_shape(t, shape, sizeof shape);
		if (isnan(t->sqnr_db))
			snprintf(sqnr, sizeof sqnr, "exact");
		else
			snprintf(sqnr, sizeof sqnr, "%.2f", t->sqnr_db);
		printf("%-44s %-14s %-5s %-4s %12" PRIu64 " %10s %12.3g\n", t->name, shape,
		       t->encoding == UC_ENCODING_UC5 ? "uc5" : "raw", uc_dtype_name(t->dtype), t->length, sqnr,
		       t->max_abs_error);
	}
}

static int print_json(const char *bytes, size_t len, const char *digest_hex)
{
	json_error_t jerr;
	json_t *doc = json_loadb(bytes, len, 0, &jerr);
	if (!doc)
		return -1;
	json_t *out = json_pack("{s:s, s:o}", "manifest_sha256", digest_hex, "manifest", doc);
	if (!out)
		return -1;
	int rc = json_dumpf(out, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	fputc('\n', stdout);
	json_decref(out);
	return rc;
}

int uc_cmd_inspect(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int json = 0;
	int c;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'j': json = 1; break;
		case 'h': fputs(inspect_usage, stdout); return UC_EXIT_OK;
		default: fputs(inspect_usage, stderr); return UC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		cli_error("inspect", "expected exactly one pack directory; run 'uc inspect --help'");
		return UC_EXIT_USAGE;
	}

	char *bytes = NULL;
	size_t len = 0;
	if (cli_read_manifest("inspect", argv[optind], &bytes, &len) != 0)
		return UC_EXIT_FAILURE;

	uc_error err;
	uc_error_clear(&err);
	uc_manifest *m = NULL;
	int rc = UC_EXIT_OK;
	if (uc_manifest_parse(bytes, len, &m, &err) != UC_OK) {
		cli_error("inspect", "%s/manifest.json: %s", argv[optind], err.message);
		rc = UC_EXIT_STRUCTURE;
		goto out;
	}

	uint8_t digest[UC_SHA256_BYTES];
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_buffer(bytes, len, digest);
	uc_sha256_to_hex(digest, hex);
	if (json) {
		if (print_json(bytes, len, hex) != 0) {
			cli_error("inspect", "out of memory formatting the manifest");
			rc = UC_EXIT_FAILURE;
		}
	} else {
		print_text(m, hex);
	}

out:
	uc_manifest_free(m);
	free(bytes);
	return rc;
}
