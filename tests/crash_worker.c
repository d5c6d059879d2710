/*
 * crash_worker: a cairn worker process for the crash tests (test_crash.c),
 * which start it, SIGKILL it and start it again.
 *
 * It runs the workflow "crashy". Its input {"steps": N, "seed": S,
 * "sleep_ms": M} makes it call the step "advance" N times; step k turns the
 * previous value v (S before step 1) into (v * 31 + k * S) mod 1000000007
 * after sleeping up to M random milliseconds, and the workflow's output is
 * {"value": v_N}. The result is predictable and depends on the order of the
 * steps, so a lost, repeated or misplaced checkpoint changes it.
 *
 * Every execution of a step body is counted outside cairn: it inserts one
 * row into the table `ledger` on a plain libpq connection in autocommit, not
 * in the step's checkpoint transaction, so the row survives whatever happens
 * to the checkpoint. The same statement looks in cairn.steps first: a step
 * that already has a checkpoint must never run again (guarantee 2), so such
 * a row is recorded with kind 'VIOLATION' instead of 'RUN'. The caller
 * creates the table:
 *
 *   CREATE TABLE ledger (
 *       seq       bigserial PRIMARY KEY,
 *       kind      text NOT NULL,     -- 'RUN', or 'VIOLATION' for a completed step run again
 *       wf        text NOT NULL,     -- workflow ID
 *       step      int  NOT NULL,     -- step number, from 1
 *       execution int  NOT NULL,     -- cairn_ctx_attempt() of the workflow execution
 *       attempt   int  NOT NULL,     -- cairn_step_attempt() within that execution
 *       run       int  NOT NULL,     -- which worker process: --run, else its pid
 *       pid       int  NOT NULL,     -- its pid
 *       at        timestamptz NOT NULL DEFAULT clock_timestamp());
 *
 * The environment variable CRASH_AT makes the process SIGKILL itself:
 *   before:K  when step K is entered, before its body does anything;
 *   inside:K  inside step K, after its ledger row, before it returns;
 *   after:K   in the workflow, right after cairn_step() of step K returned
 *             (its checkpoint has committed);
 *   finish    in the workflow, after the last step, before it returns.
 *
 * Usage: crash_worker [--db CONNINFO] --executor ID [--workers N]
 *            [--max-attempts N] [--steps N] [--seed S] [--sleep-ms M]
 *            [--timeout-ms T] [--run N] WORKFLOW-ID...
 *
 * Without --db the database is $CAIRN_DATABASE_URL. The i-th workflow ID
 * (from 0) gets seed S + i. The worker starts its executors (which resumes
 * the unfinished workflows this executor ID owns), starts every given ID
 * with cairn_start() (an ID that exists is not started again), prints
 * "started", then awaits each workflow and prints "<id> <status> <result
 * JSON>", and prints "finished" when every workflow has reached a final
 * status. It exits 0 in that case, 1 on any failure and 2 on a usage
 * error.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cairn.h"

#define VALUE_MOD 1000000007LL
#define MAX_LEDGER_CONNS 64

/* Where CRASH_AT asks the process to die. */
typedef enum crash_kind { CRASH_NONE, CRASH_BEFORE, CRASH_INSIDE, CRASH_AFTER, CRASH_FINISH } crash_kind;

typedef struct crash_point {
    crash_kind kind;
    int step; /* for BEFORE, INSIDE and AFTER */
} crash_point;

static crash_point crash_at;

/* Idle ledger connections, shared by the executor threads. */
static const char *ledger_conninfo;
static long long ledger_run;
static pthread_mutex_t ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static PGconn *ledger_idle[MAX_LEDGER_CONNS];
static int ledger_nidle;

/* Reports a failure of the test harness itself and ends the process at once. */
static void die(const char *fmt, ...) CAIRN_PRINTF(1, 2);
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crash_worker[%d]: ", (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    _exit(1);
}

static int parse_crash_point(const char *s, crash_point *cp)
{
    static const struct {
        const char *prefix;
        crash_kind kind;
    } kinds[] = {{"before:", CRASH_BEFORE}, {"inside:", CRASH_INSIDE}, {"after:", CRASH_AFTER}};
    cp->kind = CRASH_NONE;
    cp->step = 0;
    if (!s || !*s)
        return 0;
    if (strcmp(s, "finish") == 0) {
        cp->kind = CRASH_FINISH;
        return 0;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t n = strlen(kinds[i].prefix);
        if (strncmp(s, kinds[i].prefix, n) == 0) {
            char *end;
            long k = strtol(s + n, &end, 10);
            if (*end || k < 1 || k > 1000000)
                return -1;
            cp->kind = kinds[i].kind;
            cp->step = (int)k;
            return 0;
        }
    }
    return -1;
}

