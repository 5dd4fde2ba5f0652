/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The TPM core: the one place that sends TPM commands (through tss2-esys).
 *
 * - The connection is opened on first real use and re-opened after a fork or
 *   after the TPM went away.
 * - Keys are loaded under the SRK through a small cache; when the TPM is out
 *   of object slots (TPM_RC_OBJECT_MEMORY: a discrete TPM may hold only three)
 *   the least recently used key is flushed and the load retried.  Every
 *   transient handle created here is flushed here.
 * - Secrets never cross the TPM interface in the clear: auth values are proven
 *   with HMAC sessions salted to the SRK, and secret parameters (new auth
 *   values, sealed data, decrypted data, ECDH points) travel encrypted
 *   (AES-128-CFB parameter encryption).  Keys without auth sign through a plain
 *   password session: nothing secret crosses then, and it costs no crypto.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_sys.h>
#include <tss2/tss2_tctildr.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

#define CACHE_MAX 8
#define RETRY_MAX 40

/* A loaded key, found again by its blobs compared byte for byte (cheaper than hashing
 * them on every signature, and no collision to reason about). */
#define BLOBS_MAX (sizeof(TPM2B_PUBLIC) + sizeof(TPM2B_PRIVATE))

typedef struct {
    uint8_t blobs[BLOBS_MAX];   /* the public blob, then the private one */
    size_t publen, privlen;
    TPM2_HANDLE tpm;            /* the TPM's handle: signatures go straight through SAPI */
    ESYS_TR handle;             /* made when an ESYS command needs it, else ESYS_TR_NONE */
    uint64_t used;      /* LRU clock */
    bool persistent;    /* a persistent key: takes no transient slot, never flushed */
} cache_entry;

#define PERSIST_MAX 8

struct tk_tpm {
    pthread_mutex_t lock;
    char *tcti_conf;            /* NULL = tss2 default */
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    pid_t pid;                  /* process that opened the connection */
    ESYS_TR srk;                /* ESYS_TR_NONE until looked up */
    TPM2B_PUBLIC srk_pub;       /* valid when have_srk_pub */
    bool have_srk_pub;
    ESYS_TR session;            /* salted HMAC session, ESYS_TR_NONE until needed */
    cache_entry cache[CACHE_MAX];
    size_t ncache;
    struct {                    /* persistent keys opened with tk_tpm_persistent_public */
        uint8_t id[32];
        uint32_t handle;
    } persist[PERSIST_MAX];
    size_t npersist;
    uint64_t clock;
    signed char supported[TK_ALG_ECC_P521 + 1]; /* 0 unknown, 1 yes, -1 no */
    struct {                    /* our own salted HMAC session for keys with auth */
        TPMI_SH_AUTH_SESSION handle;    /* 0 = none */
        TPM2B_NONCE nonce_tpm;
        uint8_t key[32];                /* session key */
        bool off;                       /* SRK not on P-256: ESYS sessions instead */
    } raw;
    struct tk_tpm *live_next;   /* the list flushed at exit */
};

/* Every tk_tpm of the process, so that what they hold in the TPM is flushed when the
 * process exits without freeing them (an application that never calls C_Finalize or
 * OSSL_PROVIDER_unload): without a resource manager those objects would stay in the
 * TPM and take the slots of every later process. */
static tk_tpm *live;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

/* Connections abandoned in a forked child: the parent still uses the socket, so the
 * child must neither send on it nor close it; kept reachable on purpose. */
static struct orphan {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *esys;
    struct orphan *next;
} *orphans;
static pthread_mutex_t orphans_lock = PTHREAD_MUTEX_INITIALIZER;

/* tpm2-abrmd's TCTI talks through GLib's shared D-Bus connection and worker thread,
 * which do not survive fork(): in a child of a process that ever opened that TCTI
 * (even if it closed it again), a new one waits out D-Bus's 25 s time-out and fails,
 * on every call.  The process that first tried one; its children fail at once. */
static _Atomic pid_t tabrmd_pid;

static const TPMT_SYM_DEF session_sym = {
    .algorithm = TPM2_ALG_AES, .keyBits = { .aes = 128 }, .mode = { .aes = TPM2_ALG_CFB },
};

/* ------------------------------------------------------------------ errors */

static bool is_tpm_layer(TSS2_RC r)
{
    return (r & TSS2_RC_LAYER_MASK) == TSS2_TPM_RC_LAYER;
}

/* The TPM response code with the handle/session/parameter number masked off. */
static TSS2_RC tpm_code(TSS2_RC r)
{
    if (!is_tpm_layer(r))
        return r;
    if (r & TPM2_RC_FMT1)
        return r & (TPM2_RC_FMT1 | 0x3f);
    return r & 0xfff;
}

/* Errors that mean the connection itself is gone or unusable. */
static bool is_link_error(TSS2_RC r)
{
    if (is_tpm_layer(r))
        return false;
    switch (r & ~TSS2_RC_LAYER_MASK) {
    case TSS2_BASE_RC_IO_ERROR:
    case TSS2_BASE_RC_NO_CONNECTION:
    case TSS2_BASE_RC_TRY_AGAIN:
    case TSS2_BASE_RC_MALFORMED_RESPONSE:
    case TSS2_BASE_RC_INSUFFICIENT_RESPONSE:
    case TSS2_BASE_RC_BAD_SEQUENCE:
    case TSS2_BASE_RC_GENERAL_FAILURE:
        return true;
    }
    return false;
}

static void disconnect(tk_tpm *t, bool polite);
static void raw_drop(tk_tpm *t, bool polite);

/* One table from TSS2 codes to tk_rc, always carrying the tss2-rc text. */
static tk_rc tpm_fail(tk_tpm *t, TSS2_RC r, const char *what)
{
    const char *text = Tss2_RC_Decode(r);
    TSS2_RC c = tpm_code(r);

    if (is_link_error(r)) {
        disconnect(t, false);
        return tk_fail(TK_ERR_NO_TPM,
                       "%s: lost the TPM (%s) [%s]; the next call reconnects", what,
                       t->tcti_conf ? t->tcti_conf : "default TCTI", text);
    }
    if (!is_tpm_layer(r))
        return tk_fail(TK_ERR_TPM, "%s: %s", what, text);
    switch (c) {
    case TPM2_RC_AUTH_FAIL:
    case TPM2_RC_BAD_AUTH:
        return tk_fail(TK_ERR_PIN_INCORRECT, "%s: the TPM refused the PIN or password [%s]",
                       what, text);
    case TPM2_RC_LOCKOUT:
        return tk_fail(TK_ERR_PIN_LOCKED,
                       "%s: the TPM is in dictionary-attack lockout after too many wrong PINs; "
                       "wait for the recovery time (see `tpmkeys doctor`) [%s]", what, text);
    case TPM2_RC_OBJECT_MEMORY:
    case TPM2_RC_SESSION_MEMORY:
    case TPM2_RC_MEMORY:
    case TPM2_RC_OBJECT_HANDLES:
    case TPM2_RC_SESSION_HANDLES:
        return tk_fail(TK_ERR_TPM_FULL,
                       "%s: the TPM is out of memory for objects or sessions: other programs "
                       "hold them; use a resource manager (/dev/tpmrm0 or tpm2-abrmd) [%s]",
                       what, text);
    case TPM2_RC_NV_SPACE:
        return tk_fail(TK_ERR_TPM_FULL, "%s: the TPM's non-volatile memory is full [%s]", what,
                       text);
    case TPM2_RC_INTEGRITY:
        return tk_fail(TK_ERR_TPM,
                       "%s: the key blob does not belong to the SRK at 0x81000001 of this TPM "
                       "(made on another TPM, or the SRK was replaced) [%s]", what, text);
    case TPM2_RC_KEY_SIZE:
    case TPM2_RC_CURVE:
    case TPM2_RC_HASH:
    case TPM2_RC_SCHEME:
        return tk_fail(TK_ERR_UNSUPPORTED, "%s: this TPM does not support it [%s]", what, text);
    }
    return tk_fail(TK_ERR_TPM, "%s: %s", what, text);
}

/* TPM_RC_RETRY / YIELDED / TESTING: wait a little and send the command again. */
static bool should_retry(TSS2_RC r, int attempt)
{
    TSS2_RC c = tpm_code(r);
    if (!is_tpm_layer(r) || attempt >= RETRY_MAX)
        return false;
    if (c != TPM2_RC_RETRY && c != TPM2_RC_YIELDED && c != TPM2_RC_TESTING)
        return false;
    struct timespec ts = { 0, (long)(attempt < 10 ? 5 + attempt * 5 : 100) * 1000000L };
    nanosleep(&ts, NULL);
    tk_debug("TPM asked to retry (0x%x), attempt %d", (unsigned)r, attempt + 1);
    return true;
}

/* ------------------------------------------------------------------ connection */

tk_rc tk_tpm_new(const char *tcti, tk_tpm **out)
{
    tk_tpm *t = calloc(1, sizeof(*t));
    if (!t)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    if (!tcti)
        tcti = getenv("TPMKEYS_TCTI");
    if (tcti && *tcti) {
        t->tcti_conf = strdup(tcti);
        if (!t->tcti_conf) {
            free(t);
            return tk_fail(TK_ERR_NOMEM, "out of memory");
        }
    }
    pthread_mutex_init(&t->lock, NULL);
    t->srk = ESYS_TR_NONE;
    t->session = ESYS_TR_NONE;
    pthread_mutex_lock(&live_lock);
    t->live_next = live;
    live = t;
    pthread_mutex_unlock(&live_lock);
    *out = t;
    return TK_OK;
}

const char *tk_tpm_tcti(const tk_tpm *t)
{
    return t->tcti_conf ? t->tcti_conf : "default";
}

/* Give back a cached handle: flush a loaded key, only close a persistent one. */
static void cache_release(tk_tpm *t, cache_entry *e)
{
    TSS2_SYS_CONTEXT *sys = NULL;

    if (e->persistent)
        Esys_TR_Close(t->esys, &e->handle);
    else if (e->handle != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, e->handle);
    else if (Esys_GetSysContext(t->esys, &sys) == TSS2_RC_SUCCESS)
        Tss2_Sys_FlushContext(sys, e->tpm);
}

static void cache_drop_all(tk_tpm *t, bool flush)
{
    for (size_t i = 0; i < t->ncache; i++)
        if (flush)
            cache_release(t, &t->cache[i]);
    t->ncache = 0;
}

/* Close the connection.  polite: flush what we created (not after a fork or a lost
 * link, where the handles are not ours or not there any more). */
static void disconnect(tk_tpm *t, bool polite)
{
    if (!t->esys)
        return;
    if (t->pid != getpid()) {
        struct orphan *o = malloc(sizeof(*o));
        if (o) {
            o->tcti = t->tcti;
            o->esys = t->esys;
            pthread_mutex_lock(&orphans_lock);
            o->next = orphans;
            orphans = o;
            pthread_mutex_unlock(&orphans_lock);
        }
    } else {
        if (polite) {
            cache_drop_all(t, true);
            if (t->session != ESYS_TR_NONE)
                Esys_FlushContext(t->esys, t->session);
        }
        raw_drop(t, polite);
        Esys_Finalize(&t->esys);
        Tss2_TctiLdr_Finalize(&t->tcti);
    }
    t->esys = NULL;
    t->tcti = NULL;
    t->ncache = 0;
    t->srk = ESYS_TR_NONE;
    t->have_srk_pub = false;
    t->session = ESYS_TR_NONE;
    raw_drop(t, false);
}

