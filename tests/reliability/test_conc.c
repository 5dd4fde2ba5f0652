/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Concurrency and fork through both doors, as applications use them: the PKCS#11
 * module (dlopen + C_GetFunctionList) and the OpenSSL provider (OSSL_STORE + EVP),
 * against the swtpm or tpm2-abrmd that the calling scenario started.  Every signature
 * is verified in software with a public key exported independently by `tpmkeys export
 * --public` (LABEL.pub.pem in the current folder), so a wrong signature is a failure.
 *
 *   test_conc p11-sign MODULE TOKEN LABEL SECONDS
 *       sign in a loop for SECONDS, finding the key again each time and listing every
 *       object now and then (other processes add and delete keys meanwhile).
 *       $TK_CONC_PIN set: log in with it first.
 *   test_conc prov-sign LABEL SECONDS
 *       the same through the provider (tpmkeys:object=LABEL), reloading the key from
 *       the store every few signatures.
 *   test_conc p11-threads MODULE TOKEN ROUNDS SHARED OWN...
 *       one thread per OWN label, one module (C_Initialize with CKF_OS_LOCKING_OK), each
 *       thread with its own session: find, C_GetAttributeValue, sign with SHARED and
 *       with its own key, ROUNDS times.
 *   test_conc prov-threads ROUNDS SHARED OWN...
 *       one thread per OWN label in one OSSL_LIB_CTX with the tpm2 provider: each signs
 *       with the shared EVP_PKEY (loaded once) and with its own (loaded in the thread).
 *   test_conc p11-fork MODULE TOKEN LABEL MODE
 *   test_conc prov-fork LABEL MODE
 *       sign, fork, sign in the child (PKCS#11: C_Initialize again first, as the spec
 *       asks) and again in the parent.  MODE:
 *       direct     a bare swtpm, which serves one connection at a time: the parent
 *                  closes its own (C_Finalize / provider unload) before it waits for
 *                  the child, then starts again and signs.
 *       rm         behind a resource manager: parent and child sign at the same time.
 *       rm-late    the same, but the parent uses only the store before the fork
 *                  (nginx's master loads keys, its workers sign).
 *       rm-closed  the parent signs, closes the door, forks, opens it again.
 *       refused    the child cannot reach the TPM (tpm2-abrmd after the parent used
 *                  it): its signature must fail with an error within 5 s, not hang.
 *
 * Output: '#' lines with what happened, one summary line, exit 0 when nothing failed.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include "../store_load.h"
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

/* A child that hangs (a TPM connection that cannot work after fork) is killed. */
#define CHILD_TIMEOUT 60

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    char line[512];

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* One write per line: several processes and threads share the output. */
    fprintf(stdout, "# [%ld] %s\n", (long)getpid(), line);
    fflush(stdout);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ verification */

/* LABEL.pub.pem (written by `tpmkeys export --public`), in libctx. */
static EVP_PKEY *read_pub(OSSL_LIB_CTX *lc, const char *label)
{
    char path[300];
    BIO *b;
    EVP_PKEY *k;

    snprintf(path, sizeof(path), "%s.pub.pem", label);
    b = BIO_new_file(path, "r");
    k = b ? PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, lc, "provider=default") : NULL;
    BIO_free(b);
    if (!k)
        say("cannot read the public key %s", path);
    return k;
}

