/*
 * Workflows for the wait tests, shared by test_waits (which runs them in
 * its own handles) and wait_worker (which runs them in a process the test
 * kills).
 *
 *   "sleeper"  {"ms": N}: sleeps N ms with cairn_sleep(), then a step
 *              "stamp" records the database time; output {"woke": <time>}.
 *   "consumer" {"topic": T, "n": N, "timeout_ms": M}: receives N messages
 *              on T (each with timeout M, -1 forever) and returns them as
 *              an array, "timeout" for each receive that timed out.
 *   "pinger"   {"to": ID, "topic": T, "n": N, "pause_ms": P}: sends 0..N-1
 *              to ID with cairn_ctx_send(), sleeping P ms after each.
 *   "parent"   {"n": N, "child_ms": M, "timeout_ms": T, "await": ID}: starts
 *              N (at most 8) "sleeper" children sleeping M ms, then awaits
 *              each (timeout T, -1 forever) and, if given, workflow ID too;
 *              returns their final statuses, "timeout" for an await that
 *              timed out.
 */
#ifndef CAIRN_TEST_WAIT_FLOWS_H
#define CAIRN_TEST_WAIT_FLOWS_H

#include "cairn.h"

/* Registers the workflows and the step they use; returns a cairn code. */
int wait_flows_register(cairn *h);

#endif
