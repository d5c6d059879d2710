/*
 * The dispatcher: one thread per handle that takes ENQUEUED workflows for
 * this handle's executor threads, and heartbeats for the executor. It
 * claims a batch through cairn.claim() (FOR UPDATE SKIP LOCKED, so any
 * number of processes can claim at once without blocking each other; fair
 * across queues; within their limits), only workflows whose names are
 * registered here, and only as many as there are idle executor threads.
 * When there is nothing to claim it arms the wake-up flag (cairn.wakeup),
 * looks once more, and sleeps on its LISTEN connection until a NOTIFY, a
 * finished run freeing a thread, the next heartbeat or the poll interval;
 * a claim that left threads free raises the flag too, rate-limited.
 * When work waits behind a limit it looks again after the claim's hint
 * instead, backing off while other executors hold the queue.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

/*
 * The most one claim takes. A claim costs a fixed part (the function's
 * looks at the executor, the queues and the sleepers, and a commit) plus a
 * part per workflow, so a handle with many threads drains faster when it
 * may take a whole batch of them at once: 40,000 no-op workflows drained
 * at 1.01 x pgbench's insert rate with 128 threads and 1.15 x with 256 at
 * this size, against 0.96 x with 128 at 64 (bench/README.md, 2026-12-06).
 */
#define CLAIM_MAX 256
#define SETTLE_MS 20 /* the look after raising the wake-up flag (see dispatcher_main) */
#define ARM_GAP_MS 100 /* at most one raise of the flag per this many ms after claims that left threads free */

void cairn__dispatch_poke(cairn *h)
{
    if (h->wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t r = write(h->wake_fd, &one, sizeof one);
        (void)r; /* a full counter already means "wake up" */
    }
}

/* Opens the dispatcher's own connection and LISTENs on it. */
static int connect_listener(cairn *h, cairn__conn *c)
{
    int rc = cairn__conn_ensure(h, c);
    if (rc != CAIRN_OK)
        return rc;
    /*
     * Claims and heartbeats commit without waiting for their WAL flush. A
     * claim lost in a server crash only returns the workflow to ENQUEUED,
     * and a workflow's first durable checkpoint flushes its claim with it
     * (WAL is flushed in order); a lost heartbeat is the next one's to
     * redo. Waiting for the flush would serialize the drain on it.
     *
     * Like the commit connections (see cairn__conn_open), this one runs
     * only the library's statements, and takes their generic plans: left to
     * choose, the server planned the claim's UPDATE afresh on every call,
     * 11 % of this backend's CPU during a drain (perf), because its custom
     * plans, which count the arrays and the LIMIT exactly, cost less than
     * the generic one.
     */
    PGresult *r = PQexec(c->pg, "SET synchronous_commit TO off; SET plan_cache_mode TO force_generic_plan");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = cairn__fail_pg(CAIRN_ECONN, r, c->pg, "setting the dispatcher session's defaults");
        PQclear(r);
        cairn__conn_drop(c);
        return rc;
    }
    PQclear(r);
    r = PQexec(c->pg, "LISTEN cairn_wakeup; LISTEN cairn_cancel");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = cairn__fail_pg(CAIRN_ECONN, r, c->pg, "LISTEN");
        PQclear(r);
        cairn__conn_drop(c);
        return rc;
    }
    PQclear(r);
    return CAIRN_OK;
}

/*
 * Claims up to limit workflows (suspended ones that are due, then enqueued
 * ones); returns how many, or a negative code. *retry_ms receives the
 * claim's hint (work waits behind a queue limit: look again within that
 * many milliseconds), or -1; *wake_ms the time until the next suspended
 * workflow this handle could run is due, or -1.
 */
