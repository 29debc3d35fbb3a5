/*
 * tests/harness/tu_model.h -- the model behind the concurrent stress tests
 * (tests/lsm/test_stress.c against the engine, tests/shard/it_stress.c
 * against a shard over the wire): which answers a read may give while other
 * threads write.
 *
 * Writes to one key are serialised by that key's mutex, held by the writing
 * thread for the whole write (tu_cmodel_take uses trylock, so a writer picks
 * another key rather than wait), so the writes of key k are numbered 1, 2,
 * 3, ... and write i of k is a pure function of (seed, k, i): a delete when
 * tu_cmodel_is_del says so, else the value tu_cmodel_value builds, which
 * carries k and i in its first 8 bytes. Per key the model keeps `started`
 * (the newest write that began) and `done` (the newest that took effect and
 * returned). A reader loads done before its read and started after it; the
 * only answers allowed are writes d..s (0 = never written: absent). Anything
 * older was overwritten by a write that returned before the read began (a
 * lost update); anything newer had not begun when the read returned.
 *
 * Threads record the first failure (tu_cmodel_fail) and every thread stops
 * (tu_cmodel_running turns false); the test thread asserts on
 * tu_cmodel_failure after joining them.
 *
 * Thread-safety: every function may be called from any thread, except
 * tu_cmodel_new/free and tu_cmodel_failure (test thread, no workers running).
 */
#ifndef OM_TESTS_TU_MODEL_H
#define OM_TESTS_TU_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"

#define TU_CMODEL_MAXVAL 256

typedef struct tu_cmodel tu_cmodel;

/* A 64-bit mixer (splitmix64's finaliser): per-thread seeds, value bytes. */
uint64_t tu_mix64(uint64_t x);

/* nkeys keys; tu_cmodel_running turns false after `seconds`. */
tu_cmodel *tu_cmodel_new(uint64_t seed, uint32_t nkeys, uint64_t seconds);
void tu_cmodel_free(tu_cmodel *m);

/* Write i (>= 1) of key k deletes it about one time in five. */
bool tu_cmodel_is_del(const tu_cmodel *m, uint32_t k, uint32_t i);
/* The value of write i of key k (8..TU_CMODEL_MAXVAL bytes) into buf; returns its length. */
size_t tu_cmodel_value(const tu_cmodel *m, uint32_t k, uint32_t i, uint8_t *buf);

/* Take key k for writing (trylock): false if another writer has it; else *idx = its next write. */
bool tu_cmodel_take(tu_cmodel *m, uint32_t k, uint32_t *idx);
/* Release key k after write idx: applied = it took effect (else it never happened). */
void tu_cmodel_release(tu_cmodel *m, uint32_t k, uint32_t idx, bool applied);
/* The window of key k: load done before a read, started after it. */
uint32_t tu_cmodel_done(tu_cmodel *m, uint32_t k);
uint32_t tu_cmodel_started(tu_cmodel *m, uint32_t k);

/*
 * Check one read of key k against the window [d, s]: found and its value val
 * (head > 0: val holds only the first `head` bytes of the value). Returns the
 * write the answer shows (for an absent key, the first allowed of 0 and the
 * deletes), or -1 after recording a failure.
 */
long tu_cmodel_check(tu_cmodel *m, const char *what, uint32_t k, uint32_t d, uint32_t s, bool found,
                     om_slice val, size_t head);
/* A listing showed key k with a value of `size` bytes: some put in [d, s] must have that size. */
bool tu_cmodel_check_size(tu_cmodel *m, const char *what, uint32_t k, uint32_t d, uint32_t s,
                          uint64_t size);

/* Record a failure (the first one is kept) and stop every thread. */
void tu_cmodel_fail(tu_cmodel *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* False once a failure was recorded or the time is up. */
bool tu_cmodel_running(tu_cmodel *m);
/* The first failure, "" if none. */
const char *tu_cmodel_failure(tu_cmodel *m);

#endif /* OM_TESTS_TU_MODEL_H */
