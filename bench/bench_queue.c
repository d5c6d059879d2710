/*
 * bench_queue: how fast workflows go into a queue and come out of it, and
 * what a worker with nothing to do costs the database.
 *
 * Against one server in one run it measures what Postgres itself does
 * (pgbench committing one-row INSERTs from 32 clients) and what cairn's
 * queues do with the same server:
 *
 *   - enqueue: clients put workflows in a queue while no worker runs, one
 *     per transaction and many per transaction, from C (cairn_enqueue() on
 *     each client thread's own connection) and from SQL (pgbench running
 *     cairn.enqueue()).
 *   - drain: a backlog of N enqueued workflows, without steps and with
 *     three no-op steps, run by a worker with W executor threads, timed
 *     from cairn_start_workers() until the last finish has committed.
 *   - queued against direct: client threads each start a 3-step workflow
 *     and await it, in a loop, once with cairn_start() running it at once
 *     on the handle, once with cairn_start_options.queue set so that it goes
 *     through the queue and the dispatcher's claim.
 *   - idle: a worker with the library's default options serving empty
 *     queues, and what it sends the database per second, statement by
 *     statement.
 *
 * Every rate is printed with its ratio to the pgbench rate of the same
 * repetition. Where the server runs on this machine, the CPU time of the
 * server and of the clients is read from /proc, and so is the share of the
 * machine's CPU that other work took during each phase.
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

#define ENQ_WORKFLOW "cairn_bench_q_enq"     /* enqueued by the enqueue phases; nothing runs it */
#define NOOP_WORKFLOW "cairn_bench_q_noop"   /* no steps */
#define STEP3_WORKFLOW "cairn_bench_q_step3" /* three no-op steps */
#define HISTORY_WORKFLOW "cairn_bench_q_history" /* finished 3-step workflows written once, by SQL */
#define NOOP_STEP "cairn_bench_q_nop"
#define BENCH_QUEUE "cairn_bench"
#define BENCH_NAMES "'" ENQ_WORKFLOW "', '" NOOP_WORKFLOW "', '" STEP3_WORKFLOW "'"
#define MAX_LIST 4

/* ---- command line ---------------------------------------------------- */

typedef struct config {
    const char *conninfo; /* "" means libpq's defaults (PG* environment) */
    const char *pgbench;  /* NULL: skip the baseline */
    int pgbench_seconds;
    int seconds;          /* measured seconds of each timed phase */
    int warmup_seconds;
    int clients;          /* enqueue: client threads (C) and pgbench clients (SQL) */
    int batch;            /* enqueue: workflows per transaction in the batched rows */
    int drain;            /* workflows in each drain; 0: no drains */
    int drain_workers[MAX_LIST];
    int ndrain_workers;
    int inflight;         /* queued against direct: client threads and executor threads; 0: skip */
    int idle_seconds;     /* 0: no idle measurement */
    int idle_warmup;
    int with_enqueue;
    int history;          /* finished workflows in the tables before the phases */
    int stale_stats;      /* no history, and statistics taken while the tables were empty */
    int commit_connections;
    int repeat;
    int keep;
} config;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench_queue [OPTIONS] [CONNINFO]\n\n"
            "Runs a one-row INSERT pgbench baseline (32 clients), then enqueues workflows from C and\n"
            "SQL, one and many per transaction; drains a backlog of no-op and 3-step workflows with\n"
            "several numbers of executor threads; runs 3-step workflows started directly and through\n"
            "a queue; and counts what an idle worker sends the database, all on the same server,\n"
            "and prints the figures and their ratios. CONNINFO is a libpq URL or key=value string;\n"
            "without it $CAIRN_DATABASE_URL, else libpq's PG* environment.\n\n"
            "  --pgbench PATH          the pgbench program (default $PGBENCH, else pgbench on PATH)\n"
            "  --no-pgbench            skip the baseline (no ratios are printed)\n"
            "  --pgbench-seconds N     length of each pgbench run (10)\n"
            "  --seconds N             measured seconds of each timed phase (10)\n"
            "  --warmup-seconds N      warm-up seconds before each timed phase (1)\n"
            "  --clients N             enqueue: client threads and pgbench clients (32)\n"
            "  --batch N               enqueue: workflows per transaction in the batched rows (100)\n"
            "  --no-enqueue            skip the enqueue phases\n"
            "  --drain N               workflows in each drain, 0 to skip the drains (20000)\n"
            "  --drain-workers LIST    comma-separated executor threads of the drains (16,64,256)\n"
            "  --history N             finished 3-step workflows written before the phases (20000)\n"
            "  --stale-stats           a fresh database: no history, and the tables analyzed while\n"
            "                          empty, not after the drain's backlog is in\n"
            "  --inflight N            queued against direct: client and executor threads, 0 to skip (64)\n"
            "  --idle-seconds N        length of the idle measurement, 0 to skip it (20)\n"
            "  --idle-warmup N         seconds the idle worker runs before it is measured (11)\n"
            "  --commit-connections N  cairn_options.commit_connections (library default)\n"
            "  --repeat N              take every measurement N times, print medians (1)\n"
            "  --keep                  keep the benchmark's workflow rows\n");
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
    c->clients = 32;
    c->batch = 100;
    c->drain = 20000;
    c->drain_workers[0] = 16;
    c->drain_workers[1] = 64;
    c->drain_workers[2] = 256;
    c->ndrain_workers = 3;
    c->inflight = 64;
    c->idle_seconds = 20;
    c->idle_warmup = 11;
    c->history = 20000;
    c->with_enqueue = 1;
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
        } else if (strcmp(a, "--no-enqueue") == 0) {
            c->with_enqueue = 0;
        } else if (strcmp(a, "--keep") == 0) {
            c->keep = 1;
        } else if (strcmp(a, "--stale-stats") == 0) {
            c->stale_stats = 1;
            c->history = 0;
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
        } else if (strcmp(a, "--clients") == 0) {
            bad = bench_parse_int(v, 1, 512, &c->clients), i++;
        } else if (strcmp(a, "--batch") == 0) {
            bad = bench_parse_int(v, 2, 100000, &c->batch), i++;
        } else if (strcmp(a, "--drain") == 0) {
            bad = bench_parse_int(v, 0, 10000000, &c->drain), i++;
        } else if (strcmp(a, "--drain-workers") == 0) {
            bad = bench_parse_list(v, 1, 1024, c->drain_workers, MAX_LIST, &c->ndrain_workers), i++;
        } else if (strcmp(a, "--inflight") == 0) {
            bad = bench_parse_int(v, 0, 512, &c->inflight), i++;
        } else if (strcmp(a, "--idle-seconds") == 0) {
            bad = bench_parse_int(v, 0, 3600, &c->idle_seconds), i++;
        } else if (strcmp(a, "--idle-warmup") == 0) {
            bad = bench_parse_int(v, 0, 3600, &c->idle_warmup), i++;
        } else if (strcmp(a, "--history") == 0) {
            bad = bench_parse_int(v, 0, 10000000, &c->history), i++;
        } else if (strcmp(a, "--commit-connections") == 0) {
            bad = bench_parse_int(v, 1, 64, &c->commit_connections), i++;
        } else if (strcmp(a, "--repeat") == 0) {
            bad = bench_parse_int(v, 1, 100, &c->repeat), i++;
        } else if (a[0] == '-') {
            bad = 1;
        } else {
            c->conninfo = a;
        }
        if (bad) {
            fprintf(stderr, "bench_queue: bad argument '%s'%s%s\n", a, v ? " " : "", v && a[0] == '-' ? v : "");
            usage(stderr);
            return -1;
        }
    }
    if (!c->conninfo)
        c->conninfo = "";
    if (c->stale_stats)
        c->history = 0;
    return 0;
}

