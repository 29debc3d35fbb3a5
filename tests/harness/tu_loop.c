/*
 * tests/harness/tu_loop.c -- an event_base dispatched on a thread of its own
 * (tu.h, tu_loop_start): the in-process servers of the unit and rpc suites.
 * The loop polls a stop flag every 2 ms from a timer, so stopping it needs
 * no other wake-up, and the thread that stops it joins it.
 */
#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "tu.h"

struct tu_loop {
    struct event_base *base;
    struct event *tick;
    atomic_bool stop;
    pthread_t th;
};

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
    tu_loop *l = arg;

    (void)fd;
    (void)what;
    if (atomic_load(&l->stop))
        event_base_loopbreak(l->base);
}

static void *
loop_main(void *arg)
{
    event_base_dispatch(((tu_loop *)arg)->base);
    return NULL;
}

tu_loop *
tu_loop_start(struct event_base *base)
{
    tu_loop *l = calloc(1, sizeof(*l));
    struct timeval tv = {0, 2000};

    ck_assert_ptr_nonnull(l);
    l->base = base;
    atomic_init(&l->stop, false);
    l->tick = event_new(base, -1, EV_PERSIST, tick_cb, l);
    ck_assert_ptr_nonnull(l->tick);
    ck_assert_int_eq(event_add(l->tick, &tv), 0);
    ck_assert_int_eq(pthread_create(&l->th, NULL, loop_main, l), 0);
    return l;
}

void
tu_loop_stop(tu_loop *l)
{
    if (l == NULL)
        return;
    atomic_store(&l->stop, true);
    pthread_join(l->th, NULL);
    event_free(l->tick);
    free(l);
}
