/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Software private key files: PEM or DER, PKCS#1 RSA, SEC1 EC, PKCS#8 (plain and
 * encrypted), traditional encrypted PEM (Proc-Type/DEK-Info) and unencrypted OpenSSH
 * private keys (openssh-key-v1, RSA and ECDSA).  The result is checked to be a key a
 * TPM 2.0 can hold.  Every intermediate copy of key material is wiped.
 */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

#define MSG_NEED_PASS "the key is encrypted: give its passphrase (--passphrase-file)"
#define MSG_WRONG_PASS "wrong passphrase for the encrypted key"
#define MSG_TPM_TYPES "a TPM 2.0 holds RSA keys of 1024, 2048, 3072 or 4096 bits and NIST " \
    "P-256, P-384 or P-521 EC keys"

static bool have_pass(const tk_secret *pass)
{
    return pass && pass->len > 0;
}

static const char *find_bytes(const uint8_t *data, size_t len, const char *needle)
{
    return memmem(data, len, needle, strlen(needle));
}

/* ------------------------------------------------------------------ what a TPM can hold */

static const char *friendly_type(EVP_PKEY *pkey)
{
    static const struct {
        const char *type, *name;
    } names[] = {
        { "ED25519", "Ed25519" }, { "ED448", "Ed448" }, { "X25519", "X25519" },
        { "X448", "X448" },       { "DSA", "DSA" },     { "DH", "Diffie-Hellman" },
        { "DHX", "X9.42 Diffie-Hellman" }, { "SM2", "SM2" },
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (EVP_PKEY_is_a(pkey, names[i].type))
            return names[i].name;
    return EVP_PKEY_get0_type_name(pkey) ? EVP_PKEY_get0_type_name(pkey) : "unknown";
}

static bool has_bn(EVP_PKEY *pkey, const char *param)
{
    BIGNUM *bn = NULL;
    bool ok = EVP_PKEY_get_bn_param(pkey, param, &bn) && bn;

    BN_clear_free(bn);
    ERR_clear_error();
    return ok;
}

static tk_rc check_rsa(EVP_PKEY *pkey)
{
    int bits = EVP_PKEY_get_bits(pkey);
    BIGNUM *e = NULL;
    tk_rc rc = TK_OK;

    if (bits != 1024 && bits != 2048 && bits != 3072 && bits != 4096)
        return tk_fail(TK_ERR_UNSUPPORTED, "RSA key of %d bits: a TPM 2.0 holds RSA keys of "
                       "1024, 2048, 3072 or 4096 bits", bits);
    if (!has_bn(pkey, OSSL_PKEY_PARAM_RSA_D) || !has_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR1) ||
        !has_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR2))
        return tk_fail(TK_ERR_INVALID, "the RSA key lacks its private exponent or primes");
    if (has_bn(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3))
        return tk_fail(TK_ERR_UNSUPPORTED, "multi-prime RSA key: a TPM 2.0 holds two-prime RSA "
                       "keys only");
    if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e) || !e) {
        ERR_clear_error();
        return tk_fail(TK_ERR_INVALID, "the RSA key has no public exponent");
    }
    if (BN_num_bits(e) > 32)
        rc = tk_fail(TK_ERR_UNSUPPORTED, "RSA public exponent is %d bits: a TPM 2.0 takes "
                     "exponents below 2^32", BN_num_bits(e));
    else if (!BN_is_odd(e) || BN_is_one(e))
        rc = tk_fail(TK_ERR_UNSUPPORTED, "RSA public exponent %lu is not an odd number above 1",
                     (unsigned long)BN_get_word(e));
    BN_free(e);
    return rc;
}

static tk_rc check_ec(EVP_PKEY *pkey)
{
    char group[64];

    if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                        NULL)) {
        ERR_clear_error();
        return tk_fail(TK_ERR_UNSUPPORTED, "EC key with explicit curve parameters: %s",
                       MSG_TPM_TYPES);
    }
    if (tk_curve_from_group(group) == TPM2_ECC_NONE)
        return tk_fail(TK_ERR_UNSUPPORTED, "EC key on curve %s: %s", group, MSG_TPM_TYPES);
    if (!has_bn(pkey, OSSL_PKEY_PARAM_PRIV_KEY))
        return tk_fail(TK_ERR_INVALID, "the EC key has no private part");
    return TK_OK;
}