/* At exit (or when the module holding this code is unloaded): flush the loaded keys and
 * the session of every connection this process opened and still holds.  Plain
 * FlushContext commands: no session, no crypto (OpenSSL may be cleaned up already).
 * A connection busy in another thread is left alone. */
__attribute__((destructor)) static void flush_at_exit(void)
{
    pthread_mutex_lock(&live_lock);
    for (tk_tpm *t = live; t; t = t->live_next) {
        if (pthread_mutex_trylock(&t->lock) != 0)
            continue;
        if (t->esys && t->pid == getpid()) {
            cache_drop_all(t, true);
            if (t->session != ESYS_TR_NONE)
                Esys_FlushContext(t->esys, t->session);
            t->session = ESYS_TR_NONE;
            raw_drop(t, true);
        }
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&live_lock);
}

void tk_tpm_free(tk_tpm *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&live_lock);
    for (tk_tpm **p = &live; *p; p = &(*p)->live_next)
        if (*p == t) {
            *p = t->live_next;
            break;
        }
    pthread_mutex_unlock(&live_lock);
    disconnect(t, true);
    pthread_mutex_destroy(&t->lock);
    free(t->tcti_conf);
    free(t);
}

static tk_rc no_tpm(tk_tpm *t, TSS2_RC r)
{
    const char *text = Tss2_RC_Decode(r);
    if (!t->tcti_conf)
        return tk_fail(TK_ERR_NO_TPM,
                       "no TPM found (tried /dev/tpmrm0, /dev/tpm0 and the other default "
                       "TCTIs): is the driver loaded (tpm_tis, tpm_crb, tpm_ftpm_tee)? "
                       "Or set TPMKEYS_TCTI [%s]", text);
    return tk_fail(TK_ERR_NO_TPM,
                   "cannot reach the TPM through TCTI '%s': is the TPM (or simulator) there "
                   "and reachable? [%s]", t->tcti_conf, text);
}

/* The TCTI loader tries dlopen(NAME) first, which looks in every library folder in vain
 * before it tries libtss2-tcti-NAME.so.0: hand it that library's name when it is there
 * ("swtpm:port=2321" -> "libtss2-tcti-swtpm.so.0:port=2321").  NULL: use conf as is.
 * *h: the library, held open until the loader has it (dlclose after). */
static char *tcti_by_library(const char *conf, void **h)
{
    const char *colon = conf ? strchr(conf, ':') : NULL;
    size_t n = conf ? (colon ? (size_t)(colon - conf) : strlen(conf)) : 0;
    char lib[64], *out = NULL;

    *h = NULL;
    if (!n || n > 32 || memchr(conf, '/', n) || memchr(conf, '.', n))
        return NULL;
    snprintf(lib, sizeof(lib), "libtss2-tcti-%.*s.so.0", (int)n, conf);
    if (!(*h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL)))
        return NULL;
    if ((out = malloc(strlen(lib) + strlen(conf + n) + 1)))
        sprintf(out, "%s%s", lib, conf + n);
    return out;
}

/* Open the connection if needed (lazily, and again after a fork). Caller holds lock. */
static tk_rc connect_tpm(tk_tpm *t)
{
    TSS2_RC r;

    if (t->esys && t->pid != getpid()) {
        tk_debug("fork detected: reconnecting to the TPM in the child");
        disconnect(t, false);
    }
    if (t->esys)
        return TK_OK;
    if (t->tcti_conf && strstr(t->tcti_conf, "tabrmd")) {
        pid_t first = 0;
        if (!atomic_compare_exchange_strong(&tabrmd_pid, &first, getpid()) && first != getpid())
            return tk_fail(TK_ERR_NO_TPM,
                           "cannot reach tpm2-abrmd from a process forked after its parent "
                           "used it (GLib's D-Bus connection does not survive fork()): use the "
                           "TPM only after forking, or the kernel's resource manager "
                           "(TPMKEYS_TCTI=device:/dev/tpmrm0)");
    }
    /* tss2 logs to stderr by default; stay silent unless TPMKEYS_LOG asks for debug. */
    setenv("TSS2_LOG", tk_log_level() >= TK_LOG_DEBUG ? "all+WARNING" : "all+NONE", 0);
    void *lib = NULL;
    char *direct = tcti_by_library(t->tcti_conf, &lib);
    r = Tss2_TctiLdr_Initialize(direct ? direct : t->tcti_conf, &t->tcti);
    free(direct);
    if (lib)
        dlclose(lib);   /* the loader holds its own reference */
    if (r != TSS2_RC_SUCCESS) {
        t->tcti = NULL;
        return no_tpm(t, r);
    }
    r = Esys_Initialize(&t->esys, t->tcti, NULL);
    if (r != TSS2_RC_SUCCESS) {
        Tss2_TctiLdr_Finalize(&t->tcti);
        t->esys = NULL;
        return no_tpm(t, r);
    }
    t->pid = getpid();
    tk_debug("connected to the TPM (%s)", tk_tpm_tcti(t));
    return TK_OK;
}

/* The SRK as an ESYS_TR (one ReadPublic per connection). */
static tk_rc srk_lookup(tk_tpm *t)
{
    TSS2_RC r;
    tk_rc rc = connect_tpm(t);

    if (rc != TK_OK || t->srk != ESYS_TR_NONE)
        return rc;
    for (int i = 0;; i++) {
        r = Esys_TR_FromTPMPublic(t->esys, TK_SRK_HANDLE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  ESYS_TR_NONE, &t->srk);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        t->srk = ESYS_TR_NONE;
        if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_HANDLE)
            return tk_fail(TK_ERR_NOT_FOUND,
                           "no storage root key at 0x81000001: run `tpmkeys init`");
        return tpm_fail(t, r, "reading the SRK at 0x81000001");
    }
    return TK_OK;
}

/* The SRK's public area, read once per connection and only when needed (SRK checks,
 * import, salting our session): one ReadPublic straight through SAPI (ESYS would hash
 * the name on the way), no ESYS_TR needed. */
static tk_rc srk_public(tk_tpm *t)
{
    TSS2_SYS_CONTEXT *sys = NULL;
    TPM2B_PUBLIC pub = { .size = 0 };
    TPM2B_NAME name = { .size = 0 }, qname = { .size = 0 };
    TSS2_RC r;
    tk_rc rc = connect_tpm(t);

    if (rc != TK_OK || t->have_srk_pub)
        return rc;
    r = Esys_GetSysContext(t->esys, &sys);
    for (int i = 0; r == TSS2_RC_SUCCESS; i++) {
        r = Tss2_Sys_ReadPublic(sys, TK_SRK_HANDLE, NULL, &pub, &name, &qname, NULL);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_HANDLE)
            return tk_fail(TK_ERR_NOT_FOUND,
                           "no storage root key at 0x81000001: run `tpmkeys init`");
        return tpm_fail(t, r, "reading the SRK at 0x81000001");
    }
    t->srk_pub = pub;
    t->have_srk_pub = true;
    return TK_OK;
}

/* A usable storage key: restricted decrypt, not sign, AES-CFB symmetric, RSA or ECC. */
static tk_rc srk_check(const TPM2B_PUBLIC *pub)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    TPMA_OBJECT a = p->objectAttributes;
    const TPMT_SYM_DEF_OBJECT *sym =
        p->type == TPM2_ALG_ECC ? &p->parameters.eccDetail.symmetric
                                : &p->parameters.rsaDetail.symmetric;

    if ((p->type != TPM2_ALG_ECC && p->type != TPM2_ALG_RSA) || !(a & TPMA_OBJECT_RESTRICTED) ||
        !(a & TPMA_OBJECT_DECRYPT) || (a & TPMA_OBJECT_SIGN_ENCRYPT) ||
        sym->algorithm != TPM2_ALG_AES || sym->mode.aes != TPM2_ALG_CFB)
        return tk_fail(TK_ERR_TPM,
                       "the object at 0x81000001 is not a storage key (restricted decrypt key "
                       "with AES-CFB): another program uses that handle. If it is not needed, "
                       "remove it (tpm2_evictcontrol -C o -c 0x81000001) and run `tpmkeys init`");
    if (!(a & TPMA_OBJECT_USERWITHAUTH))
        return tk_fail(TK_ERR_TPM, "the SRK at 0x81000001 needs a policy to be used; tpmkeys "
                                   "needs an SRK usable with its (empty) auth value");
    return TK_OK;
}

/* The salted HMAC session (salted to the SRK, AES-128-CFB parameter encryption),
 * started once per connection and kept. attrs: TPMA_SESSION_ENCRYPT/DECRYPT for
 * this command. */
static tk_rc session_get(tk_tpm *t, TPMA_SESSION attrs, ESYS_TR *out)
{
    TSS2_RC r;
    tk_rc rc = srk_lookup(t);

    if (rc != TK_OK)
        return rc;
    if (t->session == ESYS_TR_NONE) {
        for (int i = 0;; i++) {
            r = Esys_StartAuthSession(t->esys, t->srk, ESYS_TR_NONE, ESYS_TR_NONE,
                                      ESYS_TR_NONE, ESYS_TR_NONE, NULL, TPM2_SE_HMAC,
                                      &session_sym, TPM2_ALG_SHA256, &t->session);
            if (!should_retry(r, i))
                break;
        }
        if (r != TSS2_RC_SUCCESS) {
            t->session = ESYS_TR_NONE;
            return tpm_fail(t, r, "starting an encrypted session with the TPM");
        }
    }
    r = Esys_TRSess_SetAttributes(t->esys, t->session,
                                  TPMA_SESSION_CONTINUESESSION | attrs, 0xff);
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "setting session attributes");
    *out = t->session;
    return TK_OK;
}

/* After a failed command the session may be gone or out of step: start afresh. */
static void session_reset(tk_tpm *t)
{
    if (t->esys && t->session != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, t->session);
    t->session = ESYS_TR_NONE;
}

static tk_rc set_auth(tk_tpm *t, ESYS_TR h, const tk_secret *auth)
{
    TPM2B_AUTH a = { .size = 0 };
    TSS2_RC r;

    if (auth && auth->len) {
        if (auth->len > sizeof(a.buffer))
            return tk_fail(TK_ERR_INVALID, "auth value too long (%zu bytes)", auth->len);
        a.size = (UINT16)auth->len;
        memcpy(a.buffer, auth->data, auth->len);
    }
    r = Esys_TR_SetAuth(t->esys, h, &a);
    OPENSSL_cleanse(&a, sizeof(a));
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "setting an auth value");
    return TK_OK;
}

/* ------------------------------------------------------------------ key cache */

