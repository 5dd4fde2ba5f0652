#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The keystore library against a fresh swtpm without a resource manager (test_ks.c).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_swtpm_start
prog=$top_builddir/tests/integration/test_ks
[ -x "$prog" ] || tk_die "$prog is not built"
if "$prog"; then tk_pass "keystore integration (test_ks)"; else tk_fail "keystore integration (test_ks)"; fi
tk_done
