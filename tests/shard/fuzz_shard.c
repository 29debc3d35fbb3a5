/*
 * tests/shard/fuzz_shard.c -- libFuzzer target for everything the shard
 * parses from clients and from disk: the record decoder, continuation tokens,
 * bucket/key/metadata validation, and whole Requests (as the rpc layer would
 * hand them to the handlers) applied to a real shard in a temporary
 * directory.
 *
 * Input: byte 0 picks the target, the rest is its input.
 *   0  shard_record_decode; a record that decodes must re-encode to the same bytes
 *   1  shard_list_token_decode against a fixed listing
 *   2  the validators (bucket, key, metadata, content type)
 *   *  an objmeta.Request; if it unpacks, Store/Retrieve/Head/Exists/Delete/List
 *      run through shard.c and list.c; a Store that succeeds must read back
 * Invariant violations trap. Built as a libFuzzer binary only with
 * -Dfuzz=true (clang); tests/shard/fuzz_smoke.c runs the entry in every build.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "objmeta.pb-c.h"
#include "shard/list.h"
#include "shard/record.h"
#include "shard/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void fuzz_shard_fini(void);

#define FUZZ_CHECK(x)                                                                              \
    do {                                                                                           \
        if (!(x))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static shard *fuzz_db;

static shard *
fuzz_shard(void)
{
    if (fuzz_db == NULL) {
        char tmpl[] = "/tmp/objmeta-fuzz-shard-XXXXXX";
        const char *dir = getenv("FUZZ_SHARD_DIR");
        shard_opts o;
        if (dir == NULL)
            dir = mkdtemp(tmpl);
        FUZZ_CHECK(dir != NULL);
        shard_opts_init(&o);
        o.lsm.sync_mode = LSM_SYNC_NONE;
        o.lsm.write_buffer_size = 1 << 20;
        o.workers = 1;
        FUZZ_CHECK(shard_open(dir, &o, &fuzz_db) == OM_OK);
    }
    return fuzz_db;
}

void
fuzz_shard_fini(void)
{
    shard_close(fuzz_db);
    fuzz_db = NULL;
}

static om_slice
str_slice(const char *s)
{
    return om_slice_from_str(s ? s : "");
}

static om_status
fuzz_on_entry(void *arg, om_slice key, const shard_record *rec)
{
    FUZZ_CHECK(rec->type == SHARD_REC_LIVE);
    FUZZ_CHECK(om_utf8_valid(key));
    (*(uint32_t *)arg)++;
    return OM_OK;
}

static om_status
fuzz_on_prefix(void *arg, om_slice cp)
{
    FUZZ_CHECK(cp.n > 0);
    (*(uint32_t *)arg)++;
    return OM_OK;
}

static void
fuzz_request(const Objmeta__Request *req)
{
    shard *s = fuzz_shard();
    char err[256];
    shard_obj_info info;
    om_buf raw = OM_BUF_INIT;
    shard_record rec;

    switch (req->body_case) {
    case OBJMETA__REQUEST__BODY_STORE: {
        const Objmeta__StoreRequest *r = req->store;
        shard_store_args a = {.bucket = str_slice(r->bucket),
                              .key = str_slice(r->key),
                              .data = om_slice_make(r->data.data, r->data.len),
                              .metadata = str_slice(r->metadata_json),
                              .content_type = str_slice(r->content_type)};
        if (r->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_ABSENT && r->if_absent)
            a.cond.kind = SHARD_COND_IF_ABSENT;
        else if (r->condition_case == OBJMETA__STORE_REQUEST__CONDITION_IF_VERSION)
            a.cond = (shard_cond){SHARD_COND_IF_VERSION, r->if_version};
        if (r->forced_case == OBJMETA__STORE_REQUEST__FORCED_FORCED_VERSION)
            a.forced_version = r->forced_version;
        om_status st = shard_store(s, &a, &info, err, sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_INVALID || st == OM_E_PRECONDITION);
        if (st == OM_OK && a.forced_version == 0) {
            FUZZ_CHECK(shard_get(s, a.bucket, a.key, &raw, &rec, err, sizeof(err)) == OM_OK);
            FUZZ_CHECK(om_slice_eq(rec.data, a.data) && rec.version == info.version);
        }
        break;
    }
    case OBJMETA__REQUEST__BODY_RETRIEVE:
    case OBJMETA__REQUEST__BODY_HEAD: {
        const char *b = req->body_case == OBJMETA__REQUEST__BODY_HEAD ? req->head->bucket
                                                                      : req->retrieve->bucket;
        const char *k =
            req->body_case == OBJMETA__REQUEST__BODY_HEAD ? req->head->key : req->retrieve->key;
        om_status st = shard_get(s, str_slice(b), str_slice(k), &raw, &rec, err, sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_NOTFOUND || st == OM_E_INVALID);
        break;
    }
    case OBJMETA__REQUEST__BODY_EXISTS: {
        om_status st = shard_exists(s, str_slice(req->exists->bucket), str_slice(req->exists->key),
                                    err, sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_NOTFOUND || st == OM_E_INVALID);
        break;
    }
    case OBJMETA__REQUEST__BODY_DELETE: {
        const Objmeta__DeleteRequest *r = req->delete_;
        shard_cond c = {SHARD_COND_NONE, 0};
        if (r->condition_case == OBJMETA__DELETE_REQUEST__CONDITION_IF_VERSION)
            c = (shard_cond){SHARD_COND_IF_VERSION, r->if_version};
        om_status st = shard_delete(s, str_slice(r->bucket), str_slice(r->key), c,
                                    r->forced_case == OBJMETA__DELETE_REQUEST__FORCED_FORCED_VERSION
                                        ? r->forced_version
                                        : 0,
                                    &info, err, sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_NOTFOUND || st == OM_E_INVALID ||
                   st == OM_E_PRECONDITION);
        break;
    }
    case OBJMETA__REQUEST__BODY_LIST: {
        const Objmeta__ListRequest *r = req->list;
        shard_list_req lr = {.bucket = str_slice(r->bucket),
                             .prefix = str_slice(r->prefix),
                             .delimiter = str_slice(r->delimiter),
                             .start_after = str_slice(r->start_after),
                             .continuation_token = str_slice(r->continuation_token),
                             .max_keys = r->max_keys % (SHARD_LIST_MAX + 2)};
        shard_list_result res = {.next_token = OM_BUF_INIT};
        uint32_t seen = 0;
        om_status st = shard_list(shard_db(s), &lr, fuzz_on_entry, fuzz_on_prefix, &seen, &res, err,
                                  sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_INVALID);
        if (st == OM_OK) {
            FUZZ_CHECK(seen == res.key_count && seen <= lr.max_keys);
            FUZZ_CHECK(res.is_truncated == (res.next_token.n > 0));
        }
        om_buf_free(&res.next_token);
        break;
    }
    default:
        break;
    }
    om_buf_free(&raw);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];

    if (size == 0)
        return 0;
    om_slice in = om_slice_make(data + 1, size - 1);
    switch (data[0]) {
    case 0: {
        shard_record r;
        om_buf again = OM_BUF_INIT;
        shard_record h;
        om_status hst = shard_record_decode_head(in, &h);
        if (shard_record_decode(in, &r) == OM_OK) {
            /* a record that decodes has a head that decodes to the same fields */
            FUZZ_CHECK(hst == OM_OK && h.version == r.version && h.type == r.type &&
                       h.created_ms == r.created_ms && h.etag == r.etag);
            FUZZ_CHECK(r.data.n == r.size);
            /* canonical varints re-encode identically; a non-canonical one decodes too */
            FUZZ_CHECK(shard_record_encode(&r, &again) == OM_OK);
            shard_record r2;
            FUZZ_CHECK(shard_record_decode(om_buf_slice(&again), &r2) == OM_OK);
            FUZZ_CHECK(r2.version == r.version && om_slice_eq(r2.data, r.data) &&
                       om_slice_eq(r2.metadata, r.metadata));
        }
        om_buf_free(&again);
        break;
    }
    case 1: {
        shard_list_req req = {.bucket = om_slice_from_str("bkt"),
                              .prefix = om_slice_from_str("p/"),
                              .delimiter = om_slice_from_str("/")};
        om_buf resume = OM_BUF_INIT;
        om_status st = shard_list_token_decode(&req, in, &resume, err, sizeof(err));
        FUZZ_CHECK(st == OM_OK || st == OM_E_INVALID);
        om_buf_free(&resume);
        break;
    }
    case 2:
        (void)shard_validate_bucket(in, err, sizeof(err));
        (void)shard_validate_key(in, err, sizeof(err));
        (void)shard_validate_metadata(in, 4096, 8, err, sizeof(err));
        (void)shard_validate_content_type(in, err, sizeof(err));
        break;
    default: {
        Objmeta__Request *req = objmeta__request__unpack(NULL, in.n, in.p);
        if (req != NULL) {
            fuzz_request(req);
            objmeta__request__free_unpacked(req, NULL);
        }
        break;
    }
    }
    return 0;
}
