/* Fuzz target: checkpoint import (`canopy model import`): the safetensors
 * reader and config.json through det_import_load, the RetinaNet graph built
 * from the tensors, batch norm folding and the .cnw version 2 writer.
 *
 * Input: two little-endian bytes n, then n bytes of config.json, then the
 * model.safetensors bytes; both are written into a scratch directory that is
 * imported as a Hugging Face model directory.
 *
 * Invariants: no crash or leak; a refusal has a message naming a file; an
 * import that succeeds writes a .cnw that det_model_load reads back with the
 * same graph (what canopy writes, it reads). */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detect/detect_internal.h"
#include "detect/import.h"
#include "fuzz_util.h"

static char g_dir[64], g_st[128], g_cfg[128], g_cnw[128];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(g_dir, sizeof g_dir, "/tmp/canopy-fuzz-st-%ld", (long)getpid());
    if (mkdir(g_dir, 0700) != 0 && errno != EEXIST)
        abort();
    snprintf(g_st, sizeof g_st, "%s/model.safetensors", g_dir);
    snprintf(g_cfg, sizeof g_cfg, "%s/config.json", g_dir);
    snprintf(g_cnw, sizeof g_cnw, "%s/m.cnw", g_dir);
    return 0;
}

static void put(const char *path, const uint8_t *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(len == 0 || fwrite(data, 1, len, f) == len);
    FUZZ_CHECK(fclose(f) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    if (n > size - 2)
        n = size - 2;
    put(g_cfg, data + 2, n);
    put(g_st, data + 2 + n, size - 2 - n);
    det_import *im = NULL;
    cnp_err err = {{0}};
    if (det_import_load(g_dir, NULL, &im, &err) != CNP_OK) {
        FUZZ_CHECK(im == NULL);
        FUZZ_CHECK(err.msg[0] != '\0');
        FUZZ_CHECK(strstr(err.msg, g_dir) != NULL);
        return 0;
    }
    FUZZ_CHECK(det_import_write(im, g_cnw, &err) == CNP_OK);
    det_model *m = NULL;
    if (det_model_load(g_cnw, &m, &err) != CNP_OK) {
        fprintf(stderr, "an imported model does not load: %s\n", err.msg);
        FUZZ_CHECK(!"an imported model loads");
    }
    const det_graph *a = det_import_graph(im), *b = det_model_graph(m);
    FUZZ_CHECK(b != NULL && a->n_nodes == b->n_nodes);
    FUZZ_CHECK(a->retina.num_classes == b->retina.num_classes);
    det_model_free(m);
    det_import_free(im);
    unlink(g_cnw);
    return 0;
}
