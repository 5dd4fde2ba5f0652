/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private declarations of the OpenSSL provider "tpm2".
 *
 * The provider is a door onto libtpmkeys: it translates OpenSSL's provider API
 * into store/ calls and holds no TPM or sqlite code.  Software work (hashing,
 * padding, verification, public-key arithmetic) is fetched from any other
 * provider through a child library context (prov->libctx, query TKP_PROPQ_SW).
 */
#ifndef TPMKEYS_PROVIDER_H
#define TPMKEYS_PROVIDER_H

#include <pthread.h>
#include <stdbool.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "tpmkeys.h"

#define TKP_NAME "tpm2"
/* Property definition of every algorithm we offer, and the query that finds
 * everyone else's implementations (the software ones). */
#define TKP_PROPS "provider=tpm2"
#define TKP_PROPQ_SW "provider!=tpm2"

/* Reason codes: one table (provider.c) maps them to text and tk_rc to them. */
enum {
    TKP_R_NOMEM = 1,
    TKP_R_INVALID,        /* bad argument, malformed input */
    TKP_R_NOT_FOUND,      /* no such key / object / file */
    TKP_R_UNSUPPORTED,    /* algorithm, padding or operation not offered */
    TKP_R_PIN,            /* PIN or password missing, wrong or locked */
    TKP_R_NO_TPM,         /* TPM not reachable */
    TKP_R_TPM,            /* the TPM refused or failed */
    TKP_R_STORE,          /* key store (database) failure */
    TKP_R_KEYFILE,        /* a TSS2 key file we cannot use */
    TKP_R_NO_PRIVATE,     /* a public-only key used for a private operation */
    TKP_R_SOFTWARE,       /* a software (OpenSSL) step failed */
};

/* The provider context: one per library context that loads us. */
typedef struct tkp_ctx {
    const OSSL_CORE_HANDLE *handle;
    OSSL_LIB_CTX *libctx;           /* child of the application's library context */
    BIO_METHOD *corebio;            /* reads OSSL_CORE_BIO (decoders) */
    OSSL_FUNC_core_new_error_fn *new_error;
    OSSL_FUNC_core_set_error_debug_fn *set_error_debug;
    OSSL_FUNC_core_vset_error_fn *vset_error;

    pthread_mutex_t lock;           /* guards ks, tpm, ks_failed */
    tk_ks *ks;                      /* the key store: opened on first use */
    tk_tpm *tpm;                    /* TPM for key files when there is no store */
    char *store_path;               /* config "tpmkeys-store" (NULL = default rules) */
    char *tcti;                     /* config "tpmkeys-tcti" (NULL = $TPMKEYS_TCTI) */
    pthread_mutex_t md_lock;        /* guards mds */
    struct {
        char name[32];
        EVP_MD *md;
    } mds[8];                       /* digests fetched before, by the name asked for */
    size_t nmds;
} tkp_ctx;

/* EVP_MD_fetch(prov->libctx, name, TKP_PROPQ_SW), remembered by name: every signature
 * asks for its digest, and a fetch costs more than the hashing.  Free with EVP_MD_free. */
EVP_MD *tkp_md_fetch(tkp_ctx *prov, const char *name);

/* ------------------------------------------------------------------ errors (provider.c) */

