/* SPDX-License-Identifier: BSD-3-Clause */
/* Pure helpers: errors, secrets, the algorithm table, URIs. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpmkeys.h"

static int failures, checks;

static void check(int cond, const char *what)
{
    checks++;
    printf("%s %d - %s\n", cond ? "ok" : "not ok", checks, what);
    if (!cond)
        failures++;
}

static void check_str(const char *got, const char *want, const char *what)
{
    int same = got && !strcmp(got, want);
    check(same, what);
    if (!same)
        printf("#   got '%s', want '%s'\n", got ? got : "(null)", want);
}

int main(void)
{
    char *s;
    tk_secret sec;
    uint8_t big[TK_SECRET_MAX + 1] = { 0 };

    /* errors */
    check(tk_fail(TK_ERR_NOT_FOUND, "no key '%s'", "web") == TK_ERR_NOT_FOUND,
          "tk_fail returns its code");
    check_str(tk_errmsg(), "no key 'web'", "tk_fail sets the message");
    tk_fail_ctx(TK_ERR_NOT_FOUND, "signing");
    check_str(tk_errmsg(), "signing: no key 'web'", "tk_fail_ctx prefixes context");
    tk_clear_error();
    check_str(tk_errmsg(), "", "tk_clear_error empties the message");
    check_str(tk_rc_name(TK_ERR_PIN_LOCKED), "TK_ERR_PIN_LOCKED", "rc names");
    check_str(tk_rc_name((tk_rc)999), "TK_ERR_UNKNOWN", "unknown rc name");
    {
        char longer[2000];
        memset(longer, 'x', sizeof(longer) - 1);
        longer[sizeof(longer) - 1] = '\0';
        tk_fail(TK_ERR_INVALID, "%s", longer);
        tk_fail_ctx(TK_ERR_INVALID, "%s", longer);
        check(strlen(tk_errmsg()) < 600, "over-long messages are truncated, not overflowed");
    }

    /* secrets */
    check(tk_secret_set(&sec, "1234", 4) == TK_OK && sec.len == 4 && !memcmp(sec.data, "1234", 4),
          "secret set");
    tk_secret_clear(&sec);
    check(sec.len == 0 && sec.data[0] == 0, "secret cleared");
    check(tk_secret_set(&sec, big, sizeof(big)) == TK_ERR_INVALID, "over-long secret refused");

    /* algorithms */
    check(tk_alg_from_name("rsa3072") == TK_ALG_RSA3072, "rsa3072 by name");
    check(tk_alg_from_name("ecc-p384") == TK_ALG_ECC_P384, "ecc-p384 by name");
    check(tk_alg_from_name("P-256") == TK_ALG_ECC_P256, "P-256 alias");
    check(tk_alg_from_name("ed25519") == TK_ALG_NONE, "unknown name");
    check(tk_alg_bits(TK_ALG_ECC_P521) == 521 && tk_alg_type(TK_ALG_ECC_P521) == TK_KEY_EC,
          "p521 shape");
    check(tk_alg_curve(TK_ALG_RSA2048) == TPM2_ECC_NONE, "RSA has no curve");
    check_str(tk_alg_name(TK_ALG_RSA4096), "rsa4096", "name of rsa4096");
    {
        TPM2B_PUBLIC p = { 0 };
        p.publicArea.type = TPM2_ALG_RSA;
        p.publicArea.parameters.rsaDetail.keyBits = 3072;
        check(tk_alg_from_public(&p) == TK_ALG_RSA3072, "alg from an RSA public area");
        p.publicArea.type = TPM2_ALG_ECC;
        p.publicArea.parameters.eccDetail.curveID = TPM2_ECC_NIST_P384;
        check(tk_alg_from_public(&p) == TK_ALG_ECC_P384, "alg from an ECC public area");
        p.publicArea.parameters.eccDetail.curveID = TPM2_ECC_BN_P256;
        check(tk_alg_from_public(&p) == TK_ALG_NONE, "unsupported curve");
    }

    /* URIs */
    s = tk_uri_pkcs11("tpmkeys", "web");
    check_str(s, "pkcs11:token=tpmkeys;object=web;type=private", "PKCS#11 URI");
    free(s);
    s = tk_uri_pkcs11("my token", "a;b/c%");
    check_str(s, "pkcs11:token=my%20token;object=a%3Bb%2Fc%25;type=private",
              "PKCS#11 URI percent-encodes reserved characters");
    free(s);
    s = tk_uri_provider("tpmkeys", "web server");
    check_str(s, "tpmkeys:object=web%20server", "provider URI, default token");
    free(s);
    s = tk_uri_provider("ops", "web");
    check_str(s, "tpmkeys:token=ops;object=web", "provider URI names another token");
    free(s);
    s = tk_uri_pct_encode((const uint8_t *)"\x00\xff", 2);
    check_str(s, "%00%FF", "binary values are encoded");
    free(s);

    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
