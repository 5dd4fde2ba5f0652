/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The PKCS#11 module through its function list, as an application sees it: the
 * module is dlopen()ed (argv[1], else $TPMKEYS_PKCS11_MODULE) and driven against the
 * swtpm and store that p11-api.sh set up.  Every signature is checked by OpenSSL in
 * software; argument errors, length queries, login rules, threads and fork too.
 * TAP output; exit 0 when every check passed.
 */
#include "config.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "../p11_check.h"

static CK_FUNCTION_LIST *f;

/* The head of PKCS#11 3.0's CK_FUNCTION_LIST_3_0 (p11-kit 0.24 has no such type). */
typedef struct {
    CK_FUNCTION_LIST v2;
    void *C_GetInterfaceList, *C_GetInterface;
    CK_RV (*C_LoginUser)(CK_SESSION_HANDLE, CK_USER_TYPE, CK_UTF8CHAR_PTR, CK_ULONG,
                         CK_UTF8CHAR_PTR, CK_ULONG);
    CK_RV (*C_SessionCancel)(CK_SESSION_HANDLE, CK_FLAGS);
    CK_RV (*C_MessageEncryptInit)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE);
} fl30_head;
static const fl30_head *f30;


static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const uint8_t p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

/* ------------------------------------------------------------------ helpers */

static void padded(CK_UTF8CHAR *out, size_t n, const char *s)
{
    memset(out, ' ', n);
    memcpy(out, s, strlen(s));
}

static bool blank_padded(const CK_UTF8CHAR *v, size_t n, const char *want)
{
    size_t l = strlen(want);
    if (memcmp(v, want, l))
        return false;
    for (size_t i = l; i < n; i++)
        if (v[i] != ' ')
            return false;
    return true;
}

/* All slots; returns the count. */
static CK_ULONG slots(CK_SLOT_ID *list, CK_ULONG max)
{
    CK_ULONG n = max;
    if (f->C_GetSlotList(CK_TRUE, list, &n) != CKR_OK)
        return 0;
    return n;
}

static CK_SLOT_ID empty_slot(void)
{
    CK_SLOT_ID list[16];
    CK_TOKEN_INFO ti;
    CK_ULONG n = slots(list, 16);
    for (CK_ULONG i = 0; i < n; i++)
        if (f->C_GetTokenInfo(list[i], &ti) == CKR_OK && !(ti.flags & CKF_TOKEN_INITIALIZED))
            return list[i];
    return (CK_SLOT_ID)-1;
}

static CK_FLAGS token_flags(CK_SLOT_ID slot)
{
    CK_TOKEN_INFO ti;
    memset(&ti, 0, sizeof(ti));
    f->C_GetTokenInfo(slot, &ti);
    return ti.flags;
}

/* One attribute into a malloc'ed buffer (NULL when it fails). */
static uint8_t *attr(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, CK_ULONG *len)
{
    CK_ATTRIBUTE a = { t, NULL, 0 };
    uint8_t *v;
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
        return NULL;
    v = malloc(a.ulValueLen + 1);
    a.pValue = v;
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK) {
        free(v);
        return NULL;
    }
    *len = a.ulValueLen;
    return v;
}

static int attr_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t)
{
    CK_BBOOL b = 2;
    CK_ATTRIBUTE a = { t, &b, sizeof(b) };
    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return -1;
    return b;
}

/* The public key of an object (CKA_PUBLIC_KEY_INFO) as an OpenSSL key. */
static EVP_PKEY *pubkey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    CK_ULONG len = 0;
    uint8_t *spki = attr(s, o, CKA_PUBLIC_KEY_INFO, &len);
    const unsigned char *p = spki;
    EVP_PKEY *k = spki ? d2i_PUBKEY(NULL, &p, (long)len) : NULL;
    free(spki);
    return k;
}

static size_t find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out,
                   size_t max)
{
    CK_ULONG got = 0;
    if (f->C_FindObjectsInit(s, t, n) != CKR_OK)
        return (size_t)-1;
    if (f->C_FindObjects(s, out, max, &got) != CKR_OK)
        got = (CK_ULONG)-1;
    f->C_FindObjectsFinal(s);
    return got;
}

static CK_OBJECT_HANDLE find_one(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const char *label)
{
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_OBJECT_HANDLE h[4];
    return find(s, t, 2, h, 4) == 1 ? h[0] : CK_INVALID_HANDLE;
}

static bool sha(const EVP_MD *md, const void *d, size_t n, uint8_t *out, unsigned *outlen)
{
    return EVP_Digest(d, n, out, outlen, md, NULL) == 1;
}

/* Verify an ECDSA r||s signature over a digest with OpenSSL. */
static bool ecdsa_ok(EVP_PKEY *k, const uint8_t *dig, size_t dlen, const uint8_t *sig, size_t slen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    unsigned char *der = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    int derlen, ok = 0;

    ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)slen / 2, NULL),
                   BN_bin2bn(sig + slen / 2, (int)slen / 2, NULL));
    derlen = i2d_ECDSA_SIG(es, &der);
    if (derlen > 0 && EVP_PKEY_verify_init(c) > 0)
        ok = EVP_PKEY_verify(c, der, (size_t)derlen, dig, dlen) == 1;
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(c);
    return ok;
}

/* Verify an RSA signature over a digest: pad = RSA_PKCS1_PADDING or PSS (salt). */
static bool rsa_ok(EVP_PKEY *k, const EVP_MD *md, int pad, int salt, const uint8_t *dig,
                   size_t dlen, const uint8_t *sig, size_t slen)
{
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
    int ok = 0;
    if (EVP_PKEY_verify_init(c) > 0 && EVP_PKEY_CTX_set_rsa_padding(c, pad) > 0 &&
        EVP_PKEY_CTX_set_signature_md(c, md) > 0 &&
        (pad != RSA_PKCS1_PSS_PADDING || EVP_PKEY_CTX_set_rsa_pss_saltlen(c, salt) > 0))
        ok = EVP_PKEY_verify(c, sig, slen, dig, dlen) == 1;
    EVP_PKEY_CTX_free(c);
    return ok;
}

static CK_RV sign(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k, const void *d,
                  size_t n, uint8_t *sig, CK_ULONG *slen)
{
    CK_RV rv = f->C_SignInit(s, m, k);
    if (rv != CKR_OK)
        return rv;
    return f->C_Sign(s, (CK_BYTE_PTR)d, n, sig, slen);
}

/* ------------------------------------------------------------------ scenario parts */

static CK_SLOT_ID slot;           /* the test token */
static const char *so_pin = "so-secret", *user_pin = "1234";

static void test_module_and_init(void *lib)
{
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args;
    CK_ULONG n;
    CK_SLOT_ID list[8];
    CK_INFO info;

    CHECK(gfl != NULL, "C_GetFunctionList exported");
    CHECK(dlsym(lib, "C_GetInterfaceList") && dlsym(lib, "C_GetInterface"),
          "C_GetInterfaceList and C_GetInterface exported");
    CHECK(!dlsym(lib, "C_Initialize") && !dlsym(lib, "tk_ks_open") && !dlsym(lib, "p11"),
          "nothing else exported (no C_Initialize, no libtpmkeys symbol)");
    RV(CKR_OK, gfl(&f), "C_GetFunctionList");
    RV(CKR_ARGUMENTS_BAD, gfl(NULL), "C_GetFunctionList(NULL)");
    CHECK(f->version.major == 2 && f->version.minor == 40, "function list version 2.40");
    {
        typedef struct { CK_UTF8CHAR *name; void *fl; CK_FLAGS flags; } iface;
        CK_RV (*gil)(iface *, CK_ULONG *) = (CK_RV (*)(iface *, CK_ULONG *))dlsym(lib, "C_GetInterfaceList");
        CK_RV (*gi)(CK_UTF8CHAR *, CK_VERSION *, iface **, CK_FLAGS) =
            (CK_RV (*)(CK_UTF8CHAR *, CK_VERSION *, iface **, CK_FLAGS))dlsym(lib, "C_GetInterface");
        iface ifs[2], *ip = NULL;
        CK_ULONG ni = 0;
        CK_VERSION v240 = { 2, 40 }, v30 = { 3, 0 };
        RV(CKR_OK, gil(NULL, &ni), "C_GetInterfaceList count");
        CHECK(ni == 2, "two interfaces (%lu)", (unsigned long)ni);
        ni = 1;
        RV(CKR_BUFFER_TOO_SMALL, gil(ifs, &ni), "C_GetInterfaceList into 1");
        ni = 2;
        RV(CKR_OK, gil(ifs, &ni), "C_GetInterfaceList");
        const CK_FUNCTION_LIST *l30 = ifs[0].fl;
        f30 = ifs[0].fl;
        CHECK(!strcmp((char *)ifs[0].name, "PKCS 11") && l30->version.major == 3 &&
                  l30->version.minor == 0 && (ifs[0].flags & 1),
              "first interface: \"PKCS 11\" 3.0, fork-safe");
        CHECK(l30->C_Sign == f->C_Sign && l30->C_WaitForSlotEvent == f->C_WaitForSlotEvent,
              "the 3.0 list starts with the 2.40 functions");
        CHECK(ifs[1].fl == f, "second interface: the 2.40 function list");
        RV(CKR_OK, gi((CK_UTF8CHAR *)"PKCS 11", &v240, &ip, 0), "C_GetInterface 2.40");
        CHECK(ip && ip->fl == f, "C_GetInterface(2.40) gives C_GetFunctionList's list");
        RV(CKR_OK, gi(NULL, NULL, &ip, 0), "C_GetInterface default");
        CHECK(ip && ((CK_FUNCTION_LIST *)ip->fl)->version.major == 3, "the default is 3.0");
        RV(CKR_OK, gi(NULL, &v30, &ip, 1), "C_GetInterface 3.0, fork-safe");
        RV(CKR_ARGUMENTS_BAD, gi((CK_UTF8CHAR *)"Vendor X", NULL, &ip, 0), "unknown interface");
    }

    RV(CKR_CRYPTOKI_NOT_INITIALIZED, f->C_GetSlotList(CK_TRUE, NULL, &n), "before C_Initialize");
    memset(&args, 0, sizeof(args));
    args.CreateMutex = (CK_CREATEMUTEX)1;
    RV(CKR_ARGUMENTS_BAD, f->C_Initialize(&args), "C_Initialize with one mutex function");
    args.DestroyMutex = (CK_DESTROYMUTEX)1;
    args.LockMutex = (CK_LOCKMUTEX)1;
    args.UnlockMutex = (CK_UNLOCKMUTEX)1;
    RV(CKR_CANT_LOCK, f->C_Initialize(&args), "C_Initialize with application locking only");
    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    RV(CKR_OK, f->C_Initialize(&args), "C_Initialize(CKF_OS_LOCKING_OK)");
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED, f->C_Initialize(NULL), "C_Initialize twice");

    RV(CKR_OK, f->C_GetInfo(&info), "C_GetInfo");
    CHECK(info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40 &&
          blank_padded(info.manufacturerID, 32, "tpmkeys"),
          "C_GetInfo: 2.40, manufacturer blank-padded");
    RV(CKR_ARGUMENTS_BAD, f->C_GetInfo(NULL), "C_GetInfo(NULL)");

    RV(CKR_ARGUMENTS_BAD, f->C_GetSlotList(CK_TRUE, NULL, NULL), "C_GetSlotList(NULL count)");
    RV(CKR_OK, f->C_GetSlotList(CK_TRUE, NULL, &n), "slot count before any store");
    CHECK(n == 1, "only the uninitialised slot (%lu)", (unsigned long)n);
    n = 0;
    RV(CKR_BUFFER_TOO_SMALL, f->C_GetSlotList(CK_TRUE, list, &n), "slot list too small");
    CHECK(n == 1, "... and the count is given");
}

