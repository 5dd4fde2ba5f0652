/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TSS2 PRIVATE KEY files: files written by tpm2-openssl 1.1.1 and tpm2-tools 5.4
 * (tests/data/tss2-*.pem, made on swtpm), DER built byte by byte from the format's
 * ASN.1, and encode -> parse round trips.
 *
 *   tss2-tpm2openssl-ec-noauth.pem   openssl genpkey -provider tpm2 -algorithm EC
 *                                    (emptyAuth TRUE, parent 0x40000001)
 *   tss2-tpm2openssl-rsa-auth.pem    ... -algorithm RSA -pkeyopt user-auth:...
 *                                    (emptyAuth FALSE written explicitly)
 *   tss2-tpm2tools-ec-persistent.pem tpm2_create + tpm2_encodeobject -C 0x81000001
 *                                    (emptyAuth FALSE, parent 0x81000001 as 5 bytes)
 */
#include "config.h"

#include <tss2/tss2_mu.h>

#include "crypto_test.h"
#include "tpmkeys.h"

/* ------------------------------------------------------------------ a tiny DER writer */

typedef struct {
    uint8_t b[4096];
    size_t n;
} der;

static void put(der *d, const void *p, size_t n)
{
    if (d->n + n <= sizeof(d->b)) {
        memcpy(d->b + d->n, p, n);
        d->n += n;
    }
}

static void tlv(der *d, uint8_t tag, const void *content, size_t len)
{
    uint8_t hdr[4] = { tag };
    size_t h;

    if (len < 0x80) {
        hdr[1] = (uint8_t)len;
        h = 2;
    } else if (len < 0x100) {
        hdr[1] = 0x81;
        hdr[2] = (uint8_t)len;
        h = 3;
    } else {
        hdr[1] = 0x82;
        hdr[2] = (uint8_t)(len >> 8);
        hdr[3] = (uint8_t)len;
        h = 4;
    }
    put(d, hdr, h);
    put(d, content, len);
}

static void tlv_der(der *d, uint8_t tag, const der *inner)
{
    tlv(d, tag, inner->b, inner->n);
}

static const uint8_t OID_LOADABLE[] = { 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03 };
static const uint8_t OID_IMPORTABLE[] = { 0x67, 0x81, 0x05, 0x0a, 0x01, 0x04 };
static const uint8_t OID_SEALED[] = { 0x67, 0x81, 0x05, 0x0a, 0x01, 0x05 };
static const uint8_t OID_OLD_LOADABLE[] = { 0x67, 0x81, 0x05, 0x0a, 0x02 };
static const uint8_t TRUE_[] = { 0xff };

static tk_buf pub_blob, priv_blob; /* a valid TPM2B_PUBLIC and TPM2B_PRIVATE */

/* Build a TPMKey SEQUENCE: OID, optional extra fields (already tagged), parent bytes. */
static void tpmkey(der *out, const uint8_t *oid, size_t oidlen, const der *extra,
                   const uint8_t *parent, size_t plen, const tk_buf *pub, const tk_buf *priv)
{
    der body = { .n = 0 };

    tlv(&body, 0x06, oid, oidlen);
    if (extra)
        put(&body, extra->b, extra->n);
    tlv(&body, 0x02, parent, plen);
    tlv(&body, 0x04, pub->data, pub->len);
    tlv(&body, 0x04, priv->data, priv->len);
    out->n = 0;
    tlv_der(out, 0x30, &body);
}

/* ------------------------------------------------------------------ checks */

static tk_rc parse_file(const char *name, tk_tss2key *k, uint8_t **data, size_t *len)
{
    memset(k, 0, sizeof(*k));
    if (!read_file(data_file(name), data, len))
        return tk_fail(TK_ERR_IO, "test: cannot read %s", name);
    return tk_tss2key_parse(*data, *len, k);
}

/* The DER inside a PEM file, decoded by OpenSSL. */
static bool pem_to_der(const uint8_t *pem, size_t len, uint8_t **der_out, long *dlen)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    char *name = NULL, *header = NULL;
    bool ok = bio && PEM_read_bio(bio, &name, &header, der_out, dlen) == 1;

    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(bio);
    return ok;
}

