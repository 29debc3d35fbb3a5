/*
 * coordinator/mig_admin.c -- the operator's side of online ring changes:
 * AddShard (after checking that the new shard answers and holds no record),
 * RemoveShard and SetWeight start a change (migrate.c drives it),
 * CancelRebalance rolls one back;
 * RebalanceStatus reports its phase, totals, rate, ETA and every moving
 * range. Refusals: BUSY while a change runs, INVALID_ARGUMENT for what the
 * ring refuses (unknown or duplicate id or address, the last shard, a bad
 * weight) and for a new shard that holds data. coordinator/MIGRATION.md.
 */
#define OM_LOG_MODULE "migrate"
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cstate.h"
#include "coordinator/migrate_int.h"
#include "util/clock.h"
#include "util/log.h"

/* --- admin -------------------------------------------------------------------------------------
 */

static void
answer_change(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, Objmeta__Request__BodyCase kind,
              uint64_t from, uint64_t to, size_t nranges)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__RingChangeResponse rc = OBJMETA__RING_CHANGE_RESPONSE__INIT;

    rc.from_epoch = from;
    rc.to_epoch = to;
    rc.moving_ranges = (uint32_t)nranges;
    if (kind == OBJMETA__REQUEST__BODY_ADD_SHARD) {
        resp.body_case = OBJMETA__RESPONSE__BODY_ADD_SHARD;
        resp.add_shard = &rc;
    } else if (kind == OBJMETA__REQUEST__BODY_REMOVE_SHARD) {
        resp.body_case = OBJMETA__RESPONSE__BODY_REMOVE_SHARD;
        resp.remove_shard = &rc;
    } else {
        resp.body_case = OBJMETA__RESPONSE__BODY_SET_WEIGHT;
        resp.set_weight = &rc;
    }
    coord_answer(c, op, t0, reply, &resp);
}

/* Begin the change c->ring -> newr (takes the reference). */
static void
mig_begin(coord *c, ring *newr, const char *op, Objmeta__Request__BodyCase kind, uint64_t t0,
          rpc_reply *reply)
{
    coord_mig *m = c->mig;
    uint64_t from = ring_epoch(c->ring);
    char err[512];
    om_status st;

    OM_ASSERT(m->phase == MIG_IDLE && c->pending == NULL);
    OM_ASSERT(ring_epoch(newr) > from); /* ring epochs only move forward */
    coord_mig_free_change(m);
    c->pending = newr;
    st = coord_mig_build(m);
    if (st == OM_OK && m->nrng == 0) {
        /* nothing moves (e.g. only ties changed): switch at once */
        ring *old = c->ring;
        c->ring = newr;
        c->pending = NULL;
        m->last_change_epoch = ring_epoch(newr);
        if ((st = coord_cstate_save(c->cs, newr, NULL, OM_SLICE_NULL, err, sizeof(err))) != OM_OK) {
            c->ring = old;
            c->pending = NULL;
            ring_unref(newr);
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, st, "cannot save the ring: %s", err);
            return;
        }
        ring_unref(old);
        (void)coord_pool_sync(c);
        coord_pool_push_all(c);
        answer_change(c, COORD_OP_OTHER, t0, reply, kind, from, ring_epoch(newr), 0);
        return;
    }
    if (st == OM_OK) {
        coord_mig_set_phase(m, MIG_COPYING);
        m->pass = 0;
        m->final_started = false;
        snprintf(m->op, sizeof(m->op), "%s", op);
        m->started_ms = om_clock_wall_ms();
        m->ended_ms = 0;
        m->from_epoch = from;
        m->to_epoch = ring_epoch(newr);
        m->err[0] = '\0';
        m->win_start_ms = 0;
        m->rate = 0;
        m->rate_windowed = false;
        m->catchup_records = m->catchup_bytes = 0;
        /* with other coordinators routing too (etcd), their unconfirmed writes are not in
         * this one's dirty set: always run the catch-up pass and a full final pass */
        m->need_catchup = strcmp(coord_cstate_backend(c->cs), "etcd") == 0;
        m->drained = false;
        m->adapt = 1.0; /* the adaptive throttle starts at the top */
        m->pass_start_ms = om_clock_mono_ms();
        st = coord_mig_persist(m);
    }
    if (st != OM_OK) {
        snprintf(err, sizeof(err), "%s", m->err[0] ? m->err : om_status_str(st));
        coord_mig_free_change(m);
        if (m->phase != MIG_IDLE) /* COPYING was set, but could not be persisted */
            coord_mig_set_phase(m, MIG_IDLE);
        c->pending = NULL;
        ring_unref(newr);
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, st, "cannot start the ring change: %s",
                           err);
        return;
    }
    if (coord_pool_sync(c) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot add the new shard to the pool");
    coord_pool_push_all(c);
    om_log(OM_LOG_INFO, "ring change started op=\"%s\" from_epoch=%llu to_epoch=%llu ranges=%zu",
           op, (unsigned long long)from, (unsigned long long)ring_epoch(newr), m->nrng);
    answer_change(c, COORD_OP_OTHER, t0, reply, kind, from, ring_epoch(newr), m->nrng);
}

