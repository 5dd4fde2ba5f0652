/* SPDX-License-Identifier: BSD-3-Clause */
/* The commands that manage the store: init, list, show, delete, export, set-cert
 * (create-key is in create.c). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "tool.h"

#define CERT_MAX (1u << 20)

/* ------------------------------------------------------------------ init */

/* A new user PIN typed twice; empty input means "no PIN". */
static tk_rc prompt_new_pin(const char *token, tk_secret *pin)
{
    char prompt[128];
    tk_secret again;
    tk_rc rc = TK_OK;

    memset(&again, 0, sizeof(again));
    snprintf(prompt, sizeof(prompt), "New user PIN for token '%s' (empty for none): ", token);
    for (int i = 0; i < 3; i++) {
        if ((rc = tool_prompt_secret(prompt, pin)) != TK_OK || !pin->len)
            break;
        if ((rc = tool_prompt_secret("Repeat the user PIN: ", &again)) != TK_OK)
            break;
        bool same = again.len == pin->len && !CRYPTO_memcmp(again.data, pin->data, pin->len);
        tk_secret_clear(&again);
        if (same)
            return TK_OK;
        fputs("tpmkeys: init: the two PINs differ; try again\n", stderr);
        tk_secret_clear(pin);
        rc = tk_fail(TK_ERR_PIN_REQUIRED, "the two PINs differed three times: nothing done");
    }
    tk_secret_clear(&again);
    if (rc != TK_OK)
        tk_secret_clear(pin);
    return rc;
}

struct init_args {
    const char *user_file, *so_file, *owner_file;
    tk_secret user, so, owner;
};

/* The user PIN for init: the file, else a prompt on a terminal, else $TPMKEYS_PIN; none
 * when the token already has one (it would be ignored). */
static tk_rc init_user_pin(struct tool *t, struct init_args *a, const tk_token *before)
{
    if (a->user_file)
        return tool_secret_file(a->user_file, "user PIN file", &a->user);
    if (before && before->user_pub.len)
        return TK_OK;
    if (tool_can_prompt())
        return prompt_new_pin(t->token, &a->user);
    return tool_secret_env("TPMKEYS_PIN", &a->user);
}

static void init_report(const struct tool *t, bool srk_created, bool token_created,
                        const tk_token *before, const tk_token *after)
{
    bool had_user = before && before->user_pub.len, had_so = before && before->so_pub.len;

    printf("SRK %s at 0x%08x\n", srk_created ? "created" : "present", TK_SRK_HANDLE);
    printf("token '%s' %s\n", t->token, token_created ? "created" : "exists");
    if (after->user_pub.len)
        printf("user PIN %s\n", had_user ? "already set (not changed)" : "set");
    if (after->so_pub.len)
        printf("SO PIN %s\n", had_so ? "already set (not changed)" : "set");
    if (!after->user_pub.len) {
        char hint[512];
        tool_init_hint(t, hint, sizeof(hint));
        tool_note("token '%s' has no user PIN: only keys made with --no-pin can be created "
                  "until `%s --user-pin-file FILE%s` sets one",
                  t->token, hint, after->so_pub.len ? " --so-pin-file FILE" : "");
    }
}

