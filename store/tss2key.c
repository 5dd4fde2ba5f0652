/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TSS2 PRIVATE KEY file format (draft-bottomley-tpm2-keys; written by tpm2-openssl,
 * openssl_tpm2_engine, tpm2-tools' tpm2_encodeobject and ssh-tpm-agent):
 *
 *   TPMKey ::= SEQUENCE {
 *     type        OBJECT IDENTIFIER,          -- 2.23.133.10.1.3 / .4 / .5
 *     emptyAuth   [0] EXPLICIT BOOLEAN OPTIONAL,
 *     policy      [1] EXPLICIT SEQUENCE OF TPMPolicy OPTIONAL,
 *     secret      [2] EXPLICIT OCTET STRING OPTIONAL,
 *     authPolicy  [3] EXPLICIT SEQUENCE OF TPMAuthPolicy OPTIONAL,
 *     description [4] EXPLICIT UTF8String OPTIONAL,
 *     rsaParent   [5] EXPLICIT BOOLEAN OPTIONAL,
 *     parent      INTEGER,
 *     pubkey      OCTET STRING,               -- TPM2B_PUBLIC
 *     privkey     OCTET STRING }              -- TPM2B_PRIVATE
 *   TPMPolicy ::= SEQUENCE { commandCode [0] EXPLICIT INTEGER,
 *                            commandPolicy [1] EXPLICIT OCTET STRING }
 *   TPMAuthPolicy ::= SEQUENCE { name [0] EXPLICIT UTF8String OPTIONAL,
 *                                policy [1] EXPLICIT SEQUENCE OF TPMPolicy }
 *
 * Like openssl_tpm2_engine we write emptyAuth only as TRUE (never FALSE) and the parent
 * as a positive INTEGER; we read FALSE (tpm2-tools, tpm2-openssl) and the negative parent
 * encodings of older writers too.
 */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

#define TSS2_PEM_NAME "TSS2 PRIVATE KEY"
#define TSS2_OID_PREFIX "2.23.133.10.1."

typedef struct {
    ASN1_INTEGER *code;
    ASN1_OCTET_STRING *policy;
} TK_TPM_POLICY;

typedef struct {
    ASN1_UTF8STRING *name;
    STACK_OF(TK_TPM_POLICY) *policy;
} TK_TPM_AUTH_POLICY;

typedef struct {
    ASN1_OBJECT *type;
    ASN1_BOOLEAN empty_auth; /* -1 when absent */
    STACK_OF(TK_TPM_POLICY) *policy;
    ASN1_OCTET_STRING *secret;
    STACK_OF(TK_TPM_AUTH_POLICY) *auth_policy;
    ASN1_UTF8STRING *description;
    ASN1_BOOLEAN rsa_parent; /* -1 when absent */
    ASN1_INTEGER *parent;
    ASN1_OCTET_STRING *pubkey;
    ASN1_OCTET_STRING *privkey;
} TK_TSS2_KEY;

ASN1_SEQUENCE(TK_TPM_POLICY) = {
    ASN1_EXP(TK_TPM_POLICY, code, ASN1_INTEGER, 0),
    ASN1_EXP(TK_TPM_POLICY, policy, ASN1_OCTET_STRING, 1),
} static_ASN1_SEQUENCE_END(TK_TPM_POLICY)

ASN1_SEQUENCE(TK_TPM_AUTH_POLICY) = {
    ASN1_EXP_OPT(TK_TPM_AUTH_POLICY, name, ASN1_UTF8STRING, 0),
    ASN1_EXP_SEQUENCE_OF(TK_TPM_AUTH_POLICY, policy, TK_TPM_POLICY, 1),
} static_ASN1_SEQUENCE_END(TK_TPM_AUTH_POLICY)

ASN1_SEQUENCE(TK_TSS2_KEY) = {
    ASN1_SIMPLE(TK_TSS2_KEY, type, ASN1_OBJECT),
    ASN1_EXP_OPT(TK_TSS2_KEY, empty_auth, ASN1_BOOLEAN, 0),
    ASN1_EXP_SEQUENCE_OF_OPT(TK_TSS2_KEY, policy, TK_TPM_POLICY, 1),
    ASN1_EXP_OPT(TK_TSS2_KEY, secret, ASN1_OCTET_STRING, 2),
    ASN1_EXP_SEQUENCE_OF_OPT(TK_TSS2_KEY, auth_policy, TK_TPM_AUTH_POLICY, 3),
    ASN1_EXP_OPT(TK_TSS2_KEY, description, ASN1_UTF8STRING, 4),
    ASN1_EXP_OPT(TK_TSS2_KEY, rsa_parent, ASN1_BOOLEAN, 5),
    ASN1_SIMPLE(TK_TSS2_KEY, parent, ASN1_INTEGER),
    ASN1_SIMPLE(TK_TSS2_KEY, pubkey, ASN1_OCTET_STRING),
    ASN1_SIMPLE(TK_TSS2_KEY, privkey, ASN1_OCTET_STRING),
} static_ASN1_SEQUENCE_END(TK_TSS2_KEY)

IMPLEMENT_STATIC_ASN1_ALLOC_FUNCTIONS(TK_TSS2_KEY)
IMPLEMENT_STATIC_ASN1_ENCODE_FUNCTIONS(TK_TSS2_KEY)

/* ------------------------------------------------------------------ helpers */

void tk_tss2key_free(tk_tss2key *k)
{
    if (!k)
        return;
    free(k->description);
    k->description = NULL;
    tk_buf_free(&k->pub);
    tk_buf_free(&k->priv);
}

static const char *find_bytes(const uint8_t *data, size_t len, const char *needle)
{
    return memmem(data, len, needle, strlen(needle));
}

/* The key type from the type OID: 3, 4 or 5; 0 when it is not a TSS2 key OID. */
static int type_from_oid(const ASN1_OBJECT *obj)
{
    char txt[64];
    size_t plen = strlen(TSS2_OID_PREFIX);
    int n = OBJ_obj2txt(txt, sizeof(txt), obj, 1);

    if (n <= 0 || (size_t)n >= sizeof(txt) || strncmp(txt, TSS2_OID_PREFIX, plen) != 0)
        return 0;
    if (!strcmp(txt + plen, "3"))
        return 3;
    if (!strcmp(txt + plen, "4"))
        return 4;
    if (!strcmp(txt + plen, "5"))
        return 5;
    return 0;
}

/*
 * Look at the first element of a DER SEQUENCE without parsing the rest.  Returns
 * TK_OK with *type set (0 = the first element is not a TSS2 OID), or TK_ERR_INVALID when
 * the bytes are not even the start of a DER SEQUENCE with an OID in it.
 */
static tk_rc peek_type(const uint8_t *der, size_t len, int *type)
{
    const unsigned char *p = der, *inner;
    long slen = 0, olen = 0;
    int tag = 0, cls = 0, r;
    ASN1_OBJECT *obj;

    *type = 0;
    if (len < 2 || len > (size_t)LONG_MAX)
        return TK_ERR_INVALID;
    r = ASN1_get_object(&p, &slen, &tag, &cls, (long)len);
    /* 0x80 = error; a too-long length still leaves the header parsed. */
    if ((r & 0x80) && ERR_GET_REASON(ERR_peek_last_error()) != ASN1_R_TOO_LONG) {
        ERR_clear_error();
        return TK_ERR_INVALID;
    }
    ERR_clear_error();
    if (!(r & V_ASN1_CONSTRUCTED) || tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL)
        return TK_ERR_INVALID;
    inner = p;
    r = ASN1_get_object(&p, &olen, &tag, &cls, (long)(len - (size_t)(p - der)));
    ERR_clear_error();
    if ((r & 0x80) || tag != V_ASN1_OBJECT || cls != V_ASN1_UNIVERSAL)
        return TK_OK; /* a SEQUENCE of something else: another kind of DER */
    p = inner;
    obj = d2i_ASN1_OBJECT(NULL, &p, (long)(len - (size_t)(inner - der)));
    ERR_clear_error();
    if (!obj)
        return TK_OK;
    *type = type_from_oid(obj);
    ASN1_OBJECT_free(obj);
    return TK_OK;
}

/* A hierarchy (a primary is made from a standard template) or a persistent key. */
static bool valid_parent(uint32_t h)
{
    return h == TPM2_RH_OWNER || h == TPM2_RH_NULL || h == TPM2_RH_ENDORSEMENT ||
           h == TPM2_RH_PLATFORM || (h >> 24) == TPM2_HT_PERSISTENT;
}

/* The parent handle; older writers encoded 0x81000001 as a negative INTEGER. */
static tk_rc parent_from_asn1(const ASN1_INTEGER *ai, uint32_t *parent)
{
    uint64_t u;
    int64_t s;
    uint32_t h;

    if (ASN1_STRING_type(ai) == V_ASN1_NEG_INTEGER) {
        if (!ASN1_INTEGER_get_int64(&s, ai) || s < INT32_MIN) {
            ERR_clear_error();
            return tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY: parent handle is out of range");
        }
        h = (uint32_t)s; /* the value mod 2^32 */
    } else {
        if (!ASN1_INTEGER_get_uint64(&u, ai) || u > UINT32_MAX) {
            ERR_clear_error();
            return tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY: parent handle is out of range");
        }
        h = (uint32_t)u;
    }
    if (h == 0) /* tpm2-openssl reads 0 as the owner hierarchy */
        h = TPM2_RH_OWNER;
    if (!valid_parent(h))
        return tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY: parent 0x%08x is neither a hierarchy "
                       "(0x40000001) nor a persistent key (0x81xxxxxx)", h);
    *parent = h;
    return TK_OK;
}

