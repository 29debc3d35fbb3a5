/*
 * lsm/compaction.c -- leveled compaction (policy in compaction.h): picking,
 * survival, running a compaction and installing it. The threads that choose
 * when to run one are in compaction_thread.c.
 *
 * The thread picks a compaction under the db mutex (from the current
 * version, which the compaction then pins), drops the mutex, merges the
 * inputs into new tables, and installs the result with one version edit
 * under the manifest lock. Readers keep using whatever version they
 * pinned; writers are never blocked by a compaction, only slowed or stopped
 * by the L0 triggers when compaction falls behind. Inputs become obsolete
 * when the edit is installed and are deleted when their last reader lets go.
 * At close a running compaction is abandoned, or finished when it is nearly
 * done (comp_finish_at_close). A database without writes for a while gets
 * its L0 tables compacted even below the trigger (the idle rule, comp_idle).
 * A manual compaction may be paced (lsm_compact_range_rate, comp_pace): the
 * thread sleeps on compact_cv, so close wakes it at once. With
 * background_nice > 0 a second, un-niced thread runs the compactions picked
 * while the debt is high (compaction_thread.c), so a busy foreground cannot starve
 * compaction for good; when L0 turns urgent it runs an L0->L1 compaction
 * beside the niced one, or makes a young niced one yield.
 */
#define OM_LOG_MODULE "lsm"
#include "lsm/compaction.h"

#include <stdlib.h>
#include <string.h>

#include "lsm/db_int.h"
#include "lsm/filename.h"
#include "util/assert.h"
#include "util/clock.h"

#define GP_OVERLAP_FACTOR 10

void (*lsm_compaction_test_hook)(lsm_compaction *c, bool urgent);

/* ---- picking ---- */

static om_status
comp_new(lsm_version *v, int level, lsm_compaction **out)
{
    lsm_compaction *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    c->level = level;
    c->out_level = level + 1;
    c->v = v;
    lsm_version_ref(v);
    *out = c;
    return OM_OK;
}

void
lsm_compaction_free(lsm_compaction *c)
{
    if (c == NULL)
        return;
    lsm_version_unref(c->v);
    free(c->in[0]);
    free(c->in[1]);
    free(c->gp);
    free(c);
}

/* User-key range of a file list. */
static void
comp_range(lsm_file_meta *const *f, int n, om_slice *lo, om_slice *hi)
{
    for (int i = 0; i < n; i++) {
        om_slice s = lsm_ikey_user(om_buf_slice(&f[i]->smallest));
        om_slice l = lsm_ikey_user(om_buf_slice(&f[i]->largest));

        if (i == 0 || om_slice_cmp(s, *lo) < 0)
            *lo = s;
        if (i == 0 || om_slice_cmp(l, *hi) > 0)
            *hi = l;
    }
}

/* User-key range of all of c's inputs (c has at least one). */
static void
comp_all_range(const lsm_compaction *c, om_slice *lo, om_slice *hi)
{
    comp_range(c->in[0], c->nin[0], lo, hi);
    if (c->nin[1] > 0) {
        om_slice lo1 = *lo, hi1 = *hi;

        comp_range(c->in[1], c->nin[1], &lo1, &hi1);
        if (om_slice_cmp(lo1, *lo) < 0)
            *lo = lo1;
        if (om_slice_cmp(hi1, *hi) > 0)
            *hi = hi1;
    }
}

static bool
comp_touches(const lsm_compaction *c, int level)
{
    return c->level == level || c->out_level == level;
}

bool
lsm_compaction_conflicts(const lsm_compaction *a, const lsm_compaction *b)
{
    om_slice alo = OM_SLICE_NULL, ahi = OM_SLICE_NULL, blo = OM_SLICE_NULL, bhi = OM_SLICE_NULL;

    if (!comp_touches(b, a->level) && !comp_touches(b, a->out_level))
        return false;
    comp_all_range(a, &alo, &ahi);
    comp_all_range(b, &blo, &bhi);
    return om_slice_cmp(alo, bhi) <= 0 && om_slice_cmp(blo, ahi) <= 0;
}

/* Is file number n an input of c? */
static bool
comp_has_input(const lsm_compaction *c, uint64_t n)
{
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < c->nin[w]; i++)
            if (c->in[w][i]->number == n)
                return true;
    return false;
}

bool
lsm_compaction_share_no_file(const lsm_compaction *a, const lsm_compaction *b)
{
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < a->nin[w]; i++)
            if (comp_has_input(b, a->in[w][i]->number))
                return false;
    return true;
}

#if OM_ASSERTS_ON
/* Is every input of c still in v at its level (no other compaction took it)? */
static bool
comp_inputs_in(const lsm_compaction *c, const lsm_version *v)
{
    for (int w = 0; w < 2; w++) {
        int level = c->level + w;

        for (int i = 0; i < c->nin[w]; i++) {
            bool found = false;

            for (int j = 0; j < v->nfiles[level] && !found; j++)
                found = v->files[level][j] == c->in[w][i];
            if (!found)
                return false;
        }
    }
    return true;
}
#endif

/* Inputs at level+1 and grandparents for c->in[0]. */
static om_status
comp_finish_inputs(lsm_compaction *c)
{
    om_slice lo = OM_SLICE_NULL, hi = OM_SLICE_NULL;
    om_buf blo = OM_BUF_INIT, bhi = OM_BUF_INIT;
    om_status st = OM_OK;

    comp_range(c->in[0], c->nin[0], &lo, &hi);
    if (c->out_level != c->level)
        OM_GOTO(lsm_version_overlaps(c->v, c->out_level, lo, hi, &c->in[1], &c->nin[1]));
    if (c->nin[1] > 0) {
        /* The whole range, copied: the slices point into file metas. */
        om_slice lo1 = lo, hi1 = hi;

        comp_range(c->in[1], c->nin[1], &lo1, &hi1);
        if (om_slice_cmp(lo1, lo) < 0)
            lo = lo1;
        if (om_slice_cmp(hi1, hi) > 0)
            hi = hi1;
    }
    OM_GOTO(om_buf_set(&blo, lo));
    OM_GOTO(om_buf_set(&bhi, hi));
    if (c->out_level + 1 < LSM_MAX_LEVELS)
        OM_GOTO(lsm_version_overlaps(c->v, c->out_level + 1, om_buf_slice(&blo), om_buf_slice(&bhi),
                                     &c->gp, &c->ngp));
fail:
    om_buf_free(&blo);
    om_buf_free(&bhi);
    return st;
}

/* The compaction of `level` (which has files) from its round-robin seed. */
static om_status
comp_pick_level(lsm_version *v, int level, const om_buf *cptr, lsm_compaction **out)
{
    lsm_compaction *c = NULL;
    int seed = 0;
    om_status st;

    OM_TRY(comp_new(v, level, &c));
    /* Round robin: the first file past the level's compaction pointer. */
    if (cptr != NULL && cptr[level].n > 0) {
        for (seed = 0; seed < v->nfiles[level]; seed++)
            if (lsm_ikey_cmp(om_buf_slice(&v->files[level][seed]->largest),
                             om_buf_slice(&cptr[level])) > 0)
                break;
        if (seed == v->nfiles[level])
            seed = 0;
    }
    if (level == 0) {
        /* The oldest L0 file as seed, widened to everything overlapping it. */
        lsm_file_meta *f = v->files[0][0];

        OM_GOTO(lsm_version_overlaps(v, 0, lsm_ikey_user(om_buf_slice(&f->smallest)),
                                     lsm_ikey_user(om_buf_slice(&f->largest)), &c->in[0],
                                     &c->nin[0]));
    } else {
        c->in[0] = malloc(sizeof(*c->in[0]));
        if (c->in[0] == NULL)
            OM_GOTO(OM_ERR(OM_E_NOMEM));
        c->in[0][0] = v->files[level][seed];
        c->nin[0] = 1;
    }
    OM_GOTO(comp_finish_inputs(c));
    *out = c;
    return OM_OK;
fail:
    lsm_compaction_free(c);
    return st;
}

om_status
lsm_compaction_pick(lsm_version *v, const lsm_opts *o, const om_buf *cptr, lsm_compaction **out)
{
    int level = v->score_level;

    if (v->score < 1 || level < 0 || v->nfiles[level] == 0)
        return OM_E_NOTFOUND;
    (void)o;
    return comp_pick_level(v, level, cptr, out);
}

om_status
lsm_compaction_pick_l0(lsm_version *v, lsm_compaction **out)
{
    if (v->nfiles[0] < 2)
        return OM_E_NOTFOUND;
    return comp_pick_level(v, 0, NULL, out);
}

