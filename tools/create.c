/* SPDX-License-Identifier: BSD-3-Clause */
/* `tpmkeys create-key`: generate a key in the TPM or import a key file. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "tool.h"

#define KEYFILE_MAX (1u << 20)

/* ------------------------------------------------------------------ create-key */

/* Progress on a terminal while the TPM generates an RSA key: a thread rewrites one
 * line on stderr every second and clears it at the end. */
struct progress {
    const char *alg;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct timespec start;
    bool running, stop;
};

static void *progress_main(void *arg)
{
    struct progress *p = arg;
    struct timespec now, next;

    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long secs = (long)(now.tv_sec - p->start.tv_sec) -
                    (now.tv_nsec < p->start.tv_nsec ? 1 : 0);
        fprintf(stderr, "\rgenerating %s key in the TPM... %ld s", p->alg, secs);
        fflush(stderr);
        next = p->start;
        next.tv_sec += secs + 1;
        while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &next) != ETIMEDOUT)
            ;
    }
    fputs("\r\033[K", stderr);
    fflush(stderr);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* The library's progress callback: called once, as the TPM starts working. */
static void progress_begin(void *arg)
{
    struct progress *p = arg;
    pthread_condattr_t attr;

    if (p->running)
        return;
    if (pthread_condattr_init(&attr) != 0)
        return;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->stop = false;
    if (pthread_create(&p->thread, NULL, progress_main, p) == 0) {
        p->running = true;
        return;
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

static void progress_end(struct progress *p)
{
    if (!p->running)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    p->running = false;
}

struct create_args {
    const char *label, *import, *pass_file, *pin_file;
    tk_alg alg;      /* TK_ALG_NONE: not given */
    bool no_pin;
    tk_buf id;       /* --id, empty = default */
};

/* A key file to import, parsed up front (its algorithm is checked before any TPM work). */
struct keyfile {
    tk_buf data;
    bool tss2;
    EVP_PKEY *pkey;  /* software key (not TSS2) */
    tk_secret pass;
    tk_alg alg;
};

static void keyfile_free(struct keyfile *kf)
{
    tool_buf_wipe(&kf->data);
    EVP_PKEY_free(kf->pkey);
    tk_secret_clear(&kf->pass);
}

static tk_rc keyfile_tss2(const char *path, struct keyfile *kf, const tk_tss2key *f)
{
    TPM2B_PUBLIC pub;
    char prompt[512];
    tk_rc rc;

    kf->tss2 = true;
    if ((rc = tk_public_unmarshal(&f->pub, &pub)) != TK_OK)
        return tk_fail_ctx(rc, "%s", path);
    kf->alg = tk_alg_from_public(&pub);
    if (kf->alg == TK_ALG_NONE)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key in %s is not RSA 2048/3072/4096 or ECC "
                       "P-256/P-384/P-521", path);
    /* Writers disagree on emptyAuth (tpm2-tools 5.4 writes FALSE for keys without a
     * password): ask on a terminal, where an empty answer is fine. */
    if (!f->empty_auth && !kf->pass.len && tool_can_prompt()) {
        snprintf(prompt, sizeof(prompt), "Password of TPM key file %s (empty if none): ", path);
        if ((rc = tool_prompt_secret(prompt, &kf->pass)) != TK_OK)
            return tk_fail_ctx(rc, "reading the password");
    }
    return TK_OK;
}

static tk_rc keyfile_private(const char *path, struct keyfile *kf)
{
    char prompt[512];
    tk_rc rc;

    rc = tk_keyfile_parse_private(kf->data.data, kf->data.len, kf->pass.len ? &kf->pass : NULL,
                                  &kf->pkey);
    if (rc == TK_ERR_PASSPHRASE && !kf->pass.len) {
        if (!tool_can_prompt())
            return tk_fail(TK_ERR_PASSPHRASE, "%s is encrypted: give its passphrase with "
                           "--passphrase-file FILE or TPMKEYS_PASSPHRASE", path);
        snprintf(prompt, sizeof(prompt), "Passphrase of %s: ", path);
        if ((rc = tool_prompt_secret(prompt, &kf->pass)) != TK_OK)
            return tk_fail_ctx(rc, "reading the passphrase");
        rc = tk_keyfile_parse_private(kf->data.data, kf->data.len, &kf->pass, &kf->pkey);
    }
    if (rc != TK_OK)
        return tk_fail_ctx(rc, "%s", path);
    kf->alg = tool_pkey_alg(kf->pkey);
    if (kf->alg == TK_ALG_NONE)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key in %s is not RSA 2048/3072/4096 or ECC "
                       "P-256/P-384/P-521", path);
    return TK_OK;
}

