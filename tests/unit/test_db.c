/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Unit tests of the sqlite store (store/db.c).  No TPM: key blobs are
 * well-formed TPM2B structures made with tss2-mu.  Prints one line per check
 * and exits non-zero when any check fails.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <tss2/tss2_mu.h>

#include "tpmkeys.h"

static int failures;
static char tmpdir[256];

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(bool ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s - ", ok ? "ok  " : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (!ok && tk_errmsg()[0])
        printf(" [last error: %s]", tk_errmsg());
    printf("\n");
    fflush(stdout);
    if (!ok)
        failures++;
}

/* rc is expected and the message contains every given fragment. */
static bool rc_msg(tk_rc rc, tk_rc want, const char *frag1, const char *frag2)
{
    if (rc != want) {
        printf("    got %s, want %s: %s\n", tk_rc_name(rc), tk_rc_name(want), tk_errmsg());
        return false;
    }
    if ((frag1 && !strstr(tk_errmsg(), frag1)) || (frag2 && !strstr(tk_errmsg(), frag2))) {
        printf("    message \"%s\" lacks \"%s\"%s%s\n", tk_errmsg(), frag1 ? frag1 : "",
               frag2 ? " or " : "", frag2 ? frag2 : "");
        return false;
    }
    return true;
}

static char *path_in(const char *name)
{
    char *p = malloc(strlen(tmpdir) + strlen(name) + 2);
    if (!p)
        abort();
    sprintf(p, "%s/%s", tmpdir, name);
    return p;
}

static mode_t mode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (sb.st_mode & 07777) : (mode_t)-1;
}

/* ------------------------------------------------------------------ fake TPM blobs */

static void make_pub(tk_alg alg, uint8_t seed, tk_buf *out)
{
    TPM2B_PUBLIC p;
    TPMT_PUBLIC *a = &p.publicArea;
    uint8_t buf[sizeof(TPM2B_PUBLIC) + 8];
    size_t off = 0;
    int bits = tk_alg_bits(alg);

    memset(&p, 0, sizeof(p));
    a->nameAlg = TPM2_ALG_SHA256;
    a->objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_DECRYPT |
                          TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_SENSITIVEDATAORIGIN;
    if (tk_alg_type(alg) == TK_KEY_RSA) {
        a->type = TPM2_ALG_RSA;
        a->parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        a->parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        a->parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)bits;
        a->unique.rsa.size = (UINT16)(bits / 8);
        memset(a->unique.rsa.buffer, seed, a->unique.rsa.size);
    } else {
        a->type = TPM2_ALG_ECC;
        a->parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        a->parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        a->parameters.eccDetail.curveID = tk_alg_curve(alg);
        a->parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
        a->unique.ecc.x.size = a->unique.ecc.y.size = (UINT16)((bits + 7) / 8);
        memset(a->unique.ecc.x.buffer, seed, a->unique.ecc.x.size);
        memset(a->unique.ecc.y.buffer, seed ^ 0x5a, a->unique.ecc.y.size);
    }
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&p, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
        abort();
    if (tk_buf_set(out, buf, off) != TK_OK)
        abort();
}

static void make_priv(size_t size, uint8_t seed, tk_buf *out)
{
    TPM2B_PRIVATE p;
    uint8_t buf[sizeof(TPM2B_PRIVATE)];
    size_t off = 0;

    memset(&p, 0, sizeof(p));
    p.size = (UINT16)size;
    for (size_t i = 0; i < size; i++)
        p.buffer[i] = (uint8_t)(seed + i);
    if (Tss2_MU_TPM2B_PRIVATE_Marshal(&p, buf, sizeof(buf), &off) != TSS2_RC_SUCCESS)
        abort();
    if (tk_buf_set(out, buf, off) != TK_OK)
        abort();
}

static void set_bytes(tk_buf *b, size_t len, uint8_t seed)
{
    uint8_t *tmp = malloc(len ? len : 1);
    if (!tmp)
        abort();
    for (size_t i = 0; i < len; i++)
        tmp[i] = (uint8_t)(seed * 31 + i);
    if (tk_buf_set(b, tmp, len) != TK_OK)
        abort();
    free(tmp);
}

static tk_key *new_key(int64_t token_id, const char *label, tk_alg alg, uint8_t seed)
{
    tk_key *k = calloc(1, sizeof(*k));
    if (!k || !(k->label = strdup(label)))
        abort();
    k->token_id = token_id;
    k->alg = alg;
    make_pub(alg, seed, &k->pub);
    make_priv(126, seed, &k->priv);
    set_bytes(&k->ckaid, 20, seed);
    set_bytes(&k->authsalt, 16, (uint8_t)(seed + 1));
    k->parent = TK_SRK_HANDLE;
    k->auth = TK_AUTH_TOKEN;
    k->origin = TK_ORIGIN_GENERATED;
    return k;
}

static tk_token *new_token(const char *label, bool seals)
{
    tk_token *t = calloc(1, sizeof(*t));
    if (!t || !(t->label = strdup(label)))
        abort();
    if (seals) {
        make_pub(TK_ALG_ECC_P256, 0x11, &t->user_pub);
        make_priv(80, 0x12, &t->user_priv);
        make_pub(TK_ALG_ECC_P256, 0x21, &t->so_pub);
        make_priv(80, 0x22, &t->so_priv);
    }
    return t;
}

static bool buf_eq(const tk_buf *a, const tk_buf *b)
{
    return a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

static bool key_eq(const tk_key *a, const tk_key *b)
{
    return a->id == b->id && a->token_id == b->token_id && !strcmp(a->label, b->label) &&
           buf_eq(&a->ckaid, &b->ckaid) && a->alg == b->alg && buf_eq(&a->pub, &b->pub) &&
           buf_eq(&a->priv, &b->priv) && a->parent == b->parent && a->auth == b->auth &&
           buf_eq(&a->authsalt, &b->authsalt) && buf_eq(&a->policy, &b->policy) &&
           buf_eq(&a->cert, &b->cert) && a->origin == b->origin && a->created == b->created &&
           a->updated == b->updated;
}

static void token_list_free(tk_token **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tk_token_free(v[i]);
    free(v);
}

/* Token "tpmkeys" in a fresh store; returns its id. */
static int64_t setup_token(tk_store *st, const char *label)
{
    tk_token *t = new_token(label, false);
    int64_t id = 0;
    if (tk_token_put(st, t) == TK_OK)
        id = t->id;
    tk_token_free(t);
    return id;
}

/* Run SQL on the file behind tpmkeys' back. */
static bool raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    bool ok = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) ==
                  SQLITE_OK &&
              sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK;
    if (!ok)
        printf("    raw sqlite on %s failed: %s\n", path, err ? err : sqlite3_errmsg(db));
    sqlite3_free(err);
    sqlite3_close(db);
    return ok;
}

static int64_t raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

static size_t count_keys(tk_store *st, int64_t token_id)
{
    tk_key **v = NULL;
    size_t n = 0;
    if (tk_key_list(st, token_id, &v, &n) != TK_OK)
        return (size_t)-1;
    tk_key_list_free(v, n);
    return n;
}

/* ------------------------------------------------------------------ tests */

static void test_default_path(void)
{
    char *p = NULL, *want;
    struct passwd *pw = getpwuid(getuid());
    tk_rc rc;
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

    setenv("TPMKEYS_STORE", "/srv/keys/x.db", 1);
    setenv("XDG_DATA_HOME", "/xdg/data", 1);
    rc = tk_store_default_path(&p);
    check(rc == TK_OK && !strcmp(p, "/srv/keys/x.db"),
          "path: TPMKEYS_STORE wins (%s)", p ? p : "-");
    free(p);
    p = NULL;

    unsetenv("TPMKEYS_STORE");
    rc = tk_store_default_path(&p);
    check(rc == TK_OK && !strcmp(p, "/xdg/data/tpmkeys/store.db"),
          "path: $XDG_DATA_HOME/tpmkeys/store.db (%s)", p ? p : "-");
    free(p);
    p = NULL;

    setenv("HOME", "/home/alice", 1);
    setenv("XDG_DATA_HOME", "relative/dir", 1);
    rc = tk_store_default_path(&p);
    check(rc == TK_OK &&
              !strcmp(p, "/home/alice/.local/share/tpmkeys/store.db"),
          "path: a relative XDG_DATA_HOME is ignored, $HOME used (%s)", p ? p : "-");
    free(p);
    p = NULL;

    unsetenv("XDG_DATA_HOME");
    setenv("TPMKEYS_STORE", "", 1);
    rc = tk_store_default_path(&p);
    check(rc == TK_OK &&
              !strcmp(p, "/home/alice/.local/share/tpmkeys/store.db"),
          "path: ~/.local/share/tpmkeys/store.db, empty TPMKEYS_STORE ignored (%s)",
          p ? p : "-");
    free(p);
    p = NULL;

    unsetenv("HOME");
    want = malloc(strlen(pw->pw_dir) + 64);
    sprintf(want, "%s/.local/share/tpmkeys/store.db", pw->pw_dir);
    rc = tk_store_default_path(&p);
    check(rc == TK_OK && !strcmp(p, want),
          "path: without HOME the password database's home (%s)", p ? p : "-");
    free(p);
    free(want);
    unsetenv("TPMKEYS_STORE");
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
}

