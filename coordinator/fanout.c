/*
 * coordinator/fanout.c -- List across shards: parallel fan-out, k-way merge
 * with delimiter roll-up, and the coordinator's continuation token.
 *
 * Every shard holds a hash-spread part of each bucket and answers List with
 * a page sorted in UTF-8 binary order, its keys and (with a delimiter) its
 * common prefixes. The coordinator keeps, per shard, a buffer of that
 * shard's entries (keys and prefixes merged into one sorted stream), and
 * repeatedly emits the smallest head over all shards:
 *
 *   - An entry may be emitted only when every shard that may have more has
 *     a buffered head; a shard whose buffer ran dry while it still has more
 *     is refilled first (its own continuation token), all such shards in
 *     parallel. Pages are sized from max_keys and the number of shards
 *     (coord_list_shard_page): about max_keys / n plus a quarter plus a
 *     little, since the hash spreads keys evenly; a shard is asked for more
 *     only when the merge actually drains it. So a page of M keys over n
 *     shards costs about 1.25 M + 4 n records of work, not n × M.
 *   - Heads not greater than the last emitted entry are dropped: a common
 *     prefix reported by several shards is therefore emitted (and counted)
 *     once. Keys are unique across shards, so for keys this drops nothing.
 *   - After max_keys entries the page is truncated iff some shard still has
 *     a head or more to fetch. (Every remaining entry is greater than the
 *     last one emitted, because all heads were present when it was chosen;
 *     so no extra round trip is needed to decide.)
 *
 * Continuation. The token (coord_token_encode) carries the last entry of
 * the page. The next page asks every shard for entries after it
 * (start_after); a shard answers a common prefix equal to it again (its keys
 * are greater than the prefix itself), and the merge drops it as a repeat.
 * The token is bound to bucket, prefix and delimiter and tagged with
 * HMAC-SHA256 under the coordinator's secret (rpc_mac, truncated to 16
 * bytes), so a corrupted, forged or misused token gets INVALID_ARGUMENT. When both
 * continuation_token and start_after are given, the token wins (S3 ListObjectsV2).
 *
 * Failure: List needs every shard. If one is down the request gets
 * UNAVAILABLE naming it; an error from any shard ends the request with that
 * shard's status and message -- except a shard refusing its own page token
 * (it restarted, or its group's primary changed, between two pages): that
 * shard is asked again after the last entry it sent (fan_page_cb). A
 * context is freed once it has answered and no shard call is outstanding.
 */
#define OM_LOG_MODULE "coord"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord_int.h"
#include "util/arena.h"
#include "util/assert.h"
#include "util/base64url.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/log.h"

#define LIST_DEFAULT_MAX_KEYS 1000u
#define LIST_MIN_REFILL 16u
#define TOKEN_VERSION 2
#define TOKEN_PREFIX "c1"
#define TOKEN_MAX_RESUME 4096u

/* --- continuation tokens --------------------------------------------------------------------- */

static uint64_t
token_params_hash(om_slice bucket, om_slice prefix, om_slice delimiter)
{
    om_buf b = OM_BUF_INIT;
    uint64_t h = 0;

    if (om_buf_append_slice(&b, bucket) == OM_OK && om_buf_append_byte(&b, 0) == OM_OK &&
        om_buf_append_slice(&b, prefix) == OM_OK && om_buf_append_byte(&b, 0) == OM_OK &&
        om_buf_append_slice(&b, delimiter) == OM_OK)
        h = om_hash64(b.p, b.n);
    om_buf_free(&b);
    return h;
}

/* tag = HMAC-SHA256(secret, body), truncated (rpc_mac) */
static void
token_tag(const uint8_t secret[COORD_SECRET_LEN], const uint8_t *body, size_t n,
          uint8_t tag[RPC_MAC_LEN])
{
    rpc_mac(secret, COORD_SECRET_LEN, body, n, tag);
}

