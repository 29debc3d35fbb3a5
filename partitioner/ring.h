/*
 * partitioner/ring.h -- the consistent-hash ring that places keys on shards.
 *
 * A ring is a set of shards, each with a string id, an address and a weight,
 * plus `vnodes_per_weight` and an epoch. Shard s owns
 * weight(s) × vnodes_per_weight points on the 64-bit hash circle; a key is
 * owned by the shard of the first point clockwise of the key's hash.
 *
 * Exact definitions (a contract: every process and every version must agree,
 * tests/partitioner/test_ring.c pins them with golden values):
 *
 *   key hash    = XXH3-64 (seed 0, om_hash64) of  bucket || 0x00 || key
 *   point(s, i) = XXH3-64 (seed 0) of  id(s) || 0x00 || be32(i),
 *                 for i in [0, weight(s) × vnodes_per_weight)
 *   owner(h)    = the shard of the smallest point p with p > h; if no point
 *                 is greater than h, the smallest point (wrap-around).
 *
 * So a point p owns the half-open arc [previous point, p). Points are sorted
 * by (value, shard id bytewise, index); when two points have the same value
 * the one that sorts first owns the arc and the other owns nothing, which
 * makes ties deterministic. Point indices are per shard, so raising a
 * shard's weight only adds points and lowering it only removes points: a
 * weight change moves the least data possible.
 *
 * Rings are immutable values with an atomic reference count: build one with
 * ring_new() or derive one with ring_add_node()/ring_remove_node()/
 * ring_set_weight()/ring_set_addr() (which return a new ring with epoch + 1
 * and leave the input untouched), share it between threads with ring_ref(),
 * release it with ring_unref(). Shards inside a ring are kept sorted by id;
 * a shard index is meaningful only within the ring it came from.
 *
 * Validation (OM_E_INVALID, with a message naming the problem in err):
 * no shards or more than RING_MAX_SHARDS; an id that is empty, longer than
 * RING_ID_MAX or has a byte outside [A-Za-z0-9._:-]; duplicate ids; an
 * address that is empty, longer than RING_ADDR_MAX, or has a space, control
 * byte or ','; duplicate addresses; weight 0 or above RING_MAX_WEIGHT;
 * vnodes_per_weight above RING_MAX_VNODES_PER_WEIGHT; more than
 * RING_MAX_POINTS points in total; epoch 0 (reserved for "no ring").
 *
 * The protobuf codec (Ring / RingShard in proto/objmeta.proto) lives in
 * ring_codec.c; it is the persisted and shipped form of a ring.
 *
 * Thread-safety: a ring is immutable after construction; every function
 * taking `const ring *` may run concurrently from any number of threads.
 * ring_ref()/ring_unref() are atomic. The partitioner does no I/O.
 */
#ifndef OM_PARTITIONER_RING_H
#define OM_PARTITIONER_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/slice.h"
#include "util/status.h"

#define RING_DEFAULT_VNODES_PER_WEIGHT 128u
#define RING_MAX_VNODES_PER_WEIGHT 4096u
#define RING_MAX_WEIGHT 1000u
#define RING_MAX_SHARDS 4096u
#define RING_MAX_POINTS (1u << 22)
#define RING_ID_MAX 64u
#define RING_ADDR_MAX 255u

typedef struct ring ring;

/* One shard as the caller describes it, and as a ring reports it. */
typedef struct ring_shard {
    const char *id;   /* 1..RING_ID_MAX bytes of [A-Za-z0-9._:-] */
    const char *addr; /* "host:port", 1..RING_ADDR_MAX printable bytes */
    uint32_t weight;  /* 1..RING_MAX_WEIGHT */
} ring_shard;

/*
 * ring_new -- build a ring from shards (any order; copied).
 *
 * vnodes_per_weight 0 means RING_DEFAULT_VNODES_PER_WEIGHT.
 * Returns:   OM_OK and *out; OM_E_INVALID with a message in err (see the
 *            validation list above); OM_E_NOMEM.
 * Ownership: *out starts with one reference, released with ring_unref().
 *            err (may be NULL when errlen is 0) is always NUL-terminated.
 */
om_status ring_new(const ring_shard *shards, size_t n, uint32_t vnodes_per_weight, uint64_t epoch,
                   ring **out, char *err, size_t errlen);

/* Take another reference; returns r. */
ring *ring_ref(const ring *r);
/* Drop a reference; the last one frees the ring. NULL is ignored. */
void ring_unref(const ring *r);

uint64_t ring_epoch(const ring *r);
uint32_t ring_vnodes_per_weight(const ring *r);
size_t ring_shard_count(const ring *r);
size_t ring_point_count(const ring *r);

/*
 * ring_shard_at -- the i-th shard in id order (i < ring_shard_count()).
 * Ownership: borrowed; valid while the caller holds a reference to r.
 */
const ring_shard *ring_shard_at(const ring *r, size_t i);

/* ring_find -- index of the shard with this id. Returns: OM_OK; OM_E_NOTFOUND. */
om_status ring_find(const ring *r, const char *id, size_t *idx);

