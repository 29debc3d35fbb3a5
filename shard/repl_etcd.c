/*
 * shard/repl_etcd.c -- the etcd layer of a replica (repl_etcd.h; design:
 * shard/REPLICATION.md). Everything runs on the shard's loop, as callbacks
 * of the etcd client (etcd/etcd.h) and of one timer, and never waits: the
 * data path is only told what it may do (the commit gate's lease deadline,
 * repl.c's in-sync set, this file's refusals).
 *
 * Keys (the schema the coordinators share):
 *   <prefix>/groups/<gid>/config  {"group","term","primary","replicas":
 *                                  [{"id","addr"}],"in_sync":[ids]}; its
 *                                  mod_revision is the configuration version
 *                                  and every change compares it
 *   <prefix>/groups/<gid>/leader  "<rid> <term>" under the primary's lease,
 *                                  created only where absent
 *
 * Roles of this process:
 *
 *   BACKUP    shard_replica applies the stream. When the leader key is
 *             absent and this replica is in the in-sync set (and holds
 *             replicated data, see `eligible`), it campaigns: one txn
 *             [config mod == v, leader create == 0] puts config {term + 1,
 *             primary = self, in_sync - {former primary}} and the leader key
 *             under its lease. A replica named primary of a term above its
 *             own (admin promote) only creates the leader key. Either way
 *             it becomes PRIMARY.
 *   PRIMARY   the replica closed, shard_repl opened in the new term towards
 *             every other replica; serving waits until each in-sync backup
 *             confirmed this replica's last index (the probes also raise
 *             them to the new term). While serving: a backup silent for
 *             replica-timeout leaves the in-sync set by txn [config mod ==
 *             v, leader lease == ours] and only then stops counting for ship
 *             (the writes wait meanwhile); a caught-up backup out of the set
 *             is counted first and added by txn. The lease deadline (own
 *             clock, conservative) goes to the commit gate, which checks it
 *             for every reply that leaves.
 *   STOPPING  a later term, a lost lease, an expired deadline, a refused
 *             stream: nothing more is answered (gate deadline 0, shipping
 *             failed), the lease is revoked, and the process asks main to
 *             execute it again -- it comes back a BACKUP, and is repaired
 *             by the new primary's catch-up if it diverged.
 *
 * The former primary leaves the in-sync set in the campaign itself: it may
 * hold groups nobody acknowledged, so it must be repaired before it counts
 * again, and the new primary need not wait replica-timeout for a dead
 * process before it serves.
 */
#define OM_LOG_MODULE "repl-etcd"
#include "shard/repl_etcd.h"

#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd.h"
#include "shard/commit.h"
#include "shard/repl.h"
#include "shard/shard_int.h"
#include "util/clock.h"
#include "util/log.h"

#define MAX_REPLICAS 5
#define TICK_MS 50
#define ADD_BACK_LAG 16 /* a backup this close to the last index rejoins the in-sync set */

typedef struct grp_cfg {
    bool have;
    int64_t rev; /* mod_revision: the configuration version */
    uint64_t term;
    char primary[64];
    size_t n;
    char id[MAX_REPLICAS][64];
    char addr[MAX_REPLICAS][128];
    bool in_sync[MAX_REPLICAS];
} grp_cfg;

typedef enum { ROLE_BACKUP, ROLE_PRIMARY, ROLE_STOPPING } agent_role;

/* The one configuration change in flight. */
typedef struct txn_ctx {
    grp_cfg next;
    int kind; /* 0 campaign, 1 take over (leader key only), 2 in-sync change */
    int peer; /* kind 2: the repl peer */
} txn_ctx;

struct shard_repl_etcd {
    shard *s;
    struct event_base *base;
    shard_repl_etcd_opts o;
    char *group, *id;
    char kcfg[512], kleader[512], kdir[480];
    etcd_client *c;
    etcd_watch *w;
    struct event *tick;
    bool loaded, loading;

    grp_cfg cfg;
    uint64_t cfg_ns; /* when cfg arrived */
    bool leader_present;
    char leader_val[96];

    int64_t lease;
    int64_t ttl_s;
    uint64_t ka_sent_ns, lease_until_ns;
    bool ka_inflight, granting, txn_inflight;
    txn_ctx txn; /* while txn_inflight */

