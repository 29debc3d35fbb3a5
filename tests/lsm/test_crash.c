/*
 * tests/lsm/test_crash.c -- the crash test: a forked child opens the
 * database in LSM_SYNC_ALWAYS and writes from two threads, reporting each
 * acknowledged write through a pipe; the parent kill -9s it at a random
 * moment, reopens the database, and checks that it opens cleanly and that
 * every acknowledged write is there (a key may hold a newer, unacknowledged
 * value, never an older one). At least 20 rounds; the seed is printed.
 * Also: the LOCK file keeps a second process out, and dies with its owner.
 *
 * What this proves: recovery after a process crash at any moment (mid
 * write, flush, compaction or MANIFEST edit) opens cleanly and replays the
 * WAL to at least the acknowledged state, and no write is acknowledged
 * before it reached the WAL file. What it cannot prove: that the WAL was
 * fsynced before the acknowledgement -- the kernel keeps a killed process's
 * page cache, so unsynced writes survive kill -9 too. The fsync part is
 * proven by the power-loss simulations over tests/lsm/fault_env (every file
 * cut back to what was synced): tests/lsm/test_fault.c
 * (fault_power_loss_keeps_acked_writes: this test's load with a power loss
 * instead of kill -9; also fault_crash_with_torn_tail, fault_wal_sync_fails)
 * and, with group commit and replies, tests/shard/test_sync_order.c
 * (acked_writes_survive_power_loss).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lsm/lsm.h"
#include "tu.h"

#define CRASH_KEYS 400 /* per thread */
#define CRASH_ROUNDS 24

typedef struct ack {
    uint32_t thread, key;
    uint64_t counter;
} ack;

typedef struct child_ctx {
    lsm_db *db;
    int fd;
    uint32_t thread;
    uint64_t base;
} child_ctx;

static void
crash_opts(lsm_opts *o)
{
    lsm_opts_init(o);
    o->sync_mode = LSM_SYNC_ALWAYS;
    o->write_buffer_size = 32 * 1024;
    o->target_file_size = 16 * 1024;
    o->max_bytes_for_level1 = 64 * 1024;
    o->l0_compaction_trigger = 2;
    o->block_cache_size = 128 * 1024;
}

static size_t
crash_value(uint32_t thread, uint64_t counter, char *buf)
{
    /* The counter first, then filler so that memtables fill up. */
    return (size_t)snprintf(buf, 200, "%020llu-%u-%0120d", (unsigned long long)counter, thread, 7);
}