static void test_create(void)
{
    char *path = path_in("c1/a/b/store.db"), *p;
    tk_store *st = NULL, *st2 = NULL;
    mode_t old = umask(0);
    tk_rc rc;

    rc = tk_store_open(path, 0, &st);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, path, "tpmkeys init") && !st,
          "create: a missing store without TK_STORE_CREATE is TK_ERR_NOT_FOUND");

    rc = tk_store_open(path, TK_STORE_CREATE, &st);
    check(rc == TK_OK && st, "create: new store with missing folders (umask 0)");
    if (!st)
        goto out;
    p = path_in("c1");
    check(mode_of(p) == 0700, "create: folder c1 is 0700 (%o)", mode_of(p));
    free(p);
    p = path_in("c1/a/b");
    check(mode_of(p) == 0700, "create: folder c1/a/b is 0700 (%o)", mode_of(p));
    free(p);
    check(mode_of(path) == 0600, "create: file is 0600 (%o)", mode_of(path));
    p = path_in("c1/a/b/store.db-wal");
    check(mode_of(p) == 0600, "create: WAL file is 0600 (%o)", mode_of(p));
    free(p);
    p = path_in("c1/a/b/store.db-shm");
    check(mode_of(p) == 0600, "create: shared-memory file is 0600 (%o)", mode_of(p));
    free(p);
    check(!strcmp(tk_store_path(st), path), "create: tk_store_path is the path given");
    check(!tk_store_is_readonly(st), "create: store is writable");
    check(tk_store_schema_version(st) == 2, "create: schema version 2 (%d)",
          tk_store_schema_version(st));
    const char *id = tk_store_id(st);
    check(strlen(id) == 16 && strspn(id, "0123456789abcdef") == 16, "create: store id %s", id);
    check(raw_int(path, "PRAGMA journal_mode") >= 0, "create: file readable by sqlite");

    /* Reopen through TPMKEYS_STORE (path NULL): the same id, no second creation. */
    setenv("TPMKEYS_STORE", path, 1);
    rc = tk_store_open(NULL, TK_STORE_CREATE, &st2);
    check(rc == TK_OK && !strcmp(tk_store_id(st2), id) && !strcmp(tk_store_path(st2), path),
          "create: reopen via TPMKEYS_STORE keeps the store id");
    unsetenv("TPMKEYS_STORE");
    tk_store_close(st2);
    tk_store_close(st);
    st = NULL;

    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char mode[16] = "";
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    check(!strcmp(mode, "wal"), "create: journal mode is WAL (%s)", mode);

    /* A umask that takes the owner's own write bit: still 0700 / 0600. */
    umask(0277);
    free(path);
    path = path_in("c2/deep/store.db");
    rc = tk_store_open(path, TK_STORE_CREATE, &st);
    check(rc == TK_OK, "create: new store under umask 0277");
    p = path_in("c2/deep");
    check(mode_of(p) == 0700, "create: folder is 0700 under umask 0277 (%o)", mode_of(p));
    free(p);
    check(mode_of(path) == 0600, "create: file is 0600 under umask 0277 (%o)", mode_of(path));
    tk_store_close(st);
out:
    umask(old);
    free(path);
}

