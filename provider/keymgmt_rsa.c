/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Key managers for TPM-backed RSA keys (the shared parts are in keymgmt_common.c):
 * "RSA", and "RSA-PSS" for keys the TPM restricts to PSS signatures (scheme RSAPSS:
 * made by `openssl genpkey -algorithm RSA-PSS`, tpm2-openssl or tpm2-tools).  Both
 * name the "RSA" signature and cipher implementations; for an RSA-PSS key the
 * public key carries the restriction, and the signature context enforces it.
 */
#include "config.h"

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider.h"

static OSSL_FUNC_keymgmt_new_fn rsa_new;
static OSSL_FUNC_keymgmt_load_fn rsa_load;
static OSSL_FUNC_keymgmt_gen_init_fn rsa_gen_init;
static OSSL_FUNC_keymgmt_gen_settable_params_fn rsa_gen_settable_params;
static OSSL_FUNC_keymgmt_import_fn rsa_import;
static OSSL_FUNC_keymgmt_import_types_fn rsa_key_types;
static OSSL_FUNC_keymgmt_gettable_params_fn rsa_gettable_params;
static OSSL_FUNC_keymgmt_query_operation_name_fn rsa_query_operation_name;
static OSSL_FUNC_keymgmt_new_fn rsapss_new;
static OSSL_FUNC_keymgmt_load_fn rsapss_load;
static OSSL_FUNC_keymgmt_gen_init_fn rsapss_gen_init;
static OSSL_FUNC_keymgmt_gen_settable_params_fn rsapss_gen_settable_params;
static OSSL_FUNC_keymgmt_import_fn rsapss_import;
static OSSL_FUNC_keymgmt_import_types_fn rsapss_key_types;

static void *rsa_new(void *provctx)
{
    return tkp_key_new(provctx, TK_KEY_RSA);
}

static void *rsapss_new(void *provctx)
{
    tkp_key *key = tkp_key_new(provctx, TK_KEY_RSA);
    if (key)
        key->pss = true;
    return key;
}

static void *rsa_load(const void *reference, size_t reference_sz)
{
    return tkp_km_load(reference, reference_sz, TK_KEY_RSA, false);
}

static void *rsapss_load(const void *reference, size_t reference_sz)
{
    return tkp_km_load(reference, reference_sz, TK_KEY_RSA, true);
}

static int rsapss_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return tkp_km_import(keydata, "RSA-PSS", selection, params);
}

static const OSSL_PARAM *rsapss_key_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_MASKGENFUNC, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, NULL),
        OSSL_PARAM_END,
    };
    return selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_OTHER_PARAMETERS)
               ? types : NULL;
}

static int rsa_import(void *keydata, int selection, const OSSL_PARAM params[])
{
    return tkp_km_import(keydata, "RSA", selection, params);
}

static const OSSL_PARAM *rsa_key_types(int selection)
{
    static const OSSL_PARAM types[] = {
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    return (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? types : NULL;
}

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

static const char *rsa_query_operation_name(int operation_id)
{
    (void)operation_id;
    return "RSA";
}

static void *rsa_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    return tkp_km_gen_init(provctx, TK_KEY_RSA, false, selection, params);
}

static void *rsapss_gen_init(void *provctx, int selection, const OSSL_PARAM params[])
{
    return tkp_km_gen_init(provctx, TK_KEY_RSA, true, selection, params);
}

static const OSSL_PARAM *rsapss_gen_settable_params(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_RSA_BITS, NULL),
        OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_PRIMES, NULL),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_DIGEST, NULL, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, NULL, 0),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, NULL),
        OSSL_PARAM_utf8_string("tpmkeys-label", NULL, 0),
        OSSL_PARAM_utf8_string("tpmkeys-token", NULL, 0),
        OSSL_PARAM_END,
    };
    (void)genctx; (void)provctx;
    return p;
}

static const OSSL_PARAM *rsa_gen_settable_params(void *genctx, void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_PKEY_PARAM_RSA_BITS, NULL),
        OSSL_PARAM_size_t(OSSL_PKEY_PARAM_RSA_PRIMES, NULL),
        OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
        OSSL_PARAM_utf8_string("tpmkeys-label", NULL, 0),
        OSSL_PARAM_utf8_string("tpmkeys-token", NULL, 0),
        OSSL_PARAM_END,
    };
    (void)genctx; (void)provctx;
    return p;
}

const OSSL_DISPATCH tkp_rsa_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))rsa_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))tkp_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))rsa_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))tkp_km_gen_set_template },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))tkp_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))tkp_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))rsa_new },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))tkp_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))rsa_load },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))tkp_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))tkp_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))rsa_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))rsa_key_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))tkp_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))rsa_key_types },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))tkp_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))rsa_gettable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))rsa_query_operation_name },
    { OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))tkp_km_dup },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_rsapss_keymgmt_functions[] = {
    { OSSL_FUNC_KEYMGMT_GEN_INIT, (void (*)(void))rsapss_gen_init },
    { OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, (void (*)(void))tkp_km_gen_set_params },
    { OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, (void (*)(void))rsapss_gen_settable_params },
    { OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, (void (*)(void))tkp_km_gen_set_template },
    { OSSL_FUNC_KEYMGMT_GEN, (void (*)(void))tkp_km_gen },
    { OSSL_FUNC_KEYMGMT_GEN_CLEANUP, (void (*)(void))tkp_km_gen_cleanup },
    { OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))rsapss_new },
    { OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))tkp_km_free },
    { OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))rsapss_load },
    { OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))tkp_km_has },
    { OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))tkp_km_match },
    { OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))rsapss_import },
    { OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))rsapss_key_types },
    { OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))tkp_km_export },
    { OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))rsapss_key_types },
    { OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))tkp_km_get_params },
    { OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))rsa_gettable_params },
    { OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, (void (*)(void))rsa_query_operation_name },
    { OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))tkp_km_dup },
    { 0, NULL },
};
