#ifndef SUBMITD_CLI_OUT_H
#define SUBMITD_CLI_OUT_H

/*
 * How the command-line tools (submit-admin, submit-ca) and the load generator print
 * values they do not control: the audit trail and the admin log hold bytes that SMTP
 * clients and certificates chose. This is the one JSON writer and the one CSV writer
 * of the tree; every string of their output goes through them, so the output is
 * well-formed and valid UTF-8 whatever the bytes are. No I/O but the FILE given, no
 * state, so every function is unit-tested.
 */

#include <stdio.h>

/*
 * A JSON string literal, quotes included. Valid UTF-8 is copied; '"' and '\' are
 * escaped; LF, CR and TAB become \n, \r, \t; every other control character (C0,
 * DEL, C1) becomes \u00XX; every byte that is not part of a valid UTF-8 sequence
 * (stray continuation bytes, overlong forms, surrogates, code points above U+10FFFF,
 * truncated sequences) becomes \ufffd.
 */
void cli_json_string(FILE *f, const char *s);
/* ",\"name\":value" (no comma when first); an empty value is null. name is ours. */
void cli_json_member(FILE *f, const char *name, const char *value, int first);

/*
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF, with
 * quotes doubled. Other control characters and invalid UTF-8 become '?'.
 */
void cli_csv_field(FILE *f, const char *s);

/*
 * A column of plain, tab-separated output that keeps one row per line: control
 * characters (tabs and newlines included) and invalid UTF-8 become '?'. Empty is "-".
 */
void cli_plain_field(FILE *f, const char *s);

#endif