/* r||s (PKCS#11 ECDSA) to DER (X9.62). */
static int ecdsa_der(const uint8_t *sig, size_t slen, unsigned char **der)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)(slen / 2), NULL), *s = BN_bin2bn(sig + slen / 2,
                                                                     (int)(slen / 2), NULL);
    int n = -1;

    if (es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL;
        n = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

/* Verify a SHA-256 signature over msg in software; raw: ECDSA as r||s. */
static bool verify(OSSL_LIB_CTX *lc, EVP_PKEY *pub, const char *msg, const uint8_t *sig,
                   size_t slen, bool raw)
{
    EVP_MD_CTX *v = EVP_MD_CTX_new();
    unsigned char *der = NULL;
    int derlen = 0;
    bool ok = false;

    if (raw && EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC) {
        if ((derlen = ecdsa_der(sig, slen, &der)) <= 0)
            goto out;
        sig = der;
        slen = (size_t)derlen;
    }
    ok = v && EVP_DigestVerifyInit_ex(v, NULL, "SHA256", lc, "provider=default", pub, NULL) == 1 &&
         EVP_DigestVerify(v, sig, slen, (const unsigned char *)msg, strlen(msg)) == 1;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(v);
    ERR_clear_error();
    return ok;
}

/* ------------------------------------------------------------------ PKCS#11 */

static CK_FUNCTION_LIST *f;
static void *lib;

static bool p11_load(const char *module)
{
    CK_C_GetFunctionList gfl;

    lib = dlopen(module, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        say("dlopen %s: %s", module, dlerror());
        return false;
    }
    gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!gfl || gfl(&f) != CKR_OK) {
        say("%s has no usable C_GetFunctionList", module);
        return false;
    }
    return true;
}

static CK_RV p11_init(void)
{
    CK_C_INITIALIZE_ARGS args;

    memset(&args, 0, sizeof(args));
    args.flags = CKF_OS_LOCKING_OK;
    return f->C_Initialize(&args);
}

static bool blank_eq(const CK_UTF8CHAR *v, size_t n, const char *want)
{
    size_t w = strlen(want);
    if (w > n || memcmp(v, want, w))
        return false;
    for (size_t i = w; i < n; i++)
        if (v[i] != ' ')
            return false;
    return true;
}

/* The slot whose token is labelled token. */
static bool p11_slot(const char *token, CK_SLOT_ID *slot)
{
    CK_SLOT_ID list[16];
    CK_ULONG n = 16;
    CK_TOKEN_INFO ti;

    if (f->C_GetSlotList(CK_TRUE, list, &n) != CKR_OK)
        return false;
    for (CK_ULONG i = 0; i < n; i++)
        if (f->C_GetTokenInfo(list[i], &ti) == CKR_OK && blank_eq(ti.label, 32, token)) {
            *slot = list[i];
            return true;
        }
    say("no token '%s'", token);
    return false;
}

static CK_RV p11_find_key(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *h)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_OBJECT_HANDLE found[2];
    CK_ULONG n = 0;
    CK_RV rv = f->C_FindObjectsInit(s, t, 2);

    if (rv != CKR_OK)
        return rv;
    rv = f->C_FindObjects(s, found, 2, &n);
    f->C_FindObjectsFinal(s);
    if (rv == CKR_OK && n != 1)
        rv = CKR_OBJECT_HANDLE_INVALID;
    if (rv == CKR_OK)
        *h = found[0];
    return rv;
}

/* Find the key, sign msg with it (SHA-256 in the module), verify.  Says what failed. */
static bool p11_sign_verify(CK_SESSION_HANDLE s, const char *label, EVP_PKEY *pub,
                            const char *msg)
{
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_MECHANISM m = { EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC ? CKM_ECDSA_SHA256
                                                                 : CKM_SHA256_RSA_PKCS,
                       NULL, 0 };
    uint8_t sig[1024];
    CK_ULONG slen = sizeof(sig);
    CK_RV rv;

    if ((rv = p11_find_key(s, label, &h)) != CKR_OK) {
        say("%s: finding the key: CKR 0x%lx", label, (unsigned long)rv);
        return false;
    }
    if ((rv = f->C_SignInit(s, &m, h)) != CKR_OK ||
        (rv = f->C_Sign(s, (CK_BYTE_PTR)msg, strlen(msg), sig, &slen)) != CKR_OK) {
        say("%s: signing: CKR 0x%lx", label, (unsigned long)rv);
        return false;
    }
    if (!verify(NULL, pub, msg, sig, slen, true)) {
        say("%s: the signature does not verify", label);
        return false;
    }
    return true;
}

/* Every object of the token, each asked for its label (objects may vanish meanwhile:
 * another process deletes keys).  Returns the number seen, -1 on a real error. */