static int init_run(struct tool *t, struct init_args *a)
{
    tk_token *before = NULL, *after = NULL;
    bool srk_created = false, token_created = false, existed;
    char *path = NULL;
    struct stat st;
    tk_rc rc;
    int ex = EXIT_OK;

    if (a->owner_file &&
        (rc = tool_secret_file(a->owner_file, "owner password file", &a->owner)) != TK_OK)
        return tool_fail(t, rc);
    if (a->so_file && (rc = tool_secret_file(a->so_file, "SO PIN file", &a->so)) != TK_OK)
        return tool_fail(t, rc);
    if ((rc = tool_store_path(t, &path)) != TK_OK)
        return tool_fail(t, rc);
    existed = stat(path, &st) == 0;
    free(path);
    if ((rc = tool_open(t, TK_STORE_CREATE)) != TK_OK)
        return tool_fail(t, rc);
    printf("store %s: %s\n", existed ? "present" : "created", tk_store_path(tk_ks_store(t->ks)));

    rc = tk_token_get(tk_ks_store(t->ks), t->token, &before);
    if (rc == TK_ERR_NOT_FOUND) {
        tk_clear_error();
        rc = TK_OK;
    }
    if (rc == TK_OK)
        rc = init_user_pin(t, a, before);
    if (rc == TK_OK)
        rc = tk_ks_init(t->ks, t->token, a->owner.len ? &a->owner : NULL,
                        a->so.len ? &a->so : NULL, a->user.len ? &a->user : NULL, &srk_created,
                        &token_created);
    if (rc == TK_OK)
        rc = tk_token_get(tk_ks_store(t->ks), t->token, &after);
    if (rc != TK_OK) {
        ex = tool_fail(t, rc);
        goto out;
    }
    init_report(t, srk_created, token_created, before, after);
    if (a->so.len && !after->so_pub.len) {
        tk_fail(TK_ERR_UNSUPPORTED, "the SO PIN was not set: tpmkeys sets an SO PIN only "
                "together with the token's first user PIN, and token '%s' already has one",
                t->token);
        ex = tool_fail(t, TK_ERR_UNSUPPORTED);
    }
out:
    tk_token_free(before);
    tk_token_free(after);
    return ex;
}

int cmd_init(struct tool *t, int argc, char **argv)
{
    enum { OPT_USER = 256, OPT_SO, OPT_OWNER };
    static const struct option opts[] = {
        { "user-pin-file", required_argument, NULL, OPT_USER },
        { "so-pin-file", required_argument, NULL, OPT_SO },
        { "owner-auth-file", required_argument, NULL, OPT_OWNER },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct init_args a;
    int c, ex;

    memset(&a, 0, sizeof(a));
    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        switch (c) {
        case OPT_USER: a.user_file = optarg; break;
        case OPT_SO: a.so_file = optarg; break;
        case OPT_OWNER: a.owner_file = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if ((ex = tool_no_more_args(t, argc, argv, optind)) != 0)
        return ex;
    ex = init_run(t, &a);
    tk_secret_clear(&a.user);
    tk_secret_clear(&a.so);
    tk_secret_clear(&a.owner);
    return ex;
}

/* ------------------------------------------------------------------ list */

/* The keys of the listing, with the token each belongs to. */
struct listing {
    tk_token **toks;
    size_t ntoks;
    tk_key ***keys;   /* per token */
    size_t *nkeys;
    tk_obj ***objs;   /* per token: certificates, public keys, data added through PKCS#11 */
    size_t *nobjs;
};

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->ntoks; i++) {
        if (l->keys)
            tk_key_list_free(l->keys[i], l->nkeys[i]);
        if (l->objs)
            tk_obj_list_free(l->objs[i], l->nobjs[i]);
        tk_token_free(l->toks[i]);
    }
    free(l->toks);
    free(l->keys);
    free(l->nkeys);
    free(l->objs);
    free(l->nobjs);
}

static tk_rc listing_load(struct tool *t, struct listing *l)
{
    tk_store *st = tk_ks_store(t->ks);
    tk_rc rc;

    if (t->token_given) {
        if (!(l->toks = calloc(1, sizeof(*l->toks))))
            return tk_fail(TK_ERR_NOMEM, "out of memory");
        if ((rc = tool_token(t, &l->toks[0])) != TK_OK)
            return rc;
        l->ntoks = 1;
    } else if ((rc = tk_token_list(st, &l->toks, &l->ntoks)) != TK_OK) {
        return rc;
    }
    l->keys = calloc(l->ntoks ? l->ntoks : 1, sizeof(*l->keys));
    l->nkeys = calloc(l->ntoks ? l->ntoks : 1, sizeof(*l->nkeys));
    l->objs = calloc(l->ntoks ? l->ntoks : 1, sizeof(*l->objs));
    l->nobjs = calloc(l->ntoks ? l->ntoks : 1, sizeof(*l->nobjs));
    if (!l->keys || !l->nkeys || !l->objs || !l->nobjs)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < l->ntoks; i++) {
        size_t damaged = 0;
        if ((rc = tk_key_list_intact(st, l->toks[i]->id, &l->keys[i], &l->nkeys[i],
                                     &damaged)) != TK_OK)
            return rc;
        if (damaged)
            fprintf(stderr, "tpmkeys: list: %zu damaged key%s in token '%s' not shown "
                    "(`tpmkeys show LABEL` names the problem; `tpmkeys delete LABEL` removes "
                    "it)\n", damaged, damaged == 1 ? "" : "s", l->toks[i]->label);
        if ((rc = tk_obj_list(st, l->toks[i]->id, &l->objs[i], &l->nobjs[i], &damaged)) !=
            TK_OK)
            return rc;
        if (damaged)
            fprintf(stderr, "tpmkeys: list: %zu damaged object%s in token '%s' not shown\n",
                    damaged, damaged == 1 ? "" : "s", l->toks[i]->label);
    }
    return TK_OK;
}

