/*
 * Durable sleep, messages and suspension (issue 5, items 1, 2 and 7).
 *
 * What must hold: a sleep's wake-up time is recorded, so a workflow
 * restarted or resumed sleeps only what remains and never wakes early; a
 * long wait gives its thread back (more workflows wait than there are
 * threads); each message is consumed exactly once, in order per topic,
 * also while the receiving process is SIGKILLed at random moments; a
 * receive that timed out stays timed out; a send from a transaction that
 * rolls back is never delivered; a send from a workflow happens once
 * however often the workflow is replayed.
 *
 * The workflows are in wait_flows.c. Some run in this process's handles,
 * some in wait_worker processes that the test kills.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "wait_flows.h"

#ifndef WAIT_WORKER
#error "WAIT_WORKER must name the wait_worker program"
#endif

/* ---- helpers ------------------------------------------------------------- */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs sql with one text parameter and returns the first value as a long (0 if none). */
static long q1(const char *sql, const char *p)
{
    PGconn *c = t_pg();
    const char *vals[1] = {p};
    PGresult *r = PQexecParams(c, sql, p ? 1 : 0, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    PQfinish(c);
    return v;
}

/*
 * Handles a test has open. A failed assertion leaves the test at once; the
 * teardown closes what it left, so that its workers do not go on claiming
 * the next test's workflows.
 */
static cairn *handles[8];

static cairn *track(cairn *h)
{
    for (int i = 0; i < 8; i++)
        if (!handles[i]) {
            handles[i] = h;
            return h;
        }
    fail_msg("more than 8 handles open in one test");
    return h;
}

static cairn *track_open(const char *executor, int workers)
{
    return track(t_open(executor, workers));
}

static void close_handle(cairn *h)
{
    for (int i = 0; i < 8; i++)
        if (handles[i] == h)
            handles[i] = NULL;
    cairn_close(h);
}

/* A handle with the test workflows registered and its workers running. */
static cairn *open_worker(const char *executor, int workers, int suspend_after_ms)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = executor;
    o.workers = workers;
    o.suspend_after_ms = suspend_after_ms;
    o.poll_interval_ms = 200;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc != CAIRN_OK)
        fail_msg("cairn_open: %s", h ? cairn_errmsg(h) : "out of memory");
    track(h);
    T_OK(h, wait_flows_register(h));
    T_OK(h, cairn_start_workers(h));
    return h;
}

static void start(cairn *h, const char *name, const char *id, const char *input, const char *queue)
{
    cairn_start_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.id = id;
    so.queue = queue;
    T_OK(h, cairn_start(h, name, input, &so, NULL));
}

/* Awaits a workflow that must succeed and compares its output with want (NULL: do not compare). */
static void expect_success(cairn *h, const char *id, int timeout_ms, const char *want)
{
    cairn_status st;
    char *out = NULL;
    T_OK(h, cairn_await(h, id, timeout_ms, &st, &out));
    if (st != CAIRN_STATUS_SUCCESS)
        fail_msg("workflow %s ended %s: %s", id, cairn_status_name(st), out ? out : "");
    if (want && strcmp(out, want) != 0)
        fail_msg("workflow %s returned %s, expected %s", id, out, want);
    cairn_free(out);
}

/* How many of the workflows whose ID starts with prefix are suspended now. */
static long suspended(const char *prefix)
{
    return q1("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE $1 || '%'"
              " AND status = 'PENDING' AND executor_id IS NULL AND wake_at IS NOT NULL",
              prefix);
}

static void wait_suspended(const char *prefix, long n, int timeout_ms)
{
    long long end = mono_ms() + timeout_ms;
    while (suspended(prefix) < n) {
        if (mono_ms() > end)
            fail_msg("only %ld of %ld workflows '%s*' suspended after %d ms", suspended(prefix), n, prefix,
                     timeout_ms);
        sleep_ms(20);
    }
}