    agent_role role;
    shard_replica *replica;
    shard_repl *repl;
    size_t peer_cfg[MAX_REPLICAS]; /* repl peer i is cfg replica peer_cfg[i] */
    /* a backup rejoining: counted by ship since join_at was the last index; added to the
     * configuration's in-sync set once it has join_at (tend_in_sync) */
    bool joining[MAX_REPLICAS];
    uint64_t join_at[MAX_REPLICAS];
    uint64_t term;        /* the term led (PRIMARY) */
    uint64_t start_index; /* PRIMARY: serve once the in-sync set has it */
    bool serving;
    uint64_t failovers;
    bool restart_asked;
    void (*then)(void *); /* after giving the lease back (give_up) */
    void *then_arg;
};

static void evaluate(shard_repl_etcd *a);

/* ---- the configuration as JSON ---- */

static om_status
cfg_parse(om_slice v, int64_t rev, grp_cfg *out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)v.p, v.n, 0, &je), *reps, *ins, *it;
    const char *primary;
    size_t i, k;
    json_int_t term;

    memset(out, 0, sizeof(*out));
    if (root == NULL) {
        snprintf(err, errlen, "not JSON: %.100s", je.text);
        return OM_ERR(OM_E_INVALID);
    }
    reps = json_object_get(root, "replicas");
    ins = json_object_get(root, "in_sync");
    primary = json_string_value(json_object_get(root, "primary"));
    term = json_integer_value(json_object_get(root, "term"));
    if (!json_is_array(reps) || !json_is_array(ins) || primary == NULL || term <= 0 ||
        json_array_size(reps) == 0 || json_array_size(reps) > MAX_REPLICAS ||
        strlen(primary) >= sizeof(out->primary)) {
        snprintf(err, errlen, "needs term >= 1, primary, replicas (1..%d) and in_sync",
                 MAX_REPLICAS);
        json_decref(root);
        return OM_ERR(OM_E_INVALID);
    }
    json_array_foreach(reps, i, it)
    {
        const char *id = json_string_value(json_object_get(it, "id"));
        const char *addr = json_string_value(json_object_get(it, "addr"));

        if (id == NULL || addr == NULL || strlen(id) >= sizeof(out->id[0]) ||
            strlen(addr) >= sizeof(out->addr[0])) {
            snprintf(err, errlen, "replicas[%zu] needs an id and an addr", i);
            json_decref(root);
            return OM_ERR(OM_E_INVALID);
        }
        snprintf(out->id[i], sizeof(out->id[i]), "%s", id);
        snprintf(out->addr[i], sizeof(out->addr[i]), "%s", addr);
    }
    out->n = json_array_size(reps);
    json_array_foreach(ins, i, it)
    {
        const char *id = json_string_value(it);

        for (k = 0; id != NULL && k < out->n; k++)
            if (strcmp(out->id[k], id) == 0)
                out->in_sync[k] = true;
    }
    snprintf(out->primary, sizeof(out->primary), "%s", primary);
    out->term = (uint64_t)term;
    out->rev = rev;
    out->have = true;
    json_decref(root);
    return OM_OK;
}

/* The configuration as JSON (malloc'd; NULL: out of memory). */
static char *
cfg_json(const shard_repl_etcd *a, const grp_cfg *g)
{
    json_t *root = json_object(), *reps = json_array(), *ins = json_array();
    char *s = NULL;

    if (root == NULL || reps == NULL || ins == NULL)
        goto out;
    for (size_t i = 0; i < g->n; i++) {
        json_array_append_new(reps, json_pack("{s:s,s:s}", "id", g->id[i], "addr", g->addr[i]));
        if (g->in_sync[i])
            json_array_append_new(ins, json_string(g->id[i]));
    }
    json_object_set_new(root, "group", json_string(a->group));
    json_object_set_new(root, "term", json_integer((json_int_t)g->term));
    json_object_set_new(root, "primary", json_string(g->primary));
    json_object_set(root, "replicas", reps);
    json_object_set(root, "in_sync", ins);
    s = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    json_decref(root);
    json_decref(reps);
    json_decref(ins);
    return s;
}

static int
cfg_find(const grp_cfg *g, const char *id)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->id[i], id) == 0)
            return (int)i;
    return -1;
}

static size_t
cfg_in_sync_size(const grp_cfg *g)
{
    size_t n = 0;

    for (size_t i = 0; i < g->n; i++)
        n += g->in_sync[i];
    return n;
}

/* ---- stopping ---- */

/* Run `then` once: the revoke answered, or it did not within 500 ms. */
static void
then_now(shard_repl_etcd *a)
{
    void (*f)(void *) = a->then;

    a->then = NULL;
    if (f != NULL)
        f(a->then_arg);
}

static void
then_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    then_now(arg);
}

static void
revoke_cb(const etcd_resp *r, void *arg)
{
    (void)r;
    then_now(arg);
}

