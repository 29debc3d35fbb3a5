/*
 * tests/harness/tu.c -- the shared test runner and the real-process harness.
 *
 * Port file format (written atomically by the servers, see README): one line
 * per listener, `<name> <port>`, e.g. "rpc 40123\nhttp 40124\n".
 */
#include "tu.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TU_MAX_PROCS 64
#define TU_MAX_DIRS 256

struct tu_proc {
    pid_t pid;
    char *binary;
    char *data_dir;
    char *port_file;
    char *stderr_path;
    int ports_n;
    char port_names[8][16];
    int ports[8];
    bool running;
};

static tu_proc *procs[TU_MAX_PROCS];
static char *dirs[TU_MAX_DIRS];
static int ndirs;
static bool atexit_done;

uint64_t
tu_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void tu_atexit(void);

static void
tu_register_atexit(void)
{
    if (!atexit_done) {
        atexit(tu_atexit);
        atexit_done = true;
    }
}

int
tu_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

static int
tu_rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void
tu_rmrf(const char *path)
{
    nftw(path, tu_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

const char *
tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[4096];
    char *d;

    snprintf(tmpl, sizeof(tmpl), "%s/objmeta-test-XXXXXX", base && *base ? base : "/tmp");
    d = mkdtemp(tmpl);
    ck_assert_msg(d != NULL, "mkdtemp(%s): %s", tmpl, strerror(errno));
    d = strdup(d);
    ck_assert_ptr_nonnull(d);
    tu_register_atexit();
    if (ndirs < TU_MAX_DIRS)
        dirs[ndirs++] = d;
    return d;
}

uint64_t
tu_seed(const char *test_name)
{
    const char *env = getenv("TU_SEED");
    uint64_t seed;

    if (env && *env)
        seed = strtoull(env, NULL, 0);
    else
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 16) ^ tu_now_ms();
    if (seed == 0)
        seed = 0x9E3779B97F4A7C15ULL;
    printf("%s: seed=%llu (rerun with TU_SEED=%llu)\n", test_name, (unsigned long long)seed,
           (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

uint64_t
tu_rand(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

const char *
tu_bin(const char *binary)
{
    if (binary[0] == '$') {
        const char *p = getenv(binary + 1);
        ck_assert_msg(p != NULL && *p, "environment variable %s (path of a binary) is not set",
                      binary + 1);
        return p;
    }
    return binary;
}

/* A whole file as a heap string ("" if it cannot be opened; NULL without memory). Reads to
 * EOF: /proc files say they are empty. */
static char *
tu_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t n = 0, cap = 4096;
    char *buf;

    if (f == NULL)
        return strdup("");
    if ((buf = malloc(cap)) == NULL) {
        fclose(f);
        return NULL;
    }
    for (;;) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *more = realloc(buf, cap * 2);
        if (more == NULL)
            break;
        buf = more;
        cap *= 2;
    }
    buf[n] = '\0';
    fclose(f);
    return buf;
}

void
tu_proc_dump_stderr(const tu_proc *p)
{
    char *s = tu_slurp(p->stderr_path);

    fprintf(stderr, "----- stderr of %s (pid %d) -----\n%s----- end of stderr -----\n", p->binary,
            (int)p->pid, s ? s : "");
    free(s);
}

char *
tu_proc_stderr(const tu_proc *p)
{
    char *s = tu_slurp(p->stderr_path);

    ck_assert_ptr_nonnull(s);
    return s;
}

/*
 * Where a process that does not start waits, for the failure report: which
 * program it runs (tu-exec not yet replaced: it never reached the server),
 * its state, the system call it is in, and per thread the kernel function
 * it sleeps in (and the kernel stack where readable).
 */
static void
tu_proc_dump_where(pid_t pid)
{
    static const char *const files[] = {"status", "syscall", "stack"};
    char path[512], exe[4096] = "?";
    ssize_t n;
    DIR *d;

    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    if ((n = readlink(path, exe, sizeof(exe) - 1)) >= 0)
        exe[n] = '\0';
    fprintf(stderr, "----- pid %d runs %s -----\n", (int)pid, exe);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char *s;

        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
        s = tu_slurp(path);
        if (i == 0 && s != NULL && strstr(s, "State:") != NULL) /* the State line only */
            fprintf(stderr, "%.*s\n", (int)strcspn(strstr(s, "State:"), "\n"), strstr(s, "State:"));
        else if (i > 0)
            fprintf(stderr, "%s: %s\n", files[i], s != NULL && s[0] ? s : "(unreadable)\n");
        free(s);
    }
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    if ((d = opendir(path)) != NULL) {
        struct dirent *de;

        while ((de = readdir(d)) != NULL) {
            char *comm, *wchan;

            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "/proc/%d/task/%s/comm", (int)pid, de->d_name);
            comm = tu_slurp(path);
            snprintf(path, sizeof(path), "/proc/%d/task/%s/wchan", (int)pid, de->d_name);
            wchan = tu_slurp(path);
            fprintf(stderr, "thread %s %.*s: wchan=%s\n", de->d_name,
                    comm ? (int)strcspn(comm, "\n") : 1, comm ? comm : "?", wchan ? wchan : "?");
            free(comm);
            free(wchan);
        }
        closedir(d);
    }
    fprintf(stderr, "----- end of pid %d -----\n", (int)pid);
}

