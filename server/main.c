/* ucregd: the uc-registry daemon. Parses settings, prepares the data directory and the
 * catalog, then either runs a `token` subcommand or serves HTTP until SIGTERM or SIGINT. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "auth.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "mirror.h"
#include "server.h"
#include "settings.h"
#include "snapshot.h"
#include "uploads.h"
#include "workers.h"

#define SHUTDOWN_GRACE_SECONDS 10

reg_server reg_state;

static int make_dir(const char *path)
{
	if (mkdir(path, 0750) == 0 || errno == EEXIST)
		return 0;
	REG_ERROR("cannot create directory %s: %s", path, strerror(errno));
	return -1;
}

/* Builds DATA/blobs/sha256, DATA/tmp and DATA/uploads, and removes partial uploads left by
 * a previous run: they were never visible, so nothing refers to them. */
static int prepare_data_dir(void)
{
	const char *data = reg_state.settings.data_dir;
	char blobs[REG_DIR_MAX];

	if (strlen(data) > REG_DIR_MAX - 64) {
		REG_ERROR("data directory path is longer than %d bytes: %s", REG_DIR_MAX - 64, data);
		return -1;
	}
	snprintf(blobs, sizeof blobs, "%s/blobs", data);
	snprintf(reg_state.blob_dir, sizeof reg_state.blob_dir, "%s/blobs/sha256", data);
	snprintf(reg_state.tmp_dir, sizeof reg_state.tmp_dir, "%s/tmp", data);
	snprintf(reg_state.upload_dir, sizeof reg_state.upload_dir, "%s/uploads", data);
	snprintf(reg_state.catalog, sizeof reg_state.catalog, "%s/catalog.sqlite3", data);
	if (make_dir(data) || make_dir(blobs) || make_dir(reg_state.blob_dir) ||
	    make_dir(reg_state.tmp_dir) || make_dir(reg_state.upload_dir))
		return -1;

	DIR *dir = opendir(reg_state.tmp_dir);
	if (!dir) {
		REG_ERROR("cannot read %s: %s", reg_state.tmp_dir, strerror(errno));
		return -1;
	}
	struct dirent *entry;
	unsigned removed = 0;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.')
			continue;
		char path[REG_PATH_MAX + 256];
		snprintf(path, sizeof path, "%s/%s", reg_state.tmp_dir, entry->d_name);
		if (unlink(path) == 0)
			removed++;
	}
	closedir(dir);
	if (removed)
		REG_INFO("removed %u partial uploads left in %s", removed, reg_state.tmp_dir);
	return 0;
}

static int serve(void)
{
	sigset_t stop_signals;
	int signal_number = 0;

	/* Block the stop signals in every thread; the main thread waits for them below. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (reg_snapshot_load_key(reg_state.settings.data_dir) != 0)
		return 1;
	/* Uploads left by a previous run are kept unless they expired or lost their row. */
	if (reg_uploads_remove_orphans() != 0 || reg_uploads_expire() < 0 ||
	    reg_uploads_start_sweeper() != 0)
		return 1;
	if (reg_workers_start(reg_state.settings.workers) != 0) {
		reg_uploads_stop_sweeper();
		return 1;
	}
	if (reg_state.settings.mirror_of && reg_mirror_start() != 0) {
		reg_workers_stop();
		reg_uploads_stop_sweeper();
		return 1;
	}
	struct MHD_Daemon *daemon = reg_http_start();
	if (!daemon) {
		reg_mirror_stop();
		reg_workers_stop();
		reg_uploads_stop_sweeper();
		return 1;
	}

	sigwait(&stop_signals, &signal_number);
	REG_INFO("received %s; no new connections, finishing requests and jobs",
		 signal_number == SIGTERM ? "SIGTERM" : "SIGINT");
	reg_http_stop(daemon, SHUTDOWN_GRACE_SECONDS);
	reg_mirror_stop();
	reg_workers_stop();
	reg_uploads_stop_sweeper();
	reg_snapshot_unload_key();
	REG_INFO("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	int next = argc;
	int rc;

	switch (reg_settings_parse(&reg_state.settings, argc, argv, &next)) {
	case REG_SETTINGS_EXIT:
		return 0;
	case REG_SETTINGS_ERROR:
		return 2;
	case REG_SETTINGS_RUN:
		break;
	}
	reg_log_threshold = reg_state.settings.log_level;
	if (next < argc && strcmp(argv[next], "token") != 0 && strcmp(argv[next], "keygen") != 0) {
		fprintf(stderr, "ucregd: unknown command '%s'; see ucregd --help\n", argv[next]);
		return 2;
	}

	if (sqlite3_threadsafe() == 0) {
		REG_ERROR("the SQLite library was built without thread support; ucregd needs it");
		return 1;
	}
	if (prepare_data_dir() != 0 || reg_db_init(reg_state.catalog) != 0) {
		reg_db_shutdown();
		return 1;
	}

	if (next < argc && strcmp(argv[next], "keygen") == 0) {
		rc = reg_keygen_command(reg_state.settings.data_dir);
	} else if (next < argc) {
		rc = reg_token_command(argc - next, argv + next);
	} else {
		REG_INFO("ucregd %s starting: data %s, %u verify workers, max blob %llu bytes",
			 PACKAGE_VERSION, reg_state.settings.data_dir, reg_state.settings.workers,
			 (unsigned long long)reg_state.settings.max_blob_size);
		rc = serve();
	}
	reg_db_shutdown();
	return rc;
}
