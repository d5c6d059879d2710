/*
 * SQL steps (cairn_register_sql_step): the step's statement and its
 * checkpoint commit as one statement, or neither does. Its rows are its
 * output and are replayed, never re-run; a failing statement leaves no
 * write; a checkpoint another execution already holds rolls the step's
 * writes back; a unique violation of the application's is a failure, not
 * a recorded step; serialization failures and a backend killed in the
 * middle of the statement are retried without writing twice. Last, a
 * worker process running SQL steps is SIGKILLed at random moments, dozens
 * of times, and its backends are terminated mid-statement: every workflow
 * must finish with each step's row written exactly once.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

static atomic_int fail_after_step; /* the next run of "then_fail" fails after its step */
static atomic_int retries_logged;  /* "SQLSTATE 40001, retrying" lines from the library */

/* Runs the step named by the input's "step", with the whole input as the step's. */
static int wf_one_step(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    (void)u;
    const char *p = strstr(in, "\"step\": \"");
    if (!p)
        return cairn_fail(ctx, "input names no step");
    char name[64];
    p += 9;
    size_t n = strcspn(p, "\"");
    snprintf(name, sizeof name, "%.*s", (int)n, p);
    return cairn_step(ctx, name, in, out);
}

/* The SQL step, then a failure the first time, so that a resume replays the step. */
static int wf_then_fail(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    (void)u;
    int rc = cairn_step(ctx, "add_row", in, out);
    if (rc != CAIRN_OK)
        return rc;
    if (atomic_exchange(&fail_after_step, 0)) {
        free(*out);
        *out = NULL;
        return cairn_fail(ctx, "failing after the step, once");
    }
    return CAIRN_OK;
}

static void count_retries(void *udata, int level, const char *message)
{
    (void)udata, (void)level;
    if (strstr(message, "SQLSTATE 40001, retrying"))
        atomic_fetch_add(&retries_logged, 1);
}

static cairn *open_worker(const char *executor, size_t max_payload)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = executor;
    o.workers = 4;
    o.max_payload = max_payload;
    o.log = count_retries;
    o.log_level = CAIRN_LOG_DEBUG;
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", cairn_errmsg(h));
    cairn_tx_options once = {.size = sizeof once};
    cairn_tx_options rr = {.size = sizeof rr, .isolation = CAIRN_REPEATABLE_READ};
    T_OK(h, cairn_register_sql_step(h, "add_row",
                                    "INSERT INTO app_rows (workflow_id, step_key, entry)"
                                    " VALUES ($1->>'id', 'add_row', 1) RETURNING workflow_id, entry",
                                    &once));
    T_OK(h, cairn_register_sql_step(h, "add_plain",
                                    "  INSERT INTO app_rows (workflow_id, step_key, entry)"
                                    " VALUES ($1->>'id', 'add_plain', 1) ; \n",
                                    &once));
    T_OK(h, cairn_register_sql_step(h, "read_counter", "SELECT n FROM counter WHERE id = 1 -- a trailing comment",
                                    &once));
    T_OK(h, cairn_register_sql_step(h, "fails_after_write",
                                    "INSERT INTO app_rows (workflow_id, step_key, entry)"
                                    " VALUES ($1->>'id', 'fails', 1) RETURNING entry / (entry - 1) AS x",
                                    &once));
    T_OK(h, cairn_register_sql_step(h, "unique_key", "INSERT INTO uniq (k) VALUES ($1->>'k') RETURNING k", &once));
    T_OK(h, cairn_register_sql_step(h, "second_param", "SELECT $2::text AS x", &once));
    T_OK(h, cairn_register_sql_step(h, "bad_syntax", "SELEC 1", &once));
    T_OK(h, cairn_register_sql_step(h, "utility", "SET work_mem = '8MB'", &once));
    T_OK(h, cairn_register_sql_step(h, "nested_write",
                                    "WITH a AS (INSERT INTO app_rows VALUES ($1->>'id', 'nested', 1) RETURNING entry)"
                                    " SELECT entry FROM a",
                                    &once));
    T_OK(h, cairn_register_sql_step(h, "two_writes", "SELECT * FROM two_writes($1)", &once));
    T_OK(h, cairn_register_sql_step(h, "big", "SELECT repeat('x', ($1->>'n')::int) AS big", &once));
    T_OK(h, cairn_register_sql_step(h, "increment_rr", "UPDATE counter SET n = n + 1 WHERE id = 2 RETURNING n", &rr));
    T_OK(h, cairn_register_sql_step(h, "slow_insert",
                                    "INSERT INTO app_rows (workflow_id, step_key, entry) VALUES ($1->>'id', 'slow', 1)"
                                    " RETURNING entry, pg_sleep(($1->>'sleep')::float8)::text AS slept",
                                    &once));
    T_OK(h, cairn_register_workflow(h, "one_step", wf_one_step, NULL));
    T_OK(h, cairn_register_workflow(h, "then_fail", wf_then_fail, NULL));
    return h;
}

