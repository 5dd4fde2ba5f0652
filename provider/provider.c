/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The provider's entry point: OSSL_provider_init, the operation tables, the
 * error reasons, and the lazily opened key store.
 *
 * Activating the provider touches neither the TPM nor the store: both are
 * opened on the first use of a key.  Only key-bound operations are offered
 * (keymgmt, signature, asymmetric cipher, key exchange, decoders, a store
 * loader); digests, ciphers and random numbers come from the default provider,
 * which is also what tss2-esys uses for its own hashing.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/prov_ssl.h>

#include "provider.h"

#ifndef TPMKEYS_VERSION
#define TPMKEYS_VERSION PACKAGE_VERSION
#endif

/* ------------------------------------------------------------------ errors */

static const OSSL_ITEM reason_strings[] = {
    { TKP_R_NOMEM, "out of memory" },
    { TKP_R_INVALID, "invalid argument or malformed input" },
    { TKP_R_NOT_FOUND, "key not found" },
    { TKP_R_UNSUPPORTED, "not supported" },
    { TKP_R_PIN, "PIN or password needed, wrong or locked" },
    { TKP_R_NO_TPM, "TPM not reachable" },
    { TKP_R_TPM, "TPM error" },
    { TKP_R_STORE, "key store error" },
    { TKP_R_KEYFILE, "unusable TSS2 key file" },
    { TKP_R_NO_PRIVATE, "no private key" },
    { TKP_R_SOFTWARE, "software operation failed" },
    { 0, NULL },
};

static int reason_for(tk_rc rc)
{
    switch (rc) {
    case TK_ERR_NOMEM: return TKP_R_NOMEM;
    case TK_ERR_NOT_FOUND: return TKP_R_NOT_FOUND;
    case TK_ERR_UNSUPPORTED: return TKP_R_UNSUPPORTED;
    case TK_ERR_PASSPHRASE:
    case TK_ERR_PIN_INCORRECT:
    case TK_ERR_PIN_LOCKED:
    case TK_ERR_PIN_REQUIRED: return TKP_R_PIN;
    case TK_ERR_NO_TPM: return TKP_R_NO_TPM;
    case TK_ERR_TPM:
    case TK_ERR_TPM_FULL: return TKP_R_TPM;
    case TK_ERR_STORE:
    case TK_ERR_READONLY:
    case TK_ERR_IO:
    case TK_ERR_BUSY: return TKP_R_STORE;
    case TK_OK:
    case TK_ERR_INVALID:
    case TK_ERR_EXISTS: break;
    }
    return TKP_R_INVALID;
}

static void raise_v(tkp_ctx *prov, int reason, const char *file, int line, const char *func,
                    const char *fmt, va_list ap)
{
    if (prov && prov->new_error && prov->vset_error) {
        prov->new_error(prov->handle);
        if (prov->set_error_debug)
            prov->set_error_debug(prov->handle, file, line, func);
        prov->vset_error(prov->handle, (uint32_t)reason, fmt, ap);
        return;
    }
    /* No core error functions (cannot happen with OpenSSL 3): use libcrypto's queue. */
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    ERR_new();
    ERR_set_debug(file, line, func);
    ERR_set_error(ERR_LIB_PROV, reason, "tpm2: %s", msg);
}

void tkp_raise(tkp_ctx *prov, int reason, const char *file, int line, const char *func,
               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    raise_v(prov, reason, file, line, func, fmt, ap);
    va_end(ap);
}

void tkp_raise_rc(tkp_ctx *prov, tk_rc rc, const char *file, int line, const char *func,
                  const char *what)
{
    const char *msg = tk_errmsg();
    if (!msg || !*msg)
        msg = tk_rc_name(rc);
    tkp_raise(prov, reason_for(rc), file, line, func, "%s%s%s", what ? what : "",
              what ? ": " : "", msg);
}

/* ------------------------------------------------------------------ the store, lazily */

static tk_rc ks_open_locked(tkp_ctx *prov)
{
    tk_ks_config cfg = { .store_path = prov->store_path, .tcti = prov->tcti };
    if (prov->ks)
        return TK_OK;
    return tk_ks_open(&cfg, &prov->ks);
}

tk_ks *tkp_ks(tkp_ctx *prov)
{
    tk_ks *ks = NULL;
    tk_rc rc;

    pthread_mutex_lock(&prov->lock);
    rc = ks_open_locked(prov);
    if (rc == TK_OK)
        ks = prov->ks;
    pthread_mutex_unlock(&prov->lock);
    if (!ks)
        TKP_RAISE_RC(prov, rc, "opening the tpmkeys store");
    return ks;
}

