/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Objects.  A store key is shown as a private-key object, a public-key object and,
 * when it has one, a certificate object, all with the key's CKA_ID and label.
 * Their handles are (key row id << 2) | kind: stable for the life of the module
 * (and beyond).  Certificates without a key of their own, lone public keys and data
 * objects are rows of the store's objects table, with handles P11_STORE_OBJ_BIT | row
 * id.  Session objects (CKA_TOKEN false) live in this process only.
 *
 * The object cache is rebuilt when the store changed (another process, or us), so
 * keys added or removed elsewhere are seen without re-initialising.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "p11.h"

/* ------------------------------------------------------------------ attribute lists */

void p11_attrs_free(p11_attrs *as)
{
    for (size_t i = 0; i < as->n; i++)
        OPENSSL_clear_free(as->a[i].val, as->a[i].len);
    free(as->a);
    memset(as, 0, sizeof(*as));
}

static p11_attr *attrs_find(const p11_attrs *as, CK_ATTRIBUTE_TYPE type)
{
    for (size_t i = 0; i < as->n; i++)
        if (as->a[i].type == type)
            return &as->a[i];
    return NULL;
}

const p11_attr *p11_attrs_get(const p11_attrs *as, CK_ATTRIBUTE_TYPE type)
{
    return attrs_find(as, type);
}

CK_RV p11_attrs_set(p11_attrs *as, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len)
{
    p11_attr *a = attrs_find(as, type);
    uint8_t *copy = malloc(len ? len : 1);

    if (!copy)
        return CKR_HOST_MEMORY;
    if (len)
        memcpy(copy, val, len);
    if (!a) {
        if (as->n == as->cap) {
            size_t cap = as->cap ? 2 * as->cap : 32;
            p11_attr *na = realloc(as->a, cap * sizeof(*na));
            if (!na) {
                free(copy);
                return CKR_HOST_MEMORY;
            }
            as->a = na;
            as->cap = cap;
        }
        a = &as->a[as->n++];
    } else {
        OPENSSL_clear_free(a->val, a->len);
    }
    a->type = type;
    a->val = copy;
    a->len = len;
    a->sensitive = false;
    return CKR_OK;
}

CK_RV p11_attrs_bool(p11_attrs *as, CK_ATTRIBUTE_TYPE type, bool v)
{
    CK_BBOOL b = v ? CK_TRUE : CK_FALSE;
    return p11_attrs_set(as, type, &b, sizeof(b));
}

CK_RV p11_attrs_ulong(p11_attrs *as, CK_ATTRIBUTE_TYPE type, CK_ULONG v)
{
    return p11_attrs_set(as, type, &v, sizeof(v));
}

CK_RV p11_attrs_sensitive(p11_attrs *as, CK_ATTRIBUTE_TYPE type)
{
    CK_RV rv = p11_attrs_set(as, type, NULL, 0);
    if (rv == CKR_OK)
        attrs_find(as, type)->sensitive = true;
    return rv;
}

static bool attrs_true(const p11_attrs *as, CK_ATTRIBUTE_TYPE type)
{
    const p11_attr *a = attrs_find(as, type);
    return a && a->len == sizeof(CK_BBOOL) && *a->val == CK_TRUE;
}

/* ------------------------------------------------------------------ templates */

const CK_ATTRIBUTE *p11_tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type)
{
    for (CK_ULONG i = 0; t && i < n; i++)
        if (t[i].type == type)
            return &t[i];
    return NULL;
}

CK_RV p11_tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool *out)
{
    const CK_ATTRIBUTE *a = p11_tmpl_find(t, n, type);
    if (!a)
        return CKR_OK;
    if (!a->pValue || a->ulValueLen != sizeof(CK_BBOOL))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *out = *(CK_BBOOL *)a->pValue != CK_FALSE;
    return CKR_OK;
}

CK_RV p11_tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *out)
{
    const CK_ATTRIBUTE *a = p11_tmpl_find(t, n, type);
    if (!a)
        return CKR_OK;
    if (!a->pValue || a->ulValueLen != sizeof(CK_ULONG))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    *out = *(CK_ULONG *)a->pValue;
    return CKR_OK;
}

CK_RV p11_tmpl_string(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, char **out)
{
    const CK_ATTRIBUTE *a = p11_tmpl_find(t, n, type);
    char *s;

    *out = NULL;
    if (!a)
        return CKR_OK;
    if (!a->pValue && a->ulValueLen)
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (a->ulValueLen && memchr(a->pValue, 0, a->ulValueLen))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    if (!(s = malloc(a->ulValueLen + 1)))
        return CKR_HOST_MEMORY;
    if (a->ulValueLen)
        memcpy(s, a->pValue, a->ulValueLen);
    s[a->ulValueLen] = '\0';
    *out = s;
    return CKR_OK;
}

char *p11_new_label(void)
{
    uint8_t r[4];
    char *s = malloc(16);

    if (!s)
        return NULL;
    if (RAND_bytes(r, sizeof(r)) != 1) {
        free(s);
        return NULL;
    }
    snprintf(s, 16, "key-%02x%02x%02x%02x", r[0], r[1], r[2], r[3]);
    return s;
}

/* ------------------------------------------------------------------ EC parameters */

static const struct {
    tk_alg alg;
    uint8_t der[10];
    size_t len;
} curve_oids[] = {
    { TK_ALG_ECC_P256, { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 }, 10 },
    { TK_ALG_ECC_P384, { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 }, 7 },
    { TK_ALG_ECC_P521, { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23 }, 7 },
};

CK_RV p11_ec_params(tk_alg alg, tk_buf *out)
{
    for (size_t i = 0; i < sizeof(curve_oids) / sizeof(curve_oids[0]); i++)
        if (curve_oids[i].alg == alg)
            return tk_buf_set(out, curve_oids[i].der, curve_oids[i].len) == TK_OK
                       ? CKR_OK : CKR_HOST_MEMORY;
    return CKR_KEY_TYPE_INCONSISTENT;
}

tk_alg p11_alg_from_ec_params(const uint8_t *der, size_t len)
{
    for (size_t i = 0; i < sizeof(curve_oids) / sizeof(curve_oids[0]); i++)
        if (len == curve_oids[i].len && !memcmp(der, curve_oids[i].der, len))
            return curve_oids[i].alg;
    return TK_ALG_NONE;
}

static const char *alg_group_name(tk_alg alg)
{
    switch (alg) {
    case TK_ALG_ECC_P256: return "P-256";
    case TK_ALG_ECC_P384: return "P-384";
    case TK_ALG_ECC_P521: return "P-521";
    default: return NULL;
    }
}

/* CKA_EC_POINT: DER OCTET STRING around the uncompressed point. */
static CK_RV ec_point_der(const uint8_t *pt, size_t len, tk_buf *out)
{
    uint8_t hdr[3];
    size_t h;

    if (len < 128) {
        hdr[0] = 0x04, hdr[1] = (uint8_t)len, h = 2;
    } else {
        hdr[0] = 0x04, hdr[1] = 0x81, hdr[2] = (uint8_t)len, h = 3;
    }
    if (tk_buf_set(out, NULL, 0) != TK_OK)
        return CKR_HOST_MEMORY;
    free(out->data);
    if (!(out->data = malloc(h + len)))
        return CKR_HOST_MEMORY;
    memcpy(out->data, hdr, h);
    memcpy(out->data + h, pt, len);
    out->len = h + len;
    return CKR_OK;
}

