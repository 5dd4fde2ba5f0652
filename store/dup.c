/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The outer wrap of TPM 2.0 duplication (Part 1, 23.3.2), so that a software key can be
 * handed to TPM2_Import without its sensitive area ever crossing the bus in the clear:
 *
 *   seed        fresh, digest size of the parent's nameAlg, sent to the parent as
 *               inSymSeed: ECDH with an ephemeral key + KDFe (ECC parent) or
 *               RSA-OAEP with label "DUPLICATE" (RSA parent)
 *   symKey      KDFa(nameAlg_p, seed, "STORAGE", name(object), -, keyBits of the parent)
 *   dupSens     AES-CFB(symKey, IV 0, TPM2B_SENSITIVE)
 *   hmacKey     KDFa(nameAlg_p, seed, "INTEGRITY", -, -, digest bits)
 *   duplicate   TPM2B_DIGEST(HMAC(hmacKey, dupSens || name(object))) || dupSens
 *
 * No inner wrapper: TPM2_Import gets symmetricAlg TPM2_ALG_NULL and no encryptionKey.
 */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Clear the bits of the first output byte beyond a bit length that is not whole bytes. */
static void trim_bits(uint8_t *out, uint32_t bits)
{
    if (bits % 8)
        out[0] &= (uint8_t)((1u << (bits % 8)) - 1);
}

/* ------------------------------------------------------------------ KDFa / KDFe */

/* An HMAC context for md, not keyed yet (EVP_MAC_init with the key and no params). */
static EVP_MAC_CTX *hmac_ctx_fresh(const EVP_MD *md)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)EVP_MD_get0_name(md), 0),
        OSSL_PARAM_construct_end(),
    };

    EVP_MAC_free(mac); /* the context keeps its own reference */
    if (ctx && !EVP_MAC_CTX_set_params(ctx, params)) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* One context per session hash, made once and copied for each use: fetching HMAC and
 * its digest by name on every use (what HMAC() does) costs several times the HMAC
 * itself, and session commands compute four to six of them. */
static const TPM2_ALG_ID hmac_algs[] = { TPM2_ALG_SHA1, TPM2_ALG_SHA256, TPM2_ALG_SHA384,
                                         TPM2_ALG_SHA512 };
static EVP_MAC_CTX *hmac_templates[4];
static pthread_once_t hmac_once = PTHREAD_ONCE_INIT;

static void hmac_templates_make(void)
{
    for (size_t i = 0; i < 4; i++) {
        const EVP_MD *md = tk_md_for_alg(hmac_algs[i]);
        hmac_templates[i] = md ? hmac_ctx_fresh(md) : NULL;
    }
    ERR_clear_error();
}

static EVP_MAC_CTX *hmac_ctx_new(TPM2_ALG_ID hash)
{
    const EVP_MD *md = tk_md_for_alg(hash);

    if (!md)
        return NULL;
    pthread_once(&hmac_once, hmac_templates_make);
    for (size_t i = 0; i < 4; i++)
        if (hmac_algs[i] == hash && hmac_templates[i])
            return EVP_MAC_CTX_dup(hmac_templates[i]);
    return hmac_ctx_fresh(md);
}

tk_rc tk_hmac(TPM2_ALG_ID hash, const uint8_t *key, size_t keylen, const uint8_t *const parts[],
              const size_t lens[], size_t n, uint8_t *out, size_t outsize, size_t *outlen)
{
    EVP_MAC_CTX *ctx = hmac_ctx_new(hash);
    size_t len = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, keylen, NULL);

    for (size_t i = 0; ok && i < n; i++)
        ok = !lens[i] || EVP_MAC_update(ctx, parts[i], lens[i]);
    ok = ok && EVP_MAC_final(ctx, out, &len, outsize);
    EVP_MAC_CTX_free(ctx);
    if (!ok)
        return tk_fail_ossl(TK_ERR_NOMEM, "computing an HMAC");
    if (outlen)
        *outlen = len;
    return TK_OK;
}

