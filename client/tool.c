/*
 * client/tool.c -- the `objmeta` tool's shared command-line plumbing: one
 * getopt_long loop for every command, one wording for usage errors, and the
 * explanations of a failed first contact.
 *
 * A newcomer's first mistakes are the address: nothing listens (the cluster
 * is not started), the address is a URL, or it is the metrics port (HTTP).
 * Each gets its own sentence with the next step. The first contact is a
 * connect plus a ping, both bounded by TOOL_HANDSHAKE_MS, so a wrong address
 * never waits for the 30 s request timeout; the ping's payload makes an HTTP
 * server answer at once, and rpc recognises "HTTP/1." in the reply.
 */
#include "client/tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
tool_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "objmeta%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(objmeta %s%s--help lists the %s)\n", cmd ? cmd : "", cmd ? " " : "",
            cmd ? "options" : "commands");
    return TOOL_EXIT_USAGE;
}

/* Levenshtein distance of a and b, capped: anything over 3 is 3. */
static size_t
tool_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), row[64];

    if (na >= 63 || nb >= 63)
        return 3;
    for (size_t j = 0; j <= nb; j++)
        row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb] > 3 ? 3 : row[nb];
}

const char *
tool_suggest(const char *w, const char *const *words)
{
    const char *best = NULL;
    size_t best_d = 3;

    for (size_t i = 0; words[i] != NULL; i++) {
        size_t d = tool_distance(w, words[i]);
        if (strlen(w) >= 2 && strncmp(words[i], w, strlen(w)) == 0)
            d = 1; /* a prefix of a longer option */
        if (d < best_d) {
            best = words[i];
            best_d = d;
        }
    }
    return best;
}

/* The option named by argv[optind - 1] ("--metta=x" -> "metta"), for messages. */
static const char *
tool_opt_name(const char *arg, char *out, size_t n)
{
    while (*arg == '-')
        arg++;
    snprintf(out, n, "%.*s", (int)strcspn(arg, "="), arg);
    return out;
}

static int
tool_unknown(const char *cmd, const struct option *tab, const char *arg)
{
    const char *names[64];
    char name[64];
    size_t n = 0;

    for (; tab[n].name != NULL && n < 63; n++)
        names[n] = tab[n].name;
    names[n] = NULL;
    const char *s = tool_suggest(tool_opt_name(arg, name, sizeof(name)), names);
    if (s != NULL)
        return tool_usage(cmd, "unknown option '%s'; did you mean '--%s'?", arg, s);
    return tool_usage(cmd, "unknown option '%s'", arg);
}

int
tool_parse(const char *cmd, const struct option *tab, const char *shortopts, bool stop_at_operand,
           int argc, char **argv, tool_opt_fn fn, void *ctx, int *first)
{
    char optstring[32];
    int c, rc;

    /* '+': stop at the first operand; ':': report a missing value as ':' */
    snprintf(optstring, sizeof(optstring), "%s:%s", stop_at_operand ? "+" : "", shortopts);
    optind = 0; /* GNU: full re-initialisation (each command parses afresh) */
    opterr = 0;
    while ((c = getopt_long(argc, argv, optstring, tab, NULL)) != -1) {
        const char *bad = argv[optind - 1];
        if (c == '?')
            return optopt != 0 && optopt < 256 ? tool_usage(cmd, "unknown option '-%c'", optopt)
                                               : tool_unknown(cmd, tab, bad);
        if (c == ':')
            return tool_usage(cmd, "option '%s' needs a value", bad);
        if ((rc = fn(ctx, c, optarg)) != TOOL_EXIT_OK)
            return rc;
    }
    *first = optind;
    return TOOL_EXIT_OK;
}

/* One HOST:PORT of an address list. */
static int
tool_check_one(const char *a, size_t n)
{
    const char *colon = memrchr(a, ':', n);
    char *end;

    if (memmem(a, n, "://", 3) != NULL)
        return tool_usage(NULL,
                          "bad address '%.*s': want HOST:PORT, e.g. 127.0.0.1:7000 (the objmeta "
                          "protocol is not HTTP: no http:// and not the /metrics port)",
                          (int)n, a);
    if (colon == NULL || colon == a || colon + 1 == a + n)
        return tool_usage(NULL, "bad address '%.*s': want HOST:PORT, e.g. 127.0.0.1:7000", (int)n,
                          a);
    long port = strtol(colon + 1, &end, 10);
    if (end != a + n || port < 1 || port > 65535)
        return tool_usage(NULL, "bad address '%.*s': the port must be a number from 1 to 65535",
                          (int)n, a);
    return TOOL_EXIT_OK;
}

