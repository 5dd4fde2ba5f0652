/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * KDFa / KDFe known answers and the duplication outer wrap, unwrapped here in software
 * with the parent's private key the way TPM2_Import does it (TPM 2.0 Part 1, 23.3.2).
 * The KDF vectors come from Python's `cryptography` (KBKDFHMAC counter mode and
 * ConcatKDFHash) and, for a bit length that is not whole bytes, from a hand-written
 * HMAC loop; they are cross-checked against OpenSSL's KBKDF and SSKDF at run time.
 */
#include "config.h"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "crypto_test.h"
#include "internal_crypto.h"
#include "tpmkeys.h"

/* ------------------------------------------------------------------ KDFs */

static void check_hex(const uint8_t *got, size_t len, const char *hex, const char *what)
{
    uint8_t want[128];
    size_t n = hex2bin(hex, want, sizeof(want));

    check(n == len && !memcmp(got, want, len), "%s", what);
}

static void test_kdf_known_answers(void)
{
    uint8_t key[48], name[34], ctx[37], z[48], pu[48], pv[48], out[128];

    for (int i = 0; i < 48; i++)
        key[i] = (uint8_t)i;
    name[0] = 0x00;
    name[1] = 0x0b;
    memset(name + 2, 0xaa, 32);

    check(tk_kdfa(TPM2_ALG_SHA256, key, 32, "STORAGE", name, sizeof(name), NULL, 0, 128, out) ==
              TK_OK, "KDFa SHA-256 runs");
    check_hex(out, 16, "0415b32b6f43896a87e7b29be8f2ac14", "KDFa SHA-256 \"STORAGE\" name, 128 bits");
    check(tk_kdfa(TPM2_ALG_SHA256, key, 32, "INTEGRITY", NULL, 0, NULL, 0, 256, out) == TK_OK,
          "KDFa SHA-256 without context runs");
    check_hex(out, 32, "bacf689f634ece301e1f1b15b072d9c87db6a69585db42b1a0cb8f73ebe2692e",
              "KDFa SHA-256 \"INTEGRITY\", 256 bits");
    for (int i = 0; i < 48; i++)
        key[i] = (uint8_t)(100 + i);
    memcpy(ctx, name, sizeof(name));
    ctx[34] = 1;
    ctx[35] = 2;
    ctx[36] = 3;
    /* contextU || contextV: the split must not matter */
    check(tk_kdfa(TPM2_ALG_SHA384, key, 48, "STORAGE", ctx, 20, ctx + 20, 17, 640, out) == TK_OK,
          "KDFa SHA-384 over two blocks runs");
    check_hex(out, 80,
              "418f8ddcf65d7562447e0bf6191671156368404211f6616e779ba995a87f085d11acb03bdc23eba7"
              "00a43aef59ca56f142b21a70ff60b9149b30f2380311c9ddc520124cf00e9c85b11484cb01b4b759",
              "KDFa SHA-384, 640 bits, context split in two");
    for (int i = 0; i < 20; i++)
        key[i] = (uint8_t)i;
    check(tk_kdfa(TPM2_ALG_SHA1, key, 20, "XYZ", (const uint8_t *)"ctx", 3, NULL, 0, 100, out) ==
              TK_OK, "KDFa SHA-1 with 100 bits runs");
    check_hex(out, 13, "02b088c985fcf407b357d9fe56", "KDFa 100 bits: top 4 bits cleared");

    for (int i = 0; i < 32; i++)
        z[i] = (uint8_t)(200 + i);
    memset(pu, 0x11, 32);
    memset(pv, 0x22, 32);
    check(tk_kdfe(TPM2_ALG_SHA256, z, 32, "DUPLICATE", pu, 32, pv, 32, 256, out) == TK_OK,
          "KDFe SHA-256 runs");
    check_hex(out, 32, "6ad5f1a53fd4531d6c39704e44ce39b8cfd901b7cdcdad41ce9ae09ad2867b11",
              "KDFe SHA-256 \"DUPLICATE\", 256 bits");
    for (int i = 0; i < 48; i++)
        z[i] = (uint8_t)i;
    memset(pu, 0x33, 48);
    memset(pv, 0x44, 48);
    check(tk_kdfe(TPM2_ALG_SHA384, z, 48, "DUPLICATE", pu, 48, pv, 48, 512, out) == TK_OK,
          "KDFe SHA-384 over two blocks runs");
    check_hex(out, 64,
              "105163543a96df5694ef5ed1c4b00923e8a9d3421725bbdabe0810f93d373952"
              "33e6ec53c85d93dfba0e40bd5e683854d17f9989d8b387af740abbc3ad28b4f6",
              "KDFe SHA-384, 512 bits");

    check_rc(tk_kdfa(TPM2_ALG_SM3_256, key, 32, "X", NULL, 0, NULL, 0, 128, out),
             TK_ERR_UNSUPPORTED, "hash", "KDFa with an unknown hash is UNSUPPORTED");
    check_rc(tk_kdfa(TPM2_ALG_SHA256, key, 32, "X", NULL, 0, NULL, 0, 0, out), TK_ERR_INVALID,
             NULL, "KDFa of 0 bits is INVALID");
    check_rc(tk_kdfe(TPM2_ALG_SHA256, z, 0, "X", NULL, 0, NULL, 0, 128, out), TK_ERR_INVALID,
             NULL, "KDFe without a secret is INVALID");
}

