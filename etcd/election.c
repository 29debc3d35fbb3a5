/*
 * etcd/election.c -- leader election on one key, from a lease, a
 * transaction and a watch (etcd's own recipe; the gateway's blocking
 * /v3/election/campaign would hold a connection for as long as a candidate
 * waits, and evhttp sends one request at a time per connection).
 *
 * State of a candidate:
 *
 *   no lease --grant--> lease L --txn [create_revision(key) == 0 ?
 *                                      put key=value lease L : range key]
 *        succeeded           -> LEADER, won_rev = the txn's revision
 *        key held by lease L -> LEADER (our earlier txn applied; its reply
 *                               was lost), won_rev = its create_revision
 *        key held by another -> FOLLOWER; the watch reports its DELETE
 *                               (resign, or lease expiry) and we try again
 *
 * The lease is kept alive every ttl/3. Leadership by the local clock lasts
 * until one TTL after the last keep-alive that etcd confirmed was *sent*
 * (lease_until_ms): etcd counts the TTL from when it received that
 * keep-alive, which is no earlier, so while etcd_election_is_leader() is
 * true etcd cannot yet have expired the lease. When the deadline passes
 * without a confirmed keep-alive (etcd unreachable, or this process was
 * frozen), the candidate steps down at once and tells its callback; a
 * keep-alive answered "not found" (TTL 0) means the lease is gone: a new
 * one is granted and the candidate competes again. Clock-only leadership
 * is the first line; the second is etcd_election_guard, which makes a
 * write conditional on the key still holding won_rev, so a leader that is
 * wrong about itself still cannot write.
 *
 * Observers (no campaign) only range the key and watch it.
 */
#define OM_LOG_MODULE "etcd"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_int.h"
#include "util/clock.h"
#include "util/log.h"

#define ELECT_RETRY_MS 300

struct etcd_election {
    etcd_client *c;
    om_buf key;
    int ttl_s;
    etcd_election_cb cb;
    void *arg;
    om_buf value;  /* this candidate's value */
    om_buf leader; /* the current leader's value; empty if none */
    bool campaigning;
    etcd_role role;
    int64_t lease;
    uint64_t lease_until_ms; /* local deadline of the lease (see above) */
    uint64_t ka_sent_ms;     /* send time of the keep-alive in flight */
    bool ka_inflight;
    bool granting;
    bool acquiring;
    int64_t won_rev;
    etcd_watch *watch;
    bool observing; /* range + watch set up or in progress */
    struct event *tick;
};

static void elect_acquire(etcd_election *e);
static void elect_observe(etcd_election *e);

static void
elect_notify(etcd_election *e)
{
    e->cb(e, e->role, om_buf_slice(&e->leader), e->arg);
}

static void
elect_set_leader(etcd_election *e, om_slice v)
{
    bool changed = !om_slice_eq(v, om_buf_slice(&e->leader));

    if (changed && om_buf_set(&e->leader, v) == OM_OK)
        elect_notify(e);
}

static void
elect_step_down(etcd_election *e, const char *why)
{
    if (e->role != ETCD_LEADER)
        return;
    om_log(OM_LOG_WARN, "election: leadership lost key=%.*s why=%s", (int)e->key.n,
           (char *)e->key.p, why);
    e->role = ETCD_FOLLOWER;
    e->won_rev = 0;
    om_buf_reset(&e->leader);
    elect_notify(e);
}

/* ---- leases ---- */

static void
elect_grant_cb(const etcd_resp *r, void *arg)
{
    etcd_election *e = arg;

    e->granting = false;
    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "election: lease grant failed err=%s", r->err);
        return; /* the tick tries again */
    }
    e->lease = r->lease_id;
    e->lease_until_ms = e->ka_sent_ms + (uint64_t)r->ttl * 1000;
    if (e->campaigning)
        elect_acquire(e);
    else
        (void)etcd_lease_revoke(e->c, e->lease, NULL, NULL); /* resigned meanwhile */
}

static void
elect_grant(etcd_election *e)
{
    if (e->granting)
        return;
    e->ka_sent_ms = om_clock_mono_ms();
    if (etcd_lease_grant(e->c, e->ttl_s, elect_grant_cb, e) == OM_OK)
        e->granting = true;
}

