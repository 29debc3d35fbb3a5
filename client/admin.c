/*
 * client/admin.c -- `objmeta admin`: add-shard, remove-shard, set-weight,
 * cancel and rebalance-status against objmeta-coord (the protocol's
 * AddShard, RemoveShard, SetWeight, CancelRebalance and RebalanceStatus;
 * coordinator/MIGRATION.md).
 *
 * --wait polls RebalanceStatus every 500 ms until the change is over. On a
 * terminal it redraws one progress line (\r); otherwise it prints a plain
 * line every few seconds and whenever the phase changes, so logs stay
 * readable. A BUSY answer (another change is running) exits 4, a refused
 * change (unknown or duplicate id, last shard, bad weight) exits 5, and so
 * does a refused cancel (no change, or one already switched). The replica
 * group commands (add-group ... verify) are in admin_group.c.
 */
#include "client/admin.h"
#include "client/admin_int.h"

#include <inttypes.h>
#include <stddef.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "client/tool.h"
#include "rpc/rpc.h"
#include "util/clock.h"

static const char admin_usage[] =
    "usage: objmeta [--addr COORD] [--json] admin COMMAND\n"
    "  add-shard --id ID --addr HOST:PORT [--weight W] [--wait]\n"
    "  remove-shard --id ID [--wait]\n"
    "  set-weight --id ID --weight W [--wait]\n"
    "  cancel [--wait]    roll back the change in progress (not once it has switched)\n"
    "  rebalance-status [--json]\n"
    "  status [--json]    every coordinator of --addr a,b,c: leader or follower, the ring\n"
    "                     epoch (and pending epoch) it holds, its cluster-state revision\n"
    "Replica groups (etcd cluster state; shard/REPLICATION.md):\n"
    "  add-group --id G --replicas A@HOST:PORT,B@HOST:PORT,... [--weight W] [--wait]\n"
    "  remove-group --id G        out of the ring (waits for the change), then its configuration\n"
    "  groups [--json]            per group and replica: role, in-sync, term, index, state\n"
    "                             (primary, in-sync, catching-up, out-of-sync, down), lag in\n"
    "                             records and bytes; the leader key\n"
    "  promote --group G --replica X            planned switchover (X must be in sync)\n"
    "  add-replica --group G --replica X@HOST:PORT\n"
    "  remove-replica --group G --replica X\n"
    "  verify --group G [--ranges N]           compare the replicas' digests (exit 0: identical)\n"
    "  verify --shards HOST:PORT,... [--ranges N]   the same against shards directly\n"
    "Only one ring change runs at a time; --wait follows it to the end.\n";

int
admin_exit(om_status st)
{
    switch (st) {
    case OM_OK:
        return A_OK;
    case OM_E_UNAVAILABLE:
    case OM_E_TIMEOUT:
    case OM_E_BUSY:
        return A_UNAVAILABLE;
    case OM_E_INVALID:
    case OM_E_NOTFOUND:
        return A_INVALID;
    default:
        return A_OTHER;
    }
}

int
admin_usage_error(const char *msg, const char *arg)
{
    return tool_usage("admin", "%s%s", msg, arg ? arg : ""); /* the tool's one wording */
}

/*
 * Connect and ping within TOOL_HANDSHAKE_MS (client/tool.c): a wrong address
 * (nothing listening, an HTTP port, a silent server) is explained at once.
 * The ping's payload ends in an empty line so that an HTTP server answers.
 */
