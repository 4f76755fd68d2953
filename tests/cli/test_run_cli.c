/* `canopy run` end to end through the real executable: outputs for every
 * NEON image, the OSBS_029 mask against an independent Otsu on BT.601 luma,
 * a corrupt file reported and counted while the others are processed, and the
 * exit codes of the contract. */
#include <math.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <png.h>

#include "canopy/buf.h"
#include "testutil.h"

static const char *g_canopy;
static char g_dir[] = "/tmp/canopy-test-run-XXXXXX";

/* Runs canopy with args, stdout+stderr to `log`; returns the exit code. */
static int run(const char *args, const char *log)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s > %s/%s 2>&1", g_canopy, args, g_dir, log);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *name)
{
    char path[1024];
    cnp_buf b = {0};
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    if (cnp_file_read(path, 0, &b, NULL) != CNP_OK || cnp_buf_append(&b, "", 1) != CNP_OK) {
        cnp_buf_free(&b);
        return NULL;
    }
    return (char *)b.data;
}

/* Reads a PNG with libpng's simplified API (a decoder path independent of
 * canopy's) into 8-bit gray or RGB. */
static uint8_t *read_png(const char *path, png_uint_32 format, uint32_t *w, uint32_t *h)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path))
        return NULL;
    img.format = format;
    uint8_t *buf = malloc(PNG_IMAGE_SIZE(img));
    if (!buf || !png_image_finish_read(&img, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&img);
        return NULL;
    }
    *w = img.width;
    *h = img.height;
    return buf;
}

static int textbook_otsu(const uint32_t hist[256])
{
    double total = 0, sum = 0, w0 = 0, sum0 = 0, best = -1;
    int best_t = 0;
    for (int i = 0; i < 256; i++) {
        total += hist[i];
        sum += (double)i * hist[i];
    }
    for (int t = 0; t < 256; t++) {
        w0 += hist[t];
        sum0 += (double)t * hist[t];
        double w1 = total - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double d = sum0 / w0 - (sum - sum0) / w1;
        double var = w0 * w1 * d * d;
        if (var > best) {
            best = var;
            best_t = t;
        }
    }
    return best_t;
}

static void test_osbs_mask(void)
{
    char path[1024];
    uint32_t w, h, mw, mh;
    uint8_t *rgb = read_png(CANOPY_NEON_DIR "/OSBS_029.png", PNG_FORMAT_RGB, &w, &h);
    snprintf(path, sizeof path, "%s/out/OSBS_029.mask.png", g_dir);
    uint8_t *mask = read_png(path, PNG_FORMAT_GRAY, &mw, &mh);
    CHECK(rgb && mask);
    if (!rgb || !mask)
        goto out;
    CHECK(w == mw && h == mh);
    size_t n = (size_t)w * h;
    uint8_t *luma = malloc(n);
    uint32_t hist[256] = {0};
    for (size_t i = 0; i < n; i++) {
        luma[i] = (uint8_t)lround(0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2]);
        hist[luma[i]]++;
    }
    int t = textbook_otsu(hist);
    /* The written mask must equal luma > t' for some t' within one step of t. */
    int matched = -1000;
    for (int dt = -1; dt <= 1 && matched == -1000; dt++) {
        size_t diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += (mask[i] != 0) != (luma[i] > t + dt);
        if (diff == 0)
            matched = dt;
    }
    CHECK_MSG(matched != -1000, "OSBS_029 mask does not match luma > %d +/- 1", t);
    /* trees.json names the same threshold and cover. */
    char *json = slurp("out/OSBS_029.trees.json");
    cJSON *doc = json ? cJSON_Parse(json) : NULL;
    CHECK(doc != NULL);
    if (doc) {
        cJSON *thr = cJSON_GetObjectItem(doc, "threshold");
        CHECK(cJSON_IsNumber(thr) && abs(thr->valueint - t) <= 1);
        size_t fg = 0;
        for (size_t i = 0; i < n; i++)
            fg += mask[i] != 0;
        cJSON *cover = cJSON_GetObjectItem(doc, "canopy_cover");
        CHECK(cJSON_IsNumber(cover) && fabs(cover->valuedouble - (double)fg / n) < 1e-4);
        CHECK(cJSON_GetObjectItem(doc, "width")->valueint == 400);
        CHECK(cJSON_IsArray(cJSON_GetObjectItem(doc, "trees")));
        CHECK(strcmp(cJSON_GetObjectItem(doc, "image")->valuestring, "OSBS_029.png") == 0);
    }
    cJSON_Delete(doc);
    free(json);
    free(luma);
out:
    free(rgb);
    free(mask);
}

static bool exists(const char *rel)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", g_dir, rel);
    return stat(path, &st) == 0 && st.st_size > 0;
}