/*
 * Whether this replica serves clients; the shard's read loops serve reads
 * only while it does (shard_set_reads_anywhere), the loop thread decides
 * every other time (shard_repl_etcd_handle).
 */
static void
set_serving(shard_repl_etcd *a, bool on)
{
    a->serving = on;
    shard_set_reads_anywhere(a->s, on && a->role == ROLE_PRIMARY);
}

/*
 * Stop serving at once and give the lease back (the leader key goes with
 * it, so the next primary need not wait for it to expire); then `then`.
 */
static void
give_up(shard_repl_etcd *a, void (*then)(void *), void *arg)
{
    struct timeval tv = {0, 500 * 1000};

    a->role = ROLE_STOPPING;
    set_serving(a, false);
    commit_set_lease(a->s->commit, 0); /* no reply leaves from now on */
    if (a->repl != NULL)
        shard_repl_fail(a->repl); /* held replies fail; nothing more is shipped */
    a->then = then;
    a->then_arg = arg;
    if (a->lease != 0 && etcd_lease_revoke(a->c, a->lease, revoke_cb, a) == OM_OK &&
        event_base_once(a->base, -1, EV_TIMEOUT, then_timer, a, &tv) == 0) {
        a->lease = 0;
        return; /* the loop must run until the revoke is out */
    }
    a->lease = 0;
    then_now(a);
}

void
shard_repl_etcd_shutdown(shard_repl_etcd *a, void (*then)(void *), void *arg)
{
    if (a == NULL || a->role != ROLE_PRIMARY) {
        then(arg);
        return;
    }
    om_log(OM_LOG_INFO, "primary resigns for the shutdown group=%s term=%" PRIu64, a->group,
           a->term);
    give_up(a, then, arg);
}

/* Stop serving at once, give the lease back, and be executed again as a backup. */
static void
stop_primary(shard_repl_etcd *a, const char *why)
{
    if (a->role != ROLE_PRIMARY)
        return;
    om_log(OM_LOG_WARN, "primary stops serving group=%s term=%" PRIu64 " why=\"%s\"", a->group,
           a->term, why);
    a->restart_asked = true;
    give_up(a, a->o.restart, a->o.restart_arg);
}

/* ---- becoming primary ---- */

static void
become_primary(shard_repl_etcd *a, uint64_t term)
{
    shard_repl_opts o;
    shard_repl_state held;
    char backups[MAX_REPLICAS * 130] = "";
    size_t n = 0, len = 0;
    om_status st;

    shard_replica_close(a->replica); /* the stream of the former primary ends here */
    a->replica = NULL;
    for (size_t i = 0; i < a->cfg.n; i++) {
        if (strcmp(a->cfg.id[i], a->id) == 0)
            continue;
        len += (size_t)snprintf(backups + len, sizeof(backups) - len, "%s%s", n ? "," : "",
                                a->cfg.addr[i]);
        a->peer_cfg[n++] = i;
    }
    a->role = ROLE_PRIMARY;
    a->term = term;
    a->failovers++;
    shard_repl_opts_init(&o);
    o.group = a->group;
    o.term = term;
    o.backups = backups;
    o.timeout_ms = a->o.timeout_ms;
    o.catch_up_rate = a->o.catch_up_rate;
    o.no_await = true;
    o.tls = a->o.tls;
    o.drop_key = a->o.test_drop_key;
    if (n == 0) {
        /* a group of one: nothing to ship */
        set_serving(a, true);
        commit_set_lease(a->s->commit, a->lease_until_ns);
        om_log(OM_LOG_INFO, "primary of a group of one group=%s term=%" PRIu64, a->group, term);
        return;
    }
    st = shard_repl_open(a->s, &o, &a->repl);
    if (st != OM_OK) {
        a->repl = NULL;
        om_log(OM_LOG_ERROR, "cannot lead group=%s term=%" PRIu64 " status=%s", a->group, term,
               om_status_str(st));
        a->role = ROLE_PRIMARY; /* so that stop_primary acts */
        stop_primary(a, "the replication stream could not start");
        return;
    }
    for (size_t i = 0; i < n; i++)
        shard_repl_set_in_sync(a->repl, i, a->cfg.in_sync[a->peer_cfg[i]]);
    shard_repl_primary_state(a->repl, &held);
    a->start_index = held.index;
    set_serving(a, false); /* until the in-sync backups confirmed start_index (tick) */
    commit_set_lease(a->s->commit, a->lease_until_ns);
    om_log(OM_LOG_INFO,
           "primary of group=%s term=%" PRIu64 " index=%" PRIu64
           " in_sync=%zu: waiting for the in-sync backups",
           a->group, term, held.index, cfg_in_sync_size(&a->cfg));
}