static tk_rc check_supported(EVP_PKEY *pkey)
{
    if (EVP_PKEY_is_a(pkey, "RSA"))
        return check_rsa(pkey);
    if (EVP_PKEY_is_a(pkey, "EC"))
        return check_ec(pkey);
    if (EVP_PKEY_is_a(pkey, "RSA-PSS"))
        return tk_fail(TK_ERR_UNSUPPORTED, "RSA-PSS-restricted keys (id-RSASSA-PSS) are not "
                       "supported: use a plain RSA key (rsaEncryption)");
    return tk_fail(TK_ERR_UNSUPPORTED, "%s keys cannot be held by a TPM: %s",
                   friendly_type(pkey), MSG_TPM_TYPES);
}

/* ------------------------------------------------------------------ PKCS#8 */

static tk_rc pkcs8_to_pkey(const PKCS8_PRIV_KEY_INFO *p8, EVP_PKEY **out)
{
    EVP_PKEY *pkey = EVP_PKCS82PKEY(p8);

    if (!pkey)
        return tk_fail_ossl(TK_ERR_UNSUPPORTED, "cannot decode the PKCS#8 private key (an "
                            "algorithm OpenSSL does not know?)");
    *out = pkey;
    return TK_OK;
}

static tk_rc parse_pkcs8(const uint8_t *der, size_t len, EVP_PKEY **out)
{
    const unsigned char *p = der;
    PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    tk_rc rc;

    if (!p8 || (size_t)(p - der) != len) {
        PKCS8_PRIV_KEY_INFO_free(p8);
        return tk_fail_ossl(TK_ERR_INVALID, "not a valid PKCS#8 PrivateKeyInfo (truncated or "
                            "corrupt)");
    }
    rc = pkcs8_to_pkey(p8, out);
    PKCS8_PRIV_KEY_INFO_free(p8); /* clears the key octets */
    return rc;
}

/* Whether OpenSSL's error queue says "not supported" rather than "could not decrypt". */
static bool errors_say_unsupported(void)
{
    unsigned long e;
    bool unsupported = false;

    while ((e = ERR_get_error()) != 0) {
        int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e);
        if (reason == ERR_R_UNSUPPORTED ||
            (lib == ERR_LIB_EVP && (reason == EVP_R_UNSUPPORTED_CIPHER ||
                                    reason == EVP_R_UNKNOWN_PBE_ALGORITHM ||
                                    reason == EVP_R_UNSUPPORTED_KEY_DERIVATION_FUNCTION ||
                                    reason == EVP_R_UNSUPPORTED_PRF ||
                                    reason == EVP_R_UNSUPPORTED_KEYLENGTH)))
            unsupported = true;
    }
    return unsupported;
}

/* Key-derivation iterations beyond this are refused before any work is done: a file
 * that asks for 2^31 PBKDF2 iterations would hold the caller for hours.  (OWASP asks
 * for 600,000 with SHA-256; scrypt is bounded by OpenSSL's own memory limit.) */
#define PBE_ITER_MAX 20000000L

/* The iteration count a PBES2/PBKDF2 or PKCS#5 v1 / PKCS#12 PBE asks for; 0 when the
 * parameters say nothing we can read (PKCS8_decrypt then judges them). */