static om_status
admin_open(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest pr = OBJMETA__PING_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    uint32_t hs = a->timeout_ms < TOOL_HANDSHAKE_MS ? a->timeout_ms : TOOL_HANDSHAKE_MS;
    const char *p = a->addr;
    char one[256] = "";
    om_status st = OM_E_INVALID;
    bool tls = a->cr != NULL && a->cr->ca != NULL && a->cr->ca[0] != '\0';

    pr.payload.data = (uint8_t *)"\r\n\r\n";
    pr.payload.len = 4;
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &pr;
    req.request_id = (char *)a->rid;
    /* several coordinators (a,b,c): the first that answers; a change is never resent */
    while (*p != '\0') {
        size_t n = strcspn(p, ",");

        snprintf(one, sizeof(one), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
        if (n == 0)
            continue;
        char msg[512] = "";
        st = omc_rpc_open(one, hs, a->cr, &a->c, &a->tls, msg, sizeof(msg));
        if (st == OM_OK && (st = rpc_sync_client_call(a->c, &req, hs, &r)) == OM_OK) {
            rpc_response_free(r);
            return OM_OK;
        }
        /* a TLS failure has its own reason; otherwise the tool's usual advice */
        if (*p == '\0')
            a->exit_code = tool_explain(one, st,
                                        a->c            ? rpc_sync_client_last_error(a->c)
                                        : tls && msg[0] ? msg
                                                        : NULL);
        rpc_sync_client_close(a->c);
        a->c = NULL;
        rpc_tls_free(a->tls);
        a->tls = NULL;
    }
    if (a->exit_code == 0)
        a->exit_code = tool_explain(a->addr, st, NULL);
    return st;
}

/* Send req to the coordinator; on OM_OK *resp is an OK response the caller frees. */
om_status
admin_call(admin *a, const Objmeta__Request *in, Objmeta__Response **resp, const char *what)
{
    Objmeta__Request req = *in;
    Objmeta__Response *r = NULL;
    om_status st;

    if (a->c == NULL && (st = admin_open(a)) != OM_OK)
        return st;
    req.request_id = (char *)a->rid;
    st = rpc_sync_client_call(a->c, &req, a->timeout_ms, &r);
    if (st != OM_OK) {
        fprintf(stderr, "objmeta admin: %s: %s: %s (request id %s)\n", what, om_status_str(st),
                rpc_sync_client_last_error(a->c), a->rid);
        return st;
    }
    st = rpc_response_status(r);
    if (st != OM_OK) {
        if (a->json) {
            json_t *o = json_pack("{s:b,s:s,s:s,s:s}", "ok", 0, "error", om_status_str(st),
                                  "message", r->message, "request_id", a->rid);
            json_dumpf(o, stdout, JSON_COMPACT);
            fputc('\n', stdout);
            json_decref(o);
        }
        fprintf(stderr, "objmeta admin: %s: %s: %s (request id %s)\n", what, om_status_str(st),
                r->message, a->rid);
        rpc_response_free(r);
        return st;
    }
    *resp = r;
    return OM_OK;
}

static void
fmt_bytes(double b, char *out, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;

    while (b >= 1024.0 && i < 4) {
        b /= 1024.0;
        i++;
    }
    snprintf(out, n, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
}

static void
fmt_ms(uint64_t ms, char *out, size_t n)
{
    if (ms == 0)
        snprintf(out, n, "-");
    else if (ms < 60000)
        snprintf(out, n, "%.1fs", (double)ms / 1000.0);
    else
        snprintf(out, n, "%llum%02llus", (unsigned long long)(ms / 60000),
                 (unsigned long long)(ms / 1000 % 60));
}

static om_status
get_status(admin *a, Objmeta__Response **out)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RebalanceStatusRequest rq = OBJMETA__REBALANCE_STATUS_REQUEST__INIT;
    om_status st;

    req.body_case = OBJMETA__REQUEST__BODY_REBALANCE_STATUS;
    req.rebalance_status = &rq;
    st = admin_call(a, &req, out, "rebalance-status");
    if (st == OM_OK && (*out)->body_case != OBJMETA__RESPONSE__BODY_REBALANCE_STATUS) {
        fprintf(stderr,
                "objmeta admin: the server sent no rebalance status (is %s a "
                "coordinator?)\n",
                a->addr);
        rpc_response_free(*out);
        return OM_E_INTERNAL;
    }
    return st;
}

/* "12.0 MiB of 40.0 MiB (30%)": compaction bytes read of their total. */
static void
fmt_done_of(uint64_t done, uint64_t total, char *out, size_t n)
{
    char d[32], t[32];

    fmt_bytes((double)done, d, sizeof(d));
    fmt_bytes((double)total, t, sizeof(t));
    snprintf(out, n, "%s of %s (%u%%)", d, t,
             total > 0 ? (unsigned)(done >= total ? 100 : done * 100 / total) : 0u);
}

/*
 * One line: phase, records, bytes, rate, ETA; in cleanup the old owners'
 * compactions instead (table bytes read of their total, their rate and
 * ETA) and how many have compacted away what they gave up. The change's
 * error is something it waits for and retries, not a failure.
 */
static void
status_line(const Objmeta__RebalanceStatusResponse *s, char *out, size_t n)
{
    char b[32], r[32], e[32];

    fmt_bytes((double)s->bytes_copied, b, sizeof(b));
    if (strcmp(s->phase, "cleanup") == 0) {
        char of[96];
        fmt_done_of(s->cleanup_bytes_done, s->cleanup_bytes_total, of, sizeof(of));
        fmt_bytes(s->rate_bytes_per_sec, r, sizeof(r));
        fmt_ms(s->eta_ms, e, sizeof(e));
        snprintf(out, n,
                 "%-8s epoch %" PRIu64 "->%" PRIu64 " %" PRIu64
                 " records %s copied; old owners compacting: %s %s/s ETA %s, %u/%u done%s%s",
                 s->phase, s->from_epoch, s->to_epoch, s->records_copied, b, of, r, e,
                 s->sources_done, s->sources, s->error[0] ? "  waiting: " : "", s->error);
        return;
    }
    fmt_bytes(s->rate_bytes_per_sec, r, sizeof(r));
    fmt_ms(s->eta_ms, e, sizeof(e));
    snprintf(out, n, "%-8s epoch %" PRIu64 "->%" PRIu64 " %" PRIu64 " records %s %s/s ETA %s%s%s",
             s->phase, s->from_epoch, s->to_epoch, s->records_copied, b, r, e,
             s->error[0] ? "  waiting: " : "", s->error);
}

static json_t *
status_json(const Objmeta__RebalanceStatusResponse *s)
{
    json_t *o = json_pack(
        "{s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:s,s:I,s:i,s:i}", "active", s->active, "phase",
        s->phase, "operation", s->operation, "from_epoch", (json_int_t)s->from_epoch, "to_epoch",
        (json_int_t)s->to_epoch, "started_ms", (json_int_t)s->started_ms, "records_copied",
        (json_int_t)s->records_copied, "bytes_copied", (json_int_t)s->bytes_copied,
        "rate_bytes_per_sec", s->rate_bytes_per_sec, "eta_ms", (json_int_t)s->eta_ms, "error",
        s->error, "last_change_epoch", (json_int_t)s->last_change_epoch, "sources_done",
        (int)s->sources_done, "sources", (int)s->sources);
    json_t *ranges = json_array();

    json_object_set_new(o, "duration_ms", json_integer((json_int_t)s->duration_ms));
    json_object_set_new(o, "cleanup_bytes_before",
                        json_integer((json_int_t)s->cleanup_bytes_before));
    json_object_set_new(o, "cleanup_bytes_after", json_integer((json_int_t)s->cleanup_bytes_after));
    json_object_set_new(o, "cleanup_bytes_done", json_integer((json_int_t)s->cleanup_bytes_done));
    json_object_set_new(o, "cleanup_bytes_total", json_integer((json_int_t)s->cleanup_bytes_total));
    json_t *cl = json_array();
    for (size_t i = 0; i < s->n_cleanup; i++) {
        const Objmeta__CleanupProgress *p = s->cleanup[i];
        json_array_append_new(cl, json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "shard", p->shard, "state",
                                            p->state, "bytes_done", (json_int_t)p->bytes_done,
                                            "bytes_total", (json_int_t)p->bytes_total,
                                            "bytes_before", (json_int_t)p->bytes_before,
                                            "bytes_after", (json_int_t)p->bytes_after));
    }
    json_object_set_new(o, "cleanup", cl);

    for (size_t i = 0; i < s->n_ranges; i++) {
        const Objmeta__RangeProgress *r = s->ranges[i];
        char start[24], end[24];
        snprintf(start, sizeof(start), "%016" PRIx64, r->start);
        snprintf(end, sizeof(end), "%016" PRIx64, r->end);
        json_array_append_new(
            ranges,
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:f,s:I,s:s}", "start", start, "end", end,
                      "from", r->from_shard, "to", r->to_shard, "phase", r->phase, "records_copied",
                      (json_int_t)r->records_copied, "bytes_copied", (json_int_t)r->bytes_copied,
                      "rate_bytes_per_sec", r->rate_bytes_per_sec, "eta_ms", (json_int_t)r->eta_ms,
                      "error", r->error));
    }
    json_object_set_new(o, "ranges", ranges);
    return o;
}

