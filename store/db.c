/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The store: one sqlite file shared by every process of the user (or of a
 * service).  WAL journal, a busy timeout plus a bounded retry, one explicit
 * transaction per change, versioned schema with atomic upgrades at open.
 * Rows are checked when read so that a damaged row is reported, never served.
 *
 * A tk_store is safe to use from several threads (one mutex serialises the
 * connection) and survives fork(): the child reopens the connection on first use.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <sqlite3.h>
#include <tss2/tss2_mu.h>

#include "tpmkeys.h"

#define BUSY_TIMEOUT_MS 10000
#define STORE_APP_ID 0x54504b53 /* "TPKS" in the sqlite header: this file is a tpmkeys store */
#define TOKEN_LABEL_MAX 32
#define KEY_LABEL_MAX 255
#define CKAID_MAX 255
#define AUTHSALT_MIN 16
#define AUTHSALT_MAX 64
#define POLICY_MAX (64 * 1024)
#define CERT_MAX (1024 * 1024)
#define WHY_MAX 192
/* The persistent handle range (TPM2_HR_PERSISTENT is a signed shift in tss2's header). */
#define PERSISTENT_HANDLES 0x81000000u

struct tk_store {
    pthread_mutex_t lock;
    sqlite3 *db;
    char *path;
    unsigned flags;
    bool readonly;
    bool ro_auto;             /* read-only because the file cannot be written */
    char ro_why[WHY_MAX];     /* for TK_ERR_READONLY messages */
    pid_t pid;                /* process that opened db (fork detection) */
    int version;
    char id[17];
    bool have_dv;
    int64_t data_version;
    int last_src;             /* sqlite code of the last failure (open falls back on it) */
    int last_errno;           /* and the system errno sqlite saw then */
    sqlite3_stmt *key_get;    /* tk_key_get's statement, kept for the connection: the
                                 PKCS#11 module reads a key on every C_SignInit */
    sqlite3_stmt *dv;         /* PRAGMA data_version, kept likewise: checked before every
                                 PKCS#11 operation */
};

/* ------------------------------------------------------------------ small helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep a little before the next try; false when the deadline has passed. */
static bool busy_backoff(int64_t deadline, int *attempt)
{
    int64_t left = deadline - now_ms();
    int64_t ms = (int64_t)1 << (*attempt < 7 ? *attempt : 7); /* 1 ms .. 128 ms */
    struct timespec ts;

    if (left <= 0)
        return false;
    if (ms > left)
        ms = left;
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
    (*attempt)++;
    return true;
}

static bool is_busy(int src)
{
    return (src & 0xff) == SQLITE_BUSY || (src & 0xff) == SQLITE_LOCKED;
}

static char *str_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb + 1);
    }
    return s;
}

/* Printable form of a label for messages (damaged rows may hold anything). */
static const char *printable(const char *s, char *buf, size_t n)
{
    size_t i = 0;
    if (!s)
        return "?";
    for (; *s && i + 1 < n; s++)
        buf[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s;
    buf[i] = '\0';
    return buf;
}

static void hex_encode(const uint8_t *in, size_t len, char *out, size_t outlen)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < len && 2 * i + 2 < outlen; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * i] = '\0';
}

/* ------------------------------------------------------------------ sqlite errors */

/* Map a sqlite failure to a tk_rc with a message; what = "adding key 'web'". */
static tk_rc db_fail(tk_store *st, int src, const char *what)
{
    const char *msg = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(src);
    int err = st->db ? sqlite3_system_errno(st->db) : 0;

    st->last_src = src;
    st->last_errno = err;

    switch (src & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return tk_fail(TK_ERR_BUSY, "%s: the store %s stayed locked by another process for "
                       "more than %d s (%s); try again", what, st->path,
                       BUSY_TIMEOUT_MS / 1000, msg);
    case SQLITE_FULL:
        return tk_fail(TK_ERR_IO, "%s: the store %s cannot grow (%s): free some disk space",
                       what, st->path, msg);
    case SQLITE_IOERR:
        if (err)
            return tk_fail(TK_ERR_IO, "%s: I/O error on the store %s (%s: %s)", what, st->path,
                           msg, strerror(err));
        return tk_fail(TK_ERR_IO, "%s: I/O error on the store %s (%s)", what, st->path, msg);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return tk_fail(TK_ERR_STORE, "%s: the store %s is damaged or not a tpmkeys store (%s): "
                       "restore it from a backup or move it aside", what, st->path, msg);
    case SQLITE_READONLY:
        return tk_fail(TK_ERR_READONLY, "%s: the store %s is read-only (%s)", what, st->path,
                       msg);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        if (err)
            return tk_fail(TK_ERR_IO, "%s: cannot open the store %s (%s: %s)", what, st->path,
                           msg, strerror(err));
        return tk_fail(TK_ERR_IO, "%s: cannot open the store %s (%s)", what, st->path, msg);
    case SQLITE_NOMEM:
        return tk_fail(TK_ERR_NOMEM, "%s: out of memory", what);
    default:
        return tk_fail(TK_ERR_STORE, "%s: the store %s failed (%s, sqlite code %d)", what,
                       st->path, msg, src);
    }
}

static tk_rc fail_readonly(tk_store *st, const char *what)
{
    return tk_fail(TK_ERR_READONLY, "%s: the store %s is read-only (%s)", what, st->path,
                   st->ro_why);
}

/* ------------------------------------------------------------------ statements */

static int prepare_retry(tk_store *st, const char *sql, sqlite3_stmt **s)
{
    int64_t deadline = now_ms() + BUSY_TIMEOUT_MS;
    int attempt = 0, src;

    while ((src = sqlite3_prepare_v2(st->db, sql, -1, s, NULL)) != SQLITE_OK && is_busy(src) &&
           busy_backoff(deadline, &attempt))
        ;
    return src;
}

static tk_rc prep(tk_store *st, const char *sql, sqlite3_stmt **s, const char *what)
{
    int src = prepare_retry(st, sql, s);
    if (src != SQLITE_OK) {
        tk_rc rc = db_fail(st, src, what);
        sqlite3_finalize(*s);
        *s = NULL;
        return rc;
    }
    return TK_OK;
}

/* First step of a statement: a reader may meet SQLITE_BUSY without the busy
 * handler being called (WAL recovery by another process); retry it, bounded. */
static int step_first(sqlite3_stmt *s)
{
    int64_t deadline = now_ms() + BUSY_TIMEOUT_MS;
    int attempt = 0, src;

    while ((src = sqlite3_step(s)) != SQLITE_ROW && src != SQLITE_DONE && is_busy(src) &&
           busy_backoff(deadline, &attempt))
        sqlite3_reset(s);
    return src;
}

static int exec_retry(tk_store *st, const char *sql)
{
    int64_t deadline = now_ms() + BUSY_TIMEOUT_MS;
    int attempt = 0, src;

    while ((src = sqlite3_exec(st->db, sql, NULL, NULL, NULL)) != SQLITE_OK && is_busy(src) &&
           busy_backoff(deadline, &attempt))
        ;
    return src;
}

/* An empty buffer is bound as an empty blob, never as NULL. */
static int bind_buf(sqlite3_stmt *s, int i, const tk_buf *b)
{
    if (!b->len)
        return sqlite3_bind_zeroblob(s, i, 0);
    return sqlite3_bind_blob64(s, i, b->data, b->len, SQLITE_STATIC);
}

/* Run a statement that returns no rows (inside a transaction); *src_out lets
 * the caller reword a constraint failure. */
static tk_rc step_done(tk_store *st, sqlite3_stmt *s, int *src_out, const char *what)
{
    int src = sqlite3_step(s);
    if (src_out)
        *src_out = src;
    if (src == SQLITE_DONE || src == SQLITE_ROW)
        return TK_OK;
    return db_fail(st, src, what);
}

/* Read one integer (a PRAGMA or a single-value query). */
static tk_rc query_int(tk_store *st, const char *sql, int64_t *v, const char *what)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((rc = prep(st, sql, &s, what)) != TK_OK)
        return rc;
    src = step_first(s);
    if (src == SQLITE_ROW)
        *v = sqlite3_column_int64(s, 0);
    else if (src == SQLITE_DONE)
        rc = tk_fail(TK_ERR_STORE, "%s: no answer from the store %s", what, st->path);
    else
        rc = db_fail(st, src, what);
    sqlite3_finalize(s);
    return rc;
}

/* ------------------------------------------------------------------ transactions */

static tk_rc tx_begin(tk_store *st, const char *what)
{
    int src;

    if (st->readonly)
        return fail_readonly(st, what);
    src = exec_retry(st, "BEGIN IMMEDIATE");
    return src == SQLITE_OK ? TK_OK : db_fail(st, src, what);
}

/* Commit when rc is TK_OK, otherwise roll back; returns the final rc. */
static tk_rc tx_end(tk_store *st, tk_rc rc, const char *what)
{
    if (rc == TK_OK) {
        int src = sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL);
        if (src == SQLITE_OK)
            return TK_OK;
        rc = db_fail(st, src, what);
    }
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* ------------------------------------------------------------------ schema */

typedef tk_rc (*upgrade_fn)(tk_store *st);