static void test_crud(void)
{
    char *path = path_in("crud.db");
    tk_store *st = NULL;
    tk_token *t = NULL, *t2 = NULL, **tl = NULL;
    tk_key *k = NULL, *k2 = NULL, *got = NULL, *other = NULL, **kl = NULL;
    size_t n = 0;
    int now = -1;
    tk_rc rc;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK) {
        check(false, "crud: open");
        free(path);
        return;
    }
    /* tokens */
    t = new_token("tpmkeys", true);
    t->user_fails = 2;
    rc = tk_token_put(st, t);
    check(rc == TK_OK && t->id > 0 && t->created > 0, "token: insert sets id %lld and created",
          (long long)t->id);
    rc = tk_token_get(st, "tpmkeys", &t2);
    check(rc == TK_OK && t2->id == t->id && !strcmp(t2->label, "tpmkeys") &&
              buf_eq(&t2->user_pub, &t->user_pub) && buf_eq(&t2->user_priv, &t->user_priv) &&
              buf_eq(&t2->so_pub, &t->so_pub) && buf_eq(&t2->so_priv, &t->so_priv) &&
              t2->user_fails == 2 && t2->so_fails == 0 && t2->created == t->created,
          "token: get by label returns every field");
    tk_token_free(t2);
    t2 = NULL;

    tk_token *dup = new_token("tpmkeys", false);
    rc = tk_token_put(st, dup);
    check(rc_msg(rc, TK_ERR_EXISTS, "'tpmkeys'", "already exists") && dup->id == 0,
          "token: duplicate label is TK_ERR_EXISTS, id untouched");
    tk_token_free(dup);

    rc = tk_token_count_fail(st, t->id, 0, false, &now);
    check(rc == TK_OK && now == 3, "token: count a wrong user PIN -> 3 (%d)", now);
    rc = tk_token_count_fail(st, t->id, 1, false, &now);
    check(rc == TK_OK && now == 1, "token: count a wrong SO PIN -> 1 (%d)", now);
    rc = tk_token_count_fail(st, t->id, 0, true, &now);
    check(rc == TK_OK && now == 0, "token: reset the user counter -> 0 (%d)", now);
    rc = tk_token_count_fail(st, 9999, 0, false, &now);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "#9999", NULL), "token: counting on a missing token");

    /* update: clear the SO seal, set counters */
    tk_buf_free(&t->so_pub);
    tk_buf_free(&t->so_priv);
    t->so_fails = 0;
    t->user_fails = 1;
    rc = tk_token_put(st, t);
    rc = rc == TK_OK ? tk_token_get_by_id(st, t->id, &t2) : rc;
    check(rc == TK_OK && t2->so_pub.len == 0 && t2->so_priv.len == 0 && t2->user_fails == 1 &&
              buf_eq(&t2->user_pub, &t->user_pub),
          "token: update PIN seals and counters, get by id");
    tk_token_free(t2);
    t2 = NULL;

    tk_token *bad = new_token("this label is far longer than thirty-two bytes", false);
    check(rc_msg(tk_token_put(st, bad), TK_ERR_INVALID, "label", NULL),
          "token: a label over 32 bytes is refused");
    tk_token_free(bad);

    int64_t other_tok = setup_token(st, "other");
    rc = tk_token_list(st, &tl, &n);
    check(rc == TK_OK && n == 2 && tl[0]->id == t->id && tl[1]->id == other_tok,
          "token: list returns both, ordered by id");
    token_list_free(tl, n);
    rc = tk_token_get(st, "nope", &t2);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "'nope'", NULL) && !t2, "token: missing label");

    /* keys */
    k = new_key(t->id, "web", TK_ALG_RSA2048, 1);
    set_bytes(&k->cert, 700, 9);
    set_bytes(&k->policy, 40, 8);
    k->origin = TK_ORIGIN_IMPORTED;
    rc = tk_key_add(st, k);
    check(rc == TK_OK && k->id > 0 && k->created > 0 && k->updated == k->created,
          "key: add sets id %lld, created, updated", (long long)k->id);
    rc = tk_key_get(st, k->id, &got);
    check(rc == TK_OK && key_eq(got, k), "key: get by id returns every field unchanged");
    tk_key_free(got);
    got = NULL;

    k2 = new_key(t->id, "ssh", TK_ALG_ECC_P384, 2);
    k2->auth = TK_AUTH_NONE;
    tk_buf_free(&k2->authsalt);
    rc = tk_key_add(st, k2);
    check(rc == TK_OK, "key: add a second key (P-384, no auth, no salt)");

    other = new_key(t->id, "web", TK_ALG_ECC_P256, 3);
    rc = tk_key_add(st, other);
    check(rc_msg(rc, TK_ERR_EXISTS, "a key labelled 'web' already exists in token 'tpmkeys'",
                 NULL) && other->id == 0,
          "key: duplicate label in a token is TK_ERR_EXISTS, key untouched");
    other->token_id = other_tok;
    rc = tk_key_add(st, other);
    check(rc == TK_OK, "key: the same label in another token is fine");
    other->token_id = 4242;
    other->id = 0;
    free(other->label);
    other->label = strdup("orphan");
    rc = tk_key_add(st, other);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "#4242", NULL), "key: adding to a missing token");

    rc = tk_key_find_label(st, t->id, "ssh", &got);
    check(rc == TK_OK && key_eq(got, k2), "key: find by label in a token");
    tk_key_free(got);
    got = NULL;
    rc = tk_key_find_label(st, 0, "web", &got);
    check(rc == TK_OK && got->id == k->id, "key: find by label in any token: first by id");
    tk_key_free(got);
    got = NULL;
    rc = tk_key_find_label(st, other_tok, "web", &got);
    check(rc == TK_OK && got->token_id == other_tok, "key: find by label in the other token");
    tk_key_free(got);
    got = NULL;
    rc = tk_key_find_label(st, t->id, "missing-key", &got);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "'missing-key'", "token 'tpmkeys'") && !got,
          "key: missing label is TK_ERR_NOT_FOUND naming label and token");
    rc = tk_key_find_id(st, t->id, k2->ckaid.data, k2->ckaid.len, &got);
    check(rc == TK_OK && got->id == k2->id, "key: find by CKA_ID");
    tk_key_free(got);
    got = NULL;
    uint8_t noid[3] = { 0xde, 0xad, 0x01 };
    rc = tk_key_find_id(st, 0, noid, sizeof(noid), &got);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "dead01", NULL), "key: missing CKA_ID named in hex");

    rc = tk_key_list(st, t->id, &kl, &n);
    check(rc == TK_OK && n == 2 && kl[0]->id == k->id && kl[1]->id == k2->id,
          "key: list of a token, ordered by id");
    tk_key_list_free(kl, n);
    check(count_keys(st, 0) == 3, "key: list of all tokens has 3 keys");

    /* update */
    free(k->label);
    k->label = strdup("web-renamed");
    set_bytes(&k->ckaid, 8, 77);
    set_bytes(&k->cert, 300, 78);
    make_priv(150, 79, &k->priv);
    rc = tk_key_update(st, k);
    rc = rc == TK_OK ? tk_key_get(st, k->id, &got) : rc;
    check(rc == TK_OK && !strcmp(got->label, "web-renamed") && buf_eq(&got->ckaid, &k->ckaid) &&
              buf_eq(&got->cert, &k->cert) && buf_eq(&got->priv, &k->priv) &&
              buf_eq(&got->pub, &k->pub) && got->updated >= k->created,
          "key: update label, CKA_ID, certificate, private blob");
    tk_key_free(got);
    got = NULL;
    tk_buf_free(&k->cert);
    rc = tk_key_update(st, k);
    rc = rc == TK_OK ? tk_key_get(st, k->id, &got) : rc;
    check(rc == TK_OK && got->cert.len == 0, "key: update removes the certificate");
    tk_key_free(got);
    got = NULL;
    free(k->label);
    k->label = strdup("ssh");
    rc = tk_key_update(st, k);
    check(rc_msg(rc, TK_ERR_EXISTS, "'ssh' already exists in token 'tpmkeys'", NULL),
          "key: renaming onto a taken label is TK_ERR_EXISTS");

    /* validation on write */
    tk_key *junk = new_key(t->id, "junk", TK_ALG_RSA2048, 5);
    make_pub(TK_ALG_ECC_P256, 5, &junk->pub);
    check(rc_msg(tk_key_add(st, junk), TK_ERR_INVALID, "holds ecc-p256 key, not rsa2048", NULL)
              && junk->id == 0,
          "key: a public blob of another algorithm is refused");
    make_pub(TK_ALG_RSA2048, 5, &junk->pub);
    junk->parent = 0x80000001;
    check(rc_msg(tk_key_add(st, junk), TK_ERR_INVALID, "parent", NULL),
          "key: a transient parent is refused");
    junk->parent = TK_SRK_HANDLE;
    free(junk->label);
    junk->label = strdup("");
    check(rc_msg(tk_key_add(st, junk), TK_ERR_INVALID, "label", NULL),
          "key: an empty label is refused");
    tk_key_free(junk);

    /* delete */
    rc = tk_key_delete(st, k2->id);
    check(rc == TK_OK, "key: delete");
    rc = tk_key_get(st, k2->id, &got);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, NULL, NULL) && !got, "key: deleted key is gone");
    rc = tk_key_delete(st, k2->id);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, NULL, NULL), "key: deleting twice is TK_ERR_NOT_FOUND");
    rc = tk_key_find_label(st, t->id, "ssh", &got);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "'ssh'", NULL), "key: deleted label not found");

    rc = tk_token_delete(st, other_tok);
    check(rc == TK_OK && count_keys(st, 0) == 1 && count_keys(st, other_tok) == 0,
          "token: delete removes its keys too");
    rc = tk_token_delete(st, other_tok);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, NULL, NULL), "token: deleting twice");

    tk_key_free(k);
    tk_key_free(k2);
    tk_key_free(other);
    tk_token_free(t);
    tk_store_close(st);
    free(path);
}

static void test_changed(void)
{
    char *path = path_in("changed.db");
    tk_store *a = NULL, *b = NULL;
    tk_key *k = NULL;

    if (tk_store_open(path, TK_STORE_CREATE, &a) != TK_OK ||
        tk_store_open(path, 0, &b) != TK_OK) {
        check(false, "changed: open two connections");
        goto out;
    }
    int64_t tid = setup_token(b, "tpmkeys");
    check(tk_store_changed(a), "changed: first call is true");
    check(!tk_store_changed(a), "changed: nothing new -> false");
    k = new_key(tid, "from-b", TK_ALG_ECC_P256, 1);
    check(tk_key_add(b, k) == TK_OK, "changed: other connection adds a key");
    check(tk_store_changed(a), "changed: seen by the first connection");
    check(!tk_store_changed(a), "changed: and only once");
    tk_key_delete(b, k->id);
    check(tk_store_changed(a), "changed: a delete by the other connection is seen");
    tk_key_free(k);
    k = new_key(tid, "from-a", TK_ALG_ECC_P256, 2);
    tk_store_changed(b);
    check(tk_key_add(a, k) == TK_OK && !tk_store_changed(a),
          "changed: our own write does not count");
    check(tk_store_changed(b), "changed: the other side sees our write");
out:
    tk_key_free(k);
    tk_store_close(a);
    tk_store_close(b);
    free(path);
}

static void test_migration(void)
{
    char *path = path_in("v0.db");
    tk_store *st = NULL;
    tk_rc rc;
    int fd = open(path, O_CREAT | O_WRONLY, 0600);

    close(fd);
    rc = tk_store_open(path, TK_STORE_READONLY, &st);
    check(rc_msg(rc, TK_ERR_READONLY, "upgrade", "read-only") && !st,
          "migration: a read-only store that needs an upgrade is refused");
    rc = tk_store_open(path, 0, &st);
    check(rc == TK_OK && tk_store_schema_version(st) == 2,
          "migration: an empty v0 file is upgraded to v2 at open");
    tk_store_close(st);
    st = NULL;
    check(raw_int(path, "PRAGMA user_version") == 2 &&
              raw_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                            "name IN ('meta', 'tokens', 'keys', 'objects')") == 4 &&
              raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'keys_by_ckaid'")
                  == 1 &&
              raw_int(path, "SELECT count(*) FROM meta") == 1,
          "migration: v2 has meta, tokens, keys, objects, the CKA_ID index and one store id");

    raw_exec(path, "PRAGMA user_version = 7");
    rc = tk_store_open(path, 0, &st);
    check(rc_msg(rc, TK_ERR_STORE, "upgrade tpmkeys", "version 7") && !st,
          "migration: a store from a newer tpmkeys is refused");
    free(path);

    /* Someone else's database: refused and left exactly as it was. */
    path = path_in("foreign.db");
    raw_exec(path, "CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine')");
    rc = tk_store_open(path, 0, &st);
    check(rc_msg(rc, TK_ERR_STORE, "not a tpmkeys store", NULL) && !st,
          "migration: another program's database is refused");
    check(raw_int(path, "PRAGMA user_version") == 0 &&
              raw_int(path, "SELECT count(*) FROM sqlite_master") == 1,
          "migration: the refused database is left untouched (rolled back)");
    free(path);

    path = path_in("garbage.db");
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    for (int i = 0; i < 64; i++)
        if (write(fd, "this is not a database at all. ", 31) != 31)
            break;
    close(fd);
    rc = tk_store_open(path, 0, &st);
    check(rc_msg(rc, TK_ERR_STORE, "not a tpmkeys store", path) && !st,
          "migration: a file that is not sqlite is TK_ERR_STORE");
    free(path);
}

