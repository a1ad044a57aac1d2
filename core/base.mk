# libuc: the public library is a thin shell over one convenience library, so the unit
# tests can link the internal (ucp_) functions while the installed library exports only uc_.
noinst_LTLIBRARIES += core/libuc_core.la
lib_LTLIBRARIES += core/libuc.la

core_libuc_core_la_SOURCES = \
	core/uc.h core/uc_error.h core/internal.h \
	core/error.c core/alloc.c core/sha256.c
core_libuc_core_la_LIBADD = $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread

core_libuc_la_SOURCES =
core_libuc_la_LIBADD = core/libuc_core.la
core_libuc_la_LDFLAGS = $(AM_LDFLAGS) -version-info 0:0:0 -export-symbols-regex '^uc_'

include_HEADERS += core/uc.h core/uc_error.h core/uc_hash.h
