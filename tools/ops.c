/* SPDX-License-Identifier: BSD-3-Clause */
/* The commands that use a key: sign, decrypt, derive. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "tool.h"

#define CIPHERTEXT_MAX 4096
#define PEER_MAX (1u << 20)

struct hash {
    const char *name;
    TPM2_ALG_ID alg;
    const EVP_MD *(*md)(void);
};

static const struct hash hashes[] = {
    { "sha1", TPM2_ALG_SHA1, EVP_sha1 },
    { "sha256", TPM2_ALG_SHA256, EVP_sha256 },
    { "sha384", TPM2_ALG_SHA384, EVP_sha384 },
    { "sha512", TPM2_ALG_SHA512, EVP_sha512 },
};

static const struct hash *hash_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
        if (!strcmp(hashes[i].name, name))
            return &hashes[i];
    return NULL;
}

/* Refuse OUT when it is IN itself (a swapped -i/-o would destroy the input). */
static bool same_file(const char *in, const char *out)
{
    struct stat a, b;

    if (!strcmp(in, "-") || !strcmp(out, "-"))
        return false;
    return stat(in, &a) == 0 && stat(out, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

static tk_rc digest_file(const char *path, const EVP_MD *md, uint8_t *out, unsigned *len)
{
    EVP_MD_CTX *ctx = NULL;
    uint8_t buf[16384];
    tk_rc rc;
    int fd;

    if ((rc = tool_open_input(path, &fd)) != TK_OK)
        return rc;
    ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, md, NULL)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "starting the hash");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = tk_fail(TK_ERR_IO, "reading %s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (!EVP_DigestUpdate(ctx, buf, (size_t)n)) {
            rc = tk_fail_ossl(TK_ERR_NOMEM, "hashing");
            goto out;
        }
    }
    if (!EVP_DigestFinal_ex(ctx, out, len))
        rc = tk_fail_ossl(TK_ERR_NOMEM, "hashing");
out:
    EVP_MD_CTX_free(ctx);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

/* ------------------------------------------------------------------ sign */

/* Check a signature against the public key before it is written. */
static tk_rc verify_sig(EVP_PKEY *pub, const EVP_MD *md, int padding, int saltlen,
                        const uint8_t *d, size_t dlen, const tk_buf *sig)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
    int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;

    if (ok && padding) {
        ok = EVP_PKEY_CTX_set_rsa_padding(ctx, padding) == 1;
        if (ok && padding == RSA_PKCS1_PSS_PADDING)
            ok = EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, saltlen) == 1;
    }
    if (!ok) {
        EVP_PKEY_CTX_free(ctx);
        return tk_fail_ossl(TK_ERR_NOMEM, "setting up the signature check");
    }
    ok = EVP_PKEY_verify(ctx, sig->data, sig->len, d, dlen) == 1;
    EVP_PKEY_CTX_free(ctx);
    ERR_clear_error();
    if (!ok)
        return tk_fail(TK_ERR_TPM, "the TPM's signature does not verify against the key's "
                       "public key; nothing written");
    return TK_OK;
}

struct sign_args {
    const char *in, *out, *pin_file;
    const struct hash *hash;
    bool pss;
};

static tk_rc sign_run(struct tool *t, const char *label, const struct sign_args *a,
                      bool *pss_on_ec)
{
    uint8_t d[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EVP_PKEY *pub = NULL;
    tk_key *k = NULL;
    tk_buf sig = { 0 };
    int padding = 0, saltlen = 0;
    tk_rc rc;

    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_find_key(t, label, &k)) != TK_OK)
        return rc;
    if (a->pss && tk_alg_type(k->alg) != TK_KEY_RSA) {
        *pss_on_ec = true;
        goto out;
    }
    if ((rc = tk_ks_public(k, &pub)) != TK_OK ||
        (rc = digest_file(a->in, a->hash->md(), d, &dlen)) != TK_OK ||
        (rc = tool_login_for_key(t, k, a->pin_file, NULL)) != TK_OK)
        goto out;
    if (tk_alg_type(k->alg) == TK_KEY_EC) {
        rc = tk_ks_sign(t->ks, k, TK_SIG_ECDSA, a->hash->alg, d, dlen, &sig);
    } else if (a->pss) {
        /* Salt = digest length, the same on every TPM (padded in software). */
        rc = tk_ks_sign_pss(t->ks, k, a->hash->md(), NULL, dlen, d, dlen, &sig);
        padding = RSA_PKCS1_PSS_PADDING;
        saltlen = RSA_PSS_SALTLEN_DIGEST;
    } else {
        rc = tk_ks_sign(t->ks, k, TK_SIG_RSASSA, a->hash->alg, d, dlen, &sig);
        padding = RSA_PKCS1_PADDING;
    }
    if (rc == TK_OK)
        rc = verify_sig(pub, a->hash->md(), padding, saltlen, d, dlen, &sig);
    if (rc == TK_OK)
        rc = tool_write_file(a->out, sig.data, sig.len, 0644, true);
