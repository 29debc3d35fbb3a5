/*
 * coordinator/coord_int.h -- the coord struct and the functions the
 * coordinator's files share (router.c, fanout.c, shard_pool.c, metrics.c,
 * ring_store.c, migrate.c, mig_admin.c). Private to coordinator/ (and its
 * tests).
 *
 * Layering (calls go down only): coord.c (life cycle) > router.c (dispatch,
 * routing) > fanout.c, mig_admin.c > migrate.c > shard_pool.c, ring_store.c,
 * metrics.c (answers). The one way back up -- requests held by the cutover
 * fence are dispatched again -- goes through the c->dispatch pointer.
 *
 * Concurrency: none. Everything runs on the loop thread of the event_base
 * given to coord_open(): the rpc server's handler, the rpc clients'
 * callbacks, timers and the HTTP callbacks. So no field needs a lock; the
 * only atomics are inside rpc_hist.
 *
 * Lifetimes: a request in flight to a shard holds a context (coord_call,
 * fan_list) that points at the coord and at a coord_shard. coord_close()
 * frees the rpc clients first, which completes every pending call (their
 * callbacks run and release the contexts), and only then the shards.
 */
#ifndef OM_COORDINATOR_COORD_INT_H
#define OM_COORDINATOR_COORD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/coord.h"
#include "partitioner/ring.h"
#include "rpc/rpc.h"
#include "util/slice.h"

struct event;

/* Operations the coordinator counts (metrics, Stats). */
typedef enum coord_op {
    COORD_OP_STORE = 0,
    COORD_OP_RETRIEVE,
    COORD_OP_HEAD,
    COORD_OP_EXISTS,
    COORD_OP_DELETE,
    COORD_OP_LIST,
    COORD_OP_STATS,
    COORD_OP_PING,
    COORD_OP_GET_RING,
    COORD_OP_OTHER,
    COORD_OP_COUNT_
} coord_op;

/*
 * Columns of the answer table (metrics.c): one per wire Status, OK .. the
 * enum's last value (a unit test checks this against the protobuf enum's
 * descriptor). A status this build does not know is counted as INTERNAL.
 */
#define COORD_NSTATUS (OBJMETA__STATUS__PERMISSION_DENIED + 1)
#define COORD_STATUS_UNKNOWN OBJMETA__STATUS__INTERNAL
#define COORD_SECRET_LEN 32

struct coord_shard;

/*
 * A request waiting for a shard's answer. When the health check marks the
 * shard down, every waiter is aborted at once (it answers its client
 * UNAVAILABLE) instead of waiting for the request's own deadline; the rpc
 * callback that comes later only releases the context.
 */
typedef struct coord_waiter {
    struct coord_waiter *prev, *next;
    void (*abort)(struct coord_waiter *w, struct coord_shard *sh);
} coord_waiter;

/* One shard of the ring as the coordinator sees it. */
typedef struct coord_shard {
    struct coord *c;
    char *id;
    char *addr;
    rpc_client **conns; /* pool_size multiplexed connections */
    uint32_t nconns;
    uint32_t next_conn; /* round robin */
    bool up;            /* answers probes, holds the coordinator's ring epoch, id verified */
    bool ever_up;
    bool id_verified; /* Ping reported the ring's id since the shard (re)appeared */
    bool ping_inflight;
    bool setring_inflight;
    uint32_t ping_failures;  /* consecutive failed probes */
    uint64_t probe_answered; /* rpc_client_answered(conns[0]) when the SetRing probe left */
    uint64_t acked_epoch;    /* ring epoch the shard reported to SetRing */
    uint64_t acked_pending;  /* pending ring epoch it reported (0 = none) */
    uint64_t sent_epoch;     /* epochs of the SetRing in flight (a stale answer is not a failure) */
    uint64_t sent_pending;
    uint32_t sent_fence; /* its fence field (pool_fence) */
    bool acked_fenced;   /* the shard reported its cutover fence on */
    uint64_t last_ok_ms;
    char why_down[192];   /* reason shown in errors, /healthz and Stats */
    coord_waiter waiters; /* list head: requests in flight to this shard */
    /* replica group (groups.c): a configuration in etcd names this member's replicas;
     * addr is then its primary's and follows the configuration */
    bool replicated;
    bool failover; /* the primary's leader key went away: wait for the next primary */
    /* counters */
    uint64_t forwarded;
    uint64_t failed_fast;
    uint64_t transport_errors;
} coord_shard;

