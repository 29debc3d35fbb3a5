/*
 * shard/verify.c -- Digest: a fingerprint of this replica's live records per
 * hash range, so that `objmeta admin verify` can tell whether the replicas
 * of a group hold the same data (coordinator/GROUPS.md, "Verify"; the start
 * of anti-entropy).
 *
 * What is compared. For each requested range [start, end) of the 64-bit
 * ring, over the live records whose key hash (om_hash64 of the LSM key, the
 * ring's placement hash) lies in it:
 *
 *   records = how many,
 *   digest  = sum (mod 2^64) over them of om_hash64(fixed64 om_hash64(LSM
 *             key) || fixed64 version || fixed64 om_hash64(encoded record)).
 *
 * The encoded record carries data, metadata, etag, times and version, and a
 * backup applies the primary's encoded bytes exactly (REPLICATION.md, "The
 * write rule"), so two replicas that agree hold the same bytes for every
 * live key. A sum needs no order: one pass over the tree in key order feeds
 * every range at once, whatever order its keys come in. Tombstones are left
 * out -- each replica compacts them away on its own schedule, so they differ
 * between identical replicas -- and so is the reserved replica-state key
 * (first byte 0x00), which names each replica's own position in the stream.
 *
 * Consistency: one engine iterator, i.e. one implicit snapshot, for the
 * whole pass; the replica state in the answer is read just before it (so a
 * write racing the request may be in the digest and not in the index). On a
 * quiet group, equal indexes mean the replicas have applied the same
 * history, and the digests must then be equal too.
 *
 * Threads: the scan may take seconds on a large tree, so it runs on a
 * one-thread queue of its own (`verify_q`, opened on the first request, by
 * the loop thread; shard_close drains it), never on the loop or the client
 * read workers. One Digest runs at a time; a few more may wait.
 */
#define OM_LOG_MODULE "verify"
#include <stdlib.h>
#include <string.h>

#include "partitioner/ring.h"
#include "shard/record.h"
#include "shard/repl.h"
#include "shard/shard_int.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/log.h"

#define VERIFY_MAX_RANGES 4096u
#define VERIFY_QUEUE_MAX 4

typedef struct verify_job {
    workq_item item; /* first: the queue's item is the job */
    shard *s;
    rpc_reply *reply;
    size_t n;
    uint64_t *start, *end; /* end 0 = 2^64 */
    uint64_t *records, *digest;
} verify_job;

