/*
 * The engine against a real Postgres: starting and awaiting workflows,
 * idempotent start under racing threads and processes, replay of recorded
 * steps and errors, divergence detection, retries with backoff,
 * dead-lettering, and refusal of bad input before anything is written.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static atomic_int step_runs;     /* executions of the "count" step */
static atomic_int wf_runs;       /* executions of workflow functions */
static atomic_int flaky_calls;   /* attempts of the "flaky" step */
static long long flaky_at[8];    /* when each flaky attempt ran, in ms */
static char seen_key[256];       /* the idempotency key the "key" step saw */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Adds one to its integer input. */
static int step_count(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&step_runs, 1);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", atoi(in) + 1);
    *out = strdup(buf);
    return CAIRN_OK;
}

/* Fails on its first two attempts, then succeeds. */
static int step_flaky(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    int n = atomic_fetch_add(&flaky_calls, 1);
    if (n < 8)
        flaky_at[n] = now_ms();
    if (cairn_step_attempt(s) < 3)
        return cairn_step_fail(s, "transient failure %d", cairn_step_attempt(s));
    *out = strdup("\"finally\"");
    return CAIRN_OK;
}

static int step_always_fails(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    return cairn_step_fail(s, "the card was declined");
}

static int step_bad_json(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    *out = strdup("{not json");
    return CAIRN_OK;
}

static atomic_int slow_started;

/* Takes a while, so that the test can close the handle while it runs. */
static int step_slow(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&slow_started, 1);
    usleep(200 * 1000);
    *out = strdup(in);
    return CAIRN_OK;
}

static int step_key(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    snprintf(seen_key, sizeof seen_key, "%s", cairn_step_key(s));
    *out = NULL; /* JSON null */
    return CAIRN_OK;
}

/* Three "count" steps: input n gives n + 3. */
static int wf_three(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    atomic_fetch_add(&wf_runs, 1);
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "count", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", b, out);
    free(a);
    free(b);
    return rc;
}

/* Returns the recorded or fresh error message of a failing step as its output. */
static int wf_catch(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    int rc = cairn_step(ctx, "declined", NULL, NULL);
    if (rc != CAIRN_ESTEP)
        return cairn_fail(ctx, "expected CAIRN_ESTEP, got %d", rc);
    char buf[600];
    snprintf(buf, sizeof buf, "\"caught: %s\"", cairn_ctx_errmsg(ctx));
    *out = strdup(buf);
    return CAIRN_OK;
}

static int wf_flaky(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "flaky", NULL, out);
}

static int wf_fails(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "declined", NULL, NULL);
}

static int wf_bad_step(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "bad_json", NULL, NULL);
}

static int wf_bad_output(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    *out = strdup("[1, 2");
    return CAIRN_OK;
}

static int wf_key(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    int rc = cairn_step(ctx, "count", "0", NULL);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "key", NULL, NULL);
    return rc;
}

/* Two slow steps: closing the handle during the first interrupts the workflow. */
static int wf_slow(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *a = NULL;
    int rc = cairn_step(ctx, "slow", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "slow", a, out);
    free(a);
    return rc;
}

static int wf_echo(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    atomic_fetch_add(&wf_runs, 1);
    *out = strdup(in);
    return CAIRN_OK;
}

static cairn *open_worker(const char *executor_id, int max_attempts)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = executor_id;
    o.workers = 8;
    o.max_attempts = max_attempts;
    o.max_payload = 4096;
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", cairn_errmsg(h));
    static const cairn_retry flaky_retry = {.max_attempts = 3, .base_ms = 60, .factor = 2.0, .cap_ms = 1000};
    static const cairn_retry twice = {.max_attempts = 2, .base_ms = 1};
    T_OK(h, cairn_register_step(h, "count", step_count, NULL, NULL));
    T_OK(h, cairn_register_step(h, "flaky", step_flaky, NULL, &flaky_retry));
    T_OK(h, cairn_register_step(h, "declined", step_always_fails, NULL, &twice));
    T_OK(h, cairn_register_step(h, "bad_json", step_bad_json, NULL, NULL));
    T_OK(h, cairn_register_step(h, "key", step_key, NULL, NULL));
    T_OK(h, cairn_register_step(h, "slow", step_slow, NULL, NULL));
    T_OK(h, cairn_register_workflow(h, "slow", wf_slow, NULL));
    T_OK(h, cairn_register_workflow(h, "three", wf_three, NULL));
    T_OK(h, cairn_register_workflow(h, "catch", wf_catch, NULL));
    T_OK(h, cairn_register_workflow(h, "flaky", wf_flaky, NULL));
    T_OK(h, cairn_register_workflow(h, "fails", wf_fails, NULL));
    T_OK(h, cairn_register_workflow(h, "bad_step", wf_bad_step, NULL));
    T_OK(h, cairn_register_workflow(h, "bad_output", wf_bad_output, NULL));
    T_OK(h, cairn_register_workflow(h, "key", wf_key, NULL));
    T_OK(h, cairn_register_workflow(h, "echo", wf_echo, NULL));
    return h;
}

