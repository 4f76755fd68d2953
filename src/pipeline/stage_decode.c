/* Stage: decode. Cuts a chunk into slices whose decoded pixels fit the
 * in-flight budget, then decodes a slice's images on the pool: PNG through
 * libpng, GeoTIFF / COG / JPEG through GDAL (canopy/raster.h), chosen by
 * content. */
#include <string.h>

#include "canopy/raster.h"
#include "canopy/log.h"
#include "pipeline/pl_internal.h"

/* Pixels an item will hold once decoded (0 when its header is unreadable:
 * decoding then fails without allocating). */
static uint64_t item_pixels(const pl_item *it)
{
    uint32_t w = 0, h = 0;
    cnp_err err;
    if (it->state != ITEM_FETCHED ||
        img_raster_probe(it->obj.body.data, it->obj.body.len, it->name, &w, &h, &err) != CNP_OK)
        return 0;
    return (uint64_t)w * h;
}

/* An RGB detector sees nothing useful in a grey image. */
static bool is_grey(const cnp_image *img)
{
    size_t n = (size_t)img->width * img->height;
    const uint8_t *p = img->rgba;
    for (size_t i = 0; i < n; i++, p += 4)
        if (p[0] != p[1] || p[1] != p[2])
            return false;
    return n > 0;
}

struct decode_job {
    pl_ctx *x;
    pl_chunk *c;
    size_t begin;
};

static void decode_one(void *arg, size_t i)
{
    struct decode_job *j = arg;
    pl_item *it = &j->c->items[j->begin + i];
    if (it->state != ITEM_FETCHED)
        return;
    cnp_err err;
    double t0 = cnp_now();
    cnp_status st = img_raster_decode(it->obj.body.data, it->obj.body.len, it->name,
                                      j->x->sp.max_pixels, &it->img, &it->geo, &it->nodata,
                                      &err);
    it->t_decode = (cnp_now() - t0) * 1e3;
    cnp_buf_free(&it->obj.body);
    if (st != CNP_OK) {
        item_fail(it, st, "%s", err.msg);
        return;
    }
    if (j->x->sp.detector && is_grey(&it->img)) {
        it->warning = "grey image: the tree detector expects RGB";
        LOG_WARN(j->x->mode, "%s: %s", it->name, it->warning);
    }
    item_advance(it, ITEM_DECODED);
}

/* Takes budget for items from `begin` on: waits for the first, then adds
 * the following ones while they fit without waiting. */
static size_t reserve_slice(pl_ctx *x, pl_chunk *c, size_t begin)
{
    size_t end = begin;
    for (; end < c->nitems; end++) {
        pl_item *it = &c->items[end];
        uint64_t px = item_pixels(it);
        if (end == begin)
            budget_acquire(&x->budget, px);
        else if (!budget_try_acquire(&x->budget, px))
            break;
        it->budget = px;
    }
    return end;
}

void stage_decode_job(pl_ctx *x, pl_chunk *c, size_t begin, size_t *end)
{
    *end = reserve_slice(x, c, begin);
    struct decode_job j = {.x = x, .c = c, .begin = begin};
    cnp_pool_for(x->pool, *end - begin, decode_one, &j);
}
