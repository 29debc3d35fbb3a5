/*
 * shard/fence.c -- the ring fence (fence.h): the installed ring check, run
 * for every keyed request and, key by key, inside a fenced List.
 */
#include "shard/fence.h"

#include <stdio.h>

#include "shard/shard_int.h"

void
shard_set_ring_check(shard *s, shard_ring_check_fn fn, void *arg)
{
    s->ring_check = fn;
    s->ring_check_arg = arg;
}

void
shard_set_move_fence(shard *s, shard_ring_check_fn fn, void *arg)
{
    s->move_fence = fn;
    s->move_fence_arg = arg;
}

om_status
shard_fence_check(shard *s, uint64_t ring_epoch, om_slice bucket, om_slice key, char *err,
                  size_t errlen)
{
    om_status st;

    if (s->ring_check == NULL)
        return OM_OK;
    if (errlen > 0)
        err[0] = '\0';
    st = s->ring_check(s->ring_check_arg, ring_epoch, bucket, key, err, errlen);
    if (st == OM_OK && key.n > 0 && s->move_fence != NULL)
        st = s->move_fence(s->move_fence_arg, ring_epoch, bucket, key, err, errlen);
    if (st != OM_OK && errlen > 0 && err[0] == '\0')
        snprintf(err, errlen, "not the owner of this key");
    return st;
}

static bool
fence_list_owns(void *arg, om_slice lsm_key)
{
    shard_fence_list *f = arg;
    size_t kofs = f->bucket.n + 1;
    char err[8];

    if (lsm_key.n <= kofs)
        return true;
    return f->s->ring_check(f->s->ring_check_arg, f->epoch, f->bucket,
                            om_slice_make(lsm_key.p + kofs, lsm_key.n - kofs), err,
                            sizeof(err)) == OM_OK;
}

void
shard_fence_list_init(shard *s, uint64_t ring_epoch, om_slice bucket, shard_fence_list *f,
                      shard_list_req *req)
{
    *f = (shard_fence_list){.s = s, .epoch = ring_epoch, .bucket = bucket};
    if (s->ring_check != NULL && ring_epoch != 0) {
        req->keep = fence_list_owns; /* migration: list only the keys this shard owns */
        req->keep_arg = f;
    }
}

om_status
shard_fence_list_done(const shard_fence_list *f, char *err, size_t errlen)
{
    om_status st;

    if (f->s->ring_check == NULL || f->epoch == 0)
        return OM_OK;
    st = f->s->ring_check(f->s->ring_check_arg, f->epoch, f->bucket, OM_SLICE_NULL, err, errlen);
    if (st != OM_OK && errlen > 0)
        snprintf(err, errlen,
                 "the ring moved past epoch %llu while this List ran (a ring change switched); "
                 "retry by the new ring",
                 (unsigned long long)f->epoch);
    return st;
}
