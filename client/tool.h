/*
 * client/tool.h -- what the `objmeta` tool's commands share (objmeta.c and
 * admin.c): option parsing with getopt_long and one wording for every usage
 * error, address checks, and errors that say what happened and what to do
 * (nothing listening, an HTTP port, a silent server). Part of the tool, not
 * of libobjmeta-client.
 *
 * Thread-safety: command-line code; single-threaded (getopt's globals).
 */
#ifndef OM_CLIENT_TOOL_H
#define OM_CLIENT_TOOL_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/status.h"

/* Exit codes of the tool (listed by `objmeta --help`; scripts test them). */
enum {
    TOOL_EXIT_OK = 0,
    TOOL_EXIT_NOT_FOUND = 1,
    TOOL_EXIT_USAGE = 2,
    TOOL_EXIT_PRECONDITION = 3,
    TOOL_EXIT_UNAVAILABLE = 4,
    TOOL_EXIT_INVALID = 5,
    TOOL_EXIT_OTHER = 6,
    TOOL_EXIT_DENIED = 7, /* unauthenticated or permission denied */
};

/* The longest wait for a connection and for the answer to the first ping. */
#define TOOL_HANDSHAKE_MS 3000u

/*
 * tool_usage -- print "objmeta[ CMD]: MESSAGE" and the pointer to --help.
 * Returns: TOOL_EXIT_USAGE.
 */
int tool_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Called for each option getopt_long returns (code = the table's val). Returns an exit code. */
typedef int (*tool_opt_fn)(void *ctx, int code, const char *arg);

/*
 * tool_slot -- an option that only keeps its argument (str) or sets a flag
 * (bool): where in the caller's options struct it goes. A command's option
 * callback hands such options to tool_slot_set and parses the rest itself.
 */
typedef struct tool_slot {
    int code;      /* the option table's val */
    size_t offset; /* in the options struct: a const char * (str) or a bool */
    bool str;
} tool_slot;

/* Store option `code` into obj by its row of tab[0..n); false if no row names it. */
bool tool_slot_set(const tool_slot *tab, size_t n, void *obj, int code, const char *arg);

/*
 * tool_parse -- run getopt_long over argv (argv[0] is the command's name) with
 * tab, calling fn for each option. Options and operands may be mixed unless
 * stop_at_operand (then parsing stops at the first operand, as for the
 * options before a command). Unknown options and missing values get one
 * wording, with a suggestion ("did you mean --meta?").
 * Returns: TOOL_EXIT_OK and *first = index of the first operand in argv (the
 *          operands are argv[*first..argc-1]); else the exit code, with the
 *          error printed.
 */
int tool_parse(const char *cmd, const struct option *tab, const char *shortopts,
               bool stop_at_operand, int argc, char **argv, tool_opt_fn fn, void *ctx, int *first);

/* The closest of the NULL-terminated words to w (edit distance <= 2 or a prefix), or NULL. */
const char *tool_suggest(const char *w, const char *const *words);

/*
 * tool_check_addr -- addr must be HOST:PORT (or a comma-separated list of
 * them): no URL scheme, a port 1..65535. Prints why not.
 * Returns: TOOL_EXIT_OK or TOOL_EXIT_USAGE.
 */
int tool_check_addr(const char *addr);

/*
 * tool_explain -- print why talking to addr failed and what to do: st is the
 * failed connect's status (msg NULL) or the first call's status and message.
 * Returns: the exit code for st.
 */
int tool_explain(const char *addr, om_status st, const char *msg);

/* The exit code for a status. */
int tool_exit_code(om_status st);

#endif /* OM_CLIENT_TOOL_H */
