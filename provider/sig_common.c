/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Signature context plumbing shared by RSA and ECDSA (see sig.h): key and
 * parameter handling, hashing in software, verification in software.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "sig.h"

void *tkp_sig_newctx(void *provctx, const char *propq, tkp_sign_fn *sign)
{
    tkp_sig_ctx *ctx = calloc(1, sizeof(*ctx));
    (void)propq; /* software steps always use TKP_PROPQ_SW: never this provider */
    if (!ctx) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->sign = sign;
    return ctx;
}

static void sig_reset(tkp_sig_ctx *ctx)
{
    tkp_key_free(ctx->key);
    ctx->key = NULL;
    EVP_PKEY_CTX_free(ctx->sw);
    ctx->sw = NULL;
    EVP_MD_CTX_free(ctx->mdctx);
    ctx->mdctx = NULL;
}

void tkp_sig_freectx(void *vctx)
{
    tkp_sig_ctx *ctx = vctx;
    if (!ctx)
        return;
    sig_reset(ctx);
    free(ctx);
}

void *tkp_sig_dupctx(void *vctx)
{
    tkp_sig_ctx *src = vctx, *dst = tkp_sig_newctx(src->prov, NULL, src->sign);

    if (!dst)
        return NULL;
    dst->signing = src->signing;
    if (src->key)
        dst->key = tkp_key_ref(src->key);
    if ((src->sw && !(dst->sw = EVP_PKEY_CTX_dup(src->sw))) ||
        (src->mdctx && (!(dst->mdctx = EVP_MD_CTX_new()) ||
                        !EVP_MD_CTX_copy_ex(dst->mdctx, src->mdctx)))) {
        TKP_RAISE(src->prov, TKP_R_SOFTWARE, "cannot copy the signature context");
        tkp_sig_freectx(dst);
        return NULL;
    }
    return dst;
}

static int sig_init(tkp_sig_ctx *ctx, tkp_key *key, const OSSL_PARAM params[], bool signing)
{
    if (key) {
        tkp_key *ref = tkp_key_ref(key);
        sig_reset(ctx);
        ctx->key = ref;
    } else {
        /* Same key again: fresh parameters. */
        EVP_PKEY_CTX_free(ctx->sw);
        ctx->sw = NULL;
        EVP_MD_CTX_free(ctx->mdctx);
        ctx->mdctx = NULL;
    }
    if (!ctx->key || !ctx->key->pub) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "no key given to the signature operation");
        return 0;
    }
    if (signing && !ctx->key->priv && !ctx->key->soft_priv) {
        TKP_RAISE(ctx->prov, TKP_R_NO_PRIVATE,
                  "cannot sign with a public key: load the TPM private key instead");
        return 0;
    }
    ctx->signing = signing;
    ctx->sw = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, TKP_PROPQ_SW);
    /* A software key is signed with in software; for TPM keys sw only verifies. */
    if (!ctx->sw || (signing && ctx->key->soft ? EVP_PKEY_sign_init(ctx->sw)
                                               : EVP_PKEY_verify_init(ctx->sw)) <= 0) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE,
                  "no software signature implementation for the public key "
                  "(load the default provider too)");
        return 0;
    }
    return tkp_sig_set_ctx_params(ctx, params);
}

int tkp_sig_sign_init(void *ctx, void *key, const OSSL_PARAM params[])
{
    return sig_init(ctx, key, params, true);
}

int tkp_sig_verify_init(void *ctx, void *key, const OSSL_PARAM params[])
{
    return sig_init(ctx, key, params, false);
}

EVP_MD *tkp_sig_md(tkp_sig_ctx *ctx)
{
    char name[64] = "";
    OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, name, sizeof(name)),
        OSSL_PARAM_END,
    };
    if (!ctx->sw || EVP_PKEY_CTX_get_params(ctx->sw, p) <= 0 || !name[0])
        return NULL;
    return tkp_md_fetch(ctx->prov, name);
}

/* Signing with a software key (see keymgmt_common.c): all in software. */
static int soft_sign(tkp_sig_ctx *ctx, uint8_t *sig, size_t *siglen, size_t sigsize,
                     const uint8_t *tbs, size_t tbslen)
{
    if (sig)
        *siglen = sigsize;
    return EVP_PKEY_sign(ctx->sw, sig, siglen, tbs, tbslen) > 0;
}

static tkp_sign_fn *sign_fn(tkp_sig_ctx *ctx)
{
    return ctx->key->soft ? soft_sign : ctx->sign;
}

int tkp_sig_sign(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                 const unsigned char *tbs, size_t tbslen)
{
    tkp_sig_ctx *ctx = vctx;
    if (!ctx->signing || !ctx->key) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "signature operation not initialised for signing");
        return 0;
    }
    return sign_fn(ctx)(ctx, sig, siglen, sigsize, tbs, tbslen);
}

