/*
 * tests/lsm/test_merge.c -- unit suite for lsm/merge_iter.c: random seeded
 * children (block iterators over sorted runs) merged and compared with a
 * sorted oracle, seeks, ties resolved in favour of earlier children, and
 * error propagation from a child.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/block.h"
#include "lsm/lsm_int.h"
#include "tu.h"
#include "util/assert.h"

typedef struct kv {
    om_buf k, v;
    int child;
} kv;

static int
kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    int r = lsm_ikey_cmp(om_buf_slice(&x->k), om_buf_slice(&y->k));

    return r != 0 ? r : (x->child - y->child);
}

/* A child: a block over a sorted run (the block keeps a heap copy of its bytes). */
static lsm_block *
run_block(kv *run, size_t n)
{
    lsm_block_builder b;
    lsm_block *blk = calloc(1, sizeof(*blk));
    om_slice out;
    uint8_t *copy;

    qsort(run, n, sizeof(kv), kv_cmp);
    lsm_block_builder_init(&b, 4);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(
            lsm_block_builder_add(&b, om_buf_slice(&run[i].k), om_buf_slice(&run[i].v)), OM_OK);
    ck_assert_int_eq(lsm_block_builder_finish(&b, &out), OM_OK);
    copy = malloc(out.n);
    memcpy(copy, out.p, out.n);
    ck_assert_int_eq(lsm_block_parse(blk, copy, out.n, true), OM_OK);
    lsm_block_builder_fini(&b);
    return blk;
}

static void
mk(kv *e, uint64_t user, uint64_t seq, int child)
{
    char uk[32];

    snprintf(uk, sizeof(uk), "k%06llu", (unsigned long long)user);
    memset(e, 0, sizeof(*e));
    ck_assert_int_eq(lsm_ikey_append(&e->k, om_slice_from_str(uk), seq, LSM_TYPE_VAL), OM_OK);
    ck_assert_int_eq(om_buf_printf(&e->v, "c%d-s%llu", child, (unsigned long long)seq), OM_OK);
    e->child = child;
}

/* An internal key (a value of type LSM_TYPE_VAL). */
static om_buf
ikey_of(const char *user, uint64_t seq)
{
    om_buf b = OM_BUF_INIT;

    ck_assert_int_eq(lsm_ikey_append(&b, om_slice_from_str(user), seq, LSM_TYPE_VAL), OM_OK);
    return b;
}

