/*
 * coordinator/metrics.c -- every answer the coordinator sends, counted in one
 * table, and what renders it: Stats, /metrics and /healthz.
 *
 * The answer table is c->answers[op][status]: one row per coord_op, one
 * column per wire Status (COORD_NSTATUS, the protobuf enum's count; a status
 * this build does not know is counted as INTERNAL). Only answer_count()
 * writes it. The coordinator-wide counters are one table too
 * (coord_metrics: Stats name, /metrics family, value), so Stats and
 * /metrics cannot list different things. Every file that answers a client (router.c,
 * fanout.c, mig_admin.c, migrate.c) calls down into this file, which calls
 * nothing in coordinator/ but the shard pool's up count.
 *
 * Thread-safety: loop thread only, like everything in coord_int.h.
 */
#define OM_LOG_MODULE "coord"
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "coordinator/cstate.h"
#include "util/clock.h"

static const char *const coord_op_names[COORD_OP_COUNT_] = {
    "store", "retrieve", "head", "exists", "delete", "list", "stats", "ping", "get_ring", "other",
};

static const char *
coord_op_name(coord_op op)
{
    return coord_op_names[op];
}

/* Answers sent for op, every status. */
static uint64_t
coord_answers_total(const coord *c, coord_op op)
{
    uint64_t total = 0;

    for (int k = 0; k < COORD_NSTATUS; k++)
        total += c->answers[op][k];
    return total;
}

/* Count one answer of op with wire status s and its latency, now - t0. */
static void
answer_count(coord *c, coord_op op, uint64_t t0, uint64_t now, Objmeta__Status s)
{
    unsigned col = (unsigned)s < COORD_NSTATUS ? (unsigned)s : (unsigned)COORD_STATUS_UNKNOWN;

    c->answers[op][col]++;
    rpc_hist_observe_ns(&c->latency[op], now - t0);
}

void
coord_answer(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, const Objmeta__Response *resp)
{
    answer_count(c, op, t0, om_clock_mono_ns(), resp->status);
    rpc_reply_send(reply, resp);
}

void
coord_answer_encoded(coord *c, coord_op op, uint64_t t0, uint64_t now, rpc_reply *reply,
                     const Objmeta__Response *resp, om_slice encoded)
{
    answer_count(c, op, t0, now, resp->status);
    rpc_reply_send_encoded(reply, encoded.p, encoded.n);
}

void
coord_answer_error(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, om_status st,
                   const char *fmt, ...)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp.status = rpc_status_to_proto(st);
    resp.message = msg;
    coord_answer(c, op, t0, reply, &resp);
}

/* --- the counter table: Stats and /metrics ---------------------------------------------------- */

static uint64_t
metric_ring_epoch(const coord *c)
{
    return ring_epoch(c->ring);
}

static uint64_t
metric_shards(const coord *c)
{
    return c->nshards;
}

static uint64_t
metric_shards_up(const coord *c)
{
    return coord_pool_up_count(c);
}

static uint64_t
metric_pending_epoch(const coord *c)
{
    return c->pending ? ring_epoch(c->pending) : 0;
}

static uint64_t
metric_held(const coord *c)
{
    return c->held_count;
}

static uint64_t
metric_leader(const coord *c)
{
    return coord_is_leader(c);
}

static uint64_t
metric_state_revision(const coord *c)
{
    return (uint64_t)coord_cstate_revision(c->cs);
}

static uint64_t
metric_watch_lag(const coord *c)
{
    return (uint64_t)(coord_cstate_seen_revision(c->cs) - coord_cstate_revision(c->cs));
}

static etcd_stats
etcd_of(const coord *c)
{
    etcd_stats es;

    coord_cstate_etcd_stats(c->cs, &es);
    return es;
}

static uint64_t
metric_etcd_requests(const coord *c)
{
    return etcd_of(c).requests;
}

static uint64_t
metric_etcd_errors(const coord *c)
{
    return etcd_of(c).errors;
}

static uint64_t
metric_etcd_latency_us(const coord *c)
{
    return etcd_of(c).latency_us;
}

