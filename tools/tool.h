/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The `tpmkeys` command: what the command files share.
 *
 * Every command is `int cmd_NAME(struct tool *t, int argc, char **argv)` with argv[0]
 * the command's name; it returns the process exit status.  Library failures become
 * exit statuses through tool_fail() (one table, tpmkeys.c); usage errors through
 * tool_usage().
 */
#ifndef TPMKEYS_TOOL_H
#define TPMKEYS_TOOL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>

#include <openssl/x509.h>

#include "tpmkeys.h"

#ifndef TPMKEYS_VERSION
#define TPMKEYS_VERSION PACKAGE_VERSION
#endif

/* Exit statuses (documented in --help and tpmkeys(1)). */
enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_NOT_FOUND = 3,
    EXIT_EXISTS = 4,
    EXIT_AUTH = 5,
    EXIT_NO_TPM = 6,
    EXIT_TPM = 7,
    EXIT_STORE = 8,
    EXIT_UNSUPPORTED = 9,
    EXIT_BAD_INPUT = 10,
};

struct tool {
    const char *store;   /* --store, NULL = TPMKEYS_STORE / default */
    const char *tcti;    /* --tcti, NULL = TPMKEYS_TCTI / default */
    const char *token;   /* --token, default TK_DEFAULT_TOKEN */
    bool token_given;    /* --token was on the command line */
    const char *cmd;     /* the command running, for messages */
    tk_ks *ks;           /* opened by tool_open() */
};

struct command {
    const char *name;
    int (*run)(struct tool *t, int argc, char **argv);
    const char *usage;   /* the synopsis after "tpmkeys NAME" */
    const char *summary; /* one line for `tpmkeys --help` */
    const char *help;    /* explanation, options and an example */
};

extern const struct command tool_commands[];

/* ------------------------------------------------------------------ tpmkeys.c */

/* The exit status for a library result. */
int tool_exit_code(tk_rc rc);
/* Print "tpmkeys: CMD: <tk_errmsg()>" and return the exit status for rc. */
int tool_fail(const struct tool *t, tk_rc rc);
/* A usage error: one line plus a hint, exit status 2. */
int tool_usage(const struct tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* getopt_long() without abbreviations ("--pin" is not "--pin-file"): an abbreviated
 * long option is returned as '?', like an unknown one. */
int tool_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);
/* A tool_getopt() result that is not an option of the command ('?' or ':'). */
int tool_bad_option(const struct tool *t, int c, char **argv);
/* Stray arguments after the expected ones: exit 2 with a hint; 0 when there are none. */
int tool_no_more_args(const struct tool *t, int argc, char **argv, int first);
/* Print the --help of the running command to stdout; returns 0. */
int tool_help(const struct tool *t);
/* "note: ..." / "warning: ..." on stderr. */
void tool_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tool_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------------ util.c */

/* Open the keystore (store + lazy TPM) with TK_STORE_* flags; sets t->ks. */
tk_rc tool_open(struct tool *t, unsigned store_flags);
/* The store path that will be used (--store, TPMKEYS_STORE, default).  Caller frees. */
tk_rc tool_store_path(const struct tool *t, char **path);
/* "tpmkeys [--store PATH] [--token NAME] init", for hints. */
void tool_init_hint(const struct tool *t, char *buf, size_t len);
/* The selected token; TK_ERR_NOT_FOUND says to run `tpmkeys init`. */
tk_rc tool_token(struct tool *t, tk_token **out);
/* A key of the selected token by label. */
tk_rc tool_find_key(struct tool *t, const char *label, tk_key **out);

/* Open a file for reading ("-" = stdin); missing file: TK_ERR_NOT_FOUND. */
tk_rc tool_open_input(const char *path, int *fd);
/* Read a whole file ("-" = stdin), at most max bytes.  Missing file: TK_ERR_NOT_FOUND. */
tk_rc tool_read_file(const char *path, size_t max, tk_buf *out);
/* Write data to path ("-" or NULL = stdout) with exactly this mode; without clobber an
 * existing file is TK_ERR_EXISTS. */
tk_rc tool_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      bool clobber);
/* Wipe and free a buffer that held something secret. */
void tool_buf_wipe(tk_buf *b);

/* A secret from a file (fread, unbuffered): one trailing newline stripped; empty or
 * longer than TK_SECRET_MAX is an error.  what names it in messages ("PIN file"). */
tk_rc tool_secret_file(const char *path, const char *what, tk_secret *out);
/* A secret from an environment variable; out->len = 0 when unset or empty. */
tk_rc tool_secret_env(const char *var, tk_secret *out);
/* Whether a prompt is possible (stdin is a terminal). */
bool tool_can_prompt(void);
/* Prompt on /dev/tty with echo off.  Empty input gives len 0 (allowed). */
tk_rc tool_prompt_secret(const char *prompt, tk_secret *out);
/* Prompt on /dev/tty with echo on for a yes/no answer (default no). */
bool tool_confirm(const char *prompt);

/* The user PIN of the token: --pin-file, else TPMKEYS_PIN, else a prompt on a terminal;
 * for_what names the use in messages ("key 'web'"). */
tk_rc tool_user_pin(const struct tool *t, const char *pin_file, const char *for_what,
                    tk_secret *pin);
/* tk_ks_login, with "PIN incorrect" / "PIN locked" leading the message. */
tk_rc tool_login(struct tool *t, int64_t token_id, const tk_secret *pin);
/* Log in to the key's token when the key has a PIN (reads the PIN as above); pin_out,
 * when not NULL, keeps the PIN for the caller (cleared when the key has none). */
tk_rc tool_login_for_key(struct tool *t, const tk_key *k, const char *pin_file,
                         tk_secret *pin_out);

/* Lower-case hex of bytes (caller frees). */
char *tool_hex(const uint8_t *data, size_t len);
/* Parse hex ("0a1b2c", also with ':' between bytes) into out. */
tk_rc tool_parse_hex(const char *s, tk_buf *out);
/* Local time as "YYYY-MM-DD HH:MM:SS TZ" into buf. */
void tool_time(int64_t when, char *buf, size_t len);
/* The algorithm of a software key (TK_ALG_NONE when not one tpmkeys takes). */
tk_alg tool_pkey_alg(EVP_PKEY *pkey);
/* Both names of a key (caller frees both). */
tk_rc tool_key_uris(const char *token, const tk_key *k, char **p11, char **prov);
/* The block of one key, as list and create-key print it: "field: value" lines (label,
 * token, algorithm, auth, origin, created, id), then the PKCS#11 URI and the provider URI
 * each on a line of its own. */
tk_rc tool_print_key(const char *token, const tk_key *k);
/* Parse an X.509 certificate in PEM or DER. */
tk_rc tool_parse_cert(const tk_buf *data, const char *path, X509 **out);

/* ------------------------------------------------------------------ commands */

int cmd_init(struct tool *t, int argc, char **argv);
int cmd_create_key(struct tool *t, int argc, char **argv);
int cmd_list(struct tool *t, int argc, char **argv);
int cmd_show(struct tool *t, int argc, char **argv);
int cmd_delete(struct tool *t, int argc, char **argv);
int cmd_export(struct tool *t, int argc, char **argv);
int cmd_set_cert(struct tool *t, int argc, char **argv);
int cmd_sign(struct tool *t, int argc, char **argv);
int cmd_decrypt(struct tool *t, int argc, char **argv);
int cmd_derive(struct tool *t, int argc, char **argv);
int cmd_doctor(struct tool *t, int argc, char **argv);

#endif /* TPMKEYS_TOOL_H */
