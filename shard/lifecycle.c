/*
 * shard/lifecycle.c -- a shard's life: shard_open (the engine, then the
 * commit pipeline in sync mode, then the worker pool), shard_attach_loop
 * (the pipeline moves onto the rpc loop), shard_detach_loop and shard_close
 * (the same in reverse: every accepted request is answered before the
 * engine closes), and /healthz. The one file that sees every part of the
 * shard; nothing below it calls up into it.
 */
#define OM_LOG_MODULE "shard"
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "shard/metrics.h"
#include "shard/shard_int.h"
#include "util/log.h"

/* Requests the worker pool queues at most; beyond that they are answered BUSY. */
#define SHARD_POOL_QUEUE_MAX 65536

void
shard_opts_init(shard_opts *o)
{
    memset(o, 0, sizeof(*o));
    lsm_opts_init(&o->lsm);
    o->max_object_size = SHARD_DEFAULT_MAX_OBJECT;
    o->max_metadata_size = SHARD_DEFAULT_MAX_METADATA;
    o->metadata_max_depth = SHARD_DEFAULT_METADATA_DEPTH;
    o->workers = 8;
    o->max_list_bytes = 8u << 20;
    o->inline_reads = true;
}

om_status
shard_open(const char *dir, const shard_opts *opts, shard **out)
{
    shard *s = calloc(1, sizeof(*s));
    commit_ops ops;
    om_status st;

    if (s == NULL)
        return OM_ERR(OM_E_NOMEM);
    s->opts = *opts;
    if (s->opts.list_secret_len == 0 || s->opts.list_secret_len > sizeof(s->opts.list_secret)) {
        s->opts.list_secret_len = 32;
        if (getrandom(s->opts.list_secret, 32, 0) != 32) {
            free(s);
            return OM_ERR(OM_E_IO);
        }
    }
    s->id = strdup(opts->id ? opts->id : "");
    s->opts.id = s->id;
    if (s->opts.workers < 1)
        s->opts.workers = 1;
    shard_metrics_init(&s->metrics);
    atomic_init(&s->reads_anywhere, true);
    st = s->id != NULL ? shard_engine_open(s, dir) : OM_ERR(OM_E_NOMEM);
    if (st != OM_OK)
        goto fail;
    shard_commit_ops(s, &ops);
    st = commit_open(s->db, &ops, &s->commit);
    if (st == OM_OK)
        st = workq_open("shard-worker", s->opts.workers, SHARD_POOL_QUEUE_MAX, shard_pool_run, s,
                        &s->pool);
    if (st == OM_OK)
        st = shard_wreads_open(s);
    if (st != OM_OK) {
        workq_close(s->pool, NULL);
        commit_close(s->commit);
        shard_engine_close(s);
        goto fail;
    }
    *out = s;
    return OM_OK;
fail:
    free(s->id);
    free(s);
    return st;
}

om_status
shard_close(shard *s)
{
    om_status st;

    if (s == NULL)
        return OM_OK;
    commit_detach(s->commit);       /* answers every write, releases every held reply */
    workq_close(s->pool, NULL);     /* drains: every queued List and read is answered */
    workq_close(s->verify_q, NULL); /* drains: every queued Digest is answered */
    commit_close(s->commit);
    workq_close(s->wreads, NULL); /* no group is written after commit_close */
    st = shard_engine_close(s);
    free(s->id);
    free(s);
    return st;
}

om_status
shard_attach_loop(shard *s, struct event_base *base)
{
    return commit_attach(s->commit, base, s->opts.lsm.sync_mode);
}

void
shard_detach_loop(shard *s)
{
    commit_detach(s->commit);
}

om_status
shard_health(void *arg, om_buf *reason)
{
    shard *s = arg;
    om_status st = (om_status)atomic_load(&s->engine_error);

    if (st == OM_OK)
        st = commit_error(s->commit);
    if (st == OM_OK)
        return OM_OK;
    om_buf_printf(reason, "storage engine write failed (%s); writes are refused until restart\n",
                  om_status_str(st));
    return st;
}

void
shard_set_reads_anywhere(shard *s, bool on)
{
    atomic_store_explicit(&s->reads_anywhere, on, memory_order_release);
}
