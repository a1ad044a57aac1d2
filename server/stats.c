/* GET /api/stats: quality ratios grouped by comparator, then by protocol. Comparators are
 * never pooled, and within one only rows under the identical protocol are. Only verified,
 * unyanked versions count; every other row is listed as excluded with the reason, so
 * anyone can recompute the figures from the catalog. When a version has several
 * evaluations in one group, the newest counts and the older ones are excluded. Each row
 * carries its version's parameter count and family, so a plot needs no other request. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "packs.h"

/* One comparable set being filled. */
struct group {
	json_t *object;   /* the group's JSON, owned by the response */
	json_t *included;
	json_t *excluded;
	double *ratios;
	size_t count, cap;
};

static int compare_doubles(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Adds count, median, mean, min and max of the included ratios to the group's JSON. */
static void close_group(struct group *g)
{
	if (!g->object)
		return;
	json_object_set_new(g->object, "count", json_integer((json_int_t)g->count));
	if (g->count) {
		qsort(g->ratios, g->count, sizeof *g->ratios, compare_doubles);
		double sum = 0;
		for (size_t i = 0; i < g->count; i++)
			sum += g->ratios[i];
		double median = g->count % 2 ? g->ratios[g->count / 2]
			: (g->ratios[g->count / 2 - 1] + g->ratios[g->count / 2]) / 2;
		json_object_set_new(g->object, "median", json_real(median));
		json_object_set_new(g->object, "mean", json_real(sum / (double)g->count));
		json_object_set_new(g->object, "min", json_real(g->ratios[0]));
		json_object_set_new(g->object, "max", json_real(g->ratios[g->count - 1]));
	} else {
		json_object_set_new(g->object, "median", json_null());
		json_object_set_new(g->object, "mean", json_null());
		json_object_set_new(g->object, "min", json_null());
		json_object_set_new(g->object, "max", json_null());
	}
	free(g->ratios);
	memset(g, 0, sizeof *g);
}

static int add_ratio(struct group *g, double ratio)
{
	if (g->count == g->cap) {
		size_t cap = g->cap ? 2 * g->cap : 16;
		double *grown = realloc(g->ratios, cap * sizeof *grown);
		if (!grown)
			return -1;
		g->ratios = grown;
		g->cap = cap;
	}
	g->ratios[g->count++] = ratio;
	return 0;
}

/* Returns the reason a row does not count, or NULL when it counts. */
static const char *exclusion_reason(sqlite3_stmt *stmt, int64_t *last_version)
{
	const char *status = (const char *)sqlite3_column_text(stmt, 6);
	int64_t version_id = sqlite3_column_int64(stmt, 8);
	int duplicate = version_id == *last_version;

	*last_version = version_id;
	if (strcmp(status, "verified") != 0)
		return strcmp(status, "failed") == 0 ? "version failed verification"
						     : "version not verified yet";
	if (sqlite3_column_type(stmt, 7) != SQLITE_NULL)
		return "version yanked";
	if (duplicate)
		return "superseded by a newer evaluation of the same version";
	return NULL;
}

/* Returns the family of a row's version, else of its pack, or JSON null when neither has one. */
static json_t *row_family(sqlite3_stmt *stmt)
{
	if (sqlite3_column_type(stmt, 11) == SQLITE_NULL)
		return json_null();
	return json_string((const char *)sqlite3_column_text(stmt, 11));
}

enum MHD_Result reg_stats_get(reg_request *req)
{
	sqlite3 *db = reg_db_thread();
	/* Rows come grouped, with each version's newest evaluation first. */
	sqlite3_stmt *stmt = db ? reg_db_prepare(db,
		"SELECT e.comparator, e.protocol_key, e.metric, e.id, e.ratio, p.slug, v.status,"
		" v.yanked_at, v.id, v.version, v.parameters, coalesce(v.family, p.family)"
		" FROM evaluations e JOIN versions v ON v.id = e.version_id"
		" JOIN packs p ON p.id = v.pack_id ORDER BY e.comparator, e.protocol_key, e.metric,"
		" v.id, e.id DESC") : NULL;
	if (!stmt)
		return reg_respond_catalog_error(req);

	json_t *comparators = json_array(), *current_comparator = NULL;
	struct group g = { 0 };
	char last_comparator[64] = "", *last_key = NULL, last_metric[16] = "";
	int64_t last_version = -1;
	int failed = 0;

	while (!failed && sqlite3_step(stmt) == SQLITE_ROW) {
		const char *comparator = (const char *)sqlite3_column_text(stmt, 0);
		const char *key = (const char *)sqlite3_column_text(stmt, 1);
		const char *metric = (const char *)sqlite3_column_text(stmt, 2);

		if (strcmp(comparator, last_comparator) != 0) {
			close_group(&g);
			current_comparator = json_pack("{s:s, s:[]}", "comparator", comparator, "groups");
			json_array_append_new(comparators, current_comparator);
			snprintf(last_comparator, sizeof last_comparator, "%s", comparator);
			free(last_key);
			last_key = NULL;
		}
		if (!last_key || strcmp(key, last_key) != 0 || strcmp(metric, last_metric) != 0) {
			close_group(&g);
			g.included = json_array();
			g.excluded = json_array();
			g.object = json_pack("{s:o, s:s, s:O, s:O}", "protocol", json_loads(key, 0, NULL),
					     "metric", metric, "included", g.included, "excluded",
					     g.excluded);
			json_decref(g.included);
			json_decref(g.excluded);
			json_array_append_new(json_object_get(current_comparator, "groups"), g.object);
			free(last_key);
			last_key = strdup(key);
			snprintf(last_metric, sizeof last_metric, "%s", metric);
			last_version = -1;
		}

		const char *reason = exclusion_reason(stmt, &last_version);
		double ratio = sqlite3_column_double(stmt, 4);
		json_t *row = json_pack("{s:s, s:s, s:I, s:f, s:I, s:o}",
					"slug", sqlite3_column_text(stmt, 5),
					"version", sqlite3_column_text(stmt, 9),
					"evaluation", (json_int_t)sqlite3_column_int64(stmt, 3),
					"ratio", ratio,
					"parameters", (json_int_t)sqlite3_column_int64(stmt, 10),
					"family", row_family(stmt));
		if (reason) {
			json_object_set_new(row, "reason", json_string(reason));
			json_array_append_new(g.excluded, row);
		} else {
			json_array_append_new(g.included, row);
			failed = add_ratio(&g, ratio) != 0;
		}
	}
	close_group(&g);
	free(last_key);
	sqlite3_finalize(stmt);
	if (failed) {
		json_decref(comparators);
		return MHD_NO;
	}
	return reg_respond_json(req, MHD_HTTP_OK, json_pack("{s:o}", "comparators", comparators));
}
