/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Mechanisms.  Private-key operations go to the TPM through the keystore:
 *   - PKCS#1 v1.5 signatures of a SHA-1/256/384/512 digest: TPM2_Sign (RSASSA);
 *     anything else (raw CKM_RSA_PKCS data, SHA-224, X.509 raw) is padded here and
 *     sent through the raw RSA operation; PSS goes to the store's tk_ks_sign_pss;
 *   - ECDSA: TPM2_Sign; the r||s encoding PKCS#11 wants is made here;
 *   - RSA decryption (PKCS#1, OAEP) and ECDH: TPM2_RSA_Decrypt / TPM2_ECDH_ZGen.
 * Public-key operations (verify, encrypt) and digests are done in software.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "p11.h"

#define ACC_MAX 16384   /* multi-part input of single-part mechanisms */

/* ------------------------------------------------------------------ the mechanism table */

enum { KT_NONE = -1 };

typedef struct {
    CK_MECHANISM_TYPE type;
    long kt;                   /* CKK_RSA, CKK_EC or KT_NONE (digests) */
    CK_FLAGS flags;
    const EVP_MD *(*md)(void); /* hashing mechanisms */
} mech_info;

#define RSA_SV (CKF_SIGN | CKF_VERIFY)
#define EC_F (CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS)

static const mech_info mechs[] = {
    { CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA, CKF_GENERATE_KEY_PAIR, NULL },
    { CKM_RSA_PKCS, CKK_RSA, RSA_SV | CKF_ENCRYPT | CKF_DECRYPT, NULL },
    { CKM_RSA_X_509, CKK_RSA, RSA_SV | CKF_ENCRYPT | CKF_DECRYPT, NULL },
    { CKM_RSA_PKCS_OAEP, CKK_RSA, CKF_ENCRYPT | CKF_DECRYPT, NULL },
    { CKM_RSA_PKCS_PSS, CKK_RSA, RSA_SV, NULL },
    { CKM_SHA1_RSA_PKCS, CKK_RSA, RSA_SV, EVP_sha1 },
    { CKM_SHA224_RSA_PKCS, CKK_RSA, RSA_SV, EVP_sha224 },
    { CKM_SHA256_RSA_PKCS, CKK_RSA, RSA_SV, EVP_sha256 },
    { CKM_SHA384_RSA_PKCS, CKK_RSA, RSA_SV, EVP_sha384 },
    { CKM_SHA512_RSA_PKCS, CKK_RSA, RSA_SV, EVP_sha512 },
    { CKM_SHA1_RSA_PKCS_PSS, CKK_RSA, RSA_SV, EVP_sha1 },
    { CKM_SHA224_RSA_PKCS_PSS, CKK_RSA, RSA_SV, EVP_sha224 },
    { CKM_SHA256_RSA_PKCS_PSS, CKK_RSA, RSA_SV, EVP_sha256 },
    { CKM_SHA384_RSA_PKCS_PSS, CKK_RSA, RSA_SV, EVP_sha384 },
    { CKM_SHA512_RSA_PKCS_PSS, CKK_RSA, RSA_SV, EVP_sha512 },
    { CKM_EC_KEY_PAIR_GEN, CKK_EC, CKF_GENERATE_KEY_PAIR | EC_F, NULL },
    { CKM_ECDSA, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, NULL },
    { CKM_ECDSA_SHA1, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, EVP_sha1 },
    { CKM_ECDSA_SHA224, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, EVP_sha224 },
    { CKM_ECDSA_SHA256, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, EVP_sha256 },
    { CKM_ECDSA_SHA384, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, EVP_sha384 },
    { CKM_ECDSA_SHA512, CKK_EC, CKF_SIGN | CKF_VERIFY | EC_F, EVP_sha512 },
    { CKM_ECDH1_DERIVE, CKK_EC, CKF_DERIVE | EC_F, NULL },
    { CKM_SHA_1, KT_NONE, CKF_DIGEST, EVP_sha1 },
    { CKM_SHA224, KT_NONE, CKF_DIGEST, EVP_sha224 },
    { CKM_SHA256, KT_NONE, CKF_DIGEST, EVP_sha256 },
    { CKM_SHA384, KT_NONE, CKF_DIGEST, EVP_sha384 },
    { CKM_SHA512, KT_NONE, CKF_DIGEST, EVP_sha512 },
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

static const mech_info *mech_find(CK_MECHANISM_TYPE type)
{
    for (size_t i = 0; i < NMECHS; i++)
        if (mechs[i].type == type)
            return &mechs[i];
    return NULL;
}

static const EVP_MD *md_of_ckm(CK_MECHANISM_TYPE hash)
{
    switch (hash) {
    case CKM_SHA_1: return EVP_sha1();
    case CKM_SHA224: return EVP_sha224();
    case CKM_SHA256: return EVP_sha256();
    case CKM_SHA384: return EVP_sha384();
    case CKM_SHA512: return EVP_sha512();
    default: return NULL;
    }
}

static const EVP_MD *md_of_mgf(CK_RSA_PKCS_MGF_TYPE mgf)
{
    switch (mgf) {
    case CKG_MGF1_SHA1: return EVP_sha1();
    case CKG_MGF1_SHA224: return EVP_sha224();
    case CKG_MGF1_SHA256: return EVP_sha256();
    case CKG_MGF1_SHA384: return EVP_sha384();
    case CKG_MGF1_SHA512: return EVP_sha512();
    default: return NULL;
    }
}

static TPM2_ALG_ID tpm_hash_of(const EVP_MD *md)
{
    switch (EVP_MD_get_type(md)) {
    case NID_sha1: return TPM2_ALG_SHA1;
    case NID_sha256: return TPM2_ALG_SHA256;
    case NID_sha384: return TPM2_ALG_SHA384;
    case NID_sha512: return TPM2_ALG_SHA512;
    default: return TPM2_ALG_NULL;
    }
}

/* Key sizes the TPM confirms (TestParms, cached by the library); without a TPM
 * to ask, the sizes tpmkeys can make at most. */
static void key_sizes(long kt, CK_ULONG *min, CK_ULONG *max)
{
    tk_ks *ks;
    bool asked = p11_ks(false, &ks) == CKR_OK;

    tk_clear_error();
    if (kt == CKK_RSA) {
        *min = 2048;
        *max = 2048;
        if (!asked || tk_tpm_supports(tk_ks_tpm(ks), TK_ALG_RSA4096) == TK_OK)
            *max = 4096;
        else if (tk_tpm_supports(tk_ks_tpm(ks), TK_ALG_RSA3072) == TK_OK)
            *max = 3072;
    } else {
        *min = 256;
        *max = 384;
        if (!asked || tk_tpm_supports(tk_ks_tpm(ks), TK_ALG_ECC_P521) == TK_OK)
            *max = 521;
    }
    tk_clear_error();
}

CK_RV C_GetMechanismList(CK_SLOT_ID slot, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!count) {
        rv = CKR_ARGUMENTS_BAD;
    } else if ((rv = p11_refresh()) == CKR_OK) {
        bool known = slot == p11.empty_slot;
        for (size_t i = 0; i < p11.ntokens; i++)
            known |= p11.tokens[i].slot == slot;
        if (!known)
            rv = CKR_SLOT_ID_INVALID;
        else if (list && *count < NMECHS)
            rv = CKR_BUFFER_TOO_SMALL;
        else if (list)
            for (size_t i = 0; i < NMECHS; i++)
                list[i] = mechs[i].type;
        if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
            *count = NMECHS;
    }
    p11_leave();
    return rv;
}

CK_RV C_GetMechanismInfo(CK_SLOT_ID slot, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
    const mech_info *m;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!info) {
        rv = CKR_ARGUMENTS_BAD;
    } else if ((rv = p11_refresh()) == CKR_OK) {
        bool known = slot == p11.empty_slot;
        for (size_t i = 0; i < p11.ntokens; i++)
            known |= p11.tokens[i].slot == slot;
        if (!known) {
            rv = CKR_SLOT_ID_INVALID;
        } else if (!(m = mech_find(type))) {
            rv = CKR_MECHANISM_INVALID;
        } else {
            memset(info, 0, sizeof(*info));
            info->flags = m->flags;
            if (m->kt != KT_NONE) {
                info->flags |= CKF_HW;
                key_sizes(m->kt, &info->ulMinKeySize, &info->ulMaxKeySize);
            }
        }
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ operation state */

void p11_op_reset(p11_op *op)
{
    tk_key_free(op->key);
    EVP_PKEY_free(op->pkey);
    EVP_MD_CTX_free(op->mdctx);
    if (op->acc.data)
        OPENSSL_cleanse(op->acc.data, op->acc.len);
    tk_buf_free(&op->acc);
    if (op->result.data)
        OPENSSL_cleanse(op->result.data, op->result.len);
    tk_buf_free(&op->result);
    tk_buf_free(&op->label);
    memset(op, 0, sizeof(*op));
}

void p11_mech_free_ops(p11_session *s)
{
    for (int i = 0; i < P11_OP_MAX; i++)
        p11_op_reset(&s->ops[i]);
}

static CK_RV op_session(CK_SESSION_HANDLE h, int which, bool want_active, p11_session **s,
                        p11_op **op)
{
    if (!(*s = p11_session_get(h)))
        return CKR_SESSION_HANDLE_INVALID;
    *op = &(*s)->ops[which];
    if (want_active && !(*op)->active)
        return CKR_OPERATION_NOT_INITIALIZED;
    if (!want_active && (*op)->active)
        return CKR_OPERATION_ACTIVE;
    return CKR_OK;
}

static CK_RV acc_add(p11_op *op, const uint8_t *d, size_t n)
{
    uint8_t *nd;

    if (!n)
        return CKR_OK;
    if (op->acc.len + n > ACC_MAX)
        return CKR_DATA_LEN_RANGE;
    if (!(nd = malloc(op->acc.len + n)))
        return CKR_HOST_MEMORY;
    if (op->acc.len)
        memcpy(nd, op->acc.data, op->acc.len);
    memcpy(nd + op->acc.len, d, n);
    if (op->acc.data)
        OPENSSL_cleanse(op->acc.data, op->acc.len);
    free(op->acc.data);
    op->acc.data = nd;
    op->acc.len += n;
    return CKR_OK;
}

static bool pss_mech(CK_MECHANISM_TYPE t)
{
    return t == CKM_RSA_PKCS_PSS || t == CKM_SHA1_RSA_PKCS_PSS || t == CKM_SHA224_RSA_PKCS_PSS ||
           t == CKM_SHA256_RSA_PKCS_PSS || t == CKM_SHA384_RSA_PKCS_PSS ||
           t == CKM_SHA512_RSA_PKCS_PSS;
}

static CK_RV pss_params(p11_op *op, const CK_MECHANISM *m)
{
    const CK_RSA_PKCS_PSS_PARAMS *p = m->pParameter;

    if (!p || m->ulParameterLen != sizeof(*p))
        return CKR_MECHANISM_PARAM_INVALID;
    op->param_md = md_of_ckm(p->hashAlg);
    op->mgf_md = md_of_mgf(p->mgf);
    if (!op->param_md || !op->mgf_md)
        return CKR_MECHANISM_PARAM_INVALID;
    if (op->md && EVP_MD_get_type(op->md) != EVP_MD_get_type(op->param_md))
        return CKR_MECHANISM_PARAM_INVALID;
    op->salt_len = p->sLen;
    return CKR_OK;
}

static CK_RV oaep_params(p11_op *op, const CK_MECHANISM *m)
{
    const CK_RSA_PKCS_OAEP_PARAMS *p = m->pParameter;

    if (!p || m->ulParameterLen != sizeof(*p))
        return CKR_MECHANISM_PARAM_INVALID;
    op->param_md = md_of_ckm(p->hashAlg);
    op->mgf_md = md_of_mgf(p->mgf);
    if (!op->param_md || !op->mgf_md)
        return CKR_MECHANISM_PARAM_INVALID;
    if (p->source != 0 && p->source != CKZ_DATA_SPECIFIED)
        return CKR_MECHANISM_PARAM_INVALID;
    if (p->ulSourceDataLen) {
        if (!p->pSourceData)
            return CKR_MECHANISM_PARAM_INVALID;
        if (tk_buf_set(&op->label, p->pSourceData, p->ulSourceDataLen) != TK_OK)
            return CKR_HOST_MEMORY;
    }
    return CKR_OK;
}

/* What the key's TPM attributes allow: a key restricted to RSA-PSS with one digest (made by
 * `openssl genpkey -algorithm RSA-PSS` or other tools) signs only that, and the TPM would
 * refuse anything else with a bare error code. */
static CK_RV tpm_allows(const p11_op *op)
{
    TPM2B_PUBLIC pub;
    TPM2_ALG_ID h;

    if (tk_alg_type(op->key->alg) != TK_KEY_RSA)
        return CKR_OK;
    if (tk_public_unmarshal(&op->key->pub, &pub) != TK_OK) {
        tk_clear_error();
        return CKR_OK;  /* the operation reports the damaged key */
    }
    if (!(h = tk_public_pss_hash(&pub)))
        return CKR_OK;
    if (!pss_mech(op->mech) || tpm_hash_of(op->param_md) != h) {
        tk_info("pkcs11: key '%s' signs only RSA-PSS with its own digest", op->key->label);
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    }
    return CKR_OK;
}

/* The stored key behind a private key object, from the memo while the store is
 * unchanged (p11_refresh, called first, drops the memo when it reloads). */
static CK_RV op_key(const p11_object *o, tk_key **out)
{
    tk_key *k = p11.key_memo;
    CK_RV rv;

    if (!o->mem && o->key_id && k && k->id == o->key_id)
        return tk_key_dup(k, out) == TK_OK ? CKR_OK : CKR_HOST_MEMORY;
    if ((rv = p11_object_key(o, out)) != CKR_OK || o->mem || !o->key_id)
        return rv;
    tk_key_free(p11.key_memo);
    if (tk_key_dup(*out, &p11.key_memo) != TK_OK) {
        p11.key_memo = NULL;
        tk_clear_error();
    }
    return CKR_OK;
}

/* CKA_ALLOWED_MECHANISMS, when a key has a non-empty one, names all it may be used with. */
static bool mech_allowed(const p11_object *o, CK_MECHANISM_TYPE mech)
{
    const p11_attr *a = p11_attrs_get(&o->attrs, CKA_ALLOWED_MECHANISMS);
    CK_MECHANISM_TYPE t;

    if (!a || !a->len)
        return true;
    for (size_t i = 0; i + sizeof(t) <= a->len; i += sizeof(t)) {
        memcpy(&t, a->val + i, sizeof(t));
        if (t == mech)
            return true;
    }
    return false;
}

/* Common part of every *Init with a key: mechanism, key object and its usage flag. */
static CK_RV op_init(p11_session *s, p11_op *op, const CK_MECHANISM *m, CK_OBJECT_HANDLE kh,
                     CK_FLAGS need, CK_ATTRIBUTE_TYPE usage, p11_object **keyobj)
{
    const mech_info *mi;
    p11_object *o;
    const p11_attr *a;
    CK_RV rv;

    if (!m)
        return CKR_ARGUMENTS_BAD;
    if ((rv = p11_refresh()) != CKR_OK)
        return rv;
    if (!(mi = mech_find(m->mechanism)) || !(mi->flags & need) || mi->kt == KT_NONE)
        return CKR_MECHANISM_INVALID;
    if (!(o = p11_object_get(s, kh))) {
        /* A PIN key is hidden before login: say what is missing. */
        for (size_t i = 0; i < p11.nobjs; i++)
            if (p11.objs[i]->handle == kh && p11.objs[i]->token_id == s->token_id)
                return CKR_USER_NOT_LOGGED_IN;
        return CKR_KEY_HANDLE_INVALID;
    }
    if (o->cls != CKO_PRIVATE_KEY && o->cls != CKO_PUBLIC_KEY)
        return CKR_KEY_TYPE_INCONSISTENT;
    if ((long)o->key_type != mi->kt)
        return CKR_KEY_TYPE_INCONSISTENT;
    a = p11_attrs_get(&o->attrs, usage);
    if (!a || a->len != 1 || a->val[0] != CK_TRUE || !mech_allowed(o, m->mechanism))
        return CKR_KEY_FUNCTION_NOT_PERMITTED;
    op->mech = m->mechanism;
    op->md = mi->md ? mi->md() : NULL;
    if (pss_mech(m->mechanism) && (rv = pss_params(op, m)) != CKR_OK)
        return rv;
    if (m->mechanism == CKM_RSA_PKCS_OAEP && (rv = oaep_params(op, m)) != CKR_OK)
        return rv;
    if (op->md) {
        if (!(op->mdctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(op->mdctx, op->md, NULL))
            return CKR_HOST_MEMORY;
    }
    if (o->cls == CKO_PRIVATE_KEY) {
        if (o->is_private && !p11_user_logged_in(s->token_id))
            return CKR_USER_NOT_LOGGED_IN;
        if ((rv = op_key(o, &op->key)) != CKR_OK)
            return rv;
        if ((rv = tpm_allows(op)) != CKR_OK)
            return rv;
    } else if ((rv = p11_object_pkey(o, &op->pkey)) != CKR_OK) {
        return rv;
    }
    *keyobj = o;
    op->active = true;
    return CKR_OK;
}

/* ------------------------------------------------------------------ key facts */

static size_t key_modulus_bytes(const tk_key *k)
{
    return (size_t)(tk_alg_bits(k->alg) + 7) / 8;
}

/* Output size of a private-key operation. */
static size_t op_out_len(const p11_op *op)
{
    if (op->key) {
        if (tk_alg_type(op->key->alg) == TK_KEY_EC)
            return 2 * key_modulus_bytes(op->key);
        return key_modulus_bytes(op->key);
    }
    if (EVP_PKEY_get_base_id(op->pkey) == EVP_PKEY_EC)
        return 2 * (size_t)((EVP_PKEY_get_bits(op->pkey) + 7) / 8);
    return (size_t)EVP_PKEY_get_size(op->pkey);
}

/* ------------------------------------------------------------------ RSA padding (software) */

static const struct {
    int nid;
    uint8_t prefix[19];
    size_t len;
} digest_infos[] = {
    { NID_sha1, { 0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00,
                  0x04, 0x14 }, 15 },
    { NID_sha224, { 0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x04, 0x05, 0x00, 0x04, 0x1c }, 19 },
    { NID_sha256, { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x01, 0x05, 0x00, 0x04, 0x20 }, 19 },
    { NID_sha384, { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x02, 0x05, 0x00, 0x04, 0x30 }, 19 },
    { NID_sha512, { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04,
                    0x02, 0x03, 0x05, 0x00, 0x04, 0x40 }, 19 },
};

/* EMSA-PKCS1-v1_5 block type 1 around t (RFC 8017 9.2, step 4-5). */
static CK_RV pkcs1_type1(const uint8_t *t, size_t tlen, uint8_t *em, size_t k)
{
    if (tlen + 11 > k)
        return CKR_DATA_LEN_RANGE;
    em[0] = 0x00;
    em[1] = 0x01;
    memset(em + 2, 0xff, k - tlen - 3);
    em[k - tlen - 1] = 0x00;
    memcpy(em + k - tlen, t, tlen);
    return CKR_OK;
}

/* ------------------------------------------------------------------ private-key operations */

static CK_RV ks_fail(tk_rc rc, CK_RV unsupported, const char *what)
{
    if (rc == TK_ERR_INVALID)
        return p11_fail_as(rc, CKR_DATA_INVALID, what);
    return p11_fail(rc, unsupported, what);
}

static CK_RV rsa_raw(const tk_key *k, const uint8_t *in, size_t k_len, tk_buf *sig)
{
    tk_rc rc = tk_ks_rsa_raw(p11.ks, k, in, k_len, sig);
    return rc == TK_OK ? CKR_OK : ks_fail(rc, CKR_KEY_FUNCTION_NOT_PERMITTED, "RSA signature");
}

static CK_RV rsa_sign_digest(const tk_key *k, const EVP_MD *md, const uint8_t *dig, size_t dlen,
                             tk_buf *sig)
{
    size_t klen = key_modulus_bytes(k);
    uint8_t t[19 + EVP_MAX_MD_SIZE], em[512];
    TPM2_ALG_ID th = tpm_hash_of(md);
    size_t i, tlen;
    CK_RV rv;

    if (th != TPM2_ALG_NULL) {
        tk_rc rc = tk_ks_sign(p11.ks, k, TK_SIG_RSASSA, th, dig, dlen, sig);
        return rc == TK_OK ? CKR_OK : ks_fail(rc, CKR_MECHANISM_INVALID, "RSA signature");
    }
    for (i = 0; i < sizeof(digest_infos) / sizeof(digest_infos[0]); i++)
        if (digest_infos[i].nid == EVP_MD_get_type(md))
            break;
    if (i == sizeof(digest_infos) / sizeof(digest_infos[0]) || klen > sizeof(em))
        return CKR_MECHANISM_INVALID;
    memcpy(t, digest_infos[i].prefix, digest_infos[i].len);
    memcpy(t + digest_infos[i].len, dig, dlen);
    tlen = digest_infos[i].len + dlen;
    if ((rv = pkcs1_type1(t, tlen, em, klen)) != CKR_OK)
        return rv;
    return rsa_raw(k, em, klen, sig);
}

/* CKM_RSA_PKCS signing: a DigestInfo the TPM knows goes to TPM2_Sign, the rest raw. */
static CK_RV rsa_pkcs_sign(const tk_key *k, const uint8_t *d, size_t dlen, tk_buf *sig)
{
    size_t klen = key_modulus_bytes(k);
    uint8_t em[512];
    CK_RV rv;

    for (size_t i = 0; i < sizeof(digest_infos) / sizeof(digest_infos[0]); i++) {
        size_t pl = digest_infos[i].len;
        const EVP_MD *md = EVP_get_digestbynid(digest_infos[i].nid);
        if (md && dlen == pl + (size_t)EVP_MD_get_size(md) &&
            !memcmp(d, digest_infos[i].prefix, pl) && tpm_hash_of(md) != TPM2_ALG_NULL)
            return rsa_sign_digest(k, md, d + pl, dlen - pl, sig);
    }
    if (klen > sizeof(em))
        return CKR_KEY_SIZE_RANGE;
    if ((rv = pkcs1_type1(d, dlen, em, klen)) != CKR_OK)
        return rv;
    return rsa_raw(k, em, klen, sig);
}

/* An ECDSA digest the TPM takes: truncated to the order's size, then left-padded with
 * zeros to a digest size the TPM knows (same integer, same signature). */
static CK_RV ecdsa_digest(const tk_key *k, const uint8_t *d, size_t dlen, uint8_t *out,
                          size_t *outlen, TPM2_ALG_ID *hash)
{
    static const struct { size_t len; TPM2_ALG_ID alg; } sizes[] = {
        { 20, TPM2_ALG_SHA1 }, { 32, TPM2_ALG_SHA256 }, { 48, TPM2_ALG_SHA384 },
        { 64, TPM2_ALG_SHA512 },
    };
    size_t order = key_modulus_bytes(k);
    int bits = tk_alg_bits(k->alg);

    if (dlen > order || (bits % 8 && dlen == order)) {
        if (bits % 8)
            return CKR_DATA_LEN_RANGE;   /* P-521 with a digest over 64 bytes */
        dlen = order;                     /* leftmost bits, as ECDSA does */
    }
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        if (sizes[i].len >= dlen && sizes[i].len <= order) {
            memset(out, 0, sizes[i].len);
            memcpy(out + sizes[i].len - dlen, d, dlen);
            *outlen = sizes[i].len;
            *hash = sizes[i].alg;
            return CKR_OK;
        }
    }
    return CKR_DATA_LEN_RANGE;
}

/* PKCS#11's ECDSA signature is r || s, each the size of the curve: the store returns
 * that form directly. */
static CK_RV ecdsa_sign(const tk_key *k, const uint8_t *d, size_t dlen, tk_buf *sig)
{
    uint8_t dig[64];
    size_t diglen = 0;
    TPM2_ALG_ID hash = TPM2_ALG_NULL;
    tk_buf out = { 0 };
    CK_RV rv;
    tk_rc rc;

    if ((rv = ecdsa_digest(k, d, dlen, dig, &diglen, &hash)) != CKR_OK)
        return rv;
    if ((rc = tk_ks_sign(p11.ks, k, TK_SIG_ECDSA_P1363, hash, dig, diglen, &out)) != TK_OK)
        return ks_fail(rc, CKR_MECHANISM_INVALID, "ECDSA signature");
    if (out.len != 2 * key_modulus_bytes(k)) {
        tk_buf_free(&out);
        return CKR_DEVICE_ERROR;
    }
    tk_buf_free(sig);
    *sig = out;
    return CKR_OK;
}

/* The whole signature over data (single part) or the collected digest/input. */
static CK_RV sign_compute(p11_op *op, const uint8_t *d, size_t dlen, tk_buf *sig)
{
    const tk_key *k = op->key;
    uint8_t dig[EVP_MAX_MD_SIZE], em[512];
    unsigned int diglen = 0;
    size_t klen = key_modulus_bytes(k);

    if (op->mdctx) {
        if (d && !EVP_DigestUpdate(op->mdctx, d, dlen))
            return CKR_FUNCTION_FAILED;
        if (!EVP_DigestFinal_ex(op->mdctx, dig, &diglen))
            return CKR_FUNCTION_FAILED;
        d = dig;
        dlen = diglen;
    }
    if (tk_alg_type(k->alg) == TK_KEY_EC)
        return ecdsa_sign(k, d, dlen, sig);
    if (klen > sizeof(em))
        return CKR_KEY_SIZE_RANGE;
    switch (op->mech) {
    case CKM_RSA_PKCS:
        return rsa_pkcs_sign(k, d, dlen, sig);
    case CKM_RSA_X_509:
        if (dlen > klen)
            return CKR_DATA_LEN_RANGE;
        memset(em, 0, klen);
        memcpy(em + klen - dlen, d, dlen);
        return rsa_raw(k, em, klen, sig);
    default:
        break;
    }
    if (pss_mech(op->mech)) {
        size_t emlen = ((size_t)tk_alg_bits(k->alg) - 1 + 7) / 8;
        if (dlen != (size_t)EVP_MD_get_size(op->param_md))
            return CKR_DATA_LEN_RANGE;
        if (emlen < dlen + 2 || op->salt_len > emlen - dlen - 2)
            return CKR_MECHANISM_PARAM_INVALID;
        tk_rc rc = tk_ks_sign_pss(p11.ks, k, op->param_md, op->mgf_md, op->salt_len, d, dlen,
                                  sig);
        return rc == TK_OK ? CKR_OK
                           : ks_fail(rc, CKR_MECHANISM_PARAM_INVALID, "RSA-PSS signature");
    }
    return rsa_sign_digest(k, op->md, d, dlen, sig);
}

/* Length query / buffer check / copy-out, the PKCS#11 way. */
static CK_RV give(const tk_buf *res, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    if (!out) {
        *outlen = res->len;
        return CKR_OK;
    }
    if (*outlen < res->len) {
        *outlen = res->len;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(out, res->data, res->len);
    *outlen = res->len;
    return CKR_OK;
}

/* Run compute once, keep the result for a retry after CKR_BUFFER_TOO_SMALL, and end the
 * operation when the caller got it (or on an error). */
typedef CK_RV (*compute_fn)(p11_op *op, const uint8_t *d, size_t dlen, tk_buf *out);

static CK_RV finish(p11_op *op, compute_fn fn, const uint8_t *d, size_t dlen, size_t maxlen,
                    CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    CK_RV rv;

    if (!outlen) {
        p11_op_reset(op);
        return CKR_ARGUMENTS_BAD;
    }
    if (!op->have_result) {
        if (!out && maxlen) {
            *outlen = maxlen;   /* length query before the (TPM) work */
            return CKR_OK;
        }
        rv = fn(op, d, dlen, &op->result);
        if (rv != CKR_OK) {
            p11_op_reset(op);
            return rv;
        }
        op->have_result = true;
    }
    rv = give(&op->result, out, outlen);
    if (rv == CKR_OK && out)
        p11_op_reset(op);
    return rv;
}

/* ------------------------------------------------------------------ sign */

CK_RV C_SignInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    p11_session *s;
    p11_op *op;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_SIGN, false, &s, &op)) == CKR_OK) {
        rv = op_init(s, op, m, key, CKF_SIGN, CKA_SIGN, &o);
        if (rv == CKR_OK && !op->key)
            rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

CK_RV C_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR sig,
             CK_ULONG_PTR siglen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_SIGN, true, &s, &op)) == CKR_OK) {
        if (!d && dlen) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            rv = finish(op, sign_compute, d, dlen, op_out_len(op), sig, siglen);
        }
    }
    p11_leave();
    return rv;
}

