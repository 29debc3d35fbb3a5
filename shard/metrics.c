/*
 * shard/metrics.c -- the shard's counters (metrics.h), the Stats answer and
 * the /metrics page. Stats and /metrics show the same engine statistics
 * from one list (stat_items), so the two cannot drift apart.
 */
#include "shard/metrics.h"

#include <stdio.h>
#include <string.h>

#include "shard/commit.h"
#include "shard/repl.h"
#include "shard/shard_int.h"
#include "util/workq.h"

void
shard_metrics_init(shard_metrics *m)
{
    for (int i = 0; i < SHARD_OP_COUNT_; i++)
        rpc_hist_init(&m->latency[i]);
}

void
shard_metrics_sent(void *arg, unsigned tag, unsigned status, uint64_t t0_ns, uint64_t now_ns)
{
    shard_metrics *m = &((shard *)arg)->metrics;
    shard_op op = (shard_op)tag;
    unsigned st = status < SHARD_NSTATUS ? status : (unsigned)OBJMETA__STATUS__INTERNAL;

    atomic_fetch_add_explicit(&m->answers[op][st], 1, memory_order_relaxed);
    rpc_hist_observe_ns(&m->latency[op], now_ns > t0_ns ? now_ns - t0_ns : 0);
}

typedef struct stat_item {
    const char *name;
    uint64_t value;
} stat_item;

/* The statistics Stats shows, names of computed ones written into names[]. */
static size_t
stat_items(shard *s, stat_item *v, size_t cap, char names[][48])
{
    lsm_stats ls;
    size_t n = 0;

    lsm_stats_get(s->db, &ls);
#define ADD(nm, val)                                                                               \
    do {                                                                                           \
        if (n < cap)                                                                               \
            v[n++] = (stat_item){(nm), (uint64_t)(val)};                                           \
    } while (0)
    ADD("lsm.memtable_bytes", ls.memtable_bytes);
    ADD("lsm.live_sst_bytes", ls.live_sst_bytes);
    ADD("lsm.user_bytes_written", ls.user_bytes_written);
    ADD("lsm.wal_bytes_written", ls.wal_bytes_written);
    ADD("lsm.flush_bytes_written", ls.flush_bytes_written);
    ADD("lsm.compaction_bytes_read", ls.compaction_bytes_read);
    ADD("lsm.compaction_bytes_written", ls.compaction_bytes_written);
    ADD("lsm.cache_hits", ls.cache_hits);
    ADD("lsm.cache_misses", ls.cache_misses);
    ADD("lsm.row_cache_hits", ls.row_cache_hits);
    ADD("lsm.block_cache_bytes", ls.block_cache_bytes);
    ADD("lsm.row_cache_bytes", ls.row_cache_bytes);
    ADD("lsm.mem_pool_bytes", ls.mem_pool_bytes);
    ADD("lsm.bloom_checks", ls.bloom_checks);
    ADD("lsm.bloom_useful", ls.bloom_useful);
    ADD("lsm.stall_micros", ls.stall_micros);
    ADD("lsm.wal_syncs", ls.wal_syncs);
    ADD("lsm.wal_synced_writes", ls.wal_synced_writes);
    ADD("lsm.flushes", ls.flushes);
    ADD("lsm.compactions", ls.compactions);
    ADD("lsm.last_sequence", ls.last_sequence);
    ADD("shard.writer_queue_waits", commit_queue_waits(s->commit));
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        snprintf(names[2 * l], 48, "lsm.level%d.files", l);
        snprintf(names[2 * l + 1], 48, "lsm.level%d.bytes", l);
        ADD(names[2 * l], ls.levels[l].files);
        ADD(names[2 * l + 1], ls.levels[l].bytes);
    }
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        uint64_t total = 0;
        for (int k = 0; k < SHARD_NSTATUS; k++)
            total += atomic_load_explicit(&s->metrics.answers[op][k], memory_order_relaxed);
        snprintf(names[2 * LSM_MAX_LEVELS + op], 48, "shard.requests.%s",
                 shard_op_name((shard_op)op));
        ADD(names[2 * LSM_MAX_LEVELS + op], total);
    }
