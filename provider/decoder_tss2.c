/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Decoders for TSS2 PRIVATE KEY files (tpm2-openssl, openssl_tpm2_engine,
 * ssh-tpm-agent, `tpmkeys export --tss2`):
 *   "DER"  input=pem            PEM armour "TSS2 PRIVATE KEY" -> DER, structure TSS2
 *   "RSA"  input=der,structure=TSS2   DER -> RSA key object
 *   "RSA-PSS" input=der,structure=TSS2   DER -> RSA key restricted to PSS
 *   "EC"   input=der,structure=TSS2   DER -> EC key object
 * With these in an activated provider, PEM_read_bio_PrivateKey (nginx) and the
 * openssl CLI read such files unchanged.  Data of any other kind is left to the
 * other decoders (we return "nothing found", not an error).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "provider.h"

#define TSS2_PEM_NAME "TSS2 PRIVATE KEY"
#define TSS2_MAX_FILE (256 * 1024)

typedef struct {
    tkp_ctx *prov;
    const char *type;   /* the key type decoded; NULL for the PEM-to-DER step */
} dec_ctx;

static OSSL_FUNC_decoder_newctx_fn pem_newctx, rsa_newctx, rsapss_newctx, ec_newctx;
static OSSL_FUNC_decoder_freectx_fn dec_freectx;
static OSSL_FUNC_decoder_decode_fn pem_decode, key_decode;
static OSSL_FUNC_decoder_does_selection_fn dec_does_selection;

static void *dec_newctx(void *provctx, const char *type)
{
    dec_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->type = type;
    return ctx;
}

static void *pem_newctx(void *provctx) { return dec_newctx(provctx, NULL); }
static void *rsa_newctx(void *provctx) { return dec_newctx(provctx, "RSA"); }
static void *rsapss_newctx(void *provctx) { return dec_newctx(provctx, "RSA-PSS"); }
static void *ec_newctx(void *provctx) { return dec_newctx(provctx, "EC"); }

static void dec_freectx(void *ctx)
{
    free(ctx);
}

static int dec_does_selection(void *provctx, int selection)
{
    (void)provctx;
    return selection == 0 || (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
}

static BIO *core_bio(tkp_ctx *prov, OSSL_CORE_BIO *cin)
{
    BIO *bio = BIO_new(prov->corebio);
    if (bio)
        BIO_set_data(bio, cin);
    return bio;
}

/* The whole input (key files are small); NULL when unreadable or too big. */
static uint8_t *read_all(BIO *bio, size_t *len)
{
    size_t cap = 4096, n = 0, got;
    uint8_t *buf = malloc(cap), *nb;

    while (buf && BIO_read_ex(bio, buf + n, cap - n, &got) && got > 0) {
        n += got;
        if (n == cap) {
            if (cap >= TSS2_MAX_FILE || !(nb = realloc(buf, cap * 2))) {
                OPENSSL_clear_free(buf, n);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static int pem_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    dec_ctx *ctx = vctx;
    BIO *bio = core_bio(ctx->prov, cin);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    long derlen = 0;
    int ok = 1;

    (void)selection; (void)pw_cb; (void)pw_cbarg;
    if (!bio)
        return 0;
    ERR_set_mark();
    if (PEM_read_bio(bio, &name, &header, &der, &derlen) > 0 && !strcmp(name, TSS2_PEM_NAME)) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE, "TSS2", 0),
            OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der, (size_t)derlen),
            OSSL_PARAM_END,
        };
        ERR_pop_to_mark();
        ok = data_cb(params, data_cbarg);
    } else {
        ERR_pop_to_mark();  /* not ours: leave it to the other decoders, quietly */
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_clear_free(der, derlen > 0 ? (size_t)derlen : 0);
    BIO_free(bio);
    return ok;
}

int tkp_pass_key(tkp_key *key, OSSL_CALLBACK *object_cb, void *object_cbarg)
{
    int type = OSSL_OBJECT_PKEY, ok;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
                                         (char *)tkp_key_type_name(key), 0),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &key, sizeof(key)),
        OSSL_PARAM_END,
    };
    ok = object_cb(params, object_cbarg);
    /* The key manager's load() took the object and cleared our pointer, or it did not. */
    tkp_key_free(key);
    return ok;
}

