/*
 * events_worker: a cairn worker process for test_events, which starts it,
 * SIGKILLs it between events and in the middle of streams, and starts it
 * again with the same executor ID so that it resumes its workflows by
 * replay.
 *
 * It runs the workflow "publisher". Its input {"events": E, "values": V,
 * "tokens": T, "sleep_ms": M} makes it, in order:
 *   1. publish event "status" = "started";
 *   2. for i = 1..E: publish "progress" = {"i": i} and "e<i>" = i, then run
 *      the step "nap" (sleeps up to M ms);
 *   3. for j = 0..V-1: append {"j": j} to stream "out" (cairn_stream_write),
 *      running "nap" after every fourth value;
 *   4. run the step "tokens", which appends {"t": t, "execution": x} for
 *      t = 0..T-1 to stream "tokens" from inside the step
 *      (cairn_step_stream_write, at least once), x being the workflow's
 *      cairn_ctx_attempt();
 *   5. close "out" and "tokens", publish "status" = "done", and return
 *      {"events": E, "values": V, "tokens": T}.
 *
 * The environment variable CRASH_AT makes the process SIGKILL itself:
 *   event:K  right after the K-th "progress" was published (committed);
 *   value:K  right after the K-th value of "out" was appended (committed);
 *   token:K  inside "tokens", right after its K-th value was appended;
 *   close    right after "out" was closed.
 *
 * Usage: events_worker --db CONNINFO --executor ID [--workers N]
 *            [--events E] [--values V] [--tokens T] [--sleep-ms M]
 *            [--timeout-ms T] WORKFLOW-ID...
 *
 * The worker starts its executors (which resumes the unfinished workflows
 * its executor ID owns), starts every given ID (an existing one is not
 * started again), prints "started", awaits each and prints "<id> <status>
 * <result JSON>", then "finished". It exits 0 when every workflow reached
 * a final status, 1 on a failure and 2 on a usage error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cairn.h"

typedef enum { CRASH_NONE, CRASH_EVENT, CRASH_VALUE, CRASH_TOKEN, CRASH_CLOSE } crash_kind;

static crash_kind crash_at;
static long crash_n;

static int parse_crash_point(const char *s)
{
    static const struct {
        const char *prefix;
        crash_kind kind;
    } kinds[] = {{"event:", CRASH_EVENT}, {"value:", CRASH_VALUE}, {"token:", CRASH_TOKEN}};
    crash_at = CRASH_NONE;
    if (!s || !*s)
        return 0;
    if (strcmp(s, "close") == 0) {
        crash_at = CRASH_CLOSE;
        return 0;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(s, kinds[i].prefix, n) == 0) {
            char *end;
            long k = strtol(s + n, &end, 10);
            if (*end || k < 1)
                return -1;
            crash_at = kinds[i].kind;
            crash_n = k;
            return 0;
        }
    }
    return -1;
}

static void crash_if(crash_kind kind, long n)
{
    if (crash_at == kind && (kind == CRASH_CLOSE || crash_n == n))
        raise(SIGKILL);
}

/* The integer member `key` of a flat JSON object this program wrote; dflt when missing. */
static long long json_int(const char *json, const char *key, long long dflt)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = json ? strstr(json, pattern) : NULL;
    if (!p)
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(p + strlen(pattern), &end, 10);
    return errno || end == p + strlen(pattern) ? dflt : v;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Step "nap": sleeps a random time up to {"ms": M}. */
static int step_nap(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    long long max = json_int(input, "ms", 0);
    if (max > 0) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        unsigned x = (unsigned)now.tv_nsec ^ ((unsigned)getpid() << 16) ^ (unsigned)cairn_step_number(s);
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        sleep_ms((long long)(x % (unsigned)(max + 1)));
    }
    return CAIRN_OK;
}

/* Step "tokens": input {"tokens": T, "execution": x, "sleep_ms": M}. */
static int step_tokens(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    long long tokens = json_int(input, "tokens", 0);
    long long execution = json_int(input, "execution", 0);
    long long pause = json_int(input, "sleep_ms", 0);
    for (long long t = 0; t < tokens; t++) {
        char v[96];
        snprintf(v, sizeof v, "{\"t\":%lld,\"execution\":%lld}", t, execution);
        int rc = cairn_step_stream_write(s, "tokens", v);
        if (rc != CAIRN_OK)
            return cairn_step_fail(s, "appending token %lld: %s", t, cairn_strerror(rc));
        crash_if(CRASH_TOKEN, (long)(t + 1));
        if (pause > 0 && t % 4 == 3)
            sleep_ms(pause / 4 + 1);
    }
    char buf[64];
    snprintf(buf, sizeof buf, "{\"count\":%lld}", tokens);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_step_fail(s, "out of memory");
}

static int nap(cairn_ctx *ctx, long long ms)
{
    char in[48];
    snprintf(in, sizeof in, "{\"ms\":%lld}", ms);
    return cairn_step(ctx, "nap", in, NULL);
}

