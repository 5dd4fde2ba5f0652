/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the RSA and EC key managers share: the key object is the same, and the
 * public side is answered by the software public key (key->pub).
 *
 * Export of a TPM key gives the public parts only and refuses when the private
 * key is asked for: OpenSSL 3.0 then runs signatures in this provider instead of
 * moving the key to another one ("missing private key").
 *
 * Software keys: when this provider is loaded before the default one, OpenSSL
 * fetches our key managers for every "RSA"/"EC" key it builds (certificate
 * public keys, TLS ephemeral keys, fromdata).  Those keys are kept as software
 * EVP_PKEYs (key->soft) and every operation on them is delegated to a software
 * provider, so the load order does not matter.
 */
#include "config.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/params.h>

#include "provider.h"

void *tkp_km_load(const void *reference, size_t reference_sz, tk_keytype type, bool pss)
{
    tkp_key *key;

    if (!reference || reference_sz != sizeof(key))
        return NULL;
    key = *(tkp_key *const *)reference;
    if (!key || key->type != type || key->pss != pss)
        return NULL;
    /* Take the object: the decoder or store loader gave it up. */
    *(tkp_key **)reference = NULL;
    return key;
}

void tkp_km_free(void *keydata)
{
    tkp_key_free(keydata);
}

int tkp_km_has(const void *keydata, int selection)
{
    const tkp_key *key = keydata;

    if (!key)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0 &&
        (selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS) == 0)
        return 1;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) && !key->pub)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && !key->priv && !key->soft_priv)
        return 0;
    if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && key->type == TK_KEY_EC &&
        !key->pub)
        return 0;
    return 1;
}

int tkp_km_match(const void *k1, const void *k2, int selection)
{
    const tkp_key *a = k1, *b = k2;

    if (!a || !b || !a->pub || !b->pub || a->type != b->type || a->pss != b->pss)
        return 0;
    if (selection & OSSL_KEYMGMT_SELECT_KEYPAIR)
        return EVP_PKEY_eq(a->pub, b->pub) == 1;
    if (selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)
        return EVP_PKEY_parameters_eq(a->pub, b->pub) == 1;
    return 1;
}

int tkp_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
    tkp_key *key = keydata;
    int pubsel = selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS);

    if (!key || !key->pub)
        return 0;
    if (key->soft)
        return EVP_PKEY_export(key->pub, selection, cb, cbarg) > 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && key->priv)
        return 0;  /* the private key never leaves the TPM */
    if (!pubsel)
        return 0;
    return EVP_PKEY_export(key->pub, pubsel, cb, cbarg) > 0;
}

int tkp_km_import(void *keydata, const char *type, int selection, const OSSL_PARAM params[])
{
    tkp_key *key = keydata;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pkey = NULL;
    bool private = (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) &&
                   (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D) ||
                    OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY));

    if (!key || key->priv)
        return 0;
    /* A software key handed to us (we answered an unqualified fetch): keep it in software. */
    ctx = EVP_PKEY_CTX_new_from_name(key->prov->libctx, type, TKP_PROPQ_SW);
    if (ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
        EVP_PKEY_fromdata(ctx, &pkey, selection, (OSSL_PARAM *)params) > 0) {
        EVP_PKEY_free(key->pub);
        key->pub = pkey;
        key->soft = true;
        key->soft_priv = private;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey != NULL;
}

int tkp_km_get_params(void *keydata, OSSL_PARAM params[])
{
    tkp_key *key = keydata;
    if (!key || !key->pub)
        return 0;
    return EVP_PKEY_get_params(key->pub, params);
}

int tkp_km_set_params(void *keydata, const OSSL_PARAM params[])
{
    tkp_key *key = keydata;
    const OSSL_PARAM *p;

    if (!key)
        return 0;
    p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
    if (!p)
        return 1;
    if (!key->soft || !key->pub) {
        TKP_RAISE(key->prov, TKP_R_UNSUPPORTED, "the public key of a TPM key cannot be changed");
        return 0;
    }
    return EVP_PKEY_set_params(key->pub, (OSSL_PARAM *)params);
}

void *tkp_km_dup(const void *keydata, int selection)
{
    return tkp_key_dup(keydata, selection);
}
