/*
 * util/conf.h -- the one configuration mechanism of every objmeta binary.
 *
 * A binary describes its settings in one const table of om_conf_item (name,
 * type, default, bounds, field offset, one-line doc), in the style of Redis's
 * static_configs[]. om_conf_load() fills the binary's conf struct from, in
 * rising precedence:
 *
 *   1. the built-in default (the `def` text, parsed like any other value),
 *   2. a config file, `--config FILE` or OBJMETA_CONFIG (inih syntax:
 *      `key = value` lines, `#`/`;` comments, sections ignored),
 *   3. the environment: OBJMETA_<NAME>, upper case, '-' written as '_'
 *      (OBJMETA_DATA_DIR for data-dir),
 *   4. the command line: `--name=value` or `--name value`; a bare `--flag`
 *      sets a bool to true.
 *
 * Every value is validated (type, bounds, choices) and an error names the
 * setting and where the bad value came from. Sizes take K/M/G/T suffixes
 * (powers of 1024, optional "iB"/"B"); durations take ms/s/m/h (default ms).
 * The loaded struct is then treated as frozen: pass it down as const.
 *
 * Thread-safety: om_conf_load() reads the environment; call it at startup.
 */
#ifndef OM_UTIL_CONF_H
#define OM_UTIL_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/status.h"

typedef enum om_conf_type {
    OM_CONF_BOOL,     /* bool      */
    OM_CONF_INT,      /* int64_t   */
    OM_CONF_SIZE,     /* int64_t, bytes */
    OM_CONF_DURATION, /* int64_t, milliseconds */
    OM_CONF_STR,      /* char *, heap; released by om_conf_fini() */
    OM_CONF_ENUM,     /* int, index into choices */
} om_conf_type;

typedef struct om_conf_item {
    const char *name; /* "data-dir" */
    om_conf_type type;
    const char *def;            /* default, as text; "" for an empty string */
    int64_t min, max;           /* INT, SIZE, DURATION bounds (inclusive) */
    const char *const *choices; /* ENUM: NULL-terminated list of names */
    size_t offset;              /* offsetof(conf struct, field) */
    const char *doc;            /* one line */
} om_conf_item;

typedef struct om_conf_table {
    const char *program; /* "objmeta-shard" */
    const char *version;
    const om_conf_item *items;
    size_t n;
} om_conf_table;

/* What the command line asked for besides settings. */
typedef enum om_conf_action {
    OM_CONF_RUN = 0,
    OM_CONF_PRINT, /* --print-config: print the effective config and exit 0 */
    OM_CONF_HELP,  /* --help */
    OM_CONF_VERSION,
} om_conf_action;

/*
 * om_conf_load -- fill *conf (a struct the table's offsets describe) from
 * defaults, file, environment and argv[1..argc-1].
 *
 * Returns:   OM_OK and *action; OM_E_INVALID with a message in err (naming
 *            the setting and the source) for unknown settings, bad values or
 *            out-of-bounds values; OM_E_IO if the config file cannot be read.
 * Ownership: string fields are heap copies released by om_conf_fini(), also
 *            after a failure.
 */
om_status om_conf_load(const om_conf_table *t, void *conf, int argc, char **argv,
                       om_conf_action *action, char *err, size_t errlen);

/*
 * om_conf_set -- parse and store one value (as the file and command line do).
 * Returns: OM_OK; OM_E_INVALID with a message in err.
 */
om_status om_conf_set(const om_conf_table *t, void *conf, const char *name, const char *value,
                      const char *source, char *err, size_t errlen);

/* Print the effective config in config-file syntax, each setting after its doc line. */
void om_conf_print(const om_conf_table *t, const void *conf, FILE *out);
/* Print usage: every setting with type, default and doc. */
void om_conf_usage(const om_conf_table *t, FILE *out);
/* Release string fields. */
void om_conf_fini(const om_conf_table *t, void *conf);

/* om_conf_main_load's answer when the daemon should go on and run. */
#define OM_CONF_MAIN_RUN (-1)

/*
 * om_conf_main_load -- a daemon main()'s configuration step: om_conf_load,
 * then whatever the command line asked for instead of running
 * (--print-config, --help, --version: printed on stdout).
 *
 * Returns:   OM_CONF_MAIN_RUN: *conf is loaded, run (and om_conf_fini it at
 *            exit); otherwise the process's exit code, *conf already
 *            released: 0 after printing, 2 for a bad configuration (logged,
 *            naming the setting).
 */
int om_conf_main_load(const om_conf_table *t, void *conf, int argc, char **argv);

/* Parsers shared with other command-line front ends. OM_E_INVALID on bad text. */
om_status om_parse_size(const char *s, int64_t *out);
om_status om_parse_duration_ms(const char *s, int64_t *out);
om_status om_parse_bool(const char *s, bool *out);
om_status om_parse_int(const char *s, int64_t *out);

#endif /* OM_UTIL_CONF_H */
