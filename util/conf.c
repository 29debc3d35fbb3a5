/*
 * util/conf.c -- loads a binary's config table from defaults, a file (inih),
 * the environment and the command line; validates and prints it.
 *
 * Every source goes through om_conf_set(), so a value means the same thing
 * wherever it is written and is checked by the same bounds.
 */
#define OM_LOG_MODULE "conf"
#include "util/conf.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

#define CONF_ENV_PREFIX "OBJMETA_"

/* Names match with '-' and '_' treated alike, case-insensitively. */
static bool
conf_name_eq(const char *a, const char *b, size_t blen)
{
    size_t i;

    for (i = 0; i < blen && a[i]; i++) {
        char x = a[i] == '_' ? '-' : (char)tolower((unsigned char)a[i]);
        char y = b[i] == '_' ? '-' : (char)tolower((unsigned char)b[i]);
        if (x != y)
            return false;
    }
    return i == blen && a[i] == '\0';
}

static const om_conf_item *
conf_find(const om_conf_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n; i++)
        if (conf_name_eq(t->items[i].name, name, len))
            return &t->items[i];
    return NULL;
}

om_status
om_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return OM_E_INVALID;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || end == s)
        return OM_E_INVALID;
    while (isspace((unsigned char)*end))
        end++;
    if (*end != '\0')
        return OM_E_INVALID;
    *out = (int64_t)v;
    return OM_OK;
}

/* Parse "<number><unit>" where the unit is looked up in a table. */
typedef struct conf_unit {
    const char *name;
    int64_t mult;
} conf_unit;

static om_status
conf_parse_scaled(const char *s, const conf_unit *units, int64_t *out)
{
    char *end;
    unsigned long long v;

    while (isspace((unsigned char)*s))
        s++;
    if (!isdigit((unsigned char)*s))
        return OM_E_INVALID;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || v > INT64_MAX)
        return OM_E_INVALID;
    while (isspace((unsigned char)*end))
        end++;
    size_t ulen = strlen(end);
    while (ulen > 0 && isspace((unsigned char)end[ulen - 1]))
        ulen--;
    for (const conf_unit *u = units; u->name != NULL; u++) {
        if (strlen(u->name) == ulen && strncasecmp(end, u->name, ulen) == 0) {
            if (u->mult != 0 && v > (unsigned long long)(INT64_MAX / u->mult))
                return OM_E_INVALID;
            *out = (int64_t)v * u->mult;
            return OM_OK;
        }
    }
    return OM_E_INVALID;
}

om_status
om_parse_size(const char *s, int64_t *out)
{
    static const conf_unit units[] = {
        {"", 1},           {"b", 1},           {"k", 1LL << 10},
        {"kb", 1LL << 10}, {"kib", 1LL << 10}, {"m", 1LL << 20},
        {"mb", 1LL << 20}, {"mib", 1LL << 20}, {"g", 1LL << 30},
        {"gb", 1LL << 30}, {"gib", 1LL << 30}, {"t", 1LL << 40},
        {"tb", 1LL << 40}, {"tib", 1LL << 40}, {NULL, 0},
    };
    return conf_parse_scaled(s, units, out);
}

om_status
om_parse_duration_ms(const char *s, int64_t *out)
{
    static const conf_unit units[] = {
        {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0},
    };
    return conf_parse_scaled(s, units, out);
}

om_status
om_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return OM_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return OM_OK;
        }
    }
    return OM_E_INVALID;
}

static const char *
conf_type_name(om_conf_type type)
{
    switch (type) {
    case OM_CONF_BOOL:
        return "bool";
    case OM_CONF_INT:
        return "integer";
    case OM_CONF_SIZE:
        return "size";
    case OM_CONF_DURATION:
        return "duration";
    case OM_CONF_STR:
        return "string";
    case OM_CONF_ENUM:
        return "choice";
    }
    return "?";
}

