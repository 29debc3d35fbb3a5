/*
 * lsm/compaction_thread.c -- the compaction threads: when to compact what.
 *
 * The niced thread (lsm-compact, at background_nice) runs manual
 * compactions, compactions by score and the idle rule; with
 * background_nice > 0 the urgent thread (lsm-compact-hi, not niced) runs
 * the automatic compactions picked while the debt is high, and when L0
 * alone turns urgent it runs an L0->L1 compaction beside the niced
 * thread's one, or makes a young niced one yield (comp_main explains the
 * rules and the invariant). Each thread picks under the db mutex and runs
 * the compaction without it (lsm_compaction_do, compaction.c).
 */
#define OM_LOG_MODULE "lsm"
#include <stdlib.h>

#include "lsm/compaction.h"
#include "lsm/db_int.h"
#include "util/assert.h"
#include "util/clock.h"

static uint64_t
comp_newest_snapshot(lsm_db *db)
{
    return db->snap_list.prev != &db->snap_list ? db->snap_list.prev->seq : 0;
}

/*
 * Idle L0 compaction. L0 tables below l0_compaction_trigger stay until
 * writes bring more, so a database that stops writing with two or three of
 * them (after a burst of writes, or tables written by recovery at open) makes
 * every read go through each of them for good. When no write has arrived for
 * idle_l0_compaction_ms and L0 holds at least two tables, they are compacted
 * into L1 like any L0 compaction. The thread tracks the last sequence it saw
 * and since when (lsm_db_idle). Requires: mu held.
 */

/* Whether the idle rule applies to v at all (then the thread waits with a timeout). */
static bool
comp_idle_applies(const lsm_db *db, const lsm_version *v)
{
    return db->opts.idle_l0_compaction_ms > 0 && v->nfiles[0] >= 2;
}

/* Whether the database has been idle long enough; updates the tracking. */
static bool
comp_idle_due(lsm_db *db, lsm_db_idle *idle)
{
    uint64_t now = om_clock_mono_ns();

    if (lsm_db_idle_moved(db, idle, now))
        return false;
    return now - idle->since_ns >= (uint64_t)db->opts.idle_l0_compaction_ms * 1000000u;
}

/*
 * Wait on compact_cv; with `timed`, at most until the idle rule could fire.
 * Requires: mu held.
 */
static void
comp_wait(lsm_db *db, bool timed, const lsm_db_idle *idle)
{
    uint64_t wait_ns, due;

    if (!timed) {
        pthread_cond_wait(&db->compact_cv, &db->mu);
        return;
    }
    due = idle->since_ns + (uint64_t)db->opts.idle_l0_compaction_ms * 1000000u;
    wait_ns = due > om_clock_mono_ns() ? due - om_clock_mono_ns() : 0;
    /* At least 1 ms: last_seq may have moved, which restarts the idle period. */
    if (wait_ns < 1000000u)
        wait_ns = 1000000u;
    om_clock_cond_wait_ns(&db->compact_cv, &db->mu, wait_ns);
}

/*
 * Compaction debt past which the urgent thread takes over: a score of 2 (L0
 * at twice l0_compaction_trigger, or a level at twice its target bytes).
 * Requires: mu held.
 */
static bool
comp_is_urgent(const lsm_db *db, const lsm_version *v)
{
    return db->have_urgent_thread && db->manual == NULL && v->score >= LSM_COMPACT_URGENT_SCORE;
}

/* L0 alone at that score: the urgent thread's reason to run beside the niced one. */
static bool
comp_l0_urgent(const lsm_db *db, const lsm_version *v)
{
    int trigger = db->opts.l0_compaction_trigger > 0 ? db->opts.l0_compaction_trigger : 1;

    return db->have_urgent_thread && db->manual == NULL &&
           v->nfiles[0] >= LSM_COMPACT_URGENT_SCORE * trigger;
}

