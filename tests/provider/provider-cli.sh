#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The provider through the openssl CLI: signatures (RSA PKCS#1, RSA-PSS, ECDSA) with TSS2
# key files (PEM and DER) and tpmkeys: URIs, in both provider orders and through
# openssl.cnf; certificates (req -x509, x509 -req with a CA key in the TPM); decryption
# and ECDH.  Every result is checked with the default provider alone.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl cmp

# ---------------------------------------------------------------- activation is lazy
# No TPM, no store: loading the provider and using keyless operations must still work.
tk_check "provider activates without TPM or store" env TPMKEYS_TCTI=swtpm:host=127.0.0.1,port=1 \
    TPMKEYS_STORE=/nonexistent/store.db openssl list -providers "${P[@]}"
tk_match "tpm2 provider listed as active" 'tpmkeys TPM 2.0 key store provider'
tk_check "digests still come from the default provider" env TPMKEYS_TCTI=swtpm:host=127.0.0.1,port=1 \
    TPMKEYS_STORE=/nonexistent/store.db openssl dgst -sha256 "${P[@]}" /dev/null
tk_match "SHA-256 of nothing" 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
tk_check "no digest, cipher or RNG offered by tpm2" openssl list -digest-algorithms -cipher-algorithms \
    -random-generators -provider tpm2
tk_nomatch "nothing listed from tpm2" '@ tpm2'

tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
umask 077
printf '123456' >user.pin
printf '999999' >wrong.pin
echo "signed in the TPM, checked in software" >data.txt
openssl dgst -sha256 -binary data.txt >data.sha256

tk_check "init" "$TK" init --user-pin-file user.pin
tkp_keys rsa:rsa2048 ec:ecc-p256 ec384:ecc-p384

# sign_verify DESC KEY PUB DGST [sigopts...]: sign with the provider, verify in software.
sign_verify() {
    local desc=$1 key=$2 pub=$3 md=$4 sig
    shift 4
    sig=$TK_TMP/sig.$RANDOM
    tk_check "sign: $desc" openssl dgst "-$md" "${PROV[@]}" -sign "$key" "$@" -out "$sig" data.txt ||
        return
    tk_check "verify (default provider): $desc" openssl dgst "-$md" -verify "$pub" "$@" \
        -signature "$sig" data.txt
}

for order in "tpm2 default" "default tpm2"; do
    PROV=()
    for p in $order; do PROV+=(-provider "$p"); done
    for k in rsa ec ec384; do
        sign_verify "$k TSS2 PEM [$order]" "$k.tss2.pem" "$k.pub.pem" sha256
        sign_verify "$k URI [$order]" "tpmkeys:object=$k" "$k.pub.pem" sha384
    done
    sign_verify "rsa TSS2 DER [$order]" rsa.tss2.der rsa.pub.pem sha256
    sign_verify "rsa PSS max salt [$order]" rsa.tss2.pem rsa.pub.pem sha256 \
        -sigopt rsa_padding_mode:pss
    sign_verify "rsa PSS salt=digest [$order]" tpmkeys:object=rsa rsa.pub.pem sha512 \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest
    sign_verify "rsa PSS salt 20 [$order]" tpmkeys:object=rsa rsa.pub.pem sha256 \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:20
done
PROV=("${P[@]}")

# A signature must depend on the data: the verifier has to refuse another file.
openssl dgst -sha256 "${P[@]}" -sign ec.tss2.pem -out ec.sig data.txt
echo "other data" >other.txt
tk_check_not "ECDSA signature does not verify other data" openssl dgst -sha256 \
    -verify ec.pub.pem -signature ec.sig other.txt

# Verification with the TPM key object itself runs in software, and must still judge.
tk_check "dgst -prverify with the TPM key accepts its signature" openssl dgst -sha256 "${P[@]}" \
    -prverify ec.tss2.pem -signature ec.sig data.txt
tk_check_not "dgst -prverify with the TPM key refuses other data" openssl dgst -sha256 "${P[@]}" \
    -prverify ec.tss2.pem -signature ec.sig other.txt

