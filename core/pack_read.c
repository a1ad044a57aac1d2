/* Reading a pack: shard files mapped read-only, and tensors rebuilt in cache-sized chunks
 * that are handed to a callback (or hashed) as they are produced. */
#include "pack_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct uc_pack {
	uc_manifest *manifest;
	ucp_shard_map *maps;
	uint8_t manifest_sha256[UC_SHA256_BYTES];
};

char *ucp_path_join(const char *dir, const char *name)
{
	size_t dir_len = strlen(dir), name_len = strlen(name);
	char *path = ucp_malloc(dir_len + name_len + 2);
	if (!path)
		return NULL;
	memcpy(path, dir, dir_len);
	path[dir_len] = '/';
	memcpy(path + dir_len + 1, name, name_len + 1);
	return path;
}

uc_status ucp_read_file(const char *path, size_t max_bytes, char **out, size_t *len, uc_error *err)
{
	uc_status rc = UC_OK;
	char *buf = NULL;
	struct stat st;

	*out = NULL;
	/* O_NONBLOCK keeps open() from waiting for a writer when path is a FIFO, so fstat can
	 * reject it. Reads of a regular file ignore the flag. */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return ucp_fail(err, UC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = ucp_fail(err, UC_ERR_IO, "%s is not a readable regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max_bytes) {
		rc = ucp_fail(err, UC_ERR_FORMAT, "%s is %lld bytes; the limit is %zu", path,
			      (long long)st.st_size, max_bytes);
		goto out;
	}

	size_t size = (size_t)st.st_size, got = 0;
	buf = ucp_malloc(size + 1);
	if (!buf) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, size);
		goto out;
	}
	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = ucp_fail(err, UC_ERR_IO, "cannot read %s: %s", path,
				      n < 0 ? strerror(errno) : "file shrank while reading");
			goto out;
		}
		got += (size_t)n;
	}
	buf[size] = '\0';
	*out = buf;
	*len = size;
	buf = NULL;

out:
	ucp_free(buf);
	close(fd);
	return rc;
}

uc_status ucp_shard_map_open(const char *dir, const uc_manifest_shard *shard, ucp_shard_map *map,
			     uc_error *err)
{
	uc_status rc = UC_OK;
	struct stat st;
	int fd = -1;

	*map = (ucp_shard_map){0};
	char *path = ucp_path_join(dir, shard->file);
	if (!path)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory opening shard %s", shard->file);

	/* As in ucp_read_file, O_NONBLOCK stops a FIFO in place of a shard from blocking open(). */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		rc = ucp_fail(err, UC_ERR_STRUCTURE, "shard file %s is missing from %s", shard->file, dir);
		goto out;
	}
	if (fd < 0 || fstat(fd, &st) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "cannot open shard file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = ucp_fail(err, UC_ERR_STRUCTURE, "shard file %s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size != shard->size) {
		rc = ucp_fail(err, UC_ERR_STRUCTURE,
			      "shard file %s is %lld bytes but the manifest declares %llu bytes", shard->file,
			      (long long)st.st_size, (unsigned long long)shard->size);
		goto out;
	}

	/* NOTE: a shard file truncated by another process while mapped raises SIGBUS on access;
	 * packs and registry blobs are never modified in place. */
	map->size = shard->size;
	if (shard->size > 0) {
		void *data = mmap(NULL, shard->size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (data == MAP_FAILED) {
			rc = ucp_fail(err, UC_ERR_IO, "cannot map shard file %s: %s", path, strerror(errno));
			map->size = 0;
			goto out;
		}
		map->data = data;
	}

out:
	if (fd >= 0)
		close(fd);
	ucp_free(path);
	return rc;
}

void ucp_shard_map_close(ucp_shard_map *map)
{
	if (map->data)
		munmap((void *)map->data, map->size);
	*map = (ucp_shard_map){0};
}

static uc_status reconstruct_raw(const uc_manifest_tensor *tensor, const uint8_t *span,
				 uc_chunk_fn sink, void *ctx, uc_error *err)
{
	for (uint64_t done = 0; done < tensor->length;) {
		uint64_t piece = tensor->length - done;
		if (piece > UC_RECONSTRUCT_CHUNK_BYTES)
			piece = UC_RECONSTRUCT_CHUNK_BYTES;
		uc_status rc = sink(ctx, span + done, (size_t)piece, err);
		if (rc != UC_OK)
			return rc;
		done += piece;
	}
	return UC_OK;
}

static uc_status reconstruct_uc5(const uc_manifest_tensor *tensor, const uint8_t *span,
				 uint8_t *scratch, uc_chunk_fn sink, void *ctx, uc_error *err)
{
	size_t element = ucp_dtype_bytes(tensor->dtype);
	/* Whole super-blocks per chunk, because uc5_decode starts at a block boundary. */
	uint64_t chunk = UC_RECONSTRUCT_CHUNK_BYTES / element / UC5_BLOCK_WEIGHTS * UC5_BLOCK_WEIGHTS;

	for (uint64_t first = 0; first < tensor->n_elements; first += chunk) {
		uint64_t count = tensor->n_elements - first;
		if (count > chunk)
			count = chunk;
		uc_status rc = uc5_decode(span, tensor->n_elements, first, count, tensor->dtype, scratch, err);
		if (rc != UC_OK) {
			ucp_error_prefix(err, "tensor %s", tensor->name);
			return rc;
		}
		rc = sink(ctx, scratch, (size_t)(count * element), err);
		if (rc != UC_OK)
			return rc;
	}
	return UC_OK;
}

