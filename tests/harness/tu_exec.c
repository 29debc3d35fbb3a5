/*
 * tests/harness/tu_exec.c -- tu-exec PARENT_PID BINARY [ARGS...]: the first
 * program of every process the harness starts (tu.c's tu_spawn). It asks
 * for SIGKILL when its parent dies (PR_SET_PDEATHSIG, which an exec keeps),
 * checks that the parent is still PARENT_PID (else the request came too
 * late), and executes BINARY with ARGS.
 *
 * Why a program of its own: the test process is multi-threaded (client
 * threads run while replicas restart), so the child of a fork() may run
 * only async-signal-safe code until it executes -- and under the
 * sanitizers even that is not enough (the forked child of an instrumented
 * multi-threaded process can block on a runtime lock that another thread
 * held at the fork). tu_spawn therefore uses posix_spawn, whose child runs
 * no code of the test, and the one setting posix_spawn cannot make is made
 * here, in a fresh single-threaded process.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int
main(int argc, char **argv)
{
    if (argc < 3) {
        dprintf(STDERR_FILENO, "usage: tu-exec PARENT_PID BINARY [ARGS...]\n");
        return 127;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != (pid_t)strtol(argv[1], NULL, 10))
        return 127; /* the test is gone already */
    execv(argv[2], argv + 2);
    dprintf(STDERR_FILENO, "exec %s: %s\n", argv[2], strerror(errno));
    return 127;
}
