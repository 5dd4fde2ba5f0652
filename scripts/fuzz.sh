#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Build the libFuzzer harnesses of fuzz/ and run each for a while.
#
#   scripts/fuzz.sh [BUILD-DIR]          default BUILD-DIR: build-fuzz/ at the source top
#
#   FUZZ_SECONDS=30   time per fuzzer (CI: 15; the long run: 600)
#   FUZZ_JOBS=1       fuzzers run at the same time (each is one process)
#   FUZZ_SEED=N       libFuzzer's random seed (CI: 1, so that a run explores the same
#                     inputs first every time; unset: a new seed per run)
#   FUZZERS="..."     a subset (names without fuzz_: keyfile tss2key tpmpublic uri
#                     storerows pkcs11)
#
# Each fuzzer starts from a copy of its committed corpus (fuzz/corpus/NAME/, never written)
# with its dictionary (fuzz/NAME.dict) when there is one, in a scratch folder removed at the
# end.  Crashes, leaks, sanitizer reports and broken invariants are saved to
# BUILD-DIR/fuzz-crashes/ (replay one: BUILD-DIR/fuzz/fuzz_NAME FILE) and the logs to
# BUILD-DIR/fuzz-logs/.  Prints one line per fuzzer; exits non-zero when any crashed
# or the build failed.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build-fuzz}
seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-1}
all="keyfile tss2key tpmpublic uri storerows pkcs11"
fuzzers=${FUZZERS:-keyfile tss2key tpmpublic uri storerows pkcs11}

say() { printf 'fuzz: %s\n' "$*"; }

# ------------------------------------------------------------------ build

command -v clang >/dev/null || { say "clang is missing (Debian: apt-get install clang libclang-rt-14-dev)"; exit 1; }
[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi) || { say "autoreconf failed"; exit 1; }
mkdir -p "$build" || exit 1
build=$(cd "$build" && pwd)
# Not --enable-strict: clang warns about other things than gcc, and the strict gcc builds
# of scripts/check.sh already keep the code warning-free.
if [ ! -f "$build/Makefile" ]; then
    say "configuring $build"
    (cd "$build" && CC=clang "$top/configure" -q --enable-fuzzers) ||
        { say "configure failed"; exit 1; }
fi
say "building the fuzzers in $build"
make -C "$build" -j"${JOBS:-2}" fuzzers >"$build/fuzz-build.log" 2>&1 ||
    { tail -n 30 "$build/fuzz-build.log"; say "build failed (see $build/fuzz-build.log)"; exit 1; }

# ------------------------------------------------------------------ run

scratch=$(mktemp -d "${TMPDIR:-/tmp}/tpmkeys-fuzz.XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
# The store-based harnesses write a small sqlite file per input: keep it in memory.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    fuzz_tmp=$(mktemp -d /dev/shm/tpmkeys-fuzz.XXXXXX) || exit 1
    trap 'rm -rf "$scratch" "$fuzz_tmp"' EXIT
else
    fuzz_tmp=$scratch
fi
mkdir -p "$build/fuzz-crashes" "$build/fuzz-logs"

# run_one NAME: fuzz for $seconds; writes $scratch/NAME.result ("ok|FAILED text").
run_one() {
    local name=$1 bin=$build/fuzz/fuzz_$1 log=$build/fuzz-logs/$1.log
    local corpus=$scratch/corpus-$1 opts=() rc execs cov ft units crashes
    rm -rf "$corpus"
    cp -r "$top/fuzz/corpus/$name" "$corpus" 2>/dev/null || mkdir -p "$corpus"
    [ -f "$top/fuzz/$name.dict" ] && opts=(-dict="$top/fuzz/$name.dict")
    [ -n "${FUZZ_SEED:-}" ] && opts+=(-seed="$FUZZ_SEED")
    # The slow harnesses (a store per input) decode a few bytes per operation: give them
    # whole operation sequences from the start instead of growing the length limit.
    case $name in
        storerows | pkcs11) opts+=(-len_control=0 -max_len=512) ;;
        *) opts+=(-max_len=8192) ;;
    esac
    rm -f "$build/fuzz-crashes/$name-"*
    TMPDIR=$fuzz_tmp "$bin" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2560 \
        -print_final_stats=1 -artifact_prefix="$build/fuzz-crashes/$name-" \
        "${opts[@]}" "$corpus" </dev/null >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    cov=$(grep -ao 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    ft=$(grep -ao 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    units=$(find "$corpus" -type f | wc -l)
    crashes=$(find "$build/fuzz-crashes" -name "$name-*" -type f | wc -l)
    if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then
        printf 'ok      %-10s %9s runs in %ss, cov %s, ft %s, corpus %s inputs\n' "$name" \
            "${execs:-?}" "$seconds" "${cov:-?}" "${ft:-?}" "$units" >"$scratch/$name.result"
    else
        printf 'FAILED  %-10s exit %s after %s runs, %s crash file(s) in %s, log %s\n' "$name" \
            "$rc" "${execs:-?}" "$crashes" "$build/fuzz-crashes" "$log" >"$scratch/$name.result"
    fi
}

say "running: ${fuzzers} (${seconds}s each, ${jobs} at a time)"
running=0
for name in $fuzzers; do
    case " $all " in *" $name "*) ;; *) say "unknown fuzzer $name"; exit 1 ;; esac
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    run_one "$name" &
    running=$((running + 1))
done
wait

failed=0
for name in $fuzzers; do
    if [ -f "$scratch/$name.result" ]; then
        say "$(cat "$scratch/$name.result")"
        grep -q '^FAILED' "$scratch/$name.result" && failed=$((failed + 1))
    else
        say "FAILED  $name: no result"
        failed=$((failed + 1))
    fi
done
[ "$failed" -eq 0 ] || { say "$failed fuzzer(s) failed"; exit 1; }
say "all fuzzers ok"
