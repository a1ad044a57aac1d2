/* Table-driven fixture checks shared by the source reader suites: every NAME.expected in
 * a fixture directory holds the status name a reader must return (line 1) and a
 * substring of its message (line 2, empty for valid inputs). */
#ifndef UC_FIXTURE_TABLE_H
#define UC_FIXTURE_TABLE_H

#include <stddef.h>

#include "uc_error.h"

/* Runs `check` on the input of every NAME.expected in tests/fixtures/`directory`, where
 * the input is the sibling NAME + `input_suffix` ("" for NAME itself, for example a
 * directory). Fails the test on the first mismatch, naming the fixture; returns the
 * number of fixtures checked. */
typedef uc_status (*fixture_check_fn)(const char *input_path, uc_error *err);
size_t ft_run_directory(const char *directory, const char *input_suffix, fixture_check_fn check);

#endif
