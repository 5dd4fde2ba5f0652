/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Wrong PINs through the PKCS#11 module (dlopen, argv[1] or $TPMKEYS_PKCS11_MODULE),
 * what tests/pkcs11/test_p11.c does not cover already:
 *  - every wrong PIN is counted by the TPM itself (its lockout counter grows by one);
 *    a token locked by tpmkeys refuses without asking the TPM (the counter stays);
 *  - the token flags step through COUNT_LOW, FINAL_TRY and LOCKED, and a locked token
 *    stays locked for a new C_Initialize (the count lives in the store);
 *  - recovery without losing keys: the SO sets a new user PIN (C_InitPIN); the keys
 *    made under the old PIN still sign; the old PIN is refused;
 *  - a TPM-wide dictionary-attack lockout: every login is refused with CKR_PIN_LOCKED,
 *    but a token logged in before and keys without PIN keep signing; after the TPM's
 *    recovery time, or once the lockout is cleared, logins work again.
 * The TPM's DA counter is read and its parameters set with tpm2-tools (tpm2_getcap,
 * tpm2_dictionarylockout), so the TPM must sit behind a resource manager (fault-pin.sh
 * starts tpm2-abrmd).  TAP output; exit 0 when every check passed.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "../p11_check.h"

static CK_FUNCTION_LIST *f;


static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static const uint8_t p256_oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

/* ------------------------------------------------------------------ the TPM, via tpm2-tools */

/* TPM2_PT_LOCKOUT_COUNTER (-1 when it cannot be read). */
static long tpm_counter(void)
{
    FILE *p = popen("tpm2_getcap properties-variable 2>/dev/null", "r");
    char line[256];
    long v = -1;

    if (!p)
        return -1;
    while (fgets(line, sizeof(line), p))
        if (!strncmp(line, "TPM2_PT_LOCKOUT_COUNTER:", 24))
            v = strtol(line + 24, NULL, 0);
    pclose(p);
    return v;
}

/* Set the TPM's dictionary-attack parameters (and clear its counter first). */
static bool tpm_da(int max_tries, int recovery)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "tpm2_dictionarylockout --clear-lockout >/dev/null 2>&1 && "
             "tpm2_dictionarylockout --setup-parameters --max-tries=%d --recovery-time=%d "
             "--lockout-recovery-time=1 >/dev/null 2>&1", max_tries, recovery);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------------ PKCS#11 helpers */

static void padded(CK_UTF8CHAR *out, size_t n, const char *s)
{
    memset(out, ' ', n);
    memcpy(out, s, strlen(s));
}

static CK_SLOT_ID empty_slot(void)
{
    CK_SLOT_ID list[16];
    CK_TOKEN_INFO ti;
    CK_ULONG n = 16;
    if (f->C_GetSlotList(CK_TRUE, list, &n) != CKR_OK)
        return (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n; i++)
        if (f->C_GetTokenInfo(list[i], &ti) == CKR_OK && !(ti.flags & CKF_TOKEN_INITIALIZED))
            return list[i];
    return (CK_SLOT_ID)-1;
}

