/*
 * bench_core: the core benchmark. It measures, against one server in one
 * run, what Postgres itself does (pgbench committing one-row INSERTs from
 * 1 and 32 clients) and what cairn does with the same server (a workflow
 * of three no-op steps, run one after another and with many in flight),
 * and prints the figures side by side with their ratios. It also counts
 * what each workflow costs the database: write commits (from the server's
 * transaction ID counter), all committed transactions (from
 * pg_stat_database.xact_commit), and statements and round trips (from
 * pg_stat_statements when the server has it loaded, and from the libpq
 * calls the library makes when the build counts them). Last, it reports
 * the client CPU time and context switches each workflow costs.
 *
 * It prints figures; it is not a test and has no pass/fail time limit.
 * Its exit status is non-zero only when something failed to run.
 */
#include <errno.h>
#include <limits.h>
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

#define WORKFLOW_NAME "cairn_bench_noop3"
#define STEP_NAME "cairn_bench_noop"
#define STEPS_PER_WORKFLOW 3
#define ITEMS_PER_WORKFLOW (STEPS_PER_WORKFLOW + 2) /* start, three checkpoints, finish */
#define MAX_INFLIGHT_RUNS 8

/* ---- command line ---------------------------------------------------- */

typedef struct config {
    const char *conninfo;  /* "" means libpq's defaults (PG* environment) */
    const char *pgbench;   /* NULL: skip the baseline */
    int pgbench_seconds;
    int runs;              /* measured sequential workflows */
    int warmup;            /* sequential warm-up workflows */
    int seconds;           /* measured seconds per concurrent run */
    int warmup_seconds;    /* warm-up seconds per concurrent run */
    int inflight[MAX_INFLIGHT_RUNS];
    int ninflight;
    int commit_connections; /* 0: the library's default */
    int repeat;             /* times the whole set of measurements is taken */
    int keep;               /* leave the benchmark's rows in place */
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_core [OPTIONS] [CONNINFO]\n\n"
            "Runs a one-row INSERT pgbench baseline and cairn's 3-step no-op workflow on the same\n"
            "server and prints the figures and their ratios. CONNINFO is a libpq URL or key=value\n"
            "string; without it $CAIRN_DATABASE_URL, else libpq's PG* environment.\n\n"
            "  --pgbench PATH          the pgbench program (default $PGBENCH, else pgbench on PATH)\n"
            "  --no-pgbench            skip the baseline (no ratios are printed)\n"
            "  --pgbench-seconds N     length of each pgbench run (10)\n"
            "  --runs N                measured sequential workflows (2000)\n"
            "  --warmup N              sequential warm-up workflows (200)\n"
            "  --seconds N             measured seconds per concurrent run (10)\n"
            "  --warmup-seconds N      warm-up seconds per concurrent run (1)\n"
            "  --inflight LIST         comma-separated workflows in flight (16,64)\n"
            "  --commit-connections N  cairn_options.commit_connections (library default)\n"
            "  --repeat N              take every measurement N times, print medians (1)\n"
            "  --keep                  keep the benchmark's table and workflow rows\n");
}

static int parse_args(int argc, char **argv, config *c)
{
    memset(c, 0, sizeof *c);
    c->pgbench = getenv("PGBENCH");
    if (!c->pgbench || !*c->pgbench)
        c->pgbench = "pgbench";
    c->pgbench_seconds = 10;
    c->runs = 2000;
    c->warmup = 200;
    c->seconds = 10;
    c->warmup_seconds = 1;
    c->inflight[0] = 16;
    c->inflight[1] = 64;
    c->ninflight = 2;
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
        } else if (strcmp(a, "--runs") == 0) {
            bad = bench_parse_int(v, 1, 10000000, &c->runs), i++;
        } else if (strcmp(a, "--warmup") == 0) {
            bad = bench_parse_int(v, 0, 10000000, &c->warmup), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            bad = bench_parse_int(v, 1, 3600, &c->seconds), i++;
        } else if (strcmp(a, "--warmup-seconds") == 0) {
            bad = bench_parse_int(v, 0, 3600, &c->warmup_seconds), i++;
        } else if (strcmp(a, "--inflight") == 0) {
            bad = bench_parse_list(v, 1, 1024, c->inflight, MAX_INFLIGHT_RUNS, &c->ninflight), i++;
        } else if (strcmp(a, "--repeat") == 0) {
            bad = bench_parse_int(v, 1, 100, &c->repeat), i++;
        } else if (strcmp(a, "--commit-connections") == 0) {
            bad = bench_parse_int(v, 1, 64, &c->commit_connections), i++;
        } else if (a[0] == '-') {
            bad = 1;
        } else {
            c->conninfo = a;
        }
        if (bad) {
            fprintf(stderr, "bench_core: bad argument '%s'%s%s\n", a, v ? " " : "", v && a[0] == '-' ? v : "");
            usage(stderr);
            return -1;
        }
    }
    if (!c->conninfo)
        c->conninfo = "";
    return 0;
}

