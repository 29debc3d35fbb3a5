/*
 * coordinator/groups_int.h -- the replica group table shared by groups.c
 * (the table, the watch, routing) and group_admin.c (the admin requests).
 * Private to coordinator/. Loop thread only.
 */
#ifndef OM_COORDINATOR_GROUPS_INT_H
#define OM_COORDINATOR_GROUPS_INT_H

#include <event2/util.h>
#include <stdbool.h>
#include <stdint.h>

#include "coordinator/coord_int.h"
#include "util/slice.h"
#include "util/status.h"

#define COORD_GROUP_MAX_REPLICAS 5

typedef struct coord_groups coord_groups;

typedef struct coord_replica {
    char *id;
    char *addr;
    bool in_sync;
} coord_replica;

/* A group configuration as the JSON in etcd holds it. */
typedef struct coord_group_conf {
    char *id;
    uint64_t term;
    char *primary; /* a replica id */
    coord_replica *replicas;
    size_t nreplicas;
} coord_group_conf;

typedef struct coord_group {
    coord_group_conf conf; /* conf.id always set; the rest only with have_config */
    bool have_config;
    int64_t config_rev;  /* mod_revision of the config key: the configuration version */
    bool leader_present; /* the leader key exists */
    bool leader_seen;    /* it existed at some time since this coordinator started */
    char leader[300];    /* its value */
    uint64_t primary_changes;
    bool touched; /* changed by the watch batch being applied (groups.c) */
} coord_group;

/* Decode / encode the config key's JSON. decode: OM_E_INVALID with err naming the problem. */
om_status coord_group_conf_decode(om_slice json, coord_group_conf *out, char *err, size_t errlen);
om_status coord_group_conf_encode(const coord_group_conf *g, om_buf *out);
void coord_group_conf_clear(coord_group_conf *g);
const coord_replica *coord_group_replica(const coord_group_conf *g, const char *rid);
size_t coord_group_in_sync_count(const coord_group_conf *g);

/* The table (NULL / 0 with the file backend). */
coord_group *coord_group_find(const coord *c, const char *id);
size_t coord_groups_count(const coord *c);
coord_group *coord_group_at(const coord *c, size_t i);
/* "<prefix>/groups/" (NULL with the file backend). */
const char *coord_groups_dir(const coord *c);
/* The configured primary's address, or NULL. */
const char *coord_group_primary_addr(const coord_group *g);
/* Read the whole table again (an event callback; arg = coord). */
void coord_groups_reload_cb(evutil_socket_t fd, short what, void *arg);

#endif /* OM_COORDINATOR_GROUPS_INT_H */
