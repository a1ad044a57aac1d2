#include "config.h"

#include "auth.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "db.h"
#include "log.h"
#include "uc_hash.h"

#define TOKEN_PREFIX "ucr_"
#define TOKEN_RANDOM_BYTES 32

int reg_auth_check(reg_request *req, reg_auth needed)
{
	const char *header = reg_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!header || strncasecmp(header, "Bearer ", 7) != 0 || header[7] == '\0') {
		reg_respond_problem(req, MHD_HTTP_UNAUTHORIZED, "token_missing", "Authentication required",
				    "this request needs an 'Authorization: Bearer TOKEN' header; create a"
				    " token with 'ucregd token create'");
		return -1;
	}
	const char *secret = header + 7;
	uint8_t digest[UC_SHA256_BYTES];
	uc_sha256_buffer(secret, strlen(secret), digest);

	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db,
		"SELECT id, scope FROM tokens WHERE secret_sha256 = ? AND revoked_at IS NULL") : NULL;
	if (!stmt) {
		reg_respond_problem(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "catalog_error",
				    "Catalog error", "the catalog could not be read; see the server log");
		return -1;
	}
	sqlite3_bind_blob(stmt, 1, digest, sizeof digest, SQLITE_STATIC);
	int found = sqlite3_step(stmt) == SQLITE_ROW;
	int admin = 0;
	if (found) {
		req->token_id = sqlite3_column_int64(stmt, 0);
		admin = strcmp((const char *)sqlite3_column_text(stmt, 1), "admin") == 0;
	}
	sqlite3_finalize(stmt);

	if (!found) {
		reg_respond_problem(req, MHD_HTTP_UNAUTHORIZED, "token_invalid", "Invalid token",
				    "the bearer token is unknown or revoked; ask the operator for a token");
		return -1;
	}
	req->token_admin = admin;
	if (needed == REG_AUTH_ADMIN && !admin) {
		reg_respond_problem(req, MHD_HTTP_FORBIDDEN, "scope_insufficient", "Insufficient scope",
				    "token %" PRId64 " has scope 'push'; this request needs an 'admin' token",
				    req->token_id);
		return -1;
	}
	REG_LOG(REG_LOG_DEBUG, "req", req->id, "authenticated as token %" PRId64, req->token_id);
	return 0;
}

static int token_create(sqlite3 *db, int argc, char **argv)
{
	static const struct option options[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "scope", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *name = NULL, *scope = NULL;
	int code;

	optind = 1;
	while ((code = getopt_long(argc, argv, "", options, NULL)) != -1) {
		if (code == 'n')
			name = optarg;
		else if (code == 's')
			scope = optarg;
		else
			return 2;
	}
	if (!name || name[0] == '\0' || strlen(name) > 200) {
		fprintf(stderr, "ucregd: token create needs --name NAME (1 to 200 characters)\n");
		return 2;
	}
	if (!scope || (strcmp(scope, "push") != 0 && strcmp(scope, "admin") != 0)) {
		fprintf(stderr, "ucregd: invalid --scope '%s'; expected push or admin\n",
			scope ? scope : "");
		return 2;
	}

	uint8_t random[TOKEN_RANDOM_BYTES];
	if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random) {
		fprintf(stderr, "ucregd: cannot read random bytes for the token\n");
		return 1;
	}
	char token[sizeof TOKEN_PREFIX + 2 * TOKEN_RANDOM_BYTES];
	memcpy(token, TOKEN_PREFIX, sizeof TOKEN_PREFIX - 1);
	for (size_t i = 0; i < sizeof random; i++)
		snprintf(token + sizeof TOKEN_PREFIX - 1 + 2 * i, 3, "%02x", random[i]);
	uint8_t digest[UC_SHA256_BYTES];
	uc_sha256_buffer(token, strlen(token), digest);

	if (reg_db_begin_write(db) != SQLITE_OK)
		return 1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"INSERT INTO tokens (name, scope, secret_sha256, created_at) VALUES (?, ?, ?, ?)");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(stmt, 2, scope, -1, SQLITE_STATIC);
		sqlite3_bind_blob(stmt, 3, digest, sizeof digest, SQLITE_STATIC);
		sqlite3_bind_int64(stmt, 4, reg_now());
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
		fprintf(stderr, "ucregd: cannot store the token: %s\n", sqlite3_errmsg(db));
		reg_db_rollback(db);
		return 1;
	}
	printf("created token %lld '%s' with scope %s; it is shown only once:\n",
	       (long long)sqlite3_last_insert_rowid(db), name, scope);
	printf("%s\n", token);
	explicit_bzero(token, sizeof token);
	return 0;
}

static int token_list(sqlite3 *db)
{
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"SELECT id, name, scope, created_at, revoked_at FROM tokens ORDER BY id");
	if (!stmt)
		return 1;
	printf("%-6s %-6s %-20s %-20s %s\n", "ID", "SCOPE", "CREATED", "REVOKED", "NAME");
	while (sqlite3_step(stmt) == SQLITE_ROW) {
		char created[32], revoked[32] = "-";
		time_t t = (time_t)sqlite3_column_int64(stmt, 3);
		struct tm tm;
		strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		if (sqlite3_column_type(stmt, 4) != SQLITE_NULL) {
			t = (time_t)sqlite3_column_int64(stmt, 4);
			strftime(revoked, sizeof revoked, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
		}
		printf("%-6lld %-6s %-20s %-20s %s\n", (long long)sqlite3_column_int64(stmt, 0),
		       (const char *)sqlite3_column_text(stmt, 2), created, revoked,
		       (const char *)sqlite3_column_text(stmt, 1));
	}
	sqlite3_finalize(stmt);
	return 0;
}

static int token_revoke(sqlite3 *db, const char *id_text)
{
	char *end;
	long long id = strtoll(id_text, &end, 10);
	if (*id_text == '\0' || *end != '\0' || id <= 0) {
		fprintf(stderr, "ucregd: invalid token id '%s'; see 'ucregd token list'\n", id_text);
		return 2;
	}
	if (reg_db_begin_write(db) != SQLITE_OK)
		return 1;
	sqlite3_stmt *stmt = reg_db_prepare(db,
		"UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
	int rc = SQLITE_ERROR;
	if (stmt) {
		sqlite3_bind_int64(stmt, 1, reg_now());
		sqlite3_bind_int64(stmt, 2, id);
		rc = sqlite3_step(stmt);
		sqlite3_finalize(stmt);
	}
	int changed = sqlite3_changes(db);
	if (rc != SQLITE_DONE || reg_db_commit(db) != SQLITE_OK) {
		reg_db_rollback(db);
		return 1;
	}
	if (changed == 0) {
		fprintf(stderr, "ucregd: no active token with id %lld; see 'ucregd token list'\n", id);
		return 1;
	}
	printf("revoked token %lld\n", id);
	return 0;
}

int reg_token_command(int argc, char **argv)
{
	sqlite3 *db = reg_db_thread();
	if (!db)
		return 1;
	if (argc >= 2 && strcmp(argv[1], "create") == 0)
		return token_create(db, argc - 1, argv + 1);
	if (argc == 2 && strcmp(argv[1], "list") == 0)
		return token_list(db);
	if (argc == 3 && strcmp(argv[1], "revoke") == 0)
		return token_revoke(db, argv[2]);
	fprintf(stderr, "ucregd: unknown token command; expected 'token create --name N --scope"
			" push|admin', 'token list' or 'token revoke ID'\n");
	return 2;
}