om_status
coord_token_encode(const uint8_t secret[COORD_SECRET_LEN], om_slice bucket, om_slice prefix,
                   om_slice delimiter, om_slice resume, om_buf *out)
{
    om_buf body = OM_BUF_INIT;
    uint8_t tag[RPC_MAC_LEN];
    om_status st;

    OM_GOTO(om_buf_append_byte(&body, TOKEN_VERSION));
    OM_GOTO(om_buf_put_fixed64(&body, token_params_hash(bucket, prefix, delimiter)));
    OM_GOTO(om_buf_put_lenpref(&body, resume));
    token_tag(secret, body.p, body.n, tag);
    OM_GOTO(om_buf_append(&body, tag, sizeof(tag)));
    OM_GOTO(om_buf_append(out, TOKEN_PREFIX, strlen(TOKEN_PREFIX)));
    OM_GOTO(om_base64url_encode(om_buf_slice(&body), out));
fail:
    om_buf_free(&body);
    return st;
}

static om_status
token_invalid(char *err, size_t errlen, const char *why)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "continuation_token %s", why);
    return OM_ERR(OM_E_INVALID);
}

om_status
coord_token_decode(const uint8_t secret[COORD_SECRET_LEN], om_slice bucket, om_slice prefix,
                   om_slice delimiter, const char *token, om_buf *resume, char *err, size_t errlen)
{
    size_t plen = strlen(TOKEN_PREFIX), n = strlen(token);
    om_buf body = OM_BUF_INIT;
    om_slice in, r;
    uint8_t want[RPC_MAC_LEN];
    uint64_t ph;
    om_status st;

    if (n < plen || memcmp(token, TOKEN_PREFIX, plen) != 0)
        return token_invalid(err, errlen, "is not a token of this service");
    if (n > 2 * TOKEN_MAX_RESUME ||
        om_base64url_decode(om_slice_make(token + plen, n - plen), &body) != OM_OK) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "is malformed");
    }
    if (body.n < 1 + 8 + 1 + RPC_MAC_LEN) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "is truncated");
    }
    if (body.p[0] != TOKEN_VERSION) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "has an unknown version");
    }
    token_tag(secret, body.p, body.n - RPC_MAC_LEN, want);
    if (!rpc_mac_equal(want, body.p + body.n - RPC_MAC_LEN)) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "failed validation (corrupted or not issued here)");
    }
    in = om_slice_make(body.p + 1, body.n - 1 - RPC_MAC_LEN);
    if (om_slice_get_fixed64(&in, &ph) != OM_OK || om_slice_get_lenpref(&in, &r) != OM_OK ||
        in.n != 0) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "is malformed");
    }
    if (ph != token_params_hash(bucket, prefix, delimiter)) {
        om_buf_free(&body);
        return token_invalid(err, errlen,
                             "belongs to a listing with another bucket, prefix or delimiter");
    }
    if (r.n == 0 || r.n > TOKEN_MAX_RESUME || memchr(r.p, 0, r.n) != NULL || !om_utf8_valid(r)) {
        om_buf_free(&body);
        return token_invalid(err, errlen, "holds an invalid position");
    }
    st = om_buf_set(resume, r);
    om_buf_free(&body);
    return st;
}

uint32_t
coord_list_shard_page(uint32_t max_keys, size_t nshards)
{
    uint64_t per;

    if (max_keys == 0)
        return 1;
    if (nshards <= 1)
        return max_keys;
    per = (max_keys + nshards - 1) / nshards;
    per = per + per / 4 + 4;
    return per < max_keys ? (uint32_t)per : max_keys;
}

/* --- the merge ------------------------------------------------------------------------------- */

typedef struct fan_entry {
    om_slice s;                /* key or common prefix, NUL-terminated in the arena */
    Objmeta__ObjectInfo *info; /* NULL: a common prefix */
} fan_entry;

struct fan_list;

