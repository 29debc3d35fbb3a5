/*
 * tests/shard/it_shard_list.c -- ListObjectsV2 through the real objmeta-shard
 * against an oracle computed here from random keys: prefixes, delimiters,
 * page sizes, start_after, continuation across pages, and tokens that must be
 * refused (garbage, tampered, from another listing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

#define NKEYS 300

typedef struct item {
    char *s;
    bool is_prefix;
} item;

static int
cmp_item(const void *a, const void *b)
{
    return strcmp(((const item *)a)->s, ((const item *)b)->s); /* bytewise = UTF-8 order */
}

static int
oracle(const item *live, int n, const char *prefix, const char *delim, const char *after, item *out)
{
    size_t pn = strlen(prefix), dn = strlen(delim);
    int m = 0;

    for (int i = 0; i < n; i++) {
        const char *k = live[i].s;
        if (strncmp(k, prefix, pn) != 0 || strcmp(k, after) <= 0)
            continue;
        const char *d = dn ? strstr(k + pn, delim) : NULL;
        if (d != NULL) {
            size_t cn = (size_t)(d - k) + dn;
            if (m > 0 && out[m - 1].is_prefix && strlen(out[m - 1].s) == cn &&
                strncmp(out[m - 1].s, k, cn) == 0)
                continue;
            out[m++] = (item){strndup(k, cn), true};
        } else {
            out[m++] = (item){strdup(k), false};
        }
    }
    return m;
}

