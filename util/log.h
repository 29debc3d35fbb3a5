/*
 * util/log.h -- the leveled logger.
 *
 * One line per event on stderr (or on the sink installed with
 * om_log_set_sink): an RFC 3339 UTC timestamp with milliseconds, the level,
 * the module and the message, whose variable parts are written as key=value
 * fields by convention:
 *
 *   2026-11-21T13:05:01.123Z INFO wal recovered log=000012.log records=412
 *
 * With om_log_set_format(OM_LOG_FORMAT_JSON) (config `log-format = json`)
 * each line is one JSON object instead, for log collectors:
 *
 *   {"ts":"2026-11-21T13:05:01.123Z","level":"info","module":"wal","msg":"recovered log=000012.log
 * records=412"}
 *
 * om_log_rid() writes a line about one request and adds its request id (the
 * Request's request_id, rpc.h) as a field of its own: ` rid=<id>` at the end
 * of a text line, "request_id":"<id>" in a JSON line. A NULL or empty id adds
 * nothing. An operator follows a request from coordinator to shard by it.
 *
 * om_log() is a macro that compares the level with the threshold before any
 * argument is evaluated or formatted, so DEBUG calls cost one branch when off.
 * Each .c file names its module with `#define OM_LOG_MODULE "wal"` before it
 * includes this header.
 *
 * Thread-safety: om_log() is safe from any thread (each line is written with a
 * single write). om_log_set_level(), om_log_set_format() and om_log_set_sink() are meant to be
 * called once at startup, before threads start.
 */
#ifndef OM_UTIL_LOG_H
#define OM_UTIL_LOG_H

#include <stdarg.h>

#include "util/status.h"

typedef enum om_log_level {
    OM_LOG_ERROR = 0,
    OM_LOG_WARN = 1,
    OM_LOG_INFO = 2,
    OM_LOG_DEBUG = 3,
} om_log_level;

#ifndef OM_LOG_MODULE
#define OM_LOG_MODULE "objmeta"
#endif

/* The threshold: lines above it are dropped. Set through om_log_set_level(). */
extern int om_log_threshold;

/* A sink receives one complete formatted line (no trailing newline). */
typedef void (*om_log_sink)(om_log_level level, const char *line, void *arg);

#define om_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((int)(level) <= om_log_threshold)                                                      \
            om_log_write((level), OM_LOG_MODULE, __VA_ARGS__);                                     \
    } while (0)

#define om_log_rid(level, rid, ...)                                                                \
    do {                                                                                           \
        if ((int)(level) <= om_log_threshold)                                                      \
            om_log_write_rid((level), OM_LOG_MODULE, (rid), __VA_ARGS__);                          \
    } while (0)

#if defined(__GNUC__)
#define OM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OM_PRINTF(a, b)
#endif

void om_log_write(om_log_level level, const char *module, const char *fmt, ...) OM_PRINTF(3, 4);
void om_log_write_rid(om_log_level level, const char *module, const char *rid, const char *fmt, ...)
    OM_PRINTF(4, 5);
void om_log_vwrite(om_log_level level, const char *module, const char *fmt, va_list ap);

void om_log_set_level(om_log_level level);

/*
 * om_log_level_parse -- "error", "warn", "info" or "debug" (any case).
 * Returns: OM_OK and sets *out; OM_E_INVALID for anything else.
 */
om_status om_log_level_parse(const char *name, om_log_level *out);

const char *om_log_level_str(om_log_level level);

typedef enum om_log_format { OM_LOG_FORMAT_TEXT = 0, OM_LOG_FORMAT_JSON = 1 } om_log_format;

/* The line format: text (the default) or one JSON object per line. */
void om_log_set_format(om_log_format format);
/* Both at once, from a binary's configuration (log-level, log-format). */
void om_log_setup(om_log_level level, om_log_format format);

/* Install a sink (NULL restores stderr). */
void om_log_set_sink(om_log_sink sink, void *arg);

#endif /* OM_UTIL_LOG_H */
