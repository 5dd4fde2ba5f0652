#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# valgrind memcheck of the integration tests: the tpmkeys tool and the C test programs
# (test_ks, test_p11 with the PKCS#11 module, test_fork and test_conc with the provider)
# run under
#     valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
# while their usual scenarios drive them against swtpm (and tpm2-abrmd).  Passes when
# every scenario passes and no valgrind log reports an error or a definite leak.
#
# Usage: scripts/valgrind.sh [--quick] [BUILDDIR] [SCENARIO...]
#   BUILDDIR   a configured and built tree WITHOUT sanitizers (default: .)
#   SCENARIO   paths relative to the source tree (default: the list below)
#   --quick    a short subset (CI): ks.sh, provider-fork.sh
# Logs: $VG_LOGS (default BUILDDIR/valgrind-logs), one file per process.
#
# The scenarios find programs under $top_builddir; this script gives them a shadow of the
# build tree (symbolic links) in which those programs are wrappers that exec valgrind.
set -u -o pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
build=$(cd "${1:-.}" && pwd) || exit 2
[ $# -gt 0 ] && shift
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 77; }
[ -x "$build/tools/tpmkeys" ] || { echo "$build: not a built tree (make first)" >&2; exit 2; }
if grep -Eq 'lib(asan|tsan|ubsan)' <<<"$(ldd "$build/tools/tpmkeys")"; then
    echo "$build is a sanitizer build: valgrind needs a plain one" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    scenarios=("$@")
elif [ $quick = 1 ]; then
    scenarios=(tests/integration/ks.sh tests/provider/provider-fork.sh)
else
    scenarios=(tests/integration/ks.sh tests/integration/tool-init.sh
        tests/integration/tool-keys.sh tests/integration/tool-import.sh
        tests/integration/tool-tss2.sh tests/pkcs11/p11-api.sh
        tests/provider/provider-fork.sh tests/reliability/conc-fork.sh)
fi

logs=${VG_LOGS:-$build/valgrind-logs}
rm -rf "$logs"
mkdir -p "$logs"
shadow=$(mktemp -d "${TMPDIR:-/tmp}/tk-valgrind.XXXXXX")
trap 'rm -rf "$shadow"' EXIT
cp -rs "$build/." "$shadow/"

progs=(tools/tpmkeys tests/integration/test_ks tests/pkcs11/test_p11
    tests/provider/test_fork tests/reliability/test_conc)
for p in "${progs[@]}"; do
    [ -x "$build/$p" ] || { echo "$build/$p is not built (make check builds it)" >&2; exit 2; }
    rm -f "$shadow/$p"
    cat >"$shadow/$p" <<EOF
#!/bin/sh
exec valgrind --quiet --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \\
    --show-leak-kinds=definite --num-callers=30 \\
    --suppressions="$src/tests/reliability/valgrind.supp" \\
    --log-file="$logs/$(basename "$p").%p.log" "$build/$p" "\$@"
EOF
    chmod +x "$shadow/$p"
done

failed=0
start=$(date +%s)
for s in "${scenarios[@]}"; do
    name=$(basename "${s%.sh}")
    t0=$(date +%s)
    top_srcdir=$src top_builddir=$shadow TPMKEYS_TOOL=$shadow/tools/tpmkeys \
        TK_TIMEOUT=${TK_TIMEOUT:-900} bash "$src/$s" >"$logs/$name.scenario.log" 2>&1
    rc=$?
    case $rc in
        0) echo "PASS: $s ($(($(date +%s) - t0)) s)" ;;
        77) echo "SKIP: $s" ;;
        *) echo "FAIL: $s (exit $rc; $logs/$name.scenario.log)"; failed=1 ;;
    esac
done

# Every process's log: errors (invalid reads/writes, uninitialised values, definite leaks).
bad=0
nlogs=0
for l in "$logs"/*.[0-9]*.log; do
    [ -e "$l" ] || continue
    nlogs=$((nlogs + 1))
    if grep -q 'ERROR SUMMARY: [1-9]' "$l" || grep -Eq '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|.*definitely lost in)' "$l"; then
        bad=$((bad + 1))
        echo "valgrind: $l"
        sed -n '1,60p' "$l"
    fi
done
echo "valgrind: $nlogs processes checked, $bad with errors or definite leaks ($(($(date +%s) - start)) s)"
[ "$nlogs" -gt 0 ] || { echo "valgrind: no process ran under valgrind" >&2; exit 1; }
[ $bad = 0 ] && [ $failed = 0 ]