START_TEST(list_against_oracle)
{
    static const char *alphabet[] = {"a", "b", "/", "-", "\xc3\xa9", "z"};
    static const char *delims[] = {"", "/", "a/", "\xc3\xa9"};
    static const char *const extra[] = {"--sync-mode=none", NULL};
    uint64_t seed = tu_seed("list_against_oracle");
    tu_proc *p = it_start_shard(NULL, extra);
    omc_client *c = it_client(p);
    item *all = calloc(NKEYS, sizeof(item)), *live = calloc(NKEYS, sizeof(item));
    item *want = calloc(2 * NKEYS, sizeof(item));
    int n_all = 0, n_live = 0, total_pages = 0, total_items = 0;

    for (int i = 0; i < NKEYS; i++) {
        char k[32];
        int len = 1 + (int)(tu_rand(&seed) % 6), n = 0;
        for (int j = 0; j < len; j++)
            n += snprintf(k + n, sizeof(k) - (size_t)n, "%s", alphabet[tu_rand(&seed) % 6]);
        ck_assert_int_eq(omc_store(c, "lst", k, om_slice_from_str(k), NULL, NULL), OM_OK);
        ck_assert_int_eq(omc_store(c, "lst0", k, om_slice_from_str("decoy"), NULL, NULL), OM_OK);
        bool dup = false;
        for (int j = 0; j < n_all && !dup; j++)
            dup = strcmp(all[j].s, k) == 0;
        if (!dup)
            all[n_all++] = (item){strdup(k), false};
    }
    for (int i = 0; i < n_all; i++) {
        if (tu_rand(&seed) % 5 == 0)
            ck_assert_int_eq(omc_delete(c, "lst", all[i].s, NULL, NULL), OM_OK);
        else
            live[n_live++] = (item){strdup(all[i].s), false};
    }
    qsort(live, (size_t)n_live, sizeof(item), cmp_item);

    for (int q = 0; q < 60; q++) {
        char prefix[32] = "", after[32] = "";
        const char *delim = delims[tu_rand(&seed) % 4];
        uint32_t page = tu_rand(&seed) % 4 == 0 ? 0 : (uint32_t)(1 + tu_rand(&seed) % 9);
        if (tu_rand(&seed) % 2) {
            const char *k = live[tu_rand(&seed) % (uint64_t)n_live].s;
            size_t pn = tu_rand(&seed) % (strlen(k) + 1);
            while (!om_utf8_valid(om_slice_make(k, pn)))
                pn--;
            memcpy(prefix, k, pn);
            prefix[pn] = 0;
        }
        if (tu_rand(&seed) % 3 == 0)
            snprintf(after, sizeof(after), "%s", all[tu_rand(&seed) % (uint64_t)n_all].s);
        int m = oracle(live, n_live, prefix, delim, after, want), got = 0, pages = 0;
        omc_list_opts o = {
            .prefix = prefix, .delimiter = delim, .start_after = after, .max_keys = page};
        char *token = NULL;
        for (;;) {
            omc_list_page pg;
            ck_assert_msg(omc_list(c, "lst", &o, &pg) == OM_OK, "query %d: %s", q,
                          omc_last_message(c));
            pages++;
            ck_assert_uint_eq(pg.key_count, pg.n_entries + pg.n_common_prefixes);
            /* entries and prefixes interleave in key order: merge them back */
            size_t ei = 0, pi = 0;
            while (ei < pg.n_entries || pi < pg.n_common_prefixes) {
                bool take_prefix =
                    ei == pg.n_entries || (pi < pg.n_common_prefixes &&
                                           strcmp(pg.common_prefixes[pi], pg.entries[ei].key) < 0);
                const char *s = take_prefix ? pg.common_prefixes[pi++] : pg.entries[ei++].key;
                ck_assert_msg(got < m, "query %d: more items than the oracle (%s)", q, s);
                ck_assert_msg(strcmp(s, want[got].s) == 0 && take_prefix == want[got].is_prefix,
                              "query %d prefix='%s' delim='%s' after='%s' page=%u item %d: got "
                              "'%s' want '%s'",
                              q, prefix, delim, after, page, got, s, want[got].s);
                got++;
            }
            if (!pg.is_truncated) {
                ck_assert_str_eq(pg.next_continuation_token, "");
                omc_list_page_free(&pg);
                break;
            }
            ck_assert_uint_eq(pg.key_count, page == 0 ? 1000 : page);
            free(token);
            token = strdup(pg.next_continuation_token);
            o.continuation_token = token;
            omc_list_page_free(&pg);
            ck_assert_int_le(pages, 2 * NKEYS);
        }
        ck_assert_msg(got == m, "query %d: got %d items, oracle %d", q, got, m);
        total_pages += pages;
        total_items += got;
        free(token);
        for (int i = 0; i < m; i++)
            free(want[i].s);
    }
    printf("list: %d keys (%d live), 60 queries, %d pages, %d items checked\n", n_all, n_live,
           total_pages, total_items);
    for (int i = 0; i < n_all; i++)
        free(all[i].s);
    for (int i = 0; i < n_live; i++)
        free(live[i].s);
    free(all);
    free(live);
    free(want);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

START_TEST(bad_tokens_are_refused)
{
    static const char *const extra[] = {"--sync-mode=none", NULL};
    tu_proc *p = it_start_shard(NULL, extra);
    omc_client *c = it_client(p);
    omc_list_page pg;
    char key[8], *token;

    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "d/k%d", i);
        ck_assert_int_eq(omc_store(c, "tok", key, om_slice_from_str("v"), NULL, NULL), OM_OK);
    }
    omc_list_opts o = {.prefix = "d/", .max_keys = 3};
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_OK);
    ck_assert(pg.is_truncated);
    token = strdup(pg.next_continuation_token);
    omc_list_page_free(&pg);

    o.continuation_token = "this-is-not-a-token";
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "continuation_token"));
    /* flip one character */
    char *bad = strdup(token);
    bad[strlen(bad) / 2] = bad[strlen(bad) / 2] == 'A' ? 'B' : 'A';
    o.continuation_token = bad;
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_E_INVALID);
    /* a token of another listing (other prefix) */
    o.continuation_token = token;
    o.prefix = "d/k";
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "another"));
    /* and the right one continues */
    o.prefix = "d/";
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_OK);
    ck_assert_str_eq(pg.entries[0].key, "d/k3");
    omc_list_page_free(&pg);
    /* max_keys above 1000 is clamped, bad bucket refused */
    o = (omc_list_opts){.max_keys = 5000};
    ck_assert_int_eq(omc_list(c, "tok", &o, &pg), OM_OK);
    ck_assert_uint_eq(pg.n_entries, 10);
    omc_list_page_free(&pg);
    ck_assert_int_eq(omc_list(c, "TOK", NULL, &pg), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "bucket"));
    free(bad);
    free(token);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

static Suite *
list_suite(void)
{
    Suite *s = suite_create("shard-list");
    TCase *tc = tcase_create("list");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, list_against_oracle);
    tcase_add_test(tc, bad_tokens_are_refused);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(list_suite());
}
