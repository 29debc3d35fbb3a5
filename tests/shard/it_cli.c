/*
 * tests/shard/it_cli.c -- the `objmeta` tool end to end against a real
 * objmeta-shard: every command, human and --json output, and the documented
 * exit codes (0 ok, 1 not found, 2 usage, 3 precondition, 4 unavailable,
 * 5 invalid argument).
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "it_util.h"

static tu_proc *srv;
static char addr_opt[64];

static void
setup(void)
{
    static const char *const extra[] = {"--sync-mode=none", NULL};
    srv = it_start_shard(NULL, extra);
    snprintf(addr_opt, sizeof(addr_opt), "--addr=%s", it_addr(srv));
}

static void
teardown(void)
{
    tu_proc_stop(srv);
    tu_proc_free(srv);
}

/* Run objmeta with the NULL-terminated arguments after --addr; returns the exit code. */
static int
cli(char **out, ...)
{
    const char *argv[16] = {"objmeta", addr_opt};
    char *o = NULL, *e = NULL;
    const char *a0;
    va_list ap;
    int n = 2;

    va_start(ap, out);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    a0 = argv[2];
    int rc = tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 20000, &o, &e);
    if (out)
        *out = o;
    else
        free(o);
    if (rc != 0 && e && *e)
        printf("objmeta %s: exit %d: %s", a0, rc, e);
    free(e);
    return rc;
}

static char *
write_tmp(const char *name, const char *content)
{
    char *path;
    ck_assert_int_gt(asprintf(&path, "%s/%s", tu_tmpdir(), name), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(content, f);
    fclose(f);
    return path;
}

START_TEST(commands_and_exit_codes)
{
    char *out = NULL, *file = write_tmp("in.txt", "hello from a file\n");
    json_t *j;
    json_error_t je;

    ck_assert_int_eq(cli(&out, "put", "docs/readme.txt", file, "--meta", "{\"lang\":\"en\"}",
                         "--content-type", "text/plain", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "stored docs/readme.txt size=18"));
    free(out);
    ck_assert_int_eq(cli(&out, "get", "docs/readme.txt", NULL), 0);
    ck_assert_str_eq(out, "hello from a file\n");
    free(out);

    /* --json head: parseable, with the metadata as an object */
    ck_assert_int_eq(cli(&out, "--json", "head", "docs/readme.txt", NULL), 0);
    j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "not JSON: %s", out);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "size")), 18);
    ck_assert_str_eq(json_string_value(json_object_get(j, "content_type")), "text/plain");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "metadata"), "lang")),
                     "en");
    json_int_t version = json_integer_value(json_object_get(j, "version"));
    ck_assert_int_gt(version, 0);
    json_decref(j);
    free(out);
    ck_assert_int_eq(cli(&out, "head", "docs/readme.txt", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "content-type: text/plain"));
    free(out);

    /* conditions: exit 3 */
    ck_assert_int_eq(cli(NULL, "put", "docs/readme.txt", file, "--if-absent", NULL), 3);
    ck_assert_int_eq(cli(NULL, "put", "docs/readme.txt", file, "--if-version", "1", NULL), 3);
    char vbuf[32];
    snprintf(vbuf, sizeof(vbuf), "%lld", (long long)version);
    ck_assert_int_eq(cli(NULL, "put", "docs/readme.txt", file, "--if-version", vbuf, NULL), 0);
    ck_assert_int_eq(cli(NULL, "rm", "docs/readme.txt", "--if-version", vbuf, NULL), 3);

    /* exists / not found: exit 1 */
    ck_assert_int_eq(cli(&out, "exists", "docs/readme.txt", NULL), 0);
    ck_assert_str_eq(out, "yes\n");
    free(out);
    ck_assert_int_eq(cli(&out, "exists", "docs/nope", NULL), 1);
    ck_assert_str_eq(out, "no\n");
    free(out);
    ck_assert_int_eq(cli(NULL, "get", "docs/nope", NULL), 1);
    ck_assert_int_eq(cli(NULL, "head", "docs/nope", NULL), 1);
    ck_assert_int_eq(cli(NULL, "rm", "docs/nope", NULL), 1);

    /* invalid argument from the server: exit 5 */
    ck_assert_int_eq(cli(NULL, "put", "BAD/key", file, NULL), 5);
    ck_assert_int_eq(cli(NULL, "put", "docs/k", file, "--meta", "[1]", NULL), 5);
    /* usage: exit 2 */
    ck_assert_int_eq(cli(NULL, "put", NULL), 2);
    ck_assert_int_eq(cli(NULL, "frobnicate", NULL), 2);
    ck_assert_int_eq(cli(NULL, "get", "no-slash", NULL), 2);
    ck_assert_int_eq(cli(NULL, "put", "docs/x", file, "--if-absent", "--if-version", "3", NULL), 2);
    ck_assert_int_eq(cli(NULL, "ls", "docs", "--max", "0", NULL), 2);

    ck_assert_int_eq(cli(&out, "rm", "docs/readme.txt", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "deleted docs/readme.txt"));
    free(out);
    ck_assert_int_eq(cli(&out, "stats", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "shard.requests.store"));
    free(out);
    ck_assert_int_eq(cli(&out, "--json", "stats", NULL), 0);
    j = json_loads(out, 0, &je);
    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_integer(json_object_get(j, "lsm.wal_syncs")));
    json_decref(j);
    free(out);
    free(file);
}
END_TEST

