/* The canopy executable as a new user meets it: every check runs the built
 * binary (CANOPY_BINARY) and looks at its exit code, stdout and stderr.
 *
 * - a malformed INI section header is named as such, at its line;
 * - eval scores only images it evaluated, names the one it could not read,
 *   and prints no score at all when none could be evaluated;
 * - devices says what it searched and what to install, not "see canopy
 *   devices";
 * - every command's --help lists its flags;
 * - -V and version work as --version does;
 * - canopy tune's usage errors, and a foreign tuning file refused by name;
 * - (issue 22) eval reads JPEG and GeoTIFF images, model import takes -c,
 *   the help texts name rasters and every exit code, bench writes JSON only
 *   where --json says and checks it first, submit against an unreachable
 *   endpoint exits 1. */
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "canopy/buf.h"
#include "cliutil.h"
#include "testutil.h"

static char g_dir[] = "/tmp/canopy-test-cli-misc-XXXXXX";

typedef cli_result run_result;
#define slurp cli_slurp
#define run_result_free cli_result_free

/* Runs `env ENV canopy ARGS` in g_dir (env may be ""). */
static run_result run(const char *env, const char *args)
{
    return cli_run(g_dir, CANOPY_BINARY, env, args);
}

static void write_file(const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
}

static void test_malformed_section(void)
{
    write_file("bad.ini", "; settings\n[batch\nsize = 4\n");
    run_result r = run("", "devices -c bad.ini");
    CHECK_MSG(r.code == 2, "exit %d", r.code);
    /* Before the fix: "bad.ini:2: unknown section []". */
    CHECK_MSG(strstr(r.err, "bad.ini:2: malformed section header '[batch'") != NULL, "%s",
              r.err);
    CHECK_MSG(strstr(r.err, "unknown section") == NULL, "%s", r.err);
    run_result_free(&r);
}

static void test_eval_missing_image(void)
{
    char args[2048];
    CHECK(mkdir("ann1", 0755) == 0 || errno == EEXIST);
    write_file("ann1/only-missing.csv",
               "image_path,xmin,ymin,xmax,ymax,label\nmissing.png,1,1,10,10,Tree\n");
    /* Only a missing image: an error naming it, no scores at all (before the
     * fix: an "overall ... 1.000 1.000 1.000" line and exit 1). */
    snprintf(args, sizeof args, "eval --cpu --images %s --annotations ann1", CANOPY_NEON_DIR);
    run_result r = run("", args);
    CHECK_MSG(r.code == 1, "exit %d", r.code);
    CHECK_MSG(r.out[0] == '\0', "stdout: %s", r.out);
    CHECK_MSG(strstr(r.err, "missing.png") != NULL, "%s", r.err);
    CHECK_MSG(strstr(r.err, "no image could be evaluated") != NULL, "%s", r.err);
    run_result_free(&r);

    /* The same with --json: no document. */
    snprintf(args, sizeof args, "eval --cpu --json --images %s --annotations ann1",
             CANOPY_NEON_DIR);
    r = run("", args);
    CHECK_MSG(r.code == 1, "exit %d", r.code);
    CHECK_MSG(r.out[0] == '\0', "stdout: %s", r.out);
    run_result_free(&r);

    /* One real image and one missing: scores over the real one only, the
     * missing one named on stderr and absent from the table, exit 3. */
    CHECK(mkdir("ann2", 0755) == 0 || errno == EEXIST);
    write_file("ann2/mixed.csv", "image_path,xmin,ymin,xmax,ymax,label\n"
                                 "OSBS_029.png,203,67,227,90,Tree\n"
                                 "OSBS_029.png,256,99,288,140,Tree\n"
                                 "gone.png,1,1,10,10,Tree\n");
    snprintf(args, sizeof args, "eval --cpu --images %s --annotations ann2", CANOPY_NEON_DIR);
    r = run("", args);
    CHECK_MSG(r.code == 3, "exit %d", r.code);
    CHECK_MSG(strstr(r.out, "OSBS_029.png") != NULL, "%s", r.out);
    CHECK_MSG(strstr(r.out, "gone.png") == NULL, "%s", r.out);
    /* The overall line counts the two annotated boxes of OSBS_029 only. */
    const char *overall = strstr(r.out, "overall (micro)");
    size_t truth = 0;
    CHECK_MSG(overall && sscanf(overall, "overall (micro) %zu", &truth) == 1 && truth == 2,
              "%s", r.out);
    CHECK_MSG(strstr(r.err, "gone.png") != NULL, "%s", r.err);
    run_result_free(&r);
}