void tkp_raise(tkp_ctx *prov, int reason, const char *file, int line, const char *func,
               const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define TKP_RAISE(prov, reason, ...) \
    tkp_raise((prov), (reason), __FILE__, __LINE__, __func__, __VA_ARGS__)
/* Raise the library's last failure (tk_errmsg()) with a reason chosen from rc. */
void tkp_raise_rc(tkp_ctx *prov, tk_rc rc, const char *file, int line, const char *func,
                  const char *what);
#define TKP_RAISE_RC(prov, rc, what) \
    tkp_raise_rc((prov), (rc), __FILE__, __LINE__, __func__, (what))

/* ------------------------------------------------------------------ lazy store / TPM */

/* The key store, opened on first use; NULL on failure (error raised). */
tk_ks *tkp_ks(tkp_ctx *prov);
/* The TPM for key files: the store's when a store exists, else a TPM of our own. */
tk_tpm *tkp_tpm(tkp_ctx *prov);

/* ------------------------------------------------------------------ keys (key.c) */

typedef struct tkp_key {
    tkp_ctx *prov;
    tk_keytype type;
    EVP_PKEY *pub;          /* software public key (never NULL once built) */
    bool priv;              /* backed by a TPM key: private operations possible */
    tk_key *skey;           /* a store key, or NULL */
    tk_buf tpub, tpriv;     /* a key file's blobs (skey == NULL) */
    tk_secret auth;         /* a key file's password */
    uint32_t parent;        /* a key file's parent handle */
    char *unusable;         /* why this key file cannot be used (reported at first use:
                             * OpenSSL's decoders drop errors raised while decoding) */
    bool raw_rsa;           /* RSA key usable for raw private operations (software padding) */
    bool pss;               /* an RSA key restricted to PSS: OpenSSL's RSA-PSS key type */
    bool soft;              /* a software key (pub may hold a private part): not the TPM's */
    bool soft_priv;         /* ... and it has its private part */
} tkp_key;

tkp_key *tkp_key_new(tkp_ctx *prov, tk_keytype type);
void tkp_key_free(tkp_key *key);
/* Another reference to the same object (operation contexts hold keys this way). */
tkp_key *tkp_key_ref(tkp_key *key);
/* keymgmt dup: TPM keys are immutable and shared; software keys are copied. */
tkp_key *tkp_key_dup(const tkp_key *key, int selection);
/* Take ownership of a store key (*k is set to NULL). */
tkp_key *tkp_key_from_store(tkp_ctx *prov, tk_key **k);
/* Take the blobs of a parsed TSS2 key file; auth is its password (may be NULL). */
tkp_key *tkp_key_from_tss2(tkp_ctx *prov, tk_tss2key *f, const tk_secret *auth);
/* A public-only key from a software EVP_PKEY (takes a reference). */
tkp_key *tkp_key_from_pub(tkp_ctx *prov, EVP_PKEY *pkey);
/* A software key (takes the reference): OpenSSL may give us software keys when this
 * provider answers an unqualified fetch (it was loaded first); they are served by
 * delegating every operation to a software provider. */
tkp_key *tkp_key_from_soft(tkp_ctx *prov, EVP_PKEY *pkey, bool has_private);
/* OpenSSL's name for the key's type: "RSA", "RSA-PSS" or "EC". */
const char *tkp_key_type_name(const tkp_key *key);
/* Bytes of a coordinate (EC) or of the modulus (RSA). */
size_t tkp_key_size(const tkp_key *key);
/* Name a key for messages: store label or "key file". */
const char *tkp_key_name(const tkp_key *key);

int tkp_key_sign(tkp_key *key, tk_sigscheme scheme, TPM2_ALG_ID hash, const uint8_t *dgst,
                 size_t dlen, tk_buf *sig);
/* RSA-PSS of a digest into sig (k bytes, the modulus length). */
int tkp_key_sign_pss(tkp_key *key, const EVP_MD *md, const EVP_MD *mgf1, size_t saltlen,
                     const uint8_t *dgst, size_t dlen, uint8_t *sig, size_t *siglen, size_t k);
int tkp_key_rsa_raw(tkp_key *key, const uint8_t *in, size_t inlen, tk_buf *out);
int tkp_key_rsa_decrypt(tkp_key *key, TPM2_ALG_ID scheme, TPM2_ALG_ID hash, const uint8_t *label,
                        size_t labellen, const uint8_t *in, size_t inlen, tk_buf *out);
int tkp_key_ecdh(tkp_key *key, const uint8_t *peer, size_t peerlen, tk_buf *out);

/* Copy a software EVP_PKEY's public part into our library context (a pure software key). */
EVP_PKEY *tkp_pub_rehome(tkp_ctx *prov, EVP_PKEY *pkey, const char *type);

/* The TPM hash algorithm of an OpenSSL digest (TPM2_ALG_ERROR when none). */
TPM2_ALG_ID tkp_md_to_tpm(const EVP_MD *md);
/* The TPM hash algorithm for a digest of this length (20/32/48/64). */
TPM2_ALG_ID tkp_len_to_tpm(size_t len);

/* ------------------------------------------------------------------ keymgmt (keymgmt_common.c) */

/* Shared keymgmt entry points: the key object is the same for RSA and EC. */
void *tkp_km_load(const void *reference, size_t reference_sz, tk_keytype type, bool pss);
void tkp_km_free(void *keydata);
int tkp_km_has(const void *keydata, int selection);
int tkp_km_match(const void *k1, const void *k2, int selection);
int tkp_km_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg);
int tkp_km_import(void *keydata, const char *type, int selection, const OSSL_PARAM params[]);
int tkp_km_get_params(void *keydata, OSSL_PARAM params[]);
int tkp_km_set_params(void *keydata, const OSSL_PARAM params[]);
void *tkp_km_dup(const void *keydata, int selection);
/* Key generation: software keys (ephemeral TLS keys, parameters), or TPM keys stored in
 * the store when the "tpmkeys-label" parameter names the new key. */