/* A point from CKA_EC_POINT or ECDH public data: raw (04||x||y) or wrapped in DER. */
static bool ec_point_raw(const uint8_t *in, size_t len, const uint8_t **pt, size_t *ptlen)
{
    if (len >= 2 && in[0] == 0x04) {
        size_t l = in[1], h = 2;
        if (l == 0x81 && len >= 3)
            l = in[2], h = 3;
        if (l >= 0x80 && h == 2)
            l = 0;
        if (l && h + l == len && in[h] == 0x04 && (l & 1)) {
            *pt = in + h;
            *ptlen = l;
            return true;
        }
    }
    if (len && in[0] == 0x04 && (len & 1)) {
        *pt = in;
        *ptlen = len;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------------ key attributes */

static const CK_MECHANISM_TYPE rsa_mechs[] = {
    CKM_RSA_PKCS, CKM_RSA_X_509, CKM_RSA_PKCS_OAEP, CKM_RSA_PKCS_PSS,
    CKM_SHA1_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_SHA384_RSA_PKCS,
    CKM_SHA512_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS, CKM_SHA224_RSA_PKCS_PSS,
    CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS,
};
static const CK_MECHANISM_TYPE ec_mechs[] = {
    CKM_ECDSA, CKM_ECDSA_SHA1, CKM_ECDSA_SHA224, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384,
    CKM_ECDSA_SHA512, CKM_ECDH1_DERIVE,
};

#define NRSA (sizeof(rsa_mechs) / sizeof(rsa_mechs[0]))
#define NEC (sizeof(ec_mechs) / sizeof(ec_mechs[0]))

/* What a key may do, as its attributes tell it.  The TPM public area decides: keys tpmkeys
 * makes or imports do everything their type allows; keys restricted by other tools (a
 * fixed scheme, sign-only, `openssl genpkey -algorithm RSA-PSS`) only what the TPM will
 * then accept, so that C_*Init's answers follow from the attributes. */
typedef struct {
    bool sign, decrypt, derive;
    CK_MECHANISM_TYPE mechs[NRSA > NEC ? NRSA : NEC];
    size_t nmechs;
} key_caps;

static void caps_all(CK_KEY_TYPE kt, key_caps *c)
{
    bool rsa = kt == CKK_RSA;
    c->sign = true;
    c->decrypt = rsa;
    c->derive = !rsa;
    c->nmechs = rsa ? NRSA : NEC;
    memcpy(c->mechs, rsa ? rsa_mechs : ec_mechs, c->nmechs * sizeof(c->mechs[0]));
}

static CK_MECHANISM_TYPE pss_mech_of(TPM2_ALG_ID h)
{
    switch (h) {
    case TPM2_ALG_SHA1: return CKM_SHA1_RSA_PKCS_PSS;
    case TPM2_ALG_SHA256: return CKM_SHA256_RSA_PKCS_PSS;
    case TPM2_ALG_SHA384: return CKM_SHA384_RSA_PKCS_PSS;
    case TPM2_ALG_SHA512: return CKM_SHA512_RSA_PKCS_PSS;
    default: return CK_UNAVAILABLE_INFORMATION;
    }
}

/* Whether an RSA key the TPM does not let do the raw operation may use mechanism m with
 * what its TPM attributes allow (mech.c signs with TPM2_Sign then, and decrypts with
 * TPM2_RSA_Decrypt; SHA-224 and other salts than the digest length need the raw one).  A
 * fixed scheme is the only one the TPM takes. */
static bool rsa_mech_ok(CK_MECHANISM_TYPE m, bool sign, bool decrypt, TPM2_ALG_ID scheme)
{
    bool any = scheme == TPM2_ALG_NULL;

    switch (m) {
    case CKM_RSA_PKCS_OAEP: return decrypt && (any || scheme == TPM2_ALG_OAEP);
    case CKM_RSA_X_509: return decrypt && any;
    case CKM_RSA_PKCS:   /* a DigestInfo TPM2_Sign knows, or RSAES */
        return sign || (decrypt && (any || scheme == TPM2_ALG_RSAES));
    case CKM_SHA224_RSA_PKCS: case CKM_SHA224_RSA_PKCS_PSS: return false;
    case CKM_RSA_PKCS_PSS: case CKM_SHA1_RSA_PKCS_PSS: case CKM_SHA256_RSA_PKCS_PSS:
    case CKM_SHA384_RSA_PKCS_PSS: case CKM_SHA512_RSA_PKCS_PSS:
        return sign && scheme != TPM2_ALG_RSASSA;
    default: return sign;   /* SHAx-RSA-PKCS */
    }
}

static void caps_of(const TPM2B_PUBLIC *pub, CK_KEY_TYPE kt, key_caps *c)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    TPM2_ALG_ID scheme, pss;
    bool restricted;

    caps_all(kt, c);
    if (kt != CKK_RSA || p->type != TPM2_ALG_RSA || tk_public_rsa_raw_ok(pub))
        return;
    scheme = p->parameters.rsaDetail.scheme.scheme;
    pss = tk_public_pss_hash(pub);
    restricted = p->objectAttributes & TPMA_OBJECT_RESTRICTED;
    /* A restricted key signs only digests the TPM made itself (and decrypts only as a
     * storage parent); a fixed scheme is the only one the TPM takes. */
    c->sign = (p->objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) && !restricted &&
              (scheme == TPM2_ALG_NULL || scheme == TPM2_ALG_RSASSA || scheme == TPM2_ALG_RSAPSS);
    c->decrypt = (p->objectAttributes & TPMA_OBJECT_DECRYPT) && !restricted &&
                 (scheme == TPM2_ALG_NULL || scheme == TPM2_ALG_RSAES || scheme == TPM2_ALG_OAEP);
    c->nmechs = 0;
    if (pss) {
        CK_MECHANISM_TYPE m = pss_mech_of(pss);
        c->sign = c->sign && m != CK_UNAVAILABLE_INFORMATION;
        if (c->sign) {
            c->mechs[c->nmechs++] = CKM_RSA_PKCS_PSS;
            c->mechs[c->nmechs++] = m;
        }
        return;
    }
    for (size_t i = 0; i < NRSA; i++)
        if (rsa_mech_ok(rsa_mechs[i], c->sign, c->decrypt, scheme))
            c->mechs[c->nmechs++] = rsa_mechs[i];
}

static CK_RV buf_attr(p11_attrs *as, CK_ATTRIBUTE_TYPE t, const uint8_t *d, size_t n)
{
    return p11_attrs_set(as, t, d, n);
}

/* A big number as unsigned big-endian bytes (CKA_MODULUS, CKA_PUBLIC_EXPONENT). */
static CK_RV bn_attr(p11_attrs *as, CK_ATTRIBUTE_TYPE t, const BIGNUM *bn)
{
    int n = BN_num_bytes(bn);
    uint8_t *b = malloc(n ? (size_t)n : 1);
    CK_RV rv = CKR_HOST_MEMORY;

    if (b && BN_bn2bin(bn, b) == n)
        rv = p11_attrs_set(as, t, b, (CK_ULONG)n);
    free(b);
    return rv;
}

static tk_alg ec_alg_of(EVP_PKEY *pkey)
{
    char group[64];
    int nid;

    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL))
        return TK_ALG_NONE;
    nid = OBJ_sn2nid(group);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    switch (nid) {
    case NID_X9_62_prime256v1: return TK_ALG_ECC_P256;
    case NID_secp384r1: return TK_ALG_ECC_P384;
    case NID_secp521r1: return TK_ALG_ECC_P521;
    default: return TK_ALG_NONE;
    }
}

/* The key type of a public key this module can show and use (RSA, EC on our curves). */
static CK_RV pkey_key_type(EVP_PKEY *pkey, CK_KEY_TYPE *kt)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        *kt = CKK_RSA;
        return CKR_OK;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        *kt = CKK_EC;
        return ec_alg_of(pkey) != TK_ALG_NONE ? CKR_OK : CKR_CURVE_NOT_SUPPORTED;
    }
    return CKR_KEY_TYPE_INCONSISTENT;
}

/* The attributes a public key gives (store keys, lone public keys: both carry them). */
static CK_RV public_attrs(p11_attrs *as, EVP_PKEY *pkey)
{
    unsigned char *spki = NULL;
    BIGNUM *a = NULL, *b = NULL;
    tk_buf params = { 0 }, der = { 0 };
    uint8_t pt[1 + 2 * TPM2_MAX_ECC_KEY_BYTES] = { 0x04 };
    int spkilen, coord;
    tk_alg alg;
    CK_RV rv;

    spkilen = i2d_PUBKEY(pkey, &spki);
    if (spkilen <= 0)
        return CKR_HOST_MEMORY;
    rv = buf_attr(as, CKA_PUBLIC_KEY_INFO, spki, (size_t)spkilen);
    OPENSSL_free(spki);
    if (rv != CKR_OK)
        return rv;
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &a) ||
            !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &b))
            rv = CKR_DEVICE_ERROR;
        if (rv == CKR_OK && (rv = bn_attr(as, CKA_MODULUS, a)) == CKR_OK &&
            (rv = p11_attrs_ulong(as, CKA_MODULUS_BITS, (CK_ULONG)BN_num_bits(a))) == CKR_OK)
            rv = bn_attr(as, CKA_PUBLIC_EXPONENT, b);
        goto out;
    }
    alg = ec_alg_of(pkey);
    coord = (tk_alg_bits(alg) + 7) / 8;
    if (alg == TK_ALG_NONE || !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
        !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &b) ||
        BN_bn2binpad(a, pt + 1, coord) != coord ||
        BN_bn2binpad(b, pt + 1 + coord, coord) != coord) {
        rv = CKR_DEVICE_ERROR;
        goto out;
    }
    if ((rv = p11_ec_params(alg, &params)) == CKR_OK &&
        (rv = ec_point_der(pt, 1 + 2 * (size_t)coord, &der)) == CKR_OK &&
        (rv = buf_attr(as, CKA_EC_PARAMS, params.data, params.len)) == CKR_OK)
        rv = buf_attr(as, CKA_EC_POINT, der.data, der.len);
out:
    BN_free(a);
    BN_free(b);
    tk_buf_free(&params);
    tk_buf_free(&der);
    return rv;
}

/* The same attributes as public_attrs, straight from a TPM public area: no EVP_PKEY and no
 * OpenSSL encoder, which made loading a store of 10,000 keys take seconds. */
static CK_RV tpm_public_attrs(p11_attrs *as, const TPM2B_PUBLIC *pub, tk_alg alg)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    uint8_t pt[1 + 2 * TPM2_MAX_ECC_KEY_BYTES];
    tk_buf spki = { 0 }, params = { 0 }, der = { 0 };
    size_t ptlen = 0;
    CK_RV rv = CKR_OK;

    if (tk_public_spki(pub, &spki) != TK_OK)
        return p11_fail(TK_ERR_STORE, CKR_DEVICE_ERROR, "reading a key's public part");
    if ((rv = buf_attr(as, CKA_PUBLIC_KEY_INFO, spki.data, spki.len)) != CKR_OK)
        goto out;
    if (p->type == TPM2_ALG_RSA) {
        uint32_t e = p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537;
        uint8_t eb[4] = { (uint8_t)(e >> 24), (uint8_t)(e >> 16), (uint8_t)(e >> 8), (uint8_t)e };
        const uint8_t *n = p->unique.rsa.buffer;
        size_t nlen = p->unique.rsa.size, skip = 0;
        CK_ULONG bits;
        while (nlen && !*n)
            n++, nlen--;   /* unsigned big-endian without leading zeros, as BN_bn2bin */
        while (skip < 3 && !eb[skip])
            skip++;
        bits = nlen ? (CK_ULONG)(nlen * 8) : 0;
        for (uint8_t top = nlen ? n[0] : 0x80; nlen && !(top & 0x80); top <<= 1)
            bits--;
        if ((rv = buf_attr(as, CKA_MODULUS, n, nlen)) == CKR_OK &&
            (rv = p11_attrs_ulong(as, CKA_MODULUS_BITS, bits)) == CKR_OK)
            rv = buf_attr(as, CKA_PUBLIC_EXPONENT, eb + skip, sizeof(eb) - skip);
        goto out;
    }
    if (tk_public_ec_point(pub, pt, sizeof(pt), &ptlen) != TK_OK) {
        rv = p11_fail(TK_ERR_STORE, CKR_DEVICE_ERROR, "reading a key's public point");
        goto out;
    }
    if ((rv = p11_ec_params(alg, &params)) == CKR_OK &&
        (rv = ec_point_der(pt, ptlen, &der)) == CKR_OK &&
        (rv = buf_attr(as, CKA_EC_PARAMS, params.data, params.len)) == CKR_OK)
        rv = buf_attr(as, CKA_EC_POINT, der.data, der.len);
out:
    tk_buf_free(&spki);
    tk_buf_free(&params);
    tk_buf_free(&der);
    return rv;
}

