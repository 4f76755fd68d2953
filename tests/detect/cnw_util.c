#include "detect/cnw_util.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

const tw_layer tw_tiny_layers[] = {
    {"conv", "c1", 4, 8, 3, 1, 1},   {"maxpool", NULL, 0, 0, 0, 0, 0},
    {"conv", "c2", 8, 12, 3, 2, 1},  {"maxpool", NULL, 0, 0, 0, 0, 0},
    {"conv", "c3", 12, 8, 3, 4, 1},  {"conv", "c4", 8, 8, 1, 1, 1},
    {"conv", "head", 8, 4, 1, 1, 0},
};
const int tw_tiny_n_layers = 7;

uint32_t tw_rand(uint32_t *s)
{
    /* xorshift32 */
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

float tw_randf(uint32_t *s)
{
    return (float)(tw_rand(s) >> 8) / 16777216.0f;
}

static float gauss(uint32_t *s)
{
    float u = tw_randf(s) + 1e-7f, v = tw_randf(s);
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

void tw_model_random(tw_model *m, const char *version, int stride, const tw_layer *layers,
                     int n_layers, uint32_t seed)
{
    memset(m, 0, sizeof *m);
    uint32_t s = seed;
    size_t len = (size_t)snprintf(
        m->arch, sizeof m->arch,
        "{\"name\":\"canopy-crown\",\"version\":\"%s\",\"stride\":%d,\"input\":{\"channels\":"
        "[\"r\",\"g\",\"b\",\"exg\"],\"mean\":[0.4,0.45,0.35,0.15],\"std\":[0.2,0.19,0.18,0.1]},"
        "\"layers\":[",
        version, stride);
    for (int i = 0; i < n_layers; i++) {
        const tw_layer *l = &layers[i];
        if (strcmp(l->type, "conv") != 0) {
            len += (size_t)snprintf(m->arch + len, sizeof m->arch - len, "%s{\"type\":\"%s\"}",
                                    i ? "," : "", l->type);
            continue;
        }
        len += (size_t)snprintf(m->arch + len, sizeof m->arch - len,
                                "%s{\"type\":\"conv\",\"name\":\"%s\",\"in\":%d,\"out\":%d,"
                                "\"k\":%d,\"dilation\":%d,\"act\":\"%s\"}",
                                i ? "," : "", l->name, l->in, l->out, l->k, l->dilation,
                                l->relu ? "relu" : "none");
        bool head = i == n_layers - 1;
        size_t nw = (size_t)l->out * l->in * l->k * l->k;
        tw_tensor *w = &m->tensors[m->n_tensors++];
        tw_tensor *b = &m->tensors[m->n_tensors++];
        snprintf(w->name, sizeof w->name, "%s.weight", l->name);
        snprintf(b->name, sizeof b->name, "%s.bias", l->name);
        w->ndim = 4;
        w->dims[0] = (uint32_t)l->out;
        w->dims[1] = (uint32_t)l->in;
        w->dims[2] = w->dims[3] = (uint32_t)l->k;
        b->ndim = 1;
        b->dims[0] = (uint32_t)l->out;
        w->data = malloc(nw * sizeof(float));
        b->data = malloc((size_t)l->out * sizeof(float));
        float sd = sqrtf(2.0f / (float)(l->in * l->k * l->k));
        for (size_t k = 0; k < nw; k++)
            w->data[k] = gauss(&s) * sd;
        for (int k = 0; k < l->out; k++)
            b->data[k] = gauss(&s) * 0.1f;
        if (head) { /* spread the heatmap logits: peaks far from ties */
            for (size_t k = 0; k < nw / (size_t)l->out; k++)
                w->data[k] *= 8.0f;
            b->data[0] *= 8.0f;
        }
    }
    snprintf(m->arch + len, sizeof m->arch - len,
             "],\"outputs\":[\"heatmap\",\"log_radius\",\"dx\",\"dy\"]}");
}

void tw_model_free(tw_model *m)
{
    for (int i = 0; i < m->n_tensors; i++)
        free(m->tensors[i].data);
    m->n_tensors = 0;
}

static void put(cnp_buf *b, uint64_t v, int n)
{
    uint8_t x[8];
    for (int i = 0; i < n; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    cnp_buf_append(b, x, (size_t)n);
}

static size_t tensor_bytes(const tw_tensor *t)
{
    size_t n = 4;
    for (int d = 0; d < t->ndim; d++)
        n *= t->dims[d];
    return n;
}

void tw_model_write(const tw_model *m, cnp_buf *out)
{
    size_t start = out->len;
    cnp_buf_append(out, "CNPYWTS\0", 8);
    put(out, 1, 4);
    size_t alen = strlen(m->arch);
    put(out, alen, 4);
    cnp_buf_append(out, m->arch, alen);
    put(out, (uint64_t)m->n_tensors, 4);
    size_t dir = out->len - start;
    for (int i = 0; i < m->n_tensors; i++)
        dir += 2 + strlen(m->tensors[i].name) + 2 + 4 * (size_t)m->tensors[i].ndim + 16;
    size_t off = (dir + 15) / 16 * 16;
    for (int i = 0; i < m->n_tensors; i++) {
        const tw_tensor *t = &m->tensors[i];
        put(out, strlen(t->name), 2);
        cnp_buf_append(out, t->name, strlen(t->name));
        put(out, 1, 1);
        put(out, (uint64_t)t->ndim, 1);
        for (int d = 0; d < t->ndim; d++)
            put(out, t->dims[d], 4);
        put(out, off, 8);
        put(out, tensor_bytes(t), 8);
        off = (off + tensor_bytes(t) + 15) / 16 * 16;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const tw_tensor *t = &m->tensors[i];
        while ((out->len - start) % 16)
            put(out, 0, 1);
        for (size_t k = 0; k < tensor_bytes(t) / 4; k++) {
            uint32_t u;
            memcpy(&u, &t->data[k], 4);
            put(out, u, 4);
        }
    }
    put(out, 0, 4);
    tw_fix_crc(out);
}

void tw_fix_crc(cnp_buf *b)
{
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b->data, (uInt)(b->len - 4));
    for (int i = 0; i < 4; i++)
        b->data[b->len - 4 + (size_t)i] = (uint8_t)(c >> (8 * i));
}

void tw_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

void tw_image_random(cnp_image *img, uint32_t w, uint32_t h, uint32_t seed)
{
    uint32_t s = seed;
    cnp_err err;
    if (cnp_image_alloc(img, w, h, &err) != CNP_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    for (size_t i = 0; i < (size_t)w * h * 4; i++)
        img->rgba[i] = (uint8_t)(tw_rand(&s) >> 24);
}
