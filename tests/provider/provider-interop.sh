#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Key files shared with Debian's tpm2-openssl (a peer provider also called "tpm2", kept in
# its own OPENSSL_MODULES folder): keys it generates load and sign here, keys written by
# our provider load and sign there.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"  # make may run us with /bin/sh
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
. "$top_srcdir/tests/provider/prov-lib.sh"

tk_need_tool
tk_need openssl
PEER_MODULES=
for f in /usr/lib/*/ossl-modules/tpm2.so; do
    [ -f "$f" ] && PEER_MODULES=$(dirname "$f")
done
[ -n "$PEER_MODULES" ] || tk_skip "Debian's tpm2-openssl (ossl-modules/tpm2.so) is not installed"
OURS=$OPENSSL_MODULES
# shellcheck disable=SC2317  # called through tk_check
peer() { OPENSSL_MODULES=$PEER_MODULES "$@"; }

tk_swtpm_start
cd "$TK_TMP" || tk_die "cd $TK_TMP"
unset TPMKEYS_PIN
echo "one key file, two providers" >data.txt
openssl dgst -sha256 -binary data.txt >data.sha256
tk_check "init" "$TK" init

for alg in EC RSA RSA-PSS; do
    opts=(-pkeyopt group:P-256)
    [ $alg = EC ] || opts=(-pkeyopt bits:2048)
    # An RSA-PSS key is bound to one digest in the TPM (the peer has no default).
    [ $alg = RSA-PSS ] && opts+=(-pkeyopt digest:SHA256)
    tk_check "tpm2-openssl generates an $alg key" peer openssl genpkey "${P[@]}" -algorithm "$alg" \
        "${opts[@]}" -out "peer-$alg.pem"
    tk_check "tpm2-openssl gives its public key" peer openssl pkey "${P[@]}" -in "peer-$alg.pem" \
        -pubout -out "peer-$alg.pub.pem"
    if [ $alg = RSA-PSS ]; then
        # The peer makes RSA-PSS keys restricted: the TPM then signs only digests it made
        # itself (a hash ticket), and we hash in software.  A clear refusal, not a TPM code.
        tk_expect_fail '*' "a restricted tpm2-openssl RSA-PSS key is refused" openssl dgst \
            -sha256 "${P[@]}" -sign "peer-$alg.pem" -out "peer-$alg.sig" data.txt
        tk_imatch "says it is a restricted signing key" 'restricted signing key'
    else
        tk_check "our provider signs with the tpm2-openssl $alg key" openssl dgst -sha256 \
            "${P[@]}" -sign "peer-$alg.pem" -out "peer-$alg.sig" data.txt
        tk_check "signature verifies ($alg, peer key)" openssl dgst -sha256 \
            -verify "peer-$alg.pub.pem" -signature "peer-$alg.sig" data.txt
    fi

    tk_check "our provider generates an $alg key into the store" openssl genpkey "${P[@]}" \
        -algorithm "$alg" "${opts[@]}" -pkeyopt "tpmkeys-label:ours-$alg" -out "ours-$alg.pem"
    tk_check "our public key" openssl pkey "${P[@]}" -in "ours-$alg.pem" -pubout -out "ours-$alg.pub.pem"
    # pkeyutl: the peer's own dgst -sign fails on OpenSSL 3.0 ("missing private key", its
    # key manager hands the key to the default provider), whatever the key file.
    tk_check "tpm2-openssl signs with our $alg key file" peer openssl pkeyutl "${P[@]}" -sign \
        -inkey "ours-$alg.pem" -in data.sha256 -pkeyopt digest:sha256 -out "ours-$alg.sig"
    tk_check "signature verifies ($alg, our key)" openssl pkeyutl -verify -pubin \
        -inkey "ours-$alg.pub.pem" -in data.sha256 -pkeyopt digest:sha256 -sigfile "ours-$alg.sig"
done
tk_eq "our provider was ours all along" "$OURS" "$OPENSSL_MODULES"

tk_done
