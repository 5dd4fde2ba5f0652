/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: the TPM structures tpmkeys reads from key files, store rows and TPM
 * answers (store/tpmconv.c).  The first byte picks what the rest is:
 *   0  a TPM2B_PUBLIC: unmarshal, marshal again (same bytes), to an EVP_PKEY, its name
 *   1  a TPM2B_PRIVATE: unmarshal, marshal again (same bytes)
 *   2  a TPMT_SIGNATURE: to the DER and r||s encodings (P-256/384/521 sizes)
 *   3  a TPM2B_PUBLIC of a parent (the SRK): wrap a fixed software key for TPM2_Import
 */
#include "config.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <tss2/tss2_mu.h>

#include "fuzz.h"

static TPM2B_PUBLIC obj_pub;
static TPM2B_SENSITIVE obj_sens;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");

    (void)argc, (void)argv;
    if (!pkey || tk_pkey_to_tpm(pkey, NULL, &obj_pub, &obj_sens) != TK_OK)
        abort();
    EVP_PKEY_free(pkey);
    return 0;
}

static void public_area(const tk_buf *b)
{
    TPM2B_PUBLIC pub;
    TPM2B_NAME name;
    EVP_PKEY *pkey = NULL;
    tk_buf again = { 0 };

    if (tk_public_unmarshal(b, &pub) != TK_OK) {
        FUZZ_CHECK(*tk_errmsg(), "tk_public_unmarshal failed without a message");
        return;
    }
    FUZZ_CHECK(tk_public_marshal(&pub, &again) == TK_OK, "an unmarshalled public area "
               "does not marshal");
    FUZZ_CHECK(again.len == b->len && !memcmp(again.data, b->data, b->len),
               "TPM2B_PUBLIC does not marshal back to its own bytes");
    tk_buf_free(&again);
    (void)tk_alg_from_public(&pub);
    if (tk_public_to_pkey(&pub, &pkey) == TK_OK)
        EVP_PKEY_free(pkey);
    else
        FUZZ_CHECK(*tk_errmsg(), "tk_public_to_pkey failed without a message");
    (void)tk_public_name(&pub, &name);
}

static void private_area(const tk_buf *b)
{
    TPM2B_PRIVATE priv;
    tk_buf again = { 0 };

    if (tk_private_unmarshal(b, &priv) != TK_OK)
        return;
    FUZZ_CHECK(tk_private_marshal(&priv, &again) == TK_OK, "an unmarshalled private area "
               "does not marshal");
    FUZZ_CHECK(again.len == b->len && !memcmp(again.data, b->data, b->len),
               "TPM2B_PRIVATE does not marshal back to its own bytes");
    tk_buf_free(&again);
}

static void signature(const tk_buf *b)
{
    static const int coords[] = { 32, 48, 66 };
    TPMT_SIGNATURE sig;
    size_t off = 0;

    memset(&sig, 0, sizeof(sig));
    if (Tss2_MU_TPMT_SIGNATURE_Unmarshal(b->data, b->len, &off, &sig) != TSS2_RC_SUCCESS)
        return;
    for (size_t i = 0; i < sizeof(coords) / sizeof(coords[0]); i++) {
        for (int der = 0; der < 2; der++) {
            tk_buf out = { 0 };
            if (tk_sig_to_bytes(&sig, coords[i], der, &out) == TK_OK && !der &&
                sig.sigAlg == TPM2_ALG_ECDSA)
                FUZZ_CHECK(out.len == 2 * (size_t)coords[i], "r||s of %zu bytes for %d-byte "
                           "coordinates", out.len, coords[i]);
            tk_buf_free(&out);
        }
    }
}

static void parent(const tk_buf *b)
{
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE dup;
    TPM2B_ENCRYPTED_SECRET seed;

    if (tk_public_unmarshal(b, &pub) != TK_OK)
        return;
    (void)tk_duplicate_wrap(&pub, &obj_pub, &obj_sens, &dup, &seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tk_buf b;

    if (size < 1)
        return 0;
    b.data = (uint8_t *)data + 1;
    b.len = size - 1;
    tk_clear_error();
    switch (data[0] & 3) {
    case 0:
        public_area(&b);
        break;
    case 1:
        private_area(&b);
        break;
    case 2:
        signature(&b);
        break;
    default:
        parent(&b);
        break;
    }
    ERR_clear_error();
    return 0;
}
