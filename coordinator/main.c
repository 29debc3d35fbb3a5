/*
 * coordinator/main.c -- objmeta-coord: parse the config table, open the
 * coordinator on one libevent loop, write the port file once every shard
 * is up (or the start-up wait is over), and shut down gracefully on
 * SIGTERM/SIGINT: stop accepting, answer requests in flight, exit 0.
 *
 * http-listen "auto" means the host of `listen` with port listen+1000
 * (7000 -> 8000), or port 0 when listen's port is 0; "off" disables HTTP.
 */
#define OM_LOG_MODULE "main"
#include <event2/event.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord.h"
#include "coordinator/main_conf.h"
#include "rpc/rpc.h"
#include "util/conf.h"
#include "util/log.h"

typedef struct app {
    coord *c;
    struct event_base *base;
    const char *port_file;
    int rc;
} app;

static void
app_ready(void *arg)
{
    app *a = arg;
    const char *names[2] = {"rpc", "http"};
    int ports[2] = {coord_rpc_port(a->c), coord_http_port(a->c)};

    if (a->port_file[0] != '\0' &&
        rpc_port_file_write(a->port_file, names, ports, ports[1] ? 2 : 1) != OM_OK) {
        a->rc = 1;
        event_base_loopexit(a->base, NULL);
        return;
    }
    om_log(OM_LOG_INFO, "serving rpc_port=%d http_port=%d", ports[0], ports[1]);
}

static void
app_on_signal(evutil_socket_t sig, short what, void *arg)
{
    app *a = arg;

    om_log(OM_LOG_INFO, "shutting down signal=%d", (int)sig);
    coord_shutdown(a->c, 10000, NULL, NULL); /* NULL done: rpc exits the loop */
}

int
main(int argc, char **argv)
{
    coord_conf cf = {0};
    char err[512], haddr[300];
    coord_opts o;
    app a = {0};
    struct event *sigs[2] = {NULL, NULL};
    int rc = om_conf_main_load(&coord_table, &cf, argc, argv);

    if (rc != OM_CONF_MAIN_RUN)
        return rc;
    om_log_setup((om_log_level)cf.log_level, (om_log_format)cf.log_format);
    rpc_init_logging();
    signal(SIGPIPE, SIG_IGN);

    coord_conf_opts(&cf, &o, haddr, sizeof(haddr));
    a.port_file = cf.port_file;
    a.rc = 1;

    if ((a.base = event_base_new()) == NULL)
        goto out;
    if (coord_open(a.base, &o, app_ready, &a, &a.c, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "cannot start: %s", err);
        goto out;
    }
    sigs[0] = evsignal_new(a.base, SIGTERM, app_on_signal, &a);
    sigs[1] = evsignal_new(a.base, SIGINT, app_on_signal, &a);
    if (!sigs[0] || !sigs[1] || event_add(sigs[0], NULL) || event_add(sigs[1], NULL))
        goto out;
    a.rc = 0;
    event_base_dispatch(a.base);
out:
    for (int i = 0; i < 2; i++)
        if (sigs[i])
            event_free(sigs[i]);
    coord_close(a.c);
    if (a.base)
        event_base_free(a.base);
    om_log(a.rc == 0 ? OM_LOG_INFO : OM_LOG_ERROR, "exit status=%d", a.rc);
    om_conf_fini(&coord_table, &cf);
    return a.rc;
}
