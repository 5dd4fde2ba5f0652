/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The keystore: the store and the TPM together, as the doors and the tool use them.
 *
 * PINs.  A token has a random 32-byte secret.  Each PIN (user, SO) seals a copy of
 * it in a TPM keyedhash object whose authValue is the PIN; those seal objects are
 * DA-protected, so every wrong PIN is counted by the TPM's dictionary-attack logic.
 * A key's authValue is HMAC-SHA256(token secret, "tpmkeys key auth" || salt), 256
 * random-looking bits: keys are noDA (their auth cannot be guessed), so a TPM in
 * lockout still serves keys whose token is logged in, and changing a PIN re-seals
 * one object instead of re-wrapping every key.
 *
 * Per-token limit.  The TPM's lockout counter is shared by the whole TPM.  To keep
 * one token's wrong PINs from locking every other token, tpmkeys also counts wrong
 * PINs per token and refuses a token's login after TK_TOKEN_MAX_TRIES in a row, before
 * the TPM-wide limit is reached.  Someone who bypasses tpmkeys and guesses directly
 * against the TPM still meets the TPM's own limit.
 */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "internal_crypto.h"
#include "tpmkeys.h"

#define TK_TOKEN_MAX_TRIES 5
#define TOKEN_SECRET_LEN 32
#define MAX_LOGINS 16

struct login {
    int64_t token_id;
    tk_secret secret;
};

struct tk_ks {
    pthread_mutex_t lock;
    tk_store *st;
    tk_tpm *tpm;
    struct login logins[MAX_LOGINS];
    size_t nlogins;
};

tk_rc tk_ks_open(const tk_ks_config *cfg, tk_ks **out)
{
    tk_ks_config none = { 0 };
    tk_ks *ks;
    tk_rc rc;

    if (!cfg)
        cfg = &none;
    ks = calloc(1, sizeof(*ks));
    if (!ks)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&ks->lock, NULL);
    rc = tk_store_open(cfg->store_path, cfg->store_flags, &ks->st);
    if (rc == TK_OK)
        rc = tk_tpm_new(cfg->tcti, &ks->tpm);
    if (rc != TK_OK) {
        tk_ks_close(ks);
        return rc;
    }
    *out = ks;
    return TK_OK;
}

void tk_ks_close(tk_ks *ks)
{
    if (!ks)
        return;
    for (size_t i = 0; i < ks->nlogins; i++)
        tk_secret_clear(&ks->logins[i].secret);
    tk_tpm_free(ks->tpm);
    tk_store_close(ks->st);
    pthread_mutex_destroy(&ks->lock);
    OPENSSL_cleanse(ks, sizeof(*ks));
    free(ks);
}

tk_store *tk_ks_store(tk_ks *ks)
{
    return ks->st;
}

tk_tpm *tk_ks_tpm(tk_ks *ks)
{
    return ks->tpm;
}

/* ------------------------------------------------------------------ tokens and PINs */

static tk_rc seal_secret(tk_ks *ks, const tk_secret *secret, const tk_secret *pin, tk_buf *pub,
                         tk_buf *priv)
{
    if (!pin->len)
        return tk_fail(TK_ERR_INVALID, "an empty PIN is not allowed");
    return tk_tpm_seal(ks->tpm, secret, pin, pub, priv);
}

