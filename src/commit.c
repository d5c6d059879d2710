/*
 * Group commit. Every durable write on the hot path (a workflow start, a
 * step checkpoint, a workflow finish) goes through cairn__commit(). Items
 * wait in one list; whichever waiting thread finds a free commit
 * connection becomes the leader, takes everything queued (up to
 * CAIRN__MAX_BATCH items), and writes it with one statement per kind in
 * a single pipelined round trip and a single commit. A lone workflow pays
 * one statement and one commit per checkpoint with no hand-off to another
 * thread; many concurrent workflows share each commit's fsync.
 *
 * Each item carries its own wake word (a futex), so a finished batch
 * wakes exactly its own waiters, once each, and the head of the queue is
 * woken to lead the next batch: no thundering herd on one condition
 * variable shared by every waiting thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define KINDS 5 /* START, STEP, FINISH, ENQUEUE, SUSPEND */

static cairn__conn *free_conn(cairn *h);
static int hand_off(cairn *h);
static void drive(cairn *h);

int cairn__commit_init(cairn *h)
{
    h->commit_conns = calloc((size_t)h->commit_conns_n, sizeof *h->commit_conns);
    if (!h->commit_conns)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    for (int i = 0; i < h->commit_conns_n; i++)
        h->commit_conns[i].generic = 1;
    return CAIRN_OK;
}

void cairn__commit_warm(cairn *h)
{
    pthread_mutex_lock(&h->commit_lock);
    cairn__conn *c = h->commit_conns_n > 0 && !h->commit_conns[0].in_use ? &h->commit_conns[0] : NULL;
    if (c)
        c->in_use = 1;
    pthread_mutex_unlock(&h->commit_lock);
    if (!c)
        return;
    if (cairn__conn_ensure(h, c) != CAIRN_OK)
        cairn__log(h, CAIRN_LOG_DEBUG, "opening a commit connection ahead of need: %s", cairn_errmsg(h));
    pthread_mutex_lock(&h->commit_lock);
    c->in_use = 0;
    int lead = h->pending_head && !hand_off(h); /* an item that queued meanwhile leads now */
    pthread_mutex_unlock(&h->commit_lock);
    if (lead)
        drive(h);
}

void cairn__commit_free(cairn *h)
{
    if (!h->commit_conns)
        return;
    for (int i = 0; i < h->commit_conns_n; i++)
        cairn__conn_drop(&h->commit_conns[i]);
    free(h->commit_conns);
    h->commit_conns = NULL;
}

/* The arrays of one statement kind, built as Postgres array literals. */
#define MAX_ARRAY_COLS 8 /* the most array columns of any kind (ENQUEUE) */

typedef struct batch_arrays {
    cairn__buf a[MAX_ARRAY_COLS];
    int n;
} batch_arrays;

static void arrays_init(batch_arrays *b, int k)
{
    for (int i = 0; i < MAX_ARRAY_COLS; i++) {
        cairn__buf_init(&b->a[i]);
        if (i < k)
            cairn__buf_puts(&b->a[i], "{");
    }
    b->n = 0;
}

static void arrays_close(batch_arrays *b, int k)
{
    for (int i = 0; i < k; i++)
        cairn__buf_puts(&b->a[i], "}");
}

static void arrays_free(batch_arrays *b)
{
    for (int i = 0; i < MAX_ARRAY_COLS; i++)
        cairn__buf_free(&b->a[i]);
}

static int arrays_oom(const batch_arrays *b, int k)
{
    for (int i = 0; i < k; i++)
        if (b->a[i].oom)
            return 1;
    return 0;
}

/* Marks the item of this kind whose key matches a returned row as applied. */
static cairn__item *mark_applied(cairn__item **items, int n, int *cursor, int kind, const char *id, int step)
{
    for (int k = 0; k < n; k++) {
        int i = (*cursor + k) % n;
        if (items[i]->kind == kind && !items[i]->applied && strcmp(items[i]->id, id) == 0 &&
            (step < 0 || items[i]->step == step)) {
            items[i]->applied = 1;
            *cursor = i + 1;
            return items[i];
        }
    }
    return NULL;
}