static char *run_wf(cairn *h, const char *workflow, const char *id, const char *input, cairn_status *st)
{
    cairn_start_options so = {.size = sizeof so, .id = id};
    T_OK(h, cairn_start(h, workflow, input, &so, NULL));
    char *res = NULL;
    T_OK(h, cairn_await(h, id, 60000, st, &res));
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
    (void)state;
    t_fresh_db("cairn_test_sql_step");
    cairn_close(t_open("setup", 1)); /* migrate */
    t_exec("CREATE TABLE app_rows (workflow_id text, step_key text, entry int);"
           "CREATE TABLE uniq (k text PRIMARY KEY);"
           "CREATE TABLE counter (id int PRIMARY KEY, n bigint); INSERT INTO counter VALUES (1, 41), (2, 0);"
           /* Writes to several tables, for a SQL step that calls it. */
           "CREATE FUNCTION two_writes(input json) RETURNS TABLE (workflow_id text, total bigint) LANGUAGE plpgsql AS $f$"
           " BEGIN"
           "   INSERT INTO app_rows VALUES (input->>'id', 'two_writes', 1);"
           "   UPDATE counter SET n = counter.n + 1 WHERE counter.id = 1;"
           "   RETURN QUERY SELECT input->>'id', (SELECT c.n FROM counter c WHERE c.id = 1);"
           " END $f$;");
    return 0;
}