om_status
lsm_compaction_range(lsm_version *v, int level, bool in_place, om_slice begin, om_slice end,
                     lsm_compaction **out)
{
    lsm_compaction *c = NULL;
    om_status st;

    if (level < 0 || level >= LSM_MAX_LEVELS || (level == LSM_MAX_LEVELS - 1 && !in_place) ||
        (level == 0 && in_place))
        return OM_ERR(OM_E_INVALID);
    OM_TRY(comp_new(v, level, &c));
    c->manual = true;
    if (in_place)
        c->out_level = level;
    OM_GOTO(lsm_version_overlaps(v, level, begin, end, &c->in[0], &c->nin[0]));
    if (c->nin[0] == 0) {
        lsm_compaction_free(c);
        return OM_E_NOTFOUND;
    }
    OM_GOTO(comp_finish_inputs(c));
    *out = c;
    return OM_OK;
fail:
    lsm_compaction_free(c);
    return st;
}

bool
lsm_compaction_is_trivial(const lsm_compaction *c, const lsm_opts *o)
{
    uint64_t gp = 0;

    if (c->nin[0] != 1 || c->nin[1] != 0 || c->out_level == c->level)
        return false;
    if (c->manual && o->compaction_filter != NULL)
        return false; /* a manual compaction must run the filter over everything */
    for (int i = 0; i < c->ngp; i++)
        gp += c->gp[i]->size;
    return gp <= GP_OVERLAP_FACTOR * o->target_file_size;
}

bool
lsm_compaction_is_base(lsm_compaction *c, om_slice user_key)
{
    for (int l = c->out_level + 1; l < LSM_MAX_LEVELS; l++) {
        const lsm_version *v = c->v;

        while (c->base_idx[l] < v->nfiles[l]) {
            const lsm_file_meta *f = v->files[l][c->base_idx[l]];

            if (om_slice_cmp(user_key, lsm_ikey_user(om_buf_slice(&f->largest))) <= 0) {
                if (om_slice_cmp(user_key, lsm_ikey_user(om_buf_slice(&f->smallest))) >= 0)
                    return false;
                break;
            }
            c->base_idx[l]++;
        }
    }
    return true;
}

/* ---- survival ---- */

void
lsm_cdecide_init(lsm_cdecide *d, uint64_t smallest_snapshot, uint64_t newest_snapshot,
                 lsm_compaction_filter filter, void *filter_arg, int level)
{
    memset(d, 0, sizeof(*d));
    d->smallest_snapshot = smallest_snapshot;
    d->newest_snapshot = newest_snapshot;
    d->filter = filter;
    d->filter_arg = filter_arg;
    d->level = level;
}

void
lsm_cdecide_fini(lsm_cdecide *d)
{
    om_buf_free(&d->key);
}

om_status
lsm_cdecide_next(lsm_cdecide *d, om_slice ikey, om_slice value, bool is_base, lsm_cverdict *out)
{
    lsm_ikey ik;
    bool first = false;
    uint64_t newer;

    if (lsm_ikey_parse(ikey, &ik) != OM_OK)
        return OM_ERR(OM_E_CORRUPT);
    if (!d->has_key || !om_slice_eq(ik.user_key, om_buf_slice(&d->key))) {
        OM_TRY(om_buf_set(&d->key, ik.user_key));
        d->has_key = true;
        d->last_seq = LSM_MAX_SEQ + 1;
        first = true;
    }
    newer = d->last_seq;
    d->last_seq = ik.seq;
    if (newer <= d->smallest_snapshot) {
        /* A newer entry of this key is visible to every reader: this one is dead. */
        *out = LSM_CV_DROP;
        return OM_OK;
    }
    if (ik.type == LSM_TYPE_DEL) {
        *out = ik.seq <= d->smallest_snapshot && is_base ? LSM_CV_DROP : LSM_CV_KEEP;
        return OM_OK;
    }
    if (first && d->filter != NULL && ik.seq > d->newest_snapshot &&
        d->filter(d->filter_arg, d->level, ik.user_key, value) == LSM_FILTER_DROP) {
        /* Nothing else reads this value; make the key vanish. */
        *out = is_base && d->newest_snapshot == 0 ? LSM_CV_DROP : LSM_CV_TOMBSTONE;
        return OM_OK;
    }
    *out = LSM_CV_KEEP;
    return OM_OK;
}

