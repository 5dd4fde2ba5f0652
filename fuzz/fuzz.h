/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the libFuzzer harnesses of fuzz/ share: a byte reader that turns the fuzz input
 * into decisions, a private temporary folder removed at exit, a small seeded store
 * (tokens and keys with real-looking TPM blobs, no TPM needed) that each input starts
 * from, and a loud failure for a broken invariant.
 *
 * Every harness is deterministic and touches neither a TPM nor the network: the TCTI is
 * pointed at a closed loopback port, so a code path that would talk to the TPM fails
 * with TK_ERR_NO_TPM at once.
 */
#ifndef TPMKEYS_FUZZ_H
#define TPMKEYS_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tpmkeys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The passphrase of the encrypted seeds in fuzz/corpus/keyfile/. */
#define FUZZ_PASSPHRASE "fuzzpass"

/* ------------------------------------------------------------------ reading the input */

typedef struct {
    const uint8_t *p;
    size_t left;
} fuzz_in;

uint8_t fuzz_u8(fuzz_in *in);               /* 0 when the input is used up */
uint16_t fuzz_u16(fuzz_in *in);             /* big-endian */
uint32_t fuzz_u32(fuzz_in *in);
uint64_t fuzz_u64(fuzz_in *in);
/* Up to n bytes (fewer when the input ends); *got says how many. */
const uint8_t *fuzz_bytes(fuzz_in *in, size_t n, size_t *got);

/* ------------------------------------------------------------------ environment */

/* A fresh 0700 folder under $TMPDIR (or /tmp), removed with everything in it at exit. */
const char *fuzz_tmpdir(void);
/* Environment for harnesses that open the store: TPMKEYS_STORE = path, a TCTI that
 * cannot connect, no logging. */
void fuzz_env(const char *store_path);

/* Abort (a crash libFuzzer reports and saves) when an invariant does not hold. */
#define FUZZ_CHECK(cond, ...) \
    do { if (!(cond)) fuzz_die(__FILE__, __LINE__, #cond, __VA_ARGS__); } while (0)
void fuzz_die(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* ------------------------------------------------------------------ a seeded store */

/* The blobs the seeded store holds (valid marshalled TPM2B_PUBLIC / TPM2B_PRIVATE). */
void fuzz_ec_public(tk_buf *out);    /* P-256, the curve's generator as the point */
void fuzz_rsa_public(tk_buf *out);   /* RSA-2048 */
void fuzz_private(tk_buf *out);      /* a TPM2B_PRIVATE of 48 bytes */
/* A self-signed DER certificate (for a software key, not the store's keys). */
void fuzz_cert(tk_buf *out);

/* Create the store at path: token "tpmkeys" (no PIN) with keys "web" (EC, generated)
 * and "mail" (RSA, imported, with a certificate) and objects "ca" (certificate), "peer"
 * (public key) and "note" (data); token "ops" with a user PIN seal and key "db" (EC,
 * PIN-protected).  Then read the closed file into *image. */
void fuzz_seed_store(const char *path, tk_buf *image);
/* Put the store back to image: the file rewritten, its -wal and -shm removed. */
void fuzz_restore_store(const char *path, const tk_buf *image);

#endif /* TPMKEYS_FUZZ_H */
