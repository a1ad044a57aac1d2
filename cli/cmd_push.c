/* uc push: upload a local pack's missing shards and its manifest to a registry, then wait
 * for the registry's verification verdict. */
#include "config.h"

#include "cli.h"
#include "net.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char push_usage[] =
	"Usage: uc push DIR --registry URL --slug SLUG --version VERSION [OPTIONS]\n"
	"\n"
	"Checks the structure of the pack in DIR, uploads the shards the registry does not have\n"
	"yet, publishes the manifest as SLUG@VERSION and waits for the registry to verify it.\n"
	"The bearer token comes from the environment variable UCREG_TOKEN or from --token-file.\n"
	"\n"
	"Options:\n"
	"      --registry URL        registry base URL, such as http://127.0.0.1:8080\n"
	"      --slug SLUG           pack name in the registry\n"
	"      --version VERSION     version to publish; versions are immutable\n"
	"      --token-file FILE     read the token from the first line of FILE\n"
	"      --no-wait             exit after publishing, without waiting for verification\n"
	"      --wait-timeout SECS   seconds to wait for the verdict (default 3600)\n"
	"      --chunked-above SIZE  upload shards larger than SIZE bytes in resumable chunks\n"
	"                            (default 64M; K, M and G suffixes are powers of 1024)\n"
	"      --chunk-size SIZE     bytes per resumable chunk (default 16M)\n"
	"      --limit-rate SIZE     cap the upload rate at SIZE bytes per second\n"
	"  -h, --help                show this help\n"
	"\n"
	"A chunked upload that breaks resumes from the offset the registry reports, also when\n"
	"the same command runs again: the upload id is kept in DIR/.uc-upload-DIGEST until the\n"
	"shard is stored.\n"
	"\n"
	"Exit status: 0 published and verified (or published, with --no-wait), 1 failed,\n"
	"2 usage error, 3 structure failure, 4 integrity failure, 5 reconstruction mismatch.\n";

#define PUSH_RETRIES 5

struct push {
	const char *dir;
	const char *slug;
	const char *version;
	uint64_t chunked_above;
	uint64_t chunk_size;
	net_client *client;
	cli_progress *bar;
	uint64_t bytes_total; /* of the shards to upload */
	uint64_t bytes_done;
	size_t uploaded;
};

/* Reads the token from UCREG_TOKEN or the first line of `path`. Returns a new string, or
 * NULL after printing why. */
static char *read_token(const char *path)
{
	if (!path) {
		const char *env = getenv("UCREG_TOKEN");
		if (!env || !env[0]) {
			cli_error("push", "no token: set the environment variable UCREG_TOKEN or pass"
				  " --token-file FILE");
			return NULL;
		}
		char *copy = strdup(env);
		if (!copy)
			cli_error("push", "out of memory");
		return copy;
	}

	FILE *f = fopen(path, "r");
	if (!f) {
		cli_error("push", "cannot read --token-file %s: %s", path, strerror(errno));
		return NULL;
	}
	char line[512];
	char *token = NULL;
	if (fgets(line, sizeof line, f)) {
		size_t n = strcspn(line, "\r\n");
		line[n] = '\0';
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0';
		if (n > 0)
			token = strdup(line);
	}
	memset(line, 0, sizeof line);
	fclose(f);
	if (!token)
		cli_error("push", "--token-file %s has no token on its first line", path);
	return token;
}

static void sleep_seconds(double seconds)
{
	struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
	nanosleep(&ts, NULL);
}

static int is_retryable(const net_response *r)
{
	return r->status == 0 || r->status >= 500;
}

/* Uploads a shard in one PUT, retrying transport failures and 5xx responses. */
static int upload_whole(struct push *p, FILE *file, const char *hex, uint64_t size)
{
	char path[128];
	snprintf(path, sizeof path, "/api/blobs/sha256/%s", hex);

	for (int attempt = 1;; attempt++) {
		net_response r;
		net_client_set_progress(p->client, p->bar, p->bytes_done, p->bytes_total);
		int rc = net_send_file(p->client, "PUT", path, file, 0, size, NULL, &r);
		if (rc == 0 && (r.status == 200 || r.status == 201)) {
			net_response_clear(&r);
			return 0;
		}
		if (!is_retryable(&r) || attempt >= PUSH_RETRIES) {
			char what[160];
			snprintf(what, sizeof what, "upload of shard %s", hex);
			net_report_failure("push", what, &r);
			net_response_clear(&r);
			return -1;
		}
		cli_error("push", "upload of shard %s failed (%s); retrying, attempt %d of %d", hex,
			  r.status ? "server error" : r.error, attempt + 1, PUSH_RETRIES);
		net_response_clear(&r);
		sleep_seconds(attempt);
	}
}