static long pbe_iterations(const X509_SIG *p8e)
{
    const X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *obj = NULL;
    const void *pval = NULL;
    int ptype = 0;
    long iter = 0;

    X509_SIG_get0(p8e, &alg, NULL);
    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if (ptype != V_ASN1_SEQUENCE || !pval)
        return 0;
    if (OBJ_obj2nid(obj) == NID_pbes2) {
        PBE2PARAM *p2 = ASN1_item_unpack(pval, ASN1_ITEM_rptr(PBE2PARAM));
        if (p2 && p2->keyfunc && OBJ_obj2nid(p2->keyfunc->algorithm) == NID_id_pbkdf2) {
            PBKDF2PARAM *kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
                                                         p2->keyfunc->parameter);
            if (kdf && kdf->iter)
                iter = ASN1_INTEGER_get(kdf->iter);
            PBKDF2PARAM_free(kdf);
        }
        PBE2PARAM_free(p2);
    } else {
        PBEPARAM *pp = ASN1_item_unpack(pval, ASN1_ITEM_rptr(PBEPARAM));
        if (pp && pp->iter)
            iter = ASN1_INTEGER_get(pp->iter);
        PBEPARAM_free(pp);
    }
    ERR_clear_error();
    return iter;
}

static tk_rc decrypt_pkcs8(const X509_SIG *p8e, const tk_secret *pass, EVP_PKEY **out)
{
    PKCS8_PRIV_KEY_INFO *p8;
    long iter = pbe_iterations(p8e);
    tk_rc rc;

    /* ASN1_INTEGER_get: -1 for counts beyond a long; negative ones are nonsense too. */
    if (iter < 0)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key's encryption asks for an impossible "
                       "number of key-derivation iterations: re-encrypt it with openssl "
                       "pkcs8 -topk8 -v2 aes256");
    if (iter > PBE_ITER_MAX)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key's encryption asks for %ld key-derivation "
                       "iterations; more than %ld are refused, they would take minutes to "
                       "hours: re-encrypt it with openssl pkcs8 -topk8 -v2 aes256", iter,
                       PBE_ITER_MAX);
    if (!have_pass(pass))
        return tk_fail(TK_ERR_PASSPHRASE, MSG_NEED_PASS);
    ERR_clear_error();
    p8 = PKCS8_decrypt(p8e, (const char *)pass->data, (int)pass->len);
    if (!p8) {
        if (errors_say_unsupported())
            return tk_fail(TK_ERR_UNSUPPORTED, "the key is encrypted with a scheme OpenSSL "
                           "cannot decrypt: re-encrypt it with openssl pkcs8 -topk8 -v2 aes256");
        return tk_fail(TK_ERR_PASSPHRASE, MSG_WRONG_PASS);
    }
    rc = pkcs8_to_pkey(p8, out);
    PKCS8_PRIV_KEY_INFO_free(p8);
    return rc;
}

static tk_rc parse_pkcs8_encrypted(const uint8_t *der, size_t len, const tk_secret *pass,
                                   EVP_PKEY **out)
{
    const unsigned char *p = der;
    X509_SIG *p8e = d2i_X509_SIG(NULL, &p, (long)len);
    tk_rc rc;

    if (!p8e || (size_t)(p - der) != len) {
        X509_SIG_free(p8e);
        return tk_fail_ossl(TK_ERR_INVALID, "not a valid encrypted PKCS#8 key (truncated or "
                            "corrupt)");
    }
    rc = decrypt_pkcs8(p8e, pass, out);
    X509_SIG_free(p8e);
    return rc;
}

/* An X509_SIG in DER is only an encrypted PKCS#8 key when its algorithm is a PBE. */
static bool is_pbe(const X509_SIG *sig)
{
    const X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *obj = NULL;
    int nid;

    X509_SIG_get0(sig, &alg, NULL);
    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    nid = OBJ_obj2nid(obj);
    return nid != NID_undef && EVP_PBE_find(EVP_PBE_TYPE_OUTER, nid, NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ PKCS#1 / SEC1 */

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
    const tk_secret *pass = u;

    (void)rwflag;
    if (!have_pass(pass) || pass->len > (size_t)size)
        return -1;
    memcpy(buf, pass->data, pass->len);
    return (int)pass->len;
}

static tk_rc d2i_typed(int type, const uint8_t *der, size_t len, EVP_PKEY **out)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey = d2i_PrivateKey(type, NULL, &p, (long)len);

    if (!pkey || (size_t)(p - der) != len) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return TK_ERR_INVALID;
    }
    *out = pkey;
    return TK_OK;
}

