#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Wrong PINs through the PKCS#11 module (test_fault_pin.c): counted by the TPM, token
# flags, a per-token lock that spares the other tokens, the SO's recovery that keeps
# the keys, and the TPM's own dictionary-attack lockout and its recovery.  The tpmkeys
# tool then sees the same state.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
prog=$top_builddir/tests/reliability/test_fault_pin
[ -f "$module" ] || tk_die "PKCS#11 module not built at $module"
[ -x "$prog" ] || tk_die "$prog is not built"
tk_need_tool
tk_need tpm2_getcap
tk_swtpm_start
# The test reads the TPM's counter with tpm2-tools while the module keeps its connection.
tk_abrmd_start
export TSS2_LOG=${TSS2_LOG:-all+none}
cd "$TK_TMP" || tk_die "cd $TK_TMP"

tk_check "init (SRK)" "$TK" init
if timeout -k 5 120 "$prog" "$module" >pin.log 2>&1; then
    tk_pass "PIN counting, flags, lock, SO recovery, TPM lockout (test_fault_pin)"
else
    tk_fail "PIN counting, flags, lock, SO recovery, TPM lockout (test_fault_pin)"
fi
sed 's/^/#   /' pin.log
tk_match "every check of test_fault_pin ran" '^# 0 of [0-9]+ checks failed' "$(cat pin.log)"

# The tool sees what the module did: pin-b's keys are there, its new PIN works.
printf 2223 >b.pin
printf 9999 >bad.pin
tk_check "tool: sign with pin-b's key and its new PIN" \
    "$TK" --token pin-b sign kb -i pin.log -o kb.sig --pin-file b.pin
tk_check "tool: export kb --public" "$TK" --token pin-b export kb --public -o kb.pub.pem
tk_check "tool: the signature verifies" openssl dgst -sha256 -verify kb.pub.pem -signature kb.sig pin.log
tk_expect_fail 5 "tool: a wrong PIN" "$TK" --token pin-b sign kb -i pin.log -o x.sig --pin-file bad.pin
tk_imatch "tool: says the PIN is wrong" 'wrong|incorrect'
tk_done
