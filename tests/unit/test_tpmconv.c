/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TPM structures <-> OpenSSL.  Known answers come from swtpm via tpm2-tools 5.4
 * (tests/data/swtpm-*):
 *   swtpm-srk-ecc.pub/.pem         ECC P-256 storage primary: TPM2B_PUBLIC, tpm2_print -f pem
 *   swtpm-primary-rsa.pub/.pem     RSA-2048 storage primary, the same
 *   swtpm-sign-{ecc256,rsa2048}.pub/.sig   keys made by TPM2_Create with our template's
 *                                  attributes, and TPMT_SIGNATUREs (tpm2_sign -f tss) of
 *                                  SHA-256(swtpm-sign-msg.txt)
 * Names are those tpm2_readpublic -n printed.
 */
#include "config.h"

#include <openssl/core_names.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "crypto_test.h"
#include "tpmkeys.h"

static const char SRK_NAME[] =
    "000b5b3d94f2d58aa9930c9711a16463c2b42526a08eaa18a58881478d813af2ec86";
static const char RSA_PRIMARY_NAME[] =
    "000b8f29f74c06b11997e6bbd9c9543f61838d1816e94ec4678fa478c5db5e11c912";

static bool load_public(const char *name, TPM2B_PUBLIC *pub)
{
    tk_buf b = { 0 };
    bool ok = read_file(data_file(name), &b.data, &b.len) && tk_public_unmarshal(&b, pub) == TK_OK;

    tk_buf_free(&b);
    return ok;
}

static EVP_PKEY *load_pem_pub(const char *name)
{
    return read_pubkey(data_file(name));
}

/* ------------------------------------------------------------------ marshalling */

static void test_marshal(void)
{
    TPM2B_PUBLIC tmpl, back;
    TPM2B_PRIVATE priv = { .size = 5, .buffer = { 1, 2, 3, 4, 5 } }, pback;
    tk_buf b = { 0 }, p = { 0 };
    uint8_t saved;

    check_rc(tk_template_for(TK_ALG_RSA2048, &tmpl), TK_OK, NULL, "RSA-2048 template");
    check_rc(tk_public_marshal(&tmpl, &b), TK_OK, NULL, "marshal a TPM2B_PUBLIC");
    check(b.len == (size_t)tmpl.size + 2 && b.data[0] == (tmpl.size >> 8) &&
              b.data[1] == (tmpl.size & 0xff),
          "marshalled size field matches the template's size (%u)", tmpl.size);
    memset(&back, 0xa5, sizeof(back));
    check(tk_public_unmarshal(&b, &back) == TK_OK &&
              back.publicArea.parameters.rsaDetail.keyBits == 2048 &&
              back.publicArea.objectAttributes == tmpl.publicArea.objectAttributes,
          "TPM2B_PUBLIC round trip");
    b.len--;
    memset(&back, 0, sizeof(back));
    back.size = 77;
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, "TPM2B_PUBLIC",
             "truncated TPM2B_PUBLIC is INVALID");
    check(back.size == 77, "failed unmarshal leaves the output alone");
    b.len++;
    b.data = realloc(b.data, b.len + 1);
    b.data[b.len++] = 0;
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, "unexpected bytes",
             "TPM2B_PUBLIC with a trailing byte is INVALID");
    b.len--;
    saved = b.data[1];
    b.data[1] = (uint8_t)(saved + 1);
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, NULL,
             "TPM2B_PUBLIC whose size field is too large is INVALID");
    b.data[1] = (uint8_t)(saved - 1);
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, NULL,
             "TPM2B_PUBLIC whose size field is too small is INVALID");
    b.data[1] = saved;
    tk_buf_free(&b);
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, "empty", "empty buffer is INVALID");
    b.data = (uint8_t *)"\0\0";
    b.len = 2;
    check_rc(tk_public_unmarshal(&b, &back), TK_ERR_INVALID, "empty",
             "a TPM2B_PUBLIC of size 0 is INVALID");
    b.data = NULL;
    b.len = 0;

    check_rc(tk_private_marshal(&priv, &p), TK_OK, NULL, "marshal a TPM2B_PRIVATE");
    check(p.len == 7 && p.data[0] == 0 && p.data[1] == 5 && p.data[6] == 5,
          "TPM2B_PRIVATE bytes are size || buffer");
    check(tk_private_unmarshal(&p, &pback) == TK_OK && pback.size == 5 &&
              !memcmp(pback.buffer, priv.buffer, 5), "TPM2B_PRIVATE round trip");
    p.data = realloc(p.data, p.len + 1);
    p.data[p.len++] = 9;
    check_rc(tk_private_unmarshal(&p, &pback), TK_ERR_INVALID, "unexpected bytes",
             "TPM2B_PRIVATE with a trailing byte is INVALID");
    p.len = 4;
    check_rc(tk_private_unmarshal(&p, &pback), TK_ERR_INVALID, "TPM2B_PRIVATE",
             "truncated TPM2B_PRIVATE is INVALID");
    tk_buf_free(&p);
}

