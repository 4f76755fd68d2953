/* The .cnw reader: a valid file loads; truncated, corrupt and mismatched
 * files are refused with "path: reason"; model path resolution. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "canopy/detect.h"
#include "detect/cnw_util.h"
#include "detect/test_detect_common.h"

static char g_path[256];

/* Writes buf to the scratch file and loads it; returns the status. */
static cnp_status load_bytes(const void *data, size_t len, cnp_err *err)
{
    tw_write_file(g_path, data, len);
    det_model *m = NULL;
    cnp_status st = det_model_load(g_path, &m, err);
    CHECK((st == CNP_OK) == (m != NULL));
    det_model_free(m);
    return st;
}

/* Expects a refusal whose message names the file and contains `reason`. */
static void expect_refused(const void *data, size_t len, const char *reason, const char *what)
{
    cnp_err err = {{0}};
    cnp_status st = load_bytes(data, len, &err);
    CHECK_MSG(st == CNP_ERR_FORMAT, "%s: status %d", what, (int)st);
    CHECK_MSG(strncmp(err.msg, g_path, strlen(g_path)) == 0, "%s: message '%s'", what, err.msg);
    CHECK_MSG(strstr(err.msg, reason) != NULL, "%s: message '%s' lacks '%s'", what, err.msg,
              reason);
}

static void expect_model_refused(const tw_model *m, const char *reason, const char *what)
{
    cnp_buf b = {0};
    tw_model_write(m, &b);
    expect_refused(b.data, b.len, reason, what);
    cnp_buf_free(&b);
}

/* Offset of tensor i's data_offset field in the file tw_model_write makes. */
static size_t dir_offset_field(const tw_model *m, int i)
{
    size_t p = 16 + strlen(m->arch) + 4;
    for (int k = 0;; k++) {
        p += 2 + strlen(m->tensors[k].name) + 2 + 4 * (size_t)m->tensors[k].ndim;
        if (k == i)
            return p;
        p += 16;
    }
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void test_valid(const tw_model *tm, const cnp_buf *b)
{
    cnp_err err = {{0}};
    tw_write_file(g_path, b->data, b->len);
    det_model *m = NULL;
    REQUIRE(det_model_load(g_path, &m, &err) == CNP_OK);
    CHECK(strcmp(det_model_version(m), "tiny-test-1") == 0);
    CHECK(det_model_stride(m) == 4);
    /* c1: 2*4*8*9*W*H, c2 at W/2: 2*8*12*9, c3 at W/4: 2*12*8*9, c4: 2*8*8, head 2*8*4 */
    double want = 2.0 * 4 * 8 * 9 * 64 * 64 + 2.0 * 8 * 12 * 9 * 32 * 32 +
                  2.0 * 12 * 8 * 9 * 16 * 16 + 2.0 * 8 * 8 * 16 * 16 + 2.0 * 8 * 4 * 16 * 16;
    CHECK(det_model_flops(m, 64, 64) == want);
    /* 1 + 2 (c1) + 1 (pool) + 2*2*2 (c2) + 2 (pool) + 2*4*4 (c3) */
    CHECK(det_model_receptive_field(m) == 46);
    det_model_free(m);
    (void)tm;
}

static void test_truncation(const cnp_buf *b)
{
    /* Every prefix of the header and directory, then a stride through the data. */
    int refused = 0, tried = 0;
    for (size_t len = 0; len < b->len; len += len < 600 ? 1 : 13) {
        cnp_err err = {{0}};
        cnp_status st = load_bytes(b->data, len, &err);
        tried++;
        if (st == CNP_ERR_FORMAT && strncmp(err.msg, g_path, strlen(g_path)) == 0)
            refused++;
        else
            fprintf(stderr, "truncated at %zu: status %d '%s'\n", len, (int)st, err.msg);
    }
    CHECK(refused == tried);
    cnp_err err = {{0}};
    load_bytes(b->data, 200, &err);
    CHECK_MSG(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
    load_bytes(b->data, b->len - 100, &err);
    CHECK_MSG(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
}

static void test_corruption(const cnp_buf *b)
{
    cnp_buf c = {0};
    cnp_buf_append(&c, b->data, b->len);
    int refused = 0, tried = 0;
    for (size_t i = 0; i < c.len; i += i < 600 ? 1 : 11) {
        c.data[i] ^= 0x10;
        cnp_err err = {{0}};
        cnp_status st = load_bytes(c.data, c.len, &err);
        tried++;
        if (st == CNP_ERR_FORMAT)
            refused++;
        else
            fprintf(stderr, "flip at %zu: status %d\n", i, (int)st);
        c.data[i] ^= 0x10;
    }
    CHECK(refused == tried);
    /* A flip inside the tensor data is caught by the checksum. */
    c.data[c.len - 40] ^= 0x01;
    expect_refused(c.data, c.len, "checksum mismatch", "data flip");
    cnp_buf_free(&c);
}

static void test_header_fields(const tw_model *tm, const cnp_buf *b)
{
    cnp_buf c = {0};
    cnp_buf_append(&c, b->data, b->len);
    c.data[0] = 'X';
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "bad magic", "magic");
    c.data[0] = 'C';
    c.data[8] = 3;
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "format version 3 unsupported", "version");
    c.data[8] = 1;
    /* Misaligned and overlapping data offsets (CRC recomputed). */
    size_t f1 = dir_offset_field(tm, 1);
    uint64_t o1 = get_u64(c.data + f1);
    put_u64(c.data + f1, o1 + 4);
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "not a multiple of 16", "alignment");
    put_u64(c.data + f1, o1 - 16);
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "overlaps the previous tensor", "overlap");
    put_u64(c.data + f1, o1);
    size_t f0 = dir_offset_field(tm, 0);
    put_u64(c.data + f0, 16);
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "overlaps the directory", "overlap dir");
    put_u64(c.data + f0, ((uint64_t)c.len + 31) / 16 * 16);
    tw_fix_crc(&c);
    expect_refused(c.data, c.len, "truncated", "beyond end");
    cnp_buf_free(&c);
}

