/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Slots, tokens, sessions, login and PINs.
 *
 * One slot per store token (slot id = token row id, so it is the same in every
 * process) plus one slot with an uninitialised token, so that C_InitToken can make
 * a new token with no other tool.  A token initialised in that slot keeps the slot
 * id for the life of the module.  Listing reads only the store, never the TPM.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "p11.h"

#define NO_ROLE ((CK_USER_TYPE)-1)

/* ------------------------------------------------------------------ tokens and slots */

void p11_tokens_free(void)
{
    for (size_t i = 0; i < p11.ntokens; i++)
        tk_token_free(p11.tokens[i].tok);
    free(p11.tokens);
    p11.tokens = NULL;
    p11.ntokens = 0;
}

static CK_SLOT_ID slot_of_token(int64_t token_id)
{
    for (size_t i = 0; i < p11.nmaps; i++)
        if (p11.maps[i].token_id == token_id)
            return p11.maps[i].slot;
    return (CK_SLOT_ID)token_id;
}

static CK_RV map_slot(CK_SLOT_ID slot, int64_t token_id)
{
    p11_slotmap *m;

    if ((CK_SLOT_ID)token_id == slot)
        return CKR_OK;
    m = realloc(p11.maps, (p11.nmaps + 1) * sizeof(*m));
    if (!m)
        return CKR_HOST_MEMORY;
    p11.maps = m;
    m[p11.nmaps].slot = slot;
    m[p11.nmaps].token_id = token_id;
    p11.nmaps++;
    return CKR_OK;
}

/* The uninitialised slot: one past every slot in use (stable across processes as long
 * as the store does not change). */
static void pick_empty_slot(void)
{
    CK_SLOT_ID max = 0;
    bool taken = p11.empty_slot == 0;

    for (size_t i = 0; i < p11.ntokens; i++) {
        if (p11.tokens[i].slot > max)
            max = p11.tokens[i].slot;
        if (p11.tokens[i].slot == p11.empty_slot)
            taken = true;
    }
    if (taken)
        p11.empty_slot = max + 1;
}

static CK_RV load_tokens(tk_store *st)
{
    tk_token **list = NULL;
    size_t n = 0;
    tk_rc rc;

    p11_tokens_free();
    if ((rc = tk_token_list(st, &list, &n)) != TK_OK)
        return p11_fail(rc, CKR_DEVICE_ERROR, "listing tokens");
    p11.tokens = calloc(n ? n : 1, sizeof(*p11.tokens));
    if (!p11.tokens) {
        for (size_t i = 0; i < n; i++)
            tk_token_free(list[i]);
        free(list);
        return CKR_HOST_MEMORY;
    }
    for (size_t i = 0; i < n; i++) {
        p11.tokens[i].tok = list[i];
        p11.tokens[i].slot = slot_of_token(list[i]->id);
    }
    p11.ntokens = n;
    free(list);
    return CKR_OK;
}

/* Reload tokens and objects when the store changed (another process, or we wrote). */
CK_RV p11_refresh(void)
{
    tk_ks *ks;
    tk_store *st;
    CK_RV rv = p11_ks(false, &ks);

    if (rv == CKR_TOKEN_NOT_PRESENT) {
        tk_clear_error();
        pick_empty_slot();
        return CKR_OK;       /* no store yet: just the uninitialised slot */
    }
    if (rv != CKR_OK)
        return rv;
    st = tk_ks_store(ks);
    bool changed = tk_store_changed(st);
    if (!changed && !p11.dirty)
        return CKR_OK;
    tk_key_free(p11.key_memo);
    p11.key_memo = NULL;
    if ((rv = load_tokens(st)) != CKR_OK)
        return rv;
    if ((rv = p11_objects_load(st)) != CKR_OK)
        return rv;
    p11.dirty = false;
    pick_empty_slot();
    return CKR_OK;
}

p11_token *p11_token_by_id(int64_t token_id)
{
    for (size_t i = 0; i < p11.ntokens; i++)
        if (p11.tokens[i].tok->id == token_id)
            return &p11.tokens[i];
    return NULL;
}

/* The token in a slot (NULL for the uninitialised one); CKR_SLOT_ID_INVALID for others. */
static CK_RV slot_token(CK_SLOT_ID slot, p11_token **tok)
{
    for (size_t i = 0; i < p11.ntokens; i++) {
        if (p11.tokens[i].slot == slot) {
            *tok = &p11.tokens[i];
            return CKR_OK;
        }
    }
    if (slot == p11.empty_slot) {
        *tok = NULL;
        return CKR_OK;
    }
    return CKR_SLOT_ID_INVALID;
}

