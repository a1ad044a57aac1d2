# The perplexity harness behind `uc eval`: a convenience library that the uc program and
# the eval Check suites link.
noinst_LTLIBRARIES += cli/eval/libuceval.la
cli_eval_libuceval_la_SOURCES = \
	cli/eval/eval.h cli/eval/model.h \
	cli/eval/weights.c cli/eval/kernels.c cli/eval/model.c \
	cli/eval/llama.c cli/eval/rwkv.c \
	cli/eval/tokenizer.c cli/eval/corpus.c cli/eval/eval.c
cli_eval_libuceval_la_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/cli/eval

EVAL_TEST_LIBS = cli/eval/libuceval.la $(UNIT_LDADD)
EVAL_TEST_INCLUDES = $(AM_CPPFLAGS) -I$(top_srcdir)/cli/eval
