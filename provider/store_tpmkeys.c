/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The "tpmkeys:" store loader: keys of the tpmkeys store by RFC 7512 attributes.
 *
 *   tpmkeys:object=web                     the key labelled "web" (any token)
 *   tpmkeys:token=ops;object=web;type=private
 *   tpmkeys:id=%01%02                      by CKA_ID
 *   tpmkeys:object=web?pin-source=file:/etc/tpmkeys/pin   (or ?pin-value=1234)
 *
 * Each matching key gives its private key and, when it has one, its certificate
 * (type=private|public|cert narrows it; so does OSSL_STORE_expect()).  Keys of a
 * token with a PIN need a login: the PIN comes from the query or from OpenSSL's
 * passphrase callback, and the TPM checks it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>
#include <openssl/store.h>

#include "provider.h"

enum { WANT_PRIVATE = 1, WANT_PUBLIC = 2, WANT_CERT = 4 };

typedef struct {
    tkp_ctx *prov;
    char *uri;              /* for messages (query part cut off: it may hold a PIN) */
    char *token, *object;
    tk_buf id;
    bool has_id;
    int want;               /* WANT_* from type= */
    int expect;             /* OSSL_STORE_INFO_* from OSSL_STORE_expect(), 0 = any */
    tk_secret pin;
    bool has_pin;
    tk_key **keys;
    size_t nkeys, next;
    int stage;              /* within keys[next]: 0 private, 1 public, 2 cert */
    bool listed, eof;
} store_ctx;

static OSSL_FUNC_store_open_fn st_open;
static OSSL_FUNC_store_set_ctx_params_fn st_set_ctx_params;
static OSSL_FUNC_store_load_fn st_load;
static OSSL_FUNC_store_eof_fn st_eof;
static OSSL_FUNC_store_close_fn st_close;

static int st_close(void *vctx)
{
    store_ctx *ctx = vctx;
    if (!ctx)
        return 1;
    free(ctx->uri);
    free(ctx->token);
    free(ctx->object);
    tk_buf_free(&ctx->id);
    tk_secret_clear(&ctx->pin);
    tk_key_list_free(ctx->keys, ctx->nkeys);
    free(ctx);
    return 1;
}

/* ------------------------------------------------------------------ URI parsing */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

/* Percent-decode s[0..n) into a new buffer (NUL-terminated too). */
static int pct_decode(const char *s, size_t n, tk_buf *out)
{
    uint8_t *buf = malloc(n + 1);
    size_t len = 0;

    if (!buf)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n) {
                free(buf);
                return -1;
            }
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) {
                free(buf);
                return -1;
            }
            buf[len++] = (uint8_t)(hi << 4 | lo);
            i += 2;
        } else {
            buf[len++] = (uint8_t)s[i];
        }
    }
    buf[len] = 0;
    out->data = buf;
    out->len = len;
    return 1;
}

/* A text attribute: decoded, without NUL bytes. */
static int pct_string(const char *s, size_t n, char **out)
{
    tk_buf b = { 0 };
    int r = pct_decode(s, n, &b);
    if (r <= 0)
        return r;
    if (memchr(b.data, 0, b.len)) {
        OPENSSL_clear_free(b.data, b.len);
        return -1;
    }
    free(*out);
    *out = (char *)b.data;
    return 1;
}

/* The PIN from the first line of a file (read without stdio, which would keep a copy). */
static int read_pin_file(store_ctx *ctx, const char *path)
{
    char buf[TK_SECRET_MAX + 2];
    ssize_t got = 0, r;
    size_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        TKP_RAISE(ctx->prov, TKP_R_PIN, "cannot read the PIN file %s: %s", path,
                  strerror(errno));
        return 0;
    }
    while ((size_t)got < sizeof(buf)) {
        r = read(fd, buf + got, sizeof(buf) - (size_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            TKP_RAISE(ctx->prov, TKP_R_PIN, "cannot read the PIN file %s: %s", path,
                      strerror(errno));
            close(fd);
            OPENSSL_cleanse(buf, sizeof(buf));
            return 0;
        }
        if (r == 0)
            break;
        got += r;
    }
    close(fd);
    for (n = 0; n < (size_t)got && buf[n] != '\n' && buf[n] != '\r'; n++)
        ;
    if (n > TK_SECRET_MAX) {
        TKP_RAISE(ctx->prov, TKP_R_PIN, "the PIN in %s is longer than %d bytes", path,
                  TK_SECRET_MAX);
        OPENSSL_cleanse(buf, sizeof(buf));
        return 0;
    }
    tk_secret_set(&ctx->pin, buf, n);
    ctx->has_pin = true;
    OPENSSL_cleanse(buf, sizeof(buf));
    return 1;
}

