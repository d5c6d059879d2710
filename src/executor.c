/*
 * Executors: the thread pool that runs workflows, the map of runs active
 * in this process (so that a start, an await and recovery agree on what
 * is already running here), and recovery of the workflows this executor
 * owned when it last stopped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static size_t hash_id(const char *s)
{
    size_t x = 1469598103934665603u;
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 1099511628211u;
    return x;
}

int cairn__executor_init(cairn *h)
{
    h->active_cap = 1024;
    h->active = calloc(h->active_cap, sizeof *h->active);
    if (!h->active)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    return CAIRN_OK;
}

static void run_free(cairn__run *r)
{
    cairn__recording_free(r->pre_rec, r->pre_nrec);
    free(r->id);
    free(r->name);
    free(r->input);
    free(r->result);
    pthread_cond_destroy(&r->cond);
    free(r);
}

/* Grows the active map; called with run_lock held. */
static void active_grow(cairn *h)
{
    size_t cap = h->active_cap * 2;
    cairn__run **t = calloc(cap, sizeof *t);
    if (!t)
        return; /* chains just get longer */
    for (size_t i = 0; i < h->active_cap; i++) {
        cairn__run *r = h->active[i];
        while (r) {
            cairn__run *next = r->next_hash;
            size_t b = hash_id(r->id) & (cap - 1);
            r->next_hash = t[b];
            t[b] = r;
            r = next;
        }
    }
    free(h->active);
    h->active = t;
    h->active_cap = cap;
}

static cairn__run *active_get(cairn *h, const char *id)
{
    for (cairn__run *r = h->active[hash_id(id) & (h->active_cap - 1)]; r; r = r->next_hash)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void active_remove(cairn *h, cairn__run *r)
{
    cairn__run **p = &h->active[hash_id(r->id) & (h->active_cap - 1)];
    while (*p && *p != r)
        p = &(*p)->next_hash;
    if (*p) {
        *p = r->next_hash;
        h->active_count--;
    }
}

cairn__run *cairn__run_reserve(cairn *h, const char *id, const char *name, const cairn__entry *wf)
{
    cairn__run *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->id = cairn__strdup(id);
    r->name = cairn__strdup(name);
    r->wf = wf;
    r->refs = 1;
    r->lost_gen = atomic_load(&h->lost_gen);
    pthread_cond_init(&r->cond, NULL);
    if (!r->id || !r->name) {
        run_free(r);
        return NULL;
    }
    pthread_mutex_lock(&h->run_lock);
    if (active_get(h, id)) {
        pthread_mutex_unlock(&h->run_lock);
        run_free(r);
        return NULL;
    }
    if (h->active_count + 1 > h->active_cap)
        active_grow(h);
    size_t b = hash_id(id) & (h->active_cap - 1);
    r->next_hash = h->active[b];
    h->active[b] = r;
    h->active_count++;
    for (cairn__waiter *w = h->waiters; w; w = w->next) {
        if (strcmp(w->id, id) == 0) {
            w->woken = 1;
            pthread_cond_signal(&w->cond);
        }
    }
    size_t hash = hash_id(id);
    struct cairn__expect *e = &h->expect[hash % CAIRN__EXPECT_MAX];
    if (e->id && e->hash == hash && !e->run && strcmp(e->id, id) == 0) {
        e->run = r;
        r->refs++;
    }
    pthread_mutex_unlock(&h->run_lock);
    return r;
}

/* Empties slot e; called with run_lock held. Returns a run whose last reference went with it, to free. */
static cairn__run *expect_clear(struct cairn__expect *e)
{
    cairn__run *dead = NULL;
    if (e->run && --e->run->refs == 0)
        dead = e->run;
    free(e->id);
    e->id = NULL;
    e->run = NULL;
    return dead;
}

void cairn__expect_add(cairn *h, const char *id)
{
    char *copy = cairn__strdup(id);
    if (!copy)
        return; /* the await reads the database instead */
    size_t hash = hash_id(id);
    pthread_mutex_lock(&h->run_lock);
    /* One slot per hash: an entry whose slot another takes loses only its shortcut. */
    struct cairn__expect *e = &h->expect[hash % CAIRN__EXPECT_MAX];
    cairn__run *dead = expect_clear(e);
    e->id = copy;
    e->hash = hash;
    /* Claimed already (the dispatcher can be quicker than this call's return). */
    e->run = active_get(h, id);
    if (e->run)
        e->run->refs++;
    pthread_mutex_unlock(&h->run_lock);
    if (dead)
        run_free(dead);
}

int cairn__expect_take(cairn *h, const char *id, cairn__run **run)
{
    *run = NULL;
    size_t hash = hash_id(id);
    int found = 0;
    pthread_mutex_lock(&h->run_lock);
    struct cairn__expect *e = &h->expect[hash % CAIRN__EXPECT_MAX];
    if (e->id && e->hash == hash && strcmp(e->id, id) == 0) {
        found = 1;
        *run = e->run; /* the entry's reference passes to the caller */
        e->run = NULL;
        expect_clear(e);
    }
    pthread_mutex_unlock(&h->run_lock);
    return found;
}

int cairn__wait_reserve(cairn *h, const char *id, long long ms)
{
    struct timespec ts;
    cairn__abstime(ms, &ts);
    cairn__waiter w = {.id = id};
    pthread_cond_init(&w.cond, NULL);
    pthread_mutex_lock(&h->run_lock);
    if (!active_get(h, id)) {
        w.next = h->waiters;
        h->waiters = &w;
        while (!w.woken && !atomic_load(&h->shutting_down))
            if (pthread_cond_timedwait(&w.cond, &h->run_lock, &ts) == ETIMEDOUT)
                break;
        cairn__waiter **p = &h->waiters;
        while (*p != &w)
            p = &(*p)->next;
        *p = w.next;
    }
    pthread_mutex_unlock(&h->run_lock);
    pthread_cond_destroy(&w.cond);
    return atomic_load(&h->shutting_down);
}

int cairn__run_lost(cairn *h, const cairn__run *r)
{
    return r->lost_gen != atomic_load(&h->lost_gen);
}

cairn__run *cairn__run_find(cairn *h, const char *id)
{
    pthread_mutex_lock(&h->run_lock);
    cairn__run *r = active_get(h, id);
    if (r)
        r->refs++;
    pthread_mutex_unlock(&h->run_lock);
    return r;
}

void cairn__run_cancelled(cairn *h, const char *id)
{
    pthread_mutex_lock(&h->run_lock);
    cairn__run *r = active_get(h, id);
    if (r)
        atomic_store(&r->cancelled, 1);
    pthread_mutex_unlock(&h->run_lock);
}

size_t cairn__run_ids(cairn *h, cairn__buf *ids)
{
    size_t n = 0;
    cairn__buf_puts(ids, "{");
    pthread_mutex_lock(&h->run_lock);
    for (size_t i = 0; i < h->active_cap; i++) {
        for (cairn__run *r = h->active[i]; r; r = r->next_hash, n++)
            cairn__buf_array_elem(ids, r->id);
    }
    pthread_mutex_unlock(&h->run_lock);
    cairn__buf_puts(ids, "}");
    return n;
}

void cairn__run_release(cairn *h, cairn__run *r)
{
    pthread_mutex_lock(&h->run_lock);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&h->run_lock);
    if (last)
        run_free(r);
}