/* ---- transactions on the configuration ---- */

static void
txn_cb(const etcd_resp *r, void *arg)
{
    shard_repl_etcd *a = arg;
    txn_ctx *x = &a->txn;

    a->txn_inflight = false;
    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "group configuration change failed group=%s err=%s", a->group, r->err);
    } else if (!r->succeeded) {
        om_log(OM_LOG_INFO, "group configuration changed meanwhile group=%s kind=%d", a->group,
               x->kind);
    } else if (x->kind == 2 && a->role == ROLE_PRIMARY) {
        bool in = x->next.in_sync[a->peer_cfg[x->peer]];

        x->next.rev = r->revision;
        a->cfg = x->next;
        a->joining[x->peer] = false;
        shard_repl_set_in_sync(a->repl, (size_t)x->peer, in);
        om_log(OM_LOG_WARN, "backup %s the in-sync set group=%s backup=%s version=%" PRId64,
               in ? "rejoined" : "removed from", a->group, a->cfg.id[a->peer_cfg[x->peer]],
               r->revision);
    } else if (x->kind != 2 && a->role == ROLE_BACKUP) {
        if (x->kind == 0)
            x->next.rev = r->revision;
        a->cfg = x->next;
        a->leader_present = true;
        om_log(OM_LOG_WARN, "%s group=%s term=%" PRIu64 " version=%" PRId64,
               x->kind == 0 ? "won the election" : "took over as the named primary", a->group,
               x->next.term, a->cfg.rev);
        become_primary(a, x->next.term);
    }
}

/* Send next (kind as txn_ctx). with_config: put the configuration too. */
static void
txn_send(shard_repl_etcd *a, const grp_cfg *next, int kind, int peer)
{
    txn_ctx *x = &a->txn;
    char *json = cfg_json(a, next), val[96];
    etcd_txn *t = NULL;
    om_slice kc = om_slice_from_str(a->kcfg), kl = om_slice_from_str(a->kleader);

    if (json == NULL || etcd_txn_new(&t) != OM_OK)
        goto out;
    x->next = *next;
    x->kind = kind;
    x->peer = peer;
    etcd_txn_cmp(t, kc, ETCD_CMP_MOD, ETCD_EQ, a->cfg.rev);
    if (kind == 2) {
        etcd_txn_cmp(t, kl, ETCD_CMP_LEASE, ETCD_EQ, a->lease); /* still ours */
    } else {
        etcd_txn_cmp(t, kl, ETCD_CMP_CREATE, ETCD_EQ, 0);
        snprintf(val, sizeof(val), "%s %" PRIu64, a->id, next->term);
        etcd_txn_put(t, true, kl, om_slice_from_str(val), a->lease);
    }
    if (kind != 1)
        etcd_txn_put(t, true, kc, om_slice_from_str(json), 0);
    a->txn_inflight = etcd_txn_send(a->c, t, txn_cb, a) == OM_OK;
out:
    etcd_txn_free(t);
    free(json);
}

/* A backup: campaign or take over when the group has no leader and this replica may lead. */
static void
maybe_lead(shard_repl_etcd *a)
{
    shard_repl_state held;
    grp_cfg next;
    int me, old;

    if (a->role != ROLE_BACKUP || !a->loaded || !a->cfg.have || a->leader_present ||
        a->txn_inflight || a->lease == 0 || a->replica == NULL)
        return;
    me = cfg_find(&a->cfg, a->id);
    if (me < 0 || !a->cfg.in_sync[me])
        return;
    shard_replica_state(a->replica, &held);
    next = a->cfg;
    if (strcmp(a->cfg.primary, a->id) == 0 && a->cfg.term > held.term) {
        /* named by the configuration (a new group, admin promote): the leader key only */
        txn_send(a, &next, 1, -1);
        return;
    }
    if (strcmp(a->cfg.primary, a->id) == 0 && cfg_in_sync_size(&a->cfg) > 1)
        return; /* this term's primary, restarted: it may hold writes never acknowledged,
                 * which must disappear (REPLICATION.md, "Divergence"): another in-sync
                 * replica leads, and this one is repaired as a backup (alone in the
                 * in-sync set it leads again: nobody else holds the acknowledged writes) */
    if (held.index == 0)
        return; /* an empty disk in the in-sync set: perhaps wiped; never campaign from it */
    if (a->cfg.term > held.term &&
        om_clock_mono_ns() - a->cfg_ns < (uint64_t)a->o.lease_ttl_ms * 1000000u)
        return; /* a new term names another primary that has not reached us yet: its turn */
    next.term = (a->cfg.term > held.term ? a->cfg.term : held.term) + 1;
    snprintf(next.primary, sizeof(next.primary), "%s", a->id);
    old = cfg_find(&a->cfg, a->cfg.primary);
    if (old >= 0 && old != me)
        next.in_sync[old] = false; /* repaired before it counts again */
    om_log(OM_LOG_INFO, "no leader: campaigning group=%s term=%" PRIu64 " index=%" PRIu64, a->group,
           next.term, held.index);
    txn_send(a, &next, 0, -1);
}

