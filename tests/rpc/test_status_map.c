/*
 * tests/rpc/test_status_map.c -- unit suite for the small public pieces of
 * rpc/: the om_status <-> wire Status table, the Prometheus histogram and
 * helpers, the atomic port file, address parsing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc.h"
#include "rpc/rpc_int.h"
#include "tu.h"

START_TEST(status_every_wire_code_round_trips)
{
    /* Every wire value the generated enum defines maps to a distinct om code and back. */
    const ProtobufCEnumDescriptor *d = &objmeta__status__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        Objmeta__Status w = (Objmeta__Status)d->values[i].value;
        om_status om = rpc_status_from_proto(w);
        ck_assert_int_eq(rpc_status_to_proto(om), w);
        ck_assert_str_eq(rpc_proto_status_name(w), d->values[i].name);
        for (unsigned j = 0; j < i; j++)
            ck_assert_int_ne(rpc_status_from_proto((Objmeta__Status)d->values[j].value), om);
    }
    ck_assert_uint_eq(d->n_values, 12);
}
END_TEST

START_TEST(status_every_om_code_maps)
{
    const ProtobufCEnumDescriptor *d = &objmeta__status__descriptor;
    for (int i = 0; i < OM_STATUS_COUNT_; i++) {
        Objmeta__Status w = rpc_status_to_proto((om_status)i);
        ck_assert_ptr_nonnull(protobuf_c_enum_descriptor_get_value(d, (int)w));
        om_status back = rpc_status_from_proto(w);
        if (i == OM_E_NOMEM || i == OM_E_IO)
            ck_assert_int_eq(back, OM_E_INTERNAL); /* one way, documented */
        else
            ck_assert_int_eq(back, (om_status)i);
    }
    ck_assert_int_eq(rpc_status_to_proto(OM_OK), OBJMETA__STATUS__OK);
    ck_assert_int_eq(rpc_status_to_proto(OM_E_NOTFOUND), OBJMETA__STATUS__NOT_FOUND);
    ck_assert_int_eq(rpc_status_to_proto(OM_E_PRECONDITION), OBJMETA__STATUS__PRECONDITION_FAILED);
    ck_assert_int_eq(rpc_status_to_proto(OM_E_WRONG_SHARD), OBJMETA__STATUS__WRONG_SHARD);
    ck_assert_int_eq(rpc_status_to_proto(OM_E_CORRUPT), OBJMETA__STATUS__CORRUPTION);
    ck_assert_int_eq(rpc_status_to_proto((om_status)999), OBJMETA__STATUS__INTERNAL);
    ck_assert_int_eq(rpc_status_from_proto((Objmeta__Status)77), OM_E_INTERNAL);
    ck_assert_str_eq(rpc_proto_status_name((Objmeta__Status)77), "?");
}
END_TEST

START_TEST(status_of_response)
{
    Objmeta__Response r = OBJMETA__RESPONSE__INIT;
    r.status = OBJMETA__STATUS__BUSY;
    ck_assert_int_eq(rpc_response_status(&r), OM_E_BUSY);
}
END_TEST

