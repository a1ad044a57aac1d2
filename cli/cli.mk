bin_PROGRAMS += cli/uc
cli_uc_SOURCES = cli/uc.c cli/cli.h cli/common.c cli/progress.c \
	cli/cmd_pack.c cli/cmd_verify.c cli/cmd_inspect.c cli/cmd_unpack.c \
	cli/cmd_push.c cli/cmd_pull.c cli/net.c cli/net.h \
	cli/cmd_mirror.c server/snapshot_verify.c server/snapshot_verify.h
# snapshot_verify.c is shared with ucregd, so uc mirror checks snapshots as mirrors do.
cli_uc_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server
cli_uc_CFLAGS = $(AM_CFLAGS) $(CURL_CFLAGS)
cli_uc_LDADD = cli/eval/libuceval.la core/libuc_core.la $(CURL_LIBS) $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread
dist_man_MANS += docs/uc.1

# uc push and uc pull against a real ucregd; TEST_EXTENSIONS and PY_LOG_COMPILER for .py
# tests come from server/server.mk.
TESTS += tests/server/test_push_pull.py
EXTRA_DIST += tests/server/test_push_pull.py