static void test_damaged(void)
{
    char *path = path_in("damaged.db");
    char want[512], sql[256];
    tk_store *st = NULL;
    tk_key *k = NULL, *got = NULL, **kl = NULL;
    tk_token *t = NULL;
    size_t n = 99;
    tk_rc rc;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK) {
        check(false, "damaged: open");
        free(path);
        return;
    }
    int64_t tid = setup_token(st, "tpmkeys");
    k = new_key(tid, "good", TK_ALG_RSA3072, 4);
    tk_key_add(st, k);
    tk_key_free(k);
    k = new_key(tid, "bad", TK_ALG_RSA2048, 5);
    tk_key_add(st, k);

    static const struct {
        const char *set, *why;
    } cases[] = {
        { "alg = 99", "alg" },
        { "alg = 4", "holds rsa2048 key, not ecc-p256" },
        { "auth = 7", "auth mode" },
        { "pub = x'0102'", "TPM2B_PUBLIC" },
        { "pub = 'text'", "not a blob" },
        { "priv = x''", "TPM2B_PRIVATE" },
        { "parent = 5", "parent" },
        { "origin = -1", "origin" },
        { "authsalt = x'01'", "salt" },
        { "created = 'yesterday'", "created" },
        { "token_id = 'x'", "token_id" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(sql, sizeof(sql), "UPDATE keys SET %s WHERE id = %lld", cases[i].set,
                 (long long)k->id);
        if (!raw_exec(path, sql)) {
            check(false, "damaged: corrupt with %s", cases[i].set);
            continue;
        }
        snprintf(want, sizeof(want), "key 'bad' (row %lld) in %s is damaged: ",
                 (long long)k->id, path);
        rc = tk_key_get(st, k->id, &got);
        check(rc_msg(rc, TK_ERR_STORE, want, cases[i].why) && !got,
              "damaged: %s -> TK_ERR_STORE on get", cases[i].set);
        rc = tk_key_list(st, 0, &kl, &n);
        check(rc_msg(rc, TK_ERR_STORE, want, NULL) && !kl && n == 99,
              "damaged: %s -> listing fails too, nothing skipped", cases[i].set);
        /* Put the row back. */
        tk_key_delete(st, k->id);
        k->id = 0;
        tk_key_add(st, k);
    }
    /* A label written as garbage bytes (CHECK constraints bypassed). */
    snprintf(sql, sizeof(sql), "PRAGMA ignore_check_constraints = 1; UPDATE keys SET label = "
             "'' WHERE id = %lld", (long long)k->id);
    raw_exec(path, sql);
    rc = tk_key_list(st, tid, &kl, &n);
    check(rc_msg(rc, TK_ERR_STORE, "is damaged: the label is empty", NULL),
          "damaged: an empty label is reported");
    snprintf(sql, sizeof(sql), "UPDATE keys SET label = x'41004243' WHERE id = %lld",
             (long long)k->id);
    raw_exec(path, sql);
    rc = tk_key_get(st, k->id, &got);
    check(rc_msg(rc, TK_ERR_STORE, "label is not text", NULL), "damaged: a blob label");

    raw_exec(path, "UPDATE tokens SET user_fails = 'many'");
    rc = tk_token_get(st, "tpmkeys", &t);
    snprintf(want, sizeof(want), "token 'tpmkeys' (row %lld) in %s is damaged", (long long)tid,
             path);
    check(rc_msg(rc, TK_ERR_STORE, want, "user_fails") && !t, "damaged: a token row");
    raw_exec(path, "UPDATE tokens SET user_fails = 0, user_pub = x'0001'");
    rc = tk_token_get_by_id(st, tid, &t);
    check(rc_msg(rc, TK_ERR_STORE, want, "seal") && !t, "damaged: a half PIN seal");

    /* A key of a token that does not exist: integrity_check + foreign keys. */
    char *report = NULL;
    rc = tk_store_integrity(st, &report);
    check(rc == TK_OK && !strcmp(report, "ok"), "integrity: ok before (%s)",
          report ? report : "-");
    free(report);
    report = NULL;
    raw_exec(path, "INSERT INTO keys (token_id, label, ckaid, alg, pub, priv, parent, auth,"
                   " created, updated) SELECT 777, 'lost', ckaid, alg, pub, priv, parent,"
                   " auth, created, updated FROM keys WHERE label = 'good'");
    rc = tk_store_integrity(st, &report);
    check(rc == TK_OK && report && strstr(report, "refers to a missing row of tokens"),
          "integrity: a key of a missing token is reported (%s)", report ? report : "-");
    free(report);

    tk_key_free(k);
    tk_store_close(st);
    free(path);
}

/* ------------------------------------------------------------------ standalone objects */

/* DER SubjectPublicKeyInfo and a self-signed DER certificate of a fresh P-256 key. */
static void make_cert_spki(tk_buf *cert, tk_buf *spki)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    unsigned char *der = NULL;
    int len;

    if (!k || !x || !name ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"obj",
                                    -1, -1, 0) ||
        !X509_set_subject_name(x, name) || !X509_set_issuer_name(x, name) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), 7) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), 0) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3600) || !X509_set_pubkey(x, k) ||
        !X509_sign(x, k, EVP_sha256()))
        abort();
    if ((len = i2d_X509(x, &der)) <= 0 || tk_buf_set(cert, der, (size_t)len) != TK_OK)
        abort();
    OPENSSL_free(der);
    der = NULL;
    if ((len = i2d_PUBKEY(k, &der)) <= 0 || tk_buf_set(spki, der, (size_t)len) != TK_OK)
        abort();
    OPENSSL_free(der);
    X509_NAME_free(name);
    X509_free(x);
    EVP_PKEY_free(k);
}

static tk_obj *new_obj(int64_t token_id, tk_obj_class cls, const char *label,
                       const tk_buf *value)
{
    tk_obj *o = calloc(1, sizeof(*o));
    if (!o || !(o->label = strdup(label)) || !(o->application = strdup("")))
        abort();
    o->token_id = token_id;
    o->cls = cls;
    if (value && tk_buf_set(&o->value, value->data, value->len) != TK_OK)
        abort();
    return o;
}

static bool obj_eq(const tk_obj *a, const tk_obj *b)
{
    return a->id == b->id && a->token_id == b->token_id && a->cls == b->cls &&
           !strcmp(a->label, b->label) && buf_eq(&a->ckaid, &b->ckaid) &&
           buf_eq(&a->value, &b->value) && !strcmp(a->application, b->application) &&
           buf_eq(&a->oid, &b->oid) && a->is_private == b->is_private &&
           a->created == b->created && a->updated == b->updated;
}

static size_t count_objs(tk_store *st, int64_t token_id)
{
    tk_obj **v = NULL;
    size_t n = 0;
    if (tk_obj_list(st, token_id, &v, &n, NULL) != TK_OK)
        return (size_t)-1;
    tk_obj_list_free(v, n);
    return n;
}