static void
elect_keepalive_cb(const etcd_resp *r, void *arg)
{
    etcd_election *e = arg;

    e->ka_inflight = false;
    if (r->st == OM_OK) {
        e->lease_until_ms = e->ka_sent_ms + (uint64_t)r->ttl * 1000;
        return;
    }
    if (r->st == OM_E_NOTFOUND) {
        /* etcd expired the lease: the key went with it */
        e->lease = 0;
        elect_step_down(e, "lease expired");
        if (e->campaigning)
            elect_grant(e);
        return;
    }
    om_log(OM_LOG_WARN, "election: keep-alive failed err=%s", r->err);
}

static void
elect_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    etcd_election *e = arg;
    uint64_t now = om_clock_mono_ms();
    int period_ms = e->ttl_s * 1000 / 3;
    struct timeval tv;

    if (e->role == ETCD_LEADER && now >= e->lease_until_ms)
        elect_step_down(e, "no keep-alive confirmed within the lease TTL");
    if (!e->observing)
        elect_observe(e);
    if (e->campaigning) {
        if (e->lease == 0)
            elect_grant(e);
        else if (!e->ka_inflight) {
            e->ka_sent_ms = now;
            e->ka_inflight = etcd_lease_keepalive(e->c, e->lease, elect_keepalive_cb, e) == OM_OK;
        }
        if (e->lease != 0 && e->role != ETCD_LEADER && e->leader.n == 0)
            elect_acquire(e);
    }
    if (period_ms > 1000)
        period_ms = 1000; /* step-down by the clock must not lag a TTL */
    if (e->role == ETCD_LEADER && e->lease_until_ms > now &&
        e->lease_until_ms - now < (uint64_t)period_ms)
        period_ms = (int)(e->lease_until_ms - now) + 1;
    tv.tv_sec = period_ms / 1000;
    tv.tv_usec = (period_ms % 1000) * 1000;
    evtimer_add(e->tick, &tv);
}

/* ---- acquiring the key ---- */

static void
elect_acquire_cb(const etcd_resp *r, void *arg)
{
    etcd_election *e = arg;
    const etcd_kv *kv = NULL;

    e->acquiring = false;
    if (r->st == OM_E_NOTFOUND) {
        /* our lease expired before the keep-alive noticed: start over with a new one */
        e->lease = 0;
        if (e->campaigning)
            elect_grant(e);
        return;
    }
    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "election: campaign failed err=%s", r->err);
        return; /* the tick tries again */
    }
    if (!e->campaigning)
        return;
    if (r->succeeded) {
        e->won_rev = r->revision;
        e->role = ETCD_LEADER;
        om_log(OM_LOG_INFO, "election: leader key=%.*s lease=%lld revision=%lld", (int)e->key.n,
               (char *)e->key.p, (long long)e->lease, (long long)e->won_rev);
        if (om_buf_set(&e->leader, om_buf_slice(&e->value)) == OM_OK)
            elect_notify(e);
        return;
    }
    if (r->nops == 1 && r->ops[0].nkvs == 1)
        kv = &r->ops[0].kvs[0];
    if (kv == NULL)
        return; /* deleted in between: the watch or the tick tries again */
    if (kv->lease == e->lease && e->lease != 0) {
        e->won_rev = kv->create_revision;
        e->role = ETCD_LEADER;
        if (om_buf_set(&e->leader, kv->value) == OM_OK)
            elect_notify(e);
        return;
    }
    elect_set_leader(e, kv->value);
}

static void
elect_acquire(etcd_election *e)
{
    etcd_txn *t;
    om_slice key = om_buf_slice(&e->key);

    if (e->acquiring || e->lease == 0 || e->role == ETCD_LEADER)
        return;
    if (etcd_txn_new(&t) != OM_OK)
        return;
    etcd_txn_cmp(t, key, ETCD_CMP_CREATE, ETCD_EQ, 0);
    etcd_txn_put(t, true, key, om_buf_slice(&e->value), e->lease);
    etcd_txn_range(t, false, key, false);
    e->acquiring = etcd_txn_send(e->c, t, elect_acquire_cb, e) == OM_OK;
    etcd_txn_free(t);
}

/* ---- observing ---- */

