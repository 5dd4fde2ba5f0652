#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `tpmkeys init`: creates the SRK and the store, is idempotent, refuses a foreign
# object at 0x81000001, and honours owner auth.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_need sqlite3 tpm2_readpublic tpm2_createprimary tpm2_evictcontrol tpm2_changeauth tpm2_getcap
cd "$TK_TMP" || tk_die "cd $TK_TMP"

umask 077
printf '123456' >user.pin
printf '87654321' >so.pin

# Fingerprint of everything in the store (schema, tokens, keys).
store_sum() { sqlite3 "$1" .dump | sha256sum | cut -d' ' -f1; }

# ---------------------------------------------------------------- fresh TPM, fresh store
tk_swtpm_start
# A store path whose folders do not exist yet: init must create them.
export TPMKEYS_STORE=$TK_TMP/home/tpmkeys/store.db
umask 022

tk_check "init creates SRK and store" "$TK" init --so-pin-file so.pin --user-pin-file user.pin

tk_check "SRK present at 0x81000001" tpm2_readpublic -c 0x81000001
srk=$TK_OUT
tk_match "SRK is ECC" 'type:[[:space:]]+value: ecc' "$(printf '%s' "$srk" | tr '\n' ' ')"
tk_match "SRK curve is P-256" 'curve-id:[[:space:]]+value: NIST p256' "$(printf '%s' "$srk" | tr '\n' ' ')"
attrs=$(printf '%s\n' "$srk" | sed -n '/^attributes:/{n;p}')
tk_match "SRK is restricted" 'restricted' "$attrs"
tk_match "SRK is a decrypt (storage) key" 'decrypt' "$attrs"
tk_nomatch "SRK is not a signing key" 'sign' "$attrs"
srk_name=$(printf '%s\n' "$srk" | sed -n 's/^name: //p')

if [ -f "$TPMKEYS_STORE" ]; then
    tk_pass "store file created at \$TPMKEYS_STORE"
else
    tk_fail "store file created at \$TPMKEYS_STORE"
fi
tk_eq "store file mode 0600 (despite umask 022)" 600 "$(stat -c %a "$TPMKEYS_STORE" 2>&1)"
tk_eq "store folder mode 0700" 700 "$(stat -c %a "$(dirname "$TPMKEYS_STORE")" 2>&1)"

tk_check "sqlite integrity of the new store" sqlite3 "$TPMKEYS_STORE" 'PRAGMA integrity_check'
tk_eq "integrity_check says ok" ok "$TK_OUT"
tk_check "list on the new store" "$TK" list

before=$(store_sum "$TPMKEYS_STORE")
tk_check "second init succeeds" "$TK" init --so-pin-file so.pin --user-pin-file user.pin
tk_imatch "second init says it exists" 'exist|already'
tk_eq "second init changes nothing in the store" "$before" "$(store_sum "$TPMKEYS_STORE")"
tpm2_readpublic -c 0x81000001 >"$TK_TMP/srk2" 2>&1
tk_eq "second init keeps the same SRK" "$srk_name" "$(sed -n 's/^name: //p' "$TK_TMP/srk2")"
tk_check "persistent handles" tpm2_getcap handles-persistent
tk_eq "exactly one persistent object" "- 0x81000001" "$TK_OUT"

# A key made now survives another init.
tk_check "create a key" "$TK" create-key --label keep --algorithm ecc-p256 --no-pin
before=$(store_sum "$TPMKEYS_STORE")
tk_check "third init with a key in the store" "$TK" init
tk_eq "key count and rows unchanged by init" "$before" "$(store_sum "$TPMKEYS_STORE")"
echo "still here" >data.txt
tk_check "key still signs after init" "$TK" sign keep -i data.txt -o data.sig
tk_check "export its public key" "$TK" export keep --public -o keep.pub.pem
tk_check "signature verifies" openssl dgst -sha256 -verify keep.pub.pem -signature data.sig data.txt

# ---------------------------------------------------------------- foreign object at 0x81000001
tk_swtpm_stop
tk_swtpm_start
export TPMKEYS_STORE=$TK_TMP/foreign/store.db
tk_check "make an RSA signing primary" tpm2_createprimary -C o -G rsa -c sign.ctx \
    -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign'
tk_check "persist it at 0x81000001" tpm2_evictcontrol -C o -c sign.ctx 0x81000001
tpm2_readpublic -c 0x81000001 >"$TK_TMP/foreign1" 2>&1

tk_expect_fail '*' "init refuses a non-storage object at 0x81000001" "$TK" init
tk_match "message names the handle" '0x81000001'
tk_imatch "message says it is not a storage key" 'storage|restricted|decrypt'
tpm2_readpublic -c 0x81000001 >"$TK_TMP/foreign2" 2>&1
if cmp -s "$TK_TMP/foreign1" "$TK_TMP/foreign2"; then
    tk_pass "the foreign object is left alone"
else
    tk_fail "the foreign object is left alone"
fi

# ---------------------------------------------------------------- owner auth
tk_swtpm_stop
tk_swtpm_start
export TPMKEYS_STORE=$TK_TMP/owner/store.db
printf 'owner-secret' >owner.auth
tk_check "set owner auth" tpm2_changeauth -c owner owner-secret

tk_expect_fail '*' "init without --owner-auth-file fails" "$TK" init
tk_imatch "message mentions owner auth" 'owner'
tk_check_not "no SRK created without owner auth" tpm2_readpublic -c 0x81000001

printf 'wrong' >wrong.auth
tk_expect_fail '*' "init with a wrong owner auth fails" "$TK" init --owner-auth-file wrong.auth
tk_imatch "message mentions owner auth" 'owner'

tk_check "init with --owner-auth-file" "$TK" init --owner-auth-file owner.auth
tk_check "SRK created under owner auth" tpm2_readpublic -c 0x81000001
tk_check "keys work under an owner-auth TPM" "$TK" create-key --label k --algorithm ecc-p256 --no-pin

tk_done
