#include "config.h"

#include "settings.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int reg_parse_size(const char *text, uint64_t *out)
{
	char *end;
	unsigned shift = 0;

	if (!text || *text < '0' || *text > '9')
		return -1;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno == ERANGE)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'K': shift = 10; end++; break;
	case 'M': shift = 20; end++; break;
	case 'G': shift = 30; end++; break;
	case 'T': shift = 40; end++; break;
	default: return -1;
	}
	if (*end != '\0')
		return -1;
	if (shift && value > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)value << shift;
	return 0;
}

static int parse_count(const char *text, unsigned max, unsigned *out)
{
	uint64_t value;

	if (reg_parse_size(text, &value) != 0 || value > max)
		return -1;
	*out = (unsigned)value;
	return 0;
}

void reg_settings_print_usage(void)
{
	printf("Usage: ucregd [OPTIONS]                     serve the registry\n"
	       "       ucregd [OPTIONS] token create --name NAME --scope push|admin\n"
	       "       ucregd [OPTIONS] token list\n"
	       "       ucregd [OPTIONS] token revoke ID\n"
	       "       ucregd [OPTIONS] keygen                create the snapshot signing key\n"
	       "\n"
	       "Options (each can also be set by the environment variable shown):\n"
	       "  --listen HOST:PORT        address to serve on; port 0 picks a free port\n"
	       "                            (UCREG_LISTEN, default %s)\n"
	       "  --data-dir DIR            catalog and blob store (UCREG_DATA_DIR, default %s)\n"
	       "  --static-dir DIR          website files served under / (UCREG_STATIC_DIR)\n"
	       "  --workers N               verify threads; 0 means one per online CPU\n"
	       "                            (UCREG_WORKERS, default 0)\n"
	       "  --max-blob-size BYTES     largest accepted blob; K, M, G, T suffixes are\n"
	       "                            powers of 1024 (UCREG_MAX_BLOB_SIZE, default 64G)\n"
	       "  --http-threads N          HTTP event-loop threads (UCREG_HTTP_THREADS, default %d)\n"
	       "  --connection-timeout SEC  close a connection idle this long\n"
	       "                            (UCREG_CONNECTION_TIMEOUT, default %d)\n"
	       "  --max-connections N       open connections in total\n"
	       "                            (UCREG_MAX_CONNECTIONS, default %d)\n"
	       "  --per-ip-connections N    open connections from one client address\n"
	       "                            (UCREG_PER_IP_CONNECTIONS, default %d)\n"
	       "  --log-level LEVEL         error, warn, info or debug (UCREG_LOG_LEVEL, default info)\n"
	       "  --mirror-of URL           serve a read-only mirror of the registry at URL\n"
	       "                            (UCREG_MIRROR_OF)\n"
	       "  --upstream-key FILE       the upstream's public key in PEM, from its GET\n"
	       "                            /api/keys; required with --mirror-of (UCREG_UPSTREAM_KEY)\n"
	       "  --mirror-interval SEC     seconds between mirror sync rounds\n"
	       "                            (UCREG_MIRROR_INTERVAL, default %d)\n"
	       "  --max-open-uploads N      resumable uploads one token may have open at once\n"
	       "                            (UCREG_MAX_OPEN_UPLOADS, default %d)\n"
	       "  --upload-expiry SEC       remove a resumable upload that got no chunk for\n"
	       "                            this long (UCREG_UPLOAD_EXPIRY, default %d)\n"
	       "  --help                    print this text\n"
	       "  --version                 print the version\n",
	       REG_DEFAULT_LISTEN, REG_DEFAULT_DATA_DIR, REG_DEFAULT_HTTP_THREADS,
	       REG_DEFAULT_CONNECTION_TIMEOUT, REG_DEFAULT_MAX_CONNECTIONS,
	       REG_DEFAULT_PER_IP_CONNECTIONS, REG_DEFAULT_MIRROR_INTERVAL,
	       REG_DEFAULT_MAX_OPEN_UPLOADS, REG_DEFAULT_UPLOAD_EXPIRY);
}

