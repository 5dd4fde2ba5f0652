/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The PKCS#11 module: function list, initialisation, locking, fork safety and the
 * one table that turns a tk_rc into a CK_RV.
 *
 * Threads: one mutex around the module state, held for the length of each call
 * (CKF_OS_LOCKING_OK; the TPM serialises commands anyway).  Fork: the pid is
 * remembered at C_Initialize; in a child every call sees the change, drops the
 * parent's keystore without touching it (the parent still owns the TPM connection
 * and the sqlite handle) and answers CKR_CRYPTOKI_NOT_INITIALIZED until the child
 * calls C_Initialize itself.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "p11.h"

p11_module p11;

static pthread_mutex_t p11_lock = PTHREAD_MUTEX_INITIALIZER;
/* The process that initialised the module (0: not initialised). */
static _Atomic pid_t owner;

/* Keystores left behind in a forked child: the parent still uses their TPM socket and
 * database handle, so the child must neither use nor close them (kept reachable). */
static tk_ks *volatile orphans[8];   /* volatile: written only, the compiler must keep it */
static size_t norphans;

/* ------------------------------------------------------------------ errors */

CK_RV p11_rv(tk_rc rc, CK_RV unsupported)
{
    switch (rc) {
    case TK_OK: return CKR_OK;
    case TK_ERR_NOMEM: return CKR_HOST_MEMORY;
    case TK_ERR_INVALID: return CKR_ARGUMENTS_BAD;
    case TK_ERR_NOT_FOUND: return CKR_OBJECT_HANDLE_INVALID;
    case TK_ERR_EXISTS: return CKR_TEMPLATE_INCONSISTENT;
    case TK_ERR_UNSUPPORTED: return unsupported;
    case TK_ERR_PASSPHRASE: return CKR_PIN_INCORRECT;
    case TK_ERR_PIN_INCORRECT: return CKR_PIN_INCORRECT;
    case TK_ERR_PIN_LOCKED: return CKR_PIN_LOCKED;
    case TK_ERR_PIN_REQUIRED: return CKR_USER_NOT_LOGGED_IN;
    case TK_ERR_NO_TPM: return CKR_DEVICE_ERROR;
    case TK_ERR_TPM: return CKR_DEVICE_ERROR;
    case TK_ERR_TPM_FULL: return CKR_DEVICE_MEMORY;
    case TK_ERR_STORE: return CKR_DEVICE_ERROR;
    case TK_ERR_READONLY: return CKR_TOKEN_WRITE_PROTECTED;
    case TK_ERR_IO: return CKR_DEVICE_ERROR;
    case TK_ERR_BUSY: return CKR_FUNCTION_FAILED;
    }
    return CKR_GENERAL_ERROR;
}

CK_RV p11_fail_as(tk_rc rc, CK_RV rv, const char *what)
{
    tk_info("pkcs11: %s: %s (%s, CKR 0x%lx)", what, tk_errmsg(), tk_rc_name(rc),
            (unsigned long)rv);
    return rv;
}

CK_RV p11_fail(tk_rc rc, CK_RV unsupported, const char *what)
{
    return p11_fail_as(rc, p11_rv(rc, unsupported), what);
}

/* ------------------------------------------------------------------ state */

void p11_blank_copy(CK_UTF8CHAR *dst, size_t dstlen, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    memset(dst, ' ', dstlen);
    memcpy(dst, src ? src : "", n < dstlen ? n : dstlen);
}

CK_RV p11_ks(bool create, tk_ks **out)
{
    tk_ks_config cfg = { 0 };
    tk_rc rc;

    if (!p11.ks) {
        cfg.store_flags = create ? TK_STORE_CREATE : 0;
        rc = tk_ks_open(&cfg, &p11.ks);
        if (rc == TK_ERR_NOT_FOUND && !create)
            return CKR_TOKEN_NOT_PRESENT;   /* no store yet: only the empty slot */
        if (rc != TK_OK)
            return p11_fail(rc, CKR_DEVICE_ERROR, "opening the key store");
        p11.dirty = true;
    }
    *out = p11.ks;
    return CKR_OK;
}

/* Forget everything; the keystore is closed, or orphaned in a forked child. */
static void state_clear(bool forked)
{
    p11_sessions_free();
    p11_objects_free();
    p11_tokens_free();
    p11_destroyed_free();
    free(p11.maps);
    free(p11.logins);
    tk_key_free(p11.key_memo);
    if (p11.ks) {
        if (forked) {
            if (norphans < sizeof(orphans) / sizeof(orphans[0]))
                orphans[norphans++] = p11.ks;
        } else {
            tk_ks_close(p11.ks);
        }
    }
    memset(&p11, 0, sizeof(p11));
}

