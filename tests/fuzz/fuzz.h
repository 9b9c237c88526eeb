/*
 * fuzz.h - what the fuzz targets share: libFuzzer's entry points, and the
 * wrappers of the command line's argument parsers (cli_*.c).
 *
 * Each fuzz_<target>.c defines LLVMFuzzerTestOneInput (and, when it needs a
 * set-up done once, LLVMFuzzerInitialize). With DURABLE_FUZZ=ON (clang) the
 * target links libFuzzer; otherwise it links replay.c, a main that runs it
 * once over every file of the directories and files it is given, so the
 * seed corpora and the inputs of fixed crashes run in every build.
 * A target must not keep state between inputs that changes what an input
 * does, so that a crash found once replays alone.
 */
#ifndef DURABLE_TESTS_FUZZ_FUZZ_H
#define DURABLE_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Parses and validates text as a definition (def_parse_any with format,
 * a enum def_format, and the built-in step types and actions, as
 * durable_validate does), formats the report and frees everything
 * (def_common.c). Returns the durable_code. */
int fuzz_def_check(const char *text, size_t len, int format);

/* The argument parsers of `durable serve`, `run`, `approve|reject` and
 * `runs|show|cancel|retry|logs` (argv[0] the command's name, as the
 * command gets it): parse only, never act. Return the parser's code. */
int fuzz_cli_serve(int argc, char **argv);
int fuzz_cli_run(int argc, char **argv);
int fuzz_cli_approve(int argc, char **argv);
int fuzz_cli_ops(int argc, char **argv);

#endif
