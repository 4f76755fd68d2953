/* Fuzz target: raster decoding (img_raster_decode): GeoTIFF/COG and JPEG
 * through GDAL from an in-memory dataset, PNG through canopy's reader, with
 * [limits] max_pixels, georeferencing and the nodata count.
 *
 * Invariants: no crash or leak; nothing larger than max_pixels is decoded; a
 * decode has the probe's size, at most width * height nodata pixels, and
 * georeferencing that is either absent or complete (WKT and a transform). */
#include "canopy/image.h"
#include "canopy/raster.h"
#include "fuzz_util.h"

#include <cpl_conv.h>

#define MAX_PIXELS (1u << 20)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* GDAL's block cache is process-wide: small, so that the fuzzer's RSS
     * limit measures canopy's allocations, not the cache filling. */
    CPLSetConfigOption("GDAL_CACHEMAX", "16");
    CPLSetConfigOption("GDAL_NUM_THREADS", "1");
    CPLSetConfigOption("CPL_VSIL_CURL_ALLOWED_EXTENSIONS", "none");
    CPLSetConfigOption("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnp_err err;
    cnp_image img;
    img_georef geo;
    uint64_t nodata = 0;
    cnp_status st = img_raster_decode(data, size, "fuzz.tif", MAX_PIXELS, &img, &geo, &nodata,
                                      &err);
    if (st != CNP_OK) {
        FUZZ_CHECK(img.rgba == NULL);
        FUZZ_CHECK(err.msg[0] != '\0');
        img_georef_free(&geo);
        return 0;
    }
    FUZZ_CHECK(img.rgba != NULL && img.width > 0 && img.height > 0);
    FUZZ_CHECK((uint64_t)img.width * img.height <= MAX_PIXELS);
    FUZZ_CHECK(nodata <= (uint64_t)img.width * img.height);
    uint32_t pw = 0, ph = 0;
    FUZZ_CHECK(img_raster_probe(data, size, "fuzz.tif", &pw, &ph, &err) == CNP_OK);
    FUZZ_CHECK(pw == img.width && ph == img.height);
    if (geo.valid)
        FUZZ_CHECK(geo.wkt != NULL && geo.to_wgs84 != NULL);
    img_georef_free(&geo);
    cnp_image_free(&img);
    return 0;
}
