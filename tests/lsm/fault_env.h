/*
 * tests/lsm/fault_env.h -- an lsm_env that wraps the POSIX env and injects
 * faults: failed appends (EIO or ENOSPC), short appends, failed syncs, and
 * a simulated crash that throws away everything not synced (optionally
 * keeping a random part of the unsynced tail: a torn write).
 *
 * Faults are armed per kind with a path filter (a substring such as ".log",
 * ".sst" or "MANIFEST"): the nth matching operation from now fails, and so
 * does every later one until disarmed (a full disk stays full).
 *
 * Thread-safety: all functions are safe from any thread.
 */
#ifndef OM_TESTS_LSM_FAULT_ENV_H
#define OM_TESTS_LSM_FAULT_ENV_H

#include <stdbool.h>
#include <stdint.h>

#include "lsm/env.h"

typedef struct fault_env fault_env;

typedef enum fault_kind {
    FAULT_WRITE_EIO = 0, /* append fails with EIO, nothing written */
    FAULT_WRITE_NOSPC,   /* append fails with ENOSPC, nothing written */
    FAULT_WRITE_SHORT,   /* append writes half the bytes, then fails */
    FAULT_SYNC,          /* fdatasync fails */
    FAULT_KINDS_
} fault_kind;

fault_env *fault_env_new(void);
void fault_env_free(fault_env *fe);
/* The env to put into lsm_opts.env. */
lsm_env *fault_env_get(fault_env *fe);

/* Fail the nth (0 = the next) matching operation and all after it. */
void fault_env_arm(fault_env *fe, fault_kind kind, const char *path_filter, int64_t nth);
void fault_env_disarm(fault_env *fe);
/* How many faults have been injected so far. */
uint64_t fault_env_injected(fault_env *fe);

/*
 * Simulate a crash: from now on every write and sync through this env fails
 * (so the database can be closed without writing more), and each file
 * written through it is cut back to its last synced size -- plus, with
 * torn = true, a random part (seeded by *rnd) of what was written after.
 */
void fault_env_crash(fault_env *fe, bool torn, uint64_t *rnd);

#endif /* OM_TESTS_LSM_FAULT_ENV_H */