/* The recorded wake-up time of a sleeper (step 1) and when its next step ran, epoch ms. */
static void sleeper_times(const char *id, long long *until, long long *woke)
{
    *until = q1("SELECT (output->>'until')::bigint FROM cairn.steps WHERE workflow_id = $1 AND step = 1"
                " AND name = 'cairn.sleep'",
                id);
    *woke = q1("SELECT (output->>'woke')::bigint FROM cairn.workflow_status WHERE id = $1", id);
    if (*until <= 0 || *woke <= 0)
        fail_msg("sleeper %s has no recorded wake-up time or stamp (until %lld, woke %lld)", id, *until, *woke);
}

/* ---- worker processes ------------------------------------------------------ */

/* Every worker still running, so that a failed test leaves none behind (they would hold ctest's pipes). */
static pid_t workers[64];

static void forget(pid_t pid)
{
    for (int i = 0; i < 64; i++)
        if (workers[i] == pid)
            workers[i] = 0;
}

static void kill_all_workers(void)
{
    for (int i = 0; i < 64; i++)
        if (workers[i] > 0) {
            kill(workers[i], SIGKILL);
            waitpid(workers[i], NULL, 0);
            workers[i] = 0;
        }
}

static pid_t spawn(const char *executor, int suspend_after_ms)
{
    char sa[16];
    snprintf(sa, sizeof sa, "%d", suspend_after_ms);
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
        execl(WAIT_WORKER, WAIT_WORKER, "--db", t_db(), "--executor", executor, "--workers", "4",
              "--suspend-after", sa, "--lease-ms", "2000", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    for (int i = 0; i < 64; i++)
        if (workers[i] == 0) {
            workers[i] = pid;
            break;
        }
    char buf[64] = "";
    size_t n = 0;
    while (n < sizeof buf - 1 && !strstr(buf, "ready")) {
        ssize_t r = read(fds[0], buf + n, sizeof buf - 1 - n);
        if (r <= 0)
            fail_msg("wait_worker %s did not start", executor);
        n += (size_t)r;
        buf[n] = '\0';
    }
    close(fds[0]);
    return pid;
}

static void kill9(pid_t pid)
{
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    forget(pid);
}

/* ---- sleeping ------------------------------------------------------------ */

/* A short sleep keeps its thread and wakes at its recorded time, not before. */
static void test_sleep_in_thread(void **state)
{
    (void)state;
    cairn *h = open_worker("sleep-short", 2, 5000);
    start(h, "sleeper", "short-1", "{\"ms\": 300}", NULL);
    expect_success(h, "short-1", 30000, NULL);
    long long until, woke;
    sleeper_times("short-1", &until, &woke);
    long long created = q1("SELECT (extract(epoch FROM created_at) * 1000)::bigint FROM cairn.workflow_status"
                           " WHERE id = $1",
                           "short-1");
    if (until - created < 290 || woke < until)
        fail_msg("sleep of 300 ms: created %lld, until %lld, woke %lld", created, until, woke);
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE id = $1 AND wake_at IS NULL", "short-1"), 1);
    close_handle(h);
}

/* Long sleeps give their threads back: 30 sleepers on 2 threads all wait at once, and none wakes early. */
static void test_sleep_suspends(void **state)
{
    (void)state;
    cairn *h = open_worker("sleep-long", 2, 100);
    char id[32];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "long-%02d", i);
        start(h, "sleeper", id, "{\"ms\": 2500}", NULL);
    }
    wait_suspended("long-", 30, 20000);
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE id LIKE 'long-%' AND waiting = 'sleep'", NULL),
                     30);
    long long worst = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "long-%02d", i);
        expect_success(h, id, 60000, NULL);
        long long until, woke;
        sleeper_times(id, &until, &woke);
        if (woke < until)
            fail_msg("%s woke %lld ms early", id, until - woke);
        if (woke - until > worst)
            worst = woke - until;
    }
    printf("# 30 suspended sleepers on 2 threads: latest wake-up %lld ms after its time\n", worst);
    close_handle(h);
}

