/* Pack writing: check the options, plan the layout from shapes alone, and encode chunks in
 * parallel straight into the shard files. pack_publish.c finishes the pack. */
#include "pack_internal.h" /* config.h defines _GNU_SOURCE, needed for renameat2 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* SQNR values are kept inside this range so a tensor of zeros with a nonzero error still
 * has a finite value in the manifest. */
#define SQNR_LIMIT_DB 999.0


void uc_pack_options_init(uc_pack_options *options)
{
	*options = (uc_pack_options){0};
	options->dtype = UC_DTYPE_BF16;
}

static uc_status check_text_option(const char *what, const char *text, size_t max_bytes,
				   int multiline, uc_error *err)
{
	char why[128];
	if (text && ucp_text_check(text, strlen(text), max_bytes, multiline, why, sizeof why) != 0)
		return ucp_fail(err, UC_ERR_INVALID, "%s %s", what, why);
	return UC_OK;
}

static uc_status check_options(const uc_pack_options *o, const char *out_dir, uc_error *err)
{
	if (!uc_family_valid(o->family))
		return ucp_fail(err, UC_ERR_INVALID,
				"model family \"%s\" is invalid; use dense, moe, ssm, recurrent, hybrid, vit or other",
				o->family ? o->family : "(none)");
	if (o->dtype != UC_DTYPE_BF16 && o->dtype != UC_DTYPE_F16 && o->dtype != UC_DTYPE_F32)
		return ucp_fail(err, UC_ERR_INVALID, "target dtype %d is invalid; use bf16, f16 or f32",
				(int)o->dtype);

	uc_status rc = check_text_option("model name", o->name, UCP_TEXT_FIELD_MAX_BYTES, 0, err);
	if (rc == UC_OK)
		rc = check_text_option("source model", o->source_model, UCP_TEXT_FIELD_MAX_BYTES, 0, err);
	if (rc == UC_OK)
		rc = check_text_option("license", o->license, UCP_TEXT_FIELD_MAX_BYTES, 0, err);
	if (rc != UC_OK)
		return rc;

	if (*out_dir == '\0')
		return ucp_fail(err, UC_ERR_INVALID,
				"output directory path is empty; give the pack directory to create");
	struct stat st;
	if (lstat(out_dir, &st) == 0)
		return ucp_fail(err, UC_ERR_INVALID,
				"output directory %s already exists; choose a new path or remove it", out_dir);
	return UC_OK;
}

/* The default model name: the last component of the output directory. */
static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static uc_status describe_model(ucp_pack_writer *w, uc_error *err)
{
	uc_manifest *m = w->manifest;
	const char *config = uc_source_metadata(w->src, "config");
	char why[128];
	if (config && ucp_text_check(config, strlen(config), UCP_CONFIG_MAX_BYTES, 1, why, sizeof why) != 0)
		return ucp_fail(err, UC_ERR_FORMAT, "source metadata \"config\" %s; fix it in the checkpoint",
				why);

	const char *name = w->options.name ? w->options.name : base_name(w->out_dir);
	m->name = ucp_strdup(name);
	m->family = ucp_strdup(w->options.family);
	m->created_by = ucp_strdup(UCP_CREATED_BY);
	m->source_model = w->options.source_model ? ucp_strdup(w->options.source_model) : NULL;
	m->license = w->options.license ? ucp_strdup(w->options.license) : NULL;
	m->config = config ? ucp_strdup(config) : NULL;
	if (!m->name || !m->family || !m->created_by || (w->options.source_model && !m->source_model) ||
	    (w->options.license && !m->license) || (config && !m->config))
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory describing model %s", name);
	return check_text_option("model name", m->name, UCP_TEXT_FIELD_MAX_BYTES, 0, err);
}

/* Fills name, shape, dtype and the first-choice encoding of every tensor: uc5 for 2-D
 * tensors, raw for everything else. */
static uc_status describe_tensors(ucp_pack_writer *w, uc_error *err)
{
	for (size_t i = 0; i < w->manifest->n_tensors; i++) {
		const uc_tensor_view *view = uc_source_tensor(w->src, i);
		uc_manifest_tensor *t = &w->manifest->tensors[i];
		w->views[i] = view;

		/* The name comes from the checkpoint, so a bad one is malformed input, not a bad option. */
		char why[128];
		if (ucp_text_check(view->name, strlen(view->name), UCP_TENSOR_NAME_MAX_BYTES, 0, why,
				   sizeof why) != 0)
			return ucp_fail(err, UC_ERR_FORMAT,
					"tensor %zu of the source: name %s; rename it in the checkpoint", i, why);
		t->name = ucp_strdup(view->name);
		if (!t->name)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory copying tensor name %s", view->name);

		t->ndim = view->ndim;
		memcpy(t->shape, view->shape, sizeof t->shape);
		t->n_elements = view->n_elements;
		t->dtype = w->options.dtype;
		t->encoding = view->ndim == 2 ? UC_ENCODING_UC5 : UC_ENCODING_RAW;
	}
	return UC_OK;
}

