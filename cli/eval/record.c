/* The evaluation record: the JSON document the registry stores and the readable summary. */
#include "config.h"

#include "eval.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define RECORD_REAL_DIGITS 10

/* Returns the last component of `path` without trailing slashes ("packs/x/" gives "x"). */
static json_t *name_value(const char *path)
{
	size_t end = strlen(path);
	while (end > 1 && path[end - 1] == '/')
		end--;
	size_t start = end;
	while (start > 0 && path[start - 1] != '/')
		start--;
	return json_stringn(path + start, end - start);
}

static json_t *digest_value(const uint8_t digest[UC_SHA256_BYTES])
{
	char hex[UC_SHA256_HEX_CHARS + 1];
	uc_sha256_to_hex(digest, hex);
	return json_string(hex);
}

/* A finite real, or null: NaN and infinity are not JSON. */
static json_t *real_value(double value)
{
	return isfinite(value) ? json_real(value) : json_null();
}

static json_t *windowing_value(const eval_record *record)
{
	if (record->window == 0)
		return json_pack("{s:s}", "mode", "document");
	return json_pack("{s:s,s:I,s:I}", "mode", "sliding", "window", (json_int_t)record->window,
			 "stride", (json_int_t)record->stride);
}

static json_t *protocol_value(const eval_record *record)
{
	json_t *tokenizer = record->has_tokenizer ? name_value(record->tokenizer.name)
						  : json_string("byte-level");
	json_t *tokenizer_digest = record->has_tokenizer ? digest_value(record->tokenizer.sha256)
							 : json_null();
	json_t *seq_len = record->seq_len ? json_integer(record->seq_len) : json_null();
	return json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:I,s:I}",
			 "corpus", name_value(record->corpus.name),
			 "corpus_sha256", digest_value(record->corpus.sha256),
			 "tokenizer", tokenizer,
			 "tokenizer_sha256", tokenizer_digest,
			 "seq_len", seq_len,
			 "windowing", windowing_value(record),
			 "documents", (json_int_t)record->baseline.documents,
			 "tokens", (json_int_t)record->baseline.scored);
}

static void format_time(int64_t seconds, char out[32])
{
	time_t t = (time_t)seconds;
	struct tm utc;
	if (!gmtime_r(&t, &utc) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &utc) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00Z");
}

static json_t *record_value(const eval_record *record)
{
	double baseline = eval_score_ppl(&record->baseline);
	double compressed = record->has_pack ? eval_score_ppl(&record->compressed) : NAN;
	char measured_at[32];
	format_time(record->measured_at, measured_at);

	json_t *pack = json_null();
	if (record->has_pack)
		pack = json_pack("{s:o,s:o,s:s}", "name", name_value(record->pack_manifest.name),
				 "manifest_sha256", digest_value(record->pack_manifest.sha256),
				 "dtype", record->pack_dtype ? record->pack_dtype : "");
	return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:s}",
			 "metric", "ppl",
			 "comparator", eval_arch_comparator(record->arch),
			 "architecture", eval_arch_name(record->arch),
			 "source", json_pack("{s:o,s:o}", "name", name_value(record->source.name),
					     "sha256", digest_value(record->source.sha256)),
			 "pack", pack,
			 "protocol", protocol_value(record),
			 "baseline", real_value(baseline),
			 "compressed", real_value(compressed),
			 "ratio", real_value(compressed / baseline),
			 "baseline_mean_nll", real_value(record->baseline.nll_sum /
							 (double)record->baseline.scored),
			 "compressed_mean_nll",
			 real_value(record->has_pack ? record->compressed.nll_sum /
							       (double)record->compressed.scored
						     : NAN),
			 "harness", EVAL_HARNESS,
			 "measured_at", measured_at);
}

char *eval_record_to_json(const eval_record *record)
{
	json_t *value = record_value(record);
	if (!value)
		return NULL;
	char *text = json_dumps(value, JSON_INDENT(2) | JSON_REAL_PRECISION(RECORD_REAL_DIGITS));
	json_decref(value);
	return text;
}

static void print_score(FILE *out, const char *label, const eval_score *score, unsigned threads)
{
	double rate = score->seconds > 0 ? (double)score->fed / score->seconds : 0.0;
	fprintf(out, "%-11s PPL %.4f (mean NLL %.6f nats over %llu tokens), %.0f tokens/s on %u "
		"thread%s\n", label, eval_score_ppl(score), score->nll_sum / (double)score->scored,
		(unsigned long long)score->scored, rate, threads, threads == 1 ? "" : "s");
}

char *eval_record_to_text(const eval_record *record)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		return NULL;
	fprintf(out, "%-11s %s (%s, comparator %s)\n", "model", record->source.name,
		eval_arch_name(record->arch), eval_arch_comparator(record->arch));
	if (record->has_pack)
		fprintf(out, "%-11s %s (reconstructed as %s)\n", "pack", record->pack_manifest.name,
			record->pack_dtype ? record->pack_dtype : "?");
	fprintf(out, "%-11s %s: %llu documents\n", "corpus", record->corpus.name,
		(unsigned long long)record->baseline.documents);
	fprintf(out, "%-11s %s\n", "tokenizer",
		record->has_tokenizer ? record->tokenizer.name : "byte-level");
	if (record->window)
		fprintf(out, "%-11s sliding windows of %u tokens, stride %u\n", "windowing",
			record->window, record->stride);
	else if (record->seq_len)
		fprintf(out, "%-11s whole documents, truncated to %u tokens\n", "windowing",
			record->seq_len);
	else
		fprintf(out, "%-11s whole documents\n", "windowing");
	print_score(out, "baseline", &record->baseline, record->threads);
	if (record->has_pack) {
		print_score(out, "compressed", &record->compressed, record->threads);
		fprintf(out, "%-11s %.6f\n", "ratio",
			eval_score_ppl(&record->compressed) / eval_score_ppl(&record->baseline));
	}
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
