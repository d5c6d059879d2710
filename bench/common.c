/*
 * Helpers shared by the benchmark programs: clocks, percentiles and
 * medians, number formatting, counting the library's libpq calls, the
 * monitoring connection that reads the server's counters, running
 * pgbench, and CPU accounting from /proc.
 */
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *bench_name = "bench";

/* ---- small helpers --------------------------------------------------- */

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_start_await(cairn *h, const char *workflow, const cairn_start_options *opts)
{
    double t0 = now_s();
    char *id = NULL;
    int rc = cairn_start(h, workflow, NULL, opts, &id);
    if (rc != CAIRN_OK)
        die("cairn_start: %s: %s", cairn_strerror(rc), cairn_errmsg(h));
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    rc = cairn_await(h, id, 60000, &st, NULL);
    if (rc != CAIRN_OK)
        die("cairn_await %s: %s: %s", id, cairn_strerror(rc), cairn_errmsg(h));
    double took = now_s() - t0;
    if (st != CAIRN_STATUS_SUCCESS) {
        /* Only now fetch the error, so that the measured path copies no result. */
        char *result = NULL;
        cairn_await(h, id, 0, &st, &result);
        die("workflow %s ended %s: %s", id, cairn_status_name(st), result ? result : "");
    }
    cairn_free(id);
    return took;
}

void sleep_s(double s)
{
    struct timespec ts;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
double percentile(const double *v, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t k = (size_t)ceil(p / 100.0 * (double)n);
    return v[k == 0 ? 0 : k - 1];
}

/* ---- counting the library's libpq calls ------------------------------ */

/*
 * When the build links with --wrap for these libpq functions (see
 * CMakeLists.txt), every call the library makes passes through here and
 * is counted: statements sent, and round trips (a call that waits for the
 * server; a pipeline of statements ending in one sync is one round trip).
 * The benchmark's own monitoring queries run only outside the windows in
 * which these counters are read. count_hook, when a program sets it before
 * any thread starts, also sees every call with its connection.
 */
atomic_llong n_statements;
atomic_llong n_round_trips;
void (*count_hook)(const PGconn *conn, int statements, int round_trips);
void (*count_stmt_hook)(const PGconn *conn, const char *how, const char *what);

#ifdef BENCH_COUNT_LIBPQ
static void count(const PGconn *conn, int statements, int round_trips)
{
    if (statements)
        atomic_fetch_add(&n_statements, statements);
    if (round_trips)
        atomic_fetch_add(&n_round_trips, round_trips);
    if (count_hook)
        count_hook(conn, statements, round_trips);
}

/* Tells count_stmt_hook, when a program set one, which statement a call sends. */
static void count_stmt(const PGconn *conn, const char *how, const char *what)
{
    if (count_stmt_hook)
        count_stmt_hook(conn, how, what);
}

PGresult *__real_PQexec(PGconn *conn, const char *query);
PGresult *__real_PQexecParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                              const int *lengths, const int *formats, int result_format);
PGresult *__real_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                                const int *formats, int result_format);
PGresult *__real_PQprepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types);
int __real_PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                               const int *formats, int result_format);
int __real_PQpipelineSync(PGconn *conn);
PGresult *__wrap_PQexec(PGconn *conn, const char *query);
PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                              const int *lengths, const int *formats, int result_format);
PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                                const int *formats, int result_format);
PGresult *__wrap_PQprepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types);
int __wrap_PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                               const int *formats, int result_format);
int __wrap_PQpipelineSync(PGconn *conn);

PGresult *__wrap_PQexec(PGconn *conn, const char *query)
{
    count(conn, 1, 1);
    count_stmt(conn, "PQexec", query);
    return __real_PQexec(conn, query);
}

PGresult *__wrap_PQexecParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                              const int *lengths, const int *formats, int result_format)
{
    count(conn, 1, 1);
    count_stmt(conn, "PQexecParams", command);
    return __real_PQexecParams(conn, command, n, types, values, lengths, formats, result_format);
}