static void test_init_token(void)
{
    CK_UTF8CHAR label[32];
    CK_TOKEN_INFO ti;
    CK_SLOT_INFO si;
    CK_SLOT_ID empty = empty_slot(), list[8];
    CK_SESSION_HANDLE s;

    CHECK(empty != (CK_SLOT_ID)-1, "an uninitialised slot is listed");
    RV(CKR_OK, f->C_GetSlotInfo(empty, &si), "C_GetSlotInfo(empty slot)");
    CHECK(si.flags & CKF_TOKEN_PRESENT, "token present in the empty slot");
    RV(CKR_SLOT_ID_INVALID, f->C_GetSlotInfo(9999, &si), "C_GetSlotInfo(bad slot)");
    RV(CKR_SLOT_ID_INVALID, f->C_GetTokenInfo(9999, &ti), "C_GetTokenInfo(bad slot)");

    padded(label, 32, "p11test");
    RV(CKR_ARGUMENTS_BAD, f->C_InitToken(empty, NULL, 0, label), "C_InitToken without PIN");
    RV(CKR_OK, f->C_InitToken(empty, PIN(so_pin), label), "C_InitToken on the empty slot");
    slot = empty;
    RV(CKR_OK, f->C_GetTokenInfo(slot, &ti), "C_GetTokenInfo(new token)");
    CHECK(blank_padded(ti.label, 32, "p11test"), "label blank-padded");
    CHECK(blank_padded(ti.manufacturerID, 32, "tpmkeys") && blank_padded(ti.model, 16, "TPM 2.0"),
          "manufacturer and model blank-padded");
    {
        bool hex = true;
        for (int i = 0; i < 16; i++)
            hex &= (ti.serialNumber[i] >= '0' && ti.serialNumber[i] <= '9') ||
                   (ti.serialNumber[i] >= 'a' && ti.serialNumber[i] <= 'f');
        CHECK(hex, "serial: 16 hex digits (%.16s)", ti.serialNumber);
    }
    CHECK((ti.flags & CKF_TOKEN_INITIALIZED) && !(ti.flags & CKF_USER_PIN_INITIALIZED) &&
              (ti.flags & CKF_RNG),
          "flags: initialised, RNG, no user PIN yet (0x%lx)", (unsigned long)ti.flags);
    CHECK(slots(list, 8) == 2, "a new empty slot appeared beside the token");
    CHECK(empty_slot() != slot && empty_slot() != (CK_SLOT_ID)-1, "... with its own id");

    /* SO: PIN rules and sessions. */
    RV(CKR_OK, f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), "RO session");
    RV(CKR_SESSION_READ_ONLY_EXISTS, f->C_Login(s, CKU_SO, PIN(so_pin)), "SO login with an RO session");
    RV(CKR_USER_PIN_NOT_INITIALIZED, f->C_Login(s, CKU_USER, PIN(user_pin)), "user login before the PIN exists");
    RV(CKR_OK, f->C_CloseSession(s), "close RO session");
    RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED, f->C_OpenSession(slot, 0, NULL, NULL, &s), "session without CKF_SERIAL_SESSION");
    RV(CKR_OK, f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), "RW session");
    RV(CKR_PIN_INCORRECT, f->C_Login(s, CKU_SO, PIN("wrong")), "SO login, wrong PIN");
    CHECK(token_flags(slot) & CKF_SO_PIN_COUNT_LOW, "SO_PIN_COUNT_LOW after a wrong SO PIN");
    RV(CKR_USER_NOT_LOGGED_IN, f->C_InitPIN(s, PIN(user_pin)), "C_InitPIN without SO login");
    RV(CKR_OK, f->C_Login(s, CKU_SO, PIN(so_pin)), "SO login");
    CHECK(!(token_flags(slot) & CKF_SO_PIN_COUNT_LOW), "SO count reset by a good PIN");
    {
        CK_SESSION_INFO inf;
        CK_SESSION_HANDLE ro;
        RV(CKR_OK, f->C_GetSessionInfo(s, &inf), "C_GetSessionInfo");
        CHECK(inf.state == CKS_RW_SO_FUNCTIONS && inf.slotID == slot, "state RW SO");
        RV(CKR_SESSION_READ_WRITE_SO_EXISTS, f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro),
           "RO session while the SO is logged in");
    }
    RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN, f->C_Login(s, CKU_USER, PIN(user_pin)), "user login while SO is in");
    RV(CKR_PIN_LEN_RANGE, f->C_InitPIN(s, (CK_UTF8CHAR_PTR) "", 0), "C_InitPIN empty PIN");
    RV(CKR_OK, f->C_InitPIN(s, PIN(user_pin)), "C_InitPIN");
    RV(CKR_OK, f->C_Logout(s), "SO logout");
    RV(CKR_USER_NOT_LOGGED_IN, f->C_Logout(s), "logout twice");
    CHECK(token_flags(slot) & CKF_USER_PIN_INITIALIZED, "USER_PIN_INITIALIZED");
    CHECK(token_flags(slot) & CKF_LOGIN_REQUIRED, "LOGIN_REQUIRED once there is a user PIN");
    RV(CKR_PIN_INCORRECT, f->C_Login(s, CKU_USER, PIN("0000")), "user login, wrong PIN");
    CHECK(token_flags(slot) & CKF_USER_PIN_COUNT_LOW, "USER_PIN_COUNT_LOW after a wrong PIN");
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "user login");
    CHECK(!(token_flags(slot) & CKF_USER_PIN_COUNT_LOW), "user count reset by a good PIN");
    RV(CKR_USER_ALREADY_LOGGED_IN, f->C_Login(s, CKU_USER, PIN(user_pin)), "user login twice");
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_Login(s, CKU_CONTEXT_SPECIFIC, PIN(user_pin)),
       "context-specific login without an operation");
    RV(CKR_USER_TYPE_INVALID, f->C_Login(s, 77, PIN(user_pin)), "bad user type");
    RV(CKR_SESSION_EXISTS, f->C_InitToken(slot, PIN(so_pin), (CK_UTF8CHAR_PTR) "p11test                         "),
       "C_InitToken with a session open");
    RV(CKR_OK, f->C_CloseAllSessions(slot), "C_CloseAllSessions");
    RV(CKR_SESSION_HANDLE_INVALID, f->C_CloseSession(s), "closed session is gone");
}

static void test_mechanisms(void)
{
    CK_ULONG n = 0;
    CK_MECHANISM_TYPE list[64];
    CK_MECHANISM_INFO mi;
    bool ecdsa = false, pss = false, oaep = false, ecdh = false;

    RV(CKR_OK, f->C_GetMechanismList(slot, NULL, &n), "mechanism count");
    CHECK(n >= 20 && n <= 64, "%lu mechanisms", (unsigned long)n);
    CK_ULONG small = 1;
    RV(CKR_BUFFER_TOO_SMALL, f->C_GetMechanismList(slot, list, &small), "mechanism list too small");
    RV(CKR_OK, f->C_GetMechanismList(slot, list, &n), "mechanism list");
    for (CK_ULONG i = 0; i < n; i++) {
        ecdsa |= list[i] == CKM_ECDSA_SHA256;
        pss |= list[i] == CKM_SHA256_RSA_PKCS_PSS;
        oaep |= list[i] == CKM_RSA_PKCS_OAEP;
        ecdh |= list[i] == CKM_ECDH1_DERIVE;
    }
    CHECK(ecdsa && pss && oaep && ecdh, "ECDSA-SHA256, SHA256-RSA-PSS, OAEP and ECDH listed");
    RV(CKR_OK, f->C_GetMechanismInfo(slot, CKM_ECDSA, &mi), "C_GetMechanismInfo(ECDSA)");
    CHECK((mi.flags & CKF_SIGN) && (mi.flags & CKF_VERIFY) && !(mi.flags & CKF_DECRYPT) &&
              mi.ulMinKeySize == 256 && mi.ulMaxKeySize >= 384,
          "ECDSA: sign/verify, 256..%lu bits", (unsigned long)mi.ulMaxKeySize);
    RV(CKR_OK, f->C_GetMechanismInfo(slot, CKM_RSA_PKCS_OAEP, &mi), "C_GetMechanismInfo(OAEP)");
    CHECK((mi.flags & CKF_DECRYPT) && !(mi.flags & CKF_SIGN) && mi.ulMinKeySize == 2048,
          "OAEP: decrypt, not sign, from 2048 bits");
    RV(CKR_MECHANISM_INVALID, f->C_GetMechanismInfo(slot, CKM_AES_CBC, &mi), "AES is not offered");
    RV(CKR_SLOT_ID_INVALID, f->C_GetMechanismList(4242, NULL, &n), "mechanisms of a bad slot");
}

static CK_OBJECT_HANDLE ec_pub, ec_priv, rsa_pub, rsa_priv, np_pub, np_priv;

static void test_keygen(CK_SESSION_HANDLE s)
{
    CK_MECHANISM ecm = { CKM_EC_KEY_PAIR_GEN, NULL, 0 }, rsam = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
    CK_ULONG bits = 2048, bad_bits = 1000;
    uint8_t id1[] = { 1 }, id2[] = { 2 }, id3[] = { 3 }, e[] = { 1, 0, 1 };
    CK_ATTRIBUTE ec_pubt[] = {
        { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) },
        { CKA_TOKEN, &yes, 1 }, { CKA_LABEL, "ec", 2 }, { CKA_ID, id1, 1 },
    };
    CK_ATTRIBUTE ec_privt[] = { { CKA_TOKEN, &yes, 1 }, { CKA_LABEL, "ec", 2 }, { CKA_ID, id1, 1 } };
    CK_ATTRIBUTE rsa_pubt[] = {
        { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_PUBLIC_EXPONENT, e, 3 },
        { CKA_TOKEN, &yes, 1 }, { CKA_LABEL, "rsa", 3 },
    };
    CK_ATTRIBUTE rsa_privt[] = { { CKA_TOKEN, &yes, 1 }, { CKA_ID, id2, 1 }, { CKA_SIGN, &yes, 1 } };
    CK_ATTRIBUTE np_privt[] = {
        { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, &no, 1 }, { CKA_LABEL, "nopin", 5 }, { CKA_ID, id3, 1 },
    };
    CK_ATTRIBUTE bad_rsa[] = { { CKA_MODULUS_BITS, &bad_bits, sizeof(bad_bits) }, { CKA_TOKEN, &yes, 1 } };
    CK_ATTRIBUTE extractable[] = { { CKA_TOKEN, &yes, 1 }, { CKA_EXTRACTABLE, &yes, 1 } };
    CK_OBJECT_HANDLE a, b;
    CK_ULONG len;
    uint8_t *v;

    RV(CKR_ARGUMENTS_BAD, f->C_GenerateKeyPair(s, &ecm, ec_pubt, 4, ec_privt, 3, NULL, &b), "keygen NULL handle");
    RV(CKR_MECHANISM_INVALID, f->C_GenerateKeyPair(s, &(CK_MECHANISM){ CKM_ECDSA, NULL, 0 }, ec_pubt, 4, ec_privt, 3, &a, &b),
       "keygen with a signing mechanism");
    RV(CKR_KEY_SIZE_RANGE, f->C_GenerateKeyPair(s, &rsam, bad_rsa, 2, NULL, 0, &a, &b), "RSA-1000 refused");
    RV(CKR_TEMPLATE_INCOMPLETE, f->C_GenerateKeyPair(s, &ecm, NULL, 0, ec_privt, 3, &a, &b), "EC keygen without CKA_EC_PARAMS");
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_GenerateKeyPair(s, &ecm, ec_pubt, 4, extractable, 2, &a, &b),
       "an extractable TPM key is refused");
    RV(CKR_OK, f->C_GenerateKeyPair(s, &ecm, ec_pubt, 4, ec_privt, 3, &ec_pub, &ec_priv), "EC P-256 key pair");
    RV(CKR_OK, f->C_GenerateKeyPair(s, &rsam, rsa_pubt, 4, rsa_privt, 3, &rsa_pub, &rsa_priv), "RSA-2048 key pair");
    RV(CKR_OK, f->C_GenerateKeyPair(s, &ecm, ec_pubt, 1, np_privt, 4, &np_pub, &np_priv), "EC key pair without PIN");
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_GenerateKeyPair(s, &ecm, ec_pubt, 1, np_privt, 4, &a, &b),
       "a second key with the same label");

    /* Attributes. */
    CHECK(attr_bool(s, ec_priv, CKA_SENSITIVE) == 1 && attr_bool(s, ec_priv, CKA_EXTRACTABLE) == 0 &&
              attr_bool(s, ec_priv, CKA_ALWAYS_SENSITIVE) == 1 &&
              attr_bool(s, ec_priv, CKA_NEVER_EXTRACTABLE) == 1 && attr_bool(s, ec_priv, CKA_LOCAL) == 1 &&
              attr_bool(s, ec_priv, CKA_PRIVATE) == 1 && attr_bool(s, ec_priv, CKA_TOKEN) == 1,
          "EC private key: sensitive, never extractable, local, private, token");
    CHECK(attr_bool(s, np_priv, CKA_PRIVATE) == 0, "no-PIN key: CKA_PRIVATE false");
    {
        CK_ATTRIBUTE t[] = { { CKA_VALUE, NULL, 0 }, { CKA_LABEL, NULL, 0 } };
        RV(CKR_ATTRIBUTE_SENSITIVE, f->C_GetAttributeValue(s, ec_priv, t, 2), "EC CKA_VALUE is sensitive");
        CHECK(t[0].ulValueLen == CK_UNAVAILABLE_INFORMATION && t[1].ulValueLen == 2,
              "... length unavailable, the other attribute still answered");
    }
    {
        CK_ATTRIBUTE t = { CKA_PRIVATE_EXPONENT, NULL, 0 };
        RV(CKR_ATTRIBUTE_SENSITIVE, f->C_GetAttributeValue(s, rsa_priv, &t, 1), "RSA private exponent is sensitive");
        CK_ATTRIBUTE u = { 0x7fff0001UL, NULL, 0 };
        RV(CKR_ATTRIBUTE_TYPE_INVALID, f->C_GetAttributeValue(s, rsa_priv, &u, 1), "unknown attribute");
        uint8_t small[4];
        CK_ATTRIBUTE m = { CKA_MODULUS, small, sizeof(small) };
        RV(CKR_BUFFER_TOO_SMALL, f->C_GetAttributeValue(s, rsa_pub, &m, 1), "modulus into 4 bytes");
        CHECK(m.ulValueLen == CK_UNAVAILABLE_INFORMATION, "... length unavailable");
    }
    v = attr(s, rsa_pub, CKA_MODULUS, &len);
    CHECK(v && len == 256, "RSA modulus 256 bytes");
    free(v);
    v = attr(s, rsa_priv, CKA_ID, &len);
    CHECK(v && len == 1 && v[0] == 2, "RSA CKA_ID from the private template");
    free(v);
    v = attr(s, rsa_priv, CKA_LABEL, &len);
    CHECK(v && len == 3 && !memcmp(v, "rsa", 3), "RSA label from the public template");
    free(v);
    v = attr(s, ec_pub, CKA_EC_POINT, &len);
    CHECK(v && len == 67 && v[0] == 0x04 && v[1] == 65 && v[2] == 0x04, "EC point: DER OCTET STRING of 65 bytes");
    free(v);
    v = attr(s, ec_pub, CKA_EC_PARAMS, &len);
    CHECK(v && len == sizeof(p256_oid) && !memcmp(v, p256_oid, len), "EC params: P-256 OID");
    free(v);
    {
        CK_ULONG kt = 0;
        CK_ATTRIBUTE t = { CKA_KEY_TYPE, &kt, sizeof(kt) };
        f->C_GetAttributeValue(s, rsa_priv, &t, 1);
        CHECK(kt == CKK_RSA, "RSA key type");
    }
}