static tk_rc copy_description(const ASN1_UTF8STRING *s, char **out)
{
    int len = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    char *c;

    if (len < 0 || memchr(d, 0, (size_t)len))
        return tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY: description contains a NUL byte");
    c = malloc((size_t)len + 1);
    if (!c)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    memcpy(c, d, (size_t)len);
    c[len] = '\0';
    *out = c;
    return TK_OK;
}

/* ------------------------------------------------------------------ parse */

static tk_rc parse_der(const uint8_t *der, size_t len, tk_tss2key *out)
{
    const unsigned char *p = der;
    TK_TSS2_KEY *asn;
    tk_tss2key k;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    tk_buf b;
    int type;
    tk_rc rc;

    if (peek_type(der, len, &type) != TK_OK)
        return tk_fail(TK_ERR_INVALID, "not a key file: neither PEM nor DER");
    if (type == 0)
        return tk_fail(TK_ERR_NOT_FOUND, "not a TSS2 PRIVATE KEY (DER of another kind)");
    asn = d2i_TK_TSS2_KEY(NULL, &p, (long)len);
    if (!asn)
        return tk_fail_ossl(TK_ERR_INVALID, "TSS2 PRIVATE KEY is truncated or malformed");
    memset(&k, 0, sizeof(k));
    if ((size_t)(p - der) != len) {
        rc = tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY is followed by %zu unexpected bytes",
                     len - (size_t)(p - der));
        goto out;
    }
    k.type = type;
    k.empty_auth = asn->empty_auth > 0;
    k.has_policy = asn->policy != NULL;
    k.has_secret = asn->secret != NULL;
    k.has_auth_policy = asn->auth_policy != NULL;
    k.rsa_parent = asn->rsa_parent > 0;
    if (type == 4 && !k.has_secret) {
        rc = tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY: importable key without its [2] secret");
        goto out;
    }
    if ((rc = parent_from_asn1(asn->parent, &k.parent)) != TK_OK)
        goto out;
    if (asn->description && (rc = copy_description(asn->description, &k.description)) != TK_OK)
        goto out;
    /* Both blobs must be exactly one TPM2B_PUBLIC / TPM2B_PRIVATE. */
    b.data = asn->pubkey->data;
    b.len = (size_t)asn->pubkey->length;
    if ((rc = tk_public_unmarshal(&b, &pub)) != TK_OK) {
        rc = tk_fail_ctx(rc, "TSS2 PRIVATE KEY: pubkey");
        goto out;
    }
    if ((rc = tk_buf_set(&k.pub, b.data, b.len)) != TK_OK)
        goto out;
    b.data = asn->privkey->data;
    b.len = (size_t)asn->privkey->length;
    if ((rc = tk_private_unmarshal(&b, &priv)) != TK_OK) {
        rc = tk_fail_ctx(rc, "TSS2 PRIVATE KEY: privkey");
        goto out;
    }
    if ((rc = tk_buf_set(&k.priv, b.data, b.len)) != TK_OK)
        goto out;
    *out = k;
    memset(&k, 0, sizeof(k));