static CK_RV update(int which, CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, which, true, &s, &op)) == CKR_OK) {
        if (!d && dlen)
            rv = CKR_ARGUMENTS_BAD;
        else if (op->mdctx)
            rv = EVP_DigestUpdate(op->mdctx, d, dlen) ? CKR_OK : CKR_FUNCTION_FAILED;
        else
            rv = acc_add(op, d, dlen);
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

CK_RV C_SignUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen)
{
    return update(P11_OP_SIGN, h, d, dlen);
}

static CK_RV final_from_acc(int which, compute_fn fn, CK_SESSION_HANDLE h, CK_BYTE_PTR out,
                            CK_ULONG_PTR outlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, which, true, &s, &op)) == CKR_OK) {
        tk_buf acc = op->acc;
        size_t maxlen = which == P11_OP_DECRYPT ? 0 : op_out_len(op);
        rv = finish(op, fn, op->mdctx ? NULL : acc.data, op->mdctx ? 0 : acc.len, maxlen, out,
                    outlen);
    }
    p11_leave();
    return rv;
}

CK_RV C_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
    return final_from_acc(P11_OP_SIGN, sign_compute, h, sig, siglen);
}

/* ------------------------------------------------------------------ verify (software) */

static CK_RV verify_digest(p11_op *op, const uint8_t *d, size_t dlen, const uint8_t *sig,
                           size_t siglen)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey, NULL);
    uint8_t *der = NULL, rec[512], padded[512];
    size_t reclen = sizeof(rec);
    ECDSA_SIG *es = NULL;
    int derlen = 0, ok = 0;
    CK_RV rv = CKR_FUNCTION_FAILED;

    if (!ctx)
        return CKR_HOST_MEMORY;
    if (siglen != op_out_len(op)) {
        rv = CKR_SIGNATURE_LEN_RANGE;
        goto out;
    }
    if (EVP_PKEY_get_base_id(op->pkey) == EVP_PKEY_EC) {
        size_t c = siglen / 2;
        BIGNUM *r = BN_bin2bn(sig, (int)c, NULL), *s = BN_bin2bn(sig + c, (int)c, NULL);
        es = ECDSA_SIG_new();
        if (!r || !s || !es || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            goto out;
        }
        if ((derlen = i2d_ECDSA_SIG(es, &der)) <= 0 || EVP_PKEY_verify_init(ctx) <= 0)
            goto out;
        ok = EVP_PKEY_verify(ctx, der, (size_t)derlen, d, dlen);
    } else if (op->mech == CKM_RSA_PKCS || op->mech == CKM_RSA_X_509) {
        bool raw = op->mech == CKM_RSA_X_509;
        if (EVP_PKEY_verify_recover_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, raw ? RSA_NO_PADDING : RSA_PKCS1_PADDING) <= 0)
            goto out;
        ok = EVP_PKEY_verify_recover(ctx, rec, &reclen, sig, siglen) > 0;
        if (ok && raw) {
            if (dlen > siglen)
                ok = 0;
            else {
                memset(padded, 0, siglen);
                memcpy(padded + siglen - dlen, d, dlen);
                ok = reclen == siglen && !CRYPTO_memcmp(rec, padded, siglen);
            }
        } else if (ok) {
            ok = reclen == dlen && !CRYPTO_memcmp(rec, d, dlen);
        }
    } else {
        bool pss = pss_mech(op->mech);
        const EVP_MD *md = pss ? op->param_md : op->md;
        if (dlen != (size_t)EVP_MD_get_size(md)) {
            rv = CKR_DATA_LEN_RANGE;
            goto out;
        }
        if (EVP_PKEY_verify_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING
                                                  : RSA_PKCS1_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0 ||
            (pss && (EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf_md) <= 0 ||
                     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)op->salt_len) <= 0)))
            goto out;
        ok = EVP_PKEY_verify(ctx, sig, siglen, d, dlen);
    }
    rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