START_TEST(ls_follows_continuation_tokens)
{
    char *out = NULL, key[32], *file = write_tmp("v.txt", "v");
    json_t *j;

    /* 1100 keys need two pages of 1000; use the library for speed, the tool to list */
    omc_client *c = it_client(srv);
    for (int i = 0; i < 1100; i++) {
        snprintf(key, sizeof(key), "dir%d/k%04d", i % 2, i);
        ck_assert_int_eq(omc_store(c, "many", key, om_slice_from_str("v"), NULL, NULL), OM_OK);
    }
    omc_close(c);
    ck_assert_int_eq(cli(&out, "--json", "ls", "many", NULL), 0);
    j = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ck_assert_uint_eq(json_array_size(json_object_get(j, "entries")), 1100);
    ck_assert(json_is_false(json_object_get(j, "is_truncated")));
    json_decref(j);
    free(out);

    ck_assert_int_eq(cli(&out, "ls", "many", "--delimiter", "/", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "PRE dir0/\n"));
    ck_assert_ptr_nonnull(strstr(out, "PRE dir1/\n"));
    free(out);
    ck_assert_int_eq(
        cli(&out, "--json", "ls", "many/dir1/", "--max", "3", "--start-after", "dir1/k0001", NULL),
        0);
    j = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *e = json_object_get(j, "entries");
    ck_assert_uint_eq(json_array_size(e), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(e, 0), "key")), "dir1/k0003");
    ck_assert(json_is_true(json_object_get(j, "is_truncated")));
    ck_assert_uint_gt(strlen(json_string_value(json_object_get(j, "next_continuation_token"))), 0);
    json_decref(j);
    free(out);
    free(file);
}
END_TEST

START_TEST(help_and_unavailable)
{
    const char *argv[] = {"objmeta", "--help", NULL};
    const char *argv2[] = {"objmeta", "--addr", "127.0.0.1:1", "ping", NULL};
    char *out = NULL, *err = NULL;

    ck_assert_int_eq(tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv, 10000, &out, &err), 0);
    ck_assert_ptr_nonnull(strstr(out, "exit codes:"));
    ck_assert_ptr_nonnull(strstr(out, "3  precondition failed"));
    ck_assert_ptr_nonnull(strstr(out, "4  unavailable"));
    free(out);
    free(err);
    ck_assert_int_eq(tu_run_cmd(tu_bin("$OBJMETA_CLI"), argv2, 10000, &out, &err), 4);
    free(out);
    free(err);
    ck_assert_int_eq(cli(&out, "ping", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "objmeta-shard/"));
    free(out);
}
END_TEST

static Suite *
cli_suite(void)
{
    Suite *s = suite_create("shard-cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, commands_and_exit_codes);
    tcase_add_test(tc, ls_follows_continuation_tokens);
    tcase_add_test(tc, help_and_unavailable);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(cli_suite());
}
