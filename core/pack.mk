# Packs: manifest, writer, reader, verification and its report.
core_libuc_core_la_SOURCES += \
	core/uc_pack.h core/pack_internal.h \
	core/manifest.c core/manifest_parse.c core/manifest_write.c \
	core/threadpool.c core/pack_read.c core/verify.c core/report.c \
	core/pack_encode.c core/pack_write.c

include_HEADERS += core/uc_pack.h

check_PROGRAMS += tests/unit/test_manifest
tests_unit_test_manifest_SOURCES = tests/unit/test_manifest.c
tests_unit_test_manifest_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_manifest_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_manifest

check_PROGRAMS += tests/unit/test_pack
tests_unit_test_pack_SOURCES = tests/unit/test_pack.c
tests_unit_test_pack_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_pack_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_pack

check_PROGRAMS += tests/unit/test_verify
tests_unit_test_verify_SOURCES = tests/unit/test_verify.c
tests_unit_test_verify_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_verify_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_verify
