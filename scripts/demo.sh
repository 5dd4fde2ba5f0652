#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# tpmkeys in two minutes: install what it needs, build it, start a TPM simulator when
# there is no TPM, make a key in the TPM and import one made by OpenSSL, sign a file
# with each and check the signatures with OpenSSL.  Safe to run again: it reuses the
# build, the simulator, the store and the keys it made before.
set -euo pipefail

usage() {
    cat <<EOF
Usage: bash scripts/demo.sh [--no-install] [--swtpm] [--dir DIR]
  --no-install  do not install Debian packages (scripts/deps.sh)
  --swtpm       use the TPM simulator even when a TPM or TPMKEYS_TCTI is there
  --dir DIR     demo folder: simulator state, store, keys (default ./demo-tpm)
Environment: TPMKEYS_TCTI (use this TPM), TPMKEYS_TOOL (use this tpmkeys, skip the build).
EOF
}

install=yes
force_swtpm=no
demo=$PWD/demo-tpm
while [ $# -gt 0 ]; do
    case $1 in
        --no-install) install=no ;;
        --swtpm) force_swtpm=yes ;;
        --dir) [ $# -ge 2 ] || { usage >&2; exit 2; }; demo=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "demo: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

top=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$demo"
demo=$(cd "$demo" && pwd)
chmod 700 "$demo"

step() { printf '\n==> %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }
# How to name a demo file to the user: relative to where they are, when inside it.
show_path() { case $1 in "$PWD"/*) echo "${1#"$PWD"/}" ;; *) echo "$1" ;; esac; }

# ---------------------------------------------------------------- dependencies, build
if [ $install = yes ]; then
    step "installing dependencies (scripts/deps.sh)"
    bash "$top/scripts/deps.sh"
fi

if [ -n "${TPMKEYS_TOOL:-}" ]; then
    [ -x "$TPMKEYS_TOOL" ] || die "TPMKEYS_TOOL=$TPMKEYS_TOOL is not an executable"
    tool=$TPMKEYS_TOOL
else
    step "building tpmkeys in $(show_path "$top/build")"
    if [ ! -f "$top/build/Makefile" ]; then
        [ -x "$top/configure" ] || (cd "$top" && autoreconf -fi)
        mkdir -p "$top/build"
        (cd "$top/build" && "$top/configure" -q)
    fi
    make -C "$top/build" -j2 -s tools/tpmkeys
    tool=$top/build/tools/tpmkeys
fi
tpmkeys() { "$tool" "$@"; }

# ---------------------------------------------------------------- the TPM
# Whether TCP port $1 on 127.0.0.1 accepts connections.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free even port P with P+1 free too, below the kernel's ephemeral range (32768-)
# so that no client connection holds it.
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + 2 * (RANDOM % 6000)))
        port_open "$p" || port_open $((p + 1)) || { echo "$p"; return 0; }
    done
    return 1
}

# Start swtpm in the background on port $1 (ctrl $1+1); 0 once it answers.
try_swtpm() {
    local port=$1 pidfile=$demo/swtpm.pid
    rm -f "$pidfile"
    swtpm socket --tpm2 --daemon \
        --server "type=tcp,bindaddr=127.0.0.1,port=$port" \
        --ctrl "type=tcp,bindaddr=127.0.0.1,port=$((port + 1))" \
        --tpmstate "dir=$demo/tpm" --flags not-need-init,startup-clear \
        --pid "file=$pidfile" --log "file=$demo/swtpm.log" || return 1
    for _ in $(seq 1 50); do
        [ -s "$pidfile" ] && port_open "$port" && return 0
        sleep 0.1
    done
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
    return 1
}

# Start (or find running) the demo's swtpm; sets TPMKEYS_TCTI.
start_swtpm() {
    local pidfile=$demo/swtpm.pid port try
    if [ -s "$pidfile" ] && [ -s "$demo/tcti" ] && [ -s "$demo/port" ] &&
        kill -0 "$(cat "$pidfile")" 2>/dev/null && port_open "$(cat "$demo/port")"; then
        TPMKEYS_TCTI=$(cat "$demo/tcti")
        echo "TPM simulator already running (pid $(cat "$pidfile")), TCTI $TPMKEYS_TCTI"
        return 0
    fi
    command -v swtpm >/dev/null || die "swtpm is not installed (run without --no-install)"
    mkdir -p "$demo/tpm"
    # The port of the last run when it is still free, else new ones.
    port=$(cat "$demo/port" 2>/dev/null || true)
    if [ -z "$port" ] || port_open "$port" || port_open $((port + 1)); then
        port=$(free_port) || die "no free TCP ports on 127.0.0.1"
    fi
    for try in 1 2 3 4 5; do
        try_swtpm "$port" && break
        echo "the TPM simulator did not start on port $port (try $try): $(tail -n 2 "$demo/swtpm.log" 2>/dev/null)" >&2
        [ "$try" -lt 5 ] || die "the TPM simulator did not start; see $demo/swtpm.log"
        port=$(free_port) || die "no free TCP ports on 127.0.0.1"
    done
    echo "$port" >"$demo/port"
    TPMKEYS_TCTI="swtpm:host=127.0.0.1,port=$port"
    echo "$TPMKEYS_TCTI" >"$demo/tcti"
    echo "TPM simulator started (pid $(cat "$pidfile")), state in $(show_path "$demo/tpm")"
}

step "choosing a TPM"
started_swtpm=no
if [ $force_swtpm = no ] && [ -n "${TPMKEYS_TCTI:-}" ]; then
    echo "using TPMKEYS_TCTI=$TPMKEYS_TCTI"
elif [ $force_swtpm = no ] && [ -e /dev/tpmrm0 ]; then
    TPMKEYS_TCTI=device:/dev/tpmrm0
    echo "using this machine's TPM through /dev/tpmrm0"
else
    start_swtpm
    started_swtpm=yes
fi
export TPMKEYS_TCTI
export TPMKEYS_STORE=$demo/store.db
unset TPMKEYS_PIN

# ---------------------------------------------------------------- init and keys
umask 077
pin=$demo/user.pin
[ -s "$pin" ] || printf '123456' >"$pin"
chmod 600 "$pin"

step "tpmkeys init (store $(show_path "$TPMKEYS_STORE"), user PIN from $(show_path "$pin"))"
tpmkeys init --user-pin-file "$pin"

step "a key generated inside the TPM: demo-ec (ECC P-256, no PIN)"
if tpmkeys show demo-ec >/dev/null 2>&1; then
    echo "demo-ec exists already"
else
    tpmkeys create-key --label demo-ec --algorithm ecc-p256 --no-pin
fi

step "an imported key: demo-rsa (RSA 2048 made by OpenSSL, protected by the PIN)"
rsa=$demo/demo-rsa.pem
if [ ! -s "$rsa" ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$rsa" 2>/dev/null
    echo "made $(show_path "$rsa") with openssl"
fi
if tpmkeys show demo-rsa >/dev/null 2>&1; then
    echo "demo-rsa exists already"
else
    tpmkeys create-key --label demo-rsa --import "$rsa" --pin-file "$pin"
fi

# ---------------------------------------------------------------- sign and verify
msg=$demo/message.txt
echo "Signed by a key that never leaves the TPM ($(date -u +%Y-%m-%dT%H:%M:%SZ))" >"$msg"

step "signing $(show_path "$msg") with demo-ec; openssl verifies"
tpmkeys export demo-ec --public -o "$demo/demo-ec.pub.pem" --force
tpmkeys sign demo-ec -i "$msg" -o "$msg.demo-ec.sig" --hash sha256
openssl dgst -sha256 -verify "$demo/demo-ec.pub.pem" -signature "$msg.demo-ec.sig" "$msg"

step "signing with demo-rsa (PIN from the file); openssl verifies with the ORIGINAL key file"
tpmkeys sign demo-rsa -i "$msg" -o "$msg.demo-rsa.sig" --hash sha256 --pin-file "$pin"
openssl dgst -sha256 -prverify "$rsa" -signature "$msg.demo-rsa.sig" "$msg"

step "tpmkeys list"
tpmkeys list

# ---------------------------------------------------------------- what next
d=$(show_path "$demo")
cat <<EOF

==> done.  To use these keys from your shell:

    export TPMKEYS_STORE=$TPMKEYS_STORE
    export TPMKEYS_TCTI=$TPMKEYS_TCTI
    alias tpmkeys=$tool

    tpmkeys list
    tpmkeys sign demo-ec -i FILE -o FILE.sig
    tpmkeys sign demo-rsa -i FILE -o FILE.sig --pin-file $d/user.pin
    tpmkeys export demo-ec --public             # PEM public key, for openssl dgst -verify
    tpmkeys export demo-ec --tss2 -o key.pem    # TSS2 PRIVATE KEY file for OpenSSL / nginx
    tpmkeys doctor

EOF
if [ $started_swtpm = yes ]; then
    cat <<EOF
The TPM simulator keeps running in the background.  Stop it with:

    kill \$(cat $d/swtpm.pid)

Run this script again to restart it with the same keys; rm -rf $d to start over.
EOF
fi
