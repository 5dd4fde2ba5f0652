/* SPDX-License-Identifier: BSD-3-Clause */
/* Buffers, secrets and the algorithm table. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <dlfcn.h>

#include <openssl/crypto.h>

#include "tpmkeys.h"

void tk_buf_free(tk_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

tk_rc tk_buf_set(tk_buf *b, const void *data, size_t len)
{
    uint8_t *p = malloc(len ? len : 1);
    if (!p)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    if (len)
        memcpy(p, data, len);
    tk_buf_free(b);
    b->data = p;
    b->len = len;
    return TK_OK;
}

void tk_secret_clear(tk_secret *s)
{
    if (!s)
        return;
    OPENSSL_cleanse(s->data, sizeof(s->data));
    s->len = 0;
}

tk_rc tk_secret_set(tk_secret *s, const void *data, size_t len)
{
    if (len > sizeof(s->data))
        return tk_fail(TK_ERR_INVALID, "secret too long (%zu bytes, at most %d)", len,
                       TK_SECRET_MAX);
    tk_secret_clear(s);
    if (len)
        memcpy(s->data, data, len);
    s->len = len;
    return TK_OK;
}

static const struct {
    tk_alg alg;
    const char *name;
    tk_keytype type;
    int bits;
    TPM2_ECC_CURVE curve;
} algs[] = {
    { TK_ALG_RSA2048, "rsa2048", TK_KEY_RSA, 2048, TPM2_ECC_NONE },
    { TK_ALG_RSA3072, "rsa3072", TK_KEY_RSA, 3072, TPM2_ECC_NONE },
    { TK_ALG_RSA4096, "rsa4096", TK_KEY_RSA, 4096, TPM2_ECC_NONE },
    { TK_ALG_ECC_P256, "ecc-p256", TK_KEY_EC, 256, TPM2_ECC_NIST_P256 },
    { TK_ALG_ECC_P384, "ecc-p384", TK_KEY_EC, 384, TPM2_ECC_NIST_P384 },
    { TK_ALG_ECC_P521, "ecc-p521", TK_KEY_EC, 521, TPM2_ECC_NIST_P521 },
};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

tk_keytype tk_alg_type(tk_alg a)
{
    for (size_t i = 0; i < NALGS; i++)
        if (algs[i].alg == a)
            return algs[i].type;
    return 0;
}

int tk_alg_bits(tk_alg a)
{
    for (size_t i = 0; i < NALGS; i++)
        if (algs[i].alg == a)
            return algs[i].bits;
    return 0;
}

TPM2_ECC_CURVE tk_alg_curve(tk_alg a)
{
    for (size_t i = 0; i < NALGS; i++)
        if (algs[i].alg == a)
            return algs[i].curve;
    return TPM2_ECC_NONE;
}

const char *tk_alg_name(tk_alg a)
{
    for (size_t i = 0; i < NALGS; i++)
        if (algs[i].alg == a)
            return algs[i].name;
    return "unknown";
}

tk_alg tk_alg_from_name(const char *name)
{
    if (!name)
        return TK_ALG_NONE;
    for (size_t i = 0; i < NALGS; i++)
        if (!strcmp(algs[i].name, name))
            return algs[i].alg;
    /* Accept the spellings other tools use. */
    if (!strcmp(name, "rsa") || !strcmp(name, "rsa:2048"))
        return TK_ALG_RSA2048;
    if (!strcmp(name, "ecc") || !strcmp(name, "p256") || !strcmp(name, "ecc256") ||
        !strcmp(name, "prime256v1") || !strcmp(name, "P-256"))
        return TK_ALG_ECC_P256;
    if (!strcmp(name, "p384") || !strcmp(name, "ecc384") || !strcmp(name, "secp384r1") ||
        !strcmp(name, "P-384"))
        return TK_ALG_ECC_P384;
    if (!strcmp(name, "p521") || !strcmp(name, "ecc521") || !strcmp(name, "secp521r1") ||
        !strcmp(name, "P-521"))
        return TK_ALG_ECC_P521;
    return TK_ALG_NONE;
}

tk_alg tk_alg_from_public(const TPM2B_PUBLIC *pub)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    if (p->type == TPM2_ALG_RSA) {
        for (size_t i = 0; i < NALGS; i++)
            if (algs[i].type == TK_KEY_RSA && algs[i].bits == p->parameters.rsaDetail.keyBits)
                return algs[i].alg;
    } else if (p->type == TPM2_ALG_ECC) {
        for (size_t i = 0; i < NALGS; i++)
            if (algs[i].type == TK_KEY_EC && algs[i].curve == p->parameters.eccDetail.curveID)
                return algs[i].alg;
    }
    return TK_ALG_NONE;
}

void tk_module_pin(const void *addr)
{
    Dl_info info;

    /* A module unloaded in a forked child would take with it the only references to
     * the connections it inherited and must not close (the parent still uses them),
     * and its exit-time flush would never run: keep it mapped until the process ends. */
    if (dladdr(addr, &info) && info.dli_fname)
        (void)dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
}