/* Places tensors in manifest order at 64-byte-aligned offsets. A shard is closed when the
 * next tensor would end past the limit; a tensor larger than the limit gets its own shard.
 * The layout depends only on shapes, dtype and encodings. */
static uc_status plan_layout(uc_manifest *m, uint64_t limit, uc_error *err)
{
	size_t shard = 0;
	uint64_t cursor = 0;
	int shard_used = 0;

	m->tensor_bytes = m->parameters = 0;
	for (size_t i = 0; i < m->n_tensors; i++) {
		uc_manifest_tensor *t = &m->tensors[i];
		if (ucp_encoded_length(t->n_elements, t->dtype, t->encoding, &t->length) != 0)
			return ucp_fail(err, UC_ERR_RANGE, "tensor %s is too large to encode", t->name);

		uint64_t offset = (cursor + UCP_TENSOR_ALIGNMENT - 1) / UCP_TENSOR_ALIGNMENT * UCP_TENSOR_ALIGNMENT;
		if (shard_used && (offset > limit || t->length > limit - offset)) {
			m->shards[shard].size = cursor;
			shard++;
			offset = 0;
		}
		t->shard = (uint32_t)shard;
		t->offset = offset;
		cursor = offset + t->length;
		shard_used = 1;
		m->parameters += t->n_elements;
		m->tensor_bytes += t->length;
	}
	m->shards[shard].size = cursor;
	m->n_shards = shard + 1;

	m->shard_bytes = 0;
	for (size_t s = 0; s < m->n_shards; s++)
		m->shard_bytes += m->shards[s].size;
	m->bits_per_weight = m->parameters ? (double)m->shard_bytes * 8.0 / (double)m->parameters : 0.0;
	return UC_OK;
}

void ucp_pack_close_shards(ucp_pack_writer *w)
{
	for (size_t s = 0; s < w->open_shards; s++) {
		if (w->shard_fds[s] >= 0)
			close(w->shard_fds[s]);
		w->shard_fds[s] = -1;
	}
	w->open_shards = 0;
}

char *ucp_pack_temp_shard_path(const ucp_pack_writer *w, size_t shard)
{
	char name[32];
	snprintf(name, sizeof name, "shard-%zu", shard);
	return ucp_path_join(w->temp_dir, name);
}

/* Creates (or truncates) every planned shard file at its final size, so gaps are zeros. */
static uc_status open_shards(ucp_pack_writer *w, uc_error *err)
{
	ucp_pack_close_shards(w);
	for (size_t s = 0; s < w->manifest->n_shards; s++) {
		char *path = ucp_pack_temp_shard_path(w, s);
		if (!path)
			return ucp_fail(err, UC_ERR_NOMEM, "out of memory creating shard %zu", s);

		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0)
			w->shard_fds[w->open_shards++] = fd;
		if (fd < 0 || ftruncate(fd, (off_t)w->manifest->shards[s].size) != 0) {
			uc_status rc = ucp_fail(err, UC_ERR_IO, "cannot create shard file %s: %s", path,
						strerror(errno));
			ucp_free(path);
			return rc;
		}
		ucp_free(path);
	}

	/* A second pass may need fewer shards; drop the files of the first that are not reused. */
	for (size_t s = w->manifest->n_shards; s < w->created_shards; s++) {
		char *path = ucp_pack_temp_shard_path(w, s);
		if (path)
			unlink(path);
		ucp_free(path);
	}
	if (w->manifest->n_shards > w->created_shards)
		w->created_shards = w->manifest->n_shards;
	return UC_OK;
}

