/* uc pull: download a pack version from a registry, verify it in full and only then move
 * it into place. */
#include "config.h"

#include "cli.h"
#include "net.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char pull_usage[] =
	"Usage: uc pull SLUG[@VERSION] --registry URL -o DIR [OPTIONS]\n"
	"\n"
	"Downloads the newest verified version of pack SLUG (or VERSION) into DIR.uc-pull,\n"
	"checks every shard's SHA-256, runs the full verification of 'uc verify' and then\n"
	"renames the directory to DIR. DIR must not exist. After an interrupted download the\n"
	"same command resumes each shard from the bytes already in DIR.uc-pull.\n"
	"\n"
	"Options:\n"
	"      --registry URL     registry base URL, such as http://127.0.0.1:8080\n"
	"  -o, --output DIR       directory to create\n"
	"      --threads N        tensors rebuilt in parallel while verifying; 0 (default) uses\n"
	"                         every online CPU\n"
	"      --limit-rate SIZE  cap the download rate at SIZE bytes per second (K, M and G\n"
	"                         suffixes are powers of 1024)\n"
	"  -h, --help             show this help\n"
	"\n"
	"Exit status: 0 pulled and verified, 1 failed, 2 usage error, 3 structure failure,\n"
	"4 integrity failure, 5 reconstruction mismatch. After a verification failure\n"
	"neither DIR nor DIR.uc-pull is left behind.\n";

#define PULL_PARTIAL_SUFFIX ".uc-pull"

struct pull {
	char slug[128];
	char version[128];
	const char *out_dir;
	char tmp_dir[4096];
	char manifest_digest[UC_SHA256_HEX_CHARS + 1];
	unsigned threads;
	net_client *client;
	cli_progress *bar;
	uint64_t bytes_done;
	uint64_t bytes_total;
};

/* Removes the flat temporary directory and everything in it. */
static void remove_tmp_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *entry;
		char path[4352];
		while ((entry = readdir(d)) != NULL) {
			if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
				continue;
			snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

/* GETs `path` and returns its JSON object, or NULL after printing `what` failed. */
static json_t *get_json(struct pull *p, const char *path, const char *what)
{
	net_response r;
	json_t *doc = NULL;
	if (net_request(p->client, "GET", path, NULL, 0, NULL, &r) == 0 && r.status == 200)
		doc = net_response_json(&r);
	if (!doc)
		net_report_failure("pull", what, &r);
	net_response_clear(&r);
	return doc;
}

/* Finds the newest verified version when none was given. */
static int resolve_latest(struct pull *p)
{
	char path[256], what[320];
	snprintf(path, sizeof path, "/api/packs/%s", p->slug);
	snprintf(what, sizeof what, "looking up pack '%s'", p->slug);
	json_t *pack = get_json(p, path, what);
	if (!pack)
		return -1;
	const char *version = json_string_value(json_object_get(json_object_get(pack, "latest"), "version"));
	int rc = 0;
	if (!version) {
		cli_error("pull", "pack '%s' has no verified version that is not yanked; name one as"
			  " %s@VERSION", p->slug, p->slug);
		rc = -1;
	} else if (strlen(version) >= sizeof p->version) {
		cli_error("pull", "the registry named a version of %zu bytes for pack '%s'", strlen(version),
			  p->slug);
		rc = -1;
	} else {
		snprintf(p->version, sizeof p->version, "%s", version);
	}
	json_decref(pack);
	return rc;
}

/* Reads the version's manifest digest and warns when the registry has not verified it. */
static int read_version(struct pull *p)
{
	char path[320], what[320];
	snprintf(path, sizeof path, "/api/packs/%s/versions/%s", p->slug, p->version);
	snprintf(what, sizeof what, "looking up %s@%s", p->slug, p->version);
	json_t *doc = get_json(p, path, what);
	if (!doc)
		return -1;
	const char *digest = json_string_value(json_object_get(doc, "manifest_digest"));
	const char *status = json_string_value(json_object_get(doc, "status"));
	int rc = 0;
	if (!digest || strlen(digest) != UC_SHA256_HEX_CHARS) {
		cli_error("pull", "the registry's response for %s@%s has no valid manifest_digest", p->slug,
			  p->version);
		rc = -1;
	} else {
		snprintf(p->manifest_digest, sizeof p->manifest_digest, "%s", digest);
		if (!status || strcmp(status, "verified") != 0)
			fprintf(stderr, "uc pull: warning: %s@%s is %s in the registry, not verified;"
				" it is verified here after the download\n", p->slug, p->version,
				status ? status : "of unknown status");
		if (json_is_true(json_object_get(doc, "yanked")))
			fprintf(stderr, "uc pull: warning: %s@%s was yanked\n", p->slug, p->version);
	}
	json_decref(doc);
	return rc;
}

static int write_file(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
	}
	int rc = done == len && fsync(fd) == 0 ? 0 : -1;
	close(fd);
	return rc;
}