enum {
	OPT_LISTEN = 256,
	OPT_DATA_DIR,
	OPT_STATIC_DIR,
	OPT_WORKERS,
	OPT_MAX_BLOB_SIZE,
	OPT_HTTP_THREADS,
	OPT_CONNECTION_TIMEOUT,
	OPT_MAX_CONNECTIONS,
	OPT_PER_IP_CONNECTIONS,
	OPT_LOG_LEVEL,
	OPT_MIRROR_OF,
	OPT_UPSTREAM_KEY,
	OPT_MIRROR_INTERVAL,
	OPT_MAX_OPEN_UPLOADS,
	OPT_UPLOAD_EXPIRY,
	OPT_HELP,
	OPT_VERSION,
};

/* One setting: its option code, environment variable and option name. */
struct setting {
	int code;
	const char *env;
	const char *option;
};

static const struct setting setting_table[] = {
	{ OPT_LISTEN, "UCREG_LISTEN", "listen" },
	{ OPT_DATA_DIR, "UCREG_DATA_DIR", "data-dir" },
	{ OPT_STATIC_DIR, "UCREG_STATIC_DIR", "static-dir" },
	{ OPT_WORKERS, "UCREG_WORKERS", "workers" },
	{ OPT_MAX_BLOB_SIZE, "UCREG_MAX_BLOB_SIZE", "max-blob-size" },
	{ OPT_HTTP_THREADS, "UCREG_HTTP_THREADS", "http-threads" },
	{ OPT_CONNECTION_TIMEOUT, "UCREG_CONNECTION_TIMEOUT", "connection-timeout" },
	{ OPT_MAX_CONNECTIONS, "UCREG_MAX_CONNECTIONS", "max-connections" },
	{ OPT_PER_IP_CONNECTIONS, "UCREG_PER_IP_CONNECTIONS", "per-ip-connections" },
	{ OPT_LOG_LEVEL, "UCREG_LOG_LEVEL", "log-level" },
	{ OPT_MIRROR_OF, "UCREG_MIRROR_OF", "mirror-of" },
	{ OPT_UPSTREAM_KEY, "UCREG_UPSTREAM_KEY", "upstream-key" },
	{ OPT_MIRROR_INTERVAL, "UCREG_MIRROR_INTERVAL", "mirror-interval" },
	{ OPT_MAX_OPEN_UPLOADS, "UCREG_MAX_OPEN_UPLOADS", "max-open-uploads" },
	{ OPT_UPLOAD_EXPIRY, "UCREG_UPLOAD_EXPIRY", "upload-expiry" },
};
#define N_SETTINGS (sizeof setting_table / sizeof setting_table[0])

/* Applies one value. `source` names where it came from ("--workers" or "UCREG_WORKERS")
 * for the error message. Returns 0, or -1 after printing the error. */
static int apply_setting(reg_settings *settings, int code, const char *value, const char *source)
{
	int bad = 0;

	switch (code) {
	case OPT_LISTEN: settings->listen = value; break;
	case OPT_DATA_DIR: settings->data_dir = value; bad = value[0] == '\0'; break;
	case OPT_STATIC_DIR: settings->static_dir = value[0] ? value : NULL; break;
	case OPT_WORKERS: bad = parse_count(value, 1024, &settings->workers); break;
	case OPT_MAX_BLOB_SIZE:
		bad = reg_parse_size(value, &settings->max_blob_size) || settings->max_blob_size == 0;
		break;
	case OPT_HTTP_THREADS:
		bad = parse_count(value, 256, &settings->http_threads) || settings->http_threads == 0;
		break;
	case OPT_CONNECTION_TIMEOUT:
		bad = parse_count(value, 86400, &settings->connection_timeout);
		break;
	case OPT_MAX_CONNECTIONS:
		bad = parse_count(value, 65536, &settings->max_connections) || settings->max_connections == 0;
		break;
	case OPT_PER_IP_CONNECTIONS:
		bad = parse_count(value, 65536, &settings->per_ip_connections);
		break;
	case OPT_LOG_LEVEL: bad = reg_log_parse_level(value, &settings->log_level); break;
	case OPT_MIRROR_OF:
		settings->mirror_of = value[0] ? value : NULL;
		bad = value[0] && strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0;
		break;
	case OPT_UPSTREAM_KEY: settings->upstream_key = value[0] ? value : NULL; break;
	case OPT_MIRROR_INTERVAL:
		bad = parse_count(value, 86400, &settings->mirror_interval) || settings->mirror_interval == 0;
		break;
	case OPT_MAX_OPEN_UPLOADS:
		bad = parse_count(value, 65536, &settings->max_open_uploads) ||
		      settings->max_open_uploads == 0;
		break;
	case OPT_UPLOAD_EXPIRY:
		bad = parse_count(value, 365 * 86400, &settings->upload_expiry) ||
		      settings->upload_expiry == 0;
		break;
	default: bad = 1; break;
	}
	if (bad) {
		fprintf(stderr, "ucregd: invalid value '%s' for %s; see ucregd --help\n", value, source);
		return -1;
	}
	return 0;
}