static void
status_print(const Objmeta__RebalanceStatusResponse *s)
{
    char line[512];

    if (!s->active && s->operation[0] != '\0') {
        /* the last change's summary, kept by the coordinator until the next one */
        char b[32], t[32], d[32], bb[32], ba[32];
        time_t st = (time_t)(s->started_ms / 1000);
        struct tm tm;
        fmt_bytes((double)s->bytes_copied, b, sizeof(b));
        gmtime_r(&st, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
        fmt_ms(s->duration_ms, d, sizeof(d));
        printf("no ring change in progress\nlast change: %s, done at epoch %" PRIu64 ": %" PRIu64
               " records (%s) copied; started %s, took %s\n",
               s->operation, s->last_change_epoch, s->records_copied, b, t, d);
        if (s->cleanup_bytes_before > 0 || s->cleanup_bytes_total > 0) {
            char of[96];
            fmt_bytes((double)s->cleanup_bytes_before, bb, sizeof(bb));
            fmt_bytes((double)s->cleanup_bytes_after, ba, sizeof(ba));
            fmt_done_of(s->cleanup_bytes_done, s->cleanup_bytes_total, of, sizeof(of));
            printf("cleanup: old owners compacted from %s to %s (compactions read %s)\n", bb, ba,
                   of);
        }
        return;
    }
    if (!s->active) {
        printf("no ring change in progress (last change reached epoch %" PRIu64 ")\n",
               s->last_change_epoch);
        return;
    }
    char d[32];
    status_line(s, line, sizeof(line));
    fmt_ms(s->duration_ms, d, sizeof(d));
    printf("%s\nchange: %s (running for %s)\nsources done: %u/%u, moving ranges: %zu\n", line,
           s->operation, d, s->sources_done, s->sources, s->n_ranges);
    if (s->n_ranges > 0)
        printf("%-33s %-10s %-10s %-8s %10s %10s %10s %8s\n", "range", "from", "to", "phase",
               "records", "bytes", "rate/s", "eta");
    if (strcmp(s->phase, "cleanup") == 0 && s->n_cleanup > 0)
        printf("%-10s %-10s %s\n", "old owner", "state", "compacted");
    for (size_t i = 0; strcmp(s->phase, "cleanup") == 0 && i < s->n_cleanup; i++) {
        const Objmeta__CleanupProgress *p = s->cleanup[i];
        char of[96];
        fmt_done_of(p->bytes_done, p->bytes_total, of, sizeof(of));
        printf("%-10s %-10s %s\n", p->shard, p->state, p->bytes_total > 0 ? of : "-");
    }
    for (size_t i = 0; i < s->n_ranges; i++) {
        const Objmeta__RangeProgress *r = s->ranges[i];
        char b[32], rt[32], e[32];
        fmt_bytes((double)r->bytes_copied, b, sizeof(b));
        fmt_bytes(r->rate_bytes_per_sec, rt, sizeof(rt));
        fmt_ms(r->eta_ms, e, sizeof(e));
        printf("%016" PRIx64 "-%016" PRIx64 " %-10s %-10s %-8s %10" PRIu64 " %10s %10s %8s%s%s\n",
               r->start, r->end, r->from_shard, r->to_shard, r->phase, r->records_copied, b, rt, e,
               r->error[0] ? " " : "", r->error);
    }
}

static int
cmd_status(admin *a)
{
    Objmeta__Response *r = NULL;
    om_status st = get_status(a, &r);

    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    if (a->json) {
        json_t *o = status_json(r->rebalance_status);
        json_dumpf(o, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
        json_decref(o);
    } else {
        status_print(r->rebalance_status);
    }
    rpc_response_free(r);
    return A_OK;
}

/* Follow the change to `to_epoch` until it is over. */
int
wait_change(admin *a, uint64_t to_epoch)
{
    bool tty = isatty(STDOUT_FILENO) && !a->json;
    uint64_t last_plain = 0;
    char last_phase[32] = "";
    int fails = 0;

    for (;;) {
        Objmeta__Response *r = NULL;
        const Objmeta__RebalanceStatusResponse *s;
        char line[512];
        om_status st = get_status(a, &r);

        if (st != OM_OK) {
            /* the coordinator may be restarting: the change resumes there */
            if (++fails > 120)
                return a->exit_code ? a->exit_code : admin_exit(st);
            om_clock_sleep_ms(500);
            continue;
        }
        fails = 0;
        s = r->rebalance_status;
        if (!s->active && s->last_change_epoch >= to_epoch) {
            if (tty)
                printf("\r\033[K");
            if (a->json) {
                json_t *o = status_json(s);
                json_dumpf(o, stdout, JSON_COMPACT);
                fputc('\n', stdout);
                json_decref(o);
            } else {
                char b[32];
                fmt_bytes((double)s->bytes_copied, b, sizeof(b));
                printf("done: ring epoch %" PRIu64 ", %" PRIu64 " records (%s) copied\n",
                       s->last_change_epoch, s->records_copied, b);
            }
            rpc_response_free(r);
            return A_OK;
        }
        if (!s->active || s->to_epoch != to_epoch) {
            fprintf(stderr,
                    "objmeta admin: the coordinator is not running the change to epoch %" PRIu64
                    " (phase %s, last change reached epoch %" PRIu64 ")\n",
                    to_epoch, s->phase, s->last_change_epoch);
            rpc_response_free(r);
            return A_OTHER;
        }
        status_line(s, line, sizeof(line));
        if (tty) {
            printf("\r\033[K%s", line);
            fflush(stdout);
        } else if (!a->json &&
                   (om_clock_mono_ms() - last_plain >= 2000 || strcmp(last_phase, s->phase) != 0)) {
            printf("%s\n", line);
            fflush(stdout);
            last_plain = om_clock_mono_ms();
        }
        snprintf(last_phase, sizeof(last_phase), "%s", s->phase);
        rpc_response_free(r);
        om_clock_sleep_ms(500);
    }
}

static int
cmd_change(admin *a, const char *cmd, const char *id, const char *saddr, long weight, bool wait)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddShardRequest ad = OBJMETA__ADD_SHARD_REQUEST__INIT;
    Objmeta__RemoveShardRequest rm = OBJMETA__REMOVE_SHARD_REQUEST__INIT;
    Objmeta__SetWeightRequest sw = OBJMETA__SET_WEIGHT_REQUEST__INIT;
    const Objmeta__RingChangeResponse *rc = NULL;
    Objmeta__Response *r = NULL;
    om_status st;
    int rcode;

    if (strcmp(cmd, "add-shard") == 0) {
        ad.id = (char *)id;
        ad.addr = (char *)saddr;
        ad.weight = weight > 0 ? (uint32_t)weight : 1;
        req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
        req.add_shard = &ad;
    } else if (strcmp(cmd, "remove-shard") == 0) {
        rm.id = (char *)id;
        req.body_case = OBJMETA__REQUEST__BODY_REMOVE_SHARD;
        req.remove_shard = &rm;
    } else {
        sw.id = (char *)id;
        sw.weight = (uint32_t)weight;
        req.body_case = OBJMETA__REQUEST__BODY_SET_WEIGHT;
        req.set_weight = &sw;
    }
    st = admin_call(a, &req, &r, cmd);
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    rc = r->body_case == OBJMETA__RESPONSE__BODY_ADD_SHARD      ? r->add_shard
         : r->body_case == OBJMETA__RESPONSE__BODY_REMOVE_SHARD ? r->remove_shard
         : r->body_case == OBJMETA__RESPONSE__BODY_SET_WEIGHT   ? r->set_weight
                                                                : NULL;
    if (rc == NULL) {
        fprintf(stderr, "objmeta admin: %s: the server's answer has no ring change\n", cmd);
        rpc_response_free(r);
        return A_OTHER;
    }
    if (a->json && !wait) {
        json_t *o = json_pack("{s:b,s:I,s:I,s:i}", "ok", 1, "from_epoch",
                              (json_int_t)rc->from_epoch, "to_epoch", (json_int_t)rc->to_epoch,
                              "moving_ranges", (int)rc->moving_ranges);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    } else if (!a->json) {
        printf("%s: ring epoch %" PRIu64 " -> %" PRIu64 ", %u hash ranges move\n", cmd,
               rc->from_epoch, rc->to_epoch, rc->moving_ranges);
        fflush(stdout);
    }
    uint64_t to = rc->to_epoch;
    rpc_response_free(r);
    rcode = wait ? wait_change(a, to) : A_OK;
    return rcode;
}

/* CancelRebalance; --wait follows the cancel (a change of its own) to its end. */
static int
cmd_cancel(admin *a, bool wait)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__CancelRebalanceRequest cq = OBJMETA__CANCEL_REBALANCE_REQUEST__INIT;
    const Objmeta__CancelRebalanceResponse *cr;
    Objmeta__Response *r = NULL;
    om_status st;

    req.body_case = OBJMETA__REQUEST__BODY_CANCEL_REBALANCE;
    req.cancel_rebalance = &cq;
    st = admin_call(a, &req, &r, "cancel");
    if (st == OM_E_PRECONDITION)
        return A_INVALID; /* nothing to cancel, or past the switch: refused */
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    if (r->body_case != OBJMETA__RESPONSE__BODY_CANCEL_REBALANCE) {
        fprintf(stderr, "objmeta admin: cancel: the server's answer has no cancel\n");
        rpc_response_free(r);
        return A_OTHER;
    }
    cr = r->cancel_rebalance;
    if (a->json && !wait) {
        json_t *o =
            json_pack("{s:b,s:s,s:s,s:I,s:I,s:I,s:b,s:[]}", "ok", 1, "operation", cr->operation,
                      "phase", cr->phase, "from_epoch", (json_int_t)cr->from_epoch, "to_epoch",
                      (json_int_t)cr->to_epoch, "cancelled_epoch", (json_int_t)cr->cancelled_epoch,
                      "already", (int)cr->already, "wipe_shards");
        for (size_t i = 0; o != NULL && i < cr->n_wipe_shards; i++)
            json_array_append_new(json_object_get(o, "wipe_shards"),
                                  json_string(cr->wipe_shards[i]));
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    } else if (!a->json) {
        if (cr->already)
            printf("cancel: already under way (%s); ring epoch %" PRIu64 " -> %" PRIu64 "\n",
                   cr->operation, cr->from_epoch, cr->to_epoch);
        else
            printf("cancel: %s cancelled while %s; ring epoch %" PRIu64
                   " stays in force (as epoch %" PRIu64 "), pending epoch %" PRIu64
                   " dropped; the shards that received copies compact them\n",
                   cr->operation, cr->phase, cr->from_epoch, cr->to_epoch, cr->cancelled_epoch);
        for (size_t i = 0; i < cr->n_wipe_shards; i++)
            printf("shard %s left the cluster holding copies: wipe its data dir before adding "
                   "it again\n",
                   cr->wipe_shards[i]);
        fflush(stdout);
    }
    uint64_t to = cr->to_epoch;
    rpc_response_free(r);
    return wait ? wait_change(a, to) : A_OK;
}