static void test_sign(CK_SESSION_HANDLE s)
{
    const char msg[] = "tpmkeys signs this";
    uint8_t dig[64], sig[512];
    unsigned dlen = 0;
    CK_ULONG slen;
    EVP_PKEY *ec = pubkey(s, ec_pub), *rsa = pubkey(s, rsa_pub);
    CK_MECHANISM m;

    CHECK(ec && rsa, "public keys from CKA_PUBLIC_KEY_INFO");
    sha(EVP_sha256(), msg, strlen(msg), dig, &dlen);

    /* ECDSA-SHA256 with length query and a too small buffer. */
    m = (CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 };
    RV(CKR_OK, f->C_SignInit(s, &m, ec_priv), "C_SignInit(ECDSA-SHA256)");
    RV(CKR_OPERATION_ACTIVE, f->C_SignInit(s, &m, ec_priv), "C_SignInit while active");
    slen = 0;
    RV(CKR_OK, f->C_Sign(s, (CK_BYTE_PTR)msg, strlen(msg), NULL, &slen), "length query");
    CHECK(slen == 64, "ECDSA P-256 signature: 64 bytes (%lu)", (unsigned long)slen);
    slen = 10;
    RV(CKR_BUFFER_TOO_SMALL, f->C_Sign(s, (CK_BYTE_PTR)msg, strlen(msg), sig, &slen), "buffer too small");
    CHECK(slen == 64, "... the size is given");
    RV(CKR_OK, f->C_Sign(s, (CK_BYTE_PTR)msg, strlen(msg), sig, &slen), "C_Sign after the query");
    CHECK(ecdsa_ok(ec, dig, dlen, sig, slen), "ECDSA-SHA256 verified by OpenSSL");
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_Sign(s, (CK_BYTE_PTR)msg, 1, sig, &slen), "operation ended");

    /* CKM_ECDSA over a given digest, and over a SHA-384 digest (truncated like ECDSA). */
    m.mechanism = CKM_ECDSA;
    slen = sizeof(sig);
    RV(CKR_OK, sign(s, &m, ec_priv, dig, dlen, sig, &slen), "CKM_ECDSA");
    CHECK(ecdsa_ok(ec, dig, dlen, sig, slen), "raw ECDSA verified");
    {
        uint8_t d384[48];
        unsigned l384;
        sha(EVP_sha384(), msg, strlen(msg), d384, &l384);
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, ec_priv, d384, l384, sig, &slen), "CKM_ECDSA with a 48-byte digest");
        CHECK(ecdsa_ok(ec, d384, l384, sig, slen), "... verified by OpenSSL");
        uint8_t d28[28];
        memcpy(d28, dig, 28);
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, ec_priv, d28, 28, sig, &slen), "CKM_ECDSA with a 28-byte digest");
        CHECK(ecdsa_ok(ec, d28, 28, sig, slen), "... verified by OpenSSL");
    }

    /* Multi-part. */
    m.mechanism = CKM_ECDSA_SHA256;
    RV(CKR_OK, f->C_SignInit(s, &m, ec_priv), "multi-part init");
    RV(CKR_OK, f->C_SignUpdate(s, (CK_BYTE_PTR)msg, 5), "C_SignUpdate 1");
    RV(CKR_OK, f->C_SignUpdate(s, (CK_BYTE_PTR)msg + 5, strlen(msg) - 5), "C_SignUpdate 2");
    slen = sizeof(sig);
    RV(CKR_OK, f->C_SignFinal(s, sig, &slen), "C_SignFinal");
    CHECK(ecdsa_ok(ec, dig, dlen, sig, slen), "multi-part ECDSA verified");

    /* RSA: PKCS#1 v1.5 (hashing and DigestInfo), PSS with several salts, X.509 raw. */
    m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS, NULL, 0 };
    slen = sizeof(sig);
    RV(CKR_OK, sign(s, &m, rsa_priv, msg, strlen(msg), sig, &slen), "SHA256-RSA-PKCS");
    CHECK(slen == 256 && rsa_ok(rsa, EVP_sha256(), RSA_PKCS1_PADDING, 0, dig, dlen, sig, slen),
          "SHA256-RSA-PKCS verified");
    {
        uint8_t di[19 + 32] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
        memcpy(di + 19, dig, 32);
        m.mechanism = CKM_RSA_PKCS;
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, rsa_priv, di, sizeof(di), sig, &slen), "RSA-PKCS over a DigestInfo");
        CHECK(rsa_ok(rsa, EVP_sha256(), RSA_PKCS1_PADDING, 0, dig, dlen, sig, slen), "... verified");
    }
    {
        uint8_t d224[28];
        unsigned l224;
        sha(EVP_sha224(), msg, strlen(msg), d224, &l224);
        m.mechanism = CKM_SHA224_RSA_PKCS;
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, rsa_priv, msg, strlen(msg), sig, &slen), "SHA224-RSA-PKCS (software padding)");
        CHECK(rsa_ok(rsa, EVP_sha224(), RSA_PKCS1_PADDING, 0, d224, l224, sig, slen), "... verified");
    }
    CK_ULONG salts[] = { 32, 0, 20, 222 };
    for (size_t i = 0; i < 4; i++) {
        CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, salts[i] };
        m = (CK_MECHANISM){ i % 2 ? CKM_RSA_PKCS_PSS : CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp) };
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, rsa_priv, i % 2 ? (const void *)dig : msg, i % 2 ? dlen : strlen(msg), sig, &slen),
           "RSA-PSS salt %lu", (unsigned long)salts[i]);
        CHECK(rsa_ok(rsa, EVP_sha256(), RSA_PKCS1_PSS_PADDING, (int)salts[i], dig, dlen, sig, slen),
              "RSA-PSS salt %lu verified with that salt", (unsigned long)salts[i]);
    }
    {
        CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA_1, CKG_MGF1_SHA256, 20 };
        m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp) };
        RV(CKR_MECHANISM_PARAM_INVALID, f->C_SignInit(s, &m, rsa_priv), "PSS hashAlg differs from the mechanism");
        m.pParameter = NULL;
        m.ulParameterLen = 0;
        RV(CKR_MECHANISM_PARAM_INVALID, f->C_SignInit(s, &m, rsa_priv), "PSS without parameters");
        pp = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA256, CKG_MGF1_SHA256, 300 };
        m = (CK_MECHANISM){ CKM_RSA_PKCS_PSS, &pp, sizeof(pp) };
        slen = sizeof(sig);
        RV(CKR_MECHANISM_PARAM_INVALID, sign(s, &m, rsa_priv, dig, dlen, sig, &slen), "PSS salt too long for the key");
    }
    {
        /* X.509 raw: s^e mod n must give back the block. */
        uint8_t block[256], back[256];
        size_t backlen = sizeof(back);
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(rsa, NULL);
        memset(block, 0x5a, sizeof(block));
        block[0] = 0x00;
        m = (CK_MECHANISM){ CKM_RSA_X_509, NULL, 0 };
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, rsa_priv, block, sizeof(block), sig, &slen), "RSA-X-509 sign");
        CHECK(EVP_PKEY_verify_recover_init(c) > 0 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) > 0 &&
                  EVP_PKEY_verify_recover(c, back, &backlen, sig, slen) > 0 && backlen == 256 &&
                  !memcmp(back, block, 256),
              "RSA-X-509 recovered by OpenSSL");
        EVP_PKEY_CTX_free(c);
    }

    /* Wrong key for the mechanism, public key for signing, bad handles. */
    m = (CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 };
    RV(CKR_KEY_TYPE_INCONSISTENT, f->C_SignInit(s, &m, rsa_priv), "ECDSA with an RSA key");
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, ec_pub), "signing with a public key");
    RV(CKR_KEY_HANDLE_INVALID, f->C_SignInit(s, &m, 0x7777), "bad key handle");
    RV(CKR_MECHANISM_INVALID, f->C_SignInit(s, &(CK_MECHANISM){ CKM_SHA256, NULL, 0 }, ec_priv), "digest as a signing mechanism");
    RV(CKR_SESSION_HANDLE_INVALID, f->C_SignInit(999, &m, ec_priv), "bad session handle");
    RV(CKR_ARGUMENTS_BAD, f->C_SignInit(s, NULL, ec_priv), "NULL mechanism");

    /* C_Verify in software, with the public key objects. */
    m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS, NULL, 0 };
    slen = sizeof(sig);
    sign(s, &m, rsa_priv, msg, strlen(msg), sig, &slen);
    RV(CKR_OK, f->C_VerifyInit(s, &m, rsa_pub), "C_VerifyInit");
    RV(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig, slen), "C_Verify good signature");
    sig[10] ^= 1;
    RV(CKR_OK, f->C_VerifyInit(s, &m, rsa_pub), "C_VerifyInit");
    RV(CKR_SIGNATURE_INVALID, f->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig, slen), "C_Verify bad signature");
    RV(CKR_OK, f->C_VerifyInit(s, &m, rsa_pub), "C_VerifyInit");
    RV(CKR_SIGNATURE_LEN_RANGE, f->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig, 100), "C_Verify short signature");
    m = (CK_MECHANISM){ CKM_ECDSA_SHA256, NULL, 0 };
    slen = sizeof(sig);
    sign(s, &m, ec_priv, msg, strlen(msg), sig, &slen);
    RV(CKR_OK, f->C_VerifyInit(s, &m, ec_pub), "C_VerifyInit(EC)");
    RV(CKR_OK, f->C_VerifyUpdate(s, (CK_BYTE_PTR)msg, 3), "C_VerifyUpdate");
    RV(CKR_OK, f->C_VerifyUpdate(s, (CK_BYTE_PTR)msg + 3, strlen(msg) - 3), "C_VerifyUpdate");
    RV(CKR_OK, f->C_VerifyFinal(s, sig, slen), "C_VerifyFinal (ECDSA, multi-part)");
    {
        CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, 17 };
        m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp) };
        slen = sizeof(sig);
        sign(s, &m, rsa_priv, msg, strlen(msg), sig, &slen);
        RV(CKR_OK, f->C_VerifyInit(s, &m, rsa_pub), "C_VerifyInit(PSS)");
        RV(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig, slen), "C_Verify PSS salt 17");
    }
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_VerifyInit(s, &m, rsa_priv), "verify with a private key object");
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
}

