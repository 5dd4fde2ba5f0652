#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# OpenSSH with the PKCS#11 module against an sshd this test starts on 127.0.0.1:
# `ssh-keygen -D`, `ssh -I` (PIN through SSH_ASKPASS), ssh-agent + `ssh-add -s`, for an
# RSA key imported with `tpmkeys create-key --import` and an ECDSA key made with
# C_GenerateKeyPair (pkcs11-tool --keypairgen), plus a no-PIN key without any prompt.
. "${top_srcdir:-$(dirname "$0")/../..}/tests/lib.sh"
# An ASan build of the module cannot be loaded by these uninstrumented hosts (p11-kit,
# GnuTLS, ssh and their helpers start each other with their own environments); the
# plain build runs this scenario, and tests/pkcs11/p11-api.sh drives the module under ASan.
[ -z "$TK_ASAN_RUNTIME" ] || tk_skip "host programs cannot load an ASan-built module here"

tk_need ssh sshd ssh-keygen ssh-agent ssh-add pkcs11-tool
tk_need_tool
module=${TPMKEYS_PKCS11_MODULE:-$top_builddir/pkcs11/.libs/tpmkeys-pkcs11.so}
[ -f "$module" ] || tk_die "PKCS#11 module not built at $module"
module=$(readlink -f "$module")
sshd_bin=$(command -v sshd)
case "$sshd_bin" in /*) ;; *) tk_skip "sshd must be run by its absolute path" ;; esac
# sshd insists on its privilege-separation folder /run/sshd (made by the ssh service at
# boot).  When it is missing, sshd runs in a private mount namespace with its own /run.
sshd_wrap=()
if [ ! -d /run/sshd ]; then
    unshare -m true 2>/dev/null || tk_skip "/run/sshd is missing and unshare -m is not allowed"
    sshd_wrap=(unshare -m sh -c 'mount -t tmpfs -o mode=0755 tmpfs /run &&
        mkdir -m 0755 /run/sshd && exec "$0" "$@"')
fi

tk_swtpm_start
# ssh-agent keeps the module (and a TPM connection) open while ssh and the tool run.
tk_abrmd_start
export TSS2_LOG=${TSS2_LOG:-all+none}
D=$TK_TMP
user=$(id -un)

# ---------------------------------------------------------------- keys
printf '1234\n' >"$D/pin"
tk_check "tpmkeys init (user PIN)" "$TK" init --user-pin-file "$D/pin" --so-pin-file "$D/pin"
tk_check "an existing RSA ssh key" ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -C old-rsa -f "$D/id_rsa"
tk_check "tpmkeys create-key --import of it" "$TK" create-key --label ssh-rsa --id 11 \
    --import "$D/id_rsa" --pin-file "$D/pin"
tk_check "an ECDSA key through C_GenerateKeyPair" pkcs11-tool --module "$module" --login \
    --pin 1234 --keypairgen --key-type EC:prime256v1 --id 12 --label ssh-ec
tk_check "ssh-keygen -D lists the module's keys" ssh-keygen -D "$module"
keys=$TK_OUT
tk_match "the RSA key" '^ssh-rsa ' "$keys"
tk_match "the ECDSA key" '^ecdsa-sha2-nistp256 ' "$keys"
rsa_pub=$(printf '%s\n' "$keys" | grep '^ssh-rsa ' | cut -d' ' -f1,2)
ec_pub=$(printf '%s\n' "$keys" | grep '^ecdsa-sha2-nistp256 ' | cut -d' ' -f1,2)
tk_eq "the imported key is the original ssh key" "$(cut -d' ' -f1,2 "$D/id_rsa.pub")" "$rsa_pub"

# ---------------------------------------------------------------- sshd
ssh-keygen -q -t ed25519 -N '' -f "$D/host_key" || tk_die "no host key"
port=$(tk_free_port) || tk_die "no free port"
cat >"$D/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $D/host_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
LogLevel VERBOSE
EOF
: >"$D/authorized_keys"
"${sshd_wrap[@]}" "$sshd_bin" -D -e -f "$D/sshd_config" >"$D/sshd.log" 2>&1 &
sshd_pid=$!
tk_track_pid "$sshd_pid"
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    tk_alive "$sshd_pid" || tk_die "sshd did not start: $(tail -n 5 "$D/sshd.log")"
    sleep 0.1
done
tk_log "sshd pid $sshd_pid on 127.0.0.1:$port"

# The PIN reaches ssh and ssh-add through SSH_ASKPASS (no terminal here).
cat >"$D/askpass" <<EOF
#!/bin/sh
echo 1234 >>"$D/askpass.calls"
cat "$D/pin"
EOF
chmod 0700 "$D/askpass"
export SSH_ASKPASS=$D/askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0

# IdentitiesOnly would drop PKCS#11 keys not named by an IdentityFile; no agent unless asked.
ssh_opts=(-F none -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile="$D/known_hosts"
          -o BatchMode=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no
          -o ConnectTimeout=20)
only_key() { printf '%s\n' "$1" >"$D/authorized_keys"; }

# ---------------------------------------------------------------- ssh -I
only_key "$rsa_pub"
rm -f "$D/askpass.calls"
tk_check "ssh -I module, imported RSA key" ssh "${ssh_opts[@]}" -o IdentityAgent=none \
    -I "$module" "$user@127.0.0.1" echo rsa-via-pkcs11
tk_match "remote command ran" '^rsa-via-pkcs11$'
tk_check "the PIN was asked once, through SSH_ASKPASS" test -s "$D/askpass.calls"
only_key "$ec_pub"
tk_check "ssh -I module, C_GenerateKeyPair ECDSA key" ssh "${ssh_opts[@]}" -o IdentityAgent=none \
    -I "$module" "$user@127.0.0.1" echo ec-via-pkcs11
tk_match "remote command ran" '^ec-via-pkcs11$'
tk_check "PKCS11Provider in an ssh_config" ssh "${ssh_opts[@]}" -o IdentityAgent=none \
    -o PKCS11Provider="$module" "$user@127.0.0.1" echo via-config
tk_match "remote command ran" '^via-config$'
printf '0000\n' >"$D/pin"
tk_expect_fail 255 "a wrong PIN gets no login" ssh "${ssh_opts[@]}" -o IdentityAgent=none \
    -I "$module" "$user@127.0.0.1" echo must-not-run
tk_nomatch "... and runs nothing" 'must-not-run'
printf '1234\n' >"$D/pin"

# ---------------------------------------------------------------- no-PIN key, no prompt
tk_check "a no-PIN key in a service token" "$TK" --token svc init
tk_check "tpmkeys create-key --no-pin" "$TK" --token svc create-key --label svc-ec --no-pin --id 21
tk_check "ssh-keygen -D" ssh-keygen -D "$module"
svc_pub=$(printf '%s\n' "$TK_OUT" | grep ' svc-ec$' | cut -d' ' -f1,2)
tk_match "the service key is listed" '^ecdsa-sha2-nistp256 ' "$svc_pub"
only_key "$svc_pub"
rm -f "$D/askpass.calls"
tk_check "ssh -I with a no-PIN key, BatchMode" ssh "${ssh_opts[@]}" -o BatchMode=yes \
    -o IdentityAgent=none -I "$module" "$user@127.0.0.1" echo no-pin-key
tk_match "remote command ran" '^no-pin-key$'

# ---------------------------------------------------------------- ssh-agent
agent_sock=$D/agent.sock
ssh-agent -D -a "$agent_sock" -P "$module" >"$D/agent.log" 2>&1 &
agent_pid=$!
tk_track_pid "$agent_pid"
for _ in $(seq 1 50); do [ -S "$agent_sock" ] && break; sleep 0.1; done
export SSH_AUTH_SOCK=$agent_sock
tk_check "ssh-add -s module (PIN via SSH_ASKPASS)" ssh-add -s "$module"
tk_check "ssh-add -l" ssh-add -l
tk_match "agent holds the RSA key" '\(RSA\)'
tk_match "agent holds the ECDSA key" '\(ECDSA\)'
only_key "$rsa_pub"
tk_check "ssh through the agent, RSA" ssh "${ssh_opts[@]}" -o BatchMode=yes "$user@127.0.0.1" echo agent-rsa
tk_match "remote command ran" '^agent-rsa$'
only_key "$ec_pub"
tk_check "ssh through the agent, ECDSA" ssh "${ssh_opts[@]}" -o BatchMode=yes "$user@127.0.0.1" echo agent-ec
tk_match "remote command ran" '^agent-ec$'
tk_expect_fail '*' "ssh-agent refuses a module outside -P" ssh-add -s /usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so
tk_check "ssh-add -e module" ssh-add -e "$module"
tk_check "ssh-add -l after removal" sh -c 'ssh-add -l; test $? -eq 1'
unset SSH_AUTH_SOCK

# ---------------------------------------------------------------- p11-kit-proxy.so
proxy=$(pkg-config --variable=proxy_module p11-kit-1 2>/dev/null)
[ -n "$proxy" ] || proxy=/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so
confdir=$(pkg-config --variable=p11_module_configs p11-kit-1 2>/dev/null)
if [ -f "$proxy" ] && [ -n "$confdir" ] && command -v unshare >/dev/null &&
    unshare -m true 2>/dev/null; then
    # Our .module file, seen by p11-kit in a private mount namespace: the system's
    # configuration is not touched.
    mkdir -p "$D/modules"
    printf 'module: %s\ncritical: no\n' "$module" >"$D/modules/tpmkeys.module"
    only_key "$rsa_pub"
    tk_check "ssh -I p11-kit-proxy.so with the tpmkeys .module" unshare -m sh -c \
        'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$D/modules" "$confdir" \
        ssh "${ssh_opts[@]}" -o IdentityAgent=none -I "$proxy" "$user@127.0.0.1" echo via-proxy
    tk_match "remote command ran" '^via-proxy$'
else
    tk_log "p11-kit-proxy.so or mount namespaces unavailable: proxy check left out"
fi

tk_done
