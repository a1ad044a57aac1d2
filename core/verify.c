/* Verification of a pack, the same for `uc verify` and the registry's workers. Stage 1
 * (structure) checks the manifest and that every shard file has its declared size. Stage 2
 * (integrity) hashes the shards in parallel. Stage 3 (reconstruction) rebuilds and hashes
 * every tensor in chunks, tensors in parallel. A failed stage stops the run, and the report
 * records every failure of that stage. */
#include "pack_internal.h"

#include <stdio.h>
#include <math.h>
#include <string.h>

/* SHA-256 is fed shard bytes in pieces of this size, so progress moves steadily. */
#define HASH_PIECE_BYTES ((size_t)1 << 20)

/* Per-item outcome of a parallel stage, merged into the report in index order so the
 * report does not depend on which thread finished first. */
typedef struct {
	uc_status status;
	uc_error err;
	uint8_t digest[UC_SHA256_BYTES];
} item_result;

typedef struct {
	const uc_manifest *manifest;
	const ucp_shard_map *maps;
	item_result *results;
	ucp_progress *progress;
} stage_run;

void uc_verify_options_init(uc_verify_options *options)
{
	*options = (uc_verify_options){0};
}

static uc_report *report_new(unsigned threads)
{
	uc_report *report = ucp_calloc(1, sizeof *report);
	if (!report)
		return NULL;
	report->verdict = UC_VERDICT_OK;
	report->isa = uc_isa_active();
	report->threads = threads;
	return report;
}

static void stage_finish(uc_report *report, ucp_stage stage, double started, int failed)
{
	report->stage_seconds[stage] = ucp_now_seconds() - started;
	report->stages[stage] = failed ? UCP_STAGE_FAILED : UCP_STAGE_PASSED;
	if (failed && report->verdict == UC_VERDICT_OK)
		report->verdict = (uc_verdict)(UC_VERDICT_STRUCTURE_FAILED + stage);
}

/* Stage 1 after the manifest parsed: every shard file present with its declared size. */
static uc_status check_shard_files(const uc_manifest *manifest, const char *shard_dir,
				   ucp_shard_map *maps, uc_report *report, int *failed, uc_error *err)
{
	for (size_t i = 0; i < manifest->n_shards; i++) {
		uc_error shard_err;
		uc_status status = ucp_shard_map_open(shard_dir, &manifest->shards[i], &maps[i], &shard_err);
		if (status == UC_ERR_NOMEM)
			return ucp_fail(err, status, "%s", shard_err.message);
		if (status == UC_OK)
			continue;

		*failed = 1;
		if (ucp_report_add_error(report, UCP_STAGE_STRUCTURE, "shard", manifest->shards[i].file,
					 status, shard_err.message) != 0)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory recording a verification error");
	}
	return UC_OK;
}

static void hash_shard_task(void *ctx, size_t index, unsigned worker)
{
	(void)worker;
	stage_run *run = ctx;
	const ucp_shard_map *map = &run->maps[index];
	item_result *result = &run->results[index];

	uc_sha256 *sha = uc_sha256_new();
	if (!sha) {
		result->status = ucp_fail(&result->err, UC_ERR_NOMEM, "out of memory hashing a shard");
		return;
	}
	for (uint64_t done = 0; done < map->size;) {
		uint64_t piece = map->size - done;
		if (piece > HASH_PIECE_BYTES)
			piece = HASH_PIECE_BYTES;
		uc_sha256_update(sha, map->data + done, (size_t)piece);
		ucp_progress_add(run->progress, piece);
		done += piece;
	}
	uc_sha256_final(sha, result->digest);
	uc_sha256_free(sha);
}

static void digest_tensor_task(void *ctx, size_t index, unsigned worker)
{
	(void)worker;
	stage_run *run = ctx;
	const uc_manifest_tensor *tensor = &run->manifest->tensors[index];
	const ucp_shard_map *map = &run->maps[tensor->shard];
	item_result *result = &run->results[index];

	const uint8_t *span = map->data ? map->data + tensor->offset : NULL;
	result->status = ucp_tensor_digest(tensor, span, result->digest, &result->err);
	ucp_progress_add(run->progress, tensor->n_elements * ucp_dtype_bytes(tensor->dtype));
}

static uc_status record_integrity(const uc_manifest *manifest, const item_result *results,
				  uc_report *report, int *failed, uc_error *err)
{
	for (size_t i = 0; i < manifest->n_shards; i++) {
		const uc_manifest_shard *shard = &manifest->shards[i];
		if (results[i].status == UC_ERR_NOMEM)
			return ucp_fail(err, UC_ERR_NOMEM, "%s", results[i].err.message);
		report->bytes_hashed += shard->size;
		if (memcmp(results[i].digest, shard->sha256, UC_SHA256_BYTES) == 0)
			continue;

		char actual[UC_SHA256_HEX_CHARS + 1], message[256];
		uc_sha256_to_hex(results[i].digest, actual);
		snprintf(message, sizeof message,
			 "content differs from the manifest: the file's SHA-256 is %s; fetch the shard again",
			 actual);
		*failed = 1;
		if (ucp_report_add_error(report, UCP_STAGE_INTEGRITY, "shard", shard->file,
					 UC_ERR_INTEGRITY, message) != 0)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory recording a verification error");
	}
	return UC_OK;
}