/* The key hash of (bucket, key), as defined above. */
uint64_t ring_key_hash(om_slice bucket, om_slice key);
/* The hash of point `index` of shard `id`, as defined above. */
uint64_t ring_point_hash(const char *id, uint32_t index);

/* ring_owner -- index of the shard owning hash h (binary search, O(log points)). */
size_t ring_owner(const ring *r, uint64_t h);
/* ring_lookup -- the shard owning (bucket, key). Borrowed like ring_shard_at(). */
const ring_shard *ring_lookup(const ring *r, om_slice bucket, om_slice key);

/*
 * ring_shard_fraction -- the fraction of the hash circle shard i owns, in
 * [0, 1]; O(points).
 */
double ring_shard_fraction(const ring *r, size_t i);

/*
 * Derived rings: a copy of r with one change and epoch(r) + 1. r itself is
 * not modified.
 *
 * Returns:   OM_OK and *out; OM_E_INVALID with a message (id already
 *            present / absent, removing the last shard, bad weight, bad
 *            address, ...); OM_E_NOMEM.
 * Ownership: as ring_new().
 */
om_status ring_add_node(const ring *r, const ring_shard *s, ring **out, char *err, size_t errlen);
om_status ring_remove_node(const ring *r, const char *id, ring **out, char *err, size_t errlen);
om_status ring_set_weight(const ring *r, const char *id, uint32_t weight, ring **out, char *err,
                          size_t errlen);
om_status ring_set_addr(const ring *r, const char *id, const char *addr, ring **out, char *err,
                        size_t errlen);

/*
 * ring_same_placement -- true if a and b place every key on the same shard
 * id: same vnodes_per_weight and the same set of (id, weight). Addresses and
 * epochs are ignored.
 */
bool ring_same_placement(const ring *a, const ring *b);
/* ring_equal -- same epoch, vnodes_per_weight and shards (ids, addresses, weights). */
bool ring_equal(const ring *a, const ring *b);

/*
 * One hash range whose owner differs between two rings. The range is
 * [start, end) on the linear hash space; end == 0 stands for 2^64 (the top
 * of the space). Ranges never wrap: an arc that crosses zero is reported
 * as two ranges.
 */
typedef struct ring_move {
    uint64_t start;
    uint64_t end;       /* exclusive; 0 means 2^64 */
    size_t old_shard;   /* index in the old ring */
    size_t new_shard;   /* index in the new ring */
    const char *old_id; /* borrowed from the old ring */
    const char *new_id; /* borrowed from the new ring */
} ring_move;

/*
 * ring_diff -- the hash ranges whose owner (by shard id) differs between
 * old and new, sorted by start, adjacent ranges with the same
 * (old id, new id) merged. Empty (n == 0, *moves == NULL) if the placement
 * is the same.
 *
 * Returns:   OM_OK; OM_E_NOMEM.
 * Ownership: *moves is heap memory the caller free()s; the id pointers
 *            borrow from the rings.
 */
om_status ring_diff(const ring *old_ring, const ring *new_ring, ring_move **moves, size_t *n);

/* ring_range_contains -- h in [start, end), with end == 0 meaning 2^64. */
static inline bool
ring_range_contains(uint64_t start, uint64_t end, uint64_t h)
{
    return h >= start && (end == 0 || h < end);
}

/*
 * ring_format -- a one-line human description appended to out:
 * "epoch=3 vnodes_per_weight=128 shards=[s1@127.0.0.1:7001 w=1, ...]".
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status ring_format(const ring *r, om_buf *out);

/*
 * Codec (ring_codec.c): the protobuf `Ring` message of proto/objmeta.proto.
 *
 * ring_encode -- append the serialized Ring message to out.
 * Returns: OM_OK; OM_E_NOMEM.
 */
om_status ring_encode(const ring *r, om_buf *out);

/*
 * ring_decode -- parse a serialized Ring message and validate it like
 * ring_new() (vnodes_per_weight 0 is rejected: an encoded ring is explicit).
 *
 * Returns:   OM_OK and *out; OM_E_CORRUPT with a message if the bytes are
 *            not a Ring message; OM_E_INVALID with a message if they are
 *            but describe an invalid ring; OM_E_NOMEM.
 * Ownership: as ring_new().
 */
om_status ring_decode(om_slice in, ring **out, char *err, size_t errlen);

/*
 * Protobuf-c structs, for embedding a ring in a request or response
 * (declared in the generated objmeta.pb-c.h; include it to use these).
 *
 * ring_to_pb -- a heap Objmeta__Ring describing r.
 * Returns:   OM_OK and *out; OM_E_NOMEM.
 * Ownership: release *out with ring_pb_free() (everything it points to is
 *            owned by it; nothing borrows from r).
 *
 * ring_from_pb -- validate and build a ring like ring_decode().
 * Returns:   OM_OK and *out; OM_E_INVALID with a message; OM_E_NOMEM.
 * Ownership: pb is only read; *out as ring_new().
 */
struct Objmeta__Ring;
om_status ring_to_pb(const ring *r, struct Objmeta__Ring **out);
void ring_pb_free(struct Objmeta__Ring *pb);
om_status ring_from_pb(const struct Objmeta__Ring *pb, ring **out, char *err, size_t errlen);

#endif /* OM_PARTITIONER_RING_H */
