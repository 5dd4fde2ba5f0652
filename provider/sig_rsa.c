/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RSA signatures: PKCS#1 v1.5 and PSS.
 *
 * PKCS#1 v1.5 with a digest: the TPM signs (TPM2_Sign, RSASSA).
 * PSS: the store's PSS signing (tk_tpm_sign_pss: padded in software with the
 * requested salt length and finished with the raw RSA operation, or the TPM's own
 * PSS for keys that forbid that, when the salt length is the digest length).
 * No digest (pkeyutl -sign on raw input) and no padding: padded here, raw in the TPM.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "sig.h"

static OSSL_FUNC_signature_newctx_fn rsa_newctx;

/* The padding, salt length and MGF1 digest currently set on the context. */
static int rsa_params(tkp_sig_ctx *ctx, int *pad, int *saltlen, char *mgf1, size_t mgf1sz)
{
    OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, pad),
        OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, saltlen),
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, mgf1, mgf1sz),
        OSSL_PARAM_END,
    };
    *pad = RSA_PKCS1_PADDING;
    *saltlen = RSA_PSS_SALTLEN_AUTO;
    mgf1[0] = 0;
    if (EVP_PKEY_CTX_get_params(ctx->sw, p) <= 0) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "cannot read the RSA signature parameters");
        return 0;
    }
    if (*pad != RSA_PKCS1_PSS_PADDING)
        mgf1[0] = 0;
    return 1;
}

/* EMSA-PKCS1-v1_5 type 1 padding of raw input (no DigestInfo: the caller's bytes). */
static int pkcs1_type1(tkp_sig_ctx *ctx, const uint8_t *in, size_t inlen, uint8_t *em, size_t k)
{
    if (inlen + 11 > k) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID,
                  "input of %zu bytes is too long for PKCS#1 padding with a %zu-byte key",
                  inlen, k);
        return 0;
    }
    em[0] = 0x00;
    em[1] = 0x01;
    memset(em + 2, 0xFF, k - inlen - 3);
    em[k - inlen - 1] = 0x00;
    memcpy(em + k - inlen, in, inlen);
    return 1;
}

/* The salt length in bytes for OpenSSL's salt length setting (-1 when not supported). */
static int pss_saltlen(tkp_sig_ctx *ctx, int saltlen, size_t hlen)
{
    int emlen = (EVP_PKEY_get_bits(ctx->key->pub) - 1 + 7) / 8;

    switch (saltlen) {
    case RSA_PSS_SALTLEN_DIGEST:
        return (int)hlen;
    case RSA_PSS_SALTLEN_AUTO:
    case RSA_PSS_SALTLEN_MAX:
        if (emlen < (int)hlen + 2)
            break;
        return emlen - (int)hlen - 2;
    default:
        if (saltlen >= 0)
            return saltlen;
    }
    TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "PSS salt length %d is not supported", saltlen);
    return -1;
}

static int need_raw(tkp_sig_ctx *ctx, const char *what)
{
    if (ctx->key->raw_rsa)
        return 1;
    TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
              "%s needs the raw RSA operation, which this key's TPM attributes forbid "
              "(it needs decrypt and no fixed scheme)", what);
    return 0;
}

/* Sign em (k bytes) with the raw private operation into sig. */
static int raw_finish(tkp_sig_ctx *ctx, const uint8_t *em, size_t k, uint8_t *sig,
                      size_t *siglen)
{
    tk_buf out = { 0 };
    int ok = tkp_key_rsa_raw(ctx->key, em, k, &out);
    if (ok && out.len != k) {
        TKP_RAISE(ctx->prov, TKP_R_TPM, "the TPM returned %zu bytes for a %zu-byte key",
                  out.len, k);
        ok = 0;
    }
    if (ok) {
        memcpy(sig, out.data, k);
        *siglen = k;
    }
    tk_buf_free(&out);
    return ok;
}

