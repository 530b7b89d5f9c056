#ifndef SUBMITD_ADMIN_MAP_H
#define SUBMITD_ADMIN_MAP_H

/*
 * submit-admin map add --subject DN [--issuer DN] USER
 * submit-admin map del --subject DN [--issuer DN]
 * submit-admin map list [--json]
 * sub is the subcommand (add, del or list: submit-admin's command table found it);
 * argv holds the words after it. Returns the exit status (0, 1 failure, 2 misuse).
 */
int admin_map(const char *config_path, const char *sub, int argc, char **argv);

/* The usage of map, printed after a misuse of it. */
extern const char admin_map_usage[];

#endif