/* Dies here if CRASH_AT names this point. */
static void crash_if(crash_kind kind, int step)
{
    if (crash_at.kind == kind && (kind == CRASH_FINISH || crash_at.step == step))
        raise(SIGKILL);
}

/*
 * Reads the integer member `key` of a flat JSON object this program wrote
 * itself (no nesting, no escapes). Returns dflt when it is missing.
 */
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

static PGconn *ledger_get(void)
{
    PGconn *pg = NULL;
    pthread_mutex_lock(&ledger_lock);
    if (ledger_nidle > 0)
        pg = ledger_idle[--ledger_nidle];
    pthread_mutex_unlock(&ledger_lock);
    if (pg)
        return pg;
    pg = PQconnectdb(ledger_conninfo);
    if (PQstatus(pg) != CONNECTION_OK)
        die("cannot open a ledger connection: %s", PQerrorMessage(pg));
    return pg;
}

static void ledger_put(PGconn *pg)
{
    pthread_mutex_lock(&ledger_lock);
    if (ledger_nidle < MAX_LEDGER_CONNS) {
        ledger_idle[ledger_nidle++] = pg;
        pg = NULL;
    }
    pthread_mutex_unlock(&ledger_lock);
    PQfinish(pg);
}

static void ledger_close_all(void)
{
    pthread_mutex_lock(&ledger_lock);
    while (ledger_nidle > 0)
        PQfinish(ledger_idle[--ledger_nidle]);
    pthread_mutex_unlock(&ledger_lock);
}

/*
 * Records one execution of a step body. It commits on its own before the
 * step goes on, so it counts the execution even if the process dies in the
 * next instruction. A failure here voids the experiment: the process exits.
 */
