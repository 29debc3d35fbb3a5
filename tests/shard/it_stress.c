/*
 * tests/shard/it_stress.c -- eight client threads against one real
 * objmeta-shard, every answer checked against a model (issue 16): stores
 * with and without conditions (if-absent, if-version right and wrong),
 * deletes with and without if-version, retrieves, heads, exists, and
 * listings of a prefix page by page with continuation tokens. The shard runs
 * with a 64 KiB write buffer (flushes and compactions all the time) and tiny
 * caches, in the two write modes (loop index _i; shard/README.md): 0 = the
 * pipeline (sync-mode=always: writes on the writer thread, fsyncs on the
 * sync thread, held replies), 1 = synchronous writes on the loop
 * (sync-mode=periodic, every 5 ms) with Retrieve, Head and Exists on the
 * worker pool. Bounded in time: SHARD_STRESS_SECONDS (default 3) per mode. The seed is printed;
 * TU_SEED reruns with the same values and the same operation mix (the interleaving is the
 * scheduler's).
 *
 * The model is tests/harness/tu_model.h (per-key serialised writes, a read
 * may show only the writes between the last that returned before it began
 * and the last that began before it ended). On top, the writer holding a key
 * knows its state (live or not, current version), so the outcome of every
 * conditional write is known in advance: PRECONDITION_FAILED or NOT_FOUND
 * exactly when the rules say so, else OK with a version above the last one.
 * A listing is checked per key of the prefix: listed keys with the size of
 * a put in their window, unlisted ones absent in theirs, in order, once.
 * At the end every key reads back as its last write with its last version,
 * a full listing shows exactly the live keys, and the shard exits 0 on
 * SIGTERM (a sanitizer report would make it exit otherwise).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "it_util.h"
#include "tu_model.h"

#define NPREFIX 8
#define KPP 64 /* keys per prefix */
#define NKEYS (NPREFIX * KPP)
#define NCLIENTS 8
#define BUCKET "stress"

typedef struct stress {
    tu_cmodel *m;
    uint64_t seed;
    char addr[64];
    /* per key, touched only by the thread holding the key (tu_cmodel_take) */
    bool live[NKEYS];
    uint64_t ver[NKEYS];
    atomic_ullong writes, refused, reads, lists, pages;
} stress;

typedef struct client {
    stress *s;
    int id;
    pthread_t th;
} client;

static void
key_name(uint32_t k, char *buf)
{
    snprintf(buf, 16, "p%02u/%05u", k / KPP, k);
}

/* One store or delete of a random key, conditioned or not; false on a failure. */
static bool
st_write(stress *s, omc_client *c, uint64_t *rnd)
{
    uint32_t k = (uint32_t)(tu_rand(rnd) % NKEYS), idx, r = (uint32_t)(tu_rand(rnd) % 20);
    /* 0 = none (half), 1 = if-absent (deletes: none), 2 = if-version right, 3 = wrong */
    uint32_t cond = r < 10 ? 0 : r < 13 ? 1 : r < 18 ? 2 : 3;
    uint8_t val[TU_CMODEL_MAXVAL];
    char key[16];
    bool del, ok;
    uint64_t ver = 0, bad = 0;
    om_status want, st;
    omc_info info;

    if (!tu_cmodel_take(s->m, k, &idx))
        return true; /* another thread writes it */
    key_name(k, key);
    del = tu_cmodel_is_del(s->m, k, idx);
    bad = s->ver[k] + 1 + tu_rand(rnd) % 3; /* a version the key does not have */
    if (del) {
        const uint64_t *ifv = cond == 2 ? &s->ver[k] : cond == 3 ? &bad : NULL;

        want = cond == 3 || (cond == 2 && !s->live[k]) ? OM_E_PRECONDITION
               : s->live[k]                            ? OM_OK
                                                       : OM_E_NOTFOUND;
        st = omc_delete(c, BUCKET, key, ifv, &ver);
    } else {
        omc_store_opts o = {.if_absent = cond == 1,
                            .has_if_version = cond >= 2,
                            .if_version = cond == 2 ? s->ver[k] : bad};

        want = cond == 0 || (cond == 1 && !s->live[k]) || (cond == 2 && s->live[k])
                   ? OM_OK
                   : OM_E_PRECONDITION;
        memset(&info, 0, sizeof(info));
        st = omc_store(c, BUCKET, key, om_slice_make(val, tu_cmodel_value(s->m, k, idx, val)), &o,
                       &info);
        if (st == OM_OK) {
            ver = info.version;
            omc_info_free(&info);
        }
    }
    ok = st == want && (st != OM_OK || ver > s->ver[k]);
    if (!ok) {
        tu_cmodel_fail(s->m,
                       "%s %s (write %u, condition %u, key %s, version %llu): got %s version "
                       "%llu, want %s%s (%s)",
                       del ? "delete" : "store", key, idx, cond, s->live[k] ? "live" : "absent",
                       (unsigned long long)s->ver[k], om_status_str(st), (unsigned long long)ver,
                       om_status_str(want), want == OM_OK ? " with a higher version" : "",
                       omc_last_message(c));
    } else if (st == OM_OK) {
        s->ver[k] = ver;
        s->live[k] = !del;
        atomic_fetch_add(&s->writes, 1);
    } else {
        atomic_fetch_add(&s->refused, 1);
    }
    /*
     * A refused delete of an absent key leaves it absent, which is what write
     * idx (a delete) stands for: it counts as done, or the key would retry
     * the same delete for ever.
     */
    tu_cmodel_release(s->m, k, idx, ok && (st == OM_OK || (del && !s->live[k])));
    return ok;
}

