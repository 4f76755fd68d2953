/* What the CLI adds around a pipeline run: signal handling (the cancel
 * flag), the live progress line on a terminal or periodic progress log
 * lines otherwise, per-image lines for `canopy run`, and the summary (text,
 * or one JSON object with [log] format = json). */
#ifndef CANOPY_CLI_SESSION_H
#define CANOPY_CLI_SESSION_H

#include <stdbool.h>
#include <stdio.h>

#include "canopy/batch.h"

typedef struct cli_session {
    const char *mode;         /* "run", "drain", "reprocess" */
    bool per_image_lines;     /* run: one line per image on stdout */
    bool live;                /* draw the live line on stderr */
    bool shown;               /* the live line is on the screen */
    double last_log;
    char line[256];
    pl_hooks hooks;
} cli_session;

/* Installs SIGTERM/SIGINT handlers (the first sets the cancel flag, a second
 * exits at once without acknowledging) and prepares the hooks. progress is
 * [log] progress: auto | on | off. */
void cli_session_begin(cli_session *s, const char *mode, const char *progress,
                       bool per_image_lines);
/* Attaches s's live line to the log as begin does on a terminal (tests). */
void cli_session_test_attach(cli_session *s);
/* Clears the live line and detaches from the log. */
void cli_session_end(cli_session *s);
bool cli_session_signalled(void);

/* One line of counts: "12/40 images, 3.1 images/s, ..." (no ETA once done). */
void cli_progress_text(const pl_counts *c, bool final, char *out, size_t len);
/* Prints the summary of a finished run to out: text, or JSON when the log is JSON. */
void cli_summary_print(FILE *out, const char *mode, const pl_counts *c, int rc, bool signalled);

#endif
