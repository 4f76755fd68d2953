/* Fuzz target: the INI configuration (cnp_config_load through inih, with
 * canopy's own line diagnostics).
 *
 * Invariants: no crash or leak; a file that loads, dumped (cnp_config_dump)
 * and loaded again, dumps the same: what canopy writes it reads back. A file
 * that does not load has a message. CANOPY_* variables are cleared first so
 * that only the file counts. */
#include "canopy/config.h"
#include "fuzz_util.h"

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++)
            if (strncmp(*e, "CANOPY_", 7) == 0) {
                char name[256];
                snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
                unsetenv(name);
                again = 1;
                break;
            }
    }
    return 0;
}

static char *dump(const cnp_config *cfg, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    FUZZ_CHECK(f != NULL);
    cnp_config_dump(cfg, f);
    FUZZ_CHECK(fclose(f) == 0);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cnp_config cfg, again;
    cnp_err err = {{0}};
    const char *path = fuzz_tmpfile(data, size, "config");
    if (cnp_config_load(&cfg, path, &err) != CNP_OK) {
        FUZZ_CHECK(err.msg[0] != '\0');
        return 0;
    }
    size_t len1, len2;
    char *first = dump(&cfg, &len1);
    path = fuzz_tmpfile((const uint8_t *)first, len1, "config");
    if (cnp_config_load(&again, path, &err) != CNP_OK) {
        fprintf(stderr, "dump does not load: %s\n%s", err.msg, first);
        FUZZ_CHECK(!"a dumped configuration loads");
    }
    char *second = dump(&again, &len2);
    if (len1 != len2 || memcmp(first, second, len1) != 0)
        fprintf(stderr, "first dump:\n%s\nsecond dump:\n%s", first, second);
    FUZZ_CHECK(len1 == len2 && memcmp(first, second, len1) == 0);
    free(first);
    free(second);
    return 0;
}
