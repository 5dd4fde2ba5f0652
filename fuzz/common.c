/* SPDX-License-Identifier: BSD-3-Clause */
/* Helpers of the fuzz harnesses (see fuzz.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "fuzz.h"

/* ------------------------------------------------------------------ reading the input */

uint8_t fuzz_u8(fuzz_in *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

uint16_t fuzz_u16(fuzz_in *in)
{
    return (uint16_t)(fuzz_u8(in) << 8 | fuzz_u8(in));
}

uint32_t fuzz_u32(fuzz_in *in)
{
    uint32_t hi = fuzz_u16(in);
    return hi << 16 | fuzz_u16(in);
}

uint64_t fuzz_u64(fuzz_in *in)
{
    uint64_t hi = fuzz_u32(in);
    return hi << 32 | fuzz_u32(in);
}

const uint8_t *fuzz_bytes(fuzz_in *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;

    if (n > in->left)
        n = in->left;
    in->p += n;
    in->left -= n;
    *got = n;
    return p;
}

/* ------------------------------------------------------------------ environment */

void fuzz_die(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: invariant broken: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (last store message: %s)\n", tk_errmsg());
    abort();
}

static char tmpdir[4096];

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void tmpdir_cleanup(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void)
{
    const char *base = getenv("TMPDIR");

    if (tmpdir[0])
        return tmpdir;
    if (!base || !*base)
        base = "/tmp";
    snprintf(tmpdir, sizeof(tmpdir), "%s/tpmkeys-fuzz-XXXXXX", base);
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "fuzz: cannot make a folder in %s: %s\n", base, strerror(errno));
        exit(1);
    }
    atexit(tmpdir_cleanup);
    return tmpdir;
}

void fuzz_env(const char *store_path)
{
    setenv("TPMKEYS_STORE", store_path, 1);
    /* Nothing listens on port 1: every TPM command fails at once with TK_ERR_NO_TPM. */
    setenv("TPMKEYS_TCTI", "swtpm:host=127.0.0.1,port=1", 1);
    unsetenv("TPMKEYS_LOG");
}

/* ------------------------------------------------------------------ blobs */

static void must(tk_rc rc, const char *what)
{
    if (rc != TK_OK) {
        fprintf(stderr, "fuzz: %s: %s\n", what, tk_errmsg());
        exit(1);
    }
}

void fuzz_ec_public(tk_buf *out)
{
    static const uint8_t gx[32] = {
        0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40, 0xf2,
        0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2, 0x96,
    };
    static const uint8_t gy[32] = {
        0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16,
        0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
    };
    TPM2B_PUBLIC pub;

    must(tk_template_for(TK_ALG_ECC_P256, &pub), "EC template");
    pub.publicArea.unique.ecc.x.size = sizeof(gx);
    memcpy(pub.publicArea.unique.ecc.x.buffer, gx, sizeof(gx));
    pub.publicArea.unique.ecc.y.size = sizeof(gy);
    memcpy(pub.publicArea.unique.ecc.y.buffer, gy, sizeof(gy));
    must(tk_public_marshal(&pub, out), "EC public");
}

void fuzz_rsa_public(tk_buf *out)
{
    TPM2B_PUBLIC pub;
    TPM2B_PUBLIC_KEY_RSA *n = &pub.publicArea.unique.rsa;

    must(tk_template_for(TK_ALG_RSA2048, &pub), "RSA template");
    n->size = 256;
    for (size_t i = 0; i < 256; i++)
        n->buffer[i] = (uint8_t)(i * 37 + 11);
    n->buffer[0] = 0xc3;
    n->buffer[255] |= 1;
    must(tk_public_marshal(&pub, out), "RSA public");
}

void fuzz_private(tk_buf *out)
{
    TPM2B_PRIVATE priv;

    memset(&priv, 0, sizeof(priv));
    priv.size = 48;
    for (size_t i = 0; i < priv.size; i++)
        priv.buffer[i] = (uint8_t)(0xa0 ^ i);
    must(tk_private_marshal(&priv, out), "private");
}

