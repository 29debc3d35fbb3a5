/*
 * coordinator/cstate.h -- the cluster state: where a coordinator keeps the
 * ring in force, the pending ring and the migration state (phase, per-source
 * checkpoints, cleanup list, counters), behind one interface with two
 * backends. Private to coordinator/.
 *
 *   file  <data-dir>/RING (ring_store.c): the embedded default, one
 *         coordinator; it is always the leader.
 *   etcd  <prefix>/state holds the same bytes (coord_ring_state_encode);
 *         <prefix>/leader is the election key. Any number of coordinators
 *         load and watch the state; one leader (elected under a lease) writes
 *         it. See MIGRATION.md, "Many coordinators".
 *
 * Every save is conditional on what this coordinator last loaded or saved
 * (etcd: a transaction comparing the key's mod_revision) and, with an
 * election, on still being the leader (the election key's create_revision):
 * a coordinator that was overtaken, or lost its lease while frozen, writes
 * nothing and gets OM_E_PRECONDITION.
 *
 * Loads and saves are synchronous: the etcd backend runs its requests on a
 * private event_base (a save costs one etcd round trip on the loop, as the
 * file backend costs an fsync), bounded by the etcd timeout. Checkpoints
 * (the copy's progress every 200 ms; same rings, same phase) are not: the
 * etcd backend sends them on the coordinator's loop and goes on serving.
 * The watch and the election run asynchronously on the coordinator's loop.
 *
 * Thread-safety: loop thread only.
 */
#ifndef OM_COORDINATOR_CSTATE_H
#define OM_COORDINATOR_CSTATE_H

#include <stdbool.h>
#include <stdint.h>

#include "coordinator/coord_int.h"
#include "etcd/etcd.h"
#include "partitioner/ring.h"
#include "util/slice.h"
#include "util/status.h"

struct event_base;

typedef struct coord_cstate coord_cstate;

typedef struct coord_cstate_opts {
    const char *data_dir;    /* file backend (also used when etcd is set: token secret) */
    const char *etcd;        /* "http://h:p,..."; NULL or "" = file backend */
    const char *etcd_prefix; /* "/objmeta/<cluster>" */
    int etcd_timeout_ms;     /* per request; default 2000 */
    int lease_ttl_s;         /* leader lease; default 5 */
} coord_cstate_opts;

/* Called on the loop when another coordinator changed the state (reload it), or on a change of
 * leadership. */
typedef void (*coord_cstate_cb)(void *arg);

/*
 * coord_cstate_open -- open the backend (etcd: connect lazily, start
 * watching and campaigning on base once coord_cstate_start is called).
 * Returns: OM_OK; OM_E_INVALID with err naming the bad option.
 */
om_status coord_cstate_open(struct event_base *base, const coord_cstate_opts *o, char *err,
                            size_t errlen, coord_cstate **out);
void coord_cstate_close(coord_cstate *s);

/* "etcd" or "file", and where ("<dir>/RING", "etcd <prefix>/state") for messages. */
const char *coord_cstate_backend(const coord_cstate *s);
const char *coord_cstate_where(const coord_cstate *s);

/*
 * coord_cstate_load -- read the state; OM_E_NOTFOUND when there is none yet.
 * Remembers the revision read (the condition of the next save).
 */
om_status coord_cstate_load(coord_cstate *s, ring **cur, ring **pending, om_buf *mig, char *err,
                            size_t errlen);

/*
 * coord_cstate_save -- write the state if nobody changed it since this
 * coordinator's last load or save and (with an election) it still leads.
 * Returns: OM_OK; OM_E_PRECONDITION (err: who/what changed); OM_E_UNAVAILABLE
 * or OM_E_TIMEOUT (err names etcd and the endpoint); file errors.
 */
om_status coord_cstate_save(coord_cstate *s, const ring *cur, const ring *pending, om_slice mig,
                            char *err, size_t errlen);

/*
 * coord_cstate_checkpoint -- record new progress of the change in force
 * (mig: the migration record; cur and pending must be the rings of the
 * last load or save). File backend: coord_cstate_save. etcd: queued and
 * sent on the loop (cstate.c, "checkpoint"), under the same conditions as
 * a save; returns before etcd answers. A checkpoint refused because another
 * coordinator wrote or the lease ended runs changed() (reload and follow);
 * one overtaken by this coordinator's own save is dropped.
 * Returns: OM_OK (queued); OM_E_PRECONDITION when not the leader; OM_E_NOMEM.
 */
om_status coord_cstate_checkpoint(coord_cstate *s, const ring *cur, const ring *pending,
                                  om_slice mig, char *err, size_t errlen);
/* True when no checkpoint is in flight or queued (always for the file backend). */
bool coord_cstate_checkpoints_idle(const coord_cstate *s);

/*
 * coord_cstate_create -- write the first state only if there is none
 * (bootstrap from --shards). OM_E_PRECONDITION: another coordinator created
 * it first (load it).
 */
om_status coord_cstate_create(coord_cstate *s, const ring *cur, char *err, size_t errlen);

/*
 * coord_cstate_secret -- the continuation-token key, shared by every
 * coordinator of the cluster (file: <dir>/TOKEN_SECRET; etcd:
 * <prefix>/token-secret, created once by whoever comes first), so a page
 * token from one coordinator is valid on the others.
 */
om_status coord_cstate_secret(coord_cstate *s, uint8_t secret[COORD_SECRET_LEN], char *err,
                              size_t errlen);

/*
 * coord_cstate_start -- etcd: watch the state and campaign for leadership
 * under `identity` (the "host:port" other coordinators forward admin
 * requests to); changed() runs when another coordinator saved, role() when
 * leadership or the known leader changed. File backend: nothing (always
 * leader).
 */
om_status coord_cstate_start(coord_cstate *s, const char *identity, coord_cstate_cb changed,
                             coord_cstate_cb role, void *arg);

/* True if this coordinator may change the state now (file backend: always). */
bool coord_cstate_is_leader(const coord_cstate *s);
/* The leader's identity ("" if unknown; this coordinator's own when leading). */
om_slice coord_cstate_leader(const coord_cstate *s);
/* The revision last loaded or saved (etcd), 0 for the file backend. */
int64_t coord_cstate_revision(const coord_cstate *s);
/* etcd counters for /metrics (zeros for the file backend). */
void coord_cstate_etcd_stats(const coord_cstate *s, etcd_stats *out);
/*
 * The newest revision of the state the watch has reported (0 for the file
 * backend). Minus coord_cstate_revision: how far the state this coordinator
 * loaded lags what etcd told it (watch lag, in revisions; 0 = caught up).
 */
int64_t coord_cstate_seen_revision(const coord_cstate *s);

/*
 * coord_cstate_etcd -- the etcd client of the coordinator's loop (the one
 * the watch and the election use) and the cluster's key prefix without a
 * trailing '/' (groups.c: the replica groups live under <prefix>/groups/).
 * NULL for the file backend.
 */
etcd_client *coord_cstate_etcd(const coord_cstate *s);
const char *coord_cstate_prefix(const coord_cstate *s);

/*
 * True while this coordinator is in touch with the cluster state: always for
 * the file backend; for etcd, while etcd confirmed its lease within one TTL
 * (etcd_election_in_touch). A follower cut off from etcd keeps serving data
 * on the rings it holds but cannot tell who leads.
 */
bool coord_cstate_in_touch(const coord_cstate *s);

#endif /* OM_COORDINATOR_CSTATE_H */
