/*
 * lock.c - who may execute which runs of a SQLite database file.
 *
 * Two processes executing the same run would run its steps twice. On one
 * machine the kernel can arbitrate without leases or clocks: open file
 * description locks (F_OFD_SETLK) on a side file "<db>-lock" vanish when the
 * process dies, so a crash never leaves a stale owner behind and a restart
 * can take over at once.
 *
 *   byte 0          presence: an engine that resumes every run (a server,
 *                   DURABLE_RECOVER_ALL) holds it exclusively; one that only
 *                   executes its own runs (durable run) holds it shared. So
 *                   a server never shares a file with anyone else executing.
 *   byte 1 + h(id)  one run, held exclusively by the process executing it
 *                   (shared-presence engines only; a server owns them all).
 *
 * h is a 62-bit FNV-1a hash of the run id: a collision would make two runs
 * exclude each other, not run twice. Locks are taken and dropped on any
 * thread; the descriptor is immutable after engine_lock_open.
 */
#include "util/common.h"

#include "engine/engine.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static off_t run_offset(const char *run_id)
{
    uint64_t h = 1469598103934665603ULL;

    while (*run_id)
        h = (h ^ (unsigned char)*run_id++) * 1099511628211ULL;
    return (off_t)(1 + (h & 0x3fffffffffffffffULL));
}

static int set_lock(int fd, short type, off_t start, int cmd)
{
    struct flock fl;

    memset(&fl, 0, sizeof(fl));
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = start;
    fl.l_len = 1;
    return fcntl(fd, cmd, &fl);
}

durable_code engine_lock_open(struct durable *d, const char *db_path, durable_error *err)
{
    char path[4096], why[128];
    bool exclusive = d->recovery == DURABLE_RECOVER_ALL;
    int fd;

    snprintf(path, sizeof(path), "%s-lock", db_path);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        return err_set(err, DURABLE_EIO, "could not open \"%s\": %s", path,
                       err_errno(e, why, sizeof(why)));
    }
    if (set_lock(fd, exclusive ? F_WRLCK : F_RDLCK, 0, F_OFD_SETLK) != 0) {
        close(fd);
        return err_set(
                err, DURABLE_ECONFLICT,
                exclusive ? "database \"%s\" is in use by another durable process"
                          : "database \"%s\" is served by a durable server: start runs through it",
                db_path);
    }
    d->lock_fd = fd;
    return DURABLE_OK;
}

void engine_lock_close(struct durable *d)
{
    if (d->lock_fd >= 0)
        close(d->lock_fd);
    d->lock_fd = -1;
}

bool engine_run_lock(struct durable *d, const char *run_id)
{
    if (d->recovery == DURABLE_RECOVER_ALL)
        return true;
    return set_lock(d->lock_fd, F_WRLCK, run_offset(run_id), F_OFD_SETLK) == 0;
}

void engine_run_unlock(struct durable *d, const char *run_id)
{
    if (d->recovery != DURABLE_RECOVER_ALL)
        set_lock(d->lock_fd, F_UNLCK, run_offset(run_id), F_OFD_SETLK);
}

bool engine_run_locked_elsewhere(struct durable *d, const char *run_id)
{
    struct flock fl;

    if (d->recovery == DURABLE_RECOVER_ALL)
        return false;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = run_offset(run_id);
    fl.l_len = 1;
    /* F_OFD_GETLK reports conflicts with other descriptions only. */
    if (fcntl(d->lock_fd, F_OFD_GETLK, &fl) != 0)
        return false;
    return fl.l_type != F_UNLCK;
}