out:
    tk_buf_free(&sig);
    EVP_PKEY_free(pub);
    tk_key_free(k);
    return rc;
}

int cmd_sign(struct tool *t, int argc, char **argv)
{
    enum { OPT_HASH = 256, OPT_PSS, OPT_PIN };
    static const struct option opts[] = {
        { "in", required_argument, NULL, 'i' },
        { "out", required_argument, NULL, 'o' },
        { "hash", required_argument, NULL, OPT_HASH },
        { "pss", no_argument, NULL, OPT_PSS },
        { "pin-file", required_argument, NULL, OPT_PIN },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct sign_args a = { .hash = &hashes[1] };
    bool pss_on_ec = false;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":hi:o:", opts)) != -1) {
        switch (c) {
        case 'i': a.in = optarg; break;
        case 'o': a.out = optarg; break;
        case OPT_HASH:
            if (!(a.hash = hash_by_name(optarg)))
                return tool_usage(t, "unknown hash '%s' (sha1, sha256, sha384, sha512)", optarg);
            break;
        case OPT_PSS: a.pss = true; break;
        case OPT_PIN: a.pin_file = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    if (!a.in || !a.out)
        return tool_usage(t, "give the data with -i IN and the signature file with -o OUT");
    if (same_file(a.in, a.out))
        return tool_usage(t, "-o %s is the input file", a.out);
    rc = sign_run(t, argv[optind], &a, &pss_on_ec);
    if (pss_on_ec)
        return tool_usage(t, "--pss needs an RSA key; '%s' is an EC key", argv[optind]);
    return rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
}

/* ------------------------------------------------------------------ decrypt */

struct decrypt_args {
    const char *in, *out, *pin_file;
    const struct hash *hash;
    bool pkcs1;
};

static tk_rc decrypt_run(struct tool *t, const char *label, const struct decrypt_args *a)
{
    tk_key *k = NULL;
    tk_buf in = { 0 }, plain = { 0 };
    size_t modlen;
    tk_rc rc;

    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_find_key(t, label, &k)) != TK_OK)
        return rc;
    if (tk_alg_type(k->alg) != TK_KEY_RSA) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "decrypt needs an RSA key; '%s' is %s (for EC keys "
                     "use `tpmkeys derive`)", label, tk_alg_name(k->alg));
        goto out;
    }
    modlen = (size_t)tk_alg_bits(k->alg) / 8;
    if ((rc = tool_read_file(a->in, CIPHERTEXT_MAX, &in)) != TK_OK)
        goto out;
    if (in.len != modlen) {
        rc = tk_fail(TK_ERR_INVALID, "%s has %zu bytes; a ciphertext for %s has %zu", a->in,
                     in.len, tk_alg_name(k->alg), modlen);
        goto out;
    }
    if ((rc = tool_login_for_key(t, k, a->pin_file, NULL)) != TK_OK)
        goto out;
    rc = tk_ks_rsa_decrypt(t->ks, k, a->pkcs1 ? TPM2_ALG_RSAES : TPM2_ALG_OAEP,
                           a->pkcs1 ? TPM2_ALG_NULL : a->hash->alg, NULL, 0, in.data, in.len,
                           &plain);
    if (rc == TK_OK)
        rc = tool_write_file(a->out, plain.data, plain.len, 0600, true);
out:
    tool_buf_wipe(&plain);
    tk_buf_free(&in);
    tk_key_free(k);
    return rc;
}

