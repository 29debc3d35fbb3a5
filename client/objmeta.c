/*
 * client/objmeta.c -- the `objmeta` command-line tool on libobjmeta-client.
 * Talks to a shard or to the coordinator (same protocol). Human-readable
 * output by default, one JSON document with --json. The exit codes are part
 * of the interface (scripts test them) and listed by `objmeta --help`.
 *
 * Every command is a row of `commands[]`: its option table (getopt_long,
 * client/tool.c), its operands and its function. The common options (--addr,
 * --json, --timeout) are accepted before and after the command name; a new
 * common option goes into CLI_COMMON_OPTS and cli_opt.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "client/admin.h"
#include "client/client.h"
#include "client/tool.h"
#include "rpc/rpc.h"
#include "util/conf.h"

static const char usage_text[] =
    "usage: objmeta [--addr HOST:PORT] [--json] [--timeout MS] COMMAND ARGS...\n"
    "\n"
    "commands:\n"
    "  put BUCKET/KEY FILE|- [--meta JSON] [--content-type T] [--if-absent | --if-version V]\n"
    "                  store FILE ('-': standard input)\n"
    "  get BUCKET/KEY [FILE | -o FILE] [--force]\n"
    "                  write the data to FILE (default standard output); an existing\n"
    "                  FILE is left alone unless --force\n"
    "  head BUCKET/KEY           show size, etag, version, times, content type, metadata\n"
    "  exists BUCKET/KEY         print yes or no (exit 0 or 1)\n"
    "  rm BUCKET/KEY [--if-version V] [--force]\n"
    "                  delete; a missing key exits 1 (--force: exit 0, as S3's DELETE)\n"
    "  ls BUCKET[/PREFIX] [--delimiter D] [--start-after K] [--max N] [--token T] [--meta]\n"
    "                  list keys; follows continuation tokens unless --max is given\n"
    "  stats                     server counters\n"
    "  ping                      round trip to the server\n"
    "  admin COMMAND             ring changes on the coordinator: add-shard, remove-shard,\n"
    "                            set-weight, rebalance-status; replica groups: add-group,\n"
    "                            groups, promote, verify, ... (objmeta admin help)\n"
    "\n"
    "options:\n"
    "  --addr HOST:PORT[,HOST:PORT...]\n"
    "                    server address, or several coordinators: the next is used when\n"
    "                    one fails (default $OBJMETA_ADDR, else 127.0.0.1:7000)\n"
    "  --json            print one JSON document instead of text\n"
    "  --timeout MS      per-request timeout (default 30000)\n"
    "  --ca FILE         connect with TLS, verifying the server against this CA\n"
    "  --cert F --key F  present this client certificate (roles by its OU)\n"
    "  --auth-token T    authenticate with a bucket-scoped token (default $OBJMETA_TOKEN)\n"
    "  --request-id ID   the id the servers log this command's requests under (rid=,\n"
    "                    \"request_id\"); default a new cli-<random> id, printed on errors\n"
    "  --version         print the tool's version\n"
    "  COMMAND --help    the options of one command\n"
    "\n"
    "exit codes:\n"
    "  0  ok\n"
    "  1  not found (get, head, rm of a missing key; exists: no)\n"
    "  2  usage error (also: an HTTP port given as --addr, get refusing to overwrite)\n"
    "  3  precondition failed (--if-absent / --if-version did not hold)\n"
    "  4  unavailable (cannot connect, timeout, server busy or shutting down)\n"
    "  5  invalid argument (rejected by the server: bucket, key, metadata, size)\n"
    "  6  any other error (wrong shard, corruption, internal)\n"
    "  7  unauthenticated or permission denied (credential missing or not enough)\n";

/* Long-only option codes (short options use their letter). */
enum {
    OPT_ADDR = 256,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_META,
    OPT_CONTENT_TYPE,
    OPT_IF_ABSENT,
    OPT_IF_VERSION,
    OPT_DELIMITER,
    OPT_START_AFTER,
    OPT_TOKEN,
    OPT_MAX,
    OPT_LS_META,
    OPT_CA,
    OPT_CERT,
    OPT_KEY,
    OPT_AUTH_TOKEN,
    OPT_REQUEST_ID,
};

