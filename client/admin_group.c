/*
 * client/admin_group.c -- `objmeta admin` for replica groups: add-group,
 * remove-group, groups, promote, add-replica, remove-replica (the
 * coordinator's AddGroup ... RemoveReplica; coordinator/group_admin.c) and
 * verify.
 *
 * verify compares the replicas' Digests (shard/verify.c): per hash range,
 * the count and a sum of hashes of the live records. Through the
 * coordinator (--group G: it asks every replica of G's configuration) or
 * directly (--shards a,b,c: a static group, no etcd). Every range whose
 * digests differ is printed with each replica's count and digest; exit 0
 * when all replicas answered and agree, 7 when they differ, 4 when one did
 * not answer. Run it on a quiet group: a write racing the digests makes
 * them differ for that moment (the replication index each reports shows
 * it).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/admin_int.h"
#include "client/tool.h"
#include "util/clock.h"

#define VERIFY_MAX_REPLICAS 16
#define VERIFY_DEFAULT_RANGES 64u

static const char *const group_cmds[] = {"add-group",   "remove-group",   "groups", "promote",
                                         "add-replica", "remove-replica", "verify", NULL};

bool
admin_is_group_cmd(const char *cmd)
{
    for (size_t i = 0; group_cmds[i] != NULL; i++)
        if (strcmp(cmd, group_cmds[i]) == 0)
            return true;
    return false;
}

/* "ID@HOST:PORT" into spec (pointing into buf). */
static bool
parse_replica(char *buf, Objmeta__ReplicaSpec *spec)
{
    char *at = strchr(buf, '@');

    if (at == NULL || at == buf || at[1] == '\0')
        return false;
    *at = '\0';
    objmeta__replica_spec__init(spec);
    spec->id = buf;
    spec->addr = at + 1;
    return tool_check_addr(spec->addr) == A_OK;
}