static cairn *open_started(const char *executor_id)
{
    cairn *h = open_worker(executor_id, 5);
    T_OK(h, cairn_start_workers(h));
    return h;
}

/* Starts a workflow with a given ID and waits for it; returns the result. */
static char *run_to_end(cairn *h, const char *wf, const char *id, const char *input, cairn_status *st)
{
    cairn_start_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.id = id;
    T_OK(h, cairn_start(h, wf, input, &so, NULL));
    char *res = NULL;
    T_OK(h, cairn_await(h, id, 20000, st, &res));
    return res;
}

static long count_where(const char *table, const char *id)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE %s = '%s'", table,
             strcmp(table, "cairn.steps") == 0 ? "workflow_id" : "id", id);
    return t_scalar(sql);
}

static void test_start_and_await(void **state)
{
    cairn *h = open_started("e-basic");
    char *id = NULL;
    T_OK(h, cairn_start(h, "three", "39", NULL, &id));
    assert_non_null(id);
    /* Generated IDs are UUIDv7: 36 characters with version nibble 7. */
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[14], '7');
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, id, 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "42");
    cairn_free(res);
    assert_int_equal(count_where("cairn.steps", id), 3);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT (output::text = '42' AND input::text = '39' AND status = 'SUCCESS')::int"
                              " FROM cairn.workflows WHERE id = '%s'", id);
    assert_int_equal(t_scalar(sql), 1);
    /* A second await reads the finished workflow from the database. */
    T_OK(h, cairn_await(h, id, 0, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "42");
    cairn_free(res);
    cairn_free(id);
    cairn_close(h);
}

static void test_idempotent_start_sequential(void **state)
{
    cairn *h = open_started("e-idem");
    cairn_status st;
    atomic_store(&wf_runs, 0);
    char *res = run_to_end(h, "echo", "idem-1", "{\"a\":1}", &st);
    assert_string_equal(res, "{\"a\":1}");
    cairn_free(res);
    /* Same ID again, other input: nothing new runs; the first result stands. */
    res = run_to_end(h, "echo", "idem-1", "{\"a\":2}", &st);
    assert_string_equal(res, "{\"a\":1}");
    cairn_free(res);
    assert_int_equal(atomic_load(&wf_runs), 1);
    assert_int_equal(count_where("cairn.workflow_status", "idem-1"), 1);
    /* Same ID, other workflow name: refused. */
    cairn_start_options so = {.size = sizeof so, .id = "idem-1"};
    T_RC(h, CAIRN_ECONFLICT, cairn_start(h, "three", "1", &so, NULL));
    assert_non_null(strstr(cairn_errmsg(h), "echo"));
    cairn_close(h);
}

typedef struct racer {
    cairn *h;
    const char *id;
    int rc;
} racer;

static void *race_start(void *arg)
{
    racer *r = arg;
    cairn_start_options so = {.size = sizeof so, .id = r->id};
    r->rc = cairn_start(r->h, "three", "0", &so, NULL);
    return NULL;
}

static void test_idempotent_start_threads(void **state)
{
    cairn *h = open_started("e-threads");
    atomic_store(&wf_runs, 0);
    atomic_store(&step_runs, 0);
    enum { N = 16 };
    pthread_t th[N];
    racer rs[N];
    for (int round = 0; round < 5; round++) {
        char id[64];
        snprintf(id, sizeof id, "race-thread-%d", round);
        for (int i = 0; i < N; i++) {
            rs[i] = (racer){h, id, -100};
            pthread_create(&th[i], NULL, race_start, &rs[i]);
        }
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            if (rs[i].rc != CAIRN_OK)
                fail_msg("racer %d got %d", i, rs[i].rc);
        }
        cairn_status st;
        char *res = NULL;
        T_OK(h, cairn_await(h, id, 20000, &st, &res));
        assert_string_equal(res, "3");
        cairn_free(res);
        assert_int_equal(count_where("cairn.workflow_status", id), 1);
    }
    assert_int_equal(atomic_load(&wf_runs), 5);
    assert_int_equal(atomic_load(&step_runs), 15);
    cairn_close(h);
}

