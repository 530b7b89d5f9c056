/* Messages, misuse and the command-table lookup of the administration tools (cli.h). */
#include "cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void cli_vemit(const struct cli_program *p, const char *prefix, const char *fmt,
                      va_list ap) __attribute__((format(printf, 3, 0)));

static void cli_vemit(const struct cli_program *p, const char *prefix, const char *fmt,
                      va_list ap)
{
    char line[1024];

    if (!p->one_line) {
        fprintf(stderr, "%s: %s", p->name, prefix);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    for (char *c = line; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    fprintf(stderr, "%s: %s%s\n", p->name, prefix, line);
}

void cli_error(const struct cli_program *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vemit(p, "", fmt, ap);
    va_end(ap);
}

void cli_warning(const struct cli_program *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vemit(p, "warning: ", fmt, ap);
    va_end(ap);
}

int cli_misuse(const struct cli_program *p, const char *usage, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cli_vemit(p, "", fmt, ap);
    va_end(ap);
    fputs(usage != NULL ? usage : p->usage, stderr);
    return CLI_EXIT_USAGE;
}

const struct cli_command *cli_command_find(const struct cli_program *p,
                                           const struct cli_command *table, size_t n,
                                           int argc, const char *const *argv, int *i,
                                           int *status)
{
    const char *cmd, *sub;
    const struct cli_command *plain = NULL, *known = NULL;

    if (*i >= argc) {
        *status = cli_misuse(p, NULL, "%s", p->no_command);
        return NULL;
    }
    cmd = argv[(*i)++];
    sub = *i < argc ? argv[*i] : NULL;
    for (size_t k = 0; k < n; k++) {
        const struct cli_command *c = &table[k];

        if (strcmp(c->name, cmd) != 0)
            continue;
        known = c;
        if (c->sub == NULL)
            plain = c;
        else if (sub != NULL && strcmp(c->sub, sub) == 0) {
            (*i)++;
            return c;
        }
    }
    if (plain != NULL)
        return plain;
    if (known != NULL && sub == NULL)
        *status = cli_misuse(p, known->usage, "%s: missing subcommand", cmd);
    else if (known != NULL)
        *status = cli_misuse(p, known->usage, "%s: unknown subcommand \"%s\"", cmd, sub);
    else
        *status = cli_misuse(p, NULL, "unknown command \"%s\"", cmd);
    return NULL;
}

int cli_finish(const struct cli_program *p, int status, const char *message)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        cli_error(p, "%s", message);
        return CLI_EXIT_FAIL;
    }
    return status;
}
