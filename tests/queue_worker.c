/*
 * queue_worker: a cairn worker process for the queue tests (test_queue.c),
 * which start several of them at once against the same queues and watch
 * from the database that the queues' limits hold across processes.
 *
 * It runs the workflow "qwork". Its input is a JSON integer M. The
 * workflow runs three steps:
 *   "mark_start"  a transactional step that inserts a row into the table
 *                 `qlog` with the workflow ID, this executor's ID and
 *                 clock_timestamp() as started_at;
 *   "nap"         sleeps M milliseconds;
 *   "mark_end"    a transactional step that sets the row's ended_at to
 *                 clock_timestamp().
 * Each mark commits together with its checkpoint, so every workflow leaves
 * exactly one row, and [started_at, ended_at] lies inside the time the
 * workflow was PENDING: the rows show how many workflows really ran at
 * once. The caller creates the table:
 *
 *   CREATE TABLE qlog (
 *       wf         text PRIMARY KEY,
 *       executor   text NOT NULL,
 *       started_at timestamptz NOT NULL,
 *       ended_at   timestamptz);
 *
 * Usage: queue_worker --db CONNINFO --executor ID [--workers N]
 *            [--poll-ms N] [--queue NAME]...
 *
 * It opens a handle (serving only the given queues, or every queue when
 * none is given), starts its executors, prints "ready" and then serves
 * until its standard input reaches end of file. Then it stops gracefully
 * (running workflows get up to 20 s to finish), prints "stopped" and exits
 * 0; it exits 1 on a failure to start and 2 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cairn.h"

#define MAX_QUEUES 16

/* The executor ID, for the qlog rows; set once before the executors start. */
static const char *executor_id;

static int step_mark_start(cairn_step_ctx *s, PGconn *conn, const char *input, char **output, void *udata)
{
    const char *vals[2] = {cairn_step_workflow_id(s), executor_id};
    PGresult *r = PQexecParams(conn, "INSERT INTO qlog (wf, executor, started_at) VALUES ($1, $2, clock_timestamp())",
                               2, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    PQclear(r);
    return rc;
}

static int step_mark_end(cairn_step_ctx *s, PGconn *conn, const char *input, char **output, void *udata)
{
    const char *vals[1] = {cairn_step_workflow_id(s)};
    PGresult *r = PQexecParams(conn, "UPDATE qlog SET ended_at = clock_timestamp() WHERE wf = $1", 1, NULL, vals,
                               NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(s, r);
    if (rc == CAIRN_OK && strcmp(PQcmdTuples(r), "1") != 0)
        rc = cairn_step_fail(s, "no qlog row for %s", cairn_step_workflow_id(s));
    PQclear(r);
    return rc;
}

static int step_nap(cairn_step_ctx *s, const char *input, char **output, void *udata)
{
    long ms = input ? strtol(input, NULL, 10) : 0;
    if (ms < 0 || ms > 60000)
        return cairn_step_fail(s, "nap of %ld ms is out of range", ms);
    struct timespec ts = {(time_t)(ms / 1000), (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return CAIRN_OK;
}

static int wf_qwork(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    int rc = cairn_step(ctx, "mark_start", NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "nap", input, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_step(ctx, "mark_end", NULL, NULL);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: queue_worker --db CONNINFO --executor ID [--workers N] [--poll-ms N] [--queue NAME]...\n");
    exit(2);
}

/* Parses a positive integer option value or exits with the usage text. */
static int int_arg(const char *name, const char *s)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : -1;
    if (!s || errno || *end || v < 1 || v > 100000) {
        fprintf(stderr, "queue_worker: %s needs a positive integer\n", name);
        usage();
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    const char *queues[MAX_QUEUES + 1] = {NULL};
    int nqueues = 0, workers = 4, poll_ms = 0;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--db") == 0)
            db = v;
        else if (strcmp(a, "--executor") == 0)
            executor_id = v;
        else if (strcmp(a, "--workers") == 0)
            workers = int_arg(a, v);
        else if (strcmp(a, "--poll-ms") == 0)
            poll_ms = int_arg(a, v);
        else if (strcmp(a, "--queue") == 0 && nqueues < MAX_QUEUES)
            queues[nqueues++] = v;
        else
            usage();
    }
    if (!db || !executor_id)
        usage();

    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    o.conninfo = db;
    o.executor_id = executor_id;
    o.workers = workers;
    o.poll_interval_ms = poll_ms;
    o.queues = nqueues > 0 ? queues : NULL;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(h, "mark_start", step_mark_start, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_tx_step(h, "mark_end", step_mark_end, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "nap", step_nap, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "qwork", wf_qwork, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "queue_worker %s: starting: %s: %s\n", executor_id, cairn_strerror(rc),
                h ? cairn_errmsg(h) : "");
        cairn_close(h);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    /* Serve until the test closes our standard input (or dies, which closes it too). */
    char buf[256];
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n == 0 || (n < 0 && errno != EINTR))
            break;
    }

    rc = cairn_stop(h, 20000);
    if (rc != CAIRN_OK)
        fprintf(stderr, "queue_worker %s: stop: %s: %s\n", executor_id, cairn_strerror(rc), cairn_errmsg(h));
    cairn_close(h);
    printf("stopped\n");
    fflush(stdout);
    return 0;
}
