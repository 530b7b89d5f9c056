/* PKCS#12 bundles for mail clients. */
#include "ca_p12.h"

#include "ca_msg.h"

#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <string.h>

int ca_p12_format_parse(const char *name)
{
    if (strcmp(name, "legacy") == 0)
        return CA_P12_LEGACY;
    if (strcmp(name, "modern") == 0)
        return CA_P12_MODERN;
    return -1;
}

const char *ca_p12_format_describe(enum ca_p12_format fmt)
{
    return fmt == CA_P12_LEGACY ? "3DES, SHA-1 MAC" : "AES-256-CBC, SHA-256 MAC";
}

BIO *ca_p12_encode(EVP_PKEY *key, X509 *cert, X509 *ca_cert, const char *friendly_name,
                   const char *password, enum ca_p12_format fmt)
{
    int nid = fmt == CA_P12_LEGACY ? NID_pbe_WithSHA1And3_Key_TripleDES_CBC : NID_aes_256_cbc;
    const EVP_MD *mac_md = fmt == CA_P12_LEGACY ? EVP_sha1() : EVP_sha256();
    STACK_OF(X509) *chain = sk_X509_new_null();
    PKCS12 *p12 = NULL;
    BIO *out = NULL;

    if (chain == NULL || sk_X509_push(chain, ca_cert) <= 0) {
        ca_err_ssl("cannot allocate the PKCS#12 chain");
        goto out;
    }
    /*
     * No MAC from PKCS12_create (mac_iter -1): it would pick SHA-256 even for the 3DES
     * bags, which older devices then reject as a "wrong password". The MAC is set
     * explicitly below for both formats.
     */
    p12 = PKCS12_create(password, friendly_name, key, cert, chain, nid, nid,
                        PKCS12_DEFAULT_ITER, -1, 0);
    if (p12 == NULL) {
        ca_err_ssl("cannot build the PKCS#12 bundle");
        goto out;
    }
    if (PKCS12_set_mac(p12, password, -1, NULL, 0, PKCS12_DEFAULT_ITER, mac_md) != 1) {
        ca_err_ssl("cannot set the PKCS#12 MAC");
        goto out;
    }
    if ((out = BIO_new(BIO_s_secmem())) == NULL || i2d_PKCS12_bio(out, p12) != 1) {
        ca_err_ssl("cannot encode the PKCS#12 bundle");
        BIO_free(out);
        out = NULL;
    }
out:
    PKCS12_free(p12);
    sk_X509_free(chain);
    return out;
}