/* A certificate, public key or data object: no TPM key, so fewer lines than a key. */
static tk_rc print_object(const char *token, const tk_obj *o)
{
    static const char *const types[] = { [TK_OBJ_DATA] = "data", [TK_OBJ_CERT] = "cert",
                                         [TK_OBJ_PUBKEY] = "public" };
    char when[64], *id = tool_hex(o->ckaid.data, o->ckaid.len);
    char *tok = tk_uri_pct_encode((const uint8_t *)token, strlen(token));
    char *lbl = tk_uri_pct_encode((const uint8_t *)o->label, strlen(o->label));
    tk_rc rc = TK_OK;

    if (!id || !tok || !lbl) {
        rc = tk_fail(TK_ERR_NOMEM, "out of memory");
    } else {
        tool_time(o->created, when, sizeof(when));
        printf("object:      %s%s\n", tk_obj_class_name(o->cls),
               o->is_private ? " (private: shown through PKCS#11 after login)" : "");
        printf("label:       %s\n", o->label);
        printf("token:       %s\n", token);
        printf("size:        %zu bytes\n", o->value.len);
        printf("created:     %s\n", when);
        printf("id:          %s\n", id);
        printf("pkcs11:token=%s;object=%s;type=%s\n", tok, lbl, types[o->cls]);
    }
    free(id);
    free(tok);
    free(lbl);
    return rc;
}

/* One block per key, blocks separated by an empty line. */
static tk_rc listing_print(const struct listing *l)
{
    size_t shown = 0;
    tk_rc rc = TK_OK;

    for (size_t i = 0; i < l->ntoks && rc == TK_OK; i++)
        for (size_t j = 0; j < l->nkeys[i] && rc == TK_OK; j++) {
            if (shown++)
                putchar('\n');
            rc = tool_print_key(l->toks[i]->label, l->keys[i][j]);
        }
    for (size_t i = 0; i < l->ntoks && rc == TK_OK; i++)
        for (size_t j = 0; j < l->nobjs[i] && rc == TK_OK; j++) {
            if (shown++)
                putchar('\n');
            rc = print_object(l->toks[i]->label, l->objs[i][j]);
        }
    return rc;
}

int cmd_list(struct tool *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct listing l;
    size_t total = 0;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        if (c == 'h')
            return tool_help(t);
        return tool_bad_option(t, c, argv);
    }
    if ((ex = tool_no_more_args(t, argc, argv, optind)) != 0)
        return ex;
    memset(&l, 0, sizeof(l));
    if ((rc = tool_open(t, 0)) != TK_OK || (rc = listing_load(t, &l)) != TK_OK) {
        listing_free(&l);
        return tool_fail(t, rc);
    }
    for (size_t i = 0; i < l.ntoks; i++)
        total += l.nkeys[i] + l.nobjs[i];
    if (!l.ntoks)
        tool_note("the store has no token yet: run `tpmkeys init` first");
    else if (!total)
        tool_note("no keys yet: create one with `tpmkeys create-key --label NAME` (add "
                  "--no-pin for a key without PIN, --import FILE to import a key file)");
    else if ((rc = listing_print(&l)) != TK_OK)
        ex = tool_fail(t, rc);
    listing_free(&l);
    return ex;
}

/* ------------------------------------------------------------------ show */

