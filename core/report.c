/* The verification report: its storage, and its JSON and text forms. docs/pack-format.md
 * documents both forms. */
#include "pack_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

static const char *const stage_names[UCP_STAGE_COUNT] = {"structure", "integrity", "reconstruction"};
static const char *const result_names[] = {"skipped", "ok", "failed"};

const char *ucp_stage_name(ucp_stage stage)
{
	return stage < UCP_STAGE_COUNT ? stage_names[stage] : "unknown";
}

const char *uc_verdict_name(uc_verdict verdict)
{
	switch (verdict) {
	case UC_VERDICT_OK:
		return "ok";
	case UC_VERDICT_STRUCTURE_FAILED:
		return "structure_failed";
	case UC_VERDICT_INTEGRITY_FAILED:
		return "integrity_failed";
	case UC_VERDICT_RECONSTRUCTION_FAILED:
		return "reconstruction_failed";
	}
	return "unknown";
}

int ucp_report_add_error(uc_report *report, ucp_stage stage, const char *subject_kind,
			 const char *subject, uc_status status, const char *message)
{
	ucp_report_error *grown = ucp_realloc(report->errors, (report->n_errors + 1) * sizeof *grown);
	if (!grown)
		return -1;
	report->errors = grown;

	ucp_report_error *entry = &report->errors[report->n_errors];
	*entry = (ucp_report_error){.stage = stage, .subject_kind = subject_kind, .status = status};
	entry->subject = ucp_strdup(subject);
	entry->message = ucp_strdup(message);
	if (!entry->subject || !entry->message) {
		ucp_free(entry->subject);
		ucp_free(entry->message);
		return -1;
	}
	report->n_errors++;
	return 0;
}

uc_verdict uc_report_verdict(const uc_report *report)
{
	return report->verdict;
}

size_t uc_report_error_count(const uc_report *report)
{
	return report->n_errors;
}

void uc_report_free(uc_report *report)
{
	if (!report)
		return;
	for (size_t i = 0; i < report->n_errors; i++) {
		ucp_free(report->errors[i].subject);
		ucp_free(report->errors[i].message);
	}
	for (size_t i = 0; i < report->n_tensors; i++)
		ucp_free(report->tensors[i].name);
	ucp_free(report->errors);
	ucp_free(report->tensors);
	ucp_free(report);
}

/* JSON form. Builders set *failed when an allocation fails; json_object_set_new and
 * json_array_append_new take the value's reference even when they fail. */
static void put(json_t *object, const char *key, json_t *value, int *failed)
{
	if (!value || json_object_set_new(object, key, value) != 0)
		*failed = 1;
}

static void append(json_t *array, json_t *value, int *failed)
{
	if (!value || json_array_append_new(array, value) != 0)
		*failed = 1;
}

static json_t *digest_or_null(const uint8_t *digest, int present)
{
	if (!present)
		return json_null();
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_to_hex(digest, hex);
	return json_string(hex);
}

static json_t *stage_json(const uc_report *report, ucp_stage stage, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "name", json_string(stage_names[stage]), failed);
	put(object, "status", json_string(result_names[report->stages[stage]]), failed);
	put(object, "seconds", json_real(report->stage_seconds[stage]), failed);
	return object;
}

static json_t *error_json(const ucp_report_error *e, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "stage", json_string(stage_names[e->stage]), failed);
	put(object, "subject_kind", json_string(e->subject_kind), failed);
	put(object, "subject", json_string(e->subject), failed);
	put(object, "status", json_string(uc_status_name(e->status)), failed);
	put(object, "message", json_string(e->message), failed);
	return object;
}

static json_t *tensor_json(const ucp_report_tensor *t, int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "name", json_string(t->name), failed);
	put(object, "encoding", json_string(ucp_encoding_text(t->encoding)), failed);
	put(object, "expected_sha256", digest_or_null(t->expected_sha256, 1), failed);
	put(object, "actual_sha256", digest_or_null(t->actual_sha256, t->reconstructed), failed);
	put(object, "ok", json_boolean(t->ok), failed);
	put(object, "sqnr_db", isfinite(t->sqnr_db) ? json_real(t->sqnr_db) : json_null(), failed);
	return object;
}

static json_t *verifier_json(int *failed)
{
	json_t *object = json_object();
	if (!object) {
		*failed = 1;
		return NULL;
	}
	put(object, "name", json_string("libuc"), failed);
	put(object, "version", json_string(UC_VERSION_STRING), failed);
	return object;
}

