/*
 * Queue limits, fairness and versions, checked from the database.
 *
 * The limits are fleet-wide promises, so the tests that matter run the
 * workflows in several worker processes (queue_worker.c) with several
 * threads each, and watch two things: samples of cairn.workflow_status
 * taken in a tight loop while the work runs (each sample is one snapshot,
 * so a limit that holds at every commit holds in every sample), and the
 * workflows' own records in the table qlog, written by transactional
 * steps, which show exactly which workflows ran at the same time. The
 * other tests run workflows in handles inside this process.
 *
 * No assertion stands in for performance: every "eventually" has a
 * generous deadline, and the figures worth knowing are printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "internal.h" /* the commit connections, for their plans (test 14) */

#ifndef QUEUE_WORKER
#error "QUEUE_WORKER must name the queue_worker program"
#endif

/* Deadline for anything that must happen "eventually". */
#define EVENTUALLY_MS 120000

static PGconn *db; /* the test's own connection to the test database */

/* ---- queries ------------------------------------------------------------ */

/* Runs sql with n text parameters; fails the test if the statement fails. */
static PGresult *query(const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    return r;
}

/* The first column of the first row as a long; 0 for no row or NULL. */
static long q_long(const char *sql, int n, const char *const *vals)
{
    PGresult *r = query(sql, n, vals);
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* q_long() with one parameter, or none when p1 is NULL. */
static long q_long1(const char *sql, const char *p1)
{
    const char *vals[1] = {p1};
    return q_long(sql, p1 ? 1 : 0, vals);
}

/* The first column of the first row as text into buf; "<none>" for no row, "<null>" for NULL. */
static const char *q_text(const char *sql, int n, const char *const *vals, char *buf, size_t len)
{
    PGresult *r = query(sql, n, vals);
    if (PQntuples(r) == 0)
        snprintf(buf, len, "%s", "<none>");
    else
        snprintf(buf, len, "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return buf;
}

/* Runs sql with n parameters expecting it to fail; returns its SQLSTATE in buf. */
static const char *q_sqlstate(const char *sql, int n, const char *const *vals, char *buf, size_t len)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK)
        snprintf(buf, len, "%s", "<succeeded>");
    else
        snprintf(buf, len, "%s", PQresultErrorField(r, PG_DIAG_SQLSTATE) ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
                                                                          : "<no sqlstate>");
    PQclear(r);
    return buf;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Polls sql (one parameter, none when p1 is NULL) until it returns want or timeout_ms pass; returns the last value. */
static long wait_for(const char *sql, const char *p1, long want, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    long v;
    for (;;) {
        v = q_long1(sql, p1);
        if (v == want || now_ms() >= deadline)
            return v;
        sleep_ms(20);
    }
}

/* How many workflows of the queue reached SUCCESS, and how many reached any final status. */
static const char *const count_success_sql =
    "SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'SUCCESS'";
static const char *const count_final_sql =
    "SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status NOT IN ('ENQUEUED', 'PENDING')";

/* Fails unless every workflow of the queue finished with SUCCESS. */
static void expect_all_success(const char *queue, long want)
{
    char bad[512];
    const char *vals[1] = {queue};
    long ok = q_long1(count_success_sql, queue);
    if (ok != want)
        fail_msg("queue %s: %ld of %ld workflows reached SUCCESS; first other: %s", queue, ok, want,
                 q_text("SELECT s.id || ' ' || s.status || ' ' || coalesce(s.error::text, '') FROM cairn.workflow_status s"
                        " WHERE s.queue = $1 AND s.status <> 'SUCCESS' ORDER BY s.id LIMIT 1",
                        1, vals, bad, sizeof bad));
}

/*
 * Runs `probe` (one number; $1 is the queue) in a tight loop until every
 * one of `total` workflows of the queue has a final status or the deadline
 * passes, and returns the largest value it returned. *samples receives the
 * number of samples taken.
 */
static long sample_max(const char *probe, const char *queue, long total, long *samples)
{
    const char *vals[1] = {queue};
    long long deadline = now_ms() + EVENTUALLY_MS;
    long max = 0, n = 0;
    for (;;) {
        long v = q_long(probe, 1, vals);
        if (v > max)
            max = v;
        n++;
        if (n % 25 == 0 && (q_long(count_final_sql, 1, vals) >= total || now_ms() >= deadline))
            break;
    }
    *samples = n;
    return max;
}

/* ---- worker processes --------------------------------------------------- */

#define MAX_PROCS 8

typedef struct worker_proc {
    pid_t pid;
    int in_fd;  /* its standard input: closing it asks the worker to stop */
    int out_fd; /* its standard output: "ready", then "stopped" */
    char executor[64];
} worker_proc;

static worker_proc procs[MAX_PROCS];
static int nprocs;

/*
 * Appends what fd delivers to buf (NUL-terminated, *n bytes so far) until
 * buf holds marker, fd reaches its end, or timeout_ms pass. Returns 1 once
 * marker is there.
 */
static int read_until(int fd, char *buf, size_t len, size_t *n, const char *marker, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (strstr(buf, marker))
            return 1;
        long long left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, (int)left);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return 0;
        char tmp[256];
        ssize_t got = read(fd, tmp, sizeof tmp);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 0;
        size_t take = (size_t)got < len - 1 - *n ? (size_t)got : len - 1 - *n;
        memcpy(buf + *n, tmp, take);
        *n += take;
        buf[*n] = '\0';
    }
}

/*
 * Starts queue_worker serving `queue` with `workers` threads and waits
 * until it says it is ready (its executors run and claim).
 */