/* "RSA PRIVATE KEY" / "EC PRIVATE KEY", possibly with Proc-Type: 4,ENCRYPTED. */
static tk_rc parse_traditional(const char *name, char *header, uint8_t *der, long dlen,
                               const tk_secret *pass, EVP_PKEY **out)
{
    bool rsa = !strcmp(name, "RSA PRIVATE KEY");
    const char *what = rsa ? "PKCS#1 RSAPrivateKey" : "SEC1 ECPrivateKey";
    EVP_CIPHER_INFO ci;
    bool encrypted;

    if (!PEM_get_EVP_CIPHER_INFO(header, &ci))
        return tk_fail_ossl(TK_ERR_UNSUPPORTED, "the PEM encryption header (DEK-Info) names a "
                            "cipher OpenSSL does not know");
    encrypted = ci.cipher != NULL;
    if (encrypted) {
        if (!have_pass(pass))
            return tk_fail(TK_ERR_PASSPHRASE, MSG_NEED_PASS);
        if (!PEM_do_header(&ci, der, &dlen, pass_cb, (void *)pass)) {
            ERR_clear_error();
            return tk_fail(TK_ERR_PASSPHRASE, MSG_WRONG_PASS);
        }
    }
    if (d2i_typed(rsa ? EVP_PKEY_RSA : EVP_PKEY_EC, der, (size_t)dlen, out) == TK_OK)
        return TK_OK;
    /* A wrong key that happened to leave valid padding yields garbage DER. */
    if (encrypted)
        return tk_fail(TK_ERR_PASSPHRASE, MSG_WRONG_PASS);
    return tk_fail(TK_ERR_INVALID, "the %s block is not a valid %s (truncated or corrupt)",
                   name, what);
}

/* ------------------------------------------------------------------ OpenSSH */

typedef struct {
    const uint8_t *p;
    size_t left;
} reader;

static bool rd_u32(reader *r, uint32_t *v)
{
    if (r->left < 4)
        return false;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool rd_string(reader *r, const uint8_t **s, size_t *len)
{
    uint32_t n;

    if (!rd_u32(r, &n) || n > r->left)
        return false;
    *s = r->p;
    *len = n;
    r->p += n;
    r->left -= n;
    return true;
}

static bool str_is(const uint8_t *s, size_t len, const char *lit)
{
    return len == strlen(lit) && !memcmp(s, lit, len);
}

/* An SSH mpint (RFC 4251) that must be positive, as a BIGNUM (secure memory if priv). */
static bool rd_mpint(reader *r, bool priv, BIGNUM **bn)
{
    const uint8_t *s;
    size_t len;

    if (!rd_string(r, &s, &len) || len == 0 || (s[0] & 0x80) || len > INT_MAX)
        return false;
    *bn = priv ? BN_secure_new() : BN_new();
    if (!*bn)
        return false;
    if (priv)
        BN_set_flags(*bn, BN_FLG_CONSTTIME);
    return BN_bin2bn(s, (int)len, *bn) != NULL;
}

static tk_rc fromdata_checked(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **out)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *pkey = NULL;
    tk_rc rc = TK_OK;

    ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_KEYPAIR, params) <= 0) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "OpenSSH key: OpenSSL refused the key values");
        goto out;
    }
    check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_pairwise_check(check) != 1) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "OpenSSH key: the private and public values do not "
                          "belong together (corrupt file)");
        goto out;
    }
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    OSSL_PARAM_free(params); /* private BNs sit in its secure, cleared part */
    return rc;
}

/* d mod (prime - 1), the CRT exponents OpenSSH does not store. */
static BIGNUM *crt_exponent(const BIGNUM *d, const BIGNUM *prime, BN_CTX *bnctx)
{
    BIGNUM *pm1 = BN_secure_new(), *r = BN_secure_new();

    if (!pm1 || !r || !BN_copy(pm1, prime) || !BN_sub_word(pm1, 1) ||
        !BN_mod(r, d, pm1, bnctx)) {
        BN_clear_free(pm1);
        BN_clear_free(r);
        return NULL;
    }
    BN_clear_free(pm1);
    return r;
}