/* Ask for the key file's password through OpenSSL's passphrase callback. */
static int file_password(tkp_ctx *prov, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg,
                         tk_secret *auth)
{
    char pass[TK_SECRET_MAX];
    size_t len = 0;
    OSSL_PARAM info[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, "TSS2 key password", 0),
        OSSL_PARAM_END,
    };
    int ok = pw_cb && pw_cb(pass, sizeof(pass), &len, info, pw_cbarg);

    if (!ok) {
        TKP_RAISE(prov, TKP_R_PIN,
                  "the TSS2 key file says the key has a password (emptyAuth is not TRUE) and "
                  "none was given: pass it with -passin (an empty one for keys made by "
                  "tpm2-tools without a password)");
    } else if (tk_secret_set(auth, pass, len) != TK_OK) {
        TKP_RAISE(prov, TKP_R_PIN, "the key password is longer than %d bytes", TK_SECRET_MAX);
        ok = 0;
    }
    OPENSSL_cleanse(pass, sizeof(pass));
    return ok;
}

/* OpenSSL's name for the key type in a TSS2 file's public blob (NULL when unreadable:
 * the loader says why). */
static const char *tss2_type(const tk_tss2key *f)
{
    TPM2B_PUBLIC pub;
    if (tk_public_unmarshal(&f->pub, &pub) != TK_OK) {
        tk_clear_error();
        return NULL;
    }
    if (pub.publicArea.type == TPM2_ALG_RSA)
        return tk_public_pss_hash(&pub) ? "RSA-PSS" : "RSA";
    return pub.publicArea.type == TPM2_ALG_ECC ? "EC" : NULL;
}

tkp_key *tkp_tss2_load(tkp_ctx *prov, const uint8_t *data, size_t len, const char *want,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg, bool *notmine)
{
    tk_tss2key f;
    const char *t;
    tk_secret auth;
    tkp_key *key = NULL;
    tk_rc rc;

    memset(&f, 0, sizeof(f));
    memset(&auth, 0, sizeof(auth));
    *notmine = false;
    rc = tk_tss2key_parse(data, len, &f);
    if (rc == TK_ERR_NOT_FOUND) {
        tk_clear_error();
        *notmine = true;
        return NULL;
    }
    if (rc != TK_OK) {
        TKP_RAISE_RC(prov, rc, "reading the TSS2 key file");
        return NULL;
    }
    t = tss2_type(&f);
    if (want && t && strcmp(t, want)) {
        *notmine = true;  /* the other key type's decoder takes it */
        tk_tss2key_free(&f);
        return NULL;
    }
    if (f.empty_auth || file_password(prov, pw_cb, pw_cbarg, &auth))
        key = tkp_key_from_tss2(prov, &f, &auth);
    tk_secret_clear(&auth);
    tk_tss2key_free(&f);
    return key;
}

/* Whether data looks like a TSS2 key at all: the PEM armour, or DER whose first field is
 * one of the TSS2 key OIDs (2.23.133.10.1.x).  Anything else is quietly not ours. */
static bool looks_tss2(const uint8_t *d, size_t len)
{
    static const uint8_t oid[] = { 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01 };
    static const char pem[] = "-----BEGIN " TSS2_PEM_NAME "-----";

    if (len >= sizeof(pem) - 1 && !memcmp(d, pem, sizeof(pem) - 1))
        return true;
    for (size_t off = 2; off <= 5 && off + sizeof(oid) <= len; off++)
        if (d[0] == 0x30 && !memcmp(d + off, oid, sizeof(oid)))
            return true;
    return false;
}

static int key_decode(void *vctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *data_cb,
                      void *data_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    dec_ctx *ctx = vctx;
    BIO *bio = core_bio(ctx->prov, cin);
    uint8_t *data = NULL;
    size_t len = 0;
    bool notmine = false;
    tkp_key *key = NULL;

    (void)selection;
    if (bio)
        data = read_all(bio, &len);
    BIO_free(bio);
    if (!data)
        return 1;
    if (!looks_tss2(data, len)) {
        OPENSSL_clear_free(data, len);
        return 1;
    }
    key = tkp_tss2_load(ctx->prov, data, len, ctx->type, pw_cb, pw_cbarg, &notmine);
    OPENSSL_clear_free(data, len);
    if (notmine)
        return 1;
    if (!key)
        return 0;
    return tkp_pass_key(key, data_cb, data_cbarg);
}

const OSSL_DISPATCH tkp_tss2_pem_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))pem_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))pem_decode },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_tss2_rsa_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))rsa_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))key_decode },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_tss2_rsapss_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))rsapss_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))key_decode },
    { 0, NULL },
};

const OSSL_DISPATCH tkp_tss2_ec_decoder_functions[] = {
    { OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))ec_newctx },
    { OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx },
    { OSSL_FUNC_DECODER_DOES_SELECTION, (void (*)(void))dec_does_selection },
    { OSSL_FUNC_DECODER_DECODE, (void (*)(void))key_decode },
    { 0, NULL },
};
