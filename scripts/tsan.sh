#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# ThreadSanitizer run: builds the store, the PKCS#11 module, the provider, the tool and
# tests/reliability/test_conc with -fsanitize=thread in BUILDDIR (default ./build-tsan),
# then runs the thread scenario (8 threads on one PKCS#11 module, 8 on one provider)
# with halt_on_error=1: any data race, lock-order inversion or misuse of a mutex in our
# code fails it.  Suppressions (tests/reliability/tsan.supp) only for third-party code.
#
# Usage: scripts/tsan.sh [BUILDDIR] [SCENARIO...]     (TK_CONC_ROUNDS=N for more rounds)
# ThreadSanitizer cannot be combined with ASan, hence a build of its own.
set -u -o pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build-tsan}
[ $# -gt 0 ] && shift
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(tests/reliability/conc-threads.sh)

mkdir -p "$build" && build=$(cd "$build" && pwd) || exit 2
cd "$build" || exit 2
if [ ! -f Makefile ]; then
    "$src/configure" -q CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
        LDFLAGS="-fsanitize=thread" || { echo "configure failed" >&2; exit 2; }
fi
make -j"${JOBS:-2}" >make.log 2>&1 && make tests/reliability/test_conc >>make.log 2>&1 ||
    { tail -n 30 make.log; echo "the ThreadSanitizer build failed" >&2; exit 2; }
# (grep on a here-string: grep -q leaving a pipe early fails the pipeline under pipefail)
grep -q libtsan <<<"$(ldd tests/reliability/test_conc)" ||
    { echo "$build is not a ThreadSanitizer build (configure it afresh)" >&2; exit 2; }

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 history_size=4 suppressions=$src/tests/reliability/tsan.supp${TSAN_OPTIONS:+ $TSAN_OPTIONS}"
failed=0
for s in "${scenarios[@]}"; do
    log=$build/$(basename "${s%.sh}").tsan.log
    t0=$(date +%s)
    top_srcdir=$src top_builddir=$build TPMKEYS_TOOL=$build/tools/tpmkeys \
        bash "$src/$s" >"$log" 2>&1
    rc=$?
    if [ $rc = 0 ]; then
        echo "PASS: $s under ThreadSanitizer ($(($(date +%s) - t0)) s)"
        grep -E '^# (p11|prov)-threads' "$log"
    else
        echo "FAIL: $s under ThreadSanitizer (exit $rc), log $log"
        grep -A40 'WARNING: ThreadSanitizer' "$log" | head -n 80
        failed=1
    fi
done
exit $failed