static void blob_id(const tk_buf *pub, const tk_buf *priv, uint8_t id[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 32;
    memset(id, 0, 32);
    if (md && EVP_DigestInit_ex(md, tk_md_for_alg(TPM2_ALG_SHA256), NULL) &&
        EVP_DigestUpdate(md, pub->data, pub->len) &&
        EVP_DigestUpdate(md, priv->data, priv->len))
        EVP_DigestFinal_ex(md, id, &n);
    EVP_MD_CTX_free(md);
}

/* Flush the least recently used loaded key; persistent keys hold no slot. */
static bool cache_evict_lru(tk_tpm *t)
{
    size_t lru = SIZE_MAX;
    for (size_t i = 0; i < t->ncache; i++)
        if (!t->cache[i].persistent && (lru == SIZE_MAX || t->cache[i].used < t->cache[lru].used))
            lru = i;
    if (lru == SIZE_MAX)
        return false;
    tk_debug("evicting a cached key to free a TPM object slot");
    cache_release(t, &t->cache[lru]);
    t->cache[lru] = t->cache[--t->ncache];
    return true;
}

/* Make room in a full cache (persistent entries go too when nothing else can). */
static void cache_make_room(tk_tpm *t)
{
    if (t->ncache < CACHE_MAX || cache_evict_lru(t))
        return;
    cache_release(t, &t->cache[0]);
    t->cache[0] = t->cache[--t->ncache];
}

/* Drop the entry of an ESYS handle, or (h == ESYS_TR_NONE) of a TPM handle. */
static void cache_forget(tk_tpm *t, ESYS_TR h, TPM2_HANDLE th)
{
    for (size_t i = 0; i < t->ncache; i++)
        if (h != ESYS_TR_NONE ? t->cache[i].handle == h : t->cache[i].tpm == th) {
            cache_release(t, &t->cache[i]);
            t->cache[i] = t->cache[--t->ncache];
            return;
        }
}

void tk_tpm_flush_cache(tk_tpm *t)
{
    pthread_mutex_lock(&t->lock);
    if (t->esys && t->pid == getpid())
        cache_drop_all(t, true);
    pthread_mutex_unlock(&t->lock);
}

/* TPM2_Load under the SRK straight through SAPI (a password session: the SRK has an empty
 * auth value), evicting cached keys while the TPM is out of slots; the object is ours to
 * flush.  ESYS would hash the name on the way, through a library context it builds for
 * that hash alone: 1-2 ms on every process's first signature.  TK_ERR_TPM with *r set:
 * the TPM failed, the caller maps *r. */
static tk_rc sapi_load(tk_tpm *t, const TPM2B_PUBLIC *pub, const TPM2B_PRIVATE *priv,
                       TPM2_HANDLE *h, TSS2_RC *r)
{
    TSS2L_SYS_AUTH_COMMAND pw = { .count = 1, .auths = { { .sessionHandle = TPM2_RH_PW } } };
    TSS2L_SYS_AUTH_RESPONSE ra = { .count = 0 };
    TPM2B_NAME name = { .size = 0 };
    TSS2_SYS_CONTEXT *sys = NULL;

    if ((*r = Esys_GetSysContext(t->esys, &sys)) != TSS2_RC_SUCCESS)
        return TK_ERR_TPM;
    for (int i = 0;; i++) {
        *r = Tss2_Sys_Load(sys, TK_SRK_HANDLE, &pw, priv, pub, h, &name, &ra);
        if (is_tpm_layer(*r) && tpm_code(*r) == TPM2_RC_OBJECT_MEMORY && cache_evict_lru(t))
            continue;
        if (!should_retry(*r, i))
            break;
    }
    return *r == TSS2_RC_SUCCESS ? TK_OK : TK_ERR_TPM;
}

/* The message for a failed sapi_load. */
static tk_rc load_fail(tk_tpm *t, TSS2_RC r)
{
    if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_HANDLE && (r & TPM2_RC_H) &&
        (r & TPM2_RC_N_MASK) == TPM2_RC_1)
        return tk_fail(TK_ERR_NOT_FOUND, "no storage root key at 0x81000001: run `tpmkeys init`");
    return tpm_fail(t, r, "loading the key into the TPM");
}

/* TPM2_Load under the SRK through ESYS (objects used once by ESYS commands). */
static tk_rc load_blobs(tk_tpm *t, const tk_buf *pubb, const tk_buf *privb, ESYS_TR *h)
{
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TSS2_RC r;
    tk_rc rc;

    if ((rc = srk_lookup(t)) != TK_OK)
        return rc;
    if ((rc = tk_public_unmarshal(pubb, &pub)) != TK_OK ||
        (rc = tk_private_unmarshal(privb, &priv)) != TK_OK)
        return rc;
    for (int i = 0;; i++) {
        r = Esys_Load(t->esys, t->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub,
                      h);
        if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_OBJECT_MEMORY && cache_evict_lru(t))
            continue;
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "loading the key into the TPM");
    return TK_OK;
}

/* An ESYS_TR for a persistent key met before through tk_tpm_persistent_public; its name
 * must still match the public area (the handle may have been reused meanwhile). */
static tk_rc persistent_open(tk_tpm *t, const tk_buf *pubb, const uint8_t id[32], ESYS_TR *h)
{
    TPM2B_PUBLIC pub;
    TPM2B_NAME want, *got = NULL;
    uint32_t handle = 0;
    TSS2_RC r;
    tk_rc rc;

    for (size_t i = 0; i < t->npersist; i++)
        if (!memcmp(t->persist[i].id, id, 32))
            handle = t->persist[i].handle;
    if (!handle)
        return tk_fail(TK_ERR_INVALID, "the key has no private blob and is no known "
                       "persistent key");
    if ((rc = tk_public_unmarshal(pubb, &pub)) != TK_OK || (rc = tk_public_name(&pub, &want)))
        return rc;
    r = Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, h);
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "opening the persistent key");
    r = Esys_TR_GetName(t->esys, *h, &got);
    if (r != TSS2_RC_SUCCESS || got->size != want.size ||
        memcmp(got->name, want.name, want.size)) {
        Esys_Free(got);
        Esys_TR_Close(t->esys, h);
        return tk_fail(TK_ERR_NOT_FOUND, "the persistent key at 0x%08x was replaced by "
                       "another object", handle);
    }
    Esys_Free(got);
    return TK_OK;
}

tk_rc tk_tpm_persistent_public(tk_tpm *t, uint32_t handle, tk_buf *pubb)
{
    TPM2B_PUBLIC *pub = NULL;
    ESYS_TR tr = ESYS_TR_NONE;
    tk_buf empty = { 0 };
    uint8_t id[32];
    TSS2_RC r;
    tk_rc rc;

    if ((handle >> 24) != TPM2_HT_PERSISTENT)
        return tk_fail(TK_ERR_INVALID, "0x%08x is not a persistent handle (0x81xxxxxx)",
                       handle);
    pthread_mutex_lock(&t->lock);
    if ((rc = connect_tpm(t)) != TK_OK)
        goto out;
    r = Esys_TR_FromTPMPublic(t->esys, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (r != TSS2_RC_SUCCESS) {
        rc = is_tpm_layer(r) && tpm_code(r) == TPM2_RC_HANDLE
                 ? tk_fail(TK_ERR_NOT_FOUND, "no key at persistent handle 0x%08x", handle)
                 : tpm_fail(t, r, "opening the persistent key");
        goto out;
    }
    r = Esys_ReadPublic(t->esys, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL, NULL);
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "reading the persistent key");
        goto out;
    }
    if (pub->publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED ||
        !(pub->publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT)) {
        rc = tk_fail(TK_ERR_UNSUPPORTED, "the object at 0x%08x is not an unrestricted signing "
                     "key", handle);
        goto out;
    }
    if ((rc = tk_public_marshal(pub, pubb)) != TK_OK)
        goto out;
    blob_id(pubb, &empty, id);
    for (size_t i = 0; i < t->npersist; i++)
        if (t->persist[i].handle == handle)
            t->persist[i] = t->persist[--t->npersist];
    if (t->npersist == PERSIST_MAX)
        t->persist[0] = t->persist[--t->npersist];
    memcpy(t->persist[t->npersist].id, id, sizeof(id));
    t->persist[t->npersist++].handle = handle;
out:
    if (tr != ESYS_TR_NONE && t->esys)
        Esys_TR_Close(t->esys, &tr);
    Esys_Free(pub);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* The cache entry of a loaded key (loaded now when it is not there): its index. */
static tk_rc key_entry(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, size_t *idx)
{
    TPM2B_PUBLIC p;
    TPM2B_PRIVATE q;
    cache_entry *e;
    ESYS_TR h = ESYS_TR_NONE;
    TPM2_HANDLE th = 0;
    uint8_t id[32];
    TSS2_RC r;
    tk_rc rc;

    if ((rc = connect_tpm(t)) != TK_OK)
        return rc;
    if (!pub->len || pub->len + priv->len > BLOBS_MAX)
        return tk_fail(TK_ERR_INVALID, "the key's blobs are empty or too large (%zu bytes)",
                       pub->len + priv->len);
    for (size_t i = 0; i < t->ncache; i++) {
        e = &t->cache[i];
        if (e->publen == pub->len && e->privlen == priv->len &&
            !memcmp(e->blobs, pub->data, pub->len) &&
            (!priv->len || !memcmp(e->blobs + pub->len, priv->data, priv->len))) {
            e->used = ++t->clock;
            *idx = i;
            return TK_OK;
        }
    }
    if (!priv->len) {
        blob_id(pub, priv, id);
        if ((rc = persistent_open(t, pub, id, &h)) != TK_OK)
            return rc;
        if ((r = Esys_TR_GetTpmHandle(t->esys, h, &th)) != TSS2_RC_SUCCESS) {
            Esys_TR_Close(t->esys, &h);
            return tpm_fail(t, r, "opening the persistent key");
        }
    } else {
        if ((rc = tk_public_unmarshal(pub, &p)) != TK_OK ||
            (rc = tk_private_unmarshal(priv, &q)) != TK_OK)
            return rc;
        if (sapi_load(t, &p, &q, &th, &r) != TK_OK)
            return load_fail(t, r);
    }
    cache_make_room(t);
    *idx = t->ncache;
    e = &t->cache[t->ncache++];
    memcpy(e->blobs, pub->data, pub->len);
    if (priv->len)
        memcpy(e->blobs + pub->len, priv->data, priv->len);
    e->publen = pub->len;
    e->privlen = priv->len;
    e->tpm = th;
    e->handle = h;
    e->used = ++t->clock;
    e->persistent = !priv->len;
    return TK_OK;
}

/* The key's TPM handle (SAPI commands). */
static tk_rc key_tpm_handle(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, TPM2_HANDLE *th)
{
    size_t i;
    tk_rc rc = key_entry(t, pub, priv, &i);

    if (rc == TK_OK)
        *th = t->cache[i].tpm;
    return rc;
}

/* The key as an ESYS_TR (ESYS commands), made from its TPM handle on first need. */
static tk_rc key_handle(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, ESYS_TR *h)
{
    cache_entry *e;
    size_t i;
    TSS2_RC r;
    tk_rc rc = key_entry(t, pub, priv, &i);

    if (rc != TK_OK)
        return rc;
    e = &t->cache[i];
    if (e->handle == ESYS_TR_NONE) {
        r = Esys_TR_FromTPMPublic(t->esys, e->tpm, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                  &e->handle);
        if (r != TSS2_RC_SUCCESS) {
            e->handle = ESYS_TR_NONE;
            cache_forget(t, ESYS_TR_NONE, e->tpm);
            return tpm_fail(t, r, "opening the loaded key");
        }
    }
    *h = e->handle;
    return TK_OK;
}