static void test_decrypt(CK_SESSION_HANDLE s)
{
    const char secret[] = "a session key";
    uint8_t ct[256], pt[256];
    CK_ULONG ctlen, ptlen;
    CK_MECHANISM m = { CKM_RSA_PKCS, NULL, 0 };
    EVP_PKEY *rsa = pubkey(s, rsa_pub);

    ctlen = sizeof(ct);
    RV(CKR_OK, f->C_EncryptInit(s, &m, rsa_pub), "C_EncryptInit(RSA-PKCS)");
    RV(CKR_OK, f->C_Encrypt(s, (CK_BYTE_PTR)secret, strlen(secret), ct, &ctlen), "C_Encrypt (software)");
    RV(CKR_OK, f->C_DecryptInit(s, &m, rsa_priv), "C_DecryptInit(RSA-PKCS)");
    ptlen = 0;
    RV(CKR_OK, f->C_Decrypt(s, ct, ctlen, NULL, &ptlen), "decrypt length query");
    CHECK(ptlen >= strlen(secret), "... at least the plaintext size (%lu)", (unsigned long)ptlen);
    ptlen = 2;
    RV(CKR_BUFFER_TOO_SMALL, f->C_Decrypt(s, ct, ctlen, pt, &ptlen), "decrypt into 2 bytes");
    CHECK(ptlen == strlen(secret), "... exact size after decryption (%lu)", (unsigned long)ptlen);
    ptlen = sizeof(pt);
    RV(CKR_OK, f->C_Decrypt(s, ct, ctlen, pt, &ptlen), "C_Decrypt (TPM)");
    CHECK(ptlen == strlen(secret) && !memcmp(pt, secret, ptlen), "RSA-PKCS round trip");

    /* OAEP, encrypted by OpenSSL: no label, a label the TPM cannot take, SHA-1. */
    struct { CK_MECHANISM_TYPE h; CK_RSA_PKCS_MGF_TYPE mgf; const EVP_MD *md; const char *label; } cases[] = {
        { CKM_SHA256, CKG_MGF1_SHA256, EVP_sha256(), NULL },
        { CKM_SHA256, CKG_MGF1_SHA256, EVP_sha256(), "abc" },
        { CKM_SHA_1, CKG_MGF1_SHA1, EVP_sha1(), NULL },
    };
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(rsa, NULL);
        size_t cl = sizeof(ct);
        CK_RSA_PKCS_OAEP_PARAMS op = { cases[i].h, cases[i].mgf, CKZ_DATA_SPECIFIED,
                                       (void *)cases[i].label, cases[i].label ? strlen(cases[i].label) : 0 };
        EVP_PKEY_encrypt_init(c);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING);
        EVP_PKEY_CTX_set_rsa_oaep_md(c, cases[i].md);
        EVP_PKEY_CTX_set_rsa_mgf1_md(c, cases[i].md);
        if (cases[i].label)
            EVP_PKEY_CTX_set0_rsa_oaep_label(c, OPENSSL_strdup(cases[i].label), (int)strlen(cases[i].label));
        EVP_PKEY_encrypt(c, ct, &cl, (const unsigned char *)secret, strlen(secret));
        EVP_PKEY_CTX_free(c);
        m = (CK_MECHANISM){ CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
        ptlen = sizeof(pt);
        RV(CKR_OK, f->C_DecryptInit(s, &m, rsa_priv), "C_DecryptInit(OAEP %zu)", i);
        RV(CKR_OK, f->C_Decrypt(s, ct, cl, pt, &ptlen), "OAEP decrypt case %zu (%s label)", i,
           cases[i].label ? "with" : "no");
        CHECK(ptlen == strlen(secret) && !memcmp(pt, secret, ptlen), "OAEP case %zu round trip", i);
        if (i == 1) {
            ct[5] ^= 0x40;
            ptlen = sizeof(pt);
            f->C_DecryptInit(s, &m, rsa_priv);
            RV(CKR_ENCRYPTED_DATA_INVALID, f->C_Decrypt(s, ct, cl, pt, &ptlen), "tampered OAEP ciphertext");
            op.pSourceData = "abd";
            ct[5] ^= 0x40;
            ptlen = sizeof(pt);
            f->C_DecryptInit(s, &m, rsa_priv);
            RV(CKR_ENCRYPTED_DATA_INVALID, f->C_Decrypt(s, ct, cl, pt, &ptlen), "OAEP with the wrong label");
        }
    }
    m = (CK_MECHANISM){ CKM_RSA_PKCS_OAEP, NULL, 0 };
    RV(CKR_MECHANISM_PARAM_INVALID, f->C_DecryptInit(s, &m, rsa_priv), "OAEP without parameters");
    m = (CK_MECHANISM){ CKM_RSA_PKCS, NULL, 0 };
    RV(CKR_OK, f->C_DecryptInit(s, &m, rsa_priv), "C_DecryptInit");
    ptlen = sizeof(pt);
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE, f->C_Decrypt(s, ct, 100, pt, &ptlen), "ciphertext of the wrong length");
    RV(CKR_KEY_TYPE_INCONSISTENT, f->C_DecryptInit(s, &m, ec_priv), "RSA decryption with an EC key");
    EVP_PKEY_free(rsa);
}

/* The key's CKA_ALLOWED_MECHANISMS is exactly want[0..n). */
static bool mechs_are(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, const CK_MECHANISM_TYPE *want,
                      size_t n)
{
    CK_ULONG len = 0;
    uint8_t *v = attr(s, o, CKA_ALLOWED_MECHANISMS, &len);
    bool ok = v && len == n * sizeof(*want) && !memcmp(v, want, len);
    free(v);
    return ok;
}

/* A key the TPM restricts to RSA-PSS with SHA-256 (asked for with a PSS-only
 * CKA_ALLOWED_MECHANISMS, as `pkcs11-tool --allowed-mechanisms` does; the OpenSSL
 * provider's RSA-PSS keys are the same TPM object): its attributes say what C_*Init
 * accepts, for the private and the public object, token and session keys alike. */
static void test_pss_key(CK_SESSION_HANDLE ts)
{
    static const CK_MECHANISM_TYPE pss_only[] = { CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS };
    static const CK_MECHANISM_TYPE rsa_all[] = {
        CKM_RSA_PKCS, CKM_RSA_X_509, CKM_RSA_PKCS_OAEP, CKM_RSA_PKCS_PSS,
        CKM_SHA1_RSA_PKCS, CKM_SHA224_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_SHA384_RSA_PKCS,
        CKM_SHA512_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS, CKM_SHA224_RSA_PKCS_PSS,
        CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS, CKM_SHA512_RSA_PKCS_PSS,
    };
    CK_MECHANISM_TYPE ask[] = { CKM_SHA256_RSA_PKCS_PSS };
    CK_MECHANISM rsam = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
    CK_ULONG bits = 2048;
    uint8_t id[] = { 0x55 };
    const char msg[] = "signed with a PSS-only key";
    uint8_t dig[32], sig[512];
    unsigned dlen = 0;
    CK_ULONG slen;
    CK_RSA_PKCS_PSS_PARAMS p256 = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
    CK_RSA_PKCS_PSS_PARAMS p384 = { CKM_SHA384, CKG_MGF1_SHA384, 48 };
    CK_RSA_PKCS_OAEP_PARAMS oaep = { CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0 };
    CK_MECHANISM m;
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    EVP_PKEY *k;

    sha(EVP_sha256(), msg, strlen(msg), dig, &dlen);
    for (int token = 1; token >= 0; token--) {
        CK_BBOOL tok = token ? CK_TRUE : CK_FALSE;
        const char *what = token ? "token" : "session";
        CK_SESSION_HANDLE s = ts;   /* session keys: in a session of their own, closed after */
        CK_ATTRIBUTE pubt[] = { { CKA_MODULUS_BITS, &bits, sizeof(bits) }, { CKA_TOKEN, &tok, 1 } };
        CK_ATTRIBUTE privt[] = {
            { CKA_TOKEN, &tok, 1 }, { CKA_PRIVATE, &no, 1 }, { CKA_LABEL, "pss-only", 8 },
            { CKA_ID, id, 1 }, { CKA_ALLOWED_MECHANISMS, ask, sizeof(ask) },
        };

        if (!token)
            f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        RV(CKR_OK, f->C_GenerateKeyPair(s, &rsam, pubt, 2, privt, 5, &pub, &priv),
           "%s RSA key pair restricted to SHA256-RSA-PKCS-PSS", what);
        CHECK(mechs_are(s, priv, pss_only, 2) && mechs_are(s, pub, pss_only, 2),
              "%s PSS key: CKA_ALLOWED_MECHANISMS is RSA-PKCS-PSS and SHA256-RSA-PKCS-PSS (both "
              "objects)", what);
        CHECK(attr_bool(s, priv, CKA_SIGN) == 1 && attr_bool(s, priv, CKA_DECRYPT) == 0 &&
                  attr_bool(s, priv, CKA_UNWRAP) == 0 && attr_bool(s, priv, CKA_SIGN_RECOVER) == 0 &&
                  attr_bool(s, priv, CKA_DERIVE) == 0,
              "%s PSS private key: CKA_SIGN true; DECRYPT, UNWRAP, SIGN_RECOVER, DERIVE false", what);
        CHECK(attr_bool(s, pub, CKA_VERIFY) == 1 && attr_bool(s, pub, CKA_ENCRYPT) == 0 &&
                  attr_bool(s, pub, CKA_WRAP) == 0 && attr_bool(s, pub, CKA_VERIFY_RECOVER) == 0,
              "%s PSS public key: CKA_VERIFY true; ENCRYPT, WRAP, VERIFY_RECOVER false", what);

        /* What it can do: SHA256-RSA-PKCS-PSS and CKM_RSA_PKCS_PSS over a SHA-256 digest. */
        k = pubkey(s, pub);
        m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS_PSS, &p256, sizeof(p256) };
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, priv, msg, strlen(msg), sig, &slen), "%s PSS key: SHA256-RSA-PKCS-PSS",
           what);
        CHECK(k && slen == 256 && rsa_ok(k, EVP_sha256(), RSA_PKCS1_PSS_PADDING, 32, dig, dlen, sig, slen),
              "... verified by OpenSSL");
        RV(CKR_OK, f->C_VerifyInit(s, &m, pub), "%s PSS public key: C_VerifyInit(SHA256-RSA-PKCS-PSS)", what);
        RV(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR)msg, strlen(msg), sig, slen), "... C_Verify");
        m.mechanism = CKM_RSA_PKCS_PSS;
        slen = sizeof(sig);
        RV(CKR_OK, sign(s, &m, priv, dig, dlen, sig, &slen), "%s PSS key: RSA-PKCS-PSS over SHA-256", what);
        CHECK(k && rsa_ok(k, EVP_sha256(), RSA_PKCS1_PSS_PADDING, 32, dig, dlen, sig, slen),
              "... verified by OpenSSL");
        EVP_PKEY_free(k);

        /* And what it cannot: every refusal is the key's, not a TPM error. */
        m = (CK_MECHANISM){ CKM_RSA_PKCS, NULL, 0 };
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, priv), "%s PSS key: no RSA-PKCS signing", what);
        m.mechanism = CKM_SHA256_RSA_PKCS;
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, priv), "... no SHA256-RSA-PKCS");
        m.mechanism = CKM_RSA_X_509;
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, priv), "... no raw RSA");
        m = (CK_MECHANISM){ CKM_SHA384_RSA_PKCS_PSS, &p384, sizeof(p384) };
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, priv), "... no SHA384-RSA-PKCS-PSS");
        m.mechanism = CKM_RSA_PKCS_PSS;
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_SignInit(s, &m, priv), "... no RSA-PKCS-PSS with SHA-384");
        m = (CK_MECHANISM){ CKM_RSA_PKCS, NULL, 0 };
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_DecryptInit(s, &m, priv), "%s PSS key: C_DecryptInit(RSA-PKCS) refused", what);
        m = (CK_MECHANISM){ CKM_RSA_PKCS_OAEP, &oaep, sizeof(oaep) };
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_DecryptInit(s, &m, priv), "... C_DecryptInit(OAEP) refused");
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_EncryptInit(s, &m, pub), "... C_EncryptInit(OAEP) on its public key refused");
        m = (CK_MECHANISM){ CKM_SHA256_RSA_PKCS, NULL, 0 };
        RV(CKR_KEY_FUNCTION_NOT_PERMITTED, f->C_VerifyInit(s, &m, pub), "... C_VerifyInit(SHA256-RSA-PKCS) refused");
        RV(CKR_OK, f->C_DestroyObject(s, priv), "destroy the %s PSS key", what);
        if (!token)
            f->C_CloseSession(s);
    }

    /* A key made without a restriction still does everything. */
    CHECK(mechs_are(ts, rsa_priv, rsa_all, 14) && mechs_are(ts, rsa_pub, rsa_all, 14),
          "unrestricted RSA key: all 14 RSA mechanisms allowed");
    CHECK(attr_bool(ts, rsa_priv, CKA_DECRYPT) == 1 && attr_bool(ts, rsa_priv, CKA_SIGN) == 1 &&
              attr_bool(ts, rsa_pub, CKA_ENCRYPT) == 1 && attr_bool(ts, rsa_pub, CKA_VERIFY) == 1,
          "unrestricted RSA key: sign, decrypt, verify, encrypt");
}

