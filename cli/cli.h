/* Shared pieces of the `uc` command-line tool. */
#ifndef UC_CLI_H
#define UC_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "uc.h"

/* Exit codes, documented in uc(1). */
enum {
	UC_EXIT_OK = 0,
	UC_EXIT_FAILURE = 1,        /* the command could not run: I/O, bad input file, out of memory */
	UC_EXIT_USAGE = 2,          /* bad command line */
	UC_EXIT_STRUCTURE = 3,      /* verify: manifest or shard layout invalid, shard missing or truncated */
	UC_EXIT_INTEGRITY = 4,      /* verify: a shard's SHA-256 differs from the manifest */
	UC_EXIT_RECONSTRUCTION = 5, /* verify: a rebuilt tensor's SHA-256 differs from the manifest */
};

int uc_cmd_pack(int argc, char **argv);
int uc_cmd_verify(int argc, char **argv);
int uc_cmd_inspect(int argc, char **argv);
int uc_cmd_unpack(int argc, char **argv);
int uc_cmd_eval(int argc, char **argv); /* cli/eval/eval_cmd.c */
int uc_cmd_push(int argc, char **argv);
int uc_cmd_pull(int argc, char **argv);
int uc_cmd_mirror(int argc, char **argv);

/* Prints "uc VERB: MESSAGE" to stderr. */
void cli_error(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a libuc error as "uc VERB: MESSAGE" and returns the exit code for it. */
int cli_report_error(const char *verb, const uc_error *err);

/* Parses a thread count (0..1024) or a byte size (a positive integer with an optional
 * K, M or G suffix, powers of 1024). Returns 0, or -1 with a message printed for `verb`. */
/* Reads PACK_DIR/manifest.json into a new buffer (free()). Returns 0, or -1 with a
 * message printed for `verb`. */
int cli_read_manifest(const char *verb, const char *pack_dir, char **out, size_t *len);

int cli_parse_threads(const char *verb, const char *text, unsigned *out);
int cli_parse_bytes(const char *verb, const char *option, const char *text, uint64_t *out);

/* Progress bar on stderr, drawn only when stderr is a terminal. `label` is borrowed and
 * must outlive the bar. `unit_bytes` selects a GB/s rate display instead of M/s. */
typedef struct cli_progress cli_progress;
cli_progress *cli_progress_start(const char *label, int unit_bytes);
/* A uc_progress_fn: pass the cli_progress as its context. */
void cli_progress_update(void *ctx, uint64_t done, uint64_t total);
/* Clears the bar line and frees the bar. NULL is allowed. */
void cli_progress_finish(cli_progress *bar);

#endif