static int query_attr(store_ctx *ctx, const char *name, size_t nlen, const char *val, size_t vlen)
{
    tk_buf v = { 0 };
    int r = 1;

    if (pct_decode(val, vlen, &v) <= 0)
        return -1;
    if (nlen == 9 && !strncmp(name, "pin-value", 9)) {
        if (tk_secret_set(&ctx->pin, v.data, v.len) != TK_OK) {
            TKP_RAISE(ctx->prov, TKP_R_PIN, "the PIN is longer than %d bytes", TK_SECRET_MAX);
            r = 0;
        }
        ctx->has_pin = r;
    } else if (nlen == 10 && !strncmp(name, "pin-source", 10)) {
        const char *path = (const char *)v.data;
        if (!strncmp(path, "file:", 5))
            path += 5;
        r = read_pin_file(ctx, path);
    } /* other query attributes (module-name, module-path) do not apply here */
    OPENSSL_clear_free(v.data, v.len);
    return r;
}

static int path_attr(store_ctx *ctx, const char *name, size_t nlen, const char *val, size_t vlen)
{
    if (nlen == 5 && !strncmp(name, "token", 5))
        return pct_string(val, vlen, &ctx->token);
    if (nlen == 6 && !strncmp(name, "object", 6))
        return pct_string(val, vlen, &ctx->object);
    if (nlen == 2 && !strncmp(name, "id", 2)) {
        tk_buf_free(&ctx->id);
        ctx->has_id = true;
        return pct_decode(val, vlen, &ctx->id);
    }
    if (nlen == 4 && !strncmp(name, "type", 4)) {
        if (vlen == 7 && !strncmp(val, "private", 7))
            ctx->want = WANT_PRIVATE;
        else if (vlen == 6 && !strncmp(val, "public", 6))
            ctx->want = WANT_PUBLIC;
        else if (vlen == 4 && !strncmp(val, "cert", 4))
            ctx->want = WANT_CERT;
        else
            return -1;
        return 1;
    }
    TKP_RAISE(ctx->prov, TKP_R_INVALID,
              "unknown attribute \"%.*s\" in %s: tpmkeys: URIs take token=, object=, id= and "
              "type= (and ?pin-value= or ?pin-source=)", (int)nlen, name, ctx->uri);
    return 0;
}

/* Parse the attributes of s[0..n), separated by sep (path ';' or query '&'). */
static int parse_attrs(store_ctx *ctx, const char *s, size_t n, char sep, bool query)
{
    const char *end = s + n;

    while (s < end) {
        const char *next = memchr(s, sep, (size_t)(end - s));
        size_t len = next ? (size_t)(next - s) : (size_t)(end - s);
        const char *eq = memchr(s, '=', len);
        int r;

        if (len) {
            if (!eq) {
                TKP_RAISE(ctx->prov, TKP_R_INVALID, "attribute \"%.*s\" without a value in %s",
                          (int)len, s, ctx->uri);
                return 0;
            }
            size_t nlen = (size_t)(eq - s), vlen = len - nlen - 1;
            r = query ? query_attr(ctx, s, nlen, eq + 1, vlen) : path_attr(ctx, s, nlen, eq + 1, vlen);
            if (r < 0)
                TKP_RAISE(ctx->prov, TKP_R_INVALID, "bad value for \"%.*s\" in %s", (int)nlen,
                          s, ctx->uri);
            if (r <= 0)
                return 0;
        }
        s += len + 1;
    }
    return 1;
}

/* Parse "a=b;c=d?e=f&g=h" (after the scheme). */
static int parse_uri(store_ctx *ctx, const char *s)
{
    const char *q = strchr(s, '?');
    size_t plen = q ? (size_t)(q - s) : strlen(s);

    return parse_attrs(ctx, s, plen, ';', false) &&
           (!q || parse_attrs(ctx, q + 1, strlen(q + 1), '&', true));
}

static void *st_open(void *provctx, const char *uri)
{
    store_ctx *ctx = calloc(1, sizeof(*ctx));
    const char *rest;

    if (!ctx) {
        TKP_RAISE(provctx, TKP_R_NOMEM, "out of memory");
        return NULL;
    }
    ctx->prov = provctx;
    ctx->want = WANT_PRIVATE | WANT_CERT;
    if (strncasecmp(uri, "tpmkeys:", 8)) {
        TKP_RAISE(provctx, TKP_R_INVALID, "not a tpmkeys: URI");
        st_close(ctx);
        return NULL;
    }
    rest = uri + 8;
    if (!(ctx->uri = strndup(uri, strcspn(uri, "?"))) || !parse_uri(ctx, rest)) {
        st_close(ctx);
        return NULL;
    }
    return ctx;
}