/* The same KDFs computed by OpenSSL's own KBKDF (SP800-108) and SSKDF (SP800-56C). */
static bool ossl_kbkdf(const char *md, const uint8_t *key, size_t klen, const char *label,
                       const uint8_t *ctx, size_t clen, uint8_t *out, size_t olen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, (char *)"HMAC", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, klen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)label, strlen(label)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)ctx, clen),
        OSSL_PARAM_construct_end(),
    };
    bool ok = kctx && EVP_KDF_derive(kctx, out, olen, p) == 1;

    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok;
}

static bool ossl_sskdf(const char *md, const uint8_t *z, size_t zlen, const uint8_t *info,
                       size_t ilen, uint8_t *out, size_t olen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SSKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, zlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, ilen),
        OSSL_PARAM_construct_end(),
    };
    bool ok = kctx && EVP_KDF_derive(kctx, out, olen, p) == 1;

    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok;
}

static void test_kdf_cross(void)
{
    uint8_t key[64], ctx[40], a[96], b[96], info[1 + 10 + 64];
    static const struct {
        TPM2_ALG_ID alg;
        const char *md;
    } hashes[] = { { TPM2_ALG_SHA1, "SHA1" },
                   { TPM2_ALG_SHA256, "SHA256" },
                   { TPM2_ALG_SHA384, "SHA384" },
                   { TPM2_ALG_SHA512, "SHA512" } };

    RAND_bytes(key, sizeof(key));
    RAND_bytes(ctx, sizeof(ctx));
    for (size_t i = 0; i < 4; i++) {
        check(tk_kdfa(hashes[i].alg, key, 32, "STORAGE", ctx, sizeof(ctx), NULL, 0, 96 * 8, a) ==
                      TK_OK &&
                  ossl_kbkdf(hashes[i].md, key, 32, "STORAGE", ctx, sizeof(ctx), b, 96) &&
                  !memcmp(a, b, 96),
              "KDFa %s equals OpenSSL's KBKDF on random input", hashes[i].md);
        memcpy(info, "DUPLICATE", 10); /* with its NUL */
        memcpy(info + 10, ctx, 32);
        memcpy(info + 42, key + 32, 32);
        check(tk_kdfe(hashes[i].alg, key, 32, "DUPLICATE", ctx, 32, key + 32, 32, 96 * 8, a) ==
                      TK_OK &&
                  ossl_sskdf(hashes[i].md, key, 32, info, 74, b, 96) && !memcmp(a, b, 96),
              "KDFe %s equals OpenSSL's SSKDF on random input", hashes[i].md);
    }
}

/* ------------------------------------------------------------------ a software parent */

typedef struct {
    EVP_PKEY *key;
    TPM2B_PUBLIC pub;
} parent;

/* A storage-key public area (restricted decrypt, AES-CFB) around a software key. */
static bool make_parent(parent *p, const char *type, const char *arg, TPM2_ALG_ID name_alg,
                        uint16_t aes_bits)
{
    TPM2B_SENSITIVE sens;
    TPMT_SYM_DEF_OBJECT *sym;

    memset(p, 0, sizeof(*p));
    p->key = !strcmp(type, "RSA") ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                  : EVP_PKEY_Q_keygen(NULL, NULL, "EC", arg);
    if (!p->key || tk_pkey_to_tpm(p->key, NULL, &p->pub, &sens) != TK_OK)
        return false;
    OPENSSL_cleanse(&sens, sizeof(sens));
    p->pub.publicArea.nameAlg = name_alg;
    p->pub.publicArea.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                         TPMA_OBJECT_SENSITIVEDATAORIGIN |
                                         TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA |
                                         TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    sym = p->pub.publicArea.type == TPM2_ALG_RSA ? &p->pub.publicArea.parameters.rsaDetail.symmetric
                                                 : &p->pub.publicArea.parameters.eccDetail.symmetric;
    sym->algorithm = TPM2_ALG_AES;
    sym->keyBits.aes = aes_bits;
    sym->mode.aes = TPM2_ALG_CFB;
    return true;
}