int
tool_check_addr(const char *addr)
{
    const char *p = addr;
    int rc;

    for (;;) {
        size_t n = strcspn(p, ",");
        if ((rc = tool_check_one(p, n)) != TOOL_EXIT_OK)
            return rc;
        if (p[n] == '\0')
            return TOOL_EXIT_OK;
        p += n + 1;
    }
}

int
tool_exit_code(om_status st)
{
    switch (st) {
    case OM_OK:
        return TOOL_EXIT_OK;
    case OM_E_NOTFOUND:
        return TOOL_EXIT_NOT_FOUND;
    case OM_E_PRECONDITION:
        return TOOL_EXIT_PRECONDITION;
    case OM_E_UNAVAILABLE:
    case OM_E_TIMEOUT:
    case OM_E_BUSY:
        return TOOL_EXIT_UNAVAILABLE;
    case OM_E_INVALID:
        return TOOL_EXIT_INVALID;
    case OM_E_UNAUTHENTICATED:
    case OM_E_PERMISSION:
        return TOOL_EXIT_DENIED;
    default:
        return TOOL_EXIT_OTHER;
    }
}

int
tool_explain(const char *addr, om_status st, const char *msg)
{
    if (msg != NULL && strstr(msg, "answered in text") != NULL) {
        fprintf(stderr,
                "objmeta: %s answers in text (%s),\n  not the objmeta protocol: a web or other "
                "service listens there; --addr (or OBJMETA_ADDR)\n  takes the rpc port of a "
                "coordinator or shard (local cluster: 127.0.0.1:7000).\n",
                addr, strstr(msg, "(\"") ? strstr(msg, "(\"") + 1 : "?");
        return TOOL_EXIT_USAGE;
    }
    if (msg != NULL && strstr(msg, "answered in HTTP") != NULL) {
        fprintf(stderr,
                "objmeta: %s speaks HTTP, not the objmeta protocol: it is a metrics or web port.\n"
                "  The local cluster's coordinator is 127.0.0.1:7000 (metrics on :7200);\n"
                "  --addr (or OBJMETA_ADDR) takes the rpc port of a coordinator or shard.\n",
                addr);
        return TOOL_EXIT_USAGE;
    }
    if (st == OM_E_UNAVAILABLE && msg == NULL) {
        fprintf(stderr,
                "objmeta: cannot connect to %s: connection refused: nothing listens there.\n"
                "  scripts/run.sh starts a local cluster (coordinator on 127.0.0.1:7000);\n"
                "  --addr (or OBJMETA_ADDR) points the tool elsewhere.\n",
                addr);
        return TOOL_EXIT_UNAVAILABLE;
    }
    if (st == OM_E_UNAVAILABLE) {
        fprintf(stderr,
                "objmeta: %s accepted the connection but closed it without answering (%s):\n"
                "  is it an objmeta coordinator or shard, and does it accept this client?\n",
                addr, msg);
        return TOOL_EXIT_UNAVAILABLE;
    }
    if (st == OM_E_TIMEOUT) {
        fprintf(stderr,
                "objmeta: no answer from %s within %u ms: the host is down or unreachable, or the\n"
                "  port accepts connections but does not speak the objmeta protocol.\n",
                addr, TOOL_HANDSHAKE_MS);
        return TOOL_EXIT_UNAVAILABLE;
    }
    fprintf(stderr, "objmeta: %s: %s%s%s\n", addr, om_status_str(st), msg && msg[0] ? ": " : "",
            msg ? msg : "");
    return tool_exit_code(st);
}

bool
tool_slot_set(const tool_slot *tab, size_t n, void *obj, int code, const char *arg)
{
    for (size_t i = 0; i < n; i++) {
        char *field = (char *)obj + tab[i].offset;

        if (tab[i].code != code)
            continue;
        if (tab[i].str)
            *(const char **)(void *)field = arg;
        else
            *(bool *)(void *)field = true;
        return true;
    }
    return false;
}