static om_status
conf_store(const om_conf_item *it, void *conf, const char *value, const char *source, char *err,
           size_t errlen)
{
    unsigned char *field = (unsigned char *)conf + it->offset;
    int64_t v = 0;
    om_status st = OM_OK;

    switch (it->type) {
    case OM_CONF_BOOL: {
        bool b;
        if (om_parse_bool(value, &b) != OM_OK) {
            om_errf(err, errlen, "%s: %s: '%s' is not a bool (true/false, yes/no, on/off, 1/0)",
                    source, it->name, value);
            return OM_E_INVALID;
        }
        memcpy(field, &b, sizeof(b));
        return OM_OK;
    }
    case OM_CONF_INT:
        st = om_parse_int(value, &v);
        break;
    case OM_CONF_SIZE:
        st = om_parse_size(value, &v);
        break;
    case OM_CONF_DURATION:
        st = om_parse_duration_ms(value, &v);
        break;
    case OM_CONF_STR: {
        char *copy = strdup(value);
        char *old;
        if (copy == NULL)
            return OM_ERR(OM_E_NOMEM);
        memcpy(&old, field, sizeof(old));
        free(old);
        memcpy(field, &copy, sizeof(copy));
        return OM_OK;
    }
    case OM_CONF_ENUM:
        for (int i = 0; it->choices && it->choices[i]; i++) {
            if (strcasecmp(value, it->choices[i]) == 0) {
                memcpy(field, &i, sizeof(i));
                return OM_OK;
            }
        }
        {
            char list[256] = "";
            for (int i = 0; it->choices && it->choices[i]; i++) {
                strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
                strncat(list, it->choices[i], sizeof(list) - strlen(list) - 1);
            }
            om_errf(err, errlen, "%s: %s: '%s' is not one of: %s", source, it->name, value, list);
        }
        return OM_E_INVALID;
    }
    if (st != OM_OK) {
        om_errf(err, errlen, "%s: %s: '%s' is not a valid %s%s", source, it->name, value,
                conf_type_name(it->type),
                it->type == OM_CONF_SIZE       ? " (e.g. 4096, 64K, 64MiB)"
                : it->type == OM_CONF_DURATION ? " (e.g. 250ms, 5s, 2m)"
                                               : "");
        return OM_E_INVALID;
    }
    if (v < it->min || v > it->max) {
        om_errf(err, errlen, "%s: %s: %s is out of range [%" PRId64 ", %" PRId64 "]", source,
                it->name, value, it->min, it->max);
        return OM_E_INVALID;
    }
    memcpy(field, &v, sizeof(v));
    return OM_OK;
}

om_status
om_conf_set(const om_conf_table *t, void *conf, const char *name, const char *value,
            const char *source, char *err, size_t errlen)
{
    const om_conf_item *it = conf_find(t, name, strlen(name));

    if (it == NULL) {
        om_errf(err, errlen, "%s: unknown setting '%s' (see %s --help)", source, name, t->program);
        return OM_E_INVALID;
    }
    return conf_store(it, conf, value, source, err, errlen);
}

typedef struct conf_file_ctx {
    const om_conf_table *t;
    void *conf;
    const char *path;
    char *err;
    size_t errlen;
    om_status st;
} conf_file_ctx;

static int
conf_ini_handler(void *user, const char *section, const char *name, const char *value)
{
    conf_file_ctx *c = user;
    char source[512];

    (void)section;
    if (c->st != OM_OK)
        return 0;
    snprintf(source, sizeof(source), "config file %s", c->path);
    c->st = om_conf_set(c->t, c->conf, name, value, source, c->err, c->errlen);
    return c->st == OM_OK;
}

static om_status
conf_load_file(const om_conf_table *t, void *conf, const char *path, char *err, size_t errlen)
{
    conf_file_ctx c = {t, conf, path, err, errlen, OM_OK};
    FILE *f = fopen(path, "r");
    int r;

    if (f == NULL) {
        om_errf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
        return OM_E_IO;
    }
    r = ini_parse_file(f, conf_ini_handler, &c);
    fclose(f);
    if (c.st != OM_OK)
        return c.st;
    if (r != 0) {
        om_errf(err, errlen, "config file %s: syntax error on line %d", path, r);
        return OM_E_INVALID;
    }
    return OM_OK;
}

