/* Test helper: writes a pack directory from a source checkpoint with uc_pack_write, so the
 * integration tests can publish real packs.
 * Usage: make_pack SOURCE OUT_DIR FAMILY */
#include "config.h"

#include <stdio.h>

#include "uc_pack.h"
#include "uc_source.h"

int main(int argc, char **argv)
{
	uc_source *source = NULL;
	uc_pack_options options;
	uc_error err;

	if (argc != 4) {
		fprintf(stderr, "usage: make_pack SOURCE OUT_DIR FAMILY\n");
		return 2;
	}
	if (uc_source_open(argv[1], &source, &err) != UC_OK) {
		fprintf(stderr, "make_pack: %s\n", err.message);
		return 1;
	}
	uc_pack_options_init(&options);
	options.family = argv[3];
	options.threads = 1;
	uc_status status = uc_pack_write(source, argv[2], &options, &err);
	uc_source_close(source);
	if (status != UC_OK) {
		fprintf(stderr, "make_pack: %s\n", err.message);
		return 1;
	}
	return 0;
}
