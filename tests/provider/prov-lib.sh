# SPDX-License-Identifier: BSD-3-Clause
# shellcheck shell=bash
#
# Helpers for the provider scenarios; source after tests/lib.sh.
#
#   TKP_MODULES   the folder of the built provider (OPENSSL_MODULES points there, never at
#                 the system folder, which may hold Debian's tpm2-openssl tpm2.so)
#   P             the usual command-line activation: -provider tpm2 -provider default
#   tkp_conf FILE ORDER...   an openssl.cnf activating the named providers in that order
#   tkp_keys LABEL:ALG...    create no-PIN keys and export them (LABEL.tss2.pem, .der, .pub.pem)
#   tkp_cert KEY SUBJECT OUT a self-signed certificate (SAN IP:127.0.0.1, DNS:localhost)

TKP_MODULES=${TKP_MODULES:-$top_builddir/provider/.libs}
[ -f "$TKP_MODULES/tpm2.so" ] ||
    tk_die "the provider is not built at $TKP_MODULES/tpm2.so (run make first)"
export OPENSSL_MODULES=$TKP_MODULES
# A configuration file of the machine must not activate other providers behind our back.
export OPENSSL_CONF=/dev/null
P=(-provider tpm2 -provider default)

# A sanitizer build (configure --enable-sanitizers): programs that load the provider get
# the sanitizer runtimes preloaded, through wrappers first in PATH.  Not curl: it hangs
# under a preloaded ASan on its own, so scenarios skip curl loading the provider then
# (TKP_SANITIZED=1).
TKP_SANITIZED=0
_tkp_san=$(ldd "$TKP_MODULES/tpm2.so" 2>/dev/null | awk '/lib(asan|ubsan)\.so/ {print $3}' | paste -sd: -)
if [ -n "$_tkp_san" ]; then
    TKP_SANITIZED=1
    mkdir -p "$TK_TMP/bin"
    for _tkp_prog in openssl nginx; do
        _tkp_real=$(command -v "$_tkp_prog") || continue
        _tkp_leaks=1
        [ "$_tkp_prog" = nginx ] && _tkp_leaks=0  # workers are killed, not finished
        # shellcheck disable=SC2016  # $ASAN_OPTIONS and $@ belong to the wrapper
        printf '#!/bin/sh\nLD_PRELOAD=%s ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=%s} exec %s "$@"\n' \
            "$_tkp_san" "$_tkp_leaks" "$_tkp_real" >"$TK_TMP/bin/$_tkp_prog"
        chmod +x "$TK_TMP/bin/$_tkp_prog"
    done
    PATH=$TK_TMP/bin:$PATH
    tk_log "sanitizer build: openssl and nginx run with LD_PRELOAD=$_tkp_san"
fi

tkp_conf() {
    local file=$1 p
    shift
    {
        echo "openssl_conf = openssl_init"
        echo "[openssl_init]"
        echo "providers = provider_sect"
        echo "[provider_sect]"
        for p in "$@"; do echo "$p = ${p}_sect"; done
        for p in "$@"; do
            echo "[${p}_sect]"
            echo "activate = 1"
        done
    } >"$file"
}

tkp_keys() {
    local spec label alg
    for spec in "$@"; do
        label=${spec%%:*}
        alg=${spec#*:}
        "$TK" create-key --label "$label" --algorithm "$alg" --no-pin >/dev/null 2>"$label.create.err" ||
            tk_die "create-key $label ($alg) failed: $(cat "$label.create.err")"
        "$TK" export "$label" --tss2 -o "$label.tss2.pem" >/dev/null 2>&1 ||
            tk_die "export --tss2 $label failed"
        "$TK" export "$label" --public -o "$label.pub.pem" >/dev/null 2>&1 ||
            tk_die "export --public $label failed"
        openssl asn1parse -in "$label.tss2.pem" -out "$label.tss2.der" -noout ||
            tk_die "cannot convert $label.tss2.pem to DER"
    done
}

tkp_cert() {
    local key=$1 subject=$2 out=$3
    shift 3
    openssl req -new -x509 "${P[@]}" -key "$key" -subj "$subject" -days 2 -out "$out" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" "$@" >/dev/null 2>"$out.err"
}

# tkp_nginx_conf CONNECTIONS: ng/nginx.conf in $TK_TMP (made here, with free ports in
# RSA_PORT and EC_PORT): 4 workers, one TLS server on the RSA key rsa.tss2.pem / rsa.crt and
# one on the EC key, 127.0.0.1 only, no session reuse (every request is a full handshake).
tkp_nginx_conf() {
    RSA_PORT=$(tk_free_port) || tk_die "no free port"
    EC_PORT=$((RSA_PORT + 1))
    mkdir -p "$TK_TMP/ng/tmp" "$TK_TMP/ng/logs"
    cat >"$TK_TMP/ng/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 4;
pid $TK_TMP/ng/nginx.pid;
error_log $TK_TMP/ng/logs/error.log notice;
env TPMKEYS_TCTI;
env TPMKEYS_STORE;
env DBUS_SESSION_BUS_ADDRESS;
events { worker_connections $1; }
http {
    log_format tk '\$pid \$ssl_protocol \$status';
    access_log $TK_TMP/ng/logs/access.log tk;
    client_body_temp_path $TK_TMP/ng/tmp;
    proxy_temp_path $TK_TMP/ng/tmp;
    fastcgi_temp_path $TK_TMP/ng/tmp;
    uwsgi_temp_path $TK_TMP/ng/tmp;
    scgi_temp_path $TK_TMP/ng/tmp;
    keepalive_timeout 0;
    ssl_session_cache off;
    ssl_session_tickets off;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$RSA_PORT ssl;
        ssl_certificate $TK_TMP/rsa.crt;
        ssl_certificate_key $TK_TMP/rsa.tss2.pem;
        location / { return 200 "rsa ok\n"; }
    }
    server {
        listen 127.0.0.1:$EC_PORT ssl;
        ssl_certificate $TK_TMP/ec.crt;
        ssl_certificate_key $TK_TMP/ec.tss2.pem;
        location / { return 200 "ec ok\n"; }
    }
}
EOF
    [ "$(id -u)" = 0 ] && sed -i '1i user root;' "$TK_TMP/ng/nginx.conf"
}

# tkp_nginx_start OPENSSL_CONF: nginx on that configuration; NGINX_PID, tracked; waits
# until both servers answer.
NGINX_PID=
tkp_nginx_start() {
    local cnf=$1
    OPENSSL_CONF=$cnf nginx -p "$TK_TMP/ng" -c "$TK_TMP/ng/nginx.conf" -e "$TK_TMP/ng/logs/error.log" \
        >"$TK_TMP/ng/stdout.log" 2>&1 &
    NGINX_PID=$!
    tk_track_pid "$NGINX_PID"
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$EC_PORT") 2>/dev/null &&
            (exec 3<>"/dev/tcp/127.0.0.1/$RSA_PORT") 2>/dev/null; then
            return 0
        fi
        tk_alive "$NGINX_PID" || break
        sleep 0.1
    done
    tk_die "nginx did not start: $(tail -n 5 "$TK_TMP/ng/logs/error.log" "$TK_TMP/ng/stdout.log")"
}

# tkp_nginx_stop: a graceful stop (QUIT), then a plain one if it is still there.
tkp_nginx_stop() {
    kill -QUIT "$NGINX_PID" 2>/dev/null
    for _ in $(seq 1 50); do tk_alive "$NGINX_PID" || break; sleep 0.1; done
    kill "$NGINX_PID" 2>/dev/null
    wait "$NGINX_PID" 2>/dev/null
    NGINX_PID=
}