/* A serving primary: remove a silent in-sync backup, add back a caught-up one. */
static void
tend_in_sync(shard_repl_etcd *a)
{
    shard_repl_state me;

    if (a->repl == NULL || a->txn_inflight)
        return;
    shard_repl_primary_state(a->repl, &me);
    for (size_t i = 0; i < shard_repl_peer_count(a->repl); i++) {
        shard_repl_peer_info pi;
        grp_cfg next = a->cfg;
        size_t k = a->peer_cfg[i];

        shard_repl_peer_get(a->repl, i, &pi);
        if (a->joining[i] && pi.silent) {
            a->joining[i] = false; /* not in the configuration yet: only ship stops waiting */
            shard_repl_set_in_sync(a->repl, i, false);
            continue;
        }
        if (a->joining[i] && pi.acked >= a->join_at[i]) {
            next.in_sync[k] = true; /* it has every group answered without it */
            txn_send(a, &next, 2, (int)i);
            return;
        }
        if (pi.in_sync && pi.silent && a->cfg.in_sync[k]) {
            om_log(OM_LOG_WARN,
                   "backup silent for replica-timeout: removing it from the in-sync set "
                   "group=%s backup=%s acked=%" PRIu64 " last=%" PRIu64,
                   a->group, a->cfg.id[k], pi.acked, me.index);
            next.in_sync[k] = false;
            txn_send(a, &next, 2, (int)i);
            return;
        }
        if (!pi.in_sync && pi.answering && !pi.catching && pi.acked + ADD_BACK_LAG >= me.index) {
            /*
             * Counted by ship first; every group answered without it is at or below the
             * last index read after that, and the configuration lists it in sync only once
             * it has them all -- else, leading after a failover, it could lack one.
             */
            shard_repl_set_in_sync(a->repl, i, true);
            shard_repl_primary_state(a->repl, &me);
            a->joining[i] = true;
            a->join_at[i] = me.index;
        }
    }
}

/* The term mark is durable on every in-sync replica (shard_commit_term_mark). */
static void
term_mark_done(void *arg)
{
    (void)arg;
    om_log(OM_LOG_INFO, "the term's first group commit is on every in-sync replica");
}

/* What the configuration, the leader key and the clock say to do now. */
static void
evaluate(shard_repl_etcd *a)
{
    uint64_t now = om_clock_mono_ns();

    if (a->role == ROLE_BACKUP) {
        maybe_lead(a);
        return;
    }
    if (a->role != ROLE_PRIMARY)
        return;
    if (a->cfg.term > a->term || strcmp(a->cfg.primary, a->id) != 0) {
        char why[160];

        snprintf(why, sizeof(why), "the configuration names %s primary of term %" PRIu64,
                 a->cfg.primary, a->cfg.term);
        stop_primary(a, why);
        return;
    }
    if (now >= a->lease_until_ns) {
        stop_primary(a, "lease not renewed in time (own clock)");
        return;
    }
    if (a->repl != NULL && !shard_repl_ready(a->repl, 0)) {
        stop_primary(a, "a backup is in a later term, or a group could not be kept");
        return;
    }
    if (!a->serving && (a->repl == NULL || shard_repl_ready(a->repl, a->start_index))) {
        set_serving(a, true);
        om_log(OM_LOG_INFO, "primary serves group=%s term=%" PRIu64, a->group, a->term);
        /* the term's first group commit, so that no in-sync replica's log stays empty */
        if (a->repl != NULL && shard_commit_term_mark(a->s, term_mark_done, NULL) != OM_OK)
            om_log(OM_LOG_WARN, "no memory for the term mark group=%s", a->group);
    }
    tend_in_sync(a);
}

/* ---- following the keys ---- */

/*
 * A primary's backups are fixed when it starts leading: a configuration of
 * the same term with the same replicas (ids and addresses, in any order)
 * only moves them in the list (remap peer_cfg); false when the set differs.
 */
