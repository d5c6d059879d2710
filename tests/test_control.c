/*
 * Cancel, resume and fork, timeouts, patch markers and parallel steps: a
 * cancelled workflow stops at its next step
 * wherever it runs (told by notification, or by the heartbeat's look when
 * the notification is lost), never runs again while enqueued or waiting,
 * and takes its children with it when asked; a cancel that rolls back
 * cancels nothing; resume replays from the checkpoints without running a
 * completed step (or its writes) again; fork re-runs exactly the steps
 * from its starting point; bad input is refused with nothing written.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static cairn *h;

static atomic_int counted;      /* executions of step "count" */
static atomic_int gate_entered; /* executions that reached the gate */
static atomic_int gate_open;    /* the gate lets steps through */
static atomic_int gate_saw_cancel;
static atomic_int fail_flaky;   /* step "flaky" fails while set */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to ms for SQL's scalar to equal want; fails the test with what it saw otherwise. */
static void wait_scalar(const char *sql, long want, int ms)
{
    long long end = now_ms() + ms;
    long got;
    while ((got = t_scalar(sql)) != want) {
        if (now_ms() > end)
            fail_msg("waited %d ms for [%s] to be %ld; it is %ld", ms, sql, want, got);
        usleep(10 * 1000);
    }
}

static long status_is(const char *id, const char *status)
{
    char sql[512];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM cairn.workflows WHERE id = '%s' AND status = '%s'", id, status);
    return t_scalar(sql);
}

static int step_count(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&counted, 1);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", atoi(in) + 1);
    *out = strdup(buf);
    return CAIRN_OK;
}

/* Waits for the gate, giving up (as a step should) once its workflow is cancelled. */
static int step_gate(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&gate_entered, 1);
    while (!atomic_load(&gate_open)) {
        if (cairn_step_cancelled(s)) {
            atomic_fetch_add(&gate_saw_cancel, 1);
            return cairn_step_fail(s, "cancelled while waiting at the gate");
        }
        usleep(2000);
    }
    *out = strdup(in);
    return CAIRN_OK;
}

static int step_flaky(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    if (atomic_load(&fail_flaky))
        return cairn_step_fail(s, "flaky is failing");
    *out = strdup(in);
    return CAIRN_OK;
}

/* A transactional step that records (workflow, step number) in an application table. */
static int tx_write(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    char num[16];
    snprintf(num, sizeof num, "%d", cairn_step_number(s));
    const char *vals[2] = {cairn_step_workflow_id(s), num};
    PGresult *r = PQexecParams(conn, "INSERT INTO app_writes (workflow_id, step) VALUES ($1, $2::int)", 2, NULL, vals,
                               NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    if (rc == CAIRN_OK) {
        char buf[32];
        snprintf(buf, sizeof buf, "%d", atoi(in) + 10);
        *out = strdup(buf);
    }
    return rc;
}

/* write, gate, write: the gate is where a test cancels it. */
static int wf_gated(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "write", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "gate", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "write", b, out);
    free(a);
    free(b);
    return rc;
}

/* count, flaky, count. */
static int wf_flaky(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "count", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "flaky", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", b, out);
    free(a);
    free(b);
    return rc;
}

/* Three transactional writes: the workflow forks are made from. */
static int wf_writes(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "write", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "write", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "write", b, out);
    free(a);
    free(b);
    return rc;
}

