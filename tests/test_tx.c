/*
 * Transactional steps: the step's writes and its checkpoint commit
 * together or not at all; a late "zombie" execution of the same step rolls
 * back; serialization failures, deadlocks and a connection killed in the
 * middle of the step are retried without writing twice.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

static atomic_int entries;      /* executions of the step function under test */
static atomic_int gate_entered; /* the first (zombie) execution is inside its step */
static atomic_int gate_open;    /* the test lets the zombie continue */

/* Inserts one row tagged with the workflow ID, step key and entry number. */
static int insert_row(cairn_step_ctx *s, PGconn *conn, int entry)
{
    char e[16];
    snprintf(e, sizeof e, "%d", entry);
    const char *vals[3] = {cairn_step_workflow_id(s), cairn_step_key(s), e};
    PGresult *r = PQexecParams(conn, "INSERT INTO app_rows (workflow_id, step_key, entry) VALUES ($1, $2, $3::int)", 3,
                               NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    return rc;
}

static int tx_insert(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    int entry = atomic_fetch_add(&entries, 1) + 1;
    int rc = insert_row(s, conn, entry);
    if (rc == CAIRN_OK) {
        char buf[64];
        snprintf(buf, sizeof buf, "{\"entry\": %d}", entry);
        *out = strdup(buf);
    }
    return rc;
}

/* Writes, then fails on its first attempt; the retry must find the first write gone. */
static int tx_fail_once(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    int entry = atomic_fetch_add(&entries, 1) + 1;
    int rc = insert_row(s, conn, entry);
    if (rc != CAIRN_OK)
        return rc;
    if (cairn_step_attempt(s) == 1)
        return cairn_step_fail(s, "failing after writing, attempt %d", cairn_step_attempt(s));
    *out = strdup("\"second time lucky\"");
    return CAIRN_OK;
}

static int tx_always_fails(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    atomic_fetch_add(&entries, 1);
    int rc = insert_row(s, conn, 0);
    return rc != CAIRN_OK ? rc : cairn_step_fail(s, "insufficient funds");
}

/* The first execution writes, then waits inside its transaction until the test opens the gate. */
static int tx_gated(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    int entry = atomic_fetch_add(&entries, 1) + 1;
    int rc = insert_row(s, conn, entry);
    if (rc != CAIRN_OK)
        return rc;
    if (entry == 1) {
        atomic_store(&gate_entered, 1);
        while (!atomic_load(&gate_open))
            usleep(1000);
    }
    char buf[64];
    snprintf(buf, sizeof buf, "{\"entry\": %d}", entry);
    *out = strdup(buf);
    return CAIRN_OK;
}

/* Read-modify-write of one counter with a pause: concurrent runs collide. */
static int tx_increment(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    atomic_fetch_add(&entries, 1);
    PGresult *r = PQexec(conn, "SELECT n FROM counter WHERE id = 1");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn_step_fail_pg(s, r);
        PQclear(r);
        return rc;
    }
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    usleep(50 * 1000);
    char v[32];
    snprintf(v, sizeof v, "%ld", n + 1);
    const char *vals[1] = {v};
    r = PQexecParams(conn, "UPDATE counter SET n = $1::bigint WHERE id = 1", 1, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    return rc;
}

/* Locks two rows in the order the input gives, pausing between: opposite orders deadlock. */
static int tx_lock_pair(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    atomic_fetch_add(&entries, 1);
    int first = strstr(in, "\"first\": 2") ? 2 : 1, second = 3 - first;
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE pair SET n = n + 1 WHERE id = %d", first);
    PGresult *r = PQexec(conn, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    if (rc != CAIRN_OK)
        return rc;
    usleep(100 * 1000);
    snprintf(sql, sizeof sql, "UPDATE pair SET n = n + 1 WHERE id = %d", second);
    r = PQexec(conn, sql);
    rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    return rc;
}

/* Kills its own backend on the first attempt, as a crashed connection would. */
static int tx_lose_connection(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    int entry = atomic_fetch_add(&entries, 1) + 1;
    int rc = insert_row(s, conn, entry);
    if (rc != CAIRN_OK)
        return rc;
    if (entry == 1) {
        PGresult *r = PQexec(conn, "SELECT pg_terminate_backend(pg_backend_pid())");
        rc = cairn_step_fail_pg(s, r);
        PQclear(r);
        return rc;
    }
    return CAIRN_OK;
}

static int tx_commits_itself(cairn_step_ctx *s, PGconn *conn, const char *in, char **out, void *u)
{
    atomic_fetch_add(&entries, 1);
    insert_row(s, conn, 0);
    PQclear(PQexec(conn, "COMMIT"));
    return CAIRN_OK;
}

/* Every workflow here is one step named by its input: {"step": "<name>", ...}. */
static int wf_one_step(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    const char *p = strstr(in, "\"step\": \"");
    if (!p)
        return cairn_fail(ctx, "input names no step");
    char name[64];
    p += 9;
    size_t n = strcspn(p, "\"");
    snprintf(name, sizeof name, "%.*s", (int)n, p);
    return cairn_step(ctx, name, in, out);
}

static cairn *open_worker(const char *executor)
{
    cairn *h = t_open(executor, 8);
    cairn_tx_options once = {.size = sizeof once};
    cairn_tx_options twice = {.size = sizeof twice, .retry = {.max_attempts = 2, .base_ms = 1}};
    cairn_tx_options rr = {.size = sizeof rr, .isolation = CAIRN_REPEATABLE_READ};
    T_OK(h, cairn_register_tx_step(h, "insert", tx_insert, NULL, &once));
    T_OK(h, cairn_register_tx_step(h, "fail_once", tx_fail_once, NULL, &twice));
    T_OK(h, cairn_register_tx_step(h, "always_fails", tx_always_fails, NULL, &twice));
    T_OK(h, cairn_register_tx_step(h, "gated", tx_gated, NULL, NULL));
    T_OK(h, cairn_register_tx_step(h, "increment", tx_increment, NULL, &rr));
    T_OK(h, cairn_register_tx_step(h, "lock_pair", tx_lock_pair, NULL, NULL));
    T_OK(h, cairn_register_tx_step(h, "lose_connection", tx_lose_connection, NULL, &once));
    T_OK(h, cairn_register_tx_step(h, "commits_itself", tx_commits_itself, NULL, &once));
    T_OK(h, cairn_register_workflow(h, "one_step", wf_one_step, NULL));
    return h;
}

static char *run(cairn *h, const char *id, const char *input, cairn_status *st)
{
    cairn_start_options so = {.size = sizeof so, .id = id};
    T_OK(h, cairn_start(h, "one_step", input, &so, NULL));
    char *res = NULL;
    T_OK(h, cairn_await(h, id, 30000, st, &res));
    return res;
}

static long rows_for(const char *id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM app_rows WHERE workflow_id = '%s'", id);
    return t_scalar(sql);
}

static int group_setup(void **state)
{
    t_fresh_db("cairn_test_tx");
    cairn_close(t_open("setup", 1)); /* migrate */
    t_exec("CREATE TABLE app_rows (workflow_id text, step_key text, entry int);"
           "CREATE TABLE counter (id int PRIMARY KEY, n bigint); INSERT INTO counter VALUES (1, 0);"
           "CREATE TABLE pair (id int PRIMARY KEY, n bigint); INSERT INTO pair VALUES (1, 0), (2, 0);");
    return 0;
}

static void test_commit_together(void **state)
{
    cairn *h = open_worker("tx-commit");
    T_OK(h, cairn_start_workers(h));
    atomic_store(&entries, 0);
    cairn_status st;
    char *res = run(h, "commit-1", "{\"step\": \"insert\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "{\"entry\": 1}");
    cairn_free(res);
    assert_int_equal(rows_for("commit-1"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'commit-1'"
                              " AND output::text = '{\"entry\": 1}'"),
                     1);
    cairn_close(h);
}

static void test_failure_rolls_back_writes(void **state)
{
    cairn *h = open_worker("tx-fail");
    T_OK(h, cairn_start_workers(h));
    atomic_store(&entries, 0);
    cairn_status st;
    char *res = run(h, "fail-once-1", "{\"step\": \"fail_once\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    /* Two executions wrote a row each; only the committed attempt's row remains. */
    assert_int_equal(atomic_load(&entries), 2);
    assert_int_equal(rows_for("fail-once-1"), 1);
    assert_int_equal(t_scalar("SELECT entry FROM app_rows WHERE workflow_id = 'fail-once-1'"), 2);

    atomic_store(&entries, 0);
    res = run(h, "always-fails-1", "{\"step\": \"always_fails\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "insufficient funds"));
    cairn_free(res);
    assert_int_equal(atomic_load(&entries), 2);
    assert_int_equal(rows_for("always-fails-1"), 0);
    /* Only the failure is recorded, with no output. */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'always-fails-1'"
                              " AND output IS NULL AND error->>'message' = 'insufficient funds'"),
                     1);

    atomic_store(&entries, 0);
    res = run(h, "commits-itself-1", "{\"step\": \"commits_itself\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "ended its transaction itself"));
    cairn_free(res);
    cairn_close(h);
}

typedef struct zombie_run {
    cairn *h;
    int rc;
    cairn_status st;
    char *res;
} zombie_run;

static void *await_zombie(void *arg)
{
    zombie_run *z = arg;
    z->rc = cairn_await(z->h, "zombie-1", 60000, &z->st, &z->res);
    return NULL;
}

static void test_zombie_writes_once(void **state)
{
    atomic_store(&entries, 0);
    atomic_store(&gate_entered, 0);
    atomic_store(&gate_open, 0);
    /* Executor A starts the workflow; its step writes and then stalls, like a paused process. */
    cairn *a = open_worker("tx-zombie-a");
    T_OK(a, cairn_start_workers(a));
    cairn_start_options so = {.size = sizeof so, .id = "zombie-1"};
    T_OK(a, cairn_start(a, "one_step", "{\"step\": \"gated\"}", &so, NULL));
    while (!atomic_load(&gate_entered))
        usleep(1000);
    /* Executor B takes the workflow over (as adoption of a dead executor would) and runs it. */
    t_exec("UPDATE cairn.workflow_status SET executor_id = 'tx-zombie-b' WHERE id = 'zombie-1'");
    cairn *b = open_worker("tx-zombie-b");
    T_OK(b, cairn_start_workers(b));
    cairn_status st;
    char *res = NULL;
    T_OK(b, cairn_await(b, "zombie-1", 30000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "{\"entry\": 2}");
    cairn_free(res);
    /* Now the zombie wakes up: its checkpoint collides, its transaction rolls back. */
    zombie_run z = {.h = a};
    pthread_t th;
    pthread_create(&th, NULL, await_zombie, &z);
    atomic_store(&gate_open, 1);
    pthread_join(th, NULL);
    /* A's own await ends with the recorded result: the workflow is finished, by B. */
    assert_int_equal(z.rc, CAIRN_OK);
    assert_int_equal(z.st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(z.res, "{\"entry\": 2}");
    cairn_free(z.res);
    cairn_close(a);
    assert_int_equal(atomic_load(&entries), 2);
    assert_int_equal(rows_for("zombie-1"), 1);
    assert_int_equal(t_scalar("SELECT entry FROM app_rows WHERE workflow_id = 'zombie-1'"), 2);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'zombie-1'"), 1);
    /* The zombie could not overwrite the workflow's result either. */
    assert_int_equal(t_scalar("SELECT (executor_id = 'tx-zombie-b' AND status = 'SUCCESS'"
                              " AND output::text = '{\"entry\": 2}')::int FROM cairn.workflows WHERE id = 'zombie-1'"),
                     1);
    cairn_close(b);
}

static void test_serialization_failures_retried(void **state)
{
    cairn *h = open_worker("tx-serial");
    T_OK(h, cairn_start_workers(h));
    atomic_store(&entries, 0);
    long before = t_scalar("SELECT n FROM counter WHERE id = 1");
    enum { N = 4 };
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "serial-%d", i);
        cairn_start_options so = {.size = sizeof so, .id = ids[i]};
        T_OK(h, cairn_start(h, "one_step", "{\"step\": \"increment\"}", &so, NULL));
    }
    for (int i = 0; i < N; i++) {
        cairn_status st;
        char *res = NULL;
        T_OK(h, cairn_await(h, ids[i], 60000, &st, &res));
        assert_int_equal(st, CAIRN_STATUS_SUCCESS);
        cairn_free(res);
    }
    /* No lost update, and the collisions really happened and were retried. */
    assert_int_equal(t_scalar("SELECT n FROM counter WHERE id = 1") - before, N);
    int e = atomic_load(&entries);
    print_message("%d increments took %d executions\n", N, e);
    assert_true(e > N);
    cairn_close(h);
}

static void test_deadlocks_retried(void **state)
{
    cairn *h = open_worker("tx-deadlock");
    T_OK(h, cairn_start_workers(h));
    atomic_store(&entries, 0);
    long deadlocks = t_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
    cairn_start_options so = {.size = sizeof so, .id = "deadlock-1"};
    T_OK(h, cairn_start(h, "one_step", "{\"step\": \"lock_pair\", \"first\": 1}", &so, NULL));
    so.id = "deadlock-2";
    T_OK(h, cairn_start(h, "one_step", "{\"step\": \"lock_pair\", \"first\": 2}", &so, NULL));
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "deadlock-1", 60000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    T_OK(h, cairn_await(h, "deadlock-2", 60000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    /* Each row was incremented once by each workflow: the deadlock victim's work was redone, not doubled. */
    assert_int_equal(t_scalar("SELECT sum(n) FROM pair"), 4);
    usleep(600 * 1000); /* statistics are published with a delay */
    long after = t_scalar("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()");
    print_message("deadlocks detected: %ld, executions: %d\n", after - deadlocks, atomic_load(&entries));
    assert_true(atomic_load(&entries) >= 3);
    cairn_close(h);
}

static void test_connection_lost_in_step(void **state)
{
    cairn *h = open_worker("tx-lost");
    T_OK(h, cairn_start_workers(h));
    atomic_store(&entries, 0);
    cairn_status st;
    char *res = run(h, "lost-1", "{\"step\": \"lose_connection\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    cairn_free(res);
    /* The first execution's write died with its backend; the retry's write is the only one. */
    assert_int_equal(atomic_load(&entries), 2);
    assert_int_equal(rows_for("lost-1"), 1);
    assert_int_equal(t_scalar("SELECT entry FROM app_rows WHERE workflow_id = 'lost-1'"), 2);
    cairn_close(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_together),
        cmocka_unit_test(test_failure_rolls_back_writes),
        cmocka_unit_test(test_zombie_writes_once),
        cmocka_unit_test(test_serialization_failures_retried),
        cmocka_unit_test(test_deadlocks_retried),
        cmocka_unit_test(test_connection_lost_in_step),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
