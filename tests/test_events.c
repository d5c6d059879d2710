/*
 * Events and streams: publishing and reading events, waiting for them,
 * appending to and reading streams in order from any offset while the
 * workflow runs, closing, the at-least-once appends of step code, and
 * argument checks that write nothing. Then the guarantees under faults:
 * a paused "zombie" execution and its replacement appending to one
 * stream at once get gapless, unique offsets; worker processes
 * (events_worker.c) SIGKILLed right after an event, in the middle of a
 * stream and at random moments resume by replay, and every event and
 * stream value written from workflow code is written exactly once.
 *
 * Exactly once is observed, not assumed: a trigger on cairn.events copies
 * every committed insert and update into the table event_audit, so a
 * value published twice would leave two audit rows even though the event
 * row itself shows only the latest value. The random kills print their
 * seed; EVENTS_SEED=<seed> repeats them.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "support.h"

#ifndef EVENTS_WORKER
#error "EVENTS_WORKER must name the events_worker program"
#endif

static cairn *h;     /* the test's handle: runs the in-process workflows, reads everything */
static cairn *small; /* a second executor with max_payload = 1024 */
static PGconn *db;   /* the test's own connection */

#define SMALL_PAYLOAD 1024

/* ---- helpers ------------------------------------------------------------ */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Runs sql with up to three text parameters; fails the test if it fails. */
static PGresult *query(const char *sql, const char *p1, const char *p2, const char *p3)
{
    const char *vals[3] = {p1, p2, p3};
    int n = p3 ? 3 : p2 ? 2 : p1 ? 1 : 0;
    PGresult *r = PQexecParams(db, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    return r;
}

static long q_long(const char *sql, const char *p1, const char *p2)
{
    PGresult *r = query(sql, p1, p2, NULL);
    long v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0) ? atol(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return v;
}

/* The first column of the first row into buf: "" for no row, "<null>" for NULL. */
static void q_text(const char *sql, const char *p1, const char *p2, char *buf, size_t len)
{
    PGresult *r = query(sql, p1, p2, NULL);
    snprintf(buf, len, "%s", PQntuples(r) == 0 ? "" : PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
    PQclear(r);
}

static void expect_text(const char *what, const char *sql, const char *p1, const char *p2, const char *want)
{
    char got[8192];
    q_text(sql, p1, p2, got, sizeof got);
    if (strcmp(got, want) != 0)
        fail_msg("%s: got '%s', expected '%s'", what, got, want);
}

static void start(cairn *on, const char *workflow, const char *id, const char *input)
{
    cairn_start_options so;
    memset(&so, 0, sizeof so);
    so.size = sizeof so;
    so.id = id;
    T_OK(on, cairn_start(on, workflow, input, &so, NULL));
}

static void await_success(cairn *on, const char *id, const char *want_output)
{
    cairn_status st = CAIRN_STATUS_UNKNOWN;
    char *res = NULL;
    T_OK(on, cairn_await(on, id, 60000, &st, &res));
    if (st != CAIRN_STATUS_SUCCESS)
        fail_msg("%s ended %s: %s", id, cairn_status_name(st), res ? res : "null");
    if (want_output && strcmp(res ? res : "null", want_output) != 0)
        fail_msg("%s returned %s, expected %s", id, res ? res : "null", want_output);
    cairn_free(res);
}

/* Reads event key of id without waiting and checks its JSON text. */
static void expect_event(const char *id, const char *key, const char *want)
{
    char *v = NULL;
    T_OK(h, cairn_get_event(h, id, key, 0, &v));
    if (strcmp(v, want) != 0)
        fail_msg("event %s of %s is %s, expected %s", key, id, v, want);
    cairn_free(v);
}

/* Gates that in-process workflows wait at (step "gate", input {"gate": k}) until the test opens them. */
#define NGATES 8
static atomic_int gates[NGATES];

static int json_int(const char *json, const char *key, int dflt)
{
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", key);
    const char *p = json ? strstr(json, pattern) : NULL;
    return p ? atoi(p + strlen(pattern)) : dflt;
}

static int step_gate(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    int k = json_int(input, "gate", 0);
    while (!atomic_load(&gates[k]))
        sleep_ms(1);
    return CAIRN_OK;
}

static int gate(cairn_ctx *ctx, int k)
{
    char in[32];
    snprintf(in, sizeof in, "{\"gate\":%d}", k);
    return cairn_step(ctx, "gate", in, NULL);
}

/* ---- the in-process workflows ----------------------------------------- */

/*
 * "announcer", input {"gate": k}: publishes a, progress 1..3 and nullv,
 * waits at gate k, publishes late.
 */
static int wf_announcer(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    int rc = cairn_set_event(ctx, "a", "{\"x\": 1}");
    for (int i = 1; rc == CAIRN_OK && i <= 3; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        rc = cairn_set_event(ctx, "progress", v);
    }
    if (rc == CAIRN_OK)
        rc = cairn_set_event(ctx, "nullv", NULL);
    if (rc == CAIRN_OK)
        rc = gate(ctx, json_int(input, "gate", 0));
    if (rc == CAIRN_OK)
        rc = cairn_set_event(ctx, "late", "\"here\"");
    return rc;
}

/*
 * "writer", input {"n": N, "close": 0|1}: appends N values {"v": i} to
 * stream "s" (the first with extra whitespace, kept byte for byte),
 * closes it if asked, then tries to append to the closed stream from the
 * workflow and from a step; the output records the two codes.
 */
static int step_late_append(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%d", cairn_step_stream_write(s, "s", "\"late\""));
    *output = strdup(buf);
    return CAIRN_OK;
}

static int wf_writer(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    int n = json_int(input, "n", 0), close = json_int(input, "close", 1);
    int rc = CAIRN_OK;
    for (int i = 0; rc == CAIRN_OK && i < n; i++) {
        char v[32];
        snprintf(v, sizeof v, i == 0 ? " { \"v\" : %d } " : "{\"v\":%d}", i);
        rc = cairn_stream_write(ctx, "s", v);
    }
    if (rc != CAIRN_OK || !close)
        return rc;
    if ((rc = cairn_stream_close(ctx, "s")) != CAIRN_OK || (rc = cairn_stream_close(ctx, "s")) != CAIRN_OK)
        return rc;
    int after = cairn_stream_write(ctx, "s", "\"late\"");
    char *step_rc = NULL;
    if ((rc = cairn_step(ctx, "late_append", NULL, &step_rc)) != CAIRN_OK)
        return rc;
    char buf[64];
    snprintf(buf, sizeof buf, "{\"workflow\":%d,\"step\":%s}", after, step_rc);
    cairn_free(step_rc);
    *output = strdup(buf);
    return CAIRN_OK;
}

