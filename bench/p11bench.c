/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A PKCS#11 signing benchmark that runs the same code against any module
 * (tpmkeys-pkcs11.so, Debian's libtpm2_pkcs11.so, ...).
 *
 *   p11bench --module PATH --label LABEL [--token TOKEN] [--mech ecdsa|rsa]
 *            [--pin-env VAR] [--seconds S] [--start-at T] [--cold N] [--finds N]
 *
 * --cold N    N times in this process: dlopen + C_GetFunctionList, C_Initialize,
 *             C_GetSlotList + C_OpenSession, C_Login, find the private key by label;
 *             then C_Finalize + dlclose.  Each phase in milliseconds: the first
 *             repetition (the only cold one, see cold()) and the median of the others.
 * --finds N   N times, with the module initialised and logged in: C_FindObjectsInit
 *             (CKA_CLASS private key + CKA_LABEL) + C_FindObjects + C_FindObjectsFinal.
 * --seconds S the signing loop: C_SignInit + C_Sign (CKM_ECDSA of a SHA-256 digest, or
 *             CKM_SHA256_RSA_PKCS) for S seconds (0: no loop).
 * The PIN comes from the environment variable named by --pin-env (never from argv);
 * without it there is no login.
 *
 * Prints "RESULT phase=... name=value ..." lines.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "common.h"

typedef struct {
    const char *module, *label, *token, *pin;
    int ec;
} p11opts;

typedef struct {
    void *dl;
    CK_FUNCTION_LIST_PTR f;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key;
} p11;

static void ck(CK_RV rv, const char *what)
{
    if (rv != CKR_OK)
        bench_die("%s: CK_RV 0x%lx", what, (unsigned long)rv);
}

static void p11_load(p11 *p, const p11opts *o)
{
    CK_C_GetFunctionList gfl;

    p->dl = dlopen(o->module, RTLD_NOW | RTLD_LOCAL);
    if (!p->dl)
        bench_die("dlopen %s: %s", o->module, dlerror());
    *(void **)&gfl = dlsym(p->dl, "C_GetFunctionList");
    if (!gfl)
        bench_die("%s has no C_GetFunctionList", o->module);
    ck(gfl(&p->f), "C_GetFunctionList");
}

static void p11_init(p11 *p)
{
    CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
    ck(p->f->C_Initialize(&args), "C_Initialize");
}

static int blank_eq(const CK_UTF8CHAR *field, size_t n, const char *s)
{
    size_t l = strlen(s);
    if (l > n || memcmp(field, s, l))
        return 0;
    for (size_t i = l; i < n; i++)
        if (field[i] != ' ')
            return 0;
    return 1;
}

/* The first slot with a token (of the given label) and a read-write session on it. */
static void p11_open(p11 *p, const p11opts *o)
{
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;

    ck(p->f->C_GetSlotList(CK_TRUE, slots, &n), "C_GetSlotList");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        if (o->token) {
            ck(p->f->C_GetTokenInfo(slots[i], &ti), "C_GetTokenInfo");
            if (!blank_eq(ti.label, sizeof(ti.label), o->token))
                continue;
        }
        ck(p->f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                               &p->s),
           "C_OpenSession");
        return;
    }
    bench_die("no token %s in %s", o->token ? o->token : "at all", o->module);
}

static void p11_login(p11 *p, const p11opts *o)
{
    if (o->pin)
        ck(p->f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR_PTR)o->pin, strlen(o->pin)), "C_Login");
}

static void p11_find(p11 *p, const p11opts *o)
{
    CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
    CK_ATTRIBUTE tmpl[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, (void *)o->label, strlen(o->label) },
    };
    CK_OBJECT_HANDLE found[4];
    CK_ULONG n = 0;

    ck(p->f->C_FindObjectsInit(p->s, tmpl, 2), "C_FindObjectsInit");
    ck(p->f->C_FindObjects(p->s, found, 4, &n), "C_FindObjects");
    ck(p->f->C_FindObjectsFinal(p->s), "C_FindObjectsFinal");
    if (n != 1)
        bench_die("%lu private keys labelled %s (expected one)", (unsigned long)n, o->label);
    p->key = found[0];
}

static void p11_close(p11 *p)
{
    ck(p->f->C_Finalize(NULL), "C_Finalize");
    dlclose(p->dl);
    memset(p, 0, sizeof(*p));
}

static double ms_since(double *t)
{
    double now = bench_now(), d = (now - *t) * 1e3;
    *t = now;
    return d;
}

/* The first repetition is the only truly cold one: the module stays mapped after
 * dlclose (RTLD_NODELETE) and the libraries under it keep what they set up, so the
 * later repetitions measure a warm reload.  Each phase is printed for the first
 * repetition (first_*) and as the median of the others (warm_*, when reps > 1); the
 * driver runs --cold 1 in fresh processes for the cold figures. */
