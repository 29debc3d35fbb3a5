/*
 * shard/list_page.h -- one page of a List request as a ListResponse: the
 * listing (shard/list.h) through the ring fence, its entries and common
 * prefixes turned into protobuf values (private to shard/).
 *
 * Ownership: the page's strings are its own until shard_list_page_fini.
 * Thread-safety: any thread (the worker pool runs it).
 */
#ifndef OM_SHARD_LIST_PAGE_H
#define OM_SHARD_LIST_PAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "rpc/rpc.h"
#include "shard/fence.h"
#include "shard/list.h"
#include "shard/shard.h"

/* What a ListRequest asks (slices that outlive the call). */
typedef struct shard_list_args {
    om_slice bucket, prefix, delimiter, start_after, token;
    uint32_t max_keys; /* 0 = the default; clamped to SHARD_LIST_MAX (objmeta.proto) */
    bool include_metadata;
    uint64_t ring_epoch; /* keys the ring of this epoch gives another shard are skipped */
} shard_list_args;

/* The strings of one ObjectInfo, NUL-terminated for protobuf-c. */
typedef struct shard_info_strings {
    char *content_type;
    char *metadata;
    char etag[17];
} shard_info_strings;

typedef struct shard_list_page {
    Objmeta__ListResponse lr;
    const char *bucket;
    bool include_metadata;
    Objmeta__ObjectInfo *infos, **entries;
    shard_info_strings *strs;
    char **keys, **prefixes;
    size_t n_entries, n_prefixes, cap;
    shard_list_result res;
} shard_list_page;

/*
 * shard_list_page_build -- list one page into *p (p->lr is the response).
 * Returns: OM_OK; OM_E_INVALID (bucket, token: message in err); OM_E_NOMEM;
 *          engine errors. Call shard_list_page_fini in every case.
 */
om_status shard_list_page_build(shard *s, const shard_list_args *a, shard_list_page *p, char *err,
                                size_t errlen);
void shard_list_page_fini(shard_list_page *p);

#endif /* OM_SHARD_LIST_PAGE_H */
