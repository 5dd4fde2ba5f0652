#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The benchmark driver (`make bench`): tpmkeys against the TPM floor and against the
# peers (Debian's tpm2-pkcs11 and tpm2-openssl), side by side on one swtpm.
#
# Every measurement is repeated BENCH_RUNS times, interleaved (run 1 of everything, then
# run 2, ...) so that a busy machine slows all contenders alike; the table shows medians.
# Writes $BENCH_RESULTS/latest.csv (medians), latest-raw.csv (every run), latest.txt (the
# table) and latest.png (gnuplot: signatures/s and ratio to the floor).
#
# Environment:
#   BENCH_QUICK=1      a short smoke run (1 repetition, short loops, 1,000-key store)
#   BENCH_RUNS, BENCH_SECONDS, BENCH_COLD, BENCH_SCALE, BENCH_TLS_SECONDS   override sizes
#   BENCH_PEERS=0      leave the peers out
#   BENCH_TPM2_PKCS11  path of libtpm2_pkcs11.so (else the system's, else a copy unpacked
#                      from the Debian package into $top_builddir/bench/peers with
#                      `apt-get download`: installing libtpm2-pkcs11-1 system-wide would
#                      register it with p11-kit for every program on the machine)
#   BENCH_RESULTS      output folder (default $top_srcdir/bench/results)
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
export top_srcdir top_builddir
TK_TIMEOUT=${TK_TIMEOUT:-600}
. "$top_srcdir/tests/lib.sh"
set -u

if [ "${BENCH_QUICK:-0}" = 1 ]; then
    RUNS=${BENCH_RUNS:-1} SECS=${BENCH_SECONDS:-0.5} COLD=${BENCH_COLD:-3}
    SCALE=${BENCH_SCALE:-1000} TLS_SECS=${BENCH_TLS_SECONDS:-2} TLS_RUNS=1
else
    RUNS=${BENCH_RUNS:-5} SECS=${BENCH_SECONDS:-2} COLD=${BENCH_COLD:-20}
    SCALE=${BENCH_SCALE:-10000} TLS_SECS=${BENCH_TLS_SECONDS:-4} TLS_RUNS=${BENCH_TLS_RUNS:-3}
fi
OUT=${BENCH_RESULTS:-$top_srcdir/bench/results}
B=$top_builddir/bench
MOD=$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so
OURPROV=$top_builddir/provider/.libs
SYSPROV=$(pkg-config --variable=modulesdir libcrypto 2>/dev/null)
: "${SYSPROV:=/usr/lib/x86_64-linux-gnu/ossl-modules}"
PIN=bench-pin-4821   # long enough that finding it by chance in a capture is impossible
export BENCH_PIN=$PIN OPENSSL_CONF=/dev/null
unset TPMKEYS_PIN

for p in floor p11bench osslbench mkstore; do
    [ -x "$B/$p" ] || tk_die "$B/$p is not built (run make bench)"
done
[ -f "$MOD" ] && [ -f "$OURPROV/tpm2.so" ] || tk_die "build tpmkeys first (make)"
tk_need_tool
tk_need openssl pkcs11-tool python3 tpm2_flushcontext dbus-daemon tpm2-abrmd
mkdir -p "$OUT" || tk_die "cannot create $OUT"
cd "$TK_TMP" || tk_die "cd $TK_TMP"

RAW=$TK_TMP/raw.csv
echo "group,impl,alg,metric,value,unit,run" >"$RAW"
say() { printf '# %s\n' "$*" >&2; }
# rec GROUP IMPL ALG METRIC VALUE UNIT RUN
rec() { [ -n "$5" ] && echo "$1,$2,$3,$4,$5,$6,$7" >>"$RAW"; }
# field NAME TEXT: the value of NAME=... in a RESULT line
field() { sed -n "s/.*[ ]$1=\\([^ ]*\\).*/\\1/p" <<<"$2" | head -n 1; }
# Run a bench program; its RESULT lines on stdout, errors noted (not fatal: one failing
# contender must not sink the whole run).
brun() {
    local out
    if ! out=$(timeout -k 5 300 "$@" 2>"$TK_TMP/last.err"); then
        say "FAILED: $* :: $(tail -n 3 "$TK_TMP/last.err" | tr '\n' ' ')"
        return 1
    fi
    printf '%s\n' "$out"
}
ABRMD_ON=0
flush_tpm() {  # processes stopped by a signal leave objects behind (no resource manager)
    [ "$ABRMD_ON" = 0 ] || return 0   # swtpm serves tpm2-abrmd only; it flushes itself
    tpm2_flushcontext -T "$SWTPM_TCTI" -t >/dev/null 2>&1
    tpm2_flushcontext -T "$SWTPM_TCTI" -l >/dev/null 2>&1
}
ms_now() { date +%s%N; }

