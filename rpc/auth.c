/*
 * rpc/auth.c -- roles: which credential may ask for which operation.
 *
 * Three roles (README.md, "Security"):
 *
 *   client  the data operations (Store, Retrieve, Head, Exists, Delete,
 *           List) and Ping;
 *   admin   the cluster's operator: ring and group changes, GetRing,
 *           RebalanceStatus, Stats;
 *   peer    what cluster members say to each other: SetRing, MigrateScan,
 *           ApplyRecords, Compact, and a Store or Delete carrying a
 *           forced_version (a migration forward: the receiver takes the
 *           version as given, so a client must never choose it).
 *
 * A connection holds a set of roles, granted by its transport when it is
 * accepted (rpc_server_opts.plaintext_roles for a plaintext listener) and
 * never widened by the request itself. The server looks every decoded
 * request up in the one table below before dispatch (conn.c), so handlers
 * of shard and coordinator never see an operation the connection may not
 * ask for: a connection without any role gets UNAUTHENTICATED, one whose
 * roles do not include the operation's gets PERMISSION_DENIED, and the
 * message names the operation and the role it needs.
 *
 * A client token (AuthRequest, rpc/token.c) adds the client role, limited
 * to the token's bucket scopes (read: Retrieve, Head, Exists, List; write:
 * also Store, Delete) and its lifetime, unless the transport already
 * granted the client role without limits.
 *
 * Ping is open to any role (it is how every kind of caller checks that the
 * server is there); every other operation needs exactly its role. An
 * operation this table does not list needs the peer role: a field added to
 * the proto is closed until someone decides who may use it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "rpc/rpc_int.h"

typedef struct op_row {
    Objmeta__Request__BodyCase op;
    const char *name;
    uint32_t roles; /* any of these may ask */
} op_row;

static const op_row op_table[] = {
    {OBJMETA__REQUEST__BODY_STORE, "store", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_RETRIEVE, "retrieve", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_HEAD, "head", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_EXISTS, "exists", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_DELETE, "delete", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_LIST, "list", RPC_ROLE_CLIENT},
    {OBJMETA__REQUEST__BODY_PING, "ping", RPC_ROLES_ALL},
    {OBJMETA__REQUEST__BODY_STATS, "stats", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_GET_RING, "get_ring", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_ADD_SHARD, "add_shard", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_REMOVE_SHARD, "remove_shard", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_SET_WEIGHT, "set_weight", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_REBALANCE_STATUS, "rebalance_status", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_SET_RING, "set_ring", RPC_ROLE_PEER},
    {OBJMETA__REQUEST__BODY_CANCEL_REBALANCE, "cancel_rebalance", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_MIGRATE_SCAN, "migrate_scan", RPC_ROLE_PEER},
    {OBJMETA__REQUEST__BODY_APPLY_RECORDS, "apply_records", RPC_ROLE_PEER},
    {OBJMETA__REQUEST__BODY_COMPACT, "compact", RPC_ROLE_PEER},
    {OBJMETA__REQUEST__BODY_REPLICATE, "replicate", RPC_ROLE_PEER}, /* shard/REPLICATION.md */
    {OBJMETA__REQUEST__BODY_DIGEST, "digest", RPC_ROLE_PEER | RPC_ROLE_ADMIN}, /* shard/verify.c */
    /* replica groups (coordinator/groups.c) */
    {OBJMETA__REQUEST__BODY_ADD_GROUP, "add_group", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_REMOVE_GROUP, "remove_group", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_GROUPS, "groups", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_PROMOTE, "promote", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_ADD_REPLICA, "add_replica", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_REMOVE_REPLICA, "remove_replica", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_VERIFY, "verify", RPC_ROLE_ADMIN},
    {OBJMETA__REQUEST__BODY_AUTH, "auth", RPC_ROLES_ALL}, /* answered by conn.c before the check */
};

#define OP_ROWS (sizeof(op_table) / sizeof(op_table[0]))

static const op_row *
op_find(Objmeta__Request__BodyCase op)
{
    for (size_t i = 0; i < OP_ROWS; i++)
        if (op_table[i].op == op)
            return &op_table[i];
    return NULL;
}

/* A Store or Delete with forced_version is a migration forward (peer only). */
static bool
request_is_forced(const Objmeta__Request *req)
{
    if (req->body_case == OBJMETA__REQUEST__BODY_STORE && req->store != NULL)
        return req->store->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION;
    if (req->body_case == OBJMETA__REQUEST__BODY_DELETE && req->delete_ != NULL)
        return req->delete_->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION;
    return false;
}

uint32_t
rpc_request_roles(const Objmeta__Request *req)
{
    const op_row *r = op_find(req->body_case);

    if (r == NULL || request_is_forced(req))
        return RPC_ROLE_PEER;
    return r->roles;
}

const char *
rpc_request_op_name(const Objmeta__Request *req)
{
    const op_row *r = op_find(req->body_case);

    return r != NULL ? r->name : "unknown";
}