static void test_objects(void)
{
    char *path = path_in("objects.db");
    tk_store *st = NULL, *other = NULL;
    tk_buf cert = { 0 }, spki = { 0 }, data = { 0 };
    tk_obj *c = NULL, *p = NULL, *d = NULL, *got = NULL, **v = NULL;
    size_t n = 99;
    tk_rc rc;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK ||
        tk_store_open(path, 0, &other) != TK_OK) {
        check(false, "objects: open");
        goto out;
    }
    int64_t tid = setup_token(st, "tpmkeys"), tid2 = setup_token(st, "second");
    make_cert_spki(&cert, &spki);
    set_bytes(&data, 300, 9);

    c = new_obj(tid, TK_OBJ_CERT, "web", &cert);
    set_bytes(&c->ckaid, 1, 1);
    p = new_obj(tid, TK_OBJ_PUBKEY, "", &spki);
    d = new_obj(tid2, TK_OBJ_DATA, "notes", &data);
    free(d->application);
    d->application = strdup("my app");
    set_bytes(&d->oid, 8, 3);
    d->is_private = true;
    tk_store_changed(other);
    check(tk_obj_add(st, c) == TK_OK && c->id > 0 && c->created > 0 && c->updated == c->created,
          "objects: add a certificate");
    check(tk_store_changed(other), "objects: another connection sees the change");
    check(tk_obj_add(st, p) == TK_OK && p->id > c->id, "objects: add a public key, empty label");
    check(tk_obj_add(st, d) == TK_OK, "objects: add a private data object with app and oid");

    rc = tk_obj_get(other, c->id, &got);
    check(rc == TK_OK && got && obj_eq(got, c), "objects: get returns the certificate as added");
    tk_obj_free(got);
    got = NULL;
    rc = tk_obj_get(other, d->id, &got);
    check(rc == TK_OK && got && obj_eq(got, d), "objects: data object read back whole");
    tk_obj_free(got);
    got = NULL;

    rc = tk_obj_list(other, tid, &v, &n, NULL);
    check(rc == TK_OK && n == 2 && obj_eq(v[0], c) && obj_eq(v[1], p),
          "objects: list of a token, ordered by id (%zu)", n);
    tk_obj_list_free(v, n);
    v = NULL;
    check(count_objs(st, 0) == 3 && count_objs(st, tid2) == 1,
          "objects: list of all tokens and of the second");

    /* Labels need not be unique (a certificate often has its key's label). */
    tk_obj *c2 = new_obj(tid, TK_OBJ_CERT, "web", &cert);
    check(tk_obj_add(st, c2) == TK_OK, "objects: a second object with the same label");
    check(tk_obj_delete(st, c2->id) == TK_OK, "objects: delete it");
    rc = tk_obj_get(st, c2->id, &got);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "no object", NULL) && !got, "objects: deleted is gone");
    rc = tk_obj_delete(st, c2->id);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "no object", NULL), "objects: delete twice: not found");
    tk_obj_free(c2);

    /* Update: label and CKA_ID only. */
    free(c->label);
    c->label = strdup("renamed");
    set_bytes(&c->ckaid, 20, 5);
    tk_buf_free(&c->value);   /* not written by an update */
    check(tk_obj_update(st, c) == TK_OK, "objects: update label and id");
    rc = tk_obj_get(other, c->id, &got);
    check(rc == TK_OK && !strcmp(got->label, "renamed") && buf_eq(&got->ckaid, &c->ckaid) &&
              buf_eq(&got->value, &cert),
          "objects: the update is seen, the value kept");
    tk_obj_free(got);
    got = NULL;
    c->id = 999999;
    rc = tk_obj_update(st, c);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "no longer", NULL), "objects: update of a missing row");

    /* Bad input: refused with a reason, nothing written. */
    static const struct {
        tk_obj_class cls;
        const char *label, *why;
        size_t vlen, idlen, oidlen;
        bool app;
    } bad[] = {
        { TK_OBJ_CERT, "x", "not a DER X.509", 10, 0, 0, false },
        { TK_OBJ_CERT, "x", "not a DER X.509", 0, 0, 0, false },
        { TK_OBJ_PUBKEY, "x", "not a DER SubjectPublicKeyInfo", 40, 0, 0, false },
        { (tk_obj_class)9, "x", "unknown class", 4, 0, 0, false },
        { TK_OBJ_DATA, "x", "CKA_ID", 4, 256, 0, false },
        { TK_OBJ_DATA, "x", "object id", 4, 0, 256, false },
        { TK_OBJ_DATA, "x", "value", 1024 * 1024 + 1, 0, 0, false },
        { TK_OBJ_CERT, "x", "only data objects", 0, 0, 0, true },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tk_obj *b = new_obj(tid, bad[i].cls, bad[i].label, NULL);
        if (bad[i].cls == TK_OBJ_CERT && bad[i].app)
            tk_buf_set(&b->value, cert.data, cert.len);
        else if (bad[i].vlen)
            set_bytes(&b->value, bad[i].vlen, 1);
        if (bad[i].idlen)
            set_bytes(&b->ckaid, bad[i].idlen, 1);
        if (bad[i].oidlen)
            set_bytes(&b->oid, bad[i].oidlen, 1);
        if (bad[i].app) {
            free(b->application);
            b->application = strdup("app");
        }
        rc = tk_obj_add(st, b);
        check(rc_msg(rc, TK_ERR_INVALID, "cannot be stored", bad[i].why) && !b->id,
              "objects: bad object %zu refused (%s)", i, bad[i].why);
        tk_obj_free(b);
    }
    tk_obj *orphan = new_obj(4242, TK_OBJ_DATA, "x", &data);
    rc = tk_obj_add(st, orphan);
    check(rc_msg(rc, TK_ERR_NOT_FOUND, "no token #4242", NULL), "objects: unknown token");
    tk_obj_free(orphan);
    check(count_objs(st, 0) == 3, "objects: nothing written by the refused adds");

    /* Read-only store: writes refused. */
    tk_store *ro = NULL;
    if (tk_store_open(path, TK_STORE_READONLY, &ro) == TK_OK) {
        tk_obj *w = new_obj(tid, TK_OBJ_DATA, "ro", &data);
        check(tk_obj_add(ro, w) == TK_ERR_READONLY && tk_obj_delete(ro, d->id) ==
                  TK_ERR_READONLY && count_objs(ro, 0) == 3,
              "objects: a read-only store lists but does not write");
        tk_obj_free(w);
        tk_store_close(ro);
    }

    /* Deleting a token takes its objects (ON DELETE CASCADE), only its own. */
    check(tk_token_delete(st, tid2) == TK_OK && count_objs(st, tid2) == 0 &&
              count_objs(st, tid) == 2,
          "objects: deleting a token deletes its objects, not others");
out:
    tk_obj_free(c);
    tk_obj_free(p);
    tk_obj_free(d);
    tk_buf_free(&cert);
    tk_buf_free(&spki);
    tk_buf_free(&data);
    tk_store_close(st);
    tk_store_close(other);
    free(path);
}

/* A damaged row is an error for that row; listing with *damaged skips it. */
static void test_objects_damaged(void)
{
    char *path = path_in("objects-damaged.db");
    char sql[256], want[400];
    tk_store *st = NULL;
    tk_buf cert = { 0 }, spki = { 0 };
    tk_obj *good = NULL, *bad = NULL, *got = NULL, **v = NULL;
    size_t n = 99, damaged = 99;
    tk_rc rc;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK) {
        check(false, "objects damaged: open");
        free(path);
        return;
    }
    int64_t tid = setup_token(st, "tpmkeys");
    make_cert_spki(&cert, &spki);
    good = new_obj(tid, TK_OBJ_PUBKEY, "good", &spki);
    bad = new_obj(tid, TK_OBJ_CERT, "bad", &cert);
    tk_obj_add(st, good);
    tk_obj_add(st, bad);
    static const struct {
        const char *set, *why;
    } cases[] = {
        { "class = 77", "unknown class" },
        { "value = x'3003020101'", "not a DER X.509" },
        { "value = 'text'", "not a blob" },
        { "private = 2", "private" },
        { "label = x'00'", "label is not text" },
        { "application = 'app'", "only data objects" },
        { "ckaid = 5", "ckaid is not a blob" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(sql, sizeof(sql), "PRAGMA ignore_check_constraints = 1; UPDATE objects SET %s "
                 "WHERE id = %lld", cases[i].set, (long long)bad->id);
        if (!raw_exec(path, sql)) {
            check(false, "objects damaged: corrupt with %s", cases[i].set);
            continue;
        }
        snprintf(want, sizeof(want), "(row %lld) in %s is damaged: ", (long long)bad->id, path);
        rc = tk_obj_get(st, bad->id, &got);
        check(rc_msg(rc, TK_ERR_STORE, want, cases[i].why) && !got,
              "objects damaged: %s -> TK_ERR_STORE on get", cases[i].set);
        rc = tk_obj_list(st, tid, &v, &n, NULL);
        check(rc == TK_ERR_STORE && !v, "objects damaged: %s -> a strict list fails",
              cases[i].set);
        rc = tk_obj_list(st, tid, &v, &n, &damaged);
        check(rc == TK_OK && n == 1 && damaged == 1 && !strcmp(v[0]->label, "good"),
              "objects damaged: %s -> the other row is still listed", cases[i].set);
        tk_obj_list_free(v, n);
        v = NULL;
        /* Put the row back. */
        check(tk_obj_delete(st, bad->id) == TK_OK, "objects damaged: a damaged row deletes");
        bad->id = 0;
        tk_obj_add(st, bad);
    }
    tk_obj_free(good);
    tk_obj_free(bad);
    tk_buf_free(&cert);
    tk_buf_free(&spki);
    tk_store_close(st);
    free(path);
}

