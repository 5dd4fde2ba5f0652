/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TPM structures <-> OpenSSL: marshalling of public/private blobs, public areas as
 * EVP_PKEYs, object names, signatures, key templates and the public/sensitive areas
 * of software keys that are about to be imported.  Pure code: no TPM, no store.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/x509.h>
#include <openssl/param_build.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

/* ------------------------------------------------------------------ small helpers */

/* The digests, fetched once per process: EVP_sha256() and friends are fetched again from
 * the provider on every use (a hash table walk and locks per digest on OpenSSL 3.0),
 * which costs more than hashing a key blob. */
static EVP_MD *mds[4];
static pthread_once_t mds_once = PTHREAD_ONCE_INIT;

static void mds_fetch(void)
{
    static const char *const names[4] = { "SHA1", "SHA2-256", "SHA2-384", "SHA2-512" };
    for (size_t i = 0; i < 4; i++)
        mds[i] = EVP_MD_fetch(NULL, names[i], NULL);
    ERR_clear_error();   /* a digest the providers lack: the legacy lookup below says so */
}

const EVP_MD *tk_md_for_alg(TPM2_ALG_ID hash)
{
    size_t i;

    switch (hash) {
    case TPM2_ALG_SHA1: i = 0; break;
    case TPM2_ALG_SHA256: i = 1; break;
    case TPM2_ALG_SHA384: i = 2; break;
    case TPM2_ALG_SHA512: i = 3; break;
    default: return NULL;
    }
    pthread_once(&mds_once, mds_fetch);
    if (mds[i])
        return mds[i];
    switch (hash) {
    case TPM2_ALG_SHA1: return EVP_sha1();
    case TPM2_ALG_SHA256: return EVP_sha256();
    case TPM2_ALG_SHA384: return EVP_sha384();
    default: return EVP_sha512();
    }
}

static const struct {
    TPM2_ECC_CURVE curve;
    const char *group;
    int nid;
    size_t bytes;
} curves[] = {
    { TPM2_ECC_NIST_P256, "P-256", NID_X9_62_prime256v1, 32 },
    { TPM2_ECC_NIST_P384, "P-384", NID_secp384r1, 48 },
    { TPM2_ECC_NIST_P521, "P-521", NID_secp521r1, 66 },
};
#define NCURVES (sizeof(curves) / sizeof(curves[0]))

const char *tk_curve_group(TPM2_ECC_CURVE curve)
{
    for (size_t i = 0; i < NCURVES; i++)
        if (curves[i].curve == curve)
            return curves[i].group;
    return NULL;
}

int tk_curve_nid(TPM2_ECC_CURVE curve)
{
    for (size_t i = 0; i < NCURVES; i++)
        if (curves[i].curve == curve)
            return curves[i].nid;
    return NID_undef;
}

size_t tk_curve_bytes(TPM2_ECC_CURVE curve)
{
    for (size_t i = 0; i < NCURVES; i++)
        if (curves[i].curve == curve)
            return curves[i].bytes;
    return 0;
}

TPM2_ECC_CURVE tk_curve_from_group(const char *group)
{
    int nid;

    if (!group)
        return TPM2_ECC_NONE;
    nid = OBJ_txt2nid(group);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    for (size_t i = 0; i < NCURVES; i++)
        if (curves[i].nid == nid)
            return curves[i].curve;
    return TPM2_ECC_NONE;
}

tk_rc tk_bn_to_fixed(const BIGNUM *bn, uint8_t *out, size_t len, const char *what)
{
    if (BN_is_negative(bn) || (size_t)BN_num_bytes(bn) > len)
        return tk_fail(TK_ERR_INVALID, "%s does not fit in %zu bytes", what, len);
    if (BN_bn2binpad(bn, out, (int)len) != (int)len)
        return tk_fail_ossl(TK_ERR_INVALID, what);
    return TK_OK;
}

static const char *mu_text(TSS2_RC rc)
{
    return Tss2_RC_Decode(rc);
}

/* ------------------------------------------------------------------ marshalling */

