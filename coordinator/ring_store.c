/*
 * coordinator/ring_store.c -- the coordinator's durable state in its data
 * dir: the ring (RING), the continuation-token key (TOKEN_SECRET), and the
 * parser of the initial shard list.
 *
 * RING layout (all integers little-endian):
 *
 *   magic    8 bytes  "OMRING\0\1"  (the last byte is the format version)
 *   length   fixed32  bytes of payload
 *   checksum fixed32  om_checksum32(payload)
 *   payload  records: tag byte, varint length, bytes
 *              tag 1: the ring in force (ring_encode: protobuf Ring)
 *              tag 2: the target ring of a change in progress (optional)
 *              tag 3: the migration state: phase, cursors, watermarks,
 *                     counters (optional; encoded by migrate.c)
 *            unknown tags are skipped, so later versions can add records.
 *
 * The same bytes are the value of <prefix>/state in etcd (cstate_etcd.c):
 * coord_ring_state_encode / _decode are shared.
 *
 * Writes are atomic: the bytes go to RING.tmp, which is fsynced, renamed
 * over RING, and the directory is fsynced so the rename itself is durable.
 * A crash leaves either the old or the new file, never a mix; a damaged file
 * is reported as OM_E_CORRUPT and the coordinator refuses to start rather
 * than invent a different ring.
 */
#define OM_LOG_MODULE "coord"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coordinator/coord_int.h"
#include "util/checksum.h"
#include "util/coding.h"
#include "util/log.h"

static const uint8_t ring_magic[8] = {'O', 'M', 'R', 'I', 'N', 'G', 0, 1};

#define RING_TAG_CURRENT 1
#define RING_TAG_PENDING 2
#define RING_TAG_MIGRATION 3
#define RING_FILE_MAX (64u << 20)

static om_status
store_path(const char *dir, const char *name, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);

    if (n < 0 || (size_t)n >= outlen) {
        om_log(OM_LOG_ERROR, "data dir path too long dir=%s", dir);
        return OM_ERR(OM_E_INVALID);
    }
    return OM_OK;
}

/* Write bytes to dir/name atomically: tmp file, fsync, rename, fsync of the directory. */
static om_status
store_write_atomic(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096], tmp[4096];
    int fd, dfd;
    size_t off = 0;

    OM_TRY(store_path(dir, name, path, sizeof(path)));
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return OM_ERR(OM_E_INVALID);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "cannot create file=%s err=\"%s\"", tmp, strerror(e));
        return OM_ERR(om_status_from_errno(e));
    }
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            om_log(OM_LOG_ERROR, "write failed file=%s err=\"%s\"", tmp, strerror(e));
            close(fd);
            unlink(tmp);
            return OM_ERR(om_status_from_errno(e));
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "fsync failed file=%s err=\"%s\"", tmp, strerror(e));
        close(fd);
        unlink(tmp);
        return OM_ERR(om_status_from_errno(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "rename failed from=%s to=%s err=\"%s\"", tmp, path, strerror(e));
        unlink(tmp);
        return OM_ERR(om_status_from_errno(e));
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        int e = errno;
        om_log(OM_LOG_ERROR, "fsync of directory failed dir=%s err=\"%s\"", dir, strerror(e));
        if (dfd >= 0)
            close(dfd);
        return OM_ERR(om_status_from_errno(e));
    }
    close(dfd);
    return OM_OK;
}

/* Read a whole (small) file. OM_E_NOTFOUND if absent. */
static om_status
store_read(const char *path, size_t max, om_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    om_status st = OM_OK;

    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            return OM_E_NOTFOUND;
        om_log(OM_LOG_ERROR, "cannot open file=%s err=\"%s\"", path, strerror(e));
        return OM_ERR(om_status_from_errno(e));
    }
    for (;;) {
        if ((st = om_buf_reserve(out, 4096)) != OM_OK)
            break;
        ssize_t r = read(fd, out->p + out->n, out->cap - out->n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            om_log(OM_LOG_ERROR, "read failed file=%s err=\"%s\"", path, strerror(e));
            st = OM_ERR(om_status_from_errno(e));
            break;
        }
        if (r == 0)
            break;
        out->n += (size_t)r;
        if (out->n > max) {
            st = OM_ERR(OM_E_CORRUPT);
            break;
        }
    }
    close(fd);
    return st;
}

om_status
coord_ring_store_save(const char *dir, const ring *cur, const ring *pending)
{
    return coord_ring_store_save_ex(dir, cur, pending, OM_SLICE_NULL);
}