enum {
    AOPT_ID = 256,
    AOPT_ADDR,
    AOPT_WEIGHT,
    AOPT_WAIT,
    AOPT_JSON,
    AOPT_REPLICAS,
    AOPT_GROUP,
    AOPT_REPLICA,
    AOPT_RANGES,
    AOPT_SHARDS
};

static const struct option admin_opts[] = {{"id", required_argument, NULL, AOPT_ID},
                                           {"addr", required_argument, NULL, AOPT_ADDR},
                                           {"shard-addr", required_argument, NULL, AOPT_ADDR},
                                           {"weight", required_argument, NULL, AOPT_WEIGHT},
                                           {"wait", no_argument, NULL, AOPT_WAIT},
                                           {"json", no_argument, NULL, AOPT_JSON},
                                           {"replicas", required_argument, NULL, AOPT_REPLICAS},
                                           {"group", required_argument, NULL, AOPT_GROUP},
                                           {"replica", required_argument, NULL, AOPT_REPLICA},
                                           {"ranges", required_argument, NULL, AOPT_RANGES},
                                           {"shards", required_argument, NULL, AOPT_SHARDS},
                                           {"help", no_argument, NULL, 'h'},
                                           {NULL, 0, NULL, 0}};

/* The options that only keep their argument or set a flag; admin_opt parses the numbers. */
static const tool_slot admin_slots[] = {
    {'h', offsetof(admin, help), false},
    {AOPT_ID, offsetof(admin, id), true},
    {AOPT_ADDR, offsetof(admin, shard_addr), true},
    {AOPT_WAIT, offsetof(admin, wait), false},
    {AOPT_JSON, offsetof(admin, json), false},
    {AOPT_REPLICAS, offsetof(admin, replicas), true},
    {AOPT_GROUP, offsetof(admin, group), true},
    {AOPT_REPLICA, offsetof(admin, replica), true},
    {AOPT_SHARDS, offsetof(admin, shards), true},
};

