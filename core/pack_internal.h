/* Private to the pack modules (manifest, writer, reader, verifier): the in-memory form of a
 * manifest, shard mapping, fused reconstruction and hashing, and the parallel loop. Nothing
 * here is exported. */
#ifndef UC_PACK_INTERNAL_H
#define UC_PACK_INTERNAL_H

#include "internal.h"
#include "uc.h"

#define UCP_MANIFEST_FILE "manifest.json"
#define UCP_FORMAT_NAME "uc-pack"
#define UCP_CREATED_BY "uc " UC_VERSION_STRING

/* Limits on untrusted manifests. They bound memory and report sizes, not model sizes.
 * NOTE: the bound on memory is loose. jansson builds the whole tree before any rule is
 * checked, and a 200 MB manifest of small integers took about 4 GB and 17 s to reject
 * (measured with 'uc verify' on x86-64, jansson 2.14). */
#define UCP_MANIFEST_MAX_BYTES ((size_t)256 << 20)
#define UCP_TENSOR_NAME_MAX_BYTES 1024
#define UCP_TEXT_FIELD_MAX_BYTES 4096
#define UCP_CONFIG_MAX_BYTES ((size_t)1 << 20)

/* Every tensor starts at a multiple of this many bytes inside its shard. */
#define UCP_TENSOR_ALIGNMENT 64

/* Reals in a canonical manifest carry this many significant digits. */
#define UCP_REAL_DIGITS 6

/* Shard file names are the 64 hex digits of their SHA-256 plus a NUL. */
typedef char ucp_shard_file_name[UC_SHA256_HEX_CHARS + 1];

struct uc_manifest {
	/* model object; source_model, license and config are NULL when the manifest has null */
	char *name;
	char *family;
	char *source_model;
	char *license;
	char *config;
	char *created_by;

	/* totals object; sqnr_db is NAN for null */
	uint64_t parameters;
	uint64_t tensor_bytes;
	uint64_t shard_bytes;
	double bits_per_weight;
	double sqnr_db;

	size_t n_shards;
	uc_manifest_shard *shards;        /* shards[i].file points into shard_files[i] */
	ucp_shard_file_name *shard_files;

	size_t n_tensors;
	uc_manifest_tensor *tensors;      /* names owned, freed by uc_manifest_free */
};

/* Allocates an empty manifest with room for the given counts (zeroed entries). NULL when
 * out of memory. Freed with uc_manifest_free. */
uc_manifest *ucp_manifest_alloc(size_t n_shards, size_t n_tensors);

/* Checks a manifest string of `len` bytes: 1..max_bytes long, valid UTF-8, no NUL, no
 * control characters (C0, DEL or C1) except newline, carriage return and tab when
 * `multiline`. Returns 0, or -1 with the reason in `why` (a phrase such as "contains
 * control character 0x01 at byte 5"). */
int ucp_text_check(const char *text, size_t len, size_t max_bytes, int multiline, char *why,
		   size_t why_size);

/* Bytes a tensor occupies in its shard for its element count, dtype and encoding. -1 when
 * the count overflows. */
int ucp_encoded_length(uint64_t n_elements, uc_dtype dtype, uc_encoding encoding, uint64_t *out);

/* Size in bytes of one element of a target dtype (dtypes the manifest can name). */
size_t ucp_dtype_bytes(uc_dtype dtype);
const char *ucp_dtype_text(uc_dtype dtype);
const char *ucp_encoding_text(uc_encoding encoding);

/* Checks cross-field rules of a filled manifest: spans inside shards, no overlaps, unique
 * names, totals consistent with the tensors. Used by the parser and, as a self-check, by
 * the writer. */
uc_status ucp_manifest_check(const uc_manifest *manifest, uc_error *err);

/* A shard file mapped read-only. `data` is NULL for an empty file. */
typedef struct {
	const uint8_t *data;
	uint64_t size;
} ucp_shard_map;

/* Opens `dir`/`shard->file`, checks its size against the manifest (UC_ERR_STRUCTURE naming
 * the file and both sizes; a missing file is UC_ERR_STRUCTURE too) and maps it. */
