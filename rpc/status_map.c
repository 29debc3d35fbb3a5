/*
 * rpc/status_map.c -- the one table between util's om_status and the wire
 * Status enum of proto/objmeta.proto (STYLE.md §5).
 *
 * Each row maps one om_status to its wire code. Rows marked `canonical` also
 * define the way back; om codes without a wire counterpart (NOMEM, IO) map
 * one way to INTERNAL. Every wire code has exactly one canonical row, which
 * tests/rpc/test_status_map.c checks, and rpc/FRAMING.md shows the same
 * table for people.
 */
#include <stddef.h>

#include "rpc/rpc.h"

typedef struct status_row {
    om_status om;
    Objmeta__Status wire;
    const char *wire_name;
    int canonical; /* 1: this row also maps wire -> om */
} status_row;

static const status_row status_table[] = {
    {OM_OK, OBJMETA__STATUS__OK, "OK", 1},
    {OM_E_NOTFOUND, OBJMETA__STATUS__NOT_FOUND, "NOT_FOUND", 1},
    {OM_E_INVALID, OBJMETA__STATUS__INVALID_ARGUMENT, "INVALID_ARGUMENT", 1},
    {OM_E_PRECONDITION, OBJMETA__STATUS__PRECONDITION_FAILED, "PRECONDITION_FAILED", 1},
    {OM_E_WRONG_SHARD, OBJMETA__STATUS__WRONG_SHARD, "WRONG_SHARD", 1},
    {OM_E_UNAVAILABLE, OBJMETA__STATUS__UNAVAILABLE, "UNAVAILABLE", 1},
    {OM_E_BUSY, OBJMETA__STATUS__BUSY, "BUSY", 1},
    {OM_E_CORRUPT, OBJMETA__STATUS__CORRUPTION, "CORRUPTION", 1},
    {OM_E_INTERNAL, OBJMETA__STATUS__INTERNAL, "INTERNAL", 1},
    {OM_E_TIMEOUT, OBJMETA__STATUS__TIMEOUT, "TIMEOUT", 1},
    {OM_E_UNAUTHENTICATED, OBJMETA__STATUS__UNAUTHENTICATED, "UNAUTHENTICATED", 1},
    {OM_E_PERMISSION, OBJMETA__STATUS__PERMISSION_DENIED, "PERMISSION_DENIED", 1},
    {OM_E_NOMEM, OBJMETA__STATUS__INTERNAL, "INTERNAL", 0},
    {OM_E_IO, OBJMETA__STATUS__INTERNAL, "INTERNAL", 0},
};

#define STATUS_ROWS (sizeof(status_table) / sizeof(status_table[0]))

Objmeta__Status
rpc_status_to_proto(om_status st)
{
    for (size_t i = 0; i < STATUS_ROWS; i++)
        if (status_table[i].om == st)
            return status_table[i].wire;
    return OBJMETA__STATUS__INTERNAL;
}

om_status
rpc_status_from_proto(Objmeta__Status s)
{
    for (size_t i = 0; i < STATUS_ROWS; i++)
        if (status_table[i].canonical && status_table[i].wire == s)
            return status_table[i].om;
    return OM_E_INTERNAL;
}

om_status
rpc_response_status(const Objmeta__Response *resp)
{
    return rpc_status_from_proto(resp->status);
}

const char *
rpc_proto_status_name(Objmeta__Status s)
{
    for (size_t i = 0; i < STATUS_ROWS; i++)
        if (status_table[i].canonical && status_table[i].wire == s)
            return status_table[i].wire_name;
    return "?";
}
