/*
 * bench_enqueue: what cairn.enqueue costs an application transaction.
 *
 * pgbench runs the same application transaction from 32 clients in four
 * ways, one after another on the same server, and the program prints
 * their rates side by side with their ratios:
 *
 *   A      BEGIN; INSERT INTO cairn_bench.app(v) VALUES (1); COMMIT;
 *   B (i)  A plus SELECT cairn.enqueue('bench_noop', '{"n":1}') inside the
 *          transaction, with no dispatcher listening: the wake-up flag
 *          (cairn.wakeup.armed) stays down and no enqueue sends a NOTIFY.
 *   B (ii) the same while a cairn worker process (this program started
 *          with --serve) waits idle with the flag armed, as a deployed
 *          worker would. The first enqueue wakes it; it then claims and
 *          runs the no-op workflows while pgbench goes on, on the same
 *          CPUs. After pgbench stops, the worker's backlog is timed until
 *          it is drained.
 *   N      A plus SELECT pg_notify('x', ''): the naive design, a NOTIFY in
 *          every transaction, whose commit-time lock the debounce avoids.
 *
 * For each it reports tps, pgbench's average latency, the ratio to A of the
 * same repetition, and, when the server runs on this machine, the CPU time
 * the server, pgbench and the worker spent per transaction (from /proc) and
 * how busy the machine was, so that a result can be told apart from load
 * that other processes put on the machine. The monitoring connection
 * LISTENs on cairn_wakeup during the B runs to count the wake-ups sent.
 *
 * --variant LABEL=SQL adds rows for other transactions, run right after
 * B (i) under the same conditions; bench/enqueue_variants.sql holds other
 * ways of writing cairn.enqueue to compare that way (bench/run.sh
 * enqueue-variants runs them).
 *
 * It prints figures; it is not a test and has no pass/fail time limit.
 * Its exit status is non-zero only when something failed to run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cairn.h>

#include "common.h"

extern char **environ;

#define NOOP_WORKFLOW "bench_noop"
#define MAX_VARIANTS 8

/* ---- command line ---------------------------------------------------- */

typedef struct config {
    const char *conninfo; /* "" means libpq's defaults (PG* environment) */
    const char *pgbench;
    int clients;
    int threads;
    int seconds;
    int workers;          /* executor threads of the worker in B (ii); 0: the library's default */
    int drain_timeout;    /* seconds to wait for the worker's backlog after B (ii) */
    int with_worker;      /* run B (ii) */
    int with_notify;      /* run N */
    int repeat;
    int keep;
    int serve;            /* --serve: be the worker */
    const char *variant[MAX_VARIANTS]; /* --variant LABEL=SQL */
    int nvariants;
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_enqueue [OPTIONS] [CONNINFO]\n"
            "       bench_enqueue --serve [--workers N] [CONNINFO]\n\n"
            "Runs an application transaction (BEGIN; INSERT one row; COMMIT) with pgbench, then the same\n"
            "with cairn.enqueue() inside it, with no dispatcher and with an idle worker waiting, then with\n"
            "pg_notify() instead, and prints the rates and their ratios. CONNINFO is a libpq URL or\n"
            "key=value string; without it $CAIRN_DATABASE_URL, else libpq's PG* environment.\n\n"
            "  --pgbench PATH          the pgbench program (default $PGBENCH, else pgbench on PATH)\n"
            "  --clients N             pgbench clients (32)\n"
            "  --threads N             pgbench threads (2)\n"
            "  --seconds N             length of each pgbench run (10)\n"
            "  --workers N             executor threads of the worker in B (ii) (library default, 16)\n"
            "  --drain-timeout N       seconds to wait for the worker's backlog after B (ii) (300)\n"
            "  --no-worker             skip B (ii)\n"
            "  --no-notify             skip the pg_notify run\n"
            "  --variant LABEL=SQL     also run BEGIN; SQL; COMMIT; as a row named LABEL, after B (i)\n"
            "                          (up to 8), e.g. other ways of enqueueing; SQL may hold several\n"
            "                          statements separated by semicolons\n"
            "  --repeat N              take every measurement N times, print medians (1)\n"
            "  --keep                  keep the benchmark's table and workflow rows\n"
            "  --serve                 only be the worker: run '" NOOP_WORKFLOW "' workflows until SIGTERM\n");
}