/*
 * A sleeper suspended by another handle wakes at its time even when the
 * dispatcher that resumes it is woken meanwhile by its own threads coming
 * free. Only the database knows this wake-up time here (the handle did not
 * suspend it), and with a poll interval and heartbeat far longer than the
 * sleep, nothing but that remembered time can wake it promptly.
 */
static void test_sleep_due_after_pokes(void **state)
{
    (void)state;
    cairn *a = open_worker("sleep-poke-a", 1, 100);
    start(a, "sleeper", "poked-1", "{\"ms\": 2500}", NULL);
    wait_suspended("poked-", 1, 20000);
    close_handle(a);

    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = "sleep-poke-b";
    o.workers = 2;
    o.suspend_after_ms = 100;
    o.poll_interval_ms = 60000;
    o.lease_ms = 60000;
    cairn *b = NULL;
    if (cairn_open(&b, &o) != CAIRN_OK)
        fail_msg("cairn_open: %s", b ? cairn_errmsg(b) : "out of memory");
    track(b);
    T_OK(b, wait_flows_register(b));
    T_OK(b, cairn_start_workers(b));
    /* Short workflows that end on b's threads: each end pokes b's dispatcher. */
    char id[32];
    for (int i = 0; i < 6; i++) {
        sleep_ms(200);
        snprintf(id, sizeof id, "poker-%d", i);
        start(b, "sleeper", id, "{\"ms\": 0}", NULL);
        expect_success(b, id, 30000, NULL);
    }
    expect_success(b, "poked-1", 60000, NULL);
    long long until, woke;
    sleeper_times("poked-1", &until, &woke);
    printf("# sleeper suspended elsewhere, dispatcher poked meanwhile: woke %lld ms after its time\n", woke - until);
    if (woke < until || woke - until > 2000)
        fail_msg("poked-1 woke %lld ms after its time (poll interval and heartbeat 12-60 s away)", woke - until);
    close_handle(b);
}

/* SIGKILL while sleeping (in the thread, and suspended): the sleep resumes and ends at its recorded time. */
static void test_sleep_survives_kill(void **state)
{
    (void)state;
    cairn *client = track_open("sleep-client", 1);
    /* In the thread: the same executor ID comes back and resumes it from its checkpoint. */
    pid_t w = spawn("sleep-kill", 60000);
    start(client, "sleeper", "kill-thread", "{\"ms\": 3000}", "default");
    sleep_ms(1200);
    kill9(w);
    w = spawn("sleep-kill", 60000);
    expect_success(client, "kill-thread", 30000, NULL);
    long long until, woke;
    sleeper_times("kill-thread", &until, &woke);
    long long created = q1("SELECT (extract(epoch FROM created_at) * 1000)::bigint FROM cairn.workflow_status"
                           " WHERE id = $1",
                           "kill-thread");
    if (woke < until || woke - until > 1500 || until - created > 3600)
        fail_msg("killed in-thread sleep: created %lld, until %lld, woke %lld (must wake at its time, "
                 "not sleep 3 s again)",
                 created, until, woke);
    kill9(w);

    /* Suspended: its process dies; another executor resumes it when it is due. */
    w = spawn("sleep-kill-a", 100);
    start(client, "sleeper", "kill-suspended", "{\"ms\": 3000}", "default");
    wait_suspended("kill-suspended", 1, 10000);
    kill9(w);
    w = spawn("sleep-kill-b", 100);
    expect_success(client, "kill-suspended", 30000, NULL);
    sleeper_times("kill-suspended", &until, &woke);
    if (woke < until || woke - until > 1500)
        fail_msg("killed suspended sleep: until %lld, woke %lld", until, woke);
    kill9(w);
    close_handle(client);
}

/* ---- messages --------------------------------------------------------------- */