tk_rc tk_kdfa(TPM2_ALG_ID hash, const uint8_t *key, size_t keylen, const char *label,
              const uint8_t *context_u, size_t ulen, const uint8_t *context_v, size_t vlen,
              uint32_t bits, uint8_t *out)
{
    const EVP_MD *md = tk_md_for_alg(hash);
    static const uint8_t zero = 0;
    EVP_MAC_CTX *ctx;
    uint8_t block[EVP_MAX_MD_SIZE], be[4], lbits[4];
    size_t outlen = ((size_t)bits + 7) / 8, done = 0, blen;
    uint32_t counter = 0;
    tk_rc rc = TK_OK;

    if (!md)
        return tk_fail(TK_ERR_UNSUPPORTED, "KDFa: hash algorithm 0x%04x is not supported", hash);
    if (bits == 0 || !key || keylen == 0 || !out)
        return tk_fail(TK_ERR_INVALID, "KDFa: empty key or output");
    ctx = hmac_ctx_new(hash);
    if (!ctx)
        return tk_fail_ossl(TK_ERR_NOMEM, "KDFa: cannot set up HMAC");
    put_be32(lbits, bits);
    while (done < outlen) {
        put_be32(be, ++counter);
        if (!EVP_MAC_init(ctx, key, keylen, NULL) || !EVP_MAC_update(ctx, be, 4) ||
            (label && !EVP_MAC_update(ctx, (const uint8_t *)label, strlen(label))) ||
            !EVP_MAC_update(ctx, &zero, 1) ||
            (ulen && !EVP_MAC_update(ctx, context_u, ulen)) ||
            (vlen && !EVP_MAC_update(ctx, context_v, vlen)) ||
            !EVP_MAC_update(ctx, lbits, 4) || !EVP_MAC_final(ctx, block, &blen, sizeof(block))) {
            rc = tk_fail_ossl(TK_ERR_INVALID, "KDFa: HMAC failed");
            break;
        }
        if (blen > outlen - done)
            blen = outlen - done;
        memcpy(out + done, block, blen);
        done += blen;
    }
    OPENSSL_cleanse(block, sizeof(block));
    EVP_MAC_CTX_free(ctx);
    if (rc != TK_OK) {
        OPENSSL_cleanse(out, outlen);
        return rc;
    }
    trim_bits(out, bits);
    return TK_OK;
}

tk_rc tk_kdfe(TPM2_ALG_ID hash, const uint8_t *z, size_t zlen, const char *use,
              const uint8_t *party_u, size_t ulen, const uint8_t *party_v, size_t vlen,
              uint32_t bits, uint8_t *out)
{
    const EVP_MD *md = tk_md_for_alg(hash);
    static const uint8_t zero = 0;
    EVP_MD_CTX *ctx;
    uint8_t block[EVP_MAX_MD_SIZE], be[4];
    size_t outlen = ((size_t)bits + 7) / 8, done = 0;
    unsigned int blen;
    uint32_t counter = 0;
    tk_rc rc = TK_OK;

    if (!md)
        return tk_fail(TK_ERR_UNSUPPORTED, "KDFe: hash algorithm 0x%04x is not supported", hash);
    if (bits == 0 || !z || zlen == 0 || !out)
        return tk_fail(TK_ERR_INVALID, "KDFe: empty secret or output");
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return tk_fail_ossl(TK_ERR_NOMEM, "KDFe: cannot set up the digest");
    while (done < outlen) {
        put_be32(be, ++counter);
        if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, be, 4) ||
            !EVP_DigestUpdate(ctx, z, zlen) ||
            (use && !EVP_DigestUpdate(ctx, use, strlen(use))) ||
            !EVP_DigestUpdate(ctx, &zero, 1) ||
            (ulen && !EVP_DigestUpdate(ctx, party_u, ulen)) ||
            (vlen && !EVP_DigestUpdate(ctx, party_v, vlen)) ||
            !EVP_DigestFinal_ex(ctx, block, &blen)) {
            rc = tk_fail_ossl(TK_ERR_INVALID, "KDFe: digest failed");
            break;
        }
        if (blen > outlen - done)
            blen = (unsigned int)(outlen - done);
        memcpy(out + done, block, blen);
        done += blen;
    }
    OPENSSL_cleanse(block, sizeof(block));
    EVP_MD_CTX_free(ctx);
    if (rc != TK_OK) {
        OPENSSL_cleanse(out, outlen);
        return rc;
    }
    trim_bits(out, bits);
    return TK_OK;
}

