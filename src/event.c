/*
 * Events: a workflow's latest key/value announcements (progress, a status
 * for a UI, the answer to a request), and the machinery that events and
 * streams (stream.c) share for readers outside workflows.
 *
 * A workflow publishes with cairn_set_event(), a step named
 * "cairn.set_event" whose upsert into cairn.events commits in the same
 * transaction as its checkpoint: written once however often the workflow
 * is replayed. Anyone reads with cairn_get_event(), waiting if asked.
 *
 * Waiting readers poll: a NOTIFY per write would take Postgres' cluster-wide
 * commit-time notify lock on every event and every streamed value, which
 * serializes all notifying commits. A reader looks at once, then after 5 ms,
 * doubling up to 100 ms: a reader that waits long costs at most ten
 * primary-key reads a second, and one that keeps up with a busy stream
 * looks again almost at once. Readers in the process that runs the workflow are
 * also woken from memory the moment a write commits (the watch buckets
 * below), so an application that streams a workflow it runs itself sees
 * every value without the polling delay.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"


int cairn__check_payload(const cairn *h, const char *what, const char *json)
{
    char err[256];
    size_t len = strlen(json);
    if (len > h->max_payload)
        return cairn__fail(CAIRN_ETOOBIG, "%s is %zu bytes; the limit is %zu", what, len, h->max_payload);
    if (cairn_json_check(json, len, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EJSON, "%s: %s", what, err);
    return CAIRN_OK;
}

/*
 * Watch buckets: a generation counter per bucket of workflow IDs, bumped
 * after every event or stream write this process commits. A reader notes
 * the generation before it looks in the database and, if it found nothing,
 * sleeps until the generation moves or its poll interval ends; so a write
 * that commits after the look cannot be missed for longer than one
 * interval, and a local one is not missed at all. Hashing IDs into buckets
 * keeps the state fixed-size; a collision only costs a spurious look.
 */
#define WATCH_BUCKETS 64

static struct watch_bucket {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    unsigned long gen;
    int waiters;
} watch[WATCH_BUCKETS];

static pthread_once_t watch_once = PTHREAD_ONCE_INIT;

static void watch_init(void)
{
    for (int i = 0; i < WATCH_BUCKETS; i++) {
        pthread_mutex_init(&watch[i].mu, NULL);
        pthread_cond_init(&watch[i].cond, NULL);
    }
}

static struct watch_bucket *watch_bucket(const char *workflow_id)
{
    uint32_t hash = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)workflow_id; *p; p++)
        hash = (hash ^ *p) * 16777619u;
    pthread_once(&watch_once, watch_init);
    return &watch[hash % WATCH_BUCKETS];
}

unsigned long cairn__watch_gen(const char *workflow_id)
{
    struct watch_bucket *b = watch_bucket(workflow_id);
    pthread_mutex_lock(&b->mu);
    unsigned long gen = b->gen;
    pthread_mutex_unlock(&b->mu);
    return gen;
}

void cairn__watch_bump(const char *workflow_id)
{
    struct watch_bucket *b = watch_bucket(workflow_id);
    pthread_mutex_lock(&b->mu);
    b->gen++;
    if (b->waiters > 0)
        pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}

void cairn__watch_wait(const char *workflow_id, unsigned long seen, long long ms)
{
    if (ms <= 0)
        return;
    struct watch_bucket *b = watch_bucket(workflow_id);
    struct timespec ts;
    cairn__abstime(ms, &ts);
    pthread_mutex_lock(&b->mu);
    b->waiters++;
    while (b->gen == seen)
        if (pthread_cond_timedwait(&b->cond, &b->mu, &ts) == ETIMEDOUT)
            break;
    b->waiters--;
    pthread_mutex_unlock(&b->mu);
}

long long cairn__poll_next(long long interval)
{
    return interval * 2 > CAIRN__POLL_MAX_MS ? CAIRN__POLL_MAX_MS : interval * 2;
}

/* ---- events ----------------------------------------------------------- */

/* Publish: insert the key or replace its value. */
static const char set_event_sql[] =
    "INSERT INTO cairn.events (workflow_id, key, value) VALUES ($1, $2, $3::json)"
    " ON CONFLICT (workflow_id, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()";