typedef struct fan_shard {
    coord_waiter w; /* first: the abort callback casts back */
    struct fan_list *l;
    coord_shard *sh;
    fan_entry *buf;
    size_t n, pos, cap;
    bool more;     /* the shard said is_truncated */
    bool inflight; /* a page request is out */
    char *token;   /* the shard's token for its next page (arena) */
    om_slice tail; /* last entry received */
    /* After the shard refused its own token: the next page starts after this entry (tail). */
    const char *resume;
} fan_shard;

typedef struct fan_list {
    coord *c;
    rpc_reply *reply;
    uint64_t t0;
    uint64_t epoch;
    om_arena *arena;
    char *bucket, *prefix, *delimiter, *start_after;
    char *rid; /* the client request's id, sent with every page request (rpc_reply_request_id) */
    Objmeta__Request *again; /* with replicated groups: a copy, parked if a primary fails */
    bool include_metadata;
    uint32_t max_keys;
    fan_shard *sh;
    size_t nsh;
    size_t inflight;
    bool answered;
    Objmeta__ObjectInfo **entries;
    size_t nentries;
    char **prefixes;
    size_t nprefixes;
    om_slice last; /* last entry emitted (or the token's position) */
    bool have_last;
} fan_list;

static char *
fan_strdup(fan_list *l, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    char *d = om_arena_alloc(l->arena, n + 1);

    if (d == NULL)
        return NULL;
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static void
fan_free(fan_list *l)
{
    l->c->lists_active--; /* the migration's ring switch waits for this to reach 0 */
    for (size_t i = 0; i < l->nsh; i++)
        free(l->sh[i].buf);
    free(l->sh);
    free(l->entries);
    free(l->prefixes);
    if (l->again != NULL)
        objmeta__request__free_unpacked(l->again, NULL);
    om_arena_free(l->arena);
    free(l);
}

static void
fan_maybe_free(fan_list *l)
{
    if (l->answered && l->inflight == 0)
        fan_free(l);
}

static void fan_fail(fan_list *l, om_status st, const char *fmt, ...) OM_PRINTF(3, 4);

static void
fan_fail(fan_list *l, om_status st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (l->answered)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->answered = true;
    coord_answer_error(l->c, COORD_OP_LIST, l->t0, l->reply, st, "%s", msg);
}

static void fan_page_cb(void *arg, om_status st, const Objmeta__Response *resp);

/*
 * A replicated group's primary failed a page (it died, or it refused before
 * listing: a backup, not serving yet): a List is a read, so the whole
 * request waits for the group's next primary and starts again there
 * (coord_route_park), instead of failing. Nothing has been answered yet: the
 * pages are merged before the one answer. False when it cannot wait.
 */
static bool
fan_retry(fan_list *l, coord_shard *sh, const char *why)
{
    if (l->answered || l->again == NULL || !sh->replicated)
        return false;
    om_log(OM_LOG_DEBUG, "List waits for group %s's next primary why=\"%s\"", sh->id, why);
    l->answered = true; /* by the parked request, from now on */
    l->c->parked_retried++;
    coord_route_park(l->c, l->again, COORD_OP_LIST, l->t0, l->reply, sh->id);
    return true;
}

/* The shard went down while a page was out: the listing cannot complete here. */
static void
fan_abort(coord_waiter *w, coord_shard *sh)
{
    fan_shard *fs = (fan_shard *)w;

    if (fan_retry(fs->l, sh, sh->why_down))
        return;
    fan_fail(fs->l, OM_E_UNAVAILABLE, "List needs every shard; shard %s (%s) went down: %s", sh->id,
             sh->addr, sh->why_down);
}

static void
fan_fetch(fan_shard *fs, uint32_t page)
{
    fan_list *l = fs->l;
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest lq = OBJMETA__LIST_REQUEST__INIT;
    om_status st;

    lq.bucket = l->bucket;
    lq.prefix = l->prefix;
    lq.delimiter = l->delimiter;
    if (fs->token != NULL)
        lq.continuation_token = fs->token;
    else if (fs->resume != NULL)
        lq.start_after = (char *)fs->resume;
    else
        lq.start_after = l->start_after;
    lq.max_keys = page;
    lq.include_metadata = l->include_metadata;
    req.body_case = OBJMETA__REQUEST__BODY_LIST;
    req.list = &lq;
    req.ring_epoch = l->epoch;
    req.request_id = l->rid;
    st = coord_pool_call(fs->sh, &req, fan_page_cb, fs);
    if (st != OM_OK) {
        fan_fail(l, st, "cannot send List to shard %s: %s", fs->sh->id, om_status_str(st));
        return;
    }
    fs->inflight = true;
    l->inflight++;
    l->c->list_shard_fetches++;
    coord_waiter_add(fs->sh, &fs->w);
}

static void
fan_finish(fan_list *l, bool truncated)
{
    Objmeta__Response resp = OBJMETA__RESPONSE__INIT;
    Objmeta__ListResponse lr = OBJMETA__LIST_RESPONSE__INIT;
    om_buf tok = OM_BUF_INIT;

    if (truncated) {
        om_status st = coord_token_encode(l->c->secret, om_slice_from_str(l->bucket),
                                          om_slice_from_str(l->prefix),
                                          om_slice_from_str(l->delimiter), l->last, &tok);
        if (st == OM_OK)
            st = om_buf_append_byte(&tok, 0);
        if (st != OM_OK) {
            om_buf_free(&tok);
            fan_fail(l, st, "cannot build the continuation token");
            return;
        }
        lr.next_continuation_token = (char *)tok.p;
    }
    lr.entries = l->entries;
    lr.n_entries = l->nentries;
    lr.common_prefixes = l->prefixes;
    lr.n_common_prefixes = l->nprefixes;
    lr.is_truncated = truncated;
    lr.key_count = (uint32_t)(l->nentries + l->nprefixes);
    resp.body_case = OBJMETA__RESPONSE__BODY_LIST;
    resp.list = &lr;
    l->answered = true;
    l->c->list_pages++;
    l->c->list_records_returned += lr.key_count;
    coord_answer(l->c, COORD_OP_LIST, l->t0, l->reply, &resp);
    om_buf_free(&tok);
}

/* Run the merge as far as the buffered entries allow; fetch what it needs. */
static void
fan_advance(fan_list *l)
{
    if (l->answered || l->inflight > 0)
        return;
    for (;;) {
        size_t emitted = l->nentries + l->nprefixes, need = 0;
        fan_shard *best = NULL;

        for (size_t i = 0; i < l->nsh; i++) {
            fan_shard *fs = &l->sh[i];
            while (fs->pos < fs->n && l->have_last &&
                   om_slice_cmp(fs->buf[fs->pos].s, l->last) <= 0)
                fs->pos++;
        }
        if (emitted == l->max_keys) {
            bool truncated = false;
            for (size_t i = 0; i < l->nsh; i++)
                truncated |= l->sh[i].pos < l->sh[i].n || l->sh[i].more;
            fan_finish(l, truncated);
            return;
        }
        for (size_t i = 0; i < l->nsh; i++) {
            fan_shard *fs = &l->sh[i];
            if (fs->pos == fs->n && fs->more) {
                uint32_t page = coord_list_shard_page(l->max_keys - (uint32_t)emitted, l->nsh);
                fan_fetch(fs, page < LIST_MIN_REFILL ? LIST_MIN_REFILL : page);
                need++;
            }
        }
        if (l->answered || need > 0)
            return;
        for (size_t i = 0; i < l->nsh; i++) {
            fan_shard *fs = &l->sh[i];
            if (fs->pos < fs->n &&
                (best == NULL || om_slice_cmp(fs->buf[fs->pos].s, best->buf[best->pos].s) < 0))
                best = fs;
        }
        if (best == NULL) {
            fan_finish(l, false);
            return;
        }
        fan_entry *e = &best->buf[best->pos++];
        /* Each shard's stream is strictly increasing (fan_push refuses anything else as
         * CORRUPT) and entries up to l->last were skipped above, so the merge emits keys in
         * strictly increasing order: no repeat, and the token's resume point is exact. */
        OM_ASSERT(!l->have_last || om_slice_cmp(e->s, l->last) > 0);
        if (e->info != NULL)
            l->entries[l->nentries++] = e->info;
        else
            l->prefixes[l->nprefixes++] = (char *)e->s.p;
        l->last = e->s;
        l->have_last = true;
    }
}

static Objmeta__ObjectInfo *
fan_copy_info(fan_list *l, const Objmeta__ObjectInfo *src)
{
    Objmeta__ObjectInfo *d = om_arena_alloc(l->arena, sizeof(*d));

    if (d == NULL)
        return NULL;
    objmeta__object_info__init(d);
    d->bucket = l->bucket;
    d->key = fan_strdup(l, src->key);
    d->etag = fan_strdup(l, src->etag);
    d->content_type = fan_strdup(l, src->content_type);
    d->metadata_json = fan_strdup(l, src->metadata_json);
    if (d->key == NULL || d->etag == NULL || d->content_type == NULL || d->metadata_json == NULL)
        return NULL;
    d->size = src->size;
    d->created_ms = src->created_ms;
    d->modified_ms = src->modified_ms;
    d->version = src->version;
    return d;
}

/* Append one entry to the shard's buffer, checking the shard's order. */
static om_status
fan_push(fan_shard *fs, const char *s, const Objmeta__ObjectInfo *info)
{
    fan_list *l = fs->l;
    fan_entry e;

    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 64;
        fan_entry *v = realloc(fs->buf, cap * sizeof(*v));
        if (v == NULL)
            return OM_ERR(OM_E_NOMEM);
        fs->buf = v;
        fs->cap = cap;
    }
    if (info != NULL) {
        e.info = fan_copy_info(l, info);
        if (e.info == NULL)
            return OM_ERR(OM_E_NOMEM);
        e.s = om_slice_from_str(e.info->key);
    } else {
        char *p = fan_strdup(l, s);
        if (p == NULL)
            return OM_ERR(OM_E_NOMEM);
        e.info = NULL;
        e.s = om_slice_from_str(p);
    }
    if (fs->tail.p != NULL && om_slice_cmp(e.s, fs->tail) <= 0)
        return OM_ERR(OM_E_CORRUPT);
    fs->buf[fs->n++] = e;
    fs->tail = e.s;
    return OM_OK;
}

