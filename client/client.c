/*
 * client/client.c -- libobjmeta-client on rpc's blocking client: builds
 * Requests, waits for the Response, turns its status and message into an
 * om_status plus omc_last_message(), and copies the body into the caller's
 * out-parameters (so no protobuf type crosses the public header).
 *
 * Failover. The client holds a list of coordinator addresses and talks to
 * one at a time. A transport failure (UNAVAILABLE, TIMEOUT: the connection
 * broke or the server did not answer) moves it to the next address that
 * accepts a connection, and the call is retried there if that is safe:
 *
 *   - Retrieve, Head, Exists, List, Stats, Ping: always (they change nothing).
 *   - Delete without a condition: retried; NOT_FOUND on the retry means the
 *     key is gone -- possibly by the first attempt -- and is reported as
 *     OM_OK with version 0.
 *   - Store (any condition): never blindly. The client first reads the key
 *     on the new coordinator. If it holds exactly this store's data, content
 *     type and metadata, the first attempt landed (or an identical store
 *     did) and that object's info is the answer. Otherwise the store is sent
 *     again, conditional on what was read: if_version = the version seen, or
 *     if_absent if nothing is there; a caller's own condition must still
 *     hold as well (if_absent with something else present, or if_version
 *     differing from the version seen, is answered PRECONDITION_FAILED).
 *     So a retry can never overwrite a write that reached the key after
 *     the read; a concurrent writer makes it PRECONDITION_FAILED instead.
 *     The first attempt itself may become visible between the read and the
 *     retry (a replicated group shows a write only once every in-sync
 *     replica holds it), so a refused retry reads the key again, up to
 *     OMC_STORE_LOOKS reads in all: finding this store's contents there
 *     means it landed; anything else is handled as above.
 *   - Delete with if_version: not retried (a vanished key cannot tell whose
 *     delete removed it); the transport error is returned.
 *
 * Each call tries every address at most once.
 */
#define OM_LOG_MODULE "client"
#include "client/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

#define OMC_MAX_ADDRS 16
/* How often a store whose answer was lost reads the key again when its
 * conditional retry is refused (the first attempt may become visible
 * between the read and the retry). */
#define OMC_STORE_LOOKS 3

struct omc_client {
    rpc_sync_client *rpc; /* to addrs[cur]; NULL after a failed failover */
    rpc_tls *tls;         /* of rpc; NULL: plaintext */
    char *addrs[OMC_MAX_ADDRS];
    size_t naddrs, cur;
    uint32_t timeout_ms, connect_ms;
    omc_creds cr; /* private copies (NULL = unset), for every reconnect */
    char msg[1024];
    char rid[RPC_REQUEST_ID_MAX + 1]; /* request_id of every request ("" = none) */
};

static void
omc_set_msg(omc_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
}

static bool
creds_set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static void
omc_free_addrs(omc_client *c)
{
    for (size_t i = 0; i < c->naddrs; i++)
        free(c->addrs[i]);
    free((char *)c->cr.ca);
    free((char *)c->cr.cert);
    free((char *)c->cr.key);
    free((char *)c->cr.token);
}

/* Close the connection in use (the TLS context after the connection that uses it). */
static void
omc_disconnect(omc_client *c)
{
    rpc_sync_client_close(c->rpc);
    c->rpc = NULL;
    rpc_tls_free(c->tls);
    c->tls = NULL;
}

/* omc_rpc_open, with only the reason in why (no address). */
static om_status
omc_rpc_open_why(const char *addr, uint32_t timeout_ms, const omc_creds *cr, rpc_sync_client **out,
                 rpc_tls **tls, char *why, size_t whylen)
{
    rpc_client_opts o;
    om_status st;

    *tls = NULL;
    rpc_client_opts_init(&o);
    o.connect_timeout_ms = timeout_ms;
    if (cr != NULL && creds_set(cr->ca)) {
        rpc_tls_opts t = {.ca_file = cr->ca, .cert_file = cr->cert, .key_file = cr->key};
        if ((st = rpc_tls_new(&t, false, tls, why, whylen)) != OM_OK)
            return st;
        o.tls = *tls;
    } else if (cr != NULL && (creds_set(cr->cert) || creds_set(cr->key))) {
        snprintf(why, whylen, "--cert and --key need --ca (the cluster CA)");
        return OM_E_INVALID;
    }
    if (cr != NULL && creds_set(cr->token))
        o.token = cr->token;
    char w[256] = "";
    st = rpc_sync_client_open_opts(addr, &o, out, w, sizeof(w));
    if (st != OM_OK) {
        snprintf(why, whylen, "%s",
                 st == OM_E_INVALID ? "bad address (want host:port)"
                 : w[0]             ? w
                                    : om_status_str(st));
        rpc_tls_free(*tls);
        *tls = NULL;
    }
    return st;
}

