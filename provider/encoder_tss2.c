/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Encoders for our keys:
 *   PrivateKeyInfo (pem, der)  the TPM key as a TSS2 PRIVATE KEY file: what
 *                              PEM_write_PrivateKey and `openssl genpkey -out` write
 *   text                       what `openssl pkey -text` prints
 * Public keys (SubjectPublicKeyInfo) need no encoder of ours: the key manager exports
 * the public parts to the default provider's encoders.  Software keys (see
 * keymgmt_common.c) are encoded by a software provider.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/encoder.h>

#include "provider.h"

typedef struct {
    tkp_ctx *prov;
    bool pem;
} enc_ctx;

static OSSL_FUNC_encoder_newctx_fn pem_newctx, der_newctx;
static OSSL_FUNC_encoder_freectx_fn enc_freectx;
static OSSL_FUNC_encoder_does_selection_fn tss2_does_selection, text_does_selection;
static OSSL_FUNC_encoder_encode_fn tss2_encode, text_encode;

static void *enc_newctx(void *provctx, bool pem)
{
    enc_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->pem = pem;
    return ctx;
}

static void *pem_newctx(void *provctx) { return enc_newctx(provctx, true); }
static void *der_newctx(void *provctx) { return enc_newctx(provctx, false); }

static void enc_freectx(void *ctx)
{
    free(ctx);
}

static int tss2_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
}

static int text_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

static BIO *out_bio(tkp_ctx *prov, OSSL_CORE_BIO *cout)
{
    BIO *bio = BIO_new(prov->corebio);
    if (bio)
        BIO_set_data(bio, cout);
    else
        TKP_RAISE(prov, TKP_R_NOMEM, "out of memory");
    return bio;
}

/* A software key: let a software provider write it. */
static int soft_encode(const tkp_key *key, BIO *bio, int selection,
                       const char *type, const char *structure, OSSL_PASSPHRASE_CALLBACK *cb,
                       void *cbarg)
{
    OSSL_ENCODER_CTX *e = OSSL_ENCODER_CTX_new_for_pkey(key->pub, selection, type, structure,
                                                       TKP_PROPQ_SW);
    int ok = e && OSSL_ENCODER_CTX_set_passphrase_cb(e, cb, cbarg) && OSSL_ENCODER_to_bio(e, bio);
    OSSL_ENCODER_CTX_free(e);
    return ok;
}

/* The TSS2 PRIVATE KEY bytes of a TPM key. */
static int tss2_bytes(const tkp_key *key, bool pem, tk_buf *out)
{
    tk_rc rc;

    if (key->skey) {
        tk_ks *ks = tkp_ks(key->prov);
        if (!ks)
            return 0;
        rc = tk_ks_export_tss2(ks, key->skey, NULL, pem, out);
    } else {
        tk_tss2key f;
        memset(&f, 0, sizeof(f));
        f.type = 3;
        f.empty_auth = key->auth.len == 0;
        f.parent = key->parent ? key->parent : TK_SRK_HANDLE;
        f.pub = key->tpub;
        f.priv = key->tpriv;
        rc = tk_tss2key_encode(&f, pem, out);
    }
    if (rc != TK_OK) {
        char what[128];
        snprintf(what, sizeof(what), "writing %s as a TSS2 key file", tkp_key_name(key));
        TKP_RAISE_RC(key->prov, rc, what);
        return 0;
    }
    return 1;
}

static int tss2_encode(void *vctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                       const OSSL_PARAM obj_abstract[], int selection,
                       OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    enc_ctx *ctx = vctx;
    const tkp_key *key = obj_raw;
    tk_buf out = { 0 };
    BIO *bio;
    int ok = 0;

    (void)obj_abstract;
    if (!key || !(bio = out_bio(ctx->prov, cout)))
        return 0;
    if (key->soft) {
        ok = soft_encode(key, bio, selection, ctx->pem ? "PEM" : "DER",
                         "PrivateKeyInfo", cb, cbarg);
    } else if (!key->priv) {
        TKP_RAISE(ctx->prov, TKP_R_NO_PRIVATE, "no private key to write");
    } else if (tss2_bytes(key, ctx->pem, &out)) {
        size_t written = 0;
        ok = BIO_write_ex(bio, out.data, out.len, &written) && written == out.len;
    }
    tk_buf_free(&out);
    BIO_free(bio);
    return ok;
}

static int text_encode(void *vctx, OSSL_CORE_BIO *cout, const void *obj_raw,
                       const OSSL_PARAM obj_abstract[], int selection,
                       OSSL_PASSPHRASE_CALLBACK *cb, void *cbarg)
{
    enc_ctx *ctx = vctx;
    const tkp_key *key = obj_raw;
    BIO *bio;
    int ok;

    (void)obj_abstract; (void)cb; (void)cbarg;
    if (!key || !key->pub || !(bio = out_bio(ctx->prov, cout)))
        return 0;
    if (key->soft) {
        ok = soft_encode(key, bio, selection, "TEXT", NULL, NULL, NULL);
    } else {
        ok = BIO_printf(bio, "TPM %s key (tpmkeys): %s%s\n",
                        tkp_key_type_name(key), tkp_key_name(key),
                        key->priv ? ", private part inside the TPM" : "") > 0 &&
             EVP_PKEY_print_public(bio, key->pub, 0, NULL) > 0;
    }
    BIO_free(bio);
    return ok;
}

const OSSL_DISPATCH tkp_tss2_pem_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))pem_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))tss2_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))tss2_encode },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_tss2_der_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))der_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))tss2_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))tss2_encode },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_text_encoder_functions[] = {
    { OSSL_FUNC_ENCODER_NEWCTX, (void (*)(void))der_newctx },
    { OSSL_FUNC_ENCODER_FREECTX, (void (*)(void))enc_freectx },
    { OSSL_FUNC_ENCODER_DOES_SELECTION, (void (*)(void))text_does_selection },
    { OSSL_FUNC_ENCODER_ENCODE, (void (*)(void))text_encode },
    { 0, NULL },
};
