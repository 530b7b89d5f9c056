/* PAM account management for the authz process. */
#include "authz_pam.h"

#include "config.h"
#include "util.h"

#include <security/pam_appl.h>
#include <string.h>

/* Refuses every prompt: an account check has nobody to ask. */
static int no_conversation(int num_msg, const struct pam_message **msg,
                           struct pam_response **resp, void *appdata)
{
    (void)num_msg;
    (void)msg;
    (void)appdata;
    *resp = NULL;
    return PAM_CONV_ERR;
}

int authz_pam_account(const struct config *cfg, const char *user, char *why, size_t whylen)
{
    struct pam_conv conv = { no_conversation, NULL };
    pam_handle_t *ph = NULL;
    int rc, decision;

    rc = pam_start_confdir(cfg->pam_service, user, &conv,
                           cfg->pam_confdir[0] ? cfg->pam_confdir : NULL, &ph);
    if (rc != PAM_SUCCESS) {
        str_fmt(why, whylen, "pam_start(%s): %s", cfg->pam_service, pam_strerror(ph, rc));
        return IPC_TEMPFAIL;
    }
    rc = pam_acct_mgmt(ph, PAM_SILENT);
    switch (rc) {
    case PAM_SUCCESS:
        decision = IPC_ALLOW;
        break;
    case PAM_USER_UNKNOWN:
    case PAM_PERM_DENIED:
    case PAM_ACCT_EXPIRED:
    case PAM_AUTH_ERR:
    case PAM_NEW_AUTHTOK_REQD:
        decision = IPC_DENY;
        break;
    default:
        /* Unknown results fail closed, but temporarily. */
        decision = IPC_TEMPFAIL;
        break;
    }
    str_lcpy(why, pam_strerror(ph, rc), whylen);
    pam_end(ph, rc);
    return decision;
}
