# Packs: manifest, writer, reader, verification and its report.
core_libuc_core_la_SOURCES += \
	core/uc_pack.h core/pack_internal.h \
	core/manifest.c core/manifest_parse.c core/manifest_write.c \
	core/threadpool.c core/pack_read.c core/verify.c core/report.c \
	core/pack_encode.c core/pack_write.c core/pack_publish.c

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

# Fuzz targets for the manifest parser and the verifier. They are built by `make fuzz`
# through a second run of the shared rules, because they need the codec and pack sources
# that the source-reader targets do not link.
FUZZ_PACK_TARGETS = fuzz_manifest fuzz_verify
FUZZ_PACK_FILES = $(FUZZ_LIBUC_FILES) core/dtype.c core/isa.c core/uc5_decode.c \
	core/manifest.c core/manifest_parse.c core/manifest_write.c core/threadpool.c \
	core/pack_read.c core/verify.c core/report.c tests/fuzz/fuzz_scalar_kernels.c

fuzz-pack:
	@if test -z "$(FUZZ_CC)"; then \
		echo "make fuzz-pack: clang not found; install clang and rerun configure" >&2; \
		exit 1; \
	fi
	$(MAKE) -f $(top_srcdir)/tests/fuzz/fuzz-rules.gmk \
		top_srcdir="$(top_srcdir)" FUZZ_CC="$(FUZZ_CC)" FUZZERS="$(FUZZ_PACK_TARGETS)" \
		FUZZ_LIBUC_FILES="$(FUZZ_PACK_FILES)" \
		FUZZ_CPPFLAGS="$(FUZZ_CPPFLAGS)" FUZZ_LIBS="$(FUZZ_LIBS)"
fuzz: fuzz-pack
.PHONY: fuzz-pack

EXTRA_DIST += tests/fuzz/fuzz_manifest.c tests/fuzz/fuzz_verify.c tests/fuzz/fuzz_scalar_kernels.c
CLEANFILES += tests/fuzz/fuzz_manifest tests/fuzz/fuzz_verify

BENCHMARKS += tests/bench/bench_verify
tests_bench_bench_verify_SOURCES = tests/bench/bench_verify.c
tests_bench_bench_verify_LDADD = core/libuc_core.la $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread
