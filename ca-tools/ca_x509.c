/* Keys, certificates and CRLs built in memory for submit-ca. */
#include "ca_x509.h"

#include "ca_msg.h"
#include "util.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <time.h>

#define CA_SERIAL_BYTES 16

EVP_PKEY *ca_key_generate(enum ca_key_type type)
{
    EVP_PKEY *key;

    if (type == CA_KEY_RSA)
        key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
    else
        key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (key == NULL)
        ca_err_ssl("cannot generate a%s key", type == CA_KEY_RSA ? "n RSA-3072" : " P-256");
    return key;
}

/* Ed25519 and Ed448 sign the message itself: X509_sign wants no digest for them. */
static const EVP_MD *sign_digest(EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL;
    return EVP_sha256();
}

/*
 * 16 bytes from the CSPRNG with the top bit cleared (the serial must be positive) and
 * the next one set, so every serial has the same length: 126 random bits.
 */
static int set_random_serial(X509 *x)
{
    unsigned char b[CA_SERIAL_BYTES];
    BIGNUM *bn = NULL;
    ASN1_INTEGER *ai = NULL;
    int rc = -1;

    if (RAND_bytes(b, sizeof(b)) != 1) {
        ca_err_ssl("cannot draw a random serial number");
        return -1;
    }
    b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
    if ((bn = BN_bin2bn(b, sizeof(b), NULL)) == NULL ||
        (ai = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || X509_set_serialNumber(x, ai) != 1)
        ca_err_ssl("cannot set the serial number");
    else
        rc = 0;
    ASN1_INTEGER_free(ai);
    BN_free(bn);
    return rc;
}

static int set_time(ASN1_TIME *field, long long epoch)
{
    /* ASN1_TIME_set picks UTCTime before 2050 and GeneralizedTime after (RFC 5280). */
    if (ASN1_TIME_set(field, (time_t)epoch) == NULL) {
        ca_err_ssl("cannot set a validity date");
        return -1;
    }
    return 0;
}

/* Extensions whose values are fixed strings of ours, never user input. */
static int add_conf_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok;

    if (ext == NULL) {
        ca_err_ssl("cannot build the %s extension \"%s\"", OBJ_nid2sn(nid), value);
        return -1;
    }
    ok = X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1) {
        ca_err_ssl("cannot add the %s extension", OBJ_nid2sn(nid));
        return -1;
    }
    return 0;
}

static int push_ia5_name(GENERAL_NAMES *gens, int type, const char *value)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (gen == NULL || s == NULL || ASN1_STRING_set(s, value, -1) != 1) {
        ASN1_IA5STRING_free(s);
        GENERAL_NAME_free(gen);
        return -1;
    }
    GENERAL_NAME_set0_value(gen, type, s);
    if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
        GENERAL_NAME_free(gen);
        return -1;
    }
    return 0;
}

/*
 * The subjectAltName is built from typed values, not from a "DNS:...,email:..."
 * configuration string, so a comma in an argument cannot add a name of its own.
 */
static int add_san(X509 *x, const struct ca_cert_spec *spec, int critical)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int rc = -1;

    if (gens == NULL)
        goto fail;
    if (spec->email != NULL && push_ia5_name(gens, GEN_EMAIL, spec->email) != 0)
        goto fail;
    if (spec->dns != NULL && push_ia5_name(gens, GEN_DNS, spec->dns) != 0)
        goto fail;
    for (int i = 0; i < spec->nips; i++) {
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(spec->ips[i]);
        GENERAL_NAME *gen;

        if (ip == NULL) {
            ca_err("%s: not an IP address", spec->ips[i]);
            goto out;
        }
        if ((gen = GENERAL_NAME_new()) == NULL) {
            ASN1_OCTET_STRING_free(ip);
            goto fail;
        }
        GENERAL_NAME_set0_value(gen, GEN_IPADD, ip);
        if (sk_GENERAL_NAME_push(gens, gen) <= 0) {
            GENERAL_NAME_free(gen);
            goto fail;
        }
    }
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, critical, X509V3_ADD_DEFAULT) != 1)
        goto fail;
    rc = 0;
    goto out;
fail:
    ca_err_ssl("cannot build the subjectAltName extension");
out:
    GENERAL_NAMES_free(gens);
    return rc;
}

