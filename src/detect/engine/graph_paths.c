/* The convolution path of each conv node of a graph engine: the direct
 * kernel, im2col + SGEMM, Winograd or the per-pixel direct kernel
 * (conv_px.c), timed once per device, node shapes and batch, and remembered
 * next to the kernel cache (a damaged file means timing again). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "canopy/log.h"
#include "detect/engine/graph_engine_internal.h"

/* ---- convolution paths ---------------------------------------------------- */

/* Each path's name in the paths file and the logs (index: DET_CONV_*). */
static const char *const path_names[DET_CONV_PATHS] = {
    [DET_CONV_DIRECT] = "direct",
    [DET_CONV_GEMM] = "gemm",
    [DET_CONV_WINOGRAD] = "winograd",
    [DET_CONV_PIXEL] = "pixel",
    [DET_CONV_WINOGRAD4] = "winograd4",
};

const char *det_conv_path_name(enum det_conv_path p)
{
    return p > DET_CONV_AUTO && p < DET_CONV_PATHS ? path_names[p] : "auto";
}

/* The path called `name`, DET_CONV_AUTO for none. */
static enum det_conv_path path_named(const char *name)
{
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
        if (strcmp(name, path_names[p]) == 0)
            return (enum det_conv_path)p;
    return DET_CONV_AUTO;
}

/* The fastest path of `set` (bits 1 << DET_CONV_*, not empty) by its
 * seconds s[DET_CONV_*]: the first in DET_CONV_* order on a tie. */
static enum det_conv_path fastest(const double *s, unsigned set)
{
    int best = DET_CONV_AUTO;
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
        if ((set & (1u << p)) && (best == DET_CONV_AUTO || s[p] < s[best]))
            best = p;
    return best == DET_CONV_AUTO ? DET_CONV_GEMM : (enum det_conv_path)best;
}

/* "direct 1.234 ms, gemm 0.567 ms, ..." of seconds s[DET_CONV_*], for the
 * logs. */
static void path_times(const double *s, char *out, size_t len)
{
    size_t n = 0;
    out[0] = '\0';
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS && n < len; p++) {
        int w = snprintf(out + n, len - n, "%s%s %.3f ms", n ? ", " : "", path_names[p],
                         s[p] * 1e3);
        if (w < 0)
            break;
        n += (size_t)w;
    }
}


/* The file that remembers the choice: the device (ocl_cache_file's key),
 * the measurement size and every conv node's shape there (what decides the
 * timing, not the weights). */
static void paths_file(const det_graph_engine *e, char *out, size_t len)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    int *c = malloc(sizeof(int) * 3 * (size_t)nn);
    int *key = malloc(sizeof(int) * (6 + 13 * (size_t)nn));
    size_t n = 0;
    cnp_err err;
    if (c && key && det_graph_ref_shapes(g, e->meas_h, e->meas_w, c, c + nn, c + 2 * nn,
                                         &err) == CNP_OK) {
        key[n++] = 6; /* format of the file (5: winograd4, 6: the pixel path's vector
                       * kernel) */
        key[n++] = e->max_batch;
        key[n++] = e->meas_h;
        key[n++] = e->meas_w;
        key[n++] = e->plan_h;
        key[n++] = e->plan_w;
        for (int i = 0; i < nn; i++) {
            const det_node *d = &g->nodes[i];
            if (d->op != DET_OP_CONV)
                continue;
            int in[] = {i, d->cin, d->cout, d->k, d->stride, d->pad, d->dilation,
                        c[nn + d->in], c[2 * nn + d->in], e->nodes[i].direct != NULL,
                        e->nodes[i].wino_u[0] != NULL, e->nodes[i].px != NULL,
                        e->nodes[i].wino_u[1] != NULL};
            memcpy(key + n, in, sizeof in);
            n += sizeof in / sizeof in[0];
        }
    }
    ocl_cache_file(e->ctx, "graph-conv-paths", key ? key : (int[]){0},
                   (key ? n : 1) * sizeof(int), out, len);
    free(c);
    free(key);
}

/* Reads the remembered choice: true when the file names a path for every
 * conv node and nothing else (lines "<node> direct|gemm|winograd|pixel|
 * winograd4 <direct ms> <gemm ms> <winograd ms> <pixel ms> <winograd4 ms>",
 * in node order). */
