#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The PKCS#11 module with OpenSC's pkcs11-tool: a token made with no other tool
# (--init-token/--init-pin), key pairs made through C_GenerateKeyPair, signatures
# checked by openssl, pkcs11-tool's own --test, --test-ec and --test-fork, keys
# shared both ways with the tpmkeys tool, and certificates, public keys and data objects
# written with --write-object.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need pkcs11-tool openssl
tk_need_tool
module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
[ -f "$module" ] || tk_die "PKCS#11 module not built at $module"

tk_swtpm_start
# ESYS logs TPM errors (an expected wrong PIN) on stderr unless told otherwise.
export TSS2_LOG=${TSS2_LOG:-all+none}
p11() { tk_host pkcs11-tool --module "$module" "$@"; }
D=$TK_TMP
printf 'sign me\n' >"$D/data"

# ---------------------------------------------------------------- a new token
tk_check "-L with no store yet" p11 -L
tk_match "an uninitialised slot is offered" 'token state: +uninitialized'
tk_check "--init-token --init-pin, no other tool" \
    p11 --init-token --label p11tool --so-pin 87654321 --init-pin --pin 1234
tk_match "token initialised" 'Token successfully initialized'
tk_match "user PIN set" 'User PIN successfully initialized'
tk_check "-L lists the token" p11 -L
tk_match "token label" 'token label +: p11tool$'
tk_match "flags: login required, PIN initialized" 'token flags +: login required, rng, token initialized, PIN initialized'
tk_match "16-character serial" 'serial num +: [0-9a-f]{16}$'
tk_match "and a new empty slot" 'token state: +uninitialized'
tk_check "tpmkeys sees the token made through PKCS#11" "$TK" --token p11tool list

T=(--token-label p11tool)
# ---------------------------------------------------------------- key pairs
tk_check "--keypairgen EC P-256" p11 "${T[@]}" --login --pin 1234 --keypairgen \
    --key-type EC:prime256v1 --id 01 --label ec256
tk_match "EC key: sensitive, never extractable, local" 'sensitive, always sensitive, never extractable, local'
tk_check "--keypairgen EC P-384" p11 "${T[@]}" --login --pin 1234 --keypairgen \
    --key-type EC:secp384r1 --id 02 --label ec384
tk_check "--keypairgen RSA-2048" p11 "${T[@]}" --login --pin 1234 --keypairgen \
    --key-type rsa:2048 --id 03 --label rsa2048
tk_check "tpmkeys lists the PKCS#11 keys" "$TK" --token p11tool list
tk_match "ec256 listed by tpmkeys" '^label: +ec256$'
tk_match "rsa2048 listed by tpmkeys" '^label: +rsa2048$'

tk_check "-O without login: public objects only" p11 "${T[@]}" -O
tk_nomatch "no private key without login" 'Private Key Object'
tk_match "public keys listed" 'Public Key Object; EC +EC_POINT 256 bits'
tk_check "-O with login" p11 "${T[@]}" -O --login --pin 1234
tk_match "private keys after login" 'Private Key Object; RSA'

# ---------------------------------------------------------------- signatures, checked by openssl
sign_check() {   # ID LABEL MECH DGST [extra pkcs11-tool args] [extra openssl args]
    local id=$1 label=$2 mech=$3 dgst=$4 extra=${5:-} oextra=${6:-}
    tk_check "sign $mech with key $id" p11 "${T[@]}" --login --pin 1234 --sign --id "$id" \
        -m "$mech" -i "$D/data" -o "$D/sig.$id.$mech" $extra || return
    # The public key as the tpmkeys tool exports it (pkcs11-tool 0.23 cannot rebuild P-384).
    "$TK" --token p11tool export "$label" --public -o "$D/pub.$id.pem" --force >/dev/null 2>&1
    # shellcheck disable=SC2086
    tk_check "openssl verifies $mech ($id)" openssl dgst "-$dgst" -verify "$D/pub.$id.pem" \
        $oextra -signature "$D/sig.$id.$mech" "$D/data"
}
sign_check 01 ec256 ECDSA-SHA256 sha256 "--signature-format openssl"
sign_check 02 ec384 ECDSA-SHA384 sha384 "--signature-format openssl"
sign_check 03 rsa2048 SHA256-RSA-PKCS sha256
sign_check 03 rsa2048 SHA512-RSA-PKCS sha512
sign_check 03 rsa2048 SHA256-RSA-PKCS-PSS sha256 "--salt-len 32" \
    "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32"
sign_check 03 rsa2048 SHA384-RSA-PKCS-PSS sha384 "--salt-len -2" \
    "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max"
cp "$D/sig.03.SHA256-RSA-PKCS" "$D/bad.sig"
printf '\001' | dd of="$D/bad.sig" bs=1 seek=7 conv=notrunc 2>/dev/null
tk_check_not "openssl rejects a damaged signature" openssl dgst -sha256 -verify "$D/pub.03.pem" \
    -signature "$D/bad.sig" "$D/data"
tk_check "C_Verify of a good signature" p11 "${T[@]}" --verify --id 03 -m SHA256-RSA-PKCS \
    -i "$D/data" --signature-file "$D/sig.03.SHA256-RSA-PKCS"
tk_match "pkcs11-tool: signature valid" 'Signature is valid'
p11 "${T[@]}" --verify --id 03 -m SHA256-RSA-PKCS -i "$D/data" --signature-file "$D/bad.sig" \
    >"$D/verify.out" 2>&1
tk_match "C_Verify refuses a damaged signature" '^Invalid signature' "$(cat "$D/verify.out")"

# ---------------------------------------------------------------- decrypt
openssl pkeyutl -encrypt -pubin -inkey "$D/pub.03.pem" -in "$D/data" -out "$D/ct" \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256
tk_check "OAEP decryption in the TPM" p11 "${T[@]}" --login --pin 1234 --decrypt --id 03 \
    -m RSA-PKCS-OAEP --hash-algorithm SHA256 --mgf MGF1-SHA256 -i "$D/ct" -o "$D/pt"
tk_eq "plaintext recovered" "$(tk_sha256 "$D/data")" "$(tk_sha256 "$D/pt")"

# ---------------------------------------------------------------- PINs
tk_expect_fail '*' "wrong PIN refused" p11 "${T[@]}" --login --pin 9999 -O
tk_match "CKR_PIN_INCORRECT" 'CKR_PIN_INCORRECT'
tk_check "-L after a wrong PIN" p11 -L
tk_match "user PIN count low" 'user PIN count low'
tk_check "a good PIN resets the count" p11 "${T[@]}" --login --pin 1234 -O
tk_check "-L" p11 -L
tk_nomatch "count low gone" 'user PIN count low'
tk_check "--change-pin" p11 "${T[@]}" --login --pin 1234 --change-pin --new-pin 4321
tk_expect_fail '*' "old PIN refused after the change" p11 "${T[@]}" --login --pin 1234 -O
tk_check "new PIN works" p11 "${T[@]}" --login --pin 4321 -O
tk_check "SO resets the user PIN (--init-pin as SO)" p11 "${T[@]}" --login --login-type so \
    --so-pin 87654321 --init-pin --new-pin 1234
tk_check "reset PIN works" p11 "${T[@]}" --login --pin 1234 -O

# ---------------------------------------------------------------- pkcs11-tool's own tests
tk_check "pkcs11-tool --test" p11 "${T[@]}" --login --pin 1234 --test
tk_match "--test: no errors" '^No errors'
tk_match "--test: RSA-PKCS-OAEP decryption" 'RSA-PKCS-OAEP: .*'
tk_check "pkcs11-tool --test-ec" p11 "${T[@]}" --login --pin 1234 --session-rw --test-ec \
    --key-type EC:prime256v1 --id 0e --label test-ec
tk_match "--test-ec: signed, changed and deleted its key" 'Deleting the private and the public key again'
tk_check "tpmkeys list after --test-ec" "$TK" --token p11tool list
tk_nomatch "the --test-ec key is gone" 'test-ec'
tk_check "pkcs11-tool --test-fork" p11 "${T[@]}" --login --pin 1234 --test-fork
tk_match "--test-fork: child initialised" 'Calling C_Initialize in forked child process'

# ---------------------------------------------------------------- keys from the tpmkeys tool
tk_check "tpmkeys init of a service token (no user PIN)" "$TK" --token svc init
tk_check "tpmkeys create-key --no-pin" "$TK" --token svc create-key --label web --no-pin \
    --algorithm ecc-p256 --id 0a0b
tk_check "-L" p11 -L
svc_flags=$(printf '%s\n' "$TK_OUT" | sed -n '/token label *: svc *$/,/token flags/p' | grep 'token flags')
tk_match "the service token is listed" 'token initialized' "$svc_flags"
tk_nomatch "a token of no-PIN keys needs no login" 'login required' "$svc_flags"
tk_check "the tool's key is found through PKCS#11, no login" p11 --token-label svc -O --type privkey
tk_match "private key 'web' visible without login" 'label: +web'
tk_check "and signs without login" p11 --token-label svc --sign --id 0a0b -m ECDSA-SHA256 \
    -i "$D/data" -o "$D/sig.web" --signature-format openssl
"$TK" --token svc export --public web >"$D/web.pem" 2>/dev/null ||
    p11 --token-label svc --read-object --type pubkey --id 0a0b -o "$D/web.der" 2>/dev/null
