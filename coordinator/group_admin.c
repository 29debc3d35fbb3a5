/*
 * coordinator/group_admin.c -- the operator's requests on replica groups
 * (AddGroup, RemoveGroup, Promote, AddReplica, RemoveReplica, Groups,
 * Verify; coordinator/GROUPS.md, "Administration").
 *
 * Every change of a configuration is one etcd transaction on
 * <prefix>/groups/<gid>/config that compares what this request read:
 *
 *   create (AddGroup)    [create_revision == 0] put {term 1, primary = the
 *                        first replica, in_sync = all}
 *   change               read the key (range), compute the new JSON, then
 *   (Promote, Add/Remove [mod_revision == the one read] put it; a failed
 *    Replica)            compare is PRECONDITION_FAILED ("changed
 *                        concurrently; retry"), never a blind overwrite
 *   delete (RemoveGroup) [mod_revision == the one read] delete
 *
 * so a shard's own transaction (a primary shrinking the in-sync set, a
 * backup campaigning) and an operator's never both act on one version.
 * The rules: Promote needs the target in the in-sync set (term + 1, it
 * becomes primary); AddReplica puts the newcomer in `replicas` only (its
 * primary adds it to the in-sync set once it has caught up); RemoveReplica
 * takes it out of both in the same write (it leaves the in-sync set no
 * later than it leaves the group) and refuses the primary.
 *
 * AddGroup and RemoveGroup also change the ring, so they run on the leader
 * (a follower forwards them, leader.c). AddGroup writes the configuration
 * first -- the group must have its primary before data is routed to it --
 * then starts AddShard for the group id at its primary's address; an
 * existing configuration with the same replicas counts as written, so an
 * AddGroup refused by the ring change (BUSY) is simply asked again.
 * RemoveGroup starts RemoveShard while the group is a ring member and
 * deletes the configuration once it has left (the admin tool asks again
 * after the change). Configuration changes need no leader: any coordinator
 * runs the transaction.
 *
 * Groups and Verify ask the replicas themselves (Ping, Digest) over
 * short-lived connections; each answers within its deadline or is reported
 * with its error.
 *
 * Loop thread only.
 */
#define OM_LOG_MODULE "groups"
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cstate.h"
#include "coordinator/groups_int.h"
#include "util/assert.h"
#include "util/log.h"

#define VERIFY_DEFAULT_RANGES 64u
#define VERIFY_MAX_RANGES 4096u

/* ---- validation ---- */