static bool
tu_read_ports(tu_proc *p)
{
    FILE *f = fopen(p->port_file, "r");
    char name[16];
    int port;

    if (f == NULL)
        return false;
    p->ports_n = 0;
    while (p->ports_n < 8 && fscanf(f, "%15s %d", name, &port) == 2) {
        snprintf(p->port_names[p->ports_n], sizeof(p->port_names[0]), "%s", name);
        p->ports[p->ports_n++] = port;
    }
    fclose(f);
    return p->ports_n > 0;
}

/*
 * Start argv[0] with argv, its stderr appended to p->stderr_path and its
 * stdout there too (or into out_fd). posix_spawn, not fork: this process is
 * multi-threaded while tests run, and no code of it may run in the child
 * (tu_exec.c, the program started first, says why and sets PDEATHSIG).
 */
static void
tu_spawn(tu_proc *p, char **argv, int out_fd)
{
    char parent[24], *av[132];
    posix_spawn_file_actions_t fa;
    int argc = 0, rc;
    pid_t pid;

    snprintf(parent, sizeof(parent), "%d", (int)getpid());
    av[argc++] = TU_EXEC_PATH;
    av[argc++] = parent;
    for (int i = 0; argv[i] != NULL && argc < 131; i++)
        av[argc++] = argv[i];
    av[argc] = NULL;
    ck_assert_int_eq(posix_spawn_file_actions_init(&fa), 0);
    ck_assert_int_eq(posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, p->stderr_path,
                                                      O_WRONLY | O_CREAT | O_APPEND, 0644),
                     0);
    if (out_fd >= 0) {
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO), 0);
        ck_assert_int_eq(posix_spawn_file_actions_addclose(&fa, out_fd), 0);
    } else {
        ck_assert_int_eq(posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO), 0);
    }
    /* none of this process's descriptors (client sockets, files) outlives it in a server */
    ck_assert_int_eq(posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1), 0);
    rc = posix_spawn(&pid, TU_EXEC_PATH, &fa, NULL, av, environ);
    posix_spawn_file_actions_destroy(&fa);
    ck_assert_msg(rc == 0, "posix_spawn %s: %s", argv[0], strerror(rc));
    p->pid = pid;
    p->running = true;
}

