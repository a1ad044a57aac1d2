#include "config.h"

#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

reg_log_level reg_log_threshold = REG_LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int reg_log_parse_level(const char *name, reg_log_level *out)
{
	for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (reg_log_level)i;
			return 0;
		}
	}
	return -1;
}

void reg_log_write(reg_log_level level, const char *id_kind, uint64_t id, const char *fmt, ...)
{
	char line[2048];
	struct timespec now;
	struct tm tm;
	size_t used;
	int n;

	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	used = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line + used, sizeof line - used, ".%03ldZ %s ", now.tv_nsec / 1000000L,
		     level_names[level]);
	used += (size_t)n;
	if (id_kind) {
		n = snprintf(line + used, sizeof line - used, "%s=%llu ", id_kind,
			     (unsigned long long)id);
		used += (size_t)n;
	}

	va_list ap;
	va_start(ap, fmt);
	n = vsnprintf(line + used, sizeof line - used, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	used += (size_t)n;
	/* A longer message is cut, keeping room for the newline. */
	if (used > sizeof line - 2)
		used = sizeof line - 2;

	/* Control characters from client input must not forge extra log lines. */
	for (size_t i = 0; i < used; i++) {
		if ((unsigned char)line[i] < 0x20)
			line[i] = '?';
	}
	line[used++] = '\n';

	ssize_t written = write(STDERR_FILENO, line, used);
	(void)written; /* nowhere left to report a failed log write */
}