tk_rc tk_public_marshal(const TPM2B_PUBLIC *pub, tk_buf *out)
{
    uint8_t buf[sizeof(TPM2B_PUBLIC)];
    size_t off = 0;
    TSS2_RC rc;

    if (!pub || !out)
        return tk_fail(TK_ERR_INVALID, "tk_public_marshal: missing argument");
    rc = Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off);
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "cannot marshal TPM2B_PUBLIC: %s", mu_text(rc));
    return tk_buf_set(out, buf, off);
}

tk_rc tk_private_marshal(const TPM2B_PRIVATE *priv, tk_buf *out)
{
    uint8_t buf[sizeof(TPM2B_PRIVATE)];
    size_t off = 0;
    TSS2_RC rc;

    if (!priv || !out)
        return tk_fail(TK_ERR_INVALID, "tk_private_marshal: missing argument");
    rc = Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off);
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "cannot marshal TPM2B_PRIVATE: %s", mu_text(rc));
    return tk_buf_set(out, buf, off);
}

tk_rc tk_public_unmarshal(const tk_buf *b, TPM2B_PUBLIC *pub)
{
    TPM2B_PUBLIC tmp;
    size_t off = 0;
    TSS2_RC rc;

    if (!b || !pub)
        return tk_fail(TK_ERR_INVALID, "tk_public_unmarshal: missing argument");
    if (!b->data || b->len < 2)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PUBLIC is empty");
    memset(&tmp, 0, sizeof(tmp));
    rc = Tss2_MU_TPM2B_PUBLIC_Unmarshal(b->data, b->len, &off, &tmp);
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "malformed TPM2B_PUBLIC (%zu bytes): %s", b->len,
                       mu_text(rc));
    if (off != b->len)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PUBLIC is followed by %zu unexpected bytes",
                       b->len - off);
    if (tmp.size == 0)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PUBLIC is empty");
    if ((size_t)tmp.size + 2 != b->len)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PUBLIC size field %u does not match its %zu bytes",
                       tmp.size, b->len - 2);
    *pub = tmp;
    return TK_OK;
}

tk_rc tk_private_unmarshal(const tk_buf *b, TPM2B_PRIVATE *priv)
{
    TPM2B_PRIVATE tmp;
    size_t off = 0;
    TSS2_RC rc;

    if (!b || !priv)
        return tk_fail(TK_ERR_INVALID, "tk_private_unmarshal: missing argument");
    if (!b->data || b->len < 2)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PRIVATE is empty");
    memset(&tmp, 0, sizeof(tmp));
    rc = Tss2_MU_TPM2B_PRIVATE_Unmarshal(b->data, b->len, &off, &tmp);
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "malformed TPM2B_PRIVATE (%zu bytes): %s", b->len,
                       mu_text(rc));
    if (off != b->len)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PRIVATE is followed by %zu unexpected bytes",
                       b->len - off);
    if (tmp.size == 0)
        return tk_fail(TK_ERR_INVALID, "TPM2B_PRIVATE is empty");
    *priv = tmp;
    return TK_OK;
}

/* ------------------------------------------------------------------ public area -> EVP_PKEY */

static tk_rc pkey_from_params(const char *type, OSSL_PARAM_BLD *bld, int selection,
                              EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    tk_rc rc = TK_OK;

    if (!params)
        return tk_fail_ossl(TK_ERR_NOMEM, "cannot build key parameters");
    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, selection, params) <= 0)
        rc = tk_fail_ossl(TK_ERR_INVALID, "OpenSSL refused the key parameters");
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (rc == TK_OK)
        *out = pkey;
    return rc;
}

