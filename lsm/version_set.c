/*
 * lsm/version_set.c -- the version set: MANIFEST writing, CURRENT switching
 * and recovery (the scheme is described in manifest.h).
 *
 * Recovery reads CURRENT ("MANIFEST-NNNNNN\n"), replays every edit of that
 * MANIFEST, and requires the result to name a log number, a next file number
 * and a last sequence. A torn tail of the MANIFEST is an edit whose write
 * never completed, so it never took effect (edits are synced before they
 * are installed); it is ignored with a warning. Anything else that is wrong
 * is OM_E_CORRUPT, logged with the file and offset.
 *
 * Invariants of the edits this process logs (OM_ASSERT in
 * lsm_vset_log_and_apply and where a MANIFEST is started): edits are applied
 * in the order they are logged, each on top of the current version, and the
 * counters they record never go backwards -- the log number and the last
 * sequence are at least what the MANIFEST already holds, every added file's
 * number was handed out by lsm_vset_new_file_number (below next_file), and a
 * new MANIFEST's number is above the live one's.
 */
#define OM_LOG_MODULE "lsm"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lsm/filename.h"
#include "lsm/manifest.h"
#include "util/assert.h"

/* Tables waiting for the deleter; beyond it the thread that drops one removes it. */
#define VSET_DELETER_QUEUE 4096

/* A table for the deleter (lsm_vset_drop_table). */
typedef struct vset_drop {
    workq_item item; /* first: the job is the item */
    lsm_vset *vs;
    uint64_t number, size;
} vset_drop;

/*
 * Evict the table and remove its file. A large file is first cut down from
 * its end in LSM_DELETE_CHUNK steps: freeing 64 MiB at once made the journal
 * commit that carried it (with the file system's discard, which frees the
 * blocks on the device as well) 20-35 ms long, and every WAL sync waiting
 * for a commit waited that long; in steps each commit carries a few MiB
 * (RocksDB deletes in chunks for the same reason).
 */
static void
vset_remove_table(lsm_vset *vs, uint64_t number, uint64_t size)
{
    char path[LSM_PATH_MAX];

    if (vs->tc != NULL)
        lsm_table_cache_evict(vs->tc, number);
    lsm_fname(path, sizeof(path), vs->dir, LSM_FT_SST, number);
    /*
     * From the end, LSM_DELETE_CHUNK at a time, and only when the file has no
     * other name (a hard link would lose its data); a failure leaves the rest
     * to the remove.
     */
    uint64_t links = 0;
    if (size > LSM_DELETE_CHUNK && vs->env->ops->links != NULL &&
        vs->env->ops->links(vs->env, path, &links) == OM_OK && links == 1)
        for (uint64_t sz = size; sz > LSM_DELETE_CHUNK; sz -= LSM_DELETE_CHUNK)
            if (vs->env->ops->truncate(vs->env, path, sz - LSM_DELETE_CHUNK) != OM_OK)
                break;
    if (vs->env->ops->remove(vs->env, path) == OM_OK)
        atomic_fetch_add_explicit(&vs->deleted_files, 1, memory_order_relaxed);
    else
        lsm_logf(vs->opts, OM_LOG_WARN, "cannot remove obsolete table file=%s", path);
}

/* The deleter's job runner (workq). */
static void
vset_drop_run(void *arg, workq_item *it)
{
    vset_drop *d = (vset_drop *)(void *)it;

    (void)arg;
    vset_remove_table(d->vs, d->number, d->size);
    free(d);
}

void
lsm_vset_drop_table(lsm_vset *vs, uint64_t number, uint64_t size)
{
    vset_drop *d = malloc(sizeof(*d));

    OM_ASSERT(vs->deleter != NULL); /* no table is dropped once lsm_vset_free closed it */
    if (d != NULL) {
        d->vs = vs;
        d->number = number;
        d->size = size;
        if (workq_push(vs->deleter, &d->item) == OM_OK)
            return;
        free(d);
    }
    vset_remove_table(vs, number, size);
}