static int parse_args(int argc, char **argv, config *c)
{
    memset(c, 0, sizeof *c);
    c->pgbench = getenv("PGBENCH");
    if (!c->pgbench || !*c->pgbench)
        c->pgbench = "pgbench";
    c->clients = 32;
    c->threads = 2;
    c->seconds = 10;
    c->drain_timeout = 300;
    c->with_worker = 1;
    c->with_notify = 1;
    c->repeat = 1;
    c->conninfo = getenv("CAIRN_DATABASE_URL");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--no-worker") == 0) {
            c->with_worker = 0;
        } else if (strcmp(a, "--no-notify") == 0) {
            c->with_notify = 0;
        } else if (strcmp(a, "--keep") == 0) {
            c->keep = 1;
        } else if (strcmp(a, "--serve") == 0) {
            c->serve = 1;
        } else if (a[0] == '-' && a[1] == '-' && !v) {
            bad = 1;
        } else if (strcmp(a, "--pgbench") == 0) {
            c->pgbench = v, i++;
        } else if (strcmp(a, "--clients") == 0) {
            bad = bench_parse_int(v, 1, 1000, &c->clients), i++;
        } else if (strcmp(a, "--threads") == 0) {
            bad = bench_parse_int(v, 1, 1000, &c->threads), i++;
        } else if (strcmp(a, "--seconds") == 0) {
            bad = bench_parse_int(v, 1, 3600, &c->seconds), i++;
        } else if (strcmp(a, "--workers") == 0) {
            bad = bench_parse_int(v, 1, 4096, &c->workers), i++;
        } else if (strcmp(a, "--drain-timeout") == 0) {
            bad = bench_parse_int(v, 0, 86400, &c->drain_timeout), i++;
        } else if (strcmp(a, "--repeat") == 0) {
            bad = bench_parse_int(v, 1, 100, &c->repeat), i++;
        } else if (strcmp(a, "--variant") == 0) {
            bad = c->nvariants == MAX_VARIANTS || !strchr(v, '=') || strchr(v, '=') == v;
            if (!bad)
                c->variant[c->nvariants++] = v;
            i++;
        } else if (a[0] == '-') {
            bad = 1;
        } else {
            c->conninfo = a;
        }
        if (bad) {
            fprintf(stderr, "bench_enqueue: bad argument '%s'%s%s\n", a, v ? " " : "", v && a[0] == '-' ? v : "");
            usage(stderr);
            return -1;
        }
    }
    if (c->threads > c->clients)
        c->threads = c->clients;
    if (!c->conninfo)
        c->conninfo = "";
    return 0;
}

/* ---- the worker (--serve) --------------------------------------------- */

static int noop_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)ctx, (void)input, (void)udata;
    *output = NULL;
    return CAIRN_OK;
}

/*
 * Serves the no-op workflow on a handle with the library's defaults (or
 * --workers executor threads) until SIGTERM or SIGINT, or until the
 * process that started it is gone.
 */