/* The schema of release 1 (store/db.c upgrade_v1 at that time), frozen here so that a
 * store written by that release can be made without that release. */
static const char v1_schema[] =
    "CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL,"
    " created INTEGER NOT NULL);"
    "CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " label TEXT NOT NULL UNIQUE CHECK (length(label) BETWEEN 1 AND 32),"
    " user_pub BLOB NOT NULL DEFAULT x'', user_priv BLOB NOT NULL DEFAULT x'',"
    " so_pub BLOB NOT NULL DEFAULT x'', so_priv BLOB NOT NULL DEFAULT x'',"
    " user_fails INTEGER NOT NULL DEFAULT 0 CHECK (user_fails >= 0),"
    " so_fails INTEGER NOT NULL DEFAULT 0 CHECK (so_fails >= 0), created INTEGER NOT NULL);"
    "CREATE TABLE keys (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,"
    " label TEXT NOT NULL CHECK (length(label) >= 1), ckaid BLOB NOT NULL,"
    " alg INTEGER NOT NULL, pub BLOB NOT NULL, priv BLOB NOT NULL, parent INTEGER NOT NULL,"
    " auth INTEGER NOT NULL, authsalt BLOB NOT NULL DEFAULT x'',"
    " policy BLOB NOT NULL DEFAULT x'', cert BLOB NOT NULL DEFAULT x'',"
    " origin INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " UNIQUE (token_id, label));"
    "CREATE INDEX keys_by_ckaid ON keys (token_id, ckaid);"
    "INSERT INTO meta VALUES (1, '0123456789abcdef', 1700000000);"
    "INSERT INTO tokens (label, created) VALUES ('old', 1700000000);"
    "PRAGMA application_id = 1414548307; PRAGMA user_version = 1;";

static void test_upgrade_v1(void)
{
    char *path = path_in("v1.db");
    tk_store *st = NULL;
    tk_token *t = NULL;
    tk_key *k = NULL, *got = NULL;
    tk_buf cert = { 0 }, spki = { 0 };
    tk_obj *o = NULL;
    tk_rc rc;

    if (!raw_exec(path, v1_schema)) {
        check(false, "upgrade v1: write a v1 store");
        free(path);
        return;
    }
    /* One key written the way release 1 wrote them (all the columns it knew). */
    k = new_key(1, "v1-key", TK_ALG_ECC_P256, 8);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    bool ok = sqlite3_open(path, &db) == SQLITE_OK &&
              sqlite3_prepare_v2(db, "INSERT INTO keys (token_id, label, ckaid, alg, pub, priv,"
                                 " parent, auth, authsalt, created, updated) VALUES (1, ?1, ?2,"
                                 " ?3, ?4, ?5, ?6, ?7, ?8, 1700000000, 1700000000)", -1, &s,
                                 NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_text(s, 1, k->label, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, k->ckaid.data, (int)k->ckaid.len, SQLITE_STATIC);
        sqlite3_bind_int(s, 3, (int)k->alg);
        sqlite3_bind_blob(s, 4, k->pub.data, (int)k->pub.len, SQLITE_STATIC);
        sqlite3_bind_blob(s, 5, k->priv.data, (int)k->priv.len, SQLITE_STATIC);
        sqlite3_bind_int64(s, 6, k->parent);
        sqlite3_bind_int(s, 7, (int)k->auth);
        sqlite3_bind_blob(s, 8, k->authsalt.data, (int)k->authsalt.len, SQLITE_STATIC);
        ok = sqlite3_step(s) == SQLITE_DONE;
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    check(ok && raw_int(path, "PRAGMA user_version") == 1, "upgrade v1: v1 store with a key");
    rc = tk_store_open(path, TK_STORE_READONLY, &st);
    check(rc_msg(rc, TK_ERR_READONLY, "upgrade", NULL) && !st,
          "upgrade v1: a read-only open of a v1 store asks for an upgrade");

    rc = tk_store_open(path, 0, &st);
    check(rc == TK_OK && tk_store_schema_version(st) == 2, "upgrade v1: opens and upgrades to 2");
    if (rc != TK_OK)
        goto out;
    check(raw_int(path, "PRAGMA user_version") == 2 &&
              raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'objects'") == 1,
          "upgrade v1: the file is at version 2 with the objects table");
    check(!strcmp(tk_store_id(st), "0123456789abcdef"), "upgrade v1: the store id is kept");
    rc = tk_token_get(st, "old", &t);
    check(rc == TK_OK && t->id == 1, "upgrade v1: the token is kept");
    rc = tk_key_find_label(st, 1, "v1-key", &got);
    check(rc == TK_OK && buf_eq(&got->pub, &k->pub) && buf_eq(&got->priv, &k->priv) &&
              buf_eq(&got->ckaid, &k->ckaid),
          "upgrade v1: the key is kept, blobs intact");
    make_cert_spki(&cert, &spki);
    o = new_obj(1, TK_OBJ_CERT, "after", &cert);
    check(tk_obj_add(st, o) == TK_OK && count_objs(st, 1) == 1,
          "upgrade v1: objects can be added after the upgrade");
    tk_store_close(st);
    st = NULL;
    rc = tk_store_open(path, 0, &st);
    check(rc == TK_OK && tk_store_schema_version(st) == 2 && count_objs(st, 1) == 1,
          "upgrade v1: a second open finds version 2 and the object");
out:
    tk_store_close(st);
    tk_token_free(t);
    tk_key_free(k);
    tk_key_free(got);
    tk_obj_free(o);
    tk_buf_free(&cert);
    tk_buf_free(&spki);
    free(path);
}

/* ------------------------------------------------------------------ processes and threads */

static int child_add(const char *path, int which, int count, int gate)
{
    tk_store *st = NULL;
    tk_token *t = NULL;
    char label[32], c;
    int bad = 0;

    if (read(gate, &c, 1) < 0) /* wait until the parent opens the gate (EOF) */
        return 1;
    if (tk_store_open(path, 0, &st) != TK_OK || tk_token_get(st, "tpmkeys", &t) != TK_OK) {
        fprintf(stderr, "child %d: %s\n", which, tk_errmsg());
        tk_store_close(st);
        return 1;
    }
    for (int i = 0; i < count; i++) {
        tk_key *k;
        snprintf(label, sizeof(label), "p%d-%03d", which, i);
        k = new_key(t->id, label, i % 2 ? TK_ALG_ECC_P256 : TK_ALG_RSA2048, (uint8_t)i);
        if (tk_key_add(st, k) != TK_OK) {
            fprintf(stderr, "child %d key %d: %s: %s\n", which, i,
                    tk_rc_name(tk_key_add(st, k)), tk_errmsg());
            bad++;
        }
        tk_key_free(k);
        if (i % 50 == 0)
            tk_store_changed(st);
    }
    tk_token_free(t);
    tk_store_close(st);
    return bad ? 1 : 0;
}

static void test_processes(void)
{
    char *path = path_in("multi.db");
    tk_store *st = NULL;
    int gate[2];
    pid_t pids[2];
    int ok = 0;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK || !setup_token(st, "tpmkeys") ||
        pipe(gate) != 0) {
        check(false, "processes: setup");
        goto out;
    }
    fflush(stdout);
    for (int i = 0; i < 2; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            close(gate[1]);
            _exit(child_add(path, i, 300, gate[0]));
        }
    }
    close(gate[0]);
    close(gate[1]); /* both start now */
    for (int i = 0; i < 2; i++) {
        int status = 0;
        if (pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0)
            ok++;
    }
    check(ok == 2, "processes: two processes each add 300 keys at once without an error");
    check(tk_store_changed(st), "processes: the parent sees the change");
    size_t n = count_keys(st, 0);
    check(n == 600, "processes: 600 keys in the store (%zu)", n);
    char *report = NULL;
    tk_rc rc = tk_store_integrity(st, &report);
    check(rc == TK_OK && !strcmp(report, "ok"), "processes: integrity ok (%s)",
          report ? report : "-");
    free(report);

    /* A handle inherited across fork() works in the child (it reconnects). */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        tk_token *t = NULL;
        tk_key *k = NULL;
        int rc = 1;
        if (tk_token_get(st, "tpmkeys", &t) == TK_OK) {
            k = new_key(t->id, "from-child", TK_ALG_ECC_P384, 9);
            rc = tk_key_add(st, k) == TK_OK ? 0 : 2;
        }
        tk_key_free(k);
        tk_token_free(t);
        tk_store_close(st);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tk_key *k = NULL;
    check(WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
              tk_key_find_label(st, 0, "from-child", &k) == TK_OK,
          "processes: a store handle inherited by a forked child still writes");
    tk_key_free(k);