static int add_extensions(X509 *x, X509 *issuer, const struct ca_cert_spec *spec,
                          EVP_PKEY *subject_key)
{
    X509V3_CTX ctx;
    const char *ku = "critical,digitalSignature";

    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    switch (spec->kind) {
    case CA_CERT_ROOT:
        if (add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE") != 0 ||
            add_conf_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") != 0)
            return -1;
        break;
    case CA_CERT_SERVER:
        /* RSA key exchange (TLS 1.2 without ECDHE) encrypts to the server key. */
        if (EVP_PKEY_is_a(subject_key, "RSA"))
            ku = "critical,digitalSignature,keyEncipherment";
        if (add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_conf_ext(x, &ctx, NID_key_usage, ku) != 0 ||
            add_conf_ext(x, &ctx, NID_ext_key_usage, "serverAuth") != 0 ||
            add_san(x, spec, spec->cn == NULL) != 0)
            return -1;
        break;
    case CA_CERT_CLIENT:
        if (add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
            add_conf_ext(x, &ctx, NID_key_usage, ku) != 0 ||
            add_conf_ext(x, &ctx, NID_ext_key_usage, "clientAuth,emailProtection") != 0 ||
            add_san(x, spec, spec->cn == NULL) != 0)
            return -1;
        break;
    }
    /* The SKI first: for a self-signed certificate the AKI is copied from it. */
    if (add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash") != 0 ||
        add_conf_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") != 0)
        return -1;
    return 0;
}

X509 *ca_cert_build(const struct ca_cert_spec *spec, EVP_PKEY *subject_key, X509 *issuer_cert,
                    EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();

    if (x == NULL || name == NULL) {
        ca_err_ssl("cannot allocate a certificate");
        goto fail;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_pubkey(x, subject_key) != 1) {
        ca_err_ssl("cannot set the certificate version or public key");
        goto fail;
    }
    if (set_random_serial(x) != 0)
        goto fail;
    if (spec->cn != NULL &&
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                                   (const unsigned char *)spec->cn, -1, -1, 0) != 1) {
        ca_err_ssl("cannot set the commonName \"%s\"", spec->cn);
        goto fail;
    }
    if (X509_set_subject_name(x, name) != 1 ||
        X509_set_issuer_name(x, issuer_cert != NULL ? X509_get_subject_name(issuer_cert)
                                                    : name) != 1) {
        ca_err_ssl("cannot set the subject or issuer name");
        goto fail;
    }
    if (set_time(X509_getm_notBefore(x), spec->not_before) != 0 ||
        set_time(X509_getm_notAfter(x), spec->not_after) != 0)
        goto fail;
    if (add_extensions(x, issuer_cert != NULL ? issuer_cert : x, spec, subject_key) != 0)
        goto fail;
    if (X509_sign(x, issuer_key, sign_digest(issuer_key)) <= 0) {
        ca_err_ssl("cannot sign the certificate");
        goto fail;
    }
    X509_NAME_free(name);
    return x;
fail:
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

int ca_name_rfc2253(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long len;
    int rc = -1;

    if (b == NULL || X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) < 0) {
        ca_err_ssl("cannot print a distinguished name");
        goto out;
    }
    len = BIO_get_mem_data(b, &data);
    if (len < 0 || (size_t)len >= outlen) {
        ca_err("distinguished name longer than %zu bytes", outlen - 1);
        goto out;
    }
    memcpy(out, data, (size_t)len);
    out[len] = '\0';
    rc = 0;
out:
    BIO_free(b);
    return rc;
}

int ca_time_iso(const ASN1_TIME *t, char *out, size_t outlen, long long *epoch)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        ca_err_ssl("cannot convert a certificate date");
        return -1;
    }
    if (epoch != NULL)
        *epoch = (long long)timegm(&tm);
    return 0;
}

int ca_cert_info(X509 *x, struct ca_cert_info *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BIGNUM *bn;
    char *hex = NULL;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (bn == NULL || (hex = BN_bn2hex(bn)) == NULL) {
        ca_err_ssl("cannot read the serial number");
        goto out;
    }
    if (str_lcpy(out->serial, hex, sizeof(out->serial)) >= sizeof(out->serial)) {
        ca_err("serial number %s is too long", hex);
        goto out;
    }
    if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        ca_err_ssl("cannot compute the SHA-256 fingerprint");
        goto out;
    }
    hex_encode(md, mdlen, out->sha256);
    if (ca_name_rfc2253(X509_get_subject_name(x), out->subject, sizeof(out->subject)) != 0 ||
        ca_name_rfc2253(X509_get_issuer_name(x), out->issuer, sizeof(out->issuer)) != 0 ||
        ca_time_iso(X509_get0_notBefore(x), out->not_before, sizeof(out->not_before),
                    &out->not_before_epoch) != 0 ||
        ca_time_iso(X509_get0_notAfter(x), out->not_after, sizeof(out->not_after),
                    &out->not_after_epoch) != 0)
        goto out;
    rc = 0;
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

