#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# `tpmkeys create-key --import`: every private key file format users have, checked by
# signing in the TPM and verifying against the ORIGINAL file's public key; the source
# file is never changed; bad files and unsupported algorithms fail with their codes.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"

tk_need_tool
tk_need openssl ssh-keygen setsid
tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN TPMKEYS_PASSPHRASE

umask 077
printf '123456' >user.pin
printf 'correct horse battery' >pass.txt
printf 'wrong horse' >wrong.txt
echo "imported keys sign this" >data.txt
echo "and not this" >other.txt

tk_check "init" "$TK" init --user-pin-file user.pin

# ---------------------------------------------------------------- source files
# Each made by the usual tool; FILE.pub.pem is its public key as the source tool sees it.
gen() { "$@" >/dev/null 2>"$TK_TMP/gen.err" || tk_die "key generation failed: $* : $(cat "$TK_TMP/gen.err")"; }

gen openssl genrsa -traditional -out pkcs1.pem 2048
gen openssl ecparam -name prime256v1 -genkey -noout -out sec1.pem
gen openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out pkcs8-ec.pem
gen openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072 -out pkcs8-rsa.pem
gen openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out enc8.src
gen openssl pkcs8 -topk8 -in enc8.src -v2 aes-256-cbc -passout file:pass.txt -out enc8.pem
gen openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out enc8-env.src
gen openssl pkcs8 -topk8 -in enc8-env.src -v2 aes-128-cbc -passout file:pass.txt -out enc8-env.pem
gen openssl genrsa -traditional -aes256 -passout file:pass.txt -out trad-rsa.pem 2048
gen openssl ecparam -name secp384r1 -genkey -noout -out trad-ec.src
gen openssl ec -in trad-ec.src -aes256 -passout file:pass.txt -out trad-ec.pem
gen openssl genrsa -traditional -out pkcs1-der.src 2048
gen openssl rsa -in pkcs1-der.src -traditional -outform DER -out pkcs1.der
gen openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out pkcs8-der.src
gen openssl pkcs8 -topk8 -nocrypt -in pkcs8-der.src -outform DER -out pkcs8.der
gen ssh-keygen -q -t ecdsa -b 256 -N '' -C test -f id_ecdsa
gen ssh-keygen -q -t rsa -b 2048 -N '' -C test -f id_rsa

grep -q 'BEGIN RSA PRIVATE KEY' pkcs1.pem || tk_die "pkcs1.pem is not PKCS#1"
grep -q 'BEGIN EC PRIVATE KEY' sec1.pem || tk_die "sec1.pem is not SEC1"
grep -q 'BEGIN ENCRYPTED PRIVATE KEY' enc8.pem || tk_die "enc8.pem is not encrypted PKCS#8"
grep -q 'Proc-Type: 4,ENCRYPTED' trad-rsa.pem || tk_die "trad-rsa.pem is not traditional encrypted PEM"
grep -q 'BEGIN OPENSSH PRIVATE KEY' id_ecdsa || tk_die "id_ecdsa is not an OpenSSH key"

# Public keys from the originals (OpenSSH ones through ssh-keygen, not through us).
for f in pkcs1.pem sec1.pem pkcs8-ec.pem pkcs8-rsa.pem; do
    gen openssl pkey -in "$f" -pubout -out "$f.pub.pem"
done
for f in enc8.pem enc8-env.pem trad-rsa.pem trad-ec.pem; do
    gen openssl pkey -in "$f" -passin file:pass.txt -pubout -out "$f.pub.pem"
done
gen openssl pkey -inform DER -in pkcs1.der -pubout -out pkcs1.der.pub.pem
gen openssl pkey -inform DER -in pkcs8.der -pubout -out pkcs8.der.pub.pem
ssh-keygen -e -m PKCS8 -f id_ecdsa.pub >id_ecdsa.pub.pem || tk_die "ssh-keygen -e failed"
ssh-keygen -e -m PKCS8 -f id_rsa.pub >id_rsa.pub.pem || tk_die "ssh-keygen -e failed"

# Everything the scenario imports, with its sha256 now.
declare -A sum
for f in *.pem *.der id_ecdsa id_rsa; do sum[$f]=$(tk_sha256 "$f"); done

# ---------------------------------------------------------------- imports
# import_check LABEL FILE [tool options...]: import, sign, verify against FILE.pub.pem.
import_check() {
    local label=$1 file=$2
    shift 2
    tk_check "import $file as $label" "$TK" create-key --label "$label" --import "$file" "$@" || return
    tk_match "$label: prints its PKCS#11 URI" "^pkcs11:token=tpmkeys;object=$label;type=private\$"
    local pinopt=()
    case " $* " in *" --pin-file "*) pinopt=(--pin-file user.pin) ;; esac
    local hash=sha256
    tk_check "sign with $label" "$TK" sign "$label" -i data.txt -o "$label.sig" --hash $hash "${pinopt[@]}"
    tk_check "$label: signature verifies with the original public key" \
        openssl dgst -$hash -verify "$file.pub.pem" -signature "$label.sig" data.txt
    tk_check_not "$label: signature of other data does not verify" \
        openssl dgst -$hash -verify "$file.pub.pem" -signature "$label.sig" other.txt
    tk_check "$label: export --public" "$TK" export "$label" --public -o "$label.pub.pem"
    tk_eq "$label: exported public key equals the original's" \
        "$(openssl pkey -pubin -in "$file.pub.pem" -outform DER 2>&1 | sha256sum)" \
        "$(openssl pkey -pubin -in "$label.pub.pem" -outform DER 2>&1 | sha256sum)"
    tk_eq "$label: source file unchanged" "${sum[$file]}" "$(tk_sha256 "$file")"
}