static TPMI_ALG_PUBLIC pub_type(const tk_buf *b)
{
    TPM2B_PUBLIC pub;

    return tk_public_unmarshal(b, &pub) == TK_OK ? pub.publicArea.type : 0;
}

static void test_peer_files(void)
{
    tk_tss2key k, k2;
    uint8_t *data = NULL;
    size_t len = 0;
    tk_buf enc = { 0 };
    tk_rc rc;

    /* tpm2-openssl, EC, no auth: our encoder reproduces the file, except that it writes
     * TRUE as DER's 0xFF where tpm2-openssl 1.1.1 wrote 0x01 */
    rc = parse_file("tss2-tpm2openssl-ec-noauth.pem", &k, &data, &len);
    check_rc(rc, TK_OK, NULL, "parse tpm2-openssl EC key (PEM)");
    if (rc == TK_OK) {
        uint8_t *fder = NULL;
        long flen = 0;
        check(k.type == 3 && k.empty_auth && k.parent == 0x40000001 && !k.has_policy &&
              !k.has_secret && !k.has_auth_policy && !k.description && !k.rsa_parent,
              "tpm2-openssl EC key: loadable, emptyAuth, parent 0x40000001");
        check(pub_type(&k.pub) == TPM2_ALG_ECC && k.priv.len > 2,
              "tpm2-openssl EC key: an ECC public area and a private blob");
        rc = tk_tss2key_encode(&k, false, &enc);
        check(rc == TK_OK && pem_to_der(data, len, &fder, &flen) && enc.len == (size_t)flen &&
                  enc.len > 16 && fder[15] == 0x01 && enc.data[15] == 0xff &&
                  !memcmp(enc.data, fder, 15) && !memcmp(enc.data + 16, fder + 16, enc.len - 16),
              "re-encoding the tpm2-openssl EC key gives its DER, with TRUE as 0xFF");
        OPENSSL_free(fder);
        tk_buf_free(&enc);
    }
    tk_tss2key_free(&k);
    free(data);

    /* tpm2-openssl, RSA with auth: emptyAuth FALSE in the file; we write it explicitly too
     * (tpm2-openssl reads a missing emptyAuth as "no password") */
    rc = parse_file("tss2-tpm2openssl-rsa-auth.pem", &k, &data, &len);
    check_rc(rc, TK_OK, NULL, "parse tpm2-openssl RSA key with auth");
    if (rc == TK_OK) {
        check(k.type == 3 && !k.empty_auth && k.parent == 0x40000001 &&
              pub_type(&k.pub) == TPM2_ALG_RSA, "tpm2-openssl RSA key: no emptyAuth, RSA");
        rc = tk_tss2key_encode(&k, false, &enc);
        check(rc == TK_OK && enc.len > 17 && enc.data[4] == 0x06 && enc.data[12] == 0xa0 &&
                  enc.data[13] == 0x03 && enc.data[14] == 0x01 && enc.data[15] == 0x01 &&
                  enc.data[16] == 0x00 && enc.data[17] == 0x02,
              "our DER writes [0] emptyAuth FALSE, then the INTEGER parent");
        memset(&k2, 0, sizeof(k2));
        check(rc == TK_OK && tk_tss2key_parse(enc.data, enc.len, &k2) == TK_OK &&
                  k2.pub.len == k.pub.len && !memcmp(k2.pub.data, k.pub.data, k.pub.len) &&
                  k2.priv.len == k.priv.len && !memcmp(k2.priv.data, k.priv.data, k.priv.len) &&
                  !k2.empty_auth && k2.parent == k.parent,
              "our DER of the RSA key parses back to the same blobs");
        tk_tss2key_free(&k2);
        tk_buf_free(&enc);
    }
    tk_tss2key_free(&k);
    free(data);

    /* tpm2-tools: persistent parent, emptyAuth FALSE for a passwordless key */
    rc = parse_file("tss2-tpm2tools-ec-persistent.pem", &k, &data, &len);
    check_rc(rc, TK_OK, NULL, "parse tpm2-tools EC key");
    if (rc == TK_OK)
        check(k.type == 3 && !k.empty_auth && k.parent == 0x81000001 &&
              pub_type(&k.pub) == TPM2_ALG_ECC, "tpm2-tools EC key: parent 0x81000001");
    tk_tss2key_free(&k);
    free(data);

    /* the same file as DER, converted by the openssl CLI */
    if (run("openssl asn1parse -noout -in '%s' -out tools.der",
            data_file("tss2-tpm2tools-ec-persistent.pem")) &&
        read_file("tools.der", &data, &len)) {
        memset(&k, 0, sizeof(k));
        rc = tk_tss2key_parse(data, len, &k);
        check_rc(rc, TK_OK, NULL, "parse the tpm2-tools key as DER");
        check(rc == TK_OK && k.parent == 0x81000001 && pub_type(&k.pub) == TPM2_ALG_ECC,
              "DER parse has the same content");
        tk_tss2key_free(&k);
        free(data);
    } else {
        check(false, "openssl converted the key file to DER");
    }
}

