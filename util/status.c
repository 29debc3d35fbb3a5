/*
 * util/status.c -- names of the status codes, errno mapping and the
 * error-origin hook behind OM_ERR().
 */
#define OM_LOG_MODULE "status"
#include "util/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "util/log.h"

static const char *const status_names[OM_STATUS_COUNT_] = {
    [OM_OK] = "ok",
    [OM_E_NOTFOUND] = "not_found",
    [OM_E_INVALID] = "invalid_argument",
    [OM_E_NOMEM] = "out_of_memory",
    [OM_E_IO] = "io_error",
    [OM_E_CORRUPT] = "corruption",
    [OM_E_BUSY] = "busy",
    [OM_E_TIMEOUT] = "timeout",
    [OM_E_UNAVAILABLE] = "unavailable",
    [OM_E_WRONG_SHARD] = "wrong_shard",
    [OM_E_PRECONDITION] = "precondition_failed",
    [OM_E_INTERNAL] = "internal",
    [OM_E_UNAUTHENTICATED] = "unauthenticated",
    [OM_E_PERMISSION] = "permission_denied",
};

const char *
om_status_str(om_status st)
{
    if ((unsigned)st >= OM_STATUS_COUNT_)
        return "unknown_status";
    return status_names[st];
}

om_status
om_status_from_errno(int err)
{
    switch (err) {
    case 0:
        return OM_OK;
    case ENOENT:
        return OM_E_NOTFOUND;
    case ENOMEM:
        return OM_E_NOMEM;
    case EINVAL:
    case ENAMETOOLONG:
    case ENOTDIR:
    case EISDIR:
    case EEXIST:
        return OM_E_INVALID;
    case EAGAIN:
    case EBUSY:
        return OM_E_BUSY;
    case ETIMEDOUT:
        return OM_E_TIMEOUT;
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EPIPE:
        return OM_E_UNAVAILABLE;
    default:
        return OM_E_IO;
    }
}

om_status
om_err_origin(om_status st, const char *file, int line, const char *func)
{
    om_log(OM_LOG_DEBUG, "error created status=%s at=%s:%d func=%s", om_status_str(st), file, line,
           func);
    return st;
}

static void
status_vformat(char *err, size_t errlen, const char *fmt, va_list ap)
{
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
}

void
om_errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    status_vformat(err, errlen, fmt, ap);
    va_end(ap);
}

om_status
om_err_invalid(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    status_vformat(err, errlen, fmt, ap);
    va_end(ap);
    return OM_E_INVALID;
}
