/*
 * etcd/kv.c -- the key-value and lease calls: range, put, delete, txn,
 * lease grant / keep-alive / revoke. Each builds the gateway's JSON body
 * and names the parser for its answer; client.c does the rest.
 *
 * A transaction is built in a JSON object as the caller adds compares and
 * ops; the builder's first allocation failure is sticky and reported by
 * etcd_txn_send, so building needs no checks at every step.
 */
#include <stdlib.h>

#include "etcd/etcd_int.h"

/* ---- parsers ---- */

static om_status
parse_range(json_t *root, om_arena *a, etcd_resp *r)
{
    return etcd_json_kvs(root, a, r);
}

static om_status
parse_delete(json_t *root, om_arena *a, etcd_resp *r)
{
    return etcd_json_i64(root, "deleted", &r->deleted);
}

static om_status
parse_txn(json_t *root, om_arena *a, etcd_resp *r)
{
    const json_t *ok = json_object_get(root, "succeeded");
    const json_t *arr;
    void *mem;
    etcd_resp *ops;
    size_t n;

    r->succeeded = ok != NULL && json_is_true(ok);
    OM_TRY(etcd_json_array(root, "responses", a, sizeof(*ops), &arr, &mem, &n));
    if (n == 0)
        return OM_OK;
    ops = mem;
    for (size_t i = 0; i < n; i++) {
        json_t *op = json_array_get(arr, i);
        json_t *sub;

        ops[i] = (etcd_resp){.st = OM_OK, .err = ""};
        if (!json_is_object(op))
            return OM_ERR(OM_E_CORRUPT);
        if ((sub = json_object_get(op, "response_range")) != NULL)
            OM_TRY(parse_range(sub, a, &ops[i]));
        else if ((sub = json_object_get(op, "response_delete_range")) != NULL)
            OM_TRY(parse_delete(sub, a, &ops[i]));
        if (sub != NULL)
            OM_TRY(etcd_json_header(sub, &ops[i]));
    }
    r->ops = ops;
    r->nops = n;
    return OM_OK;
}

static om_status
parse_lease(json_t *root, om_arena *a, etcd_resp *r)
{
    OM_TRY(etcd_json_i64(root, "ID", &r->lease_id));
    OM_TRY(etcd_json_i64(root, "TTL", &r->ttl));
    /* a keep-alive of an unknown or expired lease answers TTL 0 */
    if (r->ttl <= 0)
        r->st = OM_E_NOTFOUND;
    return OM_OK;
}

/* ---- kv ---- */

om_status
etcd_range(etcd_client *c, om_slice key, bool prefix, etcd_cb cb, void *arg)
{
    return etcd_call(c, "/v3/kv/range", etcd_json_key(key, prefix), true, parse_range, cb, arg);
}

