/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: software private key files, the input of `tpmkeys create-key
 * --import FILE` (tk_keyfile_parse_private: PEM and DER, PKCS#1, SEC1, PKCS#8, encrypted
 * PKCS#8, traditional encrypted PEM, OpenSSH).
 *
 * Each input is parsed without a passphrase and, when the parser asks for one, again
 * with the one the encrypted seeds use.
 * Invariants: a failure always says why (tk_errmsg); a key the parser accepts is one a
 * TPM can hold, so it converts to TPM public/sensitive areas, and the public area
 * converts back to the same public key.
 */
#include "config.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "fuzz.h"

static void accepted(EVP_PKEY *pkey)
{
    TPM2B_PUBLIC pub;
    TPM2B_SENSITIVE sens;
    EVP_PKEY *back = NULL;
    tk_rc rc;

    rc = tk_pkey_to_tpm(pkey, NULL, &pub, &sens);
    OPENSSL_cleanse(&sens, sizeof(sens));
    /* A well-formed key a TPM cannot hold (unbalanced primes, odd sizes) is refused, with
     * a reason: that is the right answer, not a broken invariant. */
    if (rc == TK_ERR_UNSUPPORTED || rc == TK_ERR_INVALID) {
        FUZZ_CHECK(*tk_errmsg() != '\0', "%s without a message", tk_rc_name(rc));
        return;
    }
    FUZZ_CHECK(rc == TK_OK, "a parsed key does not convert to TPM areas: %s", tk_rc_name(rc));
    rc = tk_public_to_pkey(&pub, &back);
    FUZZ_CHECK(rc == TK_OK, "the public area of a parsed key does not convert back: %s",
               tk_rc_name(rc));
    FUZZ_CHECK(EVP_PKEY_eq(pkey, back) == 1, "the TPM public area is another key");
    EVP_PKEY_free(back);
}

static tk_rc parse(const uint8_t *data, size_t size, const tk_secret *pass)
{
    EVP_PKEY *pkey = NULL;
    tk_rc rc;

    tk_clear_error();
    rc = tk_keyfile_parse_private(data, size, pass, &pkey);
    if (rc != TK_OK) {
        FUZZ_CHECK(pkey == NULL, "the key was handed out on failure");
        FUZZ_CHECK(*tk_errmsg() != '\0', "%s without a message", tk_rc_name(rc));
        FUZZ_CHECK(rc != TK_ERR_NOMEM, "out of memory on %zu bytes", size);
    } else {
        FUZZ_CHECK(pkey != NULL, "TK_OK without a key");
        accepted(pkey);
        EVP_PKEY_free(pkey);
    }
    ERR_clear_error();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tk_secret pass;

    if (tk_secret_set(&pass, FUZZ_PASSPHRASE, strlen(FUZZ_PASSPHRASE)) != TK_OK)
        return 0;
    /* The passphrase only matters where the parser asked for one. */
    if (parse(data, size, NULL) == TK_ERR_PASSPHRASE)
        parse(data, size, &pass);
    tk_secret_clear(&pass);
    return 0;
}