static tk_rc openssh_rsa(reader *r, EVP_PKEY **out)
{
    BIGNUM *n = NULL, *e = NULL, *d = NULL, *iqmp = NULL, *p = NULL, *q = NULL;
    BIGNUM *dmp1 = NULL, *dmq1 = NULL;
    BN_CTX *bnctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    tk_rc rc;

    if (!rd_mpint(r, false, &n) || !rd_mpint(r, false, &e) || !rd_mpint(r, true, &d) ||
        !rd_mpint(r, true, &iqmp) || !rd_mpint(r, true, &p) || !rd_mpint(r, true, &q)) {
        rc = tk_fail(TK_ERR_INVALID, "OpenSSH RSA key is truncated or corrupt");
        goto out;
    }
    bnctx = BN_CTX_secure_new();
    if (!bnctx || !(dmp1 = crt_exponent(d, p, bnctx)) || !(dmq1 = crt_exponent(d, q, bnctx))) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "OpenSSH RSA key: cannot compute the CRT exponents");
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_D, d) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR1, p) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_FACTOR2, q) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT1, dmp1) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_EXPONENT2, dmq1) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_COEFFICIENT1, iqmp)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "cannot build the RSA key");
        goto out;
    }
    rc = fromdata_checked("RSA", bld, out);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_CTX_free(bnctx);
    BN_free(n);
    BN_free(e);
    BN_clear_free(d);
    BN_clear_free(iqmp);
    BN_clear_free(p);
    BN_clear_free(q);
    BN_clear_free(dmp1);
    BN_clear_free(dmq1);
    return rc;
}

static tk_rc openssh_ecdsa(reader *r, const char *curve_name, const char *group, EVP_PKEY **out)
{
    const uint8_t *curve, *point;
    size_t clen, plen;
    BIGNUM *d = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    tk_rc rc;

    if (!rd_string(r, &curve, &clen) || !rd_string(r, &point, &plen) ||
        !rd_mpint(r, true, &d)) {
        rc = tk_fail(TK_ERR_INVALID, "OpenSSH ECDSA key is truncated or corrupt");
        goto out;
    }
    if (!str_is(curve, clen, curve_name)) {
        rc = tk_fail(TK_ERR_INVALID, "OpenSSH ECDSA key names curve '%.*s' instead of %s",
                     (int)(clen > 32 ? 32 : clen), (const char *)curve, curve_name);
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, plen) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "cannot build the EC key");
        goto out;
    }
    rc = fromdata_checked("EC", bld, out);
out:
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    return rc;
}

static tk_rc openssh_key(reader *r, const uint8_t *type, size_t tlen, EVP_PKEY **out)
{
    static const struct {
        const char *type, *curve, *group;
    } ecdsa[] = {
        { "ecdsa-sha2-nistp256", "nistp256", "P-256" },
        { "ecdsa-sha2-nistp384", "nistp384", "P-384" },
        { "ecdsa-sha2-nistp521", "nistp521", "P-521" },
    };

    if (str_is(type, tlen, "ssh-rsa"))
        return openssh_rsa(r, out);
    for (size_t i = 0; i < sizeof(ecdsa) / sizeof(ecdsa[0]); i++)
        if (str_is(type, tlen, ecdsa[i].type))
            return openssh_ecdsa(r, ecdsa[i].curve, ecdsa[i].group, out);
    if (str_is(type, tlen, "ssh-ed25519"))
        return tk_fail(TK_ERR_UNSUPPORTED, "Ed25519 keys (ssh-ed25519) cannot be held by a TPM: "
                       "%s", MSG_TPM_TYPES);
    if (tlen > 3 && !memcmp(type, "sk-", 3))
        return tk_fail(TK_ERR_UNSUPPORTED, "this OpenSSH key lives on a FIDO security key, "
                       "not in the file");
    return tk_fail(TK_ERR_UNSUPPORTED, "OpenSSH key type '%.*s' cannot be held by a TPM: %s",
                   (int)(tlen > 40 ? 40 : tlen), (const char *)type, MSG_TPM_TYPES);
}