/* ------------------------------------------------------------------ templates */

static void test_templates(void)
{
    static const struct {
        tk_alg alg;
        TPMI_ALG_PUBLIC type;
        int bits;
        TPM2_ECC_CURVE curve;
    } algs[] = {
        { TK_ALG_RSA2048, TPM2_ALG_RSA, 2048, 0 },  { TK_ALG_RSA3072, TPM2_ALG_RSA, 3072, 0 },
        { TK_ALG_RSA4096, TPM2_ALG_RSA, 4096, 0 },  { TK_ALG_ECC_P256, TPM2_ALG_ECC, 0, TPM2_ECC_NIST_P256 },
        { TK_ALG_ECC_P384, TPM2_ALG_ECC, 0, TPM2_ECC_NIST_P384 },
        { TK_ALG_ECC_P521, TPM2_ALG_ECC, 0, TPM2_ECC_NIST_P521 },
    };
    const TPMA_OBJECT want = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                             TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                             TPMA_OBJECT_NODA | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT;
    TPM2B_PUBLIC t, tpm;

    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        const TPMT_PUBLIC *p = &t.publicArea;
        bool ok;

        memset(&t, 0, sizeof(t));
        if (tk_template_for(algs[i].alg, &t) != TK_OK) {
            check(false, "template for alg %d", (int)algs[i].alg);
            continue;
        }
        ok = p->type == algs[i].type && p->nameAlg == TPM2_ALG_SHA256 &&
             p->objectAttributes == want && p->authPolicy.size == 0;
        if (p->type == TPM2_ALG_RSA)
            ok = ok && p->parameters.rsaDetail.symmetric.algorithm == TPM2_ALG_NULL &&
                 p->parameters.rsaDetail.scheme.scheme == TPM2_ALG_NULL &&
                 p->parameters.rsaDetail.keyBits == algs[i].bits &&
                 p->parameters.rsaDetail.exponent == 0 && p->unique.rsa.size == 0;
        else
            ok = ok && p->parameters.eccDetail.symmetric.algorithm == TPM2_ALG_NULL &&
                 p->parameters.eccDetail.scheme.scheme == TPM2_ALG_NULL &&
                 p->parameters.eccDetail.curveID == algs[i].curve &&
                 p->parameters.eccDetail.kdf.scheme == TPM2_ALG_NULL &&
                 p->unique.ecc.x.size == 0 && p->unique.ecc.y.size == 0;
        check(ok, "template for %s", tk_alg_name(algs[i].alg));
    }
    check_rc(tk_template_for(TK_ALG_NONE, &t), TK_ERR_UNSUPPORTED, "unknown key algorithm",
             "no template for TK_ALG_NONE");

    /* the TPM made keys from the same attributes: their public areas equal our template
     * once the unique field is emptied */
    if (load_public("swtpm-sign-ecc256.pub", &tpm) &&
        tk_template_for(TK_ALG_ECC_P256, &t) == TK_OK) {
        tk_buf a = { 0 }, b = { 0 };
        memset(&tpm.publicArea.unique, 0, sizeof(tpm.publicArea.unique));
        check(tk_public_marshal(&tpm, &a) == TK_OK && tk_public_marshal(&t, &b) == TK_OK &&
                  a.len == b.len && !memcmp(a.data, b.data, a.len),
              "P-256 template equals the public area of a key swtpm made (unique aside)");
        tk_buf_free(&a);
        tk_buf_free(&b);
    } else {
        check(false, "load swtpm-sign-ecc256.pub");
    }
    if (load_public("swtpm-sign-rsa2048.pub", &tpm) &&
        tk_template_for(TK_ALG_RSA2048, &t) == TK_OK) {
        tk_buf a = { 0 }, b = { 0 };
        memset(&tpm.publicArea.unique, 0, sizeof(tpm.publicArea.unique));
        check(tk_public_marshal(&tpm, &a) == TK_OK && tk_public_marshal(&t, &b) == TK_OK &&
                  a.len == b.len && !memcmp(a.data, b.data, a.len),
              "RSA-2048 template equals the public area of a key swtpm made (unique aside)");
        tk_buf_free(&a);
        tk_buf_free(&b);
    } else {
        check(false, "load swtpm-sign-rsa2048.pub");
    }
}