/* The slot of the token with this label. */
static CK_SLOT_ID slot_of(const char *label)
{
    CK_SLOT_ID list[16];
    CK_TOKEN_INFO ti;
    CK_UTF8CHAR want[32];
    CK_ULONG n = 16;

    padded(want, 32, label);
    if (f->C_GetSlotList(CK_TRUE, list, &n) != CKR_OK)
        return (CK_SLOT_ID)-1;
    for (CK_ULONG i = 0; i < n; i++)
        if (f->C_GetTokenInfo(list[i], &ti) == CKR_OK && !memcmp(ti.label, want, 32))
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

#define PIN_FLAGS (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)

/* A token: C_InitToken on an empty slot, user PIN set by the SO. */
static CK_SLOT_ID make_token(const char *label, const char *so, const char *user)
{
    CK_SLOT_ID slot = empty_slot();
    CK_UTF8CHAR l[32];
    CK_SESSION_HANDLE s;

    padded(l, 32, label);
    RV(CKR_OK, f->C_InitToken(slot, PIN(so), l), "token %s", label);
    slot = slot_of(label);
    f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    RV(CKR_OK, f->C_Login(s, CKU_SO, PIN(so)), "%s: SO login", label);
    RV(CKR_OK, f->C_InitPIN(s, PIN(user)), "%s: user PIN", label);
    f->C_CloseSession(s);
    return slot;
}

/* An EC P-256 key pair in the session's token; private: needs the user PIN. */
static CK_OBJECT_HANDLE make_key(CK_SESSION_HANDLE s, const char *label, bool private)
{
    CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_ATTRIBUTE pubt[] = {
        { CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid) },
        { CKA_TOKEN, &yes, 1 }, { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_ATTRIBUTE privt[] = {
        { CKA_TOKEN, &yes, 1 }, { CKA_PRIVATE, private ? &yes : &no, 1 },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE, priv = CK_INVALID_HANDLE;
    RV(CKR_OK, f->C_GenerateKeyPair(s, &m, pubt, 3, privt, 3, &pub, &priv), "key %s", label);
    return priv;
}

static CK_OBJECT_HANDLE find_key(CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG got = 0;
    if (f->C_FindObjectsInit(s, t, 2) == CKR_OK) {
        f->C_FindObjects(s, &h, 1, &got);
        f->C_FindObjectsFinal(s);
    }
    return got == 1 ? h : CK_INVALID_HANDLE;
}

/* The public key of a private-key object (CKA_PUBLIC_KEY_INFO). */
static EVP_PKEY *pubkey(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o)
{
    CK_ATTRIBUTE a = { CKA_PUBLIC_KEY_INFO, NULL, 0 };
    const unsigned char *p;
    unsigned char *v;
    EVP_PKEY *k = NULL;

    if (f->C_GetAttributeValue(s, o, &a, 1) != CKR_OK || !a.ulValueLen ||
        a.ulValueLen == CK_UNAVAILABLE_INFORMATION || !(v = malloc(a.ulValueLen)))
        return NULL;
    a.pValue = v;
    p = v;
    if (f->C_GetAttributeValue(s, o, &a, 1) == CKR_OK)
        k = d2i_PUBKEY(NULL, &p, (long)a.ulValueLen);
    free(v);
    return k;
}

/* Sign with ECDSA-SHA256 and verify in software: CKR_OK only when the signature holds. */
static CK_RV sign_verify(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    static const char msg[] = "wrong PINs elsewhere";
    CK_MECHANISM m = { CKM_ECDSA_SHA256, NULL, 0 };
    uint8_t sig[132];
    CK_ULONG slen = sizeof(sig);
    EVP_PKEY *pub;
    EVP_MD_CTX *v;
    ECDSA_SIG *es;
    unsigned char *der = NULL;
    int derlen;
    CK_RV rv = f->C_SignInit(s, &m, k);

    if (rv == CKR_OK)
        rv = f->C_Sign(s, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &slen);
    if (rv != CKR_OK)
        return rv;
    pub = pubkey(s, k);
    v = EVP_MD_CTX_new();
    es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)slen / 2, NULL),
                   BN_bin2bn(sig + slen / 2, (int)slen / 2, NULL));
    derlen = i2d_ECDSA_SIG(es, &der);
    if (!pub || !v || derlen <= 0 ||
        EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, "provider=default", pub, NULL) != 1 ||
        EVP_DigestVerify(v, der, (size_t)derlen, (const unsigned char *)msg, sizeof(msg) - 1) != 1)
        rv = CKR_SIGNATURE_INVALID;
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(v);
    EVP_PKEY_free(pub);
    return rv;
}

static void init_module(void *lib)
{
    CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
    if (!gfl || gfl(&f) != CKR_OK || f->C_Initialize(&args) != CKR_OK) {
        printf("Bail out! the module does not initialise\n");
        exit(99);
    }
}