/* ------------------------------------------------------------------ the parent */

typedef struct {
    const TPMT_PUBLIC *pub;
    TPM2_ALG_ID name_alg;
    size_t dlen;          /* digest size of name_alg = seed size */
    uint16_t sym_bits;    /* AES key bits of the parent's symmetric definition */
} parent_info;

static tk_rc parent_check(const TPM2B_PUBLIC *parent_pub, parent_info *pi)
{
    const TPMT_PUBLIC *p = &parent_pub->publicArea;
    const TPMT_SYM_DEF_OBJECT *sym;
    const EVP_MD *md = tk_md_for_alg(p->nameAlg);

    if (p->type == TPM2_ALG_RSA)
        sym = &p->parameters.rsaDetail.symmetric;
    else if (p->type == TPM2_ALG_ECC)
        sym = &p->parameters.eccDetail.symmetric;
    else
        return tk_fail(TK_ERR_UNSUPPORTED, "parent key type 0x%04x cannot receive an import "
                       "(RSA or ECC storage keys only)", p->type);
    if ((p->objectAttributes & (TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT)) !=
        (TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT))
        return tk_fail(TK_ERR_INVALID, "parent is not a storage key (restricted decrypt)");
    if (!md)
        return tk_fail(TK_ERR_UNSUPPORTED, "parent name algorithm 0x%04x is not supported",
                       p->nameAlg);
    if (sym->algorithm != TPM2_ALG_AES || sym->mode.aes != TPM2_ALG_CFB ||
        (sym->keyBits.aes != 128 && sym->keyBits.aes != 192 && sym->keyBits.aes != 256))
        return tk_fail(TK_ERR_UNSUPPORTED, "parent's symmetric algorithm is not AES-CFB "
                       "(0x%04x, %u bits, mode 0x%04x)", sym->algorithm, sym->keyBits.sym,
                       sym->mode.sym);
    pi->pub = p;
    pi->name_alg = p->nameAlg;
    pi->dlen = (size_t)EVP_MD_get_size(md);
    pi->sym_bits = sym->keyBits.aes;
    return TK_OK;
}

/* ------------------------------------------------------------------ the seed */

