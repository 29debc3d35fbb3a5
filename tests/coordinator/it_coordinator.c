/*
 * tests/coordinator/it_coordinator.c -- integration suite of objmeta-coord
 * with real processes: three objmeta-shard processes (ids s1..s3) behind
 * one objmeta-coord, each on 127.0.0.1 with its own data dir.
 *
 *   routing        every operation through the coordinator lands on the
 *                  shard the ring names (checked by asking each shard
 *                  directly), and shards fence requests by ring epoch
 *   list           List through the coordinator equals an oracle for
 *                  random prefixes, delimiters, max_keys and start_after,
 *                  across continuation pages; per-page shard work is
 *                  bounded; bad tokens get INVALID_ARGUMENT
 *   concurrent     a listing paginated while another client writes and
 *                  deletes never repeats a key and never misses one that
 *                  existed throughout
 *   kill -9        a killed shard's keys answer UNAVAILABLE quickly while
 *                  the others keep working; after a restart every
 *                  acknowledged write is back
 *   restart        a restarted coordinator keeps its ring (and ignores a
 *                  different --shards); without a ring it refuses to start
 *   http           /healthz and /metrics
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/client.h"
#include "partitioner/ring.h"
#include "rpc/rpc.h"
#include "tu.h"

#define NSHARDS 3
#define BUCKET "it-bucket"

typedef struct cluster {
    tu_proc *shard[NSHARDS];
    char shard_addr[NSHARDS][64];
    char shard_id[NSHARDS][16];
    tu_proc *coord;
    char coord_addr[64];
    char shards_arg[512];
} cluster;

static void
shard_start(cluster *cl, int i, const char *sync_mode, const char *data_dir, int port)
{
    char idarg[32], syncarg[48], listen[64];
    const char *extra[5] = {idarg, syncarg, NULL, NULL, NULL};
    tu_proc_opts o = {0};

    snprintf(cl->shard_id[i], sizeof(cl->shard_id[i]), "s%d", i + 1);
    snprintf(idarg, sizeof(idarg), "--id=%s", cl->shard_id[i]);
    snprintf(syncarg, sizeof(syncarg), "--sync-mode=%s", sync_mode);
    if (port > 0) {
        /* its old rpc port, and an HTTP port of the kernel's: port + 1000 may be another's now */
        snprintf(listen, sizeof(listen), "--listen=127.0.0.1:%d", port);
        extra[2] = listen;
        extra[3] = "--http-listen=127.0.0.1:0";
    }
    o.extra = extra;
    o.data_dir = data_dir;
    cl->shard[i] = tu_proc_start("$OBJMETA_SHARD", &o);
    snprintf(cl->shard_addr[i], sizeof(cl->shard_addr[i]), "127.0.0.1:%d",
             tu_proc_port(cl->shard[i], "rpc"));
}

static void
coord_start(cluster *cl, const char *data_dir, const char *shards_arg)
{
    const char *extra[] = {shards_arg,          "--health-interval=100ms", "--health-timeout=500ms",
                           "--startup-wait=5s", "--shard-timeout=8s",      NULL};
    tu_proc_opts o = {0};

    o.extra = extra;
    o.data_dir = data_dir;
    cl->coord = tu_proc_start("$OBJMETA_COORD", &o);
    snprintf(cl->coord_addr, sizeof(cl->coord_addr), "127.0.0.1:%d",
             tu_proc_port(cl->coord, "rpc"));
}

static void
cluster_start(cluster *cl, const char *sync_mode)
{
    size_t off;

    memset(cl, 0, sizeof(*cl));
    for (int i = 0; i < NSHARDS; i++)
        shard_start(cl, i, sync_mode, NULL, 0);
    off = (size_t)snprintf(cl->shards_arg, sizeof(cl->shards_arg), "--shards=");
    for (int i = 0; i < NSHARDS; i++)
        off += (size_t)snprintf(cl->shards_arg + off, sizeof(cl->shards_arg) - off, "%s%s=%s",
                                i ? "," : "", cl->shard_id[i], cl->shard_addr[i]);
    coord_start(cl, NULL, cl->shards_arg);
}

/*
 * Stop the coordinator, then the shards; each must exit 0 (under the
 * sanitizers that also means no leak or error report in the servers).
 */
static void
cluster_stop(cluster *cl)
{
    tu_proc *all[NSHARDS + 1] = {cl->coord};

    for (int i = 0; i < NSHARDS; i++)
        all[i + 1] = cl->shard[i];
    for (int i = 0; i < NSHARDS + 1; i++) {
        if (all[i] == NULL)
            continue;
        int st = tu_proc_stop(all[i]);
        if (st != 0)
            tu_proc_dump_stderr(all[i]);
        ck_assert_msg(st == 0, "%s exited with status %d", i == 0 ? "objmeta-coord" : "a shard",
                      st);
        tu_proc_free(all[i]);
    }
    memset(cl, 0, sizeof(*cl));
}