/* A forked child inherits the parent's state: drop it.  Checked before taking the lock,
 * which a thread of the parent (absent in the child) may have held at fork time. */
static void fork_guard(void)
{
    pid_t o = atomic_load(&owner);

    if (o && o != getpid()) {
        pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
        p11_lock = fresh;
        atomic_store(&owner, 0);
        state_clear(true);
    }
}

CK_RV p11_enter(void)
{
    fork_guard();
    pthread_mutex_lock(&p11_lock);
    if (!p11.initialized) {
        pthread_mutex_unlock(&p11_lock);
        return CKR_CRYPTOKI_NOT_INITIALIZED;
    }
    tk_clear_error();
    return CKR_OK;
}

void p11_leave(void)
{
    pthread_mutex_unlock(&p11_lock);
}

/* ------------------------------------------------------------------ general functions */

static CK_RV check_init_args(const CK_C_INITIALIZE_ARGS *a)
{
    int fns;

    if (!a)
        return CKR_OK;
    if (a->pReserved)
        return CKR_ARGUMENTS_BAD;
    fns = !!a->CreateMutex + !!a->DestroyMutex + !!a->LockMutex + !!a->UnlockMutex;
    if (fns != 0 && fns != 4)
        return CKR_ARGUMENTS_BAD;
    /* Application-supplied locking only: we lock with the OS and cannot use theirs. */
    if (fns == 4 && !(a->flags & CKF_OS_LOCKING_OK))
        return CKR_CANT_LOCK;
    return CKR_OK;
}

CK_RV C_Initialize(CK_VOID_PTR init_args)
{
    CK_RV rv = check_init_args(init_args);

    if (rv != CKR_OK)
        return rv;
    tk_module_pin((const void *)&orphans);
    fork_guard();
    pthread_mutex_lock(&p11_lock);
    if (p11.initialized) {
        rv = CKR_CRYPTOKI_ALREADY_INITIALIZED;
    } else {
        /* Nothing touches the store or the TPM here: both open on first need. */
        memset(&p11, 0, sizeof(p11));
        p11.initialized = true;
        p11.pid = getpid();
        p11.next_session = 1;
        p11.next_sobj = 1;
        atomic_store(&owner, p11.pid);
    }
    pthread_mutex_unlock(&p11_lock);
    return rv;
}

CK_RV C_Finalize(CK_VOID_PTR reserved)
{
    CK_RV rv;

    if (reserved)
        return CKR_ARGUMENTS_BAD;
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    state_clear(false);
    atomic_store(&owner, 0);
    p11_leave();
    return CKR_OK;
}

CK_RV C_GetInfo(CK_INFO_PTR info)
{
    CK_RV rv;
    unsigned maj = 0, min = 0;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!info) {
        p11_leave();
        return CKR_ARGUMENTS_BAD;
    }
    memset(info, 0, sizeof(*info));
    info->cryptokiVersion.major = 2;
    info->cryptokiVersion.minor = 40;
    p11_blank_copy(info->manufacturerID, sizeof(info->manufacturerID), P11_MANUFACTURER);
    p11_blank_copy(info->libraryDescription, sizeof(info->libraryDescription),
                   "tpmkeys TPM 2.0 key store");
    if (sscanf(TPMKEYS_VERSION, "%u.%u", &maj, &min) == 2) {
        info->libraryVersion.major = (CK_BYTE)maj;
        info->libraryVersion.minor = (CK_BYTE)min;
    }
    p11_leave();
    return CKR_OK;
}

/* ------------------------------------------------------------------ not offered */

