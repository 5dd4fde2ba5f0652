# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
#
# Test harness for the shell scenarios (tests/integration/*.sh).  Source it:
#
#     . "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
#
# It gives every scenario
#   TK_TMP            a private temporary folder, removed at exit (TK_KEEP_TMP=1 keeps it)
#   TK                the tpmkeys tool ($TPMKEYS_TOOL, else $top_builddir/tools/tpmkeys)
#   tk_swtpm_start / tk_swtpm_stop   a fresh swtpm on free loopback ports
#   tk_abrmd_start / tk_abrmd_stop   tpm2-abrmd in front of it, on a private session bus
#   tk_check, tk_check_not, tk_expect_fail        run a command and judge its exit
#   tk_match, tk_imatch, tk_nomatch, tk_eq         judge text (default: the last output)
#   tk_pass, tk_fail, tk_skip, tk_die, tk_done     record results / end the scenario
#   tk_need, tk_need_tool, tk_free_port, tk_alive, tk_track_pid, tk_sha256
#   tk_host CMD...    run a foreign program that loads our modules (ASan builds)
# and an EXIT trap that stops, by PID, every process the scenario started here.
#
# Exit codes follow automake: 0 pass, 1 fail, 77 skip, 99 hard error (the harness
# itself could not set up what the scenario needs).
#
# Every command run through tk_check / tk_expect_fail gets stdin from /dev/null and,
# when it is a program (not a shell function), a time limit of TK_TIMEOUT seconds.

set -u -o pipefail

TK_NAME=$(basename "${0%.sh}")
: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
TK=${TPMKEYS_TOOL:-$top_builddir/tools/tpmkeys}
TK_TIMEOUT=${TK_TIMEOUT:-120}
TK_FAILED=0
TK_CHECKS=0

TK_SWTPM_PID=
TK_SWTPM_PORT=
TK_SWTPM_STATE=
TK_DBUS_PID=
TK_ABRMD_PID=

# Results of the last tk_check / tk_expect_fail.
TK_RC=0
TK_OUT=
TK_ERR=

TK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tk-$TK_NAME.XXXXXX") || {
    echo "ERROR: cannot create a temporary folder" >&2
    exit 99
}

# ------------------------------------------------------------------ reporting

tk_log() { printf '# %s\n' "$*"; }

# Print indented, labelled text (a command's output) under a result line.
_tk_show() {
    local label=$1 text=$2
    [ -n "$text" ] || return 0
    printf '#   %s:\n' "$label"
    sed -n '1,60s/^/#     /p' <<<"$text"
}

# tk_fail DESC: record a failed check (the scenario goes on; tk_done turns it into
# exit 1).  tk_pass DESC: record a passed one.
tk_fail() {
    TK_FAILED=$((TK_FAILED + 1))
    TK_CHECKS=$((TK_CHECKS + 1))
    printf 'not ok - %s\n' "$*"
}

tk_pass() {
    TK_CHECKS=$((TK_CHECKS + 1))
    printf 'ok - %s\n' "$*"
}

# The harness could not set up the scenario: hard error (automake ERROR).
tk_die() {
    printf 'ERROR: %s\n' "$*" >&2
    printf 'not ok - %s\n' "$*"
    exit 99
}

tk_skip() {
    printf 'SKIP: %s\n' "$*"
    exit 77
}

tk_done() {
    if [ "$TK_FAILED" -gt 0 ]; then
        printf '# %s: %d of %d checks failed\n' "$TK_NAME" "$TK_FAILED" "$TK_CHECKS"
        exit 1
    fi
    if [ "$TK_CHECKS" -eq 0 ]; then
        tk_die "$TK_NAME ran no check"
    fi
    printf '# %s: all %d checks passed\n' "$TK_NAME" "$TK_CHECKS"
    exit 0
}

# Skip unless every named program is installed.
tk_need() {
    local p
    for p in "$@"; do
        command -v "$p" >/dev/null 2>&1 || tk_skip "$p is not installed"
    done
}

# The scenario exercises the tpmkeys tool: a missing build is an error, not a skip.
tk_need_tool() {
    [ -x "$TK" ] || tk_die "tpmkeys tool not built at $TK (run make first)"
}

# ------------------------------------------------------------------ sanitizer builds

