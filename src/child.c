/*
 * Child workflows: cairn_start_child() enqueues another workflow from a
 * workflow, as a step ("cairn.start_child") whose enqueue commits with its
 * checkpoint, so replay returns the recorded ID and never starts the child
 * again. The child's row names its parent (parent_id), and the statement
 * that records a workflow's finish leaves a wake-up request for its parent,
 * so a parent suspended in cairn_ctx_await() (src/wait.c) is resumed as
 * soon as the child finishes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

typedef struct child_args {
    const char *workflow, *input, *queue, *id, *dedup_key, *partition_key, *app_version, *parent;
    int priority, delay_ms, dedup_error, timeout_ms;
} child_args;

/* The enqueue and the parent link, in the transaction that records the step. */
static int start_child_tx(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    (void)input;
    const child_args *a = udata;
    char prio[16], delay[16];
    snprintf(prio, sizeof prio, "%d", a->priority);
    snprintf(delay, sizeof delay, "%d", a->delay_ms);
    const char *vals[10] = {a->workflow, a->input,         a->queue,       a->id,
                            prio,        delay,            a->dedup_key,   a->partition_key,
                            a->dedup_error ? "true" : "false", a->app_version};
    PGresult *r = PQexecParams(conn,
                               "SELECT pg_catalog.to_json(cairn.enqueue($1, $2::pg_catalog.json, queue => $3, id => $4,"
                               "  priority => $5::pg_catalog.int4,"
                               "  delay => $6::pg_catalog.int4 * pg_catalog.interval '1 millisecond',"
                               "  dedup_key => $7, partition_key => $8, dedup_error => $9::pg_catalog.bool,"
                               "  app_version => $10))::text",
                               10, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = cairn_step_fail_pg(step, r);
        PQclear(r);
        return rc;
    }
    /*
     * A second statement: one statement's parts share a snapshot, so an
     * UPDATE beside the enqueue would not see the row the enqueue inserts.
     * The ID the enqueue returned may be an existing workflow's (same ID or
     * dedup key); only a workflow without a parent becomes this one's child.
     */
    char ms[16];
    snprintf(ms, sizeof ms, "%d", a->timeout_ms);
    const char *link[3] = {a->parent, PQgetvalue(r, 0, 0), a->timeout_ms > 0 ? ms : NULL};
    /*
     * A new child inherits its parent's deadline, or gets its own if that
     * is earlier (least() skips NULLs; no row when both are NULL).
     */
    PGresult *u = PQexecParams(conn,
                               "WITH linked AS ("
                               "  UPDATE cairn.workflow_status SET parent_id = $1"
                               "   WHERE id = ($2::pg_catalog.json #>> '{}') AND parent_id IS NULL AND id <> $1"
                               "  RETURNING id)"
                               " INSERT INTO cairn.deadlines (workflow_id, deadline_at)"
                               " SELECT l.id, x.d FROM linked l, (SELECT LEAST("
                               "     (SELECT p.deadline_at FROM cairn.deadlines p WHERE p.workflow_id = $1),"
                               "     pg_catalog.now() + $3::pg_catalog.int4 * pg_catalog.interval '1 millisecond')) x(d)"
                               "  WHERE x.d IS NOT NULL"
                               " ON CONFLICT (workflow_id) DO NOTHING",
                               3, NULL, link, NULL, NULL, 0);
    if (PQresultStatus(u) != PGRES_COMMAND_OK) {
        int rc = cairn_step_fail_pg(step, u);
        PQclear(u);
        PQclear(r);
        return rc;
    }
    PQclear(u);
    *output = cairn__strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

#define SOPT(o, field) \
    ((o) && (o)->size >= offsetof(cairn_start_options, field) + sizeof((o)->field) ? (o)->field : 0)

int cairn_start_child(cairn_ctx *ctx, const char *workflow, const char *input, const cairn_start_options *opts,
                      char **id_out)
{
    cairn__clear_error();
    char err[256];
    if (id_out)
        *id_out = NULL;
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    cairn *h = cairn__ctx_handle(ctx);
    if (opts && opts->size == 0)
        return cairn__fail(CAIRN_EINVAL, "cairn_start_options.size is 0; set it to sizeof(cairn_start_options)");
    child_args a;
    memset(&a, 0, sizeof a);
    a.workflow = workflow;
    a.input = input ? input : "null";
    a.id = SOPT(opts, id);
    a.queue = SOPT(opts, queue) ? SOPT(opts, queue) : "default";
    a.priority = SOPT(opts, priority);
    a.delay_ms = SOPT(opts, delay_ms);
    a.dedup_key = SOPT(opts, dedup_key);
    a.dedup_error = SOPT(opts, dedup_error);
    a.partition_key = SOPT(opts, partition_key);
    a.timeout_ms = SOPT(opts, timeout_ms);
    a.app_version = h->app_version;
    a.parent = cairn_ctx_id(ctx);
    if (cairn__check_name("workflow name", workflow, err, sizeof err) != CAIRN_OK ||
        cairn__check_name("queue name", a.queue, err, sizeof err) != CAIRN_OK ||
        (a.id && cairn__check_name("workflow ID", a.id, err, sizeof err) != CAIRN_OK) ||
        (a.dedup_key && cairn__check_name("dedup key", a.dedup_key, err, sizeof err) != CAIRN_OK) ||
        (a.partition_key && cairn__check_name("partition key", a.partition_key, err, sizeof err) != CAIRN_OK))
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (a.delay_ms < 0 || a.timeout_ms < 0)
        return cairn__fail(CAIRN_EINVAL, "%s is negative", a.delay_ms < 0 ? "delay_ms" : "timeout_ms");
    size_t len = strlen(a.input);
    if (len > h->max_payload)
        return cairn__fail(CAIRN_ETOOBIG, "child input is %zu bytes; the limit is %zu", len, h->max_payload);
    if (cairn_json_check(a.input, len, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "child input: %s", err);

    /* The default ID is the parent's and this step's position: the same on every replay. */
    char derived[2 * CAIRN__NAME_MAX];
    if (!a.id) {
        snprintf(derived, sizeof derived, "%s/%d", a.parent, ctx->next);
        if (strlen(derived) > CAIRN__NAME_MAX)
            return cairn__fail(CAIRN_EINVAL, "the child's ID '%s' would be longer than %d bytes; set opts->id",
                               derived, CAIRN__NAME_MAX);
        a.id = derived;
    }
    cairn__entry e = {.name = "cairn.start_child", .tx = start_child_tx, .udata = &a};
    char *out = NULL;
    int rc = cairn__step_run(ctx, e.name, &e, "null", &out);
    if (rc != CAIRN_OK)
        return rc;
    if (a.timeout_ms > 0)
        cairn__deadline_set(h);
    /* The output is the ID as a JSON string. */
    json_t *j = json_loads(out ? out : "", JSON_DECODE_ANY, NULL);
    if (id_out && json_is_string(j)) {
        *id_out = cairn__strdup(json_string_value(j));
        if (!*id_out)
            rc = cairn__fail(CAIRN_ENOMEM, "out of memory");
    } else if (id_out) {
        rc = cairn__fail(CAIRN_EDB, "the recorded child ID cannot be read: %s", out ? out : "null");
    }
    json_decref(j);
    cairn_free(out);
    return rc;
}