/* v0 -> v1: everything. */
static tk_rc upgrade_v1(tk_store *st)
{
    static const char *const sql =
        "CREATE TABLE meta ("
        "  id INTEGER PRIMARY KEY CHECK (id = 1),"
        "  store_id TEXT NOT NULL,"
        "  created INTEGER NOT NULL);"
        "CREATE TABLE tokens ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  label TEXT NOT NULL UNIQUE CHECK (length(label) BETWEEN 1 AND 32),"
        "  user_pub BLOB NOT NULL DEFAULT x'',"
        "  user_priv BLOB NOT NULL DEFAULT x'',"
        "  so_pub BLOB NOT NULL DEFAULT x'',"
        "  so_priv BLOB NOT NULL DEFAULT x'',"
        "  user_fails INTEGER NOT NULL DEFAULT 0 CHECK (user_fails >= 0),"
        "  so_fails INTEGER NOT NULL DEFAULT 0 CHECK (so_fails >= 0),"
        "  created INTEGER NOT NULL);"
        "CREATE TABLE keys ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,"
        "  label TEXT NOT NULL CHECK (length(label) >= 1),"
        "  ckaid BLOB NOT NULL,"
        "  alg INTEGER NOT NULL,"
        "  pub BLOB NOT NULL,"
        "  priv BLOB NOT NULL,"
        "  parent INTEGER NOT NULL,"
        "  auth INTEGER NOT NULL,"
        "  authsalt BLOB NOT NULL DEFAULT x'',"
        "  policy BLOB NOT NULL DEFAULT x'',"
        "  cert BLOB NOT NULL DEFAULT x'',"
        "  origin INTEGER NOT NULL DEFAULT 0,"
        "  created INTEGER NOT NULL,"
        "  updated INTEGER NOT NULL,"
        "  UNIQUE (token_id, label));"
        "CREATE INDEX keys_by_ckaid ON keys (token_id, ckaid);";
    uint8_t rnd[8];
    char id[17];
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((src = sqlite3_exec(st->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
        return db_fail(st, src, "creating the tables");
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return tk_fail_ossl(TK_ERR_STORE, "no random bytes for the store id");
    hex_encode(rnd, sizeof(rnd), id, sizeof(id));
    if ((rc = prep(st, "INSERT INTO meta (id, store_id, created) VALUES (1, ?1, ?2)", &s,
                   "creating the store id")) != TK_OK)
        return rc;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)time(NULL));
    rc = step_done(st, s, NULL, "creating the store id");
    sqlite3_finalize(s);
    return rc;
}

/* v1 -> v2: standalone objects (certificates without a key, public keys, data). */
static tk_rc upgrade_v2(tk_store *st)
{
    static const char *const sql =
        "CREATE TABLE objects ("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "  token_id INTEGER NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,"
        "  class INTEGER NOT NULL,"
        "  label TEXT NOT NULL DEFAULT '',"
        "  ckaid BLOB NOT NULL DEFAULT x'',"
        "  value BLOB NOT NULL,"
        "  application TEXT NOT NULL DEFAULT '',"
        "  oid BLOB NOT NULL DEFAULT x'',"
        "  private INTEGER NOT NULL DEFAULT 0 CHECK (private IN (0, 1)),"
        "  created INTEGER NOT NULL,"
        "  updated INTEGER NOT NULL);"
        "CREATE INDEX objects_by_token ON objects (token_id);";
    int src = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return src == SQLITE_OK ? TK_OK : db_fail(st, src, "creating the objects table");
}

/* upgrades[v] brings a store from version v to v + 1.  Every step runs inside the
 * one transaction of migrate(): a store is at the old version or the new, never between. */
static const upgrade_fn upgrades[] = {
    upgrade_v1,
    upgrade_v2,
};
#define SCHEMA_VERSION ((int)(sizeof(upgrades) / sizeof(upgrades[0])))

static tk_rc fail_not_ours(tk_store *st, const char *why)
{
    return tk_fail(TK_ERR_STORE, "%s is not a tpmkeys store (%s): point TPMKEYS_STORE at a "
                   "tpmkeys store or move the file aside", st->path, why);
}

/* Apply the pending upgrades in one transaction. */
static tk_rc migrate(tk_store *st)
{
    char sql[96];
    int64_t version = 0, tables = 0;
    tk_rc rc;

    if ((rc = tx_begin(st, "upgrading the store")) != TK_OK)
        return rc;
    /* Another process may have upgraded it while we waited for the lock. */
    rc = query_int(st, "PRAGMA user_version", &version, "reading the schema version");
    if (rc == TK_OK && version == 0) {
        rc = query_int(st, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                       &tables, "reading the schema");
        if (rc == TK_OK && tables)
            rc = fail_not_ours(st, "it holds tables of another program");
    }
    /* A negative version would index upgrades[] below its start (found by fuzzing). */
    if (rc == TK_OK && version < 0)
        rc = fail_not_ours(st, "its schema version is negative");
    if (rc == TK_OK && version > SCHEMA_VERSION)
        rc = tk_fail(TK_ERR_STORE, "the store %s has schema version %lld, newer than this "
                     "tpmkeys understands (%d): upgrade tpmkeys", st->path, (long long)version,
                     SCHEMA_VERSION);
    for (int64_t v = version; rc == TK_OK && v < SCHEMA_VERSION; v++) {
        tk_debug("upgrading the store %s from schema %lld", st->path, (long long)v);
        if ((rc = upgrades[v](st)) != TK_OK)
            tk_fail_ctx(rc, "upgrading the store %s to schema %lld", st->path,
                        (long long)v + 1);
    }
    if (rc == TK_OK && version < SCHEMA_VERSION) {
        int src;
        snprintf(sql, sizeof(sql), "PRAGMA application_id = %d; PRAGMA user_version = %d",
                 STORE_APP_ID, SCHEMA_VERSION);
        if ((src = sqlite3_exec(st->db, sql, NULL, NULL, NULL)) != SQLITE_OK)
            rc = db_fail(st, src, "recording the schema version");
    }
    return tx_end(st, rc, "upgrading the store");
}

static tk_rc load_store_id(tk_store *st)
{
    sqlite3_stmt *s = NULL;
    const unsigned char *t;
    tk_rc rc;
    int src;

    if ((rc = prep(st, "SELECT store_id FROM meta WHERE id = 1", &s, "reading the store id")))
        return rc;
    src = step_first(s);
    if (src == SQLITE_ROW) {
        t = sqlite3_column_text(s, 0);
        if (sqlite3_column_type(s, 0) != SQLITE_TEXT || !t || strlen((const char *)t) != 16 ||
            strspn((const char *)t, "0123456789abcdef") != 16)
            rc = tk_fail(TK_ERR_STORE, "the store %s is damaged: its id is not 16 hex digits; "
                         "restore it from a backup", st->path);
        else
            memcpy(st->id, t, 17);
    } else if (src == SQLITE_DONE) {
        rc = tk_fail(TK_ERR_STORE, "the store %s is damaged: it has no store id; restore it "
                     "from a backup", st->path);
    } else {
        rc = db_fail(st, src, "reading the store id");
    }
    sqlite3_finalize(s);
    return rc;
}

/* Check the version and bring the schema up to date. */
static tk_rc schema_ready(tk_store *st)
{
    int64_t version, app;
    tk_rc rc;

    if ((rc = query_int(st, "PRAGMA user_version", &version, "opening the store")) != TK_OK)
        return rc;
    if ((rc = query_int(st, "PRAGMA application_id", &app, "opening the store")) != TK_OK)
        return rc;
    if (app != 0 && app != STORE_APP_ID)
        return fail_not_ours(st, "it belongs to another application");
    if (version < 0)
        return fail_not_ours(st, "its schema version is negative");
    if (version > SCHEMA_VERSION)
        return tk_fail(TK_ERR_STORE, "the store %s has schema version %lld, newer than this "
                       "tpmkeys understands (%d): upgrade tpmkeys", st->path,
                       (long long)version, SCHEMA_VERSION);
    if (version == SCHEMA_VERSION && app != STORE_APP_ID)
        return fail_not_ours(st, "no tpmkeys mark in its header");
    if (version < SCHEMA_VERSION) {
        if (st->readonly)
            return tk_fail(TK_ERR_READONLY, "the store %s has schema version %lld and this "
                           "tpmkeys needs %d, but it is read-only (%s): open it once with write "
                           "access (e.g. `tpmkeys list` as its owner) to upgrade it", st->path,
                           (long long)version, SCHEMA_VERSION, st->ro_why);
        if ((rc = migrate(st)) != TK_OK)
            return rc;
    }
    st->version = SCHEMA_VERSION;
    return load_store_id(st);
}

/* ------------------------------------------------------------------ opening */

enum open_mode { OPEN_RW, OPEN_RO, OPEN_IMMUTABLE };

/* "file:" URI with the path percent-encoded, for immutable=1. */
static char *immutable_uri(const char *path)
{
    static const char keep[] = "-._~/";
    size_t n = strlen(path);
    char *u = malloc(5 + 3 * n + sizeof("?immutable=1"));
    char *p = u;

    if (!u)
        return NULL;
    p += sprintf(p, "file:");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr(keep, *c))
            *p++ = (char)*c;
        else
            p += sprintf(p, "%%%02X", *c);
    }
    strcpy(p, "?immutable=1");
    return u;
}

static void conn_close(tk_store *st)
{
    sqlite3_finalize(st->key_get);
    st->key_get = NULL;
    sqlite3_finalize(st->dv);
    st->dv = NULL;
    if (st->db)
        sqlite3_close_v2(st->db);
    st->db = NULL;
}

/* Ask for WAL; a file system without shared memory keeps the rollback journal. */
static tk_rc set_wal(tk_store *st)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((rc = prep(st, "PRAGMA journal_mode = WAL", &s, "opening the store")) != TK_OK)
        return rc;
    src = step_first(s);
    if (src == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(s, 0);
        if (!mode || strcmp(mode, "wal"))
            tk_warn("the store %s stays in journal mode %s: WAL is not available there",
                    st->path, mode ? mode : "?");
    } else {
        rc = db_fail(st, src, "opening the store");
    }
    sqlite3_finalize(s);
    return rc;
}

static tk_rc conn_open_mode(tk_store *st, enum open_mode mode)
{
    int flags = SQLITE_OPEN_NOMUTEX;
    char *uri = NULL;
    const char *name = st->path;
    tk_rc rc;
    int src;

    st->last_src = SQLITE_OK;
    st->last_errno = 0;
    if (mode == OPEN_RW) {
        flags |= SQLITE_OPEN_READWRITE;
    } else {
        flags |= SQLITE_OPEN_READONLY;
        if (mode == OPEN_IMMUTABLE) {
            if (!(uri = immutable_uri(st->path)))
                return tk_fail(TK_ERR_NOMEM, "out of memory");
            name = uri;
            flags |= SQLITE_OPEN_URI;
        }
    }
    src = sqlite3_open_v2(name, &st->db, flags, NULL);
    free(uri);
    if (src != SQLITE_OK) {
        rc = db_fail(st, src, "opening the store");
        conn_close(st);
        return rc;
    }
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
#ifdef SQLITE_DBCONFIG_DEFENSIVE
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)NULL);
#endif
#ifdef SQLITE_DBCONFIG_TRUSTED_SCHEMA
    sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)NULL);
#endif
    src = exec_retry(st, "PRAGMA foreign_keys = ON");
    if (src == SQLITE_OK && mode == OPEN_RW)
        src = exec_retry(st, "PRAGMA synchronous = FULL");
    if (src != SQLITE_OK) {
        rc = db_fail(st, src, "opening the store");
    } else if (mode == OPEN_RW) {
        rc = set_wal(st);
    } else {
        rc = TK_OK;
    }
    if (rc == TK_OK)
        rc = schema_ready(st);
    if (rc != TK_OK)
        conn_close(st);
    return rc;
}