static void
elect_watch_cb(const etcd_watch_batch *b, void *arg)
{
    etcd_election *e = arg;

    if (b->st != OM_OK) {
        etcd_watch_free(e->watch);
        e->watch = NULL;
        e->observing = false; /* the tick observes again */
        return;
    }
    for (size_t i = 0; i < b->nevents; i++) {
        const etcd_event *ev = &b->events[i];

        if (ev->type == ETCD_EV_PUT) {
            elect_set_leader(e, ev->kv.value);
            continue;
        }
        elect_step_down(e, "election key deleted");
        elect_set_leader(e, OM_SLICE_NULL);
        if (e->campaigning)
            elect_acquire(e);
    }
}

static void
elect_observe_cb(const etcd_resp *r, void *arg)
{
    etcd_election *e = arg;

    if (r->st != OM_OK) {
        e->observing = false;
        return;
    }
    if (r->nkvs == 1)
        elect_set_leader(e, r->kvs[0].value);
    if (etcd_watch_new(e->c, om_buf_slice(&e->key), false, r->revision + 1, elect_watch_cb, e,
                       &e->watch) != OM_OK)
        e->observing = false;
    else if (r->nkvs == 0 && e->campaigning)
        elect_acquire(e);
}

static void
elect_observe(etcd_election *e)
{
    e->observing = etcd_range(e->c, om_buf_slice(&e->key), false, elect_observe_cb, e) == OM_OK;
}

/* ---- public ---- */

om_status
etcd_election_new(etcd_client *c, om_slice key, int ttl_s, etcd_election_cb cb, void *arg,
                  etcd_election **out)
{
    etcd_election *e;
    struct timeval tv = {0, 0};

    if (ttl_s < 2 || key.n == 0)
        return OM_ERR(OM_E_INVALID);
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return OM_ERR(OM_E_NOMEM);
    e->c = c;
    e->ttl_s = ttl_s;
    e->cb = cb;
    e->arg = arg;
    e->role = ETCD_FOLLOWER;
    e->tick = evtimer_new(c->base, elect_tick_cb, e);
    if (e->tick == NULL || om_buf_set(&e->key, key) != OM_OK) {
        etcd_election_free(e);
        return OM_ERR(OM_E_NOMEM);
    }
    evtimer_add(e->tick, &tv);
    *out = e;
    return OM_OK;
}

om_status
etcd_election_campaign(etcd_election *e, om_slice value)
{
    struct timeval tv = {0, 0};

    if (e->role == ETCD_LEADER && !om_slice_eq(value, om_buf_slice(&e->value)))
        return OM_ERR(OM_E_INVALID); /* resign first */
    OM_TRY(om_buf_set(&e->value, value));
    e->campaigning = true;
    evtimer_add(e->tick, &tv); /* act on the next loop turn */
    return OM_OK;
}

void
etcd_election_resign(etcd_election *e)
{
    e->campaigning = false;
    if (e->lease != 0) {
        /* revoking deletes the key with the lease */
        (void)etcd_lease_revoke(e->c, e->lease, NULL, NULL);
        e->lease = 0;
    }
    elect_step_down(e, "resigned");
}

void
etcd_election_free(etcd_election *e)
{
    if (e == NULL)
        return;
    etcd_drop_requests(e->c, e);
    if (e->lease != 0)
        (void)etcd_lease_revoke(e->c, e->lease, NULL, NULL);
    etcd_watch_free(e->watch);
    if (e->tick != NULL)
        event_free(e->tick);
    om_buf_free(&e->key);
    om_buf_free(&e->value);
    om_buf_free(&e->leader);
    free(e);
}

bool
etcd_election_is_leader(const etcd_election *e)
{
    return e->role == ETCD_LEADER && om_clock_mono_ms() < e->lease_until_ms;
}

om_slice
etcd_election_leader(const etcd_election *e)
{
    return om_buf_slice(&e->leader);
}

bool
etcd_election_in_touch(const etcd_election *e)
{
    return !e->campaigning || om_clock_mono_ms() < e->lease_until_ms;
}

om_status
etcd_election_guard(const etcd_election *e, etcd_txn *t)
{
    if (!etcd_election_is_leader(e))
        return OM_ERR(OM_E_PRECONDITION);
    etcd_txn_cmp(t, om_buf_slice(&e->key), ETCD_CMP_CREATE, ETCD_EQ, e->won_rev);
    return OM_OK;
}

int64_t
etcd_election_lease(const etcd_election *e)
{
    return e->lease;
}
