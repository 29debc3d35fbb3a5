/*
 * client/objmeta.c -- the `objmeta` command-line tool on libobjmeta-client.
 * Talks to a shard or to the coordinator (same protocol). Human-readable
 * output by default, one JSON document with --json. The exit codes are part
 * of the interface (scripts test them) and listed by `objmeta --help`.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/admin.h"
#include "client/client.h"
#include "util/conf.h"

enum {
    EXIT_OK = 0,
    EXIT_NOT_FOUND = 1,
    EXIT_USAGE = 2,
    EXIT_PRECONDITION = 3,
    EXIT_UNAVAILABLE = 4,
    EXIT_INVALID = 5,
    EXIT_OTHER = 6,
    EXIT_DENIED = 7,
};

static const char usage_text[] =
    "usage: objmeta [--addr HOST:PORT] [--json] [--timeout MS] COMMAND ARGS...\n"
    "\n"
    "commands:\n"
    "  put BUCKET/KEY [FILE|-] [--meta JSON] [--content-type T] [--if-absent | --if-version V]\n"
    "                  store FILE (or standard input when FILE is '-' or missing)\n"
    "  get BUCKET/KEY [FILE|-]   write the data to FILE (default standard output)\n"
    "  head BUCKET/KEY           show size, etag, version, times, content type, metadata\n"
    "  exists BUCKET/KEY         print yes or no (exit 0 or 1)\n"
    "  rm BUCKET/KEY [--if-version V]\n"
    "  ls BUCKET[/PREFIX] [--delimiter D] [--start-after K] [--max N] [--token T] [--meta]\n"
    "                  list keys; follows continuation tokens unless --max is given\n"
    "  stats                     server counters\n"
    "  ping                      round trip to the server\n"
    "  admin COMMAND             ring changes on the coordinator: add-shard, remove-shard,\n"
    "                            set-weight, rebalance-status (objmeta admin help)\n"
    "\n"
    "options:\n"
    "  --addr HOST:PORT  server address (default $OBJMETA_ADDR, else 127.0.0.1:7000)\n"
    "  --json            print one JSON document instead of text\n"
    "  --timeout MS      per-request timeout (default 30000)\n"
    "  --ca FILE         connect with TLS, verifying the server against this CA\n"
    "  --cert FILE --key FILE  present this client certificate (roles by its OU)\n"
    "  --token TOKEN     authenticate with a bucket-scoped token (default $OBJMETA_TOKEN)\n"
    "\n"
    "exit codes:\n"
    "  0  ok\n"
    "  1  not found (get, head, rm of a missing key; exists: no)\n"
    "  2  usage error\n"
    "  3  precondition failed (--if-absent / --if-version did not hold)\n"
    "  4  unavailable (cannot connect, timeout, server busy or shutting down)\n"
    "  5  invalid argument (rejected by the server: bucket, key, metadata, size)\n"
    "  6  any other error (wrong shard, corruption, internal)\n"
    "  7  unauthenticated or permission denied (credential missing or not enough)\n";

typedef struct cli {
    const char *addr;
    bool json;
    uint32_t timeout_ms;
    omc_client *c;
    omc_creds cr; /* --ca --cert --key --token */
} cli;

static int
exit_code(om_status st)
{
    switch (st) {
    case OM_OK:
        return EXIT_OK;
    case OM_E_NOTFOUND:
        return EXIT_NOT_FOUND;
    case OM_E_PRECONDITION:
        return EXIT_PRECONDITION;
    case OM_E_UNAVAILABLE:
    case OM_E_TIMEOUT:
    case OM_E_BUSY:
        return EXIT_UNAVAILABLE;
    case OM_E_INVALID:
        return EXIT_INVALID;
    case OM_E_UNAUTHENTICATED:
    case OM_E_PERMISSION:
        return EXIT_DENIED;
    default:
        return EXIT_OTHER;
    }
}

/* --ca/--cert/--key/--token VALUE (or =VALUE) into *out[k]; true if argv[*i] was one. */
static bool
cred_option(char **argv, int argc, int *i, const char *const names[4], const char **out[4])
{
    for (int k = 0; k < 4; k++) {
        size_t n = strlen(names[k]);
        if (strcmp(argv[*i], names[k]) == 0 && *i + 1 < argc) {
            *out[k] = argv[++*i];
            return true;
        }
        if (strncmp(argv[*i], names[k], n) == 0 && argv[*i][n] == '=') {
            *out[k] = argv[*i] + n + 1;
            return true;
        }
    }
    return false;
}