out:
    tk_tss2key_free(&k);
    TK_TSS2_KEY_free(asn);
    return rc;
}

/* Find the TSS2 PRIVATE KEY block in PEM text (other blocks before it are skipped). */
static tk_rc parse_pem(const uint8_t *data, size_t len, tk_tss2key *out)
{
    BIO *bio;
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long dlen = 0;
    tk_rc rc = TK_OK;

    if (!find_bytes(data, len, "-----BEGIN " TSS2_PEM_NAME "-----"))
        return tk_fail(TK_ERR_NOT_FOUND, "not a TSS2 PRIVATE KEY (PEM of another kind)");
    if (len > INT_MAX)
        return tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY file is too large");
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio)
        return tk_fail_ossl(TK_ERR_NOMEM, "out of memory");
    for (;;) {
        if (!PEM_read_bio(bio, &name, &header, &der, &dlen)) {
            rc = tk_fail_ossl(TK_ERR_INVALID, "TSS2 PRIVATE KEY PEM block is truncated or "
                              "corrupt");
            break;
        }
        if (!strcmp(name, TSS2_PEM_NAME))
            break;
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_free(der);
        name = header = NULL;
        der = NULL;
    }
    if (rc == TK_OK) {
        rc = parse_der(der, (size_t)dlen, out);
        if (rc == TK_ERR_NOT_FOUND) /* the right armour around other content */
            rc = tk_fail(TK_ERR_INVALID, "TSS2 PRIVATE KEY block does not hold a TPM key "
                         "(wrong type OID)");
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    BIO_free(bio);
    return rc;
}

