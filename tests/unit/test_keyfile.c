/* SPDX-License-Identifier: BSD-3-Clause */
/* tk_keyfile_parse_private against key files made here by the openssl CLI and ssh-keygen. */
#include "config.h"

#include <time.h>

#include <openssl/core_names.h>
#include <openssl/x509.h>

#include "crypto_test.h"
#include "tpmkeys.h"

static tk_secret pass_right, pass_wrong;

/* Parse a file of the temporary folder. */
static tk_rc parse(const char *name, const tk_secret *pass, EVP_PKEY **out)
{
    uint8_t *data;
    size_t len;
    tk_rc rc;

    *out = NULL;
    if (!read_file(name, &data, &len))
        return tk_fail(TK_ERR_IO, "test: cannot read %s", name);
    rc = tk_keyfile_parse_private(data, len, pass, out);
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

/* The parsed private key signs what the file's public key verifies. */
static bool signs_for(EVP_PKEY *priv, EVP_PKEY *pub)
{
    static const unsigned char msg[] = "tpmkeys test message";
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    bool ok = s && v && EVP_DigestSignInit(s, NULL, EVP_sha256(), NULL, priv) == 1 &&
              EVP_DigestSign(s, sig, &siglen, msg, sizeof(msg)) == 1 &&
              EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, pub) == 1 &&
              EVP_DigestVerify(v, sig, siglen, msg, sizeof(msg)) == 1;

    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(v);
    ERR_clear_error();
    return ok;
}

/* A key file parses, its public part equals pubfile's, and its private part signs. */
static void expect_key(const char *file, const char *pubfile, const tk_secret *pass,
                       const char *type, int bits, const char *what)
{
    EVP_PKEY *pk = NULL, *pub = read_pubkey(pubfile);
    tk_rc rc = parse(file, pass, &pk);

    check_rc(rc, TK_OK, NULL, what);
    if (rc == TK_OK) {
        check(pub && EVP_PKEY_eq(pk, pub) == 1, "%s: public part matches the file's", what);
        check(EVP_PKEY_is_a(pk, type) && EVP_PKEY_get_bits(pk) == bits, "%s: %s-%d", what,
              type, bits);
        check(pub && signs_for(pk, pub), "%s: private part signs for the public key", what);
    }
    EVP_PKEY_free(pk);
    EVP_PKEY_free(pub);
}

static void expect_fail(const char *file, const tk_secret *pass, tk_rc want, const char *msg,
                        const char *what)
{
    EVP_PKEY *pk = NULL;
    tk_rc rc = parse(file, pass, &pk);

    check_rc(rc, want, msg, what);
    check(pk == NULL, "%s: no key handed out", what);
    EVP_PKEY_free(pk);
}

static void expect_bytes_fail(const uint8_t *data, size_t len, tk_rc want, const char *msg,
                              const char *what)
{
    EVP_PKEY *pk = NULL;

    check_rc(tk_keyfile_parse_private(data, len, NULL, &pk), want, msg, what);
    EVP_PKEY_free(pk);
}

/* ------------------------------------------------------------------ groups of checks */

