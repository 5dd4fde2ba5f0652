/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The keystore against a real TPM (swtpm, started by ks.sh): every store operation,
 * with results checked by OpenSSL in software.  Runs without a resource manager, so
 * it also shows that ten keys work through a TPM with three object slots.
 */
#include "config.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "tpmkeys.h"

static int failures, checks;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        checks++;                                                         \
        if (cond) {                                                       \
            printf("ok %d - ", checks);                                   \
        } else {                                                          \
            failures++;                                                   \
            printf("not ok %d - ", checks);                               \
        }                                                                 \
        printf(__VA_ARGS__);                                              \
        if (!(cond))                                                      \
            printf("  [%s]", tk_errmsg());                                \
        printf("\n");                                                     \
        fflush(stdout);                                                   \
    } while (0)

static void secret(tk_secret *s, const char *v)
{
    tk_secret_set(s, v, strlen(v));
}

static const EVP_MD *md_for(TPM2_ALG_ID h)
{
    switch (h) {
    case TPM2_ALG_SHA1: return EVP_sha1();
    case TPM2_ALG_SHA384: return EVP_sha384();
    case TPM2_ALG_SHA512: return EVP_sha512();
    default: return EVP_sha256();
    }
}

/* Sign "msg" through the keystore and verify with the given software public key. */
static bool sign_verify(tk_ks *ks, const tk_key *k, EVP_PKEY *verifier, tk_sigscheme scheme,
                        TPM2_ALG_ID hash, const char *msg, bool tamper)
{
    uint8_t md[64];
    unsigned int mdlen = 0;
    tk_buf sig = { 0 };
    EVP_PKEY_CTX *vc = NULL;
    bool ok = false;

    EVP_Digest(msg, strlen(msg), md, &mdlen, md_for(hash), NULL);
    if (tk_ks_sign(ks, k, scheme, hash, md, mdlen, &sig) != TK_OK)
        return false;
    if (tamper)
        md[0] ^= 1;
    vc = EVP_PKEY_CTX_new(verifier, NULL);
    if (!vc || EVP_PKEY_verify_init(vc) != 1 ||
        EVP_PKEY_CTX_set_signature_md(vc, md_for(hash)) != 1)
        goto out;
    if (scheme == TK_SIG_RSASSA)
        EVP_PKEY_CTX_set_rsa_padding(vc, RSA_PKCS1_PADDING);
    if (scheme == TK_SIG_RSAPSS) {
        EVP_PKEY_CTX_set_rsa_padding(vc, RSA_PKCS1_PSS_PADDING);
        EVP_PKEY_CTX_set_rsa_pss_saltlen(vc, RSA_PSS_SALTLEN_DIGEST);
    }
    ok = EVP_PKEY_verify(vc, sig.data, sig.len, md, mdlen) == 1;
out:
    EVP_PKEY_CTX_free(vc);
    tk_buf_free(&sig);
    return ok;
}

static bool sign_verify_self(tk_ks *ks, const tk_key *k, tk_sigscheme scheme, TPM2_ALG_ID hash)
{
    EVP_PKEY *pub = NULL;
    bool ok = tk_ks_public(k, &pub) == TK_OK &&
              sign_verify(ks, k, pub, scheme, hash, "hello tpm", false) &&
              !sign_verify(ks, k, pub, scheme, hash, "hello tpm", true);
    EVP_PKEY_free(pub);
    return ok;
}

static tk_sigscheme scheme_of(tk_alg a)
{
    return tk_alg_type(a) == TK_KEY_RSA ? TK_SIG_RSASSA : TK_SIG_ECDSA;
}