/* Both store loaders (tpmkeys:, handle:) take only OSSL_STORE_expect(). */
const OSSL_PARAM *tkp_store_settable_ctx_params(void *provctx)
{
    static const OSSL_PARAM p[] = {
        OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
        OSSL_PARAM_END,
    };
    (void)provctx;
    return p;
}

int tkp_store_get_expect(const OSSL_PARAM params[], int *expect)
{
    const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT);
    return !p || OSSL_PARAM_get_int(p, expect);
}

static int st_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
    return tkp_store_get_expect(params, &((store_ctx *)vctx)->expect);
}

/* What to give for the URI's type= and the caller's OSSL_STORE_expect(). */
static int wanted(const store_ctx *ctx)
{
    switch (ctx->expect) {
    case 0:
        return ctx->want;
    case OSSL_STORE_INFO_PKEY:
        return ctx->want & WANT_PRIVATE;
    case OSSL_STORE_INFO_PUBKEY:
        /* The public half of a private key answers too. */
        return (ctx->want & (WANT_PRIVATE | WANT_PUBLIC)) ? WANT_PUBLIC : 0;
    case OSSL_STORE_INFO_CERT:
        return ctx->want & WANT_CERT;
    }
    return 0;  /* parameters, CRLs: we have none */
}

/* ------------------------------------------------------------------ loading */

static int list_keys(store_ctx *ctx, tk_ks *ks)
{
    tk_store *st = tk_ks_store(ks);
    int64_t token_id = 0;
    tk_token *tok = NULL;
    tk_key *k = NULL;
    tk_rc rc = TK_OK;

    if (ctx->token) {
        if ((rc = tk_token_get(st, ctx->token, &tok)) != TK_OK) {
            TKP_RAISE_RC(ctx->prov, rc, ctx->uri);
            return 0;
        }
        token_id = tok->id;
        tk_token_free(tok);
    }
    if (ctx->object)
        rc = tk_key_find_label(st, token_id, ctx->object, &k);
    else if (ctx->has_id)
        rc = tk_key_find_id(st, token_id, ctx->id.data, ctx->id.len, &k);
    else
        rc = tk_key_list(st, token_id, &ctx->keys, &ctx->nkeys);
    if (rc == TK_OK && k && ctx->has_id && ctx->object &&
        (k->ckaid.len != ctx->id.len || memcmp(k->ckaid.data, ctx->id.data, ctx->id.len))) {
        tk_key_free(k);
        k = NULL;
        rc = tk_fail(TK_ERR_NOT_FOUND, "the key has another id");
    }
    if (rc == TK_OK && k) {
        if (!(ctx->keys = calloc(1, sizeof(*ctx->keys)))) {
            tk_key_free(k);
            TKP_RAISE(ctx->prov, TKP_R_NOMEM, "out of memory");
            return 0;
        }
        ctx->keys[0] = k;
        ctx->nkeys = 1;
    }
    if (rc == TK_ERR_NOT_FOUND || (rc == TK_OK && !ctx->nkeys)) {
        TKP_RAISE(ctx->prov, TKP_R_NOT_FOUND,
                  "no key matches %s in the store %s (see `tpmkeys list`)", ctx->uri,
                  tk_store_path(st));
        return 0;
    }
    if (rc != TK_OK) {
        TKP_RAISE_RC(ctx->prov, rc, ctx->uri);
        return 0;
    }
    return 1;
}

