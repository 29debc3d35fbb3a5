/*
 * tests/shard/it_shard_basic.c -- integration suite with the real
 * objmeta-shard: the harness proof (port file, /healthz, /metrics, SIGTERM
 * exit 0), every operation through libobjmeta-client, the full condition
 * matrix, and --print-config against deploy/conf/shard.conf.example.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "it_util.h"

#define S(x) om_slice_from_str(x)

START_TEST(harness_proof_health_metrics_sigterm)
{
    tu_proc *p = it_start_shard(NULL, NULL);
    char *body = NULL;
    int http = tu_proc_port(p, "http");

    ck_assert_int_gt(http, 0);
    ck_assert_int_eq(it_http_get(http, "/healthz", &body), 200);
    ck_assert_str_eq(body, "ok\n");
    free(body);
    it_check_alive(p);
    ck_assert_int_eq(it_http_get(http, "/metrics", &body), 200);
    ck_assert_msg(strstr(body, "objmeta_shard_requests_total{op=\"store\",status=\"OK\"} 1") !=
                      NULL,
                  "%s", body);
    ck_assert_ptr_nonnull(strstr(body, "objmeta_shard_request_duration_seconds_bucket"));
    ck_assert_ptr_nonnull(strstr(body, "objmeta_lsm_wal_syncs"));
    ck_assert_ptr_nonnull(strstr(body, "objmeta_rpc_"));
    free(body);
    ck_assert_int_eq(it_http_get(http, "/nope", &body), 404);
    free(body);

    int status = tu_proc_stop(p);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status %d", status);
    tu_proc_free(p);
}
END_TEST

START_TEST(every_operation)
{
    tu_proc *p = it_start_shard(NULL, NULL);
    omc_client *c = it_client(p);
    omc_store_opts so = {.content_type = "text/plain", .metadata_json = "{\"owner\":\"ann\"}"};
    omc_info info, got;
    om_buf data = OM_BUF_INIT;
    omc_list_page page;
    omc_stats stats;
    uint64_t v = 0;
    bool yes;

    ck_assert_int_eq(omc_store(c, "photos", "2024/a.jpg", S("AAAA"), &so, &info), OM_OK);
    ck_assert_str_eq(info.bucket, "photos");
    ck_assert_str_eq(info.key, "2024/a.jpg");
    ck_assert_uint_eq(info.size, 4);
    ck_assert_uint_eq(strlen(info.etag), 16);
    ck_assert_uint_gt(info.version, 0);
    ck_assert_uint_gt(info.created_ms, 1600000000000ULL);

    ck_assert_int_eq(omc_retrieve(c, "photos", "2024/a.jpg", &got, &data), OM_OK);
    ck_assert(om_slice_eq(om_buf_slice(&data), S("AAAA")));
    ck_assert_str_eq(got.etag, info.etag);
    ck_assert_str_eq(got.content_type, "text/plain");
    ck_assert_str_eq(got.metadata_json, "{\"owner\":\"ann\"}");
    ck_assert_uint_eq(got.version, info.version);
    omc_info_free(&got);

    ck_assert_int_eq(omc_head(c, "photos", "2024/a.jpg", &got), OM_OK);
    ck_assert_uint_eq(got.size, 4);
    ck_assert_str_eq(got.metadata_json, "{\"owner\":\"ann\"}");
    omc_info_free(&got);

    ck_assert_int_eq(omc_exists(c, "photos", "2024/a.jpg", &yes), OM_OK);
    ck_assert(yes);
    ck_assert_int_eq(omc_exists(c, "photos", "2024/none.jpg", &yes), OM_OK);
    ck_assert(!yes);
    ck_assert_int_eq(omc_retrieve(c, "photos", "2024/none.jpg", &got, &data), OM_E_NOTFOUND);
    ck_assert_str_eq(omc_last_message(c), "no such object");
    ck_assert_int_eq(omc_head(c, "photos", "2024/none.jpg", &got), OM_E_NOTFOUND);

    ck_assert_int_eq(omc_store(c, "photos", "2024/b.jpg", S("B"), NULL, NULL), OM_OK);
    ck_assert_int_eq(omc_store(c, "photos", "2025/c.jpg", S("C"), NULL, NULL), OM_OK);
    omc_list_opts lo = {.delimiter = "/", .include_metadata = true};
    ck_assert_int_eq(omc_list(c, "photos", &lo, &page), OM_OK);
    ck_assert_uint_eq(page.n_entries, 0);
    ck_assert_uint_eq(page.n_common_prefixes, 2);
    ck_assert_str_eq(page.common_prefixes[0], "2024/");
    ck_assert_str_eq(page.common_prefixes[1], "2025/");
    ck_assert_uint_eq(page.key_count, 2);
    ck_assert(!page.is_truncated);
    omc_list_page_free(&page);
    lo = (omc_list_opts){.prefix = "2024/", .include_metadata = true};
    ck_assert_int_eq(omc_list(c, "photos", &lo, &page), OM_OK);
    ck_assert_uint_eq(page.n_entries, 2);
    ck_assert_str_eq(page.entries[0].key, "2024/a.jpg");
    ck_assert_str_eq(page.entries[0].metadata_json, "{\"owner\":\"ann\"}");
    ck_assert_str_eq(page.entries[1].key, "2024/b.jpg");
    omc_list_page_free(&page);

    ck_assert_int_eq(omc_delete(c, "photos", "2024/a.jpg", NULL, &v), OM_OK);
    ck_assert_uint_gt(v, info.version);
    ck_assert_int_eq(omc_delete(c, "photos", "2024/a.jpg", NULL, &v), OM_E_NOTFOUND);
    ck_assert_int_eq(omc_exists(c, "photos", "2024/a.jpg", &yes), OM_OK);
    ck_assert(!yes);
    ck_assert_int_eq(omc_list(c, "photos", NULL, &page), OM_OK);
    ck_assert_uint_eq(page.n_entries, 2); /* the tombstone is not listed */
    omc_list_page_free(&page);

    ck_assert_int_eq(omc_stats_get(c, &stats), OM_OK);
    bool found = false;
    for (size_t i = 0; i < stats.n; i++)
        if (strcmp(stats.names[i], "shard.requests.store") == 0) {
            found = true;
            ck_assert_uint_eq(stats.values[i], 3);
        }
    ck_assert(found);
    ck_assert_ptr_nonnull(strstr(stats.text, "lsm.wal_syncs"));
    omc_stats_free(&stats);

    omc_info_free(&info);
    om_buf_free(&data);
    omc_close(c);
    ck_assert_int_eq(WEXITSTATUS(tu_proc_stop(p)), 0);
    tu_proc_free(p);
}
END_TEST

