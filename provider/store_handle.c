/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The "handle:" store loader: a key made persistent in the TPM (0x81xxxxxx), e.g.
 * `openssl pkeyutl -sign -inkey handle:0x81000002`.  "handle:0x81000002?pass" asks for
 * the key's password through OpenSSL's passphrase callback (-passin); without it the key
 * is used with an empty auth value.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "provider.h"

typedef struct {
    tkp_ctx *prov;
    uint32_t handle;
    bool ask_pass;
    int expect;
    bool eof;
} handle_ctx;

static OSSL_FUNC_store_open_fn hs_open;
static OSSL_FUNC_store_set_ctx_params_fn hs_set_ctx_params;
static OSSL_FUNC_store_load_fn hs_load;
static OSSL_FUNC_store_eof_fn hs_eof;
static OSSL_FUNC_store_close_fn hs_close;

static int hs_close(void *vctx)
{
    free(vctx);
    return 1;
}

static void *hs_open(void *provctx, const char *uri)
{
    handle_ctx *ctx;
    const char *num, *q;
    char *end = NULL;
    unsigned long v;

    if (strncasecmp(uri, "handle:", 7)) {
        TKP_RAISE(provctx, TKP_R_INVALID, "not a handle: URI");
        return NULL;
    }
    num = uri + 7;
    q = strchr(num, '?');
    errno = 0;
    v = strtoul(num, &end, 0);
    if (errno || end == num || (end != q && *end) || (v >> 24) != TPM2_HT_PERSISTENT ||
        v > 0xffffffffUL) {
        TKP_RAISE(provctx, TKP_R_INVALID,
                  "%s: expected handle:0x81xxxxxx (a persistent TPM key)", uri);
        return NULL;
    }
    if (q && strcmp(q, "?pass")) {
        TKP_RAISE(provctx, TKP_R_INVALID, "%s: the only query a handle: URI takes is ?pass",
                  uri);
        return NULL;
    }
    if (!(ctx = calloc(1, sizeof(*ctx)))) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->handle = (uint32_t)v;
    ctx->ask_pass = q != NULL;
    return ctx;
}

static int hs_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    return tkp_store_get_expect(params, &((handle_ctx *)vctx)->expect);
}

static int ask_password(handle_ctx *ctx, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                        tk_secret *auth)
{
    char pass[TK_SECRET_MAX], info[64];
    size_t len = 0;
    int ok;

    snprintf(info, sizeof(info), "password of the TPM key 0x%08x", ctx->handle);
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, info, 0),
        OSSL_PARAM_END,
    };
    ok = pw_cb && pw_cb(pass, sizeof(pass), &len, p, pw_cbarg);
    if (ok)
        tk_secret_set(auth, pass, len);
    else
        TKP_RAISE(ctx->prov, TKP_R_PIN, "handle:0x%08x?pass needs the key's password "
                  "(-passin)", ctx->handle);
    OPENSSL_cleanse(pass, sizeof(pass));
    return ok;
}

static int hs_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    handle_ctx *ctx = vctx;
    tk_tss2key f;
    tk_secret auth;
    tkp_key *key = NULL;
    tk_tpm *tpm;
    tk_rc rc;
    int ok = 0;

    if (ctx->eof)
        return 0;
    ctx->eof = true;
    if (ctx->expect && ctx->expect != OSSL_STORE_INFO_PKEY &&
        ctx->expect != OSSL_STORE_INFO_PUBKEY)
        return 0;
    memset(&f, 0, sizeof(f));
    memset(&auth, 0, sizeof(auth));
    if (!(tpm = tkp_tpm(ctx->prov)))
        return 0;
    if ((rc = tk_tpm_persistent_public(tpm, ctx->handle, &f.pub)) != TK_OK) {
        TKP_RAISE_RC(ctx->prov, rc, "opening the persistent key");
        goto out;
    }
    if (ctx->ask_pass && !ask_password(ctx, pw_cb, pw_cbarg, &auth))
        goto out;
    /* A loadable key with no private blob: the key operations use the handle. */
    f.type = 3;
    f.parent = TK_SRK_HANDLE;
    f.empty_auth = auth.len == 0;
    if (!(key = tkp_key_from_tss2(ctx->prov, &f, &auth)))
        goto out;
    if (ctx->expect == OSSL_STORE_INFO_PUBKEY) {
        tkp_key *pub = tkp_key_from_pub(ctx->prov, key->pub);
        tkp_key_free(key);
        key = pub;
        if (!key)
            goto out;
    }
    ok = tkp_pass_key(key, object_cb, object_cbarg);
out:
    tk_secret_clear(&auth);
    tk_tss2key_free(&f);
    return ok;
}

static int hs_eof(void *vctx)
{
    return ((handle_ctx *)vctx)->eof;
}

const OSSL_DISPATCH tkp_handle_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))hs_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))tkp_store_settable_ctx_params },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))hs_set_ctx_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))hs_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))hs_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))hs_close },
    { 0, NULL },
};