/* A throwaway self-signed P-256 certificate (CN=fuzz), fixed so runs are repeatable. */
static const uint8_t cert_der[] = {
    0x30, 0x82, 0x01, 0x73, 0x30, 0x82, 0x01, 0x19, 0xa0, 0x03, 0x02, 0x01,
    0x02, 0x02, 0x14, 0x08, 0x3f, 0xa0, 0xa2, 0x26, 0x4b, 0x2f, 0x6b, 0x92,
    0xea, 0xfe, 0x8a, 0x1d, 0xf7, 0x5d, 0x2f, 0x97, 0x4d, 0xb9, 0x3b, 0x30,
    0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02, 0x30,
    0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x04,
    0x66, 0x75, 0x7a, 0x7a, 0x30, 0x1e, 0x17, 0x0d, 0x32, 0x36, 0x31, 0x31,
    0x32, 0x33, 0x31, 0x31, 0x34, 0x36, 0x30, 0x31, 0x5a, 0x17, 0x0d, 0x33,
    0x36, 0x31, 0x31, 0x32, 0x30, 0x31, 0x31, 0x34, 0x36, 0x30, 0x31, 0x5a,
    0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c,
    0x04, 0x66, 0x75, 0x7a, 0x7a, 0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x67, 0x70, 0x7f, 0x72,
    0x06, 0x6f, 0x74, 0xa7, 0xa6, 0xb7, 0xca, 0xac, 0xc9, 0x33, 0x47, 0x3d,
    0x9a, 0x23, 0xb1, 0x8e, 0x25, 0x61, 0xa4, 0x9b, 0x54, 0xbf, 0xa5, 0x39,
    0xd6, 0x59, 0xc3, 0x3f, 0x44, 0xb0, 0x47, 0x5c, 0xef, 0x72, 0x9e, 0xaa,
    0x51, 0x75, 0xa4, 0xb6, 0x0d, 0x48, 0xc9, 0x8d, 0x61, 0xc2, 0x91, 0xb2,
    0x9c, 0xa4, 0xf8, 0x6e, 0x13, 0xd2, 0xda, 0xf9, 0xab, 0xc2, 0xf9, 0x99,
    0xa3, 0x53, 0x30, 0x51, 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04,
    0x16, 0x04, 0x14, 0x73, 0x60, 0xee, 0x04, 0x49, 0xdc, 0xdd, 0xbc, 0x82,
    0x6e, 0x46, 0xb5, 0x77, 0x55, 0xa6, 0x41, 0xcd, 0x68, 0xa6, 0xbb, 0x30,
    0x1f, 0x06, 0x03, 0x55, 0x1d, 0x23, 0x04, 0x18, 0x30, 0x16, 0x80, 0x14,
    0x73, 0x60, 0xee, 0x04, 0x49, 0xdc, 0xdd, 0xbc, 0x82, 0x6e, 0x46, 0xb5,
    0x77, 0x55, 0xa6, 0x41, 0xcd, 0x68, 0xa6, 0xbb, 0x30, 0x0f, 0x06, 0x03,
    0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x05, 0x30, 0x03, 0x01, 0x01,
    0xff, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03,
    0x02, 0x03, 0x48, 0x00, 0x30, 0x45, 0x02, 0x20, 0x43, 0x1e, 0xa1, 0x54,
    0x7d, 0x02, 0xc7, 0x04, 0x66, 0xcf, 0x4d, 0x28, 0xc7, 0x22, 0x59, 0xb4,
    0x9b, 0xe6, 0x11, 0xa0, 0x36, 0xc2, 0x9b, 0xf5, 0x79, 0xa5, 0x46, 0x98,
    0x82, 0xa6, 0x23, 0xd3, 0x02, 0x21, 0x00, 0x9a, 0x7f, 0xa8, 0x66, 0xc3,
    0x40, 0xef, 0xf0, 0xd2, 0x29, 0xd0, 0x9a, 0x2b, 0xcf, 0x45, 0xd1, 0x06,
    0x05, 0x3c, 0x1d, 0x46, 0xe4, 0xf2, 0x0b, 0x1a, 0x61, 0xa7, 0xd5, 0x91,
    0xe3, 0x7d, 0x4c
};

void fuzz_cert(tk_buf *out)
{
    must(tk_buf_set(out, cert_der, sizeof(cert_der)), "certificate");
}

/* ------------------------------------------------------------------ a seeded store */

static int64_t add_token(tk_store *st, const char *label, bool pin)
{
    tk_token t = { 0 };

    t.label = (char *)label;
    if (pin) {
        fuzz_ec_public(&t.user_pub);
        fuzz_private(&t.user_priv);
    }
    must(tk_token_put(st, &t), "adding a token");
    tk_buf_free(&t.user_pub);
    tk_buf_free(&t.user_priv);
    return t.id;
}

