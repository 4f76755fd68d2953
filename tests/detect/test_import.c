/* Checkpoint import and .cnw version 2: a tiny torchvision-layout RetinaNet
 * (reduced widths, two classes) written as safetensors + config.json here,
 * imported, checked (graph, shapes, folded weights), written as .cnw
 * version 2 and read back; refusals of truncated, incomplete, mis-shaped,
 * foreign and corrupt checkpoints and of inconsistent version 2 files;
 * version 1 models still load. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "canopy/buf.h"
#include "detect/detect_internal.h"
#include "detect/graph.h"
#include "detect/import.h"
#include "detect/safetensors.h"
#include "detect/test_detect_common.h"

/* ---- a safetensors writer ------------------------------------------------ */

#define MAX_T 256

typedef struct wt {
    char name[200];
    int ndim;
    int64_t shape[4];
    float *data;
    const char *dtype; /* "F32" (data), or "I64" (one zero) */
} wt;

typedef struct ckpt {
    wt t[MAX_T];
    int n;
    uint32_t seed;
} ckpt;

static float rnd(ckpt *c)
{
    c->seed = c->seed * 1664525u + 1013904223u;
    return (float)((c->seed >> 8) & 0xffff) / 65536.0f - 0.5f;
}

static wt *add(ckpt *c, const char *name, int ndim, const int64_t *shape, float lo, float hi)
{
    REQUIRE(c->n < MAX_T);
    wt *t = &c->t[c->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->dtype = "F32";
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)(t->shape[i] = shape[i]);
    t->data = malloc(n * sizeof(float));
    REQUIRE(t->data);
    for (size_t i = 0; i < n; i++)
        t->data[i] = lo + (hi - lo) * (rnd(c) + 0.5f);
    return t;
}

static void conv(ckpt *c, const char *stem, int cout, int cin, int k, int bias)
{
    char key[200];
    snprintf(key, sizeof key, "%s.weight", stem);
    add(c, key, 4, (int64_t[]){cout, cin, k, k}, -0.5f, 0.5f);
    if (bias) {
        snprintf(key, sizeof key, "%s.bias", stem);
        add(c, key, 1, (int64_t[]){cout}, -0.2f, 0.2f);
    }
}

static void bn(ckpt *c, const char *stem, int ch)
{
    static const char *parts[] = {"weight", "bias", "running_mean", "running_var"};
    static const float lo[] = {0.5f, -0.1f, -0.2f, 0.3f}, hi[] = {1.5f, 0.1f, 0.2f, 2.0f};
    char key[200];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", stem, parts[i]);
        add(c, key, 1, (int64_t[]){ch}, lo[i], hi[i]);
    }
    snprintf(key, sizeof key, "%s.num_batches_tracked", stem);
    wt *t = add(c, key, 0, NULL, 0, 0);
    t->dtype = "I64";
}

/* Layout variants of the same network. */
enum { LEGACY_PREFIX = 1, OLD_FPN = 2, OLD_HEAD = 4, SMALL = 8 };

#define K_CLASSES 2
static int FPN_C = 8;

/* The tiny RetinaNet: stem 4 channels, layer1 (1 block, 2 -> 8), layer2
 * (2 blocks, 4 -> 16), layer3 (1, 8 -> 32), layer4 (1, 8 -> 32), FPN of 8,
 * heads of 2 convs. */