/*
 * AddShard checks first, on one connection, that the new shard answers a Ping
 * with the id the operator gave (a shard started with another --id would
 * refuse every ring naming it, and the change could never finish), then
 * that it holds no records (a MigrateScan of the whole hash space for one
 * record). Only then does the change begin.
 */
typedef struct add_probe {
    coord *c;
    rpc_client *cl;
    ring *newr;
    rpc_reply *reply;
    uint64_t t0;
    char op[160];
    char id[RING_ID_MAX + 1];
    char addr[RING_ADDR_MAX + 1];
} add_probe;

static void
probe_free_client(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rpc_client_free(arg);
}

static void
probe_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    add_probe *p = arg;
    coord *c = p->c;

    c->mig->starting = false;
    event_base_once(c->base, -1, EV_TIMEOUT, probe_free_client, p->cl, NULL);
    if (st != OM_OK) {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_UNAVAILABLE,
                           "add-shard: cannot reach shard %s at %s: %s", p->id, p->addr,
                           resp->message);
        ring_unref(p->newr);
    } else if (resp->status == OBJMETA__STATUS__UNAVAILABLE) {
        /* a group's primary that does not serve yet (it is taking over): ask again */
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_UNAVAILABLE,
                           "add-shard: shard %s at %s does not serve yet (%s); retry", p->id,
                           p->addr, resp->message);
        ring_unref(p->newr);
    } else if (resp->status != OBJMETA__STATUS__OK ||
               resp->body_case != OBJMETA__RESPONSE__BODY_MIGRATE_SCAN) {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INVALID,
                           "add-shard: %s at %s does not answer like an objmeta-shard of this "
                           "version: %s %s",
                           p->id, p->addr, rpc_proto_status_name(resp->status), resp->message);
        ring_unref(p->newr);
    } else if (resp->migrate_scan->n_records > 0) {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INVALID,
                           "add-shard: shard %s at %s already holds records; start it on an "
                           "empty data dir",
                           p->id, p->addr);
        ring_unref(p->newr);
    } else if (c->mig->phase != MIG_IDLE || c->stopping) {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_BUSY,
                           "another ring change started meanwhile");
        ring_unref(p->newr);
    } else {
        mig_begin(c, p->newr, p->op, OBJMETA__REQUEST__BODY_ADD_SHARD, p->t0, p->reply);
    }
    free(p);
}

/* The id in a Ping's server string ("objmeta-shard/0.1.0 id=s1"), or "" if none. */
static void
probe_server_id(const char *server, char *out, size_t n)
{
    const char *p = strstr(server, " id=");

    out[0] = '\0';
    if (strncmp(server, "objmeta-shard/", 14) == 0 && p != NULL)
        snprintf(out, n, "%.*s", (int)strcspn(p + 4, " "), p + 4);
}