static void test_rows_are_the_output(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-output", 0);
    T_OK(h, cairn_start_workers(h));
    cairn_status st;
    char *res = run_wf(h, "one_step", "out-1", "{\"step\": \"add_row\", \"id\": \"out-1\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"workflow_id\":\"out-1\",\"entry\":1}]");
    cairn_free(res);
    assert_int_equal(rows_for("out-1"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'out-1' AND step = 1"
                              " AND name = 'add_row' AND output::text = '[{\"workflow_id\":\"out-1\",\"entry\":1}]'"),
                     1);

    /* No RETURNING: the write happens and the output is null. Leading blanks and a trailing ';' are dropped. */
    res = run_wf(h, "one_step", "out-2", "{\"step\": \"add_plain\", \"id\": \"out-2\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "null");
    cairn_free(res);
    assert_int_equal(rows_for("out-2"), 1);

    /* A SELECT, ending in a comment. */
    res = run_wf(h, "one_step", "out-3", "{\"step\": \"read_counter\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"n\":41}]");
    cairn_free(res);

    /* Writes to two tables through a function the statement calls, committed with the checkpoint. */
    res = run_wf(h, "one_step", "out-4", "{\"step\": \"two_writes\", \"id\": \"out-4\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"workflow_id\":\"out-4\",\"total\":42}]");
    cairn_free(res);
    assert_int_equal(rows_for("out-4"), 1);
    assert_int_equal(t_scalar("SELECT n FROM counter WHERE id = 1"), 42);
    cairn_close(h);
}

static void test_replay_does_not_run_again(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-replay", 0);
    T_OK(h, cairn_start_workers(h));
    atomic_store(&fail_after_step, 1);
    cairn_status st;
    char *res = run_wf(h, "then_fail", "replay-1", "{\"id\": \"replay-1\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    cairn_free(res);
    assert_int_equal(rows_for("replay-1"), 1);
    /* The resumed run gets the step's recorded rows; the statement does not run again. */
    T_OK(h, cairn_resume(h, "replay-1"));
    res = NULL;
    T_OK(h, cairn_await(h, "replay-1", 60000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"workflow_id\":\"replay-1\",\"entry\":1}]");
    cairn_free(res);
    assert_int_equal(rows_for("replay-1"), 1);
    cairn_close(h);
}

static void test_failure_writes_nothing(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-fail", 0);
    T_OK(h, cairn_start_workers(h));
    cairn_status st;
    char *res = run_wf(h, "one_step", "fail-1", "{\"step\": \"fails_after_write\", \"id\": \"fail-1\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "division by zero"));
    assert_non_null(strstr(res, "SQLSTATE 22012"));
    cairn_free(res);
    /* The statement's INSERT rolled back with it; the failure alone is recorded. */
    assert_int_equal(rows_for("fail-1"), 0);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'fail-1'"
                              " AND output IS NULL AND error->>'message' LIKE '%division by zero%'"),
                     1);

    /* The application's own unique key is a failure of the step, not a checkpoint someone else holds. */
    res = run_wf(h, "one_step", "uniq-1", "{\"step\": \"unique_key\", \"k\": \"a\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"k\":\"a\"}]");
    cairn_free(res);
    res = run_wf(h, "one_step", "uniq-2", "{\"step\": \"unique_key\", \"k\": \"a\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_ERROR);
    assert_non_null(strstr(res, "SQLSTATE 23505"));
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT count(*) FROM uniq"), 1);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'uniq-2' AND error IS NOT NULL"),
                     1);
    cairn_close(h);
}

static void test_recorded_checkpoint_rolls_back(void **state)
{
    (void)state;
    /*
     * Another execution recorded step 1 of this workflow already (as a
     * replaced executor's successor would have): the statement's write
     * must roll back and the recorded output must be the step's result.
     */
    t_exec("INSERT INTO cairn.steps (workflow_id, step, name, output)"
           " VALUES ('zombie-1', 1, 'add_row', '[{\"recorded\":true}]')");
    cairn *h = open_worker("sql-zombie", 0);
    T_OK(h, cairn_start_workers(h));
    cairn_status st;
    char *res = run_wf(h, "one_step", "zombie-1", "{\"step\": \"add_row\", \"id\": \"zombie-1\"}", &st);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"recorded\":true}]");
    cairn_free(res);
    assert_int_equal(rows_for("zombie-1"), 0);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'zombie-1'"), 1);
    cairn_close(h);
}

