/* `canopy run` as a batch user drives it (issue 22), through the real
 * executable:
 *
 * - more than 64 positional inputs are refused (before: 64 processed, exit 0);
 * - --threshold without --method fixed is refused (before: ignored);
 * - with [log] format = json, stdout is JSON only, one object per image;
 * - a second run with --input DIR --output DIR does not take the first
 *   run's outputs as inputs (before: SOAP_061.mask.mask.png);
 * - SIGINT with inputs left exits 5 (before: 0), and --skip-existing then
 *   processes exactly the inputs whose outputs are not complete. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cliutil.h"
#include "testutil.h"

static const char *g_canopy;
static char g_dir[] = "/tmp/canopy-test-run-batch-XXXXXX";

typedef cli_result result;
#define slurp cli_slurp
#define result_free cli_result_free

/* Runs `cd g_dir && env ENV canopy ARGS`, stdout and stderr kept apart. */
static result run(const char *env, const char *args)
{
    return cli_run(g_dir, g_canopy, env, args);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* dir/<prefix>NN.png for NN < n, each a link to a NEON image. */
static void make_inputs(const char *dir, const char *prefix, int n, const char *neon)
{
    CHECK_FATAL(mkdir(dir, 0755) == 0 || errno == EEXIST);
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s%02d.png", dir, prefix, i);
        CHECK_FATAL(symlink(neon, path) == 0 || errno == EEXIST, "%s", path);
    }
}

/* 65 distinct files (distinct output names: the refusal must be the count). */
static void test_too_many_positional(void)
{
    char args[16384] = "run --no-detector --output many-out";
    make_inputs("many", "m", 65, CANOPY_NEON_DIR "/OSBS_029.png");
    for (int i = 0; i < 65; i++)
        snprintf(args + strlen(args), sizeof args - strlen(args), " many/m%02d.png", i);
    result r = run("", args);
    CHECK(r.code == 2, "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.err, "65 inputs given, at most 64") != NULL, "%s", r.err);
    CHECK(!exists("many-out"), "refused, yet the output directory was made");
    result_free(&r);
}

static void test_threshold_needs_fixed(void)
{
    result r = run("", "run --no-detector --threshold 50 --input " CANOPY_NEON_DIR
                       "/OSBS_029.png --output thr-out");
    CHECK(r.code == 2, "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.err, "--threshold applies to --method fixed only (the method is otsu)"),
          "%s", r.err);
    result_free(&r);
    r = run("", "run --no-detector --method fixed --threshold 50 --input " CANOPY_NEON_DIR
                "/OSBS_029.png --output thr-out");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    char *json = slurp("thr-out/OSBS_029.trees.json");
    cJSON *doc = cJSON_Parse(json);
    const cJSON *t = cJSON_GetObjectItem(doc, "threshold");
    CHECK(cJSON_IsNumber(t) && t->valueint == 50, "%s", json);
    cJSON_Delete(doc);
    free(json);
    result_free(&r);
}

static void test_json_stdout(void)
{
    result r = run("CANOPY_LOG_FORMAT=json", "run --no-detector --input " CANOPY_NEON_DIR
                                             " --output json-out");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    int images = 0, summaries = 0, lines = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        cJSON *o = cJSON_Parse(line);
        CHECK(cJSON_IsObject(o), "not JSON on stdout: '%s'", line);
        const cJSON *ev = cJSON_GetObjectItem(o, "event");
        if (cJSON_IsString(ev) && strcmp(ev->valuestring, "image") == 0) {
            images++;
            CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")), "%s", line);
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "width")), "%s", line);
            CHECK(cJSON_IsNumber(cJSON_GetObjectItem(o, "canopy_cover")), "%s", line);
        } else if (cJSON_IsString(ev) && strcmp(ev->valuestring, "summary") == 0) {
            summaries++;
        }
        cJSON_Delete(o);
    }
    CHECK(images == 3 && summaries == 1 && lines == 4, "%d images, %d summaries, %d lines",
          images, summaries, lines);
    result_free(&r);
}

static void test_own_outputs_not_inputs(void)
{
    make_inputs("same", "img", 1, CANOPY_NEON_DIR "/SOAP_061.png");
    result r = run("", "run --no-detector --input same --output same");
    CHECK(r.code == 0, "first: exit %d: %s", r.code, r.err);
    result_free(&r);
    CHECK(exists("same/img00.mask.png"));
    r = run("", "run --no-detector --input same --output same");
    CHECK(r.code == 0, "second: exit %d: %s", r.code, r.err);
    CHECK(count_lines(r.out, "same/img") == 1, "%s", r.out);
    CHECK(!exists("same/img00.mask.mask.png"), "the first run's mask was taken as input");
    CHECK(strstr(r.err, "skipped 2 outputs of canopy") != NULL, "%s", r.err);
    result_free(&r);
    /* Named explicitly, an output-named file elsewhere is still an input. */
    r = run("", "run --no-detector --input same/img00.mask.png --output other");
    CHECK(r.code == 0, "explicit: exit %d: %s", r.code, r.err);
    CHECK(exists("other/img00.mask.mask.png"));
    result_free(&r);
}