out:
    ERR_clear_error();
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

CK_RV C_VerifyInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    p11_session *s;
    p11_op *op;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_VERIFY, false, &s, &op)) == CKR_OK) {
        rv = op_init(s, op, m, key, CKF_VERIFY, CKA_VERIFY, &o);
        if (rv == CKR_OK && !op->pkey)
            rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

static CK_RV verify_end(p11_op *op, const uint8_t *d, size_t dlen, const uint8_t *sig,
                        size_t siglen)
{
    uint8_t dig[EVP_MAX_MD_SIZE];
    unsigned int diglen = 0;
    CK_RV rv;

    if (op->mdctx) {
        if ((d && !EVP_DigestUpdate(op->mdctx, d, dlen)) ||
            !EVP_DigestFinal_ex(op->mdctx, dig, &diglen)) {
            p11_op_reset(op);
            return CKR_FUNCTION_FAILED;
        }
        d = dig;
        dlen = diglen;
    }
    rv = verify_digest(op, d, dlen, sig, siglen);
    p11_op_reset(op);
    return rv;
}

CK_RV C_Verify(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR sig,
               CK_ULONG siglen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_VERIFY, true, &s, &op)) == CKR_OK) {
        if ((!d && dlen) || !sig) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            rv = verify_end(op, d, dlen, sig, siglen);
        }
    }
    p11_leave();
    return rv;
}