# ---------------------------------------------------------------- pkeyutl
tk_check "pkeyutl -sign RSA (digest given)" openssl pkeyutl "${P[@]}" -sign -inkey rsa.tss2.pem \
    -in data.sha256 -pkeyopt digest:sha256 -out pk.rsa.sig
tk_check "pkeyutl -verify RSA in software" openssl pkeyutl -verify -pubin -inkey rsa.pub.pem \
    -in data.sha256 -pkeyopt digest:sha256 -sigfile pk.rsa.sig
tk_check "pkeyutl -sign ECDSA" openssl pkeyutl "${P[@]}" -sign -inkey tpmkeys:object=ec \
    -in data.sha256 -out pk.ec.sig
tk_check "pkeyutl -verify ECDSA in software" openssl pkeyutl -verify -pubin -inkey ec.pub.pem \
    -in data.sha256 -sigfile pk.ec.sig
tk_check "pkeyutl -sign RSA PKCS#1 on raw input" openssl pkeyutl "${P[@]}" -sign -inkey rsa.tss2.pem \
    -in data.txt -out pk.raw.sig
tk_check "pkeyutl -verifyrecover gives the input back" openssl pkeyutl -verifyrecover -pubin \
    -inkey rsa.pub.pem -in pk.raw.sig -out pk.raw.out
tk_check "recovered input equals data.txt" cmp pk.raw.out data.txt
tk_check "pkeyutl -sign RSA-PSS" openssl pkeyutl "${P[@]}" -sign -inkey rsa.tss2.pem -in data.sha256 \
    -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -out pk.pss.sig
tk_check "pkeyutl -verify RSA-PSS in software" openssl pkeyutl -verify -pubin -inkey rsa.pub.pem \
    -in data.sha256 -pkeyopt digest:sha256 -pkeyopt rsa_padding_mode:pss -sigfile pk.pss.sig

# ---------------------------------------------------------------- decrypt and derive
head -c 32 /dev/urandom >secret.bin
for pad in pkcs1 oaep; do
    opts=(-pkeyopt "rsa_padding_mode:$pad")
    [ $pad = oaep ] && opts+=(-pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256)
    tk_check "encrypt ($pad) to the public key in software" openssl pkeyutl -encrypt -pubin \
        -inkey rsa.pub.pem "${opts[@]}" -in secret.bin -out "secret.$pad"
    tk_check "pkeyutl -decrypt ($pad) in the TPM" openssl pkeyutl "${P[@]}" -decrypt \
        -inkey tpmkeys:object=rsa "${opts[@]}" -in "secret.$pad" -out "secret.$pad.out"
    tk_check "decrypted secret matches ($pad)" cmp secret.bin "secret.$pad.out"
done

openssl pkeyutl -encrypt -pubin -inkey rsa.pub.pem -pkeyopt rsa_padding_mode:oaep \
    -pkeyopt rsa_oaep_label:6c6162656c -in secret.bin -out secret.label
tk_expect_fail '*' "OAEP label the TPM cannot take" openssl pkeyutl "${P[@]}" -decrypt \
    -inkey rsa.tss2.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_label:6c6162656c \
    -in secret.label -out secret.label.out
tk_imatch "says which labels the TPM takes" 'NUL-terminated'

tk_check "software peer key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out peer.pem
openssl pkey -in peer.pem -pubout -out peer.pub.pem
tk_check "pkeyutl -derive with the TPM key" openssl pkeyutl "${P[@]}" -derive \
    -inkey ec.tss2.pem -peerkey peer.pub.pem -out z.tpm
tk_check "pkeyutl -derive in software (peer side)" openssl pkeyutl -derive -inkey peer.pem \
    -peerkey ec.pub.pem -out z.sw
tk_check "both sides derive the same secret" cmp z.tpm z.sw
tk_eq "the secret has 32 bytes" 32 "$(stat -c %s z.tpm)"

# ---------------------------------------------------------------- certificates
for k in rsa ec; do
    tk_check "req -new -x509 with $k" openssl req -new -x509 "${P[@]}" -key "$k.tss2.pem" \
        -subj "/CN=tpmkeys $k" -days 2 -out "$k.crt"
    tk_check "self-signed $k certificate verifies" openssl verify -CAfile "$k.crt" "$k.crt"
    tk_check "certificate holds the TPM public key ($k)" \
        sh -c "openssl x509 -in $k.crt -noout -pubkey | cmp - $k.pub.pem"
