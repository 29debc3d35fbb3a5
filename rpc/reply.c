/*
 * rpc/reply.c -- the answer to one request (rpc_reply), from the moment
 * conn_process hands it to the handler until its frame is in the
 * connection's output: the reply's life (a small loop-thread pool, the
 * connection's in-flight list, the completion queue's reference) and the
 * public rpc_reply_* API.
 *
 * Replies answered on the loop thread are packed straight into the
 * bufferevent's output; replies from other threads are packed there into
 * reply->frame and arrive through the server's completion queue
 * (reply_enqueue; rpc_int.h explains the scheme), which the loop hands to
 * rpc_conn_deliver_frame. A reply whose connection is gone (conn == NULL) or
 * whose server is shutting down (cq dead) is freed, its answer dropped.
 * Already encoded answers (a forwarded Response, a fast-path packed one) are
 * re-addressed to the reply's id while they are copied into the frame
 * (rpc_reply_send_encoded, rpc_reply_send_packed).
 *
 * Thread-safety: rpc_reply_send* and rpc_reply_error from any thread, once
 * per reply; rpc_reply_new and rpc_reply_unlink on the loop thread only.
 * Ownership: the handler owns a reply from dispatch until it answers; the
 * answer consumes it.
 */
#define OM_LOG_MODULE "rpc"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc/frame.h"
#include "rpc/rpc_int.h"
#include "util/assert.h"
#include "util/coding.h"
#include "util/log.h"

static void reply_enqueue(rpc_reply *r);

/* Take a reply off its connection's in-flight list (it becomes orphaned). */
void
rpc_reply_unlink(rpc_reply *r)
{
    rpc_conn *c = r->conn;

    if (c == NULL)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->in_head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        c->in_tail = r->prev;
    r->prev = r->next = NULL;
    r->conn = NULL;
    c->ninflight--;
    c->srv->st.requests_inflight--;
}

static void
cq_unref(rpc_cq *q)
{
    if (atomic_fetch_sub(&q->refs, 1) == 1) {
        pthread_mutex_destroy(&q->mu);
        free(q);
    }
}

void
rpc_reply_destroy(rpc_reply *r)
{
    rpc_cq *q = r->cq;

    free(r->frame);
    /*
     * The pool and n_pool belong to the loop thread, and it writes dead (rpc_server_free):
     * another thread must not read them here, without the mutex, so the thread goes first.
     */
    if (pthread_equal(pthread_self(), q->loop_thread) && q->n_pool < RPC_REPLY_POOL && !q->dead) {
        r->qnext = q->pool;
        q->pool = r;
        q->n_pool++;
    } else {
        free(r);
    }
    cq_unref(q);
}

rpc_reply *
rpc_reply_new(rpc_conn *c, uint64_t id, uint64_t now_ns)
{
    rpc_cq *q = c->srv->cq;
    rpc_reply *r = q->pool;

    if (r != NULL) {
        q->pool = r->qnext;
        q->n_pool--;
        memset(r, 0, sizeof(*r));
    } else if ((r = calloc(1, sizeof(*r))) == NULL) {
        return NULL;
    }
    r->cq = q;
    atomic_fetch_add(&r->cq->refs, 1);
    r->id = id;
    r->start_ns = now_ns;
    r->start_ms = now_ns / 1000000u;
    r->conn = c;
    r->prev = c->in_tail;
    if (c->in_tail != NULL)
        c->in_tail->next = r;
    else
        c->in_head = r;
    c->in_tail = r;
    c->ninflight++;
    c->srv->st.requests_inflight++;
    return r;
}

/* ------------------------------------------------------------------------ */
/* Public reply API                                                           */

uint64_t
rpc_reply_id(const rpc_reply *reply)
{
    return reply->id;
}

uint64_t
rpc_reply_start_ns(const rpc_reply *reply)
{
    return reply->start_ns;
}

