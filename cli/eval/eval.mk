# The perplexity harness behind `uc eval`: a convenience library that the uc program and
# the eval Check suites link. It calls only libuc's public API.
noinst_LTLIBRARIES += cli/eval/libuceval.la
cli_eval_libuceval_la_SOURCES = \
	cli/eval/eval.h cli/eval/model.h cli/eval/util.h cli/eval/util.c \
	cli/eval/weights.c cli/eval/weights_source.c cli/eval/weights_pack.c \
	cli/eval/kernels.c cli/eval/model.c cli/eval/llama.h cli/eval/llama.c \
	cli/eval/llama_forward.c cli/eval/rwkv.c \
	cli/eval/tokenizer.c cli/eval/corpus.c cli/eval/eval.c cli/eval/record.c \
	cli/eval/eval_cmd.c
cli_eval_libuceval_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/cli/eval

EVAL_TEST_LIBS = cli/eval/libuceval.la $(UNIT_LDADD)
EVAL_TEST_INCLUDES = $(AM_CPPFLAGS) -I$(top_srcdir)/cli/eval

check_PROGRAMS += tests/unit/test_eval_llama
tests_unit_test_eval_llama_SOURCES = tests/unit/test_eval_llama.c
tests_unit_test_eval_llama_CPPFLAGS = $(EVAL_TEST_INCLUDES)
tests_unit_test_eval_llama_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_eval_llama_LDADD = $(EVAL_TEST_LIBS)
TESTS += tests/unit/test_eval_llama

check_PROGRAMS += tests/unit/test_eval_rwkv
tests_unit_test_eval_rwkv_SOURCES = tests/unit/test_eval_rwkv.c
tests_unit_test_eval_rwkv_CPPFLAGS = $(EVAL_TEST_INCLUDES)
tests_unit_test_eval_rwkv_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_eval_rwkv_LDADD = $(EVAL_TEST_LIBS)
TESTS += tests/unit/test_eval_rwkv

check_PROGRAMS += tests/unit/test_eval_text
tests_unit_test_eval_text_SOURCES = tests/unit/test_eval_text.c
tests_unit_test_eval_text_CPPFLAGS = $(EVAL_TEST_INCLUDES)
tests_unit_test_eval_text_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_eval_text_LDADD = $(EVAL_TEST_LIBS)
TESTS += tests/unit/test_eval_text

check_PROGRAMS += tests/unit/test_eval_protocol
tests_unit_test_eval_protocol_SOURCES = tests/unit/test_eval_protocol.c
tests_unit_test_eval_protocol_CPPFLAGS = $(EVAL_TEST_INCLUDES)
tests_unit_test_eval_protocol_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_eval_protocol_LDADD = $(EVAL_TEST_LIBS)
TESTS += tests/unit/test_eval_protocol

check_PROGRAMS += tests/unit/test_eval_pack
tests_unit_test_eval_pack_SOURCES = tests/unit/test_eval_pack.c
tests_unit_test_eval_pack_CPPFLAGS = $(EVAL_TEST_INCLUDES)
tests_unit_test_eval_pack_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_eval_pack_LDADD = $(EVAL_TEST_LIBS)
TESTS += tests/unit/test_eval_pack

# `make fuzz`: the tokenizer parser and encoder (see tests/fuzz/fuzz.mk). The target
# includes the harness sources it needs itself, as FUZZ_LIBUC_FILES is set after this file.
FUZZERS += fuzz_tokenizer
EXTRA_DIST += tests/fuzz/fuzz_tokenizer.c
CLEANFILES += tests/fuzz/fuzz_tokenizer