CK_RV C_VerifyUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen)
{
    return update(P11_OP_VERIFY, h, d, dlen);
}

CK_RV C_VerifyFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG siglen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_VERIFY, true, &s, &op)) == CKR_OK) {
        if (!sig) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            tk_buf acc = op->acc;
            op->acc.data = NULL;
            op->acc.len = 0;
            rv = verify_end(op, op->mdctx ? NULL : acc.data, op->mdctx ? 0 : acc.len, sig, siglen);
            tk_buf_free(&acc);
        }
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ encrypt (software) */

static CK_RV encrypt_compute(p11_op *op, const uint8_t *d, size_t dlen, tk_buf *out)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey, NULL);
    size_t klen = (size_t)EVP_PKEY_get_size(op->pkey), olen = klen;
    uint8_t *buf = malloc(klen), *padded = NULL, *label = NULL;
    int pad = op->mech == CKM_RSA_PKCS_OAEP ? RSA_PKCS1_OAEP_PADDING
            : op->mech == CKM_RSA_X_509     ? RSA_NO_PADDING
                                            : RSA_PKCS1_PADDING;
    CK_RV rv = CKR_DATA_LEN_RANGE;

    if (!ctx || !buf) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    if (pad == RSA_NO_PADDING) {
        /* Raw RSA takes a modulus-sized block. */
        if (dlen > klen || !(padded = calloc(1, klen)))
            goto out;
        memcpy(padded + klen - dlen, d, dlen);
        d = padded;
        dlen = klen;
    }
    if (EVP_PKEY_encrypt_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_padding(ctx, pad) <= 0)
        goto out;
    if (pad == RSA_PKCS1_OAEP_PADDING) {
        if (EVP_PKEY_CTX_set_rsa_oaep_md(ctx, op->param_md) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, op->mgf_md) <= 0)
            goto out;
        if (op->label.len) {
            if (!(label = OPENSSL_memdup(op->label.data, op->label.len)) ||
                EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, (int)op->label.len) <= 0) {
                OPENSSL_free(label);
                goto out;
            }
        }
    }
    if (EVP_PKEY_encrypt(ctx, buf, &olen, d, dlen) <= 0)
        goto out;
    tk_buf_free(out);
    out->data = buf;
    out->len = olen;
    buf = NULL;
    rv = CKR_OK;