/* openssh-key-v1 (PROTOCOL.key in the OpenSSH sources), unencrypted only. */
static tk_rc parse_openssh(const uint8_t *blob, size_t len, EVP_PKEY **out)
{
    static const char magic[] = "openssh-key-v1"; /* followed by a NUL */
    reader r = { blob, len }, priv, pubr;
    const uint8_t *cipher, *kdf, *opts, *pub, *sec, *type, *ptype, *comment;
    size_t clen, klen, olen, publen, slen, tlen, ptlen, cmlen;
    uint32_t nkeys, check1, check2;
    tk_rc rc;

    if (len < sizeof(magic) || memcmp(blob, magic, sizeof(magic)) != 0)
        return tk_fail(TK_ERR_INVALID, "OPENSSH PRIVATE KEY block does not start with "
                       "openssh-key-v1");
    r.p += sizeof(magic);
    r.left -= sizeof(magic);
    if (!rd_string(&r, &cipher, &clen) || !rd_string(&r, &kdf, &klen) ||
        !rd_string(&r, &opts, &olen) || !rd_u32(&r, &nkeys))
        return tk_fail(TK_ERR_INVALID, "OpenSSH private key is truncated or corrupt");
    if (!str_is(cipher, clen, "none") || !str_is(kdf, klen, "none"))
        return tk_fail(TK_ERR_UNSUPPORTED, "the OpenSSH key is encrypted with a bcrypt "
                       "passphrase, which tpmkeys does not read: convert it with "
                       "ssh-keygen -p -m PKCS8 first");
    if (nkeys != 1)
        return tk_fail(TK_ERR_UNSUPPORTED, "the OpenSSH file holds %u keys; give one key per "
                       "file", nkeys);
    if (!rd_string(&r, &pub, &publen) || !rd_string(&r, &sec, &slen) || r.left != 0)
        return tk_fail(TK_ERR_INVALID, "OpenSSH private key is truncated or corrupt");
    pubr = (reader){ pub, publen };
    priv = (reader){ sec, slen };
    if (!rd_string(&pubr, &ptype, &ptlen) || !rd_u32(&priv, &check1) ||
        !rd_u32(&priv, &check2) || !rd_string(&priv, &type, &tlen))
        return tk_fail(TK_ERR_INVALID, "OpenSSH private key is truncated or corrupt");
    if (check1 != check2)
        return tk_fail(TK_ERR_INVALID, "OpenSSH private key is corrupt (check words differ)");
    if (tlen != ptlen || memcmp(type, ptype, tlen) != 0)
        return tk_fail(TK_ERR_INVALID, "OpenSSH private key is corrupt (public and private "
                       "key types differ)");
    rc = openssh_key(&priv, type, tlen, out);
    if (rc != TK_OK)
        return rc;
    /* comment, then padding 1, 2, 3, ... up to the cipher block size */
    if (!rd_string(&priv, &comment, &cmlen) || priv.left >= 8)
        goto corrupt;
    for (size_t i = 0; i < priv.left; i++)
        if (priv.p[i] != (uint8_t)(i + 1))
            goto corrupt;
    return TK_OK;
corrupt:
    EVP_PKEY_free(*out);
    *out = NULL;
    return tk_fail(TK_ERR_INVALID, "OpenSSH private key is corrupt (bad trailer)");
}

/* ------------------------------------------------------------------ PEM */

/* PEM blocks that are not private keys but may sit beside one in the same file. */
static bool is_companion_block(const char *name)
{
    static const char *const names[] = {
        "CERTIFICATE", "TRUSTED CERTIFICATE", "X509 CERTIFICATE", "X509 CRL",
        "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST", "PUBLIC KEY", "RSA PUBLIC KEY",
        "EC PARAMETERS", "DH PARAMETERS", "X9.42 DH PARAMETERS", "DSA PARAMETERS", "PARAMETERS",
        "PKCS7", "CMS",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i]))
            return true;
    return false;
}