/* The options every command takes. */
#define CLI_COMMON_OPTS                                                                            \
    {"addr", required_argument, NULL, OPT_ADDR}, {"json", no_argument, NULL, OPT_JSON},            \
        {"timeout", required_argument, NULL, OPT_TIMEOUT},                                         \
        {"ca", required_argument, NULL, OPT_CA}, {"cert", required_argument, NULL, OPT_CERT},      \
        {"key", required_argument, NULL, OPT_KEY},                                                 \
        {"auth-token", required_argument, NULL, OPT_AUTH_TOKEN},                                   \
        {"request-id", required_argument, NULL, OPT_REQUEST_ID},                                   \
    {                                                                                              \
        "help", no_argument, NULL, 'h'                                                             \
    }

typedef struct cli {
    const char *addr;
    bool json;
    uint32_t timeout_ms;
    bool help, version;
    omc_client *c;
    omc_creds cr;                     /* --ca --cert --key --auth-token */
    char rid[RPC_REQUEST_ID_MAX + 1]; /* --request-id, or made by cli_connect */
    const char *cmd;
    /* command options */
    omc_store_opts store;
    bool has_if_version;
    uint64_t if_version;
    bool force;
    const char *output;
    omc_list_opts list;
    bool one_page;
} cli;

/* The options that only keep their argument or set a flag; cli_opt parses the rest. */
static const tool_slot cli_slots[] = {
    {'h', offsetof(cli, help), false},
    {'V', offsetof(cli, version), false},
    {OPT_ADDR, offsetof(cli, addr), true},
    {OPT_CA, offsetof(cli, cr.ca), true},
    {OPT_CERT, offsetof(cli, cr.cert), true},
    {OPT_KEY, offsetof(cli, cr.key), true},
    {OPT_AUTH_TOKEN, offsetof(cli, cr.token), true},
    {OPT_JSON, offsetof(cli, json), false},
    {OPT_META, offsetof(cli, store.metadata_json), true},
    {OPT_CONTENT_TYPE, offsetof(cli, store.content_type), true},
    {OPT_IF_ABSENT, offsetof(cli, store.if_absent), false},
    {'f', offsetof(cli, force), false},
    {'o', offsetof(cli, output), true},
    {OPT_DELIMITER, offsetof(cli, list.delimiter), true},
    {OPT_START_AFTER, offsetof(cli, list.start_after), true},
    {OPT_TOKEN, offsetof(cli, list.continuation_token), true},
    {OPT_LS_META, offsetof(cli, list.include_metadata), false},
};

/* The option callback of every command (tool_parse). */
static int
cli_opt(void *ctx, int code, const char *arg)
{
    cli *k = ctx;
    int64_t v;

    if (tool_slot_set(cli_slots, sizeof(cli_slots) / sizeof(cli_slots[0]), k, code, arg))
        return TOOL_EXIT_OK;
    switch (code) {
    case OPT_REQUEST_ID: {
        char why[160];
        if (arg[0] == '\0' ||
            rpc_request_id_check((const uint8_t *)arg, strlen(arg), why, sizeof(why)) != OM_OK)
            return tool_usage(k->cmd, "--request-id: %s", arg[0] ? why : "empty");
        snprintf(k->rid, sizeof(k->rid), "%s", arg);
        break;
    }
    case OPT_TIMEOUT:
        if (om_parse_int(arg, &v) != OM_OK || v <= 0 || v > UINT32_MAX)
            return tool_usage(k->cmd, "--timeout wants milliseconds, not '%s'", arg);
        k->timeout_ms = (uint32_t)v;
        break;
    case OPT_IF_VERSION:
        if (om_parse_int(arg, &v) != OM_OK || v < 0)
            return tool_usage(k->cmd, "--if-version wants a number, not '%s'", arg);
        k->has_if_version = true;
        k->if_version = (uint64_t)v;
        break;
    case OPT_MAX:
        if (om_parse_int(arg, &v) != OM_OK || v < 1 || v > 1000)
            return tool_usage(k->cmd, "--max wants a number from 1 to 1000, not '%s'", arg);
        k->list.max_keys = (uint32_t)v;
        k->one_page = true;
        break;
    default:
        return tool_usage(k->cmd, "option code %d not handled", code);
    }
    return TOOL_EXIT_OK;
}

