/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * tpmkeys: the command-line door of the key store.  This file holds main(), the
 * global options, the command table with every --help text, and the one table that
 * turns library results into exit statuses.
 */
#include "config.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "tool.h"

/* ------------------------------------------------------------------ exit statuses */

static const unsigned char exit_codes[] = {
    [TK_OK] = EXIT_OK,
    [TK_ERR_NOMEM] = EXIT_ERROR,
    [TK_ERR_INVALID] = EXIT_BAD_INPUT,
    [TK_ERR_NOT_FOUND] = EXIT_NOT_FOUND,
    [TK_ERR_EXISTS] = EXIT_EXISTS,
    [TK_ERR_UNSUPPORTED] = EXIT_UNSUPPORTED,
    [TK_ERR_PASSPHRASE] = EXIT_AUTH,
    [TK_ERR_PIN_INCORRECT] = EXIT_AUTH,
    [TK_ERR_PIN_LOCKED] = EXIT_AUTH,
    [TK_ERR_PIN_REQUIRED] = EXIT_AUTH,
    [TK_ERR_NO_TPM] = EXIT_NO_TPM,
    [TK_ERR_TPM] = EXIT_TPM,
    [TK_ERR_TPM_FULL] = EXIT_TPM,
    [TK_ERR_STORE] = EXIT_STORE,
    [TK_ERR_READONLY] = EXIT_STORE,
    [TK_ERR_IO] = EXIT_ERROR,
    [TK_ERR_BUSY] = EXIT_STORE,
};

int tool_exit_code(tk_rc rc)
{
    if ((unsigned)rc < sizeof(exit_codes) / sizeof(exit_codes[0]) && (rc == TK_OK ||
                                                                      exit_codes[rc]))
        return exit_codes[rc];
    return EXIT_ERROR;
}

static const char exit_help[] =
    "Exit status:\n"
    "  0 success, 1 other error, 2 usage error, 3 not found, 4 already exists,\n"
    "  5 PIN incorrect, locked or required, or wrong passphrase, 6 no TPM reachable,\n"
    "  7 TPM error (also TPM full), 8 store error (damaged, busy, read-only),\n"
    "  9 unsupported algorithm or feature, 10 bad input file.\n";

/* ------------------------------------------------------------------ messages */

