# libFuzzer targets, built by `make fuzz` with clang ($(FUZZ_CC) from configure) into
# tests/fuzz/ of the build directory; see tests/fuzz/README.md. They are not part of
# `make` or `make check`.
#
# To add a target, put tests/fuzz/NAME.c (defining LLVMFuzzerTestOneInput) in the tree
# and one line in your fragment:
#   FUZZERS += NAME
# and append any libuc source it needs that is not listed below to FUZZ_LIBUC_FILES.
FUZZERS += fuzz_safetensors fuzz_llama2c fuzz_rwkvcpp

# libuc sources compiled directly into every target (paths relative to the source tree).
FUZZ_LIBUC_FILES = core/error.c core/alloc.c core/sha256.c \
	core/source.c core/safetensors.c core/st_writer.c core/st_index.c core/llama2c.c \
	core/rwkvcpp.c

FUZZ_CPPFLAGS = -I$(top_srcdir)/core -I$(top_builddir) $(JANSSON_CFLAGS) $(OPENSSL_CFLAGS)
FUZZ_LIBS = $(JANSSON_LIBS) $(OPENSSL_LIBS) -lm -lpthread

# The pattern rule lives in a GNU make file of its own because automake rejects '%'
# rules in Makefile.am.
fuzz:
	@if test -z "$(FUZZ_CC)"; then \
		echo "make fuzz: clang not found; install clang and rerun configure" >&2; \
		exit 1; \
	fi
	$(MAKE) -f $(top_srcdir)/tests/fuzz/fuzz-rules.gmk \
		top_srcdir="$(top_srcdir)" FUZZ_CC="$(FUZZ_CC)" FUZZERS="$(FUZZERS)" \
		FUZZ_LIBUC_FILES="$(FUZZ_LIBUC_FILES)" \
		FUZZ_CPPFLAGS="$(FUZZ_CPPFLAGS)" FUZZ_LIBS="$(FUZZ_LIBS)"
.PHONY: fuzz

EXTRA_DIST += tests/fuzz/README.md tests/fuzz/fuzz-rules.gmk tests/fuzz/seeds \
	tests/fuzz/fuzz_safetensors.c tests/fuzz/fuzz_safetensors.dict tests/fuzz/fuzz_llama2c.c \
	tests/fuzz/fuzz_rwkvcpp.c
CLEANFILES += tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_llama2c tests/fuzz/fuzz_rwkvcpp
