/*
 * coordinator/migrate_int.h -- the state of an online ring change, shared by
 * migrate.c (the state machine: cutover, switch, cleanup), mig_copy.c (the
 * copy pipeline and throttle), mig_state.c (build, persistence) and
 * mig_admin.c (AddShard/RemoveShard/SetWeight and RebalanceStatus).
 * Private to coordinator/. Loop thread only, like everything in coord_int.h.
 * The protocol: coordinator/MIGRATION.md.
 */
#ifndef OM_COORDINATOR_MIGRATE_INT_H
#define OM_COORDINATOR_MIGRATE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/coord_int.h"
#include "util/assert.h"
#include "util/log.h"

#define MIG_TICK_MS 10 /* period of the state machine's timer */
#define MIG_PIPELINE 2 /* batches of one source being applied while the next is scanned */

typedef enum mig_phase { MIG_IDLE = 0, MIG_COPYING = 1, MIG_CLEANUP = 3 } mig_phase;

/* One moving hash range [start, end). */
typedef struct mig_rng {
    uint64_t start, end;
    size_t src; /* index of its source */
    char *to;   /* new owner id */
    uint64_t records, bytes;
} mig_rng;

/* One old owner and everything it gives away. */
/* One batch of a source: scanned, its applies out. */
typedef struct mig_batch {
    uint32_t seq;
    uint32_t applies_out;
    bool failed;
    om_buf next_cursor;
    bool next_done;
    uint64_t records, bytes, scanned;
    uint64_t charged;              /* tokens its scan took (refunded down to bytes at commit) */
    uint64_t *rng_rec, *rng_bytes; /* per range of the source */
} mig_batch;

typedef struct mig_src {
    char *id;
    size_t *rng; /* indexes into m->rng, sorted by start */
    size_t nrng;
    Objmeta__HashRange *hr, **hrp; /* the same ranges for MigrateScan */
    om_buf cursor;                 /* last LSM key of the pass copied (empty: from the start) */
    bool done;                     /* this pass has reached the end of the source */
    uint64_t wm0;                  /* source clock at the start of pass 0 minus the margin */
    uint64_t min_version;          /* filter of the current pass */
    uint64_t next_wm;              /* source clock at the start of this pass minus the margin */
    uint64_t records, bytes;       /* copied over all passes */
    uint64_t pass_scanned, total;  /* for the ETA: bytes examined this pass / source size */
    bool wm_taken;                 /* this pass's first scan answered (next_wm set) */
    /* The pipeline: one scan in flight, up to MIG_PIPELINE batches being applied, committed
     * in order. scan_cursor runs ahead of cursor. */
    om_buf scan_cursor;
    bool scan_done, scan_busy;
    ProtobufCBinaryData *dkeys; /* pass 2 in dirty mode: this source's dirty keys */
    size_t ndkeys;
    uint32_t gen;  /* m->gen when the pipeline was (re)started */
    uint32_t sgen; /* bumped to disown answers when the pipeline restarts */
    mig_batch b[MIG_PIPELINE];
    uint32_t bhead, bcount, bseq;
    uint64_t retry_at_ms;
    uint32_t backoff_ms;
    char err[256];
} mig_src;

typedef struct mig_cleanup {
    char *id;
    bool done, busy;
    uint64_t retry_at_ms;
    uint64_t bytes_before, bytes_after;
    /* The compaction's progress (CompactResponse): table bytes read of the total, from the
     * polls (CompactRequest.progress) and the final answer; in memory only. */
    uint64_t bytes_done, bytes_total;
    bool polling;        /* a progress request is out */
    uint64_t poll_at_ms; /* the next one */
} mig_cleanup;

