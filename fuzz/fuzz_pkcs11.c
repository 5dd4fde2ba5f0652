/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: PKCS#11 attribute templates, the outside input of the module
 * (pkcs11/, linked in).  Each input starts from a seeded store (fuzz_seed_store: token
 * "tpmkeys" without a PIN, token "ops" with one, three keys and a certificate), calls
 * C_Initialize, opens a session and runs up to 16 operations decoded from the input:
 *
 *   first byte: bit 0 read-only session, bits 1-2 which slot
 *   op % 7: 0 C_CreateObject  1 C_FindObjectsInit/C_FindObjects[/C_FindObjectsFinal]
 *           2 C_GetAttributeValue  3 C_SetAttributeValue  4 C_DestroyObject
 *           5 C_GetObjectSize  6 close the session and open another one
 *   a template: a count, then per attribute a type (mostly from a table of real CKA_
 *   values, else any 32 bits) and a value: CK_BBOOL, CK_ULONG (mostly real CKO_/CKK_/
 *   CKC_ values), raw bytes, a NULL pointer with a length, or a well-formed value from a
 *   pool (certificate, EC parameters and point, RSA modulus/exponent, labels, ids).
 *   handles: created or found ones, or any 64 bits.
 *
 * Every value lives in its own exact-size allocation, so ASan sees any read or write
 * past what the caller gave.  The TPM is out of reach: key imports fail with
 * CKR_DEVICE_ERROR.  Invariants: C_GetAttributeValue never reports more bytes than the
 * buffer it filled held, answers CKR_OK only with every attribute filled, and never
 * reveals a sensitive attribute.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <p11-kit/pkcs11.h>

#include "fuzz.h"

static char path[4200];
static tk_buf image, cert, ecpoint;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    tk_buf pub = { 0 };
    TPM2B_PUBLIC p;

    (void)argc, (void)argv;
    snprintf(path, sizeof(path), "%s/store.db", fuzz_tmpdir());
    fuzz_env(path);
    fuzz_seed_store(path, &image);
    fuzz_cert(&cert);
    /* CKA_EC_POINT of the seeded EC keys: DER OCTET STRING of the uncompressed point. */
    fuzz_ec_public(&pub);
    if (tk_public_unmarshal(&pub, &p) != TK_OK)
        abort();
    ecpoint.data = malloc(67);
    ecpoint.len = 67;
    if (!ecpoint.data)
        abort();
    ecpoint.data[0] = 0x04;
    ecpoint.data[1] = 65;
    ecpoint.data[2] = 0x04;
    memcpy(ecpoint.data + 3, p.publicArea.unique.ecc.x.buffer, 32);
    memcpy(ecpoint.data + 35, p.publicArea.unique.ecc.y.buffer, 32);
    tk_buf_free(&pub);
    return 0;
}

/* ------------------------------------------------------------------ templates */

static const CK_ATTRIBUTE_TYPE types[] = {
    CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_APPLICATION, CKA_VALUE, CKA_OBJECT_ID,
    CKA_CERTIFICATE_TYPE, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_TRUSTED, CKA_CERTIFICATE_CATEGORY,
    CKA_CHECK_VALUE, CKA_KEY_TYPE, CKA_SUBJECT, CKA_ID, CKA_SENSITIVE, CKA_ENCRYPT,
    CKA_DECRYPT, CKA_WRAP, CKA_UNWRAP, CKA_SIGN, CKA_SIGN_RECOVER, CKA_VERIFY,
    CKA_VERIFY_RECOVER, CKA_DERIVE, CKA_START_DATE, CKA_END_DATE, CKA_MODULUS,
    CKA_MODULUS_BITS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
    CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT, CKA_PUBLIC_KEY_INFO, CKA_VALUE_LEN,
    CKA_EXTRACTABLE, CKA_LOCAL, CKA_NEVER_EXTRACTABLE, CKA_ALWAYS_SENSITIVE,
    CKA_KEY_GEN_MECHANISM, CKA_MODIFIABLE, CKA_COPYABLE, CKA_DESTROYABLE, CKA_EC_PARAMS,
    CKA_EC_POINT, CKA_ALWAYS_AUTHENTICATE, CKA_WRAP_WITH_TRUSTED, CKA_ALLOWED_MECHANISMS,
    CKA_URL, CKA_HASH_OF_SUBJECT_PUBLIC_KEY, CKA_HASH_OF_ISSUER_PUBLIC_KEY,
    CKA_NAME_HASH_ALGORITHM, CKA_JAVA_MIDP_SECURITY_DOMAIN, CKA_VENDOR_DEFINED,
};

static const CK_ULONG ulongs[] = {
    CKO_DATA, CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY, CKO_SECRET_KEY,
    CKK_RSA, CKK_EC, CKK_GENERIC_SECRET, CKK_AES, CKC_X_509, CKC_X_509_ATTR_CERT, 0, 1, 2048,
    CK_UNAVAILABLE_INFORMATION, CKM_RSA_PKCS, CKM_ECDSA,
};

