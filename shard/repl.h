/*
 * shard/repl.h -- primary-backup replication of a shard's write stream
 * (private to shard/; wired up by main.c; the design, its vocabulary and
 * what is built so far are in shard/REPLICATION.md).
 *
 * Two objects, one per role:
 *
 *   shard_replica   the backup side (replica.c): applies Replicate requests
 *                   -- group commits of the primary, numbered by the
 *                   replication index -- exactly as the primary wrote them,
 *                   one engine write and one fsync per request, with the
 *                   replica state (term, last index) in the same write.
 *   shard_repl      the primary side (repl.c): numbers each group commit the
 *                   shard writes, keeps its records, and ships them to every
 *                   backup; the commit pipeline's sync step waits until all
 *                   backups have them durable before the group counts as
 *                   durable (commit.h, commit_set_replication), so no reply
 *                   that depends on a write leaves before that.
 *
 * The replica state lives under a reserved LSM key (record.h,
 * shard_key_is_reserved) on every replica, primary included: the primary
 * writes (term, index) into each group's own engine write, a backup into
 * each applied request's. After any crash the state on disk is exactly
 * that of the data beside it.
 *
 * Thread-safety: as stated per call.
 */
#ifndef OM_SHARD_REPL_H
#define OM_SHARD_REPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "rpc/rpc.h"
#include "shard/shard.h"
#include "util/slice.h"
#include "util/status.h"

/* The reserved LSM key of the replica state (record.h: first byte 0x00). */
#define SHARD_REPL_STATE_KEY "\0objmeta.replication"
#define SHARD_REPL_STATE_KEY_LEN (sizeof(SHARD_REPL_STATE_KEY) - 1)

/* What the replica state key holds: format 1, varint term, varint last index. */
typedef struct shard_repl_state {
    uint64_t term;
    uint64_t index; /* the last group commit applied (0: none) */
} shard_repl_state;

/*
 * shard_repl_state_load -- read the replica state of db ({0, 0} if absent).
 * Returns: OM_OK; OM_E_CORRUPT (does not decode); engine errors.
 */
om_status shard_repl_state_load(lsm_db *db, shard_repl_state *out);

/* Append the state's put to b. Returns OM_OK; OM_E_NOMEM. */
om_status shard_repl_state_put(lsm_batch *b, const shard_repl_state *st);

/* ---- backup ---- */

typedef struct shard_replica shard_replica;

/*
 * shard_replica_open -- the backup of replica group `group` (copied; "" =
 * accept any group id) over shard s: loads the replica state and starts the
 * one thread that applies (in arrival order).
 * Returns: OM_OK and *out; errors of shard_repl_state_load; OM_E_NOMEM.
 * Thread-safety: main thread, after shard_open.
 */
om_status shard_replica_open(shard *s, const char *group, shard_replica **out);

/*
 * shard_replica_close -- answer queued requests UNAVAILABLE, finish the
 * running one, join the thread, free. Accepts NULL. Before shard_close.
 */
void shard_replica_close(shard_replica *r);

/*
 * shard_replica_apply -- apply one Replicate request (the worker's step;
 * tests call it directly).
 *
 *   group differs          OM_E_INVALID
 *   term < held term       OM_E_PRECONDITION ("stale term"): the sender is a
 *                          former primary
 *   first_index > last + 1 OM_E_PRECONDITION ("gap"): the sender resends from
 *                          *durable + 1
 *   a record is bad        OM_E_INVALID / OM_E_CORRUPT naming it; nothing applied
 *   catch_up page          OM_OK: its key range made equal to the page (the
 *                          records exactly, other keys held there deleted);
 *                          with done, the index becomes snapshot_index
 *   otherwise              OM_OK: the groups above the last index are applied
 *                          (those at or below it, sent again in the same term,
 *                          are skipped: a resend is idempotent), synced, and
 *                          the state moves to (term, first_index + n - 1).
 *
 * *state is the replica state after the call, on every return but engine
 * errors. Thread-safety: any thread; calls are serialised inside.
 */
om_status shard_replica_apply(shard_replica *r, const Objmeta__ReplicateRequest *rq,
                              shard_repl_state *state, char *err, size_t errlen);

/* The replica state held. Any thread. */
void shard_replica_state(shard_replica *r, shard_repl_state *out);

/*
 * shard_replica_handle -- on a backup: answer Replicate (through the apply
 * thread) and refuse the writes only a primary may make (Store, Delete,
 * ApplyRecords: UNAVAILABLE naming the role); false (reply untouched) for
 * every other operation. Loop thread.
 */
bool shard_replica_handle(shard_replica *r, const Objmeta__Request *req, rpc_reply *reply);

/*
 * shard_reply_not_applied -- answer UNAVAILABLE with not_applied set and a
 * printf-formatted message: this replica refused the request before acting
 * on it (a backup asked for a write, a primary that does not serve, a
 * replica changing roles), so a router may send it again to the group's
 * next primary whatever the operation. Loop thread.
 */
