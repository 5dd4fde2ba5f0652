/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The floor: the fastest a signature can go through tss2-esys on this TPM.  One
 * process, one connection, a key created under the SRK (0x81000001) and loaded once,
 * then TPM2_Sign of a SHA-256 digest in a loop.  Nothing of tpmkeys is used.
 *
 *   floor --tcti CONF --alg rsa|ec [--session password|hmac] [--seconds S] [--start-at T]
 *         [--keep FILE]
 *
 * password: the key has an empty auth value, the command carries a password session
 *           (nothing secret on the bus, no session crypto).
 * hmac:     the key has a 32-byte auth value proven through an HMAC session salted to
 *           the SRK (the auth never crosses the bus): the floor for a PIN-protected key
 *           through ESYS's own session code.
 *
 * --keep FILE: the key's blobs are written to FILE on first use and loaded from it
 * afterwards (RSA key generation on a busy simulator takes seconds).
 *
 * Prints "RESULT ops=N seconds=S rate=R".
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "common.h"

#define SRK 0x81000001u

static void check(TSS2_RC r, const char *what)
{
    if (r != TSS2_RC_SUCCESS)
        bench_die("%s: %s", what, Tss2_RC_Decode(r));
}

static TPM2B_PUBLIC key_template(int ec)
{
    TPM2B_PUBLIC t = { .size = 0 };
    TPMT_PUBLIC *p = &t.publicArea;

    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_NODA;
    if (ec) {
        p->type = TPM2_ALG_ECC;
        p->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
        p->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    } else {
        p->type = TPM2_ALG_RSA;
        p->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        p->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        p->parameters.rsaDetail.keyBits = 2048;
        p->parameters.rsaDetail.exponent = 0;
    }
    return t;
}

/* The key's blobs from FILE (1), or 0 when there is no such file. */
static int blobs_read(const char *file, TPM2B_PUBLIC **pub, TPM2B_PRIVATE **priv)
{
    uint8_t buf[4096];
    size_t len, off = 0;
    FILE *f = file ? fopen(file, "rb") : NULL;

    if (!f)
        return 0;
    len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    *pub = calloc(1, sizeof(**pub));
    *priv = calloc(1, sizeof(**priv));
    if (!*pub || !*priv)
        bench_die("out of memory");
    check(Tss2_MU_TPM2B_PUBLIC_Unmarshal(buf, len, &off, *pub), "reading the key file");
    check(Tss2_MU_TPM2B_PRIVATE_Unmarshal(buf, len, &off, *priv), "reading the key file");
    return 1;
}

static void blobs_write(const char *file, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv)
{
    uint8_t buf[4096];
    size_t off = 0;
    FILE *f;

    if (!file)
        return;
    check(Tss2_MU_TPM2B_PUBLIC_Marshal(pub, buf, sizeof(buf), &off), "marshalling");
    check(Tss2_MU_TPM2B_PRIVATE_Marshal(priv, buf, sizeof(buf), &off), "marshalling");
    if (!(f = fopen(file, "wb")) || fwrite(buf, 1, off, f) != off || fclose(f))
        bench_die("cannot write %s", file);
}

int main(int argc, char **argv)
{
    const char *tcti = NULL, *alg = "ec", *session = "password", *keep = NULL;
    bench_opts o = { .seconds = 3 };
    TSS2_TCTI_CONTEXT *tctx = NULL;
    ESYS_CONTEXT *esys = NULL;
    ESYS_TR srk = ESYS_TR_NONE, key = ESYS_TR_NONE, sess = ESYS_TR_PASSWORD;
    TPM2B_SENSITIVE_CREATE sens = { .size = 0 };
    TPM2B_DATA outside = { .size = 0 };
    TPML_PCR_SELECTION pcrs = { .count = 0 };
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL, tmpl;
    TPMT_SIG_SCHEME scheme = { .scheme = TPM2_ALG_NULL };
    TPMT_TK_HASHCHECK ticket = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
    TPM2B_DIGEST digest = { .size = 32 };
    TPM2B_AUTH auth = { .size = 0 };
    int ec, hmac;
    long ops = 0;
    double t0, t1;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--tcti"))
            tcti = argv[i + 1];
        else if (!strcmp(argv[i], "--alg"))
            alg = argv[i + 1];
        else if (!strcmp(argv[i], "--session"))
            session = argv[i + 1];
        else if (!strcmp(argv[i], "--keep"))
            keep = argv[i + 1];
        else if (!bench_common_opt(&o, argv[i], argv[i + 1]))
            bench_die("unknown option %s", argv[i]);
    }
    ec = !strcmp(alg, "ec");
    hmac = !strcmp(session, "hmac");
    if (!ec && strcmp(alg, "rsa"))
        bench_die("--alg: rsa or ec");

    check(Tss2_TctiLdr_Initialize(tcti, &tctx), "TCTI");
    check(Esys_Initialize(&esys, tctx, NULL), "Esys_Initialize");
    check(Esys_TR_FromTPMPublic(esys, SRK, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &srk),
          "SRK at 0x81000001 (run tpmkeys init)");

    if (hmac) {
        auth.size = 32;
        memset(auth.buffer, 0x5a, auth.size);
        sens.sensitive.userAuth = auth;
    }
    tmpl = key_template(ec);
    if (!blobs_read(keep, &pub, &priv)) {
        check(Esys_Create(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sens, &tmpl,
                          &outside, &pcrs, &priv, &pub, NULL, NULL, NULL),
              "TPM2_Create");
        blobs_write(keep, pub, priv);
    }
    check(Esys_Load(esys, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, priv, pub, &key),
          "TPM2_Load");
    check(Esys_TR_SetAuth(esys, key, &auth), "SetAuth");
    if (hmac) {
        /* The same kind of session tpmkeys uses for PIN keys: HMAC, salted to the SRK,
         * AES-128-CFB available for parameter encryption (not needed by TPM2_Sign). */
        TPMT_SYM_DEF sym = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128,
                             .mode.aes = TPM2_ALG_CFB };
        check(Esys_StartAuthSession(esys, srk, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                    ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256,
                                    &sess),
              "StartAuthSession");
        check(Esys_TRSess_SetAttributes(esys, sess, TPMA_SESSION_CONTINUESESSION, 0xff),
              "session attributes");
    }
    scheme.scheme = ec ? TPM2_ALG_ECDSA : TPM2_ALG_RSASSA;
    scheme.details.any.hashAlg = TPM2_ALG_SHA256;
    memset(digest.buffer, 0xa5, digest.size);

    bench_wait_until(o.start_at);
    t0 = t1 = bench_now();
    while (t1 - t0 < o.seconds || ops < 3) {
        TPMT_SIGNATURE *sig = NULL;
        check(Esys_Sign(esys, key, sess, ESYS_TR_NONE, ESYS_TR_NONE, &digest, &scheme, &ticket,
                        &sig),
              "TPM2_Sign");
        Esys_Free(sig);
        digest.buffer[ops % 32]++;
        ops++;
        t1 = bench_now();
    }
    printf("RESULT ops=%ld seconds=%.3f rate=%.1f\n", ops, t1 - t0, (double)ops / (t1 - t0));

    if (sess != ESYS_TR_PASSWORD)
        Esys_FlushContext(esys, sess);
    Esys_FlushContext(esys, key);
    Esys_TR_Close(esys, &srk);
    free(priv);   /* Esys_Free is free() */
    free(pub);
    Esys_Finalize(&esys);
    Tss2_TctiLdr_Finalize(&tctx);
    return 0;
}