/*
 * Read: the workflow (so that an unknown ID is told from an unpublished
 * key) and the key's value if any, in one snapshot.
 */
static const char get_event_sql[] =
    "SELECT w.status IN ('SUCCESS', 'ERROR', 'CANCELLED', 'DEAD_LETTER'), e.value"
    "  FROM cairn.workflow_status w"
    "  LEFT JOIN cairn.events e ON e.workflow_id = w.id AND e.key = $2"
    " WHERE w.id = $1";

/* The transactional body of "cairn.set_event": udata is the key, input the value. */
static int set_event_tx(cairn_step_ctx *step, PGconn *conn, const char *input, char **output, void *udata)
{
    const char *vals[3] = {cairn_step_workflow_id(step), udata, input};
    PGresult *r = PQexecParams(conn, set_event_sql, 3, NULL, vals, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CAIRN_OK : cairn_step_fail_pg(step, r);
    PQclear(r);
    return rc;
}

int cairn_set_event(cairn_ctx *ctx, const char *key, const char *value)
{
    cairn__clear_error();
    char err[256];
    if (!ctx)
        return cairn__fail(CAIRN_EINVAL, "ctx is NULL");
    if (cairn__check_name("event key", key, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    if (!value)
        value = "null";
    int rc = cairn__check_payload(cairn__ctx_handle(ctx), "event value", value);
    if (rc != CAIRN_OK)
        return rc;
    cairn__entry e;
    memset(&e, 0, sizeof e);
    e.tx = set_event_tx;
    e.udata = (void *)key;
    e.isolation = CAIRN_READ_COMMITTED;
    rc = cairn__step_run(ctx, "cairn.set_event", &e, value, NULL);
    if (rc == CAIRN_OK)
        cairn__watch_bump(cairn_ctx_id(ctx));
    return rc;
}

int cairn_get_event(cairn *h, const char *workflow_id, const char *key, int timeout_ms, char **value)
{
    cairn__clear_error();
    char err[256];
    if (value)
        *value = NULL;
    if (!h || !value)
        return cairn__fail(CAIRN_EINVAL, "handle or value is NULL");
    if (cairn__check_name("workflow ID", workflow_id, err, sizeof err) != CAIRN_OK ||
        cairn__check_name("event key", key, err, sizeof err) != CAIRN_OK)
        return cairn__fail(CAIRN_EINVAL, "%s", err);
    long long deadline = timeout_ms < 0 ? -1 : cairn__now_ms() + timeout_ms;
    long long interval = CAIRN__POLL_MIN_MS;
    const char *vals[2] = {workflow_id, key};
    for (;;) {
        unsigned long seen = cairn__watch_gen(workflow_id);
        PGresult *res = NULL;
        int rc = cairn__pool_exec(h, get_event_sql, 2, vals, "reading an event", &res);
        if (rc != CAIRN_OK)
            return rc;
        if (PQntuples(res) == 0) {
            PQclear(res);
            return cairn__fail(CAIRN_ENOTFOUND, "no workflow has ID '%s'", workflow_id);
        }
        if (!PQgetisnull(res, 0, 1)) {
            *value = cairn__strdup(PQgetvalue(res, 0, 1));
            PQclear(res);
            return *value ? CAIRN_OK : cairn__fail(CAIRN_ENOMEM, "out of memory");
        }
        int finished = PQgetvalue(res, 0, 0)[0] == 't';
        PQclear(res);
        if (finished)
            return cairn__fail(CAIRN_ETIMEDOUT, "workflow %s finished without publishing event '%s'", workflow_id,
                               key);
        long long now = cairn__now_ms();
        if (deadline >= 0 && now >= deadline)
            return cairn__fail(CAIRN_ETIMEDOUT, "workflow %s published no event '%s' within %d ms", workflow_id, key,
                               timeout_ms);
        long long wait = interval;
        if (deadline >= 0 && now + wait > deadline)
            wait = deadline - now;
        cairn__watch_wait(workflow_id, seen, wait);
        interval = cairn__poll_next(interval);
    }
}