START_TEST(merge_matches_sorted_oracle)
{
    uint64_t rng = tu_seed("merge_matches_sorted_oracle");

    for (int round = 0; round < 30; round++) {
        int nchild = (int)(tu_rand(&rng) % 9); /* 0..8 children, some empty */
        size_t total = 0, counts[8];
        kv *all = calloc(8 * 400, sizeof(kv)), *runs[8];
        lsm_block *blocks[8];
        lsm_it *children[8], *m;
        size_t i = 0;

        for (int c = 0; c < nchild; c++) {
            counts[c] = (size_t)(tu_rand(&rng) % 400);
            runs[c] = &all[total];
            for (size_t j = 0; j < counts[c]; j++) {
                /* Distinct (user, seq) across children: seq encodes the child. */
                mk(&all[total + j], tu_rand(&rng) % 500, (tu_rand(&rng) % 1000) * 8 + (uint64_t)c,
                   c);
            }
            /* Drop duplicates inside one run (a source never holds one ikey twice). */
            qsort(runs[c], counts[c], sizeof(kv), kv_cmp);
            size_t w = 0;
            for (size_t j = 0; j < counts[c]; j++) {
                if (w > 0 && lsm_ikey_cmp(om_buf_slice(&runs[c][w - 1].k),
                                          om_buf_slice(&runs[c][j].k)) == 0) {
                    om_buf_free(&runs[c][j].k);
                    om_buf_free(&runs[c][j].v);
                    continue;
                }
                runs[c][w++] = runs[c][j];
            }
            for (size_t j = w; j < counts[c]; j++)
                memset(&runs[c][j], 0, sizeof(kv));
            counts[c] = w;
            blocks[c] = run_block(runs[c], counts[c]);
            ck_assert_int_eq(lsm_block_iter_new(blocks[c], LSM_CMP_IKEY, &children[c]), OM_OK);
            total += 400;
        }
        /* The oracle: everything, sorted. */
        kv *oracle = calloc(total + 1, sizeof(kv));
        size_t on = 0;
        for (int c = 0; c < nchild; c++)
            for (size_t j = 0; j < counts[c]; j++)
                oracle[on++] = runs[c][j];
        qsort(oracle, on, sizeof(kv), kv_cmp);

        ck_assert_int_eq(lsm_merge_it_new(children, nchild, &m), OM_OK);
        for (lsm_it_seek_first(m); lsm_it_valid(m); lsm_it_next(m), i++) {
            ck_assert_uint_lt(i, on);
            ck_assert(om_slice_eq(lsm_it_key(m), om_buf_slice(&oracle[i].k)));
            ck_assert(om_slice_eq(lsm_it_value(m), om_buf_slice(&oracle[i].v)));
        }
        ck_assert_uint_eq(i, on);
        ck_assert_int_eq(lsm_it_status(m), OM_OK);
        /* Seeks: to existing keys and to keys between them. */
        for (int s = 0; s < 50 && on > 0; s++) {
            kv probe;
            size_t lo = 0;

            mk(&probe, tu_rand(&rng) % 510, tu_rand(&rng) % 9000, 0);
            while (lo < on && lsm_ikey_cmp(om_buf_slice(&oracle[lo].k), om_buf_slice(&probe.k)) < 0)
                lo++;
            lsm_it_seek(m, om_buf_slice(&probe.k));
            if (lo == on) {
                ck_assert(!lsm_it_valid(m));
            } else {
                ck_assert(lsm_it_valid(m));
                ck_assert(om_slice_eq(lsm_it_key(m), om_buf_slice(&oracle[lo].k)));
                if (lo + 1 < on) {
                    lsm_it_next(m);
                    ck_assert(om_slice_eq(lsm_it_key(m), om_buf_slice(&oracle[lo + 1].k)));
                }
            }
            om_buf_free(&probe.k);
            om_buf_free(&probe.v);
        }
        lsm_it_free(m);
        for (int c = 0; c < nchild; c++) {
            lsm_block_free(blocks[c]);
            free(blocks[c]);
        }
        for (size_t j = 0; j < 8 * 400; j++) {
            om_buf_free(&all[j].k);
            om_buf_free(&all[j].v);
        }
        free(all);
        free(oracle);
    }
}
END_TEST

START_TEST(merge_ties_prefer_earlier_children)
{
    kv a[3], b[3];
    lsm_block *ba, *bb;
    lsm_it *children[2], *m;
    const char *want[] = {"c0-s5", "c1-s5", "c0-s4", "c1-s3", "c0-s2", "c1-s2"};
    int i = 0;

    /* The same internal keys in two children: child 0 (newer) comes first. */
    mk(&a[0], 1, 5, 0);
    mk(&a[1], 1, 4, 0);
    mk(&a[2], 1, 2, 0);
    mk(&b[0], 1, 5, 1);
    mk(&b[1], 1, 3, 1);
    mk(&b[2], 1, 2, 1);
    ba = run_block(a, 3);
    bb = run_block(b, 3);
    ck_assert_int_eq(lsm_block_iter_new(ba, LSM_CMP_IKEY, &children[0]), OM_OK);
    ck_assert_int_eq(lsm_block_iter_new(bb, LSM_CMP_IKEY, &children[1]), OM_OK);
    ck_assert_int_eq(lsm_merge_it_new(children, 2, &m), OM_OK);
    for (lsm_it_seek_first(m); lsm_it_valid(m); lsm_it_next(m), i++)
        ck_assert(om_slice_eq(lsm_it_value(m), om_slice_from_str(want[i])));
    ck_assert_int_eq(i, 6);
    lsm_it_free(m);
    for (int j = 0; j < 3; j++) {
        om_buf_free(&a[j].k);
        om_buf_free(&a[j].v);
        om_buf_free(&b[j].k);
        om_buf_free(&b[j].v);
    }
    lsm_block_free(ba);
    lsm_block_free(bb);
    free(ba);
    free(bb);
}
END_TEST

