/* SPDX-License-Identifier: BSD-3-Clause */
/* The names of a key: RFC 7512 PKCS#11 URIs and the provider's tpmkeys: URIs. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpmkeys.h"

/* RFC 7512 pchar minus the characters with a meaning in the path: unreserved plus
 * ":" "[" "]" "@" "!" "$" "'" "(" ")" "*" "+" "," "=" "&" are allowed; we keep the
 * conservative set (unreserved) and encode everything else. */
static bool plain(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

char *tk_uri_pct_encode(const uint8_t *v, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(len * 3 + 1), *p = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (plain(v[i])) {
            *p++ = (char)v[i];
        } else {
            *p++ = '%';
            *p++ = hex[v[i] >> 4];
            *p++ = hex[v[i] & 15];
        }
    }
    *p = '\0';
    return out;
}

static char *join(const char *fmt, const char *token, const char *label)
{
    char *t = tk_uri_pct_encode((const uint8_t *)token, strlen(token));
    char *l = tk_uri_pct_encode((const uint8_t *)label, strlen(label));
    char *out = NULL;
    if (t && l) {
        size_t n = strlen(fmt) + strlen(t) + strlen(l) + 1;
        out = malloc(n);
        if (out)
            snprintf(out, n, fmt, t, l);
    }
    free(t);
    free(l);
    return out;
}

char *tk_uri_pkcs11(const char *token, const char *label)
{
    return join("pkcs11:token=%s;object=%s;type=private", token, label);
}

char *tk_uri_provider(const char *token, const char *label)
{
    if (!strcmp(token, TK_DEFAULT_TOKEN)) {
        char *l = tk_uri_pct_encode((const uint8_t *)label, strlen(label));
        char *out = NULL;
        if (l) {
            size_t n = strlen(l) + sizeof("tpmkeys:object=");
            out = malloc(n);
            if (out)
                snprintf(out, n, "tpmkeys:object=%s", l);
        }
        free(l);
        return out;
    }
    return join("tpmkeys:token=%s;object=%s", token, label);
}