static long p11_list_all(CK_SESSION_HANDLE s)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG n = 0;
    long seen = 0;
    CK_RV rv = f->C_FindObjectsInit(s, NULL, 0);

    if (rv != CKR_OK) {
        say("C_FindObjectsInit(all): CKR 0x%lx", (unsigned long)rv);
        return -1;
    }
    do {
        if ((rv = f->C_FindObjects(s, h, 64, &n)) != CKR_OK)
            break;
        for (CK_ULONG i = 0; i < n; i++) {
            char label[80];
            CK_ATTRIBUTE a = { CKA_LABEL, label, sizeof(label) };
            CK_RV r = f->C_GetAttributeValue(s, h[i], &a, 1);
            if (r != CKR_OK && r != CKR_OBJECT_HANDLE_INVALID) {
                say("C_GetAttributeValue(CKA_LABEL): CKR 0x%lx", (unsigned long)r);
                rv = r;
            }
        }
        seen += (long)n;
    } while (n == 64 && rv == CKR_OK);
    f->C_FindObjectsFinal(s);
    if (rv != CKR_OK) {
        say("listing every object: CKR 0x%lx", (unsigned long)rv);
        return -1;
    }
    return seen;
}

static bool p11_login_env(CK_SESSION_HANDLE s)
{
    const char *pin = getenv("TK_CONC_PIN");
    CK_RV rv;

    if (!pin)
        return true;
    rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        say("C_Login: CKR 0x%lx", (unsigned long)rv);
        return false;
    }
    return true;
}

static int cmd_p11_sign(const char *module, const char *token, const char *label, double secs)
{
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    EVP_PKEY *pub = read_pub(NULL, label);
    long sigs = 0, fails = 0, lists = 0;
    double end;

    if (!pub || !p11_load(module) || p11_init() != CKR_OK || !p11_slot(token, &slot) ||
        f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
        !p11_login_env(s)) {
        say("p11-sign %s: set-up failed", label);
        return 1;
    }
    end = now() + secs;
    while (now() < end) {
        char msg[96];
        snprintf(msg, sizeof(msg), "p11 %s pid %ld sig %ld", label, (long)getpid(), sigs);
        if (!p11_sign_verify(s, label, pub, msg))
            fails++;
        sigs++;
        if (sigs % 10 == 0) {
            if (p11_list_all(s) < 0)
                fails++;
            lists++;
        }
    }
    f->C_CloseSession(s);
    f->C_Finalize(NULL);
    EVP_PKEY_free(pub);
    printf("p11-sign %s: %ld signatures, %ld listings, %ld failures\n", label, sigs, lists,
           fails);
    return fails || !sigs;
}

/* ------------------------------------------------------------------ provider */

/* The providers loaded into the one library context a process uses at a time. */
static OSSL_PROVIDER *p_tpm2, *p_dflt;

static OSSL_LIB_CTX *prov_ctx(void)
{
    OSSL_LIB_CTX *lc = OSSL_LIB_CTX_new();

    if (!lc || !(p_tpm2 = OSSL_PROVIDER_load(lc, "tpm2")) ||
        !(p_dflt = OSSL_PROVIDER_load(lc, "default"))) {
        say("cannot load the tpm2 and default providers (OPENSSL_MODULES?)");
        ERR_print_errors_fp(stderr);
        OSSL_PROVIDER_unload(p_tpm2);
        OSSL_LIB_CTX_free(lc);
        return NULL;
    }
    return lc;
}

/* Unload both providers (the tpm2 teardown closes the store and flushes what it loaded
 * into the TPM: OSSL_LIB_CTX_free alone leaves a provider loaded with
 * OSSL_PROVIDER_load in place) and free the context. */
static void prov_ctx_free(OSSL_LIB_CTX *lc)
{
    if (!lc)
        return;
    OSSL_PROVIDER_unload(p_tpm2);
    OSSL_PROVIDER_unload(p_dflt);
    p_tpm2 = p_dflt = NULL;
    OSSL_LIB_CTX_free(lc);
}

