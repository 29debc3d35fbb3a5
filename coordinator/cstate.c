/*
 * coordinator/cstate.c -- the cluster state's two backends (cstate.h).
 *
 * file: ring_store.c's RING file; every save succeeds or fails on the disk
 * alone, and the one coordinator is always the leader.
 *
 * etcd: key <prefix>/state holds the RING file's bytes; <prefix>/leader is
 * the election key (etcd/election.c), valued with the leader's identity;
 * <prefix>/token-secret the continuation-token key all coordinators share;
 * <prefix>/writer the identity of the coordinator that wrote the state last
 * (put in the same transaction); <prefix>/state-checkpoint the migration
 * record of the leader's latest checkpoint (progress of pass 0: cursors and
 * counters; the rings are those of the state).
 *
 *   load   range <prefix>/state; remember its mod_revision as `rev`
 *   save   txn [mod_revision(state) == rev, create_revision(leader) ==
 *          won (etcd_election_guard)] put state; success: rev = the txn's
 *          revision. A failed compare is OM_E_PRECONDITION: another
 *          coordinator wrote since our load (it leads now, or an operator
 *          ran two), or our lease ended; this coordinator then reloads and
 *          follows. So two coordinators can never both move the epoch or
 *          the phase from the same state: the second compare fails.
 *   create txn [create_revision(state) == 0] put state (bootstrap)
 *   checkpoint  txn [mod_revision(state) == rev, create_revision(leader)
 *          == won] put state-checkpoint, put writer -- sent on the
 *          coordinator's loop without waiting (the loop keeps serving). One
 *          is in flight at a time; a newer one replaces the one queued
 *          behind it, and a queued one is dropped when a save happens
 *          first (the save holds newer state). A checkpoint answered with a
 *          failed compare after this coordinator's own save was superseded
 *          by it (nothing to do); one that lost to anyone else makes this
 *          coordinator reload and follow, as a lost save does.
 *   load   range over the prefix <prefix>/state: the state and, when its
 *          mod_revision is newer than the state's, the checkpoint's record
 *          replaces the state's. A checkpoint can only land while the state
 *          is still the one it was taken from (its compare), so a newer
 *          checkpoint always belongs to the state in force; an older one is
 *          left over from before the last save and ignored.
 *
 * Synchronous requests run on a private event_base with their own client
 * (`sync`); the watch of <prefix>/state and the election run on the
 * coordinator's base with another client (`async`), so a blocking save
 * never waits behind a streamed watch; checkpoints go through `async` too.
 * The watch covers the state and the checkpoint. An event at a revision
 * this coordinator already loaded or wrote itself (`known`), or on the
 * checkpoint while its own checkpoint is in flight (the event may come
 * before the answer), is not news and is ignored.
 */
#define OM_LOG_MODULE "cstate"

#include "coordinator/cstate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "util/log.h"

struct coord_cstate {
    bool etcd;
    char *dir;
    char where[600];
    /* etcd */
    char *prefix; /* without a trailing '/' */
    char *key_state, *key_leader, *key_secret, *key_writer, *key_ck, *identity;
    int ttl_s;
    struct event_base *sync_base;
    etcd_client *sync;
    etcd_client *async;
    etcd_watch *watch;
    etcd_election *elect;
    int64_t rev;      /* mod_revision of state as last loaded or saved; 0 = absent */
    int64_t seen_rev; /* highest mod_revision of state the watch reported */
    int64_t known;    /* newest revision loaded or written by this coordinator */
    /* checkpoints: the one in flight (sent under state revision ck_sent_rev), the one queued */
    bool ck_inflight, ck_queued;
    int64_t ck_sent_rev, ck_queued_rev;
    om_buf ck_next;
    coord_cstate_cb changed, role;
    void *arg;
};

/* ---- synchronous etcd calls ---- */

typedef struct cs_wait {
    bool done;
    om_status st;
    char err[400];
    int64_t revision;
    bool succeeded;
    bool found;
    int64_t mod_revision;
    om_buf value;
} cs_wait;

