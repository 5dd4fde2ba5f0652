/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Key generation for the RSA and EC key managers.
 *
 * With "tpmkeys-label" set (openssl genpkey -pkeyopt tpmkeys-label:web) the key is
 * generated inside the TPM and stored in the tpmkeys store under that label
 * (token "tpmkeys-token", default "tpmkeys"), without auth: it is then usable at
 * once as tpmkeys:object=web, through PKCS#11 and from the tool.
 * RSA-PSS keys are made with the TPM scheme RSAPSS and the digest asked for
 * (-pkeyopt digest:SHA384; default SHA-256): the TPM then signs only PSS with it.
 * Without it the request is not for us but for whichever provider answers an
 * unqualified fetch (TLS ephemeral keys, parameters): a software key is made.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider.h"

#define PARAM_LABEL "tpmkeys-label"
#define PARAM_TOKEN "tpmkeys-token"

typedef struct {
    tkp_ctx *prov;
    tk_keytype type;
    bool pss;               /* RSA-PSS */
    int selection;
    EVP_PKEY_CTX *sw;       /* software generation context */
    char *label, *token;
    int bits;               /* RSA */
    char digest[32];        /* RSA-PSS: the one digest the key signs with */
    char group[32];         /* EC */
} gen_ctx;

void tkp_km_gen_cleanup(void *vctx)
{
    gen_ctx *ctx = vctx;
    if (!ctx)
        return;
    EVP_PKEY_CTX_free(ctx->sw);
    free(ctx->label);
    free(ctx->token);
    free(ctx);
}

static int sw_init(gen_ctx *ctx, EVP_PKEY *templ)
{
    const char *name = ctx->type == TK_KEY_EC ? "EC" : ctx->pss ? "RSA-PSS" : "RSA";
    EVP_PKEY_CTX_free(ctx->sw);
    ctx->sw = templ ? EVP_PKEY_CTX_new_from_pkey(ctx->prov->libctx, templ, TKP_PROPQ_SW)
                    : EVP_PKEY_CTX_new_from_name(ctx->prov->libctx, name, TKP_PROPQ_SW);
    if (!ctx->sw ||
        ((ctx->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) ? EVP_PKEY_keygen_init(ctx->sw)
                                                         : EVP_PKEY_paramgen_init(ctx->sw)) <= 0) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "no software %s key generation (load the default "
                  "provider too)", name);
        return 0;
    }
    return 1;
}

void *tkp_km_gen_init(void *provctx, tk_keytype type, bool pss, int selection,
                      const OSSL_PARAM params[])
{
    gen_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->type = type;
    ctx->pss = pss;
    ctx->selection = selection;
    strcpy(ctx->digest, "SHA256");
    ctx->bits = 2048;
    strcpy(ctx->group, "P-256");
    if (!sw_init(ctx, NULL) || !tkp_km_gen_set_params(ctx, params)) {
        tkp_km_gen_cleanup(ctx);
        return NULL;
    }
    return ctx;
}

static int set_string(const OSSL_PARAM *p, char **out)
{
    const char *v = NULL;
    if (!OSSL_PARAM_get_utf8_string_ptr(p, &v) || !v)
        return 0;
    free(*out);
    return (*out = strdup(v)) != NULL;
}

int tkp_km_gen_set_params(void *vctx, const OSSL_PARAM params[])
{
    gen_ctx *ctx = vctx;
    OSSL_PARAM rest[32];
    size_t n = 0;

    for (const OSSL_PARAM *p = params; p && p->key; p++) {
        if (!strcmp(p->key, PARAM_LABEL)) {
            if (!set_string(p, &ctx->label))
                return 0;
            continue;
        }
        if (!strcmp(p->key, PARAM_TOKEN)) {
            if (!set_string(p, &ctx->token))
                return 0;
            continue;
        }
        if (!strcmp(p->key, OSSL_PKEY_PARAM_RSA_BITS) && !OSSL_PARAM_get_int(p, &ctx->bits))
            return 0;
        if (!strcmp(p->key, OSSL_PKEY_PARAM_RSA_DIGEST)) {
            char *digest = ctx->digest;
            if (!OSSL_PARAM_get_utf8_string(p, &digest, sizeof(ctx->digest)))
                return 0;
        }
        if (!strcmp(p->key, OSSL_PKEY_PARAM_GROUP_NAME)) {
            char *group = ctx->group;
            if (!OSSL_PARAM_get_utf8_string(p, &group, sizeof(ctx->group)))
                return 0;
        }
        if (n == sizeof(rest) / sizeof(rest[0]) - 1)
            return 0;
        rest[n++] = *p;
    }
    rest[n] = OSSL_PARAM_construct_end();
    return n == 0 || EVP_PKEY_CTX_set_params(ctx->sw, rest) > 0;
}

