/*
 * A database that is unreachable at start, connections terminated under
 * running workflows, and a server restart in the middle of a workflow:
 * clear errors where the caller must decide, retries where the library
 * can, and nothing lost or run twice.
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

static atomic_int step_runs;
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static int gate_open, gate_waiting;

static int step_count(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&step_runs, 1);
    char buf[32];
    snprintf(buf, sizeof buf, "%d", atoi(in) + 1);
    *out = strdup(buf);
    return CAIRN_OK;
}

/* Blocks until the test opens the gate, so the test can break things meanwhile. */
static int step_gate(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_fetch_add(&step_runs, 1);
    pthread_mutex_lock(&gate_lock);
    gate_waiting++;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    *out = strdup(in);
    return CAIRN_OK;
}

static int wf_gated(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    char *a = NULL, *b = NULL;
    int rc = cairn_step(ctx, "count", in, &a);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "gate", a, &b);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "count", b, out);
    free(a);
    free(b);
    return rc;
}

static int wf_three(cairn_ctx *ctx, const char *in, char **out, void *u)
{
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

static cairn *open_worker(int connect_timeout_ms)
{
    cairn_options o = {.size = sizeof o, .conninfo = t_db(), .executor_id = "conn", .workers = 16,
                       .connect_timeout_ms = connect_timeout_ms};
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", cairn_errmsg(h));
    T_OK(h, cairn_register_step(h, "count", step_count, NULL, NULL));
    T_OK(h, cairn_register_step(h, "gate", step_gate, NULL, NULL));
    T_OK(h, cairn_register_workflow(h, "gated", wf_gated, NULL));
    T_OK(h, cairn_register_workflow(h, "three", wf_three, NULL));
    T_OK(h, cairn_start_workers(h));
    return h;
}

static void wait_for_gate(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_waiting)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void set_gate(int open)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = open;
    gate_waiting = 0;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void terminate_backends(void)
{
    t_scalar("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
             " WHERE datname = current_database() AND pid <> pg_backend_pid()");
}

static void test_unreachable_at_open(void **state)
{
    cairn_options o = {.size = sizeof o,
                       .conninfo = "host=/tmp/cairn-no-such-server-dir port=5432 user=postgres dbname=x",
                       .connect_timeout_ms = 2000};
    cairn *h = NULL;
    T_RC(h, CAIRN_ECONN, cairn_open(&h, &o));
    assert_non_null(strstr(cairn_errmsg(h), "cannot connect"));
    cairn_close(h);
    o.conninfo = "this is not a conninfo";
    T_RC(h, CAIRN_EINVAL, cairn_open(&h, &o));
    assert_non_null(strstr(cairn_errmsg(h), "malformed"));
    cairn_close(h);
}

static void test_backend_terminated_mid_workflow(void **state)
{
    cairn *h = open_worker(10000);
    atomic_store(&step_runs, 0);
    set_gate(0);
    cairn_start_options so = {.size = sizeof so, .id = "terminated-1"};
    T_OK(h, cairn_start(h, "gated", "0", &so, NULL));
    wait_for_gate();
    terminate_backends(); /* every connection the handle holds dies */
    set_gate(1);
    cairn_status st;
    char *res = NULL;
    T_OK(h, cairn_await(h, "terminated-1", 30000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "2");
    cairn_free(res);
    assert_int_equal(atomic_load(&step_runs), 3);
    cairn_close(h);
}

typedef struct killer {
    atomic_int stop;
    int rounds;
} killer;

static void *kill_loop(void *arg)
{
    killer *k = arg;
    while (!atomic_load(&k->stop)) {
        terminate_backends();
        k->rounds++;
        usleep(30 * 1000);
    }
    return NULL;
}

static void test_backends_terminated_under_load(void **state)
{
    cairn *h = open_worker(10000);
    atomic_store(&step_runs, 0);
    killer k = {.rounds = 0};
    atomic_init(&k.stop, 0);
    pthread_t th;
    pthread_create(&th, NULL, kill_loop, &k);
    enum { N = 60 };
    char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "load-%d", i);
        cairn_start_options so = {.size = sizeof so, .id = ids[i]};
        /* A start may meet a dead connection; it retries within connect_timeout. */
        T_OK(h, cairn_start(h, "three", "0", &so, NULL));
    }
    for (int i = 0; i < N; i++) {
        cairn_status st;
        char *res = NULL;
        T_OK(h, cairn_await(h, ids[i], 60000, &st, &res));
        assert_int_equal(st, CAIRN_STATUS_SUCCESS);
        assert_string_equal(res, "3");
        cairn_free(res);
    }
    atomic_store(&k.stop, 1);
    pthread_join(th, NULL);
    print_message("terminated the handle's backends %d times during the run\n", k.rounds);
    assert_true(k.rounds > 0);
    /* Every step ran exactly once: a lost checkpoint write is retried, not re-run. */
    assert_int_equal(atomic_load(&step_runs), 3 * N);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id LIKE 'load-%'"), 3 * N);
    cairn_close(h);
}

