#define _GNU_SOURCE
#include "testutil.h"

#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback)
{
	const char *value = getenv(name);
	return value && *value ? value : fallback;
}

const char *tu_data_path(const char *name)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/%s", env_or("UC_DATA_DIR", "../shared/data"), name);
	return path;
}

const char *tu_fixture_path(const char *relative)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/tests/fixtures/%s", env_or("UC_TOP_SRCDIR", "."), relative);
	return path;
}

char *tu_make_temp_dir(void)
{
	char template[] = "/tmp/uc-test-XXXXXX";
	char *dir = mkdtemp(template);
	ck_assert_msg(dir != NULL, "mkdtemp failed");
	return strdup(dir);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

void tu_remove_tree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *buf = malloc((size_t)size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	buf[size] = 0;
	*len = (size_t)size;
	return buf;
}

void tu_write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "cannot create %s", path);
	ck_assert_uint_eq(fwrite(data, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}
