/* test_store_delete.h - the deletion tests of the conformance suite
 * (test_store_delete.c), listed in test_store.c's main. */
#ifndef DURABLE_TESTS_UNIT_STORE_TEST_STORE_DELETE_H
#define DURABLE_TESTS_UNIT_STORE_TEST_STORE_DELETE_H

void test_delete_run(void **state);
void test_purge_selects(void **state);
void test_retention_windows(void **state);
void test_deleted_event_ids_not_reused(void **state);
void test_workflow_version_delete(void **state);

#endif