/* Counts once, then sleeps for an hour: suspended, without a thread. */
static int wf_sleeper(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    int rc = cairn_step(ctx, "count", in, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_sleep(ctx, 3600 * 1000LL);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", in, NULL);
    return rc;
}

/* Starts a sleeper child and awaits it; returns the child's final status. */
static int wf_parent(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *child = NULL, *result = NULL;
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    int rc = cairn_start_child(ctx, "sleeper", "0", NULL, &child);
    if (rc == CAIRN_OK)
        rc = cairn_ctx_await(ctx, child, -1, &st, &result);
    if (rc == CAIRN_OK) {
        char buf[64];
        snprintf(buf, sizeof buf, "\"child %s\"", cairn_status_name(st));
        *out = strdup(buf);
    }
    cairn_free(child);
    cairn_free(result);
    return rc;
}

/* Sleeps its input's milliseconds, counting how many run at once. */
static atomic_int slow_running, slow_peak, slow_runs;

static int step_slow(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    int now = atomic_fetch_add(&slow_running, 1) + 1;
    int peak = atomic_load(&slow_peak);
    while (now > peak && !atomic_compare_exchange_weak(&slow_peak, &peak, now))
        ;
    atomic_fetch_add(&slow_runs, 1);
    usleep((useconds_t)atoi(in) * 1000);
    atomic_fetch_sub(&slow_running, 1);
    char buf[64];
    snprintf(buf, sizeof buf, "{\"slept\": %d, \"step\": %d}", atoi(in), cairn_step_number(s));
    *out = strdup(buf);
    return CAIRN_OK;
}

/* Four slow steps at once, the later ones quicker; then a durable sleep and a count. */
static int wf_fanout(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    cairn_call calls[4] = {{.step = "slow", .input = "400"}, {.step = "slow", .input = "300"},
                           {.step = "slow", .input = "200"}, {.step = "slow", .input = "100"}};
    int rc = cairn_parallel(ctx, calls, 4);
    char buf[512] = "[";
    for (int i = 0; i < 4; i++) {
        strncat(buf, calls[i].output ? calls[i].output : "null", sizeof buf - strlen(buf) - 2);
        strncat(buf, i < 3 ? "," : "]", sizeof buf - strlen(buf) - 1);
        cairn_free(calls[i].output);
    }
    if (rc == CAIRN_OK)
        rc = cairn_sleep(ctx, 300);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", "0", NULL);
    if (rc == CAIRN_OK)
        *out = strdup(buf);
    return rc;
}

/* A transactional write, the gate and a count at once. */
static int wf_mixed(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    cairn_call calls[3] = {{.step = "write", .input = "1"}, {.step = "gate", .input = "2"},
                           {.step = "count", .input = "3"}};
    int rc = cairn_parallel(ctx, calls, 3);
    if (rc == CAIRN_OK) {
        char buf[128];
        snprintf(buf, sizeof buf, "[%s,%s,%s]", calls[0].output, calls[1].output, calls[2].output);
        *out = strdup(buf);
    }
    for (int i = 0; i < 3; i++)
        cairn_free(calls[i].output);
    return rc;
}

/* Bad groups, refused before anything runs. */
static int wf_bad_groups(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    cairn_call ok[1] = {{.step = "count", .input = "0"}};
    cairn_call unknown[2] = {{.step = "count", .input = "0"}, {.step = "no-such-step"}};
    cairn_call bad_json[1] = {{.step = "count", .input = "{nope"}};
    cairn_call no_name[1] = {{.step = NULL}};
    int codes[5] = {cairn_parallel(ctx, ok, 0), cairn_parallel(ctx, ok, 65), cairn_parallel(ctx, unknown, 2),
                    cairn_parallel(ctx, bad_json, 1), cairn_parallel(ctx, no_name, 1)};
    char buf[128];
    snprintf(buf, sizeof buf, "[%d,%d,%d,%d,%d]", codes[0], codes[1], codes[2], codes[3], codes[4]);
    *out = strdup(buf);
    return CAIRN_OK;
}

/*
 * One workflow whose code changes while instances of it sleep:
 *   1: count, count, sleep, count
 *   2: count, [patch "extra": flaky], count, sleep, count
 *   3: count, deprecated patch "extra", flaky, count, sleep, count
 *   4: count, flaky, count, sleep, count (changed without a patch)
 */
static atomic_int code_version;

static int wf_patchy(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    int v = atomic_load(&code_version);
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "count", in, &a);
    if (rc == CAIRN_OK && v == 2) {
        rc = cairn_patched(ctx, "extra");
        if (rc > 0)
            rc = cairn_step(ctx, "flaky", a, NULL);
    } else if (rc == CAIRN_OK && v == 3) {
        rc = cairn_deprecate_patch(ctx, "extra");
        if (rc == CAIRN_OK)
            rc = cairn_step(ctx, "flaky", a, NULL);
    } else if (rc == CAIRN_OK && v == 4) {
        rc = cairn_step(ctx, "flaky", a, NULL);
    }
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_sleep(ctx, 400);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", b, out);
    free(a);
    free(b);
    return rc;
}

