/*
 * shard/job.c -- the memory of a job and the write of a job group
 * (job.h).
 *
 * A Store or Delete never reaches the engine alone: the commit pipeline
 * (commit.c) collects the jobs submitted while the previous group was being
 * written and hands them here as one group, on the writer thread (or the
 * loop thread in the synchronous modes). shard_job_write_group turns them
 * into one shard_write_group call, so a group is one engine write with one
 * WAL record batch; each job then carries its own status, object info and
 * error text back to handlers.c, which answers it once the pipeline's gate
 * says its group is durable.
 *
 * A barrier is a job with no write: it passes through the same queue, so
 * when it is answered every write submitted before it is written and
 * durable. Migration uses it to drain the writes in flight before a
 * cutover fence (shard_commit_barrier, migrate.c).
 *
 * An other write (shard_commit_other) is a write the pipeline does not
 * decide itself: migration's ApplyRecords ("only if newer") and the purge of
 * moved keys on a replicated primary (mig_jobs.c). It runs on the writer's
 * thread after the group's Stores and Deletes, so it is ordered with them and
 * with the replication index (the writer is the one thread that seals
 * groups), and its answer waits in the gate like theirs.
 */
#include "shard/job.h"

#include <stdlib.h>
#include <string.h>

#include "shard/repl.h"

shard_job *
shard_job_new(shard *s, bool write, size_t bytes)
{
    size_t n = sizeof(shard_job) + bytes + 16;
    shard_job *j = write ? (shard_job *)commit_job_alloc(s->commit, n) : malloc(n);
    bool in_fifo;

    if (j == NULL)
        return NULL;
    in_fifo = write && j->cj.in_fifo; /* set by commit_job_alloc */
    memset(j, 0, sizeof(*j));
    j->cj.in_fifo = in_fifo;
    j->mem = (uint8_t *)(j + 1);
    return j;
}

static om_status
submit_barrier(shard *s, void (*fn)(void *arg), void *arg, bool term_mark)
{
    shard_job *j = shard_job_new(s, true, 0);

    if (j == NULL)
        return OM_ERR(OM_E_NOMEM);
    j->cj.bytes = sizeof(*j);
    j->barrier = fn;
    j->barrier_arg = arg;
    j->term_mark = term_mark;
    commit_submit(s->commit, &j->cj);
    return OM_OK;
}

om_status
shard_commit_other(shard *s, size_t bytes, void (*write)(void *arg, bool nosync),
                   void (*answer)(void *arg, uint64_t group), void *arg)
{
    shard_job *j = shard_job_new(s, true, 0);

    if (j == NULL)
        return OM_ERR(OM_E_NOMEM);
    j->cj.bytes = sizeof(*j) + bytes;
    j->other_write = write;
    j->other_answer = answer;
    j->other_arg = arg;
    commit_submit(s->commit, &j->cj);
    return OM_OK;
}

om_status
shard_commit_barrier(shard *s, void (*fn)(void *arg), void *arg)
{
    return submit_barrier(s, fn, arg, false);
}

om_status
shard_commit_term_mark(shard *s, void (*fn)(void *arg), void *arg)
{
    return submit_barrier(s, fn, arg, true);
}

/*
 * A primary's group commit of no record: the replica state alone, staged,
 * sealed, written and queued for the backups as shard_write_group does for
 * records (a failure fails the primary's replication there, repl.c).
 */
static void
write_term_mark(shard *s, bool nosync)
{
    lsm_batch *b = NULL;
    om_status st = lsm_batch_new(&b);

    if (st == OM_OK)
        st = shard_repl_seal(s->repl, b);
    if (st == OM_OK)
        st = nosync ? lsm_write_nosync(s->db, b) : lsm_write(s->db, b);
    shard_repl_written(s->repl, st);
    lsm_batch_free(b);
}

/*
 * The shard_write of a Store or Delete job (its slices borrow the job's
 * memory). Only the fields shard_write_many reads are set: the error text is
 * written when there is one, so err[] is not cleared here.
 */
static void
job_to_write(const shard_job *j, shard_write *w)
{
    w->is_delete = j->to.op == SHARD_OP_DELETE;
    w->args.bucket = j->bucket;
    w->args.key = j->key;
    w->args.data = j->data;
    w->args.metadata = j->metadata;
    w->args.content_type = j->content_type;
    w->args.cond = j->cond;
    w->args.forced_version = j->forced_version;
    w->status = OM_OK;
    memset(&w->info, 0, sizeof(w->info));
    w->err[0] = '\0';
}

void
shard_job_write_group(void *arg, commit_job **jobs, size_t n, bool nosync, void *scratch)
{
    shard *s = arg;
    shard_write one, *w = scratch != NULL ? scratch : n == 1 ? &one : malloc(n * sizeof(*w));
    size_t k = 0;

    for (size_t i = 0; i < n && w != NULL; i++)
        if (((shard_job *)jobs[i])->barrier == NULL && ((shard_job *)jobs[i])->other_write == NULL)
            job_to_write((shard_job *)jobs[i], &w[k++]);
    if (w != NULL && k > 0)
        shard_write_group(s, w, k, nosync);
    k = 0;
    for (size_t i = 0; i < n; i++) {
        shard_job *j = (shard_job *)jobs[i];

        if (j->other_write != NULL)
            j->other_write(j->other_arg, nosync); /* its own engine writes, after the group's */
        if (j->barrier != NULL || j->other_write != NULL)
            continue; /* barriers write nothing; the writes' results are w[0..k) */
        j->wstatus = w != NULL ? w[k].status : OM_ERR(OM_E_NOMEM);
        if (w != NULL && j->wstatus == OM_OK)
            j->winfo = w[k].info;
        j->werr = w != NULL && j->wstatus != OM_OK && w[k].err[0] ? strdup(w[k].err) : NULL;
        k++;
    }
    if (w != &one && w != scratch)
        free(w);
    for (size_t i = 0; i < n; i++)
        if (((shard_job *)jobs[i])->term_mark && s->repl != NULL)
            write_term_mark(s, nosync);
}
