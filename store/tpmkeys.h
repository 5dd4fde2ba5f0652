/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libtpmkeys: the one place that talks to sqlite and to the TPM.
 *
 * The PKCS#11 module (pkcs11/), the OpenSSL provider (provider/) and the
 * `tpmkeys` tool (tools/) are doors onto this library; they translate and
 * never reach the TPM or the database on their own.
 *
 * Conventions
 * - Every fallible function returns a tk_rc.  On failure it has also set a
 *   per-thread message (tk_errmsg()) that says what went wrong and, where
 *   possible, what to do about it.  tk_fail() sets both in one step.
 * - "Out" pointers are written only on success.  Objects handed out are owned
 *   by the caller and released with the matching *_free(); every *_free()
 *   accepts NULL and half-built objects.
 * - Secrets (PINs, auth values, passphrases, unsealed material) travel in
 *   tk_secret and are wiped with tk_secret_clear() / OPENSSL_cleanse().
 */
#ifndef TPMKEYS_H
#define TPMKEYS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

typedef enum {
    TK_OK = 0,
    TK_ERR_NOMEM,          /* out of memory */
    TK_ERR_INVALID,        /* bad argument or malformed input */
    TK_ERR_NOT_FOUND,      /* no such key / token / object / file */
    TK_ERR_EXISTS,         /* label already taken */
    TK_ERR_UNSUPPORTED,    /* algorithm or feature not available (here or on this TPM) */
    TK_ERR_PASSPHRASE,     /* missing or wrong passphrase for an encrypted key file */
    TK_ERR_PIN_INCORRECT,  /* the TPM refused the PIN (counted by dictionary-attack logic) */
    TK_ERR_PIN_LOCKED,     /* token or TPM is in lockout */
    TK_ERR_PIN_REQUIRED,   /* key needs a PIN / login and none was given */
    TK_ERR_NO_TPM,         /* TPM not reachable (no device, simulator down) */
    TK_ERR_TPM,            /* the TPM answered with an error */
    TK_ERR_TPM_FULL,       /* TPM object/session/NV memory exhausted */
    TK_ERR_STORE,          /* database error or corruption */
    TK_ERR_READONLY,       /* store opened read-only (or on a read-only filesystem) */
    TK_ERR_IO,             /* file system error */
    TK_ERR_BUSY,           /* store stayed locked beyond the busy timeout */
} tk_rc;