/* Returns 1 when `path` contains exactly `len` bytes equal to `data`. */
static int file_equals(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	int equal = 1;
	char buffer[65536];
	size_t offset = 0, n;
	while (equal && (n = fread(buffer, 1, sizeof buffer, f)) > 0) {
		equal = offset + n <= len && memcmp(buffer, data + offset, n) == 0;
		offset += n;
	}
	fclose(f);
	return equal && offset == len;
}

/* Downloads the manifest, checks its digest and stores it in the temporary directory. A
 * partial download of another manifest is discarded. Returns 0 or an exit code. */
static int fetch_manifest(struct pull *p, uc_manifest **manifest)
{
	char path[512], file[4200];
	snprintf(path, sizeof path, "/api/packs/%s/versions/%s/manifest", p->slug, p->version);
	net_response r;
	if (net_request(p->client, "GET", path, NULL, 0, NULL, &r) != 0 || r.status != 200) {
		net_report_failure("pull", "downloading the manifest", &r);
		net_response_clear(&r);
		return UC_EXIT_FAILURE;
	}

	uint8_t digest[UC_SHA256_BYTES];
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_buffer(r.body, r.body_len, digest);
	uc_sha256_to_hex(digest, hex);
	int rc = UC_EXIT_OK;
	if (strcmp(hex, p->manifest_digest) != 0) {
		cli_error("pull", "the manifest of %s@%s hashes to sha256:%s, not sha256:%s as the"
			  " registry lists it; nothing was written to %s", p->slug, p->version, hex,
			  p->manifest_digest, p->out_dir);
		rc = UC_EXIT_INTEGRITY;
		goto out;
	}
	snprintf(file, sizeof file, "%s/manifest.json", p->tmp_dir);
	if (!file_equals(file, r.body, r.body_len)) {
		remove_tmp_dir(p->tmp_dir);
		if (mkdir(p->tmp_dir, 0755) != 0 || write_file(file, r.body, r.body_len) != 0) {
			cli_error("pull", "cannot write %s: %s", file, strerror(errno));
			rc = UC_EXIT_FAILURE;
			goto out;
		}
	}
	uc_error err;
	uc_error_clear(&err);
	if (uc_manifest_parse(r.body, r.body_len, manifest, &err) != UC_OK) {
		cli_error("pull", "the manifest of %s@%s is invalid: %s", p->slug, p->version, err.message);
		rc = UC_EXIT_STRUCTURE;
	}
out:
	net_response_clear(&r);
	return rc;
}

/* Opens the shard's partial file and returns how many bytes it already contains. */
static FILE *open_partial(const char *path, uint64_t size, uint64_t *have)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	*have = (uint64_t)st.st_size;
	/* A longer file than the shard cannot be a prefix of it. */
	if (*have > size) {
		if (ftruncate(fd, 0) != 0) {
			close(fd);
			return NULL;
		}
		*have = 0;
	}
	FILE *f = fdopen(fd, "r+b");
	if (!f)
		close(fd);
	return f;
}