uc_status ucp_tensor_reconstruct(const uc_manifest_tensor *tensor, const uint8_t *span,
				 uint8_t *scratch, uc_chunk_fn sink, void *ctx, uc_error *err)
{
	if (tensor->encoding == UC_ENCODING_RAW)
		return reconstruct_raw(tensor, span, sink, ctx, err);
	return reconstruct_uc5(tensor, span, scratch, sink, ctx, err);
}

static uc_status hash_chunk(void *ctx, const void *data, size_t len, uc_error *err)
{
	(void)err;
	uc_sha256_update(ctx, data, len);
	return UC_OK;
}

uc_status ucp_tensor_digest(const uc_manifest_tensor *tensor, const uint8_t *span,
			    uint8_t digest[UC_SHA256_BYTES], uc_error *err)
{
	uc_sha256 *sha = uc_sha256_new();
	uint8_t *scratch = ucp_malloc(UC_RECONSTRUCT_CHUNK_BYTES);
	uc_status rc = UC_OK;

	if (!sha || !scratch) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory reconstructing tensor %s", tensor->name);
		goto out;
	}
	rc = ucp_tensor_reconstruct(tensor, span, scratch, hash_chunk, sha, err);
	if (rc == UC_OK)
		uc_sha256_final(sha, digest);

out:
	ucp_free(scratch);
	uc_sha256_free(sha);
	return rc;
}

void uc_pack_close(uc_pack *pack)
{
	if (!pack)
		return;
	if (pack->maps) {
		for (size_t i = 0; i < pack->manifest->n_shards; i++)
			ucp_shard_map_close(&pack->maps[i]);
	}
	ucp_free(pack->maps);
	uc_manifest_free(pack->manifest);
	ucp_free(pack);
}

static uc_status load_manifest(const char *dir, uc_pack *pack, uc_error *err)
{
	char *json = NULL;
	size_t len = 0;
	char *path = ucp_path_join(dir, UCP_MANIFEST_FILE);
	if (!path)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory opening pack %s", dir);

	uc_status rc = ucp_read_file(path, UCP_MANIFEST_MAX_BYTES, &json, &len, err);
	if (rc == UC_OK) {
		uc_sha256_buffer(json, len, pack->manifest_sha256);
		rc = uc_manifest_parse(json, len, &pack->manifest, err);
		if (rc != UC_OK)
			ucp_error_prefix(err, "%s", path);
	}
	ucp_free(json);
	ucp_free(path);
	return rc;
}

uc_status uc_pack_open(const char *dir, uc_pack **out, uc_error *err)
{
	uc_status rc = UC_OK;
	uc_pack *pack = NULL;

	*out = NULL;
	uc_error_clear(err);
	pack = ucp_calloc(1, sizeof *pack);
	if (!pack)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory opening pack %s", dir);

	rc = load_manifest(dir, pack, err);
	if (rc != UC_OK)
		goto out;

	pack->maps = ucp_calloc(pack->manifest->n_shards, sizeof *pack->maps);
	if (!pack->maps) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory mapping %zu shards of %s",
			      pack->manifest->n_shards, dir);
		goto out;
	}
	for (size_t i = 0; i < pack->manifest->n_shards && rc == UC_OK; i++)
		rc = ucp_shard_map_open(dir, &pack->manifest->shards[i], &pack->maps[i], err);

out:
	if (rc != UC_OK) {
		uc_pack_close(pack);
		pack = NULL;
	}
	*out = pack;
	return rc;
}

const uint8_t *ucp_pack_span(const uc_pack *pack, size_t tensor_index)
{
	const uc_manifest_tensor *tensor = &pack->manifest->tensors[tensor_index];
	const ucp_shard_map *map = &pack->maps[tensor->shard];
	return map->data ? map->data + tensor->offset : NULL;
}

const uc_manifest *uc_pack_manifest(const uc_pack *pack)
{
	return pack->manifest;
}

void uc_pack_manifest_sha256(const uc_pack *pack, uint8_t digest[UC_SHA256_BYTES])
{
	memcpy(digest, pack->manifest_sha256, UC_SHA256_BYTES);
}

uc_status uc_pack_reconstruct(const uc_pack *pack, size_t tensor_index, uc_chunk_fn chunk, void *ctx,
			      uc_error *err)
{
	uc_error_clear(err);
	if (tensor_index >= pack->manifest->n_tensors)
		return ucp_fail(err, UC_ERR_INVALID, "tensor index %zu is out of range (the pack has %zu tensors)",
				tensor_index, pack->manifest->n_tensors);

	const uc_manifest_tensor *tensor = &pack->manifest->tensors[tensor_index];
	uint8_t *scratch = ucp_malloc(UC_RECONSTRUCT_CHUNK_BYTES);
	if (!scratch)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory reconstructing tensor %s", tensor->name);

	/* A zero-length span may sit in an empty shard, which has no mapping. */
	uc_status rc = ucp_tensor_reconstruct(tensor, ucp_pack_span(pack, tensor_index), scratch, chunk,
					      ctx, err);
	ucp_free(scratch);
	return rc;
}
