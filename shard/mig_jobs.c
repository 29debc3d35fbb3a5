/*
 * shard/mig_jobs.c -- the migration operations a coordinator sends a shard
 * during a ring change (coordinator/MIGRATION.md): MigrateScan (read the
 * records of some hash ranges, or of given keys, in key order from a
 * snapshot), ApplyRecords (write copied records, each only if newer than
 * what the shard holds) and Compact (the cleanup's range compaction, and
 * its progress). The rings they check against are shard/migrate.c's
 * (migrate_int.h).
 *
 * Threads. Scans, applies and compactions can take milliseconds to minutes,
 * so they are jobs of a worker pool of opts.threads threads of our own
 * (util/workq.h), which answer through rpc_reply_send(); stopping answers
 * the jobs still queued UNAVAILABLE rather than waiting for them. A job
 * carries copies of what it needs from the request (rpc frees the request
 * when the handler returns). A Compact progress request is answered at once
 * on the loop thread.
 *
 * A replicated primary (shard/REPLICATION.md, "Migration into a group")
 * writes through the replication stream instead: its ApplyRecords and the
 * purge that starts its Compact are jobs of the commit pipeline
 * (shard_commit_other), run on its writer, so every record they write is
 * shipped to the backups as part of a group commit and their answers leave
 * only once every in-sync replica has those groups durable, within the
 * lease. A MigrateScan's answer (and a Compact's) waits for the groups
 * started before it (commit_wait): a scan never hands a target a write that
 * is not yet durable on every in-sync replica, which a failover could undo.
 *
 * Locking. ApplyRecords takes the shard's key stripes (shard_int.h) of one
 * group of records (consecutive stripes, about MIG_APPLY_GROUP_BYTES of
 * records) through shard_stripes_lock: in ascending order (checked), or the
 * stripes gate alone for a group of more than SHARD_GROUP_MAX_STRIPES, so it
 * cannot deadlock with the shard's writers, which take the gate and then
 * theirs in the same order.
 */
#define OM_LOG_MODULE "migrate"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/migrate_int.h"
#include "shard/record.h"
#include "shard/repl.h"
#include "shard/shard_int.h"
#include "util/checksum.h"
#include "util/clock.h"
#include "util/log.h"

#define MIG_DEFAULT_MAX_RECORDS 1000u
#define MIG_DEFAULT_MAX_BYTES (1u << 20)
#define MIG_DEFAULT_MAX_SCAN (64ull << 20)
#define MIG_APPLY_GROUP_BYTES (64u << 10) /* record bytes per apply write (one WAL sync) */
#define MIG_QUEUE_MAX 1024                /* jobs queued; more are answered BUSY */
#define MIG_PURGE_SCAN (1u << 20)         /* bytes a purge step reads on the pipeline's writer */
#define MIG_PURGE_MAX 4096u               /* keys one purge step deletes (one group commit) */

typedef enum mig_job_kind { MIG_JOB_SCAN, MIG_JOB_APPLY, MIG_JOB_COMPACT } mig_job_kind;

typedef struct mig_range {
    uint64_t start, end; /* [start, end), end 0 = 2^64 */
} mig_range;

typedef struct mig_rec {
    om_slice key, value;
    uint64_t version;
} mig_rec;

typedef struct mig_job {
    workq_item item; /* first: the pool's item is the job */
    mig_job_kind kind;
    rpc_reply *reply;
    uint64_t ring_epoch;
    /* scan */
    mig_range *ranges;
    size_t nranges;
    om_buf after;
    uint32_t max_records;
    uint64_t max_bytes, min_version, max_scan;
    om_slice *keys; /* keys mode: exactly these LSM keys (copies in mem) */
    size_t nkeys;
    /* apply */
    mig_rec *recs;
    size_t nrecs;
    uint8_t *mem;
    uint32_t applied, skipped;
    /* apply on a replicated primary (apply_piped); compact: applied counts the keys purged */
    shard_mig *mig;
    bool purged_all; /* compact on a replicated primary: the purge reached the end */
    om_status wst;
    uint64_t t0_ns;
} mig_job;

static void mig_enqueue(shard_mig *m, mig_job *j);

/* --- jobs ---------------------------------------------------------------------------------------
 */

static void
job_free(mig_job *j)
{
    if (j == NULL)
        return;
    free(j->ranges);
    om_buf_free(&j->after);
    free(j->recs);
    free(j->keys);
    free(j->mem);
    free(j);
}

