# ucregd, the registry daemon, and its integration tests.
sbin_PROGRAMS += server/ucregd

# Numbered migrations, applied in this order.
SERVER_SCHEMA = \
	$(top_srcdir)/schema/001_catalog.sql \
	$(top_srcdir)/schema/002_mirror.sql \
	$(top_srcdir)/schema/003_deleted_versions.sql \
	$(top_srcdir)/schema/004_evaluation_upstream_id.sql

server_ucregd_SOURCES = \
	server/main.c server/server.h \
	server/settings.c server/settings.h \
	server/log.c server/log.h \
	server/db.c server/db.h \
	server/http.c server/http.h \
	server/cache.c server/cache.h \
	server/routes.c server/routes.h \
	server/auth.c server/auth.h \
	server/blobs.c server/blobs.h \
	server/packs.c server/packs.h \
	server/catalog.c server/catalog_list.c \
	server/evaluations.c server/evaluations.h server/stats.c \
	server/uploads.c server/uploads.h \
	server/static.c server/static.h \
	server/system.c \
	server/workers.c server/workers.h \
	server/snapshot.c server/snapshot.h \
	server/snapshot_verify.c server/snapshot_verify.h \
	server/mirror.c server/mirror.h \
	server/mirror_round.c server/mirror_round.h \
	server/mirror_catalog.c server/mirror_catalog.h \
	server/mirror_verify.c server/mirror_verify.h \
	server/mirror_pipeline.c server/mirror_pipeline.h \
	server/mirror_fetch.c server/mirror_fetch.h \
	server/mirror_evaluations.c server/mirror_evaluations.h
nodist_server_ucregd_SOURCES = server/schema_sql.c
server_ucregd_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server
server_ucregd_CFLAGS = $(AM_CFLAGS) $(MHD_CFLAGS) $(SQLITE_CFLAGS) $(CURL_CFLAGS)
server_ucregd_LDADD = core/libuc_core.la $(MHD_LIBS) $(SQLITE_LIBS) $(JANSSON_LIBS) \
	$(OPENSSL_LIBS) $(CURL_LIBS) -lm -lpthread

# The migrations are compiled into the binary, so a daemon never runs against a schema
# directory from another version.
server/schema_sql.c: $(SERVER_SCHEMA) $(top_srcdir)/server/embed-schema.sh
	@$(MKDIR_P) server
	$(AM_V_GEN)$(SHELL) $(top_srcdir)/server/embed-schema.sh $@ $(SERVER_SCHEMA)
CLEANFILES += server/schema_sql.c
EXTRA_DIST += server/embed-schema.sh deploy
dist_man_MANS += docs/ucregd.8

# Integration tests: Python scripts (standard library only) that start a real ucregd.
TEST_EXTENSIONS = .py
PY_LOG_COMPILER = $(PYTHON3)
AM_PY_LOG_FLAGS =
SERVER_TESTS = \
	tests/server/test_daemon.py \
	tests/server/test_blobs.py \
	tests/server/test_packs.py \
	tests/server/test_catalog_list.py \
	tests/server/test_evaluations.py \
	tests/server/test_uploads.py \
	tests/server/test_deploy.py \
	tests/server/test_api_docs.py \
	tests/server/test_mirror.py \
	tests/server/test_hostile_requests.py \
	tests/server/test_cache.py
TESTS += $(SERVER_TESTS)
EXTRA_DIST += $(SERVER_TESTS) tests/server/regtest.py
PYTHON3 = python3

# Writes real packs for the integration tests.
check_PROGRAMS += tests/server/make_pack
tests_server_make_pack_SOURCES = tests/server/make_pack.c
tests_server_make_pack_LDADD = core/libuc_core.la $(OPENSSL_LIBS) $(JANSSON_LIBS) -lm -lpthread

# Catalog concurrency, against the daemon's own catalog code.
check_PROGRAMS += tests/server/test_db
tests_server_test_db_SOURCES = tests/server/test_db.c server/db.c server/log.c
nodist_tests_server_test_db_SOURCES = server/schema_sql.c
tests_server_test_db_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/server -I$(top_srcdir)/tests/unit
tests_server_test_db_CFLAGS = $(UNIT_CFLAGS) $(SQLITE_CFLAGS)
tests_server_test_db_LDADD = $(UNIT_LDADD) $(SQLITE_LIBS)
TESTS += tests/server/test_db
