/*
 * shard/metrics.h -- what the shard counts and how it shows it: answers by
 * operation and wire status, latency histograms by operation, the Stats
 * answer and the /metrics page (private to shard/; shard_render_metrics is
 * in shard.h).
 *
 * Thread-safety: shard_metrics_sent from any thread (relaxed atomics and
 * rpc_hist); the builders from any thread.
 */
#ifndef OM_SHARD_METRICS_H
#define OM_SHARD_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "lsm/lsm.h"
#include "rpc/rpc.h"
#include "shard/shard.h"
#include "shard/shard_int.h"

#define SHARD_STATS_MAX 64

void shard_metrics_init(shard_metrics *m);

/*
 * shard_metrics_sent -- commit_ops.sent (arg = the shard): count an answer of
 * operation `tag` (shard_op) with wire status `status`, sent at now_ns for a
 * request read at t0_ns.
 */
void shard_metrics_sent(void *arg, unsigned tag, unsigned status, uint64_t t0_ns, uint64_t now_ns);

/*
 * shard_stats_msg -- a StatsResponse and the memory it points into.
 * shard_stats_build fills it (engine statistics, the pipeline's queue
 * waits, requests by operation); shard_stats_fini frees it, built or not.
 * Returns: OM_OK; OM_E_NOMEM.
 */
typedef struct shard_stats_msg {
    Objmeta__StatsResponse sr;
    Objmeta__StatsCounter ctr[SHARD_STATS_MAX], *ptr[SHARD_STATS_MAX];
    char names[2 * LSM_MAX_LEVELS + SHARD_OP_COUNT_][48];
    om_buf text;
} shard_stats_msg;
om_status shard_stats_build(shard *s, shard_stats_msg *m);
void shard_stats_fini(shard_stats_msg *m);

#endif /* OM_SHARD_METRICS_H */
