/* uc pack: encode a checkpoint into a pack directory. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char pack_usage[] =
	"Usage: uc pack SRC -o DIR --family FAMILY [OPTIONS]\n"
	"\n"
	"Encodes every tensor of SRC (a .safetensors file, a model.safetensors.index.json of a\n"
	"sharded checkpoint, a llama2.c checkpoint or an rwkv.cpp FP32/FP16 model file) into the\n"
	"pack directory DIR, which must not exist. 2-D tensors are stored at 5.5 bits per weight\n"
	"(uc5) unless a weight is too large for uc5's fp16 scales; other tensors are stored raw.\n"
	"\n"
	"Options:\n"
	"  -o, --output DIR        pack directory to create (required)\n"
	"      --family FAMILY     dense, moe, ssm, recurrent, hybrid, vit or other (required)\n"
	"      --name NAME         model name (default: SRC's file name without extension)\n"
	"      --source-model ID   where the weights come from, for example a model hub id\n"
	"      --license LICENSE   licence of the weights, for example MIT\n"
	"      --dtype DTYPE       dtype of the reconstructed tensors: bf16 (default), f16 or f32\n"
	"      --threads N         encoder threads; 0 (default) uses every online CPU.\n"
	"                          The pack's bytes do not depend on N.\n"
	"      --shard-size BYTES  largest shard file before a new one starts (default 2G;\n"
	"                          suffixes K, M, G)\n"
	"  -h, --help              show this help\n";

static char *default_name(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	char *name = strdup(base);
	if (!name)
		return NULL;
	char *dot = strrchr(name, '.');
	if (dot && dot != name)
		*dot = '\0';
	return name;
}

/* Prints what was written, from the manifest the pack now holds. */
static void print_summary(const char *out_dir)
{
	char *bytes = NULL;
	size_t len = 0;
	if (cli_read_manifest("pack", out_dir, &bytes, &len) != 0)
		return;

	uc_manifest *m = NULL;
	uc_error err;
	if (uc_manifest_parse(bytes, len, &m, &err) == UC_OK) {
		uint8_t digest[UC_SHA256_BYTES];
		char hex[UC_SHA256_HEX_CHARS + 1];
		uc_sha256_buffer(bytes, len, digest);
		uc_sha256_to_hex(digest, hex);
		printf("wrote %s: %zu tensors in %zu shard(s), %llu parameters, %.4f bits per weight, "
		       "SQNR %.2f dB\nmanifest sha256 %s\n",
		       out_dir, uc_manifest_tensor_count(m), uc_manifest_shard_count(m),
		       (unsigned long long)uc_manifest_parameters(m), uc_manifest_bits_per_weight(m),
		       uc_manifest_sqnr_db(m), hex);
	}
	uc_manifest_free(m);
	free(bytes);
}

int uc_cmd_pack(int argc, char **argv)
{
	enum { OPT_FAMILY = 256, OPT_NAME, OPT_SOURCE_MODEL, OPT_LICENSE, OPT_DTYPE, OPT_THREADS, OPT_SHARD_SIZE };
	static const struct option options[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "family", required_argument, NULL, OPT_FAMILY },
		{ "name", required_argument, NULL, OPT_NAME },
		{ "source-model", required_argument, NULL, OPT_SOURCE_MODEL },
		{ "license", required_argument, NULL, OPT_LICENSE },
		{ "dtype", required_argument, NULL, OPT_DTYPE },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "shard-size", required_argument, NULL, OPT_SHARD_SIZE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	uc_pack_options opts;
	uc_pack_options_init(&opts);
	const char *out_dir = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "o:h", options, NULL)) != -1) {
		switch (c) {
		case 'o': out_dir = optarg; break;
		case OPT_FAMILY: opts.family = optarg; break;
		case OPT_NAME: opts.name = optarg; break;
		case OPT_SOURCE_MODEL: opts.source_model = optarg; break;
		case OPT_LICENSE: opts.license = optarg; break;
		case OPT_DTYPE:
			if (uc_dtype_parse(optarg, &opts.dtype) != 0) {
				cli_error("pack", "invalid --dtype '%s': expected bf16, f16 or f32", optarg);
				return UC_EXIT_USAGE;
			}
			break;
		case OPT_THREADS:
			if (cli_parse_threads("pack", optarg, &opts.threads) != 0)
				return UC_EXIT_USAGE;
			break;
		case OPT_SHARD_SIZE:
			if (cli_parse_bytes("pack", "--shard-size", optarg, &opts.shard_size_limit) != 0)
				return UC_EXIT_USAGE;
			break;
		case 'h': fputs(pack_usage, stdout); return UC_EXIT_OK;
		default: fputs(pack_usage, stderr); return UC_EXIT_USAGE;
		}
	}

	if (optind + 1 != argc) {
		cli_error("pack", "expected exactly one source checkpoint; run 'uc pack --help'");
		return UC_EXIT_USAGE;
	}
	if (!out_dir) {
		cli_error("pack", "missing -o DIR: the pack directory to create");
		return UC_EXIT_USAGE;
	}
	if (!opts.family) {
		cli_error("pack", "missing --family: one of dense, moe, ssm, recurrent, hybrid, vit, other");
		return UC_EXIT_USAGE;
	}
	if (!uc_family_valid(opts.family)) {
		cli_error("pack", "invalid --family '%s': expected dense, moe, ssm, recurrent, hybrid, vit or other",
			  opts.family);
		return UC_EXIT_USAGE;
	}

	const char *src_path = argv[optind];
	char *name = NULL;
	uc_source *src = NULL;
	cli_progress *bar = NULL;
	uc_error err;
	uc_error_clear(&err);
	int rc = UC_EXIT_OK;

	if (!opts.name) {
		name = default_name(src_path);
		opts.name = name;
	}
	if (uc_source_open(src_path, &src, &err) != UC_OK) {
		rc = cli_report_error("pack", &err);
		goto out;
	}

	bar = cli_progress_start("packing", 0);
	opts.progress = cli_progress_update;
	opts.progress_ctx = bar;
	uc_status status = uc_pack_write(src, out_dir, &opts, &err);
	cli_progress_finish(bar);
	if (status != UC_OK) {
		rc = cli_report_error("pack", &err);
		goto out;
	}
	print_summary(out_dir);

out:
	uc_source_close(src);
	free(name);
	return rc;
}