/* absent/present x none/if-absent/if-version right/wrong, for store and delete */
START_TEST(condition_matrix)
{
    tu_proc *p = it_start_shard(NULL, NULL);
    omc_client *c = it_client(p);
    omc_info info, cur;
    uint64_t v, wrong;

    /* store on an absent key */
    ck_assert_int_eq(omc_store(c, "cond", "a", S("1"), &(omc_store_opts){.if_absent = true}, &cur),
                     OM_OK);
    omc_info_free(&cur);
    ck_assert_int_eq(omc_store(c, "cond", "b", S("1"),
                               &(omc_store_opts){.has_if_version = true, .if_version = 1}, NULL),
                     OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "if_version"));
    ck_assert_int_eq(omc_store(c, "cond", "c", S("1"), NULL, &cur), OM_OK);
    omc_info_free(&cur);

    /* store on a present key */
    ck_assert_int_eq(omc_store(c, "cond", "p", S("1"), NULL, &cur), OM_OK);
    wrong = cur.version + 12345;
    ck_assert_int_eq(omc_store(c, "cond", "p", S("2"), &(omc_store_opts){.if_absent = true}, NULL),
                     OM_E_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(omc_last_message(c), "if_absent"));
    ck_assert_int_eq(omc_store(c, "cond", "p", S("2"),
                               &(omc_store_opts){.has_if_version = true, .if_version = wrong},
                               NULL),
                     OM_E_PRECONDITION);
    ck_assert_int_eq(omc_store(c, "cond", "p", S("2"),
                               &(omc_store_opts){.has_if_version = true, .if_version = cur.version},
                               &info),
                     OM_OK);
    ck_assert_uint_gt(info.version, cur.version);
    ck_assert_int_eq(omc_store(c, "cond", "p", S("3"), NULL, NULL), OM_OK);
    omc_info_free(&cur);

    /* delete: absent x if-version, present x wrong/right */
    v = 1;
    ck_assert_int_eq(omc_delete(c, "cond", "nothing", &v, NULL), OM_E_PRECONDITION);
    ck_assert_int_eq(omc_delete(c, "cond", "nothing", NULL, NULL), OM_E_NOTFOUND);
    ck_assert_int_eq(omc_head(c, "cond", "p", &cur), OM_OK);
    ck_assert_int_eq(omc_delete(c, "cond", "p", &info.version, NULL), OM_E_PRECONDITION);
    ck_assert_int_eq(omc_delete(c, "cond", "p", &cur.version, &v), OM_OK);
    ck_assert_uint_gt(v, cur.version);
    /* deleted = absent again: if-absent succeeds, the new version is above the tombstone's */
    omc_info_free(&cur);
    ck_assert_int_eq(omc_store(c, "cond", "p", S("4"), &(omc_store_opts){.if_absent = true}, &cur),
                     OM_OK);
    ck_assert_uint_gt(cur.version, v);

    omc_info_free(&cur);
    omc_info_free(&info);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

