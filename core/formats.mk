# Source checkpoint readers (safetensors, sharded safetensors, llama2.c, rwkv.cpp) and
# the safetensors writer.
core_libuc_core_la_SOURCES += \
	core/uc_source.h core/source_internal.h \
	core/source.c core/safetensors.c core/st_writer.c core/st_index.c core/llama2c.c \
	core/rwkvcpp.c

include_HEADERS += core/uc_source.h

# Check suites of the readers and the writer; fixture_table.c walks fixture directories.
SOURCE_TEST_SOURCES = tests/unit/fixture_table.c tests/unit/fixture_table.h

check_PROGRAMS += tests/unit/test_safetensors
tests_unit_test_safetensors_SOURCES = tests/unit/test_safetensors.c $(SOURCE_TEST_SOURCES)
tests_unit_test_safetensors_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_safetensors_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_safetensors

check_PROGRAMS += tests/unit/test_llama2c
tests_unit_test_llama2c_SOURCES = tests/unit/test_llama2c.c $(SOURCE_TEST_SOURCES)
tests_unit_test_llama2c_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_llama2c_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_llama2c

check_PROGRAMS += tests/unit/test_source
tests_unit_test_source_SOURCES = tests/unit/test_source.c $(SOURCE_TEST_SOURCES)
tests_unit_test_source_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_source_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_source

check_PROGRAMS += tests/unit/test_rwkvcpp
tests_unit_test_rwkvcpp_SOURCES = tests/unit/test_rwkvcpp.c $(SOURCE_TEST_SOURCES)
tests_unit_test_rwkvcpp_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_rwkvcpp_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_rwkvcpp
