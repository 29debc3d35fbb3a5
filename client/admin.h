/*
 * client/admin.h -- `objmeta admin ...`: the operator's commands for online
 * ring changes (add-shard, remove-shard, set-weight, rebalance-status),
 * spoken to objmeta-coord. Part of the `objmeta` tool, not of the library.
 *
 * Thread-safety: a command-line entry point; single-threaded.
 */
#ifndef OM_CLIENT_ADMIN_H
#define OM_CLIENT_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

/*
 * objmeta_admin -- run `admin ARGS...` (argv[0] is "admin") against the
 * coordinator at addr. Prints to stdout (JSON with json), errors to stderr
 * (with the request id its requests carry, rid: rpc.h's rule, "" = none).
 * Returns: the tool's exit code (0 ok, 2 usage, 4 unavailable or busy,
 *          5 invalid argument, 6 other).
 */
struct omc_creds;
int objmeta_admin(const char *addr, bool json, uint32_t timeout_ms, const struct omc_creds *cr,
                  const char *rid, int argc, char **argv);

#endif /* OM_CLIENT_ADMIN_H */