/* Downloads the missing bytes of one shard. Returns 0, or UC_EXIT_FAILURE after printing
 * why; the partial file stays for the next run. */
static int download_shard(struct pull *p, const uc_manifest_shard *shard)
{
	char path[4200], url[128];
	uint64_t have = 0, written = 0;
	snprintf(path, sizeof path, "%s/%s", p->tmp_dir, shard->file);
	FILE *f = open_partial(path, shard->size, &have);
	if (!f) {
		cli_error("pull", "cannot open %s: %s", path, strerror(errno));
		return UC_EXIT_FAILURE;
	}
	if (have == shard->size) {
		fclose(f);
		p->bytes_done += have;
		return UC_EXIT_OK;
	}
	if (have > 0)
		fprintf(stderr, "uc pull: resuming shard %s at byte %" PRIu64 " of %" PRIu64 "\n",
			shard->file, have, shard->size);

	snprintf(url, sizeof url, "/api/blobs/sha256/%s", shard->file);
	net_client_set_progress(p->client, p->bar, p->bytes_done + have, p->bytes_total);
	net_response r;
	int rc = net_download(p->client, url, f, have, shard->size, &written, &r);
	int synced = fsync(fileno(f)) == 0;
	struct stat st;
	uint64_t now_have = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : have + written;
	fclose(f);
	if (rc != 0 || (r.status != 200 && r.status != 206)) {
		char what[160];
		snprintf(what, sizeof what, "download of shard %s", shard->file);
		net_report_failure("pull", what, &r);
		cli_error("pull", "%" PRIu64 " of %" PRIu64 " bytes are kept in %s; run the same command"
			  " again to resume", now_have, shard->size, p->tmp_dir);
		net_response_clear(&r);
		return UC_EXIT_FAILURE;
	}
	net_response_clear(&r);
	if (!synced || now_have != shard->size) {
		cli_error("pull", "shard %s: %s after %" PRIu64 " of %" PRIu64 " bytes; run the same"
			  " command again to resume", shard->file, synced ? "the download ended early"
			  : "fsync failed", now_have, shard->size);
		return UC_EXIT_FAILURE;
	}
	p->bytes_done += shard->size;
	return UC_EXIT_OK;
}

/* Hashes a downloaded shard. Returns 0, or the exit code after printing the mismatch. */
static int check_shard(struct pull *p, const uc_manifest_shard *shard)
{
	char path[4200], actual[UC_SHA256_HEX_CHARS + 1];
	uint8_t digest[UC_SHA256_BYTES];
	uint64_t size;
	uc_error err;
	snprintf(path, sizeof path, "%s/%s", p->tmp_dir, shard->file);
	uc_error_clear(&err);
	if (uc_sha256_file(path, digest, &size, &err) != UC_OK)
		return cli_report_error("pull", &err);
	if (memcmp(digest, shard->sha256, UC_SHA256_BYTES) == 0)
		return UC_EXIT_OK;
	uc_sha256_to_hex(digest, actual);
	cli_error("pull", "integrity failure: shard %s as downloaded hashes to sha256:%s, not to the"
		  " digest in its name; the registry's copy is corrupt, so nothing was written to %s",
		  shard->file, actual, p->out_dir);
	return UC_EXIT_INTEGRITY;
}

static int download_shards(struct pull *p, const uc_manifest *m)
{
	size_t count = uc_manifest_shard_count(m);
	for (size_t i = 0; i < count; i++)
		p->bytes_total += uc_manifest_shard_at(m, i)->size;
	p->bar = cli_progress_start("downloading", 1);
	int rc = UC_EXIT_OK;
	for (size_t i = 0; i < count && rc == UC_EXIT_OK; i++)
		rc = download_shard(p, uc_manifest_shard_at(m, i));
	cli_progress_finish(p->bar);
	p->bar = NULL;
	net_client_set_progress(p->client, NULL, 0, 0);
	for (size_t i = 0; i < count && rc == UC_EXIT_OK; i++)
		rc = check_shard(p, uc_manifest_shard_at(m, i));
	return rc;
}

