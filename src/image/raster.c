/* Rasters through GDAL and their georeferencing. See canopy/raster.h. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cpl_conv.h>
#include <cpl_error.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <ogr_srs_api.h>

#include "canopy/raster.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_uint g_seq;

/* GDAL's block cache would otherwise take 5 % of the machine's memory: the
 * pipeline bounds memory itself, and reads each block about once. */
static void gdal_init(void)
{
    if (!CPLGetConfigOption("GDAL_CACHEMAX", NULL))
        CPLSetConfigOption("GDAL_CACHEMAX", "64");
    /* GDAL's messages never reach stderr: each failure's own message
     * (CPLGetLastErrorMsg, per thread) goes into the caller's error. */
    CPLSetErrorHandler(CPLQuietErrorHandler);
    GDALAllRegister();
}

void img_gdal_init(void)
{
    pthread_once(&g_once, gdal_init);
}

const char *img_raster_sniff(const void *data, size_t len)
{
    const unsigned char *p = data;
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "png";
    if (len >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0 ||
                     memcmp(p, "II+\0", 4) == 0 || memcmp(p, "MM\0+", 4) == 0))
        return "tiff";
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return "jpeg";
    size_t i = len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0; /* UTF-8 BOM */
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (len - i >= 11 && memcmp(p + i, "<VRTDataset", 11) == 0)
        return "vrt";
    return NULL;
}

/* Why data is none of the formats canopy reads, in words. */
static void unknown_reason(const void *data, size_t len, const char *name, cnp_err *err)
{
    const unsigned char *p = data;
    size_t n = len < 512 ? len : 512, text = 0;
    for (size_t i = 0; i < n; i++)
        text += (p[i] >= 0x20 && p[i] < 0x7F) || p[i] == '\n' || p[i] == '\r' ||
                p[i] == '\t' || p[i] >= 0x80;
    cnp_err_set(err, "%s: not a raster canopy can read (PNG, JPEG, GeoTIFF/COG, or a VRT "
                     "file): %s",
                name, len == 0 ? "the file is empty"
                      : text == n ? "it holds text, whatever its name says"
                                  : "its first bytes match none of these formats");
}

/* Whether the name says PNG: libpng's own reason is then the right one. */
static bool named_png(const char *name)
{
    size_t n = strlen(name);
    return n >= 4 && strcasecmp(name + n - 4, ".png") == 0;
}

/* Refuses bytes that are no raster, or a VRT held in memory. */
static cnp_status refuse_unknown(const void *data, size_t len, const char *name,
                                 const char *kind, cnp_err *err)
{
    if (kind)
        cnp_err_set(err, "%s: a VRT is read only from a local file (canopy run), where the "
                         "files it names are", name);
    else
        unknown_reason(data, len, name, err);
    return CNP_ERR_FORMAT;
}

/* ---- opening from memory -------------------------------------------------- */

struct mem_ds {
    char path[64];
    GDALDatasetH ds;
};

/* Opens data (or, data NULL, the file `path`) as a GDAL dataset, read-only
 * and without a copy. GDAL's messages are kept from stderr and put into err. */