static int
usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "objmeta: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(objmeta --help lists the commands)\n");
    return EXIT_USAGE;
}

/* Report a failed call; returns its exit code. */
static int
fail(cli *k, const char *what, om_status st)
{
    const char *msg = k->c ? omc_last_message(k->c) : "";
    if (k->json) {
        json_t *o = json_pack("{s:b,s:s,s:s,s:s}", "ok", 0, "error", om_status_str(st), "message",
                              msg, "operation", what);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    }
    fprintf(stderr, "objmeta: %s: %s: %s\n", what, om_status_str(st), msg);
    return exit_code(st);
}

/* Connect on first use, so that usage errors never depend on the server. */
static int
cli_connect(cli *k)
{
    char msg[512];
    om_status st;

    if (k->c != NULL)
        return EXIT_OK;
    st = omc_connect_creds(k->addr, k->timeout_ms < 3000 ? k->timeout_ms : 3000, &k->cr, &k->c, msg,
                           sizeof(msg));
    if (st != OM_OK) {
        fprintf(stderr, "objmeta: %s\n", msg);
        if (k->json)
            printf("{\"ok\": false, \"error\": \"%s\", \"message\": \"cannot connect\"}\n",
                   om_status_str(st));
        return st == OM_E_INVALID ? EXIT_USAGE : EXIT_UNAVAILABLE;
    }
    omc_set_timeout(k->c, k->timeout_ms);
    return EXIT_OK;
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
split_path(const char *arg, char **bucket, const char **rest, bool need_key)
{
    const char *slash = strchr(arg, '/');
    if (slash == NULL && need_key)
        return usage_error("'%s' is not BUCKET/KEY", arg);
    if (slash != NULL && slash[1] == '\0' && need_key)
        return usage_error("'%s' has an empty key", arg);
    *bucket = strndup(arg, slash ? (size_t)(slash - arg) : strlen(arg));
    *rest = slash ? slash + 1 : "";
    return EXIT_OK;
}

static int
read_all(const char *path, om_buf *out)
{
    FILE *f = (path == NULL || strcmp(path, "-") == 0) ? stdin : fopen(path, "rb");
    char buf[65536];
    size_t n;
    if (f == NULL) {
        fprintf(stderr, "objmeta: cannot open %s: %s\n", path, strerror(errno));
        return EXIT_USAGE;
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (om_buf_append(out, buf, n) != OM_OK)
            break;
    int bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "objmeta: cannot read %s\n", path ? path : "standard input");
        return EXIT_OTHER;
    }
    return EXIT_OK;
}

static bool
parse_u64(const char *s, uint64_t *v)
{
    int64_t x;
    if (om_parse_int(s, &x) != OM_OK || x < 0)
        return false;
    *v = (uint64_t)x;
    return true;
}