done
tk_check "req -new -x509 RSA-PSS" openssl req -new -x509 "${P[@]}" -key tpmkeys:object=rsa \
    -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -subj "/CN=pss" -days 2 -out pss.crt
tk_check "RSA-PSS certificate verifies" openssl verify -CAfile pss.crt pss.crt
openssl x509 -in pss.crt -noout -text >pss.txt
tk_match "signature algorithm is rsassaPss" 'Signature Algorithm: rsassaPss' "$(cat pss.txt)"

tk_check "CSR for an EC key in the TPM" openssl req -new "${P[@]}" -key tpmkeys:object=ec384 \
    -subj "/CN=leaf" -out leaf.csr
tk_check "CSR self-signature verifies" openssl req -in leaf.csr -verify -noout
tk_check "x509 -req signs the CSR with a CA key in the TPM" openssl x509 -req "${P[@]}" \
    -in leaf.csr -CA rsa.crt -CAkey tpmkeys:object=rsa -CAcreateserial -days 2 -out leaf.crt
tk_check "leaf certificate verifies against the TPM CA" openssl verify -CAfile rsa.crt leaf.crt

# ---------------------------------------------------------------- RSA-PSS keys
# A key the TPM restricts to PSS with one digest: OpenSSL's RSA-PSS key type, whose
# public key (and certificates) carry the restriction.
tk_check "genpkey RSA-PSS into the store" openssl genpkey "${P[@]}" -algorithm RSA-PSS \
    -pkeyopt bits:2048 -pkeyopt digest:SHA384 -pkeyopt tpmkeys-label:pss -out pss.tss2.pem
tk_check "its public key from the store" openssl pkey "${P[@]}" -in tpmkeys:object=pss -pubout \
    -out pss.pub.pem
tk_check "public key in software" openssl pkey -pubin -in pss.pub.pem -text -noout
tk_match "the public key is an RSA-PSS key restricted to SHA-384" 'Hash Algorithm: SHA2-384'
tk_check "the TSS2 file decodes as an RSA-PSS TPM key" openssl pkey "${P[@]}" -in pss.tss2.pem \
    -text -noout
tk_match "text names the type" 'TPM RSA-PSS key'
sign_verify "RSA-PSS key, URI" tpmkeys:object=pss pss.pub.pem sha384
sign_verify "RSA-PSS key, TSS2 file" pss.tss2.pem pss.pub.pem sha384
tk_expect_fail '*' "RSA-PSS key refuses another digest" openssl dgst -sha256 "${P[@]}" \
    -sign tpmkeys:object=pss -out pss.bad.sig data.txt
tk_imatch "says the digest is not allowed" 'digest.*not allowed|cannot be used with this key'
tk_expect_fail '*' "RSA-PSS key refuses PKCS#1 padding" openssl dgst -sha384 "${P[@]}" \
    -sign tpmkeys:object=pss -sigopt rsa_padding_mode:pkcs1 -out pss.bad.sig data.txt
openssl dgst -sha384 -binary data.txt >data.sha384
tk_check "pkeyutl -sign with the RSA-PSS key" openssl pkeyutl "${P[@]}" -sign \
    -inkey tpmkeys:object=pss -in data.sha384 -pkeyopt digest:sha384 -out pk.psskey.sig
tk_check "pkeyutl -verify in software" openssl pkeyutl -verify -pubin -inkey pss.pub.pem \
    -in data.sha384 -pkeyopt digest:sha384 -sigfile pk.psskey.sig
tk_check "req -new -x509 with the RSA-PSS key" openssl req -new -x509 "${P[@]}" \
    -key tpmkeys:object=pss -sha384 -subj "/CN=pss key" -days 2 -out psskey.crt
