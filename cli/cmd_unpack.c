/* uc unpack: rebuild a pack's tensors into one safetensors file. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char unpack_usage[] =
	"Usage: uc unpack PACK -o FILE.safetensors\n"
	"\n"
	"Rebuilds every tensor of PACK in its target dtype and writes them, in manifest order, to a\n"
	"safetensors file that any safetensors reader loads. Each tensor's SHA-256 is checked\n"
	"against the manifest while it is written; on a mismatch or any error no file is left.\n"
	"\n"
	"Options:\n"
	"  -o, --output FILE  safetensors file to write (replaced if it exists)\n"
	"  -h, --help         show this help\n";

/* State of one tensor's reconstruction stream: written to the file and hashed. */
struct unpack_stream {
	uc_st_writer *writer;
	uc_sha256 *hash;
	cli_progress *bar;
	uint64_t done;
	uint64_t total;
};

static uc_status write_chunk(void *ctx, const void *data, size_t len, uc_error *err)
{
	struct unpack_stream *stream = ctx;
	uc_sha256_update(stream->hash, data, len);
	stream->done += len;
	cli_progress_update(stream->bar, stream->done, stream->total);
	return uc_st_writer_write(stream->writer, data, len, err);
}

/* Builds the writer's tensor list from the manifest (names and shapes borrowed from it). */
static uc_tensor_view *tensor_views(const uc_manifest *m, uint64_t *total_bytes)
{
	size_t count = uc_manifest_tensor_count(m);
	uc_tensor_view *views = calloc(count ? count : 1, sizeof *views);
	if (!views)
		return NULL;
	*total_bytes = 0;
	for (size_t i = 0; i < count; i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		views[i].name = t->name;
		views[i].dtype = t->dtype;
		views[i].ndim = t->ndim;
		memcpy(views[i].shape, t->shape, sizeof views[i].shape);
		views[i].n_elements = t->n_elements;
		views[i].nbytes = t->n_elements * uc_dtype_size(t->dtype);
		*total_bytes += views[i].nbytes;
	}
	return views;
}

static int unpack(const char *pack_dir, const char *out_path)
{
	uc_error err;
	uc_error_clear(&err);
	uc_pack *pack = NULL;
	uc_tensor_view *views = NULL;
	struct unpack_stream stream = { 0 };
	int rc = UC_EXIT_OK;

	if (uc_isa_init(&err) != UC_OK || uc_pack_open(pack_dir, &pack, &err) != UC_OK) {
		rc = cli_report_error("unpack", &err);
		goto out;
	}
	const uc_manifest *m = uc_pack_manifest(pack);
	size_t count = uc_manifest_tensor_count(m);
	views = tensor_views(m, &stream.total);
	if (!views) {
		cli_error("unpack", "out of memory");
		rc = UC_EXIT_FAILURE;
		goto out;
	}

	/* The unpacked file records which manifest it came from, so it can be traced back. */
	char metadata[256];
	uint8_t manifest_digest[UC_SHA256_BYTES];
	char manifest_hex[UC_SHA256_HEX_CHARS + 1];
	uc_pack_manifest_sha256(pack, manifest_digest);
	uc_sha256_to_hex(manifest_digest, manifest_hex);
	snprintf(metadata, sizeof metadata, "{\"uc_pack_manifest_sha256\":\"%s\"}", manifest_hex);

	if (uc_st_writer_open(out_path, views, count, metadata, &stream.writer, &err) != UC_OK) {
		rc = cli_report_error("unpack", &err);
		goto out;
	}
	stream.bar = cli_progress_start("unpacking", 1);

	for (size_t i = 0; i < count; i++) {
		const uc_manifest_tensor *t = uc_manifest_tensor_at(m, i);
		uint8_t digest[UC_SHA256_BYTES];
		stream.hash = uc_sha256_new();
		if (!stream.hash) {
			cli_error("unpack", "out of memory");
			rc = UC_EXIT_FAILURE;
			goto out;
		}
		if (uc_pack_reconstruct(pack, i, write_chunk, &stream, &err) != UC_OK) {
			rc = cli_report_error("unpack", &err);
			goto out;
		}
		uc_sha256_final(stream.hash, digest);
		uc_sha256_free(stream.hash);
		stream.hash = NULL;
		if (memcmp(digest, t->sha256, sizeof digest) != 0) {
			cli_error("unpack", "tensor %s: rebuilt SHA-256 differs from the manifest; run 'uc verify %s'",
				  t->name, pack_dir);
			rc = UC_EXIT_RECONSTRUCTION;
			goto out;
		}
	}

	uc_st_writer *writer = stream.writer;
	stream.writer = NULL;
	if (uc_st_writer_commit(writer, &err) != UC_OK) {
		rc = cli_report_error("unpack", &err);
		goto out;
	}
	cli_progress_finish(stream.bar);
	stream.bar = NULL;
	printf("wrote %s: %zu tensors, %llu bytes of weights\n", out_path, count,
	       (unsigned long long)stream.total);

out:
	cli_progress_finish(stream.bar);
	uc_sha256_free(stream.hash);
	uc_st_writer_abort(stream.writer);
	free(views);
	uc_pack_close(pack);
	return rc;
}

int uc_cmd_unpack(int argc, char **argv)
{
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *out_path = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
		switch (c) {
		case 'o': out_path = optarg; break;
		case 'h': fputs(unpack_usage, stdout); return UC_EXIT_OK;
		default: fputs(unpack_usage, stderr); return UC_EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		cli_error("unpack", "expected exactly one pack directory; run 'uc unpack --help'");
		return UC_EXIT_USAGE;
	}
	if (!out_path) {
		cli_error("unpack", "missing -o FILE.safetensors: the file to write");
		return UC_EXIT_USAGE;
	}
	return unpack(argv[optind], out_path);
}