static X509_REVOKED *crl_entry(const struct ca_crl_entry *e)
{
    X509_REVOKED *r = X509_REVOKED_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    ASN1_TIME *when = NULL;
    ASN1_ENUMERATED *reason = NULL;
    int ok = 0;

    if (r == NULL || BN_hex2bn(&bn, e->serial) == 0 ||
        (serial = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
        X509_REVOKED_set_serialNumber(r, serial) != 1 ||
        (when = ASN1_TIME_set(NULL, (time_t)e->revoked_at)) == NULL ||
        X509_REVOKED_set_revocationDate(r, when) != 1)
        goto out;
    /* RFC 5280 5.3.1: leave the extension out rather than say "unspecified". */
    if (e->reason != CA_REASON_UNSPECIFIED &&
        ((reason = ASN1_ENUMERATED_new()) == NULL || ASN1_ENUMERATED_set(reason, e->reason) != 1 ||
         X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) != 1))
        goto out;
    ok = 1;
out:
    if (!ok) {
        ca_err_ssl("cannot build the CRL entry for serial %s", e->serial);
        X509_REVOKED_free(r);
        r = NULL;
    }
    ASN1_ENUMERATED_free(reason);
    ASN1_TIME_free(when);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return r;
}

static int crl_set_header(X509_CRL *crl, X509 *ca_cert, uint64_t number, long long this_update,
                          long long next_update)
{
    ASN1_TIME *last = ASN1_TIME_set(NULL, (time_t)this_update);
    ASN1_TIME *next = ASN1_TIME_set(NULL, (time_t)next_update);
    ASN1_INTEGER *num = ASN1_INTEGER_new();
    int rc = -1;

    if (last == NULL || next == NULL || num == NULL ||
        X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_cert)) != 1 ||
        X509_CRL_set1_lastUpdate(crl, last) != 1 || X509_CRL_set1_nextUpdate(crl, next) != 1 ||
        ASN1_INTEGER_set_uint64(num, number) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1)
        ca_err_ssl("cannot build the CRL");
    else
        rc = 0;
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(next);
    ASN1_TIME_free(last);
    return rc;
}

static int crl_add_aki(X509_CRL *crl, X509 *ca_cert)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    int ok;

    X509V3_set_ctx(&ctx, ca_cert, NULL, NULL, crl, 0);
    ext = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (ext == NULL) {
        ca_err_ssl("cannot build the CRL's authorityKeyIdentifier");
        return -1;
    }
    ok = X509_CRL_add_ext(crl, ext, -1);
    X509_EXTENSION_free(ext);
    if (ok != 1) {
        ca_err_ssl("cannot add the CRL's authorityKeyIdentifier");
        return -1;
    }
    return 0;
}

X509_CRL *ca_crl_build(X509 *ca_cert, EVP_PKEY *ca_key, const struct ca_crl_entry *entries,
                       size_t n, uint64_t number, long long this_update, long long next_update)
{
    X509_CRL *crl = X509_CRL_new(), *decoded = NULL;
    unsigned char *der = NULL;
    const unsigned char *p;
    int derlen;

    if (crl == NULL) {
        ca_err_ssl("cannot allocate a CRL");
        return NULL;
    }
    if (crl_set_header(crl, ca_cert, number, this_update, next_update) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        X509_REVOKED *r = crl_entry(&entries[i]);

        if (r == NULL)
            goto out;
        if (X509_CRL_add0_revoked(crl, r) != 1) {
            X509_REVOKED_free(r);
            ca_err_ssl("cannot add serial %s to the CRL", entries[i].serial);
            goto out;
        }
    }
    if (X509_CRL_sort(crl) != 1 || crl_add_aki(crl, ca_cert) != 0)
        goto out;
    if (X509_CRL_sign(crl, ca_key, sign_digest(ca_key)) <= 0) {
        ca_err_ssl("cannot sign the CRL");
        goto out;
    }
    /* A CRL built in memory lacks fields set only by decoding: hand out the decoded one. */
    if ((derlen = i2d_X509_CRL(crl, &der)) <= 0) {
        ca_err_ssl("cannot encode the CRL");
        goto out;
    }
    p = der;
    if ((decoded = d2i_X509_CRL(NULL, &p, derlen)) == NULL) {
        ca_err_ssl("cannot decode the CRL just built");
        goto out;
    }
    if (X509_CRL_verify(decoded, X509_get0_pubkey(ca_cert)) != 1) {
        ca_err_ssl("the CRL just signed does not verify with the CA certificate");
        X509_CRL_free(decoded);
        decoded = NULL;
    }
out:
    OPENSSL_free(der);
    X509_CRL_free(crl);
    return decoded;
}