static void test_devices_messages(void)
{
    /* A device selector that matches nothing: the error lists what was
     * searched and how to choose, and does not send the user to the very
     * command that failed (before: "(see `canopy devices`)"). */
    run_result r = run("CANOPY_OPENCL_PLATFORM= CANOPY_OPENCL_DEVICE=no-such-device-xyz",
                       "devices");
    CHECK_MSG(r.code == 1, "exit %d", r.code);
    CHECK_MSG(strstr(r.err, "see `canopy devices`") == NULL, "%s", r.err);
    if (strstr(r.err, "no OpenCL platform found") == NULL) {
        CHECK_MSG(strstr(r.err, "device = 'no-such-device-xyz'") != NULL, "%s", r.err);
        CHECK_MSG(strstr(r.err, "platform 0 '") != NULL, "%s", r.err);
        CHECK_MSG(strstr(r.err, "device 0 '") != NULL, "%s", r.err);
        CHECK_MSG(strstr(r.err, "CANOPY_OPENCL_DEVICE") != NULL, "%s", r.err);
    }
    run_result_free(&r);

    /* No OpenCL driver at all (the ICD loader reads OCL_ICD_VENDORS instead
     * of /etc/OpenCL/vendors): canopy runs without one (models on the CPU
     * backend, binarization in C) and says so, and what to install. */
    CHECK(mkdir("no-vendors", 0755) == 0 || errno == EEXIST);
    char env[1200];
    snprintf(env, sizeof env, "OCL_ICD_VENDORS=%s/no-vendors", g_dir);
    r = run(env, "devices");
    CHECK_MSG(r.code == 0, "exit %d: %s", r.code, r.err);
    CHECK_MSG(strstr(r.out, "no OpenCL platform found") != NULL, "%s", r.out);
    CHECK_MSG(strstr(r.out, "pocl-opencl-icd") != NULL, "%s", r.out);
    CHECK_MSG(strstr(r.out, "NVIDIA") != NULL, "%s", r.out);
    CHECK_MSG(strstr(r.out, "models: cpu backend") != NULL, "%s", r.out);
    run_result_free(&r);
    /* ... unless OpenCL is asked for: then the same message is the error. */
    snprintf(env, sizeof env, "CANOPY_DEVICE_BACKEND=opencl OCL_ICD_VENDORS=%s/no-vendors",
             g_dir);
    r = run(env, "devices");
    CHECK_MSG(r.code == 1, "exit %d", r.code);
    CHECK_MSG(strstr(r.err, "no OpenCL platform found") != NULL, "%s", r.err);
    CHECK_MSG(strstr(r.err, "pocl-opencl-icd") != NULL, "%s", r.err);
    CHECK_MSG(strstr(r.err, "see `canopy devices`") == NULL, "%s", r.err);
    run_result_free(&r);
}

/* `canopy CMD --help` exits 0 and lists each flag of `flags` (NULL-ended). */
static void check_help(const char *cmd, const char *const *flags)
{
    char args[256];
    snprintf(args, sizeof args, "%s --help", cmd);
    run_result r = run("", args);
    CHECK_MSG(r.code == 0, "%s: exit %d", args, r.code);
    CHECK_MSG(strstr(r.out, "options:\n") != NULL, "%s: no options section:\n%s", args, r.out);
    for (const char *const *f = flags; *f; f++) {
        char needle[64];
        snprintf(needle, sizeof needle, " %s", *f);
        CHECK_MSG(strstr(r.out, needle) != NULL, "%s does not list %s:\n%s", args, *f, r.out);
    }
    run_result_free(&r);
}