om_status
lsm_vset_new(lsm_env *env, const char *dir, const lsm_opts *opts, lsm_table_cache *tc,
             pthread_mutex_t *db_mu, lsm_vset **out)
{
    lsm_vset *vs = calloc(1, sizeof(*vs));
    lsm_edit empty;
    om_status st;

    if (vs == NULL)
        return OM_ERR(OM_E_NOMEM);
    vs->env = env;
    vs->opts = opts;
    vs->tc = tc;
    vs->db_mu = db_mu;
    atomic_init(&vs->next_file, 2);
    atomic_init(&vs->deleted_files, 0);
    vs->manifest_roll_bytes = LSM_MANIFEST_ROLL_BYTES;
    vs->dir = strdup(dir);
    lsm_edit_init(&empty);
    if (vs->dir == NULL) {
        free(vs);
        return OM_ERR(OM_E_NOMEM);
    }
    st = lsm_version_apply(NULL, &empty, opts, &vs->current);
    if (st == OM_OK) {
        st = workq_open("lsm-delete", 1, VSET_DELETER_QUEUE, vset_drop_run, NULL, &vs->deleter);
        if (st != OM_OK)
            lsm_version_unref(vs->current);
    }
    if (st != OM_OK) {
        free(vs->dir);
        free(vs);
        return st;
    }
    *out = vs;
    return OM_OK;
}

void
lsm_vset_free(lsm_vset *vs)
{
    if (vs == NULL)
        return;
    lsm_wal_writer_close(vs->manifest, false);
    lsm_version_unref(vs->current);
    /* the last pushes were the unref's above, on this thread: none races the close */
    workq_close(vs->deleter, NULL);
    vs->deleter = NULL;
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        om_buf_free(&vs->cptr[l]);
    free(vs->dir);
    free(vs);
}

uint64_t
lsm_vset_new_file_number(lsm_vset *vs)
{
    return atomic_fetch_add(&vs->next_file, 1);
}

void
lsm_vset_mark_file_number_used(lsm_vset *vs, uint64_t n)
{
    uint64_t cur = atomic_load(&vs->next_file);

    while (cur <= n && !atomic_compare_exchange_weak(&vs->next_file, &cur, n + 1))
        ;
}

lsm_version *
lsm_vset_current(lsm_vset *vs)
{
    lsm_version_ref(vs->current);
    return vs->current;
}

/* Remember what an installed edit says about counters and compaction pointers. */
static void
vset_note_edit(lsm_vset *vs, const lsm_edit *e)
{
    if (e->has_log_number && e->log_number > vs->log_number)
        vs->log_number = e->log_number;
    if (e->has_next_file)
        lsm_vset_mark_file_number_used(vs, e->next_file - (e->next_file > 0));
    if (e->has_last_seq && e->last_seq > vs->last_seq)
        vs->last_seq = e->last_seq;
    for (int i = 0; i < e->ncptr; i++)
        om_buf_set(&vs->cptr[e->cptr[i].level], om_buf_slice(&e->cptr[i].key));
}

static om_status
vset_read_current(lsm_vset *vs, uint64_t *number)
{
    char path[LSM_PATH_MAX], buf[128];
    lsm_rfile *f;
    uint64_t size;
    size_t got = 0;
    lsm_ftype type;
    om_status st;

    lsm_fname(path, sizeof(path), vs->dir, LSM_FT_CURRENT, 0);
    OM_TRY(vs->env->ops->rfile_open(vs->env, path, &f, &size));
    if (size == 0 || size >= sizeof(buf)) {
        lsm_rfile_close(f);
        lsm_logf(vs->opts, OM_LOG_ERROR, "corrupt CURRENT file=%s size=%llu", path,
                 (unsigned long long)size);
        return OM_ERR(OM_E_CORRUPT);
    }
    st = lsm_rfile_read(f, 0, (size_t)size, (uint8_t *)buf, &got);
    lsm_rfile_close(f);
    OM_TRY(st);
    if (got != size || buf[got - 1] != '\n') {
        lsm_logf(vs->opts, OM_LOG_ERROR, "corrupt CURRENT file=%s offset=%zu", path, got);
        return OM_ERR(OM_E_CORRUPT);
    }
    buf[got - 1] = '\0';
    if (lsm_fname_parse(buf, &type, number) != OM_OK || type != LSM_FT_MANIFEST) {
        lsm_logf(vs->opts, OM_LOG_ERROR, "corrupt CURRENT file=%s offset=0 content=%.40s", path,
                 buf);
        return OM_ERR(OM_E_CORRUPT);
    }
    return OM_OK;
}