static int serve(const config *cfg)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread exists, so that all inherit it */
    pid_t parent = getppid();

    char executor[64];
    snprintf(executor, sizeof executor, "bench-enqueue-worker-%ld", (long)getpid());
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = cfg->conninfo;
    o.executor_id = executor;
    o.workers = cfg->workers;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        die("cairn_open: %s: %s", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
    if ((rc = cairn_register_workflow(h, NOOP_WORKFLOW, noop_workflow, NULL)) != CAIRN_OK ||
        (rc = cairn_start_workers(h)) != CAIRN_OK)
        die("starting the worker: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    struct timespec second = {1, 0};
    for (;;) {
        int sig = sigtimedwait(&set, NULL, &second);
        if (sig == SIGTERM || sig == SIGINT || getppid() != parent)
            break;
    }
    cairn_close(h);
    return 0;
}

/* Starts this program again as the worker; returns its pid. */
static pid_t start_worker(const config *cfg, const char *self, const char *conninfo)
{
    char workers[16];
    snprintf(workers, sizeof workers, "%d", cfg->workers);
    char *argv[8];
    int k = 0;
    argv[k++] = (char *)self;
    argv[k++] = "--serve";
    if (cfg->workers) {
        argv[k++] = "--workers";
        argv[k++] = workers;
    }
    argv[k++] = (char *)conninfo;
    argv[k] = NULL;
    pid_t pid;
    int err = posix_spawn(&pid, self, NULL, NULL, argv, environ);
    if (err != 0)
        die("cannot start the worker (%s --serve): %s", self, strerror(err));
    return pid;
}

static void stop_worker(pid_t pid)
{
    kill(pid, SIGTERM);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "bench_enqueue: warning: the worker exited abnormally (status %d)\n", status);
}

/* ---- the runs ---------------------------------------------------------- */

enum { RUN_A, RUN_B_IDLE, RUN_B_WORKER, RUN_N, RUN_COUNT };
#define MAX_KINDS (RUN_COUNT + MAX_VARIANTS) /* the four runs, then the variants */

static const char *run_label[MAX_KINDS] = {
    [RUN_A] = "A   INSERT",
    [RUN_B_IDLE] = "B   + cairn.enqueue, no dispatcher (i)",
    [RUN_B_WORKER] = "B   + cairn.enqueue, idle worker (ii)",
    [RUN_N] = "N   + pg_notify('x', '') (iii)",
};

/* The order the runs are taken and printed in: the variants right after B (i). */
static int order[MAX_KINDS];
static int norder;

static const char *run_sql[MAX_KINDS] = {
    [RUN_A] = "BEGIN;\nINSERT INTO cairn_bench.app(v) VALUES (1);\nCOMMIT;\n",
    [RUN_B_IDLE] = "BEGIN;\nINSERT INTO cairn_bench.app(v) VALUES (1);\n"
                   "SELECT cairn.enqueue('" NOOP_WORKFLOW "', '{\"n\":1}');\nCOMMIT;\n",
    [RUN_B_WORKER] = NULL, /* the same script as RUN_B_IDLE */
    [RUN_N] = "BEGIN;\nINSERT INTO cairn_bench.app(v) VALUES (1);\nSELECT pg_notify('x', '');\nCOMMIT;\n",
};

typedef struct run {
    int done;                /* measured in this repetition */
    pgbench_result pg;
    double worker_cpu_s;     /* B (ii): the worker process over the pgbench run; -1 unknown */
    double self_cpu_s;       /* this process over the pgbench run */
    long long wakeups;       /* NOTIFYs on cairn_wakeup seen during the run; -1 not counted */
    long long enqueued;      /* B: workflows the run enqueued */
    long long ran;           /* B (ii): workflows the worker finished by the end of the pgbench run */
    double drain_s;          /* B (ii): time after pgbench ended until the backlog was gone; NAN: timed out */
    long long backlog;       /* B (ii): workflows left when pgbench ended */
    int armed_after;         /* the wake-up flag after the run: 1 armed, 0 not, -1 unknown */
    double wal_bytes;        /* WAL written over the run (pg_current_wal_insert_lsn) */
    double wal_fpi;          /* full-page images written (pg_stat_wal; NAN before PostgreSQL 14) */
} run;

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

static long long count_noop(monitor *m, const char *statuses)
{
    const char *p[1] = {statuses};
    return mon_value(m,
                     "SELECT count(*) FROM cairn.workflow_status"
                     " WHERE name = '" NOOP_WORKFLOW "' AND status = ANY($1::text[])",
                     1, p, 1);
}

