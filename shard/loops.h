/*
 * shard/loops.h -- read loops: more threads serving a shard's rpc port.
 *
 * One loop thread runs everything that changes the shard (Store, Delete, the
 * commit pipeline's answers, replication, migration, rings) and is the only
 * one that may (shard/commit.h's "loop thread"). At two million keys a
 * Retrieve costs that thread 4 to 10 microseconds, most of it the engine's
 * cache misses, and it saturates one core while the others idle. A read loop
 * is another thread with an event_base and an rpc server of its own that
 * binds nothing (adopt_only): the main server's listener accepts every
 * connection and hands them out in turn -- the first to itself, the next to
 * read loop 1, and so on (rpc_server_set_accept_hook, rpc_server_adopt), so
 * even a coordinator's two connections land on two loops. A read loop
 * answers Retrieve, Head and Exists itself
 * (shard_rpc_read_loop_handler; their replies pass commit_send, so a read
 * still never shows a write that is not durable and replicated, and none
 * leaves after the primary's lease), and hands every other request, packed,
 * to the main loop, which runs the same handler as for its own connections;
 * the answer goes back through rpc_reply_send, which any thread may call.
 *
 * A connection stays on the loop that accepted it, so its requests keep the
 * order they had: those a read loop answers and those it hands on are
 * answered independently, as rpc/FRAMING.md allows any two requests in
 * flight to be.
 *
 * Thread-safety: every call on the main loop's thread, but shard_loops_free
 * (the main thread after that loop stopped).
 */
#ifndef OM_SHARD_LOOPS_H
#define OM_SHARD_LOOPS_H

#include <event2/event.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "shard/shard.h"
#include "util/status.h"

typedef struct shard_loops shard_loops;

/* The most read loops a shard starts (the setting `loops` counts the main one too). */
#define SHARD_LOOPS_MAX 31

typedef struct shard_loops_opts {
    shard *sh;
    const rpc_server_opts *ro; /* the main server's (copied, made adopt_only) */
    rpc_server *srv;           /* the main server: its accept hook hands connections out */
    unsigned n;                /* read loops, 1..SHARD_LOOPS_MAX */
    struct event_base *base;   /* the main loop, which runs the requests handed to it */
    rpc_handler_fn handler;    /* ... with this handler, as its own server does */
    void *handler_arg;
} shard_loops_opts;

/*
 * shard_loops_start -- start o->n read loops (each ready to take connections
 * when this returns) and hand them connections from the main server's
 * accept hook.
 * Returns: OM_OK and *out; OM_E_NOMEM; the rpc server's errors (logged).
 */
om_status shard_loops_start(const shard_loops_opts *o, shard_loops **out);

/*
 * shard_loops_shutdown -- the graceful stop of the port: rpc_server_shutdown
 * on every read loop (deadline_ms as there), the main loop meanwhile
 * answering the requests they handed on; once they all stopped, on the main
 * server, whose end exits the main loop (event_base_loopexit). NULL loops:
 * the main server's at once. Calling it again does nothing.
 */
void shard_loops_shutdown(shard_loops *l, rpc_server *main_srv, uint32_t deadline_ms);

/*
 * shard_loops_add_stats -- add the read loops' rpc counters to *st (each
 * loop publishes them every SHARD_LOOPS_STATS_MS and when it stops).
 */
#define SHARD_LOOPS_STATS_MS 100
void shard_loops_add_stats(shard_loops *l, rpc_server_stats *st);

/*
 * shard_loops_render_metrics -- per loop (label loop="0" for the main one,
 * whose counters are *main): objmeta_shard_loop_requests_total,
 * objmeta_shard_loop_connections and objmeta_shard_loop_handed_on_total
 * (requests a read loop passed to the main loop). NULL loops: loop 0 only.
 */
om_status shard_loops_render_metrics(shard_loops *l, const rpc_server_stats *main, om_buf *out);

/*
 * shard_loops_free -- stop the loops (at once, when shard_loops_shutdown did
 * not), join them, answer UNAVAILABLE to anything still handed on, free.
 * Before shard_close. Accepts NULL.
 */
void shard_loops_free(shard_loops *l);

#endif /* OM_SHARD_LOOPS_H */
