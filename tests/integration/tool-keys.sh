#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Keys generated in the TPM: create-key, list, show, export --public, sign, decrypt,
# derive, checked against OpenSSL; PIN handling and error exit codes.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_need openssl cmp setsid tpm2_getcap tpm2_dictionarylockout
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN

umask 077
printf '123456' >user.pin
printf '87654321' >so.pin
printf '654321' >wrong.pin
echo "the quick brown fox jumps over the lazy TPM" >data.txt
echo "the quick brown fox jumps over the lazy TPM!" >other.txt
head -c 32 /dev/urandom >secret.bin

tk_check "init with PIN files" "$TK" init --so-pin-file so.pin --user-pin-file user.pin

algs="rsa2048 rsa3072 ecc-p256 ecc-p384"

# pin_opts LABEL: the PIN option for a key (its label ends in -pin or -nopin).
pin_opts() { case $1 in *-nopin) ;; *) echo "--pin-file user.pin" ;; esac; }

# ---------------------------------------------------------------- create
for alg in $algs; do
    for mode in nopin pin; do
        label=$alg-$mode
        if [ $mode = nopin ]; then opt=--no-pin; else opt="--pin-file user.pin"; fi
        # shellcheck disable=SC2086
        tk_check "create-key $label" "$TK" create-key --label "$label" --algorithm "$alg" $opt
        tk_match "$label: prints its PKCS#11 URI" "^pkcs11:token=tpmkeys;object=$label;type=private\$"
        tk_match "$label: prints its provider URI" "^tpmkeys:object=$label\$"
    done
done

# ---------------------------------------------------------------- list / show / export
tk_check "list" "$TK" list
list=$TK_OUT
for alg in $algs; do
    for mode in nopin pin; do
        label=$alg-$mode
        tk_match "list shows pkcs11 URI of $label" "pkcs11:token=tpmkeys;object=$label;type=private" "$list"
        tk_match "list shows provider URI of $label" "tpmkeys:object=$label([^-a-z0-9]|\$)" "$list"
    done
done

# OpenSSL's description of each algorithm's public key.
pub_text() {
    case $1 in
        rsa2048) echo 'Public-Key: \(2048 bit\)' ;;
        rsa3072) echo 'Public-Key: \(3072 bit\)' ;;
        ecc-p256) echo 'NIST CURVE: P-256' ;;
        ecc-p384) echo 'NIST CURVE: P-384' ;;
    esac
}

for alg in $algs; do
    for mode in nopin pin; do
        label=$alg-$mode
        tk_check "show $label" "$TK" show "$label"
        tk_match "show $label names the key" "$label"
        tk_match "show $label names the algorithm" "$alg"
        tk_check "export $label --public" "$TK" export "$label" --public -o "$label.pub.pem"
        tk_check "$label.pub.pem is a public key" openssl pkey -pubin -in "$label.pub.pem" -noout -text
        tk_match "$label.pub.pem has the right size/curve" "$(pub_text "$alg")"
    done
done

# export --public without -o writes PEM to stdout.
tk_check "export --public to stdout" "$TK" export ecc-p256-nopin --public
tk_eq "stdout export equals the file export" "$(cat ecc-p256-nopin.pub.pem)" "$TK_OUT"

# ---------------------------------------------------------------- sign
# sign_verify LABEL HASH [--pss]
sign_verify() {
    local label=$1 hash=$2 pss=${3:-} sig=$1.$2${3:-}.sig
    local vopts=()
    [ -z "$pss" ] || vopts=(-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest)
    # shellcheck disable=SC2046
    tk_check "sign $label $hash $pss" "$TK" sign "$label" -i data.txt -o "$sig" --hash "$hash" \
        $pss $(pin_opts "$label") || return
    tk_check "openssl verifies $label $hash $pss" openssl dgst "-$hash" -verify "$label.pub.pem" \
        "${vopts[@]}" -signature "$sig" data.txt
    tk_match "Verified OK ($label $hash $pss)" '^Verified OK$'
    tk_check_not "signature of other data does not verify ($label $hash $pss)" \
        openssl dgst "-$hash" -verify "$label.pub.pem" "${vopts[@]}" -signature "$sig" other.txt
}

for alg in $algs; do
    for mode in nopin pin; do
        sign_verify "$alg-$mode" sha256
        case $alg in
            rsa*) sign_verify "$alg-$mode" sha256 --pss ;;
            ecc-p384) sign_verify "$alg-$mode" sha384 ;;
        esac
    done
done
sign_verify rsa2048-nopin sha512
sign_verify rsa3072-pin sha384 --pss

# A signature from one key does not verify under another.
tk_check_not "rsa2048-nopin's signature fails under rsa2048-pin's key" \
    openssl dgst -sha256 -verify rsa2048-pin.pub.pem -signature rsa2048-nopin.sha256.sig data.txt