/* Did the last open fail because we may not write (the file, its folder, the -shm)? */
static bool failed_for_writing(const tk_store *st)
{
    int prim = st->last_src & 0xff;
    int e = st->last_errno;

    if (prim == SQLITE_READONLY)
        return true;
    /* A full disk: the -shm file cannot grow, so not even a reader gets in read-write. */
    return (prim == SQLITE_CANTOPEN || prim == SQLITE_PERM || prim == SQLITE_IOERR) &&
           (e == EROFS || e == EACCES || e == EPERM || e == ENOSPC || e == EDQUOT);
}

/* No committed change waits in the -wal file (absent or empty): reading the main file
 * alone (immutable) then sees the whole store. */
static bool wal_empty(const char *path)
{
    char wal[PATH_MAX];
    struct stat sb;

    if (snprintf(wal, sizeof(wal), "%s-wal", path) >= (int)sizeof(wal))
        return false;
    return stat(wal, &sb) != 0 ? errno == ENOENT : sb.st_size == 0;
}

static tk_rc conn_open(tk_store *st)
{
    tk_rc rc;

    if (!st->readonly) {
        rc = conn_open_mode(st, OPEN_RW);
        if (rc == TK_OK || !failed_for_writing(st))
            return rc;
        tk_debug("the store %s cannot be written (%s): serving it read-only", st->path,
                 tk_errmsg());
        snprintf(st->ro_why, sizeof(st->ro_why), "sqlite cannot write beside it: %.120s",
                 tk_errmsg());
        st->readonly = st->ro_auto = true;
    }
    rc = conn_open_mode(st, OPEN_RO);
    /* A WAL store on a read-only file system without its -shm file, or on a full one
     * where the -shm cannot grow: the only way to read it is to promise sqlite that
     * nobody changes it (on a full disk only when the -wal holds nothing). */
    if (rc != TK_OK && ((st->last_src & 0xff) == SQLITE_CANTOPEN ||
                        (st->last_src & 0xff) == SQLITE_READONLY ||
                        ((st->last_src & 0xff) == SQLITE_IOERR &&
                         (st->last_errno == ENOSPC || st->last_errno == EDQUOT) &&
                         wal_empty(st->path)))) {
        tk_debug("read-only open of %s failed (%s): trying immutable", st->path, tk_errmsg());
        rc = conn_open_mode(st, OPEN_IMMUTABLE);
    }
    return rc;
}

/* Create missing folders of path's parent, 0700 whatever the umask. */
static tk_rc make_folders(const char *path)
{
    char *dir = strdup(path);
    tk_rc rc = TK_OK;

    if (!dir)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return TK_OK;
    }
    *slash = '\0';
    for (char *p = dir + 1; rc == TK_OK; p++) {
        bool last = (*p == '\0');
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) == 0) {
            if (chmod(dir, 0700) != 0)
                rc = tk_fail(TK_ERR_IO, "cannot set the mode of folder %s: %s", dir,
                             strerror(errno));
        } else if (errno != EEXIST) {
            rc = tk_fail(errno == EROFS || errno == EACCES ? TK_ERR_READONLY : TK_ERR_IO,
                         "cannot create folder %s for the store: %s", dir, strerror(errno));
        }
        if (last)
            break;
        *p = '/';
    }
    free(dir);
    return rc;
}

static void set_ro_auto(tk_store *st, int err)
{
    st->readonly = st->ro_auto = true;
    snprintf(st->ro_why, sizeof(st->ro_why), "%s",
             err == EROFS ? "it is on a read-only file system" : "this user may not write it");
}

/* Create the file when asked (0600 before sqlite sees it) and find out
 * whether we may write it. */
static tk_rc prepare_file(tk_store *st)
{
    struct stat sb;
    int fd;

    if ((st->flags & TK_STORE_CREATE) && !st->readonly) {
        tk_rc rc = make_folders(st->path);
        if (rc != TK_OK && !(rc == TK_ERR_READONLY && stat(st->path, &sb) == 0))
            return rc;
        fd = open(st->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            int ok = fchmod(fd, 0600);
            int err = errno;
            close(fd);
            if (ok != 0)
                return tk_fail(TK_ERR_IO, "cannot set the mode of the new store %s: %s",
                               st->path, strerror(err));
            tk_debug("created the store file %s", st->path);
        } else if (errno != EEXIST) {
            int err = errno;
            bool ro = err == EROFS || err == EACCES || err == EPERM;
            if (!ro || stat(st->path, &sb) != 0)
                return tk_fail(ro ? TK_ERR_READONLY : TK_ERR_IO, "cannot create the store %s: "
                               "%s", st->path, strerror(err));
        }
    }
    if (stat(st->path, &sb) != 0) {
        if (errno == ENOENT)
            return tk_fail(TK_ERR_NOT_FOUND, "there is no store at %s: create it with "
                           "`tpmkeys init`", st->path);
        return tk_fail(TK_ERR_IO, "cannot reach the store %s: %s", st->path, strerror(errno));
    }
    if (!S_ISREG(sb.st_mode))
        return tk_fail(TK_ERR_IO, "the store %s is not a regular file", st->path);
    if (!st->readonly) {
        fd = open(st->path, O_RDWR | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        else if (errno == EROFS || errno == EACCES || errno == EPERM)
            set_ro_auto(st, errno);
        else
            return tk_fail(TK_ERR_IO, "cannot open the store %s: %s", st->path,
                           strerror(errno));
    }
    if (st->readonly) {
        fd = open(st->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return tk_fail(TK_ERR_IO, "cannot read the store %s: %s", st->path,
                           strerror(errno));
        close(fd);
    }
    return TK_OK;
}

tk_rc tk_store_default_path(char **path)
{
    const char *v;
    char *p;

    if (!path)
        return tk_fail(TK_ERR_INVALID, "tk_store_default_path: no output");
    if ((v = secure_getenv("TPMKEYS_STORE")) && *v) {
        p = strdup(v);
    } else if ((v = secure_getenv("XDG_DATA_HOME")) && *v == '/') {
        /* The XDG spec says relative values are to be ignored. */
        p = str_join(v, "/tpmkeys/store.db");
    } else {
        v = secure_getenv("HOME");
        if (v && *v) {
            p = str_join(v, "/.local/share/tpmkeys/store.db");
        } else {
            struct passwd pw, *res = NULL;
            long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
            size_t n = sz > 0 ? (size_t)sz : 16384;
            char *buf = malloc(n);
            int err;

            if (!buf)
                return tk_fail(TK_ERR_NOMEM, "out of memory");
            err = getpwuid_r(getuid(), &pw, buf, n, &res);
            if (err || !res || !pw.pw_dir || !*pw.pw_dir) {
                free(buf);
                return tk_fail(TK_ERR_NOT_FOUND, "no home folder for user %ld to hold the "
                               "store (%s): set TPMKEYS_STORE or HOME", (long)getuid(),
                               err ? strerror(err) : "not in the user database");
            }
            p = str_join(pw.pw_dir, "/.local/share/tpmkeys/store.db");
            free(buf);
        }
    }
    if (!p)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    *path = p;
    return TK_OK;
}

void tk_store_close(tk_store *st)
{
    if (!st)
        return;
    conn_close(st);
    pthread_mutex_destroy(&st->lock);
    free(st->path);
    free(st);
}

tk_rc tk_store_open(const char *path, unsigned flags, tk_store **out)
{
    tk_store *st;
    tk_rc rc;

    if (!out)
        return tk_fail(TK_ERR_INVALID, "tk_store_open: no output");
    if (path && !*path)
        return tk_fail(TK_ERR_INVALID, "the store path is empty");
    if (!(st = calloc(1, sizeof(*st))))
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&st->lock, NULL);
    st->flags = flags;
    st->pid = getpid();
    if (flags & TK_STORE_READONLY) {
        st->readonly = true;
        snprintf(st->ro_why, sizeof(st->ro_why), "opened read-only");
    }
    if (path)
        rc = (st->path = strdup(path)) ? TK_OK : tk_fail(TK_ERR_NOMEM, "out of memory");
    else
        rc = tk_store_default_path(&st->path);
    if (rc == TK_OK)
        rc = prepare_file(st);
    if (rc == TK_OK)
        rc = conn_open(st);
    if (rc != TK_OK) {
        tk_store_close(st);
        return rc;
    }
    tk_debug("opened the store %s (schema %d%s)", st->path, st->version,
             st->readonly ? ", read-only" : "");
    *out = st;
    return TK_OK;
}

/* Lock the store for this thread; after fork() the child gets its own connection
 * (a sqlite connection must not be used across fork; closing the inherited one is
 * safe: the parent's locks keep it from checkpointing or deleting anything).
 * As with any mutex, fork() while another thread is inside a store call is not
 * supported: only the forking thread exists in the child. */
static tk_rc enter(tk_store *st)
{
    pthread_mutex_lock(&st->lock);
    if (st->pid != getpid() || !st->db) {
        tk_rc rc;
        conn_close(st);
        st->pid = getpid();
        st->have_dv = false;
        if ((rc = conn_open(st)) != TK_OK) {
            pthread_mutex_unlock(&st->lock);
            return rc;
        }
    }
    return TK_OK;
}

static void leave(tk_store *st)
{
    pthread_mutex_unlock(&st->lock);
}

const char *tk_store_path(const tk_store *st)
{
    return st ? st->path : "";
}

const char *tk_store_readonly_reason(const tk_store *st)
{
    return st && st->readonly ? st->ro_why : "";
}

bool tk_store_is_readonly(const tk_store *st)
{
    return !st || st->readonly;
}

int tk_store_schema_version(tk_store *st)
{
    int64_t v;
    int version;

    if (!st || enter(st) != TK_OK)
        return -1;
    version = st->version;
    if (query_int(st, "PRAGMA user_version", &v, "reading the schema version") == TK_OK)
        version = (int)v;
    leave(st);
    return version;
}

const char *tk_store_id(tk_store *st)
{
    return st ? st->id : "";
}

bool tk_store_changed(tk_store *st)
{
    int64_t v;
    bool changed = true;

    if (!st || enter(st) != TK_OK)
        return true;
    if (st->dv || prep(st, "PRAGMA data_version", &st->dv, "checking the store for changes") ==
                      TK_OK) {
        if (step_first(st->dv) == SQLITE_ROW) {
            v = sqlite3_column_int64(st->dv, 0);
            changed = !st->have_dv || v != st->data_version;
            st->data_version = v;
            st->have_dv = true;
        }
        sqlite3_reset(st->dv);   /* at once: no read transaction left open */
    }
    leave(st);
    return changed;
}

/* Append every row of a diagnostic statement to f; *clean stays true when none. */
static tk_rc collect_fk_problems(tk_store *st, FILE *f, bool *clean)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((rc = prep(st, "PRAGMA foreign_key_check", &s, "checking the store")) != TK_OK)
        return rc;
    for (src = step_first(s); src == SQLITE_ROW; src = sqlite3_step(s)) {
        const char *table = (const char *)sqlite3_column_text(s, 0);
        const char *parent = (const char *)sqlite3_column_text(s, 2);
        fprintf(f, "%srow %lld of %s refers to a missing row of %s", *clean ? "" : "\n",
                (long long)sqlite3_column_int64(s, 1), table ? table : "?",
                parent ? parent : "?");
        *clean = false;
    }
    if (src != SQLITE_DONE)
        rc = db_fail(st, src, "checking the store");
    sqlite3_finalize(s);
    return rc;
}