int cmd_decrypt(struct tool *t, int argc, char **argv)
{
    enum { OPT_OAEP = 256, OPT_PKCS1, OPT_HASH, OPT_PIN };
    static const struct option opts[] = {
        { "in", required_argument, NULL, 'i' },
        { "out", required_argument, NULL, 'o' },
        { "oaep", no_argument, NULL, OPT_OAEP },
        { "pkcs1", no_argument, NULL, OPT_PKCS1 },
        { "hash", required_argument, NULL, OPT_HASH },
        { "pin-file", required_argument, NULL, OPT_PIN },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct decrypt_args a = { .hash = &hashes[1] };
    bool oaep = false, hash_given = false;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":hi:o:", opts)) != -1) {
        switch (c) {
        case 'i': a.in = optarg; break;
        case 'o': a.out = optarg; break;
        case OPT_OAEP: oaep = true; break;
        case OPT_PKCS1: a.pkcs1 = true; break;
        case OPT_HASH:
            if (!(a.hash = hash_by_name(optarg)))
                return tool_usage(t, "unknown hash '%s' (sha1, sha256, sha384, sha512)", optarg);
            hash_given = true;
            break;
        case OPT_PIN: a.pin_file = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    if (!a.in || !a.out)
        return tool_usage(t, "give the ciphertext with -i IN and the output with -o OUT");
    if (oaep && a.pkcs1)
        return tool_usage(t, "--oaep and --pkcs1 exclude each other");
    if (hash_given && a.pkcs1)
        return tool_usage(t, "--hash is for OAEP; PKCS#1 v1.5 has none");
    if (same_file(a.in, a.out))
        return tool_usage(t, "-o %s is the input file", a.out);
    rc = decrypt_run(t, argv[optind], &a);
    return rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
}

/* ------------------------------------------------------------------ derive */

/* The peer's public key: PEM or DER SubjectPublicKeyInfo, or a certificate. */
static tk_rc parse_peer(const tk_buf *data, const char *path, EVP_PKEY **out)
{
    const unsigned char *p = data->data;
    EVP_PKEY *pkey = NULL;
    X509 *x = NULL;
    BIO *b = BIO_new_mem_buf(data->data, (int)data->len);

    if (b)
        pkey = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    ERR_clear_error();
    if (!pkey)
        pkey = d2i_PUBKEY(NULL, &p, (long)data->len);
    ERR_clear_error();
    if (!pkey && tool_parse_cert(data, path, &x) == TK_OK) {
        pkey = X509_get_pubkey(x);
        X509_free(x);
    }
    ERR_clear_error();
    if (!pkey)
        return tk_fail(TK_ERR_INVALID, "%s holds no public key (PEM or DER public key, or a "
                       "certificate)", path);
    *out = pkey;
    return TK_OK;
}

/* 04 || x || y, each coordinate coord bytes. */
static tk_rc peer_point(EVP_PKEY *peer, size_t coord, uint8_t *point)
{
    BIGNUM *x = NULL, *y = NULL;
    tk_rc rc = TK_OK;

    point[0] = 0x04;
    if (!EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_EC_PUB_X, &x) ||
        !EVP_PKEY_get_bn_param(peer, OSSL_PKEY_PARAM_EC_PUB_Y, &y) ||
        BN_bn2binpad(x, point + 1, (int)coord) < 0 ||
        BN_bn2binpad(y, point + 1 + coord, (int)coord) < 0)
        rc = tk_fail_ossl(TK_ERR_INVALID, "reading the peer's public point");
    BN_free(x);
    BN_free(y);
    return rc;
}

static tk_rc derive_run(struct tool *t, const char *label, const char *peer_path,
                        const char *out, const char *pin_file)
{
    uint8_t point[1 + 2 * 66];
    size_t coord;
    tk_key *k = NULL;
    tk_buf file = { 0 }, z = { 0 };
    EVP_PKEY *peer = NULL;
    tk_alg peer_alg;
    tk_rc rc;

    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_find_key(t, label, &k)) != TK_OK)
        return rc;
    if (tk_alg_type(k->alg) != TK_KEY_EC) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "derive needs an EC key; '%s' is %s", label,
                     tk_alg_name(k->alg));
        goto out;
    }
    if ((rc = tool_read_file(peer_path, PEER_MAX, &file)) != TK_OK ||
        (rc = parse_peer(&file, peer_path, &peer)) != TK_OK)
        goto out;
    peer_alg = tool_pkey_alg(peer);
    if (peer_alg != k->alg) {
        rc = tk_fail(TK_ERR_INVALID, "the peer key in %s is %s, not on the curve of '%s' (%s)",
                     peer_path, peer_alg ? tk_alg_name(peer_alg) : "not an EC key", label,
                     tk_alg_name(k->alg));
        goto out;
    }
    coord = (size_t)(tk_alg_bits(k->alg) + 7) / 8;
    if ((rc = peer_point(peer, coord, point)) != TK_OK ||
        (rc = tool_login_for_key(t, k, pin_file, NULL)) != TK_OK ||
        (rc = tk_ks_ecdh(t->ks, k, point, 1 + 2 * coord, &z)) != TK_OK)
        goto out;
    rc = tool_write_file(out, z.data, z.len, 0600, true);
out:
    tool_buf_wipe(&z);
    EVP_PKEY_free(peer);
    tk_buf_free(&file);
    tk_key_free(k);
    return rc;
}

int cmd_derive(struct tool *t, int argc, char **argv)
{
    enum { OPT_PEER = 256, OPT_PIN };
    static const struct option opts[] = {
        { "peer", required_argument, NULL, OPT_PEER },
        { "out", required_argument, NULL, 'o' },
        { "pin-file", required_argument, NULL, OPT_PIN },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *peer = NULL, *out = NULL, *pin_file = NULL;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":ho:", opts)) != -1) {
        switch (c) {
        case OPT_PEER: peer = optarg; break;
        case 'o': out = optarg; break;
        case OPT_PIN: pin_file = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    if (!peer || !out)
        return tool_usage(t, "give the peer's public key with --peer FILE and the output "
                          "with -o OUT");
    rc = derive_run(t, argv[optind], peer, out, pin_file);
    return rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
}