/* A handle running this file's workflows, heartbeating (and looking for missed cancels) every lease_ms / 5. */
static cairn *open_handle(const char *executor, int lease_ms)
{
    cairn *hd;
    cairn_options o = {.size = sizeof o, .conninfo = t_db(), .executor_id = executor, .workers = 8,
                       .lease_ms = lease_ms, .suspend_after_ms = 200};
    if (cairn_open(&hd, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", cairn_errmsg(hd));
    T_OK(hd, cairn_register_step(hd, "count", step_count, NULL, NULL));
    T_OK(hd, cairn_register_step(hd, "gate", step_gate, NULL, &(cairn_retry){.max_attempts = 3, .base_ms = 10}));
    T_OK(hd, cairn_register_step(hd, "flaky", step_flaky, NULL, NULL));
    T_OK(hd, cairn_register_tx_step(hd, "write", tx_write, NULL, NULL));
    T_OK(hd, cairn_register_workflow(hd, "gated", wf_gated, NULL));
    T_OK(hd, cairn_register_workflow(hd, "flaky", wf_flaky, NULL));
    T_OK(hd, cairn_register_workflow(hd, "writes", wf_writes, NULL));
    T_OK(hd, cairn_register_workflow(hd, "sleeper", wf_sleeper, NULL));
    T_OK(hd, cairn_register_workflow(hd, "parent", wf_parent, NULL));
    T_OK(hd, cairn_register_workflow(hd, "patchy", wf_patchy, NULL));
    T_OK(hd, cairn_register_step(hd, "slow", step_slow, NULL, NULL));
    T_OK(hd, cairn_register_workflow(hd, "fanout", wf_fanout, NULL));
    T_OK(hd, cairn_register_workflow(hd, "mixed", wf_mixed, NULL));
    T_OK(hd, cairn_register_workflow(hd, "bad_groups", wf_bad_groups, NULL));
    T_OK(hd, cairn_start_workers(hd));
    return hd;
}

static int setup(void **state)
{
    t_exec("CREATE TABLE app_writes (workflow_id text NOT NULL, step int NOT NULL)");
    /*
     * A long lease: the next heartbeat is 12 s away, so a cancel that a
     * test sees within a few seconds came by notification.
     */
    h = open_handle("control", 60000);
    return 0;
}

static int teardown(void **state)
{
    cairn_close(h);
    return 0;
}

/* Starts a gated workflow and waits until it is at the gate. */
static void start_at_gate(cairn *hd, const char *id)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_entered, 0);
    atomic_store(&gate_saw_cancel, 0);
    cairn_start_options so = {.size = sizeof so, .id = id};
    T_OK(hd, cairn_start(hd, "gated", "0", &so, NULL));
    long long end = now_ms() + 10000;
    while (!atomic_load(&gate_entered)) {
        if (now_ms() > end)
            fail_msg("workflow %s never reached its gate", id);
        usleep(1000);
    }
}