static bool rsa_decrypt_roundtrip(tk_ks *ks, const tk_key *k, bool oaep)
{
    EVP_PKEY *pub = NULL;
    EVP_PKEY_CTX *c = NULL;
    uint8_t ct[512];
    size_t ctlen = sizeof(ct);
    const char *msg = "a secret for the TPM";
    tk_buf out = { 0 };
    bool ok = false;

    if (tk_ks_public(k, &pub) != TK_OK)
        return false;
    c = EVP_PKEY_CTX_new(pub, NULL);
    if (!c || EVP_PKEY_encrypt_init(c) != 1)
        goto done;
    if (oaep) {
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING);
        EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha256());
    } else {
        EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING);
    }
    if (EVP_PKEY_encrypt(c, ct, &ctlen, (const uint8_t *)msg, strlen(msg)) != 1)
        goto done;
    if (tk_ks_rsa_decrypt(ks, k, oaep ? TPM2_ALG_OAEP : TPM2_ALG_RSAES, TPM2_ALG_SHA256, NULL, 0,
                          ct, ctlen, &out) != TK_OK)
        goto done;
    ok = out.len == strlen(msg) && !memcmp(out.data, msg, out.len);
done:
    tk_buf_free(&out);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(pub);
    return ok;
}

static bool ecdh_matches(tk_ks *ks, const tk_key *k)
{
    EVP_PKEY *pub = NULL, *peer = NULL;
    EVP_PKEY_CTX *c = NULL;
    char group[64];
    uint8_t point[200], z[80];
    size_t plen = 0, zlen = sizeof(z);
    tk_buf out = { 0 };
    bool ok = false;

    if (tk_ks_public(k, &pub) != TK_OK ||
        !EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL))
        goto done;
    peer = EVP_EC_gen(group);
    if (!peer || !EVP_PKEY_get_octet_string_param(peer, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                                  sizeof(point), &plen))
        goto done;
    c = EVP_PKEY_CTX_new(peer, NULL);
    if (!c || EVP_PKEY_derive_init(c) != 1 || EVP_PKEY_derive_set_peer(c, pub) != 1 ||
        EVP_PKEY_derive(c, z, &zlen) != 1)
        goto done;
    if (tk_ks_ecdh(ks, k, point, plen, &out) != TK_OK)
        goto done;
    ok = out.len == zlen && !memcmp(out.data, z, zlen);
done:
    tk_buf_free(&out);
    EVP_PKEY_CTX_free(c);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(pub);
    return ok;
}

/* Nothing secret crosses the TPM interface in the clear: a known secret is sealed under
 * a known auth value and unsealed again through a connection whose traffic the tss2
 * pcap TCTI captures; neither value may appear in the capture. */
static void wire_check(void)
{
    const char *tcti = getenv("TPMKEYS_TCTI");
    static const uint8_t unseal_cc[] = { 0x00, 0x00, 0x01, 0x5e };
    char path[] = "/tmp/tk-wire-XXXXXX", conf[512];
    tk_secret data, auth, back;
    tk_buf pub = { 0 }, priv = { 0 };
    tk_tpm *t = NULL;
    uint8_t *cap = NULL;
    long len = 0;
    void *lib = dlopen("libtss2-tcti-pcap.so.0", RTLD_LAZY | RTLD_LOCAL);
    int fd;
    FILE *f;

    if (!lib || !tcti) {
        printf("# no pcap TCTI (libtss2-tcti-pcap0) or no TPMKEYS_TCTI: wire check left out\n");
        return;
    }
    dlclose(lib);
    if ((fd = mkstemp(path)) < 0)
        return;
    close(fd);
    setenv("TCTI_PCAP_FILE", path, 1);
    snprintf(conf, sizeof(conf), "pcap:%s", tcti);
    data.len = 32;
    RAND_bytes(data.data, (int)data.len);
    secret(&auth, "wire-pin-73195");
    memset(&back, 0, sizeof(back));
    tk_rc rc = tk_tpm_new(conf, &t);
    if (rc == TK_OK)
        rc = tk_tpm_seal(t, &data, &auth, &pub, &priv);
    CHECK(rc == TK_OK, "seal a secret through a captured connection");
    rc = rc == TK_OK ? tk_tpm_unseal(t, &pub, &priv, &auth, &back) : rc;
    CHECK(rc == TK_OK && back.len == data.len && !memcmp(back.data, data.data, data.len),
          "unseal it again through the captured connection");
    tk_tpm_free(t);   /* closes the capture */
    unsetenv("TCTI_PCAP_FILE");
    if ((f = fopen(path, "rb")) && !fseek(f, 0, SEEK_END) && (len = ftell(f)) > 0 &&
        (cap = malloc((size_t)len)) && !fseek(f, 0, SEEK_SET) &&
        fread(cap, 1, (size_t)len, f) != (size_t)len)
        len = 0;
    if (f)
        fclose(f);
    unlink(path);
    CHECK(cap && len > 0 && memmem(cap, (size_t)len, unseal_cc, sizeof(unseal_cc)),
          "the capture holds the traffic (%ld bytes, TPM2_Unseal in it)", len);
    CHECK(cap && !memmem(cap, (size_t)len, data.data, data.len),
          "the sealed secret never crossed the interface in the clear");
    CHECK(cap && !memmem(cap, (size_t)len, auth.data, auth.len),
          "the auth value (PIN) never crossed the interface in the clear");
    free(cap);
    tk_buf_free(&pub);
    tk_buf_free(&priv);
    tk_secret_clear(&data);
    tk_secret_clear(&back);
    tk_secret_clear(&auth);
}