static void spawn_worker(const char *executor, int workers, const char *queue)
{
    assert_true(nprocs < MAX_PROCS);
    worker_proc *w = &procs[nprocs];
    char nworkers[16];
    snprintf(nworkers, sizeof nworkers, "%d", workers);
    snprintf(w->executor, sizeof w->executor, "%s", executor);
    const char *argv[] = {QUEUE_WORKER, "--db", t_db(), "--executor", executor, "--workers", nworkers,
                          "--poll-ms", "200", "--queue", queue, NULL};
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        fail_msg("pipe: %s", strerror(errno));
    /* Our ends stay out of later workers, so that closing in[1] is the end of this worker's input. */
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    fcntl(out[0], F_SETFD, FD_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        execv(QUEUE_WORKER, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", QUEUE_WORKER, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    w->pid = pid;
    w->in_fd = in[1];
    w->out_fd = out[0];
    nprocs++;
    char buf[256] = "";
    size_t n = 0;
    if (!read_until(w->out_fd, buf, sizeof buf, &n, "ready\n", EVENTUALLY_MS))
        fail_msg("queue_worker %s did not get ready; it said: %s", executor, buf);
}

/*
 * Stops every worker process: closes their standard input, lets them stop
 * gracefully and reaps them. A worker that does not stop in time is
 * killed. With check set, anything but a clean exit fails the test.
 */
static void stop_workers(int check)
{
    int bad = -1;
    int bad_status = 0;
    for (int i = 0; i < nprocs; i++)
        close(procs[i].in_fd);
    for (int i = 0; i < nprocs; i++) {
        char buf[256] = "";
        size_t n = 0;
        if (!read_until(procs[i].out_fd, buf, sizeof buf, &n, "stopped\n", 60000))
            kill(procs[i].pid, SIGKILL);
        close(procs[i].out_fd);
        int status = 0;
        while (waitpid(procs[i].pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (bad < 0 && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
            bad = i;
            bad_status = status;
        }
    }
    int had = nprocs;
    nprocs = 0;
    if (check && bad >= 0)
        fail_msg("queue_worker %s of %d ended with wait status 0x%x", procs[bad].executor, had,
                 (unsigned)bad_status);
}

/* After each test, also a failed one: no worker process outlives it. */
static int teardown_workers(void **state)
{
    stop_workers(0);
    return 0;
}

/* ---- workflows run inside this process ---------------------------------- */

/* Step "tnap": sleeps the number of milliseconds its input says and returns the input. */
static int step_tnap(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    int ms = atoi(in);
    if (ms > 0)
        sleep_ms(ms);
    *out = strdup(in);
    return *out ? CAIRN_OK : cairn_step_fail(s, "out of memory");
}

/* Workflow "tnap": one "tnap" step; its output is the input. */
static int wf_tnap(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "tnap", in, out);
}

/* Workflow "tnoop": no steps; its output is the input. */
static int wf_tnoop(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    *out = strdup(in);
    return *out ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

/* Workflow "snoop", for the starvation test only: no steps, output null. */
static int wf_snoop(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return CAIRN_OK;
}

typedef struct handle_cfg {
    const char *executor;
    int workers;
    int poll_ms;
    const char *const *queues;  /* NULL: every queue */
    const char *app_version;
    const char *const *accept;  /* NULL: any version */
    int start;                  /* call cairn_start_workers() */
    unsigned flags;             /* cairn_options.flags */
} handle_cfg;

/* Opens a handle in this process that runs "tnap", "tnoop" and "snoop". */
static cairn *open_handle(const handle_cfg *c)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = c->executor;
    o.workers = c->workers;
    o.poll_interval_ms = c->poll_ms;
    o.queues = c->queues;
    o.app_version = c->app_version;
    o.accept_versions = c->accept;
    o.flags = c->flags;
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", cairn_errmsg(h));
        cairn_close(h);
        fail_msg("cairn_open: %s", msg);
    }
    T_OK(h, cairn_register_step(h, "tnap", step_tnap, NULL, NULL));
    T_OK(h, cairn_register_workflow(h, "tnap", wf_tnap, NULL));
    T_OK(h, cairn_register_workflow(h, "tnoop", wf_tnoop, NULL));
    T_OK(h, cairn_register_workflow(h, "snoop", wf_snoop, NULL));
    if (c->start)
        T_OK(h, cairn_start_workers(h));
    return h;
}

/* Configures a queue through SQL; limits of 0 are passed as NULL (no limit). */
static void set_queue_sql(const char *queue, int conc, int wconc, int rate, int period_ms, int pconc)
{
    char b[5][16];
    int v[5] = {conc, wconc, rate, period_ms, pconc};
    const char *vals[6] = {queue};
    for (int i = 0; i < 5; i++) {
        snprintf(b[i], sizeof b[i], "%d", v[i]);
        vals[i + 1] = v[i] ? b[i] : NULL;
    }
    PQclear(query("SELECT cairn.set_queue($1, concurrency => $2::int, worker_concurrency => $3::int,"
                  " rate_limit => $4::int, rate_period => $5::int * interval '1 millisecond',"
                  " partition_concurrency => $6::int)",
                  6, vals));
}

/* ---- setup -------------------------------------------------------------- */

static int group_setup(void **state)
{
    t_fresh_db("cairn_test_queue");
    cairn_close(t_open("setup", 1));
    db = PQconnectdb(t_db());
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to %s: %s", t_db(), PQerrorMessage(db));
        return -1;
    }
    PGresult *r = PQexec(db, "CREATE TABLE qlog (wf text PRIMARY KEY, executor text NOT NULL,"
                             " started_at timestamptz NOT NULL, ended_at timestamptz)");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    stop_workers(0);
    PQfinish(db);
    return 0;
}

/*
 * The most workflows of queue $1 that the qlog rows show running at one
 * moment. The count peaks at some workflow's start, so it is enough to
 * count, at each start, the intervals that contain it.
 */
static const char *const overlap_sql =
    "SELECT coalesce(max(n), 0) FROM ("
    "  SELECT (SELECT count(*) FROM qlog b JOIN cairn.workflow_status sb ON sb.id = b.wf"
    "           WHERE sb.queue = $1 AND b.started_at <= a.started_at AND b.ended_at > a.started_at) AS n"
    "    FROM qlog a JOIN cairn.workflow_status sa ON sa.id = a.wf WHERE sa.queue = $1) x";

/* The same, counted per executor. */
static const char *const overlap_per_executor_sql =
    "SELECT coalesce(max(n), 0) FROM ("
    "  SELECT (SELECT count(*) FROM qlog b JOIN cairn.workflow_status sb ON sb.id = b.wf"
    "           WHERE sb.queue = $1 AND b.executor = a.executor"
    "             AND b.started_at <= a.started_at AND b.ended_at > a.started_at) AS n"
    "    FROM qlog a JOIN cairn.workflow_status sa ON sa.id = a.wf WHERE sa.queue = $1) x";

/* The same, counted per partition key (workflows without one left out). */
static const char *const overlap_per_partition_sql =
    "SELECT coalesce(max(n), 0) FROM ("
    "  SELECT (SELECT count(*) FROM qlog b JOIN cairn.workflow_status sb ON sb.id = b.wf"
    "           WHERE sb.queue = $1 AND sb.partition_key = sa.partition_key"
    "             AND b.started_at <= a.started_at AND b.ended_at > a.started_at) AS n"
    "    FROM qlog a JOIN cairn.workflow_status sa ON sa.id = a.wf"
    "   WHERE sa.queue = $1 AND sa.partition_key IS NOT NULL) x";

/* Every workflow of queue $1 left exactly one complete qlog row. */
static void expect_qlog_complete(const char *queue, long want)
{
    long rows = q_long1("SELECT count(*) FROM qlog l JOIN cairn.workflow_status s ON s.id = l.wf"
                        " WHERE s.queue = $1 AND l.ended_at IS NOT NULL AND l.ended_at >= l.started_at",
                        queue);
    if (rows != want)
        fail_msg("queue %s: %ld complete qlog rows for %ld workflows", queue, rows, want);
}

/* ---- 1. global concurrency across processes ----------------------------- */

/*
 * Each process has fewer threads than the limit, so the queue reaches its
 * limit only with work in two processes or more at once, and every
 * process keeps asking for more while it is there.
 */
enum { CONC_LIMIT = 3, CONC_WORKFLOWS = 400, CONC_PROCS = 4, CONC_THREADS = 2 };

static void test_concurrency_across_processes(void **state)
{
    const char *q = "conc_q";
    cairn_queue_options qo = {.size = sizeof qo, .concurrency = CONC_LIMIT};
    cairn *admin = open_handle(&(handle_cfg){.executor = "conc-admin", .workers = 1});
    T_OK(admin, cairn_queue_set(admin, q, &qo));
    cairn_close(admin);

    char n[16];
    snprintf(n, sizeof n, "%d", CONC_WORKFLOWS);
    const char *vals[1] = {n};
    PQclear(query("SELECT cairn.enqueue('qwork', '5', queue => 'conc_q', id => 'conc-' || i)"
                  "  FROM generate_series(1, $1::int) i",
                  1, vals));
    long long t0 = now_ms();
    for (int i = 0; i < CONC_PROCS; i++) {
        char ex[32];
        snprintf(ex, sizeof ex, "conc-w%d", i);
        spawn_worker(ex, CONC_THREADS, q);
    }
    long samples = 0;
    long max = sample_max("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'PENDING'", q,
                          CONC_WORKFLOWS, &samples);
    long long took = now_ms() - t0;
    stop_workers(1);

    long overlap = q_long1(overlap_sql, q);
    long executors = q_long1("SELECT count(DISTINCT executor) FROM qlog WHERE wf LIKE 'conc-%'", NULL);
    print_message("concurrency %d, %d processes x %d threads: %d workflows in %lld ms; at most %ld PENDING in %ld"
                  " samples; at most %ld overlapping in their own records; %ld processes ran some\n",
                  CONC_LIMIT, CONC_PROCS, CONC_THREADS, CONC_WORKFLOWS, took, max, samples, overlap, executors);
    expect_all_success(q, CONC_WORKFLOWS);
    expect_qlog_complete(q, CONC_WORKFLOWS);
    if (max > CONC_LIMIT)
        fail_msg("a sample saw %ld workflows of queue %s PENDING; the limit is %d", max, q, CONC_LIMIT);
    if (overlap > CONC_LIMIT)
        fail_msg("the workflows' records show %ld running at once; the limit is %d", overlap, CONC_LIMIT);
    /* The limit was really pressed against, by more than one process, so the checks above meant something. */
    assert_true(overlap >= 2);
    assert_true(executors >= 2);
}

/* ---- 2. per-worker concurrency ------------------------------------------ */

enum { WCONC_LIMIT = 2, WCONC_WORKFLOWS = 100, WCONC_THREADS = 4 };

static void test_worker_concurrency(void **state)
{
    const char *q = "wconc_q";
    cairn *admin = open_handle(&(handle_cfg){.executor = "wconc-admin", .workers = 1});
    cairn_queue_options qo = {.size = sizeof qo, .worker_concurrency = WCONC_LIMIT};
    T_OK(admin, cairn_queue_set(admin, q, &qo));
    cairn_close(admin);

    /* Both workers are up before the work arrives, so that both can take some. */
    spawn_worker("wconc-a", WCONC_THREADS, q);
    spawn_worker("wconc-b", WCONC_THREADS, q);
    char n[16];
    snprintf(n, sizeof n, "%d", WCONC_WORKFLOWS);
    const char *vals[1] = {n};
    PQclear(query("SELECT cairn.enqueue('qwork', '20', queue => 'wconc_q', id => 'wconc-' || i)"
                  "  FROM generate_series(1, $1::int) i",
                  1, vals));
    long long t0 = now_ms();
    long samples = 0;
    long max = sample_max("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM cairn.workflow_status"
                          " WHERE queue = $1 AND status = 'PENDING' GROUP BY executor_id) x",
                          q, WCONC_WORKFLOWS, &samples);
    long long took = now_ms() - t0;
    stop_workers(1);

    long overlap = q_long1(overlap_per_executor_sql, q);
    long total_overlap = q_long1(overlap_sql, q);
    long a = q_long1("SELECT count(*) FROM qlog WHERE executor = $1", "wconc-a");
    long b = q_long1("SELECT count(*) FROM qlog WHERE executor = $1", "wconc-b");
    print_message("worker_concurrency %d, 2 processes x %d threads: %d workflows in %lld ms; at most %ld PENDING on"
                  " one executor in %ld samples, %ld in the records (%ld across both); wconc-a ran %ld, wconc-b %ld\n",
                  WCONC_LIMIT, WCONC_THREADS, WCONC_WORKFLOWS, took, max, samples, overlap, total_overlap, a, b);
    expect_all_success(q, WCONC_WORKFLOWS);
    expect_qlog_complete(q, WCONC_WORKFLOWS);
    if (max > WCONC_LIMIT)
        fail_msg("a sample saw %ld workflows of queue %s PENDING on one executor; the limit is %d", max, q,
                 WCONC_LIMIT);
    if (overlap > WCONC_LIMIT)
        fail_msg("the records show %ld running at once on one executor; the limit is %d", overlap, WCONC_LIMIT);
    /* Each process ran work; one that the limit kept out entirely would be a bug too. */
    assert_true(a > 0 && b > 0);
}

/* ---- 3. rate limit ------------------------------------------------------ */

enum { RATE_LIMIT = 4, RATE_PERIOD_MS = 1000, RATE_WORKFLOWS = 16 };

static void test_rate_limit(void **state)
{
    const char *q = "rate_q";
    set_queue_sql(q, 0, 0, RATE_LIMIT, RATE_PERIOD_MS, 0);
    char n[16];
    snprintf(n, sizeof n, "%d", RATE_WORKFLOWS);
    const char *vals[1] = {n};
    PQclear(query("SELECT cairn.enqueue('qwork', '0', queue => 'rate_q', id => 'rate-' || i)"
                  "  FROM generate_series(1, $1::int) i",
                  1, vals));
    spawn_worker("rate-a", 3, q);
    spawn_worker("rate-b", 3, q);
    long done = wait_for(count_final_sql, q, RATE_WORKFLOWS, EVENTUALLY_MS);
    stop_workers(1);
    /* Throttled, not stuck: everything ran. */
    assert_int_equal(done, RATE_WORKFLOWS);
    expect_all_success(q, RATE_WORKFLOWS);

    char period[16], span[64];
    snprintf(period, sizeof period, "%d", RATE_PERIOD_MS);
    const char *pv[2] = {q, period};
    /* Every window [s, s + period) that starts at a start holds the most starts of any such window. */
    long worst = q_long("SELECT coalesce(max(n), 0) FROM ("
                        "  SELECT (SELECT count(*) FROM cairn.workflow_status b WHERE b.queue = $1"
                        "             AND b.started_at >= a.started_at"
                        "             AND b.started_at < a.started_at + $2::int * interval '1 millisecond') AS n"
                        "    FROM cairn.workflow_status a WHERE a.queue = $1) x",
                        2, pv);
    const char *qv[1] = {q};
    q_text("SELECT round(extract(epoch FROM max(started_at) - min(started_at)) * 1000)"
           "  FROM cairn.workflow_status WHERE queue = $1",
           1, qv, span, sizeof span);
    print_message("rate limit %d per %d ms: %d starts spread over %s ms; the busiest window held %ld\n", RATE_LIMIT,
                  RATE_PERIOD_MS, RATE_WORKFLOWS, span, worst);
    if (worst > RATE_LIMIT)
        fail_msg("a window of %d ms held %ld starts; the limit is %d", RATE_PERIOD_MS, worst, RATE_LIMIT);
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND started_at IS NULL", q),
                     0);
}

