/*
 * lsm/lsm_int.h -- definitions shared by the files of lsm/ (private).
 *
 * Internal keys. Every entry inside the engine is keyed by
 *
 *     internal key = user key | fixed64_le(sequence << 8 | type)
 *
 * Sequences are assigned by the write path, one per put/delete, strictly
 * increasing across the database's life (persisted in the MANIFEST). Internal
 * keys order by user key ascending (bytewise), then by sequence descending,
 * then type descending, so a seek to (key, snapshot_seq, LSM_TYPE_SEEK) lands
 * on the newest entry of `key` visible at the snapshot.
 *
 * Internal iterators. Memtables, blocks, tables, levels and merges all present
 * the same forward-only iterator (lsm_it) over internal keys; the public
 * lsm_iter wraps a merge of them and hides old versions and tombstones.
 *
 * Thread-safety: declarations only.
 */
#ifndef OM_LSM_LSM_INT_H
#define OM_LSM_LSM_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "lsm/lsm.h"
#include "util/coding.h"
#include "util/slice.h"
#include "util/status.h"

typedef enum lsm_vtype {
    LSM_TYPE_DEL = 0, /* tombstone */
    LSM_TYPE_VAL = 1, /* value */
} lsm_vtype;

/* The type used in seek targets: the highest, so it sorts first for a given sequence. */
#define LSM_TYPE_SEEK LSM_TYPE_VAL
#define LSM_MAX_SEQ ((UINT64_C(1) << 56) - 1)
#define LSM_TRAILER_SIZE 8

static inline uint64_t
lsm_trailer_pack(uint64_t seq, lsm_vtype type)
{
    return (seq << 8) | (uint64_t)type;
}

/* Split an internal key (n >= 8 checked by the caller or by lsm_ikey_parse). */
typedef struct lsm_ikey {
    om_slice user_key;
    uint64_t seq;
    lsm_vtype type;
} lsm_ikey;

/* Returns OM_OK, or OM_E_CORRUPT for a key shorter than the trailer or an unknown type. */
static inline om_status
lsm_ikey_parse(om_slice ikey, lsm_ikey *out)
{
    uint64_t t;

    if (ikey.n < LSM_TRAILER_SIZE)
        return OM_E_CORRUPT;
    t = om_get_fixed64(ikey.p + ikey.n - LSM_TRAILER_SIZE);
    if ((t & 0xff) > LSM_TYPE_VAL)
        return OM_E_CORRUPT;
    out->user_key = om_slice_make(ikey.p, ikey.n - LSM_TRAILER_SIZE);
    out->seq = t >> 8;
    out->type = (lsm_vtype)(t & 0xff);
    return OM_OK;
}

static inline om_slice
lsm_ikey_user(om_slice ikey)
{
    return om_slice_make(ikey.p, ikey.n - LSM_TRAILER_SIZE);
}

static inline uint64_t
lsm_ikey_trailer(om_slice ikey)
{
    return om_get_fixed64(ikey.p + ikey.n - LSM_TRAILER_SIZE);
}

/* Append user_key | trailer to b. */
static inline om_status
lsm_ikey_append(om_buf *b, om_slice user_key, uint64_t seq, lsm_vtype type)
{
    OM_TRY(om_buf_append(b, user_key.p, user_key.n));
    return om_buf_put_fixed64(b, lsm_trailer_pack(seq, type));
}

/*
 * Internal key order: user key ascending (bytewise, shorter first on a common
 * prefix, as om_slice_cmp), then trailer (seq, type) descending. Inline: it
 * is the comparison of every merge, seek and point lookup.
 */
static inline int
lsm_ikey_cmp(om_slice a, om_slice b)
{
    size_t ua = a.n - LSM_TRAILER_SIZE, ub = b.n - LSM_TRAILER_SIZE, m = ua < ub ? ua : ub;
    int r = m > 0 ? memcmp(a.p, b.p, m) : 0;
    uint64_t ta, tb;

    if (r == 0 && ua != ub)
        r = ua < ub ? -1 : 1;
    if (r != 0)
        return r;
    ta = lsm_ikey_trailer(a);
    tb = lsm_ikey_trailer(b);
    return ta > tb ? -1 : (ta < tb ? 1 : 0);
}

/*
 * The internal iterator. Implementations embed `lsm_it` as their first member.
 * Contract: after seek_first/seek/next, valid() tells whether key()/value()
 * may be called; key()/value() slices stay valid until the next movement or
 * free. status() is OM_OK unless an error (e.g. a corrupt block) ended the
 * iteration early; an iterator that hit an error is not valid.
 */
typedef struct lsm_it lsm_it;

typedef struct lsm_it_ops {
    bool (*valid)(const lsm_it *it);
    void (*seek_first)(lsm_it *it);
    void (*seek)(lsm_it *it, om_slice ikey); /* first entry >= ikey in internal order */
    void (*next)(lsm_it *it);
    om_slice (*key)(const lsm_it *it); /* internal key */
    om_slice (*value)(const lsm_it *it);
    om_status (*status)(const lsm_it *it);
    void (*free)(lsm_it *it);
} lsm_it_ops;

struct lsm_it {
    const lsm_it_ops *ops;
};

/*
 * LSM_IT_OPS(p, free_fn) -- the lsm_it_ops of an iterator whose operations
 * are named p_valid, p_seek_first, p_seek, p_next, p_key, p_value and
 * p_status (every iterator in lsm/ follows this), freed by free_fn.
 */
#define LSM_IT_OPS(p, free_fn)                                                                     \
    {                                                                                              \
        .valid = p##_valid, .seek_first = p##_seek_first, .seek = p##_seek, .next = p##_next,      \
        .key = p##_key, .value = p##_value, .status = p##_status, .free = free_fn,                 \
    }

static inline bool
lsm_it_valid(const lsm_it *it)
{
    return it->ops->valid(it);
}
static inline void
lsm_it_seek_first(lsm_it *it)
{
    it->ops->seek_first(it);
}
static inline void
lsm_it_seek(lsm_it *it, om_slice ikey)
{
    it->ops->seek(it, ikey);
}
static inline void
lsm_it_next(lsm_it *it)
{
    it->ops->next(it);
}
static inline om_slice
lsm_it_key(const lsm_it *it)
{
    return it->ops->key(it);
}
static inline om_slice
lsm_it_value(const lsm_it *it)
{
    return it->ops->value(it);
}
static inline om_status
lsm_it_status(const lsm_it *it)
{
    return it->ops->status(it);
}
static inline void
lsm_it_free(lsm_it *it)
{
    if (it != NULL)
        it->ops->free(it);
}

/*
 * lsm_merge_it_new -- merge n child iterators (a heap over internal keys).
 * Ownership: takes the children (freed with the merge, also on failure).
 */
om_status lsm_merge_it_new(lsm_it **children, int n, lsm_it **out);

/* Logging through the db's callback: the engine never calls om_log directly. */
void lsm_logf(const lsm_opts *o, om_log_level level, const char *fmt, ...) OM_PRINTF(3, 4);

#endif /* OM_LSM_LSM_INT_H */
