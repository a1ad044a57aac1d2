/* Catalog concurrency: a verify worker committing while an upload handler reads, waits
 * 50 ms and then writes. With BEGIN IMMEDIATE both succeed; the deferred transaction that
 * BEGIN IMMEDIATE replaces fails with SQLITE_BUSY, which shows the case is real. */
#include "config.h"

#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "db.h"
#include "testutil.h"

#define WORKER_COMMITS 20

static char *scratch;
static char catalog[4096];

static void setup(void)
{
	scratch = tu_make_temp_dir();
	snprintf(catalog, sizeof catalog, "%s/catalog.sqlite3", scratch);
	ck_assert_int_eq(reg_db_init(catalog), 0);

	sqlite3 *db = reg_db_thread();
	ck_assert_int_eq(sqlite3_exec(db,
		"INSERT INTO tokens (name, scope, secret_sha256, created_at) VALUES ('t', 'push',"
		" zeroblob(32), 0);"
		"INSERT INTO packs (slug, owner_token_id, created_at) VALUES ('p', 1, 0);"
		"INSERT INTO versions (pack_id, version, manifest, manifest_digest, created_at) VALUES"
		" (1, '1', x'7b7d', printf('%064d', 0), 0);"
		"INSERT INTO jobs (version_id, created_at, updated_at) VALUES (1, 0, 0);"
		"INSERT INTO uploads (id, token_id, created_at, updated_at) VALUES ('u', 1, 0, 0);",
		NULL, NULL, NULL), SQLITE_OK);
}

static void teardown(void)
{
	reg_db_shutdown();
	tu_remove_tree(scratch);
	free(scratch);
}

/* The verify worker: many short write transactions on the job row. */
static void *worker_commits(void *arg)
{
	int *failures = arg;
	sqlite3 *db = reg_db_thread();
	for (int i = 0; i < WORKER_COMMITS; i++) {
		if (reg_db_begin_write(db) != SQLITE_OK ||
		    sqlite3_exec(db, "UPDATE jobs SET updated_at = updated_at + 1", NULL, NULL, NULL) !=
			    SQLITE_OK ||
		    reg_db_commit(db) != SQLITE_OK)
			(*failures)++;
		usleep(5000);
	}
	return NULL;
}

/* The upload handler: SELECT, wait 50 ms, UPDATE, in one transaction opened by `begin`.
 * Returns the SQLite code of the first step that failed, or SQLITE_OK. */
static int handler_read_wait_write(sqlite3 *db, const char *begin)
{
	int rc = sqlite3_exec(db, begin, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_exec(db, "SELECT received FROM uploads WHERE id = 'u'", NULL, NULL, NULL);
	if (rc == SQLITE_OK) {
		usleep(50 * 1000);
		rc = sqlite3_exec(db, "UPDATE uploads SET received = received + 1 WHERE id = 'u'", NULL,
				  NULL, NULL);
	}
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

START_TEST(immediate_write_never_locked)
{
	int worker_failures = 0;
	pthread_t worker;
	sqlite3 *db = reg_db_open(catalog);
	ck_assert_ptr_nonnull(db);

	ck_assert_int_eq(pthread_create(&worker, NULL, worker_commits, &worker_failures), 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(handler_read_wait_write(db, "BEGIN IMMEDIATE"), SQLITE_OK);
	pthread_join(worker, NULL);
	ck_assert_int_eq(worker_failures, 0);
	sqlite3_close(db);
}
END_TEST

/* Holds the write lock long enough for the handler's deferred read to start first. */
static void *commit_during_wait(void *arg)
{
	(void)arg;
	usleep(20 * 1000);
	sqlite3 *db = reg_db_thread();
	if (reg_db_begin_write(db) == SQLITE_OK) {
		sqlite3_exec(db, "UPDATE jobs SET updated_at = updated_at + 1", NULL, NULL, NULL);
		reg_db_commit(db);
	}
	return NULL;
}

START_TEST(deferred_write_gets_busy)
{
	pthread_t worker;
	sqlite3 *db = reg_db_open(catalog);
	ck_assert_ptr_nonnull(db);

	ck_assert_int_eq(pthread_create(&worker, NULL, commit_during_wait, NULL), 0);
	int rc = handler_read_wait_write(db, "BEGIN");
	pthread_join(worker, NULL);
	/* The read snapshot is older than the worker's commit, so the upgrade cannot wait. */
	ck_assert_int_eq(rc & 0xff, SQLITE_BUSY);
	sqlite3_close(db);
}
END_TEST

START_TEST(migrations_set_user_version)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = reg_db_prepare(db, "PRAGMA user_version");
	ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
	ck_assert_int_eq(sqlite3_column_int(stmt, 0), reg_migrations[reg_migration_count - 1].number);
	sqlite3_finalize(stmt);
}
END_TEST

int main(void)
{
	Suite *suite = suite_create("catalog");
	TCase *tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, immediate_write_never_locked);
	tcase_add_test(tc, deferred_write_gets_busy);
	tcase_add_test(tc, migrations_set_user_version);
	suite_add_tcase(suite, tc);

	SRunner *runner = srunner_create(suite);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
