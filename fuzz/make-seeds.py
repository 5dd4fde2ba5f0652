#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
"""Write the seed corpora of fuzz/corpus/ (run once by hand; the result is committed).

Key files come from the openssl CLI and ssh-keygen, TSS2 keys and TPM structures from
tests/data/, the binary inputs of the store-row and PKCS#11 harnesses from the decoders
described at the top of fuzz_storerows.c and fuzz_pkcs11.c.  Usage: fuzz/make-seeds.py
(from the source top; needs openssl and ssh-keygen)."""
import base64, os, shutil, struct, subprocess, sys, tempfile

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(top, "fuzz", "corpus")
data = os.path.join(top, "tests", "data")
PASS = "fuzzpass"


def put(fuzzer, name, blob):
    d = os.path.join(out, fuzzer)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


def run(*args):
    return subprocess.run(args, check=True, capture_output=True).stdout


def pem_body(pem):
    lines = [l for l in pem.decode().splitlines() if l and not l.startswith("-----")]
    return base64.b64decode("".join(lines))


def keyfiles(tmp):
    k = lambda n: os.path.join(tmp, n)
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", k("rsa.pem"))
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", k("ec.pem"))
    run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", k("ec384.pem"))
    put("keyfile", "rsa1024-pkcs8.pem", open(k("rsa.pem"), "rb").read())
    put("keyfile", "rsa1024-pkcs1.pem", run("openssl", "pkey", "-in", k("rsa.pem"), "-traditional"))
    put("keyfile", "rsa1024-pkcs1.der", run("openssl", "rsa", "-in", k("rsa.pem"), "-outform", "DER", "-traditional"))
    put("keyfile", "ec256-pkcs8.der", run("openssl", "pkey", "-in", k("ec.pem"), "-outform", "DER"))
    put("keyfile", "ec256-sec1.pem", run("openssl", "ec", "-in", k("ec.pem")))
    put("keyfile", "ec256-sec1.der", run("openssl", "ec", "-in", k("ec.pem"), "-outform", "DER"))
    put("keyfile", "ec384-pkcs8.pem", open(k("ec384.pem"), "rb").read())
    # Encrypted, with a cheap KDF so that the fuzzer stays fast.
    put("keyfile", "ec256-pkcs8-aes.pem", run("openssl", "pkcs8", "-topk8", "-in", k("ec.pem"), "-v2", "aes-128-cbc",
                                              "-iter", "1", "-passout", "pass:" + PASS))
    put("keyfile", "ec256-pkcs8-aes.der", run("openssl", "pkcs8", "-topk8", "-in", k("ec.pem"), "-v2", "aes-128-cbc",
                                              "-iter", "1", "-passout", "pass:" + PASS, "-outform", "DER"))
    put("keyfile", "rsa1024-trad-aes.pem", run("openssl", "rsa", "-in", k("rsa.pem"), "-traditional", "-aes128",
                                               "-passout", "pass:" + PASS))
    put("keyfile", "ec256-pubkey.pem", run("openssl", "pkey", "-in", k("ec.pem"), "-pubout"))
    put("keyfile", "ed25519.pem", run("openssl", "genpkey", "-algorithm", "ED25519"))
    put("keyfile", "truncated.pem", open(k("ec.pem"), "rb").read()[:120])
    if shutil.which("ssh-keygen"):
        for t, bits in (("ecdsa", "256"), ("rsa", "1024")):
            f = k("ssh-" + t)
            run("ssh-keygen", "-q", "-t", t, "-b", bits, "-N", "", "-C", "fuzz", "-f", f)
            put("keyfile", "openssh-%s.pem" % t, open(f, "rb").read())
    put("keyfile", "tss2.pem", open(os.path.join(data, "tss2-tpm2openssl-ec-noauth.pem"), "rb").read())


def der_items(b, off=0, end=None):
    """(tag, start of value, length) of the DER elements in b[off:end]."""
    end = len(b) if end is None else end
    while off < end:
        tag, n = b[off], b[off + 1]
        off += 2
        if n & 0x80:
            k = n & 0x7f
            n = int.from_bytes(b[off:off + k], "big")
            off += k
        yield tag, off, n
        off += n