/* ------------------------------------------------------------------ the unwrap (TPM side) */

static bool recover_seed_ecc(const parent *p, const TPM2B_ENCRYPTED_SECRET *in, uint8_t *seed,
                             size_t dlen)
{
    TPM2B_PUBLIC eph = p->pub;
    EVP_PKEY *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    uint8_t z[66];
    size_t zlen = sizeof(z), off = 0;
    bool ok;

    memset(&eph.publicArea.unique, 0, sizeof(eph.publicArea.unique));
    ok = Tss2_MU_TPMS_ECC_POINT_Unmarshal(in->secret, in->size, &off, &eph.publicArea.unique.ecc) ==
             TSS2_RC_SUCCESS && off == in->size &&
         tk_public_to_pkey(&eph, &peer) == TK_OK &&
         (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL)) != NULL &&
         EVP_PKEY_derive_init(ctx) == 1 && EVP_PKEY_derive_set_peer(ctx, peer) == 1 &&
         EVP_PKEY_derive(ctx, z, &zlen) == 1 &&
         tk_kdfe(p->pub.publicArea.nameAlg, z, zlen, "DUPLICATE", eph.publicArea.unique.ecc.x.buffer,
                 eph.publicArea.unique.ecc.x.size, p->pub.publicArea.unique.ecc.x.buffer,
                 p->pub.publicArea.unique.ecc.x.size, (uint32_t)dlen * 8, seed) == TK_OK;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    return ok;
}

static bool recover_seed_rsa(const parent *p, const TPM2B_ENCRYPTED_SECRET *in, uint8_t *seed,
                             size_t dlen)
{
    const EVP_MD *md = tk_md_for_alg(p->pub.publicArea.nameAlg);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, p->key, NULL);
    unsigned char *label = OPENSSL_memdup("DUPLICATE", 10);
    uint8_t out[512];
    size_t outlen = sizeof(out);
    bool ok = ctx && label && EVP_PKEY_decrypt_init(ctx) == 1 &&
              EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
              EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1 &&
              EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
              EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, 10) == 1;

    if (ok)
        label = NULL;
    ok = ok && EVP_PKEY_decrypt(ctx, out, &outlen, in->secret, in->size) == 1 && outlen == dlen;
    if (ok)
        memcpy(seed, out, dlen);
    OPENSSL_free(label);
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

typedef enum { UNWRAP_OK, UNWRAP_SEED, UNWRAP_HMAC, UNWRAP_DECODE } unwrap_result;