/* ---- running ---- */

typedef struct comp_out {
    lsm_db *db;
    lsm_compaction *c;
    lsm_edit *e;
    lsm_sst_writer *w;
    uint64_t number;
    uint64_t gp_bytes; /* grandparent bytes overlapped by the current output */
    int gp_idx;
    bool seen_key;
    uint64_t bytes_written;
    uint64_t *outputs;
    int nout;
    uint64_t t0;      /* when the merge started */
    int close_choice; /* at close: 0 not decided yet, 1 finish, -1 abandon */
    int yield_choice; /* asked to yield (c->yield): 0 not decided yet, 1 finish, -1 abandon */
    /* Pacing (comp_pace): bytes per second (0 = unpaced), bytes not yet charged, and the
     * time at which the bytes charged so far are paid for (GCRA's theoretical arrival time). */
    uint64_t rate;
    uint64_t pace_pending;
    uint64_t pace_tat_ns;
    /* Progress of a manual compaction (lsm_compact_range_progress): the step's table bytes
     * (file) and raw entry bytes (raw), the raw bytes read so far, db->manual_done at the
     * step's start (base); raw == 0: not tracked. */
    uint64_t prog_base, prog_file, prog_raw, prog_read, prog_unposted;
} comp_out;

/*
 * Pacing of manual compactions (lsm_compact_range_rate). Every entry read
 * from the inputs -- kept or dropped -- is charged its key and value bytes,
 * so the rate bounds the whole work (reading, decompressing, filtering,
 * compressing, writing), and N bytes of entries take at least N / rate
 * seconds. A virtual clock (GCRA, om_clock_pace): each charge moves the time at which the
 * bytes so far are paid for; when that is ahead of now the thread sleeps
 * until then. Up to PACE_BURST_NS of unused time is credited (after a slow
 * stretch the thread catches up only that much). Charges are made per
 * PACE_CHUNK bytes, so a sleep is about a millisecond or more.
 *
 * The sleep is a timed wait on compact_cv: the db mutex is not held while
 * sleeping, lsm_close (which broadcasts compact_cv after setting
 * shutting_down) wakes it at once, and the merge loop then abandons the
 * compaction. The pace is dropped while L0 holds l0_slowdown_trigger tables
 * or more: while this (manual) compaction runs no other can, and writers slowed or
 * stopped by L0 wait for it, so it had better finish at full speed.
 */
#define PACE_CHUNK (64u << 10)
#define PACE_BURST_NS (50u * 1000000u)

/* Sleep until the monotonic time until_ns, or less (close, L0 backlog). Requires: mu not held. */
static void
comp_pace_sleep(lsm_db *db, uint64_t until_ns)
{
    pthread_mutex_lock(&db->mu);
    for (;;) {
        uint64_t now = om_clock_mono_ns(), wait_ns;

        if (now >= until_ns || db->shutting_down || atomic_load(&db->manual_stopped) ||
            db->vs->current->nfiles[0] >= db->opts.l0_slowdown_trigger)
            break;
        wait_ns = until_ns - now;
        om_clock_cond_wait_ns(&db->compact_cv, &db->mu, wait_ns);
    }
    pthread_mutex_unlock(&db->mu);
}

void
lsm_compact_range_stop(lsm_db *db)
{
    pthread_mutex_lock(&db->mu);
    atomic_store(&db->manual_stopped, true);
    pthread_cond_broadcast(&db->compact_cv); /* wakes a pacing sleep */
    pthread_cond_broadcast(&db->bg_cv);
    pthread_mutex_unlock(&db->mu);
}

/*
 * Progress of manual compactions (lsm_compact_range_progress). A call of
 * lsm_compact_range* runs one step per level with data: level l's tables
 * and the overlapping ones of l + 1 merged into l + 1, and last the deepest
 * level rewritten in place. What a step writes is read again by the next,
 * so with S(l) the table bytes of level l, C(l) = S(from) + ... + S(l), the
 * steps read C(l) + S(l + 1) for each l below the deepest and C(deepest) in
 * place: lsm_manual_estimate. The compaction filter makes the outputs
 * smaller than that model says, which each step's fresh estimate (db.c)
 * corrects. Within a step, progress is the raw entry bytes read over the
 * step's raw bytes (the tables' properties, what comp_pace charges),
 * scaled to the step's table bytes and posted every PACE_CHUNK.
 */
