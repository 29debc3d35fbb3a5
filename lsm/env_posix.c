/*
 * lsm/env_posix.c -- the default lsm_env: plain POSIX file I/O.
 *
 * This is the syscall boundary of the engine (STYLE.md §5): every errno is
 * converted to an om_status here and logged once, with the operation and the
 * path, so callers only pass statuses on. Writers append with write(2) in a
 * loop that survives short writes and EINTR; syncs use fdatasync(2), and
 * wfile_writeback starts the write-out of a range early with
 * sync_file_range(2) (SYNC_FILE_RANGE_WRITE: no wait, no durability); readers
 * use pread(2) so one open file serves many threads at once, or a read-only
 * mmap(2) of the whole file (rfile_map) that SSTable readers prefer. Renames are
 * atomic replacements; sync_dir fsyncs the directory so a rename or a new
 * file survives power loss. The database lock is an flock(2) on a LOCK file,
 * which the kernel drops if the process dies.
 *
 * Thread-safety: the env is a const singleton; a wfile belongs to one thread
 * at a time; rfile reads are safe concurrently (pread has no shared offset).
 */
#define OM_LOG_MODULE "lsm"
#include "lsm/env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"

typedef struct posix_wfile {
    lsm_wfile base;
    int fd;
    char *path;
} posix_wfile;

typedef struct posix_rfile {
    lsm_rfile base;
    int fd;
    char *path;
    void *map; /* rfile_map's mapping, or NULL */
    size_t map_size;
} posix_rfile;

/* Convert errno to a status and log it once, naming the operation and path. */
static om_status
posix_err(const char *op, const char *path, int err)
{
    om_status st = om_status_from_errno(err);

    /* A missing file is an answer (callers probe for CURRENT etc.), not an incident. */
    if (st == OM_E_NOTFOUND)
        om_log(OM_LOG_DEBUG, "%s failed path=%s err=\"%s\"", op, path, strerror(err));
    else
        om_log(OM_LOG_ERROR, "%s failed path=%s err=\"%s\"", op, path, strerror(err));
    /* Every failure other than "absent" and "no memory" is an I/O error for the engine. */
    if (st != OM_E_NOTFOUND && st != OM_E_NOMEM && st != OM_E_INVALID)
        st = OM_E_IO;
    return OM_ERR(st);
}

static om_status
posix_wfile_open(lsm_env *env, const char *path, bool append, lsm_wfile **out)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
    posix_wfile *f;
    int fd;

    do {
        fd = open(path, flags, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return posix_err("open", path, errno);
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        close(fd);
        return OM_ERR(OM_E_NOMEM);
    }
    f->base.env = env;
    f->fd = fd;
    *out = &f->base;
    return OM_OK;
}

static om_status
posix_wfile_append(lsm_wfile *wf, const void *p, size_t n)
{
    posix_wfile *f = (posix_wfile *)wf;
    const uint8_t *s = p;

    while (n > 0) {
        ssize_t w = write(f->fd, s, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return posix_err("write", f->path, errno);
        }
        if (w == 0)
            return posix_err("write", f->path, EIO);
        s += w;
        n -= (size_t)w;
    }
    return OM_OK;
}

static om_status
posix_wfile_zero(lsm_wfile *wf, uint64_t off, uint64_t n)
{
    static const uint8_t zeros[64 * 1024];
    posix_wfile *f = (posix_wfile *)wf;

    while (n > 0) {
        size_t want = n < sizeof(zeros) ? (size_t)n : sizeof(zeros);
        ssize_t w = pwrite(f->fd, zeros, want, (off_t)off);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return posix_err("pwrite", f->path, errno);
        }
        if (w == 0)
            return posix_err("pwrite", f->path, EIO);
        off += (uint64_t)w;
        n -= (uint64_t)w;
    }
    return OM_OK;
}