/* ---- pgbench baseline ----------------------------------------------- */

/* Writes the pgbench script (one one-row INSERT) into path, a mkstemps() template. */
static void pgbench_script(char *path)
{
    int fd = mkstemps(path, 4);
    if (fd < 0)
        die("cannot create a pgbench script: %s", strerror(errno));
    static const char sql[] = "insert into cairn_bench.bench_t(v) values (1);\n";
    if (write(fd, sql, sizeof sql - 1) != (ssize_t)(sizeof sql - 1))
        die("cannot write %s: %s", path, strerror(errno));
    close(fd);
}

/*
 * One pgbench run of the one-row INSERT on a fresh table; returns its tps,
 * or a negative number when it failed. With p50 not NULL, pgbench logs each
 * transaction and *p50 receives the median latency in ms.
 */
static double pgbench_once(const config *cfg, monitor *m, const char *script, int clients, double *p50)
{
    char secs[16], nclients[16], nthreads[16], logdir[] = "/tmp/cairn-bench-log-XXXXXX", prefix[PATH_MAX];
    snprintf(secs, sizeof secs, "%d", cfg->pgbench_seconds);
    snprintf(nclients, sizeof nclients, "%d", clients);
    snprintf(nthreads, sizeof nthreads, "%d", clients > 1 ? 2 : 1);
    mon_exec(m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");
    mon_exec(m, "DROP TABLE IF EXISTS cairn_bench.bench_t");
    mon_exec(m, "CREATE TABLE cairn_bench.bench_t(id bigserial PRIMARY KEY, v int)");
    checkpoint(m);
    char *argv[20];
    int k = 0;
    argv[k++] = (char *)cfg->pgbench;
    argv[k++] = "-n";
    argv[k++] = "-M";
    argv[k++] = "prepared";
    argv[k++] = "-f";
    argv[k++] = (char *)script;
    argv[k++] = "-c";
    argv[k++] = nclients;
    argv[k++] = "-j";
    argv[k++] = nthreads;
    argv[k++] = "-T";
    argv[k++] = secs;
    if (p50) {
        if (!mkdtemp(logdir))
            die("cannot create a directory for pgbench's log: %s", strerror(errno));
        snprintf(prefix, sizeof prefix, "--log-prefix=%s/pgbench_log", logdir);
        argv[k++] = "-l";
        argv[k++] = prefix;
    }
    if (cfg->conninfo[0])
        argv[k++] = (char *)cfg->conninfo;
    argv[k] = NULL;
    fprintf(stderr, "bench_core: pgbench, one-row INSERT, %d client(s), %s s...\n", clients, secs);
    double tps = run_pgbench(argv);
    if (p50)
        *p50 = pgbench_log_p50(logdir);
    return tps;
}

static void baseline_failed(const char *script)
{
    unlink(script);
    die("the pgbench baseline failed; run with --no-pgbench to measure cairn alone");
}

/* ---- the workflow ---------------------------------------------------- */

static int noop_step(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    (void)s, (void)input, (void)udata;
    *output = NULL;
    return CAIRN_OK;
}

static int noop3_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)input, (void)udata;
    for (int i = 0; i < STEPS_PER_WORKFLOW; i++) {
        int rc = cairn_step(ctx, STEP_NAME, NULL, NULL);
        if (rc != CAIRN_OK)
            return rc;
    }
    *output = NULL;
    return CAIRN_OK;
}

/* ---- phases ---------------------------------------------------------- */

/* What a phase reports per workflow; NAN where it could not be measured. */
enum {
    M_WRITE_COMMITS_WF,
    M_WRITE_COMMITS_STEP,
    M_ITEMS_PER_COMMIT,
    M_STATEMENTS_WF,
    M_STATEMENTS_STEP,
    M_ROUND_TRIPS_WF,
    M_PGSS_WF,
    M_ALL_XACTS_WF,
    M_CPU_US_WF,
    M_SWITCHES_WF,
    M_COUNT
};