# ------------------------------------------------------------------ the TPM and the keys
tk_swtpm_start
SWTPM_TCTI=$TPMKEYS_TCTI
export TPMKEYS_STORE=$TK_TMP/store.db
printf '%s\n' "$PIN" >"$TK_TMP/pin"
chmod 600 "$TK_TMP/pin"
"$TK" init --user-pin-file "$TK_TMP/pin" >/dev/null 2>&1 || tk_die "tpmkeys init failed"
mk() {  # LABEL ALG create-key options...
    local label=$1 alg=$2
    shift 2
    "$TK" create-key --label "$label" --algorithm "$alg" "$@" >/dev/null 2>"$TK_TMP/create.err" ||
        tk_die "create-key $label: $(cat "$TK_TMP/create.err")"
}
mk ec ecc-p256 --no-pin
mk rsa rsa2048 --no-pin
mk ecpin ecc-p256 --pin-file "$TK_TMP/pin"
mk rsapin rsa2048 --pin-file "$TK_TMP/pin"
"$TK" list >/dev/null 2>&1 || tk_die "tpmkeys list failed"

# ------------------------------------------------------------------ the peers
PEER_P11=
PEER_OSSL=0
if [ "${BENCH_PEERS:-1}" = 1 ]; then
    PEER_P11=${BENCH_TPM2_PKCS11:-}
    for f in /usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so \
        "$top_builddir"/bench/peers/usr/lib/*/libtpm2_pkcs11.so.1; do
        [ -n "$PEER_P11" ] || { [ -f "$f" ] && PEER_P11=$f; }
    done
    if [ -z "$PEER_P11" ] && command -v apt-get >/dev/null; then
        say "unpacking Debian's libtpm2-pkcs11-1 into $top_builddir/bench/peers (not installed)"
        mkdir -p "$top_builddir/bench/peers"
        (cd "$top_builddir/bench/peers" && apt-get download libtpm2-pkcs11-1 >/dev/null 2>&1 &&
            dpkg-deb -x libtpm2-pkcs11-1_*.deb .) || say "apt-get download libtpm2-pkcs11-1 failed"
        for f in "$top_builddir"/bench/peers/usr/lib/*/libtpm2_pkcs11.so.1; do
            [ -f "$f" ] && PEER_P11=$f
        done
    fi
    command -v tpm2_ptool >/dev/null || { say "no tpm2_ptool (libtpm2-pkcs11-tools): no tpm2-pkcs11"; PEER_P11=; }
    [ -f "$SYSPROV/tpm2.so" ] && PEER_OSSL=1 || say "no tpm2-openssl in $SYSPROV: left out"
fi

# tpm2_ptool runs tpm2-tools that leave objects loaded: it needs a resource manager.
tk_abrmd_start
export TPM2_PKCS11_STORE=$TK_TMP/tpm2-pkcs11
if [ -n "$PEER_P11" ]; then
    mkdir -p "$TPM2_PKCS11_STORE"
    export TPM2_PKCS11_TCTI=$TPMKEYS_TCTI
    {
        tpm2_ptool init --primary-handle=0x81000001 &&
            tpm2_ptool addtoken --pid=1 --sopin=so-"$PIN" --userpin="$PIN" --label=peer &&
            tpm2_ptool addkey --label=peer --key-label=ec --userpin="$PIN" --algorithm=ecc256 &&
            tpm2_ptool addkey --label=peer --key-label=rsa --userpin="$PIN" --algorithm=rsa2048
    } >"$TK_TMP/ptool.log" 2>&1 || { say "tpm2_ptool failed: $(tail -n 3 "$TK_TMP/ptool.log")"; PEER_P11=; }