static int
admin_opt(void *ctx, int code, const char *v)
{
    admin *a = ctx;
    char *end;

    if (tool_slot_set(admin_slots, sizeof(admin_slots) / sizeof(admin_slots[0]), a, code, v))
        return A_OK;
    switch (code) {
    case AOPT_WEIGHT:
        a->weight = strtol(v, &end, 10);
        if (*end != '\0' || a->weight < 1 || a->weight > 1000)
            return admin_usage_error("--weight wants 1..1000, not ", v);
        break;
    case AOPT_RANGES:
        a->ranges = strtol(v, &end, 10);
        if (*end != '\0' || a->ranges < 1 || a->ranges > 4096)
            return admin_usage_error("--ranges wants 1..4096, not ", v);
        break;
    default:
        return admin_usage_error("option not handled", NULL);
    }
    return A_OK;
}

/* One coordinator's view, from its Stats counters; false if it did not answer. */
typedef struct coord_view {
    uint64_t leader, epoch, pending, revision;
} coord_view;

static bool
view_of(const char *addr, uint32_t timeout_ms, const omc_creds *cr, coord_view *v, char *why,
        size_t whylen)
{
    rpc_tls *tls = NULL;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest sr = OBJMETA__STATS_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    rpc_sync_client *c = NULL;
    om_status st;

    memset(v, 0, sizeof(*v));
    req.body_case = OBJMETA__REQUEST__BODY_STATS;
    req.stats = &sr;
    st = omc_rpc_open(addr, timeout_ms < 3000 ? timeout_ms : 3000, cr, &c, &tls, why, whylen);
    if (st == OM_OK)
        st = rpc_sync_client_call(c, &req, timeout_ms, &r);
    if (st == OM_OK &&
        (r->status != OBJMETA__STATUS__OK || r->body_case != OBJMETA__RESPONSE__BODY_STATS))
        st = OM_E_UNAVAILABLE;
    if (st != OM_OK) {
        if (r != NULL || c != NULL || why[0] == '\0') /* else: omc_rpc_open's reason */
            snprintf(why, whylen, "%s", r && r->message ? r->message : om_status_str(st));
        rpc_response_free(r);
        rpc_sync_client_close(c);
        rpc_tls_free(tls);
        return false;
    }
    for (size_t i = 0; i < r->stats->n_counters; i++) {
        const Objmeta__StatsCounter *k = r->stats->counters[i];
        if (strcmp(k->name, "coord.leader") == 0)
            v->leader = k->value;
        else if (strcmp(k->name, "coord.ring_epoch") == 0)
            v->epoch = k->value;
        else if (strcmp(k->name, "coord.migrate.pending_epoch") == 0)
            v->pending = k->value;
        else if (strcmp(k->name, "coord.state.revision") == 0)
            v->revision = k->value;
    }
    rpc_response_free(r);
    rpc_sync_client_close(c);
    rpc_tls_free(tls);
    return true;
}