static tk_rc collect_integrity(tk_store *st, FILE *f, bool *clean)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;
    bool first = true;

    if ((rc = prep(st, "PRAGMA integrity_check", &s, "checking the store")) != TK_OK)
        return rc;
    for (src = step_first(s); src == SQLITE_ROW; src = sqlite3_step(s)) {
        const char *line = (const char *)sqlite3_column_text(s, 0);
        if (first && line && !strcmp(line, "ok"))
            continue;
        fprintf(f, "%s%s", *clean ? "" : "\n", line ? line : "?");
        *clean = false;
        first = false;
    }
    if (src != SQLITE_DONE)
        rc = db_fail(st, src, "checking the store");
    sqlite3_finalize(s);
    return rc;
}

tk_rc tk_store_integrity(tk_store *st, char **report)
{
    char *text = NULL;
    size_t len = 0;
    bool clean = true;
    FILE *f;
    tk_rc rc;

    if (!st || !report)
        return tk_fail(TK_ERR_INVALID, "tk_store_integrity: missing argument");
    if (!(f = open_memstream(&text, &len)))
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    if ((rc = enter(st)) == TK_OK) {
        rc = collect_integrity(st, f, &clean);
        if (rc == TK_OK)
            rc = collect_fk_problems(st, f, &clean);
        leave(st);
    }
    if (rc == TK_OK && clean)
        fputs("ok", f);
    if (fclose(f) != 0 && rc == TK_OK)
        rc = tk_fail(TK_ERR_NOMEM, "out of memory");
    if (rc != TK_OK) {
        free(text);
        return rc;
    }
    *report = text;
    return TK_OK;
}

/* ------------------------------------------------------------------ row checks */

/* A marshalled TPM2B_PUBLIC of one of our algorithms. */
static bool public_ok(const tk_buf *b, tk_alg alg, char *why, size_t n)
{
    TPM2B_PUBLIC pub;
    size_t off = 0;

    memset(&pub, 0, sizeof(pub));
    if (!b->len) {
        snprintf(why, n, "the public blob is empty");
        return false;
    }
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(b->data, b->len, &off, &pub) != TSS2_RC_SUCCESS ||
        off != b->len) {
        snprintf(why, n, "the public blob (%zu bytes) is not a TPM2B_PUBLIC", b->len);
        return false;
    }
    tk_alg actual = tk_alg_from_public(&pub);
    if (actual != alg) {
        snprintf(why, n, "the public blob holds %s key, not %s",
                 actual == TK_ALG_NONE ? "an unsupported" : tk_alg_name(actual),
                 tk_alg_name(alg));
        return false;
    }
    return true;
}

static bool private_ok(const tk_buf *b, const char *name, char *why, size_t n)
{
    TPM2B_PRIVATE priv;
    size_t off = 0;

    memset(&priv, 0, sizeof(priv));
    if (!b->len || Tss2_MU_TPM2B_PRIVATE_Unmarshal(b->data, b->len, &off, &priv) !=
                       TSS2_RC_SUCCESS || off != b->len || !priv.size) {
        snprintf(why, n, "the %s blob (%zu bytes) is not a TPM2B_PRIVATE", name, b->len);
        OPENSSL_cleanse(&priv, sizeof(priv));
        return false;
    }
    OPENSSL_cleanse(&priv, sizeof(priv));
    return true;
}

static bool label_ok(const char *label, size_t max, char *why, size_t n)
{
    if (!label || !*label) {
        snprintf(why, n, "the label is empty");
        return false;
    }
    if (strlen(label) > max) {
        snprintf(why, n, "the label is longer than %zu bytes", max);
        return false;
    }
    return true;
}

static bool key_fields_ok(const tk_key *k, char *why, size_t n)
{
    if (!label_ok(k->label, KEY_LABEL_MAX, why, n))
        return false;
    if (k->ckaid.len > CKAID_MAX) {
        snprintf(why, n, "the CKA_ID has %zu bytes (at most %d)", k->ckaid.len, CKAID_MAX);
        return false;
    }
    if (k->cert.len > CERT_MAX) {
        snprintf(why, n, "the certificate has %zu bytes (at most %d)", k->cert.len, CERT_MAX);
        return false;
    }
    return private_ok(&k->priv, "private", why, n);
}

static bool key_ok(const tk_key *k, char *why, size_t n)
{
    if (!key_fields_ok(k, why, n))
        return false;
    if (tk_alg_type(k->alg) == 0) {
        snprintf(why, n, "unknown algorithm %d", (int)k->alg);
        return false;
    }
    if (!public_ok(&k->pub, k->alg, why, n))
        return false;
    if ((k->parent & 0xff000000u) != PERSISTENT_HANDLES) {
        snprintf(why, n, "the parent 0x%08x is not a persistent handle", k->parent);
        return false;
    }
    if (k->auth != TK_AUTH_NONE && k->auth != TK_AUTH_TOKEN) {
        snprintf(why, n, "unknown auth mode %d", (int)k->auth);
        return false;
    }
    if (k->authsalt.len > AUTHSALT_MAX ||
        (k->auth == TK_AUTH_TOKEN && k->authsalt.len < AUTHSALT_MIN)) {
        snprintf(why, n, "the auth salt has %zu bytes", k->authsalt.len);
        return false;
    }
    if (k->origin != TK_ORIGIN_GENERATED && k->origin != TK_ORIGIN_IMPORTED) {
        snprintf(why, n, "unknown origin %d", (int)k->origin);
        return false;
    }
    if (k->policy.len > POLICY_MAX) {
        snprintf(why, n, "the policy has %zu bytes (at most %d)", k->policy.len, POLICY_MAX);
        return false;
    }
    return true;
}

/* A PIN seal: both blobs empty (PIN not set) or both well-formed. */
static bool seal_ok(const tk_buf *pub, const tk_buf *priv, const char *who, char *why,
                    size_t n)
{
    TPM2B_PUBLIC p;
    size_t off = 0;

    memset(&p, 0, sizeof(p));
    if (!pub->len && !priv->len)
        return true;
    if (!pub->len || Tss2_MU_TPM2B_PUBLIC_Unmarshal(pub->data, pub->len, &off, &p) !=
                         TSS2_RC_SUCCESS || off != pub->len) {
        snprintf(why, n, "the %s PIN seal has no valid public blob", who);
        return false;
    }
    return private_ok(priv, who, why, n);
}

static bool token_ok(const tk_token *t, char *why, size_t n)
{
    if (!label_ok(t->label, TOKEN_LABEL_MAX, why, n))
        return false;
    if (t->user_fails < 0 || t->so_fails < 0) {
        snprintf(why, n, "a wrong-PIN counter is negative");
        return false;
    }
    return seal_ok(&t->user_pub, &t->user_priv, "user", why, n) &&
           seal_ok(&t->so_pub, &t->so_priv, "SO", why, n);
}

/* ------------------------------------------------------------------ reading columns */

enum col_rc { COL_OK, COL_BAD, COL_NOMEM };

static enum col_rc col_int(sqlite3_stmt *s, int i, int64_t min, int64_t max, int64_t *v,
                           char *why, size_t n)
{
    int64_t x;
    if (sqlite3_column_type(s, i) != SQLITE_INTEGER) {
        snprintf(why, n, "%s is not an integer", sqlite3_column_name(s, i));
        return COL_BAD;
    }
    x = sqlite3_column_int64(s, i);
    if (x < min || x > max) {
        snprintf(why, n, "%s is out of range (%lld)", sqlite3_column_name(s, i), (long long)x);
        return COL_BAD;
    }
    *v = x;
    return COL_OK;
}

/* NULL and empty blobs read as an empty buffer. */
static enum col_rc col_blob(sqlite3_stmt *s, int i, tk_buf *b, char *why, size_t n)
{
    int type = sqlite3_column_type(s, i);
    const void *p;
    int len;

    if (type == SQLITE_NULL)
        return COL_OK;
    if (type != SQLITE_BLOB) {
        snprintf(why, n, "%s is not a blob", sqlite3_column_name(s, i));
        return COL_BAD;
    }
    p = sqlite3_column_blob(s, i);
    len = sqlite3_column_bytes(s, i);
    if (len <= 0)
        return COL_OK;
    if (!p)
        return COL_NOMEM;
    return tk_buf_set(b, p, (size_t)len) == TK_OK ? COL_OK : COL_NOMEM;
}

static enum col_rc col_text(sqlite3_stmt *s, int i, char **out, char *why, size_t n)
{
    const char *p;
    int len;

    if (sqlite3_column_type(s, i) != SQLITE_TEXT) {
        snprintf(why, n, "%s is not text", sqlite3_column_name(s, i));
        return COL_BAD;
    }
    p = (const char *)sqlite3_column_text(s, i);
    len = sqlite3_column_bytes(s, i);
    if (!p)
        return COL_NOMEM;
    if (strlen(p) != (size_t)len) {
        snprintf(why, n, "%s contains a NUL byte", sqlite3_column_name(s, i));
        return COL_BAD;
    }
    return (*out = strdup(p)) ? COL_OK : COL_NOMEM;
}

/* Fold a sequence of column reads: stop at the first problem. */
#define COL(expr) do { if (cr == COL_OK) cr = (expr); } while (0)

/* ------------------------------------------------------------------ tokens */

#define TOKEN_COLS "id, label, user_pub, user_priv, so_pub, so_priv, user_fails, so_fails, created"

void tk_token_free(tk_token *t)
{
    if (!t)
        return;
    free(t->label);
    tk_buf_free(&t->user_pub);
    tk_buf_free(&t->user_priv);
    tk_buf_free(&t->so_pub);
    tk_buf_free(&t->so_priv);
    free(t);
}