static tk_rc keyfile_load(const struct create_args *a, struct keyfile *kf)
{
    tk_tss2key f;
    tk_rc rc;

    memset(&f, 0, sizeof(f));
    if ((rc = tool_read_file(a->import, KEYFILE_MAX, &kf->data)) != TK_OK)
        return rc;
    if (a->pass_file)
        rc = tool_secret_file(a->pass_file, "passphrase file", &kf->pass);
    else
        rc = tool_secret_env("TPMKEYS_PASSPHRASE", &kf->pass);
    if (rc != TK_OK)
        return rc;
    rc = tk_tss2key_parse(kf->data.data, kf->data.len, &f);
    if (rc == TK_OK) {
        rc = keyfile_tss2(a->import, kf, &f);
        tk_tss2key_free(&f);
        return rc;
    }
    if (rc != TK_ERR_NOT_FOUND)
        return tk_fail_ctx(rc, "%s", a->import);
    tk_clear_error();
    return keyfile_private(a->import, kf);
}

/* Fail before any slow work when the label or the id is taken. */
static tk_rc create_check_free(struct tool *t, const tk_token *tok, const struct create_args *a)
{
    tk_store *st = tk_ks_store(t->ks);
    tk_key *k = NULL;
    tk_rc rc;

    rc = tk_key_find_label(st, tok->id, a->label, &k);
    if (rc == TK_OK)
        rc = tk_fail(TK_ERR_EXISTS, "a key labelled '%s' already exists in token '%s'",
                     a->label, t->token);
    tk_key_free(k);
    k = NULL;
    if (rc != TK_ERR_NOT_FOUND)
        return rc;
    tk_clear_error();
    if (!a->id.len)
        return TK_OK;
    rc = tk_key_find_id(st, tok->id, a->id.data, a->id.len, &k);
    if (rc == TK_OK)
        rc = tk_fail(TK_ERR_EXISTS, "key '%s' of token '%s' already has this id", k->label,
                     t->token);
    tk_key_free(k);
    if (rc != TK_ERR_NOT_FOUND)
        return rc;
    tk_clear_error();
    return TK_OK;
}

static tk_rc create_login(struct tool *t, const tk_token *tok, const struct create_args *a)
{
    tk_secret pin;
    tk_rc rc;

    if (a->no_pin)
        return TK_OK;
    if (!tok->user_pub.len) {
        char hint[512];
        tool_init_hint(t, hint, sizeof(hint));
        return tk_fail(TK_ERR_PIN_REQUIRED, "token '%s' has no user PIN yet: set one with "
                       "`%s --user-pin-file FILE%s`, or make a key without PIN with --no-pin",
                       t->token, hint, tok->so_pub.len ? " --so-pin-file FILE" : "");
    }
    memset(&pin, 0, sizeof(pin));
    rc = tool_user_pin(t, a->pin_file, "the new key", &pin);
    if (rc == TK_ERR_PIN_REQUIRED && !a->pin_file && !tool_can_prompt())
        rc = tk_fail(TK_ERR_PIN_REQUIRED, "the new key gets the user PIN of token '%s': give "
                     "it with --pin-file FILE or TPMKEYS_PIN, or make a key without PIN with "
                     "--no-pin", t->token);
    if (rc == TK_OK)
        rc = tool_login(t, tok->id, &pin);
    tk_secret_clear(&pin);
    return rc;
}

static tk_rc create_generate(struct tool *t, const tk_token *tok, const struct create_args *a,
                             tk_authmode auth, tk_key **out)
{
    tk_alg alg = a->alg ? a->alg : TK_ALG_ECC_P256;
    struct progress p = { .alg = tk_alg_name(alg) };
    bool show = tk_alg_type(alg) == TK_KEY_RSA && isatty(STDERR_FILENO) == 1;
    tk_rc rc;

    /* The id goes in with the key: one change of the store. */
    tk_keygen_opts o = { .ckaid = a->id };
    rc = tk_ks_create_key_opts(t->ks, tok->id, a->label, alg, &o, auth,
                               show ? progress_begin : NULL, show ? &p : NULL, out);
    progress_end(&p);
    return rc;
}

static tk_rc create_import(struct tool *t, const tk_token *tok, const struct create_args *a,
                           struct keyfile *kf, tk_authmode auth, tk_key **out)
{
    tk_rc rc;