tk_rc tk_ecc_secret(const TPM2B_PUBLIC *key, const char *label, uint8_t *secret,
                    TPM2B_ENCRYPTED_SECRET *enc)
{
    const TPMT_PUBLIC *p = &key->publicArea;
    const EVP_MD *md = tk_md_for_alg(p->nameAlg);
    int nid = p->type == TPM2_ALG_ECC ? tk_curve_nid(p->parameters.eccDetail.curveID)
                                      : NID_undef;
    size_t cb = p->type == TPM2_ALG_ECC ? tk_curve_bytes(p->parameters.eccDetail.curveID) : 0;
    TPMS_ECC_POINT qe = { .x.size = 0 };
    EC_GROUP *g = NULL;
    EC_POINT *pk = NULL, *pe = NULL, *pz = NULL;
    BN_CTX *bc = NULL;
    BIGNUM *d = NULL, *kx, *ky, *ex, *ey, *zx;
    uint8_t z[TPM2_MAX_ECC_KEY_BYTES];
    size_t off = 0;
    tk_rc rc = TK_OK;

    if (nid == NID_undef || !md)
        return tk_fail(TK_ERR_UNSUPPORTED, "no ECC secret with this key (type 0x%04x, curve "
                       "0x%04x, name algorithm 0x%04x)", p->type,
                       p->type == TPM2_ALG_ECC ? p->parameters.eccDetail.curveID : 0,
                       p->nameAlg);
    if (!(g = EC_GROUP_new_by_curve_name(nid)) || !(bc = BN_CTX_secure_new())) {
        EC_GROUP_free(g);
        return tk_fail_ossl(TK_ERR_NOMEM, "ECC secret: cannot set up the curve");
    }
    /* Straight point arithmetic: key generation, import of the point and key exchange
     * through EVP_PKEY cost a process its first milliseconds in provider fetches. */
    BN_CTX_start(bc);
    kx = BN_CTX_get(bc);
    ky = BN_CTX_get(bc);
    ex = BN_CTX_get(bc);
    ey = BN_CTX_get(bc);
    zx = BN_CTX_get(bc);
    /* Setting the key's point checks that it is on the curve. */
    if (!zx || !(d = BN_secure_new()) || !(pk = EC_POINT_new(g)) || !(pe = EC_POINT_new(g)) ||
        !(pz = EC_POINT_new(g)) ||
        !BN_bin2bn(p->unique.ecc.x.buffer, p->unique.ecc.x.size, kx) ||
        !BN_bin2bn(p->unique.ecc.y.buffer, p->unique.ecc.y.size, ky) ||
        !EC_POINT_set_affine_coordinates(g, pk, kx, ky, bc)) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "ECC secret: the key's public point is not usable");
        goto out;
    }
    do {
        if (!BN_priv_rand_range_ex(d, EC_GROUP_get0_order(g), 0, bc)) {
            rc = tk_fail_ossl(TK_ERR_NOMEM, "ECC secret: no random bytes");
            goto out;
        }
    } while (BN_is_zero(d));
    qe.x.size = qe.y.size = (UINT16)cb;
    if (!EC_POINT_mul(g, pe, d, NULL, NULL, bc) || !EC_POINT_mul(g, pz, NULL, pk, d, bc) ||
        !EC_POINT_get_affine_coordinates(g, pe, ex, ey, bc) ||
        !EC_POINT_get_affine_coordinates(g, pz, zx, NULL, bc) ||
        BN_bn2binpad(ex, qe.x.buffer, (int)cb) != (int)cb ||
        BN_bn2binpad(ey, qe.y.buffer, (int)cb) != (int)cb ||
        BN_bn2binpad(zx, z, (int)cb) != (int)cb) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "ECC secret: the point arithmetic failed");
        goto out;
    }
    if ((rc = tk_kdfe(p->nameAlg, z, cb, label, qe.x.buffer, cb, p->unique.ecc.x.buffer,
                      p->unique.ecc.x.size, (uint32_t)EVP_MD_get_size(md) * 8, secret)) != TK_OK)
        goto out;
    if (Tss2_MU_TPMS_ECC_POINT_Marshal(&qe, enc->secret, sizeof(enc->secret), &off) !=
        TSS2_RC_SUCCESS) {
        rc = tk_fail(TK_ERR_INVALID, "ECC secret: cannot marshal the ephemeral point");
        goto out;
    }
    enc->size = (UINT16)off;
out:
    OPENSSL_cleanse(z, sizeof(z));
    BN_clear_free(d);
    EC_POINT_free(pk);
    EC_POINT_free(pe);
    EC_POINT_clear_free(pz);
    BN_CTX_end(bc);
    BN_CTX_free(bc);
    EC_GROUP_free(g);
    return rc;
}