CK_RV C_GetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG_PTR len)
{
    (void)s, (void)state, (void)len;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_SetOperationState(CK_SESSION_HANDLE s, CK_BYTE_PTR state, CK_ULONG len,
                          CK_OBJECT_HANDLE enc, CK_OBJECT_HANDLE auth)
{
    (void)s, (void)state, (void)len, (void)enc, (void)auth;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_SignRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
    (void)s, (void)m, (void)k;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_SignRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig,
                    CK_ULONG_PTR sl)
{
    (void)s, (void)d, (void)dl, (void)sig, (void)sl;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_VerifyRecoverInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
    (void)s, (void)m, (void)k;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_VerifyRecover(CK_SESSION_HANDLE s, CK_BYTE_PTR sig, CK_ULONG sl, CK_BYTE_PTR d,
                      CK_ULONG_PTR dl)
{
    (void)s, (void)sig, (void)sl, (void)d, (void)dl;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_DigestEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR p, CK_ULONG pl, CK_BYTE_PTR e,
                            CK_ULONG_PTR el)
{
    (void)s, (void)p, (void)pl, (void)e, (void)el;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_DecryptDigestUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el, CK_BYTE_PTR p,
                            CK_ULONG_PTR pl)
{
    (void)s, (void)e, (void)el, (void)p, (void)pl;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_SignEncryptUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR p, CK_ULONG pl, CK_BYTE_PTR e,
                          CK_ULONG_PTR el)
{
    (void)s, (void)p, (void)pl, (void)e, (void)el;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_DecryptVerifyUpdate(CK_SESSION_HANDLE s, CK_BYTE_PTR e, CK_ULONG el, CK_BYTE_PTR p,
                            CK_ULONG_PTR pl)
{
    (void)s, (void)e, (void)el, (void)p, (void)pl;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
                    CK_OBJECT_HANDLE_PTR k)
{
    (void)s, (void)m, (void)t, (void)n, (void)k;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_WrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE w, CK_OBJECT_HANDLE k,
                CK_BYTE_PTR out, CK_ULONG_PTR outl)
{
    (void)s, (void)m, (void)w, (void)k, (void)out, (void)outl;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_UnwrapKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE u, CK_BYTE_PTR w,
                  CK_ULONG wl, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR k)
{
    (void)s, (void)m, (void)u, (void)w, (void)wl, (void)t, (void)n, (void)k;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV C_SeedRandom(CK_SESSION_HANDLE s, CK_BYTE_PTR seed, CK_ULONG len)
{
    CK_RV rv;

    (void)seed, (void)len;
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    rv = p11_session_get(s) ? CKR_RANDOM_SEED_NOT_SUPPORTED : CKR_SESSION_HANDLE_INVALID;
    p11_leave();
    return rv;
}

CK_RV C_GetFunctionStatus(CK_SESSION_HANDLE s)
{
    (void)s;
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_CancelFunction(CK_SESSION_HANDLE s)
{
    (void)s;
    return CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR slot, CK_VOID_PTR reserved)
{
    (void)flags, (void)slot, (void)reserved;
    return CKR_FUNCTION_NOT_SUPPORTED;
}

/* ------------------------------------------------------------------ function list */

static CK_FUNCTION_LIST function_list = {
    .version = { 2, 40 },
    .C_Initialize = C_Initialize,
    .C_Finalize = C_Finalize,
    .C_GetInfo = C_GetInfo,
    .C_GetFunctionList = C_GetFunctionList,
    .C_GetSlotList = C_GetSlotList,
    .C_GetSlotInfo = C_GetSlotInfo,
    .C_GetTokenInfo = C_GetTokenInfo,
    .C_GetMechanismList = C_GetMechanismList,
    .C_GetMechanismInfo = C_GetMechanismInfo,
    .C_InitToken = C_InitToken,
    .C_InitPIN = C_InitPIN,
    .C_SetPIN = C_SetPIN,
    .C_OpenSession = C_OpenSession,
    .C_CloseSession = C_CloseSession,
    .C_CloseAllSessions = C_CloseAllSessions,
    .C_GetSessionInfo = C_GetSessionInfo,
    .C_GetOperationState = C_GetOperationState,
    .C_SetOperationState = C_SetOperationState,
    .C_Login = C_Login,
    .C_Logout = C_Logout,
    .C_CreateObject = C_CreateObject,
    .C_CopyObject = C_CopyObject,
    .C_DestroyObject = C_DestroyObject,
    .C_GetObjectSize = C_GetObjectSize,
    .C_GetAttributeValue = C_GetAttributeValue,
    .C_SetAttributeValue = C_SetAttributeValue,
    .C_FindObjectsInit = C_FindObjectsInit,
    .C_FindObjects = C_FindObjects,
    .C_FindObjectsFinal = C_FindObjectsFinal,
    .C_EncryptInit = C_EncryptInit,
    .C_Encrypt = C_Encrypt,
    .C_EncryptUpdate = C_EncryptUpdate,
    .C_EncryptFinal = C_EncryptFinal,
    .C_DecryptInit = C_DecryptInit,
    .C_Decrypt = C_Decrypt,
    .C_DecryptUpdate = C_DecryptUpdate,
    .C_DecryptFinal = C_DecryptFinal,
    .C_DigestInit = C_DigestInit,
    .C_Digest = C_Digest,
    .C_DigestUpdate = C_DigestUpdate,
    .C_DigestKey = C_DigestKey,
    .C_DigestFinal = C_DigestFinal,
    .C_SignInit = C_SignInit,
    .C_Sign = C_Sign,
    .C_SignUpdate = C_SignUpdate,
    .C_SignFinal = C_SignFinal,
    .C_SignRecoverInit = C_SignRecoverInit,
    .C_SignRecover = C_SignRecover,
    .C_VerifyInit = C_VerifyInit,
    .C_Verify = C_Verify,
    .C_VerifyUpdate = C_VerifyUpdate,
    .C_VerifyFinal = C_VerifyFinal,
    .C_VerifyRecoverInit = C_VerifyRecoverInit,
    .C_VerifyRecover = C_VerifyRecover,
    .C_DigestEncryptUpdate = C_DigestEncryptUpdate,
    .C_DecryptDigestUpdate = C_DecryptDigestUpdate,
    .C_SignEncryptUpdate = C_SignEncryptUpdate,
    .C_DecryptVerifyUpdate = C_DecryptVerifyUpdate,
    .C_GenerateKey = C_GenerateKey,
    .C_GenerateKeyPair = C_GenerateKeyPair,
    .C_WrapKey = C_WrapKey,
    .C_UnwrapKey = C_UnwrapKey,
    .C_DeriveKey = C_DeriveKey,
    .C_SeedRandom = C_SeedRandom,
    .C_GenerateRandom = C_GenerateRandom,
    .C_GetFunctionStatus = C_GetFunctionStatus,
    .C_CancelFunction = C_CancelFunction,
    .C_WaitForSlotEvent = C_WaitForSlotEvent,
};

/* ------------------------------------------------------------------ PKCS#11 3.0 */

/* PKCS#11 3.0 discovery, exported beside C_GetFunctionList. */
CK_RV C_GetInterfaceList(p11_interface *list, CK_ULONG *count);
CK_RV C_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, p11_interface **iface,
                     CK_FLAGS flags);

/* C_LoginUser: tokens here have one user per role; the user name is not used. */
static CK_RV C_LoginUser(CK_SESSION_HANDLE s, CK_USER_TYPE who, CK_UTF8CHAR_PTR pin,
                         CK_ULONG len, CK_UTF8CHAR_PTR user, CK_ULONG ulen)
{
    (void)user, (void)ulen;
    return C_Login(s, who, pin, len);
}

/* C_SessionCancel: end the operations named by flags. */
static CK_RV C_SessionCancel(CK_SESSION_HANDLE h, CK_FLAGS flags)
{
    static const struct { CK_FLAGS flag; int op; } map[] = {
        { CKF_SIGN, P11_OP_SIGN }, { CKF_VERIFY, P11_OP_VERIFY },
        { CKF_ENCRYPT, P11_OP_ENCRYPT }, { CKF_DECRYPT, P11_OP_DECRYPT },
        { CKF_DIGEST, P11_OP_DIGEST },
    };
    p11_session *s;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else {
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
            if (flags & map[i].flag)
                p11_op_reset(&s->ops[map[i].op]);
        if (flags & P11_CKF_FIND_OBJECTS) {
            free(s->found);
            s->found = NULL;
            s->nfound = s->found_pos = 0;
            s->finding = false;
        }
    }
    p11_leave();
    return rv;
}

/* Message-based encryption and signing (PKCS#11 3.0 chapter 5.x): no mechanism here
 * works per message (they are for AEAD ciphers), so the functions say so. */
#define MSG_NOT_SUPPORTED(...) { (void)h; __VA_ARGS__; return CKR_FUNCTION_NOT_SUPPORTED; }
static CK_RV C_MessageEncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
MSG_NOT_SUPPORTED((void)m, (void)k)
static CK_RV C_EncryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a,
                              CK_ULONG al, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o,
                              CK_ULONG_PTR ol)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)a, (void)al, (void)d, (void)dl, (void)o, (void)ol)
static CK_RV C_EncryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl,
                                   CK_BYTE_PTR a, CK_ULONG al)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)a, (void)al)