/*
 * The urgent thread's pick while the niced thread runs `other`: an L0->L1
 * compaction that does not conflict with it. If it would, `other` is asked
 * to yield (unless manual) and OM_E_NOTFOUND is returned: the urgent thread
 * waits for it to give up or end. Requires: mu held.
 */
static om_status
comp_pick_beside(lsm_db *db, lsm_version *v, lsm_compaction *other, lsm_compaction **out)
{
    lsm_compaction *c = NULL;

    OM_TRY(lsm_compaction_pick_l0(v, &c));
    if (!lsm_compaction_conflicts(c, other)) {
        OM_ASSERT(lsm_compaction_share_no_file(c, other));
        lsm_logf(&db->opts, OM_LOG_INFO, "L0 at %d tables: L0->L1 beside the level=%d compaction",
                 v->nfiles[0], other->level);
        *out = c;
        return OM_OK;
    }
    lsm_compaction_free(c);
    if (!other->manual && !atomic_load_explicit(&other->yield, memory_order_relaxed)) {
        atomic_store_explicit(&other->yield, true, memory_order_relaxed);
        lsm_logf(&db->opts, OM_LOG_DEBUG,
                 "L0 at %d tables: asking the level=%d compaction to yield", v->nfiles[0],
                 other->level);
    }
    return OM_E_NOTFOUND;
}

/*
 * The body of both compaction threads. The normal thread runs at
 * background_nice and does everything -- manual compactions, the idle rule,
 * compactions by score -- except what the urgent thread (nice unchanged,
 * started only when background_nice > 0) is there for: automatic
 * compactions picked while the debt is at LSM_COMPACT_URGENT_SCORE or more.
 * A niced thread under CPU competition gets a small share of a core, so
 * without it compaction debt grows as long as the foreground keeps the cores
 * busy; raising a thread's priority back needs privileges, so the boost is a
 * second thread rather than a setpriority() call.
 *
 * At most two compactions run at once (db->running, one per thread): the
 * niced thread starts one only when none runs; the urgent thread starts one
 * when none runs and the debt is urgent, or -- when L0 alone is urgent --
 * an L0->L1 compaction beside the niced thread's one if they do not
 * conflict (comp_pick_beside). Otherwise it asks the niced compaction to
 * yield: a compaction the niced thread picked while the debt was low would
 * hold L0 back for as long as the niced thread takes (15-20 s for an
 * L1->L2 compaction beside two busy threads in lsm_bench).
 *
 * The invariant: no file is an input of two running compactions, and two
 * running compactions write disjoint key ranges of any level they share
 * (lsm_compaction_conflicts), so their edits -- each deleting only its own
 * inputs, applied one at a time under manifest_mu to the then current
 * version -- keep every level >= 1 sorted and non-overlapping in whichever
 * order they finish. Checked when the second one starts and before each
 * install (OM_ASSERT); lsm_version_apply refuses an edit that would break
 * it in every build.
 */
