/* Fuzz target: PNG decoding through canopy's own libpng reader
 * (img_png_decode) under [limits] max_pixels, and the header probe.
 *
 * Invariants: no crash or leak; nothing larger than max_pixels is decoded
 * (the probe's size decides: over the limit must be CNP_ERR_LIMIT); a decode
 * has the probe's size, and its pixels, encoded again as PNG and decoded,
 * are the same bytes. */
#include "canopy/image.h"
#include "fuzz_util.h"

#define MAX_PIXELS (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cnp_err err;
    uint32_t pw = 0, ph = 0;
    bool probed = img_png_probe(data, size, "fuzz.png", &pw, &ph, &err) == CNP_OK;
    cnp_image img;
    cnp_status st = img_png_decode(data, size, "fuzz.png", MAX_PIXELS, &img, &err);
    if (probed && (uint64_t)pw * ph > MAX_PIXELS)
        FUZZ_CHECK(st == CNP_ERR_LIMIT);
    if (st != CNP_OK) {
        FUZZ_CHECK(img.rgba == NULL && img.width == 0 && img.height == 0);
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    FUZZ_CHECK(probed && img.width == pw && img.height == ph);
    FUZZ_CHECK((uint64_t)img.width * img.height <= MAX_PIXELS);
    FUZZ_CHECK(img.rgba != NULL);
    cnp_buf png = {0};
    FUZZ_CHECK(img_png_encode_rgba(&img, 1, &png, &err) == CNP_OK);
    cnp_image back;
    FUZZ_CHECK(img_png_decode(png.data, png.len, "again.png", MAX_PIXELS, &back, &err) == CNP_OK);
    FUZZ_CHECK(back.width == img.width && back.height == img.height);
    FUZZ_CHECK(memcmp(back.rgba, img.rgba, (size_t)img.width * img.height * 4) == 0);
    cnp_image_free(&back);
    cnp_buf_free(&png);
    cnp_image_free(&img);
    return 0;
}