static tk_rc token_from_row(tk_store *st, sqlite3_stmt *s, tk_token **out)
{
    char why[WHY_MAX] = "", lb[80];
    enum col_rc cr = COL_OK;
    int64_t uf = 0, sf = 0;
    tk_token *t = calloc(1, sizeof(*t));

    if (!t)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    t->id = sqlite3_column_int64(s, 0);
    COL(col_text(s, 1, &t->label, why, sizeof(why)));
    COL(col_blob(s, 2, &t->user_pub, why, sizeof(why)));
    COL(col_blob(s, 3, &t->user_priv, why, sizeof(why)));
    COL(col_blob(s, 4, &t->so_pub, why, sizeof(why)));
    COL(col_blob(s, 5, &t->so_priv, why, sizeof(why)));
    COL(col_int(s, 6, 0, INT_MAX, &uf, why, sizeof(why)));
    COL(col_int(s, 7, 0, INT_MAX, &sf, why, sizeof(why)));
    COL(col_int(s, 8, 0, INT64_MAX, &t->created, why, sizeof(why)));
    t->user_fails = (int)uf;
    t->so_fails = (int)sf;
    if (cr == COL_OK && !token_ok(t, why, sizeof(why)))
        cr = COL_BAD;
    if (cr == COL_OK) {
        *out = t;
        return TK_OK;
    }
    tk_rc rc = cr == COL_NOMEM ? tk_fail(TK_ERR_NOMEM, "out of memory")
                               : tk_fail(TK_ERR_STORE, "token '%s' (row %lld) in %s is "
                                         "damaged: %s; restore the store from a backup",
                                         printable(t->label, lb, sizeof(lb)),
                                         (long long)t->id, st->path, why);
    tk_token_free(t);
    return rc;
}

/* Run a token query; max 1 = single lookup. *n may be 0. */
static tk_rc fetch_tokens(tk_store *st, sqlite3_stmt *s, size_t max, tk_token ***out,
                          size_t *n, const char *what)
{
    tk_token **v = NULL, **nv;
    size_t cnt = 0, cap = 0;
    tk_rc rc = TK_OK;
    int src;

    for (src = step_first(s); src == SQLITE_ROW && cnt < max; src = sqlite3_step(s)) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 8;
            if (!(nv = realloc(v, cap * sizeof(*v)))) {
                rc = tk_fail(TK_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        if ((rc = token_from_row(st, s, &v[cnt])) != TK_OK)
            break;
        cnt++;
    }
    if (rc == TK_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = db_fail(st, src, what);
    if (rc != TK_OK) {
        for (size_t i = 0; i < cnt; i++)
            tk_token_free(v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return TK_OK;
}

static tk_rc token_get_one(tk_store *st, sqlite3_stmt *s, tk_token **out, const char *what)
{
    tk_token **v = NULL;
    size_t n = 0;
    tk_rc rc = fetch_tokens(st, s, 1, &v, &n, what);
    if (rc != TK_OK)
        return rc;
    if (!n) {
        free(v);
        return TK_ERR_NOT_FOUND; /* caller words the message */
    }
    *out = v[0];
    free(v);
    return TK_OK;
}

tk_rc tk_token_get(tk_store *st, const char *label, tk_token **out)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !label || !out)
        return tk_fail(TK_ERR_INVALID, "tk_token_get: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " TOKEN_COLS " FROM tokens WHERE label = ?1", &s, "reading a token");
    if (rc == TK_OK) {
        sqlite3_bind_text(s, 1, label, -1, SQLITE_STATIC);
        rc = token_get_one(st, s, out, "reading a token");
        if (rc == TK_ERR_NOT_FOUND)
            tk_fail(rc, "there is no token '%s' in the store %s (create it with "
                    "`tpmkeys init`)", label, st->path);
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

tk_rc tk_token_get_by_id(tk_store *st, int64_t id, tk_token **out)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !out)
        return tk_fail(TK_ERR_INVALID, "tk_token_get_by_id: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " TOKEN_COLS " FROM tokens WHERE id = ?1", &s, "reading a token");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, id);
        rc = token_get_one(st, s, out, "reading a token");
        if (rc == TK_ERR_NOT_FOUND)
            tk_fail(rc, "there is no token #%lld in the store %s (was it deleted?)",
                    (long long)id, st->path);
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

tk_rc tk_token_list(tk_store *st, tk_token ***out, size_t *n)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !out || !n)
        return tk_fail(TK_ERR_INVALID, "tk_token_list: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " TOKEN_COLS " FROM tokens ORDER BY id", &s, "listing tokens");
    if (rc == TK_OK)
        rc = fetch_tokens(st, s, SIZE_MAX, out, n, "listing tokens");
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

static tk_rc token_insert(tk_store *st, tk_token *t)
{
    sqlite3_stmt *s = NULL;
    int64_t created = (int64_t)time(NULL);
    tk_rc rc;
    int src;

    rc = prep(st, "INSERT INTO tokens (label, user_pub, user_priv, so_pub, so_priv, user_fails,"
              " so_fails, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &s,
              "adding a token");
    if (rc != TK_OK)
        return rc;
    sqlite3_bind_text(s, 1, t->label, -1, SQLITE_STATIC);
    bind_buf(s, 2, &t->user_pub);
    bind_buf(s, 3, &t->user_priv);
    bind_buf(s, 4, &t->so_pub);
    bind_buf(s, 5, &t->so_priv);
    sqlite3_bind_int(s, 6, t->user_fails);
    sqlite3_bind_int(s, 7, t->so_fails);
    sqlite3_bind_int64(s, 8, created);
    rc = step_done(st, s, &src, "adding a token");
    if (src == SQLITE_CONSTRAINT_UNIQUE)
        rc = tk_fail(TK_ERR_EXISTS, "a token labelled '%s' already exists in the store %s",
                     t->label, st->path);
    sqlite3_finalize(s);
    if (rc == TK_OK) {
        t->id = sqlite3_last_insert_rowid(st->db);
        t->created = created;
    }
    return rc;
}

static tk_rc token_update(tk_store *st, const tk_token *t)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    rc = prep(st, "UPDATE tokens SET user_pub = ?2, user_priv = ?3, so_pub = ?4, so_priv = ?5,"
              " user_fails = ?6, so_fails = ?7 WHERE id = ?1", &s, "updating a token");
    if (rc != TK_OK)
        return rc;
    sqlite3_bind_int64(s, 1, t->id);
    bind_buf(s, 2, &t->user_pub);
    bind_buf(s, 3, &t->user_priv);
    bind_buf(s, 4, &t->so_pub);
    bind_buf(s, 5, &t->so_priv);
    sqlite3_bind_int(s, 6, t->user_fails);
    sqlite3_bind_int(s, 7, t->so_fails);
    rc = step_done(st, s, NULL, "updating a token");
    if (rc == TK_OK && sqlite3_changes(st->db) == 0)
        rc = tk_fail(TK_ERR_NOT_FOUND, "token '%s' (#%lld) is no longer in the store %s",
                     t->label, (long long)t->id, st->path);
    sqlite3_finalize(s);
    return rc;
}

tk_rc tk_token_put(tk_store *st, tk_token *t)
{
    char why[WHY_MAX];
    tk_token copy;
    tk_rc rc;

    if (!st || !t)
        return tk_fail(TK_ERR_INVALID, "tk_token_put: missing argument");
    if (!token_ok(t, why, sizeof(why)))
        return tk_fail(TK_ERR_INVALID, "token '%s': %s", t->label ? t->label : "", why);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    copy = *t; /* t changes only on success */
    if ((rc = tx_begin(st, "saving a token")) == TK_OK) {
        rc = copy.id ? token_update(st, &copy) : token_insert(st, &copy);
        rc = tx_end(st, rc, "saving a token");
    }
    leave(st);
    if (rc == TK_OK) {
        t->id = copy.id;
        t->created = copy.created;
    }
    return rc;
}

/* Label of a token, for messages; NOT_FOUND when there is no such token. */
static tk_rc token_label(tk_store *st, int64_t id, char *label, size_t n)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((rc = prep(st, "SELECT label FROM tokens WHERE id = ?1", &s, "reading a token")))
        return rc;
    sqlite3_bind_int64(s, 1, id);
    src = step_first(s);
    if (src == SQLITE_ROW) {
        const char *l = (const char *)sqlite3_column_text(s, 0);
        printable(l, label, n);
    } else if (src == SQLITE_DONE) {
        rc = tk_fail(TK_ERR_NOT_FOUND, "there is no token #%lld in the store %s",
                     (long long)id, st->path);
    } else {
        rc = db_fail(st, src, "reading a token");
    }
    sqlite3_finalize(s);
    return rc;
}

/* Fixed SQL per counter: which = 0 user, 1 SO. */
static const struct {
    const char *col, *bump, *reset, *read;
} fail_sql[2] = {
    { "user_fails", "UPDATE tokens SET user_fails = user_fails + 1 WHERE id = ?1",
      "UPDATE tokens SET user_fails = 0 WHERE id = ?1",
      "SELECT user_fails FROM tokens WHERE id = ?1" },
    { "so_fails", "UPDATE tokens SET so_fails = so_fails + 1 WHERE id = ?1",
      "UPDATE tokens SET so_fails = 0 WHERE id = ?1",
      "SELECT so_fails FROM tokens WHERE id = ?1" },
};

static tk_rc count_fail_tx(tk_store *st, int64_t token_id, int which, bool reset, int *now)
{
    const char *what = reset ? "resetting a wrong-PIN count" : "counting a wrong PIN";
    char label[80];
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    tk_rc rc;
    int src;

    if ((rc = token_label(st, token_id, label, sizeof(label))) != TK_OK)
        return rc;
    if ((rc = prep(st, reset ? fail_sql[which].reset : fail_sql[which].bump, &s, what)))
        return rc;
    sqlite3_bind_int64(s, 1, token_id);
    rc = step_done(st, s, NULL, what);
    sqlite3_finalize(s);
    if (rc != TK_OK || (rc = prep(st, fail_sql[which].read, &s, what)) != TK_OK)
        return rc;
    sqlite3_bind_int64(s, 1, token_id);
    src = sqlite3_step(s);
    if (src == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_INTEGER)
        v = sqlite3_column_int64(s, 0);
    else if (src == SQLITE_ROW || src == SQLITE_DONE)
        v = -1;
    else
        rc = db_fail(st, src, what);
    sqlite3_finalize(s);
    if (rc == TK_OK && (v < 0 || v > INT_MAX))
        rc = tk_fail(TK_ERR_STORE, "token '%s' (row %lld) in %s is damaged: %s is not a "
                     "count; restore the store from a backup", label, (long long)token_id,
                     st->path, fail_sql[which].col);
    if (rc == TK_OK)
        *now = (int)v;
    return rc;
}