CK_RV C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    CK_RV rv;
    size_t n;

    (void)present;   /* every slot has a token */
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!count) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK)
        goto out;
    n = p11.ntokens + 1;
    if (list) {
        if (*count < n) {
            rv = CKR_BUFFER_TOO_SMALL;
        } else {
            for (size_t i = 0; i < p11.ntokens; i++)
                list[i] = p11.tokens[i].slot;
            list[p11.ntokens] = p11.empty_slot;
        }
    }
    *count = n;
out:
    p11_leave();
    return rv;
}

CK_RV C_GetSlotInfo(CK_SLOT_ID slot, CK_SLOT_INFO_PTR info)
{
    p11_token *tok;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!info)
        rv = CKR_ARGUMENTS_BAD;
    else if ((rv = p11_refresh()) == CKR_OK)
        rv = slot_token(slot, &tok);
    if (rv == CKR_OK) {
        memset(info, 0, sizeof(*info));
        p11_blank_copy(info->slotDescription, sizeof(info->slotDescription),
                       tok ? "tpmkeys TPM 2.0 key store" : "tpmkeys: new token");
        p11_blank_copy(info->manufacturerID, sizeof(info->manufacturerID), P11_MANUFACTURER);
        info->flags = CKF_TOKEN_PRESENT;
        info->hardwareVersion.major = 2;
        info->firmwareVersion.major = 0;
        info->firmwareVersion.minor = 1;
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ login state */

CK_USER_TYPE p11_login_role(int64_t token_id)
{
    for (size_t i = 0; i < p11.nlogins; i++)
        if (p11.logins[i].token_id == token_id)
            return p11.logins[i].who;
    return NO_ROLE;
}

bool p11_user_logged_in(int64_t token_id)
{
    return p11_login_role(token_id) == CKU_USER;
}

static CK_RV login_set(int64_t token_id, CK_USER_TYPE who)
{
    p11_login *l = realloc(p11.logins, (p11.nlogins + 1) * sizeof(*l));
    if (!l)
        return CKR_HOST_MEMORY;
    p11.logins = l;
    l[p11.nlogins].token_id = token_id;
    l[p11.nlogins].who = who;
    p11.nlogins++;
    return CKR_OK;
}

static void login_drop(int64_t token_id)
{
    for (size_t i = 0; i < p11.nlogins; i++) {
        if (p11.logins[i].token_id == token_id) {
            p11.logins[i] = p11.logins[--p11.nlogins];
            break;
        }
    }
    if (p11.ks)
        tk_ks_logout(p11.ks, token_id);
}

/* ------------------------------------------------------------------ token info */

static bool token_has_pin_keys(int64_t token_id, bool *any)
{
    bool pin = false;
    *any = false;
    for (size_t i = 0; i < p11.nobjs; i++) {
        const p11_object *o = p11.objs[i];
        if (o->token_id != token_id || o->kind != P11_KIND_PRIV)
            continue;
        *any = true;
        if (o->is_private)
            pin = true;
    }
    return pin;
}

static bool token_has_keys(int64_t token_id)
{
    bool any = false;
    token_has_pin_keys(token_id, &any);
    return any;
}

static size_t sessions_on(int64_t token_id, CK_SLOT_ID slot, bool rw_only)
{
    size_t n = 0;
    for (size_t i = 0; i < p11.nsessions; i++) {
        const p11_session *s = p11.sessions[i];
        if (s->slot != slot || s->token_id != token_id)
            continue;
        if (!rw_only || (s->flags & CKF_RW_SESSION))
            n++;
    }
    return n;
}

/* CKF_*_PIN_* flags from our per-token counters and (after a failure) the TPM's own. */
static CK_FLAGS pin_flags(const tk_token *t)
{
    tk_pin_state ps;
    CK_FLAGS f = 0;
    bool ask_tpm = t->user_fails > 0 || t->so_fails > 0;

    if (!p11.ks || tk_ks_pin_state(p11.ks, t->id, ask_tpm, &ps) != TK_OK) {
        /* The TPM could not be asked: our own counters still tell. */
        tk_clear_error();
        memset(&ps, 0, sizeof(ps));
        ps.user_fails = t->user_fails;
        ps.so_fails = t->so_fails;
        ps.max_tries = 5;
    }
    int tpm_left = ps.tpm_max ? (int)ps.tpm_max - (int)ps.tpm_counter : 1 << 30;
    int user_left = ps.max_tries - ps.user_fails;
    int so_left = ps.max_tries - ps.so_fails;
    if (tpm_left < user_left)
        user_left = tpm_left;
    if (tpm_left < so_left)
        so_left = tpm_left;

    if (ps.user_fails > 0 || ps.tpm_counter > 0)
        f |= CKF_USER_PIN_COUNT_LOW;
    if (user_left == 1)
        f |= CKF_USER_PIN_FINAL_TRY;
    if (user_left <= 0 || ps.tpm_lockout)
        f |= CKF_USER_PIN_LOCKED;
    if (ps.so_fails > 0 || ps.tpm_counter > 0)
        f |= CKF_SO_PIN_COUNT_LOW;
    if (so_left == 1)
        f |= CKF_SO_PIN_FINAL_TRY;
    if (so_left <= 0 || ps.tpm_lockout)
        f |= CKF_SO_PIN_LOCKED;
    return f;
}

static void token_serial(const tk_token *t, CK_UTF8CHAR *out, size_t len)
{
    char buf[17];
    const char *sid = p11.ks ? tk_store_id(tk_ks_store(p11.ks)) : "";

    /* 12 hex digits of the store id and 4 of the token id: stable per store and token. */
    snprintf(buf, sizeof(buf), "%.12s%04llx", sid, (unsigned long long)(t->id & 0xffff));
    p11_blank_copy(out, len, buf);
}

static void fill_token_info(const p11_token *pt, CK_SLOT_ID slot, CK_TOKEN_INFO *info)
{
    memset(info, 0, sizeof(*info));
    p11_blank_copy(info->manufacturerID, sizeof(info->manufacturerID), P11_MANUFACTURER);
    p11_blank_copy(info->model, sizeof(info->model), P11_MODEL);
    info->flags = CKF_RNG;
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulMaxPinLen = P11_MAX_PIN;
    info->ulMinPinLen = P11_MIN_PIN;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = 2;
    info->firmwareVersion.major = 0;
    info->firmwareVersion.minor = 1;
    if (!pt) {
        p11_blank_copy(info->label, sizeof(info->label), "");
        p11_blank_copy(info->serialNumber, sizeof(info->serialNumber), "");
        info->ulSessionCount = sessions_on(0, slot, false);
        info->ulRwSessionCount = sessions_on(0, slot, true);
        return;
    }
    const tk_token *t = pt->tok;
    bool any = false, pin_keys = token_has_pin_keys(t->id, &any);
    p11_blank_copy(info->label, sizeof(info->label), t->label);
    token_serial(t, info->serialNumber, sizeof(info->serialNumber));
    info->flags |= CKF_TOKEN_INITIALIZED;
    if (t->user_pub.len)
        info->flags |= CKF_USER_PIN_INITIALIZED;
    /* Login is needed when some key (or a key still to come) is PIN-protected; a token
     * that holds only keys without PIN (services) works without it. */
    if (t->user_pub.len && (pin_keys || !any))
        info->flags |= CKF_LOGIN_REQUIRED;
    if (p11.ks && tk_store_is_readonly(tk_ks_store(p11.ks)))
        info->flags |= CKF_WRITE_PROTECTED;
    info->flags |= pin_flags(t);
    info->ulSessionCount = sessions_on(t->id, slot, false);
    info->ulRwSessionCount = sessions_on(t->id, slot, true);
}

CK_RV C_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
    p11_token *tok;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!info)
        rv = CKR_ARGUMENTS_BAD;
    else if ((rv = p11_refresh()) == CKR_OK)
        rv = slot_token(slot, &tok);
    if (rv == CKR_OK)
        fill_token_info(tok, slot, info);
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ sessions */