static void ledger_record(const char *wf, int step, int execution, int attempt)
{
    static const char sql[] =
        "INSERT INTO ledger (kind, wf, step, execution, attempt, run, pid)"
        " SELECT CASE WHEN EXISTS (SELECT 1 FROM cairn.steps WHERE workflow_id = $1 AND step = $2::int)"
        "             THEN 'VIOLATION' ELSE 'RUN' END, $1, $2::int, $3::int, $4::int, $5::int, $6::int";
    char s_step[16], s_exec[16], s_attempt[16], s_run[24], s_pid[16];
    snprintf(s_step, sizeof s_step, "%d", step);
    snprintf(s_exec, sizeof s_exec, "%d", execution);
    snprintf(s_attempt, sizeof s_attempt, "%d", attempt);
    snprintf(s_run, sizeof s_run, "%lld", ledger_run);
    snprintf(s_pid, sizeof s_pid, "%d", (int)getpid());
    const char *vals[6] = {wf, s_step, s_exec, s_attempt, s_run, s_pid};
    PGconn *pg = ledger_get();
    PGresult *r = PQexecParams(pg, sql, 6, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("writing the ledger for %s step %d: %s", wf, step, PQerrorMessage(pg));
    PQclear(r);
    ledger_put(pg);
}

/* Sleeps a random number of milliseconds in [0, max_ms]. */
static void nap(long long max_ms, unsigned seed)
{
    if (max_ms <= 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    unsigned x = seed ^ (unsigned)now.tv_nsec ^ ((unsigned)getpid() << 16);
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    long long ms = (long long)(x % (unsigned)(max_ms + 1));
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Step "advance": input {"value": v, "seed": S, "sleep_ms": M, "execution": E}, output {"value": v'}. */
static int step_advance(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    int k = cairn_step_number(s);
    crash_if(CRASH_BEFORE, k);
    ledger_record(cairn_step_workflow_id(s), k, (int)json_int(input, "execution", 0), cairn_step_attempt(s));
    crash_if(CRASH_INSIDE, k);

    long long value = json_int(input, "value", -1);
    long long seed = json_int(input, "seed", -1);
    if (value < 0 || seed < 0)
        return cairn_step_fail(s, "malformed step input: %s", input);
    nap(json_int(input, "sleep_ms", 0), (unsigned)k * 2654435761u);
    char buf[64];
    snprintf(buf, sizeof buf, "{\"value\":%lld}", (value * 31 + (long long)k * seed) % VALUE_MOD);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_step_fail(s, "out of memory");
}

/* Workflow "crashy": see the comment at the top of the file. */
static int wf_crashy(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    long long steps = json_int(input, "steps", -1);
    long long seed = json_int(input, "seed", -1);
    long long sleep_ms = json_int(input, "sleep_ms", 0);
    if (steps < 1 || steps > 10000 || seed < 0 || seed >= VALUE_MOD)
        return cairn_fail(ctx, "malformed workflow input: %s", input);

    long long value = seed;
    for (int k = 1; k <= steps; k++) {
        char in[160];
        snprintf(in, sizeof in, "{\"value\":%lld,\"seed\":%lld,\"sleep_ms\":%lld,\"execution\":%d}", value, seed,
                 sleep_ms, cairn_ctx_attempt(ctx));
        char *out = NULL;
        int rc = cairn_step(ctx, "advance", in, &out);
        if (rc != CAIRN_OK)
            return rc; /* a failure is recorded; CAIRN_ESHUTDOWN leaves the workflow to resume later */
        value = json_int(out, "value", -1);
        cairn_free(out);
        if (value < 0)
            return cairn_fail(ctx, "step %d returned no value", k);
        crash_if(CRASH_AFTER, k);
    }
    crash_if(CRASH_FINISH, 0);

    char buf[64];
    snprintf(buf, sizeof buf, "{\"value\":%lld}", value);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: crash_worker [--db CONNINFO] --executor ID [--workers N] [--max-attempts N]\n"
                    "           [--steps N] [--seed S] [--sleep-ms M] [--timeout-ms T] [--run N] WORKFLOW-ID...\n"
                    "environment: CRASH_AT=before:K|inside:K|after:K|finish\n");
    exit(2);
}

/* Parses a non-negative integer option value or exits with the usage text. */
static long long int_arg(const char *name, const char *s)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || errno || *end || v < 0 || v > 1000000000LL) {
        fprintf(stderr, "crash_worker: %s needs a non-negative integer\n", name);
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *db = getenv("CAIRN_DATABASE_URL"), *executor = NULL;
    long long workers = 0, max_attempts = 0, steps = 5, seed = 1, sleep_ms = 0, timeout_ms = 60000;
    long long run = getpid();
    int first_id = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--db") == 0 && v)
            db = v;
        else if (strcmp(a, "--executor") == 0 && v)
            executor = v;
        else if (strcmp(a, "--workers") == 0)
            workers = int_arg(a, v);
        else if (strcmp(a, "--max-attempts") == 0)
            max_attempts = int_arg(a, v);
        else if (strcmp(a, "--steps") == 0)
            steps = int_arg(a, v);
        else if (strcmp(a, "--seed") == 0)
            seed = int_arg(a, v);
        else if (strcmp(a, "--sleep-ms") == 0)
            sleep_ms = int_arg(a, v);
        else if (strcmp(a, "--timeout-ms") == 0)
            timeout_ms = int_arg(a, v);
        else if (strcmp(a, "--run") == 0)
            run = int_arg(a, v);
        else if (a[0] == '-' && a[1] == '-')
            usage();
        else {
            first_id = i;
            break;
        }
        i++; /* every option takes a value */
    }
    if (!db || !executor || first_id >= argc || steps < 1 || timeout_ms > 0x7fffffff)
        usage();
    if (parse_crash_point(getenv("CRASH_AT"), &crash_at) != 0) {
        fprintf(stderr, "crash_worker: CRASH_AT='%s' is not before:K, inside:K, after:K or finish\n",
                getenv("CRASH_AT"));
        usage();
    }
    ledger_conninfo = db;
    ledger_run = run;
    /*
     * Open the ledger connections before the library starts running
     * workflows: opened lazily, a recovered run's executor threads spent
     * the first tens of milliseconds connecting to the ledger, so a kill
     * soon after "started" rarely caught a step in flight.
     */
    for (long long i = 0; i < workers && i < MAX_LEDGER_CONNS; i++)
        ledger_put(ledger_get());

    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = db;
    o.executor_id = executor;
    o.workers = (int)workers;
    o.max_attempts = (int)max_attempts;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "crashy", wf_crashy, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "advance", step_advance, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "crash_worker: starting: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "");
        cairn_close(h);
        return 1;
    }

    int failed = 0;
    for (int i = first_id; i < argc && !failed; i++) {
        char input[128];
        snprintf(input, sizeof input, "{\"steps\":%lld,\"seed\":%lld,\"sleep_ms\":%lld}", steps,
                 seed + (i - first_id), sleep_ms);
        cairn_start_options so;
        memset(&so, 0, sizeof so);
        so.size = sizeof so;
        so.id = argv[i];
        rc = cairn_start(h, "crashy", input, &so, NULL);
        if (rc != CAIRN_OK) {
            fprintf(stderr, "crash_worker: cairn_start(%s): %s: %s\n", argv[i], cairn_strerror(rc), cairn_errmsg(h));
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
            fprintf(stderr, "crash_worker: cairn_await(%s): %s: %s\n", argv[i], cairn_strerror(rc), cairn_errmsg(h));
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
    ledger_close_all();
    return failed ? 1 : 0;
}
