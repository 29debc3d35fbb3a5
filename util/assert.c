/*
 * util/assert.c -- the failure path of OM_ASSERT (see util/assert.h): one
 * ERROR line through the logger, then abort() so a core or a sanitizer report
 * shows the stack.
 */
#define OM_LOG_MODULE "assert"
#include "util/assert.h"

#include <stdlib.h>

#include "util/log.h"

void
om_assert_fail(const char *expr, const char *file, int line, const char *func)
{
    om_log_write(OM_LOG_ERROR, OM_LOG_MODULE, "invariant broken: %s at %s:%d in %s()", expr, file,
                 line, func);
    abort();
}