/* Second step: the shard must hold no record. */
static om_status
probe_send_scan(add_probe *p)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__MigrateScanRequest sq = OBJMETA__MIGRATE_SCAN_REQUEST__INIT;
    Objmeta__HashRange all = OBJMETA__HASH_RANGE__INIT, *allp = &all;

    sq.ranges = &allp;
    sq.n_ranges = 1; /* [0, 2^64): any record at all */
    sq.max_records = 1;
    req.body_case = OBJMETA__REQUEST__BODY_MIGRATE_SCAN;
    req.migrate_scan = &sq;
    return rpc_client_call(p->cl, &req, p->c->opts.shard_timeout_ms, probe_cb, p);
}

/* First step: the shard must answer Ping as an objmeta-shard with the id given. */
static void
probe_ping_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    add_probe *p = arg;
    coord *c = p->c;
    char got[RING_ID_MAX + 1];

    if (st == OM_OK && resp->status == OBJMETA__STATUS__OK &&
        resp->body_case == OBJMETA__RESPONSE__BODY_PING) {
        probe_server_id(resp->ping->server, got, sizeof(got));
        if (strcmp(got, p->id) == 0 && probe_send_scan(p) == OM_OK)
            return; /* probe_cb goes on */
        if (strcmp(got, p->id) == 0)
            coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INTERNAL,
                               "add-shard: cannot send the probe");
        else if (got[0] == '\0')
            coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INVALID,
                               "add-shard: %s is not an objmeta-shard (it answers as \"%s\")",
                               p->addr, resp->ping->server);
        else
            coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INVALID,
                               "add-shard: the shard at %s has id %s, not %s: restart it with "
                               "--id=%s, or add it with --id %s",
                               p->addr, got, p->id, p->id, got);
    } else if (st != OM_OK) {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_UNAVAILABLE,
                           "add-shard: cannot reach shard %s at %s: %s", p->id, p->addr,
                           resp->message);
    } else {
        coord_answer_error(c, COORD_OP_OTHER, p->t0, p->reply, OM_E_INVALID,
                           "add-shard: %s at %s does not answer Ping like an objmeta-shard: %s %s",
                           p->id, p->addr, rpc_proto_status_name(resp->status), resp->message);
    }
    c->mig->starting = false;
    event_base_once(c->base, -1, EV_TIMEOUT, probe_free_client, p->cl, NULL);
    ring_unref(p->newr);
    free(p);
}

static void
mig_add_shard(coord *c, const Objmeta__AddShardRequest *r, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest pq = OBJMETA__PING_REQUEST__INIT;
    rpc_client_opts co;
    ring_shard rs = {r->id, r->addr, r->weight ? r->weight : 1};
    char err[256];
    add_probe *p;
    ring *newr = NULL;

    if (ring_add_node(c->ring, &rs, &newr, err, sizeof(err)) != OM_OK) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "add-shard: %s", err);
        return;
    }
    p = calloc(1, sizeof(*p));
    rpc_client_opts_init(&co);
    co.connect_timeout_ms = c->opts.health_timeout_ms;
    co.tls = c->tls_cli;
    if (p == NULL || rpc_client_new(c->base, r->addr, &co, &p->cl) != OM_OK) {
        free(p);
        ring_unref(newr);
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "add-shard: bad address %s",
                           r->addr);
        return;
    }
    p->c = c;
    p->newr = newr;
    p->reply = reply;
    p->t0 = t0;
    snprintf(p->id, sizeof(p->id), "%s", r->id);
    snprintf(p->addr, sizeof(p->addr), "%s", r->addr);
    snprintf(p->op, sizeof(p->op), "add-shard %s at %s weight %u", r->id, r->addr, rs.weight);
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &pq;
    if (rpc_client_call(p->cl, &req, c->opts.shard_timeout_ms, probe_ping_cb, p) != OM_OK) {
        rpc_client_free(p->cl);
        ring_unref(newr);
        free(p);
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INTERNAL,
                           "add-shard: cannot send the probe");
        return;
    }
    c->mig->starting = true;
}