/* Pack resp (with the reply's id) into a heap frame on a non-loop thread. */
static void
reply_pack_offloop(rpc_reply *r, const Objmeta__Response *resp, uint32_t max_frame)
{
    om_buf b = OM_BUF_INIT;
    om_status st = rpc_frame_encode(&b, &resp->base, max_frame);

    if (st == OM_E_INVALID) {
        char msg[128];
        Objmeta__Response e = OBJMETA__RESPONSE__INIT;
        snprintf(msg, sizeof(msg), "response too large (%zu bytes, max_frame %u)",
                 protobuf_c_message_get_packed_size(&resp->base), max_frame);
        om_log(OM_LOG_WARN, "%s id=%llu", msg, (unsigned long long)resp->id);
        e.id = resp->id;
        e.status = OBJMETA__STATUS__INTERNAL;
        e.message = msg;
        st = rpc_frame_encode(&b, &e.base, max_frame);
    }
    if (st != OM_OK) {
        om_buf_free(&b);
        return; /* frame stays NULL: the loop answers INTERNAL */
    }
    r->frame = om_buf_take(&b, &r->frame_len);
}

void
rpc_reply_send(rpc_reply *r, const Objmeta__Response *resp)
{
    rpc_cq *q = r->cq;
    Objmeta__Response copy = *resp;

    copy.id = r->id;
    if (copy.message == NULL)
        copy.message = (char *)protobuf_c_empty_string;
    reqlog_answered(r, copy.status, copy.message, strlen(copy.message));
    if (pthread_equal(pthread_self(), q->loop_thread)) {
        /* Loop thread: q->dead and r->conn are only written here. */
        rpc_conn *c = r->conn;
        if (!q->dead && c != NULL) {
            rpc_reply_unlink(r);
            rpc_conn_queue_response(c, &copy);
            rpc_reply_destroy(r);
            rpc_conn_flow(c);
            return;
        }
        rpc_reply_destroy(r);
        return;
    }
    reply_pack_offloop(r, &copy, q->max_frame);
    reply_enqueue(r);
}

/* Queue a reply packed off the loop (r->frame) for the loop thread. */
static void
reply_enqueue(rpc_reply *r)
{
    rpc_cq *q = r->cq;

    pthread_mutex_lock(&q->mu);
    if (q->dead) {
        pthread_mutex_unlock(&q->mu);
        rpc_reply_destroy(r);
        return;
    }
    r->qnext = NULL;
    if (q->tail != NULL)
        q->tail->qnext = r;
    else
        q->head = r;
    q->tail = r;
    if (!q->wake_pending) {
        uint64_t one = 1;
        q->wake_pending = true;
        /* Under the mutex: the server closes efd only after marking the cq dead. */
        ssize_t w = write(q->efd, &one, sizeof(one));
        (void)w; /* EAGAIN means the counter is already non-zero: the loop will wake */
    }
    pthread_mutex_unlock(&q->mu);
}

/*
 * The frame (header included) for an encoded response re-addressed to id,
 * into dst (room for *total bytes, from reply_encoded_size).
 */
static om_status
reply_encoded_size(const uint8_t *p, size_t n, uint64_t id, uint32_t max_frame, size_t *total)
{
    size_t len = 0;

    OM_TRY(rpc_frame_id_rewrite_len(p, n, id, &len));
    if (len > max_frame)
        return OM_ERR(OM_E_INVALID);
    *total = RPC_FRAME_HEADER_LEN + len;
    return OM_OK;
}

/* Writes a reply's whole frame (total bytes, header included) into dst. */
typedef void (*reply_frame_fn)(uint8_t *dst, uint64_t id, const uint8_t *p, size_t n, size_t total);

static void
reply_encoded_write(uint8_t *dst, uint64_t id, const uint8_t *p, size_t n, size_t total)
{
    om_put_be32(dst, (uint32_t)(total - RPC_FRAME_HEADER_LEN));
    size_t w = rpc_frame_id_rewrite(p, n, id, dst + RPC_FRAME_HEADER_LEN);
    OM_ASSERT(w == total - RPC_FRAME_HEADER_LEN);
    (void)w;
}