p11_session *p11_session_get(CK_SESSION_HANDLE h)
{
    for (size_t i = 0; i < p11.nsessions; i++)
        if (p11.sessions[i]->handle == h)
            return p11.sessions[i];
    return NULL;
}

CK_RV p11_session_rw(p11_session *s)
{
    return (s->flags & CKF_RW_SESSION) ? CKR_OK : CKR_SESSION_READ_ONLY;
}

static void session_free(p11_session *s)
{
    if (!s)
        return;
    p11_mech_free_ops(s);
    free(s->found);
    p11_session_objects_drop(s->handle);
    free(s);
}

void p11_sessions_free(void)
{
    for (size_t i = 0; i < p11.nsessions; i++)
        session_free(p11.sessions[i]);
    free(p11.sessions);
    p11.sessions = NULL;
    p11.nsessions = 0;
}

CK_RV C_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                    CK_SESSION_HANDLE_PTR out)
{
    p11_token *tok;
    p11_session *s = NULL, **list;
    CK_RV rv;

    (void)app, (void)notify;
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!out) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (!(flags & CKF_SERIAL_SESSION)) {
        rv = CKR_SESSION_PARALLEL_NOT_SUPPORTED;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK || (rv = slot_token(slot, &tok)) != CKR_OK)
        goto out;
    int64_t token_id = tok ? tok->tok->id : 0;
    if (!(flags & CKF_RW_SESSION) && tok && p11_login_role(token_id) == CKU_SO) {
        rv = CKR_SESSION_READ_WRITE_SO_EXISTS;
        goto out;
    }
    if ((flags & CKF_RW_SESSION) && p11.ks && tk_store_is_readonly(tk_ks_store(p11.ks))) {
        rv = CKR_TOKEN_WRITE_PROTECTED;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    list = realloc(p11.sessions, (p11.nsessions + 1) * sizeof(*list));
    if (!s || !list) {
        free(s);
        if (list)
            p11.sessions = list;
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    p11.sessions = list;
    s->handle = p11.next_session++;
    s->slot = slot;
    s->token_id = token_id;
    s->flags = flags & (CKF_SERIAL_SESSION | CKF_RW_SESSION);
    list[p11.nsessions++] = s;
    *out = s->handle;
out:
    p11_leave();
    return rv;
}

/* Remove session i; the last session of a token logs it out (PKCS#11 2.40, 5.6). */
static void session_close_at(size_t i)
{
    p11_session *s = p11.sessions[i];
    int64_t token_id = s->token_id;
    CK_SLOT_ID slot = s->slot;

    p11.sessions[i] = p11.sessions[--p11.nsessions];
    session_free(s);
    if (token_id && sessions_on(token_id, slot, false) == 0)
        login_drop(token_id);
}

CK_RV C_CloseSession(CK_SESSION_HANDLE h)
{
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    rv = CKR_SESSION_HANDLE_INVALID;
    for (size_t i = 0; i < p11.nsessions; i++) {
        if (p11.sessions[i]->handle == h) {
            session_close_at(i);
            rv = CKR_OK;
            break;
        }
    }
    p11_leave();
    return rv;
}

CK_RV C_CloseAllSessions(CK_SLOT_ID slot)
{
    p11_token *tok;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = p11_refresh()) == CKR_OK)
        rv = slot_token(slot, &tok);
    if (rv == CKR_SLOT_ID_INVALID) {
        /* The token may have gone (deleted by another process): its sessions still close. */
        for (size_t i = 0; i < p11.nsessions; i++)
            if (p11.sessions[i]->slot == slot)
                rv = CKR_OK;
    }
    if (rv == CKR_OK) {
        for (size_t i = p11.nsessions; i-- > 0;)
            if (p11.sessions[i]->slot == slot)
                session_close_at(i);
    }
    p11_leave();
    return rv;
}