static omc_client *
connect_to(const char *addr)
{
    char msg[256];
    omc_client *c = NULL;

    ck_assert_msg(omc_connect(addr, 5000, &c, msg, sizeof(msg)) == OM_OK, "connect %s: %s", addr,
                  msg);
    omc_set_timeout(c, 10000);
    return c;
}

/* The coordinator's ring, through GetRing. */
static ring *
get_ring(const char *addr)
{
    rpc_sync_client *sc;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__GetRingRequest gr = OBJMETA__GET_RING_REQUEST__INIT;
    Objmeta__Response *resp = NULL;
    char err[256];
    ring *r = NULL;

    ck_assert_int_eq(rpc_sync_client_open(addr, 5000, &sc), OM_OK);
    req.body_case = OBJMETA__REQUEST__BODY_GET_RING;
    req.get_ring = &gr;
    ck_assert_int_eq(rpc_sync_client_call(sc, &req, 5000, &resp), OM_OK);
    ck_assert_int_eq(resp->status, OBJMETA__STATUS__OK);
    ck_assert_int_eq(resp->body_case, OBJMETA__RESPONSE__BODY_GET_RING);
    ck_assert_msg(ring_from_pb(resp->get_ring->ring, &r, err, sizeof(err)) == OM_OK, "%s", err);
    rpc_response_free(resp);
    rpc_sync_client_close(sc);
    return r;
}

static int
shard_index(const cluster *cl, const char *id)
{
    for (int i = 0; i < NSHARDS; i++)
        if (strcmp(cl->shard_id[i], id) == 0)
            return i;
    ck_abort_msg("unknown shard id %s", id);
    return -1;
}

static int
owner_of(const cluster *cl, const ring *r, const char *key)
{
    return shard_index(cl, ring_lookup(r, om_slice_from_str(BUCKET), om_slice_from_str(key))->id);
}

/* Head with a raw request carrying ring_epoch; returns the wire status. */
static Objmeta__Status
raw_head(const char *addr, uint64_t epoch, const char *key)
{
    rpc_sync_client *sc;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__HeadRequest h = OBJMETA__HEAD_REQUEST__INIT;
    Objmeta__Response *resp = NULL;
    Objmeta__Status s;

    ck_assert_int_eq(rpc_sync_client_open(addr, 5000, &sc), OM_OK);
    h.bucket = BUCKET;
    h.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_HEAD;
    req.head = &h;
    req.ring_epoch = epoch;
    ck_assert_int_eq(rpc_sync_client_call(sc, &req, 5000, &resp), OM_OK);
    s = resp->status;
    rpc_response_free(resp);
    rpc_sync_client_close(sc);
    return s;
}

static void
store_str(omc_client *c, const char *key, const char *val)
{
    om_status st = omc_store(c, BUCKET, key, om_slice_from_str(val), NULL, NULL);
    ck_assert_msg(st == OM_OK, "store %s: %s %s", key, om_status_str(st), omc_last_message(c));
}

/* --- routing --------------------------------------------------------------------------------- */