/* A retrieve, head or exists of a random key; false on a failure. */
static bool
st_read(stress *s, omc_client *c, uint64_t *rnd, om_buf *data)
{
    uint32_t k = (uint32_t)(tu_rand(rnd) % NKEYS), r = (uint32_t)(tu_rand(rnd) % 4);
    uint32_t d = tu_cmodel_done(s->m, k), hi;
    char key[16];
    omc_info info;
    bool found = false;
    om_status st;

    key_name(k, key);
    memset(&info, 0, sizeof(info));
    if (r == 0) {
        st = omc_exists(c, BUCKET, key, &found);
        hi = tu_cmodel_started(s->m, k);
        if (st != OM_OK)
            goto fail;
        if (!found)
            return tu_cmodel_check(s->m, "exists", k, d, hi, false, OM_SLICE_NULL, 0) >= 0;
        /* true: some write in the window is a put */
        for (uint32_t i = d < 1 ? 1 : d; i <= hi; i++)
            if (!tu_cmodel_is_del(s->m, k, i))
                return true;
        tu_cmodel_fail(s->m, "exists %s: true, but writes %u..%u are deletes", key, d, hi);
        return false;
    }
    if (r == 1) {
        st = omc_head(c, BUCKET, key, &info);
        hi = tu_cmodel_started(s->m, k);
        if (st == OM_OK) {
            found = tu_cmodel_check_size(s->m, "head", k, d, hi, info.size);
            omc_info_free(&info);
            return found;
        }
    } else {
        st = omc_retrieve(c, BUCKET, key, &info, data);
        hi = tu_cmodel_started(s->m, k);
        if (st == OM_OK) {
            found = info.size == data->n &&
                    tu_cmodel_check(s->m, "retrieve", k, d, hi, true, om_buf_slice(data), 0) >= 0;
            if (info.size != data->n)
                tu_cmodel_fail(s->m, "retrieve %s: size %llu, %zu bytes of data", key,
                               (unsigned long long)info.size, data->n);
            omc_info_free(&info);
            atomic_fetch_add(&s->reads, 1);
            return found;
        }
    }
    if (st == OM_E_NOTFOUND) {
        atomic_fetch_add(&s->reads, 1);
        return tu_cmodel_check(s->m, r == 1 ? "head" : "retrieve", k, d, hi, false, OM_SLICE_NULL,
                               0) >= 0;
    }
fail:
    tu_cmodel_fail(s->m, "read %s: %s (%s)", key, om_status_str(st), omc_last_message(c));
    return false;
}

/*
 * List prefix p page by page (max_keys 1..16), following continuation
 * tokens, and check every key of the prefix; false on a failure.
 */