static void expect_cancelled_at_gate(cairn *hd, const char *id, int timeout_ms)
{
    cairn_status st;
    char *res = NULL;
    T_OK(hd, cairn_await(hd, id, timeout_ms, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_CANCELLED);
    assert_non_null(strstr(res, "cancelled"));
    cairn_free(res);
    /* The gate saw the cancel and gave up; no retry ran, and its failure was not recorded. */
    assert_int_equal(atomic_load(&gate_saw_cancel), 1);
    assert_int_equal(atomic_load(&gate_entered), 1);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM cairn.steps WHERE workflow_id = '%s'", id);
    assert_int_equal(t_scalar(sql), 1);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM app_writes WHERE workflow_id = '%s'", id);
    assert_int_equal(t_scalar(sql), 1);
}

/* A cancel from SQL on another connection reaches the executor by notification. */
static void test_cancel_running_from_sql(void **state)
{
    start_at_gate(h, "run-1");
    assert_int_equal(t_scalar("SELECT cairn.cancel('run-1')::int"), 1);
    long long t0 = now_ms();
    while (!atomic_load(&gate_saw_cancel)) {
        /* The handle's next heartbeat is 12 s away: only the notification can tell it this soon. */
        if (now_ms() - t0 > 5000)
            fail_msg("the running step did not see the cancel within 5 s: the notification was not acted on");
        usleep(1000);
    }
    print_message("the running step saw the cancel %lld ms after it committed\n", now_ms() - t0);
    expect_cancelled_at_gate(h, "run-1", 4000);
    /* Cancelling again changes nothing and says so. */
    assert_int_equal(t_scalar("SELECT cairn.cancel('run-1')::int"), 0);
    T_OK(h, cairn_cancel(h, "run-1", 0));
}

/* A cancel whose notification never came (written straight to the table) is found by the heartbeat's look. */
static void test_cancel_without_notification(void **state)
{
    cairn *h2 = open_handle("control-2", 1000);
    start_at_gate(h2, "run-2");
    t_exec("UPDATE cairn.workflow_status SET status = 'CANCELLED', error = '{\"message\": \"cancelled\"}' WHERE id = 'run-2'");
    expect_cancelled_at_gate(h2, "run-2", 10000);
    cairn_close(h2);
}

/* A cancel in a transaction that rolls back cancels nothing and tells nobody. */
static void test_cancel_rolled_back(void **state)
{
    start_at_gate(h, "run-3");
    PGconn *pg = t_pg();
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *r = PQexec(pg, "SELECT cairn.cancel('run-3')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQclear(PQexec(pg, "ROLLBACK"));
    PQfinish(pg);
    usleep(700 * 1000);
    assert_int_equal(atomic_load(&gate_saw_cancel), 0);
    atomic_store(&gate_open, 1);
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "run-3", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "20");
    cairn_free(res);
}

/* An enqueued workflow that is cancelled before its time never runs. */
static void test_cancel_enqueued(void **state)
{
    atomic_store(&counted, 0);
    cairn_start_options so = {.size = sizeof so, .id = "enq-1", .queue = "default", .delay_ms = 500};
    T_OK(h, cairn_start(h, "flaky", "0", &so, NULL));
    T_OK(h, cairn_cancel(h, "enq-1", 0));
    usleep(1500 * 1000);
    assert_int_equal(atomic_load(&counted), 0);
    assert_int_equal(status_is("enq-1", "CANCELLED"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'enq-1'"), 0);
}

/* Cancelling a waiting parent with its children: both stop, neither is woken again. */
static void test_cancel_with_children(void **state)
{
    cairn_start_options so = {.size = sizeof so, .id = "fam-1"};
    T_OK(h, cairn_start(h, "parent", "0", &so, NULL));
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'fam-1/1' AND waiting = 'sleep'", 1, 10000);
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'fam-1' AND waiting IS NOT NULL", 1, 10000);
    T_OK(h, cairn_cancel(h, "fam-1", CAIRN_CANCEL_CHILDREN));
    assert_int_equal(status_is("fam-1", "CANCELLED"), 1);
    assert_int_equal(status_is("fam-1/1", "CANCELLED"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'fam-1%'"
                              " AND (wake_at IS NOT NULL OR waiting IS NOT NULL)"),
                     0);
    usleep(800 * 1000);
    assert_int_equal(status_is("fam-1", "CANCELLED"), 1);
    assert_int_equal(status_is("fam-1/1", "CANCELLED"), 1);
}

/* Cancelling only the child wakes the waiting parent, which sees CANCELLED and finishes. */
static void test_cancel_child_wakes_parent(void **state)
{
    cairn_start_options so = {.size = sizeof so, .id = "fam-2"};
    T_OK(h, cairn_start(h, "parent", "0", &so, NULL));
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'fam-2/1' AND waiting = 'sleep'", 1, 10000);
    assert_int_equal(t_scalar("SELECT cairn.cancel('fam-2/1')::int"), 1);
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "fam-2", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "\"child CANCELLED\"");
    cairn_free(res);
}

/* Resuming a cancelled workflow replays it: the write before the gate is not made again. */
static void test_resume_cancelled(void **state)
{
    start_at_gate(h, "res-1");
    T_OK(h, cairn_cancel(h, "res-1", 0));
    expect_cancelled_at_gate(h, "res-1", 4000);
    atomic_store(&gate_open, 1);
    T_OK(h, cairn_resume(h, "res-1"));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "res-1", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "20");
    cairn_free(res);
    /* Step 1's transactional write happened once, step 3's once; three checkpoints. */
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'res-1' AND step = 1"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'res-1' AND step = 3"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'res-1'"), 3);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflows WHERE id = 'res-1'"), 1);
    /* A finished workflow is not resumed. */
    T_RC(h, CAIRN_EMISUSE, cairn_resume(h, "res-1"));
}