/* Reads "received" from an upload document. Returns 0, or -1 when it is absent. */
static int upload_received(const net_response *r, uint64_t *received)
{
	json_t *doc = net_response_json(r);
	json_t *value = doc ? json_object_get(doc, "received") : NULL;
	int ok = json_is_integer(value) && json_integer_value(value) >= 0;
	if (ok)
		*received = (uint64_t)json_integer_value(value);
	json_decref(doc);
	return ok ? 0 : -1;
}

static void state_path(const struct push *p, const char *hex, char *out, size_t size)
{
	snprintf(out, size, "%s/.uc-upload-%s", p->dir, hex);
}

/* Finds the upload a previous run left for this shard on this registry. Returns 1 with
 * its id and received count, or 0 when there is none to resume. */
static int find_previous_upload(struct push *p, const char *hex, char id[65], uint64_t *received)
{
	char path[4096], registry[2048], url[160];
	state_path(p, hex, path, sizeof path);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int fields = fscanf(f, "%2047s %64s", registry, id);
	fclose(f);
	if (fields != 2 || strcmp(registry, net_client_base_url(p->client)) != 0)
		return 0;

	net_response r;
	snprintf(url, sizeof url, "/api/uploads/%s", id);
	int found = net_request(p->client, "GET", url, NULL, 0, NULL, &r) == 0 && r.status == 200 &&
		    upload_received(&r, received) == 0;
	net_response_clear(&r);
	return found;
}

/* Starts an upload and records its id in DIR so a later run can resume it. */
static int start_upload(struct push *p, const char *hex, char id[65])
{
	net_response r;
	if (net_request(p->client, "POST", "/api/uploads", NULL, 0, NULL, &r) != 0 || r.status != 201) {
		net_report_failure("push", "starting a resumable upload", &r);
		net_response_clear(&r);
		return -1;
	}
	json_t *doc = net_response_json(&r);
	const char *value = doc ? json_string_value(json_object_get(doc, "id")) : NULL;
	int ok = value && strlen(value) < 65 && strspn(value, "0123456789abcdef") == strlen(value);
	if (ok)
		snprintf(id, 65, "%s", value);
	else
		cli_error("push", "the registry's response to POST /api/uploads has no valid upload id");
	json_decref(doc);
	net_response_clear(&r);
	if (!ok)
		return -1;

	char path[4096];
	state_path(p, hex, path, sizeof path);
	FILE *f = fopen(path, "w");
	/* NOTE: a read-only pack directory only loses resumption across runs. */
	if (f) {
		fprintf(f, "%s %s\n", net_client_base_url(p->client), id);
		fclose(f);
	}
	return 0;
}

/* Sends one chunk. Returns 1 with the new offset on success, 0 when the registry should be
 * asked for the offset, -1 on a failure not worth retrying (printed). */
static int send_chunk(struct push *p, FILE *file, const char *id, const char *hex, uint64_t size,
		      uint64_t *offset)
{
	char path[128], range[128];
	uint64_t length = size - *offset < p->chunk_size ? size - *offset : p->chunk_size;
	snprintf(path, sizeof path, "/api/uploads/%s", id);
	snprintf(range, sizeof range, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, *offset,
		 *offset + length - 1, size);

	net_response r;
	net_client_set_progress(p->client, p->bar, p->bytes_done + *offset, p->bytes_total);
	int rc = net_send_file(p->client, "PATCH", path, file, *offset, length, range, &r);
	int result;
	uint64_t received;
	if (rc == 0 && r.status == 202 && upload_received(&r, &received) == 0) {
		*offset = received;
		result = 1;
	} else if (is_retryable(&r) || r.status == 409 || r.status == 416) {
		cli_error("push", "chunk at byte %" PRIu64 " of shard %s failed (%s, HTTP %ld); resuming"
			  " from the offset the registry reports", *offset, hex,
			  r.error[0] ? r.error : "rejected", r.status);
		result = 0;
	} else {
		char what[160];
		snprintf(what, sizeof what, "upload of a chunk of shard %s", hex);
		net_report_failure("push", what, &r);
		result = -1;
	}
	net_response_clear(&r);
	return result;
}