static void
cs_wait_cb(const etcd_resp *r, void *arg)
{
    cs_wait *w = arg;
    const etcd_kv *kv = r->nkvs == 1 ? &r->kvs[0] : NULL;

    w->done = true;
    w->st = r->st;
    snprintf(w->err, sizeof(w->err), "%s", r->err);
    w->revision = r->revision;
    w->succeeded = r->succeeded;
    if (kv == NULL && r->nops == 1 && r->ops[0].nkvs == 1)
        kv = &r->ops[0].kvs[0];
    if (kv != NULL) {
        w->found = true;
        w->mod_revision = kv->mod_revision;
        if (om_buf_set(&w->value, kv->value) != OM_OK)
            w->st = OM_ERR(OM_E_NOMEM);
    }
}

/* Run the private loop until the request completes (each request has its own deadline). */
static om_status
cs_run(coord_cstate *s, cs_wait *w, om_status sent)
{
    if (sent != OM_OK) {
        snprintf(w->err, sizeof(w->err), "etcd: cannot send the request: %s", om_status_str(sent));
        return sent;
    }
    while (!w->done)
        event_base_loop(s->sync_base, EVLOOP_ONCE);
    return w->st;
}

/* ---- options and lifetime ---- */

static char *
cs_join(const char *prefix, const char *name)
{
    size_t n = strlen(prefix) + strlen(name) + 2;
    char *s = malloc(n);

    if (s != NULL)
        snprintf(s, n, "%s/%s", prefix, name);
    return s;
}

