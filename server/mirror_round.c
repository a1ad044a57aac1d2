/* One follower round. Names and digests from upstream are checked with the daemon's own
 * validators (reg_name_valid, reg_digest_valid) before they are used in a URL, a file
 * name or the catalog, and a bad one is rejected as a "path" failure. Shards are
 * downloaded to DATA/mirror-partial/<digest>.part and enter the blob store only after
 * their SHA-256 matches. A version is published only after uc_verify_manifest, the
 * function the verify workers run, passed on the installed blobs. */
#include "config.h"

#include "mirror_round.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blobs.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "mirror_catalog.h"
#include "mirror_evaluations.h"
#include "mirror_pipeline.h"
#include "snapshot_verify.h"
#include "uc_hash.h"
#include "uc_pack.h"

#define CHANGES_PAGE 1000
#define MANIFEST_LIMIT ((size_t)16 << 20)

/* One version to reconcile with the upstream. */
struct entry {
	char slug[72];
	char version[72];
	const json_t *upstream;  /* snapshot entry (borrowed) or NULL when gone upstream */
	char *yank_reason;       /* from the change feed; NULL when not seen */
	int fetch;               /* 1 while it still needs download and verification */
	int rejected;             /* 1 once rejected (recorded) */
	int transient;           /* 1 when a retry might fix its failure */
	int evaluations;         /* 1 when its evaluations are to be copied from upstream */
	char *manifest;
	size_t manifest_len;
	uc_manifest *parsed;
};

/* The working set of a round. */
struct round {
	reg_mirror_context *ctx;
	reg_snapshot snapshot;
	json_t *index;          /* "slug@version" -> snapshot entry, borrowed values */
	struct entry *entries;
	size_t count, capacity;
	int transient;          /* a failure that a retry could fix happened */
	size_t published;
	size_t rejected;
	size_t evaluations;     /* evaluations copied */
};