static tk_rc rsa_public_to_pkey(const TPMT_PUBLIC *p, EVP_PKEY **out)
{
    const TPM2B_PUBLIC_KEY_RSA *n = &p->unique.rsa;
    uint32_t e = p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537;
    OSSL_PARAM_BLD *bld = NULL;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    tk_rc rc;

    if (n->size == 0 || n->size > sizeof(n->buffer))
        return tk_fail(TK_ERR_INVALID, "RSA public area has no modulus");
    if ((unsigned)n->size * 8 != p->parameters.rsaDetail.keyBits)
        return tk_fail(TK_ERR_INVALID, "RSA modulus is %u bytes for a %u-bit key", n->size,
                       p->parameters.rsaDetail.keyBits);
    bn_n = BN_bin2bn(n->buffer, n->size, NULL);
    bn_e = BN_new();
    bld = OSSL_PARAM_BLD_new();
    if (!bn_n || !bn_e || !bld || !BN_set_word(bn_e, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "cannot build an RSA public key");
        goto out;
    }
    rc = pkey_from_params("RSA", bld, EVP_PKEY_PUBLIC_KEY, out);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

static tk_rc ecc_public_to_pkey(const TPMT_PUBLIC *p, EVP_PKEY **out)
{
    TPM2_ECC_CURVE curve = p->parameters.eccDetail.curveID;
    const char *group = tk_curve_group(curve);
    size_t cb = tk_curve_bytes(curve);
    const TPMS_ECC_POINT *q = &p->unique.ecc;
    uint8_t point[1 + 2 * TPM2_MAX_ECC_KEY_BYTES];
    OSSL_PARAM_BLD *bld;
    tk_rc rc;

    if (!group)
        return tk_fail(TK_ERR_UNSUPPORTED, "ECC curve 0x%04x is not supported (only NIST "
                       "P-256, P-384 and P-521)", curve);
    if (q->x.size == 0 || q->y.size == 0)
        return tk_fail(TK_ERR_INVALID, "ECC public area has no public point");
    if (q->x.size > cb || q->y.size > cb)
        return tk_fail(TK_ERR_INVALID, "ECC point coordinates are longer than the %s curve",
                       group);
    /* Uncompressed point, each coordinate left-padded to the curve size. */
    memset(point, 0, sizeof(point));
    point[0] = 0x04;
    memcpy(point + 1 + cb - q->x.size, q->x.buffer, q->x.size);
    memcpy(point + 1 + 2 * cb - q->y.size, q->y.buffer, q->y.size);
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * cb)) {
        OSSL_PARAM_BLD_free(bld);
        return tk_fail_ossl(TK_ERR_NOMEM, "cannot build an EC public key");
    }
    rc = pkey_from_params("EC", bld, EVP_PKEY_PUBLIC_KEY, out);
    OSSL_PARAM_BLD_free(bld);
    if (rc != TK_OK)
        return tk_fail_ctx(rc, "ECC public point is not on the %s curve", group);
    return rc;
}

tk_rc tk_public_to_pkey(const TPM2B_PUBLIC *pub, EVP_PKEY **out)
{
    if (!pub || !out)
        return tk_fail(TK_ERR_INVALID, "tk_public_to_pkey: missing argument");
    switch (pub->publicArea.type) {
    case TPM2_ALG_RSA:
        return rsa_public_to_pkey(&pub->publicArea, out);
    case TPM2_ALG_ECC:
        return ecc_public_to_pkey(&pub->publicArea, out);
    default:
        return tk_fail(TK_ERR_UNSUPPORTED, "TPM object type 0x%04x is not an RSA or ECC key",
                       pub->publicArea.type);
    }
}

/* ------------------------------------------------------------------ public parts, directly */

tk_rc tk_public_ec_point(const TPM2B_PUBLIC *pub, uint8_t *out, size_t outsize, size_t *len)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    size_t cb = tk_curve_bytes(p->parameters.eccDetail.curveID);
    const TPMS_ECC_POINT *q = &p->unique.ecc;

    if (p->type != TPM2_ALG_ECC || !cb)
        return tk_fail(TK_ERR_UNSUPPORTED, "not an ECC key on NIST P-256, P-384 or P-521");
    if (!q->x.size || !q->y.size || q->x.size > cb || q->y.size > cb)
        return tk_fail(TK_ERR_INVALID, "ECC public area has no valid public point");
    if (outsize < 1 + 2 * cb)
        return tk_fail(TK_ERR_INVALID, "tk_public_ec_point: buffer too small");
    memset(out, 0, 1 + 2 * cb);
    out[0] = 0x04;
    memcpy(out + 1 + cb - q->x.size, q->x.buffer, q->x.size);
    memcpy(out + 1 + 2 * cb - q->y.size, q->y.buffer, q->y.size);
    *len = 1 + 2 * cb;
    return TK_OK;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1). */
