#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A full TPM, a full disk and a read-only store.
#  - Every transient object slot of swtpm (3) taken by objects another program left
#    there (tpm2_createprimary, no resource manager): a clear error naming the cause,
#    through the tool, PKCS#11 (CKR_DEVICE_MEMORY) and the provider.  With one slot
#    taken, a process signing with two keys in turn evicts its own cached key and
#    retries.  Behind tpm2-abrmd another client holding three loaded keys stops no one.
#  - The store on a full file system (a small tmpfs in a private mount namespace): a
#    running signer keeps signing, writes fail with a clear error and change nothing,
#    new processes still list and sign; after space is freed writes work again.
#  - The store on a read-only bind mount: PKCS#11 and the provider sign, writes fail
#    with "read-only", nothing changes.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/reliability/fault-lib.sh"

tkf_sign_setup
tk_need_tool
tk_need openssl sqlite3 tpm2_createprimary tpm2_flushcontext tpm2_getcap
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"

printf 5678 >user.pin
tk_check "init with a user PIN" "$TK" init --user-pin-file user.pin
for k in a b; do
    tk_check "create $k" "$TK" create-key --label "$k" --algorithm ecc-p256 --no-pin
done
tk_check "create pk (PIN)" "$TK" create-key --label pk --algorithm ecc-p256 --pin-file user.pin
for k in a b pk; do
    tk_check "export $k --public" "$TK" export "$k" --public -o "$k.pub.pem"
done
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new.pem 2>/dev/null ||
    tk_die "openssl genpkey failed"
echo "full" >data.txt

transients() { tpm2_getcap handles-transient 2>/dev/null | grep -c '0x80'; }

# ---------------------------------------------------------------- a full TPM, no RM
for i in 1 2 3; do
    tpm2_createprimary -C o -c "hog$i.ctx" >/dev/null 2>&1 || tk_die "tpm2_createprimary $i failed"
done
tk_eq "another program left 3 objects in the TPM" 3 "$(transients)"
tk_expect_fail 7 "tool: sign with every object slot taken" "$TK" sign a -i data.txt -o a.sig
tk_match "tool: the message names the cause" 'out of memory for objects'
tk_match "tool: ... and what to do" 'resource manager'
tk_check "tool: list works (no TPM needed)" "$TK" list
tk_check_not "p11: sign with every slot taken" "$prog" p11 -n 1 a a.pub.pem
tk_match "p11: CKR_DEVICE_MEMORY" 'CKR_DEVICE_MEMORY'
tk_check_not "provider: sign with every slot taken" "$prog" prov -n 1 tpmkeys:object=a a.pub.pem
tk_match "provider: the OpenSSL error names the cause" 'out of memory for objects'
tk_eq "our failed attempts left nothing in the TPM" 3 "$(transients)"

# One object of the other program stays: loading a key needs two free slots (the SRK
# and the key), so a process with two keys must evict its own cached key each time.
tpm2_flushcontext 0x80000001 >/dev/null 2>&1 && tpm2_flushcontext 0x80000002 >/dev/null 2>&1 ||
    tk_die "tpm2_flushcontext failed"
tk_check "p11: 20 signatures with two keys in turn, one slot taken" \
    env TPMKEYS_LOG=debug "$prog" p11 -n 20 a a.pub.pem b b.pub.pem
tk_match "p11: it evicted its own cached key to make room" 'evicting a cached key'
tk_check "p11: PIN key and no-PIN key in turn, one slot taken" \
    "$prog" p11 -n 20 -p 5678 pk pk.pub.pem a a.pub.pem
tk_check "provider: 20 signatures with two keys in turn, one slot taken" \
    "$prog" prov -n 20 tpmkeys:object=a a.pub.pem tpmkeys:object=b b.pub.pem
tk_check "tool: import with one slot taken" "$TK" create-key --label imp --import new.pem --no-pin
tk_check "tool: create-key with one slot taken" "$TK" create-key --label gen --algorithm ecc-p256 --no-pin
# Applications that exit without C_Finalize or OSSL_PROVIDER_unload (what they leave
# allocated is not a leak of ours: no leak report for these two).
tk_check "p11: a process that exits without C_Finalize" \
    env ASAN_OPTIONS=detect_leaks=0 "$prog" p11 -x -n 2 -p 5678 pk pk.pub.pem a a.pub.pem
