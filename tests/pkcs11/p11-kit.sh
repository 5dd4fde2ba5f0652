#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The module registered with p11-kit through its .module file (pkcs11/tpmkeys.module.in,
# pointed at the built module), as every p11-kit consumer sees it: `p11-kit
# list-modules`, GnuTLS's p11tool (--list-tokens, --list-all, --test-sign,
# --generate-privkey) and PKCS#11 URIs.  p11-kit reads only the system module folder for
# root, so the checks run in a private mount namespace with our folder bound over it:
# the machine's configuration is never touched.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
# An ASan build of the module cannot be loaded by these uninstrumented hosts (p11-kit,
# GnuTLS, ssh and their helpers start each other with their own environments); the
# plain build runs this scenario, and tests/pkcs11/p11-api.sh drives the module under ASan.
[ -z "$TK_ASAN_RUNTIME" ] || tk_skip "host programs cannot load an ASan-built module here"

tk_need p11-kit p11tool unshare pkg-config certtool
tk_need_tool
module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
[ -f "$module" ] || tk_die "PKCS#11 module not built at $module"
module=$(readlink -f "$module")
confdir=$(pkg-config --variable=p11_module_configs p11-kit-1) || tk_skip "no p11-kit pkg-config"
[ -d "$confdir" ] || tk_skip "p11-kit module folder $confdir missing"
unshare -m true 2>/dev/null || tk_skip "no mount namespaces here (unshare -m)"

tk_swtpm_start
export TSS2_LOG=${TSS2_LOG:-all+none}
D=$TK_TMP
mkdir -p "$D/modules"
# The .module file as installed, with the module path of this build.
sed -e "s|@pkcs11dir@/tpmkeys-pkcs11.so|$module|" "$top_srcdir/pkcs11/tpmkeys.module.in" \
    >"$D/modules/tpmkeys.module"
tk_match "the .module file names the module" "^module: $module\$" "$(cat "$D/modules/tpmkeys.module")"

# Run a command with p11-kit seeing only our module folder.
with_p11kit() {
    unshare -m sh -c 'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$D/modules" "$confdir" "$@"
}

printf '1234\n' >"$D/pin"
tk_check "tpmkeys init" "$TK" init --user-pin-file "$D/pin" --so-pin-file "$D/pin"
tk_check "tpmkeys create-key (EC, PIN)" "$TK" create-key --label web-ec --pin-file "$D/pin"
tk_check "tpmkeys create-key (RSA, no PIN)" "$TK" create-key --label web-rsa --algorithm rsa2048 --no-pin

tk_check "p11-kit list-modules" with_p11kit p11-kit list-modules
tk_match "p11-kit loads the module" 'library-description: tpmkeys TPM 2.0 key store'
tk_match "and sees the token" 'token: tpmkeys'

tk_check "p11tool --list-tokens" with_p11kit p11tool --list-tokens
tk_match "token URI" 'URL: pkcs11:model=TPM%202.0;manufacturer=tpmkeys;serial=[0-9a-f]{16};token=tpmkeys'
tok="pkcs11:token=tpmkeys"

tk_check "p11tool --list-all without login" with_p11kit p11tool --only-urls --list-all "$tok"
tk_match "public EC key" 'object=web-ec;type=public'
tk_match "no-PIN private key visible" 'object=web-rsa;type=private'
tk_nomatch "PIN key hidden before login" 'object=web-ec;type=private'
export GNUTLS_PIN=1234
tk_check "p11tool --list-all --login" with_p11kit p11tool --login --list-all "$tok"
tk_match "PIN key after login" 'object=web-ec;type=private'

tk_check "p11tool --test-sign (EC, PIN)" with_p11kit p11tool --login --test-sign \
    "$tok;object=web-ec;type=private"
tk_match "EC signature verified" 'Verifying against public key in the token\.\.\. ok'
tk_check "p11tool --test-sign (RSA, no PIN)" with_p11kit p11tool --test-sign \
    "$tok;object=web-rsa;type=private"
tk_match "RSA signature verified" 'Verifying against public key in the token\.\.\. ok'

tk_check "p11tool --generate-privkey ECDSA" with_p11kit p11tool --login --generate-privkey ecdsa \
    --curve secp256r1 --label gnutls-ec "$tok"
tk_match "key made (public key printed)" 'BEGIN PUBLIC KEY'
tk_check "tpmkeys lists the p11tool key" "$TK" list
tk_match "gnutls-ec in the store" '^label: +gnutls-ec$'
tk_check "p11tool --test-sign with it" with_p11kit p11tool --login --test-sign \
    "$tok;object=gnutls-ec;type=private"
tk_match "signature verified" 'Verifying against public key in the token\.\.\. ok'

# A certificate written beside its key, then found by URI.
cat >"$D/cert.tmpl" <<EOF
cn = "tpmkeys p11tool test"
expiration_days = 30
signing_key
EOF
tk_check "self-signed certificate with the TPM key (certtool)" with_p11kit certtool \
    --generate-self-signed --load-privkey "$tok;object=web-ec;type=private" \
    --load-pubkey "$tok;object=web-ec;type=public" --template "$D/cert.tmpl" \
    --outfile "$D/web-ec.crt"
tk_check "p11tool --write the certificate" with_p11kit p11tool --login --write \
    --load-certificate "$D/web-ec.crt" --label web-ec "$tok"
tk_check "p11tool --list-all-certs" with_p11kit p11tool --list-all-certs "$tok"
tk_match "the certificate is on the token" 'object=web-ec;type=cert'
tk_check "p11tool --export the certificate" with_p11kit p11tool --export "$tok;object=web-ec;type=cert"
tk_eq "same certificate back" "$(openssl x509 -in "$D/web-ec.crt" -outform DER | sha256sum)" \
    "$(printf '%s\n' "$TK_OUT" | openssl x509 -outform DER | sha256sum)"

# A CA certificate with no key in the token: kept as an object of its own.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$D/ca.key" \
    -subj "/CN=tpmkeys test CA" -days 2 -out "$D/ca.crt" 2>/dev/null
tk_check "p11tool --write --load-certificate without its key" with_p11kit p11tool --login \
    --write --load-certificate "$D/ca.crt" --label test-ca "$tok"
tk_check "p11tool --list-all-certs" with_p11kit p11tool --list-all-certs "$tok"
tk_match "the CA certificate is on the token" 'object=test-ca;type=cert'
tk_check "p11tool --export it" with_p11kit p11tool --export "$tok;object=test-ca;type=cert"
tk_eq "same CA certificate back" "$(openssl x509 -in "$D/ca.crt" -outform DER | sha256sum)" \
    "$(printf '%s\n' "$TK_OUT" | openssl x509 -outform DER | sha256sum)"
tk_check "tpmkeys lists it" "$TK" list
tk_match "a cert object in the store" '^object: +cert$'
tk_check "p11tool --delete it" with_p11kit p11tool --login --batch --delete \
    "$tok;object=test-ca;type=cert"
tk_check "p11tool --list-all-certs after the delete" with_p11kit p11tool --list-all-certs "$tok"
tk_nomatch "the CA certificate is gone" 'object=test-ca'

tk_check "p11tool --delete the p11tool key" with_p11kit p11tool --login --batch --delete \
    "$tok;object=gnutls-ec"
tk_check "tpmkeys list" "$TK" list
tk_nomatch "gnutls-ec gone" '^label: +gnutls-ec$'

tk_done
