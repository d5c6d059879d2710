/*
 * bench_tx: workflows of one transactional step, and draining a queue.
 *
 * Against one server in one run it measures what Postgres itself does
 * (pgbench committing one-row INSERTs from 32 clients) and what cairn does
 * with the same server:
 *
 *   - tx: a workflow whose only step is a transactional step that INSERTs
 *     one row into an application table; the step's row and its checkpoint
 *     commit in one transaction. Client threads each start a workflow,
 *     await it and start the next, with as many executor threads as
 *     workflows in flight.
 *   - drain: N no-op workflows enqueued by SQL (cairn.enqueue) in one
 *     transaction, then a worker is started and timed until it has run
 *     them all. Its dispatcher claims them in batches.
 *
 * It prints workflows/s, latency, and what each workflow costs the
 * database: write commits (from the server's transaction ID counter), all
 * committed transactions (pg_stat_database.xact_commit), and statements
 * and round trips (from the libpq calls the process makes), split into
 * those of the transactional step itself and the rest. Where the server
 * runs on this machine, it adds the server's CPU time from /proc.
 *
 * It prints figures; it is not a test and has no pass/fail time limit.
 * Its exit status is non-zero only when something failed to run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cairn.h>

#include "common.h"

#define TX_WORKFLOW "cairn_bench_tx1"
#define TX_STEP "cairn_bench_insert"
#define SQL_WORKFLOW "cairn_bench_sql1"
#define SQL_STEP "cairn_bench_insert_sql"
#define DRAIN_WORKFLOW "cairn_bench_drain"
#define MAX_INFLIGHT_RUNS 8
#define MAX_TX_CONNS 1024

/* ---- command line ---------------------------------------------------- */

typedef struct config {
    const char *conninfo; /* "" means libpq's defaults (PG* environment) */
    const char *pgbench;  /* NULL: skip the baseline */
    int pgbench_seconds;
    int seconds;          /* measured seconds per concurrent run */
    int warmup_seconds;
    int inflight[MAX_INFLIGHT_RUNS];
    int ninflight;
    int commit_connections; /* 0: the library's default */
    int drain;              /* workflows in the drain run; 0: no drain run */
    int drain_workers;
    int repeat;
    int keep;
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_tx [OPTIONS] [CONNINFO]\n\n"
            "Runs a one-row INSERT pgbench baseline (32 clients), workflows of one transactional step\n"
            "(one INSERT) with many in flight, and a drain of enqueued no-op workflows, on the same\n"
            "server, and prints the figures and their ratios. CONNINFO is a libpq URL or key=value\n"
            "string; without it $CAIRN_DATABASE_URL, else libpq's PG* environment.\n\n"
            "  --pgbench PATH          the pgbench program (default $PGBENCH, else pgbench on PATH)\n"
            "  --no-pgbench            skip the baseline (no ratios are printed)\n"
            "  --pgbench-seconds N     length of each pgbench run (10)\n"
            "  --seconds N             measured seconds per concurrent run (10)\n"
            "  --warmup-seconds N      warm-up seconds per concurrent run (1)\n"
            "  --inflight LIST         comma-separated workflows in flight (64)\n"
            "  --commit-connections N  cairn_options.commit_connections (library default)\n"
            "  --drain N               workflows enqueued for the drain run, 0 to skip it (20000)\n"
            "  --drain-workers N       executor threads of the draining worker (64)\n"
            "  --repeat N              take every measurement N times, print medians (1)\n"
            "  --keep                  keep the benchmark's tables and workflow rows\n");
}