om_status
coord_cstate_open(struct event_base *base, const coord_cstate_opts *o, char *err, size_t errlen,
                  coord_cstate **out)
{
    coord_cstate *s = calloc(1, sizeof(*s));
    etcd_opts eo;
    const char *prefix = o->etcd_prefix;
    size_t plen;
    om_status st;

    if (s == NULL)
        return OM_ERR(OM_E_NOMEM);
    s->dir = strdup(o->data_dir ? o->data_dir : "");
    if (s->dir == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    if (o->etcd == NULL || o->etcd[0] == '\0') {
        snprintf(s->where, sizeof(s->where), "%s/RING", s->dir);
        *out = s;
        return OM_OK;
    }
    s->etcd = true;
    if (prefix == NULL || prefix[0] != '/' || strlen(prefix) < 2) {
        st = om_err_invalid(err, errlen,
                            "etcd-prefix: '%s' must start with '/' (/objmeta/<cluster>)",
                            prefix ? prefix : "");
        goto fail;
    }
    plen = strlen(prefix);
    while (plen > 1 && prefix[plen - 1] == '/')
        plen--;
    s->ttl_s = o->lease_ttl_s > 0 ? o->lease_ttl_s : 5;
    if (s->ttl_s < 2) {
        st = om_err_invalid(err, errlen, "etcd-lease-ttl: %d s is below 2 s", o->lease_ttl_s);
        goto fail;
    }
    {
        char *p = strndup(prefix, plen);

        s->key_state = p ? cs_join(p, "state") : NULL;
        s->key_leader = p ? cs_join(p, "leader") : NULL;
        s->key_secret = p ? cs_join(p, "token-secret") : NULL;
        s->key_writer = p ? cs_join(p, "writer") : NULL;
        s->key_ck = p ? cs_join(p, "state-checkpoint") : NULL;
        s->prefix = p;
    }
    s->sync_base = event_base_new();
    if (s->key_state == NULL || s->key_leader == NULL || s->key_secret == NULL ||
        s->key_writer == NULL || s->key_ck == NULL || s->prefix == NULL || s->sync_base == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    snprintf(s->where, sizeof(s->where), "etcd %s", s->key_state);
    etcd_opts_init(&eo);
    eo.endpoints = o->etcd;
    if (o->etcd_timeout_ms > 0)
        eo.timeout_ms = o->etcd_timeout_ms;
    OM_GOTO(etcd_client_new(s->sync_base, &eo, err, errlen, &s->sync));
    OM_GOTO(etcd_client_new(base, &eo, err, errlen, &s->async));
    *out = s;
    return OM_OK;
fail:
    coord_cstate_close(s);
    return st;
}

void
coord_cstate_close(coord_cstate *s)
{
    if (s == NULL)
        return;
    if (s->elect != NULL && etcd_election_lease(s->elect) != 0) {
        /* revoke now (the election's own revoke would die with the async client), so a
         * successor need not wait out the TTL */
        cs_wait w = {0};

        (void)cs_run(s, &w,
                     etcd_lease_revoke(s->sync, etcd_election_lease(s->elect), cs_wait_cb, &w));
        om_buf_free(&w.value);
    }
    etcd_election_free(s->elect);
    etcd_watch_free(s->watch);
    etcd_client_free(s->async);
    etcd_client_free(s->sync);
    if (s->sync_base != NULL)
        event_base_free(s->sync_base);
    free(s->key_state);
    free(s->key_leader);
    free(s->key_secret);
    free(s->key_writer);
    free(s->key_ck);
    om_buf_free(&s->ck_next);
    free(s->prefix);
    free(s->identity);
    free(s->dir);
    free(s);
}

int64_t
coord_cstate_seen_revision(const coord_cstate *s)
{
    return s->seen_rev > s->rev ? s->seen_rev : s->rev;
}

const char *
coord_cstate_backend(const coord_cstate *s)
{
    return s->etcd ? "etcd" : "file";
}

const char *
coord_cstate_where(const coord_cstate *s)
{
    return s->where;
}

int64_t
coord_cstate_revision(const coord_cstate *s)
{
    return s->rev;
}

void
coord_cstate_etcd_stats(const coord_cstate *s, etcd_stats *out)
{
    if (s->etcd)
        etcd_client_stats(s->sync, out);
    else
        memset(out, 0, sizeof(*out));
}

/* The answer to a load: the state and the checkpoint (a range over the prefix <prefix>/state). */
typedef struct cs_load {
    const coord_cstate *s;
    bool done;
    om_status st;
    char err[400];
    int64_t revision;
    int64_t state_rev, ck_rev; /* mod_revision; 0 = absent */
    om_buf state, ck;
} cs_load;

static bool
key_is(om_slice key, const char *name)
{
    return key.n == strlen(name) && memcmp(key.p, name, key.n) == 0;
}

static void
cs_load_cb(const etcd_resp *r, void *arg)
{
    cs_load *l = arg;

    l->done = true;
    l->st = r->st;
    snprintf(l->err, sizeof(l->err), "%s", r->err);
    l->revision = r->revision;
    for (size_t i = 0; i < r->nkvs && l->st == OM_OK; i++) {
        const etcd_kv *kv = &r->kvs[i];
        bool state = key_is(kv->key, l->s->key_state);

        if (!state && !key_is(kv->key, l->s->key_ck))
            continue; /* another key that happens to share the prefix */
        if (om_buf_set(state ? &l->state : &l->ck, kv->value) != OM_OK)
            l->st = OM_ERR(OM_E_NOMEM);
        *(state ? &l->state_rev : &l->ck_rev) = kv->mod_revision;
    }
}

static om_status
etcd_load(coord_cstate *s, ring **cur, ring **pending, om_buf *mig, char *err, size_t errlen)
{
    cs_load l = {.s = s};
    om_status st = etcd_range(s->sync, om_slice_from_str(s->key_state), true, cs_load_cb, &l);

    if (st != OM_OK)
        snprintf(l.err, sizeof(l.err), "etcd: cannot send the request: %s", om_status_str(st));
    while (st == OM_OK && !l.done)
        event_base_loop(s->sync_base, EVLOOP_ONCE);
    if (st == OM_OK)
        st = l.st;
    if (st != OM_OK) {
        om_errf(err, errlen, "%s", l.err);
    } else if (l.state_rev == 0) {
        s->rev = 0;
        st = OM_E_NOTFOUND;
    } else {
        st = coord_ring_state_decode(om_buf_slice(&l.state), s->where, cur, pending, mig, err,
                                     errlen);
        if (st == OM_OK && l.ck_rev > l.state_rev &&
            om_buf_set(mig, om_buf_slice(&l.ck)) != OM_OK) {
            ring_unref(*cur);
            ring_unref(*pending);
            *cur = *pending = NULL;
            st = OM_ERR(OM_E_NOMEM);
        }
        if (st == OM_OK) {
            s->rev = l.state_rev;
            if (l.revision > s->known)
                s->known = l.revision;
        }
    }
    om_buf_free(&l.state);
    om_buf_free(&l.ck);
    return st;
}

/* The txn of a save or a create; st == OM_OK and !succeeded is a lost compare. */
static om_status
etcd_write(coord_cstate *s, const ring *cur, const ring *pending, om_slice mig, bool create,
           char *err, size_t errlen)
{
    om_buf bytes = OM_BUF_INIT;
    etcd_txn *t = NULL;
    cs_wait w = {0};
    om_slice key = om_slice_from_str(s->key_state);
    om_status st;

    OM_GOTO(coord_ring_state_encode(cur, pending, mig, &bytes));
    OM_GOTO(etcd_txn_new(&t));
    if (create) {
        etcd_txn_cmp(t, key, ETCD_CMP_CREATE, ETCD_EQ, 0);
    } else {
        etcd_txn_cmp(t, key, ETCD_CMP_MOD, ETCD_EQ, s->rev);
        if (s->elect != NULL && etcd_election_guard(s->elect, t) != OM_OK) {
            om_errf(err, errlen, "not the leader: the cluster state in %s is changed by %.*s",
                    s->where, (int)etcd_election_leader(s->elect).n,
                    (const char *)etcd_election_leader(s->elect).p);
            st = OM_E_PRECONDITION;
            goto fail;
        }
    }
    etcd_txn_put(t, true, key, om_buf_slice(&bytes), 0);
    /* who wrote this revision (operators, admin status, the tests' "writes nothing" check) */
    etcd_txn_put(t, true, om_slice_from_str(s->key_writer),
                 om_slice_from_str(s->identity ? s->identity : ""), 0);
    etcd_txn_range(t, false, key, false);
    st = cs_run(s, &w, etcd_txn_send(s->sync, t, cs_wait_cb, &w));
    if (st != OM_OK) {
        om_errf(err, errlen, "%s", w.err);
        goto fail;
    }
    if (w.succeeded) {
        s->rev = s->known = w.revision;
        goto fail; /* done: st is OM_OK */
    }
    if (create)
        om_errf(err, errlen, "%s already exists (another coordinator created it)", s->where);
    else if (w.found && w.mod_revision != s->rev)
        om_errf(err, errlen,
                "%s changed under this coordinator (revision %lld, expected %lld): another "
                "coordinator made a change",
                s->where, (long long)w.mod_revision, (long long)s->rev);
    else
        om_errf(err, errlen, "%s not written: this coordinator lost its leader lease", s->where);
    st = OM_E_PRECONDITION;
fail:
    etcd_txn_free(t);
    om_buf_free(&bytes);
    om_buf_free(&w.value);
    return st;
}

/* ---- checkpoints (asynchronous) ---- */

static void ck_send(coord_cstate *s);

static void
cs_ck_cb(const etcd_resp *r, void *arg)
{
    coord_cstate *s = arg;

    s->ck_inflight = false;
    if (r->st != OM_OK) {
        /* applied or not, it does not change the state's revision: the next one retries */
        om_log(OM_LOG_WARN, "checkpoint not saved err=\"%s\"", r->err);
    } else if (r->succeeded) {
        if (r->revision > s->known)
            s->known = r->revision;
    } else if (s->ck_sent_rev == s->rev) {
        /* not superseded by our own save: someone else wrote, or the lease is gone */
        om_log(OM_LOG_WARN,
               "checkpoint refused: %s changed under this coordinator or it lost its "
               "leader lease; reloading",
               s->where);
        s->ck_queued = false;
        if (s->changed != NULL)
            s->changed(s->arg);
        return;
    }
    ck_send(s);
}

/* Send the queued checkpoint if it still belongs to the state in force. */
static void
ck_send(coord_cstate *s)
{
    etcd_txn *t = NULL;
    om_status st;

    if (!s->ck_queued || s->ck_inflight)
        return;
    s->ck_queued = false;
    if (s->ck_queued_rev != s->rev)
        return; /* a save came after it: the state written holds newer progress */
    if ((st = etcd_txn_new(&t)) != OM_OK)
        goto fail;
    etcd_txn_cmp(t, om_slice_from_str(s->key_state), ETCD_CMP_MOD, ETCD_EQ, s->rev);
    if (s->elect == NULL || etcd_election_guard(s->elect, t) != OM_OK) {
        etcd_txn_free(t);
        return; /* no longer the leader: the role callback makes it follow */
    }
    etcd_txn_put(t, true, om_slice_from_str(s->key_ck), om_buf_slice(&s->ck_next), 0);
    etcd_txn_put(t, true, om_slice_from_str(s->key_writer),
                 om_slice_from_str(s->identity ? s->identity : ""), 0);
    st = etcd_txn_send(s->async, t, cs_ck_cb, s);
    etcd_txn_free(t);
    if (st == OM_OK) {
        s->ck_inflight = true;
        s->ck_sent_rev = s->rev;
        return;
    }
fail:
    om_log(OM_LOG_WARN, "cannot send a checkpoint: %s", om_status_str(st));
}

om_status
coord_cstate_checkpoint(coord_cstate *s, const ring *cur, const ring *pending, om_slice mig,
                        char *err, size_t errlen)
{
    if (!s->etcd)
        return coord_cstate_save(s, cur, pending, mig, err, errlen);
    if (!coord_cstate_is_leader(s)) {
        om_errf(err, errlen, "not the leader: the cluster state in %s is changed by %.*s", s->where,
                (int)coord_cstate_leader(s).n, (const char *)coord_cstate_leader(s).p);
        return OM_E_PRECONDITION;
    }
    OM_TRY(om_buf_set(&s->ck_next, mig));
    s->ck_queued = true;
    s->ck_queued_rev = s->rev;
    ck_send(s);
    return OM_OK;
}

bool
coord_cstate_checkpoints_idle(const coord_cstate *s)
{
    return !s->ck_inflight && !s->ck_queued;
}

/* ---- the interface ---- */

om_status
coord_cstate_load(coord_cstate *s, ring **cur, ring **pending, om_buf *mig, char *err,
                  size_t errlen)
{
    if (!s->etcd)
        return coord_ring_store_load_ex(s->dir, cur, pending, mig, err, errlen);
    return etcd_load(s, cur, pending, mig, err, errlen);
}

om_status
coord_cstate_save(coord_cstate *s, const ring *cur, const ring *pending, om_slice mig, char *err,
                  size_t errlen)
{
    om_status st;

    if (!s->etcd) {
        st = coord_ring_store_save_ex(s->dir, cur, pending, mig);
        if (st != OM_OK)
            om_errf(err, errlen, "cannot write %s: %s", s->where, om_status_str(st));
        return st;
    }
    return etcd_write(s, cur, pending, mig, false, err, errlen);
}

om_status
coord_cstate_create(coord_cstate *s, const ring *cur, char *err, size_t errlen)
{
    if (!s->etcd)
        return coord_cstate_save(s, cur, NULL, OM_SLICE_NULL, err, errlen);
    return etcd_write(s, cur, NULL, OM_SLICE_NULL, true, err, errlen);
}

om_status
coord_cstate_secret(coord_cstate *s, uint8_t secret[COORD_SECRET_LEN], char *err, size_t errlen)
{
    om_slice key;
    om_status st = OM_OK;

    if (!s->etcd)
        return coord_secret_load(s->dir, secret);
    key = om_slice_from_str(s->key_secret);
    for (int attempt = 0; attempt < 2; attempt++) {
        cs_wait w = {0};
        etcd_txn *t = NULL;
        uint8_t fresh[COORD_SECRET_LEN];

        /* create-if-absent with a fresh key; either way the answer carries the key in force */
        OM_GOTO(coord_secret_random(fresh));
        OM_GOTO(etcd_txn_new(&t));
        etcd_txn_cmp(t, key, ETCD_CMP_CREATE, ETCD_EQ, 0);
        etcd_txn_put(t, true, key, om_slice_make(fresh, sizeof(fresh)), 0);
        etcd_txn_range(t, false, key, false);
        st = cs_run(s, &w, etcd_txn_send(s->sync, t, cs_wait_cb, &w));
        etcd_txn_free(t);
        if (st == OM_OK && w.succeeded)
            memcpy(secret, fresh, COORD_SECRET_LEN);
        else if (st == OM_OK && w.found && w.value.n == COORD_SECRET_LEN)
            memcpy(secret, w.value.p, COORD_SECRET_LEN);
        else if (st == OM_OK)
            st = OM_ERR(OM_E_CORRUPT);
        if (st != OM_OK)
            om_errf(err, errlen, "%s", w.err[0] ? w.err : "etcd: token secret of the wrong size");
        om_buf_free(&w.value);
        if (st != OM_E_CORRUPT)
            break;
    }
fail:
    return st;
}

/* ---- watching and leading ---- */

static void
cs_watch_cb(const etcd_watch_batch *b, void *arg)
{
    coord_cstate *s = arg;
    bool foreign = false;

    if (b->st != OM_OK) {
        /* compacted past us: watch again from now and reload to catch up */
        om_log(OM_LOG_WARN, "state watch ended, restarting err=%s", b->err);
        etcd_watch_free(s->watch);
        s->watch = NULL;
        if (etcd_watch_new(s->async, om_slice_from_str(s->key_state), true, 0, cs_watch_cb, s,
                           &s->watch) != OM_OK)
            om_log(OM_LOG_ERROR, "cannot watch the cluster state key=%s", s->key_state);
        s->changed(s->arg);
        return;
    }
    for (size_t i = 0; i < b->nevents; i++) {
        const etcd_kv *kv = &b->events[i].kv;
        bool state = key_is(kv->key, s->key_state);

        if (!state && !key_is(kv->key, s->key_ck))
            continue;
        if (state && kv->mod_revision > s->seen_rev)
            s->seen_rev = kv->mod_revision;
        if (kv->mod_revision <= s->known || (!state && s->ck_inflight))
            continue; /* loaded already, or our own save or checkpoint */
        foreign = true;
    }
    if (foreign)
        s->changed(s->arg);
}

static void
cs_role_cb(etcd_election *e, etcd_role role, om_slice leader, void *arg)
{
    coord_cstate *s = arg;

    om_log(OM_LOG_INFO, "coordinator role=%s leader=%.*s",
           role == ETCD_LEADER ? "leader" : "follower", (int)leader.n, (const char *)leader.p);
    s->role(s->arg);
}

om_status
coord_cstate_start(coord_cstate *s, const char *identity, coord_cstate_cb changed,
                   coord_cstate_cb role, void *arg)
{
    free(s->identity);
    s->identity = strdup(identity);
    if (s->identity == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (!s->etcd)
        return OM_OK;
    s->changed = changed;
    s->role = role;
    s->arg = arg;
    OM_TRY(etcd_watch_new(s->async, om_slice_from_str(s->key_state), true, s->known + 1,
                          cs_watch_cb, s, &s->watch));
    OM_TRY(etcd_election_new(s->async, om_slice_from_str(s->key_leader), s->ttl_s, cs_role_cb, s,
                             &s->elect));
    return etcd_election_campaign(s->elect, om_slice_from_str(s->identity));
}

bool
coord_cstate_is_leader(const coord_cstate *s)
{
    return !s->etcd || (s->elect != NULL && etcd_election_is_leader(s->elect));
}

om_slice
coord_cstate_leader(const coord_cstate *s)
{
    if (!s->etcd)
        return om_slice_from_str(s->identity ? s->identity : "");
    return s->elect != NULL ? etcd_election_leader(s->elect) : OM_SLICE_NULL;
}

etcd_client *
coord_cstate_etcd(const coord_cstate *s)
{
    return s->etcd ? s->async : NULL;
}

const char *
coord_cstate_prefix(const coord_cstate *s)
{
    return s->prefix;
}

bool
coord_cstate_in_touch(const coord_cstate *s)
{
    return !s->etcd || (s->elect != NULL && etcd_election_in_touch(s->elect));
}
