/* Daemon settings: embedded defaults, then UCREG_* environment variables, then command-line
 * options, each overriding the one before. */
#ifndef REG_SETTINGS_H
#define REG_SETTINGS_H

#include <stdint.h>

#include "log.h"

#define REG_DEFAULT_LISTEN "127.0.0.1:8080"
#define REG_DEFAULT_DATA_DIR "./var"
#define REG_DEFAULT_MAX_BLOB_SIZE ((uint64_t)64 << 30)
#define REG_DEFAULT_HTTP_THREADS 4
#define REG_DEFAULT_CONNECTION_TIMEOUT 60
#define REG_DEFAULT_MAX_CONNECTIONS 1024
#define REG_DEFAULT_PER_IP_CONNECTIONS 128
#define REG_DEFAULT_MIRROR_INTERVAL 60
#define REG_DEFAULT_MAX_OPEN_UPLOADS 16
#define REG_DEFAULT_UPLOAD_EXPIRY (24 * 3600)

/* Every string is borrowed from argv, the environment or a literal; nothing is freed. */
typedef struct {
	const char *listen;          /* HOST:PORT, [V6HOST]:PORT; port 0 picks a free port */
	const char *data_dir;
	const char *static_dir;      /* NULL: no website is served */
	unsigned workers;            /* verify threads; 0 means the number of online CPUs */
	unsigned http_threads;       /* MHD thread pool size */
	unsigned connection_timeout; /* seconds of inactivity before MHD closes a connection */
	unsigned max_connections;
	unsigned per_ip_connections;
	uint64_t max_blob_size;      /* bytes */
	reg_log_level log_level;
	const char *mirror_of;       /* upstream URL; NULL when not a mirror */
	const char *upstream_key;    /* the upstream's Ed25519 public key (PEM file) */
	unsigned mirror_interval;    /* seconds between follower rounds */
	unsigned max_open_uploads;   /* resumable uploads one token may have open at once */
	unsigned upload_expiry;      /* seconds without a chunk before an upload is removed */
} reg_settings;

/* Outcome of reg_settings_parse. */
typedef enum {
	REG_SETTINGS_RUN,   /* serve, or run the subcommand at argv[*next] */
	REG_SETTINGS_EXIT,  /* --help or --version was printed: exit 0 */
	REG_SETTINGS_ERROR, /* a message was printed to stderr: exit 2 */
} reg_settings_result;

/* Fills `settings` from defaults, the environment and the global options in argv. Parsing
 * stops at the first argument that is not an option; its index is stored in *next (argc
 * when there is none). Prints usage errors to stderr naming the bad value. */
reg_settings_result reg_settings_parse(reg_settings *settings, int argc, char **argv, int *next);

/* Prints the --help text to stdout. */
void reg_settings_print_usage(void);

/* Parses a non-negative decimal integer that fits in uint64_t, with an optional K, M, G or
 * T suffix (powers of 1024). Returns 0, or -1 when `text` is anything else. */
int reg_parse_size(const char *text, uint64_t *out);

#endif