static tk_rc rsa_public_der(const TPMT_PUBLIC *p, unsigned char **der, int *len)
{
    uint32_t e = p->parameters.rsaDetail.exponent ? p->parameters.rsaDetail.exponent : 65537;
    BIGNUM *n = BN_bin2bn(p->unique.rsa.buffer, p->unique.rsa.size, NULL);
    BIGNUM *eb = BN_new();
    STACK_OF(ASN1_TYPE) *seq = sk_ASN1_TYPE_new_null();
    tk_rc rc = TK_OK;

    *der = NULL;
    for (int i = 0; i < 2 && rc == TK_OK; i++) {
        ASN1_TYPE *t = ASN1_TYPE_new();
        ASN1_INTEGER *v = NULL;
        if (!n || !eb || !seq || !t || (i == 1 && !BN_set_word(eb, e)) ||
            !(v = BN_to_ASN1_INTEGER(i ? eb : n, NULL))) {
            ASN1_TYPE_free(t);
            rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding an RSA public key");
            break;
        }
        ASN1_TYPE_set(t, V_ASN1_INTEGER, v);
        if (!sk_ASN1_TYPE_push(seq, t)) {
            ASN1_TYPE_free(t);
            rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding an RSA public key");
        }
    }
    if (rc == TK_OK && (*len = i2d_ASN1_SEQUENCE_ANY(seq, der)) <= 0)
        rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding an RSA public key");
    sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
    BN_free(n);
    BN_free(eb);
    return rc;
}

tk_rc tk_public_spki(const TPM2B_PUBLIC *pub, tk_buf *out)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    X509_PUBKEY *xpk = X509_PUBKEY_new();
    unsigned char *key = NULL, *der = NULL;
    uint8_t pt[1 + 2 * TPM2_MAX_ECC_KEY_BYTES];
    size_t ptlen = 0;
    int keylen = 0, len;
    tk_rc rc = xpk ? TK_OK : tk_fail(TK_ERR_NOMEM, "out of memory");

    if (rc == TK_OK && p->type == TPM2_ALG_RSA) {
        if (!p->unique.rsa.size)
            rc = tk_fail(TK_ERR_INVALID, "RSA public area has no modulus");
        else if ((rc = rsa_public_der(p, &key, &keylen)) == TK_OK &&
                 !X509_PUBKEY_set0_param(xpk, OBJ_nid2obj(NID_rsaEncryption), V_ASN1_NULL,
                                         NULL, key, keylen))
            rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding an RSA public key");
        else
            key = NULL;  /* xpk owns it */
    } else if (rc == TK_OK) {
        const char *group = tk_curve_group(p->parameters.eccDetail.curveID);
        int nid = !group ? NID_undef : !strcmp(group, "P-256") ? NID_X9_62_prime256v1
                  : !strcmp(group, "P-384") ? NID_secp384r1 : NID_secp521r1;
        if ((rc = tk_public_ec_point(pub, pt, sizeof(pt), &ptlen)) == TK_OK &&
            !(key = OPENSSL_memdup(pt, ptlen)))
            rc = tk_fail(TK_ERR_NOMEM, "out of memory");
        if (rc == TK_OK &&
            !X509_PUBKEY_set0_param(xpk, OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                                    OBJ_nid2obj(nid), key, (int)ptlen))
            rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding an EC public key");
        else if (rc == TK_OK)
            key = NULL;
    }
    if (rc == TK_OK && ((len = i2d_X509_PUBKEY(xpk, &der)) <= 0 ||
                        tk_buf_set(out, der, (size_t)len) != TK_OK))
        rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding a SubjectPublicKeyInfo");
    OPENSSL_free(der);
    OPENSSL_free(key);
    X509_PUBKEY_free(xpk);
    return rc;
}

/* ------------------------------------------------------------------ names */