/* Connect to the first address, from start, that accepts; OM_OK or the last error. */
static om_status
omc_connect_from(omc_client *c, size_t start, char *why, size_t whylen)
{
    om_status st = OM_E_UNAVAILABLE;
    size_t off = 0;

    omc_disconnect(c);
    for (size_t k = 0; k < c->naddrs; k++) {
        size_t i = (start + k) % c->naddrs;
        char one[512] = "";

        st = omc_rpc_open_why(c->addrs[i], c->connect_ms, &c->cr, &c->rpc, &c->tls, one,
                              sizeof(one));
        if (st == OM_OK) {
            c->cur = i;
            return OM_OK;
        }
        if (why != NULL && off < whylen)
            off += (size_t)snprintf(why + off, whylen - off, "%s%s: %s", k ? "; " : "", c->addrs[i],
                                    one[0] ? one : om_status_str(st));
    }
    return st;
}

om_status
omc_rpc_open(const char *addr, uint32_t timeout_ms, const omc_creds *cr, rpc_sync_client **out,
             rpc_tls **tls, char *msg, size_t msglen)
{
    char why[512] = "";
    om_status st = omc_rpc_open_why(addr, timeout_ms, cr, out, tls, why, sizeof(why));

    if (st != OM_OK && msg != NULL && msglen > 0)
        snprintf(msg, msglen, "cannot connect to %s: %s", addr, why);
    return st;
}

om_status
omc_connect_creds(const char *addr, uint32_t timeout_ms, const omc_creds *cr, omc_client **out,
                  char *msg, size_t msglen)
{
    omc_client *c = calloc(1, sizeof(*c));
    char why[768] = "";
    const char *p = addr != NULL ? addr : "";
    om_status st;

    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (cr != NULL && ((cr->ca && (c->cr.ca = strdup(cr->ca)) == NULL) ||
                       (cr->cert && (c->cr.cert = strdup(cr->cert)) == NULL) ||
                       (cr->key && (c->cr.key = strdup(cr->key)) == NULL) ||
                       (cr->token && (c->cr.token = strdup(cr->token)) == NULL))) {
        st = OM_ERR(OM_E_NOMEM);
        goto fail;
    }
    while (*p != '\0') {
        size_t n = strcspn(p, ",");

        if (n > 0 && c->naddrs == OMC_MAX_ADDRS) {
            st = OM_ERR(OM_E_INVALID);
            snprintf(why, sizeof(why), "more than %d addresses", OMC_MAX_ADDRS);
            goto fail;
        }
        if (n > 0 && (c->addrs[c->naddrs++] = strndup(p, n)) == NULL) {
            st = OM_ERR(OM_E_NOMEM);
            goto fail;
        }
        p += n + (p[n] == ',');
    }
    if (c->naddrs == 0) {
        st = OM_ERR(OM_E_INVALID);
        snprintf(why, sizeof(why), "no address given");
        goto fail;
    }
    c->connect_ms = timeout_ms;
    c->timeout_ms = 30000;
    st = omc_connect_from(c, 0, why, sizeof(why));
    if (st != OM_OK)
        goto fail;
    *out = c;
    return OM_OK;
fail:
    if (msg != NULL && msglen > 0)
        snprintf(msg, msglen, "cannot connect to %s: %s", addr ? addr : "(none)", why);
    omc_free_addrs(c);
    free(c);
    return st;
}