/* Asks the registry how many bytes of upload `id` it stored. */
static int query_offset(struct push *p, const char *id, uint64_t *offset)
{
	char path[128];
	snprintf(path, sizeof path, "/api/uploads/%s", id);
	net_response r;
	int rc = net_request(p->client, "GET", path, NULL, 0, NULL, &r);
	if (rc != 0 || r.status != 200 || upload_received(&r, offset) != 0) {
		net_report_failure("push", "reading the upload's offset", &r);
		net_response_clear(&r);
		return -1;
	}
	net_response_clear(&r);
	return 0;
}

static int finish_upload(struct push *p, const char *id, const char *hex)
{
	char path[192];
	snprintf(path, sizeof path, "/api/uploads/%s?digest=sha256:%s", id, hex);
	net_response r;
	net_client_set_progress(p->client, NULL, 0, 0);
	int rc = net_request(p->client, "PUT", path, NULL, 0, NULL, &r);
	if (rc != 0 || r.status != 201) {
		char what[160];
		snprintf(what, sizeof what, "finishing the upload of shard %s", hex);
		net_report_failure("push", what, &r);
		net_response_clear(&r);
		return -1;
	}
	net_response_clear(&r);
	return 0;
}

/* Uploads a shard through POST/PATCH/PUT /api/uploads, resuming after a broken chunk. */
static int upload_chunked(struct push *p, FILE *file, const char *hex, uint64_t size)
{
	char id[65];
	uint64_t offset = 0;

	if (find_previous_upload(p, hex, id, &offset)) {
		fprintf(stderr, "uc push: resuming the upload of shard %s at byte %" PRIu64 "\n", hex, offset);
	} else if (start_upload(p, hex, id) != 0) {
		return -1;
	}
	int failures = 0;
	while (offset < size) {
		int sent = send_chunk(p, file, id, hex, size, &offset);
		if (sent < 0)
			return -1;
		if (sent > 0) {
			failures = 0;
			continue;
		}
		if (++failures >= PUSH_RETRIES) {
			cli_error("push", "giving up on shard %s after %d failed chunks; run the same"
				  " command again to resume", hex, failures);
			return -1;
		}
		sleep_seconds(failures);
		if (query_offset(p, id, &offset) != 0)
			return -1;
	}
	if (finish_upload(p, id, hex) != 0)
		return -1;

	char path[4096];
	state_path(p, hex, path, sizeof path);
	unlink(path);
	return 0;
}

/* Returns 1 when the registry has blob `hex`, 0 when not, -1 after printing an error. */
static int blob_present(struct push *p, const char *hex)
{
	char path[128];
	snprintf(path, sizeof path, "/api/blobs/sha256/%s", hex);
	net_response r;
	int present = -1;
	if (net_request(p->client, "HEAD", path, NULL, 0, NULL, &r) == 0) {
		if (r.status == 200)
			present = 1;
		else if (r.status == 404)
			present = 0;
	}
	if (present < 0)
		net_report_failure("push", "checking which shards the registry has", &r);
	net_response_clear(&r);
	return present;
}

static int upload_shard(struct push *p, const uc_manifest_shard *shard)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", p->dir, shard->file);
	FILE *file = fopen(path, "rb");
	if (!file) {
		cli_error("push", "cannot open shard %s: %s", path, strerror(errno));
		return -1;
	}
	int rc = shard->size > p->chunked_above ? upload_chunked(p, file, shard->file, shard->size)
						 : upload_whole(p, file, shard->file, shard->size);
	fclose(file);
	if (rc == 0) {
		p->bytes_done += shard->size;
		p->uploaded++;
	}
	return rc;
}

