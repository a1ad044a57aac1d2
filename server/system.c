/* Operational endpoints: /healthz for load balancers and /metrics for Prometheus. */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "db.h"
#include "log.h"
#include "routes.h"
#include "server.h"

enum MHD_Result reg_health_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, "SELECT 1") : NULL;
	int ok = stmt && sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_finalize(stmt);
	if (!ok)
		return reg_respond_problem(req, MHD_HTTP_SERVICE_UNAVAILABLE, "catalog_unavailable",
					   "Catalog unavailable", "the catalog cannot be queried; see the"
					   " server log");
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:s, s:I}", "status", "ok", "serial",
							    (json_int_t)reg_db_serial()));
}

/* Appends formatted text to a growing buffer; sets *failed when out of memory. */
struct text {
	char *data;
	size_t len, cap;
	int failed;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(struct text *t, const char *fmt, ...)
{
	va_list ap;
	for (int attempt = 0; attempt < 2 && !t->failed; attempt++) {
		va_start(ap, fmt);
		int n = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0, fmt,
				  ap);
		va_end(ap);
		if (n < 0) {
			t->failed = 1;
			return;
		}
		if (t->data && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = (t->cap + (size_t)n + 1) * 2;
		char *grown = realloc(t->data, cap);
		if (!grown) {
			t->failed = 1;
			return;
		}
		t->data = grown;
		t->cap = cap;
	}
}

static void add_job_counts(struct text *t)
{
	static const char *const states[] = { "queued", "running", "done", "failed" };
	sqlite3 *db = reg_db_thread();

	text_add(t, "# HELP ucreg_jobs Verify jobs by state.\n# TYPE ucreg_jobs gauge\n");
	for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
		sqlite3_stmt *stmt = db ? reg_db_prepare(db, "SELECT count(*) FROM jobs WHERE state = ?")
					: NULL;
		long long count = 0;
		if (stmt) {
			sqlite3_bind_text(stmt, 1, states[i], -1, SQLITE_STATIC);
			if (sqlite3_step(stmt) == SQLITE_ROW)
				count = sqlite3_column_int64(stmt, 0);
			sqlite3_finalize(stmt);
		}
		text_add(t, "ucreg_jobs{state=\"%s\"} %lld\n", states[i], count);
	}
}

enum MHD_Result reg_metrics_get(reg_request *req)
{
	struct text t = { 0 };

	text_add(&t, "# HELP ucreg_http_requests_total HTTP requests answered, by status class.\n"
		     "# TYPE ucreg_http_requests_total counter\n");
	for (unsigned class = 1; class < 6; class++) {
		text_add(&t, "ucreg_http_requests_total{code=\"%uxx\"} %" PRIu64 "\n", class,
			 atomic_load(&reg_state.requests_by_class[class]));
	}
	text_add(&t, "# HELP ucreg_http_received_bytes_total Request body bytes received.\n"
		     "# TYPE ucreg_http_received_bytes_total counter\n"
		     "ucreg_http_received_bytes_total %" PRIu64 "\n",
		 atomic_load(&reg_state.bytes_received));
	text_add(&t, "# HELP ucreg_http_sent_bytes_total Blob bytes sent.\n"
		     "# TYPE ucreg_http_sent_bytes_total counter\n"
		     "ucreg_http_sent_bytes_total %" PRIu64 "\n",
		 atomic_load(&reg_state.bytes_sent));
	add_job_counts(&t);
	text_add(&t, "# HELP ucreg_verify_seconds Time spent verifying packs.\n"
		     "# TYPE ucreg_verify_seconds summary\n"
		     "ucreg_verify_seconds_sum %.6f\nucreg_verify_seconds_count %" PRIu64 "\n",
		 (double)atomic_load(&reg_state.verify_microseconds) / 1e6,
		 atomic_load(&reg_state.verify_runs));
	reg_cache_stats cache;
	reg_cache_get_stats(&cache);
	text_add(&t, "# HELP ucreg_cache_hits_total Catalog documents served from the response cache.\n"
		     "# TYPE ucreg_cache_hits_total counter\nucreg_cache_hits_total %" PRIu64 "\n"
		     "# HELP ucreg_cache_misses_total Catalog documents built from the catalog.\n"
		     "# TYPE ucreg_cache_misses_total counter\nucreg_cache_misses_total %" PRIu64 "\n"
		     "# HELP ucreg_cache_entries Documents held by the response cache.\n"
		     "# TYPE ucreg_cache_entries gauge\nucreg_cache_entries %" PRIu64 "\n"
		     "# HELP ucreg_cache_bytes Memory held by the response cache.\n"
		     "# TYPE ucreg_cache_bytes gauge\nucreg_cache_bytes %" PRIu64 "\n",
		 cache.hits, cache.misses, cache.entries, cache.bytes);
	text_add(&t, "# HELP ucreg_change_serial Newest change serial.\n"
		     "# TYPE ucreg_change_serial gauge\nucreg_change_serial %" PRIu64 "\n",
		 reg_db_serial());
	if (t.failed) {
		free(t.data);
		return MHD_NO;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(t.len, t.data, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(t.data);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; version=0.0.4");
	return reg_respond(req, MHD_HTTP_OK, r);
}