static void make_ckpt(ckpt *c, int layout)
{
    memset(c, 0, sizeof *c);
    c->seed = 12345;
    char s[160], s2[160];
    const char *pre = layout & LEGACY_PREFIX ? "model." : "";
    snprintf(s, sizeof s, "%sbackbone.body.conv1", pre);
    conv(c, s, 4, 3, 7, 0);
    snprintf(s, sizeof s, "%sbackbone.body.bn1", pre);
    bn(c, s, 4);
    const int blocks[4] = {1, 2, 1, 1};
    const int *width = layout & SMALL ? (const int[]){1, 1, 1, 1} : (const int[]){2, 4, 8, 8};
    FPN_C = layout & SMALL ? 4 : 8;
    int cin = 4;
    for (int l = 0; l < 4; l++) {
        for (int b = 0; b < blocks[l]; b++) {
            int w = width[l], out = 4 * w;
            const int kk[3] = {1, 3, 1}, co[3] = {w, w, out};
            int ci = cin;
            for (int k = 0; k < 3; k++) {
                snprintf(s, sizeof s, "%sbackbone.body.layer%d.%d.conv%d", pre, l + 1, b, k + 1);
                conv(c, s, co[k], ci, kk[k], 0);
                snprintf(s, sizeof s, "%sbackbone.body.layer%d.%d.bn%d", pre, l + 1, b, k + 1);
                bn(c, s, co[k]);
                ci = co[k];
            }
            if (b == 0) {
                snprintf(s, sizeof s, "%sbackbone.body.layer%d.0.downsample.0", pre, l + 1);
                conv(c, s, out, cin, 1, 0);
                snprintf(s, sizeof s, "%sbackbone.body.layer%d.0.downsample.1", pre, l + 1);
                bn(c, s, out);
            }
            cin = out;
        }
    }
    const int cins[3] = {4 * width[1], 4 * width[2], 4 * width[3]};
    for (int i = 0; i < 3; i++) {
        const char *mid = layout & OLD_FPN ? "" : ".0";
        snprintf(s, sizeof s, "%sbackbone.fpn.inner_blocks.%d%s", pre, i, mid);
        conv(c, s, FPN_C, cins[i], 1, 1);
        snprintf(s, sizeof s, "%sbackbone.fpn.layer_blocks.%d%s", pre, i, mid);
        conv(c, s, FPN_C, FPN_C, 3, 1);
    }
    snprintf(s, sizeof s, "%sbackbone.fpn.extra_blocks.p6", pre);
    conv(c, s, FPN_C, FPN_C, 3, 1);
    snprintf(s, sizeof s, "%sbackbone.fpn.extra_blocks.p7", pre);
    conv(c, s, FPN_C, FPN_C, 3, 1);
    const char *heads[2] = {"classification_head", "regression_head"};
    for (int h = 0; h < 2; h++) {
        for (int i = 0; i < 2; i++) {
            if (layout & OLD_HEAD)
                snprintf(s, sizeof s, "%shead.%s.conv.%d", pre, heads[h], 2 * i);
            else
                snprintf(s, sizeof s, "%shead.%s.conv.%d.0", pre, heads[h], i);
            conv(c, s, FPN_C, FPN_C, 3, 1);
        }
        snprintf(s2, sizeof s2, "%shead.%s.%s", pre, heads[h], h ? "bbox_reg" : "cls_logits");
        conv(c, s2, h ? 36 : 9 * K_CLASSES, FPN_C, 3, 1);
    }
}

static void ckpt_free(ckpt *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->t[i].data);
    c->n = 0;
}

static int find_t(const ckpt *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0)
            return i;
    return -1;
}

static void drop(ckpt *c, const char *name)
{
    int i = find_t(c, name);
    REQUIRE(i >= 0);
    free(c->t[i].data);
    c->t[i] = c->t[--c->n];
}

static size_t numel(const wt *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    return n;
}

/* Serializes c: header (tensors in array order, data in reverse order so
 * offsets are not trivially sorted), then the data. */
static void st_write(const ckpt *c, cnp_buf *out)
{
    cnp_buf h = {0};
    cnp_buf_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t off = 0, *begin = calloc((size_t)c->n, sizeof *begin);
    REQUIRE(begin);
    for (int i = c->n - 1; i >= 0; i--) {
        begin[i] = off;
        off += strcmp(c->t[i].dtype, "I64") == 0 ? 8 : 4 * numel(&c->t[i]);
    }
    for (int i = 0; i < c->n; i++) {
        const wt *t = &c->t[i];
        uint64_t bytes = strcmp(t->dtype, "I64") == 0 ? 8 : 4 * numel(t);
        cnp_buf_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++)
            cnp_buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        cnp_buf_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin[i],
                       (unsigned long long)(begin[i] + bytes));
    }
    cnp_buf_printf(&h, "}");
    while (h.len % 8)
        cnp_buf_append(&h, " ", 1);
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    cnp_buf_append(out, len8, 8);
    cnp_buf_append(out, h.data, h.len);
    for (int i = c->n - 1; i >= 0; i--) {
        const wt *t = &c->t[i];
        if (strcmp(t->dtype, "I64") == 0) {
            static const uint8_t zero[8];
            cnp_buf_append(out, zero, 8);
            continue;
        }
        for (size_t k = 0; k < numel(t); k++) {
            uint32_t u;
            memcpy(&u, &t->data[k], 4);
            uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
            cnp_buf_append(out, b, 4);
        }
    }
    free(begin);
    cnp_buf_free(&h);
}

/* ---- scratch files ------------------------------------------------------- */

static char g_dir[256], g_st[300], g_cfg[300], g_cnw[300];

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(data, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
}

static const char *k_config =
    "{\"num_classes\": 2, \"label_dict\": {\"Snag\": 1, \"Tree\": 0}, \"nms_thresh\": 0.4, "
    "\"score_thresh\": 0.3, \"min_size\": 64, \"max_size\": 96, \"backbone_weights\": null}";

static void write_ckpt(const ckpt *c)
{
    cnp_buf b = {0};
    st_write(c, &b);
    write_file(g_st, b.data, b.len);
    cnp_buf_free(&b);
    write_file(g_cfg, k_config, strlen(k_config));
}

/* Imports g_dir; expects refusal naming the safetensors file and `reason`. */
static void expect_import_refused(const char *reason, const char *what)
{
    det_import *im = NULL;
    cnp_err err = {{0}};
    cnp_status st = det_import_load(g_dir, NULL, &im, &err);
    CHECK(st == CNP_ERR_FORMAT, "%s: status %d (%s)", what, (int)st, err.msg);
    CHECK(im == NULL, "%s", what);
    CHECK(strstr(err.msg, g_st) != NULL, "%s: message '%s' lacks the file", what, err.msg);
    CHECK(strstr(err.msg, reason) != NULL, "%s: message '%s' lacks '%s'", what, err.msg,
          reason);
    det_import_free(im);
}