/* Messages are received in the order sent, per topic, each once. */
static void test_recv_order(void **state)
{
    (void)state;
    cairn *h = open_worker("recv-order", 2, 5000);
    start(h, "consumer", "order-1", "{\"topic\": \"a\", \"n\": 3, \"timeout_ms\": 10000}", NULL);
    T_OK(h, cairn_send_message(h, "order-1", "b", "\"other topic\"", NULL));
    T_OK(h, cairn_send_message(h, "order-1", "a", "1", NULL));
    T_OK(h, cairn_send_message(h, "order-1", "a", "{\"two\": 2}", "m2"));
    T_OK(h, cairn_send_message(h, "order-1", "a", "{\"two\": 2}", "m2")); /* idempotent: stored once */
    /* A repeat that comes after the workflow has read the first copy is not delivered either. */
    long long end = mono_ms() + 20000;
    while (q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'order-1' AND topic = 'a'", NULL) > 0) {
        if (mono_ms() > end)
            fail_msg("order-1 did not read its first two messages within 20 s");
        sleep_ms(10);
    }
    T_OK(h, cairn_send_message(h, "order-1", "a", "{\"two\": 2}", "m2"));
    T_OK(h, cairn_send_message(h, "order-1", "a", "3", NULL));
    expect_success(h, "order-1", 30000, "[1,{\"two\":2},3]");
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'order-1' AND topic = 'a'", NULL), 0);
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'order-1' AND topic = 'b'", NULL), 1);
    /* Recorded: a deadline, then the receive, for each of the three. */
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'order-1' AND name = 'cairn.recv'"
                        " AND error IS NULL",
                        NULL),
                     3);
    close_handle(h);
}

/* A receive that timed out is recorded as such, in the thread and suspended; a late message stays unread. */
static void test_recv_timeout(void **state)
{
    (void)state;
    cairn *h = open_worker("recv-timeout", 2, 500);
    start(h, "consumer", "to-short", "{\"topic\": \"t\", \"n\": 1, \"timeout_ms\": 200}", NULL);
    start(h, "consumer", "to-long", "{\"topic\": \"t\", \"n\": 1, \"timeout_ms\": 1500}", NULL);
    wait_suspended("to-long", 1, 10000);
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE id = 'to-long' AND waiting = 'message:t'"
                        " AND wake_at > now()",
                        NULL),
                     1);
    expect_success(h, "to-short", 30000, "[\"timeout\"]");
    expect_success(h, "to-long", 30000, "[\"timeout\"]");
    T_OK(h, cairn_send_message(h, "to-long", "t", "\"late\"", NULL));
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'to-long' AND name = 'cairn.recv'"
                        " AND error->>'timeout' = 'true'",
                        NULL),
                     1);
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'to-long'", NULL), 1);
    close_handle(h);
}

/*
 * A suspended receive wakes when a message is sent from SQL; a send from a
 * transaction that rolls back is never delivered.
 */
static void test_recv_from_sql(void **state)
{
    (void)state;
    cairn *h = open_worker("recv-sql", 2, 100);
    start(h, "consumer", "sql-1", "{\"topic\": \"t\", \"n\": 1, \"timeout_ms\": 4000}", NULL);
    start(h, "consumer", "sql-2", "{\"topic\": \"t\", \"n\": 1, \"timeout_ms\": -1}", NULL);
    wait_suspended("sql-", 2, 10000);
    PGconn *c = t_pg();
    PGresult *r = PQexec(c, "BEGIN; SELECT cairn.send('sql-1', 't', '\"rolled back\"'); ROLLBACK");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    long long sent = mono_ms();
    r = PQexec(c, "SELECT cairn.send('sql-2', 't', '{\"from\": \"psql\"}')");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    PQfinish(c);
    expect_success(h, "sql-2", 30000, "[{\"from\":\"psql\"}]");
    printf("# message from SQL to a suspended workflow: result after %lld ms\n", mono_ms() - sent);
    expect_success(h, "sql-1", 30000, "[\"timeout\"]");
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id LIKE 'sql-%'", NULL), 0);
    close_handle(h);
}