static void
fan_page_cb(void *arg, om_status st, const Objmeta__Response *resp)
{
    fan_shard *fs = arg;
    fan_list *l = fs->l;
    const Objmeta__ListResponse *lr;
    size_t i = 0, j = 0;

    coord_waiter_remove(&fs->w);
    fs->inflight = false;
    l->inflight--;
    if (l->answered)
        goto out;
    if (st != OM_OK) {
        coord_pool_note_failure(fs->sh, st, resp->message);
        if (!fan_retry(l, fs->sh, resp->message))
            fan_fail(l, st, "shard %s (%s): %s", fs->sh->id, fs->sh->addr, resp->message);
        goto out;
    }
    if (resp->status == OBJMETA__STATUS__INVALID_ARGUMENT && fs->token != NULL) {
        /*
         * The shard refused the token it gave for this page: its key is
         * per process (list-token-secret unset), so the shard restarted, or
         * its group's primary changed, since the last page. Nothing else in
         * the request changed since it was accepted. Ask again from the last
         * entry it sent (its tail: a token is kept only after a page with
         * entries), as start_after; a common prefix equal to it comes back
         * and is dropped below.
         */
        OM_ASSERT(fs->tail.p != NULL);
        om_log(OM_LOG_INFO, "List resumes shard %s after its refused page token why=\"%s\"",
               fs->sh->id, resp->message);
        fs->resume = (const char *)fs->tail.p; /* NUL-terminated in the arena (fan_push) */
        fs->token = NULL;
        fan_advance(l);
        goto out;
    }
    if (resp->status == OBJMETA__STATUS__UNAVAILABLE && fan_retry(l, fs->sh, resp->message))
        goto out;
    if (resp->status == OBJMETA__STATUS__WRONG_SHARD) {
        coord_pool_note_wrong_shard(fs->sh);
        fan_fail(l, OM_E_UNAVAILABLE, "shard %s is not on ring epoch %llu yet (%s); retry",
                 fs->sh->id, (unsigned long long)l->epoch, resp->message);
        goto out;
    }
    if (resp->status != OBJMETA__STATUS__OK) {
        fan_fail(l, rpc_status_from_proto(resp->status), "%s", resp->message);
        goto out;
    }
    if (resp->body_case != OBJMETA__RESPONSE__BODY_LIST) {
        fan_fail(l, OM_E_INTERNAL, "shard %s answered List without a listing", fs->sh->id);
        goto out;
    }
    lr = resp->list;
    /* The previous page is used up (fetches happen only then): reuse the buffer. */
    fs->n = fs->pos = 0;
    while (i < lr->n_entries || j < lr->n_common_prefixes) {
        bool take_key =
            j == lr->n_common_prefixes ||
            (i < lr->n_entries && strcmp(lr->entries[i]->key, lr->common_prefixes[j]) < 0);
        if (!take_key && fs->resume != NULL && strcmp(lr->common_prefixes[j], fs->resume) == 0) {
            j++; /* the prefix the resumed page started after, again */
            continue;
        }
        st = take_key ? fan_push(fs, NULL, lr->entries[i++])
                      : fan_push(fs, lr->common_prefixes[j++], NULL);
        if (st != OM_OK) {
            fan_fail(l, st == OM_E_CORRUPT ? OM_E_INTERNAL : st,
                     st == OM_E_CORRUPT ? "shard %s returned a listing out of order"
                                        : "shard %s: out of memory copying its listing",
                     fs->sh->id);
            goto out;
        }
    }
    l->c->list_records_fetched += fs->n;
    fs->more = lr->is_truncated;
    if (fs->more) {
        if (fs->n == 0 || lr->next_continuation_token == NULL ||
            lr->next_continuation_token[0] == '\0') {
            fan_fail(l, OM_E_INTERNAL, "shard %s returned a truncated page without %s", fs->sh->id,
                     fs->n == 0 ? "entries" : "a continuation token");
            goto out;
        }
        fs->token = fan_strdup(l, lr->next_continuation_token);
        fs->resume = NULL;
        if (fs->token == NULL) {
            fan_fail(l, OM_E_NOMEM, "out of memory");
            goto out;
        }
    }
    fan_advance(l);
out:
    fan_maybe_free(l);
}