tk_rc tk_token_count_fail(tk_store *st, int64_t token_id, int which, bool reset, int *now)
{
    int value = 0;
    tk_rc rc;

    if (!st || (which != 0 && which != 1))
        return tk_fail(TK_ERR_INVALID, "tk_token_count_fail: bad argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "counting a wrong PIN")) == TK_OK) {
        rc = count_fail_tx(st, token_id, which, reset, &value);
        rc = tx_end(st, rc, "counting a wrong PIN");
    }
    leave(st);
    if (rc == TK_OK && now)
        *now = value;
    return rc;
}

/* Delete one row by id in its own transaction; TK_ERR_NOT_FOUND when there is none.
 * sql: the DELETE statement; noun: "token", "key", "object" (for messages). */
static tk_rc delete_row(tk_store *st, int64_t id, const char *sql, const char *noun)
{
    sqlite3_stmt *s = NULL;
    char what[48];
    tk_rc rc;

    snprintf(what, sizeof(what), "deleting %s %s", noun[0] == 'o' ? "an" : "a", noun);
    if (!st)
        return tk_fail(TK_ERR_INVALID, "%s: no store", what);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, what)) == TK_OK) {
        rc = prep(st, sql, &s, what);
        if (rc == TK_OK) {
            sqlite3_bind_int64(s, 1, id);
            rc = step_done(st, s, NULL, what);
            if (rc == TK_OK && sqlite3_changes(st->db) == 0)
                rc = tk_fail(TK_ERR_NOT_FOUND, "there is no %s #%lld in the store %s", noun,
                             (long long)id, st->path);
        }
        sqlite3_finalize(s);
        rc = tx_end(st, rc, what);
    }
    leave(st);
    return rc;
}

tk_rc tk_token_delete(tk_store *st, int64_t id)
{
    return delete_row(st, id, "DELETE FROM tokens WHERE id = ?1", "token");
}

/* ------------------------------------------------------------------ keys */

#define KEY_COLS "id, token_id, label, ckaid, alg, pub, priv, parent, auth, authsalt, policy," \
                 " cert, origin, created, updated"

void tk_key_free(tk_key *k)
{
    if (!k)
        return;
    free(k->label);
    tk_buf_free(&k->ckaid);
    tk_buf_free(&k->pub);
    tk_buf_free(&k->priv);
    tk_buf_free(&k->authsalt);
    tk_buf_free(&k->policy);
    tk_buf_free(&k->cert);
    free(k);
}

tk_rc tk_key_dup(const tk_key *k, tk_key **out)
{
    tk_key *d = calloc(1, sizeof(*d));

    *out = NULL;
    if (!d)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    *d = *k;
    d->label = NULL;
    d->ckaid = d->pub = d->priv = d->authsalt = d->policy = d->cert = (tk_buf){ 0 };
    const tk_buf *from[] = { &k->ckaid, &k->pub, &k->priv, &k->authsalt, &k->policy, &k->cert };
    tk_buf *to[] = { &d->ckaid, &d->pub, &d->priv, &d->authsalt, &d->policy, &d->cert };
    bool ok = (d->label = strdup(k->label ? k->label : "")) != NULL;
    for (size_t i = 0; ok && i < sizeof(to) / sizeof(to[0]); i++)
        ok = !from[i]->len || tk_buf_set(to[i], from[i]->data, from[i]->len) == TK_OK;
    if (!ok) {
        tk_key_free(d);
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    }
    *out = d;
    return TK_OK;
}

void tk_key_list_free(tk_key **keys, size_t n)
{
    if (!keys)
        return;
    for (size_t i = 0; i < n; i++)
        tk_key_free(keys[i]);
    free(keys);
}

static tk_rc key_from_row(tk_store *st, sqlite3_stmt *s, tk_key **out)
{
    char why[WHY_MAX] = "", lb[80];
    enum col_rc cr = COL_OK;
    int64_t token = 0, alg = 0, parent = 0, auth = 0, origin = 0;
    tk_key *k = calloc(1, sizeof(*k));

    if (!k)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    k->id = sqlite3_column_int64(s, 0);
    COL(col_text(s, 2, &k->label, why, sizeof(why)));
    COL(col_int(s, 1, 1, INT64_MAX, &token, why, sizeof(why)));
    COL(col_blob(s, 3, &k->ckaid, why, sizeof(why)));
    COL(col_int(s, 4, 0, 255, &alg, why, sizeof(why)));
    COL(col_blob(s, 5, &k->pub, why, sizeof(why)));
    COL(col_blob(s, 6, &k->priv, why, sizeof(why)));
    COL(col_int(s, 7, 0, UINT32_MAX, &parent, why, sizeof(why)));
    COL(col_int(s, 8, 0, 255, &auth, why, sizeof(why)));
    COL(col_blob(s, 9, &k->authsalt, why, sizeof(why)));
    COL(col_blob(s, 10, &k->policy, why, sizeof(why)));
    COL(col_blob(s, 11, &k->cert, why, sizeof(why)));
    COL(col_int(s, 12, 0, 255, &origin, why, sizeof(why)));
    COL(col_int(s, 13, 0, INT64_MAX, &k->created, why, sizeof(why)));
    COL(col_int(s, 14, 0, INT64_MAX, &k->updated, why, sizeof(why)));
    k->token_id = token;
    k->alg = (tk_alg)alg;
    k->parent = (uint32_t)parent;
    k->auth = (tk_authmode)auth;
    k->origin = (tk_origin)origin;
    if (cr == COL_OK && !key_ok(k, why, sizeof(why)))
        cr = COL_BAD;
    if (cr == COL_OK) {
        *out = k;
        return TK_OK;
    }
    tk_rc rc = cr == COL_NOMEM ? tk_fail(TK_ERR_NOMEM, "out of memory")
                               : tk_fail(TK_ERR_STORE, "key '%s' (row %lld) in %s is damaged: "
                                         "%s; delete it or restore the store from a backup",
                                         printable(k->label, lb, sizeof(lb)),
                                         (long long)k->id, st->path, why);
    tk_key_free(k);
    return rc;
}

/* The rows a statement yields, at most max, as an array of pointers of one type (tk_key *,
 * tk_obj * ...) with elem = the size of one: row() makes one into the slot it is given,
 * free_slot() frees the one in a slot.  damaged: rows that do not pass row()'s checks
 * (TK_ERR_STORE) are left out, counted and named in the log instead of failing the whole
 * list (NULL: they fail it). */
typedef tk_rc (*row_fn)(tk_store *st, sqlite3_stmt *s, void *slot);

static tk_rc fetch_rows(tk_store *st, sqlite3_stmt *s, size_t max, row_fn row,
                        void (*free_slot)(void *slot), size_t elem, void **out, size_t *n,
                        const char *what, size_t *damaged)
{
    unsigned char *v = NULL, *nv;
    size_t cnt = 0, cap = 0;
    tk_rc rc = TK_OK;
    int src;

    for (src = step_first(s); src == SQLITE_ROW && cnt < max; src = sqlite3_step(s)) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 16;
            if (!(nv = realloc(v, cap * elem))) {
                rc = tk_fail(TK_ERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        if ((rc = row(st, s, v + cnt * elem)) != TK_OK) {
            if (rc == TK_ERR_STORE && damaged) {
                /* Left out, counted and named: the caller decides what to say. */
                tk_warn("%s", tk_errmsg());
                (*damaged)++;
                rc = TK_OK;
                continue;
            }
            break;
        }
        cnt++;
    }
    if (rc == TK_OK && src != SQLITE_ROW && src != SQLITE_DONE)
        rc = db_fail(st, src, what);
    if (rc != TK_OK) {
        for (size_t i = 0; i < cnt; i++)
            free_slot(v + i * elem);
        free(v);
        return rc;
    }
    *out = v;
    *n = cnt;
    return TK_OK;
}

static tk_rc key_row(tk_store *st, sqlite3_stmt *s, void *slot)
{
    return key_from_row(st, s, (tk_key **)slot);
}

static void key_free_slot(void *slot)
{
    tk_key_free(*(tk_key **)slot);
}

static tk_rc fetch_keys_ex(tk_store *st, sqlite3_stmt *s, size_t max, tk_key ***out,
                           size_t *n, const char *what, size_t *damaged)
{
    void *v = NULL;
    tk_rc rc = fetch_rows(st, s, max, key_row, key_free_slot, sizeof(tk_key *), &v, n, what,
                          damaged);
    if (rc == TK_OK)
        *out = v;
    return rc;
}

static tk_rc fetch_keys(tk_store *st, sqlite3_stmt *s, size_t max, tk_key ***out, size_t *n,
                        const char *what)
{
    return fetch_keys_ex(st, s, max, out, n, what, NULL);
}

/* One key or TK_ERR_NOT_FOUND (message left to the caller). */
static tk_rc key_get_one(tk_store *st, sqlite3_stmt *s, tk_key **out, const char *what)
{
    tk_key **v = NULL;
    size_t n = 0;
    tk_rc rc = fetch_keys(st, s, 1, &v, &n, what);
    if (rc != TK_OK)
        return rc;
    if (!n) {
        free(v);
        return TK_ERR_NOT_FOUND;
    }
    *out = v[0];
    free(v);
    return TK_OK;
}

/* "in token 'x'" or "in the store /path", for not-found messages. */
static void where_text(tk_store *st, int64_t token_id, char *buf, size_t n)
{
    char label[80];
    if (token_id && token_label(st, token_id, label, sizeof(label)) == TK_OK)
        snprintf(buf, n, "in token '%s'", label);
    else if (token_id)
        snprintf(buf, n, "in token #%lld (no such token) of the store %s",
                 (long long)token_id, st->path);
    else
        snprintf(buf, n, "in the store %s", st->path);
}

tk_rc tk_key_get(tk_store *st, int64_t id, tk_key **out)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !out)
        return tk_fail(TK_ERR_INVALID, "tk_key_get: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if (!st->key_get)
        rc = prep(st, "SELECT " KEY_COLS " FROM keys WHERE id = ?1", &st->key_get,
                  "reading a key");
    if (rc == TK_OK) {
        s = st->key_get;
        sqlite3_bind_int64(s, 1, id);
        rc = key_get_one(st, s, out, "reading a key");
        if (rc == TK_ERR_NOT_FOUND)
            tk_fail(rc, "there is no key #%lld in the store %s (was it deleted?)",
                    (long long)id, st->path);
        /* Reset at once: a statement left mid-way would hold a read transaction. */
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
    leave(st);
    return rc;
}

tk_rc tk_key_find_label(tk_store *st, int64_t token_id, const char *label, tk_key **out)
{
    sqlite3_stmt *s = NULL;
    char where[400];
    tk_rc rc;

    if (!st || !label || !out)
        return tk_fail(TK_ERR_INVALID, "tk_key_find_label: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " KEY_COLS " FROM keys WHERE label = ?2 AND (?1 = 0 OR token_id = ?1)"
              " ORDER BY id LIMIT 1", &s, "finding a key");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, token_id);
        sqlite3_bind_text(s, 2, label, -1, SQLITE_STATIC);
        rc = key_get_one(st, s, out, "finding a key");
        if (rc == TK_ERR_NOT_FOUND) {
            where_text(st, token_id, where, sizeof(where));
            tk_fail(rc, "there is no key labelled '%s' %s", label, where);
        }
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

tk_rc tk_key_find_id(tk_store *st, int64_t token_id, const uint8_t *ckaid, size_t len,
                     tk_key **out)
{
    sqlite3_stmt *s = NULL;
    char where[400], hex[2 * 20 + 1];
    tk_rc rc;

    if (!st || (!ckaid && len) || !out)
        return tk_fail(TK_ERR_INVALID, "tk_key_find_id: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " KEY_COLS " FROM keys WHERE ckaid = ?2 AND (?1 = 0 OR token_id = ?1)"
              " ORDER BY id LIMIT 1", &s, "finding a key");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, token_id);
        if (len)
            sqlite3_bind_blob64(s, 2, ckaid, len, SQLITE_STATIC);
        else
            sqlite3_bind_zeroblob(s, 2, 0);
        rc = key_get_one(st, s, out, "finding a key");
        if (rc == TK_ERR_NOT_FOUND) {
            where_text(st, token_id, where, sizeof(where));
            hex_encode(ckaid, len > 20 ? 20 : len, hex, sizeof(hex));
            tk_fail(rc, "there is no key with CKA_ID %s%s %s", len ? hex : "(empty)",
                    len > 20 ? "..." : "", where);
        }
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

static tk_rc key_list(tk_store *st, int64_t token_id, tk_key ***out, size_t *n,
                      size_t *damaged)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !out || !n)
        return tk_fail(TK_ERR_INVALID, "tk_key_list: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " KEY_COLS " FROM keys WHERE ?1 = 0 OR token_id = ?1 ORDER BY id", &s,
              "listing keys");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, token_id);
        rc = fetch_keys_ex(st, s, SIZE_MAX, out, n, "listing keys", damaged);
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

