/*
 * lsm/compaction.h -- leveled compaction: picking inputs, deciding what
 * survives, and running a compaction job (private to lsm/).
 *
 * Picking. Each version carries a score per level: L0 = files /
 * l0_compaction_trigger; Ln = bytes / (max_bytes_for_level1 ×
 * multiplier^(n-1)). The level with the highest score >= 1 is compacted.
 * Its first file after the level's compaction pointer (round robin over the
 * key space) is the seed; in L0 every file overlapping it (transitively)
 * joins. Inputs from level+1 are the files overlapping the inputs' user-key
 * range; the files of level+2 overlapping the whole range are the
 * "grandparents". A single input with nothing to merge below and little
 * grandparent overlap is moved down without rewriting (trivial move).
 *
 * Survival (lsm_cdecide). Entries arrive in internal-key order. An entry is
 * dropped when a newer entry of the same key is also visible to the oldest
 * live snapshot (nobody can read it any more); a tombstone is dropped when
 * the oldest snapshot sees it and no level below the output holds the key
 * (base level). The compaction filter is asked about the newest value of a
 * key when no live snapshot can see that value; if it drops the value, the
 * key disappears: nothing is written at the base level, elsewhere a
 * tombstone with the value's sequence hides the older versions below.
 *
 * lsm_compact_range walks the levels down to the deepest one holding data,
 * which it rewrites in place, so the filter sees every value in the range.
 *
 * Output. Tables are cut at target_file_size and when they would overlap
 * more than 10 × target_file_size of grandparent bytes (so a later
 * compaction of the output stays small), but never between two entries of
 * one user key, so the files of a level stay disjoint by user key.
 *
 * Two at once. With background_nice > 0 the un-niced thread may run an
 * L0->L1 compaction beside the niced thread's compaction of deeper levels
 * when L0 turns urgent, if the two do not conflict (lsm_compaction_conflicts);
 * if they do, it asks the niced one to yield (`yield`), which abandons it
 * when it is less than half done (compaction.c, comp_yield_now).
 *
 * Thread-safety: a compaction object belongs to the compaction thread that
 * runs it (`yield` may be set by the other one, under the db mutex); it
 * pins its input version.
 */
#ifndef OM_LSM_COMPACTION_H
#define OM_LSM_COMPACTION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "lsm/lsm_int.h"
#include "lsm/manifest.h"

typedef struct lsm_compaction {
    int level;     /* inputs from level and out_level */
    int out_level; /* level + 1, or level itself for an in-place bottom compaction */
    lsm_version *v;
    lsm_file_meta **in[2];
    int nin[2];
    lsm_file_meta **gp; /* grandparents: out_level + 1 files overlapping the inputs */
    int ngp;
    bool manual;
    atomic_bool yield; /* the other compaction thread needs these files: give up if young */
    /* Base-level check state: per deeper level, the file index reached. */
    int base_idx[LSM_MAX_LEVELS];
} lsm_compaction;

/*
 * lsm_compaction_pick -- the compaction the version needs most.
 * cptr[level] are the round-robin pointers (internal keys, may be empty).
 * Returns: OM_OK and *out; OM_E_NOTFOUND (no level scores >= 1); OM_E_NOMEM.
 * Ownership: *out pins v; free with lsm_compaction_free.
 */
om_status lsm_compaction_pick(lsm_version *v, const lsm_opts *o, const om_buf *cptr,
                              lsm_compaction **out);

/*
 * lsm_compaction_pick_l0 -- an L0 compaction whatever the score (L0 tables
 * plus the L1 files they overlap), for the idle rule of the compaction thread.
 * Returns: OM_OK and *out; OM_E_NOTFOUND (fewer than two L0 tables); OM_E_NOMEM.
 * Ownership: as lsm_compaction_pick.
 */
om_status lsm_compaction_pick_l0(lsm_version *v, lsm_compaction **out);

/*
 * lsm_compaction_range -- compact the files of `level` overlapping the user
 * keys [begin, end] (empty = open) into level + 1, or, with in_place (for the
 * deepest level holding data, level >= 1), rewrite them within their level
 * so the compaction filter and tombstone dropping reach the bottom.
 * Returns: OM_OK; OM_E_NOTFOUND (nothing in range); OM_E_NOMEM; OM_E_INVALID (bad level).
 */
om_status lsm_compaction_range(lsm_version *v, int level, bool in_place, om_slice begin,
                               om_slice end, lsm_compaction **out);

void lsm_compaction_free(lsm_compaction *c);

/*
 * lsm_compaction_conflicts -- could a and b not run at once? They conflict
 * when they touch a common level (as input or output) with overlapping
 * user-key ranges (all their inputs). Compactions that do not conflict
 * share no input file and write disjoint key ranges of any common level, so
 * their version edits apply in either order and keep every level >= 1
 * sorted and non-overlapping.
 */
bool lsm_compaction_conflicts(const lsm_compaction *a, const lsm_compaction *b);

/* The invariant of two running compactions: no file is an input of both. */
bool lsm_compaction_share_no_file(const lsm_compaction *a, const lsm_compaction *b);

/*
 * Tests only: when set, each compaction thread calls it as a compaction
 * starts (mu not held; urgent: the un-niced thread). NULL otherwise.
 */
extern void (*lsm_compaction_test_hook)(lsm_compaction *c, bool urgent);

/* True if the compaction can move its one input file down unchanged. */
bool lsm_compaction_is_trivial(const lsm_compaction *c, const lsm_opts *o);

/*
 * True if no level below the output level holds user_key. Keys must be
 * asked in ascending order (the state advances monotonically).
 */
bool lsm_compaction_is_base(lsm_compaction *c, om_slice user_key);

/* Per-key survival state. */
typedef struct lsm_cdecide {
    om_buf key; /* current user key */
    bool has_key;
    uint64_t last_seq; /* sequence of the previous (newer) entry of key; LSM_MAX_SEQ + 1 if none */
    uint64_t smallest_snapshot; /* oldest sequence a reader can use */
    uint64_t newest_snapshot;   /* newest live snapshot; 0 if none */
    lsm_compaction_filter filter;
    void *filter_arg;
    int level;
} lsm_cdecide;

typedef enum lsm_cverdict {
    LSM_CV_KEEP,      /* write the entry as it is */
    LSM_CV_DROP,      /* write nothing */
    LSM_CV_TOMBSTONE, /* write a tombstone with the entry's key and sequence */
} lsm_cverdict;

void lsm_cdecide_init(lsm_cdecide *d, uint64_t smallest_snapshot, uint64_t newest_snapshot,
                      lsm_compaction_filter filter, void *filter_arg, int level);
void lsm_cdecide_fini(lsm_cdecide *d);

/*
 * lsm_cdecide_next -- the verdict for the next entry (internal-key order).
 * is_base: no level below the output holds this user key.
 * Returns: OM_OK and *v; OM_E_CORRUPT (not an internal key); OM_E_NOMEM.
 */
om_status lsm_cdecide_next(lsm_cdecide *d, om_slice ikey, om_slice value, bool is_base,
                           lsm_cverdict *v);

#endif /* OM_LSM_COMPACTION_H */
