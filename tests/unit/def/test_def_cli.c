/*
 * test_def_cli.c - `durable validate` through cli_validate(), with stdout,
 * stderr (and stdin for "-") redirected to temporary files: output lines,
 * exit codes, usage, unreadable and oversized files, JSON and YAML.
 */
#include "util/common.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "util/util.h"

#define DATA DURABLE_TEST_DATA "/def/"

struct captured {
    int rc;
    char *out;
    char *err;
};

static char *slurp_fd(int fd)
{
    char *text_out;
    struct dbuf b;
    char chunk[4096];
    ssize_t n;

    dbuf_init(&b, 0);
    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        dbuf_add(&b, chunk, (size_t)n);
    close(fd);
    text_out = dbuf_detach(&b, NULL);
    dbuf_release(&b); /* detach leaves an empty buffer behind */
    return text_out;
}

static int temp_fd(void)
{
    char path[] = "/tmp/test_def_cli_XXXXXX";
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

/* Runs cli_validate on a NULL-terminated argument list; stdin_text, if not
 * NULL, becomes standard input. */
static struct captured run(const char *stdin_text, ...)
{
    char *argv[16];
    int argc = 0, out_fd = temp_fd(), err_fd = temp_fd(), in_fd = -1;
    int saved_out = dup(1), saved_err = dup(2), saved_in = dup(0);
    struct captured c;
    va_list ap;

    va_start(ap, stdin_text);
    argv[argc++] = (char *)"validate";
    while ((argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    if (stdin_text) {
        in_fd = temp_fd();
        assert_int_equal(write(in_fd, stdin_text, strlen(stdin_text)), (ssize_t)strlen(stdin_text));
        lseek(in_fd, 0, SEEK_SET);
        dup2(in_fd, 0);
        close(in_fd);
    }
    fflush(stdout);
    fflush(stderr);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    c.rc = cli_validate(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    dup2(saved_in, 0);
    close(saved_out);
    close(saved_err);
    close(saved_in);
    c.out = slurp_fd(out_fd);
    c.err = slurp_fd(err_fd);
    return c;
}

static void captured_free(struct captured *c)
{
    free(c->out);
    free(c->err);
}

static void test_valid_and_invalid(void **state)
{
    struct captured c;

    (void)state;
    c = run(NULL, DATA "valid/order_processing.json", NULL);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, DATA "valid/order_processing.json: ok\n");
    assert_string_equal(c.err, "");
    captured_free(&c);

    c = run(NULL, DATA "valid/minimal.json", DATA "invalid/self_dep.json", NULL);
    assert_int_equal(c.rc, 1);
    assert_string_equal(
            c.out,
            DATA "valid/minimal.json: ok\n" DATA
                 "invalid/self_dep.json: steps[1].depends_on[1]: step \"x\" depends on itself\n");
    captured_free(&c);
}

static void test_yaml_files(void **state)
{
    struct captured c;

    (void)state;
    c = run(NULL, DATA "valid/order_processing.yaml", DATA "valid/order_processing.old.yaml",
            DATA "invalid/yaml_tab.yaml", DATA "invalid/old_tasks_and_steps.yaml", NULL);
    assert_int_equal(c.rc, 1);
    assert_string_equal(c.out, DATA
                        "valid/order_processing.yaml: ok\n" DATA
                        "valid/order_processing.old.yaml: ok\n" DATA
                        "invalid/yaml_tab.yaml: line 3, column 1: tab characters cannot indent "
                        "YAML; use spaces\n" DATA
                        "invalid/old_tasks_and_steps.yaml: tasks (line 3, column 3): \"tasks\" is "
                        "an older name of \"steps\", which is also given\n");
    assert_string_equal(c.err, "");
    captured_free(&c);

    c = run("name: w\nsteps:\n  - id: a\n    colour: 1\n", "-", NULL);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, "-: warning: steps[0].colour (line 4, column 13): unknown field "
                               "\"colour\"\n-: ok\n");
    captured_free(&c);

    /* billion laughs: refused as too big, with its place */
    c = run(NULL, DATA "invalid/yaml_billion_laughs.yaml", NULL);
    assert_int_equal(c.rc, 1);
    assert_string_equal(c.out,
                        DATA "invalid/yaml_billion_laughs.yaml: line 8, column 20: the "
                             "document has more than 524288 nodes once aliases are expanded\n");
    captured_free(&c);
}

static void test_warnings(void **state)
{
    struct captured c;

    (void)state;
    c = run("{\"name\":\"w\",\"steps\":[{\"id\":\"a\",\"colour\":1}]}", "-", NULL);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, "-: warning: steps[0].colour: unknown field \"colour\"\n-: ok\n");
    captured_free(&c);

    c = run("{\"name\":\"w\",\n\"steps\":[}", "--", "-", NULL);
    assert_int_equal(c.rc, 1);
    assert_string_equal(c.out, "-: line 2, column 10: unexpected token near '}'\n");
    captured_free(&c);
}

static void test_usage(void **state)
{
    struct captured c;

    (void)state;
    c = run(NULL, NULL);
    assert_int_equal(c.rc, 2);
    assert_string_equal(c.out, "");
    assert_non_null(strstr(c.err, "usage: durable validate FILE..."));
    captured_free(&c);

    c = run(NULL, "x.json", "--help", NULL);
    assert_int_equal(c.rc, 0);
    assert_non_null(strstr(c.out, "usage: durable validate FILE..."));
    assert_string_equal(c.err, "");
    captured_free(&c);

    c = run(NULL, "-h", NULL);
    assert_int_equal(c.rc, 0);
    captured_free(&c);

    c = run(NULL, "--strict", "x.json", NULL);
    assert_int_equal(c.rc, 2);
    assert_non_null(strstr(c.err, "durable validate: unknown option \"--strict\""));
    captured_free(&c);
}

static void test_unreadable(void **state)
{
    struct captured c;

    (void)state;
    c = run(NULL, "/nonexistent/x.json", DATA "valid/minimal.json", NULL);
    assert_int_equal(c.rc, 1);
    assert_string_equal(c.out, DATA "valid/minimal.json: ok\n");
    assert_string_equal(
            c.err, "durable: cannot read \"/nonexistent/x.json\": No such file or directory\n");
    captured_free(&c);

    c = run(NULL, DATA, NULL);
    assert_int_equal(c.rc, 1);
    assert_non_null(strstr(c.err, "Is a directory"));
    captured_free(&c);
}

/* cli_read_file with stderr captured into *err_text. */
static int read_capturing(const char *path, size_t max, char **text, size_t *len, char **err_text)
{
    int saved = dup(2), err_fd = temp_fd(), rc;

    fflush(stderr);
    dup2(err_fd, 2);
    rc = cli_read_file(path, max, text, len);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    *err_text = slurp_fd(err_fd);
    return rc;
}

static void test_read_file_limit(void **state)
{
    char path[] = "/tmp/test_def_cli_big_XXXXXX";
    int fd = mkstemp(path);
    char big[100];
    char *text = NULL, *err_text = NULL;
    size_t len = 0;

    (void)state;
    assert_true(fd >= 0);
    memset(big, ' ', sizeof(big));
    assert_int_equal(write(fd, big, sizeof(big)), (ssize_t)sizeof(big));
    close(fd);
    assert_int_equal(read_capturing(path, 100, &text, &len, &err_text), 0);
    assert_int_equal(len, 100);
    assert_string_equal(err_text, "");
    free(text);
    free(err_text);
    assert_int_equal(read_capturing(path, 99, &text, &len, &err_text), -1);
    assert_null(text);
    assert_non_null(strstr(err_text, "the file is larger than 99 bytes"));
    free(err_text);
    unlink(path);
}

static void test_oversized_definition(void **state)
{
    char path[] = "/tmp/test_def_cli_huge_XXXXXX";
    int fd = mkstemp(path);
    size_t n = 1024 * 1024 + 1;
    char *big = xmalloc(n);
    struct captured c;

    (void)state;
    assert_true(fd >= 0);
    memset(big, ' ', n);
    assert_int_equal(write(fd, big, n), (ssize_t)n);
    close(fd);
    c = run(NULL, path, NULL);
    assert_int_equal(c.rc, 1);
    assert_non_null(strstr(c.err, "the file is larger than 1048576 bytes"));
    captured_free(&c);
    unlink(path);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_and_invalid),
        cmocka_unit_test(test_yaml_files),
        cmocka_unit_test(test_warnings),
        cmocka_unit_test(test_usage),
        cmocka_unit_test(test_unreadable),
        cmocka_unit_test(test_read_file_limit),
        cmocka_unit_test(test_oversized_definition),
    };

    return cmocka_run_group_tests_name("def_cli", tests, NULL, NULL);
}
