#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The harness itself (tests/lib.sh), checked with tpm2-tools only: swtpm and
# tpm2-abrmd start, answer, stop by PID; helpers report what they should.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need tpm2_getrandom tpm2_getcap tpm2_createprimary tpm2_evictcontrol tpm2_readpublic

# A child scenario using the harness, for checks of exit codes and cleanup.
child() {
    local body=$1
    cat >"$TK_TMP/child.sh" <<EOF
. "$top_srcdir/tests/lib.sh"
$body
EOF
    top_srcdir=$top_srcdir TK_TMP_PARENT=$TK_TMP bash "$TK_TMP/child.sh"
}

# ---------------------------------------------------------------- swtpm
tk_swtpm_start
swtpm_pid=$TK_SWTPM_PID
port=$TK_SWTPM_PORT

tk_eq "TCTI exported for tpmkeys" "swtpm:host=127.0.0.1,port=$port" "$TPMKEYS_TCTI"
tk_eq "TCTI exported for tpm2-tools" "$TPMKEYS_TCTI" "$TPM2TOOLS_TCTI"
tk_eq "TCTI exported for tpm2-openssl" "$TPMKEYS_TCTI" "$TPM2OPENSSL_TCTI"
tk_eq "store under the test's folder" "$TK_TMP/store.db" "$TPMKEYS_STORE"

tk_check "tpm2_getrandom through the harness swtpm" tpm2_getrandom 16 --hex
r1=$TK_OUT
tk_match "16 random bytes in hex" '^[0-9a-f]{32}$' "$r1"
tk_check "tpm2_getrandom again" tpm2_getrandom 16 --hex
tk_nomatch "two draws differ" "^$r1\$" "$TK_OUT"

tk_check "tpm2_getcap properties-variable" tpm2_getcap properties-variable
tk_match "dictionary-attack max tries relaxed to 1000" 'TPM2_PT_MAX_AUTH_FAIL: 0x3E8' "$TK_OUT"
tk_match "lockout recovery 1 s" 'TPM2_PT_LOCKOUT_RECOVERY: 0x1$' "$TK_OUT"

# State is fresh per start: a persistent object made now is gone after a restart.
tk_check "create a primary" tpm2_createprimary -C o -G ecc -c "$TK_TMP/p.ctx"
tk_check "make it persistent at 0x81000001" tpm2_evictcontrol -C o -c "$TK_TMP/p.ctx" 0x81000001
tk_check "readpublic 0x81000001" tpm2_readpublic -c 0x81000001

# ---------------------------------------------------------------- tpm2-abrmd
tk_abrmd_start
abrmd_pid=$TK_ABRMD_PID
dbus_pid=$TK_DBUS_PID
tk_eq "TCTI switched to tabrmd" "tabrmd:bus_type=session" "$TPMKEYS_TCTI"
tk_match "private bus address" "^unix:path=$TK_TMP/dbus.sock" "$DBUS_SESSION_BUS_ADDRESS"
tk_check "tpm2_getrandom through tpm2-abrmd" tpm2_getrandom 8 --hex
tk_match "8 random bytes" '^[0-9a-f]{16}$'

# Two clients at once: only possible through the resource manager.
parallel_getrandom() {
    local i pids=() rc=0
    for i in 1 2 3 4; do
        (for _ in $(seq 1 10); do tpm2_getrandom 32 >/dev/null || exit 1; done) &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || rc=1; done
    return $rc
}
tk_check "4 parallel clients x 10 through tpm2-abrmd" parallel_getrandom

tk_abrmd_stop
if tk_alive "$abrmd_pid"; then tk_fail "tpm2-abrmd stopped"; else tk_pass "tpm2-abrmd stopped"; fi
if tk_alive "$dbus_pid"; then tk_fail "dbus-daemon stopped"; else tk_pass "dbus-daemon stopped"; fi
tk_eq "TCTI back to swtpm" "swtpm:host=127.0.0.1,port=$port" "$TPMKEYS_TCTI"
tk_check "swtpm answers directly again" tpm2_getrandom 8

# ---------------------------------------------------------------- stop / restart
tk_swtpm_stop
if tk_alive "$swtpm_pid"; then tk_fail "swtpm stopped"; else tk_pass "swtpm stopped"; fi
tk_expect_fail 1 "stopped swtpm no longer answers" tpm2_getrandom -T "swtpm:host=127.0.0.1,port=$port" 8