static bool
gadm_id_ok(const char *id)
{
    size_t n = strlen(id);

    if (n == 0 || n > RING_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

static bool
gadm_addr_ok(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    size_t n = strlen(addr);

    if (n == 0 || n > RING_ADDR_MAX || colon == NULL || colon == addr || colon[1] == '\0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (addr[i] <= ' ' || addr[i] == 0x7f || addr[i] == '"' || addr[i] == '\\')
            return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* A (group, replica) pair of ids; false with err naming `op`. */
static bool
gadm_pair_ok(const char *op, const char *group, const char *replica, char *err, size_t errlen)
{
    if (gadm_id_ok(group) && gadm_id_ok(replica))
        return true;
    om_errf(err, errlen,
            "%s: group '%s' and replica '%s' must be ids (1-%u letters, digits, . _ : -)", op,
            group, replica, RING_ID_MAX);
    return false;
}

static om_status
gadm_check_replica(const Objmeta__ReplicaSpec *r, const char *field, char *err, size_t errlen)
{
    if (r == NULL)
        return om_err_invalid(err, errlen, "%s: missing", field);
    if (!gadm_id_ok(r->id))
        return om_err_invalid(err, errlen,
                              "%s.id: '%s' must be 1-%u bytes of letters, digits and . _ : -",
                              field, r->id, RING_ID_MAX);
    if (!gadm_addr_ok(r->addr))
        return om_err_invalid(err, errlen, "%s.addr: '%s' is not host:port", field, r->addr);
    return OM_OK;
}

/* ---- one request in flight ---- */

typedef struct gadm gadm;
/* Turn the configuration read (NULL: absent) into the one to write (*out). */
typedef om_status (*gadm_change_fn)(gadm *a, const coord_group_conf *cur, coord_group_conf *out,
                                    char *err, size_t errlen);

struct gadm {
    coord *c;
    rpc_reply *reply;
    uint64_t t0;
    Objmeta__Request *req; /* a copy */
    char key[600];         /* <prefix>/groups/<gid>/config */
    char gid[RING_ID_MAX + 1];
    gadm_change_fn change;
    bool remove;    /* RemoveGroup: delete instead of put */
    bool then_ring; /* AddGroup: add to the ring after the write */
    Objmeta__Response__BodyCase body;
    coord_group_conf written;
    int64_t rev_read;
};

static void
gadm_free(gadm *a)
{
    if (a->req != NULL)
        objmeta__request__free_unpacked(a->req, NULL);
    coord_group_conf_clear(&a->written);
    free(a);
}

static void gadm_fail(gadm *a, om_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
gadm_fail(gadm *a, om_status st, const char *fmt, ...)
{
    char msg[600];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    coord_answer_error(a->c, COORD_OP_OTHER, a->t0, a->reply, st, "%s", msg);
    gadm_free(a);
}

/* AddGroup's second step: AddShard of the group id at its primary's address. */
static void
gadm_add_to_ring(gadm *a)
{
    const Objmeta__AddGroupRequest *g = a->req->add_group;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddShardRequest as = OBJMETA__ADD_SHARD_REQUEST__INIT;

    as.id = g->id;
    as.addr = g->replicas[0]->addr;
    as.weight = g->weight;
    req.body_case = OBJMETA__REQUEST__BODY_ADD_SHARD;
    req.add_shard = &as;
    om_log(OM_LOG_INFO, "add-group: configuration written, adding to the ring id=%s addr=%s", g->id,
           as.addr);
    coord_mig_admin(a->c, &req, a->t0, a->reply); /* answers */
    gadm_free(a);
}

static void
gadm_txn_cb(const etcd_resp *r, void *arg)
{
    gadm *a = arg;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__GroupChangeResponse gc = OBJMETA__GROUP_CHANGE_RESPONSE__INIT;

    if (r->st != OM_OK) {
        /* a txn is never resent (etcd.h): its outcome is unknown */
        gadm_fail(a, r->st,
                  "group %s: the configuration write did not complete (%s); read it "
                  "with `objmeta admin groups` before trying again",
                  a->gid, r->err);
        return;
    }
    if (!r->succeeded) {
        gadm_fail(a, OM_E_PRECONDITION,
                  "group %s: the configuration changed concurrently (it was at revision %lld when "
                  "read); nothing written, retry",
                  a->gid, (long long)a->rev_read);
        return;
    }
    om_log(OM_LOG_INFO, "group configuration %s id=%s term=%" PRIu64 " primary=%s revision=%lld",
           a->remove ? "deleted" : "written", a->gid, a->written.term,
           a->written.primary ? a->written.primary : "", (long long)r->revision);
    if (a->then_ring) {
        gadm_add_to_ring(a);
        return;
    }
    gc.group = a->gid;
    gc.term = a->written.term;
    gc.primary = a->written.primary ? a->written.primary : "";
    gc.config_revision = a->remove ? 0 : r->revision;
    gc.deleted = a->remove;
    resp.body_case = a->body;
    resp.promote = &gc; /* every body of a change is a GroupChangeResponse (one union) */
    coord_answer(a->c, COORD_OP_OTHER, a->t0, a->reply, &resp);
    gadm_free(a);
}

static void
gadm_read_cb(const etcd_resp *r, void *arg)
{
    gadm *a = arg;
    coord_group_conf cur = {0}, *curp = NULL;
    om_buf json = OM_BUF_INIT;
    etcd_txn *t = NULL;
    char err[400] = "";
    om_status st;
    om_slice key = om_slice_from_str(a->key);

    if (r->st != OM_OK) {
        gadm_fail(a, r->st, "group %s: cannot read the configuration: %s", a->gid, r->err);
        return;
    }
    if (r->nkvs == 1) {
        st = coord_group_conf_decode(r->kvs[0].value, &cur, err, sizeof(err));
        if (st != OM_OK) {
            gadm_fail(a, OM_E_CORRUPT, "group %s: the stored configuration is unusable: %s", a->gid,
                      err);
            return;
        }
        curp = &cur;
        a->rev_read = r->kvs[0].mod_revision;
    }
    st = a->change(a, curp, &a->written, err, sizeof(err));
    if (st != OM_OK) {
        gadm_fail(a, st, "%s", err);
        goto out;
    }
    if (a->then_ring && curp != NULL) {
        gadm_add_to_ring(a); /* the same configuration is already there */
        goto out;
    }
    if ((st = etcd_txn_new(&t)) != OM_OK ||
        (!a->remove && (st = coord_group_conf_encode(&a->written, &json)) != OM_OK)) {
        gadm_fail(a, st, "group %s: out of memory", a->gid);
        goto out;
    }
    if (curp == NULL)
        etcd_txn_cmp(t, key, ETCD_CMP_CREATE, ETCD_EQ, 0);
    else
        etcd_txn_cmp(t, key, ETCD_CMP_MOD, ETCD_EQ, a->rev_read);
    if (a->remove)
        etcd_txn_delete(t, true, key, false);
    else
        etcd_txn_put(t, true, key, om_buf_slice(&json), 0);
    if ((st = etcd_txn_send(coord_cstate_etcd(a->c->cs), t, gadm_txn_cb, a)) != OM_OK)
        gadm_fail(a, st, "group %s: cannot send the transaction to etcd", a->gid);
out:
    etcd_txn_free(t);
    om_buf_free(&json);
    coord_group_conf_clear(&cur);
}

/* Read gid's configuration, then change() it and write by transaction. */
static void
gadm_start(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply, const char *gid,
           gadm_change_fn change, Objmeta__Response__BodyCase body)
{
    gadm *a = calloc(1, sizeof(*a));

    if (a == NULL || (a->req = coord_request_copy(req)) == NULL) {
        free(a);
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    a->c = c;
    a->reply = reply;
    a->t0 = t0;
    a->change = change;
    a->body = body;
    snprintf(a->gid, sizeof(a->gid), "%s", gid);
    snprintf(a->key, sizeof(a->key), "%s%s/config", coord_groups_dir(c), gid);
    a->remove = req->body_case == OBJMETA__REQUEST__BODY_REMOVE_GROUP;
    a->then_ring = req->body_case == OBJMETA__REQUEST__BODY_ADD_GROUP;
    if (etcd_range(coord_cstate_etcd(c->cs), om_slice_from_str(a->key), false, gadm_read_cb, a) !=
        OM_OK)
        gadm_fail(a, OM_E_UNAVAILABLE, "group %s: cannot send the read to etcd", gid);
}

/* ---- the changes ---- */

static om_status
conf_copy(const coord_group_conf *in, coord_group_conf *out)
{
    coord_group_conf g = {.term = in->term};

    g.id = strdup(in->id);
    g.primary = strdup(in->primary);
    g.replicas = calloc(COORD_GROUP_MAX_REPLICAS + 1, sizeof(*g.replicas));
    if (g.id == NULL || g.primary == NULL || g.replicas == NULL)
        goto nomem;
    for (size_t i = 0; i < in->nreplicas; i++) {
        g.replicas[i].id = strdup(in->replicas[i].id);
        g.replicas[i].addr = strdup(in->replicas[i].addr);
        g.replicas[i].in_sync = in->replicas[i].in_sync;
        g.nreplicas = i + 1;
        if (g.replicas[i].id == NULL || g.replicas[i].addr == NULL)
            goto nomem;
    }
    *out = g;
    return OM_OK;
nomem:
    coord_group_conf_clear(&g);
    return OM_ERR(OM_E_NOMEM);
}

static om_status
change_add_group(gadm *a, const coord_group_conf *cur, coord_group_conf *out, char *err,
                 size_t errlen)
{
    const Objmeta__AddGroupRequest *r = a->req->add_group;
    coord_replica reps[COORD_GROUP_MAX_REPLICAS];
    coord_group_conf g = {.term = 1};

    if (cur != NULL) {
        bool same = cur->nreplicas == r->n_replicas;
        for (size_t i = 0; same && i < r->n_replicas; i++) {
            const coord_replica *x = coord_group_replica(cur, r->replicas[i]->id);
            same = x != NULL && strcmp(x->addr, r->replicas[i]->addr) == 0;
        }
        if (!same)
            return om_err_invalid(err, errlen,
                                  "add-group: group %s already exists with other replicas "
                                  "(term %" PRIu64 ", primary %s); see `objmeta admin groups`",
                                  a->gid, cur->term, cur->primary);
        return conf_copy(cur, out);
    }
    OM_ASSERT_ALWAYS(r->n_replicas >= 1 &&
                     r->n_replicas <= COORD_GROUP_MAX_REPLICAS); /* gadm_check_add */
    /* the request's replicas as a configuration (borrowed), then one copy of it */
    g.id = r->id;
    g.primary = r->replicas[0]->id;
    g.replicas = reps;
    g.nreplicas = r->n_replicas;
    for (size_t i = 0; i < r->n_replicas; i++)
        reps[i] = (coord_replica){r->replicas[i]->id, r->replicas[i]->addr, true};
    return conf_copy(&g, out);
}

static om_status
change_need(gadm *a, const coord_group_conf *cur, char *err, size_t errlen)
{
    if (cur == NULL) {
        om_errf(err, errlen, "group %s: no such replica group (no configuration in etcd)", a->gid);
        return OM_E_NOTFOUND;
    }
    return OM_OK;
}

static om_status
change_promote(gadm *a, const coord_group_conf *cur, coord_group_conf *out, char *err,
               size_t errlen)
{
    const char *x = a->req->promote->replica;
    const coord_replica *r;

    OM_TRY(change_need(a, cur, err, errlen));
    r = coord_group_replica(cur, x);
    if (r == NULL) {
        om_errf(err, errlen, "promote: group %s has no replica %s", a->gid, x);
        return OM_E_NOTFOUND;
    }
    if (strcmp(cur->primary, x) == 0)
        return om_err_invalid(err, errlen,
                              "promote: %s is already the primary of group %s (term "
                              "%" PRIu64 ")",
                              x, a->gid, cur->term);
    if (!r->in_sync) {
        om_errf(err, errlen,
                "promote: replica %s of group %s is not in the in-sync set: it may lack "
                "acknowledged writes; wait until its primary adds it",
                x, a->gid);
        return OM_E_PRECONDITION;
    }
    OM_TRY(conf_copy(cur, out));
    out->term = cur->term + 1;
    free(out->primary);
    out->primary = strdup(x);
    return out->primary != NULL ? OM_OK : OM_ERR(OM_E_NOMEM);
}

static om_status
change_add_replica(gadm *a, const coord_group_conf *cur, coord_group_conf *out, char *err,
                   size_t errlen)
{
    const Objmeta__ReplicaSpec *n = a->req->add_replica->replica;
    coord_replica *r;

    OM_TRY(change_need(a, cur, err, errlen));
    if (coord_group_replica(cur, n->id) != NULL)
        return om_err_invalid(err, errlen, "add-replica: group %s already has a replica %s", a->gid,
                              n->id);
    for (size_t i = 0; i < cur->nreplicas; i++)
        if (strcmp(cur->replicas[i].addr, n->addr) == 0)
            return om_err_invalid(err, errlen, "add-replica: %s is already replica %s of group %s",
                                  n->addr, cur->replicas[i].id, a->gid);
    if (cur->nreplicas >= COORD_GROUP_MAX_REPLICAS)
        return om_err_invalid(err, errlen, "add-replica: group %s already has %d replicas", a->gid,
                              COORD_GROUP_MAX_REPLICAS);
    OM_TRY(conf_copy(cur, out));
    r = &out->replicas[out->nreplicas++];
    r->id = strdup(n->id);
    r->addr = strdup(n->addr);
    r->in_sync = false; /* its primary adds it once it has caught up */
    return r->id != NULL && r->addr != NULL ? OM_OK : OM_ERR(OM_E_NOMEM);
}

static om_status
change_remove_replica(gadm *a, const coord_group_conf *cur, coord_group_conf *out, char *err,
                      size_t errlen)
{
    const char *x = a->req->remove_replica->replica;
    size_t k = 0;

    OM_TRY(change_need(a, cur, err, errlen));
    if (coord_group_replica(cur, x) == NULL) {
        om_errf(err, errlen, "remove-replica: group %s has no replica %s", a->gid, x);
        return OM_E_NOTFOUND;
    }
    if (strcmp(cur->primary, x) == 0) {
        om_errf(err, errlen,
                "remove-replica: %s is the primary of group %s; promote another replica first", x,
                a->gid);
        return OM_E_PRECONDITION;
    }
    OM_TRY(conf_copy(cur, out));
    /* out of in_sync and replicas in the same write */
    for (size_t i = 0; i < out->nreplicas; i++) {
        if (strcmp(out->replicas[i].id, x) == 0) {
            free(out->replicas[i].id);
            free(out->replicas[i].addr);
            continue;
        }
        out->replicas[k++] = out->replicas[i];
    }
    out->nreplicas = k;
    return OM_OK;
}

static om_status
change_remove_group(gadm *a, const coord_group_conf *cur, coord_group_conf *out, char *err,
                    size_t errlen)
{
    OM_TRY(change_need(a, cur, err, errlen));
    return conf_copy(cur, out);
}

/* ---- asking the replicas (Groups: Ping; Verify: Digest) ---- */

typedef struct rq_set rq_set;

typedef struct rq_one {
    rq_set *set;
    rpc_client *cl;
    char gid[RING_ID_MAX + 1];
    char id[RING_ID_MAX + 1];
    char addr[RING_ADDR_MAX + 1];
    char role[16];
    bool in_sync;
    bool done;
    char err[300];
    /* a copy of what the answer brought: Verify's DigestResponse, Groups' ReplicationState */
    ProtobufCMessage *got;
} rq_one;

struct rq_set {
    coord *c;
    rpc_reply *reply;
    uint64_t t0;
    bool verify;
    char gid[RING_ID_MAX + 1];
    size_t n, left;
    rq_one *v;
};

static void
rq_free_client(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rpc_client_free(arg);
}

static void
rq_set_free(rq_set *s)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i].got != NULL)
            protobuf_c_message_free_unpacked(s->v[i].got, NULL);
    free(s->v);
    free(s);
}

/* The primary's account of the backup at addr in group gid (NULL: the primary did not answer). */
static const Objmeta__BackupState *
rq_backup_state(const rq_set *s, const char *gid, const char *addr)
{
    for (size_t i = 0; i < s->n; i++) {
        const Objmeta__ReplicationState *rs = (const Objmeta__ReplicationState *)s->v[i].got;
        if (rs == NULL || strcmp(s->v[i].gid, gid) != 0 || strcmp(rs->role, "primary") != 0)
            continue;
        for (size_t j = 0; j < rs->n_backups; j++)
            if (strcmp(rs->backups[j]->addr, addr) == 0)
                return rs->backups[j];
    }
    return NULL;
}

/*
 * One replica's line: the configuration's role and in-sync flag, its own
 * index, and the primary's account of it (lag, catch-up): the state is
 * "down" (no answer), "primary", "catching-up", "in-sync" or "out-of-sync".
 */
static void
rq_replica_status(const rq_set *s, const rq_one *o, Objmeta__ReplicaStatus *rs)
{
    const Objmeta__ReplicationState *own = (const Objmeta__ReplicationState *)o->got;
    const Objmeta__BackupState *b = rq_backup_state(s, o->gid, o->addr);

    objmeta__replica_status__init(rs);
    rs->id = (char *)o->id;
    rs->addr = (char *)o->addr;
    rs->role = (char *)o->role;
    rs->in_sync = o->in_sync;
    rs->reachable = o->err[0] == '\0';
    rs->error = (char *)o->err;
    rs->index = own != NULL ? own->index : 0;
    if (b != NULL) {
        rs->lag_records = b->lag_records;
        rs->lag_bytes = b->lag_bytes;
        rs->catch_up_bytes = b->catch_up_bytes;
        rs->catch_up_total = b->catch_up_total;
    }
    if (!rs->reachable)
        rs->state = "down";
    else if (strcmp(o->role, "primary") == 0)
        rs->state = "primary";
    else if (b != NULL && b->catching_up)
        rs->state = "catching-up";
    else
        rs->state = o->in_sync ? "in-sync" : "out-of-sync";
}

/* Groups: every configured group, its replicas as asked. */
static void
rq_answer_groups(rq_set *s)
{
    coord *c = s->c;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__GroupsResponse gr = OBJMETA__GROUPS_RESPONSE__INIT;
    size_t ng = coord_groups_count(c), k = 0;
    Objmeta__GroupStatus *gs = calloc(ng ? ng : 1, sizeof(*gs));
    Objmeta__GroupStatus **gp = calloc(ng ? ng : 1, sizeof(*gp));
    Objmeta__ReplicaStatus *rs = calloc(s->n ? s->n : 1, sizeof(*rs));
    Objmeta__ReplicaStatus **rp = calloc(s->n ? s->n : 1, sizeof(*rp));
    size_t ri = 0;

    if (gs == NULL || gp == NULL || rs == NULL || rp == NULL) {
        coord_answer_error(c, COORD_OP_OTHER, s->t0, s->reply, OM_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < ng; i++) {
        const coord_group *g = coord_group_at(c, i);
        size_t idx;

        if (!g->have_config)
            continue;
        objmeta__group_status__init(&gs[k]);
        gs[k].id = g->conf.id;
        gs[k].term = g->conf.term;
        gs[k].primary = g->conf.primary;
        gs[k].config_revision = g->config_rev;
        gs[k].leader_present = g->leader_present;
        gs[k].leader = (char *)g->leader;
        gs[k].in_ring = ring_find(c->ring, g->conf.id, &idx) == OM_OK;
        gs[k].primary_changes = g->primary_changes;
        gs[k].replicas = &rp[ri];
        for (size_t j = 0; j < s->n; j++) {
            rq_one *o = &s->v[j];
            if (strcmp(o->gid, g->conf.id) != 0)
                continue;
            rq_replica_status(s, o, &rs[ri]);
            rp[ri] = &rs[ri];
            ri++;
            gs[k].n_replicas++;
        }
        gp[k] = &gs[k];
        k++;
    }
    gr.groups = gp;
    gr.n_groups = k;
    resp.body_case = OBJMETA__RESPONSE__BODY_GROUPS;
    resp.groups = &gr;
    coord_answer(c, COORD_OP_OTHER, s->t0, s->reply, &resp);
out:
    free(gs);
    free(gp);
    free(rs);
    free(rp);
}

/* Verify: every replica's digest (or its error). */
static void
rq_answer_verify(rq_set *s)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__VerifyResponse vr = OBJMETA__VERIFY_RESPONSE__INIT;
    Objmeta__ReplicaDigest *rd = calloc(s->n, sizeof(*rd));
    Objmeta__ReplicaDigest **rp = calloc(s->n, sizeof(*rp));

    if (rd == NULL || rp == NULL) {
        coord_answer_error(s->c, COORD_OP_OTHER, s->t0, s->reply, OM_E_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < s->n; i++) {
        objmeta__replica_digest__init(&rd[i]);
        rd[i].id = s->v[i].id;
        rd[i].addr = s->v[i].addr;
        rd[i].error = s->v[i].err;
        rd[i].digest = (Objmeta__DigestResponse *)s->v[i].got;
        rp[i] = &rd[i];
    }
    vr.group = s->gid;
    vr.replicas = rp;
    vr.n_replicas = s->n;
    resp.body_case = OBJMETA__RESPONSE__BODY_VERIFY;
    resp.verify = &vr;
    coord_answer(s->c, COORD_OP_OTHER, s->t0, s->reply, &resp);
out:
    free(rd);
    free(rp);
}

/* A copy of m that outlives the answer (NULL: out of memory). */
static ProtobufCMessage *
rq_copy(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    ProtobufCMessage *out = NULL;

    if (buf != NULL) {
        protobuf_c_message_pack(m, buf);
        out = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
    }
    free(buf);
    return out;
}

static void
rq_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    rq_one *o = arg;
    rq_set *s = o->set;

    o->done = true;
    if (st != OM_OK)
        snprintf(o->err, sizeof(o->err), "%s: %s", om_status_str(st), resp->message);
    else if (resp->status != OBJMETA__STATUS__OK)
        snprintf(o->err, sizeof(o->err), "%s: %s", rpc_proto_status_name(resp->status),
                 resp->message);
    else if (s->verify && resp->body_case == OBJMETA__RESPONSE__BODY_DIGEST) {
        if ((o->got = rq_copy(&resp->digest->base)) == NULL)
            snprintf(o->err, sizeof(o->err), "out of memory for the digest");
    } else if (s->verify) {
        snprintf(o->err, sizeof(o->err), "answered without a digest");
    } else if (resp->body_case == OBJMETA__RESPONSE__BODY_PING && resp->ping->replication != NULL) {
        o->got = rq_copy(&resp->ping->replication->base); /* NULL: shown without its state */
    }
    /* never free a client inside its own callback */
    event_base_once(s->c->base, -1, EV_TIMEOUT, rq_free_client, o->cl, NULL);
    o->cl = NULL;
    if (--s->left > 0)
        return;
    if (s->verify)
        rq_answer_verify(s);
    else
        rq_answer_groups(s);
    rq_set_free(s);
}

/* Send req to every replica of the set; answers when the last one is in. */
static void
rq_send(rq_set *s, const Objmeta__Request *req)
{
    rpc_client_opts co;

    rpc_client_opts_init(&co);
    co.connect_timeout_ms = s->c->opts.health_timeout_ms;
    co.max_frame = s->c->opts.max_frame;
    co.tls = s->c->tls_cli;
    s->left = s->n + 1; /* one for this loop: nothing answers before every call is out */
    for (size_t i = 0; i < s->n; i++) {
        rq_one *o = &s->v[i];
        uint32_t deadline = s->verify ? s->c->opts.shard_timeout_ms : s->c->opts.health_timeout_ms;

        o->set = s;
        if (rpc_client_new(s->c->base, o->addr, &co, &o->cl) != OM_OK) {
            snprintf(o->err, sizeof(o->err), "bad address");
            s->left--;
            continue;
        }
        if (rpc_client_call(o->cl, req, deadline, rq_cb, o) != OM_OK) {
            snprintf(o->err, sizeof(o->err), "cannot send the request");
            event_base_once(s->c->base, -1, EV_TIMEOUT, rq_free_client, o->cl, NULL);
            o->cl = NULL;
            s->left--;
        }
    }
    if (--s->left > 0)
        return;
    if (s->verify)
        rq_answer_verify(s);
    else
        rq_answer_groups(s);
    rq_set_free(s);
}

static rq_set *
rq_set_new(coord *c, uint64_t t0, rpc_reply *reply, size_t n)
{
    rq_set *s = calloc(1, sizeof(*s));

    if (s != NULL && (s->v = calloc(n ? n : 1, sizeof(*s->v))) == NULL) {
        free(s);
        s = NULL;
    }
    if (s == NULL) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_NOMEM, "out of memory");
        return NULL;
    }
    s->c = c;
    s->t0 = t0;
    s->reply = reply;
    return s;
}

static void
rq_add(rq_set *s, const coord_group *g, const coord_replica *r)
{
    rq_one *o = &s->v[s->n++];

    snprintf(o->gid, sizeof(o->gid), "%s", g->conf.id);
    snprintf(o->id, sizeof(o->id), "%s", r->id);
    snprintf(o->addr, sizeof(o->addr), "%s", r->addr);
    snprintf(o->role, sizeof(o->role), "%s",
             strcmp(r->id, g->conf.primary) == 0 ? "primary" : "backup");
    o->in_sync = r->in_sync;
}

static void
gadm_groups(coord *c, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest pq = OBJMETA__PING_REQUEST__INIT;
    size_t n = 0;
    rq_set *s;

    pq.now = true; /* a primary whose writes wait for a stuck backup still answers */
    for (size_t i = 0; i < coord_groups_count(c); i++)
        n += coord_group_at(c, i)->have_config ? coord_group_at(c, i)->conf.nreplicas : 0;
    if ((s = rq_set_new(c, t0, reply, n)) == NULL)
        return;
    for (size_t i = 0; i < coord_groups_count(c); i++) {
        const coord_group *g = coord_group_at(c, i);
        for (size_t j = 0; g->have_config && j < g->conf.nreplicas; j++)
            rq_add(s, g, &g->conf.replicas[j]);
    }
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &pq;
    rq_send(s, &req);
}

static void
gadm_verify(coord *c, const Objmeta__VerifyRequest *v, uint64_t t0, rpc_reply *reply)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__DigestRequest dq = OBJMETA__DIGEST_REQUEST__INIT;
    Objmeta__HashRange *hr = NULL, **hp = NULL;
    const coord_group *g = coord_group_find(c, v->group);
    uint32_t n = v->ranges ? v->ranges : VERIFY_DEFAULT_RANGES;
    uint64_t step;
    rq_set *s;

    if (g == NULL || !g->have_config) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_NOTFOUND,
                           "verify: no replica group %s (no configuration in etcd); for static "
                           "groups use verify --shards",
                           v->group);
        return;
    }
    if (n > VERIFY_MAX_RANGES) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID,
                           "verify.ranges: %u is above %u", n, VERIFY_MAX_RANGES);
        return;
    }
    hr = calloc(n, sizeof(*hr));
    hp = calloc(n, sizeof(*hp));
    if (hr == NULL || hp == NULL || (s = rq_set_new(c, t0, reply, g->conf.nreplicas)) == NULL) {
        if (hr == NULL || hp == NULL)
            coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_NOMEM, "out of memory");
        free(hr);
        free(hp);
        return;
    }
    /* n ranges of equal width but the last, which runs to 2^64 (end 0) */
    step = UINT64_MAX / n;
    for (uint32_t i = 0; i < n; i++) {
        objmeta__hash_range__init(&hr[i]);
        hr[i].start = (uint64_t)i * step;
        hr[i].end = i + 1 < n ? (uint64_t)(i + 1) * step : 0;
        hp[i] = &hr[i];
    }
    s->verify = true;
    snprintf(s->gid, sizeof(s->gid), "%s", g->conf.id);
    for (size_t j = 0; j < g->conf.nreplicas; j++)
        rq_add(s, g, &g->conf.replicas[j]);
    dq.ranges = hp;
    dq.n_ranges = n;
    req.body_case = OBJMETA__REQUEST__BODY_DIGEST;
    req.digest = &dq;
    rq_send(s, &req); /* packs req before returning */
    free(hr);
    free(hp);
}

