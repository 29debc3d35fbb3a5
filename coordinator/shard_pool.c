/*
 * coordinator/shard_pool.c -- connections to the shards and their health.
 *
 * Each shard of the ring in force and of the pending ring (a ring change in
 * progress, migrate.c) gets `pool_size` rpc_clients; coord_pool_sync adds
 * entries for new shards and drops, from a fresh loop turn, those in
 * neither ring. A client is one TCP
 * connection carrying many requests at once (ids match responses), so a
 * slow request never blocks the ones behind it; several connections spread
 * large payloads over several sockets. The requests of one loop iteration
 * take one connection, written together (coord_pool_call); the next
 * iteration's take the next. All of it runs on the coordinator's loop thread.
 *
 * Health. Every health_interval_ms each shard gets SetRing with the
 * coordinator's ring and pending ring on its first connection (unless one
 * is still out); an answer to a SetRing sent before the rings changed is
 * not a failure, the rings are just sent again.
 * SetRing is idempotent -- the shard keeps the newest ring it was given and
 * answers with the epoch it holds -- so the same call probes liveness and
 * (re)installs the ring, e.g. on a shard that restarted and lost it. After
 * a shard (re)appears its Ping is checked once for the id it reports, so a
 * process started with the wrong --id is never routed to. A shard is *up*
 * when the last probe was answered with the coordinator's epoch and its id
 * is verified. The transitions:
 *
 *   probe fails with a lost/refused connection     -> down at once
 *   two probes in a row time out or fail otherwise -> down
 *   probe times out while answers to other calls   -> unchanged (busy, not
 *     kept arriving on its connection                 dead: it waited behind
 *                                                     them; asked again)
 *   a forwarded request loses its connection       -> down at once, re-probe
 *   probe answered with another epoch, or refused  -> down (logged)
 *   probe refused as from an older cluster state   -> unchanged (this
 *     coordinator is behind; its watch brings the newer state)
 *   probe answered with our epoch, id verified     -> up
 *   shard answers WRONG_SHARD to a request         -> down, re-probe
 *
 * While a shard is down the router answers its keys with UNAVAILABLE at
 * once (no connect attempt per request); the probes continue, and the rpc
 * client reconnects on the next one, so a shard that comes back is up
 * again within about one health interval.
 */
#define OM_LOG_MODULE "coord"
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "coordinator/cstate.h"
#include "util/assert.h"
#include "util/clock.h"
#include "util/log.h"

static void pool_mark_down(coord_shard *sh, const char *fmt, ...) OM_PRINTF(2, 3);
static void pool_push_ring(coord_shard *sh);

void
coord_waiter_add(coord_shard *sh, coord_waiter *w)
{
    w->prev = &sh->waiters;
    w->next = sh->waiters.next;
    w->next->prev = w;
    sh->waiters.next = w;
}

void
coord_waiter_remove(coord_waiter *w)
{
    if (w->next == NULL)
        return; /* not linked */
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

/* Call the ready callback once every shard is up (coord.c's timer calls it when the wait is
 * over). */
static void
pool_check_ready(coord *c)
{
    if (c->ready_called || c->ready == NULL)
        return;
    if (coord_pool_up_count(c) < c->nshards)
        return;
    c->ready_called = true;
    om_log(OM_LOG_INFO, "all shards up shards=%zu ring_epoch=%llu", c->nshards,
           (unsigned long long)ring_epoch(c->ring));
    c->ready(c->ready_arg);
}

static void
pool_mark_down(coord_shard *sh, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sh->why_down, sizeof(sh->why_down), fmt, ap);
    va_end(ap);
    if (sh->up)
        om_log(OM_LOG_WARN, "shard down id=%s addr=%s reason=\"%s\"", sh->id, sh->addr,
               sh->why_down);
    sh->up = false;
    /* Requests already sent to it fail now rather than at their deadline. */
    while (sh->waiters.next != &sh->waiters) {
        coord_waiter *w = sh->waiters.next;
        coord_waiter_remove(w);
        w->abort(w, sh);
    }
}