static tk_rc show_fingerprint(const tk_key *k)
{
    EVP_PKEY *pkey = NULL;
    unsigned char *der = NULL, md[32];
    int len;
    tk_rc rc = tk_ks_public(k, &pkey);

    if (rc != TK_OK)
        return rc;
    len = i2d_PUBKEY(pkey, &der);
    if (len <= 0 || !EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding the public key");
    } else {
        char *hex = tool_hex(md, sizeof(md));
        if (hex)
            printf("fingerprint: sha256:%s\n", hex);
        else
            rc = tk_fail(TK_ERR_NOMEM, "out of memory");
        free(hex);
    }
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    return rc;
}

static void print_x509_name(const char *field, const X509_NAME *name)
{
    BIO *b = BIO_new_fp(stdout, BIO_NOCLOSE);
    if (!b)
        return;
    printf("%s", field);
    fflush(stdout);
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    BIO_free(b);
    putchar('\n');
}

static void print_asn1_time(const char *field, const ASN1_TIME *tm)
{
    BIO *b = BIO_new_fp(stdout, BIO_NOCLOSE);
    if (!b)
        return;
    printf("%s", field);
    fflush(stdout);
    ASN1_TIME_print(b, tm);
    BIO_free(b);
    putchar('\n');
}

static tk_rc show_cert(const tk_key *k)
{
    const unsigned char *p = k->cert.data;
    BIGNUM *serial = NULL;
    char *hex = NULL;
    X509 *x;

    if (!k->cert.len) {
        printf("certificate: none\n");
        return TK_OK;
    }
    x = d2i_X509(NULL, &p, (long)k->cert.len);
    if (!x)
        return tk_fail_ossl(TK_ERR_STORE, "the stored certificate does not parse");
    print_x509_name("certificate: subject ", X509_get_subject_name(x));
    print_x509_name("             issuer ", X509_get_issuer_name(x));
    serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    if (serial && (hex = BN_bn2hex(serial)))
        printf("             serial %s\n", hex);
    print_asn1_time("             not before ", X509_get0_notBefore(x));
    print_asn1_time("             not after ", X509_get0_notAfter(x));
    OPENSSL_free(hex);
    BN_free(serial);
    X509_free(x);
    return TK_OK;
}

/* Everything about a key: the block of list, then the details (its public key is known
 * to parse). */
static tk_rc show_details(const char *token, const tk_key *k, const tk_buf *pem)
{
    char updated[64];
    tk_rc rc;

    if ((rc = tool_print_key(token, k)) != TK_OK)
        return rc;
    tool_time(k->updated, updated, sizeof(updated));
    printf("updated:     %s\n", updated);
    printf("parent:      0x%08x\n", k->parent);
    printf("policy:      %s\n", k->policy.len ? "present" : "none");
    if ((rc = show_fingerprint(k)) == TK_OK && (rc = show_cert(k)) == TK_OK)
        printf("\n%.*s", (int)pem->len, (const char *)pem->data);
    return rc;
}

int cmd_show(struct tool *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    tk_key *k = NULL;
    tk_buf pem = { 0 };
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        if (c == 'h')
            return tool_help(t);
        return tool_bad_option(t, c, argv);
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    /* The public key first: a damaged key fails before anything is printed. */
    if ((rc = tool_open(t, 0)) == TK_OK && (rc = tool_find_key(t, argv[optind], &k)) == TK_OK &&
        (rc = tk_ks_export_public_pem(k, &pem)) == TK_OK)
        rc = show_details(t->token, k, &pem);
    ex = rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
    tk_buf_free(&pem);
    tk_key_free(k);
    return ex;
}

/* ------------------------------------------------------------------ delete */

/* No key of that label: a certificate, public key or data object of that label, if it is
 * the only one (PKCS#11 labels need not be unique; the key's error stands otherwise). */
