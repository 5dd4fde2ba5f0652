/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The signature context shared by sig_rsa.c and sig_ec.c.
 *
 * Each context keeps a software verification context on the key's public part
 * (sw): parameters (digest, padding, salt length) are set on it, so they are
 * checked and answered exactly as the default provider does, including the
 * AlgorithmIdentifier that X.509 signing asks for; verification runs there.
 * Signing hashes in software and hands the digest to the TPM.
 */
#ifndef TPMKEYS_PROVIDER_SIG_H
#define TPMKEYS_PROVIDER_SIG_H

#include "provider.h"

typedef struct tkp_sig_ctx tkp_sig_ctx;
/* The algorithm's signing core: tbs is a digest (md set) or raw input (md NULL). */
typedef int tkp_sign_fn(tkp_sig_ctx *ctx, uint8_t *sig, size_t *siglen, size_t sigsize,
                        const uint8_t *tbs, size_t tbslen);

struct tkp_sig_ctx {
    tkp_ctx *prov;
    tkp_key *key;
    char *propq;
    EVP_PKEY_CTX *sw;       /* software verify context on key->pub */
    EVP_MD_CTX *mdctx;      /* digest-sign/verify: the running hash */
    bool signing;
    tkp_sign_fn *sign;
};

void *tkp_sig_newctx(void *provctx, const char *propq, tkp_sign_fn *sign);
void tkp_sig_freectx(void *ctx);
void *tkp_sig_dupctx(void *ctx);
int tkp_sig_sign_init(void *ctx, void *key, const OSSL_PARAM params[]);
int tkp_sig_verify_init(void *ctx, void *key, const OSSL_PARAM params[]);
int tkp_sig_sign(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize,
                 const unsigned char *tbs, size_t tbslen);
int tkp_sig_verify(void *ctx, const unsigned char *sig, size_t siglen, const unsigned char *tbs,
                   size_t tbslen);
int tkp_sig_digest_sign_init(void *ctx, const char *mdname, void *key, const OSSL_PARAM params[]);
int tkp_sig_digest_verify_init(void *ctx, const char *mdname, void *key,
                               const OSSL_PARAM params[]);
int tkp_sig_digest_update(void *ctx, const unsigned char *data, size_t len);
int tkp_sig_digest_sign_final(void *ctx, unsigned char *sig, size_t *siglen, size_t sigsize);
int tkp_sig_digest_verify_final(void *ctx, const unsigned char *sig, size_t siglen);
int tkp_sig_get_ctx_params(void *ctx, OSSL_PARAM params[]);
int tkp_sig_set_ctx_params(void *ctx, const OSSL_PARAM params[]);
const OSSL_PARAM *tkp_sig_gettable_ctx_params(void *ctx, void *provctx);
const OSSL_PARAM *tkp_sig_settable_ctx_params(void *ctx, void *provctx);

/* The digest currently set (NULL when none); the caller frees it. */
EVP_MD *tkp_sig_md(tkp_sig_ctx *ctx);

#define TKP_SIG_COMMON_FUNCTIONS                                                             \
    { OSSL_FUNC_SIGNATURE_FREECTX, (void (*)(void))tkp_sig_freectx },                        \
    { OSSL_FUNC_SIGNATURE_DUPCTX, (void (*)(void))tkp_sig_dupctx },                          \
    { OSSL_FUNC_SIGNATURE_SIGN_INIT, (void (*)(void))tkp_sig_sign_init },                    \
    { OSSL_FUNC_SIGNATURE_SIGN, (void (*)(void))tkp_sig_sign },                              \
    { OSSL_FUNC_SIGNATURE_VERIFY_INIT, (void (*)(void))tkp_sig_verify_init },                \
    { OSSL_FUNC_SIGNATURE_VERIFY, (void (*)(void))tkp_sig_verify },                          \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, (void (*)(void))tkp_sig_digest_sign_init },      \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, (void (*)(void))tkp_sig_digest_update },       \
    { OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, (void (*)(void))tkp_sig_digest_sign_final },    \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, (void (*)(void))tkp_sig_digest_verify_init },  \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, (void (*)(void))tkp_sig_digest_update },     \
    { OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, (void (*)(void))tkp_sig_digest_verify_final },\
    { OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, (void (*)(void))tkp_sig_get_ctx_params },          \
    { OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, (void (*)(void))tkp_sig_gettable_ctx_params },\
    { OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, (void (*)(void))tkp_sig_set_ctx_params },          \
    { OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, (void (*)(void))tkp_sig_settable_ctx_params }

#endif /* TPMKEYS_PROVIDER_SIG_H */