import_check pkcs1 pkcs1.pem --no-pin
import_check sec1 sec1.pem --pin-file user.pin
import_check pkcs8-ec pkcs8-ec.pem --no-pin
import_check pkcs8-rsa pkcs8-rsa.pem --pin-file user.pin
import_check enc8 enc8.pem --passphrase-file pass.txt --no-pin
import_check trad-rsa trad-rsa.pem --passphrase-file pass.txt --no-pin
import_check trad-ec trad-ec.pem --passphrase-file pass.txt --pin-file user.pin
import_check pkcs1-der pkcs1.der --no-pin
import_check pkcs8-der pkcs8.der --no-pin
import_check ssh-ecdsa id_ecdsa --no-pin
import_check ssh-rsa id_rsa --pin-file user.pin

# Passphrase from the environment.
tk_check "import with TPMKEYS_PASSPHRASE" \
    env "TPMKEYS_PASSPHRASE=$(cat pass.txt)" "$TK" create-key --label enc8-env --import enc8-env.pem --no-pin
tk_check "sign with enc8-env" "$TK" sign enc8-env -i data.txt -o enc8-env.sig
tk_check "enc8-env: signature verifies with the original public key" \
    openssl dgst -sha256 -verify enc8-env.pem.pub.pem -signature enc8-env.sig data.txt

# ---------------------------------------------------------------- refusals
gen openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out enc8b.src
gen openssl pkcs8 -topk8 -in enc8b.src -v2 aes-256-cbc -passout file:pass.txt -out enc8b.pem
tk_expect_fail 5 "wrong passphrase" "$TK" create-key --label bad1 --import enc8b.pem \
    --passphrase-file wrong.txt --no-pin
tk_imatch "message says passphrase" 'passphrase'
tk_expect_fail 5 "wrong passphrase (traditional PEM)" "$TK" create-key --label bad2 --import trad-rsa.pem \
    --passphrase-file wrong.txt --no-pin
tk_expect_fail 5 "missing passphrase without a terminal" \
    setsid -w "$TK" create-key --label bad3 --import enc8b.pem --no-pin
tk_imatch "message says passphrase" 'passphrase'

head -c 300 pkcs1.pem >truncated.pem
head -c 1024 /dev/urandom >garbage.pem
: >empty.pem
{ echo '-----BEGIN PRIVATE KEY-----'; head -c 300 /dev/urandom | base64; echo '-----END PRIVATE KEY-----'; } >armoured-garbage.pem
for f in truncated.pem garbage.pem empty.pem armoured-garbage.pem; do
    tk_expect_fail 10 "bad input file $f" "$TK" create-key --label "bad-$f" --import "$f" --no-pin
    tk_match "message names $f" "$f"
done
tk_expect_fail 3 "missing file" "$TK" create-key --label bad-missing --import no-such-file.pem --no-pin

gen openssl genpkey -algorithm ed25519 -out ed25519.pem
gen openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -out dsa.params
gen openssl genpkey -paramfile dsa.params -out dsa.pem
gen ssh-keygen -q -t ed25519 -N '' -C test -f id_ed25519
tk_expect_fail 9 "Ed25519 is unsupported" "$TK" create-key --label bad-ed --import ed25519.pem --no-pin
tk_expect_fail 9 "DSA is unsupported" "$TK" create-key --label bad-dsa --import dsa.pem --no-pin
tk_expect_fail 9 "OpenSSH Ed25519 is unsupported" "$TK" create-key --label bad-ssh-ed --import id_ed25519 --no-pin

tk_expect_fail 4 "importing the same label twice" "$TK" create-key --label pkcs1 --import pkcs1.pem --no-pin
tk_eq "pkcs1.pem unchanged after the refused import" "${sum[pkcs1.pem]}" "$(tk_sha256 pkcs1.pem)"

# ---------------------------------------------------------------- list
tk_check "generate one key for contrast" "$TK" create-key --label generated --algorithm ecc-p256 --no-pin
tk_check "list" "$TK" list
list=$TK_OUT
# entry_of LABEL: the lines of the list about LABEL: from its first line (a table row
# or block starting with the label) to its "tpmkeys:object=LABEL" line.
entry_of() {
    printf '%s\n' "$list" | awk -v want="$1" '
        !on && ($1 == want || ($1 == "label:" && $2 == want)) { on = 1 }
        on { print }
        on && $1 == "tpmkeys:object=" want { exit }'
}
for label in pkcs1 sec1 pkcs8-ec pkcs8-rsa enc8 trad-rsa trad-ec pkcs1-der pkcs8-der ssh-ecdsa ssh-rsa enc8-env; do
    tk_match "list shows $label as imported" '(^|[^a-z])imported([^a-z]|$)' "$(entry_of "$label")"
done
tk_match "list shows the generated key as generated" '(^|[^a-z])generated([^a-z]|$)' "$(entry_of generated)"
tk_nomatch "... and not as imported" 'imported' "$(entry_of generated)"
for label in bad1 bad2 bad3 bad-ed bad-dsa bad-missing; do
    tk_nomatch "refused import $label left no key" "object=$label([^-a-z0-9]|\$)" "$list"
done

tk_done