typedef struct coord_mig {
    coord *c;
    mig_phase phase;
    int pass;            /* 0 copy, 1 catch-up, 2 final (fenced) */
    bool final_started;  /* pass 2: requests in flight drained, scans running */
    bool starting;       /* an admin op is checking the new shard */
    char op[160];        /* "add-shard s4 at 127.0.0.1:7004 weight 1" */
    uint64_t started_ms; /* wall clock */
    uint64_t ended_ms;   /* wall clock: the end of the last change (in memory only; 0 = unknown) */
    uint64_t from_epoch, to_epoch;
    uint64_t last_change_epoch;
    mig_rng *rng;
    size_t nrng;
    mig_src *src;
    size_t nsrc;
    mig_cleanup *cl;
    size_t ncl;
    /* cleanup rate: when this process sent its first Compact of the cleanup, and the bytes
     * already done then (the rate is the bytes done since over the time since) */
    uint64_t cl_t0_ms, cl_done0;
    uint32_t gen;
    struct event *timer;
    /*
     * The throttle (MIGRATION.md, "Throttle"): a token bucket filled at coord_mig_rate_now()
     * bytes/s -- migrate_rate while no client request arrives, the lower migrate_rate_busy
     * times `adapt` while clients are active -- and batches of coord_mig_batch_now() bytes.
     */
    double tokens;
    bool busy;              /* a client request arrived within MIG_BUSY_HOLD_MS */
    uint64_t busy_until_ms; /* when busy ends unless another request arrives */
    uint64_t seen_reqs;     /* c->client_reqs at the last tick */
    double adapt;           /* (1/8 .. 1]: halved while client writes are slow */
    uint64_t adapt_at_ms;   /* next adjustment of adapt */
    uint64_t adapt_n;       /* c->wlat_n at the last adjustment */
    uint64_t last_tick_ms;
    uint64_t last_checkpoint_ms;
    uint64_t fence_start_ms;
    uint64_t pass_start_ms;
    uint64_t cutovers_abandoned;
    uint64_t catchup_records, catchup_bytes; /* re-sent by passes 1 and 2 */
    /*
     * Dirty keys: LSM keys of writes to moving keys whose copy on the new owner is not
     * confirmed. The cutover copies exactly these (dirty_mode) unless they overflowed or
     * this process did not see the whole change (need_catchup: restarted mid-change).
     */
    om_buf dirty_mem;
    size_t *dirty_off; /* key i is dirty_mem[dirty_off[i] .. dirty_off[i + 1]) */
    size_t ndirty, capdirty;
    bool dirty_overflow;
    bool need_catchup; /* run pass 1 and a full pass 2 (set on resume) */
    bool drained;      /* writes routed before the change have all been answered */
    bool dirty_mode;   /* pass 2 copies the dirty keys, not everything */
    om_buf final_mem;  /* pass 2: the deduplicated dirty keys, frozen */
    /* rate: bytes copied at the start of the current window */
    uint64_t win_start_ms, win_bytes, start_mono_ms, start_bytes;
    bool rate_windowed; /* a full MIG_RATE_WINDOW_MS window has passed */
    double rate;
    char err[256];
    char rid[32]; /* coord_mig_request_id */
} coord_mig;

/*
 * coord_mig_request_id -- the request id the change's own requests carry (scan, apply,
 * compact): "change-e<to_epoch>", so that a shard's log lines about a change can be found.
 * Valid until the next call.
 */
const char *coord_mig_request_id(coord_mig *m);

/* Format a message into one of the state's 256-byte error buffers. */
void coord_mig_errf(coord_mig *m, char *buf, const char *fmt, ...) OM_PRINTF(3, 4);
/* Record and byte totals copied by pass 0 over every source. */
uint64_t coord_mig_total_bytes(const coord_mig *m);
uint64_t coord_mig_total_records(const coord_mig *m);
/* Free the ranges, sources, cleanup list and dirty set of the change (bumps the generation). */
void coord_mig_free_change(coord_mig *m);
/* Ranges and sources of the change c->ring -> c->pending. Returns OM_OK; OM_E_NOMEM. */
om_status coord_mig_build(coord_mig *m);
/* The copy throttle now: bytes/s (0 = unlimited) and bytes per scan batch. */
double coord_mig_rate_now(const coord_mig *m);
uint32_t coord_mig_batch_now(const coord_mig *m);
/*
 * coord_mig_set_phase -- move m to phase `to`. The legal moves (checked):
 * IDLE -> COPYING (a change starts), COPYING -> CLEANUP (the switch),
 * CLEANUP -> IDLE (the old owners are compacted), and the two undos of a
 * step whose persistence failed or that has nothing to resume: COPYING ->
 * IDLE and CLEANUP -> COPYING. Never IDLE -> CLEANUP, never to itself.
 */