void cairn__run_cancel(cairn *h, cairn__run *r)
{
    pthread_mutex_lock(&h->run_lock);
    active_remove(h, r);
    r->done = 1;
    r->status = CAIRN_STATUS_UNKNOWN;
    pthread_cond_broadcast(&r->cond);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&h->run_lock);
    if (last)
        run_free(r);
}

void cairn__run_submit(cairn *h, cairn__run *r)
{
    atomic_fetch_add(&h->busy, 1);
    pthread_mutex_lock(&h->run_lock);
    r->next_queued = NULL;
    if (h->queue_tail)
        h->queue_tail->next_queued = r;
    else
        h->queue_head = r;
    h->queue_tail = r;
    pthread_mutex_unlock(&h->run_lock);
    /* After the unlock, so that the woken thread does not block on run_lock at once. */
    pthread_cond_signal(&h->run_cond);
}

int cairn__sleep(cairn *h, long long ms)
{
    struct timespec ts;
    cairn__abstime(ms, &ts);
    pthread_mutex_lock(&h->run_lock);
    while (!atomic_load(&h->shutting_down)) {
        if (pthread_cond_timedwait(&h->sleep_cond, &h->run_lock, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&h->run_lock);
    return atomic_load(&h->shutting_down);
}

/*
 * The end of a run: publish the result to waiters, then leave the active
 * map. A run abandoned at shutdown publishes CAIRN_STATUS_UNKNOWN and stays
 * PENDING in the database until cairn_stop() hands it back.
 */
void cairn__run_done(cairn *h, cairn__run *r)
{
    pthread_mutex_lock(&h->run_lock);
    active_remove(h, r);
    r->done = 1;
    int held = r->refs > 1; /* by an await, or an expected start's entry */
    int last = !held && --r->refs == 0;
    pthread_mutex_unlock(&h->run_lock);
    if (held) {
        /*
         * Awaits are woken after the unlock, since run_lock is what they
         * take next, and this reference keeps r alive until they are.
         */
        pthread_cond_broadcast(&r->cond);
        cairn__run_release(h, r);
    } else if (last) {
        run_free(r);
    }
}

/*
 * A run is leaving its executor thread (ending, or its finish being handed
 * to group commit): the thread is free. Called before the run's result is
 * published, so that whoever awaited the run and starts another workflow
 * at once finds the thread free (an eager start counts free threads).
 */
void cairn__thread_free(cairn *h)
{
    atomic_fetch_sub(&h->busy, 1);
    /*
     * A thread is free for enqueued work, unless the dispatcher's last look
     * found the queues empty: then it waits for a NOTIFY, and waking it
     * for nothing cost a context switch per workflow. Both sides use
     * sequentially consistent atomics: either this load sees the flag
     * down, or the dispatcher, which lowers it before counting free
     * threads, sees this thread free.
     */
    if (!atomic_load(&h->dispatch_idle))
        cairn__dispatch_poke(h);
}

static void run_finish(cairn *h, cairn__run *r)
{
    cairn__thread_free(h);
    cairn__run_done(h, r);
}

static void *worker_main(void *arg)
{
    cairn *h = arg;
    cairn__conn txc = {0}; /* opened by the first transactional step this thread runs */
    for (;;) {
        pthread_mutex_lock(&h->run_lock);
        while (!h->queue_head && !atomic_load(&h->shutting_down))
            pthread_cond_wait(&h->run_cond, &h->run_lock);
        if (atomic_load(&h->shutting_down)) {
            pthread_mutex_unlock(&h->run_lock);
            cairn__conn_drop(&txc);
            return NULL;
        }
        cairn__run *r = h->queue_head;
        h->queue_head = r->next_queued;
        if (!h->queue_head)
            h->queue_tail = NULL;
        pthread_mutex_unlock(&h->run_lock);

        if (!cairn__execute(h, r, &txc)) /* otherwise the run ends when its finish commits */
            run_finish(h, r);
    }
}

int cairn__executor_start(cairn *h)
{
    h->threads = calloc((size_t)h->workers, sizeof *h->threads);
    if (!h->threads)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    for (int i = 0; i < h->workers; i++) {
        if (pthread_create(&h->threads[i], NULL, worker_main, h) != 0) {
            return cairn__fail(CAIRN_ENOMEM, "cannot create executor thread %d of %d", i + 1, h->workers);
        }
        h->nthreads++;
    }
    return CAIRN_OK;
}

void cairn__executor_shutdown(cairn *h)
{
    pthread_mutex_lock(&h->run_lock);
    pthread_cond_broadcast(&h->run_cond);
    pthread_cond_broadcast(&h->sleep_cond);
    pthread_mutex_unlock(&h->run_lock);
    for (int i = 0; i < h->nthreads; i++)
        pthread_join(h->threads[i], NULL);
    h->nthreads = 0;
    /* Runs still queued never started: drop them (they stay PENDING in the database). */
    cairn__run *r = h->queue_head;
    h->queue_head = h->queue_tail = NULL;
    while (r) {
        cairn__run *next = r->next_queued;
        r->released = 1;
        run_finish(h, r);
        r = next;
    }
}

void cairn__executor_free(cairn *h)
{
    for (int i = 0; i < CAIRN__EXPECT_MAX; i++) {
        cairn__run *dead = expect_clear(&h->expect[i]);
        if (dead)
            run_free(dead);
    }
    free(h->threads);
    h->threads = NULL;
    free(h->active);
    h->active = NULL;
}

int cairn__recover(cairn *h, const char *id)
{
    /* Only names this process can run are claimed; others stay for their workers. */
    char maxa[16];
    snprintf(maxa, sizeof maxa, "%d", h->max_attempts);
    const char *vals[4] = {h->executor_id, maxa, h->names.data, id};
    PGresult *res = NULL;
    int rc = cairn__query(h, CAIRN__Q_CLAIM, 4, vals, &res);
    if (rc != CAIRN_OK)
        return rc;
    int resumed = 0, dead = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *wid = PQgetvalue(res, i, 0);
        const char *name = PQgetvalue(res, i, 1);
        if (strcmp(PQgetvalue(res, i, 2), "DEAD_LETTER") == 0) {
            cairn__log(h, CAIRN_LOG_WARN, "workflow %s (%s) moved to DEAD_LETTER after %d executions", wid, name,
                       atoi(PQgetvalue(res, i, 3)) - 1);
            dead++;
            continue;
        }
        const cairn__entry *wf = cairn__registry_find(&h->workflows, name);
        cairn__run *r = cairn__run_reserve(h, wid, name, wf);
        if (!r)
            continue; /* already running here, or out of memory: it stays PENDING */
        r->fresh = 0;
        r->attempt = atoi(PQgetvalue(res, i, 3));
        cairn__run_submit(h, r);
        resumed++;
    }
    PQclear(res);
    if (resumed || dead)
        cairn__log(h, CAIRN_LOG_INFO, "executor %s resumed %d workflow(s), dead-lettered %d", h->executor_id, resumed,
                   dead);
    return CAIRN_OK;
}
