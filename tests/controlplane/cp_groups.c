/*
 * tests/controlplane/cp_groups.c -- the replica-group tests' coordinator
 * (cp_groups.h).
 */
#include "cp_groups.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd/etcd.h"
#include "it_util.h"

tu_proc *
cp_coord_start(const tu_etcd *e, const char *prefix, const char *shards, const char *const *more)
{
    char sarg[400], earg[300], parg[200];
    const char *extra[24] = {sarg,
                             earg,
                             parg,
                             "--lease-ttl=2s",
                             "--health-interval=100ms",
                             "--etcd-timeout=2s",
                             "--failover-wait=15s"};
    size_t n = 7;
    tu_proc_opts o = {.extra = extra};

    for (size_t i = 0; more != NULL && more[i] != NULL && n < 23; i++)
        extra[n++] = more[i];
    extra[n] = NULL;
    snprintf(sarg, sizeof(sarg), "--shards=%s", shards);
    snprintf(earg, sizeof(earg), "--etcd=%s", tu_etcd_endpoints(e));
    snprintf(parg, sizeof(parg), "--etcd-prefix=%s", prefix);
    return tu_proc_start("$OBJMETA_COORD", &o);
}

const char *
cp_coord_addr(const tu_proc *c)
{
    static char buf[64];

    snprintf(buf, sizeof(buf), "127.0.0.1:%d", tu_proc_port(c, "rpc"));
    return buf;
}

double
cp_coord_metric(const tu_proc *c, const char *series)
{
    char *body = NULL;
    double v = -1;
    const char *p;

    if (it_http_get(tu_proc_port(c, "http"), "/metrics", &body) == 200 && body != NULL &&
        (p = strstr(body, series)) != NULL)
        v = strtod(p + strlen(series), NULL); /* series starts with '\n': a value line */
    free(body);
    return v;
}

/* One etcd call on a client of its own: its status, and a range's first value. */
typedef struct ecall {
    bool done;
    om_status st;
    char *value;
} ecall;

static void
ecall_cb(const etcd_resp *r, void *arg)
{
    ecall *p = arg;

    p->done = true;
    p->st = r->st;
    if (r->st == OM_OK && r->nkvs > 0) {
        p->value = malloc(r->kvs[0].value.n + 1);
        ck_assert(p->value != NULL);
        memcpy(p->value, r->kvs[0].value.p, r->kvs[0].value.n);
        p->value[r->kvs[0].value.n] = '\0';
    }
}

/* op: 'p' put (value), 'd' delete, 'g' get. */
static char *
etcd_call(const tu_etcd *e, char op, const char *key, const char *value)
{
    struct event_base *base = event_base_new();
    etcd_client *cl = NULL;
    etcd_opts o;
    char err[256];
    ecall p = {0};
    om_status st;

    etcd_opts_init(&o);
    o.endpoints = tu_etcd_endpoints(e);
    ck_assert_msg(etcd_client_new(base, &o, err, sizeof(err), &cl) == OM_OK, "%s", err);
    if (op == 'p')
        st = etcd_put(cl, om_slice_from_str(key), om_slice_from_str(value), 0, ecall_cb, &p);
    else if (op == 'd')
        st = etcd_delete(cl, om_slice_from_str(key), false, ecall_cb, &p);
    else
        st = etcd_range(cl, om_slice_from_str(key), false, ecall_cb, &p);
    ck_assert_int_eq(st, OM_OK);
    while (!p.done)
        event_base_loop(base, EVLOOP_ONCE);
    ck_assert_msg(p.st == OM_OK, "etcd %c %s: %s", op, key, om_status_str(p.st));
    etcd_client_free(cl);
    event_base_free(base);
    return p.value;
}

void
cp_etcd_put(const tu_etcd *e, const char *key, const char *value)
{
    free(etcd_call(e, value != NULL ? 'p' : 'd', key, value));
}

char *
cp_etcd_get(const tu_etcd *e, const char *key)
{
    return etcd_call(e, 'g', key, NULL);
}