uint64_t
lsm_manual_estimate(const lsm_version *v, int from, int max_level, uint64_t unflushed)
{
    uint64_t est = 0, cum = unflushed; /* flushed into L0 first (from is 0 then) */

    for (int l = from < 0 ? 0 : from; l <= max_level && l < LSM_MAX_LEVELS; l++) {
        bool in_place = l == max_level && l > 0;
        cum += lsm_version_level_bytes(v, l);
        if (cum == 0)
            continue; /* nothing at or above l: the step finds no input */
        est += cum;   /* level l as the steps above left it */
        if (!in_place && l + 1 < LSM_MAX_LEVELS)
            est += lsm_version_level_bytes(v, l + 1); /* and the tables of l + 1 it merges with */
    }
    return est;
}

/* Raw key and value bytes of c's inputs (their tables' properties); 0 if unknown. */
static uint64_t
comp_raw_bytes(lsm_db *db, const lsm_compaction *c)
{
    uint64_t raw = 0;

    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < c->nin[w]; i++) {
            lsm_table_ref *ref;
            if (lsm_table_cache_ref(db->tc, c->in[w][i]->number, c->in[w][i]->size, &ref) != OM_OK)
                return 0;
            const lsm_sst_props *p = lsm_sst_props_get(lsm_table_ref_sst(ref));
            raw += p->raw_key_bytes + p->raw_value_bytes;
            lsm_table_cache_unref(db->tc, ref);
        }
    }
    return raw;
}

/* n raw bytes of a manual step read: post its share of the step's table bytes now and then. */
static void
comp_progress(lsm_db *db, comp_out *o, uint64_t n)
{
    uint64_t part;

    if (o->prog_raw == 0)
        return;
    o->prog_read += n;
    o->prog_unposted += n;
    if (o->prog_unposted < PACE_CHUNK)
        return;
    o->prog_unposted = 0;
    part = o->prog_read >= o->prog_raw
               ? o->prog_file
               : (uint64_t)((double)o->prog_file * (double)o->prog_read / (double)o->prog_raw);
    atomic_store_explicit(&db->manual_done, o->prog_base + part, memory_order_relaxed);
}

/* Charge n bytes of work; sleeps when ahead of the rate. Requires: mu not held. */
static void
comp_pace(lsm_db *db, comp_out *o, uint64_t n)
{
    uint64_t now;

    if (o->rate == 0)
        return;
    o->pace_pending += n;
    if (o->pace_pending < PACE_CHUNK)
        return;
    now = om_clock_mono_ns();
    o->pace_tat_ns = om_clock_pace(o->pace_tat_ns, o->pace_pending, o->rate, PACE_BURST_NS, now);
    o->pace_pending = 0;
    if (o->pace_tat_ns > now)
        comp_pace_sleep(db, o->pace_tat_ns);
}

static om_status
comp_out_finish(comp_out *o)
{
    lsm_sst_props props;
    om_status st;

    if (o->w == NULL)
        return OM_OK;
    memset(&props, 0, sizeof(props));
    if (lsm_sst_writer_entries(o->w) == 0) {
        lsm_sst_writer_abandon(o->w);
        o->w = NULL;
        return OM_OK;
    }
    st = lsm_sst_writer_finish(o->w, &props);
    o->w = NULL;
    OM_TRY(st);
    st = lsm_edit_add_file(o->e, o->c->out_level, o->number, props.file_size,
                           om_buf_slice(&props.smallest), om_buf_slice(&props.largest));
    o->bytes_written += props.file_size;
    lsm_sst_props_fini(&props);
    return st;
}

static om_status
comp_out_open(comp_out *o)
{
    char path[LSM_PATH_MAX];
    uint64_t *arr = realloc(o->outputs, sizeof(*arr) * (size_t)(o->nout + 1));

    if (arr == NULL)
        return OM_ERR(OM_E_NOMEM);
    o->outputs = arr;
    o->number = lsm_vset_new_file_number(o->db->vs);
    o->outputs[o->nout++] = o->number;
    o->gp_bytes = 0;
    lsm_sst_path(path, sizeof(path), o->db->dir, o->number);
    return lsm_sst_writer_open(o->db->env, path, &o->db->topts, &o->w);
}