/* Deletes every bench_noop workflow, in batches that keep each transaction short; returns how many. */
static long long delete_noop(monitor *m)
{
    static const char sql[] =
        "WITH w AS (SELECT id FROM cairn.workflow_status WHERE name = '" NOOP_WORKFLOW "' LIMIT 20000),"
        " s AS (DELETE FROM cairn.steps WHERE workflow_id IN (SELECT id FROM w))"
        " DELETE FROM cairn.workflow_status WHERE id IN (SELECT id FROM w)";
    long long total = 0;
    for (;;) {
        PGresult *r = mon_query(m, sql, 0, NULL, 0);
        if (!r) {
            fprintf(stderr, "bench_enqueue: warning: could not delete the benchmark's workflows: %s",
                    PQerrorMessage(m->pg));
            break;
        }
        long n = strtol(PQcmdTuples(r), NULL, 10);
        PQclear(r);
        if (n == 0)
            break;
        total += n;
    }
    return total;
}

/*
 * Puts the server in the same state before every run: no bench_noop
 * workflows (and their dead rows vacuumed away, so that the queue's index
 * starts clean), a fresh application table, the wake-up flag down, and a
 * checkpoint.
 */
static void reset(monitor *m)
{
    if (delete_noop(m) > 0) {
        mon_exec(m, "VACUUM cairn.workflow_status");
    }
    mon_exec(m, "DROP TABLE IF EXISTS cairn_bench.app");
    mon_exec(m, "CREATE TABLE cairn_bench.app(id bigserial PRIMARY KEY, v int)");
    mon_exec(m, "UPDATE cairn.wakeup SET armed = false WHERE armed");
    checkpoint(m);
}

static int armed(monitor *m)
{
    long long v = mon_value(m, "SELECT armed::int FROM cairn.wakeup", 0, NULL, 0);
    return v < 0 ? -1 : (int)v;
}

/* Counts the notifications that reached the monitoring connection and drops them. */
static long long drain_notifies(monitor *m)
{
    long long n = 0;
    PQconsumeInput(m->pg);
    PGnotify *note;
    while ((note = PQnotifies(m->pg)) != NULL) {
        n++;
        PQfreemem(note);
    }
    return n;
}

static pid_t postmaster = -1;

static void measure(const config *cfg, monitor *m, int kind, const char *script, const char *self, const char *tag,
                    run *out)
{
    memset(out, 0, sizeof *out);
    out->wakeups = -1;
    out->worker_cpu_s = -1;
    out->drain_s = NAN;
    reset(m);
    int is_b = kind != RUN_A && kind != RUN_N; /* B and the variants enqueue */
    if (is_b) {
        mon_exec(m, "LISTEN cairn_wakeup");
        drain_notifies(m);
    }
    pid_t worker = -1;
    char *wconn = NULL;
    if (kind == RUN_B_WORKER) {
        char app[64];
        snprintf(app, sizeof app, "cairn-bench-worker-%s", tag);
        wconn = conninfo_with_app(cfg->conninfo, app);
        worker = start_worker(cfg, self, wconn);
        /* Wait until the worker's dispatcher has gone idle and armed the wake-up. */
        double deadline = now_s() + 30;
        while (armed(m) != 1) {
            if (now_s() > deadline) {
                stop_worker(worker);
                die("the worker did not arm the wake-up within 30 s");
            }
            sleep_s(0.02);
        }
        drain_notifies(m);
    }
    fprintf(stderr, "bench_enqueue: pgbench, %s, %d clients, %d s...\n", run_label[kind], cfg->clients,
            cfg->seconds);
    static const char lsn_sql[] = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint";
    static const char fpi_sql[] = "SELECT wal_fpi FROM pg_stat_wal";
    double lsn0 = (double)mon_value(m, lsn_sql, 0, NULL, 1);
    double fpi0 = m->version >= 140000 ? (double)mon_value(m, fpi_sql, 0, NULL, 0) : NAN;
    double w0 = worker > 0 ? proc_cpu_s(worker, 0) : -1;
    double s0 = self_cpu_s();
    int rc = pgbench_measure(cfg->pgbench, cfg->conninfo, script, cfg->clients, cfg->threads, cfg->seconds,
                             postmaster, &out->pg);
    double s1 = self_cpu_s();
    double w1 = worker > 0 ? proc_cpu_s(worker, 0) : -1;
    out->wal_bytes = (double)mon_value(m, lsn_sql, 0, NULL, 1) - lsn0;
    if (m->version >= 140000) {
        settle(m, "pgbench"); /* backends publish their WAL statistics as they exit */
        out->wal_fpi = (double)mon_value(m, fpi_sql, 0, NULL, 0) - fpi0;
    } else {
        out->wal_fpi = NAN;
    }
    out->self_cpu_s = s1 - s0;
    if (rc < 0) {
        if (worker > 0)
            stop_worker(worker);
        die("pgbench failed on the %s script", run_label[kind]);
    }
    if (kind == RUN_B_WORKER) {
        out->worker_cpu_s = w0 >= 0 && w1 >= 0 ? w1 - w0 : -1;
        out->ran = count_noop(m, "{SUCCESS}");
        out->backlog = count_noop(m, "{ENQUEUED,PENDING}");
        fprintf(stderr, "bench_enqueue: the worker has %lld workflows left; waiting for it to drain them...\n",
                out->backlog);
        double t0 = now_s();
        long long left = out->backlog;
        while (left > 0 && now_s() - t0 < cfg->drain_timeout) {
            sleep_s(0.1);
            left = count_noop(m, "{ENQUEUED,PENDING}");
        }
        out->drain_s = left == 0 ? now_s() - t0 : NAN;
        stop_worker(worker);
        free(wconn);
    }
    if (is_b) {
        out->enqueued = count_noop(m, "{ENQUEUED,PENDING,SUCCESS,ERROR,CANCELLED,DEAD_LETTER}");
        out->armed_after = armed(m);
        out->wakeups = drain_notifies(m);
        mon_exec(m, "UNLISTEN *");
    }
    out->done = 1;
}

