/* cnp_spool: in memory up to its limit, then in a temporary file; saved by
 * rename (or copied across file systems) or written; nothing left behind. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/spool.h"
#include "testutil.h"

static char g_dir[] = "/tmp/canopy-test-spool-XXXXXX";

/* Deterministic bytes: what the spool is fed and what must come back. */
static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
}

static bool file_equals(const char *path, const uint8_t *want, size_t n)
{
    cnp_buf got = {0};
    bool ok = cnp_file_read(path, 0, &got, NULL) == CNP_OK && got.len == n &&
              memcmp(got.data, want, n) == 0;
    cnp_buf_free(&got);
    return ok;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Counts the spool's temporary files left in dir. */
static int leftovers(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A %s | grep -c '^\\.canopy-spool-' > %s/.count", dir, g_dir);
    if (system(cmd) == -1)
        return -1;
    snprintf(cmd, sizeof cmd, "%s/.count", g_dir);
    cnp_buf b = {0};
    cnp_file_read(cmd, 0, &b, NULL);
    cnp_buf_append(&b, "", 1);
    int n = atoi((const char *)b.data);
    cnp_buf_free(&b);
    return n;
}

static void test_memory_only(void)
{
    enum { N = 3 << 20 };
    uint8_t *data = malloc(N);
    fill(data, N, 1);
    cnp_spool s;
    cnp_err err;
    cnp_spool_init(&s, g_dir, 0);
    for (size_t off = 0; off < N; off += 100000)
        CHECK(cnp_spool_write(&s, data + off, N - off < 100000 ? N - off : 100000, &err) ==
              CNP_OK);
    CHECK(!cnp_spool_in_file(&s));
    CHECK(cnp_spool_size(&s) == N);
    CHECK(cnp_spool_flush(&s, &err) == CNP_OK && !cnp_spool_in_file(&s));
    char dest[600];
    snprintf(dest, sizeof dest, "%s/memory.out", g_dir);
    CHECK(cnp_spool_save(&s, dest, &err) == CNP_OK, "%s", err.msg);
    CHECK(file_equals(dest, data, N));
    CHECK(cnp_spool_size(&s) == 0);
    cnp_spool_free(&s);
    /* A zeroed spool is an empty one in memory. */
    cnp_spool z;
    memset(&z, 0, sizeof z);
    CHECK(cnp_spool_write(&z, "abc", 3, &err) == CNP_OK && !cnp_spool_in_file(&z));
    cnp_spool_free(&z);
    free(data);
}

static void test_spills_past_limit(void)
{
    enum { N = (5 << 20) + 12345 };
    uint8_t *data = malloc(N);
    fill(data, N, 2);
    cnp_spool s;
    cnp_err err;
    cnp_spool_init(&s, g_dir, 4096);
    CHECK(cnp_spool_write(&s, data, 4000, &err) == CNP_OK);
    CHECK(!cnp_spool_in_file(&s), "4000 bytes are under the limit");
    CHECK(cnp_spool_write(&s, data + 4000, 200, &err) == CNP_OK);
    CHECK(cnp_spool_in_file(&s), "past the limit: a file");
    CHECK(strncmp(s.path, g_dir, strlen(g_dir)) == 0, "%s is not in %s", s.path, g_dir);
    /* From now on memory holds at most a chunk, whatever the total. */
    for (size_t off = 4200; off < N; off += 70001)
        CHECK(cnp_spool_write(&s, data + off, N - off < 70001 ? N - off : 70001, &err) ==
              CNP_OK);
    CHECK(s.buf.cap <= (2u << 20), "buffer of %zu bytes in front of the file", s.buf.cap);
    CHECK(cnp_spool_size(&s) == N);
    CHECK(cnp_spool_flush(&s, &err) == CNP_OK);
    CHECK(file_equals(s.path, data, N));
    char tmp[4096], dest[600];
    snprintf(tmp, sizeof tmp, "%s", s.path);
    snprintf(dest, sizeof dest, "%s/spilled.out", g_dir);
    CHECK(cnp_spool_save(&s, dest, &err) == CNP_OK, "%s", err.msg);
    CHECK(file_equals(dest, data, N));
    CHECK(!exists(tmp), "the temporary file was renamed into place");
    CHECK(!cnp_spool_in_file(&s) && cnp_spool_size(&s) == 0);
    /* printf goes the same way. */
    cnp_spool_init(&s, g_dir, 8);
    CHECK(cnp_spool_printf(&s, &err, "%s-%d", "tree", 12345) == CNP_OK);
    CHECK(cnp_spool_in_file(&s) && cnp_spool_size(&s) == 10);
    CHECK(cnp_spool_flush(&s, &err) == CNP_OK &&
          file_equals(s.path, (const uint8_t *)"tree-12345", 10));
    snprintf(tmp, sizeof tmp, "%s", s.path);
    cnp_spool_free(&s);
    CHECK(!exists(tmp), "freeing removes the file");
    CHECK(leftovers(g_dir) == 0);
    free(data);
}

static void test_adopt_and_temp_name(void)
{
    cnp_spool s;
    cnp_err err;
    cnp_spool_init(&s, g_dir, 1);
    char path[4096];
    CHECK(cnp_spool_temp_name(&s, ".tif", path, sizeof path, &err) == CNP_OK);
    CHECK(exists(path) && strlen(path) > 4 && strcmp(path + strlen(path) - 4, ".tif") == 0,
          "%s", path);
    CHECK(cnp_file_write(path, "II*\0mask", 8, &err) == CNP_OK);
    CHECK(cnp_spool_write(&s, "old", 3, &err) == CNP_OK);
    CHECK(cnp_spool_adopt(&s, path, &err) == CNP_OK);
    CHECK(cnp_spool_in_file(&s) && cnp_spool_size(&s) == 8);
    cnp_spool_free(&s);
    CHECK(!exists(path), "an adopted file goes with the spool");
    CHECK(cnp_spool_adopt(&s, "/nonexistent/x.tif", &err) == CNP_ERR_IO &&
          strstr(err.msg, "/nonexistent/x.tif"), "%s", err.msg);
}

static void test_errors_name_the_path(void)
{
    cnp_spool s;
    cnp_err err;
    /* A directory that cannot take the file: the error names it. */
    cnp_spool_init(&s, "/nonexistent-canopy-dir", 2);
    CHECK(cnp_spool_write(&s, "abcdef", 6, &err) == CNP_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent-canopy-dir") != NULL, "%s", err.msg);
    cnp_spool_free(&s);
    /* A destination that cannot be written: named, and the content kept. */
    cnp_spool_init(&s, g_dir, 2);
    CHECK(cnp_spool_write(&s, "abcdef", 6, &err) == CNP_OK && cnp_spool_in_file(&s));
    CHECK(cnp_spool_save(&s, "/nonexistent-canopy-dir/out.json", &err) == CNP_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent-canopy-dir/out.json") != NULL, "%s", err.msg);
    CHECK(cnp_spool_size(&s) == 6 && exists(s.path));
    cnp_spool_free(&s);
    CHECK(leftovers(g_dir) == 0);
}

/* A spool on another file system than its destination is copied there
 * (rename cannot cross file systems). */
static void test_save_across_file_systems(void)
{
    struct stat a, b;
    if (stat("/dev/shm", &a) != 0 || stat(g_dir, &b) != 0 || a.st_dev == b.st_dev) {
        printf("note: /dev/shm is not another file system here; cross-device copy not run\n");
        return;
    }
    char shm[] = "/dev/shm/canopy-test-spool-XXXXXX";
    if (!mkdtemp(shm)) {
        printf("note: /dev/shm not writable; cross-device copy not run\n");
        return;
    }
    enum { N = (3 << 20) + 7 };
    uint8_t *data = malloc(N);
    fill(data, N, 3);
    cnp_spool s;
    cnp_err err;
    cnp_spool_init(&s, shm, 1000);
    CHECK(cnp_spool_write(&s, data, N, &err) == CNP_OK && cnp_spool_in_file(&s));
    char dest[600];
    snprintf(dest, sizeof dest, "%s/copied.out", g_dir);
    CHECK(cnp_spool_save(&s, dest, &err) == CNP_OK, "%s", err.msg);
    CHECK(file_equals(dest, data, N));
    CHECK(leftovers(shm) == 0, "the source file is removed after the copy");
    cnp_spool_free(&s);
    rmdir(shm);
    free(data);
}

int main(void)
{
    if (!mkdtemp(g_dir))
        return 1;
    test_memory_only();
    test_spills_past_limit();
    test_adopt_and_temp_name();
    test_errors_name_the_path();
    test_save_across_file_systems();
    if (!g_failures) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            return 1;
    }
    return TEST_RESULT();
}