/* admin status: ask every coordinator of the list for its role and epochs. */
static int
cmd_coords(admin *a)
{
    const char *p = a->addr;
    json_t *arr = a->json ? json_array() : NULL;
    int answered = 0, leaders = 0;

    if (!a->json)
        printf("%-24s %-9s %6s %8s %9s\n", "COORDINATOR", "ROLE", "EPOCH", "PENDING", "REVISION");
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        char one[256], why[256];
        coord_view v;
        bool ok;

        snprintf(one, sizeof(one), "%.*s", (int)n, p);
        p += n + (p[n] == ',');
        if (n == 0)
            continue;
        ok = view_of(one, a->timeout_ms, a->cr, &v, why, sizeof(why));
        answered += ok;
        leaders += ok && v.leader;
        if (a->json) {
            json_t *o =
                ok ? json_pack("{s:s,s:s,s:I,s:I,s:I}", "addr", one, "role",
                               v.leader ? "leader" : "follower", "epoch", (json_int_t)v.epoch,
                               "pending_epoch", (json_int_t)v.pending, "revision",
                               (json_int_t)v.revision)
                   : json_pack("{s:s,s:s,s:s}", "addr", one, "role", "unreachable", "error", why);
            json_array_append_new(arr, o);
        } else if (ok) {
            printf("%-24s %-9s %6" PRIu64 " %8" PRIu64 " %9" PRIu64 "\n", one,
                   v.leader ? "leader" : "follower", v.epoch, v.pending, v.revision);
        } else {
            printf("%-24s %-9s %s\n", one, "DOWN", why);
        }
    }
    if (a->json) {
        json_dumpf(arr, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(arr);
    } else if (answered > 0 && leaders != 1) {
        printf("(%d coordinators answered and %d of them lead%s)\n", answered, leaders,
               leaders == 0 ? ": none is elected right now, or etcd is unreachable" : "");
    }
    return answered > 0 ? A_OK : A_UNAVAILABLE;
}

