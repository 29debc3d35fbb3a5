/*
 * util/workq.c -- the worker pool of util/workq.h: one mutex guards the FIFO
 * and the stop flag; idle threads wait on one condition variable. A thread
 * takes the head job, drops the lock and runs it, so a long job never holds
 * up a push. Stopping sets the flag and wakes everyone; a thread exits once
 * the queue is empty (drain) or at once (cancel: the closer took the queue).
 */
#define OM_LOG_MODULE "workq"
#include "util/workq.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct workq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    workq_item *head, *tail; /* under mu */
    size_t len, max_len;     /* under mu */
    bool stop;               /* under mu */
    workq_fn run;
    void *arg;
    char name[16];
    pthread_t *th;
    int nth;
};

static void *
workq_main(void *arg)
{
    workq *q = arg;

    pthread_setname_np(pthread_self(), q->name); /* for top -H and perf */
    pthread_mutex_lock(&q->mu);
    for (;;) {
        workq_item *it;

        while (q->head == NULL && !q->stop)
            pthread_cond_wait(&q->cv, &q->mu);
        if (q->head == NULL)
            break; /* stopping and drained */
        it = q->head;
        q->head = it->next;
        if (q->head == NULL)
            q->tail = NULL;
        q->len--;
        pthread_mutex_unlock(&q->mu);
        it->next = NULL;
        q->run(q->arg, it);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

om_status
workq_open(const char *name, int threads, size_t max_len, workq_fn run, void *arg, workq **out)
{
    workq *q = calloc(1, sizeof(*q));

    if (q == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (threads < 1)
        threads = 1;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    q->max_len = max_len > 0 ? max_len : 1;
    q->run = run;
    q->arg = arg;
    snprintf(q->name, sizeof(q->name), "%s", name != NULL ? name : "workq");
    q->th = calloc((size_t)threads, sizeof(*q->th));
    if (q->th == NULL)
        goto fail;
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&q->th[i], NULL, workq_main, q) != 0) {
            om_log(OM_LOG_ERROR, "cannot start a thread name=%s index=%d", q->name, i);
            goto fail;
        }
        q->nth++;
    }
    *out = q;
    return OM_OK;
fail:
    workq_close(q, NULL);
    return OM_ERR(OM_E_NOMEM);
}

om_status
workq_push(workq *q, workq_item *it)
{
    om_status st = OM_OK;

    pthread_mutex_lock(&q->mu);
    if (q->stop) {
        st = OM_E_UNAVAILABLE;
    } else if (q->len >= q->max_len) {
        st = OM_E_BUSY;
    } else {
        it->next = NULL;
        if (q->tail != NULL)
            q->tail->next = it;
        else
            q->head = it;
        q->tail = it;
        q->len++;
        pthread_cond_signal(&q->cv);
    }
    pthread_mutex_unlock(&q->mu);
    return st;
}

size_t
workq_len(workq *q)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void
workq_close(workq *q, workq_fn cancel)
{
    workq_item *left = NULL;

    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    if (cancel != NULL) {
        left = q->head;
        q->head = q->tail = NULL;
        q->len = 0;
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    while (left != NULL) {
        workq_item *next = left->next;

        left->next = NULL;
        cancel(q->arg, left);
        left = next;
    }
    for (int i = 0; i < q->nth; i++)
        pthread_join(q->th[i], NULL);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q->th);
    free(q);
}