tk_rc tk_public_name(const TPM2B_PUBLIC *pub, TPM2B_NAME *name)
{
    uint8_t buf[sizeof(TPMT_PUBLIC)];
    TPM2B_NAME n;
    size_t off = 0;
    unsigned int dlen = 0;
    const EVP_MD *md;
    TPM2_ALG_ID alg;
    TSS2_RC rc;

    if (!pub || !name)
        return tk_fail(TK_ERR_INVALID, "tk_public_name: missing argument");
    alg = pub->publicArea.nameAlg;
    md = tk_md_for_alg(alg);
    if (!md)
        return tk_fail(TK_ERR_UNSUPPORTED, "name algorithm 0x%04x is not supported", alg);
    rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, buf, sizeof(buf), &off);
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "cannot marshal the public area: %s", mu_text(rc));
    n.name[0] = (uint8_t)(alg >> 8);
    n.name[1] = (uint8_t)alg;
    if (!EVP_Digest(buf, off, n.name + 2, &dlen, md, NULL))
        return tk_fail_ossl(TK_ERR_INVALID, "cannot hash the public area");
    n.size = (UINT16)(2 + dlen);
    *name = n;
    return TK_OK;
}

/* ------------------------------------------------------------------ signatures */

static tk_rc ecdsa_der(const TPMS_SIGNATURE_ECDSA *e, tk_buf *out)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(e->signatureR.buffer, e->signatureR.size, NULL);
    BIGNUM *s = BN_bin2bn(e->signatureS.buffer, e->signatureS.size, NULL);
    unsigned char *der = NULL;
    int len;
    tk_rc rc;

    if (!sig || !r || !s || !ECDSA_SIG_set0(sig, r, s)) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return tk_fail_ossl(TK_ERR_NOMEM, "cannot build an ECDSA signature");
    }
    len = i2d_ECDSA_SIG(sig, &der);
    ECDSA_SIG_free(sig);
    if (len <= 0)
        return tk_fail_ossl(TK_ERR_INVALID, "cannot DER-encode the ECDSA signature");
    rc = tk_buf_set(out, der, (size_t)len);
    OPENSSL_free(der);
    return rc;
}

/* Copy a big-endian value into len bytes, left-padded; leading zero bytes may be dropped. */
static bool put_fixed(const uint8_t *v, size_t vlen, uint8_t *out, size_t len)
{
    while (vlen > len && *v == 0) {
        v++;
        vlen--;
    }
    if (vlen > len)
        return false;
    memset(out, 0, len - vlen);
    memcpy(out + len - vlen, v, vlen);
    return true;
}

static tk_rc ecdsa_raw(const TPMS_SIGNATURE_ECDSA *e, int coord_bytes, tk_buf *out)
{
    uint8_t buf[2 * TPM2_MAX_ECC_KEY_BYTES];
    size_t cb = (size_t)coord_bytes;

    if (coord_bytes <= 0 || cb > TPM2_MAX_ECC_KEY_BYTES)
        return tk_fail(TK_ERR_INVALID, "invalid ECDSA coordinate size %d", coord_bytes);
    if (!put_fixed(e->signatureR.buffer, e->signatureR.size, buf, cb) ||
        !put_fixed(e->signatureS.buffer, e->signatureS.size, buf + cb, cb))
        return tk_fail(TK_ERR_INVALID, "ECDSA signature values are longer than %d bytes",
                       coord_bytes);
    return tk_buf_set(out, buf, 2 * cb);
}

tk_rc tk_sig_to_bytes(const TPMT_SIGNATURE *sig, int coord_bytes, bool der, tk_buf *out)
{
    if (!sig || !out)
        return tk_fail(TK_ERR_INVALID, "tk_sig_to_bytes: missing argument");
    switch (sig->sigAlg) {
    case TPM2_ALG_RSASSA:
        return tk_buf_set(out, sig->signature.rsassa.sig.buffer, sig->signature.rsassa.sig.size);
    case TPM2_ALG_RSAPSS:
        return tk_buf_set(out, sig->signature.rsapss.sig.buffer, sig->signature.rsapss.sig.size);
    case TPM2_ALG_ECDSA:
        if (sig->signature.ecdsa.signatureR.size == 0 || sig->signature.ecdsa.signatureS.size == 0)
            return tk_fail(TK_ERR_INVALID, "ECDSA signature has an empty r or s");
        return der ? ecdsa_der(&sig->signature.ecdsa, out)
                   : ecdsa_raw(&sig->signature.ecdsa, coord_bytes, out);
    default:
        return tk_fail(TK_ERR_UNSUPPORTED, "signature scheme 0x%04x is not supported",
                       sig->sigAlg);
    }
}