void
coord_list(coord *c, const Objmeta__Request *req, uint64_t t0, rpc_reply *reply)
{
    const Objmeta__ListRequest *lq = req->list;
    fan_list *l;
    char err[256];
    om_status st;

    if (lq->bucket == NULL || lq->bucket[0] == '\0') {
        coord_answer_error(c, COORD_OP_LIST, t0, reply, OM_E_INVALID, "bucket is empty");
        return;
    }
    if (coord_mig_hold(c, req, COORD_OP_LIST, t0, reply, true))
        return; /* a ring switch is under way: answered once it is done */
    for (size_t i = 0; i < ring_shard_count(c->ring); i++) {
        coord_shard *sh = coord_cur_shard(c, i);
        if (coord_shard_waits(sh)) {
            /* a replicated group between primaries: listed when it has one */
            coord_route_park(c, req, COORD_OP_LIST, t0, reply, sh->id);
            return;
        }
    }
    for (size_t i = 0; i < ring_shard_count(c->ring); i++) {
        coord_shard *sh = coord_cur_shard(c, i);
        if (!sh->up) {
            sh->failed_fast++;
            coord_answer_error(c, COORD_OP_LIST, t0, reply, OM_E_UNAVAILABLE,
                               "List needs every shard; shard %s (%s) is down: %s", sh->id,
                               sh->addr, sh->why_down);
            return;
        }
    }
    l = calloc(1, sizeof(*l));
    if (l == NULL || om_arena_new(0, &l->arena) != OM_OK) {
        free(l);
        coord_answer_error(c, COORD_OP_LIST, t0, reply, OM_E_NOMEM, "out of memory");
        return;
    }
    l->c = c;
    c->lists_active++;
    l->reply = reply;
    l->t0 = t0;
    l->epoch = ring_epoch(c->ring);
    l->include_metadata = lq->include_metadata;
    l->max_keys = lq->max_keys == 0 || lq->max_keys > LIST_DEFAULT_MAX_KEYS ? LIST_DEFAULT_MAX_KEYS
                                                                            : lq->max_keys;
    l->bucket = fan_strdup(l, lq->bucket);
    l->prefix = fan_strdup(l, lq->prefix);
    l->delimiter = fan_strdup(l, lq->delimiter);
    l->rid = fan_strdup(l, rpc_reply_request_id(reply));
    l->nsh = ring_shard_count(c->ring);
    for (size_t i = 0; i < l->nsh && l->again == NULL; i++)
        if (coord_cur_shard(c, i)->replicated)
            l->again = coord_request_copy(req); /* NULL (no memory): failed, not retried */
    l->sh = calloc(l->nsh, sizeof(*l->sh));
    l->entries = calloc(l->max_keys, sizeof(*l->entries));
    l->prefixes = calloc(l->max_keys, sizeof(*l->prefixes));
    if (l->bucket == NULL || l->prefix == NULL || l->delimiter == NULL || l->rid == NULL ||
        l->sh == NULL || l->entries == NULL || l->prefixes == NULL) {
        l->answered = true;
        coord_answer_error(c, COORD_OP_LIST, t0, reply, OM_E_NOMEM, "out of memory");
        fan_free(l);
        return;
    }
    if (lq->continuation_token != NULL && lq->continuation_token[0] != '\0') {
        om_buf resume = OM_BUF_INIT;
        st = coord_token_decode(c->secret, om_slice_from_str(l->bucket),
                                om_slice_from_str(l->prefix), om_slice_from_str(l->delimiter),
                                lq->continuation_token, &resume, err, sizeof(err));
        if (st == OM_OK && (st = om_buf_append_byte(&resume, 0)) == OM_OK)
            l->start_after = fan_strdup(l, (const char *)resume.p);
        om_buf_free(&resume);
        if (st != OM_OK || l->start_after == NULL) {
            l->answered = true;
            coord_answer_error(c, COORD_OP_LIST, t0, reply, st == OM_OK ? OM_E_NOMEM : st, "%s",
                               st == OM_E_INVALID ? err : "out of memory");
            fan_free(l);
            return;
        }
        l->last = om_slice_from_str(l->start_after);
        l->have_last = true;
    } else {
        l->start_after = fan_strdup(l, lq->start_after);
        if (l->start_after == NULL) {
            l->answered = true;
            coord_answer_error(c, COORD_OP_LIST, t0, reply, OM_E_NOMEM, "out of memory");
            fan_free(l);
            return;
        }
    }
    for (size_t i = 0; i < l->nsh; i++) {
        l->sh[i].w.abort = fan_abort;
        l->sh[i].l = l;
        l->sh[i].sh = coord_cur_shard(c, i);
    }
    for (size_t i = 0; i < l->nsh && !l->answered; i++)
        fan_fetch(&l->sh[i], coord_list_shard_page(l->max_keys, l->nsh));
    fan_maybe_free(l);
}
