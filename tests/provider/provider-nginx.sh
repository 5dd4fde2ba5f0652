#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Unmodified nginx with TPM keys: openssl.cnf activates the provider, ssl_certificate_key
# is a TSS2 key file (read by nginx's PEM_read_bio_PrivateKey through our decoder), four
# workers forked after the keys were loaded each sign in the TPM.  1000 requests over
# TLS 1.2 and 1.3 with RSA and EC keys, every handshake a full one: 0 failures; then a
# reload (new workers) and the other provider order in openssl.cnf.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl curl nginx dbus-daemon tpm2-abrmd
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN

tk_check "init" "$TK" init
tkp_keys rsa:rsa3072 ec:ecc-p256
for k in rsa ec; do
    tkp_cert "$k.tss2.pem" "/CN=localhost" "$k.crt" || tk_die "certificate for $k: $(cat "$k.crt.err")"
done
# Four workers share the TPM: the resource manager plays /dev/tpmrm0's part.
tk_abrmd_start

# requests N: N full handshakes for each of RSA/EC x TLS 1.2/1.3, four curl processes in
# parallel; prints the number of answers that were not "200".
requests() {
    local n=$1 k v port job pids=()
    for k in rsa ec; do
        for v in 1.2 1.3; do
            port=$RSA_PORT
            [ $k = ec ] && port=$EC_PORT
            job=curl.$k.$v
            for _ in $(seq 1 "$n"); do
                echo "url = \"https://localhost:$port/\""
                echo "output = /dev/null"
            done >"$job.cfg"
            curl -sS --no-sessionid --cacert "$k.crt" --resolve "localhost:$port:127.0.0.1" \
                --tlsv$v --tls-max $v -w '%{http_code}\n' -K "$job.cfg" >"$job.out" 2>"$job.err" &
            pids+=($!)
        done
    done
    for job in "${pids[@]}"; do wait "$job"; done
    cat curl.*.out | grep -cv '^200$'
}

# ---------------------------------------------------------------- tpm2 first in openssl.cnf
tkp_conf tpm2-first.cnf tpm2 default
tkp_nginx_conf 256
tkp_nginx_start "$TK_TMP/tpm2-first.cnf"
fails=$(requests 250)
tk_eq "1000 requests (RSA/EC x TLS 1.2/1.3), no failure" 0 "$fails"
tk_eq "1000 answers" 1000 "$(cat curl.*.out | grep -c '^200$')"
tk_match "TLS 1.2 and 1.3 both served" 'TLSv1\.2' "$(cat ng/logs/access.log)"
tk_match "TLS 1.3 served" 'TLSv1\.3' "$(cat ng/logs/access.log)"
workers=$(awk '{print $1}' ng/logs/access.log | sort -u | wc -l)
tk_check "several workers signed (forked after the keys were loaded): $workers" test "$workers" -ge 2
tk_nomatch "no TPM error in the error log" '\[(crit|error|alert|emerg)\]' "$(cat ng/logs/error.log)"

# A reload: the master re-reads the key files and forks new workers.
: >ng/logs/access.log
kill -HUP "$NGINX_PID"
sleep 2
fails=$(requests 25)
tk_eq "100 requests after a reload, no failure" 0 "$fails"
tk_nomatch "no error after the reload" '\[(crit|error|alert|emerg)\]' "$(cat ng/logs/error.log)"
tkp_nginx_stop

# ---------------------------------------------------------------- default first in openssl.cnf
tkp_conf default-first.cnf default tpm2
: >ng/logs/error.log
tkp_nginx_start "$TK_TMP/default-first.cnf"
fails=$(requests 50)
tk_eq "200 requests with default first in openssl.cnf, no failure" 0 "$fails"
tk_nomatch "no error (default first)" '\[(crit|error|alert|emerg)\]' "$(cat ng/logs/error.log)"
tkp_nginx_stop

tk_done
