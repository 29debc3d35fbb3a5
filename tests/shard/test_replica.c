/*
 * tests/shard/test_replica.c -- unit suite of the backup side of replication
 * (shard/replica.c; rules: shard/repl.h, shard/REPLICATION.md), on a real
 * engine in a temp dir:
 *
 *   apply      groups apply in order with the primary's versions, exactly
 *              (a lower version than held overwrites: a copy of the log, not
 *              a merge); the state moves to (term, last index)
 *   refuse     older terms, gaps, another group's id, bad records, and a new
 *              term resending held indexes are refused and change nothing --
 *              not even the good records of the same request
 *   resend     a resend in the same term is idempotent, also when it
 *              overlaps: only the groups above the last index apply
 *   restart    state and data survive closing and reopening the shard
 *   catch-up   a page makes its key range equal to the primary's snapshot
 *              (records written, other keys deleted, the state key kept);
 *              the last page sets the index; pages are idempotent
 *   reserved   the state key is invisible to migration: the compaction
 *              filter keeps it whatever the ring says
 *   purge      a purge record (no value, version 0) deletes its key; a
 *              value-less record with a version, or one in a page, is
 *              refused
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner/ring.h"
#include "shard/migrate.h"
#include "shard/record.h"
#include "shard/repl.h"
#include "shard/shard.h"
#include "tu.h"

#define S(x) om_slice_from_str(x)

/* A request under construction: up to 8 groups of up to 8 records. */
typedef struct req {
    Objmeta__ReplicateRequest rq;
    Objmeta__ReplicateGroup g[8], *gp[8];
    Objmeta__MigrateRecord r[8][8], *rp[8][8];
    om_buf key[8][8], val[8][8];
} req;

static void
req_init(req *q, const char *group, uint64_t term, uint64_t first)
{
    memset(q, 0, sizeof(*q));
    objmeta__replicate_request__init(&q->rq);
    q->rq.group = (char *)group;
    q->rq.term = term;
    q->rq.first_index = first;
    q->rq.groups = q->gp;
}

static void
req_group(req *q)
{
    size_t g = q->rq.n_groups++;

    objmeta__replicate_group__init(&q->g[g]);
    q->g[g].records = q->rp[g];
    q->gp[g] = &q->g[g];
}

/* Append a record (key in bucket "bkt", live or a tombstone) to the last group. */
static void
req_rec(req *q, const char *key, uint64_t version, const char *data, bool tomb)
{
    size_t g = q->rq.n_groups - 1, i = q->g[g].n_records++;
    Objmeta__MigrateRecord *m = &q->r[g][i];
    shard_record rec;

    memset(&rec, 0, sizeof(rec));
    rec.type = tomb ? SHARD_REC_TOMBSTONE : SHARD_REC_LIVE;
    rec.version = version;
    if (!tomb) {
        rec.data = S(data);
        rec.size = rec.data.n;
    }
    ck_assert_int_eq(shard_lsm_key(S("bkt"), S(key), &q->key[g][i]), OM_OK);
    ck_assert_int_eq(shard_record_encode(&rec, &q->val[g][i]), OM_OK);
    objmeta__migrate_record__init(m);
    m->key.data = q->key[g][i].p;
    m->key.len = q->key[g][i].n;
    m->value.data = q->val[g][i].p;
    m->value.len = q->val[g][i].n;
    m->version = version;
    q->rp[g][i] = m;
}

static void
req_free(req *q)
{
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < 8; i++) {
            om_buf_free(&q->key[g][i]);
            om_buf_free(&q->val[g][i]);
        }
}

static shard *
open_shard(const char *dir)
{
    shard_opts o;
    shard *s = NULL;

    shard_opts_init(&o);
    o.lsm.sync_mode = LSM_SYNC_NONE; /* the backup syncs each request itself */
    ck_assert_int_eq(shard_open(dir, &o, &s), OM_OK);
    return s;
}

/* The version of bkt/key, 0 if absent or deleted. */
static uint64_t
version_of(shard *s, const char *key)
{
    om_buf raw = OM_BUF_INIT;
    shard_record rec;
    char err[256];
    uint64_t v = 0;

    if (shard_get(s, S("bkt"), S(key), &raw, &rec, err, sizeof(err)) == OM_OK)
        v = rec.version;
    om_buf_free(&raw);
    return v;
}