tu_proc *
tu_proc_start(const char *binary, const tu_proc_opts *o)
{
    static const tu_proc_opts defaults = {0};
    tu_proc *p = calloc(1, sizeof(*p));
    char path[4096];
    char *argv[128];
    int argc = 0;
    int timeout = 10000;

    if (o == NULL)
        o = &defaults;
    if (o->start_timeout_ms > 0)
        timeout = o->start_timeout_ms;
    ck_assert_ptr_nonnull(p);
    p->binary = strdup(tu_bin(binary));
    p->data_dir = strdup(o->data_dir ? o->data_dir : tu_tmpdir());
    snprintf(path, sizeof(path), "%s.ports", p->data_dir);
    p->port_file = strdup(path);
    snprintf(path, sizeof(path), "%s.stderr", p->data_dir);
    p->stderr_path = strdup(path);
    unlink(p->port_file);

    argv[argc++] = p->binary;
    if (!o->no_listen) {
        argv[argc++] = "--listen=127.0.0.1:0";
        snprintf(path, sizeof(path), "--port-file=%s", p->port_file);
        argv[argc++] = strdup(path);
        snprintf(path, sizeof(path), "--data-dir=%s", p->data_dir);
        argv[argc++] = strdup(path);
    }
    for (int i = 0; o->extra && o->extra[i] && argc < 126; i++)
        argv[argc++] = (char *)o->extra[i];
    argv[argc] = NULL;

    tu_register_atexit();
    for (int i = 0; i < TU_MAX_PROCS; i++) {
        if (procs[i] == NULL) {
            procs[i] = p;
            break;
        }
    }
    tu_spawn(p, argv, -1);
    if (!o->no_listen) { /* the child has exec'd its own copy of the strdup'd arguments */
        free(argv[2]);
        free(argv[3]);
    }
    if (o->no_listen)
        return p;

    uint64_t t0 = tu_now_ms(), deadline = t0 + (uint64_t)timeout;
    for (;;) {
        int status;
        if (tu_read_ports(p)) {
            if (tu_now_ms() - t0 > 3000) /* a slow start is worth a line in the log */
                printf("%s (pid %d) took %llu ms to start\n", p->binary, (int)p->pid,
                       (unsigned long long)(tu_now_ms() - t0));
            return p;
        }
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->running = false;
            tu_proc_dump_stderr(p);
            ck_abort_msg("%s exited during startup (status %d)", p->binary, status);
        }
        if (tu_now_ms() > deadline) {
            tu_proc_dump_stderr(p);
            tu_proc_dump_where(p->pid);
            ck_abort_msg("%s did not write its port file within %d ms", p->binary, timeout);
        }
        struct timespec ts = {0, 5 * 1000000L}; /* poll interval, not synchronisation */
        nanosleep(&ts, NULL);
    }
}

int
tu_proc_port(const tu_proc *p, const char *name)
{
    for (int i = 0; i < p->ports_n; i++)
        if (strcmp(p->port_names[i], name) == 0)
            return p->ports[i];
    return 0;
}

const char *
tu_proc_data_dir(const tu_proc *p)
{
    return p->data_dir;
}

int
tu_proc_pid(const tu_proc *p)
{
    return (int)p->pid;
}

static int
tu_wait_deadline(pid_t pid, int timeout_ms, bool *exited)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;
    int status = 0;

    *exited = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) {
            *exited = true;
            return status;
        }
        if (tu_now_ms() > deadline)
            return 0;
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/*
 * A sanitizer report in a child (ThreadSanitizer, AddressSanitizer, UBSan,
 * LeakSanitizer) fails the test that ran it, whether or not the report made
 * the child fail a request: its stderr is printed and the test aborts. Not
 * at exit (the test has failed already, and its stderr is printed then).
 */
static bool tu_in_atexit;

static void
tu_proc_check_sanitizers(const tu_proc *p)
{
    static const char *const marks[] = {"ThreadSanitizer:", "AddressSanitizer", "LeakSanitizer",
                                        "runtime error:"};
    char *s;

    if (tu_in_atexit || (s = tu_slurp(p->stderr_path)) == NULL)
        return;
    for (size_t i = 0; i < sizeof(marks) / sizeof(marks[0]); i++) {
        if (strstr(s, marks[i]) != NULL) {
            free(s);
            tu_proc_dump_stderr(p);
            ck_abort_msg("%s (pid %d) printed a sanitizer report (\"%s\"): see its stderr above",
                         p->binary, (int)p->pid, marks[i]);
        }
    }
    free(s);
}