/* Workflow "publisher": see the comment at the top of the file. */
static int wf_publisher(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    long long events = json_int(input, "events", -1);
    long long values = json_int(input, "values", -1);
    long long tokens = json_int(input, "tokens", -1);
    long long pause = json_int(input, "sleep_ms", 0);
    if (events < 0 || values < 0 || tokens < 0)
        return cairn_fail(ctx, "malformed input: %s", input);
    int rc = cairn_set_event(ctx, "status", "\"started\"");
    for (long long i = 1; rc == CAIRN_OK && i <= events; i++) {
        char v[48], key[32];
        snprintf(v, sizeof v, "{\"i\":%lld}", i);
        rc = cairn_set_event(ctx, "progress", v);
        crash_if(CRASH_EVENT, (long)i);
        snprintf(key, sizeof key, "e%lld", i);
        snprintf(v, sizeof v, "%lld", i);
        if (rc == CAIRN_OK)
            rc = cairn_set_event(ctx, key, v);
        if (rc == CAIRN_OK)
            rc = nap(ctx, pause);
    }
    for (long long j = 0; rc == CAIRN_OK && j < values; j++) {
        char v[48];
        snprintf(v, sizeof v, "{\"j\":%lld}", j);
        rc = cairn_stream_write(ctx, "out", v);
        crash_if(CRASH_VALUE, (long)(j + 1));
        if (rc == CAIRN_OK && j % 4 == 3)
            rc = nap(ctx, pause);
    }
    if (rc == CAIRN_OK) {
        char in[128];
        snprintf(in, sizeof in, "{\"tokens\":%lld,\"execution\":%d,\"sleep_ms\":%lld}", tokens,
                 cairn_ctx_attempt(ctx), pause);
        rc = cairn_step(ctx, "tokens", in, NULL);
    }
    if (rc == CAIRN_OK)
        rc = cairn_stream_close(ctx, "out");
    crash_if(CRASH_CLOSE, 0);
    if (rc == CAIRN_OK)
        rc = cairn_stream_close(ctx, "tokens");
    if (rc == CAIRN_OK)
        rc = cairn_set_event(ctx, "status", "\"done\"");
    if (rc != CAIRN_OK)
        return rc; /* a failure is recorded; CAIRN_ESHUTDOWN leaves the workflow to resume later */
    char buf[96];
    snprintf(buf, sizeof buf, "{\"events\":%lld,\"values\":%lld,\"tokens\":%lld}", events, values, tokens);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: events_worker --db CONNINFO --executor ID [--workers N] [--events E] [--values V]\n"
                    "           [--tokens T] [--sleep-ms M] [--timeout-ms T] WORKFLOW-ID...\n"
                    "environment: CRASH_AT=event:K|value:K|token:K|close\n");
    exit(2);
}

static long long int_arg(const char *name, const char *s)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || errno || *end || v < 0 || v > 1000000000LL) {
        fprintf(stderr, "events_worker: %s needs a non-negative integer\n", name);
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *db = NULL, *executor = NULL;
    long long workers = 0, events = 3, values = 10, tokens = 8, pause = 0, timeout_ms = 60000;
    int first_id = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--db") == 0 && v)
            db = v;
        else if (strcmp(a, "--executor") == 0 && v)
            executor = v;
        else if (strcmp(a, "--workers") == 0)
            workers = int_arg(a, v);
        else if (strcmp(a, "--events") == 0)
            events = int_arg(a, v);
        else if (strcmp(a, "--values") == 0)
            values = int_arg(a, v);
        else if (strcmp(a, "--tokens") == 0)
            tokens = int_arg(a, v);
        else if (strcmp(a, "--sleep-ms") == 0)
            pause = int_arg(a, v);
        else if (strcmp(a, "--timeout-ms") == 0)
            timeout_ms = int_arg(a, v);
        else if (a[0] == '-' && a[1] == '-')
            usage();
        else {
            first_id = i;
            break;
        }
        i++; /* every option takes a value */
    }
    if (!db || !executor || first_id >= argc || timeout_ms > 0x7fffffff)
        usage();
    if (parse_crash_point(getenv("CRASH_AT")) != 0) {
        fprintf(stderr, "events_worker: CRASH_AT='%s' is not event:K, value:K, token:K or close\n",
                getenv("CRASH_AT"));
        usage();
    }

    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = db;
    o.executor_id = executor;
    o.workers = (int)workers;
    o.max_attempts = 1000; /* every restart is an execution; never dead-letter here */
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "publisher", wf_publisher, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "nap", step_nap, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "tokens", step_tokens, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "events_worker: starting: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "");
        cairn_close(h);
        return 1;
    }

    char input[160];
    snprintf(input, sizeof input, "{\"events\":%lld,\"values\":%lld,\"tokens\":%lld,\"sleep_ms\":%lld}", events,
             values, tokens, pause);
    int failed = 0;
    for (int i = first_id; i < argc && !failed; i++) {
        cairn_start_options so;
        memset(&so, 0, sizeof so);
        so.size = sizeof so;
        so.id = argv[i];
        rc = cairn_start(h, "publisher", input, &so, NULL);
        if (rc != CAIRN_OK) {
            fprintf(stderr, "events_worker: cairn_start(%s): %s: %s\n", argv[i], cairn_strerror(rc),
                    cairn_errmsg(h));
            failed = 1;
        }
    }
    if (!failed) {
        printf("started\n");
        fflush(stdout);
    }
    for (int i = first_id; i < argc && !failed; i++) {
        cairn_status st = CAIRN_STATUS_UNKNOWN;
        char *result = NULL;
        rc = cairn_await(h, argv[i], (int)timeout_ms, &st, &result);
        if (rc != CAIRN_OK) {
            fprintf(stderr, "events_worker: cairn_await(%s): %s: %s\n", argv[i], cairn_strerror(rc),
                    cairn_errmsg(h));
            failed = 1;
        } else {
            printf("%s %s %s\n", argv[i], cairn_status_name(st), result ? result : "null");
        }
        cairn_free(result);
    }
    if (!failed)
        printf("finished\n");
    fflush(stdout);
    cairn_close(h);
    return failed ? 1 : 0;
}