static om_status
posix_wfile_writeback(lsm_wfile *wf, uint64_t off, uint64_t n)
{
    posix_wfile *f = (posix_wfile *)wf;

    if (n == 0)
        return OM_OK;
    if (off > INT64_MAX || n > INT64_MAX - off) /* beyond off_t */
        return posix_err("sync_file_range", f->path, EINVAL);
    if (sync_file_range(f->fd, (off_t)off, (off_t)n, SYNC_FILE_RANGE_WRITE) != 0)
        return posix_err("sync_file_range", f->path, errno);
    return OM_OK;
}

static om_status
posix_wfile_sync(lsm_wfile *wf)
{
    posix_wfile *f = (posix_wfile *)wf;
    int r;

    do {
        r = fdatasync(f->fd);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return posix_err("fdatasync", f->path, errno);
    return OM_OK;
}

static om_status
posix_wfile_close(lsm_wfile *wf)
{
    posix_wfile *f = (posix_wfile *)wf;
    om_status st = OM_OK;

    /* close(2) must not be retried on EINTR on Linux: the fd is gone either way. */
    if (close(f->fd) != 0 && errno != EINTR)
        st = posix_err("close", f->path, errno);
    free(f->path);
    free(f);
    return st;
}

static om_status
posix_rfile_open(lsm_env *env, const char *path, lsm_rfile **out, uint64_t *size)
{
    posix_rfile *f;
    struct stat sb;
    int fd;

    do {
        fd = open(path, O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return posix_err("open", path, errno);
    if (fstat(fd, &sb) != 0) {
        om_status st = posix_err("fstat", path, errno);

        close(fd);
        return st;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->path = strdup(path)) == NULL) {
        free(f);
        close(fd);
        return OM_ERR(OM_E_NOMEM);
    }
    f->base.env = env;
    f->fd = fd;
    *out = &f->base;
    if (size != NULL)
        *size = (uint64_t)sb.st_size;
    return OM_OK;
}

static om_status
posix_rfile_read(lsm_rfile *rf, uint64_t off, size_t n, uint8_t *dst, size_t *got)
{
    posix_rfile *f = (posix_rfile *)rf;
    size_t done = 0;

    while (done < n) {
        ssize_t r = pread(f->fd, dst + done, n - done, (off_t)(off + done));

        if (r < 0) {
            if (errno == EINTR)
                continue;
            return posix_err("pread", f->path, errno);
        }
        if (r == 0)
            break; /* end of file */
        done += (size_t)r;
    }
    *got = done;
    return OM_OK;
}

static void
posix_rfile_close(lsm_rfile *rf)
{
    posix_rfile *f = (posix_rfile *)rf;

    if (f->map != NULL)
        munmap(f->map, f->map_size);
    close(f->fd);
    free(f->path);
    free(f);
}

static om_status
posix_rfile_map(lsm_rfile *rf, const uint8_t **p, uint64_t *size)
{
    posix_rfile *f = (posix_rfile *)rf;
    struct stat sb;
    void *m;

    if (f->map == NULL) {
        if (fstat(f->fd, &sb) != 0)
            return posix_err("fstat", f->path, errno);
        if (sb.st_size <= 0)
            return OM_E_INVALID; /* nothing to map; the caller reads instead */
        m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (m == MAP_FAILED) {
            /* Not fatal: the caller falls back to pread. */
            om_log(OM_LOG_WARN, "mmap failed, reading instead path=%s err=\"%s\"", f->path,
                   strerror(errno));
            return OM_E_IO;
        }
        f->map = m;
        f->map_size = (size_t)sb.st_size;
    }
    *p = f->map;
    *size = f->map_size;
    return OM_OK;
}

static om_status
posix_rename(lsm_env *env, const char *from, const char *to)
{
    if (rename(from, to) != 0)
        return posix_err("rename", from, errno);
    return OM_OK;
}

static om_status
posix_remove(lsm_env *env, const char *path)
{
    if (unlink(path) != 0)
        return posix_err("unlink", path, errno);
    return OM_OK;
}

static om_status
posix_truncate(lsm_env *env, const char *path, uint64_t size)
{
    int r;

    do {
        r = truncate(path, (off_t)size);
    } while (r != 0 && errno == EINTR);
    if (r != 0)
        return posix_err("truncate", path, errno);
    return OM_OK;
}

static om_status
posix_links(lsm_env *env, const char *path, uint64_t *n)
{
    struct stat sb;

    (void)env;
    if (stat(path, &sb) != 0)
        return posix_err("stat", path, errno);
    *n = (uint64_t)sb.st_nlink;
    return OM_OK;
}

static om_status
posix_mkdir(lsm_env *env, const char *path)
{
    struct stat sb;

    if (mkdir(path, 0755) == 0)
        return OM_OK;
    if (errno == EEXIST && stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return OM_OK;
    return posix_err("mkdir", path, errno);
}

static om_status
posix_rmdir(lsm_env *env, const char *path)
{
    if (rmdir(path) != 0)
        return posix_err("rmdir", path, errno);
    return OM_OK;
}

static om_status
posix_exists(lsm_env *env, const char *path, bool *out)
{
    struct stat sb;

    if (stat(path, &sb) == 0) {
        *out = true;
        return OM_OK;
    }
    if (errno == ENOENT || errno == ENOTDIR) {
        *out = false;
        return OM_OK;
    }
    return posix_err("stat", path, errno);
}

static om_status
posix_list(lsm_env *env, const char *dir, char ***names_out, size_t *n_out)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;

    if (d == NULL)
        return posix_err("opendir", dir, errno);
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = realloc(names, ncap * sizeof(*nn));

            if (nn == NULL)
                goto nomem;
            names = nn;
            cap = ncap;
        }
        if ((names[n] = strdup(de->d_name)) == NULL)
            goto nomem;
        n++;
        errno = 0;
    }
    if (errno != 0) {
        om_status st = posix_err("readdir", dir, errno);

        closedir(d);
        lsm_env_free_list(names, n);
        return st;
    }
    closedir(d);
    *names_out = names;
    *n_out = n;
    return OM_OK;
nomem:
    closedir(d);
    lsm_env_free_list(names, n);
    return OM_ERR(OM_E_NOMEM);
}