START_TEST(merge_propagates_child_errors)
{
    kv a[20];
    lsm_block *ba, bad;
    uint8_t junk[64];
    lsm_it *children[2], *m;
    int n = 0;

    for (int j = 0; j < 20; j++)
        mk(&a[j], (uint64_t)j, 1, 0);
    ba = run_block(a, 20);
    /* A block whose only entry claims more bytes than there are. */
    memset(junk, 0, sizeof(junk));
    junk[0] = 0;
    junk[1] = 100;
    junk[2] = 0;
    om_put_fixed32(junk + 56, 0);
    om_put_fixed32(junk + 60, 1);
    ck_assert_int_eq(lsm_block_parse(&bad, junk, sizeof(junk), false), OM_OK);
    ck_assert_int_eq(lsm_block_iter_new(ba, LSM_CMP_IKEY, &children[0]), OM_OK);
    ck_assert_int_eq(lsm_block_iter_new(&bad, LSM_CMP_IKEY, &children[1]), OM_OK);
    ck_assert_int_eq(lsm_merge_it_new(children, 2, &m), OM_OK);
    for (lsm_it_seek_first(m); lsm_it_valid(m); lsm_it_next(m))
        n++;
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(lsm_it_status(m), OM_E_CORRUPT);
    lsm_it_free(m);
    for (int j = 0; j < 20; j++) {
        om_buf_free(&a[j].k);
        om_buf_free(&a[j].v);
    }
    lsm_block_free(ba);
    free(ba);
}
END_TEST

/* A child that yields its keys in the given order, sorted or not. */
typedef struct list_it {
    lsm_it base;
    const om_buf *keys;
    int n, i;
} list_it;

static bool
list_valid(const lsm_it *it)
{
    const list_it *l = (const list_it *)it;
    return l->i < l->n;
}

static void
list_seek_first(lsm_it *it)
{
    ((list_it *)it)->i = 0;
}

static void
list_seek(lsm_it *it, om_slice ikey)
{
    (void)ikey;
    ((list_it *)it)->i = 0;
}

static void
list_next(lsm_it *it)
{
    ((list_it *)it)->i++;
}

static om_slice
list_key(const lsm_it *it)
{
    const list_it *l = (const list_it *)it;
    return om_buf_slice(&l->keys[l->i]);
}

static om_status
list_status(const lsm_it *it)
{
    (void)it;
    return OM_OK;
}

static void
list_free(lsm_it *it)
{
    (void)it;
}

static const lsm_it_ops list_ops = {.valid = list_valid,
                                    .seek_first = list_seek_first,
                                    .seek = list_seek,
                                    .next = list_next,
                                    .key = list_key,
                                    .value = list_key,
                                    .status = list_status,
                                    .free = list_free};

/*
 * A child that goes backwards breaks the merge's ordering invariant: the
 * merge aborts (OM_ASSERT in merge_next) instead of yielding keys out of
 * order. Registered only where asserts are on.
 */
START_TEST(merge_asserts_children_in_order)
{
    om_buf keys[3] = {ikey_of("b", 1), ikey_of("c", 1), ikey_of("a", 1)}, other = ikey_of("z", 1);
    list_it a = {{&list_ops}, keys, 3, 0}, b = {{&list_ops}, &other, 1, 0};
    lsm_it *children[2] = {&a.base, &b.base}, *m;

    ck_assert_int_eq(lsm_merge_it_new(children, 2, &m), OM_OK);
    lsm_it_seek_first(m);
    lsm_it_next(m); /* b -> c: in order */
    ck_assert(om_slice_eq(lsm_it_key(m), om_buf_slice(&keys[1])));
    lsm_it_next(m); /* c -> a: aborts */
    ck_abort_msg("the merge yielded a key out of order");
}
END_TEST

static Suite *
merge_suite(void)
{
    Suite *s = suite_create("lsm-merge");
    TCase *tc = tcase_create("merge");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, merge_matches_sorted_oracle);
    tcase_add_test(tc, merge_ties_prefer_earlier_children);
    tcase_add_test(tc, merge_propagates_child_errors);
    if (OM_ASSERTS_ON)
        tcase_add_test_raise_signal(tc, merge_asserts_children_in_order, SIGABRT);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(merge_suite());
}
