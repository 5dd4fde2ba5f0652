/* SPDX-License-Identifier: BSD-3-Clause */
/* `tpmkeys doctor`: one line per check, with what to do about each problem. */
#include "config.h"

#include <dirent.h>
#include <getopt.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

enum { OK, WARN, FAIL };

struct doctor {
    int fails, warns;
};

static void report(struct doctor *d, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct doctor *d, int level, const char *fmt, ...)
{
    static const char *const tags[] = { "[ ok ] ", "[warn] ", "[FAIL] " };
    va_list ap;

    fputs(tags[level], stdout);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    if (level == WARN)
        d->warns++;
    else if (level == FAIL)
        d->fails++;
}

/* ------------------------------------------------------------------ TCTI and devices */

/* The device a device TCTI names ("device:/dev/tpm0"), "" for the defaults, NULL when
 * the TCTI is not a device. */
static const char *device_of(const char *tcti)
{
    static const char *const prefixes[] = { "device", "libtss2-tcti-device.so.0",
                                            "libtss2-tcti-device.so" };
    if (!tcti)
        return "";
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(tcti, prefixes[i], n) && (tcti[n] == '\0' || tcti[n] == ':'))
            return tcti[n] == ':' ? tcti + n + 1 : "";
    }
    return NULL;
}

static const char *check_tcti(struct tool *t, struct doctor *d)
{
    const char *env = getenv("TPMKEYS_TCTI");
    const char *tcti = t->tcti ? t->tcti : env && *env ? env : NULL;

    if (!tcti)
        report(d, OK, "TCTI: default (tss2 tries /dev/tpmrm0, /dev/tpm0, then tpm2-abrmd)");
    else
        report(d, OK, "TCTI: %s (from %s)", tcti, t->tcti ? "--tcti" : "TPMKEYS_TCTI");
    return tcti;
}

static void owner_group(const struct stat *st, char *buf, size_t len)
{
    struct passwd *pw = getpwuid(st->st_uid);
    struct group *gr = getgrgid(st->st_gid);
    char u[32], g[32];

    snprintf(u, sizeof(u), "%u", (unsigned)st->st_uid);
    snprintf(g, sizeof(g), "%u", (unsigned)st->st_gid);
    snprintf(buf, len, "%s:%s %04o", pw ? pw->pw_name : u, gr ? gr->gr_name : g,
             (unsigned)(st->st_mode & 07777));
}

/* One device node; returns whether it exists. */
static bool check_node(struct doctor *d, const char *path, bool required)
{
    struct passwd *pw = getpwuid(getuid());
    char who[128];
    struct stat st;

    if (stat(path, &st) != 0) {
        if (required)
            report(d, FAIL, "%s does not exist: check the TCTI, or load the TPM driver "
                   "(tpm_tis, tpm_crb, or tpm_ftpm_tee for an OP-TEE firmware TPM)", path);
        return false;
    }
    owner_group(&st, who, sizeof(who));
    if (access(path, R_OK | W_OK) == 0)
        report(d, OK, "%s: present (%s), readable and writable by you", path, who);
    else
        report(d, WARN, "%s: present (%s) but not readable and writable by you: add yourself "
               "to its group (usually tss: `sudo usermod -aG tss %s`, then log in again)",
               path, who, pw ? pw->pw_name : "$USER");
    return true;
}

/* What the kernel knows when /dev has no TPM node. */
static void no_device_hint(struct doctor *d)
{
    DIR *dir = opendir("/sys/class/tpm");
    struct dirent *e;
    char seen[128] = "";

    while (dir && (e = readdir(dir))) {
        if (e->d_name[0] == '.' || strlen(seen) + strlen(e->d_name) + 2 > sizeof(seen))
            continue;
        strcat(seen, seen[0] ? " " : "");
        strcat(seen, e->d_name);
    }
    if (dir)
        closedir(dir);
    if (seen[0])
        report(d, FAIL, "no TPM device node, though the kernel lists /sys/class/tpm: %s: "
               "check udev and the permissions of /dev", seen);
    else
        report(d, FAIL, "no TPM device (/dev/tpmrm0, /dev/tpm0) and /sys/class/tpm is empty: "
               "enable the TPM in the firmware setup, or load its driver: `modprobe tpm_tis` "
               "or `modprobe tpm_crb` (PCs), `modprobe tpm_ftpm_tee` (OP-TEE firmware TPM, "
               "e.g. NVIDIA Jetson); or point TPMKEYS_TCTI at a TPM elsewhere");
}

