/*
 * client/admin_int.h -- what admin.c (ring changes, status) and
 * admin_group.c (replica groups) share: the command's state and the calls
 * to the coordinator. Private to client/.
 */
#ifndef OM_CLIENT_ADMIN_INT_H
#define OM_CLIENT_ADMIN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "client/client.h"
#include "rpc/rpc.h"

enum { A_OK = 0, A_USAGE = 2, A_UNAVAILABLE = 4, A_INVALID = 5, A_OTHER = 6, A_DIFFER = 7 };

typedef struct admin {
    const char *addr;
    bool json;
    uint32_t timeout_ms;
    rpc_sync_client *c;
    const omc_creds *cr; /* --ca --cert --key --auth-token of the tool */
    rpc_tls *tls;
    int exit_code;   /* set when the first contact failed (tool_explain) */
    const char *rid; /* request_id of every request */
    /* options */
    bool help, wait;
    const char *id, *shard_addr;
    long weight;
    const char *replicas, *group, *replica, *shards; /* replica groups (admin_group.c) */
    long ranges;
} admin;

/* The exit code for a status. */
int admin_exit(om_status st);
/* A usage error (exit 2) with msg and arg. */
int admin_usage_error(const char *msg, const char *arg);
/* Send req to the coordinator; on OM_OK *resp is an OK response the caller frees (errors are
 * printed, naming `what`). */
om_status admin_call(admin *a, const Objmeta__Request *req, Objmeta__Response **resp,
                     const char *what);
/* Follow the ring change to to_epoch until it is over; an exit code. */
int wait_change(admin *a, uint64_t to_epoch);

/* admin_group.c: is cmd one of its commands, and run it (an exit code). */
bool admin_is_group_cmd(const char *cmd);
int admin_group_run(admin *a, const char *cmd);

#endif /* OM_CLIENT_ADMIN_INT_H */
