/*
 * The cairn demo: an order workflow that survives its worker being killed.
 *
 *   demo run [--order ID]
 *       The whole story. Starts worker 1, which starts the order workflow;
 *       kills it with SIGKILL as soon as the database shows two recorded
 *       steps; starts worker 2 with the same executor ID, which resumes the
 *       workflow (recorded steps come back from their checkpoints, the
 *       others run); then prints the steps the database holds and which
 *       process ran each one.
 *
 *   demo worker --order ID [--executor ID]
 *       One worker process: the code an application runs. It opens cairn,
 *       registers the workflow and its steps, starts the executors (which
 *       resumes whatever this executor ID left unfinished), starts the
 *       order (or finds it, if it already exists) and waits for its result.
 *
 * The database is $CAIRN_DATABASE_URL (else libpq's PG* variables);
 * scripts/demo.sh starts a throwaway one when neither is set.
 */
#include <cairn.h>

#include <jansson.h>

#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define WORKFLOW "process_order"
#define NSTEPS 4

/* Each step pretends to wait this long for an outside service, so a kill lands mid-workflow. */
#define STEP_MS 400

/* `demo run` kills worker 1 once this many steps are recorded. */
#define KILL_AFTER 2

/* How long `demo run` lets each worker take before it gives up. */
#define WORKER_TIMEOUT_MS 60000

/* What the customer ordered: the workflow's input. */
#define ORDER_INPUT "{\"item\": \"espresso machine\", \"amount\": \"249.00 EUR\", \"email\": \"ada@example.com\"}"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Serialise v compactly and release it. The text is malloc'd, as cairn expects of outputs. */
static char *json_text(json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;

    json_decref(v);
    return s;
}

/* Copy one string field of a JSON object given as text into buf ("?" when it is missing). */
static const char *field(const char *json, const char *key, char *buf, size_t len)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    const char *s = json_string_value(json_object_get(v, key));

    snprintf(buf, len, "%s", s ? s : "?");
    json_decref(v);
    return buf;
}

/* ------------------------------------------------------------------------
 * The steps. Each stands for a call to an outside service: a warehouse, a
 * payment provider, a courier, a mail server. Such a call runs again if a
 * worker dies after making it but before its checkpoint is written, so
 * each passes the step's idempotency key, which is the same in every run
 * of that step, and lets the service recognise a repeat.
 *
 * Each output also names the process that ran the step, so that `demo run`
 * can show which steps ran before the kill and which after.
 * ------------------------------------------------------------------------ */