static int claim(cairn *h, cairn__conn *c, int limit, int *retry_ms, int *wake_ms)
{
    char lim[16], maxa[16];
    snprintf(lim, sizeof lim, "%d", limit);
    snprintf(maxa, sizeof maxa, "%d", h->max_attempts);
    const char *vals[7] = {h->executor_id, h->names.data, lim, maxa, h->queues, h->accept, h->app_version};
    *retry_ms = -1;
    *wake_ms = -1;
    PGresult *r = PQexecPrepared(c->pg, cairn__stmt_name(CAIRN__Q_CLAIM_QUEUED), 7, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(c->pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, c->pg,
                                "claiming enqueued workflows");
        PQclear(r);
        return rc;
    }
    int n = 0, nload = 0;
    cairn__run *load[CLAIM_MAX]; /* claimed runs with a recording to load, submitted after one load for all */
    for (int i = 0; i < PQntuples(r); i++) {
        if (PQgetisnull(r, i, 0)) {
            if (strcmp(PQgetvalue(r, i, 3), "WAKE") == 0)
                *wake_ms = atoi(PQgetvalue(r, i, 6));
            else
                *retry_ms = atoi(PQgetvalue(r, i, 6));
            continue;
        }
        n++;
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        if (strcmp(PQgetvalue(r, i, 3), "DEAD_LETTER") == 0) {
            cairn__log(h, CAIRN_LOG_WARN, "workflow %s (%s) moved to DEAD_LETTER after %d executions", id, name,
                       atoi(PQgetvalue(r, i, 2)) - 1);
            continue;
        }
        cairn__run *run = cairn__run_reserve(h, id, name, cairn__registry_find(&h->workflows, name));
        if (!run) {
            /*
             * An ENQUEUED workflow still active here is a run this executor lost
             * (it was presumed dead) and has not yet abandoned. Hand the claim
             * back rather than own a workflow nothing will run; it is claimed
             * again once the old run is gone. Not counted, so that the
             * dispatcher does not spin on it meanwhile.
             */
            cairn__fleet_release_one(h, id);
            n--;
            continue;
        }
        run->attempt = atoi(PQgetvalue(r, i, 2));
        /* Nothing recorded yet: run it with the input in hand instead of loading it. */
        if (PQgetvalue(r, i, 5)[0] == 'f') {
            run->input = cairn__strdup(PQgetisnull(r, i, 4) ? "null" : PQgetvalue(r, i, 4));
            run->fresh = run->input != NULL;
        }
        if (run->fresh || nload == CLAIM_MAX)
            cairn__run_submit(h, run);
        else
            load[nload++] = run;
    }
    PQclear(r);
    /*
     * Resumed workflows (woken sleepers above all) have recordings: one
     * query for all of them here, instead of one per workflow on the
     * executor threads, which then only replay and write.
     */
    if (nload > 0 && cairn__preload(h, c->pg, load, nload) != CAIRN_OK)
        cairn__log(h, CAIRN_LOG_DEBUG, "dispatcher: %s; each workflow loads its own", cairn_errmsg(h));
    for (int i = 0; i < nload; i++)
        cairn__run_submit(h, load[i]);
    return n;
}

/* Raises the wake-up flag; returns 1 if it was down (we raised it), 0 if already up, -1 on error. */
static int arm(cairn__conn *c)
{
    PGresult *r = PQexecPrepared(c->pg, cairn__stmt_name(CAIRN__Q_ARM), 0, NULL, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) > 0 : -1;
    if (rc < 0)
        cairn__fail_pg(CAIRN_ECONN, r, c->pg, "arming the wake-up");
    PQclear(r);
    return rc;
}

enum { WOKE_TIMEOUT = 0, WOKE_NOTIFY = 1, WOKE_POKE = 2, WOKE_BROKEN = -1 };

/*
 * Handles the notifications libpq has read: a cancel stops the named
 * workflow if it runs here; anything else is a wake-up. Returns
 * WOKE_NOTIFY if there was a wake-up.
 */
static int drain_notifications(cairn *h, cairn__conn *c)
{
    int why = WOKE_TIMEOUT;
    PGnotify *note;
    while ((note = PQnotifies(c->pg)) != NULL) {
        if (strcmp(note->relname, "cairn_cancel") == 0)
            cairn__run_cancelled(h, note->extra);
        else
            why |= WOKE_NOTIFY;
        PQfreemem(note);
    }
    return why;
}

/*
 * Sleeps until a notification, a poke or the timeout. Returns WOKE_BROKEN if
 * the connection broke, else the reasons it woke (0 for the timeout).
 */
