/*
 * util/log.c -- formats log lines and writes them to the sink.
 *
 * The line is formatted into a stack buffer and written with one write(2) so
 * that lines from different threads never interleave. Lines longer than the
 * buffer are cut and end in "..." (in JSON, the message is cut and the object
 * still closed, so every line parses).
 */
#define OM_LOG_MODULE "log"
#include "util/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int om_log_threshold = OM_LOG_INFO;

static om_log_format log_format = OM_LOG_FORMAT_TEXT;
static om_log_sink log_sink;
static void *log_sink_arg;

/* The longest request id written (rpc.h's RPC_REQUEST_ID_MAX; longer ones are cut). */
#define OM_LOG_RID_MAX 64

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const json_level_names[] = {"error", "warn", "info", "debug"};

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
om_log_set_format(om_log_format format)
{
    log_format = format;
}

void
om_log_setup(om_log_level level, om_log_format format)
{
    om_log_set_level(level);
    om_log_set_format(format);
}

/*
 * Append s to line[*n ..] as the inside of a JSON string, leaving `reserve` bytes free;
 * returns false if s did not fit (what fitted is kept, cut at a character boundary of the
 * escaping).
 */
static bool
json_append(char *line, size_t cap, size_t *n, const char *s, size_t reserve)
{
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[8];
        size_t k;

        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            k = 2;
        } else if (ch == '\n') {
            memcpy(esc, "\\n", 2);
            k = 2;
        } else if (ch < 0x20) {
            k = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", ch);
        } else {
            esc[0] = (char)ch;
            k = 1;
        }
        if (*n + k + reserve > cap)
            return false;
        memcpy(line + *n, esc, k);
        *n += k;
    }
    return true;
}

/*
 * {"ts":...,"level":...,"module":...,"msg":...[,"request_id":...]} into line (cap bytes, room
 * for '\n'). The request id (at most a few dozen bytes, rpc.h) is kept when the message is cut.
 */
static size_t
json_line(char *line, size_t cap, const char *ts, om_log_level level, const char *module,
          const char *msg, const char *rid)
{
    size_t rid_room = rid != NULL ? 16 + 2 * strlen(rid) : 0;

    size_t n = 0;
    int r = snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"", ts,
                     (unsigned)level <= OM_LOG_DEBUG ? json_level_names[level] : "?");

    n = r > 0 ? (size_t)r : 0;
    (void)json_append(line, cap, &n, module, 16);
    memcpy(line + n, "\",\"msg\":\"", 9);
    n += 9;
    if (!json_append(line, cap, &n, msg, 8 + rid_room)) { /* cut: "...\"}" and the newline fit */
        memcpy(line + n, "...", 3);
        n += 3;
    }
    if (rid != NULL) {
        memcpy(line + n, "\",\"request_id\":\"", 16);
        n += 16;
        (void)json_append(line, cap, &n, rid, 3);
    }
    memcpy(line + n, "\"}", 2);
    n += 2;
    line[n] = '\0';
    return n;
}

void
om_log_set_sink(om_log_sink sink, void *arg)
{
    log_sink = sink;
    log_sink_arg = arg;
}

static void
log_vwrite(om_log_level level, const char *module, const char *rid, const char *fmt, va_list ap)
{
    char line[4096];
    struct timespec ts;
    struct tm tm;
    size_t n;
    int r;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    if (log_format == OM_LOG_FORMAT_JSON) {
        char stamp[40], msg[3072];
        size_t k = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + k, sizeof(stamp) - k, ".%03ldZ", ts.tv_nsec / 1000000L);
        r = vsnprintf(msg, sizeof(msg), fmt, ap);
        if (r >= (int)sizeof(msg))
            memcpy(msg + sizeof(msg) - 4, "...", 4);
        else if (r < 0)
            msg[0] = '\0';
        n = json_line(line, sizeof(line) - 1, stamp, level, module, msg, rid);
        goto out;
    }
    size_t rid_room = rid != NULL ? 5 + strlen(rid) : 0; /* " rid=" */
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s %s ", ts.tv_nsec / 1000000L,
                 om_log_level_str(level), module);
    if (r > 0)
        n += (size_t)r;
    r = vsnprintf(line + n, sizeof(line) - n - rid_room, fmt, ap);
    if (r < 0) {
        r = 0;
    }
    if ((size_t)r >= sizeof(line) - n - rid_room - 1) {
        /* cut: leave room for "...", the request id and "\n" */
        n = sizeof(line) - rid_room - 5;
        memcpy(line + n, "...", 3);
        n += 3;
    } else {
        n += (size_t)r;
    }
    if (rid != NULL) {
        memcpy(line + n, " rid=", 5);
        memcpy(line + n + 5, rid, rid_room - 5);
        n += rid_room;
    }
    line[n] = '\0';
out:
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
om_log_vwrite(om_log_level level, const char *module, const char *fmt, va_list ap)
{
    log_vwrite(level, module, NULL, fmt, ap);
}

void
om_log_write_rid(om_log_level level, const char *module, const char *rid, const char *fmt, ...)
{
    va_list ap;
    char safe[OM_LOG_RID_MAX + 1];

    if (rid != NULL && rid[0] != '\0') {
        /* one token in a text line, whatever the caller passed (rpc checks it at the wire) */
        size_t i = 0;
        for (; rid[i] != '\0' && i < OM_LOG_RID_MAX; i++)
            safe[i] = (unsigned char)rid[i] > 0x20 && (unsigned char)rid[i] < 0x7f ? rid[i] : '?';
        safe[i] = '\0';
        rid = safe;
    } else {
        rid = NULL;
    }
    va_start(ap, fmt);
    log_vwrite(level, module, rid, fmt, ap);
    va_end(ap);
}

void
om_log_write(om_log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    om_log_vwrite(level, module, fmt, ap);
    va_end(ap);
}
