#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The PKCS#11 module through its function list (test_p11.c) against a fresh swtpm and an
# empty store: token initialisation, login, every mechanism, objects, threads, fork.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
prog=$top_builddir/tests/pkcs11/test_p11
[ -f "$module" ] || tk_die "PKCS#11 module not built at $module"
[ -x "$prog" ] || tk_die "$prog is not built"
tk_need_tool

tk_swtpm_start
# Several processes share the TPM (the test, its forked child, the tpmkeys tool): a
# resource manager in front of swtpm, as /dev/tpmrm0 is on a real machine.
tk_abrmd_start
# ESYS logs the TPM errors the test provokes (wrong PINs) unless told otherwise.
export TSS2_LOG=${TSS2_LOG:-all+none}
if "$prog" "$module"; then
    tk_pass "PKCS#11 function list (test_p11)"
else
    tk_fail "PKCS#11 function list (test_p11)"
fi
tk_done
