#ifndef SUBMITD_AUTHZ_RETENTION_H
#define SUBMITD_AUTHZ_RETENTION_H

#include <time.h>

/*
 * audit_retention (DESIGN §6): audit rows older than that many days leave the table
 * at start and then once a day, through the same db_audit_prune as submit-admin
 * audit prune, so each prune is recorded in admin_log (program submitd-authz) with
 * its range and count. A prune that fails is tried again an hour later. Called on
 * every turn of the main loop; does nothing until the next prune is due.
 */
void retention_tick(time_t now);

#endif
