/*
 * The fleet: executors that heartbeat, presume each other dead when a
 * lease runs out and adopt the dead ones' workflows; executors that find
 * themselves presumed dead (paused past their lease) and must not corrupt
 * what their adopters did; an executor ID taken over by a second process;
 * graceful stops that hand work back; and cairn_executors().
 *
 * The workflows run in fleet_worker (see fleet_worker.c), a separate
 * program this file starts, SIGKILLs, SIGSTOPs and SIGCONTs, and stops with
 * SIGTERM. Its workflow "fleet" computes a value predictable from its
 * input and has a transactional step that writes one row per execution to
 * fleet_ledger, a table without a unique constraint, so that a
 * transactional step committed twice shows up as a second row. Each
 * worker's output (its log lines) goes to a file named after its executor
 * ID and run number under $CAIRN_TEST_BIN_DIR/fleet-logs.
 *
 * Sizes of the chaos test can be changed through the environment:
 * FLEET_WORKFLOWS, FLEET_WORKERS, FLEET_THREADS, FLEET_LEASE_MS,
 * FLEET_CHAOS_S, FLEET_SLEEP_MS; FLEET_SEED repeats a run's random choices.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support.h"

#ifndef FLEET_WORKER
#error "FLEET_WORKER must name the fleet_worker program"
#endif

/*
 * Sanitizer builds run every process several times slower: they get
 * smaller defaults and longer deadlines.
 */
#ifdef FLEET_SANITIZED
#define SLOW 4
#define DEFAULT_WORKFLOWS 1000
#define DEFAULT_CHAOS_S 20
#else
#define SLOW 1
#define DEFAULT_WORKFLOWS 3000
#define DEFAULT_CHAOS_S 25
#endif

#define VALUE_MOD 1000000007LL
#define MAX_PROCS 256

static PGconn *db;  /* the test's own connection to the test database */
static cairn *api;  /* a handle without workflows, for cairn_executors() */
static char log_dir[512];
static unsigned rng = 1;

static const char *tables_ddl =
    "CREATE TABLE fleet_ledger ("
    "  wf text NOT NULL, step int NOT NULL, run int NOT NULL, executor text NOT NULL, v bigint NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp());"
    "CREATE TABLE fleet_exec ("
    "  seq bigserial PRIMARY KEY, kind text NOT NULL, wf text NOT NULL, step int NOT NULL, run int NOT NULL,"
    "  at timestamptz NOT NULL DEFAULT clock_timestamp());"
    /* The chaos test's kills and pauses: when (database clock), and when the executor was presumed dead. */
    "CREATE TABLE fleet_events ("
    "  executor text NOT NULL, kind text NOT NULL, at timestamptz NOT NULL, adopted_at timestamptz);";

/* ---- small helpers ------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static unsigned rng_next(void)
{
    unsigned x = rng;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return rng = x ? x : 0x9e3779b9u;
}

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* Formats an integer into buf for use as a statement parameter. */
static const char *itos(char *buf, long long v)
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

/* A NULL-terminated list of text parameters. */
#define P(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Runs sql with the NULL-terminated parameters (params may be NULL); fails the test if it fails. */
static PGresult *query(const char *sql, const char *const *params)
{
    int n = 0;
    while (params && params[n])
        n++;
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    return r;
}

/* The first column of the first row as a long; 0 for no row or NULL. */
static long q_long(const char *sql, const char *const *params)
{
    PGresult *r = query(sql, params);
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* The first column of the first row as text into buf; "" for no row or NULL. */
static void q_text(const char *sql, const char *const *params, char *buf, size_t len)
{
    PGresult *r = query(sql, params);
    snprintf(buf, len, "%s", PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
}

/* ---- worker processes --------------------------------------------------- */

typedef enum { P_RUNNING, P_PAUSED, P_GONE } proc_state;

typedef struct proc {
    pid_t pid;
    int run;               /* names the process in fleet_ledger and fleet_exec */
    char executor[64];
    char log[640];
    proc_state state;
    char instance[64];     /* its registration when it was paused */
    int zombie_pending;    /* SIGCONT'd after its lease ran out; not yet seen registering again */
    int killed;
} proc;

static proc procs[MAX_PROCS];
static int nprocs;
static int last_run;

typedef struct wopts {
    const char *executor;
    const char *queue;
    int workers;
    int lease_ms;
    int stop_ms;           /* cairn_stop() deadline after SIGTERM */
    const char *app_version;
} wopts;

/* Starts fleet_worker with its output going to its own log file. */
static proc *spawn(const wopts *o)
{
    if (nprocs == MAX_PROCS)
        fail_msg("more than %d worker processes", MAX_PROCS);
    proc *p = &procs[nprocs++];
    memset(p, 0, sizeof *p);
    p->run = ++last_run;
    snprintf(p->executor, sizeof p->executor, "%s", o->executor);
    snprintf(p->log, sizeof p->log, "%s/%s-run%d.log", log_dir, o->executor, p->run);
    char run[16], workers[16], lease[16], stop[16], conninfo[1400];
    snprintf(run, sizeof run, "%d", p->run);
    /* Its connections carry its run number, so that pg_stat_activity tells whose they are. */
    snprintf(conninfo, sizeof conninfo, "%s application_name='fleet-run%d'", t_db(), p->run);
    snprintf(workers, sizeof workers, "%d", o->workers > 0 ? o->workers : 4);
    snprintf(lease, sizeof lease, "%d", o->lease_ms);
    snprintf(stop, sizeof stop, "%d", o->stop_ms);
    const char *argv[32] = {FLEET_WORKER, "--db", conninfo, "--executor", o->executor, "--run", run,
                            "--workers", workers, "--lease-ms", lease, "--stop-ms", stop};
    int argc = 13;
    if (o->queue) {
        argv[argc++] = "--queue";
        argv[argc++] = o->queue;
    }
    if (o->app_version) {
        argv[argc++] = "--app-version";
        argv[argc++] = o->app_version;
    }
    argv[argc] = NULL;
    int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        fail_msg("cannot create %s: %s", p->log, strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execv(FLEET_WORKER, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", FLEET_WORKER, strerror(errno));
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    p->state = P_RUNNING;
    return p;
}

/* The last part of a worker's log, for failure messages. */
static const char *log_tail(const proc *p, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(p->log, "r");
    if (!f)
        return buf;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > (long)len - 1 ? size - (long)len + 1 : 0;
    fseek(f, from, SEEK_SET);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int log_contains(const proc *p, const char *text)
{
    FILE *f = fopen(p->log, "r");
    if (!f)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, text) != NULL;
    fclose(f);
    return found;
}

static const char *describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "ended with wait status 0x%x", (unsigned)status);
    return buf;
}

/* Fails the test if a worker that should be running has ended on its own. */
static void check_procs(void)
{
    for (int i = 0; i < nprocs; i++) {
        proc *p = &procs[i];
        if (p->state == P_GONE)
            continue;
        int status;
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            char how[128], tail[3000];
            p->state = P_GONE;
            fail_msg("worker %s (run %d, pid %d) %s on its own; its log ends:\n%s", p->executor, p->run,
                     (int)p->pid, describe_status(status, how, sizeof how), log_tail(p, tail, sizeof tail));
        }
    }
}

/* Waits until sql (with params) returns want, checking the workers meanwhile; fails after timeout_ms. */
static void wait_sql(const char *what, int timeout_ms, long want, const char *sql, const char *const *params)
{
    double deadline = now_s() + timeout_ms * SLOW / 1000.0;
    long got;
    for (;;) {
        got = q_long(sql, params);
        if (got == want)
            return;
        if (now_s() > deadline)
            break;
        check_procs();
        sleep_ms(20);
    }
    fail_msg("waited %d ms for %s: got %ld, expected %ld", timeout_ms * SLOW, what, got, want);
}

/* Waits until the worker has registered its executor row (LIVE, with its pid). */
static void wait_live(const proc *p)
{
    char pid[24], what[128];
    snprintf(what, sizeof what, "worker %s (run %d) to register", p->executor, p->run);
    wait_sql(what, 30000, 1, "SELECT count(*) FROM cairn.executors WHERE id = $1 AND state = 'LIVE' AND pid = $2::int",
             P(p->executor, itos(pid, p->pid)));
}

/* Waits for a worker to end and requires exit status 0 (a sanitizer report or a leak would change it). */
static void expect_clean_exit(proc *p, int timeout_ms)
{
    double deadline = now_s() + timeout_ms * SLOW / 1000.0;
    int status;
    pid_t r;
    while ((r = waitpid(p->pid, &status, WNOHANG)) == 0 && now_s() < deadline)
        sleep_ms(10);
    char how[128], tail[3000];
    if (r == 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &status, 0);
        p->state = P_GONE;
        fail_msg("worker %s (run %d) did not exit within %d ms of SIGTERM; its log ends:\n%s", p->executor, p->run,
                 timeout_ms * SLOW, log_tail(p, tail, sizeof tail));
    }
    p->state = P_GONE;
    if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("worker %s (run %d) %s after SIGTERM; its log ends:\n%s", p->executor, p->run,
                 r < 0 ? "could not be waited for" : describe_status(status, how, sizeof how),
                 log_tail(p, tail, sizeof tail));
}