static uc_status record_tensor(const uc_manifest_tensor *tensor, const item_result *result,
			       ucp_report_tensor *entry, uc_report *report, int *failed)
{
	entry->name = ucp_strdup(tensor->name);
	if (!entry->name)
		return UC_ERR_NOMEM;
	entry->encoding = tensor->encoding;
	entry->sqnr_db = tensor->sqnr_db;
	memcpy(entry->expected_sha256, tensor->sha256, UC_SHA256_BYTES);

	if (result->status != UC_OK) {
		*failed = 1;
		return ucp_report_add_error(report, UCP_STAGE_RECONSTRUCTION, "tensor", tensor->name,
					    result->status, result->err.message) ? UC_ERR_NOMEM : UC_OK;
	}

	entry->reconstructed = 1;
	memcpy(entry->actual_sha256, result->digest, UC_SHA256_BYTES);
	entry->ok = memcmp(result->digest, tensor->sha256, UC_SHA256_BYTES) == 0;
	report->bytes_hashed += tensor->n_elements * ucp_dtype_bytes(tensor->dtype);
	if (entry->ok)
		return UC_OK;

	char actual[UC_SHA256_HEX_CHARS + 1], expected[UC_SHA256_HEX_CHARS + 1], message[320];
	uc_sha256_to_hex(result->digest, actual);
	uc_sha256_to_hex(tensor->sha256, expected);
	snprintf(message, sizeof message,
		 "reconstructed tensor has SHA-256 %s but the manifest expects %s", actual, expected);
	*failed = 1;
	return ucp_report_add_error(report, UCP_STAGE_RECONSTRUCTION, "tensor", tensor->name,
				    UC_ERR_MISMATCH, message) ? UC_ERR_NOMEM : UC_OK;
}

static uc_status record_reconstruction(const uc_manifest *manifest, const item_result *results,
				       uc_report *report, int *failed, uc_error *err)
{
	report->tensors = ucp_calloc(manifest->n_tensors, sizeof *report->tensors);
	if (!report->tensors)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory for %zu tensor results", manifest->n_tensors);
	report->n_tensors = manifest->n_tensors;

	for (size_t i = 0; i < manifest->n_tensors; i++) {
		if (results[i].status == UC_ERR_NOMEM)
			return ucp_fail(err, UC_ERR_NOMEM, "%s", results[i].err.message);
		if (record_tensor(&manifest->tensors[i], &results[i], &report->tensors[i], report, failed) != UC_OK)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory recording tensor results");
	}
	return UC_OK;
}

/* Runs `task` over `count` items and merges the results with `record`. */
static uc_status run_stage(stage_run *run, size_t count, unsigned threads, ucp_task_fn task,
			   uc_status (*record)(const uc_manifest *, const item_result *, uc_report *,
					       int *, uc_error *),
			   uc_report *report, int *failed, uc_error *err)
{
	run->results = ucp_calloc(count, sizeof *run->results);
	if (!run->results)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory verifying %zu items", count);

	ucp_parallel_run(count, ucp_thread_count(threads, count), task, run);
	uc_status rc = record(run->manifest, run->results, report, failed, err);
	ucp_free(run->results);
	run->results = NULL;
	return rc;
}

static uint64_t total_hash_bytes(const uc_manifest *manifest)
{
	uint64_t total = manifest->shard_bytes;
	for (size_t i = 0; i < manifest->n_tensors; i++) {
		uint64_t bytes = manifest->tensors[i].n_elements * ucp_dtype_bytes(manifest->tensors[i].dtype);
		total = total + bytes < total ? UINT64_MAX : total + bytes;
	}
	return total;
}

/* Stages 2 and 3 over a manifest whose shard files are mapped. */
static uc_status verify_contents(const uc_manifest *manifest, const ucp_shard_map *maps,
				 const uc_verify_options *options, uc_report *report, uc_error *err)
{
	ucp_progress progress;
	if (ucp_progress_init(&progress, options->progress, options->progress_ctx,
			      total_hash_bytes(manifest)) != 0)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory starting verification");

	stage_run run = {.manifest = manifest, .maps = maps, .progress = &progress};
	report->n_shards = manifest->n_shards;
	int failed = 0;
	double started = ucp_now_seconds();
	uc_status rc = run_stage(&run, manifest->n_shards, options->threads, hash_shard_task,
				 record_integrity, report, &failed, err);
	if (rc != UC_OK)
		goto out;
	stage_finish(report, UCP_STAGE_INTEGRITY, started, failed);
	if (failed)
		goto out;

	started = ucp_now_seconds();
	rc = run_stage(&run, manifest->n_tensors, options->threads, digest_tensor_task,
		       record_reconstruction, report, &failed, err);
	if (rc == UC_OK)
		stage_finish(report, UCP_STAGE_RECONSTRUCTION, started, failed);

out:
	ucp_progress_destroy(&progress);
	return rc;
}