/*
 * CancelRebalance: a change that has not switched is rolled back (coord_mig_cancel); one
 * that has is past undoing -- its old owners' compaction only frees space, and stopping it
 * would leave them holding records a later change must not find -- so it is refused with
 * what to do instead. A second cancel while the first runs answers the same, `already`.
 */
static void
mig_cancel_admin(coord *c, uint64_t t0, rpc_reply *reply)
{
    coord_mig *m = c->mig;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__CancelRebalanceResponse cr = OBJMETA__CANCEL_REBALANCE_RESPONSE__INIT;
    char err[512] = "", **wipe = NULL;
    size_t left = 0;

    if (m->starting) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_BUSY,
                           "cancel: a ring change is starting (checking the new shard); retry "
                           "in a moment");
        return;
    }
    if (m->phase == MIG_IDLE) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_PRECONDITION,
                           "cancel: no ring change is in progress (ring epoch %llu)",
                           (unsigned long long)ring_epoch(c->ring));
        return;
    }
    if (m->phase == MIG_CLEANUP) {
        for (size_t i = 0; i < m->ncl; i++)
            left += !m->cl[i].done;
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_PRECONDITION,
                           "cancel: %s has already switched to ring epoch %llu; only its cleanup "
                           "is left (%zu of %zu old owners still to compact), which cannot be "
                           "cancelled and finishes by itself. To undo the change, start the "
                           "inverse one once rebalance-status says idle",
                           m->op, (unsigned long long)ring_epoch(c->ring), left, m->ncl);
        return;
    }
    if (c->stopping) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_UNAVAILABLE,
                           "the coordinator is shutting down");
        return;
    }
    if (coord_mig_cancelling(m)) {
        cr.already = true;
        cr.operation = m->op;
        cr.phase = "cancelling";
        cr.from_epoch = ring_epoch(c->ring);
        cr.to_epoch = ring_epoch(c->pending);
    } else {
        om_status st = coord_mig_cancel(m, &cr, &wipe, err, sizeof(err));
        if (st != OM_OK) {
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, st, "cancel: %s",
                               err[0] ? err : om_status_str(st));
            return;
        }
    }
    resp.body_case = OBJMETA__RESPONSE__BODY_CANCEL_REBALANCE;
    resp.cancel_rebalance = &cr;
    coord_answer(c, COORD_OP_OTHER, t0, reply, &resp);
    for (size_t i = 0; wipe != NULL && i < cr.n_wipe_shards; i++)
        free(wipe[i]);
    free(wipe);
}

void
coord_mig_admin(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    coord_mig *m = c->mig;
    char err[256], op[160];
    ring *newr = NULL;

    if (coord_leader_forward(c, req, t0, reply))
        return; /* a follower: the leader decides */
    if (req->body_case == OBJMETA__REQUEST__BODY_CANCEL_REBALANCE) {
        mig_cancel_admin(c, t0, reply);
        return;
    }
    if (m->phase != MIG_IDLE || m->starting) {
        static const char *const names[] = {"idle", "copying", "copying", "cleanup"};
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_BUSY,
                           "a ring change is in progress (%s: %s, epoch %llu -> %llu); wait for "
                           "it to finish (objmeta admin rebalance-status)",
                           m->starting ? "starting" : m->op,
                           m->starting ? "checking the new shard" : names[m->phase],
                           (unsigned long long)m->from_epoch, (unsigned long long)m->to_epoch);
        return;
    }
    if (c->stopping) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_UNAVAILABLE,
                           "the coordinator is shutting down");
        return;
    }
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_ADD_SHARD:
        mig_add_shard(c, req->add_shard, t0, reply);
        return;
    case OBJMETA__REQUEST__BODY_REMOVE_SHARD:
        if (ring_remove_node(c->ring, req->remove_shard->id, &newr, err, sizeof(err)) != OM_OK) {
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "remove-shard: %s", err);
            return;
        }
        snprintf(op, sizeof(op), "remove-shard %s", req->remove_shard->id);
        break;
    case OBJMETA__REQUEST__BODY_SET_WEIGHT: {
        size_t idx;
        if (ring_find(c->ring, req->set_weight->id, &idx) == OM_OK &&
            ring_shard_at(c->ring, idx)->weight == req->set_weight->weight) {
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID,
                               "set-weight: shard %s already has weight %u", req->set_weight->id,
                               req->set_weight->weight);
            return;
        }
        if (ring_set_weight(c->ring, req->set_weight->id, req->set_weight->weight, &newr, err,
                            sizeof(err)) != OM_OK) {
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "set-weight: %s", err);
            return;
        }
        snprintf(op, sizeof(op), "set-weight %s %u", req->set_weight->id, req->set_weight->weight);
        break;
    }
    default:
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "not a ring change");
        return;
    }
    mig_begin(c, newr, op, req->body_case, t0, reply);
}