/* Attributes every object of a key shares. */
static CK_RV common_attrs(p11_attrs *as, const tk_key *k, CK_OBJECT_CLASS cls, bool token,
                          bool priv, bool modifiable)
{
    CK_RV rv;
    if ((rv = p11_attrs_ulong(as, CKA_CLASS, cls)) ||
        (rv = p11_attrs_bool(as, CKA_TOKEN, token)) ||
        (rv = p11_attrs_bool(as, CKA_PRIVATE, priv)) ||
        (rv = p11_attrs_bool(as, CKA_MODIFIABLE, modifiable)) ||
        (rv = p11_attrs_bool(as, CKA_COPYABLE, false)) ||
        (rv = buf_attr(as, CKA_LABEL, (const uint8_t *)k->label, strlen(k->label))) ||
        (rv = buf_attr(as, CKA_ID, k->ckaid.data, k->ckaid.len)))
        return rv;
    return CKR_OK;
}

static CK_RV key_common_attrs(p11_attrs *as, const tk_key *k, CK_KEY_TYPE kt,
                              const key_caps *c)
{
    bool gen = k->origin == TK_ORIGIN_GENERATED;
    CK_MECHANISM_TYPE genmech = kt == CKK_RSA ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN;
    CK_RV rv;

    if ((rv = p11_attrs_ulong(as, CKA_KEY_TYPE, kt)) ||
        (rv = p11_attrs_set(as, CKA_START_DATE, NULL, 0)) ||
        (rv = p11_attrs_set(as, CKA_END_DATE, NULL, 0)) ||
        (rv = p11_attrs_bool(as, CKA_LOCAL, gen)) ||
        (rv = p11_attrs_ulong(as, CKA_KEY_GEN_MECHANISM,
                              gen ? genmech : CK_UNAVAILABLE_INFORMATION)) ||
        (rv = p11_attrs_set(as, CKA_ALLOWED_MECHANISMS, c->mechs,
                            c->nmechs * sizeof(c->mechs[0]))))
        return rv;
    return CKR_OK;
}

static CK_RV subject_attr(p11_attrs *as, const tk_key *k)
{
    const unsigned char *p = k->cert.data;
    X509 *x = k->cert.len ? d2i_X509(NULL, &p, (long)k->cert.len) : NULL;
    unsigned char *der = NULL;
    int len = x ? i2d_X509_NAME(X509_get_subject_name(x), &der) : 0;
    CK_RV rv = p11_attrs_set(as, CKA_SUBJECT, der, len > 0 ? (CK_ULONG)len : 0);
    OPENSSL_free(der);
    X509_free(x);
    return rv;
}

static CK_RV private_key_attrs(p11_attrs *as, const tk_key *k, CK_KEY_TYPE kt,
                               const key_caps *c, bool token, bool modifiable)
{
    bool gen = k->origin == TK_ORIGIN_GENERATED, rsa = kt == CKK_RSA;
    static const CK_ATTRIBUTE_TYPE rsa_secret[] = {
        CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2,
        CKA_COEFFICIENT,
    };
    CK_RV rv;

    if ((rv = common_attrs(as, k, CKO_PRIVATE_KEY, token, k->auth == TK_AUTH_TOKEN,
                           modifiable)) ||
        (rv = key_common_attrs(as, k, kt, c)) ||
        (rv = subject_attr(as, k)) ||
        (rv = p11_attrs_bool(as, CKA_DESTROYABLE, true)) ||
        (rv = p11_attrs_bool(as, CKA_SENSITIVE, true)) ||
        (rv = p11_attrs_bool(as, CKA_DECRYPT, c->decrypt)) ||
        (rv = p11_attrs_bool(as, CKA_SIGN, c->sign)) ||
        (rv = p11_attrs_bool(as, CKA_SIGN_RECOVER, false)) ||
        (rv = p11_attrs_bool(as, CKA_UNWRAP, false)) ||
        (rv = p11_attrs_bool(as, CKA_DERIVE, c->derive)) ||
        (rv = p11_attrs_bool(as, CKA_EXTRACTABLE, false)) ||
        (rv = p11_attrs_bool(as, CKA_ALWAYS_SENSITIVE, gen)) ||
        (rv = p11_attrs_bool(as, CKA_NEVER_EXTRACTABLE, gen)) ||
        (rv = p11_attrs_bool(as, CKA_WRAP_WITH_TRUSTED, false)) ||
        (rv = p11_attrs_bool(as, CKA_ALWAYS_AUTHENTICATE, false)))
        return rv;
    if (rsa) {
        for (size_t i = 0; i < sizeof(rsa_secret) / sizeof(rsa_secret[0]); i++)
            if ((rv = p11_attrs_sensitive(as, rsa_secret[i])) != CKR_OK)
                return rv;
        return CKR_OK;
    }
    return p11_attrs_sensitive(as, CKA_VALUE);
}

/* A public key mirrors its private key: it encrypts only what the private key can decrypt
 * and verifies what it can sign. */
static CK_RV public_key_attrs(p11_attrs *as, const tk_key *k, CK_KEY_TYPE kt,
                              const key_caps *c, bool token, bool modifiable)
{
    CK_RV rv;

    if ((rv = common_attrs(as, k, CKO_PUBLIC_KEY, token, false, modifiable)) ||
        (rv = key_common_attrs(as, k, kt, c)) ||
        (rv = subject_attr(as, k)) ||
        /* It goes with its private key: C_DestroyObject on the private key removes both. */
        (rv = p11_attrs_bool(as, CKA_DESTROYABLE, false)) ||
        (rv = p11_attrs_bool(as, CKA_ENCRYPT, c->decrypt)) ||
        (rv = p11_attrs_bool(as, CKA_VERIFY, c->sign)) ||
        (rv = p11_attrs_bool(as, CKA_VERIFY_RECOVER, false)) ||
        (rv = p11_attrs_bool(as, CKA_WRAP, false)) ||
        (rv = p11_attrs_bool(as, CKA_DERIVE, false)) ||
        (rv = p11_attrs_bool(as, CKA_TRUSTED, false)))
        return rv;
    return CKR_OK;
}

static CK_RV asn1_time_date(const ASN1_TIME *t, CK_DATE *d)
{
    struct tm tm;
    char buf[48];

    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return CKR_GENERAL_ERROR;
    snprintf(buf, sizeof(buf), "%04d%02d%02d", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1,
             tm.tm_mday);
    memcpy(d->year, buf, 4);
    memcpy(d->month, buf + 4, 2);
    memcpy(d->day, buf + 6, 2);
    return CKR_OK;
}

/* Certificate attributes from DER (token certificates and C_CreateObject). */
static CK_RV cert_attrs(p11_attrs *as, const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    unsigned char *b = NULL;
    uint8_t sha1[20];
    CK_DATE date;
    int n;
    CK_RV rv;

    if (!x || p != der + len) {
        X509_free(x);
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
#define DER_ATTR(type, expr)                                      \
    do {                                                          \
        b = NULL;                                                 \
        n = (expr);                                               \
        if (n < 0) {                                              \
            rv = CKR_HOST_MEMORY;                                 \
            goto out;                                             \
        }                                                         \
        rv = p11_attrs_set(as, type, b, (CK_ULONG)n);             \
        OPENSSL_free(b);                                          \
        if (rv != CKR_OK)                                         \
            goto out;                                             \
    } while (0)
    DER_ATTR(CKA_SUBJECT, i2d_X509_NAME(X509_get_subject_name(x), &b));
    DER_ATTR(CKA_ISSUER, i2d_X509_NAME(X509_get_issuer_name(x), &b));
    DER_ATTR(CKA_SERIAL_NUMBER, i2d_ASN1_INTEGER(X509_get_serialNumber(x), &b));
    DER_ATTR(CKA_PUBLIC_KEY_INFO, i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &b));
#undef DER_ATTR
    if ((rv = p11_attrs_set(as, CKA_VALUE, der, len)) ||
        (rv = p11_attrs_ulong(as, CKA_CERTIFICATE_TYPE, CKC_X_509)) ||
        (rv = p11_attrs_ulong(as, CKA_CERTIFICATE_CATEGORY, 0)) ||
        (rv = p11_attrs_set(as, CKA_URL, NULL, 0)) ||
        (rv = p11_attrs_set(as, CKA_HASH_OF_SUBJECT_PUBLIC_KEY, NULL, 0)) ||
        (rv = p11_attrs_set(as, CKA_HASH_OF_ISSUER_PUBLIC_KEY, NULL, 0)) ||
        (rv = p11_attrs_ulong(as, CKA_JAVA_MIDP_SECURITY_DOMAIN, 0)))
        goto out;
    if (!attrs_find(as, CKA_TRUSTED) && (rv = p11_attrs_bool(as, CKA_TRUSTED, false)))
        goto out;
    if (!EVP_Digest(der, len, sha1, NULL, EVP_sha1(), NULL)) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if ((rv = p11_attrs_set(as, CKA_CHECK_VALUE, sha1, 3)))
        goto out;
    if ((rv = asn1_time_date(X509_get0_notBefore(x), &date)) == CKR_OK)
        rv = p11_attrs_set(as, CKA_START_DATE, &date, sizeof(date));
    else
        rv = p11_attrs_set(as, CKA_START_DATE, NULL, 0);
    if (rv != CKR_OK)
        goto out;
    if ((rv = asn1_time_date(X509_get0_notAfter(x), &date)) == CKR_OK)
        rv = p11_attrs_set(as, CKA_END_DATE, &date, sizeof(date));
    else
        rv = p11_attrs_set(as, CKA_END_DATE, NULL, 0);
out:
    X509_free(x);
    return rv;
}

static CK_KEY_TYPE key_type_of(const tk_key *k)
{
    return tk_alg_type(k->alg) == TK_KEY_RSA ? CKK_RSA : CKK_EC;
}

void p11_object_free(p11_object *o)
{
    if (!o)
        return;
    p11_attrs_free(&o->attrs);
    tk_key_free(o->mem);
    free(o);
}

static CK_OBJECT_HANDLE token_handle(int64_t key_id, int kind)
{
    return ((CK_OBJECT_HANDLE)key_id << 2) | (CK_OBJECT_HANDLE)kind;
}

