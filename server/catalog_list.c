/* GET /api/packs: filters (family, comparator, text), sort and keyset cursor pagination.
 * The cursor is the hex encoding of "SORT|LAST_KEY|LAST_ID", so a page boundary stays put
 * when packs are added before it. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "packs.h"
#include "uc_pack.h"

#define LIST_DEFAULT_LIMIT 50
#define LIST_MAX_LIMIT 500

/* One accepted `sort` value: the SQL key, whether it is text, and the direction. */
struct sort_key {
	const char *name;
	const char *sql;
	int is_text;
	int descending;
};

static const struct sort_key sort_keys[] = {
	{ "slug", "p.slug", 1, 0 },
	{ "-slug", "p.slug", 1, 1 },
	{ "created", "p.created_at", 0, 0 },
	{ "-created", "p.created_at", 0, 1 },
	{ "parameters", "coalesce(l.parameters, -1)", 0, 0 },
	{ "-parameters", "coalesce(l.parameters, -1)", 0, 1 },
};

static const char *const comparators[] = { "canonical-transformer", "architecture-compatible",
					   "cls-cosine" };

static const struct sort_key *find_sort(const char *name)
{
	for (size_t i = 0; i < sizeof sort_keys / sizeof sort_keys[0]; i++) {
		if (strcmp(sort_keys[i].name, name) == 0)
			return &sort_keys[i];
	}
	return NULL;
}

int reg_comparator_valid(const char *name)
{
	for (size_t i = 0; i < sizeof comparators / sizeof comparators[0]; i++) {
		if (strcmp(comparators[i], name) == 0)
			return 1;
	}
	return 0;
}

/* Cursor payload after decoding. */
struct cursor {
	char sort[16];
	char key[160];
	int64_t id;
};

static void encode_cursor(const char *sort, const char *key, int64_t id, char *out, size_t size)
{
	char plain[200];
	int n = snprintf(plain, sizeof plain, "%s|%s|%" PRId64, sort, key, id);
	size_t used = 0;
	for (int i = 0; i < n && used + 3 <= size; i++) {
		snprintf(out + used, 3, "%02x", (unsigned char)plain[i]);
		used += 2;
	}
	out[used] = '\0';
}

static int decode_cursor(const char *text, struct cursor *c)
{
	char plain[200];
	size_t len = strlen(text);

	if (len % 2 || len / 2 >= sizeof plain)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		char hex[3] = { text[2 * i], text[2 * i + 1], '\0' };
		char *end;
		long value = strtol(hex, &end, 16);
		if (*end != '\0' || value == 0)
			return -1;
		plain[i] = (char)value;
	}
	plain[len / 2] = '\0';
	char *bar1 = strchr(plain, '|');
	char *bar2 = bar1 ? strrchr(plain, '|') : NULL;
	if (!bar1 || bar2 == bar1 || (size_t)(bar1 - plain) >= sizeof c->sort ||
	    (size_t)(bar2 - bar1 - 1) >= sizeof c->key)
		return -1;
	memcpy(c->sort, plain, (size_t)(bar1 - plain));
	c->sort[bar1 - plain] = '\0';
	memcpy(c->key, bar1 + 1, (size_t)(bar2 - bar1 - 1));
	c->key[bar2 - bar1 - 1] = '\0';
	char *end;
	c->id = strtoll(bar2 + 1, &end, 10);
	return *end == '\0' ? 0 : -1;
}

/* Escapes LIKE wildcards and wraps `q` in %...%. Returns a new string or NULL. */
static char *like_pattern(const char *q)
{
	size_t len = strlen(q);
	char *out = malloc(2 * len + 3);
	size_t used = 0;
	if (!out)
		return NULL;
	out[used++] = '%';
	for (size_t i = 0; i < len; i++) {
		if (q[i] == '%' || q[i] == '_' || q[i] == '\\')
			out[used++] = '\\';
		out[used++] = q[i];
	}
	out[used++] = '%';
	out[used] = '\0';
	return out;
}

static enum MHD_Result bad_query(reg_request *req, const char *name, const char *value,
				 const char *expected)
{
	return reg_respond_problem(req, MHD_HTTP_BAD_REQUEST, "invalid_query", "Invalid query argument",
				   "%s='%.80s' is invalid; expected %s", name, value, expected);
}

static json_t *pack_row_json(sqlite3_stmt *stmt)
{
	const char *slug = (const char *)sqlite3_column_text(stmt, 1);
	char url[128];
	snprintf(url, sizeof url, "/api/packs/%s", slug);
	json_t *pack = json_object();
	json_object_set_new(pack, "slug", json_string(slug));
	json_object_set_new(pack, "url", json_string(url));
	json_object_set_new(pack, "name", sqlite3_column_type(stmt, 2) == SQLITE_NULL ? json_null()
				: json_string((const char *)sqlite3_column_text(stmt, 2)));
	json_object_set_new(pack, "family", sqlite3_column_type(stmt, 3) == SQLITE_NULL ? json_null()
				: json_string((const char *)sqlite3_column_text(stmt, 3)));
	json_object_set_new(pack, "created_at", json_integer(sqlite3_column_int64(stmt, 4)));
	if (sqlite3_column_type(stmt, 5) == SQLITE_NULL) {
		json_object_set_new(pack, "latest", json_null());
	} else {
		json_object_set_new(pack, "latest", json_pack("{s:s, s:I, s:f, s:s, s:I}",
			"version", (const char *)sqlite3_column_text(stmt, 5),
			"parameters", (json_int_t)sqlite3_column_int64(stmt, 6),
			"bits_per_weight", sqlite3_column_double(stmt, 7),
			"manifest_digest", (const char *)sqlite3_column_text(stmt, 8),
			"total_bytes", (json_int_t)sqlite3_column_int64(stmt, 9)));
	}
	return pack;
}