void *tkp_km_gen_init(void *provctx, tk_keytype type, bool pss, int selection,
                      const OSSL_PARAM params[]);
int tkp_km_gen_set_params(void *genctx, const OSSL_PARAM params[]);
int tkp_km_gen_set_template(void *genctx, void *templ);
void *tkp_km_gen(void *genctx, OSSL_CALLBACK *cb, void *cbarg);
void tkp_km_gen_cleanup(void *genctx);

/* ------------------------------------------------------------------ dispatch tables */

extern const OSSL_DISPATCH tkp_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH tkp_rsapss_keymgmt_functions[];
extern const OSSL_DISPATCH tkp_ec_keymgmt_functions[];
extern const OSSL_DISPATCH tkp_rsa_signature_functions[];
extern const OSSL_DISPATCH tkp_ecdsa_signature_functions[];
extern const OSSL_DISPATCH tkp_rsa_asym_cipher_functions[];
extern const OSSL_DISPATCH tkp_ecdh_keyexch_functions[];
extern const OSSL_DISPATCH tkp_tss2_pem_decoder_functions[];
extern const OSSL_DISPATCH tkp_tss2_rsa_decoder_functions[];
extern const OSSL_DISPATCH tkp_tss2_rsapss_decoder_functions[];
extern const OSSL_DISPATCH tkp_tss2_ec_decoder_functions[];
extern const OSSL_DISPATCH tkp_store_functions[];
extern const OSSL_DISPATCH tkp_handle_store_functions[];
/* Shared by the store loaders: they take only OSSL_STORE_PARAM_EXPECT. */
OSSL_FUNC_store_settable_ctx_params_fn tkp_store_settable_ctx_params;
int tkp_store_get_expect(const OSSL_PARAM params[], int *expect);
extern const OSSL_DISPATCH tkp_tss2_pem_encoder_functions[];
extern const OSSL_DISPATCH tkp_tss2_der_encoder_functions[];
extern const OSSL_DISPATCH tkp_text_encoder_functions[];

/* Decoder/store helpers shared by decoder_tss2.c and store_tpmkeys.c. */
/* Build a key from TSS2 file contents; asks pw_cb for the password when the file says
 * the key has one.  Returns NULL with an error raised; *notmine when the data is not a
 * TSS2 key at all or not of the type named want ("RSA", "RSA-PSS", "EC"; NULL = any). */
tkp_key *tkp_tss2_load(tkp_ctx *prov, const uint8_t *data, size_t len, const char *want,
                       OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg, bool *notmine);
/* Hand a key to OpenSSL as an object reference (decoders and store loaders). */
int tkp_pass_key(tkp_key *key, OSSL_CALLBACK *object_cb, void *object_cbarg);

#endif /* TPMKEYS_PROVIDER_H */