static uc_status make_chunks(ucp_pack_writer *w, uc_error *err)
{
	size_t count = 0;
	for (size_t i = 0; i < w->manifest->n_tensors; i++)
		count += (size_t)((w->manifest->tensors[i].n_elements + UCP_PACK_CHUNK_WEIGHTS - 1) /
				  UCP_PACK_CHUNK_WEIGHTS);

	w->chunks = ucp_calloc(count, sizeof *w->chunks);
	w->results = ucp_calloc(count, sizeof *w->results);
	if (!w->chunks || !w->results)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory planning %zu chunks", count);
	w->n_chunks = count;

	/* Each encoding thread needs its own buffers, so start no more threads than chunks. */
	w->threads = ucp_thread_count(w->options.threads, count);

	size_t c = 0;
	for (size_t i = 0; i < w->manifest->n_tensors; i++) {
		uint64_t n = w->manifest->tensors[i].n_elements;
		for (uint64_t first = 0; first < n; first += UCP_PACK_CHUNK_WEIGHTS) {
			uint64_t left = n - first;
			w->chunks[c++] = (ucp_chunk){.tensor = i, .first = first,
						     .count = left < UCP_PACK_CHUNK_WEIGHTS ? left : UCP_PACK_CHUNK_WEIGHTS};
		}
	}
	return UC_OK;
}

/* Runs one encoding pass. Sets *fallbacks to the number of uc5 tensors that the codec
 * rejected with UC_ERR_RANGE; they are switched to raw for the next pass. */
static uc_status encode_pass(ucp_pack_writer *w, ucp_encode_buffers *buffers, int *fallback,
			     size_t *fallbacks, uc_error *err)
{
	ucp_progress progress;
	if (ucp_progress_init(&progress, w->options.progress, w->options.progress_ctx,
			      w->manifest->parameters) != 0)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory starting the pack");

	memset(w->results, 0, w->n_chunks * sizeof *w->results);
	ucp_encode_pass pass = {
		.views = w->views, .manifest = w->manifest, .shard_fds = w->shard_fds,
		.chunks = w->chunks, .results = w->results, .range_fallback = fallback,
		.buffers = buffers, .first_failure = SIZE_MAX, .progress = &progress,
	};
	ucp_parallel_run(w->n_chunks, w->threads, ucp_encode_chunk, &pass);
	ucp_progress_destroy(&progress);

	if (pass.first_failure != SIZE_MAX) {
		const ucp_chunk_result *failed = &w->results[pass.first_failure];
		return ucp_fail(err, failed->status, "%s", failed->err.message);
	}

	*fallbacks = 0;
	for (size_t i = 0; i < w->manifest->n_tensors; i++) {
		if (fallback[i]) {
			w->manifest->tensors[i].encoding = UC_ENCODING_RAW;
			fallback[i] = 0;
			(*fallbacks)++;
		}
	}
	return UC_OK;
}

/* Encodes every tensor into the shard files. A tensor the codec cannot represent is stored
 * raw, which changes the layout, so the pass runs once more with the new plan. */
static uc_status encode_all(ucp_pack_writer *w, uc_error *err)
{
	uc_status rc = UC_OK;
	int *fallback = ucp_calloc(w->manifest->n_tensors, sizeof *fallback);
	ucp_encode_buffers *buffers = ucp_calloc(w->threads, sizeof *buffers);
	if (!fallback || !buffers) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory starting the pack");
		goto out;
	}
	for (unsigned t = 0; t < w->threads; t++) {
		if (ucp_encode_buffers_init(&buffers[t]) != 0) {
			rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory for encoding buffers");
			goto out;
		}
	}

	for (int attempt = 0; attempt < 2; attempt++) {
		size_t fallbacks = 0;
		rc = open_shards(w, err);
		if (rc == UC_OK)
			rc = encode_pass(w, buffers, fallback, &fallbacks, err);
		if (rc != UC_OK || fallbacks == 0)
			goto out;
		rc = plan_layout(w->manifest, w->options.shard_size_limit, err);
		if (rc != UC_OK)
			goto out;
	}
	/* The second pass stores every rejected tensor raw, and raw encoding cannot be rejected. */
	rc = ucp_fail(err, UC_ERR_RANGE, "internal error: uc5 fallback did not settle after two passes");

out:
	for (unsigned t = 0; buffers && t < w->threads; t++)
		ucp_encode_buffers_free(&buffers[t]);
	ucp_free(buffers);
	ucp_free(fallback);
	return rc;
}

static double sqnr_db(double signal, double noise)
{
	if (noise == 0)
		return NAN;
	double db = signal > 0 ? 10.0 * log10(signal / noise) : -SQNR_LIMIT_DB;
	return fmax(-SQNR_LIMIT_DB, fmin(SQNR_LIMIT_DB, db));
}

