# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
#
# Helpers for the fault scenarios; source after tests/lib.sh.
#
#   tkf_swtpm_kill          SIGKILL the running swtpm (by its PID), as a crash would
#   tkf_swtpm_restart       start swtpm again on the same ports and state folder
#   tkf_abrmd_kill / tkf_abrmd_restart   the same for tpm2-abrmd, on the same bus
#   tkf_wait_lines FILE REGEX N SECS     wait until FILE has N lines matching REGEX
#   tkf_sign_setup          $module and $prog (test_fault_sign) checked built, the provider
#                           too; the environment test_fault_sign reads exported
#   TKF_LONG                1 under `make check-faults-long` (TK_FAULT_LONG=1)

# shellcheck disable=SC2034  # used by the scenarios that source this file
TKF_LONG=${TK_FAULT_LONG:-0}

tkf_swtpm_kill() {
    [ -n "$TK_SWTPM_PID" ] || tk_die "tkf_swtpm_kill: no swtpm running"
    kill -KILL "$TK_SWTPM_PID" 2>/dev/null
    wait "$TK_SWTPM_PID" 2>/dev/null
    TK_SWTPM_PID=
}

# The same command line as tests/lib.sh, without wiping the state: the SRK and the DA
# settings survive, as they do when a real TPM comes back.
tkf_swtpm_restart() {
    local port=$TK_SWTPM_PORT
    [ -n "$port" ] && [ -d "$TK_SWTPM_STATE" ] || tk_die "tkf_swtpm_restart: no swtpm was started"
    for _ in $(seq 1 50); do
        swtpm socket --tpm2 \
            --server "type=tcp,bindaddr=127.0.0.1,port=$port" \
            --ctrl "type=tcp,bindaddr=127.0.0.1,port=$((port + 1))" \
            --tpmstate "dir=$TK_SWTPM_STATE" \
            --flags not-need-init,startup-clear \
            --pid "file=$TK_SWTPM_STATE/swtpm.pid" \
            >>"$TK_TMP/swtpm.log" 2>&1 &
        TK_SWTPM_PID=$!
        for _ in $(seq 1 50); do
            tk_alive "$TK_SWTPM_PID" || break
            if timeout 10 tpm2_getrandom -T "swtpm:host=127.0.0.1,port=$port" 8 >/dev/null 2>&1; then
                return 0
            fi
            sleep 0.1
        done
        # The port may still be held for a moment after the kill: try again.
        _tk_kill "$TK_SWTPM_PID"
        TK_SWTPM_PID=
        sleep 0.2
    done
    tk_die "swtpm did not come back on port $port: $(tail -n 3 "$TK_TMP/swtpm.log")"
}

tkf_abrmd_kill() {
    [ -n "$TK_ABRMD_PID" ] || tk_die "tkf_abrmd_kill: no tpm2-abrmd running"
    kill -KILL "$TK_ABRMD_PID" 2>/dev/null
    wait "$TK_ABRMD_PID" 2>/dev/null
    TK_ABRMD_PID=
}

# tpm2-abrmd again on the bus tk_abrmd_start made (DBUS_SESSION_BUS_ADDRESS).
tkf_abrmd_restart() {
    [ -n "$TK_DBUS_PID" ] || tk_die "tkf_abrmd_restart: no session bus"
    tpm2-abrmd --session --allow-root --flush-all \
        --tcti="swtpm:host=127.0.0.1,port=$TK_SWTPM_PORT" >>"$TK_TMP/abrmd.log" 2>&1 &
    TK_ABRMD_PID=$!
    for _ in $(seq 1 80); do
        tk_alive "$TK_ABRMD_PID" || break
        timeout 10 tpm2_getrandom -T tabrmd:bus_type=session 8 >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    tk_die "tpm2-abrmd did not come back: $(tail -n 5 "$TK_TMP/abrmd.log")"
}

tkf_wait_lines() {
    local file=$1 re=$2 n=$3 secs=$4 i
    for i in $(seq 1 $((secs * 20))); do
        [ "$(grep -cE -- "$re" "$file" 2>/dev/null)" -ge "$n" ] && return 0
        sleep 0.05
    done
    return 1
}

tkf_sign_setup() {
    module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
    prog=$top_builddir/tests/reliability/test_fault_sign
    [ -f "$module" ] || tk_die "PKCS#11 module not built at $module"
    [ -x "$prog" ] || tk_die "$prog is not built"
    [ -f "$top_builddir/provider/.libs/tpm2.so" ] || tk_die "provider not built"
    export OPENSSL_MODULES=$top_builddir/provider/.libs OPENSSL_CONF=/dev/null
    export TPMKEYS_PKCS11_MODULE=$module
    export TSS2_LOG=${TSS2_LOG:-all+none}
}