#undef ADD
    return n;
}

om_status
shard_stats_build(shard *s, shard_stats_msg *m)
{
    stat_item items[SHARD_STATS_MAX];
    size_t n;

    objmeta__stats_response__init(&m->sr);
    m->text = OM_BUF_INIT;
    n = stat_items(s, items, SHARD_STATS_MAX, m->names);
    for (size_t i = 0; i < n; i++) {
        objmeta__stats_counter__init(&m->ctr[i]);
        m->ctr[i].name = (char *)items[i].name;
        m->ctr[i].value = items[i].value;
        m->ptr[i] = &m->ctr[i];
        OM_TRY(om_buf_printf(&m->text, "%-32s %llu\n", items[i].name,
                             (unsigned long long)items[i].value));
    }
    if (m->text.n == 0)
        OM_TRY(om_buf_printf(&m->text, "%s", ""));
    m->sr.counters = m->ptr;
    m->sr.n_counters = n;
    m->sr.text = (char *)m->text.p;
    return OM_OK;
}

void
shard_stats_fini(shard_stats_msg *m)
{
    om_buf_free(&m->text);
}

om_status
shard_render_metrics(shard *s, om_buf *out)
{
    stat_item items[SHARD_STATS_MAX];
    char names[2 * LSM_MAX_LEVELS + SHARD_OP_COUNT_][48];
    char labels[96];
    size_t n;

    OM_TRY(rpc_prom_header(out, "objmeta_shard_requests_total", "counter",
                           "Requests answered, by operation and status."));
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        for (int k = 0; k < SHARD_NSTATUS; k++) {
            uint64_t v = atomic_load_explicit(&s->metrics.answers[op][k], memory_order_relaxed);
            if (v == 0 && k != 0)
                continue;
            snprintf(labels, sizeof(labels), "op=\"%s\",status=\"%s\"", shard_op_name((shard_op)op),
                     rpc_proto_status_name((Objmeta__Status)k));
            OM_TRY(rpc_prom_value(out, "objmeta_shard_requests_total", labels, (double)v));
        }
    }
    OM_TRY(rpc_prom_header(out, "objmeta_shard_request_duration_seconds", "histogram",
                           "Time from receiving a request to answering it, by operation."));
    for (int op = 0; op < SHARD_OP_COUNT_; op++) {
        snprintf(labels, sizeof(labels), "op=\"%s\"", shard_op_name((shard_op)op));
        OM_TRY(rpc_hist_render(&s->metrics.latency[op], out,
                               "objmeta_shard_request_duration_seconds", labels));
    }
    OM_TRY(rpc_prom_header(out, "objmeta_shard_queue_length", "gauge",
                           "Requests waiting for a worker thread."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_queue_length", NULL, (double)workq_len(s->pool)));
    OM_TRY(rpc_prom_header(out, "objmeta_shard_writer_queue_waits_total", "counter",
                           "Times the network loop waited for room in the writer thread's queue."));
    OM_TRY(rpc_prom_value(out, "objmeta_shard_writer_queue_waits_total", NULL,
                          (double)commit_queue_waits(s->commit)));
    OM_TRY(commit_render_metrics(s->commit, out));

    OM_TRY(shard_repl_render_metrics(s, out)); /* role, term, index, per-backup lag */

    /* engine statistics, one gauge each: lsm.wal_syncs -> objmeta_lsm_wal_syncs */
    n = stat_items(s, items, SHARD_STATS_MAX, names);
    for (size_t i = 0; i < n; i++) {
        char metric[96];
        size_t m = 0;
        if (strncmp(items[i].name, "lsm.", 4) != 0)
            continue;
        m = (size_t)snprintf(metric, sizeof(metric), "objmeta_%s", items[i].name);
        for (size_t c = 0; c < m && c < sizeof(metric); c++)
            if (metric[c] == '.')
                metric[c] = '_';
        OM_TRY(rpc_prom_header(out, metric, "gauge", "Storage engine statistic (lsm_stats)."));
        OM_TRY(rpc_prom_value(out, metric, NULL, (double)items[i].value));
    }
    return OM_OK;
}