static void test_help_lists_flags(void)
{
    static const char *const submit[] = {"--config", "--scan-id", "--address-id",
                                         "--tree-types", "--set", "--help", NULL};
    static const char *const eval[] = {"--config", "--images", "--annotations", "--model",
                                       "--threshold", "--iou", "--cpu", "--json", "--set",
                                       "--help", NULL};
    static const char *const bench[] = {"--config", "--repeat", "--size", "--images", "--json",
                                        "--set", "--help", NULL};
    check_help("submit", submit);
    check_help("eval", eval);
    check_help("bench", bench);
}

/* canopy model import as a user meets it: usage errors exit 2, a checkpoint
 * that is not one exits 1 naming the file and the reason, and nothing is
 * written where the output would have gone. */
static void test_model_import_errors(void)
{
    run_result r = run("", "model import");
    CHECK_MSG(r.code == 2 && strstr(r.err, "needs one SRC and --output"), "exit %d: %s",
              r.code, r.err);
    run_result_free(&r);
    r = run("", "model import somewhere");
    CHECK_MSG(r.code == 2 && strstr(r.err, "--output"), "no --output: exit %d: %s", r.code,
              r.err);
    run_result_free(&r);
    r = run("", "model import nowhere --output m.cnw");
    CHECK_MSG(r.code == 1 && strstr(r.err, "nowhere"), "missing source: exit %d: %s", r.code,
              r.err);
    run_result_free(&r);
    /* A directory with a config.json and a safetensors that is not one. */
    CHECK(mkdir("ckpt", 0755) == 0 || errno == EEXIST);
    write_file("ckpt/config.json", "{\"num_classes\": 1, \"label_dict\": {\"Tree\": 0}}");
    write_file("ckpt/model.safetensors", "this is not a safetensors file at all");
    r = run("", "model import ckpt --output m.cnw");
    CHECK_MSG(r.code == 1 && strstr(r.err, "ckpt/model.safetensors"), "bad file: exit %d: %s",
              r.code, r.err);
    run_result_free(&r);
    struct stat st;
    CHECK_MSG(stat("m.cnw", &st) != 0, "a refused import left m.cnw behind");
    r = run("", "model frobnicate");
    CHECK_MSG(r.code == 2, "unknown subcommand: exit %d: %s", r.code, r.err);
    run_result_free(&r);
}

/* canopy tune's usage errors, and a tuning file for another device stopping
 * a start with a message naming it (devices shows what it applied). */
static void test_tune_cli(void)
{
    static const char *const tune[] = {"--config", "--budget", "--model", "--output", "--set",
                                       "--help", NULL};
    check_help("tune", tune);
    run_result r = run("", "tune --budget abc");
    CHECK_MSG(r.code == 2 && strstr(r.err, "--budget 'abc'"), "exit %d: %s", r.code, r.err);
    run_result_free(&r);
    r = run("", "tune --budget 5 extra");
    CHECK_MSG(r.code == 2 && strstr(r.err, "'extra'"), "exit %d: %s", r.code, r.err);
    run_result_free(&r);
    r = run("CANOPY_OPENCL_TUNING_FILE=off", "tune --budget 5 --model nowhere.cnw");
    CHECK_MSG((r.code == 2 && strstr(r.err, "nowhere.cnw")) ||
                  (r.code == 1 && strstr(r.err, "OpenCL")),
              "missing model: exit %d: %s", r.code, r.err);
    run_result_free(&r);
    write_file("foreign.txt", "format 1\ndevice Some Other GPU\ndriver 1.0\nclblast 1.5.3\n");
    r = run("CANOPY_OPENCL_TUNING_FILE=foreign.txt", "devices");
    CHECK_MSG(r.code == 1 && (strstr(r.err, "[opencl] tuning_file: tuning file foreign.txt") ||
                              strstr(r.err, "OpenCL")),
              "foreign tuning file: exit %d: %s", r.code, r.err);
    CHECK_MSG(!strstr(r.err, "OpenCL") || r.code == 1, "%s", r.err);
    if (strstr(r.err, "tuning_file"))
        CHECK_MSG(strstr(r.err, "Some Other GPU") && strstr(r.err, "canopy tune"), "%s", r.err);
    run_result_free(&r);
    r = run("CANOPY_OPENCL_TUNING_FILE=off", "devices");
    CHECK_MSG(r.code != 0 || strstr(r.out, "CLBlast tuning: none"), "exit %d: %s", r.code,
              r.out);
    run_result_free(&r);
    /* --budget holds: CLBlast's tuners cannot be stopped inside, so a
     * sample still running at the end of the budget is killed (before,
     * 10 s took 389 s here). Generous: 5 s must end within 60 s. */
    double t0 = cnp_now();
    r = run("CANOPY_OPENCL_TUNING_FILE=off", "tune --budget 5 --output tuned.txt");
    double took = cnp_now() - t0;
    CHECK_MSG((r.code == 0 && strstr(r.out, "wrote")) || (r.code == 1 && strstr(r.err, "OpenCL")),
              "tune --budget 5: exit %d: %s %s", r.code, r.out, r.err);
    CHECK_MSG(took < 60, "tune --budget 5 took %.0f s: %s", took, r.out);
    run_result_free(&r);
}

