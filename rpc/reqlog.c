/*
 * rpc/reqlog.c -- request ids, and the one log line each request gets when
 * it is answered.
 *
 * Request ids. A Request may carry a request_id (rpc.h gives its rule; the
 * wire check has enforced it before anything here runs). The reply keeps a
 * copy, so that whoever answers -- on any thread, long after rpc freed the
 * Request -- can log it (rpc_reply_request_id) and pass it on. A server
 * with make_request_ids (the coordinator) gives a request that came
 * without one an id of its own: "<tag>-<n>", a random 32-bit tag chosen
 * when the server starts and a counter, so ids from two coordinators or
 * two runs of one do not collide in practice. The coordinator copies the id
 * into every request it sends to shards for the client's request, and the
 * shards' lines carry the same id.
 *
 * The line. When the answer leaves (rpc_reply_send and its encoded and
 * packed variants), reqlog_answered writes one line:
 *
 *   request op=store id=17 status=OK ms=0.412 rid=5f3a9c21-2a
 *
 * at DEBUG for an answer (OK, NOT_FOUND, INVALID_ARGUMENT, ... -- the
 * client's business), and at WARN, as "request failed", for the answers that
 * mean this server or one behind it is in trouble (UNAVAILABLE, BUSY,
 * CORRUPTION, INTERNAL, TIMEOUT), or as "slow request" when the answer took
 * slow_request_ms or more. Error answers carry their message (msg="...").
 * The request id goes in as its own field (om_log_rid: rid= in text,
 * "request_id" in JSON). WARN lines are limited to REQLOG_WARN_PER_SEC a
 * second per server (a shard that is down fails every request routed to
 * it); the lines left out are counted and the count is logged with the
 * next line that passes. Timing: the clock is read once per answer; the
 * start is the batch time rpc read the request at (reply.c).
 *
 * Thread-safety: reqlog_answered from any thread (it reads only what is
 * immutable after dispatch, and atomics); rpc_reply_take_request on the
 * loop thread.
 */
#define OM_LOG_MODULE "rpc"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rpc/rpc_int.h"
#include "util/assert.h"
#include "util/clock.h"
#include "util/coding.h"
#include "util/log.h"

#define REQLOG_WARN_PER_SEC 50u

void
rpc_cq_reqlog_init(rpc_cq *q, uint32_t slow_request_ms, bool make_ids)
{
    uint32_t tag = 0;

    q->slow_ns = (uint64_t)slow_request_ms * 1000000u;
    q->make_ids = make_ids;
    if (getrandom(&tag, sizeof(tag), GRND_NONBLOCK) != (ssize_t)sizeof(tag))
        tag = (uint32_t)om_clock_mono_ns() ^ ((uint32_t)getpid() << 16) ^ (uint32_t)time(NULL);
    snprintf(q->id_tag, sizeof(q->id_tag), "%08x", tag);
}

/* "<tag>-<seq in hex>" into r->rid: what snprintf "%s-%llx" wrote, at a
 * tenth of its cost (it ran for every request a coordinator forwards). */
static void
reqlog_make_id(const rpc_cq *q, uint64_t seq, char *out, size_t cap)
{
    static const char digits[] = "0123456789abcdef";
    char hex[16];
    size_t t = strlen(q->id_tag), h = 0;

    do {
        hex[h++] = digits[seq & 0xf];
        seq >>= 4;
    } while (seq != 0);
    OM_ASSERT(t + 1 + h < cap);
    memcpy(out, q->id_tag, t);
    out[t++] = '-';
    while (h > 0)
        out[t++] = hex[--h];
    out[t] = '\0';
}

void
rpc_reply_take_request(rpc_reply *r, const Objmeta__Request *req)
{
    rpc_cq *q = r->cq;
    size_t n = req->request_id != NULL ? strlen(req->request_id) : 0;

    r->op = (uint32_t)req->body_case;
    if (n > 0) {
        if (n > RPC_REQUEST_ID_MAX)
            n = RPC_REQUEST_ID_MAX; /* the wire check refused longer ones already */
        memcpy(r->rid, req->request_id, n);
        r->rid[n] = '\0';
    } else if (q->make_ids) {
        reqlog_make_id(q, ++q->id_seq, r->rid, sizeof(r->rid));
    } else {
        r->rid[0] = '\0';
    }
}