/* ECC parent: seed = KDFe(Z, "DUPLICATE", Qe.x, Qp.x); inSymSeed = Qe (tk_ecc_secret). */
static tk_rc seed_ecc(const TPM2B_PUBLIC *parent_pub, const parent_info *pi, uint8_t *seed,
                      TPM2B_ENCRYPTED_SECRET *enc)
{
    tk_rc rc = tk_ecc_secret(parent_pub, TK_LABEL_DUPLICATE, seed, enc);

    (void)pi;   /* the seed's size is the parent's name digest: tk_ecc_secret knows it */
    return rc == TK_ERR_INVALID ? tk_fail_ctx(rc, "parent public key") : rc;
}

/* RSA parent: random seed, inSymSeed = RSA-OAEP(nameAlg, label "DUPLICATE\0", seed). */
static tk_rc seed_rsa(const TPM2B_PUBLIC *parent_pub, const parent_info *pi, uint8_t *seed,
                      TPM2B_ENCRYPTED_SECRET *enc)
{
    static const char label[] = TK_LABEL_DUPLICATE; /* sizeof includes the NUL */
    const EVP_MD *md = tk_md_for_alg(pi->name_alg);
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    unsigned char *lab = NULL;
    size_t outlen = sizeof(enc->secret);
    tk_rc rc;

    if ((rc = tk_public_to_pkey(parent_pub, &peer)) != TK_OK)
        return tk_fail_ctx(rc, "parent public key");
    if ((size_t)EVP_PKEY_get_size(peer) > sizeof(enc->secret)) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "parent RSA key is too large (%d bits)",
                     EVP_PKEY_get_bits(peer));
        goto out;
    }
    if (RAND_priv_bytes(seed, (int)pi->dlen) != 1) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "cannot draw a random seed");
        goto out;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, peer, NULL);
    lab = OPENSSL_memdup(label, sizeof(label));
    if (!ctx || !lab || EVP_PKEY_encrypt_init(ctx) <= 0 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0 ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, lab, (int)sizeof(label)) <= 0) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "cannot set up RSA-OAEP to the parent key");
        goto out;
    }
    lab = NULL; /* owned by ctx now */
    if (EVP_PKEY_encrypt(ctx, enc->secret, &outlen, seed, pi->dlen) <= 0) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "RSA-OAEP encryption of the seed failed");
        goto out;
    }
    enc->size = (UINT16)outlen;
out:
    OPENSSL_free(lab);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    return rc;
}

/* ------------------------------------------------------------------ the wrap */

static tk_rc aes_cfb_encrypt(const uint8_t *key, uint16_t bits, uint8_t *data, size_t len)
{
    static const uint8_t iv[16]; /* zero IV: the key is used once */
    const char *name = bits == 128 ? "AES-128-CFB" : bits == 192 ? "AES-192-CFB" : "AES-256-CFB";
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, name, NULL);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    tk_rc rc = TK_OK;

    if (!cipher || !ctx || !EVP_EncryptInit_ex2(ctx, cipher, key, iv, NULL) ||
        !EVP_EncryptUpdate(ctx, data, &n, data, (int)len) ||
        !EVP_EncryptFinal_ex(ctx, data + n, &fin) || (size_t)(n + fin) != len)
        rc = tk_fail_ossl(TK_ERR_INVALID, "AES-CFB encryption failed");
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    return rc;
}

static tk_rc outer_hmac(const parent_info *pi, const uint8_t *key, const uint8_t *data,
                        size_t len, const TPM2B_NAME *name, uint8_t *mac, size_t *maclen)
{
    EVP_MAC_CTX *ctx = hmac_ctx_new(pi->name_alg);
    tk_rc rc = TK_OK;

    if (!ctx || !EVP_MAC_init(ctx, key, pi->dlen, NULL) || !EVP_MAC_update(ctx, data, len) ||
        !EVP_MAC_update(ctx, name->name, name->size) ||
        !EVP_MAC_final(ctx, mac, maclen, EVP_MAX_MD_SIZE))
        rc = tk_fail_ossl(TK_ERR_INVALID, "outer HMAC failed");
    EVP_MAC_CTX_free(ctx);
    return rc;
}