int ca_crl_number(const X509_CRL *crl, uint64_t *out)
{
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
    int rc = -1;

    if (num != NULL && ASN1_INTEGER_get_uint64(out, num) == 1)
        rc = 0;
    ASN1_INTEGER_free(num);
    ERR_clear_error();
    return rc;
}

static BIO *secmem_bio(void)
{
    BIO *b = BIO_new(BIO_s_secmem());

    if (b == NULL)
        ca_err_ssl("cannot allocate a memory buffer");
    return b;
}

BIO *ca_pem_cert(X509 *x)
{
    BIO *b = secmem_bio();

    if (b != NULL && PEM_write_bio_X509(b, x) != 1) {
        ca_err_ssl("cannot encode a certificate");
        BIO_free(b);
        b = NULL;
    }
    return b;
}

BIO *ca_pem_key(EVP_PKEY *key)
{
    BIO *b = secmem_bio();

    /* PKCS#8, unencrypted: the file's mode (0600) protects it, as for the server key. */
    if (b != NULL && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1) {
        ca_err_ssl("cannot encode a private key");
        BIO_free(b);
        b = NULL;
    }
    return b;
}

BIO *ca_pem_key_encrypted(EVP_PKEY *key, const char *passphrase)
{
    BIO *b = secmem_bio();
    size_t n = strlen(passphrase);

    /* PKCS#8 with AES-256-CBC, the key derived from the passphrase with PBKDF2. */
    if (b != NULL && (n > INT_MAX ||
                      PEM_write_bio_PKCS8PrivateKey(b, key, EVP_aes_256_cbc(), passphrase,
                                                    (int)n, NULL, NULL) != 1)) {
        ca_err_ssl("cannot encrypt the private key");
        BIO_free(b);
        b = NULL;
    }
    return b;
}

BIO *ca_pem_crl(X509_CRL *crl)
{
    BIO *b = secmem_bio();

    if (b != NULL && PEM_write_bio_X509_CRL(b, crl) != 1) {
        ca_err_ssl("cannot encode the CRL");
        BIO_free(b);
        b = NULL;
    }
    return b;
}

/* Keys that mail clients and TLS libraries handle, and that are strong enough. */
static int csr_key_acceptable(EVP_PKEY *key, const char *path)
{
    int bits = EVP_PKEY_get_bits(key);

    if (EVP_PKEY_is_a(key, "RSA")) {
        if (bits < 2048) {
            ca_err("%s: an RSA key of %d bits is too weak; at least 2048 are needed", path,
                   bits);
            return 0;
        }
        return 1;
    }
    if (EVP_PKEY_is_a(key, "EC")) {
        if (bits < 256) {
            ca_err("%s: an elliptic curve key of %d bits is too weak; use P-256 or larger",
                   path, bits);
            return 0;
        }
        return 1;
    }
    if (EVP_PKEY_is_a(key, "ED25519"))
        return 1;
    ca_err("%s: key type %s is not supported; use EC P-256, RSA (2048 bits or more) or "
           "Ed25519", path, EVP_PKEY_get0_type_name(key));
    return 0;
}

EVP_PKEY *ca_csr_public_key(const char *path)
{
    BIO *in = BIO_new_file(path, "rb");
    X509_REQ *req = NULL;
    EVP_PKEY *key = NULL;

    if (in == NULL) {
        ERR_clear_error();
        ca_err("cannot read the request %s: %s", path, strerror(errno));
        return NULL;
    }
    req = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    if (req == NULL) {
        /* Not PEM: perhaps the same request in DER. */
        ERR_clear_error();
        (void)BIO_reset(in);
        req = d2i_X509_REQ_bio(in, NULL);
    }
    BIO_free(in);
    if (req == NULL) {
        ERR_clear_error();
        ca_err("%s is not a certificate signing request (PKCS#10, PEM or DER)", path);
        return NULL;
    }
    key = X509_REQ_get_pubkey(req);
    if (key == NULL) {
        ca_err_ssl("%s: cannot read the public key of the request", path);
        goto out;
    }
    /* The signature proves that whoever made the request holds the private key. */
    if (X509_REQ_verify(req, key) != 1) {
        ERR_clear_error();
        ca_err("%s: the request's signature does not verify: it was altered or not made "
               "with its key", path);
        EVP_PKEY_free(key);
        key = NULL;
        goto out;
    }
    if (!csr_key_acceptable(key, path)) {
        EVP_PKEY_free(key);
        key = NULL;
    }
out:
    X509_REQ_free(req);
    return key;
}