/* ---- counting statements, and telling them apart ------------------------ */

/*
 * The monitoring connection's own queries are left out of every count, so
 * that a window may poll the database (the drains do) without adding to
 * what it measures. While tally_on is set, every other statement is also
 * counted under its name (the prepared statement's, or the start of its
 * SQL), which is what the idle figure is broken down by.
 */
static const PGconn *mon_pg;
static atomic_llong our_statements, our_round_trips;
static atomic_int tally_on;

#define TALLY_MAX 64
#define TALLY_NAME 48
typedef struct tally_entry {
    char name[TALLY_NAME];
    long long n;
} tally_entry;
static pthread_mutex_t tally_lock = PTHREAD_MUTEX_INITIALIZER;
static tally_entry tally[TALLY_MAX];
static int ntally;

static void count_ours(const PGconn *conn, int statements, int round_trips)
{
    if (conn == mon_pg)
        return;
    atomic_fetch_add(&our_statements, statements);
    atomic_fetch_add(&our_round_trips, round_trips);
}

/* The first two words of SQL text ("LISTEN cairn_wakeup", "SET default_transaction_isolation") as a short name. */
static void sql_name(char *out, size_t len, const char *sql)
{
    size_t o = 0;
    int words = 0, space = 1;
    for (; *sql && o + 2 < len; sql++) {
        if (*sql == ' ' || *sql == '\n' || *sql == '\t') {
            space = 1;
            continue;
        }
        if (space) {
            if (++words > 2)
                break;
            if (o > 0)
                out[o++] = ' ';
        }
        space = 0;
        out[o++] = *sql;
    }
    out[o] = '\0';
}

static void count_named(const PGconn *conn, const char *how, const char *what)
{
    if (!atomic_load(&tally_on) || conn == mon_pg || !what)
        return;
    char key[TALLY_NAME];
    if (strcmp(how, "PQprepare") == 0)
        snprintf(key, sizeof key, "PQprepare"); /* a new connection preparing the library's statements */
    else if (strcmp(how, "PQexecPrepared") == 0 || strcmp(how, "PQsendQueryPrepared") == 0)
        snprintf(key, sizeof key, "%s", what);
    else
        sql_name(key, sizeof key, what);
    pthread_mutex_lock(&tally_lock);
    int i = 0;
    while (i < ntally && strcmp(tally[i].name, key) != 0)
        i++;
    if (i == ntally && ntally < TALLY_MAX) {
        snprintf(tally[i].name, sizeof tally[i].name, "%s", key);
        tally[i].n = 0;
        ntally++;
    }
    if (i < ntally)
        tally[i].n++;
    pthread_mutex_unlock(&tally_lock);
}

static void tally_start(void)
{
    pthread_mutex_lock(&tally_lock);
    ntally = 0;
    pthread_mutex_unlock(&tally_lock);
    atomic_store(&tally_on, 1);
}

static int cmp_tally(const void *a, const void *b)
{
    const tally_entry *x = a, *y = b;
    return x->n < y->n ? 1 : x->n > y->n ? -1 : strcmp(x->name, y->name);
}

/* Stops tallying; copies the tally, most frequent first, into out[0..max) and returns how many. */
static int tally_stop(tally_entry *out, int max)
{
    atomic_store(&tally_on, 0);
    pthread_mutex_lock(&tally_lock);
    int n = ntally < max ? ntally : max;
    qsort(tally, (size_t)ntally, sizeof *tally, cmp_tally);
    memcpy(out, tally, (size_t)n * sizeof *out);
    pthread_mutex_unlock(&tally_lock);
    return n;
}

static long long tally_get(const tally_entry *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0)
            return t[i].n;
    return 0;
}

/* ---- the workflows ---------------------------------------------------- */

static atomic_llong ran;

static int noop_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)ctx, (void)input, (void)udata;
    atomic_fetch_add(&ran, 1);
    *output = NULL;
    return CAIRN_OK;
}

static int nop_step(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    (void)s, (void)input, (void)udata;
    *output = NULL;
    return CAIRN_OK;
}

static int step3_workflow(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)input, (void)udata;
    *output = NULL;
    for (int i = 0; i < 3; i++) {
        int rc = cairn_step(ctx, NOOP_STEP, NULL, NULL);
        if (rc != CAIRN_OK)
            return rc;
    }
    atomic_fetch_add(&ran, 1);
    return CAIRN_OK;
}

/* ---- what a phase measures ------------------------------------------- */

enum {
    P_BASE,      /* pgbench, one-row INSERT, 32 clients */
    P_ENQ_C1,    /* cairn_enqueue(), one per transaction */
    P_ENQ_SQL1,  /* pgbench: SELECT cairn.enqueue(...) */
    P_ENQ_CB,    /* BEGIN; batch x cairn_enqueue(); COMMIT */
    P_ENQ_SQLB,  /* pgbench: SELECT count(cairn.enqueue(...)) FROM generate_series(1, batch) */
    P_DIRECT,    /* 3-step workflows started at once on the handle */
    P_QUEUED,    /* the same through a queue */
    P_QUEUED_LAZY, /* the same through a queue with CAIRN_NO_EAGER: every one claimed by the dispatcher */
    P_IDLE,      /* a worker with empty queues */
    P_DRAIN,     /* the drains: no-op with each worker count, then 3-step with each */
    P_COUNT = P_DRAIN + 2 * MAX_LIST
};

enum {
    V_RATE,      /* workflows/s (transactions/s for the baseline) */
    V_SECONDS,   /* length of the window */
    V_P50,       /* ms, queued against direct */
    V_P99,
    V_STMTS,     /* statements per workflow, every connection but the monitor's (libpq calls) */
    V_COMMITS,   /* write commits per workflow (transaction ID counter) */
    V_XACTS,     /* all transactions per workflow over the handle's life (xact_commit) */
    V_SERVER_US, /* server CPU per workflow */
    V_CLIENT_US, /* this process's CPU per workflow (pgbench's for the pgbench rows) */
    V_BUSY,      /* machine CPU busy, % of all CPUs */
    V_OTHER,     /* the part of it none of the measured processes used */
    V_WAL,       /* WAL bytes per workflow */
    /* idle, per second */
    V_I_STMTS,
    V_I_ROUND_TRIPS,
    V_I_CLAIMS,
    V_I_ARMS,
    V_I_HEARTBEATS,
    V_I_OTHER,
    V_I_XACTS,
    V_I_WRITES,
    V_I_WAL,
    V_I_PGSS,
    V_I_SERVER_MS,
    V_I_CLIENT_MS,
    V_I_OTHER_BACKENDS,
    V_COUNT
};

typedef struct phase_result {
    int done;
    double v[V_COUNT];
    char tally[512]; /* statements by name, per workflow (per second for idle) */
} phase_result;

static pid_t postmaster = -1;

/* The counters a window is measured with; see common.h for the shared ones. */
typedef struct window {
    counters c;
    long long stmts, round_trips;
    double server, busy, all, wal;
} window;