# When the tool is built with AddressSanitizer, a program we did not build (pkcs11-tool,
# openssl, ssh, nginx) that dlopens one of our modules needs the ASan runtime first in
# its library list.  `tk_host CMD...` runs CMD so (leak checks off: the host programs'
# own leaks are not ours; TK_HOST_LEAKS=1 keeps them on).  Elsewhere it just runs CMD.
TK_ASAN_RUNTIME=$(ldd "$TK" 2>/dev/null | awk '$1 ~ /^libasan\.so/ { print $3; exit }')
TK_HOST_ENV=()
if [ -n "$TK_ASAN_RUNTIME" ]; then
    TK_HOST_ENV=("LD_PRELOAD=$TK_ASAN_RUNTIME${LD_PRELOAD:+:$LD_PRELOAD}")
    [ "${TK_HOST_LEAKS:-0}" = 1 ] ||
        TK_HOST_ENV+=("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
fi
tk_host() { env "${TK_HOST_ENV[@]}" "$@"; }

# ------------------------------------------------------------------ running commands

# Run "$@" with stdout in $TK_TMP/.out and stderr in $TK_TMP/.err; sets TK_RC, TK_OUT, TK_ERR.
_tk_run() {
    local out=$TK_TMP/.out err=$TK_TMP/.err
    # tk_host as a program, so that the time limit applies.
    [ "$1" != tk_host ] || { shift; set -- env "${TK_HOST_ENV[@]}" "$@"; }
    if [ "$(type -t "$1")" = file ]; then
        timeout -k 5 "$TK_TIMEOUT" "$@" </dev/null >"$out" 2>"$err"
        TK_RC=$?
    else
        ("$@") </dev/null >"$out" 2>"$err"
        TK_RC=$?
    fi
    TK_OUT=$(tr -d '\0' <"$out")  # binary output: drop NULs, bash cannot hold them
    TK_ERR=$(tr -d '\0' <"$err")
    if [ "$TK_RC" -eq 124 ] && [ "$(type -t "$1")" = file ]; then
        TK_ERR="$TK_ERR${TK_ERR:+$'\n'}(harness: timed out after ${TK_TIMEOUT}s)"
    fi
}

_tk_show_run() {
    printf '#   command: %s\n' "$*"
    _tk_show stdout "$TK_OUT"
    _tk_show stderr "$TK_ERR"
}

# tk_check DESC CMD...: the command must exit 0.  Returns the command's status.
tk_check() {
    local desc=$1
    shift
    _tk_run "$@"
    if [ "$TK_RC" -eq 0 ]; then
        tk_pass "$desc"
    else
        tk_fail "$desc (exit $TK_RC)"
        _tk_show_run "$@"
    fi
    return "$TK_RC"
}

# Whether exit status $1 is a plain failure: not 0, not a time-out (124), not a signal.
_tk_plain_failure() { [ "$1" -ge 1 ] && [ "$1" -le 123 ]; }

# tk_check_not DESC CMD...: the command must fail (exit 1..123; a time-out or a
# crash by signal does not count).  For refusals that need not explain themselves,
# e.g. `openssl dgst -verify` of a bad signature.
tk_check_not() {
    local desc=$1
    shift
    _tk_run "$@"
    if _tk_plain_failure "$TK_RC"; then
        tk_pass "$desc (refused, exit $TK_RC)"
        return 0
    fi
    tk_fail "$desc (exit $TK_RC, expected a refusal)"
    _tk_show_run "$@"
    return 1
}

# tk_expect_fail CODE DESC CMD...: the command must exit with CODE (or one of
# "A|B", or "*" for any plain failure) and say why on stderr.  Returns 0 when the
# expectation held.
tk_expect_fail() {
    local codes=$1 desc=$2
    shift 2
    _tk_run "$@"
    local ok=no c
    IFS='|' read -r -a _tk_codes <<<"$codes"
    for c in "${_tk_codes[@]}"; do
        if [ "$c" = '*' ]; then
            _tk_plain_failure "$TK_RC" && ok=yes
        elif [ "$TK_RC" = "$c" ]; then
            ok=yes
        fi
    done
    if [ $ok = no ]; then
        tk_fail "$desc (exit $TK_RC, expected $codes)"
        _tk_show_run "$@"
        return 1
    fi
    if [ -z "$(printf '%s' "$TK_ERR" | tr -d '[:space:]')" ]; then
        tk_fail "$desc (exit $TK_RC as expected, but no error message on stderr)"
        _tk_show_run "$@"
        return 1
    fi
    tk_pass "$desc (exit $TK_RC)"
    return 0
}

# tk_match DESC REGEX [TEXT]: TEXT (default: stdout + stderr of the last command)
# must match the extended regular expression REGEX (case-sensitive; tk_imatch: not).
tk_match() {
    local desc=$1 re=$2
    local text
    if [ $# -ge 3 ]; then text=$3; else text="$TK_OUT"$'\n'"$TK_ERR"; fi
    # A here-string, not a pipe: with pipefail, grep -q leaving early would turn the
    # writer's SIGPIPE into a failed pipeline.
    if grep -Eq ${_TK_GREP_I:-} -- "$re" <<<"$text"; then
        tk_pass "$desc"
        return 0
    fi
    tk_fail "$desc (no match for /$re/)"
    _tk_show text "$text"
    return 1
}

tk_imatch() { _TK_GREP_I=-i tk_match "$@"; }

# tk_nomatch DESC REGEX [TEXT]: the opposite of tk_match.
tk_nomatch() {
    local desc=$1 re=$2
    local text
    if [ $# -ge 3 ]; then text=$3; else text="$TK_OUT"$'\n'"$TK_ERR"; fi
    if ! grep -Eq -- "$re" <<<"$text"; then
        tk_pass "$desc"
        return 0
    fi
    tk_fail "$desc (unexpected match for /$re/)"
    _tk_show text "$text"
    return 1
}

# tk_eq DESC EXPECTED ACTUAL
tk_eq() {
    if [ "$2" = "$3" ]; then
        tk_pass "$1"
        return 0
    fi
    tk_fail "$1"
    printf '#   expected: %s\n#   actual:   %s\n' "$2" "$3"
    return 1
}

tk_sha256() { sha256sum "$1" | cut -d' ' -f1; }

# ------------------------------------------------------------------ ports

# Whether TCP ports $1 and $1+1 on 127.0.0.1 are both free.
_tk_ports_free() {
    local p=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$p" <<'EOF'
import socket, sys
p = int(sys.argv[1])
for port in (p, p + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
        return
    fi
    # No python3: a port something answers on is taken.
    ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
        ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null
}

# Print an even port P such that P and P+1 are free, below the kernel's ephemeral
# range (32768-) so that no client connection can be holding it.
tk_free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + 2 * (RANDOM % 6000)))
        if _tk_ports_free "$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

_tk_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------------ processes

# Whether PID runs (a child of ours that exited stays a zombie until waited for).
tk_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Stop a process by PID: TERM, up to 5 s, then KILL.  Reaps it when it is our child.
_tk_kill() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    for _ in $(seq 1 50); do
        tk_alive "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# ------------------------------------------------------------------ swtpm

_tk_swtpm_tcti() { echo "swtpm:host=127.0.0.1,port=$1"; }

# Start one swtpm try on port $1; returns 0 once it answers.
_tk_swtpm_try() {
    local port=$1 ctrl=$(($1 + 1))
    TK_SWTPM_STATE=$TK_TMP/swtpm
    rm -rf "$TK_SWTPM_STATE"
    mkdir -p "$TK_SWTPM_STATE"
    swtpm socket --tpm2 \
        --server "type=tcp,bindaddr=127.0.0.1,port=$port" \
        --ctrl "type=tcp,bindaddr=127.0.0.1,port=$ctrl" \
        --tpmstate "dir=$TK_SWTPM_STATE" \
        --flags not-need-init,startup-clear \
        --pid "file=$TK_SWTPM_STATE/swtpm.pid" \
        >"$TK_TMP/swtpm.log" 2>&1 &
    TK_SWTPM_PID=$!
    for _ in $(seq 1 100); do
        if ! tk_alive "$TK_SWTPM_PID"; then
            wait "$TK_SWTPM_PID" 2>/dev/null
            TK_SWTPM_PID=
            return 1
        fi
        _tk_port_open "$ctrl" && _tk_port_open "$port" && break
        sleep 0.1
    done
    # The ports accept connections: now the TPM itself must answer.
    for _ in $(seq 1 20); do
        if timeout 10 tpm2_getrandom -T "$(_tk_swtpm_tcti "$port")" 8 >/dev/null 2>&1; then
            TK_SWTPM_PORT=$port
            return 0
        fi
        sleep 0.25
    done
    _tk_kill "$TK_SWTPM_PID"
    TK_SWTPM_PID=
    return 1
}

# Point every TPM user (tpmkeys, tpm2-tools, tpm2-openssl) at one TCTI.
tk_use_tcti() {
    export TPMKEYS_TCTI=$1 TPM2TOOLS_TCTI=$1 TPM2OPENSSL_TCTI=$1
}

# Start a fresh swtpm, export the TCTIs and TPMKEYS_STORE=$TK_TMP/store.db, relax the
# dictionary-attack limits (TK_DA_MAX_TRIES, default 1000, 1 s recovery).
# Call it directly (not inside $(...)): the simulator is a child of the scenario shell.
tk_swtpm_start() {
    tk_need swtpm tpm2_getrandom tpm2_dictionarylockout
    [ -z "$TK_SWTPM_PID" ] || tk_die "tk_swtpm_start: a swtpm is already running"
    local try port
    for try in $(seq 1 10); do
        port=$(tk_free_port) || tk_die "no free pair of TCP ports on 127.0.0.1"
        _tk_swtpm_try "$port" && break
        tk_log "swtpm on port $port did not come up (try $try): $(tail -n 3 "$TK_TMP/swtpm.log" 2>/dev/null)"
    done
    [ -n "$TK_SWTPM_PID" ] || tk_die "swtpm did not start; see $TK_TMP/swtpm.log"
    tk_use_tcti "$(_tk_swtpm_tcti "$TK_SWTPM_PORT")"
    export TPMKEYS_STORE=$TK_TMP/store.db
    tpm2_dictionarylockout --setup-parameters --max-tries="${TK_DA_MAX_TRIES:-1000}" \
        --recovery-time=1 --lockout-recovery-time=1 >"$TK_TMP/da.log" 2>&1 ||
        tk_die "tpm2_dictionarylockout failed: $(cat "$TK_TMP/da.log")"
    tk_log "swtpm pid $TK_SWTPM_PID on 127.0.0.1:$TK_SWTPM_PORT (TCTI $TPMKEYS_TCTI)"
}

tk_swtpm_stop() {
    tk_abrmd_stop
    [ -n "$TK_SWTPM_PID" ] || return 0
    _tk_kill "$TK_SWTPM_PID"
    TK_SWTPM_PID=
    TK_SWTPM_PORT=
}

# ------------------------------------------------------------------ tpm2-abrmd

# tpm2-abrmd in front of the running swtpm, on a private session bus.  Exports
# DBUS_SESSION_BUS_ADDRESS and TCTI tabrmd:bus_type=session for every TPM user.
tk_abrmd_start() {
    tk_need dbus-daemon tpm2-abrmd
    [ -n "$TK_SWTPM_PID" ] || tk_die "tk_abrmd_start needs tk_swtpm_start first"
    [ -z "$TK_ABRMD_PID" ] || tk_die "tk_abrmd_start: tpm2-abrmd is already running"
    local info
    info=$(dbus-daemon --session --fork --print-address=1 --print-pid=1 \
        --address="unix:path=$TK_TMP/dbus.sock" 2>"$TK_TMP/dbus.log") ||
        tk_die "dbus-daemon failed: $(cat "$TK_TMP/dbus.log")"
    export DBUS_SESSION_BUS_ADDRESS
    DBUS_SESSION_BUS_ADDRESS=$(printf '%s\n' "$info" | sed -n 1p)
    TK_DBUS_PID=$(printf '%s\n' "$info" | sed -n 2p)
    case "$TK_DBUS_PID" in
        '' | *[!0-9]*) tk_die "dbus-daemon printed no PID: $info" ;;
    esac
    tpm2-abrmd --session --allow-root --flush-all \
        --tcti="$(_tk_swtpm_tcti "$TK_SWTPM_PORT")" >"$TK_TMP/abrmd.log" 2>&1 &
    TK_ABRMD_PID=$!
    for _ in $(seq 1 40); do
        tk_alive "$TK_ABRMD_PID" || break
        if timeout 10 tpm2_getrandom -T tabrmd:bus_type=session 8 >/dev/null 2>&1; then
            tk_use_tcti tabrmd:bus_type=session
            tk_log "tpm2-abrmd pid $TK_ABRMD_PID, dbus-daemon pid $TK_DBUS_PID"
            return 0
        fi
        sleep 0.25
    done
    tk_die "tpm2-abrmd did not become ready: $(tail -n 5 "$TK_TMP/abrmd.log")"
}

# Stop tpm2-abrmd and its bus; the TCTIs point at swtpm again.
tk_abrmd_stop() {
    if [ -n "$TK_ABRMD_PID" ]; then
        _tk_kill "$TK_ABRMD_PID"
        TK_ABRMD_PID=
    fi
    if [ -n "$TK_DBUS_PID" ]; then
        _tk_kill "$TK_DBUS_PID"
        TK_DBUS_PID=
        unset DBUS_SESSION_BUS_ADDRESS
    fi
    [ -z "$TK_SWTPM_PORT" ] || tk_use_tcti "$(_tk_swtpm_tcti "$TK_SWTPM_PORT")"
}

# ------------------------------------------------------------------ cleanup

TK_EXTRA_PIDS=()
# Have the EXIT trap stop a process the scenario started some other way (by PID).
tk_track_pid() { TK_EXTRA_PIDS+=("$1"); }

_tk_cleanup() {
    local rc=$? pid
    trap - EXIT
    for pid in "${TK_EXTRA_PIDS[@]}"; do
        _tk_kill "$pid"
    done
    tk_swtpm_stop
    if [ "${TK_KEEP_TMP:-0}" = 1 ]; then
        echo "# kept $TK_TMP"
    else
        rm -rf "$TK_TMP"
    fi
    exit "$rc"
}
trap _tk_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
