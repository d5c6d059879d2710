/*
 * wait_worker: a cairn worker process for test_waits, which starts it and
 * SIGKILLs it while its workflows sleep or wait for messages. It runs the
 * workflows of wait_flows.h until it is killed.
 *
 * Usage: wait_worker --db CONNINFO --executor ID [--workers N]
 *            [--suspend-after MS] [--lease-ms MS]
 *
 * It prints "ready" once its executors run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn.h"
#include "wait_flows.h"

int main(int argc, char **argv)
{
    cairn_options o;
    memset(&o, 0, sizeof o);
    o.size = sizeof o;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            o.conninfo = argv[i + 1];
        else if (strcmp(argv[i], "--executor") == 0)
            o.executor_id = argv[i + 1];
        else if (strcmp(argv[i], "--workers") == 0)
            o.workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--suspend-after") == 0)
            o.suspend_after_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--lease-ms") == 0)
            o.lease_ms = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "wait_worker: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    o.poll_interval_ms = 200;
    cairn *h = NULL;
    int rc = cairn_open(&h, &o);
    if (rc == CAIRN_OK)
        rc = wait_flows_register(h);
    if (rc == CAIRN_OK)
        rc = cairn_start_workers(h);
    if (rc != CAIRN_OK) {
        fprintf(stderr, "wait_worker: %s: %s\n", cairn_strerror(rc), h ? cairn_errmsg(h) : "out of memory");
        cairn_close(h);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