static double wal_lsn(monitor *m)
{
    return (double)mon_value(m, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint", 0, NULL, 1);
}

/* The monitor's queries come first at the start of a window and last at its end, outside it. */
static void win_begin(monitor *m, window *w)
{
    snap_server(m, &w->c);
    w->wal = wal_lsn(m);
    w->server = postmaster > 0 ? server_cpu_s(postmaster) : -1;
    w->busy = machine_cpu_s(&w->all);
    w->stmts = atomic_load(&our_statements);
    w->round_trips = atomic_load(&our_round_trips);
    snap_client(&w->c);
}

static void win_end(monitor *m, window *w)
{
    snap_client(&w->c);
    w->stmts = atomic_load(&our_statements);
    w->round_trips = atomic_load(&our_round_trips);
    w->busy = machine_cpu_s(&w->all);
    w->server = postmaster > 0 ? server_cpu_s(postmaster) : -1;
    w->wal = wal_lsn(m);
    snap_server(m, &w->c);
}

/*
 * Fills the per-workflow figures of a window in which `workflows` ran.
 * ext_cpu is the CPU of a measured process other than this one and the
 * server (pgbench), or 0.
 */
static void win_metrics(phase_result *o, const window *a, const window *b, double workflows, double ext_cpu)
{
    double secs = b->c.t - a->c.t;
    double self = b->c.cpu - a->c.cpu;
    double server = a->server >= 0 && b->server >= 0 ? b->server - a->server : NAN;
    o->v[V_SECONDS] = secs;
    o->v[V_RATE] = workflows / secs;
    o->v[V_STMTS] = COUNTING_LIBPQ ? (double)(b->stmts - a->stmts) / workflows : NAN;
    o->v[V_COMMITS] = (double)(b->c.next_xid - a->c.next_xid) / workflows;
    o->v[V_SERVER_US] = server * 1e6 / workflows;
    o->v[V_CLIENT_US] = (ext_cpu > 0 ? ext_cpu : self) * 1e6 / workflows;
    double all = b->all - a->all, busy = b->busy - a->busy;
    o->v[V_BUSY] = a->busy >= 0 && all > 0 ? 100 * busy / all : NAN;
    double other = busy - (isnan(server) ? 0 : server) - self - ext_cpu;
    o->v[V_OTHER] = a->busy >= 0 && all > 0 && !isnan(server) ? 100 * (other > 0 ? other : 0) / all : NAN;
    o->v[V_WAL] = (b->wal - a->wal) / workflows;
    o->v[V_XACTS] = NAN;
}

/* Formats the eight largest entries of a tally as "name x.xx, ..." per unit into out. */
static void tally_text(char *out, size_t len, const tally_entry *t, int n, double per, int decimals)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n && o + 1 < len; i++) {
        double v = (double)t[i].n / per;
        if (i >= 8)
            break;
        if (v < 0.5 * pow(10, -decimals))
            break; /* the tally is sorted: the rest would print as zero */
        int w = snprintf(out + o, len - o, "%s%s %.*f", i ? ", " : "", t[i].name, decimals, v);
        if (w < 0 || (size_t)w >= len - o)
            break;
        o += (size_t)w;
    }
}

/* ---- preparing the server ---------------------------------------------- */

/*
 * Deletes the benchmark's workflows (and the history too when
 * with_history), in batches that keep each transaction short; returns how
 * many.
 */