/* After a command on a cached key failed in a way that may leave the handle stale. */
static void key_failed(tk_tpm *t, ESYS_TR h, TPM2_HANDLE th, TSS2_RC r)
{
    if (!t->esys)
        return;
    if (is_tpm_layer(r) && (tpm_code(r) == TPM2_RC_HANDLE || tpm_code(r) == TPM2_RC_REFERENCE_H0))
        cache_forget(t, h, th);
}

/* ------------------------------------------------------------------ SRK */

/* The standard storage template (TCG ECC NIST P-256, unique empty): the same key that
 * tpm2-openssl and openssl_tpm2_engine derive for parent 0x40000001. */
static const TPM2B_PUBLIC srk_template = {
    .publicArea = {
        .type = TPM2_ALG_ECC,
        .nameAlg = TPM2_ALG_SHA256,
        .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                            TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                            TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT,
        .parameters.eccDetail = {
            .symmetric = { .algorithm = TPM2_ALG_AES, .keyBits.aes = 128,
                           .mode.aes = TPM2_ALG_CFB },
            .scheme = { .scheme = TPM2_ALG_NULL },
            .curveID = TPM2_ECC_NIST_P256,
            .kdf = { .scheme = TPM2_ALG_NULL },
        },
    },
};

static tk_rc owner_auth_set(tk_tpm *t, bool *set)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    TSS2_RC r = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                   TPM2_CAP_TPM_PROPERTIES, TPM2_PT_PERMANENT, 1, &more, &cap);
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "reading the TPM's permanent attributes");
    *set = cap->data.tpmProperties.count &&
           (cap->data.tpmProperties.tpmProperty[0].value & TPMA_PERMANENT_OWNERAUTHSET);
    Esys_Free(cap);
    return TK_OK;
}

static tk_rc srk_create(tk_tpm *t, const tk_secret *owner_auth)
{
    TPM2B_SENSITIVE_CREATE sens = { .size = 0 };
    TPM2B_DATA outside = { .size = 0 };
    TPML_PCR_SELECTION pcrs = { .count = 0 };
    ESYS_TR primary = ESYS_TR_NONE, sess = ESYS_TR_NONE, persistent = ESYS_TR_NONE;
    bool has_owner_auth = false;
    TSS2_RC r;
    tk_rc rc;

    if ((rc = owner_auth_set(t, &has_owner_auth)) != TK_OK)
        return rc;
    if (has_owner_auth && !(owner_auth && owner_auth->len))
        return tk_fail(TK_ERR_PIN_REQUIRED,
                       "the TPM's owner hierarchy has a password: give it with "
                       "--owner-auth-file to create the SRK");
    if ((rc = set_auth(t, ESYS_TR_RH_OWNER, owner_auth)) != TK_OK)
        return rc;
    /* An HMAC session: the owner password is proven, never sent. */
    r = Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &session_sym, TPM2_ALG_SHA256,
                              &sess);
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "starting a session for the owner hierarchy");
    for (int i = 0;; i++) {
        r = Esys_CreatePrimary(t->esys, ESYS_TR_RH_OWNER, sess, ESYS_TR_NONE, ESYS_TR_NONE,
                               &sens, &srk_template, &outside, &pcrs, &primary, NULL, NULL,
                               NULL, NULL);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "creating the SRK (CreatePrimary under the owner hierarchy)");
        if (rc == TK_ERR_PIN_INCORRECT)
            rc = tk_fail(TK_ERR_PIN_INCORRECT, "the TPM refused the owner password "
                         "(--owner-auth-file); the TPM counts this failure");
        goto out;
    }
    r = Esys_EvictControl(t->esys, ESYS_TR_RH_OWNER, primary, sess, ESYS_TR_NONE, ESYS_TR_NONE,
                          TK_SRK_HANDLE, &persistent);
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "making the SRK persistent at 0x81000001 (EvictControl)");
        goto out;
    }
    Esys_TR_Close(t->esys, &persistent);
    tk_info("created the SRK at 0x81000001");
    rc = TK_OK;
out:
    if (t->esys) {
        if (primary != ESYS_TR_NONE)
            Esys_FlushContext(t->esys, primary);
        if (sess != ESYS_TR_NONE)
            Esys_FlushContext(t->esys, sess);
        Esys_TR_SetAuth(t->esys, ESYS_TR_RH_OWNER, &(TPM2B_AUTH){ .size = 0 });
    }
    return rc;
}

