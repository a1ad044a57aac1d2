#include "config.h"

#include "db.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Open connections, so reg_db_shutdown can close those of threads that have not exited.
 * The thread-specific value of conn_key is the thread's node. */
struct conn_node {
	sqlite3 *db;
	uint64_t pending_serial; /* serial appended in the open transaction, 0 when none */
	sqlite3_stmt *data_version_stmt; /* PRAGMA data_version, prepared on first use */
	int64_t data_version;  /* last value read */
	int data_version_read; /* 0 until the first read, which always counts as a change */
	struct conn_node *next;
};

static char *catalog_path;
static pthread_key_t conn_key;
static pthread_once_t conn_key_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn_node *conns;
static _Atomic uint64_t committed_serial;
static _Atomic uint64_t catalog_generation = 1;

int64_t reg_now(void)
{
	return (int64_t)time(NULL);
}

static int exec_logged(sqlite3 *db, const char *sql)
{
	char *message = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &message);
	if (rc != SQLITE_OK) {
		REG_ERROR("catalog statement failed (%s): %s", sql,
			  message ? message : sqlite3_errstr(rc));
		sqlite3_free(message);
	}
	return rc;
}

sqlite3 *reg_db_open(const char *path)
{
	sqlite3 *db = NULL;
	char pragmas[256];
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;

	int rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		REG_ERROR("cannot open catalog %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, REG_DB_BUSY_TIMEOUT_MS);
	/* synchronous=FULL: a push acknowledged to a client survives a power loss. */
	snprintf(pragmas, sizeof pragmas,
		 "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
		 " PRAGMA journal_size_limit=%d;",
		 REG_DB_JOURNAL_SIZE_LIMIT);
	if (exec_logged(db, pragmas) != SQLITE_OK) {
		sqlite3_close(db);
		return NULL;
	}
	return db;
}

static struct conn_node *find_node(sqlite3 *db)
{
	for (struct conn_node *n = conns; n; n = n->next) {
		if (n->db == db)
			return n;
	}
	return NULL;
}

/* Finalizes the node's statement, closes its connection and frees it. */
static void close_node(struct conn_node *node)
{
	sqlite3_finalize(node->data_version_stmt);
	sqlite3_close(node->db);
	free(node);
}

static void close_thread_conn(void *value)
{
	struct conn_node *node = value;

	pthread_mutex_lock(&conn_lock);
	for (struct conn_node **p = &conns; *p; p = &(*p)->next) {
		if (*p == node) {
			*p = node->next;
			break;
		}
	}
	pthread_mutex_unlock(&conn_lock);
	close_node(node);
}

static void make_conn_key(void)
{
	pthread_key_create(&conn_key, close_thread_conn);
}

/* Reads PRAGMA data_version on the thread's connection. It changes when another
 * connection, in this process or another, committed since the previous read. Returns 1
 * when it changed or cannot be read, 0 when it did not. */
static int data_version_changed(struct conn_node *node)
{
	if (!node->data_version_stmt) {
		node->data_version_stmt = reg_db_prepare(node->db, "PRAGMA data_version");
		if (!node->data_version_stmt)
			return 1;
	}
	int rc = sqlite3_step(node->data_version_stmt);
	int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(node->data_version_stmt, 0) : 0;
	sqlite3_reset(node->data_version_stmt);
	if (rc != SQLITE_ROW) {
		REG_ERROR("cannot read PRAGMA data_version of the catalog: %s", sqlite3_errstr(rc));
		return 1;
	}
	/* The first read counts as a change, because this connection cannot tell what others
	 * committed before it opened. */
	int changed = !node->data_version_read || version != node->data_version;
	node->data_version = version;
	node->data_version_read = 1;
	return changed;
}

/* Returns this thread's node, opening its connection on first use; NULL after logging. */
static struct conn_node *thread_node(void)
{
	pthread_once(&conn_key_once, make_conn_key);
	struct conn_node *node = pthread_getspecific(conn_key);
	if (node)
		return node;

	sqlite3 *db = reg_db_open(catalog_path);
	if (!db)
		return NULL;
	node = calloc(1, sizeof *node);
	if (!node) {
		REG_ERROR("out of memory opening a catalog connection");
		sqlite3_close(db);
		return NULL;
	}
	node->db = db;
	pthread_mutex_lock(&conn_lock);
	node->next = conns;
	conns = node;
	pthread_mutex_unlock(&conn_lock);
	pthread_setspecific(conn_key, node);
	return node;
}

sqlite3 *reg_db_thread(void)
{
	struct conn_node *node = thread_node();
	return node ? node->db : NULL;
}

sqlite3_stmt *reg_db_prepare(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		REG_ERROR("cannot prepare catalog statement (%s): %s", sql, sqlite3_errmsg(db));
		return NULL;
	}
	return stmt;
}

int reg_db_begin_write(sqlite3 *db)
{
	return exec_logged(db, "BEGIN IMMEDIATE");
}

