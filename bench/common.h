/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Small helpers shared by the benchmark programs: a monotonic clock, a timed
 * loop with an optional common start time (so that several processes measure the
 * same window), medians, and the one-line result format the driver parses:
 *
 *     RESULT name=value name=value ...
 */
#ifndef TK_BENCH_COMMON_H
#define TK_BENCH_COMMON_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleep until the wall-clock time `at` (seconds since the epoch; 0 = now), so that
 * processes started one after the other begin their loops together. */
static inline void bench_wait_until(double at)
{
    struct timespec ts;
    double now, left;

    if (at <= 0)
        return;
    clock_gettime(CLOCK_REALTIME, &ts);
    now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    left = at - now;
    if (left <= 0)
        return;
    ts.tv_sec = (time_t)left;
    ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
    nanosleep(&ts, NULL);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts them in place). */
static inline double bench_median(double *v, size_t n)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), bench_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static inline void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* Options every loop program takes. */
typedef struct {
    double seconds;     /* length of the signing loop */
    double start_at;    /* wall-clock start of the loop (0 = at once) */
    int cold;           /* repetitions of the cold-start measurement (0 = none) */
} bench_opts;

static inline int bench_common_opt(bench_opts *o, const char *name, const char *val)
{
    if (!strcmp(name, "--seconds"))
        o->seconds = atof(val);
    else if (!strcmp(name, "--start-at"))
        o->start_at = atof(val);
    else if (!strcmp(name, "--cold"))
        o->cold = atoi(val);
    else
        return 0;
    return 1;
}

#endif
