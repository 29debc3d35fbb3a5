/*
 * client/client.c -- libobjmeta-client on rpc's blocking client: builds
 * Requests, waits for the Response, turns its status and message into an
 * om_status plus omc_last_message(), and copies the body into the caller's
 * out-parameters (so no protobuf type crosses the public header).
 */
#define OM_LOG_MODULE "client"
#include "client/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"

struct omc_client {
    rpc_sync_client *rpc;
    uint32_t timeout_ms;
    char msg[1024];
};

static void
omc_set_msg(omc_client *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
}

om_status
omc_connect(const char *addr, uint32_t timeout_ms, omc_client **out, char *msg, size_t msglen)
{
    omc_client *c = calloc(1, sizeof(*c));
    om_status st;

    if (c == NULL)
        return OM_ERR(OM_E_NOMEM);
    st = rpc_sync_client_open(addr, timeout_ms, &c->rpc);
    if (st != OM_OK) {
        if (msg != NULL && msglen > 0)
            snprintf(msg, msglen, "cannot connect to %s: %s", addr,
                     st == OM_E_INVALID ? "bad address (want host:port)" : om_status_str(st));
        free(c);
        return st;
    }
    c->timeout_ms = 30000;
    *out = c;
    return OM_OK;
}

void
omc_close(omc_client *c)
{
    if (c == NULL)
        return;
    rpc_sync_client_close(c->rpc);
    free(c);
}

void
omc_set_timeout(omc_client *c, uint32_t timeout_ms)
{
    c->timeout_ms = timeout_ms;
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
static om_status
omc_call(omc_client *c, Objmeta__Request *req, Objmeta__Response__BodyCase want,
         Objmeta__Response **resp)
{
    Objmeta__Response *r = NULL;
    om_status st;

    c->msg[0] = '\0';
    st = rpc_sync_client_call(c->rpc, req, c->timeout_ms, &r);
    if (st != OM_OK) {
        const char *why = rpc_sync_client_last_error(c->rpc);
        omc_set_msg(c, "%s", why && *why ? why : om_status_str(st));
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

om_status
omc_store(omc_client *c, const char *bucket, const char *key, om_slice data,
          const omc_store_opts *opts, omc_info *info)
{
    Objmeta__Request req = OBJMETA__REQUEST__INIT;
    Objmeta__StoreRequest sr = OBJMETA__STORE_REQUEST__INIT;
    Objmeta__Response *r = NULL;
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
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_STORE, &r));
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
    OM_TRY(omc_call(c, &req, OBJMETA__RESPONSE__BODY_DELETE, &r));
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
