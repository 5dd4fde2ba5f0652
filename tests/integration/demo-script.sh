#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/demo.sh as a test: against the harness's swtpm, then with its own simulator
# (started, reused, restarted with the same keys), and idempotent on every re-run.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_need openssl swtpm
export TPMKEYS_TOOL=$TK
demo_sh=$top_srcdir/scripts/demo.sh
tk_swtpm_start
mkdir -p "$TK_TMP/work" && cd "$TK_TMP/work" || tk_die "cd $TK_TMP/work"

verified() { printf '%s\n' "$TK_OUT" | grep -c '^Verified OK$'; }
nkeys() { printf '%s\n' "$TK_OUT" | grep -oE 'tpmkeys:object=demo-(ec|rsa)' | sort -u | wc -l; }

# ---------------------------------------------------------------- the harness's TPM
tk_check "demo.sh --no-install (TPMKEYS_TCTI from the harness)" bash "$demo_sh" --no-install
tk_eq "both signatures verified" 2 "$(verified)"
tk_eq "list shows demo-ec and demo-rsa" 2 "$(nkeys)"
tk_match "list shows the PKCS#11 URI" 'pkcs11:token=tpmkeys;object=demo-ec;type=private'
tk_match "prints how to use the keys" "export TPMKEYS_STORE=$TK_TMP/work/demo-tpm/store.db"
tk_nomatch "no simulator of its own" 'swtpm\.pid'
if [ -e demo-tpm/swtpm.pid ]; then tk_fail "no swtpm.pid"; else tk_pass "no swtpm.pid"; fi
tk_eq "demo folder mode 0700" 700 "$(stat -c %a demo-tpm)"
tk_eq "PIN file mode 0600" 600 "$(stat -c %a demo-tpm/user.pin)"
tk_check "store in the demo folder" test -s demo-tpm/store.db
rsa_sum=$(tk_sha256 demo-tpm/demo-rsa.pem)

tk_check "demo.sh again (idempotent)" bash "$demo_sh" --no-install
tk_eq "both signatures verified again" 2 "$(verified)"
tk_eq "still exactly the two keys" 2 "$(nkeys)"
tk_match "demo-ec reused" 'demo-ec exists already'
tk_match "demo-rsa reused" 'demo-rsa exists already'
tk_eq "the RSA source key is kept" "$rsa_sum" "$(tk_sha256 demo-tpm/demo-rsa.pem)"

# ---------------------------------------------------------------- its own simulator
own=$TK_TMP/own
tk_check "demo.sh --swtpm starts its own simulator" bash "$demo_sh" --no-install --swtpm --dir "$own"
pid=$(cat "$own/swtpm.pid" 2>/dev/null)
[ -n "$pid" ] && tk_track_pid "$pid"
tk_eq "both signatures verified" 2 "$(verified)"
tk_match "tells how to stop it" "kill \\\$\\(cat $own/swtpm.pid\\)"
if [ -n "$pid" ] && tk_alive "$pid"; then tk_pass "simulator left running"; else tk_fail "simulator left running"; fi
tk_nomatch "not the harness's TPM" "port=$TK_SWTPM_PORT"

tk_check "demo.sh --swtpm again" bash "$demo_sh" --no-install --swtpm --dir "$own"
tk_match "reuses the running simulator" 'already running'
tk_eq "same simulator" "$pid" "$(cat "$own/swtpm.pid" 2>/dev/null)"
tk_eq "both signatures verified" 2 "$(verified)"

kill "$pid" 2>/dev/null
for _ in $(seq 1 50); do tk_alive "$pid" || break; sleep 0.1; done
tk_check "demo.sh --swtpm after the simulator was stopped" bash "$demo_sh" --no-install --swtpm --dir "$own"
pid2=$(cat "$own/swtpm.pid" 2>/dev/null)
[ -n "$pid2" ] && tk_track_pid "$pid2"
tk_match "a new simulator was started" 'TPM simulator started'
tk_match "the keys survived the restart" 'demo-rsa exists already'
tk_eq "both signatures verified with the same keys" 2 "$(verified)"

tk_done
