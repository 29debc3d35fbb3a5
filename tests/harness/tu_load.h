/*
 * tests/harness/tu_load.h -- the client load of the ring-change tests
 * (tests/rebalance, tests/controlplane): writers, a deleter, a reader and a
 * paginated lister running against a coordinator while a change goes on,
 * and the checks of what they saw.
 *
 * Keys: `nstable` stable keys "s/%05d" (preloaded, never written during the
 * load: every read must return them and every listing must hold them all)
 * and `nmut` mutable keys "m/%05d" that two writers store and one deleter
 * deletes. Per mutable key the model keeps the highest acknowledged store
 * version (with its value's tag and length) and the highest acknowledged
 * delete version; a delete with no answer marks the key "maybe deleted".
 * A delete that finds the key gone may follow an attempt of its own that
 * deleted it and whose answer was lost (the client library then answers OK
 * with version 0; with `faults` a coordinator's retry answers NOT_FOUND):
 * the key's absence then excuses the stores sent before that answer.
 *
 * Checks while running: a stable key reads back its own bytes; a listing
 * (100 keys a page) is strictly increasing (never repeats a key) and holds
 * every stable key (never misses one that existed throughout). After
 * (tu_load_check): every acknowledged write reads back with its value or a
 * later version, and no acknowledged delete is undone. Errors: without
 * `faults` no request may fail; with it, transient ones (UNAVAILABLE,
 * TIMEOUT, BUSY: a process is killed) are counted and retried.
 *
 * Thread-safety: tu_load_* from the test thread; the workers are internal.
 */
#ifndef OM_TESTS_TU_LOAD_H
#define OM_TESTS_TU_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tu_load tu_load;
typedef struct omc_client omc_client;

/* A client of addr, retrying the connect for 10 s (fails the test then); 20 s request timeout. */
omc_client *tu_omc_connect(const char *addr);

/*
 * A load on `bucket` through the coordinator(s) at *addr ("h:p" or
 * "h:p,h:p,...": the client fails over). addr is the caller's buffer, read
 * whenever a client connects, so a caller that restarts its coordinator on
 * another port rewrites it. Preloads nothing (tu_load_preload).
 */
tu_load *tu_load_new(const char *addr, const char *bucket, int nstable, int nmut, uint64_t seed,
                     bool faults);
void tu_load_free(tu_load *L);
/* Store the stable keys (4 clients in parallel); fails the test on an error. */
void tu_load_preload(tu_load *L);
/* Start the workers (two writers, a deleter, a reader, a lister). */
void tu_load_start(tu_load *L);
/* Stop and join them, print the counts, fail the test on a violation they saw. */
void tu_load_stop(tu_load *L);
/* Read every mutable key back: acknowledged writes and deletes hold (fails the test if not). */
void tu_load_check(tu_load *L);
/* tu_now_ms() when tu_load_start ran (failure messages give times from there). */
uint64_t tu_load_started_ms(const tu_load *L);
/* Requests made so far, those that failed, complete listings so far. */
uint64_t tu_load_ops(tu_load *L);
uint64_t tu_load_errors(tu_load *L);
/* The longest a store, delete or read waited for its answer (or failure), in ms. */
uint64_t tu_load_max_latency_ms(tu_load *L);
uint64_t tu_load_lists(tu_load *L);
/* Stable key i ("s/%05d"), mutable key i ("m/%05d") into out. */
void tu_load_stable_key(int i, char *out, size_t n);
void tu_load_mut_key(int i, char *out, size_t n);

#endif /* OM_TESTS_TU_LOAD_H */
