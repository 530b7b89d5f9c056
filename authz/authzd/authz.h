#ifndef SUBMITD_AUTHZ_H
#define SUBMITD_AUTHZ_H

#include "config.h"
#include "db.h"

/*
 * What the authz process's modules share (authz.c says what the process is): the
 * running configuration and the database handle, defined in authz.c. This header
 * includes no other header of the program's.
 */
extern struct config cfg;
extern struct db *db;

#endif