static uint64_t
metric_etcd_failovers(const coord *c)
{
    return etcd_of(c).failovers;
}

/*
 * One row per coordinator-wide counter: its Stats name, its /metrics family
 * (NULL: Stats only), labels, type and help, and where its value is -- a
 * uint64_t field of coord (FIELD checks the size; fn NULL) or a function. Rows of one family are
 * adjacent (the header is written once).
 */
typedef struct coord_metric {
    const char *stat;
    const char *prom, *labels, *type, *help;
    size_t off;
    uint64_t (*fn)(const coord *c);
} coord_metric;

#define FIELD(f)                                                                                   \
    offsetof(coord, f) + 0 * sizeof(char[sizeof(((coord *)0)->f) == sizeof(uint64_t) ? 1 : -1]),   \
        NULL
#define FN(f) 0, f
static const coord_metric coord_metrics[] = {
    {"coord.ring_epoch", "objmeta_coord_ring_epoch", NULL, "gauge", "Epoch of the ring in force.",
     FN(metric_ring_epoch)},
    {"coord.shards", NULL, NULL, NULL, NULL, FN(metric_shards)},
    {"coord.shards_up", NULL, NULL, NULL, NULL, FN(metric_shards_up)},
    {"coord.list.pages", NULL, NULL, NULL, NULL, FIELD(list_pages)},
    {"coord.list.shard_fetches", "objmeta_coord_list_shard_fetches_total", NULL, "counter",
     "Pages fetched from shards to answer List.", FIELD(list_shard_fetches)},
    {"coord.list.records_fetched", "objmeta_coord_list_records_fetched_total", NULL, "counter",
     "Entries fetched from shards to answer List.", FIELD(list_records_fetched)},
    {"coord.list.records_returned", "objmeta_coord_list_records_returned_total", NULL, "counter",
     "Entries returned to List callers.", FIELD(list_records_returned)},
    {"coord.migrate.pending_epoch", "objmeta_coord_migrate_pending_epoch", NULL, "gauge",
     "Epoch of the ring a change in progress moves to (0 = none).", FN(metric_pending_epoch)},
    {"coord.migrate.forwards_ok", "objmeta_coord_migrate_forwards_total", "result=\"ok\"",
     "counter", "Writes to moving keys forwarded to their new owner, by result.",
     FIELD(forwards_ok)},
    {"coord.migrate.forwards_failed", "objmeta_coord_migrate_forwards_total", "result=\"failed\"",
     "counter", "Writes to moving keys forwarded to their new owner, by result.",
     FIELD(forwards_failed)},
    {"coord.migrate.held_requests", NULL, NULL, NULL, NULL, FN(metric_held)},
    {"coord.leader", "objmeta_coord_leader", NULL, "gauge",
     "1 while this coordinator leads (runs ring changes), 0 while it follows.", FN(metric_leader)},
    {"coord.state.revision", "objmeta_coord_state_revision", NULL, "gauge",
     "etcd revision of the cluster state this coordinator last loaded or saved (0: file).",
     FN(metric_state_revision)},
    {"coord.state.watch_lag", "objmeta_coord_state_watch_lag_revisions", NULL, "gauge",
     "etcd revisions seen by the watch but not yet in the installed state (0: caught up).",
     FN(metric_watch_lag)},
    {"coord.state.reloads", "objmeta_coord_state_reloads_total", NULL, "counter",
     "Cluster states loaded after another coordinator saved.", FIELD(state_reloads)},
    {"coord.admin.forwarded", "objmeta_coord_admin_forwarded_total", NULL, "counter",
     "Admin changes a follower passed to the leader.", FIELD(forwarded_admin)},
    {"coord.proxied_moving", "objmeta_coord_proxied_moving_total", NULL, "counter",
     "Requests for moving keys a follower passed to the leader during a change.",
     FIELD(proxied_moving)},
    {"coord.etcd.requests", "objmeta_coord_etcd_requests_total", NULL, "counter",
     "Cluster-state requests to etcd (loads, saves), any outcome.", FN(metric_etcd_requests)},
    {"coord.etcd.errors", "objmeta_coord_etcd_errors_total", NULL, "counter",
     "Cluster-state requests to etcd that failed (unreachable, timeout, refused).",
     FN(metric_etcd_errors)},
    /* in seconds on /metrics: written after the table (coord_render_metrics) */
    {"coord.etcd.latency_us", NULL, NULL, NULL, NULL, FN(metric_etcd_latency_us)},
    {"coord.etcd.failovers", "objmeta_coord_etcd_failovers_total", NULL, "counter",
     "Moves of the cluster-state client to another etcd endpoint.", FN(metric_etcd_failovers)},
};
#undef FIELD
#undef FN
#define COORD_NMETRICS (sizeof(coord_metrics) / sizeof(coord_metrics[0]))

