#ifndef SUBMITD_ADMIN_USER_H
#define SUBMITD_ADMIN_USER_H

/*
 * submit-admin user add|del|disable|enable|list and sender add|del (DESIGN §5). The
 * arguments are checked by submit-admin.c before the database is opened; each
 * function returns the exit status after printing the result or the error.
 */

struct db;

/* The most --sender options of one user add. */
#define ADMIN_MAX_SENDERS 64

struct admin_user_args {
    const char *cmd;                 /* "user add", for messages */
    const char *user;
    const char *address;             /* sender add */
    const char *const *senders;      /* user add --sender, nsenders of them */
    int nsenders;
    int shared;                      /* --shared: an address another user owns too */
};

int admin_user_add(struct db *db, const struct admin_user_args *a);
/* Deletes the user; its valid certificates are recorded as revoked. */
int admin_user_del(struct db *db, const char *name);
int admin_user_set_enabled(struct db *db, const char *name, int enabled);
int admin_user_list(struct db *db, int json);
int admin_sender_add(struct db *db, const struct admin_user_args *a);
int admin_sender_del(struct db *db, const char *user, const char *address);

#endif