CK_RV C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO_PTR info)
{
    p11_session *s;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (!info) {
        rv = CKR_ARGUMENTS_BAD;
    } else {
        bool rw = s->flags & CKF_RW_SESSION;
        CK_USER_TYPE who = s->token_id ? p11_login_role(s->token_id) : NO_ROLE;
        memset(info, 0, sizeof(*info));
        info->slotID = s->slot;
        info->flags = s->flags;
        if (who == CKU_SO)
            info->state = CKS_RW_SO_FUNCTIONS;
        else if (who == CKU_USER)
            info->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
        else
            info->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ login and PINs */

static CK_RV pin_secret(CK_UTF8CHAR_PTR pin, CK_ULONG len, tk_secret *out)
{
    if (!pin && len)
        return CKR_ARGUMENTS_BAD;
    if (!pin)
        return CKR_ARGUMENTS_BAD;   /* no protected authentication path */
    if (len < P11_MIN_PIN || len > P11_MAX_PIN)
        return CKR_PIN_LEN_RANGE;
    return tk_secret_set(out, pin, len) == TK_OK ? CKR_OK : CKR_HOST_MEMORY;
}

/* The session and its (initialised) token; the store is refreshed. */
static CK_RV session_token(CK_SESSION_HANDLE h, p11_session **s, p11_token **tok)
{
    CK_RV rv;

    if (!(*s = p11_session_get(h)))
        return CKR_SESSION_HANDLE_INVALID;
    if ((rv = p11_refresh()) != CKR_OK)
        return rv;
    if (!(*s)->token_id)
        return CKR_USER_PIN_NOT_INITIALIZED;
    if (!(*tok = p11_token_by_id((*s)->token_id)))
        return CKR_DEVICE_REMOVED;   /* deleted by another process */
    return CKR_OK;
}

CK_RV C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE who, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    p11_session *s;
    p11_token *tok;
    tk_secret secret;
    tk_rc rc;
    CK_RV rv;

    memset(&secret, 0, sizeof(secret));
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = session_token(h, &s, &tok)) != CKR_OK)
        goto out;
    if (who != CKU_USER && who != CKU_SO) {
        /* CKU_CONTEXT_SPECIFIC: no key here needs a login per operation. */
        rv = who == CKU_CONTEXT_SPECIFIC ? CKR_OPERATION_NOT_INITIALIZED : CKR_USER_TYPE_INVALID;
        goto out;
    }
    CK_USER_TYPE cur = p11_login_role(s->token_id);
    if (cur != NO_ROLE) {
        rv = cur == who ? CKR_USER_ALREADY_LOGGED_IN : CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
        goto out;
    }
    if (who == CKU_USER && !tok->tok->user_pub.len) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    if (who == CKU_SO) {
        for (size_t i = 0; i < p11.nsessions; i++) {
            if (p11.sessions[i]->token_id == s->token_id &&
                !(p11.sessions[i]->flags & CKF_RW_SESSION)) {
                rv = CKR_SESSION_READ_ONLY_EXISTS;
                goto out;
            }
        }
    }
    if ((rv = pin_secret(pin, len, &secret)) != CKR_OK)
        goto out;
    rc = who == CKU_SO ? tk_ks_login_so(p11.ks, s->token_id, &secret)
                       : tk_ks_login(p11.ks, s->token_id, &secret);
    if (rc != TK_OK) {
        /* The failure counters changed: the token flags must show it. */
        p11.dirty = true;
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "login");
        goto out;
    }
    if ((rv = login_set(s->token_id, who)) != CKR_OK)
        tk_ks_logout(p11.ks, s->token_id);
    p11.dirty = true;   /* a reset fail counter */