out:
    ERR_clear_error();
    free(buf);
    free(padded);
    EVP_PKEY_CTX_free(ctx);
    return rv;
}

CK_RV C_EncryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    p11_session *s;
    p11_op *op;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_ENCRYPT, false, &s, &op)) == CKR_OK) {
        rv = op_init(s, op, m, key, CKF_ENCRYPT, CKA_ENCRYPT, &o);
        if (rv == CKR_OK && !op->pkey)
            rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

CK_RV C_Encrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR out,
                CK_ULONG_PTR outlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_ENCRYPT, true, &s, &op)) == CKR_OK) {
        if (!d && dlen) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            rv = finish(op, encrypt_compute, d, dlen, op_out_len(op), out, outlen);
        }
    }
    p11_leave();
    return rv;
}

/* Multi-part RSA encryption: the parts are joined and encrypted at the end. */
CK_RV C_EncryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR out,
                      CK_ULONG_PTR outlen)
{
    CK_RV rv;

    (void)out;
    if (!outlen)
        return CKR_ARGUMENTS_BAD;
    rv = update(P11_OP_ENCRYPT, h, d, dlen);
    if (rv == CKR_OK)
        *outlen = 0;
    return rv;
}

CK_RV C_EncryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    return final_from_acc(P11_OP_ENCRYPT, encrypt_compute, h, out, outlen);
}

/* ------------------------------------------------------------------ decrypt (TPM) */

/* Whether the TPM's own OAEP gives the answer: one hash for label and MGF1, and a label
 * the TPM takes as it is (empty, or a NUL-terminated string). */
static bool oaep_in_tpm(const p11_op *op)
{
    const uint8_t *l = op->label.data;
    size_t n = op->label.len;

    if (EVP_MD_get_type(op->param_md) != EVP_MD_get_type(op->mgf_md) ||
        tpm_hash_of(op->param_md) == TPM2_ALG_NULL)
        return false;
    return n == 0 || (l[n - 1] == 0 && !memchr(l, 0, n - 1));
}

/* EME-OAEP decoding (RFC 8017 7.1.2 step 3) of em (k bytes), without early exits on
 * the secret-dependent checks. */
static CK_RV oaep_decode(const p11_op *op, uint8_t *em, size_t k, tk_buf *out)
{
    uint8_t lhash[EVP_MAX_MD_SIZE];
    size_t hlen = (size_t)EVP_MD_get_size(op->param_md), msg = 0;
    unsigned bad, found = 0;
    uint8_t *db;

    if (k < 2 * hlen + 2)
        return CKR_ENCRYPTED_DATA_INVALID;
    if (!EVP_Digest(op->label.data ? op->label.data : (const uint8_t *)"", op->label.len,
                    lhash, NULL, op->param_md, NULL))
        return CKR_FUNCTION_FAILED;
    db = em + 1 + hlen;
    if (tk_mgf1_xor(op->mgf_md, db, k - hlen - 1, em + 1, hlen) != TK_OK ||
        tk_mgf1_xor(op->mgf_md, em + 1, hlen, db, k - hlen - 1) != TK_OK) {
        tk_clear_error();
        return CKR_FUNCTION_FAILED;
    }
    bad = em[0];
    bad |= (unsigned)CRYPTO_memcmp(db, lhash, hlen);
    for (size_t i = hlen; i < k - hlen - 1; i++) {
        unsigned is_one = db[i] == 0x01, is_zero = db[i] == 0x00;
        msg = (!found && is_one) ? i + 1 : msg;
        bad |= !found && !is_one && !is_zero;
        found |= is_one;
    }
    if (bad || !found)
        return CKR_ENCRYPTED_DATA_INVALID;
    return tk_buf_set(out, db + msg, k - hlen - 1 - msg) == TK_OK ? CKR_OK : CKR_HOST_MEMORY;
}

