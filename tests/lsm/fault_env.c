/*
 * tests/lsm/fault_env.c -- the fault-injecting env (see fault_env.h).
 *
 * Writers are wrapped so that appends and syncs can be failed and the
 * synced size of every file is known; readers and the other directory
 * operations are the POSIX env's own (fe_ops_init; renames and removes also
 * update the bookkeeping, so CURRENT keeps the synced size of CURRENT.tmp).
 *
 * Zero-fill (wfile_zero, the WAL's preallocation) is tracked apart from the
 * appends: a crash keeps the zeros that were synced, so unsynced appends
 * inside them fall back to zeros, as on a real file system.
 */
#include "fault_env.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tu.h"

typedef struct fe_track {
    char *path;
    uint64_t size, synced;
    uint64_t zeroed, zeroed_synced; /* end of the zero-filled space */
    struct fe_track *next;
} fe_track;

struct fault_env {
    lsm_env base;
    lsm_env *inner;
    pthread_mutex_t mu;
    int64_t countdown[FAULT_KINDS_]; /* -1: disarmed */
    char filter[FAULT_KINDS_][64];
    bool crashed;
    atomic_uint_fast64_t injected;
    fe_track *files;
};

typedef struct fe_wfile {
    lsm_wfile base;
    lsm_wfile *inner;
    fault_env *fe;
    char *path;
} fe_wfile;

/* Requires: fe->mu held. */
static fe_track *
fe_find(fault_env *fe, const char *path, bool create)
{
    for (fe_track *t = fe->files; t != NULL; t = t->next)
        if (strcmp(t->path, path) == 0)
            return t;
    if (!create)
        return NULL;
    fe_track *t = calloc(1, sizeof(*t));
    t->path = strdup(path);
    t->next = fe->files;
    fe->files = t;
    return t;
}

static void
fe_forget(fault_env *fe, const char *path)
{
    for (fe_track **p = &fe->files; *p != NULL; p = &(*p)->next) {
        if (strcmp((*p)->path, path) == 0) {
            fe_track *t = *p;

            *p = t->next;
            free(t->path);
            free(t);
            return;
        }
    }
}

/* Should this operation fail? Requires: fe->mu held. */
static bool
fe_trip(fault_env *fe, fault_kind kind, const char *path)
{
    if (fe->countdown[kind] < 0 || strstr(path, fe->filter[kind]) == NULL)
        return false;
    if (fe->countdown[kind] > 0) {
        fe->countdown[kind]--;
        return false;
    }
    atomic_fetch_add(&fe->injected, 1);
    return true;
}

static om_status
fe_wfile_open(lsm_env *env, const char *path, bool append, lsm_wfile **out)
{
    fault_env *fe = (fault_env *)env;
    fe_wfile *f = calloc(1, sizeof(*f));
    om_status st;

    if (f == NULL)
        return OM_E_NOMEM;
    st = fe->inner->ops->wfile_open(fe->inner, path, append, &f->inner);
    if (st != OM_OK) {
        free(f);
        return st;
    }
    f->base.env = env;
    f->fe = fe;
    f->path = strdup(path);
    pthread_mutex_lock(&fe->mu);
    fe_track *t = fe_find(fe, path, true);
    if (!append)
        t->size = t->synced = t->zeroed = t->zeroed_synced = 0;
    pthread_mutex_unlock(&fe->mu);
    *out = &f->base;
    return OM_OK;
}

/* The env lock is held across the real I/O so that a crash never races a write. */
static om_status
fe_wfile_append(lsm_wfile *wf, const void *p, size_t n)
{
    fe_wfile *f = (fe_wfile *)wf;
    fault_env *fe = f->fe;
    size_t keep = n;
    om_status st = OM_OK, inj = OM_OK;

    pthread_mutex_lock(&fe->mu);
    if (fe->crashed) {
        inj = OM_E_IO;
        keep = 0;
    } else if (fe_trip(fe, FAULT_WRITE_EIO, f->path) || fe_trip(fe, FAULT_WRITE_NOSPC, f->path)) {
        inj = OM_E_IO; /* ENOSPC and EIO both surface as OM_E_IO */
        keep = 0;
    } else if (fe_trip(fe, FAULT_WRITE_SHORT, f->path)) {
        inj = OM_E_IO;
        keep = n / 2;
    }
    if (keep > 0)
        st = lsm_wfile_append(f->inner, p, keep);
    if (st == OM_OK)
        fe_find(fe, f->path, true)->size += keep;
    pthread_mutex_unlock(&fe->mu);
    return st != OM_OK ? st : inj;
}