START_TEST(routing_lands_on_owner)
{
    cluster cl;
    uint64_t seed = tu_seed("routing_lands_on_owner");
    enum { NK = 150 };
    char keys[NK][48];
    int per_shard[NSHARDS] = {0};

    cluster_start(&cl, "none");
    omc_client *cc = connect_to(cl.coord_addr), *sc[NSHARDS];
    ring *r = get_ring(cl.coord_addr);
    uint64_t epoch = ring_epoch(r);
    for (int i = 0; i < NSHARDS; i++)
        sc[i] = connect_to(cl.shard_addr[i]);
    ck_assert_uint_eq(epoch, 1);
    ck_assert_uint_eq(ring_shard_count(r), NSHARDS);

    for (int i = 0; i < NK; i++) {
        snprintf(keys[i], sizeof(keys[i]), "dir%d/obj-%d-%llx", i % 7, i,
                 (unsigned long long)(tu_rand(&seed) & 0xffffff));
        store_str(cc, keys[i], keys[i]);
    }
    for (int i = 0; i < NK; i++) {
        int o = owner_of(&cl, r, keys[i]);
        omc_info info = {0};
        om_buf data = OM_BUF_INIT;
        bool ex = false;

        per_shard[o]++;
        for (int s = 0; s < NSHARDS; s++) {
            om_status st = omc_head(sc[s], BUCKET, keys[i], &info);
            ck_assert_msg(st == (s == o ? OM_OK : OM_E_NOTFOUND), "%s on %s: %s", keys[i],
                          cl.shard_id[s], om_status_str(st));
            if (st == OM_OK)
                omc_info_free(&info);
        }
        ck_assert_int_eq(omc_retrieve(cc, BUCKET, keys[i], &info, &data), OM_OK);
        ck_assert_uint_eq(data.n, strlen(keys[i]));
        ck_assert_int_eq(memcmp(data.p, keys[i], data.n), 0);
        omc_info_free(&info);
        om_buf_free(&data);
        ck_assert_int_eq(omc_head(cc, BUCKET, keys[i], &info), OM_OK);
        ck_assert_str_eq(info.key, keys[i]);
        omc_info_free(&info);
        ck_assert_int_eq(omc_exists(cc, BUCKET, keys[i], &ex), OM_OK);
        ck_assert(ex);
    }
    for (int s = 0; s < NSHARDS; s++) {
        printf("routing: %s holds %d of %d keys\n", cl.shard_id[s], per_shard[s], NK);
        ck_assert_int_gt(per_shard[s], 0);
    }
    /* deletes go to the owner too */
    for (int i = 0; i < NK; i += 2) {
        int o = owner_of(&cl, r, keys[i]);
        omc_info info = {0};
        bool ex = true;
        ck_assert_int_eq(omc_delete(cc, BUCKET, keys[i], NULL, NULL), OM_OK);
        ck_assert_int_eq(omc_head(sc[o], BUCKET, keys[i], &info), OM_E_NOTFOUND);
        ck_assert_int_eq(omc_exists(cc, BUCKET, keys[i], &ex), OM_OK);
        ck_assert(!ex);
        ck_assert_int_eq(omc_head(cc, BUCKET, keys[i + 1], &info), OM_OK);
        omc_info_free(&info);
    }
    ck_assert_int_eq(omc_delete(cc, BUCKET, keys[0], NULL, NULL), OM_E_NOTFOUND);
    ck_assert_int_eq(omc_store(cc, BUCKET, "", om_slice_from_str("x"), NULL, NULL), OM_E_INVALID);

    /* fencing: the shards hold the ring and refuse keys they do not own under its epoch */
    const char *k = keys[1];
    int o = owner_of(&cl, r, k);
    for (int s = 0; s < NSHARDS; s++) {
        Objmeta__Status want = s == o ? OBJMETA__STATUS__OK : OBJMETA__STATUS__WRONG_SHARD;
        ck_assert_int_eq(raw_head(cl.shard_addr[s], epoch, k), want);
        ck_assert_int_eq(raw_head(cl.shard_addr[s], epoch + 1, k), OBJMETA__STATUS__WRONG_SHARD);
        /* epoch 0: a client talking to a shard directly, unfenced */
        ck_assert_int_eq(raw_head(cl.shard_addr[s], 0, k),
                         s == o ? OBJMETA__STATUS__OK : OBJMETA__STATUS__NOT_FOUND);
    }

    for (int i = 0; i < NSHARDS; i++)
        omc_close(sc[i]);
    omc_close(cc);
    ring_unref(r);
    cluster_stop(&cl);
}
END_TEST

/* --- list ------------------------------------------------------------------------------------ */

typedef struct oracle_item {
    const char *s;
    bool prefix;
} oracle_item;

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* S3 ListObjectsV2 over the sorted key set. Returns the number of items (heap strings). */
static size_t
oracle(char **keys, size_t nk, const char *prefix, const char *delim, const char *start_after,
       oracle_item *out)
{
    size_t n = 0, pl = strlen(prefix);

    for (size_t i = 0; i < nk; i++) {
        const char *k = keys[i];
        if (strncmp(k, prefix, pl) != 0)
            continue;
        if (start_after && strcmp(k, start_after) <= 0)
            continue;
        const char *d = delim[0] ? strstr(k + pl, delim) : NULL;
        if (d != NULL) {
            char *cp = strndup(k, (size_t)(d - k) + strlen(delim));
            if (n > 0 && out[n - 1].prefix && strcmp(out[n - 1].s, cp) == 0) {
                free(cp);
                continue;
            }
            out[n++] = (oracle_item){cp, true};
            continue;
        }
        out[n++] = (oracle_item){strdup(k), false};
    }
    return n;
}

