/*
 * coordinator/metrics.c -- every answer the coordinator sends, counted in one
 * table, and the /metrics and /healthz pages that render it.
 *
 * The answer table is c->answers[op][status]: one row per coord_op, one
 * column per wire Status (COORD_NSTATUS, the protobuf enum's count; a status
 * this build does not know is counted as INTERNAL). Only answer_count()
 * writes it; Stats (router.c) and /metrics read it through coord_op_name()
 * and coord_answers_total(). Every file that answers a client (router.c,
 * fanout.c, mig_admin.c, migrate.c) calls down into this file, which calls
 * nothing in coordinator/ but the shard pool's up count.
 *
 * Thread-safety: loop thread only, like everything in coord_int.h.
 */
#define OM_LOG_MODULE "coord"
#include <stdarg.h>
#include <stdio.h>

#include "coordinator/coord_int.h"
#include "util/clock.h"

static const char *const coord_op_names[COORD_OP_COUNT_] = {
    "store", "retrieve", "head", "exists", "delete", "list", "stats", "ping", "get_ring", "other",
};

const char *
coord_op_name(coord_op op)
{
    return coord_op_names[op];
}

uint64_t
coord_answers_total(const coord *c, coord_op op)
{
    uint64_t total = 0;

    for (int k = 0; k < COORD_NSTATUS; k++)
        total += c->answers[op][k];
    return total;
}

/* Count one answer of op with wire status s and its latency from t0. */
static void
answer_count(coord *c, coord_op op, uint64_t t0, Objmeta__Status s)
{
    unsigned col = (unsigned)s < COORD_NSTATUS ? (unsigned)s : (unsigned)COORD_STATUS_UNKNOWN;

    c->answers[op][col]++;
    rpc_hist_observe_ns(&c->latency[op], om_clock_mono_ns() - t0);
}

void
coord_answer(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, const Objmeta__Response *resp)
{
    answer_count(c, op, t0, resp->status);
    rpc_reply_send(reply, resp);
}

void
coord_answer_encoded(coord *c, coord_op op, uint64_t t0, rpc_reply *reply,
                     const Objmeta__Response *resp, om_slice encoded)
{
    answer_count(c, op, t0, resp->status);
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
    OM_TRY(
        rpc_prom_header(out, "objmeta_coord_ring_epoch", "gauge", "Epoch of the ring in force."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_ring_epoch", NULL, (double)ring_epoch(c->ring)));
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
    OM_TRY(rpc_prom_header(out, "objmeta_coord_migrate_forwards_total", "counter",
                           "Writes to moving keys forwarded to their new owner, by result."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_forwards_total", "result=\"ok\"",
                          (double)c->forwards_ok));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_forwards_total", "result=\"failed\"",
                          (double)c->forwards_failed));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_migrate_pending_epoch", "gauge",
                           "Epoch of the ring a change in progress moves to (0 = none)."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_migrate_pending_epoch", NULL,
                          c->pending ? (double)ring_epoch(c->pending) : 0));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_shard_fetches_total", "counter",
                           "Pages fetched from shards to answer List."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_shard_fetches_total", NULL,
                          (double)c->list_shard_fetches));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_records_fetched_total", "counter",
                           "Entries fetched from shards to answer List."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_records_fetched_total", NULL,
                          (double)c->list_records_fetched));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_list_records_returned_total", "counter",
                           "Entries returned to List callers."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_list_records_returned_total", NULL,
                          (double)c->list_records_returned));
    return rpc_server_render_metrics(c->server, out);
}

/*
 * Healthy while at least one shard is up: one shard down makes only its keys
 * (and List) unavailable, so taking the coordinator out of service would make
 * things worse. Which shards are down is in /metrics and Stats.
 */
om_status
coord_health(void *arg, om_buf *reason)
{
    coord *c = arg;

    if (coord_pool_up_count(c) > 0)
        return OM_OK;
    OM_TRY(om_buf_printf(reason, "no shard is up (%zu in the ring)", c->nshards));
    for (size_t i = 0; i < c->nshards; i++)
        OM_TRY(om_buf_printf(reason, "; %s: %s", c->shards[i]->id, c->shards[i]->why_down));
    return OM_E_UNAVAILABLE;
}