static EVP_PKEY *prov_load(OSSL_LIB_CTX *lc, const char *label)
{
    char uri[300];
    EVP_PKEY *pk;

    snprintf(uri, sizeof(uri), "tpmkeys:object=%s", label);
    pk = store_load_key(lc, uri);
    if (!pk) {
        unsigned long e = ERR_peek_last_error();
        char text[256] = "";
        if (e)
            ERR_error_string_n(e, text, sizeof(text));
        say("cannot load %s: %s", uri, text);
    }
    ERR_clear_error();
    return pk;
}

static bool prov_sign_verify(OSSL_LIB_CTX *lc, EVP_PKEY *key, EVP_PKEY *pub, const char *tag,
                             const char *msg)
{
    unsigned char sig[1024];
    size_t slen = sizeof(sig);
    EVP_MD_CTX *s = EVP_MD_CTX_new();
    bool ok = s && EVP_DigestSignInit_ex(s, NULL, "SHA256", lc, NULL, key, NULL) == 1 &&
              EVP_DigestSign(s, sig, &slen, (const unsigned char *)msg, strlen(msg)) == 1;

    if (!ok) {
        unsigned long e = ERR_peek_last_error();
        char text[256] = "";
        if (e)
            ERR_error_string_n(e, text, sizeof(text));
        say("%s: signing failed: %s", tag, text);
    } else if (!(ok = verify(lc, pub, msg, sig, slen, false))) {
        say("%s: the signature does not verify", tag);
    }
    EVP_MD_CTX_free(s);
    ERR_clear_error();
    return ok;
}

static int cmd_prov_sign(const char *label, double secs)
{
    OSSL_LIB_CTX *lc = prov_ctx();
    EVP_PKEY *pub = lc ? read_pub(lc, label) : NULL, *key = NULL;
    long sigs = 0, fails = 0, loads = 0;
    double end;

    if (!pub) {
        prov_ctx_free(lc);
        return 1;
    }
    end = now() + secs;
    while (now() < end) {
        char msg[96];
        if (sigs % 10 == 0) {
            /* Again from the store, which other processes are changing. */
            EVP_PKEY_free(key);
            key = prov_load(lc, label);
            loads++;
            if (!key) {
                fails++;
                sigs++;
                continue;
            }
        }
        snprintf(msg, sizeof(msg), "provider %s pid %ld sig %ld", label, (long)getpid(), sigs);
        if (!prov_sign_verify(lc, key, pub, label, msg))
            fails++;
        sigs++;
    }
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    prov_ctx_free(lc);
    printf("prov-sign %s: %ld signatures, %ld loads, %ld failures\n", label, sigs, loads, fails);
    return fails || !sigs;
}

/* ------------------------------------------------------------------ threads */

struct thr {
    pthread_t id;
    int no;
    const char *own;
    long sigs, fails;
};

static const char *shared_label;
static int rounds;
static CK_SLOT_ID thr_slot;
static EVP_PKEY *shared_pub, *shared_key;
static OSSL_LIB_CTX *thr_lc;

/* The CKA_PUBLIC_KEY_INFO of the object must be the exported public key. */
static bool p11_spki_matches(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, EVP_PKEY *pub)
{
    uint8_t spki[1024];
    unsigned char *want = NULL;
    CK_ATTRIBUTE a = { CKA_PUBLIC_KEY_INFO, spki, sizeof(spki) };
    int wlen = i2d_PUBKEY(pub, &want);
    bool ok = f->C_GetAttributeValue(s, h, &a, 1) == CKR_OK && wlen > 0 &&
              a.ulValueLen == (CK_ULONG)wlen && !memcmp(spki, want, (size_t)wlen);

    OPENSSL_free(want);
    return ok;
}

