/*
 * tests/shard/it_writers.h -- the writer model of the replication tests
 * (it_replication.c, it_repl_etcd.c, it_repl_powerloss.c): writer threads
 * that store and delete their own keys on a primary, follow it to the next
 * replica after a failure, and remember per key what was acknowledged, so a
 * test can check every replica (or a reopened engine) against it.
 *
 * Writer `id` owns the keys "w<id>-<k>" (k < IT_WRITER_KEYS) and is their
 * only writer, so per key the last acknowledged write is known exactly: its
 * version (versions must rise per key: checked on every answer), whether it
 * was a delete, and the stored bytes. A write that failed may or may not
 * have happened (the primary died, lost its lease, or held it past the
 * timeout): the key is "uncertain" until a later write is acknowledged, and
 * is not checked while uncertain. About one write in four deletes a key that
 * is stored.
 *
 * Thread-safety: a writer's keys belong to its thread until it is joined;
 * `acked`, `ok_after_ms`, `ok_sent_ms` and the caller's stop and hint flags are atomics
 * that any thread may read.
 */
#ifndef OM_TESTS_SHARD_IT_WRITERS_H
#define OM_TESTS_SHARD_IT_WRITERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

#define IT_WRITER_KEYS 40
#define IT_WRITER_MAX_ADDRS 5

/* What was acknowledged for one key. */
typedef struct it_wkey {
    uint64_t version; /* of the last acknowledged store or delete (0: none) */
    bool deleted;     /* that write was a delete */
    bool uncertain;   /* a later write failed: it may or may not have happened */
    char data[48];    /* the bytes of the last acknowledged store */
} it_wkey;

typedef struct it_writer {
    /* settings, from the template given to it_writers_start (which sets id and seed) */
    const char *addrs[IT_WRITER_MAX_ADDRS]; /* replicas tried in turn after a failure */
    int naddrs;
    const char *bucket;
    uint32_t connect_ms; /* connect timeout */
    uint32_t timeout_ms; /* request timeout */
    uint32_t backoff_ms; /* pause after a failed request (0: none) */
    bool stop_on_error;  /* stop at the first failure (a test that kills the one primary) */
    atomic_bool *stop;   /* the caller sets it to stop the writers */
    atomic_int *hint;    /* NULL, or set to the index (addrs) that acknowledged last */
    int id;
    uint64_t seed;
    /* what it did */
    atomic_int acked;             /* acknowledged writes */
    _Atomic uint64_t ok_after_ms; /* tu_now_ms() of the last acknowledgement */
    _Atomic uint64_t ok_sent_ms;  /* tu_now_ms() when the last acknowledged write was sent */
    it_wkey keys[IT_WRITER_KEYS];
} it_writer;

/* The thread body: writes until *w->stop (or the first failure with stop_on_error). */
void *it_writer_main(void *arg);

/*
 * Start n writers w[0..n) with tmpl's settings, ids tmpl->id + i and seeds
 * seed + i * 7919; their threads in th[0..n). What the writers acknowledged
 * so far (keys, counters) carries over, so a test may stop and start them
 * again: zero w before the first start.
 */
void it_writers_start(it_writer *w, pthread_t *th, int n, const it_writer *tmpl, uint64_t seed);
/* Set the stop flag and join the n threads. */
void it_writers_join(it_writer *w, pthread_t *th, int n);
/* The writes n writers acknowledged so far. */
int it_writers_acked(it_writer *w, int n);
/* Wait until n writers acknowledged `more` writes beyond now; fails the test after timeout_ms. */
void it_writers_wait_acked(it_writer *w, int n, int more, int timeout_ms);

/* The name of key k of writer id ("w<id>-<k>"). */
void it_writer_key(int id, int k, char *out, size_t n);

/*
 * Check one read of a key against what was acknowledged: st and, when OK,
 * the version and data read (from a replica named `where`). Fails the test
 * on a lost write, an undone delete, another version or other bytes.
 * Returns false (nothing checked) for a key never acknowledged or uncertain.
 */
bool it_wkey_check(const it_wkey *ks, const char *key, const char *where, om_status st,
                   uint64_t version, om_slice data);

#endif /* OM_TESTS_SHARD_IT_WRITERS_H */