static unwrap_result unwrap(const parent *p, const TPM2B_PUBLIC *obj, const TPM2B_PRIVATE *dup,
                            const TPM2B_ENCRYPTED_SECRET *in, TPM2B_SENSITIVE *sens)
{
    const EVP_MD *md = tk_md_for_alg(p->pub.publicArea.nameAlg);
    size_t dlen = (size_t)EVP_MD_get_size(md), off = 0, enclen;
    uint16_t bits = p->pub.publicArea.type == TPM2_ALG_RSA
                        ? p->pub.publicArea.parameters.rsaDetail.symmetric.keyBits.aes
                        : p->pub.publicArea.parameters.eccDetail.symmetric.keyBits.aes;
    const EVP_CIPHER *cipher = bits == 128 ? EVP_aes_128_cfb128()
                               : bits == 192 ? EVP_aes_192_cfb128() : EVP_aes_256_cfb128();
    uint8_t seed[64], hkey[64], skey[32], mac[64], buf[sizeof(TPM2B_PRIVATE)], iv[16] = { 0 };
    unsigned int maclen = 0;
    uint8_t *hmac_in;
    TPM2B_NAME name;
    EVP_CIPHER_CTX *cctx;
    int n1 = 0, n2 = 0;
    bool ok;

    if (!(p->pub.publicArea.type == TPM2_ALG_ECC ? recover_seed_ecc(p, in, seed, dlen)
                                                 : recover_seed_rsa(p, in, seed, dlen)))
        return UNWRAP_SEED;
    /* integrity first: TPM2B_DIGEST outerHMAC || dupSensitive */
    if (dup->size < 2 + dlen || ((size_t)dup->buffer[0] << 8 | dup->buffer[1]) != dlen ||
        tk_public_name(obj, &name) != TK_OK)
        return UNWRAP_HMAC;
    enclen = dup->size - 2 - dlen;
    hmac_in = malloc(enclen + name.size);
    memcpy(hmac_in, dup->buffer + 2 + dlen, enclen);
    memcpy(hmac_in + enclen, name.name, name.size);
    ok = tk_kdfa(p->pub.publicArea.nameAlg, seed, dlen, "INTEGRITY", NULL, 0, NULL, 0,
                 (uint32_t)dlen * 8, hkey) == TK_OK &&
         HMAC(md, hkey, (int)dlen, hmac_in, enclen + name.size, mac, &maclen) &&
         maclen == dlen && !memcmp(mac, dup->buffer + 2, dlen);
    free(hmac_in);
    if (!ok)
        return UNWRAP_HMAC;
    /* then decrypt and decode the sensitive area */
    cctx = EVP_CIPHER_CTX_new();
    ok = tk_kdfa(p->pub.publicArea.nameAlg, seed, dlen, "STORAGE", name.name, name.size, NULL, 0,
                 bits, skey) == TK_OK &&
         EVP_DecryptInit_ex(cctx, cipher, NULL, skey, iv) == 1 &&
         EVP_DecryptUpdate(cctx, buf, &n1, dup->buffer + 2 + dlen, (int)enclen) == 1 &&
         EVP_DecryptFinal_ex(cctx, buf + n1, &n2) == 1 && (size_t)(n1 + n2) == enclen &&
         Tss2_MU_TPM2B_SENSITIVE_Unmarshal(buf, enclen, &off, sens) == TSS2_RC_SUCCESS &&
         off == enclen;
    EVP_CIPHER_CTX_free(cctx);
    OPENSSL_cleanse(buf, sizeof(buf));
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(skey, sizeof(skey));
    return ok ? UNWRAP_OK : UNWRAP_DECODE;
}

static bool same_sensitive(const TPM2B_SENSITIVE *a, const TPM2B_SENSITIVE *b)
{
    const TPMT_SENSITIVE *x = &a->sensitiveArea, *y = &b->sensitiveArea;
    /* .any overlays the RSA prime and the ECC scalar (all are UINT16 size + bytes) */
    const TPM2B_PRIVATE_VENDOR_SPECIFIC *xs = &x->sensitive.any, *ys = &y->sensitive.any;

    return x->sensitiveType == y->sensitiveType && x->authValue.size == y->authValue.size &&
           !memcmp(x->authValue.buffer, y->authValue.buffer, x->authValue.size) &&
           x->seedValue.size == y->seedValue.size && xs->size > 0 && xs->size == ys->size &&
           !memcmp(xs->buffer, ys->buffer, xs->size);
}

static void wrap_and_unwrap(const parent *p, const char *obj_type, const char *obj_arg,
                            const char *what)
{
    EVP_PKEY *key = !strcmp(obj_type, "RSA") ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                              : EVP_PKEY_Q_keygen(NULL, NULL, "EC", obj_arg);
    tk_secret auth;
    TPM2B_PUBLIC pub;
    TPM2B_SENSITIVE sens, got;
    TPM2B_PRIVATE dup, dup2;
    TPM2B_ENCRYPTED_SECRET seed, seed2;
    tk_rc rc;

    tk_secret_set(&auth, "key auth", 8);
    if (!key || tk_pkey_to_tpm(key, &auth, &pub, &sens) != TK_OK) {
        check(false, "%s: make the object", what);
        EVP_PKEY_free(key);
        return;
    }
    rc = tk_duplicate_wrap(&p->pub, &pub, &sens, &dup, &seed);
    check_rc(rc, TK_OK, NULL, what);
    if (rc == TK_OK) {
        memset(&got, 0, sizeof(got));
        check(unwrap(p, &pub, &dup, &seed, &got) == UNWRAP_OK && same_sensitive(&sens, &got),
              "%s: the parent's private key unwraps the same sensitive area, HMAC valid", what);
        dup2 = dup;
        dup2.buffer[dup2.size - 1] ^= 0x01;
        check(unwrap(p, &pub, &dup2, &seed, &got) == UNWRAP_HMAC,
              "%s: a flipped bit fails the outer HMAC", what);
        check(tk_duplicate_wrap(&p->pub, &pub, &sens, &dup2, &seed2) == TK_OK &&
                  (seed2.size != seed.size || memcmp(seed2.secret, seed.secret, seed.size)) &&
                  memcmp(dup2.buffer, dup.buffer, dup.size),
              "%s: every wrap uses a fresh seed", what);
        OPENSSL_cleanse(&got, sizeof(got));
    }
    OPENSSL_cleanse(&sens, sizeof(sens));
    tk_secret_clear(&auth);
    EVP_PKEY_free(key);
}

