/* Finishing a pack: digests of what was written (every tensor reconstructed from its shard,
 * every shard), shard files named by digest, the canonical manifest, and the rename that
 * publishes the directory. Also the cleanup of a failed attempt. */
#include "pack_internal.h" /* config.h defines _GNU_SOURCE, needed for renameat2 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Digests of the written bytes: every tensor reconstructed from its shard, and every shard. */
typedef struct {
	const uc_manifest *manifest;
	ucp_shard_map *maps;
	uc_status *status;
	uc_error *errors;
	uint8_t (*digests)[UC_SHA256_BYTES];
} digest_run;

static void digest_tensor(void *ctx, size_t index, unsigned worker)
{
	(void)worker;
	digest_run *run = ctx;
	const uc_manifest_tensor *t = &run->manifest->tensors[index];
	const ucp_shard_map *map = &run->maps[t->shard];
	const uint8_t *span = map->data ? map->data + t->offset : NULL;
	run->status[index] = ucp_tensor_digest(t, span, run->digests[index], &run->errors[index]);
}

static void digest_shard(void *ctx, size_t index, unsigned worker)
{
	(void)worker;
	digest_run *run = ctx;
	const ucp_shard_map *map = &run->maps[index];
	uc_sha256_buffer(map->data ? (const void *)map->data : "", (size_t)map->size, run->digests[index]);
}

static uc_status map_written_shards(ucp_pack_writer *w, ucp_shard_map *maps, uc_error *err)
{
	for (size_t s = 0; s < w->manifest->n_shards; s++) {
		int fd = w->shard_fds[s];
		if (fsync(fd) != 0)
			return ucp_fail(err, UC_ERR_IO, "cannot flush shard %zu to disk: %s", s, strerror(errno));
		maps[s].size = w->manifest->shards[s].size;
		if (maps[s].size == 0)
			continue;
		void *data = mmap(NULL, maps[s].size, PROT_READ, MAP_SHARED, fd, 0);
		if (data == MAP_FAILED) {
			maps[s].size = 0;
			return ucp_fail(err, UC_ERR_IO, "cannot map shard %zu: %s", s, strerror(errno));
		}
		maps[s].data = data;
	}
	return UC_OK;
}

uc_status ucp_pack_digest(ucp_pack_writer *w, uc_error *err)
{
	uc_manifest *m = w->manifest;
	size_t n = m->n_tensors > m->n_shards ? m->n_tensors : m->n_shards;
	ucp_shard_map *maps = ucp_calloc(m->n_shards, sizeof *maps);
	digest_run run = {
		.manifest = m, .maps = maps, .status = ucp_calloc(n, sizeof *run.status),
		.errors = ucp_calloc(n, sizeof *run.errors), .digests = ucp_calloc(n, sizeof *run.digests),
	};
	uc_status rc = UC_OK;
	if (!maps || !run.status || !run.errors || !run.digests) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory hashing %zu tensors", m->n_tensors);
		goto out;
	}
	rc = map_written_shards(w, maps, err);
	if (rc != UC_OK)
		goto out;

	ucp_parallel_run(m->n_tensors, ucp_thread_count(w->threads, m->n_tensors), digest_tensor, &run);
	for (size_t i = 0; i < m->n_tensors && rc == UC_OK; i++) {
		if (run.status[i] != UC_OK)
			rc = ucp_fail(err, run.status[i], "%s", run.errors[i].message);
		memcpy(m->tensors[i].sha256, run.digests[i], UC_SHA256_BYTES);
	}
	if (rc != UC_OK)
		goto out;

	ucp_parallel_run(m->n_shards, ucp_thread_count(w->threads, m->n_shards), digest_shard, &run);
	for (size_t s = 0; s < m->n_shards; s++) {
		memcpy(m->shards[s].sha256, run.digests[s], UC_SHA256_BYTES);
		uc_sha256_to_hex(run.digests[s], m->shard_files[s]);
	}