static tk_rc parse_block(const char *name, char *header, uint8_t *der, long dlen,
                         const tk_secret *pass, EVP_PKEY **out)
{
    if (!strcmp(name, "PRIVATE KEY"))
        return parse_pkcs8(der, (size_t)dlen, out);
    if (!strcmp(name, "ENCRYPTED PRIVATE KEY"))
        return parse_pkcs8_encrypted(der, (size_t)dlen, pass, out);
    if (!strcmp(name, "RSA PRIVATE KEY") || !strcmp(name, "EC PRIVATE KEY"))
        return parse_traditional(name, header, der, dlen, pass, out);
    if (!strcmp(name, "OPENSSH PRIVATE KEY"))
        return parse_openssh(der, (size_t)dlen, out);
    if (!strcmp(name, "DSA PRIVATE KEY"))
        return tk_fail(TK_ERR_UNSUPPORTED, "DSA keys cannot be held by a TPM: %s",
                       MSG_TPM_TYPES);
    if (!strcmp(name, "TSS2 PRIVATE KEY"))
        return tk_fail(TK_ERR_INVALID, "this is a TSS2 PRIVATE KEY (a key already wrapped by a "
                       "TPM), not a software private key");
    return tk_fail(TK_ERR_INVALID, "unexpected PEM block '%s': expected PRIVATE KEY, ENCRYPTED "
                   "PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or OPENSSH PRIVATE KEY", name);
}

/* The label of the first "-----BEGIN X-----" line, for messages. */
static void first_label(const uint8_t *data, size_t len, char *label, size_t size)
{
    const char *b = find_bytes(data, len, "-----BEGIN ");
    size_t i = 0;

    label[0] = '\0';
    if (!b)
        return;
    b += strlen("-----BEGIN ");
    while ((const uint8_t *)b + i < data + len && b[i] != '-' && b[i] != '\n' && i + 1 < size) {
        label[i] = b[i];
        i++;
    }
    label[i] = '\0';
}

static tk_rc parse_pem(const uint8_t *data, size_t len, const tk_secret *pass, EVP_PKEY **out)
{
    BIO *bio;
    char *name = NULL, *header = NULL, seen[64] = "";
    unsigned char *der = NULL;
    long dlen = 0;
    int blocks = 0;
    tk_rc rc = TK_ERR_INVALID;

    if (len > INT_MAX)
        return tk_fail(TK_ERR_INVALID, "the key file is too large");
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio)
        return tk_fail_ossl(TK_ERR_NOMEM, "out of memory");
    for (;;) {
        if (!PEM_read_bio_ex(bio, &name, &header, &der, &dlen,
                             PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE)) {
            unsigned long e = ERR_peek_last_error();
            if (blocks > 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
                ERR_clear_error();
                rc = tk_fail(TK_ERR_INVALID, "the file contains no private key (only %s)",
                             seen);
            } else {
                char label[48];
                first_label(data, len, label, sizeof(label));
                rc = tk_fail_ossl(TK_ERR_INVALID, blocks > 0 ? "a PEM block after the first is "
                                  "truncated or corrupt" : "the PEM data is truncated or corrupt");
                if (blocks == 0 && label[0])
                    rc = tk_fail_ctx(rc, "%s", label);
            }
            break;
        }
        blocks++;
        if (is_companion_block(name)) {
            snprintf(seen, sizeof(seen), "%s", name);
            OPENSSL_secure_free(name);
            OPENSSL_secure_free(header);
            OPENSSL_secure_clear_free(der, (size_t)dlen);
            name = header = NULL;
            der = NULL;
            continue;
        }
        rc = parse_block(name, header, der, dlen, pass, out);
        break;
    }
    OPENSSL_secure_free(name);
    OPENSSL_secure_free(header);
    OPENSSL_secure_clear_free(der, der ? (size_t)dlen : 0);
    BIO_free(bio);
    return rc;
}

