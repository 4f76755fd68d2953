/* Fuzz target: the .cnw model loader (det_model_parse, what det_model_load
 * runs on the file's bytes; models/FORMAT.md).
 *
 * Each input is loaded twice: as it is (the CRC-32 check turns most mutants
 * away) and with its last four bytes replaced by the right CRC-32, so that
 * the fuzzer reaches the architecture JSON, the tensor directory and the
 * weights behind the checksum.
 *
 * Invariants: no crash or leak; allocation bounded by the file's size (run
 * with -malloc_limit_mb); a model that loads has a version, a power-of-two
 * stride, and a conv with four outputs last, every conv's weights bound;
 * a version 2 model a graph that passes det_graph_check, every conv bound. */
#include <zlib.h>

#include "detect/detect_internal.h"
#include "fuzz_util.h"

static void load(const uint8_t *data, size_t size)
{
    det_model *m = NULL;
    cnp_err err = {{0}};
    cnp_status st = det_model_parse(data, size, "fuzz.cnw", &m, &err);
    if (st != CNP_OK) {
        FUZZ_CHECK(m == NULL && err.msg[0] != '\0');
        return;
    }
    FUZZ_CHECK(m != NULL && det_model_version(m)[0] != '\0');
    if (m->format_version == 2) {
        /* A graph that loads is consistent and fully bound. */
        const det_graph *g = det_model_graph(m);
        FUZZ_CHECK(g != NULL && m->n_layers == 0);
        cnp_err gerr = {{0}};
        FUZZ_CHECK(det_graph_check(g, "fuzz.cnw", &gerr) == CNP_OK);
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i].op == DET_OP_CONV)
                FUZZ_CHECK(g->nodes[i].weight && g->nodes[i].bias);
        det_model_free(m);
        return;
    }
    FUZZ_CHECK(det_model_graph(m) == NULL);
    int stride = det_model_stride(m);
    FUZZ_CHECK(stride >= 1 && (stride & (stride - 1)) == 0);
    FUZZ_CHECK(m->n_layers >= 1);
    const det_layer *last = &m->layers[m->n_layers - 1];
    FUZZ_CHECK(last->type == DET_LAYER_CONV && last->out == 4);
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].type == DET_LAYER_CONV)
            FUZZ_CHECK(m->layers[i].weight && m->layers[i].bias);
    det_model_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load(data, size);
    if (size < 24)
        return 0;
    uint8_t *fixed = malloc(size);
    FUZZ_CHECK(fixed != NULL);
    memcpy(fixed, data, size);
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), fixed, (uInt)(size - 4));
    for (int i = 0; i < 4; i++)
        fixed[size - 4 + i] = (uint8_t)(crc >> (8 * i));
    load(fixed, size);
    free(fixed);
    return 0;
}