static om_status
fe_wfile_sync(lsm_wfile *wf)
{
    fe_wfile *f = (fe_wfile *)wf;
    fault_env *fe = f->fe;
    om_status st = OM_E_IO;

    pthread_mutex_lock(&fe->mu);
    if (!fe->crashed && !fe_trip(fe, FAULT_SYNC, f->path)) {
        st = lsm_wfile_sync(f->inner);
        if (st == OM_OK) {
            fe_track *t = fe_find(fe, f->path, true);

            t->synced = t->size;
            t->zeroed_synced = t->zeroed;
        }
    }
    pthread_mutex_unlock(&fe->mu);
    return st;
}

/* Fails like an append (a full disk fails both). */
static om_status
fe_wfile_zero(lsm_wfile *wf, uint64_t off, uint64_t n)
{
    fe_wfile *f = (fe_wfile *)wf;
    fault_env *fe = f->fe;
    om_status st = OM_E_IO;

    pthread_mutex_lock(&fe->mu);
    if (!fe->crashed && !fe_trip(fe, FAULT_WRITE_EIO, f->path) &&
        !fe_trip(fe, FAULT_WRITE_NOSPC, f->path)) {
        st = f->inner->env->ops->wfile_zero(f->inner, off, n);
        if (st == OM_OK) {
            fe_track *t = fe_find(fe, f->path, true);

            if (off + n > t->zeroed)
                t->zeroed = off + n;
        }
    }
    pthread_mutex_unlock(&fe->mu);
    return st;
}

/*
 * Passed on (it makes nothing durable, so a crash still cuts the file back
 * to its synced size); injects no fault of its own, so an armed fault still
 * trips on the nth append or sync. After a crash it fails like a write.
 */
static om_status
fe_wfile_writeback(lsm_wfile *wf, uint64_t off, uint64_t n)
{
    fe_wfile *f = (fe_wfile *)wf;
    fault_env *fe = f->fe;
    om_status st = OM_E_IO;

    pthread_mutex_lock(&fe->mu);
    if (!fe->crashed)
        st = f->inner->env->ops->wfile_writeback(f->inner, off, n);
    pthread_mutex_unlock(&fe->mu);
    return st;
}

static om_status
fe_wfile_close(lsm_wfile *wf)
{
    fe_wfile *f = (fe_wfile *)wf;
    om_status st = lsm_wfile_close(f->inner);

    free(f->path);
    free(f);
    return st;
}

static om_status
fe_rename(lsm_env *env, const char *from, const char *to)
{
    fault_env *fe = (fault_env *)env;
    om_status st;

    pthread_mutex_lock(&fe->mu);
    if (fe->crashed) {
        pthread_mutex_unlock(&fe->mu);
        return OM_E_IO;
    }
    pthread_mutex_unlock(&fe->mu);
    st = fe->inner->ops->rename(fe->inner, from, to);
    if (st == OM_OK) {
        pthread_mutex_lock(&fe->mu);
        fe_track *t = fe_find(fe, from, false);
        fe_forget(fe, to);
        if (t != NULL) {
            free(t->path);
            t->path = strdup(to);
        }
        pthread_mutex_unlock(&fe->mu);
    }
    return st;
}

static om_status
fe_remove(lsm_env *env, const char *path)
{
    fault_env *fe = (fault_env *)env;
    om_status st = fe->inner->ops->remove(fe->inner, path);

    if (st == OM_OK) {
        pthread_mutex_lock(&fe->mu);
        fe_forget(fe, path);
        pthread_mutex_unlock(&fe->mu);
    }
    return st;
}