static void test_neon_run(void)
{
    char args[2048];
    snprintf(args, sizeof args, "run --input %s --output %s/out --method otsu --channel luma",
             CANOPY_NEON_DIR, g_dir);
    int rc = run(args, "neon.log");
    char *log = slurp("neon.log");
    CHECK_MSG(rc == 0, "exit %d: %s", rc, log ? log : "");
    static const char *const stems[] = {"OSBS_029", "SOAP_061", "YELL_541000_west"};
    for (int i = 0; i < 3; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "out/%s.mask.png", stems[i]);
        CHECK_MSG(exists(rel), "%s missing", rel);
        snprintf(rel, sizeof rel, "out/%s.trees.json", stems[i]);
        CHECK_MSG(exists(rel), "%s missing", rel);
        snprintf(rel, sizeof rel, "out/%s.overlay.png", stems[i]);
        CHECK_MSG(exists(rel), "%s missing", rel);
        CHECK_MSG(log && strstr(log, stems[i]), "no line for %s", stems[i]);
    }
    CHECK(log && strstr(log, "3 images: 3 ok, 0 failed"));
    free(log);
    test_osbs_mask();
}

static void test_corrupt_input(void)
{
    char dir[1024], args[2048];
    snprintf(dir, sizeof dir, "%s/mixed", g_dir);
    mkdir(dir, 0755);
    /* A good image, a truncated one, a text file named .png and an empty file. */
    cnp_buf png = {0};
    CHECK(cnp_file_read(CANOPY_NEON_DIR "/SOAP_061.png", 0, &png, NULL) == CNP_OK);
    char path[1200];
    snprintf(path, sizeof path, "%s/good.png", dir);
    CHECK(cnp_file_write(path, png.data, png.len, NULL) == CNP_OK);
    snprintf(path, sizeof path, "%s/truncated.png", dir);
    CHECK(cnp_file_write(path, png.data, png.len / 3, NULL) == CNP_OK);
    snprintf(path, sizeof path, "%s/notpng.png", dir);
    CHECK(cnp_file_write(path, "hello, world\n", 13, NULL) == CNP_OK);
    snprintf(path, sizeof path, "%s/empty.png", dir);
    CHECK(cnp_file_write(path, "", 0, NULL) == CNP_OK);
    cnp_buf_free(&png);

    snprintf(args, sizeof args, "run --input %s --output %s/mixed-out --no-detector", dir, g_dir);
    int rc = run(args, "mixed.log");
    char *log = slurp("mixed.log");
    CHECK_MSG(rc == 3, "exit %d, want 3: %s", rc, log ? log : "");
    CHECK(exists("mixed-out/good.mask.png"));
    CHECK(exists("mixed-out/good.trees.json"));
    CHECK(!exists("mixed-out/truncated.mask.png"));
    CHECK(log && strstr(log, "4 images: 1 ok, 3 failed"));
    /* Each failure line names the file and a reason. */
    CHECK_MSG(log && strstr(log, "FAILED (format): ") && strstr(log, "/mixed/truncated.png: truncated"),
              "%s", log ? log : "");
    CHECK(log && strstr(log, "/mixed/notpng.png: not a PNG file"));
    CHECK(log && strstr(log, "/mixed/empty.png: not a PNG file"));
    free(log);
}

/* Creates dir/name as a copy of a NEON image. */
static void copy_neon(const char *dir, const char *name, const char *neon)
{
    char path[1200], src[1200];
    cnp_buf png = {0};
    mkdir(dir, 0755);
    snprintf(src, sizeof src, "%s/%s", CANOPY_NEON_DIR, neon);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(cnp_file_read(src, 0, &png, NULL) == CNP_OK);
    CHECK(cnp_file_write(path, png.data, png.len, NULL) == CNP_OK);
    cnp_buf_free(&png);
}