/* ---- 4. priority order within a queue ----------------------------------- */

static void test_priority_order(void **state)
{
    /* Priorities in enqueue order; each is its own transaction, so the enqueue order is the created_at order. */
    static const int prio[] = {5, 1, 3, 1, -2, 3, 0, 5, 1, 0};
    enum { N = sizeof prio / sizeof prio[0] };
    for (int i = 0; i < N; i++) {
        char id[32], p[16];
        snprintf(id, sizeof id, "prio-%02d", i);
        snprintf(p, sizeof p, "%d", prio[i]);
        const char *vals[2] = {id, p};
        PQclear(query("SELECT cairn.enqueue('tnoop', 'null', queue => 'prio_q', id => $1, priority => $2::int)", 2,
                      vals));
    }
    /* The expected order: by priority, then by enqueue order (a stable sort). */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = 1; i < N; i++)
        for (int j = i; j > 0 && prio[order[j - 1]] > prio[order[j]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }

    const char *queues[] = {"prio_q", NULL};
    cairn *h = open_handle(&(handle_cfg){.executor = "prio", .workers = 1, .poll_ms = 100, .queues = queues,
                                         .start = 1});
    long done = wait_for(count_success_sql, "prio_q", N, EVENTUALLY_MS);
    cairn_close(h);
    assert_int_equal(done, N);

    PGresult *r = query("SELECT id, started_at, started_at = lag(started_at) OVER (ORDER BY started_at)"
                        "  FROM cairn.workflow_status WHERE queue = 'prio_q' ORDER BY started_at, id",
                        0, NULL);
    assert_int_equal(PQntuples(r), N);
    char got[N * 16] = "", want[N * 16] = "";
    int mismatch = 0, ties = 0;
    for (int i = 0; i < N; i++) {
        char exp[32];
        snprintf(exp, sizeof exp, "prio-%02d", order[i]);
        mismatch |= strcmp(PQgetvalue(r, i, 0), exp) != 0;
        ties |= PQgetvalue(r, i, 2)[0] == 't';
        snprintf(got + strlen(got), sizeof got - strlen(got), " %s", PQgetvalue(r, i, 0) + 5);
        snprintf(want + strlen(want), sizeof want - strlen(want), " %s", exp + 5);
    }
    PQclear(r);
    if (mismatch || ties)
        fail_msg("claim order by started_at:%s; expected:%s%s", got, want, ties ? " (some started_at tie)" : "");
}

/* ---- 5. partition exclusivity ------------------------------------------- */

enum { PART_KEYS = 4, PART_PER_KEY = 30, PART_FREE = 24, PART_PROCS = 2, PART_THREADS = 4 };

static void test_partition_exclusive(void **state)
{
    const char *q = "part_q";
    cairn *admin = open_handle(&(handle_cfg){.executor = "part-admin", .workers = 1});
    cairn_queue_options qo = {.size = sizeof qo, .partition_concurrency = 1};
    T_OK(admin, cairn_queue_set(admin, q, &qo));
    cairn_close(admin);

    /*
     * Every worker process is up before anything is enqueued. A process
     * alone has as many threads as there are keys, so each of its claims
     * rightly takes the next workflow of the key it just finished and none
     * of the keyless work; had the second process still been starting
     * (ASan, a loaded machine), the first would have run most of the keyed
     * work before anyone had a thread for the rest, and the measurement
     * below would have been of process start-up, not of the claim.
     */
    for (int i = 0; i < PART_PROCS; i++) {
        char ex[32];
        snprintf(ex, sizeof ex, "part-w%d", i);
        spawn_worker(ex, PART_THREADS, q);
    }
    /* The partitioned work first, so that it is ahead in the queue's order of the work without a key. */
    char nkeys[16], per[16], nfree[16];
    snprintf(nkeys, sizeof nkeys, "%d", PART_KEYS);
    snprintf(per, sizeof per, "%d", PART_PER_KEY);
    snprintf(nfree, sizeof nfree, "%d", PART_FREE);
    const char *pv[2] = {nkeys, per};
    PQclear(query("SELECT cairn.enqueue('qwork', '15', queue => 'part_q', id => 'part-' || k || '-' || i,"
                  "                     partition_key => 'key' || k)"
                  "  FROM generate_series(1, $2::int) i, generate_series(1, $1::int) k",
                  2, pv));
    const char *fv[1] = {nfree};
    PQclear(query("SELECT cairn.enqueue('qwork', '15', queue => 'part_q', id => 'part-free-' || i)"
                  "  FROM generate_series(1, $1::int) i",
                  1, fv));
    const long total = PART_KEYS * PART_PER_KEY + PART_FREE;
    long samples = 0;
    long max = sample_max("SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM cairn.workflow_status"
                          " WHERE queue = $1 AND status = 'PENDING' AND partition_key IS NOT NULL"
                          " GROUP BY partition_key) x",
                          q, total, &samples);
    stop_workers(1);

    long overlap = q_long1(overlap_per_partition_sql, q);
    /*
     * How many partitioned workflows had not started when the last one
     * without a key started: a measure of the claims alone (when a keyless
     * workflow ends also depends on how fast its process runs it, slow
     * under ASan on a loaded machine).
     */
    long behind = q_long1("SELECT count(*) FROM qlog l JOIN cairn.workflow_status s ON s.id = l.wf"
                          " WHERE s.queue = $1 AND s.partition_key IS NOT NULL AND l.started_at > ("
                          "   SELECT max(f.started_at) FROM qlog f JOIN cairn.workflow_status fs ON fs.id = f.wf"
                          "    WHERE fs.queue = $1 AND fs.partition_key IS NULL)",
                          q);
    print_message("partition_concurrency 1, %d keys x %d + %d without a key: at most %ld PENDING per key in %ld"
                  " samples, %ld in the records; %ld keyed workflows still to start when the last keyless one"
                  " started\n",
                  PART_KEYS, PART_PER_KEY, PART_FREE, max, samples, overlap, behind);
    expect_all_success(q, total);
    expect_qlog_complete(q, total);
    if (max > 1)
        fail_msg("a sample saw %ld workflows of one partition PENDING; the limit is 1", max);
    if (overlap > 1)
        fail_msg("the records show %ld workflows of one partition running at once; the limit is 1", overlap);
    /*
     * The keyed work runs one at a time per key (at least PART_PER_KEY
     * workflows in a row); the keyless work, enqueued behind it, has the
     * other threads. Had it waited behind the keyed backlog, nothing keyed
     * would be left when it started.
     */
    if (behind < PART_KEYS)
        fail_msg("only %ld keyed workflows were left when the last keyless one started: they waited behind the"
                 " partitions",
                 behind);
}

/* ---- 5b. work held back by a limit is reported ------------------------- */

/*
 * Claims for executor hint-exec from one queue through cairn.claim()
 * itself; *claimed receives how many workflows it took. Returns the retry
 * hint in milliseconds, or -1 when the claim gave none (which tells the
 * dispatcher the queue is empty, so that it sleeps until a NOTIFY or its
 * poll interval, whatever its own runs do).
 */