static bool
ranges_contain(const mig_range *r, size_t n, uint64_t h)
{
    size_t lo = 0, hi = n;

    /* the last range with start <= h */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r[mid].start <= h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ring_range_contains(r[lo - 1].start, r[lo - 1].end, h);
}

/* Keys mode of MigrateScan: the records of exactly j->keys (those present, in range, new enough).
 */
static om_status
scan_keys(shard_mig *m, mig_job *j, Objmeta__MigrateRecord *recs, Objmeta__MigrateRecord **ptrs,
          size_t *offs, om_buf *mem, size_t *np)
{
    om_buf v = OM_BUF_INIT;
    size_t n = 0;
    om_status st = OM_OK;

    for (size_t i = 0; i < j->nkeys && st == OM_OK; i++) {
        om_slice k = j->keys[i];
        shard_record rec;
        om_status g;

        if (shard_key_is_reserved(k) || !ranges_contain(j->ranges, j->nranges, om_hash64(k.p, k.n)))
            continue;
        g = lsm_get(shard_db(m->s), NULL, k, &v);
        if (g == OM_E_NOTFOUND)
            continue;
        if (g != OM_OK) {
            st = g;
            break;
        }
        if (shard_record_decode(om_buf_slice(&v), &rec) != OM_OK) {
            st = OM_ERR(OM_E_CORRUPT);
            break;
        }
        if (rec.version < j->min_version)
            continue;
        offs[2 * n] = mem->n;
        if ((st = om_buf_append_slice(mem, k)) != OM_OK)
            break;
        offs[2 * n + 1] = mem->n;
        if ((st = om_buf_append_slice(mem, om_buf_slice(&v))) != OM_OK)
            break;
        objmeta__migrate_record__init(&recs[n]);
        recs[n].key.len = k.n;
        recs[n].value.len = v.n;
        recs[n].version = rec.version;
        ptrs[n] = &recs[n];
        n++;
    }
    om_buf_free(&v);
    *np = n;
    return st;
}

/*
 * Answer resp once every group started so far is durable -- on a replicated
 * primary, on every in-sync backup too -- with the lease checked (commit_wait).
 */
static void
answer_when_durable(shard_mig *m, rpc_reply *reply, Objmeta__Response *resp, uint64_t t0)
{
    commit_wait(m->s->commit, &(commit_reply){.reply = reply,
                                              .resp = resp,
                                              .tag = SHARD_OP_OTHER,
                                              .t0_ns = t0,
                                              .after = COMMIT_AFTER_ALL});
}

static void
run_scan(shard_mig *m, mig_job *j)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__MigrateScanResponse sr = OBJMETA__MIGRATE_SCAN_RESPONSE__INIT;
    Objmeta__MigrateRecord *recs = NULL, **ptrs = NULL;
    om_buf mem = OM_BUF_INIT, last = OM_BUF_INIT;
    size_t n = 0, cap = j->keys ? (j->nkeys ? j->nkeys : 1) : j->max_records, bytes = 0;
    uint64_t scanned = 0;
    lsm_iter_opts io;
    lsm_iter *it = NULL;
    lsm_stats ls;
    om_status st;
    bool done = false;
    size_t *offs = NULL; /* record i's key at mem[offs[2i]], value at mem[offs[2i+1]] */
    uint64_t t0 = om_clock_mono_ns();

    sr.now_us = om_clock_wall_ns() / 1000;
    lsm_stats_get(shard_db(m->s), &ls);
    sr.total_bytes = ls.live_sst_bytes + ls.memtable_bytes;
    recs = calloc(cap, sizeof(*recs));
    ptrs = calloc(cap, sizeof(*ptrs));
    offs = calloc(2 * cap, sizeof(*offs));
    if (recs == NULL || ptrs == NULL || offs == NULL) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    if (j->keys != NULL) {
        st = scan_keys(m, j, recs, ptrs, offs, &mem, &n);
        if (st != OM_OK)
            goto fail;
        done = true;
        goto reply;
    }
    lsm_iter_opts_init(&io);
    io.fill_cache = false; /* a migration scan must not evict the clients' working set */
    OM_GOTO(lsm_iter_new(shard_db(m->s), &io, &it));
    if (j->after.n > 0) {
        lsm_iter_seek(it, om_buf_slice(&j->after));
        if (lsm_iter_valid(it) && om_slice_eq(lsm_iter_key(it), om_buf_slice(&j->after)))
            lsm_iter_next(it);
    } else {
        lsm_iter_seek_first(it);
    }
    for (;; lsm_iter_next(it)) {
        om_slice k, v;
        shard_record rec;

        if (!lsm_iter_valid(it)) {
            OM_GOTO(lsm_iter_status(it));
            done = true;
            break;
        }
        if (n >= cap || bytes >= j->max_bytes || scanned >= j->max_scan)
            break;
        k = lsm_iter_key(it);
        v = lsm_iter_value(it);
        scanned += k.n + v.n;
        OM_GOTO(om_buf_set(&last, k));
        if (shard_key_is_reserved(k) || !ranges_contain(j->ranges, j->nranges, om_hash64(k.p, k.n)))
            continue; /* the replica's own state (REPLICATION.md) never moves */
        if (shard_record_decode(v, &rec) != OM_OK) {
            om_log(OM_LOG_ERROR, "migration scan: a stored record does not decode id=%s", m->self);
            st = OM_ERR(OM_E_CORRUPT);
            goto fail;
        }
        if (rec.version < j->min_version)
            continue;
        offs[2 * n] = mem.n;
        OM_GOTO(om_buf_append_slice(&mem, k));
        offs[2 * n + 1] = mem.n;
        OM_GOTO(om_buf_append_slice(&mem, v));
        objmeta__migrate_record__init(&recs[n]);
        recs[n].key.len = k.n;
        recs[n].value.len = v.n;
        recs[n].version = rec.version;
        ptrs[n] = &recs[n];
        n++;
        bytes += k.n + v.n;
    }