int
objmeta_admin(const char *addr, bool json, uint32_t timeout_ms, const omc_creds *cr,
              const char *rid, int argc, char **argv)
{
    static const char *const cmds[] = {
        "add-shard", "remove-shard", "set-weight",     "cancel",       "rebalance-status",
        "status",    "help",         "add-group",      "remove-group", "groups",
        "promote",   "add-replica",  "remove-replica", "verify",       NULL};
    admin a = {.addr = addr, .json = json, .timeout_ms = timeout_ms, .cr = cr, .rid = rid};
    const char *cmd;
    int rc, first;

    if (argc < 2)
        return admin_usage_error("no admin command given", NULL);
    cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(admin_usage, stdout);
        return A_OK;
    }
    bool known = false;
    for (size_t i = 0; cmds[i] != NULL; i++)
        known = known || strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        const char *s = tool_suggest(cmd, cmds);
        if (s != NULL)
            return tool_usage("admin", "unknown admin command '%s'; did you mean '%s'?", cmd, s);
        return tool_usage("admin", "unknown admin command '%s'", cmd);
    }
    char name[48];
    snprintf(name, sizeof(name), "admin %s", cmd);
    rc = tool_parse(name, admin_opts, "h", false, argc - 1, argv + 1, admin_opt, &a, &first);
    if (rc != A_OK)
        return rc;
    if (a.help) {
        fputs(admin_usage, stdout);
        return A_OK;
    }
    if (first < argc - 1)
        return admin_usage_error("unexpected argument ", argv[1 + first]);
    const char *id = a.id, *saddr = a.shard_addr;
    long weight = a.weight;
    bool wait = a.wait;
    bool group_opts = a.replicas || a.group || a.replica || a.ranges || a.shards;
    if (admin_is_group_cmd(cmd)) {
        rc = admin_group_run(&a, cmd); /* admin_group.c */
    } else if (group_opts) {
        return admin_usage_error(cmd, " takes none of --replicas --group --replica --ranges "
                                      "--shards");
    } else if (strcmp(cmd, "status") == 0) {
        if (id || saddr || weight || wait)
            return admin_usage_error("status takes no options but --json", NULL);
        rc = cmd_coords(&a);
    } else if (strcmp(cmd, "rebalance-status") == 0) {
        if (id || saddr || weight || wait)
            return admin_usage_error("rebalance-status takes no options but --json", NULL);
        rc = cmd_status(&a);
    } else if (strcmp(cmd, "cancel") == 0) {
        if (id || saddr || weight)
            return admin_usage_error("cancel takes no options but --wait and --json", NULL);
        rc = cmd_cancel(&a, wait);
    } else {
        bool add = cmd[0] == 'a', sw = cmd[0] == 's';
        if (id == NULL || id[0] == '\0')
            return admin_usage_error(cmd, " needs --id ID");
        if (add && saddr == NULL)
            return admin_usage_error("add-shard needs --addr HOST:PORT (the new shard's)", NULL);
        if (add && (rc = tool_check_addr(saddr)) != A_OK)
            return rc;
        if (!add && saddr != NULL)
            return admin_usage_error(cmd, " takes no --addr");
        if (sw && weight == 0)
            return admin_usage_error("set-weight needs --weight W", NULL);
        if (!add && !sw && weight != 0)
            return admin_usage_error("remove-shard takes no --weight", NULL);
        rc = cmd_change(&a, cmd, id, saddr, weight, wait);
    }
    rpc_sync_client_close(a.c);
    rpc_tls_free(a.tls);
    return rc;
}