static void *p11_thread(void *arg)
{
    struct thr *t = arg;
    CK_SESSION_HANDLE s;
    EVP_PKEY *own = read_pub(NULL, t->own);
    CK_RV rv;

    if (!own || (rv = f->C_OpenSession(thr_slot, CKF_SERIAL_SESSION, NULL, NULL, &s)) != CKR_OK) {
        say("thread %d: no public key or no session", t->no);
        EVP_PKEY_free(own);
        t->fails++;
        return NULL;
    }
    for (int i = 0; i < rounds; i++) {
        char msg[96];
        CK_OBJECT_HANDLE h;

        snprintf(msg, sizeof(msg), "p11 thread %d round %d shared", t->no, i);
        t->fails += !p11_sign_verify(s, shared_label, shared_pub, msg);
        snprintf(msg, sizeof(msg), "p11 thread %d round %d own", t->no, i);
        t->fails += !p11_sign_verify(s, t->own, own, msg);
        t->sigs += 2;
        if (p11_find_key(s, t->own, &h) != CKR_OK || !p11_spki_matches(s, h, own)) {
            say("thread %d: CKA_PUBLIC_KEY_INFO of %s is not its public key", t->no, t->own);
            t->fails++;
        }
        if (p11_list_all(s) < 0)
            t->fails++;
    }
    f->C_CloseSession(s);
    EVP_PKEY_free(own);
    return NULL;
}

static void *prov_thread(void *arg)
{
    struct thr *t = arg;
    EVP_PKEY *pub = read_pub(thr_lc, t->own), *key = prov_load(thr_lc, t->own);
    char tag[64];

    if (!pub || !key) {
        t->fails++;
        goto out;
    }
    for (int i = 0; i < rounds; i++) {
        char msg[96];

        snprintf(tag, sizeof(tag), "thread %d shared", t->no);
        snprintf(msg, sizeof(msg), "provider thread %d round %d shared", t->no, i);
        t->fails += !prov_sign_verify(thr_lc, shared_key, shared_pub, tag, msg);
        snprintf(tag, sizeof(tag), "thread %d own %s", t->no, t->own);
        snprintf(msg, sizeof(msg), "provider thread %d round %d own", t->no, i);
        t->fails += !prov_sign_verify(thr_lc, key, pub, tag, msg);
        t->sigs += 2;
    }
out:
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    return NULL;
}

