/* Following a run through its journal, with signals as its controls (see attached_run.h). */
#include "run/attached_run.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "run/journal_follow.h"
#include "sdtune/strutil.h"

struct attached_run {
    journal_follow *follow;
    int64_t pid;
    attached_phase phase;
    bool more;
    double kill_after_s;
    int signals_sent; /* stop or abort signals: 1 stops, 2 abort */
    bool abort_sent;
    double kill_at; /* when SIGKILL is due; 0: not pending */
    bool kill_sent;
};

int attached_run_open(const live_run *found, const attached_run_options *options, attached_run **out,
                      char **error)
{
    *out = NULL;
    attached_run *r = calloc(1, sizeof *r);
    if (!r)
        return sdt_set_error(error, "out of memory");
    r->pid = found->pid;
    r->phase = ATTACHED_RUNNING;
    r->kill_after_s =
        options && options->kill_after_s > 0 ? options->kill_after_s : ENGINE_CLIENT_KILL_AFTER_DEFAULT;
    journal_follow_options follow = {.offset = found->hello_offset};
    if (journal_follow_open(found->journal, &follow, &r->follow, error) != 0) {
        free(r);
        return -1;
    }
    *out = r;
    return 0;
}

int attached_run_pump(attached_run *r, engine_line_fn on_line, void *ctx, bool *restarted, char **error)
{
    journal_follow_status status;
    int lines = journal_follow_read(r->follow, on_line, ctx, &status, error);
    r->more = lines >= 0 && status.more;
    if (restarted)
        *restarted = status.restarted;
    return lines;
}

bool attached_run_has_more(const attached_run *r) { return r->more; }

/* Sends sig to the engine when its pid is still an sdtune-engine; false (and the run ended) otherwise. */
static bool signal_engine(attached_run *r, int sig)
{
    if (!live_run_pid_is_engine(r->pid) || kill((pid_t)r->pid, sig) != 0) {
        r->phase = ATTACHED_ENDED;
        return false;
    }
    return true;
}

attached_phase attached_run_tick(attached_run *r, double now)
{
    if (r->phase == ATTACHED_ENDED)
        return r->phase;
    if (!live_run_pid_is_engine(r->pid)) {
        r->phase = ATTACHED_ENDED;
        return r->phase;
    }
    if (r->kill_at > 0 && now >= r->kill_at && !r->kill_sent) {
        r->kill_sent = true;
        signal_engine(r, SIGKILL);
    }
    return r->phase;
}

static int gone(attached_run *r, char **error)
{
    return sdt_set_error(error, "the engine (pid %lld) is gone", (long long)r->pid);
}

int attached_run_stop(attached_run *r, char **error)
{
    if (r->signals_sent > 0)
        return 0;
    if (r->phase == ATTACHED_ENDED || !signal_engine(r, SIGTERM))
        return gone(r, error);
    r->signals_sent = 1;
    return 0;
}

int attached_run_abort(attached_run *r, double now, char **error)
{
    if (r->abort_sent)
        return 0;
    if (r->phase == ATTACHED_ENDED)
        return gone(r, error);
    if (r->signals_sent == 0) {
        if (!signal_engine(r, SIGTERM))
            return gone(r, error);
        r->signals_sent = 1;
    }
    /* Another signal number than the first, so the two cannot merge into one pending signal. */
    if (!signal_engine(r, SIGINT))
        return gone(r, error);
    r->signals_sent = 2;
    r->abort_sent = true;
    r->kill_at = now + r->kill_after_s;
    return 0;
}

attached_phase attached_run_phase(const attached_run *r) { return r->phase; }
int64_t attached_run_pid(const attached_run *r) { return r->pid; }
bool attached_run_stop_sent(const attached_run *r) { return r->signals_sent > 0 && !r->abort_sent; }
bool attached_run_abort_sent(const attached_run *r) { return r->abort_sent; }
const char *attached_run_journal(const attached_run *r) { return journal_follow_path(r->follow); }

void attached_run_free(attached_run *r)
{
    if (!r)
        return;
    journal_follow_free(r->follow);
    free(r);
}
