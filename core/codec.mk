# The uc5 codec, dtype conversions and the instruction-set dispatcher. Each SIMD kernel
# is its own convenience library because it needs its own -m flags; the dispatcher only
# runs a kernel after probing the CPU, so those flags never reach the portable code.
core_libuc_core_la_SOURCES += \
	core/uc_codec.h core/codec_internal.h \
	core/dtype.c core/isa.c core/uc5_encode.c core/uc5_decode.c
include_HEADERS += core/uc_codec.h

if UC_X86_64
noinst_LTLIBRARIES += core/libuc_avx2.la core/libuc_avx512.la
core_libuc_avx2_la_SOURCES = core/uc5_avx2.c
core_libuc_avx2_la_CFLAGS = $(AM_CFLAGS) -mavx2 -mf16c -mfma
core_libuc_avx512_la_SOURCES = core/uc5_avx512.c
core_libuc_avx512_la_CFLAGS = $(AM_CFLAGS) -mavx512f -mavx512bw -mavx512vl -mavx2 -mf16c -mfma
core_libuc_core_la_LIBADD += core/libuc_avx2.la core/libuc_avx512.la
endif

if UC_AARCH64
noinst_LTLIBRARIES += core/libuc_neon.la
core_libuc_neon_la_SOURCES = core/uc5_neon.c
core_libuc_neon_la_CFLAGS = $(AM_CFLAGS)
core_libuc_core_la_LIBADD += core/libuc_neon.la
endif

check_PROGRAMS += tests/unit/test_codec
tests_unit_test_codec_SOURCES = tests/unit/test_codec.c tests/unit/codec_golden.h
tests_unit_test_codec_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_codec_LDADD = $(UNIT_LDADD)
TESTS += tests/unit/test_codec

# The NEON kernel, cross-compiled and run under qemu-aarch64; skipped without those tools.
TESTS += scripts/test-neon
EXTRA_DIST += scripts/test-neon tests/unit/check_neon.c

BENCHMARKS += tests/bench/bench_codec
tests_bench_bench_codec_SOURCES = tests/bench/bench_codec.c
tests_bench_bench_codec_LDADD = core/libuc_core.la $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread
