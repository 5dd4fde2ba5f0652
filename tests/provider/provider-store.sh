#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The tpmkeys: store loader (RFC 7512 attributes, PINs from the URI, a file or the
# passphrase callback, certificates), key generation into the store, password-protected
# TSS2 files, and bad input: every failure says why, nothing crashes or hangs.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl cmp python3
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
umask 077
printf '123456' >user.pin
printf '999999' >wrong.pin
echo "data for the store loader" >data.txt

tk_check "init with a user PIN" "$TK" init --user-pin-file user.pin
tkp_keys web:ecc-p256 ca:rsa2048
tk_check "create a PIN key" "$TK" create-key --label secret --algorithm ecc-p256 \
    --pin-file user.pin --id 0a0b0c
"$TK" export secret --public -o secret.pub.pem >/dev/null 2>&1 || tk_die "export secret"

# signs DESC URI PUB [openssl options]: sign through the URI, verify in software.
signs() {
    local desc=$1 uri=$2 pub=$3
    shift 3
    rm -f s.sig
    tk_check "sign: $desc" openssl dgst -sha256 "${P[@]}" -sign "$uri" "$@" -out s.sig data.txt &&
        tk_check "verify: $desc" openssl dgst -sha256 -verify "$pub" -signature s.sig data.txt
}

# ---------------------------------------------------------------- attributes
signs "object=" "tpmkeys:object=web" web.pub.pem
signs "token= and object=" "tpmkeys:token=tpmkeys;object=web" web.pub.pem
signs "type=private" "tpmkeys:object=ca;type=private" ca.pub.pem
signs "percent-encoded label" "tpmkeys:object=%63%61" ca.pub.pem
signs "id= (CKA_ID)" "tpmkeys:id=%0a%0b%0c?pin-value=123456" secret.pub.pem
tk_expect_fail '*' "no such object" openssl dgst -sha256 "${P[@]}" -sign tpmkeys:object=nope \
    -out x.sig data.txt
tk_imatch "says no key matches" 'no key matches tpmkeys:object=nope'
tk_expect_fail '*' "no such token" openssl dgst -sha256 "${P[@]}" \
    -sign "tpmkeys:token=elsewhere;object=web" -out x.sig data.txt
tk_imatch "names the token" 'elsewhere'
tk_expect_fail '*' "unknown attribute" openssl dgst -sha256 "${P[@]}" \
    -sign "tpmkeys:colour=blue" -out x.sig data.txt
tk_imatch "says which attribute is unknown" 'unknown attribute "colour"'
tk_check "pkey -pubin: the public half of tpmkeys:object=ca" openssl pkey "${P[@]}" -pubin \
    -in tpmkeys:object=ca -pubout -out ca.out.pub
tk_check "same public key as the tool's export" cmp ca.out.pub ca.pub.pem
tk_expect_fail '*' "a public key cannot sign" openssl dgst -sha256 "${P[@]}" \
    -sign "tpmkeys:object=web;type=public" -out x.sig data.txt

# ---------------------------------------------------------------- PINs
signs "pin-value" "tpmkeys:object=secret?pin-value=123456" secret.pub.pem
signs "pin-source=file:" "tpmkeys:object=secret?pin-source=file:$TK_TMP/user.pin" secret.pub.pem
signs "passphrase callback (-passin)" "tpmkeys:object=secret" secret.pub.pem -passin file:user.pin
tk_expect_fail '*' "no PIN given" openssl dgst -sha256 "${P[@]}" -sign tpmkeys:object=secret \
    -out x.sig data.txt
tk_imatch "says the key needs the PIN" 'needs the PIN of token'
tk_expect_fail '*' "wrong PIN" openssl dgst -sha256 "${P[@]}" \
    -sign "tpmkeys:object=secret?pin-source=file:$TK_TMP/wrong.pin" -out x.sig data.txt
tk_imatch "says the PIN is wrong" 'PIN'
tk_nomatch "the PIN is not printed" '999999'
signs "right PIN after a wrong one" "tpmkeys:object=secret?pin-value=123456" secret.pub.pem

# A TSS2 file of a PIN key: its password is the PIN, asked through the callback.
tk_check "export the PIN key as TSS2" "$TK" export secret --tss2 --pin-file user.pin -o secret.tss2.pem
signs "TSS2 file with password (-passin)" secret.tss2.pem secret.pub.pem -passin file:user.pin
tk_expect_fail '*' "TSS2 file with a wrong password" openssl dgst -sha256 "${P[@]}" \
    -sign secret.tss2.pem -passin file:wrong.pin -out x.sig data.txt
tk_imatch "wrong password reported" 'PIN|password|auth'

# ---------------------------------------------------------------- certificates
tk_check "self-signed certificate for web" openssl req -new -x509 "${P[@]}" -key tpmkeys:object=web \
    -subj /CN=web -days 2 -out web.crt
tk_check "set-cert" "$TK" set-cert web web.crt
tk_check "storeutl lists key and certificate" openssl storeutl "${P[@]}" tpmkeys:object=web
tk_imatch "a private key" 'pkey|private key'
tk_match "a certificate" 'Certificate'
tk_check "storeutl -certs gives the certificate" openssl storeutl "${P[@]}" -certs -out got.crt \
    "tpmkeys:object=web;type=cert"
openssl x509 -in web.crt -outform DER -out web.crt.der
tk_check "same certificate" sh -c "openssl x509 -in got.crt -outform DER | cmp - web.crt.der"
tk_check "x509 reads the certificate from the URI" openssl x509 "${P[@]}" -in "tpmkeys:object=web;type=cert" \
    -noout -subject
tk_match "its subject" 'CN ?= ?web'

# ---------------------------------------------------------------- genpkey into the store
tk_check "genpkey EC P-384 into the store" openssl genpkey "${P[@]}" -algorithm EC \
    -pkeyopt group:P-384 -pkeyopt tpmkeys-label:made-by-openssl -out gen.tss2.pem
tk_check "tool lists the new key" "$TK" list
tk_match "listed with its URI" 'tpmkeys:object=made-by-openssl'
tk_match "genpkey wrote a TSS2 file" '^-----BEGIN TSS2 PRIVATE KEY-----' "$(head -n 1 gen.tss2.pem)"
"$TK" export made-by-openssl --public -o gen.pub.pem >/dev/null 2>&1
signs "generated key through its URI" tpmkeys:object=made-by-openssl gen.pub.pem
signs "generated key through the written file" gen.tss2.pem gen.pub.pem
tk_check "genpkey RSA-2048 into the store" openssl genpkey "${P[@]}" -algorithm RSA \
    -pkeyopt bits:2048 -pkeyopt tpmkeys-label:rsa-by-openssl -out gen2.tss2.pem
tk_check "software genpkey still works (tpm2 first)" openssl genpkey "${P[@]}" -algorithm EC \
    -pkeyopt group:P-256 -out soft.pem
tk_match "a software key" '^-----BEGIN PRIVATE KEY-----' "$(head -n 1 soft.pem)"

# ---------------------------------------------------------------- bad TSS2 files
python3 - web.tss2.der <<'EOF'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
i = d.find(bytes([0x02, 0x05, 0x00, 0x81, 0x00, 0x00, 0x01]))
assert i > 0, "parent INTEGER not found"
d[i + 6] = 0x07                                   # parent 0x81000007
open('otherparent.der', 'wb').write(d)
d = bytearray(open(sys.argv[1], 'rb').read())
d[-20] ^= 0x55                                    # inside the private blob
open('corrupt.der', 'wb').write(d)
open('truncated.der', 'wb').write(open(sys.argv[1], 'rb').read()[:60])
EOF
openssl base64 -in truncated.der | sed '1i -----BEGIN TSS2 PRIVATE KEY-----' |
    sed '$a -----END TSS2 PRIVATE KEY-----' >truncated.pem
tk_expect_fail '*' "key file with another parent" openssl dgst -sha256 "${P[@]}" -sign otherparent.der \
    -out x.sig data.txt
tk_imatch "says the parent is not the SRK" 'parent is 0x81000007'
tk_expect_fail '*' "key file with a corrupt private blob" openssl dgst -sha256 "${P[@]}" \
    -sign corrupt.der -out x.sig data.txt
tk_imatch "TPM refusal reported" 'TPM|integrity|load'
tk_expect_fail '*' "truncated TSS2 PEM" openssl dgst -sha256 "${P[@]}" -sign truncated.pem \
    -out x.sig data.txt
tk_imatch "says the file is unusable" 'TSS2|decode|read'

tk_done
