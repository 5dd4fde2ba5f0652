#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Fork through both doors (tests/reliability/test_conc.c): sign, fork, sign in the
# child (PKCS#11: after C_Initialize again, as the spec asks), sign in the parent.
# - bare swtpm: the child opens a TPM connection of its own and signs with the key the
#   parent loaded; the parent lets go of its single connection before waiting (a bare
#   swtpm serves one at a time), then signs again.  /dev/tpmrm0 works the same way.
# - tpm2-abrmd: a parent that only read the store before forking (nginx's master):
#   child and parent sign at the same time.  A parent that already used abrmd: its child
#   cannot reach abrmd at all (GLib's D-Bus connection and worker thread do not survive
#   fork(), even after the parent closed its TCTI); the child must get CKR_DEVICE_ERROR /
#   an OpenSSL error within 5 s instead of hanging on D-Bus time-outs, and the parent
#   goes on signing.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"
. "$top_srcdir/tests/reliability/conc-lib.sh"

tk_need_tool
tk_need dbus-daemon tpm2-abrmd
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
export TSS2_LOG=${TSS2_LOG:-all+none}

tk_check "init" "$TK" init
for spec in ec:ecc-p256 rsa:rsa2048; do
    tk_check "create-key ${spec%%:*}" "$TK" create-key --label "${spec%%:*}" \
        --algorithm "${spec#*:}" --no-pin
done
conc_pubkeys ec rsa

for k in ec rsa; do
    tk_check "swtpm: PKCS#11 sign, fork, sign in child and parent ($k)" \
        "$CONC" p11-fork "$MODULE" tpmkeys "$k" direct
    tk_match "swtpm: PKCS#11 fork ($k): the child signed and verified" 'child: 5 signatures verified, 0 failures'
    tk_match "swtpm: PKCS#11 fork ($k): the parent signed and verified" "p11-fork $k \(direct\): 15 signatures verified in the parent, 0 failures"
    tk_check "swtpm: provider sign, fork, sign in child and parent ($k)" "$CONC" prov-fork "$k" direct
    tk_match "swtpm: provider fork ($k): the child signed and verified" 'child: 5 signatures verified, 0 failures'
    tk_match "swtpm: provider fork ($k): the parent signed and verified" "prov-fork $k \(direct\): 15 signatures verified in the parent, 0 failures"
done

tk_abrmd_start
for k in ec rsa; do
    tk_check "abrmd: PKCS#11 store only, fork, child and parent sign at once ($k)" \
        "$CONC" p11-fork "$MODULE" tpmkeys "$k" rm-late
    tk_match "abrmd: PKCS#11 fork ($k): the child signed and verified" 'child: 5 signatures verified, 0 failures'
    tk_match "abrmd: PKCS#11 fork ($k): the parent signed and verified" "p11-fork $k \(rm-late\): 10 signatures verified in the parent, 0 failures"
    tk_check "abrmd: provider key loaded, fork, child and parent sign at once ($k)" \
        "$CONC" prov-fork "$k" rm-late
    tk_match "abrmd: provider fork ($k): the child signed and verified" 'child: 5 signatures verified, 0 failures'
    tk_match "abrmd: provider fork ($k): the parent signed and verified" "prov-fork $k \(rm-late\): 10 signatures verified in the parent, 0 failures"
done
tk_check "abrmd: PKCS#11 sign, fork: the child is refused at once, the parent goes on" \
    "$CONC" p11-fork "$MODULE" tpmkeys ec refused
tk_match "abrmd: PKCS#11 child: CKR_DEVICE_ERROR within 5 s" 'C_Sign returned CKR 0x30$'
tk_check "abrmd: provider sign, fork: the child is refused at once, the parent goes on" \
    "$CONC" prov-fork ec refused
tk_match "abrmd: provider child: an error within 5 s" 'EVP_DigestSign refused after'

tk_done
