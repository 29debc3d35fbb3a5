/*
 * rpc/prom.c -- Prometheus text exposition helpers: the fixed-bucket latency
 * histogram shared by shard and coordinator (rpc_hist), HELP/TYPE headers,
 * single values, and the rpc server's own counters.
 *
 * Buckets are a 1-2-5 series of upper bounds from 10 us to 10 s; an
 * observation goes to the first bucket whose bound it does not exceed, the
 * rest to +Inf. Buckets are stored non-cumulative (one atomic increment per
 * observation) and summed when rendered, so an observation racing a render
 * may show in _count but not yet in a bucket -- never the reverse within one
 * bucket, and never a torn value.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rpc/rpc_int.h"

static const uint64_t hist_bounds_us[RPC_HIST_BOUNDS] = {
    10,    20,    50,     100,    200,    500,     1000,    2000,    5000,     10000,
    20000, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000,
};

void
rpc_hist_init(rpc_hist *h)
{
    for (unsigned i = 0; i <= RPC_HIST_BOUNDS; i++)
        atomic_init(&h->bucket[i], 0);
    atomic_init(&h->count, 0);
    atomic_init(&h->sum_ns, 0);
}

uint64_t
rpc_hist_bound_us(unsigned i)
{
    return i < RPC_HIST_BOUNDS ? hist_bounds_us[i] : UINT64_MAX;
}

void
rpc_hist_observe_ns(rpc_hist *h, uint64_t ns)
{
    unsigned i = 0;

    /* 19 bounds: a linear scan beats a search at this size. */
    while (i < RPC_HIST_BOUNDS && ns > hist_bounds_us[i] * 1000u)
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

uint64_t
rpc_hist_quantile_us(const rpc_hist *h, double q)
{
    uint64_t counts[RPC_HIST_BOUNDS + 1];
    uint64_t total = 0;

    for (unsigned i = 0; i <= RPC_HIST_BOUNDS; i++) {
        counts[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        total += counts[i];
    }
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)total + 0.5);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < RPC_HIST_BOUNDS; i++) {
        seen += counts[i];
        if (seen >= rank)
            return hist_bounds_us[i];
    }
    return UINT64_MAX;
}

static const char *
prom_sep(const char *labels)
{
    return labels != NULL && labels[0] != '\0' ? "," : "";
}

om_status
rpc_hist_render(const rpc_hist *h, om_buf *out, const char *name, const char *labels)
{
    uint64_t cum = 0;
    const char *l = labels != NULL ? labels : "";

    for (unsigned i = 0; i <= RPC_HIST_BOUNDS; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < RPC_HIST_BOUNDS)
            OM_TRY(om_buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, l,
                                 prom_sep(l), (double)hist_bounds_us[i] / 1e6, cum));
        else
            OM_TRY(om_buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, l,
                                 prom_sep(l), cum));
    }
    double sum_s = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
    if (l[0] != '\0') {
        OM_TRY(om_buf_printf(out, "%s_sum{%s} %.9g\n", name, l, sum_s));
        OM_TRY(om_buf_printf(out, "%s_count{%s} %" PRIu64 "\n", name, l, cum));
    } else {
        OM_TRY(om_buf_printf(out, "%s_sum %.9g\n", name, sum_s));
        OM_TRY(om_buf_printf(out, "%s_count %" PRIu64 "\n", name, cum));
    }
    return OM_OK;
}

