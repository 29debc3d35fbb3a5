/*
 * shard/loops.c -- read loops (contract: loops.h).
 *
 * Each read loop is a thread with an event_base, an adopt_only rpc server
 * and a record buffer for its inline reads. The main server's accept hook
 * (rr_accept) deals new connections out in turn. Between a read loop and
 * the main loop there are three more paths, each a list or a value under
 * `mu` plus an eventfd to wake the reader:
 *   handed-on requests   read loop -> main: a packed Request and its reply
 *                        (fwd list, fwd_fd); the main loop decodes it and
 *                        runs its handler;
 *   control              main -> read loop: "shut your server down" or
 *                        "stop now" (the loop's ctl_fd; the deadline and
 *                        stop_now are atomics);
 *   exits and counters   read loop -> main: the number of loops that stopped
 *                        (exit_fd) and each loop's rpc counters, published
 *                        every SHARD_LOOPS_STATS_MS and at its end.
 * Lock order: mu is a leaf (nothing is taken while it is held).
 */
#define OM_LOG_MODULE "shard"
#include "shard/loops.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/assert.h"
#include "util/log.h"

/* A request a read loop hands to the main loop: the Request as packed again, and its reply. */
typedef struct fwd_item {
    struct fwd_item *next;
    rpc_reply *reply;
    size_t n;
    uint8_t data[];
} fwd_item;

typedef struct read_loop {
    shard_loops *l;
    unsigned idx; /* 1.. (the main loop is 0) */
    pthread_t th;
    bool started;
    int ctl_fd;
    /* the loop's thread only */
    om_thread_owner owner;
    struct event_base *base;
    rpc_server *srv;
    struct event *ctl_ev, *stats_ev;
    om_buf read_buf;
    _Atomic uint64_t handed_on; /* requests passed to the main loop */
    /* under l->mu */
    om_status start_st;
    rpc_server_stats stats;
} read_loop;

struct shard_loops {
    shard_loops_opts o;
    rpc_server_opts ro;
    read_loop rl[SHARD_LOOPS_MAX];
    _Atomic uint32_t deadline_ms;
    atomic_bool stop_now;

    pthread_mutex_t mu;
    pthread_cond_t cv;             /* a loop started (or failed to) */
    fwd_item *fwd_head, *fwd_tail; /* under mu */
    unsigned ready, exited;        /* under mu */

    /* the main loop's thread only */
    unsigned next; /* rr_accept: the loop the next connection goes to (0 = the main one) */
    int fwd_fd, exit_fd;
    struct event *fwd_ev, *exit_ev;
    bool shutting_down, main_stopping;
    rpc_server *main_srv;
};

