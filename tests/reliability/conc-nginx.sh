#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nginx under load: 4 workers (forked after the master read the TSS2 key files) share one
# TPM through tpm2-abrmd; 8 concurrent curl clients make TK_NGINX_REQUESTS full TLS
# handshakes (2,000; TK_LONG=1: 10,000), half on an EC key, half on an RSA key, TLS 1.2
# and 1.3: every answer must be 200, every worker must have served, nginx logs no error.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl curl nginx dbus-daemon tpm2-abrmd
REQUESTS=${TK_NGINX_REQUESTS:-$( [ "${TK_LONG:-0}" = 1 ] && echo 10000 || echo 2000)}
CLIENTS=8
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN

tk_check "init" "$TK" init
tkp_keys rsa:rsa2048 ec:ecc-p256
for k in rsa ec; do
    tkp_cert "$k.tss2.pem" "/CN=localhost" "$k.crt" || tk_die "certificate for $k: $(cat "$k.crt.err")"
done
tk_abrmd_start

tkp_nginx_conf 512
tkp_conf tpm2-first.cnf tpm2 default
tkp_nginx_start "$TK_TMP/tpm2-first.cnf"

# Client c of 8: even clients talk to the EC server, odd ones to the RSA server; clients
# 0,1,4,5 use TLS 1.3, the others TLS 1.2.  Each makes REQUESTS/8 requests, one fresh
# connection and full handshake each (no session reuse).
per=$((REQUESTS / CLIENTS))
pids=()
t0=$(date +%s.%N)
for c in $(seq 0 $((CLIENTS - 1))); do
    k=ec port=$EC_PORT v=1.3
    [ $((c % 2)) = 1 ] && k=rsa port=$RSA_PORT
    [ $((c % 4)) -ge 2 ] && v=1.2
    for _ in $(seq 1 "$per"); do
        echo "url = \"https://localhost:$port/\""
        echo "output = /dev/null"
    done >"client$c.cfg"
    curl -sS --no-sessionid --cacert "$k.crt" --resolve "localhost:$port:127.0.0.1" \
        --tlsv$v --tls-max $v -w '%{http_code}\n' -K "client$c.cfg" >"client$c.out" 2>"client$c.err" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

ok=$(cat client*.out | grep -c '^200$')
bad=$(cat client*.out | grep -cv '^200$')
tk_eq "$((per * CLIENTS)) requests from $CLIENTS concurrent clients: all answered 200" \
    "$((per * CLIENTS))" "$ok"
tk_eq "no failed request" 0 "$bad"
[ "$bad" = 0 ] || _tk_show "curl errors" "$(cat client*.err | sort | uniq -c | head)"
tk_log "$ok TLS handshakes with TPM signatures in $secs s ($(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')/s)"
workers=$(awk '{print $1}' ng/logs/access.log | sort -u | wc -l)
tk_eq "all 4 workers served" 4 "$workers"
tk_match "TLS 1.2 served" 'TLSv1\.2' "$(cat ng/logs/access.log)"
tk_match "TLS 1.3 served" 'TLSv1\.3' "$(cat ng/logs/access.log)"
tk_eq "nginx logged $ok requests" "$ok" "$(grep -c ' 200$' ng/logs/access.log)"
tk_nomatch "no error in nginx's error log" '\[(crit|error|alert|emerg)\]' "$(cat ng/logs/error.log)"
tk_check "nginx is still running" tk_alive "$NGINX_PID"

tkp_nginx_stop
tk_done