static CK_RV decrypt_compute(p11_op *op, const uint8_t *d, size_t dlen, tk_buf *out)
{
    const tk_key *k = op->key;
    size_t klen = key_modulus_bytes(k);
    tk_buf raw = { 0 };
    tk_rc rc;
    CK_RV rv;

    if (dlen != klen)
        return CKR_ENCRYPTED_DATA_LEN_RANGE;
    if (op->mech == CKM_RSA_PKCS_OAEP && oaep_in_tpm(op)) {
        rc = tk_ks_rsa_decrypt(p11.ks, k, TPM2_ALG_OAEP, tpm_hash_of(op->param_md),
                               op->label.data, op->label.len, d, dlen, out);
    } else if (op->mech == CKM_RSA_PKCS) {
        rc = tk_ks_rsa_decrypt(p11.ks, k, TPM2_ALG_RSAES, TPM2_ALG_NULL, NULL, 0, d, dlen, out);
    } else {
        /* Raw RSA (in an encrypted session: the result is secret), for CKM_RSA_X_509 and
         * for OAEP parameters the TPM does not take (other labels, another MGF1 hash). */
        rc = tk_ks_rsa_decrypt(p11.ks, k, TPM2_ALG_NULL, TPM2_ALG_NULL, NULL, 0, d, dlen,
                               op->mech == CKM_RSA_X_509 ? out : &raw);
        if (rc == TK_OK && op->mech == CKM_RSA_PKCS_OAEP) {
            rv = raw.len == klen ? oaep_decode(op, raw.data, klen, out)
                                 : CKR_ENCRYPTED_DATA_INVALID;
            OPENSSL_cleanse(raw.data, raw.len);
            tk_buf_free(&raw);
            return rv;
        }
    }
    if (rc == TK_OK)
        return CKR_OK;
    if (rc == TK_ERR_TPM)   /* the TPM refused the padding or the value */
        return p11_fail_as(rc, CKR_ENCRYPTED_DATA_INVALID, "RSA decryption");
    return ks_fail(rc, CKR_MECHANISM_PARAM_INVALID, "RSA decryption");
}

CK_RV C_DecryptInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
{
    p11_session *s;
    p11_op *op;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DECRYPT, false, &s, &op)) == CKR_OK) {
        rv = op_init(s, op, m, key, CKF_DECRYPT, CKA_DECRYPT, &o);
        if (rv == CKR_OK && !op->key)
            rv = CKR_KEY_TYPE_INCONSISTENT;
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

CK_RV C_Decrypt(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR out,
                CK_ULONG_PTR outlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DECRYPT, true, &s, &op)) == CKR_OK) {
        if (!d && dlen) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            /* A length query answers the modulus size without using the TPM. */
            rv = finish(op, decrypt_compute, d, dlen, key_modulus_bytes(op->key), out, outlen);
        }
    }
    p11_leave();
    return rv;
}

CK_RV C_DecryptUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR out,
                      CK_ULONG_PTR outlen)
{
    CK_RV rv;

    (void)out;
    if (!outlen)
        return CKR_ARGUMENTS_BAD;
    rv = update(P11_OP_DECRYPT, h, d, dlen);
    if (rv == CKR_OK)
        *outlen = 0;
    return rv;
}

CK_RV C_DecryptFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    return final_from_acc(P11_OP_DECRYPT, decrypt_compute, h, out, outlen);
}

/* ------------------------------------------------------------------ digest (software) */

CK_RV C_DigestInit(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m)
{
    p11_session *s;
    p11_op *op;
    const mech_info *mi;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DIGEST, false, &s, &op)) == CKR_OK) {
        if (!m)
            rv = CKR_ARGUMENTS_BAD;
        else if (!(mi = mech_find(m->mechanism)) || !(mi->flags & CKF_DIGEST))
            rv = CKR_MECHANISM_INVALID;
        else if (!(op->mdctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(op->mdctx, mi->md(), NULL))
            rv = CKR_HOST_MEMORY;
        if (rv == CKR_OK) {
            op->mech = m->mechanism;
            op->md = mi->md();
            op->active = true;
        } else {
            p11_op_reset(op);
        }
    }
    p11_leave();
    return rv;
}

static CK_RV digest_compute(p11_op *op, const uint8_t *d, size_t dlen, tk_buf *out)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    if ((d && !EVP_DigestUpdate(op->mdctx, d, dlen)) || !EVP_DigestFinal_ex(op->mdctx, md, &n))
        return CKR_FUNCTION_FAILED;
    return tk_buf_set(out, md, n) == TK_OK ? CKR_OK : CKR_HOST_MEMORY;
}

CK_RV C_Digest(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen, CK_BYTE_PTR out,
               CK_ULONG_PTR outlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DIGEST, true, &s, &op)) == CKR_OK) {
        if (!d && dlen) {
            p11_op_reset(op);
            rv = CKR_ARGUMENTS_BAD;
        } else {
            rv = finish(op, digest_compute, d, dlen, (size_t)EVP_MD_get_size(op->md), out,
                        outlen);
        }
    }
    p11_leave();
    return rv;
}

CK_RV C_DigestUpdate(CK_SESSION_HANDLE h, CK_BYTE_PTR d, CK_ULONG dlen)
{
    return update(P11_OP_DIGEST, h, d, dlen);
}

CK_RV C_DigestKey(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
    p11_session *s;
    p11_op *op;
    p11_object *o;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DIGEST, true, &s, &op)) == CKR_OK) {
        const p11_attr *v;
        if (!(o = p11_object_get(s, key))) {
            rv = CKR_KEY_HANDLE_INVALID;
        } else if (o->cls != CKO_SECRET_KEY || !(v = p11_attrs_get(&o->attrs, CKA_VALUE)) ||
                   v->sensitive) {
            rv = CKR_KEY_INDIGESTIBLE;   /* TPM keys never leave the TPM */
        } else if (!EVP_DigestUpdate(op->mdctx, v->val, v->len)) {
            rv = CKR_FUNCTION_FAILED;
        }
        if (rv != CKR_OK)
            p11_op_reset(op);
    }
    p11_leave();
    return rv;
}

