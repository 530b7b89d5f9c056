#ifndef SUBMITD_MASTER_CHECK_H
#define SUBMITD_MASTER_CHECK_H

/*
 * submitd -t: loads the configuration at conf_path into cfg and checks it and the
 * files it names as the start would, creating and changing nothing. Every problem
 * is one line on stderr; warnings do not fail it. Returns the exit status: 1 with
 * problems, else 0 (with "configuration ... OK" on stdout).
 */
int check_config(const char *conf_path);

#endif