/* Many workflows wait for messages on few threads; each gets its own. */
static void test_recv_many_waiters(void **state)
{
    (void)state;
    cairn *h = open_worker("recv-many", 2, 100);
    char id[32], msg[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "many-%02d", i);
        start(h, "consumer", id, "{\"topic\": \"t\", \"n\": 2, \"timeout_ms\": -1}", NULL);
    }
    wait_suspended("many-", 40, 20000);
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 40; i++) {
            snprintf(id, sizeof id, "many-%02d", i);
            snprintf(msg, sizeof msg, "%d", i * 10 + round);
            T_OK(h, cairn_send_message(h, id, "t", msg, NULL));
        }
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "many-%02d", i);
        char want[32];
        snprintf(want, sizeof want, "[%d,%d]", i * 10, i * 10 + 1);
        expect_success(h, id, 60000, want);
    }
    /* Wake-up requests of finished workflows are cleared by the dispatchers' next looks. */
    long long end = mono_ms() + 10000;
    while (q1("SELECT count(*) FROM cairn.pokes", NULL) > 0 && mono_ms() < end)
        sleep_ms(50);
    assert_int_equal(q1("SELECT count(*) FROM cairn.pokes", NULL), 0);
    close_handle(h);
}

/* A send from a workflow happens once, though the sender is replayed after each of its sleeps. */
static void test_ctx_send_once(void **state)
{
    (void)state;
    cairn *h = open_worker("send-once", 2, 100);
    start(h, "consumer", "once-rx", "{\"topic\": \"p\", \"n\": 3, \"timeout_ms\": -1}", NULL);
    start(h, "pinger", "once-tx", "{\"to\": \"once-rx\", \"topic\": \"p\", \"n\": 3, \"pause_ms\": 400}", NULL);
    expect_success(h, "once-tx", 30000, NULL);
    expect_success(h, "once-rx", 30000, "[0,1,2]");
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'once-tx' AND name = 'cairn.send'", NULL),
                     3);
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'once-rx'", NULL), 0);
    close_handle(h);
}

/*
 * Exactly once under SIGKILL: a consumer of 30 messages runs in worker
 * processes that are killed at random moments while the messages are sent
 * from SQL; it must end with every message once, in order.
 */
static void test_recv_survives_kills(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL);
    if (getenv("WAIT_SEED"))
        seed = (unsigned)atoi(getenv("WAIT_SEED"));
    printf("# WAIT_SEED=%u\n", seed);
    srand(seed);
    cairn *client = track_open("kill-client", 1);
    const int n = 30;
    int suspend_after = 100;
    pid_t w = spawn("kill-rx", suspend_after);
    start(client, "consumer", "kill-rx-1", "{\"topic\": \"k\", \"n\": 30, \"timeout_ms\": -1}", "default");
    PGconn *c = t_pg();
    int kills = 0;
    for (int i = 0; i < n; i++) {
        char m[16];
        snprintf(m, sizeof m, "%d", i);
        const char *vals[1] = {m};
        PGresult *r = PQexecParams(c, "SELECT cairn.send('kill-rx-1', 'k', $1::json)", 1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            fail_msg("send: %s", PQerrorMessage(c));
        PQclear(r);
        sleep_ms(rand() % 60);
        if (rand() % 3 == 0) {
            kill9(w);
            kills++;
            /* Alternate: the same executor ID resumes its own work at start; a new one adopts after the lease. */
            suspend_after = suspend_after == 100 ? 60000 : 100;
            w = spawn("kill-rx", suspend_after);
        }
    }
    PQfinish(c);
    char want[256] = "[";
    for (int i = 0; i < n; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", i ? "," : "", i);
    strcat(want, "]");
    expect_success(client, "kill-rx-1", 60000, want);
    printf("# %d SIGKILLs while receiving 30 messages\n", kills);
    assert_true(kills > 0);
    kill9(w);
    close_handle(client);
}

/* ---- child workflows ------------------------------------------------------------ */

/*
 * A parent starts three children and awaits them; it waits without a thread
 * and is woken by their finishes. Each child is started once, with the
 * derived ID and its parent recorded.
 */
static void test_children(void **state)
{
    (void)state;
    cairn *h = open_worker("children", 2, 100);
    start(h, "parent", "par-1", "{\"n\": 3, \"child_ms\": 1500}", NULL);
    wait_suspended("par-1/", 3, 20000);
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE id = 'par-1' AND waiting LIKE 'workflow:par-1/%'",
                        NULL),
                     1);
    long long t0 = mono_ms();
    expect_success(h, "par-1", 30000, "[\"SUCCESS\",\"SUCCESS\",\"SUCCESS\"]");
    printf("# parent of three 1.5 s children: finished %lld ms after they all suspended\n", mono_ms() - t0);
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE parent_id = 'par-1'"
                        " AND id IN ('par-1/1', 'par-1/2', 'par-1/3') AND status = 'SUCCESS'",
                        NULL),
                     3);
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-1' AND name = 'cairn.start_child'",
                        NULL),
                     3);
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-1' AND name = 'cairn.await'"
                        " AND output->>'status' = 'SUCCESS' AND output->'result'->>'woke' IS NOT NULL",
                        NULL),
                     3);
    close_handle(h);
}