static void test_round_trip(void)
{
    tk_tss2key k = { 0 }, got = { 0 };
    tk_buf pem = { 0 }, der_out = { 0 };
    tk_rc rc;

    k.type = 3;
    k.empty_auth = false;
    k.parent = 0x81000001;
    k.rsa_parent = true;
    k.description = (char *)"web server key \xc3\xa9";
    k.pub = pub_blob;
    k.priv = priv_blob;
    rc = tk_tss2key_encode(&k, true, &pem);
    check_rc(rc, TK_OK, NULL, "encode PEM with description and rsaParent");
    check(rc == TK_OK && pem.len > 60 &&
              !memcmp(pem.data, "-----BEGIN TSS2 PRIVATE KEY-----\n", 33) &&
              strstr((char *)pem.data, "-----END TSS2 PRIVATE KEY-----\n"),
          "PEM armour is TSS2 PRIVATE KEY");
    rc = tk_tss2key_parse(pem.data, pem.len, &got);
    check_rc(rc, TK_OK, NULL, "parse it back");
    check(rc == TK_OK && got.type == 3 && !got.empty_auth && got.parent == 0x81000001 &&
              got.rsa_parent && got.description && !strcmp(got.description, k.description) &&
              got.pub.len == pub_blob.len && !memcmp(got.pub.data, pub_blob.data, pub_blob.len) &&
              got.priv.len == priv_blob.len &&
              !memcmp(got.priv.data, priv_blob.data, priv_blob.len),
          "round trip keeps every field");
    tk_tss2key_free(&got);

    k.empty_auth = true;
    k.rsa_parent = false;
    k.description = NULL;
    k.parent = 0x40000001;
    rc = tk_tss2key_encode(&k, false, &der_out);
    check_rc(rc, TK_OK, NULL, "encode DER, emptyAuth");
    /* 30 len 06 06 <oid> A0 03 01 01 FF 02 04 40 00 00 01 ... */
    {
        static const uint8_t want[] = { 0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03,
                                        0xa0, 0x03, 0x01, 0x01, 0xff, 0x02, 0x04, 0x40,
                                        0x00, 0x00, 0x01, 0x04 };
        size_t hl = der_out.len < 2 || der_out.data[1] < 0x80 ? 2 : 2 + (der_out.data[1] & 0x7f);
        check(rc == TK_OK && der_out.data[0] == 0x30 && der_out.len > hl + sizeof(want) &&
                  !memcmp(der_out.data + hl, want, sizeof(want)),
              "DER bytes: OID, [0] EXPLICIT TRUE, positive parent INTEGER, pubkey");
    }
    rc = tk_tss2key_parse(der_out.data, der_out.len, &got);
    check(rc == TK_OK && got.empty_auth && got.parent == 0x40000001 && !got.description &&
              !got.rsa_parent, "DER round trip");
    tk_tss2key_free(&got);
    tk_buf_free(&der_out);
    tk_buf_free(&pem);

    /* a persistent parent with the top bit set is written as a positive 5-byte INTEGER */
    k.parent = 0x81000001;
    rc = tk_tss2key_encode(&k, false, &der_out);
    {
        static const uint8_t want[] = { 0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01 };
        check(rc == TK_OK && memmem(der_out.data, der_out.len, want, sizeof(want)),
              "parent 0x81000001 is encoded 02 05 00 81 00 00 01");
    }
    tk_buf_free(&der_out);

    /* what we cannot write */
    k.has_policy = true;
    check_rc(tk_tss2key_encode(&k, true, &der_out), TK_ERR_UNSUPPORTED, "policies",
             "encode refuses keys with policies");
    k.has_policy = false;
    k.type = 4;
    check_rc(tk_tss2key_encode(&k, true, &der_out), TK_ERR_UNSUPPORTED, "type 4",
             "encode refuses importable keys");
    k.type = 3;
    k.pub.len = 5;
    check_rc(tk_tss2key_encode(&k, true, &der_out), TK_ERR_INVALID, "pubkey",
             "encode refuses a malformed public blob");
    k.pub.len = pub_blob.len;
    k.parent = 0x80000002;
    check_rc(tk_tss2key_encode(&k, true, &der_out), TK_ERR_INVALID, "parent",
             "encode refuses a transient parent");
    check(der_out.data == NULL && der_out.len == 0, "failed encodes leave the output alone");
}