/* --- status ------------------------------------------------------------------------------------
 */

/* Estimated ms left for source s in the current pass (0 = unknown). */
static uint64_t
src_eta_ms(const coord_mig *m, const mig_src *s, uint64_t now)
{
    double f, elapsed = (double)(now - m->pass_start_ms);

    if (s->done)
        return 0;
    /* Past the source's estimated size the estimate says nothing: unknown,
     * rather than a near-zero ETA while records are still being copied. */
    if (s->total == 0 || s->pass_scanned == 0 || s->pass_scanned >= s->total)
        return 0;
    f = (double)s->pass_scanned / (double)s->total;
    return (uint64_t)(elapsed * (1.0 - f) / f);
}

/* The change's totals (everything of RebalanceStatus but the ranges), for status and metrics. */
static void
mig_fill_totals(coord_mig *m, uint64_t now, Objmeta__RebalanceStatusResponse *rs)
{
    uint64_t eta = 0, wall = om_clock_wall_ms();
    uint32_t done = 0;

    rs->phase = m->phase == MIG_IDLE      ? "idle"
                : m->phase == MIG_CLEANUP ? "cleanup"
                : m->pass == 2            ? "cutover"
                : m->pass == 1            ? "catch-up"
                                          : "copying";
    rs->active = m->phase != MIG_IDLE;
    rs->from_epoch = m->from_epoch;
    rs->to_epoch = m->to_epoch;
    rs->started_ms = m->started_ms;
    rs->operation = m->op;
    rs->records_copied = coord_mig_total_records(m);
    rs->bytes_copied = coord_mig_total_bytes(m);
    rs->rate_bytes_per_sec = m->phase == MIG_COPYING ? m->rate : 0;
    rs->last_change_epoch = m->last_change_epoch;
    rs->sources = (uint32_t)m->nsrc;
    rs->error = m->err;
    for (size_t i = 0; i < m->nsrc; i++) {
        uint64_t e = src_eta_ms(m, &m->src[i], now);
        done += m->src[i].done || m->phase != MIG_COPYING;
        if (e > eta)
            eta = e;
        if (rs->error[0] == '\0' && m->src[i].err[0] != '\0' && m->phase == MIG_COPYING)
            rs->error = m->src[i].err;
    }
    if (m->phase == MIG_CLEANUP) {
        /* cleanup's progress: the old owners that have compacted away what they gave up */
        done = 0;
        for (size_t i = 0; i < m->ncl; i++)
            done += m->cl[i].done;
        rs->sources = (uint32_t)m->ncl;
    }
    for (size_t i = 0; i < m->ncl; i++) {
        rs->cleanup_bytes_before += m->cl[i].bytes_before;
        rs->cleanup_bytes_after += m->cl[i].bytes_after;
    }
    coord_mig_cleanup_bytes(m, &rs->cleanup_bytes_done, &rs->cleanup_bytes_total);
    if (m->phase == MIG_CLEANUP && m->cl_t0_ms > 0 && now > m->cl_t0_ms &&
        rs->cleanup_bytes_done > m->cl_done0) {
        /* the compactions' rate since the first one started here, and the rest at that rate */
        rs->rate_bytes_per_sec =
            (double)(rs->cleanup_bytes_done - m->cl_done0) * 1000.0 / (double)(now - m->cl_t0_ms);
        rs->eta_ms = (uint64_t)((double)(rs->cleanup_bytes_total - rs->cleanup_bytes_done) *
                                1000.0 / rs->rate_bytes_per_sec);
        if (rs->eta_ms == 0 && rs->cleanup_bytes_total > rs->cleanup_bytes_done)
            rs->eta_ms = 1;
    }
    if (m->phase != MIG_IDLE && m->started_ms > 0 && wall >= m->started_ms)
        rs->duration_ms = wall - m->started_ms;
    else if (m->phase == MIG_IDLE && m->ended_ms >= m->started_ms && m->started_ms > 0)
        rs->duration_ms = m->ended_ms - m->started_ms;
    rs->sources_done = done;
    if (m->phase != MIG_CLEANUP)
        rs->eta_ms = m->phase == MIG_COPYING && m->pass == 0 ? eta : 0;
}