static int parse_args(int argc, char **argv, config *c)
{
    memset(c, 0, sizeof *c);
    c->pgbench = getenv("PGBENCH");
    if (!c->pgbench || !*c->pgbench)
        c->pgbench = "pgbench";
    c->pgbench_seconds = 10;
    c->seconds = 10;
    c->warmup_seconds = 1;
    c->inflight[0] = 64;
    c->ninflight = 1;
    c->drain = 20000;
    c->drain_workers = 64;
    c->repeat = 1;
    c->conninfo = getenv("CAIRN_DATABASE_URL");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-pgbench") == 0) {
            c->pgbench = NULL;
        } else if (strcmp(a, "--keep") == 0) {
            c->keep = 1;
        } else if (a[0] == '-' && a[1] == '-' && !v) {
            bad = 1;
        } else if (strcmp(a, "--pgbench") == 0) {
            c->pgbench = v, i++;
        } else if (strcmp(a, "--pgbench-seconds") == 0) {
            bad = bench_parse_int(v, 1, 3600, &c->pgbench_seconds), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            bad = bench_parse_int(v, 1, 3600, &c->seconds), i++;
        } else if (strcmp(a, "--warmup-seconds") == 0) {
            bad = bench_parse_int(v, 0, 3600, &c->warmup_seconds), i++;
        } else if (strcmp(a, "--inflight") == 0) {
            bad = bench_parse_list(v, 1, 512, c->inflight, MAX_INFLIGHT_RUNS, &c->ninflight), i++;
        } else if (strcmp(a, "--commit-connections") == 0) {
            bad = bench_parse_int(v, 1, 64, &c->commit_connections), i++;
        } else if (strcmp(a, "--drain") == 0) {
            bad = bench_parse_int(v, 0, 10000000, &c->drain), i++;
        } else if (strcmp(a, "--drain-workers") == 0) {
            bad = bench_parse_int(v, 1, 1024, &c->drain_workers), i++;
        } else if (strcmp(a, "--repeat") == 0) {
            bad = bench_parse_int(v, 1, 100, &c->repeat), i++;
        } else if (a[0] == '-') {
            bad = 1;
        } else {
            c->conninfo = a;
        }
        if (bad) {
            fprintf(stderr, "bench_tx: bad argument '%s'%s%s\n", a, v ? " " : "", v && a[0] == '-' ? v : "");
            usage(stderr);
            return -1;
        }
    }
    if (!c->conninfo)
        c->conninfo = "";
    return 0;
}

/* ---- telling the transactional step's statements apart ---------------- */

/*
 * The transactional step runs on its executor thread's own connection.
 * The step function records that connection here the first time it sees
 * it, and the libpq counters then add every call on a recorded connection
 * to the step's own tally. (The first BEGIN on each connection comes just
 * before it is recorded; that happens in the warm-up.)
 */
static _Atomic(const PGconn *) tx_conns[MAX_TX_CONNS];
static atomic_llong tx_statements, tx_round_trips, app_statements;

static void tx_conn_record(const PGconn *conn)
{
    for (int i = 0; i < MAX_TX_CONNS; i++) {
        const PGconn *c = atomic_load(&tx_conns[i]);
        if (c == conn)
            return;
        if (!c) {
            const PGconn *expect = NULL;
            if (atomic_compare_exchange_strong(&tx_conns[i], &expect, conn) || expect == conn)
                return;
        }
    }
}

static void count_tx(const PGconn *conn, int statements, int round_trips)
{
    for (int i = 0; i < MAX_TX_CONNS; i++) {
        const PGconn *c = atomic_load(&tx_conns[i]);
        if (!c)
            return;
        if (c == conn) {
            atomic_fetch_add(&tx_statements, statements);
            atomic_fetch_add(&tx_round_trips, round_trips);
            return;
        }
    }
}

/* ---- the workflows ---------------------------------------------------- */

/* The transactional step: one INSERT into the application's table, in the step's transaction. */
static int insert_step(cairn_step_ctx *s, PGconn *conn, const char *input, char **output, void *udata)
{
    (void)input, (void)udata;
    tx_conn_record(conn);
    atomic_fetch_add(&app_statements, 1);
    const char *vals[1] = {"1"};
    PGresult *r =
        PQexecParams(conn, "INSERT INTO cairn_bench.tx_app(v) VALUES ($1::int)", 1, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    *output = NULL;
    return rc;
}

/* The SQL step's statements are recognised by their prepared name, on the connection that sends them. */
static void count_sql_stmt(const PGconn *conn, const char *how, const char *what)
{
    (void)how;
    if (what && strncmp(what, "cairn_sql_", 10) == 0) {
        tx_conn_record(conn);
        atomic_fetch_add(&app_statements, 1);
    }
}

/* Runs one step, the one named by udata: the callback or the SQL step. */
static int tx1_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)input;
    int rc = cairn_step(ctx, udata, NULL, NULL);
    *output = NULL;
    return rc;
}

static atomic_llong drain_ran;

static int drain_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)ctx, (void)input, (void)udata;
    atomic_fetch_add(&drain_ran, 1);
    *output = NULL;
    return CAIRN_OK;
}

/* ---- measurements ---------------------------------------------------- */