/* Resuming a failed workflow runs its failed step again, and only that. */
static void test_resume_failed(void **state)
{
    atomic_store(&counted, 0);
    atomic_store(&fail_flaky, 1);
    cairn_start_options so = {.size = sizeof so, .id = "fail-1"};
    T_OK(h, cairn_start(h, "flaky", "0", &so, NULL));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "fail-1", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "flaky is failing"));
    cairn_free(res);
    assert_int_equal(atomic_load(&counted), 1);
    atomic_store(&fail_flaky, 0);
    /* In one transaction, so that no worker runs it between the two: the second finds it enqueued. */
    PGconn *pg = t_pg();
    PGresult *r = PQexec(pg, "BEGIN; SELECT cairn.resume('fail-1')");
    assert_string_equal(PQgetvalue(r, 0, 0), "t");
    PQclear(r);
    r = PQexec(pg, "SELECT cairn.resume('fail-1')");
    assert_string_equal(PQgetvalue(r, 0, 0), "f");
    PQclear(r);
    PQclear(PQexec(pg, "COMMIT"));
    PQfinish(pg);
    T_OK(h, cairn_await(h, "fail-1", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "2");
    cairn_free(res);
    assert_int_equal(atomic_load(&counted), 2); /* step 1 replayed, step 3 ran */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'fail-1' AND error IS NULL"), 3);

    /* A dead-lettered workflow gets its attempts back. */
    atomic_store(&fail_flaky, 1);
    so.id = "dead-1";
    T_OK(h, cairn_start(h, "flaky", "0", &so, NULL));
    T_OK(h, cairn_await(h, "dead-1", 10000, &st, NULL));
    t_exec("UPDATE cairn.workflow_status SET status = 'DEAD_LETTER', attempts = 21 WHERE id = 'dead-1'");
    atomic_store(&fail_flaky, 0);
    assert_int_equal(t_scalar("SELECT cairn.resume('dead-1')::int"), 1);
    T_OK(h, cairn_await(h, "dead-1", 10000, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflows WHERE id = 'dead-1'"), 1);
}

/* A fork from step 2 re-runs steps 2 and 3, whose transactional writes happen for the fork; step 1's do not. */
static void test_fork_transactional(void **state)
{
    cairn_start_options so = {.size = sizeof so, .id = "src-1"};
    T_OK(h, cairn_start(h, "writes", "0", &so, NULL));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "src-1", 10000, &st, &res));
    assert_string_equal(res, "30");
    cairn_free(res);

    char *fid = NULL;
    T_OK(h, cairn_fork(h, "src-1", 2, "fork-1", &fid));
    assert_string_equal(fid, "fork-1");
    cairn_free(fid);
    T_OK(h, cairn_await(h, "fork-1", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "30");
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'src-1'"), 3);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'fork-1'"), 2);
    assert_int_equal(t_scalar("SELECT min(step) FROM app_writes WHERE workflow_id = 'fork-1'"), 2);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'fork-1' AND forked_from = 'src-1'"),
                     1);
    /* The same fork again returns the first; another workflow's ID is refused. */
    T_OK(h, cairn_fork(h, "src-1", 2, "fork-1", NULL));
    T_RC(h, CAIRN_ECONFLICT, cairn_fork(h, "src-1", 2, "res-1", NULL));
    /* A fork from step 1 runs everything again, under a fresh ID. */
    T_OK(h, cairn_fork(h, "src-1", 1, NULL, &fid));
    T_OK(h, cairn_await(h, fid, 10000, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM app_writes WHERE workflow_id = '%s'", fid);
    assert_int_equal(t_scalar(sql), 3);
    cairn_free(fid);
}

/* A running workflow whose timeout passes is cancelled and stops at its step, wherever it is. */
static void test_timeout_running(void **state)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_entered, 0);
    atomic_store(&gate_saw_cancel, 0);
    cairn_start_options so = {.size = sizeof so, .id = "to-1", .timeout_ms = 1000};
    T_OK(h, cairn_start(h, "gated", "0", &so, NULL));
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.deadlines WHERE workflow_id = 'to-1'"), 1);
    cairn_status st;
    char *res = NULL;
    /* The handle's heartbeat is 12 s away: the dispatcher must have learned of the deadline from the start. */
    T_OK(h, cairn_await(h, "to-1", 8000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_CANCELLED);
    assert_non_null(strstr(res, "timed out"));
    cairn_free(res);
    assert_int_equal(atomic_load(&gate_saw_cancel), 1);
    /*
     * Not before its time: the deadline counts from when it was recorded,
     * just before the workflow's row, so the cancel comes a second after
     * that, less the moment between the two.
     */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE id = 'to-1'"
                              " AND updated_at >= created_at + interval '900 milliseconds'"),
                     1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.deadlines WHERE workflow_id = 'to-1'"), 0);
}

/* A child inherits its parent's deadline: both are cancelled when it passes, the child while it sleeps. */
static void test_timeout_inherited(void **state)
{
    cairn_start_options so = {.size = sizeof so, .id = "to-fam", .timeout_ms = 1500};
    T_OK(h, cairn_start(h, "parent", "0", &so, NULL));
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'to-fam/1' AND waiting = 'sleep'", 1, 10000);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.deadlines c JOIN cairn.deadlines p"
                              " ON p.workflow_id = 'to-fam' AND c.workflow_id = 'to-fam/1'"
                              " AND c.deadline_at = p.deadline_at"),
                     1);
    cairn_status st;
    T_OK(h, cairn_await(h, "to-fam", 8000, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_CANCELLED);
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'to-fam/1' AND status = 'CANCELLED'"
                " AND error->>'message' LIKE 'timed out%'",
                1, 8000);
}