/* ---- the requests ---- */

static bool
gadm_in_rings(const coord *c, const char *id)
{
    size_t idx;

    return ring_find(c->ring, id, &idx) == OM_OK ||
           (c->pending != NULL && ring_find(c->pending, id, &idx) == OM_OK);
}

static om_status
gadm_check_add(const coord *c, const Objmeta__AddGroupRequest *r, char *err, size_t errlen)
{
    char field[64];

    if (!gadm_id_ok(r->id))
        return om_err_invalid(
            err, errlen, "add_group.id: '%s' must be 1-%u bytes of letters, digits and . _ : -",
            r->id, RING_ID_MAX);
    if (r->n_replicas < 1 || r->n_replicas > COORD_GROUP_MAX_REPLICAS)
        return om_err_invalid(err, errlen, "add_group.replicas: %zu replicas, want 1..%d",
                              r->n_replicas, COORD_GROUP_MAX_REPLICAS);
    for (size_t i = 0; i < r->n_replicas; i++) {
        snprintf(field, sizeof(field), "add_group.replicas[%zu]", i);
        OM_TRY(gadm_check_replica(r->replicas[i], field, err, errlen));
        for (size_t j = 0; j < i; j++)
            if (strcmp(r->replicas[i]->id, r->replicas[j]->id) == 0 ||
                strcmp(r->replicas[i]->addr, r->replicas[j]->addr) == 0)
                return om_err_invalid(err, errlen,
                                      "add_group.replicas[%zu]: id or address repeats "
                                      "replicas[%zu]",
                                      i, j);
    }
    if (gadm_in_rings(c, r->id))
        return om_err_invalid(err, errlen, "add-group: %s is already a ring member", r->id);
    return OM_OK;
}