static void test_idempotent_start_processes(void **state)
{
    enum { P = 6 };
    int go[2];
    assert_int_equal(pipe(go), 0);
    t_exec("CREATE TABLE IF NOT EXISTS proc_runs (runs int)");
    pid_t kids[P];
    for (int i = 0; i < P; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            close(go[1]);
            atomic_store(&wf_runs, 0);
            char exec_id[32];
            snprintf(exec_id, sizeof exec_id, "proc-%d", i);
            cairn *h = open_worker(exec_id, 5);
            if (cairn_start_workers(h) != CAIRN_OK)
                _exit(10);
            char b;
            if (read(go[0], &b, 1) != 0) /* released together when the parent closes the pipe */
                _exit(11);
            cairn_start_options so = {.size = sizeof so, .id = "race-proc"};
            if (cairn_start(h, "echo", "\"x\"", &so, NULL) != CAIRN_OK)
                _exit(12);
            /* Only the process that created it runs it; everyone can await it. */
            cairn_status st;
            char *res = NULL;
            if (cairn_await(h, "race-proc", 20000, &st, &res) != CAIRN_OK || st != CAIRN_STATUS_SUCCESS)
                _exit(13);
            int ok = strcmp(res, "\"x\"") == 0;
            cairn_free(res);
            PGconn *pg = PQconnectdb(t_db());
            char sql[128];
            snprintf(sql, sizeof sql, "INSERT INTO proc_runs VALUES (%d)", atomic_load(&wf_runs));
            PQclear(PQexec(pg, sql));
            PQfinish(pg);
            cairn_close(h);
            _exit(ok ? 0 : 14);
        }
    }
    close(go[0]);
    usleep(300 * 1000); /* let every child connect and reach the barrier */
    close(go[1]);
    for (int i = 0; i < P; i++) {
        int status;
        waitpid(kids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("child %d exited with status 0x%x", i, status);
    }
    assert_int_equal(count_where("cairn.workflow_status", "race-proc"), 1);
    /* Exactly one process executed the workflow function, once. */
    assert_int_equal(t_scalar("SELECT sum(runs) FROM proc_runs"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM proc_runs"), P);
}

/* Writes a workflow as if an earlier execution had stopped after some steps. */
static void plant(const char *id, const char *name, const char *executor, int attempts, const char *steps_sql)
{
    char sql[2048];
    snprintf(sql, sizeof sql,
             "INSERT INTO cairn.workflow_status (id, name, status, executor_id, attempts, input)"
             " VALUES ('%s', '%s', 'PENDING', '%s', %d, '10');%s",
             id, name, executor, attempts, steps_sql ? steps_sql : "");
    t_exec(sql);
}

static void test_replay_recorded_steps(void **state)
{
    plant("replay-1", "three", "e-replay", 1,
          "INSERT INTO cairn.steps (workflow_id, step, name, output) VALUES"
          " ('replay-1', 1, 'count', '100'), ('replay-1', 2, 'count', '200')");
    plant("replay-err", "catch", "e-replay", 1,
          "INSERT INTO cairn.steps (workflow_id, step, name, error) VALUES"
          " ('replay-err', 1, 'declined', '{\"message\": \"recorded refusal\"}')");
    atomic_store(&step_runs, 0);
    cairn *h = open_started("e-replay"); /* recovery resumes both */
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "replay-1", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    /* Steps 1 and 2 came from the recording (200), only step 3 ran. */
    assert_string_equal(res, "201");
    cairn_free(res);
    assert_int_equal(atomic_load(&step_runs), 1);
    /* A recorded failure replays as the same failure, without running the step. */
    T_OK(h, cairn_await(h, "replay-err", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "\"caught: recorded refusal\"");
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflow_status WHERE id = 'replay-1'"), 2);
    cairn_close(h);
}

static void test_replay_divergence(void **state)
{
    plant("diverge-1", "three", "e-diverge", 1,
          "INSERT INTO cairn.steps (workflow_id, step, name, output) VALUES ('diverge-1', 1, 'charge_card', '1')");
    atomic_store(&step_runs, 0);
    cairn *h = open_started("e-diverge");
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "diverge-1", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "non-deterministic workflow"));
    assert_non_null(strstr(res, "charge_card"));
    assert_non_null(strstr(res, "'count'"));
    cairn_free(res);
    assert_int_equal(atomic_load(&step_runs), 0);
    /* Nothing was added to the recording. */
    assert_int_equal(count_where("cairn.steps", "diverge-1"), 1);
    cairn_close(h);
}

static void test_retry_backoff(void **state)
{
    cairn *h = open_started("e-retry");
    atomic_store(&flaky_calls, 0);
    cairn_status st;
    char *res = run_to_end(h, "flaky", "flaky-1", NULL, &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "\"finally\"");
    cairn_free(res);
    assert_int_equal(atomic_load(&flaky_calls), 3);
    /* base 60 ms, factor 2: at least 60 ms before attempt 2 and 120 ms before attempt 3. */
    long long d1 = flaky_at[1] - flaky_at[0], d2 = flaky_at[2] - flaky_at[1];
    if (d1 < 60 || d2 < 120 || d1 > 1000 || d2 > 1000)
        fail_msg("backoff delays were %lld ms and %lld ms; expected >= 60 and >= 120", d1, d2);
    assert_int_equal(count_where("cairn.steps", "flaky-1"), 1);

    /* A step that keeps failing records its error after max_attempts; the workflow fails with it. */
    res = run_to_end(h, "fails", "fails-1", NULL, &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "the card was declined"));
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT (error->>'attempts')::int FROM cairn.steps WHERE workflow_id = 'fails-1'"), 2);
    assert_int_equal(t_scalar("SELECT (output IS NULL)::int FROM cairn.steps WHERE workflow_id = 'fails-1'"), 1);
    cairn_close(h);
}