/* ------------------------------------------------------------------ public areas, names */

static void test_public_known(void)
{
    TPM2B_PUBLIC pub;
    TPM2B_NAME name;
    EVP_PKEY *pk = NULL, *ref;
    uint8_t want[64];
    size_t wlen;

    check(load_public("swtpm-srk-ecc.pub", &pub), "load the swtpm SRK public area");
    ref = load_pem_pub("swtpm-srk-ecc.pem");
    check_rc(tk_public_to_pkey(&pub, &pk), TK_OK, NULL, "SRK public area to EVP_PKEY");
    check(pk && ref && EVP_PKEY_eq(pk, ref) == 1 && EVP_PKEY_get_bits(pk) == 256,
          "SRK public key equals tpm2-tools' PEM");
    EVP_PKEY_free(pk);
    EVP_PKEY_free(ref);
    wlen = hex2bin(SRK_NAME, want, sizeof(want));
    check(tk_public_name(&pub, &name) == TK_OK && name.size == wlen &&
              !memcmp(name.name, want, wlen), "SRK name equals the TPM's");

    pk = NULL;
    check(load_public("swtpm-primary-rsa.pub", &pub), "load the swtpm RSA primary");
    ref = load_pem_pub("swtpm-primary-rsa.pem");
    check_rc(tk_public_to_pkey(&pub, &pk), TK_OK, NULL, "RSA public area to EVP_PKEY");
    check(pk && ref && EVP_PKEY_eq(pk, ref) == 1 && EVP_PKEY_get_bits(pk) == 2048,
          "RSA primary public key (exponent 0 = 65537) equals tpm2-tools' PEM");
    EVP_PKEY_free(pk);
    EVP_PKEY_free(ref);
    wlen = hex2bin(RSA_PRIMARY_NAME, want, sizeof(want));
    check(tk_public_name(&pub, &name) == TK_OK && name.size == wlen &&
              !memcmp(name.name, want, wlen), "RSA primary name equals the TPM's");

    /* broken public areas */
    check(load_public("swtpm-srk-ecc.pub", &pub), "reload the SRK");
    pub.publicArea.unique.ecc.y.buffer[5] ^= 0x01;
    pk = NULL;
    check_rc(tk_public_to_pkey(&pub, &pk), TK_ERR_INVALID, "not on the P-256 curve",
             "a point off the curve is INVALID");
    pub.publicArea.parameters.eccDetail.curveID = TPM2_ECC_BN_P256;
    check_rc(tk_public_to_pkey(&pub, &pk), TK_ERR_UNSUPPORTED, "curve",
             "BN P-256 is UNSUPPORTED");
    pub.publicArea.type = TPM2_ALG_KEYEDHASH;
    check_rc(tk_public_to_pkey(&pub, &pk), TK_ERR_UNSUPPORTED, "not an RSA or ECC key",
             "a keyedhash object has no EVP_PKEY");
    check(load_public("swtpm-primary-rsa.pub", &pub), "reload the RSA primary");
    pub.publicArea.unique.rsa.size = 128;
    check_rc(tk_public_to_pkey(&pub, &pk), TK_ERR_INVALID, "2048-bit",
             "RSA modulus shorter than keyBits is INVALID");
    pub.publicArea.nameAlg = TPM2_ALG_SM3_256;
    check_rc(tk_public_name(&pub, &name), TK_ERR_UNSUPPORTED, "name algorithm",
             "name with an unknown nameAlg is UNSUPPORTED");
    check(pk == NULL, "failed conversions hand out no key");
}

