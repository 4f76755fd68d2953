/* A tiny DeepForest CropModel written without torch (tests/cli): the
 * ResNet-18 layout of tests/e2e/test_types.py with narrow layers (widths 4,
 * 8, 16, 32), every conv weight zero and batch norm the identity, so the
 * logits are fc's bias whatever the crop: the classifier gives every tree
 * the type of the largest bias. Labels alive, dead, snag (indices 0, 1, 2). */
#ifndef CANOPY_TESTS_CROPMODEL_UTIL_H
#define CANOPY_TESTS_CROPMODEL_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct cm_tensor {
    char name[128];
    int ndim;
    int dims[4];
    float fill;  /* every value */
    const float *values; /* or these (fc.bias) */
} cm_tensor;

static inline size_t cm_count(const cm_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (size_t)t->dims[i];
    return n;
}

static inline int cm_conv(cm_tensor *t, int n, const char *name, int cout, int cin, int k)
{
    t[n] = (cm_tensor){.ndim = 4, .dims = {cout, cin, k, k}};
    snprintf(t[n].name, sizeof t[n].name, "%s.weight", name);
    return n + 1;
}

static inline int cm_bn(cm_tensor *t, int n, const char *name, int c)
{
    static const char *const part[] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        t[n + i] = (cm_tensor){.ndim = 1, .dims = {c}, .fill = i == 0 || i == 3 ? 1.0f : 0.0f};
        snprintf(t[n + i].name, sizeof t[n + i].name, "%s.%s", name, part[i]);
    }
    return n + 4;
}

/* Writes dir/model.safetensors and dir/config.json; 0 on success. */
static inline int cm_write_constant(const char *dir, const float bias[3])
{
    static const int widths[4] = {4, 8, 16, 32};
    cm_tensor t[128];
    int n = 0, cin = widths[0];
    char pre[32], name[64];
    n = cm_conv(t, n, "model.conv1", widths[0], 3, 7);
    n = cm_bn(t, n, "model.bn1", widths[0]);
    for (int layer = 1; layer <= 4; layer++)
        for (int i = 0; i < 2; i++) {
            int w = widths[layer - 1];
            snprintf(pre, sizeof pre, "model.layer%d.%d", layer, i);
            snprintf(name, sizeof name, "%s.conv1", pre);
            n = cm_conv(t, n, name, w, cin, 3);
            snprintf(name, sizeof name, "%s.bn1", pre);
            n = cm_bn(t, n, name, w);
            snprintf(name, sizeof name, "%s.conv2", pre);
            n = cm_conv(t, n, name, w, w, 3);
            snprintf(name, sizeof name, "%s.bn2", pre);
            n = cm_bn(t, n, name, w);
            if (i == 0 && layer > 1) {
                snprintf(name, sizeof name, "%s.downsample.0", pre);
                n = cm_conv(t, n, name, w, cin, 1);
                snprintf(name, sizeof name, "%s.downsample.1", pre);
                n = cm_bn(t, n, name, w);
            }
            cin = w;
        }
    t[n] = (cm_tensor){.name = "model.fc.weight", .ndim = 2, .dims = {3, cin}};
    t[n + 1] = (cm_tensor){.name = "model.fc.bias", .ndim = 1, .dims = {3}, .values = bias};
    n += 2;
    /* The safetensors header: {"name": {dtype, shape, data_offsets}}. */
    size_t cap = 64 * 1024, len = 0, off = 0;
    char *head = malloc(cap);
    if (!head)
        return -1;
    len += (size_t)snprintf(head + len, cap - len, "{");
    for (int i = 0; i < n; i++) {
        size_t bytes = cm_count(&t[i]) * 4;
        len += (size_t)snprintf(head + len, cap - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[",
                                i ? "," : "", t[i].name);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(head + len, cap - len, "%s%d", d ? "," : "", t[i].dims[d]);
        len += (size_t)snprintf(head + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off,
                                off + bytes);
        off += bytes;
    }
    len += (size_t)snprintf(head + len, cap - len, "}");
    while (len % 8)
        head[len++] = ' ';
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    mkdir(dir, 0755);
    FILE *f = fopen(path, "wb");
    int rc = f ? 0 : -1;
    unsigned char hl[8];
    for (int b = 0; b < 8; b++)
        hl[b] = (unsigned char)((uint64_t)len >> (8 * b));
    if (f && (fwrite(hl, 1, 8, f) != 8 || fwrite(head, 1, len, f) != len))
        rc = -1;
    for (int i = 0; f && rc == 0 && i < n; i++)
        for (size_t k = 0; k < cm_count(&t[i]); k++) {
            float v = t[i].values ? t[i].values[k] : t[i].fill; /* little-endian host */
            if (fwrite(&v, 4, 1, f) != 1)
                rc = -1;
        }
    if (f && fclose(f) != 0)
        rc = -1;
    free(head);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("{\"cropmodel\": {\"architecture\": \"resnet18\", \"label_dict\": {\"alive\": 0, "
          "\"dead\": 1, \"snag\": 2}, \"resize\": [224, 224], \"resize_interpolation\": "
          "\"bilinear\", \"normalize\": null, \"expand\": 0}}",
          f);
    return fclose(f) == 0 ? rc : -1;
}

#endif