/* Page through a listing; check each page against the oracle slice. Returns pages. */
static int
check_listing(omc_client *cc, char **keys, size_t nk, const char *prefix, const char *delim,
              const char *start_after, uint32_t max_keys)
{
    oracle_item *want = calloc(nk + 1, sizeof(*want));
    size_t nw = oracle(keys, nk, prefix, delim, start_after, want), at = 0;
    char *token = NULL;
    int pages = 0;
    uint32_t eff = max_keys == 0 || max_keys > 1000 ? 1000 : max_keys;

    for (;;) {
        omc_list_opts o = {prefix, delim[0] ? delim : NULL, start_after, token, max_keys, false};
        omc_list_page pg = {0};
        om_status st = omc_list(cc, BUCKET, &o, &pg);
        ck_assert_msg(st == OM_OK, "list: %s %s", om_status_str(st), omc_last_message(cc));
        pages++;
        size_t total = pg.n_entries + pg.n_common_prefixes, i = 0, j = 0;
        ck_assert_uint_eq(pg.key_count, total);
        ck_assert_uint_le(total, eff);
        if (pg.is_truncated)
            ck_assert_uint_eq(total, eff);
        /* merge the page's keys and prefixes and compare with the next oracle items */
        while (i < pg.n_entries || j < pg.n_common_prefixes) {
            bool key = j == pg.n_common_prefixes ||
                       (i < pg.n_entries && strcmp(pg.entries[i].key, pg.common_prefixes[j]) < 0);
            const char *s = key ? pg.entries[i++].key : pg.common_prefixes[j++];
            ck_assert_msg(at < nw,
                          "listing (prefix=\"%s\" delim=\"%s\" start_after=\"%s\" max=%u) "
                          "returned extra \"%s\"",
                          prefix, delim, start_after ? start_after : "", max_keys, s);
            ck_assert_msg(
                strcmp(want[at].s, s) == 0 && want[at].prefix == !key,
                "listing (prefix=\"%s\" delim=\"%s\" start_after=\"%s\" max=%u) item %zu: "
                "got %s\"%s\", want %s\"%s\"",
                prefix, delim, start_after ? start_after : "", max_keys, at, key ? "" : "PRE ", s,
                want[at].prefix ? "PRE " : "", want[at].s);
            at++;
        }
        free(token);
        token = NULL;
        if (!pg.is_truncated) {
            ck_assert_str_eq(pg.next_continuation_token ? pg.next_continuation_token : "", "");
            omc_list_page_free(&pg);
            break;
        }
        ck_assert(pg.next_continuation_token && pg.next_continuation_token[0]);
        token = strdup(pg.next_continuation_token);
        omc_list_page_free(&pg);
    }
    ck_assert_msg(at == nw, "listing ended after %zu of %zu items", at, nw);
    for (size_t i = 0; i < nw; i++)
        free((char *)want[i].s);
    free(want);
    return pages;
}

static uint64_t
stat_value(omc_client *c, const char *name)
{
    omc_stats st = {0};
    uint64_t v = UINT64_MAX;

    ck_assert_int_eq(omc_stats_get(c, &st), OM_OK);
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(st.names[i], name) == 0)
            v = st.values[i];
    omc_stats_free(&st);
    ck_assert_msg(v != UINT64_MAX, "no counter %s", name);
    return v;
}