/* ------------------------------------------------------------------ signatures */

static bool verify(EVP_PKEY *pub, const uint8_t *sig, size_t siglen, const uint8_t *msg,
                   size_t mlen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
              EVP_DigestVerify(ctx, sig, siglen, msg, mlen) == 1;

    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

static bool load_sig(const char *name, TPMT_SIGNATURE *sig)
{
    uint8_t *data;
    size_t len, off = 0;
    bool ok;

    if (!read_file(data_file(name), &data, &len))
        return false;
    ok = Tss2_MU_TPMT_SIGNATURE_Unmarshal(data, len, &off, sig) == TSS2_RC_SUCCESS && off == len;
    free(data);
    return ok;
}

static void test_signatures(void)
{
    TPMT_SIGNATURE sig;
    TPM2B_PUBLIC pub;
    EVP_PKEY *pk = NULL;
    uint8_t *msg = NULL;
    size_t mlen = 0;
    tk_buf out = { 0 };

    check(read_file(data_file("swtpm-sign-msg.txt"), &msg, &mlen), "read the signed message");

    /* ECDSA from the TPM -> DER verifies with OpenSSL; r||s carries the same values */
    if (load_sig("swtpm-sign-ecc256.sig", &sig) && load_public("swtpm-sign-ecc256.pub", &pub) &&
        tk_public_to_pkey(&pub, &pk) == TK_OK) {
        check(sig.sigAlg == TPM2_ALG_ECDSA, "the TPM signature is ECDSA");
        check_rc(tk_sig_to_bytes(&sig, 32, true, &out), TK_OK, NULL, "ECDSA to DER");
        check(verify(pk, out.data, out.len, msg, mlen), "DER ECDSA signature verifies");
        tk_buf_free(&out);
        check_rc(tk_sig_to_bytes(&sig, 32, false, &out), TK_OK, NULL, "ECDSA to r||s");
        check(out.len == 64 && !memcmp(out.data + 32 - sig.signature.ecdsa.signatureR.size,
                                       sig.signature.ecdsa.signatureR.buffer,
                                       sig.signature.ecdsa.signatureR.size),
              "r||s is 64 bytes with r right-aligned in the first half");
        tk_buf_free(&out);
        check_rc(tk_sig_to_bytes(&sig, 16, false, &out), TK_ERR_INVALID, "longer than 16",
                 "r||s refuses a coordinate size too small");
        check_rc(tk_sig_to_bytes(&sig, 0, false, &out), TK_ERR_INVALID, NULL,
                 "r||s refuses coordinate size 0");
        sig.sigAlg = TPM2_ALG_HMAC;
        check_rc(tk_sig_to_bytes(&sig, 32, true, &out), TK_ERR_UNSUPPORTED, "scheme",
                 "HMAC signatures are UNSUPPORTED");
    } else {
        check(false, "load the ECDSA test signature");
    }
    EVP_PKEY_free(pk);
    pk = NULL;

    if (load_sig("swtpm-sign-rsa2048.sig", &sig) && load_public("swtpm-sign-rsa2048.pub", &pub) &&
        tk_public_to_pkey(&pub, &pk) == TK_OK) {
        check(sig.sigAlg == TPM2_ALG_RSASSA, "the TPM signature is RSASSA");
        check_rc(tk_sig_to_bytes(&sig, 0, true, &out), TK_OK, NULL, "RSASSA to bytes");
        check(out.len == 256 && verify(pk, out.data, out.len, msg, mlen),
              "RSASSA signature (256 bytes) verifies");
        tk_buf_free(&out);
    } else {
        check(false, "load the RSASSA test signature");
    }
    EVP_PKEY_free(pk);

    /* DER of small values: r with the top bit set gets a 00 pad, s with leading zeros not */
    memset(&sig, 0, sizeof(sig));
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.signatureR.size = 2;
    sig.signature.ecdsa.signatureR.buffer[0] = 0x80;
    sig.signature.ecdsa.signatureR.buffer[1] = 0x01;
    sig.signature.ecdsa.signatureS.size = 3;
    sig.signature.ecdsa.signatureS.buffer[2] = 0x05;
    {
        static const uint8_t want[] = { 0x30, 0x08, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x01, 0x05 };
        static const uint8_t raw[] = { 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x05 };
        check(tk_sig_to_bytes(&sig, 4, true, &out) == TK_OK && out.len == sizeof(want) &&
                  !memcmp(out.data, want, sizeof(want)),
              "DER ECDSA-Sig-Value of small r and s");
        tk_buf_free(&out);
        check(tk_sig_to_bytes(&sig, 4, false, &out) == TK_OK && out.len == sizeof(raw) &&
                  !memcmp(out.data, raw, sizeof(raw)),
              "r||s left-pads and drops leading zero bytes");
        tk_buf_free(&out);
    }
    free(msg);
}

/* ------------------------------------------------------------------ software key -> TPM */

static void check_pkey_to_tpm(EVP_PKEY *key, const tk_secret *auth, const char *what)
{
    TPM2B_PUBLIC pub;
    TPM2B_SENSITIVE sens;
    EVP_PKEY *back = NULL;
    BIGNUM *want = NULL;
    const TPMA_OBJECT attrs = TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_NODA |
                              TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT;
    tk_rc rc = tk_pkey_to_tpm(key, auth, &pub, &sens);
    tk_buf m = { 0 };

    check_rc(rc, TK_OK, NULL, what);
    if (rc != TK_OK)
        return;
    check(pub.publicArea.objectAttributes == attrs && pub.publicArea.nameAlg == TPM2_ALG_SHA256 &&
              pub.publicArea.authPolicy.size == 0,
          "%s: userWithAuth|noDA|sign|decrypt (no fixedTPM/fixedParent: Import refuses them)",
          what);
    check(tk_public_to_pkey(&pub, &back) == TK_OK && EVP_PKEY_eq(back, key) == 1,
          "%s: the public area gives back the same public key", what);
    check(tk_public_marshal(&pub, &m) == TK_OK && m.len == (size_t)pub.size + 2,
          "%s: pub.size is the marshalled size", what);
    check(sens.sensitiveArea.authValue.size == (auth ? auth->len : 0) &&
              (!auth || !memcmp(sens.sensitiveArea.authValue.buffer, auth->data, auth->len)) &&
              sens.sensitiveArea.seedValue.size == 0,
          "%s: authValue from auth, no seedValue", what);
    if (EVP_PKEY_is_a(key, "RSA")) {
        uint8_t p[512];
        size_t half = pub.publicArea.unique.rsa.size / 2;
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_FACTOR1, &want);
        check(sens.sensitiveArea.sensitiveType == TPM2_ALG_RSA &&
                  sens.sensitiveArea.sensitive.rsa.size == half &&
                  BN_bn2binpad(want, p, (int)half) == (int)half &&
                  !memcmp(p, sens.sensitiveArea.sensitive.rsa.buffer, half),
              "%s: sensitive holds the prime p in half the modulus size", what);
    } else {
        uint8_t d[66];
        size_t cb = pub.publicArea.unique.ecc.x.size;
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_PRIV_KEY, &want);
        check(sens.sensitiveArea.sensitiveType == TPM2_ALG_ECC &&
                  sens.sensitiveArea.sensitive.ecc.size == cb && cb <= sizeof(d) &&
                  BN_bn2binpad(want, d, (int)cb) == (int)cb &&
                  !memcmp(d, sens.sensitiveArea.sensitive.ecc.buffer, cb) &&
                  pub.publicArea.unique.ecc.y.size == cb,
              "%s: sensitive holds d padded to the coordinate size (%zu)", what, cb);
    }
    {
        uint8_t buf[sizeof(TPM2B_SENSITIVE)];
        size_t off = 0;
        check(Tss2_MU_TPM2B_SENSITIVE_Marshal(&sens, buf, sizeof(buf), &off) == TSS2_RC_SUCCESS &&
                  off == (size_t)sens.size + 2,
              "%s: sens.size is the marshalled size", what);
        OPENSSL_cleanse(buf, sizeof(buf));
    }
    OPENSSL_cleanse(&sens, sizeof(sens));
    BN_clear_free(want);
    EVP_PKEY_free(back);
    tk_buf_free(&m);
}