static cnp_status ds_open(const void *data, size_t len, const char *path, const char *name,
                          struct mem_ds *m, cnp_err *err)
{
    /* A VRT names other files: read only when the user's own file names
     * them (a path), never from downloaded bytes. */
    static const char *const drivers[] = {"GTiff", "COG", "JPEG", "PNG", NULL};
    static const char *const file_drivers[] = {"GTiff", "COG", "JPEG", "PNG", "VRT", NULL};
    pthread_once(&g_once, gdal_init);
    m->path[0] = '\0';
    m->ds = NULL;
    if (data) {
        snprintf(m->path, sizeof m->path, "/vsimem/canopy/%u.img", atomic_fetch_add(&g_seq, 1));
        VSILFILE *f = VSIFileFromMemBuffer(m->path, (GByte *)data, (vsi_l_offset)len, FALSE);
        if (!f) {
            cnp_err_set(err, "%s: cannot map the data for GDAL", name);
            return CNP_ERR_NOMEM;
        }
        VSIFCloseL(f);
    }
    CPLErrorReset();
    m->ds = GDALOpenEx(data ? m->path : path, GDAL_OF_RASTER | GDAL_OF_READONLY,
                       data ? drivers : file_drivers, NULL, NULL);
    if (!m->ds) {
        const char *why = CPLGetLastErrorMsg();
        cnp_err_set(err, "%s: not a raster canopy can read (PNG, JPEG, GeoTIFF/COG, VRT)%s%s", name,
                    why && why[0] ? ": " : "", why ? why : "");
        if (m->path[0])
            VSIUnlink(m->path);
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

static cnp_status mem_open(const void *data, size_t len, const char *name, struct mem_ds *m,
                           cnp_err *err)
{
    return ds_open(data, len, NULL, name, m, err);
}

static void mem_close(struct mem_ds *m)
{
    if (m->ds)
        GDALClose(m->ds);
    m->ds = NULL;
    if (m->path[0])
        VSIUnlink(m->path);
}

cnp_status img_raster_probe(const void *data, size_t len, const char *name, uint32_t *width,
                            uint32_t *height, cnp_err *err)
{
    const char *kind = img_raster_sniff(data, len);
    if (kind && strcmp(kind, "png") == 0)
        return img_png_probe(data, len, name, width, height, err);
    if (!kind && named_png(name))
        return img_png_probe(data, len, name, width, height, err);
    if (!kind || strcmp(kind, "vrt") == 0)
        return refuse_unknown(data, len, name, kind, err);
    struct mem_ds m;
    cnp_status result = mem_open(data, len, name, &m, err);
    if (result != CNP_OK)
        return result;
    *width = (uint32_t)GDALGetRasterXSize(m.ds);
    *height = (uint32_t)GDALGetRasterYSize(m.ds);
    mem_close(&m);
    return CNP_OK;
}

/* ---- georeferencing --------------------------------------------------------- */

void img_georef_free(img_georef *g)
{
    if (!g)
        return;
    CPLFree(g->wkt);
    if (g->to_wgs84)
        OCTDestroyCoordinateTransformation(g->to_wgs84);
    memset(g, 0, sizeof *g);
}

void img_georef_pixel_to_map(const img_georef *g, double px, double py, double *mx, double *my)
{
    GDALApplyGeoTransform((double *)g->gt, px, py, mx, my);
}

cnp_status img_georef_to_lonlat(const img_georef *g, size_t n, double *x, double *y,
                                cnp_err *err)
{
    if (!g->valid || !g->to_wgs84) {
        cnp_err_set(err, "not georeferenced");
        return CNP_ERR_INVALID;
    }
    int *ok = malloc((n ? n : 1) * sizeof *ok);
    if (!ok) {
        cnp_err_set(err, "out of memory");
        return CNP_ERR_NOMEM;
    }
    int all = OCTTransformEx(g->to_wgs84, (int)n, x, y, NULL, ok);
    for (size_t i = 0; all && i < n; i++)
        all = ok[i];
    free(ok);
    if (!all) {
        cnp_err_set(err, "a point could not be transformed to WGS 84");
        return CNP_ERR_FORMAT;
    }
    return CNP_OK;
}

double img_georef_pixel_m(const img_georef *g, double px, double py)
{
    double area = fabs(g->gt[1] * g->gt[5] - g->gt[2] * g->gt[4]);
    double side = sqrt(area);
    if (!g->geographic)
        return side * g->unit_m;
    /* Degrees: metres per degree of latitude, and of longitude at this row. */
    double mx, my;
    img_georef_pixel_to_map(g, px, py, &mx, &my);
    double lat = my * M_PI / 180.0;
    double m_lat = 111132.92 - 559.82 * cos(2 * lat);
    double m_lon = 111412.84 * cos(lat);
    return sqrt(area * m_lat * fabs(m_lon));
}

/* Fills geo from the dataset: valid only with a geotransform and a CRS. */
static cnp_status read_georef(GDALDatasetH ds, const char *name, img_georef *geo, cnp_err *err)
{
    memset(geo, 0, sizeof *geo);
    OGRSpatialReferenceH srs = GDALGetSpatialRef(ds);
    if (GDALGetGeoTransform(ds, geo->gt) != CE_None || !srs)
        return CNP_OK;
    geo->overviews = GDALGetRasterCount(ds) ? GDALGetOverviewCount(GDALGetRasterBand(ds, 1)) : 0;
    OGRSpatialReferenceH src = OSRClone(srs);
    OGRSpatialReferenceH dst = OSRNewSpatialReference(NULL);
    cnp_status result = CNP_ERR_FORMAT;
    if (!src || !dst || OSRSetWellKnownGeogCS(dst, "WGS84") != OGRERR_NONE) {
        cnp_err_set(err, "%s: cannot set up WGS 84", name);
        goto out;
    }
    OSRSetAxisMappingStrategy(src, OAMS_TRADITIONAL_GIS_ORDER);
    OSRSetAxisMappingStrategy(dst, OAMS_TRADITIONAL_GIS_ORDER);
    if (OSRExportToWkt(src, &geo->wkt) != OGRERR_NONE) {
        cnp_err_set(err, "%s: its CRS cannot be written as WKT", name);
        goto out;
    }
    const char *auth = OSRGetAuthorityName(src, NULL);
    const char *code = OSRGetAuthorityCode(src, NULL);
    if (!(auth && code) && OSRAutoIdentifyEPSG(src) == OGRERR_NONE) {
        auth = OSRGetAuthorityName(src, NULL);
        code = OSRGetAuthorityCode(src, NULL);
    }
    if (auth && code && strcmp(auth, "EPSG") == 0)
        geo->epsg = atoi(code);
    geo->geographic = OSRIsGeographic(src) != 0;
    geo->unit_m = geo->geographic ? 0.0 : OSRGetLinearUnits(src, NULL);
    geo->to_wgs84 = OCTNewCoordinateTransformation(src, dst);
    if (!geo->to_wgs84) {
        cnp_err_set(err, "%s: its CRS cannot be transformed to WGS 84: %s", name,
                    CPLGetLastErrorMsg());
        goto out;
    }
    geo->valid = true;
    result = CNP_OK;
out:
    if (src)
        OSRDestroySpatialReference(src);
    if (dst)
        OSRDestroySpatialReference(dst);
    if (result != CNP_OK)
        img_georef_free(geo);
    return result;
}

/* ---- pixels ------------------------------------------------------------------- */

/* The colour bands a raster is read from: 3 (RGB, RGBA), or 1 for grey
 * (one band, or grey and alpha), which is read into R, G and B alike. */
static int colour_bands(GDALDatasetH ds)
{
    int bands = GDALGetRasterCount(ds);
    if (bands == 1 ||
        (bands == 2 &&
         GDALGetRasterColorInterpretation(GDALGetRasterBand(ds, 2)) == GCI_AlphaBand))
        return 1;
    return bands >= 3 ? 3 : 0;
}

/* Why a raster is refused, or NULL when its colour bands are usable. */
static const char *unusable(GDALDatasetH ds, char *why, size_t len)
{
    int bands = GDALGetRasterCount(ds), nc = colour_bands(ds);
    GDALDataType t = bands ? GDALGetRasterDataType(GDALGetRasterBand(ds, 1)) : GDT_Unknown;
    if (!nc) {
        snprintf(why, len, "%d band%s of %s (%s): canopy needs RGB, 3 or 4 bands of 8 or "
                           "16-bit unsigned samples, or one grey band",
                 bands, bands == 1 ? "" : "s", GDALGetDataTypeName(t),
                 bands == 2 ? "two bands, the second not alpha" : "no bands");
        return why;
    }
    if (nc == 1 && t != GDT_Byte && t != GDT_UInt16) {
        snprintf(why, len, "1 band of %s (a single-band raster such as an elevation model or "
                           "a mask): canopy needs RGB or grey of 8 or 16-bit unsigned samples",
                 GDALGetDataTypeName(t));
        return why;
    }
    if (nc == 1 &&
        GDALGetRasterColorInterpretation(GDALGetRasterBand(ds, 1)) == GCI_PaletteIndex) {
        snprintf(why, len, "one band of palette indices: expand it to RGB first "
                           "(gdal_translate -expand rgb)");
        return why;
    }
    for (int b = 1; b <= nc; b++) {
        GDALDataType tb = GDALGetRasterDataType(GDALGetRasterBand(ds, b));
        if (tb != GDT_Byte && tb != GDT_UInt16) {
            snprintf(why, len, "band %d holds %s samples (%s): canopy needs RGB of 8 or 16-bit "
                               "unsigned samples",
                     b, GDALGetDataTypeName(tb),
                     GDALDataTypeIsFloating(tb) ? "floating point, e.g. elevation or an index"
                                                : "signed or wide integers");
            return why;
        }
    }
    return NULL;
}

/* The largest value 16-bit band b may hold: 2^NBITS - 1 when declared. */
static unsigned nbits_max(GDALRasterBandH band)
{
    const char *nb = GDALGetMetadataItem(band, "NBITS", "IMAGE_STRUCTURE");
    int bits = nb ? atoi(nb) : 0;
    return bits > 0 && bits < 16 ? (1u << bits) - 1 : 0;
}

struct img_raster {
    struct mem_ds m;
    uint32_t width, height;
    bool is16;
    unsigned max16;          /* 16-bit scale: NBITS or the image's maximum */
    bool all_valid;          /* no band has nodata, alpha or a mask */
    bool tiff;
    int nc;                  /* colour bands: 3, or 1 (grey) */
    char name[256];
};

uint32_t img_raster_width(const img_raster *r) { return r->width; }
uint32_t img_raster_height(const img_raster *r) { return r->height; }
bool img_raster_is_tiff(const img_raster *r) { return r->tiff; }

/* The maximum of the three 16-bit bands, read in blocks of rows. */
static cnp_status max16_scan(img_raster *r, cnp_err *err)
{
    uint32_t rows = 256;
    int nc = r->nc;
    uint16_t *v = malloc((size_t)r->width * rows * nc * sizeof *v);
    int map[3] = {1, 2, 3};
    if (!v) {
        cnp_err_set(err, "%s: out of memory", r->name);
        return CNP_ERR_NOMEM;
    }
    unsigned max = 0;
    for (uint32_t y = 0; y < r->height; y += rows) {
        uint32_t h = r->height - y < rows ? r->height - y : rows;
        if (GDALDatasetRasterIO(r->m.ds, GF_Read, 0, (int)y, (int)r->width, (int)h, v,
                                (int)r->width, (int)h, GDT_UInt16, nc, map, 2 * nc,
                                (GSpacing)2 * nc * r->width, 2) != CE_None) {
            cnp_err_set(err, "%s: reading pixels: %s", r->name, CPLGetLastErrorMsg());
            free(v);
            return CNP_ERR_FORMAT;
        }
        for (size_t i = 0; i < (size_t)r->width * h * nc; i++)
            if (v[i] > max)
                max = v[i];
    }
    free(v);
    r->max16 = max ? max : 1;
    return CNP_OK;
}

cnp_status img_raster_open(const void *data, size_t len, const char *path, const char *name,
                           img_raster **out, img_georef *geo, cnp_err *err)
{
    *out = NULL;
    if (geo)
        memset(geo, 0, sizeof *geo);
    img_raster *r = calloc(1, sizeof *r);
    if (!r) {
        cnp_err_set(err, "%s: out of memory", name);
        return CNP_ERR_NOMEM;
    }
    snprintf(r->name, sizeof r->name, "%s", name);
    cnp_status result = ds_open(data, len, path, name, &r->m, err);
    if (result != CNP_OK) {
        free(r);
        return result;
    }
    char why[256];
    if (unusable(r->m.ds, why, sizeof why)) {
        cnp_err_set(err, "%s: %s", name, why);
        result = CNP_ERR_FORMAT;
        goto fail;
    }
    r->width = (uint32_t)GDALGetRasterXSize(r->m.ds);
    r->height = (uint32_t)GDALGetRasterYSize(r->m.ds);
    GDALDriverH drv = GDALGetDatasetDriver(r->m.ds);
    const char *dn = drv ? GDALGetDriverShortName(drv) : "";
    r->tiff = strcmp(dn, "GTiff") == 0 || strcmp(dn, "COG") == 0;
    r->nc = colour_bands(r->m.ds);
    r->all_valid = true;
    for (int b = 1; b <= r->nc; b++)
        if (!(GDALGetMaskFlags(GDALGetRasterBand(r->m.ds, b)) & GMF_ALL_VALID))
            r->all_valid = false;
    r->is16 = GDALGetRasterDataType(GDALGetRasterBand(r->m.ds, 1)) == GDT_UInt16;
    if (r->is16 && !(r->max16 = nbits_max(GDALGetRasterBand(r->m.ds, 1))) &&
        (result = max16_scan(r, err)) != CNP_OK)
        goto fail;
    if (geo && (result = read_georef(r->m.ds, name, geo, err)) != CNP_OK)
        goto fail;
    *out = r;
    return CNP_OK;
fail:
    img_raster_close(r);
    return result;
}

void img_raster_close(img_raster *r)
{
    if (!r)
        return;
    mem_close(&r->m);
    free(r);
}

/* Copies R into G and B: a grey raster read as RGB. */
static void grey_to_rgb(uint8_t *rgba, size_t n)
{
    for (size_t i = 0; i < n; i++)
        rgba[4 * i + 1] = rgba[4 * i + 2] = rgba[4 * i];
}

/* Reads the colour bands of a window into rgba's RGB channels. */
static cnp_status read_rgb(img_raster *r, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                           uint8_t *rgba, cnp_err *err)
{
    int map[3] = {1, 2, 3}, nc = r->nc;
    size_t n = (size_t)w * h;
    if (!r->is16) {
        if (GDALDatasetRasterIO(r->m.ds, GF_Read, (int)x0, (int)y0, (int)w, (int)h, rgba, (int)w,
                                (int)h, GDT_Byte, nc, map, 4, (GSpacing)4 * w, 1) != CE_None)
            goto fail;
        if (nc == 1)
            grey_to_rgb(rgba, n);
        return CNP_OK;
    }
    uint16_t *v = malloc(n * nc * sizeof *v);
    if (!v) {
        cnp_err_set(err, "%s: out of memory for %ux%u 16-bit pixels", r->name, w, h);
        return CNP_ERR_NOMEM;
    }
    if (GDALDatasetRasterIO(r->m.ds, GF_Read, (int)x0, (int)y0, (int)w, (int)h, v, (int)w,
                            (int)h, GDT_UInt16, nc, map, 2 * nc, (GSpacing)2 * nc * w,
                            2) != CE_None) {
        free(v);
        goto fail;
    }
    unsigned max = r->max16;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) {
            unsigned s = v[nc * i + (nc == 1 ? 0 : c)];
            s = s > max ? max : s;
            rgba[4 * i + c] = (uint8_t)((s * 255u + max / 2) / max);
        }
    free(v);
    return CNP_OK;
fail:
    cnp_err_set(err, "%s: reading pixels: %s", r->name, CPLGetLastErrorMsg());
    return CNP_ERR_FORMAT;
}

/* Sets alpha of a window: 0 where every colour band's mask says nodata. */
static cnp_status read_alpha(img_raster *r, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                             uint8_t *rgba, uint64_t *nodata, cnp_err *err)
{
    size_t n = (size_t)w * h;
    uint64_t count = 0;
    if (r->all_valid) {
        for (size_t i = 0; i < n; i++)
            rgba[4 * i + 3] = 255;
        goto out;
    }
    uint8_t *m = malloc(n ? n : 1);
    if (!m) {
        cnp_err_set(err, "%s: out of memory for its mask", r->name);
        return CNP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        rgba[4 * i + 3] = 0;
    for (int b = 1; b <= r->nc; b++) {
        GDALRasterBandH mask = GDALGetMaskBand(GDALGetRasterBand(r->m.ds, b));
        if (GDALRasterIO(mask, GF_Read, (int)x0, (int)y0, (int)w, (int)h, m, (int)w, (int)h,
                         GDT_Byte, 0, 0) != CE_None) {
            cnp_err_set(err, "%s: reading its nodata mask: %s", r->name, CPLGetLastErrorMsg());
            free(m);
            return CNP_ERR_FORMAT;
        }
        for (size_t i = 0; i < n; i++)
            if (m[i])
                rgba[4 * i + 3] = 255;
    }
    free(m);
    for (size_t i = 0; i < n; i++)
        count += rgba[4 * i + 3] == 0;
out:
    if (nodata)
        *nodata = count;
    return CNP_OK;
}

cnp_status img_raster_read(img_raster *r, uint32_t x0, uint32_t y0, uint32_t w, uint32_t h,
                           uint8_t *rgba, uint64_t *nodata, cnp_err *err)
{
    if ((uint64_t)x0 + w > r->width || (uint64_t)y0 + h > r->height) {
        cnp_err_set(err, "%s: window %ux%u at %u,%u outside the %ux%u raster", r->name, w, h, x0,
                    y0, r->width, r->height);
        return CNP_ERR_INVALID;
    }
    cnp_status result = read_rgb(r, x0, y0, w, h, rgba, err);
    return result == CNP_OK ? read_alpha(r, x0, y0, w, h, rgba, nodata, err) : result;
}

/* Decodes the raster opened from data or path (as img_raster_decode). */
static cnp_status gdal_decode(const void *data, size_t len, const char *path, const char *name,
                              uint64_t max_pixels, cnp_image *out, img_georef *geo,
                              uint64_t *nodata, cnp_err *err)
{
    img_raster *r;
    cnp_status result = img_raster_open(data, len, path, name, &r, geo, err);
    if (result != CNP_OK)
        return result;
    uint64_t w = r->width, h = r->height;
    if (max_pixels && w * h > max_pixels) {
        cnp_err_set(err, "%s: %llux%llu = %llu pixels exceeds the limit of %llu pixels "
                         "(max_pixels)",
                    name, (unsigned long long)w, (unsigned long long)h,
                    (unsigned long long)(w * h), (unsigned long long)max_pixels);
        result = CNP_ERR_LIMIT;
    } else if ((result = cnp_image_alloc(out, (uint32_t)w, (uint32_t)h, err)) == CNP_OK) {
        result = img_raster_read(r, 0, 0, (uint32_t)w, (uint32_t)h, out->rgba, nodata, err);
    }
    img_raster_close(r);
    if (result != CNP_OK) {
        cnp_image_free(out);
        if (geo)
            img_georef_free(geo);
    }
    return result;
}

/* A PNG through libpng, counting its nodata (alpha 0) pixels. */
static cnp_status png_decode(const void *data, size_t len, const char *name, uint64_t max_pixels,
                             cnp_image *out, uint64_t *nodata, cnp_err *err)
{
    cnp_status result = img_png_decode(data, len, name, max_pixels, out, err);
    if (result == CNP_OK && nodata)
        for (size_t i = 0; i < (size_t)out->width * out->height; i++)
            *nodata += out->rgba[4 * i + 3] == 0;
    return result;
}

cnp_status img_raster_decode(const void *data, size_t len, const char *name, uint64_t max_pixels,
                             cnp_image *out, img_georef *geo, uint64_t *nodata, cnp_err *err)
{
    const char *kind = img_raster_sniff(data, len);
    memset(out, 0, sizeof *out);
    if (geo)
        memset(geo, 0, sizeof *geo);
    if (nodata)
        *nodata = 0;
    if ((kind && strcmp(kind, "png") == 0) || (!kind && named_png(name)))
        return png_decode(data, len, name, max_pixels, out, nodata, err);
    if (!kind || strcmp(kind, "vrt") == 0)
        return refuse_unknown(data, len, name, kind, err);
    return gdal_decode(data, len, NULL, name, max_pixels, out, geo, nodata, err);
}

cnp_status img_georef_read_file(const char *path, const char *name, img_georef *geo,
                                cnp_err *err)
{
    static const char *const drivers[] = {"PNG", "JPEG", "GTiff", "COG", NULL};
    pthread_once(&g_once, gdal_init);
    memset(geo, 0, sizeof *geo);
    CPLErrorReset();
    GDALDatasetH ds = GDALOpenEx(path, GDAL_OF_RASTER | GDAL_OF_READONLY, drivers, NULL, NULL);
    if (!ds)
        return CNP_OK; /* the decoder says why it is no raster */
    cnp_status result = read_georef(ds, name, geo, err);
    GDALClose(ds);
    return result;
}

cnp_status img_raster_decode_file(const void *data, size_t len, const char *path,
                                  uint64_t max_pixels, cnp_image *out, img_georef *geo,
                                  uint64_t *nodata, cnp_err *err)
{
    const char *kind = img_raster_sniff(data, len);
    memset(out, 0, sizeof *out);
    if (geo)
        memset(geo, 0, sizeof *geo);
    if (nodata)
        *nodata = 0;
    if ((kind && strcmp(kind, "png") == 0) || (!kind && named_png(path))) {
        cnp_status result = png_decode(data, len, path, max_pixels, out, nodata, err);
        if (result == CNP_OK && geo && kind &&
            (result = img_georef_read_file(path, path, geo, err)) != CNP_OK)
            cnp_image_free(out);
        return result;
    }
    if (!kind)
        return refuse_unknown(data, len, path, kind, err);
    /* By path: GDAL reads the sidecar files beside it, and a VRT's sources. */
    return gdal_decode(NULL, 0, path, path, max_pixels, out, geo, nodata, err);
}

/* ---- GeoTIFF masks ------------------------------------------------------------ */

struct img_mask_writer {
    char path[4096];         /* where GDAL writes: the output, or the COG's source */
    char cog[4096];          /* the COG made from path at the end; "" none */
    bool in_memory;          /* /vsimem, removed with the writer */
    GDALDatasetH ds;
    uint8_t *row;            /* 0/255 staging for one put */
    size_t row_cap;
};

/* GDAL's own reason, naming the file (none for one in memory). */
static void writer_error(const img_mask_writer *w, cnp_err *err)
{
    cnp_err_set(err, "GeoTIFF mask%s%s: %s", w->in_memory ? "" : " ",
                w->in_memory ? "" : w->path, CPLGetLastErrorMsg());
}

cnp_status img_mask_writer_open(uint32_t width, uint32_t height, const img_georef *geo,
                                const char *path, img_mask_writer **out, cnp_err *err)
{
    static const char *const opts[] = {"COMPRESS=DEFLATE", "TILED=YES", "BLOCKXSIZE=256",
                                       "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER", NULL};
    pthread_once(&g_once, gdal_init);
    *out = NULL;
    img_mask_writer *w = calloc(1, sizeof *w);
    if (!w) {
        cnp_err_set(err, "out of memory for the GeoTIFF mask");
        return CNP_ERR_NOMEM;
    }
    w->in_memory = !path;
    unsigned seq = atomic_fetch_add(&g_seq, 1);
    if (path)
        snprintf(w->path, sizeof w->path, "%s", path);
    else
        snprintf(w->path, sizeof w->path, "/vsimem/canopy/mask-%u.tif", seq);
    /* An input with overviews (a COG) gets a COG mask: written here first,
     * then copied by GDAL's COG driver, which adds the overviews. */
    if (geo && geo->valid && geo->overviews > 0) {
        memcpy(w->cog, w->path, sizeof w->cog);
        if (snprintf(w->path, sizeof w->path, "%s.%u.src.tif", w->cog, seq) >=
            (int)sizeof w->path) {
            cnp_err_set(err, "%s: name too long", w->cog);
            img_mask_writer_free(w);
            return CNP_ERR_INVALID;
        }
    }
    GDALDriverH drv = GDALGetDriverByName("GTiff");
    w->ds = drv ? GDALCreate(drv, w->path, (int)width, (int)height, 1, GDT_Byte, (char **)opts)
                : NULL;
    if (!w->ds) {
        writer_error(w, err);
        img_mask_writer_free(w);
        return CNP_ERR_FORMAT;
    }
    if (geo && geo->valid) {
        GDALSetGeoTransform(w->ds, (double *)geo->gt);
        GDALSetProjection(w->ds, geo->wkt);
    }
    GDALSetRasterNoDataValue(GDALGetRasterBand(w->ds, 1), IMG_MASK_NODATA);
    *out = w;
    return CNP_OK;
}

cnp_status img_mask_writer_put(img_mask_writer *w, uint32_t x0, uint32_t y0, uint32_t width,
                               uint32_t height, const uint8_t *mask, cnp_err *err)
{
    size_t n = (size_t)width * height;
    if (n > w->row_cap) {
        uint8_t *grown = realloc(w->row, n);
        if (!grown) {
            cnp_err_set(err, "out of memory for the GeoTIFF mask");
            return CNP_ERR_NOMEM;
        }
        w->row = grown;
        w->row_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        w->row[i] = mask[i] == IMG_MASK_NODATA ? IMG_MASK_NODATA : mask[i] ? 255 : 0;
    if (GDALRasterIO(GDALGetRasterBand(w->ds, 1), GF_Write, (int)x0, (int)y0, (int)width,
                     (int)height, w->row, (int)width, (int)height, GDT_Byte, 0, 0) != CE_None) {
        writer_error(w, err);
        return CNP_ERR_IO;
    }
    return CNP_OK;
}

/* Copies the finished GeoTIFF at w->path into a COG at w->cog (tiled,
 * deflate, overviews by nearest neighbour: a mask's values stay 0, 1, 255). */
static cnp_status make_cog(img_mask_writer *w, cnp_err *err)
{
    static const char *const opts[] = {"COMPRESS=DEFLATE", "BLOCKSIZE=256",
                                       "RESAMPLING=NEAREST", "OVERVIEWS=AUTO",
                                       "BIGTIFF=IF_SAFER", NULL};
    GDALDatasetH src = GDALOpen(w->path, GA_ReadOnly);
    GDALDriverH drv = GDALGetDriverByName("COG");
    GDALDatasetH dst = src && drv ? GDALCreateCopy(drv, w->cog, src, FALSE, (char **)opts,
                                                   NULL, NULL)
                                  : NULL;
    cnp_status result = CNP_OK;
    if (dst)
        GDALClose(dst);
    if (!dst || CPLGetLastErrorType() >= CE_Failure) {
        cnp_err_set(err, "GeoTIFF mask%s%s as a COG: %s", w->in_memory ? "" : " ",
                    w->in_memory ? "" : w->cog, CPLGetLastErrorMsg());
        result = CNP_ERR_IO;
    }
    if (src)
        GDALClose(src);
    VSIUnlink(w->path);
    memcpy(w->path, w->cog, sizeof w->path); /* the output from now on */
    return result;
}

cnp_status img_mask_writer_finish(img_mask_writer *w, cnp_buf *out, cnp_err *err)
{
    CPLErrorReset();
    GDALClose(w->ds); /* flushes into the file or /vsimem */
    w->ds = NULL;
    cnp_status result = CNP_OK;
    if (CPLGetLastErrorType() >= CE_Failure) {
        writer_error(w, err);
        result = CNP_ERR_IO;
    } else if (w->cog[0] && (result = make_cog(w, err)) != CNP_OK) {
        /* err set */
    } else if (w->in_memory) {
        vsi_l_offset size = 0;
        GByte *bytes = VSIGetMemFileBuffer(w->path, &size, FALSE);
        result = bytes ? cnp_buf_append(out, bytes, (size_t)size) : CNP_ERR_FORMAT;
        if (result != CNP_OK)
            cnp_err_set(err, "GeoTIFF mask: no output");
    }
    img_mask_writer_free(w);
    return result;
}

void img_mask_writer_free(img_mask_writer *w)
{
    if (!w)
        return;
    if (w->ds)
        GDALClose(w->ds);
    if (w->in_memory)
        VSIUnlink(w->path);
    if (w->cog[0] && strcmp(w->path, w->cog) != 0)
        VSIUnlink(w->path); /* the COG's source, when it was never copied */
    free(w->row);
    free(w);
}

cnp_status img_mask_encode_geotiff(const uint8_t *mask, uint32_t width, uint32_t height,
                                   const img_georef *geo, cnp_buf *out, cnp_err *err)
{
    img_mask_writer *w;
    cnp_status result = img_mask_writer_open(width, height, geo, NULL, &w, err);
    if (result != CNP_OK)
        return result;
    if ((result = img_mask_writer_put(w, 0, 0, width, height, mask, err)) != CNP_OK) {
        img_mask_writer_free(w);
        return result;
    }
    return img_mask_writer_finish(w, out, err);
}
