/* Leveled logger of the registry daemon. One line per event goes to stderr, written with a
 * single write(2) so lines from different threads never interleave. The level is checked
 * before the message is formatted, so a suppressed debug line costs one comparison. */
#ifndef REG_LOG_H
#define REG_LOG_H

#include <stdint.h>

typedef enum {
	REG_LOG_ERROR = 0,
	REG_LOG_WARN = 1,
	REG_LOG_INFO = 2,
	REG_LOG_DEBUG = 3,
} reg_log_level;

/* Messages above this level are dropped. Set once at start, before threads exist. */
extern reg_log_level reg_log_threshold;

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1 for any other name. */
int reg_log_parse_level(const char *name, reg_log_level *out);

/* Formats and writes one line: time, level, `req=ID` or `job=ID` when `id_kind` is not
 * NULL, then the message. Use the REG_LOG macro instead so the level is checked first. */
void reg_log_write(reg_log_level level, const char *id_kind, uint64_t id, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define REG_LOG(level, id_kind, id, ...)                                   \
	do {                                                               \
		if ((level) <= reg_log_threshold)                          \
			reg_log_write((level), (id_kind), (id), __VA_ARGS__); \
	} while (0)

#define REG_ERROR(...) REG_LOG(REG_LOG_ERROR, NULL, 0, __VA_ARGS__)
#define REG_WARN(...) REG_LOG(REG_LOG_WARN, NULL, 0, __VA_ARGS__)
#define REG_INFO(...) REG_LOG(REG_LOG_INFO, NULL, 0, __VA_ARGS__)
#define REG_DEBUG(...) REG_LOG(REG_LOG_DEBUG, NULL, 0, __VA_ARGS__)

#endif