static void test_derive_digest_random(CK_SESSION_HANDLE s)
{
    /* ECDH against a software peer: both sides must agree. */
    EVP_PKEY *peer = EVP_EC_gen("P-256"), *ours = pubkey(s, ec_pub);
    uint8_t point[65], z[32], rnd1[48], rnd2[48], md[32], want[32];
    size_t plen = sizeof(point), zlen = sizeof(z);
    unsigned mdlen = 0;
    CK_OBJECT_HANDLE key;
    CK_ULONG kc = CKO_SECRET_KEY, kt = CKK_GENERIC_SECRET, len = 0;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &kc, sizeof(kc) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
                         { CKA_TOKEN, &no, 1 }, { CKA_EXTRACTABLE, &yes, 1 } };
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(peer, NULL);

    EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &plen);
    EVP_PKEY_derive_init(c);
    EVP_PKEY_derive_set_peer(c, ours);
    EVP_PKEY_derive(c, z, &zlen);
    EVP_PKEY_CTX_free(c);
    CK_ECDH1_DERIVE_PARAMS p = { CKD_NULL, 0, NULL, plen, point };
    CK_MECHANISM m = { CKM_ECDH1_DERIVE, &p, sizeof(p) };
    RV(CKR_OK, f->C_DeriveKey(s, &m, ec_priv, t, 4, &key), "ECDH1-DERIVE");
    uint8_t *v = attr(s, key, CKA_VALUE, &len);
    CHECK(v && len == zlen && !memcmp(v, z, zlen), "shared secret equals OpenSSL's");
    free(v);
    {
        CK_ULONG size = 0;
        CK_OBJECT_HANDLE copy;
        RV(CKR_OK, f->C_GetObjectSize(s, key, &size), "C_GetObjectSize");
        CHECK(size >= 32, "object size counts the value (%lu)", (unsigned long)size);
        RV(CKR_ACTION_PROHIBITED, f->C_CopyObject(s, key, NULL, 0, &copy), "C_CopyObject");
    }
    RV(CKR_OK, f->C_DestroyObject(s, key), "destroy the derived session key");
    CK_ATTRIBUTE sens[] = { { CKA_TOKEN, &no, 1 }, { CKA_SENSITIVE, &yes, 1 } };
    RV(CKR_OK, f->C_DeriveKey(s, &m, ec_priv, sens, 2, &key), "ECDH1-DERIVE, sensitive result");
    CK_ATTRIBUTE val = { CKA_VALUE, NULL, 0 };
    RV(CKR_ATTRIBUTE_SENSITIVE, f->C_GetAttributeValue(s, key, &val, 1), "a sensitive derived value stays inside");
    RV(CKR_OK, f->C_DestroyObject(s, key), "destroy it");
    CK_ECDH1_DERIVE_PARAMS bad = { CKD_SHA256_KDF, 0, NULL, plen, point };
    m.pParameter = &bad;
    RV(CKR_MECHANISM_PARAM_INVALID, f->C_DeriveKey(s, &m, ec_priv, t, 4, &key), "ECDH with a KDF");
    m.pParameter = &p;
    CK_ATTRIBUTE tok[] = { { CKA_TOKEN, &yes, 1 } };
    RV(CKR_TEMPLATE_INCONSISTENT, f->C_DeriveKey(s, &m, ec_priv, tok, 1, &key), "derived token key refused");
    EVP_PKEY_free(peer);
    EVP_PKEY_free(ours);

    /* Digest. */
    CK_MECHANISM dm = { CKM_SHA256, NULL, 0 };
    CK_ULONG dl = sizeof(md);
    sha(EVP_sha256(), "abcdef", 6, want, &mdlen);
    RV(CKR_OK, f->C_DigestInit(s, &dm), "C_DigestInit(SHA256)");
    RV(CKR_OK, f->C_DigestUpdate(s, (CK_BYTE_PTR) "abc", 3), "C_DigestUpdate");
    RV(CKR_OK, f->C_DigestUpdate(s, (CK_BYTE_PTR) "def", 3), "C_DigestUpdate");
    RV(CKR_OK, f->C_DigestFinal(s, md, &dl), "C_DigestFinal");
    CHECK(dl == 32 && !memcmp(md, want, 32), "SHA-256 digest right");
    RV(CKR_OK, f->C_DigestInit(s, &dm), "C_DigestInit");
    RV(CKR_KEY_INDIGESTIBLE, f->C_DigestKey(s, ec_priv), "C_DigestKey of a TPM key");

    /* Random from the TPM. */
    RV(CKR_OK, f->C_GenerateRandom(s, rnd1, sizeof(rnd1)), "C_GenerateRandom 48 bytes");
    RV(CKR_OK, f->C_GenerateRandom(s, rnd2, sizeof(rnd2)), "C_GenerateRandom again");
    CHECK(memcmp(rnd1, rnd2, sizeof(rnd1)), "two draws differ");
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED, f->C_SeedRandom(s, rnd1, 4), "C_SeedRandom");
}

static void test_3_0(CK_SESSION_HANDLE s)
{
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    uint8_t sig[128];
    CK_ULONG slen = sizeof(sig);

    if (!f30)
        return;
    RV(CKR_OK, f->C_SignInit(s, &m, ec_priv), "C_SignInit");
    RV(CKR_OK, f30->C_SessionCancel(s, CKF_SIGN), "C_SessionCancel(CKF_SIGN)");
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_Sign(s, (CK_BYTE_PTR) "x", 1, sig, &slen), "signing was cancelled");
    RV(CKR_USER_ALREADY_LOGGED_IN, f30->C_LoginUser(s, CKU_USER, PIN(user_pin), (CK_UTF8CHAR_PTR) "me", 2),
       "C_LoginUser behaves as C_Login");
    RV(CKR_FUNCTION_NOT_SUPPORTED, f30->C_MessageEncryptInit(s, &m, ec_priv), "message-based encryption not offered");
}

static void test_find_and_login_rules(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[32];
    CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE byclass = { CKA_CLASS, &priv, sizeof(priv) };
    uint8_t id2 = 2;
    CK_ATTRIBUTE byid = { CKA_ID, &id2, 1 };
    CK_ULONG got;
    uint8_t sig[128];
    CK_ULONG slen;
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };

    CHECK(find(s, &byclass, 1, h, 32) == 3, "3 private keys while logged in");
    CHECK(find(s, &byid, 1, h, 32) == 2, "CKA_ID 02: private and public key");
    CHECK(find(s, NULL, 0, h, 32) == 6, "6 objects in all");
    RV(CKR_OK, f->C_FindObjectsInit(s, NULL, 0), "C_FindObjectsInit");
    RV(CKR_OPERATION_ACTIVE, f->C_FindObjectsInit(s, NULL, 0), "C_FindObjectsInit twice");
    RV(CKR_OK, f->C_FindObjects(s, h, 4, &got), "C_FindObjects 4");
    CHECK(got == 4, "first 4");
    RV(CKR_OK, f->C_FindObjects(s, h, 4, &got), "C_FindObjects rest");
    CHECK(got == 2, "then 2");
    RV(CKR_OK, f->C_FindObjects(s, h, 4, &got), "C_FindObjects end");
    CHECK(got == 0, "then none");
    RV(CKR_ARGUMENTS_BAD, f->C_FindObjects(s, h, 4, NULL), "C_FindObjects NULL count");
    RV(CKR_OK, f->C_FindObjectsFinal(s), "C_FindObjectsFinal");
    RV(CKR_OPERATION_NOT_INITIALIZED, f->C_FindObjectsFinal(s), "C_FindObjectsFinal twice");

    RV(CKR_OK, f->C_Logout(s), "logout");
    CHECK(find(s, &byclass, 1, h, 32) == 1, "after logout only the no-PIN private key is visible");
    RV(CKR_USER_NOT_LOGGED_IN, f->C_SignInit(s, &m, ec_priv), "PIN key without login");
    slen = sizeof(sig);
    RV(CKR_OK, sign(s, &m, np_priv, "x", 1, sig, &slen), "no-PIN key signs without login");
    {
        CK_ATTRIBUTE lab = { CKA_LABEL, NULL, 0 };
        RV(CKR_OBJECT_HANDLE_INVALID, f->C_GetAttributeValue(s, ec_priv, &lab, 1), "hidden object's attributes");
    }
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_GetAttributeValue(s, 0x123456, &byclass, 1), "bad object handle");
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "login again");
    CHECK(find(s, &byclass, 1, h, 32) == 3, "3 private keys again");
}

static void test_set_attributes(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE lab = { CKA_LABEL, "ec-renamed", 10 };
    uint8_t nid[] = { 0xaa, 0xbb };
    CK_ATTRIBUTE id = { CKA_ID, nid, 2 };
    CK_ATTRIBUTE sg = { CKA_SIGN, &no, 1 };
    CK_ULONG len;
    uint8_t *v;

    RV(CKR_OK, f->C_SetAttributeValue(s, ec_priv, &lab, 1), "rename a key");
    CHECK(find_one(s, CKO_PUBLIC_KEY, "ec-renamed") == ec_pub, "the public key follows the label");
    RV(CKR_OK, f->C_SetAttributeValue(s, ec_pub, &id, 1), "new CKA_ID");
    v = attr(s, ec_priv, CKA_ID, &len);
    CHECK(v && len == 2 && v[0] == 0xaa, "the private key shares the new CKA_ID");
    free(v);
    RV(CKR_ATTRIBUTE_READ_ONLY, f->C_SetAttributeValue(s, ec_priv, &sg, 1), "CKA_SIGN is read-only");
    CK_ATTRIBUTE dup = { CKA_LABEL, "rsa", 3 };
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_SetAttributeValue(s, ec_priv, &dup, 1), "a label in use");
    CK_SESSION_HANDLE ro;
    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro);
    RV(CKR_SESSION_READ_ONLY, f->C_SetAttributeValue(ro, ec_priv, &lab, 1), "set attribute in an RO session");
    f->C_CloseSession(ro);
}

/* A self-signed certificate for key (OpenSSL), DER. */
static int make_cert(EVP_PKEY *key, uint8_t **der)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    int len;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"tpmkeys test", -1, -1, 0);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509_sign(x, key, EVP_sha256());
    *der = NULL;
    len = i2d_X509(x, der);
    X509_NAME_free(n);
    X509_free(x);
    return len;
}