static json_t *report_json(const uc_report *report, int *failed)
{
	json_t *root = json_object(), *stages = json_array(), *errors = json_array(),
	       *tensors = json_array();
	if (!root || !stages || !errors || !tensors) {
		json_decref(root);
		json_decref(stages);
		json_decref(errors);
		json_decref(tensors);
		*failed = 1;
		return NULL;
	}

	for (int s = 0; s < UCP_STAGE_COUNT; s++)
		append(stages, stage_json(report, (ucp_stage)s, failed), failed);
	for (size_t i = 0; i < report->n_errors; i++)
		append(errors, error_json(&report->errors[i], failed), failed);
	for (size_t i = 0; i < report->n_tensors; i++)
		append(tensors, tensor_json(&report->tensors[i], failed), failed);

	put(root, "verdict", json_string(uc_verdict_name(report->verdict)), failed);
	put(root, "verifier", verifier_json(failed), failed);
	put(root, "isa", json_string(uc_isa_name(report->isa)), failed);
	put(root, "threads", json_integer(report->threads), failed);
	put(root, "manifest_sha256",
	    digest_or_null(report->manifest_sha256, report->has_manifest_sha256), failed);
	put(root, "bytes_hashed", json_integer((json_int_t)report->bytes_hashed), failed);
	put(root, "stages", stages, failed);
	put(root, "errors", errors, failed);
	put(root, "tensors", tensors, failed);
	return root;
}

/* Copies jansson's output into a libuc allocation with a trailing newline. */
static char *with_newline(const char *text)
{
	size_t len = strlen(text);
	char *copy = ucp_malloc(len + 2);
	if (!copy)
		return NULL;
	memcpy(copy, text, len);
	copy[len] = '\n';
	copy[len + 1] = '\0';
	return copy;
}

char *uc_report_to_json(const uc_report *report)
{
	int failed = 0;
	json_t *root = report_json(report, &failed);
	char *text = NULL, *result = NULL;

	if (root && !failed)
		text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(UCP_REAL_DIGITS));
	if (text)
		result = with_newline(text);
	ucp_free(text);
	json_decref(root);
	return result;
}

/* Text form: a growing buffer that remembers whether an allocation failed. */
typedef struct {
	char *data;
	size_t len;
	size_t cap;
	int failed;
} text_buffer;

static void text_add(text_buffer *b, const char *fmt, ...) UCP_PRINTF(2, 3);

static void text_add(text_buffer *b, const char *fmt, ...)
{
	if (b->failed)
		return;

	va_list ap;
	va_start(ap, fmt);
	int needed = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (needed < 0) {
		b->failed = 1;
		return;
	}

	if (b->len + (size_t)needed + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)needed;
		char *grown = ucp_realloc(b->data, cap);
		if (!grown) {
			b->failed = 1;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}

	va_start(ap, fmt);
	vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)needed;
}

static void text_header(text_buffer *b, const uc_report *report)
{
	text_add(b, "verifier: libuc %s, isa %s, %u threads\n", UC_VERSION_STRING,
		 uc_isa_name(report->isa), report->threads);
	if (report->has_manifest_sha256) {
		char hex[UC_SHA256_HEX_CHARS + 1];
		uc_sha256_to_hex(report->manifest_sha256, hex);
		text_add(b, "manifest sha256: %s\n", hex);
	}
	for (int s = 0; s < UCP_STAGE_COUNT; s++)
		text_add(b, "stage %s: %s (%.3f s)\n", stage_names[s], result_names[report->stages[s]],
			 report->stage_seconds[s]);
	if (report->n_tensors)
		text_add(b, "tensors reconstructed: %zu\n", report->n_tensors);
	text_add(b, "bytes hashed: %llu\n", (unsigned long long)report->bytes_hashed);
	for (size_t i = 0; i < report->n_errors; i++) {
		const ucp_report_error *e = &report->errors[i];
		text_add(b, "error: %s: %s %s: %s\n", stage_names[e->stage], e->subject_kind, e->subject,
			 e->message);
	}
}

static const char *plural(size_t n)
{
	return n == 1 ? "" : "s";
}

static void text_verdict(text_buffer *b, const uc_report *report)
{
	size_t n = report->n_errors;
	switch (report->verdict) {
	case UC_VERDICT_OK:
		text_add(b, "STRUCTURE OK\nRECONSTRUCTION OK\n");
		break;
	case UC_VERDICT_STRUCTURE_FAILED:
		text_add(b, "STRUCTURE FAILED: %zu error%s\nRECONSTRUCTION NOT RUN: structure failed\n", n,
			 plural(n));
		break;
	case UC_VERDICT_INTEGRITY_FAILED:
		text_add(b, "STRUCTURE OK\nINTEGRITY FAILED: %zu of %zu shard%s %s from the manifest\n"
			    "RECONSTRUCTION NOT RUN: integrity failed\n",
			 n, report->n_shards, plural(report->n_shards), n == 1 ? "differs" : "differ");
		break;
	case UC_VERDICT_RECONSTRUCTION_FAILED:
		text_add(b, "STRUCTURE OK\nRECONSTRUCTION FAILED: %zu of %zu tensor%s\n", n, report->n_tensors,
			 plural(report->n_tensors));
		break;
	}
}

char *uc_report_to_text(const uc_report *report)
{
	text_buffer b = {0};
	text_header(&b, report);
	text_verdict(&b, report);
	if (b.failed || !b.data) {
		ucp_free(b.data);
		return NULL;
	}
	return b.data;
}
