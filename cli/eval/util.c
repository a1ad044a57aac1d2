/* Error records for the harness. */
#include "config.h"

#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

uc_status eval_fail(uc_error *err, uc_status status, const char *fmt, ...)
{
	if (!err)
		return status;
	va_list args;
	va_start(args, fmt);
	err->status = status;
	vsnprintf(err->message, sizeof err->message, fmt, args);
	va_end(args);
	return status;
}

void eval_error_prefix(uc_error *err, const char *fmt, ...)
{
	if (!err)
		return;
	char prefix[sizeof err->message];
	char combined[2 * sizeof err->message + 2];
	va_list args;
	va_start(args, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, args);
	va_end(args);
	snprintf(combined, sizeof combined, "%s: %s", prefix, err->message);
	/* A message longer than the record keeps its beginning, which names the file. */
	size_t len = strnlen(combined, sizeof err->message - 1);
	memcpy(err->message, combined, len);
	err->message[len] = '\0';
}