enum MHD_Result reg_packs_list(reg_request *req)
{
	const char *family = reg_query(req, "family"), *comparator = reg_query(req, "comparator");
	const char *q = reg_query(req, "q"), *sort_name = reg_query(req, "sort");
	const char *cursor_text = reg_query(req, "cursor"), *limit_text = reg_query(req, "limit");
	const struct sort_key *sort = find_sort(sort_name ? sort_name : "slug");
	struct cursor cursor;
	long limit = LIST_DEFAULT_LIMIT;

	if (family && !uc_family_valid(family))
		return bad_query(req, "family", family,
				 "dense, moe, ssm, recurrent, hybrid, vit or other");
	if (comparator && !reg_comparator_valid(comparator))
		return bad_query(req, "comparator", comparator,
				 "canonical-transformer, architecture-compatible or cls-cosine");
	if (!sort)
		return bad_query(req, "sort", sort_name,
				 "slug, created or parameters, with '-' in front for descending");
	if (limit_text) {
		char *end;
		limit = strtol(limit_text, &end, 10);
		if (*end || limit < 1 || limit > LIST_MAX_LIMIT)
			return bad_query(req, "limit", limit_text, "an integer from 1 to 500");
	}
	if (cursor_text && (decode_cursor(cursor_text, &cursor) != 0 ||
			    strcmp(cursor.sort, sort->name) != 0))
		return bad_query(req, "cursor", cursor_text,
				 "the next_cursor of a previous page with the same sort");
	if (q && strlen(q) > 200)
		return bad_query(req, "q", q, "at most 200 characters");

	char sql[2048];
	snprintf(sql, sizeof sql,
		 "WITH latest AS (SELECT v.pack_id, v.version, v.parameters, v.bits_per_weight,"
		 " v.manifest_digest, v.total_bytes, row_number() OVER (PARTITION BY v.pack_id ORDER BY"
		 " v.created_at DESC, v.id DESC) AS rn FROM versions v WHERE v.status = 'verified' AND"
		 " v.yanked_at IS NULL)"
		 " SELECT p.id, p.slug, p.name, p.family, p.created_at, l.version, l.parameters,"
		 " l.bits_per_weight, l.manifest_digest, l.total_bytes, %s AS sort_key"
		 " FROM packs p LEFT JOIN latest l ON l.pack_id = p.id AND l.rn = 1"
		 " WHERE (?1 IS NULL OR p.family = ?1)"
		 " AND (?2 IS NULL OR EXISTS (SELECT 1 FROM evaluations e JOIN versions v2 ON"
		 " v2.id = e.version_id WHERE v2.pack_id = p.id AND v2.status = 'verified' AND"
		 " e.comparator = ?2))"
		 " AND (?3 IS NULL OR p.slug LIKE ?3 ESCAPE '\\' OR p.name LIKE ?3 ESCAPE '\\')"
		 " AND (?4 IS NULL OR (%s, p.id) %s (?4, ?5))"
		 " ORDER BY sort_key %s, p.id %s LIMIT ?6",
		 sort->sql, sort->sql, sort->descending ? "<" : ">", sort->descending ? "DESC" : "ASC",
		 sort->descending ? "DESC" : "ASC");

	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, sql) : NULL;
	if (!stmt)
		return reg_respond_catalog_error(req);
	char *pattern = q ? like_pattern(q) : NULL;
	sqlite3_bind_text(stmt, 1, family, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, comparator, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, pattern, -1, SQLITE_STATIC);
	if (cursor_text) {
		if (sort->is_text)
			sqlite3_bind_text(stmt, 4, cursor.key, -1, SQLITE_STATIC);
		else
			sqlite3_bind_int64(stmt, 4, strtoll(cursor.key, NULL, 10));
		sqlite3_bind_int64(stmt, 5, cursor.id);
	}
	/* Fetching one row more than the page shows whether a next page exists. */
	sqlite3_bind_int64(stmt, 6, limit + 1);

	json_t *packs = json_array();
	char next[420] = "";
	long count = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == limit) {
			break;
		}
		json_array_append_new(packs, pack_row_json(stmt));
		count++;
		encode_cursor(sort->name, (const char *)sqlite3_column_text(stmt, 10),
			      sqlite3_column_int64(stmt, 0), next, sizeof next);
	}
	int more = rc == SQLITE_ROW;
	sqlite3_finalize(stmt);
	free(pattern);
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:o, s:o}", "packs", packs,
		"next_cursor", more ? json_string(next) : json_null()));
}