enum {
    M_WRITE_COMMITS_WF,
    M_WRITE_COMMITS_STEP,
    M_OTHER_COMMITS_WF,
    M_TX_STATEMENTS_STEP,
    M_TX_ROUND_TRIPS_STEP,
    M_STATEMENTS_WF,
    M_ROUND_TRIPS_WF,
    M_ALL_XACTS_WF,
    M_CPU_US_WF,
    M_SERVER_US_WF,
    M_MACHINE_BUSY,
    M_COUNT
};

static const char *const metric_label[M_COUNT] = {
    [M_WRITE_COMMITS_WF] = "write commits per workflow (xid counter)",
    [M_WRITE_COMMITS_STEP] = "write commits per transactional step",
    [M_OTHER_COMMITS_WF] = "  besides the step's own (start, finish)",
    [M_TX_STATEMENTS_STEP] = "statements per transactional step (libpq)",
    [M_TX_ROUND_TRIPS_STEP] = "round trips per transactional step (libpq)",
    [M_STATEMENTS_WF] = "statements per workflow, all (libpq calls)",
    [M_ROUND_TRIPS_WF] = "round trips per workflow, all (libpq calls)",
    [M_ALL_XACTS_WF] = "all transactions per workflow (xact_commit) *",
    [M_CPU_US_WF] = "client CPU per workflow, us (getrusage)",
    [M_SERVER_US_WF] = "server CPU per workflow, us (/proc)",
    [M_MACHINE_BUSY] = "machine CPU busy, % of all CPUs (/proc)",
};

typedef struct phase {
    int inflight;         /* 0: the drain run */
    int sql;              /* the workflows' step is the SQL step, not the callback */
    double wps;
    double p50, p90, p99; /* ms; the drain run: time to the first finished workflow in p50 */
    double seconds;       /* the drain run: how long it took */
    double metric[M_COUNT];
} phase;

/* What a window costs beyond the counters in `counters`. */
typedef struct extra {
    long long tx_statements, tx_round_trips, app_statements;
    double server_cpu, machine_busy, machine_all;
} extra;

static pid_t postmaster = -1;

static void snap_extra(extra *x)
{
    x->tx_statements = atomic_load(&tx_statements);
    x->tx_round_trips = atomic_load(&tx_round_trips);
    x->app_statements = atomic_load(&app_statements);
    x->server_cpu = postmaster > 0 ? server_cpu_s(postmaster) : -1;
    x->machine_busy = machine_cpu_s(&x->machine_all);
}

static void window_metrics(phase *p, const counters *a, const counters *b, const extra *xa, const extra *xb,
                           double workflows, int tx_steps)
{
    double commits = (double)(b->next_xid - a->next_xid);
    p->wps = workflows / (b->t - a->t);
    p->metric[M_WRITE_COMMITS_WF] = commits / workflows;
    p->metric[M_WRITE_COMMITS_STEP] = tx_steps ? commits / workflows / tx_steps : NAN;
    p->metric[M_OTHER_COMMITS_WF] = tx_steps ? commits / workflows - tx_steps : NAN;
    p->metric[M_TX_STATEMENTS_STEP] =
        COUNTING_LIBPQ && tx_steps ? (double)(xb->tx_statements - xa->tx_statements) / workflows / tx_steps : NAN;
    p->metric[M_TX_ROUND_TRIPS_STEP] =
        COUNTING_LIBPQ && tx_steps ? (double)(xb->tx_round_trips - xa->tx_round_trips) / workflows / tx_steps : NAN;
    p->metric[M_STATEMENTS_WF] = COUNTING_LIBPQ ? (double)(b->statements - a->statements) / workflows : NAN;
    p->metric[M_ROUND_TRIPS_WF] = COUNTING_LIBPQ ? (double)(b->round_trips - a->round_trips) / workflows : NAN;
    p->metric[M_CPU_US_WF] = (b->cpu - a->cpu) * 1e6 / workflows;
    p->metric[M_SERVER_US_WF] =
        xa->server_cpu >= 0 && xb->server_cpu >= 0 ? (xb->server_cpu - xa->server_cpu) * 1e6 / workflows : NAN;
    p->metric[M_MACHINE_BUSY] = xa->machine_busy >= 0 && xb->machine_all > xa->machine_all
                                    ? 100 * (xb->machine_busy - xa->machine_busy) / (xb->machine_all - xa->machine_all)
                                    : NAN;
}

