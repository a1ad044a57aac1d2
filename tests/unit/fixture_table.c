#include "fixture_table.h"

#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Splits the expected file into its status line and message substring (in place). */
static void read_expected(const char *path, char **status, char **substring, char **buffer)
{
	size_t len;
	*buffer = (char *)tu_read_file(path, &len);
	*status = *buffer;
	char *newline = strchr(*buffer, '\n');
	ck_assert_msg(newline != NULL, "%s: line 1 must be a status name", path);
	*newline = '\0';
	*substring = newline + 1;
	newline = strchr(*substring, '\n');
	if (newline)
		*newline = '\0';
}

static void check_one(const char *dir, const char *name, const char *input_suffix,
		      fixture_check_fn check)
{
	char expected_path[4096], input_path[4096];
	size_t stem = strlen(name) - strlen(".expected");
	int n = snprintf(expected_path, sizeof expected_path, "%s/%s", dir, name);
	ck_assert_int_lt(n, (int)sizeof expected_path);
	n = snprintf(input_path, sizeof input_path, "%s/%.*s%s", dir, (int)stem, name, input_suffix);
	ck_assert_int_lt(n, (int)sizeof input_path);

	char *status, *substring, *buffer;
	read_expected(expected_path, &status, &substring, &buffer);

	uc_error err;
	uc_error_clear(&err);
	uc_status rc = check(input_path, &err);
	ck_assert_msg(strcmp(uc_status_name(rc), status) == 0,
		      "%.*s: expected status %s, got %s (%s)", (int)stem, name, status,
		      uc_status_name(rc), err.message);
	ck_assert_msg(strstr(err.message, substring) != NULL,
		      "%.*s: message \"%s\" lacks \"%s\"", (int)stem, name, err.message, substring);
	free(buffer);
}

size_t ft_run_directory(const char *directory, const char *input_suffix, fixture_check_fn check)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s", tu_fixture_path(directory));
	DIR *d = opendir(dir);
	ck_assert_msg(d != NULL, "cannot open fixture directory %s", dir);

	size_t checked = 0;
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL) {
		size_t len = strlen(entry->d_name);
		const size_t suffix = strlen(".expected");
		if (len <= suffix || strcmp(entry->d_name + len - suffix, ".expected") != 0)
			continue;
		check_one(dir, entry->d_name, input_suffix, check);
		checked++;
	}
	closedir(d);
	return checked;
}
