/* Packs: writing a pack from a source checkpoint, reading its manifest, reconstructing
 * tensors, and verification. A pack is a directory holding `manifest.json` and shard files
 * named by their SHA-256; docs/pack-format.md is the specification. */
#ifndef UC_PACK_H
#define UC_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "uc_codec.h"
#include "uc_error.h"
#include "uc_hash.h"
#include "uc_source.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UC_PACK_FORMAT_VERSION 1
#define UC_CODEC_ID "uc5"
#define UC_CODEC_VERSION 1
#define UC_DEFAULT_SHARD_LIMIT ((uint64_t)2 << 30)

/* Progress callback: `done` of `total` units (bytes or weights, as documented by the
 * caller) are finished. Called from worker threads, serialised by libuc. */
typedef void (*uc_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef enum {
	UC_ENCODING_RAW = 0,
	UC_ENCODING_UC5 = 1,
} uc_encoding;

typedef struct {
	const char *family;        /* dense|moe|ssm|recurrent|hybrid|vit|other (required) */
	const char *name;          /* model name; NULL means the base name of the output directory */
	const char *source_model;  /* where the weights came from; NULL when unknown */
	const char *license;       /* licence identifier; NULL when unknown */
	uc_dtype dtype;            /* target dtype of every reconstructed tensor */
	unsigned threads;          /* 0 means the number of online CPUs */
	uint64_t shard_size_limit; /* bytes; 0 means UC_DEFAULT_SHARD_LIMIT */
	uc_progress_fn progress;   /* NULL for none; units are weights */
	void *progress_ctx;
} uc_pack_options;

/* Fills defaults: family NULL, dtype bf16, threads 0, shard limit 0, no progress. */
UC_API void uc_pack_options_init(uc_pack_options *options);

/* Returns 1 when `family` is one of the seven family names, else 0. */
UC_API int uc_family_valid(const char *family);

/* Encodes every tensor of `src` and writes a pack directory at `out_dir`, which must not
 * exist yet (UC_ERR_INVALID naming it). The output bytes depend only on the source and the
 * options other than `threads` and `progress`. The directory appears complete or not at
 * all: it is built under a temporary sibling name, renamed into place, and removed on any
 * failure. A NaN or infinite source weight is UC_ERR_NONFINITE naming the tensor and index.
 * Progress counts weights and starts again from 0 when a 2-D tensor that uc5 cannot
 * represent is switched to raw, because that changes the layout and reruns the encoding.
 * UC_ERR_ISA when the UC_ISA environment variable names an unavailable path. */
UC_API uc_status uc_pack_write(const uc_source *src, const char *out_dir,
			       const uc_pack_options *options, uc_error *err);

/* A parsed and validated manifest. Every string and number in it has been checked; see
 * uc_manifest_parse. */
typedef struct uc_manifest uc_manifest;

typedef struct {
	const char *file;  /* file name inside the pack: the 64-digit SHA-256 hex */
	uint8_t sha256[UC_SHA256_BYTES];
	uint64_t size;
} uc_manifest_shard;

typedef struct {
	const char *name;
	uint32_t ndim;
	uint64_t shape[UC_MAX_DIMS];
	uint64_t n_elements;
	uc_dtype dtype;
	uc_encoding encoding;
	uint32_t shard;     /* index into the shard list */
	uint64_t offset;    /* byte offset inside the shard */
	uint64_t length;    /* encoded bytes */
	uint8_t sha256[UC_SHA256_BYTES]; /* of the reconstructed bytes */
	double sqnr_db;     /* NAN when the manifest stores null (exact reconstruction) */
	double max_abs_error;
} uc_manifest_tensor;

/* Parses manifest bytes and checks everything that can be checked without the shards:
 * known format version and codec (UC_ERR_UNSUPPORTED naming them), field types,
 * shapes, lengths consistent with shape, dtype and encoding, every span inside its
 * shard's declared size, no overlaps, unique tensor names, shard file names equal to
 * their digests. Errors name the field or tensor. The caller frees with uc_manifest_free. */
UC_API uc_status uc_manifest_parse(const char *json, size_t len, uc_manifest **out, uc_error *err);
UC_API void uc_manifest_free(uc_manifest *manifest);

UC_API size_t uc_manifest_shard_count(const uc_manifest *manifest);
UC_API const uc_manifest_shard *uc_manifest_shard_at(const uc_manifest *manifest, size_t index);
UC_API size_t uc_manifest_tensor_count(const uc_manifest *manifest);
UC_API const uc_manifest_tensor *uc_manifest_tensor_at(const uc_manifest *manifest, size_t index);
/* Model fields ("name", "family", "source_model", "license", "config") and the top-level
 * "created_by"; NULL when absent or null. Borrowed. */
UC_API const char *uc_manifest_model_field(const uc_manifest *manifest, const char *field);
UC_API uint64_t uc_manifest_parameters(const uc_manifest *manifest);
UC_API uint64_t uc_manifest_tensor_bytes(const uc_manifest *manifest);
UC_API uint64_t uc_manifest_shard_bytes(const uc_manifest *manifest);
UC_API double uc_manifest_bits_per_weight(const uc_manifest *manifest);
/* Parameter-weighted SQNR in dB; NAN when every tensor is reconstructed exactly. */
UC_API double uc_manifest_sqnr_db(const uc_manifest *manifest);
/* Returns the index of the tensor named `name`, or -1 when there is none. */
UC_API long uc_manifest_find_tensor(const uc_manifest *manifest, const char *name);
/* Serialises the manifest in canonical form (sorted keys, compact, reals at 6 significant
 * digits, one trailing newline): parsing a pack's manifest.json and serialising it again
 * gives the same bytes. Returns a new string (free with uc_free) and its length in *len
 * (may be NULL), or NULL when out of memory. */
UC_API char *uc_manifest_to_json(const uc_manifest *manifest, size_t *len);

/* Reading a pack: the validated manifest plus its memory-mapped shards. */
typedef struct uc_pack uc_pack;

/* Opens the pack directory `dir`: reads and validates manifest.json, checks that every
 * shard file exists with its declared size and maps it read-only. Shard contents are not
 * hashed here (uc_verify_pack does that). On success the caller owns *out and frees it
 * with uc_pack_close. UC_ERR_IO for an unreadable manifest, UC_ERR_FORMAT or
 * UC_ERR_UNSUPPORTED for an invalid one, UC_ERR_STRUCTURE for a missing or wrongly sized
 * shard. */
UC_API uc_status uc_pack_open(const char *dir, uc_pack **out, uc_error *err);
UC_API void uc_pack_close(uc_pack *pack);
/* The pack's manifest, borrowed until uc_pack_close. */
UC_API const uc_manifest *uc_pack_manifest(const uc_pack *pack);
/* SHA-256 of the manifest.json bytes as read. */
UC_API void uc_pack_manifest_sha256(const uc_pack *pack, uint8_t digest[UC_SHA256_BYTES]);

/* Receives reconstructed bytes in tensor order. `data` is borrowed for the call only.
 * A status other than UC_OK stops the reconstruction and is returned by it. */
typedef uc_status (*uc_chunk_fn)(void *ctx, const void *data, size_t len, uc_error *err);

/* Rebuilds tensor `tensor_index` in the manifest's target dtype (little-endian elements)
 * and hands it to `chunk` in pieces of at most UC_RECONSTRUCT_CHUNK_BYTES, in order. Raw
 * tensors are their stored bytes. The whole tensor is never held in memory. A uc5 block
 * with a non-finite scale is UC_ERR_FORMAT naming the tensor and block. Thread-safe: several
 * threads may reconstruct from one open pack. */
#define UC_RECONSTRUCT_CHUNK_BYTES ((size_t)64 << 10)
UC_API uc_status uc_pack_reconstruct(const uc_pack *pack, size_t tensor_index, uc_chunk_fn chunk,
				     void *ctx, uc_error *err);

/* Verification: the same steps for `uc verify` and the registry's workers.
 * 1 structure, 2 shard integrity, 3 reconstruction; see docs/pack-format.md. */
typedef enum {
	UC_VERDICT_OK = 0,
	UC_VERDICT_STRUCTURE_FAILED = 1,
	UC_VERDICT_INTEGRITY_FAILED = 2,
	UC_VERDICT_RECONSTRUCTION_FAILED = 3,
} uc_verdict;

typedef struct {
	unsigned threads;         /* 0 means the number of online CPUs */
	uc_progress_fn progress;  /* NULL for none; units are bytes hashed */
	void *progress_ctx;
} uc_verify_options;

UC_API void uc_verify_options_init(uc_verify_options *options);

typedef struct uc_report uc_report;

/* Verifies the pack whose manifest bytes are `manifest_json` and whose shard files are
 * found as `shard_dir`/<file name>. `options` may be NULL for the defaults. On UC_OK, *out
 * is a report whatever the verdict; a status other than UC_OK means verification could not
 * run (UC_ERR_NOMEM, UC_ERR_INVALID for missing arguments, UC_ERR_ISA when the UC_ISA
 * environment variable names an unavailable path) and *out is NULL. The caller frees the
 * report with uc_report_free. */
UC_API uc_status uc_verify_manifest(const char *manifest_json, size_t len, const char *shard_dir,
				    const uc_verify_options *options, uc_report **out,
				    uc_error *err);
/* Reads `pack_dir`/manifest.json and verifies it against the shards beside it. A missing
 * or unreadable manifest is a structure failure in the report, not an error. */
UC_API uc_status uc_verify_pack(const char *pack_dir, const uc_verify_options *options,
				uc_report **out, uc_error *err);

UC_API uc_verdict uc_report_verdict(const uc_report *report);
/* Returns "ok", "structure_failed", "integrity_failed" or "reconstruction_failed". */
UC_API const char *uc_verdict_name(uc_verdict verdict);
/* Number of failures recorded (0 exactly when the verdict is UC_VERDICT_OK). */
UC_API size_t uc_report_error_count(const uc_report *report);
/* Returns the report as a JSON document (new string, free with uc_free), or NULL when out
 * of memory. */
UC_API char *uc_report_to_json(const uc_report *report);
/* Returns the report as human-readable lines ending in the verdict lines, which are
 * "STRUCTURE OK" and "RECONSTRUCTION OK" for a good pack (new string, free with uc_free),
 * or NULL when out of memory. */
UC_API char *uc_report_to_text(const uc_report *report);
UC_API void uc_report_free(uc_report *report);

/* Frees a string returned by libuc. */
UC_API void uc_free(void *ptr);

#ifdef __cplusplus
}
#endif

#endif