static om_status
conf_load_env(const om_conf_table *t, void *conf, char *err, size_t errlen)
{
    char var[128], source[160];

    for (size_t i = 0; i < t->n; i++) {
        const char *name = t->items[i].name;
        size_t j, p = strlen(CONF_ENV_PREFIX);
        memcpy(var, CONF_ENV_PREFIX, p);
        for (j = 0; name[j] && p + j < sizeof(var) - 1; j++)
            var[p + j] = name[j] == '-' ? '_' : (char)toupper((unsigned char)name[j]);
        var[p + j] = '\0';
        const char *v = getenv(var);
        if (v == NULL)
            continue;
        snprintf(source, sizeof(source), "environment %s", var);
        OM_TRY(conf_store(&t->items[i], conf, v, source, err, errlen));
    }
    return OM_OK;
}

/* Is argv[i] a flag (--help etc.) rather than a setting? */
static bool
conf_flag(const char *arg, om_conf_action *action)
{
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
        *action = OM_CONF_HELP;
    else if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
        *action = OM_CONF_VERSION;
    else if (strcmp(arg, "--print-config") == 0)
        *action = OM_CONF_PRINT;
    else
        return false;
    return true;
}

om_status
om_conf_load(const om_conf_table *t, void *conf, int argc, char **argv, om_conf_action *action,
             char *err, size_t errlen)
{
    const char *file = getenv(CONF_ENV_PREFIX "CONFIG");
    om_conf_action act = OM_CONF_RUN;

    for (size_t i = 0; i < t->n; i++)
        OM_TRY(conf_store(&t->items[i], conf, t->items[i].def, "built-in default", err, errlen));

    /* First pass over argv: flags and --config, and reject malformed arguments early. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        om_conf_action flag = OM_CONF_RUN;
        if (conf_flag(a, &flag)) {
            if (act == OM_CONF_RUN || flag == OM_CONF_HELP)
                act = flag;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            om_errf(err, errlen, "unexpected argument '%s' (settings are --name=value)", a);
            return OM_E_INVALID;
        }
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        bool is_config = nlen == 6 && strncmp(a + 2, "config", 6) == 0;
        if (!is_config && conf_find(t, a + 2, nlen) == NULL) {
            om_errf(err, errlen, "command line: unknown setting '%.*s' (see %s --help)", (int)nlen,
                    a + 2, t->program);
            return OM_E_INVALID;
        }
        const char *val = eq ? eq + 1 : NULL;
        if (val == NULL) {
            const om_conf_item *it = is_config ? NULL : conf_find(t, a + 2, nlen);
            if (it != NULL && it->type == OM_CONF_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-'))
                continue; /* bare --flag */
            if (i + 1 >= argc) {
                om_errf(err, errlen, "command line: --%.*s needs a value", (int)nlen, a + 2);
                return OM_E_INVALID;
            }
            val = argv[++i];
        }
        if (is_config)
            file = val;
    }
    *action = act;
    if (act == OM_CONF_HELP || act == OM_CONF_VERSION)
        return OM_OK;

    if (file != NULL && *file != '\0')
        OM_TRY(conf_load_file(t, conf, file, err, errlen));
    OM_TRY(conf_load_env(t, conf, err, errlen));

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        om_conf_action ignored;
        char name[128];
        if (conf_flag(a, &ignored))
            continue;
        const char *eq = strchr(a, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        const char *val = eq ? eq + 1 : NULL;
        if (nlen >= sizeof(name)) {
            om_errf(err, errlen, "command line: setting name too long");
            return OM_E_INVALID;
        }
        memcpy(name, a + 2, nlen);
        name[nlen] = '\0';
        if (val == NULL) {
            const om_conf_item *it = conf_find(t, name, nlen);
            if (it != NULL && it->type == OM_CONF_BOOL && (i + 1 >= argc || argv[i + 1][0] == '-'))
                val = "true";
            else
                val = argv[++i];
        }
        if (strcmp(name, "config") == 0)
            continue;
        OM_TRY(om_conf_set(t, conf, name, val, "command line", err, errlen));
    }
    return OM_OK;
}

