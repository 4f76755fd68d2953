/* Helpers shared by the fuzz targets (tests/fuzz/README in the top README's
 * "Fuzzing" section). A target checks invariants with FUZZ_CHECK, which
 * aborts, so that libFuzzer keeps the input as a crash. */
#ifndef CANOPY_FUZZ_UTIL_H
#define CANOPY_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_CHECK(cond)                                                             \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of the input (malloc'd; the fuzzer's own buffer has
 * no terminator). */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_CHECK(s != NULL);
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* True when s is NUL-terminated within cap bytes. */
static inline int fuzz_terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* Writes data to a private temporary file and returns its path (static
 * buffer, one per target process); the file is rewritten on every call. */
static inline const char *fuzz_tmpfile(const uint8_t *data, size_t size, const char *tag)
{
    static char path[256];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/canopy-fuzz-%s-%ld", dir && dir[0] ? dir : "/tmp", tag,
                 (long)getpid());
    }
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size);
    FUZZ_CHECK(fclose(f) == 0);
    return path;
}

#endif