om_status
omc_connect(const char *addr, uint32_t timeout_ms, omc_client **out, char *msg, size_t msglen)
{
    return omc_connect_creds(addr, timeout_ms, NULL, out, msg, msglen);
}

void
omc_close(omc_client *c)
{
    if (c == NULL)
        return;
    omc_disconnect(c);
    omc_free_addrs(c);
    free(c);
}

const char *
omc_address(const omc_client *c)
{
    return c->addrs[c->cur];
}

void
omc_set_timeout(omc_client *c, uint32_t timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

om_status
omc_set_request_id(omc_client *c, const char *rid, char *err, size_t errlen)
{
    size_t n = rid != NULL ? strlen(rid) : 0;

    OM_TRY(rpc_request_id_check((const uint8_t *)rid, n, err, errlen));
    if (n > 0)
        memcpy(c->rid, rid, n);
    c->rid[n] = '\0';
    return OM_OK;
}

const char *
omc_last_message(const omc_client *c)
{
    return c->msg;
}

static char *
dup_str(const char *s)
{
    return strdup(s ? s : "");
}

void
omc_info_free(omc_info *i)
{
    if (i == NULL)
        return;
    free(i->bucket);
    free(i->key);
    free(i->etag);
    free(i->content_type);
    free(i->metadata_json);
    memset(i, 0, sizeof(*i));
}

static om_status
info_copy(const Objmeta__ObjectInfo *oi, omc_info *out)
{
    omc_info i = {0};

    if (oi == NULL)
        return OM_ERR(OM_E_CORRUPT);
    i.bucket = dup_str(oi->bucket);
    i.key = dup_str(oi->key);
    i.etag = dup_str(oi->etag);
    i.content_type = dup_str(oi->content_type);
    i.metadata_json = dup_str(oi->metadata_json);
    i.size = oi->size;
    i.created_ms = oi->created_ms;
    i.modified_ms = oi->modified_ms;
    i.version = oi->version;
    if (!i.bucket || !i.key || !i.etag || !i.content_type || !i.metadata_json) {
        omc_info_free(&i);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = i;
    return OM_OK;
}

/*
 * Send req, wait, and check the answer: OM_OK with *resp holding a body of
 * the expected case, or the error (message in c->msg, *resp freed).
 */
/* One attempt on the current connection. */
static om_status
omc_call_once(omc_client *c, Objmeta__Request *req, Objmeta__Response__BodyCase want,
              Objmeta__Response **resp)
{
    Objmeta__Response *r = NULL;
    om_status st;

    c->msg[0] = '\0';
    if (c->rpc == NULL) {
        omc_set_msg(c, "no coordinator reachable");
        return OM_E_UNAVAILABLE;
    }
    if (c->rid[0] != '\0')
        req->request_id = c->rid;
    st = rpc_sync_client_call(c->rpc, req, c->timeout_ms, &r);
    if (st != OM_OK) {
        const char *why = rpc_sync_client_last_error(c->rpc);
        omc_set_msg(c, "%s: %s", c->addrs[c->cur], why && *why ? why : om_status_str(st));
        return st;
    }
    st = rpc_response_status(r);
    if (st != OM_OK) {
        omc_set_msg(c, "%s", r->message && *r->message ? r->message : om_status_str(st));
        rpc_response_free(r);
        return st;
    }
    if (r->body_case != want) {
        omc_set_msg(c, "server answered OK without the expected body");
        rpc_response_free(r);
        return OM_ERR(OM_E_CORRUPT);
    }
    *resp = r;
    return OM_OK;
}

static bool
omc_transport_error(om_status st)
{
    return st == OM_E_UNAVAILABLE || st == OM_E_TIMEOUT;
}

/*
 * After a transport failure: move to the next address that accepts a
 * connection. Returns true if there is one left to try in this call
 * (*tried counts the addresses used so far).
 */
static bool
omc_failover(omc_client *c, size_t *tried)
{
    char keep[sizeof(c->msg)];

    if (*tried >= c->naddrs)
        return false;
    memcpy(keep, c->msg, sizeof(keep));
    if (omc_connect_from(c, (c->cur + 1) % c->naddrs, NULL, 0) != OM_OK) {
        memcpy(c->msg, keep, sizeof(keep)); /* the original failure is the story */
        return false;
    }
    (*tried)++;
    return true;
}

/*
 * Send req, wait, and check the answer: OM_OK with *resp holding a body of
 * the expected case, or the error (message in c->msg, *resp freed). A
 * read-only request is retried on the next addresses after a transport
 * failure.
 */
static om_status
omc_call(omc_client *c, Objmeta__Request *req, Objmeta__Response__BodyCase want,
         Objmeta__Response **resp)
{
    size_t tried = 1;
    om_status st;

    while (omc_transport_error(st = omc_call_once(c, req, want, resp)) && omc_failover(c, &tried))
        ;
    return st;
}

/*
 * The retry of a store whose answer was lost (see the file header): read
 * the key, and either report the object already there or prepare sr to
 * store again conditionally. Returns OM_OK with *landed set (then *info
 * holds the object's info when info is not NULL), or the error to return.
 */
static om_status
store_recheck(omc_client *c, const char *bucket, const char *key, om_slice data,
              const omc_store_opts *opts, Objmeta__StoreRequest *sr, bool *landed, omc_info *info)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    const Objmeta__RetrieveResponse *got;
    const char *ctype = opts && opts->content_type ? opts->content_type : "";
    const char *meta = opts && opts->metadata_json ? opts->metadata_json : "";
    om_status st;

    rr.bucket = (char *)bucket;
    rr.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
    req.retrieve = &rr;
    *landed = false;
    st = omc_call_once(c, &req, OBJMETA__RESPONSE__BODY_RETRIEVE, &r);
    if (st == OM_E_NOTFOUND) {
        if (opts != NULL && opts->has_if_version) {
            omc_set_msg(c, "store retried after a lost answer: %s/%s no longer exists", bucket,
                        key);
            return OM_E_PRECONDITION;
        }
        sr->condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
        sr->if_absent = 1;
        return OM_OK;
    }
    if (st != OM_OK)
        return st;
    got = r->retrieve;
    if (got->info != NULL && got->data.len == data.n &&
        (data.n == 0 || memcmp(got->data.data, data.p, data.n) == 0) &&
        strcmp(got->info->content_type ? got->info->content_type : "", ctype) == 0 &&
        strcmp(got->info->metadata_json ? got->info->metadata_json : "", meta) == 0) {
        *landed = true;
        st = info != NULL ? info_copy(got->info, info) : OM_OK;
    } else if (got->info == NULL) {
        st = OM_ERR(OM_E_CORRUPT);
    } else if (opts != NULL && opts->if_absent) {
        omc_set_msg(c, "store retried after a lost answer: %s/%s exists with other contents",
                    bucket, key);
        st = OM_E_PRECONDITION;
    } else if (opts != NULL && opts->has_if_version && got->info->version != opts->if_version) {
        omc_set_msg(c, "store retried after a lost answer: %s/%s is at version %llu, not %llu",
                    bucket, key, (unsigned long long)got->info->version,
                    (unsigned long long)opts->if_version);
        st = OM_E_PRECONDITION;
    } else {
        sr->condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
        sr->if_version = got->info->version;
    }
    rpc_response_free(r);
    return st;
}

om_status
omc_store(omc_client *c, const char *bucket, const char *key, om_slice data,
          const omc_store_opts *opts, omc_info *info)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    size_t tried = 1;
    bool landed = false;
    om_status st;

    sr.bucket = (char *)bucket;
    sr.key = (char *)key;
    sr.data.data = (uint8_t *)data.p;
    sr.data.len = data.n;
    if (opts != NULL) {
        if (opts->content_type)
            sr.content_type = (char *)opts->content_type;
        if (opts->metadata_json)
            sr.metadata_json = (char *)opts->metadata_json;
        if (opts->if_absent) {
            sr.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT;
            sr.if_absent = 1;
        } else if (opts->has_if_version) {
            sr.condition_case = OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION;
            sr.if_version = opts->if_version;
        }
    }
    req.body_case = OBJMETA__REQUEST__BODY_STORE;
    req.store = &sr;
    st = omc_call_once(c, &req, OBJMETA__RESPONSE__BODY_STORE, &r);
    while (omc_transport_error(st) && omc_failover(c, &tried)) {
        for (int look = 1;; look++) {
            st = store_recheck(c, bucket, key, data, opts, &sr, &landed, info);
            if (st != OM_OK)
                break;
            if (landed)
                return OM_OK;
            st = omc_call_once(c, &req, OBJMETA__RESPONSE__BODY_STORE, &r);
            if (st != OM_E_PRECONDITION || look == OMC_STORE_LOOKS)
                break; /* only a refused retry looks again */
        }
    }
    if (st != OM_OK)
        return st;
    st = info == NULL ? OM_OK : info_copy(r->store->info, info);
    rpc_response_free(r);
    return st;
}

