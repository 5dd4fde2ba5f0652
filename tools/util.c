/* SPDX-License-Identifier: BSD-3-Clause */
/* The tool's helpers: the keystore, files, secrets and prompts, key printing. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tool.h"

/* ------------------------------------------------------------------ the keystore */

tk_rc tool_store_path(const struct tool *t, char **path)
{
    if (t->store) {
        *path = strdup(t->store);
        return *path ? TK_OK : tk_fail(TK_ERR_NOMEM, "out of memory");
    }
    return tk_store_default_path(path);
}

void tool_init_hint(const struct tool *t, char *buf, size_t len)
{
    snprintf(buf, len, "tpmkeys%s%s%s%s init", t->store ? " --store " : "",
             t->store ? t->store : "", t->token_given ? " --token " : "",
             t->token_given ? t->token : "");
}

tk_rc tool_open(struct tool *t, unsigned store_flags)
{
    tk_ks_config cfg = { .store_path = t->store, .tcti = t->tcti, .store_flags = store_flags };
    char hint[512], *path = NULL;
    tk_rc rc;

    if (t->ks)
        return TK_OK;
    rc = tk_ks_open(&cfg, &t->ks);
    if (rc == TK_ERR_NOT_FOUND && !(store_flags & TK_STORE_CREATE)) {
        tool_init_hint(t, hint, sizeof(hint));
        if (tool_store_path(t, &path) == TK_OK)
            rc = tk_fail(TK_ERR_NOT_FOUND, "no store at %s: run `%s` first", path, hint);
        free(path);
    }
    return rc;
}

tk_rc tool_token(struct tool *t, tk_token **out)
{
    char hint[512];
    tk_rc rc = tk_token_get(tk_ks_store(t->ks), t->token, out);

    if (rc == TK_ERR_NOT_FOUND) {
        tool_init_hint(t, hint, sizeof(hint));
        rc = tk_fail(TK_ERR_NOT_FOUND, "no token '%s' in the store %s: run `%s` first",
                     t->token, tk_store_path(tk_ks_store(t->ks)), hint);
    }
    return rc;
}

tk_rc tool_find_key(struct tool *t, const char *label, tk_key **out)
{
    tk_token *tok = NULL;
    tk_rc rc = tool_token(t, &tok);

    if (rc != TK_OK)
        return rc;
    rc = tk_key_find_label(tk_ks_store(t->ks), tok->id, label, out);
    if (rc == TK_ERR_NOT_FOUND)
        rc = tk_fail(TK_ERR_NOT_FOUND, "no key labelled '%s' in token '%s' (see `tpmkeys "
                     "list`)", label, t->token);
    tk_token_free(tok);
    return rc;
}

/* ------------------------------------------------------------------ files */

void tool_buf_wipe(tk_buf *b)
{
    if (!b)
        return;
    if (b->data)
        OPENSSL_cleanse(b->data, b->len);
    tk_buf_free(b);
}

/* Grow buf to cap bytes; the old copy is wiped (it may hold a private key). */
static tk_rc grow(uint8_t **buf, size_t used, size_t *cap, size_t want)
{
    uint8_t *p = malloc(want);
    if (!p)
        return tk_fail(TK_ERR_NOMEM, "out of memory");
    if (*buf) {
        memcpy(p, *buf, used);
        OPENSSL_cleanse(*buf, *cap);
        free(*buf);
    }
    *buf = p;
    *cap = want;
    return TK_OK;
}

