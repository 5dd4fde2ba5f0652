#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Install, from Debian 12's archive, everything tpmkeys needs to build and to run its
# tests.  Packages already installed are left alone; when all are there, nothing is
# fetched.  Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
    # build
    build-essential autoconf automake libtool autoconf-archive pkg-config
    libtss2-dev libssl-dev libsqlite3-dev libp11-kit-dev p11-kit
    # tests: unit, TPM simulator, resource manager, peers and real clients
    libcmocka-dev swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus
    tpm2-openssl opensc gnutls-bin openssh-server openssh-client nginx-light curl sqlite3
    # benchmarks and the sanitizer build
    gnuplot-nox clang libclang-rt-14-dev python3 valgrind libtpm2-pkcs11-tools
)

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = 'install ok installed' ]
}

missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} packages are installed"
    exit 0
fi
echo "deps: installing ${missing[*]}"

as_root=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "deps: missing packages (${missing[*]}) and not root: run as root or install sudo" >&2
        exit 1
    }
    as_root=(sudo)
fi

# Installing openssh-server, nginx or tpm2-abrmd must not start their services on this
# machine: the tests run private instances.  policy-rc.d says so to invoke-rc.d while
# we install (only when the machine has no policy of its own).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    "${as_root[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy"
    trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