om_status
omc_retrieve(omc_client *c, const char *bucket, const char *key, omc_info *info, om_buf *data)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__RetrieveRequest rr = OBJMETA__RETRIEVE_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    omc_info tmp;
    om_status st;

    rr.bucket = (char *)bucket;
    rr.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_RETRIEVE;
    req.retrieve = &rr;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_RETRIEVE, &r));
    st = info_copy(r->retrieve->info, &tmp);
    if (st == OM_OK) {
        st = om_buf_set(data, om_slice_make(r->retrieve->data.data, r->retrieve->data.len));
        if (st == OM_OK && info != NULL)
            *info = tmp;
        else
            omc_info_free(&tmp);
    }
    rpc_response_free(r);
    return st;
}

om_status
omc_head(omc_client *c, const char *bucket, const char *key, omc_info *info)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__HeadRequest hr = OBJMETA__HEAD_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    om_status st;

    hr.bucket = (char *)bucket;
    hr.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_HEAD;
    req.head = &hr;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_HEAD, &r));
    st = info_copy(r->head->info, info);
    rpc_response_free(r);
    return st;
}

om_status
omc_exists(omc_client *c, const char *bucket, const char *key, bool *exists)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ExistsRequest er = OBJMETA__EXISTS_REQUEST__INIT;
    Objmeta__Response *r = NULL;

    er.bucket = (char *)bucket;
    er.key = (char *)key;
    req.body_case = OBJMETA__REQUEST__BODY_EXISTS;
    req.exists = &er;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_EXISTS, &r));
    *exists = r->exists->exists;
    rpc_response_free(r);
    return OM_OK;
}

