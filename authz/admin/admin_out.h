#ifndef SUBMITD_ADMIN_OUT_H
#define SUBMITD_ADMIN_OUT_H

/*
 * How submit-admin prints what comes from the database. The audit trail holds bytes
 * that SMTP clients chose, so every field goes through one of these: plain output
 * keeps one row per line, JSON and CSV stay well-formed whatever the bytes are.
 */

/*
 * Plain output: one row per line with tab-separated columns, so control characters
 * (tabs and newlines included) and invalid UTF-8 become '?'. Empty is "-".
 */
void out_field(const char *s);
/* A JSON string; invalid UTF-8 becomes U+FFFD, control characters are escaped. */
void out_json_string(const char *s);
/* ",\"name\":value" (no comma when first); an empty value is null. */
void out_json_member(const char *name, const char *value, int first);
/*
 * One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF, with
 * quotes doubled. Other control characters and invalid UTF-8 become '?'.
 */
void out_csv_field(const char *s);

#endif
