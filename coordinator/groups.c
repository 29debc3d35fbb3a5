/*
 * coordinator/groups.c -- the replica group table: what every coordinator
 * (etcd backend) knows of each group's configuration, kept current by a
 * watch, and how routing follows it (coordinator/GROUPS.md, "Routing";
 * the keys are shard/REPLICATION.md's "Group configuration").
 *
 * The keys (the schema the shards share; fixed):
 *
 *   <prefix>/groups/<gid>/config  JSON {"group", "term", "primary",
 *                                 "replicas": [{"id", "addr"}], "in_sync"};
 *                                 changed only by transactions comparing its
 *                                 mod_revision (the configuration version)
 *   <prefix>/groups/<gid>/leader  "<rid> <term>", under the primary's lease
 *
 * A ring member whose id has a configuration is a replicated group: its pool
 * entry (shard_pool.c) is connected to the configured primary, not to the
 * address the ring recorded when the group was added, and moves
 * (coord_pool_retarget) whenever a configuration names another primary.
 * Members without a configuration (add-shard: a group of one) are routed by
 * the ring's address as before.
 *
 * Failover. A group's requests wait (router.c parks them, up to
 * failover_wait_ms from their arrival) while its entry is down -- the
 * primary died, its connection broke -- or while it is in failover: its
 * leader key was seen and no longer names the configured primary and term
 * (the lease expired, or a promote changed the configuration and the new
 * primary has not taken the key yet). A group whose leader key was never
 * seen (static membership, shards that do not campaign) is routed by its
 * configuration alone. Every change of the table releases the parked
 * requests, which are then routed again.
 *
 * Loading: one range over <prefix>/groups/ at open (asynchronous; until it
 * answers, members are routed by the ring's addresses), then a watch from
 * the revision after it. A watch that ends (compaction) reads everything
 * again.
 *
 * Thread-safety: loop thread only (coord_int.h).
 */
#define OM_LOG_MODULE "groups"
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cstate.h"
#include "coordinator/groups_int.h"
#include "util/log.h"

struct coord_groups {
    coord *c;
    etcd_client *etcd;
    char *dir; /* "<prefix>/groups/" */
    etcd_watch *watch;
    bool loaded;
    coord_group **v;
    size_t n;
};

/* ---- configuration JSON ---- */

void
coord_group_conf_clear(coord_group_conf *g)
{
    for (size_t i = 0; i < g->nreplicas; i++) {
        free(g->replicas[i].id);
        free(g->replicas[i].addr);
    }
    free(g->replicas);
    free(g->id);
    free(g->primary);
    memset(g, 0, sizeof(*g));
}

const coord_replica *
coord_group_replica(const coord_group_conf *g, const char *rid)
{
    for (size_t i = 0; i < g->nreplicas; i++)
        if (strcmp(g->replicas[i].id, rid) == 0)
            return &g->replicas[i];
    return NULL;
}

size_t
coord_group_in_sync_count(const coord_group_conf *g)
{
    size_t n = 0;

    for (size_t i = 0; i < g->nreplicas; i++)
        n += g->replicas[i].in_sync;
    return n;
}

static om_status
conf_bad(char *err, size_t errlen, const char *what)
{
    return om_err_invalid(err, errlen, "group configuration: %s", what);
}

om_status
coord_group_conf_decode(om_slice json, coord_group_conf *out, char *err, size_t errlen)
{
    json_error_t je;
    json_t *root = json_loadb((const char *)json.p, json.n, JSON_REJECT_DUPLICATES, &je);
    json_t *reps, *ins, *x;
    coord_group_conf g = {0};
    size_t i;
    om_status st = OM_OK;

    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return conf_bad(err, errlen, "not a JSON object");
    }
    reps = json_object_get(root, "replicas");
    ins = json_object_get(root, "in_sync");
    x = json_object_get(root, "term");
    if (!json_is_string(json_object_get(root, "group")) || !json_is_integer(x) ||
        json_integer_value(x) < 1 || !json_is_string(json_object_get(root, "primary")) ||
        !json_is_array(reps) || json_array_size(reps) < 1 ||
        json_array_size(reps) > COORD_GROUP_MAX_REPLICAS || !json_is_array(ins)) {
        st = conf_bad(err, errlen, "needs group, term >= 1, primary, replicas (1..5) and in_sync");
        goto out;
    }
    g.term = (uint64_t)json_integer_value(x);
    g.id = strdup(json_string_value(json_object_get(root, "group")));
    g.primary = strdup(json_string_value(json_object_get(root, "primary")));
    g.replicas = calloc(json_array_size(reps), sizeof(*g.replicas));
    if (g.id == NULL || g.primary == NULL || g.replicas == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto out;
    }
    json_array_foreach(reps, i, x)
    {
        json_t *id = json_object_get(x, "id"), *addr = json_object_get(x, "addr");

        if (!json_is_string(id) || !json_is_string(addr)) {
            st = conf_bad(err, errlen, "a replica needs id and addr");
            goto out;
        }
        g.replicas[i].id = strdup(json_string_value(id));
        g.replicas[i].addr = strdup(json_string_value(addr));
        g.nreplicas = i + 1;
        if (g.replicas[i].id == NULL || g.replicas[i].addr == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto out;
        }
    }
    json_array_foreach(ins, i, x)
    {
        coord_replica *r = json_is_string(x)
                               ? (coord_replica *)coord_group_replica(&g, json_string_value(x))
                               : NULL;
        if (r == NULL) {
            st = conf_bad(err, errlen, "in_sync names a replica that is not in replicas");
            goto out;
        }
        r->in_sync = true;
    }
    if (coord_group_replica(&g, g.primary) == NULL || !coord_group_replica(&g, g.primary)->in_sync)
        st = conf_bad(err, errlen, "the primary is not an in-sync replica");