int
tu_proc_stop(tu_proc *p)
{
    bool exited;
    int status;

    if (!p->running)
        return 0;
    kill(p->pid, SIGTERM);
    status = tu_wait_deadline(p->pid, 5000, &exited);
    if (!exited) {
        fprintf(stderr, "%s (pid %d) ignored SIGTERM for 5 s; sending SIGKILL\n", p->binary,
                (int)p->pid);
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
    }
    p->running = false;
    tu_proc_check_sanitizers(p);
    return status;
}

void
tu_proc_kill9(tu_proc *p)
{
    int status;

    if (!p->running)
        return;
    kill(p->pid, SIGKILL);
    waitpid(p->pid, &status, 0);
    p->running = false;
    tu_proc_check_sanitizers(p);
}

void
tu_proc_free(tu_proc *p)
{
    if (p == NULL)
        return;
    if (p->running)
        tu_proc_stop(p);
    for (int i = 0; i < TU_MAX_PROCS; i++)
        if (procs[i] == p)
            procs[i] = NULL;
    free(p->binary);
    free(p->data_dir);
    free(p->port_file);
    free(p->stderr_path);
    free(p);
}

int
tu_run_cmd(const char *binary, const char *const *argv, int timeout_ms, char **out, char **err)
{
    char tmpl[] = "/tmp/objmeta-cmd-XXXXXX";
    char outp[64], errp[64];
    char *av[128];
    tu_proc p = {0};
    int argc = 0, fd, status;
    bool exited;
    int dfd = -1;

    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    snprintf(outp, sizeof(outp), "%s/out", tmpl);
    snprintf(errp, sizeof(errp), "%s/err", tmpl);
    p.binary = (char *)tu_bin(binary);
    p.stderr_path = errp;
    av[argc++] = p.binary;
    for (int i = 1; argv && argv[i] && argc < 127; i++)
        av[argc++] = (char *)argv[i];
    av[argc] = NULL;
    fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    dfd = open("/dev/null", O_RDONLY);
    tu_spawn(&p, av, fd);
    close(fd);
    if (dfd >= 0)
        close(dfd);
    status = tu_wait_deadline(p.pid, timeout_ms, &exited);
    if (!exited) {
        kill(p.pid, SIGKILL);
        waitpid(p.pid, &status, 0);
        status = -1;
    } else if (WIFEXITED(status)) {
        status = WEXITSTATUS(status);
    } else {
        status = 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    if (out)
        *out = tu_slurp(outp);
    if (err)
        *err = tu_slurp(errp);
    tu_rmrf(tmpl);
    return status;
}

static void
tu_atexit(void)
{
    tu_in_atexit = true;
    for (int i = 0; i < TU_MAX_PROCS; i++) {
        tu_proc *p = procs[i];
        if (p == NULL)
            continue;
        if (p->running) {
            /* The test is leaving with this process still up: most likely a failure. */
            tu_proc_dump_stderr(p);
            tu_proc_stop(p);
        }
    }
    if (getenv("TU_KEEP") == NULL) {
        for (int i = 0; i < ndirs; i++) {
            char side[4200];
            tu_rmrf(dirs[i]);
            snprintf(side, sizeof(side), "%s.ports", dirs[i]);
            unlink(side);
            snprintf(side, sizeof(side), "%s.stderr", dirs[i]);
            unlink(side);
        }
    }
}

void
tu_gen_certs(bool test_certs, const char *dir)
{
    const char *script = getenv("OBJMETA_GEN_CERTS");
    const char *argv[5] = {"sh", script, NULL};
    char *out = NULL, *err = NULL, done[4200];
    int n = 2;

    ck_assert_msg(script != NULL, "OBJMETA_GEN_CERTS is not set");
    /* the script's last file: a run cut short is made again */
    snprintf(done, sizeof(done), "%s/%s", dir, test_certs ? "expired.pem" : "client.pem");
    if (access(done, R_OK) == 0)
        return;
    if (test_certs)
        argv[n++] = "--test";
    argv[n] = dir;
    ck_assert_msg(tu_run_cmd("/bin/sh", argv, 30000, &out, &err) == 0, "gen-certs: %s", err);
    free(out);
    free(err);
}