static tk_rc read_fd(int fd, const char *path, size_t max, tk_buf *out)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t used = 0, cap = 0;
    tk_rc rc = TK_OK;

    if (fstat(fd, &st) != 0)
        return tk_fail(TK_ERR_IO, "reading %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return tk_fail(TK_ERR_INVALID, "%s is a folder, not a file", path);
    /* A regular file's size is known: one allocation, no stray copies. */
    if (S_ISREG(st.st_mode) && (size_t)st.st_size <= max)
        rc = grow(&buf, 0, &cap, (size_t)st.st_size + 1);
    else
        rc = grow(&buf, 0, &cap, 4096 > max + 1 ? max + 1 : 4096);
    while (rc == TK_OK) {
        if (used == cap) {
            if (used > max) {
                rc = tk_fail(TK_ERR_INVALID, "%s is larger than %zu bytes", path, max);
                break;
            }
            rc = grow(&buf, used, &cap, cap * 2 > max + 1 ? max + 1 : cap * 2);
            continue;
        }
        ssize_t n = read(fd, buf + used, cap - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = tk_fail(TK_ERR_IO, "reading %s: %s", path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max)
            rc = tk_fail(TK_ERR_INVALID, "%s is larger than %zu bytes", path, max);
    }
    if (rc == TK_OK) {
        out->data = buf;
        out->len = used;
        return TK_OK;
    }
    OPENSSL_cleanse(buf, cap);
    free(buf);
    return rc;
}

tk_rc tool_open_input(const char *path, int *fd)
{
    if (!strcmp(path, "-")) {
        *fd = STDIN_FILENO;
        return TK_OK;
    }
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0)
        return TK_OK;
    if (errno == ENOENT)
        return tk_fail(TK_ERR_NOT_FOUND, "%s: no such file", path);
    return tk_fail(TK_ERR_IO, "cannot open %s: %s", path, strerror(errno));
}

tk_rc tool_read_file(const char *path, size_t max, tk_buf *out)
{
    int fd;
    tk_rc rc = tool_open_input(path, &fd);

    if (rc != TK_OK)
        return rc;
    rc = read_fd(fd, strcmp(path, "-") ? path : "stdin", max, out);
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

static tk_rc write_all(int fd, const char *path, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tk_fail(TK_ERR_IO, "writing %s: %s", path, strerror(errno));
        p += n;
        len -= (size_t)n;
    }
    return TK_OK;
}