static om_status
fe_truncate(lsm_env *env, const char *path, uint64_t size)
{
    fault_env *fe = (fault_env *)env;
    om_status st = fe->inner->ops->truncate(fe->inner, path, size);

    if (st == OM_OK) {
        pthread_mutex_lock(&fe->mu);
        fe_track *t = fe_find(fe, path, false);
        if (t != NULL) {
            t->size = size;
            if (t->synced > size)
                t->synced = size;
        }
        pthread_mutex_unlock(&fe->mu);
    }
    return st;
}

static om_status
fe_sync_dir(lsm_env *env, const char *dir)
{
    fault_env *fe = (fault_env *)env;
    bool crashed;

    pthread_mutex_lock(&fe->mu);
    crashed = fe->crashed;
    pthread_mutex_unlock(&fe->mu);
    if (crashed)
        return OM_E_IO;
    return fe->inner->ops->sync_dir(fe->inner, dir);
}

/*
 * The fault env's operations: the POSIX env's (which keep no state of the
 * env they are called through, lsm/env.h), with the writers and the calls
 * that change names, sizes and directories replaced by the ones above.
 * Readers, mkdir, listing and locks are the POSIX env's own.
 */
static lsm_env_ops fe_ops;
static pthread_once_t fe_ops_once = PTHREAD_ONCE_INIT;

static void
fe_ops_init(void)
{
    fe_ops = *lsm_env_posix()->ops;
    fe_ops.wfile_open = fe_wfile_open;
    fe_ops.wfile_append = fe_wfile_append;
    fe_ops.wfile_sync = fe_wfile_sync;
    fe_ops.wfile_zero = fe_wfile_zero;
    fe_ops.wfile_writeback = fe_wfile_writeback;
    fe_ops.wfile_close = fe_wfile_close;
    fe_ops.rename = fe_rename;
    fe_ops.remove = fe_remove;
    fe_ops.truncate = fe_truncate;
    fe_ops.sync_dir = fe_sync_dir;
}

fault_env *
fault_env_new(void)
{
    fault_env *fe = calloc(1, sizeof(*fe));

    pthread_once(&fe_ops_once, fe_ops_init);
    fe->base.ops = &fe_ops;
    fe->inner = lsm_env_posix();
    pthread_mutex_init(&fe->mu, NULL);
    for (int i = 0; i < FAULT_KINDS_; i++)
        fe->countdown[i] = -1;
    atomic_init(&fe->injected, 0);
    return fe;
}

void
fault_env_free(fault_env *fe)
{
    if (fe == NULL)
        return;
    while (fe->files != NULL)
        fe_forget(fe, fe->files->path);
    pthread_mutex_destroy(&fe->mu);
    free(fe);
}

lsm_env *
fault_env_get(fault_env *fe)
{
    return &fe->base;
}

void
fault_env_arm(fault_env *fe, fault_kind kind, const char *path_filter, int64_t nth)
{
    pthread_mutex_lock(&fe->mu);
    fe->countdown[kind] = nth;
    snprintf(fe->filter[kind], sizeof(fe->filter[kind]), "%s", path_filter);
    pthread_mutex_unlock(&fe->mu);
}

void
fault_env_disarm(fault_env *fe)
{
    pthread_mutex_lock(&fe->mu);
    for (int i = 0; i < FAULT_KINDS_; i++)
        fe->countdown[i] = -1;
    pthread_mutex_unlock(&fe->mu);
}

uint64_t
fault_env_injected(fault_env *fe)
{
    return atomic_load(&fe->injected);
}

void
fault_env_crash(fault_env *fe, bool torn, uint64_t *rnd)
{
    pthread_mutex_lock(&fe->mu);
    fe->crashed = true;
    for (fe_track *t = fe->files; t != NULL; t = t->next) {
        uint64_t keep = t->synced;

        if (torn && t->size > t->synced)
            keep += tu_rand(rnd) % (t->size - t->synced + 1);
        if (keep < t->size || t->zeroed > keep) /* also drops unsynced zeros */
            fe->inner->ops->truncate(fe->inner, t->path, keep);
        if (t->zeroed_synced > keep) /* synced zeros stay, sparse here */
            fe->inner->ops->truncate(fe->inner, t->path, t->zeroed_synced);
        t->size = keep;
        t->zeroed = t->zeroed_synced;
    }
    pthread_mutex_unlock(&fe->mu);
}
