/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer harness: rows of the store file as another program, a bad disk or an attacker
 * with write access to the file may have left them.  Each input starts from a seeded store
 * (fuzz_seed_store), changes it through raw sqlite (CHECK constraints off, as a hand edit
 * or a corrupt page would) and then reads it through the store API the doors use.
 *
 * Input: up to 8 edits, each one byte for the kind and the row/column, then a value:
 *   kind % 5: 0 keys column, 1 tokens column, 2 meta column (bit 3 set: objects column),
 *   3 copy a key row and set one of its columns, 4 PRAGMA user_version / application_id
 *   value: NULL, 64-bit integer, small integer, real, text, blob, or one of the seeded
 *   TPM blobs with a byte changed and/or cut short.
 * Invariants: failures say why; keys listed as intact hold a public area of their
 * algorithm; intact certificate and public-key objects parse; with no damaged row, the
 * strict listings agree with the forgiving ones.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "fuzz.h"

static char path[4200];
static tk_buf image, blobs[3];

static const char *const key_cols[] = {
    "token_id", "label", "ckaid", "alg", "pub", "priv", "parent", "auth", "authsalt",
    "policy", "cert", "origin", "created", "updated", "id",
};
static const char *const token_cols[] = {
    "label", "user_pub", "user_priv", "so_pub", "so_priv", "user_fails", "so_fails",
    "created", "id",
};
static const char *const meta_cols[] = { "store_id", "created", "id" };
static const char *const obj_cols[] = {
    "token_id", "class", "label", "ckaid", "value", "application", "oid", "private",
    "created", "updated", "id",
};
#define N(a) (sizeof(a) / sizeof((a)[0]))

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    snprintf(path, sizeof(path), "%s/store.db", fuzz_tmpdir());
    fuzz_env(path);
    fuzz_seed_store(path, &image);
    fuzz_ec_public(&blobs[0]);
    fuzz_rsa_public(&blobs[1]);
    fuzz_private(&blobs[2]);
    return 0;
}

/* Bind parameter 1 of s to a value read from the input. */
static void bind_value(sqlite3_stmt *s, fuzz_in *in)
{
    uint8_t kind = fuzz_u8(in);
    const uint8_t *p;
    size_t n;

    switch (kind % 7) {
    case 0:
        sqlite3_bind_null(s, 1);
        break;
    case 1:
        sqlite3_bind_int64(s, 1, (sqlite3_int64)fuzz_u64(in));
        break;
    case 2:
        sqlite3_bind_int64(s, 1, (int8_t)fuzz_u8(in));
        break;
    case 3: {
        uint64_t bits = fuzz_u64(in);
        double d;
        memcpy(&d, &bits, sizeof(d));
        sqlite3_bind_double(s, 1, d);
        break;
    }
    case 4:
        p = fuzz_bytes(in, fuzz_u8(in), &n);
        sqlite3_bind_text(s, 1, (const char *)p, (int)n, SQLITE_TRANSIENT);
        break;
    case 5:
        p = fuzz_bytes(in, fuzz_u16(in) % 2048, &n);
        sqlite3_bind_blob(s, 1, p, (int)n, SQLITE_TRANSIENT);
        break;
    default: {
        const tk_buf *b = &blobs[fuzz_u8(in) % N(blobs)];
        uint8_t copy[1024];
        size_t pos = fuzz_u16(in), cut = fuzz_u16(in), len = b->len;
        memcpy(copy, b->data, len);
        if (pos < len)
            copy[pos] = fuzz_u8(in);
        if (cut < len)
            len = cut;
        sqlite3_bind_blob(s, 1, copy, (int)len, SQLITE_TRANSIENT);
        break;
    }
    }
}

static void exec_edit(sqlite3 *db, const char *sql, fuzz_in *in, bool value)
{
    sqlite3_stmt *s = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
        fprintf(stderr, "fuzz: %s: %s\n", sql, sqlite3_errmsg(db));
        abort(); /* the harness's own SQL */
    }
    if (value)
        bind_value(s, in);
    (void)sqlite3_step(s); /* a UNIQUE or NOT NULL refusal is fine: the edit is dropped */
    sqlite3_finalize(s);
}

