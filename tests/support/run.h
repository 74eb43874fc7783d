/* run.h -- the end of every test suite's main(): run it, report, exit status. */
#ifndef CREMA_TESTS_RUN_H
#define CREMA_TESTS_RUN_H

#include <check.h>

/* Runs every test of s (Check's normal output), frees the runner (and s with it) and returns
 * EXIT_SUCCESS or EXIT_FAILURE for main() to return. */
int test_run_suite(Suite *s);

#endif
