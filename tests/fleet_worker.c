/*
 * fleet_worker: one member of a fleet of cairn worker processes, for the
 * fleet tests (test_fleet.c), which start several of them, SIGKILL some,
 * SIGSTOP others past their lease and SIGCONT them, start two under one
 * executor ID, and stop them gracefully with SIGTERM.
 *
 * It runs the workflow "fleet". Its input {"n": N, "steps": K, "sleep_ms":
 * M, "jitter": J, "tx_sleep_ms": T} makes it run K steps starting from the
 * value N + 1000. Step k is the transactional step "post" when k % 3 == 2
 * and the ordinary step "mix" otherwise:
 *
 *   mix:  v' = (v * 31 + k) mod 1000000007, after sleeping M ms (J = 1:
 *         a random 0..2M ms);
 *   post: v' = (v * 17 + 7k + 1) mod 1000000007; in its transaction it
 *         inserts one row into fleet_ledger, then sleeps T ms (J = 1: a
 *         random 0..M/2 ms) before returning, so that a SIGSTOP can catch
 *         it with the transaction open.
 *
 * Each step returns {"v": v', "run": R}, R being the --run number of the
 * process that executed it. The workflow returns {"n": N, "v": v_K, "tx":
 * "k:R ..."}, listing for each transactional step the run whose execution
 * of it is recorded. The value is predictable from N, and the "tx" list
 * must match fleet_ledger, which has no unique constraint: a transactional
 * step committed twice would show as a second row there.
 *
 * Every execution of a step body is counted outside cairn, in autocommit,
 * in fleet_exec (kind 'VIOLATION' when the step already had a checkpoint
 * as its body started, 'RUN' otherwise); "post" writes that row after its
 * ledger row, so a test that sees it knows the step's transaction holds
 * its ledger row. The caller creates both tables:
 *
 *   CREATE TABLE fleet_ledger (wf text NOT NULL, step int NOT NULL, run int NOT NULL,
 *                              executor text NOT NULL, v bigint NOT NULL,
 *                              at timestamptz NOT NULL DEFAULT clock_timestamp());
 *   CREATE TABLE fleet_exec (seq bigserial PRIMARY KEY, kind text NOT NULL, wf text NOT NULL,
 *                            step int NOT NULL, run int NOT NULL,
 *                            at timestamptz NOT NULL DEFAULT clock_timestamp());
 *
 * Usage: fleet_worker --db CONNINFO --executor ID --run N [--workers N]
 *            [--lease-ms L] [--poll-ms P] [--queue Q] [--stop-ms D]
 *            [--app-version V] [--max-attempts N]
 *
 * The process starts its executors, prints "ready", and serves until
 * SIGTERM or SIGINT; then it prints "stopping", calls cairn_stop() with a
 * deadline of D ms (default 0), prints "stopped <code name>", closes the
 * handle and exits 0. Log messages of level INFO and above are printed as
 * "HH:MM:SS.mmm [LEVEL] message". Exit status 1 means the worker could not
 * start, 2 a usage error.
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

static const char *db_conninfo;
static const char *executor_id;
static long long run_no;

/* Idle connections for fleet_exec, shared by the executor threads. */
static pthread_mutex_t exec_lock = PTHREAD_MUTEX_INITIALIZER;
static PGconn *exec_idle[MAX_LEDGER_CONNS];
static int exec_nidle;

/* Reports a failure of the test harness itself and ends the process at once. */
static void die(const char *fmt, ...) CAIRN_PRINTF(1, 2);
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "fleet_worker[%d]: ", (int)getpid());
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
    _exit(1);
}

/*
 * The library's log lines go to stdout, which the test sends to a file per
 * process, stamped with the wall-clock time so that they can be lined up
 * with the database's timestamps.
 */
static void log_line(void *udata, int level, const char *message)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    (void)udata;
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    localtime_r(&now.tv_sec, &tm);
    fprintf(stdout, "%02d:%02d:%02d.%03ld [%s] %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000L,
            level >= 0 && level <= 3 ? names[level] : "?", message);
    fflush(stdout);
}

/*
 * Reads the integer member `key` of a flat JSON object this program or the
 * test wrote (no nesting, no escapes; Postgres' json_build_object() puts
 * spaces around the colon). Returns dflt when it is missing.
 */
static long long json_int(const char *json, const char *key, long long dflt)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\"", key);
    const char *p = json ? strstr(json, pattern) : NULL;
    if (!p)
        return dflt;
    p += strlen(pattern);
    while (*p == ' ')
        p++;
    if (*p++ != ':')
        return dflt;
    while (*p == ' ')
        p++;
    char *end;
    errno = 0;
    long long v = strtoll(p, &end, 10);
    return errno || end == p ? dflt : v;
}