struct coord {
    struct event_base *base;
    rpc_tls *tls_srv; /* the listener's TLS, or NULL */
    rpc_tls *tls_cli; /* TLS to the shards, or NULL */
    coord_opts opts;  /* strings point into the copies below */
    char *data_dir;
    char *listen;
    char *http_listen;

    ring *ring;           /* the ring in force, routed by (one reference) */
    ring *pending;        /* the target ring of the change in progress, or NULL (migrate.c) */
    coord_shard **shards; /* the pool: every shard of ring and pending, in no set order */
    size_t nshards;
    bool pool_closing; /* coord_pool_close runs: no new shard calls (their callbacks fail) */
    size_t *cur_map;   /* ring_shard_at(ring, i) is shards[cur_map[i]] */
    size_t *pend_map;  /* the same for pending (NULL when no change is in progress) */
    uint8_t secret[COORD_SECRET_LEN]; /* continuation-token key (ring_store.c) */

    rpc_server *server;
    rpc_http *http;
    struct event *health_timer;
    struct event *ready_timer;
    void (*ready)(void *arg);
    void *ready_arg;
    bool ready_called;
    /* coord_dispatch (router.c), set by coord_open: migrate.c dispatches held requests again
     * through it, so it does not call up into the router */
    void (*dispatch)(struct coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);
    bool stopping;

    /* cluster state and leadership (cstate.c, leader.c) */
    struct coord_cstate *cs;
    bool leading;               /* this coordinator may run ring changes */
    bool following;             /* installing a state the leader saved (quieter logs) */
    bool reload_pending;        /* another coordinator changed the state: reload when quiet */
    struct event *reload_timer; /* retries a deferred reload */
    rpc_client *leader_cl;      /* to the leader, for forwarded admin requests */
    char leader_cl_addr[300];   /* its address */
    uint64_t forwarded_admin;   /* admin requests passed to the leader */
    uint64_t proxied_moving;    /* requests for moving keys passed to the leader */
    uint64_t state_reloads;     /* states loaded from another coordinator's save */
    /* coord_test_delay: the phase being delayed and since when */
    const char *test_delay_phase;
    uint64_t test_delay_since_ms;

    /* online ring changes (migrate.c, router.c) */
    struct coord_mig *mig;
    bool fenced;             /* cutover: requests for moving keys are held */
    bool shard_fence;        /* cutover: the old owners fence the moving keys too (SetRing) */
    bool hold_lists;         /* ring switch: List requests are held */
    uint64_t mig_inflight;   /* requests for moving keys in flight, forwards included */
    uint64_t unfwd_inflight; /* writes routed while no change was pending, in flight */
    uint64_t lists_active;   /* List requests being answered (fanout.c) */
    struct coord_held *held_head, *held_tail;
    size_t held_count;
    uint64_t forwards_ok, forwards_failed;
    /* write latency (µs, EWMA) of Store/Delete answered OK: slow while no change runs (the
     * baseline), fast always; the copy throttle backs off when fast rises above baseline */
    double wlat_base_us, wlat_fast_us;
    uint64_t wlat_n; /* samples taken */
    /* client requests (keyed and List) dispatched: the copy throttle's sign of client load */
    uint64_t client_reqs;

    /* replica groups (groups.c) and requests waiting for a group's primary (router.c) */
    struct coord_groups *groups;
    struct coord_parked *parked_head, *parked_tail;
    size_t parked_count;
    struct event *park_timer;
    bool releasing; /* set while router.c dispatches a parked request */
    /* router.c: contexts of finished shard calls, reused (no malloc/free per request) */
    struct coord_call *free_calls;
    size_t nfree_calls;
    uint64_t parked_total, parked_retried, parked_expired;

    /* metrics */
    uint64_t answers[COORD_OP_COUNT_][COORD_NSTATUS];
    rpc_hist latency[COORD_OP_COUNT_];
    uint64_t list_pages;
    uint64_t list_shard_fetches;
    uint64_t list_records_fetched;
    uint64_t list_records_returned;
};

typedef struct coord_held coord_held;

/* The pool entry of shard i of the ring in force / of the pending ring. */
static inline coord_shard *
coord_cur_shard(const coord *c, size_t ring_idx)
{
    return c->shards[c->cur_map[ring_idx]];
}
static inline coord_shard *
coord_pend_shard(const coord *c, size_t ring_idx)
{
    return c->shards[c->pend_map[ring_idx]];
}