static void test_dead_letter(void **state)
{
    /* max_attempts 3: a workflow already started 3 times is not started a 4th time. */
    plant("dead-1", "echo", "e-dead", 3, NULL);
    plant("alive-1", "echo", "e-dead", 2, NULL);
    atomic_store(&wf_runs, 0);
    cairn *h = open_worker("e-dead", 3);
    T_OK(h, cairn_start_workers(h));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "dead-1", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_DEAD_LETTER);
    assert_non_null(strstr(res, "interrupted 3 times"));
    cairn_free(res);
    T_OK(h, cairn_await(h, "alive-1", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    assert_int_equal(atomic_load(&wf_runs), 1);
    cairn_close(h);
    /* A later start of the same executor leaves the dead letter alone. */
    h = open_worker("e-dead", 3);
    T_OK(h, cairn_start_workers(h));
    cairn_close(h);
    assert_int_equal(atomic_load(&wf_runs), 1);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflow_status WHERE id = 'dead-1'"), 4);
}

static void test_graceful_close_is_not_a_crash(void **state)
{
    cairn *h = open_started("e-close");
    atomic_store(&slow_started, 0);
    cairn_start_options so = {.size = sizeof so, .id = "close-1"};
    T_OK(h, cairn_start(h, "slow", "\"v\"", &so, NULL));
    while (atomic_load(&slow_started) == 0)
        usleep(1000);
    cairn_close(h); /* waits for the running step, then stops before the next */
    /* The interrupted execution was handed back to the queue, owned by no one, and does not
     * count toward dead-lettering. */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status"
                              " WHERE id = 'close-1' AND status = 'ENQUEUED' AND executor_id IS NULL"), 1);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflow_status WHERE id = 'close-1'"), 0);
    h = open_started("e-close");
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "close-1", 20000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "\"v\"");
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflow_status WHERE id = 'close-1'"), 1);
    cairn_close(h);
}

static void test_step_key_and_bad_outputs(void **state)
{
    cairn *h = open_started("e-key");
    cairn_status st;
    char *res = run_to_end(h, "key", "key-wf", NULL, &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "null");
    cairn_free(res);
    assert_string_equal(seen_key, "key-wf:2");

    res = run_to_end(h, "bad_step", "bad-step-1", NULL, &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "invalid JSON"));
    cairn_free(res);
    res = run_to_end(h, "bad_output", "bad-output-1", NULL, &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "invalid JSON"));
    cairn_free(res);
    cairn_close(h);
}