static om_status
posix_sync_dir(lsm_env *env, const char *dir)
{
    int fd, r;

    do {
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return posix_err("open dir", dir, errno);
    do {
        r = fsync(fd);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        om_status st = posix_err("fsync dir", dir, errno);

        close(fd);
        return st;
    }
    close(fd);
    return OM_OK;
}

static om_status
posix_lock(lsm_env *env, const char *path, int *handle)
{
    int fd, r;

    do {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return posix_err("open lock", path, errno);
    do {
        r = flock(fd, LOCK_EX | LOCK_NB);
    } while (r != 0 && errno == EINTR);
    if (r != 0) {
        int err = errno;

        close(fd);
        if (err == EWOULDBLOCK) {
            om_log(OM_LOG_ERROR, "database locked by another user path=%s", path);
            return OM_ERR(OM_E_INVALID);
        }
        return posix_err("flock", path, err);
    }
    *handle = fd;
    return OM_OK;
}

static void
posix_unlock(lsm_env *env, int handle)
{
    if (handle >= 0) {
        flock(handle, LOCK_UN);
        close(handle);
    }
}

static const lsm_env_ops posix_ops = {
    .wfile_open = posix_wfile_open,
    .wfile_append = posix_wfile_append,
    .wfile_sync = posix_wfile_sync,
    .wfile_close = posix_wfile_close,
    .rfile_open = posix_rfile_open,
    .rfile_read = posix_rfile_read,
    .rfile_close = posix_rfile_close,
    .rename = posix_rename,
    .remove = posix_remove,
    .truncate = posix_truncate,
    .mkdir = posix_mkdir,
    .rmdir = posix_rmdir,
    .exists = posix_exists,
    .list = posix_list,
    .sync_dir = posix_sync_dir,
    .lock = posix_lock,
    .unlock = posix_unlock,
    .rfile_map = posix_rfile_map,
    .wfile_zero = posix_wfile_zero,
    .wfile_writeback = posix_wfile_writeback,
    .links = posix_links,
};

/* The env holds no mutable state, so one static instance serves every database. */
static lsm_env posix_env = {.ops = &posix_ops};

lsm_env *
lsm_env_posix(void)
{
    return &posix_env;
}

void
lsm_env_free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
