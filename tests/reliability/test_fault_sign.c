/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A signing loop for the fault scenarios (fault-*.sh): signs with one or more keys in
 * turn, through the PKCS#11 module (dlopen) or through the OpenSSL provider "tpm2"
 * (OSSL_PROVIDER_load, key by tpmkeys: URI or TSS2 file), verifies every signature in
 * software and prints one line per call:
 *
 *     ok N MS            the call succeeded and its signature verified
 *     fail N MS WHY      the call failed (WHY: the CKR code or OpenSSL's error text)
 *
 * so that the scenario can kill the TPM while the loop runs and watch it come back.
 *
 * Usage: test_fault_sign p11|prov [options] KEY PUBPEM [KEY PUBPEM ...]
 *   p11:  KEY is a private-key label (any token); the module is -m or
 *         $TPMKEYS_PKCS11_MODULE.  prov: KEY is a tpmkeys: URI or a key file, and
 *         OPENSSL_MODULES must point at the built provider.
 *   -n N     plain run: N signatures, every one must succeed (exit 0), else exit 1
 *   -r N     fault run (default, N = 20): the calls must go ok.. fail.. ok.., ending
 *            with N good calls in a row after the failures; any other shape fails
 *   -e WHAT  the failures allowed in a fault run: a CKR name for p11 (default
 *            CKR_DEVICE_ERROR), a text the OpenSSL error must contain for prov
 *   -p PIN   log in with this user PIN (p11; tokens without a user PIN are skipped)
 *   -c SECS  longest a single call may take (default 15): a slower one fails the run
 *   -T SECS  longest the whole run may take (default 120)
 *   -h SECS  after the first signature with each key, hold the keys loaded for SECS
 *            (a client that keeps TPM objects while others sign), then run as usual
 *   -i MS    pause between calls (a slow, long-running signer)
 *   -x       exit without C_Finalize / OSSL_PROVIDER_unload, as many applications do
 */
#include "config.h"

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <p11-kit/pkcs11.h>

#include "../store_load.h"

#define MAX_KEYS 8

typedef struct {
    const char *name;
    EVP_PKEY *pub;                 /* software public key, for verification */
    CK_SESSION_HANDLE session;     /* p11 */
    CK_OBJECT_HANDLE handle;       /* p11 */
    EVP_PKEY *key;                 /* prov */
} fkey;

static struct {
    bool p11;
    long plain;            /* > 0: plain run of this many calls */
    long recover;          /* fault run: good calls wanted after the failures */
    const char *expect;
    const char *pin;
    double call_max, total_max, hold, interval;
    bool no_finalize;
    const char *module;
} opt = { .recover = 20, .call_max = 15, .total_max = 120 };

static CK_FUNCTION_LIST *f;
static OSSL_PROVIDER *prov_tpm2, *prov_default;
static fkey keys[MAX_KEYS];
static int nkeys;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void usage(void)
{
    fprintf(stderr, "usage: test_fault_sign p11|prov [-n N | -r N] [-e WHAT] [-p PIN] "
                    "[-c SECS] [-T SECS] [-h SECS] [-i MS] [-x] [-m MODULE] KEY PUBPEM ...\n");
    exit(2);
}

static EVP_PKEY *read_pub(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b ? PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, NULL, "provider=default")
                    : NULL;
    BIO_free(b);
    return k;
}

static const char *ckr_name(CK_RV rv)
{
    switch (rv) {
    case CKR_OK: return "CKR_OK";
    case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
    case CKR_DEVICE_MEMORY: return "CKR_DEVICE_MEMORY";
    case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
    case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
    case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
    case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
    case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_OPERATION_ACTIVE: return "CKR_OPERATION_ACTIVE";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    }
    return "CKR_other";
}

/* ------------------------------------------------------------------ verification */

/* The signature (RSA: PKCS#1 v1.5 bytes; EC: DER, or r||s when rs) over msg, SHA-256. */
static bool verify(EVP_PKEY *pub, const uint8_t *msg, size_t mlen, const uint8_t *sig,
                   size_t slen, bool rs)
{
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int derlen = (int)slen;
    bool ok = false;

    if (rs) {
        ECDSA_SIG *es = ECDSA_SIG_new();
        if (es && ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)slen / 2, NULL),
                                 BN_bin2bn(sig + slen / 2, (int)slen / 2, NULL)))
            derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        sig = der;
    }
    if (v && sig && derlen > 0 &&
        EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, "provider=default", pub, NULL) == 1)
        ok = EVP_DigestVerify(v, sig, (size_t)derlen, msg, mlen) == 1;
    EVP_MD_CTX_free(v);
    OPENSSL_free(der);
    return ok;
}

/* ------------------------------------------------------------------ PKCS#11 */

