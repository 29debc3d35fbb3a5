/*
 * shard/main.c -- objmeta-shard: parse the config table, open the shard,
 * serve the protocol (rpc) and /metrics + /healthz (HTTP) on one libevent
 * loop, write the port file, and shut down gracefully on SIGTERM/SIGINT:
 * stop accepting, answer requests in flight, sync the WAL, close, exit 0.
 * Settings and defaults: shard/README.md and `objmeta-shard --print-config`.
 */
#define OM_LOG_MODULE "main"
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/main_conf.h"
#include "shard/migrate.h"
#include "shard/repl.h"
#include "shard/shard.h"
#include "util/log.h"

typedef struct app {
    shard *sh;
    shard_mig *mig;   /* rings from the coordinator (SetRing), fencing, migration (migrate.h) */
    shard_repl *repl; /* replica-role primary (repl.h) */
    shard_replica *replica; /* replica-role backup */
    rpc_server *srv;
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
    return rpc_server_render_metrics(a->srv, out);
}

/* SetRing/GetRing and the migration operations go to shard_mig, everything else to the shard. */
static void
app_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    app *a = arg;
    if ((a->replica != NULL && shard_replica_handle(a->replica, req, reply)) ||
        (a->repl != NULL && shard_repl_handle(a->repl, req, reply)))
        return;
    if (!shard_mig_handle(a->mig, req, reply))
        shard_rpc_handler(a->sh, req, reply);
}

static void
app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;
    om_log(OM_LOG_INFO, "shutting down signal=%d", (int)sig);
    rpc_server_shutdown(a->srv, 10000, NULL, NULL);
}

/* http-listen "auto": the host of listen, port + 1000 (0 stays 0). */
static void
http_addr(const shard_conf *c, char *out, size_t n)
{
    const char *colon = strrchr(c->listen, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    if (strcmp(c->http_listen, "auto") != 0 || colon == NULL)
        snprintf(out, n, "%s", c->http_listen);
    else
        snprintf(out, n, "%.*s:%ld", (int)(colon - c->listen), c->listen, port ? port + 1000 : 0);
}

int
main(int argc, char **argv)
{
    shard_conf c = {0};
    char err[512], haddr[300];
    shard_opts so;
    rpc_server_opts ro;
    app a = {0};
    rpc_tls *tls = NULL, *repl_tls = NULL; /* the listener's; the shippers' (main_repl.c) */
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

    shard_opts_init(&so);
    so.lsm.sync_mode = (lsm_sync_mode)c.sync_mode;
    so.lsm.sync_period_ms = (uint32_t)c.sync_period;
    lsm_opts_set_memory_budget(&so.lsm, (uint64_t)c.memory_budget); /* 0 below: its share */
    so.lsm.write_buffer_size = c.write_buffer ? (size_t)c.write_buffer : so.lsm.write_buffer_size;
    so.lsm.block_cache_size = c.block_cache ? (size_t)c.block_cache : so.lsm.block_cache_size;
    so.lsm.row_cache_size = c.row_cache ? (size_t)c.row_cache : so.lsm.row_cache_size;
    so.lsm.wal_preallocate = (size_t)c.wal_preallocate;
    so.lsm.background_nice = (int)c.background_nice;
    so.max_object_size = (size_t)c.max_object_size;
    so.max_metadata_size = (size_t)c.max_metadata_size;
    so.workers = (int)c.workers;
    so.inline_reads = c.inline_reads;
    so.id = c.id;
    so.max_list_bytes = (size_t)c.max_frame / 2; /* a List page always fits in a frame */
    rpc_server_opts_init(&ro);
    ro.listen = c.listen;
    ro.max_frame = (uint32_t)c.max_frame;
    ro.max_connections = (uint32_t)c.max_connections;
    ro.idle_timeout_ms = (uint32_t)c.idle_timeout;
    ro.request_timeout_ms = (uint32_t)c.request_timeout;
    ro.token_keys_file = c.token_keys;
    if (c.list_token_secret[0] != '\0' &&
        rpc_secret_load(c.list_token_secret, so.list_secret, sizeof(so.list_secret),
                        &so.list_secret_len, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: list-token-secret: %s", err);
        goto out;
    }
    if (c.tls_cert[0] != '\0') {
        rpc_tls_opts t = {.cert_file = c.tls_cert,
                          .key_file = c.tls_key,
                          .ca_file = c.tls_ca,
                          .client_auth = c.tls_client_auth};
        if (rpc_tls_new(&t, true, &tls, err, sizeof(err)) != OM_OK) {
            om_log(OM_LOG_ERROR, "bad configuration: %s", err);
            goto out;
        }
        ro.tls = tls;
    }
    if (rpc_roles_parse(c.plaintext_roles, &ro.plaintext_roles, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: plaintext-roles: %s", err);
        goto out;
    }
    http_addr(&c, haddr, sizeof(haddr));

    a.base = event_base_new();
    if (a.base == NULL || shard_mig_new(c.id, NULL, &a.mig) != OM_OK)
        goto out;
    so.lsm.compaction_filter = shard_mig_compaction_filter; /* drops keys moved away */
    so.lsm.compaction_filter_arg = a.mig;
    if (shard_open(c.data_dir, &so, &a.sh) != OM_OK || shard_mig_attach(a.mig, a.sh) != OM_OK)
        goto out;
    shard_set_ring_check(a.sh, shard_mig_check, a.mig);
    shard_set_move_fence(a.sh, shard_mig_move_fence, a.mig);
    if (shard_conf_replication(&c, a.sh, &a.repl, &a.replica, &repl_tls) != OM_OK ||
        shard_attach_loop(a.sh, a.base) != OM_OK)
        goto out;
    if (rpc_server_new(a.base, &ro, app_handle, &a, &a.srv) != OM_OK)
        goto out;
    rpc_server_set_prefetch(a.srv, shard_rpc_prefetch, a.sh);
    if (strcmp(c.http_listen, "off") != 0 &&
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
    rpc_server_free(a.srv);
    rpc_tls_free(tls);
    shard_mig_stop(a.mig);
    shard_repl_stop(a.repl); /* a backup that never answers must not hold the exit */
    shard_replica_close(a.replica);
    if (shard_close(a.sh) != OM_OK)
        rc = 1;
    shard_repl_close(a.repl);
    rpc_tls_free(repl_tls);
    shard_mig_free(a.mig);
    if (a.base)
        event_base_free(a.base);
    om_log(rc == 0 ? OM_LOG_INFO : OM_LOG_ERROR, "exit status=%d", rc);
    om_conf_fini(&shard_table, &c);
    return rc;
}