om_status
omc_delete(omc_client *c, const char *bucket, const char *key, const uint64_t *if_version,
           uint64_t *version)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__DeleteRequest dr = OBJMETA__DELETE_REQUEST__INIT;
    Objmeta__Response *r = NULL;

    dr.bucket = (char *)bucket;
    dr.key = (char *)key;
    if (if_version != NULL) {
        dr.condition_case = OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION;
        dr.if_version = *if_version;
    }
    req.body_case = OBJMETA__REQUEST__BODY_DELETE;
    req.delete_ = &dr;
    if (if_version != NULL) {
        OM_TRY(omc_call_once(c, &req, OBJMETA__RESPONSE__BODY_DELETE, &r));
    } else {
        size_t tried = 1;
        bool retried = false;
        om_status st;

        while (
            omc_transport_error(st = omc_call_once(c, &req, OBJMETA__RESPONSE__BODY_DELETE, &r)) &&
            omc_failover(c, &tried))
            retried = true;
        if (st == OM_E_NOTFOUND && retried) {
            /* gone, perhaps by the attempt whose answer was lost */
            c->msg[0] = '\0';
            if (version != NULL)
                *version = 0;
            return OM_OK;
        }
        if (st != OM_OK)
            return st;
    }
    if (version != NULL)
        *version = r->delete_->version;
    rpc_response_free(r);
    return OM_OK;
}

void
omc_list_page_free(omc_list_page *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n_entries; i++)
        omc_info_free(&p->entries[i]);
    for (size_t i = 0; i < p->n_common_prefixes; i++)
        free(p->common_prefixes[i]);
    free(p->entries);
    free(p->common_prefixes);
    free(p->next_continuation_token);
    memset(p, 0, sizeof(*p));
}