static void vmessage(const char *cmd, const char *kind, const char *fmt, va_list ap)
{
    fputs("tpmkeys: ", stderr);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    if (kind)
        fputs(kind, stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int tool_fail(const struct tool *t, tk_rc rc)
{
    const char *msg = tk_errmsg();
    fprintf(stderr, "tpmkeys: ");
    if (t && t->cmd)
        fprintf(stderr, "%s: ", t->cmd);
    fprintf(stderr, "%s\n", msg && *msg ? msg : tk_rc_name(rc));
    return tool_exit_code(rc);
}

int tool_usage(const struct tool *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tpmkeys: ", stderr);
    if (t && t->cmd)
        fprintf(stderr, "%s: ", t->cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (t && t->cmd)
        fprintf(stderr, " (see 'tpmkeys %s --help')\n", t->cmd);
    else
        fputs(" (see 'tpmkeys --help')\n", stderr);
    return EXIT_USAGE;
}

/* An abbreviated long option seen by tool_getopt(), for the message. */
static const char *abbreviated;

int tool_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    int idx = -1, c = getopt_long(argc, argv, shortopts, longopts, &idx);
    const struct option *o;
    const char *el;
    size_t n;

    abbreviated = NULL;
    if (c == -1 || c == '?' || c == ':' || idx < 0)
        return c;
    o = &longopts[idx];
    /* The element that named the option: the one before a separate value. */
    el = o->has_arg == required_argument && optind >= 2 && optarg == argv[optind - 1]
             ? argv[optind - 2]
             : argv[optind - 1];
    n = strlen(o->name);
    if (!strncmp(el, "--", 2) && !strncmp(el + 2, o->name, n) && (!el[2 + n] || el[2 + n] == '='))
        return c;
    abbreviated = el;
    optopt = 0;
    return '?';
}

/* glibc: optopt is 0 for an unknown long option, the option's value for a long option
 * given a value it does not take, and the character for a short option. */
int tool_bad_option(const struct tool *t, int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    bool is_long = !strncmp(arg, "--", 2);
    int namelen = (int)strcspn(arg, "=");

    if (abbreviated)
        return tool_usage(t, "unknown option '%.*s'", (int)strcspn(abbreviated, "="),
                          abbreviated);
    if (c == ':') {
        if (is_long)
            return tool_usage(t, "option '%.*s' needs a value", namelen, arg);
        return tool_usage(t, "option '-%c' needs a value", optopt);
    }
    if (optopt == 0)
        return tool_usage(t, "unknown option '%.*s'", namelen, arg);
    if (is_long && arg[namelen] == '=')
        return tool_usage(t, "option '%.*s' takes no value", namelen, arg);
    if (optopt > 32 && optopt < 127)
        return tool_usage(t, "unknown option '-%c'", optopt);
    return tool_usage(t, "unknown option");
}

int tool_no_more_args(const struct tool *t, int argc, char **argv, int first)
{
    if (first >= argc)
        return 0;
    return tool_usage(t, "unexpected argument '%s'", argv[first]);
}

void tool_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(NULL, "note: ", fmt, ap);
    va_end(ap);
}

void tool_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage(NULL, "warning: ", fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ the commands */

const struct command tool_commands[] = {
    { "init", cmd_init,
      "init [--user-pin-file FILE] [--so-pin-file FILE] [--owner-auth-file FILE]",
      "create the SRK, the store and the token (safe to run again)",
      "Makes sure the TPM has the storage root key (SRK) at 0x81000001, the store\n"
      "exists and the token exists.  Whatever is already there is left alone, so it is\n"
      "safe to run again; PINs are set only when the token does not have them yet.\n"
      "\n"
      "The user PIN comes from --user-pin-file, else a prompt (twice) when stdin is\n"
      "a terminal, else $TPMKEYS_PIN.  Without one the token gets no user PIN, and\n"
      "only keys made with --no-pin can be created until `tpmkeys init\n"
      "--user-pin-file FILE` sets one.\n"
      "\n"
      "Options:\n"
      "      --user-pin-file FILE    the token's user PIN\n"
      "      --so-pin-file FILE      the token's security-officer (SO) PIN; set it\n"
      "                              together with the first user PIN\n"
      "      --owner-auth-file FILE  the TPM owner password, when the owner hierarchy\n"
      "                              has one (only needed to create the SRK)\n"
      "A secret file holds the secret alone; one trailing newline is ignored.\n"
      "\n"
      "Example:\n"
      "  tpmkeys init --user-pin-file ~/.config/tpmkeys/pin\n" },
    { "create-key", cmd_create_key,
      "create-key --label LABEL [--algorithm ALG] [--import FILE [--passphrase-file FILE]]\n"
      "                  [--pin-file FILE | --no-pin] [--id HEX]",
      "generate a key in the TPM or import a key file",
      "Generates a key inside the TPM, or with --import wraps an existing private key\n"
      "for this TPM (TPM2_Import: the secret part is encrypted to the SRK before it\n"
      "leaves this process; FILE is left untouched).  Prints the key's names for the\n"
      "PKCS#11 module and for the OpenSSL provider.\n"
      "\n"
      "Without --no-pin the key is protected by the token's user PIN: from --pin-file,\n"
      "else $TPMKEYS_PIN, else a prompt when stdin is a terminal.\n"
      "\n"
      "Options:\n"
      "      --label LABEL           the key's name in the token (required, unique)\n"
      "      --algorithm ALG         rsa2048, rsa3072, rsa4096, ecc-p256 (default),\n"
      "                              ecc-p384 or ecc-p521; with --import it must match\n"
      "                              the key in FILE\n"
      "      --import FILE           a private key: PEM or DER (PKCS#1, SEC1, PKCS#8,\n"
      "                              encrypted PKCS#8), OpenSSH, or TSS2 PRIVATE KEY\n"
      "      --passphrase-file FILE  the passphrase of an encrypted FILE (else\n"
      "                              $TPMKEYS_PASSPHRASE, else a prompt)\n"
      "      --pin-file FILE         the token's user PIN\n"
      "      --no-pin                no PIN: whoever can read the store and reach the\n"
      "                              TPM can use the key (unattended services)\n"
      "      --id HEX                the PKCS#11 CKA_ID (default: SHA-1 of the public\n"
      "                              key)\n"
      "\n"
      "Examples:\n"
      "  tpmkeys create-key --label web --algorithm rsa3072 --no-pin\n"
      "  tpmkeys create-key --label ssh --import ~/.ssh/id_ecdsa --pin-file pin.txt\n" },
    { "list", cmd_list, "list",
      "list the keys with both of their names",
      "Prints one block per key (of the token given with --token, else of every\n"
      "token): label, algorithm, PIN or not, generated or imported, creation date,\n"
      "CKA_ID, and both names: the PKCS#11 URI (ssh, p11-kit, pkcs11-tool) and the\n"
      "provider URI (openssl -provider tpm2).  Does not need the TPM.\n"
      "\n"
      "Example:\n"
      "  tpmkeys list\n" },
    { "show", cmd_show, "show LABEL",
      "show one key in detail, with its public key",
      "Prints everything known about one key: the fields of `tpmkeys list`, the\n"
      "parent, the update time, the public key fingerprint, the certificate if one\n"
      "is stored, and the public key in PEM.  Does not need the TPM.\n"
      "\n"
      "Example:\n"
      "  tpmkeys show web\n" },
    { "delete", cmd_delete, "delete [--yes] LABEL",
      "delete a key for good",
      "Removes the key from the store.  Its TPM-wrapped private key exists only in\n"
      "the store, so the key is gone for good (files written earlier by `tpmkeys\n"
      "export --tss2` still load).  Asks first when stdin is a terminal.\n"
      "\n"
      "Options:\n"
      "  -y, --yes   do not ask\n"
      "\n"
      "Example:\n"
      "  tpmkeys delete old-web\n" },
    { "export", cmd_export,
      "export LABEL (--public | --tss2) [-o FILE] [--force] [--pin-file FILE]",
      "write the public key or a TSS2 PRIVATE KEY file",
      "Writes the public key (SubjectPublicKeyInfo PEM) or the key as a TSS2 PRIVATE\n"
      "KEY PEM file for this TPM's SRK: the format tpm2-openssl, openssl_tpm2_engine,\n"
      "ssh-tpm-agent and the tpmkeys provider load.  The file is useless without this\n"
      "TPM.  A PIN-protected key exported with --tss2 gets the user PIN as the file's\n"
      "password (the PIN comes from --pin-file, else $TPMKEYS_PIN, else a prompt).\n"
      "\n"
      "Options:\n"
      "      --public          the public key\n"
      "      --tss2            the TPM-wrapped key as TSS2 PRIVATE KEY\n"
      "  -o, --out FILE        write FILE (mode 0644 for --public, 0600 for --tss2)\n"
      "                        instead of stdout\n"
      "  -f, --force           replace an existing FILE\n"
      "      --pin-file FILE   the token's user PIN\n"
      "\n"
      "Examples:\n"
      "  tpmkeys export web --public -o web.pub.pem\n"
      "  tpmkeys export web --tss2 -o web.key.pem   # nginx: ssl_certificate_key\n" },
    { "set-cert", cmd_set_cert, "set-cert LABEL FILE",
      "store an X.509 certificate for a key",
      "Stores an X.509 certificate (PEM or DER; the first one of a PEM chain) with the\n"
      "key, where PKCS#11 applications and the provider find it.  A certificate whose\n"
      "public key is not the key's is refused.  A new certificate replaces the old.\n"
      "\n"
      "Example:\n"
      "  tpmkeys set-cert web web.crt\n" },
    { "sign", cmd_sign,
      "sign LABEL -i IN -o OUT [--hash ALG] [--pss] [--pin-file FILE]",
      "sign a file with a key",
      "Hashes IN in software and signs the digest with the key in the TPM: RSA\n"
      "PKCS#1 v1.5 (default) or PSS (salt length = digest length), ECDSA as a DER\n"
      "signature.  The signature is checked against the public key before it is\n"
      "written.  OUT is replaced if it exists.\n"
      "\n"
      "Options:\n"
      "  -i, --in FILE       the data to sign (- = stdin)\n"
      "  -o, --out FILE      the signature (- = stdout)\n"
      "      --hash ALG      sha1, sha256 (default), sha384 or sha512\n"
      "      --pss           RSA-PSS instead of PKCS#1 v1.5\n"
      "      --pin-file FILE the token's user PIN (for a key with a PIN)\n"
      "\n"
      "Example:\n"
      "  tpmkeys sign web -i data -o data.sig\n"
      "  openssl dgst -sha256 -verify web.pub.pem -signature data.sig data\n"
      "  (for --pss add -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest)\n" },
    { "decrypt", cmd_decrypt,
      "decrypt LABEL -i IN -o OUT [--oaep [--hash ALG] | --pkcs1] [--pin-file FILE]",
      "decrypt an RSA ciphertext",
      "Decrypts an RSA ciphertext with the key in the TPM and writes the plaintext\n"
      "to OUT with mode 0600.  Padding: OAEP (default; --hash picks its hash, also\n"
      "used for MGF1, default sha256, no label) or PKCS#1 v1.5 (--pkcs1).\n"
      "\n"
      "Options:\n"
      "  -i, --in FILE       the ciphertext (- = stdin)\n"
      "  -o, --out FILE      the plaintext (- = stdout)\n"
      "      --oaep          OAEP padding (default)\n"
      "      --hash ALG      OAEP hash: sha1, sha256 (default), sha384 or sha512\n"
      "      --pkcs1         PKCS#1 v1.5 padding\n"
      "      --pin-file FILE the token's user PIN (for a key with a PIN)\n"
      "\n"
      "Example:\n"
      "  openssl pkeyutl -encrypt -pubin -inkey web.pub.pem -in msg -out msg.enc \\\n"
      "      -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 \\\n"
      "      -pkeyopt rsa_mgf1_md:sha256\n"
      "  tpmkeys decrypt web -i msg.enc -o msg\n" },
    { "derive", cmd_derive, "derive LABEL --peer FILE -o OUT [--pin-file FILE]",
      "ECDH: derive a shared secret with an EC key",
      "Runs ECDH with the key in the TPM and a peer's public key (PEM or DER public\n"
      "key, or a certificate; same curve) and writes the shared secret, the raw x\n"
      "coordinate, to OUT with mode 0600.\n"
      "\n"
      "Options:\n"
      "      --peer FILE     the peer's public key\n"
      "  -o, --out FILE      the shared secret (- = stdout)\n"
      "      --pin-file FILE the token's user PIN (for a key with a PIN)\n"
      "\n"
      "Example:\n"
      "  tpmkeys derive ecdh-key --peer peer.pub.pem -o shared.bin\n" },
    { "doctor", cmd_doctor, "doctor",
      "check the TPM, the SRK and the store; say what to fix",
      "Runs every check and prints one line each: \"[ ok ]\", \"[warn]\" or \"[FAIL]\",\n"
      "with what to do about it.  Checks: the TCTI, the TPM device nodes, whether the\n"
      "TPM answers and what it is, the SRK at 0x81000001, the dictionary-attack\n"
      "state, the PCR banks (measured boot), and the store (path, permissions,\n"
      "schema, integrity, keys and tokens).  Exit status 0 when no check FAILs, else 1.\n"
      "\n"
      "Example:\n"
      "  tpmkeys doctor\n" },
    { NULL, NULL, NULL, NULL, NULL },
};

static const struct command *find_command(const char *name)
{
    for (const struct command *c = tool_commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

int tool_help(const struct tool *t)
{
    const struct command *c = find_command(t->cmd);
    if (!c)
        return EXIT_ERROR;
    printf("Usage: tpmkeys [GLOBAL OPTIONS] %s\n\n%s\nGlobal options: see 'tpmkeys "
           "--help'.\n\n%s",
           c->usage, c->help, exit_help);
    return EXIT_OK;
}

static void main_help(FILE *f)
{
    fputs("Usage: tpmkeys [--store PATH] [--tcti TCTI] [--token NAME] COMMAND [ARGS]\n"
          "       tpmkeys COMMAND --help   (or: tpmkeys help COMMAND)\n"
          "\n"
          "A TPM 2.0 key store: private keys live as TPM-wrapped blobs under the SRK at\n"
          "0x81000001, served to the PKCS#11 module and the OpenSSL provider \"tpm2\".\n"
          "\n"
          "Commands:\n",
          f);
    for (const struct command *c = tool_commands; c->name; c++)
        fprintf(f, "  %-11s %s\n", c->name, c->summary);
    fputs("\n"
          "Global options (before the command):\n"
          "  --store PATH   the store (default $TPMKEYS_STORE, else\n"
          "                 $XDG_DATA_HOME/tpmkeys/store.db, ~/.local/share/tpmkeys/store.db)\n"
          "  --tcti TCTI    how to reach the TPM, e.g. device:/dev/tpmrm0,\n"
          "                 swtpm:host=127.0.0.1,port=2321, tabrmd (default $TPMKEYS_TCTI,\n"
          "                 else /dev/tpmrm0, /dev/tpm0, ...)\n"
          "  --token NAME   the token (default \"" TK_DEFAULT_TOKEN "\")\n"
          "  -h, --help     this help\n"
          "  --version      the version\n"
          "\n"
          "Environment: TPMKEYS_STORE, TPMKEYS_TCTI, TPMKEYS_PIN, TPMKEYS_PASSPHRASE,\n"
          "TPMKEYS_LOG=error|warn|info|debug (add :syslog for syslog).\n"
          "\n",
          f);
    fputs(exit_help, f);
    fputs("\nSee tpmkeys(1).\n", f);
}

/* The global options; returns -1 to go on, else an exit status. */
static int global_options(struct tool *t, int argc, char **argv)
{
    enum { OPT_STORE = 256, OPT_TCTI, OPT_TOKEN, OPT_VERSION };
    static const struct option opts[] = {
        { "store", required_argument, NULL, OPT_STORE },
        { "tcti", required_argument, NULL, OPT_TCTI },
        { "token", required_argument, NULL, OPT_TOKEN },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, OPT_VERSION },
        { NULL, 0, NULL, 0 },
    };
    int c;

    opterr = 0;
    /* '+': stop at the command; its options are its own. */
    while ((c = tool_getopt(argc, argv, "+:h", opts)) != -1) {
        switch (c) {
        case OPT_STORE:
            if (!*optarg)
                return tool_usage(t, "--store needs a path");
            t->store = optarg;
            break;
        case OPT_TCTI:
            if (!*optarg)
                return tool_usage(t, "--tcti needs a TCTI string");
            t->tcti = optarg;
            break;
        case OPT_TOKEN:
            if (!*optarg || strlen(optarg) > 32)
                return tool_usage(t, "a token name has 1 to 32 characters");
            t->token = optarg;
            t->token_given = true;
            break;
        case 'h':
            main_help(stdout);
            return EXIT_OK;
        case OPT_VERSION:
            printf("tpmkeys %s\n", TPMKEYS_VERSION);
            return EXIT_OK;
        default:
            return tool_bad_option(t, c, argv);
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct tool t = { .token = TK_DEFAULT_TOKEN };
    const struct command *c;
    int rc;

    /* PINs and passphrases pass through this process's memory: no core file of it.
     * (The library leaves this to its host programs: it is their process.) */
    setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
    /* tss2 logs TPM error responses to stderr; tpmkeys reports them itself (and traces
     * with TPMKEYS_LOG).  An explicit TSS2_LOG still wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    if ((rc = global_options(&t, argc, argv)) >= 0)
        return rc;
    if (optind >= argc) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[optind], "help")) {
        if (optind + 1 >= argc) {
            main_help(stdout);
            return EXIT_OK;
        }
        if (optind + 2 < argc)
            return tool_usage(&t, "'help' takes one command name");
        if (!find_command(argv[optind + 1]))
            return tool_usage(&t, "unknown command '%s'", argv[optind + 1]);
        t.cmd = argv[optind + 1];
        return tool_help(&t);
    }
    c = find_command(argv[optind]);
    if (!c)
        return tool_usage(&t, "unknown command '%s'", argv[optind]);
    t.cmd = c->name;
    argv += optind;
    argc -= optind;
    optind = 0; /* a fresh getopt scan for the command's own options */
    rc = c->run(&t, argc, argv);
    tk_ks_close(t.ks);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tpmkeys: %s: writing to stdout failed\n", t.cmd);
        if (rc == EXIT_OK)
            rc = EXIT_ERROR;
    }
    return rc;
}
