/*
 * tests/harness/tu_etcd.c -- start, stop and probe real etcd members for
 * tests (see tu_etcd.h). Members run through tu_proc (no --listen: etcd
 * takes its own flags), so a failing test prints their stderr and the exit
 * hook stops them. Readiness is a plain HTTP GET /health on the client port
 * answered {"health":"true"}, polled every 20 ms up to a deadline.
 */
#include "tu_etcd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tu.h"

#define TU_ETCD_MAX 5

struct tu_etcd {
    int n;
    char dir[1024];
    char token[64];
    char cluster[1024]; /* --initial-cluster */
    char endpoints[512];
    char url[TU_ETCD_MAX][64];
    int client_port[TU_ETCD_MAX];
    int peer_port[TU_ETCD_MAX];
    tu_proc *proc[TU_ETCD_MAX];
};

const char *
tu_etcd_bin(void)
{
    const char *b = getenv("ETCD_BIN");

    return b != NULL && *b ? b : "/usr/bin/etcd";
}

bool
tu_etcd_available(void)
{
    if (access(tu_etcd_bin(), X_OK) == 0)
        return true;
    printf("SKIP: %s is not installed (Debian package etcd-server; or set ETCD_BIN)\n",
           tu_etcd_bin());
    return false;
}

/* The kernel's ephemeral range (outgoing connections and port-0 binds take ports there). */
static void
ephemeral_range(int *lo, int *hi)
{
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

    *lo = 32768;
    *hi = 60999;
    if (f != NULL) {
        if (fscanf(f, "%d %d", lo, hi) != 2) {
            *lo = 32768;
            *hi = 60999;
        }
        fclose(f);
    }
}

/* True if 127.0.0.1:port can be bound now (then released). */
static bool
port_bindable(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    ck_assert_int_ge(fd, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/*
 * A port for a process that cannot take port 0 and report it (etcd, a shard
 * restarted on its old address). It is taken below the ephemeral range: a
 * port released there is soon handed to some outgoing connection of another
 * test, and the process then fails with "address already in use". port +
 * 1000 (a server's automatic HTTP port, rpc_conf_http_addr) is free and below
 * the range too. Ports are drawn at random and claimed across the test
 * processes (port_claim): a port whose server is down for a restart passes
 * the bind check, and a concurrent test that drew it took it once (a shard's
 * restart then failed with "address already in use" on its HTTP port).
 */
#define TU_PORT_DIR "/tmp/objmeta-tu-ports"

/*
 * Claim port for this test process: an exclusive flock on TU_PORT_DIR/<port>,
 * held by a descriptor left open, so it ends with the process (a killed one
 * included) and no stale claim outlives it. False when another live process
 * holds it; true also when claims cannot be made at all (the bind check
 * still applies).
 */
static bool
port_claim(int port)
{
    char path[64];
    int fd;

    if (mkdir(TU_PORT_DIR, 0777) == 0)
        chmod(TU_PORT_DIR, 01777); /* any user's tests claim here */
    snprintf(path, sizeof(path), TU_PORT_DIR "/%d", port);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0)
        return true;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        close(fd);
        return e != EWOULDBLOCK;
    }
    return true; /* fd stays open: the claim lasts as long as this process */
}

/* Whether this process handed out port (or took it as another's port + 1000) already. */
static bool
port_given(const int *given, int n, int port)
{
    for (int i = 0; i < n; i++)
        if (given[i] == port || given[i] + 1000 == port || given[i] == port + 1000)
            return true;
    return false;
}

int
tu_free_port(void)
{
    static uint64_t x;
    static int given[256], ngiven; /* a port picked but not bound yet is still bindable */
    int lo, hi;

    ephemeral_range(&lo, &hi);
    if (x == 0)
        x = ((uint64_t)getpid() << 32) ^ tu_now_ms() ^ 0x9e3779b97f4a7c15ull;
    if (lo > 12000) {
        for (int tries = 0; tries < 200; tries++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            int port = 10000 + (int)(x % (uint64_t)(lo - 11000));
            if (!port_given(given, ngiven, port) && port_claim(port) && port_claim(port + 1000) &&
                port_bindable(port) && port_bindable(port + 1000)) {
                if (ngiven < (int)(sizeof(given) / sizeof(given[0])))
                    given[ngiven++] = port;
                return port;
            }
        }
    }
    /* no room below the range: the kernel's choice */
    {
        struct sockaddr_in a = {.sin_family = AF_INET};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int port;

        ck_assert_int_ge(fd, 0);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
        port = ntohs(a.sin_port);
        close(fd);
        return port;
    }
}

