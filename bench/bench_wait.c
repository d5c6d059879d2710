/*
 * bench_wait: many workflows waiting at once on one worker.
 *
 * It enqueues N workflows (default 100,000) that each sleep until a time of
 * their own, spread evenly over one minute that starts --lead-s seconds
 * after the enqueue, and runs them on one handle with 16 executor threads
 * and the library's default pools. Every workflow starts, reaches its
 * sleep, suspends (its thread goes back to the pool) and is resumed by
 * replay when its time comes. The program prints:
 *
 *   - how long the enqueue and the start-and-suspend of all N took;
 *   - the process's threads, its resident memory (now and peak) and the
 *     database connections it holds, sampled every second while everything
 *     waits and while everything wakes;
 *   - the lateness of the wake-ups: each workflow's finish (its status
 *     row's updated_at) minus the time it asked to sleep until, both on the
 *     database clock, at p50, p90, p99 and the maximum.
 *
 * The targets (issue 5): threads and connections within the configured
 * pools, resident memory under 256 MB, p99 lateness at most 1 s. Each
 * target depends only on this process and the server, so there is no
 * pgbench baseline; the load average is printed for context.
 *
 * It prints figures; it is not a test. Its exit status is non-zero only
 * when something failed to run.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include <cairn.h>

#include "common.h"

#define NAP_WORKFLOW "cairn_bench_nap"

typedef struct config {
    const char *conninfo;
    int workflows;
    int spread_s;
    int lead_s; /* 0: chosen from N */
    int workers;
    int commit_connections;
    int keep;
} config;

static void usage(void)
{
    fprintf(stderr, "usage: bench_wait [--workflows N] [--spread-s S] [--lead-s L] [--workers W] [--commit-connections C] [--keep]\n"
                    "                  [--pgbench PATH (ignored)] [CONNINFO]\n");
}

static int parse_args(int argc, char **argv, config *c)
{
    memset(c, 0, sizeof *c);
    c->conninfo = "";
    c->workflows = 100000;
    c->spread_s = 60;
    c->workers = 16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--workflows") == 0 && v)
            c->workflows = atoi(v), i++;
        else if (strcmp(a, "--spread-s") == 0 && v)
            c->spread_s = atoi(v), i++;
        else if (strcmp(a, "--lead-s") == 0 && v)
            c->lead_s = atoi(v), i++;
        else if (strcmp(a, "--workers") == 0 && v)
            c->workers = atoi(v), i++;
        else if (strcmp(a, "--commit-connections") == 0 && v)
            c->commit_connections = atoi(v), i++;
        else if (strcmp(a, "--pgbench") == 0 && v)
            i++;
        else if (strcmp(a, "--keep") == 0)
            c->keep = 1;
        else if (a[0] == '-') {
            usage();
            return -1;
        } else
            c->conninfo = a;
    }
    if (c->workflows <= 0 || c->spread_s <= 0 || c->workers <= 0 || c->lead_s < 0) {
        usage();
        return -1;
    }
    if (c->lead_s == 0)
        c->lead_s = 20 + c->workflows / 1500; /* time to start and suspend them all, with room */
    return 0;
}

/* ---- the workflow ------------------------------------------------------- */

static int nap(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)output, (void)udata;
    const char *p = strstr(input, "\"until\"");
    if (!p)
        return cairn_fail(ctx, "input without until: %s", input);
    long long until = atoll(strchr(p, ':') + 1);
    return cairn_sleep_until(ctx, until); /* CAIRN_ESUSPENDED is passed on */
}

/* ---- the database ------------------------------------------------------- */

static PGconn *mon;