reg_settings_result reg_settings_parse(reg_settings *settings, int argc, char **argv, int *next)
{
	static const struct option options[] = {
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "data-dir", required_argument, NULL, OPT_DATA_DIR },
		{ "static-dir", required_argument, NULL, OPT_STATIC_DIR },
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "max-blob-size", required_argument, NULL, OPT_MAX_BLOB_SIZE },
		{ "http-threads", required_argument, NULL, OPT_HTTP_THREADS },
		{ "connection-timeout", required_argument, NULL, OPT_CONNECTION_TIMEOUT },
		{ "max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS },
		{ "per-ip-connections", required_argument, NULL, OPT_PER_IP_CONNECTIONS },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "mirror-of", required_argument, NULL, OPT_MIRROR_OF },
		{ "upstream-key", required_argument, NULL, OPT_UPSTREAM_KEY },
		{ "mirror-interval", required_argument, NULL, OPT_MIRROR_INTERVAL },
		{ "max-open-uploads", required_argument, NULL, OPT_MAX_OPEN_UPLOADS },
		{ "upload-expiry", required_argument, NULL, OPT_UPLOAD_EXPIRY },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};

	memset(settings, 0, sizeof *settings);
	settings->listen = REG_DEFAULT_LISTEN;
	settings->data_dir = REG_DEFAULT_DATA_DIR;
	settings->max_blob_size = REG_DEFAULT_MAX_BLOB_SIZE;
	settings->http_threads = REG_DEFAULT_HTTP_THREADS;
	settings->connection_timeout = REG_DEFAULT_CONNECTION_TIMEOUT;
	settings->max_connections = REG_DEFAULT_MAX_CONNECTIONS;
	settings->per_ip_connections = REG_DEFAULT_PER_IP_CONNECTIONS;
	settings->log_level = REG_LOG_INFO;
	settings->mirror_interval = REG_DEFAULT_MIRROR_INTERVAL;
	settings->max_open_uploads = REG_DEFAULT_MAX_OPEN_UPLOADS;
	settings->upload_expiry = REG_DEFAULT_UPLOAD_EXPIRY;

	for (size_t i = 0; i < N_SETTINGS; i++) {
		const char *value = getenv(setting_table[i].env);
		if (value && apply_setting(settings, setting_table[i].code, value, setting_table[i].env) != 0)
			return REG_SETTINGS_ERROR;
	}

	/* "+" stops at the first non-option, so subcommands parse their own options. */
	optind = 1;
	opterr = 1;
	for (;;) {
		int code = getopt_long(argc, argv, "+h", options, NULL);
		if (code == -1)
			break;
		if (code == OPT_HELP || code == 'h') {
			reg_settings_print_usage();
			return REG_SETTINGS_EXIT;
		}
		if (code == OPT_VERSION) {
			printf("ucregd %s\n", PACKAGE_VERSION);
			return REG_SETTINGS_EXIT;
		}
		if (code == '?')
			return REG_SETTINGS_ERROR; /* getopt printed the message */

		char source[64];
		const char *name = "option";
		for (size_t i = 0; i < N_SETTINGS; i++) {
			if (setting_table[i].code == code)
				name = setting_table[i].option;
		}
		snprintf(source, sizeof source, "--%s", name);
		if (apply_setting(settings, code, optarg, source) != 0)
			return REG_SETTINGS_ERROR;
	}
	if (settings->mirror_of && !settings->upstream_key) {
		fprintf(stderr, "ucregd: --mirror-of needs --upstream-key FILE, the upstream's public"
			" key from its GET /api/keys\n");
		return REG_SETTINGS_ERROR;
	}
	*next = optind;
	return REG_SETTINGS_RUN;
}
