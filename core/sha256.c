#include "internal.h"
#include "uc_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

struct uc_sha256 {
	EVP_MD_CTX *md;
};

uc_sha256 *uc_sha256_new(void)
{
	uc_sha256 *ctx = ucp_malloc(sizeof *ctx);
	if (!ctx)
		return NULL;
	ctx->md = EVP_MD_CTX_new();
	if (!ctx->md || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
		EVP_MD_CTX_free(ctx->md);
		ucp_free(ctx);
		return NULL;
	}
	return ctx;
}

void uc_sha256_update(uc_sha256 *ctx, const void *data, size_t len)
{
	EVP_DigestUpdate(ctx->md, data, len);
}

void uc_sha256_final(uc_sha256 *ctx, uint8_t digest[UC_SHA256_BYTES])
{
	unsigned int len = UC_SHA256_BYTES;
	EVP_DigestFinal_ex(ctx->md, digest, &len);
}

void uc_sha256_free(uc_sha256 *ctx)
{
	if (!ctx)
		return;
	EVP_MD_CTX_free(ctx->md);
	ucp_free(ctx);
}

void uc_sha256_buffer(const void *data, size_t len, uint8_t digest[UC_SHA256_BYTES])
{
	unsigned int out_len = UC_SHA256_BYTES;
	EVP_Digest(data, len, digest, &out_len, EVP_sha256(), NULL);
}

uc_status uc_sha256_file(const char *path, uint8_t digest[UC_SHA256_BYTES], uint64_t *size,
			 uc_error *err)
{
	enum { CHUNK = 1 << 20 };
	uc_status rc = UC_OK;
	uint64_t total = 0;
	uint8_t *buf = NULL;
	uc_sha256 *ctx = NULL;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ucp_fail(err, UC_ERR_IO, "cannot open %s: %s", path, strerror(errno));

	buf = ucp_malloc(CHUNK);
	ctx = uc_sha256_new();
	if (!buf || !ctx) {
		rc = ucp_fail(err, UC_ERR_NOMEM, "out of memory hashing %s", path);
		goto out;
	}

	for (;;) {
		ssize_t got = read(fd, buf, CHUNK);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = ucp_fail(err, UC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (got == 0)
			break;
		uc_sha256_update(ctx, buf, (size_t)got);
		total += (uint64_t)got;
	}
	uc_sha256_final(ctx, digest);
	if (size)
		*size = total;

out:
	uc_sha256_free(ctx);
	ucp_free(buf);
	close(fd);
	return rc;
}

void uc_sha256_to_hex(const uint8_t digest[UC_SHA256_BYTES], char out[UC_SHA256_HEX_CHARS + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < UC_SHA256_BYTES; i++) {
		out[2 * i] = digits[digest[i] >> 4];
		out[2 * i + 1] = digits[digest[i] & 15];
	}
	out[UC_SHA256_HEX_CHARS] = '\0';
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int uc_sha256_from_hex(const char *hex, uint8_t digest[UC_SHA256_BYTES])
{
	for (int i = 0; i < UC_SHA256_BYTES; i++) {
		int hi = hex_value(hex[2 * i]);
		int lo = hi < 0 ? -1 : hex_value(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		digest[i] = (uint8_t)(hi << 4 | lo);
	}
	return hex[UC_SHA256_HEX_CHARS] == '\0' ? 0 : -1;
}
