/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * RSA asymmetric cipher: decryption in the TPM (OAEP, PKCS#1 v1.5, raw), with the
 * result protected on the bus by the library's encrypted session; encryption is
 * a public-key operation and runs in software.
 *
 * Parameters are kept on a software encryption context on the public key (sw),
 * so they are checked and reported exactly as the default provider does.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/rsa.h>

#include "provider.h"

typedef struct {
    tkp_ctx *prov;
    tkp_key *key;
    EVP_PKEY_CTX *sw;
    bool decrypting;
} cipher_ctx;

static OSSL_FUNC_asym_cipher_newctx_fn rsa_newctx;
static OSSL_FUNC_asym_cipher_freectx_fn rsa_freectx;
static OSSL_FUNC_asym_cipher_dupctx_fn rsa_dupctx;
static OSSL_FUNC_asym_cipher_encrypt_init_fn rsa_encrypt_init;
static OSSL_FUNC_asym_cipher_encrypt_fn rsa_encrypt;
static OSSL_FUNC_asym_cipher_decrypt_init_fn rsa_decrypt_init;
static OSSL_FUNC_asym_cipher_decrypt_fn rsa_decrypt;
static OSSL_FUNC_asym_cipher_get_ctx_params_fn rsa_get_ctx_params;
static OSSL_FUNC_asym_cipher_gettable_ctx_params_fn rsa_gettable_ctx_params;
static OSSL_FUNC_asym_cipher_set_ctx_params_fn rsa_set_ctx_params;
static OSSL_FUNC_asym_cipher_settable_ctx_params_fn rsa_settable_ctx_params;

static void *rsa_newctx(void *provctx)
{
    cipher_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
    else
        ctx->prov = provctx;
    return ctx;
}

static void rsa_freectx(void *vctx)
{
    cipher_ctx *ctx = vctx;
    if (!ctx)
        return;
    tkp_key_free(ctx->key);
    EVP_PKEY_CTX_free(ctx->sw);
    free(ctx);
}

static void *rsa_dupctx(void *vctx)
{
    cipher_ctx *src = vctx, *dst = rsa_newctx(src->prov);
    if (!dst)
        return NULL;
    dst->decrypting = src->decrypting;
    if (src->key)
        dst->key = tkp_key_ref(src->key);
    if (src->sw && !(dst->sw = EVP_PKEY_CTX_dup(src->sw))) {
        rsa_freectx(dst);
        return NULL;
    }
    return dst;
}

static int rsa_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    cipher_ctx *ctx = vctx;
    if (!params || !params[0].key)
        return 1;
    return ctx->sw && EVP_PKEY_CTX_set_params(ctx->sw, (OSSL_PARAM *)params) > 0;
}

static int cipher_init(cipher_ctx *ctx, tkp_key *key, const OSSL_PARAM params[], bool decrypting)
{
    if (key) {
        tkp_key_free(ctx->key);
        ctx->key = tkp_key_ref(key);
    }
    EVP_PKEY_CTX_free(ctx->sw);
    ctx->sw = NULL;
    if (!ctx->key || !ctx->key->pub || ctx->key->type != TK_KEY_RSA) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "no RSA key given to the cipher operation");
        return 0;
    }
    if (decrypting && !ctx->key->priv && !ctx->key->soft_priv) {
        TKP_RAISE(ctx->prov, TKP_R_NO_PRIVATE, "cannot decrypt with a public key");
        return 0;
    }
    ctx->decrypting = decrypting;
    ctx->sw = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, TKP_PROPQ_SW);
    /* Software keys decrypt in software; for TPM keys sw only holds the parameters. */
    if (!ctx->sw || (decrypting && ctx->key->soft ? EVP_PKEY_decrypt_init(ctx->sw)
                                                  : EVP_PKEY_encrypt_init(ctx->sw)) <= 0) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "no software RSA implementation (load the default "
                  "provider too)");
        return 0;
    }
    return rsa_set_ctx_params(ctx, params);
}

static int rsa_encrypt_init(void *ctx, void *key, const OSSL_PARAM params[])
{
    return cipher_init(ctx, key, params, false);
}

static int rsa_decrypt_init(void *ctx, void *key, const OSSL_PARAM params[])
{
    return cipher_init(ctx, key, params, true);
}

static int rsa_encrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                       const unsigned char *in, size_t inlen)
{
    cipher_ctx *ctx = vctx;
    *outlen = outsize;
    return ctx->sw && !ctx->decrypting && EVP_PKEY_encrypt(ctx->sw, out, outlen, in, inlen) > 0;
}