static void add_key(tk_store *st, int64_t token_id, const char *label, tk_alg alg,
                    tk_authmode auth, bool cert)
{
    static const uint8_t salt[16] = "fuzz-auth-salt!";
    tk_key k = { 0 };

    k.token_id = token_id;
    k.label = (char *)label;
    must(tk_buf_set(&k.ckaid, label, strlen(label)), "CKA_ID");
    k.alg = alg;
    if (tk_alg_type(alg) == TK_KEY_EC)
        fuzz_ec_public(&k.pub);
    else
        fuzz_rsa_public(&k.pub);
    fuzz_private(&k.priv);
    k.parent = TK_SRK_HANDLE;
    k.auth = auth;
    must(tk_buf_set(&k.authsalt, salt, sizeof(salt)), "salt");
    if (cert)
        fuzz_cert(&k.cert);
    k.origin = cert ? TK_ORIGIN_IMPORTED : TK_ORIGIN_GENERATED;
    must(tk_key_add(st, &k), "adding a key");
    tk_buf_free(&k.ckaid);
    tk_buf_free(&k.pub);
    tk_buf_free(&k.priv);
    tk_buf_free(&k.authsalt);
    tk_buf_free(&k.cert);
}

/* A standalone object (PKCS#11 data, certificate or public key without its key). */
static void add_object(tk_store *st, int64_t token_id, tk_obj_class cls, const char *label,
                       const tk_buf *value)
{
    static const uint8_t oid[] = { 0x06, 0x03, 0x2a, 0x03, 0x04 };
    tk_obj o = { 0 };

    o.token_id = token_id;
    o.cls = cls;
    o.label = (char *)label;
    o.application = (char *)(cls == TK_OBJ_DATA ? "fuzz" : "");
    must(tk_buf_set(&o.ckaid, label, strlen(label)), "CKA_ID");
    must(tk_buf_set(&o.value, value->data, value->len), "object value");
    if (cls == TK_OBJ_DATA)
        must(tk_buf_set(&o.oid, oid, sizeof(oid)), "object id");
    must(tk_obj_add(st, &o), "adding an object");
    tk_buf_free(&o.ckaid);
    tk_buf_free(&o.value);
    tk_buf_free(&o.oid);
}

/* The seeded EC public key as a DER SubjectPublicKeyInfo. */
static void ec_spki(tk_buf *out)
{
    tk_buf b = { 0 };
    TPM2B_PUBLIC pub;
    EVP_PKEY *pkey = NULL;
    unsigned char *der = NULL;
    int len;

    fuzz_ec_public(&b);
    must(tk_public_unmarshal(&b, &pub), "EC public");
    must(tk_public_to_pkey(&pub, &pkey), "EC public key");
    len = i2d_PUBKEY(pkey, &der);
    if (len <= 0)
        must(TK_ERR_INVALID, "SubjectPublicKeyInfo");
    must(tk_buf_set(out, der, (size_t)len), "SubjectPublicKeyInfo");
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    tk_buf_free(&b);
}

static void read_file(const char *path, tk_buf *out)
{
    FILE *f = fopen(path, "rb");
    static uint8_t buf[1 << 20];
    size_t n;

    if (!f || (n = fread(buf, 1, sizeof(buf), f)) == 0 || !feof(f)) {
        fprintf(stderr, "fuzz: cannot read the seeded store %s\n", path);
        exit(1);
    }
    fclose(f);
    must(tk_buf_set(out, buf, n), "store image");
}

void fuzz_seed_store(const char *path, tk_buf *image)
{
    tk_store *st = NULL;
    tk_buf value = { 0 };
    int64_t main_id, ops_id;

    unlink(path);
    must(tk_store_open(path, TK_STORE_CREATE, &st), "creating the store");
    main_id = add_token(st, TK_DEFAULT_TOKEN, false);
    ops_id = add_token(st, "ops", true);
    add_key(st, main_id, "web", TK_ALG_ECC_P256, TK_AUTH_NONE, false);
    add_key(st, main_id, "mail", TK_ALG_RSA2048, TK_AUTH_NONE, true);
    add_key(st, ops_id, "db", TK_ALG_ECC_P256, TK_AUTH_TOKEN, false);
    fuzz_cert(&value);
    add_object(st, main_id, TK_OBJ_CERT, "ca", &value);
    tk_buf_free(&value);
    ec_spki(&value);
    add_object(st, main_id, TK_OBJ_PUBKEY, "peer", &value);
    tk_buf_free(&value);
    must(tk_buf_set(&value, "some data", 9), "data");
    add_object(st, main_id, TK_OBJ_DATA, "note", &value);
    tk_buf_free(&value);
    tk_store_close(st);
    read_file(path, image);
}

void fuzz_restore_store(const char *path, const tk_buf *image)
{
    char side[4200];
    int fd;

    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, image->data, image->len) != (ssize_t)image->len) {
        fprintf(stderr, "fuzz: cannot restore %s: %s\n", path, strerror(errno));
        exit(1);
    }
    close(fd);
}
