/* The follower thread of a mirror, its status route and the 405 for writes. Each round
 * (mirror_round.c) reconciles every version in the first round after start, and
 * afterwards only the versions the change feed names since the last accepted serial. */
#include "config.h"

#include "mirror.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "blobs.h"
#include "db.h"
#include "log.h"
#include "mirror_catalog.h"
#include "mirror_fetch.h"
#include "mirror_round.h"
#include "server.h"
#include "snapshot_verify.h"

static pthread_t thread;
static int thread_started;
static atomic_int stopping;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static reg_mirror_context context;

static void sleep_interval(unsigned seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += seconds;
	pthread_mutex_lock(&wake_lock);
	while (!atomic_load(&stopping)) {
		if (pthread_cond_timedwait(&wake, &wake_lock, &until) != 0)
			break;
	}
	pthread_mutex_unlock(&wake_lock);
}

static void *follower_main(void *arg)
{
	(void)arg;
	context.db = reg_db_thread();
	if (!context.db)
		return NULL;
	context.fetch = reg_fetch_new(reg_state.settings.mirror_of, REG_MIRROR_TRANSFERS, &stopping);
	if (!context.fetch)
		return NULL;
	context.full_round = 1; /* reconcile everything once per start */
	while (!atomic_load(&stopping)) {
		reg_mirror_run_round(&context);
		sleep_interval(reg_state.settings.mirror_interval);
	}
	reg_fetch_free(context.fetch);
	context.fetch = NULL;
	return NULL;
}

int reg_mirror_start(void)
{
	char error[512];
	const reg_settings *s = &reg_state.settings;

	snprintf(context.partial_dir, sizeof context.partial_dir, "%s/mirror-partial", s->data_dir);
	if (mkdir(context.partial_dir, 0750) != 0 && errno != EEXIST) {
		REG_ERROR("cannot create %s: %s", context.partial_dir, strerror(errno));
		return -1;
	}
	context.key = reg_snapshot_read_public_key(s->upstream_key, error, sizeof error);
	if (!context.key) {
		REG_ERROR("%s", error);
		return -1;
	}
	/* Here, before the follower thread exists, because curl_global_init is not thread-safe. */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		REG_ERROR("cannot initialise libcurl");
		goto fail;
	}
	sqlite3 *db = reg_db_thread();
	if (!db || reg_mirror_catalog_init(db, s->mirror_of, &context.owner_token) != 0)
		goto fail;
	atomic_store(&stopping, 0);
	if (pthread_create(&thread, NULL, follower_main, NULL) != 0) {
		REG_ERROR("cannot start the mirror follower thread");
		goto fail;
	}
	thread_started = 1;
	REG_INFO("mirroring %s every %u s (upstream key %s)", s->mirror_of, s->mirror_interval,
		 s->upstream_key);
	return 0;
fail:
	EVP_PKEY_free(context.key);
	context.key = NULL;
	return -1;
}

void reg_mirror_stop(void)
{
	if (!thread_started)
		return;
	pthread_mutex_lock(&wake_lock);
	atomic_store(&stopping, 1);
	pthread_cond_broadcast(&wake);
	pthread_mutex_unlock(&wake_lock);
	pthread_join(thread, NULL);
	thread_started = 0;
	EVP_PKEY_free(context.key);
	context.key = NULL;
	curl_global_cleanup();
}

static json_t *recent_failures(sqlite3 *db, json_int_t *total)
{
	json_t *list = json_array();
	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT count(*) FROM mirror_failures");
	*total = stmt && sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
	sqlite3_finalize(stmt);
	stmt = reg_db_prepare(db, "SELECT kind, slug, version, message, created_at FROM mirror_failures"
				  " ORDER BY id DESC LIMIT 20");
	while (stmt && sqlite3_step(stmt) == SQLITE_ROW) {
		json_t *entry = json_pack("{s:s, s:s, s:I}", "kind", sqlite3_column_text(stmt, 0),
					  "message", sqlite3_column_text(stmt, 3), "at",
					  (json_int_t)sqlite3_column_int64(stmt, 4));
		const unsigned char *slug = sqlite3_column_text(stmt, 1);
		const unsigned char *version = sqlite3_column_text(stmt, 2);
		json_object_set_new(entry, "slug", slug ? json_string((const char *)slug) : json_null());
		json_object_set_new(entry, "version",
				    version ? json_string((const char *)version) : json_null());
		json_array_append_new(list, entry);
	}
	sqlite3_finalize(stmt);
	return list;
}

static json_t *time_or_null(int64_t t)
{
	return t ? json_integer(t) : json_null();
}

enum MHD_Result reg_mirror_status_get(reg_request *req)
{
	reg_mirror_state state = { 0 };
	json_int_t failure_count = 0;

	if (!reg_state.settings.mirror_of)
		return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "not_a_mirror", "Not a mirror",
					   "this registry is not a mirror; start ucregd with"
					   " --mirror-of URL to follow an upstream");
	sqlite3 *db = reg_db_thread();
	if (!db || reg_mirror_state_load(db, &state) != 0)
		return reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "catalog_error",
					   "Catalog error", "cannot read the mirror state; see the"
					   " server log for request %" PRIu64, req->id);
	json_t *failures = recent_failures(db, &failure_count);
	int64_t lag_events = state.upstream_serial - state.accepted_serial;
	json_t *body = json_pack("{s:s, s:I, s:I, s:o, s:o, s:o, s:I, s:b, s:I, s:o}",
		"upstream", reg_state.settings.mirror_of,
		"accepted_serial", (json_int_t)state.accepted_serial,
		"upstream_serial", (json_int_t)state.upstream_serial,
		"last_sync_at", time_or_null(state.last_sync_at),
		"last_attempt_at", time_or_null(state.last_attempt_at),
		"lag_seconds", state.accepted_generated_at
			? json_integer(reg_now() - state.accepted_generated_at) : json_null(),
		"lag_events", (json_int_t)(lag_events > 0 ? lag_events : 0),
		"full_sync_done", state.full_sync_done,
		"failure_count", failure_count,
		"failures", failures);
	return reg_respond_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result reg_mirror_refuse_write(reg_request *req)
{
	char detail[768];

	snprintf(detail, sizeof detail, "this registry is a read-only mirror of %s; send %s"
		 " requests to the upstream", reg_state.settings.mirror_of, req->method);
	REG_LOG(REG_LOG_DEBUG, "req", req->id, "405 read_only_mirror: %s", detail);
	json_t *body = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type",
				 "urn:uc-registry:problem:read_only_mirror", "title", "Read-only mirror",
				 "status", MHD_HTTP_METHOD_NOT_ALLOWED, "detail", detail, "code",
				 "read_only_mirror", "upstream", reg_state.settings.mirror_of);
	char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(body);
	struct MHD_Response *response = text ? MHD_create_response_from_buffer(
		strlen(text), text, MHD_RESPMEM_MUST_FREE) : NULL;
	if (!response) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
	MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	return reg_respond(req, MHD_HTTP_METHOD_NOT_ALLOWED, response);
}