tk_tpm *tkp_tpm(tkp_ctx *prov)
{
    tk_tpm *tpm = NULL;
    tk_rc rc = TK_OK;

    pthread_mutex_lock(&prov->lock);
    if (prov->ks) {
        tpm = tk_ks_tpm(prov->ks);
    } else if (prov->tpm) {
        tpm = prov->tpm;
    } else if (ks_open_locked(prov) == TK_OK) {
        /* One TPM connection per process: share the store's when there is a store. */
        tpm = tk_ks_tpm(prov->ks);
    } else {
        tk_clear_error();
        rc = tk_tpm_new(prov->tcti, &prov->tpm);
        tpm = prov->tpm;
    }
    pthread_mutex_unlock(&prov->lock);
    if (!tpm)
        TKP_RAISE_RC(prov, rc, "preparing the TPM connection");
    return tpm;
}

/* ------------------------------------------------------------------ algorithms */

static const OSSL_ALGORITHM keymgmts[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", TKP_PROPS, tkp_rsa_keymgmt_functions,
      "TPM-backed RSA keys" },
    { "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", TKP_PROPS, tkp_rsapss_keymgmt_functions,
      "TPM-backed RSA keys restricted to PSS" },
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", TKP_PROPS, tkp_ec_keymgmt_functions,
      "TPM-backed EC keys" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM signatures[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", TKP_PROPS, tkp_rsa_signature_functions,
      "RSA PKCS#1 v1.5 and PSS signatures in the TPM" },
    { "ECDSA", TKP_PROPS, tkp_ecdsa_signature_functions, "ECDSA signatures in the TPM" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM asym_ciphers[] = {
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", TKP_PROPS, tkp_rsa_asym_cipher_functions,
      "RSA OAEP and PKCS#1 v1.5 decryption in the TPM" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM keyexchs[] = {
    { "ECDH", TKP_PROPS, tkp_ecdh_keyexch_functions, "ECDH in the TPM" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM decoders[] = {
    { "DER", TKP_PROPS ",input=pem", tkp_tss2_pem_decoder_functions,
      "TSS2 PRIVATE KEY PEM to DER" },
    { "RSA:rsaEncryption:1.2.840.113549.1.1.1", TKP_PROPS ",input=der,structure=TSS2",
      tkp_tss2_rsa_decoder_functions, "TSS2 PRIVATE KEY (RSA)" },
    { "RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10", TKP_PROPS ",input=der,structure=TSS2",
      tkp_tss2_rsapss_decoder_functions, "TSS2 PRIVATE KEY (RSA restricted to PSS)" },
    { "EC:id-ecPublicKey:1.2.840.10045.2.1", TKP_PROPS ",input=der,structure=TSS2",
      tkp_tss2_ec_decoder_functions, "TSS2 PRIVATE KEY (EC)" },
    { NULL, NULL, NULL, NULL },
};

#define ENCODERS(alg)                                                                      \
    { alg, TKP_PROPS ",output=pem,structure=PrivateKeyInfo", tkp_tss2_pem_encoder_functions,  \
      "TSS2 PRIVATE KEY (PEM)" },                                                            \
    { alg, TKP_PROPS ",output=der,structure=PrivateKeyInfo", tkp_tss2_der_encoder_functions,  \
      "TSS2 PRIVATE KEY (DER)" },                                                            \
    { alg, TKP_PROPS ",output=text", tkp_text_encoder_functions, "TPM key as text" }

static const OSSL_ALGORITHM encoders[] = {
    ENCODERS("RSA:rsaEncryption:1.2.840.113549.1.1.1"),
    ENCODERS("RSA-PSS:RSASSA-PSS:1.2.840.113549.1.1.10"),
    ENCODERS("EC:id-ecPublicKey:1.2.840.10045.2.1"),
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM stores[] = {
    { "tpmkeys", TKP_PROPS, tkp_store_functions, "keys in the tpmkeys store" },
    { "handle", TKP_PROPS, tkp_handle_store_functions, "persistent TPM keys (0x81xxxxxx)" },
    { NULL, NULL, NULL, NULL },
};

static const OSSL_ALGORITHM *query_operation(void *provctx, int id, int *no_cache)
{
    (void)provctx;
    *no_cache = 0;
    switch (id) {
    case OSSL_OP_KEYMGMT: return keymgmts;
    case OSSL_OP_SIGNATURE: return signatures;
    case OSSL_OP_ASYM_CIPHER: return asym_ciphers;
    case OSSL_OP_KEYEXCH: return keyexchs;
    case OSSL_OP_DECODER: return decoders;
    case OSSL_OP_ENCODER: return encoders;
    case OSSL_OP_STORE: return stores;
    }
    return NULL;
}

static const OSSL_ITEM *get_reason_strings(void *provctx)
{
    (void)provctx;
    return reason_strings;
}

static const OSSL_PARAM *gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_BUILDINFO, OSSL_PARAM_UTF8_PTR, NULL, 0),
        OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

static int get_params(void *provctx, OSSL_PARAM params[])
{
    OSSL_PARAM *p;
    (void)provctx;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) &&
        !OSSL_PARAM_set_utf8_ptr(p, "tpmkeys TPM 2.0 key store provider"))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) &&
        !OSSL_PARAM_set_utf8_ptr(p, TPMKEYS_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) &&
        !OSSL_PARAM_set_utf8_ptr(p, "tpmkeys " TPMKEYS_VERSION))
        return 0;
    if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1))
        return 0;
    return 1;
}