tk_check "provider: a process that exits without unloading the provider" \
    env ASAN_OPTIONS=detect_leaks=0 "$prog" prov -x -n 2 tpmkeys:object=b b.pub.pem
tk_eq "our processes left nothing behind (only the other program's object)" 1 "$(transients)"
tk_eq "... and no session" 0 "$(tpm2_getcap handles-loaded-session 2>/dev/null | grep -c '0x')"
tpm2_flushcontext -t >/dev/null 2>&1
tk_check "tool: signs once the TPM has room" "$TK" sign a -i data.txt -o a.sig
tk_check "its signature verifies" openssl dgst -sha256 -verify a.pub.pem -signature a.sig data.txt

# ---------------------------------------------------------------- behind tpm2-abrmd
# The resource manager swaps objects in and out: a client that keeps three keys loaded
# (and its connection open) blocks nobody.
tk_abrmd_start
"$prog" p11 -n 3 -h 6 a a.pub.pem b b.pub.pem pk pk.pub.pem -p 5678 >hog.log 2>&1 &
hog=$!
tk_track_pid "$hog"
for _ in $(seq 1 100); do grep -q holding hog.log && break; sleep 0.1; done
tk_match "abrmd: the other client holds three loaded keys" 'holding' "$(cat hog.log)"
tk_check "abrmd: p11 signs meanwhile (30 calls, three keys)" \
    "$prog" p11 -n 30 -p 5678 pk pk.pub.pem a a.pub.pem b b.pub.pem
tk_check "abrmd: provider signs meanwhile" \
    "$prog" prov -n 20 tpmkeys:object=b b.pub.pem tpmkeys:object=a a.pub.pem
tk_check "abrmd: tool signs meanwhile" "$TK" sign b -i data.txt -o b.sig
rc=0
wait "$hog" || rc=$?
tk_eq "abrmd: the other client finishes fine" 0 "$rc"

# ---------------------------------------------------------------- disk full, read-only
# Still behind tpm2-abrmd: a long-running signer and other processes share the TPM.
# A private mount namespace (root only) for a small tmpfs and a read-only bind mount.
ns_pid=
if [ "$(id -u)" = 0 ] && command -v nsenter >/dev/null && command -v unshare >/dev/null; then
    unshare -m --propagation private sleep 3600 &
    ns_pid=$!
    tk_track_pid "$ns_pid"
    sleep 0.2
    nsenter -t "$ns_pid" -m true 2>/dev/null || ns_pid=
fi
if [ -z "$ns_pid" ]; then
    tk_log "SKIP disk-full and read-only checks: needs root, unshare -m and nsenter"
    tk_done
fi
ns() { nsenter -t "$ns_pid" -m --wd="$TK_TMP" "$@"; }

mkdir -p full ro
ns mount -t tmpfs -o size=1m,mode=0700 tmpfs "$TK_TMP/full" || tk_die "mount tmpfs"
ns cp store.db "$TK_TMP/full/store.db" && ns cp store.db "$TK_TMP/full/cold.db" ||
    tk_die "cp store.db"
FULL=$TK_TMP/full/store.db COLD=$TK_TMP/full/cold.db
rows() { ns sqlite3 "$1" "SELECT group_concat(label, ',') FROM (SELECT label FROM keys ORDER BY label)"; }
before=$(rows "$FULL")
tk_match "full: the store holds a, b and pk" '^a,b,.*pk' "$before"

# A signer that runs before, during and after the disk fills (40 calls, 0.1 s apart).
ns env TPMKEYS_STORE="$FULL" "$prog" p11 -n 40 -i 100 a a.pub.pem b b.pub.pem >slow.log 2>&1 &
slow=$!
tk_track_pid "$slow"
for _ in $(seq 1 100); do [ "$(grep -c '^ok' slow.log)" -ge 5 ] && break; sleep 0.1; done
ns sh -c "dd if=/dev/zero of='$TK_TMP/full/filler' bs=4k >/dev/null 2>&1; true"
tk_check "the file system is full" ns sh -c "! echo x >'$TK_TMP/full/probe'"
tk_expect_fail '1|8' "full: import fails" \
    ns env TPMKEYS_STORE="$FULL" "$TK" create-key --label z --import new.pem --no-pin
