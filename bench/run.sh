#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
#
# The benchmark driver (`make bench`): tpmkeys against the TPM floor and against the
# peers (Debian's tpm2-pkcs11 and tpm2-openssl), side by side on one swtpm.
#
# Every measurement is repeated BENCH_RUNS times, interleaved (run 1 of everything, then
# run 2, ...) so that a busy machine slows all contenders alike; the table shows medians.
# Writes $BENCH_RESULTS/latest.csv (medians), latest-raw.csv (every run), latest.txt (the
# table, with the targets of issue 5 beside the figures) and latest.png (gnuplot:
# signatures/s, ratio to the floor, TLS handshake ratio to a software key).
#
# Environment:
#   BENCH_QUICK=1      a short smoke run (1 repetition, short loops, 1,000-key store)
#   BENCH_RUNS, BENCH_SECONDS, BENCH_COLD, BENCH_WARM, BENCH_SCALE, BENCH_SCALE_RUNS,
#   BENCH_TLS_SECONDS, BENCH_TLS_RUNS, BENCH_TLS_COUNT   override sizes (BENCH_COLD:
#                      fresh processes per cold-start figure; BENCH_WARM: in-process
#                      repetitions of the warm one; BENCH_TLS_COUNT: handshakes over
#                      which the TPM commands of one handshake are counted)
#   BENCH_ONLY="..."   only these parts (sign cold cmds scale contention tls), for development
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
    RUNS=${BENCH_RUNS:-1} SECS=${BENCH_SECONDS:-0.5} COLD=${BENCH_COLD:-5} WARM=${BENCH_WARM:-5}
    SCALE=${BENCH_SCALE:-1000} SCALE_RUNS=${BENCH_SCALE_RUNS:-3}
    TLS_SECS=${BENCH_TLS_SECONDS:-2} TLS_RUNS=${BENCH_TLS_RUNS:-1}
else
    RUNS=${BENCH_RUNS:-5} SECS=${BENCH_SECONDS:-2} COLD=${BENCH_COLD:-21} WARM=${BENCH_WARM:-20}
    SCALE=${BENCH_SCALE:-10000} SCALE_RUNS=${BENCH_SCALE_RUNS:-5}
    TLS_SECS=${BENCH_TLS_SECONDS:-4} TLS_RUNS=${BENCH_TLS_RUNS:-3}
fi
TLS_COUNT=${BENCH_TLS_COUNT:-20}
# want PART: whether BENCH_ONLY (empty: everything) asks for PART.
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }
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
# note WHAT TEXT: a remark the table prints (why a contender failed)
note() { printf '%s: %s\n' "$1" "$2" >>"$TK_TMP/notes.txt"; }
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
ns_now() { date +%s%N; }  # nanoseconds

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
if want contention; then
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
fi
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
if want sign; then
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
fi