static uint64_t
metric_value(const coord *c, const coord_metric *m)
{
    uint64_t v;

    if (m->fn != NULL)
        return m->fn(c);
    memcpy(&v, (const char *)c + m->off, sizeof(v));
    return v;
}

/* Stats: counters plus a readable report of the ring and the shards. */
void
coord_answer_stats(coord *c, uint64_t t0, rpc_reply *reply)
{
    enum { MAXC = COORD_OP_COUNT_ + COORD_NMETRICS };
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__StatsResponse sr = OBJMETA__STATS_RESPONSE__INIT;
    Objmeta__StatsCounter cnt[MAXC], *ptrs[MAXC];
    char names[MAXC][48];
    om_buf text = OM_BUF_INIT;
    size_t n = 0;
    om_status st = OM_OK;

#define COUNTER(nm, v)                                                                             \
    do {                                                                                           \
        objmeta__stats_counter__init(&cnt[n]);                                                     \
        snprintf(names[n], sizeof(names[n]), "%s", (nm));                                          \
        cnt[n].name = names[n];                                                                    \
        cnt[n].value = (v);                                                                        \
        ptrs[n] = &cnt[n];                                                                         \
        n++;                                                                                       \
    } while (0)
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        char nm[48];
        snprintf(nm, sizeof(nm), "coord.requests.%s", coord_op_name((coord_op)op));
        COUNTER(nm, coord_answers_total(c, (coord_op)op));
    }
    for (size_t i = 0; i < COORD_NMETRICS; i++)
        COUNTER(coord_metrics[i].stat, metric_value(c, &coord_metrics[i]));
#undef COUNTER

    st = om_buf_printf(&text, "objmeta-coord %s\nring: ", OM_VERSION);
    if (st == OM_OK)
        st = ring_format(c->ring, &text);
    for (size_t i = 0; st == OM_OK && i < c->nshards; i++) {
        const coord_shard *sh = c->shards[i];
        size_t ri;
        double share =
            ring_find(c->ring, sh->id, &ri) == OM_OK ? ring_shard_fraction(c->ring, ri) : 0;
        st = om_buf_printf(&text,
                           "\nshard %s %s %s forwarded=%llu failed_fast=%llu "
                           "transport_errors=%llu share=%.4f%s%s",
                           sh->id, sh->addr, sh->up ? "up" : "DOWN",
                           (unsigned long long)sh->forwarded, (unsigned long long)sh->failed_fast,
                           (unsigned long long)sh->transport_errors, share,
                           sh->up ? "" : " reason=", sh->up ? "" : sh->why_down);
    }
    if (st == OM_OK) {
        om_slice leader = coord_cstate_leader(c->cs);

        st = om_buf_printf(&text, "\nstate: %s revision=%lld role=%s leader=%.*s\n",
                           coord_cstate_where(c->cs), (long long)coord_cstate_revision(c->cs),
                           coord_is_leader(c) ? "leader" : "follower", (int)leader.n,
                           (const char *)leader.p);
    }
    if (st != OM_OK) {
        om_buf_free(&text);
        coord_answer_error(c, COORD_OP_STATS, t0, reply, st, "cannot build stats");
        return;
    }
    sr.counters = ptrs;
    sr.n_counters = n;
    sr.text = (char *)text.p;
    resp.body_case = OBJMETA__RESPONSE__BODY_STATS;
    resp.stats = &sr;
    coord_answer(c, COORD_OP_STATS, t0, reply, &resp);
    om_buf_free(&text);
}