static bool paths_load(det_graph_engine *e, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    const det_graph *g = e->g;
    int want = 0;
    bool ok = true;
    char line[200], name[16];
    while (ok && fgets(line, sizeof line, f)) {
        unsigned idx;
        int at = 0;
        double ms[DET_CONV_PATHS] = {0};
        while (want < g->n_nodes && g->nodes[want].op != DET_OP_CONV)
            want++;
        ok = sscanf(line, "%u %15s%n", &idx, name, &at) == 2 && idx == (unsigned)want &&
             want < g->n_nodes;
        for (int p = DET_CONV_DIRECT; ok && p < DET_CONV_PATHS; p++) {
            int used = 0;
            ok = sscanf(line + at, "%lf%n", &ms[p], &used) == 1 && ms[p] >= 0;
            at += used;
        }
        if (!ok)
            break;
        gnode *gn = &e->nodes[want];
        enum det_conv_path p = path_named(name);
        ok = p != DET_CONV_AUTO && ge_path_applies(gn, p);
        if (ok)
            gn->chosen = p;
        for (int q = DET_CONV_DIRECT; q < DET_CONV_PATHS; q++)
            gn->path_s[q] = ms[q] / 1e3;
        want++;
    }
    fclose(f);
    while (want < g->n_nodes && g->nodes[want].op != DET_OP_CONV)
        want++;
    return ok && want == g->n_nodes;
}

/* Writes the choice (temporary file, then rename: concurrent workers never
 * read half a file). A failure only costs the next start a measurement. */
static void paths_store(const det_graph_engine *e, const char *path)
{
    char tmp[CNP_STR_LONG + 400];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    bool ok = true;
    for (int i = 0; i < e->g->n_nodes; i++) {
        const gnode *gn = &e->nodes[i];
        if (e->g->nodes[i].op != DET_OP_CONV)
            continue;
        bool named = gn->chosen > DET_CONV_AUTO && gn->chosen < DET_CONV_PATHS;
        ok = fprintf(f, "%d %s", i, path_names[named ? gn->chosen : DET_CONV_GEMM]) > 0 && ok;
        for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
            ok = fprintf(f, " %.6f", gn->path_s[p] * 1e3) > 0 && ok;
        ok = fputc('\n', f) != EOF && ok;
    }
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0)
        remove(tmp);
}

/* Wall time of conv node i alone with `path` on the current shapes: one
 * warm-up run (the first use of a path compiles kernels, CLBlast's at run
 * time), then the fastest of `runs` timed runs (the fastest: load from
 * elsewhere on the machine only ever adds). */
static cnp_status time_node(det_graph_engine *e, int i, enum det_conv_path path, int runs,
                            double *seconds, cnp_err *err)
{
    enum det_conv_path saved = e->force;
    e->force = path;
    cnp_status result = ge_run_conv(e, i, err);
    if (result == CNP_OK)
        result = ocl_check(clFinish(e->q), "clFinish", err);
    *seconds = 0;
    for (int r = 0; result == CNP_OK && r < runs; r++) {
        double t0 = cnp_now();
        result = ge_run_conv(e, i, err);
        if (result == CNP_OK)
            result = ocl_check(clFinish(e->q), "clFinish", err);
        double t = cnp_now() - t0;
        if (r == 0 || t < *seconds)
            *seconds = t;
    }
    e->force = saved;
    return result;
}

/* Paths within this factor of the fastest at the reduced measurement size
 * are timed again at the plan size. */
#define REFINE_RATIO 3.0

/* The paths of a node worth timing again at the plan size: a bit per path
 * (1 << DET_CONV_*) the node has (`has`, GEMM always) whose time s[path] at
 * the reduced size is within REFINE_RATIO of the fastest there. Exposed
 * for the tests as det_graph_paths_refine_set. */
unsigned det_graph_paths_refine_set(const double s[DET_CONV_PATHS], unsigned has)
{
    has |= 1u << DET_CONV_GEMM;
    double best = s[DET_CONV_GEMM];
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
        if ((has & (1u << p)) && s[p] >= 0 && s[p] < best)
            best = s[p];
    unsigned set = 0;
    for (int p = DET_CONV_DIRECT; p < DET_CONV_PATHS; p++)
        if ((has & (1u << p)) && s[p] >= 0 && s[p] <= best * REFINE_RATIO)
            set |= 1u << p;
    return set;
}