static void test_plain_formats(void)
{
    bool made =
        run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.p8.pem") &&
        run("openssl pkey -in rsa2048.p8.pem -pubout -out rsa2048.pub") &&
        run("openssl pkey -in rsa2048.p8.pem -outform DER -out rsa2048.p8.der") &&
        run("openssl pkey -in rsa2048.p8.pem -traditional -out rsa2048.p1.pem") &&
        run("openssl rsa -in rsa2048.p8.pem -traditional -outform DER -out rsa2048.p1.der") &&
        run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out rsa3072.p8.pem") &&
        run("openssl pkey -in rsa3072.p8.pem -pubout -out rsa3072.pub") &&
        run("openssl pkey -in rsa3072.p8.pem -traditional -out rsa3072.p1.pem") &&
        run("openssl ecparam -genkey -name prime256v1 -out p256.params.pem") &&
        run("openssl ec -in p256.params.pem -out p256.sec1.pem") &&
        run("openssl ec -in p256.params.pem -pubout -out p256.pub") &&
        run("openssl ec -in p256.params.pem -outform DER -out p256.sec1.der") &&
        run("openssl pkcs8 -topk8 -nocrypt -in p256.sec1.pem -out p256.p8.pem") &&
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.p8.pem") &&
        run("openssl pkey -in p384.p8.pem -pubout -out p384.pub") &&
        run("openssl pkey -in p384.p8.pem -outform DER -out p384.p8.der") &&
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out p521.p8.pem") &&
        run("openssl pkey -in p521.p8.pem -pubout -out p521.pub");

    check(made, "openssl made the plain test keys");
    if (!made)
        return;
    expect_key("rsa2048.p8.pem", "rsa2048.pub", NULL, "RSA", 2048, "RSA-2048 PKCS#8 PEM");
    expect_key("rsa2048.p8.der", "rsa2048.pub", NULL, "RSA", 2048, "RSA-2048 PKCS#8 DER");
    expect_key("rsa2048.p1.pem", "rsa2048.pub", NULL, "RSA", 2048, "RSA-2048 PKCS#1 PEM");
    expect_key("rsa2048.p1.der", "rsa2048.pub", NULL, "RSA", 2048, "RSA-2048 PKCS#1 DER");
    expect_key("rsa3072.p1.pem", "rsa3072.pub", NULL, "RSA", 3072, "RSA-3072 PKCS#1 PEM");
    expect_key("p256.params.pem", "p256.pub", NULL, "EC", 256,
               "P-256 SEC1 PEM after an EC PARAMETERS block");
    expect_key("p256.sec1.pem", "p256.pub", NULL, "EC", 256, "P-256 SEC1 PEM");
    expect_key("p256.sec1.der", "p256.pub", NULL, "EC", 256, "P-256 SEC1 DER");
    expect_key("p256.p8.pem", "p256.pub", NULL, "EC", 256, "P-256 PKCS#8 PEM");
    expect_key("p384.p8.pem", "p384.pub", NULL, "EC", 384, "P-384 PKCS#8 PEM");
    expect_key("p384.p8.der", "p384.pub", NULL, "EC", 384, "P-384 PKCS#8 DER");
    expect_key("p521.p8.pem", "p521.pub", NULL, "EC", 521, "P-521 PKCS#8 PEM");
    /* a passphrase given for a clear key is ignored */
    expect_key("rsa2048.p8.pem", "rsa2048.pub", &pass_wrong, "RSA", 2048,
               "clear key with a needless passphrase");

    /* a certificate before the key (combined PEM, as nginx/haproxy setups use) */
    made = run("openssl req -x509 -new -key p256.sec1.pem -subj /CN=tpmkeys-test -days 1 "
               "-out p256.crt") &&
           run("cat p256.crt p256.p8.pem > p256.combined.pem");
    check(made, "openssl made a certificate");
    if (made)
        expect_key("p256.combined.pem", "p256.pub", NULL, "EC", 256,
                   "certificate followed by the key");
}

