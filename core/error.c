#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[] = {
	[UC_OK] = "ok",
	[UC_ERR_NOMEM] = "nomem",
	[UC_ERR_IO] = "io",
	[UC_ERR_FORMAT] = "format",
	[UC_ERR_UNSUPPORTED] = "unsupported",
	[UC_ERR_INVALID] = "invalid",
	[UC_ERR_NONFINITE] = "nonfinite",
	[UC_ERR_RANGE] = "range",
	[UC_ERR_STRUCTURE] = "structure",
	[UC_ERR_INTEGRITY] = "integrity",
	[UC_ERR_MISMATCH] = "mismatch",
	[UC_ERR_ISA] = "isa",
};

const char *uc_status_name(uc_status status)
{
	if ((unsigned)status >= sizeof status_names / sizeof status_names[0] || !status_names[status])
		return "unknown";
	return status_names[status];
}

void uc_error_clear(uc_error *err)
{
	if (!err)
		return;
	err->status = UC_OK;
	err->message[0] = '\0';
}

uc_status ucp_fail(uc_error *err, uc_status status, const char *fmt, ...)
{
	if (!err)
		return status;

	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	err->status = status;
	return status;
}

void ucp_error_prefix(uc_error *err, const char *fmt, ...)
{
	if (!err)
		return;

	char prefix[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);

	char joined[sizeof err->message];
	size_t used = strlen(prefix);
	if (used > sizeof joined - 3)
		used = sizeof joined - 3;
	memcpy(joined, prefix, used);
	memcpy(joined + used, ": ", 2);
	used += 2;

	size_t tail = strlen(err->message);
	if (tail > sizeof joined - 1 - used)
		tail = sizeof joined - 1 - used;
	memcpy(joined + used, err->message, tail);
	joined[used + tail] = '\0';
	memcpy(err->message, joined, sizeof joined);
}