void
coord_group_admin(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    char err[400];
    const char *gid = NULL;

    if (c->groups == NULL) {
        coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID,
                           "replica groups need the etcd cluster state (objmeta-coord --etcd); "
                           "this coordinator keeps its ring in %s",
                           coord_cstate_where(c->cs));
        return;
    }
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_ADD_GROUP:
        if (coord_leader_forward(c, req, t0, reply))
            return; /* a follower: the ring change is the leader's */
        if (gadm_check_add(c, req->add_group, err, sizeof(err)) != OM_OK)
            break;
        gadm_start(c, req, t0, reply, req->add_group->id, change_add_group,
                   OBJMETA__RESPONSE__BODY_ADD_SHARD);
        return;
    case OBJMETA__REQUEST__BODY_REMOVE_GROUP:
        gid = req->remove_group->id;
        if (coord_leader_forward(c, req, t0, reply))
            return;
        if (gadm_in_rings(c, gid)) {
            Objmeta__Request rq = OBJMETA__REQUEST__INIT;
            Objmeta__RemoveShardRequest rs = OBJMETA__REMOVE_SHARD_REQUEST__INIT;

            /* first out of the ring (its ranges move away); the configuration goes after */
            rs.id = (char *)gid;
            rq.body_case = OBJMETA__REQUEST__BODY_REMOVE_SHARD;
            rq.remove_shard = &rs;
            coord_mig_admin(c, &rq, t0, reply);
            return;
        }
        gadm_start(c, req, t0, reply, gid, change_remove_group,
                   OBJMETA__RESPONSE__BODY_REMOVE_GROUP);
        return;
    case OBJMETA__REQUEST__BODY_PROMOTE:
        if (!gadm_pair_ok("promote", req->promote->group, req->promote->replica, err, sizeof(err)))
            break;
        gadm_start(c, req, t0, reply, req->promote->group, change_promote,
                   OBJMETA__RESPONSE__BODY_PROMOTE);
        return;
    case OBJMETA__REQUEST__BODY_ADD_REPLICA:
        if (!gadm_id_ok(req->add_replica->group)) {
            om_errf(err, sizeof(err), "add_replica.group: '%s' is not a group id",
                    req->add_replica->group);
            break;
        }
        if (gadm_check_replica(req->add_replica->replica, "add_replica.replica", err,
                               sizeof(err)) != OM_OK)
            break;
        gadm_start(c, req, t0, reply, req->add_replica->group, change_add_replica,
                   OBJMETA__RESPONSE__BODY_ADD_REPLICA);
        return;
    case OBJMETA__REQUEST__BODY_REMOVE_REPLICA:
        if (!gadm_pair_ok("remove-replica", req->remove_replica->group,
                          req->remove_replica->replica, err, sizeof(err)))
            break;
        gadm_start(c, req, t0, reply, req->remove_replica->group, change_remove_replica,
                   OBJMETA__RESPONSE__BODY_REMOVE_REPLICA);
        return;
    case OBJMETA__REQUEST__BODY_GROUPS:
        gadm_groups(c, t0, reply);
        return;
    case OBJMETA__REQUEST__BODY_VERIFY:
        gadm_verify(c, req->verify, t0, reply);
        return;
    default:
        om_errf(err, sizeof(err), "not a replica group request");
        break;
    }
    coord_answer_error(c, COORD_OP_OTHER, t0, reply, OM_E_INVALID, "%s", err);
}