out:
    tk_store_close(st);
    free(path);
}

/* Several processes create the same new store at once: one store id, no error. */
static void test_concurrent_create(void)
{
    char *path = path_in("race/store.db");
    char ids[4][17];
    int gate[2], out[2], ok = 0;
    pid_t pids[4];

    if (pipe(gate) != 0 || pipe(out) != 0) {
        check(false, "concurrent create: pipes");
        free(path);
        return;
    }
    fflush(stdout);
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            tk_store *st = NULL;
            char c, id[17] = "????????????????";
            close(gate[1]);
            close(out[0]);
            if (read(gate[0], &c, 1) < 0)
                _exit(1);
            int rc = tk_store_open(path, TK_STORE_CREATE, &st);
            if (rc == TK_OK)
                memcpy(id, tk_store_id(st), 17);
            else
                fprintf(stderr, "create race: %s\n", tk_errmsg());
            if (write(out[1], id, 17) != 17)
                rc = 1;
            tk_store_close(st);
            _exit(rc == TK_OK ? 0 : 1);
        }
    }
    close(gate[0]);
    close(out[1]);
    close(gate[1]);
    for (int i = 0; i < 4; i++) {
        int status = 0;
        if (read(out[0], ids[i], 17) != 17)
            ids[i][0] = '\0';
        if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0)
            ok++;
    }
    close(out[0]);
    check(ok == 4, "concurrent create: four processes create the same store at once");
    check(ids[0][0] && !strcmp(ids[0], ids[1]) && !strcmp(ids[0], ids[2]) &&
              !strcmp(ids[0], ids[3]),
          "concurrent create: all see one store id (%s)", ids[0]);
    free(path);
}

struct thread_arg {
    tk_store *st;
    int64_t token;
    int which;
    int errors;
};

static void *thread_add(void *p)
{
    struct thread_arg *a = p;
    char label[32];
    for (int i = 0; i < 50; i++) {
        tk_key *k;
        snprintf(label, sizeof(label), "t%d-%d", a->which, i);
        k = new_key(a->token, label, TK_ALG_ECC_P256, (uint8_t)i);
        if (tk_key_add(a->st, k) != TK_OK)
            a->errors++;
        tk_key_free(k);
    }
    return NULL;
}

static void test_threads(void)
{
    char *path = path_in("threads.db");
    tk_store *st = NULL;
    struct thread_arg args[4];
    pthread_t th[4];
    int errors = 0;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK) {
        check(false, "threads: open");
        free(path);
        return;
    }
    int64_t tid = setup_token(st, "tpmkeys");
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){ st, tid, i, 0 };
        pthread_create(&th[i], NULL, thread_add, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        errors += args[i].errors;
    }
    check(errors == 0 && count_keys(st, tid) == 200,
          "threads: four threads share one handle, 200 keys, no error");
    tk_store_close(st);
    free(path);
}

static void test_busy(void)
{
    char *path = path_in("busy.db");
    tk_store *st = NULL;
    sqlite3 *db = NULL;
    tk_key *k = NULL;
    int64_t tid;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK || !(tid = setup_token(st, "t")) ||
        sqlite3_open(path, &db) != SQLITE_OK) {
        check(false, "busy: setup");
        goto out;
    }
    /* Another process holds the write lock for 1 s: we wait, no "database is locked". */
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        sqlite3 *c = NULL;
        int rc = sqlite3_open(path, &c) == SQLITE_OK &&
                 sqlite3_exec(c, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
        usleep(1000 * 1000);
        sqlite3_exec(c, "COMMIT", NULL, NULL, NULL);
        sqlite3_close(c);
        _exit(rc ? 0 : 1);
    }
    usleep(200 * 1000);
    k = new_key(tid, "waits", TK_ALG_ECC_P256, 1);
    tk_rc rc = tk_key_add(st, k);
    int status = 0;
    waitpid(pid, &status, 0);
    check(rc == TK_OK && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "busy: a write waits for another writer's lock (1 s)");
    tk_key_free(k);

    /* Locked for longer than the timeout: TK_ERR_BUSY after about 10 s. */
    sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    k = new_key(tid, "gives-up", TK_ALG_ECC_P256, 2);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = tk_key_add(st, k);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    check(rc_msg(rc, TK_ERR_BUSY, path, "locked") && secs >= 9.5 && secs < 25,
          "busy: a lock held beyond the timeout is TK_ERR_BUSY after %.1f s", secs);
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    check(count_keys(st, tid) == 1, "busy: reads still work, the failed add left nothing");
out:
    tk_key_free(k);
    sqlite3_close(db);
    tk_store_close(st);
    free(path);
}

static void test_readonly_flag(void)
{
    char *path = path_in("ro.db");
    tk_store *rw = NULL, *ro = NULL;
    tk_key *k = NULL, *got = NULL;
    tk_token *t = NULL;
    int now = 0;
    int64_t tid;

    if (tk_store_open(path, TK_STORE_CREATE, &rw) != TK_OK || !(tid = setup_token(rw, "tk"))) {
        check(false, "read-only: setup");
        goto out;
    }
    k = new_key(tid, "served", TK_ALG_RSA2048, 3);
    tk_key_add(rw, k);
    tk_store_close(rw);
    rw = NULL;

    check(tk_store_open(path, TK_STORE_READONLY, &ro) == TK_OK && tk_store_is_readonly(ro),
          "read-only: TK_STORE_READONLY opens read-only");
    if (!ro)
        goto out;
    check(tk_key_find_label(ro, tid, "served", &got) == TK_OK && key_eq(got, k),
          "read-only: keys are served");
    check(!strcmp(tk_store_id(ro), "") == false && strlen(tk_store_id(ro)) == 16,
          "read-only: store id available");
    tk_key_free(got);
    got = NULL;
    tk_key *k2 = new_key(tid, "new", TK_ALG_ECC_P256, 4);
    check(rc_msg(tk_key_add(ro, k2), TK_ERR_READONLY, path, "read-only") && k2->id == 0,
          "read-only: adding a key is TK_ERR_READONLY naming the path");
    tk_key_free(k2);
    check(rc_msg(tk_key_update(ro, k), TK_ERR_READONLY, path, NULL),
          "read-only: updating a key is refused");
    check(rc_msg(tk_key_delete(ro, k->id), TK_ERR_READONLY, path, NULL),
          "read-only: deleting a key is refused");
    t = new_token("second", false);
    check(rc_msg(tk_token_put(ro, t), TK_ERR_READONLY, path, NULL),
          "read-only: adding a token is refused");
    check(rc_msg(tk_token_count_fail(ro, tid, 0, false, &now), TK_ERR_READONLY, path, NULL),
          "read-only: counting a wrong PIN is refused");
    check(rc_msg(tk_token_delete(ro, tid), TK_ERR_READONLY, path, NULL),
          "read-only: deleting a token is refused");
    check(count_keys(ro, 0) == 1, "read-only: nothing changed");
out:
    tk_token_free(t);
    tk_key_free(k);
    tk_store_close(ro);
    tk_store_close(rw);
    free(path);
}

/* A store this user may not write (e.g. a system store readable by all). */
static void test_not_writable(void)
{
    char *dir = path_in("shared"), *path = path_in("shared/store.db");
    tk_store *st = NULL;
    int64_t tid = 0;

    if (geteuid() != 0) {
        printf("skip - not-writable store: needs root to switch to another user\n");
        goto out;
    }
    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK || !(tid = setup_token(st, "tk"))) {
        check(false, "not writable: setup");
        goto out;
    }
    tk_key *k = new_key(tid, "shared-key", TK_ALG_ECC_P256, 7);
    tk_key_add(st, k);
    tk_key_free(k);
    tk_store_close(st);
    st = NULL;
    chmod(tmpdir, 0755);
    chmod(dir, 0755);
    chmod(path, 0644);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        failures = 0;
        if (setgid(65534) != 0 || setuid(65534) != 0) {
            printf("skip - not-writable store: cannot become nobody (%s)\n", strerror(errno));
            _exit(100);
        }
        tk_rc rc = tk_store_open(path, 0, &st);
        check(rc == TK_OK && tk_store_is_readonly(st),
              "not writable: another user's store opens read-only by itself");
        if (rc == TK_OK) {
            check(count_keys(st, tid) == 1, "not writable: its keys are served");
            k = new_key(tid, "mine", TK_ALG_ECC_P256, 8);
            check(rc_msg(tk_key_add(st, k), TK_ERR_READONLY, path, "may not write"),
                  "not writable: writes are TK_ERR_READONLY naming the path");
            tk_key_free(k);
        }
        tk_store_close(st);
        fflush(stdout);
        _exit(failures > 99 ? 99 : failures);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    if (code != 100)
        failures += code;
    chmod(tmpdir, 0700);
