/*
 * shard/repl_int.h -- the primary side of replication as repl.c (the
 * stream) and repl_catchup.c (catch-up from a snapshot) share it (private
 * to those two files; the design is in repl.c's header and
 * shard/REPLICATION.md).
 *
 * Thread-safety: the fields say their guard; mu is a leaf (shard_int.h).
 */
#ifndef OM_SHARD_REPL_INT_H
#define OM_SHARD_REPL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "shard/repl.h"
#include "util/slice.h"

/* One group commit as queued for the backups: the protobuf views point into `mem`. */
typedef struct repl_group {
    struct repl_group *next;
    uint64_t index;
    size_t bytes;
    uint64_t t_ns; /* when it was queued (lag in seconds) */
    Objmeta__ReplicateGroup pb;
    Objmeta__MigrateRecord **ptrs;
    Objmeta__MigrateRecord *recs;
    uint8_t mem[];
} repl_group;

typedef struct repl_peer {
    shard_repl *r;
    char *addr;
    pthread_t th;
    bool have_th;
    uint64_t acked; /* under mu: the backup's durable index as last answered */
    /* catch-up (under mu; snap and cursor used by this peer's thread only) */
    bool known; /* under mu: the backup answered since this primary started */
    /* under mu: ship waits for this backup (the in-sync set; always true with static
     * membership, the group configuration's with etcd: shard/repl_etcd.c) */
    bool in_sync;
    uint64_t progress_ns; /* under mu: the last answer that moved it on (silence: repl.h) */
    uint64_t answer_ns;   /* under mu: the last answer of any kind */
    bool catching;
    /* the catch-up's progress (under mu; repl_catchup.c): since t0, the pages, records and key
     * and value bytes sent, the snapshot's estimated bytes, the last progress line, and the
     * pace (the time the bytes sent so far are paid for at catch_up_rate) */
    uint64_t cu_t0_ns, cu_log_ns, cu_pages, cu_records, cu_bytes, cu_total, cu_tat_ns;
    uint64_t snap_index; /* the snapshot's index: groups above it are kept */
    lsm_snapshot *snap;
    om_buf cursor; /* the last key the backup has from the snapshot */
} repl_peer;

/* The records staged for the group being written (writer only). */
typedef struct repl_stage {
    om_buf mem;  /* key, value, key, value, ... */
    om_buf lens; /* (size_t key length, size_t value length) per record */
    size_t n;
    om_status err; /* sticky: a record could not be kept */
    bool drop;     /* a key holds opts.drop_key */
} repl_stage;

struct shard_repl {
    shard *s;
    shard_repl_opts opts;
    char *group;
    repl_peer *peers;
    size_t npeers;

    repl_stage stage; /* writer only */
    uint64_t w_index; /* writer only */

    pthread_mutex_t mu;
    pthread_cond_t cv; /* any change of the state under mu */
    repl_group *head, *tail;
    size_t held_bytes;
    uint64_t last;        /* the last index queued */
    uint64_t ship_to;     /* the highest mark published to the shippers */
    uint64_t start_index; /* the last index on disk when this primary started (immutable) */
    /* this term is in the replica state on this disk: groups ship before their sync here */
    bool term_durable;
    om_status err; /* sticky: this primary is stale */
    bool stop;
    uint64_t drop_from; /* testing aid: the first group never shipped (0: none) */
};

/* Requires: mu held. Free the groups every backup has (or gets by its catch-up's snapshot). */
void repl_trim(shard_repl *r);

/* Requires: mu held. p answered and moved on (or had nothing to do): not silent. */
void repl_progress(repl_peer *p);
/* Requires: mu held. p answered a request (any status). */
void repl_answered(repl_peer *p);

/* Requires: mu held. Wait up to ms or until stopped. */
void repl_pause_ms(shard_repl *r, uint32_t ms);

/*
 * Act on a backup's answer to a Replicate of indexes [first, last]: a later
 * term (stale), divergence (a catch-up), an index beyond this primary's, the
 * new acknowledged index, or an error to retry. Requires: mu held.
 */
void repl_peer_answer(repl_peer *p, uint64_t first, uint64_t last, const Objmeta__Response *resp,
                      bool *quiet);

/* repl_catchup.c: start p's catch-up; one page of it. Requires: mu held (released meanwhile). */
void repl_catch_up_start(repl_peer *p);
void repl_catch_up_step(repl_peer *p, rpc_sync_client **cli, bool *quiet);

#endif /* OM_SHARD_REPL_INT_H */