/* --- router.c -------------------------------------------------------------------------------- */

/* The rpc_handler_fn of the coordinator (arg = coord). */
void coord_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply);
/* coord_handle with the request's arrival time (held requests are dispatched again later). */
void coord_dispatch(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);

/*
 * coord_route_park -- hold a request for a replicated group that has no
 * usable primary right now (failover: the primary is down, or its leader key
 * is gone) and dispatch it again when the group table or the pool changes,
 * until t0 + failover_wait_ms; then it is answered UNAVAILABLE.
 * Without memory for the copy it is answered at once (UNAVAILABLE).
 */
void coord_route_park(coord *c, const Objmeta__Request *req, coord_op op, uint64_t t0,
                      rpc_reply *reply, const char *group);
/* A heap copy of a request (pack + unpack; free_unpacked it); NULL when out of memory. */
Objmeta__Request *coord_request_copy(const Objmeta__Request *req);
/* Dispatch every parked request again (or answer it, past its deadline). */
void coord_route_release(coord *c);
/* Answer every parked request UNAVAILABLE (shutdown). */
void coord_route_park_close(coord *c);
/* Free the cache of call contexts (after coord_pool_close: no shard call is in flight). */
void coord_route_close(coord *c);
/* Should a request for sh wait for a new primary rather than be sent or refused? */
static inline bool
coord_shard_waits(const coord_shard *sh)
{
    return sh->replicated && (!sh->up || sh->failover);
}

/* --- groups.c -------------------------------------------------------------------------------- */

/*
 * coord_groups_open -- etcd backend: read <prefix>/groups/ and watch it;
 * every change of a group's primary moves its pool entry to the new
 * address (coord_pool_retarget) and releases the parked requests. File
 * backend: nothing (no group has a configuration).
 */
om_status coord_groups_open(coord *c);
void coord_groups_close(coord *c);
/* A new pool entry: mark it replicated and point it at its primary if a configuration names
 * one. Returns the address to use (addr when there is no configuration). */
const char *coord_groups_route_addr(coord *c, coord_shard *sh, const char *addr);
/* Append the objmeta_coord_group_* metrics. */
om_status coord_groups_render_metrics(coord *c, om_buf *out);
/* Replica group administration (group_admin.c): AddGroup ... Verify. */
void coord_group_admin(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);

/* --- metrics.c ------------------------------------------------------------------------------- */

/* Send a response and count it (op, status, latency from t0). */
void coord_answer(coord *c, coord_op op, uint64_t t0, rpc_reply *reply,
                  const Objmeta__Response *resp);
/* coord_answer for a shard's response passed on as encoded (only the id is rewritten); now is
 * om_clock_mono_ns() as the caller read it. */
void coord_answer_encoded(coord *c, coord_op op, uint64_t t0, uint64_t now, rpc_reply *reply,
                          const Objmeta__Response *resp, om_slice encoded);