/* Graceful stop: SIGTERM makes the worker call cairn_stop() with its --stop-ms and exit. */
static void stop_worker(proc *p, int timeout_ms)
{
    if (p->state == P_PAUSED)
        kill(p->pid, SIGCONT);
    kill(p->pid, SIGTERM);
    expect_clean_exit(p, timeout_ms);
}

static void kill_worker(proc *p)
{
    kill(p->pid, SIGKILL);
    int status;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR) {
    }
    p->state = P_GONE;
    p->killed = 1;
}

/* Ends every worker a test left behind (after a failure), so that none outlives the test. */
static void kill_leftovers(void)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i].state != P_GONE)
            kill_worker(&procs[i]);
}

/* Waits until the worker's log has a line containing text. */
static void wait_log(const proc *p, const char *text, int timeout_ms)
{
    double deadline = now_s() + timeout_ms * SLOW / 1000.0;
    while (!log_contains(p, text)) {
        if (now_s() > deadline) {
            char tail[3000];
            fail_msg("worker %s (run %d) did not log '%s' within %d ms; its log ends:\n%s", p->executor, p->run,
                     text, timeout_ms * SLOW, log_tail(p, tail, sizeof tail));
        }
        check_procs();
        sleep_ms(20);
    }
}

/* ---- workflows ---------------------------------------------------------- */

/*
 * Enqueues workflows "<prefix><i>" for i in [from, from + count) in queue
 * `queue`, in one statement, as an application would in bulk. Their steps
 * sleep as fleet_worker.c describes.
 */
static void enqueue_tx(const char *queue, const char *prefix, int from, int count, int steps, int sleep, int jitter,
                       int tx_sleep)
{
    char a[24], b[24], c[24], d[24], e[24], f[24];
    PQclear(query("SELECT count(cairn.enqueue('fleet', json_build_object('n', i, 'steps', $3::int, 'sleep_ms', $4::int,"
                  "                                   'jitter', $5::int, 'tx_sleep_ms', $8::int),"
                  "                    queue => $1, id => $2 || i))"
                  "  FROM generate_series($6::int, $7::int) i",
                  P(queue, prefix, itos(a, steps), itos(b, sleep), itos(c, jitter), itos(d, from),
                    itos(e, from + count - 1), itos(f, tx_sleep))));
}

static void enqueue(const char *queue, const char *prefix, int from, int count, int steps, int sleep, int jitter)
{
    enqueue_tx(queue, prefix, from, count, steps, sleep, jitter, 0);
}

/* The workflow's output value for input n (fleet_worker's formulas). */
static long long expected_value(long long n, int steps)
{
    long long v = n + 1000;
    for (int k = 1; k <= steps; k++)
        v = k % 3 == 2 ? (v * 17 + 7LL * k + 1) % VALUE_MOD : (v * 31 + k) % VALUE_MOD;
    return v;
}

/*
 * Checks every workflow of a queue: `count` of them, all SUCCESS with the
 * value their input predicts and one checkpoint per step; exactly one
 * fleet_ledger row per transactional step, by the run that the step's
 * checkpoint and the workflow's output name; no workflow left ENQUEUED or
 * PENDING.
 */
static void verify_queue(const char *queue, long count)
{
    PGresult *r = query("SELECT id, status, (input->>'n')::bigint, (input->>'steps')::int,"
                        "       coalesce(output->>'v', '-1')::bigint"
                        "  FROM cairn.workflows WHERE queue = $1 ORDER BY id",
                        P(queue));
    long n = PQntuples(r);
    long tx_steps = 0, all_steps = 0, bad = 0;
    char first_bad[512] = "";
    for (long i = 0; i < n; i++) {
        const char *id = PQgetvalue(r, (int)i, 0), *status = PQgetvalue(r, (int)i, 1);
        long long input_n = atoll(PQgetvalue(r, (int)i, 2));
        int steps = atoi(PQgetvalue(r, (int)i, 3));
        long long v = atoll(PQgetvalue(r, (int)i, 4));
        tx_steps += (steps + 1) / 3;
        all_steps += steps;
        if (strcmp(status, "SUCCESS") != 0 || v != expected_value(input_n, steps)) {
            if (!bad++)
                snprintf(first_bad, sizeof first_bad, "%s is %s with value %lld, expected SUCCESS with %lld", id,
                         status, v, expected_value(input_n, steps));
        }
    }
    PQclear(r);
    if (n != count)
        fail_msg("queue %s holds %ld workflows, expected %ld", queue, n, count);
    if (bad)
        fail_msg("queue %s: %ld workflows did not succeed with the right value; first: %s", queue, bad, first_bad);

    long checkpoints = q_long("SELECT count(*) FROM cairn.steps st JOIN cairn.workflow_status s ON s.id = st.workflow_id"
                              " WHERE s.queue = $1",
                              P(queue));
    if (checkpoints != all_steps)
        fail_msg("queue %s: %ld checkpoints, expected %ld (one per step)", queue, checkpoints, all_steps);

    char dup[512];
    q_text("SELECT count(*) || ' (first: ' || coalesce(min(wf || ' step ' || step || ' x' || n), '-') || ')'"
           "  FROM (SELECT l.wf, l.step, count(*) AS n FROM fleet_ledger l"
           "          JOIN cairn.workflow_status s ON s.id = l.wf WHERE s.queue = $1"
           "         GROUP BY l.wf, l.step HAVING count(*) > 1) d",
           P(queue), dup, sizeof dup);
    if (strncmp(dup, "0 ", 2) != 0)
        fail_msg("queue %s: transactional steps committed more than once: %s", queue, dup);
    long ledger = q_long("SELECT count(*) FROM fleet_ledger l JOIN cairn.workflow_status s ON s.id = l.wf"
                         " WHERE s.queue = $1",
                         P(queue));
    if (ledger != tx_steps)
        fail_msg("queue %s: %ld fleet_ledger rows, expected %ld (one per transactional step)", queue, ledger,
                 tx_steps);

    /* The output names, per transactional step, the run whose ledger row is the only one. */
    char mismatch[512];
    q_text("SELECT count(*) || ' (first: ' || coalesce(min(w.id || ' says ' || coalesce(w.output->>'tx', 'null')), '-')"
           "       || ')'"
           "  FROM cairn.workflows w"
           " WHERE w.queue = $1 AND coalesce(w.output->>'tx', '') IS DISTINCT FROM"
           "       (SELECT coalesce(string_agg(l.step || ':' || l.run, ' ' ORDER BY l.step), '')"
           "          FROM fleet_ledger l WHERE l.wf = w.id)",
           P(queue), mismatch, sizeof mismatch);
    if (strncmp(mismatch, "0 ", 2) != 0)
        fail_msg("queue %s: workflow outputs disagree with fleet_ledger: %s", queue, mismatch);
    long ckpt_mismatch = q_long("SELECT count(*) FROM cairn.steps st"
                                "  JOIN cairn.workflow_status s ON s.id = st.workflow_id"
                                "  JOIN fleet_ledger l ON l.wf = st.workflow_id AND l.step = st.step"
                                " WHERE s.queue = $1 AND (st.output->>'run')::int <> l.run",
                                P(queue));
    if (ckpt_mismatch)
        fail_msg("queue %s: %ld transactional checkpoints name another run than their ledger row", queue,
                 ckpt_mismatch);
}