# ECDSA signatures are fresh each time (random k): two signatures of the same data differ.
"$TK" sign ecc-p256-nopin -i data.txt -o again.sig >/dev/null 2>&1
if cmp -s again.sig ecc-p256-nopin.sha256.sig; then
    tk_fail "two ECDSA signatures differ"
else
    tk_pass "two ECDSA signatures differ"
fi

# ---------------------------------------------------------------- decrypt (RSA)
for label in rsa2048-nopin rsa2048-pin rsa3072-nopin; do
    tk_check "encrypt to $label (OAEP SHA-256)" openssl pkeyutl -encrypt -pubin -inkey "$label.pub.pem" \
        -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 \
        -in secret.bin -out "$label.oaep"
    # shellcheck disable=SC2046
    tk_check "decrypt $label --oaep --hash sha256" "$TK" decrypt "$label" -i "$label.oaep" \
        -o "$label.oaep.out" --oaep --hash sha256 $(pin_opts "$label")
    tk_check "OAEP plaintext matches ($label)" cmp secret.bin "$label.oaep.out"

    tk_check "encrypt to $label (PKCS#1 v1.5)" openssl pkeyutl -encrypt -pubin -inkey "$label.pub.pem" \
        -pkeyopt rsa_padding_mode:pkcs1 -in secret.bin -out "$label.pkcs1"
    # shellcheck disable=SC2046
    tk_check "decrypt $label --pkcs1" "$TK" decrypt "$label" -i "$label.pkcs1" \
        -o "$label.pkcs1.out" --pkcs1 $(pin_opts "$label")
    tk_check "PKCS#1 plaintext matches ($label)" cmp secret.bin "$label.pkcs1.out"
done
tk_check "encrypt to rsa2048-nopin (OAEP SHA-1)" openssl pkeyutl -encrypt -pubin -inkey rsa2048-nopin.pub.pem \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 \
    -in secret.bin -out sha1.oaep
tk_check "decrypt --oaep --hash sha1" "$TK" decrypt rsa2048-nopin -i sha1.oaep -o sha1.out --oaep --hash sha1
tk_check "OAEP SHA-1 plaintext matches" cmp secret.bin sha1.out
tk_check_not "a ciphertext for another key does not decrypt" \
    "$TK" decrypt rsa3072-nopin -i rsa2048-nopin.oaep -o wrong.out --oaep --hash sha256

# ---------------------------------------------------------------- derive (ECDH)
# derive_check LABEL CURVE
derive_check() {
    local label=$1 curve=$2 len=$3
    tk_check "peer key on $curve" openssl genpkey -algorithm EC -pkeyopt "ec_paramgen_curve:$curve" \
        -out "$label.peer.pem" || return
    openssl pkey -in "$label.peer.pem" -pubout -out "$label.peer.pub.pem"
    # shellcheck disable=SC2046
    tk_check "derive $label" "$TK" derive "$label" --peer "$label.peer.pub.pem" -o "$label.z" \
        $(pin_opts "$label") || return
    tk_check "openssl derives on the peer side ($label)" openssl pkeyutl -derive \
        -inkey "$label.peer.pem" -peerkey "$label.pub.pem" -out "$label.z.ossl"
    tk_check "shared secrets are equal ($label)" cmp "$label.z" "$label.z.ossl"
    tk_eq "shared secret length ($label)" "$len" "$(stat -c %s "$label.z")"
}
derive_check ecc-p256-nopin P-256 32
derive_check ecc-p256-pin P-256 32
derive_check ecc-p384-nopin P-384 48
tk_expect_fail '*' "derive with a peer on another curve fails" \
    "$TK" derive ecc-p256-nopin --peer ecc-p384-nopin.peer.pub.pem -o bad.z

# ---------------------------------------------------------------- PINs
tk_expect_fail 5 "wrong PIN is refused" \
    "$TK" sign rsa2048-pin -i data.txt -o bad.sig --pin-file wrong.pin
tk_match "message says PIN incorrect" 'PIN incorrect'
tk_check "the right PIN still works after a wrong one" \
    "$TK" sign rsa2048-pin -i data.txt -o ok.sig --pin-file user.pin
tk_expect_fail 5 "PIN key without any PIN source (no terminal)" \
    setsid -w "$TK" sign ecc-p256-pin -i data.txt -o nopin.sig
tk_imatch "message asks for a PIN" 'pin'
tk_check "PIN from TPMKEYS_PIN" env TPMKEYS_PIN=123456 "$TK" sign ecc-p256-pin -i data.txt -o env.sig
tk_check "TPMKEYS_PIN signature verifies" openssl dgst -sha256 -verify ecc-p256-pin.pub.pem \
    -signature env.sig data.txt
tk_expect_fail 5 "wrong PIN from TPMKEYS_PIN is refused" \
    env TPMKEYS_PIN=000000 "$TK" sign ecc-p256-pin -i data.txt -o env-bad.sig
tk_check "a no-PIN key needs no PIN" setsid -w "$TK" sign ecc-p256-nopin -i data.txt -o np.sig

