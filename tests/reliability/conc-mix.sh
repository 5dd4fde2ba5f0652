#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Eight processes on one store and one TPM (through tpm2-abrmd) at the same time:
# three PKCS#11 signers (EC, RSA, and a PIN key after C_Login), three provider signers
# (one on a key the PKCS#11 door also uses) and two writers running `tpmkeys
# create-key` (generated and imported keys), `delete` and `list` in a loop.  For
# TK_CONC_SECONDS (15 s; TK_LONG=1: 60 s): no failed operation, every signature verified
# with the exported public key, the store lists exactly the keys created minus those
# deleted (the signers' keys are all there), and PRAGMA integrity_check says ok.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"
. "$top_srcdir/tests/reliability/conc-lib.sh"

tk_need_tool
tk_need dbus-daemon tpm2-abrmd openssl
SECONDS_RUN=${TK_CONC_SECONDS:-$(conc_pick 15 60)}
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
export TSS2_LOG=${TSS2_LOG:-all+none}

printf '1234' >user.pin
printf 'so-secret' >so.pin
tk_check "init with PINs" "$TK" init --user-pin-file user.pin --so-pin-file so.pin
for spec in p11ec:ecc-p256 p11rsa:rsa2048 provec:ecc-p384 provrsa:rsa3072; do
    tk_check "create-key ${spec%%:*}" "$TK" create-key --label "${spec%%:*}" \
        --algorithm "${spec#*:}" --no-pin
done
tk_check "create-key p11pin (PIN key)" "$TK" create-key --label p11pin --algorithm ecc-p256 \
    --pin-file user.pin
conc_pubkeys p11ec p11rsa provec provrsa p11pin
# Keys to import: the writer wraps software keys into the TPM (TPM2_Import).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out imp-ec.pem 2>/dev/null &&
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out imp-rsa.pem 2>/dev/null ||
    tk_die "openssl genpkey failed"
conc_labels >initial.labels
tk_abrmd_start

# writer NAME: create keys NAME-1, NAME-2 ... until the time is up, delete every second
# one again, list now and then.  Writes NAME.created, NAME.deleted, NAME.fails and
# NAME.errors (stderr of failed commands).
writer() {
    local name=$1 end=$2 i=0 label alg fails=0 lists=0 out
    : >"$name.created"
    : >"$name.deleted"
    while [ "$(date +%s)" -lt "$end" ]; do
        i=$((i + 1))
        label=$name-$i
        case $name:$((i % 4)) in
            w1:3) out=$("$TK" create-key --label "$label" --algorithm rsa2048 --no-pin 2>&1) ;;
            w1:*) out=$("$TK" create-key --label "$label" --algorithm ecc-p256 --no-pin 2>&1) ;;
            w2:1) out=$("$TK" create-key --label "$label" --import imp-rsa.pem --no-pin 2>&1) ;;
            w2:*) out=$("$TK" create-key --label "$label" --import imp-ec.pem --no-pin 2>&1) ;;
        esac
        if [ $? -eq 0 ]; then
            echo "$label" >>"$name.created"
        else
            fails=$((fails + 1))
            printf 'create-key %s: %s\n' "$label" "$out" >>"$name.errors"
        fi
        if [ $((i % 2)) -eq 0 ]; then
            label=$name-$((i - 1))
            if grep -qx "$label" "$name.created"; then
                if out=$("$TK" delete --yes "$label" 2>&1); then
                    echo "$label" >>"$name.deleted"
                else
                    fails=$((fails + 1))
                    printf 'delete %s: %s\n' "$label" "$out" >>"$name.errors"
                fi
            fi
        fi
        if [ $((i % 5)) -eq 0 ]; then
            lists=$((lists + 1))
            if ! out=$("$TK" list 2>&1) || ! grep -q '^label: *p11ec$' <<<"$out"; then
                fails=$((fails + 1))
                printf 'list: %s\n' "$out" >>"$name.errors"
            fi
        fi
    done
    echo "$fails" >"$name.fails"
    printf '%s: %d keys created, %d deleted, %d listings, %d failures\n' "$name" \
        "$(wc -l <"$name.created")" "$(wc -l <"$name.deleted")" "$lists" "$fails" >"$name.summary"
}