static void expect_parse(const der *d, tk_rc want, const char *msg, const char *what,
                         tk_tss2key *out)
{
    tk_tss2key k = { 0 };
    tk_rc rc = tk_tss2key_parse(d->b, d->n, &k);

    check_rc(rc, want, msg, what);
    if (out && rc == TK_OK)
        *out = k;
    else
        tk_tss2key_free(&k);
}

static void test_handmade_der(void)
{
    static const uint8_t neg_parent[] = { 0x81, 0x00, 0x00, 0x01 }; /* -2130706431 */
    static const uint8_t pos_parent[] = { 0x00, 0x81, 0x00, 0x00, 0x01 };
    static const uint8_t owner[] = { 0x40, 0x00, 0x00, 0x01 };
    static const uint8_t zero[] = { 0x00 };
    static const uint8_t too_big[] = { 0x01, 0x00, 0x00, 0x00, 0x00 };
    static const uint8_t transient[] = { 0x00, 0x80, 0x00, 0x00, 0x02 };
    der d, extra, a, b, c;
    tk_tss2key k;

    /* negative parent from older writers: taken mod 2^32 */
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, neg_parent, sizeof(neg_parent),
           &pub_blob, &priv_blob);
    expect_parse(&d, TK_OK, NULL, "negative parent INTEGER parses", &k);
    check(k.parent == 0x81000001 && !k.empty_auth, "negative parent reads as 0x81000001");
    tk_tss2key_free(&k);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, pos_parent, sizeof(pos_parent),
           &pub_blob, &priv_blob);
    expect_parse(&d, TK_OK, NULL, "positive 5-byte parent parses", &k);
    check(k.parent == 0x81000001, "positive parent reads as 0x81000001");
    tk_tss2key_free(&k);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, zero, sizeof(zero), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_OK, NULL, "parent 0 parses", &k);
    check(k.parent == 0x40000001, "parent 0 means the owner hierarchy (as tpm2-openssl)");
    tk_tss2key_free(&k);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, too_big, sizeof(too_big), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_ERR_INVALID, "out of range", "parent 2^32 is refused", NULL);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, transient, sizeof(transient),
           &pub_blob, &priv_blob);
    expect_parse(&d, TK_ERR_INVALID, "persistent", "transient parent is refused", NULL);

    /* emptyAuth FALSE, description, rsaParent */
    extra.n = 0;
    a.n = 0;
    tlv(&a, 0x01, (const uint8_t[]){ 0x00 }, 1);
    tlv_der(&extra, 0xa0, &a);
    a.n = 0;
    tlv(&a, 0x0c, "hello", 5);
    tlv_der(&extra, 0xa4, &a);
    a.n = 0;
    tlv(&a, 0x01, TRUE_, 1);
    tlv_der(&extra, 0xa5, &a);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), &extra, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_OK, NULL, "emptyAuth FALSE + description + rsaParent parse", &k);
    check(!k.empty_auth && k.description && !strcmp(k.description, "hello") && k.rsa_parent,
          "description 'hello', rsaParent TRUE, emptyAuth FALSE");
    tk_tss2key_free(&k);

    /* policy [1] and authPolicy [3]: parsed, flagged */
    extra.n = 0;
    a.n = 0; /* TPMPolicy */
    b.n = 0;
    tlv(&b, 0x02, (const uint8_t[]){ 0x01, 0x6b }, 2); /* TPM2_CC_PolicyAuthValue */
    tlv_der(&a, 0xa0, &b);
    b.n = 0;
    tlv(&b, 0x04, "0123456789abcdef0123456789abcdef", 32);
    tlv_der(&a, 0xa1, &b);
    b = a;
    a.n = 0;
    tlv_der(&a, 0x30, &b); /* TPMPolicy SEQUENCE */
    c = a;                 /* keep one TPMPolicy for authPolicy */
    b.n = 0;
    tlv_der(&b, 0x30, &a); /* SEQUENCE OF */
    tlv_der(&extra, 0xa1, &b);
    /* authPolicy: SEQUENCE OF TPMAuthPolicy { [0] name, [1] SEQUENCE OF TPMPolicy } */
    a.n = 0;
    b.n = 0;
    tlv(&b, 0x0c, "pcr", 3);
    tlv_der(&a, 0xa0, &b);
    b.n = 0;
    tlv_der(&b, 0x30, &c);
    tlv_der(&a, 0xa1, &b);
    b = a;
    a.n = 0;
    tlv_der(&a, 0x30, &b); /* TPMAuthPolicy */
    b.n = 0;
    tlv_der(&b, 0x30, &a); /* SEQUENCE OF */
    tlv_der(&extra, 0xa3, &b);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), &extra, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_OK, NULL, "key with policy and authPolicy parses", &k);
    check(k.has_policy && k.has_auth_policy && !k.has_secret, "policy flags are set");
    tk_tss2key_free(&k);

    /* importable (.4) with [2] secret, sealed (.5) */
    extra.n = 0;
    a.n = 0;
    tlv(&a, 0x04, "seedseedseedseed", 16);
    tlv_der(&extra, 0xa2, &a);
    tpmkey(&d, OID_IMPORTABLE, sizeof(OID_IMPORTABLE), &extra, owner, sizeof(owner),
           &pub_blob, &priv_blob);
    expect_parse(&d, TK_OK, NULL, "importable key parses", &k);
    check(k.type == 4 && k.has_secret, "importable key: type 4 with a secret");
    tk_tss2key_free(&k);
    tpmkey(&d, OID_IMPORTABLE, sizeof(OID_IMPORTABLE), NULL, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_ERR_INVALID, "secret", "importable key without secret is refused",
                 NULL);
    tpmkey(&d, OID_SEALED, sizeof(OID_SEALED), NULL, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    expect_parse(&d, TK_OK, NULL, "sealed data parses", &k);
    check(k.type == 5, "sealed data: type 5");
    tk_tss2key_free(&k);

    /* not ours: NOT_FOUND so callers can try the private-key parser */
    tpmkey(&d, OID_OLD_LOADABLE, sizeof(OID_OLD_LOADABLE), NULL, owner, sizeof(owner),
           &pub_blob, &priv_blob);
    expect_parse(&d, TK_ERR_NOT_FOUND, NULL, "another OID (2.23.133.10.2) is NOT_FOUND", NULL);
    d.n = 0;
    a.n = 0;
    tlv(&a, 0x02, zero, 1);
    tlv(&a, 0x04, "xx", 2);
    tlv_der(&d, 0x30, &a);
    expect_parse(&d, TK_ERR_NOT_FOUND, NULL, "SEQUENCE starting with an INTEGER is NOT_FOUND",
                 NULL);

    /* broken TSS2 keys: INVALID */
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    d.n -= 3;
    expect_parse(&d, TK_ERR_INVALID, "truncated", "truncated TSS2 DER is INVALID", NULL);
    tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, owner, sizeof(owner), &pub_blob,
           &priv_blob);
    put(&d, "\x00", 1);
    expect_parse(&d, TK_ERR_INVALID, "unexpected bytes", "trailing bytes are INVALID", NULL);
    {
        tk_buf junk = { (uint8_t *)"\x00\x05junk!", 7 };
        tk_buf priv_trailing = { 0 };
        tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, owner, sizeof(owner), &junk,
               &priv_blob);
        expect_parse(&d, TK_ERR_INVALID, "pubkey", "a pubkey that is no TPM2B_PUBLIC", NULL);
        tk_buf_set(&priv_trailing, priv_blob.data, priv_blob.len);
        priv_trailing.data = realloc(priv_trailing.data, priv_blob.len + 1);
        priv_trailing.data[priv_trailing.len++] = 0x00;
        tpmkey(&d, OID_LOADABLE, sizeof(OID_LOADABLE), NULL, owner, sizeof(owner), &pub_blob,
               &priv_trailing);
        expect_parse(&d, TK_ERR_INVALID, "privkey", "a privkey with a trailing byte", NULL);
        tk_buf_free(&priv_trailing);
    }
}

