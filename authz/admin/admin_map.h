#ifndef SUBMITD_ADMIN_MAP_H
#define SUBMITD_ADMIN_MAP_H

/*
 * submit-admin map add --subject DN [--issuer DN] USER
 * submit-admin map del --subject DN [--issuer DN]
 * submit-admin map list [--json]
 * argv starts after "map". Returns the exit status (0, 1 failure, 2 misuse).
 */
int admin_map(const char *config_path, int argc, char **argv);

#endif
