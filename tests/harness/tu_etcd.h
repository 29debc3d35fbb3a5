/*
 * tests/harness/tu_etcd.h -- a real etcd (the Debian etcd-server binary)
 * for tests: one or more members on free loopback ports picked here, data
 * under a fresh temporary directory, readiness polled on /health with a
 * deadline, everything stopped at the end (tu_etcd_stop, or the harness's
 * exit hook through tu_proc).
 *
 * Suites that need etcd call tu_etcd_available() first and exit with 77
 * (meson's "skipped") and a message when the binary is missing.
 *
 * Thread-safety: test code; single-threaded.
 */
#ifndef OM_TESTS_TU_ETCD_H
#define OM_TESTS_TU_ETCD_H

#include <stdbool.h>

typedef struct tu_etcd tu_etcd;

/* The etcd binary: $ETCD_BIN, else /usr/bin/etcd. */
const char *tu_etcd_bin(void);
/* True if tu_etcd_bin() is executable; else prints why and returns false. */
bool tu_etcd_available(void);

/* Start a cluster of `members` (1..5) and wait until every member is healthy. */
tu_etcd *tu_etcd_start(int members);
/* "http://127.0.0.1:p1,http://127.0.0.1:p2,..." */
const char *tu_etcd_endpoints(const tu_etcd *e);
/* "http://127.0.0.1:pi" of member i. */
const char *tu_etcd_member_url(const tu_etcd *e, int i);
int tu_etcd_member_pid(const tu_etcd *e, int i);
/* Stop member i (SIGTERM); its data stays for a restart. */
void tu_etcd_stop_member(tu_etcd *e, int i);
/* Start member i again on the same ports and data, wait until it is healthy. */
void tu_etcd_restart_member(tu_etcd *e, int i);
/* Wait until member i answers healthy on /health (fails the test after timeout_ms). */
void tu_etcd_wait_healthy(const tu_etcd *e, int i, int timeout_ms);
/* Stop every member and free. */
void tu_etcd_stop(tu_etcd *e);

/* A free TCP port on 127.0.0.1 for a process that cannot bind port 0 (drawn at random
 * below the kernel's ephemeral range; it and port + 1000 checked bindable, released;
 * never one this process was given before, nor 1000 above or below one: a port picked
 * and not yet bound still passes the check; nor one another test process claimed:
 * a claim lasts as long as the process that made it). Test thread only. */
int tu_free_port(void);

#endif /* OM_TESTS_TU_ETCD_H */