static void
conf_format(const om_conf_item *it, const void *conf, char *out, size_t outlen)
{
    const unsigned char *field = (const unsigned char *)conf + it->offset;
    int64_t v;

    switch (it->type) {
    case OM_CONF_BOOL: {
        bool b;
        memcpy(&b, field, sizeof(b));
        snprintf(out, outlen, "%s", b ? "true" : "false");
        return;
    }
    case OM_CONF_STR: {
        const char *s;
        memcpy(&s, field, sizeof(s));
        snprintf(out, outlen, "%s", s ? s : "");
        return;
    }
    case OM_CONF_ENUM: {
        int i;
        memcpy(&i, field, sizeof(i));
        snprintf(out, outlen, "%s", it->choices[i]);
        return;
    }
    default:
        break;
    }
    memcpy(&v, field, sizeof(v));
    if (it->type == OM_CONF_SIZE && v > 0) {
        static const char *const sfx[] = {"TiB", "GiB", "MiB", "KiB"};
        for (int i = 0; i < 4; i++) {
            int64_t m = 1LL << (10 * (4 - i));
            if (v % m == 0) {
                snprintf(out, outlen, "%" PRId64 "%s", v / m, sfx[i]);
                return;
            }
        }
    } else if (it->type == OM_CONF_DURATION) {
        if (v > 0 && v % 1000 == 0)
            snprintf(out, outlen, "%" PRId64 "s", v / 1000);
        else
            snprintf(out, outlen, "%" PRId64 "ms", v);
        return;
    }
    snprintf(out, outlen, "%" PRId64, v);
}

/* A setting's doc as "# " comment lines of at most ~78 columns, broken at spaces: the config
 * reader (inih) takes lines of up to 200 bytes, so a printed config must load back. */
static void
conf_print_doc(FILE *out, const char *doc)
{
    const size_t width = 76;

    while (*doc != '\0') {
        size_t n = strlen(doc);

        if (n > width) {
            const char *sp = NULL;

            for (const char *q = doc; q <= doc + width; q++)
                if (*q == ' ')
                    sp = q;
            if (sp == NULL)
                sp = strchr(doc + width, ' ');
            if (sp != NULL)
                n = (size_t)(sp - doc);
        }
        fprintf(out, "# %.*s\n", (int)n, doc);
        doc += n;
        while (*doc == ' ')
            doc++;
    }
}

void
om_conf_print(const om_conf_table *t, const void *conf, FILE *out)
{
    char val[1024];

    fprintf(out, "# %s %s effective configuration\n", t->program, t->version);
    for (size_t i = 0; i < t->n; i++) {
        conf_format(&t->items[i], conf, val, sizeof(val));
        fputc('\n', out);
        conf_print_doc(out, t->items[i].doc);
        fprintf(out, "%s = %s\n", t->items[i].name, val);
    }
}

void
om_conf_usage(const om_conf_table *t, FILE *out)
{
    fprintf(out,
            "usage: %s [--config FILE] [--name=value ...] [--print-config] [--help] "
            "[--version]\n\nSettings (file key, --name, or OBJMETA_NAME in the environment):\n",
            t->program);
    for (size_t i = 0; i < t->n; i++) {
        const om_conf_item *it = &t->items[i];
        fprintf(out, "  --%-24s %-8s %s (default: %s)\n", it->name, conf_type_name(it->type),
                it->doc, it->def[0] ? it->def : "\"\"");
    }
}

void
om_conf_fini(const om_conf_table *t, void *conf)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i].type != OM_CONF_STR)
            continue;
        char *s;
        unsigned char *field = (unsigned char *)conf + t->items[i].offset;
        memcpy(&s, field, sizeof(s));
        free(s);
        s = NULL;
        memcpy(field, &s, sizeof(s));
    }
}

int
om_conf_main_load(const om_conf_table *t, void *conf, int argc, char **argv)
{
    om_conf_action act;
    char err[512];

    if (om_conf_load(t, conf, argc, argv, &act, err, sizeof(err)) != OM_OK) {
        om_log(OM_LOG_ERROR, "bad configuration: %s", err);
        om_conf_fini(t, conf);
        return 2;
    }
    if (act == OM_CONF_RUN)
        return OM_CONF_MAIN_RUN;
    if (act == OM_CONF_PRINT)
        om_conf_print(t, conf, stdout);
    else if (act == OM_CONF_HELP)
        om_conf_usage(t, stdout);
    else
        fprintf(stdout, "%s %s\n", t->program, t->version);
    om_conf_fini(t, conf);
    return 0;
}
