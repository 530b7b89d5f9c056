#ifndef SUBMITD_ADMIN_SHOW_H
#define SUBMITD_ADMIN_SHOW_H

/*
 * The questions an admin asks about one user or one address:
 *   submit-admin user show USER    enabled, senders, valid certificates with their
 *                                  expiry, the last accepted and last refused session
 *   submit-admin sender who ADDR   who may send as ADDR: its owners, then the owners
 *                                  of its @domain
 * Both return the exit status (1 when the user does not exist / nobody owns ADDR).
 */

struct db;

int admin_user_show(struct db *db, const char *user, int json);
int admin_sender_who(struct db *db, const char *address, int json);

#endif
