/*
 * Guarantee 2 under real crashes: a step's checkpoint is durable before the
 * workflow moves on, a workflow resumes after its process is SIGKILLed
 * anywhere, and a step that completed never runs again.
 *
 * The workflows run in crash_worker (see crash_worker.c), a separate
 * program that records every execution of a step body in the table
 * `ledger`, outside cairn and outside the step's checkpoint. This file
 * kills that program at chosen points and at random moments, starts it
 * again with the same executor ID so that it resumes its own workflows, and
 * then compares the ledger and cairn's tables with what the guarantee
 * allows. The random delays are printed with their seed; CRASH_SEED=<seed>
 * repeats them.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

#ifndef CRASH_WORKER
#error "CRASH_WORKER must name the crash_worker program"
#endif

#define VALUE_MOD 1000000007LL

/* The deterministic cases: one workflow of DET_STEPS steps per crash point. */
#define DET_STEPS 5

/*
 * The random kills: rounds of RANDOM_WORKFLOWS workflows of RANDOM_STEPS
 * steps each, until at least RANDOM_MIN_KILLS kills have happened.
 */
#define RANDOM_MIN_KILLS 150
#define RANDOM_MAX_ROUNDS 200
#define RANDOM_WORKFLOWS 20
#define RANDOM_STEPS 8
#define RANDOM_SLEEP_MS 10      /* each step sleeps 0..RANDOM_SLEEP_MS ms */
#define RANDOM_MIN_DELAY_MS 5   /* a worker is killed this long after it starts ... */
#define RANDOM_MAX_DELAY_MS 80  /* ... at most */
#define RANDOM_MAX_KILLS 300    /* per round: give up (and fail) after this many kills */
#define RANDOM_MAX_ATTEMPTS 1000 /* every restart is an execution; never dead-letter here */

static PGconn *db; /* the test's own connection to the test database */

static const char *ledger_ddl =
    "CREATE TABLE ledger ("
    "  seq       bigserial PRIMARY KEY,"
    "  kind      text NOT NULL,"
    "  wf        text NOT NULL,"
    "  step      int  NOT NULL,"
    "  execution int  NOT NULL,"
    "  attempt   int  NOT NULL,"
    "  run       int  NOT NULL,"
    "  pid       int  NOT NULL,"
    "  at        timestamptz NOT NULL DEFAULT clock_timestamp());"
    /* The worker processes (by run number) this test SIGKILLed. */
    "CREATE TABLE killed (run int PRIMARY KEY);";

/* ---- queries ------------------------------------------------------------ */

/* Runs sql with up to two text parameters (NULL: fewer); fails the test if the statement fails. */
static PGresult *query(const char *sql, const char *p1, const char *p2)
{
    const char *vals[2] = {p1, p2};
    int n = p2 ? 2 : p1 ? 1 : 0;
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    return r;
}

