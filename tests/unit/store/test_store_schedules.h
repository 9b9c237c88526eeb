/* test_store_schedules.h - the schedule tests of the conformance suite
 * (test_store_schedules.c), listed in test_store.c's main. */
#ifndef DURABLE_TESTS_UNIT_STORE_TEST_STORE_SCHEDULES_H
#define DURABLE_TESTS_UNIT_STORE_TEST_STORE_SCHEDULES_H

void test_schedule_ticks_once(void **state);

#endif