reply:
    for (size_t i = 0; i < n; i++) { /* mem is final now: point into it */
        recs[i].key.data = mem.p + offs[2 * i];
        recs[i].value.data = mem.p + offs[2 * i + 1];
    }
    sr.records = ptrs;
    sr.n_records = n;
    sr.next_after_key.data = last.n > 0 ? last.p : (uint8_t *)j->after.p;
    sr.next_after_key.len = last.n > 0 ? last.n : j->after.n;
    sr.done = done;
    sr.scanned_bytes = scanned;
    resp.body_case = OBJMETA__RESPONSE__BODY_MIGRATE_SCAN;
    resp.migrate_scan = &sr;
    /*
     * Only records that are durable leave: the scan's snapshot may show
     * writes of groups not yet synced -- on a replicated primary, not yet on
     * every in-sync backup, writes a failover could undo, which a target
     * must not get. Every such group started before this point, so waiting
     * for the groups started so far covers them (and checks the lease).
     */
    answer_when_durable(m, j->reply, &resp, t0);
    st = OM_OK;
    j->reply = NULL;
fail:
    if (j->reply != NULL)
        rpc_reply_error(j->reply, st, "migration scan failed: %s", om_status_str(st));
    lsm_iter_free(it);
    free(recs);
    free(ptrs);
    free(offs);
    om_buf_free(&mem);
    om_buf_free(&last);
}

/* A record of the batch with its stripe, for grouping by stripe. */
typedef struct apply_ref {
    uint32_t stripe;
    uint32_t i;
} apply_ref;

