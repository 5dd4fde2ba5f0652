/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * ECDH key exchange: the TPM computes the shared point (TPM2_ECDH_ZGen) with our
 * private key and the peer's public point; the secret is its x coordinate, as
 * plain ECDH in OpenSSL.  No KDF and no cofactor variant.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "provider.h"

typedef struct {
    tkp_ctx *prov;
    tkp_key *key;
    tkp_key *peer;
    EVP_PKEY_CTX *sw;       /* software keys: the whole exchange in software */
} ecdh_ctx;

static OSSL_FUNC_keyexch_newctx_fn ecdh_newctx;
static OSSL_FUNC_keyexch_freectx_fn ecdh_freectx;
static OSSL_FUNC_keyexch_dupctx_fn ecdh_dupctx;
static OSSL_FUNC_keyexch_init_fn ecdh_init;
static OSSL_FUNC_keyexch_set_peer_fn ecdh_set_peer;
static OSSL_FUNC_keyexch_derive_fn ecdh_derive;
static OSSL_FUNC_keyexch_set_ctx_params_fn ecdh_set_ctx_params;
static OSSL_FUNC_keyexch_settable_ctx_params_fn ecdh_settable_ctx_params;

static void *ecdh_newctx(void *provctx)
{
    ecdh_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
    else
        ctx->prov = provctx;
    return ctx;
}

static void ecdh_freectx(void *vctx)
{
    ecdh_ctx *ctx = vctx;
    if (!ctx)
        return;
    tkp_key_free(ctx->key);
    tkp_key_free(ctx->peer);
    EVP_PKEY_CTX_free(ctx->sw);
    free(ctx);
}

static void *ecdh_dupctx(void *vctx)
{
    ecdh_ctx *src = vctx, *dst = ecdh_newctx(src->prov);
    if (!dst)
        return NULL;
    if (src->key)
        dst->key = tkp_key_ref(src->key);
    if (src->peer)
        dst->peer = tkp_key_ref(src->peer);
    if (src->sw && !(dst->sw = EVP_PKEY_CTX_dup(src->sw))) {
        ecdh_freectx(dst);
        return NULL;
    }
    return dst;
}

static int ecdh_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    ecdh_ctx *ctx = vctx;
    if (ctx->sw)
        return !params || EVP_PKEY_CTX_set_params(ctx->sw, (OSSL_PARAM *)params) > 0;
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_EXCHANGE_PARAM_KDF_TYPE);
    const char *kdf = NULL;

    if (p && (!OSSL_PARAM_get_utf8_string_ptr(p, &kdf) || (kdf && *kdf))) {
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED, "ECDH with a KDF is not supported: derive the "
                  "plain shared secret and apply the KDF to it");
        return 0;
    }
    return 1;
}

static const OSSL_PARAM *ecdh_settable_ctx_params(void *vctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_utf8_string(OSSL_EXCHANGE_PARAM_KDF_TYPE, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)vctx; (void)provctx;
    return p;
}

static int ecdh_init(void *vctx, void *vkey, const OSSL_PARAM params[])
{
    ecdh_ctx *ctx = vctx;
    tkp_key *key = vkey;

    if (!key || key->type != TK_KEY_EC || (!key->priv && !key->soft_priv)) {
        TKP_RAISE(ctx->prov, TKP_R_NO_PRIVATE, "ECDH needs an EC private key");
        return 0;
    }
    tkp_key_free(ctx->key);
    ctx->key = tkp_key_ref(key);
    EVP_PKEY_CTX_free(ctx->sw);
    ctx->sw = NULL;
    if (ctx->key && ctx->key->soft) {
        ctx->sw = EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, ctx->key->pub, TKP_PROPQ_SW);
        if (!ctx->sw || EVP_PKEY_derive_init_ex(ctx->sw, params) <= 0) {
            TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "no software ECDH (load the default provider)");
            return 0;
        }
        return 1;
    }
    return ctx->key && ecdh_set_ctx_params(ctx, params);
}

static int ecdh_set_peer(void *vctx, void *vpeer)
{
    ecdh_ctx *ctx = vctx;
    tkp_key *peer = vpeer;

    if (!peer || !peer->pub || peer->type != TK_KEY_EC) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "the ECDH peer key is not an EC public key");
        return 0;
    }
    if (ctx->key && EVP_PKEY_parameters_eq(ctx->key->pub, peer->pub) != 1) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "the ECDH peer key is on another curve");
        return 0;
    }
    tkp_key_free(ctx->peer);
    ctx->peer = tkp_key_ref(peer);
    if (ctx->sw && (!ctx->peer || EVP_PKEY_derive_set_peer(ctx->sw, ctx->peer->pub) <= 0))
        return 0;
    return ctx->peer != NULL;
}

static int ecdh_derive(void *vctx, unsigned char *secret, size_t *secretlen, size_t outlen)
{
    ecdh_ctx *ctx = vctx;
    uint8_t point[1 + 2 * 66];
    size_t plen = 0, coord;
    tk_buf z = { 0 };
    int ok;

    if (!ctx->key) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "ECDH not initialised");
        return 0;
    }
    if (ctx->sw) {
        *secretlen = outlen;
        return EVP_PKEY_derive(ctx->sw, secret, secretlen) > 0;
    }
    coord = tkp_key_size(ctx->key);
    if (!secret) {
        *secretlen = coord;
        return 1;
    }
    if (!ctx->peer) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "no ECDH peer key set");
        return 0;
    }
    if (outlen < coord) {
        TKP_RAISE(ctx->prov, TKP_R_INVALID, "secret buffer of %zu bytes: need %zu", outlen, coord);
        return 0;
    }
    if (!EVP_PKEY_get_octet_string_param(ctx->peer->pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
                                         point, sizeof(point), &plen)) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "cannot read the peer's public point");
        return 0;
    }
    ok = tkp_key_ecdh(ctx->key, point, plen, &z);
    if (ok && z.len != coord) {
        TKP_RAISE(ctx->prov, TKP_R_TPM, "the TPM returned a %zu-byte secret", z.len);
        ok = 0;
    }
    if (ok) {
        memcpy(secret, z.data, z.len);
        *secretlen = z.len;
    }
    if (z.data)
        OPENSSL_cleanse(z.data, z.len);
    tk_buf_free(&z);
    return ok;
}

const OSSL_DISPATCH tkp_ecdh_keyexch_functions[] = {
    { OSSL_FUNC_KEYEXCH_NEWCTX, (void (*)(void))ecdh_newctx },
    { OSSL_FUNC_KEYEXCH_FREECTX, (void (*)(void))ecdh_freectx },
    { OSSL_FUNC_KEYEXCH_DUPCTX, (void (*)(void))ecdh_dupctx },
    { OSSL_FUNC_KEYEXCH_INIT, (void (*)(void))ecdh_init },
    { OSSL_FUNC_KEYEXCH_SET_PEER, (void (*)(void))ecdh_set_peer },
    { OSSL_FUNC_KEYEXCH_DERIVE, (void (*)(void))ecdh_derive },
    { OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, (void (*)(void))ecdh_set_ctx_params },
    { OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, (void (*)(void))ecdh_settable_ctx_params },
    { 0, NULL },
};