static void check_devices(struct doctor *d, const char *tcti)
{
    const char *dev = device_of(tcti);

    if (!dev)
        return; /* not a device TCTI */
    if (*dev) {
        check_node(d, dev, true);
        return;
    }
    bool rm = check_node(d, "/dev/tpmrm0", false);
    bool raw = check_node(d, "/dev/tpm0", false);
    if (!rm && raw)
        report(d, WARN, "no /dev/tpmrm0 (the kernel resource manager, Linux 4.12+): only one "
               "process at a time can use /dev/tpm0; run tpm2-abrmd and set "
               "TPMKEYS_TCTI=tabrmd");
    if (!rm && !raw)
        no_device_hint(d);
}

/* ------------------------------------------------------------------ the TPM */

static bool check_tpm(struct doctor *d, tk_tpm *tpm)
{
    tk_tpm_info info;
    tk_rc rc = tk_tpm_get_info(tpm, &info);

    if (rc != TK_OK) {
        report(d, FAIL, "TPM not reachable: %s", tk_errmsg());
        return false;
    }
    report(d, OK, "TPM reachable through %s", tk_tpm_tcti(tpm));
    report(d, OK, "TPM: manufacturer %s, vendor \"%s\", firmware %u.%u, TPM 2.0 spec "
           "revision %u.%02u (level %u), %u transient object slots",
           info.manufacturer[0] ? info.manufacturer : "?", info.vendor, info.fw_major,
           info.fw_minor, info.spec_revision / 100, info.spec_revision % 100, info.spec_level,
           info.transient_slots);
    if (info.in_lockout && info.recovery_time)
        report(d, FAIL, "dictionary-attack lockout (%u of %u failed authorizations): the TPM "
               "refuses every PIN; it leaves lockout by itself within %u s, or clear it now "
               "with `tpm2_dictionarylockout --clear-lockout` (needs the lockout password)",
               info.lockout_counter, info.max_tries, info.recovery_time);
    else if (info.in_lockout)
        report(d, FAIL, "dictionary-attack lockout (%u of %u failed authorizations): the TPM "
               "refuses every PIN until it is cleared with `tpm2_dictionarylockout "
               "--clear-lockout` (needs the lockout password)",
               info.lockout_counter, info.max_tries);
    else if (info.lockout_counter)
        report(d, WARN, "dictionary attack: %u of %u failed authorizations counted (one "
               "expires every %u s); at %u the TPM refuses every PIN", info.lockout_counter,
               info.max_tries, info.recovery_time, info.max_tries);
    else
        report(d, OK, "dictionary attack: 0 of %u failed authorizations, one expires every "
               "%u s, lockout-password retry after %u s", info.max_tries, info.recovery_time,
               info.lockout_recovery);
    return true;
}

static void check_srk(struct doctor *d, tk_tpm *tpm)
{
    TPM2B_PUBLIC pub;
    tk_rc rc = tk_tpm_srk_public(tpm, &pub);

    if (rc == TK_ERR_NOT_FOUND) {
        report(d, FAIL, "no SRK at 0x%08x: run `tpmkeys init`", TK_SRK_HANDLE);
        return;
    }
    if (rc != TK_OK) {
        report(d, FAIL, "SRK at 0x%08x: %s", TK_SRK_HANDLE, tk_errmsg());
        return;
    }
    const TPMT_PUBLIC *p = &pub.publicArea;
    TPMA_OBJECT a = p->objectAttributes;
    bool storage = (a & TPMA_OBJECT_RESTRICTED) && (a & TPMA_OBJECT_DECRYPT) &&
                   !(a & TPMA_OBJECT_SIGN_ENCRYPT);
    bool p256 = p->type == TPM2_ALG_ECC && p->parameters.eccDetail.curveID == TPM2_ECC_NIST_P256;
    if (storage && p256)
        report(d, OK, "SRK at 0x%08x: ECC P-256 storage key (restricted, decrypt)",
               TK_SRK_HANDLE);
    else
        report(d, FAIL, "the object at 0x%08x is not a usable SRK (%s%s): tpmkeys needs an "
               "ECC P-256 restricted decrypt key there; if nothing else uses it, remove it "
               "(`tpm2_evictcontrol -C o -c 0x%08x`) and run `tpmkeys init`",
               TK_SRK_HANDLE, p->type == TPM2_ALG_RSA ? "an RSA key" : p256 ? "ECC P-256" :
               "another key type", storage ? ", storage" : ", not a storage key",
               TK_SRK_HANDLE);
}

static void check_pcrs(struct doctor *d, tk_tpm *tpm)
{
    char *text = NULL;

    if (tk_tpm_pcr_summary(tpm, &text) != TK_OK) {
        report(d, WARN, "PCR banks: %s", tk_errmsg());
        return;
    }
    if (strstr(text, "measured"))
        report(d, OK, "PCR banks: %s", text);
    else
        report(d, WARN, "PCR banks: %s: no measured boot: PCR-bound keys will not protect "
               "anything", text);
    free(text);
}

/* ------------------------------------------------------------------ the store */