static PGresult *q(const char *sql, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(mon, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        die("%s: %s", sql, PQerrorMessage(mon));
    return r;
}

static long long q_ll(const char *sql, int n, const char *const *vals)
{
    PGresult *r = q(sql, n, vals);
    long long v = PQntuples(r) && !PQgetisnull(r, 0, 0) ? atoll(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

static void delete_naps(void)
{
    PQclear(q("DELETE FROM cairn.steps WHERE workflow_id LIKE 'nap-%'", 0, NULL));
    PQclear(q("DELETE FROM cairn.workflow_status WHERE id LIKE 'nap-%'", 0, NULL));
}

/* ---- what the handle sends while the workflows wake ------------------------ */

#define TALLY_MAX 32
static pthread_mutex_t tally_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int tally_on;
static struct {
    char name[48];
    long long n;
} tally[TALLY_MAX];
static int ntally;

/* Counts the library's statements by prepared-statement name (others by their first words). */
static void count_named(const PGconn *conn, const char *how, const char *what)
{
    if (!atomic_load(&tally_on) || conn == mon || !what)
        return;
    char key[48];
    if (strcmp(how, "PQexecPrepared") == 0 || strcmp(how, "PQsendQueryPrepared") == 0)
        snprintf(key, sizeof key, "%s", what);
    else
        snprintf(key, sizeof key, "%.40s", what);
    pthread_mutex_lock(&tally_lock);
    int i = 0;
    while (i < ntally && strcmp(tally[i].name, key) != 0)
        i++;
    if (i == ntally && ntally < TALLY_MAX) {
        snprintf(tally[i].name, sizeof tally[i].name, "%s", key);
        ntally++;
    }
    if (i < ntally)
        tally[i].n++;
    pthread_mutex_unlock(&tally_lock);
}

/* ---- sampling this process ---------------------------------------------- */

typedef struct sample {
    long rss_kb, hwm_kb;
    int threads;
    long long conns;
} sample;

static void read_self(sample *s)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    s->rss_kb = s->hwm_kb = 0;
    s->threads = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            s->rss_kb = atol(line + 6);
        else if (strncmp(line, "VmHWM:", 6) == 0)
            s->hwm_kb = atol(line + 6);
        else if (strncmp(line, "Threads:", 8) == 0)
            s->threads = atoi(line + 8);
    }
    if (f)
        fclose(f);
    /* The handle's connections: every backend of this database but the monitor's own. */
    s->conns = q_ll("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                    0, NULL);
}

typedef struct peaks {
    long rss_kb;
    int threads;
    long long conns;
} peaks;

static void note(peaks *p, const sample *s)
{
    if (s->rss_kb > p->rss_kb)
        p->rss_kb = s->rss_kb;
    if (s->threads > p->threads)
        p->threads = s->threads;
    if (s->conns > p->conns)
        p->conns = s->conns;
}

int main(int argc, char **argv)
{
    bench_name = "bench_wait";
    config cfg;
    if (parse_args(argc, argv, &cfg) < 0)
        return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    count_stmt_hook = count_named;
    mon = PQconnectdb(cfg.conninfo);
    if (PQstatus(mon) != CONNECTION_OK)
        die("connecting: %s", PQerrorMessage(mon));

    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = cfg.conninfo[0] ? cfg.conninfo : NULL;
    o.executor_id = "bench-wait";
    o.workers = cfg.workers;
    o.commit_connections = cfg.commit_connections;
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        die("cairn_open: %s", h ? cairn_errmsg(h) : "out of memory");
    if (cairn_register_workflow(h, NAP_WORKFLOW, nap, NULL) != CAIRN_OK)
        die("register: %s", cairn_errmsg(h));
    delete_naps();
    PQclear(q("VACUUM ANALYZE cairn.workflow_status", 0, NULL));

    /* Enqueue: wake-up times spread over spread_s seconds from now + lead_s (database clock). */
    long long t0 = q_ll("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", 0, NULL) +
                   (long long)cfg.lead_s * 1000;
    char t0s[32], spread[32], ns[16];
    snprintf(t0s, sizeof t0s, "%lld", t0);
    snprintf(spread, sizeof spread, "%lld", (long long)cfg.spread_s * 1000);
    snprintf(ns, sizeof ns, "%d", cfg.workflows);
    double e0 = now_s();
    for (int lo = 0; lo < cfg.workflows; lo += 5000) {
        char los[16], his[16];
        snprintf(los, sizeof los, "%d", lo);
        snprintf(his, sizeof his, "%d", lo + 5000 < cfg.workflows ? lo + 4999 : cfg.workflows - 1);
        const char *vals[5] = {t0s, spread, ns, los, his};
        PQclear(q("SELECT count(cairn.enqueue('" NAP_WORKFLOW "',"
                  " json_build_object('until', $1::bigint + i * $2::bigint / $3::int)::json,"
                  " id => 'nap-' || i)) FROM generate_series($4::int, $5::int) i",
                  5, vals));
    }
    double enq_s = now_s() - e0;
    printf("bench_wait: %d workflows enqueued in %.1f s; they wake over %d s starting %d s after the enqueue began\n",
           cfg.workflows, enq_s, cfg.spread_s, cfg.lead_s);

    /* Start: every workflow runs to its sleep and suspends. */
    double s0 = now_s();
    if (cairn_start_workers(h) != CAIRN_OK)
        die("cairn_start_workers: %s", cairn_errmsg(h));
    peaks waitp = {0}, wakep = {0};
    sample s;
    long long waiting = 0;
    double all_waiting_s = -1;
    for (;;) {
        read_self(&s);
        waiting = q_ll("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'nap-%'"
                       " AND status = 'PENDING' AND executor_id IS NULL AND wake_at IS NOT NULL",
                       0, NULL);
        long long now_db = q_ll("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint", 0, NULL);
        if (waiting >= cfg.workflows && all_waiting_s < 0) {
            all_waiting_s = now_s() - s0;
            printf("bench_wait: all %d suspended %.1f s after the workers started (%.0f/s); %.1f s before the "
                   "first wake-up\n",
                   cfg.workflows, all_waiting_s, cfg.workflows / all_waiting_s, (t0 - now_db) / 1000.0);
        }
        if (now_db >= t0)
            break;
        note(&waitp, &s);
        sleep_s(1.0);
    }
    if (all_waiting_s < 0)
        printf("bench_wait: only %lld of %d had suspended when the first wake-up came (raise --lead-s)\n", waiting,
               cfg.workflows);
    printf("bench_wait: while %lld waited: %d threads, %.0f MB resident (peak so far %.0f MB), %lld connections\n",
           waiting, waitp.threads, waitp.rss_kb / 1024.0, s.hwm_kb / 1024.0, waitp.conns);

    /* Wake: wait for every finish. */
    double w0 = now_s();
    atomic_store(&tally_on, 1);
    long long done = 0;
    while (done < cfg.workflows) {
        read_self(&s);
        note(&wakep, &s);
        done = q_ll("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'nap-%' AND status = 'SUCCESS'", 0,
                    NULL);
        if (now_s() - w0 > cfg.spread_s + 600)
            die("only %lld of %d finished %d s after the last wake-up time", done, cfg.workflows, 600);
        if (done < cfg.workflows)
            sleep_s(1.0);
    }
    atomic_store(&tally_on, 0);
    double wake_s = now_s() - w0;
    read_self(&s);
    if (COUNTING_LIBPQ) {
        printf("bench_wait: statements per workflow while they woke (%.1f s):", wake_s);
        for (int i = 0; i < ntally; i++)
            printf(" %s %.2f", tally[i].name, (double)tally[i].n / cfg.workflows);
        printf("\n");
    }
    printf("bench_wait: while they woke: %d threads, %.0f MB resident, %lld connections; peak resident over the "
           "run %.0f MB\n",
           wakep.threads, wakep.rss_kb / 1024.0, wakep.conns, s.hwm_kb / 1024.0);

    PGresult *r = q("SELECT percentile_cont(ARRAY[0.5, 0.9, 0.99, 1.0]) WITHIN GROUP (ORDER BY late)::text"
                    "  FROM (SELECT extract(epoch FROM s.updated_at) * 1000 - (s.input->>'until')::bigint AS late"
                    "          FROM cairn.workflow_status s"
                    "         WHERE s.id LIKE 'nap-%') x",
                    0, NULL);
    printf("bench_wait: lateness of wake-ups (finish minus sleep-until, database clock) ms at p50, p90, p99, max: "
           "%s\n",
           PQgetvalue(r, 0, 0));
    PQclear(r);
    long long early = q_ll("SELECT count(*) FROM cairn.workflow_status s"
                           " WHERE s.id LIKE 'nap-%' AND extract(epoch FROM s.updated_at) * 1000 <"
                           " (s.input->>'until')::bigint",
                           0, NULL);
    printf("bench_wait: finished before their time: %lld; load average %.2f\n", early, load_average());
    cairn_close(h);
    if (!cfg.keep)
        delete_naps();
    PQfinish(mon);
    return 0;
}