# ------------------------------------------------------------------ cold starts
# The module and the provider stay mapped once loaded (RTLD_NODELETE), and tss2 and
# libcrypto keep what they set up: only the first load in a process is cold.  So every
# cold sample is a process of its own (--cold 1), the contenders interleaved; the warm
# figure (median of in-process repetitions after the first) comes from one more process.
# cold_one IMPL RUN [--warm]: one fresh process (--cold 1) of IMPL, or with --warm one
# process that repeats the cold start WARM + 1 times and reports the median of all but
# the first.
cold_one() {
    local impl=$1 run=$2 reps=1 cmd out m phases=(load init open login find total) pre=()
    [ "${3:-}" = --warm ] && reps=$((WARM + 1))
    # IMPL+libs: the same with the module's libraries already in the process (LD_PRELOAD),
    # as in a host linked with them: what is left is the module's own start-up.
    case $impl in
        tpmkeys-*+libs) pre=(env LD_PRELOAD="$(deps_of "$MOD")") ;;
        tpm2-pkcs11-*+libs) pre=(env LD_PRELOAD="$(deps_of "$PEER_P11")") ;;
    esac
    case ${impl%+libs} in
        tpmkeys-p11) cmd=("$B/p11bench" --module "$MOD" --label ec) ;;
        tpmkeys-p11-pin) cmd=("$B/p11bench" --module "$MOD" --label ecpin --pin-env BENCH_PIN) ;;
        tpm2-pkcs11-pin)
            cmd=("$B/p11bench" --module "$PEER_P11" --token peer --label ec --pin-env BENCH_PIN) ;;
        tpmkeys-ossl) cmd=("${OURS_OSSL[@]}" --key tpmkeys:object=ec) phases=(load open total) ;;
        tpm2-openssl) cmd=("${PEER_OSSL_CMD[@]}" --key peer-ec.pem) phases=(load open total) ;;
    esac
    out=$(brun "${pre[@]}" "${cmd[@]}" --seconds 0 --cold "$reps") || return 0
    if [ "$reps" -gt 1 ]; then
        rec warm "$impl" ec total_ms "$(field warm_total_ms "$out")" ms "$run"
        return 0
    fi
    for m in "${phases[@]}"; do
        rec cold "$impl" ec "${m}_ms" "$(field "first_${m}_ms" "$out")" ms "$run"
    done
    rec cold "$impl" ec crypto_init_ms "$(field crypto_init_ms "$out")" ms "$run"
}
# deps_of LIB: the shared libraries LIB needs, except the C library and the loader.
deps_of() {
    ldd "$1" 2>/dev/null | awk '$3 ~ /^\// && $1 !~ /^(libc|ld-linux|libm|libpthread|libdl)[.-]/ { printf "%s%s", sep, $3; sep = ":" }'
}
COLD_ALL=(tpmkeys-p11 tpmkeys-p11-pin tpmkeys-p11+libs tpmkeys-p11-pin+libs)
[ -z "$PEER_P11" ] || COLD_ALL+=(tpm2-pkcs11-pin tpm2-pkcs11-pin+libs)
COLD_ALL+=(tpmkeys-ossl)
[ "$PEER_OSSL" = 0 ] || COLD_ALL+=(tpm2-openssl)
if want cold; then
    say "cold starts: $COLD fresh processes per contender; warm: $WARM in-process repetitions"
    for run in $(seq 1 "$COLD"); do
        for impl in "${COLD_ALL[@]}"; do
            cold_one "$impl" "$run"
        done
    done
    for impl in "${COLD_ALL[@]}"; do
        cold_one "$impl" 1 --warm
    done
