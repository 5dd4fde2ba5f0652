/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ECDSA signatures: the digest is computed in software (or given, for
 * pkeyutl -sign) and signed by the TPM; the result is the DER ECDSA-Sig-Value.
 */
#include "config.h"

#include <string.h>

#include "sig.h"

static OSSL_FUNC_signature_newctx_fn ecdsa_newctx;

static int ecdsa_sign_core(tkp_sig_ctx *ctx, uint8_t *sig, size_t *siglen, size_t sigsize,
                           const uint8_t *tbs, size_t tbslen)
{
    size_t max = (size_t)EVP_PKEY_get_size(ctx->key->pub);
    EVP_MD *md;
    TPM2_ALG_ID hash;
    tk_buf out = { 0 };
    int ok;

    if (!sig) {
        *siglen = max;
        return 1;
    }
    md = tkp_sig_md(ctx);
    if (md && (size_t)EVP_MD_get_size(md) != tbslen) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "input of %zu bytes is not a %s digest", tbslen,
                  EVP_MD_get0_name(md));
        EVP_MD_free(md);
        return 0;
    }
    hash = md ? tkp_md_to_tpm(md) : tkp_len_to_tpm(tbslen);
    EVP_MD_free(md);
    if (hash == TPM2_ALG_ERROR) {
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
                  "the TPM signs SHA-1 and SHA-2 digests (20, 32, 48 or 64 bytes), not %zu bytes",
                  tbslen);
        return 0;
    }
    ok = tkp_key_sign(ctx->key, TK_SIG_ECDSA, hash, tbs, tbslen, &out);
    if (ok && out.len > sigsize) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "signature buffer of %zu bytes: need %zu", sigsize,
                  out.len);
        ok = 0;
    }
    if (ok) {
        memcpy(sig, out.data, out.len);
        *siglen = out.len;
    }
    tk_buf_free(&out);
    return ok;
}

static void *ecdsa_newctx(void *provctx, const char *propq)
{
    return tkp_sig_newctx(provctx, propq, ecdsa_sign_core);
}

const OSSL_DISPATCH tkp_ecdsa_signature_functions[] = {
    { OSSL_FUNC_SIGNATURE_NEWCTX, (void (*)(void))ecdsa_newctx },
    TKP_SIG_COMMON_FUNCTIONS,
    { 0, NULL },
};
