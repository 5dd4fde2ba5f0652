/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: the provider's URIs.  tpmkeys: URIs (RFC 7512 path attributes
 * token/object/id/type, query pin-value/pin-source) and handle:0x81xxxxxx, opened and
 * loaded through OSSL_STORE exactly as `openssl pkey -in tpmkeys:...` or nginx would,
 * with the provider linked in and a seeded store (fuzz_seed_store).  The parsers are in
 * provider/store_tpmkeys.c and provider/store_handle.c; store/uri.c writes these names
 * (tk_uri_pct_encode), so its output is checked to be plain RFC 3986 text.
 *
 * The input is the URI; only inputs that start with one of our two schemes are tried
 * (anything else would go to OpenSSL's own loaders).  The TPM is out of reach, so keys
 * that need a login fail there.  Invariant: a pin-value never appears in an error message.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/ui.h>

#include "fuzz.h"

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx);

static OSSL_LIB_CTX *libctx;
static UI_METHOD *ui;

/* OpenSSL's passphrase prompt: a fixed PIN instead of the terminal. */
static int pin_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag, (void)u;
    if (size < 4)
        return -1;
    memcpy(buf, "1234", 4);
    return 4;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char path[4200];
    tk_buf image = { 0 };

    (void)argc, (void)argv;
    snprintf(path, sizeof(path), "%s/store.db", fuzz_tmpdir());
    fuzz_env(path);
    fuzz_seed_store(path, &image);
    tk_buf_free(&image);
    /* Only our provider in this library context: no "file" loader to wander off to. */
    libctx = OSSL_LIB_CTX_new();
    if (!libctx || !OSSL_PROVIDER_add_builtin(libctx, "tpm2", OSSL_provider_init) ||
        !OSSL_PROVIDER_load(libctx, "tpm2") ||
        !(ui = UI_UTIL_wrap_read_pem_callback(pin_cb, 0))) {
        ERR_print_errors_fp(stderr);
        abort();
    }
    return 0;
}

/* The raw value of the query's pin-value attribute, when it is long enough to be told
 * apart from the rest of the URI. */
static bool pin_value(const char *uri, char *pin, size_t n)
{
    const char *q = strchr(uri, '?'), *p;

    if (strncasecmp(uri, "tpmkeys:", 8) || !q)
        return false;
    for (p = q + 1; *p; p += strcspn(p, "&"), p += *p == '&') {
        size_t len = strcspn(p, "&");
        if (len < 10 || strncmp(p, "pin-value=", 10))
            continue;
        len -= 10;
        if (len < 6 || len >= n)
            return false;
        memcpy(pin, p + 10, len);
        pin[len] = '\0';
        /* A PIN made only of URI and keyword characters ("object=") may be a piece of a
         * message's own text (an example URI), not the PIN: not a test of anything. */
        if (strspn(pin, "abcdefghijklmnopqrstuvwxyz0123456789=;:&?-_./") == len)
            return false;
        /* A PIN that also appears elsewhere (object=, pin-source=) may show legitimately. */
        return !memmem(uri, (size_t)(p - uri), pin, len) && !strstr(p + 10 + len, pin);
    }
    return false;
}

static void no_pin_in_errors(const char *pin)
{
    const char *data, *func, *file;
    int line, flags;

    while (ERR_get_error_all(&file, &line, &func, &data, &flags) != 0)
        FUZZ_CHECK(!(flags & ERR_TXT_STRING) || !data || !strstr(data, pin),
                   "the PIN shows in an error: %s", data);
    FUZZ_CHECK(!strstr(tk_errmsg(), pin), "the PIN shows in the store's message");
}

static void load_all(const char *uri)
{
    OSSL_STORE_CTX *sc = OSSL_STORE_open_ex(uri, libctx, NULL, ui, NULL, NULL, NULL, NULL);

    if (!sc)
        return;
    for (int i = 0; i < 16 && !OSSL_STORE_eof(sc); i++) {
        OSSL_STORE_INFO *info = OSSL_STORE_load(sc);
        if (!info && OSSL_STORE_error(sc))
            break;
        OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(sc);
}

/* What store/uri.c writes must be unreserved characters and %XX only. */
static void encode_check(const uint8_t *data, size_t size)
{
    char *enc = tk_uri_pct_encode(data, size);

    FUZZ_CHECK(enc != NULL, "tk_uri_pct_encode failed");
    for (const char *p = enc; *p; p++) {
        if (*p == '%') {
            FUZZ_CHECK(isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2]),
                       "bad escape in %s", enc);
            p += 2;
        } else {
            FUZZ_CHECK(isalnum((unsigned char)*p) || strchr("-._~", *p), "reserved "
                       "character '%c' left in %s", *p, enc);
        }
    }
    free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *uri, pin[256];
    bool check_pin;

    if (size > 4096)
        return 0;
    encode_check(data, size);
    uri = malloc(size + 1);
    if (!uri)
        return 0;
    memcpy(uri, data, size);
    uri[size] = '\0';
    if (strncasecmp(uri, "tpmkeys:", 8) && strncasecmp(uri, "handle:", 7)) {
        free(uri);
        return 0;
    }
    check_pin = pin_value(uri, pin, sizeof(pin));
    ERR_clear_error();
    tk_clear_error();
    load_all(uri);
    if (check_pin)
        no_pin_in_errors(pin);
    ERR_clear_error();
    OPENSSL_cleanse(pin, sizeof(pin));
    free(uri);
    return 0;
}