[ -s "$D/web.pem" ] || openssl pkey -pubin -inform DER -in "$D/web.der" -out "$D/web.pem"
tk_check "openssl verifies the tool key's signature" openssl dgst -sha256 -verify "$D/web.pem" \
    -signature "$D/sig.web" "$D/data"
tk_expect_fail '*' "a token without SO PIN is not wiped by --init-token" \
    p11 --token-label svc --init-token --label svc --so-pin guess
tk_match "CKR_PIN_INCORRECT" 'CKR_PIN_INCORRECT'
tk_check "tpmkeys list --token svc" "$TK" --token svc list
tk_match "the service key is still there" '^label: +web$'
tk_check "delete a key through PKCS#11" p11 "${T[@]}" --login --pin 1234 --delete-object \
    --type privkey --id 02
tk_check "tpmkeys list after the delete" "$TK" --token p11tool list
tk_nomatch "ec384 gone from the store" '^label: +ec384$'

# ---------------------------------------------------------------- certificates, public keys, data
# Objects without a TPM key behind them: kept in the store's objects table.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/lone.key" -subj /CN=lone -days 2 \
    -outform DER -out "$D/lone.crt" 2>/dev/null
openssl pkey -in "$D/lone.key" -pubout -outform DER -out "$D/lone.pub"
printf 'application data\000\001\002\n' >"$D/blob"
printf 'private data\n' >"$D/pblob"
W=(p11 "${T[@]}" --login --pin 1234 --write-object)
tk_check "--write-object a certificate without its key" "${W[@]}" "$D/lone.crt" --type cert \
    --id 21 --label lone-cert
tk_check "--write-object a lone public key" "${W[@]}" "$D/lone.pub" --type pubkey --id 22 \
    --label lone-pub
tk_check "--write-object a data object" "${W[@]}" "$D/blob" --type data --label lone-data \
    --application-label tpmkeys-test
tk_check "--write-object a private data object" "${W[@]}" "$D/pblob" --type data \
    --label secret-data --private
tk_check "-O without login" p11 "${T[@]}" -O
tk_match "the certificate is listed" 'label: +lone-cert'
tk_match "the public key is listed" 'label: +lone-pub'
tk_match "the data object is listed" "label: +'lone-data'"
tk_match "with its application" "application: +'tpmkeys-test'"
tk_nomatch "the private data object is hidden without login" 'secret-data'
tk_check "-O with login" p11 "${T[@]}" --login --pin 1234 -O
tk_match "the private data object after login" "label: +'secret-data'"
tk_check "--read-object the certificate" p11 "${T[@]}" --read-object --type cert --id 21 \
    -o "$D/back.crt"
tk_check "same certificate bytes" cmp "$D/lone.crt" "$D/back.crt"
tk_check "--read-object the public key" p11 "${T[@]}" --read-object --type pubkey --id 22 \
    -o "$D/back.pub"
tk_check "same public key bytes" cmp "$D/lone.pub" "$D/back.pub"
tk_check "--read-object the data object" p11 "${T[@]}" --read-object --type data \
    --label lone-data -o "$D/back.blob"
tk_check "same data bytes" cmp "$D/blob" "$D/back.blob"
tk_check "--read-object the private data object" p11 "${T[@]}" --login --pin 1234 \
    --read-object --type data --label secret-data -o "$D/back.pblob"
tk_check "same private data bytes" cmp "$D/pblob" "$D/back.pblob"
openssl dgst -sha256 -sign "$D/lone.key" -out "$D/lone.sig" "$D/data"
tk_check "C_Verify with the lone public key" p11 "${T[@]}" --verify --id 22 \
    -m SHA256-RSA-PKCS -i "$D/data" --signature-file "$D/lone.sig"
tk_match "signature valid" 'Signature is valid'
tk_check "tpmkeys list shows the objects" "$TK" --token p11tool list
tk_match "a cert object" '^object: +cert$'
tk_match "a public key object" '^object: +pubkey$'
tk_match "a private data object" '^object: +data \(private'
tk_check "--delete-object the data object" p11 "${T[@]}" --login --pin 1234 --delete-object \
    --type data --label lone-data
tk_check "-O after the delete" p11 "${T[@]}" -O
tk_nomatch "the data object is gone" 'lone-data'
tk_match "the others stay" 'label: +lone-pub'
tk_check "tpmkeys delete of an object" "$TK" --token p11tool delete --yes lone-cert
tk_match "the tool says what it deleted" "deleted cert object 'lone-cert'"
tk_check "-O after the tool's delete" p11 "${T[@]}" -O
tk_nomatch "the certificate is gone" 'lone-cert'

tk_done