/*
 * A claim commits on the server and its answer is lost with the connection:
 * the workflow is PENDING under this live executor, which runs it nowhere.
 * The row is written here as that claim leaves it; when the dispatcher
 * reconnects it must find and run the workflow (nothing else would: the
 * executor's heartbeats keep others from adopting it). A workflow running
 * here meanwhile must not be started a second time.
 */
static void test_lost_claim_answer(void **state)
{
    t_exec("UPDATE cairn.wakeup SET armed = false"); /* raised again only by this handle's dispatcher */
    cairn *h = open_worker(10000);
    atomic_store(&step_runs, 0);
    set_gate(0);
    cairn_start_options so = {.size = sizeof so, .id = "running-here"};
    T_OK(h, cairn_start(h, "gated", "0", &so, NULL));
    wait_for_gate();
    /*
     * The dispatcher must have had its first connection (a dispatcher that
     * never connected never claimed, and finds the row by its start-up
     * recovery, not by the reclaim): wait for its first look to end, which
     * raises the wake-up flag, idle with threads free. (The statement's
     * text in pg_stat_activity, tried first, also shows while any of the
     * handle's connections is still preparing it: a race.)
     */
    for (int i = 0; t_scalar("SELECT armed::int FROM cairn.wakeup") == 0; i++) {
        if (i > 3000) {
            set_gate(1);
            fail_msg("the dispatcher made no look within 30 s");
        }
        usleep(10 * 1000);
    }
    t_exec("INSERT INTO cairn.workflow_status (id, name, status, queue, executor_id, attempts, input, started_at)"
           " VALUES ('lost-answer', 'three', 'PENDING', 'default', 'conn', 1, '10', now())");
    terminate_backends();
    cairn_status st;
    char *res = NULL;
    int rc = cairn_await(h, "lost-answer", 30000, &st, &res);
    set_gate(1); /* before any assertion, so that a failure does not leave a step blocked */
    T_OK(h, rc);
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "13");
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT attempts FROM cairn.workflow_status WHERE id = 'lost-answer'"), 1);
    T_OK(h, cairn_await(h, "running-here", 30000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "2");
    cairn_free(res);
    assert_int_equal(atomic_load(&step_runs), 3 + 3); /* the gated workflow's steps ran once each */
    cairn_close(h);
}

/* Runs the CLI's dev subcommand on the suite's throwaway server. */
static int dev(const char *action)
{
    const char *cli = getenv("CAIRN_CLI"), *dir = getenv("CAIRN_TEST_DEV_DIR");
    pid_t pid = fork();
    if (pid == 0) {
        execl(cli, cli, "dev", action, "--dir", dir, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_server_restart_mid_workflow(void **state)
{
    if (getenv("CAIRN_DATABASE_URL") || !getenv("CAIRN_CLI") || !getenv("CAIRN_TEST_DEV_DIR"))
        skip(); /* only the suite's own throwaway server may be restarted */
    cairn *h = open_worker(1500);
    atomic_store(&step_runs, 0);
    set_gate(0);
    cairn_start_options so = {.size = sizeof so, .id = "restart-1"};
    T_OK(h, cairn_start(h, "gated", "5", &so, NULL));
    wait_for_gate();
    assert_int_equal(dev("stop"), 0);
    set_gate(1); /* step 2 finishes while the server is down: its checkpoint write must wait */
    usleep(500 * 1000);
    /* A start while the server is down fails clearly within connect_timeout and writes nothing. */
    so.id = "restart-2";
    T_RC(h, CAIRN_ECONN, cairn_start(h, "three", "0", &so, NULL));
    cairn_status st;
    T_RC(h, CAIRN_ECONN, cairn_get_status(h, "restart-1", &st));
    assert_int_equal(dev("start"), 0);
    char *res = NULL;
    T_OK(h, cairn_await(h, "restart-1", 30000, &st, &res));
    assert_int_equal(st, CAIRN_STATUS_SUCCESS);
    assert_string_equal(res, "7");
    cairn_free(res);
    assert_int_equal(atomic_load(&step_runs), 3);
    /* Retrying the failed start with the same ID now works. */
    T_OK(h, cairn_start(h, "three", "0", &so, NULL));
    T_OK(h, cairn_await(h, "restart-2", 30000, &st, &res));
    assert_string_equal(res, "3");
    cairn_free(res);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'restart-1'"), 3);
    cairn_close(h);
}

int main(void)
{
    t_fresh_db("cairn_test_conn");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unreachable_at_open),
        cmocka_unit_test(test_backend_terminated_mid_workflow),
        cmocka_unit_test(test_backends_terminated_under_load),
        cmocka_unit_test(test_lost_claim_answer),
        cmocka_unit_test(test_server_restart_mid_workflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
