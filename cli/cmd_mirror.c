/* uc mirror: replicate a registry's verified versions into a plain directory tree that
 * any web server can serve, under the same rules as a ucregd mirror. The snapshot must be
 * signed by the upstream key, unexpired and not older than the last one accepted here.
 * Every name from upstream is validated before it becomes a path. Every shard is hashed
 * and every version fully verified before it appears under DIR/packs. */
#include "config.h"

#include "cli.h"
#include "net.h"
#include "snapshot_verify.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char mirror_usage[] =
	"Usage: uc mirror URL DIR --key FILE [OPTIONS]\n"
	"\n"
	"Copies every verified version of the registry at URL into DIR/packs/SLUG/VERSION\n"
	"(manifest.json and shard files: a pack that 'uc verify' accepts) and stores the\n"
	"accepted signed snapshot as DIR/snapshot.json. The snapshot must carry a valid\n"
	"Ed25519 signature under FILE, must not be expired and must not be older than\n"
	"DIR/snapshot.json. Each version is downloaded into DIR/.uc-mirror, hashed and fully\n"
	"verified before it is renamed into place; versions deleted upstream are removed.\n"
	"Run it again to update DIR; interrupted downloads resume.\n"
	"\n"
	"Options:\n"
	"      --key FILE         the registry's public key in PEM, from its GET /api/keys\n"
	"      --threads N        tensors rebuilt in parallel while verifying; 0 (default) uses\n"
	"                         every online CPU\n"
	"      --limit-rate SIZE  cap the download rate at SIZE bytes per second (K, M and G\n"
	"                         suffixes are powers of 1024)\n"
	"  -h, --help             show this help\n"
	"\n"
	"Exit status: 0 every version mirrored, 1 a version was rejected or a transfer failed\n"
	"(each is printed; the rest is mirrored), 2 usage error or rejected snapshot.\n";

#define MIRROR_PATH_MAX 4096
#define MIRROR_NAME_MAX 64

struct mirror {
	const char *dir;
	char staging_root[MIRROR_PATH_MAX];
	unsigned threads;
	net_client *client;
	int failures;
};

/* The registry's rule for slugs and versions: 1 to 64 characters from a-z, 0-9, '.', '_'
 * and '-', starting with a letter or digit, without "..". The same rule as reg_name_valid
 * in the daemon, which uc cannot link. */
static int name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;
	if (len == 0 || len > MIRROR_NAME_MAX || strstr(name, ".."))
		return 0;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9')))
		return 0;
	return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-") == len;
}

static int digest_valid(const char *hex)
{
	return hex && strlen(hex) == UC_SHA256_HEX_CHARS &&
	       strspn(hex, "0123456789abcdef") == UC_SHA256_HEX_CHARS;
}

/* Removes a pack directory written by this command: its regular files, then itself. */
static void remove_pack_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *entry;
	while ((entry = readdir(d))) {
		char file[MIRROR_PATH_MAX + 300];
		if (entry->d_name[0] == '.')
			continue;
		snprintf(file, sizeof file, "%s/%s", path, entry->d_name);
		unlink(file);
	}
	closedir(d);
	rmdir(path);
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	cli_error("mirror", "cannot create %s: %s", path, strerror(errno));
	return -1;
}

/* Returns 1 when `path` is a file whose SHA-256 is `hex`. */
static int file_has_digest(const char *path, const char *hex)
{
	uint8_t digest[UC_SHA256_BYTES];
	char actual[UC_SHA256_HEX_CHARS + 1];
	uint64_t size;
	uc_error err;
	if (uc_sha256_file(path, digest, &size, &err) != UC_OK)
		return 0;
	uc_sha256_to_hex(digest, actual);
	return strcmp(actual, hex) == 0;
}

