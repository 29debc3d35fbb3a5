/*
 * lsm/filename.c -- builds and parses the names listed in filename.h.
 */
#include "lsm/filename.h"

#include <stdio.h>
#include <string.h>

void
lsm_fname(char *buf, size_t n, const char *dir, lsm_ftype type, uint64_t number)
{
    unsigned long long num = (unsigned long long)number;

    switch (type) {
    case LSM_FT_LOG:
        snprintf(buf, n, "%s/%06llu.log", dir, num);
        break;
    case LSM_FT_SST:
        snprintf(buf, n, "%s/%06llu.sst", dir, num);
        break;
    case LSM_FT_MANIFEST:
        snprintf(buf, n, "%s/MANIFEST-%06llu", dir, num);
        break;
    case LSM_FT_CURRENT:
        snprintf(buf, n, "%s/CURRENT", dir);
        break;
    case LSM_FT_TEMP:
        snprintf(buf, n, "%s/CURRENT.tmp", dir);
        break;
    case LSM_FT_LOCK:
        snprintf(buf, n, "%s/LOCK", dir);
        break;
    }
}

/* Parse a decimal number of up to 19 digits filling all of [p, end). */
static om_status
fname_number(const char *p, const char *end, uint64_t *out)
{
    uint64_t v = 0;

    if (p == end || end - p > 19)
        return OM_E_INVALID;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return OM_E_INVALID;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return OM_OK;
}

om_status
lsm_fname_parse(const char *name, lsm_ftype *type, uint64_t *number)
{
    size_t n = strlen(name);
    uint64_t num = 0;

    if (strcmp(name, "CURRENT") == 0) {
        *type = LSM_FT_CURRENT;
    } else if (strcmp(name, "CURRENT.tmp") == 0) {
        *type = LSM_FT_TEMP;
    } else if (strcmp(name, "LOCK") == 0) {
        *type = LSM_FT_LOCK;
    } else if (strncmp(name, "MANIFEST-", 9) == 0) {
        OM_TRY(fname_number(name + 9, name + n, &num));
        *type = LSM_FT_MANIFEST;
    } else if (n > 4 && strcmp(name + n - 4, ".log") == 0) {
        OM_TRY(fname_number(name, name + n - 4, &num));
        *type = LSM_FT_LOG;
    } else if (n > 4 && strcmp(name + n - 4, ".sst") == 0) {
        OM_TRY(fname_number(name, name + n - 4, &num));
        *type = LSM_FT_SST;
    } else {
        return OM_E_INVALID;
    }
    *number = num;
    return OM_OK;
}