/* ------------------------------------------------------------------ TLS groups */

/* The EC groups, for libssl: it takes the groups of whichever provider answers its
 * "EC" keymgmt fetch, so we must list them too (TLS 1.2 with an EC key fails with
 * "no shared cipher" otherwise). */
struct tls_group {
    const char *name, *internal;
    unsigned int id, secbits;
};

static const struct tls_group tls_groups[] = {
    { "secp256r1", "prime256v1", 23, 128 },
    { "P-256", "prime256v1", 23, 128 },
    { "secp384r1", "secp384r1", 24, 192 },
    { "P-384", "secp384r1", 24, 192 },
    { "secp521r1", "secp521r1", 25, 256 },
    { "P-521", "secp521r1", 25, 256 },
};

static int tls_group_capability(OSSL_CALLBACK *cb, void *arg)
{
    for (size_t i = 0; i < sizeof(tls_groups) / sizeof(tls_groups[0]); i++) {
        const struct tls_group *g = &tls_groups[i];
        unsigned int id = g->id, secbits = g->secbits;
        int mintls = TLS1_VERSION, maxtls = 0, mindtls = DTLS1_VERSION, maxdtls = 0;
        unsigned int is_kem = 0;
        OSSL_PARAM p[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, (char *)g->name, 0),
            OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL,
                                             (char *)g->internal, 0),
            OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, "EC", 0),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &mintls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &maxtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &mindtls),
            OSSL_PARAM_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &maxdtls),
            OSSL_PARAM_uint(OSSL_CAPABILITY_TLS_GROUP_IS_KEM, &is_kem),
            OSSL_PARAM_END,
        };
        if (!cb(p, arg))
            return 0;
    }
    return 1;
}

static int get_capabilities(void *provctx, const char *capability, OSSL_CALLBACK *cb, void *arg)
{
    (void)provctx;
    if (capability && !strcasecmp(capability, "TLS-GROUP"))
        return tls_group_capability(cb, arg);
    return 0;
}

/* ------------------------------------------------------------------ lifecycle */

EVP_MD *tkp_md_fetch(tkp_ctx *prov, const char *name)
{
    EVP_MD *md = NULL;

    pthread_mutex_lock(&prov->md_lock);
    for (size_t i = 0; i < prov->nmds; i++)
        if (!strcmp(prov->mds[i].name, name)) {
            md = EVP_MD_up_ref(prov->mds[i].md) ? prov->mds[i].md : NULL;
            break;
        }
    pthread_mutex_unlock(&prov->md_lock);
    if (md)
        return md;
    if (!(md = EVP_MD_fetch(prov->libctx, name, TKP_PROPQ_SW)))
        return NULL;
    pthread_mutex_lock(&prov->md_lock);
    if (prov->nmds < sizeof(prov->mds) / sizeof(prov->mds[0]) &&
        strlen(name) < sizeof(prov->mds[0].name) && EVP_MD_up_ref(md)) {
        strcpy(prov->mds[prov->nmds].name, name);
        prov->mds[prov->nmds++].md = md;
    }
    pthread_mutex_unlock(&prov->md_lock);
    return md;
}

static void tkp_ctx_free(tkp_ctx *prov)
{
    if (!prov)
        return;
    for (size_t i = 0; i < prov->nmds; i++)
        EVP_MD_free(prov->mds[i].md);
    pthread_mutex_destroy(&prov->md_lock);
    tk_ks_close(prov->ks);
    tk_tpm_free(prov->tpm);
    OSSL_LIB_CTX_free(prov->libctx);
    BIO_meth_free(prov->corebio);
    free(prov->store_path);
    free(prov->tcti);
    pthread_mutex_destroy(&prov->lock);
    free(prov);
}