static const uint8_t ec_params[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const uint8_t exponent[] = { 0x01, 0x00, 0x01 };

#define NT(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_ATTRS 12

typedef struct {
    CK_ATTRIBUTE a[MAX_ATTRS];
    CK_ULONG n;
} tmpl;

static void *dup_exact(const void *p, size_t n)
{
    void *c = malloc(n ? n : 1);
    if (!c)
        abort();
    if (n)
        memcpy(c, p, n);
    return c;
}

static void pool_value(fuzz_in *in, CK_ATTRIBUTE *a)
{
    static uint8_t modulus[256], big[512];
    const void *v;
    size_t n;

    modulus[0] = 0xc3;
    modulus[255] = 0x01;
    switch (fuzz_u8(in) % 8) {
    case 0: v = cert.data; n = cert.len; break;
    case 1: v = ec_params; n = sizeof(ec_params); break;
    case 2: v = ecpoint.data; n = ecpoint.len; break;
    case 3: v = modulus; n = sizeof(modulus); break;
    case 4: v = exponent; n = sizeof(exponent); break;
    case 5: v = "web"; n = 3; break;
    case 6: v = "mail"; n = 4; break;
    default: v = big; n = fuzz_u16(in) % sizeof(big); break;
    }
    a->pValue = dup_exact(v, n);
    a->ulValueLen = n;
}

static void read_tmpl(fuzz_in *in, tmpl *t)
{
    t->n = fuzz_u8(in) % (MAX_ATTRS + 1);
    for (CK_ULONG i = 0; i < t->n; i++) {
        CK_ATTRIBUTE *a = &t->a[i];
        uint8_t sel = fuzz_u8(in);
        const uint8_t *p;
        size_t n;

        a->type = sel < 0xf0 ? types[sel % NT(types)] : fuzz_u32(in);
        switch (fuzz_u8(in) % 6) {
        case 0: {
            CK_BBOOL b = fuzz_u8(in) % 3; /* 2: neither true nor false */
            a->pValue = dup_exact(&b, sizeof(b));
            a->ulValueLen = sizeof(b);
            break;
        }
        case 1: {
            uint8_t k = fuzz_u8(in);
            CK_ULONG u = k < 0xf0 ? ulongs[k % NT(ulongs)] : (CK_ULONG)fuzz_u64(in);
            a->pValue = dup_exact(&u, sizeof(u));
            a->ulValueLen = sizeof(u);
            break;
        }
        case 2:
            p = fuzz_bytes(in, fuzz_u8(in), &n);
            a->pValue = dup_exact(p, n);
            a->ulValueLen = n;
            break;
        case 3:
            a->pValue = NULL;
            a->ulValueLen = fuzz_u8(in);
            break;
        default:
            pool_value(in, a);
            break;
        }
    }
}

static void free_tmpl(tmpl *t)
{
    for (CK_ULONG i = 0; i < t->n; i++)
        free(t->a[i].pValue);
    t->n = 0;
}

/* ------------------------------------------------------------------ operations */

#define MAX_HANDLES 32
static CK_OBJECT_HANDLE handles[MAX_HANDLES];
static size_t nhandles;

static void remember(CK_OBJECT_HANDLE h)
{
    if (nhandles < MAX_HANDLES)
        handles[nhandles++] = h;
}

static CK_OBJECT_HANDLE pick(fuzz_in *in)
{
    uint8_t b = fuzz_u8(in);

    if (b >= 0xf0 || !nhandles)
        return (CK_OBJECT_HANDLE)fuzz_u64(in);
    return handles[b % nhandles];
}

static void op_create(CK_SESSION_HANDLE s, fuzz_in *in)
{
    tmpl t;
    CK_OBJECT_HANDLE h = 0;

    read_tmpl(in, &t);
    if (C_CreateObject(s, t.a, t.n, &h) == CKR_OK)
        remember(h);
    free_tmpl(&t);
}

static void op_find(CK_SESSION_HANDLE s, fuzz_in *in)
{
    tmpl t;
    uint8_t how = fuzz_u8(in);

    read_tmpl(in, &t);
    if (C_FindObjectsInit(s, (how & 1) && !t.n ? NULL : t.a, t.n) == CKR_OK) {
        for (int round = 0; round < 3; round++) {
            CK_ULONG max = (how >> 1) % 5, got = 0;
            CK_OBJECT_HANDLE *found = malloc((max ? max : 1) * sizeof(*found));
            if (!found)
                abort();
            if (C_FindObjects(s, found, max, &got) == CKR_OK) {
                FUZZ_CHECK(got <= max, "C_FindObjects returned %lu handles for room of %lu",
                           got, max);
                for (CK_ULONG i = 0; i < got; i++)
                    remember(found[i]);
            }
            free(found);
        }
        if (!(how & 0x80))
            C_FindObjectsFinal(s);
    }
    free_tmpl(&t);
}

static bool is_sensitive_type(CK_ATTRIBUTE_TYPE t)
{
    return t == CKA_VALUE || t == CKA_PRIVATE_EXPONENT || t == CKA_PRIME_1 || t == CKA_PRIME_2 ||
           t == CKA_EXPONENT_1 || t == CKA_EXPONENT_2 || t == CKA_COEFFICIENT;
}

static void op_get(CK_SESSION_HANDLE s, fuzz_in *in)
{
    CK_ATTRIBUTE a[MAX_ATTRS];
    CK_ULONG given[MAX_ATTRS], n = fuzz_u8(in) % (MAX_ATTRS + 1);
    CK_OBJECT_HANDLE h = pick(in);
    CK_OBJECT_CLASS cls = 0;
    CK_ATTRIBUTE ca = { CKA_CLASS, &cls, sizeof(cls) };
    CK_RV rv;

    for (CK_ULONG i = 0; i < n; i++) {
        uint8_t sel = fuzz_u8(in), len = fuzz_u8(in);
        a[i].type = sel < 0xf0 ? types[sel % NT(types)] : fuzz_u32(in);
        /* Half the time a length query (NULL), else a buffer of some size. */
        a[i].pValue = (len & 1) ? NULL : malloc(len ? len : 1);
        a[i].ulValueLen = given[i] = len;
    }
    rv = C_GetAttributeValue(s, h, n ? a : NULL, n);
    for (CK_ULONG i = 0; i < n && rv != CKR_OBJECT_HANDLE_INVALID &&
                         rv != CKR_SESSION_HANDLE_INVALID && rv != CKR_ARGUMENTS_BAD; i++) {
        if (a[i].pValue && a[i].ulValueLen != CK_UNAVAILABLE_INFORMATION)
            FUZZ_CHECK(a[i].ulValueLen <= given[i], "attribute 0x%lx: %lu bytes reported "
                       "for a buffer of %lu", a[i].type, a[i].ulValueLen, given[i]);
        if (rv == CKR_OK)
            FUZZ_CHECK(a[i].ulValueLen != CK_UNAVAILABLE_INFORMATION, "CKR_OK with "
                       "attribute 0x%lx unavailable", a[i].type);
    }
    /* Private-key material of TPM keys never leaves the module. */
    if (C_GetAttributeValue(s, h, &ca, 1) == CKR_OK && cls == CKO_PRIVATE_KEY)
        for (CK_ULONG i = 0; i < n; i++)
            FUZZ_CHECK(!is_sensitive_type(a[i].type) || a[i].ulValueLen ==
                       CK_UNAVAILABLE_INFORMATION, "private key attribute 0x%lx revealed",
                       a[i].type);
    for (CK_ULONG i = 0; i < n; i++)
        free(a[i].pValue);
}

static void op_set(CK_SESSION_HANDLE s, fuzz_in *in)
{
    CK_OBJECT_HANDLE h = pick(in);
    tmpl t;

    read_tmpl(in, &t);
    (void)C_SetAttributeValue(s, h, t.a, t.n);
    free_tmpl(&t);
}

static CK_SESSION_HANDLE open_session(fuzz_in *in, uint8_t how)
{
    CK_SLOT_ID slots[8];
    CK_ULONG n = 8;
    CK_SESSION_HANDLE s = 0;
    CK_FLAGS flags = CKF_SERIAL_SESSION | ((how & 1) ? 0 : CKF_RW_SESSION);

    (void)in;
    if (C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || !n)
        return 0;
    if (C_OpenSession(slots[(how >> 1) % n], flags, NULL, NULL, &s) != CKR_OK)
        return 0;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = { data, size };
    CK_SESSION_HANDLE s;
    CK_ULONG osize;
    uint8_t how = fuzz_u8(&in);

    fuzz_restore_store(path, &image);
    nhandles = 0;
    if (C_Initialize(NULL) != CKR_OK)
        abort();
    s = open_session(&in, how);
    for (int i = 0; s && i < 16 && in.left; i++) {
        switch (fuzz_u8(&in) % 7) {
        case 0: op_create(s, &in); break;
        case 1: op_find(s, &in); break;
        case 2: op_get(s, &in); break;
        case 3: op_set(s, &in); break;
        case 4: (void)C_DestroyObject(s, pick(&in)); break;
        case 5: (void)C_GetObjectSize(s, pick(&in), &osize); break;
        default:
            C_CloseSession(s);
            s = open_session(&in, fuzz_u8(&in));
            break;
        }
    }
    if (C_Finalize(NULL) != CKR_OK)
        abort();
    ERR_clear_error();
    return 0;
}
