/*
 * tests/coordinator/test_groups.c -- the replica group configuration's JSON
 * (coordinator/groups.c; the schema of shard/REPLICATION.md, "Group
 * configuration"): a round trip, and every malformed configuration
 * refused with a message naming what is wrong, never crashing.
 */
#include <stdio.h>
#include <string.h>

#include "coordinator/groups_int.h"
#include "tu.h"

static om_status
decode(const char *json, coord_group_conf *g, char *err, size_t errlen)
{
    return coord_group_conf_decode(om_slice_from_str(json), g, err, errlen);
}

START_TEST(conf_round_trip)
{
    const char *json = "{\"group\":\"g1\",\"term\":3,\"primary\":\"b\",\"replicas\":["
                       "{\"id\":\"a\",\"addr\":\"h1:1\"},{\"id\":\"b\",\"addr\":\"h2:2\"},"
                       "{\"id\":\"c\",\"addr\":\"h3:3\"}],\"in_sync\":[\"b\",\"a\"]}";
    coord_group_conf g, h;
    om_buf out = OM_BUF_INIT;
    char err[256];

    ck_assert_int_eq(decode(json, &g, err, sizeof(err)), OM_OK);
    ck_assert_str_eq(g.id, "g1");
    ck_assert_uint_eq(g.term, 3);
    ck_assert_str_eq(g.primary, "b");
    ck_assert_uint_eq(g.nreplicas, 3);
    ck_assert(g.replicas[0].in_sync && g.replicas[1].in_sync && !g.replicas[2].in_sync);
    ck_assert_uint_eq(coord_group_in_sync_count(&g), 2);
    ck_assert_str_eq(coord_group_replica(&g, "c")->addr, "h3:3");
    ck_assert_ptr_null(coord_group_replica(&g, "d"));
    ck_assert_int_eq(coord_group_conf_encode(&g, &out), OM_OK);
    ck_assert_int_eq(coord_group_conf_decode(om_buf_slice(&out), &h, err, sizeof(err)), OM_OK);
    ck_assert_str_eq(h.primary, "b");
    ck_assert_uint_eq(h.term, 3);
    ck_assert_uint_eq(h.nreplicas, 3);
    ck_assert(!h.replicas[2].in_sync && h.replicas[0].in_sync);
    coord_group_conf_clear(&g);
    coord_group_conf_clear(&h);
    om_buf_free(&out);
}
END_TEST

START_TEST(conf_rejects_malformed)
{
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"", "not a JSON object"},
        {"[1]", "not a JSON object"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"}],\"in_sync\":[\"a\"],\"term\":2}",
         "not a JSON object"}, /* duplicate key */
        {"{\"group\":\"g\",\"term\":0,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"}],\"in_sync\":[\"a\"]}",
         "term >= 1"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[],\"in_sync\":[]}",
         "replicas (1..5)"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"},{\"id\":\"b\",\"addr\":\"h:2\"},{\"id\":\"c\",\"addr\":\"h:3\"},{\"id\":\"d\","
         "\"addr\":\"h:4\"},{\"id\":\"e\",\"addr\":\"h:5\"},{\"id\":\"f\",\"addr\":\"h:6\"}],"
         "\"in_sync\":[\"a\"]}",
         "replicas (1..5)"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\"}],"
         "\"in_sync\":[\"a\"]}",
         "needs id and addr"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"}],\"in_sync\":[\"x\"]}",
         "not in replicas"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"a\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"},{\"id\":\"b\",\"addr\":\"h:2\"}],\"in_sync\":[\"b\"]}",
         "primary is not an in-sync"},
        {"{\"group\":\"g\",\"term\":1,\"primary\":\"z\",\"replicas\":[{\"id\":\"a\",\"addr\":"
         "\"h:1\"}],\"in_sync\":[\"a\"]}",
         "primary is not an in-sync"},
        {"{\"group\":7,\"term\":1,\"primary\":\"a\",\"replicas\":[],\"in_sync\":[]}",
         "needs group"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        coord_group_conf g = {0};
        char err[256] = "";

        ck_assert_msg(decode(bad[i].json, &g, err, sizeof(err)) == OM_E_INVALID, "case %zu", i);
        ck_assert_msg(strstr(err, bad[i].want) != NULL, "case %zu: %s", i, err);
        ck_assert_ptr_null(g.id); /* *out untouched on failure */
    }
}
END_TEST

static Suite *
groups_suite(void)
{
    Suite *s = suite_create("coordinator-groups");
    TCase *tc = tcase_create("conf");

    tcase_add_test(tc, conf_round_trip);
    tcase_add_test(tc, conf_rejects_malformed);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(groups_suite());
}
