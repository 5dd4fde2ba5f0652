#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Writers SIGKILLed in the middle of an import or a delete (`tpmkeys create-key --import`,
# `tpmkeys delete`), at random moments biased towards the end, where the store is
# written: after every kill the store passes PRAGMA integrity_check, `tpmkeys list`
# works and the key is either fully there (its public key matches the source file and
# it signs) or fully absent.  Through tpm2-abrmd, which flushes what a killed client
# left in the TPM (without a resource manager a killed process's objects stay there).
# 24 writers in CI; `make check-faults-long`: 200.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/reliability/fault-lib.sh"

tk_need_tool
tk_need openssl sqlite3
tk_swtpm_start
tk_abrmd_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
export TSS2_LOG=${TSS2_LOG:-all+none}

iterations=24
[ "$TKF_LONG" = 1 ] && iterations=200

tk_check "init" "$TK" init
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out src0.pem 2>/dev/null &&
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out src1.pem 2>/dev/null ||
    tk_die "openssl genpkey failed"
for i in 0 1; do
    openssl pkey -in src$i.pem -pubout -out src$i.pub.pem || tk_die "openssl pkey -pubout"
done
echo "signed after a kill" >data.txt
tk_check "a key that is never touched" "$TK" create-key --label keep --algorithm ecc-p256 --no-pin
tk_check "export keep --public" "$TK" export keep --public -o keep.pub.pem

ms() { echo $(($(date +%s%N) / 1000000)); }

# How long an undisturbed import and delete take here (the kill window): the
# shortest of three runs each.
t_import=999999 t_delete=999999
for _ in 1 2 3; do
    t0=$(ms)
    "$TK" create-key --label cal --import src1.pem --no-pin >/dev/null 2>&1 || tk_die "calibration import failed"
    t1=$(ms)
    "$TK" delete cal >/dev/null 2>&1 || tk_die "calibration delete failed"
    t2=$(ms)
    [ $((t1 - t0)) -lt "$t_import" ] && t_import=$((t1 - t0))
    [ $((t2 - t1)) -lt "$t_delete" ] && t_delete=$((t2 - t1))
done
tk_log "undisturbed: import ${t_import} ms, delete ${t_delete} ms"

# A delay in ms: a third of the time in the first half of the run, else in the second
# half, where the store is written.
delay_for() {
    local t=$1
    if [ $((RANDOM % 3)) = 0 ]; then
        echo $((RANDOM % (t / 2 + 1)))
    else
        echo $((t / 2 + RANDOM % (t / 2 + 1)))
    fi
}

sleep_ms() { sleep "$(printf '%d.%03d' $(($1 / 1000)) $(($1 % 1000)))"; }

present() { sqlite3 store.db "SELECT count(*) FROM keys WHERE label = '$1'" 2>&1; }

killed=0 killed_import=0 killed_delete=0 finished=0 old_state=0 new_state=0 bad=0
for i in $(seq 1 "$iterations"); do
    n=$((i % 4)) src=$((i % 2))
    label=k$n
    before=$(present "$label")
    if [ "$before" = 1 ]; then
        op=delete
        "$TK" delete "$label" >/dev/null 2>&1 &
        t=$t_delete
    else
        op=import
        "$TK" create-key --label "$label" --import "src$src.pem" --no-pin >/dev/null 2>&1 &
        t=$t_import
        echo "$src" >"$label.src"
    fi
    pid=$!
    d=$(delay_for "$t")
    sleep_ms "$d"
    kill -KILL "$pid" 2>/dev/null
    rc=0
    { wait "$pid"; } 2>/dev/null || rc=$?
    # Keep the window on the writer's real length (the load of the machine changes):
    # shorter after a writer that finished first, a little longer after a kill.
    if [ "$rc" = 137 ]; then
        killed=$((killed + 1))
        eval "killed_$op=\$((killed_$op + 1))"
        eval "t_$op=\$((t * 21 / 20 + 1))"
    else
        finished=$((finished + 1))
        eval "t_$op=\$((t * 9 / 10 > 10 ? t * 9 / 10 : 10))"
    fi

    problem=
    ic=$(sqlite3 store.db 'PRAGMA integrity_check' 2>&1)
    [ "$ic" = ok ] || problem="integrity_check: $ic"
    "$TK" list >list.out 2>&1 || problem="$problem; tpmkeys list failed: $(head -3 list.out)"
    grep -q 'object=keep' list.out || problem="$problem; keep is missing from the list"
    after=$(present "$label")
    case "$after" in
        0) ;;
        1)
            s=$(cat "$label.src")
            rm -f "$label.pub.pem"
            if ! "$TK" export "$label" --public -o "$label.pub.pem" >/dev/null 2>&1 ||
                ! cmp -s "$label.pub.pem" "src$s.pub.pem"; then
                problem="$problem; $label is there but its public key is not the imported one"
            elif ! "$TK" sign "$label" -i data.txt -o "$label.sig" >/dev/null 2>sign.err ||
                ! openssl dgst -sha256 -verify "src$s.pub.pem" -signature "$label.sig" data.txt >/dev/null 2>&1; then
                problem="$problem; $label is there but does not sign: $(head -2 sign.err)"
            fi
            ;;
        *) problem="$problem; $label has $after rows" ;;
    esac
    if [ "$rc" = 137 ]; then
        if [ "$after" = "$before" ]; then old_state=$((old_state + 1)); else new_state=$((new_state + 1)); fi
    elif [ "$rc" != 0 ]; then
        problem="$problem; the $op exited $rc without being killed"
    elif [ "$after" = "$before" ]; then
        problem="$problem; the $op finished but changed nothing"
    fi
    if [ -n "$problem" ]; then
        bad=$((bad + 1))
        tk_fail "kill $i ($op $label after ${d} ms): ${problem#; }"
    fi
done
tk_log "$iterations writers: $killed killed ($killed_import imports, $killed_delete deletes; $old_state left the old state, $new_state the new one), $finished finished before the kill"
tk_eq "every kill left a whole store (old or new state)" 0 "$bad"
if [ "$killed" -gt 0 ]; then
    tk_pass "$killed of $iterations writers were killed mid-way"
else
    tk_fail "no writer was killed mid-way (the machine is too fast for the delays?)"
fi

tk_check "keep still signs" "$TK" sign keep -i data.txt -o keep.sig
tk_check "keep's signature verifies" openssl dgst -sha256 -verify keep.pub.pem -signature keep.sig data.txt
tk_check "final integrity_check" sqlite3 store.db 'PRAGMA integrity_check'
tk_eq "store integrity ok" ok "$TK_OUT"
tk_done