static const char *const metric_label[M_COUNT] = {
    [M_WRITE_COMMITS_WF] = "write commits per workflow (xid counter)",
    [M_WRITE_COMMITS_STEP] = "write commits per step (/ 3 steps)",
    [M_ITEMS_PER_COMMIT] = "durable writes per commit (5 per workflow)",
    [M_STATEMENTS_WF] = "statements per workflow (libpq calls)",
    [M_STATEMENTS_STEP] = "statements per step (/ 3 steps)",
    [M_ROUND_TRIPS_WF] = "round trips per workflow (libpq calls)",
    [M_PGSS_WF] = "statements per workflow (pg_stat_statements)",
    [M_ALL_XACTS_WF] = "all transactions per workflow (xact_commit) *",
    [M_CPU_US_WF] = "client CPU per workflow, us (getrusage)",
    [M_SWITCHES_WF] = "client context switches per workflow",
};

typedef struct phase {
    int inflight;         /* 0: sequential */
    double wps;           /* workflows completed per second in the measured window */
    double p50, p90, p99; /* latency from cairn_start() to cairn_await() returning, ms */
    double metric[M_COUNT];
} phase;

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
    if ((rc = cairn_register_workflow(h, WORKFLOW_NAME, noop3_workflow, NULL)) != CAIRN_OK ||
        (rc = cairn_register_step(h, STEP_NAME, noop_step, NULL, NULL)) != CAIRN_OK ||
        (rc = cairn_start_workers(h)) != CAIRN_OK)
        die("setting up the handle: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    return h;
}

/* Starts one workflow and waits for it; returns its latency in seconds. */
static double one_workflow(cairn *h)
{
    return bench_start_await(h, WORKFLOW_NAME, NULL);
}

/* One client thread of a concurrent phase: start a workflow, await it, repeat. */
typedef struct client {
    pthread_t thread;
    cairn *h;
    double *begin; /* when each workflow was started */
    double *lat;   /* and how long it took */
    size_t n, cap;
} client;

static atomic_int run_stop;
static atomic_llong run_done;

