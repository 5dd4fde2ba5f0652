#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The whole check, as CI runs it: dependencies, a strict build with `make check` in
# build/, the same again with ASan+UBSan in build-san/, short fuzzer runs (build-fuzz/),
# ThreadSanitizer (build-tsan/), valgrind on a subset, distcheck, the logs of whatever failed,
# and one closing line "N passed, N failed[, N skipped]" over both runs.
# Exits non-zero when anything failed (a build step counts as one failure).
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1
jobs=${JOBS:-2}

passed=0
failed=0
skipped=0
problems=()
failure_logs=()

step() { printf '\n==> %s\n' "$*"; }

# stage_failed WHAT: a step that is not a test failed; it counts as one failure.
stage_failed() {
    failed=$((failed + 1))
    problems+=("$1")
    echo "check: FAILED: $1" >&2
}

# count DIR: add the automake results (.trs files) of one build to the totals; sets
# nfail to that build's failures.
nfail=0
count() {
    local dir=$1 f res p=0 x=0 s=0
    while IFS= read -r -d '' f; do
        while read -r _ res; do
            case $res in
                PASS | XFAIL) p=$((p + 1)) ;;
                SKIP) s=$((s + 1)) ;;
                FAIL | XPASS | ERROR) x=$((x + 1)) ;;
            esac
        done < <(grep '^:test-result:' "$f")
    done < <(find "$dir" -name '*.trs' -print0)
    passed=$((passed + p))
    failed=$((failed + x))
    skipped=$((skipped + s))
    nfail=$x
    printf 'check: %s: %d passed, %d failed, %d skipped\n' "$(basename "$dir")" "$p" "$x" "$s"
}

# build_and_check NAME CONFIGURE-ARGS...: in $top/NAME, configure (once), make, make check.
build_and_check() {
    local name=$1 dir=$top/$1 rc
    shift
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ]; then
        step "$name: configure $*"
        (cd "$dir" && "$top/configure" -q "$@") || { stage_failed "$name: configure"; return; }
    fi
    step "$name: make"
    make -C "$dir" -j"$jobs" || { stage_failed "$name: make"; return; }
    # Results of earlier runs (and of tests no longer in TESTS) must not count.
    find "$dir" -name '*.trs' -delete
    step "$name: make check"
    make -C "$dir" -j"$jobs" check
    rc=$?
    count "$dir"
    if [ $rc -ne 0 ] && [ "$nfail" -eq 0 ]; then
        stage_failed "$name: make check (exit $rc outside the test results)"
    fi
    if [ "$nfail" -gt 0 ]; then
        problems+=("$name: $nfail test(s) failed, see $name/test-suite.log")
        [ -f "$dir/test-suite.log" ] && failure_logs+=("$dir/test-suite.log")
    fi
}

# Whether LeakSanitizer works here (it does not under some ptrace/seccomp setups).
lsan_works() {
    local d rc
    d=$(mktemp -d) || return 1
    printf '#include <stdlib.h>\nvoid *volatile p;\nint main(void){p=malloc(7);p=0;return 0;}\n' >"$d/l.c"
    if ${CC:-cc} -fsanitize=address -g "$d/l.c" -o "$d/l" 2>/dev/null; then
        ASAN_OPTIONS=detect_leaks=1 "$d/l" >"$d/out" 2>&1
        rc=$?
        grep -q 'detected memory leaks' "$d/out" && [ $rc -ne 0 ] || rc=0
    else
        rc=0
    fi
    rm -rf "$d"
    [ "$rc" -ne 0 ]
}

step "dependencies"
bash "$top/scripts/deps.sh" || stage_failed "scripts/deps.sh"

step "autoreconf -fi"
autoreconf -fi || stage_failed "autoreconf"

if [ -x "$top/configure" ]; then
    build_and_check build --enable-strict

    if lsan_works; then
        export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
    else
        echo "check: LeakSanitizer does not work on this machine: leaks are not checked" >&2
        export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
    fi
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    build_and_check build-san --enable-sanitizers --enable-strict

    # Fuzzers: a short run of each over a copy of the committed corpus (long run:
    # FUZZ_SECONDS=600 FUZZ_JOBS=2 scripts/fuzz.sh).
    step "fuzzers (${FUZZ_SECONDS:-15} s each)"
    FUZZ_SECONDS=${FUZZ_SECONDS:-15} FUZZ_JOBS=2 FUZZ_SEED=${FUZZ_SEED:-1} \
        bash "$top/scripts/fuzz.sh" "$top/build-fuzz" ||
        stage_failed "scripts/fuzz.sh (see build-fuzz/fuzz-logs/, build-fuzz/fuzz-crashes/)"

    # ThreadSanitizer: 8 threads on one PKCS#11 module and on one provider (own build).
    step "ThreadSanitizer (scripts/tsan.sh)"
    (unset ASAN_OPTIONS UBSAN_OPTIONS; bash "$top/scripts/tsan.sh" "$top/build-tsan") ||
        stage_failed "scripts/tsan.sh (see build-tsan/)"

    # valgrind memcheck of a short subset of the integration tests (plain build; the
    # whole list: scripts/valgrind.sh build).
    step "valgrind memcheck (scripts/valgrind.sh --quick)"
    (unset ASAN_OPTIONS UBSAN_OPTIONS; bash "$top/scripts/valgrind.sh" --quick "$top/build") ||
        stage_failed "scripts/valgrind.sh (see build/valgrind-logs/)"

    # The release tarball: builds, installs, uninstalls cleanly and passes a short
    # subset of the suite from a read-only source tree (the full suite ran above).
    step "make distcheck (short test subset)"
    (unset ASAN_OPTIONS UBSAN_OPTIONS
     make -C "$top/build" -j"$jobs" distcheck \
         TESTS="tests/unit/test_util tests/unit/test_db tests/integration/ks.sh tests/integration/tool-init.sh") \
        >"$top/build/distcheck.log" 2>&1 || {
        tail -n 40 "$top/build/distcheck.log"
        stage_failed "make distcheck (see build/distcheck.log)"
    }
fi

for log in "${failure_logs[@]}"; do
    step "$log"
    cat "$log"
done

echo
if [ ${#problems[@]} -gt 0 ]; then
    printf 'check: %s\n' "${problems[@]}"
fi
summary="$passed passed, $failed failed"
[ "$skipped" -eq 0 ] || summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