static CK_RV C_EncryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl,
                                  CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol,
                                  CK_FLAGS f)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)o, (void)ol, (void)f)
static CK_RV C_MessageEncryptFinal(CK_SESSION_HANDLE h)
MSG_NOT_SUPPORTED()
static CK_RV C_MessageDecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
MSG_NOT_SUPPORTED((void)m, (void)k)
static CK_RV C_DecryptMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR a,
                              CK_ULONG al, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o,
                              CK_ULONG_PTR ol)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)a, (void)al, (void)d, (void)dl, (void)o, (void)ol)
static CK_RV C_DecryptMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl,
                                   CK_BYTE_PTR a, CK_ULONG al)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)a, (void)al)
static CK_RV C_DecryptMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl,
                                  CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol,
                                  CK_FLAGS f)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)o, (void)ol, (void)f)
static CK_RV C_MessageDecryptFinal(CK_SESSION_HANDLE h)
MSG_NOT_SUPPORTED()
static CK_RV C_MessageSignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
MSG_NOT_SUPPORTED((void)m, (void)k)
static CK_RV C_SignMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                           CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)o, (void)ol)
static CK_RV C_SignMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl)
MSG_NOT_SUPPORTED((void)p, (void)pl)
static CK_RV C_SignMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                               CK_ULONG dl, CK_BYTE_PTR o, CK_ULONG_PTR ol)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)o, (void)ol)
static CK_RV C_MessageSignFinal(CK_SESSION_HANDLE h)
MSG_NOT_SUPPORTED()
static CK_RV C_MessageVerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
MSG_NOT_SUPPORTED((void)m, (void)k)
static CK_RV C_VerifyMessage(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                             CK_ULONG dl, CK_BYTE_PTR sg, CK_ULONG sl)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)sg, (void)sl)
static CK_RV C_VerifyMessageBegin(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl)
MSG_NOT_SUPPORTED((void)p, (void)pl)
static CK_RV C_VerifyMessageNext(CK_SESSION_HANDLE h, CK_VOID_PTR p, CK_ULONG pl, CK_BYTE_PTR d,
                                 CK_ULONG dl, CK_BYTE_PTR sg, CK_ULONG sl)