static void test_bad_input(void **state)
{
    cairn *h = open_worker("e-bad", 5);
    cairn_start_options so = {.size = sizeof so, .id = "bad-before-start"};
    T_RC(h, CAIRN_EMISUSE, cairn_start(h, "echo", "1", &so, NULL));
    T_OK(h, cairn_start_workers(h));
    T_RC(h, CAIRN_EMISUSE, cairn_register_workflow(h, "late", wf_echo, NULL));
    long before = t_scalar("SELECT count(*) FROM cairn.workflow_status");

    so.id = "bad-json";
    T_RC(h, CAIRN_EJSON, cairn_start(h, "echo", "{\"a\":", &so, NULL));
    assert_non_null(strstr(cairn_errmsg(h), "JSON"));
    T_RC(h, CAIRN_EJSON, cairn_start(h, "echo", "{'a': 1}", &so, NULL));
    T_RC(h, CAIRN_EJSON, cairn_start(h, "echo", "\"\xff\"", &so, NULL));
    T_RC(h, CAIRN_ENOTFOUND, cairn_start(h, "no_such_workflow", "1", &so, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_start(h, NULL, "1", &so, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "", "1", &so, NULL));
    so.id = "";
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "echo", "1", &so, NULL));
    so.id = "tab\there";
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "echo", "1", &so, NULL));
    assert_non_null(strstr(cairn_errmsg(h), "control character"));
    char long_id[300];
    memset(long_id, 'x', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    so.id = long_id;
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "echo", "1", &so, NULL));
    /* max_payload is 4096 here. */
    char *big = malloc(5000);
    big[0] = '"';
    memset(big + 1, 'a', 4997);
    big[4998] = '"';
    big[4999] = '\0';
    so.id = "too-big";
    T_RC(h, CAIRN_ETOOBIG, cairn_start(h, "echo", big, &so, NULL));
    free(big);
    cairn_start_options zero = {0};
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "echo", "1", &zero, NULL));
    T_RC(NULL, CAIRN_EINVAL, cairn_start(NULL, "echo", "1", NULL, NULL));
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status"), before);

    cairn_status st;
    T_RC(h, CAIRN_ENOTFOUND, cairn_await(h, "never-started", 100, &st, NULL));
    T_RC(h, CAIRN_ENOTFOUND, cairn_get_status(h, "never-started", &st));
    T_RC(h, CAIRN_EINVAL, cairn_await(h, NULL, 100, &st, NULL));
    cairn_close(h);
    cairn_close(NULL);
}

static void test_await_timeout(void **state)
{
    /* A workflow owned by an executor that is not running never finishes here. */
    plant("orphan-1", "echo", "e-elsewhere", 1, NULL);
    cairn *h = open_started("e-timeout");
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    long long t0 = now_ms();
    T_RC(h, CAIRN_ETIMEDOUT, cairn_await(h, "orphan-1", 300, &st, NULL));
    long long waited = now_ms() - t0;
    if (waited < 300)
        fail_msg("await returned after %lld ms, before its 300 ms timeout", waited);
    T_OK(h, cairn_get_status(h, "orphan-1", &st));
    assert_int_equal(st, CAIRN_STATUS_PENDING);
    char *json = NULL;
    T_OK(h, cairn_describe(h, "orphan-1", 1, &json));
    assert_non_null(strstr(json, "\"executor_id\" : \"e-elsewhere\""));
    cairn_free(json);
    cairn_list_options lo = {.size = sizeof lo, .status = "PENDING", .limit = 5};
    T_OK(h, cairn_list(h, &lo, &json));
    assert_non_null(strstr(json, "orphan-1"));
    cairn_free(json);
    lo.status = "BOGUS";
    T_RC(h, CAIRN_EINVAL, cairn_list(h, &lo, &json));
    cairn_close(h);
}

int main(void)
{
    t_fresh_db("cairn_test_engine");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_and_await),
        cmocka_unit_test(test_idempotent_start_sequential),
        cmocka_unit_test(test_idempotent_start_threads),
        cmocka_unit_test(test_idempotent_start_processes),
        cmocka_unit_test(test_replay_recorded_steps),
        cmocka_unit_test(test_replay_divergence),
        cmocka_unit_test(test_retry_backoff),
        cmocka_unit_test(test_dead_letter),
        cmocka_unit_test(test_graceful_close_is_not_a_crash),
        cmocka_unit_test(test_step_key_and_bad_outputs),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_await_timeout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
