/* State shared by the daemon's HTTP handlers and workers, set once at start. */
#ifndef REG_SERVER_H
#define REG_SERVER_H

#include <stdatomic.h>
#include <stdint.h>

#include "settings.h"

/* Directories are kept shorter than file paths, so a directory plus a file name always fits. */
#define REG_PATH_MAX 4096
#define REG_DIR_MAX 3840

typedef struct {
	reg_settings settings;
	char blob_dir[REG_DIR_MAX];   /* DATA/blobs/sha256 */
	char tmp_dir[REG_DIR_MAX];    /* DATA/tmp: partial uploads, same file system */
	char upload_dir[REG_DIR_MAX]; /* DATA/uploads: resumable uploads */
	char catalog[REG_DIR_MAX];    /* DATA/catalog.sqlite3 */

	/* Prometheus counters. */
	_Atomic uint64_t requests_by_class[6]; /* index: status / 100 */
	_Atomic uint64_t bytes_received;
	_Atomic uint64_t bytes_sent;
	_Atomic uint64_t verify_runs;
	_Atomic uint64_t verify_microseconds;
} reg_server;

extern reg_server reg_state;

#endif