CK_RV C_DigestFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
{
    p11_session *s;
    p11_op *op;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if ((rv = op_session(h, P11_OP_DIGEST, true, &s, &op)) == CKR_OK)
        rv = finish(op, digest_compute, NULL, 0, (size_t)EVP_MD_get_size(op->md), out, outlen);
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ random */

CK_RV C_GenerateRandom(CK_SESSION_HANDLE h, CK_BYTE_PTR out, CK_ULONG len)
{
    p11_session *s;
    tk_ks *ks;
    tk_rc rc;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
    } else if (!out && len) {
        rv = CKR_ARGUMENTS_BAD;
    } else if ((rv = p11_ks(false, &ks)) == CKR_TOKEN_NOT_PRESENT) {
        rv = CKR_DEVICE_ERROR;   /* no store and hence no TPM configuration yet */
    } else if (rv == CKR_OK && len && (rc = tk_tpm_random(tk_ks_tpm(ks), out, len)) != TK_OK) {
        rv = p11_fail(rc, CKR_DEVICE_ERROR, "random bytes from the TPM");
    }
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ key generation */

static CK_RV rsa_alg(const CK_ATTRIBUTE *t, CK_ULONG n, tk_alg *alg)
{
    CK_ULONG bits = 2048;
    const CK_ATTRIBUTE *e = p11_tmpl_find(t, n, CKA_PUBLIC_EXPONENT);
    CK_RV rv;

    if ((rv = p11_tmpl_ulong(t, n, CKA_MODULUS_BITS, &bits)) != CKR_OK)
        return rv;
    *alg = bits == 2048 ? TK_ALG_RSA2048 : bits == 3072 ? TK_ALG_RSA3072
         : bits == 4096 ? TK_ALG_RSA4096 : TK_ALG_NONE;
    if (*alg == TK_ALG_NONE)
        return CKR_KEY_SIZE_RANGE;
    if (e && e->ulValueLen) {
        /* The TPM makes keys with e = 65537. */
        const uint8_t *p = e->pValue;
        size_t i = 0;
        if (!p)
            return CKR_ATTRIBUTE_VALUE_INVALID;
        while (i < e->ulValueLen && !p[i])
            i++;
        if (e->ulValueLen - i != 3 || p[i] != 1 || p[i + 1] != 0 || p[i + 2] != 1)
            return CKR_ATTRIBUTE_VALUE_INVALID;
    }
    return CKR_OK;
}

static CK_RV ec_alg(const CK_ATTRIBUTE *pt, CK_ULONG pn, const CK_ATTRIBUTE *kt, CK_ULONG kn,
                    tk_alg *alg)
{
    const CK_ATTRIBUTE *p = p11_tmpl_find(pt, pn, CKA_EC_PARAMS);
    if (!p)
        p = p11_tmpl_find(kt, kn, CKA_EC_PARAMS);
    if (!p || !p->pValue)
        return CKR_TEMPLATE_INCOMPLETE;
    *alg = p11_alg_from_ec_params(p->pValue, p->ulValueLen);
    return *alg == TK_ALG_NONE ? CKR_CURVE_NOT_SUPPORTED : CKR_OK;
}

/* A PSS-only CKA_ALLOWED_MECHANISMS naming one digest (`pkcs11-tool --allowed-mechanisms
 * SHA256-RSA-PKCS-PSS`) asks for a key the TPM itself binds to RSA-PSS with that digest, the
 * key `openssl genpkey -algorithm RSA-PSS` makes.  Any other list is nothing a TPM key can
 * hold and leaves the key unrestricted, as before: *hash = 0. */
static CK_RV rsa_pss_request(const CK_ATTRIBUTE *pt, CK_ULONG pn, const CK_ATTRIBUTE *kt,
                             CK_ULONG kn, TPM2_ALG_ID *hash)
{
    const CK_ATTRIBUTE *a = p11_tmpl_find(kt, kn, CKA_ALLOWED_MECHANISMS);
    const CK_MECHANISM_TYPE *list;
    TPM2_ALG_ID h = 0;

    *hash = 0;
    if (!a)
        a = p11_tmpl_find(pt, pn, CKA_ALLOWED_MECHANISMS);
    if (!a || !a->ulValueLen)
        return CKR_OK;
    if (!a->pValue || a->ulValueLen % sizeof(CK_MECHANISM_TYPE))
        return CKR_ATTRIBUTE_VALUE_INVALID;
    list = a->pValue;
    for (size_t i = 0; i < a->ulValueLen / sizeof(CK_MECHANISM_TYPE); i++) {
        const mech_info *mi = mech_find(list[i]);
        TPM2_ALG_ID mh;
        if (!pss_mech(list[i]))
            return CKR_OK;
        if (list[i] == CKM_RSA_PKCS_PSS)
            continue;
        mh = tpm_hash_of(mi->md());
        if (mh == TPM2_ALG_NULL || (h && h != mh))
            return CKR_OK;
        h = mh;
    }
    *hash = h;
    return CKR_OK;
}

/* Template attributes of a new key pair: token, private, label. */
static CK_RV pair_template(const CK_ATTRIBUTE *pt, CK_ULONG pn, const CK_ATTRIBUTE *kt,
                           CK_ULONG kn, bool *token, bool *priv, char **label)
{
    bool pub_token = false;
    CK_RV rv;

    *token = false;
    *priv = true;
    if ((rv = p11_tmpl_bool(pt, pn, CKA_TOKEN, &pub_token)) != CKR_OK ||
        (rv = p11_tmpl_bool(kt, kn, CKA_TOKEN, token)) != CKR_OK ||
        (rv = p11_tmpl_bool(kt, kn, CKA_PRIVATE, priv)) != CKR_OK)
        return rv;
    if (!p11_tmpl_find(kt, kn, CKA_TOKEN))
        *token = pub_token;
    if (pub_token != *token && p11_tmpl_find(pt, pn, CKA_TOKEN))
        return CKR_TEMPLATE_INCONSISTENT;   /* both halves live in the same place */
    if ((rv = p11_tmpl_string(kt, kn, CKA_LABEL, label)) != CKR_OK)
        return rv;
    if (!*label && (rv = p11_tmpl_string(pt, pn, CKA_LABEL, label)) != CKR_OK)
        return rv;
    return CKR_OK;
}

static CK_RV generate_token_pair(p11_session *s, tk_alg alg, TPM2_ALG_ID pss, bool priv,
                                 const char *label, const CK_ATTRIBUTE *pt, CK_ULONG pn,
                                 const CK_ATTRIBUTE *kt, CK_ULONG kn, CK_OBJECT_HANDLE *hpub,
                                 CK_OBJECT_HANDLE *hpriv)
{
    tk_key *k = NULL;
    char *gen = NULL;
    tk_rc rc;
    CK_RV rv = CKR_OK;

    if (!label || !*label) {
        if (!(gen = p11_new_label()))
            return CKR_HOST_MEMORY;
        label = gen;
    }
    /* CKA_ID: the private template's, else the public one's, else derived from the key. */
    const CK_ATTRIBUTE *id = p11_tmpl_find(kt, kn, CKA_ID);
    if (!id)
        id = p11_tmpl_find(pt, pn, CKA_ID);
    if (id && !id->pValue && id->ulValueLen) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
    }
    tk_keygen_opts o = { .rsa_pss_hash = pss,
                         .ckaid = { .data = id ? id->pValue : NULL,
                                    .len = id && id->pValue ? id->ulValueLen : 0 } };
    rc = tk_ks_create_key_opts(p11.ks, s->token_id, label, alg, &o,
                               priv ? TK_AUTH_TOKEN : TK_AUTH_NONE, NULL, NULL, &k);
    if (rc != TK_OK) {
        /* TK_ERR_EXISTS: the label is taken in this token. */
        rv = rc == TK_ERR_EXISTS || rc == TK_ERR_INVALID
                 ? p11_fail_as(rc, CKR_ATTRIBUTE_VALUE_INVALID, "key generation")
                 : p11_fail(rc, CKR_KEY_SIZE_RANGE, "key generation");
        goto out;
    }
    p11.dirty = true;
    *hpub = ((CK_OBJECT_HANDLE)k->id << 2) | P11_KIND_PUB;
    *hpriv = ((CK_OBJECT_HANDLE)k->id << 2) | P11_KIND_PRIV;
out:
    tk_key_free(k);
    free(gen);
    return rv;
}

/* A session key pair: made in the TPM without auth, its blobs only in this process. */
static CK_RV generate_session_pair(p11_session *s, tk_alg alg, TPM2_ALG_ID pss, bool priv,
                                   const char *label, const CK_ATTRIBUTE *pt, CK_ULONG pn,
                                   const CK_ATTRIBUTE *kt, CK_ULONG kn, CK_OBJECT_HANDLE *hpub,
                                   CK_OBJECT_HANDLE *hpriv)
{
    tk_keygen_opts opts = { .rsa_pss_hash = pss };
    tk_key *k = calloc(1, sizeof(*k));
    const CK_ATTRIBUTE *id = p11_tmpl_find(kt, kn, CKA_ID);
    tk_tpm *tpm = tk_ks_tpm(p11.ks);
    tk_rc rc;

    if (!id)
        id = p11_tmpl_find(pt, pn, CKA_ID);
    if (!k || !(k->label = strdup(label ? label : "")) ||
        (id && tk_buf_set(&k->ckaid, id->pValue, id->ulValueLen) != TK_OK)) {
        tk_key_free(k);
        return CKR_HOST_MEMORY;
    }
    k->token_id = s->token_id;
    k->alg = alg;
    k->auth = TK_AUTH_NONE;
    k->origin = TK_ORIGIN_GENERATED;
    k->parent = TK_SRK_HANDLE;
    if ((rc = tk_tpm_supports(tpm, alg)) != TK_OK ||
        (rc = tk_tpm_create_key_opts(tpm, alg, &opts, NULL, NULL, NULL, &k->pub,
                                     &k->priv)) != TK_OK) {
        tk_key_free(k);
        return p11_fail(rc, CKR_KEY_SIZE_RANGE, "key generation");
    }
    return p11_session_keypair_add(s, k, priv, hpub, hpriv);
}