/* An await that times out is recorded; awaiting a workflow that is not a child works too (it is polled). */
static void test_await_timeout_and_other(void **state)
{
    (void)state;
    cairn *h = open_worker("await-other", 2, 100);
    start(h, "sleeper", "other-1", "{\"ms\": 2000}", NULL);
    start(h, "parent", "par-to", "{\"n\": 1, \"child_ms\": 3000, \"timeout_ms\": 500}", NULL);
    start(h, "parent", "par-other", "{\"n\": 0, \"await\": \"other-1\"}", NULL);
    expect_success(h, "par-to", 30000, "[\"timeout\"]");
    expect_success(h, "par-other", 30000, "[\"SUCCESS\"]");
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-to' AND name = 'cairn.await'"
                        " AND error->>'timeout' = 'true'",
                        NULL),
                     1);
    expect_success(h, "par-to/1", 30000, NULL);
    close_handle(h);
}

/* SIGKILL while the children run: the parent resumes, and no child is started twice. */
static void test_children_survive_kill(void **state)
{
    (void)state;
    cairn *client = track_open("child-client", 1);
    pid_t w = spawn("child-kill", 60000);
    start(client, "parent", "par-kill", "{\"n\": 3, \"child_ms\": 2500}", "default");
    long long end = mono_ms() + 20000;
    while (q1("SELECT count(*) FROM cairn.workflow_status WHERE parent_id = 'par-kill'", NULL) < 3 && mono_ms() < end)
        sleep_ms(20);
    sleep_ms(500);
    kill9(w);
    w = spawn("child-kill", 60000);
    expect_success(client, "par-kill", 60000, "[\"SUCCESS\",\"SUCCESS\",\"SUCCESS\"]");
    assert_int_equal(q1("SELECT count(*) FROM cairn.workflow_status WHERE parent_id = 'par-kill'", NULL), 3);
    assert_int_equal(
        q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'par-kill' AND name = 'cairn.start_child'", NULL), 3);
    kill9(w);
    close_handle(client);
}

/* ---- bad input ------------------------------------------------------------------ */

static int bad_waits(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)input, (void)udata;
    int rc;
    if ((rc = cairn_sleep(ctx, -1)) != CAIRN_EINVAL)
        return cairn_fail(ctx, "negative sleep returned %d", rc);
    char *m = NULL;
    if ((rc = cairn_recv(ctx, "", 0, &m)) != CAIRN_EINVAL)
        return cairn_fail(ctx, "empty topic returned %d", rc);
    if ((rc = cairn_recv(ctx, "bad\x01topic", 0, &m)) != CAIRN_EINVAL)
        return cairn_fail(ctx, "control character in topic returned %d", rc);
    if ((rc = cairn_ctx_send(ctx, cairn_ctx_id(ctx), "t", "{not json")) != CAIRN_EJSON)
        return cairn_fail(ctx, "invalid JSON message returned %d", rc);
    if ((rc = cairn_ctx_send(ctx, "no such workflow", "t", "1")) != CAIRN_ESTEP)
        return cairn_fail(ctx, "send to an unknown workflow returned %d", rc);
    /* None of the refused calls took a position: the receive below is step 2 (after the failed send). */
    if ((rc = cairn_recv(ctx, "t", 0, &m)) != CAIRN_ETIMEDOUT)
        return cairn_fail(ctx, "empty receive with timeout 0 returned %d", rc);
    *output = strdup("\"ok\"");
    return CAIRN_OK;
}