/* Sleeps ms milliseconds. */
static void sleep_ms(long long ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A random number in [0, max], different in each call, thread and process. */
static long long random_upto(long long max)
{
    static _Thread_local unsigned state;
    if (max <= 0)
        return 0;
    if (!state) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        state = (unsigned)now.tv_nsec ^ ((unsigned)getpid() << 16) ^ (unsigned)(size_t)&state;
        if (!state)
            state = 1;
    }
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    return (long long)(state % (unsigned long long)(max + 1));
}

static PGconn *exec_get(void)
{
    PGconn *pg = NULL;
    pthread_mutex_lock(&exec_lock);
    if (exec_nidle > 0)
        pg = exec_idle[--exec_nidle];
    pthread_mutex_unlock(&exec_lock);
    if (pg)
        return pg;
    pg = PQconnectdb(db_conninfo);
    if (PQstatus(pg) != CONNECTION_OK)
        die("cannot open a connection for fleet_exec: %s", PQerrorMessage(pg));
    return pg;
}

static void exec_put(PGconn *pg)
{
    pthread_mutex_lock(&exec_lock);
    if (exec_nidle < MAX_LEDGER_CONNS) {
        exec_idle[exec_nidle++] = pg;
        pg = NULL;
    }
    pthread_mutex_unlock(&exec_lock);
    PQfinish(pg);
}

static void exec_close_all(void)
{
    pthread_mutex_lock(&exec_lock);
    while (exec_nidle > 0)
        PQfinish(exec_idle[--exec_nidle]);
    pthread_mutex_unlock(&exec_lock);
}

/*
 * Records one execution of a step body, committed on its own before the
 * body goes on, so that it counts even if the process dies right after.
 * A failure here voids the experiment: the process exits.
 */