static bool
remap_peers(shard_repl_etcd *a, const grp_cfg *g)
{
    size_t map[MAX_REPLICAS], n = a->repl != NULL ? shard_repl_peer_count(a->repl) : 0;

    if (g->n != n + 1 || cfg_find(g, a->id) < 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        const size_t k = a->peer_cfg[i];
        int j = cfg_find(g, a->cfg.id[k]);

        if (j < 0 || strcmp(g->addr[j], a->cfg.addr[k]) != 0)
            return false;
        map[i] = (size_t)j;
    }
    memcpy(a->peer_cfg, map, n * sizeof(map[0]));
    return true;
}

static void
on_kv(shard_repl_etcd *a, const etcd_kv *kv, bool deleted)
{
    char err[160];
    grp_cfg g;

    if (om_slice_eq(kv->key, om_slice_from_str(a->kleader))) {
        a->leader_present = !deleted;
        snprintf(a->leader_val, sizeof(a->leader_val), "%.*s", deleted ? 0 : (int)kv->value.n,
                 deleted ? "" : (const char *)kv->value.p);
        if (deleted && a->role == ROLE_PRIMARY)
            stop_primary(a, "leader key deleted (lease expired or revoked)");
        return;
    }
    if (!om_slice_eq(kv->key, om_slice_from_str(a->kcfg)) || deleted)
        return;
    if (kv->mod_revision <= a->cfg.rev)
        return; /* this one's own change, already applied */
    if (cfg_parse(kv->value, kv->mod_revision, &g, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad group configuration key=%s: %s", a->kcfg, err);
        return;
    }
    if (a->role == ROLE_PRIMARY && g.term == a->term && strcmp(g.primary, a->id) == 0 &&
        !remap_peers(a, &g)) {
        a->cfg = g;
        stop_primary(a, "the group's replicas changed: leading again with the new set");
        return;
    }
    a->cfg = g;
    a->cfg_ns = om_clock_mono_ns();
    if (a->role == ROLE_PRIMARY && a->repl != NULL && g.term == a->term &&
        strcmp(g.primary, a->id) == 0)
        for (size_t i = 0; i < shard_repl_peer_count(a->repl); i++) {
            a->joining[i] = false;
            shard_repl_set_in_sync(a->repl, i, g.in_sync[a->peer_cfg[i]]);
        }
}

static void
watch_cb(const etcd_watch_batch *b, void *arg)
{
    shard_repl_etcd *a = arg;

    if (b->st != OM_OK) {
        om_log(OM_LOG_WARN, "watch of the group ended: reloading group=%s err=%s", a->group,
               b->err);
        etcd_watch_free(a->w);
        a->w = NULL;
        a->loaded = false;
        return;
    }
    for (size_t i = 0; i < b->nevents; i++)
        on_kv(a, &b->events[i].kv, b->events[i].type == ETCD_EV_DELETE);
    evaluate(a);
}

static void
load_cb(const etcd_resp *r, void *arg)
{
    shard_repl_etcd *a = arg;

    a->loading = false;
    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "cannot read the group configuration group=%s err=%s", a->group,
               r->err);
        return;
    }
    a->leader_present = false;
    for (size_t i = 0; i < r->nkvs; i++)
        on_kv(a, &r->kvs[i], false);
    if (!a->cfg.have)
        om_log(OM_LOG_INFO, "no configuration yet for group=%s key=%s: waiting", a->group, a->kcfg);
    if (etcd_watch_new(a->c, om_slice_from_str(a->kdir), true, r->revision + 1, watch_cb, a,
                       &a->w) != OM_OK)
        return;
    a->loaded = true;
    evaluate(a);
}

/* ---- the lease ---- */

static void
lease_confirmed(shard_repl_etcd *a, int64_t ttl_s)
{
    uint64_t ttl_ns = (uint64_t)ttl_s * 1000000000u;

    a->ttl_s = ttl_s;
    /* etcd counts the TTL from when it got the request, after ka_sent: 10% and 100 ms spare
     * for a clock running slow (REPLICATION.md, "Lease reads") */
    a->lease_until_ns = a->ka_sent_ns + ttl_ns - ttl_ns / 10 - 100000000u;
    if (a->role == ROLE_PRIMARY)
        commit_set_lease(a->s->commit, a->lease_until_ns);
}

static void
grant_cb(const etcd_resp *r, void *arg)
{
    shard_repl_etcd *a = arg;

    a->granting = false;
    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "lease grant failed group=%s err=%s", a->group, r->err);
        return;
    }
    a->lease = r->lease_id;
    lease_confirmed(a, r->ttl);
    evaluate(a);
}