static void *
child_writer(void *arg)
{
    child_ctx *c = arg;
    char key[32], val[200];

    for (uint64_t n = 0;; n++) {
        ack a = {.thread = c->thread,
                 .key = (uint32_t)((n * 7919) % CRASH_KEYS),
                 .counter = c->base + n};
        size_t kn = (size_t)snprintf(key, sizeof(key), "t%u-k%04u", a.thread, a.key);
        size_t vn = crash_value(a.thread, a.counter, val);
        om_status st;

        if (n % 17 == 16) {
            lsm_batch *b;

            if (lsm_batch_new(&b) != OM_OK)
                _exit(3);
            lsm_batch_put(b, om_slice_make(key, kn), om_slice_make(val, vn));
            lsm_batch_put(b, om_slice_make("batch-marker", 12), om_slice_make(val, vn));
            st = lsm_write(c->db, b);
            lsm_batch_free(b);
        } else {
            st = lsm_put(c->db, om_slice_make(key, kn), om_slice_make(val, vn));
        }
        if (st != OM_OK)
            _exit(4);
        if (write(c->fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
            _exit(5);
    }
    return NULL;
}

static void
child_main(const char *dir, int fd, uint64_t base)
{
    lsm_opts o;
    lsm_db *db;
    child_ctx c[2];
    pthread_t th[2];

    crash_opts(&o);
    if (lsm_open(dir, &o, &db) != OM_OK)
        _exit(2);
    for (int i = 0; i < 2; i++) {
        c[i] = (child_ctx){.db = db, .fd = fd, .thread = (uint32_t)i, .base = base};
        pthread_create(&th[i], NULL, child_writer, &c[i]);
    }
    pthread_join(th[0], NULL);
    _exit(6);
}

/* Read whole ack records from fd until the deadline (or EOF when deadline is 0). */
static void
read_acks(int fd, uint64_t deadline, uint64_t (*acked)[CRASH_KEYS], uint64_t *count)
{
    static uint8_t partial[sizeof(ack)];
    static size_t have;

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int wait = 50;
        ssize_t r;

        if (deadline != 0) {
            uint64_t now = tu_now_ms();

            if (now >= deadline)
                return;
            wait = (int)(deadline - now);
        }
        if (poll(&p, 1, wait) <= 0) {
            if (deadline == 0)
                return;
            continue;
        }
        r = read(fd, partial + have, sizeof(ack) - have);
        if (r <= 0)
            return;
        have += (size_t)r;
        if (have == sizeof(ack)) {
            ack a;

            memcpy(&a, partial, sizeof(a));
            if (a.thread < 2 && a.key < CRASH_KEYS && a.counter > acked[a.thread][a.key])
                acked[a.thread][a.key] = a.counter;
            (*count)++;
            have = 0;
        }
    }
}

START_TEST(crash_kill9_loses_no_acknowledged_write)
{
    const char *dir = tu_tmpdir();
    uint64_t seed = tu_seed("crash_kill9_loses_no_acknowledged_write"), rnd = seed;
    static uint64_t acked[2][CRASH_KEYS];
    uint64_t total = 0;

    memset(acked, 0, sizeof(acked));
    for (int round = 0; round < CRASH_ROUNDS; round++) {
        int fds[2];
        pid_t pid;
        uint64_t before = total, delay = 5 + tu_rand(&rnd) % 250;
        int status;
        lsm_opts o;
        lsm_db *db;

        ck_assert_int_eq(pipe(fds), 0);
        pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, fds[1], (uint64_t)(round + 1) * 100000000ULL);
        }
        close(fds[1]);
        /* Wait for the first acknowledgement (the open is done), then a random delay. */
        uint64_t deadline = tu_now_ms() + 20000;
        while (total == before && tu_now_ms() < deadline)
            read_acks(fds[0], tu_now_ms() + 10, acked, &total);
        ck_assert_msg(total > before, "round %d: child acknowledged nothing", round);
        read_acks(fds[0], tu_now_ms() + delay, acked, &total);
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                      "round %d: child exited early with status %d", round, status);
        read_acks(fds[0], 0, acked, &total); /* everything already in the pipe */
        close(fds[0]);

        crash_opts(&o);
        ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
        for (uint32_t t = 0; t < 2; t++) {
            for (uint32_t k = 0; k < CRASH_KEYS; k++) {
                char key[32], want[200];
                om_buf v = OM_BUF_INIT;
                size_t kn = (size_t)snprintf(key, sizeof(key), "t%u-k%04u", t, k);
                om_status st = lsm_get(db, NULL, om_slice_make(key, kn), &v);

                if (acked[t][k] == 0) {
                    ck_assert(st == OM_OK || st == OM_E_NOTFOUND);
                } else {
                    ck_assert_msg(st == OM_OK, "round %d: acknowledged key %s lost (%s)", round,
                                  key, om_status_str(st));
                    crash_value(t, acked[t][k], want);
                    ck_assert_msg(v.n >= 20 && strncmp((char *)v.p, want, 20) >= 0,
                                  "round %d: key %s holds an older value than acknowledged", round,
                                  key);
                }
                om_buf_free(&v);
            }
        }
        ck_assert_int_eq(lsm_close(db), OM_OK);
    }
    printf("crash: rounds=%d acknowledged_writes=%llu\n", CRASH_ROUNDS, (unsigned long long)total);
}
END_TEST

START_TEST(lock_excludes_second_process)
{
    const char *dir = tu_tmpdir();
    int fds[2];
    pid_t pid;
    lsm_opts o;
    lsm_db *db = NULL;
    char c = 0;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(fds[0]);
        crash_opts(&o);
        if (lsm_open(dir, &o, &db) != OM_OK)
            _exit(2);
        if (write(fds[1], "k", 1) != 1)
            _exit(3);
        for (;;)
            pause(); /* hold the lock until killed */
    }
    close(fds[1]);
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    ck_assert_int_eq(poll(&p, 1, 20000), 1);
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    crash_opts(&o);
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_E_INVALID);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    /* The kernel dropped the dead process's lock. */
    ck_assert_int_eq(lsm_open(dir, &o, &db), OM_OK);
    ck_assert_int_eq(lsm_close(db), OM_OK);
}
END_TEST

static Suite *
crash_suite(void)
{
    Suite *s = suite_create("lsm-crash");
    TCase *tc = tcase_create("crash");

    tcase_set_timeout(tc, 280);
    tcase_add_test(tc, crash_kill9_loses_no_acknowledged_write);
    tcase_add_test(tc, lock_excludes_second_process);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(crash_suite());
}
