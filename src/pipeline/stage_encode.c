/* Stage: encode. Georeferencing (map and lon/lat positions), then mask,
 * overlay, trees.json and trees.geojson of each processed image on the
 * pool; the pixels are freed and their budget returned right after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "canopy/log.h"
#include "pipeline/pl_internal.h"

/* A georeferenced input whose pixels are more than twice or less than half
 * the model's training resolution: the detector sees trees at a scale it
 * never learnt. Warns naming both (added to a warning the item has). */
static void check_resolution(const pl_ctx *x, pl_item *it)
{
    if (!x->sp.model || !it->geo.valid)
        return;
    double px = img_georef_pixel_m(&it->geo, it->res.width / 2.0, it->res.height / 2.0);
    double want = det_model_resolution_m(x->sp.model);
    if (!(px > 0) || (px <= 2 * want && px >= want / 2))
        return;
    char text[sizeof it->warning_buf];
    snprintf(text, sizeof text, "%s%spixel size %.3g m is more than 2x from the model's "
             "training resolution %.3g m: resample the input (gdalwarp -tr %g %g) for "
             "reliable detections", it->warning ? it->warning : "", it->warning ? "; " : "",
             px, want, want, want);
    memcpy(it->warning_buf, text, sizeof text);
    it->warning = it->warning_buf;
    LOG_WARN(x->mode, "%s: %s", it->name, it->warning);
}

struct encode_job {
    pl_ctx *x;
    pl_chunk *c;
    size_t begin;
};

static void encode_one(void *arg, size_t i)
{
    struct encode_job *j = arg;
    pl_item *it = &j->c->items[j->begin + i];
    if (it->state == ITEM_PROCESSED) {
        const pl_stage_params *sp = &j->x->sp;
        cnp_err err;
        double t0 = cnp_now();
        /* trees.json names the object key, or the file's own name. */
        const char *image_name = it->key;
        if (!image_name) {
            const char *slash = strrchr(it->path, '/');
            image_name = slash ? slash + 1 : it->path;
        }
        pipe_encode_params ep = {.output = &sp->output, .detector = sp->detector,
                                 .model_version = sp->model_version, .model = sp->model,
                                 .classifier = sp->classifier, .types = sp->types};
        pipe_encode_in in = {.img = it->img.rgba ? &it->img : NULL, .r = &it->res,
                             .image_name = image_name,
                             .nodata = it->nodata,
                             .types = it->meta ? (const char *const *)it->meta->tree_types
                                               : NULL,
                             .n_types = it->meta ? it->meta->n_tree_types : 0};
        cnp_status st = CNP_OK;
        if (it->geo.valid &&
            (st = pipe_georeference(&it->geo, &it->res, &it->trees_geo, it->footprint, &err)) ==
                CNP_OK) {
            in.geo = &it->geo;
            in.trees_geo = it->trees_geo;
            in.footprint = it->footprint;
        }
        if (st == CNP_OK) {
            check_resolution(j->x, it);
            st = pipe_encode(&ep, &in, &it->outs, &err);
        }
        else
            cnp_err_prefix(&err, "%s", it->name);
        it->t_encode = (cnp_now() - t0) * 1e3;
        if (st != CNP_OK)
            item_fail(it, st, "%s", err.msg);
        else
            item_advance(it, ITEM_ENCODED);
    }
    cnp_image_free(&it->img);
    free(it->res.mask);
    it->res.mask = NULL;
}

void stage_encode_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t end)
{
    struct encode_job j = {.x = x, .c = c, .begin = begin};
    cnp_pool_for(x->pool, end - begin, encode_one, &j);
    for (size_t i = begin; i < end; i++) {
        budget_release(&x->budget, c->items[i].budget);
        c->items[i].budget = 0;
    }
}
