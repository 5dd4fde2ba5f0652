/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Shared helpers of the key-file / TPM-structure unit tests: one output line per check
 * ("ok N - ..." / "not ok N - ..."), a private temporary folder, the openssl and
 * ssh-keygen command lines, and file and hex helpers.  Exit status: 0 all passed,
 * 1 a check failed, 77 a required tool is missing (automake's "skip").
 */
#ifndef TK_CRYPTO_TEST_H
#define TK_CRYPTO_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "tpmkeys.h"

static int t_failures, t_checks;
static char t_dir[] = "/tmp/tk-crypto-test.XXXXXX";
static bool t_dir_made;

static void check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool cond, const char *fmt, ...)
{
    va_list ap;

    t_checks++;
    printf("%s %d - ", cond ? "ok" : "not ok", t_checks);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!cond) {
        t_failures++;
        printf("#   last tpmkeys message: %s\n", tk_errmsg());
    }
    fflush(stdout);
}

/* A call's result code and, when want_msg is not NULL, a part of its message. */
static void check_rc(tk_rc got, tk_rc want, const char *want_msg, const char *what)
{
    bool ok = got == want && (!want_msg || strstr(tk_errmsg(), want_msg));

    check(ok, "%s", what);
    if (got != TK_OK)
        printf("#   message: %s\n", tk_errmsg());
    if (!ok)
        printf("#   got %s, want %s%s%s\n", tk_rc_name(got), tk_rc_name(want),
               want_msg ? " with message containing: " : "", want_msg ? want_msg : "");
}

static int t_finish(void)
{
    if (t_dir_made) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", t_dir);
    }
    printf("# %d checks, %d failed\n", t_checks, t_failures);
    return t_failures ? 1 : 0;
}

__attribute__((unused)) static bool have_tool(const char *name)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
    return system(cmd) == 0;
}

/* Make the temporary folder or exit 99 (a hard error for automake). */
__attribute__((unused)) static void t_setup(void)
{
    if (!mkdtemp(t_dir)) {
        perror("mkdtemp");
        exit(99);
    }
    t_dir_made = true;
}

/* Run a shell command in the temporary folder; its output goes to cmd.log there. */
static bool run(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static bool run(const char *fmt, ...)
{
    char inner[2048], cmd[2400];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(inner, sizeof(inner), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd '%s' && ( %s ) >>cmd.log 2>&1", t_dir, inner);
    rc = system(cmd);
    if (rc != 0)
        printf("# command failed (%d): %s\n", rc, inner);
    return rc == 0;
}

/* Read a file (relative names are in the temporary folder). Caller frees. */
__attribute__((unused)) static bool read_file(const char *name, uint8_t **data, size_t *len)
{
    char path[2048];
    FILE *f;
    long n;

    if (name[0] == '/')
        snprintf(path, sizeof(path), "%s", name);
    else
        snprintf(path, sizeof(path), "%s/%s", t_dir, name);
    f = fopen(path, "rb");
    if (!f) {
        printf("# cannot open %s\n", path);
        return false;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return false;
    }
    *data = malloc((size_t)n + 1);
    if (!*data || fread(*data, 1, (size_t)n, f) != (size_t)n) {
        free(*data);
        fclose(f);
        return false;
    }
    (*data)[n] = 0;
    *len = (size_t)n;
    fclose(f);
    return true;
}

__attribute__((unused)) static bool write_file(const char *name, const void *data, size_t len)
{
    char path[1024];
    FILE *f;
    bool ok;

    snprintf(path, sizeof(path), "%s/%s", t_dir, name);
    f = fopen(path, "wb");
    if (!f)
        return false;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* A PEM public key file (relative to the temporary folder). */
__attribute__((unused)) static EVP_PKEY *read_pubkey(const char *name)
{
    uint8_t *data;
    size_t len;
    BIO *bio;
    EVP_PKEY *pk;

    if (!read_file(name, &data, &len))
        return NULL;
    bio = BIO_new_mem_buf(data, (int)len);
    pk = bio ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    free(data);
    ERR_clear_error();
    return pk;
}

__attribute__((unused)) static size_t hex2bin(const char *hex, uint8_t *out, size_t max)
{
    size_t n = 0;

    while (hex[0] && hex[1] && n < max) {
        unsigned v;
        if (sscanf(hex, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        hex += 2;
    }
    return n;
}

/* Path of a committed test data file (tests/data/NAME under $top_srcdir). */
__attribute__((unused)) static const char *data_file(const char *name)
{
    static char path[1024];
    const char *top = getenv("top_srcdir");

#ifdef TK_TOP_SRCDIR
    if (!top || !*top)
        top = TK_TOP_SRCDIR;
#endif
    snprintf(path, sizeof(path), "%s/tests/data/%s", top && *top ? top : ".", name);
    return path;
}

#endif /* TK_CRYPTO_TEST_H */