const char *
rpc_reply_request_id(const rpc_reply *reply)
{
    return reply->rid;
}

const char *
rpc_op_name(uint32_t op)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field(&objmeta__request__descriptor, op);

    return f != NULL ? f->name : "?";
}

/* The answers that say this server (or one behind it) is in trouble. */
static bool
reqlog_is_failure(Objmeta__Status s)
{
    switch (s) {
    case OBJMETA__STATUS__UNAVAILABLE:
    case OBJMETA__STATUS__BUSY:
    case OBJMETA__STATUS__CORRUPTION:
    case OBJMETA__STATUS__INTERNAL:
    case OBJMETA__STATUS__TIMEOUT:
        return true;
    default:
        return false;
    }
}

/* Whether a WARN line may go out this second; *dropped gets the lines left out before it. */
static bool
reqlog_warn_allowed(rpc_cq *q, uint64_t now_ns, uint64_t *dropped)
{
    uint64_t sec = now_ns / 1000000000u, cur = atomic_load(&q->warn_sec);

    if (sec != cur && atomic_compare_exchange_strong(&q->warn_sec, &cur, sec))
        atomic_store(&q->warn_n, 0);
    if (atomic_fetch_add(&q->warn_n, 1) >= REQLOG_WARN_PER_SEC) {
        atomic_fetch_add(&q->warn_dropped, 1);
        return false;
    }
    *dropped = atomic_exchange(&q->warn_dropped, 0);
    return true;
}

void
reqlog_answered(rpc_reply *r, Objmeta__Status status, const char *msg, size_t msg_len)
{
    rpc_cq *q = r->cq;
    uint64_t now = om_clock_mono_ns(), dropped = 0;
    uint64_t took = now > r->start_ns ? now - r->start_ns : 0;
    bool slow = q->slow_ns > 0 && took >= q->slow_ns, failed = reqlog_is_failure(status);
    om_log_level level = slow || failed ? OM_LOG_WARN : OM_LOG_DEBUG;
    char extra[48] = "";

    if ((int)level > om_log_threshold)
        return;
    if (level == OM_LOG_WARN && !reqlog_warn_allowed(q, now, &dropped))
        return;
    if (dropped > 0)
        snprintf(extra, sizeof(extra), " lines_suppressed=%llu", (unsigned long long)dropped);
    if (msg_len > 400)
        msg_len = 400;
    om_log_rid(level, r->rid, "%s op=%s id=%llu status=%s ms=%.3f%s%.*s%s%s",
               slow     ? "slow request"
               : failed ? "request failed"
                        : "request",
               rpc_op_name(r->op), (unsigned long long)r->id, rpc_proto_status_name(status),
               (double)took / 1e6, msg_len > 0 ? " msg=\"" : "", (int)msg_len,
               msg_len > 0 ? msg : "", msg_len > 0 ? "\"" : "", extra);
}

void
reqlog_answered_encoded(rpc_reply *r, const uint8_t *p, size_t n)
{
    const uint8_t *end = p + n;
    uint64_t status = 0;
    const char *msg = NULL;
    size_t msg_len = 0;

    if (OM_LOG_WARN > om_log_threshold)
        return; /* nothing this could log is wanted */
    /* the top level of an encoded Response: status (2, varint), message (3, bytes) */
    while (p < end) {
        uint64_t tag, v;
        if ((p = om_decode_varint64(p, end, &tag)) == NULL)
            break;
        if ((tag & 7) == 0) {
            if ((p = om_decode_varint64(p, end, &v)) == NULL)
                break;
            if (tag >> 3 == 2)
                status = v;
        } else if ((tag & 7) == 2) {
            if ((p = om_decode_varint64(p, end, &v)) == NULL || v > (uint64_t)(end - p))
                break;
            if (tag >> 3 == 3) {
                msg = (const char *)p;
                msg_len = (size_t)v;
            }
            p += v;
        } else if ((tag & 7) == 1 || (tag & 7) == 5) {
            size_t k = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < k)
                break;
            p += k;
        } else {
            break;
        }
    }
    reqlog_answered(r, (Objmeta__Status)status, msg, msg_len);
}
