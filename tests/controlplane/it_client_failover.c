/*
 * tests/controlplane/it_client_failover.c -- the client library with
 * several coordinator addresses (real objmeta-shard and objmeta-coord
 * processes): it skips an address that refuses, moves to the next when its
 * coordinator dies (kill -9), retries reads, unconditional deletes and
 * stores as client/client.c promises, and keeps working while the
 * coordinators are killed and restarted one at a time. Two coordinators
 * over the same shards with the same ring (file mode, no change runs)
 * route identically, which is all this suite needs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "tu.h"
#include "tu_etcd.h"

#define NSHARDS 2
#define NCOORDS 2

typedef struct cluster {
    tu_proc *shard[NSHARDS];
    tu_proc *coord[NCOORDS];
    char coord_dir[NCOORDS][512];
    char coord_addr[NCOORDS][64];
    char shards_arg[512];
} cluster;

/*
 * Coordinator i on a port of tu_free_port's (below the ephemeral range, its
 * HTTP port + 1000 too), so that coord_restart can take it again: a port the
 * kernel picked is soon another process's.
 */
static void
coord_start(cluster *cl, int i)
{
    char listen[80];
    const char *extra[] = {cl->shards_arg, "--health-interval=100ms", "--startup-wait=5s", listen,
                           NULL};
    tu_proc_opts o = {.extra = extra};

    snprintf(cl->coord_addr[i], sizeof(cl->coord_addr[i]), "127.0.0.1:%d", tu_free_port());
    snprintf(listen, sizeof(listen), "--listen=%s", cl->coord_addr[i]);
    o.data_dir = cl->coord_dir[i][0] ? cl->coord_dir[i] : NULL;
    cl->coord[i] = tu_proc_start("$OBJMETA_COORD", &o);
    snprintf(cl->coord_dir[i], sizeof(cl->coord_dir[i]), "%s", tu_proc_data_dir(cl->coord[i]));
}

static void
cluster_start(cluster *cl)
{
    size_t off;

    memset(cl, 0, sizeof(*cl));
    off = (size_t)snprintf(cl->shards_arg, sizeof(cl->shards_arg), "--shards=");
    for (int i = 0; i < NSHARDS; i++) {
        char idarg[32];
        const char *extra[] = {idarg, NULL};
        tu_proc_opts o = {.extra = extra};

        snprintf(idarg, sizeof(idarg), "--id=s%d", i + 1);
        cl->shard[i] = tu_proc_start("$OBJMETA_SHARD", &o);
        off += (size_t)snprintf(cl->shards_arg + off, sizeof(cl->shards_arg) - off,
                                "%ss%d=127.0.0.1:%d", i ? "," : "", i + 1,
                                tu_proc_port(cl->shard[i], "rpc"));
    }
    for (int i = 0; i < NCOORDS; i++)
        coord_start(cl, i);
}

static void
cluster_stop(cluster *cl)
{
    for (int i = 0; i < NCOORDS; i++)
        if (cl->coord[i] != NULL)
            tu_proc_free(cl->coord[i]);
    for (int i = 0; i < NSHARDS; i++)
        tu_proc_free(cl->shard[i]);
}

/* Restart coordinator i on the same port (so the client's list stays valid). */
static void
coord_restart(cluster *cl, int i)
{
    char listen[80];
    const char *extra[] = {cl->shards_arg, "--health-interval=100ms", "--startup-wait=5s", listen,
                           NULL};
    tu_proc_opts o = {.extra = extra, .data_dir = cl->coord_dir[i]};

    snprintf(listen, sizeof(listen), "--listen=%s", cl->coord_addr[i]);
    tu_proc_free(cl->coord[i]);
    cl->coord[i] = tu_proc_start("$OBJMETA_COORD", &o);
}