/* Say what the step does and with which idempotency key, then wait as if for the service. */
static void call_service(const cairn_step_ctx *step, const char *name, const char *fmt, ...) CAIRN_PRINTF(3, 4);
static void call_service(const cairn_step_ctx *step, const char *name, const char *fmt, ...)
{
    char what[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    printf("  running step %d (%s): %s, key %s\n", cairn_step_number(step), name, what, cairn_step_key(step));
    sleep_ms(STEP_MS);
}

static int reserve_stock(cairn_step_ctx *step, const char *order, char **output, void *udata)
{
    char item[100];

    call_service(step, "reserve_stock", "hold 1 x %s", field(order, "item", item, sizeof item));
    *output = json_text(json_pack("{s:s, s:i}", "reserved", item, "worker_pid", (int)getpid()));
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

static int charge_card(cairn_step_ctx *step, const char *order, char **output, void *udata)
{
    char amount[100];

    call_service(step, "charge_card", "charge %s", field(order, "amount", amount, sizeof amount));
    *output = json_text(json_pack("{s:s, s:i}", "charged", amount, "worker_pid", (int)getpid()));
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

static int ship_parcel(cairn_step_ctx *step, const char *order, char **output, void *udata)
{
    /* A courier keyed by idempotency key hands out one tracking number per key, whatever the retries. */
    const char *key = cairn_step_key(step);
    uint32_t hash = 2166136261u;
    char tracking[32];

    for (const char *p = key; *p; p++)
        hash = (hash ^ (unsigned char)*p) * 16777619u;
    snprintf(tracking, sizeof tracking, "TRK-%06u", (unsigned)(hash % 1000000u));

    call_service(step, "ship_parcel", "book a courier");
    *output = json_text(json_pack("{s:s, s:i}", "tracking", tracking, "worker_pid", (int)getpid()));
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

static int email_receipt(cairn_step_ctx *step, const char *receipt, char **output, void *udata)
{
    char email[100], tracking[32];

    call_service(step, "email_receipt", "mail %s to %s", field(receipt, "tracking", tracking, sizeof tracking),
                 field(receipt, "email", email, sizeof email));
    *output = json_text(json_pack("{s:s, s:i}", "sent_to", email, "worker_pid", (int)getpid()));
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

/* ------------------------------------------------------------------------
 * The workflow: ordinary C that calls its steps in order. After a crash it
 * runs again from the top; each cairn_step() that already has a checkpoint
 * returns the recorded output at once instead of running the step again.
 * ------------------------------------------------------------------------ */

/* Run one step of the order, and say so when its result came from a checkpoint instead. */
static int order_step(cairn_ctx *ctx, int number, const char *step, const char *input, char **output)
{
    /* Asked before the call: true when an earlier execution recorded this step. */
    int recorded = cairn_ctx_replaying(ctx);
    int rc = cairn_step(ctx, step, input, output);

    if (rc == CAIRN_OK && recorded)
        printf("  replayed step %d (%s) from its checkpoint\n", number, step);
    return rc;
}

static int process_order(cairn_ctx *ctx, const char *order, char **output, void *udata)
{
    char *shipment = NULL;
    char *receipt;
    char email[100], tracking[32];
    int rc;

    if (cairn_ctx_attempt(ctx) == 1)
        printf("  workflow %s starts\n", cairn_ctx_id(ctx));
    else
        printf("  workflow %s resumes: execution %d runs it again from the top\n", cairn_ctx_id(ctx),
               cairn_ctx_attempt(ctx));

    /*
     * A step that fails for good is recorded and fails the order;
     * CAIRN_ESHUTDOWN means this process is stopping and the order resumes
     * later. Either way the workflow just returns.
     */
    rc = order_step(ctx, 1, "reserve_stock", order, NULL);
    if (rc == CAIRN_OK)
        rc = order_step(ctx, 2, "charge_card", order, NULL);
    if (rc == CAIRN_OK)
        rc = order_step(ctx, 3, "ship_parcel", order, &shipment);
    if (rc != CAIRN_OK)
        return rc;

    /* A later step's input is built from earlier outputs, recorded or fresh alike. */
    field(order, "email", email, sizeof email);
    field(shipment, "tracking", tracking, sizeof tracking);
    cairn_free(shipment);
    receipt = json_text(json_pack("{s:s, s:s}", "email", email, "tracking", tracking));
    if (!receipt)
        return cairn_fail(ctx, "out of memory");
    rc = order_step(ctx, 4, "email_receipt", receipt, NULL);
    free(receipt);
    if (rc != CAIRN_OK)
        return rc;

    *output = json_text(json_pack("{s:s, s:s, s:s}", "order", cairn_ctx_id(ctx), "status", "shipped", "tracking",
                                  tracking));
    return *output ? CAIRN_OK : cairn_fail(ctx, "out of memory");
}

/* ------------------------------------------------------------------------
 * A worker process.
 * ------------------------------------------------------------------------ */

/* cairn's log messages, indented like the rest of a worker's output. */
static void print_log(void *udata, int level, const char *message)
{
    fprintf(level >= CAIRN_LOG_WARN ? stderr : stdout, "  cairn: %s\n", message);
}

static int run_worker(const char *order_id, const char *executor_id)
{
    cairn_options opts = {.size = sizeof opts,
                          .executor_id = executor_id, /* NULL: $CAIRN_EXECUTOR_ID, else "local" */
                          .log = print_log,
                          .log_level = CAIRN_LOG_INFO};
    /* A declined or timed-out charge is worth a few more tries before the order fails. */
    cairn_retry charge_retry = {.max_attempts = 3, .base_ms = 500};
    cairn_start_options start = {.size = sizeof start, .id = order_id};
    cairn_status status = CAIRN_STATUS_UNKNOWN;
    char *result = NULL;
    cairn *h = NULL;
    int rc;

    rc = cairn_open(&h, &opts);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, WORKFLOW, process_order, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "reserve_stock", reserve_stock, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "charge_card", charge_card, NULL, &charge_retry);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "ship_parcel", ship_parcel, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_step(h, "email_receipt", email_receipt, NULL, NULL);
    /* This also resumes the workflows this executor ID left unfinished, as after a crash. */
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    /* Idempotent: if the order already exists (we are a restart), nothing new is created. */
    if (rc == CAIRN_OK)
        rc = cairn_start(h, WORKFLOW, ORDER_INPUT, &start, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_await(h, order_id, WORKER_TIMEOUT_MS, &status, &result);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "demo worker: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    printf("  workflow %s finished: %s %s\n", order_id, cairn_status_name(status), result);
    cairn_free(result);
    cairn_close(h);
    return status == CAIRN_STATUS_SUCCESS ? 0 : 1;
}

/* ------------------------------------------------------------------------
 * `demo run`: the supervisor that starts, kills and restarts the workers,
 * then reads back what the database recorded.
 * ------------------------------------------------------------------------ */

/* Start `demo worker` as a new program (not a copy of this one), as a restarted service would be. */
static pid_t spawn_worker(const char *order_id, const char *executor_id)
{
    char *argv[] = {"demo", "worker", "--order", (char *)order_id, "--executor", (char *)executor_id, NULL};
    pid_t pid;
    int err;

    fflush(stdout);
    fflush(stderr);
    err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
    if (err != 0) {
        fprintf(stderr, "demo: cannot start a worker: %s\n", strerror(err));
        return -1;
    }
    return pid;
}

/*
 * The workflow as cairn_describe() reports it, with its steps. NULL when it
 * does not exist (*rc is then CAIRN_ENOTFOUND) or on failure, said on stderr.
 */
static json_t *describe(cairn *h, const char *id, int *rc)
{
    char *text = NULL;
    json_t *wf = NULL;

    *rc = cairn_describe(h, id, 1, &text);
    if (*rc == CAIRN_OK)
        wf = json_loads(text, 0, NULL);
    else if (*rc != CAIRN_ENOTFOUND)
        fprintf(stderr, "demo: reading workflow %s: %s: %s\n", id, cairn_strerror(*rc), cairn_errmsg(h));
    cairn_free(text);
    return wf;
}

/* How many steps of workflow id are recorded (0 while it does not exist yet), or -1 on error. */
static int count_steps(cairn *h, const char *id)
{
    int rc;
    json_t *wf = describe(h, id, &rc);
    int n = wf ? (int)json_array_size(json_object_get(wf, "steps")) : rc == CAIRN_ENOTFOUND ? 0 : -1;

    json_decref(wf);
    return n;
}

static long long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until KILL_AFTER steps are recorded, then SIGKILL the worker. Returns the steps recorded, or -1. */
static int kill_mid_workflow(cairn *h, const char *order_id, pid_t worker)
{
    long long deadline = now_ms() + WORKER_TIMEOUT_MS;
    int wstatus, n;

    while ((n = count_steps(h, order_id)) < KILL_AFTER) {
        if (n < 0)
            break;
        if (waitpid(worker, &wstatus, WNOHANG) == worker) {
            fprintf(stderr, "demo: worker 1 exited (status %d) before step %d was recorded\n", wstatus, KILL_AFTER);
            return -1;
        }
        if (now_ms() > deadline) {
            fprintf(stderr, "demo: worker 1 recorded only %d steps in %d ms\n", n, WORKER_TIMEOUT_MS);
            break;
        }
        sleep_ms(20);
    }
    kill(worker, SIGKILL);
    waitpid(worker, &wstatus, 0);
    if (n < KILL_AFTER)
        return -1;
    if (!WIFSIGNALED(wstatus) || WTERMSIG(wstatus) != SIGKILL) {
        fprintf(stderr, "demo: worker 1 ended on its own (status %d) before it could be killed\n", wstatus);
        return -1;
    }
    /* Read again: whatever the worker committed before the signal landed is in the database. */
    return count_steps(h, order_id);
}

/* "14:30:12.345" out of a timestamp such as "2025-05-20T14:30:12.345678+00:00". */
static const char *clock_time(const char *ts, char *buf, size_t len)
{
    const char *t = ts ? strchr(ts, 'T') : NULL;

    snprintf(buf, len, "%.12s", t ? t + 1 : "?");
    return buf;
}

/*
 * Print the recorded steps as a table and check the story they tell: all
 * NSTEPS steps are recorded, the first `before_kill` by worker 1 and the
 * rest by worker 2. Returns the number of problems found, 0 when it holds.
 */
static int print_steps(json_t *wf, int before_kill, pid_t worker1, pid_t worker2)
{
    json_t *steps = json_object_get(wf, "steps");
    int problems = 0;
    size_t i;
    json_t *s;

    printf("  %-4s  %-13s  %-12s  %-22s  %s\n", "step", "name", "recorded at", "run by", "in worker 2");
    json_array_foreach(steps, i, s) {
        int number = (int)json_integer_value(json_object_get(s, "step"));
        pid_t pid = (pid_t)json_integer_value(json_object_get(json_object_get(s, "output"), "worker_pid"));
        pid_t expected = number <= before_kill ? worker1 : worker2;
        char by[40], at[16];

        if (pid == worker1 || pid == worker2)
            snprintf(by, sizeof by, "worker %d (pid %ld)", pid == worker1 ? 1 : 2, (long)pid);
        else
            snprintf(by, sizeof by, "pid %ld", (long)pid);
        printf("  %-4d  %-13s  %-12s  %-22s  %s\n", number, json_string_value(json_object_get(s, "name")),
               clock_time(json_string_value(json_object_get(s, "created_at")), at, sizeof at), by,
               pid == worker1 ? "replayed from its checkpoint, not run" : "run");
        if (pid != expected || number != (int)i + 1)
            problems++;
    }
    if (json_array_size(steps) != NSTEPS)
        problems++;
    return problems;
}

static int run_demo(const char *order_id)
{
    char executor_id[64];
    cairn_status status = CAIRN_STATUS_UNKNOWN;
    pid_t worker1, worker2;
    json_t *wf;
    cairn *h = NULL;
    int recorded, wstatus, rc, problems;

    /* Both workers use this executor ID, as one service restarted on the same host would. */
    snprintf(executor_id, sizeof executor_id, "demo-worker-%ld", (long)getpid());

    printf("cairn demo: an order workflow of %d steps whose worker is killed with SIGKILL\n"
           "partway through, and a new worker process that finishes it.\n\n",
           NSTEPS);
    /* All defaults: the database is $CAIRN_DATABASE_URL. Opening also creates cairn's tables on first use. */
    rc = cairn_open(&h, NULL);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "demo: cannot open the database: %s\n%s\n"
                "Set CAIRN_DATABASE_URL, or run scripts/demo.sh, which starts a throwaway server.\n",
                cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    printf("  workflow ID  %s\n"
           "  executor ID  %s, used by both workers: a process that starts\n"
           "               with an executor ID resumes what its predecessor left unfinished\n"
           "  step keys    <workflow ID>:<step number>, the idempotency key each step passes\n"
           "               to the outside service it calls\n\n",
           order_id, executor_id);

    worker1 = spawn_worker(order_id, executor_id);
    if (worker1 < 0)
        goto fail;
    printf("Worker 1 (pid %ld) starts the order:\n", (long)worker1);
    recorded = kill_mid_workflow(h, order_id, worker1);
    if (recorded < 0)
        goto fail;
    if (cairn_get_status(h, order_id, &status) != CAIRN_OK)
        goto fail;
    printf("\nWorker 1 (pid %ld) killed with SIGKILL after step %d was recorded.\n"
           "The database still has the workflow %s, with %d of %d steps recorded.\n\n",
           (long)worker1, recorded, cairn_status_name(status), recorded, NSTEPS);
    if (status != CAIRN_STATUS_PENDING || recorded >= NSTEPS) {
        fprintf(stderr, "demo: the kill came too late to interrupt the workflow; run the demo again\n");
        goto fail;
    }

    worker2 = spawn_worker(order_id, executor_id);
    if (worker2 < 0)
        goto fail;
    printf("Worker 2 (pid %ld) starts with the same executor ID and resumes the order:\n", (long)worker2);
    waitpid(worker2, &wstatus, 0);
    if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
        fprintf(stderr, "demo: worker 2 failed (wait status %d)\n", wstatus);
        goto fail;
    }

    wf = describe(h, order_id, &rc);
    if (!wf)
        goto fail;
    printf("\nThe steps the database recorded (cairn_describe):\n");
    problems = print_steps(wf, recorded, worker1, worker2);
    printf("\nThe order finished with status %s after %d executions.\n"
           "  - Steps 1-%d ran once, in worker 1. Worker 2 did not run them again: it took\n"
           "    their results from the checkpoints worker 1 had recorded.\n"
           "  - Step %d had no checkpoint when worker 1 died, so worker 2 ran it. Worker 1 may\n"
           "    have begun it too, which is why it passes the same key in every run: the\n"
           "    courier can recognise the repeat.\n",
           json_string_value(json_object_get(wf, "status")),
           (int)json_integer_value(json_object_get(wf, "attempts")), recorded, recorded + 1);
    if (strcmp(json_string_value(json_object_get(wf, "status")), "SUCCESS") != 0)
        problems++;
    json_decref(wf);
    if (problems) {
        fprintf(stderr, "demo: the recorded steps do not match the story above (%d problems)\n", problems);
        goto fail;
    }
    cairn_close(h);
    return 0;

fail:
    cairn_close(h);
    return 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: demo [run] [--order ID]\n"
               "       demo worker --order ID [--executor ID]\n\n"
               "run     start a worker, kill it with SIGKILL mid-workflow, start another that\n"
               "        finishes the workflow, and show the steps that were recorded\n"
               "worker  run one worker process for order ID until the order is finished\n\n"
               "The database is $CAIRN_DATABASE_URL.\n");
}

int main(int argc, char **argv)
{
    const char *mode = "run", *order_id = NULL, *executor_id = NULL;
    char default_id[64];
    int i = 1;

    /* Line by line, so the output of the workers and of `demo run` interleaves in order. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    if (i < argc && argv[i][0] != '-')
        mode = argv[i++];
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--order") == 0 && i + 1 < argc) {
            order_id = argv[++i];
        } else if (strcmp(argv[i], "--executor") == 0 && i + 1 < argc) {
            executor_id = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    if (strcmp(mode, "worker") == 0) {
        if (!order_id) {
            usage(stderr);
            return 2;
        }
        return run_worker(order_id, executor_id);
    }
    if (strcmp(mode, "run") != 0 || executor_id) {
        usage(stderr);
        return 2;
    }
    if (!order_id) {
        /* One new order per run; a worker restarted with this ID finds it again. */
        time_t t = time(NULL);
        strftime(default_id, sizeof default_id, "demo-order-%Y%m%d-%H%M%S", localtime(&t));
        order_id = default_id;
    }
    return run_demo(order_id);
}