out:
    json_decref(root);
    if (st == OM_OK)
        *out = g;
    else
        coord_group_conf_clear(&g);
    return st;
}

om_status
coord_group_conf_encode(const coord_group_conf *g, om_buf *out)
{
    json_t *root = json_object(), *reps = json_array(), *ins = json_array();
    char *s = NULL;
    om_status st = OM_ERR(OM_E_NOMEM);

    if (root == NULL || reps == NULL || ins == NULL)
        goto out;
    for (size_t i = 0; i < g->nreplicas; i++) {
        json_t *r = json_pack("{s:s, s:s}", "id", g->replicas[i].id, "addr", g->replicas[i].addr);
        if (r == NULL || json_array_append_new(reps, r) != 0)
            goto out;
        if (g->replicas[i].in_sync && json_array_append_new(ins, json_string(g->replicas[i].id)))
            goto out;
    }
    if (json_object_set_new(root, "group", json_string(g->id)) != 0 ||
        json_object_set_new(root, "term", json_integer((json_int_t)g->term)) != 0 ||
        json_object_set_new(root, "primary", json_string(g->primary)) != 0 ||
        json_object_set(root, "replicas", reps) != 0 || json_object_set(root, "in_sync", ins) != 0)
        goto out;
    s = json_dumps(root, JSON_COMPACT);
    if (s != NULL)
        st = om_buf_set(out, om_slice_from_str(s));
out:
    free(s);
    json_decref(reps);
    json_decref(ins);
    json_decref(root);
    return st;
}

/* ---- the table ---- */

coord_group *
coord_group_find(const coord *c, const char *id)
{
    const coord_groups *t = c->groups;

    for (size_t i = 0; t != NULL && i < t->n; i++)
        if (strcmp(t->v[i]->conf.id, id) == 0)
            return t->v[i];
    return NULL;
}

static coord_group *
groups_get(coord_groups *t, const char *id)
{
    coord_group *g = coord_group_find(t->c, id), **v;

    if (g != NULL)
        return g;
    v = realloc(t->v, (t->n + 1) * sizeof(*v));
    if (v == NULL)
        return NULL;
    t->v = v;
    g = calloc(1, sizeof(*g));
    if (g == NULL || (g->conf.id = strdup(id)) == NULL) {
        free(g);
        return NULL;
    }
    t->v[t->n++] = g;
    return g;
}

static void
groups_drop(coord_groups *t, size_t i)
{
    coord_group_conf_clear(&t->v[i]->conf);
    free(t->v[i]);
    t->v[i] = t->v[--t->n];
}

const char *
coord_group_primary_addr(const coord_group *g)
{
    const coord_replica *r;

    if (!g->have_config)
        return NULL;
    r = coord_group_replica(&g->conf, g->conf.primary);
    return r != NULL ? r->addr : NULL;
}

/* Does the leader key name the configured primary and term? */
static bool
group_leader_matches(const coord_group *g)
{
    char want[300];

    if (!g->leader_present)
        return false;
    snprintf(want, sizeof(want), "%s %" PRIu64, g->conf.primary, g->conf.term);
    return strcmp(g->leader, want) == 0;
}