om_status
coord_ring_state_encode(const ring *cur, const ring *pending, om_slice mig, om_buf *file)
{
    om_buf payload = OM_BUF_INIT, enc = OM_BUF_INIT;
    om_status st;

    OM_GOTO(ring_encode(cur, &enc));
    OM_GOTO(om_buf_append_byte(&payload, RING_TAG_CURRENT));
    OM_GOTO(om_buf_put_lenpref(&payload, om_buf_slice(&enc)));
    if (pending != NULL) {
        om_buf_reset(&enc);
        OM_GOTO(ring_encode(pending, &enc));
        OM_GOTO(om_buf_append_byte(&payload, RING_TAG_PENDING));
        OM_GOTO(om_buf_put_lenpref(&payload, om_buf_slice(&enc)));
    }
    if (mig.n > 0) {
        OM_GOTO(om_buf_append_byte(&payload, RING_TAG_MIGRATION));
        OM_GOTO(om_buf_put_lenpref(&payload, mig));
    }
    OM_GOTO(om_buf_append(file, ring_magic, sizeof(ring_magic)));
    OM_GOTO(om_buf_put_fixed32(file, (uint32_t)payload.n));
    OM_GOTO(om_buf_put_fixed32(file, om_checksum32(payload.p, payload.n)));
    OM_GOTO(om_buf_append_slice(file, om_buf_slice(&payload)));
fail:
    om_buf_free(&enc);
    om_buf_free(&payload);
    return st;
}

om_status
coord_ring_store_save_ex(const char *dir, const ring *cur, const ring *pending, om_slice mig)
{
    om_buf file = OM_BUF_INIT;
    om_status st;

    OM_GOTO(coord_ring_state_encode(cur, pending, mig, &file));
    OM_GOTO(store_write_atomic(dir, "RING", file.p, file.n));
fail:
    om_buf_free(&file);
    return st;
}

om_status
coord_ring_store_load(const char *dir, ring **cur, ring **pending, char *err, size_t errlen)
{
    om_buf mig = OM_BUF_INIT;
    om_status st = coord_ring_store_load_ex(dir, cur, pending, &mig, err, errlen);

    om_buf_free(&mig);
    return st;
}

om_status
coord_ring_store_load_ex(const char *dir, ring **cur, ring **pending, om_buf *mig, char *err,
                         size_t errlen)
{
    char path[4096];
    om_buf file = OM_BUF_INIT;
    om_status st;

    OM_TRY(store_path(dir, "RING", path, sizeof(path)));
    st = store_read(path, RING_FILE_MAX, &file);
    if (st == OM_E_CORRUPT)
        om_errf(err, errlen, "%s is larger than %u bytes", path, RING_FILE_MAX);
    if (st == OM_OK)
        st = coord_ring_state_decode(om_buf_slice(&file), path, cur, pending, mig, err, errlen);
    om_buf_free(&file);
    return st;
}