static void reject(struct round *r, struct entry *e, const char *kind, int transient,
		   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reject(struct round *r, struct entry *e, const char *kind, int transient,
		   const char *fmt, ...)
{
	char message[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof message, fmt, ap);
	va_end(ap);
	e->fetch = 0;
	e->rejected = 1;
	r->rejected++;
	e->transient = transient;
	r->transient |= transient;
	reg_mirror_record_failure(r->ctx->db, kind, e->slug, e->version, message);
}

/* Adds slug@version to the working set unless present. Returns the entry or NULL when
 * the names are invalid (recorded) or memory ran out. */
static struct entry *add_entry(struct round *r, const char *slug, const char *version)
{
	if (!reg_name_valid(slug) || !reg_name_valid(version)) {
		char message[400];
		snprintf(message, sizeof message, "rejected the upstream name '%.120s@%.120s': slugs and"
			 " versions are 1 to 64 characters from a-z, 0-9, '.', '_' and '-', without"
			 " '..' or '/'", slug, version);
		reg_mirror_record_failure(r->ctx->db, "path", NULL, NULL, message);
		return NULL;
	}
	for (size_t i = 0; i < r->count; i++) {
		if (strcmp(r->entries[i].slug, slug) == 0 && strcmp(r->entries[i].version, version) == 0)
			return &r->entries[i];
	}
	if (r->count == r->capacity) {
		size_t capacity = r->capacity ? 2 * r->capacity : 64;
		struct entry *grown = realloc(r->entries, capacity * sizeof *grown);
		if (!grown)
			return NULL;
		r->entries = grown;
		r->capacity = capacity;
	}
	struct entry *e = &r->entries[r->count++];
	memset(e, 0, sizeof *e);
	snprintf(e->slug, sizeof e->slug, "%s", slug);
	snprintf(e->version, sizeof e->version, "%s", version);
	char key[160];
	snprintf(key, sizeof key, "%s@%s", slug, version);
	e->upstream = json_object_get(r->index, key);
	return e;
}

static void round_clear(struct round *r)
{
	for (size_t i = 0; i < r->count; i++) {
		free(r->entries[i].yank_reason);
		free(r->entries[i].manifest);
		uc_manifest_free(r->entries[i].parsed);
	}
	free(r->entries);
	json_decref(r->index);
	reg_snapshot_clear(&r->snapshot);
}

static int fetch_snapshot(struct round *r, int64_t min_serial)
{
	char error[1024];
	char *body = NULL;
	size_t len = 0;

	long status = reg_fetch_get(r->ctx->fetch, "/api/snapshot", REG_SNAPSHOT_MAX_BYTES, &body,
				    &len, error, sizeof error);
	if (status != 200) {
		reg_mirror_record_failure(r->ctx->db, "transfer", NULL, NULL, error);
		return -1;
	}
	int rc = reg_snapshot_check(r->ctx->key, body, len, reg_now(), min_serial, &r->snapshot,
				    error, sizeof error);
	free(body);
	if (rc != 0) {
		reg_mirror_record_failure(r->ctx->db, "snapshot", NULL, NULL, error);
		return -1;
	}
	r->index = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(r->snapshot.versions, i, v) {
		char key[300];
		snprintf(key, sizeof key, "%.140s@%.140s", json_string_value(json_object_get(v, "slug")),
			 json_string_value(json_object_get(v, "version")));
		json_object_set(r->index, key, v);
	}
	return 0;
}

/* Adds every version named by the change feed in (since, until]. */
static int collect_changes(struct round *r, int64_t since, int64_t until)
{
	char path[96], error[1024];

	while (since < until) {
		char *body = NULL;
		size_t len = 0;
		int64_t page_start = since;
		snprintf(path, sizeof path, "/api/changes?since=%" PRId64 "&limit=%d", since, CHANGES_PAGE);
		long status = reg_fetch_get(r->ctx->fetch, path, MANIFEST_LIMIT, &body, &len, error,
					    sizeof error);
		if (status != 200) {
			reg_mirror_record_failure(r->ctx->db, "transfer", NULL, NULL, error);
			return -1;
		}
		json_t *root = json_loadb(body, len, 0, NULL);
		free(body);
		json_t *changes = json_object_get(root, "changes");
		if (!json_is_array(changes) || json_array_size(changes) == 0) {
			json_decref(root);
			break;
		}
		size_t i;
		json_t *change;
		json_array_foreach(changes, i, change) {
			json_int_t serial = json_integer_value(json_object_get(change, "serial"));
			const char *slug = json_string_value(json_object_get(change, "slug"));
			const char *version = json_string_value(json_object_get(change, "version"));
			const char *kind = json_string_value(json_object_get(change, "kind"));
			if (serial <= since || serial > until)
				continue;
			since = serial;
			if (!slug || !version)
				continue;
			struct entry *e = add_entry(r, slug, version);
			const char *detail = json_string_value(json_object_get(change, "detail"));
			if (e && kind && detail && strcmp(kind, "yank") == 0 && !e->yank_reason)
				e->yank_reason = strdup(detail);
			if (e && kind && strcmp(kind, "evaluation") == 0)
				e->evaluations = 1;
		}
		json_decref(root);
		if (since == page_start)
			break; /* nothing in range on this page */
	}
	return 0;
}

/* Adds every snapshot version, with its evaluations to copy, and every local version. */
static int collect_everything(struct round *r)
{
	size_t i;
	json_t *v;
	json_array_foreach(r->snapshot.versions, i, v) {
		struct entry *e = add_entry(r, json_string_value(json_object_get(v, "slug")),
					    json_string_value(json_object_get(v, "version")));
		if (e)
			e->evaluations = 1;
	}

	sqlite3_stmt *stmt = reg_db_prepare(r->ctx->db,
		"SELECT p.slug, v.version FROM versions v JOIN packs p ON p.id = v.pack_id");
	if (!stmt)
		return -1;
	while (sqlite3_step(stmt) == SQLITE_ROW)
		add_entry(r, (const char *)sqlite3_column_text(stmt, 0),
			  (const char *)sqlite3_column_text(stmt, 1));
	sqlite3_finalize(stmt);
	return 0;
}

static double seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static const char *upstream_string(const struct entry *e, const char *name)
{
	return json_string_value(json_object_get(e->upstream, name));
}

/* Copies the entry's evaluations from upstream; a failure a retry could fix marks the
 * round incomplete. */
static void copy_evaluations(struct round *r, struct entry *e)
{
	if (reg_mirror_sync_evaluations(r->ctx->db, r->ctx->fetch, e->slug, e->version,
					r->ctx->owner_token, &r->evaluations) != 0)
		r->transient = 1;
}

/* Decides what each entry needs: deletion, a yank, a download, or nothing. A version kept
 * here gets its evaluations copied when the change feed has an evaluation event for it or
 * the round is a full one. */
static void plan(struct round *r)
{
	sqlite3 *db = r->ctx->db;

	for (size_t i = 0; i < r->count; i++) {
		struct entry *e = &r->entries[i];
		reg_local_version local;
		int found = reg_mirror_find_version(db, e->slug, e->version, &local);
		if (found < 0) {
			reject(r, e, "catalog", 1, "cannot read the local catalog");
			continue;
		}
		const char *digest = upstream_string(e, "manifest_sha256");
		if (e->upstream && !reg_digest_valid(digest)) {
			reject(r, e, "path", 0, "rejected the upstream manifest digest '%.80s': not 64"
			       " lower-case hex digits", digest);
			continue;
		}
		int verified = e->upstream && strcmp(upstream_string(e, "status"), "verified") == 0;
		if (found && (!e->upstream || strcmp(local.digest, digest) != 0)) {
			if (reg_mirror_delete(db, e->slug, e->version) == 0)
				REG_INFO("mirror: deleted %s@%s (%s upstream)", e->slug, e->version,
					 e->upstream ? "republished" : "deleted");
			found = 0;
		}
		if (!verified)
			continue; /* pending versions come back with their verify event */
		int yanked = json_is_true(json_object_get(e->upstream, "yanked"));
		if (!found) {
			e->fetch = 1;
			continue;
		}
		if (yanked && !local.yanked) {
			if (reg_mirror_yank(db, e->slug, e->version, e->yank_reason ? e->yank_reason
					    : "yanked upstream") == 0)
				REG_INFO("mirror: yanked %s@%s", e->slug, e->version);
		}
		if (e->evaluations)
			copy_evaluations(r, e);
	}
}

static void fetch_manifest(struct round *r, struct entry *e)
{
	char path[256], error[1024], hex[UC_SHA256_HEX_CHARS + 1];
	uint8_t digest[UC_SHA256_BYTES];
	uc_error err;

	snprintf(path, sizeof path, "/api/packs/%s/versions/%s/manifest", e->slug, e->version);
	long status = reg_fetch_get(r->ctx->fetch, path, MANIFEST_LIMIT, &e->manifest,
				    &e->manifest_len, error, sizeof error);
	if (status != 200) {
		reject(r, e, "transfer", status < 400 || status >= 500, "%s", error);
		return;
	}
	uc_sha256_buffer(e->manifest, e->manifest_len, digest);
	uc_sha256_to_hex(digest, hex);
	if (strcmp(hex, upstream_string(e, "manifest_sha256")) != 0) {
		reject(r, e, "version", 0, "manifest hashes to %s but the signed snapshot says %s",
		       hex, upstream_string(e, "manifest_sha256"));
		return;
	}
	if (uc_manifest_parse(e->manifest, e->manifest_len, &e->parsed, &err) != UC_OK) {
		reject(r, e, "version", 0, "manifest is invalid: %s", err.message);
		return;
	}
	for (size_t i = 0; i < uc_manifest_shard_count(e->parsed); i++) {
		const uc_manifest_shard *shard = uc_manifest_shard_at(e->parsed, i);
		uc_sha256_to_hex(shard->sha256, hex);
		if (!reg_digest_valid(shard->file) || strcmp(shard->file, hex) != 0) {
			reject(r, e, "path", 0, "rejected the shard file name '%.120s': it must be the"
			       " shard's SHA-256 in hex", shard->file);
			return;
		}
	}
}

/* Publishes an entry after its local verification (`job`) passed. */
static void publish_verified(struct round *r, struct entry *e, const reg_mirror_verify_job *job)
{
	if (job->status != UC_OK) {
		reject(r, e, "version", 1, "verification could not run: %s", job->error);
		return;
	}
	if (job->verdict != UC_VERDICT_OK) {
		reject(r, e, "version", 0, "local verification failed (%s); not published",
		       uc_verdict_name(job->verdict));
		return;
	}
	const char *yank_reason = NULL;
	if (json_is_true(json_object_get(e->upstream, "yanked")))
		yank_reason = e->yank_reason ? e->yank_reason : "yanked upstream";
	reg_mirror_version v = {
		.slug = e->slug, .version = e->version, .manifest = e->manifest,
		.manifest_len = e->manifest_len, .digest = upstream_string(e, "manifest_sha256"),
		.parsed = e->parsed, .report_json = job->report_json, .verify_seconds = job->seconds,
		.yank_reason = yank_reason, .owner_token = r->ctx->owner_token,
	};
	if (reg_mirror_publish(r->ctx->db, &v) == 0) {
		r->published++;
		REG_INFO("mirror: published %s@%s (manifest %s)", e->slug, e->version, v.digest);
		copy_evaluations(r, e);
	} else {
		reject(r, e, "catalog", 1, "cannot publish in the local catalog");
	}
}

/* Brings in every entry still marked for fetching through the pipeline (download,
 * install, verify), then records the failures and publishes the verified entries. */
static void fetch_and_publish(struct round *r)
{
	size_t count = 0;
	for (size_t i = 0; i < r->count; i++)
		count += r->entries[i].fetch;
	if (count == 0)
		return;
	reg_pipeline_version *versions = calloc(count, sizeof *versions);
	struct entry **owners = calloc(count, sizeof *owners);
	if (!versions || !owners) {
		free(versions);
		free(owners);
		r->transient = 1;
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < r->count; i++) {
		if (!r->entries[i].fetch)
			continue;
		owners[n] = &r->entries[i];
		versions[n].manifest = r->entries[i].manifest;
		versions[n].manifest_len = r->entries[i].manifest_len;
		versions[n].parsed = r->entries[i].parsed;
		n++;
	}
	reg_mirror_pipeline_run(r->ctx->fetch, r->ctx->partial_dir, r->ctx->owner_token, versions, n);
	for (size_t k = 0; k < n; k++) {
		reg_pipeline_version *v = &versions[k];
		if (v->failure_kind)
			reject(r, owners[k], v->failure_kind, v->transient, "%s", v->reason);
		else if (v->verified)
			publish_verified(r, owners[k], &v->job);
		uc_free(v->job.report_json);
	}
	free(versions);
	free(owners);
}

void reg_mirror_run_round(reg_mirror_context *ctx)
{
	struct round r = { .ctx = ctx };
	reg_mirror_state state = { 0 };
	struct timespec start, end;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (reg_mirror_state_load(ctx->db, &state) != 0)
		return;
	state.last_attempt_at = reg_now();
	if (fetch_snapshot(&r, state.accepted_serial) != 0) {
		reg_mirror_state_save(ctx->db, &state);
		goto out;
	}
	state.upstream_serial = r.snapshot.serial;
	int full = ctx->full_round || !state.full_sync_done;
	if (!full && r.snapshot.serial == state.accepted_serial) {
		state.accepted_generated_at = r.snapshot.generated_at;
		state.last_sync_at = reg_now();
		reg_mirror_state_save(ctx->db, &state);
		goto out;
	}
	int rc = full ? collect_everything(&r)
		      : collect_changes(&r, state.accepted_serial, r.snapshot.serial);
	if (rc != 0) {
		reg_mirror_state_save(ctx->db, &state);
		goto out;
	}
	REG_INFO("mirror: %s round to serial %" PRId64 ", %zu versions to reconcile",
		 full ? "full" : "incremental", r.snapshot.serial, r.count);
	plan(&r);
	for (size_t i = 0; i < r.count; i++) {
		if (r.entries[i].fetch)
			fetch_manifest(&r, &r.entries[i]);
	}
	fetch_and_publish(&r);
	if (!r.transient) {
		state.accepted_serial = r.snapshot.serial;
		state.accepted_generated_at = r.snapshot.generated_at;
		state.last_sync_at = reg_now();
		state.full_sync_done = 1;
		ctx->full_round = 0;
	}
	reg_mirror_state_save(ctx->db, &state);
	clock_gettime(CLOCK_MONOTONIC, &end);
	REG_INFO("mirror: round to serial %" PRId64 " %s in %.3f s: %zu versions reconciled, %zu"
		 " published, %zu rejected, %zu evaluations copied", r.snapshot.serial,
		 r.transient ? "incomplete, will retry" : "applied", seconds_between(&start, &end),
		 r.count, r.published, r.rejected, r.evaluations);
out:
	round_clear(&r);
}