static void set_item_error(cairn__item *it, int rc, const PGresult *r, PGconn *pg, const char *what)
{
    const char *msg = r ? PQresultErrorMessage(r) : "";
    if (!msg || !*msg)
        msg = pg ? PQerrorMessage(pg) : "no connection";
    snprintf(it->errmsg, sizeof it->errmsg, "%s: %s", what, msg);
    size_t l = strlen(it->errmsg);
    while (l > 0 && it->errmsg[l - 1] == '\n')
        it->errmsg[--l] = '\0';
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(it->sqlstate, sizeof it->sqlstate, "%s", st ? st : "");
    it->rc = rc;
}

static int same_text(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Whether two enqueue items differ only in ID, name and input (see CAIRN__Q_ENQUEUE_SAME). */
static int enqueue_alike(const cairn__item *a, const cairn__item *b)
{
    return same_text(a->queue, b->queue) && a->priority == b->priority && a->delay_ms == b->delay_ms &&
           same_text(a->partition_key, b->partition_key) && a->eager == b->eager;
}

/* The parameters of an item as its kind's statements number them (see nparams in write_batch). */
static void item_params(const cairn *h, const cairn__item *it, const char *v[10], char stepno[16], char num[2][16])
{
    switch (it->kind) {
    case CAIRN__SUSPEND_ITEM:
        snprintf(stepno, 16, "%d", it->step);
        if (it->wake_ms >= 0)
            snprintf(num[0], 16, "%lld", it->wake_ms);
        v[0] = it->id, v[1] = it->step > 0 ? stepno : NULL, v[2] = it->name, v[3] = it->output;
        v[4] = it->wake_ms >= 0 ? num[0] : NULL, v[5] = it->waiting, v[6] = h->executor_id;
        break;
    case CAIRN__ENQUEUE_ITEM:
        snprintf(num[0], 16, "%d", it->priority);
        snprintf(num[1], 16, "%d", it->delay_ms);
        v[0] = it->id, v[1] = it->name, v[2] = it->queue, v[3] = it->input, v[4] = num[0], v[5] = num[1];
        v[6] = it->partition_key, v[7] = it->eager ? "t" : "f", v[8] = h->app_version, v[9] = h->executor_id;
        break;
    case CAIRN__START_ITEM:
        v[0] = it->id, v[1] = it->name, v[2] = it->queue, v[3] = it->input, v[4] = h->executor_id;
        v[5] = h->app_version;
        break;
    case CAIRN__STEP_ITEM:
        snprintf(stepno, 16, "%d", it->step);
        v[0] = it->id, v[1] = stepno, v[2] = it->name, v[3] = it->output, v[4] = it->error;
        break;
    default:
        v[0] = it->id, v[1] = it->status, v[2] = it->output, v[3] = it->error, v[4] = h->executor_id;
        break;
    }
}

/*
 * Writes items[0..n) in one transaction: one statement per kind present,
 * pipelined, then one sync. Returns CAIRN_OK, CAIRN_ECONN (connection
 * lost; the transaction may or may not have committed) or CAIRN_EDB (the
 * statements were refused and nothing was written).
 */
static int write_batch(cairn *h, cairn__conn *c, cairn__item **items, int n, char *errbuf, size_t errlen)
{
    /*
     * Per kind: a lone item binds its values directly to the single-row
     * statement (the common case when few workflows run); several items
     * travel as one array per column to the batch statement. The executor
     * ID is a plain parameter either way.
     */
    static const int single_stmt[KINDS] = {CAIRN__Q_START1, CAIRN__Q_STEP1, CAIRN__Q_FINISH1, CAIRN__Q_ENQUEUE1,
                                           CAIRN__Q_SUSPEND1};
    static const int batch_stmt[KINDS] = {CAIRN__Q_START, CAIRN__Q_STEP, CAIRN__Q_FINISH, CAIRN__Q_ENQUEUE_BATCH,
                                          CAIRN__Q_SUSPEND};
    static const int array_cols[KINDS] = {4, 5, 4, MAX_ARRAY_COLS, 6};
    static const int nparams[KINDS] = {6, 5, 5, 10, 7};
    batch_arrays arr[KINDS];
    int count[KINDS] = {0};
    const cairn__item *lone[KINDS] = {NULL};
    int alike = 1; /* the enqueue items share everything but ID, name and input */
    for (int i = 0; i < n; i++) {
        items[i]->applied = 0;
        items[i]->taken = 0;
        count[items[i]->kind]++;
        if (items[i]->kind == CAIRN__ENQUEUE_ITEM && lone[CAIRN__ENQUEUE_ITEM])
            alike = alike && enqueue_alike(items[i], lone[CAIRN__ENQUEUE_ITEM]);
        lone[items[i]->kind] = items[i];
    }
    for (int k = 0; k < KINDS; k++)
        arrays_init(&arr[k], count[k] > 1 ? array_cols[k] : 0);
    const char *v[10];
    char stepno[16], num[2][16];
    for (int i = 0; i < n; i++) {
        int k = items[i]->kind;
        if (count[k] < 2)
            continue;
        item_params(h, items[i], v, stepno, num);
        for (int col = 0; col < array_cols[k]; col++)
            cairn__buf_array_elem(&arr[k].a[col], v[col]);
    }
    int rc = CAIRN_OK;
    for (int k = 0; k < KINDS; k++) {
        int cols = count[k] > 1 ? array_cols[k] : 0;
        arrays_close(&arr[k], cols);
        if (arrays_oom(&arr[k], cols))
            rc = CAIRN_ENOMEM;
    }
    if (rc != CAIRN_OK) {
        snprintf(errbuf, errlen, "out of memory building a batch");
        goto out;
    }

    PGconn *pg = c->pg;
    int sent[KINDS] = {0}; /* which statements went out, in the order of the kinds */
    if (!PQenterPipelineMode(pg)) {
        rc = CAIRN_ECONN;
        snprintf(errbuf, errlen, "cannot enter pipeline mode: %s", PQerrorMessage(pg));
        goto out;
    }
    int ok = 1;
    for (int k = 0; k < KINDS && ok; k++) {
        if (count[k] == 0)
            continue;
        if (count[k] == 1) {
            item_params(h, lone[k], v, stepno, num);
        } else {
            for (int col = 0; col < array_cols[k]; col++)
                v[col] = arr[k].a[col].data;
            if (k == CAIRN__START_ITEM || k == CAIRN__FINISH_ITEM)
                v[4] = h->executor_id;
            if (k == CAIRN__START_ITEM)
                v[5] = h->app_version;
            if (k == CAIRN__ENQUEUE_ITEM)
                v[8] = h->app_version, v[9] = h->executor_id;
            if (k == CAIRN__ENQUEUE_ITEM && alike) {
                /* One item's queue, priority, delay, partition and eagerness stand for all. */
                const char *one[10];
                item_params(h, lone[k], one, stepno, num);
                v[2] = one[2], v[4] = one[4], v[5] = one[5], v[6] = one[6], v[7] = one[7];
            }
            if (k == CAIRN__SUSPEND_ITEM)
                v[6] = h->executor_id;
        }
        int stmt = count[k] == 1 ? single_stmt[k] : batch_stmt[k];
        if (k == CAIRN__ENQUEUE_ITEM && count[k] > 1 && alike)
            stmt = CAIRN__Q_ENQUEUE_SAME;
        ok = PQsendQueryPrepared(pg, cairn__stmt_name(stmt), nparams[k], v, NULL, NULL, 0);
        sent[k] = 1;
    }
    ok = ok && PQpipelineSync(pg);
    if (!ok) {
        snprintf(errbuf, errlen, "sending a batch: %s", PQerrorMessage(pg));
        rc = CAIRN_ECONN;
        cairn__conn_drop(c);
        goto out;
    }

    /* Read each statement's rows, then the sync. */
    for (int s = 0; s < KINDS; s++) {
        if (!sent[s])
            continue;
        PGresult *r;
        int cursor = 0;
        int first = 1;
        while ((r = PQgetResult(pg)) != NULL) {
            ExecStatusType st = PQresultStatus(r);
            if (st == PGRES_TUPLES_OK) {
                for (int row = 0; row < PQntuples(r); row++) {
                    const char *id = PQgetvalue(r, row, 0);
                    int step = s == CAIRN__STEP_ITEM ? atoi(PQgetvalue(r, row, 1)) : -1;
                    /* START and ENQUEUE de-duplicate IDs inside a batch: the first item with an ID wins. */
                    cairn__item *it = mark_applied(items, n, &cursor, s, id, step);
                    if (it && s == CAIRN__ENQUEUE_ITEM)
                        it->taken = PQgetvalue(r, row, 2)[0] == 't';
                }
            } else if (first && rc == CAIRN_OK && st != PGRES_PIPELINE_ABORTED) {
                rc = cairn__conn_lost(pg, r) ? CAIRN_ECONN : CAIRN_EDB;
                const char *m = PQresultErrorMessage(r);
                snprintf(errbuf, errlen, "%s", m && *m ? m : PQerrorMessage(pg));
                if (rc == CAIRN_EDB)
                    for (int i = 0; i < n; i++)
                        set_item_error(items[i], CAIRN_EDB, r, pg, "writing a checkpoint");
            }
            first = 0;
            PQclear(r);
        }
        if (PQstatus(pg) != CONNECTION_OK)
            break;
    }
    if (PQstatus(pg) == CONNECTION_OK) {
        PGresult *r = PQgetResult(pg); /* the PGRES_PIPELINE_SYNC */
        if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
            if (rc == CAIRN_OK) {
                rc = CAIRN_ECONN;
                snprintf(errbuf, errlen, "%s", PQerrorMessage(pg));
            }
        }
        PQclear(r);
        if (!PQexitPipelineMode(pg) && rc == CAIRN_OK) {
            rc = CAIRN_ECONN;
            snprintf(errbuf, errlen, "%s", PQerrorMessage(pg));
        }
    } else if (rc == CAIRN_OK) {
        rc = CAIRN_ECONN;
        snprintf(errbuf, errlen, "%s", PQerrorMessage(pg));
    }
    if (rc == CAIRN_ECONN)
        cairn__conn_drop(c);
out:
    for (int k = 0; k < KINDS; k++)
        arrays_free(&arr[k]);
    return rc;
}