static int tpm_finish(tkp_sig_ctx *ctx, tk_sigscheme scheme, TPM2_ALG_ID hash,
                      const uint8_t *tbs, size_t tbslen, uint8_t *sig, size_t *siglen, size_t k)
{
    tk_buf out = { 0 };
    int ok = tkp_key_sign(ctx->key, scheme, hash, tbs, tbslen, &out);
    if (ok && out.len > k) {
        TKP_RAISE(ctx->prov, TKP_R_TPM, "the TPM returned a %zu-byte signature", out.len);
        ok = 0;
    }
    if (ok) {
        /* Left-pad to the modulus length, as RSA signatures are. */
        memset(sig, 0, k - out.len);
        memcpy(sig + k - out.len, out.data, out.len);
        *siglen = k;
    }
    tk_buf_free(&out);
    return ok;
}

static int rsa_sign_core(tkp_sig_ctx *ctx, uint8_t *sig, size_t *siglen, size_t sigsize,
                         const uint8_t *tbs, size_t tbslen)
{
    size_t k = tkp_key_size(ctx->key);
    int pad, saltlen, slen, ok = 0;
    char mgf1name[64];
    EVP_MD *md = NULL, *mgf1md = NULL;
    uint8_t *em = NULL;
    TPM2_ALG_ID hash;

    if (!sig) {
        *siglen = k;
        return 1;
    }
    if (sigsize < k) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "signature buffer of %zu bytes: need %zu", sigsize, k);
        return 0;
    }
    if (!rsa_params(ctx, &pad, &saltlen, mgf1name, sizeof(mgf1name)))
        return 0;
    md = tkp_sig_md(ctx);
    if (md && (size_t)EVP_MD_get_size(md) != tbslen) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "input of %zu bytes is not a %s digest", tbslen,
                  EVP_MD_get0_name(md));
        goto out;
    }
    hash = md ? tkp_md_to_tpm(md) : TPM2_ALG_ERROR;
    if (!(em = malloc(k))) {
        TKP_RAISE(ctx->prov, TKP_R_NOMEM, "out of memory");
        goto out;
    }
    switch (pad) {
    case RSA_PKCS1_PADDING:
        if (md && hash != TPM2_ALG_ERROR)
            ok = tpm_finish(ctx, TK_SIG_RSASSA, hash, tbs, tbslen, sig, siglen, k);
        else if (md)
            TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
                      "digest %s is not supported for TPM signatures (use SHA-1 or SHA-2)",
                      EVP_MD_get0_name(md));
        else
            ok = need_raw(ctx, "PKCS#1 signing of raw input") &&
                 pkcs1_type1(ctx, tbs, tbslen, em, k) && raw_finish(ctx, em, k, sig, siglen);
        break;
    case RSA_PKCS1_PSS_PADDING:
        if (!md && (hash = tkp_len_to_tpm(tbslen)) != TPM2_ALG_ERROR)
            md = tkp_md_fetch(ctx->prov, tbslen == 20 ? "SHA1" : tbslen == 32 ? "SHA256"
                                         : tbslen == 48 ? "SHA384" : "SHA512");
        if (!md) {
            TKP_RAISE(ctx->prov, TKP_R_INVALID, "PSS needs a digest");
            break;
        }
        mgf1md = mgf1name[0] ? tkp_md_fetch(ctx->prov, mgf1name)
                             : (EVP_MD_up_ref(md) ? md : NULL);
        if (!mgf1md) {
            TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "unknown MGF1 digest %s", mgf1name);
            break;
        }
        if ((slen = pss_saltlen(ctx, saltlen, tbslen)) < 0)
            break;
        ok = tkp_key_sign_pss(ctx->key, md, mgf1md, (size_t)slen, tbs, tbslen, sig, siglen, k);
        break;
    case RSA_NO_PADDING:
        if (tbslen != k) {
            TKP_RAISE(ctx->prov, TKP_R_INVALID, "raw RSA input must have %zu bytes", k);
            break;
        }
        ok = need_raw(ctx, "raw RSA signing") && raw_finish(ctx, tbs, k, sig, siglen);
        break;
    default:
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "RSA padding mode %d is not supported", pad);
    }
out:
    if (em)
        OPENSSL_clear_free(em, k);
    EVP_MD_free(md);
    EVP_MD_free(mgf1md);
    return ok;
}

static void *rsa_newctx(void *provctx, const char *propq)
{
    return tkp_sig_newctx(provctx, propq, rsa_sign_core);
}

const OSSL_DISPATCH tkp_rsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))rsa_newctx },
    TKP_SIG_COMMON_FUNCTIONS,
    { 0, NULL },
};