static void
keepalive_cb(const etcd_resp *r, void *arg)
{
    shard_repl_etcd *a = arg;

    a->ka_inflight = false;
    if (r->st == OM_OK && r->ttl > 0) {
        lease_confirmed(a, r->ttl);
        return;
    }
    if (r->st == OM_E_NOTFOUND || (r->st == OM_OK && r->ttl <= 0)) {
        a->lease = 0;
        if (a->role == ROLE_PRIMARY)
            stop_primary(a, "etcd expired the lease");
        return;
    }
    om_log(OM_LOG_WARN, "lease keep-alive failed group=%s err=%s", a->group, r->err);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    shard_repl_etcd *a = arg;
    uint64_t now = om_clock_mono_ns();
    struct timeval tv = {0, TICK_MS * 1000};

    (void)fd;
    (void)what;
    if (a->role != ROLE_STOPPING) {
        if (a->lease == 0 && !a->granting) {
            a->ka_sent_ns = now;
            a->granting =
                etcd_lease_grant(a->c, (a->o.lease_ttl_ms + 999) / 1000, grant_cb, a) == OM_OK;
        } else if (a->lease != 0 && !a->ka_inflight &&
                   now - a->ka_sent_ns >= (uint64_t)a->ttl_s * 1000000000u / 4) {
            a->ka_sent_ns = now;
            a->ka_inflight = etcd_lease_keepalive(a->c, a->lease, keepalive_cb, a) == OM_OK;
        }
        if (!a->loaded && !a->loading)
            a->loading = etcd_range(a->c, om_slice_from_str(a->kdir), true, load_cb, a) == OM_OK;
        if (a->loaded)
            evaluate(a);
    }
    evtimer_add(a->tick, &tv);
}

/* ---- the data path's view ---- */

bool
shard_repl_etcd_handle(shard_repl_etcd *a, const Objmeta__Request *req, rpc_reply *reply)
{
    bool client_op = false;

    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE:
    case OBJMETA__REQUEST__BODY_DELETE:
    case OBJMETA__REQUEST__BODY_RETRIEVE:
    case OBJMETA__REQUEST__BODY_HEAD:
    case OBJMETA__REQUEST__BODY_EXISTS:
    case OBJMETA__REQUEST__BODY_LIST:
    /* a ring change's copy and cleanup: served, and answered, only as a client's would be */
    case OBJMETA__REQUEST__BODY_MIGRATE_SCAN:
    case OBJMETA__REQUEST__BODY_APPLY_RECORDS:
        client_op = true;
        break;
    case OBJMETA__REQUEST__BODY_COMPACT: /* its purge writes; a progress poll only reads */
        client_op = !req->compact->progress;
        break;
    default:
        break;
    }
    if (a->role == ROLE_BACKUP && a->replica != NULL)
        return shard_replica_handle(a->replica, req, reply);
    if (a->role == ROLE_PRIMARY && req->body_case == OBJMETA__REQUEST__BODY_REPLICATE) {
        if (req->replicate->term > a->term)
            stop_primary(a, "a primary of a later term replicates to this one");
        rpc_reply_error(reply, OM_E_UNAVAILABLE,
                        "this replica leads group %s in term %" PRIu64 ": not a backup", a->group,
                        a->term);
        return true;
    }
    if (a->role == ROLE_PRIMARY && client_op &&
        (!a->serving || om_clock_mono_ns() >= a->lease_until_ns)) {
        shard_reply_not_applied(reply, "group %s: this primary does not serve yet (%s)", a->group,
                                a->serving ? "its lease has ended"
                                           : "waiting for the in-sync backups");
        return true;
    }
    if (a->role == ROLE_PRIMARY)
        return false; /* served: writes and migration's applies go through the stream */
    if (client_op || req->body_case == OBJMETA__REQUEST__BODY_REPLICATE) {
        shard_reply_not_applied(reply, "group %s: this replica is changing roles (a failover)",
                                a->group);
        return true;
    }
    return false;
}

static om_status
gauge(om_buf *out, const char *name, const char *help, double v)
{
    OM_TRY(rpc_prom_header(out, name, "gauge", help));
    return rpc_prom_value(out, name, NULL, v);
}