out:
    tk_secret_clear(&secret);
    p11_leave();
    return rv;
}

CK_RV C_Logout(CK_SESSION_HANDLE h)
{
    p11_session *s;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (!s->token_id || p11_login_role(s->token_id) == NO_ROLE) {
        rv = CKR_USER_NOT_LOGGED_IN;
    } else {
        login_drop(s->token_id);
        /* Operations on private objects end with the login. */
        for (size_t i = 0; i < p11.nsessions; i++)
            if (p11.sessions[i]->token_id == s->token_id)
                p11_mech_free_ops(p11.sessions[i]);
    }
    p11_leave();
    return rv;
}

CK_RV C_InitPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
    p11_session *s;
    p11_token *tok;
    tk_secret secret;
    tk_rc rc;
    CK_RV rv;

    memset(&secret, 0, sizeof(secret));
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = session_token(h, &s, &tok)) != CKR_OK)
        goto out;
    if ((rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    if (p11_login_role(s->token_id) != CKU_SO) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    if ((rv = pin_secret(pin, len, &secret)) != CKR_OK)
        goto out;
    if ((rc = tk_ks_init_pin(p11.ks, s->token_id, &secret)) != TK_OK)
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "setting the user PIN");
    p11.dirty = true;
out:
    tk_secret_clear(&secret);
    p11_leave();
    return rv;
}