/* The cleanup's compaction bytes, overall and per old owner (kept after the change ends). */
static om_status
mig_render_cleanup(const coord_mig *m, const Objmeta__RebalanceStatusResponse *rs, om_buf *out)
{
    static const char name[] = "objmeta_coord_rebalance_cleanup_bytes";
    char labels[RING_ID_MAX + 48];

    OM_TRY(rpc_prom_header(out, name, "gauge",
                           "Cleanup of the running (else the last) ring change: table bytes the "
                           "old owners' compactions read (state done) of their estimated total "
                           "(state total), overall and per old owner (shard)."));
    OM_TRY(rpc_prom_value(out, name, "state=\"done\"", (double)rs->cleanup_bytes_done));
    OM_TRY(rpc_prom_value(out, name, "state=\"total\"", (double)rs->cleanup_bytes_total));
    for (size_t i = 0; i < m->ncl; i++) {
        snprintf(labels, sizeof(labels), "state=\"done\",shard=\"%s\"", m->cl[i].id);
        OM_TRY(rpc_prom_value(out, name, labels, (double)m->cl[i].bytes_done));
        snprintf(labels, sizeof(labels), "state=\"total\",shard=\"%s\"", m->cl[i].id);
        OM_TRY(rpc_prom_value(out, name, labels,
                              (double)(m->cl[i].bytes_total > m->cl[i].bytes_done
                                           ? m->cl[i].bytes_total
                                           : m->cl[i].bytes_done)));
    }
    return OM_OK;
}

om_status
coord_mig_render_metrics(coord *c, om_buf *out)
{
    static const char *const phases[] = {"idle", "copying", "catch-up", "cutover", "cleanup"};
    Objmeta__RebalanceStatusResponse rs = OBJMETA__REBALANCE_STATUS_RESPONSE__INIT;
    char labels[48];

    mig_fill_totals(c->mig, om_clock_mono_ms(), &rs);
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_phase", "gauge",
                           "1 for the phase the ring change is in (idle: none runs)."));
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
        snprintf(labels, sizeof(labels), "phase=\"%s\"", phases[i]);
        OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_phase", labels,
                              strcmp(rs.phase, phases[i]) == 0));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_records_copied", "gauge",
                           "Records copied by the running (else the last) ring change."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_records_copied", NULL,
                          (double)rs.records_copied));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_bytes_copied", "gauge",
                           "Record bytes copied by the running (else the last) ring change."));
    OM_TRY(
        rpc_prom_value(out, "objmeta_coord_rebalance_bytes_copied", NULL, (double)rs.bytes_copied));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_rate_bytes_per_second", "gauge",
                           "Copy rate of the running ring change; in cleanup, the old owners' "
                           "compaction rate (0 when idle)."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_rate_bytes_per_second", NULL,
                          rs.rate_bytes_per_sec));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_eta_seconds", "gauge",
                           "Estimated time left of the copy, or of the cleanup's compactions "
                           "(0 = unknown or idle)."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_eta_seconds", NULL,
                          (double)rs.eta_ms / 1000.0));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_rebalance_sources", "gauge",
                           "Old owners in the phase, and those done with it, by state."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_sources", "state=\"done\"",
                          (double)rs.sources_done));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_rebalance_sources", "state=\"all\"",
                          (double)rs.sources));
    return mig_render_cleanup(c->mig, &rs, out);
}