/* One GET /health; true if the member says it is healthy. */
static bool
etcd_probe(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {1, 0};
    char buf[1024];
    const char req[] = "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    size_t got = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0)
        return false;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return false;
    }
    while (got < sizeof(buf) - 1 && (n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(fd);
    return strstr(buf, "\"health\":\"true\"") != NULL;
}

void
tu_etcd_wait_healthy(const tu_etcd *e, int i, int timeout_ms)
{
    uint64_t deadline = tu_now_ms() + (uint64_t)timeout_ms;

    while (!etcd_probe(e->client_port[i])) {
        if (tu_now_ms() > deadline) {
            tu_proc_dump_stderr(e->proc[i]);
            ck_abort_msg("etcd member %d (%s) not healthy within %d ms", i, e->url[i], timeout_ms);
        }
        struct timespec ts = {0, 20 * 1000000L}; /* poll interval */
        nanosleep(&ts, NULL);
    }
}

static void
etcd_spawn(tu_etcd *e, int i)
{
    char name[16], data[1100], lc[64], lp[64], state[96];
    const char *argv[24];
    int k = 0;
    tu_proc_opts o = {.no_listen = true};

    snprintf(name, sizeof(name), "--name=m%d", i);
    snprintf(data, sizeof(data), "--data-dir=%s/m%d", e->dir, i);
    snprintf(lc, sizeof(lc), "http://127.0.0.1:%d", e->client_port[i]);
    snprintf(lp, sizeof(lp), "http://127.0.0.1:%d", e->peer_port[i]);
    snprintf(state, sizeof(state), "--initial-cluster-token=%s", e->token);
    argv[k++] = name;
    argv[k++] = data;
    argv[k++] = "--listen-client-urls";
    argv[k++] = lc;
    argv[k++] = "--advertise-client-urls";
    argv[k++] = lc;
    argv[k++] = "--listen-peer-urls";
    argv[k++] = lp;
    argv[k++] = "--initial-advertise-peer-urls";
    argv[k++] = lp;
    argv[k++] = "--initial-cluster";
    argv[k++] = e->cluster;
    argv[k++] = state;
    argv[k++] = "--initial-cluster-state=new";
    /* short raft timers: loopback members, and tests that wait for elections */
    argv[k++] = "--heartbeat-interval=50";
    argv[k++] = "--election-timeout=500";
    argv[k++] = "--logger=zap";
    argv[k++] = "--log-level=warn";
    argv[k] = NULL;
    o.extra = argv;
    e->proc[i] = tu_proc_start(tu_etcd_bin(), &o);
}

tu_etcd *
tu_etcd_start(int members)
{
    tu_etcd *e = calloc(1, sizeof(*e));
    size_t off = 0, eoff = 0;

    ck_assert_ptr_nonnull(e);
    ck_assert(members >= 1 && members <= TU_ETCD_MAX);
    e->n = members;
    snprintf(e->dir, sizeof(e->dir), "%s", tu_tmpdir());
    snprintf(e->token, sizeof(e->token), "om-test-%d-%llu", (int)getpid(),
             (unsigned long long)tu_now_ms());
    for (int i = 0; i < members; i++) {
        e->client_port[i] = tu_free_port();
        e->peer_port[i] = tu_free_port();
        snprintf(e->url[i], sizeof(e->url[i]), "http://127.0.0.1:%d", e->client_port[i]);
        off += (size_t)snprintf(e->cluster + off, sizeof(e->cluster) - off,
                                "%sm%d=http://127.0.0.1:%d", i ? "," : "", i, e->peer_port[i]);
        eoff += (size_t)snprintf(e->endpoints + eoff, sizeof(e->endpoints) - eoff, "%s%s",
                                 i ? "," : "", e->url[i]);
    }
    for (int i = 0; i < members; i++)
        etcd_spawn(e, i);
    for (int i = 0; i < members; i++)
        tu_etcd_wait_healthy(e, i, 20000);
    return e;
}

const char *
tu_etcd_endpoints(const tu_etcd *e)
{
    return e->endpoints;
}

const char *
tu_etcd_member_url(const tu_etcd *e, int i)
{
    return e->url[i];
}

int
tu_etcd_member_pid(const tu_etcd *e, int i)
{
    return tu_proc_pid(e->proc[i]);
}

void
tu_etcd_stop_member(tu_etcd *e, int i)
{
    if (e->proc[i] == NULL)
        return;
    tu_proc_stop(e->proc[i]);
    tu_proc_free(e->proc[i]);
    e->proc[i] = NULL;
}

void
tu_etcd_restart_member(tu_etcd *e, int i)
{
    tu_etcd_stop_member(e, i);
    etcd_spawn(e, i);
    tu_etcd_wait_healthy(e, i, 20000);
}

void
tu_etcd_stop(tu_etcd *e)
{
    if (e == NULL)
        return;
    for (int i = 0; i < e->n; i++)
        tu_etcd_stop_member(e, i);
    free(e);
}