/* Adds the chunk partial sums in chunk order: the same sums for every thread count. */
static void sum_fidelity(ucp_pack_writer *w)
{
	uc_manifest *m = w->manifest;
	double total_signal = 0, total_noise = 0;
	size_t c = 0;
	for (size_t i = 0; i < m->n_tensors; i++) {
		double signal = 0, noise = 0, max_error = 0;
		for (; c < w->n_chunks && w->chunks[c].tensor == i; c++) {
			signal += w->results[c].signal;
			noise += w->results[c].noise;
			max_error = fmax(max_error, w->results[c].max_error);
		}
		m->tensors[i].sqnr_db = sqnr_db(signal, noise);
		m->tensors[i].max_abs_error = max_error;
		total_signal += signal;
		total_noise += noise;
	}
	m->sqnr_db = sqnr_db(total_signal, total_noise);
}

static uc_status start_writer(ucp_pack_writer *w, const uc_source *src, const char *out_dir,
			      const uc_pack_options *options, uc_error *err)
{
	w->src = src;
	w->options = *options;
	if (w->options.shard_size_limit == 0)
		w->options.shard_size_limit = UC_DEFAULT_SHARD_LIMIT;

	size_t n = uc_source_tensor_count(src);
	if (n == 0)
		return ucp_fail(err, UC_ERR_FORMAT, "the source has no tensors; there is nothing to pack");

	size_t len = strlen(out_dir);
	while (len > 1 && out_dir[len - 1] == '/')
		len--;
	w->out_dir = ucp_malloc(len + 1);
	w->temp_dir = ucp_malloc(len + sizeof ".partial-XXXXXX");
	w->manifest = ucp_manifest_alloc(n, n);
	w->views = ucp_calloc(n, sizeof *w->views);
	w->shard_fds = ucp_calloc(n, sizeof *w->shard_fds);
	if (!w->out_dir || !w->temp_dir || !w->manifest || !w->views || !w->shard_fds)
		return ucp_fail(err, UC_ERR_NOMEM, "out of memory starting the pack of %zu tensors", n);
	memcpy(w->out_dir, out_dir, len);
	w->out_dir[len] = '\0';
	snprintf(w->temp_dir, len + sizeof ".partial-XXXXXX", "%s.partial-XXXXXX", w->out_dir);

	uc_status rc = describe_model(w, err);
	if (rc == UC_OK)
		rc = describe_tensors(w, err);
	if (rc == UC_OK)
		rc = plan_layout(w->manifest, w->options.shard_size_limit, err);
	return rc;
}

static void free_writer(ucp_pack_writer *w, int remove_temp)
{
	ucp_pack_close_shards(w);
	if (remove_temp)
		ucp_pack_remove_temp_dir(w->temp_dir);
	uc_manifest_free(w->manifest);
	ucp_free(w->views);
	ucp_free(w->shard_fds);
	ucp_free(w->chunks);
	ucp_free(w->results);
	ucp_free(w->out_dir);
	ucp_free(w->temp_dir);
}

uc_status uc_pack_write(const uc_source *src, const char *out_dir, const uc_pack_options *options,
			uc_error *err)
{
	ucp_pack_writer w = {0};
	int temp_created = 0;

	uc_error_clear(err);
	if (!src || !out_dir || !options)
		return ucp_fail(err, UC_ERR_INVALID, "uc_pack_write needs a source, an output directory and options");

	uc_status rc = check_options(options, out_dir, err);
	if (rc == UC_OK)
		rc = uc_isa_init(err);
	if (rc == UC_OK)
		rc = start_writer(&w, src, out_dir, options, err);
	if (rc != UC_OK)
		goto out;

	if (!mkdtemp(w.temp_dir)) {
		rc = ucp_fail(err, UC_ERR_IO, "cannot create a temporary directory beside %s: %s", w.out_dir,
			      strerror(errno));
		goto out;
	}
	temp_created = 1;
	/* mkdtemp creates the directory 0700, but a published pack is readable by all, as the
	 * 0644 shard files inside it are. */
	if (chmod(w.temp_dir, 0755) != 0) {
		rc = ucp_fail(err, UC_ERR_IO, "cannot set the permissions of %s: %s", w.temp_dir,
			      strerror(errno));
		goto out;
	}

	rc = make_chunks(&w, err);
	if (rc == UC_OK)
		rc = encode_all(&w, err);
	if (rc == UC_OK) {
		sum_fidelity(&w);
		rc = ucp_pack_digest(&w, err);
	}
	if (rc == UC_OK)
		rc = ucp_pack_name_shards(&w, err);
	if (rc == UC_OK)
		rc = ucp_pack_write_manifest(&w, err);
	if (rc == UC_OK)
		rc = ucp_pack_publish(&w, err);

out:
	free_writer(&w, temp_created && rc != UC_OK);
	return rc;
}