int reg_db_commit(sqlite3 *db)
{
	int rc = exec_logged(db, "COMMIT");
	uint64_t serial = 0;

	pthread_mutex_lock(&conn_lock);
	struct conn_node *node = find_node(db);
	if (node) {
		serial = node->pending_serial;
		node->pending_serial = 0;
	}
	pthread_mutex_unlock(&conn_lock);

	if (rc != SQLITE_OK) {
		reg_db_rollback(db);
		return rc;
	}
	/* Publish the new serial; concurrent commits may finish out of order. */
	uint64_t seen = atomic_load(&committed_serial);
	while (serial > seen && !atomic_compare_exchange_weak(&committed_serial, &seen, serial))
		;
	/* After the serial, so a reader that sees the new generation also sees the serial. */
	atomic_fetch_add(&catalog_generation, 1);
	return SQLITE_OK;
}

void reg_db_rollback(sqlite3 *db)
{
	pthread_mutex_lock(&conn_lock);
	struct conn_node *node = find_node(db);
	if (node)
		node->pending_serial = 0;
	pthread_mutex_unlock(&conn_lock);
	if (!sqlite3_get_autocommit(db))
		exec_logged(db, "ROLLBACK");
}

int reg_db_append_event(sqlite3 *db, const char *kind, const char *slug, const char *version,
			const char *detail)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO events (kind, slug, version, detail, created_at) VALUES (?, ?, ?, ?, ?)");
	if (!stmt)
		return SQLITE_ERROR;
	sqlite3_bind_text(stmt, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, slug, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, version, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 4, detail, -1, SQLITE_STATIC);
	sqlite3_bind_int64(stmt, 5, reg_now());
	int rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE) {
		REG_ERROR("cannot append %s event for %s: %s", kind, slug, sqlite3_errmsg(db));
		return rc;
	}

	uint64_t serial = (uint64_t)sqlite3_last_insert_rowid(db);
	pthread_mutex_lock(&conn_lock);
	struct conn_node *node = find_node(db);
	if (node)
		node->pending_serial = serial;
	pthread_mutex_unlock(&conn_lock);
	return SQLITE_OK;
}

uint64_t reg_db_serial(void)
{
	return atomic_load(&committed_serial);
}

uint64_t reg_db_generation(void)
{
	struct conn_node *node = thread_node();
	if (!node || data_version_changed(node))
		atomic_fetch_add(&catalog_generation, 1);
	return atomic_load(&catalog_generation);
}

/* Applies every embedded migration newer than PRAGMA user_version in one transaction. */
static int migrate(sqlite3 *db)
{
	sqlite3_stmt *stmt = reg_db_prepare(db, "PRAGMA user_version");
	if (!stmt)
		return -1;
	int current = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
	sqlite3_finalize(stmt);
	if (current < 0)
		return -1;

	int newest = reg_migration_count ? reg_migrations[reg_migration_count - 1].number : 0;
	if (current > newest) {
		REG_ERROR("catalog schema version %d is newer than this ucregd knows (%d); run a newer ucregd",
			  current, newest);
		return -1;
	}
	if (current == newest)
		return 0;

	if (reg_db_begin_write(db) != SQLITE_OK)
		return -1;
	for (size_t i = 0; i < reg_migration_count; i++) {
		const reg_migration *m = &reg_migrations[i];
		if (m->number <= current)
			continue;
		if (exec_logged(db, m->sql) != SQLITE_OK) {
			REG_ERROR("migration %s failed; the catalog is left at version %d", m->file, current);
			reg_db_rollback(db);
			return -1;
		}
		REG_INFO("applied migration %s", m->file);
	}
	char sql[64];
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", newest);
	if (exec_logged(db, sql) != SQLITE_OK || reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		return -1;
	}
	return 0;
}

int reg_db_init(const char *path)
{
	catalog_path = strdup(path);
	if (!catalog_path) {
		REG_ERROR("out of memory");
		return -1;
	}
	sqlite3 *db = reg_db_thread();
	if (!db || migrate(db) != 0)
		return -1;

	sqlite3_stmt *stmt = reg_db_prepare(db, "SELECT coalesce(max(serial), 0) FROM events");
	if (!stmt)
		return -1;
	if (sqlite3_step(stmt) == SQLITE_ROW)
		atomic_store(&committed_serial, (uint64_t)sqlite3_column_int64(stmt, 0));
	sqlite3_finalize(stmt);
	return 0;
}

void reg_db_shutdown(void)
{
	pthread_mutex_lock(&conn_lock);
	struct conn_node *n = conns;
	conns = NULL;
	pthread_mutex_unlock(&conn_lock);

	while (n) {
		struct conn_node *next = n->next;
		close_node(n);
		n = next;
	}
	if (catalog_path)
		pthread_setspecific(conn_key, NULL);
	free(catalog_path);
	catalog_path = NULL;
}