int tkp_km_gen_set_template(void *vctx, void *templ)
{
    gen_ctx *ctx = vctx;
    tkp_key *t = templ;
    if (!t || !t->pub)
        return 0;
    if (t->type == TK_KEY_EC) {
        size_t len = 0;
        if (!EVP_PKEY_get_utf8_string_param(t->pub, OSSL_PKEY_PARAM_GROUP_NAME, ctx->group,
                                            sizeof(ctx->group), &len))
            return 0;
    }
    return sw_init(ctx, t->pub);
}

static tk_alg tpm_alg(gen_ctx *ctx)
{
    if (ctx->type == TK_KEY_RSA)
        return ctx->bits == 2048 ? TK_ALG_RSA2048 : ctx->bits == 3072 ? TK_ALG_RSA3072
               : ctx->bits == 4096 ? TK_ALG_RSA4096 : TK_ALG_NONE;
    if (!strcasecmp(ctx->group, "P-256") || !strcasecmp(ctx->group, "prime256v1") ||
        !strcasecmp(ctx->group, "secp256r1"))
        return TK_ALG_ECC_P256;
    if (!strcasecmp(ctx->group, "P-384") || !strcasecmp(ctx->group, "secp384r1"))
        return TK_ALG_ECC_P384;
    if (!strcasecmp(ctx->group, "P-521") || !strcasecmp(ctx->group, "secp521r1"))
        return TK_ALG_ECC_P521;
    return TK_ALG_NONE;
}

/* The TPM hash of an RSA-PSS key's digest (TPM2_ALG_ERROR when it has none). */
static TPM2_ALG_ID pss_hash(gen_ctx *ctx)
{
    EVP_MD *md = EVP_MD_fetch(ctx->prov->libctx, ctx->digest, TKP_PROPQ_SW);
    TPM2_ALG_ID h = tkp_md_to_tpm(md);
    EVP_MD_free(md);
    return h;
}

/* Generate in the TPM and store under ctx->label. */
static tkp_key *gen_tpm(gen_ctx *ctx)
{
    const char *token = ctx->token ? ctx->token : TK_DEFAULT_TOKEN;
    tk_alg alg = tpm_alg(ctx);
    tk_keygen_opts opts = { 0 };
    tk_token *tok = NULL;
    tk_key *k = NULL;
    tkp_key *key = NULL;
    tk_ks *ks;
    tk_rc rc;

    if (alg == TK_ALG_NONE) {
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
                  "TPM keys are RSA 2048/3072/4096 or EC P-256/P-384/P-521, not %s",
                  ctx->type == TK_KEY_RSA ? "this RSA size" : ctx->group);
        return NULL;
    }
    if (ctx->pss && (opts.rsa_pss_hash = pss_hash(ctx)) == TPM2_ALG_ERROR) {
        TKP_RAISE(ctx->prov, TKP_R_UNSUPPORTED,
                  "TPM RSA-PSS keys sign with SHA-1 or SHA-2, not %s", ctx->digest);
        return NULL;
    }
    if (!(ks = tkp_ks(ctx->prov)))
        return NULL;
    rc = tk_token_get(tk_ks_store(ks), token, &tok);
    if (rc == TK_OK)
        rc = tk_ks_create_key_opts(ks, tok->id, ctx->label, alg, &opts, TK_AUTH_NONE, NULL,
                                   NULL, &k);
    if (rc != TK_OK) {
        char what[128];
        snprintf(what, sizeof(what), "creating key \"%s\" in token \"%s\"", ctx->label, token);
        TKP_RAISE_RC(ctx->prov, rc, what);
    } else {
        key = tkp_key_from_store(ctx->prov, &k);
    }
    tk_key_free(k);
    tk_token_free(tok);
    return key;
}

void *tkp_km_gen(void *vctx, OSSL_CALLBACK *cb, void *cbarg)
{
    gen_ctx *ctx = vctx;
    EVP_PKEY *pkey = NULL;

    (void)cb; (void)cbarg;
    if (ctx->label) {
        if (!(ctx->selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY)) {
            TKP_RAISE(ctx->prov, TKP_R_INVALID, "tpmkeys-label is for key generation");
            return NULL;
        }
        return gen_tpm(ctx);
    }
    if (EVP_PKEY_generate(ctx->sw, &pkey) <= 0) {
        TKP_RAISE(ctx->prov, TKP_R_SOFTWARE, "software key generation failed");
        return NULL;
    }
    return tkp_key_from_soft(ctx->prov, pkey,
                             (ctx->selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0);
}
