/*
 * Helpers shared by the benchmark programs (bench_core, bench_tx,
 * bench_enqueue, bench_queue). Each program sets bench_name first thing in
 * main(); it prefixes every message printed to stderr.
 */
#ifndef CAIRN_BENCH_COMMON_H
#define CAIRN_BENCH_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include <libpq-fe.h>

#include <cairn.h>

extern const char *bench_name;

/* ---- small helpers --------------------------------------------------- */

/* Seconds on the monotonic clock. */
double now_s(void);
void sleep_s(double s);
/* Prints "<bench_name>: <message>" to stderr and exits with status 1. */
void die(const char *fmt, ...) CAIRN_PRINTF(1, 2);
int cmp_double(const void *a, const void *b);
/* Nearest-rank percentile of sorted v[0..n). */
double percentile(const double *v, size_t n, double p);
/* The median of v[0..n) (NAN values left out); v is reordered. */
double median(double *v, int n);
/* Formats v with thousands separators and `decimals` decimals into buf; "n/a" for NAN. */
const char *num(char *buf, size_t len, double v, int decimals);
/* The 1-minute load average, or -1 where /proc/loadavg does not exist. */
double load_average(void);
/*
 * Starts workflow `workflow` (input null, opts may be NULL) and awaits it for
 * up to a minute; dies unless it ends SUCCESS. Returns its latency in seconds.
 */
double bench_start_await(cairn *h, const char *workflow, const cairn_start_options *opts);

/* ---- counting the library's libpq calls ------------------------------ */

/*
 * Statements and round trips of every libpq call the process makes, when
 * the program is linked with --wrap for the libpq functions (see
 * CMakeLists.txt; COUNTING_LIBPQ says whether it is). count_hook, set
 * before any thread starts, sees each counted call with its connection.
 */
#ifdef BENCH_COUNT_LIBPQ
#define COUNTING_LIBPQ 1
#else
#define COUNTING_LIBPQ 0
#endif
extern atomic_llong n_statements;
extern atomic_llong n_round_trips;
extern void (*count_hook)(const PGconn *conn, int statements, int round_trips);
/*
 * count_stmt_hook, likewise set before any thread starts, sees each counted
 * statement with the libpq function that sent it (`how`, e.g.
 * "PQexecPrepared") and `what` it sent: the prepared statement's name for
 * PQexecPrepared, PQsendQueryPrepared and PQprepare, the SQL text for the
 * others. Both are borrowed for the duration of the call.
 */
extern void (*count_stmt_hook)(const PGconn *conn, const char *how, const char *what);

/* ---- the monitoring connection --------------------------------------- */

/*
 * One plain libpq connection reads the server's counters between phases.
 * Its own transactions are counted (queries) so that they can be taken
 * out of the pg_stat_database figures.
 */
typedef struct monitor {
    PGconn *pg;
    int version;          /* server_version_num */
    int have_pgss;        /* pg_stat_statements can be read */
    long long queries;    /* statements this connection has run, each its own transaction */
} monitor;

void mon_open(monitor *m, const char *conninfo);
/* Runs one statement; on failure dies when `must`, else returns NULL. The caller clears the result. */
PGresult *mon_query(monitor *m, const char *sql, int nparams, const char *const *params, int must);
void mon_exec(monitor *m, const char *sql);
/* The first column of the first row of a query as a long long, or -1 if it failed. */
long long mon_value(monitor *m, const char *sql, int nparams, const char *const *params, int must);
/* The first column of the first row as malloc'd text ("?" when the query failed). */
char *mon_text(monitor *m, const char *sql);

/*
 * A snapshot of the counters a phase is measured with. The transaction ID
 * counter moves once per transaction that writes, whoever runs it, and
 * reading it assigns none, so it is exact at any instant. xact_commit
 * counts every committed transaction, reads too, but backends publish it
 * lazily, so it is only read once the handle's connections have closed
 * (see settle()).
 */
typedef struct counters {
    long long next_xid;
    long long pgss_calls; /* -1 without pg_stat_statements */
    long long statements; /* counted libpq calls */
    long long round_trips;
    double cpu;           /* this process's user + system CPU seconds */
    long long switches;   /* this process's context switches */
    double t;
} counters;