void
coord_mig_status(coord *c, uint64_t t0, rpc_reply *reply)
{
    coord_mig *m = c->mig;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__RebalanceStatusResponse rs = OBJMETA__REBALANCE_STATUS_RESPONSE__INIT;
    Objmeta__RangeProgress *rp = NULL, **rpp = NULL;
    Objmeta__CleanupProgress *cp = NULL, **cpp = NULL;
    uint64_t now = om_clock_mono_ms();

    mig_fill_totals(m, now, &rs);
    if (m->ncl > 0) {
        cp = calloc(m->ncl, sizeof(*cp));
        cpp = calloc(m->ncl, sizeof(*cpp));
    }
    if (m->nrng > 0) {
        rp = calloc(m->nrng, sizeof(*rp));
        rpp = calloc(m->nrng, sizeof(*rpp));
    }
    if ((m->nrng > 0 && (rp == NULL || rpp == NULL)) ||
        (m->ncl > 0 && (cp == NULL || cpp == NULL))) {
        free(rp);
        free(rpp);
        free(cp);
        free(cpp);
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < m->nrng; i++) {
        const mig_src *s = &m->src[m->rng[i].src];
        objmeta__range_progress__init(&rp[i]);
        rp[i].start = m->rng[i].start;
        rp[i].end = m->rng[i].end;
        rp[i].from_shard = s->id;
        rp[i].to_shard = m->rng[i].to;
        rp[i].phase = m->phase == MIG_IDLE      ? "done"
                      : m->phase == MIG_CLEANUP ? "done"
                      : m->pass == 2            ? "cutover"
                      : m->pass == 1 || s->done ? "copied"
                                                : "copying";
        rp[i].records_copied = m->rng[i].records;
        rp[i].bytes_copied = m->rng[i].bytes;
        rp[i].rate_bytes_per_sec = m->phase == MIG_COPYING && rs.bytes_copied > 0
                                       ? m->rate * (double)m->rng[i].bytes / (double)rs.bytes_copied
                                       : 0;
        rp[i].eta_ms = m->phase == MIG_COPYING && m->pass == 0 ? src_eta_ms(m, s, now) : 0;
        rp[i].error = m->phase == MIG_COPYING ? (char *)s->err : (char *)"";
        rpp[i] = &rp[i];
    }
    rs.ranges = rpp;
    rs.n_ranges = m->nrng;
    for (size_t i = 0; i < m->ncl; i++) {
        const mig_cleanup *cl = &m->cl[i];
        objmeta__cleanup_progress__init(&cp[i]);
        cp[i].shard = cl->id;
        cp[i].state = cl->done ? "done" : cl->busy ? "compacting" : "waiting";
        cp[i].bytes_done = cl->bytes_done;
        cp[i].bytes_total = cl->bytes_total > cl->bytes_done ? cl->bytes_total : cl->bytes_done;
        cp[i].bytes_before = cl->bytes_before;
        cp[i].bytes_after = cl->bytes_after;
        cpp[i] = &cp[i];
    }
    rs.cleanup = cpp;
    rs.n_cleanup = m->ncl;
    resp.body_case = OBJMETA__RESPONSE__BODY_REBALANCE_STATUS;
    resp.rebalance_status = &rs;
    coord_answer(c, COORD_OP_OTHER, t0, reply, &resp);
    free(rp);
    free(rpp);
    free(cp);
    free(cpp);
}