/* Where the paths were timed at a reduced size (a CPU device), the ranking
 * there is not the ranking at the size the engine runs: Winograd's
 * transforms weigh more on a 16 x 16 map than on a 100 x 100 one (RetinaNet's
 * P3 head convs at DeepForest's 800: im2col + SGEMM 10 ms against Winograd's
 * 19 ms at 128 x 128 input, 260 ms against 112 ms at 800). The paths within
 * REFINE_RATIO of the fastest there are timed again at the plan size, once
 * per distinct shape (RetinaNet's nine P3 3 x 3 convs are one), the fastest
 * of two runs each; the reduced-size times stay the node's recorded ones.
 * Nodes of one shape share the choice: the candidates are those of any of
 * them (that all of them have), so one noisy reduced-size timing cannot put
 * a node of that shape on a slower path than its twins (it did: fpn.p3 on
 * 177 ms against the P3 head's 91 ms on Winograd). */
static cnp_status refine_paths(det_graph_engine *e, cnp_err *err)
{
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    cnp_status result = det_graph_ref_shapes(g, e->plan_h, e->plan_w, e->shape,
                                             e->shape + nn, e->shape + 2 * nn, err);
    enum { KEY = 8 };
    size_t cap = (size_t)(nn > 0 ? nn : 1);
    int *keys = malloc(sizeof(int) * KEY * cap), *group = malloc(sizeof(int) * cap);
    unsigned *cand = malloc(sizeof *cand * cap), *all = malloc(sizeof *all * cap);
    int *first = malloc(sizeof(int) * cap);
    enum det_conv_path *won = malloc(sizeof *won * cap);
    if (!keys || !group || !cand || !all || !first || !won) {
        cnp_err_set(err, "graph engine: out of memory choosing paths");
        result = CNP_ERR_NOMEM;
    }
    /* The shapes: their candidates (any node's) and the paths all have. */
    int nk = 0;
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        const det_node *d = &g->nodes[i];
        gnode *gn = &e->nodes[i];
        group[i] = -1;
        if (d->op != DET_OP_CONV || ge_paths(gn) == 1u << DET_CONV_GEMM)
            continue;
        int key[KEY] = {d->cin, d->cout, d->k, d->stride, d->pad, d->dilation,
                        e->shape[nn + d->in], e->shape[2 * nn + d->in]};
        int j = 0;
        while (j < nk && memcmp(keys + KEY * j, key, sizeof key) != 0)
            j++;
        if (j == nk) {
            memcpy(keys + KEY * nk, key, sizeof key);
            cand[nk] = 0;
            all[nk] = ge_paths(gn);
            first[nk++] = i;
        }
        group[i] = j;
        cand[j] |= det_graph_paths_refine_set(gn->path_s, ge_paths(gn));
        all[j] &= ge_paths(gn);
    }
    /* Each shape's candidates timed once, on its first node. */
    for (int j = 0; result == CNP_OK && j < nk; j++) {
        unsigned set = cand[j] & all[j]; /* GEMM always among them */
        if (set == 1u << DET_CONV_GEMM) { /* nothing to rank */
            won[j] = DET_CONV_GEMM;
            continue;
        }
        double t[DET_CONV_PATHS] = {0};
        for (int p = DET_CONV_DIRECT; result == CNP_OK && p < DET_CONV_PATHS; p++)
            if (set & (1u << p))
                result = time_node(e, first[j], (enum det_conv_path)p, 2, &t[p], err);
        if (result != CNP_OK)
            break;
        won[j] = fastest(t, set);
        e->refined_shapes++;
        char times[160];
        path_times(t, times, sizeof times);
        LOG_DEBUG("detect", "graph node %s %dx%d x%d at the plan size: %s -> %d",
                  g->nodes[first[j]].name, keys[KEY * j + 6], keys[KEY * j + 7], e->batch, times,
                  (int)won[j]);
    }
    for (int i = 0; result == CNP_OK && i < nn; i++)
        if (group[i] >= 0)
            e->nodes[i].chosen = won[group[i]];
    free(keys);
    free(group);
    free(cand);
    free(all);
    free(first);
    free(won);
    return result;
}