tk_rc tk_duplicate_wrap(const TPM2B_PUBLIC *parent_pub, const TPM2B_PUBLIC *obj_pub,
                        const TPM2B_SENSITIVE *sens, TPM2B_PRIVATE *dup,
                        TPM2B_ENCRYPTED_SECRET *seed_out)
{
    parent_info pi = { 0 };
    TPM2B_NAME name;
    TPM2B_ENCRYPTED_SECRET enc;
    TPM2B_PRIVATE out;
    uint8_t seed[EVP_MAX_MD_SIZE], symkey[32], hmackey[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    uint8_t *dupsens;
    size_t slen = 0, maclen = 0;
    TSS2_RC mrc;
    tk_rc rc;

    if (!parent_pub || !obj_pub || !sens || !dup || !seed_out)
        return tk_fail(TK_ERR_INVALID, "tk_duplicate_wrap: missing argument");
    if (sens->sensitiveArea.sensitiveType != obj_pub->publicArea.type)
        return tk_fail(TK_ERR_INVALID, "sensitive area type 0x%04x does not match the public "
                       "area type 0x%04x", sens->sensitiveArea.sensitiveType,
                       obj_pub->publicArea.type);
    if ((rc = parent_check(parent_pub, &pi)) != TK_OK)
        return rc;
    if ((rc = tk_public_name(obj_pub, &name)) != TK_OK)
        return rc;

    memset(&enc, 0, sizeof(enc));
    memset(&out, 0, sizeof(out));
    rc = parent_pub->publicArea.type == TPM2_ALG_ECC ? seed_ecc(parent_pub, &pi, seed, &enc)
                                                     : seed_rsa(parent_pub, &pi, seed, &enc);
    if (rc != TK_OK)
        goto out;

    /* The HMAC (as a TPM2B_DIGEST) goes first; the encrypted sensitive follows it. */
    dupsens = out.buffer + 2 + pi.dlen;
    mrc = Tss2_MU_TPM2B_SENSITIVE_Marshal(sens, dupsens, sizeof(out.buffer) - 2 - pi.dlen, &slen);
    if (mrc != TSS2_RC_SUCCESS) {
        rc = tk_fail(TK_ERR_INVALID, "cannot marshal the sensitive area: %s",
                     Tss2_RC_Decode(mrc));
        goto out;
    }
    if ((rc = tk_kdfa(pi.name_alg, seed, pi.dlen, TK_LABEL_STORAGE, name.name, name.size, NULL,
                      0, pi.sym_bits, symkey)) != TK_OK ||
        (rc = aes_cfb_encrypt(symkey, pi.sym_bits, dupsens, slen)) != TK_OK ||
        (rc = tk_kdfa(pi.name_alg, seed, pi.dlen, TK_LABEL_INTEGRITY, NULL, 0, NULL, 0,
                      (uint32_t)(pi.dlen * 8), hmackey)) != TK_OK ||
        (rc = outer_hmac(&pi, hmackey, dupsens, slen, &name, mac, &maclen)) != TK_OK)
        goto out;
    if (maclen != pi.dlen) {
        rc = tk_fail(TK_ERR_INVALID, "outer HMAC has an unexpected size %zu", maclen);
        goto out;
    }
    out.buffer[0] = (uint8_t)(maclen >> 8);
    out.buffer[1] = (uint8_t)maclen;
    memcpy(out.buffer + 2, mac, maclen);
    out.size = (UINT16)(2 + maclen + slen);
    *dup = out;
    *seed_out = enc;
out:
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(symkey, sizeof(symkey));
    OPENSSL_cleanse(hmackey, sizeof(hmackey));
    OPENSSL_cleanse(&out, sizeof(out));
    return rc;
}