static int
cmp_ref(const void *a, const void *b)
{
    const apply_ref *x = a, *y = b;
    if (x->stripe != y->stripe)
        return x->stripe < y->stripe ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * Apply the records refs[0..n) -- one group, sorted by stripe -- holding
 * their stripes, with one engine write. Counts into *applied / *skipped.
 * piped: on the commit pipeline's writer (a replicated primary, apply_piped):
 * the group is staged and sealed for the backups like any group commit
 * (repl.h) and written without a sync (nosync), which the pipeline's sync
 * step makes and replicates before the answer leaves.
 */
static om_status
apply_group(shard_mig *m, const mig_rec *recs, const apply_ref *refs, size_t n, lsm_batch *b,
            bool piped, bool nosync, uint32_t *applied, uint32_t *skipped)
{
    struct shard_repl *repl = piped ? m->s->repl : NULL;
    uint64_t set[SHARD_STRIPES / 64] = {0};
    om_buf cur = OM_BUF_INIT;
    om_status st = OM_OK;
    size_t puts;

    for (size_t i = 0; i < n; i++)
        set[refs[i].stripe / 64] |= UINT64_C(1) << (refs[i].stripe % 64);
    shard_stripes_lock(m->s, set); /* ascending, or the gate alone */
    lsm_batch_clear(b);
    for (size_t i = 0; i < n && st == OM_OK; i++) {
        const mig_rec *r = &recs[refs[i].i];
        shard_record old;
        om_status g = lsm_get(shard_db(m->s), NULL, r->key, &cur);
        if (g == OM_OK && shard_record_decode(om_buf_slice(&cur), &old) == OM_OK &&
            old.version >= r->version) {
            (*skipped)++;
            continue;
        }
        if (g != OM_OK && g != OM_E_NOTFOUND) {
            st = g;
            break;
        }
        st = lsm_batch_put(b, r->key, r->value);
        if (st == OM_OK && repl != NULL) /* exactly this record goes to every backup */
            shard_repl_stage(repl, r->key, r->value);
        (*applied)++;
    }
    puts = lsm_batch_count(b);
    if (st == OM_OK && puts > 0 && repl != NULL)
        st = shard_repl_seal(repl, b);
    if (st == OM_OK && puts > 0)
        st = nosync ? lsm_write_nosync(shard_db(m->s), b) : lsm_write(shard_db(m->s), b);
    shard_stripes_unlock(m->s, set);
    if (puts > 0 && repl != NULL)
        shard_repl_written(repl, st); /* no stripe held (repl.h) */
    om_buf_free(&cur);
    return st;
}

/*
 * Apply every record: sorted by stripe and cut into groups of consecutive
 * stripes holding about MIG_APPLY_GROUP_BYTES of records, one locked write
 * (one WAL sync) per group, so that a client write waits for at most one
 * small group write and only if its stripe is in it, while a small batch
 * (the coordinator sends 128 KiB batches while clients are active) costs
 * only a sync or two.
 */
static om_status
apply_all(shard_mig *m, const mig_rec *recs, size_t n, bool piped, bool nosync, uint32_t *applied,
          uint32_t *skipped)
{
    apply_ref *refs = calloc(n ? n : 1, sizeof(*refs));
    lsm_batch *b = NULL;
    om_status st;

    if (refs == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < n; i++) {
        refs[i].stripe = shard_stripe_of(recs[i].key);
        refs[i].i = (uint32_t)i;
    }
    qsort(refs, n, sizeof(*refs), cmp_ref);
    st = lsm_batch_new(&b);
    for (size_t i = 0; st == OM_OK && i < n;) {
        size_t k = i, bytes = 0;
        /* a group ends at a stripe boundary once it holds enough bytes */
        while (k < n && (bytes < MIG_APPLY_GROUP_BYTES || refs[k].stripe == refs[k - 1].stripe)) {
            bytes += recs[refs[k].i].key.n + recs[refs[k].i].value.n;
            k++;
        }
        st = apply_group(m, recs, refs + i, k - i, b, piped, nosync, applied, skipped);
        i = k;
    }
    lsm_batch_free(b);
    free(refs);
    return st;
}

/*
 * The checks of an ApplyRecords batch against the rings held: the pending
 * ring it was sent for, every key owned under it, every record decoding
 * with the version named. false: answered with the refusal.
 */
static bool
apply_check(shard_mig *m, mig_job *j)
{
    mig_view v;
    bool ok = true;

    mig_view_get(m, &v);
    if (v.pending == NULL || ring_epoch(v.pending) != j->ring_epoch) {
        rpc_reply_error(j->reply, OM_E_WRONG_SHARD,
                        "shard %s holds pending ring epoch %llu, records sent for %llu", m->self,
                        (unsigned long long)(v.pending ? ring_epoch(v.pending) : 0),
                        (unsigned long long)j->ring_epoch);
        ok = false;
    }
    for (size_t i = 0; ok && i < j->nrecs; i++) {
        shard_record rec;
        if (!mig_owns(v.pending, m->self, om_hash64(j->recs[i].key.p, j->recs[i].key.n))) {
            rpc_reply_error(j->reply, OM_E_INVALID,
                            "record %zu: its key belongs to another shard under ring epoch %llu", i,
                            (unsigned long long)j->ring_epoch);
            ok = false;
        } else if (shard_record_decode(j->recs[i].value, &rec) != OM_OK ||
                   rec.version != j->recs[i].version) {
            rpc_reply_error(j->reply, OM_E_CORRUPT, "record %zu does not decode", i);
            ok = false;
        }
    }
    mig_view_put(&v);
    return ok;
}

/* The answer of an applied batch (wst: how the writes went). */
static void
apply_answer(mig_job *j, Objmeta__Response *resp, Objmeta__ApplyRecordsResponse *ar)
{
    ar->applied = j->applied;
    ar->skipped = j->skipped;
    resp->body_case = OBJMETA__RESPONSE__BODY_APPLY_RECORDS;
    resp->apply_records = ar;
}

static void
run_apply(shard_mig *m, mig_job *j)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ApplyRecordsResponse ar = OBJMETA__APPLY_RECORDS_RESPONSE__INIT;
    om_status st;

    if (!apply_check(m, j))
        return;
    st = apply_all(m, j->recs, j->nrecs, false, false, &j->applied, &j->skipped);
    if (st != OM_OK) {
        rpc_reply_error(j->reply, st, "applying records failed: %s", om_status_str(st));
        return;
    }
    apply_answer(j, &resp, &ar);
    rpc_reply_send(j->reply, &resp);
}