/* ------------------------------------------------------------------ templates */

/* Attributes of every tpmkeys key; generated keys add sensitiveDataOrigin and the
 * fixedTPM/fixedParent pair (TPM2_Import refuses objects with those two set). */
#define TK_KEY_ATTRS (TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT | \
                      TPMA_OBJECT_DECRYPT)
#define TK_GENERATED_ATTRS (TK_KEY_ATTRS | TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | \
                            TPMA_OBJECT_SENSITIVEDATAORIGIN)

static void rsa_shape(TPMT_PUBLIC *p, TPMA_OBJECT attrs, uint16_t bits, uint32_t exponent)
{
    memset(p, 0, sizeof(*p));
    p->type = TPM2_ALG_RSA;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = attrs;
    p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    p->parameters.rsaDetail.keyBits = bits;
    p->parameters.rsaDetail.exponent = exponent;
}

static void ecc_shape(TPMT_PUBLIC *p, TPMA_OBJECT attrs, TPM2_ECC_CURVE curve)
{
    memset(p, 0, sizeof(*p));
    p->type = TPM2_ALG_ECC;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = attrs;
    p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p->parameters.eccDetail.curveID = curve;
    p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
}

/* Set pub->size to the marshalled size of its public area. */
static tk_rc public_set_size(TPM2B_PUBLIC *pub)
{
    uint8_t buf[sizeof(TPMT_PUBLIC)];
    size_t off = 0;
    TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub->publicArea, buf, sizeof(buf), &off);

    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "cannot marshal the public area: %s", mu_text(rc));
    pub->size = (UINT16)off;
    return TK_OK;
}

tk_rc tk_template_for(tk_alg alg, TPM2B_PUBLIC *tmpl)
{
    return tk_template_for_opts(alg, NULL, tmpl);
}

static bool is_sig_hash(TPM2_ALG_ID h)
{
    return h == TPM2_ALG_SHA1 || h == TPM2_ALG_SHA256 || h == TPM2_ALG_SHA384 ||
           h == TPM2_ALG_SHA512;
}

TPM2_ALG_ID tk_public_pss_hash(const TPM2B_PUBLIC *pub)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    if (p->type != TPM2_ALG_RSA || p->parameters.rsaDetail.scheme.scheme != TPM2_ALG_RSAPSS)
        return 0;
    return p->parameters.rsaDetail.scheme.details.rsapss.hashAlg;
}

tk_rc tk_template_for_opts(tk_alg alg, const tk_keygen_opts *opts, TPM2B_PUBLIC *tmpl)
{
    TPM2B_PUBLIC t;
    tk_rc rc;

    if (!tmpl)
        return tk_fail(TK_ERR_INVALID, "tk_template_for: missing argument");
    memset(&t, 0, sizeof(t));
    switch (alg) {
    case TK_ALG_RSA2048:
        rsa_shape(&t.publicArea, TK_GENERATED_ATTRS, 2048, 0);
        break;
    case TK_ALG_RSA3072:
        rsa_shape(&t.publicArea, TK_GENERATED_ATTRS, 3072, 0);
        break;
    case TK_ALG_RSA4096:
        rsa_shape(&t.publicArea, TK_GENERATED_ATTRS, 4096, 0);
        break;
    case TK_ALG_ECC_P256:
        ecc_shape(&t.publicArea, TK_GENERATED_ATTRS, TPM2_ECC_NIST_P256);
        break;
    case TK_ALG_ECC_P384:
        ecc_shape(&t.publicArea, TK_GENERATED_ATTRS, TPM2_ECC_NIST_P384);
        break;
    case TK_ALG_ECC_P521:
        ecc_shape(&t.publicArea, TK_GENERATED_ATTRS, TPM2_ECC_NIST_P521);
        break;
    default:
        return tk_fail(TK_ERR_UNSUPPORTED, "unknown key algorithm %d", (int)alg);
    }
    if (opts && opts->rsa_pss_hash) {
        /* A signing scheme is allowed only on keys that do not also decrypt. */
        if (t.publicArea.type != TPM2_ALG_RSA)
            return tk_fail(TK_ERR_INVALID, "only RSA keys can be restricted to RSA-PSS");
        if (!is_sig_hash(opts->rsa_pss_hash))
            return tk_fail(TK_ERR_UNSUPPORTED, "RSA-PSS keys hash with SHA-1 or SHA-2");
        t.publicArea.objectAttributes &= ~TPMA_OBJECT_DECRYPT;
        t.publicArea.parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSAPSS;
        t.publicArea.parameters.rsaDetail.scheme.details.rsapss.hashAlg = opts->rsa_pss_hash;
    }
    rc = public_set_size(&t);
    if (rc == TK_OK)
        *tmpl = t;
    return rc;
}

