/* The log sink: one place decides level, text or JSON, and serialises lines. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "canopy/log.h"

static enum cnp_log_level g_level = CNP_LOG_INFO;
static bool g_json = false;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void (*g_hook)(void *ctx);
static void *g_hook_ctx;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void cnp_log_set_level(enum cnp_log_level level) { g_level = level; }
enum cnp_log_level cnp_log_get_level(void) { return g_level; }
void cnp_log_set_json(bool json) { g_json = json; }
bool cnp_log_is_json(void) { return g_json; }

int cnp_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return CNP_LOG_WARN;
    return -1;
}

static void timestamp(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

void cnp_log_write(enum cnp_log_level level, const char *module, const char *func,
                   const char *fmt, ...)
{
    char msg[4096];
    char ts[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    timestamp(ts, sizeof ts);

    pthread_mutex_lock(&g_lock);
    if (g_hook)
        g_hook(g_hook_ctx);
    if (g_json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "ts", ts);
        cJSON_AddStringToObject(o, "level", level_names[level]);
        cJSON_AddStringToObject(o, "module", module);
        cJSON_AddStringToObject(o, "func", func);
        cJSON_AddStringToObject(o, "msg", msg);
        char *line = cJSON_PrintUnformatted(o);
        if (line)
            fprintf(stderr, "%s\n", line);
        cJSON_free(line);
        cJSON_Delete(o);
    } else if (g_level == CNP_LOG_DEBUG) {
        fprintf(stderr, "%s %-5s %s/%s: %s\n", ts, level_names[level], module, func, msg);
    } else {
        fprintf(stderr, "%s %-5s %s: %s\n", ts, level_names[level], module, msg);
    }
    fflush(stderr);
    pthread_mutex_unlock(&g_lock);
}

void cnp_log_set_hook(void (*before_line)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&g_lock);
    g_hook = before_line;
    g_hook_ctx = ctx;
    pthread_mutex_unlock(&g_lock);
}

void cnp_log_raw(const char *line)
{
    pthread_mutex_lock(&g_lock);
    if (g_hook)
        g_hook(g_hook_ctx);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
    pthread_mutex_unlock(&g_lock);
}

void cnp_log_locked(void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&g_lock);
    fn(ctx);
    pthread_mutex_unlock(&g_lock);
}