/* ---- checks -------------------------------------------------------------- */

static const det_node *node(const det_graph *g, const char *name)
{
    int i = det_graph_find(g, name);
    CHECK_FATAL(i >= 0, "node %s", name);
    return &g->nodes[i];
}

/* The fold of conv `stem` + bn `bnstem` at weight index (o, i) and bias o,
 * computed here from the checkpoint's floats. */
static void expect_fold(const ckpt *c, const det_graph *g, const char *node_name,
                        const char *stem, const char *bnstem, int o, size_t wi)
{
    char key[200];
    snprintf(key, sizeof key, "%s.weight", stem);
    const wt *w = &c->t[find_t(c, key)];
    const float *p[4];
    static const char *parts[] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4; k++) {
        snprintf(key, sizeof key, "%s.%s", bnstem, parts[k]);
        int idx = find_t(c, key);
        REQUIRE(idx >= 0);
        p[k] = c->t[idx].data;
    }
    double scale = p[0][o] / sqrt((double)p[3][o] + 1e-5);
    size_t per = numel(w) / (size_t)w->shape[0];
    float want_w = (float)(w->data[(size_t)o * per + wi] * scale);
    float want_b = (float)(p[1][o] - p[2][o] * scale);
    const det_node *n = node(g, node_name);
    CHECK(n->weight[(size_t)o * per + wi] == want_w, "%s weight[%d][%zu]: %.9g, want %.9g",
          node_name, o, wi, n->weight[(size_t)o * per + wi], want_w);
    CHECK(n->bias[o] == want_b, "%s bias[%d]: %.9g, want %.9g", node_name, o, n->bias[o],
          want_b);
    /* Not the unfolded value: the fold did happen. */
    CHECK(n->weight[(size_t)o * per + wi] != w->data[(size_t)o * per + wi]);
}

static void check_graph(const ckpt *c, const det_graph *g)
{
    /* 1 input + conv1 + maxpool + 19 body convs + 8 FPN + p6, relu, p7 +
     * 5 levels x 2 heads x 3 convs. */
    CHECK(g->n_nodes == 63, "%d nodes", g->n_nodes);
    int cs[63], hs[63], ws[63];
    cnp_err err = {{0}};
    REQUIRE(g->n_nodes == 63);
    CHECK_FATAL(det_graph_shapes(g, 64, 96, cs, hs, ws, &err) == CNP_OK, "%s", err.msg);
    struct {
        const char *name;
        int c, h, w;
    } want[] = {
        {"conv1", 4, 32, 48},           {"maxpool", 4, 16, 24},
        {"layer1.0.conv3", 8, 16, 24},  {"layer2.0.conv2", 4, 8, 12},
        {"layer2.1.conv3", 16, 8, 12},  {"layer3.0.conv3", 32, 4, 6},
        {"layer4.0.downsample", 32, 2, 3}, {"layer4.0.conv3", 32, 2, 3},
        {"fpn.p3", 8, 8, 12},           {"fpn.p5", 8, 2, 3},
        {"fpn.topdown0", 8, 8, 12},     {"fpn.p6", 8, 1, 2},
        {"fpn.p7", 8, 1, 1},            {"head.cls.p3.cls_logits", 18, 8, 12},
        {"head.box.p7.bbox_reg", 36, 1, 1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = det_graph_find(g, want[i].name);
        CHECK(k >= 0, "node %s", want[i].name);
        if (k >= 0)
            CHECK(cs[k] == want[i].c && hs[k] == want[i].h && ws[k] == want[i].w,
                  "%s: %dx%dx%d, want %dx%dx%d", want[i].name, cs[k], hs[k], ws[k], want[i].c,
                  want[i].h, want[i].w);
    }
    /* Wiring: residuals, the stride on the 3x3 conv, P6 from P5, heads shared. */
    const det_node *c3 = node(g, "layer2.0.conv3"), *c21 = node(g, "layer2.1.conv3");
    CHECK(c3->in2 == det_graph_find(g, "layer2.0.downsample"));
    CHECK(c21->in2 == det_graph_find(g, "layer2.0.conv3") && c21->act == DET_ACT_RELU);
    CHECK(node(g, "layer2.0.conv2")->stride == 2 && node(g, "layer2.0.conv1")->stride == 1);
    CHECK(node(g, "layer1.0.downsample")->stride == 1);
    CHECK(node(g, "fpn.p6")->in == det_graph_find(g, "fpn.p5"));
    CHECK(node(g, "fpn.p7")->in == det_graph_find(g, "fpn.p6.relu"));
    CHECK(node(g, "fpn.topdown1")->in2 == det_graph_find(g, "fpn.inner2"));
    CHECK(node(g, "maxpool")->k == 3 && node(g, "maxpool")->pad == 1);
    const det_node *h3 = node(g, "head.cls.p3.conv1"), *h6 = node(g, "head.cls.p6.conv1");
    CHECK(h3->weight == h6->weight && strcmp(h3->weights, h6->weights) == 0);
    CHECK(strcmp(h3->weights, "head.classification_head.conv.1.0") == 0, "%s", h3->weights);
    CHECK(h6->in == det_graph_find(g, "head.cls.p6.conv0"));
    CHECK(node(g, "head.box.p4.conv0")->in == det_graph_find(g, "fpn.p4"));
    const det_retina *r = &g->retina;
    CHECK(r->n_levels == 5 && r->n_sizes == 3 && r->n_ratios == 3);
    CHECK(r->cls_node[2] == det_graph_find(g, "head.cls.p5.cls_logits"));
    CHECK(r->box_node[4] == det_graph_find(g, "head.box.p7.bbox_reg"));
    static const float sizes[5][3] = {
        {32, 40, 50}, {64, 80, 101}, {128, 161, 203}, {256, 322, 406}, {512, 645, 812}};
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < 3; k++)
            CHECK(r->sizes[l][k] == sizes[l][k], "size[%d][%d] %g", l, k, r->sizes[l][k]);
    CHECK(r->ratios[3][0] == 0.5f && r->ratios[3][2] == 2.0f);
    CHECK(r->num_classes == 2 && strcmp(r->labels[0], "Tree") == 0 &&
          strcmp(r->labels[1], "Snag") == 0);
    CHECK(r->score_thresh == 0.3f && r->nms_thresh == 0.4f);
    CHECK(r->min_size == 64 && r->max_size == 96 && r->size_divisible == 32);
    CHECK(r->topk_candidates == 1000 && r->detections_per_img == 300);
    CHECK(r->mean[1] == 0.456f && r->std[2] == 0.225f);
    CHECK(fabsf(r->bbox_clip - 4.1351666f) < 1e-6f && r->box_weights[3] == 1.0f);
    /* Batch norm folded, in double, stored as float32. */
    expect_fold(c, g, "conv1", "backbone.body.conv1", "backbone.body.bn1", 3, 100);
    expect_fold(c, g, "layer2.1.conv2", "backbone.body.layer2.1.conv2",
                "backbone.body.layer2.1.bn2", 1, 7);
    expect_fold(c, g, "layer4.0.downsample", "backbone.body.layer4.0.downsample.0",
                "backbone.body.layer4.0.downsample.1", 31, 5);
    /* Convs with a bias of their own and no batch norm keep their values. */
    const wt *cl = &c->t[find_t(c, "head.classification_head.cls_logits.bias")];
    CHECK(node(g, "head.cls.p4.cls_logits")->bias[17] == cl->data[17]);
}