void snap_server(monitor *m, counters *c);
void snap_client(counters *c);
/* Reads xact_commit after making this connection publish its own counts. */
long long xact_commit(monitor *m);
/* Waits until no backend of application_name `app` is left, so that their statistics have been published. */
void settle(monitor *m, const char *app);
/* Asks for a checkpoint; needs superuser or pg_checkpoint (skipped without). */
void checkpoint(monitor *m);

/* ---- pgbench --------------------------------------------------------- */

/*
 * Runs pgbench with argv (argv[0] is the program), keeps what it printed
 * in out[0..outlen), and returns the "tps = " it printed, or a negative
 * number when it could not run or failed (its output is then on stderr).
 */
double pgbench_run(char *const argv[], char *out, size_t outlen);
double run_pgbench(char *const argv[]);
/* Writes text into a new file made from path, a mkstemps() template ending in ".sql". */
void write_script(char *path, const char *text);

/* One pgbench run and what it cost; see pgbench_measure(). */
typedef struct pgbench_result {
    double tps;            /* as pgbench prints it (without connection time) */
    double transactions;   /* transactions processed */
    double latency_ms;     /* pgbench's "latency average" */
    long long failed;      /* failed transactions (PostgreSQL 15's pgbench counts them) */
    double seconds;        /* wall time of the whole run, connections included */
    double client_cpu_s;   /* CPU seconds pgbench itself used */
    double server_cpu_s;   /* CPU seconds of the local server over the run; -1 unknown */
    double machine_busy_s; /* busy CPU seconds of the whole machine over the run; -1 unknown */
    double machine_s;      /* CPU seconds that passed (busy or idle) over the run */
} pgbench_result;

/*
 * Runs `pgbench -n -M prepared -f script -c clients -j threads -T seconds`
 * against conninfo ("" for libpq's defaults) and fills *res, with the
 * server's CPU when postmaster > 0 (see local_postmaster()). pgbench's own
 * CPU comes from the reaped-children rusage, so no other child process may
 * be reaped meanwhile. Returns 0, or -1 when pgbench failed.
 */
int pgbench_measure(const char *pgbench, const char *conninfo, const char *script, int clients, int threads,
                    int seconds, pid_t postmaster, pgbench_result *res);
/* The median latency in ms of the transactions pgbench logged with -l into dir; removes the logs. */
double pgbench_log_p50(const char *dir);

/* ---- connection strings ---------------------------------------------- */

/* Appends a value escaped for a key='value' conninfo string. */
void put_conninfo_value(char *out, size_t len, size_t *pos, const char *v);
/* The caller's conninfo with application_name set to `app`; malloc'd. */
char *conninfo_with_app(const char *conninfo, const char *app);

/* ---- CPU accounting from /proc ---------------------------------------- */

/*
 * CPU seconds (user + system) used so far, read from /proc, or -1 where
 * it cannot be read (another OS, a remote server, no permission).
 *   proc_cpu_s:    one process, plus its reaped children when `children`.
 *   server_cpu_s:  a postmaster and everything it forked, including
 *                  backends that have exited since (through the
 *                  postmaster's reaped-children times).
 *   machine_cpu_s: every CPU of the machine; *elapsed_s receives the CPU
 *                  seconds that passed in total, busy or idle.
 */
double proc_cpu_s(pid_t pid, int children);
double server_cpu_s(pid_t postmaster);
double machine_cpu_s(double *elapsed_s);
/* The postmaster of the monitor's server when it runs on this machine and /proc shows it, else -1. */
pid_t local_postmaster(monitor *m);

/* Parses a decimal integer in [lo, hi] into *out; -1 if s is not one. */
int bench_parse_int(const char *s, int lo, int hi, int *out);

/*
 * Parses a comma-separated list of integers in [lo, hi] into out[0..max);
 * *n receives the count. -1 if the list is empty, too long or malformed.
 */
int bench_parse_list(const char *s, int lo, int hi, int *out, int max, int *n);

#endif /* CAIRN_BENCH_COMMON_H */