/* Report a failed call; returns its exit code. */
static int
fail(cli *k, const char *what, om_status st)
{
    const char *msg = k->c ? omc_last_message(k->c) : "";
    if (k->json) {
        json_t *o = json_pack("{s:b,s:s,s:s,s:s,s:s}", "ok", 0, "error", om_status_str(st),
                              "message", msg, "operation", what, "request_id", k->rid);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    }
    fprintf(stderr, "objmeta: %s: %s: %s (request id %s)\n", what, om_status_str(st), msg, k->rid);
    return tool_exit_code(st);
}

static void
json_connect_error(cli *k, om_status st, const char *msg)
{
    if (!k->json)
        return;
    json_t *o = json_pack("{s:b,s:s,s:s}", "ok", 0, "error", om_status_str(st), "message",
                          msg && msg[0] ? msg : "cannot connect");
    json_dumpf(o, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(o);
}

/* --request-id, or else an id to quote from an error when asking the servers' logs about it. */
static void
cli_make_request_id(cli *k)
{
    uint64_t r = 0;

    if (k->rid[0] != '\0')
        return;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid();
    snprintf(k->rid, sizeof(k->rid), "cli-%016llx", (unsigned long long)r);
}

/*
 * Connect on first use, so that usage errors never depend on the server.
 * The connect and a first ping share a short deadline (TOOL_HANDSHAKE_MS):
 * a wrong address is reported at once, never after the request timeout.
 */
static int
cli_connect(cli *k)
{
    uint32_t hs = k->timeout_ms < TOOL_HANDSHAKE_MS ? k->timeout_ms : TOOL_HANDSHAKE_MS;
    char msg[512];
    om_status st;

    if (k->c != NULL)
        return TOOL_EXIT_OK;
    cli_make_request_id(k);
    st = omc_connect_creds(k->addr, hs, &k->cr, &k->c, msg, sizeof(msg));
    if (st != OM_OK) {
        json_connect_error(k, st, msg);
        if (st == OM_E_INVALID)
            return tool_usage(NULL, "%s", msg);
        /* a TLS failure has its own reason; otherwise the tool's usual advice */
        return tool_explain(k->addr, st, k->cr.ca != NULL && k->cr.ca[0] ? msg : NULL);
    }
    omc_set_timeout(k->c, hs);
    if (omc_set_request_id(k->c, k->rid, msg, sizeof(msg)) != OM_OK)
        return tool_usage(NULL, "%s", msg); /* checked when parsed; kept for a made one */
    st = omc_ping(k->c, NULL);
    if (st != OM_OK) {
        json_connect_error(k, st, omc_last_message(k->c));
        int rc = tool_explain(k->addr, st, omc_last_message(k->c));
        omc_close(k->c);
        k->c = NULL;
        return rc;
    }
    omc_set_timeout(k->c, k->timeout_ms);
    return TOOL_EXIT_OK;
}

static void
print_json(json_t *o)
{
    json_dumpf(o, stdout, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    fputc('\n', stdout);
    json_decref(o);
}

static void
fmt_time(uint64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *
info_json(const omc_info *i)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s,s:I,s:I,s:I}", "bucket", i->bucket, "key", i->key,
                          "size", (json_int_t)i->size, "etag", i->etag, "content_type",
                          i->content_type, "created_ms", (json_int_t)i->created_ms, "modified_ms",
                          (json_int_t)i->modified_ms, "version", (json_int_t)i->version);
    if (i->metadata_json && i->metadata_json[0]) {
        json_t *m = json_loads(i->metadata_json, 0, NULL);
        json_object_set_new(o, "metadata", m ? m : json_string(i->metadata_json));
    }
    return o;
}

/* Split BUCKET/KEY (key required) or BUCKET[/PREFIX] (key optional). */
static int
split_path(const cli *k, const char *arg, char **bucket, const char **rest, bool need_key)
{
    const char *slash = strchr(arg, '/');
    if (slash == NULL && need_key)
        return tool_usage(k->cmd, "'%s' is not BUCKET/KEY", arg);
    if (slash != NULL && slash[1] == '\0' && need_key)
        return tool_usage(k->cmd, "'%s' has an empty key", arg);
    *bucket = strndup(arg, slash ? (size_t)(slash - arg) : strlen(arg));
    *rest = slash ? slash + 1 : "";
    return TOOL_EXIT_OK;
}

