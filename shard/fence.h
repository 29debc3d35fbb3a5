/*
 * shard/fence.h -- the ring fence: the one check every keyed request and
 * every List passes before it touches the engine (private to shard/).
 *
 * The shard itself knows no rings: main.c installs the check of shard_mig
 * (migrate.h: which epochs are served and which keys this shard owns under
 * each) with shard_set_ring_check. Without a check every request is served.
 *
 * Thread-safety: shard_fence_check and the List filter from any thread; the
 * check is installed before requests are served (shard.h).
 */
#ifndef OM_SHARD_FENCE_H
#define OM_SHARD_FENCE_H

#include <stdint.h>

#include "shard/list.h"
#include "shard/shard.h"

/*
 * shard_fence_check -- may this shard serve a request routed with ring_epoch
 * for (bucket, key) (key empty for a List)?
 * Returns: OM_OK; OM_E_WRONG_SHARD with a message in err.
 */
om_status shard_fence_check(shard *s, uint64_t ring_epoch, om_slice bucket, om_slice key, char *err,
                            size_t errlen);

/*
 * The ownership filter of a fenced List: while a ring change is under way a
 * page holds only the keys this shard owns under the request's epoch.
 * shard_fence_list_init sets req->keep to it (through *f, which must outlive
 * the listing) when the request is fenced (epoch != 0 and a check installed).
 */
typedef struct shard_fence_list {
    shard *s;
    uint64_t epoch;
    om_slice bucket;
} shard_fence_list;
void shard_fence_list_init(shard *s, uint64_t ring_epoch, om_slice bucket, shard_fence_list *f,
                           shard_list_req *req);
/*
 * shard_fence_list_done -- after the scan: was the page filtered by the
 * request's ring throughout? A List is admitted (shard_fence_check) when its
 * epoch is the shard's cur or pending ring, but it runs later on a worker;
 * if the ring switched meanwhile, the epoch became `prev`, whose per-key
 * check keeps only keys owned under prev *and* cur -- the keys that moved
 * away would be silently missing from a page routed by the old ring (a
 * follower coordinator that has not heard of the switch yet). Rings only
 * move forward, so the epoch still being cur or pending now means it was
 * throughout. Returns: OM_OK; OM_E_WRONG_SHARD (err says why; the
 * coordinator retries by the new ring).
 */
om_status shard_fence_list_done(const shard_fence_list *f, char *err, size_t errlen);

#endif /* OM_SHARD_FENCE_H */