static void test_pkey_to_tpm(void)
{
    tk_secret auth, longauth;
    EVP_PKEY *k;
    TPM2B_PUBLIC pub;
    TPM2B_SENSITIVE sens;
    uint8_t big[33];

    tk_secret_set(&auth, "0123456789abcdef0123456789abcdef", 32);
    memset(big, 'x', sizeof(big));
    tk_secret_set(&longauth, big, sizeof(big));

    k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    check_pkey_to_tpm(k, &auth, "RSA-2048 with a 32-byte auth");
    check_rc(tk_pkey_to_tpm(k, &longauth, &pub, &sens), TK_ERR_INVALID, "at most 32",
             "a 33-byte auth is refused");
    tk_pkey_to_tpm(k, NULL, &pub, &sens);
    check(pub.publicArea.parameters.rsaDetail.exponent == 0, "e = 65537 is written as 0");
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    check_pkey_to_tpm(k, NULL, "P-256 without auth");
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    check_pkey_to_tpm(k, &auth, "P-384");
    EVP_PKEY_free(k);
    /* P-521 keys have d and coordinates with leading zero bytes often enough: try a few */
    for (int i = 0; i < 4; i++) {
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
        check_pkey_to_tpm(k, NULL, "P-521");
        EVP_PKEY_free(k);
    }
    {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        BIGNUM *e = BN_new();
        k = NULL;
        if (ctx && e && BN_set_word(e, 3) && EVP_PKEY_keygen_init(ctx) == 1 &&
            EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 3072) == 1 &&
            EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) == 1 && EVP_PKEY_keygen(ctx, &k) == 1) {
            check_pkey_to_tpm(k, NULL, "RSA-3072 with e = 3");
            tk_pkey_to_tpm(k, NULL, &pub, &sens);
            check(pub.publicArea.parameters.rsaDetail.exponent == 3, "e = 3 is written as 3");
        } else {
            check(false, "make an RSA key with e = 3");
        }
        EVP_PKEY_free(k);
        EVP_PKEY_CTX_free(ctx);
        BN_free(e);
    }
    k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    check_rc(tk_pkey_to_tpm(k, NULL, &pub, &sens), TK_ERR_UNSUPPORTED, "cannot be held",
             "Ed25519 has no TPM form");
    EVP_PKEY_free(k);
    k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    check_rc(tk_pkey_to_tpm(k, NULL, &pub, &sens), TK_ERR_UNSUPPORTED, "secp256k1",
             "secp256k1 has no TPM form");
    EVP_PKEY_free(k);
    OPENSSL_cleanse(&sens, sizeof(sens));
    tk_secret_clear(&auth);
    tk_secret_clear(&longauth);
}