START_TEST(list_matches_oracle)
{
    static const char *const parts[] = {"a", "b",   "c", "\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5",
                                        "z", "a-b", "A"};
    uint64_t seed = tu_seed("list_matches_oracle");
    enum { NK = 400 };
    char *keys[NK];
    size_t nk = 0;
    cluster cl;

    cluster_start(&cl, "none");
    omc_client *cc = connect_to(cl.coord_addr);
    /* keys like "b/é/a-b" (1-3 levels) plus numbered leaves, unique after sorting */
    while (nk < NK) {
        char k[128];
        size_t off = 0;
        int depth = 1 + (int)(tu_rand(&seed) % 3);
        for (int d = 0; d < depth; d++)
            off += (size_t)snprintf(k + off, sizeof(k) - off, "%s%s", d ? "/" : "",
                                    parts[tu_rand(&seed) % 8]);
        if (tu_rand(&seed) % 2)
            snprintf(k + off, sizeof(k) - off, "/%u", (unsigned)(tu_rand(&seed) % 1000));
        bool dup = false;
        for (size_t i = 0; i < nk && !dup; i++)
            dup = strcmp(keys[i], k) == 0;
        if (!dup)
            keys[nk++] = strdup(k);
    }
    for (size_t i = 0; i < nk; i++)
        store_str(cc, keys[i], "v");
    qsort(keys, nk, sizeof(keys[0]), cmp_str);

    int pages = 0, queries = 0;
    pages += check_listing(cc, keys, nk, "", "", NULL, 0);
    pages += check_listing(cc, keys, nk, "", "/", NULL, 0);
    pages += check_listing(cc, keys, nk, "", "", NULL, 1);
    pages += check_listing(cc, keys, nk, "", "/", NULL, 1);
    queries += 4;
    static const uint32_t maxes[] = {1, 2, 3, 5, 10, 37, 1000};
    for (int q = 0; q < 50; q++) {
        const char *k = keys[tu_rand(&seed) % nk];
        char prefix[128] = "", start[128];
        const char *delim = (const char *[]){"", "/", "-", "/"}[tu_rand(&seed) % 4];
        const char *sa = NULL;
        if (tu_rand(&seed) % 3) {
            /* a prefix of a key, cut at a character boundary (prefixes are UTF-8) */
            size_t cut = tu_rand(&seed) % (strlen(k) + 1);
            while (cut > 0 && ((unsigned char)k[cut] & 0xc0) == 0x80)
                cut--;
            snprintf(prefix, sizeof(prefix), "%.*s", (int)cut, k);
        }
        if (tu_rand(&seed) % 3 == 0) {
            const char *k2 = keys[tu_rand(&seed) % nk];
            size_t cut = tu_rand(&seed) % (strlen(k2) + 1);
            while (cut > 0 && ((unsigned char)k2[cut] & 0xc0) == 0x80)
                cut--;
            snprintf(start, sizeof(start), "%.*s", (int)cut, k2);
            sa = start;
        }
        pages += check_listing(cc, keys, nk, prefix, delim, sa, maxes[tu_rand(&seed) % 7]);
        queries++;
    }
    printf("list: %d listings, %d pages, all equal to the oracle\n", queries, pages);

    /*
     * Skew: keys that all live on one shard. Its first page (sized for an
     * even spread) runs dry mid-merge and must be refilled from that shard
     * alone, page after page.
     */
    ring *r = get_ring(cl.coord_addr);
    char *skew[60];
    size_t ns = 0;
    for (int i = 0; ns < 60; i++) {
        char k[32];
        snprintf(k, sizeof(k), "skew/%05d", i);
        if (strcmp(ring_lookup(r, om_slice_from_str(BUCKET), om_slice_from_str(k))->id, "s1") != 0)
            continue;
        store_str(cc, k, "v");
        skew[ns++] = strdup(k);
    }
    uint64_t f0 = stat_value(cc, "coord.list.shard_fetches");
    int skew_pages = check_listing(cc, skew, ns, "skew/", "", NULL, 25);
    uint64_t f1 = stat_value(cc, "coord.list.shard_fetches");
    printf("list: 60 keys on one shard in %d pages of 25 took %llu shard fetches\n", skew_pages,
           (unsigned long long)(f1 - f0));
    ck_assert_int_eq(skew_pages, 3);
    ck_assert_uint_gt(f1 - f0, (uint64_t)NSHARDS * 3); /* refills happened */
    for (size_t i = 0; i < ns; i++)
        free(skew[i]);
    ring_unref(r);

    /* a page of 100 over 3 shards fetches about 100 records, not 3 x 100 */
    uint64_t before = stat_value(cc, "coord.list.records_fetched");
    omc_list_opts o = {"", NULL, NULL, NULL, 100, false};
    omc_list_page pg = {0};
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_OK);
    ck_assert_uint_eq(pg.key_count, 100);
    uint64_t fetched = stat_value(cc, "coord.list.records_fetched") - before;
    printf("list: a page of 100 over %d shards fetched %llu records\n", NSHARDS,
           (unsigned long long)fetched);
    ck_assert_uint_le(fetched, 2 * 100);

    /* continuation tokens are validated */
    char *tok = strdup(pg.next_continuation_token);
    omc_list_page_free(&pg);
    size_t tl = strlen(tok);
    tok[tl / 2] = tok[tl / 2] == 'A' ? 'B' : 'A';
    o.continuation_token = tok;
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(omc_last_message(cc), "continuation_token"));
    o.continuation_token = "c1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_E_INVALID);
    o.continuation_token = "not-a-token";
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_E_INVALID);
    free(tok);
    /* a genuine token used with another prefix */
    o.continuation_token = NULL;
    o.max_keys = 2;
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_OK);
    tok = strdup(pg.next_continuation_token);
    omc_list_page_free(&pg);
    o.continuation_token = tok;
    o.prefix = "a";
    ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_E_INVALID);
    ck_assert_ptr_nonnull(strstr(omc_last_message(cc), "another bucket, prefix or delimiter"));
    free(tok);

    for (size_t i = 0; i < nk; i++)
        free(keys[i]);
    omc_close(cc);
    cluster_stop(&cl);
}
END_TEST

/* --- listing while others write -------------------------------------------------------------- */

