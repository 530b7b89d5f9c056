/* Canonical forms of X.509 distinguished names (see dn.h). */
#include "dn.h"

#include "util.h"

#include <openssl/bio.h>
#include <openssl/objects.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DN_MAX_ATTRS 64

struct canon {
    char *out;
    size_t len, cap;
    int bad;
};

static void put(struct canon *c, const char *s, size_t n)
{
    if (c->len + n + 1 > c->cap) {
        c->bad = 1;
        return;
    }
    memcpy(c->out + c->len, s, n);
    c->len += n;
    c->out[c->len] = '\0';
}

/* Appends a value: lower-cased ASCII, spaces trimmed and collapsed, and the RFC 4514
 * special characters escaped so that the separators stay unambiguous. */
static void put_value(struct canon *c, const unsigned char *v, size_t n)
{
    size_t i = 0, end = n;
    int space = 0;

    while (i < end && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r'))
        i++;
    while (end > i && (v[end - 1] == ' ' || v[end - 1] == '\t' || v[end - 1] == '\n' ||
                       v[end - 1] == '\r'))
        end--;
    for (; i < end; i++) {
        char ch = (char)v[i];

        if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
            space = 1;
            continue;
        }
        if (space) {
            put(c, " ", 1);
            space = 0;
        }
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch == ',' || ch == '+' || ch == '"' || ch == '\\' || ch == '<' || ch == '>' ||
            ch == ';' || ch == '=')
            put(c, "\\", 1);
        put(c, &ch, 1);
    }
}

/* A NUL would end the canonical string early ("erin\0-not-erin" would become
 * "erin"), and no control character belongs in a name: such a name has no
 * canonical form. */
static int value_clean(const unsigned char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] == 0x7f)
            return 0;
    return 1;
}

static void put_type(struct canon *c, const ASN1_OBJECT *obj)
{
    char oid[128];
    int n = OBJ_obj2txt(oid, sizeof(oid), obj, 1);

    if (n <= 0 || (size_t)n >= sizeof(oid)) {
        c->bad = 1;
        return;
    }
    put(c, oid, (size_t)n);
    put(c, "=", 1);
}

int dn_canon_name(const X509_NAME *name, char *out, size_t outlen)
{
    struct canon c = { out, 0, outlen, 0 };
    int count = X509_NAME_entry_count(name), prev_set = -1;

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    /* RFC 4514 order: the last RDN of the sequence first. */
    for (int i = count - 1; i >= 0 && !c.bad; i--) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        unsigned char *utf8 = NULL;
        int set = X509_NAME_ENTRY_set(e);
        int n;

        if (i != count - 1)
            put(&c, set == prev_set ? "+" : ",", 1);
        prev_set = set;
        put_type(&c, X509_NAME_ENTRY_get_object(e));
        n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
        if (n < 0 || !value_clean(utf8, (size_t)n)) {
            OPENSSL_free(utf8);
            c.bad = 1;
            break;
        }
        put_value(&c, utf8, (size_t)n);
        OPENSSL_free(utf8);
    }
    return c.bad ? -1 : 0;
}

void dn_text(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    long n;

    if (outlen > 0)
        out[0] = '\0';
    if (b == NULL)
        return;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0 && (n = BIO_get_mem_data(b, &p)) > 0)
        str_fmt(out, outlen, "%.*s", (int)n, p);
    BIO_free(b);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* RFC 4514 attribute type names are case-insensitive; OpenSSL's look-ups are not. */
static int attr_nid(const char *type)
{
    static const int nids[] = {
        NID_commonName, NID_countryName, NID_localityName, NID_stateOrProvinceName,
        NID_organizationName, NID_organizationalUnitName, NID_streetAddress,
        NID_domainComponent, NID_userId, NID_pkcs9_emailAddress, NID_serialNumber,
        NID_title, NID_givenName, NID_surname, NID_initials, NID_pseudonym,
        NID_description, NID_postalCode, NID_name, NID_dnQualifier,
    };
    int nid = OBJ_txt2nid(type);   /* exact names and dotted OIDs */

    if (nid != NID_undef)
        return nid;
    for (size_t i = 0; i < sizeof(nids) / sizeof(nids[0]); i++)
        if (strcasecmp(type, OBJ_nid2sn(nids[i])) == 0 ||
            strcasecmp(type, OBJ_nid2ln(nids[i])) == 0)
            return nids[i];
    return NID_undef;
}

