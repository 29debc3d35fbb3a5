/*
 * tests/shard/it_shard_restart.c -- restarts of the real objmeta-shard: a
 * graceful restart keeps every record (and versions keep increasing), a
 * SIGTERM under load exits 0 with nothing acknowledged missing, and kill -9
 * in the middle of a write load from several connections loses no
 * acknowledged write.
 *
 * What kill -9 proves, and what it cannot: the kernel keeps the page cache
 * of a killed process, so a write(2) that completed survives whether or not
 * it was fsynced. The kill -9 test therefore proves that every answered
 * Store had reached the WAL file (no answer from a user-space buffer or a
 * queue that dies with the process) and that recovery replays the WAL to at
 * least the acknowledged state after a crash at any moment. It does not
 * prove that the WAL was fsynced before the answer (sync-mode=always); a
 * power loss does, and that is simulated in-process by tests/lsm/fault_env:
 * tests/shard/test_sync_order.c (acked_writes_survive_power_loss: the shard
 * over the fault env, every file cut back to its synced size at a random
 * moment; no reply shows a write before it is durable) and
 * tests/lsm/test_fault.c (fault_power_loss_keeps_acked_writes: every
 * acknowledged LSM_SYNC_ALWAYS write survives a power loss under load; a
 * failed WAL sync is never acknowledged).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "it_util.h"

START_TEST(graceful_restart_keeps_data)
{
    tu_proc *p = it_start_shard(NULL, NULL);
    char dir[512], key[32], val[64];
    omc_client *c = it_client(p);
    om_buf data = OM_BUF_INIT;
    omc_info info;
    uint64_t v7 = 0;

    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(p));
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        ck_assert_int_eq(omc_store(c, "rst", key, om_slice_from_str(val), NULL, &info), OM_OK);
        if (i == 7)
            v7 = info.version;
        omc_info_free(&info);
    }
    ck_assert_int_eq(omc_delete(c, "rst", "k010", NULL, NULL), OM_OK);
    omc_close(c);
    int st = tu_proc_stop(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    tu_proc_free(p);

    p = it_start_shard(dir, NULL);
    c = it_client(p);
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%03d", i);
        snprintf(val, sizeof(val), "value-%d", i);
        om_status rs = omc_retrieve(c, "rst", key, &info, &data);
        if (i == 10) {
            ck_assert_int_eq(rs, OM_E_NOTFOUND);
            continue;
        }
        ck_assert_msg(rs == OM_OK, "%s: %s", key, omc_last_message(c));
        ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str(val)));
        if (i == 7)
            ck_assert_uint_eq(info.version, v7);
        omc_info_free(&info);
    }
    /* versions keep increasing after the restart */
    ck_assert_int_eq(omc_store(c, "rst", "k007", om_slice_from_str("new"), NULL, &info), OM_OK);
    ck_assert_uint_gt(info.version, v7);
    omc_info_free(&info);
    om_buf_free(&data);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

#define WRITERS 4
#define MAX_ACKS 100000

typedef struct writer {
    const char *addr;
    int id;
    int acked; /* keys w<id>-0 .. w<id>-(acked-1) were acknowledged */
    atomic_bool *stop;
} writer;

static void *
writer_main(void *arg)
{
    writer *w = arg;
    omc_client *c = NULL;
    char key[32], val[64], msg[128];

    if (omc_connect(w->addr, 5000, &c, msg, sizeof(msg)) != OM_OK)
        return NULL;
    omc_set_timeout(c, 5000);
    while (!atomic_load(w->stop) && w->acked < MAX_ACKS) {
        snprintf(key, sizeof(key), "w%d-%06d", w->id, w->acked);
        snprintf(val, sizeof(val), "payload-%d-%d", w->id, w->acked);
        if (omc_store(c, "crash", key, om_slice_from_str(val), NULL, NULL) != OM_OK)
            break; /* the server died: this write was not acknowledged */
        __atomic_add_fetch(&w->acked, 1, __ATOMIC_RELAXED);
    }
    omc_close(c);
    return NULL;
}

/*
 * _i = 0: the commit pipeline (sync-mode=always, the default); 1: the
 * synchronous path (sync-mode=periodic: the loop writes each group itself;
 * kill -9 leaves the written WAL in the page cache, so what was acknowledged
 * survives here too)
 */
