/* SPDX-License-Identifier: BSD-3-Clause */
/* The first private (or only) key an OSSL_STORE URI yields, for the C tests of the provider. */
#ifndef TPMKEYS_TESTS_STORE_LOAD_H
#define TPMKEYS_TESTS_STORE_LOAD_H

#include <openssl/store.h>

/* lc NULL: the default library context.  NULL when the URI yields no key. */
static EVP_PKEY *store_load_key(OSSL_LIB_CTX *lc, const char *uri)
{
    OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, lc, NULL, NULL, NULL, NULL, NULL, NULL);
    EVP_PKEY *pk = NULL;

    if (!st)
        return NULL;
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (!pk && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (!info)
            break;
        if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            pk = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(st);
    return pk;
}

#endif