static om_status
apply(shard_replica *r, req *q, shard_repl_state *st, char *err)
{
    return shard_replica_apply(r, &q->rq, st, err, 256);
}

START_TEST(apply_in_order_exactly)
{
    shard *s = open_shard(tu_tmpdir());
    shard_replica *r = NULL;
    shard_repl_state st;
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    shard_replica_state(r, &st);
    ck_assert_uint_eq(st.term, 0);
    ck_assert_uint_eq(st.index, 0);
    req_init(&q, "g1", 1, 1);
    req_group(&q);
    req_rec(&q, "a", 10, "A1", false);
    req_rec(&q, "b", 11, "B1", false);
    req_group(&q);
    req_rec(&q, "a", 12, "A2", false); /* a later group of the same request wins */
    req_rec(&q, "b", 13, NULL, true);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.term, 1);
    ck_assert_uint_eq(st.index, 2);
    ck_assert_uint_eq(version_of(s, "a"), 12);
    ck_assert_uint_eq(version_of(s, "b"), 0); /* deleted */
    req_free(&q);

    /* exact: a version below the one held still lands (the primary's log is the truth) */
    req_init(&q, "g1", 1, 3);
    req_group(&q);
    req_rec(&q, "a", 5, "A0", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 3);
    ck_assert_uint_eq(version_of(s, "a"), 5);
    req_free(&q);

    /* a probe (no groups) answers the state and changes nothing */
    req_init(&q, "g1", 1, 4);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.term, 1);
    ck_assert_uint_eq(st.index, 3);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(refusals_change_nothing)
{
    shard *s = open_shard(tu_tmpdir());
    shard_replica *r = NULL;
    shard_repl_state st;
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    req_init(&q, "g1", 2, 1);
    req_group(&q);
    req_rec(&q, "k", 100, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    req_free(&q);

    /* an older term: a former primary */
    req_init(&q, "g1", 1, 2);
    req_group(&q);
    req_rec(&q, "old", 200, "x", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "stale term"));
    ck_assert_uint_eq(st.term, 2); /* the answer says what is held */
    ck_assert_uint_eq(st.index, 1);
    ck_assert_uint_eq(version_of(s, "old"), 0);
    req_free(&q);

    /* a gap: index 3 while 1 is the last */
    req_init(&q, "g1", 2, 3);
    req_group(&q);
    req_rec(&q, "gap", 300, "x", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "gap"));
    ck_assert_uint_eq(st.index, 1);
    ck_assert_uint_eq(version_of(s, "gap"), 0);
    req_free(&q);

    /* another group's stream */
    req_init(&q, "g2", 2, 2);
    req_group(&q);
    req_rec(&q, "other", 300, "x", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "group"));
    req_free(&q);

    /* a record whose version disagrees with its value: the whole request goes */
    req_init(&q, "g1", 2, 2);
    req_group(&q);
    req_rec(&q, "good", 300, "x", false);
    req_rec(&q, "bad", 301, "x", false);
    q.r[0][1].version = 999;
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_CORRUPT);
    ck_assert_ptr_nonnull(strstr(err, "groups[0].records[1].version"));
    ck_assert_uint_eq(version_of(s, "good"), 0);
    req_free(&q);

    /* a record aimed at the reserved state key */
    req_init(&q, "g1", 2, 2);
    req_group(&q);
    req_rec(&q, "x", 300, "x", false);
    q.r[0][0].key.data = (uint8_t *)SHARD_REPL_STATE_KEY;
    q.r[0][0].key.len = SHARD_REPL_STATE_KEY_LEN;
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "reserved"));
    req_free(&q);

    /* a value that is not a record */
    req_init(&q, "g1", 2, 2);
    req_group(&q);
    req_rec(&q, "x", 300, "x", false);
    q.r[0][0].value.len = 1;
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_CORRUPT);
    req_free(&q);

    /* a new term resending a held index: divergence (the primary repairs by a catch-up) */
    req_init(&q, "g1", 3, 1);
    req_group(&q);
    req_rec(&q, "k", 150, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "divergence"));
    ck_assert_uint_eq(version_of(s, "k"), 100);
    req_free(&q);

    /* a probe of a new term at a held index: refused too (it would relabel index 1) */
    req_init(&q, "g1", 3, 1);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err, "divergence"));
    ck_assert_uint_eq(st.term, 2);

    /* term 0 and index 0 are not valid */
    req_init(&q, "g1", 0, 2);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);
    req_init(&q, "g1", 2, 0);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);

    shard_replica_state(r, &st);
    ck_assert_uint_eq(st.term, 2);
    ck_assert_uint_eq(st.index, 1);

    /* a new term continuing at last + 1 is taken, and the older one refused after it */
    req_init(&q, "g1", 3, 2);
    req_group(&q);
    req_rec(&q, "k", 150, "v3", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.term, 3);
    ck_assert_uint_eq(st.index, 2);
    req_free(&q);
    req_init(&q, "g1", 2, 3);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(resend_is_idempotent)
{
    shard *s = open_shard(tu_tmpdir());
    shard_replica *r = NULL;
    shard_repl_state st;
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "", &r), OM_OK); /* "" takes any group id */
    req_init(&q, "any", 1, 1);
    for (int g = 0; g < 3; g++) {
        req_group(&q);
        req_rec(&q, "k", 10 + (uint64_t)g, "v", false);
    }
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 3);
    ck_assert_uint_eq(version_of(s, "k"), 12);
    /* the same request again: nothing reapplied (k would go back to 10 or 11) */
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 3);
    ck_assert_uint_eq(version_of(s, "k"), 12);
    req_free(&q);

    /* overlapping: [2, 5) -- only 4 applies */
    req_init(&q, "any", 1, 2);
    req_group(&q);
    req_rec(&q, "k", 11, "v", false);
    req_group(&q);
    req_rec(&q, "k", 12, "v", false);
    req_group(&q);
    req_rec(&q, "k", 13, "v", false);
    req_rec(&q, "j", 13, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 4);
    ck_assert_uint_eq(version_of(s, "k"), 13);
    ck_assert_uint_eq(version_of(s, "j"), 13);
    req_free(&q);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(state_survives_restart)
{
    const char *dir = tu_tmpdir();
    shard *s = open_shard(dir);
    shard_replica *r = NULL;
    shard_repl_state st;
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    req_init(&q, "g1", 7, 1);
    req_group(&q);
    req_rec(&q, "a", 70, "v", false);
    req_group(&q);
    req_rec(&q, "b", 71, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    req_free(&q);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);

    s = open_shard(dir);
    ck_assert_int_eq(shard_repl_state_load(shard_db(s), &st), OM_OK);
    ck_assert_uint_eq(st.term, 7);
    ck_assert_uint_eq(st.index, 2);
    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    shard_replica_state(r, &st);
    ck_assert_uint_eq(st.index, 2);
    ck_assert_uint_eq(version_of(s, "a"), 70);
    ck_assert_uint_eq(version_of(s, "b"), 71);
    /* it goes on from there, and a resend of 2 is still known */
    req_init(&q, "g1", 7, 2);
    req_group(&q);
    req_rec(&q, "b", 71, "v", false);
    req_group(&q);
    req_rec(&q, "c", 72, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 3);
    req_free(&q);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

/* Make the last group of q a catch-up page instead (its records, in key order). */
static void
req_as_page(req *q, Objmeta__CatchUpPage *pg, const char *after, const char *last,
            uint64_t snap_index, bool done, om_buf *kbuf)
{
    Objmeta__ReplicateGroup *g = q->rq.n_groups > 0 ? &q->g[q->rq.n_groups - 1] : NULL;

    objmeta__catch_up_page__init(pg);
    pg->snapshot_index = snap_index;
    pg->done = done;
    if (after[0] != '\0') {
        ck_assert_int_eq(shard_lsm_key(S("bkt"), S(after), &kbuf[0]), OM_OK);
        pg->after_key.data = kbuf[0].p;
        pg->after_key.len = kbuf[0].n;
    }
    if (last[0] != '\0') {
        ck_assert_int_eq(shard_lsm_key(S("bkt"), S(last), &kbuf[1]), OM_OK);
        pg->last_key.data = kbuf[1].p;
        pg->last_key.len = kbuf[1].n;
    }
    if (g != NULL) {
        pg->records = g->records;
        pg->n_records = g->n_records;
        q->rq.n_groups = 0;
    }
    q->rq.catch_up = pg;
}

START_TEST(catch_up_pages_replace_ranges)
{
    shard *s = open_shard(tu_tmpdir());
    shard_replica *r = NULL;
    shard_repl_state st;
    Objmeta__CatchUpPage pg;
    om_buf kb[2] = {OM_BUF_INIT, OM_BUF_INIT};
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    /* what the backup holds: a, c, e, x (some diverge from the primary) */
    req_init(&q, "g1", 1, 1);
    req_group(&q);
    req_rec(&q, "a", 10, "old", false);
    req_rec(&q, "c", 11, "old", false);
    req_rec(&q, "e", 12, "old", false);
    req_rec(&q, "x", 13, "old", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    req_free(&q);

    /* page 1: ("", d] holds a (newer) and b: c goes, e and x stay */
    req_init(&q, "g1", 2, 0);
    req_group(&q);
    req_rec(&q, "a", 20, "new", false);
    req_rec(&q, "b", 21, "new", false);
    req_as_page(&q, &pg, "", "d", 50, false, kb);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.term, 2);
    ck_assert_uint_eq(st.index, 1); /* the index waits for the last page */
    ck_assert_uint_eq(version_of(s, "a"), 20);
    ck_assert_uint_eq(version_of(s, "b"), 21);
    ck_assert_uint_eq(version_of(s, "c"), 0);
    ck_assert_uint_eq(version_of(s, "e"), 12);
    /* the same page again: idempotent */
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(version_of(s, "a"), 20);
    req_free(&q);

    /* a page whose records leave its range is refused whole */
    req_init(&q, "g1", 2, 0);
    req_group(&q);
    req_rec(&q, "f", 30, "new", false);
    req_rec(&q, "z", 31, "new", false);
    req_as_page(&q, &pg, "d", "g", 50, false, kb);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(err, "catch_up.records[1]"));
    ck_assert_uint_eq(version_of(s, "f"), 0);
    req_free(&q);

    /* the last page: (d, end) holds e (a tombstone) and f; x goes; the index becomes 50 */
    req_init(&q, "g1", 2, 0);
    req_group(&q);
    req_rec(&q, "e", 40, NULL, true);
    req_rec(&q, "f", 41, "new", false);
    req_as_page(&q, &pg, "d", "", 50, true, kb);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 50);
    ck_assert_uint_eq(version_of(s, "e"), 0);
    ck_assert_uint_eq(version_of(s, "f"), 41);
    ck_assert_uint_eq(version_of(s, "x"), 0);
    ck_assert_uint_eq(version_of(s, "a"), 20);
    req_free(&q);
    /* the state key was not deleted by the pages: the stream continues at 51 */
    ck_assert_int_eq(shard_repl_state_load(shard_db(s), &st), OM_OK);
    ck_assert_uint_eq(st.index, 50);
    req_init(&q, "g1", 2, 51);
    req_group(&q);
    req_rec(&q, "g", 60, "v", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 51);
    req_free(&q);
    /* an older term's page is refused */
    req_init(&q, "g1", 1, 0);
    req_as_page(&q, &pg, "", "", 60, true, kb);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_PRECONDITION);
    ck_assert_uint_eq(version_of(s, "g"), 60);
    om_buf_free(&kb[0]);
    om_buf_free(&kb[1]);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