int main(void)
{
    tk_ks_config cfg = { .store_flags = TK_STORE_CREATE };
    tk_secret so, user, wrong;
    tk_ks *ks = NULL;
    tk_token *tok = NULL;
    tk_key *k = NULL;
    bool srk_new, tok_new;
    tk_rc rc;
    static const tk_alg algs[] = { TK_ALG_RSA2048, TK_ALG_RSA3072, TK_ALG_ECC_P256,
                                   TK_ALG_ECC_P384 };

    secret(&so, "so-secret-99");
    secret(&user, "123456");
    secret(&wrong, "654321");

    rc = tk_ks_open(&cfg, &ks);
    CHECK(rc == TK_OK, "open the keystore");
    if (rc != TK_OK)
        return 1;

    rc = tk_ks_init(ks, TK_DEFAULT_TOKEN, NULL, &so, &user, &srk_new, &tok_new);
    CHECK(rc == TK_OK && srk_new && tok_new, "init creates the SRK and the token");
    rc = tk_ks_init(ks, TK_DEFAULT_TOKEN, NULL, &so, &user, &srk_new, &tok_new);
    CHECK(rc == TK_OK && !srk_new && !tok_new, "init again changes nothing");
    rc = tk_token_get(tk_ks_store(ks), TK_DEFAULT_TOKEN, &tok);
    CHECK(rc == TK_OK && tok->user_pub.len && tok->so_pub.len, "token has user and SO seals");
    int64_t tid = tok ? tok->id : 0;

    rc = tk_ks_create_key(ks, tid, "needs-login", TK_ALG_ECC_P256, TK_AUTH_TOKEN, NULL, NULL, &k);
    CHECK(rc == TK_ERR_PIN_REQUIRED, "a PIN key cannot be made before login");

    rc = tk_ks_login(ks, tid, &wrong);
    CHECK(rc == TK_ERR_PIN_INCORRECT, "wrong PIN refused by the TPM");
    tk_token_free(tok);
    tok = NULL;
    tk_token_get_by_id(tk_ks_store(ks), tid, &tok);
    CHECK(tok && tok->user_fails == 1, "wrong PIN counted for the token");
    rc = tk_ks_login(ks, tid, &user);
    CHECK(rc == TK_OK && tk_ks_logged_in(ks, tid), "right PIN logs in");
    tk_token_free(tok);
    tok = NULL;
    tk_token_get_by_id(tk_ks_store(ks), tid, &tok);
    CHECK(tok && tok->user_fails == 0, "login resets the token's count");

    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        tk_alg a = algs[i];
        for (int pin = 0; pin < 2; pin++) {
            char label[64];
            snprintf(label, sizeof(label), "%s-%s", tk_alg_name(a), pin ? "pin" : "nopin");
            k = NULL;
            rc = tk_ks_create_key(ks, tid, label, a, pin ? TK_AUTH_TOKEN : TK_AUTH_NONE, NULL,
                                  NULL, &k);
            CHECK(rc == TK_OK && k->alg == a && k->ckaid.len == 20, "generate %s", label);
            if (rc != TK_OK)
                continue;
            CHECK(sign_verify_self(ks, k, scheme_of(a), TPM2_ALG_SHA256),
                  "%s: sha256 signature verifies, tampered digest does not", label);
            if (tk_alg_type(a) == TK_KEY_RSA) {
                CHECK(sign_verify_self(ks, k, TK_SIG_RSAPSS, TPM2_ALG_SHA256),
                      "%s: RSA-PSS signature verifies", label);
                CHECK(rsa_decrypt_roundtrip(ks, k, true), "%s: OAEP decrypt", label);
                CHECK(rsa_decrypt_roundtrip(ks, k, false), "%s: PKCS#1 v1.5 decrypt", label);
            } else {
                CHECK(sign_verify_self(ks, k, TK_SIG_ECDSA, TPM2_ALG_SHA384),
                      "%s: sha384 ECDSA verifies", label);
                CHECK(ecdh_matches(ks, k), "%s: ECDH matches software", label);
            }
            tk_key_free(k);
        }
    }

    /* Labels are unique per token. */
    k = NULL;
    rc = tk_ks_create_key(ks, tid, "ecc-p256-pin", TK_ALG_ECC_P256, TK_AUTH_NONE, NULL, NULL, &k);
    CHECK(rc == TK_ERR_EXISTS, "duplicate label refused");

    /* Ten keys through three object slots: the cache evicts and reloads. */
    tk_key *ten[10] = { 0 };
    int made = 0;
    for (int i = 0; i < 10; i++) {
        char label[32];
        snprintf(label, sizeof(label), "ten-%d", i);
        if (tk_ks_create_key(ks, tid, label, TK_ALG_ECC_P256, i % 2 ? TK_AUTH_TOKEN : TK_AUTH_NONE,
                             NULL, NULL, &ten[i]) == TK_OK)
            made++;
    }
    CHECK(made == 10, "ten keys generated");
    int good = 0;
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 10; i++)
            if (ten[i] && sign_verify_self(ks, ten[i], TK_SIG_ECDSA, TPM2_ALG_SHA256))
                good++;
    CHECK(good == 30, "ten keys used round-robin in one process: %d/30 signatures verify", good);

    /* Import software keys: signatures verify against the original public key. */
    EVP_PKEY *sw_rsa = EVP_RSA_gen(2048), *sw_ec = EVP_EC_gen("P-256");
    k = NULL;
    rc = tk_ks_import_pkey(ks, tid, "imp-rsa", sw_rsa, TK_AUTH_TOKEN, &k);
    CHECK(rc == TK_OK && k->origin == TK_ORIGIN_IMPORTED, "import an RSA key (PIN)");
    CHECK(k && sign_verify(ks, k, sw_rsa, TK_SIG_RSASSA, TPM2_ALG_SHA256, "x", false),
          "imported RSA key signs for the original public key");
    tk_key_free(k);
    k = NULL;
    rc = tk_ks_import_pkey(ks, tid, "imp-ec", sw_ec, TK_AUTH_NONE, &k);
    CHECK(rc == TK_OK, "import an EC key (no PIN)");
    CHECK(k && sign_verify(ks, k, sw_ec, TK_SIG_ECDSA, TPM2_ALG_SHA256, "x", false),
          "imported EC key signs for the original public key");

    /* Export as TSS2 and import the file again (re-wrapped with ObjectChangeAuth). */
    tk_buf file = { 0 };
    tk_key *again = NULL;
    rc = tk_ks_export_tss2(ks, k, NULL, true, &file);
    CHECK(rc == TK_OK && file.len > 0 && strstr((char *)file.data, "TSS2 PRIVATE KEY"),
          "export a no-PIN key as TSS2 PEM");
    rc = tk_ks_import_file(ks, tid, "imp-ec-again", file.data, file.len, NULL, TK_AUTH_TOKEN,
                           &again);
    CHECK(rc == TK_OK && again &&
              sign_verify(ks, again, sw_ec, TK_SIG_ECDSA, TPM2_ALG_SHA256, "y", false),
          "TSS2 file imports into a PIN key that signs for the same public key");
    tk_key_free(again);
    again = NULL;
    tk_buf_free(&file);
    tk_key_free(k);
    k = NULL;

    tk_key_find_label(tk_ks_store(ks), tid, "imp-rsa", &k);
    rc = tk_ks_export_tss2(ks, k, NULL, true, &file);
    CHECK(rc == TK_ERR_PIN_REQUIRED, "exporting a PIN key needs the PIN");
    rc = tk_ks_export_tss2(ks, k, &user, false, &file);
    CHECK(rc == TK_OK && file.len > 0, "export a PIN key as TSS2 DER with the PIN as password");
    rc = tk_ks_import_file(ks, tid, "imp-rsa-again", file.data, file.len, &wrong, TK_AUTH_NONE,
                           &again);
    CHECK(rc == TK_ERR_PASSPHRASE, "re-import with a wrong password refused");
    rc = tk_ks_import_file(ks, tid, "imp-rsa-again", file.data, file.len, &user, TK_AUTH_NONE,
                           &again);
    CHECK(rc == TK_OK && again &&
              sign_verify(ks, again, sw_rsa, TK_SIG_RSASSA, TPM2_ALG_SHA256, "z", false),
          "re-import with the PIN as password signs for the original key");
    tk_key_free(again);
    tk_buf_free(&file);

    /* After logout a PIN key is refused without touching the TPM. */
    tk_ks_logout(ks, tid);
    CHECK(!tk_ks_logged_in(ks, tid), "logout");
    {
        uint8_t md[32] = { 0 };
        tk_buf sig = { 0 };
        rc = tk_ks_sign(ks, k, TK_SIG_RSASSA, TPM2_ALG_SHA256, md, sizeof(md), &sig);
        CHECK(rc == TK_ERR_PIN_REQUIRED, "PIN key refused after logout");
        tk_buf_free(&sig);
    }
    tk_key_free(k);

    /* Public export. */
    k = NULL;
    tk_key_find_label(tk_ks_store(ks), tid, "ecc-p256-nopin", &k);
    tk_buf pem = { 0 };
    rc = k ? tk_ks_export_public_pem(k, &pem) : TK_ERR_NOT_FOUND;
    CHECK(rc == TK_OK && pem.len && strstr((char *)pem.data, "BEGIN PUBLIC KEY"),
          "export the public key as PEM");
    tk_buf_free(&pem);
    tk_key_free(k);

    /* The TPM's random numbers. */
    uint8_t r1[48] = { 0 }, r2[48] = { 0 };
    rc = tk_tpm_random(tk_ks_tpm(ks), r1, sizeof(r1));
    tk_tpm_random(tk_ks_tpm(ks), r2, sizeof(r2));
    CHECK(rc == TK_OK && memcmp(r1, r2, sizeof(r1)), "random bytes from the TPM");

    tk_tpm_info info;
    rc = tk_tpm_get_info(tk_ks_tpm(ks), &info);
    CHECK(rc == TK_OK && info.manufacturer[0] && info.max_tries > 0, "TPM info: %s %s",
          info.manufacturer, info.vendor);

    for (int i = 0; i < 10; i++)
        tk_key_free(ten[i]);
    EVP_PKEY_free(sw_rsa);
    EVP_PKEY_free(sw_ec);
    tk_token_free(tok);
    tk_ks_close(ks);   /* its loaded keys take the TPM's object slots */
    wire_check();
    tk_secret_clear(&so);
    tk_secret_clear(&user);
    tk_secret_clear(&wrong);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
