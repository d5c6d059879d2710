/*
 * The fleet: this executor's row in cairn.executors, its heartbeats (which
 * also adopt the work of executors whose lease ran out), noticing that this
 * executor itself was presumed dead, and handing work back on a graceful
 * stop. The rules live in sql/003_queues.sql (cairn.heartbeat); this file
 * decides what the process does with the answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

long long cairn__db_now_ms(cairn *h)
{
    return cairn__wall_ms() + atomic_load(&h->clock_offset_ms);
}

long long cairn__db_clock_error_ms(cairn *h)
{
    return atomic_load(&h->clock_error_ms);
}

/*
 * Learns the database clock's offset from a reading taken between before
 * and after (this host's clock). The error bound is half the round trip
 * plus what whole milliseconds lose: the server rounds its reading (half a
 * millisecond), before and after are truncated (the round trip may be a
 * millisecond longer than they say), the midpoint is halved in integers
 * (half a millisecond), and cairn__db_now_ms() truncates this host's clock
 * again (a millisecond). A bound of half the round trip plus 1 let an
 * in-thread sleep resumed after a crash end 1 ms before its recorded time.
 */
static void clock_reading(cairn *h, const char *db_ms, long long before, long long after)
{
    long long db = atoll(db_ms);
    if (db > 0) {
        atomic_store(&h->clock_offset_ms, db - (before + after) / 2);
        atomic_store(&h->clock_error_ms, (after - before) / 2 + 3);
    }
}

int cairn__fleet_register(cairn *h)
{
    cairn__uuid7(h->instance);
    char lease[16], pid[16], host[256];
    snprintf(lease, sizeof lease, "%d", h->lease_ms);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    if (gethostname(host, sizeof host) != 0)
        host[0] = '\0';
    host[sizeof host - 1] = '\0';
    const char *vals[6] = {h->executor_id, h->instance, lease, host[0] ? host : NULL, pid, h->app_version};
    PGresult *res = NULL;
    long long before = cairn__wall_ms();
    int rc = cairn__query(h, CAIRN__Q_REGISTER, 6, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    if (PQntuples(res) == 1)
        clock_reading(h, PQgetvalue(res, 0, 1), before, cairn__wall_ms());
    PQclear(res);
    atomic_store(&h->registered, 1);
    atomic_store(&h->hb_ok_ms, cairn__now_ms());
    return CAIRN_OK;
}

/*
 * Every run reserved before now belongs, in the database, to someone else.
 * They stop at their next step (cairn__run_lost); runs reserved after this
 * are new work and unaffected.
 */
static void lose_everything(cairn *h)
{
    atomic_fetch_add(&h->lost_gen, 1);
    pthread_mutex_lock(&h->run_lock);
    pthread_cond_broadcast(&h->sleep_cond); /* cut retry back-offs short */
    pthread_mutex_unlock(&h->run_lock);
}

int cairn__fleet_heartbeat(cairn *h, PGconn *pg)
{
    const char *vals[2] = {h->executor_id, h->instance};
    long long before = cairn__wall_ms();
    PGresult *r = PQexecPrepared(pg, cairn__stmt_name(CAIRN__Q_HEARTBEAT), 2, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg, "heartbeat");
        PQclear(r);
        return rc;
    }
    clock_reading(h, PQgetvalue(r, 0, 2), before, cairn__wall_ms());
    const char *standing = PQgetvalue(r, 0, 0);
    int adopted = atoi(PQgetvalue(r, 0, 1));
    if (strcmp(standing, "LIVE") == 0) {
        PQclear(r);
        atomic_store(&h->hb_ok_ms, cairn__now_ms());
        if (adopted > 0)
            cairn__log(h, CAIRN_LOG_INFO,
                       "executor %s returned %d workflow(s) of executors past their lease to their queues",
                       h->executor_id, adopted);
        return adopted;
    }
    if (strcmp(standing, "TAKEN") == 0) {
        PQclear(r);
        cairn__log(h, CAIRN_LOG_ERROR,
                   "another process started under executor ID '%s' and took over its workflows; this one "
                   "stops claiming work (give each process its own executor ID)",
                   h->executor_id);
        atomic_store(&h->taken, 1);
        lose_everything(h);
        return 0;
    }
    /* DEAD (our lease ran out: we were paused or cut off), STOPPED by hand, or deleted. */
    cairn__log(h, CAIRN_LOG_WARN,
               "executor %s was presumed dead (%s): its workflows went back to their queues; stopping them here "
               "and registering again",
               h->executor_id, standing);
    PQclear(r);
    lose_everything(h);
    int rc = cairn__fleet_register(h);
    return rc < 0 ? rc : 0;
}

