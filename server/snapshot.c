/* Signing key and signed catalog snapshot. The snapshot lists every version with its
 * manifest digest, status and yank flag, read in one SQLite read transaction together
 * with the change serial it corresponds to. */
#include "config.h"

#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "db.h"
#include "log.h"
#include "packs.h"
#include "server.h"
#include "snapshot_verify.h"

static EVP_PKEY *signing_key;

static void key_path(const char *data_dir, char *out, size_t size)
{
	snprintf(out, size, "%s/%s", data_dir, REG_SIGNING_KEY_FILE);
}

static EVP_PKEY *generate_key(void)
{
	EVP_PKEY *key = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	if (ctx && EVP_PKEY_keygen_init(ctx) == 1 && EVP_PKEY_keygen(ctx, &key) != 1)
		key = NULL;
	EVP_PKEY_CTX_free(ctx);
	return key;
}

int reg_keygen_command(const char *data_dir)
{
	char path[REG_PATH_MAX];
	int rc = 1;

	key_path(data_dir, path, sizeof path);
	EVP_PKEY *key = generate_key();
	if (!key) {
		fprintf(stderr, "ucregd keygen: OpenSSL could not generate an Ed25519 key\n");
		return 1;
	}
	/* O_EXCL: an existing key is never replaced, since followers trust its public half. */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		fprintf(stderr, "ucregd keygen: cannot create %s: %s%s\n", path, strerror(errno),
			errno == EEXIST ? "; remove it first if you really want a new key" : "");
		goto out;
	}
	FILE *file = fdopen(fd, "w");
	if (!file) {
		close(fd);
		unlink(path);
		goto out;
	}
	int written = PEM_write_PrivateKey(file, key, NULL, NULL, 0, NULL, NULL) == 1;
	if (fflush(file) != 0 || fsync(fd) != 0)
		written = 0;
	fclose(file);
	if (!written) {
		fprintf(stderr, "ucregd keygen: cannot write %s\n", path);
		unlink(path);
		goto out;
	}
	fprintf(stderr, "ucregd keygen: wrote %s; give followers this public key:\n", path);
	PEM_write_PUBKEY(stdout, key);
	rc = 0;
out:
	EVP_PKEY_free(key);
	return rc;
}