/* ------------------------------------------------------------------ software key -> TPM */

static tk_rc get_bn(EVP_PKEY *pkey, const char *param, BIGNUM **bn, const char *what)
{
    *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, param, bn) || !*bn) {
        ERR_clear_error();
        return tk_fail(TK_ERR_INVALID, "the key has no %s", what);
    }
    return TK_OK;
}

static tk_rc rsa_to_tpm(EVP_PKEY *pkey, TPMT_PUBLIC *p, TPMT_SENSITIVE *s)
{
    BIGNUM *n = NULL, *e = NULL, *prime = NULL;
    int bits = EVP_PKEY_get_bits(pkey);
    size_t nbytes = (size_t)bits / 8;
    uint32_t exponent;
    tk_rc rc;

    if (bits != 1024 && bits != 2048 && bits != 3072 && bits != 4096)
        return tk_fail(TK_ERR_UNSUPPORTED, "RSA key of %d bits: a TPM holds RSA keys of 1024, "
                       "2048, 3072 or 4096 bits", bits);
    if ((rc = get_bn(pkey, OSSL_PKEY_PARAM_RSA_N, &n, "RSA modulus")) != TK_OK ||
        (rc = get_bn(pkey, OSSL_PKEY_PARAM_RSA_E, &e, "RSA public exponent")) != TK_OK ||
        (rc = get_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1, &prime, "RSA prime factors")) != TK_OK)
        goto out;
    if (BN_num_bits(e) > 32 || !BN_is_odd(e) || BN_is_one(e)) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "RSA public exponent must be odd, above 1 and below "
                     "2^32 for a TPM");
        goto out;
    }
    exponent = (uint32_t)BN_get_word(e);
    rsa_shape(p, TK_KEY_ATTRS, (uint16_t)bits, exponent == 65537 ? 0 : exponent);
    if ((rc = tk_bn_to_fixed(n, p->unique.rsa.buffer, nbytes, "RSA modulus")) != TK_OK)
        goto out;
    p->unique.rsa.size = (UINT16)nbytes;
    /* The TPM takes one prime of exactly half the modulus size. */
    s->sensitiveType = TPM2_ALG_RSA;
    if (BN_num_bytes(prime) > (int)(nbytes / 2)) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "RSA primes are unbalanced (longer than half the "
                     "modulus): a TPM cannot hold this key");
        goto out;
    }
    if ((rc = tk_bn_to_fixed(prime, s->sensitive.rsa.buffer, nbytes / 2, "RSA prime")) != TK_OK)
        goto out;
    s->sensitive.rsa.size = (UINT16)(nbytes / 2);
out:
    BN_free(n);
    BN_free(e);
    BN_clear_free(prime);
    return rc;
}