/* Fetch the value of option argv[*i] ("--opt V"); NULL (usage error printed) if missing. */
static const char *
opt_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        usage_error("option %s needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int
cmd_put(cli *k, int argc, char **argv)
{
    omc_store_opts o = {0};
    const char *path = NULL, *target = NULL, *key, *v;
    char *bucket = NULL;
    om_buf data = OM_BUF_INIT;
    omc_info info = {0};
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--meta") == 0) {
            if ((o.metadata_json = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--content-type") == 0) {
            if ((o.content_type = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--if-absent") == 0) {
            o.if_absent = true;
        } else if (strcmp(argv[i], "--if-version") == 0) {
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
            if (!parse_u64(v, &o.if_version))
                return usage_error("--if-version wants a number, not '%s'", v);
            o.has_if_version = true;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            return usage_error("put: unknown option %s", argv[i]);
        } else if (target == NULL) {
            target = argv[i];
        } else if (path == NULL) {
            path = argv[i];
        } else {
            return usage_error("put: unexpected argument '%s'", argv[i]);
        }
    }
    if (target == NULL)
        return usage_error("%s", "put needs BUCKET/KEY");
    if (o.if_absent && o.has_if_version)
        return usage_error("%s", "--if-absent and --if-version exclude each other");
    if ((rc = split_path(target, &bucket, &key, true)) != EXIT_OK)
        return rc;
    if ((rc = read_all(path, &data)) == EXIT_OK && (rc = cli_connect(k)) == EXIT_OK) {
        om_status st = omc_store(k->c, bucket, key, om_buf_slice(&data), &o, &info);
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

/* get, head, exists: BUCKET/KEY [FILE] */
static int
cmd_read(cli *k, const char *cmd, int argc, char **argv)
{
    char *bucket = NULL;
    const char *key;
    omc_info info = {0};
    om_buf data = OM_BUF_INIT;
    om_status st;
    int rc;

    if (argc < 2 || argc > (strcmp(cmd, "get") == 0 ? 3 : 2))
        return usage_error("%s needs BUCKET/KEY (get also takes an output FILE)", cmd);
    if ((rc = split_path(argv[1], &bucket, &key, true)) != EXIT_OK)
        return rc;
    if ((rc = cli_connect(k)) != EXIT_OK) {
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
            rc = yes ? EXIT_OK : EXIT_NOT_FOUND;
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
        } else if (k->json) {
            json_t *o = info_json(&info);
            json_object_set_new(o, "data", json_stringn_nocheck((const char *)data.p, data.n));
            if (!om_utf8_valid(om_buf_slice(&data)))
                json_object_set_new(o, "data", json_null()); /* binary: use FILE output */
            print_json(o);
        } else {
            const char *path = argc == 3 ? argv[2] : "-";
            FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
            if (f == NULL || (data.n > 0 && fwrite(data.p, 1, data.n, f) != data.n)) {
                fprintf(stderr, "objmeta: cannot write %s: %s\n", path, strerror(errno));
                rc = EXIT_OTHER;
            }
            if (f != NULL && f != stdout && fclose(f) != 0)
                rc = EXIT_OTHER;
        }
    }
    omc_info_free(&info);
    om_buf_free(&data);
    free(bucket);
    return rc;
}

static int
cmd_rm(cli *k, int argc, char **argv)
{
    const char *target = NULL, *key, *v;
    char *bucket = NULL;
    uint64_t ifv = 0, version = 0;
    bool has_ifv = false;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--if-version") == 0) {
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
            if (!parse_u64(v, &ifv))
                return usage_error("--if-version wants a number, not '%s'", v);
            has_ifv = true;
        } else if (target == NULL && argv[i][0] != '-') {
            target = argv[i];
        } else {
            return usage_error("rm: unexpected argument '%s'", argv[i]);
        }
    }
    if (target == NULL)
        return usage_error("%s", "rm needs BUCKET/KEY");
    if ((rc = split_path(target, &bucket, &key, true)) != EXIT_OK)
        return rc;
    if ((rc = cli_connect(k)) != EXIT_OK) {
        free(bucket);
        return rc;
    }
    om_status st = omc_delete(k->c, bucket, key, has_ifv ? &ifv : NULL, &version);
    if (st != OM_OK)
        rc = fail(k, "rm", st);
    else if (k->json)
        print_json(json_pack("{s:s,s:s,s:I}", "bucket", bucket, "key", key, "version",
                             (json_int_t)version));
    else
        printf("deleted %s/%s version=%" PRIu64 "\n", bucket, key, version);
    free(bucket);
    return rc;
}

static int
cmd_ls(cli *k, int argc, char **argv)
{
    omc_list_opts o = {0};
    const char *target = NULL, *prefix, *v;
    char *bucket = NULL, *token = NULL;
    bool one_page = false;
    json_t *entries = NULL, *prefixes = NULL;
    omc_list_page p = {0};
    bool truncated = false;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--delimiter") == 0) {
            if ((o.delimiter = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--start-after") == 0) {
            if ((o.start_after = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--token") == 0) {
            if ((o.continuation_token = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
        } else if (strcmp(argv[i], "--meta") == 0) {
            o.include_metadata = true;
        } else if (strcmp(argv[i], "--max") == 0) {
            uint64_t n;
            if ((v = opt_value(argc, argv, &i)) == NULL)
                return EXIT_USAGE;
            if (!parse_u64(v, &n) || n > 1000 || n == 0)
                return usage_error("--max wants a number from 1 to 1000, not '%s'", v);
            o.max_keys = (uint32_t)n;
            one_page = true;
        } else if (target == NULL && argv[i][0] != '-') {
            target = argv[i];
        } else {
            return usage_error("ls: unexpected argument '%s'", argv[i]);
        }
    }
    if (target == NULL)
        return usage_error("%s", "ls needs BUCKET[/PREFIX]");
    if ((rc = split_path(target, &bucket, &prefix, false)) != EXIT_OK)
        return rc;
    o.prefix = prefix;
    entries = json_array();
    prefixes = json_array();
    if ((rc = cli_connect(k)) != EXIT_OK)
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
    if (rc == EXIT_OK && k->json) {
        json_t *doc = json_pack("{s:o,s:o,s:b}", "entries", entries, "common_prefixes", prefixes,
                                "is_truncated", truncated);
        json_object_set_new(doc, "next_continuation_token",
                            json_string(truncated && token ? token : ""));
        entries = prefixes = NULL;
        print_json(doc);
    } else if (rc == EXIT_OK && truncated) {
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
cmd_stats(cli *k, bool ping)
{
    omc_stats s = {0};
    char *server = NULL;
    int rc = cli_connect(k);
    if (rc != EXIT_OK)
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
    return EXIT_OK;
}

int
main(int argc, char **argv)
{
    cli k = {
        .addr = getenv("OBJMETA_ADDR"), .timeout_ms = 30000, .cr.token = getenv("OBJMETA_TOKEN")};
    const char **cred[] = {&k.cr.ca, &k.cr.cert, &k.cr.key, &k.cr.token};
    static const char *const cred_opt[] = {"--ca", "--cert", "--key", "--token"};
    int i = 1, rc;

    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return EXIT_OK;
        } else if (strcmp(argv[i], "--json") == 0) {
            k.json = true;
        } else if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
            k.addr = argv[++i];
        } else if (strncmp(argv[i], "--addr=", 7) == 0) {
            k.addr = argv[i] + 7;
        } else if (cred_option(argv, argc, &i, cred_opt, cred)) {
            continue;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            uint64_t t;
            if (!parse_u64(argv[++i], &t) || t == 0 || t > UINT32_MAX)
                return usage_error("--timeout wants milliseconds, not '%s'", argv[i]);
            k.timeout_ms = (uint32_t)t;
        } else {
            return usage_error("unknown option %s", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("%s", "no command given");
    if (k.addr == NULL || k.addr[0] == '\0')
        k.addr = "127.0.0.1:7000";
    const char *cmd = argv[i];
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "admin") == 0) /* own options: its --addr names the new shard */
        return objmeta_admin(k.addr, k.json, k.timeout_ms, &k.cr, argc - i, argv + i);
    if (strcmp(cmd, "put") && strcmp(cmd, "get") && strcmp(cmd, "head") && strcmp(cmd, "exists") &&
        strcmp(cmd, "rm") && strcmp(cmd, "ls") && strcmp(cmd, "stats") && strcmp(cmd, "ping"))
        return usage_error("unknown command '%s'", cmd);
    /* json and addr may also follow the command */
    int n = 0;
    char **args = calloc((size_t)(argc - i) + 1, sizeof(char *));
    for (int j = i; j < argc; j++) {
        if (strcmp(argv[j], "--json") == 0)
            k.json = true;
        else if (strcmp(argv[j], "--addr") == 0 && j + 1 < argc)
            k.addr = argv[++j];
        else if (!cred_option(argv, argc, &j, cred_opt, cred))
            args[n++] = argv[j];
    }
    if (strcmp(cmd, "put") == 0)
        rc = cmd_put(&k, n, args);
    else if (strcmp(cmd, "rm") == 0)
        rc = cmd_rm(&k, n, args);
    else if (strcmp(cmd, "ls") == 0)
        rc = cmd_ls(&k, n, args);
    else if (strcmp(cmd, "stats") == 0 || strcmp(cmd, "ping") == 0)
        rc = n == 1 ? cmd_stats(&k, strcmp(cmd, "ping") == 0)
                    : usage_error("%s takes no arguments", cmd);
    else
        rc = cmd_read(&k, cmd, n, args);
    omc_close(k.c);
    free(args);
    return rc;
}
