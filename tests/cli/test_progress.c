/* The CLI's progress and summary lines (src/cli/session.c): a drain has no
 * total ("310/300 images" and "16/0 images" came from showing one), the
 * final summary shows no ETA, and a log line written while the live
 * progress line is on a terminal first clears it (no glued lines). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "cli/session.h"
#include "testutil.h"

static void test_text(void)
{
    char line[256];
    pl_counts c = {.ok = 300, .failed = 10, .retried = 0, .total = 300, .elapsed_s = 10,
                   .trees = 5, .mpix = 30};
    cli_progress_text(&c, false, line, sizeof line);
    CHECK(strstr(line, "310 images") && !strstr(line, "/300"), "%s", line);
    c.ok = 16;
    c.failed = 0;
    c.total = 0;
    cli_progress_text(&c, false, line, sizeof line);
    CHECK(strstr(line, "16 images") && !strstr(line, "16/0"), "%s", line);
    c.ok = 40;
    c.total = 100;
    cli_progress_text(&c, false, line, sizeof line);
    CHECK(strstr(line, "40/100 images") && strstr(line, "ETA "), "%s", line);
    cli_progress_text(&c, true, line, sizeof line);
    CHECK(strstr(line, "40 images: 40 ok, 0 failed") && !strstr(line, "ETA") &&
              !strstr(line, "/100"), "final: %s", line);
    c.retried = 2;
    cli_progress_text(&c, true, line, sizeof line);
    CHECK(strstr(line, "42 images: 40 ok, 0 failed, 2 retried"), "%s", line);
    /* A large raster in windows: how far through them, while it runs. */
    c.windows_done = 7;
    c.windows_total = 50;
    cli_progress_text(&c, false, line, sizeof line);
    CHECK(strstr(line, "42/100 images (windows 7/50): 40 ok"), "%s", line);
    cli_progress_text(&c, true, line, sizeof line);
    CHECK(!strstr(line, "windows"), "final: %s", line);
}

static void test_summary_json(void)
{
    char path[] = "/tmp/canopy-test-progress-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w+");
    pl_counts c = {.ok = 3, .failed = 1, .pending = 2, .trees = 7, .run_id = 9, .total = -1};
    cnp_log_set_json(true);
    cli_summary_print(f, "drain", &c, CNP_EXIT_PENDING, false);
    cnp_log_set_json(false);
    rewind(f);
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    CHECK(buf[0] == '{' && strstr(buf, "\"event\":\"summary\"") && strstr(buf, "\"pending\":2") &&
              strstr(buf, "\"exit_code\":4") && strchr(buf, '\n') == buf + n - 1,
          "JSON summary: %s", buf);
    fclose(f);
    unlink(path);
}

/* A live line is on the terminal; a log line must clear it first. */
static void test_no_glued_lines(void)
{
    char path[] = "/tmp/canopy-test-progress-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    cli_session s;
    memset(&s, 0, sizeof s);
    s.live = true;
    s.shown = true;
    cnp_log_set_hook(NULL, NULL);
    fputs("12 images, 3.0 images/s", stderr); /* the live line, no newline */
    cli_session_test_attach(&s);
    LOG_WARN("test", "a log line");
    cnp_log_set_hook(NULL, NULL);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(path, "r");
    char buf[512] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    close(fd);
    unlink(path);
    const char *clear = strstr(buf, "\r\033[K");
    const char *logl = strstr(buf, "a log line");
    CHECK(clear && logl && clear < logl && !s.shown,
          "the log line was glued to the live line: %s", buf);
}

int main(void)
{
    test_text();
    test_summary_json();
    test_no_glued_lines();
    return TEST_RESULT();
}