static void test_create_objects(CK_SESSION_HANDLE s)
{
    EVP_PKEY *sw = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    BIGNUM *bn[8] = { 0 };
    static const char *names[8] = { "n", "e", "d", "rsa-factor1", "rsa-factor2", "rsa-exponent1",
                                    "rsa-exponent2", "rsa-coefficient1" };
    uint8_t buf[8][512];
    CK_ULONG lens[8];
    CK_OBJECT_CLASS pk = CKO_PRIVATE_KEY, cc = CKO_CERTIFICATE, dc = CKO_DATA, pubc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA;
    CK_CERTIFICATE_TYPE x509 = CKC_X_509;
    uint8_t id[] = { 0x42 };
    CK_OBJECT_HANDLE key, cert, data, pub;
    uint8_t *der = NULL, sig[256], dig[32];
    unsigned dlen;
    CK_ULONG slen, len;

    for (int i = 0; i < 8; i++) {
        EVP_PKEY_get_bn_param(sw, names[i], &bn[i]);
        lens[i] = (CK_ULONG)BN_bn2bin(bn[i], buf[i]);
    }
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &pk, sizeof(pk) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) }, { CKA_TOKEN, &yes, 1 },
        { CKA_LABEL, "imported", 8 }, { CKA_ID, id, 1 }, { CKA_SIGN, &yes, 1 },
        { CKA_MODULUS, buf[0], lens[0] }, { CKA_PUBLIC_EXPONENT, buf[1], lens[1] },
        { CKA_PRIVATE_EXPONENT, buf[2], lens[2] }, { CKA_PRIME_1, buf[3], lens[3] },
        { CKA_PRIME_2, buf[4], lens[4] }, { CKA_EXPONENT_1, buf[5], lens[5] },
        { CKA_EXPONENT_2, buf[6], lens[6] }, { CKA_COEFFICIENT, buf[7], lens[7] },
    };
    RV(CKR_TEMPLATE_INCOMPLETE, f->C_CreateObject(s, t + 2, 12, &key), "private key without a class");
    RV(CKR_TEMPLATE_INCOMPLETE, f->C_CreateObject(s, t, 8, &key), "private key without its primes");
    RV(CKR_OK, f->C_CreateObject(s, t, 14, &key), "C_CreateObject: RSA private key (TPM2_Import)");
    CHECK(attr_bool(s, key, CKA_ALWAYS_SENSITIVE) == 0 && attr_bool(s, key, CKA_LOCAL) == 0 &&
              attr_bool(s, key, CKA_SENSITIVE) == 1,
          "imported: sensitive, not always sensitive, not local");
    CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
    slen = sizeof(sig);
    RV(CKR_OK, sign(s, &m, key, "imp", 3, sig, &slen), "sign with the imported key");
    sha(EVP_sha256(), "imp", 3, dig, &dlen);
    CHECK(rsa_ok(sw, EVP_sha256(), RSA_PKCS1_PADDING, 0, dig, dlen, sig, slen),
          "verified with the original software key");
    for (int i = 0; i < 8; i++) {
        OPENSSL_cleanse(buf[i], sizeof(buf[i]));
        BN_clear_free(bn[i]);
    }

    /* Certificate beside its key. */
    int dl = make_cert(sw, &der);
    CK_ATTRIBUTE ct[] = {
        { CKA_CLASS, &cc, sizeof(cc) }, { CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) },
        { CKA_TOKEN, &yes, 1 }, { CKA_ID, id, 1 }, { CKA_VALUE, der, (CK_ULONG)dl },
    };
    RV(CKR_OK, f->C_CreateObject(s, ct, 5, &cert), "C_CreateObject: certificate for the key");
    uint8_t *v = attr(s, cert, CKA_VALUE, &len);
    CHECK(v && len == (CK_ULONG)dl && !memcmp(v, der, len), "certificate value stored");
    free(v);
    v = attr(s, cert, CKA_SUBJECT, &len);
    CHECK(v && len > 10, "certificate subject answered");
    free(v);
    CK_OBJECT_HANDLE cert2 = CK_INVALID_HANDLE;
    RV(CKR_OK, f->C_CreateObject(s, ct, 5, &cert2), "a second certificate for the key: an object of its own");
    CHECK(cert2 != cert && attr_bool(s, cert2, CKA_TOKEN) == 1, "a separate token object");
    RV(CKR_OK, f->C_DestroyObject(s, cert2), "destroy it");
    uint8_t other = 0x99;
    ct[3].pValue = &other;
    RV(CKR_OK, f->C_CreateObject(s, ct, 5, &cert2), "certificate without a key: an object of its own");
    RV(CKR_OK, f->C_DestroyObject(s, cert2), "destroy it");

    /* Session objects. */
    CK_ATTRIBUTE dt[] = { { CKA_CLASS, &dc, sizeof(dc) }, { CKA_TOKEN, &yes, 1 }, { CKA_VALUE, "x", 1 } };
    RV(CKR_OK, f->C_CreateObject(s, dt, 3, &data), "token data object");
    RV(CKR_OK, f->C_DestroyObject(s, data), "destroy it");
    dt[1].pValue = &no;
    RV(CKR_OK, f->C_CreateObject(s, dt, 3, &data), "session data object");
    v = attr(s, data, CKA_VALUE, &len);
    CHECK(v && len == 1 && v[0] == 'x', "session data object value");
    free(v);
    {
        uint8_t n[512], e[8];
        BIGNUM *bn_n = NULL, *bn_e = NULL;
        EVP_PKEY_get_bn_param(sw, "n", &bn_n);
        EVP_PKEY_get_bn_param(sw, "e", &bn_e);
        CK_ATTRIBUTE pt[] = {
            { CKA_CLASS, &pubc, sizeof(pubc) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) },
            { CKA_MODULUS, n, (CK_ULONG)BN_bn2bin(bn_n, n) }, { CKA_PUBLIC_EXPONENT, e, (CK_ULONG)BN_bn2bin(bn_e, e) },
        };
        RV(CKR_OK, f->C_CreateObject(s, pt, 4, &pub), "session public key");
        RV(CKR_OK, f->C_VerifyInit(s, &m, pub), "C_VerifyInit with it");
        RV(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR) "imp", 3, sig, slen), "C_Verify with a session public key");
        BN_free(bn_n);
        BN_free(bn_e);
    }
    OPENSSL_free(der);
    EVP_PKEY_free(sw);

    /* Destroy: the lone public key stays with its private key; session objects go. */
    RV(CKR_ACTION_PROHIBITED, f->C_DestroyObject(s, ec_pub), "destroying a public half alone");
    RV(CKR_OK, f->C_DestroyObject(s, cert), "destroy the certificate");
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_DestroyObject(s, cert), "certificate gone");
    CHECK(find_one(s, CKO_PRIVATE_KEY, "imported") == key, "its key stays");
    RV(CKR_OK, f->C_DestroyObject(s, key), "destroy the imported key");
    CHECK(find_one(s, CKO_PUBLIC_KEY, "imported") == CK_INVALID_HANDLE, "its public key went with it");
    RV(CKR_OK, f->C_DestroyObject(s, data), "destroy the session data object");
}

/* ------------------------------------------------------------------ standalone token objects */

static bool attr_is(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, const void *want,
                    size_t wlen)
{
    CK_ULONG len = 0;
    uint8_t *v = attr(s, o, t, &len);
    bool ok = v && len == wlen && (!wlen || !memcmp(v, want, wlen));
    free(v);
    return ok;
}

static bool attr_ulong_is(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, CK_ULONG want)
{
    return attr_is(s, o, t, &want, sizeof(want));
}

static size_t count_class(CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls)
{
    CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof(cls) };
    CK_OBJECT_HANDLE h[64];
    return find(s, &t, 1, h, 64);
}

static EVP_PKEY *lone_rsa;   /* the software key behind the lone public key */
static const uint8_t data_oid[] = { 0x06, 0x03, 0x2a, 0x03, 0x04 };

