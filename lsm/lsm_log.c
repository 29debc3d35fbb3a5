/*
 * lsm/lsm_log.c -- the engine's logging entry point.
 *
 * The engine is embeddable: it logs through the lsm_opts log callback when
 * the embedder installed one, and through om_log (module "lsm") otherwise.
 * Messages follow the project convention of key=value fields.
 *
 * Thread-safety: safe from any thread if the callback is.
 */
#define OM_LOG_MODULE "lsm"
#include <stdarg.h>
#include <stdio.h>

#include "lsm/lsm_int.h"
#include "util/log.h"

void
lsm_logf(const lsm_opts *o, om_log_level level, const char *fmt, ...)
{
    va_list ap;

    if (o != NULL && o->log != NULL) {
        char msg[2048];

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        o->log(o->log_arg, level, msg);
        return;
    }
    /* Check the threshold before formatting, as om_log() does. */
    if ((int)level > om_log_threshold)
        return;
    va_start(ap, fmt);
    om_log_vwrite(level, OM_LOG_MODULE, fmt, ap);
    va_end(ap);
}