static void
put_get(omc_client *c, const char *key, const char *val)
{
    om_buf got = OM_BUF_INIT;
    omc_info info;

    ck_assert_msg(omc_store(c, "fo-bucket", key, om_slice_from_str(val), NULL, NULL) == OM_OK,
                  "store %s: %s", key, omc_last_message(c));
    ck_assert_msg(omc_retrieve(c, "fo-bucket", key, &info, &got) == OM_OK, "get %s: %s", key,
                  omc_last_message(c));
    ck_assert_uint_eq(got.n, strlen(val));
    ck_assert_mem_eq(got.p, val, got.n);
    omc_info_free(&info);
    om_buf_free(&got);
}

START_TEST(client_moves_to_the_next_coordinator)
{
    cluster cl;
    omc_client *c;
    char addrs[256], msg[512], key[32], val[32];
    om_buf got = OM_BUF_INIT;
    omc_info info;
    omc_store_opts if_absent = {.if_absent = true};
    uint64_t ver;
    int dead = tu_free_port();

    cluster_start(&cl);
    /* a list with nobody listening at all: the message names every address */
    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d", dead);
    ck_assert_int_ne(omc_connect(addrs, 1000, &c, msg, sizeof(msg)), OM_OK);
    ck_assert_msg(strstr(msg, addrs) != NULL, "%s", msg);
    ck_assert_int_eq(omc_connect(",,", 1000, &c, msg, sizeof(msg)), OM_E_INVALID);

    snprintf(addrs, sizeof(addrs), "127.0.0.1:%d,%s,%s", dead, cl.coord_addr[0], cl.coord_addr[1]);
    ck_assert_msg(omc_connect(addrs, 1000, &c, msg, sizeof(msg)) == OM_OK, "%s", msg);
    omc_set_timeout(c, 5000);
    ck_assert_str_eq(omc_address(c), cl.coord_addr[0]); /* the refusing one was skipped */
    put_get(c, "k0", "v0");

    /* coordinator 0 dies: a read moves on and succeeds */
    tu_proc_kill9(cl.coord[0]);
    ck_assert_msg(omc_retrieve(c, "fo-bucket", "k0", &info, &got) == OM_OK, "%s",
                  omc_last_message(c));
    omc_info_free(&info);
    ck_assert_str_eq(omc_address(c), cl.coord_addr[1]);

    /* coordinator 0 back, 1 dies: a conditional store is rechecked and sent again */
    coord_restart(&cl, 0);
    tu_proc_kill9(cl.coord[1]);
    ck_assert_msg(omc_store(c, "fo-bucket", "k1", om_slice_from_str("v1"), &if_absent, NULL) ==
                      OM_OK,
                  "%s", omc_last_message(c));
    ck_assert_str_eq(omc_address(c), cl.coord_addr[0]);
    /* an unconditional delete after a failover; a second if_absent store is refused */
    coord_restart(&cl, 1);
    tu_proc_kill9(cl.coord[0]);
    ck_assert_msg(omc_delete(c, "fo-bucket", "k0", NULL, &ver) == OM_OK, "%s", omc_last_message(c));
    ck_assert_int_eq(omc_store(c, "fo-bucket", "k1", om_slice_from_str("other"), &if_absent, NULL),
                     OM_E_PRECONDITION);
    coord_restart(&cl, 0);

    /* rolling restarts under a steady stream of requests: none fails */
    for (int round = 0; round < 4; round++) {
        int victim = round % NCOORDS;

        tu_proc_kill9(cl.coord[victim]);
        for (int i = 0; i < 5; i++) {
            snprintf(key, sizeof(key), "r%d-%d", round, i);
            snprintf(val, sizeof(val), "value %d %d", round, i);
            put_get(c, key, val);
        }
        coord_restart(&cl, victim);
    }
    om_buf_free(&got);
    omc_close(c);
    cluster_stop(&cl);
}
END_TEST

static Suite *
failover_suite(void)
{
    Suite *s = suite_create("client-failover");
    TCase *tc = tcase_create("failover");

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, client_moves_to_the_next_coordinator);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(failover_suite());
}
