# Shared helpers for the Check suites. Each part adds its own suites in its fragment as
#   check_PROGRAMS += tests/unit/test_x
#   tests_unit_test_x_SOURCES = tests/unit/test_x.c
#   tests_unit_test_x_LDADD = $(UNIT_LDADD)
#   TESTS += tests/unit/test_x
noinst_LTLIBRARIES += tests/unit/libtestutil.la
tests_unit_libtestutil_la_SOURCES = tests/unit/testutil.c tests/unit/testutil.h
tests_unit_libtestutil_la_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)

UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS)
UNIT_LDADD = tests/unit/libtestutil.la core/libuc_core.la $(CHECK_LIBS) $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread

check_PROGRAMS += tests/unit/test_base
tests_unit_test_base_SOURCES = tests/unit/test_base.c
tests_unit_test_base_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_base_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_base