/* One view (kind) of a key as an object; token: a store row, else an in-memory key. */
static CK_RV key_object(const tk_key *k, int kind, bool token, bool modifiable,
                        p11_object **out)
{
    TPM2B_PUBLIC pub;
    p11_object *o = calloc(1, sizeof(*o));
    CK_KEY_TYPE kt = key_type_of(k);
    key_caps caps;
    CK_RV rv;

    if (!o)
        return CKR_HOST_MEMORY;
    o->token_id = k->token_id;
    o->key_id = token ? k->id : 0;
    o->kind = kind;
    o->handle = token ? token_handle(k->id, kind) : 0;
    o->key_type = kt;
    o->is_private = kind == P11_KIND_PRIV && k->auth == TK_AUTH_TOKEN;
    if (kind == P11_KIND_CERT) {
        o->cls = CKO_CERTIFICATE;
        if ((rv = common_attrs(&o->attrs, k, CKO_CERTIFICATE, token, false, modifiable)) ||
            (rv = p11_attrs_bool(&o->attrs, CKA_DESTROYABLE, true)) ||
            (rv = cert_attrs(&o->attrs, k->cert.data, k->cert.len)))
            goto out;
        *out = o;
        return CKR_OK;
    }
    o->cls = kind == P11_KIND_PRIV ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
    if (tk_public_unmarshal(&k->pub, &pub) != TK_OK) {
        rv = p11_fail(TK_ERR_STORE, CKR_DEVICE_ERROR, "reading a key's public part");
        goto out;
    }
    caps_of(&pub, kt, &caps);
    rv = kind == P11_KIND_PRIV ? private_key_attrs(&o->attrs, k, kt, &caps, token, modifiable)
                               : public_key_attrs(&o->attrs, k, kt, &caps, token, modifiable);
    if (rv == CKR_OK)
        rv = tpm_public_attrs(&o->attrs, &pub, k->alg);
out:
    if (rv != CKR_OK) {
        p11_object_free(o);
        return rv;
    }
    *out = o;
    return CKR_OK;
}

/* Attributes a lone public key shares with the public half of a store key. */
static CK_RV lone_pubkey_attrs(p11_attrs *as, const tk_obj *so, CK_KEY_TYPE *kt)
{
    const unsigned char *p = so->value.data;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)so->value.len);
    tk_key k = { .label = so->label, .ckaid = so->ckaid, .origin = TK_ORIGIN_IMPORTED };
    key_caps caps;
    CK_RV rv;

    if (!pkey)
        return CKR_DEVICE_ERROR;   /* the store checked it: cannot happen */
    if ((rv = pkey_key_type(pkey, kt)) == CKR_OK)
        caps_all(*kt, &caps);   /* no TPM key behind it: software does it all */
    if (rv == CKR_OK && (rv = public_key_attrs(as, &k, *kt, &caps, true, true)) == CKR_OK &&
        (rv = public_attrs(as, pkey)) == CKR_OK)
        rv = p11_attrs_bool(as, CKA_DESTROYABLE, true);   /* no private key to go with */
    EVP_PKEY_free(pkey);
    return rv;
}

/* A row of the store's objects table as an object. */
static CK_RV store_object(const tk_obj *so, bool modifiable, p11_object **out)
{
    static const CK_OBJECT_CLASS classes[] = {
        [TK_OBJ_DATA] = CKO_DATA, [TK_OBJ_CERT] = CKO_CERTIFICATE,
        [TK_OBJ_PUBKEY] = CKO_PUBLIC_KEY,
    };
    p11_object *o = calloc(1, sizeof(*o));
    tk_key k = { .label = so->label, .ckaid = so->ckaid };
    const char *app = so->application ? so->application : "";
    p11_attrs *as;
    CK_RV rv;

    if (!o)
        return CKR_HOST_MEMORY;
    as = &o->attrs;
    o->token_id = so->token_id;
    o->obj_id = so->id;
    o->kind = P11_KIND_OBJ;
    o->handle = P11_STORE_OBJ_BIT | (CK_OBJECT_HANDLE)so->id;
    o->cls = classes[so->cls];
    o->key_type = CK_UNAVAILABLE_INFORMATION;
    o->is_private = so->is_private;
    if (so->cls == TK_OBJ_PUBKEY) {
        rv = lone_pubkey_attrs(as, so, &o->key_type);
    } else if ((rv = common_attrs(as, &k, o->cls, true, false, true)) == CKR_OK &&
               (rv = p11_attrs_bool(as, CKA_DESTROYABLE, true)) == CKR_OK) {
        if (so->cls == TK_OBJ_CERT)
            rv = cert_attrs(as, so->value.data, so->value.len);
        else if ((rv = buf_attr(as, CKA_APPLICATION, (const uint8_t *)app, strlen(app))) ==
                     CKR_OK &&
                 (rv = buf_attr(as, CKA_OBJECT_ID, so->oid.data, so->oid.len)) == CKR_OK)
            rv = buf_attr(as, CKA_VALUE, so->value.data, so->value.len);
    }
    /* The shared helpers wrote the defaults for keys: these are ours. */
    if (rv == CKR_OK && (rv = p11_attrs_bool(as, CKA_PRIVATE, so->is_private)) == CKR_OK)
        rv = p11_attrs_bool(as, CKA_MODIFIABLE, modifiable);
    if (rv != CKR_OK) {
        p11_object_free(o);
        return rv;
    }
    *out = o;
    return CKR_OK;
}

/* The objects-table rows of the store (damaged or unshowable rows are left out). */
static CK_RV store_objects_load(tk_store *st, bool modifiable, p11_object ***objs, size_t *m)
{
    tk_obj **v = NULL;
    size_t n = 0, damaged = 0;
    p11_object **nv;
    CK_RV rv = CKR_OK;
    tk_rc rc;

    if ((rc = tk_obj_list(st, 0, &v, &n, &damaged)) != TK_OK)
        return p11_fail(rc, CKR_DEVICE_ERROR, "listing objects");
    if (n && !(nv = realloc(*objs, (*m + n + 1) * sizeof(*nv)))) {
        tk_obj_list_free(v, n);
        return CKR_HOST_MEMORY;
    } else if (n) {
        *objs = nv;
    }
    for (size_t i = 0; i < n && rv == CKR_OK; i++) {
        rv = store_object(v[i], modifiable, &(*objs)[*m]);
        if (rv == CKR_OK) {
            (*m)++;
        } else if (rv != CKR_HOST_MEMORY) {
            tk_warn("pkcs11: %s object '%s' (#%lld) cannot be shown (CK_RV 0x%lx)",
                    tk_obj_class_name(v[i]->cls), v[i]->label, (long long)v[i]->id,
                    (unsigned long)rv);
            rv = CKR_OK;
        }
    }
    tk_obj_list_free(v, n);
    return rv;
}

void p11_objects_free(void)
{
    for (size_t i = 0; i < p11.nobjs; i++)
        p11_object_free(p11.objs[i]);
    free(p11.objs);
    p11.objs = NULL;
    p11.nobjs = 0;
    for (size_t i = 0; i < p11.nsobjs; i++)
        p11_object_free(p11.sobjs[i]);
    free(p11.sobjs);
    p11.sobjs = NULL;
    p11.nsobjs = 0;
}

CK_RV p11_objects_load(tk_store *st)
{
    tk_key **keys = NULL;
    size_t n = 0, m = 0;
    p11_object **objs;
    bool modifiable = !tk_store_is_readonly(st);
    CK_RV rv = CKR_OK;
    tk_rc rc;

    if ((rc = tk_key_list(st, 0, &keys, &n)) != TK_OK)
        return p11_fail(rc, CKR_DEVICE_ERROR, "listing keys");
    objs = calloc(3 * n + 1, sizeof(*objs));
    if (!objs) {
        tk_key_list_free(keys, n);
        return CKR_HOST_MEMORY;
    }
    for (size_t i = 0; i < n && rv == CKR_OK; i++) {
        if (keys[i]->alg == TK_ALG_NONE)
            continue;   /* a row of a kind this module does not know */
        rv = key_object(keys[i], P11_KIND_PRIV, true, modifiable, &objs[m]);
        if (rv == CKR_OK)
            rv = key_object(keys[i], P11_KIND_PUB, true, modifiable, &objs[++m]);
        if (rv == CKR_OK)
            m++;
        if (rv == CKR_OK && keys[i]->cert.len) {
            /* A certificate that does not parse is left out, not fatal for the token. */
            if (key_object(keys[i], P11_KIND_CERT, true, modifiable, &objs[m]) == CKR_OK)
                m++;
            else
                tk_warn("pkcs11: key '%s' has a certificate that does not parse",
                        keys[i]->label);
        }
    }
    tk_key_list_free(keys, n);
    if (rv == CKR_OK)
        rv = store_objects_load(st, modifiable, &objs, &m);
    if (rv != CKR_OK) {
        for (size_t i = 0; i < m; i++)
            p11_object_free(objs[i]);
        free(objs);
        return rv;
    }
    for (size_t i = 0; i < p11.nobjs; i++)
        p11_object_free(p11.objs[i]);
    free(p11.objs);
    p11.objs = objs;
    p11.nobjs = m;
    return CKR_OK;
}

/* ------------------------------------------------------------------ lookup */

bool p11_object_visible(const p11_object *o, p11_session *s)
{
    if (o->token_id != s->token_id)
        return false;
    return !o->is_private || p11_user_logged_in(s->token_id);
}

static p11_object *object_find(CK_OBJECT_HANDLE h, size_t *index, bool *session_obj)
{
    p11_object **list = (h & P11_SESSION_OBJ_BIT) ? p11.sobjs : p11.objs;
    size_t n = (h & P11_SESSION_OBJ_BIT) ? p11.nsobjs : p11.nobjs;

    for (size_t i = 0; i < n; i++) {
        if (list[i]->handle == h) {
            if (index)
                *index = i;
            if (session_obj)
                *session_obj = (h & P11_SESSION_OBJ_BIT) != 0;
            return list[i];
        }
    }
    return NULL;
}

p11_object *p11_object_get(p11_session *s, CK_OBJECT_HANDLE h)
{
    p11_object *o = object_find(h, NULL, NULL);
    return o && p11_object_visible(o, s) ? o : NULL;
}