static int exit_code_for(uc_verdict verdict)
{
	switch (verdict) {
	case UC_VERDICT_OK: return UC_EXIT_OK;
	case UC_VERDICT_STRUCTURE_FAILED: return UC_EXIT_STRUCTURE;
	case UC_VERDICT_INTEGRITY_FAILED: return UC_EXIT_INTEGRITY;
	case UC_VERDICT_RECONSTRUCTION_FAILED: return UC_EXIT_RECONSTRUCTION;
	}
	return UC_EXIT_FAILURE;
}

/* Runs the full verification on the temporary directory and prints the report on failure. */
static int verify_download(struct pull *p)
{
	uc_verify_options opts;
	uc_report *report = NULL;
	uc_error err;
	uc_verify_options_init(&opts);
	opts.threads = p->threads;
	uc_error_clear(&err);
	if (uc_isa_init(&err) != UC_OK)
		return cli_report_error("pull", &err);
	cli_progress *bar = cli_progress_start("verifying", 1);
	opts.progress = cli_progress_update;
	opts.progress_ctx = bar;
	uc_status status = uc_verify_pack(p->tmp_dir, &opts, &report, &err);
	cli_progress_finish(bar);
	if (status != UC_OK)
		return cli_report_error("pull", &err);
	int rc = exit_code_for(uc_report_verdict(report));
	if (rc != UC_EXIT_OK) {
		char *text = uc_report_to_text(report);
		cli_error("pull", "%s@%s failed verification; nothing was written to %s", p->slug,
			  p->version, p->out_dir);
		if (text)
			fputs(text, stderr);
		uc_free(text);
	}
	uc_report_free(report);
	return rc;
}

/* Renames the verified temporary directory to DIR; an existing DIR is never replaced. */
static int move_into_place(struct pull *p)
{
	int dir_fd = open(p->tmp_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd >= 0) {
		fsync(dir_fd);
		close(dir_fd);
	}
	if (renameat2(AT_FDCWD, p->tmp_dir, AT_FDCWD, p->out_dir, RENAME_NOREPLACE) != 0) {
		cli_error("pull", "cannot rename %s to %s: %s; the verified pack stays in %s",
			  p->tmp_dir, p->out_dir, strerror(errno), p->tmp_dir);
		return UC_EXIT_FAILURE;
	}
	return UC_EXIT_OK;
}

/* Splits SLUG[@VERSION] into the pull. Returns 0, or -1 after printing why. */
static int parse_reference(const char *text, struct pull *p)
{
	const char *at = strchr(text, '@');
	size_t slug_len = at ? (size_t)(at - text) : strlen(text);
	const char *version = at ? at + 1 : "";
	if (slug_len == 0 || slug_len >= sizeof p->slug || strlen(version) >= sizeof p->version ||
	    (at && !version[0]) || strchr(version, '@') ||
	    strspn(text, NET_NAME_CHARS "@") != strlen(text)) {
		cli_error("pull", "invalid pack reference '%s': expected SLUG or SLUG@VERSION", text);
		return -1;
	}
	memcpy(p->slug, text, slug_len);
	p->slug[slug_len] = '\0';
	snprintf(p->version, sizeof p->version, "%s", version);
	return 0;
}

struct pull_args {
	const char *registry;
	uint64_t rate_limit;
};