/* Bring the pool entry of g (if the ring has one) in line with the table. */
static void
group_apply(coord *c, coord_group *g)
{
    coord_shard *sh = coord_pool_find(c, g->conf.id);
    const char *addr = coord_group_primary_addr(g);
    bool failover = g->have_config && g->leader_seen && !group_leader_matches(g);

    if (sh == NULL)
        return;
    sh->replicated = g->have_config;
    if (failover != sh->failover)
        om_log(OM_LOG_INFO, "group %s id=%s term=%" PRIu64 " leader=\"%s\"",
               failover ? "failing over" : "has its primary", g->conf.id, g->conf.term, g->leader);
    sh->failover = failover;
    if (addr != NULL && strcmp(addr, sh->addr) != 0) {
        om_log(OM_LOG_INFO, "group primary moved id=%s primary=%s addr=%s term=%" PRIu64,
               g->conf.id, g->conf.primary, addr, g->conf.term);
        coord_pool_retarget(sh, addr);
    }
}

const char *
coord_groups_route_addr(coord *c, coord_shard *sh, const char *addr)
{
    coord_group *g = coord_group_find(c, sh->id);
    const char *a = g != NULL ? coord_group_primary_addr(g) : NULL;

    if (g != NULL) {
        sh->replicated = g->have_config;
        sh->failover = g->have_config && g->leader_seen && !group_leader_matches(g);
    } else if (c->groups != NULL && !c->groups->loaded) {
        sh->replicated = sh->failover = true; /* unknown until the table is read: held */
    }
    return a != NULL ? a : addr;
}

/* "<dir><gid>/config" or ".../leader": the group id and which key; false for anything else. */
static bool
groups_parse_key(const coord_groups *t, om_slice key, char *gid, size_t gidlen, bool *is_leader)
{
    size_t dn = strlen(t->dir), rest;
    const char *p = (const char *)key.p + dn, *slash;

    if (key.n <= dn || memcmp(key.p, t->dir, dn) != 0)
        return false;
    rest = key.n - dn;
    slash = memchr(p, '/', rest);
    if (slash == NULL || slash == p || (size_t)(slash - p) >= gidlen)
        return false;
    memcpy(gid, p, (size_t)(slash - p));
    gid[slash - p] = '\0';
    rest -= (size_t)(slash - p) + 1;
    if (rest == 6 && memcmp(slash + 1, "config", 6) == 0)
        *is_leader = false;
    else if (rest == 6 && memcmp(slash + 1, "leader", 6) == 0)
        *is_leader = true;
    else
        return false;
    return true;
}

/* One key's new state (put: value; delete: OM_SLICE_NULL). Returns the group touched or NULL. */
static coord_group *
groups_note(coord_groups *t, const etcd_kv *kv, bool put)
{
    char gid[RING_ID_MAX + 1], err[256];
    bool is_leader;
    coord_group *g;

    if (!groups_parse_key(t, kv->key, gid, sizeof(gid), &is_leader))
        return NULL;
    g = groups_get(t, gid);
    if (g == NULL) {
        om_log(OM_LOG_ERROR, "out of memory for the group table id=%s", gid);
        return NULL;
    }
    if (is_leader) {
        g->leader_present = put;
        g->leader_seen |= put;
        snprintf(g->leader, sizeof(g->leader), "%.*s", put ? (int)kv->value.n : 0,
                 put ? (const char *)kv->value.p : "");
        return g;
    }
    if (!put) {
        g->have_config = false;
        g->config_rev = 0;
        return g;
    }
    {
        coord_group_conf nc;
        char *old_primary = g->have_config ? strdup(g->conf.primary) : NULL;

        if (coord_group_conf_decode(kv->value, &nc, err, sizeof(err)) != OM_OK) {
            om_log(OM_LOG_ERROR, "ignoring a group configuration id=%s revision=%lld err=\"%s\"",
                   gid, (long long)kv->mod_revision, err);
            free(old_primary);
            return NULL;
        }
        if (strcmp(nc.id, gid) != 0)
            om_log(OM_LOG_WARN, "group configuration names another group key_id=%s group=%s", gid,
                   nc.id);
        free(nc.id);
        nc.id = g->conf.id; /* the key's id is the member id */
        g->conf.id = NULL;
        coord_group_conf_clear(&g->conf);
        g->conf = nc;
        if (old_primary != NULL && strcmp(old_primary, nc.primary) != 0)
            g->primary_changes++;
        free(old_primary);
        g->have_config = true;
        g->config_rev = kv->mod_revision;
    }
    return g;
}

static void groups_watch_cb(const etcd_watch_batch *b, void *arg);

