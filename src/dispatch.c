/*
 * The dispatcher: one thread per handle that takes ENQUEUED workflows for
 * this handle's executor threads. It claims a batch with FOR UPDATE SKIP
 * LOCKED (so any number of processes can claim at once without blocking
 * each other), only workflows whose names are registered here, and only
 * as many as there are idle executor threads. When there is nothing to
 * claim it arms the wake-up flag (cairn.wakeup), looks once more, and
 * sleeps on its LISTEN connection until a NOTIFY, a finished run freeing a
 * thread, or the poll interval.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"

#define CLAIM_MAX 64

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
    PGresult *r = PQexec(c->pg, "LISTEN cairn_wakeup");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = cairn__fail_pg(CAIRN_ECONN, r, c->pg, "LISTEN");
        PQclear(r);
        cairn__conn_drop(c);
        return rc;
    }
    PQclear(r);
    return CAIRN_OK;
}

/* Claims up to limit workflows; returns how many, or a negative code. */
static int claim(cairn *h, cairn__conn *c, int limit)
{
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit);
    const char *vals[3] = {h->executor_id, h->names.data, lim};
    PGresult *r = PQexecPrepared(c->pg, cairn__stmt_name(CAIRN__Q_CLAIM_QUEUED), 3, vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc = cairn__fail_pg(cairn__conn_lost(c->pg, r) ? CAIRN_ECONN : CAIRN_EDB, r, c->pg,
                                "claiming enqueued workflows");
        PQclear(r);
        return rc;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        cairn__run *run = cairn__run_reserve(h, id, name, cairn__registry_find(&h->workflows, name));
        if (!run)
            continue; /* already running here; it stays PENDING and owned by us */
        run->attempt = atoi(PQgetvalue(r, i, 2));
        /* Nothing recorded yet: run it with the input in hand instead of loading it. */
        if (PQgetvalue(r, i, 4)[0] == 'f') {
            run->input = cairn__strdup(PQgetisnull(r, i, 3) ? "null" : PQgetvalue(r, i, 3));
            run->fresh = run->input != NULL;
        }
        cairn__run_submit(h, run);
    }
    PQclear(r);
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
 * Sleeps until a notification, a poke or the timeout. Returns WOKE_BROKEN if
 * the connection broke, else the reasons it woke (0 for the timeout).
 */
static int wait_for_work(cairn *h, cairn__conn *c, int timeout_ms)
{
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
        PGnotify *note;
        while ((note = PQnotifies(c->pg)) != NULL) {
            why |= WOKE_NOTIFY;
            PQfreemem(note);
        }
    }
    return why;
}

static void *dispatcher_main(void *arg)
{
    cairn *h = arg;
    cairn__conn c = {0};
    long long backoff = 50;
    unsigned jitter = (unsigned)cairn__now_ms();
    /*
     * idle: the last look found the queue empty and the wake-up flag is up.
     * Then a thread coming free is no reason to look again (the queue was
     * empty; an enqueue since then notifies), only a notification or the
     * poll timer is.
     */
    int idle = 0, woke = WOKE_TIMEOUT;
    while (!atomic_load(&h->shutting_down)) {
        if (!c.pg || PQstatus(c.pg) != CONNECTION_OK) {
            if (connect_listener(h, &c) != CAIRN_OK) {
                cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s; retrying", cairn_errmsg(h));
                cairn__sleep(h, backoff);
                backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
                continue;
            }
            backoff = 50;
        }
        int free_threads = h->workers - atomic_load(&h->busy);
        int skip = idle && woke == WOKE_POKE; /* only a thread came free: wait again */
        if (!skip)
            idle = 0;
        if (!skip && free_threads > 0) {
            int want = free_threads < CLAIM_MAX ? free_threads : CLAIM_MAX;
            int got = claim(h, &c, want);
            if (got < 0) {
                cairn__log(h, CAIRN_LOG_WARN, "dispatcher: %s", cairn_errmsg(h));
                cairn__conn_drop(&c);
                continue;
            }
            if (got == want)
                continue; /* there may be more */
            if (got == 0) {
                /* Idle: ask enqueuers to wake us; if the flag was down, one may just have
                 * missed it, so look once more. */
                int raised = arm(&c);
                if (raised < 0) {
                    cairn__conn_drop(&c);
                    continue;
                }
                got = raised ? claim(h, &c, want) : 0;
                if (got < 0) {
                    cairn__conn_drop(&c);
                    continue;
                }
                if (got > 0)
                    continue;
                idle = 1;
            }
        }
        /* Jitter keeps a fleet of idle dispatchers from polling in step. */
        jitter = jitter * 1103515245u + 12345u;
        int timeout = h->poll_interval_ms + (int)((jitter >> 8) % (unsigned)(h->poll_interval_ms / 10 + 1));
        woke = wait_for_work(h, &c, timeout);
        if (woke == WOKE_BROKEN)
            cairn__conn_drop(&c);
    }
    cairn__conn_drop(&c);
    return NULL;
}

int cairn__dispatch_start(cairn *h)
{
    cairn__buf_init(&h->names);
    cairn__buf_puts(&h->names, "{");
    for (size_t i = 0; i < h->workflows.count; i++)
        cairn__buf_array_elem(&h->names, h->workflows.items[i].name);
    cairn__buf_puts(&h->names, "}");
    if (h->names.oom)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (h->wake_fd < 0)
        return cairn__fail(CAIRN_ENOMEM, "eventfd: %s", strerror(errno));
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