static void
efd_signal(int fd)
{
    uint64_t one = 1;

    while (write(fd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void
efd_drain(int fd)
{
    uint64_t v;

    while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR)
        ;
}

/* ---- a read loop's thread ---- */

static void
rl_handle(void *arg, const Objmeta__Request *req, rpc_reply *reply)
{
    read_loop *r = arg;
    shard_loops *l = r->l;
    size_t n;
    fwd_item *f;
    bool first;

    OM_ASSERT_OWNER(&r->owner);
    if (shard_rpc_read_loop_handler(l->o.sh, &r->read_buf, req, reply))
        return;
    n = objmeta__request__get_packed_size(req);
    f = malloc(sizeof(*f) + n);
    if (f == NULL) {
        rpc_reply_error(reply, OM_E_NOMEM, "out of memory");
        return;
    }
    f->next = NULL;
    f->reply = reply;
    f->n = objmeta__request__pack(req, f->data);
    OM_ASSERT(f->n == n);
    atomic_fetch_add_explicit(&r->handed_on, 1, memory_order_relaxed);
    pthread_mutex_lock(&l->mu);
    if (l->fwd_tail != NULL)
        l->fwd_tail->next = f;
    else
        l->fwd_head = f;
    l->fwd_tail = f;
    first = l->fwd_head == f; /* else the main loop has a wake-up coming for the list */
    pthread_mutex_unlock(&l->mu);
    if (first)
        efd_signal(l->fwd_fd);
}

static void
rl_publish(read_loop *r)
{
    rpc_server_stats st;

    rpc_server_get_stats(r->srv, &st);
    pthread_mutex_lock(&r->l->mu);
    r->stats = st;
    pthread_mutex_unlock(&r->l->mu);
}

static void
rl_stats_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rl_publish(arg);
}

static void
rl_ctl_cb(evutil_socket_t fd, short what, void *arg)
{
    read_loop *r = arg;

    (void)what;
    efd_drain(fd);
    if (atomic_load(&r->l->stop_now))
        event_base_loopexit(r->base, NULL);
    else /* loop exit once every connection drained (or the deadline) */
        rpc_server_shutdown(r->srv, atomic_load(&r->l->deadline_ms), NULL, NULL);
}

static om_status
rl_setup(read_loop *r)
{
    struct timeval tv = {.tv_sec = 0, .tv_usec = SHARD_LOOPS_STATS_MS * 1000};

    r->base = event_base_new();
    if (r->base == NULL)
        return OM_ERR(OM_E_NOMEM);
    OM_TRY(rpc_server_new(r->base, &r->l->ro, rl_handle, r, &r->srv));
    rpc_server_set_prefetch(r->srv, shard_rpc_prefetch, r->l->o.sh);
    r->ctl_ev = event_new(r->base, r->ctl_fd, EV_READ | EV_PERSIST, rl_ctl_cb, r);
    r->stats_ev = event_new(r->base, -1, EV_PERSIST, rl_stats_cb, r);
    if (r->ctl_ev == NULL || r->stats_ev == NULL || event_add(r->ctl_ev, NULL) != 0 ||
        event_add(r->stats_ev, &tv) != 0)
        return OM_ERR(OM_E_NOMEM);
    return OM_OK;
}

static void *
rl_main(void *arg)
{
    read_loop *r = arg;
    shard_loops *l = r->l;
    char name[16];
    om_status st;

    snprintf(name, sizeof(name), "shard-loop%u", r->idx);
    pthread_setname_np(pthread_self(), name); /* for top -H and perf */
    om_thread_owner_set(&r->owner);
    st = rl_setup(r);
    pthread_mutex_lock(&l->mu);
    r->start_st = st;
    l->ready++;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (st == OM_OK) {
        event_base_dispatch(r->base);
        rl_publish(r);
    }
    if (r->ctl_ev != NULL)
        event_free(r->ctl_ev);
    if (r->stats_ev != NULL)
        event_free(r->stats_ev);
    rpc_server_free(r->srv); /* replies the main loop still holds become no-ops */
    if (r->base != NULL)
        event_base_free(r->base);
    om_buf_free(&r->read_buf);
    pthread_mutex_lock(&l->mu);
    l->exited++;
    pthread_mutex_unlock(&l->mu);
    efd_signal(l->exit_fd);
    return NULL;
}

/* ---- the main loop's side ---- */

static fwd_item *
fwd_take(shard_loops *l)
{
    fwd_item *f;

    pthread_mutex_lock(&l->mu);
    f = l->fwd_head;
    l->fwd_head = l->fwd_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    return f;
}

static void
fwd_cb(evutil_socket_t fd, short what, void *arg)
{
    shard_loops *l = arg;

    (void)what;
    efd_drain(fd);
    for (fwd_item *f = fwd_take(l), *next; f != NULL; f = next) {
        Objmeta__Request *req = objmeta__request__unpack(NULL, f->n, f->data);

        next = f->next;
        if (req == NULL) {
            rpc_reply_error(f->reply, OM_E_NOMEM, "out of memory decoding a handed-on request");
        } else {
            l->o.handler(l->o.handler_arg, req, f->reply);
            objmeta__request__free_unpacked(req, NULL);
        }
        free(f);
    }
}

static void
maybe_done(shard_loops *l)
{
    unsigned exited;

    pthread_mutex_lock(&l->mu);
    exited = l->exited;
    pthread_mutex_unlock(&l->mu);
    if (l->shutting_down && !l->main_stopping && exited == l->o.n) {
        l->main_stopping = true; /* nothing is handed on any more: the main server's turn */
        rpc_server_shutdown(l->main_srv, atomic_load(&l->deadline_ms), NULL, NULL);
    }
}

static void
exit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    efd_drain(fd);
    maybe_done(arg);
}

/*
 * The main server's accept hook: connections go to the loops in turn. None
 * is handed over once the shutdown began (the read loops stop first).
 */
static bool
rr_accept(void *arg, int fd)
{
    shard_loops *l = arg;
    unsigned k = l->next;

    l->next = k == l->o.n ? 0 : k + 1;
    if (k == 0 || l->shutting_down)
        return false;
    rpc_server_adopt(l->rl[k - 1].srv, fd);
    return true;
}

/* Tell every started loop to act on its control values. */
static void
ctl_all(shard_loops *l)
{
    for (unsigned i = 0; i < l->o.n; i++)
        if (l->rl[i].started)
            efd_signal(l->rl[i].ctl_fd);
}