int reg_snapshot_load_key(const char *data_dir)
{
	char path[REG_PATH_MAX];
	struct stat st;

	key_path(data_dir, path, sizeof path);
	FILE *file = fopen(path, "r");
	if (!file) {
		if (errno == ENOENT) {
			REG_INFO("no signing key at %s: GET /api/snapshot answers 503 until"
				 " `ucregd keygen` creates one", path);
			return 0;
		}
		REG_ERROR("cannot open the signing key %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(file), &st) == 0 && (st.st_mode & 077) != 0)
		REG_WARN("signing key %s is readable by group or others (mode %03o); chmod 600 it",
			 path, (unsigned)(st.st_mode & 0777));
	signing_key = PEM_read_PrivateKey(file, NULL, NULL, NULL);
	fclose(file);
	if (!signing_key || EVP_PKEY_id(signing_key) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(signing_key);
		signing_key = NULL;
		REG_ERROR("%s is not an Ed25519 private key in PEM", path);
		return -1;
	}
	REG_INFO("loaded the snapshot signing key %s", path);
	return 0;
}

void reg_snapshot_unload_key(void)
{
	EVP_PKEY_free(signing_key);
	signing_key = NULL;
}

static enum MHD_Result respond_no_key(reg_request *req)
{
	return reg_respond_problem(req, MHD_HTTP_SERVICE_UNAVAILABLE, "no_signing_key",
				   "No signing key", "this registry has no snapshot signing key;"
				   " the operator creates one with `ucregd --data-dir DIR keygen`");
}

/* Reads the serial and every version in one read transaction. Returns the "signed"
 * object (new) or NULL after logging. */
static json_t *read_signed_part(sqlite3 *db)
{
	json_t *versions = json_array();
	json_t *result = NULL;
	sqlite3_stmt *stmt = NULL;

	if (!versions || sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		goto out;
	stmt = reg_db_prepare(db,
		"SELECT p.slug, v.version, v.manifest_digest, v.status, v.yanked_at IS NOT NULL"
		" FROM versions v JOIN packs p ON p.id = v.pack_id ORDER BY p.slug, v.version");
	if (!stmt)
		goto out;
	int rc;
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		json_array_append_new(versions, json_pack("{s:s, s:s, s:s, s:s, s:b}",
			"slug", (const char *)sqlite3_column_text(stmt, 0),
			"version", (const char *)sqlite3_column_text(stmt, 1),
			"manifest_sha256", (const char *)sqlite3_column_text(stmt, 2),
			"status", (const char *)sqlite3_column_text(stmt, 3),
			"yanked", sqlite3_column_int(stmt, 4)));
	}
	sqlite3_finalize(stmt);
	if (rc != SQLITE_DONE)
		goto out;
	stmt = reg_db_prepare(db, "SELECT coalesce(max(serial), 0) FROM events");
	if (!stmt || sqlite3_step(stmt) != SQLITE_ROW)
		goto out;
	int64_t now = reg_now();
	result = json_pack("{s:I, s:I, s:I, s:O}", "serial", (json_int_t)sqlite3_column_int64(stmt, 0),
			   "generated_at", (json_int_t)now, "expires_at",
			   (json_int_t)(now + REG_SNAPSHOT_LIFETIME_SECONDS), "versions", versions);
out:
	sqlite3_finalize(stmt);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	json_decref(versions);
	if (!result)
		REG_ERROR("cannot read the catalog for a snapshot: %s", sqlite3_errmsg(db));
	return result;
}

static char *sign_base64(const char *data, size_t len)
{
	unsigned char signature[REG_SNAPSHOT_SIGNATURE_BYTES];
	size_t signature_len = sizeof signature;
	char *text = NULL;

	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, signing_key) == 1 &&
	    EVP_DigestSign(ctx, signature, &signature_len, (const unsigned char *)data, len) == 1 &&
	    (text = malloc(4 * ((signature_len + 2) / 3) + 1)))
		EVP_EncodeBlock((unsigned char *)text, signature, (int)signature_len);
	EVP_MD_CTX_free(ctx);
	return text;
}

enum MHD_Result reg_snapshot_get(reg_request *req)
{
	if (!signing_key)
		return respond_no_key(req);
	sqlite3 *db = reg_db_thread();
	json_t *signed_part = db ? read_signed_part(db) : NULL;
	if (!signed_part)
		return reg_respond_catalog_error(req);
	char *canonical = reg_snapshot_canonical(signed_part);
	char *signature = canonical ? sign_base64(canonical, strlen(canonical)) : NULL;
	free(canonical);
	if (!signature) {
		json_decref(signed_part);
		REG_LOG(REG_LOG_ERROR, "req", req->id, "cannot sign the snapshot");
		return MHD_NO;
	}
	json_t *body = json_pack("{s:o, s:s, s:s}", "signed", signed_part, "signature", signature,
				 "algorithm", "ed25519");
	free(signature);
	return reg_respond_json(req, MHD_HTTP_OK, body);
}

enum MHD_Result reg_keys_get(reg_request *req)
{
	if (!signing_key)
		return respond_no_key(req);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem = NULL;
	long len = 0;
	if (!bio || PEM_write_bio_PUBKEY(bio, signing_key) != 1 ||
	    (len = BIO_get_mem_data(bio, &pem)) <= 0) {
		BIO_free(bio);
		return MHD_NO;
	}
	enum MHD_Result result = reg_respond_bytes(req, MHD_HTTP_OK, "application/x-pem-file", pem,
						   (size_t)len);
	BIO_free(bio);
	return result;
}
