/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The PKCS#11 module's private header: module state, sessions, objects and the
 * helpers the four files share.  Every C_* function takes the one module lock
 * (p11_enter) and gives it back (p11_leave); everything below assumes it is held.
 *
 * module.c  function list, C_Initialize/Finalize, fork and locking, tk_rc -> CK_RV
 * slot.c    slots, tokens, sessions, login and PINs
 * object.c  objects: handles, attributes, find, create/destroy/set
 * mech.c    mechanisms: sign/verify/encrypt/decrypt/derive/digest/random/keygen
 */
#ifndef TPMKEYS_P11_H
#define TPMKEYS_P11_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "tpmkeys.h"

/* PKCS#11 3.0 interface discovery (p11-kit 0.24's header predates it). */
typedef struct {
    CK_UTF8CHAR *pInterfaceName;
    CK_VOID_PTR pFunctionList;
    CK_FLAGS flags;
} p11_interface;
#define P11_INTERFACE_FORK_SAFE 0x00000001UL
#define P11_CKF_FIND_OBJECTS 0x00000040UL   /* C_SessionCancel flag (3.0) */

#define P11_MANUFACTURER "tpmkeys"
#define P11_MODEL "TPM 2.0"
#define P11_MAX_PIN TK_SECRET_MAX
#define P11_MIN_PIN 1

/* ------------------------------------------------------------------ objects */

/* Kinds of token objects: three views of one store row (a key), or one row of the
 * store's objects table (a certificate, public key or data object of its own). */
enum { P11_KIND_PRIV = 1, P11_KIND_PUB = 2, P11_KIND_CERT = 3, P11_KIND_OBJ = 4 };

/* Token-object handles are (key id << 2) | kind, or this bit | object id, stable for the
 * store row's life; session objects have the session bit set. */
#define P11_SESSION_OBJ_BIT ((CK_OBJECT_HANDLE)1 << 48)
#define P11_STORE_OBJ_BIT ((CK_OBJECT_HANDLE)1 << 47)

typedef struct {
    CK_ATTRIBUTE_TYPE type;
    uint8_t *val;
    CK_ULONG len;
    bool sensitive;   /* exists, but its value is never revealed */
} p11_attr;

typedef struct {
    p11_attr *a;
    size_t n, cap;
} p11_attrs;

void p11_attrs_free(p11_attrs *as);
const p11_attr *p11_attrs_get(const p11_attrs *as, CK_ATTRIBUTE_TYPE type);
CK_RV p11_attrs_set(p11_attrs *as, CK_ATTRIBUTE_TYPE type, const void *val, CK_ULONG len);
CK_RV p11_attrs_bool(p11_attrs *as, CK_ATTRIBUTE_TYPE type, bool v);
CK_RV p11_attrs_ulong(p11_attrs *as, CK_ATTRIBUTE_TYPE type, CK_ULONG v);
CK_RV p11_attrs_sensitive(p11_attrs *as, CK_ATTRIBUTE_TYPE type);

typedef struct p11_object {
    CK_OBJECT_HANDLE handle;
    int64_t token_id;
    int64_t key_id;              /* store row (token objects), 0 for session objects */
    int64_t obj_id;              /* objects-table row (P11_KIND_OBJ), else 0 */
    int kind;                    /* P11_KIND_* (token objects) */
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE key_type;        /* keys only */
    bool is_private;             /* CKA_PRIVATE */
    CK_SESSION_HANDLE owner;     /* session objects: the session that made it */
    tk_key *mem;                 /* session key objects: the TPM blobs, in memory only */
    p11_attrs attrs;
} p11_object;

/* Template helpers (the caller's CK_ATTRIBUTE arrays). */
const CK_ATTRIBUTE *p11_tmpl_find(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type);
/* *out unchanged when absent; CKR_ATTRIBUTE_VALUE_INVALID when malformed. */
CK_RV p11_tmpl_bool(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, bool *out);
CK_RV p11_tmpl_ulong(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, CK_ULONG *out);
/* A label attribute as a C string (NULL when absent). */
CK_RV p11_tmpl_string(const CK_ATTRIBUTE *t, CK_ULONG n, CK_ATTRIBUTE_TYPE type, char **out);

/* ------------------------------------------------------------------ operations */

enum { P11_OP_SIGN, P11_OP_VERIFY, P11_OP_ENCRYPT, P11_OP_DECRYPT, P11_OP_DIGEST, P11_OP_MAX };

typedef struct {
    bool active;
    CK_MECHANISM_TYPE mech;
    const EVP_MD *md;            /* hash of the mechanism (hashing mechanisms) */
    const EVP_MD *param_md;      /* PSS / OAEP hashAlg */
    const EVP_MD *mgf_md;        /* PSS / OAEP MGF1 hash */
    CK_ULONG salt_len;           /* PSS */
    tk_buf label;                /* OAEP source data */
    tk_key *key;                 /* private-key operations: our own copy of the row */
    EVP_PKEY *pkey;              /* public-key operations (software) */
    EVP_MD_CTX *mdctx;           /* multi-part hashing */
    tk_buf acc;                  /* multi-part input for single-part mechanisms */
    tk_buf result;               /* computed output kept for a retry with a bigger buffer */
    bool have_result;
} p11_op;

