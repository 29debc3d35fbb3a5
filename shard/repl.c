/*
 * shard/repl.c -- the primary side of replication (repl.h; design:
 * shard/REPLICATION.md): every group commit the shard writes gets the next
 * replication index, its records are kept, and one shipping thread per
 * backup sends them; the commit pipeline's sync step waits for all backups.
 *
 * The path of one group commit, with its threads:
 *
 *   writer   shard_write_group (shard.c) stages each record it puts into
 *            the engine batch (shard_repl_stage), then seals the group
 *            (shard_repl_seal: the replica state (term, index + 1) joins the
 *            same batch, so the index is durable exactly with the data),
 *            writes it -- into the WAL file, not yet synced -- and hands it
 *            over (shard_repl_written: the group is queued, `last` moves on,
 *            and once this term is durable here (below) it is published to
 *            the shippers at once). One writer at a time: the pipeline
 *            writes groups one after another (commit.h).
 *   sync     commit's sync step (commit_set_replication): mark = `last`
 *            BEFORE lsm_sync -- every group queued by then is in the WAL,
 *            so the sync covers it -- and after the sync, ship(mark):
 *            publish mark (if not yet) and wait until every in-sync backup
 *            has acknowledged it durable. Only then does `durable` advance
 *            and the gate release the replies: a reply needs the primary's
 *            sync AND every in-sync backup's, which run at the same time.
 *            Shipping before the own sync means a backup may hold a group
 *            its primary then loses (a machine crash between write and
 *            sync). Safe because that primary never writes the same index
 *            of the same term again (REPLICATION.md, "The write rule"): with
 *            etcd a restarted primary never leads its term again -- it knows
 *            the term it led because its first group of each term ships only
 *            after its own sync (term_durable) -- and with static membership,
 *            where a restarted primary keeps its term, its first answer from
 *            each backup must not be above start_index (else it holds).
 *   shipper  per backup: while the backup's acknowledged index is below the
 *            published mark, send Replicate(first = acked + 1, the queued
 *            groups up to the mark, at most max_request_bytes) over a
 *            blocking rpc client; the answer's durable_index is the new
 *            acked. A refusal for a gap resends from the index the backup
 *            names; a backup in a later term means this primary is stale:
 *            the error is sticky and every ship fails from then on (the
 *            held replies become errors; nothing more is acknowledged).
 *            Transport errors and other refusals pause retry_ms and send
 *            again, for ever: a backup that does not answer holds the
 *            writes -- with static membership until it answers; with etcd
 *            until repl_etcd.c removed it from the in-sync set, the only
 *            backups ship(mark) waits for (shard_repl_set_in_sync). A
 *            backup out of the set still gets the stream, and a probe when
 *            idle, so that it can rejoin.
 *
 * Catch-up (repl_catchup.c): when a backup needs a group no longer queued
 * (a gap answer after a restart of either side, or an empty backup) or
 * diverged, its shipper takes an engine snapshot at the last queued index
 * s, keeps the groups above s for it, and sends the snapshot in key order
 * as CatchUpPages (replica.c makes each page's key range equal to it); the
 * last page sets the backup to s and the ordinary stream follows
 * (REPLICATION.md, "Catch-up").
 *
 * Memory: a queued group is freed once every backup acknowledged it. While
 * a backup is away the queue grows up to max_held_bytes; then the writer
 * waits in shard_repl_written (and, behind it, the loop on the writer's
 * queue), which is the pipeline's ordinary backpressure.
 *
 * State and its guards (the structs: repl_int.h):
 *   writer only   stage, w_index (the index the next seal assigns - 1)
 *   mu            head/tail (the queue), held_bytes, last, ship_to, err,
 *                 stop, term_durable, every peer's acked
 *   immutable     start_index; a queued group's contents (shippers read
 *                 them unlocked: a group is freed only when every peer's
 *                 acked passed it, and a shipper reads only groups above
 *                 its own acked)
 * mu is a leaf (shard_int.h): the writer takes it after the stripes are
 * released, the sync thread with no commit lock held.
 */
#define OM_LOG_MODULE "repl"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/record.h"
#include "shard/repl.h"
#include "shard/repl_int.h"
#include "shard/shard_int.h"
#include "util/clock.h"
#include "util/log.h"

/* The structs: repl_int.h. */

