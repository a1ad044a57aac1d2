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
	tests/fuzz/fuzz_source_parser.h tests/fuzz/fuzz_safetensors.c tests/fuzz/fuzz_safetensors.dict tests/fuzz/fuzz_llama2c.c \
	tests/fuzz/fuzz_rwkvcpp.c
CLEANFILES += tests/fuzz/fuzz_safetensors tests/fuzz/fuzz_llama2c tests/fuzz/fuzz_rwkvcpp

# A short pass of every target over its seed corpus (new inputs go to a scratch
# directory), so the test suite catches a target that no longer builds or crashes on a
# fixture. Long runs are done by hand as tests/fuzz/README.md says.
FUZZ_SMOKE_SECONDS = 10
fuzz-smoke: fuzz
	@for target in $(FUZZERS) $(FUZZ_PACK_TARGETS); do \
		work=tests/fuzz/smoke-$$target; \
		rm -rf "$$work" && mkdir -p "$$work" || exit 1; \
		echo "fuzz-smoke: $$target for $(FUZZ_SMOKE_SECONDS) s"; \
		./tests/fuzz/$$target -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=1 \
			"$$work" "$(top_srcdir)/tests/fuzz/seeds/$$target" >"$$work.log" 2>&1 || \
			{ tail -n 40 "$$work.log"; exit 1; }; \
		grep -E '^stat::number_of_executed_units' "$$work.log"; \
		rm -rf "$$work"; \
	done
.PHONY: fuzz-smoke