static int delete_object(struct tool *t, const char *label, bool yes)
{
    char msg[512], prompt[640] = "";
    tk_token *tok = NULL;
    tk_obj **v = NULL, *hit = NULL;
    size_t n = 0, count = 0;
    tk_rc rc;
    int ex;

    snprintf(msg, sizeof(msg), "%s", tk_errmsg());
    if ((rc = tool_token(t, &tok)) != TK_OK ||
        (rc = tk_obj_list(tk_ks_store(t->ks), tok->id, &v, &n, NULL)) != TK_OK) {
        tk_token_free(tok);
        return tool_fail(t, rc);
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i]->label, label) && count++ == 0)
            hit = v[i];
    if (hit && !yes && tool_can_prompt())
        snprintf(prompt, sizeof(prompt), "Delete %s object '%s' of token '%s'? [y/N] ",
                 tk_obj_class_name(hit->cls), label, t->token);
    if (count != 1) {
        rc = count ? tk_fail(TK_ERR_INVALID, "token '%s' has %zu objects labelled '%s': delete "
                             "the one you mean through PKCS#11 (pkcs11-tool --delete-object "
                             "--type TYPE --id ID)", t->token, count, label)
                   : tk_fail(TK_ERR_NOT_FOUND, "%s", msg);
        ex = tool_fail(t, rc);
    } else if (!yes && tool_can_prompt() && !tool_confirm(prompt)) {
        fprintf(stderr, "tpmkeys: delete: object '%s' kept\n", label);
        ex = EXIT_ERROR;
    } else if ((rc = tk_obj_delete(tk_ks_store(t->ks), hit->id)) != TK_OK) {
        ex = tool_fail(t, rc);
    } else {
        printf("deleted %s object '%s' of token '%s'\n", tk_obj_class_name(hit->cls), label,
               t->token);
        ex = EXIT_OK;
    }
    tk_obj_list_free(v, n);
    tk_token_free(tok);
    return ex;
}

int cmd_delete(struct tool *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "yes", no_argument, NULL, 'y' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char prompt[512];
    bool yes = false;
    tk_key *k = NULL;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":hy", opts)) != -1) {
        switch (c) {
        case 'y': yes = true; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    if ((rc = tool_open(t, 0)) != TK_OK)
        return tool_fail(t, rc);
    if ((rc = tool_find_key(t, argv[optind], &k)) == TK_ERR_STORE) {
        /* A damaged row cannot be decoded, but it can still be removed by its label. */
        tk_token *tok = NULL;
        fprintf(stderr, "tpmkeys: delete: %s\n", tk_errmsg());
        if ((rc = tool_token(t, &tok)) == TK_OK)
            rc = tk_key_delete_label(tk_ks_store(t->ks), tok->id, argv[optind]);
        tk_token_free(tok);
        if (rc != TK_OK)
            return tool_fail(t, rc);
        printf("deleted damaged key '%s' of token '%s'\n", argv[optind], t->token);
        return EXIT_OK;
    }
    if (rc == TK_ERR_NOT_FOUND)
        return delete_object(t, argv[optind], yes);
    if (rc != TK_OK)
        return tool_fail(t, rc);
    if (!yes && tool_can_prompt()) {
        snprintf(prompt, sizeof(prompt),
                 "Delete key '%s' (%s) of token '%s'? Its TPM-wrapped private key exists "
                 "only in this store: it cannot be recovered. [y/N] ",
                 k->label, tk_alg_name(k->alg), t->token);
        if (!tool_confirm(prompt)) {
            fprintf(stderr, "tpmkeys: delete: key '%s' kept\n", k->label);
            tk_key_free(k);
            return EXIT_ERROR;
        }
    }
    rc = tk_key_delete(tk_ks_store(t->ks), k->id);
    if (rc == TK_OK)
        printf("deleted key '%s' of token '%s': its TPM-wrapped private key was only in this "
               "store, so the key is gone for good\n", k->label, t->token);
    ex = rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
    tk_key_free(k);
    return ex;
}

/* ------------------------------------------------------------------ export */

static tk_rc export_run(struct tool *t, const char *label, bool tss2, const char *pin_file,
                        const char *out, bool force)
{
    tk_secret pin;
    tk_key *k = NULL;
    tk_buf data = { 0 };
    tk_rc rc;

    memset(&pin, 0, sizeof(pin));
    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_find_key(t, label, &k)) != TK_OK)
        return rc;
    if (!tss2)
        rc = tk_ks_export_public_pem(k, &data);
    else if ((rc = tool_login_for_key(t, k, pin_file, &pin)) == TK_OK)
        rc = tk_ks_export_tss2(t->ks, k, pin.len ? &pin : NULL, true, &data);
    tk_secret_clear(&pin);
    if (rc == TK_OK)
        rc = tool_write_file(out, data.data, data.len, tss2 ? 0600 : 0644, force);
    tk_buf_free(&data);
    tk_key_free(k);
    return rc;
}