static void test_encrypted(void)
{
    bool made =
        run("printf 'correct horse' > pass.txt") &&
        run("openssl pkcs8 -topk8 -v2 aes256 -in rsa2048.p8.pem -passout file:pass.txt "
            "-out rsa2048.enc.p8.pem") &&
        run("openssl pkcs8 -topk8 -v2 aes256 -in p256.p8.pem -passout file:pass.txt "
            "-outform DER -out p256.enc.p8.der") &&
        run("openssl rsa -aes256 -traditional -in rsa2048.p8.pem -passout file:pass.txt "
            "-out rsa2048.enc.p1.pem") &&
        run("openssl ec -aes128 -in p384.p8.pem -passout file:pass.txt -out p384.enc.sec1.pem") &&
        run("grep -q 'Proc-Type: 4,ENCRYPTED' rsa2048.enc.p1.pem") &&
        run("grep -q 'BEGIN ENCRYPTED PRIVATE KEY' rsa2048.enc.p8.pem");

    check(made, "openssl made the encrypted test keys");
    if (!made)
        return;
    expect_key("rsa2048.enc.p8.pem", "rsa2048.pub", &pass_right, "RSA", 2048,
               "encrypted PKCS#8 PEM, right passphrase");
    expect_fail("rsa2048.enc.p8.pem", NULL, TK_ERR_PASSPHRASE,
                "is encrypted: give its passphrase (--passphrase-file)",
                "encrypted PKCS#8 PEM, no passphrase");
    expect_fail("rsa2048.enc.p8.pem", &pass_wrong, TK_ERR_PASSPHRASE, "wrong passphrase",
                "encrypted PKCS#8 PEM, wrong passphrase");
    expect_key("p256.enc.p8.der", "p256.pub", &pass_right, "EC", 256,
               "encrypted PKCS#8 DER, right passphrase");
    expect_fail("p256.enc.p8.der", NULL, TK_ERR_PASSPHRASE, "is encrypted",
                "encrypted PKCS#8 DER, no passphrase");
    expect_fail("p256.enc.p8.der", &pass_wrong, TK_ERR_PASSPHRASE, "wrong passphrase",
                "encrypted PKCS#8 DER, wrong passphrase");
    expect_key("rsa2048.enc.p1.pem", "rsa2048.pub", &pass_right, "RSA", 2048,
               "traditional encrypted RSA PEM, right passphrase");
    expect_fail("rsa2048.enc.p1.pem", NULL, TK_ERR_PASSPHRASE, "is encrypted",
                "traditional encrypted RSA PEM, no passphrase");
    expect_fail("rsa2048.enc.p1.pem", &pass_wrong, TK_ERR_PASSPHRASE, "wrong passphrase",
                "traditional encrypted RSA PEM, wrong passphrase");
    expect_key("p384.enc.sec1.pem", "p384.pub", &pass_right, "EC", 384,
               "traditional encrypted EC PEM, right passphrase");
    expect_fail("p384.enc.sec1.pem", &pass_wrong, TK_ERR_PASSPHRASE, "wrong passphrase",
                "traditional encrypted EC PEM, wrong passphrase");
}

/* An encrypted PKCS#8 key whose PBKDF2 asks for iter iterations, built without running
 * the key derivation (the encrypted octets are noise: the count must be refused first). */
static bool write_pbkdf2_key(const char *file, int iter)
{
    unsigned char salt[16] = { 1 }, iv[16] = { 2 }, noise[48] = { 3 };
    X509_ALGOR *pbe = PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), iter, salt, sizeof(salt), iv,
                                        NID_hmacWithSHA256);
    X509_SIG *sig = X509_SIG_new();
    X509_ALGOR *alg = NULL;
    ASN1_OCTET_STRING *data = NULL;
    char path[512];
    FILE *f = NULL;
    bool ok = false;

    snprintf(path, sizeof(path), "%s/%s", t_dir, file);
    if (pbe && sig) {
        X509_SIG_getm(sig, &alg, &data);
        ok = X509_ALGOR_copy(alg, pbe) && ASN1_OCTET_STRING_set(data, noise, sizeof(noise)) &&
             (f = fopen(path, "w")) && PEM_write_PKCS8(f, sig);
    }
    if (f)
        ok = !fclose(f) && ok;
    X509_ALGOR_free(pbe);
    X509_SIG_free(sig);
    return ok;
}