/* ------------------------------------------------------------------ RSA-PSS */

/* The template of a key restricted to PSS, and EMSA-PSS encoding checked by OpenSSL's
 * verifier after a raw private operation in software (what the TPM does). */
static void test_pss(void)
{
    tk_keygen_opts o = { .rsa_pss_hash = TPM2_ALG_SHA384 };
    TPM2B_PUBLIC t;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    const EVP_MD *md = EVP_sha256();
    uint8_t mhash[32], em[256], sig[256];
    size_t siglen;

    check_rc(tk_template_for_opts(TK_ALG_RSA2048, &o, &t), TK_OK, NULL, "PSS-only template");
    check(t.publicArea.parameters.rsaDetail.scheme.scheme == TPM2_ALG_RSAPSS &&
              !(t.publicArea.objectAttributes & TPMA_OBJECT_DECRYPT) &&
              tk_public_pss_hash(&t) == TPM2_ALG_SHA384 && !tk_public_rsa_raw_ok(&t),
          "PSS-only template: scheme RSAPSS/SHA-384, no decrypt, no raw operation");
    check_rc(tk_template_for(TK_ALG_RSA2048, &t), TK_OK, NULL, "plain RSA template");
    check(tk_public_pss_hash(&t) == 0 && tk_public_rsa_raw_ok(&t),
          "plain RSA template allows the raw operation");
    check_rc(tk_template_for_opts(TK_ALG_ECC_P256, &o, &t), TK_ERR_INVALID, "only RSA",
             "PSS restriction on an EC key");
    o.rsa_pss_hash = TPM2_ALG_SM3_256;
    check_rc(tk_template_for_opts(TK_ALG_RSA2048, &o, &t), TK_ERR_UNSUPPORTED, "SHA",
             "PSS restriction with an unknown hash");

    if (!key) {
        check(false, "software RSA key for the PSS encoding test");
        return;
    }
    memset(mhash, 0x5a, sizeof(mhash));
    for (size_t salt = 0; salt <= 222; salt += 74) {
        EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
        int ok;
        check_rc(tk_pss_encode(md, md, mhash, sizeof(mhash), salt, 2048, em, sizeof(em)), TK_OK,
                 NULL, "EMSA-PSS encoding");
        siglen = sizeof(sig);
        ok = c && EVP_PKEY_sign_init(c) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) > 0 &&
             EVP_PKEY_sign(c, sig, &siglen, em, sizeof(em)) > 0;
        EVP_PKEY_CTX_free(c);
        c = EVP_PKEY_CTX_new(key, NULL);
        ok = ok && c && EVP_PKEY_verify_init(c) > 0 &&
             EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_signature_md(c, md) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)salt) > 0 &&
             EVP_PKEY_verify(c, sig, siglen, mhash, sizeof(mhash)) == 1;
        EVP_PKEY_CTX_free(c);
        check(ok, "PSS with a %zu-byte salt verifies in OpenSSL", salt);
    }
    check_rc(tk_pss_encode(md, md, mhash, sizeof(mhash), 223, 2048, em, sizeof(em)),
             TK_ERR_INVALID, "does not fit", "salt longer than the key allows");
    check_rc(tk_pss_encode(md, md, mhash, 20, 32, 2048, em, sizeof(em)), TK_ERR_INVALID,
             "not a", "digest of the wrong length");
    EVP_PKEY_free(key);
}

/* The directly encoded SubjectPublicKeyInfo equals OpenSSL's for the same key. */
static void test_spki(void)
{
    static const char *const files[] = {
        "swtpm-sign-rsa2048.pub", "swtpm-sign-ecc256.pub", "swtpm-srk-ecc.pub",
        "swtpm-primary-rsa.pub",
    };
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        TPM2B_PUBLIC pub;
        EVP_PKEY *pkey = NULL;
        unsigned char *der = NULL;
        tk_buf spki = { 0 };
        int len = 0;
        bool ok = load_public(files[i], &pub) && tk_public_to_pkey(&pub, &pkey) == TK_OK &&
                  (len = i2d_PUBKEY(pkey, &der)) > 0 && tk_public_spki(&pub, &spki) == TK_OK;
        check(ok && spki.len == (size_t)len && !memcmp(spki.data, der, spki.len),
              "tk_public_spki of %s equals i2d_PUBKEY", files[i]);
        OPENSSL_free(der);
        EVP_PKEY_free(pkey);
        tk_buf_free(&spki);
    }
}

int main(void)
{
    t_setup();
    test_marshal();
    test_templates();
    test_public_known();
    test_signatures();
    test_pkey_to_tpm();
    test_pss();
    test_spki();
    return t_finish();
}