/* A timeout set from SQL in the enqueuing transaction: the workflow never runs if its deadline comes first. */
static void test_timeout_from_sql(void **state)
{
    cairn *h2 = open_handle("control-3", 1000); /* heartbeats, and looks at deadlines, every 200 ms */
    atomic_store(&counted, 0);
    PGconn *pg = t_pg();
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *r = PQexec(pg, "SELECT cairn.enqueue('flaky', '0', id => 'to-sql', delay => '30 s'),"
                             " cairn.set_timeout('to-sql', '1 second')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQclear(PQexec(pg, "COMMIT"));
    /* The same from C on the application's connection, rolled back: no workflow, no deadline. */
    PQclear(PQexec(pg, "BEGIN"));
    cairn_enqueue_options eo = {.size = sizeof eo, .id = "to-c", .delay_ms = 30000, .timeout_ms = 1000};
    T_OK(NULL, cairn_enqueue(pg, "flaky", "0", &eo, NULL));
    assert_int_equal(PQresultStatus(r = PQexec(pg, "SELECT count(*) FROM cairn.deadlines WHERE workflow_id = 'to-c'")),
                     PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(r, 0, 0), "1");
    PQclear(r);
    PQclear(PQexec(pg, "ROLLBACK"));
    T_OK(NULL, cairn_enqueue(pg, "flaky", "0", &eo, NULL)); /* and committed */
    PQfinish(pg);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.deadlines WHERE workflow_id IN ('to-sql', 'to-c')"), 2);
    wait_scalar("SELECT count(*) FROM cairn.workflows WHERE id IN ('to-sql', 'to-c') AND status = 'CANCELLED'"
                " AND error->>'message' LIKE 'timed out%'",
                2, 8000);
    assert_int_equal(atomic_load(&counted), 0);
    cairn_close(h2);
}

/* A workflow that finishes in time keeps its result when its deadline later passes. */
static void test_timeout_not_reached(void **state)
{
    atomic_store(&fail_flaky, 0);
    cairn_start_options so = {.size = sizeof so, .id = "to-ok", .timeout_ms = 300};
    T_OK(h, cairn_start(h, "flaky", "5", &so, NULL));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "to-ok", 8000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    wait_scalar("SELECT count(*) FROM cairn.deadlines WHERE workflow_id = 'to-ok'", 0, 8000);
    assert_int_equal(status_is("to-ok", "SUCCESS"), 1);
    /* Bad timeouts. */
    so.id = "to-bad";
    so.timeout_ms = -1;
    T_RC(h, CAIRN_EINVAL, cairn_start(h, "flaky", "5", &so, NULL));
    PGconn *pg = t_pg();
    static const struct {
        const char *sql, *sqlstate;
    } bad[] = {
        {"SELECT cairn.set_timeout('to-ok', '1 s')", "55000"},
        {"SELECT cairn.set_timeout('no-such', '1 s')", "P0002"},
        {"SELECT cairn.set_timeout('to-ok', '-1 s')", "22023"},
        {"SELECT cairn.set_timeout(NULL, '1 s')", "22004"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        PGresult *r = PQexec(pg, bad[i].sql);
        const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (!sqlstate || strcmp(sqlstate, bad[i].sqlstate) != 0)
            fail_msg("%s: expected SQLSTATE %s, got %s", bad[i].sql, bad[i].sqlstate, sqlstate ? sqlstate : "(none)");
        PQclear(r);
    }
    PQfinish(pg);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE id = 'to-bad'"), 0);
}

/*
 * A parallel group runs its steps at once, records each at the position of
 * its call although they finish in reverse order, and replays them all
 * without running any again when the workflow resumes after a sleep.
 */
static void test_parallel_steps(void **state)
{
    atomic_store(&slow_peak, 0);
    atomic_store(&slow_runs, 0);
    atomic_store(&counted, 0);
    cairn_start_options so = {.size = sizeof so, .id = "par-1"};
    T_OK(h, cairn_start(h, "fanout", "0", &so, NULL));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "par-1", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"slept\": 400, \"step\": 1},{\"slept\": 300, \"step\": 2},"
                             "{\"slept\": 200, \"step\": 3},{\"slept\": 100, \"step\": 4}]");
    cairn_free(res);
    print_message("parallel steps: %d ran at once\n", atomic_load(&slow_peak));
    assert_true(atomic_load(&slow_peak) >= 2);
    /* Each step ran once: the replay after the sleep took all four from the recording. */
    assert_int_equal(atomic_load(&slow_runs), 4);
    assert_int_equal(atomic_load(&counted), 1);
    /* Recorded at the positions of their calls, though the last finished first. */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-1' AND step <= 4"
                              " AND output->>'step' = step::text AND (output->>'slept')::int = 500 - 100 * step"),
                     4);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps a JOIN cairn.steps b ON a.workflow_id = b.workflow_id"
                              " WHERE a.workflow_id = 'par-1' AND a.step = 4 AND b.step = 1"
                              " AND a.created_at < b.created_at"),
                     1);
}

