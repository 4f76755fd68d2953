/* Matching predictions to annotations (exact precision/recall on hand-made
 * boxes), the annotation CSV reader, and `canopy eval` end to end on a NEON
 * image whose annotations are the reference's own predictions. */
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "canopy/buf.h"
#include "canopy/detect.h"
#include "cli/commands.h"
#include "detect/cnw_util.h"
#include "detect/test_detect_common.h"

/* A crown (no box of its own). */
#define CROWN(cx, cy, r, s) {.x = (cx), .y = (cy), .radius = (r), .score = (s)}

static void test_iou(void)
{
    det_box a = {0, 0, 10, 10}, b = {5, 0, 15, 10}, c = {20, 20, 30, 30}, e = {3, 3, 3, 3};
    CHECK(det_box_iou(&a, &a) == 1.0);
    CHECK(fabs(det_box_iou(&a, &b) - 50.0 / 150.0) < 1e-12);
    CHECK(det_box_iou(&a, &c) == 0.0);
    CHECK(det_box_iou(&e, &e) == 0.0);
}

static void test_match(void)
{
    det_box truth[] = {
        {0, 0, 10, 10},      /* A */
        {20, 0, 30, 10},     /* B */
        {100, 100, 110, 110}, /* C */
        {50, 0, 60, 10},     /* D */
        {200, 200, 210, 210}, /* E */
    };
    cnp_tree pred[] = {
        CROWN(5, 5, 5, 0.90f),     /* A, IoU 1 */
        CROWN(6, 5, 5, 0.80f),     /* A again (0.818): A is taken, a false positive */
        CROWN(25, 6, 5, 0.70f),    /* B, IoU 90/110 */
        CROWN(104, 104, 4, 0.95f), /* C, IoU 64/100 */
        CROWN(300, 300, 5, 0.50f), /* nothing */
        CROWN(60, 5, 5, 0.99f),    /* D at IoU 50/150 < 0.4 */
        CROWN(205, 205, 5, 0.60f), /* E perfectly, but after Y */
        CROWN(206, 205, 5, 0.65f), /* Y: E at 0.818, higher score, takes it */
    };
    det_match_stats s;
    det_match(pred, 8, truth, 5, 0.4, &s);
    CHECK(s.predictions == 8 && s.annotations == 5 && s.matched == 4);
    CHECK(s.precision == 0.5);
    CHECK(s.recall == 0.8);
    CHECK(fabs(s.f1 - 2 * 0.5 * 0.8 / 1.3) < 1e-12);
    CHECK(s.count_error == 3);
    /* At IoU 0.3 D matches too. */
    det_match(pred, 8, truth, 5, 0.3, &s);
    CHECK(s.matched == 5 && s.recall == 1.0);
    /* Empty cases. */
    det_match(NULL, 0, truth, 5, 0.4, &s);
    CHECK(s.matched == 0 && s.precision == 1.0 && s.recall == 0.0 && s.f1 == 0.0 &&
          s.count_error == -5);
    det_match(pred, 8, NULL, 0, 0.4, &s);
    CHECK(s.precision == 0.0 && s.recall == 1.0 && s.count_error == 8);
}

static void test_csv(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/a.csv", dir);
    const char *text = "image_path,xmin,ymin,xmax,ymax,label\n"
                       "one.png,10,20,29,39,Tree\n"
                       "two.png,0,0,4,4,Dead\r\n"
                       "one.png,1.5,2,3,4,Tree\n";
    cnp_err err;
    REQUIRE(cnp_file_write(path, text, strlen(text), &err) == CNP_OK);
    det_box *b = NULL;
    size_t n = 0;
    REQUIRE(det_annotations_read(path, "one.png", &b, &n, &err) == CNP_OK);
    CHECK(n == 2);
    CHECK(b[0].x0 == 10 && b[0].y0 == 20 && b[0].x1 == 30 && b[0].y1 == 40);
    CHECK(b[1].x0 == 1.5f && b[1].x1 == 4);
    free(b);
    REQUIRE(det_annotations_read(path, NULL, &b, &n, &err) == CNP_OK);
    CHECK(n == 3);
    free(b);
    char **names = NULL;
    REQUIRE(det_annotations_images(path, &names, &n, &err) == CNP_OK);
    CHECK(n == 2 && strcmp(names[0], "one.png") == 0 && strcmp(names[1], "two.png") == 0);
    det_names_free(names, n);
    const char *bad = "image_path,xmin,ymin,xmax,ymax,label\none.png,10,20,x,39,Tree\n";
    REQUIRE(cnp_file_write(path, bad, strlen(bad), &err) == CNP_OK);
    CHECK(det_annotations_read(path, NULL, &b, &n, &err) == CNP_ERR_FORMAT);
    CHECK_MSG(strstr(err.msg, "a.csv:2:") != NULL, "%s", err.msg);
    unlink(path);
}