CK_RV C_SetPIN(CK_SESSION_HANDLE h, CK_UTF8CHAR_PTR old_pin, CK_ULONG old_len,
               CK_UTF8CHAR_PTR new_pin, CK_ULONG new_len)
{
    p11_session *s;
    p11_token *tok;
    tk_secret o, n;
    tk_rc rc;
    CK_RV rv;

    memset(&o, 0, sizeof(o));
    memset(&n, 0, sizeof(n));
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = session_token(h, &s, &tok)) != CKR_OK)
        goto out;
    if ((rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    if ((rv = pin_secret(old_pin, old_len, &o)) != CKR_OK ||
        (rv = pin_secret(new_pin, new_len, &n)) != CKR_OK)
        goto out;
    CK_USER_TYPE who = p11_login_role(s->token_id);
    int which = who == CKU_SO ? 1 : 0;
    if (which == 0 && !tok->tok->user_pub.len) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    rc = tk_ks_set_pin(p11.ks, s->token_id, which, &o, &n);
    p11.dirty = true;
    if (rc != TK_OK) {
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "changing the PIN");
        goto out;
    }
    /* tk_ks_set_pin leaves the token secret in memory; match our role to it. */
    if (who == NO_ROLE)
        tk_ks_logout(p11.ks, s->token_id);
out:
    tk_secret_clear(&o);
    tk_secret_clear(&n);
    p11_leave();
    return rv;
}

/* The label of C_InitToken: 32 blank-padded bytes. */
static CK_RV token_label(const CK_UTF8CHAR *label, char out[33])
{
    size_t n = 32;

    if (!label)
        return CKR_ARGUMENTS_BAD;
    memcpy(out, label, 32);
    while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\0'))
        n--;
    out[n] = '\0';
    if (n == 0 || memchr(out, '\0', n))
        return CKR_ARGUMENTS_BAD;
    return CKR_OK;
}

CK_RV C_InitToken(CK_SLOT_ID slot, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label)
{
    p11_token *tok, *other = NULL;
    tk_secret so;
    char name[33];
    int64_t old_id = 0, new_id = 0;
    tk_ks *ks;
    tk_rc rc = TK_OK;
    CK_RV rv;

    memset(&so, 0, sizeof(so));
    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = token_label(label, name)) != CKR_OK || (rv = pin_secret(pin, len, &so)) != CKR_OK)
        goto out;
    if ((rv = p11_refresh()) != CKR_OK || (rv = slot_token(slot, &tok)) != CKR_OK)
        goto out;
    old_id = tok ? tok->tok->id : 0;
    for (size_t i = 0; i < p11.nsessions; i++) {
        if (p11.sessions[i]->slot == slot) {
            rv = CKR_SESSION_EXISTS;
            goto out;
        }
    }
    for (size_t i = 0; i < p11.ntokens; i++)
        if (!strcmp(p11.tokens[i].tok->label, name) && &p11.tokens[i] != tok)
            other = &p11.tokens[i];
    if (other) {
        tk_info("pkcs11: C_InitToken: token '%s' already exists in slot %lu; initialise it "
                "there", name, (unsigned long)other->slot);
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (tok && !tok->tok->so_pub.len && (tok->tok->user_pub.len || token_has_keys(old_id))) {
        /* Without an SO PIN nobody can prove the right to wipe the token's keys here. */
        tk_info("pkcs11: C_InitToken: token '%s' has no SO PIN; it cannot be "
                "re-initialised through PKCS#11 (use `tpmkeys delete`)", tok->tok->label);
        rv = CKR_PIN_INCORRECT;
        goto out;
    }
    if ((rv = p11_ks(true, &ks)) != CKR_OK)
        goto out;
    if (tok && strcmp(tok->tok->label, name)) {
        /* Re-initialisation under a new label: the old token goes, with the SO's consent. */
        if (tok->tok->so_pub.len && (rc = tk_ks_login_so(ks, old_id, &so)) != TK_OK)
            goto fail;
        tk_ks_logout(ks, old_id);
        if ((rc = tk_token_delete(tk_ks_store(ks), old_id)) != TK_OK)
            goto fail;
    }
    if ((rc = tk_ks_init_token(ks, name, &so, &new_id)) != TK_OK)
        goto fail;
    if (old_id)
        login_drop(old_id);
    rv = map_slot(slot, new_id);
    p11.dirty = true;
    goto out;
fail:
    p11.dirty = true;
    rv = p11_fail(rc, CKR_DEVICE_ERROR, "initialising the token");
out:
    tk_secret_clear(&so);
    p11_leave();
    return rv;
}