void
shard_repl_opts_init(shard_repl_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->group = "";
    o->term = 1;
    o->timeout_ms = 2000;
    o->retry_ms = 200;
    o->max_request_bytes = 4u << 20;
    o->max_held_bytes = 256u << 20;
    o->catch_up_rate = 16u << 20;
}

/* ---- the writer's hooks (shard.c) ---- */

void
shard_repl_stage(shard_repl *r, om_slice key, om_slice value)
{
    size_t lens[2] = {key.n, value.n};
    repl_stage *g = &r->stage;

    if (g->err != OM_OK)
        return;
    if (r->opts.drop_key != NULL && r->opts.drop_key[0] != '\0' &&
        memmem(key.p, key.n, r->opts.drop_key, strlen(r->opts.drop_key)) != NULL)
        g->drop = true;
    if (om_buf_append_slice(&g->mem, key) != OM_OK ||
        om_buf_append_slice(&g->mem, value) != OM_OK ||
        om_buf_append(&g->lens, lens, sizeof(lens)) != OM_OK)
        g->err = OM_ERR(OM_E_NOMEM);
    else
        g->n++;
}

om_status
shard_repl_seal(shard_repl *r, lsm_batch *b)
{
    shard_repl_state next = {.term = r->opts.term, .index = r->w_index + 1};

    /* no record staged: a term mark (shard_commit_term_mark), the replica state alone */
    if (r->stage.err != OM_OK)
        return r->stage.err;
    return shard_repl_state_put(b, &next);
}

/* The staged records as one queued group (NULL: out of memory). */
static repl_group *
group_from_stage(const repl_stage *g, uint64_t index)
{
    size_t n = g->n, bytes = g->mem.n, off = 0;
    const size_t *lens = (const size_t *)(const void *)g->lens.p;
    size_t head = sizeof(repl_group) +
                  n * (sizeof(Objmeta__MigrateRecord *) + sizeof(Objmeta__MigrateRecord));
    repl_group *q = malloc(head + bytes);

    if (q == NULL)
        return NULL;
    memset(q, 0, sizeof(*q));
    q->index = index;
    q->bytes = bytes;
    q->t_ns = om_clock_mono_ns();
    /* pointers first, then the structs: both arrays stay aligned in mem */
    q->ptrs = (Objmeta__MigrateRecord **)(void *)q->mem;
    q->recs = (Objmeta__MigrateRecord *)(void *)(q->mem + n * sizeof(Objmeta__MigrateRecord *));
    uint8_t *data =
        q->mem + n * (sizeof(Objmeta__MigrateRecord *) + sizeof(Objmeta__MigrateRecord));
    if (bytes > 0)
        memcpy(data, g->mem.p, bytes);
    objmeta__replicate_group__init(&q->pb);
    q->pb.records = q->ptrs;
    q->pb.n_records = n;
    for (size_t i = 0; i < n; i++) {
        Objmeta__MigrateRecord *m = &q->recs[i];
        shard_record rec;

        objmeta__migrate_record__init(m);
        m->key.data = data + off;
        m->key.len = lens[2 * i];
        off += lens[2 * i];
        m->value.data = data + off;
        m->value.len = lens[2 * i + 1];
        off += lens[2 * i + 1];
        /* the writer encoded it a moment ago: it decodes (checked in every build); no value:
         * a purge of a key the group no longer owns (mig_jobs.c), version 0 */
        OM_ASSERT_ALWAYS(
            m->value.len == 0 ||
            shard_record_decode_head(om_slice_make(m->value.data, m->value.len), &rec) == OM_OK);
        m->version = m->value.len == 0 ? 0 : rec.version;
        q->ptrs[i] = m;
    }
    return q;
}

/*
 * Requires: mu held. Let the shippers send every group up to mark (the
 * shippers' ship_to). A backup idle until now owes nothing yet: its silence
 * counts from here.
 */
static void
publish(shard_repl *r, uint64_t mark)
{
    /* ship before the primary's own sync only once a group of this term is durable here */
    OM_ASSERT(mark <= r->start_index || r->term_durable);
    if (r->drop_from != 0 && mark >= r->drop_from)
        mark = r->drop_from - 1; /* test-drop-shipment-key: never published from drop_from on */
    if (mark <= r->ship_to)
        return;
    for (size_t i = 0; i < r->npeers; i++)
        if (r->peers[i].known && !r->peers[i].catching && r->peers[i].acked >= r->ship_to)
            repl_progress(&r->peers[i]);
    r->ship_to = mark;
    pthread_cond_broadcast(&r->cv);
}

