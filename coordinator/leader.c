/*
 * coordinator/leader.c -- many coordinators over one cluster state
 * (cstate.h; MIGRATION.md, "Many coordinators").
 *
 * Every coordinator serves clients with the rings of the cluster state. One
 * of them leads (etcd election under a lease) and alone runs ring changes:
 * copying, cutover, cleanup, and every save of the state. The others:
 *
 *   - follow: when the leader saves, the watch reports it and the follower
 *     reloads the state -- rings in force and pending, phase, checkpoints --
 *     and installs it (routing, pool, SetRing to the shards). The reload
 *     waits while this coordinator's migration still has calls in flight
 *     (a leader that just lost its lease), retried every 100 ms.
 *   - forward: AddShard, RemoveShard and SetWeight received by a follower
 *     go to the leader over one rpc connection and its answer is relayed,
 *     so two operators on two coordinators meet at one place: the first
 *     change starts, the second is answered BUSY. With no leader known the
 *     request is refused with UNAVAILABLE, naming etcd; so it is while
 *     this follower is cut off from etcd (no lease keep-alive answered
 *     within the TTL: coord_cstate_in_touch), as the leader it knows may be
 *     gone. Data requests go on with the rings it holds, and once etcd
 *     answers again its watch resumes from the revision it stopped at and
 *     it reloads the state (catching up with any change made meanwhile).
 *   - proxy: while a change is in progress, a follower passes every request
 *     for a *moving* key to the leader the same way, so the leader alone
 *     routes them: its forwarding to the new owner, its dirty set and its
 *     cutover fence (holding moving keys during the final pass) then see
 *     every such request, as with a single coordinator. Keys that do not
 *     move, and all keys when no change runs, are routed by the follower.
 *   - take over: a follower that wins the election reloads the state and
 *     resumes the change from its checkpoint the way a restarted
 *     coordinator does (pass 1 catch-up, full pass 2: the previous leader's
 *     unconfirmed writes are not known here).
 *
 * A leader that loses its lease (etcd unreachable, frozen past the TTL)
 * stops at once by the local clock (coord_is_leader() is false, the
 * migration tick does nothing), and every save it still attempts is refused
 * by etcd (the guard in cstate.c): it writes nothing.
 *
 * File backend: always the leader; nothing here runs.
 */
#define OM_LOG_MODULE "leader"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "coordinator/cstate.h"
#include "util/clock.h"
#include "util/log.h"

#define RELOAD_RETRY_MS 100

bool
coord_is_leader(const coord *c)
{
    return coord_cstate_is_leader(c->cs);
}

bool
coord_test_delay(coord *c, const char *phase, uint64_t now_ms)
{
    if (c->opts.test_phase_delay_ms == 0 || phase == NULL) {
        c->test_delay_phase = NULL;
        return false;
    }
    if (c->test_delay_phase != phase) {
        c->test_delay_phase = phase;
        c->test_delay_since_ms = now_ms;
        om_log(OM_LOG_INFO, "test-phase-delay: pausing phase=%s ms=%u", phase,
               c->opts.test_phase_delay_ms);
    }
    return now_ms - c->test_delay_since_ms < c->opts.test_phase_delay_ms;
}