static void test_pem_dispatch(void)
{
    static const char other_pem[] = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    static const uint8_t garbage[] = { 0x13, 0x37, 0x00, 0xff, 0x42 };
    tk_tss2key k = { 0 };
    uint8_t *data;
    size_t len;

    check_rc(tk_tss2key_parse((const uint8_t *)other_pem, strlen(other_pem), &k),
             TK_ERR_NOT_FOUND, NULL, "PEM of another kind is NOT_FOUND");
    check_rc(tk_tss2key_parse(garbage, sizeof(garbage), &k), TK_ERR_INVALID, "neither PEM nor DER",
             "garbage is INVALID");
    if (read_file(data_file("tss2-tpm2openssl-ec-noauth.pem"), &data, &len)) {
        uint8_t *mixed = malloc(len + sizeof(other_pem));
        memcpy(mixed, other_pem, strlen(other_pem));
        memcpy(mixed + strlen(other_pem), data, len);
        check_rc(tk_tss2key_parse(mixed, len + strlen(other_pem), &k), TK_OK, NULL,
                 "TSS2 block after another PEM block is found");
        tk_tss2key_free(&k);
        check_rc(tk_tss2key_parse(data, len / 2, &k), TK_ERR_INVALID, "truncated or corrupt",
                 "truncated TSS2 PEM is INVALID");
        free(mixed);
        free(data);
    } else {
        check(false, "read the tpm2-openssl key file");
    }
    tk_tss2key_free(&k);
    tk_tss2key_free(&k); /* twice is harmless */
    tk_tss2key_free(NULL);
    check(k.description == NULL && k.pub.data == NULL, "tk_tss2key_free leaves an empty struct");
}

int main(void)
{
    TPM2B_PUBLIC tmpl;
    TPM2B_PRIVATE priv = { .size = 6, .buffer = { 0x00, 0x04, 0xde, 0xad, 0xbe, 0xef } };

    t_setup();
    if (tk_template_for(TK_ALG_ECC_P256, &tmpl) != TK_OK ||
        tk_public_marshal(&tmpl, &pub_blob) != TK_OK ||
        tk_private_marshal(&priv, &priv_blob) != TK_OK) {
        printf("# cannot make test blobs: %s\n", tk_errmsg());
        return 99;
    }
    test_peer_files();
    test_round_trip();
    test_handmade_der();
    test_pem_dispatch();
    tk_buf_free(&pub_blob);
    tk_buf_free(&priv_blob);
    return t_finish();
}
