/* SPDX-License-Identifier: BSD-3-Clause */
/* Errors (one per-thread message) and the run-time trace switch TPMKEYS_LOG. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include <openssl/err.h>

#include "tpmkeys.h"

#define MSG_MAX 512

static _Thread_local char last_msg[MSG_MAX];

const char *tk_errmsg(void)
{
    return last_msg;
}

void tk_clear_error(void)
{
    last_msg[0] = '\0';
}

const char *tk_rc_name(tk_rc rc)
{
    static const char *const names[] = {
        [TK_OK] = "TK_OK",
        [TK_ERR_NOMEM] = "TK_ERR_NOMEM",
        [TK_ERR_INVALID] = "TK_ERR_INVALID",
        [TK_ERR_NOT_FOUND] = "TK_ERR_NOT_FOUND",
        [TK_ERR_EXISTS] = "TK_ERR_EXISTS",
        [TK_ERR_UNSUPPORTED] = "TK_ERR_UNSUPPORTED",
        [TK_ERR_PASSPHRASE] = "TK_ERR_PASSPHRASE",
        [TK_ERR_PIN_INCORRECT] = "TK_ERR_PIN_INCORRECT",
        [TK_ERR_PIN_LOCKED] = "TK_ERR_PIN_LOCKED",
        [TK_ERR_PIN_REQUIRED] = "TK_ERR_PIN_REQUIRED",
        [TK_ERR_NO_TPM] = "TK_ERR_NO_TPM",
        [TK_ERR_TPM] = "TK_ERR_TPM",
        [TK_ERR_TPM_FULL] = "TK_ERR_TPM_FULL",
        [TK_ERR_STORE] = "TK_ERR_STORE",
        [TK_ERR_READONLY] = "TK_ERR_READONLY",
        [TK_ERR_IO] = "TK_ERR_IO",
        [TK_ERR_BUSY] = "TK_ERR_BUSY",
    };
    if ((unsigned)rc < sizeof(names) / sizeof(names[0]) && names[rc])
        return names[rc];
    return "TK_ERR_UNKNOWN";
}

tk_rc tk_fail(tk_rc rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
    va_end(ap);
    TK_LOG(TK_LOG_WARN, "%s: %s", tk_rc_name(rc), last_msg);
    return rc;
}

tk_rc tk_fail_ctx(tk_rc rc, const char *fmt, ...)
{
    char joined[2 * MSG_MAX + 2];
    size_t n;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(joined, MSG_MAX, fmt, ap);
    va_end(ap);
    n = strlen(joined);
    if (last_msg[0]) {
        joined[n++] = ':';
        joined[n++] = ' ';
        memcpy(joined + n, last_msg, strlen(last_msg) + 1);
    }
    joined[MSG_MAX - 1] = '\0';
    memcpy(last_msg, joined, MSG_MAX);
    return rc;
}

tk_rc tk_fail_ossl(tk_rc rc, const char *what)
{
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();

    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    if (buf[0])
        return tk_fail(rc, "%s (%s)", what, buf);
    return tk_fail(rc, "%s", what);
}

/* ------------------------------------------------------------------ logging */

static int log_level = -1;
static bool log_syslog;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static void log_init(void)
{
    const char *v = getenv("TPMKEYS_LOG");
    int lvl = TK_LOG_OFF;

    if (v && *v) {
        char name[16];
        const char *colon = strchr(v, ':');
        size_t n = colon ? (size_t)(colon - v) : strlen(v);
        if (n >= sizeof(name))
            n = sizeof(name) - 1;
        memcpy(name, v, n);
        name[n] = '\0';
        if (!strcasecmp(name, "error"))
            lvl = TK_LOG_ERROR;
        else if (!strcasecmp(name, "warn") || !strcasecmp(name, "warning"))
            lvl = TK_LOG_WARN;
        else if (!strcasecmp(name, "info"))
            lvl = TK_LOG_INFO;
        else if (!strcasecmp(name, "debug"))
            lvl = TK_LOG_DEBUG;
        /* "debug:syslog" sends the trace to syslog instead of stderr. */
        if (colon && !strcasecmp(colon + 1, "syslog"))
            log_syslog = true;
    }
    log_level = lvl;
}

int tk_log_level(void)
{
    if (__builtin_expect(log_level >= 0, 1))
        return log_level;
    pthread_once(&log_once, log_init);
    return log_level;
}

void tk_log_at(int level, const char *file, int line, const char *fmt, ...)
{
    static const char *const names[] = { "off", "error", "warn", "info", "debug" };
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log_syslog) {
        static const int prio[] = { LOG_DEBUG, LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
        syslog(prio[level], "tpmkeys %s:%d: %s", file, line, msg);
        return;
    }
    fprintf(stderr, "tpmkeys[%ld] %s %s:%d: %s\n", (long)getpid(), names[level], file, line, msg);
}