int cmd_export(struct tool *t, int argc, char **argv)
{
    enum { OPT_PUBLIC = 256, OPT_TSS2, OPT_PIN };
    static const struct option opts[] = {
        { "public", no_argument, NULL, OPT_PUBLIC },
        { "tss2", no_argument, NULL, OPT_TSS2 },
        { "out", required_argument, NULL, 'o' },
        { "force", no_argument, NULL, 'f' },
        { "pin-file", required_argument, NULL, OPT_PIN },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *out = NULL, *pin_file = NULL;
    bool pub = false, tss2 = false, force = false;
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":ho:f", opts)) != -1) {
        switch (c) {
        case OPT_PUBLIC: pub = true; break;
        case OPT_TSS2: tss2 = true; break;
        case 'o': out = optarg; break;
        case 'f': force = true; break;
        case OPT_PIN: pin_file = optarg; break;
        case 'h': return tool_help(t);
        default: return tool_bad_option(t, c, argv);
        }
    }
    if (optind >= argc)
        return tool_usage(t, "which key? give its LABEL");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 1)) != 0)
        return ex;
    if (pub == tss2)
        return tool_usage(t, "give one of --public and --tss2");
    rc = export_run(t, argv[optind], tss2, pin_file, out, force);
    return rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
}

/* ------------------------------------------------------------------ set-cert */

static tk_rc set_cert_run(struct tool *t, const char *label, const char *path)
{
    tk_key *k = NULL;
    tk_buf file = { 0 };
    X509 *x = NULL;
    EVP_PKEY *pkey = NULL;
    unsigned char *der = NULL;
    int len;
    tk_rc rc;

    if ((rc = tool_open(t, 0)) != TK_OK || (rc = tool_find_key(t, label, &k)) != TK_OK ||
        (rc = tool_read_file(path, CERT_MAX, &file)) != TK_OK ||
        (rc = tool_parse_cert(&file, path, &x)) != TK_OK ||
        (rc = tk_ks_public(k, &pkey)) != TK_OK)
        goto out;
    if (EVP_PKEY_eq(X509_get0_pubkey(x), pkey) != 1) {
        rc = tk_fail(TK_ERR_INVALID, "the certificate in %s is for another key: its public "
                     "key is not the public key of '%s'", path, label);
        goto out;
    }
    if ((len = i2d_X509(x, &der)) <= 0) {
        rc = tk_fail_ossl(TK_ERR_INVALID, "encoding the certificate");
        goto out;
    }
    if ((rc = tk_buf_set(&k->cert, der, (size_t)len)) == TK_OK &&
        (rc = tk_key_update(tk_ks_store(t->ks), k)) == TK_OK) {
        printf("certificate stored for key '%s'\n", label);
        print_x509_name("subject:     ", X509_get_subject_name(x));
        print_asn1_time("not after:   ", X509_get0_notAfter(x));
    }
out:
    OPENSSL_free(der);
    EVP_PKEY_free(pkey);
    X509_free(x);
    tk_buf_free(&file);
    tk_key_free(k);
    return rc;
}

int cmd_set_cert(struct tool *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    tk_rc rc;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        if (c == 'h')
            return tool_help(t);
        return tool_bad_option(t, c, argv);
    }
    if (argc - optind < 2)
        return tool_usage(t, "give the key's LABEL and the certificate FILE");
    if ((ex = tool_no_more_args(t, argc, argv, optind + 2)) != 0)
        return ex;
    rc = set_cert_run(t, argv[optind], argv[optind + 1]);
    return rc == TK_OK ? EXIT_OK : tool_fail(t, rc);
}