/* Picks the path of every conv node: the configured one, or (auto) the
 * remembered choice, or the fastest at the measurement size and the
 * engine's batch, then stored. */
cnp_status ge_choose_paths(det_graph_engine *e, enum det_conv_path configured,
                               cnp_err *err)
{
    if (configured > DET_CONV_AUTO && configured < DET_CONV_PATHS) {
        for (int i = 0; i < e->g->n_nodes; i++)
            if (e->g->nodes[i].op == DET_OP_CONV)
                e->nodes[i].chosen = configured;
        return CNP_OK;
    }
    char file[CNP_STR_LONG + 300];
    paths_file(e, file, sizeof file);
    if (paths_load(e, file)) {
        LOG_DEBUG("detect", "graph convolution paths from %s", file);
        return CNP_OK;
    }
    const det_graph *g = e->g;
    int nn = g->n_nodes;
    cnp_status result = det_graph_ref_shapes(g, e->meas_h, e->meas_w, e->shape, e->shape + nn,
                                             e->shape + 2 * nn, err);
    e->batch = e->max_batch; /* the batch it will run */
    /* Defined contents for the timing runs. */
    float zero = 0.0f;
    for (int s = 0; result == CNP_OK && s < e->n_slots; s++) {
        size_t bytes = 0;
        result = ocl_check(clGetMemObjectInfo(e->slots[s], CL_MEM_SIZE, sizeof bytes, &bytes,
                                              NULL),
                           "clGetMemObjectInfo", err);
        if (result == CNP_OK)
            result = ocl_check(clEnqueueFillBuffer(e->q, e->slots[s], &zero, sizeof zero, 0,
                                                   bytes / sizeof zero * sizeof zero, 0, NULL,
                                                   NULL),
                               "clEnqueueFillBuffer", err);
    }
    for (int i = 0; result == CNP_OK && i < nn; i++) {
        gnode *gn = &e->nodes[i];
        if (g->nodes[i].op != DET_OP_CONV) {
            continue;
        }
        gn->chosen = DET_CONV_GEMM;
        memset(gn->path_s, 0, sizeof gn->path_s);
        unsigned has = ge_paths(gn);
        if (has == 1u << DET_CONV_GEMM)
            continue;
        for (int p = DET_CONV_DIRECT; result == CNP_OK && p < DET_CONV_PATHS; p++)
            if (has & (1u << p))
                result = time_node(e, i, (enum det_conv_path)p, 1, &gn->path_s[p], err);
        if (result != CNP_OK)
            break;
        gn->chosen = fastest(gn->path_s, has);
        e->timed_nodes++;
        char times[160];
        path_times(gn->path_s, times, sizeof times);
        LOG_DEBUG("detect", "graph node %s %dx%d x%d: %s -> %d", g->nodes[i].name,
                  e->shape[nn + i], e->shape[2 * nn + i], e->batch, times, (int)gn->chosen);
    }
    if (result == CNP_OK && (e->meas_h < e->plan_h || e->meas_w < e->plan_w))
        result = refine_paths(e, err);
    if (result == CNP_OK)
        paths_store(e, file);
    return result;
}

void det_graph_engine_set_conv_path(det_graph_engine *e, enum det_conv_path path)
{
    e->force = path;
}

enum det_conv_path det_graph_engine_node_path(const det_graph_engine *e, int i,
                                              double *direct_s, double *gemm_s)
{
    if (direct_s)
        *direct_s = e->nodes[i].path_s[DET_CONV_DIRECT];
    if (gemm_s)
        *gemm_s = e->nodes[i].path_s[DET_CONV_GEMM];
    return ge_node_path(e, i);
}

size_t det_graph_engine_timed_nodes(const det_graph_engine *e)
{
    return e->timed_nodes;
}

size_t det_graph_engine_refined_shapes(const det_graph_engine *e)
{
    return e->refined_shapes;
}

void det_graph_engine_conv_paths_file(const det_graph_engine *e, char *out, size_t len)
{
    paths_file(e, out, len);
}