tk_rc tk_key_list(tk_store *st, int64_t token_id, tk_key ***out, size_t *n)
{
    return key_list(st, token_id, out, n, NULL);
}

tk_rc tk_key_list_intact(tk_store *st, int64_t token_id, tk_key ***out, size_t *n,
                         size_t *damaged)
{
    *damaged = 0;
    return key_list(st, token_id, out, n, damaged);
}

tk_rc tk_key_delete_label(tk_store *st, int64_t token_id, const char *label)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if (!st || !label)
        return tk_fail(TK_ERR_INVALID, "tk_key_delete_label: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "deleting a key")) == TK_OK) {
        rc = prep(st, "DELETE FROM keys WHERE (?1 = 0 OR token_id = ?1) AND label = ?2", &s,
                  "deleting a key");
        if (rc == TK_OK) {
            sqlite3_bind_int64(s, 1, token_id);
            sqlite3_bind_text(s, 2, label, -1, SQLITE_STATIC);
            rc = step_done(st, s, &src, "deleting a key");
            if (rc == TK_OK && sqlite3_changes(st->db) == 0)
                rc = tk_fail(TK_ERR_NOT_FOUND, "no key labelled '%s'", label);
        }
        sqlite3_finalize(s);
        rc = tx_end(st, rc, "deleting a key");
    }
    leave(st);
    return rc;
}

static tk_rc key_insert(tk_store *st, const tk_key *k, int64_t now, int64_t *id)
{
    char token[80];
    sqlite3_stmt *s = NULL;
    tk_rc rc;
    int src;

    if ((rc = token_label(st, k->token_id, token, sizeof(token))) != TK_OK)
        return rc;
    rc = prep(st, "INSERT INTO keys (token_id, label, ckaid, alg, pub, priv, parent, auth,"
              " authsalt, policy, cert, origin, created, updated) VALUES"
              " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13)", &s,
              "adding a key");
    if (rc != TK_OK)
        return rc;
    sqlite3_bind_int64(s, 1, k->token_id);
    sqlite3_bind_text(s, 2, k->label, -1, SQLITE_STATIC);
    bind_buf(s, 3, &k->ckaid);
    sqlite3_bind_int(s, 4, (int)k->alg);
    bind_buf(s, 5, &k->pub);
    bind_buf(s, 6, &k->priv);
    sqlite3_bind_int64(s, 7, k->parent);
    sqlite3_bind_int(s, 8, (int)k->auth);
    bind_buf(s, 9, &k->authsalt);
    bind_buf(s, 10, &k->policy);
    bind_buf(s, 11, &k->cert);
    sqlite3_bind_int(s, 12, (int)k->origin);
    sqlite3_bind_int64(s, 13, now);
    rc = step_done(st, s, &src, "adding a key");
    if (src == SQLITE_CONSTRAINT_UNIQUE)
        rc = tk_fail(TK_ERR_EXISTS, "a key labelled '%s' already exists in token '%s'",
                     k->label, token);
    sqlite3_finalize(s);
    if (rc == TK_OK)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

tk_rc tk_key_add(tk_store *st, tk_key *k)
{
    char why[WHY_MAX];
    int64_t now = (int64_t)time(NULL), id = 0;
    tk_rc rc;

    if (!st || !k)
        return tk_fail(TK_ERR_INVALID, "tk_key_add: missing argument");
    if (!key_ok(k, why, sizeof(why)))
        return tk_fail(TK_ERR_INVALID, "key '%s' cannot be stored: %s", k->label ? k->label : "",
                       why);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "adding a key")) == TK_OK) {
        rc = key_insert(st, k, now, &id);
        rc = tx_end(st, rc, "adding a key");
    }
    leave(st);
    if (rc == TK_OK) {
        k->id = id;
        k->created = k->updated = now;
    }
    return rc;
}

static tk_rc key_update_tx(tk_store *st, const tk_key *k)
{
    char token[80];
    sqlite3_stmt *s = NULL;
    int64_t token_id = 0;
    tk_rc rc;
    int src;

    if ((rc = prep(st, "SELECT token_id FROM keys WHERE id = ?1", &s, "updating a key")))
        return rc;
    sqlite3_bind_int64(s, 1, k->id);
    src = step_first(s);
    if (src == SQLITE_ROW)
        token_id = sqlite3_column_int64(s, 0);
    else if (src == SQLITE_DONE)
        rc = tk_fail(TK_ERR_NOT_FOUND, "key '%s' (#%lld) is no longer in the store %s",
                     k->label, (long long)k->id, st->path);
    else
        rc = db_fail(st, src, "updating a key");
    sqlite3_finalize(s);
    if (rc != TK_OK || (rc = token_label(st, token_id, token, sizeof(token))) != TK_OK)
        return rc;
    rc = prep(st, "UPDATE keys SET label = ?2, ckaid = ?3, cert = ?4, priv = ?5, updated = ?6"
              " WHERE id = ?1", &s, "updating a key");
    if (rc != TK_OK)
        return rc;
    sqlite3_bind_int64(s, 1, k->id);
    sqlite3_bind_text(s, 2, k->label, -1, SQLITE_STATIC);
    bind_buf(s, 3, &k->ckaid);
    bind_buf(s, 4, &k->cert);
    bind_buf(s, 5, &k->priv);
    sqlite3_bind_int64(s, 6, (int64_t)time(NULL));
    rc = step_done(st, s, &src, "updating a key");
    if (src == SQLITE_CONSTRAINT_UNIQUE)
        rc = tk_fail(TK_ERR_EXISTS, "a key labelled '%s' already exists in token '%s'",
                     k->label, token);
    sqlite3_finalize(s);
    return rc;
}

tk_rc tk_key_update(tk_store *st, const tk_key *k)
{
    char why[WHY_MAX];
    tk_rc rc;

    if (!st || !k)
        return tk_fail(TK_ERR_INVALID, "tk_key_update: missing argument");
    if (!key_fields_ok(k, why, sizeof(why)))
        return tk_fail(TK_ERR_INVALID, "key '%s' cannot be stored: %s", k->label ? k->label : "",
                       why);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "updating a key")) == TK_OK) {
        rc = key_update_tx(st, k);
        rc = tx_end(st, rc, "updating a key");
    }
    leave(st);
    return rc;
}

tk_rc tk_key_delete(tk_store *st, int64_t id)
{
    return delete_row(st, id, "DELETE FROM keys WHERE id = ?1", "key");
}

/* ------------------------------------------------------------------ standalone objects */

#define OBJ_COLS "id, token_id, class, label, ckaid, value, application, oid, private, created," \
                 " updated"
#define OBJ_VALUE_MAX (1024 * 1024)
#define OBJ_APP_MAX 255
#define OBJ_OID_MAX 255

const char *tk_obj_class_name(tk_obj_class c)
{
    switch (c) {
    case TK_OBJ_DATA: return "data";
    case TK_OBJ_CERT: return "cert";
    case TK_OBJ_PUBKEY: return "pubkey";
    }
    return "unknown";
}

void tk_obj_free(tk_obj *o)
{
    if (!o)
        return;
    free(o->label);
    tk_buf_free(&o->ckaid);
    tk_buf_free(&o->value);
    free(o->application);
    tk_buf_free(&o->oid);
    free(o);
}

void tk_obj_list_free(tk_obj **objs, size_t n)
{
    if (!objs)
        return;
    for (size_t i = 0; i < n; i++)
        tk_obj_free(objs[i]);
    free(objs);
}