/* Uploads every shard the registry lacks. */
static int upload_missing(struct push *p, const uc_manifest *m)
{
	size_t count = uc_manifest_shard_count(m);
	char *missing = calloc(count ? count : 1, 1);
	if (!missing) {
		cli_error("push", "out of memory");
		return -1;
	}
	int rc = 0;
	for (size_t i = 0; i < count && rc == 0; i++) {
		const uc_manifest_shard *shard = uc_manifest_shard_at(m, i);
		int present = blob_present(p, shard->file);
		if (present < 0)
			rc = -1;
		missing[i] = present == 0;
		if (present == 0)
			p->bytes_total += shard->size;
	}

	p->bar = rc == 0 && p->bytes_total ? cli_progress_start("uploading", 1) : NULL;
	for (size_t i = 0; i < count && rc == 0; i++) {
		if (missing[i])
			rc = upload_shard(p, uc_manifest_shard_at(m, i));
	}
	cli_progress_finish(p->bar);
	p->bar = NULL;
	net_client_set_progress(p->client, NULL, 0, 0);
	free(missing);
	if (rc == 0)
		fprintf(stderr, "uc push: uploaded %zu of %zu shards (%" PRIu64 " bytes); the registry had"
			" the other %zu\n", p->uploaded, count, p->bytes_done, count - p->uploaded);
	return rc;
}

/* Maps a verdict name from the registry to the exit code of uc verify. */
static int exit_code_for_verdict(const char *verdict)
{
	if (!verdict)
		return UC_EXIT_FAILURE;
	if (strcmp(verdict, "structure_failed") == 0)
		return UC_EXIT_STRUCTURE;
	if (strcmp(verdict, "integrity_failed") == 0)
		return UC_EXIT_INTEGRITY;
	if (strcmp(verdict, "reconstruction_failed") == 0)
		return UC_EXIT_RECONSTRUCTION;
	return UC_EXIT_FAILURE;
}

/* Prints each failure of the registry's verify report: stage, what failed and why. */
static void print_report_errors(json_t *version)
{
	enum { MAX_PRINTED = 20 };
	json_t *errors = json_object_get(json_object_get(version, "verify_report"), "errors");
	size_t count = json_array_size(errors);
	for (size_t i = 0; i < count && i < MAX_PRINTED; i++) {
		json_t *e = json_array_get(errors, i);
		const char *stage = json_string_value(json_object_get(e, "stage"));
		const char *kind = json_string_value(json_object_get(e, "subject_kind"));
		const char *subject = json_string_value(json_object_get(e, "subject"));
		const char *message = json_string_value(json_object_get(e, "message"));
		fprintf(stderr, "  %s: %s %s: %s\n", stage ? stage : "?", kind ? kind : "item",
			subject ? subject : "?", message ? message : "?");
	}
	if (count > MAX_PRINTED)
		fprintf(stderr, "  ... and %zu more\n", count - MAX_PRINTED);
}

/* Reads the version's status and prints the verdict. Returns the exit code, or -1 while
 * the version is still pending. */
static int report_version(struct push *p)
{
	char path[512];
	snprintf(path, sizeof path, "/api/packs/%s/versions/%s", p->slug, p->version);
	net_response r;
	if (net_request(p->client, "GET", path, NULL, 0, NULL, &r) != 0 || r.status != 200) {
		net_report_failure("push", "reading the version's verification status", &r);
		net_response_clear(&r);
		return UC_EXIT_FAILURE;
	}
	json_t *doc = net_response_json(&r);
	net_response_clear(&r);
	const char *status = doc ? json_string_value(json_object_get(doc, "status")) : NULL;
	const char *reason = doc ? json_string_value(json_object_get(doc, "status_reason")) : NULL;
	json_t *verification = doc ? json_object_get(doc, "verification") : NULL;
	const char *verdict = json_string_value(json_object_get(verification, "verdict"));
	int code;
	if (!status) {
		cli_error("push", "the registry's response for %s@%s has no status", p->slug, p->version);
		code = UC_EXIT_FAILURE;
	} else if (strcmp(status, "verified") == 0) {
		printf("%s@%s verified by %s\n", p->slug, p->version, net_client_base_url(p->client));
		code = UC_EXIT_OK;
	} else if (strcmp(status, "pending") == 0) {
		code = -1;
	} else {
		cli_error("push", "the registry rejected %s@%s: %s", p->slug, p->version,
			  reason ? reason : status);
		print_report_errors(doc);
		code = exit_code_for_verdict(verdict);
	}
	json_decref(doc);
	return code;
}