tk_check "RSA-PSS key certificate verifies" openssl verify -CAfile psskey.crt psskey.crt
openssl x509 -in psskey.crt -noout -text >psskey.txt
tk_match "certificate public key is rsassaPss" 'Public Key Algorithm: rsassaPss' "$(cat psskey.txt)"
tk_check "certificate holds the TPM public key (RSA-PSS)" \
    sh -c "openssl x509 -in psskey.crt -noout -pubkey | cmp - pss.pub.pem"
tk_check "tool lists the key" "$TK" list
tk_match "listed with its restriction" 'RSA-PSS'
# The same key through the other door: PKCS#11 signs PSS with its digest, refuses the rest.
if command -v pkcs11-tool >/dev/null; then
    mod=$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so
    # By CKA_ID: pkcs11-tool --sign does not select the key by --label.
    pss_id=$("$TK" list | awk '/^label:/ {l=$2} /^id:/ && l == "pss" {print $2}')
    tk_check "pkcs11-tool signs SHA384-RSA-PKCS-PSS with the RSA-PSS key" tk_host pkcs11-tool \
        --module "$mod" --sign -m SHA384-RSA-PKCS-PSS --id "$pss_id" -i data.txt -o p11.pss.sig
    tk_check "PKCS#11 PSS signature verifies in software" openssl dgst -sha384 \
        -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -verify pss.pub.pem \
        -signature p11.pss.sig data.txt
    tk_expect_fail '*' "PKCS#11 refuses PKCS#1 with the RSA-PSS key" tk_host pkcs11-tool \
        --module "$mod" --sign -m SHA384-RSA-PKCS --id "$pss_id" -i data.txt -o p11.bad.sig
    tk_match "with CKR_KEY_FUNCTION_NOT_PERMITTED" 'CKR_KEY_FUNCTION_NOT_PERMITTED'
fi

# ---------------------------------------------------------------- openssl.cnf activation
for order in "tpm2 default" "default tpm2"; do
    cnf="cnf.${order// /-}"
    # shellcheck disable=SC2086
    tkp_conf "$cnf" $order
    tk_check "openssl.cnf ($order): sign with the TSS2 file" env OPENSSL_CONF="$cnf" \
        openssl dgst -sha256 -sign ec.tss2.pem -out cnf.sig data.txt
    tk_check "openssl.cnf ($order): signature verifies" openssl dgst -sha256 -verify ec.pub.pem \
        -signature cnf.sig data.txt
done

# Provider parameters in openssl.cnf name the store and the TPM (no environment needed).
tkp_conf params.cnf tpm2 default
sed -i "/^\[tpm2_sect\]/a tpmkeys-store = $TPMKEYS_STORE\ntpmkeys-tcti = $TPMKEYS_TCTI" params.cnf
tk_check "openssl.cnf tpmkeys-store/tpmkeys-tcti: sign by URI" env -u TPMKEYS_STORE -u TPMKEYS_TCTI \
    OPENSSL_CONF=params.cnf openssl dgst -sha256 -sign tpmkeys:object=ec -out params.sig data.txt
tk_check "signature verifies (provider parameters)" openssl dgst -sha256 -verify ec.pub.pem \
    -signature params.sig data.txt
tk_expect_fail '*' "without them the store is not found" env -u TPMKEYS_STORE -u TPMKEYS_TCTI \
    HOME="$TK_TMP/nohome" XDG_DATA_HOME="$TK_TMP/nohome" OPENSSL_CONF=cnf.tpm2-default \
    openssl dgst -sha256 -sign tpmkeys:object=ec -out params.sig data.txt
tk_imatch "says to run tpmkeys init" 'tpmkeys init'

# ---------------------------------------------------------------- public parts
tk_check "pkey -pubout from the TSS2 file" openssl pkey "${P[@]}" -in ec.tss2.pem -pubout -out ec.out.pub
tk_check "public key equals the tool's export" cmp ec.out.pub ec.pub.pem
tk_check "pkey -pubout from tpmkeys:...;type=public" openssl pkey "${P[@]}" -pubin \
    -in "tpmkeys:object=rsa;type=public" -pubout -out rsa.out.pub
tk_check "public key equals the tool's export (URI)" cmp rsa.out.pub rsa.pub.pem

tk_done