static void cold(const p11opts *o, int reps)
{
    enum { LOAD, INIT, OPEN, LOGIN, FIND, TOTAL, NPH };
    static const char *names[NPH] = { "load", "init", "open", "login", "find", "total" };
    double *v[NPH];

    for (int k = 0; k < NPH; k++)
        if (!(v[k] = calloc((size_t)reps, sizeof(double))))
            bench_die("out of memory");
    for (int i = 0; i < reps; i++) {
        p11 p;
        double t = bench_now(), start = t;
        p11_load(&p, o);
        v[LOAD][i] = ms_since(&t);
        p11_init(&p);
        v[INIT][i] = ms_since(&t);
        p11_open(&p, o);
        v[OPEN][i] = ms_since(&t);
        p11_login(&p, o);
        v[LOGIN][i] = ms_since(&t);
        p11_find(&p, o);
        v[FIND][i] = ms_since(&t);
        v[TOTAL][i] = (t - start) * 1e3;
        p11_close(&p);
    }
    printf("RESULT phase=cold reps=%d", reps);
    for (int k = 0; k < NPH; k++)
        printf(" first_%s_ms=%.3f", names[k], v[k][0]);
    for (int k = 0; k < NPH && reps > 1; k++)
        printf(" warm_%s_ms=%.3f", names[k], bench_median(v[k] + 1, (size_t)reps - 1));
    printf("\n");
    for (int k = 0; k < NPH; k++)
        free(v[k]);
}

static void finds(p11 *p, const p11opts *o, int reps)
{
    double *v = calloc((size_t)reps, sizeof(double));
    if (!v)
        bench_die("out of memory");
    for (int i = 0; i < reps; i++) {
        double t = bench_now();
        p11_find(p, o);
        v[i] = ms_since(&t);
    }
    printf("RESULT phase=find reps=%d find_ms=%.3f\n", reps, bench_median(v, (size_t)reps));
    free(v);
}

static void sign_loop(p11 *p, const p11opts *o, const bench_opts *bo)
{
    CK_MECHANISM mech = { o->ec ? CKM_ECDSA : CKM_SHA256_RSA_PKCS, NULL, 0 };
    CK_BYTE data[32], sig[1024];
    long ops = 0;
    double t0, t1;

    memset(data, 0xa5, sizeof(data));
    bench_wait_until(bo->start_at);
    t0 = t1 = bench_now();
    while (t1 - t0 < bo->seconds || ops < 3) {
        CK_ULONG siglen = sizeof(sig);
        ck(p->f->C_SignInit(p->s, &mech, p->key), "C_SignInit");
        ck(p->f->C_Sign(p->s, data, sizeof(data), sig, &siglen), "C_Sign");
        data[ops % 32]++;
        ops++;
        t1 = bench_now();
    }
    printf("RESULT phase=sign ops=%ld seconds=%.3f rate=%.1f\n", ops, t1 - t0,
           (double)ops / (t1 - t0));
}

int main(int argc, char **argv)
{
    p11opts o = { .label = NULL, .ec = 1 };
    bench_opts bo = { .seconds = 3 };
    int nfinds = 0;
    const char *pin_env = NULL;
    p11 p;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--module"))
            o.module = argv[i + 1];
        else if (!strcmp(argv[i], "--label"))
            o.label = argv[i + 1];
        else if (!strcmp(argv[i], "--token"))
            o.token = argv[i + 1];
        else if (!strcmp(argv[i], "--mech"))
            o.ec = !strcmp(argv[i + 1], "ecdsa");
        else if (!strcmp(argv[i], "--pin-env"))
            pin_env = argv[i + 1];
        else if (!strcmp(argv[i], "--finds"))
            nfinds = atoi(argv[i + 1]);
        else if (!bench_common_opt(&bo, argv[i], argv[i + 1]))
            bench_die("unknown option %s", argv[i]);
    }
    if (!o.module || !o.label)
        bench_die("usage: p11bench --module PATH --label LABEL [options]");
    if (pin_env && !(o.pin = getenv(pin_env)))
        bench_die("--pin-env %s: not set", pin_env);

    if (bo.cold > 0)
        cold(&o, bo.cold);
    if (!nfinds && bo.seconds <= 0)
        return 0;
    p11_load(&p, &o);
    p11_init(&p);
    p11_open(&p, &o);
    p11_login(&p, &o);
    p11_find(&p, &o);
    if (nfinds > 0)
        finds(&p, &o, nfinds);
    if (bo.seconds > 0)
        sign_loop(&p, &o, &bo);
    p11_close(&p);
    return 0;
}