static bool
st_list(stress *s, omc_client *c, uint64_t *rnd)
{
    uint32_t p = (uint32_t)(tu_rand(rnd) % NPREFIX), d[KPP], hi[KPP], next = 0;
    uint64_t size[KPP];
    bool listed[KPP] = {false};
    char prefix[8], *token = NULL;
    omc_list_opts o = {.prefix = prefix, .max_keys = 1 + (uint32_t)(tu_rand(rnd) % 16)};
    bool ok = true;

    snprintf(prefix, sizeof(prefix), "p%02u/", p);
    for (uint32_t j = 0; j < KPP; j++)
        d[j] = tu_cmodel_done(s->m, p * KPP + j);
    for (int pages = 0; ok; pages++) {
        omc_list_page pg;
        om_status st;

        o.continuation_token = token;
        st = omc_list(c, BUCKET, &o, &pg);
        if (st != OM_OK) {
            tu_cmodel_fail(s->m, "list %s page %d: %s (%s)", prefix, pages, om_status_str(st),
                           omc_last_message(c));
            ok = false;
            break;
        }
        atomic_fetch_add(&s->pages, 1);
        if (pg.n_entries > o.max_keys || pg.n_common_prefixes != 0 || pages > NKEYS) {
            tu_cmodel_fail(s->m, "list %s: page of %zu entries, %zu prefixes (max_keys %u)", prefix,
                           pg.n_entries, pg.n_common_prefixes, o.max_keys);
            ok = false;
        }
        for (size_t e = 0; ok && e < pg.n_entries; e++) {
            char want[16];
            uint32_t j = next;

            /* keys in order, each once: the entry is one of the keys not yet passed */
            for (; j < KPP; j++) {
                key_name(p * KPP + j, want);
                if (strcmp(pg.entries[e].key, want) == 0)
                    break;
            }
            if (j == KPP) {
                tu_cmodel_fail(s->m, "list %s: entry %s out of order or unknown (after key %u)",
                               prefix, pg.entries[e].key, next);
                ok = false;
                break;
            }
            listed[j] = true;
            size[j] = pg.entries[e].size;
            next = j + 1;
        }
        free(token);
        token = pg.is_truncated ? strdup(pg.next_continuation_token) : NULL;
        omc_list_page_free(&pg);
        if (token == NULL)
            break;
    }
    free(token);
    for (uint32_t j = 0; j < KPP; j++)
        hi[j] = tu_cmodel_started(s->m, p * KPP + j);
    for (uint32_t j = 0; ok && j < KPP; j++) {
        if (listed[j])
            ok = tu_cmodel_check_size(s->m, "list", p * KPP + j, d[j], hi[j], size[j]);
        else
            ok = tu_cmodel_check(s->m, "list", p * KPP + j, d[j], hi[j], false, OM_SLICE_NULL, 0) >=
                 0;
    }
    atomic_fetch_add(&s->lists, 1);
    return ok;
}

static void *
st_client(void *arg)
{
    client *cl = arg;
    stress *s = cl->s;
    uint64_t rnd = s->seed * 7919 + (uint64_t)cl->id + 1;
    omc_client *c = NULL;
    om_buf data = OM_BUF_INIT;
    char msg[128] = "";
    bool ok = true;

    if (omc_connect(s->addr, 5000, &c, msg, sizeof(msg)) != OM_OK) {
        tu_cmodel_fail(s->m, "client %d: connect: %s", cl->id, msg);
        return NULL;
    }
    omc_set_timeout(c, 30000);
    while (ok && tu_cmodel_running(s->m)) {
        uint32_t r = (uint32_t)(tu_rand(&rnd) % 20);

        ok = r < 10   ? st_write(s, c, &rnd)
             : r < 18 ? st_read(s, c, &rnd, &data)
                      : st_list(s, c, &rnd);
    }
    om_buf_free(&data);
    omc_close(c);
    return NULL;
}

