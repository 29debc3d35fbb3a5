/*
 * util/status.h -- the one status type of objmeta.
 *
 * Every function that can fail returns an om_status. OM_OK is zero so that
 * `if (st != OM_OK)` reads naturally. Errors are created with OM_ERR(), which
 * records the origin (file, line, function) in the debug log, and passed on
 * unchanged everywhere else. Results come back through out-parameters that
 * are written only on OM_OK.
 *
 * Thread-safety: everything here is pure or const; safe from any thread.
 */
#ifndef OM_UTIL_STATUS_H
#define OM_UTIL_STATUS_H

#include <stddef.h>

typedef enum om_status {
    OM_OK = 0,
    OM_E_NOTFOUND,        /* absent or deleted; an answer, not a failure   */
    OM_E_INVALID,         /* caller error: bad argument, bad state         */
    OM_E_NOMEM,           /* allocation failed                             */
    OM_E_IO,              /* errno was logged where it happened            */
    OM_E_CORRUPT,         /* checksum or format violation (disk or wire)   */
    OM_E_BUSY,            /* write stall or overload; retry later          */
    OM_E_TIMEOUT,         /* a deadline passed                             */
    OM_E_UNAVAILABLE,     /* peer down or refused                          */
    OM_E_WRONG_SHARD,     /* ring epoch mismatch; caller refreshes ring    */
    OM_E_PRECONDITION,    /* a store/delete condition did not hold         */
    OM_E_INTERNAL,        /* a bug; logged with its origin                 */
    OM_E_UNAUTHENTICATED, /* no credential where the operation needs one */
    OM_E_PERMISSION,      /* the credential does not grant the operation */
    OM_STATUS_COUNT_      /* number of codes; not a status                 */
} om_status;

/* om_status_str -- a stable lower-case name ("ok", "not_found", ...). Never NULL. */
const char *om_status_str(om_status st);

/* om_status_from_errno -- map an errno value to the closest status. */
om_status om_status_from_errno(int err);

/*
 * om_err_origin -- log (at DEBUG level) where an error was created and return
 * it unchanged. Use through OM_ERR(code), never directly.
 */
om_status om_err_origin(om_status st, const char *file, int line, const char *func);

#define OM_ERR(code) om_err_origin((code), __FILE__, __LINE__, __func__)

/*
 * Error messages for people. Functions that can reject input take a caller
 * buffer (char *err, size_t errlen) and write one line naming the problem.
 * om_errf formats into it (a NULL or empty buffer is allowed and ignored);
 * om_err_invalid does the same and returns OM_E_INVALID, for
 * `return om_err_invalid(err, errlen, "bucket: ...", ...);`.
 */
#if defined(__GNUC__)
#define OM_STATUS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define OM_STATUS_PRINTF(a, b)
#endif
void om_errf(char *err, size_t errlen, const char *fmt, ...) OM_STATUS_PRINTF(3, 4);
om_status om_err_invalid(char *err, size_t errlen, const char *fmt, ...) OM_STATUS_PRINTF(3, 4);

/* Return the status of x from the current function if it is not OM_OK. */
#define OM_TRY(x)                                                                                  \
    do {                                                                                           \
        om_status t_ = (x);                                                                        \
        if (t_ != OM_OK)                                                                           \
            return t_;                                                                             \
    } while (0)

/* Store the status of x in the local `st` and jump to `fail:` if it is not OM_OK. */
#define OM_GOTO(x)                                                                                 \
    do {                                                                                           \
        if ((st = (x)) != OM_OK)                                                                   \
            goto fail;                                                                             \
    } while (0)

#endif /* OM_UTIL_STATUS_H */