static void test_bad_statements(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-bad", 1000);
    /* Registration refuses what cannot be a statement. */
    T_RC(h, CAIRN_EINVAL, cairn_register_sql_step(h, "none", NULL, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_register_sql_step(h, "blank", " ; \n;", NULL));
    T_RC(h, CAIRN_EINVAL, cairn_register_sql_step(h, "cairn.mine", "SELECT 1", NULL));
    T_RC(h, CAIRN_EINVAL, cairn_register_sql_step(h, "add_row", "SELECT 1", NULL)); /* taken */
    cairn_tx_options bad = {.size = sizeof bad, .isolation = (cairn_isolation)7};
    T_RC(h, CAIRN_EINVAL, cairn_register_sql_step(h, "bad_iso", "SELECT 1", &bad));
    T_OK(h, cairn_start_workers(h));
    T_RC(h, CAIRN_EMISUSE, cairn_register_sql_step(h, "late", "SELECT 1", NULL));

    static const struct {
        const char *step, *expect;
    } cases[] = {
        {"second_param", "refers to $2"},
        {"bad_syntax", "SQLSTATE 42601"},
        {"utility", "inside WITH"},
        {"nested_write", "must be at the top level"},
        {"big", "the limit is 1000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char id[32], in[96];
        snprintf(id, sizeof id, "bad-%zu", i);
        snprintf(in, sizeof in, "{\"step\": \"%s\", \"n\": 2000}", cases[i].step);
        cairn_status st;
        char *res = run_wf(h, "one_step", id, in, &st);
        print_message("%s: %s\n", cases[i].step, res);
        assert_int_equal(st, CAIRN_STATUS_ERROR);
        assert_non_null(strstr(res, cases[i].expect));
        cairn_free(res);
    }
    /* Nothing of the oversized step was recorded as output. */
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'bad-4' AND output IS NOT NULL"),
                     0);
    assert_int_equal(t_scalar("SELECT count(*) FROM app_rows WHERE step_key = 'nested'"), 0);
    cairn_close(h);
}

typedef struct holder {
    PGconn *pg;
} holder;

/* Waits until a backend runs a SQL step's statement and is waiting, here for a lock or a sleep. */
static int wait_for_step_backend(const char *wait_event, char *pid, size_t pidlen)
{
    PGconn *pg = t_pg();
    const char *vals[1] = {wait_event};
    int found = 0;
    for (int i = 0; i < 3000 && !found; i++) {
        PGresult *r = PQexecParams(pg,
                                   "SELECT pid FROM pg_stat_activity WHERE query LIKE '%cairn_step_rows%'"
                                   " AND wait_event = $1 AND pid <> pg_backend_pid()",
                                   1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
            snprintf(pid, pidlen, "%s", PQgetvalue(r, 0, 0));
            found = 1;
        }
        PQclear(r);
        if (!found)
            usleep(10 * 1000);
    }
    PQfinish(pg);
    return found;
}

static void test_serialization_failure_retried(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-serial", 0);
    T_OK(h, cairn_start_workers(h));
    atomic_store(&retries_logged, 0);
    /* Hold the row, let the REPEATABLE READ step take its snapshot and wait for it, then commit. */
    PGconn *pg = t_pg();
    PQclear(PQexec(pg, "BEGIN"));
    PQclear(PQexec(pg, "UPDATE counter SET n = n + 1 WHERE id = 2"));
    cairn_start_options so = {.size = sizeof so, .id = "serial-1"};
    T_OK(h, cairn_start(h, "one_step", "{\"step\": \"increment_rr\"}", &so, NULL));
    char pid[16];
    assert_true(wait_for_step_backend("transactionid", pid, sizeof pid));
    PGresult *r = PQexec(pg, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(pg);
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "serial-1", 60000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    /* The first attempt failed with 40001 and was retried; the retry saw the other update. */
    assert_string_equal(res, "[{\"n\":2}]");
    cairn_free(res);
    assert_true(atomic_load(&retries_logged) >= 1);
    assert_int_equal(t_scalar("SELECT n FROM counter WHERE id = 2"), 2);
    cairn_close(h);
}

static void *kill_step_backend(void *arg)
{
    int *killed = arg;
    char pid[16];
    if (wait_for_step_backend("PgSleep", pid, sizeof pid)) {
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%s)::int", pid);
        *killed = (int)t_scalar(sql);
    }
    return NULL;
}

static void test_backend_killed_mid_statement(void **state)
{
    (void)state;
    cairn *h = open_worker("sql-killed", 0);
    T_OK(h, cairn_start_workers(h));
    int killed = 0;
    pthread_t th;
    pthread_create(&th, NULL, kill_step_backend, &killed);
    cairn_status st;
    char *res = run_wf(h, "one_step", "killed-1", "{\"step\": \"slow_insert\", \"id\": \"killed-1\", \"sleep\": 0.3}",
                       &st);
    pthread_join(th, NULL);
    assert_int_equal(killed, 1);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "[{\"entry\":1,\"slept\":\"\"}]");
    cairn_free(res);
    /* The killed statement's write died with its backend; the retry's is the only one. */
    assert_int_equal(rows_for("killed-1"), 1);
    cairn_close(h);
}

/* ---- chaos: SIGKILLed workers and terminated backends ------------------- */

enum { CHAOS_ROUND = 150, CHAOS_STEPS = 3, CHAOS_MIN_KILLS = 40, CHAOS_MAX_ROUNDS = 12 };

/* Three SQL steps, each writing one row keyed by the workflow and the step's number. */
static int wf_chaos(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    (void)in, (void)u;
    long sum = 0;
    for (int k = 1; k <= CHAOS_STEPS; k++) {
        char input[160], *o = NULL;
        snprintf(input, sizeof input, "{\"id\": \"%s\", \"k\": %d}", cairn_ctx_id(ctx), k);
        int rc = cairn_step(ctx, "chaos_row", input, &o);
        if (rc != CAIRN_OK)
            return rc;
        const char *p = o ? strstr(o, "\"k\":") : NULL;
        sum += p ? atol(p + 4) : 1000;
        free(o);
    }
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", sum);
    *out = strdup(buf);
    return *out ? CAIRN_OK : CAIRN_ENOMEM;
}