/* After the clients: every key holds its last write and version; a listing shows the live ones. */
static void
st_check_final(stress *s, omc_client *c)
{
    om_buf data = OM_BUF_INIT;
    omc_list_opts o = {.max_keys = 100};
    char key[16], *token = NULL;
    uint32_t next = 0;

    for (uint32_t k = 0; k < NKEYS; k++) {
        uint32_t d = tu_cmodel_done(s->m, k);
        omc_info info;
        om_status st;

        key_name(k, key);
        memset(&info, 0, sizeof(info));
        st = omc_retrieve(c, BUCKET, key, &info, &data);
        ck_assert_msg(st == OM_OK || st == OM_E_NOTFOUND, "final retrieve %s: %s", key,
                      om_status_str(st));
        ck_assert_msg((st == OM_OK) == s->live[k], "final retrieve %s: %s, model says %s", key,
                      om_status_str(st), s->live[k] ? "live" : "absent");
        tu_cmodel_check(s->m, "final retrieve", k, d, d, st == OM_OK, om_buf_slice(&data), 0);
        if (st == OM_OK) {
            ck_assert_msg(info.version == s->ver[k], "final %s: version %llu, last acked %llu", key,
                          (unsigned long long)info.version, (unsigned long long)s->ver[k]);
            omc_info_free(&info);
        }
    }
    for (;;) {
        omc_list_page pg;

        o.continuation_token = token;
        ck_assert_int_eq(omc_list(c, BUCKET, &o, &pg), OM_OK);
        for (size_t e = 0; e < pg.n_entries; e++) {
            while (next < NKEYS && !s->live[next])
                next++;
            ck_assert_msg(next < NKEYS, "final list: extra key %s", pg.entries[e].key);
            key_name(next, key);
            ck_assert_str_eq(pg.entries[e].key, key);
            next++;
        }
        free(token);
        token = pg.is_truncated ? strdup(pg.next_continuation_token) : NULL;
        omc_list_page_free(&pg);
        if (token == NULL)
            break;
    }
    while (next < NKEYS && !s->live[next])
        next++;
    ck_assert_msg(next == NKEYS, "final list: key %u is live but missing", next);
    om_buf_free(&data);
    ck_assert_msg(tu_cmodel_failure(s->m)[0] == '\0', "%s", tu_cmodel_failure(s->m));
}

START_TEST(eight_clients_against_a_model)
{
    static const char *const extra[2][10] = {
        {"--sync-mode=always", "--write-buffer=64K", "--block-cache=256K", "--row-cache-size=64K",
         "--log-level=warn", NULL},
        {"--sync-mode=periodic", "--sync-period=5ms", "--inline-reads=false", "--write-buffer=64K",
         "--block-cache=256K", "--row-cache-size=64K", "--log-level=warn", NULL}};
    static const char *const names[2] = {"pipeline: writer and sync threads",
                                         "synchronous writes, reads on the workers"};
    static stress s;
    const char *secs = getenv("SHARD_STRESS_SECONDS");
    tu_proc *p = it_start_shard(NULL, extra[_i]);
    client cl[NCLIENTS];
    omc_client *c;
    int status;

    memset(&s, 0, sizeof(s));
    s.seed = tu_seed("shard_stress");
    s.m = tu_cmodel_new(s.seed, NKEYS, secs ? strtoull(secs, NULL, 10) : 3);
    snprintf(s.addr, sizeof(s.addr), "%s", it_addr(p));
    for (int i = 0; i < NCLIENTS; i++) {
        cl[i] = (client){.s = &s, .id = i};
        ck_assert_int_eq(pthread_create(&cl[i].th, NULL, st_client, &cl[i]), 0);
    }
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(cl[i].th, NULL);
    if (tu_cmodel_failure(s.m)[0] != '\0') {
        /* the shard may have died of a sanitizer report: stopping it shows that first */
        tu_proc_stop(p);
        tu_proc_dump_stderr(p);
        ck_abort_msg("seed %llu: %s", (unsigned long long)s.seed, tu_cmodel_failure(s.m));
    }
    printf("shard_stress (%s): writes=%llu refused=%llu reads=%llu lists=%llu pages=%llu\n",
           names[_i], (unsigned long long)s.writes, (unsigned long long)s.refused,
           (unsigned long long)s.reads, (unsigned long long)s.lists, (unsigned long long)s.pages);
    fflush(stdout);
    /* The run did what it is for (a slow sanitizer build still gets this far in 3 s). */
    ck_assert_uint_ge(s.writes, 50);
    ck_assert_uint_ge(s.refused, 5);
    ck_assert_uint_ge(s.reads, 50);
    ck_assert_uint_ge(s.lists, 5);

    c = it_client(p);
    st_check_final(&s, c);
    omc_close(c);
    status = tu_proc_stop(p);
    tu_proc_free(p);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "shard exit status %d", status);
    tu_cmodel_free(s.m);
}
END_TEST

static Suite *
stress_suite(void)
{
    Suite *s = suite_create("shard-stress");
    TCase *tc = tcase_create("stress");

    tcase_set_timeout(tc, 150);
    tcase_add_loop_test(tc, eight_clients_against_a_model, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(stress_suite());
}
