/* GET /api/packs: filters (family, comparator, text), sort and keyset cursor pagination.
 * The cursor is the hex encoding of "SORT|vLAST_KEY|LAST_ID", or "SORT|n|LAST_ID" when the
 * last row's key is NULL, so a page boundary stays put when packs are added before it.
 * Rows whose key is NULL (no verified version, no evaluation) come after all others in
 * both directions, ordered among themselves by id. */
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

/* Type of a sort key, which decides how a cursor stores and binds it. */
enum key_type { KEY_TEXT, KEY_INTEGER, KEY_REAL };

/* One accepted `sort` value: the SQL key (columns of the list query), its type, whether
 * it can be NULL, and the direction. */
struct sort_key {
	const char *name;
	const char *sql;
	enum key_type type;
	int nullable;
	int descending;
};

/* The time of the pack's newest change: a version published or verified, or an evaluation
 * recorded, over all its versions. */
#define UPDATED_AT_SQL \
	"max(p.created_at, coalesce((SELECT max(max(v.created_at, coalesce(v.verified_at, 0)," \
	" coalesce((SELECT max(e.created_at) FROM evaluations e WHERE e.version_id = v.id), 0)))" \
	" FROM versions v WHERE v.pack_id = p.id), 0))"

static const struct sort_key sort_keys[] = {
	{ "slug", "p.slug", KEY_TEXT, 0, 0 },
	{ "-slug", "p.slug", KEY_TEXT, 0, 1 },
	{ "family", "p.family", KEY_TEXT, 1, 0 },
	{ "-family", "p.family", KEY_TEXT, 1, 1 },
	{ "created", "p.created_at", KEY_INTEGER, 0, 0 },
	{ "-created", "p.created_at", KEY_INTEGER, 0, 1 },
	{ "updated", UPDATED_AT_SQL, KEY_INTEGER, 0, 0 },
	{ "-updated", UPDATED_AT_SQL, KEY_INTEGER, 0, 1 },
	{ "parameters", "l.parameters", KEY_INTEGER, 1, 0 },
	{ "-parameters", "l.parameters", KEY_INTEGER, 1, 1 },
	{ "bits_per_weight", "l.bits_per_weight", KEY_REAL, 1, 0 },
	{ "-bits_per_weight", "l.bits_per_weight", KEY_REAL, 1, 1 },
	{ "ratio", "ev.ratio", KEY_REAL, 1, 0 },
	{ "-ratio", "ev.ratio", KEY_REAL, 1, 1 },
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

/* Cursor payload after decoding. `key` is the last row's sort key as text, unless
 * `key_null` is set. */
struct cursor {
	char sort[24];
	char key[160];
	int key_null;
	int64_t id;
};

/* Writes the cursor that continues after the current row of `stmt`, whose sort key is in
 * column `key_column`, as hex into `out`. A real key keeps 17 significant digits, so it
 * reads back as the same double and no row at the page boundary is lost or repeated. */
static void encode_cursor(const struct sort_key *sort, sqlite3_stmt *stmt, int key_column,
			  int64_t id, char *out, size_t size)
{
	char key[180];
	char plain[240];

	if (sqlite3_column_type(stmt, key_column) == SQLITE_NULL)
		snprintf(key, sizeof key, "n");
	else if (sort->type == KEY_REAL)
		snprintf(key, sizeof key, "v%.17g", sqlite3_column_double(stmt, key_column));
	else if (sort->type == KEY_INTEGER)
		snprintf(key, sizeof key, "v%" PRId64, (int64_t)sqlite3_column_int64(stmt, key_column));
	else
		snprintf(key, sizeof key, "v%s", (const char *)sqlite3_column_text(stmt, key_column));

	int n = snprintf(plain, sizeof plain, "%s|%s|%" PRId64, sort->name, key, id);
	size_t used = 0;
	for (int i = 0; i < n && used + 3 <= size; i++) {
		snprintf(out + used, 3, "%02x", (unsigned char)plain[i]);
		used += 2;
	}
	out[used] = '\0';
}

static int decode_cursor(const char *text, struct cursor *c)
{
	char plain[240];
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
	    (size_t)(bar2 - bar1 - 1) >= sizeof c->key + 1)
		return -1;
	memcpy(c->sort, plain, (size_t)(bar1 - plain));
	c->sort[bar1 - plain] = '\0';

	/* The key starts with 'n' for NULL or 'v' before its value. */
	const char *key = bar1 + 1;
	size_t key_len = (size_t)(bar2 - bar1 - 1);
	if (key_len == 1 && key[0] == 'n') {
		c->key_null = 1;
		c->key[0] = '\0';
	} else if (key_len >= 1 && key[0] == 'v') {
		c->key_null = 0;
		memcpy(c->key, key + 1, key_len - 1);
		c->key[key_len - 1] = '\0';
	} else {
		return -1;
	}

	char *end;
	c->id = strtoll(bar2 + 1, &end, 10);
	return *end == '\0' && end != bar2 + 1 ? 0 : -1;
}