def tss2(tmp):
    for name in ("tss2-tpm2openssl-ec-noauth", "tss2-tpm2openssl-rsa-auth", "tss2-tpm2tools-ec-persistent"):
        pem = open(os.path.join(data, name + ".pem"), "rb").read()
        der = pem_body(pem)
        put("tss2key", name + ".pem", pem)
        put("tss2key", name + ".der", der)
        # The blobs inside (the last two OCTET STRINGs) for the TPM-structure harness.
        _, start, n = next(der_items(der))
        octets = [der[s:s + l] for t, s, l in der_items(der, start, start + n) if t == 0x04]
        put("tpmpublic", name + "-pub", b"\x00" + octets[-2])
        put("tpmpublic", name + "-priv", b"\x01" + octets[-1])
    put("tss2key", "truncated.der", der[:60])
    put("tss2key", "wrong-armour.pem", pem.replace(b"TSS2 PRIVATE KEY", b"TSS2 PUBLIC KEY"))
    for f in ("swtpm-sign-ecc256.pub", "swtpm-sign-rsa2048.pub"):
        put("tpmpublic", f, b"\x00" + open(os.path.join(data, f), "rb").read())
    for f in ("swtpm-sign-ecc256.sig", "swtpm-sign-rsa2048.sig"):
        put("tpmpublic", f, b"\x02" + open(os.path.join(data, f), "rb").read())
    for f in ("swtpm-srk-ecc.pub", "swtpm-primary-rsa.pub"):
        put("tpmpublic", "parent-" + f, b"\x03" + open(os.path.join(data, f), "rb").read())


def uris():
    for i, u in enumerate([
        "tpmkeys:object=web", "tpmkeys:object=mail;type=cert", "tpmkeys:token=ops;object=db;type=private",
        "tpmkeys:token=tpmkeys;object=web;type=public", "tpmkeys:id=web", "tpmkeys:id=%6d%61%69%6c;object=mail",
        "tpmkeys:token=ops?pin-value=123456", "tpmkeys:object=db?pin-source=file:/dev/null",
        "tpmkeys:object=%00", "tpmkeys:object=web?pin-value=1&pin-value=2", "tpmkeys:", "tpmkeys:type=cert",
        "tpmkeys:object=x;color=blue", "handle:0x81000001", "handle:0x81000002?pass", "handle:0x40000001",
        "handle:2164260865",
    ]):
        put("uri", "uri-%02d" % i, u)


def storerows():
    u16 = lambda v: struct.pack(">H", v)
    seeds = {
        "none": b"",
        "key-pub-flip": b"\x00\x04\x06\x01" + u16(0x10) + u16(0xffff) + b"\x55",
        "key-pub-cut": b"\x00\x04\x06\x00" + u16(0xffff) + u16(40),
        "key-alg": b"\x08\x03\x02\x07",
        "key-label-blob": b"\x00\x01\x05" + u16(3) + b"abc",
        "key-parent": b"\x10\x06\x01" + struct.pack(">Q", 0x40000001),
        "key-auth-salt": b"\x00\x07\x02\x01\x00\x08\x04\x02xx",
        "token-seal": b"\x01\x01\x05" + u16(3) + b"\x00\x01\x02",
        "token-fails": b"\x09\x05\x02\xff",
        "meta-id": b"\x02\x00\x04\x05abcde",
        "copy-key": b"\x03\x01\x04\x03web",
        "version": b"\x04\x00",
        "app-id": b"\x0c\x81" + struct.pack(">I", 0x12345678),
        "null-priv": b"\x00\x05\x00",
        "object-cert-cut": b"\x0a\x04\x05" + u16(10) + bytes(10),
        "object-class": b"\x1a\x01\x02\x09",
        "object-private": b"\x2a\x07\x02\x05",
    }
    for name, blob in seeds.items():
        put("storerows", name, blob)


# Indexes into the tables of fuzz_pkcs11.c.
A = dict(CLASS=0, TOKEN=1, PRIVATE=2, LABEL=3, VALUE=5, CERTIFICATE_TYPE=7, KEY_TYPE=13, ID=15, SENSITIVE=16,
         SIGN=21, MODULUS=28, PUBLIC_EXPONENT=30, EXTRACTABLE=39, EC_PARAMS=47, EC_POINT=48)
