/*
 * shard/repl_catchup.c -- catch-up of a backup from a snapshot of the
 * primary (repl.c's shippers call it; REPLICATION.md, "Catch-up" and
 * "Divergence repair").
 *
 * A backup that needs a group the primary no longer keeps (either side
 * restarted, an empty disk) or that diverged (it holds indexes of an older
 * term) gets the primary's engine snapshot at index s in key order, as
 * CatchUpPages; the backup makes each page's key range equal to the page
 * (replica.c), the last page sets it to index s, and the shipper's ordinary
 * stream follows from s + 1. While a peer catches up, the groups above s
 * stay queued for it (repl_trim). The snapshot and the cursor are the peer
 * thread's own; the rest is under mu (repl_int.h).
 *
 * Throttle: while the backup is out of the in-sync set no write waits for
 * it, so the pages go at most at catch_up_rate (key and value bytes per
 * second, the migration copy's busy rate by default), paced as the
 * migration's cleanup compaction is (om_clock_pace: the time at which the
 * bytes sent so far are paid for; the thread waits until then, credited at
 * most CATCH_UP_BURST_NS of unused time). A backup in the in-sync set
 * (static membership, or one the etcd layer has not removed yet) holds the
 * writes, so its pages go at full speed, as the migration's fenced pass.
 * Progress: a line every CATCH_UP_LOG_NS and at the end (pages, records,
 * bytes of the estimated total, rate, ETA), and /metrics and Ping
 * (shard_repl_ping_state) show the counters.
 */
#define OM_LOG_MODULE "repl"
#include <stdlib.h>
#include <string.h>

#include "shard/record.h"
#include "shard/repl_int.h"
#include "shard/shard_int.h"
#include "util/clock.h"
#include "util/log.h"

#define CATCH_UP_BURST_NS (50u * 1000000u)
#define CATCH_UP_LOG_NS (5ull * 1000000000u)
#define CATCH_UP_MIN_PAGE (4u << 10)

/*
 * Start a catch-up of p: the backup lacks groups no longer kept. The
 * snapshot is taken after reading `last`, so it holds every group up to
 * snap_index and perhaps a few more -- harmless: the backup then applies
 * the groups above snap_index again, in order, and ends in the primary's
 * state all the same -- and it is synced before any page leaves.
 * Requires: mu held (released meanwhile).
 */
void
repl_catch_up_start(repl_peer *p)
{
    shard_repl *r = p->r;
    uint64_t s = r->last;
    lsm_snapshot *snap = NULL;
    lsm_stats ls;
    om_status st;

    pthread_mutex_unlock(&r->mu);
    lsm_stats_get(shard_db(r->s), &ls); /* the estimate of the snapshot's bytes */
    st = lsm_snapshot_new(shard_db(r->s), &snap);
    /* what the snapshot holds is made durable here first: no backup gets a write this
     * primary could still lose in a crash (REPLICATION.md, "The write rule") */
    if (st == OM_OK && (st = lsm_sync(shard_db(r->s))) != OM_OK) {
        lsm_snapshot_free(shard_db(r->s), snap);
        snap = NULL;
    }
    pthread_mutex_lock(&r->mu);
    if (st != OM_OK) {
        repl_pause_ms(r, r->opts.retry_ms);
        return;
    }
    p->snap = snap;
    p->snap_index = s;
    p->catching = true;
    om_buf_reset(&p->cursor);
    p->cu_t0_ns = p->cu_log_ns = p->cu_tat_ns = om_clock_mono_ns();
    p->cu_pages = p->cu_records = p->cu_bytes = 0;
    p->cu_total = ls.live_sst_bytes + ls.memtable_bytes;
    om_log(OM_LOG_INFO,
           "catch-up of a backup from a snapshot backup=%s from_index=%llu "
           "snapshot_index=%llu bytes_about=%llu rate=%llu",
           p->addr, (unsigned long long)p->acked, (unsigned long long)s,
           (unsigned long long)p->cu_total, (unsigned long long)r->opts.catch_up_rate);
}

/*
 * Count a page of n records and b bytes sent; the progress line when due
 * (the last page's line is the caller's "catch-up done"). The estimate counts the tables'
 * (compressed) bytes, so the bytes sent may pass it: the ETA is then 0. Requires: mu held.
 */