om_status
shard_repl_etcd_render_metrics(shard_repl_etcd *a, om_buf *out)
{
    uint64_t now = om_clock_mono_ns();
    double left = a != NULL && a->role == ROLE_PRIMARY && a->lease_until_ns > now
                      ? (double)(a->lease_until_ns - now) / 1e9
                      : 0;

    if (a == NULL)
        return OM_OK;
    OM_TRY(gauge(out, "objmeta_replication_config_term",
                 "The term of the group configuration in etcd.", (double)a->cfg.term));
    OM_TRY(gauge(out, "objmeta_replication_in_sync_size",
                 "Replicas in the in-sync set (the primary included).",
                 (double)cfg_in_sync_size(&a->cfg)));
    OM_TRY(gauge(out, "objmeta_replication_serving", "1 while this primary serves.",
                 a->role == ROLE_PRIMARY && a->serving && left > 0));
    OM_TRY(gauge(out, "objmeta_replication_lease_seconds",
                 "Time left of the primary's lease by its own clock.", left));
    OM_TRY(rpc_prom_header(out, "objmeta_replication_failovers_total", "counter",
                           "Times this process took over as primary."));
    return rpc_prom_value(out, "objmeta_replication_failovers_total", NULL, (double)a->failovers);
}

/* ---- life ---- */

om_status
shard_repl_etcd_open(shard *s, struct event_base *base, const shard_repl_etcd_opts *o, char *err,
                     size_t errlen, shard_repl_etcd **out)
{
    shard_repl_etcd *a;
    etcd_opts eo;
    struct timeval tv = {0, 0};
    om_status st;

    if (o->group == NULL || o->group[0] == '\0' || o->id == NULL || o->id[0] == '\0' ||
        strchr(o->group, '/') != NULL || strchr(o->id, ' ') != NULL) {
        snprintf(err, errlen,
                 "etcd: replica-group and replica-id must be set (no '/' in the "
                 "group, no space in the id)");
        return OM_ERR(OM_E_INVALID);
    }
    if (o->prefix == NULL || o->prefix[0] != '/' || strlen(o->prefix) + strlen(o->group) > 400) {
        snprintf(err, errlen, "etcd-prefix: '%s' must start with '/'", o->prefix ? o->prefix : "");
        return OM_ERR(OM_E_INVALID);
    }
    if (s->opts.lsm.sync_mode != LSM_SYNC_ALWAYS) {
        snprintf(err, errlen, "etcd: a replica needs sync-mode always");
        return OM_ERR(OM_E_INVALID);
    }
    if ((a = calloc(1, sizeof(*a))) == NULL)
        return OM_ERR(OM_E_NOMEM);
    a->s = s;
    a->base = base;
    a->o = *o;
    shard_set_reads_anywhere(s, false); /* until this replica leads its group and serves */
    a->group = strdup(o->group);
    a->id = strdup(o->id);
    snprintf(a->kdir, sizeof(a->kdir), "%s/groups/%s/", o->prefix, o->group);
    snprintf(a->kcfg, sizeof(a->kcfg), "%sconfig", a->kdir);
    snprintf(a->kleader, sizeof(a->kleader), "%sleader", a->kdir);
    a->ttl_s = (o->lease_ttl_ms + 999) / 1000;
    etcd_opts_init(&eo);
    eo.endpoints = o->endpoints;
    if (o->etcd_timeout_ms > 0)
        eo.timeout_ms = (int)o->etcd_timeout_ms;
    if (a->group == NULL || a->id == NULL || (a->tick = evtimer_new(base, tick_cb, a)) == NULL) {
        shard_repl_etcd_free(a);
        return OM_ERR(OM_E_NOMEM);
    }
    if ((st = etcd_client_new(base, &eo, err, errlen, &a->c)) != OM_OK ||
        (st = shard_replica_open(s, a->group, &a->replica)) != OM_OK) {
        shard_repl_etcd_free(a);
        return st;
    }
    evtimer_add(a->tick, &tv);
    om_log(OM_LOG_INFO, "replica of group=%s id=%s follows etcd key=%s", a->group, a->id, a->kcfg);
    *out = a;
    return OM_OK;
}

bool
shard_repl_etcd_stop(shard_repl_etcd *a)
{
    if (a == NULL)
        return false;
    etcd_watch_free(a->w);
    a->w = NULL;
    if (a->tick != NULL)
        event_free(a->tick);
    a->tick = NULL;
    etcd_client_free(a->c);
    a->c = NULL;
    shard_repl_stop(a->repl);
    shard_replica_close(a->replica);
    a->replica = NULL;
    return a->restart_asked;
}

void
shard_repl_etcd_free(shard_repl_etcd *a)
{
    if (a == NULL)
        return;
    (void)shard_repl_etcd_stop(a);
    shard_repl_close(a->repl);
    free(a->group);
    free(a->id);
    free(a);
}
