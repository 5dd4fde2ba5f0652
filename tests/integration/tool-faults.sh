#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Faults: no TPM, a corrupted key row, parallel writers through tpm2-abrmd, a
# read-only store.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_need openssl sqlite3
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
echo "fault tolerance" >data.txt

tk_check "init" "$TK" init
for label in alpha beta; do
    tk_check "create $label" "$TK" create-key --label "$label" --algorithm ecc-p256 --no-pin
    tk_check "export $label --public" "$TK" export "$label" --public -o "$label.pub.pem"
done

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- no TPM
port=$(tk_free_port) || tk_die "no free port"
dead="swtpm:host=127.0.0.1,port=$port"

t0=$(now_ms)
tk_expect_fail 6 "create-key without a reachable TPM" \
    env TPMKEYS_TCTI="$dead" "$TK" create-key --label gamma --algorithm ecc-p256 --no-pin
t1=$(now_ms)
tk_match "message names the TCTI" "port=$port"
if [ $((t1 - t0)) -lt 10000 ]; then
    tk_pass "gave up within 10 s ($((t1 - t0)) ms)"
else
    tk_fail "gave up within 10 s (took $((t1 - t0)) ms)"
fi
tk_expect_fail 6 "--tcti overrides TPMKEYS_TCTI" "$TK" --tcti "$dead" sign alpha -i data.txt -o x.sig
tk_match "message names the --tcti string" "port=$port"

t0=$(now_ms)
tk_check "list works without a TPM (lazy connect)" env TPMKEYS_TCTI="$dead" "$TK" list
t1=$(now_ms)
tk_match "list shows alpha" 'object=alpha'
tk_match "list shows beta" 'object=beta'
tk_nomatch "no half-made key from the failed create" 'object=gamma'
if [ $((t1 - t0)) -lt 3000 ]; then
    tk_pass "list does not wait for the TPM ($((t1 - t0)) ms)"
else
    tk_fail "list does not wait for the TPM (took $((t1 - t0)) ms)"
fi
tk_check "export --public works without a TPM" env TPMKEYS_TCTI="$dead" "$TK" export alpha --public
tk_eq "same public key as with the TPM" "$(cat alpha.pub.pem)" "$TK_OUT"

# ---------------------------------------------------------------- corrupted key row
tk_check "corrupt alpha's public blob" sqlite3 store.db "UPDATE keys SET pub = x'00ff' WHERE label = 'alpha'"
tk_expect_fail '8|10' "show of a corrupted key" "$TK" show alpha
tk_match "message names the key" 'alpha'
tk_expect_fail '8|10' "sign with a corrupted key" "$TK" sign alpha -i data.txt -o alpha.sig
tk_match "message names the key" 'alpha'
tk_check "list still works" "$TK" list
tk_match "list still shows beta" 'object=beta'
tk_check "beta still signs" "$TK" sign beta -i data.txt -o beta.sig
tk_check "beta's signature verifies" openssl dgst -sha256 -verify beta.pub.pem -signature beta.sig data.txt
tk_check "delete the corrupted key" "$TK" delete alpha
tk_expect_fail 3 "it is gone" "$TK" show alpha
# Whatever the tool did, the checks below start from a store without the damaged row.
sqlite3 store.db "DELETE FROM keys WHERE label = 'alpha'"

# ---------------------------------------------------------------- parallel writers
tk_abrmd_start
# batch PREFIX: 10 keys, one process each.
batch() {
    local i
    for i in $(seq 1 10); do
        "$TK" create-key --label "$1-$i" --algorithm ecc-p256 --no-pin >/dev/null || {
            echo "create-key $1-$i failed" >&2
            return 1
        }
    done
}
parallel() {
    batch p >"$TK_TMP/p.log" 2>&1 &
    local a=$!
    batch q >"$TK_TMP/q.log" 2>&1 &
    local b=$! rc=0
    wait $a || rc=1
    wait $b || rc=1
    cat "$TK_TMP/p.log" "$TK_TMP/q.log"
    return $rc
}
tk_check "two processes x 10 create-key at once through tpm2-abrmd" parallel
tk_nomatch "no 'database is locked'" 'database is locked'
tk_check "list" "$TK" list
tk_eq "20 new keys listed" 20 "$(printf '%s\n' "$TK_OUT" | grep -cE 'tpmkeys:object=[pq]-[0-9]+([^0-9]|$)')"
tk_check "count rows" sqlite3 store.db "SELECT count(*) FROM keys WHERE label GLOB '[pq]-*'"
tk_eq "20 key rows" 20 "$TK_OUT"
tk_check "integrity_check" sqlite3 store.db 'PRAGMA integrity_check'
tk_eq "store integrity ok" ok "$TK_OUT"
tk_check "a parallel-made key signs" "$TK" sign q-7 -i data.txt -o q7.sig
tk_check "export q-7 --public" "$TK" export q-7 --public -o q7.pub.pem
tk_check "its signature verifies" openssl dgst -sha256 -verify q7.pub.pem -signature q7.sig data.txt
tk_abrmd_stop

# ---------------------------------------------------------------- read-only store
# In a private mount namespace, the store's folder is bind-mounted read-only.
ro() {
    unshare -m bash -c 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" || exit 99
        shift; exec "$@"' ro "$TK_TMP" "$@"
}
if [ "$(id -u)" = 0 ] && ro true >/dev/null 2>&1; then
    tk_check_not "the bind mount is really read-only" ro touch "$TK_TMP/probe"
    tk_check "list on a read-only store" ro "$TK" list
    tk_match "read-only list shows beta" 'object=beta'
    outdir=$(mktemp -d) || tk_die "mktemp"
    tk_check "sign on a read-only store" ro "$TK" sign beta -i data.txt -o "$outdir/ro.sig"
    tk_check "its signature verifies" openssl dgst -sha256 -verify beta.pub.pem -signature "$outdir/ro.sig" data.txt
    rm -rf "$outdir"
    tk_expect_fail 8 "create-key on a read-only store" ro "$TK" create-key --label ro --algorithm ecc-p256 --no-pin
    tk_imatch "message says read-only" 'read-only|readonly'
    tk_check "store still fine afterwards" sqlite3 store.db 'PRAGMA integrity_check'
    tk_eq "integrity ok" ok "$TK_OUT"
else
    tk_log "SKIP read-only store checks: unshare -m or bind mounts are not available here"
fi

tk_done