static void edit(sqlite3 *db, fuzz_in *in)
{
    uint8_t op = fuzz_u8(in), sel = fuzz_u8(in);
    char sql[1024];

    switch (op % 5) {
    case 0:
        snprintf(sql, sizeof(sql), "UPDATE keys SET %s = ?1 WHERE id = %d",
                 key_cols[sel % N(key_cols)], 1 + (op >> 3) % 3);
        exec_edit(db, sql, in, true);
        break;
    case 1:
        snprintf(sql, sizeof(sql), "UPDATE tokens SET %s = ?1 WHERE id = %d",
                 token_cols[sel % N(token_cols)], 1 + (op >> 3) % 2);
        exec_edit(db, sql, in, true);
        break;
    case 2:
        if ((op >> 3) & 1)
            snprintf(sql, sizeof(sql), "UPDATE objects SET %s = ?1 WHERE id = %d",
                     obj_cols[sel % N(obj_cols)], 1 + (op >> 4) % 3);
        else
            snprintf(sql, sizeof(sql), "UPDATE meta SET %s = ?1", meta_cols[sel % N(meta_cols)]);
        exec_edit(db, sql, in, true);
        break;
    case 3:
        snprintf(sql, sizeof(sql), "INSERT INTO keys (token_id, label, ckaid, alg, pub, priv, "
                 "parent, auth, authsalt, policy, cert, origin, created, updated) SELECT "
                 "token_id, label || '~', ckaid, alg, pub, priv, parent, auth, authsalt, "
                 "policy, cert, origin, created, updated FROM keys WHERE id = %d",
                 1 + (op >> 3) % 3);
        exec_edit(db, sql, in, false);
        snprintf(sql, sizeof(sql), "UPDATE keys SET %s = ?1 WHERE id = %lld",
                 key_cols[sel % N(key_cols)], (long long)sqlite3_last_insert_rowid(db));
        exec_edit(db, sql, in, true);
        break;
    default:
        snprintf(sql, sizeof(sql), "PRAGMA %s = %d",
                 (op >> 3) & 1 ? "application_id" : "user_version",
                 (sel & 0x80) ? (int)fuzz_u32(in) : (int)(sel & 3));
        exec_edit(db, sql, in, false);
        break;
    }
}

static void apply_edits(fuzz_in *in)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        abort();
    sqlite3_exec(db, "PRAGMA ignore_check_constraints = ON", NULL, NULL, NULL);
    for (int i = 0; i < 8 && in->left; i++)
        edit(db, in);
    sqlite3_close(db);
}

static void check_keys(tk_store *st)
{
    tk_key **v = NULL, **all = NULL;
    size_t n = 0, nall = 0, damaged = 0;
    tk_rc rc = tk_key_list_intact(st, 0, &v, &n, &damaged);

    if (rc != TK_OK) {
        FUZZ_CHECK(*tk_errmsg(), "tk_key_list_intact: %s without a message", tk_rc_name(rc));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        TPM2B_PUBLIC pub;
        EVP_PKEY *pkey = NULL;
        FUZZ_CHECK(tk_public_unmarshal(&v[i]->pub, &pub) == TK_OK,
                   "intact key %lld has a bad public blob", (long long)v[i]->id);
        FUZZ_CHECK(tk_alg_from_public(&pub) == v[i]->alg, "intact key %lld: %s row, %s blob",
                   (long long)v[i]->id, tk_alg_name(v[i]->alg),
                   tk_alg_name(tk_alg_from_public(&pub)));
        /* What every door does next with a listed key. */
        if (tk_ks_public(v[i], &pkey) == TK_OK)
            EVP_PKEY_free(pkey);
        else
            FUZZ_CHECK(*tk_errmsg(), "tk_ks_public failed without a message");
    }
    rc = tk_key_list(st, 0, &all, &nall);
    if (damaged == 0)
        FUZZ_CHECK(rc == TK_OK && nall == n, "no damaged row, yet tk_key_list says %s with "
                   "%zu of %zu keys", tk_rc_name(rc), nall, n);
    else
        FUZZ_CHECK(rc != TK_OK && *tk_errmsg(), "%zu damaged rows went unnoticed", damaged);
    if (rc == TK_OK)
        tk_key_list_free(all, nall);
    tk_key_list_free(v, n);
}