MSG_NOT_SUPPORTED((void)p, (void)pl, (void)d, (void)dl, (void)sg, (void)sl)
static CK_RV C_MessageVerifyFinal(CK_SESSION_HANDLE h)
MSG_NOT_SUPPORTED()
#undef MSG_NOT_SUPPORTED

/* CK_FUNCTION_LIST_3_0: the 2.40 list followed by the 3.0 additions, in the order of the
 * standard's pkcs11f.h (p11-kit 0.24's header does not have the type). */
typedef struct {
    CK_FUNCTION_LIST v2;   /* version, then the 68 functions of 2.40 */
    CK_RV (*C_GetInterfaceList)(p11_interface *, CK_ULONG *);
    CK_RV (*C_GetInterface)(CK_UTF8CHAR *, CK_VERSION *, p11_interface **, CK_FLAGS);
    CK_RV (*C_LoginUser)(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG,
                         CK_UTF8CHAR_PTR, CK_ULONG);
    CK_RV (*C_SessionCancel)(CK_SESSION_HANDLE, CK_FLAGS);
    CK_RV (*C_MessageEncryptInit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    CK_RV (*C_EncryptMessage)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,
                              CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    CK_RV (*C_EncryptMessageBegin)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR,
                                   CK_ULONG);
    CK_RV (*C_EncryptMessageNext)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR,
                                  CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS);
    CK_RV (*C_MessageEncryptFinal)(CK_SESSION_HANDLE);
    CK_RV (*C_MessageDecryptInit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    CK_RV (*C_DecryptMessage)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,
                              CK_BYTE_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR);
    CK_RV (*C_DecryptMessageBegin)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR,
                                   CK_ULONG);
    CK_RV (*C_DecryptMessageNext)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR,
                                  CK_ULONG, CK_BYTE_PTR, CK_ULONG_PTR, CK_FLAGS);
    CK_RV (*C_MessageDecryptFinal)(CK_SESSION_HANDLE);
    CK_RV (*C_MessageSignInit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    CK_RV (*C_SignMessage)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,
                           CK_BYTE_PTR, CK_ULONG_PTR);
    CK_RV (*C_SignMessageBegin)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG);
    CK_RV (*C_SignMessageNext)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,
                               CK_BYTE_PTR, CK_ULONG_PTR);
    CK_RV (*C_MessageSignFinal)(CK_SESSION_HANDLE);
    CK_RV (*C_MessageVerifyInit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
    CK_RV (*C_VerifyMessage)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR, CK_ULONG,
                             CK_BYTE_PTR, CK_ULONG);
    CK_RV (*C_VerifyMessageBegin)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG);
    CK_RV (*C_VerifyMessageNext)(CK_SESSION_HANDLE, CK_VOID_PTR, CK_ULONG, CK_BYTE_PTR,
                                 CK_ULONG, CK_BYTE_PTR, CK_ULONG);
    CK_RV (*C_MessageVerifyFinal)(CK_SESSION_HANDLE);
} p11_function_list_3_0;