void cairn__fleet_stop(cairn *h)
{
    if (!atomic_load(&h->registered))
        return;
    const char *vals[2] = {h->executor_id, h->instance};
    PGresult *res = NULL;
    if (cairn__query(h, CAIRN__Q_STOP, 2, vals, &res) == CAIRN_OK) {
        if (PQntuples(res) > 0)
            cairn__log(h, CAIRN_LOG_INFO, "executor %s handed %d workflow(s) back to their queues", h->executor_id,
                       PQntuples(res));
        PQclear(res);
    } else {
        cairn__log(h, CAIRN_LOG_WARN, "executor %s could not hand its workflows back: %s (they are adopted "
                   "once its lease runs out)", h->executor_id, cairn_errmsg(h));
    }
    atomic_store(&h->registered, 0);
}

void cairn__fleet_release_one(cairn *h, const char *id)
{
    /*
     * Once another process has taken our executor ID, every workflow
     * under the ID is that process's (it resumed them at its start):
     * handing one back would pull it from under its new owner.
     */
    if (atomic_load(&h->taken))
        return;
    const char *vals[2] = {id, h->executor_id};
    PGresult *res = NULL;
    if (cairn__query(h, CAIRN__Q_RELEASE_ONE, 2, vals, &res) == CAIRN_OK) {
        if (PQntuples(res) > 0)
            cairn__log(h, CAIRN_LOG_INFO, "workflow %s went back to its queue", id);
        PQclear(res);
    }
}

int cairn__fleet_reclaim(cairn *h, PGconn *pg)
{
    if (atomic_load(&h->taken) || atomic_load(&h->stopping))
        return 0;
    /*
     * A claim commits on the server and then sends its rows; when the
     * connection breaks in between (a network failure, a backend ended at
     * that moment), the rows never arrive, and the workflows stay PENDING
     * under this executor, whose heartbeats keep anyone else from adopting
     * them. The runs active here are listed first: a run that ends after the
     * list was made is in it and left alone, and one started after it is
     * found active when reserved below. The UPDATE reads status and owner
     * again, so a workflow that finished or was suspended meanwhile is not
     * returned.
     */
    cairn__buf ids;
    cairn__buf_init(&ids);
    cairn__run_ids(h, &ids);
    if (ids.oom) {
        cairn__buf_free(&ids);
        return cairn__fail(CAIRN_ENOMEM, "out of memory listing the runs");
    }
    const char *vals[3] = {h->executor_id, h->names.data, ids.data};
    PGresult *r = PQexecPrepared(pg, cairn__stmt_name(CAIRN__Q_RECLAIM), 3, vals, NULL, NULL, 0);
    cairn__buf_free(&ids);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, pg,
                                "looking for workflows claimed without an answer");
        PQclear(r);
        return rc;
    }
    int resumed = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        cairn__run *run = cairn__run_reserve(h, id, name, cairn__registry_find(&h->workflows, name));
        if (!run)
            continue; /* started here after the list was made */
        run->attempt = atoi(PQgetvalue(r, i, 2));
        cairn__run_submit(h, run);
        resumed++;
    }
    PQclear(r);
    if (resumed)
        cairn__log(h, CAIRN_LOG_WARN, "executor %s resumed %d workflow(s) it owned but was not running", h->executor_id,
                   resumed);
    return resumed;
}

int cairn__fleet_fence(cairn *h, cairn__run *r)
{
    if (!atomic_load(&h->registered) || h->lease_ms <= 0)
        return cairn__run_lost(h, r) || atomic_load(&h->shutting_down);
    int poked = 0;
    for (;;) {
        if (cairn__run_lost(h, r) || atomic_load(&h->shutting_down))
            return 1;
        if (cairn__now_ms() - atomic_load(&h->hb_ok_ms) <= h->lease_ms)
            return 0;
        /* No heartbeat for a whole lease: we may have been presumed dead. Ask now, and wait for the answer. */
        if (!poked) {
            cairn__log(h, CAIRN_LOG_WARN, "workflow %s: no heartbeat for over %d ms; waiting for one before the "
                       "next step", r->id, h->lease_ms);
            poked = 1;
        }
        cairn__dispatch_poke(h);
        if (cairn__sleep(h, 20))
            return 1;
    }
}