static long claim_direct(const char *queue, long *claimed)
{
    const char *vals[1] = {queue};
    PGresult *r = query("SELECT id, retry_ms FROM cairn.claim('hint-exec', ARRAY['hint_wf'], 5, 20, ARRAY[$1])", 1,
                        vals);
    long hint = -1;
    *claimed = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        if (!PQgetisnull(r, i, 0))
            (*claimed)++;
        else if (!PQgetisnull(r, i, 1))
            hint = atol(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return hint;
}

static void test_held_work_is_reported(void **state)
{
    /* Only a LIVE executor claims anything. */
    PQclear(query("INSERT INTO cairn.executors (id, instance, state, lease) VALUES ('hint-exec', 'i', 'DEAD', '1 hour')",
                  0, NULL));
    PQclear(query("SELECT cairn.enqueue('hint_wf', 'null', queue => 'hint_dead_q')", 0, NULL));
    long taken = 0;
    assert_int_equal(claim_direct("hint_dead_q", &taken), -1);
    assert_int_equal(taken, 0);
    PQclear(query("UPDATE cairn.executors SET state = 'LIVE' WHERE id = 'hint-exec'", 0, NULL));
    claim_direct("hint_dead_q", &taken);
    assert_int_equal(taken, 1);

    set_queue_sql("hint_wq", 0, 1, 0, 0, 0);
    set_queue_sql("hint_pq", 0, 0, 0, 0, 1);
    PQclear(query("SELECT cairn.enqueue('hint_wf', 'null', queue => 'hint_wq') FROM generate_series(1, 2)", 0, NULL));
    PQclear(query("SELECT cairn.enqueue('hint_wf', 'null', queue => 'hint_pq', partition_key => 'k')"
                  "  FROM generate_series(1, 2)",
                  0, NULL));
    static const char *const queues[] = {"hint_wq", "hint_pq"};
    for (int i = 0; i < 2; i++) {
        long claimed = 0;
        claim_direct(queues[i], &claimed);
        assert_int_equal(claimed, 1);
        /* The second workflow waits behind the limit: the claim takes nothing but says to come back. */
        long hint = claim_direct(queues[i], &claimed);
        assert_int_equal(claimed, 0);
        if (hint <= 0)
            fail_msg("queue %s: a claim that found work held back by a limit gave no retry hint (%ld)", queues[i],
                     hint);
    }
    /* A queue without work gives no hint: the dispatcher may sleep. */
    long claimed = 0;
    assert_int_equal(claim_direct("hint_empty_q", &claimed), -1);
    assert_int_equal(claimed, 0);
    /* Nobody runs hint_wf; what the claims took is dropped. */
    PQclear(query("DELETE FROM cairn.workflow_status WHERE name = 'hint_wf'", 0, NULL));
    PQclear(query("DELETE FROM cairn.executors WHERE id = 'hint-exec'", 0, NULL));
}

/* ---- 6. dedup ----------------------------------------------------------- */

static void test_dedup(void **state)
{
    PGconn *pg = t_pg();
    cairn_enqueue_options eo = {.size = sizeof eo, .queue = "dedup_q", .dedup_key = "dk"};
    char *first = NULL, *again = NULL, *other = NULL, *next = NULL;
    T_OK(NULL, cairn_enqueue(pg, "tnap", "100", &eo, &first));
    /* A repeat returns the live workflow's ID. */
    T_OK(NULL, cairn_enqueue(pg, "tnap", "100", &eo, &again));
    assert_string_equal(again, first);
    /* With dedup_error it fails, with SQLSTATE 23505. */
    eo.dedup_error = 1;
    T_RC(NULL, CAIRN_ECONFLICT, cairn_enqueue(pg, "tnap", "100", &eo, NULL));
    assert_string_equal(cairn_sqlstate(NULL), "23505");

    /* The same from SQL. */
    char buf[256];
    const char *dv[1] = {"dk"};
    assert_string_equal(q_text("SELECT cairn.enqueue('tnap', '100', queue => 'dedup_q', dedup_key => $1)", 1, dv, buf,
                               sizeof buf),
                        first);
    assert_string_equal(q_sqlstate("SELECT cairn.enqueue('tnap', '100', queue => 'dedup_q', dedup_key => $1,"
                                   " dedup_error => true)",
                                   1, dv, buf, sizeof buf),
                        "23505");
    /* The key is per queue: another queue's is free. */
    cairn_enqueue_options eo2 = {.size = sizeof eo2, .queue = "dedup_q2", .dedup_key = "dk", .dedup_error = 1};
    T_OK(NULL, cairn_enqueue(pg, "tnap", "1", &eo2, &other));
    assert_string_not_equal(other, first);
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'dedup_q' AND dedup_key = $1",
                             "dk"),
                     1);

    /* Once the holder finishes, the key is free again. */
    const char *queues[] = {"dedup_q", "dedup_q2", NULL};
    cairn *h = open_handle(&(handle_cfg){.executor = "dedup", .workers = 2, .poll_ms = 100, .queues = queues,
                                         .start = 1});
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    T_OK(h, cairn_await(h, first, EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    T_OK(NULL, cairn_enqueue(pg, "tnap", "1", &eo, &next)); /* dedup_error is still set */
    assert_string_not_equal(next, first);
    T_OK(h, cairn_await(h, next, EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    T_OK(h, cairn_await(h, other, EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_close(h);
    cairn_free(first);
    cairn_free(again);
    cairn_free(other);
    cairn_free(next);
    PQfinish(pg);
}

/* ---- 7. delayed start --------------------------------------------------- */

static void test_delay(void **state)
{
    const char *queues[] = {"delay_q", NULL};
    cairn *h = open_handle(&(handle_cfg){.executor = "delay", .workers = 4, .poll_ms = 100, .queues = queues,
                                         .start = 1});
    PQclear(query("SELECT cairn.enqueue('tnoop', '1', queue => 'delay_q', id => 'delay-sql',"
                  " delay => interval '2 seconds')",
                  0, NULL));
    PGconn *pg = t_pg();
    cairn_enqueue_options eo = {.size = sizeof eo, .queue = "delay_q", .id = "delay-c", .delay_ms = 1500};
    T_OK(NULL, cairn_enqueue(pg, "tnoop", "2", &eo, NULL));
    PQfinish(pg);
    cairn_start_options so = {.size = sizeof so, .queue = "delay_q", .id = "delay-start", .delay_ms = 1200};
    T_OK(h, cairn_start(h, "tnoop", "3", &so, NULL));
    /* A control without a delay shows the handle claims promptly. */
    PQclear(query("SELECT cairn.enqueue('tnoop', '4', queue => 'delay_q', id => 'delay-none')", 0, NULL));

    long done = wait_for(count_success_sql, "delay_q", 4, EVENTUALLY_MS);
    cairn_close(h);
    assert_int_equal(done, 4);
    PGresult *r = query("SELECT id, round(extract(epoch FROM started_at - created_at) * 1000)"
                        "  FROM cairn.workflow_status WHERE queue = 'delay_q' ORDER BY id",
                        0, NULL);
    for (int i = 0; i < PQntuples(r); i++)
        print_message("%s started %s ms after it was enqueued\n", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
    PQclear(r);
    static const struct {
        const char *id;
        int delay_ms;
    } want[] = {{"delay-sql", 2000}, {"delay-c", 1500}, {"delay-start", 1200}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char ms[16];
        snprintf(ms, sizeof ms, "%d", want[i].delay_ms);
        const char *vals[2] = {want[i].id, ms};
        if (q_long("SELECT (started_at >= created_at + $2::int * interval '1 millisecond')::int"
                   "  FROM cairn.workflow_status WHERE id = $1",
                   2, vals) != 1)
            fail_msg("%s started before its delay of %d ms had passed on the database clock", want[i].id,
                     want[i].delay_ms);
    }
}

/* ---- 8. no starvation across queues ------------------------------------- */

enum { STARVE_BACKLOG = 50000, STARVE_SMALL = 5 };

static void test_no_starvation(void **state)
{
    long long t0 = now_ms();
    char n[16];
    snprintf(n, sizeof n, "%d", STARVE_BACKLOG);
    const char *vals[1] = {n};
    PQclear(query("SELECT count(cairn.enqueue('snoop', NULL, queue => 'starve_a')) FROM generate_series(1, $1::int)",
                  1, vals));
    long long enqueued_ms = now_ms() - t0;

    /* Every queue (a loose scan finds the queues with work), as a default handle does. */
    const int poll_ms = 1000;
    cairn *h = open_handle(&(handle_cfg){.executor = "starve", .workers = 8, .poll_ms = poll_ms, .start = 1});
    /* Queue A is being drained before B gets its work. */
    long drained = wait_for("SELECT least(count(*), 500) FROM cairn.workflow_status"
                            " WHERE queue = $1 AND status = 'SUCCESS'",
                            "starve_a", 500, EVENTUALLY_MS);
    assert_int_equal(drained, 500);
    for (int i = 0; i < STARVE_SMALL; i++) {
        char id[32];
        snprintf(id, sizeof id, "starve-b-%d", i);
        const char *bv[1] = {id};
        PQclear(query("SELECT cairn.enqueue('snoop', NULL, queue => 'starve_b', id => $1)", 1, bv));
    }
    long done_b = wait_for(count_success_sql, "starve_b", STARVE_SMALL, EVENTUALLY_MS);
    long left_a = q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'ENQUEUED'",
                          "starve_a");
    cairn_close(h);
    assert_int_equal(done_b, STARVE_SMALL);

    long wait_b = q_long1("SELECT round(extract(epoch FROM max(started_at - created_at)) * 1000)"
                          "  FROM cairn.workflow_status WHERE queue = $1",
                          "starve_b");
    long a_done = q_long1(count_success_sql, "starve_a");
    long long took = now_ms() - t0;
    print_message("%d enqueued on A in one statement in %lld ms; B's %d workflows waited at most %ld ms from"
                  " enqueue to claim while A still held %ld (A ran %ld meanwhile; test %lld ms)\n",
                  STARVE_BACKLOG, enqueued_ms, STARVE_SMALL, wait_b, left_a, a_done, took);
    /* Drop A's remainder, so that no later test pays for it. */
    PQclear(query("DELETE FROM cairn.workflow_status WHERE queue = 'starve_a'", 0, NULL));

    /* B did not wait for A's backlog ... */
    if (left_a == 0)
        fail_msg("A's backlog of %d was drained before B's %d workflows finished: B waited behind it",
                 STARVE_BACKLOG, STARVE_SMALL);
    /* ... and was claimed within the dispatcher's interval. */
    if (wait_b > poll_ms)
        fail_msg("B's workflows waited up to %ld ms to be claimed; the dispatch interval is %d ms", wait_b, poll_ms);
}

/* ---- 8b. a claim does not walk the work of other names ------------------ */

#define WALK_BACKLOG 50000

/* The buffers one statement (EXPLAIN ANALYZE of sql, with $1 = ex and $2 = name) read. */
static long plan_buffers(const char *sql, const char *ex, const char *name)
{
    const char *vals[2] = {ex, name};
    char explain[512];
    snprintf(explain, sizeof explain, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) %s", sql);
    PGresult *r = query(explain, 2, vals);
    const char *plan = PQgetvalue(r, 0, 0);
    const char *hit = strstr(plan, "\"Shared Hit Blocks\": ");
    const char *read = strstr(plan, "\"Shared Read Blocks\": ");
    long n = (hit ? atol(hit + strlen("\"Shared Hit Blocks\": ")) : -1) +
             (read ? atol(read + strlen("\"Shared Read Blocks\": ")) : 0);
    if (!hit)
        fail_msg("no buffer counts in the plan: %s", plan);
    PQclear(r);
    return n;
}

/* The buffers one cairn.claim() of executor ex, running only name, reads in walk_q. */
static long claim_buffers(const char *ex, const char *name)
{
    return plan_buffers("SELECT * FROM cairn.claim($1, ARRAY[$2], 1, 10, ARRAY['walk_q'])", ex, name);
}

/*
 * Services sharing a database each claim their own names. A backlog of a
 * name this executor does not run, queued ahead of one it does, must cost
 * its claims nothing: the claim looks up each registered name in the
 * queued index instead of reading the queue in order and skipping. Read
 * as buffers, not time: a claim that walked the backlog reads every entry.
 */
/*
 * Enqueues WALK_BACKLOG workflows into walk_q with backlog_sql ($1 is the
 * count), then one due walk_served workflow, due_id, behind them, and
 * returns the buffers that one claim of walk_served read. *status gets
 * due_id's "status:executor" after the claim, *left the ENQUEUED count of
 * walk_q; the queue is emptied again.
 */
static long claim_behind(const char *backlog_sql, const char *due_id, char *status, size_t len, long *left)
{
    cairn *h = open_handle(&(handle_cfg){.executor = "walk", .workers = 1, .poll_ms = 1000, .start = 1});
    char n[16];
    snprintf(n, sizeof n, "%d", WALK_BACKLOG);
    const char *vals[2] = {n, due_id};
    PQclear(query(backlog_sql, 1, vals));
    PQclear(query("SELECT cairn.enqueue('walk_served', '1', queue => 'walk_q', id => $1)", 1, vals + 1));
    PQclear(query("ANALYZE cairn.workflow_status", 0, NULL));
    /* The first claim of the session also plans the function's statements; this one claims nothing. */
    (void)claim_buffers("walk", "walk_nothing");
    long buffers = claim_buffers("walk", "walk_served");
    q_text("SELECT status || ':' || coalesce(executor_id, '-') FROM cairn.workflow_status WHERE id = $1", 1, vals + 1,
           status, len);
    *left = q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'ENQUEUED'", "walk_q");
    cairn_close(h);
    PQclear(query("DELETE FROM cairn.workflow_status WHERE queue = 'walk_q'", 0, NULL));
    return buffers;
}

static void test_claim_skips_other_names(void **state)
{
    (void)state;
    char st[32];
    long left = 0;
    long with_backlog = claim_behind("SELECT count(cairn.enqueue('walk_unserved', NULL, queue => 'walk_q'))"
                                     "  FROM generate_series(1, $1::int)",
                                     "walk-1", st, sizeof st, &left);
    print_message("a claim of one workflow behind %d of another name read %ld buffers\n", WALK_BACKLOG,
                  with_backlog);
    assert_string_equal(st, "PENDING:walk");
    /* A claim that walked the backlog reads thousands (every leaf page, and every heap row for its name). */
    if (with_backlog > 300)
        fail_msg("the claim read %ld buffers: it walked the %d workflows of another name", with_backlog,
                 WALK_BACKLOG);

    /*
     * Starts of the claimed name delayed by an hour, enqueued before a due
     * one: they sort where they will be due, so the claim takes the due one
     * without reading them.
     */
    long behind_delayed =
        claim_behind("SELECT count(cairn.enqueue('walk_served', '1', queue => 'walk_q', delay => '1 hour'))"
                     "  FROM generate_series(1, $1::int)",
                     "walk-2", st, sizeof st, &left);
    print_message("a claim of one due workflow behind %d delayed ones of its name read %ld buffers\n", WALK_BACKLOG,
                  behind_delayed);
    assert_string_equal(st, "PENDING:walk");
    assert_int_equal(left, WALK_BACKLOG); /* none of the delayed ones was taken */
    if (behind_delayed > 300)
        fail_msg("the claim read %ld buffers: it walked the %d delayed workflows ahead of the due one", behind_delayed,
                 WALK_BACKLOG);
}

/* The buffers one cairn.dispatch() call of executor ex, running only name, reads in walk_q. */
static long dispatch_buffers(const char *ex, const char *name)
{
    return plan_buffers("SELECT * FROM cairn.dispatch($1, ARRAY[$2], 1, 10, ARRAY['walk_q'])", ex, name);
}

/*
 * The same for suspended workflows: another service's sleepers, due in an
 * hour or overdue (their service is down), must cost a dispatcher that
 * does not run their name nothing when it asks whether one of its own is
 * due and when the next is. The rows are written as a suspension leaves
 * them (PENDING, no owner, a wake-up time), WALK_BACKLOG at once.
 */
static void test_dispatch_skips_other_sleepers(void **state)
{
    (void)state;
    cairn *h = open_handle(&(handle_cfg){.executor = "walk", .workers = 1, .poll_ms = 1000, .start = 1});
    char n[16];
    snprintf(n, sizeof n, "%d", WALK_BACKLOG);
    const char *vals[1] = {n};
    PQclear(query("INSERT INTO cairn.workflow_status (id, name, status, queue, attempts, wake_at, waiting, input)"
                  " SELECT 'walk-sleeper-' || i, 'walk_unserved', 'PENDING', 'walk_q', 1,"
                  "        now() + interval '1 hour' + i * interval '1 ms', 'sleep', '1'"
                  "   FROM generate_series(1, $1::int) i",
                  1, vals));
    /* One of the served name, due in an hour too: the dispatch must still report when. */
    PQclear(query("INSERT INTO cairn.workflow_status (id, name, status, queue, attempts, wake_at, waiting, input)"
                  " VALUES ('walk-mine', 'walk_served', 'PENDING', 'walk_q', 1, now() + interval '2 hours', 'sleep',"
                  "         '1')",
                  0, NULL));
    PQclear(query("ANALYZE cairn.workflow_status", 0, NULL));
    (void)dispatch_buffers("walk", "walk_nothing"); /* plans the function's statements */
    long future = dispatch_buffers("walk", "walk_served");
    const char *wv[1] = {"walk"};
    long wake = q_long1("SELECT retry_ms FROM cairn.dispatch($1, ARRAY['walk_served'], 1, 10, ARRAY['walk_q'])"
                        " WHERE status = 'WAKE'",
                        wv[0]);
    PQclear(query("UPDATE cairn.workflow_status SET wake_at = now() - interval '1 minute'"
                  " WHERE name = 'walk_unserved'",
                  0, NULL));
    long overdue = dispatch_buffers("walk", "walk_served");
    char st[32];
    const char *mv[1] = {"walk-mine"};
    q_text("SELECT status || ':' || coalesce(executor_id, '-') FROM cairn.workflow_status WHERE id = $1", 1, mv, st,
           sizeof st);
    long taken = q_long1("SELECT count(*) FROM cairn.workflow_status WHERE name = $1 AND executor_id IS NOT NULL",
                         "walk_unserved");
    cairn_close(h);
    PQclear(query("DELETE FROM cairn.workflow_status WHERE queue = 'walk_q'", 0, NULL));
    print_message("a dispatch beside %d sleepers of another name read %ld buffers (due in an hour) and %ld"
                  " (overdue)\n",
                  WALK_BACKLOG, future, overdue);
    /* Its own sleeper, due in two hours, is reported (capped at an hour) and not taken. */
    assert_int_equal(wake, 3600000);
    assert_string_equal(st, "PENDING:-");
    assert_int_equal(taken, 0);
    /* A look that walked the other sleepers reads every leaf page of the index and their rows: thousands. */
    if (future > 300)
        fail_msg("the dispatch read %ld buffers: it walked %d sleepers of another name", future, WALK_BACKLOG);
    if (overdue > 300)
        fail_msg("the dispatch read %ld buffers: it walked %d overdue sleepers of another name", overdue,
                 WALK_BACKLOG);
}

/* ---- 9. versions and names nobody runs ---------------------------------- */

static void test_versions(void **state)
{
    const char *q = "ver_q";
    PQclear(query("SELECT cairn.enqueue('tnoop', '1', queue => 'ver_q', id => 'ver-v1', app_version => 'v1')", 0,
                  NULL));
    PQclear(query("SELECT cairn.enqueue('tnoop', '2', queue => 'ver_q', id => 'ver-v2', app_version => 'v2')", 0,
                  NULL));
    PQclear(query("SELECT cairn.enqueue('tnoop', '3', queue => 'ver_q', id => 'ver-none')", 0, NULL));
    PQclear(query("SELECT cairn.enqueue('nobody_runs_this', '4', queue => 'ver_q', id => 'ver-nobody')", 0, NULL));
    const char *queues[] = {q, NULL};
    const char *accept[] = {"v2", NULL};
    cairn *h = open_handle(&(handle_cfg){.executor = "ver-v2-handle", .workers = 4, .poll_ms = 100,
                                         .queues = queues, .app_version = "v2", .accept = accept, .start = 1});
    long done = wait_for("SELECT count(*) FROM cairn.workflow_status WHERE id IN ('ver-v2', 'ver-none')"
                         " AND status = 'SUCCESS'",
                         NULL, 2, EVENTUALLY_MS);
    assert_int_equal(done, 2);
    /* Several more claim cycles (the poll interval is 100 ms) pass without taking the others. */
    sleep_ms(1000);
    char buf[256];
    const char *v[1] = {"ver-none"};
    assert_string_equal(q_text("SELECT app_version FROM cairn.workflow_status WHERE id = $1", 1, v, buf, sizeof buf),
                        "v2");
    static const char *const waiting[] = {"ver-v1", "ver-nobody"};
    for (int i = 0; i < 2; i++) {
        const char *wv[1] = {waiting[i]};
        q_text("SELECT status || ' attempts=' || attempts || ' executor=' || coalesce(executor_id, '-')"
               " || ' started=' || (started_at IS NOT NULL) FROM cairn.workflow_status WHERE id = $1",
               1, wv, buf, sizeof buf);
        if (strcmp(buf, "ENQUEUED attempts=0 executor=- started=false") != 0)
            fail_msg("%s should stay ENQUEUED and untouched, but is: %s", waiting[i], buf);
    }
    assert_string_equal(q_text("SELECT app_version FROM cairn.workflow_status WHERE id = 'ver-v1'", 0, NULL, buf,
                               sizeof buf),
                        "v1");
    /* Visibly: the queue shows them as waiting. */
    char *json = NULL;
    T_OK(h, cairn_queue_get(h, q, &json));
    const char *jv[1] = {json};
    assert_string_equal(q_text("SELECT ($1::json->>'enqueued') || '/' || ($1::json->>'running')", 1, jv, buf,
                               sizeof buf),
                        "2/0");
    cairn_free(json);
    cairn_close(h);

    /* A handle that runs v1 takes it: the version was all that kept it back. */
    const char *accept_v1[] = {"v1", NULL};
    cairn *h1 = open_handle(&(handle_cfg){.executor = "ver-v1-handle", .workers = 2, .poll_ms = 100,
                                          .queues = queues, .app_version = "v1", .accept = accept_v1, .start = 1});
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    T_OK(h1, cairn_await(h1, "ver-v1", EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_close(h1);
    assert_string_equal(q_text("SELECT status FROM cairn.workflow_status WHERE id = 'ver-nobody'", 0, NULL, buf,
                               sizeof buf),
                        "ENQUEUED");
}

/* ---- 10. bad input and the queue JSON ----------------------------------- */

static void test_bad_input_and_json(void **state)
{
    cairn *h = open_handle(&(handle_cfg){.executor = "badin", .workers = 1});
    long before = q_long("SELECT count(*) FROM cairn.queues", 0, NULL);

    static const struct {
        const char *what;
        cairn_queue_options o;
    } bad[] = {
        {"negative concurrency", {.size = sizeof(cairn_queue_options), .concurrency = -1}},
        {"negative worker_concurrency", {.size = sizeof(cairn_queue_options), .worker_concurrency = -3}},
        {"negative rate_limit", {.size = sizeof(cairn_queue_options), .rate_limit = -1, .rate_period_ms = 1000}},
        {"negative rate_period_ms", {.size = sizeof(cairn_queue_options), .rate_limit = 5, .rate_period_ms = -1}},
        {"negative partition_concurrency", {.size = sizeof(cairn_queue_options), .partition_concurrency = -2}},
        {"rate_limit without a period", {.size = sizeof(cairn_queue_options), .rate_limit = 5}},
        {"a period without rate_limit", {.size = sizeof(cairn_queue_options), .rate_period_ms = 1000}},
        {"size 0", {.size = 0, .concurrency = 1}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = cairn_queue_set(h, "bad_q", &bad[i].o);
        if (rc != CAIRN_EINVAL)
            fail_msg("cairn_queue_set with %s returned %d (%s), expected CAIRN_EINVAL", bad[i].what, rc,
                     cairn_strerror(rc));
    }
    char long_name[202];
    memset(long_name, 'q', 201);
    long_name[201] = '\0';
    const char *bad_names[] = {NULL, "", long_name, "tab\tname", "del\x7fname", "nl\nname"};
    cairn_queue_options fine = {.size = sizeof fine, .concurrency = 1};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        T_RC(h, CAIRN_EINVAL, cairn_queue_set(h, bad_names[i], &fine));
        char *json = NULL;
        T_RC(h, CAIRN_EINVAL, cairn_queue_get(h, bad_names[i], &json));
        assert_null(json);
        T_RC(h, CAIRN_EINVAL, cairn_queue_delete(h, bad_names[i]));
    }
    /* 200 bytes is still a name. */
    long_name[200] = '\0';
    T_OK(h, cairn_queue_set(h, long_name, &fine));
    T_OK(h, cairn_queue_delete(h, long_name));
    assert_int_equal(q_long("SELECT count(*) FROM cairn.queues", 0, NULL), before);

    /* SQL refuses zero and negative limits, and half a rate, with invalid_parameter_value. */
    static const char *const bad_sql[] = {
        "SELECT cairn.set_queue('bad_q', concurrency => 0)",
        "SELECT cairn.set_queue('bad_q', concurrency => -1)",
        "SELECT cairn.set_queue('bad_q', worker_concurrency => 0)",
        "SELECT cairn.set_queue('bad_q', worker_concurrency => -5)",
        "SELECT cairn.set_queue('bad_q', rate_limit => 0, rate_period => '1 second')",
        "SELECT cairn.set_queue('bad_q', rate_limit => -1, rate_period => '1 second')",
        "SELECT cairn.set_queue('bad_q', rate_limit => 5, rate_period => '0 seconds')",
        "SELECT cairn.set_queue('bad_q', rate_limit => 5, rate_period => '-1 second')",
        "SELECT cairn.set_queue('bad_q', rate_limit => 5)",
        "SELECT cairn.set_queue('bad_q', rate_period => '1 second')",
        "SELECT cairn.set_queue('bad_q', partition_concurrency => 0)",
        "SELECT cairn.set_queue('bad_q', partition_concurrency => -1)",
        "SELECT cairn.set_queue('')",
        "SELECT cairn.set_queue(repeat('q', 201))",
        "SELECT cairn.set_queue(E'tab\\tname')",
    };
    char st[16];
    for (size_t i = 0; i < sizeof bad_sql / sizeof bad_sql[0]; i++)
        if (strcmp(q_sqlstate(bad_sql[i], 0, NULL, st, sizeof st), "22023") != 0)
            fail_msg("%s: SQLSTATE %s, expected 22023 (invalid_parameter_value)", bad_sql[i], st);
    assert_string_equal(q_sqlstate("SELECT cairn.set_queue(NULL)", 0, NULL, st, sizeof st), "22004");
    assert_int_equal(q_long("SELECT count(*) FROM cairn.queues", 0, NULL), before);

    /* Unknown queues. */
    char *json = NULL;
    T_RC(h, CAIRN_ENOTFOUND, cairn_queue_get(h, "no_such_queue", &json));
    assert_null(json);
    T_RC(h, CAIRN_ENOTFOUND, cairn_queue_delete(h, "no_such_queue"));

    /* The JSON: a configured queue with work, a queue with work and no configuration, one with neither. */
    cairn_queue_options full = {.size = sizeof full, .concurrency = 7, .worker_concurrency = 2, .rate_limit = 10,
                                .rate_period_ms = 2500, .partition_concurrency = 3};
    T_OK(h, cairn_queue_set(h, "json_q", &full));
    cairn_queue_options none = {.size = sizeof none};
    T_OK(h, cairn_queue_set(h, "json_empty_q", &none));
    PQclear(query("SELECT cairn.enqueue('nobody_runs_this', 'null', queue => q)"
                  "  FROM (VALUES ('json_q'), ('json_q'), ('json_unconf_q')) v(q)",
                  0, NULL));
    static const char *fields_sql =
        "SELECT concat_ws(' ', j->>'name', j->>'concurrency', j->>'worker_concurrency', j->>'rate_limit',"
        " j->>'rate_period_ms', j->>'partition_concurrency', j->>'configured', j->>'enqueued', j->>'running')"
        "  FROM (SELECT $1::json AS j) x";
    static const char *list_sql =
        "SELECT concat_ws(' ', j->>'name', j->>'concurrency', j->>'worker_concurrency', j->>'rate_limit',"
        " j->>'rate_period_ms', j->>'partition_concurrency', j->>'configured', j->>'enqueued', j->>'running')"
        "  FROM json_array_elements($1::json) j WHERE j->>'name' = $2";
    char buf[512];
    T_OK(h, cairn_queue_get(h, "json_q", &json));
    const char *jv[2] = {json, NULL};
    assert_string_equal(q_text(fields_sql, 1, jv, buf, sizeof buf), "json_q 7 2 10 2500 3 true 2 0");
    cairn_free(json);
    T_OK(h, cairn_queue_get(h, "json_unconf_q", &json));
    jv[0] = json;
    assert_string_equal(q_text(fields_sql, 1, jv, buf, sizeof buf), "json_unconf_q false 1 0");
    cairn_free(json);
    T_OK(h, cairn_queue_get(h, "json_empty_q", &json));
    jv[0] = json;
    assert_string_equal(q_text(fields_sql, 1, jv, buf, sizeof buf), "json_empty_q true 0 0");
    /* The limits are JSON nulls, not zeros or strings. */
    assert_string_equal(q_text("SELECT json_typeof($1::json->'concurrency')", 1, jv, buf, sizeof buf), "null");
    cairn_free(json);

    T_OK(h, cairn_queue_list(h, &json));
    jv[0] = json;
    static const char *const listed[][2] = {{"json_q", "json_q 7 2 10 2500 3 true 2 0"},
                                            {"json_unconf_q", "json_unconf_q false 1 0"},
                                            {"json_empty_q", "json_empty_q true 0 0"}};
    for (int i = 0; i < 3; i++) {
        jv[1] = listed[i][0];
        assert_string_equal(q_text(list_sql, 2, jv, buf, sizeof buf), listed[i][1]);
    }
    /* Sorted by name, each queue once, and every configured queue is listed. */
    assert_int_equal(q_long("SELECT (array_agg(j->>'name' ORDER BY o) = array_agg(j->>'name' ORDER BY j->>'name'"
                            " COLLATE \"C\") AND count(*) = count(DISTINCT j->>'name'))::int"
                            "  FROM json_array_elements($1::json) WITH ORDINALITY AS e(j, o)",
                            1, jv),
                     1);
    assert_int_equal(q_long("SELECT count(*) FROM cairn.queues q WHERE NOT EXISTS ("
                            "  SELECT 1 FROM json_array_elements($1::json) j WHERE j->>'name' = q.name)",
                            1, jv),
                     0);
    cairn_free(json);

    /* Replacing a configuration replaces all of it. */
    cairn_queue_options only_conc = {.size = sizeof only_conc, .concurrency = 4};
    T_OK(h, cairn_queue_set(h, "json_q", &only_conc));
    T_OK(h, cairn_queue_get(h, "json_q", &json));
    jv[0] = json;
    assert_string_equal(q_text(fields_sql, 1, jv, buf, sizeof buf), "json_q 4 true 2 0");
    cairn_free(json);

    /* Deleting the configuration leaves a queue that still has work. */
    T_OK(h, cairn_queue_delete(h, "json_q"));
    T_RC(h, CAIRN_ENOTFOUND, cairn_queue_delete(h, "json_q"));
    T_OK(h, cairn_queue_get(h, "json_q", &json));
    jv[0] = json;
    assert_string_equal(q_text(fields_sql, 1, jv, buf, sizeof buf), "json_q false 2 0");
    cairn_free(json);
    T_OK(h, cairn_queue_delete(h, "json_empty_q"));
    T_RC(h, CAIRN_ENOTFOUND, cairn_queue_get(h, "json_empty_q", &json));
    assert_null(json);
    cairn_close(h);
}

/* ---- 11. queued start through the C API --------------------------------- */

enum { QSTART_N = 4 };

static void test_queued_start(void **state)
{
    const char *q = "qstart_q";
    const char *queues[] = {q, NULL};
    cairn *h = open_handle(&(handle_cfg){.executor = "qstart", .workers = 4, .poll_ms = 100, .queues = queues,
                                         .app_version = "v7"});
    cairn_queue_options qo = {.size = sizeof qo, .concurrency = 1};
    T_OK(h, cairn_queue_set(h, q, &qo));

    /* Before the executors start: the starts are only enqueued. */
    char *ids[QSTART_N] = {NULL};
    for (int i = 0; i < QSTART_N; i++) {
        char in[16];
        snprintf(in, sizeof in, "%d", 30 + i);
        cairn_start_options so = {.size = sizeof so, .queue = q};
        T_OK(h, cairn_start(h, "tnap", in, &so, &ids[i]));
        cairn_status st = CAIRN_STATUS_UNKNOWN;
        T_OK(h, cairn_get_status(h, ids[i], &st));
        assert_int_equal(st, CAIRN_STATUS_ENQUEUED);
    }
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'ENQUEUED'"
                             " AND started_at IS NULL AND executor_id IS NULL AND app_version = 'v7'",
                             q),
                     QSTART_N);

    /* A dedup key through cairn_start: a repeat names the live workflow, or fails with dedup_error. */
    char *d1 = NULL, *d2 = NULL;
    cairn_start_options dso = {.size = sizeof dso, .queue = q, .dedup_key = "qstart-key"};
    T_OK(h, cairn_start(h, "tnap", "1", &dso, &d1));
    T_OK(h, cairn_start(h, "tnap", "1", &dso, &d2));
    if (strcmp(d1, d2) != 0)
        fail_msg("a repeated dedup key returned ID %s (exists: %ld) instead of the live workflow's %s", d2,
                 q_long1("SELECT count(*) FROM cairn.workflow_status WHERE id = $1", d2), d1);
    dso.dedup_error = 1;
    T_RC(h, CAIRN_ECONFLICT, cairn_start(h, "tnap", "1", &dso, NULL));
    assert_string_equal(cairn_sqlstate(h), "23505");

    /* An explicit ID (group-committed path): a repeat is the same workflow, another name a conflict. */
    char *e1 = NULL, *e2 = NULL;
    cairn_start_options eso = {.size = sizeof eso, .queue = q, .id = "qstart-explicit", .priority = 5,
                               .partition_key = "pk"};
    T_OK(h, cairn_start(h, "tnap", "2", &eso, &e1));
    T_OK(h, cairn_start(h, "tnap", "3", &eso, &e2));
    assert_string_equal(e1, "qstart-explicit");
    assert_string_equal(e2, "qstart-explicit");
    T_RC(h, CAIRN_ECONFLICT, cairn_start(h, "other_name", "2", &eso, NULL));
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE id = $1 AND status = 'ENQUEUED'"
                             " AND priority = 5 AND partition_key = 'pk'",
                             "qstart-explicit"),
                     1);
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflows WHERE id = $1 AND input::text = '2'",
                             "qstart-explicit"),
                     1);
    cairn_free(e1);
    cairn_free(e2);

    T_OK(h, cairn_start_workers(h));
    long samples = 0;
    long max = sample_max("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'PENDING'", q,
                          QSTART_N + 2, &samples);
    for (int i = 0; i < QSTART_N; i++) {
        cairn_status st = CAIRN_STATUS_UNKNOWN;
        char *result = NULL, want[16];
        T_OK(h, cairn_await(h, ids[i], EVENTUALLY_MS, &st, &result));
        assert_int_equal(st, CAIRN_STATUS_SUCCESS);
        snprintf(want, sizeof want, "%d", 30 + i);
        assert_string_equal(result, want);
        cairn_free(result);
    }
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    T_OK(h, cairn_await(h, d1, EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    T_OK(h, cairn_await(h, "qstart-explicit", EVENTUALLY_MS, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_close(h);
    print_message("queued starts: at most %ld PENDING in %ld samples (concurrency 1)\n", max, samples);
    if (max > 1)
        fail_msg("a sample saw %ld PENDING in %s; the limit is 1", max, q);
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'SUCCESS'"
                             " AND executor_id = 'qstart' AND started_at IS NOT NULL",
                             q),
                     QSTART_N + 2);
    for (int i = 0; i < QSTART_N; i++)
        cairn_free(ids[i]);
    cairn_free(d1);
    cairn_free(d2);
}

/* ---- 12. queued starts from many threads share commits ----------------- */

#define QTHREADS 8
#define QPER 25

typedef struct qstarter {
    cairn *h;
    int base;
    int failures;
    char msg[256];
} qstarter;

/* Starts QPER workflows through a queue and awaits each, checking its output. */
static void *qstarter_main(void *arg)
{
    qstarter *t = arg;
    for (int i = 0; i < QPER && !t->failures; i++) {
        char in[16], *id = NULL, *out = NULL;
        snprintf(in, sizeof in, "%d", t->base + i);
        cairn_start_options so = {.size = sizeof so, .queue = "qmany_q"};
        cairn_status st = CAIRN_STATUS_UNKNOWN;
        int rc = cairn_start(t->h, "tnap", in, &so, &id);
        if (rc == CAIRN_OK)
            rc = cairn_await(t->h, id, EVENTUALLY_MS, &st, &out);
        if (rc != CAIRN_OK || st != CAIRN_STATUS_SUCCESS || !out || strcmp(out, in) != 0) {
            t->failures++;
            snprintf(t->msg, sizeof t->msg, "start/await of input %s: rc %d, status %d, output %s", in, rc, (int)st,
                     out ? out : "(none)");
        }
        cairn_free(id);
        cairn_free(out);
    }
    return NULL;
}

static void test_queued_starts_from_threads(void **state)
{
    (void)state;
    cairn *h = open_handle(&(handle_cfg){.executor = "qmany", .workers = 8, .poll_ms = 1000, .start = 1});
    pthread_t th[QTHREADS];
    qstarter ts[QTHREADS];
    for (int i = 0; i < QTHREADS; i++) {
        ts[i] = (qstarter){.h = h, .base = 1000 * (i + 1)};
        assert_int_equal(pthread_create(&th[i], NULL, qstarter_main, &ts[i]), 0);
    }
    for (int i = 0; i < QTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (ts[i].failures)
            fail_msg("thread %d: %s", i, ts[i].msg);
    }
    cairn_close(h);
    /* Each start made exactly one workflow, and each ran once. */
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1 AND status = 'SUCCESS'"
                             " AND attempts = 1",
                             "qmany_q"),
                     QTHREADS * QPER);
    assert_int_equal(q_long1("SELECT count(*) FROM cairn.workflow_status WHERE queue = $1", "qmany_q"),
                     QTHREADS * QPER);
}

/* ---- 13. eager starts: only when a claim here would have taken it at once --- */

/* How the workflow's row was first written (the test's trigger logs every insert). */
static const char *inserted_as(const char *id, char *buf, size_t len)
{
    const char *vals[1] = {id};
    return q_text("SELECT status || ':' || coalesce(executor, '-') FROM ins_log WHERE id = $1", 1, vals, buf, len);
}

/* Starts tnap(input) in queue q on h with the given ID and delay; returns how its row was first written. */
static const char *eager_start(cairn *h, const char *q, const char *id, const char *input, int delay_ms, char *buf,
                               size_t len)
{
    cairn_start_options so = {.size = sizeof so, .queue = q, .id = id, .delay_ms = delay_ms};
    T_OK(h, cairn_start(h, "tnap", input, &so, NULL));
    return inserted_as(id, buf, len);
}

static void expect_output(cairn *h, const char *id, const char *want)
{
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    char *out = NULL;
    T_OK(h, cairn_await(h, id, EVENTUALLY_MS, &st, &out));
    if (st != CAIRN_STATUS_SUCCESS || !out || strcmp(out, want) != 0)
        fail_msg("%s ended %s with %s, expected SUCCESS with %s", id, cairn_status_name(st), out ? out : "(none)",
                 want);
    cairn_free(out);
}

static void test_eager_start(void **state)
{
    (void)state;
    PQclear(query("CREATE TABLE ins_log (id text PRIMARY KEY, status text, executor text)", 0, NULL));
    PQclear(query("CREATE FUNCTION log_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                  "  INSERT INTO public.ins_log VALUES (NEW.id, NEW.status, NEW.executor_id); RETURN NULL; END $$",
                  0, NULL));
    PQclear(query("CREATE TRIGGER log_ins AFTER INSERT ON cairn.workflow_status FOR EACH ROW EXECUTE FUNCTION log_ins()",
                  0, NULL));
    char b[128];
    cairn *h = open_handle(&(handle_cfg){.executor = "eager", .workers = 1, .poll_ms = 100, .start = 1});

    /* An idle queue without limits, a thread free: written as claimed by this executor, run at once. */
    assert_string_equal(eager_start(h, "eager_q", "eager-1", "\"a\"", 0, b, sizeof b), "PENDING:eager");
    expect_output(h, "eager-1", "\"a\"");
    assert_int_equal(q_long1("SELECT attempts FROM cairn.workflow_status WHERE id = $1", "eager-1"), 1);

    /* Its one thread busy (a 400 ms step): the next start waits in the queue for a claim. */
    assert_string_equal(eager_start(h, "eager_q", "eager-busy1", "400", 0, b, sizeof b), "PENDING:eager");
    assert_string_equal(eager_start(h, "eager_q", "eager-busy2", "1", 0, b, sizeof b), "ENQUEUED:-");
    expect_output(h, "eager-busy1", "400");
    expect_output(h, "eager-busy2", "1");

    /* A delay, and a queue with a limit (only a claim counts toward it): through the queue. */
    assert_string_equal(eager_start(h, "eager_q", "eager-delay", "2", 50, b, sizeof b), "ENQUEUED:-");
    set_queue_sql("eager_lim", 5, 0, 0, 0, 0);
    assert_string_equal(eager_start(h, "eager_lim", "eager-lim", "3", 0, b, sizeof b), "ENQUEUED:-");
    expect_output(h, "eager-delay", "2");
    expect_output(h, "eager-lim", "3");

    /* Runnable work already waiting in the queue goes first: no eager start past it (the thread is free). */
    assert_string_equal(eager_start(h, "eager_bl", "eager-first", "4", 0, b, sizeof b), "PENDING:eager");
    expect_output(h, "eager-first", "4");
    PQclear(query("SELECT cairn.enqueue('nobody_runs', '1', queue => 'eager_bl', id => 'eager-backlog')", 0, NULL));
    assert_string_equal(eager_start(h, "eager_bl", "eager-behind", "5", 0, b, sizeof b), "ENQUEUED:-");
    expect_output(h, "eager-behind", "5");
    cairn_close(h);

    /* CAIRN_NO_EAGER, and a handle that does not serve the queue: through the queue. */
    h = open_handle(&(handle_cfg){.executor = "eager-off", .workers = 2, .poll_ms = 100, .start = 1,
                                  .flags = CAIRN_NO_EAGER});
    assert_string_equal(eager_start(h, "eager_q", "eager-off", "5", 0, b, sizeof b), "ENQUEUED:-");
    expect_output(h, "eager-off", "5");
    cairn_close(h);
    const char *other[] = {"eager_other", NULL};
    h = open_handle(&(handle_cfg){.executor = "eager-ns", .workers = 2, .poll_ms = 100, .start = 1, .queues = other});
    assert_string_equal(eager_start(h, "eager_ns", "eager-ns", "6", 0, b, sizeof b), "ENQUEUED:-");
    cairn_close(h);
    PQclear(query("DELETE FROM cairn.workflow_status WHERE id IN ('eager-ns', 'eager-backlog')", 0, NULL));
    PQclear(query("DROP TRIGGER log_ins ON cairn.workflow_status", 0, NULL));
    PQclear(query("DROP FUNCTION log_ins()", 0, NULL));
    PQclear(query("DROP TABLE ins_log", 0, NULL));
}

/* ---- 14. the commit connections plan their statements once ------------- */

/*
 * Enqueues QPER workflows nobody runs, without waiting for them; every
 * other thread at priority 1, so that batches of one thread's starts and
 * batches mixing threads both occur (two statements, see commit.c).
 */
static void *plainstarter_main(void *arg)
{
    qstarter *t = arg;
    for (int i = 0; i < QPER; i++) {
        char id[48];
        snprintf(id, sizeof id, "plan-%d", t->base + i);
        cairn_start_options so = {.size = sizeof so, .queue = "plan_q", .id = id, .priority = t->base / 1000 % 2};
        if (cairn_start(t->h, "nobody_runs", "1", &so, NULL) != CAIRN_OK) {
            t->failures++;
            snprintf(t->msg, sizeof t->msg, "start of %s: %s", id, cairn_errmsg(t->h));
        }
    }
    return NULL;
}

/*
 * The batch enqueue counts its arrays exactly in a custom plan, so left to
 * the server's choice a connection whose first batches were small planned
 * it again on every call (a fifth of the server's time per queued start).
 * Commit connections take the generic plan from the first call: this reads
 * each one's own pg_prepared_statements after batches of starts from many
 * threads.
 */
static void test_commit_plans_are_generic(void **state)
{
    (void)state;
    cairn *h = open_handle(&(handle_cfg){.executor = "plans", .workers = 0});
    long generic = 0, custom = 0, started = 0;
    for (int round = 0; round < 20 && generic + custom == 0; round++) {
        started += QTHREADS * QPER;
        pthread_t th[QTHREADS];
        qstarter ts[QTHREADS];
        for (int i = 0; i < QTHREADS; i++) {
            ts[i] = (qstarter){.h = h, .base = 100000 * round + 1000 * i};
            assert_int_equal(pthread_create(&th[i], NULL, plainstarter_main, &ts[i]), 0);
        }
        for (int i = 0; i < QTHREADS; i++) {
            pthread_join(th[i], NULL);
            if (ts[i].failures)
                fail_msg("thread %d: %s", i, ts[i].msg);
        }
        /* Every start has returned and nothing else runs on h: its commit connections are idle. */
        generic = custom = 0;
        for (int i = 0; i < h->commit_conns_n; i++) {
            PGconn *pg = h->commit_conns[i].pg;
            if (!pg)
                continue;
            PGresult *r = PQexec(pg, "SELECT sum(generic_plans), sum(custom_plans) FROM pg_prepared_statements"
                                     " WHERE name IN ('cairn_enqueue_batch', 'cairn_enqueue_same')");
            if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
                fail_msg("reading a commit connection's plans: %s", PQerrorMessage(pg));
            generic += atol(PQgetvalue(r, 0, 0));
            custom += atol(PQgetvalue(r, 0, 1));
            PQclear(r);
        }
    }
    cairn_close(h);
    print_message("enqueue batches on the commit connections: %ld generic plans, %ld custom plans\n", generic,
                  custom);
    if (generic + custom == 0)
        fail_msg("no start was ever batched; the test saw nothing");
    assert_int_equal(custom, 0);
    /* Whichever statement wrote them, every start is there, each at its own thread's priority. */
    PGresult *r = query("SELECT count(*), count(*) FILTER (WHERE priority = substr(id, 6)::int / 1000 % 2)"
                        "  FROM cairn.workflow_status WHERE queue = 'plan_q'",
                        0, NULL);
    assert_int_equal(atol(PQgetvalue(r, 0, 0)), started);
    assert_int_equal(atol(PQgetvalue(r, 0, 1)), started);
    PQclear(r);
    PQclear(query("DELETE FROM cairn.workflow_status WHERE queue = 'plan_q'", 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_concurrency_across_processes, teardown_workers),
        cmocka_unit_test_teardown(test_worker_concurrency, teardown_workers),
        cmocka_unit_test_teardown(test_rate_limit, teardown_workers),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test_teardown(test_partition_exclusive, teardown_workers),
        cmocka_unit_test(test_held_work_is_reported),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_delay),
        cmocka_unit_test(test_no_starvation),
        cmocka_unit_test(test_claim_skips_other_names),
        cmocka_unit_test(test_dispatch_skips_other_sleepers),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_bad_input_and_json),
        cmocka_unit_test(test_queued_start),
        cmocka_unit_test(test_queued_starts_from_threads),
        cmocka_unit_test(test_eager_start),
        cmocka_unit_test(test_commit_plans_are_generic),
    };
    /* CAIRN_TEST_FILTER=test_partition_exclusive runs one test (a cmocka glob). */
    if (getenv("CAIRN_TEST_FILTER"))
        cmocka_set_test_filter(getenv("CAIRN_TEST_FILTER"));
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