/* Drop groups that hold neither key any more. */
static void
groups_gc(coord_groups *t)
{
    for (size_t i = 0; i < t->n;) {
        if (!t->v[i]->have_config && !t->v[i]->leader_present)
            groups_drop(t, i);
        else
            i++;
    }
}

static void
groups_load_cb(const etcd_resp *r, void *arg)
{
    coord_groups *t = arg;
    coord *c = t->c;

    if (r->st != OM_OK) {
        om_log(OM_LOG_WARN, "cannot read the replica groups err=\"%s\"; retrying", r->err);
        /* from a fresh loop turn: never free or reissue inside the client's callback */
        event_base_once(c->base, -1, EV_TIMEOUT, coord_groups_reload_cb, c,
                        &(struct timeval){1, 0});
        return;
    }
    /* a full read replaces what the table held */
    while (t->n > 0)
        groups_drop(t, t->n - 1);
    for (size_t i = 0; i < r->nkvs; i++)
        (void)groups_note(t, &r->kvs[i], true);
    for (size_t i = 0; i < t->n; i++)
        group_apply(c, t->v[i]);
    /* entries of members whose configuration vanished meanwhile */
    for (size_t i = 0; i < c->nshards; i++)
        if (coord_group_find(c, c->shards[i]->id) == NULL)
            c->shards[i]->replicated = c->shards[i]->failover = false;
    t->loaded = true;
    om_log(OM_LOG_INFO, "replica groups loaded groups=%zu revision=%lld", t->n,
           (long long)r->revision);
    etcd_watch_free(t->watch);
    t->watch = NULL;
    if (etcd_watch_new(t->etcd, om_slice_from_str(t->dir), true, r->revision + 1, groups_watch_cb,
                       t, &t->watch) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot watch the replica groups prefix=%s", t->dir);
    coord_route_release(c);
}

void
coord_groups_reload_cb(evutil_socket_t fd, short what, void *arg)
{
    coord *c = arg;
    coord_groups *t = c->groups;

    (void)fd;
    (void)what;
    if (t == NULL || c->stopping)
        return;
    if (etcd_range(t->etcd, om_slice_from_str(t->dir), true, groups_load_cb, t) != OM_OK)
        om_log(OM_LOG_ERROR, "cannot send the replica groups read");
}

static void
groups_watch_cb(const etcd_watch_batch *b, void *arg)
{
    coord_groups *t = arg;
    coord *c = t->c;

    if (b->st != OM_OK) {
        om_log(OM_LOG_WARN, "replica group watch ended err=\"%s\"; reading them again", b->err);
        etcd_watch_free(t->watch); /* allowed inside its own callback */
        t->watch = NULL;
        event_base_once(c->base, -1, EV_TIMEOUT, coord_groups_reload_cb, c, NULL);
        return;
    }
    /* a batch is one etcd revision or more: a campaign's transaction puts the configuration
     * and the leader key at once, so the pool follows the batch, not each event */
    for (size_t i = 0; i < b->nevents; i++) {
        coord_group *g = groups_note(t, &b->events[i].kv, b->events[i].type == ETCD_EV_PUT);
        if (g != NULL)
            g->touched = true;
    }
    for (size_t i = 0; i < t->n; i++) {
        if (t->v[i]->touched)
            group_apply(c, t->v[i]);
        t->v[i]->touched = false;
    }
    for (size_t i = 0; i < c->nshards; i++)
        if (coord_group_find(c, c->shards[i]->id) == NULL ||
            !coord_group_find(c, c->shards[i]->id)->have_config)
            c->shards[i]->replicated = c->shards[i]->failover = false;
    groups_gc(t);
    coord_route_release(c);
}

om_status
coord_groups_open(coord *c)
{
    coord_groups *t;
    const char *prefix = coord_cstate_prefix(c->cs);
    size_t n;

    if (coord_cstate_etcd(c->cs) == NULL)
        return OM_OK;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return OM_ERR(OM_E_NOMEM);
    n = strlen(prefix) + sizeof("/groups/");
    t->dir = malloc(n);
    if (t->dir == NULL) {
        free(t);
        return OM_ERR(OM_E_NOMEM);
    }
    snprintf(t->dir, n, "%s/groups/", prefix);
    t->c = c;
    t->etcd = coord_cstate_etcd(c->cs);
    c->groups = t;
    /* Until the table is read, no entry's kind is known: a group's request sent to a primary
     * that does not serve yet could not be sent again. They wait (coord_shard_waits), and the
     * load releases them, routed by what it found. */
    for (size_t i = 0; i < c->nshards; i++)
        c->shards[i]->replicated = c->shards[i]->failover = true;
    coord_groups_reload_cb(-1, 0, c);
    return OM_OK;
}

void
coord_groups_close(coord *c)
{
    coord_groups *t = c->groups;

    if (t == NULL)
        return;
    etcd_watch_free(t->watch);
    while (t->n > 0)
        groups_drop(t, t->n - 1);
    free(t->v);
    free(t->dir);
    free(t);
    c->groups = NULL;
}

const char *
coord_groups_dir(const coord *c)
{
    return c->groups != NULL ? c->groups->dir : NULL;
}

size_t
coord_groups_count(const coord *c)
{
    return c->groups != NULL ? c->groups->n : 0;
}

coord_group *
coord_group_at(const coord *c, size_t i)
{
    return c->groups->v[i];
}

/* ---- metrics ---- */

enum { GM_TERM, GM_REPLICAS, GM_IN_SYNC, GM_LEADER, GM_CHANGES, GM_WAITING, GM_COUNT_ };

static const struct {
    const char *name, *type, *help;
} group_metrics[GM_COUNT_] = {
    {"objmeta_coord_group_term", "gauge", "The replica group's term (its etcd configuration)."},
    {"objmeta_coord_group_replicas", "gauge", "Replicas in the group's configuration."},
    {"objmeta_coord_group_in_sync", "gauge", "Replicas in the group's in-sync set."},
    {"objmeta_coord_group_leader_present", "gauge",
     "1 while the group's leader key (the primary's lease) exists."},
    {"objmeta_coord_group_primary_changes_total", "counter",
     "Changes of the group's primary this coordinator has seen."},
    {"objmeta_coord_group_waiting", "gauge",
     "1 while the group's requests wait for a primary (failover)."},
};

static uint64_t
group_metric(coord *c, const coord_group *g, int m)
{
    coord_shard *sh;

    switch (m) {
    case GM_TERM:
        return g->conf.term;
    case GM_REPLICAS:
        return g->conf.nreplicas;
    case GM_IN_SYNC:
        return coord_group_in_sync_count(&g->conf);
    case GM_LEADER:
        return g->leader_present;
    case GM_CHANGES:
        return g->primary_changes;
    default:
        sh = coord_pool_find(c, g->conf.id);
        return sh != NULL && coord_shard_waits(sh);
    }
}

om_status
coord_groups_render_metrics(coord *c, om_buf *out)
{
    const coord_groups *t = c->groups;
    char labels[RING_ID_MAX + 400];

    if (t == NULL)
        return OM_OK;
    OM_TRY(rpc_prom_header(out, "objmeta_coord_group_primary_info", "gauge",
                           "The group's configured primary (always 1)."));
    for (size_t i = 0; i < t->n; i++) {
        const coord_group *g = t->v[i];
        const char *addr = coord_group_primary_addr(g);

        if (!g->have_config)
            continue;
        snprintf(labels, sizeof(labels), "group=\"%s\",primary=\"%s\",addr=\"%s\"", g->conf.id,
                 g->conf.primary, addr ? addr : "");
        OM_TRY(rpc_prom_value(out, "objmeta_coord_group_primary_info", labels, 1));
    }
    for (int m = 0; m < GM_COUNT_; m++) {
        OM_TRY(rpc_prom_header(out, group_metrics[m].name, group_metrics[m].type,
                               group_metrics[m].help));
        for (size_t i = 0; i < t->n; i++) {
            if (!t->v[i]->have_config)
                continue;
            snprintf(labels, sizeof(labels), "group=\"%s\"", t->v[i]->conf.id);
            OM_TRY(rpc_prom_value(out, group_metrics[m].name, labels,
                                  (double)group_metric(c, t->v[i], m)));
        }
    }
    OM_TRY(rpc_prom_header(out, "objmeta_coord_parked", "gauge",
                           "Requests waiting for a replica group's next primary."));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_parked", NULL, (double)c->parked_count));
    OM_TRY(rpc_prom_header(out, "objmeta_coord_parked_total", "counter",
                           "Requests that waited for a replica group's next primary; retried: "
                           "sent once to the former one; expired: answered UNAVAILABLE."));
    OM_TRY(
        rpc_prom_value(out, "objmeta_coord_parked_total", "kind=\"all\"", (double)c->parked_total));
    OM_TRY(rpc_prom_value(out, "objmeta_coord_parked_total", "kind=\"retried\"",
                          (double)c->parked_retried));
    return rpc_prom_value(out, "objmeta_coord_parked_total", "kind=\"expired\"",
                          (double)c->parked_expired);
}
