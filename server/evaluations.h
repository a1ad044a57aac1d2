/* Evaluation records shared by POST .../evaluations and the mirror follower: the record
 * check and the catalog insert. */
#ifndef REG_EVALUATIONS_H
#define REG_EVALUATIONS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

/* Checks an evaluation record (the format of `uc eval`). On success it stores the
 * protocol key, a new string the caller frees, in `*protocol_key` and returns 0. It
 * returns -1 with the reason in `message` when the record is invalid, and -2 when memory
 * ran out. */
int reg_evaluation_check(json_t *record, char **protocol_key, char *message,
			 size_t message_size);

/* Returns 1 unless the record names a pack.manifest_sha256 other than `digest`. */
int reg_evaluation_pack_matches(json_t *record, const char *digest);

/* The catalog facts of an evaluation row besides the record itself. */
typedef struct {
	int64_t version_id;
	int64_t created_at;   /* Unix seconds */
	int64_t created_by;   /* token id */
	int64_t upstream_id;  /* id on the upstream registry; 0 for a local evaluation */
} reg_evaluation_row;

/* Inserts a checked record inside the caller's write transaction and stores the new id
 * in `*id`. The caller appends the change event. Returns 0, or -1 with the error left
 * on `db`. */
int reg_evaluation_insert(sqlite3 *db, const reg_evaluation_row *row, json_t *record,
			  const char *protocol_key, int64_t *id);

#endif