out:
	for (size_t s = 0; maps && s < m->n_shards; s++)
		ucp_shard_map_close(&maps[s]);
	ucp_free(maps);
	ucp_free(run.status);
	ucp_free(run.errors);
	ucp_free(run.digests);
	return rc;
}

/* Renames shard-N to its digest. Two shards with the same bytes share one file. */
uc_status ucp_pack_name_shards(ucp_pack_writer *w, uc_error *err)
{
	ucp_pack_close_shards(w);
	for (size_t s = 0; s < w->manifest->n_shards; s++) {
		uc_status rc = UC_OK;
		char *from = ucp_pack_temp_shard_path(w, s);
		char *to = ucp_path_join(w->temp_dir, w->manifest->shard_files[s]);
		if (!from || !to)
			rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory naming shard %zu", s);
		else if (rename(from, to) != 0)
			rc = ucp_fail(err, UC_ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
		ucp_free(from);
		ucp_free(to);
		if (rc != UC_OK)
			return rc;
	}
	return UC_OK;
}

static uc_status write_file(const char *path, const char *data, size_t len, uc_error *err)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return ucp_fail(err, UC_ERR_IO, "cannot create %s: %s", path, strerror(errno));
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			uc_status rc = ucp_fail(err, UC_ERR_IO, "cannot write %s: %s", path, strerror(errno));
			close(fd);
			return rc;
		}
		data += n;
		len -= (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0)
		return ucp_fail(err, UC_ERR_IO, "cannot flush %s: %s", path, strerror(errno));
	return UC_OK;
}

uc_status ucp_pack_write_manifest(ucp_pack_writer *w, uc_error *err)
{
	uc_status rc = ucp_manifest_check(w->manifest, err);
	if (rc != UC_OK) {
		ucp_error_prefix(err, "internal error: the written manifest is invalid");
		return rc;
	}

	size_t len = 0;
	char *json = uc_manifest_to_json(w->manifest, &len);
	char *path = ucp_path_join(w->temp_dir, UCP_MANIFEST_FILE);
	if (!json || !path)
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory writing the manifest");
	else
		rc = write_file(path, json, len, err);
	ucp_free(json);
	ucp_free(path);
	return rc;
}

static void sync_directory(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Renames `from` to `to` unless `to` exists. */
static int rename_no_replace(const char *from, const char *to)
{
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;

	/* NOTE: without RENAME_NOREPLACE (old kernels, some file systems) an empty directory
	 * created at `to` between this check and the rename is replaced. */
	struct stat st;
	if (lstat(to, &st) == 0) {
		errno = EEXIST;
		return -1;
	}
	return rename(from, to);
}

static void sync_parent_directory(const char *path)
{
	char *parent = ucp_strdup(path);
	if (!parent)
		return;
	char *slash = strrchr(parent, '/');
	if (!slash)
		sync_directory(".");
	else if (slash == parent)
		sync_directory("/");
	else {
		*slash = '\0';
		sync_directory(parent);
	}
	ucp_free(parent);
}

/* Moves the finished directory into place without replacing anything already there. */
uc_status ucp_pack_publish(ucp_pack_writer *w, uc_error *err)
{
	sync_directory(w->temp_dir);
	if (rename_no_replace(w->temp_dir, w->out_dir) != 0) {
		if (errno == EEXIST || errno == ENOTEMPTY)
			return ucp_fail(err, UC_ERR_INVALID,
					"output directory %s already exists; choose a new path or remove it",
					w->out_dir);
		return ucp_fail(err, UC_ERR_IO, "cannot rename %s to %s: %s", w->temp_dir, w->out_dir,
				strerror(errno));
	}
	sync_parent_directory(w->out_dir);
	return UC_OK;
}

/* Removes the temporary directory and the files this writer put in it. */
void ucp_pack_remove_temp_dir(const char *path)
{
	DIR *dir = opendir(path);
	if (dir) {
		struct dirent *entry;
		while ((entry = readdir(dir)) != NULL) {
			if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
				unlinkat(dirfd(dir), entry->d_name, 0);
		}
		closedir(dir);
	}
	rmdir(path);
}