PGresult *__wrap_PQexecPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                                const int *formats, int result_format)
{
    count(conn, 1, 1);
    count_stmt(conn, "PQexecPrepared", name);
    return __real_PQexecPrepared(conn, name, n, values, lengths, formats, result_format);
}

PGresult *__wrap_PQprepare(PGconn *conn, const char *name, const char *query, int n, const Oid *types)
{
    count(conn, 1, 1);
    count_stmt(conn, "PQprepare", name);
    return __real_PQprepare(conn, name, query, n, types);
}

int __wrap_PQsendQueryPrepared(PGconn *conn, const char *name, int n, const char *const *values, const int *lengths,
                               const int *formats, int result_format)
{
    count(conn, 1, 0);
    count_stmt(conn, "PQsendQueryPrepared", name);
    return __real_PQsendQueryPrepared(conn, name, n, values, lengths, formats, result_format);
}

int __wrap_PQpipelineSync(PGconn *conn)
{
    count(conn, 0, 1);
    return __real_PQpipelineSync(conn);
}

#ifdef BENCH_COUNT_SEND_PARAMS
/* Transactional steps send their COMMIT with PQsendQueryParams, in the checkpoint's pipeline. */
int __real_PQsendQueryParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                             const int *lengths, const int *formats, int result_format);
int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                             const int *lengths, const int *formats, int result_format);

int __wrap_PQsendQueryParams(PGconn *conn, const char *command, int n, const Oid *types, const char *const *values,
                             const int *lengths, const int *formats, int result_format)
{
    count(conn, 1, 0);
    count_stmt(conn, "PQsendQueryParams", command);
    return __real_PQsendQueryParams(conn, command, n, types, values, lengths, formats, result_format);
}
#endif
#endif

/* ---- the monitoring connection --------------------------------------- */

