/* canopy eval with a classifier (issue 21): the confusion matrix of tree
 * types over matched prediction/annotation pairs. A constant CropModel
 * (tests/cli/cropmodel_util.h: every tree "dead") is imported; canopy run
 * writes OSBS_029's trees as DeepForest's CSV, which becomes the annotations
 * with a known type per box (alive, dead, snag in turn) and two 1-pixel
 * boxes no tree matches. Then, on the device side and with --cpu:
 *  - --json: "types" holds the exact confusion (each annotated type's row
 *    all in the dead column, the unmatched boxes nowhere) and per-type
 *    precision/recall (null where nothing was predicted);
 *  - the text table prints the same rows;
 *  - the types in DeepForest's `label` column are read the same way;
 *  - label "Tree" (no types): no matrix, a note on stderr;
 *  - a type not among the classifier's is refused naming file, line, value. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cropmodel_util.h"
#include "cliutil.h"
#include "testutil.h"

static const char *g_canopy;
static char g_dir[] = "/tmp/canopy-test-eval-types-XXXXXX";
static const char *const TYPES[3] = {"alive", "dead", "snag"};

static cli_result run(const char *args)
{
    return cli_run(g_dir, g_canopy, "", args);
}

/* The annotations: every tree of run's CSV with type i % 3 (in column
 * `type` after `label` Tree, or in `label`), then two 1-pixel boxes. */
static int write_annotations(const char *dir, const char *csv, bool in_label, size_t n[3])
{
    CHECK_FATAL(mkdir(dir, 0755) == 0 || errno == EEXIST);
    char path[256];
    snprintf(path, sizeof path, "%s/osbs.csv", dir);
    FILE *f = fopen(path, "w");
    CHECK_FATAL(f != NULL);
    fputs(in_label ? "image_path,xmin,ymin,xmax,ymax,label\n"
                   : "image_path,xmin,ymin,xmax,ymax,label,type\n",
          f);
    int rows = 0;
    const char *line = strchr(csv, '\n');
    for (; line && line[1]; line = strchr(line + 1, '\n')) {
        double v[4];
        if (sscanf(line + 1, "OSBS_029.png,%lf,%lf,%lf,%lf,", &v[0], &v[1], &v[2], &v[3]) != 4)
            break;
        const char *t = TYPES[rows % 3];
        n[rows % 3]++;
        fprintf(f, "OSBS_029.png,%g,%g,%g,%g,%s%s\n", v[0], v[1], v[2] - 1, v[3] - 1,
                in_label ? "" : "Tree,", t);
        rows++;
    }
    fprintf(f, "OSBS_029.png,0,0,0,0,%s\nOSBS_029.png,399,399,399,399,%s\n",
            in_label ? "snag" : "Tree,snag", in_label ? "alive" : "Tree,alive");
    fclose(f);
    return rows;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* --json's "types": rows annotated, every pair predicted dead. */
static void check_json(const char *what, const char *out, int trees, const size_t n[3])
{
    cJSON *doc = cJSON_Parse(out);
    CHECK_FATAL(doc != NULL, "%s: not JSON: %s", what, out);
    const cJSON *all = cJSON_GetObjectItem(doc, "overall");
    CHECK(num(all, "matched") == trees && num(all, "annotations") == trees + 2, "%s: %s", what,
          out);
    const cJSON *t = cJSON_GetObjectItem(doc, "types");
    CHECK_FATAL(t != NULL, "%s: no \"types\": %s", what, out);
    CHECK(num(t, "pairs") == trees && num(t, "correct") == (double)n[1], "%s: pairs %g correct %g",
          what, num(t, "pairs"), num(t, "correct"));
    CHECK(fabs(num(t, "accuracy") - (double)n[1] / trees) < 1e-12, "%s: accuracy", what);
    const cJSON *cm = cJSON_GetObjectItem(t, "confusion");
    const cJSON *per = cJSON_GetObjectItem(t, "per_type");
    CHECK_FATAL(cJSON_GetArraySize(cm) == 3 && cJSON_GetArraySize(per) == 3, "%s", what);
    for (int a = 0; a < 3; a++) {
        CHECK(strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(t, "labels"), a)->valuestring,
                     TYPES[a]) == 0, "%s: label %d", what, a);
        for (int p = 0; p < 3; p++) {
            double got = cJSON_GetArrayItem(cJSON_GetArrayItem(cm, a), p)->valuedouble;
            double want = p == 1 ? (double)n[a] : 0;
            CHECK(got == want, "%s: confusion[%s][%s] = %g, want %g", what, TYPES[a], TYPES[p],
                  got, want);
        }
        const cJSON *o = cJSON_GetArrayItem(per, a);
        CHECK(num(o, "annotated") == (double)n[a] && num(o, "predicted") == (a == 1 ? trees : 0) &&
                  num(o, "correct") == (a == 1 ? (double)n[1] : 0),
              "%s: per_type %s", what, TYPES[a]);
        const cJSON *prec = cJSON_GetObjectItem(o, "precision");
        if (a == 1)
            CHECK(fabs(prec->valuedouble - (double)n[1] / trees) < 1e-12 &&
                      num(o, "recall") == 1.0, "%s: dead precision/recall", what);
        else
            CHECK(cJSON_IsNull(prec) && num(o, "recall") == 0.0, "%s: %s precision/recall",
                  what, TYPES[a]);
    }
    cJSON_Delete(doc);
}