static json_t *
put_body(om_slice key, om_slice value, int64_t lease)
{
    json_t *o = etcd_json_key(key, false);

    if (o != NULL && (!etcd_json_set_bytes(o, "value", value) ||
                      (lease != 0 && !etcd_json_set_i64(o, "lease", lease)))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

om_status
etcd_put(etcd_client *c, om_slice key, om_slice value, int64_t lease, etcd_cb cb, void *arg)
{
    return etcd_call(c, "/v3/kv/put", put_body(key, value, lease), false, NULL, cb, arg);
}

om_status
etcd_delete(etcd_client *c, om_slice key, bool prefix, etcd_cb cb, void *arg)
{
    return etcd_call(c, "/v3/kv/deleterange", etcd_json_key(key, prefix), false, parse_delete, cb,
                     arg);
}

/* ---- transactions ---- */

struct etcd_txn {
    json_t *root; /* {"compare": [], "success": [], "failure": []} */
    bool failed;  /* sticky: an allocation failed while building */
};

om_status
etcd_txn_new(etcd_txn **out)
{
    etcd_txn *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return OM_ERR(OM_E_NOMEM);
    t->root = json_pack("{s:[], s:[], s:[]}", "compare", "success", "failure");
    if (t->root == NULL) {
        free(t);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = t;
    return OM_OK;
}

void
etcd_txn_free(etcd_txn *t)
{
    if (t == NULL)
        return;
    json_decref(t->root);
    free(t);
}

static void
txn_add(etcd_txn *t, const char *list, json_t *item)
{
    if (item == NULL || json_array_append_new(json_object_get(t->root, list), item) != 0)
        t->failed = true;
}

static const char *const cmp_ops[] = {"EQUAL", "NOT_EQUAL", "LESS", "GREATER"};

static json_t *
cmp_base(om_slice key, const char *target, etcd_cmp_op op)
{
    json_t *o = etcd_json_key(key, false);

    if (o != NULL && (json_object_set_new(o, "target", json_string(target)) != 0 ||
                      json_object_set_new(o, "result", json_string(cmp_ops[op])) != 0)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

void
etcd_txn_cmp(etcd_txn *t, om_slice key, etcd_target target, etcd_cmp_op op, int64_t v)
{
    static const char *const names[] = {"VALUE", "VERSION", "CREATE", "MOD", "LEASE"};
    static const char *const fields[] = {"value", "version", "create_revision", "mod_revision",
                                         "lease"};
    json_t *o;

    if (target == ETCD_CMP_VALUE) {
        t->failed = true; /* a programmer error: values compare through etcd_txn_cmp_value */
        return;
    }
    o = cmp_base(key, names[target], op);
    if (o != NULL && !etcd_json_set_i64(o, fields[target], v)) {
        json_decref(o);
        o = NULL;
    }
    txn_add(t, "compare", o);
}

void
etcd_txn_cmp_value(etcd_txn *t, om_slice key, etcd_cmp_op op, om_slice value)
{
    json_t *o = cmp_base(key, "VALUE", op);

    if (o != NULL && !etcd_json_set_bytes(o, "value", value)) {
        json_decref(o);
        o = NULL;
    }
    txn_add(t, "compare", o);
}

static void
txn_op(etcd_txn *t, bool on_success, const char *kind, json_t *req)
{
    json_t *op = req != NULL ? json_object() : NULL;

    if (op != NULL && json_object_set_new(op, kind, req) != 0) {
        json_decref(op);
        op = NULL;
    } else if (op == NULL) {
        json_decref(req);
    }
    txn_add(t, on_success ? "success" : "failure", op);
}

void
etcd_txn_put(etcd_txn *t, bool on_success, om_slice key, om_slice value, int64_t lease)
{
    txn_op(t, on_success, "request_put", put_body(key, value, lease));
}

void
etcd_txn_delete(etcd_txn *t, bool on_success, om_slice key, bool prefix)
{
    txn_op(t, on_success, "request_delete_range", etcd_json_key(key, prefix));
}

void
etcd_txn_range(etcd_txn *t, bool on_success, om_slice key, bool prefix)
{
    txn_op(t, on_success, "request_range", etcd_json_key(key, prefix));
}

om_status
etcd_txn_send(etcd_client *c, const etcd_txn *t, etcd_cb cb, void *arg)
{
    if (t->failed)
        return OM_ERR(OM_E_NOMEM);
    return etcd_call(c, "/v3/kv/txn", json_deep_copy(t->root), false, parse_txn, cb, arg);
}

/* ---- leases ---- */

static json_t *
lease_body(const char *name, int64_t v)
{
    json_t *o = json_object();

    if (o != NULL && !etcd_json_set_i64(o, name, v)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

om_status
etcd_lease_grant(etcd_client *c, int64_t ttl_s, etcd_cb cb, void *arg)
{
    if (ttl_s <= 0)
        return OM_ERR(OM_E_INVALID);
    return etcd_call(c, "/v3/lease/grant", lease_body("TTL", ttl_s), true, parse_lease, cb, arg);
}

om_status
etcd_lease_keepalive(etcd_client *c, int64_t id, etcd_cb cb, void *arg)
{
    return etcd_call(c, "/v3/lease/keepalive", lease_body("ID", id), true, parse_lease, cb, arg);
}

om_status
etcd_lease_revoke(etcd_client *c, int64_t id, etcd_cb cb, void *arg)
{
    return etcd_call(c, "/v3/lease/revoke", lease_body("ID", id), true, NULL, cb, arg);
}