/* The message for the last failure on this thread ("" when none). */
const char *tk_errmsg(void);
/* Short stable name of a code ("TK_ERR_NO_TPM"). */
const char *tk_rc_name(tk_rc rc);
/* Set this thread's message and return rc.  Use: return tk_fail(TK_ERR_INVALID, "..."). */
tk_rc tk_fail(tk_rc rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with more context ("importing key.pem: " + old). */
tk_rc tk_fail_ctx(tk_rc rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append OpenSSL's error queue (first error) to a message and clear it. */
tk_rc tk_fail_ossl(tk_rc rc, const char *what);
void tk_clear_error(void);

/* ------------------------------------------------------------------ logging */

enum { TK_LOG_OFF = 0, TK_LOG_ERROR, TK_LOG_WARN, TK_LOG_INFO, TK_LOG_DEBUG };
/* Level from TPMKEYS_LOG (error|warn|info|debug), read once. */
int tk_log_level(void);
void tk_log_at(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define TK_LOG(lvl, ...) \
    do { if (tk_log_level() >= (lvl)) tk_log_at((lvl), __FILE__, __LINE__, __VA_ARGS__); } while (0)
#define tk_debug(...) TK_LOG(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_info(...)  TK_LOG(TK_LOG_INFO, __VA_ARGS__)
#define tk_warn(...)  TK_LOG(TK_LOG_WARN, __VA_ARGS__)

/* Keep the shared object (our PKCS#11 module or provider) that holds addr loaded until
 * the process exits, whatever the host does with dlclose. */
void tk_module_pin(const void *addr);

/* ------------------------------------------------------------------ buffers */

typedef struct {
    uint8_t *data;
    size_t len;
} tk_buf;

void tk_buf_free(tk_buf *b);                    /* frees data, len = 0 */
tk_rc tk_buf_set(tk_buf *b, const void *data, size_t len); /* copy in */

/* A secret: wiped on clear.  At most 128 bytes (PINs, passphrases, auth values). */
#define TK_SECRET_MAX 128
typedef struct {
    uint8_t data[TK_SECRET_MAX];
    size_t len;
} tk_secret;

void tk_secret_clear(tk_secret *s);
tk_rc tk_secret_set(tk_secret *s, const void *data, size_t len);

/* ------------------------------------------------------------------ key shapes */

typedef enum { TK_KEY_RSA = 1, TK_KEY_EC = 2 } tk_keytype;

/* Algorithms the tool and the doors name. */
typedef enum {
    TK_ALG_NONE = 0,
    TK_ALG_RSA2048,
    TK_ALG_RSA3072,
    TK_ALG_RSA4096,
    TK_ALG_ECC_P256,
    TK_ALG_ECC_P384,
    TK_ALG_ECC_P521,
} tk_alg;

tk_keytype tk_alg_type(tk_alg a);
int tk_alg_bits(tk_alg a);                  /* RSA modulus or curve bits */
TPM2_ECC_CURVE tk_alg_curve(tk_alg a);      /* TPM2_ECC_NONE for RSA */
const char *tk_alg_name(tk_alg a);          /* "rsa2048", "ecc-p256" */
tk_alg tk_alg_from_name(const char *name);  /* TK_ALG_NONE when unknown */
/* From a TPM public area (RSA bits / ECC curve). */
tk_alg tk_alg_from_public(const TPM2B_PUBLIC *pub);

/* ------------------------------------------------------------------ the store (sqlite) */

typedef struct tk_store tk_store;

enum {
    TK_STORE_CREATE   = 1 << 0, /* create file and folders if missing */
    TK_STORE_READONLY = 1 << 1, /* never write */
};

/* The path rules of DESIGN.md: $TPMKEYS_STORE, else $XDG_DATA_HOME/tpmkeys/store.db,
 * else ~/.local/share/tpmkeys/store.db.  Caller frees. */
tk_rc tk_store_default_path(char **path);

/* Open (path NULL = default).  Without TK_STORE_CREATE a missing store is TK_ERR_NOT_FOUND.
 * A store that cannot be written (read-only file system or file) opens read-only and
 * still serves keys; writes then fail with TK_ERR_READONLY.  Migrates an older schema. */
tk_rc tk_store_open(const char *path, unsigned flags, tk_store **out);
void tk_store_close(tk_store *st);
const char *tk_store_path(const tk_store *st);
bool tk_store_is_readonly(const tk_store *st);
/* Why the store is read-only (for messages), "" when it is not. */
const char *tk_store_readonly_reason(const tk_store *st);
int tk_store_schema_version(tk_store *st);
/* True when another connection changed the store since the previous call
 * (PRAGMA data_version); the first call returns true. */
bool tk_store_changed(tk_store *st);
/* PRAGMA integrity_check; *report = "ok" or the problems. Caller frees report. */
tk_rc tk_store_integrity(tk_store *st, char **report);
/* A random 8-byte id made when the store is created, hex (16 chars + NUL). */
const char *tk_store_id(tk_store *st);

/* A token: a named set of keys sharing a user PIN and an SO PIN.
 * The PINs are never stored: each PIN seals (TPM keyedhash object, DA-protected,
 * authValue = PIN) a copy of the 32-byte token secret; key auth values derive from
 * that secret.  Empty seal blobs mean "this PIN is not set". */
typedef struct {
    int64_t id;
    char *label;            /* up to 32 chars */
    tk_buf user_pub, user_priv;  /* TPM2B_PUBLIC / TPM2B_PRIVATE of the user seal */
    tk_buf so_pub, so_priv;      /* ... of the SO seal */
    int user_fails;         /* consecutive wrong user PINs via tpmkeys */
    int so_fails;
    int64_t created;
} tk_token;

void tk_token_free(tk_token *t);
/* Insert (t->id == 0; sets t->id) or update PINs/fail counters (t->id != 0). */
tk_rc tk_token_put(tk_store *st, tk_token *t);
tk_rc tk_token_get(tk_store *st, const char *label, tk_token **out);
tk_rc tk_token_get_by_id(tk_store *st, int64_t id, tk_token **out);
tk_rc tk_token_list(tk_store *st, tk_token ***out, size_t *n);
/* Increment/reset a fail counter atomically: which = 0 user, 1 SO. */
tk_rc tk_token_count_fail(tk_store *st, int64_t token_id, int which, bool reset, int *now);
/* Delete a token and all its objects. */
tk_rc tk_token_delete(tk_store *st, int64_t id);

typedef enum {
    TK_AUTH_NONE = 0,   /* empty authValue: usable without login (unattended services) */
    TK_AUTH_TOKEN = 1,  /* authValue derived from the token secret (user PIN login) */
} tk_authmode;

typedef enum { TK_ORIGIN_GENERATED = 0, TK_ORIGIN_IMPORTED = 1 } tk_origin;

/* One key (or, for later object kinds, one object) of a token. */
typedef struct {
    int64_t id;
    int64_t token_id;
    char *label;
    tk_buf ckaid;           /* CKA_ID bytes */
    tk_alg alg;
    tk_buf pub;             /* marshalled TPM2B_PUBLIC */
    tk_buf priv;            /* marshalled TPM2B_PRIVATE (encrypted by the TPM under the parent) */
    uint32_t parent;        /* 0x81000001 */
    tk_authmode auth;
    tk_buf authsalt;        /* 16 random bytes: input to the auth derivation */
    tk_buf policy;          /* reserved: serialized policy, empty = none */
    tk_buf cert;            /* DER X.509 certificate, empty = none */
    tk_origin origin;
    int64_t created, updated;  /* unix seconds */
} tk_key;

void tk_key_free(tk_key *k);
/* A deep copy (free with tk_key_free). */
tk_rc tk_key_dup(const tk_key *k, tk_key **out);
void tk_key_list_free(tk_key **keys, size_t n);
/* Insert (sets k->id, created, updated).  TK_ERR_EXISTS when the label is taken in the token. */
tk_rc tk_key_add(tk_store *st, tk_key *k);
tk_rc tk_key_get(tk_store *st, int64_t id, tk_key **out);
/* By label in a token (token_id 0 = any token; first match). */
tk_rc tk_key_find_label(tk_store *st, int64_t token_id, const char *label, tk_key **out);
tk_rc tk_key_find_id(tk_store *st, int64_t token_id, const uint8_t *ckaid, size_t len, tk_key **out);
/* All keys of a token (token_id 0 = all), ordered by id. */
tk_rc tk_key_list(tk_store *st, int64_t token_id, tk_key ***out, size_t *n);
/* Update label, ckaid, cert, priv (ObjectChangeAuth results) of k->id. */
tk_rc tk_key_update(tk_store *st, const tk_key *k);
tk_rc tk_key_delete(tk_store *st, int64_t id);
/* Like tk_key_list, but rows that fail their checks are left out, counted in *damaged
 * and named with tk_warn(), so one damaged row does not hide the others. */
tk_rc tk_key_list_intact(tk_store *st, int64_t token_id, tk_key ***out, size_t *n,
                         size_t *damaged);
/* Delete by label without decoding the row (also removes a damaged one). */
tk_rc tk_key_delete_label(tk_store *st, int64_t token_id, const char *label);

/* ------------------------------------------------------------------ standalone objects */

/* Objects of a token that are not TPM keys: a certificate without a key of its own, a
 * public key without its private key, application data (PKCS#11 CKO_CERTIFICATE,
 * CKO_PUBLIC_KEY, CKO_DATA).  They hold no secrets and are stored in clear, also the
 * ones marked private (which the doors only hide until login). */
typedef enum { TK_OBJ_DATA = 1, TK_OBJ_CERT = 2, TK_OBJ_PUBKEY = 3 } tk_obj_class;

typedef struct {
    int64_t id;
    int64_t token_id;
    tk_obj_class cls;
    char *label;            /* may be empty, need not be unique */
    tk_buf ckaid;           /* CKA_ID bytes */
    tk_buf value;           /* CERT: DER X.509; PUBKEY: DER SubjectPublicKeyInfo; DATA: any */
    char *application;      /* DATA: CKA_APPLICATION ("" = none) */
    tk_buf oid;             /* DATA: CKA_OBJECT_ID, DER (empty = none) */
    bool is_private;        /* CKA_PRIVATE: shown only after login */
    int64_t created, updated;
} tk_obj;

const char *tk_obj_class_name(tk_obj_class c);   /* "data", "cert", "pubkey" */
void tk_obj_free(tk_obj *o);
void tk_obj_list_free(tk_obj **objs, size_t n);
/* Insert (sets o->id, created, updated).  The value is checked (a certificate or a
 * public key must parse); TK_ERR_INVALID otherwise. */
tk_rc tk_obj_add(tk_store *st, tk_obj *o);
tk_rc tk_obj_get(tk_store *st, int64_t id, tk_obj **out);
/* The objects of a token (token_id 0 = all), ordered by id.  damaged may be NULL: then a
 * damaged row fails the listing; else such rows are left out, counted and named with
 * tk_warn(). */
tk_rc tk_obj_list(tk_store *st, int64_t token_id, tk_obj ***out, size_t *n, size_t *damaged);
/* Update label and ckaid of o->id (the rest of an object does not change). */
tk_rc tk_obj_update(tk_store *st, const tk_obj *o);
/* Delete one object (also a damaged row: nothing is decoded). */
tk_rc tk_obj_delete(tk_store *st, int64_t id);

/* ------------------------------------------------------------------ key files (pure, no TPM) */

/* Parse a private key file (PEM or DER): PKCS#1 RSA, SEC1 EC, PKCS#8, encrypted PKCS#8,
 * traditional encrypted PEM, OpenSSH private keys.  passphrase may be NULL: an encrypted
 * file then fails with TK_ERR_PASSPHRASE.  The result is a software EVP_PKEY (caller frees
 * with EVP_PKEY_free). RSA keys must have e = 65537 or another e the TPM takes (odd, < 2^32). */
tk_rc tk_keyfile_parse_private(const uint8_t *data, size_t len, const tk_secret *passphrase,
                               EVP_PKEY **out);

/* The TSS2 PRIVATE KEY format (tpm2-openssl, openssl_tpm2_engine, ssh-tpm-agent). */
typedef struct {
    int type;               /* 3 = loadable (only kind we use), 4 importable, 5 sealed */
    bool empty_auth;        /* emptyAuth TRUE */
    bool has_policy;        /* a [1] policy was present (we refuse to use these) */
    bool has_secret;        /* [2] secret present (importable) */
    bool has_auth_policy;   /* [3] present */
    char *description;      /* [4], may be NULL */
    bool rsa_parent;        /* [5] */
    uint32_t parent;        /* 0x40000001 or 0x81xxxxxx */
    tk_buf pub;             /* marshalled TPM2B_PUBLIC */
    tk_buf priv;            /* marshalled TPM2B_PRIVATE */
} tk_tss2key;

void tk_tss2key_free(tk_tss2key *k); /* frees members, not k */
/* Parse PEM ("TSS2 PRIVATE KEY") or DER. TK_ERR_INVALID with a precise message otherwise;
 * TK_ERR_NOT_FOUND when the data is well-formed PEM/DER of another kind (lets callers
 * try the next parser). */
tk_rc tk_tss2key_parse(const uint8_t *data, size_t len, tk_tss2key *out);
/* Encode (pem true: PEM with "TSS2 PRIVATE KEY" armour). */
tk_rc tk_tss2key_encode(const tk_tss2key *k, bool pem, tk_buf *out);

/* ------------------------------------------------------------------ TPM structures <-> OpenSSL (pure) */

/* Public key of a TPM2B_PUBLIC as a software EVP_PKEY (RSA or EC). */
tk_rc tk_public_to_pkey(const TPM2B_PUBLIC *pub, EVP_PKEY **out);
tk_rc tk_public_unmarshal(const tk_buf *b, TPM2B_PUBLIC *pub);
/* SubjectPublicKeyInfo DER of an RSA or ECC public area, encoded directly (no EVP_PKEY:
 * the PKCS#11 module builds one for every key of the store). The same bytes as
 * i2d_PUBKEY of tk_public_to_pkey's key; the EC point is not checked to be on the curve. */
tk_rc tk_public_spki(const TPM2B_PUBLIC *pub, tk_buf *der);
/* The uncompressed point (04 || x || y, coordinates padded) of an ECC public area. */
tk_rc tk_public_ec_point(const TPM2B_PUBLIC *pub, uint8_t *out, size_t outsize, size_t *len);
tk_rc tk_private_unmarshal(const tk_buf *b, TPM2B_PRIVATE *priv);
tk_rc tk_public_marshal(const TPM2B_PUBLIC *pub, tk_buf *out);
tk_rc tk_private_marshal(const TPM2B_PRIVATE *priv, tk_buf *out);
/* The TPM public and sensitive areas of a software key for TPM2_Import: sign + decrypt,
 * userWithAuth, noDA, nameAlg SHA-256, empty authPolicy (TPM2_Import requires fixedTPM and
 * fixedParent CLEAR; the empty authPolicy still forbids TPM2_Duplicate).
 * sens->sensitiveArea.authValue is set from auth (may be NULL). Wipe sens after use. */
tk_rc tk_pkey_to_tpm(EVP_PKEY *pkey, const tk_secret *auth, TPM2B_PUBLIC *pub,
                     TPM2B_SENSITIVE *sens);
/* The TPM template for a key generated inside the TPM. */
tk_rc tk_template_for(tk_alg alg, TPM2B_PUBLIC *tmpl);
/* Options for a key generated inside the TPM (NULL or zeroed = the defaults). */
typedef struct {
    /* Non-zero (TPM2_ALG_SHA256...): an RSA key that signs only RSASSA-PSS with this
     * hash (TPM scheme RSAPSS, no decrypt): OpenSSL's RSA-PSS key type. */
    TPM2_ALG_ID rsa_pss_hash;
    /* Non-empty: the key's CKA_ID (tk_ks_create_key_opts); else derived from the key. */
    tk_buf ckaid;
} tk_keygen_opts;
tk_rc tk_template_for_opts(tk_alg alg, const tk_keygen_opts *opts, TPM2B_PUBLIC *tmpl);
/* The hash of a key restricted to RSASSA-PSS (its TPM scheme), or 0. */
TPM2_ALG_ID tk_public_pss_hash(const TPM2B_PUBLIC *pub);

/* Build TPM2_Import's inputs: wrap sens for a parent whose public area is parent_pub
 * (an ECC P-256 or RSA-2048 storage key with AES-128-CFB), outer wrap only:
 * a fresh seed encrypted to the parent (ECDH + KDFe, or RSA-OAEP "DUPLICATE"),
 * AES-CFB encryption of the sensitive under KDFa(seed,"STORAGE",name) and an
 * HMAC under KDFa(seed,"INTEGRITY").  The clear sensitive never leaves the process. */
tk_rc tk_duplicate_wrap(const TPM2B_PUBLIC *parent_pub, const TPM2B_PUBLIC *obj_pub,
                        const TPM2B_SENSITIVE *sens, TPM2B_PRIVATE *dup,
                        TPM2B_ENCRYPTED_SECRET *seed);

/* Name of a public area (nameAlg || H(public)). */
tk_rc tk_public_name(const TPM2B_PUBLIC *pub, TPM2B_NAME *name);

/* Signature conversions: TPM signature to the encoding OpenSSL and PKCS#11 use. */
/* RSA: raw big-endian s; ECDSA: DER ECDSA-Sig-Value (der = true) or r||s padded (der = false). */
tk_rc tk_sig_to_bytes(const TPMT_SIGNATURE *sig, int coord_bytes, bool der, tk_buf *out);

/* ------------------------------------------------------------------ the TPM */

typedef struct tk_tpm tk_tpm;

/* A handle on the TPM; nothing is opened until the first real use.
 * tcti: NULL = $TPMKEYS_TCTI, else the tss2 default. */
tk_rc tk_tpm_new(const char *tcti, tk_tpm **out);
void tk_tpm_free(tk_tpm *t);
/* The TCTI configuration string in use (for messages); "default" when none. */
const char *tk_tpm_tcti(const tk_tpm *t);

#define TK_SRK_HANDLE 0x81000001u

/* Make sure the SRK exists at 0x81000001 (CreatePrimary with the TCG ECC P-256 storage
 * template + EvictControl). Existing object: checked to be a usable storage key.
 * owner_auth may be NULL. *created tells whether it was made now. */
tk_rc tk_tpm_srk_ensure(tk_tpm *t, const tk_secret *owner_auth, bool *created);
/* The SRK's public area; TK_ERR_NOT_FOUND when absent (run `tpmkeys init`). */
tk_rc tk_tpm_srk_public(tk_tpm *t, TPM2B_PUBLIC *pub);

/* Whether the TPM takes this key shape (TestParms, cached per process). */
tk_rc tk_tpm_supports(tk_tpm *t, tk_alg alg);

/* Generate a key under the SRK; auth NULL/empty = no auth. Blobs are marshalled. */
typedef void (*tk_progress_fn)(void *arg);
tk_rc tk_tpm_create_key(tk_tpm *t, tk_alg alg, const tk_secret *auth,
                        tk_progress_fn progress, void *progress_arg,
                        tk_buf *pub, tk_buf *priv);
tk_rc tk_tpm_create_key_opts(tk_tpm *t, tk_alg alg, const tk_keygen_opts *opts,
                             const tk_secret *auth, tk_progress_fn progress,
                             void *progress_arg, tk_buf *pub, tk_buf *priv);
/* Import a software key under the SRK (TPM2_Import with an outer-wrapped duplicate). */
tk_rc tk_tpm_import_pkey(tk_tpm *t, EVP_PKEY *pkey, const tk_secret *auth,
                         tk_buf *pub, tk_buf *priv);
/* Seal data (a keyedhash object, DA-protected, authValue = auth). */
tk_rc tk_tpm_seal(tk_tpm *t, const tk_secret *data, const tk_secret *auth,
                  tk_buf *pub, tk_buf *priv);
tk_rc tk_tpm_unseal(tk_tpm *t, const tk_buf *pub, const tk_buf *priv,
                    const tk_secret *auth, tk_secret *data);
/* New private blob for the same key with another auth value (TPM2_ObjectChangeAuth). */
tk_rc tk_tpm_change_auth(tk_tpm *t, const tk_buf *pub, const tk_buf *priv,
                         const tk_secret *old_auth, const tk_secret *new_auth,
                         tk_buf *new_priv);

/* Operations on a key given by its blobs; the key is loaded through a cache keyed by
 * the public blob and evicted when the TPM is short of slots. */
typedef enum {
    TK_SIG_RSASSA = 1,   /* PKCS#1 v1.5, digest signed */
    TK_SIG_RSAPSS,       /* PSS, salt = digest length (the TPM's choice) */
    TK_SIG_ECDSA,        /* the signature DER-encoded (X9.62 ECDSA-Sig-Value) */
    TK_SIG_ECDSA_P1363,  /* ECDSA, the signature as r || s, each padded to the curve size */
} tk_sigscheme;

/* hash: TPM2_ALG_SHA1/SHA256/SHA384/SHA512. sig: RSA: s, EC: DER. */
tk_rc tk_tpm_sign(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                  tk_sigscheme scheme, TPM2_ALG_ID hash, const uint8_t *digest, size_t dlen,
                  tk_buf *sig);
/* RSA-PSS of a digest (mhash, hlen bytes of md) with MGF1 over mgf1 (NULL = md) and a
 * salt of saltlen bytes: padded in software and finished with the raw RSA operation when
 * the key allows it (tk_public_rsa_raw_ok), else signed by the TPM when the parameters
 * are the ones TPMs use (salt = digest length, MGF1 over md) and checked against the
 * public key (TPMs choose their own salt).  sig: modulus-length bytes. */
tk_rc tk_tpm_sign_pss(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                      const EVP_MD *md, const EVP_MD *mgf1, size_t saltlen,
                      const uint8_t *mhash, size_t hlen, tk_buf *sig);
/* out[0..len) ^= MGF1(seed) over md (RFC 8017 B.2.1). */
tk_rc tk_mgf1_xor(const EVP_MD *md, const uint8_t *seed, size_t seedlen, uint8_t *out,
                  size_t len);
/* EMSA-PSS-ENCODE (RFC 8017 9.1.1) into out (k bytes) for a modbits-bit modulus. */
tk_rc tk_pss_encode(const EVP_MD *md, const EVP_MD *mgf1, const uint8_t *mhash, size_t hlen,
                    size_t saltlen, size_t modbits, uint8_t *out, size_t k);
/* Whether the TPM lets this RSA key do the raw private operation (decrypt and sign set,
 * not restricted, no fixed scheme: all keys tpmkeys makes or imports). */
bool tk_public_rsa_raw_ok(const TPM2B_PUBLIC *pub);
/* Raw RSA private operation (m^d mod n) for software padding; needs a key whose scheme
 * is TPM2_ALG_NULL and decrypt set (all tpmkeys keys). in has the modulus length. */
tk_rc tk_tpm_rsa_raw(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                     const uint8_t *in, size_t inlen, tk_buf *out);
/* RSA decrypt: scheme TPM2_ALG_OAEP (hash, label may be NULL) or TPM2_ALG_RSAES. */
tk_rc tk_tpm_rsa_decrypt(tk_tpm *t, const tk_buf *pub, const tk_buf *priv,
                         const tk_secret *auth, TPM2_ALG_ID scheme, TPM2_ALG_ID hash,
                         const uint8_t *label, size_t labellen,
                         const uint8_t *in, size_t inlen, tk_buf *out);
/* ECDH: peer point as an uncompressed octet string (04 || x || y); out = x coordinate. */
tk_rc tk_tpm_ecdh(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                  const uint8_t *peer, size_t peerlen, tk_buf *out);
tk_rc tk_tpm_random(tk_tpm *t, uint8_t *out, size_t len);
/* A persistent key (0x81xxxxxx): its marshalled public area.  Afterwards the key
 * operations above take (pub, an empty priv) for it and use the persistent handle. */
tk_rc tk_tpm_persistent_public(tk_tpm *t, uint32_t handle, tk_buf *pub);
/* Drop every cached loaded key (flushes them). */
void tk_tpm_flush_cache(tk_tpm *t);

/* Facts for `tpmkeys doctor`. */
typedef struct {
    char manufacturer[5];
    char vendor[17];
    uint32_t fw_major, fw_minor;  /* TPM_PT_FIRMWARE_VERSION_1 split 16/16 */
    uint32_t spec_level, spec_revision;
    uint32_t lockout_counter, max_tries, recovery_time, lockout_recovery;
    bool in_lockout;
    uint32_t transient_slots;     /* TPM_PT_HR_TRANSIENT_MIN */
    bool owner_auth_set;
} tk_tpm_info;
tk_rc tk_tpm_get_info(tk_tpm *t, tk_tpm_info *info);
/* PCR bank summary: for each active bank, whether PCRs 0-7 are all zero / all ones. */
tk_rc tk_tpm_pcr_summary(tk_tpm *t, char **text);
/* Set dictionary-attack parameters (lockout auth may be NULL).  For tests and doctor --fix. */
tk_rc tk_tpm_da_params(tk_tpm *t, const tk_secret *lockout_auth, uint32_t max_tries,
                       uint32_t recovery_time, uint32_t lockout_recovery);

/* ------------------------------------------------------------------ the keystore (store + TPM) */

/* What the doors and the tool use: one per process (or per PKCS#11 module). */
typedef struct tk_ks tk_ks;

typedef struct {
    const char *store_path;   /* NULL = default rules */
    const char *tcti;         /* NULL = $TPMKEYS_TCTI / default */
    unsigned store_flags;     /* TK_STORE_* */
} tk_ks_config;

tk_rc tk_ks_open(const tk_ks_config *cfg, tk_ks **out);
void tk_ks_close(tk_ks *ks);
tk_store *tk_ks_store(tk_ks *ks);
tk_tpm *tk_ks_tpm(tk_ks *ks);

#define TK_DEFAULT_TOKEN "tpmkeys"

/* SRK + token (created when absent, PINs set when given and not yet set). Idempotent. */
tk_rc tk_ks_init(tk_ks *ks, const char *token, const tk_secret *owner_auth,
                 const tk_secret *so_pin, const tk_secret *user_pin, bool *srk_created,
                 bool *token_created);

/* Login: unseal the token secret with the user PIN (TPM-enforced, DA-counted) and keep
 * it in memory for key use.  Wrong PIN: TK_ERR_PIN_INCORRECT; too many: TK_ERR_PIN_LOCKED. */
tk_rc tk_ks_login(tk_ks *ks, int64_t token_id, const tk_secret *pin);
void tk_ks_logout(tk_ks *ks, int64_t token_id);
/* SO login: unseal the token secret with the SO PIN (TPM-enforced, counted separately). */
tk_rc tk_ks_login_so(tk_ks *ks, int64_t token_id, const tk_secret *so_pin);
/* C_InitPIN: set or reset the user PIN.  Needs the token secret in memory (after
 * tk_ks_login_so or tk_ks_login), or a token that has no PIN at all yet.  Atomic: the
 * new seal replaces the old one in one transaction; a crash leaves the old PIN working. */
tk_rc tk_ks_init_pin(tk_ks *ks, int64_t token_id, const tk_secret *new_pin);
/* C_SetPIN: which 0 = user, 1 = SO.  The old PIN is checked by the TPM (unseal);
 * atomic like tk_ks_init_pin.  Leaves the token logged in. */
tk_rc tk_ks_set_pin(tk_ks *ks, int64_t token_id, int which, const tk_secret *old_pin,
                    const tk_secret *new_pin);
/* C_InitToken: create token `label` with this SO PIN and no user PIN; an existing token of
 * that label is re-initialised (its SO PIN must match; all its keys are destroyed). */
tk_rc tk_ks_init_token(tk_ks *ks, const char *label, const tk_secret *so_pin,
                       int64_t *token_id);
/* Wrong-PIN state for token flags: tries used (ours, per token) and the TPM's own
 * lockout counter / limit (tpm_* are 0 when the TPM was not asked). */
typedef struct {
    int user_fails, so_fails, max_tries;
    uint32_t tpm_counter, tpm_max;
    bool tpm_lockout;
} tk_pin_state;
tk_rc tk_ks_pin_state(tk_ks *ks, int64_t token_id, bool ask_tpm, tk_pin_state *out);
bool tk_ks_logged_in(tk_ks *ks, int64_t token_id);

/* Create or import a key in a token. pin_auth: TK_AUTH_TOKEN needs a login first.
 * label must be unique in the token; ckaid NULL = derived from the public key (SHA-1
 * of the public point / modulus, as PKCS#11 tools expect). */
tk_rc tk_ks_create_key(tk_ks *ks, int64_t token_id, const char *label, tk_alg alg,
                       tk_authmode auth, tk_progress_fn progress, void *arg, tk_key **out);
tk_rc tk_ks_create_key_opts(tk_ks *ks, int64_t token_id, const char *label, tk_alg alg,
                            const tk_keygen_opts *opts, tk_authmode auth,
                            tk_progress_fn progress, void *arg, tk_key **out);
/* Import a file: private key (PEM/DER/OpenSSH) or a TSS2 PRIVATE KEY.  For TSS2 files
 * with a password, file_auth is that password (re-wrapped with ObjectChangeAuth to the
 * token auth). */
tk_rc tk_ks_import_file(tk_ks *ks, int64_t token_id, const char *label,
                        const uint8_t *data, size_t len, const tk_secret *passphrase,
                        tk_authmode auth, tk_key **out);
tk_rc tk_ks_import_pkey(tk_ks *ks, int64_t token_id, const char *label, EVP_PKEY *pkey,
                        tk_authmode auth, tk_key **out);

/* The auth value of a key (empty for TK_AUTH_NONE); TK_ERR_PIN_REQUIRED when the token is
 * not logged in. */
tk_rc tk_ks_key_auth(tk_ks *ks, const tk_key *k, tk_secret *auth);
/* TK_OK when a key with this auth mode can be made in the token now (logged in for PINs). */
tk_rc tk_ks_key_auth_check(tk_ks *ks, int64_t token_id, tk_authmode auth);

tk_rc tk_ks_sign(tk_ks *ks, const tk_key *k, tk_sigscheme scheme, TPM2_ALG_ID hash,
                 const uint8_t *digest, size_t dlen, tk_buf *sig);
tk_rc tk_ks_sign_pss(tk_ks *ks, const tk_key *k, const EVP_MD *md, const EVP_MD *mgf1,
                     size_t saltlen, const uint8_t *mhash, size_t hlen, tk_buf *sig);
tk_rc tk_ks_rsa_raw(tk_ks *ks, const tk_key *k, const uint8_t *in, size_t inlen, tk_buf *out);
tk_rc tk_ks_rsa_decrypt(tk_ks *ks, const tk_key *k, TPM2_ALG_ID scheme, TPM2_ALG_ID hash,
                        const uint8_t *label, size_t labellen, const uint8_t *in, size_t inlen,
                        tk_buf *out);
tk_rc tk_ks_ecdh(tk_ks *ks, const tk_key *k, const uint8_t *peer, size_t peerlen, tk_buf *out);
tk_rc tk_ks_public(const tk_key *k, EVP_PKEY **out);

/* Export: TSS2 PRIVATE KEY (parent 0x81000001; a PIN key is re-wrapped so that the file's
 * password is the user PIN: needs login and pin) or SubjectPublicKeyInfo PEM. */
tk_rc tk_ks_export_tss2(tk_ks *ks, const tk_key *k, const tk_secret *pin, bool pem, tk_buf *out);
tk_rc tk_ks_export_public_pem(const tk_key *k, tk_buf *out);

/* The names of a key: "pkcs11:token=...;object=...;type=private" and "tpmkeys:object=..."
 * (percent-encoded per RFC 7512). Caller frees. */
char *tk_uri_pkcs11(const char *token, const char *label);
char *tk_uri_provider(const char *token, const char *label);
/* Percent-encode a value for a PKCS#11 URI path attribute. Caller frees. */
char *tk_uri_pct_encode(const uint8_t *v, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* TPMKEYS_H */
