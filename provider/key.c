/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The provider's key object: a store key (tk_key) or the blobs of a TSS2 key
 * file, plus its public key as a software EVP_PKEY.  Private operations go to
 * the key store (tk_ks_*) or, for key files, to the TPM (tk_tpm_*).
 *
 * Key objects never change once built, so "dup" shares them (reference count).
 * Nothing per-process is cached here: the library reconnects after fork.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "provider.h"

struct tkp_key_ref {
    tkp_key key;
    int refs;
};

tkp_key *tkp_key_new(tkp_ctx *prov, tk_keytype type)
{
    struct tkp_key_ref *r = calloc(1, sizeof(*r));
    if (!r) {
        TKP_RAISE(prov, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    r->refs = 1;
    r->key.prov = prov;
    r->key.type = type;
    return &r->key;
}

void tkp_key_free(tkp_key *key)
{
    struct tkp_key_ref *r = (struct tkp_key_ref *)key;
    if (!key || __atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    EVP_PKEY_free(key->pub);
    tk_key_free(key->skey);
    tk_buf_free(&key->tpub);
    tk_buf_free(&key->tpriv);
    tk_secret_clear(&key->auth);
    free(key->unusable);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

tkp_key *tkp_key_ref(tkp_key *key)
{
    if (key)
        __atomic_add_fetch(&((struct tkp_key_ref *)key)->refs, 1, __ATOMIC_ACQ_REL);
    return key;
}

tkp_key *tkp_key_dup(const tkp_key *key, int selection)
{
    struct tkp_key_ref *r = (struct tkp_key_ref *)key;
    if (!key)
        return NULL;
    if (key->soft) {
        /* Software keys can change (set_params): copy them. */
        EVP_PKEY *copy = key->pub ? EVP_PKEY_dup(key->pub) : NULL;
        tkp_key *k = NULL;
        if (key->pub && !copy)
            return NULL;
        k = tkp_key_new(key->prov, key->type);
        if (k) {
            k->pss = key->pss;
            k->pub = copy;
            k->soft = true;
            k->soft_priv = key->soft_priv && (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY);
        } else {
            EVP_PKEY_free(copy);
        }
        return k;
    }
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) || !key->priv) {
        __atomic_add_fetch(&r->refs, 1, __ATOMIC_ACQ_REL);
        return (tkp_key *)key;
    }
    /* Public part only. */
    return tkp_key_from_pub(key->prov, key->pub);
}

EVP_PKEY *tkp_pub_rehome(tkp_ctx *prov, EVP_PKEY *pkey, const char *type)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *out = NULL;

    if (EVP_PKEY_todata(pkey, EVP_PKEY_PUBLIC_KEY, &params) <= 0 ||
        !(ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, type, TKP_PROPQ_SW)) ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        TKP_RAISE(prov, TKP_R_SOFTWARE,
                  "cannot build the %s public key in software (is the default provider "
                  "loaded?)", type);
        out = NULL;
    }
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return out;
}

const char *tkp_key_type_name(const tkp_key *key)
{
    return key->type == TK_KEY_EC ? "EC" : key->pss ? "RSA-PSS" : "RSA";
}

static const char *hash_name(TPM2_ALG_ID h)
{
    switch (h) {
    case TPM2_ALG_SHA1: return "SHA1";
    case TPM2_ALG_SHA256: return "SHA2-256";
    case TPM2_ALG_SHA384: return "SHA2-384";
    case TPM2_ALG_SHA512: return "SHA2-512";
    }
    return NULL;
}

/* The public key of a TPM key restricted to PSS with hash h, as an OpenSSL RSA-PSS key
 * carrying the same restriction (digest and MGF1 digest h, salt at least the digest
 * length), so that certificates name the restriction and OpenSSL enforces it. */
