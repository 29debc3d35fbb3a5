/*
 * partitioner/ring_codec.c -- a ring as the protobuf `Ring` message of
 * proto/objmeta.proto: the form the coordinator persists and ships to shards
 * (SetRing, GetRing).
 *
 * Only the ring's definition is encoded (epoch, vnodes_per_weight, shards
 * in id order); the points are recomputed on decode, so a decoded ring
 * places keys exactly as the encoded one did. Decoding validates everything
 * ring_new() validates and additionally rejects vnodes_per_weight 0 (an
 * encoded ring always states it) and epoch 0.
 *
 * This is the only file of partitioner/ that knows protobuf-c.
 */
#define OM_LOG_MODULE "ring"
#include "partitioner/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "objmeta.pb-c.h"
#include "util/log.h"

void
ring_pb_free(struct Objmeta__Ring *pb)
{
    if (pb == NULL)
        return;
    for (size_t i = 0; i < pb->n_shards; i++) {
        if (pb->shards[i] == NULL)
            continue;
        free(pb->shards[i]->id);
        free(pb->shards[i]->addr);
        free(pb->shards[i]);
    }
    free(pb->shards);
    free(pb);
}

om_status
ring_to_pb(const ring *r, struct Objmeta__Ring **out)
{
    size_t n = ring_shard_count(r);
    Objmeta__Ring *pb = malloc(sizeof(*pb));

    if (pb == NULL)
        return OM_ERR(OM_E_NOMEM);
    objmeta__ring__init(pb);
    pb->epoch = ring_epoch(r);
    pb->vnodes_per_weight = ring_vnodes_per_weight(r);
    pb->shards = calloc(n, sizeof(*pb->shards));
    if (pb->shards == NULL) {
        free(pb);
        return OM_ERR(OM_E_NOMEM);
    }
    for (size_t i = 0; i < n; i++) {
        const ring_shard *s = ring_shard_at(r, i);
        Objmeta__RingShard *ps = malloc(sizeof(*ps));

        if (ps == NULL)
            goto nomem;
        objmeta__ring_shard__init(ps);
        pb->shards[i] = ps;
        pb->n_shards = i + 1;
        ps->id = strdup(s->id);
        ps->addr = strdup(s->addr);
        ps->weight = s->weight;
        if (ps->id == NULL || ps->addr == NULL)
            goto nomem;
    }
    *out = pb;
    return OM_OK;
nomem:
    ring_pb_free(pb);
    return OM_ERR(OM_E_NOMEM);
}

om_status
ring_from_pb(const struct Objmeta__Ring *pb, ring **out, char *err, size_t errlen)
{
    ring_shard *spec;
    om_status st;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (pb->vnodes_per_weight == 0) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "ring message has no vnodes_per_weight");
        return OM_ERR(OM_E_INVALID);
    }
    if (pb->n_shards == 0 || pb->n_shards > RING_MAX_SHARDS) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "ring message has %zu shards; 1..%u are allowed", pb->n_shards,
                     RING_MAX_SHARDS);
        return OM_ERR(OM_E_INVALID);
    }
    spec = calloc(pb->n_shards, sizeof(*spec));
    if (spec == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (size_t i = 0; i < pb->n_shards; i++) {
        const Objmeta__RingShard *ps = pb->shards[i];
        spec[i].id = ps->id != NULL ? ps->id : "";
        spec[i].addr = ps->addr != NULL ? ps->addr : "";
        spec[i].weight = ps->weight;
    }
    st = ring_new(spec, pb->n_shards, pb->vnodes_per_weight, pb->epoch, out, err, errlen);
    free(spec);
    return st;
}

om_status
ring_encode(const ring *r, om_buf *out)
{
    Objmeta__Ring *pb;
    size_t len;
    om_status st;

    OM_TRY(ring_to_pb(r, &pb));
    len = objmeta__ring__get_packed_size(pb);
    st = om_buf_reserve(out, len);
    if (st == OM_OK) {
        size_t packed = objmeta__ring__pack(pb, out->p + out->n);
        /* pack writes exactly get_packed_size bytes: an invariant of protobuf-c */
        if (packed != len)
            st = OM_ERR(OM_E_INTERNAL);
        else
            out->n += len;
    }
    ring_pb_free(pb);
    return st;
}

om_status
ring_decode(om_slice in, ring **out, char *err, size_t errlen)
{
    Objmeta__Ring *pb;
    om_status st;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    pb = objmeta__ring__unpack(NULL, in.n, in.p);
    if (pb == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "ring bytes (%zu) are not a valid Ring message", in.n);
        return OM_ERR(OM_E_CORRUPT);
    }
    st = ring_from_pb(pb, out, err, errlen);
    objmeta__ring__free_unpacked(pb, NULL);
    return st;
}