tk_imatch "full: the message says why" 'disk space|disk is full|no space'
tk_expect_fail '1|8' "full: delete fails" ns env TPMKEYS_STORE="$FULL" "$TK" delete b
tk_imatch "full: the message says why" 'disk space|disk is full|no space'
tk_check "full: list works" ns env TPMKEYS_STORE="$FULL" "$TK" list
tk_check "full: a new process signs" ns env TPMKEYS_STORE="$FULL" "$TK" sign b -i data.txt -o b.sig
rc=0
wait "$slow" || rc=$?
tk_eq "full: the running signer signed all 40 times" 0 "$rc"
tk_match "full: ... the last one after the disk filled" '^ok 40 ' "$(cat slow.log)"
# A store nobody opened since the disk filled: sqlite cannot make its -shm file, so
# it is served read-only (immutable: its -wal is empty).
# (The signer's exit removed its -wal: fill up what that freed.)
ns sh -c "dd if=/dev/zero of='$TK_TMP/full/filler2' bs=1k >/dev/null 2>&1; true"
tk_check "full, cold store: list works" ns env TPMKEYS_STORE="$COLD" "$TK" list
tk_match "full, cold store: the keys are listed" 'object=pk'
tk_check "full, cold store: p11 signs" ns env TPMKEYS_STORE="$COLD" "$prog" p11 -n 4 a a.pub.pem b b.pub.pem
tk_check "full, cold store: provider signs" \
    ns env TPMKEYS_STORE="$COLD" "$prog" prov -n 4 tpmkeys:object=a a.pub.pem
tk_expect_fail 8 "full, cold store: import fails" \
    ns env TPMKEYS_STORE="$COLD" "$TK" create-key --label z --import new.pem --no-pin
tk_expect_fail 8 "full, cold store: delete fails" ns env TPMKEYS_STORE="$COLD" "$TK" delete a
tk_match "full, cold store: the message names the full disk" 'No space left'
tk_eq "full, cold store: the keys are unchanged" "$before" "$(rows "file:$COLD?immutable=1")"
ns rm -f "$TK_TMP/full/filler" "$TK_TMP/full/filler2"
tk_eq "full: the failed writes changed nothing" "$before" "$(rows "$FULL")"
tk_check "space again: integrity_check" ns sqlite3 "$FULL" 'PRAGMA integrity_check'
tk_eq "space again: integrity ok" ok "$TK_OUT"
tk_check "space again: import works" \
    ns env TPMKEYS_STORE="$FULL" "$TK" create-key --label z --import new.pem --no-pin
tk_check "space again: delete works" ns env TPMKEYS_STORE="$FULL" "$TK" delete b
tk_check "space again, cold store: import works" \
    ns env TPMKEYS_STORE="$COLD" "$TK" create-key --label z --import new.pem --no-pin
tk_check "space again, cold store: integrity_check" ns sqlite3 "$COLD" 'PRAGMA integrity_check'
tk_eq "space again, cold store: integrity ok" ok "$TK_OUT"

# Read-only: the folder bind-mounted read-only over itself.
cp store.db ro/store.db
RO=$TK_TMP/ro/store.db
ns mount --bind "$TK_TMP/ro" "$TK_TMP/ro" && ns mount -o remount,bind,ro "$TK_TMP/ro" ||
    tk_die "read-only bind mount"
before=$(rows "file:$RO?immutable=1")
tk_match "read-only: the store holds a, b and pk" '^a,b,.*pk' "$before"
tk_check_not "the bind mount is read-only" ns touch "$TK_TMP/ro/probe"
tk_check "read-only: p11 signs" ns env TPMKEYS_STORE="$RO" "$prog" p11 -n 6 -p 5678 pk pk.pub.pem a a.pub.pem
tk_check "read-only: provider signs" \
    ns env TPMKEYS_STORE="$RO" "$prog" prov -n 6 tpmkeys:object=b b.pub.pem tpmkeys:object=a a.pub.pem
tk_expect_fail 8 "read-only: delete" ns env TPMKEYS_STORE="$RO" "$TK" delete a
tk_imatch "read-only: the message says so" 'read-only'
tk_expect_fail 8 "read-only: import" \
    ns env TPMKEYS_STORE="$RO" "$TK" create-key --label z --import new.pem --no-pin
tk_imatch "read-only: the message says so" 'read-only'
tk_eq "read-only: the keys are unchanged" "$before" "$(rows "file:$RO?immutable=1")"
tk_check "read-only: integrity_check" ns sqlite3 "file:$RO?immutable=1" 'PRAGMA integrity_check'
tk_eq "read-only: integrity ok" ok "$TK_OUT"

tk_done