static int
read_all(const char *path, om_buf *out)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char buf[65536];
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "objmeta: put: cannot open %s: %s\n", path, strerror(errno));
        return TOOL_EXIT_USAGE;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (om_buf_append(out, buf, n) != OM_OK)
            break;
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "objmeta: put: cannot read %s\n", f == stdin ? "standard input" : path);
        return TOOL_EXIT_OTHER;
    }
    return TOOL_EXIT_OK;
}

/* put BUCKET/KEY [FILE|-] */
static int
cmd_put(cli *k, int n, char **arg)
{
    const char *path = n > 1 ? arg[1] : "-", *key = NULL;
    char *bucket = NULL;
    om_buf data = OM_BUF_INIT;
    omc_info info = {0};
    int rc;

    if (k->has_if_version) {
        k->store.has_if_version = true;
        k->store.if_version = k->if_version;
    }
    if (k->store.if_absent && k->store.has_if_version)
        return tool_usage(k->cmd, "--if-absent and --if-version exclude each other");
    /* No FILE at a terminal would wait silently for typed data. */
    if (n == 1 && isatty(STDIN_FILENO))
        return tool_usage(k->cmd, "no FILE given and standard input is a terminal: give a FILE, "
                                  "or '-' to type the data (end with Ctrl-D)");
    if ((rc = split_path(k, arg[0], &bucket, &key, true)) != TOOL_EXIT_OK)
        return rc;
    if ((rc = read_all(path, &data)) == TOOL_EXIT_OK && (rc = cli_connect(k)) == TOOL_EXIT_OK) {
        om_status st = omc_store(k->c, bucket, key, om_buf_slice(&data), &k->store, &info);
        if (st != OM_OK) {
            rc = fail(k, "put", st);
        } else if (k->json) {
            print_json(info_json(&info));
        } else {
            printf("stored %s/%s size=%" PRIu64 " etag=%s version=%" PRIu64 "\n", bucket, key,
                   info.size, info.etag, info.version);
        }
    }
    omc_info_free(&info);
    om_buf_free(&data);
    free(bucket);
    return rc;
}

/* Write data to path ("-": standard output); an existing file only with --force. */
static int
write_output(const cli *k, const char *path, const om_buf *data)
{
    int fd = STDOUT_FILENO, rc = TOOL_EXIT_OK;
    size_t off = 0;

    if (strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (k->force ? O_TRUNC : O_EXCL), 0666);
        if (fd < 0 && errno == EEXIST)
            return tool_usage(k->cmd,
                              "%s exists; --force overwrites it (without FILE the data "
                              "goes to standard output)",
                              path);
        if (fd < 0) {
            fprintf(stderr, "objmeta: get: cannot create %s: %s\n", path, strerror(errno));
            return TOOL_EXIT_OTHER;
        }
    }
    while (off < data->n) {
        ssize_t w = write(fd, data->p + off, data->n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            fprintf(stderr, "objmeta: get: cannot write %s: %s\n", path, strerror(errno));
            rc = TOOL_EXIT_OTHER;
            break;
        }
        off += (size_t)w;
    }
    if (fd != STDOUT_FILENO && close(fd) != 0 && rc == TOOL_EXIT_OK) {
        fprintf(stderr, "objmeta: get: cannot write %s: %s\n", path, strerror(errno));
        rc = TOOL_EXIT_OTHER;
    }
    return rc;
}