static void test_costly_kdf(void)
{
    time_t t0 = time(NULL);

    check(write_pbkdf2_key("huge-iter.p8.pem", 0x7fffffff),
          "an encrypted PKCS#8 key asking for 2^31-1 PBKDF2 iterations");
    expect_fail("huge-iter.p8.pem", &pass_right, TK_ERR_UNSUPPORTED,
                "asks for 2147483647 key-derivation iterations",
                "2^31-1 PBKDF2 iterations are refused");
    check(time(NULL) - t0 < 5, "refused at once, not after the key derivation");
    check(write_pbkdf2_key("ok-iter.p8.pem", 20000000),
          "an encrypted PKCS#8 key asking for 20,000,000 iterations (the limit)");
    /* At the limit the count passes and the (noise) ciphertext fails to decrypt; the
     * derivation itself is not waited for: no passphrase, so nothing is derived. */
    expect_fail("ok-iter.p8.pem", NULL, TK_ERR_PASSPHRASE, "is encrypted",
                "20,000,000 iterations pass the limit (then ask for the passphrase)");
}

static void test_corrupt(void)
{
    static const uint8_t garbage[] = { 0x9f, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x42 };
    static const char text[] = "hello, this is not a key\n";
    static const char bad_b64[] = "-----BEGIN PRIVATE KEY-----\n!!!!not base64!!!!\n"
                                  "-----END PRIVATE KEY-----\n";
    uint8_t *data;
    size_t len;
    bool made =
        run("head -c 700 rsa2048.p8.pem > trunc-end.pem") &&
        run("sed '5,9d' rsa2048.p8.pem > trunc-middle.pem") &&
        run("head -c 300 rsa2048.p8.der > trunc.der") &&
        run("sed '2,4d' rsa2048.p1.pem > trunc-p1.pem");

    check(made, "made truncated copies");
    if (made) {
        expect_fail("trunc-end.pem", NULL, TK_ERR_INVALID, "truncated or corrupt",
                    "PEM cut off before its END line");
        expect_fail("trunc-middle.pem", NULL, TK_ERR_INVALID, "PKCS#8",
                    "PEM with lines missing in the middle");
        expect_fail("trunc.der", NULL, TK_ERR_INVALID, "expected PEM", "truncated DER");
        expect_fail("trunc-p1.pem", NULL, TK_ERR_INVALID, "PKCS#1 RSAPrivateKey",
                    "PKCS#1 PEM with lines missing");
    }
    expect_bytes_fail(garbage, sizeof(garbage), TK_ERR_INVALID, "not a private key file",
                      "binary garbage");
    expect_bytes_fail((const uint8_t *)text, strlen(text), TK_ERR_INVALID,
                      "not a private key file", "text garbage");
    expect_bytes_fail((const uint8_t *)bad_b64, strlen(bad_b64), TK_ERR_INVALID, "PRIVATE KEY",
                      "PEM with invalid base64");
    expect_bytes_fail((const uint8_t *)"", 0, TK_ERR_INVALID, "empty", "empty input");

    /* public keys and certificates hold no private key */
    expect_fail("rsa2048.pub", NULL, TK_ERR_INVALID, "contains no private key",
                "public key PEM");
    expect_fail("p256.crt", NULL, TK_ERR_INVALID, "contains no private key", "certificate PEM");
    if (run("openssl pkey -pubin -in p384.pub -outform DER -out p384.pub.der") &&
        run("openssl x509 -in p256.crt -outform DER -out p256.crt.der")) {
        expect_fail("p384.pub.der", NULL, TK_ERR_INVALID, "contains no private key",
                    "public key DER");
        expect_fail("p256.crt.der", NULL, TK_ERR_INVALID, "contains no private key",
                    "certificate DER");
    }
    if (read_file(data_file("tss2-tpm2openssl-ec-noauth.pem"), &data, &len)) {
        expect_bytes_fail(data, len, TK_ERR_INVALID, "TSS2 PRIVATE KEY",
                          "a TSS2 PRIVATE KEY is not a software key");
        free(data);
    }
    if (run("openssl asn1parse -noout -in '%s' -out tss2.der",
            data_file("tss2-tpm2openssl-rsa-auth.pem")))
        expect_fail("tss2.der", NULL, TK_ERR_INVALID, "TSS2 PRIVATE KEY",
                    "a TSS2 PRIVATE KEY in DER is not a software key");
    else
        check(false, "openssl converted the TSS2 key to DER");
}

