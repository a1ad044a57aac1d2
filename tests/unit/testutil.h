/* Helpers shared by the Check suites: where the real models and fixtures are, and
 * scratch directories that are removed afterwards. */
#ifndef UC_TESTUTIL_H
#define UC_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Returns the path of a file in the real-model directory (UC_DATA_DIR), in a static
 * buffer overwritten by the next call. */
const char *tu_data_path(const char *name);

/* Returns the path of a file under tests/fixtures in the source tree (UC_TOP_SRCDIR), in a
 * static buffer overwritten by the next call. */
const char *tu_fixture_path(const char *relative);

/* Creates a fresh scratch directory and returns its path (new string, free()). Aborts the
 * test on failure. */
char *tu_make_temp_dir(void);

/* Removes a directory tree (used for scratch directories only). */
void tu_remove_tree(const char *path);

/* Reads a whole file into a new buffer (free()); aborts the test on failure. */
uint8_t *tu_read_file(const char *path, size_t *len);

/* Writes `len` bytes to `path`, replacing it; aborts the test on failure. */
void tu_write_file(const char *path, const void *data, size_t len);

#endif