/* Compare-and-set increments from several connections: none may be lost. */
#define CAS_THREADS 4
#define CAS_ROUNDS 50

typedef struct cas_arg {
    const char *addr;
    int done, conflicts;
} cas_arg;

/* The number in a retrieved value (the buffer is not NUL-terminated). */
static long
counter_value(const om_buf *data)
{
    char text[32];
    snprintf(text, sizeof(text), "%.*s", (int)data->n, (const char *)data->p);
    return strtol(text, NULL, 10);
}

static void *
cas_main(void *arg)
{
    cas_arg *a = arg;
    omc_client *c = NULL;
    char msg[128], val[32];

    if (omc_connect(a->addr, 5000, &c, msg, sizeof(msg)) != OM_OK)
        return NULL;
    while (a->done < CAS_ROUNDS) {
        omc_info info;
        om_buf data = OM_BUF_INIT;
        if (omc_retrieve(c, "cas", "counter", &info, &data) != OM_OK)
            break;
        snprintf(val, sizeof(val), "%ld", counter_value(&data) + 1);
        om_buf_free(&data);
        omc_store_opts o = {.has_if_version = true, .if_version = info.version};
        om_status st = omc_store(c, "cas", "counter", S(val), &o, NULL);
        omc_info_free(&info);
        if (st == OM_OK)
            a->done++;
        else if (st == OM_E_PRECONDITION)
            a->conflicts++;
        else
            break;
    }
    omc_close(c);
    return NULL;
}

/* _i = 0: the synchronous path (sync-mode=none); 1: the commit pipeline (sync-mode=always) */
START_TEST(concurrent_conditions_are_atomic)
{
    static const char *const extra[2][2] = {{"--sync-mode=none", NULL},
                                            {"--sync-mode=always", NULL}};
    tu_proc *p = it_start_shard(NULL, extra[_i]);
    omc_client *c = it_client(p);
    pthread_t th[CAS_THREADS];
    cas_arg args[CAS_THREADS];
    char addr[64];
    om_buf data = OM_BUF_INIT;
    omc_info info;
    int conflicts = 0;

    snprintf(addr, sizeof(addr), "%s", it_addr(p));
    ck_assert_int_eq(omc_store(c, "cas", "counter", S("0"), NULL, NULL), OM_OK);
    for (int i = 0; i < CAS_THREADS; i++) {
        args[i] = (cas_arg){.addr = addr};
        ck_assert_int_eq(pthread_create(&th[i], NULL, cas_main, &args[i]), 0);
    }
    for (int i = 0; i < CAS_THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].done, CAS_ROUNDS);
        conflicts += args[i].conflicts;
    }
    ck_assert_int_eq(omc_retrieve(c, "cas", "counter", &info, &data), OM_OK);
    ck_assert_int_eq(counter_value(&data), CAS_THREADS * CAS_ROUNDS);
    omc_info_free(&info);
    printf("cas (%s writes): %d increments, %d conflicts refused\n",
           _i ? "pipeline" : "synchronous", CAS_THREADS * CAS_ROUNDS, conflicts);

    om_buf_free(&data);
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

/* The value of the series `name` on a /metrics page; fails the test if absent. */
static double
metric_value(const char *body, const char *name)
{
    double v = it_metric(body, name);

    ck_assert_msg(v >= 0, "no series %s in /metrics:\n%s", name, body);
    return v;
}

typedef struct commit_sample {
    double groups, writes, write_n, write_sum, sync_n, sync_sum;
} commit_sample;

static commit_sample
commit_metrics(int http)
{
    char *body = NULL;
    commit_sample c;

    ck_assert_int_eq(it_http_get(http, "/metrics", &body), 200);
    c.groups = metric_value(body, "objmeta_shard_commit_groups_total");
    c.writes = metric_value(body, "objmeta_shard_commit_writes_total");
    c.write_n = metric_value(body, "objmeta_shard_commit_write_duration_seconds_count");
    c.write_sum = metric_value(body, "objmeta_shard_commit_write_duration_seconds_sum");
    c.sync_n = metric_value(body, "objmeta_shard_commit_sync_duration_seconds_count");
    c.sync_sum = metric_value(body, "objmeta_shard_commit_sync_duration_seconds_sum");
    free(body);
    return c;
}