static void
pool_mark_up(coord_shard *sh)
{
    if (!sh->up)
        om_log(OM_LOG_INFO, "shard up id=%s addr=%s ring_epoch=%llu", sh->id, sh->addr,
               (unsigned long long)sh->acked_epoch);
    sh->up = true;
    sh->ever_up = true;
    sh->why_down[0] = '\0';
    pool_check_ready(sh->c);
    if (sh->replicated && sh->c->parked_count > 0)
        coord_route_release(sh->c); /* requests waiting for this group's primary */
}

/* The options of a connection to a shard. */
static void
pool_client_opts(const coord *c, rpc_client_opts *co)
{
    rpc_client_opts_init(co);
    co->max_frame = c->opts.max_frame;
    co->connect_timeout_ms = c->opts.health_timeout_ms;
    co->default_timeout_ms = c->opts.shard_timeout_ms;
    co->tls = c->tls_cli;
}

/* A new pool entry for (id, addr), appended to c->shards. */
static om_status
pool_add(coord *c, const char *id, const char *addr, coord_shard **out)
{
    rpc_client_opts co;
    coord_shard *sh, **v;

    pool_client_opts(c, &co);
    v = realloc(c->shards, (c->nshards + 1) * sizeof(*v));
    if (v == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->shards = v;
    sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->shards[c->nshards++] = sh;
    sh->c = c;
    sh->id = strdup(id);
    sh->addr = strdup(sh->id ? coord_groups_route_addr(c, sh, addr) : addr);
    sh->conns = calloc(c->opts.pool_size, sizeof(*sh->conns));
    snprintf(sh->why_down, sizeof(sh->why_down), "first health check pending");
    sh->waiters.prev = sh->waiters.next = &sh->waiters;
    if (sh->id == NULL || sh->addr == NULL || sh->conns == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (uint32_t k = 0; k < c->opts.pool_size; k++) {
        OM_TRY(rpc_client_new(c->base, sh->addr, &co, &sh->conns[k]));
        sh->nconns = k + 1;
    }
    *out = sh;
    return OM_OK;
}

coord_shard *
coord_pool_find(const coord *c, const char *id)
{
    for (size_t i = 0; i < c->nshards; i++)
        if (strcmp(c->shards[i]->id, id) == 0)
            return c->shards[i];
    return NULL;
}

static size_t
pool_index(const coord *c, const coord_shard *sh)
{
    for (size_t i = 0; i < c->nshards; i++)
        if (c->shards[i] == sh)
            return i;
    return SIZE_MAX;
}

/* Free one pool entry: its connections first (pending calls complete), then the entry. */
static void
pool_free_shard(coord_shard *sh)
{
    for (uint32_t k = 0; k < sh->nconns; k++) {
        rpc_client_free(sh->conns[k]);
        sh->conns[k] = NULL;
    }
    free(sh->conns);
    free(sh->id);
    free(sh->addr);
    free(sh);
}

static bool
pool_in_rings(const coord *c, const char *id)
{
    size_t idx;
    return ring_find(c->ring, id, &idx) == OM_OK ||
           (c->pending != NULL && ring_find(c->pending, id, &idx) == OM_OK);
}

/* Deferred removal of entries in neither ring (from a fresh loop turn). */
static void
pool_gc(evutil_socket_t fd, short what, void *arg)
{
    coord *c = arg;
    size_t i = 0;

    while (i < c->nshards) {
        coord_shard *sh = c->shards[i];
        if (pool_in_rings(c, sh->id)) {
            i++;
            continue;
        }
        om_log(OM_LOG_INFO, "shard left the pool id=%s addr=%s", sh->id, sh->addr);
        c->shards[i] = c->shards[--c->nshards];
        /* keep the maps right: the moved entry changed index */
        pool_free_shard(sh);
    }
    (void)coord_pool_sync(c);
}

static om_status
pool_map(const coord *c, const ring *r, size_t **map)
{
    size_t n = ring_shard_count(r);
    size_t *m = calloc(n, sizeof(*m));

    if (m == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < n; i++) {
        coord_shard *sh = coord_pool_find(c, ring_shard_at(r, i)->id);
        /* The pool holds every shard of both rings (coord_pool_sync adds them first); a
         * missing one would route its keys to another shard, so this check is always on. */
        OM_ASSERT_ALWAYS(sh != NULL);
        m[i] = pool_index(c, sh);
    }
    free(*map);
    *map = m;
    return OM_OK;
}

om_status
coord_pool_sync(coord *c)
{
    const ring *rs[2] = {c->ring, c->pending};
    bool stale = false;

    for (int k = 0; k < 2; k++) {
        if (rs[k] == NULL)
            continue;
        for (size_t i = 0; i < ring_shard_count(rs[k]); i++) {
            const ring_shard *r = ring_shard_at(rs[k], i);
            coord_shard *sh = coord_pool_find(c, r->id);
            if (sh == NULL) {
                OM_TRY(pool_add(c, r->id, r->addr, &sh));
                if (c->health_timer != NULL)
                    pool_push_ring(sh);
            }
        }
    }
    for (size_t i = 0; i < c->nshards; i++)
        stale |= !pool_in_rings(c, c->shards[i]->id);
    OM_TRY(pool_map(c, c->ring, &c->cur_map));
    if (c->pending != NULL) {
        OM_TRY(pool_map(c, c->pending, &c->pend_map));
    } else {
        free(c->pend_map);
        c->pend_map = NULL;
    }
    if (stale)
        event_base_once(c->base, -1, EV_TIMEOUT, pool_gc, c, NULL);
    return OM_OK;
}

om_status
coord_pool_open(coord *c)
{
    return coord_pool_sync(c);
}

void
coord_pool_close(coord *c)
{
    if (c->shards == NULL)
        return;
    /*
     * Freeing a connection fails its pending calls, and a failed call's
     * callback may probe the shard again (pool_push_ring) on a connection
     * already freed: nothing new is sent from here on.
     */
    c->pool_closing = true;
    /* First every connection (pending calls complete and release their contexts)... */
    for (size_t i = 0; i < c->nshards; i++) {
        for (uint32_t k = 0; k < c->shards[i]->nconns; k++) {
            rpc_client_free(c->shards[i]->conns[k]);
            c->shards[i]->conns[k] = NULL;
        }
    }
    /* ...then the shards those contexts pointed at. */
    for (size_t i = 0; i < c->nshards; i++)
        pool_free_shard(c->shards[i]);
    free(c->shards);
    c->shards = NULL;
    c->nshards = 0;
    free(c->cur_map);
    free(c->pend_map);
    c->cur_map = c->pend_map = NULL;
}

om_status
coord_pool_call(coord_shard *sh, const Objmeta__Request *req, rpc_client_cb cb, void *arg)
{
    rpc_client *cl;

    if (sh->c->pool_closing)
        return OM_E_UNAVAILABLE;
    /* the calls of one loop iteration go together on one connection (one write, one read:
     * the coordinator's CPU per request at pipeline 1 is mostly system calls); the next
     * iteration takes the next connection */
    cl = sh->conns[sh->next_conn % sh->nconns];
    if (!rpc_client_batching(cl))
        cl = sh->conns[++sh->next_conn % sh->nconns];
    sh->forwarded++;
    return rpc_client_call(cl, req, sh->c->opts.shard_timeout_ms, cb, arg);
}

void
coord_pool_retarget(coord_shard *sh, const char *addr)
{
    coord *c = sh->c;
    rpc_client_opts co;
    rpc_client **old = sh->conns, **fresh = calloc(c->opts.pool_size, sizeof(*fresh));
    char *a = strdup(addr);
    uint32_t n = 0, oldn = sh->nconns;

    pool_client_opts(c, &co);
    while (fresh != NULL && a != NULL && n < c->opts.pool_size &&
           rpc_client_new(c->base, a, &co, &fresh[n]) == OM_OK)
        n++;
    if (fresh == NULL || a == NULL || n < c->opts.pool_size) {
        om_log(OM_LOG_ERROR, "cannot connect to the new primary id=%s addr=%s", sh->id, addr);
        for (uint32_t k = 0; k < n; k++)
            rpc_client_free(fresh[k]);
        free(fresh);
        free(a);
        return;
    }
    /* the new connections first: callbacks of the old calls that run below probe (and
     * route) through sh->conns */
    sh->conns = fresh;
    sh->nconns = n;
    sh->next_conn = 0;
    free(sh->addr);
    sh->addr = a;
    sh->id_verified = false;
    pool_mark_down(sh, "the group's primary moved to %s; probing it", addr);
    for (uint32_t k = 0; k < oldn; k++)
        rpc_client_free(old[k]); /* pending calls complete with UNAVAILABLE */
    free(old);
    sh->setring_inflight = false;
    sh->ping_inflight = false;
    pool_push_ring(sh);
}

size_t
coord_pool_up_count(const coord *c)
{
    size_t n = 0;

    for (size_t i = 0; i < c->nshards; i++)
        n += c->shards[i]->up;
    return n;
}

/* --- health: SetRing as the probe, Ping to verify the id ------------------------------------- */

static void pool_ping(coord_shard *sh);

bool
coord_pool_in_sync(const coord_shard *sh)
{
    const coord *c = sh->c;

    return sh->up && sh->acked_epoch == ring_epoch(c->ring) &&
           sh->acked_pending == (c->pending ? ring_epoch(c->pending) : 0);
}

/*
 * SetRing's fence field: followers leave the shard's fence alone (0); the
 * leader turns it on (1) during its cutover and off (2) otherwise.
 */
static uint32_t
pool_fence(const coord *c)
{
    if (!coord_is_leader(c))
        return 0;
    return c->shard_fence && c->pending != NULL ? 1 : 2;
}

static void
pool_setring_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    coord_shard *sh = arg;
    uint64_t want = ring_epoch(sh->c->ring);
    uint64_t want_p = sh->c->pending ? ring_epoch(sh->c->pending) : 0;
    bool stale =
        sh->sent_epoch != want || sh->sent_pending != want_p || sh->sent_fence != pool_fence(sh->c);

    sh->setring_inflight = false;
    if (st == OM_E_TIMEOUT && rpc_client_answered(sh->conns[0]) != sh->probe_answered) {
        /* Answers arrived on the probe's connection while it waited: the probe is queued
         * behind them (large Retrieves on a busy machine), the shard is alive. Not a
         * failure; the next health tick asks again. */
        om_log(OM_LOG_DEBUG, "probe timed out behind answers id=%s addr=%s", sh->id, sh->addr);
        return;
    }
    if (st != OM_OK) {
        sh->ping_failures++;
        sh->id_verified = false;
        if (st == OM_E_UNAVAILABLE || st == OM_E_CORRUPT || sh->ping_failures >= 2)
            pool_mark_down(sh, "%s", resp->message[0] ? resp->message : om_status_str(st));
        return;
    }
    sh->ping_failures = 0;
    if (stale) {
        /* the rings changed while this probe was out: its answer says nothing; ask again */
        pool_push_ring(sh);
        return;
    }
    if (resp->status == OBJMETA__STATUS__PRECONDITION_FAILED) {
        /* The shard took a pending ring from a newer cluster state at our epoch: this
         * coordinator is behind. Requests it routes by that epoch are still served, and
         * its watch brings the newer state; its rings do not replace the newer ones. */
        om_log(OM_LOG_INFO, "shard holds a newer cluster state id=%s msg=\"%s\"", sh->id,
               resp->message);
        return;
    }
    if (resp->status != OBJMETA__STATUS__OK ||
        resp->body_case != OBJMETA__RESPONSE__BODY_SET_RING) {
        if (sh->up || strstr(sh->why_down, "refused ring") == NULL)
            om_log(OM_LOG_ERROR, "shard refused the ring id=%s addr=%s status=%s msg=\"%s\"",
                   sh->id, sh->addr, rpc_proto_status_name(resp->status), resp->message);
        pool_mark_down(sh, "shard refused ring epoch %llu: %s %s", (unsigned long long)want,
                       rpc_proto_status_name(resp->status), resp->message);
        return;
    }
    sh->last_ok_ms = om_clock_mono_ms();
    sh->acked_epoch = resp->set_ring->epoch;
    sh->acked_pending = resp->set_ring->pending_epoch;
    sh->acked_fenced = resp->set_ring->fenced;
    if (sh->acked_epoch != want || sh->acked_pending != want_p) {
        if (sh->up || strstr(sh->why_down, "holds ring epoch") == NULL)
            om_log(OM_LOG_ERROR,
                   "shard holds another ring id=%s shard_epoch=%llu shard_pending=%llu "
                   "coord_epoch=%llu coord_pending=%llu",
                   sh->id, (unsigned long long)sh->acked_epoch,
                   (unsigned long long)sh->acked_pending, (unsigned long long)want,
                   (unsigned long long)want_p);
        pool_mark_down(sh,
                       "shard holds ring epoch %llu (pending %llu), not the coordinator's %llu "
                       "(pending %llu)",
                       (unsigned long long)sh->acked_epoch, (unsigned long long)sh->acked_pending,
                       (unsigned long long)want, (unsigned long long)want_p);
        return;
    }
    if (sh->id_verified)
        pool_mark_up(sh);
    else
        pool_ping(sh);
}

/*
 * pool_push_ring -- send SetRing with the coordinator's ring (and pending
 * ring). The shard keeps the newest ring it was given and answers with its
 * epochs, so this is idempotent and doubles as the health probe.
 */
static void
pool_push_ring(coord_shard *sh)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__SetRingRequest sr = OBJMETA__SET_RING_REQUEST__INIT;
    Objmeta__Ring *pb = NULL, *pp = NULL;
    om_status st;

    if (sh->setring_inflight || sh->c->pool_closing)
        return;
    if ((st = ring_to_pb(sh->c->ring, &pb)) != OM_OK ||
        (sh->c->pending != NULL && (st = ring_to_pb(sh->c->pending, &pp)) != OM_OK)) {
        ring_pb_free(pb);
        pool_mark_down(sh, "cannot encode the ring: %s", om_status_str(st));
        return;
    }
    sr.ring = pb;
    sr.pending = pp;
    sr.state_revision = (uint64_t)coord_cstate_revision(sh->c->cs); /* the shard's fence */
    sr.fence = pool_fence(sh->c);
    req.body_case = OBJMETA__REQUEST__BODY_SET_RING;
    req.set_ring = &sr;
    req.ring_epoch = ring_epoch(sh->c->ring);
    st = rpc_client_call(sh->conns[0], &req, sh->c->opts.health_timeout_ms, pool_setring_cb, sh);
    ring_pb_free(pb);
    ring_pb_free(pp);
    if (st != OM_OK) {
        pool_mark_down(sh, "cannot send the ring: %s", om_status_str(st));
        return;
    }
    sh->sent_epoch = ring_epoch(sh->c->ring);
    sh->sent_pending = sh->c->pending ? ring_epoch(sh->c->pending) : 0;
    sh->sent_fence = sr.fence;
    sh->probe_answered = rpc_client_answered(sh->conns[0]);
    sh->setring_inflight = true;
}

