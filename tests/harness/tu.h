/*
 * tests/harness/tu.h -- test utilities shared by every Check suite:
 * the runner, temporary directories, seeded randomness and real-process
 * control for integration tests.
 *
 * Integration tests start the project's real binaries with tu_proc_start():
 * each gets `--listen 127.0.0.1:0 --port-file F --data-dir D` (D a fresh
 * mkdtemp directory), its stderr goes to a file, and the harness waits for
 * the port file with a deadline. tu_proc_stop() sends SIGTERM and SIGKILL
 * after a deadline. Every started process is also stopped at exit of the test
 * process (a failing ck_assert exits the forked test), and gets
 * PR_SET_PDEATHSIG so it cannot outlive a crashed test. When a test fails,
 * the stderr of its processes is printed. A sanitizer report in a child's
 * stderr (TSan, ASan, UBSan, LSan) fails the test at tu_proc_stop or
 * tu_proc_kill9, even when the child went on serving.
 *
 * Thread-safety: test code; single-threaded.
 */
#ifndef OM_TESTS_TU_H
#define OM_TESTS_TU_H

#include <check.h>
#include <stdbool.h>
#include <stdint.h>

/* Run a suite with Check's normal output (its summary line) and return the exit status. */
int tu_run(Suite *s);

/*
 * A fresh directory under $TMPDIR (default /tmp), removed at process exit
 * unless TU_KEEP is set. Returns a heap string owned by the harness.
 */
const char *tu_tmpdir(void);
/* Remove a tree (like rm -rf). */
void tu_rmrf(const char *path);

/* The seed of this test: $TU_SEED if set, else from the clock. Printed once per test. */
uint64_t tu_seed(const char *test_name);
/* xorshift64* step over a caller-held state. */
uint64_t tu_rand(uint64_t *state);

/* Milliseconds on the monotonic clock, for polling with a deadline. */
uint64_t tu_now_ms(void);

/*
 * An event_base dispatched on a thread of its own (tu_loop.c): start it once
 * everything on the base is set up (the thread creation orders those writes
 * before the loop's reads); tu_loop_stop breaks the loop within ~2 ms,
 * joins the thread and frees the tu_loop, not the base.
 */
struct event_base;
typedef struct tu_loop tu_loop;
tu_loop *tu_loop_start(struct event_base *base);
void tu_loop_stop(tu_loop *l);

/* A running binary of the project. */
typedef struct tu_proc tu_proc;

/* Options for tu_proc_start; zero-initialised fields take defaults. */
typedef struct tu_proc_opts {
    const char *data_dir;     /* reuse this data dir (restart); NULL: a fresh tmpdir */
    const char *const *extra; /* more argv entries, NULL-terminated, or NULL */
    int start_timeout_ms;     /* default 10000 */
    bool no_listen;           /* do not add --listen/--port-file (one-shot commands) */
} tu_proc_opts;

/*
 * Start `binary` (a path, or an environment variable name holding the path
 * when it starts with '$'), wait for its port file. Fails the test (with the
 * child's stderr) if it does not come up in time.
 */
tu_proc *tu_proc_start(const char *binary, const tu_proc_opts *o);
/* The port the process wrote for `name` ("rpc", "http", ...); 0 if none. */
int tu_proc_port(const tu_proc *p, const char *name);
const char *tu_proc_data_dir(const tu_proc *p);
int tu_proc_pid(const tu_proc *p);
/* SIGTERM, wait up to 5 s, then SIGKILL. Returns the exit status as from waitpid. */
int tu_proc_stop(tu_proc *p);
/* SIGKILL at once (crash simulation) and reap. */
void tu_proc_kill9(tu_proc *p);
/* Forget a stopped process and free it; its data dir is kept for a restart. */
void tu_proc_free(tu_proc *p);
/* Print the child's stderr to our stderr. */
void tu_proc_dump_stderr(const tu_proc *p);
/* The child's stderr so far (every start of its data dir), a heap string the caller frees. */
char *tu_proc_stderr(const tu_proc *p);

/*
 * Run a binary to completion with argv (NULL-terminated, argv[0] is ignored
 * and replaced by the binary), capture stdout and stderr into heap strings,
 * with a deadline. Returns the exit status (-1 if killed by the deadline).
 */
int tu_run_cmd(const char *binary, const char *const *argv, int timeout_ms, char **out, char **err);

/*
 * Development certificates from scripts/gen-certs.sh (its path in
 * $OBJMETA_GEN_CERTS) into dir, unless an earlier call made them there;
 * test_certs adds the ones a server must refuse (--test). Fails the test on error.
 */
void tu_gen_certs(bool test_certs, const char *dir);

/* Resolve a binary path from a `$ENV_NAME` reference or return it as is. */
const char *tu_bin(const char *binary);

#endif /* OM_TESTS_TU_H */