void coord_mig_set_phase(coord_mig *m, mig_phase to);
/* Persist rings and state (atomic RING file); a failure is also noted in m->err. */
om_status coord_mig_persist(coord_mig *m);
/* The same with `state` (a variant of m not installed yet) and `pending` in place of m's. */
om_status coord_mig_save(coord_mig *m, const coord_mig *state, const ring *pending);
/* Persist the copy's progress (pass 0) without waiting for etcd (coord_cstate_checkpoint). */
om_status coord_mig_checkpoint(coord_mig *m);
/* A cancel is under way: a change in which nothing moves (MIGRATION.md, "Cancel"). */
bool coord_mig_cancelling(const coord_mig *m);
/*
 * coord_mig_cancel -- roll back the change in progress (phase COPYING, any pass): the
 * pending ring is replaced by ring e's placement under a new epoch, held requests are
 * released, and the targets that stay are compacted at the cleanup. Fills `out` (its
 * strings point into m or into *wipe, which the caller frees with free()).
 * Returns: OM_OK; OM_E_NOMEM; the save's error (then nothing changed; message in err).
 */
om_status coord_mig_cancel(coord_mig *m, Objmeta__CancelRebalanceResponse *out, char ***wipe,
                           char *err, size_t errlen);

/* The cleanup's compaction bytes read and their (estimated) total, over every old owner. */
void coord_mig_cleanup_bytes(const coord_mig *m, uint64_t *done, uint64_t *total);

/* One rpc of the change in flight (scan, apply, compact): freed by its callback. */
typedef struct mig_call {
    coord_mig *m;
    size_t src; /* index of the source (scan, apply) or of the cleanup entry (compact) */
    uint32_t gen, sgen, seq;
    size_t dpos_next; /* dirty mode: the key index after this scan's keys */
    uint64_t charged; /* scan: tokens taken when it was sent */
    char target[RING_ID_MAX + 1];
} mig_call;
/* A call for source `src` of generation `gen`, or NULL (no memory). */
mig_call *coord_mig_call_new(coord_mig *m, size_t src, uint32_t gen);

/* --- mig_state.c --- */
/* Overlay a persisted state on m (whose change, if any, is already built). */
om_status coord_mig_decode(coord_mig *m, om_slice in, char *err, size_t errlen);

/* --- mig_copy.c: the copy pipeline and its throttle --- */
/* Drop source s's pipeline (answers still out are disowned) and scan again from its cursor. */
void coord_mig_src_restart(mig_src *s);
/* Send source i's next scan if its pipeline has room, its targets are ready and tokens allow. */
void coord_mig_src_try_send(coord_mig *m, size_t i, uint64_t now);
/* Start pass 1 (catch-up) for every source: cursors from the start, min_version wm0. */
void coord_mig_start_pass(coord_mig *m, int pass);
/* Pass 2 in dirty mode: freeze the dirty set, sorted and split per source. OM_E_NOMEM. */
om_status coord_mig_build_dirty(coord_mig *m);
/* Once per tick: the copy rate measured, and the throttle's busy flag and back-off factor. */
void coord_mig_rate_update(coord_mig *m, uint64_t now);
void coord_mig_throttle_update(coord_mig *m, uint64_t now);

#endif /* OM_COORDINATOR_MIGRATE_INT_H */