tk_rc tool_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      bool clobber)
{
    struct stat st;
    tk_rc rc;
    int fd;

    if (!path || !strcmp(path, "-")) {
        if (fflush(stdout) != 0)
            return tk_fail(TK_ERR_IO, "writing to stdout: %s", strerror(errno));
        return write_all(STDOUT_FILENO, "stdout", data, len);
    }
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (clobber ? O_TRUNC : O_EXCL), mode);
    if (fd < 0) {
        if (errno == EEXIST)
            return tk_fail(TK_ERR_EXISTS, "%s exists: use --force to replace it", path);
        return tk_fail(TK_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    /* The exact mode whatever the umask, and before anything is written. */
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fchmod(fd, mode) != 0) {
        rc = tk_fail(TK_ERR_IO, "cannot set the mode of %s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    rc = write_all(fd, path, data, len);
    if (close(fd) != 0 && rc == TK_OK)
        rc = tk_fail(TK_ERR_IO, "writing %s: %s", path, strerror(errno));
    if (rc != TK_OK && !clobber)
        unlink(path);
    return rc;
}

/* ------------------------------------------------------------------ secrets */

/* Copy n bytes of raw secret text into out, minus one trailing newline. */
static tk_rc secret_from(uint8_t *raw, size_t n, const char *what, const char *where,
                         tk_secret *out)
{
    if (n && raw[n - 1] == '\n') {
        n--;
        if (n && raw[n - 1] == '\r')
            n--;
    }
    if (n == 0)
        return tk_fail(TK_ERR_INVALID, "%s %s is empty", what, where);
    if (n > TK_SECRET_MAX)
        return tk_fail(TK_ERR_INVALID, "%s %s is too long (more than %d bytes)", what, where,
                       TK_SECRET_MAX);
    return tk_secret_set(out, raw, n);
}

tk_rc tool_secret_file(const char *path, const char *what, tk_secret *out)
{
    uint8_t raw[TK_SECRET_MAX + 3];
    size_t n;
    tk_rc rc = TK_OK;
    FILE *f = fopen(path, "rbe");

    if (!f) {
        if (errno == ENOENT)
            return tk_fail(TK_ERR_NOT_FOUND, "%s %s: no such file", what, path);
        return tk_fail(TK_ERR_IO, "cannot open %s %s: %s", what, path, strerror(errno));
    }
    /* Unbuffered: no copy of the secret stays behind in a stdio buffer. */
    setvbuf(f, NULL, _IONBF, 0);
    n = fread(raw, 1, sizeof(raw), f);
    if (ferror(f))
        rc = tk_fail(TK_ERR_IO, "reading %s %s: %s", what, path, strerror(errno));
    fclose(f);
    if (rc == TK_OK)
        rc = secret_from(raw, n, what, path, out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

tk_rc tool_secret_env(const char *var, tk_secret *out)
{
    const char *v = getenv(var);

    tk_secret_clear(out);
    if (!v || !*v)
        return TK_OK;
    if (strlen(v) > TK_SECRET_MAX)
        return tk_fail(TK_ERR_INVALID, "$%s is too long (more than %d bytes)", var,
                       TK_SECRET_MAX);
    return tk_secret_set(out, v, strlen(v));
}

bool tool_can_prompt(void)
{
    return isatty(STDIN_FILENO) == 1;
}

/* While echo is off: a signal restores the terminal before the process dies. */
static int tty_fd = -1;
static struct termios tty_saved;
static const int tty_signals[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
static struct sigaction tty_old_actions[4];

static void tty_restore_on_signal(int sig)
{
    if (tty_fd >= 0) {
        tcsetattr(tty_fd, TCSAFLUSH, &tty_saved);
        (void)!write(tty_fd, "\n", 1);
    }
    raise(sig); /* SA_RESETHAND: the default action, once this handler returns */
}

static void tty_catch(bool on)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = tty_restore_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(tty_signals) / sizeof(tty_signals[0]); i++) {
        if (on)
            sigaction(tty_signals[i], &sa, &tty_old_actions[i]);
        else
            sigaction(tty_signals[i], &tty_old_actions[i], NULL);
    }
}

/* Read one line from the terminal into buf (at most cap bytes kept, the rest of a
 * longer line is read and dropped); *len = bytes kept, *too_long when dropped. */
static tk_rc tty_read_line(int fd, uint8_t *buf, size_t cap, size_t *len, bool *too_long)
{
    char c;

    *len = 0;
    *too_long = false;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return tk_fail(TK_ERR_IO, "reading from the terminal: %s", strerror(errno));
        if (n == 0 || c == '\n')
            break;
        if (*len < cap)
            buf[(*len)++] = (uint8_t)c;
        else
            *too_long = true;
    }
    if (*len && buf[*len - 1] == '\r')
        (*len)--;
    c = 0;
    return TK_OK;
}

static tk_rc tty_open(int *fd)
{
    *fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (*fd < 0)
        return tk_fail(TK_ERR_IO, "cannot open the terminal /dev/tty: %s", strerror(errno));
    return TK_OK;
}

tk_rc tool_prompt_secret(const char *prompt, tk_secret *out)
{
    struct termios quiet;
    uint8_t buf[TK_SECRET_MAX];
    size_t len = 0;
    bool too_long = false, echo_off = false;
    tk_rc rc;
    int fd;

    tk_secret_clear(out);
    if ((rc = tty_open(&fd)) != TK_OK)
        return rc;
    fflush(stderr);
    if (tcgetattr(fd, &tty_saved) == 0) {
        quiet = tty_saved;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
        tty_fd = fd;
        tty_catch(true);
        echo_off = tcsetattr(fd, TCSAFLUSH, &quiet) == 0;
    }
    (void)!write(fd, prompt, strlen(prompt));
    rc = tty_read_line(fd, buf, sizeof(buf), &len, &too_long);
    if (echo_off) {
        tcsetattr(fd, TCSAFLUSH, &tty_saved);
        (void)!write(fd, "\n", 1);
    }
    if (tty_fd >= 0) {
        tty_catch(false);
        tty_fd = -1;
    }
    close(fd);
    if (rc == TK_OK && too_long)
        rc = tk_fail(TK_ERR_INVALID, "too long (more than %d bytes)", TK_SECRET_MAX);
    if (rc == TK_OK)
        rc = tk_secret_set(out, buf, len);
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

bool tool_confirm(const char *prompt)
{
    uint8_t answer[16];
    size_t len = 0;
    bool too_long = false;
    int fd;

    if (tty_open(&fd) != TK_OK)
        return false;
    fflush(stderr);
    (void)!write(fd, prompt, strlen(prompt));
    tk_rc rc = tty_read_line(fd, answer, sizeof(answer) - 1, &len, &too_long);
    close(fd);
    if (rc != TK_OK || too_long)
        return false;
    answer[len] = '\0';
    return !strcasecmp((char *)answer, "y") || !strcasecmp((char *)answer, "yes");
}

tk_rc tool_user_pin(const struct tool *t, const char *pin_file, const char *for_what,
                    tk_secret *pin)
{
    char prompt[128];
    tk_rc rc;

    if (pin_file)
        return tool_secret_file(pin_file, "PIN file", pin);
    if ((rc = tool_secret_env("TPMKEYS_PIN", pin)) != TK_OK || pin->len)
        return rc;
    if (!tool_can_prompt())
        return tk_fail(TK_ERR_PIN_REQUIRED, "%s needs the user PIN of token '%s': give it "
                       "with --pin-file FILE or TPMKEYS_PIN", for_what, t->token);
    snprintf(prompt, sizeof(prompt), "User PIN of token '%s': ", t->token);
    if ((rc = tool_prompt_secret(prompt, pin)) != TK_OK)
        return tk_fail_ctx(rc, "reading the PIN");
    if (!pin->len)
        return tk_fail(TK_ERR_PIN_REQUIRED, "no PIN entered");
    return TK_OK;
}

tk_rc tool_login(struct tool *t, int64_t token_id, const tk_secret *pin)
{
    tk_rc rc = tk_ks_login(t->ks, token_id, pin);
    if (rc == TK_ERR_PIN_INCORRECT)
        tk_fail_ctx(rc, "PIN incorrect");
    else if (rc == TK_ERR_PIN_LOCKED)
        tk_fail_ctx(rc, "PIN locked");
    return rc;
}

tk_rc tool_login_for_key(struct tool *t, const tk_key *k, const char *pin_file,
                         tk_secret *pin_out)
{
    char what[128];
    tk_secret pin;
    tk_rc rc;

    memset(&pin, 0, sizeof(pin));
    if (pin_out)
        tk_secret_clear(pin_out);
    if (k->auth == TK_AUTH_NONE)
        return TK_OK;
    snprintf(what, sizeof(what), "key '%s'", k->label);
    rc = tool_user_pin(t, pin_file, what, &pin);
    if (rc == TK_OK)
        rc = tool_login(t, k->token_id, &pin);
    if (rc == TK_OK && pin_out)
        rc = tk_secret_set(pin_out, pin.data, pin.len);
    tk_secret_clear(&pin);
    return rc;
}

/* ------------------------------------------------------------------ formatting */

char *tool_hex(const uint8_t *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(2 * len + 1);

    if (!s)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 15];
    }
    s[2 * len] = '\0';
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

tk_rc tool_parse_hex(const char *s, tk_buf *out)
{
    uint8_t bytes[256];
    size_t n = 0;

    if (!strncmp(s, "0x", 2) || !strncmp(s, "0X", 2))
        s += 2;
    while (*s) {
        if (*s == ':' && n) {
            s++;
            continue;
        }
        int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
        if (hi < 0 || lo < 0)
            return tk_fail(TK_ERR_INVALID, "'%s' is not hex (two digits per byte)", s);
        if (n == sizeof(bytes))
            return tk_fail(TK_ERR_INVALID, "the id is longer than %zu bytes", sizeof(bytes));
        bytes[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    if (!n)
        return tk_fail(TK_ERR_INVALID, "the id is empty");
    return tk_buf_set(out, bytes, n);
}

void tool_time(int64_t when, char *buf, size_t len)
{
    time_t tt = (time_t)when;
    struct tm tm;

    if (!localtime_r(&tt, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm))
        snprintf(buf, len, "%lld", (long long)when);
}

tk_alg tool_pkey_alg(EVP_PKEY *pkey)
{
    char group[64];

    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        switch (EVP_PKEY_get_bits(pkey)) {
        case 2048: return TK_ALG_RSA2048;
        case 3072: return TK_ALG_RSA3072;
        case 4096: return TK_ALG_RSA4096;
        }
        return TK_ALG_NONE;
    case EVP_PKEY_EC:
        if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                            sizeof(group), NULL))
            return TK_ALG_NONE;
        return tk_alg_from_name(group);
    }
    return TK_ALG_NONE;
}

static const char *auth_name(const tk_key *k)
{
    return k->auth == TK_AUTH_NONE ? "no-pin" : "pin";
}

static const char *origin_name(const tk_key *k)
{
    return k->origin == TK_ORIGIN_IMPORTED ? "imported" : "generated";
}

/* Both names of a key (caller frees both). */
tk_rc tool_key_uris(const char *token, const tk_key *k, char **p11, char **prov)
{
    *p11 = tk_uri_pkcs11(token, k->label);
    *prov = tk_uri_provider(token, k->label);
    if (*p11 && *prov)
        return TK_OK;
    free(*p11);
    free(*prov);
    *p11 = *prov = NULL;
    return tk_fail(TK_ERR_NOMEM, "out of memory");
}

/* What the TPM restricts the key to, as a suffix for its algorithm ("" when nothing). */
static const char *restriction(const tk_key *k)
{
    TPM2B_PUBLIC pub;
    if (tk_public_unmarshal(&k->pub, &pub) != TK_OK) {
        tk_clear_error();
        return "";
    }
    switch (tk_public_pss_hash(&pub)) {
    case 0: return "";
    case TPM2_ALG_SHA1: return " (RSA-PSS with SHA-1 only)";
    case TPM2_ALG_SHA256: return " (RSA-PSS with SHA-256 only)";
    case TPM2_ALG_SHA384: return " (RSA-PSS with SHA-384 only)";
    case TPM2_ALG_SHA512: return " (RSA-PSS with SHA-512 only)";
    }
    return " (RSA-PSS only)";
}

/* The block of one key, as list and create-key print it: "field: value" lines, then
 * the two names each on a line of its own (ready to copy; their scheme names them). */
tk_rc tool_print_key(const char *token, const tk_key *k)
{
    char when[64], *p11, *prov, *id;
    tk_rc rc = tool_key_uris(token, k, &p11, &prov);

    if (rc != TK_OK)
        return rc;
    if (!(id = tool_hex(k->ckaid.data, k->ckaid.len))) {
        rc = tk_fail(TK_ERR_NOMEM, "out of memory");
    } else {
        tool_time(k->created, when, sizeof(when));
        printf("label:       %s\n", k->label);
        printf("token:       %s\n", token);
        printf("algorithm:   %s%s\n", tk_alg_name(k->alg), restriction(k));
        printf("auth:        %s\n", auth_name(k));
        printf("origin:      %s\n", origin_name(k));
        printf("created:     %s\n", when);
        printf("id:          %s\n", id);
        printf("%s\n%s\n", p11, prov);
    }
    free(id);
    free(p11);
    free(prov);
    return rc;
}

tk_rc tool_parse_cert(const tk_buf *data, const char *path, X509 **out)
{
    const unsigned char *p = data->data;
    BIO *bio;
    X509 *x;

    if (data->len > INT32_MAX)
        return tk_fail(TK_ERR_INVALID, "%s is too large", path);
    bio = BIO_new_mem_buf(data->data, (int)data->len);
    if (!bio)
        return tk_fail_ossl(TK_ERR_NOMEM, "out of memory");
    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!x) {
        ERR_clear_error();
        x = d2i_X509(NULL, &p, (long)data->len);
    }
    if (!x) {
        ERR_clear_error();
        return tk_fail(TK_ERR_INVALID, "%s is not an X.509 certificate (PEM or DER)", path);
    }
    *out = x;
    return TK_OK;
}