static EVP_PKEY *pss_rehome(tkp_ctx *prov, EVP_PKEY *pkey, TPM2_ALG_ID h)
{
    const char *md = hash_name(h);
    int saltlen = h == TPM2_ALG_SHA1 ? 20 : h == TPM2_ALG_SHA256 ? 32
                  : h == TPM2_ALG_SHA384 ? 48 : 64;
    OSSL_PARAM *pub = NULL, *all = NULL;
    OSSL_PARAM restrict_[] = {
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_DIGEST, (char *)md, 0),
        OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_RSA_MGF1_DIGEST, (char *)md, 0),
        OSSL_PARAM_int(OSSL_PKEY_PARAM_RSA_PSS_SALTLEN, &saltlen),
        OSSL_PARAM_END,
    };
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *out = NULL;

    if (!md) {
        TKP_RAISE(prov, TKP_R_UNSUPPORTED, "the key signs RSA-PSS with an unknown hash 0x%x",
                  (unsigned)h);
        return NULL;
    }
    if (EVP_PKEY_todata(pkey, EVP_PKEY_PUBLIC_KEY, &pub) <= 0 ||
        !(all = OSSL_PARAM_merge(pub, restrict_)) ||
        !(ctx = EVP_PKEY_CTX_new_from_name(prov->libctx, "RSA-PSS", TKP_PROPQ_SW)) ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, all) <= 0) {
        TKP_RAISE(prov, TKP_R_SOFTWARE, "cannot build the RSA-PSS public key in software "
                  "(is the default provider loaded?)");
        out = NULL;
    }
    OSSL_PARAM_free(all);
    OSSL_PARAM_free(pub);
    EVP_PKEY_CTX_free(ctx);
    return out;
}

/* Public key and RSA usage facts from a marshalled TPM2B_PUBLIC. */
static int key_set_public(tkp_key *key, const tk_buf *pubblob)
{
    TPM2B_PUBLIC tp;
    EVP_PKEY *pkey = NULL;
    tk_rc rc;

    if ((rc = tk_public_unmarshal(pubblob, &tp)) != TK_OK ||
        (rc = tk_public_to_pkey(&tp, &pkey)) != TK_OK) {
        TKP_RAISE_RC(key->prov, rc, "reading the key's TPM public area");
        return 0;
    }
    key->type = tp.publicArea.type == TPM2_ALG_RSA ? TK_KEY_RSA : TK_KEY_EC;
    key->pss = tk_public_pss_hash(&tp) != 0;
    key->pub = key->pss ? pss_rehome(key->prov, pkey, tk_public_pss_hash(&tp))
                        : tkp_pub_rehome(key->prov, pkey, tkp_key_type_name(key));
    EVP_PKEY_free(pkey);
    if (!key->pub)
        return 0;
    if ((tp.publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED) && !key->unusable &&
        !(key->unusable = strdup("the key is a restricted signing key: its TPM signs only "
                                 "digests the TPM computed itself (tpm2-openssl makes RSA-PSS "
                                 "keys so); tpmkeys hashes in software and cannot use it; make "
                                 "the key with `openssl genpkey -provider tpm2 -algorithm "
                                 "RSA-PSS -pkeyopt tpmkeys-label:NAME` instead"))) {
        TKP_RAISE(key->prov, TKP_R_NOMEM, "out of memory");
        return 0;
    }
    if (key->type == TK_KEY_RSA) {
        TPMA_OBJECT a = tp.publicArea.objectAttributes;
        key->raw_rsa = (a & TPMA_OBJECT_DECRYPT) && (a & TPMA_OBJECT_SIGN_ENCRYPT) &&
                       tp.publicArea.parameters.rsaDetail.scheme.scheme == TPM2_ALG_NULL;
    }
    key->priv = true;
    return 1;
}

tkp_key *tkp_key_from_store(tkp_ctx *prov, tk_key **k)
{
    tkp_key *key = tkp_key_new(prov, tk_alg_type((*k)->alg));
    if (!key)
        return NULL;
    key->skey = *k;
    *k = NULL;
    if (!key_set_public(key, &key->skey->pub)) {
        tkp_key_free(key);
        return NULL;
    }
    return key;
}

/* Why a TSS2 key file cannot be used here, or NULL. */
static char *tss2_problem(const tk_tss2key *f)
{
    char msg[320];

    if (f->type != 3)
        snprintf(msg, sizeof(msg), "TSS2 key file of type %d: only loadable keys "
                 "(2.23.133.10.1.3) can be used", f->type);
    else if (f->has_policy || f->has_auth_policy)
        snprintf(msg, sizeof(msg), "the TSS2 key file carries a policy, which tpmkeys does not "
                 "satisfy; use a key without policy");
    else if (f->parent != TK_SRK_HANDLE && !(f->parent == 0x40000001 && !f->rsa_parent))
        snprintf(msg, sizeof(msg), "the key's parent is %s0x%08x: tpmkeys loads keys under its "
                 "SRK 0x%08x (or the owner hierarchy with the standard ECC P-256 template); "
                 "recreate or re-import the key under that parent",
                 f->rsa_parent ? "the RSA primary " : "", f->parent, TK_SRK_HANDLE);
    else
        return NULL;
    return strdup(msg);
}