int tkp_sig_verify(void *vctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                   size_t tbslen)
{
    tkp_sig_ctx *ctx = vctx;
    if (!ctx->sw || ctx->signing)
        return 0;
    return EVP_PKEY_verify(ctx->sw, sig, siglen, tbs, tbslen) > 0;
}

static int digest_init(tkp_sig_ctx *ctx, const char *mdname, tkp_key *key,
                       const OSSL_PARAM params[], bool signing)
{
    EVP_MD *md = NULL;
    int ok;

    if (!sig_init(ctx, key, NULL, signing))
        return 0;
    if (!mdname || !*mdname)
        mdname = "SHA256";
    {
        OSSL_PARAM p[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, (char *)mdname, 0),
            OSSL_PARAM_END,
        };
        if (EVP_PKEY_CTX_set_params(ctx->sw, p) <= 0) {
            TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "digest %s cannot be used with this key",
                      mdname);
            return 0;
        }
    }
    if (!tkp_sig_set_ctx_params(ctx, params))
        return 0;
    md = tkp_md_fetch(ctx->prov, mdname);
    ok = md && (ctx->mdctx = EVP_MD_CTX_new()) && EVP_DigestInit_ex2(ctx->mdctx, md, NULL);
    EVP_MD_free(md);
    if (!ok)
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "cannot start a %s digest in software", mdname);
    return ok;
}

int tkp_sig_digest_sign_init(void *ctx, const char *mdname, void *key, const OSSL_PARAM params[])
{
    return digest_init(ctx, mdname, key, params, true);
}

int tkp_sig_digest_verify_init(void *ctx, const char *mdname, void *key,
                               const OSSL_PARAM params[])
{
    return digest_init(ctx, mdname, key, params, false);
}

int tkp_sig_digest_update(void *vctx, const unsigned char *data, size_t len)
{
    tkp_sig_ctx *ctx = vctx;
    return ctx->mdctx && EVP_DigestUpdate(ctx->mdctx, data, len);
}

int tkp_sig_digest_sign_final(void *vctx, unsigned char *sig, size_t *siglen, size_t sigsize)
{
    tkp_sig_ctx *ctx = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (!ctx->mdctx || !ctx->signing)
        return 0;
    if (!sig)  /* size query: keep the running digest */
        return sign_fn(ctx)(ctx, NULL, siglen, 0, NULL, 0);
    if (!EVP_DigestFinal_ex(ctx->mdctx, dgst, &dlen)) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "hashing failed");
        return 0;
    }
    return sign_fn(ctx)(ctx, sig, siglen, sigsize, dgst, dlen);
}

int tkp_sig_digest_verify_final(void *vctx, const unsigned char *sig, size_t siglen)
{
    tkp_sig_ctx *ctx = vctx;
    unsigned char dgst[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;

    if (!ctx->mdctx || ctx->signing || !EVP_DigestFinal_ex(ctx->mdctx, dgst, &dlen))
        return 0;
    return EVP_PKEY_verify(ctx->sw, sig, siglen, dgst, dlen) > 0;
}

int tkp_sig_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    tkp_sig_ctx *ctx = vctx;
    if (!ctx->sw)
        return 0;
    return EVP_PKEY_CTX_get_params(ctx->sw, params) > 0;
}

int tkp_sig_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    tkp_sig_ctx *ctx = vctx;
    if (!params || !params[0].key)
        return 1;
    if (!ctx->sw)
        return 0;
    /* A digest change after digest-sign init would desynchronise our hash: refuse it. */
    if (ctx->mdctx && OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST))
        return 0;
    return EVP_PKEY_CTX_set_params(ctx->sw, (OSSL_PARAM *)params) > 0;
}

static const OSSL_PARAM fallback_params[] = {
    OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_END,
};

const OSSL_PARAM *tkp_sig_gettable_ctx_params(void *vctx, void *provctx)
{
    tkp_sig_ctx *ctx = vctx;
    const OSSL_PARAM *p = NULL;
    (void)provctx;
    if (ctx && ctx->sw)
        p = EVP_PKEY_CTX_gettable_params(ctx->sw);
    return p ? p : fallback_params;
}

const OSSL_PARAM *tkp_sig_settable_ctx_params(void *vctx, void *provctx)
{
    tkp_sig_ctx *ctx = vctx;
    const OSSL_PARAM *p = NULL;
    (void)provctx;
    if (ctx && ctx->sw)
        p = EVP_PKEY_CTX_settable_params(ctx->sw);
    return p ? p : fallback_params + 1;
}