/*
 * A group with a transactional step and the gate, cancelled while the gate
 * holds: the other two are recorded, the gate's give-up is not; resumed,
 * only the gate runs, in its own position, and the write happened once.
 */
static void test_parallel_cancel_and_resume(void **state)
{
    atomic_store(&gate_open, 0);
    atomic_store(&gate_entered, 0);
    atomic_store(&gate_saw_cancel, 0);
    atomic_store(&counted, 0);
    cairn_start_options so = {.size = sizeof so, .id = "par-2"};
    T_OK(h, cairn_start(h, "mixed", "0", &so, NULL));
    wait_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-2'", 2, 10000);
    assert_int_equal(atomic_load(&gate_entered), 1);
    T_OK(h, cairn_cancel(h, "par-2", 0));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "par-2", 10000, &st, NULL));
    assert_int_equal(st, CAIRN_STATUS_CANCELLED);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-2' AND step IN (1, 3)"), 2);
    atomic_store(&gate_open, 1);
    T_OK(h, cairn_resume(h, "par-2"));
    T_OK(h, cairn_await(h, "par-2", 10000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[11,2,4]");
    cairn_free(res);
    assert_int_equal(atomic_load(&gate_entered), 2);
    assert_int_equal(atomic_load(&counted), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'par-2'"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-2' AND step = 2"
                              " AND name = 'gate'"),
                     1);

    /* Bad groups are refused, and take no position. */
    so.id = "par-bad";
    T_OK(h, cairn_start(h, "bad_groups", "0", &so, NULL));
    T_OK(h, cairn_await(h, "par-bad", 10000, &st, &res));
    char want[64];
    snprintf(want, sizeof want, "[%d,%d,%d,%d,%d]", CAIRN_EINVAL, CAIRN_EINVAL, CAIRN_ENOTFOUND, CAIRN_EJSON,
             CAIRN_EINVAL);
    assert_string_equal(res, want);
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-bad'"), 0);
}

/* Starts a patchy workflow under code version v and waits until it sleeps, suspended. */
static void start_patchy(const char *id, int v)
{
    atomic_store(&code_version, v);
    cairn_start_options so = {.size = sizeof so, .id = id};
    T_OK(h, cairn_start(h, "patchy", "0", &so, NULL));
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM cairn.workflows WHERE id = '%s' AND waiting = 'sleep'", id);
    wait_scalar(sql, 1, 10000);
}

static void expect_patchy(const char *id, cairn_status want, const char *needle, const char *steps)
{
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, id, 10000, &st, &res));
    if (st != want || !strstr(res, needle))
        fail_msg("%s ended %s with %s; expected %s with '%s'", id, cairn_status_name(st), res, cairn_status_name(want),
                 needle);
    cairn_free(res);
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT string_agg(name, ',' ORDER BY step) AS s FROM cairn.steps"
             " WHERE workflow_id = '%s') x WHERE s = '%s'",
             id, steps);
    if (t_scalar(sql) != 1) {
        snprintf(sql, sizeof sql, "SELECT string_agg(name, ',' ORDER BY step) FROM cairn.steps WHERE workflow_id = '%s'",
                 id);
        PGconn *pg = t_pg();
        PGresult *r = PQexec(pg, sql);
        fail_msg("%s recorded steps %s; expected %s", id, PQgetvalue(r, 0, 0), steps);
    }
}

/* Workflows started before a patch replay the old path; those started after take the new one, and keep it. */
static void test_patch_markers(void **state)
{
    atomic_store(&fail_flaky, 0);
    /* Started under the old code, woken under the patched code: the old path, no marker. */
    start_patchy("pat-1", 1);
    atomic_store(&code_version, 2);
    expect_patchy("pat-1", CAIRN_STATUS_SUCCESS, "3", "count,count,cairn.sleep,count");
    /* Started under the patched code, woken after the patch was deprecated: steps over its marker. */
    start_patchy("pat-2", 2);
    atomic_store(&code_version, 3);
    expect_patchy("pat-2", CAIRN_STATUS_SUCCESS, "3", "count,cairn.patch:extra,flaky,count,cairn.sleep,count");
    /* Started under the deprecated patch: no marker at all. */
    start_patchy("pat-3", 3);
    expect_patchy("pat-3", CAIRN_STATUS_SUCCESS, "3", "count,flaky,count,cairn.sleep,count");
    /* The same change without a patch breaks replay, and says so. */
    start_patchy("pat-4", 1);
    atomic_store(&code_version, 4);
    expect_patchy("pat-4", CAIRN_STATUS_ERROR, "non-deterministic", "count,count,cairn.sleep");
}