/*
 * "emitter", input {"n": N, "m": M, "gate": k}: the step "emit" appends N
 * values {"t": i} from inside the step, then the workflow appends M values
 * {"w": i}, waits at gate k and closes "live".
 */
static int step_emit(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    int n = json_int(input, "n", 0), exec = json_int(input, "exec", 0), pace = json_int(input, "pace_us", 0);
    for (int i = 0; i < n; i++) {
        char v[64];
        if (exec)
            snprintf(v, sizeof v, "{\"exec\":%d,\"t\":%d}", exec, i);
        else
            snprintf(v, sizeof v, "{\"t\":%d}", i);
        int rc = cairn_step_stream_write(s, json_int(input, "z", 0) ? "z" : "live", v);
        if (rc != CAIRN_OK)
            return cairn_step_fail(s, "append %d: %s", i, cairn_strerror(rc));
        if (pace > 0)
            usleep((useconds_t)pace);
        else if (i % 16 == 15)
            usleep(500);
    }
    return CAIRN_OK;
}

static int wf_emitter(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    char in[64];
    snprintf(in, sizeof in, "{\"n\":%d}", json_int(input, "n", 0));
    int rc = cairn_step(ctx, "emit", in, NULL);
    for (int i = 0; rc == CAIRN_OK && i < json_int(input, "m", 0); i++) {
        char v[32];
        snprintf(v, sizeof v, "{\"w\":%d}", i);
        rc = cairn_stream_write(ctx, "live", v);
    }
    if (rc == CAIRN_OK)
        rc = gate(ctx, json_int(input, "gate", 0));
    if (rc == CAIRN_OK)
        rc = cairn_stream_close(ctx, "live");
    return rc;
}

/* Step "flaky": appends {"a": attempt, "t": 0..2}, then fails on attempts 1 and 2. */
static int step_flaky(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    for (int t = 0; t < 3; t++) {
        char v[48];
        snprintf(v, sizeof v, "{\"a\":%d,\"t\":%d}", cairn_step_attempt(s), t);
        if (cairn_step_stream_write(s, "tries", v) != CAIRN_OK)
            return cairn_step_fail(s, "append failed");
    }
    return cairn_step_attempt(s) < 3 ? cairn_step_fail(s, "attempt %d fails", cairn_step_attempt(s)) : CAIRN_OK;
}

static int wf_flaky(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    int rc = cairn_step(ctx, "flaky", NULL, NULL);
    return rc == CAIRN_OK ? cairn_stream_close(ctx, "tries") : rc;
}

/*
 * "zombie_stream", input {"n": N, "gate": k}: step "emit" appends N values
 * {"exec": execution, "t": i} to stream "z" slowly, the workflow waits at
 * gate k, appends {"end": true} and closes "z".
 */
static int wf_zombie_stream(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    char in[96];
    snprintf(in, sizeof in, "{\"n\":%d,\"exec\":%d,\"z\":1,\"pace_us\":1000}", json_int(input, "n", 0),
             cairn_ctx_attempt(ctx));
    int rc = cairn_step(ctx, "emit", in, NULL);
    if (rc == CAIRN_OK)
        rc = gate(ctx, json_int(input, "gate", 0));
    if (rc == CAIRN_OK)
        rc = cairn_stream_write(ctx, "z", "{\"end\":true}");
    if (rc == CAIRN_OK)
        rc = cairn_stream_close(ctx, "z");
    return rc;
}

/* Step "bad_appends": every malformed cairn_step_stream_write(), codes as a JSON array. */
static int step_bad_appends(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    char big[SMALL_PAYLOAD + 64];
    memset(big, 'x', sizeof big - 1);
    big[0] = '"';
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = '\0';
    char buf[128];
    snprintf(buf, sizeof buf, "[%d,%d,%d,%d,%d]", cairn_step_stream_write(NULL, "s", "1"),
             cairn_step_stream_write(s, NULL, "1"), cairn_step_stream_write(s, "bad\nname", "1"),
             cairn_step_stream_write(s, "s", "{\"a\":"), cairn_step_stream_write(s, "s", big));
    *output = strdup(buf);
    return CAIRN_OK;
}

/* "bad": every malformed call of the workflow-side functions; the output lists the codes. */
static int wf_bad(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    char big[SMALL_PAYLOAD + 64];
    memset(big, 'x', sizeof big - 1);
    big[0] = '"';
    big[sizeof big - 2] = '"';
    big[sizeof big - 1] = '\0';
    char longname[256];
    memset(longname, 'k', 201);
    longname[201] = '\0';
    int codes[] = {
        cairn_set_event(NULL, "k", "1"),
        cairn_set_event(ctx, NULL, "1"),
        cairn_set_event(ctx, "", "1"),
        cairn_set_event(ctx, "k\x01", "1"),
        cairn_set_event(ctx, longname, "1"),
        cairn_set_event(ctx, "k", "{bad"),
        cairn_set_event(ctx, "k", "\"\xff\""),
        cairn_set_event(ctx, "k", big),
        cairn_stream_write(NULL, "s", "1"),
        cairn_stream_write(ctx, "", "1"),
        cairn_stream_write(ctx, "s", "[1,"),
        cairn_stream_write(ctx, "s", big),
        cairn_stream_close(NULL, "s"),
        cairn_stream_close(ctx, "bad\tname"),
    };
    char *steps = NULL;
    int rc = cairn_step(ctx, "bad_appends", NULL, &steps);
    if (rc != CAIRN_OK)
        return rc;
    char buf[512];
    size_t n = (size_t)snprintf(buf, sizeof buf, "{\"workflow\":[");
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", i ? "," : "", codes[i]);
    snprintf(buf + n, sizeof buf - n, "],\"step\":%s}", steps);
    cairn_free(steps);
    *output = strdup(buf);
    return CAIRN_OK;
}