/* ------------------------------------------------------------------ DER */

static bool der_is_public_or_cert(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)len);
    X509 *cert = NULL;
    bool yes = pub && (size_t)(p - der) == len;

    EVP_PKEY_free(pub);
    if (!yes) {
        p = der;
        cert = d2i_X509(NULL, &p, (long)len);
        yes = cert && (size_t)(p - der) == len;
        X509_free(cert);
    }
    ERR_clear_error();
    return yes;
}

/* DER of a TSS2 PRIVATE KEY: a SEQUENCE whose first element is OID 2.23.133.10.1.x. */
static bool der_is_tss2(const uint8_t *der, size_t len)
{
    static const uint8_t oid[] = { 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01 };
    size_t hdr;

    if (len < 2 || der[0] != 0x30)
        return false;
    hdr = der[1] < 0x80 ? 2 : 2 + (size_t)(der[1] & 0x7f);
    return len > hdr + sizeof(oid) && !memcmp(der + hdr, oid, sizeof(oid));
}

static tk_rc parse_der(const uint8_t *der, size_t len, const tk_secret *pass, EVP_PKEY **out)
{
    const unsigned char *p;
    PKCS8_PRIV_KEY_INFO *p8;
    X509_SIG *p8e;
    tk_rc rc;

    if (len > LONG_MAX)
        return tk_fail(TK_ERR_INVALID, "the key file is too large");
    p = der;
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)len);
    if (p8 && (size_t)(p - der) == len) {
        rc = pkcs8_to_pkey(p8, out);
        PKCS8_PRIV_KEY_INFO_free(p8);
        return rc;
    }
    PKCS8_PRIV_KEY_INFO_free(p8);
    p = der;
    p8e = d2i_X509_SIG(NULL, &p, (long)len);
    if (p8e && (size_t)(p - der) == len && is_pbe(p8e)) {
        rc = decrypt_pkcs8(p8e, pass, out);
        X509_SIG_free(p8e);
        return rc;
    }
    X509_SIG_free(p8e);
    ERR_clear_error();
    if (d2i_typed(EVP_PKEY_RSA, der, len, out) == TK_OK ||
        d2i_typed(EVP_PKEY_EC, der, len, out) == TK_OK ||
        d2i_typed(EVP_PKEY_DSA, der, len, out) == TK_OK)
        return TK_OK;
    if (der_is_tss2(der, len))
        return tk_fail(TK_ERR_INVALID, "this is a TSS2 PRIVATE KEY (a key already wrapped by a "
                       "TPM), not a software private key");
    if (der_is_public_or_cert(der, len))
        return tk_fail(TK_ERR_INVALID, "the file contains no private key (a public key or "
                       "certificate)");
    return tk_fail(TK_ERR_INVALID, "not a private key file: expected PEM (-----BEGIN ... "
                   "PRIVATE KEY-----) or DER (PKCS#8, PKCS#1 RSA or SEC1 EC), complete and "
                   "uncorrupted");
}

/* ------------------------------------------------------------------ entry */

tk_rc tk_keyfile_parse_private(const uint8_t *data, size_t len, const tk_secret *passphrase,
                               EVP_PKEY **out)
{
    EVP_PKEY *pkey = NULL;
    tk_rc rc;

    if (!data || !out)
        return tk_fail(TK_ERR_INVALID, "tk_keyfile_parse_private: missing argument");
    if (len == 0)
        return tk_fail(TK_ERR_INVALID, "the key file is empty");
    if (find_bytes(data, len, "-----BEGIN "))
        rc = parse_pem(data, len, passphrase, &pkey);
    else
        rc = parse_der(data, len, passphrase, &pkey);
    if (rc == TK_OK)
        rc = check_supported(pkey);
    if (rc != TK_OK) {
        EVP_PKEY_free(pkey);
        ERR_clear_error();
        return rc;
    }
    *out = pkey;
    return TK_OK;
}