/* get, head, exists: BUCKET/KEY (get: [FILE]) */
static int
cmd_read(cli *k, int n, char **arg)
{
    const char *cmd = k->cmd, *key = NULL, *path = k->output ? k->output : n > 1 ? arg[1] : "-";
    char *bucket = NULL;
    omc_info info = {0};
    om_buf data = OM_BUF_INIT;
    om_status st;
    int rc;

    if (k->output != NULL && n > 1)
        return tool_usage(cmd, "give the output FILE once (FILE or -o FILE)");
    /* refuse before asking the server; open() below re-checks (O_EXCL) */
    if (!k->force && strcmp(path, "-") != 0 && access(path, F_OK) == 0)
        return tool_usage(cmd,
                          "%s exists; --force overwrites it (without FILE the data goes to "
                          "standard output)",
                          path);
    if ((rc = split_path(k, arg[0], &bucket, &key, true)) != TOOL_EXIT_OK)
        return rc;
    if ((rc = cli_connect(k)) != TOOL_EXIT_OK) {
        free(bucket);
        return rc;
    }
    if (strcmp(cmd, "exists") == 0) {
        bool yes = false;
        st = omc_exists(k->c, bucket, key, &yes);
        if (st != OM_OK) {
            rc = fail(k, cmd, st);
        } else {
            if (k->json)
                print_json(json_pack("{s:b}", "exists", yes));
            else
                puts(yes ? "yes" : "no");
            rc = yes ? TOOL_EXIT_OK : TOOL_EXIT_NOT_FOUND;
        }
    } else if (strcmp(cmd, "head") == 0) {
        st = omc_head(k->c, bucket, key, &info);
        if (st != OM_OK) {
            rc = fail(k, cmd, st);
        } else if (k->json) {
            print_json(info_json(&info));
        } else {
            char c1[32], c2[32];
            fmt_time(info.created_ms, c1, sizeof(c1));
            fmt_time(info.modified_ms, c2, sizeof(c2));
            printf("bucket:       %s\nkey:          %s\nsize:         %" PRIu64
                   "\netag:         %s\nversion:      %" PRIu64
                   "\ncontent-type: %s\ncreated:      %s\nmodified:     %s\nmetadata:     %s\n",
                   info.bucket, info.key, info.size, info.etag, info.version, info.content_type, c1,
                   c2, info.metadata_json[0] ? info.metadata_json : "{}");
        }
    } else {
        st = omc_retrieve(k->c, bucket, key, &info, &data);
        if (st != OM_OK) {
            rc = fail(k, cmd, st);
        } else if (k->json && strcmp(path, "-") == 0) {
            json_t *o = info_json(&info);
            json_object_set_new(o, "data", json_stringn_nocheck((const char *)data.p, data.n));
            if (!om_utf8_valid(om_buf_slice(&data)))
                json_object_set_new(o, "data", json_null()); /* binary: use FILE output */
            print_json(o);
        } else {
            fflush(stdout);
            rc = write_output(k, path, &data);
            if (rc == TOOL_EXIT_OK && k->json)
                print_json(info_json(&info));
        }
    }
    omc_info_free(&info);
    om_buf_free(&data);
    free(bucket);
    return rc;
}

/*
 * rm BUCKET/KEY. A missing key exits 1 (so that a script can tell a delete
 * from a no-op, as with get and head); --force makes that exit 0, which is
 * what S3's idempotent DELETE answers.
 */
static int
cmd_rm(cli *k, int n, char **arg)
{
    const char *key = NULL;
    char *bucket = NULL;
    uint64_t version = 0;
    int rc;

    if ((rc = split_path(k, arg[0], &bucket, &key, true)) != TOOL_EXIT_OK)
        return rc;
    if ((rc = cli_connect(k)) != TOOL_EXIT_OK) {
        free(bucket);
        return rc;
    }
    om_status st =
        omc_delete(k->c, bucket, key, k->has_if_version ? &k->if_version : NULL, &version);
    if (st == OM_E_NOTFOUND && k->force) {
        if (k->json)
            print_json(json_pack("{s:s,s:s,s:b}", "bucket", bucket, "key", key, "deleted", 0));
        else
            printf("absent %s/%s (nothing to delete)\n", bucket, key);
    } else if (st == OM_E_NOTFOUND && !k->json) {
        fprintf(stderr,
                "objmeta: rm: %s/%s does not exist: nothing deleted (rm --force exits 0 for a "
                "missing key)\n",
                bucket, key);
        rc = TOOL_EXIT_NOT_FOUND;
    } else if (st != OM_OK) {
        rc = fail(k, "rm", st);
    } else if (k->json) {
        print_json(json_pack("{s:s,s:s,s:b,s:I}", "bucket", bucket, "key", key, "deleted", 1,
                             "version", (json_int_t)version));
    } else {
        printf("deleted %s/%s version=%" PRIu64 "\n", bucket, key, version);
    }
    free(bucket);
    return rc;
}

