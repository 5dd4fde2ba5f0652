/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Private helpers shared by the pure crypto code of libtpmkeys (keyfile.c, tss2key.c,
 * tpmconv.c, dup.c) and its unit tests.  Not part of the public API.
 */
#ifndef TPMKEYS_INTERNAL_CRYPTO_H
#define TPMKEYS_INTERNAL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "tpmkeys.h"

/* The OpenSSL digest for a TPM hash algorithm (SHA-1/256/384/512), NULL when unknown. */
const EVP_MD *tk_md_for_alg(TPM2_ALG_ID hash);

/* OpenSSL group name ("P-256", ...), byte size of a coordinate, and the curve of a
 * group name.  NULL / 0 / TPM2_ECC_NONE for curves tpmkeys does not handle. */
const char *tk_curve_group(TPM2_ECC_CURVE curve);
size_t tk_curve_bytes(TPM2_ECC_CURVE curve);
int tk_curve_nid(TPM2_ECC_CURVE curve);   /* NID_undef when not supported */
TPM2_ECC_CURVE tk_curve_from_group(const char *group);

/*
 * KDFa of TPM 2.0 Part 1, 11.4.10.2 (SP800-108 counter mode with HMAC):
 *   K(i) = HMAC(key, [i]32 || label || 0x00 || context_u || context_v || [bits]32)
 * out receives (bits + 7) / 8 bytes; unused high bits of the first byte are cleared.
 * label is a C string (its terminating NUL is the 0x00 separator); NULL = empty.
 */
/* HMAC over the concatenated parts (empty parts allowed); out holds outsize bytes,
 * *outlen (may be NULL) receives the MAC's length. */
tk_rc tk_hmac(TPM2_ALG_ID hash, const uint8_t *key, size_t keylen, const uint8_t *const parts[],
              const size_t lens[], size_t n, uint8_t *out, size_t outsize, size_t *outlen);

tk_rc tk_kdfa(TPM2_ALG_ID hash, const uint8_t *key, size_t keylen, const char *label,
              const uint8_t *context_u, size_t ulen, const uint8_t *context_v, size_t vlen,
              uint32_t bits, uint8_t *out);

/*
 * KDFe of TPM 2.0 Part 1, 11.4.10.3 (SP800-56A concatenation KDF):
 *   K(i) = H([i]32 || Z || use || 0x00 || party_u || party_v)
 * out receives (bits + 7) / 8 bytes.
 */
tk_rc tk_kdfe(TPM2_ALG_ID hash, const uint8_t *z, size_t zlen, const char *use,
              const uint8_t *party_u, size_t ulen, const uint8_t *party_v, size_t vlen,
              uint32_t bits, uint8_t *out);

/*
 * A secret shared with the holder of an ECC key (TPM 2.0 Part 1, C.6.1 and 11.4.10.3):
 * an ephemeral key de, Qe = de * G, Z = (de * Q).x,
 *   secret = KDFe(key's nameAlg, Z, label, Qe.x, Q.x, that digest's size),
 * enc = Qe as a marshalled TPMS_ECC_POINT.  label "SECRET" salts a session to the key,
 * "DUPLICATE" makes an import seed.  secret holds the nameAlg's digest size.
 */
tk_rc tk_ecc_secret(const TPM2B_PUBLIC *key, const char *label, uint8_t *secret,
                    TPM2B_ENCRYPTED_SECRET *enc);

/* Left-pad a big number into exactly len bytes (fails when it does not fit). */
tk_rc tk_bn_to_fixed(const BIGNUM *bn, uint8_t *out, size_t len, const char *what);

/* The "DUPLICATE" label and the KDFa labels of TPM 2.0 Part 1, 23.3.2. */
#define TK_LABEL_DUPLICATE "DUPLICATE"
#define TK_LABEL_STORAGE "STORAGE"
#define TK_LABEL_INTEGRITY "INTEGRITY"

#endif /* TPMKEYS_INTERNAL_CRYPTO_H */