tk_log "8 processes for $SECONDS_RUN s"
end=$(($(date +%s) + SECONDS_RUN))
pids=()
names=()
start() {
    local name=$1
    shift
    "$@" >"$name.out" 2>"$name.err" &
    pids+=($!)
    names+=("$name")
}
start sign-p11ec "$CONC" p11-sign "$MODULE" tpmkeys p11ec "$SECONDS_RUN"
start sign-p11rsa "$CONC" p11-sign "$MODULE" tpmkeys p11rsa "$SECONDS_RUN"
start sign-p11pin env TK_CONC_PIN=1234 "$CONC" p11-sign "$MODULE" tpmkeys p11pin "$SECONDS_RUN"
start sign-provec "$CONC" prov-sign provec "$SECONDS_RUN"
start sign-provrsa "$CONC" prov-sign provrsa "$SECONDS_RUN"
start sign-prov-p11ec "$CONC" prov-sign p11ec "$SECONDS_RUN"
start writer-w1 writer w1 "$end"
start writer-w2 writer w2 "$end"
for p in "${pids[@]}"; do tk_track_pid "$p"; done

total_sigs=0
for n in "${!pids[@]}"; do
    wait "${pids[$n]}"
    rc=$?
    name=${names[$n]}
    case $name in
        sign-*)
            line=$(grep -E '^(p11|prov)-sign ' "$name.out")
            if [ "$rc" -eq 0 ] && [ -n "$line" ]; then
                tk_pass "$line"
            else
                tk_fail "$name (exit $rc): ${line:-no summary}"
                _tk_show output "$(grep -v '^$' "$name.out" "$name.err" | tail -n 20)"
            fi
            total_sigs=$((total_sigs + $(sed -nE 's/.*: ([0-9]+) signatures.*/\1/p' <<<"$line")))
            ;;
        writer-*)
            w=${name#writer-}
            if [ "$rc" -eq 0 ] && [ "$(cat "$w.fails" 2>/dev/null)" = 0 ]; then
                tk_pass "$(cat "$w.summary")"
            else
                tk_fail "$(cat "$w.summary" 2>/dev/null || echo "$name exit $rc")"
                _tk_show errors "$(tail -n 20 "$w.errors" 2>/dev/null)"
            fi
            ;;
    esac
done
tk_log "$total_sigs verified signatures in $SECONDS_RUN s by 6 signers"
created=$(cat w1.created w2.created | wc -l)
deleted=$(cat w1.deleted w2.deleted | wc -l)
tk_check "the writers created keys while the signers signed" test "$created" -ge 4

# Every key accounted for: the keys before, plus those created, minus those deleted.
sort -u initial.labels w1.created w2.created | grep -vxF -f <(cat w1.deleted w2.deleted) \
    >expected.labels
conc_labels >final.labels
tk_eq "keys listed = initial $(wc -l <initial.labels) + created $created - deleted $deleted" \
    "$(cat expected.labels)" "$(cat final.labels)"
for k in p11ec p11rsa p11pin provec provrsa; do
    grep -qx "$k" final.labels || tk_fail "signer key $k lost"
done
tk_pass "the signers' keys are all still there"
tk_check "tpmkeys doctor ran" "$TK" doctor
tk_match "PRAGMA integrity_check: ok" 'store integrity check: ok'
tk_check "p11ec still signs after the run" "$CONC" p11-sign "$MODULE" tpmkeys p11ec 0.1
tk_check "p11pin still signs after the run" \
    env TK_CONC_PIN=1234 "$CONC" p11-sign "$MODULE" tpmkeys p11pin 0.1

tk_done