/* Should the output be cut before user key k? Advances the grandparent cursor. */
static bool
comp_should_cut(comp_out *o, om_slice user_key, const lsm_opts *opts)
{
    bool cut = false;

    while (o->gp_idx < o->c->ngp &&
           om_slice_cmp(user_key, lsm_ikey_user(om_buf_slice(&o->c->gp[o->gp_idx]->largest))) > 0) {
        if (o->seen_key)
            o->gp_bytes += o->c->gp[o->gp_idx]->size;
        o->gp_idx++;
    }
    o->seen_key = true;
    if (o->w == NULL)
        return false;
    if (lsm_sst_writer_estimated_size(o->w) >= opts->target_file_size)
        cut = true;
    if (o->gp_bytes > GP_OVERLAP_FACTOR * opts->target_file_size)
        cut = true;
    return cut;
}

static uint64_t comp_input_bytes(const lsm_compaction *c);

/*
 * The database is closing: finish this compaction or abandon it? An
 * abandoned compaction is redone from the start at the next open (its inputs
 * stay), so finishing it saves work; the cost is close latency. Finish when
 * the rest, at the pace of the part done so far, should take at most
 * close_compaction_wait_ms and no longer than the part done took (the wait
 * never exceeds the work it saves). Progress is output bytes over input
 * bytes: dropped entries make it an underestimate, so the rule errs on
 * abandoning. Manual compactions are abandoned (lsm_compact_range reports
 * the close to its caller). Decided once, when the close is first seen.
 */
static bool
comp_finish_at_close(lsm_db *db, const lsm_compaction *c, comp_out *o)
{
    uint64_t total = comp_input_bytes(c), done = o->bytes_written;
    double elapsed, remaining;

    if (o->close_choice != 0)
        return o->close_choice > 0;
    o->close_choice = -1;
    if (o->w != NULL)
        done += lsm_sst_writer_estimated_size(o->w);
    if (c->manual || db->opts.close_compaction_wait_ms == 0 || done == 0)
        return false;
    elapsed = (double)(om_clock_mono_ns() - o->t0);
    remaining = done >= total ? 0.0 : elapsed * (double)(total - done) / (double)done;
    if (remaining <= (double)db->opts.close_compaction_wait_ms * 1e6 && remaining <= elapsed)
        o->close_choice = 1;
    lsm_logf(&db->opts, OM_LOG_INFO,
             "closing: %s compaction level=%d done=%llu%% ran_ms=%.0f expected_remaining_ms=%.0f",
             o->close_choice > 0 ? "finishing" : "abandoning", c->level,
             (unsigned long long)(done >= total ? 100 : done * 100 / total), elapsed / 1e6,
             remaining / 1e6);
    return o->close_choice > 0;
}

/*
 * The urgent thread needs this (niced) compaction's files: abandon it when
 * it is less than half done -- the urgent thread then runs the compaction
 * L0 needs at full priority, and this one is picked again later -- or
 * finish it (the urgent thread waits, as before). Progress as at close.
 * Decided once, when the request is first seen.
 */
static bool
comp_yield_now(lsm_db *db, const lsm_compaction *c, comp_out *o)
{
    uint64_t total = comp_input_bytes(c), done = o->bytes_written;

    if (o->yield_choice != 0)
        return o->yield_choice < 0;
    if (o->w != NULL)
        done += lsm_sst_writer_estimated_size(o->w);
    o->yield_choice = done < total / 2 ? -1 : 1;
    lsm_logf(&db->opts, OM_LOG_INFO,
             "L0 urgent: %s niced compaction level=%d done=%llu%% ran_ms=%llu",
             o->yield_choice < 0 ? "abandoning" : "finishing", c->level,
             (unsigned long long)(total == 0 || done >= total ? 100 : done * 100 / total),
             (unsigned long long)((om_clock_mono_ns() - o->t0) / 1000000));
    return o->yield_choice < 0;
}