/* Log in to the key's token when its key needs the PIN. */
static int login(store_ctx *ctx, tk_ks *ks, const tk_key *k, OSSL_PASSPHRASE_CALLBACK *pw_cb,
                 void *pw_cbarg)
{
    tk_token *tok = NULL;
    char info[96];
    char pin[TK_SECRET_MAX];
    size_t len = 0;
    tk_rc rc;

    if (k->auth != TK_AUTH_TOKEN || tk_ks_logged_in(ks, k->token_id))
        return 1;
    rc = tk_token_get_by_id(tk_ks_store(ks), k->token_id, &tok);
    if (rc != TK_OK) {
        TKP_RAISE_RC(ctx->prov, rc, "finding the key's token");
        return 0;
    }
    snprintf(info, sizeof(info), "PIN for token %s", tok->label);
    if (!ctx->has_pin) {
        OSSL_PARAM p[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PASSPHRASE_PARAM_INFO, info, 0),
            OSSL_PARAM_END,
        };
        if (!pw_cb || !pw_cb(pin, sizeof(pin), &len, p, pw_cbarg)) {
            TKP_RAISE(ctx->prov, TKP_R_PIN,
                      "key \"%s\" needs the PIN of token \"%s\": add ?pin-source=file:PATH or "
                      "?pin-value=PIN to the URI, or give it when asked (-passin)",
                      k->label, tok->label);
            tk_token_free(tok);
            OPENSSL_cleanse(pin, sizeof(pin));
            return 0;
        }
        tk_secret_set(&ctx->pin, pin, len);
        ctx->has_pin = true;
        OPENSSL_cleanse(pin, sizeof(pin));
    }
    rc = tk_ks_login(ks, k->token_id, &ctx->pin);
    if (rc != TK_OK) {
        char what[160];
        snprintf(what, sizeof(what), "logging in to token \"%s\"", tok->label);
        TKP_RAISE_RC(ctx->prov, rc, what);
    }
    tk_token_free(tok);
    return rc == TK_OK;
}

static int emit_key(store_ctx *ctx, tk_ks *ks, const tk_key *k, bool private,
                    OSSL_CALLBACK *object_cb, void *object_cbarg,
                    OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    tk_key *copy = NULL;
    tkp_key *key, *pub;
    tk_rc rc;

    if (private && !login(ctx, ks, k, pw_cb, pw_cbarg))
        return 0;
    if ((rc = tk_key_get(tk_ks_store(ks), k->id, &copy)) != TK_OK) {
        TKP_RAISE_RC(ctx->prov, rc, "reading the key from the store");
        return 0;
    }
    if (!(key = tkp_key_from_store(ctx->prov, &copy))) {
        tk_key_free(copy);
        return 0;
    }
    if (private)
        return tkp_pass_key(key, object_cb, object_cbarg);
    pub = tkp_key_from_pub(ctx->prov, key->pub);
    tkp_key_free(key);
    return pub ? tkp_pass_key(pub, object_cb, object_cbarg) : 0;
}

static int emit_cert(const tk_key *k, OSSL_CALLBACK *object_cb, void *object_cbarg)
{
    int type = OSSL_OBJECT_CERT;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
        OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, k->cert.data, k->cert.len),
        OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, "CERTIFICATE", 0),
        OSSL_PARAM_END,
    };
    return object_cb(params, object_cbarg);
}

static int st_load(void *vctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                   OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
    store_ctx *ctx = vctx;
    int want = wanted(ctx);
    tk_ks *ks;

    if (ctx->eof)
        return 0;
    if (!want) {
        ctx->eof = true;
        return 0;
    }
    if (!(ks = tkp_ks(ctx->prov))) {
        ctx->eof = true;
        return 0;
    }
    if (!ctx->listed) {
        ctx->listed = true;
        if (!list_keys(ctx, ks)) {
            ctx->eof = true;
            return 0;
        }
    }
    for (; ctx->next < ctx->nkeys; ctx->next++, ctx->stage = 0) {
        const tk_key *k = ctx->keys[ctx->next];
        while (ctx->stage < 3) {
            int stage = ctx->stage++;
            if (stage == 0 && (want & WANT_PRIVATE))
                return emit_key(ctx, ks, k, true, object_cb, object_cbarg, pw_cb, pw_cbarg);
            if (stage == 1 && (want & WANT_PUBLIC))
                return emit_key(ctx, ks, k, false, object_cb, object_cbarg, pw_cb, pw_cbarg);
            if (stage == 2 && (want & WANT_CERT) && k->cert.len)
                return emit_cert(k, object_cb, object_cbarg);
        }
    }
    ctx->eof = true;
    return 0;
}

static int st_eof(void *vctx)
{
    store_ctx *ctx = vctx;
    return ctx->eof || (ctx->listed && ctx->next >= ctx->nkeys);
}

const OSSL_DISPATCH tkp_store_functions[] = {
    { OSSL_FUNC_STORE_OPEN, (void (*)(void))st_open },
    { OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))tkp_store_settable_ctx_params },
    { OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))st_set_ctx_params },
    { OSSL_FUNC_STORE_LOAD, (void (*)(void))st_load },
    { OSSL_FUNC_STORE_EOF, (void (*)(void))st_eof },
    { OSSL_FUNC_STORE_CLOSE, (void (*)(void))st_close },
    { 0, NULL },
};
