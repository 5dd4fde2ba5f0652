/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * An OpenSSL signing benchmark that runs the same code against any provider
 * (tpmkeys' tpm2, Debian's tpm2-openssl, or default with a software key).
 *
 *   osslbench --provider NAME [--provider NAME...] --key URI|FILE
 *             [--seconds S] [--start-at T] [--cold N]
 *
 * Providers load from OPENSSL_MODULES in the order given, into a library context of
 * their own (no property query: the default configuration).  The key is opened with
 * OSSL_STORE (a URI such as tpmkeys:object=web or handle:0x81000002, or a file: the
 * file loader runs the decoders, e.g. for TSS2 PRIVATE KEY PEM).  A password or PIN
 * asked for through the UI comes from $BENCH_PIN.
 *
 * --cold N    N times: a fresh library context, provider load, key open (ms): the
 *             first repetition (the only cold one, see cold()) and the median of the others.
 * --seconds S EVP_DigestSignInit_ex(SHA-256) + EVP_DigestSign of 32 bytes in a loop.
 *
 * Prints "RESULT phase=... name=value ..." lines.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "common.h"

#define MAXPROV 4

typedef struct {
    const char *prov[MAXPROV];
    int nprov;
    const char *key;
} osslopts;

typedef struct {
    OSSL_LIB_CTX *ctx;
    OSSL_PROVIDER *prov[MAXPROV];
    EVP_PKEY *pkey;
} env;

static void ossl_die(const char *what)
{
    fprintf(stderr, "bench: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int pin_cb(char *buf, int size, int rwflag, void *u)
{
    const char *pin = getenv("BENCH_PIN");
    size_t n;

    (void)rwflag;
    (void)u;
    if (!pin)
        return -1;
    n = strlen(pin);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, pin, n);
    return (int)n;
}

static void env_providers(env *e, const osslopts *o)
{
    if (!(e->ctx = OSSL_LIB_CTX_new()))
        ossl_die("OSSL_LIB_CTX_new");
    for (int i = 0; i < o->nprov; i++)
        if (!(e->prov[i] = OSSL_PROVIDER_load(e->ctx, o->prov[i])))
            ossl_die(o->prov[i]);
}

static void env_key(env *e, const osslopts *o)
{
    UI_METHOD *ui = UI_UTIL_wrap_read_pem_callback(pin_cb, 0);
    OSSL_STORE_CTX *st;

    st = OSSL_STORE_open_ex(o->key, e->ctx, NULL, ui, NULL, NULL, NULL, NULL);
    if (!st)
        ossl_die("OSSL_STORE_open_ex");
    OSSL_STORE_expect(st, OSSL_STORE_INFO_PKEY);
    while (!e->pkey && !OSSL_STORE_eof(st)) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(st);
        if (info && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
            e->pkey = OSSL_STORE_INFO_get1_PKEY(info);
        OSSL_STORE_INFO_free(info);
        if (!info && OSSL_STORE_error(st))
            break;
    }
    OSSL_STORE_close(st);
    UI_destroy_method(ui);
    if (!e->pkey)
        ossl_die("loading the private key");
    ERR_clear_error();
}

static void env_free(env *e, const osslopts *o)
{
    EVP_PKEY_free(e->pkey);
    for (int i = o->nprov - 1; i >= 0; i--)
        OSSL_PROVIDER_unload(e->prov[i]);
    OSSL_LIB_CTX_free(e->ctx);
    memset(e, 0, sizeof(*e));
}

/* As in p11bench: only the first repetition is cold (the provider module stays mapped,
 * tss2 and libcrypto keep what they set up), printed as first_*; the median of the
 * others as warm_*.  libcrypto's own start-up (OPENSSL_init_crypto: every OpenSSL
 * program has paid it before it loads a provider) runs before the clock and is
 * printed on its own (crypto_init_ms). */
static void cold(const osslopts *o, int reps)
{
    enum { LOAD, OPEN, TOTAL, NPH };
    static const char *names[NPH] = { "load", "open", "total" };
    double *v[NPH], t0;

    for (int k = 0; k < NPH; k++)
        if (!(v[k] = calloc((size_t)reps, sizeof(double))))
            bench_die("out of memory");
    t0 = bench_now();
    if (!OPENSSL_init_crypto(OPENSSL_INIT_LOAD_CONFIG, NULL))
        ossl_die("OPENSSL_init_crypto");
    printf("RESULT phase=cold reps=%d crypto_init_ms=%.3f", reps, (bench_now() - t0) * 1e3);
    for (int i = 0; i < reps; i++) {
        env e = { 0 };
        double t1, t2;
        t0 = bench_now();
        env_providers(&e, o);
        t1 = bench_now();
        env_key(&e, o);
        t2 = bench_now();
        v[LOAD][i] = (t1 - t0) * 1e3;
        v[OPEN][i] = (t2 - t1) * 1e3;
        v[TOTAL][i] = (t2 - t0) * 1e3;
        env_free(&e, o);
    }
    for (int k = 0; k < NPH; k++)
        printf(" first_%s_ms=%.3f", names[k], v[k][0]);
    for (int k = 0; k < NPH && reps > 1; k++)
        printf(" warm_%s_ms=%.3f", names[k], bench_median(v[k] + 1, (size_t)reps - 1));
    printf("\n");
    for (int k = 0; k < NPH; k++)
        free(v[k]);
}

static void sign_loop(env *e, const bench_opts *bo)
{
    unsigned char data[32], sig[1024];
    long ops = 0;
    double t0, t1;

    memset(data, 0xa5, sizeof(data));
    bench_wait_until(bo->start_at);
    t0 = t1 = bench_now();
    while (t1 - t0 < bo->seconds || ops < 3) {
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        size_t siglen = sizeof(sig);
        if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", e->ctx, NULL, e->pkey, NULL) != 1 ||
            EVP_DigestSign(md, sig, &siglen, data, sizeof(data)) != 1)
            ossl_die("signing");
        EVP_MD_CTX_free(md);
        data[ops % 32]++;
        ops++;
        t1 = bench_now();
    }
    printf("RESULT phase=sign ops=%ld seconds=%.3f rate=%.1f\n", ops, t1 - t0,
           (double)ops / (t1 - t0));
}

int main(int argc, char **argv)
{
    osslopts o = { .nprov = 0 };
    bench_opts bo = { .seconds = 3 };
    env e = { 0 };

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--provider")) {
            if (o.nprov == MAXPROV)
                bench_die("at most %d providers", MAXPROV);
            o.prov[o.nprov++] = argv[i + 1];
        } else if (!strcmp(argv[i], "--key")) {
            o.key = argv[i + 1];
        } else if (!bench_common_opt(&bo, argv[i], argv[i + 1])) {
            bench_die("unknown option %s", argv[i]);
        }
    }
    if (!o.nprov || !o.key)
        bench_die("usage: osslbench --provider NAME... --key URI|FILE [options]");
    if (bo.cold > 0)
        cold(&o, bo.cold);
    if (bo.seconds <= 0)
        return 0;
    env_providers(&e, &o);
    env_key(&e, &o);
    sign_loop(&e, &bo);
    env_free(&e, &o);
    return 0;
}
