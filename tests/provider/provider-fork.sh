#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fork and thread safety (tests/provider/test_fork.c): a key used in the parent, then in
# children forked afterwards and in threads, with TSS2 files and tpmkeys: URIs.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

FORK=$top_builddir/tests/provider/test_fork
[ -x "$FORK" ] || tk_die "$FORK is not built (make check builds it)"
tk_need_tool
tk_need dbus-daemon tpm2-abrmd
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN

tk_check "init" "$TK" init
tkp_keys rsa:rsa2048 ec:ecc-p256
tk_abrmd_start

for k in rsa ec; do
    for src in "$k.tss2.pem" "tpmkeys:object=$k"; do
        tk_check "fork + threads: $src" "$FORK" "$src" "$k.pub.pem"
        tk_match "$src: every signature verified" '^0 failures in [0-9]+ signatures'
    done
done

tk_done