/* Polls the version until the registry's verification finished or `timeout` passed. */
static int wait_for_verdict(struct push *p, double timeout)
{
	double waited = 0, interval = 0.1;
	for (;;) {
		int code = report_version(p);
		if (code >= 0)
			return code;
		if (waited >= timeout) {
			cli_error("push", "%s@%s is still pending after %.0f s; check GET"
				  " /api/packs/%s/versions/%s later", p->slug, p->version, waited, p->slug,
				  p->version);
			return UC_EXIT_FAILURE;
		}
		sleep_seconds(interval);
		waited += interval;
		if (interval < 2.0)
			interval *= 1.5;
	}
}

/* PUTs the manifest. Returns 0 once the registry accepted it, else the exit code. */
static int publish_manifest(struct push *p, const char *manifest, size_t len)
{
	char path[512], what[600];
	snprintf(path, sizeof path, "/api/packs/%s/versions/%s", p->slug, p->version);
	snprintf(what, sizeof what, "publishing %s@%s", p->slug, p->version);
	net_response r;
	int rc = net_request(p->client, "PUT", path, manifest, len, "application/json", &r);
	int code = UC_EXIT_OK;
	if (rc != 0 || (r.status != 200 && r.status != 202)) {
		/* A 409 blobs_missing detail names every missing shard. */
		net_report_failure("push", what, &r);
		code = r.status == 422 ? UC_EXIT_STRUCTURE : UC_EXIT_FAILURE;
	} else {
		fprintf(stderr, "uc push: %s %s@%s\n", r.status == 202 ? "published" : "already published",
			p->slug, p->version);
	}
	net_response_clear(&r);
	return code;
}

struct push_args {
	const char *registry;
	const char *token_file;
	int no_wait;
	double wait_timeout;
	uint64_t rate_limit;
};

static int parse_seconds(const char *text, double *out)
{
	char *end = NULL;
	errno = 0;
	double value = strtod(text, &end);
	if (errno || end == text || *end || !(value > 0) || value > 1e7) {
		cli_error("push", "invalid --wait-timeout '%s': expected a positive number of seconds", text);
		return -1;
	}
	*out = value;
	return 0;
}

/* Parses the command line. Returns -1 to continue, or the exit code. */
static int parse_push_args(int argc, char **argv, struct push *p, struct push_args *a)
{
	enum { OPT_REGISTRY = 256, OPT_SLUG, OPT_VERSION, OPT_TOKEN_FILE, OPT_NO_WAIT, OPT_WAIT_TIMEOUT,
	       OPT_CHUNKED_ABOVE, OPT_CHUNK_SIZE, OPT_LIMIT_RATE };
	static const struct option options[] = {
		{ "registry", required_argument, NULL, OPT_REGISTRY },
		{ "slug", required_argument, NULL, OPT_SLUG },
		{ "version", required_argument, NULL, OPT_VERSION },
		{ "token-file", required_argument, NULL, OPT_TOKEN_FILE },
		{ "no-wait", no_argument, NULL, OPT_NO_WAIT },
		{ "wait-timeout", required_argument, NULL, OPT_WAIT_TIMEOUT },
		{ "chunked-above", required_argument, NULL, OPT_CHUNKED_ABOVE },
		{ "chunk-size", required_argument, NULL, OPT_CHUNK_SIZE },
		{ "limit-rate", required_argument, NULL, OPT_LIMIT_RATE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case OPT_REGISTRY: a->registry = optarg; break;
		case OPT_SLUG: p->slug = optarg; break;
		case OPT_VERSION: p->version = optarg; break;
		case OPT_TOKEN_FILE: a->token_file = optarg; break;
		case OPT_NO_WAIT: a->no_wait = 1; break;
		case OPT_WAIT_TIMEOUT: bad = parse_seconds(optarg, &a->wait_timeout); break;
		case OPT_CHUNKED_ABOVE:
			bad = cli_parse_bytes("push", "--chunked-above", optarg, &p->chunked_above);
			break;
		case OPT_CHUNK_SIZE: bad = cli_parse_bytes("push", "--chunk-size", optarg, &p->chunk_size); break;
		case OPT_LIMIT_RATE: bad = cli_parse_bytes("push", "--limit-rate", optarg, &a->rate_limit); break;
		case 'h': fputs(push_usage, stdout); return UC_EXIT_OK;
		default: fputs(push_usage, stderr); return UC_EXIT_USAGE;
		}
		if (bad)
			return UC_EXIT_USAGE;
	}
	if (optind + 1 != argc) {
		cli_error("push", "expected exactly one pack directory; run 'uc push --help'");
		return UC_EXIT_USAGE;
	}
	p->dir = argv[optind];
	const char *missing = !a->registry ? "--registry URL" : !p->slug ? "--slug SLUG"
			    : !p->version ? "--version VERSION" : NULL;
	if (missing) {
		cli_error("push", "missing %s; run 'uc push --help'", missing);
		return UC_EXIT_USAGE;
	}
	const char *names[] = { p->slug, p->version };
	for (size_t i = 0; i < 2; i++) {
		if (!names[i][0] || strspn(names[i], NET_NAME_CHARS) != strlen(names[i])) {
			cli_error("push", "invalid %s '%s': use letters, digits, '.', '_' and '-'",
				  i == 0 ? "--slug" : "--version", names[i]);
			return UC_EXIT_USAGE;
		}
	}
	return -1;
}