static int
cmd_ls(cli *k, int n, char **arg)
{
    omc_list_opts o = k->list;
    const char *prefix;
    char *bucket = NULL, *token = NULL;
    bool one_page = k->one_page;
    json_t *entries = NULL, *prefixes = NULL;
    omc_list_page p = {0};
    bool truncated = false;
    int rc;

    if ((rc = split_path(k, arg[0], &bucket, &prefix, false)) != TOOL_EXIT_OK)
        return rc;
    o.prefix = prefix;
    entries = json_array();
    prefixes = json_array();
    if ((rc = cli_connect(k)) != TOOL_EXIT_OK)
        goto out;
    for (;;) {
        om_status st = omc_list(k->c, bucket, &o, &p);
        if (st != OM_OK) {
            rc = fail(k, "ls", st);
            break;
        }
        for (size_t i = 0; i < p.n_common_prefixes; i++) {
            if (k->json)
                json_array_append_new(prefixes, json_string(p.common_prefixes[i]));
            else
                printf("%30s %s\n", "PRE", p.common_prefixes[i]);
        }
        for (size_t i = 0; i < p.n_entries; i++) {
            if (k->json) {
                json_array_append_new(entries, info_json(&p.entries[i]));
            } else {
                char t[32];
                fmt_time(p.entries[i].modified_ms, t, sizeof(t));
                printf("%s %10" PRIu64 " %s\n", t, p.entries[i].size, p.entries[i].key);
            }
        }
        truncated = p.is_truncated;
        free(token);
        token = strdup(p.next_continuation_token);
        omc_list_page_free(&p);
        if (!truncated || one_page)
            break;
        o.continuation_token = token;
    }
    if (rc == TOOL_EXIT_OK && k->json) {
        json_t *doc = json_pack("{s:o,s:o,s:b}", "entries", entries, "common_prefixes", prefixes,
                                "is_truncated", truncated);
        json_object_set_new(doc, "next_continuation_token",
                            json_string(truncated && token ? token : ""));
        entries = prefixes = NULL;
        print_json(doc);
    } else if (rc == TOOL_EXIT_OK && truncated) {
        printf("(truncated; next page: --token %s)\n", token);
    }
out:
    json_decref(entries);
    json_decref(prefixes);
    free(token);
    free(bucket);
    return rc;
}

static int
cmd_stats(cli *k, int n, char **arg)
{
    bool ping = strcmp(k->cmd, "ping") == 0;
    omc_stats s = {0};
    char *server = NULL;
    int rc = cli_connect(k);
    if (rc != TOOL_EXIT_OK)
        return rc;
    om_status st = ping ? omc_ping(k->c, &server) : omc_stats_get(k->c, &s);
    if (st != OM_OK)
        return fail(k, ping ? "ping" : "stats", st);
    if (ping && k->json) {
        print_json(json_pack("{s:s}", "server", server));
    } else if (ping) {
        printf("%s\n", server);
    } else if (k->json) {
        json_t *o = json_object();
        for (size_t i = 0; i < s.n; i++)
            json_object_set_new(o, s.names[i], json_integer((json_int_t)s.values[i]));
        print_json(o);
    } else {
        fputs(s.text, stdout);
    }
    free(server);
    omc_stats_free(&s);
    return TOOL_EXIT_OK;
}