static void test_unsupported(void)
{
    struct {
        const char *cmd, *file, *msg, *what;
    } cases[] = {
        { "openssl genpkey -algorithm ED25519 -out ed25519.pem", "ed25519.pem", "Ed25519",
          "Ed25519 PKCS#8" },
        { "openssl genpkey -algorithm X25519 -out x25519.pem", "x25519.pem", "X25519",
          "X25519 PKCS#8" },
        { "openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 "
          "-out dsa.params && openssl genpkey -paramfile dsa.params -out dsa.pem",
          "dsa.pem", "DSA", "DSA PKCS#8" },
        { "openssl pkey -in dsa.pem -traditional -out dsa.trad.pem && "
          "grep -q 'BEGIN DSA PRIVATE KEY' dsa.trad.pem", "dsa.trad.pem", "DSA",
          "DSA traditional PEM" },
        { "openssl genpkey -algorithm DH -pkeyopt group:ffdhe2048 -out dh.pem", "dh.pem",
          "Diffie-Hellman", "DH PKCS#8" },
        { "openssl ecparam -genkey -name secp256k1 -noout -out k1.pem", "k1.pem",
          "secp256k1", "EC on secp256k1" },
        { "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1536 -out rsa1536.pem",
          "rsa1536.pem", "1536 bits", "RSA-1536" },
        { "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
          "-pkeyopt rsa_keygen_pubexp:4294967297 -out rsa-bige.pem", "rsa-bige.pem",
          "below 2^32", "RSA with e = 2^32 + 1" },
        { "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
          "-pkeyopt rsa_keygen_primes:3 -out rsa-3prime.pem", "rsa-3prime.pem", "multi-prime",
          "three-prime RSA" },
        { "openssl genpkey -algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048 -out rsapss.pem",
          "rsapss.pem", "RSA-PSS", "RSA-PSS-restricted key" },
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (!run("%s", cases[i].cmd)) {
            check(false, "openssl made the %s test key", cases[i].what);
            continue;
        }
        expect_fail(cases[i].file, NULL, TK_ERR_UNSUPPORTED, cases[i].msg, cases[i].what);
    }
    /* an odd exponent other than 65537 is fine */
    if (run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
            "-pkeyopt rsa_keygen_pubexp:3 -out rsa-e3.pem") &&
        run("openssl pkey -in rsa-e3.pem -pubout -out rsa-e3.pub"))
        expect_key("rsa-e3.pem", "rsa-e3.pub", NULL, "RSA", 2048, "RSA with e = 3");
    else
        check(false, "openssl made an RSA key with e = 3");
}

/* CRT values of the OpenSSH RSA key equal those OpenSSL computes for the PKCS#8 copy. */
static void compare_rsa_crt(EVP_PKEY *a, EVP_PKEY *b, const char *what)
{
    static const char *const names[] = { OSSL_PKEY_PARAM_RSA_D,
                                         OSSL_PKEY_PARAM_RSA_EXPONENT1,
                                         OSSL_PKEY_PARAM_RSA_EXPONENT2,
                                         OSSL_PKEY_PARAM_RSA_COEFFICIENT1 };
    bool same = true;

    for (size_t i = 0; i < 4; i++) {
        BIGNUM *x = NULL, *y = NULL;
        if (!EVP_PKEY_get_bn_param(a, names[i], &x) || !EVP_PKEY_get_bn_param(b, names[i], &y) ||
            BN_cmp(x, y) != 0)
            same = false;
        BN_clear_free(x);
        BN_clear_free(y);
    }
    check(same, "%s: d, dmp1, dmq1 and iqmp equal the PKCS#8 conversion's", what);
}