static void *client_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(&run_stop)) {
        double t0 = now_s();
        double l = one_workflow(c->h);
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

/* Fills the per-workflow figures of a window in which `workflows` completed. */
static void window_metrics(phase *p, const counters *a, const counters *b, double workflows)
{
    double steps = workflows * STEPS_PER_WORKFLOW;
    double commits = (double)(b->next_xid - a->next_xid);
    p->wps = workflows / (b->t - a->t);
    p->metric[M_WRITE_COMMITS_WF] = commits / workflows;
    p->metric[M_WRITE_COMMITS_STEP] = commits / steps;
    p->metric[M_ITEMS_PER_COMMIT] = commits > 0 ? workflows * ITEMS_PER_WORKFLOW / commits : NAN;
    p->metric[M_STATEMENTS_WF] = COUNTING_LIBPQ ? (double)(b->statements - a->statements) / workflows : NAN;
    p->metric[M_STATEMENTS_STEP] = COUNTING_LIBPQ ? (double)(b->statements - a->statements) / steps : NAN;
    p->metric[M_ROUND_TRIPS_WF] = COUNTING_LIBPQ ? (double)(b->round_trips - a->round_trips) / workflows : NAN;
    p->metric[M_PGSS_WF] =
        a->pgss_calls >= 0 && b->pgss_calls >= 0 ? (double)(b->pgss_calls - a->pgss_calls) / workflows : NAN;
    p->metric[M_CPU_US_WF] = (b->cpu - a->cpu) * 1e6 / workflows;
    p->metric[M_SWITCHES_WF] = (double)(b->switches - a->switches) / workflows;
}

static void set_percentiles(phase *p, double *lat, size_t n)
{
    qsort(lat, n, sizeof *lat, cmp_double);
    p->p50 = percentile(lat, n, 50) * 1e3;
    p->p90 = percentile(lat, n, 90) * 1e3;
    p->p99 = percentile(lat, n, 99) * 1e3;
}

/* The sequential phase: one client, one workflow after another. Returns the workflows run. */
static long long run_sequential(const config *cfg, monitor *m, cairn *h, phase *p)
{
    fprintf(stderr, "bench_core: cairn, sequential, %d + %d runs...\n", cfg->warmup, cfg->runs);
    for (int i = 0; i < cfg->warmup; i++)
        one_workflow(h);
    double *lat = malloc((size_t)cfg->runs * sizeof *lat);
    if (!lat)
        die("out of memory");
    counters a, b;
    snap_server(m, &a);
    snap_client(&a);
    for (int i = 0; i < cfg->runs; i++)
        lat[i] = one_workflow(h);
    snap_client(&b);
    snap_server(m, &b);
    window_metrics(p, &a, &b, cfg->runs);
    set_percentiles(p, lat, (size_t)cfg->runs);
    free(lat);
    return (long long)cfg->warmup + cfg->runs;
}

/* A concurrent phase: p->inflight client threads. Returns the workflows run. */
static long long run_concurrent(const config *cfg, monitor *m, cairn *h, phase *p)
{
    fprintf(stderr, "bench_core: cairn, %d in flight, %d + %d s...\n", p->inflight, cfg->warmup_seconds,
            cfg->seconds);
    client *cl = calloc((size_t)p->inflight, sizeof *cl);
    if (!cl)
        die("out of memory");
    atomic_store(&run_stop, 0);
    atomic_store(&run_done, 0);
    for (int i = 0; i < p->inflight; i++) {
        cl[i].h = h;
        if (pthread_create(&cl[i].thread, NULL, client_main, &cl[i]) != 0)
            die("cannot create client thread %d", i);
    }
    sleep_s(cfg->warmup_seconds);
    counters a, b;
    snap_server(m, &a);
    long long done0 = atomic_load(&run_done);
    snap_client(&a);
    sleep_s(cfg->seconds);
    snap_client(&b);
    long long done1 = atomic_load(&run_done);
    snap_server(m, &b);
    atomic_store(&run_stop, 1);
    for (int i = 0; i < p->inflight; i++)
        pthread_join(cl[i].thread, NULL);
    window_metrics(p, &a, &b, (double)(done1 - done0));

    /* Latency of the workflows that both started and ended inside the window. */
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
    set_percentiles(p, lat, n);
    free(lat);
    free(cl);
    return atomic_load(&run_done);
}

/*
 * One phase on a fresh handle (sequential when p->inflight is 0), with
 * xact_commit read before the handle opens and after its connections have
 * closed, so that it covers everything the handle did.
 */
static void run_phase(const config *cfg, monitor *m, const char *run_tag, int rep, phase *p)
{
    char app[64], executor[64];
    snprintf(app, sizeof app, "cairn-bench-%s-%d-%d", run_tag, rep, p->inflight);
    snprintf(executor, sizeof executor, "bench-%s", run_tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);

    checkpoint(m);
    long long mon0 = m->queries;
    long long xc0 = xact_commit(m);
    cairn *h = open_handle(cfg, conninfo, executor, p->inflight > 0 ? p->inflight : 16);
    long long all = p->inflight ? run_concurrent(cfg, m, h, p) : run_sequential(cfg, m, h, p);
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
        "WITH w AS (SELECT id FROM cairn.workflow_status WHERE executor_id = $1 AND name = '" WORKFLOW_NAME "'"
        "   LIMIT 20000),"
        " s AS (DELETE FROM cairn.steps WHERE workflow_id IN (SELECT id FROM w))"
        " DELETE FROM cairn.workflow_status WHERE id IN (SELECT id FROM w)";
    for (;;) {
        PGresult *r = mon_query(m, sql, 1, p, 0);
        if (!r) {
            fprintf(stderr, "bench_core: warning: could not delete the benchmark's workflows: %s",
                    PQerrorMessage(m->pg));
            break;
        }
        long n = strtol(PQcmdTuples(r), NULL, 10);
        PQclear(r);
        if (n == 0)
            break;
    }
    mon_exec(m, "DROP SCHEMA IF EXISTS cairn_bench CASCADE");
}

/* ---- report ---------------------------------------------------------- */

/* One repetition: the baseline's two rates and every phase. */
typedef struct rep {
    double tps1, tps32; /* NAN without a baseline */
    double p50_1;       /* median latency of the 1-client INSERT, ms */
    phase ph[1 + MAX_INFLIGHT_RUNS];
} rep;

/* The ratio a target is judged by, for phase i of repetition r. */
static double target_ratio(const rep *r, int i)
{
    const phase *p = &r->ph[i];
    return p->inflight == 0 ? p->p50 / (5e3 / r->tps1) : p->wps * 5 / r->tps32;
}

/* Median over the repetitions of the double at byte offset `off` of each rep. */
static double median_at(const rep *reps, int nrep, size_t off)
{
    double v[100];
    for (int r = 0; r < nrep; r++)
        memcpy(&v[r], (const char *)&reps[r] + off, sizeof v[r]);
    return median(v, nrep);
}

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

    printf("\ncairn core benchmark, %s%s\n", t, nrep > 1 ? (snprintf(b4, sizeof b4, ", %d repetitions", nrep), b4) : "");
    printf("server:  PostgreSQL %s, fsync=%s, synchronous_commit=%s, wal_sync_method=%s, shared_buffers=%s\n", ver,
           fsync, sc, wsm, sb);
    printf("client:  %ld CPUs online, load average %s before the run, cairn %s, commit connections: %s\n", cpus,
           load0 < 0 ? "n/a" : num(b2, sizeof b2, load0, 2), cairn_version(),
           cfg->commit_connections ? num(b1, sizeof b1, cfg->commit_connections, 0) : "default");
    if (strcmp(fsync, "on") != 0 || strcmp(sc, "off") == 0)
        printf("WARNING: the server does not flush commits to disk; this is not a durable comparison.\n");
    if (load0 > 0.5 * (double)cpus)
        printf("WARNING: other processes kept the machine busy before the run; the figures are noisy.\n");

    int have_base = !isnan(reps[0].tps1);
    if (have_base) {
        double tps1 = median_at(reps, nrep, offsetof(rep, tps1));
        double tps32 = median_at(reps, nrep, offsetof(rep, tps32));
        printf("\nPostgres alone: pgbench, one-row INSERT, -M prepared, %d s each%s\n", cfg->pgbench_seconds, of);
        double p50_1 = median_at(reps, nrep, offsetof(rep, p50_1));
        printf("  %-14s %10s tps   one commit %s ms (p50 %s ms), five commits %s ms\n", "1 client",
               num(b1, sizeof b1, tps1, 0), num(b2, sizeof b2, 1e3 / tps1, 3), num(b4, sizeof b4, p50_1, 3),
               num(b3, sizeof b3, 5e3 / tps1, 3));
        printf("  %-14s %10s tps   / 5 = %s workflow-sized units/s\n", "32 clients", num(b1, sizeof b1, tps32, 0),
               num(b2, sizeof b2, tps32 / 5, 0));
    }

    printf("\ncairn: workflow of %d no-op steps (start, %d checkpoints, finish), awaited by its client%s\n",
           STEPS_PER_WORKFLOW, STEPS_PER_WORKFLOW, of);
    printf("  %-26s %12s %9s %9s %9s\n", "", "workflows/s", "p50 ms", "p90 ms", "p99 ms");
    for (int i = 0; i < nph; i++) {
        char lab[48];
        int inflight = reps[0].ph[i].inflight;
        if (inflight)
            snprintf(lab, sizeof lab, "%d in flight (%d s)", inflight, cfg->seconds);
        else
            snprintf(lab, sizeof lab, "sequential (%d runs)", cfg->runs);
        size_t base = offsetof(rep, ph) + (size_t)i * sizeof(phase);
        printf("  %-26s %12s %9.3f %9.3f %9.3f\n", lab,
               num(b1, sizeof b1, median_at(reps, nrep, base + offsetof(phase, wps)), 0),
               median_at(reps, nrep, base + offsetof(phase, p50)), median_at(reps, nrep, base + offsetof(phase, p90)),
               median_at(reps, nrep, base + offsetof(phase, p99)));
    }

    printf("\n  %-46s", "per workflow, measured window");
    for (int i = 0; i < nph; i++) {
        int inflight = reps[0].ph[i].inflight;
        if (inflight)
            snprintf(b4, sizeof b4, "%d in flight", inflight);
        printf(" %13s", inflight ? b4 : "sequential");
    }
    printf("\n");
    for (int k = 0; k < M_COUNT; k++) {
        if ((k == M_STATEMENTS_WF || k == M_STATEMENTS_STEP || k == M_ROUND_TRIPS_WF) && !COUNTING_LIBPQ)
            continue;
        if (k == M_PGSS_WF && !m->have_pgss)
            continue;
        printf("  %-46s", metric_label[k]);
        for (int i = 0; i < nph; i++) {
            size_t off = offsetof(rep, ph) + (size_t)i * sizeof(phase) + offsetof(phase, metric) +
                         (size_t)k * sizeof(double);
            double v = median_at(reps, nrep, off);
            printf(" %13s", num(b1, sizeof b1, v, k >= M_CPU_US_WF ? 0 : 2));
        }
        printf("\n");
    }
    printf("  * the whole database over the handle's whole life, connection setup and warm-up\n"
           "    included: every committed transaction, reads too.\n");

    if (have_base) {
        printf("\nTargets (ratios of figures taken in the same run)           measured    target\n");
        for (int i = 0; i < nph; i++) {
            double v[100];
            for (int r = 0; r < nrep; r++)
                v[r] = target_ratio(&reps[r], i);
            double ratio = median(v, nrep);
            int inflight = reps[0].ph[i].inflight;
            char lab[96];
            if (inflight == 0) {
                printf("  %-56s %7.2fx   <= 1.50x  %s\n", "sequential p50 / five one-row INSERT commits (1/tps)",
                       ratio, ratio <= 1.5 ? "met" : "MISSED");
                for (int r = 0; r < nrep; r++)
                    v[r] = reps[r].ph[i].p50 / (5 * reps[r].p50_1);
                printf("  %-56s %7.2fx             (for reference)\n", "sequential p50 / five x INSERT p50",
                       median(v, nrep));
            } else {
                snprintf(lab, sizeof lab, "%d in flight: workflows/s x 5 / pgbench 32 clients", inflight);
                printf("  %-56s %7.2fx   >= 1.00x  %s\n", lab, ratio,
                       inflight == 64 ? (ratio >= 1.0 ? "met" : "MISSED") : "(for reference)");
            }
        }
        if (nrep > 1) {
            printf("  each repetition:");
            for (int r = 0; r < nrep; r++) {
                printf("%s", r ? "; " : " ");
                for (int i = 0; i < nph; i++)
                    printf("%s%.2f", i ? "/" : "", target_ratio(&reps[r], i));
            }
            printf("\n");
        }
    }
    printf("\n");
    free(ver);
    free(fsync);
    free(sc);
    free(wsm);
    free(sb);
}