om_status
lsm_vset_recover(lsm_vset *vs)
{
    char path[LSM_PATH_MAX];
    lsm_wal_reader *r = NULL;
    uint64_t number, edits = 0;
    bool have_log = false, have_next = false, have_seq = false;
    lsm_version *v;
    om_status st;
    om_slice rec;

    OM_TRY(vset_read_current(vs, &number));
    lsm_fname(path, sizeof(path), vs->dir, LSM_FT_MANIFEST, number);
    st = lsm_wal_reader_open(vs->env, path, &r);
    if (st == OM_E_NOTFOUND) {
        lsm_logf(vs->opts, OM_LOG_ERROR, "CURRENT names a missing manifest file=%s", path);
        return OM_ERR(OM_E_CORRUPT);
    }
    OM_TRY(st);
    while ((st = lsm_wal_read(r, &rec)) == OM_OK) {
        lsm_edit e;
        uint64_t off = lsm_wal_reader_offset(r);

        lsm_edit_init(&e);
        st = lsm_edit_decode(rec, &e);
        if (st == OM_OK)
            st = lsm_version_apply(vs->current, &e, vs->opts, &v);
        if (st != OM_OK) {
            lsm_edit_fini(&e);
            if (st == OM_E_CORRUPT)
                lsm_logf(vs->opts, OM_LOG_ERROR,
                         "corrupt manifest edit file=%s offset=%llu (record ending there)", path,
                         (unsigned long long)off);
            goto out;
        }
        lsm_version_unref(vs->current);
        vs->current = v;
        have_log |= e.has_log_number;
        have_next |= e.has_next_file;
        have_seq |= e.has_last_seq;
        vset_note_edit(vs, &e);
        lsm_edit_fini(&e);
        edits++;
    }
    if (st == OM_E_CORRUPT) {
        lsm_logf(vs->opts, OM_LOG_ERROR, "corrupt manifest file=%s offset=%llu", path,
                 (unsigned long long)lsm_wal_reader_offset(r));
        goto out;
    }
    if (st != OM_E_NOTFOUND)
        goto out;
    if (lsm_wal_reader_torn(r))
        lsm_logf(vs->opts, OM_LOG_WARN,
                 "manifest ends in an incomplete edit (never installed) file=%s offset=%llu", path,
                 (unsigned long long)lsm_wal_reader_offset(r));
    if (!have_log || !have_next || !have_seq) {
        lsm_logf(vs->opts, OM_LOG_ERROR,
                 "manifest lacks log number, next file or last sequence file=%s edits=%llu", path,
                 (unsigned long long)edits);
        st = OM_ERR(OM_E_CORRUPT);
        goto out;
    }
    vs->manifest_number = number;
    lsm_vset_mark_file_number_used(vs, number);
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        for (int i = 0; i < vs->current->nfiles[l]; i++)
            vs->current->files[l][i]->vs = vs;
    st = OM_OK;
out:
    lsm_wal_reader_close(r);
    return st;
}

/* A snapshot edit describing everything in v plus the vset's counters. */
static om_status
vset_snapshot(lsm_vset *vs, const lsm_version *v, lsm_edit *e)
{
    lsm_edit_set_log_number(e, vs->log_number);
    lsm_edit_set_next_file(e, atomic_load(&vs->next_file));
    lsm_edit_set_last_seq(e, vs->last_seq);
    for (int l = 0; l < LSM_MAX_LEVELS; l++) {
        if (vs->cptr[l].n > 0)
            OM_TRY(lsm_edit_set_cptr(e, l, om_buf_slice(&vs->cptr[l])));
        for (int i = 0; i < v->nfiles[l]; i++) {
            const lsm_file_meta *f = v->files[l][i];

            OM_TRY(lsm_edit_add_file(e, l, f->number, f->size, om_buf_slice(&f->smallest),
                                     om_buf_slice(&f->largest)));
        }
    }
    return OM_OK;
}

