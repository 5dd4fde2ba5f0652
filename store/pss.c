/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RSA-PSS signatures, the same for every door.
 *
 * TPMs choose the PSS salt length themselves (swtpm: the digest length; many
 * chips: the maximum, which TLS 1.3 verifiers reject), so the encoding
 * (EMSA-PSS, RFC 8017 9.1.1) is done here with the salt length the caller asks
 * for and finished with the key's raw RSA operation.  Keys whose TPM attributes
 * forbid that (no decrypt, or a fixed scheme: keys restricted to PSS, keys made
 * sign-only by other tools) are signed by the TPM itself, which is accepted only
 * when the caller asks for salt = digest length and MGF1 over the same digest,
 * and the result is checked against the public key before it is returned.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tpmkeys.h"

tk_rc tk_mgf1_xor(const EVP_MD *md, const uint8_t *seed, size_t seedlen, uint8_t *out,
                      size_t len)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    uint8_t block[EVP_MAX_MD_SIZE];
    unsigned int blen = 0;
    tk_rc rc = c ? TK_OK : tk_fail(TK_ERR_NOMEM, "out of memory");

    for (uint32_t counter = 0, done = 0; rc == TK_OK && done < len; counter++) {
        uint8_t cb[4] = { (uint8_t)(counter >> 24), (uint8_t)(counter >> 16),
                          (uint8_t)(counter >> 8), (uint8_t)counter };
        if (!EVP_DigestInit_ex2(c, md, NULL) || !EVP_DigestUpdate(c, seed, seedlen) ||
            !EVP_DigestUpdate(c, cb, sizeof(cb)) || !EVP_DigestFinal_ex(c, block, &blen))
            rc = tk_fail_ossl(TK_ERR_NOMEM, "MGF1");
        for (unsigned int i = 0; rc == TK_OK && i < blen && done < len; i++)
            out[done++] ^= block[i];
    }
    OPENSSL_cleanse(block, sizeof(block));
    EVP_MD_CTX_free(c);
    return rc;
}

tk_rc tk_pss_encode(const EVP_MD *md, const EVP_MD *mgf1, const uint8_t *mhash, size_t hlen,
                    size_t saltlen, size_t modbits, uint8_t *out, size_t k)
{
    static const uint8_t zeros[8] = { 0 };
    size_t embits, emlen, dblen;
    uint8_t *em, *salt = NULL, h[EVP_MAX_MD_SIZE];
    EVP_MD_CTX *c = NULL;
    unsigned int hl = 0;
    tk_rc rc;

    if (!md || !mgf1 || !mhash || !out || modbits < 2)
        return tk_fail(TK_ERR_INVALID, "tk_pss_encode: missing argument");
    embits = modbits - 1;
    emlen = (embits + 7) / 8;
    if ((size_t)EVP_MD_get_size(md) != hlen)
        return tk_fail(TK_ERR_INVALID, "input of %zu bytes is not a %s digest", hlen,
                       EVP_MD_get0_name(md));
    if (emlen > k || emlen < hlen + 2 || emlen - hlen - 2 < saltlen)
        return tk_fail(TK_ERR_INVALID, "a PSS salt of %zu bytes with %s does not fit a "
                       "%zu-bit key", saltlen, EVP_MD_get0_name(md), modbits);
    if (!(salt = malloc(saltlen + 1)))
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    if (saltlen && RAND_bytes(salt, (int)saltlen) != 1) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "no random salt for PSS");
        goto out;
    }
    memset(out, 0, k);
    em = out + (k - emlen);
    dblen = emlen - hlen - 1;
    /* H = Hash(0^8 || mHash || salt); DB = PS || 0x01 || salt, masked with MGF1(H). */
    if (!(c = EVP_MD_CTX_new()) || !EVP_DigestInit_ex2(c, md, NULL) ||
        !EVP_DigestUpdate(c, zeros, sizeof(zeros)) || !EVP_DigestUpdate(c, mhash, hlen) ||
        !EVP_DigestUpdate(c, salt, saltlen) || !EVP_DigestFinal_ex(c, h, &hl) || hl != hlen) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "hashing for PSS");
        goto out;
    }
    em[dblen - saltlen - 1] = 0x01;
    memcpy(em + dblen - saltlen, salt, saltlen);
    if ((rc = tk_mgf1_xor(mgf1, h, hlen, em, dblen)) != TK_OK)
        goto out;
    em[0] &= (uint8_t)(0xFF >> (8 * emlen - embits));
    memcpy(em + dblen, h, hlen);
    em[emlen - 1] = 0xbc;
out:
    if (rc != TK_OK)
        OPENSSL_cleanse(out, k);
    OPENSSL_clear_free(salt, saltlen + 1);
    EVP_MD_CTX_free(c);
    return rc;
}

bool tk_public_rsa_raw_ok(const TPM2B_PUBLIC *pub)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    return p->type == TPM2_ALG_RSA && (p->objectAttributes & TPMA_OBJECT_DECRYPT) &&
           (p->objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT) &&
           !(p->objectAttributes & TPMA_OBJECT_RESTRICTED) &&
           p->parameters.rsaDetail.scheme.scheme == TPM2_ALG_NULL;
}

static TPM2_ALG_ID tpm_hash(const EVP_MD *md)
{
    switch (EVP_MD_get_type(md)) {
    case NID_sha1: return TPM2_ALG_SHA1;
    case NID_sha256: return TPM2_ALG_SHA256;
    case NID_sha384: return TPM2_ALG_SHA384;
    case NID_sha512: return TPM2_ALG_SHA512;
    }
    return TPM2_ALG_ERROR;
}

/* Whether sig (k bytes) is a PSS signature of mhash with this salt length. */
static tk_rc pss_check(const TPM2B_PUBLIC *pub, const EVP_MD *md, size_t saltlen,
                       const uint8_t *mhash, size_t hlen, const tk_buf *sig)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    tk_rc rc = tk_public_to_pkey(pub, &pkey);
    int ok;

    if (rc != TK_OK)
        return rc;
    ok = (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) &&
         EVP_PKEY_verify_init(ctx) > 0 &&
         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) > 0 &&
         EVP_PKEY_CTX_set_signature_md(ctx, md) > 0 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)saltlen) > 0 &&
         EVP_PKEY_verify(ctx, sig->data, sig->len, mhash, hlen) == 1;
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    if (!ok)
        return tk_fail(TK_ERR_TPM, "the TPM's PSS signature does not verify with a salt of "
                       "%zu bytes (the TPM chose another salt length); this key cannot sign "
                       "PSS with that salt length", saltlen);
    return TK_OK;
}

tk_rc tk_tpm_sign_pss(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                      const EVP_MD *md, const EVP_MD *mgf1, size_t saltlen,
                      const uint8_t *mhash, size_t hlen, tk_buf *sig)
{
    TPM2B_PUBLIC tp;
    TPM2_ALG_ID h;
    size_t bits, k;
    uint8_t *em;
    tk_rc rc;

    if (!md || !mhash || !sig)
        return tk_fail(TK_ERR_INVALID, "tk_tpm_sign_pss: missing argument");
    if (!mgf1)
        mgf1 = md;
    if ((rc = tk_public_unmarshal(pub, &tp)) != TK_OK)
        return rc;
    if (tp.publicArea.type != TPM2_ALG_RSA)
        return tk_fail(TK_ERR_INVALID, "PSS needs an RSA key");
    bits = tp.publicArea.parameters.rsaDetail.keyBits;
    k = (bits + 7) / 8;
    if (tk_public_rsa_raw_ok(&tp)) {
        if (!(em = malloc(k)))
            return tk_fail(TK_ERR_NOMEM, "out of memory");
        rc = tk_pss_encode(md, mgf1, mhash, hlen, saltlen, bits, em, k);
        if (rc == TK_OK)
            rc = tk_tpm_rsa_raw(t, pub, priv, auth, em, k, sig);
        OPENSSL_clear_free(em, k);
        return rc;
    }
    h = tpm_hash(md);
    if (h == TPM2_ALG_ERROR || EVP_MD_get_type(mgf1) != EVP_MD_get_type(md) || saltlen != hlen)
        return tk_fail(TK_ERR_UNSUPPORTED,
                       "this key's TPM attributes forbid padding in software, and the TPM "
                       "signs PSS only with SHA-1/SHA-2, MGF1 over the same digest and a salt "
                       "as long as the digest (asked: %s, MGF1 %s, salt %zu)",
                       EVP_MD_get0_name(md), EVP_MD_get0_name(mgf1), saltlen);
    if (tk_public_pss_hash(&tp) && tk_public_pss_hash(&tp) != h)
        return tk_fail(TK_ERR_UNSUPPORTED, "this key signs RSA-PSS only with its own digest, "
                       "not %s", EVP_MD_get0_name(md));
    if ((rc = tk_tpm_sign(t, pub, priv, auth, TK_SIG_RSAPSS, h, mhash, hlen, sig)) != TK_OK)
        return rc;
    if (sig->len < k) {
        /* Left-pad to the modulus length, as RSA signatures are. */
        uint8_t *padded = calloc(1, k);
        if (!padded) {
            tk_buf_free(sig);
            return tk_fail(TK_ERR_NOMEM, "out of memory");
        }
        memcpy(padded + (k - sig->len), sig->data, sig->len);
        tk_buf_free(sig);
        sig->data = padded;
        sig->len = k;
    }
    if ((rc = pss_check(&tp, md, saltlen, mhash, hlen, sig)) != TK_OK)
        tk_buf_free(sig);
    return rc;
}