static om_status
comp_inputs_iter(lsm_db *db, lsm_compaction *c, lsm_it **out)
{
    lsm_it *kids[64 + 2];
    lsm_it **k = kids;
    int n = 0;
    om_status st = OM_OK;

    if (c->level == 0 && c->nin[0] + 1 > 64) {
        k = calloc((size_t)c->nin[0] + 2, sizeof(*k));
        if (k == NULL)
            return OM_ERR(OM_E_NOMEM);
    }
    if (c->level == 0) {
        for (int i = 0; i < c->nin[0] && st == OM_OK; i++) {
            const lsm_file_meta *f = c->in[0][i];

            st = lsm_table_cache_iter_new(db->tc, f->number, f->size, false, &k[n]);
            if (st == OM_OK)
                n++;
        }
    } else {
        st = lsm_level_iter_new(db->tc, c->in[0], c->nin[0], false, &k[n]);
        if (st == OM_OK)
            n++;
    }
    if (st == OM_OK && c->nin[1] > 0) {
        st = lsm_level_iter_new(db->tc, c->in[1], c->nin[1], false, &k[n]);
        if (st == OM_OK)
            n++;
    }
    if (st == OM_OK) {
        st = lsm_merge_it_new(k, n, out);
    } else {
        for (int i = 0; i < n; i++)
            lsm_it_free(k[i]);
    }
    if (k != kids)
        free(k);
    return st;
}

/* Merge the inputs into new tables; fills e with the outputs. */
static om_status
comp_run(lsm_db *db, lsm_compaction *c, uint64_t smallest, uint64_t newest, lsm_edit *e,
         comp_out *o)
{
    lsm_cdecide d;
    lsm_it *it = NULL;
    om_buf tomb = OM_BUF_INIT;
    om_status st;

    lsm_cdecide_init(&d, smallest, newest, db->opts.compaction_filter,
                     db->opts.compaction_filter_arg, c->out_level);
    o->db = db;
    o->c = c;
    o->e = e;
    o->t0 = om_clock_mono_ns();
    o->pace_tat_ns = o->t0;
    OM_GOTO(comp_inputs_iter(db, c, &it));
    for (lsm_it_seek_first(it); lsm_it_valid(it); lsm_it_next(it)) {
        om_slice k = lsm_it_key(it), v = lsm_it_value(it);
        lsm_ikey ik = {OM_SLICE_NULL, 0, LSM_TYPE_DEL};
        lsm_cverdict verdict;
        bool new_key;

        if (atomic_load_explicit(&db->closing, memory_order_relaxed) &&
            !comp_finish_at_close(db, c, o))
            OM_GOTO(OM_E_BUSY); /* abandoned at close; the inputs stay */
        if (c->manual && atomic_load_explicit(&db->manual_stopped, memory_order_relaxed))
            OM_GOTO(OM_E_BUSY); /* lsm_compact_range_stop */
        if (atomic_load_explicit(&c->yield, memory_order_relaxed) && comp_yield_now(db, c, o))
            OM_GOTO(OM_E_BUSY); /* the urgent thread redoes what L0 needs */
        if (lsm_ikey_parse(k, &ik) != OM_OK) {
            lsm_logf(&db->opts, OM_LOG_ERROR, "compaction input has a malformed key level=%d",
                     c->level);
            OM_GOTO(OM_ERR(OM_E_CORRUPT));
        }
        comp_pace(db, o, k.n + v.n);
        comp_progress(db, o, k.n + v.n);
        new_key = !d.has_key || !om_slice_eq(ik.user_key, om_buf_slice(&d.key));
        OM_GOTO(lsm_cdecide_next(&d, k, v,
                                 (ik.type == LSM_TYPE_DEL || db->opts.compaction_filter != NULL) &&
                                     lsm_compaction_is_base(c, ik.user_key),
                                 &verdict));
        if (verdict == LSM_CV_DROP)
            continue;
        if (new_key && comp_should_cut(o, ik.user_key, &db->opts))
            OM_GOTO(comp_out_finish(o));
        if (o->w == NULL)
            OM_GOTO(comp_out_open(o));
        if (verdict == LSM_CV_TOMBSTONE) {
            om_buf_reset(&tomb);
            OM_GOTO(lsm_ikey_append(&tomb, ik.user_key, ik.seq, LSM_TYPE_DEL));
            OM_GOTO(lsm_sst_writer_add(o->w, om_buf_slice(&tomb), OM_SLICE_NULL));
        } else {
            OM_GOTO(lsm_sst_writer_add(o->w, k, v));
        }
    }
    OM_GOTO(lsm_it_status(it));
    OM_GOTO(comp_out_finish(o));
fail:
    lsm_it_free(it);
    lsm_cdecide_fini(&d);
    om_buf_free(&tomb);
    return st;
}