typedef struct writer_arg {
    const char *addr;
    atomic_bool stop;
    atomic_int ops;
    uint64_t seed;
} writer_arg;

static void *
writer_main(void *p)
{
    writer_arg *w = p;
    omc_client *c = NULL;
    char prev[64] = "";
    char msg[128];

    if (omc_connect(w->addr, 5000, &c, msg, sizeof(msg)) != OM_OK)
        return NULL;
    while (!atomic_load(&w->stop)) {
        char k[64];
        /* new keys land between the stable ones; the previous one is deleted again */
        snprintf(k, sizeof(k), "s/%03u-new-%llx", (unsigned)(tu_rand(&w->seed) % 300),
                 (unsigned long long)(tu_rand(&w->seed) & 0xffff));
        if (omc_store(c, BUCKET, k, om_slice_from_str("n"), NULL, NULL) == OM_OK)
            atomic_fetch_add(&w->ops, 1);
        if (prev[0] && omc_delete(c, BUCKET, prev, NULL, NULL) == OM_OK)
            atomic_fetch_add(&w->ops, 1);
        snprintf(prev, sizeof(prev), "%s", k);
    }
    omc_close(c);
    return NULL;
}

START_TEST(list_under_concurrent_writes)
{
    enum { NSTABLE = 300 };
    cluster cl;
    writer_arg w;
    pthread_t th;
    int listings = 0;

    cluster_start(&cl, "none");
    omc_client *cc = connect_to(cl.coord_addr);
    for (int i = 0; i < NSTABLE; i++) {
        char k[32];
        snprintf(k, sizeof(k), "s/%03d", i);
        store_str(cc, k, "stable");
    }
    w.addr = cl.coord_addr;
    atomic_init(&w.stop, false);
    atomic_init(&w.ops, 0);
    w.seed = tu_seed("list_under_concurrent_writes");
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, &w), 0);
    uint64_t deadline = tu_now_ms() + 20000;
    while (listings < 2 || atomic_load(&w.ops) < 100) {
        char last[64] = "";
        char *token = NULL;
        int stable_seen = 0;
        ck_assert_msg(tu_now_ms() < deadline, "writer made only %d ops", atomic_load(&w.ops));
        for (;;) {
            omc_list_opts o = {"s/", NULL, NULL, token, 9, false};
            omc_list_page pg = {0};
            ck_assert_int_eq(omc_list(cc, BUCKET, &o, &pg), OM_OK);
            for (size_t i = 0; i < pg.n_entries; i++) {
                const char *k = pg.entries[i].key;
                ck_assert_msg(strcmp(k, last) > 0, "key %s after %s: repeated or out of order", k,
                              last);
                snprintf(last, sizeof(last), "%s", k ? k : "");
                if (strlen(k) == 5) {
                    /* the stable keys come in order, none skipped */
                    char want[16];
                    snprintf(want, sizeof(want), "s/%03d", stable_seen);
                    ck_assert_str_eq(k, want);
                    stable_seen++;
                }
            }
            free(token);
            token = pg.is_truncated ? strdup(pg.next_continuation_token) : NULL;
            omc_list_page_free(&pg);
            if (token == NULL)
                break;
        }
        ck_assert_int_eq(stable_seen, NSTABLE);
        listings++;
    }
    atomic_store(&w.stop, true);
    pthread_join(th, NULL);
    printf("concurrent: %d full listings while the writer made %d stores/deletes\n", listings,
           atomic_load(&w.ops));
    omc_close(cc);
    cluster_stop(&cl);
}
END_TEST

/* --- kill -9 of a shard ---------------------------------------------------------------------- */