static int reject(struct mirror *m, const char *slug, const char *version, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int reject(struct mirror *m, const char *slug, const char *version, const char *fmt, ...)
{
	char message[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	cli_error("mirror", "%s@%s rejected: %s", slug, version, message);
	m->failures++;
	return -1;
}

/* Downloads one shard into `path`, resuming from the bytes already there. */
static int download_shard(struct mirror *m, const char *slug, const char *version,
			  const uc_manifest_shard *shard, const char *path)
{
	char url[128];
	struct stat st;
	uint64_t have = 0, written = 0;

	int fd = open(path, O_RDWR | O_CREAT, 0644);
	FILE *f = fd >= 0 ? fdopen(fd, "r+b") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return reject(m, slug, version, "cannot open %s: %s", path, strerror(errno));
	}
	if (fstat(fileno(f), &st) == 0)
		have = (uint64_t)st.st_size;
	if (have > shard->size) {
		have = 0;
		if (ftruncate(fileno(f), 0) != 0)
			have = shard->size + 1;
	}
	if (have == shard->size) {
		fclose(f);
		return 0;
	}
	if (have > 0)
		fprintf(stderr, "uc mirror: resuming shard %s at byte %" PRIu64 "\n", shard->file, have);
	snprintf(url, sizeof url, "/api/blobs/sha256/%s", shard->file);
	net_response r;
	int rc = net_download(m->client, url, f, have, shard->size, &written, &r);
	fflush(f);
	uint64_t now_have = fstat(fileno(f), &st) == 0 ? (uint64_t)st.st_size : 0;
	fclose(f);
	if (rc != 0 || (r.status != 200 && r.status != 206) || now_have != shard->size) {
		char what[160];
		snprintf(what, sizeof what, "download of shard %s", shard->file);
		net_report_failure("mirror", what, &r);
		net_response_clear(&r);
		m->failures++;
		return -1;
	}
	net_response_clear(&r);
	if (!file_has_digest(path, shard->file)) {
		unlink(path);
		return reject(m, slug, version, "shard %s from upstream does not hash to its digest",
			      shard->file);
	}
	return 0;
}

/* Fetches the manifest and checks it against the digest from the signed snapshot.
 * Returns the parsed manifest (uc_manifest_free) or NULL after reporting. */
static uc_manifest *fetch_manifest(struct mirror *m, const char *slug, const char *version,
				   const char *digest, const char *staging)
{
	char url[256], hex[UC_SHA256_HEX_CHARS + 1], path[MIRROR_PATH_MAX + 200];
	uint8_t sha[UC_SHA256_BYTES];
	net_response r;
	uc_manifest *manifest = NULL;
	uc_error err;

	snprintf(url, sizeof url, "/api/packs/%s/versions/%s/manifest", slug, version);
	if (net_request(m->client, "GET", url, NULL, 0, NULL, &r) != 0 || r.status != 200) {
		net_report_failure("mirror", "manifest download", &r);
		net_response_clear(&r);
		m->failures++;
		return NULL;
	}
	uc_sha256_buffer(r.body, r.body_len, sha);
	uc_sha256_to_hex(sha, hex);
	if (strcmp(hex, digest) != 0) {
		reject(m, slug, version, "manifest hashes to %s, the signed snapshot says %s", hex, digest);
	} else if (uc_manifest_parse(r.body, r.body_len, &manifest, &err) != UC_OK) {
		reject(m, slug, version, "manifest is invalid: %s", err.message);
	} else {
		snprintf(path, sizeof path, "%s/manifest.json", staging);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(r.body, 1, r.body_len, f) != r.body_len) {
			reject(m, slug, version, "cannot write %s", path);
			uc_manifest_free(manifest);
			manifest = NULL;
		}
		if (f)
			fclose(f);
	}
	net_response_clear(&r);
	return manifest;
}

static int verify_staging(struct mirror *m, const char *slug, const char *version,
			  const char *staging)
{
	uc_verify_options options;
	uc_report *report = NULL;
	uc_error err;

	uc_verify_options_init(&options);
	options.threads = m->threads;
	if (uc_verify_pack(staging, &options, &report, &err) != UC_OK)
		return reject(m, slug, version, "verification could not run: %s", err.message);
	uc_verdict verdict = uc_report_verdict(report);
	uc_report_free(report);
	if (verdict != UC_VERDICT_OK)
		return reject(m, slug, version, "verification failed: %s", uc_verdict_name(verdict));
	return 0;
}