PGresult *mon_query(monitor *m, const char *sql, int nparams, const char *const *params, int must)
{
    m->queries++;
    PGresult *r = PQexecParams(m->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        if (must)
            die("%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

void mon_exec(monitor *m, const char *sql)
{
    PQclear(mon_query(m, sql, 0, NULL, 1));
}

/* The first column of the first row of a query as a long long, or -1 if it failed. */
long long mon_value(monitor *m, const char *sql, int nparams, const char *const *params, int must)
{
    PGresult *r = mon_query(m, sql, nparams, params, must);
    if (!r)
        return -1;
    long long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return v;
}

char *mon_text(monitor *m, const char *sql)
{
    PGresult *r = mon_query(m, sql, 0, NULL, 0);
    char *s = strdup(r && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "?");
    PQclear(r);
    if (!s)
        die("out of memory");
    return s;
}

void mon_open(monitor *m, const char *conninfo)
{
    memset(m, 0, sizeof *m);
    m->pg = PQconnectdb(conninfo);
    if (!m->pg || PQstatus(m->pg) != CONNECTION_OK)
        die("cannot connect to '%s': %s", conninfo, m->pg ? PQerrorMessage(m->pg) : "out of memory");
    m->version = PQserverVersion(m->pg);
    mon_exec(m, "SET client_min_messages = warning");
    /* pg_stat_statements is readable only when the extension exists and the library is preloaded. */
    if (mon_value(m, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'", 0, NULL, 1) > 0 &&
        mon_value(m, "SELECT count(*) FROM pg_stat_statements", 0, NULL, 0) >= 0)
        m->have_pgss = 1;
}

void snap_server(monitor *m, counters *c)
{
    c->next_xid = mon_value(m, "SELECT txid_snapshot_xmax(txid_current_snapshot())", 0, NULL, 1);
    c->pgss_calls = -1;
    if (m->have_pgss)
        c->pgss_calls = mon_value(m,
                                  "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                                  " WHERE query LIKE '%cairn.%' AND query NOT LIKE '%pg_stat_statements%'",
                                  0, NULL, 0);
}

void snap_client(counters *c)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    c->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
             (double)ru.ru_stime.tv_usec / 1e6;
    c->switches = ru.ru_nvcsw + ru.ru_nivcsw;
    c->statements = atomic_load(&n_statements);
    c->round_trips = atomic_load(&n_round_trips);
    c->t = now_s();
}

/* Reads xact_commit after making this connection publish its own counts. */
long long xact_commit(monitor *m)
{
    if (m->version >= 150000)
        mon_exec(m, "SELECT pg_stat_force_next_flush()");
    else
        sleep_s(0.6); /* the statistics collector of older servers publishes every 500 ms */
    return mon_value(m, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", 0, NULL, 1);
}

/*
 * Waits until no backend of application_name `app` is left, so that their
 * statistics have been published (a backend publishes them as it exits).
 */
void settle(monitor *m, const char *app)
{
    const char *p[1] = {app};
    double deadline = now_s() + 10;
    while (mon_value(m, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", 1, p, 1) > 0) {
        if (now_s() > deadline) {
            fprintf(stderr, "%s: warning: connections of %s are still open; xact_commit may be short\n", bench_name,
                    app);
            break;
        }
        sleep_s(0.02);
    }
    sleep_s(0.2); /* a backend leaves pg_stat_activity just before it publishes its counts */
}

/* Asks for a checkpoint so that each phase starts from the same state; needs superuser or pg_checkpoint. */
void checkpoint(monitor *m)
{
    PQclear(mon_query(m, "CHECKPOINT", 0, NULL, 0));
}

/* The 1-minute load average, or -1 where /proc/loadavg does not exist. */
double load_average(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* ---- pgbench -------------------------------------------------------- */

/*
 * Runs pgbench with argv, keeps what it printed (stdout and stderr) in
 * out[0..outlen), and returns the "tps = " it printed, or a negative
 * number when it could not run or failed.
 */
double pgbench_run(char *const argv[], char *out, size_t outlen)
{
    int fds[2];
    if (pipe(fds) != 0)
        die("pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    out[0] = '\0';
    if (err != 0) {
        close(fds[0]);
        fprintf(stderr, "%s: cannot run %s: %s\n", bench_name, argv[0], strerror(err));
        return -1;
    }
    size_t len = 0;
    ssize_t n;
    while ((n = read(fds[0], out + len, outlen - 1 - len)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            len += (size_t)n;
    out[len] = '\0';
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const char *tps = strstr(out, "tps = ");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !tps) {
        fprintf(stderr, "%s: %s failed:\n%s\n", bench_name, argv[0], out);
        return -1;
    }
    return strtod(tps + 6, NULL);
}

/* Runs pgbench with argv and returns the "tps = " it prints, or a negative number. */
double run_pgbench(char *const argv[])
{
    char out[16384];
    return pgbench_run(argv, out, sizeof out);
}

/* Writes text into a new file made from path, a mkstemps() template ending in ".sql". */
void write_script(char *path, const char *text)
{
    int fd = mkstemps(path, 4);
    if (fd < 0)
        die("cannot create a pgbench script: %s", strerror(errno));
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        die("cannot write %s: %s", path, strerror(errno));
    close(fd);
}

/* The number after `key` in pgbench's output, or NAN. */
static double pgbench_figure(const char *out, const char *key)
{
    const char *p = strstr(out, key);
    return p ? strtod(p + strlen(key), NULL) : NAN;
}

static double children_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           (double)ru.ru_stime.tv_usec / 1e6;
}

int pgbench_measure(const char *pgbench, const char *conninfo, const char *script, int clients, int threads,
                    int seconds, pid_t postmaster, pgbench_result *res)
{
    char secs[16], nclients[16], nthreads[16];
    snprintf(secs, sizeof secs, "%d", seconds);
    snprintf(nclients, sizeof nclients, "%d", clients);
    snprintf(nthreads, sizeof nthreads, "%d", threads);
    char *argv[] = {(char *)pgbench, "-n", "-M", "prepared", "-f", (char *)script, "-c", nclients, "-j", nthreads,
                    "-T", secs, conninfo[0] ? (char *)conninfo : NULL, NULL};
    static char out[65536];
    memset(res, 0, sizeof *res);
    double c0 = children_cpu_s(), t0 = now_s(), e0 = 0, m0 = machine_cpu_s(&e0);
    double s0 = postmaster > 0 ? server_cpu_s(postmaster) : -1;
    res->tps = pgbench_run(argv, out, sizeof out);
    double s1 = postmaster > 0 ? server_cpu_s(postmaster) : -1;
    double e1 = 0, m1 = machine_cpu_s(&e1);
    res->seconds = now_s() - t0;
    res->client_cpu_s = children_cpu_s() - c0;
    res->server_cpu_s = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
    res->machine_busy_s = m0 >= 0 && m1 >= 0 ? m1 - m0 : -1;
    res->machine_s = m0 >= 0 && m1 >= 0 ? e1 - e0 : -1;
    res->latency_ms = pgbench_figure(out, "latency average = ");
    double failed = pgbench_figure(out, "number of failed transactions: ");
    res->failed = isnan(failed) ? 0 : (long long)failed;
    res->transactions = pgbench_figure(out, "number of transactions actually processed: ");
    return res->tps > 0 ? 0 : -1;
}

/*
 * The median latency in ms of the transactions pgbench logged with -l into
 * directory `dir` (third field of each line, in microseconds); removes the
 * log files. NAN when there are none.
 */
double pgbench_log_p50(const char *dir)
{
    size_t n = 0, cap = 0;
    double *v = NULL;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        long client, xact;
        double us;
        while (f && fscanf(f, "%ld %ld %lf %*[^\n]", &client, &xact, &us) == 3) {
            if (n == cap) {
                cap = cap ? cap * 2 : 65536;
                v = realloc(v, cap * sizeof *v);
                if (!v)
                    die("out of memory");
            }
            v[n++] = us / 1e3;
        }
        if (f)
            fclose(f);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    double p = NAN;
    if (n > 0) {
        qsort(v, n, sizeof *v, cmp_double);
        p = percentile(v, n, 50);
    }
    free(v);
    return p;
}

/* ---- connection strings --------------------------------------------- */

/* Appends a value escaped for a key='value' conninfo string. */
void put_conninfo_value(char *out, size_t len, size_t *pos, const char *v)
{
    for (; *v && *pos + 3 < len; v++) {
        if (*v == '\'' || *v == '\\')
            out[(*pos)++] = '\\';
        out[(*pos)++] = *v;
    }
}

/*
 * The caller's conninfo with application_name set to `app`, so that the
 * handle's connections can be told apart in pg_stat_activity.
 */
char *conninfo_with_app(const char *conninfo, const char *app)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts)
        die("cannot parse the connection string: %s", err ? err : "out of memory");
    size_t len = 4096 + strlen(conninfo) * 2;
    char *out = malloc(len);
    if (!out)
        die("out of memory");
    size_t pos = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || strcmp(o->keyword, "application_name") == 0)
            continue;
        pos += (size_t)snprintf(out + pos, len - pos, "%s='", o->keyword);
        put_conninfo_value(out, len, &pos, o->val);
        pos += (size_t)snprintf(out + pos, len - pos, "' ");
    }
    snprintf(out + pos, len - pos, "application_name='%s'", app);
    PQconninfoFree(opts);
    return out;
}

/* ---- report helpers ------------------------------------------------- */

/* Formats v with thousands separators and `decimals` decimals into buf. */
const char *num(char *buf, size_t len, double v, int decimals)
{
    if (isnan(v)) {
        snprintf(buf, len, "n/a");
        return buf;
    }
    char raw[64];
    snprintf(raw, sizeof raw, "%.*f", decimals, fabs(v));
    const char *dot = strchr(raw, '.');
    size_t ilen = dot ? (size_t)(dot - raw) : strlen(raw);
    size_t o = 0;
    if (v < 0 && o + 1 < len)
        buf[o++] = '-';
    for (size_t i = 0; i < ilen && o + 2 < len; i++) {
        if (i > 0 && (ilen - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    snprintf(buf + o, len - o, "%s", dot ? dot : "");
    return buf;
}

/* The median of v[0..n) (NAN values left out); v is reordered. */
double median(double *v, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i]))
            v[k++] = v[i];
    if (k == 0)
        return NAN;
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}


/* ---- CPU accounting from /proc ---------------------------------------- */

/* Fields 3.. of /proc/<pid>/stat (after the command name) into f[0..n); returns how many were read. */
static int proc_stat_fields(pid_t pid, long long *f, int n)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return 0;
    size_t len = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[len] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    p++;
    int k = 0;
    while (k < n) {
        while (*p == ' ')
            p++;
        if (!*p || *p == '\n')
            break;
        if (k == 0) {
            f[k++] = (unsigned char)*p; /* the state letter */
            p++;
            continue;
        }
        char *end;
        f[k++] = strtoll(p, &end, 10);
        if (end == p)
            break;
        p = end;
    }
    return k;
}

double proc_cpu_s(pid_t pid, int children)
{
    long long f[15]; /* fields 3..17: state, ppid, ..., utime (14), stime, cutime, cstime (17) */
    if (proc_stat_fields(pid, f, 15) < 15)
        return -1;
    long long ticks = f[11] + f[12] + (children ? f[13] + f[14] : 0);
    return (double)ticks / (double)sysconf(_SC_CLK_TCK);
}

double server_cpu_s(pid_t postmaster)
{
    double total = proc_cpu_s(postmaster, 1);
    if (total < 0)
        return -1;
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        long long f[2];
        if (*end || pid <= 0 || pid == (long)postmaster || proc_stat_fields((pid_t)pid, f, 2) < 2 ||
            f[1] != (long long)postmaster)
            continue;
        double c = proc_cpu_s((pid_t)pid, 0);
        if (c > 0)
            total += c;
    }
    closedir(d);
    return total;
}

double machine_cpu_s(double *elapsed_s)
{
    FILE *fp = fopen("/proc/stat", "r");
    long long v[10] = {0};
    int n = fp ? fscanf(fp, "cpu %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                        &v[4], &v[5], &v[6], &v[7], &v[8], &v[9])
               : 0;
    if (fp)
        fclose(fp);
    if (n < 8)
        return -1;
    /* user nice system idle iowait irq softirq steal (guest time is already in user) */
    double tick = (double)sysconf(_SC_CLK_TCK);
    long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    if (elapsed_s)
        *elapsed_s = (double)(busy + v[3] + v[4]) / tick;
    return (double)busy / tick;
}

/* The name of a process as /proc/<pid>/comm gives it, into buf ("" when unknown). */
static void proc_comm(pid_t pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/comm", (long)pid);
    FILE *fp = fopen(path, "r");
    buf[0] = '\0';
    if (fp) {
        if (!fgets(buf, (int)len, fp))
            buf[0] = '\0';
        fclose(fp);
    }
    buf[strcspn(buf, "\n")] = '\0';
}

pid_t local_postmaster(monitor *m)
{
    long long backend = mon_value(m, "SELECT pg_backend_pid()", 0, NULL, 0);
    long long f[2];
    char comm[64];
    if (backend <= 0 || proc_stat_fields((pid_t)backend, f, 2) < 2)
        return -1;
    proc_comm((pid_t)backend, comm, sizeof comm);
    if (strcmp(comm, "postgres") != 0)
        return -1;
    proc_comm((pid_t)f[1], comm, sizeof comm);
    if (strcmp(comm, "postgres") != 0 && strcmp(comm, "postmaster") != 0)
        return -1;
    return (pid_t)f[1];
}

int bench_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int bench_parse_list(const char *s, int lo, int hi, int *out, int max, int *n)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (*n == max || bench_parse_int(tok, lo, hi, &out[*n]) < 0)
            return -1;
        (*n)++;
    }
    return *n > 0 ? 0 : -1;
}