START_TEST(hist_buckets_and_render)
{
    rpc_hist h;
    om_buf b = OM_BUF_INIT;

    rpc_hist_init(&h);
    ck_assert_uint_eq(rpc_hist_quantile_us(&h, 0.5), 0);
    rpc_hist_observe_ns(&h, 5000);           /* 5 us -> le 10us */
    rpc_hist_observe_ns(&h, 10000);          /* exactly 10 us -> le 10us */
    rpc_hist_observe_ns(&h, 10001);          /* -> le 20us */
    rpc_hist_observe_ns(&h, 3000000);        /* 3 ms -> le 5ms */
    rpc_hist_observe_ns(&h, 60000000000ull); /* 60 s -> +Inf */
    ck_assert_uint_eq(atomic_load(&h.count), 5);
    ck_assert_uint_eq(atomic_load(&h.bucket[0]), 2);
    ck_assert_uint_eq(atomic_load(&h.bucket[1]), 1);
    ck_assert_uint_eq(atomic_load(&h.bucket[RPC_HIST_BOUNDS]), 1);
    ck_assert_uint_eq(rpc_hist_quantile_us(&h, 0.4), 10);
    ck_assert_uint_eq(rpc_hist_quantile_us(&h, 0.6), 20);
    ck_assert_uint_eq(rpc_hist_quantile_us(&h, 0.8), 5000);
    ck_assert_uint_eq(rpc_hist_bound_us(0), 10);
    ck_assert_uint_eq(rpc_hist_bound_us(RPC_HIST_BOUNDS - 1), 10000000);

    ck_assert_int_eq(rpc_prom_header(&b, "x_seconds", "histogram", "Latency."), OM_OK);
    ck_assert_int_eq(rpc_hist_render(&h, &b, "x_seconds", "op=\"store\""), OM_OK);
    ck_assert_int_eq(om_buf_append_byte(&b, 0), OM_OK);
    const char *t = (const char *)b.p;
    ck_assert_ptr_nonnull(strstr(t, "# TYPE x_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{op=\"store\",le=\"1e-05\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{op=\"store\",le=\"2e-05\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{op=\"store\",le=\"10\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_bucket{op=\"store\",le=\"+Inf\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_count{op=\"store\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "x_seconds_sum{op=\"store\"} 60.003"));
    om_buf_reset(&b);
    ck_assert_int_eq(rpc_hist_render(&h, &b, "y", NULL), OM_OK);
    ck_assert_int_eq(rpc_prom_value(&b, "z", NULL, 3), OM_OK);
    ck_assert_int_eq(rpc_prom_value(&b, "z", "a=\"b\"", 1.5), OM_OK);
    ck_assert_int_eq(om_buf_append_byte(&b, 0), OM_OK);
    t = (const char *)b.p;
    ck_assert_ptr_nonnull(strstr(t, "y_bucket{le=\"+Inf\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "y_count 5\n"));
    ck_assert_ptr_nonnull(strstr(t, "\nz 3\n"));
    ck_assert_ptr_nonnull(strstr(t, "z{a=\"b\"} 1.5\n"));
    om_buf_free(&b);
}
END_TEST

START_TEST(port_file_is_written_whole)
{
    char path[512], buf[128];
    const char *names[] = {"rpc", "http"};
    const int ports[] = {40123, 40124};

    snprintf(path, sizeof(path), "%s/ports", tu_tmpdir());
    ck_assert_int_eq(rpc_port_file_write(path, names, ports, 2), OM_OK);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    ck_assert_str_eq(buf, "rpc 40123\nhttp 40124\n");
    const char *bad[] = {"has space"};
    ck_assert_int_eq(rpc_port_file_write(path, bad, ports, 1), OM_E_INVALID);
    ck_assert_int_eq(rpc_port_file_write(path, names, ports, 0), OM_E_INVALID);
    snprintf(path, sizeof(path), "%s/no/such/dir/ports", tu_tmpdir());
    ck_assert_int_ne(rpc_port_file_write(path, names, ports, 2), OM_OK);
}
END_TEST

START_TEST(address_parsing)
{
    char host[64];
    int port = -1;

    ck_assert_int_eq(rpc_addr_split("127.0.0.1:0", host, sizeof(host), &port), OM_OK);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 0);
    ck_assert_int_eq(rpc_addr_split("[::1]:7400", host, sizeof(host), &port), OM_OK);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 7400);
    ck_assert_int_eq(rpc_addr_split("localhost:65535", host, sizeof(host), &port), OM_OK);
    ck_assert_int_eq(rpc_addr_split("localhost:65536", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split("localhost", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split(":80", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split("h:", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split("h:8x", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split("[::1:80", host, sizeof(host), &port), OM_E_INVALID);
    ck_assert_int_eq(rpc_addr_split("", host, sizeof(host), &port), OM_E_INVALID);
}
END_TEST

static Suite *
status_suite(void)
{
    Suite *s = suite_create("rpc-status-map");
    TCase *tc = tcase_create("status");

    tcase_add_test(tc, status_every_wire_code_round_trips);
    tcase_add_test(tc, status_every_om_code_maps);
    tcase_add_test(tc, status_of_response);
    suite_add_tcase(s, tc);
    tc = tcase_create("helpers");
    tcase_add_test(tc, hist_buckets_and_render);
    tcase_add_test(tc, port_file_is_written_whole);
    tcase_add_test(tc, address_parsing);
    suite_add_tcase(s, tc);
    return s;
}

int
main(void)
{
    return tu_run(status_suite());
}
