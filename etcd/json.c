/*
 * etcd/json.c -- the JSON shapes of etcd's v3 gateway: bytes travel as
 * base64 strings, 64-bit integers as decimal strings (protobuf's JSON
 * mapping), and fields equal to their zero value are left out, so an absent
 * field reads as 0 or as empty bytes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd_int.h"
#include "util/base64.h"

bool
etcd_json_set_bytes(json_t *obj, const char *name, om_slice v)
{
    om_buf b = OM_BUF_INIT;
    bool ok = om_base64_encode(v, &b) == OM_OK &&
              json_object_set_new(obj, name, json_stringn(b.n ? (char *)b.p : "", b.n)) == 0;

    om_buf_free(&b);
    return ok;
}

bool
etcd_json_set_i64(json_t *obj, const char *name, int64_t v)
{
    char s[24];

    snprintf(s, sizeof(s), "%" PRId64, v);
    return json_object_set_new(obj, name, json_string(s)) == 0;
}

/*
 * The range_end of a prefix: the prefix with its last byte that is not 0xff
 * incremented and what follows dropped; "\0" (every key) when there is none.
 */
static bool
json_set_prefix_end(json_t *obj, om_slice key)
{
    om_buf end = OM_BUF_INIT;
    bool ok;
    size_t n = key.n;

    while (n > 0 && key.p[n - 1] == 0xff)
        n--;
    if (n == 0) {
        ok = etcd_json_set_bytes(obj, "range_end", om_slice_make("\0", 1));
    } else {
        ok = om_buf_append(&end, key.p, n) == OM_OK;
        if (ok) {
            end.p[n - 1]++;
            ok = etcd_json_set_bytes(obj, "range_end", om_buf_slice(&end));
        }
    }
    om_buf_free(&end);
    return ok;
}

json_t *
etcd_json_key(om_slice key, bool prefix)
{
    json_t *o = json_object();

    if (o == NULL || !etcd_json_set_bytes(o, "key", key) ||
        (prefix && !json_set_prefix_end(o, key))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

om_status
etcd_json_i64(const json_t *obj, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(obj, name);
    const char *s;
    char *end;
    long long x;

    if (v == NULL || json_is_null(v)) {
        *out = 0;
        return OM_OK;
    }
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return OM_OK;
    }
    if (!json_is_string(v))
        return OM_ERR(OM_E_CORRUPT);
    s = json_string_value(v);
    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return OM_ERR(OM_E_CORRUPT);
    *out = (int64_t)x;
    return OM_OK;
}

om_status
etcd_json_bytes(const json_t *obj, const char *name, om_arena *a, om_slice *out)
{
    const json_t *v = json_object_get(obj, name);
    om_buf b = OM_BUF_INIT;
    uint8_t *p;
    om_status st;

    if (v == NULL || json_is_null(v)) {
        *out = om_slice_make("", 0);
        return OM_OK;
    }
    if (!json_is_string(v))
        return OM_ERR(OM_E_CORRUPT);
    st = om_base64_decode(om_slice_make(json_string_value(v), json_string_length(v)), &b);
    if (st != OM_OK) {
        om_buf_free(&b);
        return st == OM_E_INVALID ? OM_ERR(OM_E_CORRUPT) : st;
    }
    p = om_arena_alloc(a, b.n + 1);
    if (p == NULL) {
        om_buf_free(&b);
        return OM_ERR(OM_E_NOMEM);
    }
    if (b.n > 0)
        memcpy(p, b.p, b.n);
    p[b.n] = 0; /* keys are often printed */
    *out = om_slice_make(p, b.n);
    om_buf_free(&b);
    return OM_OK;
}

om_status
etcd_json_kv(const json_t *obj, om_arena *a, etcd_kv *kv)
{
    if (!json_is_object(obj))
        return OM_ERR(OM_E_CORRUPT);
    OM_TRY(etcd_json_bytes(obj, "key", a, &kv->key));
    OM_TRY(etcd_json_bytes(obj, "value", a, &kv->value));
    OM_TRY(etcd_json_i64(obj, "create_revision", &kv->create_revision));
    OM_TRY(etcd_json_i64(obj, "mod_revision", &kv->mod_revision));
    OM_TRY(etcd_json_i64(obj, "version", &kv->version));
    return etcd_json_i64(obj, "lease", &kv->lease);
}

om_status
etcd_json_header(const json_t *obj, etcd_resp *r)
{
    const json_t *h = json_object_get(obj, "header");

    if (h == NULL)
        return OM_OK;
    if (!json_is_object(h))
        return OM_ERR(OM_E_CORRUPT);
    return etcd_json_i64(h, "revision", &r->revision);
}

om_status
etcd_json_array(const json_t *obj, const char *name, om_arena *a, size_t elem, const json_t **arr,
                void **out, size_t *n)
{
    const json_t *v = json_object_get(obj, name);

    *arr = v;
    *out = NULL;
    *n = 0;
    if (v == NULL)
        return OM_OK;
    if (!json_is_array(v))
        return OM_ERR(OM_E_CORRUPT);
    *n = json_array_size(v);
    if (*n == 0)
        return OM_OK;
    *out = om_arena_alloc(a, *n * elem);
    if (*out == NULL)
        return OM_ERR(OM_E_NOMEM);
    return OM_OK;
}

om_status
etcd_json_kvs(const json_t *obj, om_arena *a, etcd_resp *r)
{
    const json_t *more = json_object_get(obj, "more");
    const json_t *arr;
    void *mem;
    etcd_kv *kvs;
    size_t n;

    r->more = more != NULL && json_is_true(more);
    OM_TRY(etcd_json_array(obj, "kvs", a, sizeof(*kvs), &arr, &mem, &n));
    if (n == 0)
        return OM_OK;
    kvs = mem;
    for (size_t i = 0; i < n; i++)
        OM_TRY(etcd_json_kv(json_array_get(arr, i), a, &kvs[i]));
    r->kvs = kvs;
    r->nkvs = n;
    return OM_OK;
}