tk_rc tk_ks_init(tk_ks *ks, const char *label, const tk_secret *owner_auth,
                 const tk_secret *so_pin, const tk_secret *user_pin, bool *srk_created,
                 bool *token_created)
{
    tk_token *tok = NULL;
    tk_secret secret;
    bool have_secret = false, dirty = false;
    tk_rc rc;

    memset(&secret, 0, sizeof(secret));
    *srk_created = *token_created = false;
    if (!label || !*label || strlen(label) > 32)
        return tk_fail(TK_ERR_INVALID, "a token label has 1 to 32 characters");
    if ((rc = tk_tpm_srk_ensure(ks->tpm, owner_auth, srk_created)) != TK_OK)
        return rc;
    rc = tk_token_get(ks->st, label, &tok);
    if (rc == TK_ERR_NOT_FOUND) {
        tok = calloc(1, sizeof(*tok));
        if (!tok || !(tok->label = strdup(label))) {
            rc = tk_fail(TK_ERR_NOMEM, "out of memory");
            goto out;
        }
        *token_created = dirty = true;
        rc = TK_OK;
    }
    if (rc != TK_OK)
        goto out;

    bool need_user = user_pin && user_pin->len && !tok->user_pub.len;
    bool need_so = so_pin && so_pin->len && !tok->so_pub.len;
    if (need_user || need_so) {
        if (tok->so_pub.len && so_pin && so_pin->len) {
            /* The SO recovers the token secret to set the user PIN. */
            rc = tk_tpm_unseal(ks->tpm, &tok->so_pub, &tok->so_priv, so_pin, &secret);
            if (rc != TK_OK)
                goto out;
            have_secret = true;
        } else if (!tok->so_pub.len && !tok->user_pub.len) {
            /* No PIN yet, hence no PIN-protected key: a fresh secret loses nothing. */
            secret.len = TOKEN_SECRET_LEN;
            if (RAND_priv_bytes(secret.data, (int)secret.len) != 1) {
                rc = tk_fail_ossl(TK_ERR_TPM, "no random bytes for the token secret");
                goto out;
            }
            have_secret = true;
        } else if (need_user) {
            rc = tk_fail(TK_ERR_PIN_REQUIRED, "token '%s' has an SO PIN: give it "
                         "(--so-pin-file) to set the user PIN", label);
            goto out;
        }
    }
    if (have_secret && need_user) {
        if ((rc = seal_secret(ks, &secret, user_pin, &tok->user_pub, &tok->user_priv)) != TK_OK)
            goto out;
        tok->user_fails = 0;
        dirty = true;
    }
    if (have_secret && need_so) {
        if ((rc = seal_secret(ks, &secret, so_pin, &tok->so_pub, &tok->so_priv)) != TK_OK)
            goto out;
        tok->so_fails = 0;
        dirty = true;
    }
    if (dirty)
        rc = tk_token_put(ks->st, tok);
out:
    tk_secret_clear(&secret);
    tk_token_free(tok);
    return rc;
}

static struct login *login_find(tk_ks *ks, int64_t token_id)
{
    for (size_t i = 0; i < ks->nlogins; i++)
        if (ks->logins[i].token_id == token_id)
            return &ks->logins[i];
    return NULL;
}