/* Replace rings and migration state with the stored ones. */
static void
leader_reload(coord *c)
{
    ring *cur = NULL, *pend = NULL;
    om_buf mig = OM_BUF_INIT;
    char err[512];
    om_status st;
    bool rings_moved;
    struct timeval tv = {0, RELOAD_RETRY_MS * 1000};

    if (c->stopping)
        return;
    if (!coord_mig_quiet(c)) {
        c->reload_pending = true;
        evtimer_add(c->reload_timer, &tv);
        return;
    }
    st = coord_cstate_load(c->cs, &cur, &pend, &mig, err, sizeof(err));
    if (st != OM_OK) {
        /* etcd away: keep serving the rings in hand, try again in a second */
        struct timeval later = {1, 0};

        om_log(OM_LOG_WARN, "cannot reload the cluster state err=\"%s\"", err);
        om_buf_free(&mig);
        c->reload_pending = true;
        evtimer_add(c->reload_timer, &later);
        return;
    }
    c->reload_pending = false;
    c->state_reloads++;
    rings_moved = ring_epoch(cur) != ring_epoch(c->ring) ||
                  (pend ? ring_epoch(pend) : 0) != (c->pending ? ring_epoch(c->pending) : 0);
    coord_mig_close(c);
    ring_unref(c->ring);
    ring_unref(c->pending);
    c->ring = cur;
    c->pending = pend;
    c->following = !c->leading;
    st = coord_mig_open(c, om_buf_slice(&mig), err, sizeof(err));
    c->following = false;
    om_buf_free(&mig);
    if (st != OM_OK)
        om_log(OM_LOG_ERROR, "cannot install the reloaded migration state err=\"%s\"", err);
    if (!rings_moved && !c->leading) {
        /* a checkpoint of the leader: new progress, the same rings */
        om_log(OM_LOG_DEBUG, "cluster state reloaded revision=%lld",
               (long long)coord_cstate_revision(c->cs));
        return;
    }
    if (coord_pool_sync(c) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot update the shard pool after a reload");
    coord_pool_push_all(c);
    om_log(OM_LOG_INFO,
           "cluster state reloaded revision=%lld epoch=%llu pending_epoch=%llu leader=%d",
           (long long)coord_cstate_revision(c->cs), (unsigned long long)ring_epoch(c->ring),
           (unsigned long long)(c->pending ? ring_epoch(c->pending) : 0), (int)c->leading);
}

static void
leader_reload_cb(evutil_socket_t fd, short what, void *arg)
{
    coord *c = arg;

    if (c->reload_pending)
        leader_reload(c);
}

/* Another coordinator saved the state. */
static void
leader_state_changed(void *arg)
{
    coord *c = arg;

    if (c->leading)
        om_log(OM_LOG_WARN, "the cluster state changed under the leader: reloading");
    leader_reload(c);
}

/* Leadership or the known leader changed. */
static void
leader_role_changed(void *arg)
{
    coord *c = arg;
    bool now = coord_cstate_is_leader(c->cs);

    if (now == c->leading)
        return;
    c->leading = now;
    if (now)
        om_log(OM_LOG_INFO, "leading: resuming the cluster state from revision=%lld",
               (long long)coord_cstate_revision(c->cs));
    /* both ways, start from what etcd holds: a new leader resumes from the checkpoint, a
     * former one drops whatever it had not saved */
    leader_reload(c);
}

om_status
coord_leader_start(coord *c, const char *identity)
{
    c->reload_timer = evtimer_new(c->base, leader_reload_cb, c);
    if (c->reload_timer == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->leading = strcmp(coord_cstate_backend(c->cs), "file") == 0;
    return coord_cstate_start(c->cs, identity, leader_state_changed, leader_role_changed, c);
}

void
coord_leader_close(coord *c)
{
    if (c->reload_timer != NULL)
        event_free(c->reload_timer);
    c->reload_timer = NULL;
    rpc_client_free(c->leader_cl); /* pending forwards complete with UNAVAILABLE first */
    c->leader_cl = NULL;
}

/* ---- passing requests to the leader ---- */

typedef struct fwd_call {
    coord *c;
    rpc_reply *reply;
    coord_op op;
    uint64_t t0;
    char leader[300];
} fwd_call;

static void
fwd_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    fwd_call *f = arg;

    if (st != OM_OK)
        coord_answer_error(f->c, f->op, f->t0, f->reply, OM_E_UNAVAILABLE,
                           "this coordinator is a follower and the leader %s did not answer: %s",
                           f->leader, resp->message);
    else
        coord_answer(f->c, f->op, f->t0, f->reply, resp);
    free(f);
}

/* Send req to the leader and relay its answer; `what` says why in refusals. */
static void
leader_send(coord *c, coord_op op, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply,
            const char *what)
{
    om_slice leader = coord_cstate_leader(c->cs);
    rpc_client_opts co;
    fwd_call *f;

    if (leader.n == 0 || c->leading) {
        /* no leader known, or this one lost its lease and has not heard of a successor */
        coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE,
                           "%s, and no coordinator leads the cluster right now (cluster state: "
                           "%s; is etcd reachable?); retry",
                           what, coord_cstate_where(c->cs));
        return;
    }
    if (c->leader_cl != NULL &&
        (strlen(c->leader_cl_addr) != leader.n || memcmp(c->leader_cl_addr, leader.p, leader.n))) {
        rpc_client_free(c->leader_cl);
        c->leader_cl = NULL;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        coord_answer_error(c, op, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    *f = (fwd_call){.c = c, .reply = reply, .op = op, .t0 = t0};
    snprintf(f->leader, sizeof(f->leader), "%.*s", (int)leader.n, (const char *)leader.p);
    if (c->leader_cl == NULL) {
        rpc_client_opts_init(&co);
        co.connect_timeout_ms = c->opts.health_timeout_ms;
        snprintf(c->leader_cl_addr, sizeof(c->leader_cl_addr), "%s", f->leader);
        if (rpc_client_new(c->base, c->leader_cl_addr, &co, &c->leader_cl) != OM_OK) {
            coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE,
                               "the leader's address %s is not usable", f->leader);
            free(f);
            return;
        }
    }
    if (rpc_client_call(c->leader_cl, req, c->opts.shard_timeout_ms, fwd_cb, f) != OM_OK) {
        coord_answer_error(c, op, t0, reply, OM_E_UNAVAILABLE,
                           "cannot pass the request to the "
                           "leader %s",
                           f->leader);
        free(f);
    }
}

bool
coord_leader_forward(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    if (coord_is_leader(c))
        return false;
    if (!coord_cstate_in_touch(c->cs)) {
        /* the leader it knows may be gone: two coordinators must not both think they decide */
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_UNAVAILABLE,
                           "this coordinator is a follower cut off from etcd (%s: no answer to "
                           "its lease keep-alives for over the lease TTL), so it cannot tell "
                           "which coordinator leads; retry, or send the change to another "
                           "coordinator",
                           coord_cstate_where(c->cs));
        return true;
    }
    c->forwarded_admin++;
    leader_send(c, COORD_OP_OTHER, req, t0, reply, "this coordinator is a follower");
    return true;
}

bool
coord_leader_proxy(coord *c, coord_op op, const Objmeta__Request *req, uint64_t t0,
                   rpc_reply *reply)
{
    if (coord_is_leader(c))
        return false;
    c->proxied_moving++;
    leader_send(c, op, req, t0, reply, "a ring change is in progress");
    return true;
}