/* Opens the pack to check its structure and reads the manifest bytes to publish. */
static int load_local_pack(const char *dir, char **manifest, size_t *len, uc_pack **pack)
{
	uc_error err;
	uc_error_clear(&err);
	if (uc_pack_open(dir, pack, &err) != UC_OK) {
		int code = cli_report_error("push", &err);
		if (err.status == UC_ERR_STRUCTURE || err.status == UC_ERR_FORMAT ||
		    err.status == UC_ERR_UNSUPPORTED)
			code = UC_EXIT_STRUCTURE;
		return code;
	}
	if (cli_read_manifest("push", dir, manifest, len) != 0)
		return UC_EXIT_FAILURE;

	/* The bytes published must be the ones just checked. */
	uint8_t opened[UC_SHA256_BYTES], read[UC_SHA256_BYTES];
	uc_pack_manifest_sha256(*pack, opened);
	uc_sha256_buffer(*manifest, *len, read);
	if (memcmp(opened, read, sizeof opened) != 0) {
		cli_error("push", "%s/manifest.json changed while it was read; run the command again", dir);
		return UC_EXIT_FAILURE;
	}
	return UC_EXIT_OK;
}

int uc_cmd_push(int argc, char **argv)
{
	struct push p = { .chunked_above = (uint64_t)64 << 20, .chunk_size = (uint64_t)16 << 20 };
	struct push_args a = { .wait_timeout = 3600 };
	char *token = NULL, *manifest = NULL;
	size_t manifest_len = 0;
	uc_pack *pack = NULL;

	int rc = parse_push_args(argc, argv, &p, &a);
	if (rc >= 0)
		return rc;
	token = read_token(a.token_file);
	if (!token)
		return UC_EXIT_USAGE;

	rc = load_local_pack(p.dir, &manifest, &manifest_len, &pack);
	if (rc != UC_EXIT_OK)
		goto out;
	p.client = net_client_new("push", a.registry, token);
	if (!p.client) {
		rc = UC_EXIT_USAGE;
		goto out;
	}
	net_client_set_rate_limit(p.client, a.rate_limit);

	rc = UC_EXIT_FAILURE;
	if (upload_missing(&p, uc_pack_manifest(pack)) != 0)
		goto out;
	rc = publish_manifest(&p, manifest, manifest_len);
	if (rc != UC_EXIT_OK)
		goto out;
	if (a.no_wait) {
		printf("%s@%s published to %s; verification runs in the background\n", p.slug, p.version,
		       net_client_base_url(p.client));
		goto out;
	}
	rc = wait_for_verdict(&p, a.wait_timeout);

out:
	net_client_free(p.client);
	uc_pack_close(pack);
	free(manifest);
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	return rc;
}