om_status
rpc_prom_header(om_buf *out, const char *name, const char *type, const char *help)
{
    return om_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

om_status
rpc_prom_value(om_buf *out, const char *name, const char *labels, double value)
{
    if (labels != NULL && labels[0] != '\0')
        return om_buf_printf(out, "%s{%s} %.17g\n", name, labels, value);
    return om_buf_printf(out, "%s %.17g\n", name, value);
}

typedef struct server_metric {
    const char *name;
    const char *type;
    const char *help;
    size_t offset;
} server_metric;

#define SM(n, t, h, f)                                                                             \
    {                                                                                              \
        n, t, h, offsetof(rpc_server_stats, f)                                                     \
    }

static const server_metric server_metrics[] = {
    SM("objmeta_rpc_connections", "gauge", "Open client connections.", connections_current),
    SM("objmeta_rpc_connections_total", "counter", "Connections accepted.", connections_total),
    SM("objmeta_rpc_connections_rejected_total", "counter",
       "Connections refused over max_connections.", connections_rejected),
    SM("objmeta_rpc_requests_total", "counter", "Requests decoded.", requests_total),
    SM("objmeta_rpc_requests_inflight", "gauge", "Requests being handled.", requests_inflight),
    SM("objmeta_rpc_responses_total", "counter", "Responses queued.", responses_total),
    SM("objmeta_rpc_protocol_errors_total", "counter",
       "Oversize frames, undecodable messages, unknown operations.", protocol_errors),
    SM("objmeta_rpc_slow_closes_total", "counter",
       "Connections closed because they queued more than out_hard_limit unread answer bytes.",
       slow_closes),
    SM("objmeta_rpc_accept_pauses_total", "counter",
       "Times accepting paused because the process ran out of file descriptors.", accept_pauses),
    SM("objmeta_rpc_requests_denied_total", "counter",
       "Requests refused UNAUTHENTICATED or PERMISSION_DENIED (roles, rpc/auth.c).",
       requests_denied),
    SM("objmeta_rpc_request_timeouts_total", "counter", "Requests answered TIMEOUT by the server.",
       request_timeouts),
    SM("objmeta_rpc_idle_closes_total", "counter", "Connections closed as idle.", idle_closes),
    SM("objmeta_rpc_backpressure_pauses_total", "counter",
       "Times reading a connection paused for backpressure.", backpressure_pauses),
    SM("objmeta_rpc_received_bytes_total", "counter", "Request bytes received.", bytes_in),
    SM("objmeta_rpc_sent_bytes_total", "counter", "Response bytes queued for sending.", bytes_out),
    SM("objmeta_rpc_queued_bytes", "gauge", "Response bytes waiting in output buffers.",
       bytes_queued),
    SM("objmeta_rpc_buffered_bytes", "gauge", "Request bytes read and not yet dispatched.",
       bytes_buffered),
};

om_status
rpc_server_render_metrics(const rpc_server *s, om_buf *out)
{
    rpc_server_stats st;

    rpc_server_get_stats(s, &st);
    return rpc_server_render_stats(&st, out);
}

om_status
rpc_server_render_stats(const rpc_server_stats *st, om_buf *out)
{
    for (size_t i = 0; i < sizeof(server_metrics) / sizeof(server_metrics[0]); i++) {
        const server_metric *m = &server_metrics[i];
        uint64_t v;
        memcpy(&v, (const char *)st + m->offset, sizeof(v));
        OM_TRY(rpc_prom_header(out, m->name, m->type, m->help));
        OM_TRY(om_buf_printf(out, "%s %" PRIu64 "\n", m->name, v));
    }
    return OM_OK;
}

/* --- process metrics ------------------------------------------------------------------------- */

/* The boot time in seconds since the epoch ("btime" of /proc/stat), 0 if unknown. */
static uint64_t
prom_boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    char line[256];
    unsigned long long bt = 0;

    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* Entries of /proc/self/fd (minus the one opendir uses), -1 if unknown. */
static long
prom_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    long n = 0;

    if (d == NULL)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

om_status
rpc_prom_process(om_buf *out)
{
    char buf[1024], labels[160];
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    struct rlimit rl;
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    const char *p;
    bool have_stat;

    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    /* fields 14-15 (utime, stime), 22-24 (starttime, vsize, rss) after "pid (comm)" */
    p = strrchr(buf, ')');
    have_stat = p != NULL && sscanf(p + 2,
                                    "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
                                    "%*d %*d %*d %*d %llu %llu %lld",
                                    &utime, &stime, &start, &vsize, &rss) == 5;
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (have_stat && tck > 0 && page > 0) {
        uint64_t boot = prom_boot_time();
        OM_TRY(rpc_prom_header(out, "process_cpu_seconds_total", "counter",
                               "Total user and system CPU time spent in seconds."));
        OM_TRY(rpc_prom_value(out, "process_cpu_seconds_total", NULL,
                              (double)(utime + stime) / (double)tck));
        OM_TRY(rpc_prom_header(out, "process_resident_memory_bytes", "gauge",
                               "Resident memory size in bytes."));
        OM_TRY(
            rpc_prom_value(out, "process_resident_memory_bytes", NULL, (double)rss * (double)page));
        OM_TRY(rpc_prom_header(out, "process_virtual_memory_bytes", "gauge",
                               "Virtual memory size in bytes."));
        OM_TRY(rpc_prom_value(out, "process_virtual_memory_bytes", NULL, (double)vsize));
        if (boot > 0) {
            OM_TRY(rpc_prom_header(out, "process_start_time_seconds", "gauge",
                                   "Start time of the process since unix epoch in seconds."));
            OM_TRY(rpc_prom_value(out, "process_start_time_seconds", NULL,
                                  (double)boot + (double)start / (double)tck));
        }
    }
    long fds = prom_open_fds();
    if (fds >= 0) {
        OM_TRY(
            rpc_prom_header(out, "process_open_fds", "gauge", "Number of open file descriptors."));
        OM_TRY(rpc_prom_value(out, "process_open_fds", NULL, (double)fds));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        OM_TRY(rpc_prom_header(out, "process_max_fds", "gauge",
                               "Maximum number of open file descriptors."));
        OM_TRY(rpc_prom_value(out, "process_max_fds", NULL, (double)rl.rlim_cur));
    }
    snprintf(labels, sizeof(labels), "version=\"%s\",binary=\"%s\"", OM_VERSION,
             program_invocation_short_name);
    OM_TRY(rpc_prom_header(out, "objmeta_build_info", "gauge",
                           "Always 1; the labels name the version and the binary."));
    return rpc_prom_value(out, "objmeta_build_info", labels, 1);
}
