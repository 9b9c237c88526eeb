/*
 * custom_step.c - a step type of its own for JSON workflows: `send_email`,
 * registered from C, used in a definition like a built-in type.
 *
 *   custom_step [--db PATH] [--to ADDRESS]
 *
 * send_email is a blocking type: its start() runs on one of the engine's
 * step threads, not the scheduler's. It does not even send there: it hands
 * the call to this program's mailer thread and returns; the mailer answers
 * the call later, from its own thread, when the message is "sent". The
 * step's idempotency key (the same for every attempt, and after a crash)
 * is what a real mail API would be given, so that a message is sent once.
 * Run it twice with the same --to: the second run is the first one,
 * returned by its idempotency key.
 */
#define _POSIX_C_SOURCE 200809L

#include <durable.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const definition =
        "{\"name\": \"welcome-mail\",\n"
        " \"steps\": [\n"
        "  {\"id\": \"send\", \"type\": \"send_email\",\n"
        "   \"config\": {\"to\": \"{{ .input.email }}\", \"subject\": \"Welcome aboard\"},\n"
        "   \"timeout_seconds\": 30, \"retry\": {\"max_attempts\": 3}},\n"
        "  {\"id\": \"note\", \"type\": \"log\", \"depends_on\": [\"send\"],\n"
        "   \"config\": {\"message\": \"mail {{ .steps.send.output.message_id }} sent\"}}\n"
        " ]}\n";

/* ---- the mailer: a thread with a queue of calls to answer ---- */

struct job {
    struct job *next;
    durable_step_call *call;
    char *config; /* the step's config, rendered: {"to", "subject"} */
    int cancelled;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct job *head, *current;
    int stopping;
    unsigned sent;
} mailer = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0, 0 };

static void *mailer_main(void *arg)
{
    struct job *j;
    char out[128];
    struct timespec pause = { 0, 300 * 1000 * 1000 };
    int skip;

    (void)arg;
    pthread_mutex_lock(&mailer.mu);
    for (;;) {
        while (!mailer.head && !mailer.stopping)
            pthread_cond_wait(&mailer.cond, &mailer.mu);
        if (!mailer.head)
            break;
        j = mailer.head;
        mailer.head = j->next;
        mailer.current = j;
        skip = j->cancelled || mailer.stopping;
        pthread_mutex_unlock(&mailer.mu);

        if (!skip) {
            printf("mailer: sending %s\n        idempotency key %s\n", j->config,
                   durable_step_call_idempotency_key(j->call));
            fflush(stdout);
            nanosleep(&pause, NULL); /* the mail API's round trip */
        }
        pthread_mutex_lock(&mailer.mu);
        mailer.current = NULL;
        skip = skip || j->cancelled;
        snprintf(out, sizeof(out), "{\"message_id\": \"msg-%u\"}", ++mailer.sent);
        pthread_mutex_unlock(&mailer.mu);
        /* Every call is answered once, even a cancelled one (the answer is
         * then ignored): the answer is what frees it. */
        if (skip)
            durable_step_fail(j->call, "cancelled", "not sent");
        else
            durable_step_done(j->call, out);
        free(j->config);
        free(j);
        pthread_mutex_lock(&mailer.mu);
    }
    pthread_mutex_unlock(&mailer.mu);
    return NULL;
}

/* ---- the step type ---- */

/* The config must name a recipient ("to"); the engine reports the path.
 * (A real check would parse the config with a JSON library.) */
static void send_email_check(durable_step_check *chk, void *ud)
{
    (void)ud;
    if (!strstr(durable_step_check_config(chk), "\"to\":"))
        durable_step_check_error(chk, "to", "required: the recipient's address");
}

/* On a step thread: queue the call for the mailer and return at once. */
static void send_email_start(durable_step_call *call, void *ud)
{
    struct job *j = calloc(1, sizeof(*j)), **tail;

    (void)ud;
    if (!j) {
        durable_step_fail(call, "no_memory", "could not queue the message");
        return;
    }
    j->call = call;
    j->config = strdup(durable_step_call_config(call));
    pthread_mutex_lock(&mailer.mu);
    for (tail = &mailer.head; *tail; tail = &(*tail)->next)
        ;
    *tail = j;
    pthread_cond_signal(&mailer.cond);
    pthread_mutex_unlock(&mailer.mu);
}

/* The run was cancelled, the attempt timed out or the engine is closing:
 * do not send (must not block). */
static void send_email_cancel(durable_step_call *call, void *ud)
{
    struct job *j;

    (void)ud;
    pthread_mutex_lock(&mailer.mu);
    for (j = mailer.head; j; j = j->next) {
        if (j->call == call)
            j->cancelled = 1;
    }
    if (mailer.current && mailer.current->call == call)
        mailer.current->cancelled = 1;
    pthread_mutex_unlock(&mailer.mu);
}

static const durable_step_type send_email = {
    .name = "send_email",
    .check = send_email_check,
    .start = send_email_start,
    .cancel = send_email_cancel,
    .blocking = true,
};

static int usage(FILE *f)
{
    fprintf(f, "usage: custom_step [--db PATH] [--to ADDRESS]\n");
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    durable_options opts = { .db_path = "custom_step.db" };
    const char *to = "ada@example.com", *status = "?";
    char input[256], key[300], *wf = NULL, *run = NULL, *doc = NULL;
    durable_error err = { 0 };
    durable *d = NULL;
    pthread_t thread;
    int i, rc = 1;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            opts.db_path = argv[++i];
        else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc)
            to = argv[++i];
        else
            return usage(stderr);
    }
    if (strlen(to) > 200 || strchr(to, '"') || strchr(to, '\\')) {
        fprintf(stderr, "custom_step: --to: not an address: %s\n", to);
        return 2;
    }
    if (pthread_create(&thread, NULL, mailer_main, NULL) != 0) {
        fprintf(stderr, "custom_step: could not start the mailer thread\n");
        return 1;
    }

    d = durable_open(&opts, &err);
    if (!d)
        goto done;
    /* Types first: unfinished runs that use send_email resume now. */
    if (durable_step_type_register(d, &send_email, &err) != DURABLE_OK)
        goto done;
    if (durable_workflow_register(d, definition, strlen(definition), &wf, NULL, NULL, &err) !=
        DURABLE_OK)
        goto done;
    snprintf(input, sizeof(input), "{\"email\": \"%s\"}", to);
    snprintf(key, sizeof(key), "welcome-%s", to);
    {
        durable_run_request req = { .workflow = "welcome-mail",
                                    .input_json = input,
                                    .idempotency_key = key };
        bool existed = false;
        if (durable_run_start(d, &req, &run, &existed, &err) != DURABLE_OK)
            goto done;
        printf("run %s%s\n", run, existed ? " (started before, with this key)" : "");
    }
    if (durable_run_wait(d, run, 60000, &status, &err) != DURABLE_OK ||
        durable_run_get(d, run, &doc, &err) != DURABLE_OK)
        goto done;
    printf("run %s %s\n%s\n", run, status, doc);
    rc = strcmp(status, "completed") == 0 ? 0 : 1;

done:
    if (err.code != DURABLE_OK)
        fprintf(stderr, "custom_step: %s\n", err.msg);
    durable_free(doc);
    durable_free(run);
    durable_free(wf);
    durable_close(d); /* cancels what is unanswered: the mailer answers it */
    pthread_mutex_lock(&mailer.mu);
    mailer.stopping = 1;
    pthread_cond_signal(&mailer.cond);
    pthread_mutex_unlock(&mailer.mu);
    pthread_join(thread, NULL);
    return rc;
}