static om_status
vset_write_current(lsm_vset *vs, uint64_t number)
{
    char tmp[LSM_PATH_MAX], cur[LSM_PATH_MAX], content[64];
    lsm_wfile *f;
    om_status st;
    int n = snprintf(content, sizeof(content), "MANIFEST-%06llu\n", (unsigned long long)number);

    lsm_fname(tmp, sizeof(tmp), vs->dir, LSM_FT_TEMP, 0);
    lsm_fname(cur, sizeof(cur), vs->dir, LSM_FT_CURRENT, 0);
    OM_TRY(vs->env->ops->wfile_open(vs->env, tmp, false, &f));
    st = lsm_wfile_append(f, content, (size_t)n);
    if (st == OM_OK)
        st = lsm_wfile_sync(f);
    if (st == OM_OK)
        st = lsm_wfile_close(f);
    else
        lsm_wfile_close(f);
    if (st == OM_OK)
        st = vs->env->ops->rename(vs->env, tmp, cur);
    if (st == OM_OK)
        st = vs->env->ops->sync_dir(vs->env, vs->dir);
    if (st != OM_OK)
        vs->env->ops->remove(vs->env, tmp);
    return st;
}

/*
 * vset_switch_manifest -- the one MANIFEST rewrite: write v as the snapshot
 * edit of the new MANIFEST `number` (its counters raised to those of e when
 * e is not NULL: e is about to be installed), switch CURRENT to it and
 * append later edits there. *old_number gets the number of the MANIFEST it
 * replaces (the caller decides whether to remove that file); path gets the
 * new file's name.
 *
 * A failure before CURRENT is written removes the new file and changes
 * nothing. After CURRENT is written the new MANIFEST is the live one even if
 * a later step fails; a failure writing CURRENT leaves both files (CURRENT
 * may name either) and stops all further edits (vs->err, background error).
 * Requires: the manifest lock.
 */
static om_status
vset_switch_manifest(lsm_vset *vs, const lsm_version *v, const lsm_edit *e, uint64_t number,
                     uint64_t *old_number, char path[LSM_PATH_MAX])
{
    lsm_wal_writer *w = NULL;
    lsm_edit snap;
    om_buf rec = OM_BUF_INIT;
    om_status st;

    lsm_edit_init(&snap);
    OM_GOTO(vset_snapshot(vs, v, &snap));
    if (e != NULL) {
        /* The counters as they will be once e is installed. */
        if (e->log_number > snap.log_number)
            lsm_edit_set_log_number(&snap, e->log_number);
        if (e->last_seq > snap.last_seq)
            lsm_edit_set_last_seq(&snap, e->last_seq);
        lsm_edit_set_next_file(&snap, atomic_load(&vs->next_file));
        for (int i = 0; i < e->ncptr; i++)
            OM_GOTO(lsm_edit_set_cptr(&snap, e->cptr[i].level, om_buf_slice(&e->cptr[i].key)));
    }
    OM_GOTO(lsm_edit_encode(&snap, &rec));
    lsm_fname(path, LSM_PATH_MAX, vs->dir, LSM_FT_MANIFEST, number);
    OM_GOTO(lsm_wal_writer_open(vs->env, path, &w));
    OM_GOTO(lsm_wal_add(w, om_buf_slice(&rec)));
    OM_GOTO(lsm_wal_sync(w));
    st = vset_write_current(vs, number);
    if (st != OM_OK) {
        /* CURRENT may name either MANIFEST now: keep both, log nothing more. */
        lsm_wal_writer_close(w, false);
        vs->err = st;
        goto out;
    }
    OM_ASSERT(number > vs->manifest_number);
    lsm_wal_writer_close(vs->manifest, false);
    vs->manifest = w;
    *old_number = vs->manifest_number;
    vs->manifest_number = number;
    goto out;
fail:
    if (w != NULL) {
        lsm_wal_writer_close(w, false);
        vs->env->ops->remove(vs->env, path);
    }
out:
    lsm_edit_fini(&snap);
    om_buf_free(&rec);
    return st;
}