/* "big", input {"n": N}: appends N string values of 400 bytes each ("aaa...", "bbb...", ...) and closes "b". */
static int wf_big(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    int rc = CAIRN_OK;
    for (int i = 0; rc == CAIRN_OK && i < json_int(input, "n", 0); i++) {
        char v[401];
        memset(v, 'a' + i, 400);
        v[0] = v[399] = '"';
        v[400] = '\0';
        rc = cairn_stream_write(ctx, "b", v);
    }
    return rc == CAIRN_OK ? cairn_stream_close(ctx, "b") : rc;
}

static void register_all(cairn *on)
{
    T_OK(on, cairn_register_step(on, "gate", step_gate, NULL, NULL));
    T_OK(on, cairn_register_step(on, "late_append", step_late_append, NULL, NULL));
    T_OK(on, cairn_register_step(on, "emit", step_emit, NULL, NULL));
    cairn_retry retry = {.max_attempts = 3, .base_ms = 10};
    T_OK(on, cairn_register_step(on, "flaky", step_flaky, NULL, &retry));
    T_OK(on, cairn_register_step(on, "bad_appends", step_bad_appends, NULL, NULL));
    T_OK(on, cairn_register_workflow(on, "announcer", wf_announcer, NULL));
    T_OK(on, cairn_register_workflow(on, "writer", wf_writer, NULL));
    T_OK(on, cairn_register_workflow(on, "emitter", wf_emitter, NULL));
    T_OK(on, cairn_register_workflow(on, "flaky", wf_flaky, NULL));
    T_OK(on, cairn_register_workflow(on, "zombie_stream", wf_zombie_stream, NULL));
    T_OK(on, cairn_register_workflow(on, "bad", wf_bad, NULL));
    T_OK(on, cairn_register_workflow(on, "big", wf_big, NULL));
}

/* ---- 1. events ------------------------------------------------------------ */

static void test_events_publish_and_read(void **state)
{
    start(h, "announcer", "ann-1", "{\"gate\":1}");
    /* Published before the gate: a waiting read gets it as soon as it commits. */
    char *v = NULL;
    T_OK(h, cairn_get_event(h, "ann-1", "a", 10000, &v));
    assert_string_equal(v, "{\"x\": 1}"); /* the exact text published */
    cairn_free(v);
    /* Not published yet: no wait, a short wait, then a wait that the publication ends. */
    long long t0 = now_ms();
    T_RC(h, CAIRN_ETIMEDOUT, cairn_get_event(h, "ann-1", "late", 0, &v));
    assert_null(v);
    assert_true(now_ms() - t0 < 1000);
    t0 = now_ms();
    T_RC(h, CAIRN_ETIMEDOUT, cairn_get_event(h, "ann-1", "late", 150, &v));
    long long waited = now_ms() - t0;
    if (waited < 150 || waited > 2000)
        fail_msg("a 150 ms wait took %lld ms", waited);
    atomic_store(&gates[1], 1);
    T_OK(h, cairn_get_event(h, "ann-1", "late", 10000, &v));
    assert_string_equal(v, "\"here\"");
    cairn_free(v);
    await_success(h, "ann-1", "null");

    /* The latest value wins; NULL was published as JSON null. */
    expect_event("ann-1", "progress", "3");
    expect_event("ann-1", "nullv", "null");
    /* A finished workflow that never published a key: ETIMEDOUT at once, whatever the timeout. */
    t0 = now_ms();
    T_RC(h, CAIRN_ETIMEDOUT, cairn_get_event(h, "ann-1", "never", 30000, &v));
    assert_true(now_ms() - t0 < 1000);
    T_RC(h, CAIRN_ENOTFOUND, cairn_get_event(h, "no-such-workflow", "a", 1000, &v));
    assert_null(v);

    /* One row per key, and each publication was a step of its own. */
    assert_int_equal(q_long("SELECT count(*) FROM cairn.events WHERE workflow_id = 'ann-1'", NULL, NULL), 4);
    expect_text("the recorded steps", "SELECT string_agg(name, ' ' ORDER BY step) FROM cairn.steps WHERE workflow_id = $1",
                "ann-1", NULL,
                "cairn.set_event cairn.set_event cairn.set_event cairn.set_event cairn.set_event gate "
                "cairn.set_event");
    /* Each publication committed once (the audit trigger saw 6 writes for 4 keys). */
    assert_int_equal(q_long("SELECT count(*) FROM event_audit WHERE workflow_id = 'ann-1'", NULL, NULL), 6);
}

/* A reader that waits from before the publication is woken by it, not by the end of its timeout. */
typedef struct event_reader {
    const char *id, *key;
    int timeout_ms;
    int rc;
    char *value;
    long long done_at;
} event_reader;

static void *read_event(void *arg)
{
    event_reader *r = arg;
    r->rc = cairn_get_event(h, r->id, r->key, r->timeout_ms, &r->value);
    r->done_at = now_ms();
    return NULL;
}

static void test_event_wait_is_woken(void **state)
{
    start(h, "announcer", "ann-2", "{\"gate\":2}");
    event_reader readers[3] = {{.id = "ann-2", .key = "late", .timeout_ms = 30000},
                               {.id = "ann-2", .key = "late", .timeout_ms = -1},
                               {.id = "ann-2", .key = "never", .timeout_ms = 30000}};
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, read_event, &readers[i]);
    sleep_ms(300);
    long long opened = now_ms();
    atomic_store(&gates[2], 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        if (readers[i].rc != CAIRN_OK)
            fail_msg("reader %d returned %s", i, cairn_strerror(readers[i].rc));
        assert_string_equal(readers[i].value, "\"here\"");
        cairn_free(readers[i].value);
        if (readers[i].done_at - opened > 2000)
            fail_msg("reader %d returned %lld ms after the publication", i, readers[i].done_at - opened);
    }
    /* The reader of a key never published returns when the workflow finishes. */
    assert_int_equal(readers[2].rc, CAIRN_ETIMEDOUT);
    assert_null(readers[2].value);
    assert_true(readers[2].done_at - opened < 5000);
    await_success(h, "ann-2", "null");
}

/* ---- 2. streams ------------------------------------------------------------ */

