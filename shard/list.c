/*
 * shard/list.c -- one page of S3 ListObjectsV2 over an LSM iterator (the
 * semantics and the token format are in list.h).
 *
 * The iterator is bounded to [bucket 0x00 prefix, successor of that) so it
 * never leaves the prefix. A common prefix is emitted on the first live key
 * under it and the iterator then seeks to the successor of the common prefix:
 * a directory with a million keys costs one seek, not a million steps.
 */
#define OM_LOG_MODULE "shard"
#include "shard/list.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rpc/rpc.h"
#include "util/base64url.h"
#include "util/checksum.h"
#include "util/coding.h"

bool
shard_prefix_successor(om_slice s, om_buf *out)
{
    size_t n = s.n;

    om_buf_reset(out);
    while (n > 0 && s.p[n - 1] == 0xff)
        n--;
    if (n == 0)
        return false;
    if (om_buf_append(out, s.p, n) != OM_OK)
        return false;
    out->p[n - 1]++;
    return true;
}

/* The listing a token is bound to: hash of length-prefixed bucket, prefix, delimiter. */
static uint64_t
token_binding(const shard_list_req *req)
{
    om_buf b = OM_BUF_INIT;
    uint64_t h = 0;

    if (om_buf_put_lenpref(&b, req->bucket) == OM_OK &&
        om_buf_put_lenpref(&b, req->prefix) == OM_OK &&
        om_buf_put_lenpref(&b, req->delimiter) == OM_OK)
        h = om_hash64(b.p, b.n);
    om_buf_free(&b);
    return h;
}

om_status
shard_list_token_encode(const shard_list_req *req, om_slice resume, om_buf *out)
{
    om_buf raw = OM_BUF_INIT;
    om_status st;

    OM_GOTO(om_buf_append_byte(&raw, SHARD_LIST_TOKEN_VERSION));
    OM_GOTO(om_buf_put_fixed64(&raw, token_binding(req)));
    OM_GOTO(om_buf_put_lenpref(&raw, resume));
    uint8_t tag[RPC_MAC_LEN];
    rpc_mac(req->mac_key.p, req->mac_key.n, raw.p, raw.n, tag);
    OM_GOTO(om_buf_append(&raw, tag, sizeof(tag)));
    om_buf_reset(out);
    st = om_base64url_encode(om_buf_slice(&raw), out);
fail:
    om_buf_free(&raw);
    return st;
}

om_status
shard_list_token_decode(const shard_list_req *req, om_slice token, om_buf *resume, char *err,
                        size_t errlen)
{
    om_buf raw = OM_BUF_INIT;
    om_slice in, key;
    uint64_t binding;
    om_status st = OM_E_INVALID;

    if (token.n > 4096) {
        om_err_invalid(err, errlen, "continuation_token: too long (%zu bytes)", token.n);
        goto out;
    }
    if (om_base64url_decode(token, &raw) != OM_OK || raw.n < 1 + 8 + 1 + RPC_MAC_LEN) {
        om_err_invalid(err, errlen, "continuation_token: not a token of this service");
        goto out;
    }
    uint8_t tag[RPC_MAC_LEN];
    rpc_mac(req->mac_key.p, req->mac_key.n, raw.p, raw.n - RPC_MAC_LEN, tag);
    if (!rpc_mac_equal(tag, raw.p + raw.n - RPC_MAC_LEN)) {
        om_err_invalid(err, errlen,
                       "continuation_token: failed validation (corrupted, forged, or issued "
                       "before this shard restarted)");
        goto out;
    }
    if (raw.p[0] != SHARD_LIST_TOKEN_VERSION) {
        om_err_invalid(err, errlen, "continuation_token: unsupported token version %u", raw.p[0]);
        goto out;
    }
    in = om_slice_make(raw.p + 1, raw.n - 1 - RPC_MAC_LEN);
    if (om_slice_get_fixed64(&in, &binding) != OM_OK || om_slice_get_lenpref(&in, &key) != OM_OK ||
        in.n != 0) {
        om_err_invalid(err, errlen, "continuation_token: malformed");
        goto out;
    }
    if (binding != token_binding(req)) {
        om_err_invalid(err, errlen,
                       "continuation_token: belongs to a listing with another bucket, prefix or "
                       "delimiter");
        goto out;
    }
    st = om_buf_set(resume, key);
out:
    om_buf_free(&raw);
    return st;
}

static om_status
list_validate(const shard_list_req *req, char *err, size_t errlen)
{
    if (req->max_keys > SHARD_LIST_MAX)
        return om_err_invalid(err, errlen, "max_keys: %u is over the maximum of %d", req->max_keys,
                              SHARD_LIST_MAX);
    if (req->prefix.n > SHARD_KEY_MAX || !om_utf8_valid(req->prefix))
        return om_err_invalid(err, errlen, "prefix: must be valid UTF-8 of at most %d bytes",
                              SHARD_KEY_MAX);
    if (req->delimiter.n > SHARD_KEY_MAX || !om_utf8_valid(req->delimiter))
        return om_err_invalid(err, errlen, "delimiter: must be valid UTF-8 of at most %d bytes",
                              SHARD_KEY_MAX);
    if (req->start_after.n > SHARD_KEY_MAX || !om_utf8_valid(req->start_after))
        return om_err_invalid(err, errlen, "start_after: must be valid UTF-8 of at most %d bytes",
                              SHARD_KEY_MAX);
    return OM_OK;
}