om_status
lsm_vset_create_manifest(lsm_vset *vs, lsm_edit *extra)
{
    char path[LSM_PATH_MAX];
    lsm_version *v = NULL, *old;
    uint64_t number = lsm_vset_new_file_number(vs), old_number;
    om_status st;

    if (extra != NULL) {
        OM_TRY(lsm_version_apply(vs->current, extra, vs->opts, &v));
        vset_note_edit(vs, extra);
    } else {
        v = vs->current;
        lsm_version_ref(v);
    }
    st = vset_switch_manifest(vs, v, NULL, number, &old_number, path);
    if (st != OM_OK) {
        lsm_version_unref(v);
        return st;
    }
    /* Only files new to this version are written: readers of older versions read ->vs. */
    for (int l = 0; l < LSM_MAX_LEVELS; l++)
        for (int i = 0; i < v->nfiles[l]; i++)
            if (v->files[l][i]->vs != vs)
                v->files[l][i]->vs = vs;
    pthread_mutex_lock(vs->db_mu);
    old = vs->current;
    vs->current = v;
    pthread_mutex_unlock(vs->db_mu);
    lsm_version_unref(old);
    return OM_OK;
}

/*
 * Write v (the result of applying e) as the snapshot of a new MANIFEST and
 * switch CURRENT to it; the old MANIFEST is removed. Requires: the manifest lock.
 */
static om_status
vset_roll(lsm_vset *vs, const lsm_version *v, const lsm_edit *e)
{
    char path[LSM_PATH_MAX], old_path[LSM_PATH_MAX];
    uint64_t old_number;

    OM_TRY(vset_switch_manifest(vs, v, e, lsm_vset_new_file_number(vs), &old_number, path));
    lsm_fname(old_path, sizeof(old_path), vs->dir, LSM_FT_MANIFEST, old_number);
    vs->env->ops->remove(vs->env, old_path);
    lsm_logf(vs->opts, OM_LOG_INFO, "started a new manifest file=%s", path);
    return OM_OK;
}

static bool
edit_readds(const lsm_edit *e, uint64_t number)
{
    for (int i = 0; i < e->nadds; i++)
        if (e->adds[i].f->number == number)
            return true;
    return false;
}

om_status
lsm_vset_log_and_apply(lsm_vset *vs, lsm_edit *e, void (*installed)(void *arg), void *arg)
{
    lsm_version *v, *old;
    om_buf rec = OM_BUF_INIT;
    om_status st;

    if (vs->manifest == NULL)
        return OM_ERR(OM_E_INVALID);
    if (vs->err != OM_OK)
        return vs->err;
    if (!e->has_log_number)
        lsm_edit_set_log_number(e, vs->log_number);
    if (!e->has_last_seq)
        lsm_edit_set_last_seq(e, vs->last_seq);
    lsm_edit_set_next_file(e, atomic_load(&vs->next_file));
    OM_ASSERT(e->log_number >= vs->log_number && e->last_seq >= vs->last_seq);
    for (int i = 0; i < e->nadds; i++)
        OM_ASSERT(e->adds[i].f->number > 0 && e->adds[i].f->number < e->next_file);
    /* vs->current changes only here, under the manifest lock we hold. */
    OM_TRY(lsm_version_apply(vs->current, e, vs->opts, &v));
    if (lsm_wal_size(vs->manifest) >= vs->manifest_roll_bytes) {
        st = vset_roll(vs, v, e);
    } else {
        st = lsm_edit_encode(e, &rec);
        if (st == OM_OK)
            st = lsm_wal_add(vs->manifest, om_buf_slice(&rec));
        if (st == OM_OK)
            st = lsm_wal_sync(vs->manifest);
        om_buf_free(&rec);
    }
    if (st != OM_OK) {
        lsm_logf(vs->opts, OM_LOG_ERROR, "manifest write failed number=%llu status=%s",
                 (unsigned long long)vs->manifest_number, om_status_str(st));
        lsm_version_unref(v);
        return st;
    }
    for (int i = 0; i < e->nadds; i++)
        e->adds[i].f->vs = vs;
    pthread_mutex_lock(vs->db_mu);
    old = vs->current;
    vs->current = v;
    vset_note_edit(vs, e);
    if (installed != NULL)
        installed(arg);
    pthread_mutex_unlock(vs->db_mu);
    /* The old version still lists the deleted files, so none can be freed before this. */
    for (int i = 0; i < e->ndels; i++) {
        int l = e->dels[i].level;

        if (edit_readds(e, e->dels[i].number)) /* a trivial move keeps the file */
            continue;
        for (int j = 0; j < old->nfiles[l]; j++)
            if (old->files[l][j]->number == e->dels[i].number)
                atomic_store(&old->files[l][j]->obsolete, true);
    }
    lsm_version_unref(old);
    return OM_OK;
}