static void test_openssh(void)
{
    static const struct {
        const char *type;
        int bits;
        const char *pkey_type;
    } keys[] = {
        { "rsa", 2048, "RSA" }, { "rsa", 3072, "RSA" }, { "ecdsa", 256, "EC" },
        { "ecdsa", 384, "EC" }, { "ecdsa", 521, "EC" },
    };

    if (!have_tool("ssh-keygen")) {
        printf("# SKIP OpenSSH checks: ssh-keygen not found\n");
        return;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char file[64], pub[80], what[80];
        EVP_PKEY *a = NULL, *b = NULL;

        snprintf(file, sizeof(file), "ssh_%s%d", keys[i].type, keys[i].bits);
        snprintf(pub, sizeof(pub), "%s.pem.pub", file);
        snprintf(what, sizeof(what), "OpenSSH %s-%d", keys[i].type, keys[i].bits);
        if (!run("ssh-keygen -q -t %s -b %d -N '' -C test -f %s", keys[i].type, keys[i].bits,
                 file) ||
            !run("grep -q 'BEGIN OPENSSH PRIVATE KEY' %s", file) ||
            !run("ssh-keygen -e -m PKCS8 -f %s.pub > %s", file, pub) ||
            !run("cp %s %s.p8 && ssh-keygen -q -p -m PKCS8 -N '' -P '' -f %s.p8", file, file,
                 file)) {
            check(false, "ssh-keygen made the %s test key", what);
            continue;
        }
        expect_key(file, pub, NULL, keys[i].pkey_type, keys[i].bits, what);
        if (!strcmp(keys[i].type, "rsa")) {
            char p8[80];
            snprintf(p8, sizeof(p8), "%s.p8", file);
            if (parse(file, NULL, &a) == TK_OK && parse(p8, NULL, &b) == TK_OK)
                compare_rsa_crt(a, b, what);
            else
                check(false, "%s: parse the OpenSSH and PKCS#8 copies", what);
            EVP_PKEY_free(a);
            EVP_PKEY_free(b);
        }
    }

    if (run("ssh-keygen -q -t ed25519 -N '' -f ssh_ed25519"))
        expect_fail("ssh_ed25519", NULL, TK_ERR_UNSUPPORTED, "Ed25519", "OpenSSH Ed25519");
    else
        check(false, "ssh-keygen made an Ed25519 key");
    if (run("ssh-keygen -q -t ecdsa -b 256 -N 'secret pass' -f ssh_enc"))
        expect_fail("ssh_enc", &pass_right, TK_ERR_UNSUPPORTED, "ssh-keygen -p -m PKCS8",
                    "encrypted OpenSSH key");
    else
        check(false, "ssh-keygen made an encrypted key");
    /* a damaged OpenSSH key: the binary body cut short and re-armoured */
    if (run("ssh-keygen -q -t ecdsa -b 256 -N '' -f ssh_bad") &&
        run("sed -n '2,$p' ssh_bad | sed '$d' | tr -d '\\n' | base64 -d > ssh_bad.bin") &&
        run("head -c 120 ssh_bad.bin > ssh_cut.bin && "
            "(echo '-----BEGIN OPENSSH PRIVATE KEY-----'; base64 ssh_cut.bin; "
            "echo '-----END OPENSSH PRIVATE KEY-----') > ssh_cut"))
        expect_fail("ssh_cut", NULL, TK_ERR_INVALID, "OpenSSH private key is truncated",
                    "truncated OpenSSH key");
    else
        check(false, "made a truncated OpenSSH key");
}

int main(void)
{
    if (!have_tool("openssl")) {
        printf("# SKIP: the openssl command is needed to make test keys\n");
        return 77;
    }
    t_setup();
    tk_secret_set(&pass_right, "correct horse", 13);
    tk_secret_set(&pass_wrong, "battery staple", 14);

    test_plain_formats();
    test_encrypted();
    test_costly_kdf();
    test_corrupt();
    test_unsupported();
    test_openssh();

    tk_secret_clear(&pass_right);
    tk_secret_clear(&pass_wrong);
    return t_finish();
}