bool
coord_pool_fence_shards(coord *c)
{
    bool all = true;

    c->shard_fence = true;
    for (size_t i = 0; i < c->nshards; i++) {
        coord_shard *sh = c->shards[i];

        if (sh->up && !(sh->acked_fenced && sh->sent_fence == 1)) {
            pool_push_ring(sh); /* one in flight: its answer is stale and it is sent again */
            all = false;
        }
    }
    return all;
}

void
coord_pool_push_all(coord *c)
{
    for (size_t i = 0; i < c->nshards; i++)
        pool_push_ring(c->shards[i]);
}

/* "... id=<id> ..." in a Ping's server string; false if it names no id. */
static bool
pool_reported_id(const char *server, char *id, size_t idlen)
{
    const char *p = server ? strstr(server, "id=") : NULL;
    size_t n = 0;

    if (p == NULL || (p != server && p[-1] != ' '))
        return false;
    p += 3;
    while (p[n] != '\0' && p[n] != ' ' && n + 1 < idlen) {
        id[n] = p[n];
        n++;
    }
    id[n] = '\0';
    return n > 0;
}

static void
pool_ping_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    coord_shard *sh = arg;
    char id[RING_ID_MAX + 1];

    sh->ping_inflight = false;
    if (st != OM_OK || resp->status != OBJMETA__STATUS__OK ||
        resp->body_case != OBJMETA__RESPONSE__BODY_PING)
        return; /* the next probe decides */
    if (pool_reported_id(resp->ping->server, id, sizeof(id)) && strcmp(id, sh->id) != 0) {
        if (sh->up || strstr(sh->why_down, "reports id") == NULL)
            om_log(OM_LOG_ERROR, "shard reports another id addr=%s ring_id=%s reported_id=%s",
                   sh->addr, sh->id, id);
        pool_mark_down(sh, "the shard at %s reports id %s, the ring says %s", sh->addr, id, sh->id);
        return;
    }
    sh->id_verified = true;
    if (sh->acked_epoch == ring_epoch(sh->c->ring) &&
        sh->acked_pending == (sh->c->pending ? ring_epoch(sh->c->pending) : 0))
        pool_mark_up(sh);
}

