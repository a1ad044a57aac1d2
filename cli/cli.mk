bin_PROGRAMS += cli/uc
cli_uc_SOURCES = cli/uc.c cli/cli.h cli/common.c cli/progress.c \
	cli/cmd_pack.c cli/cmd_verify.c cli/cmd_inspect.c cli/cmd_unpack.c
cli_uc_LDADD = cli/eval/libuceval.la core/libuc_core.la $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread
dist_man_MANS += docs/uc.1