/*
 * The commit pipeline's metrics count every Store and Delete that reached the
 * writer (a refused Delete too: it was decided there), the groups they went
 * in, each group's write and -- with sync-mode always -- each WAL sync.
 * _i = 0: sync-mode always (the pipeline); 1: sync-mode none (no sync to time).
 */
START_TEST(commit_pipeline_metrics)
{
    static const char *const extra[2][2] = {{"--sync-mode=always", NULL},
                                            {"--sync-mode=none", NULL}};
    tu_proc *p = it_start_shard(NULL, extra[_i]);
    omc_client *c = it_client(p);
    int http = tu_proc_port(p, "http");
    commit_sample a = commit_metrics(http), b;
    char key[32];

    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(omc_store(c, "metrics", key, S("value"), NULL, NULL), OM_OK);
    }
    ck_assert_int_eq(omc_delete(c, "metrics", "k0", NULL, NULL), OM_OK);
    ck_assert_int_eq(omc_delete(c, "metrics", "k0", NULL, NULL), OM_E_NOTFOUND);
    b = commit_metrics(http);
    ck_assert_msg(b.writes - a.writes == 12, "writes %g -> %g", a.writes, b.writes);
    /* one client, one request at a time: each write is a group of its own */
    ck_assert_msg(b.groups - a.groups == 12, "groups %g -> %g", a.groups, b.groups);
    ck_assert_msg(b.write_n - a.write_n == b.groups - a.groups, "write count %g -> %g", a.write_n,
                  b.write_n);
    ck_assert(b.write_sum > a.write_sum);
    if (_i == 0) {
        ck_assert_msg(b.sync_n - a.sync_n >= 1 && b.sync_n - a.sync_n <= 12, "syncs %g -> %g",
                      a.sync_n, b.sync_n);
        ck_assert(b.sync_sum > a.sync_sum);
    } else {
        ck_assert_msg(b.sync_n == 0, "sync-mode none: %g syncs", b.sync_n);
    }
    omc_close(c);
    tu_proc_stop(p);
    tu_proc_free(p);
}
END_TEST

/* deploy/conf/shard.conf.example is exactly what --print-config prints. */
START_TEST(print_config_matches_example)
{
    const char *example = getenv("OBJMETA_SHARD_CONF_EXAMPLE");
    const char *const argv[] = {"objmeta-shard", "--print-config", NULL};
    char *out = NULL, *err = NULL, *want, *binary;
    FILE *f;
    long n;

    ck_assert_ptr_nonnull(example);
    example = strdup(example);
    binary = strdup(tu_bin("$OBJMETA_SHARD"));
    /* a clean environment: no OBJMETA_* setting may leak into the printed defaults */
    for (bool again = true; again;) {
        again = false;
        for (char **e = environ; *e != NULL; e++) {
            if (strncmp(*e, "OBJMETA_", 8) == 0) {
                char name[128];
                snprintf(name, sizeof(name), "%.*s", (int)(strcspn(*e, "=")), *e);
                unsetenv(name);
                again = true;
                break;
            }
        }
    }
    ck_assert_int_eq(tu_run_cmd(binary, argv, 10000, &out, &err), 0);
    f = fopen(example, "r");
    ck_assert_msg(f != NULL, "cannot open %s", example);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    want = calloc(1, (size_t)n + 1);
    ck_assert_uint_eq(fread(want, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    ck_assert_msg(strcmp(out, want) == 0,
                  "deploy/conf/shard.conf.example differs from objmeta-shard --print-config; "
                  "regenerate it with: objmeta-shard --print-config > "
                  "deploy/conf/shard.conf.example\n--- printed:\n%s",
                  out);
    free(want);
    free(out);
    free(err);
    free(binary);
    free((char *)example);
}
END_TEST

static Suite *
basic_suite(void)
{
    Suite *s = suite_create("shard-basic");
    TCase *tc = tcase_create("basic");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, harness_proof_health_metrics_sigterm);
    tcase_add_test(tc, every_operation);
    tcase_add_test(tc, condition_matrix);
    tcase_add_loop_test(tc, concurrent_conditions_are_atomic, 0, 2);
    tcase_add_loop_test(tc, commit_pipeline_metrics, 0, 2);
    tcase_add_test(tc, print_config_matches_example);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(basic_suite());
}