static long long delete_workflows(monitor *m, int with_history)
{
    static const char sql[] =
        "WITH w AS (SELECT id FROM cairn.workflow_status"
        "            WHERE name IN (" BENCH_NAMES ") OR ($1::bool AND name = '" HISTORY_WORKFLOW "') LIMIT 20000),"
        " s AS (DELETE FROM cairn.steps WHERE workflow_id IN (SELECT id FROM w))"
        " DELETE FROM cairn.workflow_status WHERE id IN (SELECT id FROM w)";
    const char *p[1] = {with_history ? "true" : "false"};
    long long total = 0;
    for (;;) {
        PGresult *r = mon_query(m, sql, 1, p, 0);
        if (!r) {
            fprintf(stderr, "bench_queue: warning: could not delete the benchmark's workflows: %s",
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
 * Puts the server in the same state before every phase: of the
 * benchmark's workflows only the history, dead rows vacuumed away (so that
 * the queue's index starts clean), statistics taken afresh, the wake-up
 * flag down, and a checkpoint.
 *
 * The statistics matter: the claim's plan depends on them (see
 * run_drain()), and autovacuum refreshes them at moments of its own
 * choosing, which would make phases differ by chance.
 */
static void reset(monitor *m)
{
    delete_workflows(m, 0);
    mon_exec(m, "VACUUM ANALYZE cairn.workflow_status");
    mon_exec(m, "VACUUM ANALYZE cairn.steps");
    mon_exec(m, "UPDATE cairn.wakeup SET armed = false WHERE armed");
    checkpoint(m);
}

/*
 * Writes n finished 3-step workflows, as a database that has been in use
 * holds: the planner then sees tables of some size, as it would in
 * production, rather than the empty tables of a fresh database.
 */
static void seed_history(monitor *m, int n)
{
    if (n <= 0)
        return;
    char v[16];
    snprintf(v, sizeof v, "%d", n);
    const char *p[1] = {v};
    long long got = mon_value(m,
                              "WITH w AS ("
                              "  INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts, input, output)"
                              "  SELECT gen_random_uuid()::text, '" HISTORY_WORKFLOW "', 'SUCCESS', '" BENCH_QUEUE "',"
                              "         'bench-queue-history', 1, '{\"n\":1}', 'null' FROM generate_series(1, $1::int) RETURNING id),"
                              " s AS (INSERT INTO cairn.steps (workflow_id, step, name, output)"
                              "       SELECT id, k, '" NOOP_STEP "', 'null' FROM w, generate_series(1, 3) k)"
                              "SELECT count(*) FROM w",
                              1, p, 1);
    if (got != n)
        die("wrote %lld history workflows, not %d", got, n);
}

static cairn *open_handle(const config *cfg, const char *conninfo, const char *executor, int workers,
                          unsigned flags)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.flags = flags;
    o.conninfo = conninfo;
    o.executor_id = executor;
    o.workers = workers;
    o.commit_connections = workers ? cfg->commit_connections : 0;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        die("cairn_open: %s: %s", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
    if ((rc = cairn_register_workflow(h, NOOP_WORKFLOW, noop_workflow, NULL)) != CAIRN_OK ||
        (rc = cairn_register_workflow(h, STEP3_WORKFLOW, step3_workflow, NULL)) != CAIRN_OK ||
        (rc = cairn_register_step(h, NOOP_STEP, nop_step, NULL, NULL)) != CAIRN_OK)
        die("registering: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    return h;
}

/* Other client connections to the database than the monitor's. */
static long long other_backends(monitor *m)
{
    return mon_value(m,
                     "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                     " AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                     0, NULL, 0);
}

/* ---- the baseline ------------------------------------------------------ */

/* Runs pgbench inside a window, so that its CPU, WAL and commits are measured like cairn's. */
static void pgbench_phase(const config *cfg, monitor *m, const char *script, int clients, double per_tx,
                          phase_result *o)
{
    window a, b;
    pgbench_result res;
    win_begin(m, &a);
    int rc = pgbench_measure(cfg->pgbench, cfg->conninfo, script, clients, clients < 2 ? 1 : 2, cfg->pgbench_seconds,
                             postmaster, &res);
    win_end(m, &b);
    if (rc < 0) {
        unlink(script);
        die("pgbench failed on %s; run with --no-pgbench to measure without it", script);
    }
    double xacts = res.transactions > 0 ? res.transactions : res.tps * res.seconds;
    win_metrics(o, &a, &b, xacts * per_tx, res.client_cpu_s);
    o->v[V_RATE] = res.tps * per_tx;
    o->v[V_STMTS] = NAN; /* pgbench's statements are its own, not counted here */
    o->done = 1;
}

static void baseline(const config *cfg, monitor *m, const char *script, phase_result *o)
{
    mon_exec(m, "DROP TABLE IF EXISTS cairn_bench.bench_t");
    mon_exec(m, "CREATE TABLE cairn_bench.bench_t(id bigserial PRIMARY KEY, v int)");
    checkpoint(m);
    fprintf(stderr, "bench_queue: pgbench, one-row INSERT, 32 clients, %d s...\n", cfg->pgbench_seconds);
    pgbench_phase(cfg, m, script, 32, 1, o);
}

/* ---- enqueue ------------------------------------------------------------ */

typedef struct enq_client {
    pthread_t thread;
    PGconn *pg;
    int batch; /* 1: autocommit, one per transaction */
} enq_client;

static atomic_int enq_stop;
static atomic_llong enq_done;

static void enq_exec(PGconn *pg, const char *sql)
{
    PGresult *r = PQexec(pg, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        die("%s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
}

static void *enq_main(void *arg)
{
    enq_client *c = arg;
    while (!atomic_load(&enq_stop)) {
        if (c->batch > 1)
            enq_exec(c->pg, "BEGIN");
        for (int i = 0; i < c->batch; i++) {
            int rc = cairn_enqueue(c->pg, ENQ_WORKFLOW, "{\"n\":1}", NULL, NULL);
            if (rc != CAIRN_OK)
                die("cairn_enqueue: %s: %s", cairn_strerror(rc), cairn_errmsg(NULL));
        }
        if (c->batch > 1)
            enq_exec(c->pg, "COMMIT");
        atomic_fetch_add(&enq_done, c->batch);
    }
    return NULL;
}

/* cfg->clients threads, each on its own connection, enqueue `batch` workflows per transaction. */
static void enqueue_c(const config *cfg, monitor *m, const char *tag, int batch, phase_result *o)
{
    fprintf(stderr, "bench_queue: enqueue from C, %d per transaction, %d threads, %d + %d s...\n", batch,
            cfg->clients, cfg->warmup_seconds, cfg->seconds);
    char app[64];
    snprintf(app, sizeof app, "cairn-bench-queue-enq-%s", tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);
    enq_client *cl = calloc((size_t)cfg->clients, sizeof *cl);
    if (!cl)
        die("out of memory");
    for (int i = 0; i < cfg->clients; i++) {
        cl[i].pg = PQconnectdb(conninfo);
        if (PQstatus(cl[i].pg) != CONNECTION_OK)
            die("cannot connect: %s", PQerrorMessage(cl[i].pg));
        cl[i].batch = batch;
    }
    atomic_store(&enq_stop, 0);
    atomic_store(&enq_done, 0);
    for (int i = 0; i < cfg->clients; i++)
        if (pthread_create(&cl[i].thread, NULL, enq_main, &cl[i]) != 0)
            die("cannot create client thread %d", i);
    sleep_s(cfg->warmup_seconds);
    window a, b;
    win_begin(m, &a);
    long long d0 = atomic_load(&enq_done);
    sleep_s(cfg->seconds);
    long long d1 = atomic_load(&enq_done);
    win_end(m, &b);
    atomic_store(&enq_stop, 1);
    for (int i = 0; i < cfg->clients; i++) {
        pthread_join(cl[i].thread, NULL);
        PQfinish(cl[i].pg);
    }
    win_metrics(o, &a, &b, (double)(d1 - d0), 0);
    o->done = 1;
    free(cl);
    free(conninfo);
}

static void enqueue_sql(const config *cfg, monitor *m, int batch, phase_result *o)
{
    char script[] = "/tmp/cairn-bench-XXXXXX.sql";
    char sql[256];
    if (batch > 1)
        snprintf(sql, sizeof sql,
                 "SELECT count(cairn.enqueue('" ENQ_WORKFLOW "', '{\"n\":1}')) FROM generate_series(1, %d);\n",
                 batch);
    else
        snprintf(sql, sizeof sql, "SELECT cairn.enqueue('" ENQ_WORKFLOW "', '{\"n\":1}');\n");
    write_script(script, sql);
    fprintf(stderr, "bench_queue: enqueue from SQL, %d per transaction, pgbench %d clients, %d s...\n", batch,
            cfg->clients, cfg->pgbench_seconds);
    pgbench_phase(cfg, m, script, cfg->clients, batch, o);
    unlink(script);
}

/* ---- drain -------------------------------------------------------------- */

/* Workflows of the drain that have not finished yet, by the database. */
static long long unfinished(monitor *m, const char *name)
{
    const char *p[1] = {name};
    return mon_value(m,
                     "SELECT count(*) FROM cairn.workflow_status"
                     " WHERE name = $1 AND status IN ('ENQUEUED', 'PENDING')",
                     1, p, 1);
}

/*
 * Enqueues cfg->drain workflows of `name` in one transaction, after the
 * handle has opened (so that opening is not timed), then starts the
 * workers and waits: first, without touching the database, until every
 * workflow function has run, then by asking the database until every
 * finish has committed.
 *
 * The claim's plan depends on what the planner's statistics say about the
 * queue and the payload and step tables. By default the drain analyzes
 * them once the backlog is in, as autovacuum would on its next visit; with
 * --stale-stats the statistics are those reset() took of empty tables,
 * which is what a burst into a fresh database meets until then.
 */
static void run_drain(const config *cfg, monitor *m, const char *tag, int rep, const char *name, int workers,
                      phase_result *o)
{
    fprintf(stderr, "bench_queue: draining %d enqueued %s workflows with %d executor threads...\n", cfg->drain,
            strcmp(name, NOOP_WORKFLOW) == 0 ? "no-op" : "3-step", workers);
    reset(m);
    char app[96], executor[64];
    snprintf(app, sizeof app, "cairn-bench-queue-%s-%d-%s-%d", tag, rep,
             strcmp(name, NOOP_WORKFLOW) == 0 ? "noop" : "step3", workers);
    snprintf(executor, sizeof executor, "bench-queue-%s", tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);
    long long xc0 = xact_commit(m);
    long long q0 = m->queries - (m->version >= 150000 ? 1 : 0);
    cairn *h = open_handle(cfg, conninfo, executor, workers, 0);

    char n[16];
    snprintf(n, sizeof n, "%d", cfg->drain);
    const char *vals[2] = {name, n};
    long long got = mon_value(m,
                              "SELECT count(cairn.enqueue($1, '{\"n\":1}'::json, queue => '" BENCH_QUEUE "'))"
                              " FROM generate_series(1, $2::int)",
                              2, vals, 1);
    if (got != cfg->drain)
        die("enqueued %lld workflows, not %d", got, cfg->drain);
    if (!cfg->stale_stats) {
        mon_exec(m, "ANALYZE cairn.workflow_status");
    }
    checkpoint(m);

    atomic_store(&ran, 0);
    window a, b;
    win_begin(m, &a);
    tally_start();
    int rc = cairn_start_workers(h);
    if (rc != CAIRN_OK)
        die("cairn_start_workers: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    double deadline = now_s() + 600;
    while (atomic_load(&ran) < cfg->drain) {
        if (now_s() > deadline)
            die("the drain did not finish in 600 s (%lld of %d ran)", (long long)atomic_load(&ran), cfg->drain);
        sleep_s(0.001);
    }
    while (unfinished(m, name) > 0) {
        if (now_s() > deadline)
            die("the drain did not finish in 600 s");
        sleep_s(0.002);
    }
    tally_entry t[TALLY_MAX];
    int nt = tally_stop(t, TALLY_MAX);
    win_end(m, &b);
    cairn_close(h);
    settle(m, app);
    long long q1 = m->queries + (m->version >= 150000 ? 1 : 0);
    long long xc1 = xact_commit(m);
    win_metrics(o, &a, &b, cfg->drain, 0);
    o->v[V_XACTS] = (double)(xc1 - xc0 - (q1 - q0)) / cfg->drain;
    tally_text(o->tally, sizeof o->tally, t, nt, cfg->drain, 3);
    o->done = 1;
    free(conninfo);
}

/* ---- 3-step workflows, started directly and through a queue ------------ */

typedef struct client {
    pthread_t thread;
    cairn *h;
    int queued;
    double *begin, *lat;
    size_t n, cap;
} client;

static atomic_int run_stop;
static atomic_llong run_done;

static double one_workflow(cairn *h, int queued)
{
    cairn_start_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.queue = BENCH_QUEUE;
    return bench_start_await(h, STEP3_WORKFLOW, queued ? &so : NULL);
}

static void *client_main(void *arg)
{
    client *c = arg;
    while (!atomic_load(&run_stop)) {
        double t0 = now_s();
        double l = one_workflow(c->h, c->queued);
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

static void run_compare(const config *cfg, monitor *m, const char *tag, int rep, int queued, phase_result *o)
{
    static const char *const what[3] = {"started directly", "through a queue", "through a queue, CAIRN_NO_EAGER"};
    fprintf(stderr, "bench_queue: 3-step workflows %s, %d in flight, %d + %d s...\n", what[queued], cfg->inflight,
            cfg->warmup_seconds, cfg->seconds);
    reset(m);
    char app[96], executor[64];
    snprintf(app, sizeof app, "cairn-bench-queue-%s-%d-%s", tag, rep,
             queued == 2 ? "lazy" : queued ? "queued" : "direct");
    snprintf(executor, sizeof executor, "bench-queue-%s", tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);
    long long xc0 = xact_commit(m);
    long long q0 = m->queries - (m->version >= 150000 ? 1 : 0);
    cairn *h = open_handle(cfg, conninfo, executor, cfg->inflight, queued == 2 ? CAIRN_NO_EAGER : 0);
    int rc = cairn_start_workers(h);
    if (rc != CAIRN_OK)
        die("cairn_start_workers: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    client *cl = calloc((size_t)cfg->inflight, sizeof *cl);
    if (!cl)
        die("out of memory");
    atomic_store(&run_stop, 0);
    atomic_store(&run_done, 0);
    for (int i = 0; i < cfg->inflight; i++) {
        cl[i].h = h;
        cl[i].queued = queued;
        if (pthread_create(&cl[i].thread, NULL, client_main, &cl[i]) != 0)
            die("cannot create client thread %d", i);
    }
    sleep_s(cfg->warmup_seconds);
    window a, b;
    win_begin(m, &a);
    tally_start();
    long long d0 = atomic_load(&run_done);
    sleep_s(cfg->seconds);
    long long d1 = atomic_load(&run_done);
    tally_entry t[TALLY_MAX];
    int nt = tally_stop(t, TALLY_MAX);
    win_end(m, &b);
    atomic_store(&run_stop, 1);
    for (int i = 0; i < cfg->inflight; i++)
        pthread_join(cl[i].thread, NULL);
    long long all = atomic_load(&run_done);
    cairn_close(h);
    settle(m, app);
    long long q1 = m->queries + (m->version >= 150000 ? 1 : 0);
    long long xc1 = xact_commit(m);
    double workflows = (double)(d1 - d0);
    win_metrics(o, &a, &b, workflows, 0);
    o->v[V_XACTS] = (double)(xc1 - xc0 - (q1 - q0)) / (double)all;
    tally_text(o->tally, sizeof o->tally, t, nt, workflows, 2);

    size_t total = 0;
    for (int i = 0; i < cfg->inflight; i++)
        total += cl[i].n;
    double *lat = malloc((total ? total : 1) * sizeof *lat);
    if (!lat)
        die("out of memory");
    size_t n = 0;
    for (int i = 0; i < cfg->inflight; i++) {
        for (size_t k = 0; k < cl[i].n; k++)
            if (cl[i].begin[k] >= a.c.t && cl[i].begin[k] + cl[i].lat[k] <= b.c.t)
                lat[n++] = cl[i].lat[k];
        free(cl[i].begin);
        free(cl[i].lat);
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    o->v[V_P50] = percentile(lat, n, 50) * 1e3;
    o->v[V_P99] = percentile(lat, n, 99) * 1e3;
    o->done = 1;
    free(lat);
    free(cl);
    free(conninfo);
}

/* ---- idle --------------------------------------------------------------- */

/*
 * Calls of top-level statements on cairn's objects in this database, from
 * pg_stat_statements (PostgreSQL 14 and later, when it is loaded), or -1.
 * Statements that PL/pgSQL functions run inside a call are left out, so
 * that the figure compares with the statements the worker sends.
 */
static long long pgss_toplevel(monitor *m)
{
    if (!m->have_pgss || m->version < 140000)
        return -1;
    return mon_value(m,
                     "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                     " WHERE toplevel AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                     "   AND query LIKE '%cairn.%' AND query NOT LIKE '%pg_stat_statements%'",
                     0, NULL, 0);
}

/*
 * A worker with the library's default options serving empty queues. It
 * runs idle_warmup seconds before the window opens: a backend that has
 * just published its statistics defers the next publication for up to
 * 10 s, so the start-up's transactions would otherwise land in the
 * window's xact_commit. The monitor sends nothing during the window.
 */
static void run_idle(const config *cfg, monitor *m, const char *tag, int rep, phase_result *o)
{
    fprintf(stderr, "bench_queue: idle worker (default options), %d + %d s...\n", cfg->idle_warmup,
            cfg->idle_seconds);
    reset(m);
    long long others = other_backends(m);
    char app[96], executor[64];
    snprintf(app, sizeof app, "cairn-bench-queue-%s-%d-idle", tag, rep);
    snprintf(executor, sizeof executor, "bench-queue-%s", tag);
    char *conninfo = conninfo_with_app(cfg->conninfo, app);
    cairn *h = open_handle(cfg, conninfo, executor, 0, 0);
    int rc = cairn_start_workers(h);
    if (rc != CAIRN_OK)
        die("cairn_start_workers: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    sleep_s(cfg->idle_warmup);

    long long xc0 = xact_commit(m);
    long long q0 = m->queries - (m->version >= 150000 ? 1 : 0);
    long long pgss0 = pgss_toplevel(m);
    window a, b;
    win_begin(m, &a);
    tally_start();
    sleep_s(cfg->idle_seconds);
    tally_entry t[TALLY_MAX];
    int nt = tally_stop(t, TALLY_MAX);
    win_end(m, &b);
    long long pgss1 = pgss_toplevel(m);
    long long q1 = m->queries + (m->version >= 150000 ? 1 : 0);
    long long xc1 = xact_commit(m);
    cairn_close(h);
    settle(m, app);

    double secs = b.c.t - a.c.t;
    for (int k = 0; k < V_COUNT; k++)
        o->v[k] = NAN;
    o->v[V_SECONDS] = secs;
    long long stmts = b.stmts - a.stmts;
    long long claims = tally_get(t, nt, "cairn_claim_queued");
    long long arms = tally_get(t, nt, "cairn_arm");
    long long beats = tally_get(t, nt, "cairn_heartbeat");
    if (COUNTING_LIBPQ) {
        o->v[V_I_STMTS] = (double)stmts / secs;
        o->v[V_I_ROUND_TRIPS] = (double)(b.round_trips - a.round_trips) / secs;
        o->v[V_I_CLAIMS] = (double)claims / secs;
        o->v[V_I_ARMS] = (double)arms / secs;
        o->v[V_I_HEARTBEATS] = (double)beats / secs;
        o->v[V_I_OTHER] = (double)(stmts - claims - arms - beats) / secs;
    }
    o->v[V_I_XACTS] = (double)(xc1 - xc0 - (q1 - q0)) / secs;
    o->v[V_I_WRITES] = (double)(b.c.next_xid - a.c.next_xid) / secs;
    o->v[V_I_WAL] = (b.wal - a.wal) / secs;
    o->v[V_I_PGSS] = pgss0 >= 0 && pgss1 >= 0 ? (double)(pgss1 - pgss0) / secs : NAN;
    o->v[V_I_SERVER_MS] = a.server >= 0 && b.server >= 0 ? (b.server - a.server) * 1e3 / secs : NAN;
    o->v[V_I_CLIENT_MS] = (b.c.cpu - a.c.cpu) * 1e3 / secs;
    o->v[V_I_OTHER_BACKENDS] = (double)others;
    tally_text(o->tally, sizeof o->tally, t, nt, secs, 2);
    o->done = 1;
    free(conninfo);
}

/* Deletes the workflows and the executor row this run created, and the benchmark's schema. */
static void cleanup(monitor *m, const char *tag)
{
    delete_workflows(m, 1);
    char executor[64];
    snprintf(executor, sizeof executor, "bench-queue-%s", tag);
    const char *p[1] = {executor};
    PQclear(mon_query(m, "DELETE FROM cairn.executors WHERE id = $1 AND state <> 'LIVE'", 1, p, 0));
    mon_exec(m, "DROP SCHEMA IF EXISTS cairn_bench CASCADE");
}

/* ---- report ---------------------------------------------------------- */

static const phase_result *R(const phase_result *res, int r, int p)
{
    return &res[r * P_COUNT + p];
}

static double med(const phase_result *res, int nrep, int p, int v)
{
    double x[100];
    int k = 0;
    for (int r = 0; r < nrep; r++)
        if (R(res, r, p)->done)
            x[k++] = R(res, r, p)->v[v];
    return k ? median(x, k) : NAN;
}

/* The median over the repetitions of phase p's rate divided by phase q's. */
static double ratio(const phase_result *res, int nrep, int p, int q)
{
    double x[100];
    int k = 0;
    for (int r = 0; r < nrep; r++)
        if (R(res, r, p)->done && R(res, r, q)->done)
            x[k++] = R(res, r, p)->v[V_RATE] / R(res, r, q)->v[V_RATE];
    return k ? median(x, k) : NAN;
}

static void each_ratio(const phase_result *res, int nrep, int p, int q)
{
    if (nrep < 2)
        return;
    printf("    each repetition:");
    for (int r = 0; r < nrep; r++)
        if (R(res, r, p)->done && R(res, r, q)->done)
            printf(" %.2f", R(res, r, p)->v[V_RATE] / R(res, r, q)->v[V_RATE]);
    printf("\n");
}

/* Prints a figure right-aligned in `width`, "-" when it is not known. */
static void cell(double v, int width, int decimals)
{
    char b[32];
    printf(" %*s", width, isnan(v) ? "-" : num(b, sizeof b, v, decimals));
}

static int drain_phase(const config *cfg, int kind, int i)
{
    return P_DRAIN + kind * cfg->ndrain_workers + i;
}

static void report(const config *cfg, monitor *m, const phase_result *res, int nrep, double load0)
{
    char t[64], b1[32], b2[32];
    time_t now = time(NULL);
    strftime(t, sizeof t, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    char *ver = mon_text(m, "SELECT current_setting('server_version')");
    char *fsync = mon_text(m, "SELECT current_setting('fsync')");
    char *sc = mon_text(m, "SELECT current_setting('synchronous_commit')");
    char *wsm = mon_text(m, "SELECT current_setting('wal_sync_method')");
    char *sb = mon_text(m, "SELECT current_setting('shared_buffers')");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *of = nrep > 1 ? " (medians)" : "";
    int have_base = R(res, 0, P_BASE)->done;
    const int last = nrep - 1;

    printf("\ncairn queue benchmark, %s", t);
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
    if (cfg->stale_stats)
        printf("tables:  STALE STATISTICS: no history, every table analyzed while empty (a fresh database)\n");
    else
        printf("tables:  %s finished 3-step workflows of history; every table analyzed before each phase\n",
               num(b1, sizeof b1, cfg->history, 0));
    printf("Columns: server / client us/wf: CPU time per workflow of the server (/proc) and of the client\n"
           "(this process, or pgbench for the SQL rows); busy: the machine's CPUs over the phase; other: the\n"
           "CPU that none of these used (other work on the machine); stmts/wf: statements the library and\n"
           "the C clients sent (libpq calls); commits/wf: write transactions (transaction ID counter).\n");

    if (have_base) {
        printf("\nPostgres alone: pgbench, one-row INSERT, -M prepared, 32 clients, %d s%s\n", cfg->pgbench_seconds,
               of);
        printf("  %-44s %9s %7s %7s %5s %5s\n", "", "tps", "server", "pgbench", "busy", "other");
        printf("  %-44s %9s %7s %7s %5s %5s\n", "", "", "us/tx", "us/tx", "%", "%");
        printf("  %-44s", "32 clients");
        cell(med(res, nrep, P_BASE, V_RATE), 9, 0);
        cell(med(res, nrep, P_BASE, V_SERVER_US), 7, 0);
        cell(med(res, nrep, P_BASE, V_CLIENT_US), 7, 0);
        cell(med(res, nrep, P_BASE, V_BUSY), 5, 0);
        cell(med(res, nrep, P_BASE, V_OTHER), 5, 0);
        printf("\n");
    }

    if (R(res, 0, P_ENQ_C1)->done) {
        printf("\nEnqueue into an empty queue, no worker running (the wake-up flag stays down), %d clients%s\n",
               cfg->clients, of);
        printf("  %-44s %9s %6s %6s %7s %7s %7s %5s %5s %6s\n", "", "wf/s", "/ pg32", "stmts", "commits", "server",
               "client", "busy", "other", "WAL");
        printf("  %-44s %9s %6s %6s %7s %7s %7s %5s %5s %6s\n", "", "", "", "/wf", "/wf", "us/wf", "us/wf", "%", "%",
               "B/wf");
        static const int rows[4] = {P_ENQ_C1, P_ENQ_SQL1, P_ENQ_CB, P_ENQ_SQLB};
        for (int i = 0; i < 4; i++) {
            int p = rows[i];
            char lab[64];
            switch (p) {
            case P_ENQ_C1: snprintf(lab, sizeof lab, "C, 1 per transaction (cairn_enqueue)"); break;
            case P_ENQ_SQL1: snprintf(lab, sizeof lab, "SQL, 1 per transaction (SELECT cairn.enqueue)"); break;
            case P_ENQ_CB: snprintf(lab, sizeof lab, "C, %d per transaction (BEGIN; ...; COMMIT)", cfg->batch); break;
            default: snprintf(lab, sizeof lab, "SQL, %d per statement (generate_series)", cfg->batch); break;
            }
            printf("  %-44s", lab);
            cell(med(res, nrep, p, V_RATE), 9, 0);
            cell(ratio(res, nrep, p, P_BASE), 6, 2);
            cell(med(res, nrep, p, V_STMTS), 6, 2);
            cell(med(res, nrep, p, V_COMMITS), 7, 2);
            cell(med(res, nrep, p, V_SERVER_US), 7, 0);
            cell(med(res, nrep, p, V_CLIENT_US), 7, 0);
            cell(med(res, nrep, p, V_BUSY), 5, 0);
            cell(med(res, nrep, p, V_OTHER), 5, 0);
            cell(med(res, nrep, p, V_WAL), 6, 0);
            printf("\n");
        }
    }

    if (cfg->drain > 0) {
        printf("\nDrain of %s workflows enqueued by SQL in one transaction, timed from cairn_start_workers()\n"
               "until the last finish committed; the dispatcher claims up to 256 at a time, as many as it\n"
               "has idle executor threads. %s%s\n",
               num(b1, sizeof b1, cfg->drain, 0),
               cfg->stale_stats ? "STALE STATISTICS: the tables were analyzed empty, before the enqueue"
                                : "The tables were analyzed after the enqueue",
               of);
        printf("  %-30s %9s %6s %7s %6s %7s %6s %7s %7s %5s %5s\n", "", "wf/s", "/ pg32", "seconds", "stmts",
               "commits", "xacts", "server", "client", "busy", "other");
        printf("  %-30s %9s %6s %7s %6s %7s %6s %7s %7s %5s %5s\n", "", "", "", "", "/wf", "/wf", "/wf *", "us/wf",
               "us/wf", "%", "%");
        for (int kind = 0; kind < 2; kind++) {
            for (int i = 0; i < cfg->ndrain_workers; i++) {
                int p = drain_phase(cfg, kind, i);
                char lab[64];
                snprintf(lab, sizeof lab, "%s, %d executor threads", kind ? "3-step" : "no-op", cfg->drain_workers[i]);
                printf("  %-30s", lab);
                cell(med(res, nrep, p, V_RATE), 9, 0);
                cell(ratio(res, nrep, p, P_BASE), 6, 2);
                cell(med(res, nrep, p, V_SECONDS), 7, 2);
                cell(med(res, nrep, p, V_STMTS), 6, 3);
                cell(med(res, nrep, p, V_COMMITS), 7, 3);
                cell(med(res, nrep, p, V_XACTS), 6, 2);
                cell(med(res, nrep, p, V_SERVER_US), 7, 0);
                cell(med(res, nrep, p, V_CLIENT_US), 7, 0);
                cell(med(res, nrep, p, V_BUSY), 5, 0);
                cell(med(res, nrep, p, V_OTHER), 5, 0);
                printf("\n");
            }
        }
        printf("  * every committed transaction of the database over the handle's whole life (xact_commit),\n"
               "    connection setup included.\n");
        if (COUNTING_LIBPQ) {
            printf("  Statements per workflow by name (last repetition):\n");
            for (int kind = 0; kind < 2; kind++)
                for (int i = 0; i < cfg->ndrain_workers; i++)
                    printf("    %s, %d: %s\n", kind ? "3-step" : "no-op", cfg->drain_workers[i],
                           R(res, last, drain_phase(cfg, kind, i))->tally);
        }
    }

    if (cfg->inflight > 0) {
        printf("\n3-step no-op workflows, %d client threads each starting one and awaiting it in a loop,\n"
               "on a handle with %d executor threads; %d s warm-up, %d s measured%s\n",
               cfg->inflight, cfg->inflight, cfg->warmup_seconds, cfg->seconds, of);
        printf("  %-44s %9s %7s %7s %6s %7s %6s %7s %7s %5s %5s\n", "", "wf/s", "p50 ms", "p99 ms", "stmts",
               "commits", "xacts", "server", "client", "busy", "other");
        printf("  %-44s %9s %7s %7s %6s %7s %6s %7s %7s %5s %5s\n", "", "", "", "", "/wf", "/wf", "/wf *", "us/wf",
               "us/wf", "%", "%");
        for (int p = P_DIRECT; p <= P_QUEUED_LAZY; p++) {
            printf("  %-44s", p == P_DIRECT   ? "started directly (cairn_start)"
                              : p == P_QUEUED ? "through a queue (opts.queue)"
                                              : "through a queue, CAIRN_NO_EAGER");
            cell(med(res, nrep, p, V_RATE), 9, 0);
            cell(med(res, nrep, p, V_P50), 7, 2);
            cell(med(res, nrep, p, V_P99), 7, 2);
            cell(med(res, nrep, p, V_STMTS), 6, 2);
            cell(med(res, nrep, p, V_COMMITS), 7, 2);
            cell(med(res, nrep, p, V_XACTS), 6, 2);
            cell(med(res, nrep, p, V_SERVER_US), 7, 0);
            cell(med(res, nrep, p, V_CLIENT_US), 7, 0);
            cell(med(res, nrep, p, V_BUSY), 5, 0);
            cell(med(res, nrep, p, V_OTHER), 5, 0);
            printf("\n");
        }
        if (COUNTING_LIBPQ) {
            printf("  Statements per workflow by name (last repetition):\n");
            printf("    direct: %s\n", R(res, last, P_DIRECT)->tally);
            printf("    queued: %s\n", R(res, last, P_QUEUED)->tally);
            printf("    queued, CAIRN_NO_EAGER: %s\n", R(res, last, P_QUEUED_LAZY)->tally);
        }
    }

    double idle_bound = NAN;
    if (cfg->idle_seconds > 0) {
        /*
         * The dispatcher's loop with empty queues (src/dispatch.c): each
         * wake-up by a timer, the poll timer or the heartbeat timer, claims
         * once; it arms the wake-up flag only when it was woken otherwise
         * (nothing cleared the flag, since clearing it notifies); and every
         * lease / 5 it heartbeats, looks for due cron ticks and for passed
         * deadlines first. Timer wake-ups come at most 1/poll + 1/heartbeat
         * times a second, since the jitter only lengthens the poll.
         */
        const double poll_s = 1.0, hb_s = 15.0 / 5;
        idle_bound = 1 / poll_s + 4 / hb_s;
        double expect = (3.0 + 3) / hb_s; /* polls 1.0-1.1 s apart fit twice between heartbeats 3 s apart */
        printf("\nIdle worker: default options (16 executor threads, poll_interval_ms 1000, lease_ms 15000:\n"
               "heartbeat every 3 s), empty queues, nothing else running; %d s warm-up, %d s measured%s\n",
               cfg->idle_warmup, cfg->idle_seconds, of);
        printf("  %-58s %8s\n", "", "per s");
        printf("  %-58s", "statements the worker sent (libpq calls)");
        cell(med(res, nrep, P_IDLE, V_I_STMTS), 8, 2);
        printf("\n  %-58s", "  claims (cairn.claim)");
        cell(med(res, nrep, P_IDLE, V_I_CLAIMS), 8, 2);
        printf("\n  %-58s", "  wake-up arming (UPDATE cairn.wakeup)");
        cell(med(res, nrep, P_IDLE, V_I_ARMS), 8, 2);
        printf("\n  %-58s", "  heartbeats (cairn.heartbeat)");
        cell(med(res, nrep, P_IDLE, V_I_HEARTBEATS), 8, 2);
        printf("\n  %-58s", "  other");
        cell(med(res, nrep, P_IDLE, V_I_OTHER), 8, 2);
        printf("\n  %-58s", "round trips (libpq calls)");
        cell(med(res, nrep, P_IDLE, V_I_ROUND_TRIPS), 8, 2);
        printf("\n  %-58s", "transactions of the database (pg_stat_database.xact_commit)");
        cell(med(res, nrep, P_IDLE, V_I_XACTS), 8, 2);
        printf("\n  %-58s", "write transactions (transaction ID counter)");
        cell(med(res, nrep, P_IDLE, V_I_WRITES), 8, 2);
        printf("\n  %-58s", "WAL bytes (pg_current_wal_insert_lsn)");
        cell(med(res, nrep, P_IDLE, V_I_WAL), 8, 0);
        printf("\n  %-58s", "top-level statements (pg_stat_statements, when loaded)");
        cell(med(res, nrep, P_IDLE, V_I_PGSS), 8, 2);
        printf("\n  %-58s", "server CPU, ms (every server process, background too)");
        cell(med(res, nrep, P_IDLE, V_I_SERVER_MS), 8, 2);
        printf("\n  %-58s", "worker CPU, ms (this process)");
        cell(med(res, nrep, P_IDLE, V_I_CLIENT_MS), 8, 2);
        printf("\n  statements by name (last repetition, per s): %s\n", R(res, last, P_IDLE)->tally);
        printf("  expected from the dispatcher's loop: one claim per timer wake-up (the flag stays armed:\n"
               "  only a NOTIFY clears it), wake-ups at the poll interval and at each heartbeat, so 3 claims\n"
               "  and 1 heartbeat, 1 cron look and 1 deadline look per 3 s = %.2f/s; bound: 1/poll +\n"
               "  4/heartbeat interval = %.2f/s (docs/architecture.md, \"Idle cost\").\n",
               expect, idle_bound);
        if (med(res, nrep, P_IDLE, V_I_OTHER_BACKENDS) > 0)
            printf("  WARNING: %.0f other connections were open on the database; xact_commit counts theirs too.\n",
                   med(res, nrep, P_IDLE, V_I_OTHER_BACKENDS));
        printf("  The libpq count is exact and only the worker's. The server's counters cover the whole\n"
               "  database, autovacuum included, and xact_commit is published by each backend with up to\n"
               "  about 1 s of delay, so it may be off by a few transactions at each end of the window.\n");
    }

    printf("\nTargets (ratios of figures taken in the same run)              measured    target\n");
    if (have_base && cfg->drain > 0) {
        for (int kind = 0; kind < 2; kind++) {
            for (int i = 0; i < cfg->ndrain_workers; i++) {
                int p = drain_phase(cfg, kind, i);
                int judged = kind == 0 && i == cfg->ndrain_workers - 1;
                char lab[96];
                snprintf(lab, sizeof lab, "drain %s, %d threads: workflows/s / pgbench 32 clients",
                         kind ? "3-step" : "no-op", cfg->drain_workers[i]);
                double q = ratio(res, nrep, p, P_BASE);
                if (judged)
                    printf("  %-60s %7.2fx   >= 1.00x  %s\n", lab, q, q >= 1.0 ? "met" : "MISSED");
                else
                    printf("  %-60s %7.2fx             (for reference)\n", lab, q);
                if (judged)
                    each_ratio(res, nrep, p, P_BASE);
            }
        }
    }
    if (cfg->inflight > 0) {
        double q = ratio(res, nrep, P_QUEUED, P_DIRECT);
        char lab[96];
        snprintf(lab, sizeof lab, "3-step, %d in flight: through a queue / started directly", cfg->inflight);
        printf("  %-60s %7.2fx   >= 1.00x  %s\n", lab, q, q >= 1.0 ? "met" : "MISSED");
        each_ratio(res, nrep, P_QUEUED, P_DIRECT);
        snprintf(lab, sizeof lab, "  the same with CAIRN_NO_EAGER (reference)");
        printf("  %-60s %7.2fx\n", lab, ratio(res, nrep, P_QUEUED_LAZY, P_DIRECT));
        each_ratio(res, nrep, P_QUEUED_LAZY, P_DIRECT);
        if (cfg->drain > 0) {
            for (int i = 0; i < cfg->ndrain_workers; i++) {
                snprintf(lab, sizeof lab, "drain 3-step, %d threads / started directly", cfg->drain_workers[i]);
                printf("  %-60s %7.2fx             (for reference)\n", lab,
                       ratio(res, nrep, drain_phase(cfg, 1, i), P_DIRECT));
            }
        }
    }
    if (have_base && R(res, 0, P_ENQ_C1)->done) {
        static const int rows[4] = {P_ENQ_C1, P_ENQ_SQL1, P_ENQ_CB, P_ENQ_SQLB};
        static const char *const labs[4] = {"enqueue C, 1 per transaction / pgbench 32 clients",
                                            "enqueue SQL, 1 per transaction / pgbench 32 clients",
                                            "enqueue C, batched / pgbench 32 clients",
                                            "enqueue SQL, batched / pgbench 32 clients"};
        for (int i = 0; i < 4; i++)
            printf("  %-60s %7.2fx             (for reference)\n", labs[i], ratio(res, nrep, rows[i], P_BASE));
    }
    if (cfg->idle_seconds > 0 && COUNTING_LIBPQ) {
        double s = med(res, nrep, P_IDLE, V_I_STMTS);
        printf("  %-60s %6.2f/s  <= %.2f/s  %s\n", "idle worker: statements per second (default options)", s,
               idle_bound, s <= idle_bound ? "met" : "MISSED");
    }
    printf("\nFor comparison (measured earlier on this machine, not in this run): graphile-worker drained\n"
           "2,600 trivial jobs/s with its defaults and 19,800/s with its batching options; pg-boss 6,460/s\n"
           "batched (32 per fetch); a DBOS queue of 3-step workflows 62/s (1 s polling) to 238/s (50 ms\n"
           "polling); pgbench's 32-client one-row INSERT 20,800/s.\n\n");
    free(ver);
    free(fsync);
    free(sc);
    free(wsm);
    free(sb);
}

int main(int argc, char **argv)
{
    bench_name = "bench_queue";
    config cfg;
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    double load0 = load_average();

    monitor m;
    mon_open(&m, cfg.conninfo);
    mon_pg = m.pg;
    count_hook = count_ours;
    count_stmt_hook = count_named;
    postmaster = local_postmaster(&m);
    /* Opening a handle applies cairn's migrations if they are missing. */
    cairn *h = open_handle(&cfg, cfg.conninfo, NULL, 1, 0);
    cairn_close(h);
    mon_exec(&m, "CREATE SCHEMA IF NOT EXISTS cairn_bench");
    char tag[32];
    snprintf(tag, sizeof tag, "%ld-%ld", (long)getpid(), (long)time(NULL));
    char script[] = "/tmp/cairn-bench-XXXXXX.sql";
    if (cfg.pgbench)
        write_script(script, "insert into cairn_bench.bench_t(v) values (1);\n");
    delete_workflows(&m, 1);
    seed_history(&m, cfg.history);

    phase_result *res = calloc((size_t)cfg.repeat * P_COUNT, sizeof *res);
    if (!res)
        die("out of memory");
    for (int r = 0; r < cfg.repeat; r++) {
        phase_result *rp = &res[r * P_COUNT];
        if (cfg.repeat > 1)
            fprintf(stderr, "bench_queue: repetition %d of %d\n", r + 1, cfg.repeat);
        if (cfg.pgbench)
            baseline(&cfg, &m, script, &rp[P_BASE]);
        if (cfg.with_enqueue) {
            reset(&m);
            enqueue_c(&cfg, &m, tag, 1, &rp[P_ENQ_C1]);
            reset(&m);
            enqueue_sql(&cfg, &m, 1, &rp[P_ENQ_SQL1]);
            reset(&m);
            enqueue_c(&cfg, &m, tag, cfg.batch, &rp[P_ENQ_CB]);
            reset(&m);
            enqueue_sql(&cfg, &m, cfg.batch, &rp[P_ENQ_SQLB]);
        }
        if (cfg.drain > 0)
            for (int kind = 0; kind < 2; kind++)
                for (int i = 0; i < cfg.ndrain_workers; i++)
                    run_drain(&cfg, &m, tag, r, kind ? STEP3_WORKFLOW : NOOP_WORKFLOW, cfg.drain_workers[i],
                              &rp[drain_phase(&cfg, kind, i)]);
        if (cfg.inflight > 0) {
            /* Each phase leaves rows behind that the next one works among: the order
             * turns with each repetition, so that no phase always runs last. */
            static const int phase_of[3] = {P_DIRECT, P_QUEUED, P_QUEUED_LAZY};
            for (int k = 0; k < 3; k++) {
                int which = (k + r) % 3;
                run_compare(&cfg, &m, tag, r, which, &rp[phase_of[which]]);
            }
        }
        if (cfg.idle_seconds > 0)
            run_idle(&cfg, &m, tag, r, &rp[P_IDLE]);
    }
    if (cfg.pgbench)
        unlink(script);

    report(&cfg, &m, res, cfg.repeat, load0);
    if (!cfg.keep)
        cleanup(&m, tag);
    free(res);
    PQfinish(m.pg);
    return 0;
}