/* Reads one batch and checks it. */
static void expect_read(const char *id, const char *stream, long long offset, int max, const char *want,
                        long long want_next, int want_closed)
{
    char *vals = NULL;
    long long next = -1;
    int closed = -1;
    T_OK(h, cairn_stream_read(h, id, stream, offset, max, 10000, &vals, &next, &closed));
    if (strcmp(vals, want) != 0 || next != want_next || closed != want_closed)
        fail_msg("read of %s/%s from %lld (max %d): %s next %lld closed %d; expected %s next %lld closed %d", id,
                 stream, offset, max, vals, next, closed, want, want_next, want_closed);
    cairn_free(vals);
}

static void test_stream_read_in_order(void **state)
{
    start(h, "writer", "wr-1", "{\"n\":7,\"close\":1}");
    await_success(h, "wr-1", "{\"workflow\":-13,\"step\":-13}"); /* both late appends: CAIRN_EMISUSE */
    /* Batches of three from the start; the first value keeps its whitespace; closed once all are read. */
    expect_read("wr-1", "s", 0, 3, "[ { \"v\" : 0 } ,{\"v\":1},{\"v\":2}]", 3, 0);
    expect_read("wr-1", "s", 3, 3, "[{\"v\":3},{\"v\":4},{\"v\":5}]", 6, 0);
    expect_read("wr-1", "s", 6, 3, "[{\"v\":6}]", 7, 1);
    /* From any offset, again and again; at or past the end of a closed stream: nothing, closed. */
    expect_read("wr-1", "s", 2, 2, "[{\"v\":2},{\"v\":3}]", 4, 0);
    expect_read("wr-1", "s", 5, 0, "[{\"v\":5},{\"v\":6}]", 7, 1);
    expect_read("wr-1", "s", 7, 0, "[]", 7, 1);
    expect_read("wr-1", "s", 100, 0, "[]", 100, 1);
    /* A stream a finished workflow never wrote reads as closed. */
    expect_read("wr-1", "never", 0, 0, "[]", 0, 1);
    /* The closed stream took no late value; a stream left open reads closed once its workflow ends. */
    assert_int_equal(q_long("SELECT next_offset FROM cairn.streams WHERE workflow_id = 'wr-1' AND name = 's'", NULL,
                            NULL),
                     7);
    start(h, "writer", "wr-2", "{\"n\":2,\"close\":0}");
    await_success(h, "wr-2", "null");
    expect_read("wr-2", "s", 0, 0, "[ { \"v\" : 0 } ,{\"v\":1}]", 2, 1);
    assert_int_equal(q_long("SELECT count(*) FROM cairn.streams WHERE workflow_id = 'wr-2' AND closed_at IS NOT NULL",
                            NULL, NULL),
                     0);

    /* Errors. */
    char *vals = NULL;
    long long next = 0;
    T_RC(h, CAIRN_ENOTFOUND, cairn_stream_read(h, "no-such", "s", 0, 0, 0, &vals, &next, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_stream_read(h, "wr-1", "s", -1, 0, 0, &vals, &next, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_stream_read(h, "wr-1", "s", 0, -1, 0, &vals, &next, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_stream_read(h, "wr-1", "", 0, 0, 0, &vals, &next, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_stream_read(h, "wr-1", "s", 0, 0, 0, NULL, &next, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_stream_read(NULL, "wr-1", "s", 0, 0, 0, &vals, &next, NULL));
    assert_null(vals);
}

/* A reader follows a stream while step code and workflow code append to it. */
static void test_stream_followed_live(void **state)
{
    enum { N = 300, M = 20 };
    start(h, "emitter", "em-1", "{\"n\":300,\"m\":20,\"gate\":3}");
    long long offset = 0;
    int reads = 0, closed = 0, gate_opened = 0;
    while (!closed) {
        char *vals = NULL;
        long long next = -1;
        T_OK(h, cairn_stream_read(h, "em-1", "live", offset, 50, 30000, &vals, &next, &closed));
        reads++;
        json_t *arr = json_loads(vals, 0, NULL);
        if (!json_is_array(arr) || (long long)json_array_size(arr) != next - offset)
            fail_msg("read %d from %lld: next %lld, values %s", reads, offset, next, vals);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            long long k = offset + (long long)i;
            json_t *v = json_array_get(arr, i);
            json_t *want = k < N ? json_pack("{s:I}", "t", (json_int_t)k) : json_pack("{s:I}", "w", (json_int_t)(k - N));
            if (!json_equal(v, want))
                fail_msg("value at offset %lld is %s", k, json_dumps(v, JSON_COMPACT));
            json_decref(want);
        }
        json_decref(arr);
        cairn_free(vals);
        offset = next;
        if (offset == N + M && !gate_opened) {
            gate_opened = 1;
            assert_int_equal(closed, 0); /* every value read, but the stream is still open */
            atomic_store(&gates[3], 1);
        }
    }
    assert_int_equal(offset, N + M);
    /* It followed the stream as it grew rather than reading it at the end in one go. */
    if (reads < 4)
        fail_msg("only %d reads for %d values", reads, N + M);
    await_success(h, "em-1", "null");
}

/* Values appended from a step stay when the attempt fails: at least once, told apart by attempt. */
static void test_step_appends_are_at_least_once(void **state)
{
    start(h, "flaky", "fl-1", NULL);
    await_success(h, "fl-1", "null");
    expect_read("fl-1", "tries", 0, 0,
                "[{\"a\":1,\"t\":0},{\"a\":1,\"t\":1},{\"a\":1,\"t\":2},{\"a\":2,\"t\":0},{\"a\":2,\"t\":1},"
                "{\"a\":2,\"t\":2},{\"a\":3,\"t\":0},{\"a\":3,\"t\":1},{\"a\":3,\"t\":2}]",
                9, 1);
}

/* Malformed arguments are refused before anything is written, and take no step position. */
static void test_bad_arguments_write_nothing(void **state)
{
    start(small, "bad", "bad-1", NULL);
    await_success(small, "bad-1",
                  "{\"workflow\":[-1,-1,-1,-1,-1,-2,-2,-3,-1,-1,-2,-3,-1,-1],\"step\":[-1,-1,-1,-2,-3]}");
    assert_int_equal(q_long("SELECT count(*) FROM cairn.events WHERE workflow_id = 'bad-1'", NULL, NULL), 0);
    assert_int_equal(q_long("SELECT count(*) FROM cairn.streams WHERE workflow_id = 'bad-1'", NULL, NULL), 0);
    assert_int_equal(q_long("SELECT count(*) FROM cairn.stream_values WHERE workflow_id = 'bad-1'", NULL, NULL), 0);
    expect_text("the recorded steps", "SELECT string_agg(name, ' ' ORDER BY step) FROM cairn.steps WHERE workflow_id = $1",
                "bad-1", NULL, "bad_appends");
    char *v = NULL;
    T_RC(h, CAIRN_EINVAL, cairn_get_event(NULL, "bad-1", "k", 0, &v));
    T_RC(h, CAIRN_EINVAL, cairn_get_event(h, "bad-1", "k", 0, NULL));
    T_RC(h, CAIRN_EINVAL, cairn_get_event(h, "", "k", 0, &v));
    T_RC(h, CAIRN_EINVAL, cairn_get_event(h, "bad-1", "k\n", 0, &v));
    assert_null(v);
}

/* A read stops adding values once they pass the handle's max_payload, but always returns one. */
static void test_stream_read_byte_limit(void **state)
{
    start(small, "big", "big-1", "{\"n\":5}");
    await_success(small, "big-1", "null");
    char *vals = NULL;
    long long next = 0;
    int closed = -1;
    /* 400-byte values against a 1024-byte limit: the third starts at 800 bytes, the fourth would at 1200. */
    T_OK(small, cairn_stream_read(small, "big-1", "b", 0, 0, 0, &vals, &next, &closed));
    assert_int_equal(next, 3);
    assert_int_equal(closed, 0);
    assert_int_equal(strlen(vals), 2 + 3 * 400 + 2);
    assert_int_equal(vals[1], '"');
    assert_int_equal(vals[2], 'a');
    assert_int_equal(vals[2 + 2 * 401], 'c');
    cairn_free(vals);
    T_OK(small, cairn_stream_read(small, "big-1", "b", 3, 0, 0, &vals, &next, &closed));
    assert_int_equal(next, 5);
    assert_int_equal(closed, 1);
    cairn_free(vals);
    /* The handle with the 16 MiB default reads all five at once. */
    T_OK(h, cairn_stream_read(h, "big-1", "b", 0, 0, 0, &vals, &next, &closed));
    assert_int_equal(next, 5);
    cairn_free(vals);
}

/* ---- 3. a zombie and its replacement append to one stream at once ------ */

static cairn *open_named(const char *executor)
{
    cairn *x = t_open(executor, 4);
    register_all(x);
    return x;
}

static void test_zombie_and_replacement_share_offsets(void **state)
{
    enum { N = 300 };
    /* Executor A starts the workflow; its step appends slowly. */
    cairn *a = open_named("ev-zombie-a");
    T_OK(a, cairn_start_workers(a));
    start(a, "zombie_stream", "zs-1", "{\"n\":300,\"gate\":4}");
    for (int i = 0; i < 10000 && q_long("SELECT count(*) FROM cairn.stream_values WHERE workflow_id = 'zs-1'",
                                        NULL, NULL) < 30;
         i++)
        sleep_ms(2);
    /* Executor B takes the workflow over (as adoption of a dead executor would) and replays it:
     * its own execution of the step appends while A's is still appending. */
    t_exec("UPDATE cairn.workflow_status SET executor_id = 'ev-zombie-b' WHERE id = 'zs-1'");
    cairn *b = open_named("ev-zombie-b");
    T_OK(b, cairn_start_workers(b));
    for (int i = 0; i < 30000 && q_long("SELECT count(*) FROM cairn.stream_values WHERE workflow_id = 'zs-1'",
                                        NULL, NULL) < 2 * N;
         i++)
        sleep_ms(2);
    /* Both executions, past the step, now race for the workflow's own append. */
    atomic_store(&gates[4], 1);
    await_success(b, "zs-1", "null");
    cairn_close(a); /* waits for A's execution, which found every step recorded by then or lost the race */
    cairn_close(b);

    /* Offsets 0..2N: gapless, unique (the primary key), and the stream's length agrees. */
    assert_int_equal(q_long("SELECT count(*) FROM cairn.stream_values WHERE workflow_id = 'zs-1'", NULL, NULL),
                     2 * N + 1);
    assert_int_equal(q_long("SELECT max(\"offset\") FROM cairn.stream_values WHERE workflow_id = 'zs-1'", NULL, NULL),
                     2 * N);
    assert_int_equal(q_long("SELECT next_offset FROM cairn.streams WHERE workflow_id = 'zs-1' AND closed_at IS NOT NULL",
                            NULL, NULL),
                     2 * N + 1);
    /* Each execution's values in its own order, all of them; the workflow's own append once, last. */
    for (int exec = 1; exec <= 2; exec++) {
        char e[8], want[16];
        snprintf(e, sizeof e, "%d", exec);
        snprintf(want, sizeof want, "%d", N);
        expect_text("values of one execution, in order",
                    "SELECT count(*) FILTER (WHERE t = rn - 1) FROM (SELECT (value->>'t')::int AS t,"
                    " row_number() OVER (ORDER BY \"offset\") AS rn FROM cairn.stream_values"
                    " WHERE workflow_id = 'zs-1' AND value->>'exec' = $1) x",
                    e, NULL, want);
    }
    expect_text("the workflow's append", "SELECT string_agg(\"offset\"::text, ',') FROM cairn.stream_values"
                " WHERE workflow_id = $1 AND value::text = '{\"end\":true}'",
                "zs-1", NULL, "600");
    /* The two executions really did append at the same time. */
    assert_true(q_long("SELECT (min(\"offset\") FILTER (WHERE value->>'exec' = '2')"
                       " < max(\"offset\") FILTER (WHERE value->>'exec' = '1'))::int"
                       " FROM cairn.stream_values WHERE workflow_id = 'zs-1'",
                       NULL, NULL) == 1);
}

/* ---- 4. worker processes killed between events and mid-stream ------------ */

#define K_EVENTS 3
#define K_VALUES 10
#define K_TOKENS 8

/* The test database's conninfo, naming the workers' connections so that wait_for_backends() can find them. */
static const char *worker_db(void)
{
    static char buf[1400];
    snprintf(buf, sizeof buf, "%s application_name='events_worker'", t_db());
    return buf;
}

typedef struct proc {
    pid_t pid;
    int fd;
} proc;

static proc spawn_worker(const char *executor, const char *crash_at, int events, int values, int tokens,
                         int sleep, int nids, const char *const *ids)
{
    char e[16], v[16], t[16], s[16];
    snprintf(e, sizeof e, "%d", events);
    snprintf(v, sizeof v, "%d", values);
    snprintf(t, sizeof t, "%d", tokens);
    snprintf(s, sizeof s, "%d", sleep);
    const char *argv[64] = {EVENTS_WORKER, "--db",   worker_db(), "--executor", executor, "--workers", "4",
                            "--events",    e,        "--values", v,   "--tokens", t,        "--sleep-ms", s};
    int argc = 15;
    for (int i = 0; i < nids && argc < 63; i++)
        argv[argc++] = ids[i];
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
        if (crash_at)
            setenv("CRASH_AT", crash_at, 1);
        else
            unsetenv("CRASH_AT");
        execv(EVENTS_WORKER, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    return (proc){pid, fds[0]};
}

/* Appends what fd delivers to buf until it holds marker, fd closes, or timeout_ms pass (negative: none). */
static int read_until(int fd, char *buf, size_t len, size_t *n, const char *marker, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        if (marker && strstr(buf, marker))
            return 1;
        int wait = timeout_ms < 0 ? -1 : (int)(deadline - now_ms() > 0 ? deadline - now_ms() : 0);
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

static int wait_pid(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    return status;
}

/*
 * Waits until no backend of a worker process is connected: a killed
 * worker's transaction in flight has then committed or rolled back before
 * the next worker starts or the test looks. Workers connect with
 * application_name events_worker (see worker_db()).
 */
static void wait_for_backends(void)
{
    for (int i = 0; i < 10000; i++) {
        if (q_long("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND application_name = 'events_worker'",
                   NULL, NULL) == 0)
            return;
        sleep_ms(1);
    }
    fail_msg("backends of a dead worker are still connected after 10 s");
}

static void expect_killed(const char *what, int status, const char *out)
{
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("%s: the worker should have died by SIGKILL but ended with wait status 0x%x; its output:\n%s", what,
                 (unsigned)status, out);
}

static void expect_exit0(const char *what, int status, const char *out)
{
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("%s: the worker should have exited with status 0 but ended with wait status 0x%x; its output:\n%s",
                 what, (unsigned)status, out);
}

/* Runs a worker to its end; returns its wait status, its stdout in out. */
static int run_worker(const char *executor, const char *crash_at, const char *id, char *out, size_t len)
{
    const char *ids[1] = {id};
    proc p = spawn_worker(executor, crash_at, K_EVENTS, K_VALUES, K_TOKENS, 0, 1, ids);
    size_t n = 0;
    out[0] = '\0';
    read_until(p.fd, out, len, &n, NULL, -1);
    close(p.fd);
    int status = wait_pid(p.pid);
    wait_for_backends();
    return status;
}

/*
 * The audit trail of a publisher's events, as "key=value" in commit order:
 * status "started", `pairs` pairs of progress and e<i>, then progress
 * pairs+1 if `extra`, then status "done" if `done`.
 */
static void audit_want(char *buf, size_t len, int pairs, int extra, int done)
{
    size_t n = (size_t)snprintf(buf, len, "status=\"started\"");
    for (int i = 1; i <= pairs; i++)
        n += (size_t)snprintf(buf + n, len - n, " progress={\"i\":%d} e%d=%d", i, i, i);
    if (extra)
        n += (size_t)snprintf(buf + n, len - n, " progress={\"i\":%d}", pairs + 1);
    if (done)
        snprintf(buf + n, len - n, " status=\"done\"");
}

static void expect_audit(const char *id, const char *want)
{
    char what[128];
    snprintf(what, sizeof what, "%s: every event written once, in order", id);
    expect_text(what, "SELECT coalesce(string_agg(key || '=' || value, ' ' ORDER BY seq), '') FROM event_audit"
                " WHERE workflow_id = $1", id, NULL, want);
}

/* The values of stream "out": exactly {"j": 0..count-1} at offsets 0..count-1, and whether it is closed. */
static void expect_out(const char *id, int count, int closed)
{
    char want[4096], what[128];
    size_t n = 0;
    want[0] = '\0';
    for (int j = 0; j < count; j++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:{\"j\":%d}", j ? " " : "", j, j);
    snprintf(what, sizeof what, "%s: stream out holds each value once", id);
    expect_text(what, "SELECT coalesce(string_agg(\"offset\" || ':' || value::text, ' ' ORDER BY \"offset\"), '')"
                " FROM cairn.stream_values WHERE workflow_id = $1 AND stream = 'out'", id, NULL, want);
    snprintf(what, sizeof what, "%s: stream out's length and closed flag", id);
    snprintf(want, sizeof want, count == 0 && !closed ? "" : "%d %s", count, closed ? "true" : "false");
    expect_text(what, "SELECT next_offset || ' ' || (closed_at IS NOT NULL) FROM cairn.streams"
                " WHERE workflow_id = $1 AND name = 'out'", id, NULL, want);
}

/*
 * The values of stream "tokens", as "t/execution" in offset order. Step
 * appends are at least once: each execution that reached the step appended
 * a prefix of 0..T-1, the last one all of it. Returns the text for the
 * caller's exact comparisons.
 */
static void tokens_text(const char *id, char *buf, size_t len)
{
    q_text("SELECT coalesce(string_agg((value->>'t') || '/' || (value->>'execution'), ' ' ORDER BY \"offset\"), '')"
           " FROM cairn.stream_values WHERE workflow_id = $1 AND stream = 'tokens'",
           id, NULL, buf, len);
}

static void expect_tokens_at_least_once(const char *id, int tokens)
{
    PGresult *r = query("SELECT (value->>'t')::int, (value->>'execution')::int, \"offset\" FROM cairn.stream_values"
                        " WHERE workflow_id = $1 AND stream = 'tokens' ORDER BY \"offset\"",
                        id, NULL, NULL);
    int n = PQntuples(r), prev_t = -1, prev_exec = 0;
    char got[8192];
    tokens_text(id, got, sizeof got);
    for (int i = 0; i < n; i++) {
        int t = atoi(PQgetvalue(r, i, 0)), exec = atoi(PQgetvalue(r, i, 1));
        int ok = atoi(PQgetvalue(r, i, 2)) == i &&
                 ((t == prev_t + 1 && exec == prev_exec) || (t == 0 && exec > prev_exec));
        if (!ok) {
            PQclear(r);
            fail_msg("%s: tokens are not prefixes appended by successive executions: %s", id, got);
        }
        prev_t = t, prev_exec = exec;
    }
    PQclear(r);
    if (prev_t != tokens - 1)
        fail_msg("%s: the last execution did not append all %d tokens: %s", id, tokens, got);
    char want[32];
    snprintf(want, sizeof want, "%d true", n);
    expect_text("stream tokens' length and closed flag",
                "SELECT next_offset || ' ' || (closed_at IS NOT NULL) FROM cairn.streams"
                " WHERE workflow_id = $1 AND name = 'tokens'", id, NULL, want);
}

/* Everything a finished publisher must have left: each event and each value of "out" once, the final values. */
static void expect_publisher_done(const char *id, int events, int values, int tokens)
{
    char want[8192];
    audit_want(want, sizeof want, events, 0, 1);
    expect_audit(id, want);
    expect_out(id, values, 1);
    expect_tokens_at_least_once(id, tokens);
    snprintf(want, sizeof want, "{\"i\":%d}", events);
    expect_event(id, "progress", want);
    expect_event(id, "status", "\"done\"");
    snprintf(want, sizeof want, "SUCCESS {\"events\":%d,\"values\":%d,\"tokens\":%d}", events, values, tokens);
    expect_text("the workflow's end", "SELECT status || ' ' || output::text FROM cairn.workflows WHERE id = $1", id,
                NULL, want);
}

/*
 * Kills a worker at one point, checks what was durable then, resumes the
 * workflow in a new process under the same executor ID and checks that
 * every event and stream value was written exactly once.
 */
static void kill_case(const char *crash_at)
{
    char id[64], executor[64], out[4096], want[4096], what[96];
    snprintf(id, sizeof id, "kill-%s", crash_at);
    snprintf(executor, sizeof executor, "ex-kill-%s", crash_at);
    int k = atoi(strchr(crash_at, ':') ? strchr(crash_at, ':') + 1 : "0");

    snprintf(what, sizeof what, "CRASH_AT=%s", crash_at);
    expect_killed(what, run_worker(executor, crash_at, id, out, sizeof out), out);
    char tokens[4096];
    if (strncmp(crash_at, "event:", 6) == 0) {
        audit_want(want, sizeof want, k - 1, 1, 0);
        expect_audit(id, want);
        expect_out(id, 0, 0);
    } else {
        audit_want(want, sizeof want, K_EVENTS, 0, 0);
        expect_audit(id, want);
        if (strncmp(crash_at, "value:", 6) == 0)
            expect_out(id, k, 0);
        else
            expect_out(id, K_VALUES, strcmp(crash_at, "close") == 0);
    }
    tokens_text(id, tokens, sizeof tokens);
    int at_token = strncmp(crash_at, "token:", 6) == 0;
    int tokens_done = strcmp(crash_at, "close") == 0;
    size_t n = 0;
    want[0] = '\0';
    for (int t = 0; t < (at_token ? k : tokens_done ? K_TOKENS : 0); t++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%d/1", t ? " " : "", t);
    if (strcmp(tokens, want) != 0)
        fail_msg("%s at the kill: tokens %s, expected %s", id, tokens, want);
    expect_event(id, "status", "\"started\"");

    snprintf(what, sizeof what, "resuming after CRASH_AT=%s", crash_at);
    expect_exit0(what, run_worker(executor, NULL, id, out, sizeof out), out);
    expect_publisher_done(id, K_EVENTS, K_VALUES, K_TOKENS);
    /* The step that appends tokens ran again only if it was interrupted. */
    tokens_text(id, tokens, sizeof tokens);
    n = 0;
    want[0] = '\0';
    if (at_token)
        for (int t = 0; t < k; t++)
            n += (size_t)snprintf(want + n, sizeof want - n, "%d/1 ", t);
    for (int t = 0; t < K_TOKENS; t++)
        n += (size_t)snprintf(want + n, sizeof want - n, "%s%d/%d", t ? " " : "", t,
                              tokens_done ? 1 : 2);
    if (strcmp(tokens, want) != 0)
        fail_msg("%s after resuming: tokens %s, expected %s", id, tokens, want);
    assert_int_equal(q_long("SELECT attempts FROM cairn.workflows WHERE id = $1", id, NULL), 2);
}

static void test_kill_between_events_and_mid_stream(void **state)
{
    static const char *const points[] = {"event:1", "event:3", "value:1", "value:6", "value:10",
                                         "token:1", "token:5", "close"};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
        kill_case(points[i]);
}

/* ---- 5. kills at random moments, with readers following the streams ----- */

#define R_WORKFLOWS 6
#define R_EVENTS 4
#define R_VALUES 24
#define R_TOKENS 16
#define R_SLEEP_MS 20
#define R_MIN_KILLS 30
#define R_MAX_KILLS 400

typedef struct follower {
    const char *id;
    int rc;
    int reads;
    char errmsg[256];
    char values[4096]; /* the values read, as "offset:value" */
} follower;

/* Follows stream "out" of one workflow from offset 0 to its end, through every kill and restart. */
static void *follow_out(void *arg)
{
    follower *f = arg;
    long long offset = 0;
    size_t n = 0;
    int closed = 0;
    f->values[0] = '\0';
    while (!closed) {
        char *vals = NULL;
        long long next = 0;
        f->rc = cairn_stream_read(h, f->id, "out", offset, 5, 120000, &vals, &next, &closed);
        if (f->rc != CAIRN_OK) {
            snprintf(f->errmsg, sizeof f->errmsg, "%s", cairn_errmsg(h));
            return NULL;
        }
        f->reads++;
        json_t *arr = json_loads(vals, 0, NULL);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            char *v = json_dumps(json_array_get(arr, i), JSON_COMPACT);
            n += (size_t)snprintf(f->values + n, sizeof f->values - n, "%s%lld:%s", n ? " " : "",
                                  offset + (long long)i, v);
            free(v);
        }
        if ((long long)json_array_size(arr) != next - offset) {
            f->rc = CAIRN_EFAIL;
            snprintf(f->errmsg, sizeof f->errmsg, "read from %lld returned %s but next_offset %lld", offset, vals,
                     next);
        }
        json_decref(arr);
        cairn_free(vals);
        if (f->rc != CAIRN_OK)
            return NULL;
        offset = next;
    }
    return NULL;
}

static unsigned rng_next(unsigned *s)
{
    unsigned x = *s;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    return *s = x ? x : 0x9e3779b9u;
}

static void test_random_kills_with_followers(void **state)
{
    const char *env = getenv("EVENTS_SEED");
    unsigned seed = env && *env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ ((unsigned)getpid() << 8);
    unsigned rng = seed ? seed : 1;
    printf("random kills: seed %u (set EVENTS_SEED=%u to repeat the same delays)\n", seed, seed);

    int kills = 0;
    for (int round = 0; kills < R_MIN_KILLS; round++) {
        if (round == 40)
            fail_msg("only %d kills in %d rounds", kills, round);
        char idbuf[R_WORKFLOWS][32], executor[32];
        const char *ids[R_WORKFLOWS];
        for (int i = 0; i < R_WORKFLOWS; i++) {
            snprintf(idbuf[i], sizeof idbuf[i], "rnd-%d-%d", round, i);
            ids[i] = idbuf[i];
        }
        snprintf(executor, sizeof executor, "ex-rnd-%d", round);

        /* The first worker creates the workflows; readers follow them from then on. */
        follower f[R_WORKFLOWS];
        pthread_t th[R_WORKFLOWS];
        int following = 0;
        /* On a machine too slow for the delays (a sanitizer build), stretch them after kills that change nothing. */
        char like[32];
        snprintf(like, sizeof like, "rnd-%d-%%", round);
        long checkpoints = 0;
        int stretch = 1, stalled = 0;
        for (int run = 0;; run++) {
            proc p = spawn_worker(executor, NULL, R_EVENTS, R_VALUES, R_TOKENS, R_SLEEP_MS, R_WORKFLOWS, ids);
            char out[8192] = "";
            size_t n = 0;
            int from_fork = run > 0 && rng_next(&rng) % 4 == 0;
            if (!from_fork)
                read_until(p.fd, out, sizeof out, &n, "started\n", 30000);
            if (!following && strstr(out, "started\n")) {
                for (int i = 0; i < R_WORKFLOWS; i++) {
                    memset(&f[i], 0, sizeof f[i]);
                    f[i].id = ids[i];
                    pthread_create(&th[i], NULL, follow_out, &f[i]);
                }
                following = 1;
            }
            sleep_ms((5 + rng_next(&rng) % 100) * stretch);
            if (!read_until(p.fd, out, sizeof out, &n, "finished\n", 0))
                kill(p.pid, SIGKILL);
            read_until(p.fd, out, sizeof out, &n, NULL, -1);
            close(p.fd);
            int status = wait_pid(p.pid);
            wait_for_backends();
            if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
                if (++kills > R_MAX_KILLS)
                    fail_msg("the workflows were not finished after %d kills (delays stretched %dx)", kills, stretch);
                long now = q_long("SELECT count(*) FROM cairn.steps WHERE workflow_id LIKE $1", like, NULL);
                stalled = now == checkpoints ? stalled + 1 : 0;
                checkpoints = now;
                if (stalled >= 8 && stretch < 16) {
                    stretch *= 2;
                    stalled = 0;
                    printf("random kills: 8 kills in a row left no new checkpoint; delays stretched %dx\n", stretch);
                }
                continue;
            }
            expect_exit0("a run that was not killed", status, out);
            break;
        }
        assert_true(following);
        for (int i = 0; i < R_WORKFLOWS; i++) {
            pthread_join(th[i], NULL);
            if (f[i].rc != CAIRN_OK)
                fail_msg("following %s: %s: %s", ids[i], cairn_strerror(f[i].rc), f[i].errmsg);
            char want[4096];
            size_t n = 0;
            want[0] = '\0';
            for (int j = 0; j < R_VALUES; j++)
                n += (size_t)snprintf(want + n, sizeof want - n, "%s%d:{\"j\":%d}", j ? " " : "", j, j);
            if (strcmp(f[i].values, want) != 0)
                fail_msg("the reader of %s saw %s, expected %s", ids[i], f[i].values, want);
            expect_publisher_done(ids[i], R_EVENTS, R_VALUES, R_TOKENS);
        }
        printf("round %d: %d kills so far\n", round, kills);
    }
}

/* ---- main --------------------------------------------------------------- */

static const char *audit_ddl =
    "CREATE TABLE event_audit (seq bigserial PRIMARY KEY, workflow_id text, key text, value text);"
    "CREATE FUNCTION audit_event() RETURNS trigger LANGUAGE plpgsql AS $$"
    "BEGIN INSERT INTO event_audit (workflow_id, key, value) VALUES (NEW.workflow_id, NEW.key, NEW.value::text);"
    " RETURN NEW; END $$;"
    "CREATE TRIGGER event_audit AFTER INSERT OR UPDATE ON cairn.events FOR EACH ROW EXECUTE FUNCTION audit_event();";

static int setup(void **state)
{
    t_fresh_db("cairn_test_events");
    h = t_open("ev-main", 4);
    register_all(h);
    T_OK(h, cairn_start_workers(h));
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = t_db();
    o.executor_id = "ev-small";
    o.workers = 2;
    o.max_payload = SMALL_PAYLOAD;
    T_OK(small, cairn_open(&small, &o));
    register_all(small);
    T_OK(small, cairn_start_workers(small));
    db = t_pg();
    PGresult *r = PQexec(db, audit_ddl);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "creating the audit trigger: %s", PQerrorMessage(db));
    PQclear(r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    cairn_close(small);
    cairn_close(h);
    PQfinish(db);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_events_publish_and_read),
        cmocka_unit_test(test_event_wait_is_woken),
        cmocka_unit_test(test_stream_read_in_order),
        cmocka_unit_test(test_stream_followed_live),
        cmocka_unit_test(test_step_appends_are_at_least_once),
        cmocka_unit_test(test_bad_arguments_write_nothing),
        cmocka_unit_test(test_stream_read_byte_limit),
        cmocka_unit_test(test_zombie_and_replacement_share_offsets),
        cmocka_unit_test(test_kill_between_events_and_mid_stream),
        cmocka_unit_test(test_random_kills_with_followers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