tkp_key *tkp_key_from_tss2(tkp_ctx *prov, tk_tss2key *f, const tk_secret *auth)
{
    tkp_key *key = tkp_key_new(prov, TK_KEY_RSA);

    if (!key)
        return NULL;
    key->tpub = f->pub;
    key->tpriv = f->priv;
    memset(&f->pub, 0, sizeof(f->pub));
    memset(&f->priv, 0, sizeof(f->priv));
    if (auth)
        key->auth = *auth;
    key->parent = f->parent;
    key->unusable = tss2_problem(f);
    if (!key_set_public(key, &key->tpub)) {
        tkp_key_free(key);
        return NULL;
    }
    return key;
}

/* The type of a software key. */
static void soft_type(tkp_key *key, EVP_PKEY *pkey)
{
    key->type = EVP_PKEY_is_a(pkey, "EC") ? TK_KEY_EC : TK_KEY_RSA;
    key->pss = EVP_PKEY_is_a(pkey, "RSA-PSS");
}

tkp_key *tkp_key_from_pub(tkp_ctx *prov, EVP_PKEY *pkey)
{
    tkp_key *key = tkp_key_new(prov, TK_KEY_RSA);
    if (!key)
        return NULL;
    soft_type(key, pkey);
    if (!EVP_PKEY_up_ref(pkey)) {
        tkp_key_free(key);
        return NULL;
    }
    key->pub = pkey;
    key->soft = true;
    return key;
}

tkp_key *tkp_key_from_soft(tkp_ctx *prov, EVP_PKEY *pkey, bool has_private)
{
    tkp_key *key = tkp_key_new(prov, TK_KEY_RSA);
    if (!key) {
        EVP_PKEY_free(pkey);
        return NULL;
    }
    soft_type(key, pkey);
    key->pub = pkey;
    key->soft = true;
    key->soft_priv = has_private;
    return key;
}

size_t tkp_key_size(const tkp_key *key)
{
    int bits = key->pub ? EVP_PKEY_get_bits(key->pub) : 0;
    return bits > 0 ? ((size_t)bits + 7) / 8 : 0;
}

const char *tkp_key_name(const tkp_key *key)
{
    if (key->skey && key->skey->label)
        return key->skey->label;
    return "the TSS2 key file";
}

/* ------------------------------------------------------------------ private operations */

/* Where a private operation goes: *ks for store keys, *tpm for key files. */
static int key_target(tkp_key *key, tk_ks **ks, tk_tpm **tpm)
{
    *ks = NULL;
    *tpm = NULL;
    if (!key->priv) {
        TKP_RAISE(key->prov, TKP_R_NO_PRIVATE,
                  "this key object holds only a public key: load the private key "
                  "(a tpmkeys: URI or a TSS2 key file)");
        return 0;
    }
    if (key->unusable) {
        TKP_RAISE(key->prov, TKP_R_KEYFILE, "%s", key->unusable);
        return 0;
    }
    if (key->skey)
        return (*ks = tkp_ks(key->prov)) != NULL;
    return (*tpm = tkp_tpm(key->prov)) != NULL;
}

static int key_result(tkp_key *key, tk_rc rc, const char *what)
{
    char msg[160];
    if (rc == TK_OK)
        return 1;
    snprintf(msg, sizeof(msg), "%s with %s", what, tkp_key_name(key));
    TKP_RAISE_RC(key->prov, rc, msg);
    return 0;
}

int tkp_key_sign(tkp_key *key, tk_sigscheme scheme, TPM2_ALG_ID hash, const uint8_t *dgst,
                 size_t dlen, tk_buf *sig)
{
    tk_ks *ks;
    tk_tpm *tpm;
    tk_rc rc;
    if (!key_target(key, &ks, &tpm))
        return 0;
    if (ks)
        rc = tk_ks_sign(ks, key->skey, scheme, hash, dgst, dlen, sig);
    else
        rc = tk_tpm_sign(tpm, &key->tpub, &key->tpriv, &key->auth, scheme, hash, dgst, dlen, sig);
    return key_result(key, rc, "signing");
}