static const struct {
    const char *name;
    uint32_t bit;
} role_names[] = {
    {"client", RPC_ROLE_CLIENT},
    {"admin", RPC_ROLE_ADMIN},
    {"peer", RPC_ROLE_PEER},
};

om_status
rpc_roles_parse(const char *s, uint32_t *out, char *err, size_t errlen)
{
    uint32_t m = 0;

    if (strcmp(s, "auto") == 0) {
        *out = RPC_ROLES_AUTO;
        return OM_OK;
    }
    if (strcmp(s, "none") == 0 || s[0] == '\0') {
        *out = 0;
        return OM_OK;
    }
    while (*s != '\0') {
        size_t n = strcspn(s, ",");
        bool found = false;
        for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
            if (strlen(role_names[i].name) == n && strncasecmp(s, role_names[i].name, n) == 0) {
                m |= role_names[i].bit;
                found = true;
            }
        }
        if (!found)
            return om_err_invalid(err, errlen,
                                  "roles: unknown role \"%.*s\" (client, admin, peer, none, auto)",
                                  (int)n, s);
        s += n;
        if (*s == ',')
            s++;
    }
    *out = m;
    return OM_OK;
}

void
rpc_roles_format(uint32_t roles, char *buf, size_t cap)
{
    size_t off = 0;

    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(role_names) / sizeof(role_names[0]); i++) {
        if (!(roles & role_names[i].bit))
            continue;
        int k = snprintf(buf + off, cap - off, "%s%s", off ? "," : "", role_names[i].name);
        if (k < 0 || (size_t)k >= cap - off)
            return;
        off += (size_t)k;
    }
    if (off == 0)
        snprintf(buf, cap, "none");
}

/* The bucket of a data operation and whether it writes; NULL for other operations. */
static const char *
request_bucket(const Objmeta__Request *req, bool *write)
{
    *write = false;
    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE:
        *write = true;
        return req->store ? req->store->bucket : NULL;
    case OBJMETA__REQUEST__BODY_DELETE:
        *write = true;
        return req->delete_ ? req->delete_->bucket : NULL;
    case OBJMETA__REQUEST__BODY_RETRIEVE:
        return req->retrieve ? req->retrieve->bucket : NULL;
    case OBJMETA__REQUEST__BODY_HEAD:
        return req->head ? req->head->bucket : NULL;
    case OBJMETA__REQUEST__BODY_EXISTS:
        return req->exists ? req->exists->bucket : NULL;
    case OBJMETA__REQUEST__BODY_LIST:
        return req->list ? req->list->bucket : NULL;
    default:
        return NULL;
    }
}

om_status
rpc_auth_check(const rpc_conn *c, const Objmeta__Request *req, char *err, size_t errlen)
{
    uint32_t need = rpc_request_roles(req), roles = c->roles;
    char want[32], have[32];

    if (roles & need) {
        /* a client role that only a token gave: the token's buckets, until it expires */
        const rpc_token *t = c->tok;
        bool write;
        const char *bucket;
        if (t == NULL || (c->base_roles & need) || !(need & RPC_ROLE_CLIENT))
            return OM_OK;
        if ((uint64_t)time(NULL) >= t->expires_s) {
            om_errf(err, errlen, "token of %s expired: authenticate again", t->subject);
            return OM_E_UNAUTHENTICATED;
        }
        if ((bucket = request_bucket(req, &write)) == NULL || rpc_token_allows(t, bucket, write))
            return OM_OK;
        om_errf(err, errlen, "%s: the token of %s grants no %s access to bucket \"%s\"",
                rpc_request_op_name(req), t->subject, write ? "write" : "read", bucket);
        return OM_E_PERMISSION;
    }
    rpc_roles_format(need, want, sizeof(want));
    if (roles == 0) {
        om_errf(err, errlen,
                "%s needs a credential (role %s); this connection has none: connect with TLS "
                "and a client certificate of the cluster CA, or authenticate with a token",
                rpc_request_op_name(req), want);
        return OM_E_UNAUTHENTICATED;
    }
    rpc_roles_format(roles, have, sizeof(have));
    om_errf(err, errlen, "%s%s needs the %s role; this connection's credential grants %s",
            rpc_request_op_name(req), request_is_forced(req) ? " with forced_version" : "", want,
            have);
    return OM_E_PERMISSION;
}

om_status
rpc_auth_token(rpc_conn *c, const Objmeta__AuthRequest *a, Objmeta__AuthResponse *out, char *err,
               size_t errlen)
{
    rpc_token *t;

    if (c->srv->keys == NULL) {
        om_errf(err, errlen, "auth: this server accepts no tokens (no token keys configured)");
        return OM_E_UNAUTHENTICATED;
    }
    t = malloc(sizeof(*t));
    if (t == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (rpc_token_verify(c->srv->keys, a->token, (uint64_t)time(NULL), t, err, errlen) != OM_OK) {
        free(t);
        return OM_E_UNAUTHENTICATED;
    }
    free(c->tok);
    c->tok = t;
    c->roles = c->base_roles | RPC_ROLE_CLIENT;
    out->subject = t->subject;
    out->expires_unix = t->expires_s;
    return OM_OK;
}