/*
 * ApplyRecords on a replicated primary (shard/REPLICATION.md, "Migration
 * into a group"): the batch is a job of the commit pipeline. Its writer
 * decides "only if newer" under the key stripes like any apply, and the
 * records written go to the backups as ordinary group commits (exact
 * records); the answer waits in the gate until every in-sync replica has
 * them durable and leaves only within the primary's lease, like a Store's.
 */
static void
apply_piped_write(void *arg, bool nosync)
{
    mig_job *j = arg;
    shard_mig *m = j->mig;

    if (m->s->repl == NULL || !nosync) /* a primary writes only through the pipeline */
        j->wst = OM_ERR(OM_E_UNAVAILABLE);
    else
        j->wst = apply_all(m, j->recs, j->nrecs, true, true, &j->applied, &j->skipped);
}

static void
apply_piped_answer(void *arg, uint64_t group)
{
    mig_job *j = arg;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ApplyRecordsResponse ar = OBJMETA__APPLY_RECORDS_RESPONSE__INIT;
    char msg[160];
    commit_reply r = {
        .reply = j->reply, .resp = &resp, .tag = SHARD_OP_OTHER, .t0_ns = j->t0_ns, .after = group};

    if (j->wst == OM_OK) {
        apply_answer(j, &resp, &ar);
    } else {
        snprintf(msg, sizeof(msg), "shard %s: applying records failed: %s (not a primary now?)",
                 j->mig->self, om_status_str(j->wst));
        resp.status = rpc_status_to_proto(j->wst);
        resp.message = msg;
    }
    commit_gate(j->mig->s->commit, &r);
    job_free(j);
}

static void
apply_piped(shard_mig *m, mig_job *j)
{
    size_t bytes = 0;

    if (!apply_check(m, j)) {
        job_free(j);
        return;
    }
    for (size_t i = 0; i < j->nrecs; i++)
        bytes += j->recs[i].key.n + j->recs[i].value.n;
    j->mig = m;
    j->t0_ns = om_clock_mono_ns();
    if (shard_commit_other(m->s, bytes, apply_piped_write, apply_piped_answer, j) != OM_OK) {
        rpc_reply_error(j->reply, OM_E_NOMEM, "out of memory");
        job_free(j);
    }
}

/*
 * Compact on a replicated primary starts with the purge (migrate.h): steps
 * of the commit pipeline, each on its writer -- the one thread that writes
 * on a primary, so no stripe is needed -- reading at most MIG_PURGE_SCAN
 * bytes from the cursor j->after and deleting the keys owned neither under
 * cur nor under pending as one group commit, which goes to every backup as
 * purge records (no value). The answer of a step starts the next one; the
 * last hands the job to the pool, which compacts. Versions play no part: a
 * moved key is written by nobody here any more (the rings fence it).
 */
