/* SQLite catalog: opening connections, migrations, write transactions and the change
 * serial. Each thread uses its own connection (reg_db_thread), so no connection is shared
 * between threads. Writes run in BEGIN IMMEDIATE transactions, which take the write lock
 * up front: a reader that later upgrades to a writer is the pattern that makes SQLite
 * return SQLITE_BUSY without calling the busy handler. No transaction is kept open across
 * hashing or network I/O. */
#ifndef REG_DB_H
#define REG_DB_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define REG_DB_BUSY_TIMEOUT_MS 10000
#define REG_DB_JOURNAL_SIZE_LIMIT (64 << 20)

/* One numbered migration embedded from schema/ at build time (see embed-schema.sh). */
typedef struct {
	int number;
	const char *file;
	const char *sql;
} reg_migration;

extern const reg_migration reg_migrations[];
extern const size_t reg_migration_count;

/* Sets the catalog path (copied), opens one connection, applies pending migrations in one
 * transaction and loads the change serial. Returns 0, or -1 after logging the error. */
int reg_db_init(const char *path);

/* Closes every connection still open. Call after all threads using the catalog ended. */
void reg_db_shutdown(void);

/* Returns this thread's connection, opening it on first use; NULL after logging when it
 * cannot be opened. The connection is closed when the thread exits or at reg_db_shutdown. */
sqlite3 *reg_db_thread(void);

/* Opens a connection with WAL, the busy timeout, journal_size_limit and foreign keys.
 * The caller closes it with sqlite3_close. Returns NULL after logging. */
sqlite3 *reg_db_open(const char *path);

/* BEGIN IMMEDIATE, COMMIT and ROLLBACK. Return SQLITE_OK or the SQLite error code, logged. */
int reg_db_begin_write(sqlite3 *db);
int reg_db_commit(sqlite3 *db);
void reg_db_rollback(sqlite3 *db);

/* Appends a change event inside the caller's write transaction. The new serial becomes
 * visible through reg_db_serial after reg_db_commit. `version` and `detail` may be NULL. */
int reg_db_append_event(sqlite3 *db, const char *kind, const char *slug, const char *version,
			const char *detail);

/* Returns the newest committed change serial (0 before the first event). */
uint64_t reg_db_serial(void);

/* Returns the catalog generation, a counter that grows after every commit through
 * reg_db_commit and whenever this thread's connection sees, by PRAGMA data_version, a
 * commit of another connection (another process included). A document built after reading
 * generation G reflects every write acknowledged before that read, so it stays valid for
 * as long as the generation is still G. */
uint64_t reg_db_generation(void);

/* Prepares `sql`, logging a failure. Returns NULL on failure. */
sqlite3_stmt *reg_db_prepare(sqlite3 *db, const char *sql);

/* Current Unix time in seconds. */
int64_t reg_now(void);

#endif