static void *
comp_main(lsm_db *db, bool urgent)
{
    lsm_db_idle idle = {0, 0};

    pthread_setname_np(pthread_self(), urgent ? "lsm-compact-hi" : "lsm-compact");
    if (!urgent)
        lsm_db_background_priority(db);
    pthread_mutex_lock(&db->mu);
    idle.seq = atomic_load(&db->last_seq);
    idle.since_ns = om_clock_mono_ns();
    while (!db->shutting_down) {
        lsm_compaction *c = NULL, *other = db->running[!urgent];
        db_manual *m = urgent ? NULL : db->manual;
        lsm_version *v = db->vs->current;
        uint64_t smallest, newest;
        bool idle_l0 = false, yielded;
        om_status st;

        if (other != NULL) {
            /* Only the urgent thread starts a second compaction, and only for L0. */
            if (!urgent || db->bg_error != OM_OK || !comp_l0_urgent(db, v)) {
                pthread_cond_wait(&db->compact_cv, &db->mu); /* woken when other ends */
                continue;
            }
            m = NULL;
            st = comp_pick_beside(db, v, other, &c);
        } else {
            if (urgent != comp_is_urgent(db, v) && db->bg_error == OM_OK) {
                /* The other thread's turn: it broadcasts compact_cv when done. */
                pthread_cond_wait(&db->compact_cv, &db->mu);
                continue;
            }
            if (db->bg_error == OM_OK && m == NULL && v->score < 1 && comp_idle_applies(db, v))
                idle_l0 = !urgent && comp_idle_due(db, &idle);
            if (db->bg_error != OM_OK || (m == NULL && v->score < 1 && !idle_l0) ||
                (m != NULL && m->done)) {
                /* Timed only while the idle rule may still fire (not after an error). */
                comp_wait(db,
                          !urgent && db->bg_error == OM_OK && m == NULL && comp_idle_applies(db, v),
                          &idle);
                continue;
            }
            if (m != NULL)
                st = lsm_compaction_range(v, m->level, m->in_place, om_buf_slice(&m->begin),
                                          om_buf_slice(&m->end), &c);
            else if (idle_l0)
                st = lsm_compaction_pick_l0(v, &c);
            else
                st = lsm_compaction_pick(v, &db->opts, db->vs->cptr, &c);
        }
        if (idle_l0 && st == OM_OK)
            lsm_logf(&db->opts, OM_LOG_INFO, "idle for %u ms: compacting %d L0 tables",
                     db->opts.idle_l0_compaction_ms, v->nfiles[0]);
        if (st == OM_E_NOTFOUND && m != NULL) {
            m->done = true;
            m->st = OM_OK;
            pthread_cond_broadcast(&db->bg_cv);
            continue;
        }
        if (st != OM_OK) {
            if (st == OM_E_NOTFOUND) {
                pthread_cond_wait(&db->compact_cv, &db->mu);
                continue;
            }
            lsm_db_set_bg_error(db, st);
            continue;
        }
        smallest = lsm_db_oldest_snapshot(db);
        newest = comp_newest_snapshot(db);
        db->running[urgent] = c;
        if (urgent)
            atomic_fetch_add(&db->st_urgent_compactions, 1);
        if (m != NULL)
            m->taken = true; /* its caller now waits for done, even at close */
        pthread_mutex_unlock(&db->mu);

        if (lsm_compaction_test_hook != NULL)
            lsm_compaction_test_hook(c, urgent);
        st = lsm_compaction_do(db, c, smallest, newest, m);
        yielded = st == OM_E_BUSY && atomic_load(&c->yield);

        pthread_mutex_lock(&db->mu);
        db->running[urgent] = NULL; /* the other thread reads c only under mu */
        pthread_mutex_unlock(&db->mu);
        lsm_compaction_free(c); /* may delete input tables: not under mu */
        pthread_mutex_lock(&db->mu);
        idle.since_ns = om_clock_mono_ns(); /* an idle period counts from the last compaction */
        if (m != NULL) {
            m->done = true;
            m->st = st;
        }
        if (st != OM_OK && !yielded &&
            !(st == OM_E_BUSY &&
              (db->shutting_down || (m != NULL && atomic_load(&db->manual_stopped))))) {
            lsm_logf(&db->opts, OM_LOG_ERROR, "compaction failed status=%s", om_status_str(st));
            lsm_db_set_bg_error(db, st);
        }
        pthread_cond_broadcast(&db->bg_cv);
        pthread_cond_broadcast(&db->compact_cv); /* the other compaction thread's turn may be */
    }
    pthread_mutex_unlock(&db->mu);
    return NULL;
}

void *
lsm_db_compact_main(void *arg)
{
    return comp_main(arg, false);
}

void *
lsm_db_compact_urgent_main(void *arg)
{
    return comp_main(arg, true);
}