/*
 * Writes a batch until it commits. A lost connection is retried with
 * back-off (every statement is idempotent, so a commit whose outcome was
 * unknown is safe to repeat); items whose give-up time has passed fail
 * with CAIRN_ECONN and the rest carry on. A refused batch of several items
 * is split so that one bad item cannot fail the others.
 */
static void commit_batch(cairn *h, cairn__conn *c, cairn__item *const *batch, int n)
{
    /* A private copy, because items that give up are dropped from it. */
    cairn__item *items[CAIRN__MAX_BATCH];
    memcpy(items, batch, (size_t)n * sizeof *items);
    long long backoff = 20;
    char err[512] = "";
    for (;;) {
        int rc = cairn__conn_ensure(h, c);
        if (rc == CAIRN_OK)
            rc = write_batch(h, c, items, n, err, sizeof err);
        else
            snprintf(err, sizeof err, "%s", cairn_errmsg(h));
        if (rc == CAIRN_OK) {
            for (int i = 0; i < n; i++)
                items[i]->rc = CAIRN_OK;
            return;
        }
        if (rc == CAIRN_EDB || rc == CAIRN_ENOMEM || rc == CAIRN_ESCHEMA) {
            if (n > 1) {
                for (int i = 0; i < n; i++)
                    commit_batch(h, c, &items[i], 1);
                return;
            }
            if (rc != CAIRN_EDB)
                snprintf(items[0]->errmsg, sizeof items[0]->errmsg, "%s", err);
            items[0]->rc = rc == CAIRN_EDB ? CAIRN_EDB : rc;
            return;
        }
        /*
         * The connection is gone. Items queued behind this batch must not
         * wait for it (it may retry for as long as the outage lasts): mark
         * it retrying, so free_conn lets them lead a batch of their own and
         * give up at their own deadlines.
         */
        if (!c->retrying) {
            pthread_mutex_lock(&h->commit_lock);
            c->retrying = 1;
            if (h->pending_head && free_conn(h))
                hand_off(h); /* items without a waiter have no deadline: they wait for this batch */
            pthread_mutex_unlock(&h->commit_lock);
        }
        /* Warn once per outage, not once per retry. */
        cairn__log(h, backoff == 20 ? CAIRN_LOG_WARN : CAIRN_LOG_DEBUG, "checkpoint write failed, retrying: %s", err);
        int shutting = atomic_load(&h->shutting_down);
        long long now = cairn__now_ms();
        int kept = 0;
        for (int i = 0; i < n; i++) {
            cairn__item *it = items[i];
            if (shutting || (it->give_up_at && now + backoff > it->give_up_at)) {
                it->rc = shutting ? CAIRN_ESHUTDOWN : CAIRN_ECONN;
                snprintf(it->errmsg, sizeof it->errmsg, "%s%s",
                         shutting ? "the handle is closing; last database error: " : "database unreachable: ", err);
                it->sqlstate[0] = '\0';
            } else {
                items[kept++] = it;
            }
        }
        n = kept;
        if (n == 0)
            return;
        cairn__sleep(h, backoff);
        backoff = backoff * 2 > 1000 ? 1000 : backoff * 2;
    }
}

