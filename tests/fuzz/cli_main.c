/*
 * cli_main.c - main.c of the `durable` command for fuzz_cli, its main
 * renamed (libFuzzer or replay.c has the process's): the helpers the
 * commands share (cli_db, cli_db_label) come from it.
 */
int durable_cli_main(int argc, char **argv);
#define main durable_cli_main
#include "cli/main.c"