void shard_reply_not_applied(rpc_reply *reply, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * shard_repl_render_metrics -- append the replication metrics of s (none
 * without a role): objmeta_replication_role{role}, _term, _index; on a
 * primary per backup _backup_acked_index, _backup_lag_records,
 * _backup_lag_bytes (kept for it), _backup_catching_up; _failed (a later term
 * met, or a group could not be kept). Returns OM_OK; OM_E_NOMEM. Any thread.
 */
om_status shard_repl_render_metrics(shard *s, om_buf *out);

/*
 * shard_repl_ping_state -- s's replication state for its Ping answer (the
 * coordinator's Groups): role, term, index and, on a primary, each backup's
 * (into bs / bp, room for cap; strings borrowed from the primary). False
 * (nothing set) without a role. Loop thread.
 */
#define SHARD_REPL_PING_BACKUPS 8 /* backups a Ping answer lists at most (etcd groups: 4) */
bool shard_repl_ping_state(shard *s, Objmeta__ReplicationState *out, Objmeta__BackupState *bs,
                           Objmeta__BackupState **bp, size_t cap);

/* ---- primary ---- */

typedef struct shard_repl shard_repl;

typedef struct shard_repl_opts {
    const char *group;        /* replica group id sent with every Replicate */
    uint64_t term;            /* >= 1: replica-term, or the group configuration's (etcd) */
    const char *backups;      /* "host:port,host:port,...": at least one backup */
    uint32_t timeout_ms;      /* one Replicate call; then it is sent again. Default 2000 */
    uint32_t retry_ms;        /* pause after a failed call. Default 200 */
    size_t max_request_bytes; /* records per Replicate request. Default 4 MiB */
    size_t max_held_bytes;    /* records kept for backups; beyond it the writer waits.
                               * Default 256 MiB */
    uint64_t catch_up_rate;   /* snapshot pages to a backup out of the in-sync set, bytes/s
                               * (repl_catchup.c); 0 = unlimited. Default 16 MiB/s */
    bool no_await;            /* open returns at once: the caller waits with shard_repl_ready
                               * (the etcd layer, which must stay on its loop meanwhile) */
    rpc_tls *tls;             /* NULL: plaintext; else the shippers' client context (the shard's
                               * certificate and the cluster CA). Borrowed: outlives the repl */
    const char *drop_key;     /* testing aid (setting test-drop-shipment-key), NULL or "" off:
                               * from the first group holding a key that contains it on,
                               * nothing is shipped (durable here, never acknowledged) */
} shard_repl_opts;

void shard_repl_opts_init(shard_repl_opts *o);

/*
 * shard_repl_open -- the primary of a group over shard s: loads the replica
 * state (a state of a higher term than o->term is refused: OM_E_INVALID, this
 * replica was a backup of a later primary), starts one shipping thread per
 * backup and hooks the shard's write path and commit pipeline. Call after
 * shard_open and before shard_attach_loop; the shard must sync always.
 * Returns: OM_OK and *out; OM_E_INVALID (logged); OM_E_NOMEM.
 * Thread-safety: main thread.
 */
om_status shard_repl_open(shard *s, const shard_repl_opts *o, shard_repl **out);

/*
 * shard_repl_stop -- give up: every wait for the backups ends with
 * OM_E_UNAVAILABLE (the replies held for it fail; nothing unreplicated is
 * acknowledged), the shipping threads are joined. Call before shard_close
 * (whose last sync would otherwise wait for a backup that may never answer).
 */
void shard_repl_stop(shard_repl *r);

/* shard_repl_close -- stop and free. Accepts NULL. After shard_close. */
void shard_repl_close(shard_repl *r);

/*
 * The in-sync set as the primary applies it (shard/repl_etcd.c keeps it equal
 * to the group configuration): ship waits only for the backups in it, and a
 * backup out of it gets the stream (and, when needed, a catch-up) without
 * holding a write. Every backup starts in it.
 */
typedef struct shard_repl_peer_info {
    const char *addr; /* valid while the primary lives */
    bool in_sync, known, catching;
    bool silent;          /* owes an answer and gave none for timeout_ms */
    bool answering;       /* answered within timeout_ms */
    uint64_t acked;       /* its durable index as last answered */
    uint64_t lag_records; /* group commits it lacks */
    uint64_t lag_bytes;   /* bytes of records kept for it (metrics only; 0 from peer_get) */
    double lag_s;         /* age of the oldest group it lacks (metrics only, as lag_bytes) */
    /* while catching: key and value bytes and records sent, the snapshot's estimated bytes */
    uint64_t cu_bytes, cu_records, cu_total;
} shard_repl_peer_info;

/* Backups (every replica but this one). Any thread. */
size_t shard_repl_peer_count(const shard_repl *r);
/* Backup i's state (without the lag in bytes and seconds: a walk, for /metrics). Any thread. */
void shard_repl_peer_get(shard_repl *r, size_t i, shard_repl_peer_info *out);
/* Count backup i in the in-sync set or not (ship recomputes at once). Any thread. */
void shard_repl_set_in_sync(shard_repl *r, size_t i, bool in_sync);
/*
 * True when every in-sync backup confirmed index `index` durable (the wait
 * of a primary that holds writes before it serves: see shard_repl_open).
 * Any thread.
 */
bool shard_repl_ready(shard_repl *r, uint64_t index);
/* Fail for good now, without joining anything (a demoted primary). Any thread. */
void shard_repl_fail(shard_repl *r);

/* The primary's state: term and the last index written. Any thread. */
void shard_repl_primary_state(shard_repl *r, shard_repl_state *out);

/*
 * The write path's hooks (shard.c, shard_write_group), for each group commit
 * written with a primary attached: shard_repl_stage for every record put
 * into the engine batch, then shard_repl_seal (puts the replica state into
 * the batch; an error fails the group unwritten), the engine write, and,
 * with no stripe held, shard_repl_written with the write's status (may wait
 * for room while a backup is away). Thread-safety: the pipeline's one writer
 * at a time (commit.h).
 */
void shard_repl_stage(shard_repl *r, om_slice key, om_slice value);
om_status shard_repl_seal(shard_repl *r, lsm_batch *b);
void shard_repl_written(shard_repl *r, om_status st);

#endif /* OM_SHARD_REPL_H */