void p11_session_objects_drop(CK_SESSION_HANDLE owner)
{
    size_t j = 0;
    for (size_t i = 0; i < p11.nsobjs; i++) {
        if (p11.sobjs[i]->owner == owner)
            p11_object_free(p11.sobjs[i]);
        else
            p11.sobjs[j++] = p11.sobjs[i];
    }
    p11.nsobjs = j;
}

CK_RV p11_session_object_add(p11_session *s, p11_object *o, CK_OBJECT_HANDLE *h)
{
    p11_object **l = realloc(p11.sobjs, (p11.nsobjs + 1) * sizeof(*l));
    if (!l)
        return CKR_HOST_MEMORY;
    p11.sobjs = l;
    o->owner = s->handle;
    o->token_id = s->token_id;
    o->handle = P11_SESSION_OBJ_BIT | p11.next_sobj++;
    l[p11.nsobjs++] = o;
    *h = o->handle;
    return CKR_OK;
}

CK_RV p11_object_key(const p11_object *o, tk_key **out)
{
    tk_rc rc;

    if (o->mem) {
        tk_key *k = calloc(1, sizeof(*k));
        if (!k || !(k->label = strdup(o->mem->label)) ||
            tk_buf_set(&k->pub, o->mem->pub.data, o->mem->pub.len) != TK_OK ||
            tk_buf_set(&k->priv, o->mem->priv.data, o->mem->priv.len) != TK_OK ||
            tk_buf_set(&k->ckaid, o->mem->ckaid.data, o->mem->ckaid.len) != TK_OK) {
            tk_key_free(k);
            return CKR_HOST_MEMORY;
        }
        k->token_id = o->mem->token_id;
        k->alg = o->mem->alg;
        k->auth = o->mem->auth;
        k->parent = o->mem->parent;
        k->origin = o->mem->origin;
        *out = k;
        return CKR_OK;
    }
    if (!o->key_id)
        return CKR_KEY_TYPE_INCONSISTENT;
    if ((rc = tk_key_get(tk_ks_store(p11.ks), o->key_id, out)) != TK_OK) {
        if (rc == TK_ERR_NOT_FOUND) {
            p11.dirty = true;   /* deleted by another process */
            return CKR_KEY_HANDLE_INVALID;
        }
        return p11_fail(rc, CKR_DEVICE_ERROR, "reading a key");
    }
    return CKR_OK;
}

/* ------------------------------------------------------------------ EVP_PKEY from attributes */

static BIGNUM *attr_bn(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool secret)
{
    const CK_ATTRIBUTE *a = p11_tmpl_find(t, n, type);
    BIGNUM *bn;

    if (!a || !a->pValue || !a->ulValueLen)
        return NULL;
    bn = secret ? BN_secure_new() : BN_new();
    if (bn && !BN_bin2bn(a->pValue, (int)a->ulValueLen, bn)) {
        BN_clear_free(bn);
        bn = NULL;
    }
    return bn;
}

static CK_RV pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld, bool priv, EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, out, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) > 0)
        rv = CKR_OK;
    if (rv != CKR_OK)
        tk_fail_ossl(TK_ERR_INVALID, "building the key from its attributes");
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);   /* the secure part is cleared */
    return rv;
}

static CK_RV rsa_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, bool priv, EVP_PKEY **out)
{
    static const CK_ATTRIBUTE_TYPE types[] = {
        CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
        CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT,
    };
    static const char *names[] = {
        OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
        OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2,
        OSSL_PKEY_PARAM_RSA_EXPONENT1, OSSL_PKEY_PARAM_RSA_EXPONENT2,
        OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
    };
    BIGNUM *bn[8] = { 0 };
    size_t need = priv ? 5 : 2, count = priv ? 8 : 2;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    CK_RV rv = CKR_OK;

    if (!bld)
        return CKR_HOST_MEMORY;
    for (size_t i = 0; i < count; i++) {
        bn[i] = attr_bn(t, n, types[i], i >= 2);
        if (!bn[i] && i < need) {
            rv = CKR_TEMPLATE_INCOMPLETE;
            goto out;
        }
    }
    /* The CRT values come all together or not at all. */
    if (priv && (!bn[5] || !bn[6] || !bn[7]))
        count = 5;
    for (size_t i = 0; i < count; i++) {
        if (!OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i])) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
    }
    rv = pkey_fromdata("RSA", bld, priv, out);
out:
    for (size_t i = 0; i < 8; i++)
        BN_clear_free(bn[i]);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

/* The public point of a private scalar (software, at import time only). */
static CK_RV ec_public_of(const char *group_name, const BIGNUM *d, uint8_t *pt, size_t *ptlen)
{
    EC_GROUP *g = EC_GROUP_new_by_curve_name(OBJ_sn2nid(group_name) != NID_undef
                                                 ? OBJ_sn2nid(group_name)
                                                 : EC_curve_nist2nid(group_name));
    EC_POINT *p = g ? EC_POINT_new(g) : NULL;
    size_t len;
    CK_RV rv = CKR_ATTRIBUTE_VALUE_INVALID;

    if (p && EC_POINT_mul(g, p, d, NULL, NULL, NULL) &&
        (len = EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pt, *ptlen, NULL))) {
        *ptlen = len;
        rv = CKR_OK;
    }
    EC_POINT_free(p);
    EC_GROUP_free(g);
    return rv;
}

static CK_RV ec_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, bool priv, EVP_PKEY **out)
{
    const CK_ATTRIBUTE *params = p11_tmpl_find(t, n, CKA_EC_PARAMS);
    const CK_ATTRIBUTE *point = p11_tmpl_find(t, n, CKA_EC_POINT);
    uint8_t pt[1 + 2 * 66];
    size_t ptlen = sizeof(pt);
    const uint8_t *raw = NULL;
    BIGNUM *d = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    const char *group;
    CK_RV rv;

    if (!params || !params->pValue)
        return CKR_TEMPLATE_INCOMPLETE;
    group = alg_group_name(p11_alg_from_ec_params(params->pValue, params->ulValueLen));
    if (!group)
        return CKR_CURVE_NOT_SUPPORTED;
    if (priv) {
        if (!(d = attr_bn(t, n, CKA_VALUE, true)))
            return CKR_TEMPLATE_INCOMPLETE;
        if ((rv = ec_public_of(group, d, pt, &ptlen)) != CKR_OK)
            goto out;
        raw = pt;
    } else {
        if (!point || !point->pValue)
            return CKR_TEMPLATE_INCOMPLETE;
        if (!ec_point_raw(point->pValue, point->ulValueLen, &raw, &ptlen))
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    if (!(bld = OSSL_PARAM_BLD_new()) ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, raw, ptlen) ||
        (d && !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    rv = pkey_fromdata("EC", bld, priv, out);
out:
    OPENSSL_cleanse(pt, sizeof(pt));
    BN_clear_free(d);
    OSSL_PARAM_BLD_free(bld);
    return rv;
}

CK_RV p11_pkey_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, CK_KEY_TYPE kt, bool priv,
                             EVP_PKEY **out)
{
    if (kt == CKK_RSA)
        return rsa_from_template(t, n, priv, out);
    if (kt == CKK_EC)
        return ec_from_template(t, n, priv, out);
    return CKR_KEY_TYPE_INCONSISTENT;
}

CK_RV p11_object_pkey(const p11_object *o, EVP_PKEY **out)
{
    CK_ATTRIBUTE t[4];
    CK_ULONG n = 0;
    static const CK_ATTRIBUTE_TYPE types[] = {
        CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT,
    };

    if (o->cls != CKO_PUBLIC_KEY && o->cls != CKO_PRIVATE_KEY)
        return CKR_KEY_TYPE_INCONSISTENT;
    for (size_t i = 0; i < 4; i++) {
        const p11_attr *a = attrs_find(&o->attrs, types[i]);
        if (a && !a->sensitive) {
            t[n].type = a->type;
            t[n].pValue = a->val;
            t[n].ulValueLen = a->len;
            n++;
        }
    }
    return p11_pkey_from_template(t, n, o->key_type, false, out);
}

/* ------------------------------------------------------------------ find */

static bool attr_matches(const p11_object *o, const CK_ATTRIBUTE *t)
{
    const p11_attr *a = attrs_find(&o->attrs, t->type);
    if (!a || a->sensitive || a->len != t->ulValueLen)
        return false;
    return !a->len || (t->pValue && !memcmp(a->val, t->pValue, a->len));
}

static bool object_matches(const p11_object *o, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    for (CK_ULONG i = 0; i < n; i++)
        if (!attr_matches(o, &t[i]))
            return false;
    return true;
}

static CK_RV found_add(p11_session *s, size_t *cap, CK_OBJECT_HANDLE h)
{
    if (s->nfound == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        CK_OBJECT_HANDLE *f = realloc(s->found, nc * sizeof(*f));
        if (!f)
            return CKR_HOST_MEMORY;
        s->found = f;
        *cap = nc;
    }
    s->found[s->nfound++] = h;
    return CKR_OK;
}

CK_RV C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
    p11_session *s;
    size_t cap = 0;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
        goto out;
    }
    if (!t && n) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (s->finding) {
        rv = CKR_OPERATION_ACTIVE;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK)
        goto out;
    free(s->found);
    s->found = NULL;
    s->nfound = s->found_pos = 0;
    for (size_t i = 0; i < p11.nobjs && rv == CKR_OK; i++)
        if (p11_object_visible(p11.objs[i], s) && object_matches(p11.objs[i], t, n))
            rv = found_add(s, &cap, p11.objs[i]->handle);
    for (size_t i = 0; i < p11.nsobjs && rv == CKR_OK; i++)
        if (p11_object_visible(p11.sobjs[i], s) && object_matches(p11.sobjs[i], t, n))
            rv = found_add(s, &cap, p11.sobjs[i]->handle);
    if (rv == CKR_OK)
        s->finding = true;
out:
    p11_leave();
    return rv;
}

CK_RV C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out, CK_ULONG max,
                    CK_ULONG_PTR count)
{
    p11_session *s;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (!count || (!out && max)) {
        rv = CKR_ARGUMENTS_BAD;
    } else if (!s->finding) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else {
        CK_ULONG k = 0;
        while (k < max && s->found_pos < s->nfound)
            out[k++] = s->found[s->found_pos++];
        *count = k;
    }
    p11_leave();
    return rv;
}