/* What a new user trips over (issue: `canopy run` as a user expects). */
static void test_user_expectations(void)
{
    char a[1100], b[1100], args[4096];
    snprintf(a, sizeof a, "%s/same-a", g_dir);
    snprintf(b, sizeof b, "%s/same-b", g_dir);
    copy_neon(a, "x.png", "SOAP_061.png");
    copy_neon(b, "x.png", "OSBS_029.png");
    /* Two inputs with the same name: refused up front, nothing written. */
    snprintf(args, sizeof args, "run --no-detector -i %s -i %s -o %s/same-out", a, b, g_dir);
    int rc = run(args, "same.log");
    char *log = slurp("same.log");
    CHECK_MSG(rc == 2 && log && strstr(log, "same-a/x.png") && strstr(log, "same-b/x.png") &&
                  strstr(log, "would both write x.*"),
              "exit %d: %s", rc, log ? log : "");
    CHECK(!exists("same-out/x.mask.png"));
    free(log);

    /* An output that is a file: one usage error, not a failure per image. */
    snprintf(args, sizeof args, "%s/a-file", g_dir);
    CHECK(cnp_file_write(args, "x", 1, NULL) == CNP_OK);
    snprintf(args, sizeof args, "run --no-detector -i %s -o %s/a-file", a, g_dir);
    rc = run(args, "file.log");
    log = slurp("file.log");
    CHECK_MSG(rc == 2 && log && strstr(log, "a-file: exists and is not a directory") &&
                  !strstr(log, "FAILED"),
              "exit %d: %s", rc, log ? log : "");
    free(log);

    /* A directory without an image is an error, and says what it skipped. */
    snprintf(args, sizeof args, "%s/no-images", g_dir);
    mkdir(args, 0755);
    snprintf(args, sizeof args, "%s/no-images/notes.txt", g_dir);
    CHECK(cnp_file_write(args, "x", 1, NULL) == CNP_OK);
    snprintf(args, sizeof args, "run --no-detector -i %s/no-images -o %s/o-empty", g_dir, g_dir);
    rc = run(args, "empty.log");
    log = slurp("empty.log");
    CHECK_MSG(rc == 2 && log && strstr(log, "no raster image") && strstr(log, "notes.txt"),
              "exit %d: %s", rc, log ? log : "");
    free(log);

    /* The missing option is named. */
    snprintf(args, sizeof args, "run --input %s", a);
    rc = run(args, "noout.log");
    log = slurp("noout.log");
    CHECK_MSG(rc == 2 && log && strstr(log, "--output DIR is missing"), "exit %d: %s", rc,
              log ? log : "");
    free(log);

    /* --no-detector: no overlay (nothing to draw). */
    snprintf(args, sizeof args, "run --no-detector -i %s -o %s/nodet", a, g_dir);
    CHECK(run(args, "nodet.log") == 0);
    CHECK(exists("nodet/x.mask.png") && exists("nodet/x.trees.json"));
    CHECK(!exists("nodet/x.overlay.png"));

    /* A grey image given to the RGB detector is processed with a warning. */
    char grey[1200];
    snprintf(grey, sizeof grey, "%s/grey", g_dir);
    mkdir(grey, 0755);
    snprintf(args, sizeof args, "cp %s/nodet/x.mask.png %s/g.png", g_dir, grey);
    CHECK(system(args) == 0);
    snprintf(args, sizeof args, "run -i %s -o %s/grey-out", grey, g_dir);
    rc = run(args, "grey.log");
    log = slurp("grey.log");
    CHECK_MSG(rc == 0 && log && strstr(log, "grey image: the tree detector expects RGB"),
              "exit %d: %s", rc, log ? log : "");
    free(log);
}

/* Memory is bounded in pixels, not images: with a 1 MPix budget the three
 * NEON images (0.16 + 0.16 + 0.72 MPix) never are in memory all at once. */
static void test_pixel_budget(void)
{
    char args[2048];
    snprintf(args, sizeof args, "run --no-detector -i %s -o %s/budget --set "
             "batch.max_inflight_mpix=1 --set log.level=debug", CANOPY_NEON_DIR, g_dir);
    int rc = run(args, "budget.log");
    char *log = slurp("budget.log");
    const char *p = log ? strstr(log, "decoded pixels in flight peaked at ") : NULL;
    double peak = p ? atof(p + strlen("decoded pixels in flight peaked at ")) : -1;
    CHECK_MSG(rc == 0 && p && peak > 0.7 && peak <= 1.0, "exit %d, peak %.2f MPix: %s", rc, peak,
              log ? log : "");
    CHECK(log && strstr(log, "3 images: 3 ok, 0 failed"));
    free(log);
}

static void test_usage_errors(void)
{
    CHECK(run("run --output /tmp/x", "u1.log") == 2);          /* no input */
    CHECK(run("run --input /nonexistent --output /tmp/x", "u2.log") == 2);
    CHECK(run("frobnicate", "u3.log") == 2);
    char args[1200];
    snprintf(args, sizeof args, "run -c %s/bad.ini --input %s --output %s/o", g_dir,
             CANOPY_NEON_DIR, g_dir);
    char ini[1100];
    snprintf(ini, sizeof ini, "%s/bad.ini", g_dir);
    CHECK(cnp_file_write(ini, "[batch]\nsize = many\n", 20, NULL) == CNP_OK);
    CHECK(run(args, "u4.log") == 2);
    char *log = slurp("u4.log");
    CHECK_MSG(log && strstr(log, "bad.ini:2: ") && strstr(log, "not an integer"), "%s",
              log ? log : "");
    free(log);
    /* The output directory is created with its missing parents. */
    snprintf(args, sizeof args, "run --no-detector --input %s/SOAP_061.png --output %s/new/nested",
             CANOPY_NEON_DIR, g_dir);
    CHECK(run(args, "nested.log") == 0);
    CHECK(exists("new/nested/SOAP_061.mask.png"));
    CHECK(run("run --help", "u5.log") == 0);
    CHECK(run("--help", "u6.log") == 0);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(g_dir))
        return 1;
    g_canopy = argv[1];
    test_usage_errors();
    test_user_expectations();
    test_pixel_budget();
    test_corrupt_input();
    test_neon_run();
    if (!g_failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            return 1;
    }
    return TEST_RESULT();
}
