#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Threads sharing one door: 8 threads on one PKCS#11 module (C_Initialize with
# CKF_OS_LOCKING_OK, a session each: find, C_GetAttributeValue, sign with a shared key
# and with its own), then 8 threads on one OSSL_LIB_CTX with the tpm2 provider (a shared
# EVP_PKEY and one each).  Every signature verified.  Rounds: TK_CONC_ROUNDS (5; TK_LONG=1:
# 50).  scripts/tsan.sh runs this scenario in a ThreadSanitizer build.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"
. "$top_srcdir/tests/reliability/conc-lib.sh"

tk_need_tool
ROUNDS=${TK_CONC_ROUNDS:-$(conc_pick 5 50)}
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
export TSS2_LOG=${TSS2_LOG:-all+none}

tk_check "init" "$TK" init
own=()
for i in 0 1 2 3 4 5 6 7; do
    alg=ecc-p256
    [ $((i % 4)) = 3 ] && alg=rsa2048
    own+=("t$i")
    "$TK" create-key --label "t$i" --algorithm $alg --no-pin >/dev/null 2>"t$i.err" ||
        tk_die "create-key t$i: $(cat "t$i.err")"
done
"$TK" create-key --label shared --algorithm ecc-p256 --no-pin >/dev/null 2>shared.err ||
    tk_die "create-key shared: $(cat shared.err)"
conc_pubkeys shared "${own[@]}"

# One process at a time: a bare swtpm serves one connection, and each door has its own.
tk_check "8 threads, one PKCS#11 module" "$CONC" p11-threads "$MODULE" tpmkeys "$ROUNDS" \
    shared "${own[@]}"
tk_match "p11: every signature verified" "^p11-threads: 8 threads, $((ROUNDS * 16)) signatures in [0-9.]+ s, 0 failures"
tk_log "$(grep '^p11-threads' <<<"$TK_OUT")"
tk_nomatch "no ThreadSanitizer report" 'WARNING: ThreadSanitizer'

tk_check "8 threads, one provider" "$CONC" prov-threads "$ROUNDS" shared "${own[@]}"
tk_match "provider: every signature verified" "^prov-threads: 8 threads, $((ROUNDS * 16)) signatures in [0-9.]+ s, 0 failures"
tk_log "$(grep '^prov-threads' <<<"$TK_OUT")"
tk_nomatch "no ThreadSanitizer report" 'WARNING: ThreadSanitizer'

tk_done