/* Position of the delimiter in key after the prefix, or -1. */
static long
list_find_delim(om_slice key, size_t from, om_slice delim)
{
    if (delim.n == 0 || key.n < from + delim.n)
        return -1;
    const uint8_t *hit = memmem(key.p + from, key.n - from, delim.p, delim.n);
    return hit ? (long)(hit - key.p) : -1;
}

om_status
shard_list(lsm_db *db, const shard_list_req *req, shard_list_entry_fn on_entry,
           shard_list_prefix_fn on_prefix, void *arg, shard_list_result *res, char *err,
           size_t errlen)
{
    om_buf lower = OM_BUF_INIT, upper = OM_BUF_INIT, start = OM_BUF_INIT, tmp = OM_BUF_INIT;
    om_buf resume = OM_BUF_INIT, last = OM_BUF_INIT;
    lsm_iter_opts io;
    lsm_iter *it = NULL;
    size_t kofs = req->bucket.n + 1; /* bucket 0x00 */
    bool have_last = false;
    size_t bytes = 0;
    om_status st;

    res->is_truncated = false;
    res->key_count = 0;
    om_buf_reset(&res->next_token);
    OM_TRY(list_validate(req, err, errlen));
    if (req->continuation_token.n > 0)
        OM_TRY(shard_list_token_decode(req, req->continuation_token, &resume, err, errlen));
    if (req->max_keys == 0) {
        om_buf_free(&resume);
        return OM_OK;
    }

    OM_GOTO(shard_lsm_key(req->bucket, req->prefix, &lower));
    if (req->prefix.n == 0 || !shard_prefix_successor(om_buf_slice(&lower), &upper)) {
        /* everything in the bucket: up to bucket 0x01 */
        OM_GOTO(om_buf_set(&upper, req->bucket));
        OM_GOTO(om_buf_append_byte(&upper, 1));
    }
    OM_GOTO(om_buf_set(&start, om_buf_slice(&lower)));
    if (req->continuation_token.n > 0) {
        OM_GOTO(shard_lsm_key(req->bucket, om_buf_slice(&resume), &tmp));
    } else if (req->start_after.n > 0) {
        OM_GOTO(shard_lsm_key(req->bucket, req->start_after, &tmp));
        OM_GOTO(om_buf_append_byte(&tmp, 0)); /* strictly after */
    }
    if (tmp.n > 0 && om_slice_cmp(om_buf_slice(&tmp), om_buf_slice(&start)) > 0)
        OM_GOTO(om_buf_set(&start, om_buf_slice(&tmp)));
    if (om_slice_cmp(om_buf_slice(&start), om_buf_slice(&upper)) >= 0)
        goto done;

    lsm_iter_opts_init(&io);
    io.lower = om_buf_slice(&lower);
    io.upper = om_buf_slice(&upper);
    OM_GOTO(lsm_iter_new(db, &io, &it));
    lsm_iter_seek(it, om_buf_slice(&start));
    while (lsm_iter_valid(it)) {
        om_slice ik = lsm_iter_key(it);
        shard_record rec;
        om_slice key;
        long d;

        if (ik.n < kofs) {
            st = OM_ERR(OM_E_CORRUPT);
            goto fail;
        }
        key = om_slice_make(ik.p + kofs, ik.n - kofs);
        OM_GOTO(shard_record_decode(lsm_iter_value(it), &rec));
        if (rec.type == SHARD_REC_TOMBSTONE ||
            (req->keep != NULL && !req->keep(req->keep_arg, ik))) {
            lsm_iter_next(it);
            continue;
        }
        if (res->key_count == req->max_keys) {
            res->is_truncated = true;
            break;
        }
        d = list_find_delim(key, req->prefix.n, req->delimiter);
        size_t cost = d >= 0 ? (size_t)d + req->delimiter.n + 8
                             : key.n + rec.content_type.n + SHARD_LIST_ENTRY_OVERHEAD +
                                   (req->count_metadata ? rec.metadata.n : 0);
        if (req->max_bytes > 0 && res->key_count > 0 && bytes + cost > req->max_bytes) {
            res->is_truncated = true; /* the token resumes at this entry */
            break;
        }
        bytes += cost;
        if (d >= 0) {
            om_slice cp = om_slice_make(key.p, (size_t)d + req->delimiter.n);
            OM_GOTO(on_prefix(arg, cp));
            res->key_count++;
            have_last = shard_prefix_successor(cp, &last);
            if (!have_last)
                break; /* nothing can follow this common prefix */
            OM_GOTO(shard_lsm_key(req->bucket, om_buf_slice(&last), &tmp));
            lsm_iter_seek(it, om_buf_slice(&tmp));
            continue;
        }
        OM_GOTO(on_entry(arg, key, &rec));
        res->key_count++;
        OM_GOTO(om_buf_set(&last, key));
        OM_GOTO(om_buf_append_byte(&last, 0));
        have_last = true;
        lsm_iter_next(it);
    }
    OM_GOTO(lsm_iter_status(it));
    if (res->is_truncated) {
        if (!have_last) {
            st = OM_ERR(OM_E_INTERNAL); /* truncated implies something was returned */
            goto fail;
        }
        OM_GOTO(shard_list_token_encode(req, om_buf_slice(&last), &res->next_token));
    }
done:
    st = OM_OK;
fail:
    lsm_iter_free(it);
    om_buf_free(&lower);
    om_buf_free(&upper);
    om_buf_free(&start);
    om_buf_free(&tmp);
    om_buf_free(&resume);
    om_buf_free(&last);
    return st;
}
