/* Website files from --static-dir for GET and HEAD paths outside /api. Path segments were
 * already decoded and checked by http.c (no empty, ".", ".." or NUL segments and no encoded
 * '/'), and names starting with '.' are refused here, so a request cannot leave the
 * directory through the path.
 *
 * Page routes: "/NAME" serves NAME.html when it exists (so "/stats" serves stats.html),
 * "/packs/SLUG" serves pack.html when the catalog has the pack, and any other path serves
 * 404.html with status 404 when the directory has one. */
#include "config.h"

#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "server.h"

static const char *content_type(const char *path)
{
	static const struct {
		const char *ext;
		const char *type;
	} types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" }, { ".json", "application/json" },
		{ ".svg", "image/svg+xml" }, { ".png", "image/png" }, { ".ico", "image/x-icon" },
		{ ".txt", "text/plain; charset=utf-8" }, { ".woff2", "font/woff2" },
	};
	const char *dot = strrchr(path, '.');
	for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++) {
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}

int reg_static_applies(const reg_request *req)
{
	if (!reg_state.settings.static_dir)
		return 0;
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
		return 0;
	return req->n_segments == 0 || strcmp(req->segments[0], "api") != 0;
}

/* Returns 1 when the catalog has a pack with this slug, 0 when not or on a catalog error. */
static int pack_exists(const char *slug)
{
	sqlite3 *db = reg_db_thread();
	sqlite3_stmt *stmt = db && reg_name_valid(slug) ?
		reg_db_prepare(db, "SELECT 1 FROM packs WHERE slug = ?") : NULL;
	if (!stmt)
		return 0;
	sqlite3_bind_text(stmt, 1, slug, -1, SQLITE_STATIC);
	int found = sqlite3_step(stmt) == SQLITE_ROW;
	sqlite3_finalize(stmt);
	return found;
}

/* Opens a regular file. Returns the descriptor with its size, or -1. */
static int open_file(const char *path, off_t *size)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	*size = st.st_size;
	return fd;
}

/* Builds the file path a request maps to. Returns -1 when the path is not a page. */
static int map_path(const reg_request *req, char *path, size_t cap)
{
	const char *dir = reg_state.settings.static_dir;
	size_t used;
	struct stat st;

	if (req->n_segments == 2 && strcmp(req->segments[0], "packs") == 0) {
		if (!pack_exists(req->segments[1]))
			return -1;
		used = (size_t)snprintf(path, cap, "%s/pack.html", dir);
		return used < cap ? 0 : -1;
	}

	used = (size_t)snprintf(path, cap, "%s", dir);
	for (size_t i = 0; i < req->n_segments && used < cap; i++) {
		if (req->segments[i][0] == '.')
			return -1;
		used += (size_t)snprintf(path + used, cap - used, "/%s", req->segments[i]);
	}
	if (used >= cap)
		return -1;
	if (stat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			used += (size_t)snprintf(path + used, cap - used, "/index.html");
	} else if (req->n_segments == 1 && !strchr(req->segments[0], '.')) {
		used += (size_t)snprintf(path + used, cap - used, ".html");
	}
	return used < cap ? 0 : -1;
}

static enum MHD_Result respond_file(reg_request *req, unsigned status, const char *path, int fd,
				    off_t size)
{
	struct MHD_Response *r = MHD_create_response_from_fd_at_offset64((uint64_t)size, fd, 0);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(path));
	/* Pages change with each release, so clients revalidate. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	return reg_respond(req, status, r);
}

enum MHD_Result reg_static_get(reg_request *req)
{
	char path[REG_PATH_MAX];
	off_t size;
	int fd = -1;

	if (map_path(req, path, sizeof path) == 0 && (fd = open_file(path, &size)) >= 0)
		return respond_file(req, MHD_HTTP_OK, path, fd, size);

	size_t used = (size_t)snprintf(path, sizeof path, "%s/404.html",
				       reg_state.settings.static_dir);
	if (used < sizeof path && (fd = open_file(path, &size)) >= 0)
		return respond_file(req, MHD_HTTP_NOT_FOUND, path, fd, size);
	return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "not_found", "Not found",
				   "no page at '%.200s'", req->raw_uri);
}