fi
if [ "$PEER_OSSL" = 1 ]; then
    for spec in ec:EC:group:P-256 rsa:RSA:bits:2048; do
        IFS=: read -r label alg opt val <<<"$spec"
        for auth in "" pin; do
            extra=()
            [ -n "$auth" ] && extra=(-pkeyopt "user-auth:$PIN")
            OPENSSL_MODULES=$SYSPROV openssl genpkey -provider tpm2 -provider default \
                -algorithm "$alg" -pkeyopt "$opt:$val" -pkeyopt parent:0x81000001 "${extra[@]}" \
                -out "peer-$label$auth.pem" >/dev/null 2>"$TK_TMP/genpkey.err" ||
                { say "tpm2-openssl genpkey failed: $(cat "$TK_TMP/genpkey.err")"; PEER_OSSL=0; }
        done
    done
fi

# ------------------------------------------------------------------ contention (tpm2-abrmd)
say "contention: 1, 4, 8 processes signing (P-256, no-PIN key, PKCS#11) through tpm2-abrmd"
for run in $(seq 1 "$RUNS"); do
    for n in 1 4 8; do
        at=$(awk -v now="$(date +%s.%N)" -v n="$n" 'BEGIN { printf "%.3f", now + 1.5 + n * 0.15 }')
        pids=()
        for i in $(seq 1 "$n"); do
            "$B/p11bench" --module "$MOD" --label ec --seconds "$SECS" --start-at "$at" \
                >"$TK_TMP/cont.$i" 2>&1 &
            pids+=($!)
        done
        wait "${pids[@]}"
        total=$(cat "$TK_TMP"/cont.[0-9]* | awk '/phase=sign/ { for (i = 1; i <= NF; i++) if ($i ~ /^rate=/) { sub("rate=", "", $i); s += $i; k++ } } END { if (k) printf "%.1f", s }')
        [ "$(cat "$TK_TMP"/cont.[0-9]* | grep -c phase=sign)" = "$n" ] ||
            say "contention $n: $(cat "$TK_TMP"/cont.[0-9]* | grep -v RESULT | head -n 3)"
        rec contention tpmkeys-p11 ec "procs$n" "$total" ops/s "$run"
        rm -f "$TK_TMP"/cont.[0-9]*
    done
done
tk_abrmd_stop
flush_tpm
export TPMKEYS_TCTI=$SWTPM_TCTI TPM2_PKCS11_TCTI=$SWTPM_TCTI TPM2OPENSSL_TCTI=$SWTPM_TCTI

# ------------------------------------------------------------------ signing loops
OURS_OSSL=(env OPENSSL_MODULES="$OURPROV" "$B/osslbench" --provider tpm2 --provider default)
PEER_OSSL_CMD=(env OPENSSL_MODULES="$SYSPROV" "$B/osslbench" --provider tpm2 --provider default)
# sign_one IMPL ALG RUN CMD...: the floor, then the contender right after it; the ratio of
# the pair is recorded per run, so that a machine whose load swings (other jobs) shifts
# both sides of each ratio alike.
sign_one() {
    local impl=$1 alg=$2 run=$3 out f v
    shift 3
    out=$(brun "$B/floor" --tcti "$SWTPM_TCTI" --alg "$alg" --session password \
        --keep "floor-$alg.key" --seconds "$SECS") || return 0
    f=$(field rate "$out")
    rec sign floor "$alg" rate "$f" ops/s "$run"
    out=$(brun "$@" --seconds "$SECS") || return 0
    v=$(field rate "$(grep phase=sign <<<"$out" || echo "$out")")
    rec sign "$impl" "$alg" rate "$v" ops/s "$run"
    [ -z "$v" ] || [ -z "$f" ] ||
        rec signratio "$impl" "$alg" floor "$(awk -v a="$v" -v b="$f" 'BEGIN { printf "%.4f", a / b }')" ratio "$run"
}
say "signing loops: $RUNS runs of ${SECS}s each"
for run in $(seq 1 "$RUNS"); do
    for alg in ec rsa; do
        mech=ecdsa
        [ $alg = rsa ] && mech=rsa
        sign_one floor-hmac "$alg" "$run" "$B/floor" --tcti "$SWTPM_TCTI" --alg "$alg" \
            --session hmac --keep "floor-hmac-$alg.key"
        sign_one tpmkeys-p11 "$alg" "$run" "$B/p11bench" --module "$MOD" --label "$alg" --mech $mech
        sign_one tpmkeys-p11-pin "$alg" "$run" "$B/p11bench" --module "$MOD" --label "${alg}pin" \
            --mech $mech --pin-env BENCH_PIN
        sign_one tpmkeys-ossl "$alg" "$run" "${OURS_OSSL[@]}" --key "tpmkeys:object=$alg"
        sign_one tpmkeys-ossl-pin "$alg" "$run" "${OURS_OSSL[@]}" \
            --key "tpmkeys:object=${alg}pin?pin-source=file:$TK_TMP/pin"
        if [ -n "$PEER_P11" ]; then
            sign_one tpm2-pkcs11-pin "$alg" "$run" "$B/p11bench" --module "$PEER_P11" \
                --token peer --label "$alg" --mech $mech --pin-env BENCH_PIN
        fi
        if [ "$PEER_OSSL" = 1 ]; then
            sign_one tpm2-openssl "$alg" "$run" "${PEER_OSSL_CMD[@]}" --key "peer-$alg.pem"
            sign_one tpm2-openssl-pin "$alg" "$run" "${PEER_OSSL_CMD[@]}" --key "peer-${alg}pin.pem"
        fi
    done
    say "run $run of $RUNS done"
done

# ------------------------------------------------------------------ cold starts
say "cold starts: $COLD in-process repetitions"
cold_p11() {  # IMPL RUN CMD...
    local impl=$1 run=$2 out m
    shift 2
    out=$(brun "$@" --seconds 0 --cold "$COLD") || return 0
    for m in load init open login find total first_total; do
        rec cold "$impl" ec "${m}_ms" "$(field "${m}_ms" "$out")" ms "$run"
    done
}
cold_ossl() {
    local impl=$1 run=$2 out m
    shift 2
    out=$(brun "$@" --seconds 0 --cold "$COLD") || return 0
    for m in load open total first_total; do
        rec cold "$impl" ec "${m}_ms" "$(field "${m}_ms" "$out")" ms "$run"
    done
}
for run in 1 2 3; do
    cold_p11 tpmkeys-p11 "$run" "$B/p11bench" --module "$MOD" --label ec
    cold_p11 tpmkeys-p11-pin "$run" "$B/p11bench" --module "$MOD" --label ecpin --pin-env BENCH_PIN
    [ -z "$PEER_P11" ] || cold_p11 tpm2-pkcs11-pin "$run" "$B/p11bench" --module "$PEER_P11" \
        --token peer --label ec --pin-env BENCH_PIN
    cold_ossl tpmkeys-ossl "$run" "${OURS_OSSL[@]}" --key tpmkeys:object=ec
    [ "$PEER_OSSL" = 0 ] || cold_ossl tpm2-openssl "$run" "${PEER_OSSL_CMD[@]}" --key peer-ec.pem
done