tk_rc tk_tss2key_parse(const uint8_t *data, size_t len, tk_tss2key *out)
{
    if (!data || !out)
        return tk_fail(TK_ERR_INVALID, "tk_tss2key_parse: missing argument");
    if (len == 0)
        return tk_fail(TK_ERR_INVALID, "the key file is empty");
    if (find_bytes(data, len, "-----BEGIN "))
        return parse_pem(data, len, out);
    return parse_der(data, len, out);
}

/* ------------------------------------------------------------------ encode */

static const char *type_oid(int type)
{
    switch (type) {
    case 3:
        return TSS2_OID_PREFIX "3";
    case 5:
        return TSS2_OID_PREFIX "5";
    default:
        return NULL;
    }
}

static tk_rc to_pem(const uint8_t *der, size_t len, tk_buf *out)
{
    BIO *bio = BIO_new(BIO_s_mem());
    BUF_MEM *mem = NULL;
    tk_rc rc;

    if (!bio || len > LONG_MAX || !PEM_write_bio(bio, TSS2_PEM_NAME, "", der, (long)len) ||
        !BIO_get_mem_ptr(bio, &mem)) {
        BIO_free(bio);
        return tk_fail_ossl(TK_ERR_NOMEM, "cannot write the PEM armour");
    }
    rc = tk_buf_set(out, mem->data, mem->length);
    BIO_free(bio);
    return rc;
}

static tk_rc fill_asn(const tk_tss2key *k, TK_TSS2_KEY *asn)
{
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    const char *oid = type_oid(k->type);
    tk_rc rc;

    if (!oid)
        return tk_fail(TK_ERR_UNSUPPORTED, "cannot write a TSS2 key of type %d (loadable keys "
                       "and sealed data only)", k->type);
    if (k->has_policy || k->has_secret || k->has_auth_policy)
        return tk_fail(TK_ERR_UNSUPPORTED, "cannot write TSS2 keys with policies or an import "
                       "secret");
    if ((rc = tk_public_unmarshal(&k->pub, &pub)) != TK_OK)
        return tk_fail_ctx(rc, "TSS2 key pubkey");
    if ((rc = tk_private_unmarshal(&k->priv, &priv)) != TK_OK)
        return tk_fail_ctx(rc, "TSS2 key privkey");
    if (!valid_parent(k->parent))
        return tk_fail(TK_ERR_INVALID, "TSS2 key parent 0x%08x is neither a hierarchy "
                       "(0x40000001) nor a persistent key (0x81xxxxxx)", k->parent);
    if (k->pub.len > INT_MAX || k->priv.len > INT_MAX)
        return tk_fail(TK_ERR_INVALID, "TSS2 key blobs are too large");

    ASN1_OBJECT_free(asn->type);
    asn->type = OBJ_txt2obj(oid, 1);
    asn->empty_auth = k->empty_auth ? 0xff : 0;
    asn->rsa_parent = k->rsa_parent ? 0xff : -1;
    if (!asn->type || !ASN1_INTEGER_set_uint64(asn->parent, k->parent) ||
        !ASN1_OCTET_STRING_set(asn->pubkey, k->pub.data, (int)k->pub.len) ||
        !ASN1_OCTET_STRING_set(asn->privkey, k->priv.data, (int)k->priv.len))
        return tk_fail_ossl(TK_ERR_NOMEM, "cannot build the TSS2 key");
    if (k->description) {
        asn->description = ASN1_UTF8STRING_new();
        if (!asn->description ||
            !ASN1_STRING_set(asn->description, k->description, (int)strlen(k->description)))
            return tk_fail_ossl(TK_ERR_NOMEM, "cannot build the TSS2 key description");
    }
    return TK_OK;
}

tk_rc tk_tss2key_encode(const tk_tss2key *k, bool pem, tk_buf *out)
{
    TK_TSS2_KEY *asn;
    unsigned char *der = NULL;
    int len;
    tk_rc rc;

    if (!k || !out)
        return tk_fail(TK_ERR_INVALID, "tk_tss2key_encode: missing argument");
    asn = TK_TSS2_KEY_new();
    if (!asn)
        return tk_fail_ossl(TK_ERR_NOMEM, "out of memory");
    if ((rc = fill_asn(k, asn)) != TK_OK)
        goto out;
    len = i2d_TK_TSS2_KEY(asn, &der);
    if (len <= 0) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "cannot DER-encode the TSS2 key");
        goto out;
    }
    rc = pem ? to_pem(der, (size_t)len, out) : tk_buf_set(out, der, (size_t)len);
out:
    OPENSSL_free(der);
    TK_TSS2_KEY_free(asn);
    return rc;
}