/* Standalone objects: what the PKCS#11 module shows must be what the checks promise. */
static void check_objects(tk_store *st)
{
    tk_obj **v = NULL, **all = NULL, *o = NULL;
    size_t n = 0, nall = 0, damaged = 0;
    tk_rc rc = tk_obj_list(st, 0, &v, &n, &damaged);

    if (rc != TK_OK) {
        FUZZ_CHECK(*tk_errmsg(), "tk_obj_list: %s without a message", tk_rc_name(rc));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = v[i]->value.data;
        long len = (long)v[i]->value.len;
        if (v[i]->cls == TK_OBJ_CERT) {
            X509 *x = d2i_X509(NULL, &p, len);
            FUZZ_CHECK(x && p == v[i]->value.data + len, "intact certificate object %lld "
                       "does not parse", (long long)v[i]->id);
            X509_free(x);
        } else if (v[i]->cls == TK_OBJ_PUBKEY) {
            EVP_PKEY *k = d2i_PUBKEY(NULL, &p, len);
            FUZZ_CHECK(k && p == v[i]->value.data + len, "intact public-key object %lld "
                       "does not parse", (long long)v[i]->id);
            EVP_PKEY_free(k);
        } else {
            FUZZ_CHECK(v[i]->cls == TK_OBJ_DATA, "intact object of class %d", (int)v[i]->cls);
        }
    }
    rc = tk_obj_list(st, 0, &all, &nall, NULL);
    if (damaged == 0)
        FUZZ_CHECK(rc == TK_OK && nall == n, "no damaged object, yet the strict listing says "
                   "%s with %zu of %zu", tk_rc_name(rc), nall, n);
    else
        FUZZ_CHECK(rc != TK_OK && *tk_errmsg(), "%zu damaged objects went unnoticed", damaged);
    if (rc == TK_OK)
        tk_obj_list_free(all, nall);
    tk_obj_list_free(v, n);
    for (int64_t id = 1; id <= 4; id++)
        if (tk_obj_get(st, id, &o) == TK_OK)
            tk_obj_free(o);
    ERR_clear_error();
}

static void lookups(tk_store *st)
{
    static const uint8_t web_id[] = "web";
    tk_token **toks = NULL, *tok = NULL;
    tk_key *k = NULL;
    char *report = NULL;
    size_t n = 0;

    if (tk_token_list(st, &toks, &n) == TK_OK) {
        for (size_t i = 0; i < n; i++) {
            FUZZ_CHECK(toks[i]->label && *toks[i]->label && strlen(toks[i]->label) <= 32,
                       "token %lld with a bad label passed", (long long)toks[i]->id);
            tk_token_free(toks[i]);
        }
        free(toks);
    }
    if (tk_token_get(st, "ops", &tok) == TK_OK)
        tk_token_free(tok);
    if (tk_token_get_by_id(st, 1, &tok) == TK_OK)
        tk_token_free(tok);
    if (tk_key_find_label(st, 0, "web", &k) == TK_OK)
        tk_key_free(k);
    if (tk_key_find_id(st, 0, web_id, 3, &k) == TK_OK)
        tk_key_free(k);
    for (int64_t id = 1; id <= 4; id++)
        if (tk_key_get(st, id, &k) == TK_OK)
            tk_key_free(k);
    if (tk_store_integrity(st, &report) == TK_OK)
        free(report);
    (void)tk_key_delete_label(st, 0, "mail");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = { data, size };
    tk_store *st = NULL;
    tk_rc rc;

    fuzz_restore_store(path, &image);
    apply_edits(&in);
    tk_clear_error();
    rc = tk_store_open(path, 0, &st);
    if (rc != TK_OK) {
        FUZZ_CHECK(*tk_errmsg(), "tk_store_open: %s without a message", tk_rc_name(rc));
        return 0;
    }
    (void)tk_store_id(st);
    check_keys(st);
    check_objects(st);
    lookups(st);
    tk_store_close(st);
    ERR_clear_error();
    return 0;
}
