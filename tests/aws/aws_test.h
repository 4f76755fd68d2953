/* Helpers shared by the aws tests: a configuration for the local stack,
 * unique names, and the local fake HTTP server (fake_server.py). */
#ifndef CANOPY_TESTS_AWS_TEST_H
#define CANOPY_TESTS_AWS_TEST_H

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "canopy/aws.h"
#include "canopy/config.h"
#include "canopy/rand.h"
#include "testutil.h"

/* Defaults plus the stack's endpoint; credentials come from the AWS_*
 * environment the stack exports. Returns false when there is no stack. */
static inline bool aws_test_stack_config(cnp_config *cfg)
{
    cnp_config_defaults(cfg);
    const char *ep = getenv("AWS_ENDPOINT_URL");
    if (!getenv("CANOPY_TEST_STACK") || !ep || !getenv("AWS_ACCESS_KEY_ID"))
        return false;
    snprintf(cfg->aws.endpoint_url, sizeof cfg->aws.endpoint_url, "%s", ep);
    snprintf(cfg->aws.region, sizeof cfg->aws.region, "us-east-1");
    return true;
}

/* "prefix-<pid>-<random>": unique per run (the normal and the sanitizer run
 * share one stack). */
static inline void aws_test_name(char *out, size_t len, const char *prefix)
{
    snprintf(out, len, "%s-%d-%06u", prefix, (int)getpid(), cnp_rand_u32() % 1000000u);
}

static inline const char *aws_test_python(void)
{
    const char *py = getenv("CANOPY_PYTHON");
    return py && py[0] ? py : "python3";
}

/* A running fake_server.py: its pid and base URL. */
typedef struct fake_server {
    pid_t pid;
    int port;
    char url[64];
} fake_server;

/* Starts tests/aws/fake_server.py on a free port; false if python is missing. */
static inline bool fake_server_start(fake_server *fs)
{
    int pfd[2];
    if (pipe(pfd) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        dup2(pfd[1], STDOUT_FILENO);
        close(pfd[0]);
        close(pfd[1]);
        const char *py = aws_test_python();
        execlp(py, py, CANOPY_SOURCE_DIR "/tests/aws/fake_server.py", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[64] = "";
    bool ok = f && fgets(line, sizeof line, f) && sscanf(line, "PORT %d", &fs->port) == 1;
    if (f)
        fclose(f);
    if (!ok) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return false;
    }
    fs->pid = pid;
    snprintf(fs->url, sizeof fs->url, "http://127.0.0.1:%d", fs->port);
    return true;
}

static inline void fake_server_stop(fake_server *fs)
{
    if (fs->pid > 0) {
        kill(fs->pid, SIGTERM);
        waitpid(fs->pid, NULL, 0);
        fs->pid = 0;
    }
}

/* Plain (unsigned) GET of the server's hit count for a path. */
static inline size_t fake_count_write(char *d, size_t s, size_t n, void *u)
{
    cnp_buf_append(u, d, s * n);
    return s * n;
}

/* Plain (unsigned) GET of path on the server; the answer, NUL-terminated,
 * into out (emptied first). false when the request fails. */
static inline bool fake_server_text(const fake_server *fs, const char *path, cnp_buf *out)
{
    char url[1024];
    snprintf(url, sizeof url, "%s%s", fs->url, path);
    CURL *e = curl_easy_init();
    out->len = 0;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fake_count_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, out);
    bool ok = curl_easy_perform(e) == CURLE_OK && cnp_buf_append(out, "", 1) == CNP_OK;
    curl_easy_cleanup(e);
    return ok;
}

/* Plain (unsigned) GET of path on the server; the answer as an integer. */
static inline int fake_server_get(const fake_server *fs, const char *path)
{
    cnp_buf b = {0};
    int n = fake_server_text(fs, path, &b) ? atoi((char *)b.data) : -1;
    cnp_buf_free(&b);
    return n;
}

/* GET of /<what>?path=<path, escaped>: the server's record for a path. */
static inline bool fake_server_record(const fake_server *fs, const char *what, const char *path,
                                      cnp_buf *out)
{
    char q[600];
    char *esc = curl_easy_escape(NULL, path, 0);
    snprintf(q, sizeof q, "/%s?path=%.500s", what, esc);
    curl_free(esc);
    return fake_server_text(fs, q, out);
}

/* How many requests the server saw for a path. */
static inline int fake_server_count(const fake_server *fs, const char *path)
{
    cnp_buf b = {0};
    int n = fake_server_record(fs, "_count", path, &b) ? atoi((char *)b.data) : -1;
    cnp_buf_free(&b);
    return n;
}

/* The SHA-256 (hex) of the body of each request the server saw for a path,
 * in order, separated by spaces, into out. */
static inline bool fake_server_hashes(const fake_server *fs, const char *path, cnp_buf *out)
{
    return fake_server_record(fs, "_hashes", path, out);
}

/* How many file descriptors this process has open (-1 if unknown): a test
 * compares it before and after to catch a leaked one. */
static inline int aws_test_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

#endif