/* The first column of the first row as a long; 0 for no row or NULL. */
static long q_long(const char *sql, const char *p1, const char *p2)
{
    PGresult *r = query(sql, p1, p2);
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* The first column of the first row as text into buf; "" for no row, "<null>" for NULL. */
static void q_text(const char *sql, const char *p1, const char *p2, char *buf, size_t len)
{
    PGresult *r = query(sql, p1, p2);
    if (PQntuples(r) == 0)
        snprintf(buf, len, "%s", "");
    else
        snprintf(buf, len, "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    PQclear(r);
}

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

/*
 * Waits until no other client backend is connected to the test database.
 * A backend whose client was killed finishes the statement it was running
 * before it notices; waiting for it means a checkpoint or ledger row in
 * flight at the kill has landed (or not) before the next worker starts, so
 * the next worker's view of cairn.steps is final.
 */
static void wait_for_backends(void)
{
    for (int i = 0; i < 10000; i++) {
        if (q_long("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
                   NULL, NULL) == 0)
            return;
        sleep_ms(1);
    }
    fail_msg("backends of a dead worker are still connected after 10 s");
}

/* ---- the worker process ------------------------------------------------- */

typedef struct worker_cfg {
    const char *executor;
    const char *crash_at; /* CRASH_AT, or NULL for none */
    int steps;
    int seed;             /* seed of the first ID; the i-th gets seed + i */
    int sleep_ms;
    int workers;
    int max_attempts;     /* 0: the library's default */
    int nids;
    const char *const *ids;
} worker_cfg;

/*
 * Forks and execs crash_worker; *out_fd receives the read end of its
 * stdout and *run the number that names the process in the ledger (pids
 * may be reused over the hundreds of processes the test starts; run
 * numbers are not).
 */
static pid_t spawn_worker(const worker_cfg *c, int *out_fd, int *run)
{
    static int last_run;
    *run = ++last_run;
    char run_s[16], steps[16], seed[16], sleep_ms[16], workers[16], max_attempts[16];
    snprintf(run_s, sizeof run_s, "%d", *run);
    snprintf(steps, sizeof steps, "%d", c->steps);
    snprintf(seed, sizeof seed, "%d", c->seed);
    snprintf(sleep_ms, sizeof sleep_ms, "%d", c->sleep_ms);
    snprintf(workers, sizeof workers, "%d", c->workers);
    snprintf(max_attempts, sizeof max_attempts, "%d", c->max_attempts);
    const char *argv[64] = {CRASH_WORKER,
                            "--db", t_db(),
                            "--executor", c->executor,
                            "--run", run_s,
                            "--steps", steps,
                            "--seed", seed,
                            "--sleep-ms", sleep_ms,
                            "--workers", workers,
                            "--max-attempts", max_attempts,
                            "--timeout-ms", "60000"};
    int argc = 19;
    assert_true(c->nids > 0 && argc + c->nids < 64);
    for (int i = 0; i < c->nids; i++)
        argv[argc++] = c->ids[i];
    argv[argc] = NULL;

    int fds[2];
    if (pipe(fds) != 0)
        fail_msg("pipe: %s", strerror(errno));
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        if (c->crash_at)
            setenv("CRASH_AT", c->crash_at, 1);
        else
            unsetenv("CRASH_AT");
        execv(CRASH_WORKER, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", CRASH_WORKER, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

/*
 * Appends what fd delivers to buf (*n bytes so far, NUL-terminated; what
 * does not fit is dropped) until buf holds `marker`, the writer closes
 * fd, or timeout_ms pass (negative: no limit). Returns 1 once marker is
 * there.
 */
static int read_until(int fd, char *buf, size_t len, size_t *n, const char *marker, int timeout_ms)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    for (;;) {
        if (marker && strstr(buf, marker))
            return 1;
        int wait = -1;
        if (timeout_ms >= 0) {
            double left = deadline - now_s();
            wait = left > 0 ? (int)(left * 1000) + 1 : 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, wait);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready <= 0)
            return 0;
        char tmp[512];
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

/* Reads fd to its end into buf and closes it. */
static void read_all(int fd, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    read_until(fd, buf, len, &n, NULL, -1);
    close(fd);
}

static int wait_pid(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    return status;
}

/* Runs the worker to its end; returns its wait status and its stdout in out. */
static int run_worker(const worker_cfg *c, char *out, size_t outlen)
{
    int fd, run;
    pid_t pid = spawn_worker(c, &fd, &run);
    read_all(fd, out, outlen);
    int status = wait_pid(pid);
    wait_for_backends();
    return status;
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

static int killed_by_sigkill(int status)
{
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static void record_kill(int run)
{
    char r[16];
    snprintf(r, sizeof r, "%d", run);
    PQclear(query("INSERT INTO killed (run) VALUES ($1::int)", r, NULL));
}

static void expect_killed(const char *what, int status, const char *out)
{
    char buf[128];
    if (!killed_by_sigkill(status))
        fail_msg("%s: the worker should have died by SIGKILL but %s; its output:\n%s", what,
                 describe_status(status, buf, sizeof buf), out);
}

static void expect_exit0(const char *what, int status, const char *out)
{
    char buf[128];
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: the worker should have exited with status 0 but %s; its output:\n%s", what,
                 describe_status(status, buf, sizeof buf), out);
}

/* ---- what the workflow computes ----------------------------------------- */

/* The value after step `upto` of a workflow with this seed (crash_worker's formula). */
static long long value_after(long long seed, int upto)
{
    long long v = seed;
    for (int k = 1; k <= upto; k++)
        v = (v * 31 + k * seed) % VALUE_MOD;
    return v;
}

/* Checks that wf has exactly `count` checkpoints, for steps 1..count, each with the right value. */
static void expect_checkpoints(const char *wf, long long seed, int count)
{
    PGresult *r = query("SELECT step, output::text FROM cairn.steps WHERE workflow_id = $1 ORDER BY step", wf, NULL);
    int n = PQntuples(r);
    if (n != count) {
        PQclear(r);
        fail_msg("%s: %d checkpoints in cairn.steps, expected %d", wf, n, count);
    }
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"value\":%lld}", value_after(seed, i + 1));
        int step = atoi(PQgetvalue(r, i, 0));
        if (step != i + 1 || strcmp(PQgetvalue(r, i, 1), want) != 0) {
            char got[128];
            snprintf(got, sizeof got, "step %d = %s", step, PQgetvalue(r, i, 1));
            PQclear(r);
            fail_msg("%s: checkpoint %d is '%s', expected step %d = %s", wf, i + 1, got, i + 1, want);
        }
    }
    PQclear(r);
}

/* Checks status (and, when output is not NULL, the output text) of wf in cairn.workflows. */
static void expect_workflow(const char *wf, const char *status, const char *output)
{
    PGresult *r = query("SELECT status, coalesce(output::text, '<null>') FROM cairn.workflows WHERE id = $1", wf,
                        NULL);
    if (PQntuples(r) != 1) {
        PQclear(r);
        fail_msg("%s: not in cairn.workflows", wf);
    }
    char got_status[32], got_output[256];
    snprintf(got_status, sizeof got_status, "%s", PQgetvalue(r, 0, 0));
    snprintf(got_output, sizeof got_output, "%s", PQgetvalue(r, 0, 1));
    PQclear(r);
    if (strcmp(got_status, status) != 0)
        fail_msg("%s: status is %s, expected %s", wf, got_status, status);
    if (output && strcmp(got_output, output) != 0)
        fail_msg("%s: output is %s, expected %s", wf, got_output, output);
}

/*
 * The ledger of one workflow as "step:execution" pairs in step order, e.g.
 * "1:1 2:1 3:1 3:2 4:2": step 3 ran in the first execution and again in
 * the second. Rows recorded as VIOLATION are marked with a '!'.
 */
static void ledger_history(const char *wf, char *buf, size_t len)
{
    q_text("SELECT coalesce(string_agg(step || ':' || execution || CASE WHEN kind = 'RUN' THEN '' ELSE '!' END,"
           " ' ' ORDER BY step, seq), '') FROM ledger WHERE wf = $1",
           wf, NULL, buf, len);
}

static void expect_history(const char *what, const char *wf, const char *want)
{
    char got[1024];
    ledger_history(wf, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: %s: ledger (step:execution) is '%s', expected '%s'", wf, what, got, want);
}

static void expect_no_violations(const char *like)
{
    char n[256];
    q_text("SELECT count(*) || ' (first: ' || coalesce(min(wf || ' step ' || step), '-') || ')'"
           " FROM ledger WHERE kind <> 'RUN' AND wf LIKE $1",
           like, NULL, n, sizeof n);
    if (strncmp(n, "0 ", 2) != 0)
        fail_msg("completed steps ran again (VIOLATION rows in the ledger): %s", n);
}

/* ---- 1. a kill at every point of a five-step workflow ----------------------- */

typedef enum { AT_BEFORE, AT_INSIDE, AT_AFTER, AT_FINISH } crash_where;

/*
 * Kills the worker at one point, checks what had become durable at that
 * moment, resumes the workflow in a new process with the same executor ID
 * and checks that it finished with the right output, each step recorded
 * once, and every step executed once except the one interrupted inside
 * its body, which (its checkpoint never committed) runs exactly twice.
 */
static void crash_case(crash_where where, int k, int seed)
{
    static const char *names[] = {"before", "inside", "after", "finish"};
    char crash_at[32], id[64], executor[64];
    if (where == AT_FINISH)
        snprintf(crash_at, sizeof crash_at, "finish");
    else
        snprintf(crash_at, sizeof crash_at, "%s:%d", names[where], k);
    snprintf(id, sizeof id, "det-%s-%d", names[where], k);
    snprintf(executor, sizeof executor, "exec-%s", id);
    const char *ids[1] = {id};
    worker_cfg c = {.executor = executor, .crash_at = crash_at, .steps = DET_STEPS, .seed = seed, .workers = 2,
                    .nids = 1, .ids = ids};
    char out[4096], what[64];

    snprintf(what, sizeof what, "CRASH_AT=%s", crash_at);
    int status = run_worker(&c, out, sizeof out);
    expect_killed(what, status, out);

    /* What was durable at the kill: the checkpoints of the steps that returned. */
    int committed = where == AT_FINISH ? DET_STEPS : where == AT_AFTER ? k : k - 1;
    int ran = where == AT_FINISH ? DET_STEPS : where == AT_BEFORE ? k - 1 : k;
    expect_checkpoints(id, seed, committed);
    expect_workflow(id, "PENDING", NULL);
    char want[256] = "";
    size_t n = 0;
    for (int s = 1; s <= ran; s++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:1", s > 1 ? " " : "", s);
    expect_history("at the kill", id, want);

    /* Resume in a new process; the rest of the steps run in execution 2. */
    c.crash_at = NULL;
    snprintf(what, sizeof what, "resuming after CRASH_AT=%s", crash_at);
    status = run_worker(&c, out, sizeof out);
    expect_exit0(what, status, out);

    char output[64], line[160];
    snprintf(output, sizeof output, "{\"value\":%lld}", value_after(seed, DET_STEPS));
    snprintf(line, sizeof line, "%s SUCCESS %s\n", id, output);
    if (!strstr(out, line))
        fail_msg("%s: the worker should have printed '%s' but printed:\n%s", what, line, out);
    expect_workflow(id, "SUCCESS", output);
    expect_checkpoints(id, seed, DET_STEPS);
    n = 0;
    for (int s = 1; s <= DET_STEPS; s++) {
        const char *sep = s > 1 ? " " : "";
        if (s <= ran && s <= committed)
            n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:1", sep, s);
        else if (s <= ran) /* ran in execution 1 without a checkpoint: runs again */
            n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:1 %d:2", sep, s, s);
        else
            n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:2", sep, s);
    }
    expect_history("after resuming", id, want);
    long attempts = q_long("SELECT attempts FROM cairn.workflows WHERE id = $1", id, NULL);
    if (attempts != 2)
        fail_msg("%s: attempts is %ld, expected 2 (one crash, one resume)", id, attempts);
}

static void test_kill_at_every_point(void **state)
{
    int seed = 11;
    for (int k = 1; k <= DET_STEPS; k++) {
        crash_case(AT_BEFORE, k, seed++);
        crash_case(AT_INSIDE, k, seed++);
        crash_case(AT_AFTER, k, seed++);
    }
    crash_case(AT_FINISH, 0, seed++);
    expect_no_violations("det-%");
}

/* ---- 2. a workflow that crashes its worker every time is dead-lettered -- */

static void test_dead_letter_after_repeated_crashes(void **state)
{
    const int max_attempts = 3;
    const char *id = "dead-1";
    const char *ids[1] = {id};
    worker_cfg c = {.executor = "exec-dead", .crash_at = "inside:2", .steps = DET_STEPS, .seed = 5, .workers = 2,
                    .max_attempts = max_attempts, .nids = 1, .ids = ids};
    char out[4096], buf[128];

    /* Each run dies inside step 2 until recovery gives up on the workflow. */
    int kills = 0, status = 0;
    for (int run = 1; run <= 10; run++) {
        status = run_worker(&c, out, sizeof out);
        if (!killed_by_sigkill(status))
            break;
        kills++;
    }
    expect_exit0("the run that finds the workflow dead-lettered", status, out);
    if (kills != max_attempts)
        fail_msg("the worker was killed %d times before the workflow was dead-lettered, expected %d (max_attempts)",
                 kills, max_attempts);
    snprintf(buf, sizeof buf, "%s DEAD_LETTER ", id);
    if (!strstr(out, buf))
        fail_msg("the worker should have printed '%s...' but printed:\n%s", buf, out);
    expect_workflow(id, "DEAD_LETTER", "<null>");

    char attempts_json[64], message[512];
    q_text("SELECT error->>'attempts' FROM cairn.workflows WHERE id = $1", id, NULL, attempts_json,
           sizeof attempts_json);
    q_text("SELECT error->>'message' FROM cairn.workflows WHERE id = $1", id, NULL, message, sizeof message);
    if (strcmp(attempts_json, "3") != 0)
        fail_msg("error.attempts is '%s', expected '3'; message: %s", attempts_json, message);
    if (!strstr(message, "interrupted 3 times"))
        fail_msg("error.message '%s' should say the workflow was interrupted 3 times", message);
    /* Step 1 completed once; step 2 ran in each of the three executions and never completed. */
    expect_history("when dead-lettered", id, "1:1 2:1 2:2 2:3");
    expect_checkpoints(id, 5, 1);

    /* A dead-lettered workflow is left for an operator: the next start does not run it. */
    long attempts_before = q_long("SELECT attempts FROM cairn.workflows WHERE id = $1", id, NULL);
    c.crash_at = NULL;
    status = run_worker(&c, out, sizeof out);
    expect_exit0("the run after dead-lettering", status, out);
    if (!strstr(out, buf))
        fail_msg("after dead-lettering the worker should print '%s...' but printed:\n%s", buf, out);
    expect_workflow(id, "DEAD_LETTER", "<null>");
    expect_history("after another start", id, "1:1 2:1 2:2 2:3");
    expect_checkpoints(id, 5, 1);
    long attempts_after = q_long("SELECT attempts FROM cairn.workflows WHERE id = $1", id, NULL);
    if (attempts_after != attempts_before)
        fail_msg("attempts went from %ld to %ld: the dead-lettered workflow was claimed again", attempts_before,
                 attempts_after);
}

/* ---- 3. kills at random moments ----------------------------------------- */

static unsigned rng_next(unsigned *s)
{
    unsigned x = *s;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x ? x : 0x9e3779b9u;
}

/*
 * Starts a worker for the round's workflows and SIGKILLs it after a random
 * delay, over and over, until one run finishes them all (a worker that
 * reports them all finished is not killed, so that a slow exit under a
 * sanitizer's leak check cannot stall the loop). One kill in four
 * counts its delay from the fork, so it may hit the worker while it
 * connects, migrates, claims its workflows or starts them; the others
 * count it from the moment the worker has started its workflows, so that
 * they hit running steps however long a start takes (it is slow under
 * the sanitizers). Returns the number of kills; *reported_started counts
 * those that hit a worker after it had reported its workflows started.
 */
static int kill_until_done(const worker_cfg *c, unsigned *rng, int *reported_started)
{
    int kills = 0;
    /*
     * A machine slower than the delays assume (a sanitizer build, a loaded
     * host) could have every kill land before a single checkpoint commits:
     * after STALL_KILLS kills in a row without a new checkpoint, the delays
     * stretch (up to 2 s), so the round still ends while most kills still
     * hit early moments.
     */
    enum { STALL_KILLS = 8 };
    int stretch = 1, stalled = 0;
    long checkpoints = q_long("SELECT count(*) FROM cairn.steps WHERE workflow_id LIKE 'rand-%'", NULL, NULL);
    for (;;) {
        int fd, run;
        pid_t pid = spawn_worker(c, &fd, &run);
        int delay = RANDOM_MIN_DELAY_MS + (int)(rng_next(rng) % (RANDOM_MAX_DELAY_MS - RANDOM_MIN_DELAY_MS + 1));
        delay *= stretch;
        int from_fork = rng_next(rng) % 4 == 0;
        char out[8192] = "";
        size_t n = 0;
        if (!from_fork)
            read_until(fd, out, sizeof out, &n, "started\n", 30000);
        sleep_ms(delay);
        /* A worker that has awaited all its workflows is left to exit on its own. */
        if (!read_until(fd, out, sizeof out, &n, "finished\n", 0))
            kill(pid, SIGKILL); /* harmless if it already exited: it is not reaped yet */
        read_until(fd, out, sizeof out, &n, NULL, -1);
        close(fd);
        int status = wait_pid(pid);
        wait_for_backends();
        if (killed_by_sigkill(status)) {
            record_kill(run);
            kills++;
            if (strstr(out, "started\n"))
                (*reported_started)++;
            if (kills >= RANDOM_MAX_KILLS)
                fail_msg("the round's workflows were not all finished after %d kills (delays stretched %dx)", kills,
                         stretch);
            long now = q_long("SELECT count(*) FROM cairn.steps WHERE workflow_id LIKE 'rand-%'", NULL, NULL);
            stalled = now == checkpoints ? stalled + 1 : 0;
            checkpoints = now;
            if (stalled >= STALL_KILLS && RANDOM_MAX_DELAY_MS * stretch * 2 <= 2000) {
                stretch *= 2;
                stalled = 0;
                printf("random kills: %d kills in a row left no new checkpoint; kill delays stretched %dx\n",
                       STALL_KILLS, stretch);
            }
            continue;
        }
        expect_exit0("a run that was not killed", status, out);
        return kills;
    }
}

static void test_random_kills(void **state)
{
    const char *env = getenv("CRASH_SEED");
    unsigned seed = env && *env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
    if (!seed)
        seed = 1;
    unsigned rng = seed;
    printf("random kills: seed %u (set CRASH_SEED=%u to repeat the same delays)\n", seed, seed);

    double t0 = now_s();
    int kills = 0, reported_started = 0, rounds = 0;
    while (kills < RANDOM_MIN_KILLS) {
        if (rounds == RANDOM_MAX_ROUNDS)
            fail_msg("only %d kills in %d rounds: the random delays rarely hit a running worker", kills, rounds);
        char idbuf[RANDOM_WORKFLOWS][32];
        const char *ids[RANDOM_WORKFLOWS];
        for (int i = 0; i < RANDOM_WORKFLOWS; i++) {
            snprintf(idbuf[i], sizeof idbuf[i], "rand-%d-%d", rounds, i);
            ids[i] = idbuf[i];
        }
        worker_cfg c = {.executor = "exec-random", .steps = RANDOM_STEPS, .seed = 1000 * (rounds + 1),
                        .sleep_ms = RANDOM_SLEEP_MS, .workers = RANDOM_WORKFLOWS,
                        .max_attempts = RANDOM_MAX_ATTEMPTS, .nids = RANDOM_WORKFLOWS, .ids = ids};
        kills += kill_until_done(&c, &rng, &reported_started);
        rounds++;

        /* Every workflow finished with the right output and exactly its checkpoints. */
        for (int i = 0; i < RANDOM_WORKFLOWS; i++) {
            long long s = c.seed + i;
            char output[64];
            snprintf(output, sizeof output, "{\"value\":%lld}", value_after(s, RANDOM_STEPS));
            expect_workflow(ids[i], "SUCCESS", output);
            expect_checkpoints(ids[i], s, RANDOM_STEPS);
        }
    }
    double elapsed = now_s() - t0;
    expect_no_violations("rand-%");

    /*
     * Every execution of a step that is not the last one of its (workflow,
     * step) was superseded: its checkpoint never committed. A process runs
     * a workflow's steps one after another and moves on only once a
     * checkpoint has committed, so a superseded execution must have been
     * interrupted by a kill, must be the last step that process ran for
     * that workflow, and a process never runs one step twice. Hence each
     * kill causes at most one re-execution per workflow it had in flight:
     * re-executions <= the sum over killed processes of their workflows
     * in flight <= kills x RANDOM_WORKFLOWS, and no workflow re-executes
     * more steps than there were kills. The per-process test is the tight
     * one: a completed step that ran again, even once, shows up as a
     * superseded execution that is not its process's last.
     */
    PGresult *r = query(
        "WITH r AS ("
        "  SELECT wf, step, run,"
        "         seq <> max(seq) OVER (PARTITION BY wf, step) AS superseded,"
        "         step = max(step) OVER (PARTITION BY wf, run) AS last_of_process"
        "    FROM ledger WHERE wf LIKE 'rand-%')"
        "SELECT count(*) FILTER (WHERE superseded),"
        "       count(*) FILTER (WHERE superseded AND NOT last_of_process),"
        "       count(*) FILTER (WHERE superseded AND run NOT IN (SELECT run FROM killed)),"
        "       (SELECT count(*) FROM (SELECT 1 FROM ledger WHERE wf LIKE 'rand-%'"
        "                              GROUP BY wf, step, run HAVING count(*) > 1) d),"
        "       count(DISTINCT run) FILTER (WHERE superseded),"
        "       count(*),"
        "       (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM r r2 WHERE superseded"
        "                                          GROUP BY wf) m)"
        "  FROM r",
        NULL, NULL);
    long reexec = atol(PQgetvalue(r, 0, 0));
    long completed_rerun = atol(PQgetvalue(r, 0, 1));
    long unexplained = atol(PQgetvalue(r, 0, 2));
    long twice_in_process = atol(PQgetvalue(r, 0, 3));
    long interrupting_kills = atol(PQgetvalue(r, 0, 4));
    long executions = atol(PQgetvalue(r, 0, 5));
    long max_per_workflow = atol(PQgetvalue(r, 0, 6));
    PQclear(r);

    long steps = (long)rounds * RANDOM_WORKFLOWS * RANDOM_STEPS;
    printf("random kills: %d rounds, %d kills (%d before the worker reported its workflows started, %ld "
           "interrupting a step), %ld step executions for %ld steps, %ld re-executed (at most %ld in one workflow), "
           "%.1f s\n",
           rounds, kills, kills - reported_started, interrupting_kills, executions, steps, reexec, max_per_workflow,
           elapsed);

    if (twice_in_process != 0)
        fail_msg("%ld times one process ran the same step of a workflow twice, expected 0", twice_in_process);
    if (completed_rerun != 0)
        fail_msg("%ld executions were superseded although their process went on to later steps "
                 "(a completed step ran again), expected 0",
                 completed_rerun);
    if (unexplained != 0)
        fail_msg("%ld superseded executions belong to processes that were not killed, expected 0", unexplained);
    if (executions != steps + reexec)
        fail_msg("%ld executions in the ledger, expected one per step (%ld) plus the %ld re-executions", executions,
                 steps, reexec);
    if (max_per_workflow > kills)
        fail_msg("one workflow re-executed %ld steps, more than the %d kills", max_per_workflow, kills);
    if (reexec > (long)kills * RANDOM_WORKFLOWS)
        fail_msg("%ld re-executions, more than %d kills x %d workflows in flight", reexec, kills, RANDOM_WORKFLOWS);
}

/* ---- main --------------------------------------------------------------- */

static int setup(void **state)
{
    t_fresh_db("cairn_test_crash");
    db = PQconnectdb(t_db());
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect to %s: %s", t_db(), PQerrorMessage(db));
        return -1;
    }
    PGresult *r = PQexec(db, ledger_ddl);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "creating the ledger: %s", PQerrorMessage(db));
    PQclear(r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    PQfinish(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_at_every_point),
        cmocka_unit_test(test_dead_letter_after_repeated_crashes),
        cmocka_unit_test(test_random_kills),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