/* Bad input: clear codes from C, clear errors from SQL, and nothing written either way. */
static void test_bad_input(void **state)
{
    long before = t_scalar("SELECT count(*) FROM cairn.workflow_status");
    T_RC(h, CAIRN_EINVAL, cairn_cancel(h, NULL, 0));
    T_RC(h, CAIRN_EINVAL, cairn_cancel(h, "", 0));
    T_RC(h, CAIRN_EINVAL, cairn_cancel(h, "run-1", 0x10));
    T_RC(h, CAIRN_EINVAL, cairn_resume(h, "a\nb"));
    T_RC(h, CAIRN_ENOTFOUND, cairn_cancel(h, "no-such", 0));
    T_RC(h, CAIRN_ENOTFOUND, cairn_resume(h, "no-such"));
    T_RC(h, CAIRN_ENOTFOUND, cairn_fork(h, "no-such", 1, NULL, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_fork(h, "src-1", 0, NULL, NULL));
    T_RC(h, CAIRN_EMISUSE, cairn_cancel(h, "src-1", 0)); /* SUCCESS already */
    assert_string_equal(cairn_sqlstate(h), "55000");
    T_RC(h, CAIRN_ENOTFOUND, cairn_cancel(h, "x'); DELETE FROM cairn.workflow_status; --", 0));

    PGconn *pg = t_pg();
    static const struct {
        const char *sql, *sqlstate;
    } bad[] = {
        {"SELECT cairn.cancel(NULL)", "22004"},
        {"SELECT cairn.cancel('')", "22023"},
        {"SELECT cairn.cancel('run-1', NULL)", "22004"},
        {"SELECT cairn.cancel('no-such')", "P0002"},
        {"SELECT cairn.cancel('src-1')", "55000"},
        {"SELECT cairn.resume(repeat('x', 201))", "22023"},
        {"SELECT cairn.resume('src-1')", "55000"},
        {"SELECT cairn.fork('src-1', NULL)", "22023"},
        {"SELECT cairn.fork('src-1', -3)", "22023"},
        {"SELECT cairn.fork('src-1', 1, E'bad\\x01id')", "22023"},
        {"SELECT cairn.fork('src-1', 1, 'res-1')", "23505"},
        {"SELECT cairn.fork('src-1', 1, queue => '')", "22023"},
        {"SELECT cairn.fork('''; DROP TABLE app_writes; --', 1)", "P0002"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        PGresult *r = PQexec(pg, bad[i].sql);
        const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (PQresultStatus(r) != PGRES_FATAL_ERROR || !st || strcmp(st, bad[i].sqlstate) != 0)
            fail_msg("%s: expected SQLSTATE %s, got status %s, SQLSTATE %s", bad[i].sql, bad[i].sqlstate,
                     PQresStatus(PQresultStatus(r)), st ? st : "(none)");
        PQclear(r);
    }
    PQfinish(pg);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflow_status"), before);
    assert_int_equal(status_is("src-1", "SUCCESS"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_writes WHERE workflow_id = 'src-1'"), 3);
}

int main(void)
{
    t_fresh_db("cairn_test_control");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancel_running_from_sql),
        cmocka_unit_test(test_cancel_without_notification),
        cmocka_unit_test(test_cancel_rolled_back),
        cmocka_unit_test(test_cancel_enqueued),
        cmocka_unit_test(test_cancel_with_children),
        cmocka_unit_test(test_cancel_child_wakes_parent),
        cmocka_unit_test(test_resume_cancelled),
        cmocka_unit_test(test_resume_failed),
        cmocka_unit_test(test_fork_transactional),
        cmocka_unit_test(test_patch_markers),
        cmocka_unit_test(test_parallel_steps),
        cmocka_unit_test(test_parallel_cancel_and_resume),
        cmocka_unit_test(test_timeout_running),
        cmocka_unit_test(test_timeout_inherited),
        cmocka_unit_test(test_timeout_from_sql),
        cmocka_unit_test(test_timeout_not_reached),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
