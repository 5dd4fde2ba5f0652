#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# TLS with TPM keys: openssl s_server signs its handshakes in the TPM (TSS2 file or
# tpmkeys: URI); openssl s_client and curl connect over TLS 1.2 and 1.3 with RSA and EC
# keys, and with both provider orders (the default provider first or second).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl curl dbus-daemon tpm2-abrmd
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN

tk_check "init" "$TK" init
tkp_keys rsa:rsa2048 ec:ecc-p256
# Servers are stopped by a signal and cannot flush their loaded keys: a resource manager
# (tpm2-abrmd here, /dev/tpmrm0 in production) cleans up after each process.
tk_abrmd_start
for k in rsa ec; do
    tkp_cert "$k.tss2.pem" "/CN=localhost" "$k.crt" || tk_die "certificate for $k: $(cat "$k.crt.err")"
done

SRV_PID=
# server_start KEY CERT PROVIDERS...: s_server on a free port ($PORT), answering HTTP.
server_start() {
    local key=$1 cert=$2
    shift 2
    PORT=$(tk_free_port) || tk_die "no free port"
    openssl s_server "$@" -accept "127.0.0.1:$PORT" -key "$key" -cert "$cert" -www -quiet \
        </dev/null >"srv.$PORT.log" 2>&1 &
    SRV_PID=$!
    tk_track_pid "$SRV_PID"
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        tk_alive "$SRV_PID" || break
        sleep 0.1
    done
    tk_die "s_server did not start: $(cat "srv.$PORT.log")"
}

server_stop() {
    kill "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
}

# s_client_check DESC CERT VERSION [extra s_client options]
s_client_check() {
    local desc=$1 cert=$2 ver=$3
    shift 3
    tk_check "s_client $desc" sh -c "echo Q | openssl s_client -connect 127.0.0.1:$PORT $ver \
        -CAfile $cert -verify_return_error -brief $* 2>&1" &&
        tk_match "$desc: handshake verified" 'Verification: OK' &&
        tk_match "$desc: protocol" "Protocol version: TLSv1\\.${ver#-tls1_}"
}

for order in "tpm2 default" "default tpm2"; do
    PROV=()
    for p in $order; do PROV+=(-provider "$p"); done
    for k in rsa ec; do
        for src in "$k.tss2.pem" "tpmkeys:object=$k"; do
            server_start "$src" "$k.crt" "${PROV[@]}"
            tag="$k, $src, [$order]"
            s_client_check "TLS 1.2 ($tag)" "$k.crt" -tls1_2
            s_client_check "TLS 1.3 ($tag)" "$k.crt" -tls1_3
            if [ $k = ec ]; then
                # ECDHE on P-384 (the certificate's P-256 must stay offered in TLS 1.2):
                # whichever EC key manager answers libssl's group fetch makes the key.
                s_client_check "TLS 1.2 P-384 ECDHE ($tag)" "$k.crt" -tls1_2 -groups P-384:P-256 &&
                    tk_match "P-384 ephemeral key ($tag)" 'Server Temp Key: ECDH, secp384r1'
            else
                s_client_check "TLS 1.2 RSA-PSS ($tag)" "$k.crt" -tls1_2 -sigalgs rsa_pss_rsae_sha256
                s_client_check "TLS 1.2 RSA PKCS#1 ($tag)" "$k.crt" -tls1_2 -sigalgs RSA+SHA256
            fi
            for v in 1.2 1.3; do
                tk_check "curl TLS $v ($tag)" curl -sS --cacert "$k.crt" --tlsv$v --tls-max $v \
                    "https://localhost:$PORT/" -o page.html --resolve "localhost:$PORT:127.0.0.1"
                tk_match "curl TLS $v: s_server page ($tag)" 's_server' "$(cat page.html)"
            done
            server_stop
        done
    done
done

# An RSA key the TPM restricts to PSS (OpenSSL's RSA-PSS key type): its certificate
# carries the restriction, and TLS signs with the rsa_pss_pss_* algorithms.
tk_check "genpkey RSA-PSS (SHA-256) into the store" openssl genpkey "${P[@]}" -algorithm RSA-PSS \
    -pkeyopt tpmkeys-label:pss -out pss.tss2.pem
tkp_cert tpmkeys:object=pss "/CN=localhost" pss.crt || tk_die "certificate for pss: $(cat pss.crt.err)"
server_start tpmkeys:object=pss pss.crt "${P[@]}"
for v in -tls1_2 -tls1_3; do
    s_client_check "RSA-PSS key ($v)" pss.crt $v &&
        tk_match "RSA-PSS key ($v): signed with RSA-PSS" '^Signature type: RSA-PSS'
done
server_stop

# The client side: a client certificate whose key is in the TPM (s_client and curl).
server_start rsa.tss2.pem rsa.crt "${P[@]}" -Verify 1 -CAfile ec.crt
for v in -tls1_2 -tls1_3; do
    s_client_check "client key in the TPM ($v)" rsa.crt $v "${P[@]}" -cert ec.crt \
        -key tpmkeys:object=ec
done
if [ "$TKP_SANITIZED" = 1 ]; then
    tk_log "sanitizer build: curl cannot load the sanitized provider, client-key curl check skipped"
else
    tkp_conf client.cnf tpm2 default
    tk_check "curl with a TSS2 client key (openssl.cnf)" env OPENSSL_CONF=client.cnf curl -sS \
        --cacert rsa.crt --cert ec.crt --key ec.tss2.pem "https://localhost:$PORT/" -o page.html \
        --resolve "localhost:$PORT:127.0.0.1"
    tk_match "curl: the server saw the client certificate" '^Client certificate' "$(cat page.html)"
    tk_match "curl: the client signed with ECDSA (the TPM key)" '^Peer signature type: ECDSA' \
        "$(cat page.html)"
fi
server_stop

tk_done
