/*
 * lsm/batch.c -- write batches: building (public API) and decoding (WAL
 * replay, memtable insert). See batch.h for the layout.
 */
#include "lsm/batch.h"

#include <stdlib.h>
#include <string.h>

#include "util/coding.h"

static om_status
batch_reset(lsm_batch *b)
{
    uint8_t hdr[LSM_BATCH_HEADER] = {0};

    om_buf_reset(&b->rep);
    b->bytes = 0;
    return om_buf_append(&b->rep, hdr, sizeof(hdr));
}

om_status
lsm_batch_new(lsm_batch **out)
{
    lsm_batch *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return OM_ERR(OM_E_NOMEM);
    if (batch_reset(b) != OM_OK) {
        free(b);
        return OM_ERR(OM_E_NOMEM);
    }
    *out = b;
    return OM_OK;
}

void
lsm_batch_free(lsm_batch *b)
{
    if (b == NULL)
        return;
    om_buf_free(&b->rep);
    free(b);
}

void
lsm_batch_clear(lsm_batch *b)
{
    /* The header fits in the existing allocation: this cannot fail. */
    om_buf_reset(&b->rep);
    memset(b->rep.p, 0, LSM_BATCH_HEADER);
    b->rep.n = LSM_BATCH_HEADER;
    b->bytes = 0;
}

uint32_t
lsm_batch_count(const lsm_batch *b)
{
    return om_get_fixed32(b->rep.p + 8);
}

void
lsm_batch_set_seq(lsm_batch *b, uint64_t seq)
{
    om_put_fixed64(b->rep.p, seq);
}

static om_status
batch_add(lsm_batch *b, lsm_vtype type, om_slice key, om_slice value)
{
    size_t old = b->rep.n;
    uint32_t count = lsm_batch_count(b);
    om_status st;

    if (key.n > LSM_MAX_KEY_SIZE)
        return OM_ERR(OM_E_INVALID);
    if (value.n > LSM_MAX_VALUE_SIZE)
        return OM_ERR(OM_E_INVALID);
    if (count == UINT32_MAX)
        return OM_ERR(OM_E_INVALID);
    OM_GOTO(om_buf_append_byte(&b->rep, (uint8_t)type));
    OM_GOTO(om_buf_put_lenpref(&b->rep, key));
    if (type == LSM_TYPE_VAL)
        OM_GOTO(om_buf_put_lenpref(&b->rep, value));
    om_put_fixed32(b->rep.p + 8, count + 1);
    b->bytes += key.n + value.n;
    return OM_OK;
fail:
    b->rep.n = old;
    return st;
}

om_status
lsm_batch_put(lsm_batch *b, om_slice key, om_slice value)
{
    return batch_add(b, LSM_TYPE_VAL, key, value);
}

om_status
lsm_batch_del(lsm_batch *b, om_slice key)
{
    return batch_add(b, LSM_TYPE_DEL, key, OM_SLICE_NULL);
}

om_status
lsm_batch_iterate(om_slice rep, lsm_batch_fn fn, void *arg)
{
    uint64_t seq;
    uint32_t count, found = 0;
    om_slice in = rep;

    if (om_slice_get_fixed64(&in, &seq) != OM_OK || om_slice_get_fixed32(&in, &count) != OM_OK)
        return OM_ERR(OM_E_CORRUPT);
    while (in.n > 0) {
        uint8_t type = in.p[0];
        om_slice key, value = OM_SLICE_NULL;

        in.p++;
        in.n--;
        if (type > LSM_TYPE_VAL || om_slice_get_lenpref(&in, &key) != OM_OK)
            return OM_ERR(OM_E_CORRUPT);
        if (type == LSM_TYPE_VAL && om_slice_get_lenpref(&in, &value) != OM_OK)
            return OM_ERR(OM_E_CORRUPT);
        if (key.n > LSM_MAX_KEY_SIZE || found == count || seq + found > LSM_MAX_SEQ)
            return OM_ERR(OM_E_CORRUPT);
        if (fn != NULL)
            OM_TRY(fn(arg, seq + found, (lsm_vtype)type, key, value));
        found++;
    }
    if (found != count)
        return OM_ERR(OM_E_CORRUPT);
    return OM_OK;
}

om_status
lsm_batch_validate(om_slice rep, uint64_t *seq, uint32_t *count)
{
    OM_TRY(lsm_batch_iterate(rep, NULL, NULL));
    *seq = om_get_fixed64(rep.p);
    *count = om_get_fixed32(rep.p + 8);
    return OM_OK;
}

static om_status
batch_apply_one(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    return lsm_mem_add(arg, seq, type, key, value);
}

static om_status
batch_prefetch_one(void *arg, uint64_t seq, lsm_vtype type, om_slice key, om_slice value)
{
    (void)seq;
    (void)type;
    (void)value;
    lsm_mem_prefetch(arg, key);
    return OM_OK;
}

void
lsm_batch_prefetch(om_slice rep, lsm_memtable *m)
{
    (void)lsm_batch_iterate(rep, batch_prefetch_one, m);
}

om_status
lsm_batch_apply(om_slice rep, lsm_memtable *m)
{
    return lsm_batch_iterate(rep, batch_apply_one, m);
}
