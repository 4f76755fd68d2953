/* Sink: a local directory (run). Writes each encoded item's outputs as
 * <outdir>/<stem>.<suffix>; nothing to commit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/cache.h"
#include "pipeline/sources.h"

struct pl_dir_sink {
    char *outdir;
};

/* The j-th output to write: trees.json last, so that it marks an image whose
 * outputs are all in place (run --skip-existing, files_resume.c). */
static int write_order(int j)
{
    if (j == PIPE_OUT_COUNT - 1)
        return PIPE_OUT_TREES_JSON;
    return j < PIPE_OUT_TREES_JSON ? j : j + 1;
}

static void dir_write(pl_ctx *x, void *self, pl_chunk *c)
{
    pl_dir_sink *s = self;
    for (size_t i = 0; i < c->nitems; i++) {
        pl_item *it = &c->items[i];
        if (it->state != ITEM_ENCODED)
            continue;
        double t0 = cnp_now();
        bool ok = true;
        uint64_t bytes = 0;
        for (int j = 0; j < PIPE_OUT_COUNT && ok; j++) {
            int k = write_order(j);
            cnp_spool *data = &it->outs.out[k];
            uint64_t size = cnp_spool_size(data);
            if (size == 0)
                continue;
            bytes += size;
            size_t len = strlen(s->outdir) + strlen(it->out_stem) + strlen(pipe_out_suffix[k]) + 2;
            cnp_err err;
            if (!(it->out_name[k] = malloc(len))) {
                item_fail(it, CNP_ERR_NOMEM, "%s: out of memory", it->name);
                ok = false;
                break;
            }
            snprintf(it->out_name[k], len, "%s/%s%s", s->outdir, it->out_stem, pipe_out_suffix[k]);
            /* A spooled output is renamed into place, the rest written. */
            cnp_status st = cnp_spool_save(data, it->out_name[k], &err);
            if (st != CNP_OK) {
                /* The output directory failing is not the image's fault. */
                item_fail(it, CNP_ERR_TRANSIENT, "%s", err.msg);
                ok = false;
            }
        }
        it->t_upload = (cnp_now() - t0) * 1e3;
        if (ok) {
            cnp_metrics_add(x->metrics, "canopy_bytes_out_total", NULL, (double)bytes);
            item_advance(it, ITEM_UPLOADED);
        }
        pipe_outputs_free(&it->outs);
    }
}

static bool dir_commit(pl_ctx *x, void *self, pl_chunk *c)
{
    (void)x;
    (void)self;
    for (size_t i = 0; i < c->nitems; i++)
        if (c->items[i].state == ITEM_UPLOADED)
            item_advance(&c->items[i], ITEM_COMMITTED);
    return true;
}

const pl_sink_ops pl_sink_dir_ops = {
    .write = dir_write,
    .commit = dir_commit,
};

/* Creates outdir and proves it takes a file, so that an unusable output
 * is one error up front rather than a failure per image. */
cnp_status pl_dir_sink_create(const char *outdir, pl_dir_sink **out, cnp_err *err)
{
    struct stat st;
    *out = NULL;
    if (stat(outdir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        cnp_err_set(err, "--output %s: exists and is not a directory", outdir);
        return CNP_ERR_CONFIG;
    }
    if (cnp_mkdir_p(outdir) != 0) {
        cnp_err_set(err, "--output %s: cannot create: %s", outdir, strerror(errno));
        return CNP_ERR_CONFIG;
    }
    size_t len = strlen(outdir) + 32;
    char *probe = malloc(len);
    if (!probe) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    snprintf(probe, len, "%s/.canopy-write-XXXXXX", outdir);
    int fd = mkstemp(probe);
    if (fd < 0) {
        cnp_err_set(err, "--output %s: not writable: %s", outdir, strerror(errno));
        free(probe);
        return CNP_ERR_CONFIG;
    }
    close(fd);
    unlink(probe);
    free(probe);
    pl_dir_sink *s = calloc(1, sizeof *s);
    if (!s || !(s->outdir = strdup(outdir))) {
        free(s);
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    *out = s;
    return CNP_OK;
}

void pl_dir_sink_free(pl_dir_sink *s)
{
    if (!s)
        return;
    free(s->outdir);
    free(s);
}