/* Verifies manifest bytes against `shard_dir`. Failures of the pack go into the report;
 * the returned status is for failures of the run itself. */
static uc_status verify_into(const char *json, size_t len, const char *shard_dir,
			     const uc_verify_options *options, uc_report *report, uc_error *err)
{
	uc_manifest *manifest = NULL;
	ucp_shard_map *maps = NULL;
	uc_error parse_err;
	int failed = 0;
	double started = ucp_now_seconds();

	report->has_manifest_sha256 = 1;
	uc_sha256_buffer(json, len, report->manifest_sha256);

	uc_status rc = uc_manifest_parse(json, len, &manifest, &parse_err);
	if (rc == UC_ERR_NOMEM)
		return ucp_fail(err, rc, "%s", parse_err.message);
	if (rc != UC_OK) {
		stage_finish(report, UCP_STAGE_STRUCTURE, started, 1);
		return ucp_report_add_error(report, UCP_STAGE_STRUCTURE, "manifest", UCP_MANIFEST_FILE, rc,
					    parse_err.message)
			       ? ucp_fail(err, UC_ERR_NOMEM, "out of memory recording a verification error")
			       : UC_OK;
	}

	maps = ucp_calloc(manifest->n_shards, sizeof *maps);
	if (!maps) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory for %zu shard maps", manifest->n_shards);
		goto out;
	}
	rc = check_shard_files(manifest, shard_dir, maps, report, &failed, err);
	if (rc != UC_OK)
		goto out;
	stage_finish(report, UCP_STAGE_STRUCTURE, started, failed);
	if (!failed)
		rc = verify_contents(manifest, maps, options, report, err);

out:
	for (size_t i = 0; maps && i < manifest->n_shards; i++)
		ucp_shard_map_close(&maps[i]);
	ucp_free(maps);
	uc_manifest_free(manifest);
	return rc;
}

/* Checks options and the instruction-set choice, then allocates the report. */
static uc_status start_report(const uc_verify_options *options, uc_verify_options *resolved,
			      uc_report **out, uc_error *err)
{
	*out = NULL;
	uc_error_clear(err);
	if (options)
		*resolved = *options;
	else
		uc_verify_options_init(resolved);

	uc_status rc = uc_isa_init(err);
	if (rc != UC_OK)
		return rc;

	resolved->threads = ucp_thread_count(resolved->threads, SIZE_MAX);
	*out = report_new(resolved->threads);
	if (!*out)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory starting verification");
	return UC_OK;
}

uc_status uc_verify_manifest(const char *manifest_json, size_t len, const char *shard_dir,
			     const uc_verify_options *options, uc_report **out, uc_error *err)
{
	uc_verify_options resolved;
	uc_report *report = NULL;

	if (!manifest_json || !shard_dir || !out)
		return ucp_fail(err, UC_ERR_INVALID, "uc_verify_manifest needs manifest bytes, a shard directory and an output pointer");

	uc_status rc = start_report(options, &resolved, &report, err);
	if (rc == UC_OK)
		rc = verify_into(manifest_json, len, shard_dir, &resolved, report, err);
	if (rc != UC_OK) {
		uc_report_free(report);
		report = NULL;
	}
	*out = report;
	return rc;
}

uc_status uc_verify_pack(const char *pack_dir, const uc_verify_options *options, uc_report **out,
			 uc_error *err)
{
	uc_verify_options resolved;
	uc_report *report = NULL;
	char *path = NULL, *json = NULL;
	size_t len = 0;

	if (!pack_dir || !out)
		return ucp_fail(err, UC_ERR_INVALID, "uc_verify_pack needs a pack directory and an output pointer");

	uc_status rc = start_report(options, &resolved, &report, err);
	if (rc != UC_OK)
		goto out;

	path = ucp_path_join(pack_dir, UCP_MANIFEST_FILE);
	if (!path) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory opening pack %s", pack_dir);
		goto out;
	}

	uc_error read_err;
	uc_status read_rc = ucp_read_file(path, UCP_MANIFEST_MAX_BYTES, &json, &len, &read_err);
	if (read_rc == UC_ERR_NOMEM) {
		rc = ucp_fail(err, read_rc, "%s", read_err.message);
	} else if (read_rc != UC_OK) {
		/* An unreadable manifest is a verdict about the pack, not a failure to verify. */
		stage_finish(report, UCP_STAGE_STRUCTURE, ucp_now_seconds(), 1);
		if (ucp_report_add_error(report, UCP_STAGE_STRUCTURE, "manifest", UCP_MANIFEST_FILE, read_rc,
					 read_err.message) != 0)
			rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory recording a verification error");
	} else {
		rc = verify_into(json, len, pack_dir, &resolved, report, err);
	}

out:
	ucp_free(json);
	ucp_free(path);
	if (rc != UC_OK) {
		uc_report_free(report);
		report = NULL;
	}
	*out = report;
	return rc;
}