static tk_rc ecc_to_tpm(EVP_PKEY *pkey, TPMT_PUBLIC *p, TPMT_SENSITIVE *s)
{
    char group[64];
    TPM2_ECC_CURVE curve;
    BIGNUM *x = NULL, *y = NULL, *d = NULL;
    size_t cb;
    tk_rc rc;

    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL)) {
        ERR_clear_error();
        return tk_fail(TK_ERR_UNSUPPORTED, "EC key without a named curve: a TPM holds NIST "
                       "P-256, P-384 and P-521 keys");
    }
    curve = tk_curve_from_group(group);
    if (curve == TPM2_ECC_NONE)
        return tk_fail(TK_ERR_UNSUPPORTED, "EC curve %s: a TPM holds NIST P-256, P-384 and "
                       "P-521 keys", group);
    cb = tk_curve_bytes(curve);
    ecc_shape(p, TK_KEY_ATTRS, curve);
    if ((rc = get_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &x, "EC public point")) != TK_OK ||
        (rc = get_bn(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &y, "EC public point")) != TK_OK ||
        (rc = get_bn(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d, "EC private key")) != TK_OK)
        goto out;
    if ((rc = tk_bn_to_fixed(x, p->unique.ecc.x.buffer, cb, "EC point x")) != TK_OK ||
        (rc = tk_bn_to_fixed(y, p->unique.ecc.y.buffer, cb, "EC point y")) != TK_OK)
        goto out;
    p->unique.ecc.x.size = p->unique.ecc.y.size = (UINT16)cb;
    s->sensitiveType = TPM2_ALG_ECC;
    if ((rc = tk_bn_to_fixed(d, s->sensitive.ecc.buffer, cb, "EC private key")) != TK_OK)
        goto out;
    s->sensitive.ecc.size = (UINT16)cb;
out:
    BN_free(x);
    BN_free(y);
    BN_clear_free(d);
    return rc;
}

static tk_rc sensitive_set_size(TPM2B_SENSITIVE *sens)
{
    uint8_t buf[sizeof(TPMT_SENSITIVE)];
    size_t off = 0;
    TSS2_RC rc = Tss2_MU_TPMT_SENSITIVE_Marshal(&sens->sensitiveArea, buf, sizeof(buf), &off);

    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc != TSS2_RC_SUCCESS)
        return tk_fail(TK_ERR_INVALID, "cannot marshal the sensitive area: %s", mu_text(rc));
    sens->size = (UINT16)off;
    return TK_OK;
}

tk_rc tk_pkey_to_tpm(EVP_PKEY *pkey, const tk_secret *auth, TPM2B_PUBLIC *pub,
                     TPM2B_SENSITIVE *sens)
{
    TPM2B_PUBLIC p;
    TPM2B_SENSITIVE s;
    tk_rc rc;

    if (!pkey || !pub || !sens)
        return tk_fail(TK_ERR_INVALID, "tk_pkey_to_tpm: missing argument");
    /* nameAlg is SHA-256: the TPM takes an authValue of at most 32 bytes. */
    if (auth && auth->len > 32)
        return tk_fail(TK_ERR_INVALID, "auth value is %zu bytes; at most 32 are allowed",
                       auth->len);
    memset(&p, 0, sizeof(p));
    memset(&s, 0, sizeof(s));
    if (EVP_PKEY_is_a(pkey, "RSA"))
        rc = rsa_to_tpm(pkey, &p.publicArea, &s.sensitiveArea);
    else if (EVP_PKEY_is_a(pkey, "EC"))
        rc = ecc_to_tpm(pkey, &p.publicArea, &s.sensitiveArea);
    else
        rc = tk_fail(TK_ERR_UNSUPPORTED, "%s keys cannot be held by a TPM (RSA and NIST EC "
                     "only)", EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "such");
    if (rc == TK_OK && auth && auth->len) {
        memcpy(s.sensitiveArea.authValue.buffer, auth->data, auth->len);
        s.sensitiveArea.authValue.size = (UINT16)auth->len;
    }
    if (rc == TK_OK)
        rc = public_set_size(&p);
    if (rc == TK_OK)
        rc = sensitive_set_size(&s);
    if (rc == TK_OK) {
        *pub = p;
        *sens = s;
    }
    OPENSSL_cleanse(&s, sizeof(s));
    return rc;
}