int main(int argc, char **argv)
{
    config cfg;
    bench_name = "bench_core";
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    double load0 = load_average();

    monitor m;
    mon_open(&m, cfg.conninfo);
    char run_tag[32];
    snprintf(run_tag, sizeof run_tag, "%ld-%ld", (long)getpid(), (long)time(NULL));
    char executor[64];
    snprintf(executor, sizeof executor, "bench-%s", run_tag);
    char script[] = "/tmp/cairn-bench-XXXXXX.sql";
    if (cfg.pgbench)
        pgbench_script(script);

    rep *reps = calloc((size_t)cfg.repeat, sizeof *reps);
    if (!reps)
        die("out of memory");
    int nph = 1 + cfg.ninflight;
    /*
     * Each comparison is taken back to back: the 1-client baseline just
     * before the sequential phase, the 32-client one just before the
     * concurrent phases, so that a machine whose speed drifts (other
     * tenants, a noisy disk) shifts both sides of a ratio alike.
     */
    for (int r = 0; r < cfg.repeat; r++) {
        rep *rp = &reps[r];
        if (cfg.repeat > 1)
            fprintf(stderr, "bench_core: repetition %d of %d\n", r + 1, cfg.repeat);
        rp->tps1 = rp->tps32 = NAN;
        rp->p50_1 = NAN;
        if (cfg.pgbench && (rp->tps1 = pgbench_once(&cfg, &m, script, 1, &rp->p50_1)) <= 0)
            baseline_failed(script);
        rp->ph[0].inflight = 0;
        run_phase(&cfg, &m, run_tag, r, &rp->ph[0]);
        if (cfg.pgbench && (rp->tps32 = pgbench_once(&cfg, &m, script, 32, NULL)) <= 0)
            baseline_failed(script);
        for (int i = 0; i < cfg.ninflight; i++) {
            rp->ph[1 + i].inflight = cfg.inflight[i];
            run_phase(&cfg, &m, run_tag, r, &rp->ph[1 + i]);
        }
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