static void test_version(void)
{
    run_result ref = run("", "--version");
    CHECK_MSG(ref.code == 0 && strncmp(ref.out, "canopy ", 7) == 0, "exit %d: %s", ref.code,
              ref.out);
    static const char *const spellings[] = {"-V", "version"};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        run_result r = run("", spellings[i]);
        CHECK_MSG(r.code == 0, "canopy %s: exit %d: %s", spellings[i], r.code, r.err);
        CHECK_MSG(strcmp(r.out, ref.out) == 0, "canopy %s printed '%s'", spellings[i], r.out);
        run_result_free(&r);
    }
    run_result_free(&ref);
}

/* Before: "cannot read OSBS_029.jpg: not a PNG file (bad signature)". */
static void test_eval_rasters(void)
{
    char cmd[2048];
    CHECK(mkdir("rasters", 0755) == 0 || errno == EEXIST);
    snprintf(cmd, sizeof cmd,
             "cd %s && gdal_translate -q -of JPEG -co QUALITY=95 %s/OSBS_029.png "
             "rasters/OSBS_029.jpg && gdal_translate -q -of GTiff %s/OSBS_029.png "
             "rasters/OSBS_029.tif",
             g_dir, CANOPY_NEON_DIR, CANOPY_NEON_DIR);
    CHECK_FATAL(system(cmd) == 0, "%s", cmd);
    CHECK(mkdir("ann3", 0755) == 0 || errno == EEXIST);
    write_file("ann3/rasters.csv", "image_path,xmin,ymin,xmax,ymax,label\n"
                                   "OSBS_029.jpg,203,67,227,90,Tree\n"
                                   "OSBS_029.tif,203,67,227,90,Tree\n"
                                   "OSBS_029.tif,256,99,288,140,Tree\n");
    run_result r = run("", "eval --cpu --images rasters --annotations ann3");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.out, "OSBS_029.jpg") && strstr(r.out, "OSBS_029.tif"), "%s", r.out);
    const char *overall = strstr(r.out, "overall (micro)");
    size_t truth = 0;
    CHECK(overall && sscanf(overall, "overall (micro) %zu", &truth) == 1 && truth == 3, "%s",
          r.out);
    run_result_free(&r);
}

/* Before: "canopy model import: invalid option -- 'c'". */
static void test_model_import_config(void)
{
    write_file("good.ini", "[log]\nlevel = warn\n");
    run_result r = run("", "model import -c good.ini nowhere --output m.cnw");
    CHECK(r.code == 1 && strstr(r.err, "nowhere") && !strstr(r.err, "invalid option"),
          "exit %d: %s", r.code, r.err);
    run_result_free(&r);
    write_file("typo.ini", "[log]\nlevle = warn\n");
    r = run("", "model import --config typo.ini nowhere --output m.cnw");
    CHECK(r.code == 2 && strstr(r.err, "typo.ini:2: unknown key 'levle'"), "exit %d: %s",
          r.code, r.err);
    run_result_free(&r);
    static const char *const flags[] = {"--config", "--output", "--version", "--set", "--help",
                                        NULL};
    check_help("model import", flags);
}