/* The worker process: serves the chaos workflows under one executor ID until it is killed. */
static void chaos_worker(void)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = "sql-chaos";
    o.workers = 4;
    o.poll_interval_ms = 100;
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        _exit(3);
    if (cairn_register_sql_step(h, "chaos_row",
                                "INSERT INTO chaos_rows (workflow_id, k) VALUES ($1->>'id', ($1->>'k')::int)"
                                " RETURNING k, pg_sleep(0.01)::text AS slept",
                                NULL) != CAIRN_OK ||
        cairn_register_workflow(h, "chaos", wf_chaos, NULL) != CAIRN_OK || cairn_start_workers(h) != CAIRN_OK)
        _exit(4);
    for (;;)
        pause();
}

static pid_t spawn_chaos_worker(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        chaos_worker();
    assert_true(pid > 0);
    return pid;
}

static long chaos_done(void)
{
    return t_scalar("SELECT count(*) FROM cairn.workflow_status WHERE name = 'chaos' AND status = 'SUCCESS'");
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_chaos_exactly_once(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL);
    if (getenv("SQL_CHAOS_SEED"))
        seed = (unsigned)atoi(getenv("SQL_CHAOS_SEED"));
    srand(seed);
    print_message("chaos seed %u (SQL_CHAOS_SEED repeats the choices)\n", seed);
    t_exec("CREATE TABLE chaos_rows (workflow_id text NOT NULL, k int NOT NULL)"); /* no key: a duplicate shows */
    int kills = 0, terminated = 0, rounds = 0;
    long want = 0;
    while (rounds < CHAOS_MAX_ROUNDS && (rounds == 0 || kills < CHAOS_MIN_KILLS)) {
        rounds++;
        want += CHAOS_ROUND;
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT count(cairn.enqueue('chaos', 'null')) FROM generate_series(1, %d)",
                 CHAOS_ROUND);
        assert_int_equal(t_scalar(sql), CHAOS_ROUND);
        while (chaos_done() < want) {
            if (kills > 2000)
                fail_msg("%ld of %ld chaos workflows done after %d kills: the workers make no progress", chaos_done(),
                         want, kills);
            pid_t pid = spawn_chaos_worker();
            sleep_ms(40 + rand() % 260);
            if (rand() % 3 == 0) {
                /* Terminate the worker's backends that are inside a SQL step's statement, then let it go on. */
                terminated += (int)t_scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                            " WHERE query LIKE '%cairn_step_rows%' AND state = 'active'"
                                            "   AND pid <> pg_backend_pid()");
                sleep_ms(40 + rand() % 200);
            }
            kill(pid, SIGKILL);
            int status = 0;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            if (!WIFSIGNALED(status))
                fail_msg("the chaos worker exited by itself (status %d) instead of being killed", status);
            kills++;
        }
    }
    print_message("%d rounds of %d workflows, %d SIGKILLs, %d backends terminated mid-statement\n", rounds,
                  CHAOS_ROUND, kills, terminated);
    assert_true(kills >= CHAOS_MIN_KILLS);
    /* Every workflow finished with the right output, and every step's row is there exactly once. */
    assert_int_equal(chaos_done(), want);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflows WHERE name = 'chaos'"
                              " AND (status <> 'SUCCESS' OR output::text <> '6')"),
                     0);
    assert_int_equal(t_scalar("SELECT count(*) FROM (SELECT workflow_id, k FROM chaos_rows"
                              " GROUP BY 1, 2 HAVING count(*) <> 1) d"),
                     0);
    assert_int_equal(t_scalar("SELECT count(*) FROM chaos_rows"), want * CHAOS_STEPS);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps s JOIN cairn.workflow_status w ON w.id = s.workflow_id"
                              " WHERE w.name = 'chaos' AND s.output IS NOT NULL"),
                     want * CHAOS_STEPS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_are_the_output),
        cmocka_unit_test(test_replay_does_not_run_again),
        cmocka_unit_test(test_failure_writes_nothing),
        cmocka_unit_test(test_recorded_checkpoint_rolls_back),
        cmocka_unit_test(test_bad_statements),
        cmocka_unit_test(test_serialization_failure_retried),
        cmocka_unit_test(test_backend_killed_mid_statement),
        cmocka_unit_test(test_chaos_exactly_once),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
