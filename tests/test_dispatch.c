/*
 * The dispatcher: enqueued workflows are claimed exactly once across
 * several executors, in priority order, not before their delay, only by
 * executors that know their name, and an idle dispatcher is woken by the
 * enqueue's NOTIFY rather than its poll, a busy one by a thread coming free.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

enum { MANY = 600 };
static atomic_int runs[MANY];     /* executions per workflow of the "many" test */
static atomic_int order_pos;
static int order_seen[8];         /* priorities in the order their workflows ran */
static atomic_llong first_step_ms; /* when the latency test's step ran */
static atomic_int hold_release;    /* set to let the "hold" workflow finish */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int step_count(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    int i = atoi(in);
    if (i >= 0 && i < MANY)
        atomic_fetch_add(&runs[i], 1);
    usleep(5000); /* so that no one executor can drain the backlog before the others have started */
    *out = strdup(in);
    return CAIRN_OK;
}

static int step_order(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    int pos = atomic_fetch_add(&order_pos, 1);
    if (pos < 8)
        order_seen[pos] = atoi(in);
    usleep(20 * 1000);
    return CAIRN_OK;
}

static int step_stamp(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    atomic_store(&first_step_ms, now_ms());
    return CAIRN_OK;
}

/* Runs until the test releases it (at most 30 s), keeping one executor thread busy. */
static int step_hold(cairn_step_ctx *s, const char *in, char **out, void *u)
{
    for (int i = 0; i < 3000 && !atomic_load(&hold_release); i++)
        usleep(10 * 1000);
    return CAIRN_OK;
}

static int wf_hold(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "hold", in, NULL);
}

static int wf_count(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "count", in, out);
}

static int wf_order(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "order", in, NULL);
}

static int wf_stamp(cairn_ctx *ctx, const char *in, char **out, void *u)
{
    return cairn_step(ctx, "stamp", in, NULL);
}

/*
 * A handle with the test's workflows registered, its workers not started
 * yet. The dispatcher also looks for work when it heartbeats (every
 * lease / 5): with a poll of a minute or more the lease is stretched too,
 * so that only a NOTIFY can start work within the wake-up tests' bounds.
 */
static cairn *unstarted_worker(const char *executor, int workers, int poll_ms)
{
    cairn_options o = {.size = sizeof o, .conninfo = t_db(), .executor_id = executor, .workers = workers,
                       .poll_interval_ms = poll_ms, .lease_ms = poll_ms >= 60000 ? 5 * poll_ms : 0};
    cairn *h = NULL;
    if (cairn_open(&h, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", cairn_errmsg(h));
    T_OK(h, cairn_register_step(h, "count", step_count, NULL, NULL));
    T_OK(h, cairn_register_step(h, "order", step_order, NULL, NULL));
    T_OK(h, cairn_register_step(h, "stamp", step_stamp, NULL, NULL));
    T_OK(h, cairn_register_step(h, "hold", step_hold, NULL, NULL));
    T_OK(h, cairn_register_workflow(h, "hold", wf_hold, NULL));
    T_OK(h, cairn_register_workflow(h, "count", wf_count, NULL));
    T_OK(h, cairn_register_workflow(h, "order", wf_order, NULL));
    T_OK(h, cairn_register_workflow(h, "stamp", wf_stamp, NULL));
    return h;
}

static cairn *worker(const char *executor, int workers, int poll_ms)
{
    cairn *h = unstarted_worker(executor, workers, poll_ms);
    T_OK(h, cairn_start_workers(h));
    return h;
}

static long wait_count(const char *sql, long want, int timeout_ms)
{
    long v = -1;
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        v = t_scalar(sql);
        if (v == want)
            break;
        usleep(50 * 1000);
    }
    return v;
}

static int group_setup(void **state)
{
    t_fresh_db("cairn_test_dispatch");
    cairn_close(t_open("setup", 1));
    return 0;
}

static void test_claimed_once_across_executors(void **state)
{
    /*
     * Enqueued before any worker runs: the backlog is found by claiming,
     * not by a wake-up. The handles are opened first, so that the three
     * start claiming within moments of each other.
     */
    cairn *a = unstarted_worker("disp-a", 8, 200), *b = unstarted_worker("disp-b", 8, 200),
          *c = unstarted_worker("disp-c", 8, 200);
    t_exec("SELECT cairn.enqueue('count', to_json(i), id => 'many-' || i) FROM generate_series(0, 599) i");
    T_OK(a, cairn_start_workers(a));
    T_OK(b, cairn_start_workers(b));
    T_OK(c, cairn_start_workers(c));
    long done = wait_count("SELECT count(*) FROM cairn.workflows WHERE id LIKE 'many-%' AND status = 'SUCCESS'", MANY,
                           60000);
    /* Closed before any assertion, so that a failure here leaves no worker to disturb the next tests. */
    cairn_close(a);
    cairn_close(b);
    cairn_close(c);
    assert_int_equal(done, MANY);
    for (int i = 0; i < MANY; i++)
        if (atomic_load(&runs[i]) != 1)
            fail_msg("workflow many-%d ran %d times", i, atomic_load(&runs[i]));
    /* Every executor took a share. */
    long executors = t_scalar("SELECT count(DISTINCT executor_id) FROM cairn.workflows WHERE id LIKE 'many-%'");
    print_message("600 workflows claimed by %ld executors\n", executors);
    assert_true(executors >= 2);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflows WHERE id LIKE 'many-%'"
                              " AND output::text <> replace(id, 'many-', '')"),
                     0);
}