/* ---- report ---------------------------------------------------------- */

/* Per-transaction CPU in us of `cpu_s` seconds over run r, or NAN. */
static double per_tx_us(const run *r, double cpu_s)
{
    return cpu_s >= 0 && r->pg.transactions > 0 ? cpu_s * 1e6 / r->pg.transactions : NAN;
}

static double busy_pct(const run *r)
{
    return r->pg.machine_s > 0 ? 100 * r->pg.machine_busy_s / r->pg.machine_s : NAN;
}

/* The share of the machine's CPU that none of the measured processes used, in percent. */
static double other_pct(const run *r)
{
    if (r->pg.machine_s <= 0 || r->pg.server_cpu_s < 0)
        return NAN;
    double ours = r->pg.server_cpu_s + r->pg.client_cpu_s + r->self_cpu_s + (r->worker_cpu_s > 0 ? r->worker_cpu_s : 0);
    double other = r->pg.machine_busy_s - ours;
    return 100 * (other > 0 ? other : 0) / r->pg.machine_s;
}

static double med(const run *runs, int nrep, int kind, double (*f)(const run *))
{
    double v[100];
    int k = 0;
    for (int r = 0; r < nrep; r++)
        if (runs[r * MAX_KINDS + kind].done)
            v[k++] = f(&runs[r * MAX_KINDS + kind]);
    return k ? median(v, k) : NAN;
}

static double f_tps(const run *r) { return r->pg.tps; }
static double f_lat(const run *r) { return r->pg.latency_ms; }
static double f_server(const run *r) { return per_tx_us(r, r->pg.server_cpu_s); }
static double f_client(const run *r) { return per_tx_us(r, r->pg.client_cpu_s); }
static double f_worker(const run *r) { return per_tx_us(r, r->worker_cpu_s); }
static double f_busy(const run *r) { return busy_pct(r); }
static double f_wal(const run *r) { return r->pg.transactions > 0 ? r->wal_bytes / r->pg.transactions : NAN; }
static double f_fpi(const run *r) { return r->pg.transactions > 0 ? r->wal_fpi / r->pg.transactions : NAN; }
static double f_other(const run *r) { return other_pct(r); }
static double f_wakeups(const run *r) { return (double)r->wakeups; }
static double f_enqueued(const run *r) { return (double)r->enqueued; }
static double f_ran(const run *r) { return (double)r->ran; }
static double f_ran_rate(const run *r) { return r->pg.seconds > 0 ? (double)r->ran / r->pg.seconds : NAN; }
static double f_backlog(const run *r) { return (double)r->backlog; }
static double f_drain(const run *r) { return r->drain_s; }
static double f_drain_rate(const run *r) { return r->drain_s > 0 ? (double)r->backlog / r->drain_s : NAN; }

