/* Where a configured model file lies (det_model_resolve_path): the path as
 * given, then, for a relative one, next to a relocatable install
 * (<prefix>/share/canopy), the configured data directory, /usr/share/canopy
 * and, for a binary run from its own build tree only, the source tree. */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "canopy/detect.h"
#include "canopy/log.h"

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The directory of the running executable, resolved (no trailing slash), or
 * "" when /proc/self/exe cannot be read. */
static void exe_dir(char *out, size_t len)
{
    out[0] = '\0';
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *slash = strrchr(buf, '/');
    if (!slash)
        return;
    *slash = '\0';
    snprintf(out, len, "%s", buf[0] ? buf : "/");
}

#ifdef CANOPY_SOURCE_DIR
/* True when the running executable lies inside the build tree it was built in
 * (CANOPY_BINARY_DIR): only such a binary may fall back to the source tree, so
 * that an installed canopy never reads models from a checkout. */
static bool running_from_build_tree(const char *dir)
{
#ifdef CANOPY_BINARY_DIR
    char bin[PATH_MAX];
    if (!dir[0] || !realpath(CANOPY_BINARY_DIR, bin))
        return false;
    size_t n = strlen(bin);
    return strncmp(dir, bin, n) == 0 && (dir[n] == '\0' || dir[n] == '/');
#else
    (void)dir;
    return true;
#endif
}
#endif

/* Formats one candidate path into dst (cap bytes). One that does not fit is
 * an error naming it (its length and start), never a path cut short that
 * could name some other file. */
static cnp_status __attribute__((format(printf, 4, 5)))
candidate(char *dst, size_t cap, cnp_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    if (len >= 0 && (size_t)len < cap)
        return CNP_OK;
    cnp_err_set(err, "[detector] model: a path of %d bytes, more than %zu: %s...", len, cap - 1,
                dst);
    return CNP_ERR_CONFIG;
}

cnp_status det_model_resolve_path(const char *configured, char *out, size_t out_len,
                                  cnp_err *err)
{
    if (!configured || !configured[0]) {
        cnp_err_set(err, "[detector] model: empty path");
        return CNP_ERR_CONFIG;
    }
    enum { MAX_CAND = 5 };
    char cand[MAX_CAND][2048];
    int n = 0;
    cnp_status result = candidate(cand[n++], sizeof cand[0], err, "%s", configured);
    if (result != CNP_OK)
        return result;
    if (configured[0] != '/') {
        char dir[PATH_MAX];
        exe_dir(dir, sizeof dir);
        /* A relocatable install: <prefix>/bin/canopy next to <prefix>/share/canopy. */
        if (dir[0] && (result = candidate(cand[n++], sizeof cand[0], err,
                                          "%s/../share/canopy/%s", dir, configured)) != CNP_OK)
            return result;
#ifdef CANOPY_DATADIR
        if ((result = candidate(cand[n++], sizeof cand[0], err, "%s/%s", CANOPY_DATADIR,
                                configured)) != CNP_OK)
            return result;
#endif
        if ((result = candidate(cand[n], sizeof cand[0], err, "/usr/share/canopy/%s",
                                configured)) != CNP_OK)
            return result;
        if (strcmp(cand[n], cand[n - 1]) != 0)
            n++;
#ifdef CANOPY_SOURCE_DIR
        if (running_from_build_tree(dir) &&
            (result = candidate(cand[n++], sizeof cand[0], err, "%s/%s", CANOPY_SOURCE_DIR,
                                configured)) != CNP_OK)
            return result;
#endif
    }
    for (int i = 0; i < n; i++) {
        if (file_exists(cand[i])) {
            if (strlen(cand[i]) >= out_len) {
                cnp_err_set(err, "%s: path too long", cand[i]);
                return CNP_ERR_CONFIG;
            }
            strcpy(out, cand[i]);
            LOG_DEBUG("detect", "[detector] model %s: %s", configured, out);
            return CNP_OK;
        }
    }
    char tried[MAX_CAND * 2048 + 16] = "";
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof tried; i++)
        used += (size_t)snprintf(tried + used, sizeof tried - used, "%s%s", i ? ", " : "",
                                 cand[i]);
    cnp_err_set(err, "%s: model not found (tried %s)", configured, tried);
    return CNP_ERR_NOTFOUND;
}