static void test_unknown_name_waits(void **state)
{
    t_exec("SELECT cairn.enqueue('nobody_knows_this', '1', id => 'orphan-name')");
    cairn *h = worker("disp-unknown", 4, 100);
    usleep(500 * 1000);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'orphan-name'"
                              " AND status = 'ENQUEUED' AND executor_id IS NULL AND attempts = 0"),
                     1);
    cairn_close(h);
}

static void test_priority_order(void **state)
{
    atomic_store(&order_pos, 0);
    /* One transaction, so all are visible at once; one executor thread takes them one by one. */
    t_exec("BEGIN;"
           "SELECT cairn.enqueue('order', '5', priority => 5);"
           "SELECT cairn.enqueue('order', '1', priority => 1);"
           "SELECT cairn.enqueue('order', '3', priority => 3);"
           "SELECT cairn.enqueue('order', '-2', priority => -2);"
           "COMMIT");
    cairn *h = worker("disp-prio", 1, 100);
    long done = wait_count("SELECT count(*) FROM cairn.workflows WHERE name = 'order' AND status = 'SUCCESS'", 4, 20000);
    assert_int_equal(done, 4);
    assert_int_equal(order_seen[0], -2);
    assert_int_equal(order_seen[1], 1);
    assert_int_equal(order_seen[2], 3);
    assert_int_equal(order_seen[3], 5);
    cairn_close(h);
}

static void test_delay_not_before_time(void **state)
{
    cairn *h = worker("disp-delay", 2, 100);
    t_exec("SELECT cairn.enqueue('count', '1', id => 'delayed-1', delay => interval '1500 milliseconds')");
    usleep(800 * 1000);
    assert_int_equal(t_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'delayed-1' AND status = 'ENQUEUED'"),
                     1);
    long done = wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'delayed-1' AND status = 'SUCCESS'", 1,
                           10000);
    assert_int_equal(done, 1);
    /* On the database clock, the step was recorded no earlier than the delay allowed. */
    assert_int_equal(t_scalar("SELECT (s.created_at >= w.created_at + interval '1500 milliseconds')::int"
                              " FROM cairn.steps s JOIN cairn.workflows w ON w.id = s.workflow_id"
                              " WHERE w.id = 'delayed-1'"),
                     1);
    cairn_close(h);
}

/*
 * Enqueues a "stamp" workflow from SQL under `id` and waits (10 s at most)
 * for it to succeed; *done is 1 if it did. Returns the milliseconds from
 * the enqueue's commit to its step.
 */
