/* The CLI's side of a pipeline run: signals, progress and the summary. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "canopy/log.h"
#include "cli/commands.h"
#include "cli/session.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    if (g_stop) {
        static const char msg[] = "canopy: second signal, exiting without acknowledging\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        _exit(CNP_EXIT_FATAL);
    }
    g_stop = sig;
}

bool cli_session_signalled(void)
{
    return g_stop != 0;
}

void cli_progress_text(const pl_counts *c, bool final, char *out, size_t len)
{
    long long done = c->ok + c->failed + c->retried;
    double rate = c->elapsed_s > 0 ? (double)done / c->elapsed_s : 0.0;
    char totals[48] = "", eta[32] = "", retried[48] = "";
    /* A total is shown only while it means something: drain has none, and
     * redeliveries never push the count past it. */
    if (!final && c->total >= 0 && done <= c->total)
        snprintf(totals, sizeof totals, "/%lld", c->total);
    if (!final && c->total > 0 && rate > 0 && done < c->total)
        snprintf(eta, sizeof eta, ", ETA %.0f s", (double)(c->total - done) / rate);
    if (c->retried)
        snprintf(retried, sizeof retried, ", %lld retried", c->retried);
    /* A large raster read in windows: how far through its windows. */
    char windows[48] = "";
    if (!final && c->windows_total > 0)
        snprintf(windows, sizeof windows, " (windows %lld/%lld)", c->windows_done,
                 c->windows_total);
    snprintf(out, len, "%lld%s images%s: %lld ok, %lld failed%s; %lld trees; %.1f images/s, "
                       "%.2f MPix/s%s",
             done, totals, windows, c->ok, c->failed, retried, c->trees, rate,
             c->elapsed_s > 0 ? c->mpix / c->elapsed_s : 0.0, eta);
}

/* Log hook: a log line is about to be written; take the live line away. */
static void clear_live(void *ctx)
{
    cli_session *s = ctx;
    if (s->shown) {
        fputs("\r\033[K", stderr);
        s->shown = false;
    }
}

static void draw_live(void *ctx)
{
    cli_session *s = ctx;
    fprintf(stderr, "\r\033[K%s", s->line);
    fflush(stderr);
    s->shown = true;
}

static void on_progress(void *ctx, const pl_counts *c)
{
    cli_session *s = ctx;
    if (s->live) {
        cli_progress_text(c, false, s->line, sizeof s->line);
        cnp_log_locked(draw_live, s);
    } else if (c->elapsed_s - s->last_log >= 10.0) {
        s->last_log = c->elapsed_s;
        char line[256];
        cli_progress_text(c, false, line, sizeof line);
        LOG_INFO(s->mode, "progress: %s", line);
    }
}

struct item_line {
    cli_session *s;
    const pl_item_report *r;
};

/* With [log] format = json, stdout carries JSON only: one object per image. */
static void print_item_json(const pl_item_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "image");
    cJSON_AddStringToObject(o, "name", r->name);
    cJSON_AddBoolToObject(o, "ok", r->ok);
    if (r->ok) {
        cJSON_AddNumberToObject(o, "width", r->width);
        cJSON_AddNumberToObject(o, "height", r->height);
        if (r->threshold >= 0)
            cJSON_AddNumberToObject(o, "threshold", r->threshold);
        else
            cJSON_AddNullToObject(o, "threshold");
        cJSON_AddNumberToObject(o, "canopy_cover", r->canopy_cover);
        cJSON_AddNumberToObject(o, "trees", (double)r->ntrees);
        cJSON_AddNumberToObject(o, "ms", r->ms);
        if (r->warning)
            cJSON_AddStringToObject(o, "warning", r->warning);
    } else {
        cJSON_AddStringToObject(o, "status", cnp_status_name(r->status));
        cJSON_AddStringToObject(o, "error", r->error ? r->error : "");
    }
    char *text = cJSON_PrintUnformatted(o);
    if (text)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(o);
}

static void print_item(void *ctx)
{
    struct item_line *il = ctx;
    const pl_item_report *r = il->r;
    clear_live(il->s);
    if (cnp_log_is_json()) {
        print_item_json(r);
    } else if (r->ok) {
        char thr[16] = "adaptive";
        if (r->threshold >= 0)
            snprintf(thr, sizeof thr, "%d", r->threshold);
        printf("%-28s %5ux%-5u threshold %-8s cover %5.1f%%  trees %4zu  %7.1f ms%s%s\n",
               r->name, r->width, r->height, thr, r->canopy_cover * 100.0, r->ntrees, r->ms,
               r->warning ? "  warning: " : "", r->warning ? r->warning : "");
    } else {
        printf("%-28s FAILED (%s): %s\n", r->name, cnp_status_name(r->status), r->error);
    }
    fflush(stdout);
}

static void on_item(void *ctx, const pl_item_report *r)
{
    struct item_line il = {.s = ctx, .r = r};
    cnp_log_locked(print_item, &il);
}

void cli_session_test_attach(cli_session *s)
{
    cnp_log_set_hook(clear_live, s);
}

void cli_session_begin(cli_session *s, const char *mode, const char *progress,
                       bool per_image_lines)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->per_image_lines = per_image_lines;
    bool off = strcmp(progress, "off") == 0;
    s->live = !off && isatty(2) && !cnp_log_is_json();
    s->hooks.cancel = &g_stop;
    s->hooks.on_progress = off ? NULL : on_progress;
    s->hooks.on_item = per_image_lines ? on_item : NULL;
    s->hooks.ctx = s;
    if (s->live)
        cnp_log_set_hook(clear_live, s);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void cli_session_end(cli_session *s)
{
    if (s->live) {
        cnp_log_locked(clear_live, s);
        cnp_log_set_hook(NULL, NULL);
    }
}

void cli_summary_print(FILE *out, const char *mode, const pl_counts *c, int rc, bool signalled)
{
    if (cnp_log_is_json()) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "summary");
        cJSON_AddStringToObject(o, "mode", mode);
        if (c->run_id)
            cJSON_AddNumberToObject(o, "run_id", (double)c->run_id);
        cJSON_AddNumberToObject(o, "images", (double)(c->ok + c->failed + c->retried));
        cJSON_AddNumberToObject(o, "ok", (double)c->ok);
        cJSON_AddNumberToObject(o, "failed", (double)c->failed);
        cJSON_AddNumberToObject(o, "retried", (double)c->retried);
        cJSON_AddNumberToObject(o, "pending", (double)c->pending);
        cJSON_AddNumberToObject(o, "trees", (double)c->trees);
        cJSON_AddNumberToObject(o, "mpix", c->mpix);
        cJSON_AddNumberToObject(o, "seconds", c->elapsed_s);
        cJSON_AddBoolToObject(o, "signalled", signalled);
        cJSON_AddNumberToObject(o, "exit_code", rc);
        char *text = cJSON_PrintUnformatted(o);
        if (text)
            fprintf(out, "%s\n", text);
        cJSON_free(text);
        cJSON_Delete(o);
    } else {
        char line[256];
        cli_progress_text(c, true, line, sizeof line);
        char run[48] = "";
        if (c->run_id)
            snprintf(run, sizeof run, "run %lld ", (long long)c->run_id);
        fprintf(out, "%s: %sfinished in %.1f s: %s%s", mode, run, c->elapsed_s, line,
                signalled ? " (stopped by signal)" : "");
        if (c->pending)
            fprintf(out, "; %lld message(s) still waiting out a backoff (exit %d)", c->pending,
                    CNP_EXIT_PENDING);
        fputc('\n', out);
    }
    fflush(out);
}