static void teardown(void *provctx)
{
    tkp_ctx_free(provctx);
}

static const OSSL_DISPATCH provider_functions[] = {
    { OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))teardown },
    { OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))gettable_params },
    { OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))get_params },
    { OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query_operation },
    { OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))get_reason_strings },
    { OSSL_FUNC_PROVIDER_GET_CAPABILITIES, (void (*)(void))get_capabilities },
    { 0, NULL },
};

/* BIO methods over the core's OSSL_CORE_BIO, for decoders that get one. */
static OSSL_FUNC_BIO_read_ex_fn *core_bio_read_ex;
static OSSL_FUNC_BIO_gets_fn *core_bio_gets;
static OSSL_FUNC_BIO_write_ex_fn *core_bio_write_ex;

static int corebio_read_ex(BIO *bio, char *data, size_t len, size_t *got)
{
    return core_bio_read_ex(BIO_get_data(bio), data, len, got);
}

static int corebio_write_ex(BIO *bio, const char *data, size_t len, size_t *written)
{
    return core_bio_write_ex ? core_bio_write_ex(BIO_get_data(bio), data, len, written) : 0;
}

static int corebio_gets(BIO *bio, char *buf, int size)
{
    return core_bio_gets ? core_bio_gets(BIO_get_data(bio), buf, size) : -2;
}

static int corebio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static long corebio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)bio; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *corebio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tpm2 core BIO");
    if (!m || !BIO_meth_set_read_ex(m, corebio_read_ex) || !BIO_meth_set_create(m, corebio_create) ||
        !BIO_meth_set_gets(m, corebio_gets) || !BIO_meth_set_write_ex(m, corebio_write_ex) ||
        !BIO_meth_set_ctrl(m, corebio_ctrl)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

/* Read a provider parameter from its openssl.cnf section (e.g. tpmkeys-store = ...). */
static int config_string(const OSSL_CORE_HANDLE *handle, OSSL_FUNC_core_get_params_fn *get,
                         const char *key, char **out)
{
    const char *val = NULL;
    OSSL_PARAM p[] = { OSSL_PARAM_utf8_ptr(key, &val, 0), OSSL_PARAM_END };
    if (!get || !get(handle, p) || !val || !*val)
        return 1;
    *out = strdup(val);
    return *out != NULL;
}

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx);

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
    OSSL_FUNC_core_get_params_fn *core_get_params = NULL;
    tkp_ctx *prov = calloc(1, sizeof(*prov));

    if (!prov)
        return 0;
    tk_module_pin((const void *)&tkp_raise);
    pthread_mutex_init(&prov->lock, NULL);
    pthread_mutex_init(&prov->md_lock, NULL);
    prov->handle = handle;
    for (const OSSL_DISPATCH *d = in; d && d->function_id; d++) {
        switch (d->function_id) {
        case OSSL_FUNC_CORE_GET_PARAMS:
            core_get_params = OSSL_FUNC_core_get_params(d);
            break;
        case OSSL_FUNC_CORE_NEW_ERROR:
            prov->new_error = OSSL_FUNC_core_new_error(d);
            break;
        case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
            prov->set_error_debug = OSSL_FUNC_core_set_error_debug(d);
            break;
        case OSSL_FUNC_CORE_VSET_ERROR:
            prov->vset_error = OSSL_FUNC_core_vset_error(d);
            break;
        case OSSL_FUNC_BIO_READ_EX:
            core_bio_read_ex = OSSL_FUNC_BIO_read_ex(d);
            break;
        case OSSL_FUNC_BIO_WRITE_EX:
            core_bio_write_ex = OSSL_FUNC_BIO_write_ex(d);
            break;
        case OSSL_FUNC_BIO_GETS:
            core_bio_gets = OSSL_FUNC_BIO_gets(d);
            break;
        }
    }
    if (!core_bio_read_ex || !(prov->corebio = corebio_method()) ||
        !config_string(handle, core_get_params, "tpmkeys-store", &prov->store_path) ||
        !config_string(handle, core_get_params, "tpmkeys-tcti", &prov->tcti) ||
        !(prov->libctx = OSSL_LIB_CTX_new_child(handle, in))) {
        tkp_ctx_free(prov);
        return 0;
    }
    *out = provider_functions;
    *provctx = prov;
    return 1;
}