static void test_mismatches(void)
{
    tw_model tm;
    tw_model_random(&tm, "tiny-test-1", 4, tw_tiny_layers, tw_tiny_n_layers, 7);
    /* Shape mismatch: c2.weight with 9 instead of 8 inputs. */
    tw_tensor *w2 = &tm.tensors[2];
    REQUIRE(strcmp(w2->name, "c2.weight") == 0);
    w2->dims[1] = 9;
    w2->data = realloc(w2->data, sizeof(float) * 12 * 9 * 9);
    memset(w2->data, 0, sizeof(float) * 12 * 9 * 9);
    expect_model_refused(&tm, "c2.weight has shape [12,9,3,3], the architecture needs [12,8,3,3]",
                         "shape");
    tw_model_free(&tm);

    tw_model_random(&tm, "tiny-test-1", 4, tw_tiny_layers, tw_tiny_n_layers, 7);
    snprintf(tm.tensors[5].name, sizeof tm.tensors[5].name, "c3.bias_renamed");
    expect_model_refused(&tm, "tensor c3.bias is missing", "missing");
    tw_model_free(&tm);

    /* Extra tensors are ignored. */
    tw_model_random(&tm, "tiny-test-1", 4, tw_tiny_layers, tw_tiny_n_layers, 7);
    tw_tensor *x = &tm.tensors[tm.n_tensors++];
    snprintf(x->name, sizeof x->name, "meta.extra");
    x->ndim = 2;
    x->dims[0] = 3;
    x->dims[1] = 5;
    x->data = calloc(15, sizeof(float));
    cnp_buf b = {0};
    tw_model_write(&tm, &b);
    cnp_err err = {{0}};
    CHECK_MSG(load_bytes(b.data, b.len, &err) == CNP_OK, "%s", err.msg);
    cnp_buf_free(&b);
    tw_model_free(&tm);

    /* Architecture errors. */
    tw_layer bad[8];
    memcpy(bad, tw_tiny_layers, sizeof(tw_layer) * 7);
    bad[1].type = "avgpool";
    tw_model_random(&tm, "t", 4, bad, 7, 1);
    expect_model_refused(&tm, "unknown type \"avgpool\"", "layer type");
    tw_model_free(&tm);
    tw_model_random(&tm, "t", 8, tw_tiny_layers, 7, 1);
    expect_model_refused(&tm, "do not give stride 8", "stride");
    tw_model_free(&tm);
    memcpy(bad, tw_tiny_layers, sizeof(tw_layer) * 7);
    bad[2].in = 6;
    tw_model_random(&tm, "t", 4, bad, 7, 1);
    expect_model_refused(&tm, "layer c2 takes 6 channels, gets 8", "channels");
    tw_model_free(&tm);
    memcpy(bad, tw_tiny_layers, sizeof(tw_layer) * 7);
    bad[0].k = 2;
    tw_model_random(&tm, "t", 4, bad, 7, 1);
    expect_model_refused(&tm, "k=2 must be odd", "even k");
    tw_model_free(&tm);
    memcpy(bad, tw_tiny_layers, sizeof(tw_layer) * 7);
    bad[6].out = 3;
    tw_model_random(&tm, "t", 4, bad, 7, 1);
    expect_model_refused(&tm, "last layer must be a conv with 4 outputs", "head");
    tw_model_free(&tm);

    /* 32 pools: 1 << 32 is undefined, and on x86 it came out as 1, so the
     * file below loaded as a stride-1 model (found by fuzz_cnw's UBSan). */
    tw_layer pools[33];
    for (int i = 0; i < 32; i++)
        pools[i] = (tw_layer){"maxpool", NULL, 0, 0, 0, 0, 0};
    pools[32] = (tw_layer){"conv", "head", 4, 4, 1, 1, 0};
    tw_model_random(&tm, "t", 1, pools, 33, 1);
    expect_model_refused(&tm, "32 maxpool layers do not give stride 1", "pools");
    tw_model_free(&tm);

    /* Broken JSON and a non-finite weight. */
    tw_model_random(&tm, "t", 4, tw_tiny_layers, 7, 1);
    tm.arch[strlen(tm.arch) - 1] = ',';
    expect_model_refused(&tm, "architecture JSON does not parse", "json");
    tw_model_free(&tm);
    tw_model_random(&tm, "t", 4, tw_tiny_layers, 7, 1);
    tm.tensors[0].data[3] = NAN;
    expect_model_refused(&tm, "non-finite", "nan");
    tw_model_free(&tm);
}