/* The value is what the class says: the doors build attributes from it. */
static bool obj_value_ok(const tk_obj *o, char *why, size_t n)
{
    const unsigned char *p = o->value.data;
    bool ok = true;

    if (o->value.len > OBJ_VALUE_MAX) {
        snprintf(why, n, "the value has %zu bytes (at most %d)", o->value.len, OBJ_VALUE_MAX);
        return false;
    }
    if (o->cls == TK_OBJ_CERT) {
        X509 *x = o->value.len ? d2i_X509(NULL, &p, (long)o->value.len) : NULL;
        ok = x && p == o->value.data + o->value.len;
        X509_free(x);
        if (!ok)
            snprintf(why, n, "the value (%zu bytes) is not a DER X.509 certificate",
                     o->value.len);
    } else if (o->cls == TK_OBJ_PUBKEY) {
        EVP_PKEY *k = o->value.len ? d2i_PUBKEY(NULL, &p, (long)o->value.len) : NULL;
        ok = k && p == o->value.data + o->value.len;
        EVP_PKEY_free(k);
        if (!ok)
            snprintf(why, n, "the value (%zu bytes) is not a DER SubjectPublicKeyInfo",
                     o->value.len);
    }
    ERR_clear_error();
    return ok;
}

/* What tk_obj_update may change. */
static bool obj_fields_ok(const tk_obj *o, char *why, size_t n)
{
    if (!o->label) {
        snprintf(why, n, "the label is missing");
        return false;
    }
    if (strlen(o->label) > KEY_LABEL_MAX) {
        snprintf(why, n, "the label is longer than %d bytes", KEY_LABEL_MAX);
        return false;
    }
    if (o->ckaid.len > CKAID_MAX) {
        snprintf(why, n, "the CKA_ID has %zu bytes (at most %d)", o->ckaid.len, CKAID_MAX);
        return false;
    }
    return true;
}

static bool obj_ok(const tk_obj *o, char *why, size_t n)
{
    if (o->cls != TK_OBJ_DATA && o->cls != TK_OBJ_CERT && o->cls != TK_OBJ_PUBKEY) {
        snprintf(why, n, "unknown class %d", (int)o->cls);
        return false;
    }
    if (!obj_fields_ok(o, why, n))
        return false;
    if (o->application && strlen(o->application) > OBJ_APP_MAX) {
        snprintf(why, n, "the application is longer than %d bytes", OBJ_APP_MAX);
        return false;
    }
    if (o->oid.len > OBJ_OID_MAX) {
        snprintf(why, n, "the object id has %zu bytes (at most %d)", o->oid.len, OBJ_OID_MAX);
        return false;
    }
    if (o->cls != TK_OBJ_DATA && ((o->application && *o->application) || o->oid.len)) {
        snprintf(why, n, "only data objects have an application and an object id");
        return false;
    }
    return obj_value_ok(o, why, n);
}

static tk_rc obj_from_row(tk_store *st, sqlite3_stmt *s, tk_obj **out)
{
    char why[WHY_MAX] = "", lb[80];
    enum col_rc cr = COL_OK;
    int64_t token = 0, cls = 0, priv = 0;
    tk_obj *o = calloc(1, sizeof(*o));

    if (!o)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    o->id = sqlite3_column_int64(s, 0);
    COL(col_text(s, 3, &o->label, why, sizeof(why)));
    COL(col_int(s, 1, 1, INT64_MAX, &token, why, sizeof(why)));
    COL(col_int(s, 2, 0, 255, &cls, why, sizeof(why)));
    COL(col_blob(s, 4, &o->ckaid, why, sizeof(why)));
    COL(col_blob(s, 5, &o->value, why, sizeof(why)));
    COL(col_text(s, 6, &o->application, why, sizeof(why)));
    COL(col_blob(s, 7, &o->oid, why, sizeof(why)));
    COL(col_int(s, 8, 0, 1, &priv, why, sizeof(why)));
    COL(col_int(s, 9, 0, INT64_MAX, &o->created, why, sizeof(why)));
    COL(col_int(s, 10, 0, INT64_MAX, &o->updated, why, sizeof(why)));
    o->token_id = token;
    o->cls = (tk_obj_class)cls;
    o->is_private = priv != 0;
    if (cr == COL_OK && !obj_ok(o, why, sizeof(why)))
        cr = COL_BAD;
    if (cr == COL_OK) {
        *out = o;
        return TK_OK;
    }
    tk_rc rc = cr == COL_NOMEM ? tk_fail(TK_ERR_NOMEM, "out of memory")
                               : tk_fail(TK_ERR_STORE, "object '%s' (row %lld) in %s is "
                                         "damaged: %s; delete it or restore the store from a "
                                         "backup", printable(o->label, lb, sizeof(lb)),
                                         (long long)o->id, st->path, why);
    tk_obj_free(o);
    return rc;
}

static tk_rc obj_row(tk_store *st, sqlite3_stmt *s, void *slot)
{
    return obj_from_row(st, s, (tk_obj **)slot);
}

static void obj_free_slot(void *slot)
{
    tk_obj_free(*(tk_obj **)slot);
}

static tk_rc fetch_objs(tk_store *st, sqlite3_stmt *s, tk_obj ***out, size_t *n,
                        const char *what, size_t *damaged)
{
    void *v = NULL;
    tk_rc rc = fetch_rows(st, s, SIZE_MAX, obj_row, obj_free_slot, sizeof(tk_obj *), &v, n,
                          what, damaged);
    if (rc == TK_OK)
        *out = v;
    return rc;
}

tk_rc tk_obj_get(tk_store *st, int64_t id, tk_obj **out)
{
    sqlite3_stmt *s = NULL;
    tk_obj **v = NULL;
    size_t n = 0;
    tk_rc rc;

    if (!st || !out)
        return tk_fail(TK_ERR_INVALID, "tk_obj_get: missing argument");
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " OBJ_COLS " FROM objects WHERE id = ?1", &s, "reading an object");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, id);
        rc = fetch_objs(st, s, &v, &n, "reading an object", NULL);
    }
    sqlite3_finalize(s);
    leave(st);
    if (rc != TK_OK)
        return rc;
    if (!n) {
        free(v);
        return tk_fail(TK_ERR_NOT_FOUND, "there is no object #%lld in the store %s (was it "
                       "deleted?)", (long long)id, st->path);
    }
    *out = v[0];
    free(v);
    return TK_OK;
}

tk_rc tk_obj_list(tk_store *st, int64_t token_id, tk_obj ***out, size_t *n, size_t *damaged)
{
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !out || !n)
        return tk_fail(TK_ERR_INVALID, "tk_obj_list: missing argument");
    if (damaged)
        *damaged = 0;
    if ((rc = enter(st)) != TK_OK)
        return rc;
    rc = prep(st, "SELECT " OBJ_COLS " FROM objects WHERE ?1 = 0 OR token_id = ?1 ORDER BY id",
              &s, "listing objects");
    if (rc == TK_OK) {
        sqlite3_bind_int64(s, 1, token_id);
        rc = fetch_objs(st, s, out, n, "listing objects", damaged);
    }
    sqlite3_finalize(s);
    leave(st);
    return rc;
}

static tk_rc obj_insert(tk_store *st, const tk_obj *o, int64_t now, int64_t *id)
{
    char token[80];
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    /* A clear message for a token that is gone (the foreign key would only say "constraint"). */
    if ((rc = token_label(st, o->token_id, token, sizeof(token))) != TK_OK)
        return rc;
    rc = prep(st, "INSERT INTO objects (token_id, class, label, ckaid, value, application, oid,"
              " private, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)", &s,
              "adding an object");
    if (rc != TK_OK)
        return rc;
    sqlite3_bind_int64(s, 1, o->token_id);
    sqlite3_bind_int(s, 2, (int)o->cls);
    sqlite3_bind_text(s, 3, o->label, -1, SQLITE_STATIC);
    bind_buf(s, 4, &o->ckaid);
    bind_buf(s, 5, &o->value);
    sqlite3_bind_text(s, 6, o->application ? o->application : "", -1, SQLITE_STATIC);
    bind_buf(s, 7, &o->oid);
    sqlite3_bind_int(s, 8, o->is_private ? 1 : 0);
    sqlite3_bind_int64(s, 9, now);
    rc = step_done(st, s, NULL, "adding an object");
    sqlite3_finalize(s);
    if (rc == TK_OK)
        *id = sqlite3_last_insert_rowid(st->db);
    return rc;
}

tk_rc tk_obj_add(tk_store *st, tk_obj *o)
{
    char why[WHY_MAX];
    int64_t now = (int64_t)time(NULL), id = 0;
    tk_rc rc;

    if (!st || !o)
        return tk_fail(TK_ERR_INVALID, "tk_obj_add: missing argument");
    if (!obj_ok(o, why, sizeof(why)))
        return tk_fail(TK_ERR_INVALID, "%s object '%s' cannot be stored: %s",
                       tk_obj_class_name(o->cls), o->label ? o->label : "", why);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "adding an object")) == TK_OK) {
        rc = obj_insert(st, o, now, &id);
        rc = tx_end(st, rc, "adding an object");
    }
    leave(st);
    if (rc == TK_OK) {
        o->id = id;
        o->created = o->updated = now;
    }
    return rc;
}

tk_rc tk_obj_update(tk_store *st, const tk_obj *o)
{
    char why[WHY_MAX];
    sqlite3_stmt *s = NULL;
    tk_rc rc;

    if (!st || !o)
        return tk_fail(TK_ERR_INVALID, "tk_obj_update: missing argument");
    if (!obj_fields_ok(o, why, sizeof(why)))
        return tk_fail(TK_ERR_INVALID, "object '%s' cannot be stored: %s",
                       o->label ? o->label : "", why);
    if ((rc = enter(st)) != TK_OK)
        return rc;
    if ((rc = tx_begin(st, "updating an object")) == TK_OK) {
        rc = prep(st, "UPDATE objects SET label = ?2, ckaid = ?3, updated = ?4 WHERE id = ?1",
                  &s, "updating an object");
        if (rc == TK_OK) {
            sqlite3_bind_int64(s, 1, o->id);
            sqlite3_bind_text(s, 2, o->label, -1, SQLITE_STATIC);
            bind_buf(s, 3, &o->ckaid);
            sqlite3_bind_int64(s, 4, (int64_t)time(NULL));
            rc = step_done(st, s, NULL, "updating an object");
            if (rc == TK_OK && sqlite3_changes(st->db) == 0)
                rc = tk_fail(TK_ERR_NOT_FOUND, "object '%s' (#%lld) is no longer in the store "
                             "%s", o->label, (long long)o->id, st->path);
        }
        sqlite3_finalize(s);
        rc = tx_end(st, rc, "updating an object");
    }
    leave(st);
    return rc;
}

tk_rc tk_obj_delete(tk_store *st, int64_t id)
{
    return delete_row(st, id, "DELETE FROM objects WHERE id = ?1", "object");
}
