/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: TSS2 PRIVATE KEY files (tk_tss2key_parse, PEM and DER), the input of
 * the provider's decoder (nginx ssl_certificate_key) and of `tpmkeys create-key --import`,
 * and the TPM structures inside them (TPM2B_PUBLIC -> EVP_PKEY, the object name).
 *
 * Invariants: a failure says why; an accepted file holds exactly one TPM2B_PUBLIC and one
 * TPM2B_PRIVATE; a loadable key without policies encodes again (PEM and DER) and the
 * encoding parses back to the same key.
 */
#include "config.h"

#include <string.h>

#include <openssl/err.h>

#include "fuzz.h"

static bool buf_eq(const tk_buf *a, const tk_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static void same_key(const tk_tss2key *a, const tk_tss2key *b)
{
    FUZZ_CHECK(a->type == b->type && a->parent == b->parent &&
               a->empty_auth == b->empty_auth && a->rsa_parent == b->rsa_parent,
               "re-encoded key differs: type %d/%d parent %08x/%08x", a->type, b->type,
               a->parent, b->parent);
    FUZZ_CHECK(buf_eq(&a->pub, &b->pub) && buf_eq(&a->priv, &b->priv),
               "re-encoded key has other blobs");
    FUZZ_CHECK((!a->description && !b->description) ||
               (a->description && b->description && !strcmp(a->description, b->description)),
               "re-encoded key has another description");
}

static void roundtrip(const tk_tss2key *k, bool pem)
{
    tk_buf enc = { 0 };
    tk_tss2key again;
    tk_rc rc;

    memset(&again, 0, sizeof(again));
    rc = tk_tss2key_encode(k, pem, &enc);
    FUZZ_CHECK(rc == TK_OK, "a parsed loadable key does not encode: %s", tk_rc_name(rc));
    rc = tk_tss2key_parse(enc.data, enc.len, &again);
    FUZZ_CHECK(rc == TK_OK, "our own encoding does not parse: %s", tk_rc_name(rc));
    same_key(k, &again);
    tk_tss2key_free(&again);
    tk_buf_free(&enc);
}

static void accepted(const tk_tss2key *k)
{
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TPM2B_NAME name;
    EVP_PKEY *pkey = NULL;

    FUZZ_CHECK(tk_public_unmarshal(&k->pub, &pub) == TK_OK, "accepted pubkey does not unmarshal");
    FUZZ_CHECK(tk_private_unmarshal(&k->priv, &priv) == TK_OK,
               "accepted privkey does not unmarshal");
    /* What the provider's decoder and `tpmkeys show` do with the public area next. */
    (void)tk_alg_from_public(&pub);
    if (tk_public_to_pkey(&pub, &pkey) == TK_OK)
        EVP_PKEY_free(pkey);
    else
        FUZZ_CHECK(*tk_errmsg(), "tk_public_to_pkey failed without a message");
    (void)tk_public_name(&pub, &name);
    if (k->type == 3 && !k->has_policy && !k->has_secret && !k->has_auth_policy) {
        roundtrip(k, true);
        roundtrip(k, false);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tk_tss2key k;
    tk_rc rc;

    memset(&k, 0, sizeof(k));
    tk_clear_error();
    rc = tk_tss2key_parse(data, size, &k);
    if (rc == TK_OK) {
        accepted(&k);
        tk_tss2key_free(&k);
    } else {
        FUZZ_CHECK(*tk_errmsg() != '\0', "%s without a message", tk_rc_name(rc));
        FUZZ_CHECK(!k.pub.data && !k.priv.data && !k.description, "output written on failure");
    }
    ERR_clear_error();
    return 0;
}