/* Start one thread per own label, join them, print the summary. */
static int run_threads(const char *what, void *(*fn)(void *), int n, char **own)
{
    struct thr *t = calloc((size_t)n, sizeof(*t));
    long sigs = 0, fails = 0;
    double t0 = now();
    int started = 0;

    if (!t)
        return 1;
    for (int i = 0; i < n; i++) {
        t[i].no = i;
        t[i].own = own[i];
        if (pthread_create(&t[i].id, NULL, fn, &t[i]) != 0) {
            say("pthread_create failed");
            fails++;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        pthread_join(t[i].id, NULL);
        sigs += t[i].sigs;
        fails += t[i].fails;
    }
    free(t);
    printf("%s: %d threads, %ld signatures in %.1f s, %ld failures\n", what, started, sigs,
           now() - t0, fails);
    return fails || !sigs;
}

static int cmd_p11_threads(const char *module, const char *token, int n, char **own)
{
    CK_RV rv;
    int rc;

    if (!(shared_pub = read_pub(NULL, shared_label)) || !p11_load(module))
        return 1;
    if ((rv = p11_init()) != CKR_OK) {
        say("C_Initialize(CKF_OS_LOCKING_OK): CKR 0x%lx", (unsigned long)rv);
        return 1;
    }
    if (!p11_slot(token, &thr_slot))
        return 1;
    rc = run_threads("p11-threads", p11_thread, n, own);
    f->C_Finalize(NULL);
    EVP_PKEY_free(shared_pub);
    dlclose(lib);
    return rc;
}

static int cmd_prov_threads(int n, char **own)
{
    int rc = 1;

    if (!(thr_lc = prov_ctx()))
        return 1;
    shared_pub = read_pub(thr_lc, shared_label);
    shared_key = prov_load(thr_lc, shared_label);
    if (shared_pub && shared_key)
        rc = run_threads("prov-threads", prov_thread, n, own);
    EVP_PKEY_free(shared_key);
    EVP_PKEY_free(shared_pub);
    prov_ctx_free(thr_lc);
    return rc;
}

/* ------------------------------------------------------------------ fork */

#define FORK_SIGS 5

/* What the parent does around fork() and what the child must achieve. */
struct fork_mode {
    const char *name;
    bool sign_before;   /* the parent uses the TPM before forking */
    bool close_before;  /* ... and closes the door (C_Finalize / unload) before forking */
    bool close_after;   /* a bare swtpm: the parent lets go of its connection, then waits */
    bool refused;       /* the child cannot reach the TPM: it must get an error at once */
};

static const struct fork_mode fork_modes[] = {
    { "direct", true, false, true, false },
    { "rm", true, false, false, false },
    { "rm-late", false, false, false, false },
    { "rm-closed", true, true, false, false },
    { "refused", true, false, false, true },
};

static const struct fork_mode *fork_mode(const char *name)
{
    for (size_t i = 0; i < sizeof(fork_modes) / sizeof(fork_modes[0]); i++)
        if (!strcmp(fork_modes[i].name, name))
            return &fork_modes[i];
    return NULL;
}

/* Wait for the child; a hang is reported as such. */
static bool child_ok(pid_t pid, const char *what)
{
    int st = 0;

    if (waitpid(pid, &st, 0) < 0) {
        say("waitpid: %s", strerror(errno));
        return false;
    }
    if (WIFSIGNALED(st)) {
        if (WTERMSIG(st) == SIGALRM)
            say("%s: the child hung and was stopped after %d s", what, CHILD_TIMEOUT);
        else
            say("%s: the child died (signal %d)", what, WTERMSIG(st));
        return false;
    }
    if (WEXITSTATUS(st) != 0) {
        say("%s: the child failed (exit %d)", what, WEXITSTATUS(st));
        return false;
    }
    return true;
}

/* A child that cannot reach the TPM must be told so quickly, not left waiting. */
#define REFUSE_MAX_S 5.0

static int refused_ok(bool failed, double t0, const char *what)
{
    double took = now() - t0;
    if (!failed) {
        say("child: %s worked, expected a refusal", what);
        return 1;
    }
    if (took > REFUSE_MAX_S) {
        say("child: %s failed, but only after %.1f s", what, took);
        return 1;
    }
    say("child: %s refused after %.2f s, as expected", what, took);
    return 0;
}

/* sign + verify n times in one session of the module; returns the failures. */
static int p11_sign_n(const char *token, const char *label, EVP_PKEY *pub, const char *tag,
                      int n, long *good)
{
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE s;
    int fails = 0;

    if (!p11_slot(token, &slot) ||
        f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK) {
        say("%s: no session", tag);
        return n;
    }
    for (int i = 0; i < n; i++) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s pid %ld signature %d", tag, (long)getpid(), i);
        if (p11_sign_verify(s, label, pub, msg))
            (*good)++;
        else
            fails++;
    }
    f->C_CloseSession(s);
    return fails;
}

static void p11_fork_child(const struct fork_mode *m, const char *token, const char *label,
                           EVP_PKEY *pub)
{
    int cf = 0;
    long good = 0;
    CK_ULONG n;
    CK_RV rv;

    alarm(CHILD_TIMEOUT);
    /* The parent's initialisation does not carry over (PKCS#11 2.40, 6.7.7). */
    if ((rv = f->C_GetSlotList(CK_TRUE, NULL, &n)) != CKR_CRYPTOKI_NOT_INITIALIZED) {
        say("child: before C_Initialize: CKR 0x%lx, expected NOT_INITIALIZED",
            (unsigned long)rv);
        cf++;
    }
    if ((rv = p11_init()) != CKR_OK) {
        say("child: C_Initialize: CKR 0x%lx", (unsigned long)rv);
        _exit(1);
    }
    if (m->refused) {
        CK_SLOT_ID slot;
        CK_SESSION_HANDLE s;
        CK_OBJECT_HANDLE h;
        CK_MECHANISM mech = { CKM_ECDSA_SHA256, NULL, 0 };
        double t0 = now();
        /* The store still answers; the TPM must refuse with CKR_DEVICE_ERROR. */
        if (!p11_slot(token, &slot) ||
            f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
            p11_find_key(s, label, &h) != CKR_OK)
            _exit(1);
        rv = f->C_SignInit(s, &mech, h);
        if (rv == CKR_OK) {
            uint8_t sig[256];
            CK_ULONG slen = sizeof(sig);
            rv = f->C_Sign(s, (CK_BYTE_PTR)"x", 1, sig, &slen);
        }
        cf += refused_ok(rv == CKR_DEVICE_ERROR, t0, "C_Sign");
        say("child: C_Sign returned CKR 0x%lx", (unsigned long)rv);
    } else {
        cf += p11_sign_n(token, label, pub, "child", FORK_SIGS, &good);
        say("child: %ld signatures verified, %d failures", good, cf);
    }
    if ((rv = f->C_Finalize(NULL)) != CKR_OK)
        cf++;
    _exit(cf ? 1 : 0);
}