static int wait_for_work(cairn *h, cairn__conn *c, int timeout_ms)
{
    /* Notifications libpq read during the last statements are not on the socket any more. */
    if (drain_notifications(h, c) != WOKE_TIMEOUT)
        return WOKE_NOTIFY;
    struct pollfd fds[2] = {{.fd = PQsocket(c->pg), .events = POLLIN}, {.fd = h->wake_fd, .events = POLLIN}};
    int n = poll(fds, 2, timeout_ms);
    if (n < 0 && errno != EINTR)
        return WOKE_BROKEN;
    int why = WOKE_TIMEOUT;
    if (fds[1].revents & POLLIN) {
        why |= WOKE_POKE;
        uint64_t v;
        ssize_t r = read(h->wake_fd, &v, sizeof v);
        (void)r;
    }
    if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
        if (!PQconsumeInput(c->pg))
            return WOKE_BROKEN;
        why |= drain_notifications(h, c);
    }
    return why;
}

/* Heartbeats when one is due (or overdue: a step is waiting for it). Returns workflows adopted, or < 0. */
static int maybe_heartbeat(cairn *h, cairn__conn *c, long long *next_hb)
{
    long long now = cairn__now_ms();
    int stale = now - atomic_load(&h->hb_ok_ms) > h->lease_ms;
    if (atomic_load(&h->taken) || (now < *next_hb && !stale))
        return 0;
    int rc = cairn__fleet_heartbeat(h, c->pg);
    if (rc < 0)
        return rc;
    *next_hb = now + h->lease_ms / 5;
    /* Cancels whose notification a dropped connection lost are found here. */
    int crc = cairn__check_cancelled(h, c->pg);
    return crc == CAIRN_ECONN ? crc : rc;
}