om_status
coord_ring_state_decode(om_slice in, const char *what, ring **cur, ring **pending, om_buf *mig,
                        char *err, size_t errlen)
{
    ring *c = NULL, *p = NULL;
    uint32_t len, sum;
    om_status st = OM_OK;

    if (in.n < 16 || memcmp(in.p, ring_magic, sizeof(ring_magic)) != 0) {
        om_errf(err, errlen, "%s is not a ring file (bad magic or too short)", what);
        st = OM_ERR(OM_E_CORRUPT);
        goto out;
    }
    len = om_get_fixed32(in.p + 8);
    sum = om_get_fixed32(in.p + 12);
    in.p += 16;
    in.n -= 16;
    if (len != in.n || om_checksum32(in.p, in.n) != sum) {
        om_errf(err, errlen, "%s is damaged (length or checksum mismatch)", what);
        st = OM_ERR(OM_E_CORRUPT);
        goto out;
    }
    while (in.n > 0) {
        uint8_t tag = in.p[0];
        om_slice rec;
        char rerr[256];
        ring **slot = tag == RING_TAG_CURRENT ? &c : tag == RING_TAG_PENDING ? &p : NULL;

        in.p++;
        in.n--;
        if (om_slice_get_lenpref(&in, &rec) != OM_OK) {
            om_errf(err, errlen, "%s: truncated record", what);
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
        if (tag == RING_TAG_MIGRATION) {
            om_buf_reset(mig);
            if ((st = om_buf_set(mig, rec)) != OM_OK)
                goto out;
            continue;
        }
        if (slot == NULL)
            continue; /* a record of a later version */
        if (*slot != NULL) {
            om_errf(err, errlen, "%s: record %u appears twice", what, tag);
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
        if ((st = ring_decode(rec, slot, rerr, sizeof(rerr))) != OM_OK) {
            om_errf(err, errlen, "%s: %s", what, rerr);
            st = OM_ERR(OM_E_CORRUPT);
            goto out;
        }
    }
    if (c == NULL) {
        om_errf(err, errlen, "%s holds no current ring", what);
        st = OM_ERR(OM_E_CORRUPT);
        goto out;
    }
    *cur = c;
    *pending = p;
    c = p = NULL;
out:
    ring_unref(c);
    ring_unref(p);
    return st;
}

om_status
coord_secret_random(uint8_t secret[COORD_SECRET_LEN])
{
    size_t got = 0;

    while (got < COORD_SECRET_LEN) {
        ssize_t r = getrandom(secret + got, COORD_SECRET_LEN - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            om_log(OM_LOG_ERROR, "getrandom failed err=\"%s\"", strerror(e));
            return OM_ERR(om_status_from_errno(e));
        }
        got += (size_t)r;
    }
    return OM_OK;
}

om_status
coord_secret_load(const char *dir, uint8_t secret[COORD_SECRET_LEN])
{
    char path[4096];
    om_buf file = OM_BUF_INIT;
    om_status st;

    OM_TRY(store_path(dir, "TOKEN_SECRET", path, sizeof(path)));
    st = store_read(path, 1024, &file);
    if (st == OM_OK && file.n == COORD_SECRET_LEN) {
        memcpy(secret, file.p, COORD_SECRET_LEN);
        om_buf_free(&file);
        return OM_OK;
    }
    om_buf_free(&file);
    if (st == OM_OK || st == OM_E_CORRUPT)
        om_log(OM_LOG_WARN, "token secret has the wrong size; making a new one file=%s", path);
    else if (st != OM_E_NOTFOUND)
        return st;
    OM_TRY(coord_secret_random(secret));
    return store_write_atomic(dir, "TOKEN_SECRET", secret, COORD_SECRET_LEN);
}

om_status
coord_parse_shards(const char *spec, uint32_t vnodes_per_weight, ring **out, char *err,
                   size_t errlen)
{
    char *copy, *save = NULL;
    ring_shard *sp = NULL;
    size_t n = 0, cap = 0;
    om_status st = OM_OK;

    if (spec == NULL || spec[0] == '\0') {
        om_errf(err, errlen, "no shards given (--shards id=host:port,...)");
        return OM_ERR(OM_E_INVALID);
    }
    copy = strdup(spec);
    if (copy == NULL)
        return OM_ERR(OM_E_NOMEM);
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq, *slash, *end;
        unsigned long w = 1;

        while (*item == ' ')
            item++;
        end = item + strlen(item);
        while (end > item && end[-1] == ' ')
            *--end = '\0';
        if (*item == '\0')
            continue;
        eq = strchr(item, '=');
        if (eq == NULL) {
            om_errf(err, errlen, "shard \"%s\" is not id=host:port", item);
            st = OM_ERR(OM_E_INVALID);
            goto out;
        }
        *eq = '\0';
        slash = strchr(eq + 1, '/');
        if (slash != NULL) {
            char *wend;
            *slash = '\0';
            errno = 0;
            w = strtoul(slash + 1, &wend, 10);
            if (errno != 0 || *wend != '\0' || slash[1] == '\0' || w > RING_MAX_WEIGHT) {
                om_errf(err, errlen, "shard \"%s\": bad weight \"%s\"", item, slash + 1);
                st = OM_ERR(OM_E_INVALID);
                goto out;
            }
        }
        if (strchr(eq + 1, ':') == NULL) {
            om_errf(err, errlen, "shard \"%s\": address \"%s\" is not host:port", item, eq + 1);
            st = OM_ERR(OM_E_INVALID);
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            ring_shard *v = realloc(sp, cap * sizeof(*v));
            if (v == NULL) {
                st = OM_ERR(OM_E_NOMEM);
                goto out;
            }
            sp = v;
        }
        sp[n++] = (ring_shard){item, eq + 1, (uint32_t)w};
    }
    st = ring_new(sp, n, vnodes_per_weight, 1, out, err, errlen);
out:
    free(sp);
    free(copy);
    return st;
}