CK_RV C_GenerateKeyPair(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt,
                        CK_ULONG pn, CK_ATTRIBUTE_PTR kt, CK_ULONG kn,
                        CK_OBJECT_HANDLE_PTR hpub, CK_OBJECT_HANDLE_PTR hpriv)
{
    p11_session *s;
    tk_alg alg = TK_ALG_NONE;
    TPM2_ALG_ID pss = 0;
    bool token, priv;
    char *label = NULL;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
        goto out;
    }
    if (!m || !hpub || !hpriv || (!pt && pn) || (!kt && kn)) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK)
        goto out;
    if (!s->token_id) {
        rv = CKR_USER_PIN_NOT_INITIALIZED;
        goto out;
    }
    if (m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN &&
        (rv = rsa_pss_request(pt, pn, kt, kn, &pss)) != CKR_OK)
        goto out;
    if (m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN)
        rv = rsa_alg(pt, pn, &alg);
    else if (m->mechanism == CKM_EC_KEY_PAIR_GEN)
        rv = ec_alg(pt, pn, kt, kn, &alg);
    else
        rv = CKR_MECHANISM_INVALID;
    if (rv != CKR_OK)
        goto out;
    if ((rv = pair_template(pt, pn, kt, kn, &token, &priv, &label)) != CKR_OK)
        goto out;
    {
        /* CKA_KEY_TYPE, when given, must match the mechanism. */
        CK_ULONG kty = CK_UNAVAILABLE_INFORMATION;
        CK_KEY_TYPE want = m->mechanism == CKM_RSA_PKCS_KEY_PAIR_GEN ? CKK_RSA : CKK_EC;
        if ((rv = p11_tmpl_ulong(kt, kn, CKA_KEY_TYPE, &kty)) != CKR_OK)
            goto out;
        if (kty != CK_UNAVAILABLE_INFORMATION && kty != want) {
            rv = CKR_TEMPLATE_INCONSISTENT;
            goto out;
        }
    }
    if (token && (rv = p11_session_rw(s)) != CKR_OK)
        goto out;
    {
        bool v = true;
        if ((rv = p11_tmpl_bool(kt, kn, CKA_SENSITIVE, &v)) != CKR_OK)
            goto out;
        if (!v) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
        v = false;
        if ((rv = p11_tmpl_bool(kt, kn, CKA_EXTRACTABLE, &v)) != CKR_OK)
            goto out;
        if (v) {
            rv = CKR_ATTRIBUTE_VALUE_INVALID;
            goto out;
        }
    }
    if (priv && !p11_user_logged_in(s->token_id)) {
        rv = CKR_USER_NOT_LOGGED_IN;
        goto out;
    }
    rv = token ? generate_token_pair(s, alg, pss, priv, label, pt, pn, kt, kn, hpub, hpriv)
               : generate_session_pair(s, alg, pss, priv, label, pt, pn, kt, kn, hpub, hpriv);
out:
    free(label);
    p11_leave();
    return rv;
}

/* ------------------------------------------------------------------ derive (ECDH) */

CK_RV C_DeriveKey(CK_SESSION_HANDLE h, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base,
                  CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR out)
{
    p11_session *s;
    p11_object *o;
    tk_key *k = NULL;
    tk_buf z = { 0 };
    const CK_ECDH1_DERIVE_PARAMS *p;
    const uint8_t *pt;
    size_t ptlen;
    CK_ULONG len = 0, cls = CKO_SECRET_KEY, kty = CKK_GENERIC_SECRET;
    bool token = false;
    CK_ATTRIBUTE *tmpl = NULL;
    tk_rc rc;
    CK_RV rv;

    if ((rv = p11_enter()) != CKR_OK)
        return rv;
    if (!(s = p11_session_get(h))) {
        rv = CKR_SESSION_HANDLE_INVALID;
        goto out;
    }
    if (!m || !out || (!t && n)) {
        rv = CKR_ARGUMENTS_BAD;
        goto out;
    }
    if (m->mechanism != CKM_ECDH1_DERIVE) {
        rv = CKR_MECHANISM_INVALID;
        goto out;
    }
    p = m->pParameter;
    if (!p || m->ulParameterLen != sizeof(*p) || p->kdf != CKD_NULL || p->ulSharedDataLen ||
        !p->pPublicData) {
        rv = CKR_MECHANISM_PARAM_INVALID;
        goto out;
    }
    if ((rv = p11_tmpl_ulong(t, n, CKA_CLASS, &cls)) != CKR_OK ||
        (rv = p11_tmpl_ulong(t, n, CKA_KEY_TYPE, &kty)) != CKR_OK ||
        (rv = p11_tmpl_ulong(t, n, CKA_VALUE_LEN, &len)) != CKR_OK ||
        (rv = p11_tmpl_bool(t, n, CKA_TOKEN, &token)) != CKR_OK)
        goto out;
    if (cls != CKO_SECRET_KEY || token) {
        /* The store keeps TPM keys only: derived secrets are session objects. */
        rv = CKR_TEMPLATE_INCONSISTENT;
        goto out;
    }
    if ((rv = p11_refresh()) != CKR_OK)
        goto out;
    if (!(o = p11_object_get(s, base))) {
        rv = CKR_KEY_HANDLE_INVALID;
        goto out;
    }
    const p11_attr *d = p11_attrs_get(&o->attrs, CKA_DERIVE);
    if (o->cls != CKO_PRIVATE_KEY || o->key_type != CKK_EC || !d || d->val[0] != CK_TRUE) {
        rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
        goto out;
    }
    {
        /* The peer's point, raw or DER-wrapped. */
        const uint8_t *in = p->pPublicData;
        size_t inlen = p->ulPublicDataLen;
        if (inlen > 2 && in[0] == 0x04 && in[1] == inlen - 2 && in[2] == 0x04) {
            pt = in + 2, ptlen = inlen - 2;
        } else if (inlen > 3 && in[0] == 0x04 && in[1] == 0x81 && in[2] == inlen - 3) {
            pt = in + 3, ptlen = inlen - 3;
        } else {
            pt = in, ptlen = inlen;
        }
    }
    if ((rv = p11_object_key(o, &k)) != CKR_OK)
        goto out;
    if ((rc = tk_ks_ecdh(p11.ks, k, pt, ptlen, &z)) != TK_OK) {
        rv = rc == TK_ERR_INVALID ? p11_fail_as(rc, CKR_MECHANISM_PARAM_INVALID, "ECDH")
                                  : ks_fail(rc, CKR_MECHANISM_PARAM_INVALID, "ECDH");
        goto out;
    }
    if (len > z.len) {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
        goto out;
    }
    if (!len)
        len = z.len;
    /* The caller's template plus the value; CKA_VALUE_LEN follows from it. */
    if (!(tmpl = calloc(n + 3, sizeof(*tmpl)))) {
        rv = CKR_HOST_MEMORY;
        goto out;
    }
    CK_ULONG m2 = 0;
    for (CK_ULONG i = 0; i < n; i++)
        if (t[i].type != CKA_VALUE && t[i].type != CKA_VALUE_LEN && t[i].type != CKA_CLASS &&
            t[i].type != CKA_KEY_TYPE)
            tmpl[m2++] = t[i];
    tmpl[m2++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
    tmpl[m2++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kty, sizeof(kty) };
    tmpl[m2++] = (CK_ATTRIBUTE){ CKA_VALUE, z.data, len };
    rv = p11_session_object_create(s, tmpl, m2, CKO_SECRET_KEY, out);
out:
    free(tmpl);
    if (z.data)
        OPENSSL_cleanse(z.data, z.len);
    tk_buf_free(&z);
    tk_key_free(k);
    p11_leave();
    return rv;
}