out:
    tk_store_close(st);
    free(dir);
    free(path);
}

/* Remount dir read-only in a private mount namespace. Returns 0, or errno. */
static int private_ro_mount(const char *dir)
{
    if (unshare(CLONE_NEWNS) != 0)
        return errno;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(dir, dir, NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0)
        return errno;
    return 0;
}

/* In the child: the store on a read-only file system. Returns the failures. */
static int ro_mount_child(const char *dir, const char *path, int64_t tid, size_t want_keys,
                          const char *wal_label)
{
    tk_store *st = NULL;
    tk_key *k = NULL;
    int err = private_ro_mount(dir);
    int fd;

    if (err) {
        printf("skip - read-only bind mount: cannot make a private mount namespace (%s); "
               "the automatic read-only open is not exercised\n", strerror(err));
        return -1;
    }
    fd = open(path, O_RDWR);
    check(fd < 0 && errno == EROFS, "ro mount: the file system is read-only (sanity)");
    if (fd >= 0)
        close(fd);
    tk_rc rc = tk_store_open(path, 0, &st);
    check(rc == TK_OK && tk_store_is_readonly(st),
          "ro mount: a store on a read-only file system opens read-only by itself");
    if (rc == TK_OK) {
        size_t n = count_keys(st, tid);
        check(n == want_keys, "ro mount: all %zu keys are served (%zu)", want_keys, n);
        if (wal_label) {
            check(tk_key_find_label(st, tid, wal_label, &k) == TK_OK,
                  "ro mount: a key still only in the WAL is seen");
            tk_key_free(k);
            k = NULL;
        }
        k = new_key(tid, "refused", TK_ALG_ECC_P256, 1);
        check(rc_msg(tk_key_add(st, k), TK_ERR_READONLY, path, "read-only file system"),
              "ro mount: writes fail with TK_ERR_READONLY naming the path");
        tk_key_free(k);
        char *report = NULL;
        check(tk_store_integrity(st, &report) == TK_OK && !strcmp(report, "ok"),
              "ro mount: integrity check works read-only");
        free(report);
    }
    tk_store_close(st);
    /* Creating a store there is refused clearly. */
    char *newpath = malloc(strlen(dir) + 16);
    sprintf(newpath, "%s/new.db", dir);
    rc = tk_store_open(newpath, TK_STORE_CREATE, &st);
    check(rc_msg(rc, TK_ERR_READONLY, newpath, NULL),
          "ro mount: creating a store there is TK_ERR_READONLY");
    free(newpath);
    return failures;
}

static void test_readonly_mount(void)
{
    char *dir = path_in("romount"), *path = path_in("romount/store.db");
    tk_store *st = NULL;
    int64_t tid = 0;

    if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK || !(tid = setup_token(st, "tk"))) {
        check(false, "ro mount: setup");
        goto out;
    }
    for (int i = 0; i < 5; i++) {
        char label[16];
        snprintf(label, sizeof(label), "k%d", i);
        tk_key *k = new_key(tid, label, TK_ALG_RSA2048, (uint8_t)i);
        tk_key_add(st, k);
        tk_key_free(k);
    }
    /* Two states: a writer still has it open (WAL and -shm present, the last key only
     * in the WAL), and closed cleanly (only the database file). */
    tk_key *last = new_key(tid, "wal-only", TK_ALG_ECC_P256, 42);
    check(tk_key_add(st, last) == TK_OK, "ro mount: a sixth key while the writer stays open");
    tk_key_free(last);
    for (int pass = 0; pass < 2; pass++) {
        printf("     (read-only file system, %s)\n",
               pass == 0 ? "writer still open" : "store closed cleanly");
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            failures = 0;
            int r = ro_mount_child(dir, path, tid, 6, "wal-only");
            fflush(stdout);
            _exit(r < 0 ? 100 : r > 99 ? 99 : r);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
        if (code == 100)
            break; /* skipped */
        failures += code;
        if (pass == 0) {
            char *wal = path_in("romount/store.db-wal");
            tk_store_close(st);
            st = NULL;
            check(access(wal, F_OK) != 0, "ro mount: a clean close leaves no WAL file");
            free(wal);
        }
    }
out:
    tk_store_close(st);
    free(dir);
    free(path);
}

/* A full file system: SQLITE_FULL -> TK_ERR_IO, and the store stays usable. */
static void test_disk_full(void)
{
    char *dir = path_in("full");
    mkdir(dir, 0700);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        char *path = malloc(strlen(dir) + 16);
        tk_store *st = NULL;
        tk_rc rc = TK_OK;
        int i;

        failures = 0;
        sprintf(path, "%s/store.db", dir);
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) ||
            mount("tpmkeys-test", dir, "tmpfs", 0, "size=512k,mode=0700") != 0) {
            printf("skip - disk full: cannot mount a small tmpfs (%s)\n", strerror(errno));
            _exit(100);
        }
        /* Leave 48 KiB: enough to create the file, not to commit the schema. */
        char *filler = malloc(strlen(dir) + 16);
        sprintf(filler, "%s/filler", dir);
        int fd = open(filler, O_CREAT | O_WRONLY, 0600);
        char block[4096];
        memset(block, 0xee, sizeof(block));
        for (i = 0; i < (512 - 48) / 4; i++)
            if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block))
                break;
        close(fd);
        rc = tk_store_open(path, TK_STORE_CREATE, &st);
        check(rc_msg(rc, TK_ERR_IO, "upgrading the store", "disk space") && !st,
              "disk full: an upgrade that cannot be written is TK_ERR_IO");
        check(raw_int(path, "PRAGMA user_version") == 0 &&
                  raw_int(path, "SELECT count(*) FROM sqlite_master") == 0,
              "disk full: the failed upgrade left nothing (version 0, no tables)");
        unlink(filler);
        free(filler);
        rc = tk_store_open(path, TK_STORE_CREATE, &st);
        check(rc == TK_OK && tk_store_schema_version(st) == 2,
              "disk full: with space again the next open upgrades");
        tk_store_close(st);
        st = NULL;

        int64_t tid = 0;
        if (tk_store_open(path, TK_STORE_CREATE, &st) != TK_OK ||
            !(tid = setup_token(st, "tk"))) {
            check(false, "disk full: setup");
            _exit(1);
        }
        for (i = 0; i < 100 && rc == TK_OK; i++) {
            char label[16];
            snprintf(label, sizeof(label), "big%d", i);
            tk_key *k = new_key(tid, label, TK_ALG_RSA2048, (uint8_t)i);
            set_bytes(&k->cert, 100 * 1024, (uint8_t)i);
            rc = tk_key_add(st, k);
            tk_key_free(k);
        }
        check(rc_msg(rc, TK_ERR_IO, path, "disk space"),
              "disk full: SQLITE_FULL is TK_ERR_IO with advice (after %d keys)", i - 1);
        size_t n = count_keys(st, tid);
        check(n == (size_t)(i - 1), "disk full: the failed add left nothing behind (%zu keys)",
              n);
        char *report = NULL;
        rc = tk_store_integrity(st, &report);
        check(rc == TK_OK && !strcmp(report, "ok"), "disk full: the store is intact (%s)",
              report ? report : "-");
        free(report);
        tk_store_close(st);
        free(path);
        fflush(stdout);
        _exit(failures > 99 ? 99 : failures);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 99;
    if (code != 100)
        failures += code;
    free(dir);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/tpmkeys-test-db.XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_default_path();
    test_create();
    test_crud();
    test_changed();
    test_migration();
    test_damaged();
    test_objects();
    test_objects_damaged();
    test_upgrade_v1();
    test_threads();
    test_processes();
    test_concurrent_create();
    test_readonly_flag();
    test_not_writable();
    test_readonly_mount();
    test_disk_full();
    test_busy();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