static void test_wrap(void)
{
    static const struct {
        const char *type, *arg;
        TPM2_ALG_ID name_alg;
        uint16_t aes;
        const char *what;
    } parents[] = {
        { "EC", "P-256", TPM2_ALG_SHA256, 128, "ECC P-256 parent, SHA-256, AES-128" },
        { "EC", "P-384", TPM2_ALG_SHA384, 256, "ECC P-384 parent, SHA-384, AES-256" },
        { "RSA", NULL, TPM2_ALG_SHA256, 128, "RSA-2048 parent, SHA-256, AES-128" },
        { "RSA", NULL, TPM2_ALG_SHA512, 192, "RSA-2048 parent, SHA-512, AES-192" },
    };

    for (size_t i = 0; i < sizeof(parents) / sizeof(parents[0]); i++) {
        parent p;
        char what[128];

        if (!make_parent(&p, parents[i].type, parents[i].arg, parents[i].name_alg,
                         parents[i].aes)) {
            check(false, "make %s", parents[i].what);
            EVP_PKEY_free(p.key);
            continue;
        }
        snprintf(what, sizeof(what), "%s, RSA object", parents[i].what);
        wrap_and_unwrap(&p, "RSA", NULL, what);
        snprintf(what, sizeof(what), "%s, P-256 object", parents[i].what);
        wrap_and_unwrap(&p, "EC", "P-256", what);
        EVP_PKEY_free(p.key);
    }
}

static void test_wrap_errors(void)
{
    parent p;
    TPM2B_PUBLIC pub, bad;
    TPM2B_SENSITIVE sens;
    TPM2B_PRIVATE dup;
    TPM2B_ENCRYPTED_SECRET seed;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    tk_buf b = { 0 };

    if (!key || tk_pkey_to_tpm(key, NULL, &pub, &sens) != TK_OK ||
        !make_parent(&p, "EC", "P-256", TPM2_ALG_SHA256, 128)) {
        check(false, "make keys for the error checks");
        EVP_PKEY_free(key);
        return;
    }
    /* the real swtpm SRK as parent: the seed is a marshalled P-256 point */
    if (read_file(data_file("swtpm-srk-ecc.pub"), &b.data, &b.len) &&
        tk_public_unmarshal(&b, &bad) == TK_OK)
        check(tk_duplicate_wrap(&bad, &pub, &sens, &dup, &seed) == TK_OK &&
                  seed.size == 2 + 32 + 2 + 32 && dup.size == 2 + 32 + 2 + sens.size,
              "wrap for the swtpm SRK: 68-byte seed point, HMAC + encrypted sensitive");
    else
        check(false, "load the swtpm SRK");
    tk_buf_free(&b);

    bad = p.pub;
    bad.publicArea.objectAttributes &= ~TPMA_OBJECT_RESTRICTED;
    check_rc(tk_duplicate_wrap(&bad, &pub, &sens, &dup, &seed), TK_ERR_INVALID, "storage key",
             "a parent that is not restricted decrypt is refused");
    bad = p.pub;
    bad.publicArea.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    check_rc(tk_duplicate_wrap(&bad, &pub, &sens, &dup, &seed), TK_ERR_UNSUPPORTED, "AES-CFB",
             "a parent without AES-CFB is refused");
    bad = p.pub;
    bad.publicArea.type = TPM2_ALG_KEYEDHASH;
    check_rc(tk_duplicate_wrap(&bad, &pub, &sens, &dup, &seed), TK_ERR_UNSUPPORTED,
             "RSA or ECC storage", "a keyedhash parent is refused");
    bad = p.pub;
    bad.publicArea.unique.ecc.x.buffer[3] ^= 0x40;
    check_rc(tk_duplicate_wrap(&bad, &pub, &sens, &dup, &seed), TK_ERR_INVALID, "parent public key",
             "a parent point off the curve is refused");
    sens.sensitiveArea.sensitiveType = TPM2_ALG_RSA;
    check_rc(tk_duplicate_wrap(&p.pub, &pub, &sens, &dup, &seed), TK_ERR_INVALID, "does not match",
             "a sensitive area of another type is refused");
    OPENSSL_cleanse(&sens, sizeof(sens));
    EVP_PKEY_free(p.key);
    EVP_PKEY_free(key);
}

int main(void)
{
    test_kdf_known_answers();
    test_kdf_cross();
    test_wrap();
    test_wrap_errors();
    return t_finish();
}