void coord_answer_error(coord *c, coord_op op, uint64_t t0, rpc_reply *reply, om_status st,
                        const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;
/* Answer a Stats request: the counters and a readable report of the ring and the shards. */
void coord_answer_stats(coord *c, uint64_t t0, rpc_reply *reply);
/* /metrics and /healthz callbacks. */
om_status coord_render_metrics(void *arg, om_buf *out);
om_status coord_health(void *arg, om_buf *reason);

/* --- shard_pool.c ---------------------------------------------------------------------------- */

/* Build the pool for c->ring and c->pending (connections are opened lazily by the first call). */
om_status coord_pool_open(coord *c);
/*
 * coord_pool_sync -- after c->ring or c->pending changed: add pool entries
 * for new shards (and start probing them), rebuild cur_map/pend_map, and
 * schedule the removal of entries in neither ring (freed from a fresh loop
 * turn, never inside a callback). Returns OM_OK; OM_E_NOMEM.
 */
om_status coord_pool_sync(coord *c);
/* The pool entry of shard id, or NULL. */
coord_shard *coord_pool_find(const coord *c, const char *id);
/* Send SetRing (ring + pending) to every shard now (ring switch). */
void coord_pool_push_all(coord *c);
/* Is sh up and holding the coordinator's ring and pending ring? */
bool coord_pool_in_sync(const coord_shard *sh);
/*
 * coord_pool_fence_shards -- the leader's cutover (MIGRATION.md, "Fencing
 * with many coordinators"): set c->shard_fence and send SetRing with the
 * fence on to every shard that has not confirmed it. True once every shard
 * that is up has (the final pass may start: no write routed by the old
 * epoch for a moving key can land on an old owner after it).
 */
bool coord_pool_fence_shards(coord *c);
/* Free every connection (pending calls complete with UNAVAILABLE first) and the shards. */
void coord_pool_close(coord *c);
/* Start the periodic health check (first round at once). */
om_status coord_pool_start_health(coord *c);
/*
 * coord_pool_call -- send req (ring_epoch stamped by the caller) to shard sh on
 * the next connection of its pool. Returns as rpc_client_call.
 */
om_status coord_pool_call(coord_shard *sh, const Objmeta__Request *req, rpc_client_cb cb,
                          void *arg);
/*
 * coord_pool_note_failure -- a call to sh failed in transport (st from the
 * rpc callback); marks it down on a lost connection and probes it again.
 */
void coord_pool_note_failure(coord_shard *sh, om_status st, const char *msg);
/* The shard reported WRONG_SHARD: re-send the ring to it if its epoch may be stale. */
void coord_pool_note_wrong_shard(coord_shard *sh);
/*
 * coord_pool_retarget -- the group's primary moved to addr: new connections
 * to it, the old ones freed (their calls fail and are retried or parked by
 * their owners), the entry down until the new primary answers a probe.
 */
void coord_pool_retarget(coord_shard *sh, const char *addr);
/* Number of shards up. */
size_t coord_pool_up_count(const coord *c);
/* Link a request in flight to sh (abort runs if sh is marked down first) / unlink it. */
void coord_waiter_add(coord_shard *sh, coord_waiter *w);
void coord_waiter_remove(coord_waiter *w);

/* --- fanout.c -------------------------------------------------------------------------------- */

/* Answer a List request (fan out, merge, token). */
void coord_list(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);

/*
 * Continuation tokens: "c1" followed by base64url (no padding) of
 *   version byte (1) | fixed64 params hash | varint length + resume string |
 *   fixed64 tag
 * where params hash = xxh3 of bucket 0x00 prefix 0x00 delimiter, and tag =
 * xxh3 of secret || everything before the tag || secret. The resume string
 * is the last key or common prefix of the page; the next page starts after
 * it. The tag detects corruption and tokens made without the coordinator's
 * secret (it is not a cryptographic MAC; tokens hold nothing secret).
 */
om_status coord_token_encode(const uint8_t secret[COORD_SECRET_LEN], om_slice bucket,
                             om_slice prefix, om_slice delimiter, om_slice resume, om_buf *out);
/*
 * Returns: OM_OK and the resume string in *resume (heap copy, caller
 *          om_buf_free()s); OM_E_INVALID with a message for anything else.
 */
om_status coord_token_decode(const uint8_t secret[COORD_SECRET_LEN], om_slice bucket,
                             om_slice prefix, om_slice delimiter, const char *token, om_buf *resume,
                             char *err, size_t errlen);

/* Entries per shard for the first fetch of a page of max_keys over n shards. */
uint32_t coord_list_shard_page(uint32_t max_keys, size_t nshards);

/* --- leader.c ------------------------------------------------------------------------------- */

/* Watch the cluster state and campaign for leadership as `identity` (file backend: leader). */
om_status coord_leader_start(coord *c, const char *identity);
void coord_leader_close(coord *c);
/* May this coordinator change the ring now? (It leads, by etcd and by the local clock.) */
bool coord_is_leader(const coord *c);
/*
 * coord_test_delay -- the testing aid --test-phase-delay: true while the
 * leader is within test_phase_delay_ms of entering `phase` (a string literal:
 * "cutover", "cleanup"; NULL = neither), so the migration tick does nothing
 * and a test can kill the leader in that phase. Always false when the
 * option is 0 (the default).
 */
bool coord_test_delay(coord *c, const char *phase, uint64_t now_ms);
/*
 * coord_leader_forward -- on a follower, pass an admin change to the leader
 * and relay its answer (or UNAVAILABLE naming etcd when no leader is known).
 * Returns false on the leader (handle it here).
 */
bool coord_leader_forward(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);
/*
 * coord_leader_proxy -- on a follower, pass a request for a moving key (a
 * change is in progress) to the leader, which routes it under its fence.
 * Returns false on the leader (route it here).
 */
bool coord_leader_proxy(coord *c, coord_op op, const Objmeta__Request *req, uint64_t t0,
                        rpc_reply *reply);

/* --- ring_store.c ---------------------------------------------------------------------------- */

/*
 * coord_ring_store_load -- read <dir>/RING.
 * Returns: OM_OK and *cur (and *pending, NULL when none); OM_E_NOTFOUND if
 *          there is no ring file; OM_E_CORRUPT with a message; OM_E_IO.
 */
om_status coord_ring_store_load(const char *dir, ring **cur, ring **pending, char *err,
                                size_t errlen);
/* coord_ring_store_save -- write <dir>/RING atomically (tmp, fsync, rename, dir fsync). */
om_status coord_ring_store_save(const char *dir, const ring *cur, const ring *pending);
/*
 * The same with the migration state (tag 3, migrate.c's encoding; empty = none).
 * load_ex: *mig receives the record (empty when absent).
 */
om_status coord_ring_store_save_ex(const char *dir, const ring *cur, const ring *pending,
                                   om_slice mig);
/*
 * coord_ring_state_encode -- the RING file's bytes (magic, length, checksum,
 * records) for these rings and migration state, appended to *file.
 * coord_ring_state_decode -- the reverse; `what` names the source in
 * messages ("data/coord/RING", "etcd /objmeta/c1/state").
 * Returns: OM_OK; OM_E_CORRUPT with err naming what is wrong; OM_E_NOMEM.
 */
om_status coord_ring_state_encode(const ring *cur, const ring *pending, om_slice mig, om_buf *file);
om_status coord_ring_state_decode(om_slice in, const char *what, ring **cur, ring **pending,
                                  om_buf *mig, char *err, size_t errlen);
om_status coord_ring_store_load_ex(const char *dir, ring **cur, ring **pending, om_buf *mig,
                                   char *err, size_t errlen);

/* --- migrate.c ------------------------------------------------------------------------------- */

/*
 * coord_mig_open -- set up the migration state from the RING file's record
 * (mig may be empty) and start its timer; resumes a change in progress.
 * Requires c->ring, c->pending loaded and the pool open.
 * Returns OM_OK; OM_E_CORRUPT (with a message) for a damaged record; OM_E_NOMEM.
 */
om_status coord_mig_open(coord *c, om_slice mig, char *err, size_t errlen);
void coord_mig_close(coord *c);
/* True while the migration has no call in flight (its state may be replaced). */
bool coord_mig_quiet(const coord *c);
/* AddShard / RemoveShard / SetWeight. */
void coord_mig_admin(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply);
/* RebalanceStatus. */
void coord_mig_status(coord *c, uint64_t t0, rpc_reply *reply);
/* Append the ring change's progress as objmeta_coord_rebalance_* metrics. Loop thread. */
om_status coord_mig_render_metrics(coord *c, om_buf *out);
/*
 * coord_mig_hold -- while c->fenced (keyed requests; the caller decided the key
 * moves) or c->hold_lists (List), keep a packed copy of req and its reply to
 * dispatch again when the ring switch is over. Without the memory to hold it,
 * the request is answered BUSY (counted under op): during the fence it must
 * never reach a shard (MIGRATION.md, "Cutover").
 * Returns: true when the request is taken care of (held or answered); false
 *          when no fence applies and the caller routes it.
 */
bool coord_mig_hold(coord *c, const Objmeta__Request *req, coord_op op, uint64_t t0,
                    rpc_reply *reply, bool is_list);
/* Dispatch every held request again through c->dispatch (after unfencing). */
void coord_mig_release_held(coord *c);
/*
 * coord_mig_note_dirty -- a write to a moving key whose copy on the new owner
 * is not confirmed (forward failed or skipped, outcome unknown): the cutover
 * copies this key again.
 */
void coord_mig_note_dirty(coord *c, const char *bucket, const char *key);
/* Read <dir>/TOKEN_SECRET, creating it (random bytes, atomically) on first use. */
om_status coord_secret_load(const char *dir, uint8_t secret[COORD_SECRET_LEN]);
/* Fill secret from the system's random source. */
om_status coord_secret_random(uint8_t secret[COORD_SECRET_LEN]);
/*
 * coord_parse_shards -- "id=host:port[/W],..." (W: weight, default 1) into a
 * ring of epoch 1. Returns: OM_OK and *out; OM_E_INVALID with a message.
 */
om_status coord_parse_shards(const char *spec, uint32_t vnodes_per_weight, ring **out, char *err,
                             size_t errlen);

#endif /* OM_COORDINATOR_COORD_INT_H */