# ---------------------------------------------------------------- PIN tries
# Wrong PINs are counted by the TPM (DA-protected seal objects) and per token: five
# wrong PINs lock that token only.  A long DA recovery time keeps the TPM's counter
# still while it is read.
da_counter() {
    tpm2_getcap properties-variable 2>/dev/null | awk '$1 == "TPM2_PT_LOCKOUT_COUNTER:" { print $2 }'
}
printf '111111' >other.pin
tk_check "slow DA recovery for counting" tpm2_dictionarylockout --setup-parameters \
    --max-tries=1000 --recovery-time=1000 --lockout-recovery-time=1
tk_check "a second token" "$TK" --token other init --user-pin-file other.pin
tk_check "a PIN key in it" "$TK" --token other create-key --label o --algorithm ecc-p256 --pin-file other.pin
tk_match "its URI names the token" '^pkcs11:token=other;object=o;type=private$'
c0=$(da_counter)
tk_expect_fail 5 "wrong PIN on token other" "$TK" --token other sign o -i data.txt -o o.sig --pin-file wrong.pin
tk_eq "the TPM counted the wrong PIN" "$((c0 + 1))" "$(($(da_counter)))"
for i in 2 3 4 5; do
    tk_expect_fail 5 "wrong PIN #$i on token other" "$TK" --token other sign o -i data.txt -o o.sig \
        --pin-file wrong.pin
done
tk_expect_fail 5 "token other is locked: even the right PIN is refused" \
    "$TK" --token other sign o -i data.txt -o o.sig --pin-file other.pin
tk_imatch "message says locked" 'lock'
tk_check "token tpmkeys is not locked by token other's wrong PINs" \
    "$TK" sign rsa2048-pin -i data.txt -o after-lock.sig --pin-file user.pin
tk_check "its signature verifies" openssl dgst -sha256 -verify rsa2048-pin.pub.pem \
    -signature after-lock.sig data.txt
tk_check "no-PIN keys are not affected" "$TK" sign ecc-p256-nopin -i data.txt -o after-lock2.sig
tpm2_dictionarylockout --setup-parameters --max-tries=1000 --recovery-time=1 \
    --lockout-recovery-time=1 >/dev/null 2>&1

# ---------------------------------------------------------------- errors
tk_expect_fail 4 "duplicate label" "$TK" create-key --label ecc-p256-nopin --algorithm ecc-p256 --no-pin
tk_match "message names the label" 'ecc-p256-nopin'
tk_expect_fail '2|9' "unknown algorithm" "$TK" create-key --label x --algorithm dsa1024 --no-pin
tk_match "message names the algorithm" 'dsa1024'
tk_expect_fail 3 "show of an unknown label" "$TK" show no-such-key
tk_expect_fail 3 "sign with an unknown label" "$TK" sign no-such-key -i data.txt -o x.sig

tk_check "create a key to delete" "$TK" create-key --label doomed --algorithm ecc-p256 --no-pin
tk_check "delete it" "$TK" delete doomed
tk_expect_fail 3 "show after delete" "$TK" show doomed
tk_match "message names the label" 'doomed'
tk_expect_fail 3 "delete again" "$TK" delete doomed
tk_check "list after delete" "$TK" list
tk_nomatch "deleted key is gone from the list" 'object=doomed' "$TK_OUT"
tk_match "other keys are still listed" 'object=rsa2048-nopin' "$TK_OUT"

# No core file of a process that holds a PIN: the tool sets its core limit to 0 first.
# (It waits on a FIFO for the PIN, so its limits can be read meanwhile.)
mkfifo pin.fifo
# Started with a core limit of 1 KiB where the hard limit allows, so that 0 is the tool's.
(ulimit -S -c 1 2>/dev/null; exec "$TK" sign rsa2048-pin -i data.txt -o fifo.sig \
    --pin-file pin.fifo) >fifo.out 2>&1 &
fifo_pid=$!
tk_track_pid "$fifo_pid"
limits=
for _ in $(seq 1 100); do
    # Once the tool runs (not the subshell before its exec) and has set its limit.
    case $(cat "/proc/$fifo_pid/comm" 2>/dev/null) in *tpmkeys*)
        limits=$(grep 'Max core file size' "/proc/$fifo_pid/limits" 2>/dev/null)
        case $limits in *' 0 '*' 0 '*) break ;; esac ;;
    esac
    sleep 0.05
done
cat user.pin >pin.fifo
wait "$fifo_pid"
fifo_rc=$?
if [ "$(head -c 4 "$TK" | od -An -c | tr -d ' ')" = '177ELF' ]; then
    tk_match "the tool runs with a core-file limit of 0" '^Max core file size +0 +0 ' "$limits"
else
    tk_log "the tool runs through a wrapper ($TK, e.g. valgrind): its limits are not its own"
fi
tk_eq "and signs with the PIN it read from the FIFO" 0 "$fifo_rc"

tk_done