static bool p11_open(void)
{
    CK_C_GetFunctionList gfl;
    CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
    CK_SLOT_ID slots[16];
    CK_ULONG nslots = 16;
    void *lib = dlopen(opt.module, RTLD_NOW | RTLD_LOCAL);
    CK_RV rv;

    if (!lib) {
        fprintf(stderr, "dlopen %s: %s\n", opt.module, dlerror());
        return false;
    }
    gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!gfl || gfl(&f) != CKR_OK || (rv = f->C_Initialize(&args)) != CKR_OK ||
        (rv = f->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK) {
        fprintf(stderr, "cannot initialise the PKCS#11 module %s\n", opt.module);
        return false;
    }
    for (int i = 0; i < nkeys; i++) {
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t[] = {
            { CKA_CLASS, &cls, sizeof(cls) },
            { CKA_LABEL, (void *)keys[i].name, strlen(keys[i].name) },
        };
        for (CK_ULONG s = 0; s < nslots && !keys[i].handle; s++) {
            CK_SESSION_HANDLE sh;
            CK_ULONG got = 0;
            if (f->C_OpenSession(slots[s], CKF_SERIAL_SESSION, NULL, NULL, &sh) != CKR_OK)
                continue;
            if (opt.pin) {
                rv = f->C_Login(sh, CKU_USER, (CK_UTF8CHAR_PTR)opt.pin, strlen(opt.pin));
                if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN &&
                    rv != CKR_USER_PIN_NOT_INITIALIZED)
                    fprintf(stderr, "C_Login on slot %lu: 0x%lx\n", (unsigned long)slots[s],
                            (unsigned long)rv);
            }
            if (f->C_FindObjectsInit(sh, t, 2) == CKR_OK) {
                CK_OBJECT_HANDLE h;
                if (f->C_FindObjects(sh, &h, 1, &got) == CKR_OK && got == 1) {
                    keys[i].session = sh;
                    keys[i].handle = h;
                }
                f->C_FindObjectsFinal(sh);
            }
            if (!keys[i].handle)
                f->C_CloseSession(sh);
        }
        if (!keys[i].handle) {
            fprintf(stderr, "no private key labelled '%s' in any token\n", keys[i].name);
            return false;
        }
    }
    return true;
}