/*
 * A commit connection for the next batch, or NULL; called with commit_lock
 * held. While a batch is in flight, another starts only once SECOND_BATCH
 * items wait: a few items are better off joining the batch after it (one
 * fsync for all) than taking a connection of their own (one fsync each,
 * and the in-flight batch's successor left smaller too). A batch that is
 * retrying a lost connection does not count as in flight: what queues
 * behind it would otherwise wait out the whole outage instead of giving
 * up after connect_timeout_ms.
 */
#define SECOND_BATCH 4
static cairn__conn *free_conn(cairn *h)
{
    cairn__conn *free = NULL;
    int busy = 0;
    for (int i = 0; i < h->commit_conns_n; i++) {
        if (h->commit_conns[i].in_use)
            busy += !h->commit_conns[i].retrying;
        else if (!free)
            free = &h->commit_conns[i];
    }
    return busy && h->pending_count < SECOND_BATCH ? NULL : free;
}

/*
 * A waiting thread sleeps on its item's wake word with a futex. A mutex and
 * condition variable needed the signal sent under the item's mutex (the
 * waiter may end the item's life once it sees it done), and on two CPUs
 * the woken thread often ran at once and blocked on that mutex: two
 * context switches more per item. Here the poster's last touch of the
 * item is the atomic store; the futex wake after it is a system call on
 * the address, which at worst wakes whatever waits there later for
 * nothing, and every futex waiter (ours, glibc's) checks its word again.
 */