/* The frame of a Response packed with id 0, with `id` put in front (total bytes). */
static void
packed_frame_write(uint8_t *dst, uint64_t id, const uint8_t *p, size_t n, size_t total)
{
    om_put_be32(dst, (uint32_t)(total - RPC_FRAME_HEADER_LEN));
    dst += RPC_FRAME_HEADER_LEN;
    if (id != 0) {
        *dst++ = 0x08; /* field 1 (id), varint */
        dst = om_encode_varint64(dst, id);
    }
    if (n > 0)
        memcpy(dst, p, n);
}

/*
 * Send r's frame of total bytes that write() makes from (p, n): on the loop
 * thread straight into the connection's output, from another thread through
 * the completion queue.
 */
static void
reply_deliver(rpc_reply *r, const uint8_t *p, size_t n, size_t total, reply_frame_fn write)
{
    rpc_cq *q = r->cq;

    if (pthread_equal(pthread_self(), q->loop_thread)) {
        rpc_conn *c = r->conn;
        struct evbuffer_iovec v;
        if (q->dead || c == NULL) {
            rpc_reply_destroy(r);
            return;
        }
        rpc_reply_unlink(r);
        if (evbuffer_reserve_space(rpc_conn_out(c), (ev_ssize_t)total, &v, 1) == 1 &&
            v.iov_len >= total) {
            write(v.iov_base, r->id, p, n, total);
            v.iov_len = total;
            if (evbuffer_commit_space(rpc_conn_out(c), &v, 1) == 0) {
                c->srv->st.responses_total++;
                c->srv->st.bytes_out += total;
                rpc_conn_mark_dirty(c);
            }
        } else {
            om_log(OM_LOG_ERROR, "cannot queue response peer=%s id=%llu", c->peer,
                   (unsigned long long)r->id);
        }
        rpc_reply_destroy(r);
        rpc_conn_flow(c);
        return;
    }
    /* Another thread: the frame travels through the completion queue. */
    r->frame = malloc(total);
    if (r->frame != NULL) {
        write(r->frame, r->id, p, n, total);
        r->frame_len = total;
    }
    reply_enqueue(r);
}

void
rpc_reply_send_encoded(rpc_reply *r, const uint8_t *p, size_t n)
{
    rpc_cq *q = r->cq;
    size_t total = 0;
    om_status st = reply_encoded_size(p, n, r->id, q->max_frame, &total);

    if (st != OM_OK) {
        om_log(OM_LOG_WARN, "cannot forward an encoded response id=%llu bytes=%zu err=%s",
               (unsigned long long)r->id, n, om_status_str(st));
        rpc_reply_error(r, OM_E_INTERNAL, "%s",
                        st == OM_E_INVALID ? "response too large"
                                           : "undecodable response to forward");
        return;
    }
    reqlog_answered_encoded(r, p, n);
    reply_deliver(r, p, n, total, reply_encoded_write);
}

void
rpc_reply_send_packed(rpc_reply *r, const uint8_t *p, size_t n)
{
    rpc_cq *q = r->cq;
    size_t idlen = r->id != 0 ? 1 + om_varint_len(r->id) : 0;
    size_t total = RPC_FRAME_HEADER_LEN + idlen + n;

    if (total - RPC_FRAME_HEADER_LEN > q->max_frame) {
        rpc_reply_error(r, OM_E_INTERNAL, "response too large (%zu bytes, max_frame %u)",
                        total - RPC_FRAME_HEADER_LEN, q->max_frame);
        return;
    }
    reqlog_answered_encoded(r, p, n);
    reply_deliver(r, p, n, total, packed_frame_write);
}

void
rpc_reply_error(rpc_reply *reply, om_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    resp.status = rpc_status_to_proto(st);
    resp.message = msg;
    rpc_reply_send(reply, &resp);
}
