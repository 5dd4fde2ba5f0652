/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Fork and thread safety of the provider, through the public OpenSSL API only:
 * a key is loaded in the parent, children forked afterwards sign with it (what nginx
 * does with its workers), then the parent signs, then threads of one process sign with
 * the same EVP_PKEY at once.  Every signature is verified in the default provider.
 *
 * The parent does not use the TPM before forking: behind tpm2-abrmd (the only resource
 * manager a test can start) the tabrmd TCTI talks through GLib's shared D-Bus
 * connection, whose worker thread does not survive fork(), so a child of a process that
 * already used it cannot reach tabrmd at all.  With /dev/tpmrm0 the library's
 * reconnect-after-fork covers that case.
 *
 * Usage: test_fork KEY-URI-OR-FILE PUBLIC-PEM
 * (OPENSSL_MODULES must point at the built provider; the TPM should sit behind a
 * resource manager, since several processes use it at the same time.)
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include "../store_load.h"

#define CHILDREN 3
#define THREADS 4
#define ROUNDS 10

static EVP_PKEY *key, *pub;

/* Sign a message made of tag and round in the TPM, verify it in software. */
static int sign_once(const char *tag, int round)
{
    char msg[64];
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *s = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
    int ok;

    snprintf(msg, sizeof(msg), "%s round %d", tag, round);
    ok = s && v && EVP_DigestSignInit_ex(s, NULL, "SHA256", NULL, NULL, key, NULL) == 1 &&
         EVP_DigestSign(s, sig, &siglen, (unsigned char *)msg, strlen(msg)) == 1 &&
         EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, "provider=default", pub, NULL) == 1 &&
         EVP_DigestVerify(v, sig, siglen, (unsigned char *)msg, strlen(msg)) == 1;
    if (!ok) {
        fprintf(stderr, "%s round %d: signature failed\n", tag, round);
        ERR_print_errors_fp(stderr);
    }
    EVP_MD_CTX_free(s);
    EVP_MD_CTX_free(v);
    return ok;
}

static void *thread_main(void *arg)
{
    char tag[32];
    long fails = 0;

    snprintf(tag, sizeof(tag), "thread %ld", (long)(intptr_t)arg);
    for (int i = 0; i < ROUNDS; i++)
        fails += !sign_once(tag, i);
    return (void *)(intptr_t)fails;
}

int main(int argc, char **argv)
{
    pid_t kids[CHILDREN];
    pthread_t th[THREADS];
    OSSL_PROVIDER *tpm2, *dflt;
    int fails = 0;
    BIO *b;

    if (argc != 3) {
        fprintf(stderr, "usage: %s KEY-URI-OR-FILE PUBLIC-PEM\n", argv[0]);
        return 2;
    }
    tpm2 = OSSL_PROVIDER_load(NULL, "tpm2");
    dflt = OSSL_PROVIDER_load(NULL, "default");
    if (!tpm2 || !dflt) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    b = BIO_new_file(argv[2], "r");
    pub = b ? PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, NULL, "provider=default") : NULL;
    BIO_free(b);
    key = store_load_key(NULL, argv[1]);
    if (!key || !pub) {
        fprintf(stderr, "cannot load %s or %s\n", argv[1], argv[2]);
        ERR_print_errors_fp(stderr);
        return 1;
    }
    for (int c = 0; c < CHILDREN; c++) {
        kids[c] = fork();
        if (kids[c] < 0) {
            perror("fork");
            return 1;
        }
        if (kids[c] == 0) {
            char tag[32];
            int f = 0;
            snprintf(tag, sizeof(tag), "child %d", c);
            for (int i = 0; i < ROUNDS; i++)
                f += !sign_once(tag, i);
            _exit(f ? 1 : 0);
        }
    }
    for (int c = 0; c < CHILDREN; c++) {
        int st = 0;
        if (waitpid(kids[c], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "child %d failed (status 0x%x)\n", c, st);
            fails++;
        }
    }
    for (int i = 0; i < ROUNDS; i++)
        fails += !sign_once("parent after fork", i);
    for (long t = 0; t < THREADS; t++)
        if (pthread_create(&th[t], NULL, thread_main, (void *)(intptr_t)t) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    for (int t = 0; t < THREADS; t++) {
        void *r = NULL;
        pthread_join(th[t], &r);
        fails += (int)(intptr_t)r;
    }
    EVP_PKEY_free(key);
    EVP_PKEY_free(pub);
    OSSL_PROVIDER_unload(tpm2);
    OSSL_PROVIDER_unload(dflt);
    printf("%d failures in %d signatures\n", fails, ROUNDS * (1 + CHILDREN + THREADS));
    return fails ? 1 : 0;
}