CK_RV C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
    p11_session *s;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (!s->finding) {
        rv = CKR_OPERATION_NOT_INITIALIZED;
    } else {
        s->finding = false;
        free(s->found);
        s->found = NULL;
        s->nfound = s->found_pos = 0;
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ attributes */

static CK_RV object_for(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, p11_session **s,
                        p11_object **o)
{
    CK_RV rv;

    if (!(*s = p11_session_get(h)))
        return CKR_SESSION_HANDLE_INVALID;
    if ((rv = p11_refresh()) != CKR_OK)
        return rv;
    if (!(*o = p11_object_get(*s, oh)))
        return CKR_OBJECT_HANDLE_INVALID;
    return CKR_OK;
}

CK_RV C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR t,
                          CK_ULONG n)
{
    p11_session *s;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = object_for(h, oh, &s, &o)) != CKR_OK)
        goto out;
    if (!t && n) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        const p11_attr *a = attrs_find(&o->attrs, t[i].type);
        if (!a) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_ATTRIBUTE_TYPE_INVALID;
        } else if (a->sensitive) {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_ATTRIBUTE_SENSITIVE;
        } else if (!t[i].pValue) {
            t[i].ulValueLen = a->len;
        } else if (t[i].ulValueLen >= a->len) {
            if (a->len)
                memcpy(t[i].pValue, a->val, a->len);
            t[i].ulValueLen = a->len;
        } else {
            t[i].ulValueLen = CK_UNAVAILABLE_INFORMATION;
            rv = CKR_BUFFER_TOO_SMALL;
        }
    }
out:
    p11_leave();
    return rv;
}

CK_RV C_GetObjectSize(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ULONG_PTR size)
{
    p11_session *s;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = object_for(h, oh, &s, &o)) == CKR_OK) {
        if (!size) {
            rv = CKR_ARGUMENTS_BAD;
        } else {
            /* The TPM blobs a key costs in the store, or the attribute bytes. */
            CK_ULONG total = 0;
            for (size_t i = 0; i < o->attrs.n; i++)
                total += o->attrs.a[i].len;
            *size = total;
        }
    }
    p11_leave();
    return rv;
}