tk_rc tk_tpm_srk_ensure(tk_tpm *t, const tk_secret *owner_auth, bool *created)
{
    tk_rc rc;

    pthread_mutex_lock(&t->lock);
    *created = false;
    rc = srk_lookup(t);
    if (rc == TK_ERR_NOT_FOUND) {
        rc = srk_create(t, owner_auth);
        if (rc == TK_OK) {
            *created = true;
            rc = srk_lookup(t);
        }
    }
    if (rc == TK_OK)
        rc = srk_public(t);
    if (rc == TK_OK)
        rc = srk_check(&t->srk_pub);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

tk_rc tk_tpm_srk_public(tk_tpm *t, TPM2B_PUBLIC *pub)
{
    tk_rc rc;
    pthread_mutex_lock(&t->lock);
    rc = srk_public(t);
    if (rc == TK_OK)
        *pub = t->srk_pub;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* ------------------------------------------------------------------ capabilities */

tk_rc tk_tpm_supports(tk_tpm *t, tk_alg alg)
{
    TPMT_PUBLIC_PARMS parms = { 0 };
    TSS2_RC r;
    tk_rc rc;

    if (alg <= TK_ALG_NONE || alg > TK_ALG_ECC_P521)
        return tk_fail(TK_ERR_UNSUPPORTED, "unknown algorithm");
    pthread_mutex_lock(&t->lock);
    if (t->supported[alg]) {
        rc = t->supported[alg] > 0 ? TK_OK
                                   : tk_fail(TK_ERR_UNSUPPORTED, "this TPM does not support %s",
                                             tk_alg_name(alg));
        goto out;
    }
    if ((rc = connect_tpm(t)) != TK_OK)
        goto out;
    if (tk_alg_type(alg) == TK_KEY_RSA) {
        parms.type = TPM2_ALG_RSA;
        parms.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
        parms.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
        parms.parameters.rsaDetail.keyBits = (TPMI_RSA_KEY_BITS)tk_alg_bits(alg);
    } else {
        parms.type = TPM2_ALG_ECC;
        parms.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
        parms.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
        parms.parameters.eccDetail.curveID = tk_alg_curve(alg);
        parms.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    }
    for (int i = 0;; i++) {
        r = Esys_TestParms(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &parms);
        if (!should_retry(r, i))
            break;
    }
    if (r == TSS2_RC_SUCCESS) {
        t->supported[alg] = 1;
    } else if (is_tpm_layer(r)) {
        t->supported[alg] = -1;
        rc = tk_fail(TK_ERR_UNSUPPORTED, "this TPM does not support %s [%s]", tk_alg_name(alg),
                     Tss2_RC_Decode(r));
    } else {
        rc = tpm_fail(t, r, "asking the TPM which algorithms it supports");
    }
out:
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* ------------------------------------------------------------------ creating objects */

static tk_rc sensitive_create(const tk_secret *auth, const tk_secret *data,
                              TPM2B_SENSITIVE_CREATE *s)
{
    memset(s, 0, sizeof(*s));
    if (auth && auth->len) {
        if (auth->len > sizeof(s->sensitive.userAuth.buffer))
            return tk_fail(TK_ERR_INVALID, "auth value too long");
        s->sensitive.userAuth.size = (UINT16)auth->len;
        memcpy(s->sensitive.userAuth.buffer, auth->data, auth->len);
    }
    if (data && data->len) {
        if (data->len > sizeof(s->sensitive.data.buffer))
            return tk_fail(TK_ERR_INVALID, "sealed data too long");
        s->sensitive.data.size = (UINT16)data->len;
        memcpy(s->sensitive.data.buffer, data->data, data->len);
    }
    return TK_OK;
}

/* TPM2_Create under the SRK; the sensitive part travels encrypted. */
static tk_rc create_under_srk(tk_tpm *t, const TPM2B_PUBLIC *tmpl, const tk_secret *auth,
                              const tk_secret *data, tk_buf *pubb, tk_buf *privb)
{
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_DATA outside = { .size = 0 };
    TPML_PCR_SELECTION pcrs = { .count = 0 };
    TPM2B_PUBLIC *pub = NULL;
    TPM2B_PRIVATE *priv = NULL;
    ESYS_TR sess;
    TSS2_RC r;
    tk_rc rc;

    if ((rc = sensitive_create(auth, data, &sens)) != TK_OK)
        return rc;
    if ((rc = session_get(t, TPMA_SESSION_DECRYPT, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_Create(t->esys, t->srk, sess, ESYS_TR_NONE, ESYS_TR_NONE, &sens, tmpl, &outside,
                        &pcrs, &priv, &pub, NULL, NULL, NULL);
        /* Create needs a free object slot of its own. */
        if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_OBJECT_MEMORY && cache_evict_lru(t))
            continue;
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        session_reset(t);
        rc = tpm_fail(t, r, "creating the object in the TPM");
        goto out;
    }
    if ((rc = tk_public_marshal(pub, pubb)) == TK_OK)
        rc = tk_private_marshal(priv, privb);
out:
    OPENSSL_cleanse(&sens, sizeof(sens));
    Esys_Free(pub);
    Esys_Free(priv);
    return rc;
}

tk_rc tk_tpm_create_key(tk_tpm *t, tk_alg alg, const tk_secret *auth, tk_progress_fn progress,
                        void *progress_arg, tk_buf *pub, tk_buf *priv)
{
    return tk_tpm_create_key_opts(t, alg, NULL, auth, progress, progress_arg, pub, priv);
}

tk_rc tk_tpm_create_key_opts(tk_tpm *t, tk_alg alg, const tk_keygen_opts *opts,
                             const tk_secret *auth, tk_progress_fn progress,
                             void *progress_arg, tk_buf *pub, tk_buf *priv)
{
    TPM2B_PUBLIC tmpl;
    tk_rc rc;

    if ((rc = tk_template_for_opts(alg, opts, &tmpl)) != TK_OK)
        return rc;
    if (progress)
        progress(progress_arg);
    pthread_mutex_lock(&t->lock);
    rc = create_under_srk(t, &tmpl, auth, NULL, pub, priv);
    pthread_mutex_unlock(&t->lock);
    if (rc != TK_OK)
        tk_fail_ctx(rc, "generating a %s key", tk_alg_name(alg));
    return rc;
}

tk_rc tk_tpm_seal(tk_tpm *t, const tk_secret *data, const tk_secret *auth, tk_buf *pub,
                  tk_buf *priv)
{
    /* DA-protected (no noDA): wrong PINs are counted by the TPM. */
    TPM2B_PUBLIC tmpl = {
        .publicArea = {
            .type = TPM2_ALG_KEYEDHASH,
            .nameAlg = TPM2_ALG_SHA256,
            .objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                                TPMA_OBJECT_USERWITHAUTH,
            .parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL,
        },
    };
    tk_rc rc;

    pthread_mutex_lock(&t->lock);
    rc = create_under_srk(t, &tmpl, auth, data, pub, priv);
    pthread_mutex_unlock(&t->lock);
    if (rc != TK_OK)
        tk_fail_ctx(rc, "sealing the token secret");
    return rc;
}

tk_rc tk_tpm_import_pkey(tk_tpm *t, EVP_PKEY *pkey, const tk_secret *auth, tk_buf *pubb,
                         tk_buf *privb)
{
    TPM2B_PUBLIC pub;
    TPM2B_SENSITIVE sens;
    TPM2B_PRIVATE dup;
    TPM2B_ENCRYPTED_SECRET seed;
    TPM2B_DATA enckey = { .size = 0 };
    TPMT_SYM_DEF_OBJECT sym = { .algorithm = TPM2_ALG_NULL };
    TPM2B_PRIVATE *priv = NULL;
    TSS2_RC r;
    tk_rc rc;

    memset(&sens, 0, sizeof(sens));
    if ((rc = tk_pkey_to_tpm(pkey, auth, &pub, &sens)) != TK_OK)
        return rc;
    /* A duplicated object is neither fixedTPM nor fixedParent (TPM2_Import requires it). */
    pub.publicArea.objectAttributes &= ~(TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT);
    pthread_mutex_lock(&t->lock);
    if ((rc = srk_lookup(t)) != TK_OK || (rc = srk_public(t)) != TK_OK)
        goto out;
    rc = tk_duplicate_wrap(&t->srk_pub, &pub, &sens, &dup, &seed);
    OPENSSL_cleanse(&sens, sizeof(sens));
    if (rc != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_Import(t->esys, t->srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &enckey,
                        &pub, &dup, &seed, &sym, &priv);
        if (is_tpm_layer(r) && tpm_code(r) == TPM2_RC_OBJECT_MEMORY && cache_evict_lru(t))
            continue;
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "importing the key into the TPM (TPM2_Import)");
        goto out;
    }
    if ((rc = tk_public_marshal(&pub, pubb)) == TK_OK)
        rc = tk_private_marshal(priv, privb);
out:
    pthread_mutex_unlock(&t->lock);
    OPENSSL_cleanse(&sens, sizeof(sens));
    Esys_Free(priv);
    return rc;
}

/* ------------------------------------------------------------------ using objects */

/* Load an object for one command (not cached: seals and change-auth sources). */
static tk_rc load_transient(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, ESYS_TR *h)
{
    tk_rc rc = connect_tpm(t);
    if (rc != TK_OK)
        return rc;
    return load_blobs(t, pub, priv, h);
}

static tk_rc raw_unseal(tk_tpm *t, const tk_buf *pubb, const tk_buf *privb,
                        const tk_secret *auth, tk_secret *data, TSS2_RC *r);

tk_rc tk_tpm_unseal(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                    tk_secret *data)
{
    TPM2B_SENSITIVE_DATA *out = NULL;
    ESYS_TR h = ESYS_TR_NONE, sess;
    TSS2_RC r;
    tk_rc rc;

    pthread_mutex_lock(&t->lock);
    if ((rc = connect_tpm(t)) != TK_OK)
        goto out;
    if (!t->raw.off) {
        /* Through our own salted session (see raw_command), kept for PIN keys after. */
        rc = raw_unseal(t, pub, priv, auth, data, &r);
        if (rc != TK_ERR_UNSUPPORTED) {
            if (rc == TK_ERR_TPM && r != TSS2_RC_SUCCESS)
                rc = tpm_fail(t, r, "unsealing the token secret");
            goto out;
        }
        t->raw.off = true;   /* an SRK we cannot salt to: ESYS's sessions below */
        tk_clear_error();
    }
    if ((rc = load_transient(t, pub, priv, &h)) != TK_OK)
        goto out;
    if ((rc = set_auth(t, h, auth)) != TK_OK ||
        (rc = session_get(t, TPMA_SESSION_ENCRYPT, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_Unseal(t->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &out);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        session_reset(t);
        rc = tpm_fail(t, r, "unsealing the token secret");
        goto out;
    }
    rc = tk_secret_set(data, out->buffer, out->size);
out:
    if (out) {
        OPENSSL_cleanse(out, sizeof(*out));
        Esys_Free(out);
    }
    if (h != ESYS_TR_NONE && t->esys)
        Esys_FlushContext(t->esys, h);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

tk_rc tk_tpm_change_auth(tk_tpm *t, const tk_buf *pub, const tk_buf *priv,
                         const tk_secret *old_auth, const tk_secret *new_auth, tk_buf *new_priv)
{
    TPM2B_AUTH na = { .size = 0 };
    TPM2B_PRIVATE *out = NULL;
    ESYS_TR h = ESYS_TR_NONE, sess;
    TSS2_RC r;
    tk_rc rc;

    if (new_auth && new_auth->len) {
        if (new_auth->len > sizeof(na.buffer))
            return tk_fail(TK_ERR_INVALID, "new auth value too long");
        na.size = (UINT16)new_auth->len;
        memcpy(na.buffer, new_auth->data, new_auth->len);
    }
    pthread_mutex_lock(&t->lock);
    if ((rc = load_transient(t, pub, priv, &h)) != TK_OK)
        goto out;
    /* The new auth value is the first parameter: it travels encrypted. */
    if ((rc = set_auth(t, h, old_auth)) != TK_OK ||
        (rc = session_get(t, TPMA_SESSION_DECRYPT, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_ObjectChangeAuth(t->esys, h, t->srk, sess, ESYS_TR_NONE, ESYS_TR_NONE, &na,
                                  &out);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS) {
        session_reset(t);
        rc = tpm_fail(t, r, "changing the key's auth value");
        goto out;
    }
    rc = tk_private_marshal(out, new_priv);
out:
    OPENSSL_cleanse(&na, sizeof(na));
    Esys_Free(out);
    if (h != ESYS_TR_NONE && t->esys)
        Esys_FlushContext(t->esys, h);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* The session that authorizes use of a key: a password session for keys without auth
 * (nothing secret crosses), else the salted HMAC session. attrs asks for parameter
 * encryption when the command carries a secret. */
static tk_rc key_session(tk_tpm *t, const tk_secret *auth, TPMA_SESSION attrs, ESYS_TR *sess)
{
    if ((!auth || !auth->len) && !attrs) {
        *sess = ESYS_TR_PASSWORD;
        return TK_OK;
    }
    return session_get(t, attrs, sess);
}

/* Prepare a key for one command: loaded handle, auth set, session chosen. */
static tk_rc key_begin(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                       TPMA_SESSION attrs, ESYS_TR *h, ESYS_TR *sess)
{
    tk_rc rc = key_handle(t, pub, priv, h);
    if (rc == TK_OK)
        rc = set_auth(t, *h, auth);
    if (rc == TK_OK)
        rc = key_session(t, auth, attrs, sess);
    return rc;
}

static tk_rc key_end(tk_tpm *t, ESYS_TR h, ESYS_TR sess, TSS2_RC r, const char *what)
{
    if (r == TSS2_RC_SUCCESS)
        return TK_OK;
    key_failed(t, h, 0, r);
    if (sess != ESYS_TR_PASSWORD)
        session_reset(t);
    return tpm_fail(t, r, what);
}

/* ------------------------------------------------------------------ our own HMAC session
 *
 * Keys with an auth value (PIN keys) sign, and token secrets are unsealed at login,
 * through an HMAC session that this file runs itself on ESYS's SAPI context, instead of
 * through ESYS's session code: tss2-esys 3.2 builds a fresh OpenSSL library context for
 * every hash and HMAC it computes (about a dozen per command), which on OpenSSL 3.0
 * costs more CPU than the TPM takes to sign.  The protection is the same as ESYS's
 * salted session: the session is salted to the SRK (ECDH on its curve + KDFe "SECRET",
 * TPM 2.0 Part 1, C.6.1), so the session key is known only to us and the TPM; the auth
 * value never crosses the bus, only HMACs keyed with sessionKey || authValue, and every
 * response HMAC is checked.  TPM2_Sign sends nothing secret; TPM2_Unseal's answer comes
 * back AES-128-CFB encrypted under that session (response parameter encryption). */

#define AUTH_DIGEST 32 /* SHA-256 session */

static tk_rc raw_sha256(const uint8_t *const parts[], const size_t lens[], size_t n,
                        uint8_t out[AUTH_DIGEST])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestInit_ex(md, tk_md_for_alg(TPM2_ALG_SHA256), NULL);

    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(md, parts[i], lens[i]);
    ok = ok && EVP_DigestFinal_ex(md, out, NULL);
    EVP_MD_CTX_free(md);
    return ok ? TK_OK : tk_fail_ossl(TK_ERR_NOMEM, "hashing a session command");
}

/* sessionKey || authValue, trailing zero bytes of the auth value removed (as the TPM
 * does): the HMAC key of every command, and the key of parameter encryption. */
static size_t raw_session_value(const tk_tpm *t, const tk_secret *auth,
                                uint8_t key[AUTH_DIGEST + TK_SECRET_MAX])
{
    size_t alen = auth ? auth->len : 0;

    while (alen && !auth->data[alen - 1])
        alen--;
    memcpy(key, t->raw.key, AUTH_DIGEST);
    if (alen)
        memcpy(key + AUTH_DIGEST, auth->data, alen);
    return AUTH_DIGEST + alen;
}

/* HMAC-SHA256 keyed with the session value over a || nonce_newer || nonce_older || attrs. */
static tk_rc raw_hmac(const tk_tpm *t, const tk_secret *auth, const uint8_t phash[AUTH_DIGEST],
                      const TPM2B_NONCE *newer, const TPM2B_NONCE *older, uint8_t attrs,
                      uint8_t out[AUTH_DIGEST])
{
    uint8_t key[AUTH_DIGEST + TK_SECRET_MAX];
    size_t klen = raw_session_value(t, auth, key), n = 0;
    const uint8_t *parts[] = { phash, newer->buffer, older->buffer, &attrs };
    const size_t lens[] = { AUTH_DIGEST, newer->size, older->size, 1 };
    tk_rc rc = tk_hmac(TPM2_ALG_SHA256, key, klen, parts, lens, 4, out, AUTH_DIGEST, &n);

    OPENSSL_cleanse(key, sizeof(key));
    if (rc == TK_OK && n != AUTH_DIGEST)
        rc = tk_fail(TK_ERR_INVALID, "a session HMAC of %zu bytes", n);
    return rc;
}

/* Decrypt a response parameter the TPM encrypted under our session: AES-128-CFB with
 * key || iv = KDFa(SHA-256, sessionValue, "CFB", nonceTPM, nonceCaller, 256). */
static tk_rc raw_decrypt(const tk_tpm *t, const tk_secret *auth, const TPM2B_NONCE *tpm_nonce,
                         const TPM2B_NONCE *caller, uint8_t *buf, size_t len)
{
    uint8_t key[AUTH_DIGEST + TK_SECRET_MAX], kiv[32];
    size_t klen = raw_session_value(t, auth, key);
    EVP_CIPHER_CTX *c = NULL;
    int n = 0, fin = 0;
    tk_rc rc = tk_kdfa(TPM2_ALG_SHA256, key, klen, "CFB", tpm_nonce->buffer, tpm_nonce->size,
                       caller->buffer, caller->size, 256, kiv);

    if (rc == TK_OK &&
        (!(c = EVP_CIPHER_CTX_new()) ||
         !EVP_DecryptInit_ex(c, EVP_aes_128_cfb128(), NULL, kiv, kiv + 16) ||
         !EVP_DecryptUpdate(c, buf, &n, buf, (int)len) || !EVP_DecryptFinal_ex(c, buf + n, &fin) ||
         (size_t)(n + fin) != len))
        rc = tk_fail_ossl(TK_ERR_NOMEM, "decrypting the TPM's answer");
    EVP_CIPHER_CTX_free(c);
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(kiv, sizeof(kiv));
    return rc;
}

/* Forget our session; flush it from the TPM when polite (our process, link up). */
static void raw_drop(tk_tpm *t, bool polite)
{
    TSS2_SYS_CONTEXT *sys = NULL;

    if (polite && t->raw.handle && t->esys &&
        Esys_GetSysContext(t->esys, &sys) == TSS2_RC_SUCCESS)
        Tss2_Sys_FlushContext(sys, t->raw.handle);
    t->raw.handle = 0;
    OPENSSL_cleanse(t->raw.key, sizeof(t->raw.key));
}

/* The salt for our session: a secret shared with the SRK (tk_ecc_secret, label "SECRET",
 * TPM 2.0 Part 1, C.6.1).  Our session code is SHA-256 with P-256; another SRK is left to
 * ESYS's sessions (TK_ERR_UNSUPPORTED). */
static tk_rc raw_salt(tk_tpm *t, uint8_t salt[AUTH_DIGEST], TPM2B_ENCRYPTED_SECRET *enc)
{
    const TPMT_PUBLIC *p = &t->srk_pub.publicArea;

    if (p->type != TPM2_ALG_ECC || p->parameters.eccDetail.curveID != TPM2_ECC_NIST_P256 ||
        p->nameAlg != TPM2_ALG_SHA256)
        return tk_fail(TK_ERR_UNSUPPORTED, "session salt: SRK not P-256 with SHA-256");
    return tk_ecc_secret(&t->srk_pub, "SECRET", salt, enc);
}

/* Start the salted HMAC session (once per connection; AES-128-CFB so that it can carry
 * encrypted parameters). *r: the TPM's answer. */
static tk_rc raw_start(tk_tpm *t, TSS2_SYS_CONTEXT *sys, TSS2_RC *r)
{
    TPM2B_NONCE caller = { .size = AUTH_DIGEST };
    TPM2B_ENCRYPTED_SECRET enc = { .size = 0 };
    TPMT_SYM_DEF sym = session_sym;
    uint8_t salt[AUTH_DIGEST];
    tk_rc rc;

    *r = TSS2_RC_SUCCESS;
    if ((rc = srk_public(t)) != TK_OK || (rc = raw_salt(t, salt, &enc)) != TK_OK)
        return rc;
    if (RAND_bytes(caller.buffer, caller.size) != 1) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "a session nonce");
        goto out;
    }
    for (int i = 0;; i++) {
        *r = Tss2_Sys_StartAuthSession(sys, TK_SRK_HANDLE, TPM2_RH_NULL, NULL, &caller, &enc,
                                       TPM2_SE_HMAC, &sym, TPM2_ALG_SHA256, &t->raw.handle,
                                       &t->raw.nonce_tpm, NULL);
        if (!should_retry(*r, i))
            break;
    }
    if (*r != TSS2_RC_SUCCESS) {
        t->raw.handle = 0;
        rc = TK_ERR_TPM;
        goto out;
    }
    /* sessionKey = KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller, 256) (unbound) */
    rc = tk_kdfa(TPM2_ALG_SHA256, salt, sizeof(salt), "ATH", t->raw.nonce_tpm.buffer,
                 t->raw.nonce_tpm.size, caller.buffer, caller.size, 8 * AUTH_DIGEST, t->raw.key);
    if (rc != TK_OK)
        raw_drop(t, true);
out:
    OPENSSL_cleanse(salt, sizeof(salt));
    return rc;
}

/* Prepares the command in the SAPI context (again on every retry). */
typedef TSS2_RC (*raw_prepare_fn)(TSS2_SYS_CONTEXT *sys, const void *arg);

/* One command on one object (name), authorized through our session: cpHash over
 * code || name || parameters, our HMAC as the command's authorization; the response must
 * carry the session's HMAC over rpHash (only the TPM that holds the object's auth value
 * and our session key can make it).  *caller: the nonce we sent (for decrypting the
 * answer).  TK_ERR_TPM with *r set: the TPM (or the link) failed, the caller maps *r;
 * other codes: local failures (message set).  On any failure the session is dropped
 * (out of step: the next command starts afresh). */
static tk_rc raw_command(tk_tpm *t, TSS2_SYS_CONTEXT *sys, TPM2_CC code, const TPM2B_NAME *name,
                         const tk_secret *auth, uint8_t attrs, raw_prepare_fn prepare,
                         const void *arg, TPM2B_NONCE *caller, TSS2_RC *r)
{
    static const uint8_t ok_rc[4] = { 0, 0, 0, 0 };
    const uint8_t cc[4] = { (uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
                            (uint8_t)code };
    TSS2L_SYS_AUTH_COMMAND ca = { .count = 1 };
    TSS2L_SYS_AUTH_RESPONSE ra = { .count = 0 };
    const uint8_t *buf;
    size_t blen;
    uint8_t ph[AUTH_DIGEST], want[AUTH_DIGEST];
    tk_rc rc = TK_OK;

    *r = TSS2_RC_SUCCESS;
    if (!t->raw.handle && (rc = raw_start(t, sys, r)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        TPMS_AUTH_COMMAND *a = &ca.auths[0];
        a->sessionHandle = t->raw.handle;
        a->nonce.size = AUTH_DIGEST;
        a->sessionAttributes = attrs;
        a->hmac.size = AUTH_DIGEST;
        if ((*r = prepare(sys, arg)) != TSS2_RC_SUCCESS ||
            (*r = Tss2_Sys_GetCpBuffer(sys, &blen, &buf)) != TSS2_RC_SUCCESS) {
            rc = TK_ERR_TPM;
            goto out;
        }
        if (RAND_bytes(a->nonce.buffer, a->nonce.size) != 1) {
            rc = tk_fail_ossl(TK_ERR_NOMEM, "a session nonce");
            goto out;
        }
        const uint8_t *cp[] = { cc, name->name, buf };
        const size_t cl[] = { sizeof(cc), name->size, blen };
        if ((rc = raw_sha256(cp, cl, 3, ph)) != TK_OK ||
            (rc = raw_hmac(t, auth, ph, &a->nonce, &t->raw.nonce_tpm, attrs, a->hmac.buffer)))
            goto out;
        if ((*r = Tss2_Sys_SetCmdAuths(sys, &ca)) != TSS2_RC_SUCCESS) {
            rc = TK_ERR_TPM;
            goto out;
        }
        *r = Tss2_Sys_Execute(sys);
        if (!should_retry(*r, i))
            break;
    }
    if (*r != TSS2_RC_SUCCESS) {
        rc = TK_ERR_TPM;
        goto out;
    }
    if ((*r = Tss2_Sys_GetRspAuths(sys, &ra)) != TSS2_RC_SUCCESS ||
        (*r = Tss2_Sys_GetRpBuffer(sys, &blen, &buf)) != TSS2_RC_SUCCESS) {
        rc = TK_ERR_TPM;
        goto out;
    }
    const uint8_t *rp[] = { ok_rc, cc, buf };
    const size_t rl[] = { sizeof(ok_rc), sizeof(cc), blen };
    if ((rc = raw_sha256(rp, rl, 3, ph)) != TK_OK ||
        (rc = raw_hmac(t, auth, ph, &ra.auths[0].nonce, &ca.auths[0].nonce,
                       ra.auths[0].sessionAttributes, want)) != TK_OK)
        goto out;
    if (ra.count != 1 || ra.auths[0].hmac.size != AUTH_DIGEST ||
        CRYPTO_memcmp(want, ra.auths[0].hmac.buffer, AUTH_DIGEST)) {
        rc = tk_fail(TK_ERR_TPM, "the TPM's answer does not carry the session's HMAC "
                     "(tampered with, or not from this TPM)");
        goto out;
    }
    t->raw.nonce_tpm = ra.auths[0].nonce;
    *caller = ca.auths[0].nonce;
out:
    if (rc != TK_OK)
        raw_drop(t, !is_link_error(*r));
    OPENSSL_cleanse(&ca, sizeof(ca));
    return rc;
}

struct sign_args {
    TPM2_HANDLE key;
    const TPM2B_DIGEST *d;
    const TPMT_SIG_SCHEME *ss;
    const TPMT_TK_HASHCHECK *check;
};

static TSS2_RC prepare_sign(TSS2_SYS_CONTEXT *sys, const void *arg)
{
    const struct sign_args *s = arg;
    return Tss2_Sys_Sign_Prepare(sys, s->key, s->d, s->ss, s->check);
}

/* TPM2_Sign authorized through our session (errors as raw_command). */
static tk_rc raw_sign(tk_tpm *t, TPM2_HANDLE key, const TPM2B_PUBLIC *pub, const tk_secret *auth,
                      const TPM2B_DIGEST *d,
                      const TPMT_SIG_SCHEME *ss, const TPMT_TK_HASHCHECK *check,
                      TPMT_SIGNATURE *sig, TSS2_RC *r)
{
    struct sign_args a = { .key = key, .d = d, .ss = ss, .check = check };
    TSS2_SYS_CONTEXT *sys = NULL;
    TPM2B_NAME name;
    TPM2B_NONCE caller;
    tk_rc rc;

    *r = TSS2_RC_SUCCESS;
    /* The key's name from its public area (Esys_TR_GetName would hash it through a
     * fresh OpenSSL library context on every call). */
    if ((rc = tk_public_name(pub, &name)) != TK_OK)
        return rc;
    if ((*r = Esys_GetSysContext(t->esys, &sys)) != TSS2_RC_SUCCESS)
        return TK_ERR_TPM;
    rc = raw_command(t, sys, TPM2_CC_Sign, &name, auth, TPMA_SESSION_CONTINUESESSION,
                     prepare_sign, &a, &caller, r);
    if (rc == TK_OK && (*r = Tss2_Sys_Sign_Complete(sys, sig)) != TSS2_RC_SUCCESS)
        rc = TK_ERR_TPM;
    return rc;
}

/* TPM2_Sign with a key without auth: a password session with the empty password, straight
 * through SAPI (nothing secret crosses; no session crypto).  Errors as raw_command. */
static tk_rc sapi_sign(tk_tpm *t, TPM2_HANDLE key, const TPM2B_DIGEST *d,
                       const TPMT_SIG_SCHEME *ss, const TPMT_TK_HASHCHECK *check,
                       TPMT_SIGNATURE *sig, TSS2_RC *r)
{
    TSS2L_SYS_AUTH_COMMAND pw = { .count = 1, .auths = { { .sessionHandle = TPM2_RH_PW } } };
    TSS2L_SYS_AUTH_RESPONSE ra = { .count = 0 };
    TSS2_SYS_CONTEXT *sys = NULL;

    if ((*r = Esys_GetSysContext(t->esys, &sys)) != TSS2_RC_SUCCESS)
        return TK_ERR_TPM;
    for (int i = 0;; i++) {
        *r = Tss2_Sys_Sign(sys, key, &pw, d, ss, check, sig, &ra);
        if (!should_retry(*r, i))
            break;
    }
    return *r == TSS2_RC_SUCCESS ? TK_OK : TK_ERR_TPM;
}

static TSS2_RC prepare_unseal(TSS2_SYS_CONTEXT *sys, const void *arg)
{
    return Tss2_Sys_Unseal_Prepare(sys, *(const TPM2_HANDLE *)arg);
}

/* Unseal through our session, the answer encrypted.  TK_ERR_UNSUPPORTED: the SRK
 * cannot salt our session (the caller uses ESYS's); other failures as raw_command. */
static tk_rc raw_unseal(tk_tpm *t, const tk_buf *pubb, const tk_buf *privb,
                        const tk_secret *auth, tk_secret *data, TSS2_RC *r)
{
    TSS2_SYS_CONTEXT *sys = NULL;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TPM2B_SENSITIVE_DATA out = { .size = 0 };
    TPM2B_NAME name;
    TPM2B_NONCE caller;
    TPM2_HANDLE h = 0;
    tk_rc rc;

    *r = TSS2_RC_SUCCESS;
    if ((rc = tk_public_unmarshal(pubb, &pub)) != TK_OK ||
        (rc = tk_private_unmarshal(privb, &priv)) != TK_OK ||
        (rc = tk_public_name(&pub, &name)) != TK_OK)
        return rc;
    if ((*r = Esys_GetSysContext(t->esys, &sys)) != TSS2_RC_SUCCESS)
        return TK_ERR_TPM;
    /* Salt first: an SRK we cannot salt to must not cost a Load. */
    if (!t->raw.handle && (rc = raw_start(t, sys, r)) != TK_OK)
        return rc;
    if ((rc = sapi_load(t, &pub, &priv, &h, r)) != TK_OK)
        return rc;
    rc = raw_command(t, sys, TPM2_CC_Unseal, &name, auth,
                     TPMA_SESSION_CONTINUESESSION | TPMA_SESSION_ENCRYPT, prepare_unseal, &h,
                     &caller, r);
    if (rc == TK_OK && (*r = Tss2_Sys_Unseal_Complete(sys, &out)) != TSS2_RC_SUCCESS)
        rc = TK_ERR_TPM;
    if (rc == TK_OK &&
        (rc = raw_decrypt(t, auth, &t->raw.nonce_tpm, &caller, out.buffer, out.size)) == TK_OK)
        rc = tk_secret_set(data, out.buffer, out.size);
    OPENSSL_cleanse(&out, sizeof(out));
    if (!is_link_error(*r))
        Tss2_Sys_FlushContext(sys, h);
    return rc;
}

static size_t digest_len(TPM2_ALG_ID hash)
{
    switch (hash) {
    case TPM2_ALG_SHA1: return 20;
    case TPM2_ALG_SHA256: return 32;
    case TPM2_ALG_SHA384: return 48;
    case TPM2_ALG_SHA512: return 64;
    }
    return 0;
}

tk_rc tk_tpm_sign(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                  tk_sigscheme scheme, TPM2_ALG_ID hash, const uint8_t *digest, size_t dlen,
                  tk_buf *sig)
{
    TPM2B_DIGEST d = { .size = 0 };
    TPMT_SIG_SCHEME ss = { .scheme = TPM2_ALG_NULL };
    TPMT_TK_HASHCHECK check = { .tag = TPM2_ST_HASHCHECK, .hierarchy = TPM2_RH_NULL };
    TPMT_SIGNATURE *out = NULL;
    TPM2B_PUBLIC p;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_PASSWORD;
    TSS2_RC r;
    tk_rc rc;
    int coord = 0;

    if (!digest_len(hash) || dlen != digest_len(hash))
        return tk_fail(TK_ERR_INVALID, "digest of %zu bytes does not match the hash algorithm",
                       dlen);
    switch (scheme) {
    case TK_SIG_RSASSA: ss.scheme = TPM2_ALG_RSASSA; break;
    case TK_SIG_RSAPSS: ss.scheme = TPM2_ALG_RSAPSS; break;
    case TK_SIG_ECDSA:
    case TK_SIG_ECDSA_P1363: ss.scheme = TPM2_ALG_ECDSA; break;
    default: return tk_fail(TK_ERR_INVALID, "unknown signature scheme %d", (int)scheme);
    }
    if ((rc = tk_public_unmarshal(pub, &p)) != TK_OK)
        return rc;
    if ((p.publicArea.type == TPM2_ALG_ECC) != (ss.scheme == TPM2_ALG_ECDSA))
        return tk_fail(TK_ERR_INVALID, "signature scheme does not match the key type");
    if (p.publicArea.type == TPM2_ALG_ECC)
        coord = (tk_alg_bits(tk_alg_from_public(&p)) + 7) / 8;
    ss.details.any.hashAlg = hash;
    d.size = (UINT16)dlen;
    memcpy(d.buffer, digest, dlen);

    pthread_mutex_lock(&t->lock);
    bool with_auth = auth && auth->len;
    if (!with_auth || !t->raw.off) {
        /* Straight through SAPI: a password session for keys without auth, our own salted
         * HMAC session for keys with one (see raw_sign). */
        TPMT_SIGNATURE rs;
        TPM2_HANDLE th = 0;
        if ((rc = key_tpm_handle(t, pub, priv, &th)) != TK_OK)
            goto out;
        rc = with_auth ? raw_sign(t, th, &p, auth, &d, &ss, &check, &rs, &r)
                       : sapi_sign(t, th, &d, &ss, &check, &rs, &r);
        if (rc == TK_ERR_UNSUPPORTED && with_auth) {
            t->raw.off = true;   /* an SRK we cannot salt to: ESYS's sessions below */
            tk_clear_error();
        } else {
            if (rc == TK_ERR_TPM && r != TSS2_RC_SUCCESS) {
                key_failed(t, ESYS_TR_NONE, th, r);
                rc = tpm_fail(t, r, "signing in the TPM");
            }
            if (rc == TK_OK)
                rc = tk_sig_to_bytes(&rs, coord, scheme != TK_SIG_ECDSA_P1363, sig);
            goto out;
        }
    }
    if ((rc = key_begin(t, pub, priv, auth, 0, &h, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_Sign(t->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &d, &ss, &check, &out);
        if (!should_retry(r, i))
            break;
    }
    if ((rc = key_end(t, h, sess, r, "signing in the TPM")) != TK_OK)
        goto out;
    rc = tk_sig_to_bytes(out, coord, scheme != TK_SIG_ECDSA_P1363, sig);
out:
    pthread_mutex_unlock(&t->lock);
    Esys_Free(out);
    return rc;
}

static tk_rc rsa_decrypt(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                         const TPMT_RSA_DECRYPT *scheme, const TPM2B_DATA *label,
                         TPMA_SESSION attrs, const uint8_t *in, size_t inlen, tk_buf *outb)
{
    TPM2B_PUBLIC_KEY_RSA c = { .size = 0 };
    TPM2B_PUBLIC_KEY_RSA *m = NULL;
    TPM2B_PUBLIC p;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_PASSWORD;
    TSS2_RC r;
    tk_rc rc;
    size_t modlen;

    if ((rc = tk_public_unmarshal(pub, &p)) != TK_OK)
        return rc;
    if (p.publicArea.type != TPM2_ALG_RSA)
        return tk_fail(TK_ERR_INVALID, "not an RSA key");
    modlen = p.publicArea.unique.rsa.size;
    if (inlen != modlen || inlen > sizeof(c.buffer))
        return tk_fail(TK_ERR_INVALID, "input of %zu bytes: expected %zu (the modulus length)",
                       inlen, modlen);
    c.size = (UINT16)inlen;
    memcpy(c.buffer, in, inlen);

    pthread_mutex_lock(&t->lock);
    if ((rc = key_begin(t, pub, priv, auth, attrs, &h, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_RSA_Decrypt(t->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &c, scheme, label, &m);
        if (!should_retry(r, i))
            break;
    }
    if ((rc = key_end(t, h, sess, r, "RSA decryption in the TPM")) != TK_OK)
        goto out;
    if (scheme->scheme == TPM2_ALG_NULL && m->size < modlen) {
        /* Raw RSA: the TPM strips leading zeros; give back a modulus-sized block. */
        uint8_t *buf = calloc(1, modlen);
        if (!buf) {
            rc = tk_fail(TK_ERR_NOMEM, "out of memory");
            goto out;
        }
        memcpy(buf + modlen - m->size, m->buffer, m->size);
        rc = tk_buf_set(outb, buf, modlen);
        OPENSSL_clear_free(buf, modlen);
    } else {
        rc = tk_buf_set(outb, m->buffer, m->size);
    }
out:
    pthread_mutex_unlock(&t->lock);
    if (m) {
        OPENSSL_cleanse(m, sizeof(*m));
        Esys_Free(m);
    }
    return rc;
}

tk_rc tk_tpm_rsa_raw(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                     const uint8_t *in, size_t inlen, tk_buf *out)
{
    TPMT_RSA_DECRYPT scheme = { .scheme = TPM2_ALG_NULL };
    TPM2B_DATA label = { .size = 0 };
    /* A signature is public: no response encryption needed. */
    return rsa_decrypt(t, pub, priv, auth, &scheme, &label, 0, in, inlen, out);
}

tk_rc tk_tpm_rsa_decrypt(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                         TPM2_ALG_ID scheme_alg, TPM2_ALG_ID hash, const uint8_t *label,
                         size_t labellen, const uint8_t *in, size_t inlen, tk_buf *out)
{
    TPMT_RSA_DECRYPT scheme = { .scheme = scheme_alg };
    TPM2B_DATA l = { .size = 0 };

    if (scheme_alg != TPM2_ALG_OAEP && scheme_alg != TPM2_ALG_RSAES &&
        scheme_alg != TPM2_ALG_NULL)
        return tk_fail(TK_ERR_INVALID, "unknown RSA decryption scheme");
    if (scheme_alg == TPM2_ALG_OAEP) {
        if (!digest_len(hash))
            return tk_fail(TK_ERR_UNSUPPORTED, "unsupported OAEP hash");
        scheme.details.oaep.hashAlg = hash;
    }
    if (labellen) {
        /* The TPM treats the label as a C string and appends a NUL when missing, so only
         * labels that end in NUL (and hold no other) can match what the sender used. */
        if (scheme_alg != TPM2_ALG_OAEP || label[labellen - 1] != 0 ||
            memchr(label, 0, labellen - 1) || labellen > sizeof(l.buffer))
            return tk_fail(TK_ERR_UNSUPPORTED,
                           "the TPM only takes OAEP labels that are NUL-terminated strings");
        l.size = (UINT16)labellen;
        memcpy(l.buffer, label, labellen);
    }
    return rsa_decrypt(t, pub, priv, auth, &scheme, &l, TPMA_SESSION_ENCRYPT, in, inlen, out);
}

tk_rc tk_tpm_ecdh(tk_tpm *t, const tk_buf *pub, const tk_buf *priv, const tk_secret *auth,
                  const uint8_t *peer, size_t peerlen, tk_buf *outb)
{
    TPM2B_ECC_POINT in = { .size = 0 };
    TPM2B_ECC_POINT *z = NULL;
    TPM2B_PUBLIC p;
    ESYS_TR h = ESYS_TR_NONE, sess = ESYS_TR_PASSWORD;
    TSS2_RC r;
    tk_rc rc;
    size_t coord;

    if ((rc = tk_public_unmarshal(pub, &p)) != TK_OK)
        return rc;
    if (p.publicArea.type != TPM2_ALG_ECC)
        return tk_fail(TK_ERR_INVALID, "not an EC key");
    coord = (size_t)(tk_alg_bits(tk_alg_from_public(&p)) + 7) / 8;
    if (peerlen != 1 + 2 * coord || peer[0] != 0x04)
        return tk_fail(TK_ERR_INVALID,
                       "peer public key must be an uncompressed point on the key's curve");
    in.point.x.size = in.point.y.size = (UINT16)coord;
    memcpy(in.point.x.buffer, peer + 1, coord);
    memcpy(in.point.y.buffer, peer + 1 + coord, coord);

    pthread_mutex_lock(&t->lock);
    if ((rc = key_begin(t, pub, priv, auth, TPMA_SESSION_ENCRYPT, &h, &sess)) != TK_OK)
        goto out;
    for (int i = 0;; i++) {
        r = Esys_ECDH_ZGen(t->esys, h, sess, ESYS_TR_NONE, ESYS_TR_NONE, &in, &z);
        if (!should_retry(r, i))
            break;
    }
    if ((rc = key_end(t, h, sess, r, "ECDH in the TPM")) != TK_OK)
        goto out;
    {
        uint8_t x[TPM2_MAX_ECC_KEY_BYTES] = { 0 };
        if (z->point.x.size > coord) {
            rc = tk_fail(TK_ERR_TPM, "the TPM returned a malformed ECDH point");
            goto out;
        }
        memcpy(x + coord - z->point.x.size, z->point.x.buffer, z->point.x.size);
        rc = tk_buf_set(outb, x, coord);
        OPENSSL_cleanse(x, sizeof(x));
    }
out:
    pthread_mutex_unlock(&t->lock);
    if (z) {
        OPENSSL_cleanse(z, sizeof(*z));
        Esys_Free(z);
    }
    return rc;
}

tk_rc tk_tpm_random(tk_tpm *t, uint8_t *out, size_t len)
{
    TPM2B_DIGEST *rnd = NULL;
    ESYS_TR sess;
    TSS2_RC r;
    tk_rc rc = TK_OK;

    pthread_mutex_lock(&t->lock);
    while (len && rc == TK_OK) {
        UINT16 n = len > 32 ? 32 : (UINT16)len;
        if ((rc = session_get(t, TPMA_SESSION_ENCRYPT, &sess)) != TK_OK)
            break;
        for (int i = 0;; i++) {
            r = Esys_GetRandom(t->esys, sess, ESYS_TR_NONE, ESYS_TR_NONE, n, &rnd);
            if (!should_retry(r, i))
                break;
        }
        if (r != TSS2_RC_SUCCESS) {
            session_reset(t);
            rc = tpm_fail(t, r, "getting random bytes from the TPM");
            break;
        }
        if (rnd->size == 0 || rnd->size > n) {
            rc = tk_fail(TK_ERR_TPM, "the TPM returned %u random bytes", rnd->size);
        } else {
            memcpy(out, rnd->buffer, rnd->size);
            out += rnd->size;
            len -= rnd->size;
        }
        OPENSSL_cleanse(rnd, sizeof(*rnd));
        Esys_Free(rnd);
        rnd = NULL;
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* ------------------------------------------------------------------ information */

static tk_rc get_props(tk_tpm *t, TPM2_PT first, UINT32 count, TPMS_CAPABILITY_DATA **cap)
{
    TPMI_YES_NO more;
    TSS2_RC r;
    for (int i = 0;; i++) {
        r = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               TPM2_CAP_TPM_PROPERTIES, first, count, &more, cap);
        if (!should_retry(r, i))
            break;
    }
    if (r != TSS2_RC_SUCCESS)
        return tpm_fail(t, r, "reading TPM properties");
    return TK_OK;
}

static void put_be32_chars(char *dst, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        char c = (char)((v >> (24 - 8 * i)) & 0xff);
        dst[i] = (c >= 0x20 && c < 0x7f) ? c : ' ';
    }
}

tk_rc tk_tpm_get_info(tk_tpm *t, tk_tpm_info *info)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    tk_rc rc;

    memset(info, 0, sizeof(*info));
    pthread_mutex_lock(&t->lock);
    if ((rc = connect_tpm(t)) != TK_OK || (rc = get_props(t, TPM2_PT_FIXED, 64, &cap)) != TK_OK)
        goto out;
    for (UINT32 i = 0; i < cap->data.tpmProperties.count; i++) {
        TPMS_TAGGED_PROPERTY *pp = &cap->data.tpmProperties.tpmProperty[i];
        switch (pp->property) {
        case TPM2_PT_MANUFACTURER: put_be32_chars(info->manufacturer, pp->value); break;
        case TPM2_PT_VENDOR_STRING_1: put_be32_chars(info->vendor, pp->value); break;
        case TPM2_PT_VENDOR_STRING_2: put_be32_chars(info->vendor + 4, pp->value); break;
        case TPM2_PT_VENDOR_STRING_3: put_be32_chars(info->vendor + 8, pp->value); break;
        case TPM2_PT_VENDOR_STRING_4: put_be32_chars(info->vendor + 12, pp->value); break;
        case TPM2_PT_FIRMWARE_VERSION_1:
            info->fw_major = pp->value >> 16;
            info->fw_minor = pp->value & 0xffff;
            break;
        case TPM2_PT_LEVEL: info->spec_level = pp->value; break;
        case TPM2_PT_REVISION: info->spec_revision = pp->value; break;
        case TPM2_PT_HR_TRANSIENT_MIN: info->transient_slots = pp->value; break;
        }
    }
    Esys_Free(cap);
    cap = NULL;
    if ((rc = get_props(t, TPM2_PT_VAR, 32, &cap)) != TK_OK)
        goto out;
    for (UINT32 i = 0; i < cap->data.tpmProperties.count; i++) {
        TPMS_TAGGED_PROPERTY *pp = &cap->data.tpmProperties.tpmProperty[i];
        switch (pp->property) {
        case TPM2_PT_PERMANENT:
            info->owner_auth_set = pp->value & TPMA_PERMANENT_OWNERAUTHSET;
            info->in_lockout = pp->value & TPMA_PERMANENT_INLOCKOUT;
            break;
        case TPM2_PT_LOCKOUT_COUNTER: info->lockout_counter = pp->value; break;
        case TPM2_PT_MAX_AUTH_FAIL: info->max_tries = pp->value; break;
        case TPM2_PT_LOCKOUT_INTERVAL: info->recovery_time = pp->value; break;
        case TPM2_PT_LOCKOUT_RECOVERY: info->lockout_recovery = pp->value; break;
        }
    }
    /* Trim the vendor string. */
    for (int i = 15; i >= 0 && (info->vendor[i] == ' ' || !info->vendor[i]); i--)
        info->vendor[i] = '\0';
    for (int i = 3; i >= 0 && (info->manufacturer[i] == ' ' || !info->manufacturer[i]); i--)
        info->manufacturer[i] = '\0';
out:
    Esys_Free(cap);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

static const char *hash_name(TPMI_ALG_HASH h)
{
    switch (h) {
    case TPM2_ALG_SHA1: return "sha1";
    case TPM2_ALG_SHA256: return "sha256";
    case TPM2_ALG_SHA384: return "sha384";
    case TPM2_ALG_SHA512: return "sha512";
    case TPM2_ALG_SM3_256: return "sm3_256";
    }
    return "unknown";
}

tk_rc tk_tpm_pcr_summary(tk_tpm *t, char **text)
{
    TPMS_CAPABILITY_DATA *cap = NULL;
    TPMI_YES_NO more;
    char buf[1024] = "";
    size_t used = 0;
    TSS2_RC r;
    tk_rc rc;

    pthread_mutex_lock(&t->lock);
    if ((rc = connect_tpm(t)) != TK_OK)
        goto out;
    r = Esys_GetCapability(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_PCRS, 0, 1,
                           &more, &cap);
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "reading the PCR banks");
        goto out;
    }
    for (UINT32 b = 0; b < cap->data.assignedPCR.count; b++) {
        TPMS_PCR_SELECTION *bank = &cap->data.assignedPCR.pcrSelections[b];
        TPML_PCR_SELECTION sel = { .count = 1 };
        TPML_DIGEST *values = NULL;
        bool any = false, zero = true, ones = true;

        for (int k = 0; k < bank->sizeofSelect; k++)
            any |= bank->pcrSelect[k] != 0;
        if (!any)
            continue;
        sel.pcrSelections[0].hash = bank->hash;
        sel.pcrSelections[0].sizeofSelect = 3;
        sel.pcrSelections[0].pcrSelect[0] = 0xff; /* PCR 0-7 */
        r = Esys_PCR_Read(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &sel, NULL, NULL,
                          &values);
        if (r != TSS2_RC_SUCCESS) {
            rc = tpm_fail(t, r, "reading PCRs");
            goto out;
        }
        for (UINT32 i = 0; i < values->count; i++)
            for (UINT16 k = 0; k < values->digests[i].size; k++) {
                zero &= values->digests[i].buffer[k] == 0;
                ones &= values->digests[i].buffer[k] == 0xff;
            }
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s: %s", used ? "; " : "",
                                 hash_name(bank->hash),
                                 !values->count ? "no values"
                                 : zero         ? "PCR 0-7 all zero"
                                 : ones         ? "PCR 0-7 all 0xff"
                                                : "PCR 0-7 measured");
        Esys_Free(values);
        if (used >= sizeof(buf))
            break;
    }
    *text = strdup(used ? buf : "no active PCR banks");
    if (!*text)
        rc = tk_fail(TK_ERR_NOMEM, "out of memory");
out:
    Esys_Free(cap);
    pthread_mutex_unlock(&t->lock);
    return rc;
}

tk_rc tk_tpm_da_params(tk_tpm *t, const tk_secret *lockout_auth, uint32_t max_tries,
                       uint32_t recovery_time, uint32_t lockout_recovery)
{
    ESYS_TR sess = ESYS_TR_NONE;
    TSS2_RC r;
    tk_rc rc;

    pthread_mutex_lock(&t->lock);
    if ((rc = connect_tpm(t)) != TK_OK || (rc = set_auth(t, ESYS_TR_RH_LOCKOUT, lockout_auth)))
        goto out;
    r = Esys_StartAuthSession(t->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &session_sym, TPM2_ALG_SHA256,
                              &sess);
    if (r != TSS2_RC_SUCCESS) {
        rc = tpm_fail(t, r, "starting a session for the lockout hierarchy");
        goto out;
    }
    r = Esys_DictionaryAttackParameters(t->esys, ESYS_TR_RH_LOCKOUT, sess, ESYS_TR_NONE,
                                        ESYS_TR_NONE, max_tries, recovery_time, lockout_recovery);
    if (r != TSS2_RC_SUCCESS)
        rc = tpm_fail(t, r, "setting dictionary-attack parameters");
out:
    if (t->esys && sess != ESYS_TR_NONE)
        Esys_FlushContext(t->esys, sess);
    pthread_mutex_unlock(&t->lock);
    return rc;
}