enum { ITEM_IDLE, ITEM_LEAD, ITEM_DONE };

static void futex_wake1(atomic_int *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Wakes one waiter, to lead or (done) because its item is written. */
static void poke(cairn__item *it, int done)
{
    if (done) {
        atomic_store(&it->wake, ITEM_DONE);
    } else {
        int idle = ITEM_IDLE;
        if (!atomic_compare_exchange_strong(&it->wake, &idle, ITEM_LEAD))
            return; /* already told to lead (or done) */
    }
    futex_wake1(&it->wake);
}

/* Sleeps until item is done (returns 1) or its thread should lead a batch (returns 0). */
static int item_wait(cairn__item *it)
{
    for (;;) {
        int w = atomic_load(&it->wake);
        if (w == ITEM_DONE)
            return 1;
        if (w == ITEM_LEAD) {
            if (atomic_compare_exchange_strong(&it->wake, &w, ITEM_IDLE))
                return 0;
            continue; /* it became DONE meanwhile */
        }
        syscall(SYS_futex, &it->wake, FUTEX_WAIT_PRIVATE, ITEM_IDLE, NULL, NULL, 0);
    }
}

/*
 * Wakes the first queued item that has a waiting thread, to lead the next
 * batch; returns 0 when every queued item is one without a waiter (then
 * the caller leads). Called with commit_lock held; a queued item is not
 * done, so waking it under the lock is safe.
 */
static int hand_off(cairn *h)
{
    for (cairn__item *it = h->pending_head; it; it = it->next) {
        if (!it->done_fn) {
            poke(it, 0);
            return 1;
        }
    }
    return 0;
}

/*
 * Takes up to CAIRN__MAX_BATCH queued items into batch and marks c in use;
 * returns how many. Called with commit_lock held.
 */
static int take_batch(cairn *h, cairn__conn *c, cairn__item **batch)
{
    int n = 0;
    while (h->pending_head && n < CAIRN__MAX_BATCH) {
        batch[n++] = h->pending_head;
        h->pending_head = h->pending_head->next;
        h->pending_count--;
    }
    if (!h->pending_head)
        h->pending_tail = NULL;
    c->in_use = 1;
    if (h->pending_head && free_conn(h))
        hand_off(h);
    return n;
}

/*
 * Writes a taken batch on c and releases c. Returns non-zero when items
 * are left that no waiting thread will lead, so the caller should.
 */
static int write_taken(cairn *h, cairn__conn *c, cairn__item *const *batch, int n)
{
    commit_batch(h, c, batch, n);
    pthread_mutex_lock(&h->commit_lock);
    c->in_use = 0;
    c->retrying = 0;
    int lead = h->pending_head && !hand_off(h);
    pthread_mutex_unlock(&h->commit_lock);
    return lead;
}

/* Tells the batch's items they are written: waiters are woken, items without one are handed to done_fn. */
static void finish_batch(cairn *h, cairn__item *const *batch, int n, const cairn__item *mine)
{
    for (int i = 0; i < n; i++) {
        cairn__item *it = batch[i];
        if (it == mine)
            continue;
        if (it->done_fn) {
            it->done_fn(h, it); /* owns the item from here on */
            atomic_fetch_sub(&h->async_items, 1);
        } else {
            poke(it, 1);
        }
    }
}

/* Leads batches while items are queued and a commit connection is free. */
static void drive(cairn *h)
{
    for (;;) {
        pthread_mutex_lock(&h->commit_lock);
        cairn__conn *c = h->pending_head ? free_conn(h) : NULL;
        if (!c) {
            pthread_mutex_unlock(&h->commit_lock);
            return;
        }
        cairn__item *batch[CAIRN__MAX_BATCH];
        int n = take_batch(h, c, batch);
        pthread_mutex_unlock(&h->commit_lock);
        int lead = write_taken(h, c, batch, n);
        finish_batch(h, batch, n, NULL);
        if (!lead)
            return;
    }
}

/* Puts an item at the end of the queue; called with commit_lock held. */
static void enqueue_item(cairn *h, cairn__item *item)
{
    atomic_store(&item->wake, ITEM_IDLE);
    item->rc = CAIRN_OK;
    item->applied = 0;
    item->errmsg[0] = '\0';
    item->sqlstate[0] = '\0';
    item->next = NULL;
    if (h->pending_tail)
        h->pending_tail->next = item;
    else
        h->pending_head = item;
    h->pending_tail = item;
    h->pending_count++;
}

void cairn__commit_async(cairn *h, cairn__item *item)
{
    atomic_fetch_add(&h->async_items, 1);
    pthread_mutex_lock(&h->commit_lock);
    enqueue_item(h, item);
    pthread_mutex_unlock(&h->commit_lock);
    drive(h);
}

void cairn__commit_drain(cairn *h)
{
    while (atomic_load(&h->async_items) > 0) {
        drive(h);
        if (atomic_load(&h->async_items) > 0) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL); /* a batch in flight on another thread */
        }
    }
}

int cairn__commit(cairn *h, cairn__item *item)
{
    item->done_fn = NULL;
    int queued = 0;

    for (;;) {
        pthread_mutex_lock(&h->commit_lock);
        if (!queued) {
            enqueue_item(h, item);
            queued = 1;
        }
        cairn__conn *c = h->pending_head ? free_conn(h) : NULL;
        if (!c) {
            pthread_mutex_unlock(&h->commit_lock);
            if (item_wait(item))
                break;
            continue; /* woken to lead */
        }
        cairn__item *batch[CAIRN__MAX_BATCH];
        int n = take_batch(h, c, batch);
        pthread_mutex_unlock(&h->commit_lock);

        int lead = write_taken(h, c, batch, n);
        /* Only the waiters of this batch wake, each once, outside commit_lock. */
        int mine = 0;
        for (int i = 0; i < n; i++)
            mine |= batch[i] == item;
        finish_batch(h, batch, n, item);
        if (mine) {
            if (lead)
                drive(h); /* what is left has no waiter to lead it */
            break;
        }
    }
    if (item->rc != CAIRN_OK)
        cairn__fail_state(item->rc, item->sqlstate, item->errmsg);
    return item->rc;
}
