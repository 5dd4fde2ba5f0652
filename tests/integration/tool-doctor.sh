#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `tpmkeys doctor`: says what is wrong and what to do.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"

# ---------------------------------------------------------------- fresh TPM, no init
# doctor's report is its output (stdout); a problem makes the exit status non-zero.
tk_check_not "doctor before init reports a problem" "$TK" doctor
tk_match "a FAIL line" 'FAIL'
tk_match "the SRK is named" 'SRK'
tk_match "the fix is named" 'tpmkeys init'
tk_match "the SRK line is the failing one" 'FAIL.*SRK.*tpmkeys init'

# ---------------------------------------------------------------- after init
tk_check "init" "$TK" init
tk_check "doctor after init exits 0" "$TK" doctor
report=$TK_OUT$'\n'$TK_ERR
tk_nomatch "no FAIL after init" 'FAIL' "$report"
tk_imatch "reports ok lines" '(^|[^a-z])ok([^a-z]|$)' "$report"
tk_match "names the TCTI in use" "$TPMKEYS_TCTI" "$report"
tk_imatch "reports the SRK" 'SRK' "$report"
tk_imatch "reports the store" 'store' "$report"

# ---------------------------------------------------------------- no TPM
port=$(tk_free_port) || tk_die "no free port"
tk_check_not "doctor without a reachable TPM fails" \
    env TPMKEYS_TCTI="swtpm:host=127.0.0.1,port=$port" "$TK" doctor
tk_match "a FAIL line names the TCTI" "FAIL.*port=$port"

if [ ! -e /dev/tpmrm0 ]; then
    tk_check_not "doctor with a missing TPM device fails" \
        env TPMKEYS_TCTI=device:/dev/tpmrm0 "$TK" doctor
    tk_match "names the device" '/dev/tpmrm0'
    tk_match "a FAIL line gives the driver hint" 'FAIL.*(driver|tpm_tis|tpm_crb)'
fi

tk_done