/* Fails if any "mix" body started although its step already had a checkpoint. */
static void expect_no_violations(const char *queue)
{
    char v[512];
    q_text("SELECT count(*) || ' (first: ' || coalesce(min(e.wf || ' step ' || e.step || ' run ' || e.run), '-') || ')'"
           "  FROM fleet_exec e JOIN cairn.workflow_status s ON s.id = e.wf"
           " WHERE s.queue = $1 AND e.kind <> 'RUN'",
           P(queue), v, sizeof v);
    if (strncmp(v, "0 ", 2) != 0)
        fail_msg("queue %s: completed steps ran again: %s", queue, v);
}

/* ---- cairn_executors() ------------------------------------------------------ */

static json_t *executors_json(void)
{
    char *text = NULL;
    T_OK(api, cairn_executors(api, &text));
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (!j || !json_is_array(j))
        fail_msg("cairn_executors() returned no JSON array (%s): %s", err.text, text);
    cairn_free(text);
    return j;
}

static json_t *executor_entry(json_t *all, const char *id)
{
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e) {
        if (json_is_string(json_object_get(e, "id")) && strcmp(json_string_value(json_object_get(e, "id")), id) == 0)
            return e;
    }
    fail_msg("cairn_executors() does not list executor %s", id);
    return NULL;
}