void
shard_loops_free(shard_loops *l)
{
    if (l == NULL)
        return;
    rpc_server_set_accept_hook(l->o.srv, NULL, NULL);
    atomic_store(&l->stop_now, true);
    ctl_all(l);
    for (unsigned i = 0; i < l->o.n; i++) {
        if (l->rl[i].started)
            pthread_join(l->rl[i].th, NULL);
        if (l->rl[i].ctl_fd >= 0)
            close(l->rl[i].ctl_fd);
    }
    for (fwd_item *f = fwd_take(l), *next; f != NULL; f = next) {
        next = f->next;
        rpc_reply_error(f->reply, OM_E_UNAVAILABLE, "the shard is shutting down");
        free(f);
    }
    if (l->fwd_ev != NULL)
        event_free(l->fwd_ev);
    if (l->exit_ev != NULL)
        event_free(l->exit_ev);
    if (l->fwd_fd >= 0)
        close(l->fwd_fd);
    if (l->exit_fd >= 0)
        close(l->exit_fd);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

om_status
shard_loops_start(const shard_loops_opts *o, shard_loops **out)
{
    shard_loops *l;
    unsigned nstarted = 0;
    om_status st = OM_OK;

    OM_ASSERT(o->n >= 1 && o->n <= SHARD_LOOPS_MAX);
    if ((l = calloc(1, sizeof(*l))) == NULL)
        return OM_ERR(OM_E_NOMEM);
    l->o = *o;
    l->ro = *o->ro;
    l->ro.adopt_only = true;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->fwd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    l->exit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (unsigned i = 0; i < o->n; i++)
        l->rl[i] = (read_loop){.l = l,
                               .idx = i + 1,
                               .ctl_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK),
                               .read_buf = OM_BUF_INIT};
    if (l->fwd_fd < 0 || l->exit_fd < 0) {
        st = OM_ERR(OM_E_IO);
        goto fail;
    }
    l->fwd_ev = event_new(o->base, l->fwd_fd, EV_READ | EV_PERSIST, fwd_cb, l);
    l->exit_ev = event_new(o->base, l->exit_fd, EV_READ | EV_PERSIST, exit_cb, l);
    if (l->fwd_ev == NULL || l->exit_ev == NULL || event_add(l->fwd_ev, NULL) != 0 ||
        event_add(l->exit_ev, NULL) != 0) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    for (unsigned i = 0; i < o->n; i++) {
        read_loop *r = &l->rl[i];

        if (r->ctl_fd < 0 || pthread_create(&r->th, NULL, rl_main, r) != 0) {
            st = OM_ERR(OM_E_IO);
            break;
        }
        r->started = true;
        nstarted++;
    }
    pthread_mutex_lock(&l->mu);
    while (l->ready < nstarted)
        pthread_cond_wait(&l->cv, &l->mu);
    for (unsigned i = 0; i < nstarted; i++)
        if (l->rl[i].start_st != OM_OK && st == OM_OK)
            st = l->rl[i].start_st;
    pthread_mutex_unlock(&l->mu);
    if (st != OM_OK)
        goto fail;
    rpc_server_set_accept_hook(o->srv, rr_accept, l);
    om_log(OM_LOG_INFO, "read loops serving listen=%s loops=%u", l->ro.listen, o->n + 1);
    *out = l;
    return OM_OK;
fail:
    om_log(OM_LOG_ERROR, "read loops did not start listen=%s status=%s", l->ro.listen,
           om_status_str(st));
    shard_loops_free(l);
    return st;
}

void
shard_loops_shutdown(shard_loops *l, rpc_server *main_srv, uint32_t deadline_ms)
{
    if (l == NULL) {
        rpc_server_shutdown(main_srv, deadline_ms, NULL, NULL);
        return;
    }
    if (l->shutting_down)
        return;
    l->shutting_down = true;
    l->main_srv = main_srv;
    atomic_store(&l->deadline_ms, deadline_ms);
    ctl_all(l);
    maybe_done(l);
}

void
shard_loops_add_stats(shard_loops *l, rpc_server_stats *st)
{
    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    for (unsigned i = 0; i < l->o.n; i++)
        rpc_server_stats_add(st, &l->rl[i].stats);
    pthread_mutex_unlock(&l->mu);
}

static om_status
loop_series(om_buf *out, const char *name, unsigned loop, uint64_t v)
{
    char labels[32];

    snprintf(labels, sizeof(labels), "loop=\"%u\"", loop);
    return rpc_prom_value(out, name, labels, (double)v);
}

om_status
shard_loops_render_metrics(shard_loops *l, const rpc_server_stats *main, om_buf *out)
{
    static const char *const names[3] = {"objmeta_shard_loop_requests_total",
                                         "objmeta_shard_loop_connections",
                                         "objmeta_shard_loop_handed_on_total"};
    static const char *const types[3] = {"counter", "gauge", "counter"};
    static const char *const helps[3] = {
        "requests decoded by each network loop (loop 0 runs writes and everything but reads)",
        "connections open on each network loop",
        "requests a read loop passed to loop 0 (all but retrieve, head and exists)"};
    unsigned n = l != NULL ? l->o.n : 0;
    rpc_server_stats st[SHARD_LOOPS_MAX + 1];
    uint64_t handed[SHARD_LOOPS_MAX + 1] = {0};

    st[0] = *main;
    if (l != NULL) {
        pthread_mutex_lock(&l->mu);
        for (unsigned i = 0; i < n; i++)
            st[i + 1] = l->rl[i].stats;
        pthread_mutex_unlock(&l->mu);
        for (unsigned i = 0; i < n; i++)
            handed[i + 1] = atomic_load_explicit(&l->rl[i].handed_on, memory_order_relaxed);
    }
    for (int m = 0; m < 3; m++) {
        OM_TRY(rpc_prom_header(out, names[m], types[m], helps[m]));
        for (unsigned i = 0; i <= n; i++)
            OM_TRY(loop_series(out, names[m], i,
                               m == 0   ? st[i].requests_total
                               : m == 1 ? st[i].connections_current
                                        : handed[i]));
    }
    return OM_OK;
}