om_status
omc_list(omc_client *c, const char *bucket, const omc_list_opts *opts, omc_list_page *page)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__ListRequest lr = OBJMETA__LIST_REQUEST__INIT;
    Objmeta__ListResponse *l;
    Objmeta__Response *r = NULL;
    omc_list_page p = {0};
    om_status st = OM_OK;

    lr.bucket = (char *)bucket;
    if (opts != NULL) {
        if (opts->prefix)
            lr.prefix = (char *)opts->prefix;
        if (opts->delimiter)
            lr.delimiter = (char *)opts->delimiter;
        if (opts->start_after)
            lr.start_after = (char *)opts->start_after;
        if (opts->continuation_token)
            lr.continuation_token = (char *)opts->continuation_token;
        lr.max_keys = opts->max_keys;
        lr.include_metadata = opts->include_metadata;
    }
    req.body_case = OBJMETA__REQUEST__BODY_LIST;
    req.list = &lr;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_LIST, &r));
    l = r->list;
    p.entries = calloc(l->n_entries + 1, sizeof(*p.entries));
    p.common_prefixes = calloc(l->n_common_prefixes + 1, sizeof(char *));
    p.next_continuation_token = dup_str(l->next_continuation_token);
    if (!p.entries || !p.common_prefixes || !p.next_continuation_token)
        st = OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; st == OM_OK && i < l->n_entries; i++) {
        st = info_copy(l->entries[i], &p.entries[i]);
        if (st == OM_OK)
            p.n_entries++;
    }
    for (size_t i = 0; st == OM_OK && i < l->n_common_prefixes; i++) {
        p.common_prefixes[i] = dup_str(l->common_prefixes[i]);
        if (p.common_prefixes[i] == NULL)
            st = OM_ERR(OM_E_NOMEM);
        else
            p.n_common_prefixes++;
    }
    p.is_truncated = l->is_truncated;
    p.key_count = l->key_count;
    rpc_response_free(r);
    if (st != OM_OK) {
        omc_list_page_free(&p);
        omc_set_msg(c, "out of memory");
        return st;
    }
    *page = p;
    return OM_OK;
}

void
omc_stats_free(omc_stats *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        free(s->names[i]);
    free(s->names);
    free(s->values);
    free(s->text);
    memset(s, 0, sizeof(*s));
}

om_status
omc_stats_get(omc_client *c, omc_stats *out)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StatsRequest sr = OBJMETA__STATS_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    omc_stats s = {0};
    om_status st = OM_OK;

    req.body_case = OBJMETA__REQUEST__BODY_STATS;
    req.stats = &sr;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_STATS, &r));
    s.names = calloc(r->stats->n_counters + 1, sizeof(char *));
    s.values = calloc(r->stats->n_counters + 1, sizeof(uint64_t));
    s.text = dup_str(r->stats->text);
    if (!s.names || !s.values || !s.text)
        st = OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; st == OM_OK && i < r->stats->n_counters; i++) {
        s.names[i] = dup_str(r->stats->counters[i]->name);
        s.values[i] = r->stats->counters[i]->value;
        if (s.names[i] == NULL)
            st = OM_ERR(OM_E_NOMEM);
        else
            s.n++;
    }
    rpc_response_free(r);
    if (st != OM_OK) {
        omc_stats_free(&s);
        return st;
    }
    *out = s;
    return OM_OK;
}

om_status
omc_ping(omc_client *c, char **server)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__PingRequest pr = OBJMETA__PING_REQUEST__INIT;
    Objmeta__Response *r = NULL;
    om_status st = OM_OK;

    /* The payload ends in an empty line: an HTTP server mistaken for an
     * objmeta one then answers at once (400) instead of waiting for the rest
     * of a request, and the reply is recognised as HTTP (rpc/client.c). */
    pr.payload.data = (uint8_t *)"\r\n\r\n";
    pr.payload.len = 4;
    req.body_case = OBJMETA__REQUEST__BODY_PING;
    req.ping = &pr;
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_PING, &r));
    if (server != NULL) {
        *server = dup_str(r->ping->server);
        if (*server == NULL)
            st = OM_ERR(OM_E_NOMEM);
    }
    rpc_response_free(r);
    return st;
}