void
shard_repl_written(shard_repl *r, om_status st)
{
    repl_group *q = NULL;
    bool drop = r->stage.drop;

    if (st == OM_OK) {
        q = group_from_stage(&r->stage, r->w_index + 1);
        if (q == NULL)
            st = OM_ERR(OM_E_NOMEM);
    }
    r->stage.n = 0;
    r->stage.drop = false;
    r->stage.err = OM_OK;
    om_buf_reset(&r->stage.mem);
    om_buf_reset(&r->stage.lens);
    if (st != OM_OK && q == NULL) {
        /*
         * The engine refused the write (it now refuses every write and the
         * shard reports unhealthy), or, after a successful write, no memory
         * to keep the group: its index is used on disk, so no later group
         * can be shipped in order -- fail like a stale primary.
         */
        pthread_mutex_lock(&r->mu);
        if (r->err == OM_OK)
            r->err = st;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        om_log(OM_LOG_ERROR, "a group commit cannot be replicated status=%s index=%llu",
               om_status_str(st), (unsigned long long)(r->w_index + 1));
        return;
    }
    r->w_index++;
    pthread_mutex_lock(&r->mu);
    OM_ASSERT(q->index == r->last + 1); /* queued in index order, no hole */
    if (r->tail != NULL)
        r->tail->next = q;
    else
        r->head = q;
    r->tail = q;
    r->last = q->index;
    if (drop && r->drop_from == 0)
        r->drop_from = q->index;
    r->held_bytes += q->bytes;
    repl_trim(r); /* nothing to keep when no backup needs it (none in sync, none near) */
    /* backpressure: a backup away for long holds at most max_held_bytes here */
    while (r->held_bytes > r->opts.max_held_bytes && !r->stop && r->err == OM_OK)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

/* ---- the sync step's hooks (commit_set_replication) ---- */

static uint64_t
repl_mark(void *arg)
{
    shard_repl *r = arg;
    uint64_t m;

    pthread_mutex_lock(&r->mu);
    m = r->last;
    if (r->term_durable)
        publish(r, m); /* shipped while the sync thread syncs them here (header) */
    pthread_mutex_unlock(&r->mu);
    return m;
}

/*
 * Requires: mu held. The lowest index every in-sync backup acknowledged (0
 * for one not heard yet; UINT64_MAX with none: the primary alone is the set).
 */
static uint64_t
min_acked(const shard_repl *r)
{
    uint64_t m = UINT64_MAX;

    for (size_t i = 0; i < r->npeers; i++) {
        uint64_t a = r->peers[i].known ? r->peers[i].acked : 0;

        if (!r->peers[i].in_sync)
            continue;

        if (a < m)
            m = a;
    }
    return m;
}

static om_status
repl_ship(void *arg, uint64_t mark)
{
    shard_repl *r = arg;
    om_status st;

    pthread_mutex_lock(&r->mu);
    if (mark > r->start_index)
        r->term_durable = true; /* the sync before this covered a group of this term */
    if (r->drop_from != 0 && mark >= r->drop_from) /* once: the wait below never ends */
        om_log(OM_LOG_WARN, "test-drop-shipment-key: durable here, never shipped index=%llu",
               (unsigned long long)mark);
    publish(r, mark);
    while (min_acked(r) < mark && !r->stop && r->err == OM_OK)
        pthread_cond_wait(&r->cv, &r->mu);
    st = r->err != OM_OK ? r->err : min_acked(r) >= mark ? OM_OK : OM_ERR(OM_E_UNAVAILABLE);
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* ---- the shippers ---- */

/*
 * Requires: mu held. Free the groups every backup has (or gets by its
 * catch-up's snapshot). A backup out of the in-sync set keeps groups only
 * while they fill less than half of max_held_bytes: beyond, it gets a
 * catch-up when it returns, and the writes never wait for it.
 */
void
repl_trim(shard_repl *r)
{
    uint64_t m = UINT64_MAX;
    bool keep_out = r->held_bytes <= r->opts.max_held_bytes / 2;

    for (size_t i = 0; i < r->npeers; i++) {
        const repl_peer *p = &r->peers[i];
        uint64_t floor = p->catching ? p->snap_index : p->acked;

        if (floor < m && (p->in_sync || keep_out))
            m = floor;
    }

    while (r->head != NULL && r->head->index <= m) {
        repl_group *q = r->head;

        r->head = q->next;
        if (r->head == NULL)
            r->tail = NULL;
        r->held_bytes -= q->bytes;
        free(q);
    }
}

void
repl_progress(repl_peer *p)
{
    p->progress_ns = om_clock_mono_ns();
}

void
repl_answered(repl_peer *p)
{
    p->answer_ns = om_clock_mono_ns();
}

/* Requires: mu held. Wait up to ms or until stopped. */
void
repl_pause_ms(shard_repl *r, uint32_t ms)
{
    if (!r->stop)
        om_clock_cond_wait_ns(&r->cv, &r->mu, (uint64_t)ms * 1000000u);
}

/*
 * Requires: mu held. The groups to send to p: from p->acked + 1 up to
 * ship_to, at most max_request_bytes (at least one group). 0 groups: the
 * first one needed is no longer queued (*missing set).
 */
static size_t
collect(shard_repl *r, const repl_peer *p, Objmeta__ReplicateGroup ***out, bool *missing)
{
    const repl_group *q = r->head;
    size_t n = 0, bytes = 0, cap = (size_t)(r->ship_to - p->acked);
    Objmeta__ReplicateGroup **v;

    *missing = false;
    while (q != NULL && q->index <= p->acked)
        q = q->next;
    if (q == NULL || q->index != p->acked + 1) {
        *missing = true;
        return 0;
    }
    v = calloc(cap, sizeof(*v));
    if (v == NULL)
        return 0;
    for (; q != NULL && q->index <= r->ship_to; q = q->next) {
        if (n > 0 && bytes + q->bytes > r->opts.max_request_bytes)
            break;
        v[n++] = (Objmeta__ReplicateGroup *)&q->pb;
        bytes += q->bytes;
    }
    *out = v;
    return n;
}

/* Act on the answer to a Replicate of indexes [first, last]. Requires: mu held. */
void
repl_peer_answer(repl_peer *p, uint64_t first, uint64_t last, const Objmeta__Response *resp,
                 bool *quiet)
{
    shard_repl *r = p->r;
    const Objmeta__ReplicateResponse *a =
        resp->body_case == OBJMETA__RESPONSE__BODY_REPLICATE ? resp->replicate : NULL;
    om_status st = rpc_response_status(resp);

    if (a != NULL && a->term > r->opts.term) {
        /* a later primary exists: never acknowledge anything again */
        om_log(OM_LOG_ERROR,
               "backup is in a later term: this primary is stale backup=%s term=%llu "
               "own_term=%llu",
               p->addr, (unsigned long long)a->term, (unsigned long long)r->opts.term);
        if (r->err == OM_OK)
            r->err = OM_ERR(OM_E_UNAVAILABLE); /* clients go to the current primary */
        pthread_cond_broadcast(&r->cv);
        return;
    }
    (void)last;
    if (a != NULL && st == OM_E_PRECONDITION && a->term < r->opts.term &&
        a->durable_index >= first) {
        /*
         * Divergence: the backup holds indexes of an older term (a former
         * primary's never-acknowledged groups) that this term may have
         * written differently. Repair: make it a copy of this primary's
         * snapshot (REPLICATION.md, "Divergence repair").
         */
        om_log(OM_LOG_WARN,
               "backup diverged: repairing it from a snapshot backup=%s term=%llu "
               "index=%llu",
               p->addr, (unsigned long long)a->term, (unsigned long long)a->durable_index);
        p->known = true;
        repl_progress(p);
        repl_catch_up_start(p);
        return;
    }
    if (a != NULL && a->durable_index > (p->known ? r->last : r->start_index)) {
        /*
         * More than this primary ever wrote -- or, at the first answer, more
         * than it held when it started: groups an earlier run of it shipped
         * before its own sync and then lost (a machine crash), which this run
         * may write again differently. Not this primary's history.
         */
        om_log(OM_LOG_ERROR,
               "backup holds an index beyond this primary's backup=%s index=%llu "
               "own_last=%llu: writes are held",
               p->addr, (unsigned long long)a->durable_index, (unsigned long long)r->last);
        repl_pause_ms(r, r->opts.retry_ms * 10);
        return;
    }
    if (a != NULL && (st == OM_OK || (st == OM_E_PRECONDITION && a->durable_index < first - 1))) {
        /* applied, or a gap (the backup is behind what was sent): go on from its index */
        if (st != OM_OK && !*quiet)
            om_log(OM_LOG_WARN, "backup is behind backup=%s index=%llu sent_from=%llu", p->addr,
                   (unsigned long long)a->durable_index, (unsigned long long)first);
        *quiet = st != OM_OK;
        if (!p->known || a->durable_index > p->acked || a->durable_index >= r->ship_to)
            repl_progress(p);
        p->acked = a->durable_index;
        p->known = true;
        repl_trim(r);
        pthread_cond_broadcast(&r->cv);
        return;
    }
    if (!*quiet)
        om_log(OM_LOG_WARN, "backup answered an error backup=%s status=%s msg=\"%s\"", p->addr,
               om_status_str(st), resp->message);
    *quiet = true;
    repl_pause_ms(r, r->opts.retry_ms);
}

static void *
peer_main(void *arg)
{
    repl_peer *p = arg;
    shard_repl *r = p->r;
    rpc_sync_client *cli = NULL;
    bool quiet = false; /* the current trouble is logged already */
    const uint64_t half_timeout_ns = (uint64_t)r->opts.timeout_ms * 500000u;

    pthread_setname_np(pthread_self(), "shard-ship");
    pthread_mutex_lock(&r->mu);
    while (!r->stop && r->err == OM_OK) {
        Objmeta__Request req = OBJMETA__REQUEST__INIT;
        Objmeta__ReplicateRequest rq = OBJMETA__REPLICATE_REQUEST__INIT;
        Objmeta__ReplicateGroup **groups = NULL;
        Objmeta__Response *resp = NULL;
        bool missing, idle;
        uint64_t first = p->acked + 1;
        om_status st;

        if (p->catching) {
            repl_catch_up_step(p, &cli, &quiet);
            continue;
        }
        idle = p->known && p->acked >= r->ship_to;
        if (idle && p->in_sync) {
            pthread_cond_wait(&r->cv, &r->mu);
            continue;
        }
        if (idle && om_clock_mono_ns() - p->answer_ns < half_timeout_ns) {
            repl_pause_ms(r, r->opts.timeout_ms / 2);
            continue;
        }
        /*
         * A probe (no groups): not heard yet -- where is the backup, in which
         * term? -- or idle out of the in-sync set: its answers show that it
         * is back, so that it can rejoin without waiting for a write.
         */
        rq.n_groups = p->known && !idle ? collect(r, p, &groups, &missing) : 0;
        if (rq.n_groups == 0 && p->known && !idle) {
            if (missing)
                repl_catch_up_start(p); /* index `first` is no longer kept */
            else
                repl_pause_ms(r, r->opts.retry_ms); /* out of memory */
            continue;
        }
        pthread_mutex_unlock(&r->mu);
        rq.group = r->group;
        rq.term = r->opts.term;
        rq.first_index = first;
        rq.groups = groups;
        req.body_case = OBJMETA__REQUEST__BODY_REPLICATE;
        req.replicate = &rq;
        st = cli != NULL ? OM_OK
                         : rpc_sync_client_open_tls(p->addr, r->opts.timeout_ms, r->opts.tls, &cli);
        if (st == OM_OK)
            st = rpc_sync_client_call(cli, &req, r->opts.timeout_ms, &resp);
        free(groups);
        pthread_mutex_lock(&r->mu);
        if (st != OM_OK) {
            if (!quiet)
                om_log(OM_LOG_WARN, "backup unreachable: writes are held backup=%s status=%s",
                       p->addr, om_status_str(st));
            quiet = true;
            repl_pause_ms(r, r->opts.retry_ms);
            continue;
        }
        if (quiet && rpc_response_status(resp) == OM_OK)
            om_log(OM_LOG_INFO, "backup answers again backup=%s", p->addr);
        repl_answered(p);
        repl_peer_answer(p, first, first + rq.n_groups - 1, resp, &quiet);
        rpc_response_free(resp);
    }
    if (p->snap != NULL) {
        lsm_snapshot *snap = p->snap;

        p->snap = NULL;
        pthread_mutex_unlock(&r->mu);
        lsm_snapshot_free(shard_db(r->s), snap);
    } else {
        pthread_mutex_unlock(&r->mu);
    }
    rpc_sync_client_close(cli);
    return NULL;
}

/* ---- metrics ---- */

static om_status
gauge(om_buf *out, const char *name, const char *help, const char *labels, double v)
{
    OM_TRY(rpc_prom_header(out, name, "gauge", help));
    return rpc_prom_value(out, name, labels, v);
}

/*
 * Requires: mu held. Backup i's state (shard_repl_peer_get); lag_bytes and
 * lag_s only with `lag` (a walk over the groups kept for it).
 */
static void
peer_info(const shard_repl *r, size_t i, uint64_t now, bool lag, shard_repl_peer_info *o)
{
    const repl_peer *p = &r->peers[i];
    bool owes = !p->known || p->catching || p->acked < r->ship_to;

    memset(o, 0, sizeof(*o));
    o->addr = p->addr;
    o->in_sync = p->in_sync;
    o->known = p->known;
    o->catching = p->catching;
    o->acked = p->acked;
    o->silent = owes && now - p->progress_ns > (uint64_t)r->opts.timeout_ms * 1000000u;
    o->answering = p->known && now - p->answer_ns < (uint64_t)r->opts.timeout_ms * 1000000u;
    o->lag_records = r->last - (p->acked < r->last ? p->acked : r->last);
    if (p->catching) {
        o->cu_bytes = p->cu_bytes;
        o->cu_records = p->cu_records;
        o->cu_total = p->cu_total;
    }
    for (const repl_group *q = lag ? r->head : NULL; q != NULL; q = q->next) {
        if (q->index <= p->acked)
            continue;
        if (o->lag_bytes == 0)
            o->lag_s = (double)(now - q->t_ns) / 1e9;
        o->lag_bytes += q->bytes;
    }
}

/* The per-backup gauges. Requires: mu held (no allocation but the buffer's). */
static om_status
render_backups(shard_repl *r, om_buf *out)
{
    static const struct {
        const char *name, *help;
    } m[9] = {
        {"objmeta_replication_backup_acked_index", "The last index the backup has durable."},
        {"objmeta_replication_backup_lag_records", "Group commits the backup lacks."},
        {"objmeta_replication_backup_lag_bytes", "Bytes of records kept for the backup."},
        {"objmeta_replication_backup_lag_seconds", "Age of the oldest group the backup lacks."},
        {"objmeta_replication_backup_catching_up", "1 while the backup gets a snapshot."},
        {"objmeta_replication_backup_in_sync", "1 while writes wait for the backup."},
        {"objmeta_replication_catch_up_bytes",
         "Catch-up: key and value bytes of the snapshot sent (0 when not catching up)."},
        {"objmeta_replication_catch_up_total_bytes",
         "Catch-up: the snapshot's estimated bytes (its tables and memtables)."},
        {"objmeta_replication_catch_up_records", "Catch-up: records of the snapshot sent."},
    };
    char labels[160];
    uint64_t now = om_clock_mono_ns();

    for (int k = 0; k < 9; k++) {
        OM_TRY(rpc_prom_header(out, m[k].name, "gauge", m[k].help));
        for (size_t i = 0; i < r->npeers; i++) {
            shard_repl_peer_info pi;
            double v[9];

            peer_info(r, i, now, true, &pi);
            v[0] = (double)pi.acked;
            v[1] = (double)pi.lag_records;
            v[2] = (double)pi.lag_bytes;
            v[3] = pi.lag_s;
            v[4] = pi.catching;
            v[5] = pi.in_sync;
            v[6] = (double)pi.cu_bytes;
            v[7] = (double)pi.cu_total;
            v[8] = (double)pi.cu_records;
            snprintf(labels, sizeof(labels), "backup=\"%s\"", pi.addr);
            OM_TRY(rpc_prom_value(out, m[k].name, labels, v[k]));
        }
    }
    return OM_OK;
}

om_status
shard_repl_render_metrics(shard *s, om_buf *out)
{
    shard_repl_state st;
    const char *role = s->repl != NULL ? "role=\"primary\"" : "role=\"backup\"";
    om_status rc = OM_OK;

    if (s->repl == NULL && s->replica == NULL)
        return OM_OK;
    if (s->repl != NULL)
        shard_repl_primary_state(s->repl, &st);
    else
        shard_replica_state(s->replica, &st);
    OM_TRY(gauge(out, "objmeta_replication_role", "This replica's role (label).", role, 1));
    OM_TRY(gauge(out, "objmeta_replication_term", "The term this replica is in.", NULL,
                 (double)st.term));
    OM_TRY(gauge(out, "objmeta_replication_index", "The last group commit written or applied.",
                 NULL, (double)st.index));
    if (s->repl == NULL)
        return OM_OK;
    pthread_mutex_lock(&s->repl->mu);
    rc = render_backups(s->repl, out);
    if (rc == OM_OK)
        rc = gauge(out, "objmeta_replication_failed",
                   "1 once replication failed for good (a backup is in a later term, or a "
                   "group could not be kept): no write is acknowledged any more.",
                   NULL, s->repl->err != OM_OK);
    pthread_mutex_unlock(&s->repl->mu);
    return rc;
}

bool
shard_repl_ping_state(shard *s, Objmeta__ReplicationState *out, Objmeta__BackupState *bs,
                      Objmeta__BackupState **bp, size_t cap)
{
    shard_repl_state st;
    uint64_t now = om_clock_mono_ns();
    shard_repl *r = s->repl;

    if (r == NULL && s->replica == NULL)
        return false;
    if (r != NULL)
        shard_repl_primary_state(r, &st);
    else
        shard_replica_state(s->replica, &st);
    out->role = r != NULL ? "primary" : "backup";
    out->term = st.term;
    out->index = st.index;
    out->backups = bp;
    out->n_backups = 0;
    if (r == NULL)
        return true;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->npeers && i < cap; i++) {
        shard_repl_peer_info pi;
        Objmeta__BackupState *b = &bs[i];

        peer_info(r, i, now, true, &pi);
        objmeta__backup_state__init(b);
        b->addr = (char *)pi.addr;
        b->acked_index = pi.acked;
        b->lag_records = pi.lag_records;
        b->lag_bytes = pi.lag_bytes;
        b->in_sync = pi.in_sync;
        b->catching_up = pi.catching;
        b->answering = pi.answering;
        b->catch_up_bytes = pi.cu_bytes;
        b->catch_up_total = pi.cu_total;
        b->catch_up_records = pi.cu_records;
        bp[i] = b;
        out->n_backups = i + 1;
    }
    pthread_mutex_unlock(&r->mu);
    return true;
}

/* ---- the in-sync set (shard/repl_etcd.c) ---- */

size_t
shard_repl_peer_count(const shard_repl *r)
{
    return r->npeers;
}

void
shard_repl_peer_get(shard_repl *r, size_t i, shard_repl_peer_info *out)
{
    pthread_mutex_lock(&r->mu);
    peer_info(r, i, om_clock_mono_ns(), false, out);
    pthread_mutex_unlock(&r->mu);
}

void
shard_repl_set_in_sync(shard_repl *r, size_t i, bool in_sync)
{
    pthread_mutex_lock(&r->mu);
    if (r->peers[i].in_sync != in_sync) {
        r->peers[i].in_sync = in_sync;
        repl_progress(&r->peers[i]); /* silence counts from now */
        repl_trim(r);
        pthread_cond_broadcast(&r->cv); /* ship and a waiting writer look again */
    }
    pthread_mutex_unlock(&r->mu);
}

bool
shard_repl_ready(shard_repl *r, uint64_t index)
{
    bool ok;

    pthread_mutex_lock(&r->mu);
    ok = r->err == OM_OK && min_acked(r) >= index;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

void
shard_repl_fail(shard_repl *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->err == OM_OK)
        r->err = OM_ERR(OM_E_UNAVAILABLE);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---- life ---- */

void
shard_repl_primary_state(shard_repl *r, shard_repl_state *out)
{
    pthread_mutex_lock(&r->mu);
    out->term = r->opts.term;
    out->index = r->last;
    pthread_mutex_unlock(&r->mu);
}

static void
repl_free(shard_repl *r)
{
    while (r->head != NULL) {
        repl_group *q = r->head;
        r->head = q->next;
        free(q);
    }
    for (size_t i = 0; i < r->npeers; i++) {
        free(r->peers[i].addr);
        om_buf_free(&r->peers[i].cursor);
    }
    free(r->peers);
    free(r->group);
    om_buf_free(&r->stage.mem);
    om_buf_free(&r->stage.lens);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/*
 * A primary that holds writes (index > 0) serves only once every backup has
 * confirmed them: a group synced here just before a crash may have reached
 * no backup, and a read must not show it until it has (the gate only covers
 * the groups of this run). The probes also raise the backups to this term.
 */
static om_status
await_backups(shard_repl *r, uint64_t index)
{
    uint64_t t0 = om_clock_mono_ns(), logged = 0;
    om_status st;

    if (index == 0)
        return OM_OK; /* nothing written yet, nothing to protect: a stale term shows at a write */
    pthread_mutex_lock(&r->mu);
    while (min_acked(r) < index && r->err == OM_OK) {
        uint64_t waited_s = (om_clock_mono_ns() - t0) / 1000000000u;

        if (waited_s >= logged + 5) {
            logged = waited_s;
            om_log(OM_LOG_WARN,
                   "waiting for every backup to confirm index %llu before serving "
                   "waited_s=%llu",
                   (unsigned long long)index, (unsigned long long)waited_s);
        }
        repl_pause_ms(r, 1000);
    }
    st = r->err;
    pthread_mutex_unlock(&r->mu);
    return st;
}

/* The comma-separated backup addresses into r->peers (empty items are skipped). */
static om_status
peers_parse(shard_repl *r, const char *list)
{
    size_t n = 1;

    for (const char *p = list; *p != '\0'; p++)
        n += *p == ',';
    if ((r->peers = calloc(n, sizeof(*r->peers))) == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (const char *p = list; *p != '\0';) {
        size_t len = strcspn(p, ",");

        if (len > 0 && (r->peers[r->npeers++].addr = strndup(p, len)) == NULL)
            return OM_ERR(OM_E_NOMEM);
        p += len + (p[len] == ',');
    }
    return OM_OK;
}

om_status
shard_repl_open(shard *s, const shard_repl_opts *o, shard_repl **out)
{
    shard_repl *r = calloc(1, sizeof(*r));
    shard_repl_state held;
    om_status st;

    if (r == NULL)
        return OM_ERR(OM_E_NOMEM);
    r->s = s;
    r->opts = *o;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->group = strdup(o->group ? o->group : "");
    r->opts.backups = NULL; /* parsed into peers below; not kept */
    if (r->group == NULL || peers_parse(r, o->backups ? o->backups : "") != OM_OK) {
        repl_free(r);
        return OM_ERR(OM_E_NOMEM);
    }
    if (o->term == 0 || r->npeers == 0 || s->opts.lsm.sync_mode != LSM_SYNC_ALWAYS) {
        om_log(OM_LOG_ERROR,
               "a primary needs a term >= 1, at least one backup and sync-mode "
               "always term=%llu backups=%zu",
               (unsigned long long)o->term, r->npeers);
        repl_free(r);
        return OM_ERR(OM_E_INVALID);
    }
    st = shard_repl_state_load(shard_db(s), &held);
    if (st == OM_OK && held.term > o->term) {
        om_log(OM_LOG_ERROR,
               "this replica holds term %llu, above the configured %llu: it was "
               "a backup of a later primary and cannot lead term %llu",
               (unsigned long long)held.term, (unsigned long long)o->term,
               (unsigned long long)o->term);
        st = OM_ERR(OM_E_INVALID);
    }
    if (st != OM_OK) {
        repl_free(r);
        return st;
    }
    r->w_index = r->last = r->ship_to = r->start_index = held.index;
    r->term_durable = held.term == o->term; /* restarted in its term (static membership) */
    for (size_t i = 0; i < r->npeers; i++) {
        r->peers[i].r = r;
        r->peers[i].acked = held.index; /* until a backup says otherwise (a gap) */
        r->peers[i].in_sync = true;
        repl_progress(&r->peers[i]);
    }
    for (size_t i = 0; i < r->npeers; i++) {
        if (pthread_create(&r->peers[i].th, NULL, peer_main, &r->peers[i]) != 0) {
            shard_repl_close(r);
            return OM_ERR(OM_E_NOMEM);
        }
        r->peers[i].have_th = true;
    }
    st = o->no_await ? OM_OK : await_backups(r, held.index);
    if (st != OM_OK) {
        shard_repl_close(r);
        return st;
    }
    s->repl = r;
    commit_set_replication(s->commit,
                           &(commit_repl){.mark = repl_mark, .ship = repl_ship, .arg = r});
    om_log(OM_LOG_INFO, "primary of group=%s term=%llu index=%llu backups=%zu", r->group,
           (unsigned long long)o->term, (unsigned long long)held.index, r->npeers);
    *out = r;
    return OM_OK;
}

void
shard_repl_stop(shard_repl *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->npeers; i++)
        if (r->peers[i].have_th) {
            pthread_join(r->peers[i].th, NULL);
            r->peers[i].have_th = false;
        }
}

void
shard_repl_close(shard_repl *r)
{
    if (r == NULL)
        return;
    shard_repl_stop(r);
    repl_free(r);
}