START_TEST(state_key_is_reserved)
{
    om_slice k = om_slice_make((const uint8_t *)SHARD_REPL_STATE_KEY, SHARD_REPL_STATE_KEY_LEN);
    ring_shard rs[2] = {{"s1", "127.0.0.1:1", 1}, {"s2", "127.0.0.1:2", 1}};
    ring *r1 = NULL, *r2 = NULL;
    shard_mig *m1 = NULL, *m2 = NULL;
    om_buf v = OM_BUF_INIT;
    char err[128];
    lsm_batch *b = NULL;

    ck_assert(shard_key_is_reserved(k));
    /* no valid address makes a reserved key */
    ck_assert_int_eq(shard_lsm_key(S("bkt"), S("\x01"), &v), OM_OK);
    ck_assert(!shard_key_is_reserved(om_buf_slice(&v)));
    /* whichever shard the ring names for its hash, both keep it */
    ck_assert_int_eq(ring_new(rs, 2, 16, 1, &r1, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(ring_new(rs, 2, 16, 1, &r2, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_mig_new("s1", NULL, &m1), OM_OK);
    ck_assert_int_eq(shard_mig_new("s2", NULL, &m2), OM_OK);
    ck_assert_int_eq(shard_mig_install(m1, r1, NULL, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(shard_mig_install(m2, r2, NULL, err, sizeof(err)), OM_OK);
    ck_assert_int_eq(lsm_batch_new(&b), OM_OK);
    ck_assert_int_eq(shard_repl_state_put(b, &(shard_repl_state){.term = 1, .index = 9}), OM_OK);
    ck_assert_int_eq(shard_mig_compaction_filter(m1, 0, k, S("x")), LSM_FILTER_KEEP);
    ck_assert_int_eq(shard_mig_compaction_filter(m2, 0, k, S("x")), LSM_FILTER_KEEP);
    lsm_batch_free(b);
    shard_mig_free(m1);
    shard_mig_free(m2);
    ring_unref(r1);
    ring_unref(r2);
    om_buf_free(&v);
}
END_TEST

/*
 * A purge record (no value, version 0: a key moved to another group, deleted by the primary's
 * cleanup, shard/mig_jobs.c) deletes the key outright; a value-less record with a version, or
 * in a catch-up page, is refused and changes nothing.
 */
START_TEST(purge_records_delete)
{
    shard *s = open_shard(tu_tmpdir());
    shard_replica *r = NULL;
    shard_repl_state st;
    Objmeta__CatchUpPage pg;
    om_buf kb[2] = {OM_BUF_INIT, OM_BUF_INIT};
    om_buf raw = OM_BUF_INIT;
    char err[256];
    req q;

    ck_assert_int_eq(shard_replica_open(s, "g1", &r), OM_OK);
    req_init(&q, "g1", 1, 1);
    req_group(&q);
    req_rec(&q, "a", 10, "A", false);
    req_rec(&q, "b", 11, "B", false);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    req_free(&q);

    /* a value-less record with a version: refused, nothing changes */
    req_init(&q, "g1", 1, 2);
    req_group(&q);
    req_rec(&q, "a", 12, "x", false);
    q.r[0][0].value.len = 0;
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_CORRUPT);
    ck_assert_uint_eq(version_of(s, "a"), 10);
    /* version 0: a purge, and the key is gone -- not a tombstone, nothing at all */
    q.r[0][0].version = 0;
    ck_assert_int_eq(apply(r, &q, &st, err), OM_OK);
    ck_assert_uint_eq(st.index, 2);
    ck_assert_uint_eq(version_of(s, "a"), 0);
    ck_assert_uint_eq(version_of(s, "b"), 11);
    ck_assert_int_eq(lsm_get(shard_db(s), NULL, om_buf_slice(&q.key[0][0]), &raw), OM_E_NOTFOUND);
    req_free(&q);

    /* a page holds records; an empty value there is refused */
    req_init(&q, "g1", 1, 3);
    req_group(&q);
    req_rec(&q, "b", 11, "B", false);
    q.r[0][0].value.len = 0;
    q.r[0][0].version = 0;
    req_as_page(&q, &pg, "", "", 2, true, kb);
    ck_assert_int_eq(apply(r, &q, &st, err), OM_E_INVALID);
    ck_assert_uint_eq(version_of(s, "b"), 11);
    req_free(&q);
    om_buf_free(&kb[0]);
    om_buf_free(&kb[1]);
    om_buf_free(&raw);
    shard_replica_close(r);
    ck_assert_int_eq(shard_close(s), OM_OK);
}
END_TEST

static Suite *
replica_suite(void)
{
    Suite *s = suite_create("shard-replica");
    TCase *tc = tcase_create("backup");
    tcase_add_test(tc, apply_in_order_exactly);
    tcase_add_test(tc, refusals_change_nothing);
    tcase_add_test(tc, resend_is_idempotent);
    tcase_add_test(tc, state_survives_restart);
    tcase_add_test(tc, catch_up_pages_replace_ranges);
    tcase_add_test(tc, state_key_is_reserved);
    tcase_add_test(tc, purge_records_delete);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(replica_suite());
}