START_TEST(shard_kill9_fails_fast_and_recovers)
{
    enum { NK = 90 };
    cluster cl;
    char keys[NK][32];
    const int victim = 1;

    cluster_start(&cl, "always");
    omc_client *cc = connect_to(cl.coord_addr);
    ring *r = get_ring(cl.coord_addr);
    for (int i = 0; i < NK; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k9/%d", i);
        store_str(cc, keys[i], keys[i]);
    }
    char *dir = strdup(tu_proc_data_dir(cl.shard[victim]));
    int port = tu_proc_port(cl.shard[victim], "rpc");
    tu_proc_kill9(cl.shard[victim]);
    tu_proc_free(cl.shard[victim]);

    uint64_t worst = 0;
    int victims = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < NK; i++) {
            omc_info info = {0};
            uint64_t t0 = tu_now_ms();
            om_status st = omc_head(cc, BUCKET, keys[i], &info);
            uint64_t dt = tu_now_ms() - t0;
            if (owner_of(&cl, r, keys[i]) == victim) {
                ck_assert_msg(st == OM_E_UNAVAILABLE, "%s: %s", keys[i], om_status_str(st));
                worst = dt > worst ? dt : worst;
                victims += round == 0;
            } else {
                ck_assert_msg(st == OM_OK, "%s: %s %s", keys[i], om_status_str(st),
                              omc_last_message(cc));
                omc_info_free(&info);
            }
        }
    }
    printf("kill9: %d keys of the dead shard answered UNAVAILABLE, slowest %llu ms\n", victims,
           (unsigned long long)worst);
    ck_assert_int_gt(victims, 0);
    ck_assert_uint_lt(worst, 1000);
    /* List needs every shard */
    omc_list_page pg = {0};
    ck_assert_int_eq(omc_list(cc, BUCKET, NULL, &pg), OM_E_UNAVAILABLE);

    /* restart on the same port and data dir: everything acknowledged is back */
    shard_start(&cl, victim, "always", dir, port);
    uint64_t t0 = tu_now_ms();
    for (int i = 0; i < NK; i++) {
        omc_info info = {0};
        om_buf data = OM_BUF_INIT;
        om_status st;
        while ((st = omc_retrieve(cc, BUCKET, keys[i], &info, &data)) == OM_E_UNAVAILABLE &&
               tu_now_ms() - t0 < 10000)
            usleep(20000);
        ck_assert_msg(st == OM_OK, "%s after restart: %s", keys[i], om_status_str(st));
        ck_assert_uint_eq(data.n, strlen(keys[i]));
        ck_assert_int_eq(memcmp(data.p, keys[i], data.n), 0);
        omc_info_free(&info);
        om_buf_free(&data);
    }
    printf("kill9: shard back and all %d keys read in %llu ms\n", NK,
           (unsigned long long)(tu_now_ms() - t0));
    ck_assert_int_eq(omc_list(cc, BUCKET, NULL, &pg), OM_OK);
    ck_assert_uint_eq(pg.key_count, NK);
    omc_list_page_free(&pg);
    free(dir);
    ring_unref(r);
    omc_close(cc);
    cluster_stop(&cl);
}
END_TEST

/* --- a stopped (hung) shard ------------------------------------------------------------------ */

START_TEST(stopped_shard_does_not_stall_others)
{
    enum { NK = 60 };
    cluster cl;
    char keys[NK][32];
    const int victim = 2;

    cluster_start(&cl, "none");
    omc_client *cc = connect_to(cl.coord_addr);
    ring *r = get_ring(cl.coord_addr);
    for (int i = 0; i < NK; i++) {
        snprintf(keys[i], sizeof(keys[i]), "hung/%d", i);
        store_str(cc, keys[i], keys[i]);
    }
    ck_assert_int_eq(kill(tu_proc_pid(cl.shard[victim]), SIGSTOP), 0);

    /* the others answer quickly throughout; the hung shard's keys turn UNAVAILABLE */
    uint64_t t_start = tu_now_ms(), worst_other = 0, detected = 0;
    while (detected == 0) {
        ck_assert_msg(tu_now_ms() - t_start < 10000, "hung shard never marked down");
        for (int i = 0; i < NK; i++) {
            omc_info info = {0};
            if (owner_of(&cl, r, keys[i]) == victim)
                continue;
            uint64_t t0 = tu_now_ms();
            ck_assert_int_eq(omc_head(cc, BUCKET, keys[i], &info), OM_OK);
            omc_info_free(&info);
            uint64_t dt = tu_now_ms() - t0;
            worst_other = dt > worst_other ? dt : worst_other;
        }
        for (int i = 0; i < NK && detected == 0; i++) {
            omc_info info = {0};
            if (owner_of(&cl, r, keys[i]) != victim)
                continue;
            uint64_t t0 = tu_now_ms();
            om_status st = omc_head(cc, BUCKET, keys[i], &info);
            ck_assert_msg(st == OM_E_UNAVAILABLE || st == OM_E_TIMEOUT, "%s", om_status_str(st));
            if (st == OM_E_UNAVAILABLE && tu_now_ms() - t0 < 100)
                detected = tu_now_ms() - t_start;
        }
    }
    printf("hung shard: marked down after %llu ms; other shards' slowest request %llu ms\n",
           (unsigned long long)detected, (unsigned long long)worst_other);
    ck_assert_uint_lt(worst_other, 1000);
    /* two failed probes (100 ms apart, 500 ms timeout), well before the 8 s shard-timeout:
     * requests already sent to the hung shard are released when it is marked down */
    ck_assert_uint_lt(detected, 4000);

    ck_assert_int_eq(kill(tu_proc_pid(cl.shard[victim]), SIGCONT), 0);
    uint64_t t0 = tu_now_ms();
    for (int i = 0; i < NK; i++) {
        omc_info info = {0};
        om_status st;
        while ((st = omc_head(cc, BUCKET, keys[i], &info)) == OM_E_UNAVAILABLE &&
               tu_now_ms() - t0 < 10000)
            usleep(20000);
        ck_assert_msg(st == OM_OK, "%s after SIGCONT: %s", keys[i], om_status_str(st));
        omc_info_free(&info);
    }
    printf("hung shard: serving again %llu ms after SIGCONT\n",
           (unsigned long long)(tu_now_ms() - t0));
    ring_unref(r);
    omc_close(cc);
    cluster_stop(&cl);
}
END_TEST