static void
print_change(admin *a, const char *cmd, const Objmeta__GroupChangeResponse *g)
{
    if (a->json) {
        json_t *o = json_pack("{s:b,s:s,s:I,s:s,s:I,s:b}", "ok", 1, "group", g->group, "term",
                              (json_int_t)g->term, "primary", g->primary, "config_revision",
                              (json_int_t)g->config_revision, "deleted", g->deleted);
        json_dumpf(o, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(o);
    } else if (g->deleted) {
        printf("%s: group %s's configuration deleted\n", cmd, g->group);
    } else {
        printf("%s: group %s term %" PRIu64 " primary %s (configuration revision %" PRId64 ")\n",
               cmd, g->group, g->term, g->primary, g->config_revision);
    }
}

/* A configuration change (promote, add-replica, remove-replica, the last step of remove-group). */
static int
group_change(admin *a, const char *cmd, Objmeta__Request *req)
{
    Objmeta__Response *r = NULL;
    om_status st = admin_call(a, req, &r, cmd);
    const Objmeta__GroupChangeResponse *g;

    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    switch (r->body_case) {
    case OBJMETA__RESPONSE__BODY_PROMOTE:
    case OBJMETA__RESPONSE__BODY_ADD_REPLICA:
    case OBJMETA__RESPONSE__BODY_REMOVE_REPLICA:
    case OBJMETA__RESPONSE__BODY_REMOVE_GROUP:
        g = r->promote; /* one union: every change answers a GroupChangeResponse */
        print_change(a, cmd, g);
        rpc_response_free(r);
        return A_OK;
    default:
        fprintf(stderr, "objmeta admin: %s: the answer carries no group change\n", cmd);
        rpc_response_free(r);
        return A_OTHER;
    }
}

/* A ring change answer (add-group, remove-group's first step): print it, wait if asked. */
static int
group_ring_change(admin *a, const char *cmd, Objmeta__Response *r, bool wait)
{
    const Objmeta__RingChangeResponse *rc =
        r->body_case == OBJMETA__RESPONSE__BODY_ADD_SHARD      ? r->add_shard
        : r->body_case == OBJMETA__RESPONSE__BODY_REMOVE_SHARD ? r->remove_shard
                                                               : NULL;
    uint64_t to;

    if (rc == NULL) {
        fprintf(stderr, "objmeta admin: %s: the answer carries no ring change\n", cmd);
        return A_OTHER;
    }
    if (!a->json)
        printf("%s: ring epoch %" PRIu64 " -> %" PRIu64 ", %u hash ranges move\n", cmd,
               rc->from_epoch, rc->to_epoch, rc->moving_ranges);
    else if (!wait)
        printf("{\"ok\":true,\"from_epoch\":%" PRIu64 ",\"to_epoch\":%" PRIu64 "}\n",
               rc->from_epoch, rc->to_epoch);
    fflush(stdout);
    to = rc->to_epoch;
    return wait ? wait_change(a, to) : A_OK;
}

static int
cmd_add_group(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__AddGroupRequest ag = OBJMETA__ADD_GROUP_REQUEST__INIT;
    Objmeta__ReplicaSpec specs[VERIFY_MAX_REPLICAS], *sp[VERIFY_MAX_REPLICAS];
    Objmeta__Response *r = NULL;
    char *buf = strdup(a->replicas), *save = NULL;
    size_t n = 0;
    int rc;

    if (buf == NULL)
        return A_OTHER;
    for (char *tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        if (n == VERIFY_MAX_REPLICAS || !parse_replica(tok, &specs[n])) {
            free(buf);
            return admin_usage_error("--replicas wants ID@HOST:PORT,... (up to 5), at ", tok);
        }
        sp[n] = &specs[n];
        n++;
    }
    ag.id = (char *)a->id;
    ag.replicas = sp;
    ag.n_replicas = n;
    ag.weight = a->weight > 0 ? (uint32_t)a->weight : 0;
    req.body_case = OBJMETA__REQUEST__BODY_ADD_GROUP;
    req.add_group = &ag;
    om_status st = admin_call(a, &req, &r, "add-group");
    free(buf);
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    rc = group_ring_change(a, "add-group", r, a->wait);
    rpc_response_free(r);
    return rc;
}

static int
cmd_remove_group(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RemoveGroupRequest rg = OBJMETA__REMOVE_GROUP_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    om_status st;
    int rc;

    rg.id = (char *)a->id;
    req.body_case = OBJMETA__REQUEST__BODY_REMOVE_GROUP;
    req.remove_group = &rg;
    st = admin_call(a, &req, &r, "remove-group");
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    if (r->body_case == OBJMETA__RESPONSE__BODY_REMOVE_GROUP) {
        print_change(a, "remove-group", r->remove_group);
        rpc_response_free(r);
        return A_OK;
    }
    /* still a ring member: its ranges move away first, then the configuration goes */
    rc = group_ring_change(a, "remove-group", r, true);
    rpc_response_free(r);
    if (rc != A_OK)
        return rc;
    return group_change(a, "remove-group", &req);
}

static int
cmd_groups(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GroupsRequest gq = OBJMETA__GROUPS_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    json_t *arr = NULL;
    om_status st;

    req.body_case = OBJMETA__REQUEST__BODY_GROUPS;
    req.groups = &gq;
    st = admin_call(a, &req, &r, "groups");
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    if (r->body_case != OBJMETA__RESPONSE__BODY_GROUPS) {
        rpc_response_free(r);
        return A_OTHER;
    }
    if (a->json)
        arr = json_array();
    else
        printf("%-12s %-12s %-22s %-8s %-7s %-5s %-8s %-12s %-10s %s\n", "GROUP", "REPLICA", "ADDR",
               "ROLE", "IN-SYNC", "TERM", "INDEX", "STATE", "LAG", "LAG-BYTES");
    for (size_t i = 0; i < r->groups->n_groups; i++) {
        const Objmeta__GroupStatus *g = r->groups->groups[i];
        json_t *reps = a->json ? json_array() : NULL;

        for (size_t j = 0; j < g->n_replicas; j++) {
            const Objmeta__ReplicaStatus *x = g->replicas[j];
            if (a->json) {
                json_array_append_new(
                    reps,
                    json_pack("{s:s,s:s,s:s,s:b,s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:I}", "id", x->id,
                              "addr", x->addr, "role", x->role, "in_sync", x->in_sync, "reachable",
                              x->reachable, "error", x->error, "state", x->state, "index",
                              (json_int_t)x->index, "lag_records", (json_int_t)x->lag_records,
                              "lag_bytes", (json_int_t)x->lag_bytes, "catch_up_bytes",
                              (json_int_t)x->catch_up_bytes, "catch_up_total",
                              (json_int_t)x->catch_up_total));
                continue;
            }
            printf("%-12s %-12s %-22s %-8s %-7s %-5" PRIu64 " %-8" PRIu64 " %-12s %-10" PRIu64
                   " %" PRIu64,
                   g->id, x->id, x->addr, x->role, x->in_sync ? "yes" : "no", g->term, x->index,
                   x->state, x->lag_records, x->lag_bytes);
            if (x->catch_up_bytes > 0)
                printf(" (catch-up: %" PRIu64 " of about %" PRIu64 " bytes sent)",
                       x->catch_up_bytes, x->catch_up_total);
            if (!x->reachable)
                printf(" (%s)", x->error);
            printf("\n");
        }
        if (a->json) {
            json_array_append_new(
                arr, json_pack("{s:s,s:I,s:s,s:I,s:b,s:s,s:b,s:I,s:o}", "id", g->id, "term",
                               (json_int_t)g->term, "primary", g->primary, "config_revision",
                               (json_int_t)g->config_revision, "leader_present", g->leader_present,
                               "leader", g->leader, "in_ring", g->in_ring, "primary_changes",
                               (json_int_t)g->primary_changes, "replicas", reps));
        } else {
            printf("%-12s leader key: %s; %s the ring; primary changes seen: %" PRIu64 "\n", g->id,
                   g->leader_present ? g->leader : "absent (no primary holds the lease)",
                   g->in_ring ? "in" : "not in", g->primary_changes);
        }
    }
    if (a->json) {
        json_dumpf(arr, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(arr);
    } else if (r->groups->n_groups == 0) {
        printf("(no replica group has a configuration)\n");
    }
    rpc_response_free(r);
    return A_OK;
}

/* ---- verify ---- */

typedef struct vrep {
    char name[300];
    const Objmeta__DigestResponse *d; /* NULL: did not answer */
} vrep;

/* Compare the digests: print every range that differs; an exit code. */
static int
verify_compare(admin *a, const char *what, const vrep *v, size_t n)
{
    size_t nr = 0, differ = 0, missing = 0;
    const Objmeta__DigestResponse *ref = NULL;

    for (size_t i = 0; i < n; i++) {
        if (v[i].d == NULL) {
            missing++;
            continue;
        }
        if (ref == NULL)
            ref = v[i].d;
        if (v[i].d->n_ranges != ref->n_ranges) {
            fprintf(stderr, "objmeta admin: verify: %s answered %zu ranges, %zu asked\n", v[i].name,
                    v[i].d->n_ranges, ref->n_ranges);
            return A_OTHER;
        }
    }
    nr = ref != NULL ? ref->n_ranges : 0;
    for (size_t k = 0; k < nr; k++) {
        bool same = true;
        for (size_t i = 0; i < n; i++)
            if (v[i].d != NULL && (v[i].d->ranges[k]->digest != ref->ranges[k]->digest ||
                                   v[i].d->ranges[k]->records != ref->ranges[k]->records))
                same = false;
        if (same)
            continue;
        differ++;
        printf("range [%016" PRIx64 ", %016" PRIx64 ") differs:", ref->ranges[k]->range->start,
               ref->ranges[k]->range->end);
        for (size_t i = 0; i < n; i++)
            if (v[i].d != NULL)
                printf(" %s=%" PRIu64 " records/%016" PRIx64, v[i].name, v[i].d->ranges[k]->records,
                       v[i].d->ranges[k]->digest);
        printf("\n");
    }
    for (size_t i = 0; i < n; i++)
        if (v[i].d != NULL)
            printf("%s: replication term %" PRIu64 " index %" PRIu64 "\n", v[i].name,
                   v[i].d->replication_term, v[i].d->replication_index);
    if (differ > 0)
        printf("%s: %zu of %zu ranges differ\n", what, differ, nr);
    else if (missing == 0)
        printf("%s: %zu replicas identical over %zu ranges\n", what, n, nr);
    fflush(stdout);
    return missing > 0 ? A_UNAVAILABLE : differ > 0 ? A_DIFFER : A_OK;
}

static int
verify_group(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__VerifyRequest vq = OBJMETA__VERIFY_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    vrep v[VERIFY_MAX_REPLICAS];
    size_t n = 0;
    om_status st;
    int rc;

    vq.group = (char *)a->group;
    vq.ranges = (uint32_t)a->ranges;
    req.body_case = OBJMETA__REQUEST__BODY_VERIFY;
    req.verify = &vq;
    st = admin_call(a, &req, &r, "verify");
    if (st != OM_OK)
        return a->exit_code ? a->exit_code : admin_exit(st);
    if (r->body_case != OBJMETA__RESPONSE__BODY_VERIFY) {
        rpc_response_free(r);
        return A_OTHER;
    }
    for (size_t i = 0; i < r->verify->n_replicas && n < VERIFY_MAX_REPLICAS; i++, n++) {
        const Objmeta__ReplicaDigest *d = r->verify->replicas[i];
        snprintf(v[n].name, sizeof(v[n].name), "%s(%s)", d->id, d->addr);
        v[n].d = d->error[0] == '\0' ? d->digest : NULL;
        if (v[n].d == NULL)
            fprintf(stderr, "objmeta admin: verify: replica %s did not answer: %s\n", v[n].name,
                    d->error);
    }
    char what[200];
    snprintf(what, sizeof(what), "group %s", a->group);
    rc = verify_compare(a, what, v, n);
    rpc_response_free(r);
    return rc;
}

/* verify --shards: ask each address for its Digest directly. */
static int
verify_shards(admin *a)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__DigestRequest dq = OBJMETA__DIGEST_REQUEST__INIT;
    uint32_t nr = a->ranges > 0 ? (uint32_t)a->ranges : VERIFY_DEFAULT_RANGES;
    Objmeta__HashRange *hr = calloc(nr, sizeof(*hr));
    Objmeta__HashRange **hp = calloc(nr, sizeof(*hp));
    Objmeta__Response *resp[VERIFY_MAX_REPLICAS] = {NULL};
    vrep v[VERIFY_MAX_REPLICAS];
    const char *p = a->shards;
    uint64_t step = UINT64_MAX / nr;
    size_t n = 0;
    int rc;

    if (hr == NULL || hp == NULL) {
        free(hr);
        free(hp);
        return A_OTHER;
    }
    for (uint32_t i = 0; i < nr; i++) { /* as the coordinator splits (group_admin.c) */
        objmeta__hash_range__init(&hr[i]);
        hr[i].start = (uint64_t)i * step;
        hr[i].end = i + 1 < nr ? (uint64_t)(i + 1) * step : 0;
        hp[i] = &hr[i];
    }
    dq.ranges = hp;
    dq.n_ranges = nr;
    req.body_case = OBJMETA__REQUEST__BODY_DIGEST;
    req.digest = &dq;
    while (*p != '\0' && n < VERIFY_MAX_REPLICAS) {
        size_t len = strcspn(p, ",");
        rpc_sync_client *c = NULL;
        rpc_tls *tls = NULL;
        char why[256] = "";
        om_status st;

        snprintf(v[n].name, sizeof(v[n].name), "%.*s", (int)len, p);
        p += len + (p[len] == ',');
        if (len == 0)
            continue;
        v[n].d = NULL;
        st = omc_rpc_open(v[n].name, a->timeout_ms, a->cr, &c, &tls, why, sizeof(why));
        if (st == OM_OK)
            st = rpc_sync_client_call(c, &req, a->timeout_ms, &resp[n]);
        if (st == OM_OK && (st = rpc_response_status(resp[n])) == OM_OK &&
            resp[n]->body_case == OBJMETA__RESPONSE__BODY_DIGEST)
            v[n].d = resp[n]->digest;
        else
            fprintf(stderr, "objmeta admin: verify: %s did not answer: %s %s\n", v[n].name,
                    om_status_str(st),
                    resp[n] ? resp[n]->message
                    : c     ? rpc_sync_client_last_error(c)
                            : why);
        rpc_sync_client_close(c);
        rpc_tls_free(tls);
        n++;
    }
    rc = verify_compare(a, "shards", v, n);
    for (size_t i = 0; i < n; i++)
        rpc_response_free(resp[i]);
    free(hr);
    free(hp);
    return rc;
}

/* ---- dispatch ---- */

int
admin_group_run(admin *a, const char *cmd)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PromoteRequest pq = OBJMETA__PROMOTE_REQUEST__INIT;
    Objmeta__AddReplicaRequest aq = OBJMETA__ADD_REPLICA_REQUEST__INIT;
    Objmeta__RemoveReplicaRequest rq = OBJMETA__REMOVE_REPLICA_REQUEST__INIT;
    Objmeta__ReplicaSpec spec;
    char buf[600];
    bool need_group = strcmp(cmd, "promote") == 0 || strcmp(cmd, "add-replica") == 0 ||
                      strcmp(cmd, "remove-replica") == 0;

    if (a->shard_addr != NULL)
        return admin_usage_error(cmd, " takes no --addr (replicas are ID@HOST:PORT)");
    if (strcmp(cmd, "add-group") == 0) {
        if (a->id == NULL || a->replicas == NULL)
            return admin_usage_error("add-group needs --id G and --replicas ID@HOST:PORT,...",
                                     NULL);
        return cmd_add_group(a);
    }
    if (strcmp(cmd, "remove-group") == 0) {
        if (a->id == NULL)
            return admin_usage_error("remove-group needs --id G", NULL);
        return cmd_remove_group(a);
    }
    if (strcmp(cmd, "groups") == 0)
        return cmd_groups(a);
    if (strcmp(cmd, "verify") == 0) {
        if ((a->group == NULL) == (a->shards == NULL))
            return admin_usage_error("verify needs --group G or --shards HOST:PORT,...", NULL);
        return a->group != NULL ? verify_group(a) : verify_shards(a);
    }
    if (need_group && (a->group == NULL || a->replica == NULL))
        return admin_usage_error(cmd, " needs --group G and --replica X");
    if (strcmp(cmd, "promote") == 0) {
        pq.group = (char *)a->group;
        pq.replica = (char *)a->replica;
        req.body_case = OBJMETA__REQUEST__BODY_PROMOTE;
        req.promote = &pq;
    } else if (strcmp(cmd, "add-replica") == 0) {
        snprintf(buf, sizeof(buf), "%s", a->replica);
        if (!parse_replica(buf, &spec))
            return admin_usage_error("add-replica: --replica wants ID@HOST:PORT, not ", a->replica);
        aq.group = (char *)a->group;
        aq.replica = &spec;
        req.body_case = OBJMETA__REQUEST__BODY_ADD_REPLICA;
        req.add_replica = &aq;
    } else {
        rq.group = (char *)a->group;
        rq.replica = (char *)a->replica;
        req.body_case = OBJMETA__REQUEST__BODY_REMOVE_REPLICA;
        req.remove_replica = &rq;
    }
    return group_change(a, cmd, &req);
}