/* ------------------------------------------------------------------ the scenario */

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("TPMKEYS_PKCS11_MODULE");
    void *lib;
    CK_SLOT_ID a, b, c;
    CK_SESSION_HANDLE sa, sb, sc;
    CK_OBJECT_HANDLE ka, kb, np;
    CK_FLAGS fl;
    long c0, c1;
    int i;

    if (!path || !(lib = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        printf("Bail out! cannot load the module %s: %s\n", path ? path : "(none)", dlerror());
        return 99;
    }
    init_module(lib);
    /* Counting: the TPM's own limit far away, no recovery during the test. */
    CHECK(tpm_da(32, 1000), "TPM DA parameters: 32 tries, no recovery during the test");

    a = make_token("pin-a", "so-a", "1111");
    b = make_token("pin-b", "so-b", "2222");
    c = make_token("pin-c", "so-c", "3333");
    f->C_OpenSession(a, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sa);
    f->C_OpenSession(b, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sb);
    RV(CKR_OK, f->C_Login(sa, CKU_USER, PIN("1111")), "pin-a: user login");
    ka = make_key(sa, "ka", true);
    np = make_key(sa, "np", false);
    RV(CKR_OK, f->C_Login(sb, CKU_USER, PIN("2222")), "pin-b: user login");
    kb = make_key(sb, "kb", true);
    RV(CKR_OK, sign_verify(sb, kb), "pin-b: its PIN key signs");
    RV(CKR_OK, f->C_Logout(sb), "pin-b: logout");
    CHECK(!(token_flags(b) & PIN_FLAGS), "pin-b: no PIN flags yet (0x%lx)",
          (unsigned long)token_flags(b));

    /* Wrong PINs: each one counted by the TPM, flags step by step. */
    for (i = 1; i <= 5; i++) {
        c0 = tpm_counter();
        RV(CKR_PIN_INCORRECT, f->C_Login(sb, CKU_USER, PIN("9999")), "pin-b: wrong PIN #%d", i);
        c1 = tpm_counter();
        CHECK(c0 >= 0 && c1 == c0 + 1, "wrong PIN #%d counted by the TPM (lockout counter %ld -> %ld)",
              i, c0, c1);
        fl = token_flags(b);
        CHECK(fl & CKF_USER_PIN_COUNT_LOW, "COUNT_LOW after %d wrong PINs (0x%lx)", i,
              (unsigned long)fl);
        CHECK(!(fl & CKF_USER_PIN_FINAL_TRY) == (i != 4), "FINAL_TRY %s after %d (0x%lx)",
              i == 4 ? "set" : "clear", i, (unsigned long)fl);
        CHECK(!(fl & CKF_USER_PIN_LOCKED) == (i != 5), "LOCKED %s after %d (0x%lx)",
              i == 5 ? "set" : "clear", i, (unsigned long)fl);
    }
    c0 = tpm_counter();
    RV(CKR_PIN_LOCKED, f->C_Login(sb, CKU_USER, PIN("9999")), "pin-b: locked, a wrong PIN");
    RV(CKR_PIN_LOCKED, f->C_Login(sb, CKU_USER, PIN("2222")), "pin-b: locked, the right PIN");
    c1 = tpm_counter();
    CHECK(c0 >= 0 && c1 == c0, "a locked token does not reach the TPM (counter %ld -> %ld)", c0, c1);
    RV(CKR_OK, sign_verify(sa, ka), "pin-a: logged in, its PIN key still signs");
    RV(CKR_OK, sign_verify(sa, np), "pin-a: the no-PIN key still signs");

    /* The lock is in the store, not in this process. */
    f->C_Finalize(NULL);
    init_module(lib);
    a = slot_of("pin-a");
    b = slot_of("pin-b");
    c = slot_of("pin-c");
    CHECK(token_flags(b) & CKF_USER_PIN_LOCKED, "pin-b still locked after C_Finalize/C_Initialize");
    CHECK(!(token_flags(a) & PIN_FLAGS), "pin-a: no PIN flags (0x%lx)", (unsigned long)token_flags(a));
    f->C_OpenSession(a, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sa);
    f->C_OpenSession(b, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &sb);
    f->C_OpenSession(c, CKF_SERIAL_SESSION, NULL, NULL, &sc);
    RV(CKR_OK, f->C_Login(sa, CKU_USER, PIN("1111")), "pin-a: login works while pin-b is locked");
    ka = find_key(sa, "ka");
    np = find_key(sa, "np");
    RV(CKR_OK, sign_verify(sa, ka), "pin-a: PIN key signs");

    /* Recovery: the SO sets a new user PIN; the keys stay. */
    RV(CKR_PIN_INCORRECT, f->C_Login(sb, CKU_SO, PIN("so-x")), "pin-b: wrong SO PIN");
    RV(CKR_OK, f->C_Login(sb, CKU_SO, PIN("so-b")), "pin-b: SO login on the locked token");
    RV(CKR_OK, f->C_InitPIN(sb, PIN("2223")), "pin-b: SO sets a new user PIN");
    RV(CKR_OK, f->C_Logout(sb), "pin-b: SO logout");
    fl = token_flags(b);
    CHECK(!(fl & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY)), "pin-b unlocked (0x%lx)",
          (unsigned long)fl);
    RV(CKR_PIN_INCORRECT, f->C_Login(sb, CKU_USER, PIN("2222")), "pin-b: the old PIN is refused");
    RV(CKR_OK, f->C_Login(sb, CKU_USER, PIN("2223")), "pin-b: the new PIN logs in");
    CHECK(!(token_flags(b) & CKF_USER_PIN_COUNT_LOW), "pin-b: count reset by the good PIN");
    kb = find_key(sb, "kb");
    CHECK(kb != CK_INVALID_HANDLE, "pin-b: the key made under the old PIN is still there");
    RV(CKR_OK, sign_verify(sb, kb), "pin-b: ... and signs");
    RV(CKR_OK, f->C_Logout(sb), "pin-b: logout");

    /* The TPM's own lockout: 3 tries, 2 s recovery.  pin-a stays logged in (sa). */
    CHECK(tpm_da(3, 2), "TPM DA parameters: 3 tries, 2 s recovery");
    for (i = 1; i <= 3; i++)
        RV(CKR_PIN_INCORRECT, f->C_Login(sb, CKU_USER, PIN("0000")), "pin-b: wrong PIN #%d", i);
    RV(CKR_PIN_LOCKED, f->C_Login(sb, CKU_USER, PIN("2223")),
       "TPM in lockout: pin-b's right PIN is refused");
    fl = token_flags(b);
    CHECK(fl & CKF_USER_PIN_LOCKED, "pin-b: LOCKED from the TPM's lockout (0x%lx)",
          (unsigned long)fl);
    RV(CKR_OK, f->C_Logout(sa), "pin-a: logout");
    RV(CKR_PIN_LOCKED, f->C_Login(sa, CKU_USER, PIN("1111")),
       "TPM in lockout: pin-a's right PIN is refused too (the TPM's limit is machine-wide)");
    /* pin-a has no wrong PIN of its own, so the module does not ask the TPM for its flags. */
    printf("# pin-a's flags during the TPM's lockout: 0x%lx\n", (unsigned long)token_flags(a));
    RV(CKR_OK, sign_verify(sa, np), "TPM in lockout: the no-PIN key signs");
    sleep(3);
    RV(CKR_OK, f->C_Login(sa, CKU_USER, PIN("1111")), "after the recovery time pin-a logs in");
    RV(CKR_OK, sign_verify(sa, ka), "pin-a: PIN key signs");
    CHECK(!(token_flags(a) & CKF_USER_PIN_LOCKED), "pin-a: not LOCKED (0x%lx)",
          (unsigned long)token_flags(a));
    /* Lockout again, with pin-a logged in: its keys keep working (noDA).  This time
     * with no recovery time, ended by the lockout hierarchy's owner
     * (tpm2_dictionarylockout --clear-lockout), and caused by a third token, so that
     * pin-b's own count stays below tpmkeys' limit. */
    CHECK(tpm_da(3, 1000), "TPM DA parameters: 3 tries, no recovery during the test");
    for (i = 1; i <= 3; i++)
        RV(CKR_PIN_INCORRECT, f->C_Login(sc, CKU_USER, PIN("0000")), "pin-c: wrong PIN #%d", i);
    RV(CKR_PIN_LOCKED, f->C_Login(sb, CKU_USER, PIN("2223")),
       "TPM in lockout from pin-c: pin-b's right PIN is refused");
    RV(CKR_OK, sign_verify(sa, ka), "TPM in lockout: logged-in pin-a's PIN key signs");
    RV(CKR_OK, sign_verify(sa, np), "TPM in lockout: the no-PIN key signs");
    CHECK(tpm_da(1000, 1), "the lockout is cleared (DA parameters back to the harness')");
    RV(CKR_OK, f->C_Login(sb, CKU_USER, PIN("2223")), "after the lockout is cleared pin-b logs in");
    CHECK(!(token_flags(b) & PIN_FLAGS), "pin-b: no PIN flags left (0x%lx)",
          (unsigned long)token_flags(b));
    RV(CKR_OK, sign_verify(sb, kb), "pin-b: PIN key signs");

    f->C_Finalize(NULL);
    dlclose(lib);
    printf("1..%d\n", checks);
    printf("# %d of %d checks failed\n", failures, checks);
    return failures ? 1 : 0;
}
