/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Grow a store for the scale benchmark: copy one real key (made with `tpmkeys
 * create-key`) into N more rows of the same token, through the store API
 * (tk_key_add), with labels "LABEL-00001"... and distinct CKA_IDs.  Each row is a
 * real key the doors list and can sign with (the same TPM blobs).
 *
 *   mkstore --store PATH --from LABEL --count N
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tpmkeys.h"
#include "common.h"

int main(int argc, char **argv)
{
    const char *path = NULL, *from = NULL;
    long count = 0;
    tk_store *st = NULL;
    tk_key *k = NULL;
    tk_rc rc;
    double t0;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--store"))
            path = argv[i + 1];
        else if (!strcmp(argv[i], "--from"))
            from = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            count = atol(argv[i + 1]);
        else
            bench_die("unknown option %s", argv[i]);
    }
    if (!path || !from || count <= 0)
        bench_die("usage: mkstore --store PATH --from LABEL --count N");
    if ((rc = tk_store_open(path, 0, &st)) != TK_OK ||
        (rc = tk_key_find_label(st, 0, from, &k)) != TK_OK)
        bench_die("%s", tk_errmsg());

    t0 = bench_now();
    for (long i = 1; i <= count; i++) {
        char label[64];
        uint8_t id[8];
        snprintf(label, sizeof(label), "%s-%05ld", from, i);
        for (int b = 0; b < 8; b++)
            id[b] = (uint8_t)(i >> (8 * (7 - b)));
        free(k->label);
        if (!(k->label = strdup(label)))
            bench_die("out of memory");
        if ((rc = tk_buf_set(&k->ckaid, id, sizeof(id))) != TK_OK ||
            (rc = tk_key_add(st, k)) != TK_OK)
            bench_die("adding %s: %s", label, tk_errmsg());
    }
    printf("RESULT rows=%ld seconds=%.3f\n", count, bench_now() - t0);
    tk_key_free(k);
    tk_store_close(st);
    return 0;
}
