/* uc: pack model weights into 5-bit packs, verify them, inspect and unpack them. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"

struct verb {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct verb verbs[] = {
	{ "pack", uc_cmd_pack, "encode a safetensors, sharded, llama2.c or rwkv.cpp checkpoint into a pack" },
	{ "verify", uc_cmd_verify, "check a pack's structure, shard digests and every rebuilt tensor" },
	{ "inspect", uc_cmd_inspect, "show a pack's metadata, tensors, bits per weight and fidelity" },
	{ "unpack", uc_cmd_unpack, "rebuild a pack's weights into a safetensors file" },
	{ "push", uc_cmd_push, "upload a pack to a registry and wait for its verification" },
	{ "pull", uc_cmd_pull, "download a pack from a registry and verify it before use" },
	{ "mirror", uc_cmd_mirror, "copy a registry's verified packs into a plain directory tree" },
	{ "eval", uc_cmd_eval, "measure perplexity of source weights and of a pack" },
};

static void print_usage(FILE *out)
{
	fprintf(out, "Usage: uc VERB [OPTIONS] ARGS...\n\nVerbs:\n");
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		fprintf(out, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(out, "\nRun 'uc VERB --help' for the options of one verb; see uc(1) for exit codes.\n"
		     "The environment variable UC_ISA=scalar|avx2|avx512|neon forces a reconstruction path.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_usage(stderr);
		return UC_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		print_usage(stdout);
		return UC_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("uc %s\n", UC_VERSION_STRING);
		return UC_EXIT_OK;
	}

	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "uc: unknown verb '%s'; run 'uc --help' for the list\n", argv[1]);
	return UC_EXIT_USAGE;
}