/* Certificates without a key, lone public keys and data objects kept in the store. */
static void test_token_objects(CK_SESSION_HANDLE s)
{
    CK_OBJECT_CLASS cc = CKO_CERTIFICATE, dc = CKO_DATA, pc = CKO_PUBLIC_KEY;
    CK_KEY_TYPE rsa = CKK_RSA, ec = CKK_EC;
    CK_CERTIFICATE_TYPE x509 = CKC_X_509, attrcert = CKC_X_509_ATTR_CERT;
    EVP_PKEY *eck = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    uint8_t cid[] = { 0x51 }, id2[] = { 0x52 }, *der = NULL, n[512], e[8], sig[256], dig[32];
    uint8_t ecpt[80], ecpt_der[82];
    CK_OBJECT_HANDLE cert, pub, ecpub, data, pdata, h[16], tmp;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    unsigned dlen;
    size_t slen = sizeof(sig);

    lone_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    int dl = make_cert(lone_rsa, &der);
    size_t before_data = count_class(s, CKO_DATA);

    /* A certificate whose key is not in the token. */
    CK_ATTRIBUTE ct[] = {
        { CKA_CLASS, &cc, sizeof(cc) }, { CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) },
        { CKA_TOKEN, &yes, 1 }, { CKA_ID, cid, 1 }, { CKA_LABEL, "lone-cert", 9 },
        { CKA_VALUE, der, (CK_ULONG)dl },
    };
    RV(CKR_OK, f->C_CreateObject(s, ct, 6, &cert), "token certificate without a key");
    {
        X509 *x = NULL;
        const unsigned char *p = der;
        unsigned char *subj = NULL, *iss = NULL, *ser = NULL;
        x = d2i_X509(NULL, &p, dl);
        int sl = i2d_X509_NAME(X509_get_subject_name(x), &subj);
        int il = i2d_X509_NAME(X509_get_issuer_name(x), &iss);
        int nl = i2d_ASN1_INTEGER(X509_get_serialNumber(x), &ser);
        CHECK(attr_is(s, cert, CKA_VALUE, der, (size_t)dl) && attr_is(s, cert, CKA_SUBJECT, subj, (size_t)sl) &&
                  attr_is(s, cert, CKA_ISSUER, iss, (size_t)il) &&
                  attr_is(s, cert, CKA_SERIAL_NUMBER, ser, (size_t)nl),
              "certificate: CKA_VALUE, CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER");
        OPENSSL_free(subj);
        OPENSSL_free(iss);
        OPENSSL_free(ser);
        X509_free(x);
    }
    CHECK(attr_ulong_is(s, cert, CKA_CLASS, CKO_CERTIFICATE) &&
              attr_ulong_is(s, cert, CKA_CERTIFICATE_TYPE, CKC_X_509) &&
              attr_ulong_is(s, cert, CKA_CERTIFICATE_CATEGORY, 0) && attr_bool(s, cert, CKA_TRUSTED) == 0 &&
              attr_bool(s, cert, CKA_TOKEN) == 1 && attr_bool(s, cert, CKA_PRIVATE) == 0 &&
              attr_is(s, cert, CKA_ID, cid, 1) && attr_is(s, cert, CKA_LABEL, "lone-cert", 9),
          "certificate: class, type, category, trusted, token, private, id, label");

    /* A lone RSA public key. */
    EVP_PKEY_get_bn_param(lone_rsa, "n", &bn_n);
    EVP_PKEY_get_bn_param(lone_rsa, "e", &bn_e);
    CK_ATTRIBUTE pt[] = {
        { CKA_CLASS, &pc, sizeof(pc) }, { CKA_KEY_TYPE, &rsa, sizeof(rsa) }, { CKA_TOKEN, &yes, 1 },
        { CKA_LABEL, "lone-pub", 8 }, { CKA_ID, id2, 1 },
        { CKA_MODULUS, n, (CK_ULONG)BN_bn2bin(bn_n, n) }, { CKA_PUBLIC_EXPONENT, e, (CK_ULONG)BN_bn2bin(bn_e, e) },
    };
    RV(CKR_TEMPLATE_INCOMPLETE, f->C_CreateObject(s, pt, 4, &tmp), "token public key without its modulus");
    RV(CKR_OK, f->C_CreateObject(s, pt, 7, &pub), "token public key without a private key");
    {
        unsigned char *spki = NULL;
        int spl = i2d_PUBKEY(lone_rsa, &spki);
        CHECK(attr_ulong_is(s, pub, CKA_KEY_TYPE, CKK_RSA) && attr_is(s, pub, CKA_MODULUS, n, pt[5].ulValueLen) &&
                  attr_is(s, pub, CKA_PUBLIC_EXPONENT, e, pt[6].ulValueLen) &&
                  attr_ulong_is(s, pub, CKA_MODULUS_BITS, 2048) &&
                  attr_is(s, pub, CKA_PUBLIC_KEY_INFO, spki, (size_t)spl),
              "public key: key type, modulus, exponent, bits, CKA_PUBLIC_KEY_INFO");
        OPENSSL_free(spki);
    }
    CHECK(attr_bool(s, pub, CKA_VERIFY) == 1 && attr_bool(s, pub, CKA_ENCRYPT) == 1 &&
              attr_bool(s, pub, CKA_DESTROYABLE) == 1 && attr_bool(s, pub, CKA_LOCAL) == 0 &&
              attr_bool(s, pub, CKA_PRIVATE) == 0,
          "public key: verify, encrypt, destroyable, not local, public");
    BN_free(bn_n);
    BN_free(bn_e);

    /* It verifies and encrypts in software. */
    {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(lone_rsa, NULL);
        sha(EVP_sha256(), "lone", 4, dig, &dlen);
        EVP_PKEY_sign_init(c);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING);
        EVP_PKEY_CTX_set_signature_md(c, EVP_sha256());
        EVP_PKEY_sign(c, sig, &slen, dig, dlen);
        EVP_PKEY_CTX_free(c);
        CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 }, em = { CKM_RSA_PKCS, NULL, 0 };
        RV(CKR_OK, f->C_VerifyInit(s, &m, pub), "C_VerifyInit with the lone public key");
        RV(CKR_OK, f->C_Verify(s, (CK_BYTE_PTR) "lone", 4, sig, slen), "C_Verify: a software signature");
        sig[10] ^= 1;
        RV(CKR_OK, f->C_VerifyInit(s, &m, pub), "C_VerifyInit again");
        RV(CKR_SIGNATURE_INVALID, f->C_Verify(s, (CK_BYTE_PTR) "lone", 4, sig, slen), "C_Verify: a damaged signature");
        uint8_t ct2[256], pt2[256];
        CK_ULONG cl = sizeof(ct2);
        size_t pl = sizeof(pt2);
        RV(CKR_OK, f->C_EncryptInit(s, &em, pub), "C_EncryptInit with the lone public key");
        RV(CKR_OK, f->C_Encrypt(s, (CK_BYTE_PTR) "secret", 6, ct2, &cl), "C_Encrypt");
        c = EVP_PKEY_CTX_new(lone_rsa, NULL);
        EVP_PKEY_decrypt_init(c);
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING);
        CHECK(EVP_PKEY_decrypt(c, pt2, &pl, ct2, cl) == 1 && pl == 6 && !memcmp(pt2, "secret", 6),
              "the software private key decrypts it");
        EVP_PKEY_CTX_free(c);
    }

    /* A lone EC public key (point given raw, answered DER-wrapped). */
    size_t ptl = 0;
    EVP_PKEY_get_octet_string_param(eck, OSSL_PKEY_PARAM_PUB_KEY, ecpt, sizeof(ecpt), &ptl);
    ecpt_der[0] = 0x04;
    ecpt_der[1] = (uint8_t)ptl;
    memcpy(ecpt_der + 2, ecpt, ptl);
    CK_ATTRIBUTE et[] = {
        { CKA_CLASS, &pc, sizeof(pc) }, { CKA_KEY_TYPE, &ec, sizeof(ec) }, { CKA_TOKEN, &yes, 1 },
        { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) }, { CKA_EC_POINT, ecpt, ptl },
        { CKA_LABEL, "lone-ec", 7 },
    };
    RV(CKR_OK, f->C_CreateObject(s, et, 6, &ecpub), "token EC public key without a private key");
    CHECK(attr_ulong_is(s, ecpub, CKA_KEY_TYPE, CKK_EC) && attr_is(s, ecpub, CKA_EC_PARAMS, p256_oid, sizeof(p256_oid)) &&
              attr_is(s, ecpub, CKA_EC_POINT, ecpt_der, ptl + 2) && attr_bool(s, ecpub, CKA_ENCRYPT) == 0,
          "EC public key: key type, params, DER point, no encrypt");

    /* Data objects, one public and one private. */
    CK_ATTRIBUTE dt[] = {
        { CKA_CLASS, &dc, sizeof(dc) }, { CKA_TOKEN, &yes, 1 }, { CKA_LABEL, "lone-data", 9 },
        { CKA_APPLICATION, "tpmkeys-test", 12 }, { CKA_OBJECT_ID, (void *)data_oid, sizeof(data_oid) },
        { CKA_VALUE, "hello data", 10 }, { CKA_PRIVATE, &no, 1 },
    };
    RV(CKR_OK, f->C_CreateObject(s, dt, 7, &data), "token data object");
    CHECK(attr_is(s, data, CKA_VALUE, "hello data", 10) && attr_is(s, data, CKA_APPLICATION, "tpmkeys-test", 12) &&
              attr_is(s, data, CKA_OBJECT_ID, data_oid, sizeof(data_oid)) &&
              attr_ulong_is(s, data, CKA_CLASS, CKO_DATA) && attr_bool(s, data, CKA_PRIVATE) == 0,
          "data object: value, application, object id, class, public");
    dt[2].pValue = "secret-data", dt[2].ulValueLen = 11;
    dt[6].pValue = &yes;
    RV(CKR_OK, f->C_CreateObject(s, dt, 7, &pdata), "private token data object (logged in)");
    CHECK(attr_bool(s, pdata, CKA_PRIVATE) == 1, "CKA_PRIVATE true");
    CHECK(count_class(s, CKO_DATA) == before_data + 2, "both data objects found by class");

    /* C_FindObjects with templates. */
    CK_ATTRIBUTE byid = { CKA_ID, cid, 1 };
    CHECK(find(s, &byid, 1, h, 16) == 1 && h[0] == cert, "found by CKA_ID: the certificate, same handle");
    CK_ATTRIBUTE byapp[] = { { CKA_APPLICATION, "tpmkeys-test", 12 }, { CKA_CLASS, &dc, sizeof(dc) } };
    CHECK(find(s, byapp, 2, h, 16) == 2, "found by CKA_APPLICATION and class: both data objects");
    CK_ATTRIBUTE bykt[] = { { CKA_CLASS, &pc, sizeof(pc) }, { CKA_LABEL, "lone-pub", 8 }, { CKA_TOKEN, &yes, 1 } };
    CHECK(find(s, bykt, 3, h, 16) == 1 && h[0] == pub, "found by class, label and CKA_TOKEN: the public key");
    CK_ATTRIBUTE bytype = { CKA_CERTIFICATE_TYPE, &x509, sizeof(x509) };
    CHECK(find(s, &bytype, 1, h, 16) >= 1, "found by certificate type");

    /* Bad templates. */
    uint8_t junk[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
    ct[5].pValue = junk, ct[5].ulValueLen = sizeof(junk);
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_CreateObject(s, ct, 6, &tmp), "a certificate that does not parse");
    RV(CKR_TEMPLATE_INCOMPLETE, f->C_CreateObject(s, ct, 5, &tmp), "a certificate without CKA_VALUE");
    ct[1].pValue = &attrcert;
    ct[5].pValue = der;
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_CreateObject(s, ct, 6, &tmp), "an attribute certificate");
    ct[1].pValue = &x509;
    CK_ATTRIBUTE bad_app[] = { { CKA_CLASS, &pc, sizeof(pc) }, { CKA_KEY_TYPE, &ec, sizeof(ec) },
                               { CKA_TOKEN, &yes, 1 }, { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) },
                               { CKA_EC_POINT, ecpt, ptl }, { CKA_APPLICATION, "x", 1 } };
    RV(CKR_TEMPLATE_INCONSISTENT, f->C_CreateObject(s, bad_app, 6, &tmp), "CKA_APPLICATION on a public key");
    CK_ATTRIBUTE bad_val[] = { { CKA_CLASS, &dc, sizeof(dc) }, { CKA_TOKEN, &yes, 1 }, { CKA_VALUE, NULL, 4 } };
    RV(CKR_ATTRIBUTE_VALUE_INVALID, f->C_CreateObject(s, bad_val, 3, &tmp), "a value with no pointer");

    /* Label and CKA_ID persist; the rest is read-only. */
    CK_ATTRIBUTE lab = { CKA_LABEL, "renamed-cert", 12 }, nid = { CKA_ID, id2, 1 };
    RV(CKR_OK, f->C_SetAttributeValue(s, cert, &lab, 1), "set CKA_LABEL of the certificate");
    RV(CKR_OK, f->C_SetAttributeValue(s, cert, &nid, 1), "set CKA_ID of the certificate");
    CHECK(attr_is(s, cert, CKA_LABEL, "renamed-cert", 12) && attr_is(s, cert, CKA_ID, id2, 1) &&
              find_one(s, CKO_CERTIFICATE, "renamed-cert") == cert,
          "the new label and id are read back, same handle");
    CK_ATTRIBUTE val = { CKA_VALUE, "other", 5 };
    RV(CKR_ATTRIBUTE_READ_ONLY, f->C_SetAttributeValue(s, data, &val, 1), "CKA_VALUE of a data object is read-only");

    /* Read-only sessions change nothing. */
    CK_SESSION_HANDLE ro;
    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &ro);
    dt[2].pValue = "ro-data", dt[2].ulValueLen = 7;
    dt[6].pValue = &no;
    RV(CKR_SESSION_READ_ONLY, f->C_CreateObject(ro, dt, 7, &tmp), "token object in an RO session");
    RV(CKR_SESSION_READ_ONLY, f->C_DestroyObject(ro, data), "destroy in an RO session");
    RV(CKR_SESSION_READ_ONLY, f->C_SetAttributeValue(ro, data, &lab, 1), "set label in an RO session");
    CHECK(find_one(ro, CKO_DATA, "lone-data") == data, "the RO session sees the data object");

    /* CKA_PRIVATE objects are hidden before login. */
    RV(CKR_OK, f->C_Logout(s), "logout");
    CHECK(find_one(ro, CKO_DATA, "secret-data") == CK_INVALID_HANDLE &&
              find_one(ro, CKO_DATA, "lone-data") == data,
          "logged out: the private data object is hidden, the public one not");
    CK_ATTRIBUTE vq = { CKA_VALUE, NULL, 0 };
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_GetAttributeValue(ro, pdata, &vq, 1), "its handle is not usable");
    dt[6].pValue = &yes;
    RV(CKR_USER_NOT_LOGGED_IN, f->C_CreateObject(s, dt, 7, &tmp), "a private object needs login");
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "login again");
    CHECK(find_one(ro, CKO_DATA, "secret-data") == pdata, "logged in: it is back, same handle");
    f->C_CloseSession(ro);

    /* Another process sees the objects and adds one; this module sees that without
     * re-initialising. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        CK_SESSION_HANDLE cs;
        CK_ATTRIBUTE ctl[] = { { CKA_CLASS, &dc, sizeof(dc) }, { CKA_TOKEN, &yes, 1 },
                               { CKA_LABEL, "from-child", 10 }, { CKA_VALUE, "c", 1 } };
        int code = 0;
        if (f->C_Initialize(NULL) != CKR_OK ||
            f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &cs) != CKR_OK)
            _exit(1);
        if (find_one(cs, CKO_CERTIFICATE, "renamed-cert") != cert)
            code |= 2;
        if (find_one(cs, CKO_DATA, "secret-data") != CK_INVALID_HANDLE)
            code |= 4;   /* not logged in in this process */
        if (f->C_CreateObject(cs, ctl, 4, &tmp) != CKR_OK)
            code |= 8;
        f->C_Finalize(NULL);
        _exit(code);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "another process: same handles, private hidden, creates a data object (status %d)",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    tmp = find_one(s, CKO_DATA, "from-child");
    CHECK(tmp != CK_INVALID_HANDLE, "its object is seen here without re-initialising");
    RV(CKR_OK, f->C_DestroyObject(s, tmp), "destroy it");

    /* Destroy: gone here, and the handle stays invalid. */
    RV(CKR_OK, f->C_DestroyObject(s, data), "destroy the data object");
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_DestroyObject(s, data), "destroyed twice");
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_GetAttributeValue(s, data, &vq, 1), "its handle is invalid");
    RV(CKR_OK, f->C_DestroyObject(s, ecpub), "destroy the lone EC public key");
    CHECK(find_one(s, CKO_CERTIFICATE, "renamed-cert") == cert && find_one(s, CKO_PUBLIC_KEY, "lone-pub") == pub,
          "the others keep their handles");
    /* cert, pub and the private data object stay for test_objects_persist(). */
    OPENSSL_free(der);
    EVP_PKEY_free(eck);
}

/* After C_Finalize + C_Initialize: the token objects are still there. */
static void test_objects_persist(void)
{
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE cert, pub;
    uint8_t pid[] = { 0x52 };

    RV(CKR_OK, f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), "session after re-initialising");
    cert = find_one(s, CKO_CERTIFICATE, "renamed-cert");
    pub = find_one(s, CKO_PUBLIC_KEY, "lone-pub");
    CHECK(cert != CK_INVALID_HANDLE && attr_is(s, cert, CKA_ID, pid, 1), "the certificate persisted, renamed, new id");
    CHECK(pub != CK_INVALID_HANDLE && attr_ulong_is(s, pub, CKA_KEY_TYPE, CKK_RSA), "the lone public key persisted");
    CHECK(find_one(s, CKO_DATA, "secret-data") == CK_INVALID_HANDLE, "the private data object is hidden before login");
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "login");
    CK_OBJECT_HANDLE pdata = find_one(s, CKO_DATA, "secret-data");
    CHECK(pdata != CK_INVALID_HANDLE && attr_is(s, pdata, CKA_VALUE, "hello data", 10), "and there after login");
    RV(CKR_OK, f->C_DestroyObject(s, pdata), "destroy the private data object");
    RV(CKR_OK, f->C_DestroyObject(s, cert), "destroy the certificate");
    RV(CKR_OK, f->C_DestroyObject(s, pub), "destroy the public key");
    CHECK(find_one(s, CKO_PUBLIC_KEY, "lone-pub") == CK_INVALID_HANDLE, "gone");
    f->C_Logout(s);
    f->C_CloseSession(s);
    EVP_PKEY_free(lone_rsa);
}