static long long enqueue_stamp(const char *id, long *done)
{
    char sql[160];
    atomic_store(&first_step_ms, 0);
    long long t0 = now_ms();
    snprintf(sql, sizeof sql, "SELECT cairn.enqueue('stamp', 'null', id => '%s')", id);
    t_exec(sql);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM cairn.workflows WHERE id = '%s' AND status = 'SUCCESS'", id);
    *done = wait_count(sql, 1, 10000);
    return atomic_load(&first_step_ms) - t0;
}

static void test_idle_dispatcher_woken_by_notify(void **state)
{
    /* A 60 s poll interval: only the NOTIFY can start this workflow promptly. */
    cairn *h = worker("disp-notify", 2, 60000);
    usleep(300 * 1000); /* let the dispatcher go idle and arm the flag */
    assert_int_equal(t_scalar("SELECT armed::int FROM cairn.wakeup"), 1);
    long done = 0;
    long long latency = enqueue_stamp("notify-1", &done);
    assert_int_equal(done, 1);
    print_message("enqueue commit to first step: %lld ms\n", latency);
    if (latency > 5000)
        fail_msg("the idle dispatcher took %lld ms: it polled instead of being woken", latency);
    cairn_close(h);
}

/*
 * A dispatcher with one thread busy on a long run and one free has no run
 * end to wake it. Another process's enqueue must still reach it through
 * the NOTIFY, not its 60 s poll: a claim that took less than it wanted
 * raises the wake-up flag (at most every 100 ms).
 */
static void test_busy_dispatcher_woken_by_notify(void **state)
{
    cairn *h = worker("disp-busy", 2, 60000);
    usleep(300 * 1000); /* idle first: the flag is up, so the first enqueue notifies */
    atomic_store(&hold_release, 0);
    t_exec("SELECT cairn.enqueue('hold', 'null', id => 'busy-hold')");
    long running = wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'busy-hold' AND status = 'PENDING'", 1,
                              10000);
    assert_int_equal(running, 1);
    /*
     * The claim that took the long run wanted two. The enqueue of it
     * cleared the flag; give the dispatcher its gap to raise it again.
     */
    usleep(300 * 1000);
    assert_int_equal(t_scalar("SELECT armed::int FROM cairn.wakeup"), 1);
    long done = 0;
    long long latency = enqueue_stamp("busy-stamp", &done);
    atomic_store(&hold_release, 1);
    assert_int_equal(done, 1);
    print_message("beside a long run: enqueue commit to first step: %lld ms\n", latency);
    if (latency > 5000)
        fail_msg("the dispatcher with a free thread took %lld ms: it polled instead of being woken", latency);
    assert_int_equal(wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'busy-hold' AND status = 'SUCCESS'",
                                1, 10000),
                     1);
    cairn_close(h);
}

/*
 * Work that waits for this process's only thread: no NOTIFY comes for it
 * (the enqueue that started the long run cleared the flag, and a claim
 * that took all it wanted does not raise it again), so the thread coming
 * free must wake the dispatcher. A freed thread skips that wake-up only
 * while the dispatcher is idle; this fails if the dispatcher's idle mark
 * is ever up while work it saw waits for a thread (60 s poll and
 * heartbeat, 5 s bound).
 */
