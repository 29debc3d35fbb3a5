/*
 * lsm/env.h -- the file-system vtable the engine does all its I/O through
 * (private to lsm/ and its tests).
 *
 * The POSIX env (env_posix.c) is the default; tests wrap it in a fault env
 * (tests/lsm/fault_env.c) that injects short writes, failed syncs, ENOSPC and
 * torn tails. errno is converted to om_status here, at the syscall boundary,
 * and logged once where it happens.
 *
 * Every file object starts with a pointer to its env, so calls dispatch
 * through f->env->ops. Wrapping envs embed the wrapped env's files.
 * The POSIX env's operations keep no state of the env they are called
 * through (they only record it in the files they open), so an env built on
 * it starts from a copy of lsm_env_posix()->ops and replaces what it changes.
 *
 * Thread-safety: an env is shared by all threads; a file object belongs to
 * one thread at a time, except lsm_rfile_read which is safe concurrently.
 */
#ifndef OM_LSM_ENV_H
#define OM_LSM_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

typedef struct lsm_env lsm_env;
typedef struct lsm_wfile lsm_wfile; /* append-only writer */
typedef struct lsm_rfile lsm_rfile; /* positional reader */

typedef struct lsm_env_ops {
    /* Create (truncate) or, with append=true, open for appending (creating if absent). */
    om_status (*wfile_open)(lsm_env *env, const char *path, bool append, lsm_wfile **out);
    om_status (*wfile_append)(lsm_wfile *f, const void *p, size_t n);
    om_status (*wfile_sync)(lsm_wfile *f); /* fdatasync */
    /* Close without syncing; returns the close error. Frees f. */
    om_status (*wfile_close)(lsm_wfile *f);
    om_status (*rfile_open)(lsm_env *env, const char *path, lsm_rfile **out, uint64_t *size);
    /* Read up to n bytes at off into dst; *got < n only at end of file. */
    om_status (*rfile_read)(lsm_rfile *f, uint64_t off, size_t n, uint8_t *dst, size_t *got);
    void (*rfile_close)(lsm_rfile *f);
    om_status (*rename)(lsm_env *env, const char *from, const char *to); /* atomic replace */
    om_status (*remove)(lsm_env *env, const char *path);
    om_status (*truncate)(lsm_env *env, const char *path, uint64_t size);
    om_status (*mkdir)(lsm_env *env, const char *path); /* OM_OK if it exists */
    om_status (*rmdir)(lsm_env *env, const char *path);
    om_status (*exists)(lsm_env *env, const char *path, bool *out);
    /* Names (not paths) of the entries of dir, excluding . and ..; free with lsm_env_free_list. */
    om_status (*list)(lsm_env *env, const char *dir, char ***names, size_t *n);
    om_status (*sync_dir)(lsm_env *env, const char *dir);
    /* An exclusive advisory lock on path (created if absent); held until unlock. */
    om_status (*lock)(lsm_env *env, const char *path, int *handle);
    void (*unlock)(lsm_env *env, int handle);
    /*
     * Optional (NULL: not supported): map the whole file read-only. On OM_OK
     * *p points at *size bytes that stay valid until rfile_close. Call it before
     * the file is shared between threads. Callers fall back to rfile_read when
     * it is missing or fails (SSTable readers use it to read blocks without a
     * system call per block).
     */
    om_status (*rfile_map)(lsm_rfile *f, const uint8_t **p, uint64_t *size);
    /*
     * Optional (NULL: not supported): write n zero bytes at offset off of a
     * writer without moving where appends go. The WAL zero-fills ahead of
     * its appends with it (wal_format.h, "Preallocation"), so that a sync
     * of later appends there only has data to flush, not a new file size
     * or new blocks.
     */
    om_status (*wfile_zero)(lsm_wfile *f, uint64_t off, uint64_t n);
    /*
     * Optional (NULL: not supported): start writing bytes [off, off + n) of a
     * writer out to the device without waiting for it and without making
     * them durable (only wfile_sync does). SSTable writers call it every
     * LSM_SST_WRITEBACK bytes so that a table's dirty pages never pile up
     * until its sync: a burst of tens of MiB queued on the device at once
     * holds up every sync behind it, the WAL's included.
     */
    om_status (*wfile_writeback)(lsm_wfile *f, uint64_t off, uint64_t n);
    /*
     * Optional (NULL: not known): how many names the file at path has (its
     * hard link count). The deleter cuts an obsolete table down in steps
     * before removing it only when this says 1: a table an operator has
     * hard-linked (a backup taken with `cp -al` or `ln`) keeps its data.
     */
    om_status (*links)(lsm_env *env, const char *path, uint64_t *n);
} lsm_env_ops;

struct lsm_env {
    const lsm_env_ops *ops;
};

struct lsm_wfile {
    lsm_env *env;
};

struct lsm_rfile {
    lsm_env *env;
};

/* The process-wide POSIX env (a const singleton; never freed). */
lsm_env *lsm_env_posix(void);

void lsm_env_free_list(char **names, size_t n);

static inline om_status
lsm_wfile_append(lsm_wfile *f, const void *p, size_t n)
{
    return f->env->ops->wfile_append(f, p, n);
}
static inline om_status
lsm_wfile_sync(lsm_wfile *f)
{
    return f->env->ops->wfile_sync(f);
}
static inline om_status
lsm_wfile_close(lsm_wfile *f)
{
    return f == NULL ? OM_OK : f->env->ops->wfile_close(f);
}
static inline om_status
lsm_rfile_read(lsm_rfile *f, uint64_t off, size_t n, uint8_t *dst, size_t *got)
{
    return f->env->ops->rfile_read(f, off, n, dst, got);
}
/* OM_E_INVALID when the file's env cannot map files. */
static inline om_status
lsm_rfile_map(lsm_rfile *f, const uint8_t **p, uint64_t *size)
{
    if (f->env->ops->rfile_map == NULL)
        return OM_E_INVALID;
    return f->env->ops->rfile_map(f, p, size);
}
static inline void
lsm_rfile_close(lsm_rfile *f)
{
    if (f != NULL)
        f->env->ops->rfile_close(f);
}

#endif /* OM_LSM_ENV_H */