/* Mirrors one version into DIR/packs/SLUG/VERSION unless it is there already. */
static void mirror_version(struct mirror *m, const char *slug, const char *version,
			   const char *digest)
{
	char target[MIRROR_PATH_MAX + 160], staging[MIRROR_PATH_MAX + 160];
	char path[MIRROR_PATH_MAX + 240];

	snprintf(target, sizeof target, "%s/packs/%s/%s", m->dir, slug, version);
	snprintf(path, sizeof path, "%s/manifest.json", target);
	if (file_has_digest(path, digest))
		return;
	remove_pack_dir(target); /* absent, or republished upstream with another manifest */

	snprintf(staging, sizeof staging, "%s/%s@%s", m->staging_root, slug, version);
	if (make_dir(staging) != 0) {
		m->failures++;
		return;
	}
	uc_manifest *manifest = fetch_manifest(m, slug, version, digest, staging);
	if (!manifest)
		return;
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < uc_manifest_shard_count(manifest); i++) {
		const uc_manifest_shard *shard = uc_manifest_shard_at(manifest, i);
		char hex[UC_SHA256_HEX_CHARS + 1];
		uc_sha256_to_hex(shard->sha256, hex);
		if (!digest_valid(shard->file) || strcmp(shard->file, hex) != 0) {
			rc = reject(m, slug, version, "shard file name '%.100s' is not its SHA-256",
				    shard->file);
			break;
		}
		snprintf(path, sizeof path, "%s/%s", staging, shard->file);
		rc = download_shard(m, slug, version, shard, path);
	}
	uc_manifest_free(manifest);
	if (rc == 0 && verify_staging(m, slug, version, staging) == 0) {
		snprintf(path, sizeof path, "%s/packs/%s", m->dir, slug);
		if (make_dir(path) == 0 && rename(staging, target) == 0) {
			printf("%s@%s mirrored and verified\n", slug, version);
			return;
		}
		cli_error("mirror", "cannot rename %s to %s: %s", staging, target, strerror(errno));
		m->failures++;
	}
}

/* Removes DIR/packs/SLUG/VERSION directories that `wanted` (keys "slug@version") lacks. */
static void remove_deleted(struct mirror *m, json_t *wanted)
{
	char packs[MIRROR_PATH_MAX];
	snprintf(packs, sizeof packs, "%s/packs", m->dir);
	DIR *top = opendir(packs);
	if (!top)
		return;
	struct dirent *slug;
	while ((slug = readdir(top))) {
		char slug_dir[MIRROR_PATH_MAX + 80];
		if (!name_valid(slug->d_name))
			continue;
		snprintf(slug_dir, sizeof slug_dir, "%s/%.64s", packs, slug->d_name);
		DIR *versions = opendir(slug_dir);
		struct dirent *version;
		while (versions && (version = readdir(versions))) {
			char key[160], path[MIRROR_PATH_MAX + 160];
			if (!name_valid(version->d_name))
				continue;
			snprintf(key, sizeof key, "%.64s@%.64s", slug->d_name, version->d_name);
			if (json_object_get(wanted, key))
				continue;
			snprintf(path, sizeof path, "%s/%.64s", slug_dir, version->d_name);
			remove_pack_dir(path);
			printf("%s removed (deleted upstream)\n", key);
		}
		if (versions)
			closedir(versions);
		rmdir(slug_dir); /* only succeeds when empty */
	}
	closedir(top);
}

/* Reads the serial of DIR/snapshot.json (0 when there is none). */
static int64_t accepted_serial(const char *dir)
{
	char path[MIRROR_PATH_MAX];
	snprintf(path, sizeof path, "%s/snapshot.json", dir);
	json_t *root = json_load_file(path, 0, NULL);
	json_int_t serial = json_integer_value(json_object_get(json_object_get(root, "signed"), "serial"));
	json_decref(root);
	return serial;
}