static const char *jstr(json_t *e, const char *key)
{
    json_t *v = json_object_get(e, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static long long jint(json_t *e, const char *key)
{
    json_t *v = json_object_get(e, key);
    if (!json_is_integer(v))
        fail_msg("executor %s: \"%s\" is not an integer", jstr(e, "id"), key);
    return json_integer_value(v);
}

/* Every entry has every documented member, of the right type, and a known state. */
static void check_executor_shape(json_t *e)
{
    static const char *const keys[] = {"id", "state", "heartbeat_at", "heartbeat_age_ms", "lease_ms", "started_at",
                                       "stopped_at", "hostname", "pid", "app_version", "running", "adopted_by"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!json_object_get(e, keys[i]))
            fail_msg("an executor entry lacks \"%s\"", keys[i]);
    const char *state = jstr(e, "state");
    if (!state || (strcmp(state, "LIVE") && strcmp(state, "STOPPED") && strcmp(state, "DEAD")))
        fail_msg("executor %s has state %s", jstr(e, "id"), state ? state : "(not a string)");
    if (!jstr(e, "heartbeat_at") || !jstr(e, "started_at"))
        fail_msg("executor %s lacks heartbeat_at or started_at", jstr(e, "id"));
    if (jint(e, "heartbeat_age_ms") < 0 || jint(e, "lease_ms") <= 0 || jint(e, "running") < 0)
        fail_msg("executor %s: negative heartbeat age or running count, or no lease", jstr(e, "id"));
    /* A LIVE row has no stop time; the others do. */
    if ((strcmp(state, "LIVE") == 0) != json_is_null(json_object_get(e, "stopped_at")))
        fail_msg("executor %s is %s but stopped_at is %s", jstr(e, "id"), state,
                 json_is_null(json_object_get(e, "stopped_at")) ? "null" : "set");
    /* Only a DEAD row was adopted by someone. */
    if ((strcmp(state, "DEAD") == 0) != (jstr(e, "adopted_by") != NULL))
        fail_msg("executor %s is %s but adopted_by is %s", jstr(e, "id"), state,
                 jstr(e, "adopted_by") ? jstr(e, "adopted_by") : "null");
}

/*
 * One executor of each state: a live one running two workflows, one stopped
 * gracefully and one killed and presumed dead. cairn_executors() must show
 * each with the right state, process, lease, version, running count and
 * adopter.
 */
static void test_executors_json(void **state)
{
    (void)state;
    proc *live = spawn(&(wopts){.executor = "ex-live", .queue = "ex", .workers = 3, .lease_ms = 3000,
                                .app_version = "fleet-v1"});
    proc *stopped = spawn(&(wopts){.executor = "ex-stopped", .queue = "ex-none", .workers = 1, .lease_ms = 3000});
    proc *dead = spawn(&(wopts){.executor = "ex-dead", .queue = "ex-dead", .workers = 1, .lease_ms = 1500});
    wait_live(live);
    wait_live(stopped);
    wait_live(dead);

    enqueue("ex", "ex-", 1, 2, 3, 3000 * SLOW, 0);
    enqueue("ex-dead", "ex-dead-", 1, 1, 3, 3000 * SLOW, 0);
    wait_sql("ex-live to run its two workflows", 30000, 2,
             "SELECT count(*) FROM cairn.workflow_status WHERE queue = 'ex' AND status = 'PENDING'"
             " AND executor_id = 'ex-live'",
             NULL);
    wait_sql("ex-dead to run its workflow", 30000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE queue = 'ex-dead' AND status = 'PENDING'"
             " AND executor_id = 'ex-dead'",
             NULL);
    stop_worker(stopped, 30000);
    kill_worker(dead);
    wait_sql("ex-dead to be presumed dead", 30000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'ex-dead' AND state = 'DEAD'", NULL);

    char host[256];
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    json_t *all = executors_json();
    size_t i;
    json_t *e;
    const char *prev = "";
    json_array_foreach(all, i, e) {
        check_executor_shape(e);
        if (strcmp(jstr(e, "id"), prev) <= 0)
            fail_msg("cairn_executors() is not ordered by id: %s after %s", jstr(e, "id"), prev);
        prev = jstr(e, "id");
    }

    e = executor_entry(all, "ex-live");
    if (strcmp(jstr(e, "state"), "LIVE") != 0 || jint(e, "pid") != live->pid || jint(e, "lease_ms") != 3000 ||
        jint(e, "running") != 2 || !jstr(e, "app_version") || strcmp(jstr(e, "app_version"), "fleet-v1") != 0 ||
        !jstr(e, "hostname") || strcmp(jstr(e, "hostname"), host) != 0)
        fail_msg("ex-live: expected LIVE, pid %d, lease 3000, 2 running, version fleet-v1, host %s; got %s",
                 (int)live->pid, host, json_dumps(e, JSON_COMPACT));
    /* Its heartbeats go out every lease / 5; allow for a slow machine, but not for a lost heartbeat. */
    if (jint(e, "heartbeat_age_ms") > 3000)
        fail_msg("ex-live: heartbeat_age_ms %lld is over its lease", jint(e, "heartbeat_age_ms"));

    e = executor_entry(all, "ex-stopped");
    if (strcmp(jstr(e, "state"), "STOPPED") != 0 || jint(e, "running") != 0 || jint(e, "pid") != stopped->pid)
        fail_msg("ex-stopped: expected STOPPED with nothing running, pid %d; got %s", (int)stopped->pid,
                 json_dumps(e, JSON_COMPACT));

    e = executor_entry(all, "ex-dead");
    if (strcmp(jstr(e, "state"), "DEAD") != 0 || jint(e, "running") != 0 || jint(e, "lease_ms") != 1500 ||
        strcmp(jstr(e, "adopted_by"), "ex-live") != 0 || jint(e, "heartbeat_age_ms") < 1500)
        fail_msg("ex-dead: expected DEAD, adopted by ex-live, nothing running, heartbeat older than its lease of "
                 "1500 ms; got %s",
                 json_dumps(e, JSON_COMPACT));
    json_decref(all);
    /* The dead executor's workflow went back to its queue, which no one serves now. */
    wait_sql("ex-dead's workflow to be back in its queue", 1000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'ex-dead-1' AND status = 'ENQUEUED'"
             " AND executor_id IS NULL",
             NULL);

    /* A stop with no time to finish hands the running workflows back, and the row says STOPPED. */
    stop_worker(live, 30000);
    all = executors_json();
    e = executor_entry(all, "ex-live");
    if (strcmp(jstr(e, "state"), "STOPPED") != 0 || jint(e, "running") != 0)
        fail_msg("ex-live after its stop: expected STOPPED with nothing running; got %s", json_dumps(e, JSON_COMPACT));
    json_decref(all);
    if (q_long("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'ex' AND status = 'ENQUEUED'", NULL) != 2)
        fail_msg("ex-live's stop did not hand its two workflows back to their queue");
}

/* ---- graceful stop ------------------------------------------------------ */

/*
 * A stop whose deadline passes hands the running workflows back: the
 * executor owns nothing, its row is STOPPED, the interrupted execution is
 * not counted, and another worker finishes them without running a
 * completed step again. With time enough, the stopping worker finishes
 * its running workflows itself and claims nothing new meanwhile.
 */
static void test_graceful_stop(void **state)
{
    (void)state;
    char run[24], pid[24];

    /* A short deadline: the four running workflows are handed back. */
    proc *a = spawn(&(wopts){.executor = "stop-a", .queue = "stop", .workers = 4, .lease_ms = 10000,
                             .stop_ms = 300});
    wait_live(a);
    enqueue("stop", "stop-short-", 1, 4, 7, 400, 0);
    wait_sql("stop-a to be two steps into each of its four workflows", 30000, 4,
             "SELECT count(*) FROM cairn.workflow_status s WHERE s.queue = 'stop' AND s.status = 'PENDING'"
             "   AND s.executor_id = 'stop-a'"
             "   AND (SELECT count(*) FROM cairn.steps st WHERE st.workflow_id = s.id) >= 2",
             NULL);
    stop_worker(a, 30000);
    if (!log_contains(a, "stopped timed out"))
        fail_msg("stop-a: cairn_stop() with 300 ms left should have returned CAIRN_ETIMEDOUT (see %s)", a->log);
    if (q_long("SELECT count(*) FROM cairn.workflow_status WHERE status = 'PENDING' AND executor_id = 'stop-a'", NULL))
        fail_msg("stop-a still owns PENDING workflows after its stop");
    if (q_long("SELECT count(*) FROM cairn.executors WHERE id = 'stop-a' AND state = 'STOPPED'"
               " AND stopped_at IS NOT NULL",
               NULL) != 1)
        fail_msg("stop-a's executor row is not STOPPED after its stop");
    if (q_long("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'stop' AND status = 'ENQUEUED'"
               " AND executor_id IS NULL AND attempts = 0",
               NULL) != 4)
        fail_msg("the four interrupted workflows should be ENQUEUED with their interrupted execution uncounted");
    long recorded = q_long("SELECT count(*) FROM cairn.steps st JOIN cairn.workflow_status s ON s.id = st.workflow_id"
                           " WHERE s.queue = 'stop'",
                           NULL);
    if (recorded >= 4 * 7)
        fail_msg("stop-a recorded all %ld steps: the deadline did not interrupt anything", recorded);

    proc *b = spawn(&(wopts){.executor = "stop-b", .queue = "stop", .workers = 4, .lease_ms = 10000,
                             .stop_ms = 5000});
    wait_sql("stop-b to finish the handed-back workflows", 60000, 4,
             "SELECT count(*) FROM cairn.workflow_status WHERE queue = 'stop' AND status = 'SUCCESS'"
             " AND executor_id = 'stop-b'",
             NULL);
    verify_queue("stop", 4);
    expect_no_violations("stop");
    if (q_long("SELECT count(DISTINCT wf) FROM fleet_exec WHERE wf LIKE 'stop-short-%' AND run = $1::int",
               P(itos(run, b->run))) != 4)
        fail_msg("stop-b should have run the remaining steps of all four workflows");
    stop_worker(b, 30000);

    /* A long deadline: the stopping worker finishes what it runs, and claims nothing more. */
    proc *c = spawn(&(wopts){.executor = "stop-c", .queue = "stop2", .workers = 4, .lease_ms = 10000,
                             .stop_ms = 60000});
    wait_live(c);
    enqueue("stop2", "stop-long-", 1, 2, 5, 500, 0);
    wait_sql("stop-c to be a step into both workflows", 30000, 2,
             "SELECT count(*) FROM cairn.workflow_status s WHERE s.queue = 'stop2' AND s.status = 'PENDING'"
             "   AND s.executor_id = 'stop-c'"
             "   AND (SELECT count(*) FROM cairn.steps st WHERE st.workflow_id = s.id) >= 1",
             NULL);
    kill(c->pid, SIGTERM);
    wait_log(c, "stopping", 10000);
    /* Give the stop a moment to begin, then offer new work: a stopping executor must not take it. */
    sleep_ms(300);
    enqueue("stop2", "stop-late-", 1, 1, 3, 10, 0);
    expect_clean_exit(c, 60000);
    if (!log_contains(c, "stopped success"))
        fail_msg("stop-c: cairn_stop() with a long deadline should have returned CAIRN_OK (see %s)", c->log);
    if (q_long("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'stop2' AND id LIKE 'stop-long-%'"
               " AND status = 'SUCCESS' AND executor_id = 'stop-c' AND attempts = 1",
               NULL) != 2)
        fail_msg("stop-c should have finished both running workflows itself, in one execution each");
    if (q_long("SELECT count(*) FROM fleet_exec WHERE wf LIKE 'stop-long-%' AND run <> $1::int",
               P(itos(run, c->run))) != 0 ||
        q_long("SELECT count(*) FROM fleet_ledger WHERE wf LIKE 'stop-long-%' AND run <> $1::int",
               P(itos(run, c->run))) != 0)
        fail_msg("some step of the long workflows ran outside stop-c");
    if (q_long("SELECT count(*) FROM cairn.workflow_status WHERE id = 'stop-late-1' AND status = 'ENQUEUED'"
               " AND attempts = 0",
               NULL) != 1)
        fail_msg("stop-late-1, enqueued while stop-c was stopping, should still be ENQUEUED and never claimed");
    if (q_long("SELECT count(*) FROM cairn.executors WHERE id = 'stop-c' AND state = 'STOPPED' AND pid = $1::int",
               P(itos(pid, c->pid))) != 1)
        fail_msg("stop-c's executor row is not STOPPED");

    /* Another worker takes what was left in the queue. */
    proc *d = spawn(&(wopts){.executor = "stop-d", .queue = "stop2", .workers = 2, .lease_ms = 10000,
                             .stop_ms = 5000});
    wait_sql("stop-d to run stop-late-1", 30000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'stop-late-1' AND status = 'SUCCESS'"
             " AND executor_id = 'stop-d'",
             NULL);
    stop_worker(d, 30000);
    verify_queue("stop2", 3);
    expect_no_violations("stop2");
}

/* ---- a worker paused past its lease ---------------------------------------- */

/*
 * A worker is paused in the middle of a workflow until another adopts it
 * and finishes it. Woken, the paused one must not run another step of it,
 * record anything for it or change its result; it must notice that it was
 * presumed dead, register again, and serve new work.
 */
static void test_paused_worker(void **state)
{
    (void)state;
    char run[24], pid[24];
    proc *p = spawn(&(wopts){.executor = "pause-p", .queue = "pause", .workers = 2, .lease_ms = 1500,
                             .stop_ms = 5000});
    wait_live(p);
    /* Steps: mix, post, mix, mix, post, mix, each mix sleeping a second. */
    enqueue("pause", "pause-", 1, 1, 6, 1000, 0);
    wait_sql("pause-p to claim pause-1", 30000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'pause-1' AND status = 'PENDING'"
             " AND executor_id = 'pause-p'",
             NULL);
    proc *q = spawn(&(wopts){.executor = "pause-q", .queue = "pause", .workers = 2, .lease_ms = 1500,
                             .stop_ms = 5000});
    wait_live(q);
    /* Pause it inside step 3, which sleeps a second: past the transactional step 2. */
    wait_sql("pause-p to enter step 3", 30000, 1,
             "SELECT count(*) FROM fleet_exec WHERE wf = 'pause-1' AND step = 3 AND run = $1::int",
             P(itos(run, p->run)));
    kill(p->pid, SIGSTOP);
    p->state = P_PAUSED;
    char paused_at[64], old_instance[64];
    q_text("SELECT clock_timestamp()::text", NULL, paused_at, sizeof paused_at);
    q_text("SELECT instance FROM cairn.executors WHERE id = 'pause-p'", NULL, old_instance, sizeof old_instance);

    wait_sql("pause-p to be presumed dead", 30000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'pause-p' AND state = 'DEAD' AND adopted_by = 'pause-q'",
             NULL);
    long adopt_ms = q_long("SELECT (extract(epoch FROM stopped_at - $1::timestamptz) * 1000)::bigint"
                           "  FROM cairn.executors WHERE id = 'pause-p'",
                           P(paused_at));
    print_message("paused worker: presumed dead %ld ms after SIGSTOP (lease 1500 ms)\n", adopt_ms);
    wait_sql("pause-q to finish pause-1", 60000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'pause-1' AND status = 'SUCCESS'"
             " AND executor_id = 'pause-q'",
             NULL);
    char before[512], after[512], cont_at[64];
    const char *snapshot = "SELECT status || ' ' || executor_id || ' ' || attempts || ' ' || updated_at || ' '"
                           "       || output::text FROM cairn.workflows WHERE id = 'pause-1'";
    q_text(snapshot, NULL, before, sizeof before);

    q_text("SELECT clock_timestamp()::text", NULL, cont_at, sizeof cont_at);
    kill(p->pid, SIGCONT);
    p->state = P_RUNNING;
    wait_sql("pause-p to register again under a new instance", 30000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'pause-p' AND state = 'LIVE' AND pid = $1::int"
             " AND instance <> $2",
             P(itos(pid, p->pid), old_instance));
    wait_log(p, "was presumed dead", 5000);
    /* Its stale run was in step 3's one-second sleep; let it reach its next step and give up. */
    sleep_ms(2000 * SLOW);

    q_text(snapshot, NULL, after, sizeof after);
    if (strcmp(before, after) != 0)
        fail_msg("pause-1 changed after the paused worker woke: was '%s', now '%s'", before, after);
    if (q_long("SELECT count(*) FROM fleet_exec WHERE wf = 'pause-1' AND run = $1::int AND at > $2::timestamptz",
               P(itos(run, p->run), cont_at)) != 0)
        fail_msg("the woken worker started a step of pause-1 after it had been adopted");
    if (q_long("SELECT count(*) FROM fleet_ledger WHERE wf = 'pause-1' AND run = $1::int AND step = 2",
               P(itos(run, p->run))) != 1 ||
        q_long("SELECT count(*) FROM fleet_ledger WHERE wf = 'pause-1' AND run = $1::int AND step = 5",
               P(itos(run, q->run))) != 1)
        fail_msg("pause-1's ledger should hold step 2 by the paused worker and step 5 by its adopter");
    verify_queue("pause", 1);
    expect_no_violations("pause");

    /* Woken and registered again, it serves new work (once the adopter is gone, it is the only one). */
    stop_worker(q, 30000);
    enqueue("pause", "pause-new-", 1, 3, 3, 20, 0);
    wait_sql("pause-p to run new work", 30000, 3,
             "SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'pause-new-%' AND status = 'SUCCESS'"
             " AND executor_id = 'pause-p'",
             NULL);
    stop_worker(p, 30000);
    verify_queue("pause", 4);
}

/*
 * A worker is paused inside a transactional step, with the step's
 * transaction open and its ledger row written. Another adopts the workflow,
 * commits the same step and finishes the workflow. Woken, the paused one
 * goes on to commit: the checkpoint's primary key must roll its
 * transaction back, ledger row and all, and the workflow keeps the
 * adopter's result.
 */
static void test_paused_in_transaction(void **state)
{
    (void)state;
    char run[24], pid[24], app[32];
    proc *p = spawn(&(wopts){.executor = "ptx-p", .queue = "ptx", .workers = 2, .lease_ms = 1500,
                             .stop_ms = 5000});
    wait_live(p);
    /* Steps: mix, post (holding its transaction open for 2 s), mix. */
    enqueue_tx("ptx", "ptx-", 1, 1, 3, 100, 0, 2000);
    wait_sql("ptx-p to claim ptx-1", 30000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'ptx-1' AND status = 'PENDING'"
             " AND executor_id = 'ptx-p'",
             NULL);
    proc *q = spawn(&(wopts){.executor = "ptx-q", .queue = "ptx", .workers = 2, .lease_ms = 1500,
                             .stop_ms = 5000});
    wait_live(q);
    wait_sql("ptx-p to be inside the transactional step", 30000, 1,
             "SELECT count(*) FROM fleet_exec WHERE wf = 'ptx-1' AND step = 2 AND run = $1::int",
             P(itos(run, p->run)));
    kill(p->pid, SIGSTOP);
    p->state = P_PAUSED;
    snprintf(app, sizeof app, "fleet-run%d", p->run);
    /* Its step's transaction waits for the client: "idle in transaction", with the ledger row written. */
    const char *open_tx = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                          " AND state LIKE 'idle in transaction%' AND backend_xid IS NOT NULL";
    if (q_long(open_tx, P(app)) != 1)
        fail_msg("the paused worker should have one transaction with writes open (its step's)");
    char old_instance[64];
    q_text("SELECT instance FROM cairn.executors WHERE id = 'ptx-p'", NULL, old_instance, sizeof old_instance);

    wait_sql("ptx-p to be presumed dead", 30000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'ptx-p' AND state = 'DEAD' AND adopted_by = 'ptx-q'",
             NULL);
    wait_sql("ptx-q to finish ptx-1", 60000, 1,
             "SELECT count(*) FROM cairn.workflow_status WHERE id = 'ptx-1' AND status = 'SUCCESS'"
             " AND executor_id = 'ptx-q'",
             NULL);
    if (q_long(open_tx, P(app)) != 1)
        fail_msg("the paused worker's transaction should still be open when its adopter has finished");
    char before[512], after[512];
    const char *snapshot = "SELECT status || ' ' || executor_id || ' ' || attempts || ' ' || updated_at || ' '"
                           "       || output::text FROM cairn.workflows WHERE id = 'ptx-1'";
    q_text(snapshot, NULL, before, sizeof before);

    kill(p->pid, SIGCONT);
    p->state = P_RUNNING;
    /* Its transaction ends (rolled back by the checkpoint's key) once its sleep is over. */
    wait_sql("the woken worker's transaction to end", 30000, 0, open_tx, P(app));
    wait_sql("ptx-p to register again", 30000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'ptx-p' AND state = 'LIVE' AND pid = $1::int"
             " AND instance <> $2",
             P(itos(pid, p->pid), old_instance));
    sleep_ms(500 * SLOW);
    q_text(snapshot, NULL, after, sizeof after);
    if (strcmp(before, after) != 0)
        fail_msg("ptx-1 changed after the paused worker woke: was '%s', now '%s'", before, after);
    if (q_long("SELECT count(*) FROM fleet_ledger WHERE wf = 'ptx-1' AND run = $1::int", P(itos(run, p->run))) != 0)
        fail_msg("the woken worker's transactional step committed although the adopter had recorded it");
    if (q_long("SELECT count(*) FROM fleet_exec WHERE wf = 'ptx-1' AND step = 3 AND run = $1::int",
               P(itos(run, p->run))) != 0)
        fail_msg("the woken worker went on to step 3 of a workflow it had lost");
    verify_queue("ptx", 1);
    stop_worker(q, 30000);
    stop_worker(p, 30000);
}

/* ---- an executor ID taken over ------------------------------------------------ */

/*
 * A second process starts under the executor ID of a running one. It
 * takes the ID's workflows over at once (its start resumes them, without
 * waiting for any lease), and the first, told by its next heartbeat that
 * the ID was taken, stops its runs and claims nothing more; its stop
 * does not touch the successor's row or work.
 */
static void test_executor_id_taken(void **state)
{
    (void)state;
    char run[24], pid[24];
    proc *t1 = spawn(&(wopts){.executor = "take-1", .queue = "take", .workers = 3, .lease_ms = 15000,
                              .stop_ms = 5000});
    wait_live(t1);
    /* Nine steps of 800 ms: long enough to be running when the second process starts. */
    enqueue("take", "take-", 1, 2, 9, 800, 0);
    wait_sql("take-1 to be a step into both workflows", 30000, 2,
             "SELECT count(*) FROM cairn.workflow_status s WHERE s.queue = 'take' AND s.status = 'PENDING'"
             "   AND s.executor_id = 'take-1'"
             "   AND (SELECT count(*) FROM cairn.steps st WHERE st.workflow_id = s.id) >= 1",
             NULL);

    double t0 = now_s();
    proc *t2 = spawn(&(wopts){.executor = "take-1", .queue = "take", .workers = 3, .lease_ms = 15000,
                              .stop_ms = 5000});
    wait_sql("the second take-1 to resume both workflows", 30000, 2,
             "SELECT count(DISTINCT wf) FROM fleet_exec WHERE wf LIKE 'take-%' AND run = $1::int",
             P(itos(run, t2->run)));
    double resumed_s = now_s() - t0;
    print_message("executor ID taken over: the new process ran steps of both workflows %.2f s after it was "
                  "started (lease 15 s)\n",
                  resumed_s);
    if (resumed_s > 10.0 * SLOW)
        fail_msg("the new process took %.1f s to resume the workflows of its executor ID", resumed_s);
    wait_sql("the second take-1 to own the executor row", 1000, 1,
             "SELECT count(*) FROM cairn.executors WHERE id = 'take-1' AND state = 'LIVE' AND pid = $1::int",
             P(itos(pid, t2->pid)));
    /* Heartbeats go out every 3 s (lease / 5). */
    wait_log(t1, "took over its workflows", 20000);

    /* The first process, told its ID was taken, claims nothing: new work goes to the second only. */
    enqueue("take", "take-new-", 1, 4, 3, 50, 0);
    wait_sql("all take workflows to finish", 60000, 6,
             "SELECT count(*) FROM cairn.workflow_status WHERE queue = 'take' AND status = 'SUCCESS'", NULL);
    if (q_long("SELECT count(*) FROM fleet_exec WHERE wf LIKE 'take-new-%' AND run = $1::int",
               P(itos(run, t1->run))) +
            q_long("SELECT count(*) FROM fleet_ledger WHERE wf LIKE 'take-new-%' AND run = $1::int",
                   P(itos(run, t1->run))) !=
        0)
        fail_msg("the process whose executor ID was taken over still ran new work");

    /* Its graceful stop must leave the successor's row alone. */
    stop_worker(t1, 30000);
    if (q_long("SELECT count(*) FROM cairn.executors WHERE id = 'take-1' AND state = 'LIVE' AND pid = $1::int",
               P(itos(pid, t2->pid))) != 1)
        fail_msg("stopping the superseded process changed its successor's executor row");
    if (log_contains(t1, "went back to its queue"))
        fail_msg("the superseded process handed a workflow of its successor back to its queue (see %s)", t1->log);
    verify_queue("take", 6);
    stop_worker(t2, 30000);
    if (q_long("SELECT count(*) FROM cairn.executors WHERE id = 'take-1' AND state = 'STOPPED'", NULL) != 1)
        fail_msg("take-1 is not STOPPED after its current process stopped");
}

/* ---- the fleet under chaos ---------------------------------------------------- */

typedef struct chaos_cfg {
    int workflows, workers, threads, lease_ms, chaos_s, sleep_ms;
} chaos_cfg;

/* A worker that may be killed or paused: running, registered and heartbeating now. */
static int healthy(const proc *p, int lease_ms)
{
    char pid[24], half[24];
    return p->state == P_RUNNING && !p->zombie_pending &&
           q_long("SELECT count(*) FROM cairn.executors WHERE id = $1 AND state = 'LIVE' AND pid = $2::int"
                  "   AND heartbeat_at > now() - $3::int * interval '1 millisecond'",
                  P(p->executor, itos(pid, p->pid), itos(half, lease_ms / 2))) == 1;
}

static void record_event(const proc *p, const char *kind)
{
    PQclear(query("INSERT INTO fleet_events (executor, kind, at) VALUES ($1, $2, clock_timestamp())",
                  P(p->executor, kind)));
}

/*
 * Wakes paused workers whose executor has been presumed dead (their lease
 * ran out and their workflows went back to the queue), so that they wake
 * as zombies. Returns how many it woke.
 */
static int wake_zombies(void)
{
    int woke = 0;
    for (int i = 0; i < nprocs; i++) {
        proc *p = &procs[i];
        if (p->state != P_PAUSED ||
            q_long("SELECT count(*) FROM cairn.executors WHERE id = $1 AND state = 'DEAD'", P(p->executor)) != 1)
            continue;
        PQclear(query("UPDATE fleet_events ev SET adopted_at = e.stopped_at FROM cairn.executors e"
                      " WHERE e.id = ev.executor AND ev.executor = $1 AND ev.kind = 'pause' AND ev.adopted_at IS NULL",
                      P(p->executor)));
        kill(p->pid, SIGCONT);
        p->state = P_RUNNING;
        p->zombie_pending = 1;
        woke++;
    }
    return woke;
}

/* Counts the zombies that have re-registered (a new instance) and logged that they were presumed dead. */
static int check_zombies(void)
{
    int noticed = 0;
    for (int i = 0; i < nprocs; i++) {
        proc *p = &procs[i];
        char pid[24];
        if (!p->zombie_pending || p->state != P_RUNNING)
            continue;
        if (q_long("SELECT count(*) FROM cairn.executors WHERE id = $1 AND state = 'LIVE' AND pid = $2::int"
                   " AND instance <> $3",
                   P(p->executor, itos(pid, p->pid), p->instance)) != 1)
            continue;
        if (!log_contains(p, "was presumed dead"))
            fail_msg("zombie %s registered again without logging that it was presumed dead (see %s)", p->executor,
                     p->log);
        p->zombie_pending = 0;
        noticed++;
    }
    return noticed;
}

static long unfinished(void)
{
    return q_long("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'chaos'"
                  " AND status IN ('ENQUEUED', 'PENDING')",
                  NULL);
}

static void print_latencies(const char *kind, const char *what)
{
    PGresult *r = query("SELECT count(*), count(ms), round(min(ms)), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)),"
                        "       round(max(ms))"
                        "  FROM (SELECT extract(epoch FROM adopted_at - at) * 1000 AS ms FROM fleet_events"
                        "         WHERE kind = $1) e",
                        P(kind));
    print_message("chaos: %s: %s events, %s adopted; time to adoption min %s ms, median %s ms, max %s ms\n", what,
                  PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 3),
                  PQgetvalue(r, 0, 4));
    PQclear(r);
}

/*
 * Several workers serve one queue of thousands of workflows while the test
 * SIGKILLs random workers (and starts new ones under new executor IDs in
 * their place) and SIGSTOPs others, waking them only once their lease has
 * run out and their work has been adopted; more workflows are enqueued
 * whenever the backlog runs low, so that the chaos always hits work in
 * flight however fast the machine is. Then the fleet drains. Every
 * workflow must succeed with its predicted value, each transactional step
 * must have committed exactly once, the zombies must have noticed, and no
 * killed executor may still count as LIVE.
 */
static void test_chaos(void **state)
{
    (void)state;
    chaos_cfg cfg = {
        .workflows = env_int("FLEET_WORKFLOWS", DEFAULT_WORKFLOWS),
        .workers = env_int("FLEET_WORKERS", 5),
        .threads = env_int("FLEET_THREADS", 6),
        .lease_ms = env_int("FLEET_LEASE_MS", 2000),
        .chaos_s = env_int("FLEET_CHAOS_S", DEFAULT_CHAOS_S),
        .sleep_ms = env_int("FLEET_SLEEP_MS", 100),
    };
    if (cfg.workers < 3 || cfg.workflows < 1 || cfg.threads < 1 || cfg.lease_ms < 100)
        fail_msg("FLEET_WORKERS must be at least 3, FLEET_WORKFLOWS and FLEET_THREADS positive, FLEET_LEASE_MS >= 100");
    const char *seed_env = getenv("FLEET_SEED");
    unsigned seed = seed_env && *seed_env ? (unsigned)strtoul(seed_env, NULL, 10)
                                          : (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
    rng = seed ? seed : 1;
    print_message("chaos: %d workflows to begin with, %d workers x %d threads, lease %d ms, %d s of chaos, steps sleep 0..%d ms; "
                  "seed %u (FLEET_SEED=%u repeats the choices)\n",
                  cfg.workflows, cfg.workers, cfg.threads, cfg.lease_ms, cfg.chaos_s, 2 * cfg.sleep_ms, seed, seed);

    enqueue("chaos", "chaos-", 1, cfg.workflows, 3, cfg.sleep_ms, 1);
    int next_id = 0;
    char name[64];
    for (int i = 0; i < cfg.workers; i++) {
        snprintf(name, sizeof name, "chaos-w%d", ++next_id);
        spawn(&(wopts){.executor = name, .queue = "chaos", .workers = cfg.threads, .lease_ms = cfg.lease_ms,
                       .stop_ms = 10000});
    }
    int first = nprocs - cfg.workers;
    for (int i = first; i < nprocs; i++)
        wait_live(&procs[i]);

    double t0 = now_s(), end = t0 + cfg.chaos_s;
    int kills = 0, pauses = 0, zombies = 0, noticed = 0, total = cfg.workflows;
    long left = unfinished();
    while (now_s() < end) {
        sleep_ms(300 + (int)(rng_next() % 700));
        check_procs();
        /*
         * A fast machine could finish the work before the chaos ends: keep a
         * backlog, in bulk again, while there is time for kills to hit it.
         */
        int batch = cfg.workers * cfg.threads * 8;
        if (end - now_s() > 2.0 * cfg.lease_ms / 1000.0 &&
            q_long("SELECT count(*) FROM cairn.workflow_status WHERE queue = 'chaos' AND status = 'ENQUEUED'", NULL) <
                batch / 2) {
            enqueue("chaos", "chaos-", total + 1, batch, 3, cfg.sleep_ms, 1);
            total += batch;
        }
        zombies += wake_zombies();
        noticed += check_zombies();

        proc *cand[MAX_PROCS];
        int ncand = 0, running = 0, paused = 0;
        for (int i = first; i < nprocs; i++) {
            running += procs[i].state == P_RUNNING;
            paused += procs[i].state == P_PAUSED;
            if (healthy(&procs[i], cfg.lease_ms))
                cand[ncand++] = &procs[i];
        }
        unsigned dice = rng_next() % 100;
        if (ncand == 0 || running < 3) {
            /* Too few left to adopt anything reliably: let the fleet recover. */
        } else if (dice < 45) {
            proc *p = cand[rng_next() % (unsigned)ncand];
            kill(p->pid, SIGKILL);
            record_event(p, "kill");
            kill_worker(p);
            kills++;
            snprintf(name, sizeof name, "chaos-w%d", ++next_id);
            spawn(&(wopts){.executor = name, .queue = "chaos", .workers = cfg.threads, .lease_ms = cfg.lease_ms,
                           .stop_ms = 10000});
        } else if (dice < 80 && paused < 2) {
            proc *p = cand[rng_next() % (unsigned)ncand];
            q_text("SELECT instance FROM cairn.executors WHERE id = $1", P(p->executor), p->instance,
                   sizeof p->instance);
            kill(p->pid, SIGSTOP);
            record_event(p, "pause");
            p->state = P_PAUSED;
            pauses++;
        }
        left = unfinished();
    }
    double chaos_s = now_s() - t0;
    print_message("chaos: %.1f s of chaos, %d kills, %d pauses, %d workflows (%d more enqueued during the chaos), "
                  "%ld unfinished when it ended\n",
                  chaos_s, kills, pauses, total, total - cfg.workflows, left);

    /* The drain: wake the paused workers as zombies, and let the rest of the work finish. */
    double drain_deadline = now_s() + 180.0 * SLOW;
    long last_left = -1;
    double last_progress = now_s();
    for (;;) {
        check_procs();
        zombies += wake_zombies();
        noticed += check_zombies();
        int paused = 0;
        for (int i = first; i < nprocs; i++)
            paused += procs[i].state == P_PAUSED;
        left = unfinished();
        if (left == 0 && paused == 0)
            break;
        if (left != last_left) {
            last_left = left;
            last_progress = now_s();
        }
        if (now_s() > drain_deadline || now_s() - last_progress > 60.0 * SLOW)
            fail_msg("the fleet did not drain: %ld workflows unfinished, %d workers paused", left, paused);
        sleep_ms(100);
    }
    double drained_s = now_s() - t0;
    double zdeadline = now_s() + 30.0 * SLOW;
    while (noticed < zombies) {
        if (now_s() > zdeadline)
            fail_msg("%d of %d zombies did not register again after waking", zombies - noticed, zombies);
        check_procs();
        noticed += check_zombies();
        sleep_ms(50);
    }

    /* Every killed executor is presumed dead by now, or soon (a live one heartbeats every lease / 5). */
    wait_sql("every killed executor to be presumed dead", 30000, 0,
             "SELECT count(*) FROM fleet_events ev JOIN cairn.executors e ON e.id = ev.executor"
             " WHERE ev.kind = 'kill' AND e.state <> 'DEAD'",
             NULL);
    PQclear(query("UPDATE fleet_events ev SET adopted_at = e.stopped_at FROM cairn.executors e"
                  " WHERE e.id = ev.executor AND ev.kind = 'kill'",
                  NULL));

    for (int i = first; i < nprocs; i++)
        if (procs[i].state != P_GONE)
            stop_worker(&procs[i], 60000);

    verify_queue("chaos", total);
    if (unfinished() != 0)
        fail_msg("workflows were left ENQUEUED or PENDING in the chaos queue");
    char live[512];
    q_text("SELECT count(*) || coalesce(' (' || string_agg(id || ' ' || state, ', ') || ')', '')"
           "  FROM cairn.executors WHERE id LIKE 'chaos-w%' AND state = 'LIVE'",
           NULL, live, sizeof live);
    if (strncmp(live, "0", 1) != 0 || live[1] != '\0')
        fail_msg("executors still LIVE after the fleet was stopped: %s", live);
    for (int i = first; i < nprocs; i++) {
        const proc *p = &procs[i];
        char st[32];
        q_text("SELECT state FROM cairn.executors WHERE id = $1", P(p->executor), st, sizeof st);
        if (strcmp(st, p->killed ? "DEAD" : "STOPPED") != 0)
            fail_msg("executor %s (%s) is %s, expected %s", p->executor, p->killed ? "killed" : "stopped", st,
                     p->killed ? "DEAD" : "STOPPED");
    }

    print_latencies("kill", "SIGKILL");
    print_latencies("pause", "SIGSTOP");
    /*
     * A step body may run again when executions overlap: a zombie's step
     * that was under way when it was paused, or was past the fence, goes on
     * when it wakes while its adopter runs the same step. The overlap of an
     * ordinary step is allowed (its later checkpoint is discarded); that of
     * a transactional step must roll back, which the ledger check above
     * proved. These figures show how often the chaos produced either.
     */
    PGresult *r = query("SELECT count(*) FILTER (WHERE attempts > 1), max(attempts),"
                        "       (SELECT count(*) FROM fleet_exec e WHERE e.wf LIKE 'chaos-%'),"
                        "       (SELECT count(*) FROM fleet_exec e WHERE e.wf LIKE 'chaos-%' AND e.kind <> 'RUN'"
                        "           AND e.step <> 2),"
                        "       (SELECT count(*) FROM fleet_exec e WHERE e.wf LIKE 'chaos-%' AND e.kind <> 'RUN'"
                        "           AND e.step = 2)"
                        "  FROM cairn.workflow_status WHERE queue = 'chaos'",
                        NULL);
    long handed_over = atol(PQgetvalue(r, 0, 0));
    print_message("chaos: drained %.1f s after the start; %ld workflows ran in more than one execution (at most %s); "
                  "step bodies ran %s times for %d steps; %s ordinary and %s transactional step bodies started after "
                  "another execution had recorded the step; %d zombies woke and registered again\n",
                  drained_s, handed_over, PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), 3 * total, PQgetvalue(r, 0, 3),
                  PQgetvalue(r, 0, 4), zombies);
    PQclear(r);
    if (kills + pauses > 0 && handed_over == 0)
        fail_msg("%d kills and %d pauses but no workflow was ever adopted: the chaos missed the work", kills, pauses);
}

/* ---- main --------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    t_fresh_db("cairn_test_fleet");
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = "fleet-test";
    if (cairn_open(&api, &o) != CAIRN_OK) {
        fprintf(stderr, "cairn_open: %s\n", cairn_errmsg(api));
        return -1;
    }
    db = PQconnectdb(t_db());
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to %s: %s", t_db(), PQerrorMessage(db));
        return -1;
    }
    PGresult *r = PQexec(db, tables_ddl);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "creating the test tables: %s", PQerrorMessage(db));
    PQclear(r);

    const char *bin = getenv("CAIRN_TEST_BIN_DIR");
    snprintf(log_dir, sizeof log_dir, "%s/fleet-logs", bin && *bin ? bin : ".");
    if (mkdir(log_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s: %s\n", log_dir, strerror(errno));
        return -1;
    }
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kill_leftovers();
    PQfinish(db);
    cairn_close(api);
    return 0;
}

/* After each test, pass or fail, no worker of it may go on running. */
static int test_teardown(void **state)
{
    (void)state;
    kill_leftovers();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_executors_json, test_teardown),
        cmocka_unit_test_teardown(test_graceful_stop, test_teardown),
        cmocka_unit_test_teardown(test_paused_worker, test_teardown),
        cmocka_unit_test_teardown(test_paused_in_transaction, test_teardown),
        cmocka_unit_test_teardown(test_executor_id_taken, test_teardown),
        cmocka_unit_test_teardown(test_chaos, test_teardown),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
