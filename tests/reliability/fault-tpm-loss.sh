#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The TPM goes away in the middle of a signing loop (swtpm SIGKILLed by its PID), through
# the PKCS#11 module and through the provider, with swtpm directly and behind
# tpm2-abrmd: the calls fail with the right error (CKR_DEVICE_ERROR / an OpenSSL error
# naming the TPM), nothing crashes or hangs, and once swtpm is back on the same state
# the same process signs again (test_fault_sign.c verifies every signature).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/reliability/fault-lib.sh"

tkf_sign_setup
tk_need_tool
tk_need openssl
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"

printf 4321 >user.pin
tk_check "init with a user PIN" "$TK" init --user-pin-file user.pin
for k in ec:ecc-p256 rsa:rsa2048; do
    tk_check "create ${k%%:*}" "$TK" create-key --label "${k%%:*}" --algorithm "${k#*:}" --no-pin
done
tk_check "create pk (PIN)" "$TK" create-key --label pk --algorithm ecc-p256 --pin-file user.pin
for k in ec rsa pk; do
    tk_check "export $k --public" "$TK" export "$k" --public -o "$k.pub.pem"
done
tk_check "export rsa --tss2" "$TK" export rsa --tss2 -o rsa.tss2.pem

# Shorter in CI; the long run kills the TPM several times per loop.
rounds=1
[ "$TKF_LONG" = 1 ] && rounds=5

# loop NAME WHAT PROG-ARGS...: run the signing loop, take the TPM away after 20 good
# calls, bring it back after a second of failures, expect the loop to recover.
# WHAT: swtpm (kill swtpm), both (swtpm and tpm2-abrmd), abrmd (only tpm2-abrmd).
loop() {
    local name=$1 what=$2 round pid rc
    shift 2
    for round in $(seq 1 "$rounds"); do
        "$prog" "$@" -T 90 -c 15 >"$name.log" 2>"$name.err" &
        pid=$!
        tk_track_pid "$pid"
        if ! tkf_wait_lines "$name.log" '^ok ' 20 60; then
            tk_fail "$name: 20 signatures before the fault"
            sed 's/^/#   /' "$name.log" "$name.err" | tail -20
            return
        fi
        [ "$what" = abrmd ] || tkf_swtpm_kill
        [ "$what" = swtpm ] || tkf_abrmd_kill
        tkf_wait_lines "$name.log" '^fail ' 5 30 ||
            tk_fail "$name: calls fail while the TPM is away"
        sleep 1
        [ "$what" = abrmd ] || tkf_swtpm_restart
        [ "$what" = swtpm ] || tkf_abrmd_restart
        rc=0
        wait "$pid" || rc=$?
        local summary
        summary=$(grep '^summary:' "$name.log")
        if [ "$rc" -eq 0 ]; then
            tk_pass "$name (round $round): ok, then failures, then ok again in the same process"
            tk_log "$name: $summary"
        else
            tk_fail "$name (round $round): exit $rc"
            sed 's/^/#   /' "$name.err" | tail -20
            grep -v '^ok ' "$name.log" | sed 's/^/#   /' | tail -10
            continue
        fi
        tk_log "$name: first failure: $(grep -m1 '^fail ' "$name.log")"
        tk_nomatch "$name: no crash or sanitizer report" 'ERROR: |runtime error|Sanitizer' "$(cat "$name.err")"
    done
}

# ---------------------------------------------------------------- swtpm directly
loop p11-direct swtpm p11 ec ec.pub.pem rsa rsa.pub.pem
tk_match "p11: the failures are CKR_DEVICE_ERROR" '^fail [0-9]+ [0-9.]+ CKR_DEVICE_ERROR' "$(cat p11-direct.log)"
loop p11-direct-pin swtpm p11 -p 4321 pk pk.pub.pem ec ec.pub.pem
loop prov-direct swtpm prov -e TPM tpmkeys:object=ec ec.pub.pem rsa.tss2.pem rsa.pub.pem
tk_imatch "provider: the OpenSSL error names the lost TPM" '^fail .*(lost the TPM|cannot reach the TPM)' "$(cat prov-direct.log)"

# ---------------------------------------------------------------- behind tpm2-abrmd
tk_abrmd_start
loop p11-abrmd both p11 -p 4321 ec ec.pub.pem pk pk.pub.pem
loop prov-abrmd both prov -e TPM tpmkeys:object=rsa rsa.pub.pem tpmkeys:object=ec ec.pub.pem
# Only the resource manager dies (swtpm stays): its clients reconnect to the new one.
loop p11-abrmd-only abrmd p11 -p 4321 pk pk.pub.pem rsa rsa.pub.pem
loop prov-abrmd-only abrmd prov -e TPM rsa.tss2.pem rsa.pub.pem

tk_done
