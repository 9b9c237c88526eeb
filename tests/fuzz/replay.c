/*
 * replay.c - the main of a fuzz target in a build without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file named, and on every file of
 * every directory named (not recursively), like SQLite's fuzzcheck. CTest
 * runs it over the target's seed corpus and its regression inputs (the
 * inputs of crashes fixed), so they run in every build, under the
 * sanitizers in the ASan build. Prints the number of inputs run.
 */
#include "util/common.h"

#include "fuzz.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REPLAY_MAX_INPUT ((size_t)4 * 1024 * 1024)

/* Runs the target on the file at path. Returns 0, or -1 when unreadable. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    size_t n;

    if (!f) {
        fprintf(stderr, "replay: cannot open \"%s\"\n", path);
        return -1;
    }
    buf = malloc(REPLAY_MAX_INPUT);
    n = buf ? fread(buf, 1, REPLAY_MAX_INPUT, f) : 0;
    fclose(f);
    if (!buf)
        return -1;
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

/* Runs the target on each regular file of dir, in name order. */
static int replay_dir(const char *dir, size_t *n_run)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), i, rc = 0;

    if (n < 0) {
        fprintf(stderr, "replay: cannot read \"%s\"\n", dir);
        return -1;
    }
    for (i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            if (replay_file(path) != 0)
                rc = -1;
            (*n_run)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n_run = 0;
    int i, rc = 0;

    LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            if (replay_dir(argv[i], &n_run) != 0)
                rc = 1;
        } else {
            if (replay_file(argv[i]) != 0)
                rc = 1;
            n_run++;
        }
    }
    printf("replay: %zu inputs run\n", n_run);
    return rc;
}