static int cmd_p11_fork(const char *module, const char *token, const char *label,
                        const struct fork_mode *m)
{
    EVP_PKEY *pub = read_pub(NULL, label);
    int fails = 0;
    long good = 0;
    pid_t pid;

    if (!pub || !p11_load(module) || p11_init() != CKR_OK)
        return 1;
    if (m->sign_before)
        fails += p11_sign_n(token, label, pub, "parent before fork", FORK_SIGS, &good);
    if (m->close_before)
        f->C_Finalize(NULL);
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        say("fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0)
        p11_fork_child(m, token, label, pub);
    if (m->close_before && p11_init() != CKR_OK)
        fails++;
    fails += p11_sign_n(token, label, pub, "parent after fork", FORK_SIGS, &good);
    if (m->close_after)
        f->C_Finalize(NULL);   /* a bare swtpm serves one connection at a time */
    fails += !child_ok(pid, "p11-fork");
    if (m->close_after && p11_init() != CKR_OK)
        fails++;
    fails += p11_sign_n(token, label, pub, "parent after the child", FORK_SIGS, &good);
    f->C_Finalize(NULL);
    EVP_PKEY_free(pub);
    printf("p11-fork %s (%s): %ld signatures verified in the parent, %d failures\n", label,
           m->name, good, fails);
    return fails != 0;
}

static int prov_sign_n(OSSL_LIB_CTX *lc, EVP_PKEY *key, EVP_PKEY *pub, const char *tag, int n,
                       long *good)
{
    int fails = 0;

    for (int i = 0; i < n; i++) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s pid %ld signature %d", tag, (long)getpid(), i);
        if (prov_sign_verify(lc, key, pub, tag, msg))
            (*good)++;
        else
            fails++;
    }
    return fails;
}

/* A library context with the providers and the key (and its public key) loaded. */
static bool prov_open(const char *label, OSSL_LIB_CTX **lc, EVP_PKEY **key, EVP_PKEY **pub)
{
    *lc = prov_ctx();
    *pub = *lc ? read_pub(*lc, label) : NULL;
    *key = *pub ? prov_load(*lc, label) : NULL;
    return *key != NULL;
}

static void prov_close(OSSL_LIB_CTX **lc, EVP_PKEY **key, EVP_PKEY **pub)
{
    EVP_PKEY_free(*key);
    EVP_PKEY_free(*pub);
    prov_ctx_free(*lc);
    *key = *pub = NULL;
    *lc = NULL;
}