static void
catch_up_count(repl_peer *p, size_t n, size_t b, bool done)
{
    uint64_t now = om_clock_mono_ns();
    double secs, rate;

    p->cu_pages++;
    p->cu_records += n;
    p->cu_bytes += b;
    if (done || now - p->cu_log_ns < CATCH_UP_LOG_NS)
        return;
    p->cu_log_ns = now;
    secs = (double)(now - p->cu_t0_ns) / 1e9;
    rate = secs > 0 ? (double)p->cu_bytes / secs : 0;
    om_log(OM_LOG_INFO,
           "catch-up progress backup=%s pages=%llu records=%llu bytes=%llu bytes_about=%llu "
           "rate_mib_s=%.1f eta_s=%.0f elapsed_s=%.1f",
           p->addr, (unsigned long long)p->cu_pages, (unsigned long long)p->cu_records,
           (unsigned long long)p->cu_bytes, (unsigned long long)p->cu_total, rate / 1048576.0,
           rate > 0 && p->cu_total > p->cu_bytes ? (double)(p->cu_total - p->cu_bytes) / rate : 0,
           secs);
}

/*
 * The largest page: max_request_bytes, but while throttled an eighth of a
 * second's worth (at least CATCH_UP_MIN_PAGE), so that the pace is smooth
 * rather than one large page and a long wait. Requires: mu held.
 */
static size_t
catch_up_page_bytes(const repl_peer *p)
{
    const shard_repl *r = p->r;
    uint64_t b = r->opts.catch_up_rate / 8;

    if (r->opts.catch_up_rate == 0 || p->in_sync)
        return r->opts.max_request_bytes;
    b = b < CATCH_UP_MIN_PAGE ? CATCH_UP_MIN_PAGE : b;
    return b < r->opts.max_request_bytes ? (size_t)b : r->opts.max_request_bytes;
}

/*
 * The throttle: charge b bytes sent and wait until they are paid for at
 * catch_up_rate -- not for a backup in the in-sync set (writes wait for it)
 * and not past a stop. Requires: mu held (released while waiting).
 */
static void
catch_up_pace(repl_peer *p, size_t b)
{
    shard_repl *r = p->r;
    uint64_t now = om_clock_mono_ns();

    if (r->opts.catch_up_rate == 0 || p->in_sync) {
        p->cu_tat_ns = now;
        return;
    }
    p->cu_tat_ns = om_clock_pace(p->cu_tat_ns, b, r->opts.catch_up_rate, CATCH_UP_BURST_NS, now);
    while (!r->stop && !p->in_sync && (now = om_clock_mono_ns()) < p->cu_tat_ns)
        repl_pause_ms(r, (uint32_t)((p->cu_tat_ns - now) / 1000000u) + 1);
}

/* The next page of p's snapshot after its cursor (p's thread: the snapshot is p's). */
static om_status
catch_up_page(repl_peer *p, size_t max_bytes, Objmeta__CatchUpPage *pg,
              Objmeta__MigrateRecord **ptrs, Objmeta__MigrateRecord *recs, size_t cap, om_buf *mem,
              size_t *offs)
{
    shard_repl *r = p->r;
    lsm_iter_opts io;
    lsm_iter *it = NULL;
    size_t n = 0, last_off = 0, last_len = 0;
    om_status st;

    lsm_iter_opts_init(&io);
    io.snapshot = p->snap;
    io.lower = om_buf_slice(&p->cursor);
    io.fill_cache = false; /* a catch-up must not evict the clients' working set */
    OM_TRY(lsm_iter_new(shard_db(r->s), &io, &it));
    om_buf_reset(mem);
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        om_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
        shard_record rec;

        if (p->cursor.n > 0 && om_slice_eq(k, om_buf_slice(&p->cursor)))
            continue;
        if (n == cap || (n > 0 && mem->n + k.n + v.n > max_bytes))
            break;
        last_off = mem->n;
        last_len = k.n;
        if ((st = om_buf_append_slice(mem, k)) != OM_OK ||
            (st = om_buf_append_slice(mem, v)) != OM_OK)
            goto out;
        if (shard_key_is_reserved(k))
            continue; /* inside the page's range, never sent */
        if (shard_record_decode_head(v, &rec) != OM_OK) {
            om_log(OM_LOG_ERROR, "catch-up: a stored record does not decode backup=%s", p->addr);
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
        objmeta__migrate_record__init(&recs[n]);
        offs[n] = last_off;
        recs[n].key.len = k.n;
        recs[n].value.len = v.n;
        recs[n].version = rec.version;
        ptrs[n] = &recs[n];
        n++;
    }
    st = lsm_iter_status(it);
    if (st != OM_OK)
        goto out;
    objmeta__catch_up_page__init(pg);
    pg->done = !lsm_iter_valid(it);
    pg->snapshot_index = p->snap_index;
    pg->after_key.data = p->cursor.p;
    pg->after_key.len = p->cursor.n;
    pg->last_key.data = mem->p + last_off;
    pg->last_key.len = last_len;
    for (size_t i = 0; i < n; i++) { /* mem is final now: point into it */
        recs[i].key.data = mem->p + offs[i];
        recs[i].value.data = mem->p + offs[i] + recs[i].key.len;
    }
    pg->records = ptrs;
    pg->n_records = n;
out:
    lsm_iter_free(it);
    return st;
}