static cairn *open_handle(const config *cfg, const char *conninfo, const char *executor_id, int workers)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = conninfo;
    o.executor_id = executor_id;
    o.workers = workers;
    o.commit_connections = cfg->commit_connections;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        die("cairn_open: %s: %s", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
    if ((rc = cairn_register_workflow(h, TX_WORKFLOW, tx1_workflow, TX_STEP)) != CAIRN_OK ||
        (rc = cairn_register_tx_step(h, TX_STEP, insert_step, NULL, NULL)) != CAIRN_OK ||
        (rc = cairn_register_workflow(h, SQL_WORKFLOW, tx1_workflow, SQL_STEP)) != CAIRN_OK ||
        (rc = cairn_register_sql_step(h, SQL_STEP, "INSERT INTO cairn_bench.tx_app(v) VALUES (1)", NULL)) != CAIRN_OK ||
        (rc = cairn_register_workflow(h, DRAIN_WORKFLOW, drain_workflow, NULL)) != CAIRN_OK)
        die("registering: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    return h;
}

/* ---- the transactional-step phase ------------------------------------- */

typedef struct client {
    pthread_t thread;
    cairn *h;
    const char *workflow;
    double *begin, *lat;
    size_t n, cap;
} client;

static atomic_int run_stop;
static atomic_llong run_done;


static void *client_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(&run_stop)) {
        double t0 = now_s();
        double l = bench_start_await(c->h, c->workflow, NULL);
        if (c->n == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 4096;
            c->begin = realloc(c->begin, c->cap * sizeof *c->begin);
            c->lat = realloc(c->lat, c->cap * sizeof *c->lat);
            if (!c->begin || !c->lat)
                die("out of memory");
        }
        c->begin[c->n] = t0;
        c->lat[c->n] = l;
        c->n++;
        atomic_fetch_add(&run_done, 1);
    }
    return NULL;
}