static void check_text(const char *out, int trees, const size_t n[3])
{
    char want[256];
    for (int a = 0; a < 3; a++) {
        snprintf(want, sizeof want, "\n%-20s %8d %8zu %8d\n", TYPES[a], 0, n[a], 0);
        CHECK(strstr(out, want) != NULL, "no row '%s' in:\n%s", want + 1, out);
    }
    snprintf(want, sizeof want, "\n%-20s %9zu %9d %7zu %9.3f %7.3f\n", "dead", n[1], trees, n[1],
             (double)n[1] / trees, 1.0);
    CHECK(strstr(out, want) != NULL, "no line '%s' in:\n%s", want + 1, out);
    snprintf(want, sizeof want, "\n%-20s %9zu %9d %7d %9s %7.3f\n", "alive", n[0], 0, 0, "-",
             0.0);
    CHECK(strstr(out, want) != NULL, "no line '%s' in:\n%s", want + 1, out);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !mkdtemp(g_dir) || chdir(g_dir) != 0)
        return 1;
    g_canopy = argv[1];
    static const float dead[3] = {0.0f, 2.0f, -1.0f};
    CHECK_FATAL(cm_write_constant("crop", dead) == 0);
    cli_result r = run("model import crop --output dead.cnw");
    CHECK_FATAL(r.code == 0 && strstr(r.out, "classifier"), "import: exit %d: %s%s", r.code,
                r.out, r.err);
    cli_result_free(&r);
    char args[2048];
    snprintf(args, sizeof args, "run -i %s/OSBS_029.png -o out --set output.vector=csv",
             CANOPY_NEON_DIR);
    r = run(args);
    CHECK_FATAL(r.code == 0, "run: exit %d: %s", r.code, r.err);
    cli_result_free(&r);
    char *csv = cli_slurp("out/OSBS_029.trees.csv");
    size_t n[3] = {0}, nl[3] = {0};
    int trees = write_annotations("ann", csv, false, n);
    CHECK_FATAL(trees >= 6 && write_annotations("ann-label", csv, true, nl) == trees,
                "%d trees in run's CSV:\n%s", trees, csv);
    free(csv);

    static const char *const modes[] = {"", "--cpu "};
    for (int m = 0; m < 2; m++) {
        snprintf(args, sizeof args, "eval %s--json --classifier dead.cnw --images %s "
                 "--annotations ann", modes[m], CANOPY_NEON_DIR);
        r = run(args);
        CHECK(r.code == 0, "%s: exit %d: %s", args, r.code, r.err);
        check_json(args, r.out, trees, n);
        cli_result_free(&r);
    }
    snprintf(args, sizeof args, "eval --classifier dead.cnw --images %s --annotations ann",
             CANOPY_NEON_DIR);
    r = run(args);
    CHECK(r.code == 0, "%s: exit %d: %s", args, r.code, r.err);
    check_text(r.out, trees, n);
    cli_result_free(&r);

    /* DeepForest's files keep the class in `label`. */
    snprintf(args, sizeof args, "eval --json --set classifier.model=dead.cnw --images %s "
             "--annotations ann-label", CANOPY_NEON_DIR);
    r = run(args);
    CHECK(r.code == 0, "%s: exit %d: %s", args, r.code, r.err);
    check_json(args, r.out, trees, nl);
    cli_result_free(&r);

    /* label "Tree" only: no types to compare. */
    CHECK_FATAL(mkdir("ann-tree", 0755) == 0);
    FILE *f = fopen("ann-tree/t.csv", "w");
    CHECK_FATAL(f != NULL);
    fputs("image_path,xmin,ymin,xmax,ymax,label\nOSBS_029.png,203,67,227,90,Tree\n", f);
    fclose(f);
    snprintf(args, sizeof args, "eval --json --classifier dead.cnw --images %s "
             "--annotations ann-tree", CANOPY_NEON_DIR);
    r = run(args);
    CHECK(r.code == 0 && !strstr(r.out, "\"types\"") && strstr(r.err, "no type column"),
          "label Tree: exit %d: %s%s", r.code, r.out, r.err);
    cli_result_free(&r);

    /* A type the classifier does not know: named with its file and line. */
    CHECK_FATAL(mkdir("ann-bad", 0755) == 0);
    f = fopen("ann-bad/bad.csv", "w");
    CHECK_FATAL(f != NULL);
    fputs("image_path,xmin,ymin,xmax,ymax,label,type\nOSBS_029.png,203,67,227,90,Tree,dead\n"
          "OSBS_029.png,256,99,288,140,Tree,oak\n", f);
    fclose(f);
    snprintf(args, sizeof args, "eval --classifier dead.cnw --images %s --annotations ann-bad",
             CANOPY_NEON_DIR);
    r = run(args);
    CHECK(r.code == 1 && strstr(r.err, "bad.csv:3: type \"oak\" is not one of the classifier's "
                                       "types"),
          "unknown type: exit %d: %s", r.code, r.err);
    cli_result_free(&r);

    snprintf(args, sizeof args, "rm -rf %s", g_dir);
    if (system(args) != 0)
        return 1;
    return TEST_RESULT();
}