static void test_freed_thread_wakes_dispatcher(void **state)
{
    cairn *h = worker("disp-freed", 1, 60000);
    usleep(300 * 1000); /* idle first: the flag is up, so the first enqueue notifies */
    atomic_store(&hold_release, 0);
    t_exec("SELECT cairn.enqueue('hold', 'null', id => 'freed-hold')");
    assert_int_equal(
        wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'freed-hold' AND status = 'PENDING'", 1, 10000), 1);
    usleep(300 * 1000);
    assert_int_equal(t_scalar("SELECT armed::int FROM cairn.wakeup"), 0);
    atomic_store(&first_step_ms, 0);
    t_exec("SELECT cairn.enqueue('stamp', 'null', id => 'freed-stamp')");
    usleep(300 * 1000);
    assert_int_equal(
        t_scalar("SELECT count(*) FROM cairn.workflows WHERE id = 'freed-stamp' AND status = 'ENQUEUED'"), 1);
    long long t0 = now_ms();
    atomic_store(&hold_release, 1);
    assert_int_equal(
        wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'freed-stamp' AND status = 'SUCCESS'", 1, 10000), 1);
    long long latency = atomic_load(&first_step_ms) - t0;
    print_message("a thread came free: release to the waiting workflow's step %lld ms\n", latency);
    if (latency > 5000)
        fail_msg("the waiting workflow started %lld ms after the thread came free: nothing woke the dispatcher",
                 latency);
    cairn_close(h);
}

enum { PRODUCERS = 8, PER_PRODUCER = 10 };

typedef struct producer {
    cairn *h;
    int n;
    char msg[256];
} producer;

/* Starts PER_PRODUCER "stamp" workflows through the default queue, at priority n % 2. */
static void *produce(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < PER_PRODUCER && !p->msg[0]; i++) {
        char id[32];
        snprintf(id, sizeof id, "cwake-%d-%d", p->n, i);
        cairn_start_options so = {.size = sizeof so, .queue = "default", .id = id, .priority = p->n % 2};
        if (cairn_start(p->h, "stamp", "null", &so, NULL) != CAIRN_OK)
            snprintf(p->msg, sizeof p->msg, "%s: %s", id, cairn_errmsg(p->h));
    }
    return NULL;
}

/*
 * cairn_start() through a queue from a process that does not run the
 * workflow writes it ENQUEUED through group commit (alone, or in a batch
 * whose items agree or differ): each of those statements must wake an
 * idle dispatcher elsewhere, as cairn.enqueue() does. The worker polls
 * every 60 s, so only the NOTIFY can run the work in time.
 */
static void test_queued_starts_from_c_wake(void **state)
{
    cairn *w = worker("disp-cwake", 2, 60000);
    cairn *p = t_open("disp-cwake-producer", 1); /* no workers: it runs nothing itself */
    assert_int_equal(wait_count("SELECT armed::int FROM cairn.wakeup", 1, 10000), 1);
    atomic_store(&first_step_ms, 0);
    long long t0 = now_ms();
    cairn_start_options so = {.size = sizeof so, .queue = "default", .id = "cwake-one"};
    T_OK(p, cairn_start(p, "stamp", "null", &so, NULL));
    assert_int_equal(
        wait_count("SELECT count(*) FROM cairn.workflows WHERE id = 'cwake-one' AND status = 'SUCCESS'", 1, 10000), 1);
    long long latency = atomic_load(&first_step_ms) - t0;
    print_message("a lone queued start from C: commit to first step %lld ms\n", latency);
    if (latency > 5000)
        fail_msg("the idle dispatcher took %lld ms: the start did not wake it", latency);

    /* Many at once, in batches, each time the dispatcher has gone idle again. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(wait_count("SELECT armed::int FROM cairn.wakeup", 1, 10000), 1);
        pthread_t th[PRODUCERS];
        producer ps[PRODUCERS];
        for (int i = 0; i < PRODUCERS; i++) {
            ps[i] = (producer){.h = p, .n = round * PRODUCERS + i};
            assert_int_equal(pthread_create(&th[i], NULL, produce, &ps[i]), 0);
        }
        for (int i = 0; i < PRODUCERS; i++) {
            pthread_join(th[i], NULL);
            if (ps[i].msg[0])
                fail_msg("producer %d: %s", i, ps[i].msg);
        }
        long want = (long)(round + 1) * PRODUCERS * PER_PRODUCER;
        long done = wait_count("SELECT count(*) FROM cairn.workflows WHERE id LIKE 'cwake-%-%' AND status = 'SUCCESS'",
                               want, 10000);
        print_message("round %d: %ld of %ld batched queued starts ran\n", round, done, want);
        assert_int_equal(done, want);
    }
    cairn_close(p);
    cairn_close(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claimed_once_across_executors),
        cmocka_unit_test(test_unknown_name_waits),
        cmocka_unit_test(test_priority_order),
        cmocka_unit_test(test_delay_not_before_time),
        cmocka_unit_test(test_idle_dispatcher_woken_by_notify),
        cmocka_unit_test(test_busy_dispatcher_woken_by_notify),
        cmocka_unit_test(test_freed_thread_wakes_dispatcher),
        cmocka_unit_test(test_queued_starts_from_c_wake),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
