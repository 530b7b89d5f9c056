#ifndef SUBMITD_CLI_H
#define SUBMITD_CLI_H

/*
 * The command line of the administration tools (submit-admin, submit-ca): their
 * messages, misuse and the one command-table lookup both use for every command and
 * subcommand. DESIGN §5: errors are one line on stderr naming the problem; misuse
 * exits 2 after the usage; failure exits 1.
 */

#include <stddef.h>

enum { CLI_EXIT_OK = 0, CLI_EXIT_FAIL = 1, CLI_EXIT_USAGE = 2 };

struct cli_program {
    const char *name;         /* "submit-admin": the prefix of every message */
    const char *usage;        /* printed after a misuse message */
    const char *no_command;   /* the misuse message when no command is given */
    /*
     * Messages quote names from the command line and from certificates; when set,
     * control characters in a message become '?' and it is cut at 1023 bytes, so
     * every message stays one line.
     */
    int one_line;
};

/* "<name>: <message>" on stderr. */
void cli_error(const struct cli_program *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "<name>: warning: <message>" on stderr. */
void cli_warning(const struct cli_program *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/*
 * A misuse: the message as cli_error prints it, then usage (NULL: the program's).
 * Returns CLI_EXIT_USAGE.
 */
int cli_misuse(const struct cli_program *p, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * One row of a program's command table: a command ("crl"), or one subcommand of a
 * command ("user", "add"). A command may have a row without a subcommand besides its
 * subcommands ("audit" and "audit prune"). usage is what a misuse of this command
 * prints (NULL: the program's usage); spec is the program's own description of the
 * command (its options, arguments and function).
 */
struct cli_command {
    const char *name;
    const char *sub;
    const char *usage;
    const void *spec;
};

/*
 * Finds the command named by argv[*i] and, when the next word names one of its
 * subcommands, that subcommand, advancing *i past the words used; the subcommand
 * wins over a row without one. Returns NULL after a misuse message (no command,
 * unknown command, missing or unknown subcommand), with *status the exit status.
 */
const struct cli_command *cli_command_find(const struct cli_program *p,
                                           const struct cli_command *table, size_t n,
                                           int argc, const char *const *argv, int *i,
                                           int *status);

/*
 * Flushes standard output: a lost write is a failure (the output may hold the only
 * copy of a password). Returns status, or CLI_EXIT_FAIL after saying so with
 * message, e.g. "standard output: write error".
 */
int cli_finish(const struct cli_program *p, int status, const char *message);

#endif