static void *dispatcher_main(void *arg)
{
    cairn *h = arg;
    cairn__conn c = {0};
    long long backoff = 50;
    long long next_hb = 0;
    long long next_cron = 0; /* monotonic time of the next look for due cron ticks */
    int contention_ms = 10;
    unsigned jitter = (unsigned)cairn__now_ms();
    /*
     * idle: the last look found nothing to claim and the wake-up flag is up.
     * Then a thread coming free is no reason to look again (the queues were
     * empty; an enqueue since then notifies), only a notification or the
     * poll timer is.
     */
    int idle = 0, woke = WOKE_TIMEOUT, cron_only = 0;
    /*
     * When the flag was last raised (or found up). A claim that took less
     * than it wanted raises it again at most every ARM_GAP_MS, so that
     * another process's enqueue wakes threads left free beside a long run
     * (no run end would), while under steady load, where such claims come
     * after every run end, enqueues notify at most that often.
     */
    long long last_arm = 0;
    long long arm_due = 0; /* when a partial claim may next raise the flag (0: no raise waits) */
    /*
     * Monotonic time at which the next suspended workflow the database
     * knows of is due (0: none known). Kept across iterations: a wake-up
     * that skips the claim (a thread came free) must not forget it, or the
     * dispatcher sleeps a whole poll interval past it.
     */
    long long db_wake = 0;
    /*
     * reconnecting: set once the first connection is up, since every later
     * one may follow a claim whose answer was lost. reclaim_due: look for
     * such workflows, once a heartbeat has shown that this process still
     * holds its executor ID (a process that took the ID over runs them).
     */
    int reconnecting = 0, reclaim_due = 0;
    while (!atomic_load(&h->shutting_down)) {
        if (!c.pg || PQstatus(c.pg) != CONNECTION_OK) {
            if (connect_listener(h, &c) != CAIRN_OK) {
                /* Warn once per outage, not once per retry. */
                cairn__log(h, backoff == 50 ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, "dispatcher: %s; retrying",
                           cairn_errmsg(h));
                cairn__sleep(h, backoff);
                backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
                continue;
            }
            backoff = 50;
            reclaim_due = reconnecting;
            reconnecting = 1;
        }
        int adopted = maybe_heartbeat(h, &c, &next_hb);
        if (adopted < 0) {
            cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s", cairn_errmsg(h));
            cairn__conn_drop(&c);
            continue;
        }
        if (adopted > 0)
            idle = 0; /* the adopted workflows are ENQUEUED now */
        if (reclaim_due && cairn__now_ms() - atomic_load(&h->hb_ok_ms) <= h->lease_ms) {
            if (cairn__fleet_reclaim(h, c.pg) < 0) {
                cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s", cairn_errmsg(h));
                cairn__conn_drop(&c);
                continue;
            }
            reclaim_due = 0;
        }
        int serving = !atomic_load(&h->stopping) && !atomic_load(&h->taken);
        if (atomic_exchange(&h->timed_look, 0))
            next_cron = 0; /* a deadline set here may be due before the next look */
        if (serving && cairn__now_ms() >= next_cron) {
            /*
             * Due ticks of cron schedules and passed deadlines, once per
             * look at the heartbeat's pace (so schedules and deadlines set
             * by other processes are seen) or sooner when one is due.
             */
            long long next_ms = -1, expire_ms = -1;
            long long every = h->lease_ms / 5;
            if (cairn__cron_fire(h, c.pg, &next_ms) != CAIRN_OK ||
                cairn__expire(h, c.pg, &expire_ms) != CAIRN_OK) {
                cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s", cairn_errmsg(h));
                if (PQstatus(c.pg) != CONNECTION_OK) {
                    cairn__conn_drop(&c);
                    continue;
                }
                next_ms = 1000;
            }
            if (expire_ms >= 0 && (next_ms < 0 || expire_ms < next_ms))
                next_ms = expire_ms;
            next_cron = cairn__now_ms() + (next_ms >= 0 && next_ms < every ? next_ms : every);
        }
        /* A workflow suspended here may be due already (a message was waiting for it). */
        int look = atomic_exchange(&h->look, 0);
        long long local_wake = atomic_load(&h->next_wake_ms);
        if (local_wake && local_wake <= cairn__now_ms()) {
            atomic_compare_exchange_strong(&h->next_wake_ms, &local_wake, 0);
            local_wake = 0;
            look = 1;
        }
        if (db_wake && db_wake <= cairn__now_ms()) {
            db_wake = 0;
            look = 1;
        }
        /* Only a thread came free, or only a cron tick or deadline was due: the queues were empty; wait again. */
        int skip = !serving || (idle && !look && (woke == WOKE_POKE || (woke == WOKE_TIMEOUT && cron_only)));
        int retry_ms = -1, wake_ms = -1;
        int settle = 0;
        /* Idle, and the poll timer (not a NOTIFY) woke us: nobody cleared the flag, since
         * clearing it notifies every listener, so it needs no re-arming. */
        int still_armed = idle && woke == WOKE_TIMEOUT;
        if (!skip) {
            idle = 0;
            atomic_store(&h->dispatch_idle, 0); /* before counting free threads (see cairn__thread_free) */
        }
        int free_threads = h->workers - atomic_load(&h->busy);
        if (!skip && free_threads > 0) {
            int want = free_threads < CLAIM_MAX ? free_threads : CLAIM_MAX;
            int got = claim(h, &c, want, &retry_ms, &wake_ms);
            if (got < 0) {
                cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s", cairn_errmsg(h));
                cairn__conn_drop(&c);
                continue;
            }
            /* A claim that had capacity left reports the next due workflow, or that none is. */
            if (got < want)
                db_wake = wake_ms >= 0 ? cairn__now_ms() + wake_ms : 0;
            if (got > 0)
                contention_ms = 10;
            if (got == want) {
                arm_due = 0;
                continue; /* there may be more */
            }
            if (got > 0 && retry_ms < 0) {
                /* Threads are left free and the queues are empty for us: as when idle, but rate-limited. */
                long long now = cairn__now_ms();
                if (now - last_arm < ARM_GAP_MS) {
                    arm_due = last_arm + ARM_GAP_MS;
                } else {
                    int raised = arm(&c);
                    if (raised < 0) {
                        cairn__conn_drop(&c);
                        continue;
                    }
                    last_arm = now;
                    arm_due = 0;
                    settle = raised; /* an enqueue may just have missed the flag (see below) */
                }
            }
            if (got == 0 && retry_ms < 0) {
                /* Idle: ask enqueuers to wake us; if the flag was down, one may just have
                 * missed it, so look once more. */
                int raised = still_armed ? 0 : arm(&c);
                if (raised < 0) {
                    cairn__conn_drop(&c);
                    continue;
                }
                last_arm = cairn__now_ms();
                arm_due = 0;
                got = raised ? claim(h, &c, want, &retry_ms, &wake_ms) : 0;
                if (got < 0) {
                    cairn__conn_drop(&c);
                    continue;
                }
                if (raised && got < want)
                    db_wake = wake_ms >= 0 ? cairn__now_ms() + wake_ms : 0;
                if (got > 0)
                    continue;
                idle = retry_ms < 0;
                /*
                 * An enqueue that read the flag before we raised it and commits
                 * after the look above neither notifies nor was seen. Such
                 * transactions were already committing: look once more shortly.
                 */
                settle = idle && raised;
            }
        }
        /* Jitter keeps a fleet of idle dispatchers from polling in step. */
        jitter = jitter * 1103515245u + 12345u;
        int timeout = h->poll_interval_ms + (int)((jitter >> 8) % (unsigned)(h->poll_interval_ms / 10 + 1));
        if (retry_ms >= 0) {
            /* Work waits behind a limit. A hint of 20 ms or less means another executor held
             * the queue: back off while that keeps happening. */
            int wait = retry_ms;
            if (retry_ms <= 20) {
                wait = contention_ms;
                contention_ms = contention_ms * 2 > 320 ? 320 : contention_ms * 2;
            }
            wait += (int)((jitter >> 12) % (unsigned)(wait / 4 + 1));
            if (wait < timeout)
                timeout = wait;
        }
        if (settle && timeout > SETTLE_MS)
            timeout = SETTLE_MS;
        /* A partial claim that could not raise the flag yet comes back when it may. */
        if (arm_due && free_threads > 0) {
            long long until = arm_due - cairn__now_ms();
            if (until < timeout)
                timeout = until > 0 ? (int)until : 0;
        }
        /* The next suspended workflow to wake, as the database or this process knows it. */
        if (db_wake) {
            long long until = db_wake - cairn__now_ms();
            if (until < timeout)
                timeout = until > 0 ? (int)until : 0;
        }
        if (local_wake) {
            long long until = local_wake - cairn__now_ms();
            if (until < timeout)
                timeout = until > 0 ? (int)until : 0;
        }
        long long until_hb = next_hb - cairn__now_ms();
        if (!atomic_load(&h->taken) && until_hb < timeout)
            timeout = until_hb > 0 ? (int)until_hb : 0;
        /* Woken only for cron ticks or deadlines, an idle dispatcher handles them and does not claim (see skip). */
        long long until_cron = next_cron - cairn__now_ms();
        cron_only = serving && until_cron < timeout;
        if (cron_only)
            timeout = until_cron > 0 ? (int)until_cron : 0;
        atomic_store(&h->dispatch_idle, idle);
        woke = wait_for_work(h, &c, timeout);
        if (woke == WOKE_BROKEN)
            cairn__conn_drop(&c);
    }
    cairn__conn_drop(&c);
    return NULL;
}

int cairn__dispatch_init(cairn *h)
{
    /*
     * Made before any executor thread exists: they poke it when a run
     * ends, and recovered runs can end before the dispatcher starts.
     */
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0)
        return cairn__fail(CAIRN_ENOMEM, "eventfd: %s", strerror(errno));
    return CAIRN_OK;
}

int cairn__dispatch_start(cairn *h)
{
    if (pthread_create(&h->dispatcher, NULL, dispatcher_main, h) != 0)
        return cairn__fail(CAIRN_ENOMEM, "cannot create the dispatcher thread");
    h->dispatching = 1;
    return CAIRN_OK;
}

void cairn__dispatch_stop(cairn *h)
{
    if (h->dispatching) {
        cairn__dispatch_poke(h);
        pthread_join(h->dispatcher, NULL);
        h->dispatching = 0;
    }
}

/* Executor threads poke the eventfd until they have been joined, so it closes after them. */
void cairn__dispatch_free(cairn *h)
{
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    h->wake_fd = -1;
    cairn__buf_free(&h->names);
}