static om_status
comp_edit_inputs(lsm_compaction *c, lsm_edit *e)
{
    om_slice largest = OM_SLICE_NULL;

    for (int w = 0; w < 2; w++)
        for (int i = 0; i < c->nin[w]; i++)
            OM_TRY(lsm_edit_del_file(e, c->level + w, c->in[w][i]->number));
    for (int i = 0; i < c->nin[0]; i++)
        if (i == 0 || lsm_ikey_cmp(om_buf_slice(&c->in[0][i]->largest), largest) > 0)
            largest = om_buf_slice(&c->in[0][i]->largest);
    return lsm_edit_set_cptr(e, c->level, largest);
}

static uint64_t
comp_input_bytes(const lsm_compaction *c)
{
    uint64_t b = 0;

    for (int w = 0; w < 2; w++)
        for (int i = 0; i < c->nin[w]; i++)
            b += c->in[w][i]->size;
    return b;
}

om_status
lsm_compaction_do(lsm_db *db, lsm_compaction *c, uint64_t smallest, uint64_t newest,
                  const db_manual *m)
{
    comp_out o;
    lsm_edit e;
    om_status st;
    bool trivial = lsm_compaction_is_trivial(c, &db->opts);
    uint64_t t0 = om_clock_mono_ns();

    memset(&o, 0, sizeof(o));
    o.rate = m != NULL ? m->bytes_per_sec : 0;
    if (m != NULL && !trivial) {
        o.prog_base = m->done_base;
        o.prog_file = comp_input_bytes(c);
        o.prog_raw = comp_raw_bytes(db, c);
    }
    lsm_edit_init(&e);
    OM_GOTO(comp_edit_inputs(c, &e));
    if (trivial) {
        const lsm_file_meta *f = c->in[0][0];

        OM_GOTO(lsm_edit_add_file(&e, c->out_level, f->number, f->size, om_buf_slice(&f->smallest),
                                  om_buf_slice(&f->largest)));
    } else {
        OM_GOTO(comp_run(db, c, smallest, newest, &e, &o));
    }
    pthread_mutex_lock(&db->manifest_mu);
#if OM_ASSERTS_ON
    /* No file in two compactions: nobody installed an edit deleting c's inputs meanwhile. */
    pthread_mutex_lock(&db->mu);
    OM_ASSERT(comp_inputs_in(c, db->vs->current));
    pthread_mutex_unlock(&db->mu);
#endif
    st = lsm_vset_log_and_apply(db->vs, &e, NULL, NULL);
    pthread_mutex_unlock(&db->manifest_mu);
    if (st != OM_OK) {
        /* The edit may be on disk (a failed sync): keep the outputs; the next open decides. */
        free(o.outputs);
        lsm_edit_fini(&e);
        return st;
    }
    pthread_mutex_lock(&db->mu);
    st = lsm_db_install_sv(db);
    pthread_mutex_unlock(&db->mu);
    if (!trivial) {
        atomic_fetch_add(&db->st_comp_read, comp_input_bytes(c));
        atomic_fetch_add(&db->st_comp_written, o.bytes_written);
    }
    if (m != NULL) /* the step is read through: its whole input counts */
        atomic_store(&db->manual_done, m->done_base + comp_input_bytes(c));
    atomic_fetch_add(&db->st_compactions, 1);
    lsm_logf(&db->opts, OM_LOG_DEBUG,
             "compacted level=%d inputs=%d+%d outputs=%d trivial=%d bytes_in=%llu "
             "bytes_out=%llu ms=%llu",
             c->level, c->nin[0], c->nin[1], trivial ? 1 : o.nout, trivial,
             (unsigned long long)comp_input_bytes(c), (unsigned long long)o.bytes_written,
             (unsigned long long)((om_clock_mono_ns() - t0) / 1000000));
    lsm_edit_fini(&e);
    free(o.outputs);
    return st;
fail:
    lsm_sst_writer_abandon(o.w);
    for (int i = 0; i < o.nout; i++) {
        char path[LSM_PATH_MAX];

        lsm_sst_path(path, sizeof(path), db->dir, o.outputs[i]);
        db->env->ops->remove(db->env, path);
    }
    free(o.outputs);
    lsm_edit_fini(&e);
    return st;
}