/* Runs `canopy eval` in-process with stdout captured into a file. */
static int run_eval(char **argv, int argc, const char *out_path)
{
    fflush(stdout);
    int saved = dup(1);
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    REQUIRE(saved >= 0 && fd >= 0);
    dup2(fd, 1);
    close(fd);
    int rc = cmd_eval(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static void test_cli(const char *dir)
{
    /* Annotations = the reference's own trees on OSBS_029 (threshold 0.9):
     * evaluating the same model must give precision = recall = 1. */
    /* A random model whose radii are crown-sized (log_radius bias + 2.5). */
    tw_model tm;
    tw_model_random(&tm, "eval-test-1", 4, tw_tiny_layers, tw_tiny_n_layers, 11);
    tm.tensors[tm.n_tensors - 1].data[1] += 2.5f;
    cnp_buf mb = {0};
    tw_model_write(&tm, &mb);
    tw_model_free(&tm);
    char model[512];
    snprintf(model, sizeof model, "%s/model.cnw", dir);
    tw_write_file(model, mb.data, mb.len);
    cnp_buf_free(&mb);
    det_model *m = NULL;
    cnp_image img = {0};
    cnp_err err;
    REQUIRE(det_model_load(model, &m, &err) == CNP_OK);
    REQUIRE(img_png_read_file(CANOPY_NEON_DIR "/OSBS_029.png", 0, &img, &err) == CNP_OK);
    cnp_tree *t = NULL;
    size_t n = 0;
    /* As canopy eval runs it: NMS at the model's IoU. */
    REQUIRE(det_ref_run(m, &img, 0.9f, (float)det_model_nms_iou(m), 1024, 96, &t, &n, &err) ==
            CNP_OK);
    REQUIRE(n > 10);
    cnp_buf csv = {0};
    cnp_buf_printf(&csv, "image_path,xmin,ymin,xmax,ymax,label\n");
    /* Trees of radius >= 1 (most) become annotations (box = centre +/- radius, with
     * inclusive max): each has an identical prediction. */
    det_box *boxes = malloc(n * sizeof *boxes);
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i].radius < 1)
            continue;
        cnp_buf_printf(&csv, "OSBS_029.png,%.4f,%.4f,%.4f,%.4f,Tree\n", t[i].x - t[i].radius,
                       t[i].y - t[i].radius, t[i].x + t[i].radius - 1, t[i].y + t[i].radius - 1);
        boxes[nb++] = (det_box){t[i].x - t[i].radius, t[i].y - t[i].radius,
                                t[i].x + t[i].radius, t[i].y + t[i].radius};
    }
    REQUIRE(nb > 5);
    det_match_stats want;
    det_match(t, n, boxes, nb, 0.4, &want);
    free(boxes);
    char path[512], out[512];
    snprintf(path, sizeof path, "%s/OSBS_029.csv", dir);
    snprintf(out, sizeof out, "%s/eval.json", dir);
    REQUIRE(cnp_file_write(path, csv.data, csv.len, &err) == CNP_OK);
    char *argv[] = {"eval", "--images", CANOPY_NEON_DIR, "--annotations", (char *)dir,
                    "--model", model, "--cpu",
                    "--json", "--threshold", "0.9", "--set", "detector.tile=1024", NULL};
    int rc = run_eval(argv, 13, out);
    CHECK(rc == 0);
    cnp_buf doc = {0};
    REQUIRE(cnp_file_read(out, 0, &doc, &err) == CNP_OK);
    cJSON *j = cJSON_ParseWithLength((const char *)doc.data, doc.len);
    REQUIRE(j);
    const cJSON *o = cJSON_GetObjectItem(j, "overall");
    CHECK(cJSON_GetObjectItem(o, "predictions")->valueint == (int)n);
    CHECK(cJSON_GetObjectItem(o, "annotations")->valueint == (int)nb);
    CHECK(cJSON_GetObjectItem(o, "matched")->valueint == (int)want.matched);
    CHECK(want.recall > 0.9);
    CHECK(fabs(cJSON_GetObjectItem(o, "recall")->valuedouble - want.recall) < 1e-12);
    CHECK(fabs(cJSON_GetObjectItem(o, "precision")->valuedouble - want.precision) < 1e-12);
    CHECK(cJSON_GetObjectItem(o, "count_error")->valueint == (int)(n - nb));
    CHECK(strcmp(cJSON_GetObjectItem(j, "model")->valuestring, "eval-test-1") == 0);
    cJSON_Delete(j);
    cnp_buf_free(&doc);
    /* Usage errors exit 2. */
    char *bad[] = {"eval", "--images", CANOPY_NEON_DIR, NULL};
    CHECK(run_eval(bad, 3, out) == CNP_EXIT_USAGE);
    unlink(out);
    unlink(path);
    unlink(model);
    cnp_buf_free(&csv);
    free(t);
    cnp_image_free(&img);
    det_model_free(m);
}

int main(void)
{
    char dir[] = "/tmp/test_detect_eval.XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    test_iou();
    test_match();
    test_csv(dir);
    test_cli(dir);
    rmdir(dir);
    return test_result("test_detect_eval");
}