/* --- coordinator restart --------------------------------------------------------------------- */

START_TEST(coordinator_restart_keeps_ring)
{
    cluster cl;

    cluster_start(&cl, "none");
    omc_client *cc = connect_to(cl.coord_addr);
    ring *before = get_ring(cl.coord_addr);
    for (int i = 0; i < 30; i++) {
        char k[32];
        snprintf(k, sizeof(k), "r/%d", i);
        store_str(cc, k, k);
    }
    omc_close(cc);
    char *dir = strdup(tu_proc_data_dir(cl.coord));
    ck_assert_int_eq(tu_proc_stop(cl.coord), 0);
    tu_proc_free(cl.coord);

    /* a different --shards is ignored: the stored ring wins */
    coord_start(&cl, dir, "--shards=other=127.0.0.1:1");
    ring *after = get_ring(cl.coord_addr);
    ck_assert(ring_equal(before, after));
    cc = connect_to(cl.coord_addr);
    for (int i = 0; i < 30; i++) {
        char k[32];
        omc_info info = {0};
        snprintf(k, sizeof(k), "r/%d", i);
        ck_assert_int_eq(omc_head(cc, BUCKET, k, &info), OM_OK);
        omc_info_free(&info);
    }
    omc_close(cc);

    /* no ring and no --shards: refuses to start, saying why */
    const char *fresh = tu_tmpdir();
    char dd[4096];
    snprintf(dd, sizeof(dd), "--data-dir=%s", fresh);
    const char *argv[] = {"objmeta-coord", "--listen=127.0.0.1:0", dd, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run_cmd("$OBJMETA_COORD", argv, 10000, &out, &err);
    ck_assert_int_ne(rc, 0);
    ck_assert_msg(strstr(err, "no ring") != NULL, "stderr: %s", err);
    free(out);
    free(err);
    free(dir);
    ring_unref(before);
    ring_unref(after);
    cluster_stop(&cl);
}
END_TEST

/* --- HTTP ------------------------------------------------------------------------------------ */

static char *
http_get(int port, const char *path)
{
    struct sockaddr_in sa = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char req[256];
    om_buf b = OM_BUF_INIT;

    ck_assert_int_ge(fd, 0);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    for (;;) {
        ck_assert_int_eq(om_buf_reserve(&b, 4096), OM_OK);
        ssize_t r = read(fd, b.p + b.n, b.cap - b.n - 1);
        if (r <= 0)
            break;
        b.n += (size_t)r;
    }
    close(fd);
    b.p[b.n] = 0;
    return (char *)b.p;
}

START_TEST(http_healthz_and_metrics)
{
    cluster cl;

    cluster_start(&cl, "none");
    int hp = tu_proc_port(cl.coord, "http");
    ck_assert_int_gt(hp, 0);
    char *h = http_get(hp, "/healthz");
    ck_assert_msg(strstr(h, " 200 ") != NULL, "%s", h);
    free(h);
    char *m = http_get(hp, "/metrics");
    ck_assert_ptr_nonnull(strstr(m, "objmeta_coord_shard_up{shard=\"s2\"} 1"));
    ck_assert_ptr_nonnull(strstr(m, "objmeta_coord_ring_epoch 1"));
    ck_assert_ptr_nonnull(strstr(m, "objmeta_coord_request_seconds_bucket"));
    free(m);
    cluster_stop(&cl);
}
END_TEST

static Suite *
it_suite(void)
{
    Suite *s = suite_create("coordinator-integration");
    TCase *tc = tcase_create("cluster");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, routing_lands_on_owner);
    tcase_add_test(tc, list_matches_oracle);
    tcase_add_test(tc, list_under_concurrent_writes);
    tcase_add_test(tc, shard_kill9_fails_fast_and_recovers);
    tcase_add_test(tc, stopped_shard_does_not_stall_others);
    tcase_add_test(tc, coordinator_restart_keeps_ring);
    tcase_add_test(tc, http_healthz_and_metrics);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(it_suite());
}
