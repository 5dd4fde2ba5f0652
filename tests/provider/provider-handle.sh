#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# handle:0x81xxxxxx: keys made persistent in the TPM (here with tpm2-tools under our SRK),
# with and without a password, signing through the provider and checked in software;
# a missing handle, a non-persistent handle and a non-signing object give clear errors.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl tpm2_create tpm2_load tpm2_evictcontrol tpm2_readpublic tpm2_flushcontext

tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
tk_check "init (SRK at 0x81000001)" "$TK" init
echo "signed by a persistent key" >data.txt

# persist ALG HANDLE [AUTH]: a signing key under the SRK, made persistent at HANDLE.
persist() {
    local alg=$1 handle=$2 auth=${3:-}
    local a=()
    [ -z "$auth" ] || a=(-p "$auth")
    tk_check "tpm2_create $alg" tpm2_create -C 0x81000001 -G "$alg" "${a[@]}" \
        -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign|decrypt' \
        -u "k$handle.pub" -r "k$handle.priv"
    tk_check "tpm2_load $alg" tpm2_load -C 0x81000001 -u "k$handle.pub" -r "k$handle.priv" \
        -c "k$handle.ctx"
    tk_check "tpm2_evictcontrol $handle" tpm2_evictcontrol -C o -c "k$handle.ctx" "$handle"
    tpm2_flushcontext -t >/dev/null 2>&1
    tk_check "public key of $handle" tpm2_readpublic -c "$handle" -f pem -o "pub$handle.pem"
}

persist ecc256 0x81000010
persist rsa2048 0x81000011
persist ecc256 0x81000012 s3cret

for h in 0x81000010 0x81000011; do
    tk_check "sign with handle:$h" openssl pkeyutl -sign "${P[@]}" -inkey "handle:$h" \
        -rawin -digest sha256 -in data.txt -out "sig$h"
    tk_check "signature of $h verifies in software" openssl pkeyutl -verify -pubin \
        -inkey "pub$h.pem" -rawin -digest sha256 -in data.txt -sigfile "sig$h"
    echo tampered >>data.txt
    tk_check_not "a changed message does not verify ($h)" openssl pkeyutl -verify -pubin \
        -inkey "pub$h.pem" -rawin -digest sha256 -in data.txt -sigfile "sig$h"
    echo "signed by a persistent key" >data.txt
done

tk_check "the public key through the provider matches tpm2_readpublic" \
    openssl pkey "${P[@]}" -in handle:0x81000011 -pubout -out via-provider.pem
tk_check "same public key" cmp via-provider.pem pub0x81000011.pem

printf 's3cret' >pass.txt
tk_check "sign with a password (handle:...?pass, -passin)" openssl pkeyutl -sign "${P[@]}" \
    -inkey "handle:0x81000012?pass" -passin file:pass.txt -rawin -digest sha256 \
    -in data.txt -out sig12
tk_check "password key's signature verifies" openssl pkeyutl -verify -pubin \
    -inkey pub0x81000012.pem -rawin -digest sha256 -in data.txt -sigfile sig12
printf 'wrong' >wrong.txt
tk_check_not "a wrong password is refused" openssl pkeyutl -sign "${P[@]}" \
    -inkey "handle:0x81000012?pass" -passin file:wrong.txt -rawin -digest sha256 \
    -in data.txt -out sig12b
tk_imatch "the TPM's refusal is reported" 'refused the PIN or password' "$TK_ERR"

tk_check_not "no key at the handle" openssl pkeyutl -sign "${P[@]}" -inkey handle:0x81000099 \
    -rawin -digest sha256 -in data.txt -out x
tk_imatch "says nothing is there" 'no key at persistent handle 0x81000099' "$TK_ERR"
tk_check_not "the SRK is no signing key" openssl pkeyutl -sign "${P[@]}" \
    -inkey handle:0x81000001 -rawin -digest sha256 -in data.txt -out x
tk_imatch "says why" 'not an unrestricted signing key' "$TK_ERR"
tk_check_not "a transient handle is refused" openssl pkeyutl -sign "${P[@]}" \
    -inkey handle:0x80000001 -rawin -digest sha256 -in data.txt -out x
tk_done