/* TPM scheme and hash for the parameters set on sw. */
static int tpm_scheme(cipher_ctx *ctx, TPM2_ALG_ID *scheme, TPM2_ALG_ID *hash, uint8_t **label,
                      size_t *labellen)
{
    int pad = RSA_PKCS1_PADDING;
    char oaep[64] = "", mgf1[64] = "";
    void *lab = NULL;
    OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, &pad),
        OSSL_PARAM_END,
    };
    OSSL_PARAM q[] = {
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, oaep, sizeof(oaep)),
        OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, mgf1, sizeof(mgf1)),
        OSSL_PARAM_END,
    };

    *label = NULL;
    *labellen = 0;
    *hash = TPM2_ALG_NULL;
    if (EVP_PKEY_CTX_get_params(ctx->sw, p) <= 0)
        return 0;
    switch (pad) {
    case RSA_PKCS1_PADDING: *scheme = TPM2_ALG_RSAES; return 1;
    case RSA_NO_PADDING: *scheme = TPM2_ALG_NULL; return 1;
    case RSA_PKCS1_OAEP_PADDING: break;
    default:
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "RSA padding mode %d is not supported for "
                  "decryption in the TPM", pad);
        return 0;
    }
    *scheme = TPM2_ALG_OAEP;
    if (EVP_PKEY_CTX_get_params(ctx->sw, q) <= 0)
        return 0;
    {
        EVP_MD *md = EVP_MD_fetch(ctx->prov->libctx, oaep[0] ? oaep : "SHA1", TKP_PROPQ_SW);
        *hash = tkp_md_to_tpm(md);
        if (*hash == TPM2_ALG_ERROR || (mgf1[0] && !EVP_MD_is_a(md, mgf1))) {
            TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
                      "the TPM decrypts OAEP with SHA-1 or SHA-2 and the same MGF1 digest");
            EVP_MD_free(md);
            return 0;
        }
        EVP_MD_free(md);
    }
    {
        int n = EVP_PKEY_CTX_get0_rsa_oaep_label(ctx->sw, (unsigned char **)&lab);
        if (n > 0 && lab) {
            *label = lab;
            *labellen = (size_t)n;
        }
    }
    return 1;
}

static int rsa_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                       const unsigned char *in, size_t inlen)
{
    cipher_ctx *ctx = vctx;
    size_t k;
    TPM2_ALG_ID scheme, hash;
    uint8_t *label;
    size_t labellen;
    tk_buf plain = { 0 };
    int ok;

    if (!ctx->decrypting || !ctx->key) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "cipher not initialised for decryption");
        return 0;
    }
    if (ctx->key->soft) {
        *outlen = outsize;
        return EVP_PKEY_decrypt(ctx->sw, out, outlen, in, inlen) > 0;
    }
    k = tkp_key_size(ctx->key);
    if (!out) {
        *outlen = k;
        return 1;
    }
    if (!tpm_scheme(ctx, &scheme, &hash, &label, &labellen))
        return 0;
    ok = tkp_key_rsa_decrypt(ctx->key, scheme, hash, label, labellen, in, inlen, &plain);
    if (ok && plain.len > outsize) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "output buffer of %zu bytes: need %zu", outsize,
                  plain.len);
        ok = 0;
    }
    if (ok) {
        memcpy(out, plain.data, plain.len);
        *outlen = plain.len;
    }
    if (plain.data)
        OPENSSL_cleanse(plain.data, plain.len);
    tk_buf_free(&plain);
    return ok;
}

static int rsa_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
    cipher_ctx *ctx = vctx;
    return ctx->sw && EVP_PKEY_CTX_get_params(ctx->sw, params) > 0;
}

static const OSSL_PARAM cipher_params[] = {
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, NULL, 0),
    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *rsa_gettable_ctx_params(void *vctx, void *provctx)
{
    cipher_ctx *ctx = vctx;
    const OSSL_PARAM *p = ctx && ctx->sw ? EVP_PKEY_CTX_gettable_params(ctx->sw) : NULL;
    (void)provctx;
    return p ? p : cipher_params;
}

static const OSSL_PARAM *rsa_settable_ctx_params(void *vctx, void *provctx)
{
    cipher_ctx *ctx = vctx;
    const OSSL_PARAM *p = ctx && ctx->sw ? EVP_PKEY_CTX_settable_params(ctx->sw) : NULL;
    (void)provctx;
    return p ? p : cipher_params;
}

const OSSL_DISPATCH tkp_rsa_asym_cipher_functions[] = {
    { OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))rsa_newctx },
    { OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))rsa_freectx },
    { OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))rsa_dupctx },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, (void (*)(void))rsa_encrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_ENCRYPT, (void (*)(void))rsa_encrypt },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))rsa_decrypt_init },
    { OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))rsa_decrypt },
    { OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))rsa_get_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))rsa_gettable_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))rsa_set_ctx_params },
    { OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))rsa_settable_ctx_params },
    { 0, NULL },
};
