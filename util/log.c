/*
 * util/log.c -- formats log lines and writes them to the sink.
 *
 * The line is formatted into a stack buffer and written with one write(2) so
 * that lines from different threads never interleave. Lines longer than the
 * buffer are cut and end in "...".
 */
#define OM_LOG_MODULE "log"
#include "util/log.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int om_log_threshold = OM_LOG_INFO;

static om_log_sink log_sink;
static void *log_sink_arg;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

const char *
om_log_level_str(om_log_level level)
{
    if ((unsigned)level > OM_LOG_DEBUG)
        return "?";
    return level_names[level];
}

void
om_log_set_level(om_log_level level)
{
    om_log_threshold = (int)level;
}

om_status
om_log_level_parse(const char *name, om_log_level *out)
{
    for (unsigned i = 0; i <= OM_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (om_log_level)i;
            return OM_OK;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = OM_LOG_WARN;
        return OM_OK;
    }
    return OM_E_INVALID;
}

void
om_log_set_sink(om_log_sink sink, void *arg)
{
    log_sink = sink;
    log_sink_arg = arg;
}

void
om_log_vwrite(om_log_level level, const char *module, const char *fmt, va_list ap)
{
    char line[4096];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000L,
                 om_log_level_str(level), module);
    if (r > 0)
        n += (size_t)r;
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (r < 0) {
        r = 0;
    }
    if ((size_t)r >= sizeof(line) - n - 1) {
        /* cut: leave room for "...\n" */
        n = sizeof(line) - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)r;
    }
    line[n] = '\0';
    if (log_sink != NULL) {
        log_sink(level, line, log_sink_arg);
        return;
    }
    line[n++] = '\n';
    /* One write per line; a short write to stderr is not worth a retry loop. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void
om_log_write(om_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    om_log_vwrite(level, module, fmt, ap);
    va_end(ap);
}
