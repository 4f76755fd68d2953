/* Running the built canopy executable from a test: its exit code, stdout
 * and stderr kept apart (tests/cli, tests/cli_misc). */
#ifndef CANOPY_TESTS_CLIUTIL_H
#define CANOPY_TESTS_CLIUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "canopy/buf.h"

typedef struct cli_result {
    int code;  /* exit code, -1 when killed */
    char *out; /* stdout, NUL-terminated */
    char *err; /* stderr, NUL-terminated */
} cli_result;

/* The file's bytes, NUL-terminated ("" when it cannot be read); caller frees. */
static inline char *cli_slurp(const char *path)
{
    cnp_buf b = {0};
    if (cnp_file_read(path, 0, &b, NULL) != CNP_OK || cnp_buf_append(&b, "", 1) != CNP_OK) {
        cnp_buf_free(&b);
        return strdup("");
    }
    return (char *)b.data;
}

/* Runs `cd DIR && env ENV CANOPY ARGS` through the shell (env may be ""),
 * stdout and stderr into DIR/stdout and DIR/stderr. */
static inline cli_result cli_run(const char *dir, const char *canopy, const char *env,
                                 const char *args)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "cd %s && env %s %s %s > %s/stdout 2> %s/stderr", dir, env, canopy,
             args, dir, dir);
    int st = system(cmd);
    cli_result r = {.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1};
    snprintf(cmd, sizeof cmd, "%s/stdout", dir);
    r.out = cli_slurp(cmd);
    snprintf(cmd, sizeof cmd, "%s/stderr", dir);
    r.err = cli_slurp(cmd);
    return r;
}

static inline void cli_result_free(cli_result *r)
{
    free(r->out);
    free(r->err);
}

#endif
