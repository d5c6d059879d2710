/* The workflows of the wait tests; see wait_flows.h. */
#include "wait_flows.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Codes that mean "stop now; the workflow resumes later". */
static int must_return(int rc)
{
    return rc == CAIRN_ESUSPENDED || rc == CAIRN_ESHUTDOWN;
}

static long long get_int(json_t *o, const char *key, long long dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static int stamp(cairn_step_ctx *step, const char *input, char **output, void *udata)
{
    (void)input, (void)udata;
    char buf[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, sizeof buf, "%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    *output = strdup(buf);
    return *output ? CAIRN_OK : cairn_step_fail(step, "out of memory");
}

static int sleeper(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)udata;
    json_t *in = json_loads(input, JSON_DECODE_ANY, NULL);
    long long ms = get_int(in, "ms", 0);
    json_decref(in);
    int rc = cairn_sleep(ctx, ms);
    if (rc != CAIRN_OK)
        return rc;
    char *woke = NULL;
    rc = cairn_step(ctx, "stamp", NULL, &woke);
    if (rc != CAIRN_OK)
        return rc;
    char buf[96];
    snprintf(buf, sizeof buf, "{\"woke\":%s}", woke);
    cairn_free(woke);
    *output = strdup(buf);
    return CAIRN_OK;
}

static int consumer(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)udata;
    json_t *in = json_loads(input, JSON_DECODE_ANY, NULL);
    const char *topic = json_string_value(json_object_get(in, "topic"));
    char t[128];
    snprintf(t, sizeof t, "%s", topic ? topic : "t");
    long long n = get_int(in, "n", 1), timeout = get_int(in, "timeout_ms", -1);
    json_decref(in);
    json_t *got = json_array();
    for (long long i = 0; i < n; i++) {
        char *m = NULL;
        int rc = cairn_recv(ctx, t, (int)timeout, &m);
        if (rc == CAIRN_ETIMEDOUT) {
            json_array_append_new(got, json_string("timeout"));
            continue;
        }
        if (rc != CAIRN_OK) {
            json_decref(got);
            return must_return(rc) ? rc : cairn_fail(ctx, "receive %lld: %s", i, cairn_strerror(rc));
        }
        json_array_append_new(got, json_loads(m, JSON_DECODE_ANY, NULL));
        cairn_free(m);
    }
    *output = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(got);
    return CAIRN_OK;
}

static int pinger(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)udata, (void)output;
    json_t *in = json_loads(input, JSON_DECODE_ANY, NULL);
    char to[256], topic[128];
    snprintf(to, sizeof to, "%s", json_string_value(json_object_get(in, "to")) ? json_string_value(json_object_get(in, "to")) : "");
    snprintf(topic, sizeof topic, "%s", json_string_value(json_object_get(in, "topic")) ? json_string_value(json_object_get(in, "topic")) : "t");
    long long n = get_int(in, "n", 1), pause = get_int(in, "pause_ms", 0);
    json_decref(in);
    for (long long i = 0; i < n; i++) {
        char m[32];
        snprintf(m, sizeof m, "%lld", i);
        int rc = cairn_ctx_send(ctx, to, topic, m);
        if (rc == CAIRN_OK && pause > 0)
            rc = cairn_sleep(ctx, pause);
        if (rc != CAIRN_OK)
            return rc;
    }
    return CAIRN_OK;
}

static int parent(cairn_ctx *ctx, const char *input, char **output, void *udata)
{
    (void)udata;
    json_t *in = json_loads(input, JSON_DECODE_ANY, NULL);
    long long n = get_int(in, "n", 1), child_ms = get_int(in, "child_ms", 0), timeout = get_int(in, "timeout_ms", -1);
    char other[256] = "";
    if (json_string_value(json_object_get(in, "await")))
        snprintf(other, sizeof other, "%s", json_string_value(json_object_get(in, "await")));
    json_decref(in);
    char ids[8][256];
    char child_in[64];
    snprintf(child_in, sizeof child_in, "{\"ms\": %lld}", child_ms);
    if (n > 8)
        n = 8;
    for (long long i = 0; i < n; i++) {
        char *id = NULL;
        int rc = cairn_start_child(ctx, "sleeper", child_in, NULL, &id);
        if (rc != CAIRN_OK)
            return must_return(rc) ? rc : cairn_fail(ctx, "start child %lld: %s", i, cairn_strerror(rc));
        snprintf(ids[i], sizeof ids[i], "%s", id);
        cairn_free(id);
    }
    json_t *got = json_array();
    for (long long i = 0; i <= n; i++) {
        const char *id = i < n ? ids[i] : other;
        if (!id[0])
            break;
        cairn_status st;
        char *res = NULL;
        int rc = cairn_ctx_await(ctx, id, (int)timeout, &st, &res);
        if (rc == CAIRN_ETIMEDOUT) {
            json_array_append_new(got, json_string("timeout"));
            continue;
        }
        if (rc != CAIRN_OK) {
            json_decref(got);
            return must_return(rc) ? rc : cairn_fail(ctx, "await %s: %s", id, cairn_strerror(rc));
        }
        json_array_append_new(got, json_string(cairn_status_name(st)));
        cairn_free(res);
    }
    *output = json_dumps(got, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(got);
    return CAIRN_OK;
}

int wait_flows_register(cairn *h)
{
    int rc = cairn_register_step(h, "stamp", stamp, NULL, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "sleeper", sleeper, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "consumer", consumer, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "pinger", pinger, NULL);
    if (rc == CAIRN_OK)
        rc = cairn_register_workflow(h, "parent", parent, NULL);
    return rc;
}