#define CATCH_UP_PAGE_RECORDS 4096

/*
 * One page of p's catch-up: build it, send it, act on the answer (the last
 * page ends the catch-up: the backup holds snap_index, the stream goes on
 * from there). Requires: mu held (released while building and sending).
 */
void
repl_catch_up_step(repl_peer *p, rpc_sync_client **cli, bool *quiet)
{
    shard_repl *r = p->r;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ReplicateRequest rq = OBJMETA__REPLICATE_REQUEST__INIT;
    Objmeta__CatchUpPage pg = OBJMETA__CATCH_UP_PAGE__INIT;
    Objmeta__MigrateRecord **ptrs = calloc(CATCH_UP_PAGE_RECORDS, sizeof(*ptrs));
    Objmeta__MigrateRecord *recs = calloc(CATCH_UP_PAGE_RECORDS, sizeof(*recs));
    size_t *offs = calloc(CATCH_UP_PAGE_RECORDS, sizeof(*offs));
    Objmeta__Response *resp = NULL;
    om_buf mem = OM_BUF_INIT;
    lsm_snapshot *release = NULL;
    size_t max_bytes = catch_up_page_bytes(p);
    om_status st = OM_ERR(OM_E_NOMEM);

    pthread_mutex_unlock(&r->mu);
    if (ptrs != NULL && recs != NULL && offs != NULL)
        st = catch_up_page(p, max_bytes, &pg, ptrs, recs, CATCH_UP_PAGE_RECORDS, &mem, offs);
    if (st == OM_OK) {
        rq.group = r->group;
        rq.term = r->opts.term;
        rq.first_index = p->snap_index + 1;
        rq.catch_up = &pg;
        req.body_case = OBJMETA__REQUEST__BODY_REPLICATE;
        req.replicate = &rq;
        if (*cli == NULL)
            st = rpc_sync_client_open_tls(p->addr, r->opts.timeout_ms, r->opts.tls, cli);
        if (st == OM_OK)
            st = rpc_sync_client_call(*cli, &req, r->opts.timeout_ms, &resp);
    }
    pthread_mutex_lock(&r->mu);
    if (st != OM_OK) {
        if (!*quiet)
            om_log(OM_LOG_WARN, "catch-up page failed: retrying backup=%s status=%s", p->addr,
                   om_status_str(st));
        *quiet = true;
        repl_pause_ms(r, r->opts.retry_ms);
    } else if (rpc_response_status(resp) == OM_OK &&
               resp->body_case == OBJMETA__RESPONSE__BODY_REPLICATE) {
        *quiet = false;
        repl_progress(p);
        repl_answered(p);
        catch_up_count(p, pg.n_records, mem.n, pg.done);
        if (pg.done) {
            om_log(OM_LOG_INFO,
                   "catch-up done backup=%s index=%llu pages=%llu records=%llu bytes=%llu "
                   "elapsed_s=%.1f",
                   p->addr, (unsigned long long)resp->replicate->durable_index,
                   (unsigned long long)p->cu_pages, (unsigned long long)p->cu_records,
                   (unsigned long long)p->cu_bytes,
                   (double)(om_clock_mono_ns() - p->cu_t0_ns) / 1e9);
            p->acked = resp->replicate->durable_index;
            p->catching = false;
            release = p->snap;
            p->snap = NULL;
            repl_trim(r);
            pthread_cond_broadcast(&r->cv);
        } else if (om_buf_set(&p->cursor, om_slice_make(pg.last_key.data, pg.last_key.len)) !=
                   OM_OK) {
            repl_pause_ms(r, r->opts.retry_ms); /* the same page again */
        } else {
            catch_up_pace(p, mem.n);
        }
    } else {
        repl_peer_answer(p, rq.first_index, rq.first_index, resp, quiet); /* a stale term, errors */
    }
    rpc_response_free(resp);
    free(ptrs);
    free(recs);
    free(offs);
    om_buf_free(&mem);
    if (release != NULL) {
        pthread_mutex_unlock(&r->mu);
        lsm_snapshot_free(shard_db(r->s), release);
        pthread_mutex_lock(&r->mu);
    }
}
