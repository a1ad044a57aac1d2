/* Website files from --static-dir for GET and HEAD paths outside /api. Path segments were
 * already decoded and checked by http.c (no empty, ".", ".." or NUL segments and no encoded
 * '/'), and names starting with '.' are refused here, so a request cannot leave the
 * directory through the path. */
#include "config.h"

#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

enum MHD_Result reg_static_get(reg_request *req)
{
	char path[REG_PATH_MAX];
	size_t used = (size_t)snprintf(path, sizeof path, "%s", reg_state.settings.static_dir);

	for (size_t i = 0; i < req->n_segments && used < sizeof path; i++) {
		if (req->segments[i][0] == '.')
			goto not_found;
		used += (size_t)snprintf(path + used, sizeof path - used, "/%s", req->segments[i]);
	}
	struct stat st;
	if (used < sizeof path && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		used += (size_t)snprintf(path + used, sizeof path - used, "/index.html");
	if (used >= sizeof path)
		goto not_found;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		if (fd >= 0)
			close(fd);
		goto not_found;
	}
	struct MHD_Response *r = MHD_create_response_from_fd_at_offset64((uint64_t)st.st_size, fd, 0);
	if (!r) {
		close(fd);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type(path));
	/* Pages change with each release, so clients revalidate. */
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	return reg_respond(req, MHD_HTTP_OK, r);

not_found:
	return reg_respond_problem(req, MHD_HTTP_NOT_FOUND, "not_found", "Not found",
				   "no page at '%.200s'", req->raw_uri);
}