uc_status ucp_shard_map_open(const char *dir, const uc_manifest_shard *shard, ucp_shard_map *map,
			     uc_error *err);
void ucp_shard_map_close(ucp_shard_map *map);

/* Returns the encoded bytes of tensor `tensor_index` of an open pack (NULL for an empty
 * shard, which has no mapping). */
const uint8_t *ucp_pack_span(const uc_pack *pack, size_t tensor_index);

/* Rebuilds `tensor` from its encoded bytes `span` (tensor->length bytes) in pieces of at
 * most UC_RECONSTRUCT_CHUNK_BYTES, handing each to `sink`. `scratch` has room for
 * UC_RECONSTRUCT_CHUNK_BYTES bytes and is only used for uc5 tensors. */
uc_status ucp_tensor_reconstruct(const uc_manifest_tensor *tensor, const uint8_t *span,
				 uint8_t *scratch, uc_chunk_fn sink, void *ctx, uc_error *err);

/* Reconstructs `tensor` and returns the SHA-256 of the reconstructed bytes. */
uc_status ucp_tensor_digest(const uc_manifest_tensor *tensor, const uint8_t *span,
			    uint8_t digest[UC_SHA256_BYTES], uc_error *err);

/* Number of threads to use for a request of `requested` (0 means the online CPUs),
 * never more than `items` and never less than 1. */
unsigned ucp_thread_count(unsigned requested, size_t items);

/* Calls task(ctx, index, worker) once for every index in [0, count) on `threads` threads
 * (the caller's included); `worker` is in [0, threads). Indices are handed out in increasing
 * order. Tasks report their own failures through ctx. If a thread cannot be started, the
 * remaining threads do its share. */
typedef void (*ucp_task_fn)(void *ctx, size_t index, unsigned worker);
void ucp_parallel_run(size_t count, unsigned threads, ucp_task_fn task, void *ctx);

/* Serialised progress reporting shared by the workers of one run. */
typedef struct {
	uc_progress_fn fn;
	void *ctx;
	uint64_t done;
	uint64_t total;
	void *lock; /* pthread_mutex_t, private to threadpool.c */
} ucp_progress;

int ucp_progress_init(ucp_progress *progress, uc_progress_fn fn, void *ctx, uint64_t total);
void ucp_progress_add(ucp_progress *progress, uint64_t units);
void ucp_progress_destroy(ucp_progress *progress);

/* Reads a whole file of at most `max_bytes` into a new buffer (ucp_free) with a NUL after
 * the data. UC_ERR_IO when it cannot be read, UC_ERR_FORMAT when it is larger. */
uc_status ucp_read_file(const char *path, size_t max_bytes, char **out, size_t *len, uc_error *err);

/* Joins a directory and a file name into a new string (ucp_free); NULL when out of memory. */
char *ucp_path_join(const char *dir, const char *name);

/* Pack writing: tensors are encoded in chunks of this many weights (whole uc5 super-blocks),
 * so several threads share a large tensor. Fidelity sums are kept per chunk and added in
 * chunk order, so the manifest does not depend on the thread count. */
#define UCP_PACK_CHUNK_WEIGHTS ((uint64_t)1 << 16)

typedef struct {
	size_t tensor;
	uint64_t first;
	uint64_t count;
} ucp_chunk;

/* Outcome of one chunk: fidelity partial sums, or the failure that stops the pack. */
typedef struct {
	double signal;    /* sum of source^2 */
	double noise;     /* sum of (source - reconstructed)^2 */
	double max_error;
	uc_status status;
	uc_error err;
} ucp_chunk_result;

/* Scratch memory of one encoding thread. */
typedef struct {
	float *source;        /* UCP_PACK_CHUNK_WEIGHTS floats */
	uint8_t *encoded;     /* uc5 bytes of one chunk */
	uint8_t *decoded;     /* one chunk in the target dtype */
} ucp_encode_buffers;

/* State shared by the encoding threads of one pass. */
typedef struct {
	const uc_tensor_view *const *views; /* source tensor of each manifest tensor */
	const uc_manifest *manifest;        /* the layout being written */
	const int *shard_fds;
	const ucp_chunk *chunks;
	ucp_chunk_result *results;
	int *range_fallback;          /* per tensor: uc5_encode returned UC_ERR_RANGE */
	ucp_encode_buffers *buffers;  /* per worker */
	size_t first_failure;         /* lowest failed chunk index, SIZE_MAX when none */
	ucp_progress *progress;
} ucp_encode_pass;