fi

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
PCAP_OK=0
if ls /usr/lib/*/libtss2-tcti-pcap.so* >/dev/null 2>&1 ||
    ldconfig -p 2>/dev/null | grep -q libtss2-tcti-pcap; then
    PCAP_OK=1
else
    say "no pcap TCTI (libtss2-tcti-pcap0): TPM commands not counted"
fi
if want cmds && [ "$PCAP_OK" = 1 ]; then
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
fi

# ------------------------------------------------------------------ scale: a big store
# Each run is a fresh process: its cold start (--cold 1: C_Initialize, slot list + open
# session, find) is the figure a program meets, then 50 more finds in the same process.
if want scale; then
    say "scale: a store of $SCALE keys, $SCALE_RUNS fresh processes"
    cp "$TPMKEYS_STORE" "$TK_TMP/scale.db" || tk_die "copy of the store"
    out=$(brun "$B/mkstore" --store "$TK_TMP/scale.db" --from ec --count "$((SCALE - 4))") ||
        tk_die "mkstore failed"
    say "  $SCALE rows in $(field seconds "$out") s"
    mid=$(printf 'ec-%05d' $((SCALE / 2)))
    for run in $(seq 1 "$SCALE_RUNS"); do
        out=$(TPMKEYS_STORE=$TK_TMP/scale.db brun "$B/p11bench" --module "$MOD" --label "$mid" \
            --seconds 0 --cold 1 --finds 50) || continue
        for m in init open find total; do
            rec scale tpmkeys-p11 ec "cold_${m}_ms" "$(field "first_${m}_ms" "$out")" ms "$run"
        done
        rec scale tpmkeys-p11 ec "find_ms" "$(field find_ms "$(grep phase=find <<<"$out")")" ms "$run"
        t0=$(ns_now)
        TPMKEYS_STORE=$TK_TMP/scale.db "$TK" list >"$TK_TMP/list.out" 2>&1 || say "tpmkeys list failed"
        t1=$(ns_now)
        rec scale tpmkeys-tool ec list_ms "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) / 1e6 }')" ms "$run"
    done
    say "  tpmkeys list printed $(grep -c '^label:' "$TK_TMP/list.out") keys"
fi

# ------------------------------------------------------------------ TLS 1.3 handshakes
# openssl s_server with a TPM key against the same server with a software key measured
# just before it (the ratio is taken per pair), TLS 1.3, default configuration.  Each TPM
# server runs both directly on swtpm (as the floor and the signing loops do) and behind
# tpm2-abrmd (the role of /dev/tpmrm0 in production: one more hop for every command).
# A server is stopped by a signal and cannot flush what it loaded: directly on swtpm,
# flush_tpm clears what it left behind.
SRV_PID=
SRV_ENV=()  # extra environment of the next server (the pcap TCTI)
server_start() {  # MODULES KEY CERT [provider args]
    local mods=$1 key=$2 cert=$3
    shift 3
    PORT=$(tk_free_port) || tk_die "no free port"
    OPENSSL_MODULES=$mods tk_host env "${SRV_ENV[@]}" openssl s_server "$@" \
        -accept "127.0.0.1:$PORT" -key "$key" -cert "$cert" -www -quiet \
        </dev/null >"$TK_TMP/srv.log" 2>&1 &
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
# tls_measure MODULES KEY CERT [provider args]: HS = handshakes per second of s_time -new
# against a fresh server (empty when none succeeded).  s_time's own "real seconds" are
# whole seconds (time(2)), up to one second off: the rate uses the wall clock around it.
tls_measure() {
    local t0 t1 n=
    HS=
    if server_start "$@"; then
        t0=$(ns_now)
        n=$(openssl s_time -connect "127.0.0.1:$PORT" -new -tls1_3 -time "$TLS_SECS" 2>/dev/null |
            awk '/connections in .* real seconds/ { print $1; exit }')
        t1=$(ns_now)
        [ "${n:-0}" -gt 0 ] && HS=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n * 1e9 / (b - a) }')
    fi
    server_stop
    [ -n "$HS" ] || say "TLS with $2: no handshake: $(grep -v '^ *$' "$TK_TMP/srv.log" | tail -n 2 | tr '\n' ' ')"
    [ -n "$HS" ]
}
# tls_pair IMPL ALG RUN MODULES KEY CERT [provider args]: the software key, then IMPL.
tls_pair() {
    local impl=$1 alg=$2 run=$3 soft
    shift 3
    tls_measure "$SYSPROV" "soft-$alg.pem" "soft-$alg.crt"
    soft=$HS
    rec tls "$impl" "$alg" software "$soft" hs/s "$run"
    if ! tls_measure "$@"; then
        rec tls "$impl" "$alg" failed 1 run "$run"
        note "$impl $alg" "$(srv_error)"
        return 1
    fi
    rec tls "$impl" "$alg" handshakes "$HS" hs/s "$run"
    [ -z "$soft" ] ||
        rec tlsratio "$impl" "$alg" software "$(awk -v a="$HS" -v b="$soft" 'BEGIN { printf "%.4f", a / b }')" ratio "$run"
}
srv_error() {  # the server's first error line, with a TPM return code decoded
    local line rc
    line=$(grep -m 1 -E 'ERROR|error' "$TK_TMP/srv.log" | sed -E 's/^ERROR:[^ ]*:[0-9]+://')
    rc=$(grep -o -m 1 'ErrorCode (0x[0-9a-f]*)' <<<"$line" | grep -o '0x[0-9a-f]*')
    [ -z "$rc" ] || line="${line% }: $(tpm2_rc_decode "$rc" 2>/dev/null)"
    printf '%s\n' "${line:-no error printed}"
}
handshakes() {  # N: N full TLS 1.3 handshakes (s_client) with $PORT; prints how many worked
    local ok=0
    for _ in $(seq 1 "$1"); do
        openssl s_client -connect "127.0.0.1:$PORT" -tls1_3 -no_ign_eof </dev/null 2>/dev/null |
            grep -q '^New, TLSv1.3' && ok=$((ok + 1))
    done
    echo "$ok"
}
# tls_count IMPL ALG TCTI-VAR MODULES KEY CERT [provider args]: the TPM commands the server
# sends (pcap TCTI around its own TCTI), over TLS_COUNT handshakes after 2 warm-up ones.
tls_count() {
    local impl=$1 alg=$2 var=$3 cap=$TK_TMP/tls.pcap c0 c1 ok
    shift 3
    rm -f "$cap"
    SRV_ENV=("$var=pcap:${!var}" "TCTI_PCAP_FILE=$cap")
    if server_start "$@"; then
        handshakes 2 >/dev/null
        c0=$(count_cmds "$cap")
        ok=$(handshakes "$TLS_COUNT")
        c1=$(count_cmds "$cap")
    fi
    SRV_ENV=()
    server_stop
    [ "${ok:-0}" -gt 0 ] || { say "TLS command count $impl $alg: no handshake"; return 0; }
    rec tlscmds "$impl" "$alg" startup "$c0" commands 1
    rec tlscmds "$impl" "$alg" handshakes "$ok" count 1
    rec tlscmds "$impl" "$alg" per_handshake "$(awk -v a="$c0" -v b="$c1" -v n="$ok" 'BEGIN { printf "%.2f", (b - a) / n }')" commands 1
}
TLSP=(-provider tpm2 -provider default)
if want tls; then
    say "TLS 1.3: openssl s_server + s_time -new, ${TLS_SECS}s x $TLS_RUNS, direct and through tpm2-abrmd"
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
        flush_tpm
    done
    # Directly on swtpm.  tpm2-openssl needs more than swtpm's 3 object slots there (every
    # handshake fails with TPM_RC_OBJECT_MEMORY from Esys_ContextLoad on swtpm 0.7.1):
    # tried once, left out of the later runs when it fails.
    peer_direct=$PEER_OSSL
    for run in $(seq 1 "$TLS_RUNS"); do
        for alg in ec rsa; do
            tls_pair tpmkeys-ossl-direct "$alg" "$run" "$OURPROV" "tpmkeys:object=$alg" \
                "ours-$alg.crt" "${TLSP[@]}"
            [ "$peer_direct" = 0 ] ||
                tls_pair tpm2-openssl-direct "$alg" "$run" "$SYSPROV" "peer-$alg.pem" \
                    "peer-$alg.crt" "${TLSP[@]}" || peer_direct=0
        done
    done
    if [ "$PCAP_OK" = 1 ]; then
        for alg in ec rsa; do
            tls_count tpmkeys-ossl-direct "$alg" TPMKEYS_TCTI "$OURPROV" "tpmkeys:object=$alg" \
                "ours-$alg.crt" "${TLSP[@]}"
        done
    fi
    # Through tpm2-abrmd.
    tk_abrmd_start
    ABRMD_ON=1
    for run in $(seq 1 "$TLS_RUNS"); do
        for alg in ec rsa; do
            tls_pair tpmkeys-ossl-abrmd "$alg" "$run" "$OURPROV" "tpmkeys:object=$alg" \
                "ours-$alg.crt" "${TLSP[@]}"
            [ "$PEER_OSSL" = 0 ] ||
                tls_pair tpm2-openssl-abrmd "$alg" "$run" "$SYSPROV" "peer-$alg.pem" \
                    "peer-$alg.crt" "${TLSP[@]}"
        done
    done
    if [ "$PCAP_OK" = 1 ] && [ "$PEER_OSSL" = 1 ]; then
        for alg in ec rsa; do
            tls_count tpm2-openssl-abrmd "$alg" TPM2OPENSSL_TCTI "$SYSPROV" "peer-$alg.pem" \
                "peer-$alg.crt" "${TLSP[@]}"
        done
    fi
    tk_abrmd_stop
    ABRMD_ON=0
fi

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
    echo "# swtpm $(swtpm --version 2>/dev/null | head -n 1 | sed 's/.*version //'), runs=$RUNS seconds=$SECS cold=$COLD (fresh processes) warm=$WARM scale=$SCALE tls_runs=$TLS_RUNS tls_seconds=$TLS_SECS"
    echo "group,impl,alg,metric,median,unit,n"
    cat "$TK_TMP/med.csv"
} >"$OUT/latest.csv"

touch "$TK_TMP/notes.txt"
python3 - "$TK_TMP/med.csv" "$OUT" "$DATE" "$MACHINE" "$LOAD" "$RAW" "$SCALE" "$TK_TMP/notes.txt" \
    "runs=$RUNS cold=$COLD warm=$WARM tls_runs=$TLS_RUNS tls_secs=$TLS_SECS tls_count=$TLS_COUNT" \
    <<'EOF' | tee "$OUT/latest.txt"
import csv, statistics, sys
med, out, date, machine, load, raw, scale, notes, counts = sys.argv[1:]
NOTES = dict(l.rstrip("\n").split(": ", 1) for l in open(notes) if ": " in l)
scale = int(scale)
C = dict(kv.split("=") for kv in counts.split())   # runs, cold, warm, tls_runs, tls_count ...
M = {}
for g, impl, alg, metric, v, unit, n in csv.reader(open(med)):
    M[(g, impl, alg, metric)] = float(v)
# Per-run values, for ratios taken within one run: signratio = rate / the floor measured
# just before (per run); tlsratio = handshakes / the software key measured just before;
# cold: both contenders of a pair ran in the same round of fresh processes.
RUNS = {}
for row in list(csv.reader(open(raw)))[1:]:
    g, impl, alg, metric, v, unit, run = row
    RUNS.setdefault((g, impl, alg, metric), {})[run] = float(v)
def get(g, impl, alg, metric):
    return M.get((g, impl, alg, metric))
def has(g):
    return any(k[0] == g for k in M)
def paired(g, impl, base, alg, metric):
    """Median over runs of impl / base (same run), or None."""
    a, b = RUNS.get((g, impl, alg, metric), {}), RUNS.get((g, base, alg, metric), {})
    rs = [a[k] / b[k] for k in a if k in b and b[k]]
    return statistics.median(rs) if rs else None
def sign_ratio(impl, alg, base):
    if impl == "floor":
        return 1.0
    a = RUNS.get(("signratio", impl, alg, "floor"), {})
    if base == "floor":
        return statistics.median(a.values()) if a else None
    b = RUNS.get(("signratio", base, alg, "floor"), {})
    rs = [a[k] / b[k] for k in a if k in b and b[k]]
    return statistics.median(rs) if rs else None
def fmt(v, spec="8.1f", width=8):
    return format(v, spec) if v is not None else "-".rjust(width)

# Targets of issue 5: every row that carries one shows it and whether this run met it;
# the list at the end repeats them.
TARGETS = []
def target(what, value, op, limit, unit=""):
    """'>= 0.95  met' or '<= 5 ms  MISSED'; records the result for the summary."""
    text = f"{op} {limit:g}{unit}"
    if value is None:
        return f"{text:>10}  no data"
    ok = value >= limit if op == ">=" else value <= limit
    TARGETS.append((what, value, text, ok))
    return f"{text:>10}  {'met' if ok else 'MISSED'}"
ALG = {"ec": "P-256", "rsa": "RSA"}

print(f"tpmkeys benchmark: {date}; {machine}; load {load}")
if has("sign"):
    print()
    print(f"Signatures per second (medians of {C['runs']} runs; each contender runs right after a floor")
    print("measurement and the ratio of the pair is taken per run; the floor: bare tss2-esys)")
    print(f"{'':18} {'alg':5} {'ops/s':>8} {'/floor':>7} {'/tpm2-pkcs11':>13} {'/tpm2-openssl':>14}"
          f" {'target /floor':>14}")
rows = ["floor", "floor-hmac", "tpmkeys-p11", "tpmkeys-p11-pin", "tpmkeys-ossl",
        "tpmkeys-ossl-pin", "tpm2-pkcs11-pin", "tpm2-openssl", "tpm2-openssl-pin"]
dat = open(out + "/latest.dat", "w")
dat.write("# impl ec_rate rsa_rate ec_ratio rsa_ratio\n")
for impl in rows:
    vals = {}
    for alg in ("ec", "rsa"):
        v = get("sign", impl, alg, "rate")
        if v is None:
            continue
        vals[alg] = v
        pin = impl.endswith("-pin")
        cp = co = None
        if impl.startswith("tpmkeys-p11"):
            cp = sign_ratio(impl, alg, "tpm2-pkcs11-pin")
        if impl.startswith("tpmkeys-ossl"):
            co = sign_ratio(impl, alg, "tpm2-openssl-pin" if pin else "tpm2-openssl")
        fr = sign_ratio(impl, alg, "floor")
        tg = ""
        if impl.startswith("tpmkeys-"):
            tg = target(f"sign {impl} {ALG[alg]} / floor", fr, ">=", 0.5 if pin else 0.95)
        print(f"{impl:18} {ALG[alg]:5} {v:8.1f} {fmt(fr, '7.2f', 7)} {fmt(cp, '13.2f', 13)}"
              f" {fmt(co, '14.2f', 14)}  {tg}")
    if vals:
        dat.write("%s %s %s %s %s\n" % (impl, vals.get("ec", 0), vals.get("rsa", 0),
                  sign_ratio(impl, "ec", "floor") or 0, sign_ratio(impl, "rsa", "floor") or 0))
dat.close()

if has("cold"):
    print()
    print(f"Cold start in a FRESH PROCESS per sample (P-256 key; medians of {C['cold']} processes, ms).")
    print("Each process loads the module once: dlopen + C_GetFunctionList (load), C_Initialize")
    print("(init), C_GetSlotList + C_OpenSession (open), C_Login (login), find the key by label (find).")
    print("load maps the module's libraries (libcrypto, sqlite, tss2) into a program linked with none")
    print("of them; a host already linked with libcrypto (ssh, pkcs11-tool) pays less.")
    print(f"warm: the same steps repeated inside one process (module pinned, tss2 set up), median of {C['warm']}.")
    print(f"{'':18} {'load':>6} {'init':>6} {'open':>6} {'login':>6} {'find':>6} {'total':>7} {'warm':>6}"
          f" {'/tpm2-pkcs11':>13}  {'target':>10}")
for impl in ("tpmkeys-p11", "tpmkeys-p11-pin", "tpm2-pkcs11-pin", "tpmkeys-p11+libs",
             "tpmkeys-p11-pin+libs", "tpm2-pkcs11-pin+libs"):
    t = get("cold", impl, "ec", "total_ms")
    if t is None:
        continue
    if impl == "tpmkeys-p11+libs":
        print("The same with the module's libraries (libcrypto, sqlite, tss2 ...) already in the process")
        print("(LD_PRELOAD), as in a host linked with them: the module's own start-up.")
    parts = " ".join(fmt(get("cold", impl, "ec", m + "_ms"), "6.2f", 6)
                     for m in ("load", "init", "open", "login", "find"))
    peer = "tpm2-pkcs11-pin+libs" if impl.endswith("+libs") else "tpm2-pkcs11-pin"
    rel = paired("cold", impl, peer, "ec", "total_ms") if impl.startswith("tpmkeys") else None
    tg = ""
    if impl.startswith("tpmkeys") and not impl.endswith("+libs"):
        tg = target(f"cold {impl} load..find", t, "<=", 5, " ms")
    print(f"{impl:18} {parts} {t:7.2f} {fmt(get('warm', impl, 'ec', 'total_ms'), '6.2f', 6)}"
          f" {fmt(rel, '13.2f', 13)}  {tg}")
    if impl == "tpmkeys-p11-pin":
        print(f"{'':18} {'':>55}  {target(f'cold {impl} / tpm2-pkcs11-pin', rel, '<=', 0.25)}")
ci = [v for v in (get("cold", i, "ec", "crypto_init_ms") for i in ("tpmkeys-ossl", "tpm2-openssl")) if v is not None]
if has("cold"):
    print("OpenSSL: a new library context + OSSL_PROVIDER_load of tpm2 and default (load), the key")
    print("through OSSL_STORE (open); libcrypto's own start-up runs before the clock"
          + (f" ({max(ci):.2f} ms)." if ci else "."))
    print(f"{'':18} {'load':>6} {'open':>6} {'total':>7} {'warm':>6} {'/tpm2-openssl':>14}  {'target':>10}")
for impl in ("tpmkeys-ossl", "tpm2-openssl"):
    t = get("cold", impl, "ec", "total_ms")
    if t is None:
        continue
    rel = paired("cold", impl, "tpm2-openssl", "ec", "total_ms") if impl == "tpmkeys-ossl" else None
    tg = target(f"cold {impl} provider+key", t, "<=", 3, " ms") if impl == "tpmkeys-ossl" else ""
    print(f"{impl:18} {fmt(get('cold', impl, 'ec', 'load_ms'), '6.2f', 6)}"
          f" {fmt(get('cold', impl, 'ec', 'open_ms'), '6.2f', 6)} {t:7.2f}"
          f" {fmt(get('warm', impl, 'ec', 'total_ms'), '6.2f', 6)} {fmt(rel, '14.2f', 14)}  {tg}")

if has("tpmcmds"):
    print()
    print("TPM commands of one cold `pkcs11-tool --login --sign` (pcap TCTI)")
for impl in ("tpmkeys-p11", "tpmkeys-p11-pin", "tpm2-pkcs11-pin"):
    a = get("tpmcmds", impl, "ec", "sign_total")
    if a is None:
        continue
    b = get("tpmcmds", impl, "ec", "sign_besides_login")
    tg = target(f"{impl} commands besides login", b, "<=", 4) if impl.startswith("tpmkeys") else ""
    print(f"  {impl:18} {a:4.0f} in all, {b:4.0f} besides login"
          f" (login + list: {get('tpmcmds', impl, 'ec', 'login_list'):.0f})  {tg}")
if has("pinclear"):
    print()
    print("PIN key: do the PIN's bytes cross the TPM interface in the clear? (pcap capture)")
for impl in ("tpmkeys-p11-pin", "tpmkeys-ossl-pin", "tpm2-pkcs11-pin", "tpm2-openssl-pin"):
    v = get("pinclear", impl, "ec", "seen")
    if v is not None:
        tg = ""
        if impl.startswith("tpmkeys"):
            ok = not v
            TARGETS.append((f"{impl} PIN not in clear", v, "no", ok))
            tg = f"{'no':>10}  {'met' if ok else 'MISSED'}"
        print(f"  {impl:18} {'YES, in clear' if v else 'no':13}  {tg}")

if has("scale"):
    print()
    print(f"Scale: a store of {scale} keys (PKCS#11 module, the key in the middle; fresh process per")
    print("sample, medians; ms)" + ("" if scale >= 10000 else " -- the targets are for 10,000 keys"))
for m, name, limit in (("cold_init_ms", "C_Initialize", 10),
                       ("cold_open_ms", "C_GetSlotList + C_OpenSession", None),
                       ("cold_init+open", "C_Initialize .. C_OpenSession", 10),
                       ("cold_find_ms", "find by label, first in process", 2),
                       ("find_ms", "find by label, then (median of 50)", 2),
                       ("cold_total_ms", "C_Initialize .. find, in all", None)):
    if m == "cold_init+open":
        a, b = get("scale", "tpmkeys-p11", "ec", "cold_init_ms"), get("scale", "tpmkeys-p11", "ec", "cold_open_ms")
        v = a + b if a is not None and b is not None else None
    else:
        v = get("scale", "tpmkeys-p11", "ec", m)
    if v is None:
        continue
    tg = ""
    if limit and scale >= 10000:
        tg = target(f"scale {name}", v, "<=", limit, " ms")
    elif limit:
        tg = f"{'<= ' + str(limit) + ' ms':>10}  (at 10,000)"
    print(f"  {name:36} {v:8.3f}  {tg}")
v = get("scale", "tpmkeys-tool", "ec", "list_ms")
if v is not None:
    print(f"  {'tpmkeys list (the whole process)':36} {v:8.1f}")

if has("contention"):
    print()
    print("Contention through tpm2-abrmd (P-256, PKCS#11, aggregate ops/s)")
one = get("contention", "tpmkeys-p11", "ec", "procs1")
for n in (1, 4, 8):
    v = get("contention", "tpmkeys-p11", "ec", f"procs{n}")
    if v is not None and one:
        print(f"  {n} process{'es' if n > 1 else '  '} {v:8.1f}  x{v / one:.2f} of one")

if has("tls"):
    print()
    print(f"TLS 1.3 handshakes/s: openssl s_server -www + s_time -new, {C['tls_secs']} s each, default")
    print("configuration (-provider tpm2 -provider default). Every TPM server runs right after the same")
    print(f"server with a software key; ratio per pair, medians of {C['tls_runs']} runs. TPM path: direct =")
    print("the server talks to swtpm itself (like the floor); tpm2-abrmd = through the resource manager.")
    print(f"  {'key':5} {'server':14} {'TPM path':10} {'TPM key':>8} {'software':>9} {'ratio':>6}  {'target':>10}")
for alg in ("ec", "rsa"):
    for impl, server, path in (("tpmkeys-ossl-direct", "tpmkeys-ossl", "direct"),
                               ("tpmkeys-ossl-abrmd", "tpmkeys-ossl", "tpm2-abrmd"),
                               ("tpm2-openssl-direct", "tpm2-openssl", "direct"),
                               ("tpm2-openssl-abrmd", "tpm2-openssl", "tpm2-abrmd")):
        v = get("tls", impl, alg, "handshakes")
        s = get("tls", impl, alg, "software")
        head = f"  {ALG[alg]:5} {server:14} {path:10}"
        if v is None:
            if get("tls", impl, alg, "failed") is not None:
                print(f"{head} {'failed':>8} {fmt(s, '9.1f', 9)}  no handshake: "
                      + NOTES.get(f"{impl} {alg}", "see the run's log"))
            continue
        a = RUNS.get(("tlsratio", impl, alg, "software"), {})
        rt = statistics.median(a.values()) if a else None
        tg = target(f"TLS {ALG[alg]} {server} {path} / software", rt, ">=", 0.75) \
            if alg == "ec" and server == "tpmkeys-ossl" else ""
        print(f"{head} {v:8.1f} {fmt(s, '9.1f', 9)} {fmt(rt, '6.2f', 6)}  {tg}")
if has("tls"):
    # What one TPM signature per handshake allows at best: a handshake with the TPM key
    # costs the software handshake plus one signature at the floor's rate (the server
    # waits for the TPM; on this machine the client, server and TPM share the cores).
    print("  bound: 1 / (1 + software rate / floor rate) = the best a server that adds one TPM")
    print("  signature per handshake (at the floor's speed) can reach; tpmkeys direct / bound:")
    for alg in ("ec", "rsa"):
        s = get("tls", "tpmkeys-ossl-direct", alg, "software")
        f = get("sign", "floor", alg, "rate")
        a = RUNS.get(("tlsratio", "tpmkeys-ossl-direct", alg, "software"), {})
        rt = statistics.median(a.values()) if a else None
        if s and f:
            b = 1 / (1 + s / f)
            print(f"    {ALG[alg]:5} bound {b:5.2f}   tpmkeys direct {fmt(rt, '5.2f', 5)}"
                  f"   = {fmt(rt / b if rt else None, '5.2f', 5)} of the bound")
with open(out + "/latest-tls.dat", "w") as tls:
    tls.write("# server/path ec_ratio rsa_ratio (handshakes/s with the TPM key / software key)\n")
    for impl in ("tpmkeys-ossl-direct", "tpmkeys-ossl-abrmd", "tpm2-openssl-direct", "tpm2-openssl-abrmd"):
        rs = [RUNS.get(("tlsratio", impl, alg, "software"), {}) for alg in ("ec", "rsa")]
        if any(rs):
            tls.write("%s %s %s\n" % (impl.replace("-abrmd", "/tpm2-abrmd").replace("-direct", "/direct"),
                      *(statistics.median(r.values()) if r else 0 for r in rs)))
cmds = [(alg, impl) for alg in ("ec", "rsa") for impl in ("tpmkeys-ossl-direct", "tpm2-openssl-abrmd")
        if get("tlscmds", impl, alg, "per_handshake") is not None]
if cmds:
    print(f"TPM commands the server sends per handshake (pcap TCTI inside the server, over "
          f"{C['tls_count']} handshakes after 2 warm-up ones)")
    for alg, impl in cmds:
        server, path = impl.rsplit("-", 1)
        print(f"  {ALG[alg]:5} {server:14} {'direct' if path == 'direct' else 'tpm2-abrmd':10}"
              f" {get('tlscmds', impl, alg, 'per_handshake'):8.2f}   (start-up + 2 warm-up handshakes:"
              f" {get('tlscmds', impl, alg, 'startup'):.0f})")

print()
met = [t for t in TARGETS if t[3]]
missed = [t for t in TARGETS if not t[3]]
print(f"Targets (issue 5): {len(met)} met, {len(missed)} missed in this run")
for what, value, text, ok in missed:
    print(f"  MISSED {what}: {value:.2f}, target {text}")
EOF

if command -v gnuplot >/dev/null; then
    tlsplot=
    grep -qv '^#' "$OUT/latest-tls.dat" 2>/dev/null && tlsplot="tlsfile='$OUT/latest-tls.dat'; "
    gnuplot -e "datafile='$OUT/latest.dat'; ${tlsplot}outfile='$OUT/latest.png'; subtitle='$DATE, $MACHINE, load $LOAD'" \
        "$top_srcdir/bench/chart.gp" 2>"$TK_TMP/gnuplot.err" ||
        say "gnuplot failed: $(cat "$TK_TMP/gnuplot.err")"
fi
say "wrote $OUT/latest.csv, latest-raw.csv, latest.txt, latest.png"
exit 0