/* The range of hash h (ranges sorted, disjoint), or SIZE_MAX when none holds it. */
static size_t
verify_range_of(const verify_job *j, uint64_t h)
{
    size_t lo = 0, hi = j->n;

    while (lo < hi) { /* first range with start > h */
        size_t mid = lo + (hi - lo) / 2;
        if (j->start[mid] <= h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ring_range_contains(j->start[lo - 1], j->end[lo - 1], h) ? lo - 1 : SIZE_MAX;
}

static om_status
verify_scan(verify_job *j, shard_repl_state *state)
{
    lsm_db *db = shard_db(j->s);
    lsm_iter_opts io;
    lsm_iter *it = NULL;
    om_status st;

    OM_TRY(shard_repl_state_load(db, state));
    lsm_iter_opts_init(&io);
    io.fill_cache = false; /* a full pass must not evict the clients' working set */
    OM_TRY(lsm_iter_new(db, &io, &it));
    for (lsm_iter_seek_first(it); lsm_iter_valid(it); lsm_iter_next(it)) {
        om_slice k = lsm_iter_key(it), v = lsm_iter_value(it);
        uint8_t mix[24]; /* om_hash64(key) | version | om_hash64(value) */
        shard_record rec;
        size_t r;
        uint64_t h;

        if (shard_key_is_reserved(k))
            continue;
        r = verify_range_of(j, om_hash64(k.p, k.n));
        if (r == SIZE_MAX)
            continue;
        if (shard_record_decode_head(v, &rec) != OM_OK) {
            om_log(OM_LOG_ERROR, "digest: a stored record does not decode key_bytes=%zu", k.n);
            st = OM_ERR(OM_E_CORRUPT);
            goto fail;
        }
        if (rec.type != SHARD_REC_LIVE)
            continue;
        om_put_fixed64(mix, om_hash64(k.p, k.n));
        om_put_fixed64(mix + 8, rec.version);
        om_put_fixed64(mix + 16, om_hash64(v.p, v.n));
        h = om_hash64(mix, sizeof(mix));
        j->records[r]++;
        j->digest[r] += h;
    }
    st = lsm_iter_status(it);
fail:
    lsm_iter_free(it);
    return st;
}

static void
verify_answer(verify_job *j, const shard_repl_state *state)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__DigestResponse dr = OBJMETA__DIGEST_RESPONSE__INIT;
    Objmeta__RangeDigest *rd = calloc(j->n, sizeof(*rd));
    Objmeta__RangeDigest **pr = calloc(j->n, sizeof(*pr));
    Objmeta__HashRange *hr = calloc(j->n, sizeof(*hr));

    if (rd == NULL || pr == NULL || hr == NULL) {
        rpc_reply_error(j->reply, OM_E_NOMEM, "digest: out of memory");
        goto done;
    }
    for (size_t i = 0; i < j->n; i++) {
        objmeta__hash_range__init(&hr[i]);
        hr[i].start = j->start[i];
        hr[i].end = j->end[i];
        objmeta__range_digest__init(&rd[i]);
        rd[i].range = &hr[i];
        rd[i].records = j->records[i];
        rd[i].digest = j->digest[i];
        pr[i] = &rd[i];
    }
    dr.ranges = pr;
    dr.n_ranges = j->n;
    dr.replication_term = state->term;
    dr.replication_index = state->index;
    resp.body_case = OBJMETA__RESPONSE__BODY_DIGEST;
    resp.digest = &dr;
    rpc_reply_send(j->reply, &resp);
done:
    free(rd);
    free(pr);
    free(hr);
}

static void
verify_job_free(verify_job *j)
{
    free(j->start);
    free(j->end);
    free(j->records);
    free(j->digest);
    free(j);
}

static void
verify_run(void *arg, workq_item *it)
{
    verify_job *j = (verify_job *)(void *)it;
    shard_repl_state state = {0, 0};
    om_status st = verify_scan(j, &state);

    (void)arg;
    if (st == OM_OK)
        verify_answer(j, &state);
    else
        rpc_reply_error(j->reply, st, "digest: the scan failed: %s", om_status_str(st));
    verify_job_free(j);
}

/* The request's ranges into j; INVALID_ARGUMENT names what is wrong. */
static om_status
verify_ranges(verify_job *j, const Objmeta__DigestRequest *r, char *err, size_t errlen)
{
    if (r->n_ranges == 0 || r->n_ranges > VERIFY_MAX_RANGES)
        return om_err_invalid(err, errlen, "digest.ranges: %zu ranges, want 1..%u", r->n_ranges,
                              VERIFY_MAX_RANGES);
    j->n = r->n_ranges;
    j->start = calloc(j->n, sizeof(*j->start));
    j->end = calloc(j->n, sizeof(*j->end));
    j->records = calloc(j->n, sizeof(*j->records));
    j->digest = calloc(j->n, sizeof(*j->digest));
    if (j->start == NULL || j->end == NULL || j->records == NULL || j->digest == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < j->n; i++) {
        const Objmeta__HashRange *h = r->ranges[i];

        if (h == NULL)
            return om_err_invalid(err, errlen, "digest.ranges[%zu]: empty", i);
        if (h->end != 0 && h->end <= h->start)
            return om_err_invalid(err, errlen, "digest.ranges[%zu]: end %llu is not after start", i,
                                  (unsigned long long)h->end);
        if (i > 0 && (j->end[i - 1] == 0 || h->start < j->end[i - 1]))
            return om_err_invalid(err, errlen,
                                  "digest.ranges[%zu]: not sorted by start, or overlapping the "
                                  "range before it",
                                  i);
        j->start[i] = h->start;
        j->end[i] = h->end;
    }
    return OM_OK;
}

void
shard_verify_digest(shard *s, const Objmeta__DigestRequest *r, rpc_reply *reply)
{
    verify_job *j = calloc(1, sizeof(*j));
    char err[160] = "";
    om_status st;

    if (j == NULL) {
        rpc_reply_error(reply, OM_E_NOMEM, "digest: out of memory");
        return;
    }
    j->s = s;
    j->reply = reply;
    st = verify_ranges(j, r, err, sizeof(err));
    if (st == OM_OK && s->verify_q == NULL)
        st = workq_open("shard-verify", 1, VERIFY_QUEUE_MAX, verify_run, s, &s->verify_q);
    if (st == OM_OK && (st = workq_push(s->verify_q, &j->item)) == OM_OK)
        return;
    if (st == OM_E_BUSY)
        snprintf(err, sizeof(err), "digest: %d digests are already queued; retry later",
                 VERIFY_QUEUE_MAX);
    rpc_reply_error(reply, st, "%s", err[0] ? err : om_status_str(st));
    verify_job_free(j);
}
