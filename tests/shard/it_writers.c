/*
 * tests/shard/it_writers.c -- the replication tests' writers and their
 * model (it_writers.h).
 */
#include "it_writers.h"

#include <stdio.h>

#include "client/client.h"
#include "tu.h"
#include "util/clock.h"

void
it_writer_key(int id, int k, char *out, size_t n)
{
    snprintf(out, n, "w%d-%02d", id, k);
}

void *
it_writer_main(void *arg)
{
    it_writer *w = arg;
    omc_client *c = NULL;
    uint64_t rs = w->seed | 1;
    int cur = 0;
    char key[32], val[48], msg[128];

    while (!atomic_load(w->stop)) {
        int k = (int)(tu_rand(&rs) % IT_WRITER_KEYS);
        it_wkey *ks = &w->keys[k];
        bool del = ks->version != 0 && !ks->deleted && tu_rand(&rs) % 4 == 0;
        omc_info info;
        uint64_t v = 0, sent;
        om_status st;

        if (c == NULL && omc_connect(w->addrs[cur], w->connect_ms, &c, msg, sizeof(msg)) != OM_OK) {
            c = NULL;
            if (w->stop_on_error)
                break;
            cur = (cur + 1) % w->naddrs;
            om_clock_sleep_ms(20); /* backoff */
            continue;
        }
        omc_set_timeout(c, w->timeout_ms);
        it_writer_key(w->id, k, key, sizeof(key));
        snprintf(val, sizeof(val), "v-%d-%d-%llu", w->id, k, (unsigned long long)tu_rand(&rs));
        sent = tu_now_ms();
        st = del ? omc_delete(c, w->bucket, key, NULL, &v)
                 : omc_store(c, w->bucket, key, om_slice_from_str(val), NULL, &info);
        if (st != OM_OK) {
            /* perhaps written (a primary that died or lost its lease with it in hand) */
            ks->uncertain = true;
            omc_close(c);
            c = NULL;
            if (w->stop_on_error)
                break;
            cur = (cur + 1) % w->naddrs;
            if (w->backoff_ms > 0)
                om_clock_sleep_ms(w->backoff_ms);
            continue;
        }
        if (!del) {
            v = info.version;
            omc_info_free(&info);
            snprintf(ks->data, sizeof(ks->data), "%s", val);
        }
        ck_assert_uint_gt(v, ks->version); /* versions increase per key */
        ks->version = v;
        ks->deleted = del;
        ks->uncertain = false; /* a later acknowledged write decides the key */
        if (w->hint != NULL)
            atomic_store(w->hint, cur);
        atomic_store(&w->ok_sent_ms, sent);
        atomic_store(&w->ok_after_ms, tu_now_ms());
        atomic_fetch_add(&w->acked, 1);
    }
    omc_close(c);
    return NULL;
}

void
it_writers_start(it_writer *w, pthread_t *th, int n, const it_writer *tmpl, uint64_t seed)
{
    ck_assert(tmpl->naddrs >= 1 && tmpl->naddrs <= IT_WRITER_MAX_ADDRS);
    for (int i = 0; i < n; i++) {
        for (int a = 0; a < IT_WRITER_MAX_ADDRS; a++)
            w[i].addrs[a] = tmpl->addrs[a];
        w[i].naddrs = tmpl->naddrs;
        w[i].bucket = tmpl->bucket;
        w[i].connect_ms = tmpl->connect_ms;
        w[i].timeout_ms = tmpl->timeout_ms;
        w[i].backoff_ms = tmpl->backoff_ms;
        w[i].stop_on_error = tmpl->stop_on_error;
        w[i].stop = tmpl->stop;
        w[i].hint = tmpl->hint;
        w[i].id = tmpl->id + i;
        w[i].seed = seed + (uint64_t)i * 7919;
        ck_assert_int_eq(pthread_create(&th[i], NULL, it_writer_main, &w[i]), 0);
    }
}

void
it_writers_join(it_writer *w, pthread_t *th, int n)
{
    if (n > 0)
        atomic_store(w[0].stop, true);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

int
it_writers_acked(it_writer *w, int n)
{
    int t = 0;

    for (int i = 0; i < n; i++)
        t += atomic_load(&w[i].acked);
    return t;
}

void
it_writers_wait_acked(it_writer *w, int n, int more, int timeout_ms)
{
    int target = it_writers_acked(w, n) + more;
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;

    while (it_writers_acked(w, n) < target) {
        ck_assert_msg(tu_now_ms() < deadline, "writes do not continue (%d of %d acknowledged)",
                      it_writers_acked(w, n), target);
        om_clock_sleep_ms(5); /* polling the counters */
    }
}

bool
it_wkey_check(const it_wkey *ks, const char *key, const char *where, om_status st, uint64_t version,
              om_slice data)
{
    if (ks->version == 0 || ks->uncertain)
        return false; /* a later write may or may not have happened */
    if (ks->deleted) {
        ck_assert_msg(st == OM_E_NOTFOUND, "%s: acknowledged delete (version %llu) undone on %s",
                      key, (unsigned long long)ks->version, where);
        return true;
    }
    ck_assert_msg(st == OM_OK, "%s: acknowledged write (version %llu) missing on %s: %s", key,
                  (unsigned long long)ks->version, where, om_status_str(st));
    ck_assert_msg(version == ks->version, "%s on %s: version %llu, acknowledged %llu", key, where,
                  (unsigned long long)version, (unsigned long long)ks->version);
    ck_assert_msg(om_slice_eq(data, om_slice_from_str(ks->data)),
                  "%s on %s: other bytes than acknowledged", key, where);
    return true;
}