/* One signature; why gets the failure. */
static bool p11_sign(fkey *k, const uint8_t *msg, size_t mlen, char *why, size_t whylen)
{
    bool ec = EVP_PKEY_get_base_id(k->pub) == EVP_PKEY_EC;
    CK_MECHANISM m = { ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0 };
    uint8_t sig[1024];
    CK_ULONG slen = sizeof(sig);
    CK_RV rv = f->C_SignInit(k->session, &m, k->handle);

    if (rv == CKR_OK)
        rv = f->C_Sign(k->session, (CK_BYTE_PTR)msg, mlen, sig, &slen);
    if (rv != CKR_OK) {
        snprintf(why, whylen, "%s (0x%lx)", ckr_name(rv), (unsigned long)rv);
        return false;
    }
    if (!verify(k->pub, msg, mlen, sig, slen, ec)) {
        snprintf(why, whylen, "BAD-SIGNATURE");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ provider */


static bool prov_open(void)
{
    prov_tpm2 = OSSL_PROVIDER_load(NULL, "tpm2");
    prov_default = OSSL_PROVIDER_load(NULL, "default");
    if (!prov_tpm2 || !prov_default) {
        ERR_print_errors_fp(stderr);
        return false;
    }
    for (int i = 0; i < nkeys; i++)
        if (!(keys[i].key = store_load_key(NULL, keys[i].name))) {
            fprintf(stderr, "cannot load %s\n", keys[i].name);
            ERR_print_errors_fp(stderr);
            return false;
        }
    return true;
}

static bool prov_sign(fkey *k, const uint8_t *msg, size_t mlen, char *why, size_t whylen)
{
    EVP_MD_CTX *s = EVP_MD_CTX_new();
    unsigned char sig[1024];
    size_t slen = sizeof(sig);
    bool ok = s && EVP_DigestSignInit_ex(s, NULL, "SHA256", NULL, NULL, k->key, NULL) == 1 &&
              EVP_DigestSign(s, sig, &slen, msg, mlen) == 1;

    EVP_MD_CTX_free(s);
    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        char text[256] = "no OpenSSL error";
        if (e)
            ERR_error_string_n(e, text, sizeof(text));
        /* The provider's own message, when it left one, says what happened. */
        const char *data = NULL;
        int flags = 0;
        ERR_peek_last_error_data(&data, &flags);
        snprintf(why, whylen, "%s%s%s", text, data && (flags & ERR_TXT_STRING) ? ": " : "",
                 data && (flags & ERR_TXT_STRING) ? data : "");
        ERR_clear_error();
        return false;
    }
    if (!verify(k->pub, msg, mlen, sig, slen, false)) {
        snprintf(why, whylen, "BAD-SIGNATURE");
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ the loop */

static bool expected_failure(const char *why)
{
    if (!strcmp(why, "BAD-SIGNATURE"))
        return false;
    if (opt.expect)
        return strstr(why, opt.expect) != NULL;
    return !opt.p11 || !strncmp(why, "CKR_DEVICE_ERROR ", 17);
}

int main(int argc, char **argv)
{
    enum { BEFORE, FAILING, RECOVERING } phase = BEFORE;
    long calls = 0, good = 0, bad = 0, streak = 0, before = 0;
    double start, worst = 0, fail_since = 0, outage_ms = 0;
    int c;

    if (argc < 2)
        usage();
    if (!strcmp(argv[1], "p11"))
        opt.p11 = true;
    else if (strcmp(argv[1], "prov"))
        usage();
    opt.module = getenv("TPMKEYS_PKCS11_MODULE");
    optind = 2;
    while ((c = getopt(argc, argv, "n:r:e:p:c:T:h:i:m:x")) != -1) {
        switch (c) {
        case 'n': opt.plain = atol(optarg); break;
        case 'r': opt.recover = atol(optarg); break;
        case 'e': opt.expect = optarg; break;
        case 'p': opt.pin = optarg; break;
        case 'c': opt.call_max = atof(optarg); break;
        case 'T': opt.total_max = atof(optarg); break;
        case 'h': opt.hold = atof(optarg); break;
        case 'i': opt.interval = atof(optarg); break;
        case 'x': opt.no_finalize = true; break;
        case 'm': opt.module = optarg; break;
        default: usage();
        }
    }
    if (argc - optind < 2 || (argc - optind) % 2 || (argc - optind) / 2 > MAX_KEYS ||
        (opt.p11 && !opt.module))
        usage();
    for (int i = optind; i < argc; i += 2, nkeys++) {
        keys[nkeys].name = argv[i];
        if (!(keys[nkeys].pub = read_pub(argv[i + 1]))) {
            fprintf(stderr, "cannot read the public key %s\n", argv[i + 1]);
            return 99;
        }
    }
    if (!(opt.p11 ? p11_open() : prov_open()))
        return 99;

    start = now_ms();
    for (;;) {
        fkey *k = &keys[calls % nkeys];
        char msg[64], why[300] = "";
        double t0 = now_ms(), ms;
        bool ok;

        snprintf(msg, sizeof(msg), "fault loop call %ld", calls);
        ok = opt.p11 ? p11_sign(k, (uint8_t *)msg, strlen(msg), why, sizeof(why))
                     : prov_sign(k, (uint8_t *)msg, strlen(msg), why, sizeof(why));
        ms = now_ms() - t0;
        if (ms > worst)
            worst = ms;
        calls++;
        if (ok) {
            printf("ok %ld %.1f\n", calls, ms);
            good++;
            streak++;
        } else {
            printf("fail %ld %.1f %s\n", calls, ms, why);
            bad++;
            streak = 0;
        }
        fflush(stdout);

        if (ms > opt.call_max * 1e3) {
            fprintf(stderr, "call %ld took %.0f ms (limit %.0f s)\n", calls, ms, opt.call_max);
            return 1;
        }
        if (opt.hold > 0 && calls == nkeys) {
            printf("holding\n");
            fflush(stdout);
            usleep((useconds_t)(opt.hold * 1e6));
        }
        if (opt.interval > 0)
            usleep((useconds_t)(opt.interval * 1e3));
        if (opt.plain) {
            if (!ok) {
                fprintf(stderr, "call %ld failed: %s\n", calls, why);
                return 1;
            }
            if (calls == opt.plain)
                break;
            continue;
        }
        /* Fault run: ok+ fail+ ok{recover}, nothing else. */
        if (!ok && !expected_failure(why)) {
            fprintf(stderr, "call %ld failed in an unexpected way: %s\n", calls, why);
            return 1;
        }
        if (phase == BEFORE && !ok) {
            if (!good) {
                fprintf(stderr, "the first call failed: %s\n", why);
                return 1;
            }
            before = good;
            phase = FAILING;
            fail_since = t0;
        } else if (phase == FAILING && ok) {
            phase = RECOVERING;
            outage_ms = t0 - fail_since;
        } else if (phase == RECOVERING && !ok) {
            fprintf(stderr, "call %ld failed again after the recovery: %s\n", calls, why);
            return 1;
        }
        if (phase == RECOVERING && streak >= opt.recover)
            break;
        if (!ok)
            usleep(20000); /* a failing TPM answers at once: do not flood the log */
        if (now_ms() - start > opt.total_max * 1e3) {
            fprintf(stderr, "no recovery within %.0f s (phase %d)\n", opt.total_max, (int)phase);
            return 1;
        }
    }
    printf("summary: %ld calls, %ld ok, %ld failed, %ld ok before the fault, outage %.0f ms, "
           "slowest call %.1f ms\n", calls, good, bad, before, outage_ms, worst);
    fflush(stdout);
    if (opt.no_finalize)
        exit(0); /* as an application that never cleans up (atexit and destructors run) */
    if (opt.p11)
        f->C_Finalize(NULL);
    for (int i = 0; i < nkeys; i++) {
        EVP_PKEY_free(keys[i].pub);
        EVP_PKEY_free(keys[i].key);
    }
    OSSL_PROVIDER_unload(prov_tpm2);
    OSSL_PROVIDER_unload(prov_default);
    return 0;
}