START_TEST(kill9_loses_no_acknowledged_write)
{
    static const char *const extra[2][2] = {{"--sync-mode=always", NULL},
                                            {"--sync-mode=periodic", NULL}};
    static const char *const names[2] = {"pipeline", "synchronous"};
    tu_proc *p = it_start_shard(NULL, extra[_i]);
    char dir[512], addr[64], key[32], val[64];
    pthread_t th[WRITERS];
    writer w[WRITERS];
    atomic_bool stop = false;
    uint64_t deadline;
    int total = 0;

    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(p));
    snprintf(addr, sizeof(addr), "%s", it_addr(p));
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.addr = addr, .id = i, .stop = &stop};
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    /* let the load run until a few hundred writes are in, then crash the server */
    deadline = tu_now_ms() + 20000;
    for (;;) {
        total = 0;
        for (int i = 0; i < WRITERS; i++)
            total += __atomic_load_n(&w[i].acked, __ATOMIC_RELAXED);
        if (total >= 400 || tu_now_ms() > deadline)
            break;
        struct timespec ts = {0, 2 * 1000000L}; /* polling the counters, not synchronising */
        nanosleep(&ts, NULL);
    }
    tu_proc_kill9(p);
    atomic_store(&stop, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    tu_proc_free(p);
    total = 0;
    for (int i = 0; i < WRITERS; i++)
        total += w[i].acked;
    ck_assert_int_gt(total, 0);

    p = it_start_shard(dir, NULL);
    omc_client *c = it_client(p);
    om_buf data = OM_BUF_INIT;
    omc_info info;
    for (int i = 0; i < WRITERS; i++) {
        for (int j = 0; j < w[i].acked; j++) {
            snprintf(key, sizeof(key), "w%d-%06d", i, j);
            snprintf(val, sizeof(val), "payload-%d-%d", i, j);
            om_status st = omc_retrieve(c, "crash", key, &info, &data);
            ck_assert_msg(st == OM_OK, "acknowledged write %s lost after kill -9 (%s)", key,
                          omc_last_message(c));
            ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str(val)));
            omc_info_free(&info);
        }
    }
    printf("kill9 (%s writes): %d acknowledged writes from %d connections all survived\n",
           names[_i], total, WRITERS);
    om_buf_free(&data);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

/* SIGTERM during a write load: exit 0, and every acknowledged write is there after restart. */
START_TEST(sigterm_under_load_is_graceful)
{
    static const char *const extra[] = {"--sync-mode=periodic", "--sync-period=1s", NULL};
    tu_proc *p = it_start_shard(NULL, extra);
    char dir[512], addr[64], key[32], val[64];
    pthread_t th[WRITERS];
    writer w[WRITERS];
    atomic_bool stop = false;
    uint64_t deadline = tu_now_ms() + 20000;
    int total;

    /*
     * What this checks: a stop under load answers what is in flight and
     * exits 0, and nothing acknowledged is missing afterwards. (Whether the
     * final lsm_sync ran is not observable without a power cut: the page
     * cache survives a process exit.)
     */
    snprintf(dir, sizeof(dir), "%s", tu_proc_data_dir(p));
    snprintf(addr, sizeof(addr), "%s", it_addr(p));
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer){.addr = addr, .id = i, .stop = &stop};
        ck_assert_int_eq(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
    }
    do {
        total = 0;
        for (int i = 0; i < WRITERS; i++)
            total += __atomic_load_n(&w[i].acked, __ATOMIC_RELAXED);
        struct timespec ts = {0, 2 * 1000000L}; /* polling the counters, not synchronising */
        nanosleep(&ts, NULL);
    } while (total < 400 && tu_now_ms() < deadline);
    int st = tu_proc_stop(p);
    atomic_store(&stop, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    tu_proc_free(p);

    p = it_start_shard(dir, NULL);
    omc_client *c = it_client(p);
    om_buf data = OM_BUF_INIT;
    omc_info info;
    total = 0;
    for (int i = 0; i < WRITERS; i++) {
        for (int j = 0; j < w[i].acked; j++, total++) {
            snprintf(key, sizeof(key), "w%d-%06d", i, j);
            snprintf(val, sizeof(val), "payload-%d-%d", i, j);
            ck_assert_msg(omc_retrieve(c, "crash", key, &info, &data) == OM_OK,
                          "acknowledged write %s lost after SIGTERM", key);
            ck_assert(om_slice_eq(om_buf_slice(&data), om_slice_from_str(val)));
            omc_info_free(&info);
        }
    }
    printf("sigterm: %d acknowledged writes all present after a graceful stop\n", total);
    om_buf_free(&data);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

static Suite *
restart_suite(void)
{
    Suite *s = suite_create("shard-restart");
    TCase *tc = tcase_create("restart");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, graceful_restart_keeps_data);
    tcase_add_loop_test(tc, kill9_loses_no_acknowledged_write, 0, 2);
    tcase_add_test(tc, sigterm_under_load_is_graceful);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(restart_suite());
}
