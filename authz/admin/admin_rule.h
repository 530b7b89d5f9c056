#ifndef SUBMITD_ADMIN_RULE_H
#define SUBMITD_ADMIN_RULE_H

struct db;

/*
 * submit-admin map rule add --issuer DN --field email|san-email|upn|cn
 *                           [--strip-domain D] [--require-domain D]
 * submit-admin map rule del --issuer DN | map rule list [--json]
 * submit-admin cert block SHA256 | --issuer DN --serial HEX [--reason TEXT]
 * submit-admin cert unblock SHA256 | --issuer DN --serial HEX
 * submit-admin cert list [--json]
 * argv holds the words after "map rule" or "cert", the verb first. Every change is
 * recorded in the admin log in the same transaction. Returns the exit status.
 */
int admin_rule(const char *config_path, const char *sub, int argc, char **argv);
int admin_cert(const char *config_path, const char *sub, int argc, char **argv);

/* The blocked certificates, a header row and tab-separated columns or a JSON array
 * (also submit-ca list --blocked). Exit status. */
int admin_cert_block_list(struct db *db, int json);

extern const char admin_rule_usage[];
extern const char admin_cert_usage[];

#endif
