/*
 * shard/list_page.c -- a List page as a ListResponse (list_page.h). The
 * listing calls back once per entry and per common prefix; each callback
 * copies what the response points to (the key, the content type, the
 * metadata when asked for) into the page, which frees it all at the end.
 * The page never holds more than max_keys of either, so the arrays are
 * sized once, up front.
 */
#include "shard/list_page.h"

#include <stdlib.h>
#include <string.h>

#include "shard/shard_int.h"

static om_status
fill_info(Objmeta__ObjectInfo *oi, shard_info_strings *is, const char *bucket, const char *key,
          const shard_record *r, bool with_metadata)
{
    is->content_type = om_slice_strdup(r->content_type);
    is->metadata = with_metadata ? om_slice_strdup(r->metadata) : NULL;
    if (is->content_type == NULL || (with_metadata && is->metadata == NULL))
        return OM_ERR(OM_E_NOMEM);
    shard_etag_hex(r->etag, is->etag);
    oi->bucket = (char *)bucket;
    oi->key = (char *)key;
    oi->size = r->size;
    oi->etag = is->etag;
    oi->content_type = is->content_type;
    oi->created_ms = r->created_ms;
    oi->modified_ms = r->modified_ms;
    oi->version = r->version;
    oi->metadata_json = with_metadata ? is->metadata : (char *)"";
    return OM_OK;
}

static om_status
page_on_entry(void *arg, om_slice key, const shard_record *rec)
{
    shard_list_page *p = arg;
    size_t i = p->n_entries;

    if (i == p->cap)
        return OM_ERR(OM_E_INTERNAL); /* the page never exceeds max_keys */
    p->keys[i] = om_slice_strdup(key);
    if (p->keys[i] == NULL)
        return OM_ERR(OM_E_NOMEM);
    p->n_entries++;
    objmeta__object_info__init(&p->infos[i]);
    p->entries[i] = &p->infos[i];
    return fill_info(&p->infos[i], &p->strs[i], p->bucket, p->keys[i], rec, p->include_metadata);
}

static om_status
page_on_prefix(void *arg, om_slice cp)
{
    shard_list_page *p = arg;

    if (p->n_prefixes == p->cap)
        return OM_ERR(OM_E_INTERNAL);
    p->prefixes[p->n_prefixes] = om_slice_strdup(cp);
    if (p->prefixes[p->n_prefixes] == NULL)
        return OM_ERR(OM_E_NOMEM);
    p->n_prefixes++;
    return OM_OK;
}

om_status
shard_list_page_build(shard *s, const shard_list_args *a, shard_list_page *p, char *err,
                      size_t errlen)
{
    shard_list_req req = {.bucket = a->bucket,
                          .prefix = a->prefix,
                          .delimiter = a->delimiter,
                          .start_after = a->start_after,
                          .continuation_token = a->token,
                          .mac_key = om_slice_make(s->opts.list_secret, s->opts.list_secret_len),
                          .max_keys = a->max_keys,
                          .max_bytes = s->opts.max_list_bytes,
                          .count_metadata = a->include_metadata};
    shard_fence_list fence;

    memset(p, 0, sizeof(*p));
    objmeta__list_response__init(&p->lr);
    p->res.next_token = OM_BUF_INIT;
    p->bucket = (const char *)a->bucket.p;
    p->include_metadata = a->include_metadata;
    /* objmeta.proto: max_keys 0 means the default (1000), larger values are clamped */
    if (req.max_keys == 0 || req.max_keys > SHARD_LIST_MAX)
        req.max_keys = SHARD_LIST_MAX;
    shard_fence_list_init(s, a->ring_epoch, a->bucket, &fence, &req);
    OM_TRY(shard_validate_bucket(a->bucket, err, errlen));
    p->cap = req.max_keys;
    p->infos = calloc(p->cap, sizeof(*p->infos));
    p->entries = calloc(p->cap, sizeof(*p->entries));
    p->strs = calloc(p->cap, sizeof(*p->strs));
    p->keys = calloc(p->cap, sizeof(*p->keys));
    p->prefixes = calloc(p->cap, sizeof(*p->prefixes));
    if (!p->infos || !p->entries || !p->strs || !p->keys || !p->prefixes)
        return OM_ERR(OM_E_NOMEM);
    OM_TRY(shard_list(s->db, &req, page_on_entry, page_on_prefix, p, &p->res, err, errlen));
    OM_TRY(shard_fence_list_done(&fence, err, errlen));
    OM_TRY(om_buf_append_byte(&p->res.next_token, 0)); /* NUL for protobuf-c */
    p->lr.entries = p->entries;
    p->lr.n_entries = p->n_entries;
    p->lr.common_prefixes = p->prefixes;
    p->lr.n_common_prefixes = p->n_prefixes;
    p->lr.is_truncated = p->res.is_truncated;
    p->lr.next_continuation_token = (char *)p->res.next_token.p;
    p->lr.key_count = p->res.key_count;
    return OM_OK;
}

void
shard_list_page_fini(shard_list_page *p)
{
    for (size_t i = 0; i < p->n_entries; i++) {
        free(p->keys[i]);
        free(p->strs[i].content_type);
        free(p->strs[i].metadata);
    }
    for (size_t i = 0; i < p->n_prefixes; i++)
        free(p->prefixes[i]);
    free(p->infos);
    free(p->entries);
    free(p->strs);
    free(p->keys);
    free(p->prefixes);
    om_buf_free(&p->res.next_token);
}