U = dict(DATA=0, CERTIFICATE=1, PUBLIC_KEY=2, PRIVATE_KEY=3, SECRET_KEY=4, RSA=5, EC=6, X_509=9)
P = dict(cert=0, ec_params=1, ec_point=2, modulus=3, exponent=4, web=5, mail=6)


def t_bool(a, v): return bytes([A[a], 0, 1 if v else 0])
def t_ulong(a, v): return bytes([A[a], 1, U[v]])
def t_raw(a, v): return bytes([A[a], 2, len(v)]) + v
def t_pool(a, v): return bytes([A[a], 4, P[v]])
def tmpl(*attrs): return bytes([len(attrs)]) + b"".join(attrs)
def create(*attrs): return b"\x00" + tmpl(*attrs)
def find(max_=4, *attrs): return b"\x01" + bytes([max_ << 1]) + tmpl(*attrs)
def get(handle, *q): return b"\x02" + bytes([len(q)]) + b"".join(bytes([A[a], n]) for a, n in q) + bytes([handle])


def pkcs11():
    rw0 = b"\x00"
    seeds = {
        "find-all": rw0 + find(4),
        "find-get": rw0 + find(4) + b"\x02" + bytes([3, A["CLASS"], 8, A["LABEL"], 0x21, A["VALUE"], 64, 0]),
        "find-private": rw0 + find(2, t_ulong("CLASS", "PRIVATE_KEY")) + get(0, ("VALUE", 66), ("EC_POINT", 80)),
        "ro-other-slot": b"\x03" + find(4) + get(1, ("ID", 16), ("LABEL", 32)),
        "cert-session": rw0 + create(t_ulong("CLASS", "CERTIFICATE"), t_bool("TOKEN", False), t_pool("VALUE", "cert")),
        "cert-token": rw0 + create(t_ulong("CLASS", "CERTIFICATE"), t_bool("TOKEN", True), t_pool("VALUE", "cert"),
                                   t_pool("ID", "web")),
        "data": rw0 + create(t_ulong("CLASS", "DATA"), t_raw("VALUE", b"hello"), t_raw("LABEL", b"d")) + find(4),
        "ec-public": rw0 + create(t_ulong("CLASS", "PUBLIC_KEY"), t_ulong("KEY_TYPE", "EC"),
                                  t_pool("EC_PARAMS", "ec_params"), t_pool("EC_POINT", "ec_point")) + get(0, ("EC_POINT", 80)),
        "rsa-public": rw0 + create(t_ulong("CLASS", "PUBLIC_KEY"), t_ulong("KEY_TYPE", "RSA"),
                                   t_pool("MODULUS", "modulus"), t_pool("PUBLIC_EXPONENT", "exponent")),
        "ec-private-session": rw0 + create(t_ulong("CLASS", "PRIVATE_KEY"), t_ulong("KEY_TYPE", "EC"),
                                           t_bool("PRIVATE", False), t_pool("EC_PARAMS", "ec_params"),
                                           t_raw("VALUE", bytes(range(1, 33)))),
        "secret": rw0 + create(t_ulong("CLASS", "SECRET_KEY"), t_raw("VALUE", b"0123456789abcdef"),
                               t_bool("SENSITIVE", True)) + get(0, ("VALUE", 16)),
        "destroy": rw0 + find(4) + b"\x04\x00" + find(4),
        "set-label": rw0 + find(4) + b"\x03\x00" + tmpl(t_raw("LABEL", b"renamed")) + find(4, t_raw("LABEL", b"renamed")),
        "size-reopen": rw0 + find(4) + b"\x05\x00" + b"\x06\x02" + find(4),
    }
    for name, blob in seeds.items():
        put("pkcs11", name, blob)


def main():
    # Inputs that once crashed a fuzzer (regress-*) are kept; everything else is rewritten.
    for root, _, files in os.walk(out):
        for f in files:
            if not f.startswith("regress-"):
                os.unlink(os.path.join(root, f))
    with tempfile.TemporaryDirectory() as tmp:
        keyfiles(tmp)
        tss2(tmp)
    uris()
    storerows()
    pkcs11()


if __name__ == "__main__":
    sys.exit(main())