/* Key pairs with CKA_TOKEN false: made in the TPM, kept in this session only. */
static void test_session_keys(void)
{
    CK_SESSION_HANDLE s, other;
    CK_MECHANISM ecm = { CKM_EC_KEY_PAIR_GEN, NULL, 0 }, m = { CKM_ECDSA_SHA256, NULL, 0 };
    CK_ATTRIBUTE pt[] = { { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) }, { CKA_TOKEN, &no, 1 } };
    CK_ATTRIBUTE kt[] = { { CKA_TOKEN, &no, 1 }, { CKA_LABEL, "ephemeral", 9 } };
    CK_OBJECT_HANDLE pub, priv;
    uint8_t sig[128], dig[32];
    unsigned dlen;
    CK_ULONG slen = sizeof(sig);

    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &other);
    RV(CKR_OK, f->C_GenerateKeyPair(s, &ecm, pt, 2, kt, 2, &pub, &priv), "session EC key pair (RO session)");
    CHECK(attr_bool(s, priv, CKA_TOKEN) == 0, "CKA_TOKEN false");
    RV(CKR_OK, sign(s, &m, priv, "eph", 3, sig, &slen), "the session key signs");
    EVP_PKEY *k = pubkey(s, pub);
    sha(EVP_sha256(), "eph", 3, dig, &dlen);
    CHECK(k && ecdsa_ok(k, dig, dlen, sig, slen), "... verified by OpenSSL");
    EVP_PKEY_free(k);
    CHECK(find_one(other, CKO_PRIVATE_KEY, "ephemeral") == priv, "other sessions of the application see it");
    f->C_CloseSession(s);
    CHECK(find_one(other, CKO_PRIVATE_KEY, "ephemeral") == CK_INVALID_HANDLE, "gone with its session");
    f->C_CloseSession(other);
}

/* Keys added and removed by another process are seen without re-initialising. */
static void test_other_process(CK_SESSION_HANDLE s)
{
    const char *tool = getenv("TPMKEYS_TOOL");
    char cmd[1024];

    if (!tool || access(tool, X_OK)) {
        printf("# TPMKEYS_TOOL not set: skipping the other-process checks\n");
        return;
    }
    CHECK(find_one(s, CKO_PRIVATE_KEY, "ext") == CK_INVALID_HANDLE, "no key 'ext' yet");
    snprintf(cmd, sizeof(cmd), "'%s' --token p11test create-key --label ext --no-pin >/dev/null", tool);
    CHECK(system(cmd) == 0, "tpmkeys create-key --label ext (another process)");
    CK_OBJECT_HANDLE h = find_one(s, CKO_PRIVATE_KEY, "ext");
    CHECK(h != CK_INVALID_HANDLE, "key 'ext' seen by the running module");
    uint8_t sig[128];
    CK_ULONG slen = sizeof(sig);
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    RV(CKR_OK, sign(s, &m, h, "x", 1, sig, &slen), "and it signs");
    snprintf(cmd, sizeof(cmd), "'%s' --token p11test list 2>/dev/null | grep -q '^label: *ec-renamed$'", tool);
    CHECK(system(cmd) == 0, "a key made through PKCS#11 is listed by tpmkeys");
    snprintf(cmd, sizeof(cmd), "'%s' --token p11test delete --yes ext >/dev/null", tool);
    CHECK(system(cmd) == 0, "tpmkeys delete ext");
    CHECK(find_one(s, CKO_PRIVATE_KEY, "ext") == CK_INVALID_HANDLE, "deletion seen");
    CK_ATTRIBUTE lab = { CKA_LABEL, NULL, 0 };
    RV(CKR_OBJECT_HANDLE_INVALID, f->C_GetAttributeValue(s, h, &lab, 1), "its handle is invalid now");
}

/* ------------------------------------------------------------------ threads and fork */

struct thr { CK_OBJECT_HANDLE key; int ok; };

static void *signer(void *arg)
{
    struct thr *t = arg;
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    uint8_t sig[128];
    if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK)
        return NULL;
    for (int i = 0; i < 5; i++) {
        CK_ULONG slen = sizeof(sig);
        if (sign(s, &m, t->key, "thread", 6, sig, &slen) == CKR_OK && slen == 64)
            t->ok++;
    }
    f->C_CloseSession(s);
    return NULL;
}

static void test_threads(void)
{
    pthread_t th[4];
    struct thr t[4];
    int total = 0;
    for (int i = 0; i < 4; i++) {
        t[i] = (struct thr){ np_priv, 0 };
        pthread_create(&th[i], NULL, signer, &t[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += t[i].ok;
    }
    CHECK(total == 20, "4 threads x 5 signatures, each in its own session (%d)", total);
}

/* A forked child gets a module of its own: not initialised until it calls C_Initialize,
 * then working (store reads here: the child's TPM connection would be a new client of
 * the resource manager, which tabrmd's D-Bus TCTI cannot make after a fork). */
static void test_fork(void)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        CK_ULONG n = 0;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE h[32];
        CK_TOKEN_INFO ti;
        int code = 0;
        if (f->C_GetSlotList(CK_TRUE, NULL, &n) != CKR_CRYPTOKI_NOT_INITIALIZED)
            code |= 1;
        if (f->C_Initialize(NULL) != CKR_OK)
            code |= 2;
        if (f->C_GetTokenInfo(slot, &ti) != CKR_OK || !blank_padded(ti.label, 32, "p11test"))
            code |= 4;
        if (f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
            find(s, NULL, 0, h, 32) < 4)
            code |= 8;
        if (f->C_Finalize(NULL) != CKR_OK)
            code |= 16;
        _exit(code);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "forked child: not initialised until C_Initialize, then lists the token (status %d)",
          WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    CK_SESSION_HANDLE s;
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    uint8_t sig[128];
    CK_ULONG slen = sizeof(sig);
    RV(CKR_OK, f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), "parent session after the fork");
    RV(CKR_OK, sign(s, &m, np_priv, "parent", 6, sig, &slen), "parent still signs");
    f->C_CloseSession(s);
}

/* Wrong PINs on one token must leave another token's keys usable. */
static void test_token_isolation(void)
{
    CK_SLOT_ID other = empty_slot();
    CK_UTF8CHAR label[32];
    CK_SESSION_HANDLE s, s2;
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    uint8_t sig[128];
    CK_ULONG slen;
    int i;

    padded(label, 32, "second");
    RV(CKR_OK, f->C_InitToken(other, PIN("so2"), label), "a second token");
    f->C_OpenSession(other, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s2);
    RV(CKR_OK, f->C_Login(s2, CKU_SO, PIN("so2")), "SO login on the second token");
    RV(CKR_OK, f->C_InitPIN(s2, PIN("2222")), "user PIN of the second token");
    f->C_Logout(s2);
    for (i = 0; i < 10; i++) {
        CK_RV rv = f->C_Login(s2, CKU_USER, PIN("9999"));
        if (rv == CKR_PIN_LOCKED)
            break;
        if (rv != CKR_PIN_INCORRECT)
            break;
        CK_FLAGS fl = token_flags(other);
        if (i == 3)
            CHECK(fl & CKF_USER_PIN_FINAL_TRY, "FINAL_TRY before the last try (flags 0x%lx)", (unsigned long)fl);
    }
    CHECK(i >= 3 && i < 10, "second token locks after %d wrong PINs", i);
    CHECK(token_flags(other) & CKF_USER_PIN_LOCKED, "USER_PIN_LOCKED on the second token");
    RV(CKR_PIN_LOCKED, f->C_Login(s2, CKU_USER, PIN("2222")), "even the right PIN is refused now");
    CHECK(!(token_flags(slot) & CKF_USER_PIN_LOCKED), "the first token is not locked");
    f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "first token: login still works");
    slen = sizeof(sig);
    RV(CKR_OK, sign(s, &m, ec_priv, "still", 5, sig, &slen), "first token: PIN key still signs");
    f->C_CloseSession(s);
    f->C_CloseSession(s2);

    /* The SO re-initialises the locked token: same slot, fresh token, no user PIN. */
    RV(CKR_PIN_INCORRECT, f->C_InitToken(other, PIN("bad-so"), label), "re-initialise with a wrong SO PIN");
    RV(CKR_OK, f->C_InitToken(other, PIN("so2"), label), "re-initialise the locked token");
    CK_FLAGS fl = token_flags(other);
    CHECK((fl & CKF_TOKEN_INITIALIZED) && !(fl & CKF_USER_PIN_INITIALIZED) && !(fl & CKF_USER_PIN_LOCKED),
          "same slot: initialised, no user PIN, not locked (0x%lx)", (unsigned long)fl);
    padded(label, 32, "renamed");
    RV(CKR_OK, f->C_InitToken(other, PIN("so2"), label), "re-initialise under a new label");
    CK_TOKEN_INFO ti;
    RV(CKR_OK, f->C_GetTokenInfo(other, &ti), "token info of the renamed token");
    CHECK(blank_padded(ti.label, 32, "renamed"), "the slot keeps its id under the new label");
    padded(label, 32, "p11test");
    RV(CKR_ARGUMENTS_BAD, f->C_InitToken(other, PIN("so2"), label), "a label another token has");
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("TPMKEYS_PKCS11_MODULE");
    void *lib;
    CK_SESSION_HANDLE s;

    if (!path) {
        fprintf(stderr, "usage: test_p11 MODULE.so (or set TPMKEYS_PKCS11_MODULE)\n");
        return 99;
    }
    if (!(lib = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return 99;
    }
    test_module_and_init(lib);
    if (!f)
        return 1;
    test_init_token();
    test_mechanisms();
    RV(CKR_OK, f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s), "RW session");
    {
        CK_MECHANISM ecm = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_ATTRIBUTE pt[] = { { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) }, { CKA_TOKEN, &yes, 1 } };
        CK_OBJECT_HANDLE a, b;
        RV(CKR_USER_NOT_LOGGED_IN, f->C_GenerateKeyPair(s, &ecm, pt, 2, NULL, 0, &a, &b),
           "PIN key generation needs login");
    }
    RV(CKR_OK, f->C_Login(s, CKU_USER, PIN(user_pin)), "user login");
    test_keygen(s);
    test_sign(s);
    test_decrypt(s);
    test_pss_key(s);
    test_derive_digest_random(s);
    test_3_0(s);
    test_find_and_login_rules(s);
    test_set_attributes(s);
    test_create_objects(s);
    test_token_objects(s);
    test_other_process(s);
    test_session_keys();
    test_threads();
    test_fork();
    {
        CK_SESSION_HANDLE rw;
        f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
        RV(CKR_PIN_INCORRECT, f->C_SetPIN(rw, PIN("bad"), PIN("5678")), "C_SetPIN with a wrong old PIN");
        RV(CKR_OK, f->C_SetPIN(rw, PIN(user_pin), PIN("5678")), "C_SetPIN");
        f->C_Logout(rw);
        RV(CKR_PIN_INCORRECT, f->C_Login(rw, CKU_USER, PIN(user_pin)), "old PIN refused");
        RV(CKR_OK, f->C_Login(rw, CKU_USER, PIN("5678")), "new PIN works");
        user_pin = "5678";
        f->C_CloseSession(rw);
    }
    RV(CKR_OK, f->C_CloseSession(s), "close session");
    test_token_isolation();
    RV(CKR_OK, f->C_Finalize(NULL), "C_Finalize");
    RV(CKR_CRYPTOKI_NOT_INITIALIZED, f->C_Finalize(NULL), "C_Finalize twice");
    RV(CKR_OK, f->C_Initialize(NULL), "C_Initialize again");
    CK_ULONG n = 0;
    RV(CKR_OK, f->C_GetSlotList(CK_TRUE, NULL, &n), "slots after re-initialising");
    CHECK(n == 3, "two tokens and the empty slot (%lu)", (unsigned long)n);
    test_objects_persist();
    RV(CKR_OK, f->C_Finalize(NULL), "C_Finalize");
    dlclose(lib);
    printf("1..%d\n", checks);
    printf("# %d of %d checks failed\n", failures, checks);
    return failures ? 1 : 0;
}