/* Help texts: rasters, not PNGs; every exit code; no build-machine path. */
static void test_help_texts(void)
{
    run_result r = run("", "--help");
    CHECK(r.code == 0, "exit %d", r.code);
    static const char *const stale[] = {"every PNG", "upload PNGs", "(db migrate)", NULL};
    for (const char *const *p = stale; *p; p++)
        CHECK(strstr(r.out, *p) == NULL, "canopy --help says '%s':\n%s", *p, r.out);
    CHECK(strstr(r.out, "4 (drain)") && strstr(r.out, "5 (run)"), "%s", r.out);
    run_result_free(&r);
    static const struct {
        const char *cmd, *stale;
    } helps[] = {{"reprocess --help", "every .png"},
                 {"drain --help", "each PNG"},
                 {"drain --help", "<key>.mask.png"},
                 {"eval --help", "names a PNG"},
                 {"bench --help", CANOPY_SOURCE_DIR}};
    for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++) {
        r = run("", helps[i].cmd);
        CHECK(r.code == 0 && strstr(r.out, helps[i].stale) == NULL, "canopy %s: '%s':\n%s",
              helps[i].cmd, helps[i].stale, r.out);
        run_result_free(&r);
    }
    r = run("", "run --help");
    CHECK(strstr(r.out, "5 interrupted") && strstr(r.out, "--skip-existing"), "%s", r.out);
    run_result_free(&r);
}

/* Before: bench wrote bench/results/bench.json under the working directory
 * on every run, and failed only after running everything when it could
 * not. */
static void test_bench_json(void)
{
    CHECK(mkdir("bench", 0755) == 0 || errno == EEXIST);
    CHECK(mkdir("bench/results", 0755) == 0 || errno == EEXIST);
    write_file("bench/results/bench.json", "tracked\n");
    run_result r = run("", "bench --repeat 1 --size 64");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.err, "tests/data/neon: no such directory") != NULL, "%s", r.err);
    run_result_free(&r);
    char *kept = slurp("bench/results/bench.json");
    CHECK(strcmp(kept, "tracked\n") == 0, "bench overwrote bench/results/bench.json");
    free(kept);
    r = run("", "bench --repeat 1 --size 64 --json no-such-dir/b.json");
    CHECK(r.code == 2 && strstr(r.err, "--json no-such-dir/b.json: directory no-such-dir "
                                       "does not exist"),
          "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.out, "MPix/s") == NULL, "benchmarks ran before the check:\n%s", r.out);
    run_result_free(&r);
    r = run("", "bench --repeat 1 --size 64 --json b.json");
    CHECK(r.code == 0, "exit %d: %s", r.code, r.err);
    char *json = slurp("b.json");
    CHECK(strstr(json, "\"results\"") != NULL, "%s", json);
    free(json);
    run_result_free(&r);
}

/* Before: every upload failed "transiently", counted as failed images: exit 3. */
static void test_submit_unreachable(void)
{
    write_file("down.ini", "[aws]\nregion = us-east-1\nendpoint_url = http://127.0.0.1:1\n"
                           "access_key_id = AKIDEXAMPLE\nsecret_access_key = x\n"
                           "max_attempts = 1\nconnect_timeout = 2\n"
                           "[input]\nbucket = in\n"
                           "queue_url = http://127.0.0.1:1/000000000000/in\n");
    run_result r = run("", "submit -c down.ini " CANOPY_NEON_DIR "/OSBS_029.png");
    CHECK(r.code == 1, "exit %d: %s", r.code, r.err);
    CHECK(strstr(r.err, "http://127.0.0.1:1") != NULL, "%s", r.err);
    run_result_free(&r);
}

int main(void)
{
    if (!mkdtemp(g_dir) || chdir(g_dir) != 0)
        return 1;
    test_malformed_section();
    test_eval_missing_image();
    test_devices_messages();
    test_help_lists_flags();
    test_model_import_errors();
    test_tune_cli();
    test_version();
    test_eval_rasters();
    test_model_import_config();
    test_help_texts();
    test_bench_json();
    test_submit_unreachable();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        return 1;
    return TEST_RESULT();
}