int dn_canon_string(const char *s, char *out, size_t outlen, char *err, size_t errlen)
{
    X509_NAME *name = X509_NAME_new();
    /* RDNs are collected in string order and added to the name in reverse, so the
     * ASN.1 sequence matches what a certificate with this RFC 4514 string holds. */
    struct {
        char type[64];
        int nid;
        unsigned char value[1024];
        size_t vlen;
        int multi; /* joined to the previous one with '+' */
    } *ent = NULL;
    int nent = 0, rc = -1;
    const char *p = s;

    if (name == NULL || (ent = calloc(DN_MAX_ATTRS, sizeof(*ent))) == NULL) {
        str_fmt(err, errlen, "out of memory");
        goto done;
    }
    while (*p == ' ')
        p++;
    if (*p == '\0') {
        str_fmt(err, errlen, "empty name");
        goto done;
    }
    for (;;) {
        size_t tl = 0;

        while (*p == ' ')
            p++;
        while (*p && *p != '=' && tl + 1 < sizeof(ent[nent].type))
            ent[nent].type[tl++] = *p++;
        while (tl > 0 && ent[nent].type[tl - 1] == ' ')
            tl--;
        ent[nent].type[tl] = '\0';
        if (*p != '=' || tl == 0) {
            str_fmt(err, errlen, "expected TYPE=value at \"%s\"", p);
            goto done;
        }
        if ((ent[nent].nid = attr_nid(ent[nent].type)) == NID_undef) {
            str_fmt(err, errlen, "unknown attribute type \"%s\"", ent[nent].type);
            goto done;
        }
        p++;
        if (*p == '#') {
            str_fmt(err, errlen, "hex-encoded values (#...) are not supported");
            goto done;
        }
        while (*p && *p != ',' && *p != '+') {
            unsigned char ch = (unsigned char)*p++;
            if (ch == '\\') {
                int h1 = hexval(p[0]), h2 = h1 >= 0 ? hexval(p[1]) : -1;
                if (h1 >= 0 && h2 >= 0) {
                    ch = (unsigned char)(h1 * 16 + h2);
                    p += 2;
                } else if (*p != '\0') {
                    ch = (unsigned char)*p++;
                } else {
                    str_fmt(err, errlen, "dangling backslash");
                    goto done;
                }
            }
            if (ent[nent].vlen + 1 >= sizeof(ent[nent].value)) {
                str_fmt(err, errlen, "value too long");
                goto done;
            }
            ent[nent].value[ent[nent].vlen++] = ch;
        }
        nent++;
        if (*p == '\0')
            break;
        if (nent == DN_MAX_ATTRS) {
            str_fmt(err, errlen, "too many attributes (at most %d)", DN_MAX_ATTRS);
            goto done;
        }
        ent[nent].multi = *p == '+';
        p++;
    }
    for (int i = nent - 1; i >= 0; i--) {
        /* A '+'-joined attribute belongs to the same RDN as the one after it in the
         * string, which was added just before: set -1 appends to that RDN. */
        int set = (i + 1 < nent && ent[i + 1].multi) ? -1 : 0;

        if (!X509_NAME_add_entry_by_NID(name, ent[i].nid, MBSTRING_UTF8, ent[i].value,
                                        (int)ent[i].vlen, -1, set)) {
            str_fmt(err, errlen, "cannot use the value of %s", ent[i].type);
            goto done;
        }
    }
    if (dn_canon_name(name, out, outlen) != 0) {
        str_fmt(err, errlen, "name too long");
        goto done;
    }
    rc = 0;
done:
    free(ent);
    X509_NAME_free(name);
    return rc;
}