static int save_snapshot(const char *dir, const char *body, size_t len)
{
	char path[MIRROR_PATH_MAX], tmp[MIRROR_PATH_MAX + 8];
	snprintf(path, sizeof path, "%s/snapshot.json", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	FILE *f = fopen(tmp, "wb");
	int ok = f && fwrite(body, 1, len, f) == len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) != 0) {
		cli_error("mirror", "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Applies a checked snapshot: mirrors every verified version, removes the rest. */
static void apply_snapshot(struct mirror *m, const reg_snapshot *snapshot)
{
	json_t *wanted = json_object();
	size_t i;
	json_t *entry;

	json_array_foreach(snapshot->versions, i, entry) {
		const char *slug = json_string_value(json_object_get(entry, "slug"));
		const char *version = json_string_value(json_object_get(entry, "version"));
		const char *digest = json_string_value(json_object_get(entry, "manifest_sha256"));
		const char *status = json_string_value(json_object_get(entry, "status"));
		if (!name_valid(slug) || !name_valid(version) || !digest_valid(digest)) {
			cli_error("mirror", "rejected the upstream entry '%.100s@%.100s' (manifest"
				  " '%.80s'): invalid slug, version or digest", slug, version, digest);
			m->failures++;
			continue;
		}
		if (strcmp(status, "verified") != 0)
			continue;
		char key[160];
		snprintf(key, sizeof key, "%s@%s", slug, version);
		json_object_set_new(wanted, key, json_true());
		mirror_version(m, slug, version, digest);
	}
	remove_deleted(m, wanted);
	json_decref(wanted);
}

static int run_mirror(struct mirror *m, const char *key_file)
{
	char error[1024];
	net_response r;
	reg_snapshot snapshot;

	EVP_PKEY *key = reg_snapshot_read_public_key(key_file, error, sizeof error);
	if (!key) {
		cli_error("mirror", "%s", error);
		return UC_EXIT_USAGE;
	}
	if (net_request(m->client, "GET", "/api/snapshot", NULL, 0, NULL, &r) != 0 ||
	    r.status != 200) {
		net_report_failure("mirror", "snapshot download", &r);
		net_response_clear(&r);
		EVP_PKEY_free(key);
		return UC_EXIT_FAILURE;
	}
	int rc = UC_EXIT_OK;
	if (reg_snapshot_check(key, r.body, r.body_len, (int64_t)time(NULL), accepted_serial(m->dir),
			       &snapshot, error, sizeof error) != 0) {
		cli_error("mirror", "%s; nothing was changed in %s", error, m->dir);
		rc = UC_EXIT_USAGE;
	} else {
		apply_snapshot(m, &snapshot);
		/* The snapshot is recorded only when complete, so a failed version is retried. */
		if (m->failures == 0 && save_snapshot(m->dir, r.body, r.body_len) != 0)
			m->failures++;
		if (m->failures)
			rc = UC_EXIT_FAILURE;
		else
			printf("mirrored snapshot serial %" PRId64 " into %s\n", snapshot.serial, m->dir);
		reg_snapshot_clear(&snapshot);
	}
	net_response_clear(&r);
	EVP_PKEY_free(key);
	return rc;
}

int uc_cmd_mirror(int argc, char **argv)
{
	static const struct option options[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "threads", required_argument, NULL, 't' },
		{ "limit-rate", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mirror m = { 0 };
	const char *key_file = NULL;
	uint64_t rate = 0;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'k': key_file = optarg; break;
		case 't':
			if (cli_parse_threads("mirror", optarg, &m.threads) != 0)
				return UC_EXIT_USAGE;
			break;
		case 'r':
			if (cli_parse_bytes("mirror", "--limit-rate", optarg, &rate) != 0)
				return UC_EXIT_USAGE;
			break;
		case 'h': fputs(mirror_usage, stdout); return UC_EXIT_OK;
		default: return UC_EXIT_USAGE;
		}
	}
	if (argc - optind != 2 || !key_file) {
		cli_error("mirror", "expected URL DIR and --key FILE; run 'uc mirror --help'");
		return UC_EXIT_USAGE;
	}
	m.dir = argv[optind + 1];
	if (strlen(m.dir) > MIRROR_PATH_MAX - 256) {
		cli_error("mirror", "output path %s is too long", m.dir);
		return UC_EXIT_USAGE;
	}
	char packs[MIRROR_PATH_MAX];
	snprintf(packs, sizeof packs, "%s/packs", m.dir);
	snprintf(m.staging_root, sizeof m.staging_root, "%s/.uc-mirror", m.dir);
	if (make_dir(m.dir) != 0 || make_dir(packs) != 0 || make_dir(m.staging_root) != 0)
		return UC_EXIT_FAILURE;
	m.client = net_client_new("mirror", argv[optind], NULL);
	if (!m.client)
		return UC_EXIT_USAGE;
	net_client_set_rate_limit(m.client, rate);
	int rc = run_mirror(&m, key_file);
	net_client_free(m.client);
	return rc;
}