static void prov_fork_child(const struct fork_mode *m, OSSL_LIB_CTX *lc, EVP_PKEY *key,
                            EVP_PKEY *pub)
{
    int cf;
    long good = 0;

    alarm(CHILD_TIMEOUT);
    if (m->refused) {
        double t0 = now();
        unsigned char sig[1024];
        size_t slen = sizeof(sig);
        EVP_MD_CTX *s = EVP_MD_CTX_new();
        bool ok = s && EVP_DigestSignInit_ex(s, NULL, "SHA256", lc, NULL, key, NULL) == 1 &&
                  EVP_DigestSign(s, sig, &slen, (const unsigned char *)"x", 1) == 1;
        unsigned long e = ERR_peek_last_error();
        char text[256] = "";
        if (e)
            ERR_error_string_n(e, text, sizeof(text));
        cf = refused_ok(!ok && e, t0, "EVP_DigestSign");
        say("child: %s", text);
        EVP_MD_CTX_free(s);
    } else {
        /* The key loaded before the fork, used as is: the provider reconnects. */
        cf = prov_sign_n(lc, key, pub, "child", FORK_SIGS, &good);
        say("child: %ld signatures verified, %d failures", good, cf);
    }
    /* Flush what the child loaded: a bare swtpm keeps it after the child is gone. */
    prov_close(&lc, &key, &pub);
    _exit(cf ? 1 : 0);
}

static int cmd_prov_fork(const char *label, const struct fork_mode *m)
{
    OSSL_LIB_CTX *lc;
    EVP_PKEY *key, *pub;
    int fails = 0;
    long good = 0;
    pid_t pid;

    if (!prov_open(label, &lc, &key, &pub))
        return 1;
    if (m->sign_before)
        fails += prov_sign_n(lc, key, pub, "parent before fork", FORK_SIGS, &good);
    if (m->close_before) {
        prov_close(&lc, &key, &pub);
        /* The child gets a context with the key loaded (from the store), not yet used. */
        if (!prov_open(label, &lc, &key, &pub))
            return 1;
    }
    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        say("fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0)
        prov_fork_child(m, lc, key, pub);
    fails += prov_sign_n(lc, key, pub, "parent after fork", FORK_SIGS, &good);
    if (m->close_after)
        prov_close(&lc, &key, &pub);  /* a bare swtpm serves one connection at a time */
    fails += !child_ok(pid, "prov-fork");
    if (m->close_after && !prov_open(label, &lc, &key, &pub))
        return 1;
    fails += prov_sign_n(lc, key, pub, "parent after the child", FORK_SIGS, &good);
    prov_close(&lc, &key, &pub);
    printf("prov-fork %s (%s): %ld signatures verified in the parent, %d failures\n", label,
           m->name, good, fails);
    return fails != 0;
}

/* ------------------------------------------------------------------ main */

static int usage(void)
{
    fprintf(stderr,
            "usage: test_conc p11-sign MODULE TOKEN LABEL SECONDS\n"
            "       test_conc prov-sign LABEL SECONDS\n"
            "       test_conc p11-threads MODULE TOKEN ROUNDS SHARED OWN...\n"
            "       test_conc prov-threads ROUNDS SHARED OWN...\n"
            "       test_conc p11-fork MODULE TOKEN LABEL MODE\n"
            "       test_conc prov-fork LABEL MODE\n"
            "MODE: direct, rm, rm-late, rm-closed, refused\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(cmd, "p11-sign") && argc == 6)
        return cmd_p11_sign(argv[2], argv[3], argv[4], atof(argv[5]));
    if (!strcmp(cmd, "prov-sign") && argc == 4)
        return cmd_prov_sign(argv[2], atof(argv[3]));
    if (!strcmp(cmd, "p11-threads") && argc >= 7) {
        rounds = atoi(argv[4]);
        shared_label = argv[5];
        return cmd_p11_threads(argv[2], argv[3], argc - 6, argv + 6);
    }
    if (!strcmp(cmd, "prov-threads") && argc >= 5) {
        rounds = atoi(argv[2]);
        shared_label = argv[3];
        return cmd_prov_threads(argc - 4, argv + 4);
    }
    if (!strcmp(cmd, "p11-fork") && argc == 6 && fork_mode(argv[5]))
        return cmd_p11_fork(argv[2], argv[3], argv[4], fork_mode(argv[5]));
    if (!strcmp(cmd, "prov-fork") && argc == 4 && fork_mode(argv[3]))
        return cmd_prov_fork(argv[2], fork_mode(argv[3]));
    return usage();
}