/* --- /metrics and /healthz ------------------------------------------------------------------- */

om_status
coord_render_metrics(void *arg, om_buf *out)
{
    coord *c = arg;
    char labels[160];

    OM_TRY(rpc_prom_header(out, "objmeta_coord_requests_total", "counter",
                           "Requests answered by the coordinator, by operation and status."));
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        for (int k = 0; k < COORD_NSTATUS; k++) {
            if (c->answers[op][k] == 0 && k != 0)
                continue;
            snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%s\"", coord_op_name((coord_op)op),
                     rpc_proto_status_name((Objmeta__Status)k));
            OM_TRY(rpc_prom_value(out, "objmeta_coord_requests_total", labels,
                                  (double)c->answers[op][k]));
        }
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_request_seconds", "histogram",
                           "Time from receiving a request to answering it, by operation."));
    for (int op = 0; op < COORD_OP_COUNT_; op++) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", coord_op_name((coord_op)op));
        OM_TRY(rpc_hist_render(&c->latency[op], out, "objmeta_coord_request_seconds", labels));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_shard_up", "gauge",
                           "1 if the shard answers pings and holds the ring, else 0."));
    for (size_t i = 0; i < c->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%s\"", c->shards[i]->id);
        OM_TRY(rpc_prom_value(out, "objmeta_coord_shard_up", labels, c->shards[i]->up));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_shard_failed_fast_total", "counter",
                           "Requests answered UNAVAILABLE at once because their shard was down."));
    for (size_t i = 0; i < c->nshards; i++) {
        snprintf(labels, sizeof(labels), "shard=\"%s\"", c->shards[i]->id);
        OM_TRY(rpc_prom_value(out, "objmeta_coord_shard_failed_fast_total", labels,
                              (double)c->shards[i]->failed_fast));
    }
    for (size_t i = 0; i < COORD_NMETRICS; i++) {
        const coord_metric *m = &coord_metrics[i];
        if (m->prom == NULL)
            continue;
        if (i == 0 || coord_metrics[i - 1].prom == NULL ||
            strcmp(coord_metrics[i - 1].prom, m->prom) != 0)
            OM_TRY(rpc_prom_header(out, m->prom, m->type, m->help));
        OM_TRY(rpc_prom_value(out, m->prom, m->labels, (double)metric_value(c, m)));
    }
    if (c->mig != NULL)
        OM_TRY(coord_mig_render_metrics(c, out));
    OM_TRY(coord_groups_render_metrics(c, out));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_etcd_request_seconds_total", "counter",
                           "Sum of the round-trip times of cluster-state requests to etcd."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_etcd_request_seconds_total", NULL,
                          (double)metric_etcd_latency_us(c) / 1e6));
    return rpc_server_render_metrics(c->server, out);
}

/*
 * Healthy while every shard is up; degraded (serving, /healthz 429 naming the
 * shards down, /readyz still 200) while some are; unavailable when none is.
 * One shard down makes only its keys (and List) unavailable, so taking the
 * coordinator out of a load balancer's rotation would make things worse.
 */
om_status
coord_health(void *arg, om_buf *reason)
{
    coord *c = arg;
    size_t up = coord_pool_up_count(c);

    if (up == c->nshards)
        return OM_OK;
    if (up > 0)
        OM_TRY(om_buf_printf(reason, "%zu of %zu shards down", c->nshards - up, c->nshards));
    else
        OM_TRY(om_buf_printf(reason, "no shard is up (%zu in the ring)", c->nshards));
    for (size_t i = 0; i < c->nshards; i++)
        if (!c->shards[i]->up)
            OM_TRY(om_buf_printf(reason, "; %s: %s", c->shards[i]->id, c->shards[i]->why_down));
    return up > 0 ? OM_OK : OM_E_UNAVAILABLE;
}