static long long run_tx(const config *cfg, monitor *m, cairn *h, phase *p)
{
    fprintf(stderr, "bench_tx: cairn, one %s, %d in flight, %d + %d s...\n",
            p->sql ? "SQL step" : "transactional step (callback)", p->inflight, cfg->warmup_seconds, cfg->seconds);
    int rc = cairn_start_workers(h);
    if (rc != CAIRN_OK)
        die("cairn_start_workers: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    client *cl = calloc((size_t)p->inflight, sizeof *cl);
    if (!cl)
        die("out of memory");
    atomic_store(&run_stop, 0);
    atomic_store(&run_done, 0);
    for (int i = 0; i < p->inflight; i++) {
        cl[i].h = h;
        cl[i].workflow = p->sql ? SQL_WORKFLOW : TX_WORKFLOW;
        if (pthread_create(&cl[i].thread, NULL, client_main, &cl[i]) != 0)
            die("cannot create client thread %d", i);
    }
    sleep_s(cfg->warmup_seconds);
    counters a, b;
    extra xa, xb;
    snap_server(m, &a);
    long long done0 = atomic_load(&run_done);
    snap_extra(&xa);
    snap_client(&a);
    sleep_s(cfg->seconds);
    snap_client(&b);
    snap_extra(&xb);
    long long done1 = atomic_load(&run_done);
    snap_server(m, &b);
    atomic_store(&run_stop, 1);
    for (int i = 0; i < p->inflight; i++)
        pthread_join(cl[i].thread, NULL);
    window_metrics(p, &a, &b, &xa, &xb, (double)(done1 - done0), 1);

    size_t total = 0;
    for (int i = 0; i < p->inflight; i++)
        total += cl[i].n;
    double *lat = malloc((total ? total : 1) * sizeof *lat);
    if (!lat)
        die("out of memory");
    size_t n = 0;
    for (int i = 0; i < p->inflight; i++) {
        for (size_t k = 0; k < cl[i].n; k++)
            if (cl[i].begin[k] >= a.t && cl[i].begin[k] + cl[i].lat[k] <= b.t)
                lat[n++] = cl[i].lat[k];
        free(cl[i].begin);
        free(cl[i].lat);
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    p->p50 = percentile(lat, n, 50) * 1e3;
    p->p90 = percentile(lat, n, 90) * 1e3;
    p->p99 = percentile(lat, n, 99) * 1e3;
    free(lat);
    free(cl);
    return atomic_load(&run_done);
}

/* ---- the drain phase ---------------------------------------------------- */

/* Workflows of the drain that have not finished yet, by the database. */
static long long drain_left(monitor *m)
{
    return mon_value(m,
                     "SELECT count(*) FROM cairn.workflow_status WHERE name = '" DRAIN_WORKFLOW "'"
                     " AND status IN ('ENQUEUED', 'PENDING')",
                     0, NULL, 1);
}

/*
 * Enqueues cfg->drain workflows in one transaction (before the handle
 * opens), then starts the workers and waits: first, without touching the
 * database, until every workflow function has run, then by asking the
 * database until every finish has committed.
 */
static long long run_drain(const config *cfg, monitor *m, cairn *h, phase *p)
{
    fprintf(stderr, "bench_tx: cairn, draining %d enqueued no-op workflows with %d executor threads...\n",
            cfg->drain, cfg->drain_workers);
    atomic_store(&drain_ran, 0);
    counters a, b;
    extra xa, xb;
    snap_server(m, &a);
    snap_extra(&xa);
    snap_client(&a);
    int rc = cairn_start_workers(h);
    if (rc != CAIRN_OK)
        die("cairn_start_workers: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    double first = NAN;
    double deadline = now_s() + 600;
    while (atomic_load(&drain_ran) < cfg->drain) {
        if (isnan(first) && atomic_load(&drain_ran) > 0)
            first = now_s() - a.t;
        if (now_s() > deadline)
            die("the drain did not finish in 600 s (%lld of %d ran)", (long long)atomic_load(&drain_ran), cfg->drain);
        sleep_s(0.001);
    }
    if (isnan(first))
        first = now_s() - a.t;
    while (drain_left(m) > 0) {
        if (now_s() > deadline)
            die("the drain did not finish in 600 s");
        sleep_s(0.002);
    }
    snap_client(&b);
    snap_extra(&xb);
    snap_server(m, &b);
    window_metrics(p, &a, &b, &xa, &xb, cfg->drain, 0);
    p->seconds = b.t - a.t;
    p->p50 = first * 1e3;
    p->p90 = p->p99 = NAN;
    return cfg->drain;
}

static void enqueue_drain(const config *cfg, monitor *m)
{
    char n[16];
    snprintf(n, sizeof n, "%d", cfg->drain);
    const char *vals[1] = {n};
    mon_exec(m, "UPDATE cairn.wakeup SET armed = false WHERE armed");
    long long got = mon_value(m,
                              "SELECT count(cairn.enqueue('" DRAIN_WORKFLOW "', '{\"n\":1}'))"
                              " FROM generate_series(1, $1::int)",
                              1, vals, 1);
    if (got != cfg->drain)
        die("enqueued %lld workflows, not %d", got, cfg->drain);
}

/*
 * One phase on a fresh handle: the transactional-step run when
 * p->inflight > 0, else the drain. xact_commit is read before the handle
 * opens and after its connections have closed, so that it covers
 * everything the handle did.
 */
static void run_phase(const config *cfg, monitor *m, const char *run_tag, int rep, phase *p)
{
    char app[64], executor[64];
    snprintf(app, sizeof app, "cairn-bench-tx-%s-%d-%d%s", run_tag, rep, p->inflight, p->sql ? "-sql" : "");
    snprintf(executor, sizeof executor, "bench-tx-%s", run_tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);

    if (p->inflight > 0) {
        mon_exec(m, "DROP TABLE IF EXISTS cairn_bench.tx_app");
        mon_exec(m, "CREATE TABLE cairn_bench.tx_app(id bigserial PRIMARY KEY, v int)");
    }
    long long mon0 = m->queries;
    long long xc0 = xact_commit(m);
    cairn *h = open_handle(cfg, conninfo, executor, p->inflight > 0 ? p->inflight : cfg->drain_workers);
    /* The drain's enqueue runs on the monitoring connection, so it is not counted as the handle's. */
    if (p->inflight == 0)
        enqueue_drain(cfg, m);
    checkpoint(m);
    long long all = p->inflight > 0 ? run_tx(cfg, m, h, p) : run_drain(cfg, m, h, p);
    cairn_close(h);
    settle(m, app);
    long long mon1 = m->queries + (m->version >= 150000 ? 1 : 0); /* with the flush request xact_commit() makes */
    long long xc1 = xact_commit(m);
    p->metric[M_ALL_XACTS_WF] = (double)(xc1 - xc0 - (mon1 - mon0)) / (double)all;
    free(conninfo);
}

/* Deletes the workflows this run created, in batches that keep each transaction short. */
static void cleanup(monitor *m, const char *executor)
{
    const char *p[1] = {executor};
    static const char sql[] =
        "WITH w AS (SELECT id FROM cairn.workflow_status"
        "   WHERE name IN ('" TX_WORKFLOW "', '" SQL_WORKFLOW "', '" DRAIN_WORKFLOW "')"
        "     AND (executor_id = $1 OR (executor_id IS NULL AND name = '" DRAIN_WORKFLOW "'))"
        "   LIMIT 20000),"
        " s AS (DELETE FROM cairn.steps WHERE workflow_id IN (SELECT id FROM w))"
        " DELETE FROM cairn.workflow_status WHERE id IN (SELECT id FROM w)";
    for (;;) {
        PGresult *r = mon_query(m, sql, 1, p, 0);
        if (!r) {
            fprintf(stderr, "bench_tx: warning: could not delete the benchmark's workflows: %s", PQerrorMessage(m->pg));
            break;
        }
        long n = strtol(PQcmdTuples(r), NULL, 10);
        PQclear(r);
        if (n == 0)
            break;
    }
    mon_exec(m, "DROP SCHEMA IF EXISTS cairn_bench CASCADE");
}

/* ---- the baseline ------------------------------------------------------ */

static double baseline(const config *cfg, monitor *m, const char *script, pgbench_result *res)
{
    mon_exec(m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");
    mon_exec(m, "DROP TABLE IF EXISTS cairn_bench.bench_t");
    mon_exec(m, "CREATE TABLE cairn_bench.bench_t(id bigserial PRIMARY KEY, v int)");
    checkpoint(m);
    fprintf(stderr, "bench_tx: pgbench, one-row INSERT, 32 clients, %d s...\n", cfg->pgbench_seconds);
    if (pgbench_measure(cfg->pgbench, cfg->conninfo, script, 32, 2, cfg->pgbench_seconds, postmaster, res) < 0) {
        unlink(script);
        die("the pgbench baseline failed; run with --no-pgbench to measure cairn alone");
    }
    return res->tps;
}

/* ---- report ---------------------------------------------------------- */

typedef struct rep {
    double tps32;            /* NAN without a baseline */
    double base_server_us;   /* server CPU per INSERT transaction, us */
    double base_busy;        /* machine CPU busy during the baseline, % */
    phase ph[2 * MAX_INFLIGHT_RUNS + 1];
} rep;

static double median_at(const rep *reps, int nrep, size_t off)
{
    double v[100];
    for (int r = 0; r < nrep; r++)
        memcpy(&v[r], (const char *)&reps[r] + off, sizeof v[r]);
    return median(v, nrep);
}

#define PH(i, field) (offsetof(rep, ph) + (size_t)(i) * sizeof(phase) + offsetof(phase, field))

static void report(const config *cfg, monitor *m, const rep *reps, int nrep, int nph, double load0)
{
    char t[64], b1[32], b2[32], b3[32], b4[32];
    time_t now = time(NULL);
    strftime(t, sizeof t, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    char *ver = mon_text(m, "SELECT current_setting('server_version')");
    char *fsync = mon_text(m, "SELECT current_setting('fsync')");
    char *sc = mon_text(m, "SELECT current_setting('synchronous_commit')");
    char *wsm = mon_text(m, "SELECT current_setting('wal_sync_method')");
    char *sb = mon_text(m, "SELECT current_setting('shared_buffers')");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *of = nrep > 1 ? " (medians)" : "";

    printf("\ncairn transactional-step and drain benchmark, %s", t);
    if (nrep > 1)
        printf(", %d repetitions", nrep);
    printf("\nserver:  PostgreSQL %s, fsync=%s, synchronous_commit=%s, wal_sync_method=%s, shared_buffers=%s%s\n", ver,
           fsync, sc, wsm, sb, postmaster > 0 ? ", on this machine" : "");
    printf("client:  %ld CPUs online, load average %s before the run, cairn %s, commit connections: %s\n", cpus,
           load0 < 0 ? "n/a" : num(b2, sizeof b2, load0, 2), cairn_version(),
           cfg->commit_connections ? num(b1, sizeof b1, cfg->commit_connections, 0) : "default");
    if (strcmp(fsync, "on") != 0 || strcmp(sc, "off") == 0)
        printf("WARNING: the server does not flush commits to disk; this is not a durable comparison.\n");
    if (load0 > 0.5 * (double)cpus)
        printf("WARNING: other processes kept the machine busy before the run; the figures are noisy.\n");

    int have_base = !isnan(reps[0].tps32);
    double tps32 = median_at(reps, nrep, offsetof(rep, tps32));
    if (have_base) {
        printf("\nPostgres alone: pgbench, one-row INSERT, -M prepared, 32 clients, %d s%s\n", cfg->pgbench_seconds,
               of);
        printf("  %-14s %10s tps   / 3 = %s   server CPU %s us per transaction, machine CPU %s%% busy\n",
               "32 clients", num(b1, sizeof b1, tps32, 0), num(b2, sizeof b2, tps32 / 3, 0),
               num(b3, sizeof b3, median_at(reps, nrep, offsetof(rep, base_server_us)), 0),
               num(b4, sizeof b4, median_at(reps, nrep, offsetof(rep, base_busy)), 0));
    }

    printf("\ncairn: workflow of one transactional step that inserts one row, awaited by its client,\n"
           "as many executor threads as workflows in flight%s. callback: a cairn_tx_step_fn (BEGIN;\n"
           "its INSERT; checkpoint + COMMIT); SQL step: cairn_register_sql_step (the INSERT and its\n"
           "checkpoint as one statement)\n",
           of);
    printf("  %-34s %12s %9s %9s %9s\n", "", "workflows/s", "p50 ms", "p90 ms", "p99 ms");
    int ndrain = -1;
    for (int i = 0; i < nph; i++) {
        int inflight = reps[0].ph[i].inflight;
        if (!inflight) {
            ndrain = i;
            continue;
        }
        char lab[48];
        snprintf(lab, sizeof lab, "%d in flight, %s (%d s)", inflight, reps[0].ph[i].sql ? "SQL step" : "callback",
                 cfg->seconds);
        printf("  %-34s %12s %9.3f %9.3f %9.3f\n", lab, num(b1, sizeof b1, median_at(reps, nrep, PH(i, wps)), 0),
               median_at(reps, nrep, PH(i, p50)), median_at(reps, nrep, PH(i, p90)),
               median_at(reps, nrep, PH(i, p99)));
    }
    if (ndrain >= 0) {
        printf("\ncairn: drain of %s no-op workflows enqueued by SQL in one transaction, then a worker\n"
               "with %d executor threads started (its dispatcher claims up to 256 at a time)%s\n",
               num(b1, sizeof b1, cfg->drain, 0), cfg->drain_workers, of);
        printf("  %-26s %12s   drained in %s s, first finished %s ms after the start\n", "drain",
               num(b1, sizeof b1, median_at(reps, nrep, PH(ndrain, wps)), 0),
               num(b2, sizeof b2, median_at(reps, nrep, PH(ndrain, seconds)), 2),
               num(b3, sizeof b3, median_at(reps, nrep, PH(ndrain, p50)), 1));
    }

    printf("\n  %-46s", "per workflow, measured window");
    for (int i = 0; i < nph; i++) {
        int inflight = reps[0].ph[i].inflight;
        if (inflight)
            snprintf(b1, sizeof b1, "%s %d", reps[0].ph[i].sql ? "SQL" : "callback", inflight);
        printf(" %13s", inflight ? b1 : "drain");
    }
    printf("\n");
    for (int k = 0; k < M_COUNT; k++) {
        if ((k == M_TX_STATEMENTS_STEP || k == M_TX_ROUND_TRIPS_STEP || k == M_STATEMENTS_WF ||
             k == M_ROUND_TRIPS_WF) &&
            !COUNTING_LIBPQ)
            continue;
        if ((k == M_SERVER_US_WF) && postmaster <= 0)
            continue;
        printf("  %-46s", metric_label[k]);
        for (int i = 0; i < nph; i++) {
            double v = median_at(reps, nrep, PH(i, metric) + (size_t)k * sizeof(double));
            printf(" %13s", isnan(v) ? "-" : num(b1, sizeof b1, v, k >= M_CPU_US_WF ? 0 : 2));
        }
        printf("\n");
    }
    printf("  * the whole database over the handle's whole life, connection setup and warm-up\n"
           "    included: every committed transaction, reads too.\n");
    if (COUNTING_LIBPQ)
        printf("  A callback step's statements: BEGIN, the step's INSERT, the checkpoint INSERT and\n"
               "  COMMIT; the last two travel in one pipeline. A SQL step's: one, the INSERT and the\n"
               "  checkpoint in one statement (its preparation, once per connection, falls in the warm-up).\n");

    if (have_base) {
        printf("\nTargets (ratios of figures taken in the same run)           measured    target\n");
        for (int i = 0; i < nph; i++) {
            int inflight = reps[0].ph[i].inflight;
            if (!inflight)
                continue;
            double v[100];
            for (int r = 0; r < nrep; r++)
                v[r] = reps[r].ph[i].wps * 3 / reps[r].tps32;
            double ratio = median(v, nrep);
            char lab[96];
            snprintf(lab, sizeof lab, "%d in flight, %s: workflows/s x 3 / pgbench", inflight,
                     reps[0].ph[i].sql ? "SQL step" : "callback");
            printf("  %-56s %7.2fx   >= 1.00x  %s\n", lab, ratio,
                   inflight == 64 ? (ratio >= 1.0 ? "met" : "MISSED") : "(for reference)");
            if (nrep > 1) {
                printf("    each repetition:");
                for (int r = 0; r < nrep; r++)
                    printf(" %.2f", reps[r].ph[i].wps * 3 / reps[r].tps32);
                printf("\n");
            }
        }
        if (ndrain >= 0) {
            double v[100];
            for (int r = 0; r < nrep; r++)
                v[r] = reps[r].ph[ndrain].wps / reps[r].tps32;
            printf("  %-56s %7.2fx             (for reference)\n", "drain: workflows/s / pgbench 32 clients",
                   median(v, nrep));
        }
    }
    printf("\nFor comparison (measured earlier on this kind of machine, not in this run): DBOS Transact,\n"
           "one transactional step, 64 in flight: 319 workflows/s with 10 transactions per workflow;\n"
           "draining 20,000 jobs: graphile-worker 2,600 / 19,800 jobs/s (defaults / batching),\n"
           "pg-boss 64 / 6,460 jobs/s (1 / 32 per fetch).\n\n");
    free(ver);
    free(fsync);
    free(sc);
    free(wsm);
    free(sb);
}

int main(int argc, char **argv)
{
    bench_name = "bench_tx";
    config cfg;
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    double load0 = load_average();
    count_hook = count_tx;
    count_stmt_hook = count_sql_stmt;

    monitor m;
    mon_open(&m, cfg.conninfo);
    postmaster = local_postmaster(&m);
    mon_exec(&m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");
    char run_tag[32];
    snprintf(run_tag, sizeof run_tag, "%ld-%ld", (long)getpid(), (long)time(NULL));
    char executor[64];
    snprintf(executor, sizeof executor, "bench-tx-%s", run_tag);
    char script[] = "/tmp/cairn-bench-XXXXXX.sql";
    if (cfg.pgbench)
        write_script(script, "insert into cairn_bench.bench_t(v) values (1);\n");

    rep *reps = calloc((size_t)cfg.repeat, sizeof *reps);
    if (!reps)
        die("out of memory");
    /* Per in-flight count, the callback step and then the SQL step; the drain last. */
    int nph = 2 * cfg.ninflight + (cfg.drain > 0);
    int ndr = 2 * cfg.ninflight;
    for (int r = 0; r < cfg.repeat; r++) {
        rep *rp = &reps[r];
        if (cfg.repeat > 1)
            fprintf(stderr, "bench_tx: repetition %d of %d\n", r + 1, cfg.repeat);
        rp->tps32 = rp->base_server_us = rp->base_busy = NAN;
        if (cfg.pgbench) {
            pgbench_result res;
            rp->tps32 = baseline(&cfg, &m, script, &res);
            double xacts = res.transactions > 0 ? res.transactions : res.tps * res.seconds;
            rp->base_server_us = res.server_cpu_s >= 0 ? res.server_cpu_s * 1e6 / xacts : NAN;
            rp->base_busy = res.machine_s > 0 ? 100 * res.machine_busy_s / res.machine_s : NAN;
        }
        for (int i = 0; i < ndr; i++) {
            rp->ph[i].inflight = cfg.inflight[i / 2];
            rp->ph[i].sql = i % 2;
            run_phase(&cfg, &m, run_tag, r, &rp->ph[i]);
        }
        if (cfg.drain > 0) {
            rp->ph[ndr].inflight = 0;
            run_phase(&cfg, &m, run_tag, r, &rp->ph[ndr]);
        }
        if (!cfg.keep)
            cleanup(&m, executor), mon_exec(&m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");
    }
    if (cfg.pgbench)
        unlink(script);

    report(&cfg, &m, reps, cfg.repeat, nph, load0);
    if (!cfg.keep)
        cleanup(&m, executor);
    free(reps);
    PQfinish(m.pg);
    return 0;
}