tk_swtpm_start
tk_expect_fail 1 "a restarted swtpm has fresh state (no 0x81000001)" tpm2_readpublic -c 0x81000001
tk_swtpm_stop

# ---------------------------------------------------------------- helpers
child 'tk_pass "passes"; tk_check "fails" false; tk_done' >"$TK_TMP/c1.log" 2>&1
tk_eq "a failed tk_check makes tk_done exit 1" 1 $?
tk_match "ok line printed" '^ok - passes$' "$(cat "$TK_TMP/c1.log")"
tk_match "not ok line printed" '^not ok - fails \(exit 1\)$' "$(cat "$TK_TMP/c1.log")"

child 'tk_pass "all good"; tk_done' >/dev/null 2>&1
tk_eq "tk_done exits 0 when every check passed" 0 $?

child 'tk_done' >/dev/null 2>&1
tk_eq "a scenario with no check is an error (99)" 99 $?

child 'tk_skip "nothing to do"' >"$TK_TMP/c2.log" 2>&1
tk_eq "tk_skip exits 77" 77 $?

child 'tk_expect_fail 3 "wrong code" sh -c "echo oops >&2; exit 4"; tk_done' >"$TK_TMP/c3.log" 2>&1
tk_eq "tk_expect_fail rejects another exit code" 1 $?
child 'tk_expect_fail 4 "silent" sh -c "exit 4"; tk_done' >"$TK_TMP/c4.log" 2>&1
tk_eq "tk_expect_fail rejects a failure without a message" 1 $?
tk_match "... and says so" 'no error message' "$(cat "$TK_TMP/c4.log")"
child 'tk_expect_fail "8|10" "either" sh -c "echo bad >&2; exit 10"; tk_done' >/dev/null 2>&1
tk_eq "tk_expect_fail takes alternatives" 0 $?
child 'TK_TIMEOUT=1; tk_check "hangs" sleep 30; tk_done' >"$TK_TMP/c5.log" 2>&1
tk_eq "a hanging command is cut off and fails" 1 $?
tk_match "... with a timeout note" 'timed out after 1s' "$(cat "$TK_TMP/c5.log")"

# Large texts: grep leaving early must not turn a match into a miss (pipefail + SIGPIPE).
big="needle"$'\n'"$(seq 1 200000)"
tk_match "tk_match finds the first line of a large text" '^needle$' "$big"
child 'big="needle"$'"'"'\n'"'"'"$(seq 1 200000)"; tk_nomatch "x" "^needle\$" "$big"; tk_done' >/dev/null 2>&1
tk_eq "tk_nomatch fails on a match at the start of a large text" 1 $?

# tk_host: a plain program when the tool is not an ASan build, else with the runtime preloaded.
tk_check "tk_host runs a program" tk_host sh -c 'echo "preload=${LD_PRELOAD:-}"'
if [ -n "$TK_ASAN_RUNTIME" ]; then
    tk_match "ASan runtime preloaded" "^preload=$TK_ASAN_RUNTIME"
else
    tk_eq "nothing preloaded" "preload=${LD_PRELOAD:-}" "$TK_OUT"
fi

# Cleanup at exit: a scenario that dies keeps neither processes nor its folder.
child 'tk_swtpm_start; tk_abrmd_start
echo "$TK_SWTPM_PID $TK_ABRMD_PID $TK_DBUS_PID $TK_TMP" >"$TK_TMP_PARENT/pids"
exit 5' >"$TK_TMP/c6.log" 2>&1
tk_eq "exit code kept through the EXIT trap" 5 $?
read -r p_swtpm p_abrmd p_dbus p_tmp <"$TK_TMP/pids"
for p in "$p_swtpm" "$p_abrmd" "$p_dbus"; do
    if [ -n "$p" ] && ! tk_alive "$p"; then
        tk_pass "process $p stopped by the EXIT trap"
    else
        tk_fail "process '$p' stopped by the EXIT trap"
    fi
done
if [ -n "$p_tmp" ] && [ ! -e "$p_tmp" ]; then
    tk_pass "temporary folder removed"
else
    tk_fail "temporary folder '$p_tmp' removed"
fi

tk_done