static tk_rc remember_secret(tk_ks *ks, int64_t token_id, const tk_secret *secret)
{
    struct login *l;
    tk_rc rc;

    pthread_mutex_lock(&ks->lock);
    l = login_find(ks, token_id);
    if (!l && ks->nlogins < MAX_LOGINS) {
        l = &ks->logins[ks->nlogins++];
        l->token_id = token_id;
    }
    if (l)
        rc = tk_secret_set(&l->secret, secret->data, secret->len);
    else
        rc = tk_fail(TK_ERR_NOMEM, "too many tokens logged in at once");
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

/* Unseal the token secret with the user (which = 0) or SO (1) PIN, counting failures. */
static tk_rc unseal_role(tk_ks *ks, const tk_token *tok, int which, const tk_secret *pin,
                         tk_secret *secret)
{
    const char *role = which ? "SO" : "user";
    const tk_buf *pub = which ? &tok->so_pub : &tok->user_pub;
    const tk_buf *priv = which ? &tok->so_priv : &tok->user_priv;
    int used = which ? tok->so_fails : tok->user_fails, fails = 0;
    tk_rc rc;

    if (!pin || !pin->len)
        return tk_fail(TK_ERR_PIN_REQUIRED, "a PIN is needed");
    if (!pub->len)
        return tk_fail(TK_ERR_PIN_REQUIRED,
                       which ? "token '%s' has no SO PIN"
                             : "token '%s' has no user PIN yet: set one with `tpmkeys init "
                               "--user-pin-file FILE`",
                       tok->label);
    if (used >= TK_TOKEN_MAX_TRIES)
        return tk_fail(TK_ERR_PIN_LOCKED,
                       which ? "token '%s': the SO PIN is locked after %d wrong tries"
                             : "token '%s' is locked after %d wrong PINs; the SO can set a new "
                               "user PIN",
                       tok->label, used);
    rc = tk_tpm_unseal(ks->tpm, pub, priv, pin, secret);
    if (rc == TK_ERR_PIN_INCORRECT) {
        if (tk_token_count_fail(ks->st, tok->id, which, false, &fails) != TK_OK)
            tk_warn("could not record the wrong PIN in the store: %s", tk_errmsg());
        return tk_fail(TK_ERR_PIN_INCORRECT, "wrong %s PIN for token '%s' (%d of %d tries used)",
                       role, tok->label, fails, TK_TOKEN_MAX_TRIES);
    }
    if (rc != TK_OK)
        return rc;
    if (used && tk_token_count_fail(ks->st, tok->id, which, true, &fails) != TK_OK)
        tk_warn("could not reset the wrong-PIN count: %s", tk_errmsg());
    return TK_OK;
}

static tk_rc login_role(tk_ks *ks, int64_t token_id, int which, const tk_secret *pin)
{
    tk_token *tok = NULL;
    tk_secret secret;
    tk_rc rc;

    memset(&secret, 0, sizeof(secret));
    if ((rc = tk_token_get_by_id(ks->st, token_id, &tok)) != TK_OK)
        return rc;
    rc = unseal_role(ks, tok, which, pin, &secret);
    if (rc == TK_OK)
        rc = remember_secret(ks, token_id, &secret);
    tk_secret_clear(&secret);
    tk_token_free(tok);
    return rc;
}

tk_rc tk_ks_login(tk_ks *ks, int64_t token_id, const tk_secret *pin)
{
    return login_role(ks, token_id, 0, pin);
}

tk_rc tk_ks_login_so(tk_ks *ks, int64_t token_id, const tk_secret *so_pin)
{
    return login_role(ks, token_id, 1, so_pin);
}

/* The token secret of a logged-in token, copied out. */
static bool secret_of(tk_ks *ks, int64_t token_id, tk_secret *out)
{
    pthread_mutex_lock(&ks->lock);
    struct login *l = login_find(ks, token_id);
    if (l)
        *out = l->secret;
    pthread_mutex_unlock(&ks->lock);
    return l != NULL;
}

tk_rc tk_ks_init_pin(tk_ks *ks, int64_t token_id, const tk_secret *new_pin)
{
    tk_token *tok = NULL;
    tk_secret secret;
    tk_rc rc;

    memset(&secret, 0, sizeof(secret));
    if ((rc = tk_token_get_by_id(ks->st, token_id, &tok)) != TK_OK)
        return rc;
    if (!secret_of(ks, token_id, &secret)) {
        if (tok->so_pub.len || tok->user_pub.len) {
            rc = tk_fail(TK_ERR_PIN_REQUIRED, "setting the user PIN of token '%s' needs the "
                         "SO logged in", tok->label);
            goto out;
        }
        secret.len = TOKEN_SECRET_LEN;
        if (RAND_priv_bytes(secret.data, (int)secret.len) != 1) {
            rc = tk_fail_ossl(TK_ERR_TPM, "no random bytes for the token secret");
            goto out;
        }
    }
    tk_buf_free(&tok->user_pub);
    tk_buf_free(&tok->user_priv);
    if ((rc = seal_secret(ks, &secret, new_pin, &tok->user_pub, &tok->user_priv)) != TK_OK)
        goto out;
    tok->user_fails = 0;
    rc = tk_token_put(ks->st, tok);
out:
    tk_secret_clear(&secret);
    tk_token_free(tok);
    return rc;
}

tk_rc tk_ks_set_pin(tk_ks *ks, int64_t token_id, int which, const tk_secret *old_pin,
                    const tk_secret *new_pin)
{
    tk_token *tok = NULL;
    tk_secret secret;
    tk_buf *pub, *priv;
    tk_rc rc;

    memset(&secret, 0, sizeof(secret));
    if ((rc = tk_token_get_by_id(ks->st, token_id, &tok)) != TK_OK)
        return rc;
    if ((rc = unseal_role(ks, tok, which, old_pin, &secret)) != TK_OK)
        goto out;
    pub = which ? &tok->so_pub : &tok->user_pub;
    priv = which ? &tok->so_priv : &tok->user_priv;
    tk_buf_free(pub);
    tk_buf_free(priv);
    if ((rc = seal_secret(ks, &secret, new_pin, pub, priv)) != TK_OK)
        goto out;
    if (which)
        tok->so_fails = 0;
    else
        tok->user_fails = 0;
    if ((rc = tk_token_put(ks->st, tok)) == TK_OK)
        rc = remember_secret(ks, token_id, &secret);
out:
    tk_secret_clear(&secret);
    tk_token_free(tok);
    return rc;
}

tk_rc tk_ks_init_token(tk_ks *ks, const char *label, const tk_secret *so_pin,
                       int64_t *token_id)
{
    tk_token *tok = NULL;
    tk_secret secret;
    bool srk_created;
    tk_rc rc;

    memset(&secret, 0, sizeof(secret));
    if (!label || !*label || strlen(label) > 32)
        return tk_fail(TK_ERR_INVALID, "a token label has 1 to 32 characters");
    if ((rc = tk_tpm_srk_ensure(ks->tpm, NULL, &srk_created)) != TK_OK)
        return rc;
    rc = tk_token_get(ks->st, label, &tok);
    if (rc == TK_OK) {
        /* Re-initialisation: only the SO may do it; the old keys go. */
        if (!tok->so_pub.len) {
            rc = tk_fail(TK_ERR_PIN_REQUIRED, "token '%s' has no SO PIN, so nobody may "
                         "re-initialise it; delete its keys with `tpmkeys delete` instead",
                         tok->label);
            goto out;
        }
        if ((rc = unseal_role(ks, tok, 1, so_pin, &secret)) != TK_OK)
            goto out;
        tk_ks_logout(ks, tok->id);
        if ((rc = tk_token_delete(ks->st, tok->id)) != TK_OK)
            goto out;
        tk_token_free(tok);
        tok = NULL;
    } else if (rc != TK_ERR_NOT_FOUND) {
        goto out;
    }
    tk_clear_error();
    tok = calloc(1, sizeof(*tok));
    if (!tok || !(tok->label = strdup(label))) {
        rc = tk_fail(TK_ERR_NOMEM, "out of memory");
        goto out;
    }
    secret.len = TOKEN_SECRET_LEN;
    if (RAND_priv_bytes(secret.data, (int)secret.len) != 1) {
        rc = tk_fail_ossl(TK_ERR_TPM, "no random bytes for the token secret");
        goto out;
    }
    if ((rc = seal_secret(ks, &secret, so_pin, &tok->so_pub, &tok->so_priv)) != TK_OK)
        goto out;
    if ((rc = tk_token_put(ks->st, tok)) == TK_OK)
        *token_id = tok->id;
out:
    tk_secret_clear(&secret);
    tk_token_free(tok);
    return rc;
}

tk_rc tk_ks_pin_state(tk_ks *ks, int64_t token_id, bool ask_tpm, tk_pin_state *out)
{
    tk_token *tok = NULL;
    tk_rc rc;

    memset(out, 0, sizeof(*out));
    if ((rc = tk_token_get_by_id(ks->st, token_id, &tok)) != TK_OK)
        return rc;
    out->user_fails = tok->user_fails;
    out->so_fails = tok->so_fails;
    out->max_tries = TK_TOKEN_MAX_TRIES;
    tk_token_free(tok);
    if (ask_tpm) {
        tk_tpm_info info;
        if ((rc = tk_tpm_get_info(ks->tpm, &info)) != TK_OK)
            return rc;
        out->tpm_counter = info.lockout_counter;
        out->tpm_max = info.max_tries;
        out->tpm_lockout = info.in_lockout;
    }
    return TK_OK;
}

void tk_ks_logout(tk_ks *ks, int64_t token_id)
{
    pthread_mutex_lock(&ks->lock);
    struct login *l = login_find(ks, token_id);
    if (l) {
        tk_secret_clear(&l->secret);
        *l = ks->logins[--ks->nlogins];
        tk_secret_clear(&ks->logins[ks->nlogins].secret);
    }
    pthread_mutex_unlock(&ks->lock);
}

bool tk_ks_logged_in(tk_ks *ks, int64_t token_id)
{
    pthread_mutex_lock(&ks->lock);
    bool in = login_find(ks, token_id) != NULL;
    pthread_mutex_unlock(&ks->lock);
    return in;
}

/* ------------------------------------------------------------------ key auth */

static tk_rc derive_auth(const tk_secret *secret, const tk_buf *salt, tk_secret *auth)
{
    static const char tag[] = "tpmkeys key auth";
    const uint8_t *parts[] = { (const uint8_t *)tag, salt->data };
    const size_t lens[] = { sizeof(tag), salt->len };
    size_t n = 0;

    if (salt->len > 64)
        return tk_fail(TK_ERR_STORE, "key auth salt too long");
    if (tk_hmac(TPM2_ALG_SHA256, secret->data, secret->len, parts, lens, 2, auth->data,
                sizeof(auth->data), &n) != TK_OK)
        return tk_fail_ossl(TK_ERR_NOMEM, "deriving the key auth value");
    auth->len = n;
    return TK_OK;
}

tk_rc tk_ks_key_auth(tk_ks *ks, const tk_key *k, tk_secret *auth)
{
    tk_rc rc;

    tk_secret_clear(auth);
    if (k->auth == TK_AUTH_NONE)
        return TK_OK;
    if (k->auth != TK_AUTH_TOKEN)
        return tk_fail(TK_ERR_STORE, "key '%s' has an unknown auth mode", k->label);
    pthread_mutex_lock(&ks->lock);
    struct login *l = login_find(ks, k->token_id);
    rc = l ? derive_auth(&l->secret, &k->authsalt, auth)
           : tk_fail(TK_ERR_PIN_REQUIRED, "key '%s' needs the token's user PIN (log in first)",
                     k->label);
    pthread_mutex_unlock(&ks->lock);
    return rc;
}

/* Auth for a new key: a fresh salt, and the derived value when the key has a PIN. */
static tk_rc new_key_auth(tk_ks *ks, tk_key *k, tk_secret *auth)
{
    uint8_t salt[16];
    tk_rc rc;

    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return tk_fail_ossl(TK_ERR_NOMEM, "no random bytes");
    if ((rc = tk_buf_set(&k->authsalt, salt, sizeof(salt))) != TK_OK)
        return rc;
    return tk_ks_key_auth(ks, k, auth);
}

/* CKA_ID as PKCS#11 tools make it: SHA-1 of the modulus or of the EC point. */
static tk_rc default_ckaid(const TPM2B_PUBLIC *pub, tk_buf *id)
{
    const TPMT_PUBLIC *p = &pub->publicArea;
    uint8_t md[20], point[1 + 2 * TPM2_MAX_ECC_KEY_BYTES];
    const uint8_t *data;
    size_t len;

    if (p->type == TPM2_ALG_RSA) {
        data = p->unique.rsa.buffer;
        len = p->unique.rsa.size;
    } else {
        point[0] = 0x04;
        memcpy(point + 1, p->unique.ecc.x.buffer, p->unique.ecc.x.size);
        memcpy(point + 1 + p->unique.ecc.x.size, p->unique.ecc.y.buffer, p->unique.ecc.y.size);
        data = point;
        len = 1 + (size_t)p->unique.ecc.x.size + p->unique.ecc.y.size;
    }
    if (!EVP_Digest(data, len, md, NULL, EVP_sha1(), NULL))
        return tk_fail_ossl(TK_ERR_NOMEM, "hashing the public key");
    return tk_buf_set(id, md, sizeof(md));
}

/* Fill the public parts of a new key from its blobs and add it to the store. */
static tk_rc key_store(tk_ks *ks, tk_key *k, tk_key **out)
{
    TPM2B_PUBLIC pub;
    tk_rc rc;

    if ((rc = tk_public_unmarshal(&k->pub, &pub)) != TK_OK)
        return rc;
    k->alg = tk_alg_from_public(&pub);
    if (k->alg == TK_ALG_NONE)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key is neither RSA 2048-4096 nor ECC P-256/384/521");
    if (!k->ckaid.len && (rc = default_ckaid(&pub, &k->ckaid)) != TK_OK)
        return rc;
    k->parent = TK_SRK_HANDLE;
    if ((rc = tk_key_add(ks->st, k)) != TK_OK)
        return rc;
    *out = k;
    return TK_OK;
}

static tk_rc key_new(int64_t token_id, const char *label, tk_authmode auth, tk_origin origin,
                     tk_key **out)
{
    tk_key *k = calloc(1, sizeof(*k));
    if (!k || !(k->label = strdup(label))) {
        free(k);
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    }
    k->token_id = token_id;
    k->auth = auth;
    k->origin = origin;
    *out = k;
    return TK_OK;
}

/* Fail early (before a slow key generation) when the label is taken. */
static tk_rc label_free(tk_ks *ks, int64_t token_id, const char *label)
{
    tk_key *k = NULL;
    tk_rc rc;

    if (!label || !*label)
        return tk_fail(TK_ERR_INVALID, "a key needs a label");
    rc = tk_key_find_label(ks->st, token_id, label, &k);
    tk_key_free(k);
    if (rc == TK_OK)
        return tk_fail(TK_ERR_EXISTS, "a key labelled '%s' already exists", label);
    if (rc == TK_ERR_NOT_FOUND) {
        tk_clear_error();
        return TK_OK;
    }
    return rc;
}

tk_rc tk_ks_create_key(tk_ks *ks, int64_t token_id, const char *label, tk_alg alg,
                       tk_authmode auth, tk_progress_fn progress, void *arg, tk_key **out)
{
    return tk_ks_create_key_opts(ks, token_id, label, alg, NULL, auth, progress, arg, out);
}

tk_rc tk_ks_create_key_opts(tk_ks *ks, int64_t token_id, const char *label, tk_alg alg,
                            const tk_keygen_opts *opts, tk_authmode auth,
                            tk_progress_fn progress, void *arg, tk_key **out)
{
    tk_secret a;
    tk_key *k = NULL;
    tk_rc rc;

    memset(&a, 0, sizeof(a));
    if ((rc = label_free(ks, token_id, label)) != TK_OK)
        return rc;
    if (tk_store_is_readonly(ks->st))
        return tk_fail(TK_ERR_READONLY, "the store %s is read-only (%s)", tk_store_path(ks->st),
                       tk_store_readonly_reason(ks->st));
    if ((rc = tk_ks_key_auth_check(ks, token_id, auth)) != TK_OK)
        return rc;
    if ((rc = tk_tpm_supports(ks->tpm, alg)) != TK_OK)
        return rc;
    if ((rc = key_new(token_id, label, auth, TK_ORIGIN_GENERATED, &k)) != TK_OK)
        return rc;
    if (opts && opts->ckaid.len && (rc = tk_buf_set(&k->ckaid, opts->ckaid.data,
                                                     opts->ckaid.len)) != TK_OK)
        goto out;
    if ((rc = new_key_auth(ks, k, &a)) != TK_OK)
        goto out;
    if ((rc = tk_tpm_create_key_opts(ks->tpm, alg, opts, &a, progress, arg, &k->pub,
                                     &k->priv)) != TK_OK)
        goto out;
    rc = key_store(ks, k, out);
out:
    tk_secret_clear(&a);
    if (rc != TK_OK)
        tk_key_free(k);
    return rc;
}

tk_rc tk_ks_key_auth_check(tk_ks *ks, int64_t token_id, tk_authmode auth)
{
    if (auth == TK_AUTH_NONE)
        return TK_OK;
    if (auth != TK_AUTH_TOKEN)
        return tk_fail(TK_ERR_INVALID, "unknown auth mode");
    if (!tk_ks_logged_in(ks, token_id))
        return tk_fail(TK_ERR_PIN_REQUIRED, "a PIN-protected key needs the token's user PIN");
    return TK_OK;
}

tk_rc tk_ks_import_pkey(tk_ks *ks, int64_t token_id, const char *label, EVP_PKEY *pkey,
                        tk_authmode auth, tk_key **out)
{
    tk_secret a;
    tk_key *k = NULL;
    tk_rc rc;

    memset(&a, 0, sizeof(a));
    if ((rc = label_free(ks, token_id, label)) != TK_OK)
        return rc;
    if (tk_store_is_readonly(ks->st))
        return tk_fail(TK_ERR_READONLY, "the store %s is read-only (%s)", tk_store_path(ks->st),
                       tk_store_readonly_reason(ks->st));
    if ((rc = tk_ks_key_auth_check(ks, token_id, auth)) != TK_OK)
        return rc;
    if ((rc = key_new(token_id, label, auth, TK_ORIGIN_IMPORTED, &k)) != TK_OK)
        return rc;
    if ((rc = new_key_auth(ks, k, &a)) != TK_OK)
        goto out;
    if ((rc = tk_tpm_import_pkey(ks->tpm, pkey, &a, &k->pub, &k->priv)) != TK_OK)
        goto out;
    rc = key_store(ks, k, out);
out:
    tk_secret_clear(&a);
    if (rc != TK_OK)
        tk_key_free(k);
    return rc;
}

/* A TSS2 PRIVATE KEY file: already TPM-wrapped; re-wrapped to our auth with
 * ObjectChangeAuth so the store holds a blob of its own. */
static tk_rc import_tss2(tk_ks *ks, int64_t token_id, const char *label, const tk_tss2key *f,
                         const tk_secret *passphrase, tk_authmode auth, tk_key **out)
{
    TPM2B_PUBLIC pub, srk;
    tk_secret old, a;
    tk_key *k = NULL;
    tk_rc rc;

    memset(&old, 0, sizeof(old));
    memset(&a, 0, sizeof(a));
    if (f->type != 3)
        return tk_fail(TK_ERR_UNSUPPORTED, "only loadable TSS2 keys can be imported (this one "
                       "is %s)", f->type == 4 ? "importable" : f->type == 5 ? "sealed data"
                                                                            : "of another type");
    if (f->has_policy || f->has_auth_policy)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key is bound to a TPM policy, which tpmkeys "
                       "cannot satisfy");
    if (f->has_secret)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key carries an import secret, which tpmkeys "
                       "does not handle");
    if (f->rsa_parent)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key's parent is an RSA primary key; tpmkeys "
                       "keys live under the ECC P-256 SRK at 0x81000001");
    if (f->parent != TK_SRK_HANDLE && f->parent != TPM2_RH_OWNER)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key's parent 0x%08x is neither the owner "
                       "primary (0x40000001) nor the SRK at 0x81000001", f->parent);
    if ((rc = tk_public_unmarshal(&f->pub, &pub)) != TK_OK)
        return rc;
    if (pub.publicArea.type != TPM2_ALG_RSA && pub.publicArea.type != TPM2_ALG_ECC)
        return tk_fail(TK_ERR_UNSUPPORTED, "not an RSA or EC key");
    if ((pub.publicArea.objectAttributes & TPMA_OBJECT_RESTRICTED) ||
        !(pub.publicArea.objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
        return tk_fail(TK_ERR_UNSUPPORTED, "the key is not an unrestricted signing key");
    if (pub.publicArea.objectAttributes & TPMA_OBJECT_ADMINWITHPOLICY)
        return tk_fail(TK_ERR_UNSUPPORTED, "the key needs a policy for administration");
    if ((rc = tk_tpm_srk_public(ks->tpm, &srk)) != TK_OK)
        return rc;
    if (f->parent == TPM2_RH_OWNER &&
        (srk.publicArea.type != TPM2_ALG_ECC ||
         srk.publicArea.parameters.eccDetail.curveID != TPM2_ECC_NIST_P256))
        return tk_fail(TK_ERR_UNSUPPORTED, "the key was made under the owner's ECC P-256 "
                       "primary, but the SRK at 0x81000001 is not that key");
    if ((rc = label_free(ks, token_id, label)) != TK_OK)
        return rc;
    if ((rc = tk_ks_key_auth_check(ks, token_id, auth)) != TK_OK)
        return rc;
    if ((rc = key_new(token_id, label, auth, TK_ORIGIN_IMPORTED, &k)) != TK_OK)
        return rc;
    if ((rc = tk_buf_set(&k->pub, f->pub.data, f->pub.len)) != TK_OK ||
        (rc = new_key_auth(ks, k, &a)) != TK_OK)
        goto out;
    if (passphrase && passphrase->len)
        old = *passphrase;
    rc = tk_tpm_change_auth(ks->tpm, &f->pub, &f->priv, &old, &a, &k->priv);
    if (rc == TK_ERR_PIN_INCORRECT)
        rc = tk_fail(TK_ERR_PASSPHRASE, f->empty_auth || old.len
                     ? "the TPM refused the key file's password: give the right one "
                       "(--passphrase-file)"
                     : "the key file has a password: give it with --passphrase-file");
    else if (rc == TK_ERR_TPM)
        tk_fail_ctx(rc, "the key file does not load under this TPM's SRK");
    if (rc == TK_OK)
        rc = key_store(ks, k, out);
out:
    tk_secret_clear(&old);
    tk_secret_clear(&a);
    if (rc != TK_OK)
        tk_key_free(k);
    return rc;
}

tk_rc tk_ks_import_file(tk_ks *ks, int64_t token_id, const char *label, const uint8_t *data,
                        size_t len, const tk_secret *passphrase, tk_authmode auth, tk_key **out)
{
    tk_tss2key f;
    EVP_PKEY *pkey = NULL;
    tk_rc rc;

    memset(&f, 0, sizeof(f));
    rc = tk_tss2key_parse(data, len, &f);
    if (rc == TK_OK) {
        rc = import_tss2(ks, token_id, label, &f, passphrase, auth, out);
        tk_tss2key_free(&f);
        return rc;
    }
    if (rc != TK_ERR_NOT_FOUND)
        return rc;
    tk_clear_error();
    if ((rc = tk_keyfile_parse_private(data, len, passphrase, &pkey)) != TK_OK)
        return rc;
    rc = tk_ks_import_pkey(ks, token_id, label, pkey, auth, out);
    EVP_PKEY_free(pkey);
    return rc;
}

/* ------------------------------------------------------------------ using keys */

tk_rc tk_ks_sign(tk_ks *ks, const tk_key *k, tk_sigscheme scheme, TPM2_ALG_ID hash,
                 const uint8_t *digest, size_t dlen, tk_buf *sig)
{
    tk_secret a;
    tk_rc rc = tk_ks_key_auth(ks, k, &a);
    if (rc == TK_OK)
        rc = tk_tpm_sign(ks->tpm, &k->pub, &k->priv, &a, scheme, hash, digest, dlen, sig);
    tk_secret_clear(&a);
    return rc;
}

tk_rc tk_ks_sign_pss(tk_ks *ks, const tk_key *k, const EVP_MD *md, const EVP_MD *mgf1,
                     size_t saltlen, const uint8_t *mhash, size_t hlen, tk_buf *sig)
{
    tk_secret a;
    tk_rc rc = tk_ks_key_auth(ks, k, &a);
    if (rc == TK_OK)
        rc = tk_tpm_sign_pss(ks->tpm, &k->pub, &k->priv, &a, md, mgf1, saltlen, mhash, hlen,
                             sig);
    tk_secret_clear(&a);
    return rc;
}

tk_rc tk_ks_rsa_raw(tk_ks *ks, const tk_key *k, const uint8_t *in, size_t inlen, tk_buf *out)
{
    tk_secret a;
    tk_rc rc = tk_ks_key_auth(ks, k, &a);
    if (rc == TK_OK)
        rc = tk_tpm_rsa_raw(ks->tpm, &k->pub, &k->priv, &a, in, inlen, out);
    tk_secret_clear(&a);
    return rc;
}

tk_rc tk_ks_rsa_decrypt(tk_ks *ks, const tk_key *k, TPM2_ALG_ID scheme, TPM2_ALG_ID hash,
                        const uint8_t *label, size_t labellen, const uint8_t *in, size_t inlen,
                        tk_buf *out)
{
    tk_secret a;
    tk_rc rc = tk_ks_key_auth(ks, k, &a);
    if (rc == TK_OK)
        rc = tk_tpm_rsa_decrypt(ks->tpm, &k->pub, &k->priv, &a, scheme, hash, label, labellen,
                                in, inlen, out);
    tk_secret_clear(&a);
    return rc;
}

tk_rc tk_ks_ecdh(tk_ks *ks, const tk_key *k, const uint8_t *peer, size_t peerlen, tk_buf *out)
{
    tk_secret a;
    tk_rc rc = tk_ks_key_auth(ks, k, &a);
    if (rc == TK_OK)
        rc = tk_tpm_ecdh(ks->tpm, &k->pub, &k->priv, &a, peer, peerlen, out);
    tk_secret_clear(&a);
    return rc;
}

tk_rc tk_ks_public(const tk_key *k, EVP_PKEY **out)
{
    TPM2B_PUBLIC pub;
    tk_rc rc = tk_public_unmarshal(&k->pub, &pub);
    if (rc == TK_OK)
        rc = tk_public_to_pkey(&pub, out);
    if (rc != TK_OK)
        tk_fail_ctx(rc, "key '%s'", k->label);
    return rc;
}

/* ------------------------------------------------------------------ export */

tk_rc tk_ks_export_tss2(tk_ks *ks, const tk_key *k, const tk_secret *pin, bool pem, tk_buf *out)
{
    tk_tss2key f;
    tk_secret a;
    tk_rc rc;

    memset(&f, 0, sizeof(f));
    memset(&a, 0, sizeof(a));
    f.type = 3;
    f.parent = TK_SRK_HANDLE;
    f.empty_auth = k->auth == TK_AUTH_NONE;
    if ((rc = tk_buf_set(&f.pub, k->pub.data, k->pub.len)) != TK_OK)
        goto out;
    if (k->auth == TK_AUTH_NONE) {
        rc = tk_buf_set(&f.priv, k->priv.data, k->priv.len);
    } else {
        /* The file's password becomes the user PIN: a copy of the blob re-wrapped with
         * ObjectChangeAuth (the store's blob keeps its derived auth). */
        if (!pin || !pin->len) {
            rc = tk_fail(TK_ERR_PIN_REQUIRED, "exporting a PIN-protected key needs the PIN, "
                         "which becomes the key file's password");
            goto out;
        }
        if ((rc = tk_ks_key_auth(ks, k, &a)) == TK_OK)
            rc = tk_tpm_change_auth(ks->tpm, &k->pub, &k->priv, &a, pin, &f.priv);
    }
    if (rc == TK_OK)
        rc = tk_tss2key_encode(&f, pem, out);
out:
    tk_secret_clear(&a);
    tk_tss2key_free(&f);
    return rc;
}

tk_rc tk_ks_export_public_pem(const tk_key *k, tk_buf *out)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    BUF_MEM *mem;
    tk_rc rc = tk_ks_public(k, &pkey);

    if (rc != TK_OK)
        return rc;
    bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PUBKEY(bio, pkey)) {
        rc = tk_fail_ossl(TK_ERR_NOMEM, "encoding the public key");
        goto out;
    }
    BIO_get_mem_ptr(bio, &mem);
    rc = tk_buf_set(out, mem->data, mem->length);
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    return rc;
}
