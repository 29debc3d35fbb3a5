/*
 * shard/main.c -- objmeta-shard: parse the config table, open the shard,
 * serve the protocol (rpc) and /metrics + /healthz (HTTP) on one libevent
 * loop (with read loops beside it on the rpc port: shard/loops.h), write the
 * port file, and shut down gracefully on SIGTERM/SIGINT: stop accepting,
 * answer requests in flight, sync the WAL, close, exit 0.
 * Settings and defaults: shard/README.md and `objmeta-shard --print-config`.
 */
#define OM_LOG_MODULE "main"
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/loops.h"
#include "shard/main_conf.h"
#include "shard/migrate.h"
#include "shard/shard.h"
#include "util/log.h"

typedef struct app {
    shard *sh;
    shard_mig *mig;       /* rings from the coordinator (SetRing), fencing, migration (migrate.h) */
    shard_conf_repl repl; /* replication: static or from etcd (main_repl.c) */
    rpc_server *srv;
    shard_loops *loops; /* the read loops, or NULL */
    rpc_http *http;
    struct event_base *base;
} app;

static om_status
app_health(void *arg, om_buf *reason)
{
    return shard_health(((app *)arg)->sh, reason);
}

static om_status
app_metrics(void *arg, om_buf *out)
{
    app *a = arg;
    OM_TRY(shard_render_metrics(a->sh, out));
    rpc_server_stats st;

    OM_TRY(shard_repl_etcd_render_metrics(a->repl.etcd, out)); /* accepts NULL */
    rpc_server_get_stats(a->srv, &st);
    OM_TRY(shard_loops_render_metrics(a->loops, &st, out));
    shard_loops_add_stats(a->loops, &st);
    return rpc_server_render_stats(&st, out);
}

/* SetRing/GetRing and the migration operations go to shard_mig, everything else to the shard. */
static void
app_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    app *a = arg;
    if (shard_conf_repl_handle(&a->repl, req, reply))
        return;
    if (!shard_mig_handle(a->mig, req, reply))
        shard_rpc_handler(a->sh, req, reply);
}

/* Stop every listener of the port; the loop exits once they all drained (loops.h). */
static void
app_shutdown(app *a, uint32_t deadline_ms)
{
    shard_loops_shutdown(a->loops, a->srv, deadline_ms);
}

static void
app_stop(void *arg)
{
    app_shutdown(arg, 10000);
}

static void
app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    om_log(OM_LOG_INFO, "shutting down signal=%d", (int)sig);
    shard_repl_etcd_shutdown(a->repl.etcd, app_stop, a); /* a primary resigns first */
}

/* A demoted primary: stop at once; main executes the binary again (it returns a backup). */
static void
app_restart(void *arg)
{
    app_shutdown(arg, 500); /* every reply fails now anyway */
}

int
main(int argc, char **argv)
{
    shard_conf c = {0};
    char haddr[300];
    shard_opts so;
    shard_mig_opts mo;
    rpc_server_opts ro;
    app a = {0};
    rpc_tls *tls = NULL;
    struct event *sigs[2] = {NULL, NULL};
    int rc = 1;

    if ((rc = om_conf_main_load(&shard_table, &c, argc, argv)) != OM_CONF_MAIN_RUN)
        return rc;
    rc = 1;
    if (c.write_buffer > 0 && c.write_buffer < 64 * 1024) {
        om_log(OM_LOG_ERROR, "bad configuration: write-buffer must be 0 (from memory-budget) or "
                             "at least 64K");
        om_conf_fini(&shard_table, &c);
        return 2;
    }
    om_log_setup((om_log_level)c.log_level, (om_log_format)c.log_format);
    rpc_init_logging();
    signal(SIGPIPE, SIG_IGN);

    shard_conf_shard_opts(&c, &so);
    shard_conf_rpc_opts(&c, &ro);
    shard_conf_mig_opts(&c, &mo);
    if (shard_conf_trust(&c, &so, &ro, &tls) != OM_OK)
        goto out;
    rpc_conf_http_addr(c.listen, c.http_listen, haddr, sizeof(haddr));

    a.base = event_base_new();
    if (a.base == NULL || shard_mig_new(c.id, &mo, &a.mig) != OM_OK)
        goto out;
    so.lsm.compaction_filter = shard_mig_compaction_filter; /* drops keys moved away */
    so.lsm.compaction_filter_arg = a.mig;
    if (shard_open(c.data_dir, &so, &a.sh) != OM_OK || shard_mig_attach(a.mig, a.sh) != OM_OK)
        goto out;
    shard_set_ring_check(a.sh, shard_mig_check, a.mig);
    shard_set_move_fence(a.sh, shard_mig_move_fence, a.mig);
    if (shard_conf_replication(&c, a.sh, a.base, app_restart, &a, &a.repl) != OM_OK ||
        shard_attach_loop(a.sh, a.base) != OM_OK)
        goto out;
    if (rpc_server_new(a.base, &ro, app_handle, &a, &a.srv) != OM_OK)
        goto out;
    rpc_server_set_prefetch(a.srv, shard_rpc_prefetch, a.sh);
    if (shard_conf_loops(&c) > 1 &&
        shard_loops_start(&(shard_loops_opts){.sh = a.sh,
                                              .ro = &ro,
                                              .srv = a.srv,
                                              .n = shard_conf_loops(&c) - 1,
                                              .base = a.base,
                                              .handler = app_handle,
                                              .handler_arg = &a},
                          &a.loops) != OM_OK)
        goto out;
    if (haddr[0] != '\0' &&
        rpc_http_open(a.base, haddr, app_health, app_metrics, &a, &a.http) != OM_OK)
        goto out;
    {
        const char *names[2] = {"rpc", "http"};
        int ports[2] = {rpc_server_port(a.srv), a.http ? rpc_http_port(a.http) : 0};
        if (c.port_file[0] &&
            rpc_port_file_write(c.port_file, names, ports, a.http ? 2 : 1) != OM_OK)
            goto out;
        om_log(OM_LOG_INFO, "serving id=%s data_dir=%s rpc_port=%d http_port=%d sync_mode=%s", c.id,
               c.data_dir, ports[0], ports[1], shard_sync_modes[c.sync_mode]);
    }
    sigs[0] = evsignal_new(a.base, SIGTERM, app_on_signal, &a);
    sigs[1] = evsignal_new(a.base, SIGINT, app_on_signal, &a);
    if (!sigs[0] || !sigs[1] || event_add(sigs[0], NULL) || event_add(sigs[1], NULL))
        goto out;
    event_base_dispatch(a.base);
    rc = 0;
out:
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (a.http)
        rpc_http_close(a.http);
    shard_loops_free(a.loops); /* before the shard closes: they read it */
    rpc_server_free(a.srv);
    rpc_tls_free(tls);
    shard_mig_stop(a.mig);
    bool again = shard_conf_repl_stop(&a.repl);
    if (shard_close(a.sh) != OM_OK)
        rc = 1;
    shard_conf_repl_free(&a.repl);
    shard_mig_free(a.mig);
    if (a.base)
        event_base_free(a.base);
    om_log(rc == 0 ? OM_LOG_INFO : OM_LOG_ERROR, "exit status=%d", rc);
    om_conf_fini(&shard_table, &c);
    return again && rc == 0 ? shard_conf_exec_again(argv) : rc;
}