static void
pool_ping(coord_shard *sh)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest ping = OBJMETA__PING_REQUEST__INIT;

    if (sh->ping_inflight || sh->c->pool_closing)
        return;
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &ping;
    if (rpc_client_call(sh->conns[0], &req, sh->c->opts.health_timeout_ms, pool_ping_cb, sh) ==
        OM_OK)
        sh->ping_inflight = true;
}

static void
pool_health_tick(evutil_socket_t fd, short what, void *arg)
{
    coord *c = arg;

    for (size_t i = 0; i < c->nshards; i++)
        pool_push_ring(c->shards[i]);
}

om_status
coord_pool_start_health(coord *c)
{
    struct timeval tv = {c->opts.health_interval_ms / 1000,
                         (c->opts.health_interval_ms % 1000) * 1000};

    c->health_timer = event_new(c->base, -1, EV_PERSIST, pool_health_tick, c);
    if (c->health_timer == NULL || event_add(c->health_timer, &tv) != 0)
        return OM_ERR(OM_E_NOMEM);
    pool_health_tick(-1, 0, c);
    return OM_OK;
}

void
coord_pool_note_failure(coord_shard *sh, om_status st, const char *msg)
{
    sh->transport_errors++;
    if (st == OM_E_UNAVAILABLE || st == OM_E_CORRUPT) {
        /* a lost connection may mean a new process: check the ring and the id again */
        sh->id_verified = false;
        pool_mark_down(sh, "connection lost: %s", msg && msg[0] ? msg : om_status_str(st));
        pool_push_ring(sh);
    }
}

void
coord_pool_note_wrong_shard(coord_shard *sh)
{
    sh->id_verified = false;
    pool_mark_down(sh, "shard does not hold ring epoch %llu; installing it",
                   (unsigned long long)ring_epoch(sh->c->ring));
    pool_push_ring(sh);
}