static void test_import_roundtrip(void)
{
    ckpt c;
    make_ckpt(&c, 0);
    write_ckpt(&c);
    det_import *im = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(det_import_load(g_dir, NULL, &im, &err) == CNP_OK, "%s", err.msg);
    const det_graph *g = det_import_graph(im);
    check_graph(&c, g);
    /* Version: the first 12 hex digits of the file's SHA-256. */
    const char *v = det_import_version(im);
    CHECK(strncmp(v, "deepforest-tree-", 16) == 0 && strlen(v) == 28, "version %s", v);
    for (int i = 16; v[i]; i++)
        CHECK((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f'), "version %s", v);

    /* Write, load back, compare everything. */
    CHECK_FATAL(det_import_write(im, g_cnw, &err) == CNP_OK, "%s", err.msg);
    /* DeepForest's models learnt from NEON's 0.1 m imagery: the importer
     * says so in the architecture (FORMAT.md, resolution_m). */
    cnp_buf file = {0};
    static const char key[] = "\"resolution_m\":0.1";
    bool found = false;
    CHECK(cnp_file_read(g_cnw, 0, &file, &err) == CNP_OK);
    for (size_t i = 0; !found && i + sizeof key - 1 <= file.len; i++)
        found = memcmp(file.data + i, key, sizeof key - 1) == 0;
    CHECK(found, "no resolution_m in the imported architecture");
    cnp_buf_free(&file);
    det_model *m = NULL;
    CHECK_FATAL(det_model_load(g_cnw, &m, &err) == CNP_OK, "%s", err.msg);
    CHECK(det_model_resolution_m(m) == 0.1);
    const det_graph *g2 = det_model_graph(m);
    CHECK_FATAL(g2 != NULL && m->format_version == 2);
    CHECK(strcmp(det_model_version(m), v) == 0, "%s", det_model_version(m));
    CHECK(g2->n_nodes == g->n_nodes);
    for (int i = 0; i < g->n_nodes && i < g2->n_nodes; i++) {
        const det_node *a = &g->nodes[i], *b = &g2->nodes[i];
        bool same = a->op == b->op && strcmp(a->name, b->name) == 0 && a->in == b->in &&
                    a->in2 == b->in2;
        if (a->op == DET_OP_CONV) {
            same = same && strcmp(a->weights, b->weights) == 0 && a->cin == b->cin &&
                   a->cout == b->cout && a->k == b->k && a->stride == b->stride &&
                   a->pad == b->pad && a->dilation == b->dilation && a->act == b->act &&
                   memcmp(a->weight, b->weight, sizeof(float) * (size_t)(a->cout * a->cin *
                                                                          a->k * a->k)) == 0 &&
                   memcmp(a->bias, b->bias, sizeof(float) * (size_t)a->cout) == 0;
        } else if (a->op == DET_OP_MAXPOOL) {
            same = same && a->k == b->k && a->stride == b->stride && a->pad == b->pad;
        }
        CHECK(same, "node %d (%s) differs after the round trip", i, a->name);
    }
    CHECK(memcmp(&g->retina, &g2->retina, sizeof g->retina) == 0, "retina fields differ");
    /* Shared weights stay shared in the loaded model. */
    CHECK(node(g2, "head.box.p3.conv0")->weight == node(g2, "head.box.p7.conv0")->weight);
    /* Version 1 accessors mean something for a graph (FORMAT.md). */
    CHECK(det_model_stride(m) == 8, "stride %d", det_model_stride(m));
    CHECK(fabs(det_model_nms_iou(m) - 0.4) < 1e-6);
    uint32_t ow, oh;
    det_model_out_size(m, 96, 64, &ow, &oh);
    CHECK(ow == 12 && oh == 8, "%ux%u", ow, oh);
    CHECK(det_model_flops(m, 96, 64) > 0 && det_model_receptive_field(m) > 100,
          "rf %d", det_model_receptive_field(m));
    det_model_free(m);

    /* --version wins. */
    det_import_free(im);
    im = NULL;
    CHECK_FATAL(det_import_load(g_st, "tree-test-7", &im, &err) == CNP_OK, "%s", err.msg);
    CHECK(strcmp(det_import_version(im), "tree-test-7") == 0);
    det_import_free(im);

    /* Legacy "model." prefix and the older FPN and head layouts: the same
     * graph, the same weights. */
    ckpt c2;
    make_ckpt(&c2, LEGACY_PREFIX | OLD_FPN | OLD_HEAD);
    write_ckpt(&c2);
    CHECK_FATAL(det_import_load(g_dir, "x", &im, &err) == CNP_OK, "%s", err.msg);
    CHECK_FATAL(det_model_load(g_cnw, &m, &err) == CNP_OK, "%s", err.msg);
    const det_graph *g3 = det_import_graph(im);
    CHECK(g3->n_nodes == det_model_graph(m)->n_nodes);
    for (int i = 0; i < g3->n_nodes; i++) {
        const det_node *a = &g3->nodes[i], *b = &det_model_graph(m)->nodes[i];
        CHECK(strcmp(a->name, b->name) == 0 && strcmp(a->weights, b->weights) == 0);
        if (a->op == DET_OP_CONV)
            CHECK(memcmp(a->weight, b->weight, sizeof(float) * (size_t)a->cin) == 0 &&
                      a->bias[0] == b->bias[0],
                  "node %s", a->name);
    }
    det_model_free(m);
    det_import_free(im);
    ckpt_free(&c2);
    ckpt_free(&c);
}

static void test_import_refusals(void)
{
    ckpt c;
    make_ckpt(&c, 0);
    cnp_buf b = {0};
    st_write(&c, &b);
    write_file(g_cfg, k_config, strlen(k_config));

    /* Truncated: the first tensor of the header has the last data bytes. */
    write_file(g_st, b.data, b.len - 10);
    expect_import_refused("truncated: tensor backbone.body.conv1.weight", "truncated");
    write_file(g_st, b.data, 100);
    expect_import_refused("truncated", "truncated header");
    /* Corrupt header: not JSON, length past the end. */
    cnp_buf bad = {0};
    cnp_buf_append(&bad, b.data, b.len);
    bad.data[8 + 1] = '#';
    write_file(g_st, bad.data, bad.len);
    expect_import_refused("header is not a JSON object", "corrupt header");
    memcpy(bad.data, b.data, b.len);
    bad.data[6] = 0x7f;
    write_file(g_st, bad.data, bad.len);
    expect_import_refused("header length", "header length");
    cnp_buf_free(&bad);
    cnp_buf_free(&b);

    /* A missing tensor, named. */
    drop(&c, "backbone.body.layer2.1.bn2.running_var");
    write_ckpt(&c);
    expect_import_refused("tensor backbone.body.layer2.1.bn2.running_var is missing",
                          "missing");
    ckpt_free(&c);

    /* A mis-shaped tensor: layer3's 3x3 conv takes 7 channels, not 8. */
    make_ckpt(&c, 0);
    int i = find_t(&c, "backbone.body.layer3.0.conv2.weight");
    c.t[i].shape[1] = 7;
    c.t[i].data = realloc(c.t[i].data, numel(&c.t[i]) * sizeof(float));
    write_ckpt(&c);
    expect_import_refused("tensor backbone.body.layer3.0.conv2.weight has shape [8,7,3,3], "
                          "expected [-1,8,3,3]",
                          "mis-shaped");
    ckpt_free(&c);

    /* cls_logits not A x num_classes. */
    make_ckpt(&c, 0);
    i = find_t(&c, "head.classification_head.cls_logits.weight");
    c.t[i].shape[0] = 9;
    c.t[find_t(&c, "head.classification_head.cls_logits.bias")].shape[0] = 9;
    write_ckpt(&c);
    expect_import_refused("need 18", "cls_logits");
    ckpt_free(&c);

    /* Another architecture: a Faster R-CNN's keys. */
    make_ckpt(&c, 0);
    drop(&c, "head.classification_head.cls_logits.weight");
    add(&c, "rpn.head.conv.0.0.weight", 4, (int64_t[]){8, 8, 3, 3}, 0, 1);
    write_ckpt(&c);
    expect_import_refused("Faster/Mask R-CNN", "faster r-cnn");
    ckpt_free(&c);

    /* Keys that do not form the graph: no P6/P7 (LastLevelMaxPool). */
    make_ckpt(&c, 0);
    drop(&c, "backbone.fpn.extra_blocks.p6.weight");
    write_ckpt(&c);
    expect_import_refused("backbone.fpn.extra_blocks.p6.weight is missing", "no p6");
    ckpt_free(&c);

    /* A bad config.json names that file. */
    make_ckpt(&c, 0);
    write_ckpt(&c);
    const char *cfg = "{\"num_classes\": 2, \"label_dict\": {\"Tree\": 0, \"Snag\": 0}}";
    write_file(g_cfg, cfg, strlen(cfg));
    det_import *im = NULL;
    cnp_err err = {{0}};
    CHECK(det_import_load(g_dir, NULL, &im, &err) == CNP_ERR_FORMAT);
    CHECK(strstr(err.msg, g_cfg) && strstr(err.msg, "label_dict"), "%s", err.msg);
    ckpt_free(&c);
}

/* The version 2 file image of the tiny model. */
static void v2_image(cnp_buf *out, int layout)
{
    ckpt c;
    make_ckpt(&c, layout);
    write_ckpt(&c);
    det_import *im = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(det_import_load(g_dir, "retina-tiny", &im, &err) == CNP_OK, "%s", err.msg);
    CHECK_FATAL(det_graph_write_cnw(det_import_graph(im), "retina-tiny", "retina-tiny", out,
                                    &err) == CNP_OK,
                "%s", err.msg);
    det_import_free(im);
    ckpt_free(&c);
}

static void fix_crc(cnp_buf *b)
{
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b->data, (uInt)(b->len - 4));
    for (int i = 0; i < 4; i++)
        b->data[b->len - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static uint8_t *find_bytes(uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

static void expect_parse_refused(cnp_buf *b, const char *reason, const char *what)
{
    fix_crc(b);
    det_model *m = NULL;
    cnp_err err = {{0}};
    cnp_status st = det_model_parse(b->data, b->len, "v2.cnw", &m, &err);
    CHECK(st == CNP_ERR_FORMAT && m == NULL, "%s: status %d", what, (int)st);
    CHECK(strncmp(err.msg, "v2.cnw: ", 8) == 0 && strstr(err.msg, reason),
          "%s: '%s' lacks '%s'", what, err.msg, reason);
    det_model_free(m);
}

/* Replaces the first `from` in the file image by `to` (same length), fixes
 * the CRC, and expects det_model_parse to refuse naming the file and
 * `reason`. */
static void expect_v2_refused(const cnp_buf *img, const char *from, const char *to,
                              const char *reason)
{
    REQUIRE(strlen(from) == strlen(to));
    cnp_buf b = {0};
    cnp_buf_append(&b, img->data, img->len);
    uint8_t *p = find_bytes(b.data, b.len, from);
    CHECK_FATAL(p != NULL, "%s not in the file", from);
    memcpy(p, to, strlen(to));
    expect_parse_refused(&b, reason, from);
    cnp_buf_free(&b);
}

static void test_v2_refusals(void)
{
    cnp_buf img = {0};
    v2_image(&img, 0);
    det_model *m = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(det_model_parse(img.data, img.len, "v2.cnw", &m, &err) == CNP_OK, "%s",
                err.msg);
    CHECK(strcmp(det_model_version(m), "retina-tiny") == 0);
    det_model_free(m);
    /* Inconsistent architecture JSON: a cin that disagrees with the graph,
     * a residual of the wrong shape, a reference to a later node, an
     * unknown op and key, head channels that are not A*K. */
    expect_v2_refused(&img, "\"name\":\"layer3.0.conv1\",\"in\":\"layer2.1.conv3\",\"weights\":"
                            "\"backbone.body.layer3.0.conv1\",\"cin\":16",
                      "\"name\":\"layer3.0.conv1\",\"in\":\"layer2.1.conv3\",\"weights\":"
                      "\"backbone.body.layer3.0.conv1\",\"cin\":17",
                      "node layer3.0.conv1: cin 17");
    expect_v2_refused(&img, "\"add\":\"layer2.0.conv3\"", "\"add\":\"layer2.0.conv1\"",
                      "node layer2.1.conv3: add layer2.0.conv1");
    expect_v2_refused(&img, "\"in\":\"fpn.p6.relu\"", "\"in\":\"fpn.p7.relu\"",
                      "node fpn.p7: conv needs");
    expect_v2_refused(&img, "\"op\":\"maxpool\"", "\"op\":\"minpool\"", "unknown op");
    expect_v2_refused(&img, "\"stride\":2,\"pad\":1}", "\"stridE\":2,\"pad\":1}",
                      "unknown key \"stridE\"");
    expect_v2_refused(&img, "\"num_classes\":2", "\"num_classes\":1",
                      "num_classes (1..64) and labels");
    expect_v2_refused(&img, "\"family\":\"retinanet\"", "\"family\":\"retinanot\"",
                      "family");
    expect_v2_refused(&img, "\"min_size\":64", "\"min_size\":-1", "input needs");
    /* A tensor whose shape disagrees with its node, and one missing. */
    cnp_buf b = {0};
    cnp_buf_append(&b, img.data, img.len);
    uint8_t *p = find_bytes(b.data, b.len, "head.regression_head.bbox_reg.weight");
    CHECK_FATAL(p != NULL);
    p += strlen("head.regression_head.bbox_reg.weight") + 2; /* dtype, ndim */
    CHECK_FATAL(p[0] == 36 && p[4] == 8);
    p[0] = 8, p[4] = 36; /* [8,36,3,3]: as many floats, another shape */
    expect_parse_refused(&b, "has shape [8,36,3,3], node head.box.p3.bbox_reg needs [36,8,3,3]",
                         "tensor shape");
    cnp_buf_free(&b);
    expect_v2_refused(&img, "head.regression_head.bbox_reg.bias",
                      "head.regression_head.bbox_reg.bia_", "tensor "
                                                            "head.regression_head.bbox_reg.bias "
                                                            "(node head.box.p3.bbox_reg) is "
                                                            "missing");
    /* Truncated at every size below the whole: refused, never a crash. */
    for (size_t len = 0; len < img.len; len += 1 + len / 7) {
        CHECK(det_model_parse(img.data, len, "v2.cnw", &m, &err) == CNP_ERR_FORMAT,
              "length %zu", len);
        det_model_free(m);
    }
    /* The fuzz corpus keeps a copy of this file (tests/fuzz/corpus/fuzz_cnw). */
    cnp_buf_free(&img);
    /* The fuzz corpus's copy (tests/fuzz/corpus/fuzz_cnw) is this model at
     * the smallest widths, to stay under the fuzzer's 64 KiB inputs. */
    const char *corpus = getenv("CANOPY_WRITE_CORPUS");
    v2_image(&img, SMALL);
    CHECK(det_model_parse(img.data, img.len, "small.cnw", &m, &err) == CNP_OK, "%s", err.msg);
    CHECK(img.len < 65536, "%zu bytes", img.len);
    det_model_free(m);
    if (corpus)
        write_file(corpus, img.data, img.len);
    cnp_buf_free(&img);
    /* fuzz_safetensors' seed: [2-byte length][config.json][model.safetensors]
     * of the same small checkpoint. */
    const char *st_corpus = getenv("CANOPY_WRITE_CORPUS_ST");
    if (st_corpus) {
        ckpt c;
        make_ckpt(&c, SMALL);
        cnp_buf st = {0}, seed = {0};
        st_write(&c, &st);
        size_t n = strlen(k_config);
        uint8_t len2[2] = {(uint8_t)n, (uint8_t)(n >> 8)};
        cnp_buf_append(&seed, len2, 2);
        cnp_buf_append(&seed, k_config, n);
        cnp_buf_append(&seed, st.data, st.len);
        write_file(st_corpus, seed.data, seed.len);
        cnp_buf_free(&st);
        cnp_buf_free(&seed);
        ckpt_free(&c);
    }
}

/* det_graph_shapes on a hand-made graph: the window formula with stride,
 * padding and dilation, maxpool, upsample_add, and its refusals. */
static void test_shapes(void)
{
    det_node n[5] = {{0}};
    n[0] = (det_node){.op = DET_OP_INPUT, .name = "input", .in = -1, .in2 = -1};
    n[1] = (det_node){.op = DET_OP_CONV, .name = "c", .in = 0, .in2 = -1, .cin = 3, .cout = 5,
                      .k = 3, .stride = 2, .pad = 2, .dilation = 2, .weights = "c"};
    n[2] = (det_node){.op = DET_OP_MAXPOOL, .name = "p", .in = 1, .in2 = -1, .k = 3,
                      .stride = 2, .pad = 1};
    n[3] = (det_node){.op = DET_OP_UPSAMPLE_ADD, .name = "u", .in = 1, .in2 = 2};
    n[4] = (det_node){.op = DET_OP_RELU, .name = "r", .in = 3, .in2 = -1};
    det_graph g = {.n_nodes = 5, .nodes = n};
    int c[5], h[5], w[5];
    cnp_err err = {{0}};
    CHECK_FATAL(det_graph_shapes(&g, 17, 10, c, h, w, &err) == CNP_OK, "%s", err.msg);
    /* floor((17 + 4 - 4 - 1) / 2) + 1 = 9, floor((10 + 4 - 4 - 1) / 2) + 1 = 5. */
    CHECK(c[1] == 5 && h[1] == 9 && w[1] == 5, "%d %d %d", c[1], h[1], w[1]);
    CHECK(c[2] == 5 && h[2] == 5 && w[2] == 3, "%d %d %d", c[2], h[2], w[2]);
    CHECK(c[3] == 5 && h[3] == 9 && w[3] == 5 && h[4] == 9 && w[4] == 5);
    n[1].cin = 4;
    CHECK(det_graph_shapes(&g, 17, 10, c, h, w, &err) == CNP_ERR_FORMAT &&
              strstr(err.msg, "node c: cin 4, but input has 3 channels"),
          "%s", err.msg);
    n[1].cin = 3;
    n[1].pad = 0;
    CHECK(det_graph_shapes(&g, 1, 1, c, h, w, &err) == CNP_ERR_FORMAT &&
              strstr(err.msg, "node c: empty output"),
          "%s", err.msg);
    n[1].pad = 2;
    n[1].in2 = 0; /* a residual of the input's shape cannot add to 5 channels */
    CHECK(det_graph_shapes(&g, 17, 10, c, h, w, &err) == CNP_ERR_FORMAT &&
              strstr(err.msg, "node c: add input"),
          "%s", err.msg);
    n[1].in2 = -1;
    n[3].in2 = 4; /* a later node */
    CHECK(det_graph_shapes(&g, 17, 10, c, h, w, &err) == CNP_ERR_FORMAT &&
              strstr(err.msg, "node u: top 4"),
          "%s", err.msg);
}

/* Version 1 models load as before: no graph. */
static void test_v1_still_loads(void)
{
    det_model *m = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(det_model_load(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw", &m, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_model_graph(m) == NULL && m->format_version == 1 && m->n_layers > 0);
    CHECK(strcmp(det_model_version(m), "crown-1.1") == 0, "%s", det_model_version(m));
    det_model_free(m);
}

/* safetensors details the importer does not reach: F16 and BF16, holes. */
static void test_safetensors(void)
{
    /* [1.0, -2.5] as F16 (0x3c00, 0xc100) and [0.5] as BF16 (0x3f00). */
    const char hdr[] = "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[4,6]}}";
    cnp_buf b = {0};
    uint8_t len8[8] = {(uint8_t)(sizeof hdr - 1)};
    cnp_buf_append(&b, len8, 8);
    cnp_buf_append(&b, hdr, sizeof hdr - 1);
    const uint8_t data[6] = {0x00, 0x3c, 0x00, 0xc1, 0x00, 0x3f};
    cnp_buf_append(&b, data, 6);
    write_file(g_st, b.data, b.len);
    st_file *f = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(st_open(g_st, &f, &err) == CNP_OK, "%s", err.msg);
    double v[2] = {0};
    CHECK(st_read_f64(f, st_find(f, "a"), v, &err) == CNP_OK && v[0] == 1.0 && v[1] == -2.5,
          "%g %g", v[0], v[1]);
    CHECK(st_read_f64(f, st_find(f, "b"), v, &err) == CNP_OK && v[0] == 0.5, "%g", v[0]);
    st_close(f);
    /* A byte left over after the last tensor. */
    cnp_buf_append(&b, "", 1);
    write_file(g_st, b.data, b.len);
    CHECK(st_open(g_st, &f, &err) == CNP_ERR_FORMAT && strstr(err.msg, "after the last"),
          "%s", err.msg);
    /* Byte size that disagrees with the shape. */
    b.len--;
    uint8_t *two = find_bytes(b.data, b.len, "[2]");
    REQUIRE(two);
    two[1] = '3';
    write_file(g_st, b.data, b.len);
    CHECK(st_open(g_st, &f, &err) == CNP_ERR_FORMAT && strstr(err.msg, "tensor a: "),
          "%s", err.msg);
    cnp_buf_free(&b);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/canopy-test-import-%d", (int)getpid());
    REQUIRE(mkdir(g_dir, 0700) == 0);
    snprintf(g_st, sizeof g_st, "%s/model.safetensors", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/config.json", g_dir);
    snprintf(g_cnw, sizeof g_cnw, "%s/out.cnw", g_dir);
    test_shapes();
    test_safetensors();
    test_import_roundtrip();
    test_import_refusals();
    test_v2_refusals();
    test_v1_still_loads();
    unlink(g_st);
    unlink(g_cfg);
    unlink(g_cnw);
    rmdir(g_dir);
    return test_result("test_import");
}