/* The architecture's optional resolution_m: read, defaulted, checked. */
static void test_resolution(void)
{
    det_model *m = NULL;
    cnp_err err = {{0}};
    CHECK_FATAL(det_model_load(CANOPY_SOURCE_DIR "/models/crown-1.1.cnw", &m, &err) == CNP_OK,
                "%s", err.msg);
    CHECK(det_model_resolution_m(m) == DET_RESOLUTION_M_DEFAULT &&
          DET_RESOLUTION_M_DEFAULT == 0.1);
    det_model_free(m);
    tw_model tm;
    tw_model_random(&tm, "t", 4, tw_tiny_layers, tw_tiny_n_layers, 1);
    size_t n = strlen(tm.arch);
    REQUIRE(tm.arch[n - 1] == '}');
    snprintf(tm.arch + n - 1, sizeof tm.arch - n + 1, ",\"resolution_m\":0.03}");
    cnp_buf b = {0};
    tw_model_write(&tm, &b);
    tw_write_file(g_path, b.data, b.len);
    CHECK(det_model_load(g_path, &m, &err) == CNP_OK, "%s", err.msg);
    CHECK(m && det_model_resolution_m(m) == 0.03);
    det_model_free(m);
    cnp_buf_free(&b);
    snprintf(tm.arch + n - 1, sizeof tm.arch - n + 1, ",\"resolution_m\":-1}");
    expect_model_refused(&tm, "resolution_m must be metres per pixel", "resolution_m");
    tw_model_free(&tm);
}

static void test_shipped_test_model(void)
{
    const char *p = CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw";
    det_model *m = NULL;
    cnp_err err = {{0}};
    cnp_status st = det_model_load(p, &m, &err);
    CHECK_MSG(st == CNP_OK, "%s", err.msg);
    if (m)
        CHECK(strcmp(det_model_version(m), "random-tiny-1") == 0);
    det_model_free(m);
    st = det_model_load("/nonexistent/x.cnw", &m, &err);
    CHECK(st == CNP_ERR_NOTFOUND && m == NULL);
    CHECK(strstr(err.msg, "/nonexistent/x.cnw") == err.msg);
}

static void test_resolve(void)
{
    char out[2048];
    cnp_err err = {{0}};
    /* Relative to the source tree when absent from the current directory. */
    REQUIRE(chdir("/") == 0);
    CHECK(det_model_resolve_path("models/test/random-tiny.cnw", out, sizeof out, &err) ==
          CNP_OK);
    CHECK(strcmp(out, CANOPY_SOURCE_DIR "/models/test/random-tiny.cnw") == 0);
    /* The current directory first. */
    REQUIRE(chdir(CANOPY_SOURCE_DIR) == 0);
    CHECK(det_model_resolve_path("models/test/random-tiny.cnw", out, sizeof out, &err) ==
          CNP_OK);
    CHECK(strcmp(out, "models/test/random-tiny.cnw") == 0);
    CHECK(det_model_resolve_path("models/none.cnw", out, sizeof out, &err) == CNP_ERR_NOTFOUND);
    CHECK(strstr(err.msg, "/usr/share/canopy/models/none.cnw") != NULL);
    /* Every candidate is named: next to the executable (a relocated install),
     * and, for this test running from its build tree, the source tree last. */
    CHECK(strstr(err.msg, "/../share/canopy/models/none.cnw, ") != NULL);
    CHECK(strstr(err.msg, ", " CANOPY_SOURCE_DIR "/models/none.cnw)") != NULL);
    CHECK(det_model_resolve_path("/abs/none.cnw", out, sizeof out, &err) == CNP_ERR_NOTFOUND);
    /* A candidate too long for its buffer is an error naming it, not a
     * shortened path that might name another file. */
    char long_name[2100];
    memset(long_name, 'm', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK(det_model_resolve_path(long_name, out, sizeof out, &err) == CNP_ERR_CONFIG);
    CHECK(strstr(err.msg, "a path of 2099 bytes, more than 2047: mmmm") != NULL);
}

int main(void)
{
    /* Thousands of small files: prefer memory-backed /dev/shm. */
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(g_path, sizeof g_path, "%s/test_detect_model.%d.cnw", dir, (int)getpid());
    tw_model tm;
    tw_model_random(&tm, "tiny-test-1", 4, tw_tiny_layers, tw_tiny_n_layers, 42);
    cnp_buf b = {0};
    tw_model_write(&tm, &b);
    test_valid(&tm, &b);
    test_truncation(&b);
    test_corruption(&b);
    test_header_fields(&tm, &b);
    test_mismatches();
    test_shipped_test_model();
    test_resolution();
    test_resolve();
    cnp_buf_free(&b);
    tw_model_free(&tm);
    unlink(g_path);
    return test_result("test_detect_model");
}