static void
purge_write(void *arg, bool nosync)
{
    mig_job *j = arg;
    shard_mig *m = j->mig;
    struct shard_repl *repl = m->s->repl;
    lsm_batch *b = NULL;
    lsm_iter *it = NULL;
    lsm_iter_opts io;
    uint64_t scanned = 0;
    uint32_t dels = 0;
    om_status st = OM_OK, ist = OM_OK;
    mig_view v;

    mig_view_get(m, &v);
    if (repl == NULL || !nosync || v.cur == NULL) {
        st = OM_ERR(v.cur == NULL ? OM_E_WRONG_SHARD : OM_E_UNAVAILABLE);
        goto fail;
    }
    lsm_iter_opts_init(&io);
    io.fill_cache = false;
    OM_GOTO(lsm_batch_new(&b));
    OM_GOTO(lsm_iter_new(shard_db(m->s), &io, &it));
    lsm_iter_seek(it, om_buf_slice(&j->after));
    if (j->after.n > 0 && lsm_iter_valid(it) &&
        om_slice_eq(lsm_iter_key(it), om_buf_slice(&j->after)))
        lsm_iter_next(it);
    for (;; lsm_iter_next(it)) {
        om_slice k;
        uint64_t h;

        if (!lsm_iter_valid(it)) {
            ist = lsm_iter_status(it);
            j->purged_all = ist == OM_OK;
            break;
        }
        if (scanned >= MIG_PURGE_SCAN || dels >= MIG_PURGE_MAX)
            break;
        k = lsm_iter_key(it);
        scanned += k.n + lsm_iter_value(it).n;
        if ((ist = om_buf_set(&j->after, k)) != OM_OK)
            break;
        h = om_hash64(k.p, k.n);
        if (shard_key_is_reserved(k) || mig_owns(v.cur, m->self, h) ||
            (v.pending != NULL && mig_owns(v.pending, m->self, h)))
            continue;
        if ((ist = lsm_batch_del(b, k)) != OM_OK)
            break;
        shard_repl_stage(repl, k, OM_SLICE_NULL);
        dels++;
    }
    lsm_iter_free(it);
    it = NULL;
    if (dels > 0) { /* what was staged is written (a half-written group would stop shipping) */
        st = shard_repl_seal(repl, b);
        if (st == OM_OK)
            st = lsm_write_nosync(shard_db(m->s), b);
        shard_repl_written(repl, st);
        j->applied += dels;
    }
    if (st == OM_OK)
        st = ist;
fail:
    j->wst = st;
    lsm_iter_free(it);
    lsm_batch_free(b);
    mig_view_put(&v);
}

static void
purge_answer(void *arg, uint64_t group)
{
    mig_job *j = arg;
    shard_mig *m = j->mig;

    (void)group; /* the compaction's answer waits for every group (run_compact) */
    if (j->wst != OM_OK) {
        rpc_reply_error(j->reply, j->wst, "shard %s: purging the keys moved away failed: %s",
                        m->self, om_status_str(j->wst));
        job_free(j);
    } else if (!j->purged_all) {
        if (shard_commit_other(m->s, MIG_PURGE_SCAN, purge_write, purge_answer, j) != OM_OK) {
            rpc_reply_error(j->reply, OM_E_NOMEM, "out of memory");
            job_free(j);
        }
    } else {
        mig_enqueue(m, j); /* the compaction */
    }
}

static void
run_compact(shard_mig *m, mig_job *j)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__CompactResponse cr = OBJMETA__COMPACT_RESPONSE__INIT;
    lsm_stats ls;
    om_status st;
    uint64_t t0 = om_clock_mono_ns();

    lsm_stats_get(shard_db(m->s), &ls);
    cr.bytes_before = ls.live_sst_bytes + ls.memtable_bytes;
    /*
     * Paced: the old owners compact while they serve clients. Moved keys are
     * hash ranges spread over the whole LSM key space, so no key range can be
     * skipped; the whole tree is rewritten.
     */
    st = lsm_compact_range_rate(shard_db(m->s), OM_SLICE_NULL, OM_SLICE_NULL, m->opts.compact_rate);
    if (st == OM_E_BUSY) {
        /* shard_mig_stop abandoned it (lsm_compact_range_stop): the coordinator asks again */
        rpc_reply_error(j->reply, OM_E_UNAVAILABLE, "shard %s is shutting down", m->self);
        return;
    }
    if (st != OM_OK) {
        rpc_reply_error(j->reply, st, "compaction failed: %s", om_status_str(st));
        return;
    }
    lsm_stats_get(shard_db(m->s), &ls);
    cr.bytes_after = ls.live_sst_bytes + ls.memtable_bytes;
    bool running;
    lsm_compact_range_progress(shard_db(m->s), &cr.bytes_done, &cr.bytes_total, &running);
    om_log(OM_LOG_INFO,
           "compacted id=%s bytes_before=%llu bytes_after=%llu dropped=%llu purged=%u rate=%llu "
           "ms=%llu",
           m->self, (unsigned long long)cr.bytes_before, (unsigned long long)cr.bytes_after,
           (unsigned long long)atomic_load(&m->filter_dropped), j->applied,
           (unsigned long long)m->opts.compact_rate,
           (unsigned long long)((om_clock_mono_ns() - t0) / 1000000));
    resp.body_case = OBJMETA__RESPONSE__BODY_COMPACT;
    resp.compact = &cr;
    /* a purge's deletes are on every in-sync replica before the cleanup counts as done */
    answer_when_durable(m, j->reply, &resp, t0);
}