/* Starts canopy ARGV with stdout to a pipe; SIGINT once the first image
 * line arrives. Returns the exit code. */
static int run_interrupted(char *const argv[])
{
    int fds[2];
    CHECK_FATAL(pipe(fds) == 0);
    pid_t pid = fork();
    CHECK_FATAL(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (chdir(g_dir) != 0)
            _exit(127);
        execv(g_canopy, argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[4096];
    bool sent = false;
    while (fgets(line, sizeof line, f)) {
        if (!sent && strstr(line, "stop/")) {
            kill(pid, SIGINT);
            sent = true;
        }
    }
    fclose(f);
    int st;
    CHECK_FATAL(waitpid(pid, &st, 0) == pid);
    CHECK(sent, "no image line came before the end");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_done(const char *dir, const char *prefix, int n)
{
    int done = 0;
    for (int i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/%s%02d.trees.json", g_dir, dir, prefix, i);
        done += exists(path);
    }
    return done;
}

static void test_interrupt_and_resume(void)
{
    enum { N = 12 };
    make_inputs("stop", "s", N, CANOPY_NEON_DIR "/OSBS_029.png");
    char *argv[] = {(char *)g_canopy, "run", "--input", "stop", "--output", "stop-out",
                    "--set", "batch.size=1", NULL};
    int code = run_interrupted(argv);
    CHECK(code == 5, "interrupted run: exit %d", code);
    int done = count_done("stop-out", "s", N);
    CHECK(done >= 1 && done < N, "%d of %d done", done, N);

    result r = run("", "run --skip-existing --input stop --output stop-out");
    CHECK(r.code == 0, "resume: exit %d: %s", r.code, r.err);
    char want[128];
    snprintf(want, sizeof want, "--skip-existing: %d of %d images already done", done, N);
    CHECK(strstr(r.err, want) != NULL, "no '%s' in %s", want, r.err);
    CHECK((int)count_lines(r.out, "stop/s") == N - done, "%d done before:\n%s", done, r.out);
    CHECK(count_done("stop-out", "s", N) == N);
    result_free(&r);
}

/* What --skip-existing counts as complete: a trees.json that parses and
 * names the same model, and a mask. */
static void test_skip_existing_rules(void)
{
    make_inputs("rules", "r", 3, CANOPY_NEON_DIR "/SOAP_061.png");
    result r = run("", "run --no-detector --input rules --output rules-out");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    result_free(&r);
    r = run("", "run --no-detector --skip-existing --input rules --output rules-out");
    CHECK(r.code == 0 && count_lines(r.out, "rules/r") == 0, "exit %d: %s", r.code, r.out);
    result_free(&r);
    /* r00 lost its mask, r01's trees.json is cut short: both again. */
    CHECK(unlink("rules-out/r00.mask.png") == 0);
    FILE *f = fopen("rules-out/r01.trees.json", "w");
    CHECK_FATAL(f != NULL);
    fputs("{\"image\": \"r01.png\", \"model\": ", f);
    fclose(f);
    r = run("", "run --no-detector --skip-existing --input rules --output rules-out");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    CHECK(count_lines(r.out, "rules/r") == 2 && strstr(r.out, "rules/r00.png") &&
              strstr(r.out, "rules/r01.png"),
          "%s", r.out);
    result_free(&r);
    /* Outputs without a detector are not complete for a run with one. */
    r = run("", "run --skip-existing --input rules/r02.png --output rules-out");
    CHECK(r.code == 0 && count_lines(r.out, "rules/r02") == 1, "exit %d: %s", r.code, r.out);
    result_free(&r);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CANOPY\n", argv[0]);
        return 2;
    }
    g_canopy = argv[1];
    if (!mkdtemp(g_dir) || chdir(g_dir) != 0)
        return 1;
    test_too_many_positional();
    test_threshold_needs_fixed();
    test_json_stdout();
    test_own_outputs_not_inputs();
    test_interrupt_and_resume();
    test_skip_existing_rules();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (g_failures == 0 && system(cmd) != 0)
        return 1;
    return TEST_RESULT();
}