/* The CKA_LABEL (a new string, or NULL) and CKA_ID (or NULL) a template sets. */
static CK_RV template_label_id(const CK_ATTRIBUTE *t, CK_ULONG n, char **label,
                               const CK_ATTRIBUTE **id)
{
    CK_RV rv;

    *label = NULL;
    *id = p11_tmpl_find(t, n, CKA_ID);
    if ((rv = p11_tmpl_string(t, n, CKA_LABEL, label)) != CKR_OK)
        return rv;
    if (*id && !(*id)->pValue && (*id)->ulValueLen) {
        free(*label);
        *label = NULL;
        return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

/* CKA_LABEL / CKA_ID of a store key from a template, written back to the store. */
CK_RV p11_key_apply_template(tk_key *k, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    const CK_ATTRIBUTE *id;
    char *label;
    tk_rc rc;
    CK_RV rv;

    if ((rv = template_label_id(t, n, &label, &id)) != CKR_OK)
        return rv;
    if (!label && !id)
        return CKR_OK;
    if (label) {
        if (!*label) {
            free(label);
            return CKR_ATTRIBUTE_VALUE_INVALID;   /* the store names every key */
        }
        free(k->label);
        k->label = label;
    }
    if (id && tk_buf_set(&k->ckaid, id->pValue, id->ulValueLen) != TK_OK)
        return CKR_HOST_MEMORY;
    if ((rc = tk_key_update(tk_ks_store(p11.ks), k)) != TK_OK) {
        if (rc == TK_ERR_EXISTS)   /* the label is taken in this token */
            return p11_fail_as(rc, CKR_ATTRIBUTE_VALUE_INVALID, "updating the key");
        return p11_fail(rc, CKR_ATTRIBUTE_VALUE_INVALID, "updating the key");
    }
    return CKR_OK;
}

/* CKA_LABEL / CKA_ID of a row of the objects table. */
static CK_RV store_object_apply_template(const p11_object *o, const CK_ATTRIBUTE *t, CK_ULONG n)
{
    const CK_ATTRIBUTE *id;
    tk_obj *so = NULL;
    char *label;
    tk_rc rc;
    CK_RV rv;

    if ((rv = template_label_id(t, n, &label, &id)) != CKR_OK)
        return rv;
    if (!label && !id)
        return CKR_OK;
    if ((rc = tk_obj_get(tk_ks_store(p11.ks), o->obj_id, &so)) != TK_OK) {
        free(label);
        p11.dirty = true;
        return rc == TK_ERR_NOT_FOUND ? CKR_OBJECT_HANDLE_INVALID
                                      : p11_fail(rc, CKR_DEVICE_ERROR, "reading the object");
    }
    if (label) {
        free(so->label);
        so->label = label;
    }
    if (id && tk_buf_set(&so->ckaid, id->pValue, id->ulValueLen) != TK_OK)
        rv = CKR_HOST_MEMORY;
    else if ((rc = tk_obj_update(tk_ks_store(p11.ks), so)) != TK_OK)
        rv = p11_fail(rc, CKR_ATTRIBUTE_VALUE_INVALID, "updating the object");
    p11.dirty = true;
    tk_obj_free(so);
    return rv;
}

/* Whether a template only restates what the object already has. */
static bool template_unchanged(const p11_object *o, const CK_ATTRIBUTE *t, CK_ULONG n,
                               CK_ATTRIBUTE_TYPE skip1, CK_ATTRIBUTE_TYPE skip2,
                               CK_ATTRIBUTE_TYPE *bad)
{
    for (CK_ULONG i = 0; i < n; i++) {
        if (t[i].type == skip1 || t[i].type == skip2)
            continue;
        if (!attr_matches(o, &t[i])) {
            *bad = t[i].type;
            return false;
        }
    }
    return true;
}

CK_RV C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR t,
                          CK_ULONG n)
{
    p11_session *s;
    p11_object *o;
    tk_key *k = NULL;
    CK_ATTRIBUTE_TYPE bad = 0;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = object_for(h, oh, &s, &o)) != CKR_OK)
        goto out;
    if (!t && n) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (!attrs_true(&o->attrs, CKA_MODIFIABLE)) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (o->owner) {
        /* Session objects: any attribute but the class and the token flag. */
        for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
            if (t[i].type == CKA_CLASS || t[i].type == CKA_TOKEN || t[i].type == CKA_KEY_TYPE ||
                t[i].type == CKA_PRIVATE)
                rv = attr_matches(o, &t[i]) ? CKR_OK : CKR_ATTRIBUTE_READ_ONLY;
            else if (!t[i].pValue && t[i].ulValueLen)
                rv = CKR_ATTRIBUTE_VALUE_INVALID;
        }
        for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++)
            rv = p11_attrs_set(&o->attrs, t[i].type, t[i].pValue, t[i].ulValueLen);
        goto out;
    }
    /* Token objects: the label and the CKA_ID of the key (all its objects share them). */
    if (!template_unchanged(o, t, n, CKA_LABEL, CKA_ID, &bad)) {
        tk_info("pkcs11: attribute 0x%lx cannot be changed (only CKA_LABEL and CKA_ID)",
                (unsigned long)bad);
        rv = CKR_ATTRIBUTE_READ_ONLY;
        goto out;
    }
    if ((rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    if (o->kind == P11_KIND_OBJ) {
        rv = store_object_apply_template(o, t, n);
        goto out;
    }
    if ((rv = p11_object_key(o, &k)) != CKR_OK)
        goto out;
    rv = p11_key_apply_template(k, t, n);
    p11.dirty = true;
out:
    tk_key_free(k);
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ create / destroy */

/* A certificate, lone public key or data object kept in the store's objects table. */
static CK_RV create_store_object(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                 tk_obj_class cls, bool priv, CK_OBJECT_HANDLE *out)
{
    const CK_ATTRIBUTE *id = p11_tmpl_find(t, n, CKA_ID);
    const CK_ATTRIBUTE *val = p11_tmpl_find(t, n, CKA_VALUE);
    const CK_ATTRIBUTE *oid = p11_tmpl_find(t, n, CKA_OBJECT_ID);
    tk_obj *so = calloc(1, sizeof(*so));
    EVP_PKEY *pkey = NULL;
    CK_ULONG kt = CK_UNAVAILABLE_INFORMATION;
    CK_KEY_TYPE real_kt;
    unsigned char *spki = NULL;
    int spkilen;
    tk_rc rc;
    CK_RV rv;

    if (!so)
        return CKR_HOST_MEMORY;
    so->token_id = s->token_id;
    so->cls = cls;
    so->is_private = priv;
    if ((rv = p11_tmpl_string(t, n, CKA_LABEL, &so->label)) != CKR_OK ||
        (rv = p11_tmpl_string(t, n, CKA_APPLICATION, &so->application)) != CKR_OK)
        goto out;
    if ((id && !id->pValue && id->ulValueLen) || (val && !val->pValue && val->ulValueLen) ||
        (oid && !oid->pValue && oid->ulValueLen)) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
    }
    if (cls != TK_OBJ_DATA && (so->application || oid)) {
        rv = CKR_TEMPLATE_INCONSISTENT;   /* attributes of data objects only */
        goto out;
    }
    if ((!so->label && !(so->label = strdup(""))) ||
        (id && tk_buf_set(&so->ckaid, id->pValue, id->ulValueLen) != TK_OK) ||
        (oid && tk_buf_set(&so->oid, oid->pValue, oid->ulValueLen) != TK_OK)) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (cls == TK_OBJ_PUBKEY) {
        /* Stored as SubjectPublicKeyInfo: the attributes are derived from it again. */
        if ((rv = p11_tmpl_ulong(t, n, CKA_KEY_TYPE, &kt)) != CKR_OK)
            goto out;
        if (kt != CKK_RSA && kt != CKK_EC) {
            rv = kt == CK_UNAVAILABLE_INFORMATION ? CKR_TEMPLATE_INCOMPLETE
                                                  : CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
        if ((rv = p11_pkey_from_template(t, n, kt, false, &pkey)) != CKR_OK ||
            (rv = pkey_key_type(pkey, &real_kt)) != CKR_OK)
            goto out;
        if ((spkilen = i2d_PUBKEY(pkey, &spki)) <= 0) {
            rv = CKR_HOST_MEMORY;
            goto out;
        }
        rc = tk_buf_set(&so->value, spki, (size_t)spkilen);
        OPENSSL_free(spki);
    } else {
        if (cls == TK_OBJ_CERT) {
            CK_ULONG ctype = CKC_X_509;
            if ((rv = p11_tmpl_ulong(t, n, CKA_CERTIFICATE_TYPE, &ctype)) != CKR_OK)
                goto out;
            if (ctype != CKC_X_509) {
                rv = CKR_ATTRIBUTE_VALUE_INVALID;   /* only X.509 */
                goto out;
            }
            if (!val || !val->ulValueLen) {
                rv = CKR_TEMPLATE_INCOMPLETE;
                goto out;
            }
        }
        rc = val ? tk_buf_set(&so->value, val->pValue, val->ulValueLen) : TK_OK;
    }
    if (rc != TK_OK) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if ((rc = tk_obj_add(tk_ks_store(p11.ks), so)) != TK_OK) {
        rv = p11_fail(rc, CKR_ATTRIBUTE_VALUE_INVALID, "storing the object");
        goto out;
    }
    p11.dirty = true;
    *out = P11_STORE_OBJ_BIT | (CK_OBJECT_HANDLE)so->id;
out:
    EVP_PKEY_free(pkey);
    tk_obj_free(so);
    return rv;
}

/* A certificate for the store: it joins the key with the same CKA_ID (or, without an
 * id, the key whose public key it certifies) when that key has none yet; otherwise it
 * is an object of its own. */
static CK_RV create_token_cert(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n, bool priv,
                               CK_OBJECT_HANDLE *out)
{
    const CK_ATTRIBUTE *val = p11_tmpl_find(t, n, CKA_VALUE);
    const CK_ATTRIBUTE *id = p11_tmpl_find(t, n, CKA_ID);
    p11_attrs tmp = { 0 };
    const p11_attr *spki;
    p11_object *match = NULL;
    tk_key *k = NULL;
    CK_ULONG ctype = CKC_X_509;
    CK_RV rv;

    if ((rv = p11_tmpl_ulong(t, n, CKA_CERTIFICATE_TYPE, &ctype)) != CKR_OK)
        return rv;
    if (ctype != CKC_X_509)
        return CKR_ATTRIBUTE_VALUE_INVALID;   /* only X.509 */
    if (!val || !val->pValue || !val->ulValueLen)
        return CKR_TEMPLATE_INCOMPLETE;
    if ((rv = cert_attrs(&tmp, val->pValue, val->ulValueLen)) != CKR_OK)
        goto out;
    spki = attrs_find(&tmp, CKA_PUBLIC_KEY_INFO);
    for (size_t i = 0; i < p11.nobjs; i++) {
        p11_object *o = p11.objs[i];
        if (o->kind != P11_KIND_PUB || o->token_id != s->token_id)
            continue;
        const p11_attr *oid = attrs_find(&o->attrs, CKA_ID);
        const p11_attr *ospki = attrs_find(&o->attrs, CKA_PUBLIC_KEY_INFO);
        bool same_key = spki && ospki && spki->len == ospki->len &&
                        !memcmp(spki->val, ospki->val, spki->len);
        bool same_id = id && oid && oid->len == id->ulValueLen &&
                       (!oid->len || !memcmp(oid->val, id->pValue, oid->len));
        if (id ? same_id : same_key) {
            match = o;
            break;
        }
    }
    /* A private certificate or one with a label of its own is kept as it was asked for. */
    const CK_ATTRIBUTE *lbl = p11_tmpl_find(t, n, CKA_LABEL);
    const p11_attr *klbl = match ? attrs_find(&match->attrs, CKA_LABEL) : NULL;
    if (match && (priv || (lbl && klbl && (lbl->ulValueLen != klbl->len ||
                                           (klbl->len && memcmp(lbl->pValue, klbl->val,
                                                                klbl->len))))))
        match = NULL;
    if (match && (rv = p11_object_key(match, &k)) != CKR_OK)
        goto out;
    if (!match || k->cert.len) {
        rv = create_store_object(s, t, n, TK_OBJ_CERT, priv, out);
        goto out;
    }
    if (tk_buf_set(&k->cert, val->pValue, val->ulValueLen) != TK_OK) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    tk_rc rc = tk_key_update(tk_ks_store(p11.ks), k);
    if (rc != TK_OK) {
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "storing the certificate");
        goto out;
    }
    p11.dirty = true;
    *out = token_handle(k->id, P11_KIND_CERT);
out:
    p11_attrs_free(&tmp);
    tk_key_free(k);
    return rv;
}

/* A private key imported into the TPM (TPM2_Import) and kept in the store. */
static CK_RV create_token_private_key(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                      CK_KEY_TYPE kt, bool private, CK_OBJECT_HANDLE *out)
{
    EVP_PKEY *pkey = NULL;
    tk_key *k = NULL;
    char *label = NULL;
    tk_rc rc;
    CK_RV rv;

    if ((rv = p11_tmpl_string(t, n, CKA_LABEL, &label)) != CKR_OK)
        return rv;
    if ((!label || !*label)) {
        free(label);
        if (!(label = p11_new_label()))
            return CKR_HOST_MEMORY;
    }
    if ((rv = p11_pkey_from_template(t, n, kt, true, &pkey)) != CKR_OK)
        goto out;
    rc = tk_ks_import_pkey(p11.ks, s->token_id, label, pkey,
                           private ? TK_AUTH_TOKEN : TK_AUTH_NONE, &k);
    if (rc != TK_OK) {
        /* TK_ERR_EXISTS: the label is taken in this token (the store names keys uniquely). */
        rv = rc == TK_ERR_EXISTS
                 ? p11_fail_as(rc, CKR_ATTRIBUTE_VALUE_INVALID, "importing the private key")
                 : p11_fail(rc, CKR_ATTRIBUTE_VALUE_INVALID, "importing the private key");
        goto out;
    }
    p11.dirty = true;
    if (p11_tmpl_find(t, n, CKA_ID) && (rv = p11_key_apply_template(k, t, n)) != CKR_OK)
        goto out;
    *out = token_handle(k->id, P11_KIND_PRIV);
out:
    EVP_PKEY_free(pkey);   /* frees (and clears) the key material */
    tk_key_free(k);
    free(label);
    return rv;
}

/* Attributes a template may not set on a key object of ours. */
static CK_RV check_key_policy(const CK_ATTRIBUTE *t, CK_ULONG n)
{
    bool v;
    CK_RV rv;

    v = true;
    if ((rv = p11_tmpl_bool(t, n, CKA_SENSITIVE, &v)) != CKR_OK)
        return rv;
    if (!v)
        return CKR_ATTRIBUTE_VALUE_INVALID;   /* TPM keys are always sensitive */
    v = false;
    if ((rv = p11_tmpl_bool(t, n, CKA_EXTRACTABLE, &v)) != CKR_OK)
        return rv;
    if (v)
        return CKR_ATTRIBUTE_VALUE_INVALID;   /* and never leave the TPM */
    v = false;
    if ((rv = p11_tmpl_bool(t, n, CKA_ALWAYS_AUTHENTICATE, &v)) != CKR_OK)
        return rv;
    return v ? CKR_ATTRIBUTE_VALUE_INVALID : CKR_OK;
}

/* Session objects: public keys, certificates, data and secret values in memory. */
CK_RV p11_session_object_create(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out)
{
    p11_object *o = calloc(1, sizeof(*o));
    CK_ULONG kt = CK_UNAVAILABLE_INFORMATION;
    bool priv = false, sensitive = false, extractable = true;
    EVP_PKEY *pkey = NULL;
    CK_RV rv;

    if (!o)
        return CKR_HOST_MEMORY;
    o->cls = cls;
    if ((rv = p11_tmpl_ulong(t, n, CKA_KEY_TYPE, &kt)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_PRIVATE, &priv)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_SENSITIVE, &sensitive)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_EXTRACTABLE, &extractable)) != CKR_OK)
        goto out;
    for (CK_ULONG i = 0; i < n && rv == CKR_OK; i++) {
        if (!t[i].pValue && t[i].ulValueLen)
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
        else
            rv = p11_attrs_set(&o->attrs, t[i].type, t[i].pValue, t[i].ulValueLen);
    }
    if (rv != CKR_OK)
        goto out;
    o->key_type = kt;
    o->is_private = priv;
    if (cls == CKO_PUBLIC_KEY) {
        /* Must describe a usable key (it may verify and encrypt). */
        if (kt != CKK_RSA && kt != CKK_EC) {
            rv = kt == CK_UNAVAILABLE_INFORMATION ? CKR_TEMPLATE_INCOMPLETE
                                                  : CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
        if ((rv = p11_object_pkey(o, &pkey)) != CKR_OK)
            goto out;
        if (!attrs_find(&o->attrs, CKA_VERIFY))
            rv = p11_attrs_bool(&o->attrs, CKA_VERIFY, true);
        if (rv == CKR_OK && !attrs_find(&o->attrs, CKA_ENCRYPT))
            rv = p11_attrs_bool(&o->attrs, CKA_ENCRYPT, kt == CKK_RSA);
    } else if (cls == CKO_CERTIFICATE) {
        const CK_ATTRIBUTE *val = p11_tmpl_find(t, n, CKA_VALUE);
        if (!val || !val->ulValueLen)
            rv = CKR_TEMPLATE_INCOMPLETE;
        else
            rv = cert_attrs(&o->attrs, val->pValue, val->ulValueLen);
    } else if (cls == CKO_SECRET_KEY) {
        const p11_attr *val = attrs_find(&o->attrs, CKA_VALUE);
        if (!val)
            rv = CKR_TEMPLATE_INCOMPLETE;
        else if ((rv = p11_attrs_ulong(&o->attrs, CKA_VALUE_LEN, val->len)) == CKR_OK &&
                 (sensitive || !extractable))
            attrs_find(&o->attrs, CKA_VALUE)->sensitive = true;
    }
    if (rv != CKR_OK)
        goto out;
    if ((rv = p11_attrs_bool(&o->attrs, CKA_TOKEN, false)) ||
        (!attrs_find(&o->attrs, CKA_PRIVATE) &&
         (rv = p11_attrs_bool(&o->attrs, CKA_PRIVATE, priv))) ||
        (!attrs_find(&o->attrs, CKA_MODIFIABLE) &&
         (rv = p11_attrs_bool(&o->attrs, CKA_MODIFIABLE, true))) ||
        (!attrs_find(&o->attrs, CKA_DESTROYABLE) &&
         (rv = p11_attrs_bool(&o->attrs, CKA_DESTROYABLE, true))) ||
        (!attrs_find(&o->attrs, CKA_LABEL) && (rv = p11_attrs_set(&o->attrs, CKA_LABEL, "", 0))))
        goto out;
    if (priv && !p11_user_logged_in(s->token_id)) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    rv = p11_session_object_add(s, o, out);
out:
    EVP_PKEY_free(pkey);
    if (rv != CKR_OK)
        p11_object_free(o);
    return rv;
}