/* The median over the repetitions of run `kind`'s tps divided by A's. */
static double ratio(const run *runs, int nrep, int kind)
{
    double v[100];
    int k = 0;
    for (int r = 0; r < nrep; r++)
        if (runs[r * MAX_KINDS + kind].done && runs[r * MAX_KINDS + RUN_A].done)
            v[k++] = runs[r * MAX_KINDS + kind].pg.tps / runs[r * MAX_KINDS + RUN_A].pg.tps;
    return k ? median(v, k) : NAN;
}

static void report(const config *cfg, monitor *m, const run *runs, int nrep, double load0)
{
    char t[64], b[8][32];
    time_t now = time(NULL);
    strftime(t, sizeof t, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    char *ver = mon_text(m, "SELECT current_setting('server_version')");
    char *fsync = mon_text(m, "SELECT current_setting('fsync')");
    char *sc = mon_text(m, "SELECT current_setting('synchronous_commit')");
    char *wsm = mon_text(m, "SELECT current_setting('wal_sync_method')");
    char *sb = mon_text(m, "SELECT current_setting('shared_buffers')");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    printf("\ncairn enqueue benchmark, %s", t);
    if (nrep > 1)
        printf(", %d repetitions (medians)", nrep);
    printf("\nserver:  PostgreSQL %s, fsync=%s, synchronous_commit=%s, wal_sync_method=%s, shared_buffers=%s%s\n", ver,
           fsync, sc, wsm, sb, postmaster > 0 ? ", on this machine" : "");
    printf("client:  %ld CPUs online, load average %s before the run, cairn %s; worker: %s executor threads\n", cpus,
           load0 < 0 ? "n/a" : num(b[0], sizeof b[0], load0, 2), cairn_version(),
           cfg->workers ? num(b[1], sizeof b[1], cfg->workers, 0) : "16 (default)");
    if (strcmp(fsync, "on") != 0 || strcmp(sc, "off") == 0)
        printf("WARNING: the server does not flush commits to disk; this is not a durable comparison.\n");
    if (load0 > 0.5 * (double)cpus)
        printf("WARNING: other processes kept the machine busy before the run; the figures are noisy.\n");

    printf("\nApplication transaction, pgbench -n -M prepared -c %d -j %d -T %d\n", cfg->clients, cfg->threads,
           cfg->seconds);
    printf("  %-40s %9s %7s %5s %7s %7s %7s %5s %5s %6s %5s\n", "", "tps", "lat ms", "/ A", "server", "pgbench",
           "worker", "busy", "other", "WAL", "FPI");
    printf("  %-40s %9s %7s %5s %7s %7s %7s %5s %5s %6s %5s\n", "", "", "", "", "us/tx", "us/tx", "us/tx", "%", "%",
           "B/tx", "/tx");
    for (int o = 0; o < norder; o++) {
        int k = order[o];
        if (isnan(med(runs, nrep, k, f_tps)))
            continue;
        double wk = med(runs, nrep, k, f_worker);
        printf("  %-40s %9s %7.2f %5.2f %7s %7s %7s %5s %5s %6s %5s\n", run_label[k],
               num(b[0], sizeof b[0], med(runs, nrep, k, f_tps), 0), med(runs, nrep, k, f_lat), ratio(runs, nrep, k),
               num(b[1], sizeof b[1], med(runs, nrep, k, f_server), 0),
               num(b[2], sizeof b[2], med(runs, nrep, k, f_client), 0),
               k == RUN_B_WORKER ? num(b[3], sizeof b[3], wk, 0) : "-",
               num(b[4], sizeof b[4], med(runs, nrep, k, f_busy), 0),
               num(b[5], sizeof b[5], med(runs, nrep, k, f_other), 0),
               num(b[6], sizeof b[6], med(runs, nrep, k, f_wal), 0),
               num(b[7], sizeof b[7], med(runs, nrep, k, f_fpi), 2));
    }
    printf("  server, pgbench, worker: CPU time per transaction (/proc); busy: the machine's CPUs over the run;\n"
           "  other: CPU that none of these processes used (other work on the machine); WAL: bytes of WAL\n"
           "  and full-page images (pg_stat_wal) per transaction.\n");

    printf("\n  wake-ups (NOTIFY on cairn_wakeup) during B (i): %s; the flag was %s afterwards\n",
           num(b[0], sizeof b[0], med(runs, nrep, RUN_B_IDLE, f_wakeups), 0),
           runs[RUN_B_IDLE].armed_after == 1 ? "armed" : runs[RUN_B_IDLE].armed_after == 0 ? "down" : "unknown");
    if (!isnan(med(runs, nrep, RUN_B_WORKER, f_tps))) {
        printf("  B (ii): %s enqueued, wake-ups sent: %s; the worker finished %s during the run (%s/s),\n"
               "          left a backlog of %s and drained it in %s s after pgbench stopped (%s/s)\n",
               num(b[0], sizeof b[0], med(runs, nrep, RUN_B_WORKER, f_enqueued), 0),
               num(b[1], sizeof b[1], med(runs, nrep, RUN_B_WORKER, f_wakeups), 0),
               num(b[2], sizeof b[2], med(runs, nrep, RUN_B_WORKER, f_ran), 0),
               num(b[3], sizeof b[3], med(runs, nrep, RUN_B_WORKER, f_ran_rate), 0),
               num(b[4], sizeof b[4], med(runs, nrep, RUN_B_WORKER, f_backlog), 0),
               num(b[5], sizeof b[5], med(runs, nrep, RUN_B_WORKER, f_drain), 1),
               num(b[6], sizeof b[6], med(runs, nrep, RUN_B_WORKER, f_drain_rate), 0));
    }

    printf("\nTargets (ratios of figures taken in the same run)           measured    target\n");
    for (int k = RUN_B_IDLE; k <= RUN_B_WORKER; k++) {
        double q = ratio(runs, nrep, k);
        if (isnan(q))
            continue;
        char lab[96];
        snprintf(lab, sizeof lab, "B %s / A", k == RUN_B_IDLE ? "(i) no dispatcher" : "(ii) idle worker");
        printf("  %-56s %7.2fx   >= 0.70x  %s\n", lab, q, q >= 0.7 ? "met" : "MISSED");
    }
    if (!isnan(ratio(runs, nrep, RUN_N)))
        printf("  %-56s %7.2fx             (for reference)\n", "N pg_notify / A", ratio(runs, nrep, RUN_N));
    if (nrep > 1) {
        printf("  each repetition (the rows above A, in order, over A):");
        for (int r = 0; r < nrep; r++) {
            printf("%s", r ? ";" : "");
            for (int o = 1; o < norder; o++) {
                const run *x = &runs[r * MAX_KINDS + order[o]], *a = &runs[r * MAX_KINDS + RUN_A];
                if (x->done)
                    printf("%s%.2f", o == 1 ? " " : "/", x->pg.tps / a->pg.tps);
            }
        }
        printf("\n");
    }
    printf("\nFor comparison (measured earlier on this kind of machine, not in this run): one-row INSERT\n"
           "+ pg_notify at 32 clients 3,270 tps against 20,830 without (0.16x); graphile-worker's INSERT\n"
           "+ add_job 1,430/s against 9,290/s without (0.15x), because of its per-row NOTIFY.\n\n");
    free(ver);
    free(fsync);
    free(sc);
    free(wsm);
    free(sb);
}

/* The path of this program, for starting it again as the worker. */
static const char *self_path(const char *argv0)
{
    static char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n > 0) {
        buf[n] = '\0';
        return buf;
    }
    return argv0;
}