static void exec_record(const char *wf, int step)
{
    static const char sql[] =
        "INSERT INTO fleet_exec (kind, wf, step, run)"
        " SELECT CASE WHEN EXISTS (SELECT 1 FROM cairn.steps WHERE workflow_id = $1 AND step = $2::int)"
        "             THEN 'VIOLATION' ELSE 'RUN' END, $1, $2::int, $3::int";
    char s_step[16], s_run[24];
    snprintf(s_step, sizeof s_step, "%d", step);
    snprintf(s_run, sizeof s_run, "%lld", run_no);
    const char *vals[3] = {wf, s_step, s_run};
    PGconn *pg = exec_get();
    PGresult *r = PQexecParams(pg, sql, 3, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("writing fleet_exec for %s step %d: %s", wf, step, PQerrorMessage(pg));
    PQclear(r);
    exec_put(pg);
}

/* The output of both steps: {"v": v, "run": R}. */
static int step_output(cairn_step_ctx *s, long long v, char **output)
{
    char buf[64];
    snprintf(buf, sizeof buf, "{\"v\":%lld,\"run\":%lld}", v, run_no);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_step_fail(s, "out of memory");
}

/* Step "mix". Both steps take the input {"v": v, "sleep_ms": M, "jitter": J, "tx_sleep_ms": T}. */
static int step_mix(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    (void)udata;
    int k = cairn_step_number(s);
    exec_record(cairn_step_workflow_id(s), k);
    long long v = json_int(input, "v", -1);
    long long ms = json_int(input, "sleep_ms", 0);
    if (v < 0)
        return cairn_step_fail(s, "malformed step input: %s", input);
    sleep_ms(json_int(input, "jitter", 0) ? random_upto(2 * ms) : ms);
    return step_output(s, (v * 31 + k) % VALUE_MOD, output);
}

/* Transactional step "post": the same input; writes its fleet_ledger row in the step's transaction. */
static int step_post(cairn_step_ctx *s, PGconn *conn, const char *input, char **output, void *udata)
{
    (void)udata;
    int k = cairn_step_number(s);
    long long v = json_int(input, "v", -1);
    if (v < 0)
        return cairn_step_fail(s, "malformed step input: %s", input);
    long long next = (v * 17 + 7LL * k + 1) % VALUE_MOD;
    char s_step[16], s_run[24], s_v[24];
    snprintf(s_step, sizeof s_step, "%d", k);
    snprintf(s_run, sizeof s_run, "%lld", run_no);
    snprintf(s_v, sizeof s_v, "%lld", next);
    const char *vals[5] = {cairn_step_workflow_id(s), s_step, s_run, executor_id, s_v};
    PGresult *r = PQexecParams(conn,
                               "INSERT INTO fleet_ledger (wf, step, run, executor, v)"
                               " VALUES ($1, $2::int, $3::int, $4, $5::bigint)",
                               5, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        int rc = cairn_step_fail_pg(s, r);
        PQclear(r);
        return rc;
    }
    PQclear(r);
    exec_record(cairn_step_workflow_id(s), k);
    if (json_int(input, "jitter", 0))
        sleep_ms(random_upto(json_int(input, "sleep_ms", 0) / 2));
    else
        sleep_ms(json_int(input, "tx_sleep_ms", 0));
    return step_output(s, next, output);
}

/* Workflow "fleet": see the comment at the top of the file. */
static int wf_fleet(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)udata;
    long long n = json_int(input, "n", -1);
    long long steps = json_int(input, "steps", -1);
    long long ms = json_int(input, "sleep_ms", 0);
    long long jitter = json_int(input, "jitter", 0);
    long long tx_ms = json_int(input, "tx_sleep_ms", 0);
    if (n < 0 || steps < 1 || steps > 100 || ms < 0 || ms > 600000 || tx_ms < 0 || tx_ms > 600000)
        return cairn_fail(ctx, "malformed workflow input: %s", input);
    long long v = n + 1000;
    char tx[1024] = "";
    size_t txlen = 0;
    for (int k = 1; k <= steps; k++) {
        char in[160];
        snprintf(in, sizeof in, "{\"v\":%lld,\"sleep_ms\":%lld,\"jitter\":%lld,\"tx_sleep_ms\":%lld}", v, ms,
                 jitter, tx_ms);
        int is_tx = k % 3 == 2;
        char *out = NULL;
        int rc = cairn_step(ctx, is_tx ? "post" : "mix", in, &out);
        if (rc != CAIRN_OK)
            return rc; /* CAIRN_ESHUTDOWN: the workflow resumes elsewhere or later */
        v = json_int(out, "v", -1);
        long long by = json_int(out, "run", -1);
        cairn_free(out);
        if (v < 0 || by < 0)
            return cairn_fail(ctx, "step %d returned no value or run", k);
        if (is_tx)
            txlen += (size_t)snprintf(tx + txlen, sizeof tx - txlen, "%s%d:%lld", txlen ? " " : "", k, by);
    }
    char buf[1200];
    snprintf(buf, sizeof buf, "{\"n\":%lld,\"v\":%lld,\"tx\":\"%s\"}", n, v, tx);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

static void usage(void)
{
    fprintf(stderr, "usage: fleet_worker --db CONNINFO --executor ID --run N [--workers N] [--lease-ms L]\n"
                    "           [--poll-ms P] [--queue Q] [--stop-ms D] [--app-version V] [--max-attempts N]\n");
    exit(2);
}

/* Parses a non-negative integer option value or exits with the usage text. */
static long long int_arg(const char *name, const char *s)
{
    char *end;
    errno = 0;
    long long v = s ? strtoll(s, &end, 10) : -1;
    if (!s || errno || *end || v < 0 || v > 1000000000LL) {
        fprintf(stderr, "fleet_worker: %s needs a non-negative integer\n", name);
        usage();
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *queue = NULL, *app_version = NULL;
    long long workers = 4, lease_ms = 0, poll_ms = 0, stop_ms = 0, max_attempts = 1000;
    run_no = -1;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--db") == 0)
            db_conninfo = v;
        else if (strcmp(a, "--executor") == 0)
            executor_id = v;
        else if (strcmp(a, "--run") == 0)
            run_no = int_arg(a, v);
        else if (strcmp(a, "--workers") == 0)
            workers = int_arg(a, v);
        else if (strcmp(a, "--lease-ms") == 0)
            lease_ms = int_arg(a, v);
        else if (strcmp(a, "--poll-ms") == 0)
            poll_ms = int_arg(a, v);
        else if (strcmp(a, "--queue") == 0)
            queue = v;
        else if (strcmp(a, "--stop-ms") == 0)
            stop_ms = int_arg(a, v);
        else if (strcmp(a, "--app-version") == 0)
            app_version = v;
        else if (strcmp(a, "--max-attempts") == 0)
            max_attempts = int_arg(a, v);
        else
            usage();
    }
    if (!db_conninfo || !executor_id || run_no < 0 || stop_ms > 0x7fffffff)
        usage();

    /*
     * SIGTERM and SIGINT are taken by sigwait() in this thread; blocking
     * them first means every thread the library starts inherits the mask,
     * so no other thread can be interrupted by them.
     */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    const char *queues[2] = {queue, NULL};
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = db_conninfo;
    o.executor_id = executor_id;
    o.workers = (int)workers;
    o.pool_connections = 3;
    o.max_attempts = (int)max_attempts;
    o.lease_ms = (int)lease_ms;
    o.poll_interval_ms = (int)poll_ms;
    o.app_version = app_version;
    o.queues = queue ? queues : NULL;
    o.log = log_line;
    o.log_level = CAIRN_LOG_INFO;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "fleet", wf_fleet, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "mix", step_mix, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(h, "post", step_post, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        printf("fleet_worker: starting: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "");
        cairn_close(h);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0) {
    }
    printf("stopping (signal %d)\n", sig);
    fflush(stdout);
    rc = cairn_stop(h, (int)stop_ms);
    printf("stopped %s\n", cairn_strerror(rc));
    fflush(stdout);
    cairn_close(h);
    exec_close_all();
    return 0;
}