/*
 * A progress request (CompactRequest.progress), answered at once on the loop thread: how far
 * the compaction in progress has got, or, while none runs, the bytes one would read.
 */
static void
compact_progress(shard_mig *m, rpc_reply *reply)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__CompactResponse cr = OBJMETA__COMPACT_RESPONSE__INIT;
    bool running;

    lsm_compact_range_progress(shard_db(m->s), &cr.bytes_done, &cr.bytes_total, &running);
    cr.running = running;
    if (!running) {
        cr.bytes_done = 0;
        cr.bytes_total = lsm_compact_range_estimate(shard_db(m->s));
    }
    resp.body_case = OBJMETA__RESPONSE__BODY_COMPACT;
    resp.compact = &cr;
    rpc_reply_send(reply, &resp);
}

/* The pool's job runner (workq). */
static void
mig_run(void *arg, workq_item *it)
{
    shard_mig *m = arg;
    mig_job *j = (mig_job *)it;

    switch (j->kind) {
    case MIG_JOB_SCAN:
        run_scan(m, j);
        break;
    case MIG_JOB_APPLY:
        run_apply(m, j);
        break;
    case MIG_JOB_COMPACT:
        run_compact(m, j);
        break;
    }
    job_free(j);
}

/* shard_mig_stop: a job still queued is answered "try again later". */
static void
mig_cancel(void *arg, workq_item *it)
{
    shard_mig *m = arg;
    mig_job *j = (mig_job *)it;

    rpc_reply_error(j->reply, OM_E_UNAVAILABLE, "shard %s is shutting down", m->self);
    job_free(j);
}

om_status
shard_mig_attach(shard_mig *m, shard *s)
{
    m->s = s;
    return workq_open("shard-migrate", m->opts.threads, MIG_QUEUE_MAX, mig_run, m, &m->pool);
}

void
shard_mig_stop(shard_mig *m)
{
    if (m == NULL || m->pool == NULL)
        return;
    /* A running (paced) Compact would hold the join for up to minutes: abandon it. */
    lsm_compact_range_stop(shard_db(m->s));
    workq_close(m->pool, mig_cancel);
    m->pool = NULL;
}

static void
mig_enqueue(shard_mig *m, mig_job *j)
{
    om_status st = m->pool != NULL ? workq_push(m->pool, &j->item) : OM_E_UNAVAILABLE;

    if (st == OM_OK)
        return;
    if (st == OM_E_BUSY)
        rpc_reply_error(j->reply, OM_E_BUSY, "shard %s: too many migration jobs queued", m->self);
    else
        rpc_reply_error(j->reply, OM_E_UNAVAILABLE, "shard %s is shutting down", m->self);
    job_free(j);
}