static void test_bad_input(void **state)
{
    (void)state;
    cairn *h = track_open("bad-waits", 1);
    T_RC(h, CAIRN_EINVAL, cairn_register_step(h, "cairn.sleep", (cairn_step_fn)bad_waits, NULL, NULL));
    T_OK(h, cairn_register_workflow(h, "bad_waits", bad_waits, NULL));
    T_OK(h, cairn_start_workers(h));
    start(h, "bad_waits", "bad-1", NULL, NULL);
    expect_success(h, "bad-1", 30000, "\"ok\"");
    assert_int_equal(q1("SELECT count(*) FROM cairn.steps WHERE workflow_id = 'bad-1'", NULL), 2);
    assert_int_equal(q1("SELECT step FROM cairn.steps WHERE workflow_id = 'bad-1' AND name = 'cairn.recv'", NULL), 2);
    T_RC(h, CAIRN_ENOTFOUND, cairn_send_message(h, "no such workflow", "t", "1", NULL));
    assert_string_equal(cairn_sqlstate(h), "23503");
    T_RC(h, CAIRN_EJSON, cairn_send_message(h, "bad-1", "t", "[1,", NULL));
    T_RC(h, CAIRN_EINVAL, cairn_send_message(h, "bad-1", "", "1", NULL));
    assert_int_equal(q1("SELECT count(*) FROM cairn.messages WHERE workflow_id = 'bad-1'", NULL), 0);
    close_handle(h);
}

static int teardown(void **state)
{
    (void)state;
    kill_all_workers();
    for (int i = 0; i < 8; i++)
        if (handles[i])
            close_handle(handles[i]);
    return 0;
}

int main(void)
{
    t_fresh_db("test_waits");
    atexit(kill_all_workers);
    if (getenv("WAIT_TEST"))
        cmocka_set_test_filter(getenv("WAIT_TEST"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sleep_in_thread, teardown),  cmocka_unit_test_teardown(test_sleep_suspends, teardown),
        cmocka_unit_test_teardown(test_sleep_due_after_pokes, teardown),
        cmocka_unit_test_teardown(test_sleep_survives_kill, teardown), cmocka_unit_test_teardown(test_recv_order, teardown),
        cmocka_unit_test_teardown(test_recv_timeout, teardown),     cmocka_unit_test_teardown(test_recv_from_sql, teardown),
        cmocka_unit_test_teardown(test_recv_many_waiters, teardown), cmocka_unit_test_teardown(test_ctx_send_once, teardown),
        cmocka_unit_test_teardown(test_recv_survives_kills, teardown), cmocka_unit_test_teardown(test_children, teardown),
        cmocka_unit_test_teardown(test_await_timeout_and_other, teardown),
        cmocka_unit_test_teardown(test_children_survive_kill, teardown), cmocka_unit_test_teardown(test_bad_input, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