int tkp_key_sign_pss(tkp_key *key, const EVP_MD *md, const EVP_MD *mgf1, size_t saltlen,
                     const uint8_t *dgst, size_t dlen, uint8_t *sig, size_t *siglen, size_t k)
{
    tk_buf out = { 0 };
    tk_ks *ks;
    tk_tpm *tpm;
    tk_rc rc;
    if (!key_target(key, &ks, &tpm))
        return 0;
    if (ks)
        rc = tk_ks_sign_pss(ks, key->skey, md, mgf1, saltlen, dgst, dlen, &out);
    else
        rc = tk_tpm_sign_pss(tpm, &key->tpub, &key->tpriv, &key->auth, md, mgf1, saltlen, dgst,
                             dlen, &out);
    if (rc == TK_OK && out.len != k)
        rc = tk_fail(TK_ERR_TPM, "the TPM returned %zu bytes for a %zu-byte key", out.len, k);
    if (rc == TK_OK) {
        memcpy(sig, out.data, k);
        *siglen = k;
    }
    tk_buf_free(&out);
    return key_result(key, rc, "PSS signing");
}

int tkp_key_rsa_raw(tkp_key *key, const uint8_t *in, size_t inlen, tk_buf *out)
{
    tk_ks *ks;
    tk_tpm *tpm;
    tk_rc rc;
    if (!key_target(key, &ks, &tpm))
        return 0;
    if (ks)
        rc = tk_ks_rsa_raw(ks, key->skey, in, inlen, out);
    else
        rc = tk_tpm_rsa_raw(tpm, &key->tpub, &key->tpriv, &key->auth, in, inlen, out);
    return key_result(key, rc, "RSA private operation");
}

int tkp_key_rsa_decrypt(tkp_key *key, TPM2_ALG_ID scheme, TPM2_ALG_ID hash, const uint8_t *label,
                        size_t labellen, const uint8_t *in, size_t inlen, tk_buf *out)
{
    tk_ks *ks;
    tk_tpm *tpm;
    tk_rc rc;
    if (!key_target(key, &ks, &tpm))
        return 0;
    if (ks)
        rc = tk_ks_rsa_decrypt(ks, key->skey, scheme, hash, label, labellen, in, inlen, out);
    else
        rc = tk_tpm_rsa_decrypt(tpm, &key->tpub, &key->tpriv, &key->auth, scheme, hash, label,
                                labellen, in, inlen, out);
    return key_result(key, rc, "RSA decryption");
}

int tkp_key_ecdh(tkp_key *key, const uint8_t *peer, size_t peerlen, tk_buf *out)
{
    tk_ks *ks;
    tk_tpm *tpm;
    tk_rc rc;
    if (!key_target(key, &ks, &tpm))
        return 0;
    if (ks)
        rc = tk_ks_ecdh(ks, key->skey, peer, peerlen, out);
    else
        rc = tk_tpm_ecdh(tpm, &key->tpub, &key->tpriv, &key->auth, peer, peerlen, out);
    return key_result(key, rc, "ECDH");
}

/* ------------------------------------------------------------------ digests */

TPM2_ALG_ID tkp_md_to_tpm(const EVP_MD *md)
{
    if (!md)
        return TPM2_ALG_ERROR;
    if (EVP_MD_is_a(md, "SHA1"))
        return TPM2_ALG_SHA1;
    if (EVP_MD_is_a(md, "SHA2-256"))
        return TPM2_ALG_SHA256;
    if (EVP_MD_is_a(md, "SHA2-384"))
        return TPM2_ALG_SHA384;
    if (EVP_MD_is_a(md, "SHA2-512"))
        return TPM2_ALG_SHA512;
    return TPM2_ALG_ERROR;
}

TPM2_ALG_ID tkp_len_to_tpm(size_t len)
{
    switch (len) {
    case 20: return TPM2_ALG_SHA1;
    case 32: return TPM2_ALG_SHA256;
    case 48: return TPM2_ALG_SHA384;
    case 64: return TPM2_ALG_SHA512;
    }
    return TPM2_ALG_ERROR;
}