    if (kf->tss2)
        rc = tk_ks_import_file(t->ks, tok->id, a->label, kf->data.data, kf->data.len,
                               kf->pass.len ? &kf->pass : NULL, auth, out);
    else
        rc = tk_ks_import_pkey(t->ks, tok->id, a->label, kf->pkey, auth, out);
    if (rc != TK_OK)
        tk_fail_ctx(rc, "importing %s", a->import);
    return rc;
}

static int create_run(struct tool *t, struct create_args *a)
{
    struct keyfile kf;
    tk_token *tok = NULL;
    tk_key *k = NULL;
    tk_authmode auth = a->no_pin ? TK_AUTH_NONE : TK_AUTH_TOKEN;
    tk_rc rc;
    int ex = EXIT_OK;

    memset(&kf, 0, sizeof(kf));
    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_token(t, &tok)) != TK_OK ||
        (rc = create_check_free(t, tok, a)) != TK_OK)
        goto fail;
    if (a->import) {
        if ((rc = keyfile_load(a, &kf)) != TK_OK)
            goto fail;
        if (a->alg && a->alg != kf.alg) {
            ex = tool_usage(t, "--algorithm %s does not match the key in %s (%s)",
                            tk_alg_name(a->alg), a->import, tk_alg_name(kf.alg));
            goto out;
        }
    }
    if ((rc = create_login(t, tok, a)) != TK_OK)
        goto fail;
    if (a->import)
        rc = create_import(t, tok, a, &kf, auth, &k);
    else
        rc = create_generate(t, tok, a, auth, &k);
    if (rc != TK_OK)
        goto fail;
    if (a->id.len && a->import) {
        tk_buf_free(&k->ckaid);
        if ((rc = tk_buf_set(&k->ckaid, a->id.data, a->id.len)) != TK_OK ||
            (rc = tk_key_update(tk_ks_store(t->ks), k)) != TK_OK) {
            tk_fail_ctx(rc, "key '%s' was created, but setting its id failed", a->label);
            goto fail;
        }
    }
    if ((rc = tool_print_key(t->token, k)) != TK_OK)
        goto fail;
    goto out;
fail:
    ex = tool_fail(t, rc);
out:
    keyfile_free(&kf);
    tk_key_free(k);
    tk_token_free(tok);
    return ex;
}

int cmd_create_key(struct tool *t, int argc, char **argv)
{
    enum { OPT_LABEL = 256, OPT_ALG, OPT_IMPORT, OPT_PASS, OPT_PIN, OPT_NOPIN, OPT_ID };
    static const struct option opts[] = {
        { "label", required_argument, NULL, OPT_LABEL },
        { "algorithm", required_argument, NULL, OPT_ALG },
        { "import", required_argument, NULL, OPT_IMPORT },
        { "passphrase-file", required_argument, NULL, OPT_PASS },
        { "pin-file", required_argument, NULL, OPT_PIN },
        { "no-pin", no_argument, NULL, OPT_NOPIN },
        { "id", required_argument, NULL, OPT_ID },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct create_args a;
    const char *alg = NULL, *id = NULL;
    int c, ex;

    memset(&a, 0, sizeof(a));
    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_LABEL: a.label = optarg; break;
        case OPT_ALG: alg = optarg; break;
        case OPT_IMPORT: a.import = optarg; break;
        case OPT_PASS: a.pass_file = optarg; break;
        case OPT_PIN: a.pin_file = optarg; break;
        case OPT_NOPIN: a.no_pin = true; break;
        case OPT_ID: id = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if ((ex = tool_no_more_args(t, argc, argv, optind)) != 0)
        return ex;
    if (!a.label || !*a.label)
        return tool_usage(t, "--label LABEL is required");
    if (alg && (a.alg = tk_alg_from_name(alg)) == TK_ALG_NONE)
        return tool_usage(t, "unknown algorithm '%s' (rsa2048, rsa3072, rsa4096, ecc-p256, "
                          "ecc-p384, ecc-p521)", alg);
    if (a.pass_file && !a.import)
        return tool_usage(t, "--passphrase-file goes with --import");
    if (a.pin_file && a.no_pin)
        return tool_usage(t, "--pin-file and --no-pin exclude each other");
    if (id && tool_parse_hex(id, &a.id) != TK_OK)
        return tool_usage(t, "--id: %s", tk_errmsg());
    ex = create_run(t, &a);
    tk_buf_free(&a.id);
    return ex;
}