static void
submit_scan(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply)
{
    const Objmeta__MigrateScanRequest *r = req->migrate_scan;
    mig_job *j = calloc(1, sizeof(*j));

    if (j == NULL) {
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->kind = MIG_JOB_SCAN;
    j->reply = reply;
    j->nranges = r->n_ranges;
    j->ranges = calloc(r->n_ranges ? r->n_ranges : 1, sizeof(*j->ranges));
    if (j->ranges == NULL ||
        om_buf_set(&j->after, om_slice_make(r->after_key.data, r->after_key.len)) != OM_OK) {
        job_free(j);
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->n_ranges; i++) {
        j->ranges[i].start = r->ranges[i]->start;
        j->ranges[i].end = r->ranges[i]->end;
        if ((j->ranges[i].end != 0 && j->ranges[i].end <= j->ranges[i].start) ||
            (i > 0 && (j->ranges[i - 1].end == 0 || j->ranges[i].start < j->ranges[i - 1].end))) {
            job_free(j);
            rpc_reply_error(reply, OM_E_INVALID,
                            "ranges: range %zu is empty, unsorted or overlaps the one before", i);
            return;
        }
    }
    if (r->n_keys > 0) {
        size_t total = 0, off = 0;
        if (r->n_keys > 100000) {
            job_free(j);
            rpc_reply_error(reply, OM_E_INVALID, "keys: at most 100000 per scan");
            return;
        }
        for (size_t i = 0; i < r->n_keys; i++)
            total += r->keys[i].len;
        j->keys = calloc(r->n_keys, sizeof(*j->keys));
        j->mem = malloc(total ? total : 1);
        if (j->keys == NULL || j->mem == NULL) {
            job_free(j);
            rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
            return;
        }
        for (size_t i = 0; i < r->n_keys; i++) {
            if (r->keys[i].len > 0)
                memcpy(j->mem + off, r->keys[i].data, r->keys[i].len);
            j->keys[i] = om_slice_make(j->mem + off, r->keys[i].len);
            off += r->keys[i].len;
        }
        j->nkeys = r->n_keys;
    }
    j->max_records = r->max_records ? r->max_records : MIG_DEFAULT_MAX_RECORDS;
    if (j->max_records > 100000)
        j->max_records = 100000;
    j->max_bytes = r->max_bytes ? r->max_bytes : MIG_DEFAULT_MAX_BYTES;
    j->min_version = r->min_version;
    j->max_scan = r->max_scan_bytes ? r->max_scan_bytes : MIG_DEFAULT_MAX_SCAN;
    mig_enqueue(m, j);
}

static void
submit_apply(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply)
{
    const Objmeta__ApplyRecordsRequest *r = req->apply_records;
    mig_job *j = calloc(1, sizeof(*j));
    size_t total = 0, off = 0;

    if (j == NULL) {
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    j->kind = MIG_JOB_APPLY;
    j->reply = reply;
    j->ring_epoch = req->ring_epoch;
    for (size_t i = 0; i < r->n_records; i++)
        total += r->records[i]->key.len + r->records[i]->value.len;
    j->recs = calloc(r->n_records ? r->n_records : 1, sizeof(*j->recs));
    j->mem = malloc(total ? total : 1);
    if (j->recs == NULL || j->mem == NULL) {
        job_free(j);
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->n_records; i++) {
        const Objmeta__MigrateRecord *mr = r->records[i];
        if (mr->key.len == 0 || mr->key.len > LSM_MAX_KEY_SIZE ||
            shard_key_is_reserved(om_slice_make(mr->key.data, mr->key.len))) {
            job_free(j);
            rpc_reply_error(reply, OM_E_INVALID, "record %zu: bad key length %zu", i, mr->key.len);
            return;
        }
        if (mr->key.len > 0)
            memcpy(j->mem + off, mr->key.data, mr->key.len);
        j->recs[i].key = om_slice_make(j->mem + off, mr->key.len);
        off += mr->key.len;
        if (mr->value.len > 0)
            memcpy(j->mem + off, mr->value.data, mr->value.len);
        j->recs[i].value = om_slice_make(j->mem + off, mr->value.len);
        off += mr->value.len;
        j->recs[i].version = mr->version;
    }
    j->nrecs = r->n_records;
    if (m->s->repl != NULL) /* a replicated primary: through the replication stream */
        apply_piped(m, j);
    else
        mig_enqueue(m, j);
}

bool
mig_jobs_handle(shard_mig *m, const Objmeta__Request *req, rpc_reply *reply)
{
    mig_job *j;

    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_MIGRATE_SCAN:
        submit_scan(m, req, reply);
        return true;
    case OBJMETA__REQUEST__BODY_APPLY_RECORDS:
        submit_apply(m, req, reply);
        return true;
    case OBJMETA__REQUEST__BODY_COMPACT:
        if (req->compact->progress) {
            compact_progress(m, reply);
            return true;
        }
        j = calloc(1, sizeof(*j));
        if (j == NULL) {
            rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
            return true;
        }
        j->kind = MIG_JOB_COMPACT;
        j->reply = reply;
        j->mig = m;
        if (m->s->repl == NULL) /* else the purge first, through the replication stream */
            mig_enqueue(m, j);
        else if (shard_commit_other(m->s, MIG_PURGE_SCAN, purge_write, purge_answer, j) != OM_OK) {
            rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
            job_free(j);
        }
        return true;
    default:
        return false;
    }
}
