# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
#
# Helpers for the concurrency scenarios; source after tests/lib.sh and
# tests/provider/prov-lib.sh (which points OPENSSL_MODULES at the built provider).
#
#   CONC          the test program (tests/reliability/test_conc)
#   MODULE        the built PKCS#11 module
#   TK_LONG=1     full-length runs (make check-conc-long); conc_pick SHORT LONG prints one
#   conc_pubkeys LABEL...   export LABEL.pub.pem of existing keys
#   conc_labels   the labels `tpmkeys list` shows, sorted, one a line

CONC=$top_builddir/tests/reliability/test_conc
MODULE=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
[ -x "$CONC" ] || tk_die "$CONC is not built (make check builds it)"
[ -f "$MODULE" ] || tk_die "PKCS#11 module not built at $MODULE"

conc_pick() {
    if [ "${TK_LONG:-0}" = 1 ]; then echo "$2"; else echo "$1"; fi
}

conc_pubkeys() {
    local label
    for label in "$@"; do
        "$TK" export "$label" --public -o "$label.pub.pem" >/dev/null 2>"$label.export.err" ||
            tk_die "export --public $label failed: $(cat "$label.export.err")"
    done
}

conc_labels() {
    "$TK" list | sed -n 's/^label: *//p' | sort
}
