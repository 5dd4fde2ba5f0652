/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * TAP checks shared by the C tests that drive the PKCS#11 module: CHECK(cond, fmt...),
 * RV(want, call, fmt...) for a CK_RV, PIN("...") for a (pointer, length) pair, and the
 * counters (checks, failures) a test's main() reports.
 */
#ifndef TPMKEYS_TESTS_P11_CHECK_H
#define TPMKEYS_TESTS_P11_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static int failures, checks;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        bool _c = (cond);                                                 \
        checks++;                                                         \
        printf("%s %d - ", _c ? "ok" : "not ok", checks);                 \
        if (!_c)                                                          \
            failures++;                                                   \
        printf(__VA_ARGS__);                                              \
        printf("\n");                                                     \
        fflush(stdout);                                                   \
    } while (0)

/* The call must return want. */
#define RV(want, call, ...)                                                         \
    do {                                                                            \
        CK_RV _rv = (call);                                                         \
        bool _ok = _rv == (CK_RV)(want);                                            \
        checks++;                                                                   \
        if (!_ok)                                                                   \
            failures++;                                                             \
        printf("%s %d - ", _ok ? "ok" : "not ok", checks);                          \
        printf(__VA_ARGS__);                                                        \
        if (_ok)                                                                    \
            printf(" [0x%lx]\n", (unsigned long)_rv);                               \
        else                                                                        \
            printf(" [0x%lx, expected 0x%lx]\n", (unsigned long)_rv,                \
                   (unsigned long)(want));                                          \
        fflush(stdout);                                                             \
    } while (0)

#define PIN(s) (CK_UTF8CHAR_PTR)(s), (CK_ULONG)strlen(s)

#endif