int ucp_encode_buffers_init(ucp_encode_buffers *buffers);
void ucp_encode_buffers_free(ucp_encode_buffers *buffers);
/* ucp_task_fn for one chunk of an ucp_encode_pass. */
void ucp_encode_chunk(void *pass, size_t index, unsigned worker);

/* State of one uc_pack_write call, shared by pack_write.c and pack_publish.c. */
typedef struct {
	const uc_source *src;
	uc_pack_options options;
	char *out_dir;     /* without trailing slashes */
	char *temp_dir;    /* sibling of out_dir, removed on failure */
	uc_manifest *manifest;
	const uc_tensor_view **views;
	int *shard_fds;    /* one per planned shard, -1 when closed */
	size_t open_shards;
	size_t created_shards; /* shard-N files created so far, for a replanned second pass */
	ucp_chunk *chunks;
	ucp_chunk_result *results;
	size_t n_chunks;
	unsigned threads;
} ucp_pack_writer;

void ucp_pack_close_shards(ucp_pack_writer *w);
/* Returns the temporary path of shard `shard` (ucp_free); NULL when out of memory. */
char *ucp_pack_temp_shard_path(const ucp_pack_writer *w, size_t shard);
/* Fills every tensor's and shard's SHA-256 from the written shard files. */
uc_status ucp_pack_digest(ucp_pack_writer *w, uc_error *err);
uc_status ucp_pack_name_shards(ucp_pack_writer *w, uc_error *err);
uc_status ucp_pack_write_manifest(ucp_pack_writer *w, uc_error *err);
uc_status ucp_pack_publish(ucp_pack_writer *w, uc_error *err);
void ucp_pack_remove_temp_dir(const char *path);

/* Verification stages, in the order they run. */
typedef enum {
	UCP_STAGE_STRUCTURE = 0,
	UCP_STAGE_INTEGRITY = 1,
	UCP_STAGE_RECONSTRUCTION = 2,
	UCP_STAGE_COUNT
} ucp_stage;

typedef enum {
	UCP_STAGE_SKIPPED = 0, /* not run because an earlier stage failed */
	UCP_STAGE_PASSED = 1,
	UCP_STAGE_FAILED = 2,
} ucp_stage_result;

/* One failure found by verification: the stage, what failed ("manifest", "shard" or
 * "tensor") and its name, the status and a message. Strings are owned by the report. */
typedef struct {
	ucp_stage stage;
	const char *subject_kind;
	char *subject;
	uc_status status;
	char *message;
} ucp_report_error;

/* The outcome for one tensor of a pack whose reconstruction stage ran. */
typedef struct {
	char *name;
	uc_encoding encoding;
	uint8_t expected_sha256[UC_SHA256_BYTES];
	uint8_t actual_sha256[UC_SHA256_BYTES];
	int reconstructed; /* 0 when decoding failed, so actual_sha256 is unset */
	int ok;
	double sqnr_db;    /* from the manifest; NAN for null */
} ucp_report_tensor;

struct uc_report {
	uc_verdict verdict;
	ucp_stage_result stages[UCP_STAGE_COUNT];
	double stage_seconds[UCP_STAGE_COUNT];

	size_t n_errors;
	ucp_report_error *errors;
	size_t n_tensors;
	ucp_report_tensor *tensors;
	size_t n_shards;  /* shards hashed by the integrity stage */

	int has_manifest_sha256; /* 0 when the manifest could not be read */
	uint8_t manifest_sha256[UC_SHA256_BYTES];
	uc_isa isa;
	unsigned threads;
	uint64_t bytes_hashed;
};

/* Appends an error; the strings are copied. -1 when out of memory. */
int ucp_report_add_error(uc_report *report, ucp_stage stage, const char *subject_kind,
			 const char *subject, uc_status status, const char *message);
const char *ucp_stage_name(ucp_stage stage);

/* Returns monotonic time in seconds. */
double ucp_now_seconds(void);

#endif
