/*
 * tests/shard/it_python.c -- generate a Python client from proto/objmeta.proto
 * with protoc and run tests/shard/it_python.py (store, retrieve, list) with
 * /usr/bin/python3 against a real objmeta-shard: the protocol works from a
 * protobuf implementation other than ours.
 *
 * Needs Debian's protobuf-compiler and python3-protobuf (scripts/install-deps.sh
 * installs them); without them the test is skipped (exit 77) with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "it_util.h"

#define PYTHON "/usr/bin/python3"

/* A reason to skip, or NULL when protoc and python3-protobuf are there. */
static const char *
missing_tools(void)
{
    const char *protoc = getenv("OBJMETA_PROTOC");

    if (protoc == NULL || protoc[0] == '\0' || access(protoc, X_OK) != 0)
        return "protoc not found (install Debian package protobuf-compiler)";
    if (access(PYTHON, X_OK) != 0)
        return PYTHON " not found (install python3)";
    /* outside a test, so not through tu_run_cmd (it asserts) */
    if (system(PYTHON " -c 'import google.protobuf' >/dev/null 2>&1") != 0)
        return "python3 cannot import google.protobuf (install Debian package python3-protobuf)";
    return NULL;
}

START_TEST(python_client_round_trip)
{
    const char *proto = getenv("OBJMETA_PROTO"), *script = getenv("OBJMETA_PY_SCRIPT");
    const char *gen = tu_tmpdir();
    char *out = NULL, *err = NULL, inc[1100], outarg[1100], port[16], protodir[1024];
    tu_proc *p;
    int rc;

    ck_assert_ptr_nonnull(proto);
    ck_assert_ptr_nonnull(script);
    snprintf(protodir, sizeof(protodir), "%s", proto);
    *strrchr(protodir, '/') = 0;
    snprintf(inc, sizeof(inc), "--proto_path=%s", protodir);
    snprintf(outarg, sizeof(outarg), "--python_out=%s", gen);
    const char *const gen_argv[] = {"protoc", inc, outarg, proto, NULL};
    rc = tu_run_cmd(getenv("OBJMETA_PROTOC"), gen_argv, 30000, &out, &err);
    ck_assert_msg(rc == 0, "protoc failed (%d): %s", rc, err);
    free(out);
    free(err);

    p = it_start_shard(NULL, NULL);
    snprintf(port, sizeof(port), "%d", tu_proc_port(p, "rpc"));
    const char *const py_argv[] = {"python3", script, gen, port, NULL};
    rc = tu_run_cmd(PYTHON, py_argv, 30000, &out, &err);
    printf("%s", out ? out : "");
    ck_assert_msg(rc == 0, "python client failed (%d):\n%s", rc, err);
    ck_assert_ptr_nonnull(strstr(out, "python round trip ok"));
    free(out);
    free(err);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

int
main(void)
{
    const char *why = missing_tools();
    if (why != NULL) {
        printf("SKIP it_python: %s\n", why);
        return 77; /* meson: skipped */
    }
    Suite *s = suite_create("shard-python");
    TCase *tc = tcase_create("python");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, python_client_round_trip);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