void p11_op_reset(p11_op *op);

typedef struct p11_session {
    CK_SESSION_HANDLE handle;
    CK_SLOT_ID slot;
    int64_t token_id;            /* 0: the uninitialised slot */
    CK_FLAGS flags;              /* CKF_SERIAL_SESSION | CKF_RW_SESSION */
    /* C_FindObjects */
    bool finding;
    CK_OBJECT_HANDLE *found;
    size_t nfound, found_pos;
    p11_op ops[P11_OP_MAX];
} p11_session;

/* ------------------------------------------------------------------ module state */

typedef struct {
    CK_SLOT_ID slot;
    tk_token *tok;
} p11_token;

typedef struct {
    CK_SLOT_ID slot;
    int64_t token_id;
} p11_slotmap;

typedef struct {
    int64_t token_id;
    CK_USER_TYPE who;
} p11_login;

typedef struct {
    bool initialized;
    pid_t pid;
    tk_ks *ks;                   /* opened on first need */
    bool dirty;                  /* our own writes: reload the caches */
    /* cache of the store (reloaded when another process or we changed it) */
    p11_token *tokens;
    size_t ntokens;
    p11_object **objs;           /* token objects of every token */
    size_t nobjs;
    /* slot ids given to tokens initialised in an uninitialised slot */
    p11_slotmap *maps;
    size_t nmaps;
    CK_SLOT_ID empty_slot;
    /* sessions and session objects */
    p11_session **sessions;
    size_t nsessions;
    CK_SESSION_HANDLE next_session;
    p11_object **sobjs;
    size_t nsobjs;
    CK_OBJECT_HANDLE next_sobj;
    p11_login *logins;
    size_t nlogins;
    /* The last stored key read for an operation, kept until the store changes: a signing
     * loop then reads its row from sqlite once, not on every C_SignInit. */
    tk_key *key_memo;
} p11_module;

extern p11_module p11;

/* module.c */
CK_RV p11_enter(void);
void p11_leave(void);
/* The CK_RV for a tk_rc; `unsupported` is what TK_ERR_UNSUPPORTED means here. */
CK_RV p11_rv(tk_rc rc, CK_RV unsupported);
/* Log the current tk_errmsg() (at info level) and return p11_rv(). */
CK_RV p11_fail(tk_rc rc, CK_RV unsupported, const char *what);
/* The same with a CK_RV chosen by the caller (a code that means more in its context). */
CK_RV p11_fail_as(tk_rc rc, CK_RV rv, const char *what);
/* Open the keystore if not yet open; create: the store may be created. */
CK_RV p11_ks(bool create, tk_ks **out);
void p11_blank_copy(CK_UTF8CHAR *dst, size_t dstlen, const char *src);

/* slot.c */
CK_RV p11_refresh(void);
p11_token *p11_token_by_id(int64_t token_id);
p11_session *p11_session_get(CK_SESSION_HANDLE h);
CK_USER_TYPE p11_login_role(int64_t token_id);   /* (CK_USER_TYPE)-1: none */
bool p11_user_logged_in(int64_t token_id);
void p11_sessions_free(void);
void p11_tokens_free(void);
CK_RV p11_session_rw(p11_session *s);

/* object.c */
CK_RV p11_objects_load(tk_store *st);
void p11_objects_free(void);
void p11_object_free(p11_object *o);
p11_object *p11_object_get(p11_session *s, CK_OBJECT_HANDLE h);
void p11_session_objects_drop(CK_SESSION_HANDLE owner);
void p11_destroyed_free(void);
CK_RV p11_session_object_add(p11_session *s, p11_object *o, CK_OBJECT_HANDLE *h);
/* A session object (public key, certificate, data, secret value) from a template. */
CK_RV p11_session_object_create(p11_session *s, const CK_ATTRIBUTE *t, CK_ULONG n,
                                CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *out);
/* The private/public objects of a key generated for this session only (blobs in memory). */
CK_RV p11_session_keypair_add(p11_session *s, tk_key *k, bool is_private,
                              CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv);
bool p11_object_visible(const p11_object *o, p11_session *s);
/* An EVP_PKEY for a public view of a key (token or session object). */
CK_RV p11_object_pkey(const p11_object *o, EVP_PKEY **out);
/* The store row behind a token key object (caller frees). */
CK_RV p11_object_key(const p11_object *o, tk_key **out);
/* Attributes of the private key a template describes, as an EVP_PKEY. */
CK_RV p11_pkey_from_template(const CK_ATTRIBUTE *t, CK_ULONG n, CK_KEY_TYPE kt, bool priv,
                             EVP_PKEY **out);
/* DER of the named curve OID for an EC key and back. */
CK_RV p11_ec_params(tk_alg alg, tk_buf *out);
tk_alg p11_alg_from_ec_params(const uint8_t *der, size_t len);
/* Set CKA_LABEL/CKA_ID of a store key from a template (after creation). */
CK_RV p11_key_apply_template(tk_key *k, const CK_ATTRIBUTE *t, CK_ULONG n);
char *p11_new_label(void);

/* mech.c */
void p11_mech_free_ops(p11_session *s);

#endif /* TPMKEYS_P11_H */