static p11_function_list_3_0 function_list_3_0 = {
    .C_GetInterfaceList = C_GetInterfaceList,
    .C_GetInterface = C_GetInterface,
    .C_LoginUser = C_LoginUser,
    .C_SessionCancel = C_SessionCancel,
    .C_MessageEncryptInit = C_MessageEncryptInit,
    .C_EncryptMessage = C_EncryptMessage,
    .C_EncryptMessageBegin = C_EncryptMessageBegin,
    .C_EncryptMessageNext = C_EncryptMessageNext,
    .C_MessageEncryptFinal = C_MessageEncryptFinal,
    .C_MessageDecryptInit = C_MessageDecryptInit,
    .C_DecryptMessage = C_DecryptMessage,
    .C_DecryptMessageBegin = C_DecryptMessageBegin,
    .C_DecryptMessageNext = C_DecryptMessageNext,
    .C_MessageDecryptFinal = C_MessageDecryptFinal,
    .C_MessageSignInit = C_MessageSignInit,
    .C_SignMessage = C_SignMessage,
    .C_SignMessageBegin = C_SignMessageBegin,
    .C_SignMessageNext = C_SignMessageNext,
    .C_MessageSignFinal = C_MessageSignFinal,
    .C_MessageVerifyInit = C_MessageVerifyInit,
    .C_VerifyMessage = C_VerifyMessage,
    .C_VerifyMessageBegin = C_VerifyMessageBegin,
    .C_VerifyMessageNext = C_VerifyMessageNext,
    .C_MessageVerifyFinal = C_MessageVerifyFinal,
};

/* "PKCS 11" 3.0 (the default) and 2.40, both fork-safe. */
static p11_interface interfaces[] = {
    { (CK_UTF8CHAR *)"PKCS 11", &function_list_3_0, P11_INTERFACE_FORK_SAFE },
    { (CK_UTF8CHAR *)"PKCS 11", &function_list, P11_INTERFACE_FORK_SAFE },
};
#define NINTERFACES (sizeof(interfaces) / sizeof(interfaces[0]))

/* The 3.0 list starts with the 2.40 functions: filled in once, before first use. */
static pthread_once_t list_once = PTHREAD_ONCE_INIT;

static void fill_3_0(void)
{
    function_list_3_0.v2 = function_list;
    function_list_3_0.v2.version.major = 3;
    function_list_3_0.v2.version.minor = 0;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
    if (!list)
        return CKR_ARGUMENTS_BAD;
    *list = &function_list;
    return CKR_OK;
}

CK_RV C_GetInterfaceList(p11_interface *list, CK_ULONG *count)
{
    if (!count)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&list_once, fill_3_0);
    if (!list) {
        *count = NINTERFACES;
        return CKR_OK;
    }
    if (*count < NINTERFACES) {
        *count = NINTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(list, interfaces, sizeof(interfaces));
    *count = NINTERFACES;
    return CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR *name, CK_VERSION *version, p11_interface **iface,
                     CK_FLAGS flags)
{
    if (!iface)
        return CKR_ARGUMENTS_BAD;
    pthread_once(&list_once, fill_3_0);
    for (size_t i = 0; i < NINTERFACES; i++) {
        const CK_VERSION *v = (const CK_VERSION *)interfaces[i].pFunctionList;
        if (name && strcmp((const char *)name, (const char *)interfaces[i].pInterfaceName))
            continue;
        if (version && (version->major != v->major || version->minor != v->minor))
            continue;
        if ((interfaces[i].flags & flags) != flags)
            continue;
        *iface = &interfaces[i];
        return CKR_OK;
    }
    return CKR_ARGUMENTS_BAD;
}