/* Binds the cursor's key to parameter 4 with the sort's type. Returns -1 when the key is
 * not a number of that type. */
static int bind_cursor_key(sqlite3_stmt *stmt, const struct sort_key *sort, const struct cursor *c)
{
	char *end;

	if (c->key_null)
		return sqlite3_bind_null(stmt, 4) == SQLITE_OK ? 0 : -1;
	switch (sort->type) {
	case KEY_TEXT:
		sqlite3_bind_text(stmt, 4, c->key, -1, SQLITE_TRANSIENT);
		return 0;
	case KEY_INTEGER: {
		long long value = strtoll(c->key, &end, 10);
		if (end == c->key || *end != '\0')
			return -1;
		sqlite3_bind_int64(stmt, 4, value);
		return 0;
	}
	case KEY_REAL: {
		double value = strtod(c->key, &end);
		if (end == c->key || *end != '\0')
			return -1;
		sqlite3_bind_double(stmt, 4, value);
		return 0;
	}
	}
	return -1;
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

/* Column numbers of the list query. */
enum list_column {
	COL_ID, COL_SLUG, COL_NAME, COL_FAMILY, COL_CREATED_AT, COL_VERSION, COL_PARAMETERS,
	COL_BITS_PER_WEIGHT, COL_MANIFEST_DIGEST, COL_TOTAL_BYTES, COL_VERIFIED_AT, COL_METRIC,
	COL_COMPARATOR, COL_RATIO, COL_UPDATED_AT, COL_STATUS, COL_SORT_KEY
};

/* One query returns each pack with its latest verified version, that version's newest
 * evaluation by id, the pack's newest change and the state of its newest version, so a
 * page costs one statement however many packs it shows. The correlated subqueries use the
 * (pack_id, version) and evaluations_by_version indexes, and a slug sort walks the slug
 * index and stops after the page. Format argument 1 is the sort key, 2 the cursor
 * condition and 3 the ORDER BY terms. */
static const char list_sql[] =
	"SELECT p.id, p.slug, p.name, p.family, p.created_at, l.version, l.parameters,"
	" l.bits_per_weight, l.manifest_digest, l.total_bytes, l.verified_at, ev.metric,"
	" ev.comparator, ev.ratio, " UPDATED_AT_SQL ","
	" CASE WHEN l.id IS NOT NULL THEN 'verified' ELSE (SELECT CASE WHEN n.yanked_at IS NOT"
	" NULL THEN 'yanked' ELSE n.status END FROM versions n WHERE n.pack_id = p.id ORDER BY"
	" n.created_at DESC, n.id DESC LIMIT 1) END, %1$s AS sort_key"
	" FROM packs p LEFT JOIN versions l ON l.id = (SELECT v.id FROM versions v WHERE"
	" v.pack_id = p.id AND v.status = 'verified' AND v.yanked_at IS NULL ORDER BY"
	" v.created_at DESC, v.id DESC LIMIT 1)"
	" LEFT JOIN evaluations ev ON ev.id = (SELECT max(e.id) FROM evaluations e WHERE"
	" e.version_id = l.id)"
	" WHERE (?1 IS NULL OR p.family = ?1)"
	" AND (?2 IS NULL OR EXISTS (SELECT 1 FROM evaluations e JOIN versions v2 ON"
	" v2.id = e.version_id WHERE v2.pack_id = p.id AND v2.status = 'verified' AND"
	" e.comparator = ?2))"
	" AND (?3 IS NULL OR p.slug LIKE ?3 ESCAPE '\\' OR p.name LIKE ?3 ESCAPE '\\')"
	" AND %2$s"
	" ORDER BY %3$s LIMIT ?6";

/* Writes the list query for `sort` into `sql`. The cursor condition keeps rows after
 * the cursor's (key, id): a row with a NULL key follows every row with a key, and rows
 * with a NULL key follow each other by id. Returns -1 when `size` is too small. */
static int build_list_sql(const struct sort_key *sort, const struct cursor *cursor, char *sql,
			  size_t size)
{
	const char *op = sort->descending ? "<" : ">";
	const char *direction = sort->descending ? "DESC" : "ASC";
	char condition[1024], order[128];
	int n;

	if (!cursor)
		n = snprintf(condition, sizeof condition, "1");
	else if (cursor->key_null)
		n = snprintf(condition, sizeof condition, "(%s IS NULL AND p.id %s ?5)", sort->sql, op);
	else if (sort->nullable)
		n = snprintf(condition, sizeof condition, "(%s IS NULL OR (%s, p.id) %s (?4, ?5))",
			     sort->sql, sort->sql, op);
	else
		n = snprintf(condition, sizeof condition, "((%s, p.id) %s (?4, ?5))", sort->sql, op);
	if (n < 0 || (size_t)n >= sizeof condition)
		return -1;

	/* Only a nullable key gets the IS NULL term, because that term keeps SQLite from
	 * reading the slug index in order. */
	snprintf(order, sizeof order, "%ssort_key %s, p.id %s",
		 sort->nullable ? "sort_key IS NULL, " : "", direction, direction);
	n = snprintf(sql, size, list_sql, sort->sql, condition, order);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

static json_t *column_text_or_null(sqlite3_stmt *stmt, int column)
{
	if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
		return json_null();
	return json_string((const char *)sqlite3_column_text(stmt, column));
}

static json_t *column_integer_or_null(sqlite3_stmt *stmt, int column)
{
	if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
		return json_null();
	return json_integer((json_int_t)sqlite3_column_int64(stmt, column));
}

static json_t *column_real_or_null(sqlite3_stmt *stmt, int column)
{
	if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
		return json_null();
	return json_real(sqlite3_column_double(stmt, column));
}

/* Builds the `latest` object of one row: the latest verified version, its newest
 * evaluation (nulls when it has none) and the pack's newest change. */
static json_t *latest_json(sqlite3_stmt *stmt)
{
	json_t *latest = json_object();

	json_object_set_new(latest, "version", column_text_or_null(stmt, COL_VERSION));
	json_object_set_new(latest, "parameters", column_integer_or_null(stmt, COL_PARAMETERS));
	json_object_set_new(latest, "bits_per_weight",
			    column_real_or_null(stmt, COL_BITS_PER_WEIGHT));
	json_object_set_new(latest, "manifest_digest",
			    column_text_or_null(stmt, COL_MANIFEST_DIGEST));
	json_object_set_new(latest, "total_bytes", column_integer_or_null(stmt, COL_TOTAL_BYTES));
	json_object_set_new(latest, "verified_at", column_integer_or_null(stmt, COL_VERIFIED_AT));
	json_object_set_new(latest, "metric", column_text_or_null(stmt, COL_METRIC));
	json_object_set_new(latest, "comparator", column_text_or_null(stmt, COL_COMPARATOR));
	json_object_set_new(latest, "ratio", column_real_or_null(stmt, COL_RATIO));
	json_object_set_new(latest, "updated_at", column_integer_or_null(stmt, COL_UPDATED_AT));
	return latest;
}

static json_t *pack_row_json(sqlite3_stmt *stmt)
{
	const char *slug = (const char *)sqlite3_column_text(stmt, COL_SLUG);
	char url[128];
	snprintf(url, sizeof url, "/api/packs/%s", slug);

	json_t *pack = json_object();
	json_object_set_new(pack, "slug", json_string(slug));
	json_object_set_new(pack, "url", json_string(url));
	json_object_set_new(pack, "name", column_text_or_null(stmt, COL_NAME));
	json_object_set_new(pack, "family", column_text_or_null(stmt, COL_FAMILY));
	json_object_set_new(pack, "created_at", column_integer_or_null(stmt, COL_CREATED_AT));
	json_object_set_new(pack, "updated_at", column_integer_or_null(stmt, COL_UPDATED_AT));
	json_object_set_new(pack, "status", column_text_or_null(stmt, COL_STATUS));
	json_object_set_new(pack, "latest", sqlite3_column_type(stmt, COL_VERSION) == SQLITE_NULL
				? json_null() : latest_json(stmt));
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
				 "slug, family, created, updated, parameters, bits_per_weight or "
				 "ratio, with '-' in front for descending");
	if (limit_text) {
		char *end;
		limit = strtol(limit_text, &end, 10);
		/* strtol skips leading spaces and takes a sign; neither is an integer here. */
		if (limit_text[0] < '0' || limit_text[0] > '9' || *end || limit < 1 ||
		    limit > LIST_MAX_LIMIT)
			return bad_query(req, "limit", limit_text, "an integer from 1 to 500");
	}
	if (cursor_text && (decode_cursor(cursor_text, &cursor) != 0 ||
			    strcmp(cursor.sort, sort->name) != 0))
		return bad_query(req, "cursor", cursor_text,
				 "the next_cursor of a previous page with the same sort");
	if (q && strlen(q) > 200)
		return bad_query(req, "q", q, "at most 200 characters");

	char sql[4096];
	if (build_list_sql(sort, cursor_text ? &cursor : NULL, sql, sizeof sql) != 0) {
		REG_ERROR("catalog list query for sort=%s does not fit in %zu bytes", sort->name,
			  sizeof sql);
		return reg_respond_catalog_error(req);
	}
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db ? reg_db_prepare(db, sql) : NULL;
	if (!stmt)
		return reg_respond_catalog_error(req);
	if (cursor_text && bind_cursor_key(stmt, sort, &cursor) != 0) {
		sqlite3_finalize(stmt);
		return bad_query(req, "cursor", cursor_text,
				 "the next_cursor of a previous page with the same sort");
	}
	char *pattern = q ? like_pattern(q) : NULL;
	sqlite3_bind_text(stmt, 1, family, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 2, comparator, -1, SQLITE_STATIC);
	sqlite3_bind_text(stmt, 3, pattern, -1, SQLITE_STATIC);
	if (cursor_text)
		sqlite3_bind_int64(stmt, 5, cursor.id);
	/* Fetching one row more than the page shows whether a next page exists. */
	sqlite3_bind_int64(stmt, 6, limit + 1);

	json_t *packs = json_array();
	char next[500] = "";
	long count = 0;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (count == limit)
			break;
		json_array_append_new(packs, pack_row_json(stmt));
		count++;
		encode_cursor(sort, stmt, COL_SORT_KEY, sqlite3_column_int64(stmt, COL_ID), next,
			      sizeof next);
	}
	int more = rc == SQLITE_ROW;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		REG_ERROR("catalog list failed: %s", sqlite3_errmsg(db));
	sqlite3_finalize(stmt);
	free(pattern);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		json_decref(packs);
		return reg_respond_catalog_error(req);
	}
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:o, s:o}", "packs", packs,
		"next_cursor", more ? json_string(next) : json_null()));
}