int main(int argc, char **argv)
{
    bench_name = "bench_enqueue";
    config cfg;
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    if (cfg.serve)
        return serve(&cfg);
    setvbuf(stdout, NULL, _IOLBF, 0);
    double load0 = load_average();
    const char *self = self_path(argv[0]);

    monitor m;
    mon_open(&m, cfg.conninfo);
    postmaster = local_postmaster(&m);
    /* Opening a handle applies cairn's migrations if they are missing. */
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = cfg.conninfo;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        die("cairn_open: %s: %s", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
    cairn_close(h);
    /* An idle dispatcher's last statement is its LISTEN, its arming of the wake-up, or its claim. */
    if (mon_value(&m,
                  "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                  " AND pid <> pg_backend_pid() AND (query LIKE 'LISTEN cairn_wakeup%'"
                  "      OR query LIKE '%UPDATE cairn.wakeup SET armed = true%'"
                  "      OR query LIKE '%status = ''ENQUEUED''%SKIP LOCKED%')",
                  0, NULL, 0) > 0)
        fprintf(stderr, "bench_enqueue: warning: a cairn dispatcher seems to be connected to this database;"
                        " B (i) assumes none is\n");
    mon_exec(&m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");

    /* Variant LABEL=SQL: the transaction BEGIN; SQL; COMMIT;. */
    static char labels[MAX_VARIANTS][48];
    static char *variant_sql[MAX_VARIANTS];
    order[norder++] = RUN_A;
    order[norder++] = RUN_B_IDLE;
    for (int i = 0; i < cfg.nvariants; i++) {
        const char *eq = strchr(cfg.variant[i], '=');
        snprintf(labels[i], sizeof labels[i], "V   %.*s", (int)(eq - cfg.variant[i]), cfg.variant[i]);
        size_t len = strlen(eq + 1) + 128;
        variant_sql[i] = malloc(len);
        if (!variant_sql[i])
            die("out of memory");
        snprintf(variant_sql[i], len, "BEGIN;\n%s;\nCOMMIT;\n", eq + 1);
        run_label[RUN_COUNT + i] = labels[i];
        run_sql[RUN_COUNT + i] = variant_sql[i];
        order[norder++] = RUN_COUNT + i;
    }
    if (cfg.with_worker)
        order[norder++] = RUN_B_WORKER;
    if (cfg.with_notify)
        order[norder++] = RUN_N;

    char scripts[MAX_KINDS][40];
    for (int k = 0; k < MAX_KINDS; k++) {
        if (!run_sql[k])
            continue;
        snprintf(scripts[k], sizeof scripts[k], "/tmp/cairn-bench-XXXXXX.sql");
        write_script(scripts[k], run_sql[k]);
    }
    snprintf(scripts[RUN_B_WORKER], sizeof scripts[RUN_B_WORKER], "%s", scripts[RUN_B_IDLE]);
    char tag[32];
    snprintf(tag, sizeof tag, "%ld-%ld", (long)getpid(), (long)time(NULL));

    run *runs = calloc((size_t)cfg.repeat * MAX_KINDS, sizeof *runs);
    if (!runs)
        die("out of memory");
    for (int r = 0; r < cfg.repeat; r++) {
        if (cfg.repeat > 1)
            fprintf(stderr, "bench_enqueue: repetition %d of %d\n", r + 1, cfg.repeat);
        for (int i = 0; i < norder; i++)
            measure(&cfg, &m, order[i], scripts[order[i]], self, tag, &runs[r * MAX_KINDS + order[i]]);
    }
    for (int k = 0; k < MAX_KINDS; k++)
        if (run_sql[k] && k != RUN_B_WORKER)
            unlink(scripts[k]);
    for (int i = 0; i < cfg.nvariants; i++)
        free(variant_sql[i]);

    report(&cfg, &m, runs, cfg.repeat, load0);
    if (!cfg.keep) {
        delete_noop(&m);
        mon_exec(&m, "DROP SCHEMA IF EXISTS cairn_bench CASCADE");
    }
    free(runs);
    PQfinish(m.pg);
    return 0;
}