# TPM commands of one cold `pkcs11-tool --sign`, counted with the tss2 pcap TCTI.
count_cmds() {  # PCAP -> number of TPM commands (frames to port 2321)
    python3 - "$1" <<'EOF'
import struct, sys
d = open(sys.argv[1], 'rb').read()
off = n = 0
while off + 8 <= len(d):
    bt, bl = struct.unpack_from('<II', d, off)
    if bl == 0:
        break
    if bt == 6:  # enhanced packet block: raw IPv4 + TCP; commands go to port 2321
        caplen = struct.unpack_from('<I', d, off + 20)[0]
        p = d[off + 28:off + 28 + caplen]
        ihl = (p[0] & 15) * 4
        if struct.unpack_from('>H', p, ihl + 2)[0] == 2321 and len(p) > ihl + 20:
            n += 1
    off += bl
print(n)
EOF
}
# Whether the PIN's bytes appear anywhere in a capture of the TPM traffic.
pin_seen() {
    python3 -c 'import sys; print(int(sys.argv[2].encode() in open(sys.argv[1], "rb").read()))' "$1" "$PIN"
}
pcap_run() {  # IMPL-TCTI-VAR PCAP pkcs11-tool args...
    local var=$1 cap=$2
    shift 2
    rm -f "$cap"
    tk_host env "$var=pcap:$SWTPM_TCTI" TCTI_PCAP_FILE="$cap" pkcs11-tool "$@" >/dev/null 2>&1 || return 1
    count_cmds "$cap"
}
if ls /usr/lib/*/libtss2-tcti-pcap.so* >/dev/null 2>&1 ||
    ldconfig -p 2>/dev/null | grep -q libtss2-tcti-pcap; then
    printf 'data to sign\n' >"$TK_TMP/data"
    cnt() {  # IMPL VAR MODULE LABEL [extra]
        local impl=$1 var=$2 mod=$3 label=$4 all base
        shift 4
        all=$(pcap_run "$var" "$TK_TMP/sign.pcap" --module "$mod" "$@" --login --pin "$PIN" \
            --sign -m ECDSA-SHA256 --label "$label" -i "$TK_TMP/data" -o "$TK_TMP/sig") || return 0
        base=$(pcap_run "$var" "$TK_TMP/login.pcap" --module "$mod" "$@" --login --pin "$PIN" \
            --list-objects --type privkey) || return 0
        rec pinclear "$impl" ec seen "$(pin_seen "$TK_TMP/sign.pcap")" bool 1
        rec tpmcmds "$impl" ec sign_total "$all" commands 1
        rec tpmcmds "$impl" ec login_list "$base" commands 1
        rec tpmcmds "$impl" ec sign_besides_login "$((all - base))" commands 1
    }
    cnt tpmkeys-p11 TPMKEYS_TCTI "$MOD" ec
    cnt tpmkeys-p11-pin TPMKEYS_TCTI "$MOD" ecpin
    [ -z "$PEER_P11" ] || cnt tpm2-pkcs11-pin TPM2_PKCS11_TCTI "$PEER_P11" ec --token-label peer
    # The OpenSSL doors with a PIN key: a short signing loop, captured.
    rm -f "$TK_TMP/ossl.pcap"
    TPMKEYS_TCTI=pcap:$SWTPM_TCTI TCTI_PCAP_FILE=$TK_TMP/ossl.pcap "${OURS_OSSL[@]}" \
        --key "tpmkeys:object=ecpin?pin-source=file:$TK_TMP/pin" --seconds 0.1 >/dev/null 2>&1 &&
        rec pinclear tpmkeys-ossl-pin ec seen "$(pin_seen "$TK_TMP/ossl.pcap")" bool 1
    if [ "$PEER_OSSL" = 1 ]; then
        rm -f "$TK_TMP/ossl.pcap"
        TPM2OPENSSL_TCTI=pcap:$SWTPM_TCTI TCTI_PCAP_FILE=$TK_TMP/ossl.pcap "${PEER_OSSL_CMD[@]}" \
            --key peer-ecpin.pem --seconds 0.1 >/dev/null 2>&1 &&
            rec pinclear tpm2-openssl-pin ec seen "$(pin_seen "$TK_TMP/ossl.pcap")" bool 1
    fi
else
    say "no pcap TCTI (libtss2-tcti-pcap0): TPM commands not counted"
fi

# ------------------------------------------------------------------ scale: a big store
say "scale: a store of $SCALE keys"
cp "$TPMKEYS_STORE" "$TK_TMP/scale.db" || tk_die "copy of the store"
out=$(brun "$B/mkstore" --store "$TK_TMP/scale.db" --from ec --count "$((SCALE - 4))") ||
    tk_die "mkstore failed"
say "  $SCALE rows in $(field seconds "$out") s"
mid=$(printf 'ec-%05d' $((SCALE / 2)))
for run in 1 2; do
    out=$(TPMKEYS_STORE=$TK_TMP/scale.db brun "$B/p11bench" --module "$MOD" --label "$mid" \
        --seconds 0 --cold 3 --finds 50) || continue
    rec scale tpmkeys-p11 ec "init_ms" "$(field init_ms "$out")" ms "$run"
    rec scale tpmkeys-p11 ec "open_ms" "$(field open_ms "$out")" ms "$run"
    rec scale tpmkeys-p11 ec "cold_find_ms" "$(field find_ms "$(grep phase=cold <<<"$out")")" ms "$run"
    rec scale tpmkeys-p11 ec "find_ms" "$(field find_ms "$(grep phase=find <<<"$out")")" ms "$run"
    rec scale tpmkeys-p11 ec "cold_total_ms" "$(field total_ms "$out")" ms "$run"
    t0=$(ms_now)
    TPMKEYS_STORE=$TK_TMP/scale.db "$TK" list >"$TK_TMP/list.out" 2>&1 || say "tpmkeys list failed"
    t1=$(ms_now)
    rec scale tpmkeys-tool ec list_ms "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')" ms "$run"
done
grep -c '^label:' "$TK_TMP/list.out" | xargs -I{} sh -c 'echo "# tpmkeys list printed {} keys" >&2'

# ------------------------------------------------------------------ TLS 1.3 handshakes
say "TLS 1.3: openssl s_server + s_time -new, ${TLS_SECS}s x $TLS_RUNS"
SRV_PID=
server_start() {  # MODULES KEY CERT [provider args]
    local mods=$1 key=$2 cert=$3
    shift 3
    PORT=$(tk_free_port) || tk_die "no free port"
    OPENSSL_MODULES=$mods tk_host openssl s_server "$@" -accept "127.0.0.1:$PORT" -key "$key" \
        -cert "$cert" -www -quiet </dev/null >"$TK_TMP/srv.log" 2>&1 &
    SRV_PID=$!
    tk_track_pid "$SRV_PID"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        tk_alive "$SRV_PID" || break
        sleep 0.1
    done
    say "s_server did not start: $(cat "$TK_TMP/srv.log")"
    return 1
}
server_stop() {
    kill "$SRV_PID" 2>/dev/null
    wait "$SRV_PID" 2>/dev/null
    SRV_PID=
    flush_tpm
}
tls_one() {  # IMPL ALG RUN MODULES KEY CERT [provider args]
    local impl=$1 alg=$2 run=$3 v=
    shift 3
    server_start "$@" && v=$(tls_rate)
    server_stop
    if [ -n "$v" ]; then
        rec tls "$impl" "$alg" handshakes "$v" hs/s "$run"
    else
        rec tls "$impl" "$alg" failed 1 run "$run"
        say "TLS $impl $alg: no handshake: $(grep -v '^ *$' "$TK_TMP/srv.log" | tail -n 2 | tr '\n' ' ')"
    fi
}
tls_rate() {  # handshakes per second of s_time -new against $PORT
    openssl s_time -connect "127.0.0.1:$PORT" -new -tls1_3 -time "$TLS_SECS" 2>/dev/null |
        awk '/connections in .* real seconds/ { printf "%.1f", $1 / $4; exit }'
}
TLSP=(-provider tpm2 -provider default)
# Servers are stopped by a signal and cannot flush what they loaded; tpm2-openssl also
# runs out of TPM object slots without a resource manager: both TPM servers run behind
# tpm2-abrmd (/dev/tpmrm0 in production).
tk_abrmd_start
ABRMD_ON=1
for alg in ec rsa; do
    if [ $alg = ec ]; then
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out soft-ec.pem 2>/dev/null
    else
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out soft-rsa.pem 2>/dev/null
    fi
    openssl req -new -x509 -key "soft-$alg.pem" -subj /CN=localhost -days 2 \
        -out "soft-$alg.crt" 2>/dev/null
    OPENSSL_MODULES=$OURPROV tk_host openssl req -new -x509 "${TLSP[@]}" -key "tpmkeys:object=$alg" \
        -subj /CN=localhost -days 2 -out "ours-$alg.crt" 2>"$TK_TMP/req.err" ||
        say "certificate for tpmkeys:object=$alg: $(cat "$TK_TMP/req.err")"
    if [ "$PEER_OSSL" = 1 ]; then
        OPENSSL_MODULES=$SYSPROV openssl req -new -x509 "${TLSP[@]}" -key "peer-$alg.pem" \
            -subj /CN=localhost -days 2 -out "peer-$alg.crt" 2>/dev/null || say "peer cert $alg"
    fi
done
for run in $(seq 1 "$TLS_RUNS"); do
    for alg in ec rsa; do
        tls_one software "$alg" "$run" "$SYSPROV" "soft-$alg.pem" "soft-$alg.crt"
        tls_one tpmkeys-ossl "$alg" "$run" "$OURPROV" "tpmkeys:object=$alg" "ours-$alg.crt" \
            "${TLSP[@]}"
        if [ "$PEER_OSSL" = 1 ]; then
            tls_one software-b "$alg" "$run" "$SYSPROV" "soft-$alg.pem" "soft-$alg.crt"
            tls_one tpm2-openssl "$alg" "$run" "$SYSPROV" "peer-$alg.pem" "peer-$alg.crt" \
                "${TLSP[@]}"
        fi
    done
done

# ------------------------------------------------------------------ results
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
MACHINE="$(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
cp "$RAW" "$OUT/latest-raw.csv"
# Medians per (group, impl, alg, metric).
awk -F, 'NR > 1 { k = $1 "," $2 "," $3 "," $4 "," $6; v[k] = v[k] " " $5; n[k]++ }
    END { for (k in v) { m = split(substr(v[k], 2), a, " ");
            for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
            med = m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2;
            split(k, f, ","); printf "%s,%s,%s,%s,%s,%s,%d\n", f[1], f[2], f[3], f[4], med, f[5], n[k] } }' \
    "$RAW" | sort >"$TK_TMP/med.csv"
{
    echo "# tpmkeys benchmark, $DATE, $MACHINE, load average before results: $LOAD"
    echo "# swtpm $(swtpm --version 2>/dev/null | head -n 1 | sed 's/.*version //'), runs=$RUNS seconds=$SECS cold=$COLD scale=$SCALE"
    echo "group,impl,alg,metric,median,unit,n"
    cat "$TK_TMP/med.csv"
} >"$OUT/latest.csv"

python3 - "$TK_TMP/med.csv" "$OUT" "$DATE" "$MACHINE" "$LOAD" "$RAW" <<'EOF' | tee "$OUT/latest.txt"
import csv, statistics, sys
med, out, date, machine, load, raw = sys.argv[1:]
M = {}
for g, impl, alg, metric, v, unit, n in csv.reader(open(med)):
    M[(g, impl, alg, metric)] = float(v)
# Ratios: each contender ran right after a floor measurement (signratio = rate / that
# floor, per run); against a peer, the two per-run ratios are divided.  Medians over the
# runs.  TLS: per run, against the software key measured just before.
R, T = {}, {}
for row in list(csv.reader(open(raw)))[1:]:
    g, impl, alg, metric, v, unit, run = row
    if g == "signratio":
        R.setdefault((impl, alg), {})[run] = float(v)
    if g == "tls" and metric == "handshakes":
        T.setdefault((impl, alg), {})[run] = float(v)
def ratio(impl, alg, base, table=R):
    a = table.get((impl, alg), {})
    if base == "floor":
        rs = list(a.values())
    else:
        b = table.get((base, alg), {})
        rs = [a[k] / b[k] for k in a if k in b and b[k]]
    return statistics.median(rs) if rs else None
def get(g, impl, alg, metric):
    return M.get((g, impl, alg, metric))
def r(a, b):
    return f"{a / b:5.2f}" if a is not None and b else "    -"
def rr(impl, alg, base):
    v = ratio(impl, alg, base)
    return f"{v:5.2f}" if v is not None else "    -"
def f(v, fmt="{:8.1f}"):
    return fmt.format(v) if v is not None else "       -"
print(f"tpmkeys benchmark: {date}; {machine}; load {load}")
print()
print("Signatures per second (medians; ratios within this run)")
print(f"{'':22} {'alg':5} {'ops/s':>8} {'/floor':>7} {'/tpm2-pkcs11':>13} {'/tpm2-openssl':>14}")
rows = ["floor", "floor-hmac", "tpmkeys-p11", "tpmkeys-p11-pin", "tpmkeys-ossl",
        "tpmkeys-ossl-pin", "tpm2-pkcs11-pin", "tpm2-openssl", "tpm2-openssl-pin"]
dat = open(out + "/latest.dat", "w")
dat.write("# impl ec_rate rsa_rate ec_ratio rsa_ratio\n")
R[("floor", "ec")] = {"all": 1.0}
R[("floor", "rsa")] = {"all": 1.0}
for impl in rows:
    vals = {}
    for alg in ("ec", "rsa"):
        v = get("sign", impl, alg, "rate")
        if v is None:
            continue
        vals[alg] = v
        pin = impl.endswith("-pin")
        name = "P-256" if alg == "ec" else "RSA"
        cp = rr(impl, alg, "tpm2-pkcs11-pin") if impl.startswith("tpmkeys-p11") else "    -"
        co = rr(impl, alg, "tpm2-openssl-pin" if pin else "tpm2-openssl") \
            if impl.startswith("tpmkeys-ossl") else "    -"
        print(f"{impl:22} {name:5} {v:8.1f} {rr(impl, alg, 'floor'):>7} {cp:>13} {co:>14}")
    if vals:
        dat.write("%s %s %s %s %s\n" % (impl, vals.get("ec", 0), vals.get("rsa", 0),
                  ratio(impl, "ec", "floor") or 0, ratio(impl, "rsa", "floor") or 0))
dat.close()
print()
print("Cold start, P-256 key, in-process medians (ms): load+init+open+login+find / provider+key")
for impl in ("tpmkeys-p11", "tpmkeys-p11-pin", "tpm2-pkcs11-pin", "tpmkeys-ossl", "tpm2-openssl"):
    t = get("cold", impl, "ec", "total_ms")
    if t is None:
        continue
    parts = " ".join(f"{m}={get('cold', impl, 'ec', m + '_ms'):.2f}" for m in
                     ("load", "init", "open", "login", "find") if get("cold", impl, "ec", m + "_ms") is not None)
    rel = ""
    if impl.startswith("tpmkeys-p11"):
        rel = " (x%s of tpm2-pkcs11)" % r(t, get("cold", "tpm2-pkcs11-pin", "ec", "total_ms")).strip()
    if impl == "tpmkeys-ossl":
        rel = " (x%s of tpm2-openssl)" % r(t, get("cold", "tpm2-openssl", "ec", "total_ms")).strip()
    first = get("cold", impl, "ec", "first_total_ms")
    print(f"  {impl:18} total {t:7.2f}  first {first:7.2f}  [{parts}]{rel}")
print()
print("TPM commands of one cold `pkcs11-tool --login --sign` (pcap TCTI)")
for impl in ("tpmkeys-p11", "tpmkeys-p11-pin", "tpm2-pkcs11-pin"):
    a = get("tpmcmds", impl, "ec", "sign_total")
    if a is None:
        continue
    print(f"  {impl:18} {a:4.0f} in all, {get('tpmcmds', impl, 'ec', 'sign_besides_login'):4.0f} besides login"
          f" (login + list: {get('tpmcmds', impl, 'ec', 'login_list'):.0f})")
print()
print("PIN key: do the PIN's bytes cross the TPM interface in the clear? (pcap capture)")
for impl in ("tpmkeys-p11-pin", "tpmkeys-ossl-pin", "tpm2-pkcs11-pin", "tpm2-openssl-pin"):
    v = get("pinclear", impl, "ec", "seen")
    if v is not None:
        print(f"  {impl:18} {'YES, in clear' if v else 'no'}")
print()
print("Scale: a store of many keys (PKCS#11 module, ms)")
for m in ("init_ms", "open_ms", "cold_find_ms", "find_ms", "cold_total_ms"):
    v = get("scale", "tpmkeys-p11", "ec", m)
    if v is not None:
        print(f"  {m:16} {v:8.3f}")
v = get("scale", "tpmkeys-tool", "ec", "list_ms")
if v is not None:
    print(f"  {'tpmkeys list':16} {v:8.1f}")
print()
print("Contention through tpm2-abrmd (P-256, PKCS#11, aggregate ops/s)")
one = get("contention", "tpmkeys-p11", "ec", "procs1")
for n in (1, 4, 8):
    v = get("contention", "tpmkeys-p11", "ec", f"procs{n}")
    if v is not None:
        print(f"  {n} process{'es' if n > 1 else '  '} {v:8.1f}  x{r(v, one).strip()} of one")
print()
print("TLS 1.3 handshakes/s (openssl s_server + s_time -new, default configuration,")
print("TPM servers behind tpm2-abrmd; ratio: per run, to the software key measured just before)")
for alg in ("ec", "rsa"):
    for impl in ("software", "tpmkeys-ossl", "tpm2-openssl"):
        v = get("tls", impl, alg, "handshakes")
        name = 'P-256' if alg == 'ec' else 'RSA'
        if v is not None:
            base = "software-b" if impl == "tpm2-openssl" else "software"
            rt = ratio(impl, alg, base, T) if impl != "software" else 1.0
            rts = f"x{rt:.2f}" if rt is not None else "x -"
            print(f"  {name:5} {impl:14} {v:8.1f}  {rts} of software")
        elif get("tls", impl, alg, "failed") is not None:
            print(f"  {name:5} {impl:14}   failed (no handshake; see the run's log)")
EOF

if command -v gnuplot >/dev/null; then
    gnuplot -e "datafile='$OUT/latest.dat'; outfile='$OUT/latest.png'; subtitle='$DATE, $MACHINE, load $LOAD'" \
        "$top_srcdir/bench/chart.gp" 2>"$TK_TMP/gnuplot.err" ||
        say "gnuplot failed: $(cat "$TK_TMP/gnuplot.err")"
fi
say "wrote $OUT/latest.csv, latest-raw.csv, latest.txt, latest.png"
exit 0
