#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void cli_error(const char *verb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "uc %s: ", verb);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int cli_report_error(const char *verb, const uc_error *err)
{
	cli_error(verb, "%s", err->message[0] ? err->message : uc_status_name(err->status));
	return err->status == UC_ERR_INVALID ? UC_EXIT_USAGE : UC_EXIT_FAILURE;
}

int cli_parse_threads(const char *verb, const char *text, unsigned *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || value > 1024) {
		cli_error(verb, "invalid --threads value '%s': expected a whole number from 0 (all cores) to 1024", text);
		return -1;
	}
	*out = (unsigned)value;
	return 0;
}

int cli_parse_bytes(const char *verb, const char *option, const char *text, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	unsigned shift = 0;
	if (end && *end) {
		switch (*end) {
		case 'K': shift = 10; break;
		case 'M': shift = 20; break;
		case 'G': shift = 30; break;
		default: shift = 64; break;
		}
		end++;
	}
	if (errno || end == text || *end || text[0] == '-' || value == 0 || shift == 64 ||
	    (shift && value > (UINT64_MAX >> shift))) {
		cli_error(verb, "invalid %s value '%s': expected a positive byte count such as 1048576, 512M or 2G",
			  option, text);
		return -1;
	}
	*out = (uint64_t)value << shift;
	return 0;
}