/* A session private key: imported into the TPM, its blobs kept in memory only. */
static CK_RV create_session_private_key(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                        CK_KEY_TYPE kt, CK_OBJECT_HANDLE *out)
{
    EVP_PKEY *pkey = NULL;
    tk_key *k = calloc(1, sizeof(*k));
    p11_object *o = NULL;
    TPM2B_PUBLIC pub;
    char *label = NULL;
    const CK_ATTRIBUTE *id = p11_tmpl_find(t, n, CKA_ID);
    tk_rc rc;
    CK_RV rv;

    if (!k)
        return CKR_HOST_MEMORY;
    if ((rv = p11_tmpl_string(t, n, CKA_LABEL, &label)) != CKR_OK)
        goto out;
    k->label = label ? label : strdup("");
    k->token_id = s->token_id;
    k->auth = TK_AUTH_NONE;
    k->origin = TK_ORIGIN_IMPORTED;
    k->parent = TK_SRK_HANDLE;
    if (!k->label || (id && tk_buf_set(&k->ckaid, id->pValue, id->ulValueLen) != TK_OK)) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if ((rv = p11_pkey_from_template(t, n, kt, true, &pkey)) != CKR_OK)
        goto out;
    rc = tk_tpm_import_pkey(tk_ks_tpm(p11.ks), pkey, NULL, &k->pub, &k->priv);
    if (rc == TK_OK)
        rc = tk_public_unmarshal(&k->pub, &pub);
    if (rc != TK_OK) {
        rv = p11_fail(rc, CKR_ATTRIBUTE_VALUE_INVALID, "importing the private key");
        goto out;
    }
    k->alg = tk_alg_from_public(&pub);
    if ((rv = key_object(k, P11_KIND_PRIV, false, true, &o)) != CKR_OK)
        goto out;
    o->mem = k;
    k = NULL;
    o->is_private = false;
    rv = p11_session_object_add(s, o, out);
    if (rv == CKR_OK)
        o = NULL;
out:
    EVP_PKEY_free(pkey);
    tk_key_free(k);
    p11_object_free(o);
    return rv;
}

CK_RV C_CreateObject(CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                     CK_OBJECT_HANDLE_PTR out)
{
    p11_session *s;
    CK_ULONG cls = CK_UNAVAILABLE_INFORMATION, kt = CK_UNAVAILABLE_INFORMATION;
    bool token = false, priv = true;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
        goto out;
    }
    if (!out || (!t && n)) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK)
        goto out;
    if (!s->token_id) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    if ((rv = p11_tmpl_ulong(t, n, CKA_CLASS, &cls)) != CKR_OK ||
        (rv = p11_tmpl_ulong(t, n, CKA_KEY_TYPE, &kt)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_TOKEN, &token)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_PRIVATE, &priv)) != CKR_OK)
        goto out;
    if (cls == CK_UNAVAILABLE_INFORMATION) {
        rv = CKR_TEMPLATE_INCOMPLETE;
        goto out;
    }
    if (token && (rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    switch (cls) {
    case CKO_PRIVATE_KEY:
        if (kt != CKK_RSA && kt != CKK_EC) {
            rv = kt == CK_UNAVAILABLE_INFORMATION ? CKR_TEMPLATE_INCOMPLETE
                                                  : CKR_ATTRIBUTE_VALUE_INVALID;
            break;
        }
        if ((rv = check_key_policy(t, n)) != CKR_OK)
            break;
        if (priv && !p11_user_logged_in(s->token_id)) {
            rv = CKR_USER_NOT_LOGGED_IN;
            break;
        }
        rv = token ? create_token_private_key(s, t, n, kt, priv, out)
                   : create_session_private_key(s, t, n, kt, out);
        break;
    case CKO_CERTIFICATE:
    case CKO_PUBLIC_KEY:
    case CKO_DATA:
        if (!token) {
            rv = p11_session_object_create(s, t, n, (CK_OBJECT_CLASS)cls, out);
            break;
        }
        /* Storage objects other than private keys are public unless asked otherwise. */
        priv = false;
        if ((rv = p11_tmpl_bool(t, n, CKA_PRIVATE, &priv)) != CKR_OK)
            break;
        if (priv && !p11_user_logged_in(s->token_id)) {
            rv = CKR_USER_NOT_LOGGED_IN;
            break;
        }
        if (cls == CKO_CERTIFICATE)
            rv = create_token_cert(s, t, n, priv, out);
        else
            rv = create_store_object(s, t, n, cls == CKO_DATA ? TK_OBJ_DATA : TK_OBJ_PUBKEY,
                                     priv, out);
        break;
    case CKO_SECRET_KEY:
        if (token) {
            /* The TPM keeps asymmetric keys only; a clear secret is not stored. */
            tk_info("pkcs11: this token cannot store secret-key objects; create them with "
                    "CKA_TOKEN false");
            rv = CKR_TEMPLATE_INCONSISTENT;
            break;
        }
        rv = p11_session_object_create(s, t, n, (CK_OBJECT_CLASS)cls, out);
        break;
    default:
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    }
out:
    p11_leave();
    return rv;
}

CK_RV C_CopyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                   CK_OBJECT_HANDLE_PTR out)
{
    p11_session *s;
    p11_object *o;
    CK_RV rv;

    (void)t, (void)n;
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = object_for(h, oh, &s, &o)) == CKR_OK)
        rv = out ? CKR_ACTION_PROHIBITED : CKR_ARGUMENTS_BAD;   /* CKA_COPYABLE false */
    p11_leave();
    return rv;
}

/* Keys this module destroyed: the companion public-key and certificate objects went with
 * the private key (one store row), and destroying them afterwards is not an error
 * (pkcs11-tool, p11tool and NSS destroy both halves of a pair). */
static int64_t *gone;
static size_t ngone;

static void gone_add(int64_t key_id)
{
    int64_t *g = realloc(gone, (ngone + 1) * sizeof(*g));
    if (g) {
        gone = g;
        gone[ngone++] = key_id;
    }
}

static bool gone_companion(CK_OBJECT_HANDLE oh)
{
    int kind = (int)(oh & 3);
    if ((oh & (P11_SESSION_OBJ_BIT | P11_STORE_OBJ_BIT)) ||
        (kind != P11_KIND_PUB && kind != P11_KIND_CERT))
        return false;
    for (size_t i = 0; i < ngone; i++)
        if (gone[i] == (int64_t)(oh >> 2))
            return true;
    return false;
}

void p11_destroyed_free(void)
{
    free(gone);
    gone = NULL;
    ngone = 0;
}

CK_RV C_DestroyObject(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE oh)
{
    p11_session *s;
    p11_object *o;
    size_t idx = 0;
    bool sess = false;
    tk_key *k = NULL;
    tk_rc rc = TK_OK;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = object_for(h, oh, &s, &o)) != CKR_OK) {
        if (rv == CKR_OBJECT_HANDLE_INVALID && gone_companion(oh))
            rv = CKR_OK;
        goto out;
    }
    object_find(oh, &idx, &sess);
    if (!attrs_true(&o->attrs, CKA_DESTROYABLE)) {
        rv = CKR_ACTION_PROHIBITED;
        goto out;
    }
    if (sess) {
        p11_object_free(o);
        p11.sobjs[idx] = p11.sobjs[--p11.nsobjs];
        goto out;
    }
    if ((rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    if (o->kind == P11_KIND_OBJ) {
        rc = tk_obj_delete(tk_ks_store(p11.ks), o->obj_id);
    } else if (o->kind == P11_KIND_PRIV) {
        if ((rc = tk_key_delete(tk_ks_store(p11.ks), o->key_id)) == TK_OK)
            gone_add(o->key_id);
    } else if (o->kind == P11_KIND_CERT) {
        if ((rv = p11_object_key(o, &k)) != CKR_OK)
            goto out;
        tk_buf_free(&k->cert);
        rc = tk_key_update(tk_ks_store(p11.ks), k);
    }
    p11.dirty = true;
    if (rc != TK_OK)
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "deleting the object");
out:
    tk_key_free(k);
    p11_leave();
    return rv;
}

CK_RV p11_session_keypair_add(p11_session *s, tk_key *k, bool is_private,
                              CK_OBJECT_HANDLE *hpub, CK_OBJECT_HANDLE *hpriv)
{
    p11_object *pub = NULL, *priv = NULL;
    CK_RV rv;

    if ((rv = key_object(k, P11_KIND_PUB, false, true, &pub)) != CKR_OK ||
        (rv = key_object(k, P11_KIND_PRIV, false, true, &priv)) != CKR_OK ||
        (rv = p11_attrs_bool(&priv->attrs, CKA_PRIVATE, is_private)) != CKR_OK)
        goto fail;
    priv->mem = k;
    priv->is_private = is_private;
    k = NULL;
    if ((rv = p11_session_object_add(s, pub, hpub)) != CKR_OK)
        goto fail;
    pub = NULL;
    if ((rv = p11_session_object_add(s, priv, hpriv)) != CKR_OK) {
        /* Take the public half back out: the pair comes whole or not at all. */
        p11_object_free(p11.sobjs[--p11.nsobjs]);
        goto fail;
    }
    return CKR_OK;
fail:
    tk_key_free(k);
    p11_object_free(pub);
    p11_object_free(priv);
    return rv;
}
