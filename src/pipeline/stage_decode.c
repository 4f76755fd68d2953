/* Stage: decode. Cuts a chunk into slices whose decoded pixels fit the
 * in-flight budget, then decodes a slice's images on the pool: PNG through
 * libpng, GeoTIFF / COG / JPEG through GDAL (canopy/raster.h), chosen by
 * content. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "canopy/raster.h"
#include "canopy/log.h"
#include "pipeline/pl_internal.h"

/* Opens a large TIFF for processing in windows when its pixels exceed
 * [limits] window_pixels (and not max_pixels); true when the item is now
 * windowed or failed. */
static bool open_windowed(const pl_ctx *x, pl_item *it, uint32_t w, uint32_t h)
{
    uint64_t px = (uint64_t)w * h;
    if (px <= x->sp.window_pixels)
        return false;
    const char *kind = img_raster_sniff(it->bytes.body.data, it->bytes.body.len);
    if (!kind || strcmp(kind, "tiff") != 0)
        return false; /* PNG and JPEG decode sequentially: whole */
    cnp_err err;
    cnp_status st;
    if (x->sp.max_pixels && px > x->sp.max_pixels) {
        item_fail(it, CNP_ERR_LIMIT, "%s: %ux%u = %llu pixels exceeds the limit of %llu "
                  "pixels (max_pixels)", it->name, w, h, (unsigned long long)px,
                  (unsigned long long)x->sp.max_pixels);
        return true;
    }
    st = img_raster_open(it->bytes.body.data, it->bytes.body.len, NULL, it->name, &it->raster,
                         &it->geo, &err);
    if (st != CNP_OK)
        item_fail(it, st, "%s", err.msg);
    return true;
}

/* An object streamed to a temporary file ([input] spill_bytes): a TIFF above
 * [limits] window_pixels is opened there for reading in windows (its bytes
 * are never in memory), anything else is read into memory and decoded as
 * usual. Either way the file is removed now (GDAL keeps its descriptor).
 * True when the item is now windowed or failed. */
static bool open_spilled(const pl_ctx *x, pl_item *it)
{
    char path[sizeof it->bytes.spill_path];
    snprintf(path, sizeof path, "%s", it->bytes.spill_path);
    it->bytes.spill_path[0] = '\0';
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(head, 1, sizeof head, f) : 0;
    if (f)
        fclose(f);
    const char *kind = img_raster_sniff(head, got);
    cnp_err err;
    cnp_status st;
    img_raster *r = NULL;
    img_georef geo;
    if (kind && strcmp(kind, "tiff") == 0 &&
        img_raster_open(NULL, 0, path, it->name, &r, &geo, &err) == CNP_OK) {
        uint64_t px = (uint64_t)img_raster_width(r) * img_raster_height(r);
        if (px > x->sp.window_pixels && (!x->sp.max_pixels || px <= x->sp.max_pixels)) {
            unlink(path);
            LOG_DEBUG(x->mode, "%s: %lld bytes streamed to a temporary file, read in windows",
                      it->name, (long long)it->bytes.size);
            it->raster = r;
            it->geo = geo;
            return true;
        }
        img_raster_close(r);
        img_georef_free(&geo);
    }
    st = cnp_file_read(path, 0, &it->bytes.body, &err);
    unlink(path);
    if (st != CNP_OK) {
        item_fail(it, CNP_ERR_TRANSIENT, "%s: reading its temporary file back: %s", it->name,
                  err.msg);
        return true;
    }
    return false;
}

/* The size of a local VRT file (its bytes alone do not say). */
static bool vrt_size(const pl_item *it, uint32_t *w, uint32_t *h)
{
    const char *kind = img_raster_sniff(it->bytes.body.data, it->bytes.body.len);
    img_raster *r = NULL;
    cnp_err err;
    if (!kind || strcmp(kind, "vrt") != 0 ||
        img_raster_open(NULL, 0, it->path, it->path, &r, NULL, &err) != CNP_OK)
        return false;
    *w = img_raster_width(r);
    *h = img_raster_height(r);
    img_raster_close(r);
    return true;
}

/* Pixels an item will hold at once: decoded whole, or one window of a raster
 * processed in windows (0 when its header is unreadable: decoding then fails
 * without allocating). */
static uint64_t item_pixels(const pl_ctx *x, pl_item *it)
{
    uint32_t w = 0, h = 0;
    cnp_err err;
    if (it->state != ITEM_FETCHED)
        return 0;
    if (!it->raster && it->bytes.spill_path[0] && open_spilled(x, it))
        return it->state == ITEM_FETCHED ? pipe_device_window_side(x->dev) *
                                               (uint64_t)pipe_device_window_side(x->dev)
                                         : 0;
    if (!it->raster) {
        if (img_raster_probe(it->bytes.body.data, it->bytes.body.len, it->name, &w, &h, &err) !=
                CNP_OK &&
            !(it->path && vrt_size(it, &w, &h)))
            return 0;
        if (!open_windowed(x, it, w, h))
            return (uint64_t)w * h;
    }
    uint64_t side = pipe_device_window_side(x->dev);
    return side * side;
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
    if (it->raster) { /* read window by window on the device stage */
        item_advance(it, ITEM_DECODED);
        return;
    }
    cnp_err err;
    double t0 = cnp_now();
    /* A local file is decoded with its sidecar files (georeferencing) and,
     * a VRT, the files it names; an object's bytes are all there is. */
    cnp_status st =
        it->path ? img_raster_decode_file(it->bytes.body.data, it->bytes.body.len, it->path,
                                          j->x->sp.max_pixels, &it->img, &it->geo, &it->nodata,
                                          &err)
                 : img_raster_decode(it->bytes.body.data, it->bytes.body.len, it->name,
                                     j->x->sp.max_pixels, &it->img, &it->geo, &it->nodata,
                                     &err);
    it->t_decode = (cnp_now() - t0) * 1e3;
    cnp_buf_free(&it->bytes.body);
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
        uint64_t px = item_pixels(x, it);
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
