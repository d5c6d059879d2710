/*
 * Group commit. Every durable write on the hot path (a workflow start, a
 * step checkpoint, a workflow finish) goes through cairn__commit(). Items
 * wait in one list; whichever waiting thread finds a free commit
 * connection becomes the leader, takes everything queued (up to
 * CAIRN__MAX_BATCH items), and writes it with one statement per kind in
 * a single pipelined round trip and a single commit. A lone workflow pays
 * one statement and one commit per checkpoint with no hand-off to another
 * thread; many concurrent workflows share each commit's fsync.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int cairn__commit_init(cairn *h)
{
    h->commit_conns = calloc((size_t)h->commit_conns_n, sizeof *h->commit_conns);
    if (!h->commit_conns)
        return cairn__fail(CAIRN_ENOMEM, "out of memory");
    return CAIRN_OK;
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

void cairn__commit_shutdown(cairn *h)
{
    pthread_mutex_lock(&h->commit_lock);
    pthread_cond_broadcast(&h->commit_cond);
    pthread_mutex_unlock(&h->commit_lock);
}

/* The arrays of one statement kind, built as Postgres array literals. */
typedef struct batch_arrays {
    cairn__buf a[5];
    int n;
} batch_arrays;

static void arrays_init(batch_arrays *b, int k)
{
    for (int i = 0; i < 5; i++) {
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
    for (int i = 0; i < 5; i++)
        cairn__buf_free(&b->a[i]);
}

static int arrays_oom(const batch_arrays *b, int k)
{
    for (int i = 0; i < k; i++)
        if (b->a[i].oom)
            return 1;
    return 0;
}

/* Marks the item whose key matches a returned row as applied. */
static void mark_applied(cairn__item **items, int n, int *cursor, const char *id, int step)
{
    for (int k = 0; k < n; k++) {
        int i = (*cursor + k) % n;
        if (!items[i]->applied && strcmp(items[i]->id, id) == 0 && (step < 0 || items[i]->step == step)) {
            items[i]->applied = 1;
            *cursor = i + 1;
            return;
        }
    }
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

/*
 * Writes items[0..n) in one transaction: one statement per kind present,
 * pipelined, then one sync. Returns CAIRN_OK, CAIRN_ECONN (connection
 * lost; the transaction may or may not have committed) or CAIRN_EDB (the
 * statements were refused and nothing was written).
 */
static int write_batch(cairn *h, cairn__conn *c, cairn__item **items, int n, char *errbuf, size_t errlen)
{
    batch_arrays starts, steps, finishes;
    arrays_init(&starts, 4);
    arrays_init(&steps, 5);
    arrays_init(&finishes, 4);
    char stepno[16];
    for (int i = 0; i < n; i++) {
        cairn__item *it = items[i];
        it->applied = 0;
        switch (it->kind) {
        case CAIRN__START_ITEM:
            cairn__buf_array_elem(&starts.a[0], it->id);
            cairn__buf_array_elem(&starts.a[1], it->name);
            cairn__buf_array_elem(&starts.a[2], it->queue);
            cairn__buf_array_elem(&starts.a[3], it->input);
            starts.n++;
            break;
        case CAIRN__STEP_ITEM:
            snprintf(stepno, sizeof stepno, "%d", it->step);
            cairn__buf_array_elem(&steps.a[0], it->id);
            cairn__buf_array_elem(&steps.a[1], stepno);
            cairn__buf_array_elem(&steps.a[2], it->name);
            cairn__buf_array_elem(&steps.a[3], it->output);
            cairn__buf_array_elem(&steps.a[4], it->error);
            steps.n++;
            break;
        default:
            cairn__buf_array_elem(&finishes.a[0], it->id);
            cairn__buf_array_elem(&finishes.a[1], it->status);
            cairn__buf_array_elem(&finishes.a[2], it->output);
            cairn__buf_array_elem(&finishes.a[3], it->error);
            finishes.n++;
            break;
        }
    }
    arrays_close(&starts, 4);
    arrays_close(&steps, 5);
    arrays_close(&finishes, 4);
    int rc = CAIRN_OK;
    if (arrays_oom(&starts, 4) || arrays_oom(&steps, 5) || arrays_oom(&finishes, 4)) {
        snprintf(errbuf, errlen, "out of memory building a batch");
        rc = CAIRN_ENOMEM;
        goto out;
    }

    PGconn *pg = c->pg;
    int sent[3] = {0, 0, 0}; /* which statements went out, in order START, STEP, FINISH */
    if (!PQenterPipelineMode(pg)) {
        rc = CAIRN_ECONN;
        snprintf(errbuf, errlen, "cannot enter pipeline mode: %s", PQerrorMessage(pg));
        goto out;
    }
    const char *v[5];
    int ok = 1;
    if (starts.n) {
        v[0] = starts.a[0].data, v[1] = starts.a[1].data, v[2] = starts.a[2].data, v[3] = starts.a[3].data;
        v[4] = h->executor_id;
        ok = ok && PQsendQueryPrepared(pg, cairn__stmt_name(CAIRN__Q_START), 5, v, NULL, NULL, 0);
        sent[0] = 1;
    }
    if (steps.n) {
        for (int k = 0; k < 5; k++)
            v[k] = steps.a[k].data;
        ok = ok && PQsendQueryPrepared(pg, cairn__stmt_name(CAIRN__Q_STEP), 5, v, NULL, NULL, 0);
        sent[1] = 1;
    }
    if (finishes.n) {
        v[0] = finishes.a[0].data, v[1] = finishes.a[1].data, v[2] = finishes.a[2].data, v[3] = finishes.a[3].data;
        v[4] = h->executor_id;
        ok = ok && PQsendQueryPrepared(pg, cairn__stmt_name(CAIRN__Q_FINISH), 5, v, NULL, NULL, 0);
        sent[2] = 1;
    }
    ok = ok && PQpipelineSync(pg);
    if (!ok) {
        snprintf(errbuf, errlen, "sending a batch: %s", PQerrorMessage(pg));
        rc = CAIRN_ECONN;
        cairn__conn_drop(c);
        goto out;
    }

    /* Read each statement's rows, then the sync. */
    for (int s = 0; s < 3; s++) {
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
                    int step = s == 1 ? atoi(PQgetvalue(r, row, 1)) : -1;
                    /* START de-duplicates IDs inside a batch: the first item with an ID wins. */
                    mark_applied(items, n, &cursor, id, step);
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
    arrays_free(&starts);
    arrays_free(&steps);
    arrays_free(&finishes);
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
        /* The connection is gone. */
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

int cairn__commit(cairn *h, cairn__item *item)
{
    item->done = 0;
    item->rc = CAIRN_OK;
    item->applied = 0;
    item->errmsg[0] = '\0';
    item->sqlstate[0] = '\0';
    item->next = NULL;

    pthread_mutex_lock(&h->commit_lock);
    if (h->pending_tail)
        h->pending_tail->next = item;
    else
        h->pending_head = item;
    h->pending_tail = item;
    h->pending_count++;

    while (!item->done) {
        cairn__conn *c = NULL;
        if (h->pending_head) {
            for (int i = 0; i < h->commit_conns_n; i++) {
                if (!h->commit_conns[i].in_use) {
                    c = &h->commit_conns[i];
                    break;
                }
            }
        }
        if (!c) {
            pthread_cond_wait(&h->commit_cond, &h->commit_lock);
            continue;
        }
        /* Lead: take the queued items and write them while others queue up. */
        cairn__item *batch[CAIRN__MAX_BATCH];
        int n = 0;
        while (h->pending_head && n < CAIRN__MAX_BATCH) {
            batch[n++] = h->pending_head;
            h->pending_head = h->pending_head->next;
            h->pending_count--;
        }
        if (!h->pending_head)
            h->pending_tail = NULL;
        c->in_use = 1;
        pthread_mutex_unlock(&h->commit_lock);

        commit_batch(h, c, batch, n);

        pthread_mutex_lock(&h->commit_lock);
        c->in_use = 0;
        for (int i = 0; i < n; i++)
            batch[i]->done = 1;
        pthread_cond_broadcast(&h->commit_cond);
    }
    pthread_mutex_unlock(&h->commit_lock);
    if (item->rc != CAIRN_OK)
        cairn__fail_state(item->rc, item->sqlstate, item->errmsg);
    return item->rc;
}