/* Parses the command line. Returns -1 to continue, or the exit code. */
static int parse_pull_args(int argc, char **argv, struct pull *p, struct pull_args *a)
{
	enum { OPT_REGISTRY = 256, OPT_THREADS, OPT_LIMIT_RATE };
	static const struct option options[] = {
		{ "registry", required_argument, NULL, OPT_REGISTRY },
		{ "output", required_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, OPT_THREADS },
		{ "limit-rate", required_argument, NULL, OPT_LIMIT_RATE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
		int bad = 0;
		switch (c) {
		case OPT_REGISTRY: a->registry = optarg; break;
		case 'o': p->out_dir = optarg; break;
		case OPT_THREADS: bad = cli_parse_threads("pull", optarg, &p->threads); break;
		case OPT_LIMIT_RATE: bad = cli_parse_bytes("pull", "--limit-rate", optarg, &a->rate_limit); break;
		case 'h': fputs(pull_usage, stdout); return UC_EXIT_OK;
		default: fputs(pull_usage, stderr); return UC_EXIT_USAGE;
		}
		if (bad)
			return UC_EXIT_USAGE;
	}
	if (optind + 1 != argc) {
		cli_error("pull", "expected exactly one SLUG[@VERSION]; run 'uc pull --help'");
		return UC_EXIT_USAGE;
	}
	if (!a->registry || !p->out_dir || !p->out_dir[0]) {
		cli_error("pull", "missing %s; run 'uc pull --help'", !a->registry ? "--registry URL" : "-o DIR");
		return UC_EXIT_USAGE;
	}
	if (parse_reference(argv[optind], p) != 0)
		return UC_EXIT_USAGE;
	struct stat st;
	if (lstat(p->out_dir, &st) == 0) {
		cli_error("pull", "%s already exists; choose a new directory or remove it first", p->out_dir);
		return UC_EXIT_USAGE;
	}
	size_t n = strlen(p->out_dir);
	while (n > 1 && p->out_dir[n - 1] == '/')
		n--;
	if ((size_t)snprintf(p->tmp_dir, sizeof p->tmp_dir, "%.*s%s", (int)n, p->out_dir,
			     PULL_PARTIAL_SUFFIX) >= sizeof p->tmp_dir) {
		cli_error("pull", "output path %s is too long", p->out_dir);
		return UC_EXIT_USAGE;
	}
	return -1;
}

/* Downloads, checks and verifies into the temporary directory, then renames it. */
static int pull_version(struct pull *p)
{
	if ((!p->version[0] && resolve_latest(p) != 0) || read_version(p) != 0)
		return UC_EXIT_FAILURE;
	if (mkdir(p->tmp_dir, 0755) != 0 && errno != EEXIST) {
		cli_error("pull", "cannot create %s: %s", p->tmp_dir, strerror(errno));
		return UC_EXIT_FAILURE;
	}

	uc_manifest *manifest = NULL;
	int rc = fetch_manifest(p, &manifest);
	if (rc == UC_EXIT_OK)
		rc = download_shards(p, manifest);
	uc_manifest_free(manifest);
	if (rc == UC_EXIT_OK)
		rc = verify_download(p);
	if (rc == UC_EXIT_OK)
		return move_into_place(p);
	/* Verification failures leave nothing behind; transfer failures keep the partial
	 * shards so that the next run resumes them. */
	if (rc != UC_EXIT_FAILURE)
		remove_tmp_dir(p->tmp_dir);
	return rc;
}

int uc_cmd_pull(int argc, char **argv)
{
	struct pull p = { 0 };
	struct pull_args a = { 0 };

	int rc = parse_pull_args(argc, argv, &p, &a);
	if (rc >= 0)
		return rc;
	p.client = net_client_new("pull", a.registry, NULL);
	if (!p.client)
		return UC_EXIT_USAGE;
	net_client_set_rate_limit(p.client, a.rate_limit);

	rc = pull_version(&p);
	if (rc == UC_EXIT_OK)
		printf("%s@%s pulled into %s and verified\n", p.slug, p.version, p.out_dir);
	net_client_free(p.client);
	return rc;
}