static const struct option global_opts[] = {
    CLI_COMMON_OPTS, {"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0}};
static const struct option plain_opts[] = {CLI_COMMON_OPTS, {NULL, 0, NULL, 0}};
static const struct option put_opts[] = {
    CLI_COMMON_OPTS,
    {"meta", required_argument, NULL, OPT_META},
    {"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
    {"if-absent", no_argument, NULL, OPT_IF_ABSENT},
    {"if-version", required_argument, NULL, OPT_IF_VERSION},
    {NULL, 0, NULL, 0}};
static const struct option get_opts[] = {CLI_COMMON_OPTS,
                                         {"output", required_argument, NULL, 'o'},
                                         {"force", no_argument, NULL, 'f'},
                                         {NULL, 0, NULL, 0}};
static const struct option rm_opts[] = {CLI_COMMON_OPTS,
                                        {"if-version", required_argument, NULL, OPT_IF_VERSION},
                                        {"force", no_argument, NULL, 'f'},
                                        {NULL, 0, NULL, 0}};
static const struct option ls_opts[] = {CLI_COMMON_OPTS,
                                        {"delimiter", required_argument, NULL, OPT_DELIMITER},
                                        {"start-after", required_argument, NULL, OPT_START_AFTER},
                                        {"token", required_argument, NULL, OPT_TOKEN},
                                        {"max", required_argument, NULL, OPT_MAX},
                                        {"meta", no_argument, NULL, OPT_LS_META},
                                        {NULL, 0, NULL, 0}};

typedef struct command {
    const char *name;
    const struct option *opts;
    const char *shortopts;
    int min_args, max_args; /* operands after the command name */
    int (*run)(cli *k, int n, char **arg);
    const char *usage;
} command;

static const command commands[] = {
    {"put", put_opts, "h", 1, 2, cmd_put,
     "put BUCKET/KEY FILE|- [--meta JSON] [--content-type T] [--if-absent | --if-version V]"},
    {"get", get_opts, "ho:f", 1, 2, cmd_read, "get BUCKET/KEY [FILE | -o FILE] [--force]"},
    {"head", plain_opts, "h", 1, 1, cmd_read, "head BUCKET/KEY"},
    {"exists", plain_opts, "h", 1, 1, cmd_read, "exists BUCKET/KEY"},
    {"rm", rm_opts, "hf", 1, 1, cmd_rm, "rm BUCKET/KEY [--if-version V] [--force]"},
    {"ls", ls_opts, "h", 1, 1, cmd_ls,
     "ls BUCKET[/PREFIX] [--delimiter D] [--start-after K] [--max N] [--token T] [--meta]"},
    {"stats", plain_opts, "h", 0, 0, cmd_stats, "stats"},
    {"ping", plain_opts, "h", 0, 0, cmd_stats, "ping"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command *
find_command(const char *name)
{
    const char *names[N_COMMANDS + 3];
    size_t i;

    for (i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
        names[i] = commands[i].name;
    }
    names[i++] = "admin";
    names[i++] = "help";
    names[i] = NULL;
    const char *s = tool_suggest(name, names);
    if (s != NULL)
        tool_usage(NULL, "unknown command '%s'; did you mean '%s'?", name, s);
    else
        tool_usage(NULL, "unknown command '%s'", name);
    return NULL;
}

int
main(int argc, char **argv)
{
    cli k = {
        .addr = getenv("OBJMETA_ADDR"), .timeout_ms = 30000, .cr.token = getenv("OBJMETA_TOKEN")};
    const command *c;
    int first, rc;

    rc = tool_parse(NULL, global_opts, "hV", true, argc, argv, cli_opt, &k, &first);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (k.version) {
        printf("objmeta %s\n", OM_VERSION);
        return TOOL_EXIT_OK;
    }
    if (k.help || (first < argc && strcmp(argv[first], "help") == 0)) {
        fputs(usage_text, stdout);
        return TOOL_EXIT_OK;
    }
    if (first >= argc)
        return tool_usage(NULL, "no command given");
    if (k.addr == NULL || k.addr[0] == '\0')
        k.addr = "127.0.0.1:7000";
    k.cmd = argv[first];
    if (strcmp(k.cmd, "admin") == 0) { /* own options: its --addr names the new shard */
        if ((rc = tool_check_addr(k.addr)) != TOOL_EXIT_OK)
            return rc;
        cli_make_request_id(&k);
        return objmeta_admin(k.addr, k.json, k.timeout_ms, &k.cr, k.rid, argc - first,
                             argv + first);
    }
    if ((c = find_command(k.cmd)) == NULL)
        return TOOL_EXIT_USAGE;
    argc -= first;
    argv += first;
    rc = tool_parse(c->name, c->opts, c->shortopts, false, argc, argv, cli_opt, &k, &first);
    if (rc != TOOL_EXIT_OK)
        return rc;
    if (k.help) {
        printf("usage: objmeta [--addr HOST:PORT] [--json] [--timeout MS] %s\n", c->usage);
        return TOOL_EXIT_OK;
    }
    int n = argc - first;
    if (n < c->min_args || n > c->max_args)
        return tool_usage(c->name, "%s: usage: objmeta %s",
                          n < c->min_args ? "missing operand" : "too many operands", c->usage);
    if ((rc = tool_check_addr(k.addr)) != TOOL_EXIT_OK)
        return rc;
    rc = c->run(&k, n, argv + first);
    omc_close(k.c);
    return rc;
}