static void check_mode(struct doctor *d, const char *what, const char *path, unsigned want)
{
    struct stat st;
    char who[128];

    if (stat(path, &st) != 0)
        return;
    owner_group(&st, who, sizeof(who));
    if ((st.st_mode & 0777 & ~want) == 0)
        report(d, OK, "%s %s: %s", what, path, who);
    else
        report(d, WARN, "%s %s: %s: others can read it; make it %04o (`chmod %o %s`)", what,
               path, who, want, want, path);
}

static void check_tokens(struct doctor *d, tk_store *st)
{
    tk_token **toks = NULL;
    tk_key **keys = NULL;
    size_t ntoks = 0, nkeys = 0;

    if (tk_token_list(st, &toks, &ntoks) != TK_OK || tk_key_list(st, 0, &keys, &nkeys) != TK_OK) {
        report(d, FAIL, "reading the store: %s", tk_errmsg());
        goto out;
    }
    report(d, OK, "store holds %zu key%s in %zu token%s", nkeys, nkeys == 1 ? "" : "s", ntoks,
           ntoks == 1 ? "" : "s");
    if (!ntoks)
        report(d, WARN, "the store has no token: run `tpmkeys init`");
    for (size_t i = 0; i < ntoks; i++) {
        const tk_token *tok = toks[i];
        if (tok->user_fails)
            report(d, WARN, "token '%s': %d wrong user PIN%s in a row; tpmkeys locks the token "
                   "after a few more", tok->label, tok->user_fails,
                   tok->user_fails == 1 ? "" : "s");
        else if (!tok->user_pub.len)
            report(d, OK, "token '%s': no user PIN (only keys without PIN can be made; "
                   "`tpmkeys init --user-pin-file FILE` sets one)", tok->label);
        else
            report(d, OK, "token '%s': user PIN set%s", tok->label,
                   tok->so_pub.len ? ", SO PIN set" : "");
    }
out:
    tk_key_list_free(keys, nkeys);
    for (size_t i = 0; i < ntoks; i++)
        tk_token_free(toks[i]);
    free(toks);
}

static void check_store(struct tool *t, struct doctor *d)
{
    char *path = NULL, *dir = NULL, *report_text = NULL;
    tk_store *st = NULL;
    struct stat sb;

    if (tool_store_path(t, &path) != TK_OK) {
        report(d, FAIL, "store: %s", tk_errmsg());
        return;
    }
    if (stat(path, &sb) != 0) {
        report(d, FAIL, "no store at %s: run `tpmkeys init`", path);
        goto out;
    }
    if ((dir = strdup(path)))
        check_mode(d, "store folder", dirname(dir), 0700);
    check_mode(d, "store file", path, 0600);
    if (access(path, W_OK) != 0)
        report(d, WARN, "the store is read-only for you: keys can be used, not created or "
               "changed");
    if (tk_store_open(path, TK_STORE_READONLY, &st) != TK_OK) {
        report(d, FAIL, "opening the store: %s", tk_errmsg());
        goto out;
    }
    report(d, OK, "store schema version %d", tk_store_schema_version(st));
    if (tk_store_integrity(st, &report_text) != TK_OK)
        report(d, FAIL, "store integrity check: %s", tk_errmsg());
    else if (strcmp(report_text, "ok") != 0)
        report(d, FAIL, "store integrity check: %.300s: the store is damaged; restore it from "
               "a backup", report_text);
    else
        report(d, OK, "store integrity check: ok");
    check_tokens(d, st);
out:
    free(report_text);
    tk_store_close(st);
    free(dir);
    free(path);
}

int cmd_doctor(struct tool *t, int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct doctor d = { 0, 0 };
    tk_tpm *tpm = NULL;
    const char *tcti;
    int c, ex;

    while ((c = tool_getopt(argc, argv, ":h", opts)) != -1) {
        if (c == 'h')
            return tool_help(t);
        return tool_bad_option(t, c, argv);
    }
    if ((ex = tool_no_more_args(t, argc, argv, optind)) != 0)
        return ex;
    tcti = check_tcti(t, &d);
    check_devices(&d, tcti);
    if (tk_tpm_new(t->tcti, &tpm) != TK_OK) {
        report(&d, FAIL, "TPM: %s", tk_errmsg());
    } else if (check_tpm(&d, tpm)) {
        check_srk(&d, tpm);
        check_pcrs(&d, tpm);
    }
    tk_tpm_free(tpm);
    check_store(t, &d);
    fflush(stdout);
    if (!d.fails)
        return EXIT_OK;
    fprintf(stderr, "tpmkeys: doctor: %d check%s failed: see the [FAIL] line%s above\n",
            d.fails, d.fails == 1 ? "" : "s", d.fails == 1 ? "" : "s");
    return EXIT_ERROR;
}
